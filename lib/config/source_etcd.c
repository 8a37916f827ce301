/* SPDX-License-Identifier: MIT */
/*
 * lib/config/source_etcd.c - the etcd source: one thread per config that
 * follows <prefix>config.yaml (see <ureg/config_etcd.h> for the contract).
 *
 * The one idea: the thread keeps `next`, the first etcd revision it has
 * not seen.  It reads the document once (range: its value, mod_revision M
 * and the store's revision H; applies it; next = H + 1), then watches the
 * key from `next`.  Each event applies the new value with generation =
 * its mod_revision and moves `next` past it.  When the watch breaks (etcd
 * killed, restarted, a member gone) the thread waits (capped exponential
 * backoff), moves to the next endpoint and watches again from `next`, so
 * no version is missed and none is applied twice.  When etcd answers that
 * `next` was compacted away, versions may have been missed: the thread
 * reads the document again (range) and applies it if its revision differs
 * from the one being served.
 *
 * Lifetimes.  A source is reachable from the side table `sources` (below)
 * until ureg_config_etcd_stop unlinks it; after unlinking, the stopper
 * owns it: it sets `stop`, wakes the thread (curl_multi_wakeup), joins
 * it and frees it.  Nothing else frees a source.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../layer.h"
#include "etcd_client.h"
#include "source.h"
#include "ureg/config_etcd.h"

#define CONNECT_TIMEOUT_MS 2000
#define RANGE_TIMEOUT_MS 5000

struct etcd_source {
	ureg_config *cfg;
	struct etcd_client cl;
	char *key, *key64;
	ureg_config_etcd_fn fn;
	void *arg;
	unsigned bmin, bmax;
	bool quiet;
	pthread_t thread;
	pid_t pid;               /* of the process that started the thread */
	int stop;                /* atomic: set once by the stopper */
	/* the thread's own state (no lock: only the thread touches it) */
	uint64_t next;           /* first revision not seen yet */
	bool have_doc;           /* a document was applied */
	bool need_range;         /* (re)read the document before watching */
	/* shared with ureg_config_etcd_stats / _wait, under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ureg_config_etcd_stats st;
	uint64_t handled;        /* newest revision applied or rejected */
	unsigned waiters;        /* threads in ureg_config_etcd_wait */
	bool closing;            /* unlinked: waiters leave, the stopper waits */
	struct etcd_source *link; /* sources list */
};

/*
 * The side table config -> source.  Global because struct ureg_config
 * belongs to config.c (the file reload layer) and a source is an
 * optional add-on to it; ureg_config_destroy reaches its source through
 * ureg__config_sources_stop.  A handful of entries: a linear list.
 */
static pthread_mutex_t sources_lock = PTHREAD_MUTEX_INITIALIZER;
static struct etcd_source *sources;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
/* the source whose thread this is (its callback must not stop it) */
static __thread struct etcd_source *self;

/* fork(): the side table and every source's stats lock are taken across
 * fork (after config.c's locks: registered later), so the child finds
 * them consistent. */
static void sources_fork_lock(void)
{
	pthread_mutex_lock(&sources_lock);
	for (struct etcd_source *s = sources; s; s = s->link)
		pthread_mutex_lock(&s->lock);
}

static void sources_fork_unlock(void)
{
	for (struct etcd_source *s = sources; s; s = s->link)
		pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&sources_lock);
}

static void sources_fork_register(void)
{
	ureg_atfork_layer(sources_fork_lock, sources_fork_unlock, sources_fork_unlock);
}

static bool stopping(struct etcd_source *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

/* snprintf that may truncate on purpose (stats strings are bounded) */
static void bounded(char *dst, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void bounded(char *dst, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(dst, n, fmt, ap);
	va_end(ap);
}

static void note_error(struct etcd_source *s, const char *why)
{
	pthread_mutex_lock(&s->lock);
	snprintf(s->st.last_error, sizeof(s->st.last_error), "%s", why);
	pthread_mutex_unlock(&s->lock);
}

static void set_connected(struct etcd_source *s, bool on)
{
	pthread_mutex_lock(&s->lock);
	s->st.connected = on;
	s->st.endpoint = (unsigned)s->cl.cur;
	pthread_mutex_unlock(&s->lock);
}

/*
 * Apply (or reject) version @rev of the document.  @text NULL: the key
 * was deleted, which is rejected too (an empty fleet is never what an
 * operator meant by deleting the key; put an empty document for that).
 */
static void apply(struct etcd_source *s, const char *text, size_t len, uint64_t rev)
{
	struct ureg_config_errors errs = { 0 };
	char name[600];
	int rc;

	snprintf(name, sizeof(name), "etcd:%s@%llu", s->key, (unsigned long long)rev);
	if (text)
		rc = ureg_config_reload_buffer_gen(s->cfg, text, len, name, 0, rev, NULL, &errs);
	else
		rc = -ENOENT;
	pthread_mutex_lock(&s->lock);
	s->st.endpoint = (unsigned)s->cl.cur;
	if (!rc) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		s->st.applied_at_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
		s->st.revision = rev;
		s->st.applied++;
		s->have_doc = true;
	} else {
		s->st.rejected++;
		s->st.rejected_revision = rev;
		if (errs.count)
			bounded(s->st.last_error, sizeof(s->st.last_error), "%s:%u:%u: %s",
				 errs.v[0].file ? errs.v[0].file : name, errs.v[0].line,
				 errs.v[0].column, errs.v[0].reason);
		else
			bounded(s->st.last_error, sizeof(s->st.last_error), "%s: %s", name,
				 text ? ureg_last_error() : "the document was deleted");
	}
	if (rev > s->handled)
		s->handled = rev;
	if (rev > s->st.seen_revision)
		s->st.seen_revision = rev;
	uint64_t serving = s->st.revision;
	char why[sizeof(s->st.last_error)];
	memcpy(why, s->st.last_error, sizeof(why));
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (rc && !s->quiet)
		fprintf(stderr, "ureg-etcd: revision %llu rejected (%zu error(s)), still "
			"serving revision %llu: %s\n", (unsigned long long)rev,
			errs.count, (unsigned long long)serving, why);
	if (s->fn)
		s->fn(s->cfg, rev, rc, &errs, s->arg);
	ureg_config_errors_free(&errs);
}

/* range: read the document and apply it unless it is the one served */
static int reread(struct etcd_source *s)
{
	char *text = NULL;
	size_t len = 0;
	uint64_t mod = 0, hdr = 0;
	int rc = etcd_range_key(&s->cl, s->key, &text, &len, &mod, &hdr, RANGE_TIMEOUT_MS);

	if (rc && rc != -ENOENT) {
		ureg__free(text);
		return rc;
	}
	/* (st is written by this thread only: read without the lock) */
	if (!rc && (!s->have_doc || mod != s->st.revision) && mod != s->st.rejected_revision)
		apply(s, text, len, mod); /* new to us: neither served nor rejected */
	else if (rc == -ENOENT && s->have_doc)
		apply(s, NULL, 0, hdr); /* deleted while we were away */
	else if (rc == -ENOENT && !s->quiet && !s->next)
		fprintf(stderr, "ureg-etcd: no %s yet (revision %llu); waiting for it\n",
			s->key, (unsigned long long)hdr);
	ureg__free(text);
	s->next = hdr + 1;
	pthread_mutex_lock(&s->lock);
	if (hdr > s->st.seen_revision)
		s->st.seen_revision = hdr;
	pthread_mutex_unlock(&s->lock);
	s->need_range = false;
	return 0;
}

struct watch_state {
	struct etcd_source *s;
	bool created;
};

/* one line of the watch stream */
static int on_watch_line(json_t *line, void *arg)
{
	struct watch_state *w = arg;
	struct etcd_source *s = w->s;
	json_t *r = json_object_get(line, "result");

	if (!json_is_object(r))
		return 0;
	if (json_is_true(json_object_get(r, "created")) && !w->created) {
		w->created = true;
		set_connected(s, true);
	}
	if (json_is_true(json_object_get(r, "canceled"))) {
		uint64_t compact = etcd_u64(r, "compact_revision");
		if (compact) {
			pthread_mutex_lock(&s->lock);
			s->st.compactions++;
			pthread_mutex_unlock(&s->lock);
			s->need_range = true;
			return 1; /* done: read the document again */
		}
		json_t *why = json_object_get(r, "cancel_reason");
		snprintf(s->cl.err, sizeof(s->cl.err), "watch canceled: %s",
			 json_is_string(why) ? json_string_value(why) : "no reason given");
		return -ECONNRESET;
	}
	json_t *evs = json_object_get(r, "events");
	json_t *last = NULL, *ev;
	size_t i;
	json_array_foreach(evs, i, ev)
		last = ev; /* only the newest version matters */
	if (!last)
		return 0;
	json_t *kv = json_object_get(last, "kv");
	uint64_t mod = etcd_u64(kv, "mod_revision");
	if (mod < s->next)
		return 0; /* seen already (cannot happen: the watch starts at next) */
	s->next = mod + 1;
	if (json_is_string(json_object_get(last, "type")) &&
	    !strcmp(json_string_value(json_object_get(last, "type")), "DELETE")) {
		apply(s, NULL, 0, mod);
		return stopping(s) ? -ECANCELED : 0;
	}
	char *text = NULL;
	size_t len = 0;
	json_t *v = json_object_get(kv, "value");
	int rc = etcd_unb64(json_is_string(v) ? json_string_value(v) : "", &text, &len);
	if (rc) {
		snprintf(s->cl.err, sizeof(s->cl.err), "revision %llu: value is not base64",
			 (unsigned long long)mod);
		return rc;
	}
	apply(s, text, len, mod);
	ureg__free(text);
	return stopping(s) ? -ECANCELED : 0;
}

static int watch(struct etcd_source *s, struct watch_state *w)
{
	char rev[32];
	json_t *body;

	snprintf(rev, sizeof(rev), "%llu", (unsigned long long)s->next);
	body = json_pack("{s:{s:s,s:s}}", "create_request", "key", s->key64,
			 "start_revision", rev);
	if (!body)
		return -ENOMEM;
	return etcd_post(&s->cl, "/v3/watch", body, NULL, on_watch_line, w,
			 CONNECT_TIMEOUT_MS);
}

static void *source_main(void *arg)
{
	struct etcd_source *s = arg;
	unsigned backoff = s->bmin;

	self = s;
	ureg__rcu_ensure();
	while (!stopping(s)) {
		struct watch_state w = { .s = s };
		int rc = s->need_range ? reread(s) : 0;
		if (!rc)
			rc = watch(s, &w);
		set_connected(s, false);
		if (stopping(s) || rc == -ECANCELED)
			break;
		if (!rc && s->need_range)
			continue; /* compacted: read again at once */
		if (w.created)
			backoff = s->bmin; /* it worked for a while: start over */
		note_error(s, s->cl.err);
		pthread_mutex_lock(&s->lock);
		s->st.reconnects++;
		pthread_mutex_unlock(&s->lock);
		if (!s->quiet)
			fprintf(stderr, "ureg-etcd: %s; retrying in %u ms from revision %llu\n",
				s->cl.err, backoff, (unsigned long long)s->next);
		etcd_client_next(&s->cl);
		if (etcd_client_sleep(&s->cl, backoff))
			break;
		backoff = backoff * 2 > s->bmax ? s->bmax : backoff * 2;
	}
	return NULL;
}

static struct etcd_source *find(ureg_config *cfg)
{
	for (struct etcd_source *s = sources; s; s = s->link)
		if (s->cfg == cfg)
			return s;
	return NULL;
}

static void source_free(struct etcd_source *s)
{
	etcd_client_fini(&s->cl);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	ureg__free(s->key);
	ureg__free(s->key64);
	ureg__free(s);
}

int ureg_config_etcd_start(ureg_config *cfg, const struct ureg_config_etcd_opts *o)
{
	struct etcd_source *s;
	int rc;

	if (!cfg || !o || !o->prefix || !*o->prefix || !o->endpoints || !*o->endpoints)
		return ureg_set_error(-EINVAL, "etcd source: NULL config, endpoints or prefix");
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return ureg_set_error(-EINVAL, "etcd source: reserved option fields "
					      "must be zero (a newer header than this library?)");
	pthread_once(&fork_once, sources_fork_register);
	if (!(s = ureg__calloc(1, sizeof(*s))))
		return ureg_set_error(-ENOMEM, "etcd source: out of memory");
	s->cfg = cfg;
	s->fn = o->fn;
	s->arg = o->arg;
	s->quiet = o->quiet;
	s->bmin = o->backoff_min_ms ? o->backoff_min_ms : 50;
	s->bmax = o->backoff_max_ms ? o->backoff_max_ms : 2000;
	if (s->bmax < s->bmin)
		s->bmax = s->bmin;
	s->need_range = true;
	s->pid = getpid();
	pthread_condattr_t ca;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = etcd_client_init(&s->cl, o->endpoints, &s->stop))) {
		source_free(s);
		return ureg_set_error(rc, "etcd source: %s", rc == -EINVAL ?
				 "endpoints must be http://HOST:PORT[,http://...]" : "out of memory");
	}
	s->key = etcd_doc_key(o->prefix);
	s->key64 = s->key ? etcd_b64(s->key, strlen(s->key)) : NULL;
	if (!s->key64) {
		source_free(s);
		return ureg_set_error(-ENOMEM, "etcd source: out of memory");
	}
	pthread_mutex_lock(&sources_lock);
	if (find(cfg)) {
		pthread_mutex_unlock(&sources_lock);
		source_free(s);
		return ureg_set_error(-EBUSY, "etcd source: the config has one already");
	}
	if ((rc = -pthread_create(&s->thread, NULL, source_main, s))) {
		pthread_mutex_unlock(&sources_lock);
		source_free(s);
		return ureg_set_error(rc, "etcd source: cannot start its thread");
	}
	s->link = sources;
	sources = s;
	pthread_mutex_unlock(&sources_lock);
	return 0;
}

void ureg_config_etcd_stop(ureg_config *cfg)
{
	struct etcd_source *s, **pp;

	if (!cfg)
		return;
	pthread_mutex_lock(&sources_lock);
	for (pp = &sources; (s = *pp) && s->cfg != cfg; pp = &s->link)
		;
	if (!s || s == self) { /* none, or from its own callback */
		pthread_mutex_unlock(&sources_lock);
		return;
	}
	*pp = s->link;
	pthread_mutex_unlock(&sources_lock);
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	if (s->pid == getpid()) { /* a forked child has no threads to wait for */
		etcd_client_wakeup(&s->cl);
		pthread_join(s->thread, NULL);
		/* threads in ureg_config_etcd_wait leave before the free */
		pthread_mutex_lock(&s->lock);
		s->closing = true;
		pthread_cond_broadcast(&s->cond);
		while (s->waiters)
			pthread_cond_wait(&s->cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
	}
	source_free(s);
}

void ureg__config_sources_stop(ureg_config *cfg)
{
	ureg_config_etcd_stop(cfg);
}

int ureg_config_etcd_stats(ureg_config *cfg, struct ureg_config_etcd_stats *st)
{
	struct etcd_source *s;

	if (!cfg || !st)
		return ureg_set_error(-EINVAL, "etcd stats: NULL argument");
	pthread_mutex_lock(&sources_lock);
	if (!(s = find(cfg))) {
		pthread_mutex_unlock(&sources_lock);
		return ureg_set_error(-EINVAL, "etcd stats: the config has no etcd source");
	}
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	st->waiters = s->waiters;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&sources_lock);
	return 0;
}

int ureg_config_etcd_wait(ureg_config *cfg, uint64_t revision, int timeout_ms)
{
	struct etcd_source *s;
	struct timespec dl;
	int rc = 0;

	if (!cfg)
		return ureg_set_error(-EINVAL, "etcd wait: NULL config");
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	/* registered as a waiter before sources_lock is dropped: the
	 * stopper frees the source only once every waiter has left */
	pthread_mutex_lock(&sources_lock);
	if (!(s = find(cfg)) || s == self) {
		pthread_mutex_unlock(&sources_lock);
		return ureg_set_error(-EINVAL, "etcd wait: no etcd source (or its own thread)");
	}
	pthread_mutex_lock(&s->lock);
	pthread_mutex_unlock(&sources_lock);
	s->waiters++;
	while (s->handled < revision && !s->closing && !rc)
		rc = -pthread_cond_timedwait(&s->cond, &s->lock, &dl);
	if (s->closing && !rc)
		rc = -ECANCELED;
	if (!--s->waiters && s->closing)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (rc == -ECANCELED)
		return ureg_set_error(rc, "etcd wait: the source was stopped");
	if (rc == -ETIMEDOUT)
		return ureg_set_error(rc, "etcd wait: revision %llu not reached in %d ms",
				      (unsigned long long)revision, timeout_ms);
	return rc;
}
