/* SPDX-License-Identifier: MIT */
/*
 * fork_storm - fork() again and again while threads keep every lock of the
 * library busy; shared by `ureg-stress --mode fork` and
 * tests/core/test_fork.c.
 *
 * Four busy threads loop over everything that takes a lock: shared and
 * dedicated contexts created, filled and destroyed (context list, context
 * locks, arena pool lock, jemalloc's arena locks), lookups and
 * registrations (registry writer, resize and event locks), config reloads
 * (config reload/table/item-record locks, batch commit), listeners added
 * and removed (listener lock), factory instances made and released in a
 * shared context, also by short-lived threads of their own, and the
 * factory replaced (the thread's block cache; the factory boxes' hold
 * counters and their lock: a thread's first hold, its exit, a box's id
 * and fold).  The main thread forks; each child, with only the forking
 * thread left, must do a lookup, a context create/alloc/destroy of both
 * kinds, a registration, a config reload, instances made and released (on
 * its thread and on a new one) and a factory replaced, and exit 0.  A child that deadlocks on a lock inherited held is killed by
 * its alarm (counted as a hang); any other signal is a crash.
 *
 * No sleeps: the busy threads run flat out; the parent waits for each child.
 */
#ifndef UREG_FORK_STORM_H
#define UREG_FORK_STORM_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>
#include <ureg/config.h>
#include <ureg/events.h>

#define FORK_STORM_THREADS 4

/*
 * Sanitizer builds park the busy threads across each fork.  GCC 12's
 * libasan has no fork handler for its own allocator: a child forked while
 * another thread is inside ASan's malloc can hang in its first allocation
 * (seen: a call_rcu worker started in the child blocked in ASan's
 * SizeClassAllocator lock).  That is the sanitizer's limit, not ureg's; so
 * under ASan the busy threads only work between forks and the fork itself
 * lands while they hold nothing, which still checks every child path for
 * memory errors.  Locks held at fork time are the normal build's test.
 */
#ifdef __SANITIZE_ADDRESS__
static pthread_rwlock_t fork_storm_park = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
#define FORK_STORM_WORK_BEGIN() pthread_rwlock_rdlock(&fork_storm_park)
#define FORK_STORM_WORK_END() pthread_rwlock_unlock(&fork_storm_park)
#define FORK_STORM_FORK_BEGIN() pthread_rwlock_wrlock(&fork_storm_park)
#define FORK_STORM_FORK_END() pthread_rwlock_unlock(&fork_storm_park)
#else
#define FORK_STORM_WORK_BEGIN() ((void)0)
#define FORK_STORM_WORK_END() ((void)0)
#define FORK_STORM_FORK_BEGIN() ((void)0)
#define FORK_STORM_FORK_END() ((void)0)
#endif
#define FORK_STORM_CHILD_ALARM_S 10

struct fork_storm_result {
	long forks;       /* children forked */
	long ok;          /* exited 0 */
	long failed;      /* exited non-zero (the step that failed) */
	long crashed;     /* killed by a signal other than the alarm */
	long hung;        /* killed by their alarm: a deadlock */
	long busy_ops;    /* operations the busy threads completed */
	long busy_errors; /* unexpected errors in the busy threads */
	int first_bad_status;
};

struct fork_storm {
	ureg_registry *reg;  /* "storm": lookups and registrations */
	ureg_config *cfg;    /* reloaded by the busy threads */
	atomic_int stop;
	atomic_long next_id; /* busy threads' own key prefixes */
	/* each busy thread's own context (it is the owner: its lock's biased
	 * path), used between the other steps; children enter them, owned
	 * by threads that do not exist there */
	ureg_ctx *_Atomic owned[FORK_STORM_THREADS];
	atomic_long ops, errors;
};

static void fork_storm_item_free(void *p)
{
	free(p);
}

static const ureg_type fork_storm_type = {
	.name = "storm",
	.item_destroy = fork_storm_item_free,
};

static int fork_storm_provider_create(ureg_ctx *ctx, const struct ureg_params *params,
				      void *arg, void **out)
{
	(void)ctx; (void)params; (void)arg;
	*out = malloc(32);
	return *out ? 0 : -ENOMEM;
}

static void fork_storm_provider_destroy(void *obj, ureg_ctx *ctx)
{
	(void)ctx;
	free(obj);
}

static const char *const fork_storm_yaml[2] = {
	"registries:\n"
	"  - name: storm-config\n"
	"    type: storm\n"
	"    entries:\n"
	"      - key: a\n"
	"        kind: singleton\n"
	"        provider: storm.item\n"
	"        params: {label: one}\n",
	"registries:\n"
	"  - name: storm-config\n"
	"    type: storm\n"
	"    entries:\n"
	"      - key: a\n"
	"        kind: singleton\n"
	"        provider: storm.item\n"
	"        params: {label: two}\n"
	"      - key: b\n"
	"        kind: singleton\n"
	"        provider: storm.item\n",
};

static int fork_storm_reload(ureg_config *cfg, int which)
{
	const char *y = fork_storm_yaml[which & 1];

	return ureg_config_reload_buffer(cfg, y, strlen(y), "storm.yaml", 0, NULL, NULL);
}

/* The factory "fac": a 64-byte instance in the context (the thread's
 * block cache, the factory box's per-thread holds and their lock). */
static int fork_storm_fac_create(ureg_ctx *ctx, void *arg, void **out)
{
	(void)arg;
	*out = ureg_ctx_alloc(ctx, 64);
	return *out ? 0 : -ENOMEM;
}

static void fork_storm_fac_destroy(void *obj, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, obj);
}

static const struct ureg_factory fork_storm_fac = {
	.create = fork_storm_fac_create,
	.scope = UREG_SCOPE_TRANSIENT,
	.instance_destroy = fork_storm_fac_destroy,
};

/* Instances made and released in a shared context, on the calling thread. */
static int fork_storm_instances(ureg_registry *reg)
{
	ureg_ctx *ctx = NULL;
	void *inst[3];
	int rc = ureg_ctx_new("storm-fac", UREG_CTX_SHARED, &ctx);

	for (int i = 0; i < 3 && rc == 0; i++)
		rc = ureg_create_instance(reg, "fac", ctx, &inst[i]);
	if (rc == 0)
		rc = ureg_instance_release(ctx, inst[1]);
	ureg_ctx_destroy(ctx);
	return rc;
}

/* A thread of its own: its first hold grows its counters, and its exit
 * moves them to the orphans - both under the holds' lock. */
static void *fork_storm_short_thread(void *arg)
{
	return (void *)(intptr_t)fork_storm_instances(arg);
}

static int fork_storm_short_lived(ureg_registry *reg)
{
	pthread_t t;
	void *ret = NULL;
	int rc = -pthread_create(&t, NULL, fork_storm_short_thread, reg);

	if (rc == 0 && (rc = -pthread_join(t, &ret)) == 0)
		rc = (int)(intptr_t)ret;
	return rc;
}

static void fork_storm_listener(const struct ureg_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
}

static int fork_storm_ctx_cycle(unsigned flags)
{
	ureg_ctx *ctx = NULL;
	int rc = ureg_ctx_new("storm", flags, &ctx);

	if (rc)
		return rc == -EAGAIN && (flags & UREG_CTX_DEDICATED) ? 0 : rc;
	for (int i = 0; i < 4; i++) {
		char *p = ureg_ctx_alloc(ctx, (size_t)64 << (i * 3));
		if (!p) {
			ureg_ctx_destroy(ctx);
			return -ENOMEM;
		}
		p[0] = 1;
	}
	ureg_ctx_destroy(ctx);
	return 0;
}

/* An allocation and a free in @ctx. */
static int fork_storm_touch(ureg_ctx *ctx)
{
	char *p = ureg_ctx_alloc(ctx, 48);

	if (!p)
		return -ENOMEM;
	p[0] = 1;
	ureg_ctx_free(ctx, p);
	return 0;
}

static void *fork_storm_busy(void *arg)
{
	struct fork_storm *fs = arg;
	long me = atomic_fetch_add(&fs->next_id, 1), n = 0;
	ureg_ctx *own = NULL;
	char key[64];

	if (ureg_ctx_new("storm-own", UREG_CTX_SHARED, &own) != 0) {
		atomic_fetch_add(&fs->errors, 1);
		return NULL;
	}
	atomic_store(&fs->owned[me % FORK_STORM_THREADS], own);
	while (!atomic_load(&fs->stop)) {
		int rc = 0;
		void *p;

		FORK_STORM_WORK_BEGIN();
		/* the owner's biased entries, over and over: a fork may land
		 * while this thread is between its seat's store and clear */
		for (int k = 0; k < 8 && rc == 0; k++)
			rc = fork_storm_touch(own);
		switch (n % 9) {
		case 6: rc = fork_storm_instances(fs->reg); break;
		case 7: rc = fork_storm_short_lived(fs->reg); break;
		case 8: /* a new factory box: its id; the old one folded */
			rc = ureg_replace_factory(fs->reg, "fac", &fork_storm_fac);
			break;
		case 0: rc = fork_storm_ctx_cycle(UREG_CTX_SHARED); break;
		case 1: rc = fork_storm_ctx_cycle(UREG_CTX_DEDICATED); break;
		case 2:
			ureg_read_lock();
			rc = ureg_lookup(fs->reg, "stable", &p);
			ureg_read_unlock();
			break;
		case 3: {
			void *it = malloc(16);
			snprintf(key, sizeof(key), "busy-%ld-%ld", me, n);
			rc = it ? ureg_register(fs->reg, key, it) : -ENOMEM;
			if (rc == 0)
				rc = ureg_unregister(fs->reg, key, UREG_SINGLETON);
			else
				free(it);
			break;
		}
		case 4: rc = fork_storm_reload(fs->cfg, (int)(n / 9)); break;
		case 5: {
			ureg_listener *l = NULL;
			rc = ureg_listen(fs->reg, UREG_EV_ALL, fork_storm_listener, NULL, &l);
			if (rc == 0)
				ureg_unlisten(l);
			break;
		}
		}
		FORK_STORM_WORK_END();
		if (rc) {
			if (atomic_fetch_add(&fs->errors, 1) < 3)
				fprintf(stderr, "fork_storm: busy op %ld: %s (%s)\n", n % 9,
					ureg_strerror(rc), ureg_last_error());
		}
		n++;
	}
	atomic_fetch_add(&fs->ops, n);
	/* the parent forks no more once stop is set: no child can enter it */
	atomic_store(&fs->owned[me % FORK_STORM_THREADS], NULL);
	ureg_ctx_destroy(own);
	return NULL;
}

/* Everything a child does; 0 or the number of the step that failed. */
static int fork_storm_child(struct fork_storm *fs)
{
	void *p = NULL;
	void *it = malloc(16);

	alarm(FORK_STORM_CHILD_ALARM_S);
	ureg_read_lock();
	int rc = ureg_lookup(fs->reg, "stable", &p);
	ureg_read_unlock();
	if (rc || !p)
		return 21;
	if (fork_storm_ctx_cycle(UREG_CTX_SHARED))
		return 22;
	if (fork_storm_ctx_cycle(UREG_CTX_DEDICATED))
		return 23;
	if (!it || ureg_register(fs->reg, "child", it) != 0)
		return 24;
	if (ureg_unregister(fs->reg, "child", UREG_SINGLETON) != 0)
		return 25;
	if (fork_storm_reload(fs->cfg, 1) != 0)
		return 26;
	if (fork_storm_instances(fs->reg) != 0)
		return 27;
	if (ureg_replace_factory(fs->reg, "fac", &fork_storm_fac) != 0)
		return 28;
	if (fork_storm_short_lived(fs->reg) != 0)
		return 29;
	/* the busy threads' contexts, whose owners did not survive the fork:
	 * each entry pauses a dead owner's bias and must not wait for it */
	for (int i = 0; i < FORK_STORM_THREADS; i++) {
		ureg_ctx *ctx = atomic_load(&fs->owned[i]);

		for (int k = 0; ctx && k < 20; k++) /* past 15: an ownership move */
			if (fork_storm_touch(ctx) != 0)
				return 30;
	}
	ureg_synchronize(); /* grace periods work in the child */
	return 0;
}

/*
 * Fork @forks times while FORK_STORM_THREADS threads are busy; 0, or a
 * negative errno when the set-up failed (nothing forked then).
 */
static int fork_storm_run(long forks, struct fork_storm_result *res)
{
	struct fork_storm fs = { 0 };
	struct ureg_provider prov = {
		.create = fork_storm_provider_create,
		.destroy = fork_storm_provider_destroy,
	};
	pthread_t t[FORK_STORM_THREADS];
	int rc, started = 0;

	memset(res, 0, sizeof(*res));
	if ((rc = ureg_registry_new(&fork_storm_type, "storm", &fs.reg)) ||
	    (rc = ureg_register(fs.reg, "stable", malloc(16))) ||
	    (rc = ureg_register_factory(fs.reg, "fac", &fork_storm_fac)) ||
	    (rc = ureg_config_new(&fs.cfg)) ||
	    (rc = ureg_config_type_register(fs.cfg, &fork_storm_type)) ||
	    (rc = ureg_config_provider_register(fs.cfg, "storm.item", &prov)) ||
	    (rc = fork_storm_reload(fs.cfg, 0)))
		goto out;
	for (; started < FORK_STORM_THREADS; started++)
		if ((rc = -pthread_create(&t[started], NULL, fork_storm_busy, &fs)))
			goto out;
	for (long i = 0; i < forks; i++) {
		int status = 0;
		pid_t pid;

		FORK_STORM_FORK_BEGIN();
		pid = fork();
		if (pid == 0)
			_exit(fork_storm_child(&fs));
		FORK_STORM_FORK_END();
		if (pid < 0) {
			rc = -errno;
			break;
		}
		res->forks++;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			res->ok++;
			continue;
		}
		if (!res->first_bad_status)
			res->first_bad_status = status;
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
			res->hung++;
		else if (WIFSIGNALED(status))
			res->crashed++;
		else
			res->failed++;
	}
out:
	atomic_store(&fs.stop, 1);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	res->busy_ops = atomic_load(&fs.ops);
	res->busy_errors = atomic_load(&fs.errors);
	ureg_config_destroy(fs.cfg);
	ureg_registry_destroy(fs.reg);
	return rc;
}

#endif /* UREG_FORK_STORM_H */
