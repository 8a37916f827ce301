/* SPDX-License-Identifier: MIT */
/*
 * A fleet follows one configuration through etcd (libureg-config).
 *
 * The configuration of a fleet is ONE YAML document (the format of
 * <ureg/config.h>) stored in etcd under the key
 *
 *     <prefix>config.yaml          e.g. prefix "/ureg/fleet-a/"
 *
 * Other keys under the prefix are ignored (room for later use).  Every
 * server of the fleet runs an etcd source on its ureg_config: a thread
 * that reads the document (POST /v3/kv/range of etcd's JSON gateway, 3.4
 * or later), applies it, then watches the key (POST /v3/watch, a
 * streaming response) and applies each new version:
 *
 *  - Validated and all or nothing, exactly like a file reload
 *    (ureg_config_reload_buffer_gen): errors name the document as
 *    "etcd:<key>@<revision>" with line and column.  The etcd mod_revision
 *    of the document becomes the generation recorded in every entry the
 *    reload adds or changes (ureg_entry_info().generation), so every
 *    server reports the same generation for the same document.
 *  - A bad document (or a deleted key) is rejected: the server keeps
 *    serving the last good one, writes one line to stderr
 *    ("ureg-etcd: revision R rejected ...") and counts it
 *    (ureg_config_etcd_stats: rejected, rejected_revision, last_error).
 *  - etcd down or restarting: the thread reconnects with capped
 *    exponential backoff (backoff_min_ms doubling up to backoff_max_ms),
 *    trying the endpoints of the list in turn, and resumes the watch
 *    after the last revision it saw; when that revision was compacted
 *    away it reads the document again (range) and applies it.
 *
 * Concurrency.  Readers are never blocked and never see a partial
 * generation: the apply is ureg_config_reload_buffer_gen (ureg_config.h,
 * "Consistency guarantee for readers").  The watcher thread is owned by
 * the config: ureg_config_destroy() stops it.  Stop is prompt: it wakes
 * the thread out of a blocked watch, a connect or a backoff wait
 * (curl_multi_wakeup) and joins it, waiting at most for a reload already
 * running.  fork(): the child has no watcher thread (threads do not
 * survive fork); ureg_config_etcd_stop / ureg_config_destroy in the child
 * only free the source.  The source's locks are taken across fork.
 */
#ifndef UREG_CONFIG_ETCD_H
#define UREG_CONFIG_ETCD_H

#include <ureg/api.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ureg/config.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the document's key is the prefix followed by this */
#define UREG_CONFIG_ETCD_DOC "config.yaml"

/**
 * ureg_config_etcd_fn - told about every version of the document the
 * source tried to apply.  @revision: its etcd mod_revision; @rc: the
 * reload's result (0 applied, -EBADMSG rejected, -ENOENT key deleted);
 * @errs: the errors (valid during the call).  Runs on the watcher
 * thread, outside any read section, with no source lock held; it must not
 * call ureg_config_etcd_stop or ureg_config_destroy.
 */
typedef void (*ureg_config_etcd_fn)(ureg_config *cfg, uint64_t revision, int rc,
				    const struct ureg_config_errors *errs, void *arg);

/**
 * struct ureg_config_etcd_opts - what ureg_config_etcd_start needs.
 * @endpoints: "http://127.0.0.1:2379" or a comma-separated list of the
 *             members' client URLs (tried in turn).
 * @prefix:    the key prefix (the document is <prefix>config.yaml).
 * @fn, @arg:  optional callback (ureg_config_etcd_fn).
 * @backoff_min_ms, @backoff_max_ms: reconnect delays (0: 50 and 2000).
 * @quiet:     true: no stderr line for rejections and reconnects.
 * @reserved:  must be zero (-EINVAL otherwise): room for fields
 *             (<ureg/api.h>, ABI policy).
 * The strings are copied.
 */
struct ureg_config_etcd_opts {
	const char *endpoints;
	const char *prefix;
	ureg_config_etcd_fn fn;
	void *arg;
	unsigned backoff_min_ms;
	unsigned backoff_max_ms;
	bool quiet;
	void *reserved[4];
};

/**
 * struct ureg_config_etcd_stats - what the source did so far.
 * @revision:     mod_revision of the document being served (0: none yet)
 * @applied_at_ns: CLOCK_REALTIME (ns) when @revision finished applying
 *                (for fleet latency: compare with the writer's clock)
 * @seen_revision: the newest etcd revision the source has seen
 * @applied:      versions applied (the first load included)
 * @rejected:     versions rejected (invalid, or the key deleted)
 * @rejected_revision: the last rejected one (0: none)
 * @reconnects:   connections lost and made again
 * @compactions:  watches that found their revision compacted (re-read)
 * @connected:    a watch is established now
 * @endpoint:     the endpoint in use (index into the list)
 * @waiters:      threads blocked in ureg_config_etcd_wait now
 * @last_error:   the last rejection's first error or the last connection
 *                error ("" when none)
 * @reserved:     zero (room for fields: <ureg/api.h>, ABI policy)
 */
struct ureg_config_etcd_stats {
	uint64_t revision;
	uint64_t applied_at_ns;
	uint64_t seen_revision;
	uint64_t applied;
	uint64_t rejected;
	uint64_t rejected_revision;
	uint64_t reconnects;
	uint64_t compactions;
	bool connected;
	unsigned endpoint;
	unsigned waiters;
	char last_error[256];
	uint64_t reserved[4];
};

/**
 * ureg_config_etcd_start - start the config's etcd source (one thread).
 * Returns at once; the first load happens on the thread (use
 * ureg_config_etcd_wait to wait for it).  The config should have its
 * types and providers registered.  Any thread; allocates, starts a
 * thread, takes the process-wide source-list mutex briefly (never held
 * across network I/O or a reload).  The source lives until
 * ureg_config_etcd_stop or ureg_config_destroy.  Returns 0, -EINVAL (NULL, empty endpoints or prefix, an
 * endpoint that is not http://...), -EBUSY (the config has a source),
 * -ENOMEM, or the pthread error.
 */
UREG_API int ureg_config_etcd_start(ureg_config *cfg, const struct ureg_config_etcd_opts *o);

/**
 * ureg_config_etcd_stop - stop and join the source's thread and free it.
 * Any thread not inside a read section; from the watcher's own callback
 * it is a no-op (it cannot join itself).  Blocks until a reload in
 * progress ends and until threads in ureg_config_etcd_wait have left
 * (they return -ECANCELED); never on etcd.  No-op without a source.
 * ureg_config_destroy() calls it.
 */
UREG_API void ureg_config_etcd_stop(ureg_config *cfg);

/**
 * ureg_config_etcd_wait - wait until the source has handled (applied or
 * rejected) a version of the document with revision >= @revision
 * (1: the first one, whatever its revision), or @timeout_ms passed.
 * Any thread but the watcher's; blocks on a condition variable.
 * Returns 0, -ETIMEDOUT, -ECANCELED (the source was stopped meanwhile),
 * -EINVAL (no source).
 */
UREG_API int ureg_config_etcd_wait(ureg_config *cfg, uint64_t revision, int timeout_ms);

/**
 * ureg_config_etcd_stats - copy the source's counters into @st.  Any
 * thread; takes the source's stats mutex briefly.  Returns 0 or -EINVAL
 * (NULL, or no source).
 */
UREG_API int ureg_config_etcd_stats(ureg_config *cfg, struct ureg_config_etcd_stats *st);

/**
 * ureg_config_etcd_get - read the document once (tools).  *@text gets a
 * malloc'd, NUL-terminated copy (free() it) and *@len its length;
 * *@mod_revision its revision.  A missing key is -ENOENT with
 * *@mod_revision 0.  Any thread; blocks on the network: each request at
 * most @timeout_ms (<= 0: 5000), and while less than @timeout_ms has
 * passed it goes round the endpoint list again when no member answered
 * or the one that did had no leader (an election after a member died).
 * Returns 0, -ENOENT, -EINVAL, -ENOMEM, -ECONNREFUSED / -ETIMEDOUT /
 * -ECONNRESET (no endpoint answered), -EAGAIN (no leader in time),
 * -EPROTO (a reply that is not etcd's); ureg_last_error() says why.
 */
UREG_API int ureg_config_etcd_get(const char *endpoints, const char *prefix,
			 char **text, size_t *len, uint64_t *mod_revision,
			 int timeout_ms);

/**
 * ureg_config_etcd_put - write the document only if it is still at
 * @expect_revision (0: only if the key does not exist): one etcd
 * transaction comparing the key's mod_revision (compare-and-swap), so two
 * operators cannot overwrite each other.  *@new_revision (may be NULL)
 * gets the revision of the write.  Does not validate (ureg-publish
 * checks first).  Any thread; blocks on the network as
 * ureg_config_etcd_get (a request that failed on the way is sent again;
 * when the document then found in etcd is exactly @text, its first try
 * had landed and this returns 0 with that revision).  Returns 0; -ESTALE
 * (the document changed since @expect_revision: nothing written); or
 * ureg_config_etcd_get's errors.
 */
UREG_API int ureg_config_etcd_put(const char *endpoints, const char *prefix,
			 const char *text, size_t len, uint64_t expect_revision,
			 uint64_t *new_revision, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* UREG_CONFIG_ETCD_H */
