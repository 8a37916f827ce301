/* SPDX-License-Identifier: MIT */
/*
 * Configuration-based population, plugins, hot reload and reports.
 *
 * A ureg_config is a loader: the application registers its type
 * descriptors and builtin providers by name, then loads a YAML file.  The
 * loader CREATES and OWNS the registries the file names (look them up with
 * ureg_config_registry()); it never touches registries made elsewhere.
 *
 *   registries:
 *     - name: agents             # registry name (key alphabet)
 *       type: agent              # a type registered with ureg_config_type_register
 *       required: [planner]      # keys that must exist after loading
 *       entries:
 *         - key: planner
 *           kind: factory        # singleton | factory
 *           scope: context       # transient | context (factories only)
 *           rank: 10             # optional int, default 0 (ureg.h "Ranking")
 *           provider: demo.object   # builtin provider name, or:
 *           # plugin: {path: plugins/x.so, symbol: x_provider}
 *           params: {model: small, budget: 100}   # scalar values only
 *
 * Limits: one YAML document per file (a second `---` document is an
 * error at its line and column); nesting at most 64 levels (an error at
 * the first node too deep); at most 16 MiB of text.  Aliases to scalars
 * are their value; aliases to mappings or sequences are refused.  Checking
 * and planning are linear in the file's size (hash lookups throughout).
 *
 * All or nothing.  A load or reload parses the file, validates everything
 * (unknown key/registry/type/provider, missing plugin or symbol, bad kind
 * or scope, duplicate registry or key, missing required key, wrong YAML
 * type), collects EVERY error with file:line:column, runs the singleton
 * constructors, and only when all of that succeeded publishes each changed
 * registry with one ureg_batch commit.  On any error no registry changes.
 *
 * Ranking.  A key may appear several times in a registry, once per
 * (kind, rank): its entries become the key's ranked providers, published
 * together (ureg_batch_add), and lookups see the highest-ranked one of
 * each kind.  Two entries of one key with the same kind and rank are a
 * duplicate-key error.  A reload that changes any entry of a key restages
 * all of the key's entries (the plan lists the key once).
 *
 * Reload.  The new file is diffed against the live one: an entry is ADDED,
 * REMOVED or CHANGED (kind, scope, provider, params, or its plugin file
 * changed on disk); untouched entries keep their objects and generation.
 * Each registry's changes are one generation.
 *
 * Consistency guarantee for readers: inside ONE read section, the keys of
 * ONE registry changed by the same reload are seen all old or all new
 * (the batch publishes a registry's new table with a single pointer
 * store).  All registries of a reload are committed together
 * (ureg_batch_commit_all: every new table is built before any is
 * published), but published one pointer store after the other: a reader
 * reading two registries in one read section may, for those few stores,
 * see registry A new and registry B old.
 *
 * Out of memory.  Every allocation failure (parsing, planning, building,
 * staging, committing) returns -ENOMEM with every registry unchanged and
 * nothing leaked; the objects built for the reload are destroyed, live
 * ones are not touched.  A load or reload is all or nothing.
 *
 * Registries dropped from the file are emptied (one generation), not
 * destroyed: pointers the application holds stay valid until
 * ureg_config_destroy().  A registry keeps the type it was created with.
 *
 * Providers.  A provider makes singletons (called once at load, @ctx NULL)
 * and factory instances (called by ureg_get / ureg_create_instance with
 * the user context).  A plugin is a shared object exporting a
 * `const struct ureg_provider` under the configured symbol.  Plugins are
 * loaded from a private copy of the file, so a changed file is loaded
 * beside the old version; each version stays loaded until the last entry
 * and the last instance made from it are gone (struct ureg_anchor), then
 * it is dlclose'd on the thread that dropped it.
 *
 * SIGHUP pattern for servers (never reload from a signal handler: a reload
 * allocates, takes mutexes and waits for grace periods):
 *
 *   sigset_t s; sigemptyset(&s); sigaddset(&s, SIGHUP);
 *   pthread_sigmask(SIG_BLOCK, &s, NULL);      // in main, before ANY thread
 *                                              // (every thread must block it)
 *   int sfd = signalfd(-1, &s, SFD_CLOEXEC);
 *   // in the server's event loop / a normal thread, when sfd is readable:
 *   struct signalfd_siginfo si; read(sfd, &si, sizeof si);
 *   struct ureg_config_errors errs = {0};
 *   if (ureg_config_reload(cfg, path, 0, NULL, &errs))
 *           ureg_config_errors_print(&errs, stderr);   // live state unchanged
 *   ureg_config_errors_free(&errs);
 *
 * or use ureg_config_watch_start() (inotify) instead.
 */
#ifndef UREG_CONFIG_H
#define UREG_CONFIG_H

#include <ureg/api.h>

#include <stdio.h>
#include <ureg/ureg.h>
#include <ureg/report.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ureg_config ureg_config;
typedef struct ureg_config_watch ureg_config_watch;

/** struct ureg_param - one `params` entry: both strings are YAML scalars. */
struct ureg_param {
	const char *name;
	const char *value;
};

/**
 * struct ureg_params - an entry's params, in file order.  Passed to the
 * provider; valid during a singleton constructor call, and for a factory
 * as long as the factory (and every instance it made) lives.
 */
struct ureg_params {
	size_t count;
	const struct ureg_param *v;
};

/**
 * ureg_params_get - the value of param @name, or NULL.  Any thread, never
 * blocks; the string lives as long as @p.
 */
UREG_API const char *ureg_params_get(const struct ureg_params *p, const char *name);

/**
 * struct ureg_provider - a constructor the config can name.
 * @create:  makes one object.  @ctx is NULL for a singleton (allocate with
 *           malloc) and the user context for a factory instance (allocate
 *           with ureg_ctx_alloc).  Return 0 and set *@out, or a negative
 *           errno.  Runs with no ureg lock held; for a singleton on the
 *           thread that loads the config.
 * @destroy: destroys what @create made (@ctx as for @create).  NULL: the
 *           registry type's item_destroy / instance_destroy is used.
 * @arg:     passed to @create unchanged.
 * @reserved: must be zero (refused otherwise: -EINVAL from
 *           ureg_config_provider_register, a config error for a plugin
 *           symbol): room for fields (<ureg/api.h>, ABI policy).
 *
 * Copied when registered; a plugin exports one as a const object.
 */
struct ureg_provider {
	int (*create)(ureg_ctx *ctx, const struct ureg_params *params,
		      void *arg, void **out);
	void (*destroy)(void *obj, ureg_ctx *ctx);
	void *arg;
	void *reserved[4];
};

/**
 * ureg_config_plugin_init_fn - what a "builtin-style" plugin exports under
 * the name UREG_CONFIG_PLUGIN_INIT, so that the tools (ureg-check
 * --plugin PATH, ureg-inspect --plugin PATH) and applications can
 * register the types and builtin providers a config names without
 * writing C around the loader:
 *
 *   int ureg_config_plugin_init(ureg_config *cfg)
 *   {
 *           int rc = ureg_config_type_register(cfg, &widget_type);
 *           return rc ? rc : ureg_config_provider_register(cfg, "my.widget", &p);
 *   }
 *
 * Called once per loader, on the thread that loads the plugin, before any
 * config is loaded.  Return 0 or a negative errno.  The shared object must
 * stay loaded until the loader is destroyed (the tools unload it after
 * ureg_config_destroy()).  Build it with `cc -shared -fPIC` against the
 * installed headers (tests/config/test_config_tools.c does).
 */
typedef int (*ureg_config_plugin_init_fn)(ureg_config *cfg);
#define UREG_CONFIG_PLUGIN_INIT "ureg_config_plugin_init"

/**
 * struct ureg_config_error - one problem: where and why.  An element of
 * an array the library allocates: its size is fixed (ABI), @reserved is
 * zero.
 */
struct ureg_config_error {
	char *file;      /* the config file (or the buffer's name) */
	unsigned line;   /* 1-based; 0 when not tied to a place */
	unsigned column; /* 1-based */
	char *reason;
	void *reserved[2];
};

/**
 * struct ureg_config_errors - every error of a failed load.  Zero it
 * before the call; free it with ureg_config_errors_free().  At most
 * UREG_CONFIG_MAX_ERRORS are kept (the last says so).
 */
struct ureg_config_errors {
	size_t count;
	struct ureg_config_error *v;
	void *reserved[2]; /* zero (ABI) */
};
#define UREG_CONFIG_MAX_ERRORS 100

enum ureg_plan_op {
	UREG_PLAN_ADD = 1,
	UREG_PLAN_CHANGE = 2,
	UREG_PLAN_REMOVE = 3,
};

/**
 * struct ureg_plan_item - one change of a reload.  An element of an array
 * the library allocates: its size is fixed (ABI), @reserved is zero.
 */
struct ureg_plan_item {
	enum ureg_plan_op op;
	char *registry;
	char *key;
	void *reserved[2];
};

/**
 * struct ureg_config_plan - the diff of a reload, sorted by registry then
 * key.  Zero it before the call; free it with ureg_config_plan_free().
 */
struct ureg_config_plan {
	size_t count;
	struct ureg_plan_item *v;
	void *reserved[2]; /* zero (ABI) */
};

/* ureg_config_set_flags / reload flags */
enum {
	/* reload: validate and compute the plan, change nothing. */
	UREG_CONFIG_DRY_RUN = 1u << 0,
	/* config: refuse `plugin:` entries (untrusted input, fuzzing). */
	UREG_CONFIG_NO_PLUGINS = 1u << 1,
};

/**
 * ureg_config_new - create an empty loader.  Any thread; allocates.  Valid
 * until ureg_config_destroy().  Returns 0, -EINVAL or -ENOMEM.
 */
UREG_API int ureg_config_new(ureg_config **out);

/**
 * ureg_config_set_flags - set UREG_CONFIG_NO_PLUGINS (0 clears).  Before
 * loading; takes the config mutex.  Returns 0 or -EINVAL.
 */
UREG_API int ureg_config_set_flags(ureg_config *cfg, unsigned flags);

/**
 * ureg_config_type_register - make @type nameable as `type: <type->name>`.
 * @type must outlive every object made from the config (normally static).
 * Any thread; blocks on the config mutex.  Returns 0, -EINVAL, -EEXIST
 * (a type of that name is registered), -ENOMEM.
 */
UREG_API int ureg_config_type_register(ureg_config *cfg, const ureg_type *type);

/**
 * ureg_config_provider_register - make @p nameable as `provider: <name>`.
 * @p is copied; @p->arg must outlive every object made from it.  Any
 * thread; blocks on the config mutex.  Returns 0, -EINVAL (bad name, no
 * create, nonzero reserved fields), -EEXIST, -ENOMEM.
 */
UREG_API int ureg_config_provider_register(ureg_config *cfg, const char *name,
				  const struct ureg_provider *p);

/**
 * ureg_config_load - load @path (the first time; equivalent to
 * ureg_config_reload with no flags).  See ureg_config_reload.
 */
UREG_API int ureg_config_load(ureg_config *cfg, const char *path,
		     struct ureg_config_errors *errs);

/**
 * ureg_config_reload - load @path and apply its difference to the live
 * registries, all or nothing.
 * @flags: 0 or UREG_CONFIG_DRY_RUN.
 * @plan:  if not NULL, receives the diff (also on a dry run).
 * @errs:  if not NULL, receives every error (file:line:column, reason).
 *
 * Any thread NOT inside a read section.  Reloads of one config serialize
 * on its mutex.  Blocks on file I/O, dlopen, provider constructors,
 * registry writer mutexes and one grace period per changed registry;
 * replaced objects are destroyed later, after their grace period and last
 * reference.  Returns 0; -EBADMSG (invalid config: nothing changed, see
 * @errs); -ENOENT / -EACCES (file unreadable); -EPERM (inside a read
 * section); -EINVAL; -ENOMEM.
 */
UREG_API int ureg_config_reload(ureg_config *cfg, const char *path, unsigned flags,
		       struct ureg_config_plan *plan,
		       struct ureg_config_errors *errs);

/**
 * ureg_config_reload_buffer - ureg_config_reload from memory.
 * @name: the file name used in errors and reports (plugin paths are
 *        relative to its directory).
 */
UREG_API int ureg_config_reload_buffer(ureg_config *cfg, const char *text, size_t len,
			      const char *name, unsigned flags,
			      struct ureg_config_plan *plan,
			      struct ureg_config_errors *errs);

/**
 * ureg_config_registry - the registry the config created under @name, or
 * NULL.  Any thread; takes the config mutex briefly.  The pointer is valid
 * until ureg_config_destroy() (also after a reload drops the registry from
 * the file: it is then empty).
 */
UREG_API ureg_registry *ureg_config_registry(ureg_config *cfg, const char *name);

/**
 * ureg_config_registry_names - the names of every registry the config
 * created, sorted (a malloc'd NULL-terminated array; free it with
 * ureg_keys_free()).  Any thread; takes the config mutex briefly.
 * Returns 0, -EINVAL, -ENOMEM.
 */
UREG_API int ureg_config_registry_names(ureg_config *cfg, char ***names, size_t *n);

/**
 * ureg_config_destroy - stop any watcher, destroy every registry the config
 * created and release its plugins (each is unloaded once its last instance
 * is gone).  Once, not inside a read section, after other threads stopped
 * using its registries.  Blocks for grace periods.  NULL is a no-op.
 */
UREG_API void ureg_config_destroy(ureg_config *cfg);

/** ureg_config_errors_free - free the error list and zero it.  NULL ok. */
UREG_API void ureg_config_errors_free(struct ureg_config_errors *errs);

/**
 * ureg_config_errors_print - write one line per error,
 * "file:line:column: error: reason".  Returns the number of lines.
 */
UREG_API size_t ureg_config_errors_print(const struct ureg_config_errors *errs,
				FILE *out);

/** ureg_config_plan_free - free the plan and zero it.  NULL ok. */
UREG_API void ureg_config_plan_free(struct ureg_config_plan *plan);

/**
 * ureg_config_plan_print - one line per change, "+ reg/key" (added),
 * "~ reg/key" (changed), "- reg/key" (removed); "no changes" when empty.
 */
UREG_API void ureg_config_plan_print(const struct ureg_config_plan *plan, FILE *out);

/**
 * ureg_config_watch_fn - told about every reload the watcher ran.
 * @rc: the reload's return value; @errs its errors (valid during the call).
 * Runs on the watcher thread, outside any read section.
 */
typedef void (*ureg_config_watch_fn)(ureg_config *cfg, int rc,
				     const struct ureg_config_errors *errs,
				     void *arg);

/**
 * ureg_config_watch_start - opt-in: a thread that watches @path with
 * inotify (its directory, so editors' write-and-rename is seen) and calls
 * ureg_config_reload() each time the file is written or replaced, then
 * @fn (may be NULL).  Any thread; starts one thread.  Concurrent calls
 * (and calls racing ureg_config_watch_stop) serialize on the config's
 * watcher mutex: exactly one of two racing starts wins, the other gets
 * -EBUSY.  Returns 0, -EINVAL, -EBUSY (already watching, or called from
 * the watcher's own callback), -ENOMEM, or the inotify / pthread error.
 */
UREG_API int ureg_config_watch_start(ureg_config *cfg, const char *path,
			    ureg_config_watch_fn fn, void *arg);

/**
 * ureg_config_watch_stop - stop and join the watcher thread.  Any thread;
 * blocks on the watcher mutex and until a running reload ends.  No-op
 * when not watching, and when called from the watcher's own callback (it
 * cannot join itself).
 */
UREG_API void ureg_config_watch_stop(ureg_config *cfg);

/* ------------------------------------------------------------------ */
/* Reports                                                             */
/* ------------------------------------------------------------------ */

/* ureg_report() lives in <ureg/report.h> (libureg), included above. */

#ifdef __cplusplus
}
#endif

#endif /* UREG_CONFIG_H */
