/* SPDX-License-Identifier: MIT */
/*
 * lib/config/config_int.h - private: the structures the files of the
 * config layer share, and their internal functions (hidden symbols of
 * libureg-config).  The file format and guarantees are in ureg/config.h.
 *
 * A load or reload runs one pipeline, one file per stage:
 *
 *   parse.c   text -> document model (struct cfg_doc) from libyaml's
 *             parser events, with the depth and one-document limits;
 *             the error list with file:line:column;
 *   schema.c  document -> struct spec (registries, entries, params),
 *             every field checked, types/providers/plugins resolved;
 *   plan.c    live specs vs the new spec -> struct diff, computed ONCE:
 *             the public plan (dry run, --plan) and apply both read it;
 *   apply.c   build objects, stage one ureg_batch per changed registry,
 *             commit them together; the singleton records;
 *   watch.c   the inotify watcher;
 *   config.c  the loader object, its name tables, reload entry points,
 *             fork handlers.
 *
 * Every name lookup is a hash lookup in a struct cfg_map (map.h): a
 * 100,000-entry file is linear in its size, not quadratic.
 */
#ifndef UREG_CONFIG_INT_H
#define UREG_CONFIG_INT_H

#include <stdbool.h>
#include <stdio.h>
#include <urcu/list.h>

#include "../layer.h"
#include "map.h"
#include "plugin.h"
#include "ureg/config.h"

#define CONFIG_MAX_BYTES (16u << 20)
/* Nesting deeper than this is refused as soon as it is seen (libyaml's
 * cost grows with the square of the depth); the format needs 5. */
#define CONFIG_MAX_DEPTH 64
/* Mappings with more pairs than this find duplicate fields with a map. */
#define CONFIG_DUP_SCAN_MAX 16

/* ------------------------------------------------------------ structures */

/* The application's type, copied for each registry the config creates:
 * its item_destroy finds the singleton's record (apply.c). */
struct cfg_rtype {
	ureg_type t;          /* what the registry points to */
	const ureg_type *app; /* the application's descriptor */
	long refs;            /* registry, records, factory bindings */
};

#define ESPEC_NONE ((size_t)-1)

struct espec {
	char *key;             /* a key may have several entries: one per
				* (kind, rank), see ureg.h "Ranking" */
	size_t next;           /* next entry of the same key, or ESPEC_NONE */
	bool factory;
	bool unchanged;        /* first entry of a key: diff found it equal */
	int rank;              /* `rank:`, 0 when absent */
	enum ureg_scope scope;
	char *provider;        /* builtin name, or NULL for a plugin */
	char *plugin_path;     /* resolved path */
	char *plugin_symbol;
	struct ureg_plugin *plugin;
	struct ureg_provider prov;
	struct ureg_param *params;
	size_t nparams;
	unsigned line, col;
};

/* One registry of a file.  @keys maps each key (borrowed from its first
 * entry) to that entry's index + 1; entries of one key chain by @next. */
struct rspec {
	char *name;
	const ureg_type *type;
	char *file;
	unsigned line, col;
	struct espec *e;
	size_t n, cap;
	struct cfg_map keys;
};

/* A parsed file: its registries, and a map name -> rspec. */
struct spec {
	struct rspec **r;
	size_t n;
	struct cfg_map names;
};

struct live_reg {
	char *name;
	ureg_registry *reg;
	struct cfg_rtype *rt;
	struct rspec *spec;    /* NULL: not in the live file (empty) */
};

struct cfg_watch;

struct named_type { char *name; const ureg_type *type; };
struct named_prov { char *name; struct ureg_provider p; };

struct ureg_config {
	pthread_mutex_t reload_lock;  /* serializes loads (held long) */
	pthread_mutex_t lock;         /* the tables below (held briefly) */
	unsigned flags;
	struct named_type *types;
	size_t ntypes;
	struct named_prov *provs;
	size_t nprovs;
	struct cfg_map type_names;    /* name -> index + 1 */
	struct cfg_map prov_names;    /* name -> index + 1 */
	struct live_reg **regs;       /* stable pointers */
	size_t nregs, capregs;
	struct cfg_map reg_names;     /* name -> struct live_reg * */
	struct ureg_plugin *plugins;  /* cache; only under reload_lock */
	/* Serializes watch_start and watch_stop (held while the watcher is
	 * set up and while it is joined; the watcher thread never takes it). */
	pthread_mutex_t watch_lock;
	struct cfg_watch *watch;      /* under watch_lock */
	struct cds_list_head all_node; /* all_configs, for fork */
};

/*
 * The document model (parse.c builds it from libyaml's events): one array
 * of 32-byte nodes, children as node indexes in one array (a mapping's
 * are key, value, key, value...), scalar text in an arena.  libyaml's own
 * document (yaml_parser_load) costs ~200 bytes and 3 mallocs per node: at
 * 100,000 entries that was most of a 300 MB check.
 */
enum cfg_node_type { CFG_SCALAR = 1, CFG_SEQUENCE, CFG_MAPPING };

struct cfg_node {
	unsigned char type;   /* enum cfg_node_type */
	unsigned char flags;  /* NODE_SEEN, NODE_DUP_KEY */
	unsigned line, col;   /* 1-based, of the node's first character */
	union {
		const char *value; /* scalar: NUL-terminated (may hold a NUL) */
		size_t first;      /* collection: index of its first child */
	};
	size_t len;           /* scalar: bytes; sequence: items; mapping: pairs */
};
#define NODE_SEEN 1u     /* collection visited (alias check) */
#define NODE_DUP_KEY 2u  /* scalar key repeated in its (large) mapping */

struct cfg_arena;

struct cfg_doc {
	struct cfg_node *nodes;
	size_t nnodes, capnodes;
	uint32_t *kids;
	size_t nkids, capkids;
	struct cfg_arena *arena;
	struct cfg_node *root;  /* NULL: an empty stream */
};

/* One load: where errors go, and the document being read. */
struct load {
	ureg_config *cfg;
	const char *file;
	char *dir;                 /* for relative plugin paths */
	struct ureg_config_errors *out;
	size_t nerr;
	struct cfg_doc *doc;
	/* plugin path -> struct ureg_plugin, opened once per load (the key
	 * is the plugin's own path string: it lives as long as the cache) */
	struct cfg_map plugins;
	bool nomem;                /* an allocation failed: -ENOMEM, not -EBADMSG */
};

/* ------------------------------------------------------ the diff (plan.c) */

/* One change to one key: what the batch will put. */
struct op {
	const char *reg;     /* registry name */
	const char *key;
	struct espec *es;    /* NULL: removal */
	void *item;          /* built singleton (owned until put) */
	struct binding *fb;  /* built factory arg (owned until put) */
	enum ureg_plan_op kind; /* for the key's first op; 0 for the others */
	bool put;            /* owned by the batch now */
};

/* Registries touched by a reload, in spec order then dropped ones. */
struct target {
	const char *name;
	struct rspec *rs;       /* new spec, NULL: dropped from the file */
	struct live_reg *lr;    /* NULL until created */
	const ureg_type *type;
	ureg_batch *batch;
	size_t first, nops;
	bool created;
};

struct diff {
	struct target *t;
	size_t nt;
	struct op *ops;
	size_t nops;
};

/* ------------------------------------------------------------ functions */

/* parse.c */
void cfg_err_add(struct load *L, unsigned line, unsigned col,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void cfg_oom_at(struct load *L, unsigned line, unsigned col);
#define ERR_AT(L, node, ...) cfg_err_add((L), (node)->line, (node)->col, __VA_ARGS__)
#define OOM_AT(L, node) cfg_oom_at((L), (node)->line, (node)->col)
int cfg_read_file(const char *path, char **buf, size_t *len);
void cfg_parse_text(struct load *L, const char *text, size_t len,
		    struct spec *s);
const char *cfg_scalar(struct load *L, struct cfg_node *n, const char *what);
bool cfg_collection(struct load *L, struct cfg_node *n, enum cfg_node_type t,
		    const char *what);
bool cfg_dup_field(struct load *L, struct cfg_node *map, size_t pair,
		   const char *name);
bool cfg_valid_key(const char *s);
char *cfg_strndup(const char *s, size_t n);

/* The @i-th child of a collection (a mapping's pair p: 2p key, 2p+1 value). */
static inline struct cfg_node *cfg_kid(struct load *L, const struct cfg_node *n,
				       size_t i)
{
	return &L->doc->nodes[L->doc->kids[n->first + i]];
}

/* Iterate a mapping's pairs: index p, key node kn, value node vn. */
#define FOR_PAIRS(L, map, kn, vn, p)                                         \
	for (size_t p = 0; p < (map)->len; p++)                              \
		for (struct cfg_node *kn = cfg_kid(L, map, 2 * p),           \
			     *vn = cfg_kid(L, map, 2 * p + 1);               \
		     kn; kn = NULL)

/* Iterate a sequence's items: node it. */
#define FOR_ITEMS(L, seq, it)                                                \
	for (size_t it##_i = 0; it##_i < (seq)->len; it##_i++)               \
		for (struct cfg_node *it = cfg_kid(L, seq, it##_i); it; it = NULL)

/* schema.c */
void cfg_parse_doc(struct load *L, struct spec *s);
void cfg_spec_free(struct spec *s);
void cfg_rspec_free(struct rspec *r);
struct espec *cfg_rspec_find(const struct rspec *r, const char *key);
struct espec *cfg_rspec_find_ranked(const struct rspec *r, const char *key,
				    bool factory, int rank);
const struct rspec *cfg_spec_find(const struct spec *s, const char *name);
void cfg_params_free(struct ureg_param *v, size_t n);
struct ureg_param *cfg_params_copy(const struct ureg_param *v, size_t n);

/* plan.c */
int cfg_diff(ureg_config *cfg, struct spec *s, struct diff *d);
int cfg_diff_plan(const struct diff *d, struct ureg_config_plan *p);
void cfg_diff_free(struct diff *d);

/* apply.c */
int cfg_apply(struct load *L, struct spec *s, struct diff *d);
void cfg_op_destroy_unput(struct op *o);
void cfg_live_free(struct live_reg *lr);
void cfg_items_lock(void);
void cfg_items_unlock(void);

/* config.c: the name tables (caller holds reload_lock) */
bool cfg_provider_reserved_zero(const struct ureg_provider *p);
const ureg_type *cfg_type_find(ureg_config *cfg, const char *name);
const struct ureg_provider *cfg_prov_find(ureg_config *cfg, const char *name);
struct live_reg *cfg_live_find(ureg_config *cfg, const char *name);

#endif /* UREG_CONFIG_INT_H */
