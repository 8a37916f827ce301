/* SPDX-License-Identifier: MIT */
/*
 * A per-request server loop with user contexts: the shape of a server that
 * links ureg.  Worker threads each own a set of users (as a shard-per-core
 * server does); for every request a worker
 *   - finds the user's session (a factory instance, made in the user's
 *     context on the user's first request and reused after),
 *   - looks up the route's handler (a singleton) in a read section,
 *   - allocates per-request scratch memory in the user's context, which a
 *     quota caps,
 * and when the user logs out one ureg_ctx_destroy() releases everything
 * the user held.  Output is deterministic: the program checks its own
 * accounting and says so.
 * Build: cc server_loop.c $(pkg-config --cflags --libs ureg) -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <ureg/ureg.h>
#include <ureg/ctx.h>

#define WORKERS 4
#define USERS_PER_WORKER 25
#define REQUESTS_PER_USER 40

struct session { unsigned long requests, bytes_served; };
struct handler { const char *route; size_t scratch; };

static ureg_registry *sessions, *handlers;
static const char *const routes[] = { "search", "summarize", "export" };

static int make_session(ureg_ctx *ctx, void *arg, void **out)
{
	(void)arg;
	*out = ureg_ctx_calloc(ctx, 1, sizeof(struct session)); /* the user's memory */
	return *out ? 0 : -ENOMEM;
}

struct worker {
	int id;
	unsigned long served, refused, sessions_made;
	size_t peak_user_bytes;
	int failed;
};

static int serve(ureg_ctx *user, unsigned n, struct worker *w)
{
	struct session *s = NULL;
	const struct handler *h = NULL;
	void *found = NULL;
	char *scratch;
	int rc;

	if ((rc = ureg_get(sessions, "session", user, &found)))
		return rc;
	s = found;
	if (s->requests == 0)
		w->sessions_made++;
	ureg_read_lock();
	rc = ureg_lookup(handlers, routes[n % 3], &found);
	if (rc == 0)
		h = found; /* valid until ureg_read_unlock; copy what we need */
	size_t need = h ? h->scratch : 0;
	ureg_read_unlock();
	if (rc)
		return rc;
	if (!(scratch = ureg_ctx_alloc(user, need)))
		return -EDQUOT; /* the user's quota, not the server, said no */
	memset(scratch, 'x', need); /* the request's work */
	s->requests++;
	s->bytes_served += need;
	ureg_ctx_free(user, scratch);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	ureg_ctx *users[USERS_PER_WORKER];
	char name[32];

	for (int u = 0; u < USERS_PER_WORKER; u++) {
		snprintf(name, sizeof(name), "user-%d-%d", w->id, u);
		if (ureg_ctx_new(name, 0, &users[u])) {
			w->failed = 1;
			return NULL;
		}
		/* one user per worker on a small plan: 8 KiB */
		if (u == 0)
			ureg_ctx_set_quota(users[u], 8192);
	}
	for (unsigned r = 0; r < REQUESTS_PER_USER; r++) {
		for (int u = 0; u < USERS_PER_WORKER; u++) {
			int rc = serve(users[u], r, w);
			if (rc == 0)
				w->served++;
			else if (rc == -EDQUOT)
				w->refused++;
			else
				w->failed = 1;
		}
	}
	for (int u = 0; u < USERS_PER_WORKER; u++) {
		struct ureg_ctx_stats st;
		if (ureg_ctx_stats(users[u], &st) == 0 && st.peak_bytes > w->peak_user_bytes)
			w->peak_user_bytes = st.peak_bytes;
		if (st.instances != 1)
			w->failed = 1;
		ureg_ctx_destroy(users[u]); /* logout: the session and all scratch go */
	}
	return NULL;
}

int main(void)
{
	static const ureg_type session_type = { .name = "session" };
	static const ureg_type handler_type = { .name = "handler" };
	static struct handler hs[] = { { "search", 1024 }, { "summarize", 4096 }, { "export", 16384 } };
	struct ureg_factory f = { .create = make_session, .scope = UREG_SCOPE_CONTEXT };
	struct worker w[WORKERS] = { 0 };
	pthread_t t[WORKERS];
	unsigned long served = 0, refused = 0, made = 0;
	size_t peak = 0;
	int failed = 0;

	if (ureg_registry_new(&session_type, "sessions", &sessions) ||
	    ureg_registry_new(&handler_type, "handlers", &handlers) ||
	    ureg_register_factory(sessions, "session", &f))
		return 1;
	for (int i = 0; i < 3; i++)
		if (ureg_register(handlers, hs[i].route, &hs[i]))
			return 1;
	for (int i = 0; i < WORKERS; i++) {
		w[i].id = i;
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(t[i], NULL);
		served += w[i].served;
		refused += w[i].refused;
		made += w[i].sessions_made;
		failed |= w[i].failed;
		if (w[i].peak_user_bytes > peak)
			peak = w[i].peak_user_bytes;
	}
	printf("users: %d, requests: %d\n", WORKERS * USERS_PER_WORKER,
	       WORKERS * USERS_PER_WORKER * REQUESTS_PER_USER);
	printf("served: %lu, refused by quota: %lu\n", served, refused);
	printf("sessions made: %lu (one per user)\n", made);
	/* exact bytes depend on the allocator's size classes: print a fact */
	printf("largest user peak holds a 16 KiB export: %s\n", peak >= 16384 ? "yes" : "no");
	ureg_registry_destroy(sessions);
	ureg_registry_destroy(handlers);
	printf("%s\n", failed ? "accounting: FAILED" : "accounting: ok");
	return failed;
}
