/* SPDX-License-Identifier: MIT */
/*
 * Configuration loading, validation, diff/plan, reload and the inotify
 * watcher (the file format and the guarantees are in ureg/config.h).
 *
 * The one tricky idea is ownership across the all-or-nothing pipeline:
 *
 *   1. parse   libyaml document -> struct spec (every error collected, each
 *              with the node's mark), types/providers/plugins resolved;
 *   2. diff    live spec of each registry vs the new one -> plan;
 *   3. build   run singleton constructors, make factory bindings: every
 *              object made here is destroyed again if anything fails;
 *   4. stage   one ureg_batch per changed registry; from a successful
 *              ureg_batch_put on, the batch owns the object;
 *   5. commit  one pointer swap per registry; the new spec becomes live.
 *
 * Singletons made by a provider must be destroyed by that provider and must
 * keep their plugin loaded until after their destructor ran, but a type's
 * item_destroy(item) only gets the item.  So a registry the config creates
 * uses a private copy of the application's type (struct cfg_rtype: same
 * name and parent) whose item_destroy looks the item up in item_recs - a
 * process-wide table because item_destroy has no other way to find its
 * record - to call the provider's destructor and drop the plugin anchor.
 * The copy is reference counted (registry, records, factory bindings): an
 * item or instance may outlive the config that made it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/list.h>
#include <yaml.h>

#include "../layer.h"
#include "plugin.h"
#include "source.h"
#include "ureg/config.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* Every allocation of the config layer goes through the ureg__ wrappers
 * (lib/alloc.c) so a fault-injection build can fail each one.  libyaml
 * allocates with its own malloc and is not covered. */
static char *cfg_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = ureg__malloc(len + 1);
	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* ------------------------------------------------------------ structures */

struct cfg_rtype {
	ureg_type t;          /* what the registry points to */
	const ureg_type *app; /* the application's descriptor */
	long refs;
};

struct espec {
	char *key;             /* a key may have several entries: one per
				* (kind, rank), see ureg.h "Ranking" */
	bool factory;
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

struct rspec {
	char *name;
	const ureg_type *type;
	char *file;
	unsigned line, col;
	struct espec *e;
	size_t n, cap;
};

struct live_reg {
	char *name;
	ureg_registry *reg;
	struct cfg_rtype *rt;
	struct rspec *spec;    /* NULL: not in the live file (empty) */
};

struct cfg_watch {
	ureg_config *cfg;
	pthread_t thread;
	int ifd, stopfd, wd;
	char *path, *base;
	ureg_config_watch_fn fn;
	void *arg;
};

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
	struct live_reg **regs;       /* stable pointers */
	size_t nregs, capregs;
	struct ureg_plugin *plugins;  /* cache; only under reload_lock */
	/* Serializes watch_start and watch_stop (held while the watcher is
	 * set up and while it is joined; the watcher thread never takes it). */
	pthread_mutex_t watch_lock;
	struct cfg_watch *watch;      /* under watch_lock */
	struct cds_list_head all_node; /* all_configs, for fork */
};

/* ------------------------------------------------------------ params */

const char *ureg_params_get(const struct ureg_params *p, const char *name)
{
	if (!p || !name)
		return NULL;
	for (size_t i = 0; i < p->count; i++)
		if (!strcmp(p->v[i].name, name))
			return p->v[i].value;
	return NULL;
}

static void params_free(struct ureg_param *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ureg__free((char *)v[i].name);
		ureg__free((char *)v[i].value);
	}
	ureg__free(v);
}

static struct ureg_param *params_copy(const struct ureg_param *v, size_t n)
{
	struct ureg_param *c = ureg__calloc(n ? n : 1, sizeof(*c));
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i].name = ureg__strdup(v[i].name);
		c[i].value = ureg__strdup(v[i].value);
		if (!c[i].name || !c[i].value) {
			params_free(c, n);
			return NULL;
		}
	}
	return c;
}

/* ------------------------------------------------- private type copies */

static void rtype_put(struct cfg_rtype *rt)
{
	if (rt && __atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL) == 0)
		ureg__free(rt);
}

static void rtype_get(struct cfg_rtype *rt)
{
	__atomic_add_fetch(&rt->refs, 1, __ATOMIC_RELAXED);
}

/* Process-wide: item_destroy(item) has no other handle to its record.
 * Touched only when a config singleton is made or destroyed. */
struct item_rec {
	struct item_rec *next;
	void *item;
	void (*destroy)(void *obj, ureg_ctx *ctx);
	ureg_anchor *anchor;
	struct cfg_rtype *rt;
};
#define ITEM_BUCKETS 256
static pthread_mutex_t item_recs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct item_rec *item_recs[ITEM_BUCKETS];

static unsigned item_bucket(const void *p)
{
	uintptr_t x = (uintptr_t)p;
	x ^= x >> 17;
	x *= UINT64_C(0x9e3779b97f4a7c15);
	return (unsigned)(x >> 56) % ITEM_BUCKETS;
}

static void cfg_item_destroy(void *item)
{
	struct item_rec **pp, *r = NULL;

	pthread_mutex_lock(&item_recs_lock);
	for (pp = &item_recs[item_bucket(item)]; *pp; pp = &(*pp)->next)
		if ((*pp)->item == item) {
			r = *pp;
			*pp = r->next;
			break;
		}
	pthread_mutex_unlock(&item_recs_lock);
	if (!r)
		return;
	if (r->destroy)
		r->destroy(item, NULL);
	else if (r->rt->app->item_destroy)
		r->rt->app->item_destroy(item);
	if (r->anchor)
		ureg_anchor_put(r->anchor);
	rtype_put(r->rt);
	ureg__free(r);
}

static int item_rec_add(void *item, const struct espec *es,
			struct cfg_rtype *rt)
{
	struct item_rec *r = ureg__calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->item = item;
	r->destroy = es->prov.destroy;
	r->rt = rt;
	rtype_get(rt);
	if (es->plugin) {
		r->anchor = ureg__plugin_anchor(es->plugin);
		ureg_anchor_get(r->anchor);
	}
	pthread_mutex_lock(&item_recs_lock);
	unsigned b = item_bucket(item);
	r->next = item_recs[b];
	item_recs[b] = r;
	pthread_mutex_unlock(&item_recs_lock);
	return 0;
}

static struct cfg_rtype *rtype_new(const ureg_type *app)
{
	struct cfg_rtype *rt = ureg__calloc(1, sizeof(*rt));
	if (!rt)
		return NULL;
	rt->t = *app;
	rt->t.item_destroy = cfg_item_destroy;
	rt->app = app;
	rt->refs = 1;
	return rt;
}

/* A factory's argument: the provider, a copy of the params, the type. */
struct binding {
	struct ureg_provider prov;
	struct ureg_params params;
	struct cfg_rtype *rt;
};

static int binding_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct binding *b = arg;
	return b->prov.create(ctx, &b->params, b->prov.arg, out);
}

static void binding_free(void *arg)
{
	struct binding *b = arg;
	params_free((struct ureg_param *)b->params.v, b->params.count);
	rtype_put(b->rt);
	ureg__free(b);
}

/* ------------------------------------------------------------- errors */

struct load {
	ureg_config *cfg;
	const char *file;
	char *dir;                 /* for relative plugin paths */
	struct ureg_config_errors *out;
	size_t nerr;
	yaml_document_t *doc;
	unsigned char *seen;       /* collection nodes visited (alias check) */
	size_t nnodes;
	bool nomem;                /* an allocation failed: -ENOMEM, not -EBADMSG */
	uint64_t generation;       /* recorded in written entries; 0: next */
};

static void err_add(struct load *L, unsigned line, unsigned col,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void err_add(struct load *L, unsigned line, unsigned col,
		    const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	L->nerr++;
	if (!L->out || L->out->count > UREG_CONFIG_MAX_ERRORS)
		return;
	if (L->out->count == UREG_CONFIG_MAX_ERRORS) {
		snprintf(msg, sizeof(msg), "too many errors, stopping here");
		line = col = 0;
	} else {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	struct ureg_config_error *v = ureg__realloc(L->out->v,
		(L->out->count + 1) * sizeof(*v));
	if (!v)
		return;
	L->out->v = v;
	v += L->out->count;
	v->file = ureg__strdup(L->file);
	v->reason = ureg__strdup(msg);
	v->line = line;
	v->column = col;
	if (!v->file || !v->reason) {
		ureg__free(v->file);
		ureg__free(v->reason);
		return;
	}
	L->out->count++;
}

#define ERR_AT(L, node, ...) \
	err_add((L), (unsigned)(node)->start_mark.line + 1, \
		(unsigned)(node)->start_mark.column + 1, __VA_ARGS__)

/* An allocation failed: the load fails with -ENOMEM (the error entry
 * itself may be lost if that allocation fails too). */
static void oom_at(struct load *L, unsigned line, unsigned col)
{
	L->nomem = true;
	err_add(L, line, col, "out of memory");
}

#define OOM_AT(L, node) \
	oom_at((L), (unsigned)(node)->start_mark.line + 1, \
	       (unsigned)(node)->start_mark.column + 1)

void ureg_config_errors_free(struct ureg_config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->count; i++) {
		ureg__free(errs->v[i].file);
		ureg__free(errs->v[i].reason);
	}
	ureg__free(errs->v);
	errs->v = NULL;
	errs->count = 0;
}

size_t ureg_config_errors_print(const struct ureg_config_errors *errs,
				FILE *out)
{
	if (!errs || !out)
		return 0;
	for (size_t i = 0; i < errs->count; i++) {
		const struct ureg_config_error *e = &errs->v[i];
		if (e->line)
			fprintf(out, "%s:%u:%u: error: %s\n", e->file, e->line,
				e->column, e->reason);
		else
			fprintf(out, "%s: error: %s\n", e->file, e->reason);
	}
	return errs->count;
}

/* ------------------------------------------------------------- parsing */

static yaml_node_t *node_at(struct load *L, int id)
{
	return yaml_document_get_node(L->doc, id);
}

/* A scalar as a C string, or NULL with an error (wrong type, NUL byte). */
static const char *scalar(struct load *L, yaml_node_t *n, const char *what)
{
	if (n->type != YAML_SCALAR_NODE) {
		ERR_AT(L, n, "%s must be a scalar, not a %s", what,
		       n->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
		return NULL;
	}
	if (strlen((char *)n->data.scalar.value) != n->data.scalar.length) {
		ERR_AT(L, n, "%s contains a NUL byte", what);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

/* A collection node of the expected type, visited once (no aliases). */
static bool collection(struct load *L, yaml_node_t *n, yaml_node_type_t t,
		       const char *what)
{
	if (n->type != t) {
		ERR_AT(L, n, "%s must be a %s", what,
		       t == YAML_MAPPING_NODE ? "mapping" : "sequence");
		return false;
	}
	size_t id = (size_t)(n - L->doc->nodes.start);
	if (id < L->nnodes) {
		if (L->seen[id]) {
			ERR_AT(L, n, "%s: an alias to a mapping or sequence is not supported", what);
			return false;
		}
		L->seen[id] = 1;
	}
	return true;
}

static bool valid_key(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > UREG_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static void espec_clear(struct espec *e)
{
	ureg__free(e->key);
	ureg__free(e->provider);
	ureg__free(e->plugin_path);
	ureg__free(e->plugin_symbol);
	params_free(e->params, e->nparams);
}

static void rspec_free(struct rspec *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		espec_clear(&r->e[i]);
	ureg__free(r->e);
	ureg__free(r->name);
	ureg__free(r->file);
	ureg__free(r);
}

struct spec {
	struct rspec **r;
	size_t n;
};

static void spec_free(struct spec *s)
{
	for (size_t i = 0; i < s->n; i++)
		rspec_free(s->r[i]);
	ureg__free(s->r);
	s->r = NULL;
	s->n = 0;
}

/* The first entry of @key (a key may have one per (kind, rank)). */
static struct espec *rspec_find(const struct rspec *r, const char *key)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].key, key))
			return &r->e[i];
	return NULL;
}

/* The entry of @key of that kind at that rank. */
static struct espec *rspec_find_ranked(const struct rspec *r, const char *key,
				       bool factory, int rank)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].key, key) && r->e[i].factory == factory &&
		    r->e[i].rank == rank)
			return &r->e[i];
	return NULL;
}

/* Whether r->e[j] is its key's first entry (plans and removals go by key). */
static bool first_of_key(const struct rspec *r, size_t j)
{
	return rspec_find(r, r->e[j].key) == &r->e[j];
}

static const ureg_type *type_find(ureg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->ntypes; i++)
		if (!strcmp(cfg->types[i].name, name))
			return cfg->types[i].type;
	return NULL;
}

static const struct ureg_provider *prov_find(ureg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nprovs; i++)
		if (!strcmp(cfg->provs[i].name, name))
			return &cfg->provs[i].p;
	return NULL;
}

static struct live_reg *live_find(ureg_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nregs; i++)
		if (!strcmp(cfg->regs[i]->name, name))
			return cfg->regs[i];
	return NULL;
}

/* Iterate a mapping's pairs, reporting duplicate field names. */
#define FOR_PAIRS(L, map, kn, vn, p)                                         \
	for (yaml_node_pair_t *p = (map)->data.mapping.pairs.start;          \
	     p < (map)->data.mapping.pairs.top; p++)                         \
		for (yaml_node_t *kn = node_at(L, p->key),                   \
			     *vn = node_at(L, p->value);                     \
		     kn && vn; kn = NULL)

static bool dup_field(struct load *L, yaml_node_t *map, yaml_node_pair_t *p,
		      const char *name)
{
	for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
		yaml_node_t *k = node_at(L, q->key);
		if (k && k->type == YAML_SCALAR_NODE &&
		    !strcmp((char *)k->data.scalar.value, name)) {
			yaml_node_t *kn = node_at(L, p->key);
			ERR_AT(L, kn, "duplicate field '%s'", name);
			return true;
		}
	}
	return false;
}

static void parse_plugin(struct load *L, yaml_node_t *n, struct espec *e)
{
	const char *path = NULL, *sym = NULL;
	yaml_node_t *pathn = NULL, *symn = NULL;

	if (!collection(L, n, YAML_MAPPING_NODE, "plugin"))
		return;
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = scalar(L, kn, "a plugin field name");
		if (!k || dup_field(L, n, p, k))
			continue;
		if (!strcmp(k, "path")) {
			path = scalar(L, vn, "plugin path");
			pathn = vn;
		} else if (!strcmp(k, "symbol")) {
			sym = scalar(L, vn, "plugin symbol");
			symn = vn;
		} else {
			ERR_AT(L, kn, "unknown plugin field '%s' (expected path, symbol)", k);
		}
	}
	if (!pathn)
		ERR_AT(L, n, "plugin needs a 'path'");
	if (!symn)
		ERR_AT(L, n, "plugin needs a 'symbol'");
	if (!path || !sym || !*path || !*sym) {
		if (path && !*path)
			ERR_AT(L, pathn, "plugin path is empty");
		if (sym && !*sym)
			ERR_AT(L, symn, "plugin symbol is empty");
		return;
	}
	if (L->cfg->flags & UREG_CONFIG_NO_PLUGINS) {
		ERR_AT(L, n, "plugins are disabled for this configuration");
		return;
	}
	char full[PATH_MAX];
	if (path[0] == '/' || !L->dir)
		snprintf(full, sizeof(full), "%s", path);
	else
		snprintf(full, sizeof(full), "%s/%s", L->dir, path);
	e->plugin_path = ureg__strdup(full);
	e->plugin_symbol = ureg__strdup(sym);
	if (!e->plugin_path || !e->plugin_symbol) {
		OOM_AT(L, n);
		return;
	}
	char why[768];
	struct ureg_plugin *pl;
	int prc = ureg__plugin_open(&L->cfg->plugins, full, &pl, why, sizeof(why));
	if (prc == -ENOMEM) {
		OOM_AT(L, pathn);
		return;
	} else if (prc) {
		ERR_AT(L, pathn, "%s", why);
		return;
	}
	const struct ureg_provider *pv = ureg__plugin_sym(pl, sym, why, sizeof(why));
	if (!pv) {
		ERR_AT(L, symn, "%s", why);
		return;
	}
	if (!pv->create) {
		ERR_AT(L, symn, "plugin symbol '%s' is a provider without a create function", sym);
		return;
	}
	e->plugin = pl;
	e->prov = *pv;
}

static void parse_params(struct load *L, yaml_node_t *n, struct espec *e)
{
	if (!collection(L, n, YAML_MAPPING_NODE, "params"))
		return;
	size_t cap = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	e->params = ureg__calloc(cap ? cap : 1, sizeof(*e->params));
	if (!e->params) {
		OOM_AT(L, n);
		return;
	}
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = scalar(L, kn, "a param name");
		const char *v = scalar(L, vn, "a param value");
		if (!k || !v || dup_field(L, n, p, k))
			continue;
		char *kc = ureg__strdup(k), *vc = ureg__strdup(v);
		if (!kc || !vc) {
			ureg__free(kc);
			ureg__free(vc);
			OOM_AT(L, kn);
			continue;
		}
		e->params[e->nparams].name = kc;
		e->params[e->nparams].value = vc;
		e->nparams++;
	}
}

static void parse_entry(struct load *L, yaml_node_t *n, struct rspec *r)
{
	yaml_node_t *keyn = NULL, *kindn = NULL, *scopen = NULL, *provn = NULL,
		    *plugn = NULL, *rankn = NULL;
	struct espec e = { .scope = UREG_SCOPE_TRANSIENT };
	const char *s;
	bool ok = true;

	if (!collection(L, n, YAML_MAPPING_NODE, "an entry"))
		return;
	e.line = (unsigned)n->start_mark.line + 1;
	e.col = (unsigned)n->start_mark.column + 1;
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = scalar(L, kn, "an entry field name");
		if (!k || dup_field(L, n, p, k)) {
			ok = false;
			continue;
		}
		if (!strcmp(k, "key"))
			keyn = vn;
		else if (!strcmp(k, "kind"))
			kindn = vn;
		else if (!strcmp(k, "scope"))
			scopen = vn;
		else if (!strcmp(k, "provider"))
			provn = vn;
		else if (!strcmp(k, "plugin"))
			plugn = vn;
		else if (!strcmp(k, "params"))
			parse_params(L, vn, &e);
		else if (!strcmp(k, "rank"))
			rankn = vn;
		else {
			ERR_AT(L, kn, "unknown entry field '%s' (expected key, kind, scope, rank, provider, plugin, params)", k);
			ok = false;
		}
	}
	if (!keyn) {
		ERR_AT(L, n, "entry has no 'key'");
		ok = false;
	} else if ((s = scalar(L, keyn, "key"))) {
		if (!valid_key(s)) {
			ERR_AT(L, keyn, "invalid key '%.64s': 1..%d printable ASCII characters without spaces",
			       s, UREG_KEY_MAX);
			ok = false;
		} else if (!(e.key = ureg__strdup(s))) {
			OOM_AT(L, keyn);
			ok = false;
		}
	} else {
		ok = false;
	}
	if (!kindn) {
		ERR_AT(L, n, "entry has no 'kind' (singleton or factory)");
		ok = false;
	} else if ((s = scalar(L, kindn, "kind"))) {
		if (!strcmp(s, "factory"))
			e.factory = true;
		else if (strcmp(s, "singleton")) {
			ERR_AT(L, kindn, "bad kind '%.64s' (expected singleton or factory)", s);
			ok = false;
		}
	} else {
		ok = false;
	}
	if (rankn && (s = scalar(L, rankn, "rank"))) {
		char *end;
		long v;

		errno = 0;
		v = strtol(s, &end, 10);
		if (!*s || *end || errno || v < INT_MIN || v > INT_MAX) {
			ERR_AT(L, rankn, "bad rank '%.64s' (expected an integer from %d to %d)",
			       s, INT_MIN, INT_MAX);
			ok = false;
		} else {
			e.rank = (int)v;
		}
	} else if (rankn) {
		ok = false;
	}
	/* a key may appear once per (kind, rank) */
	if (e.key && kindn && rspec_find_ranked(r, e.key, e.factory, e.rank)) {
		if (rankn || rspec_find_ranked(r, e.key, e.factory, e.rank)->rank)
			ERR_AT(L, keyn, "duplicate key '%s' in registry '%s': a %s at rank %d already",
			       e.key, r->name ? r->name : "?",
			       e.factory ? "factory" : "singleton", e.rank);
		else
			ERR_AT(L, keyn, "duplicate key '%s' in registry '%s'", e.key,
			       r->name ? r->name : "?");
		ok = false;
	}
	if (scopen && (s = scalar(L, scopen, "scope"))) {
		if (kindn && !e.factory && ok)
			ERR_AT(L, scopen, "scope applies to factories only"), ok = false;
		else if (!strcmp(s, "context"))
			e.scope = UREG_SCOPE_CONTEXT;
		else if (strcmp(s, "transient")) {
			ERR_AT(L, scopen, "bad scope '%.64s' (expected transient or context)", s);
			ok = false;
		}
	} else if (scopen) {
		ok = false;
	}
	if (provn && plugn) {
		ERR_AT(L, plugn, "entry has both 'provider' and 'plugin'");
		ok = false;
	} else if (!provn && !plugn) {
		ERR_AT(L, n, "entry has no 'provider' or 'plugin'");
		ok = false;
	} else if (provn) {
		if ((s = scalar(L, provn, "provider"))) {
			const struct ureg_provider *pv = prov_find(L->cfg, s);
			if (!pv) {
				ERR_AT(L, provn, "unknown provider '%.64s'", s);
				ok = false;
			} else {
				e.prov = *pv;
				if (!(e.provider = ureg__strdup(s))) {
					OOM_AT(L, provn);
					ok = false;
				}
			}
		} else {
			ok = false;
		}
	} else {
		size_t before = L->nerr;
		parse_plugin(L, plugn, &e);
		if (L->nerr != before || !e.plugin)
			ok = false;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct espec *v = ureg__realloc(r->e, cap * sizeof(*v));
		if (!v) {
			OOM_AT(L, n);
			espec_clear(&e);
			return;
		}
		r->e = v;
		r->cap = cap;
	}
	if (!ok || L->nerr) {
		/* keep the key for duplicate detection even after errors */
		if (e.key) {
			struct espec ph = { .key = e.key, .factory = e.factory,
					    .rank = e.rank };
			e.key = NULL;
			r->e[r->n++] = ph;
		}
		espec_clear(&e);
		return;
	}
	r->e[r->n++] = e;
}

static void parse_registry(struct load *L, yaml_node_t *n, struct spec *s)
{
	yaml_node_t *namen = NULL, *typen = NULL, *reqn = NULL, *entn = NULL;
	const char *name = NULL, *tname;
	struct rspec *r;

	if (!collection(L, n, YAML_MAPPING_NODE, "a registry"))
		return;
	r = ureg__calloc(1, sizeof(*r));
	if (!r) {
		OOM_AT(L, n);
		return;
	}
	r->line = (unsigned)n->start_mark.line + 1;
	r->col = (unsigned)n->start_mark.column + 1;
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = scalar(L, kn, "a registry field name");
		if (!k || dup_field(L, n, p, k))
			continue;
		if (!strcmp(k, "name"))
			namen = vn;
		else if (!strcmp(k, "type"))
			typen = vn;
		else if (!strcmp(k, "required"))
			reqn = vn;
		else if (!strcmp(k, "entries"))
			entn = vn;
		else
			ERR_AT(L, kn, "unknown registry field '%s' (expected name, type, required, entries)", k);
	}
	if (!namen) {
		ERR_AT(L, n, "registry has no 'name'");
	} else if ((name = scalar(L, namen, "registry name"))) {
		if (!valid_key(name) || strlen(name) > UREG_NAME_MAX) {
			ERR_AT(L, namen, "invalid registry name '%.64s': 1..%d printable ASCII characters without spaces",
			       name, UREG_NAME_MAX);
			name = NULL;
		} else {
			for (size_t i = 0; i < s->n; i++)
				if (s->r[i]->name && !strcmp(s->r[i]->name, name)) {
					ERR_AT(L, namen, "duplicate registry '%s' (first at line %u)",
					       name, s->r[i]->line);
					name = NULL;
					break;
				}
		}
	}
	r->name = name ? ureg__strdup(name) : NULL;
	r->file = ureg__strdup(L->file);
	if ((name && !r->name) || !r->file) {
		OOM_AT(L, n);
		rspec_free(r);
		return;
	}
	if (!typen) {
		ERR_AT(L, n, "registry has no 'type'");
	} else if ((tname = scalar(L, typen, "registry type"))) {
		if (!(r->type = type_find(L->cfg, tname))) {
			ERR_AT(L, typen, "unknown type '%.64s'", tname);
		} else if (name) {
			struct live_reg *lr = live_find(L->cfg, name);
			if (lr && lr->rt->app != r->type)
				ERR_AT(L, typen, "registry '%s' was created with type '%s'; a reload cannot change it to '%s'",
				       name, lr->rt->app->name, tname);
		}
	}
	if (entn && collection(L, entn, YAML_SEQUENCE_NODE, "entries")) {
		for (yaml_node_item_t *it = entn->data.sequence.items.start;
		     it < entn->data.sequence.items.top; it++) {
			yaml_node_t *en = node_at(L, *it);
			if (en)
				parse_entry(L, en, r);
		}
	}
	if (reqn && collection(L, reqn, YAML_SEQUENCE_NODE, "required")) {
		for (yaml_node_item_t *it = reqn->data.sequence.items.start;
		     it < reqn->data.sequence.items.top; it++) {
			yaml_node_t *qn = node_at(L, *it);
			const char *q = qn ? scalar(L, qn, "a required key") : NULL;
			if (q && !rspec_find(r, q))
				ERR_AT(L, qn, "required key '%.64s' is missing from registry '%s'",
				       q, name ? name : "?");
		}
	}
	/* keep it even when broken: its name detects duplicates */
	struct rspec **v = ureg__realloc(s->r, (s->n + 1) * sizeof(*v));
	if (!v) {
		OOM_AT(L, n);
		rspec_free(r);
		return;
	}
	s->r = v;
	s->r[s->n++] = r;
}

static void parse_doc(struct load *L, struct spec *s)
{
	yaml_node_t *root = yaml_document_get_root_node(L->doc);
	yaml_node_t *regs = NULL;

	if (!root)
		return; /* an empty file: no registries */
	if (root->type == YAML_SCALAR_NODE && !root->data.scalar.length)
		return;
	if (!collection(L, root, YAML_MAPPING_NODE, "the configuration"))
		return;
	FOR_PAIRS(L, root, kn, vn, p) {
		const char *k = scalar(L, kn, "a top-level field name");
		if (!k || dup_field(L, root, p, k))
			continue;
		if (!strcmp(k, "registries"))
			regs = vn;
		else
			ERR_AT(L, kn, "unknown top-level field '%s' (expected registries)", k);
	}
	if (!regs || !collection(L, regs, YAML_SEQUENCE_NODE, "registries"))
		return;
	for (yaml_node_item_t *it = regs->data.sequence.items.start;
	     it < regs->data.sequence.items.top; it++) {
		yaml_node_t *rn = node_at(L, *it);
		if (rn)
			parse_registry(L, rn, s);
	}
}

static void parse_text(struct load *L, const char *text, size_t len,
		       struct spec *s)
{
	yaml_parser_t parser;
	yaml_document_t doc;

	if (!yaml_parser_initialize(&parser)) {
		oom_at(L, 0, 0);
		return;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		const yaml_mark_t *m = &parser.problem_mark;
		if (parser.context)
			err_add(L, (unsigned)m->line + 1, (unsigned)m->column + 1,
				"YAML syntax: %s %s", parser.problem ? parser.problem : "error",
				parser.context);
		else
			err_add(L, (unsigned)m->line + 1, (unsigned)m->column + 1,
				"YAML syntax: %s", parser.problem ? parser.problem : "error");
		yaml_parser_delete(&parser);
		return;
	}
	L->doc = &doc;
	L->nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
	L->seen = ureg__calloc(L->nnodes + 1, 1);
	if (!L->seen)
		oom_at(L, 0, 0);
	else
		parse_doc(L, s);
	ureg__free(L->seen);
	L->seen = NULL;
	L->doc = NULL;
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
}

/* ---------------------------------------------------------------- diff */

static bool espec_equal(const struct espec *a, const struct espec *b)
{
	if (a->factory != b->factory || a->scope != b->scope || a->rank != b->rank ||
	    a->plugin != b->plugin || a->nparams != b->nparams)
		return false;
	if (!a->provider != !b->provider ||
	    (a->provider && strcmp(a->provider, b->provider)))
		return false;
	if (!a->plugin_symbol != !b->plugin_symbol ||
	    (a->plugin_symbol && strcmp(a->plugin_symbol, b->plugin_symbol)))
		return false;
	for (size_t i = 0; i < a->nparams; i++)
		if (strcmp(a->params[i].name, b->params[i].name) ||
		    strcmp(a->params[i].value, b->params[i].value))
			return false;
	return true;
}

/* Whether @key has the same entries (kind, rank and all) in @a and @b. */
static bool key_equal(const struct rspec *a, const struct rspec *b,
		      const char *key)
{
	size_t na = 0, nb = 0;

	if (!a || !b)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct espec *o;

		if (strcmp(a->e[i].key, key))
			continue;
		na++;
		o = rspec_find_ranked(b, key, a->e[i].factory, a->e[i].rank);
		if (!o || !espec_equal(&a->e[i], o))
			return false;
	}
	for (size_t i = 0; i < b->n; i++)
		nb += !strcmp(b->e[i].key, key);
	return na == nb;
}

static int plan_add(struct ureg_config_plan *p, enum ureg_plan_op op,
		    const char *reg, const char *key)
{
	struct ureg_plan_item *v = ureg__realloc(p->v, (p->count + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	p->v = v;
	v += p->count;
	v->op = op;
	v->registry = ureg__strdup(reg);
	v->key = ureg__strdup(key);
	if (!v->registry || !v->key) {
		ureg__free(v->registry);
		ureg__free(v->key);
		return -ENOMEM;
	}
	p->count++;
	return 0;
}

static int plan_cmp(const void *a, const void *b)
{
	const struct ureg_plan_item *x = a, *y = b;
	int c = strcmp(x->registry, y->registry);
	return c ? c : strcmp(x->key, y->key);
}

void ureg_config_plan_free(struct ureg_config_plan *plan)
{
	if (!plan)
		return;
	for (size_t i = 0; i < plan->count; i++) {
		ureg__free(plan->v[i].registry);
		ureg__free(plan->v[i].key);
	}
	ureg__free(plan->v);
	plan->v = NULL;
	plan->count = 0;
}

void ureg_config_plan_print(const struct ureg_config_plan *plan, FILE *out)
{
	if (!plan || !out)
		return;
	if (!plan->count)
		fprintf(out, "no changes\n");
	for (size_t i = 0; i < plan->count; i++) {
		const struct ureg_plan_item *it = &plan->v[i];
		fprintf(out, "%c %s/%s\n", it->op == UREG_PLAN_ADD ? '+' :
			it->op == UREG_PLAN_CHANGE ? '~' : '-',
			it->registry, it->key);
	}
}

static const struct rspec *spec_find(const struct spec *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->r[i]->name, name))
			return s->r[i];
	return NULL;
}

static int make_plan(ureg_config *cfg, const struct spec *s,
		     struct ureg_config_plan *p)
{
	int rc = 0;

	for (size_t i = 0; i < s->n && !rc; i++) {
		const struct rspec *r = s->r[i];
		struct live_reg *lr = live_find(cfg, r->name);
		const struct rspec *old = lr ? lr->spec : NULL;
		for (size_t j = 0; j < r->n && !rc; j++) {
			const struct espec *o = rspec_find(old, r->e[j].key);
			if (!first_of_key(r, j))
				continue; /* one plan item per key */
			if (!o)
				rc = plan_add(p, UREG_PLAN_ADD, r->name, r->e[j].key);
			else if (!key_equal(old, r, r->e[j].key))
				rc = plan_add(p, UREG_PLAN_CHANGE, r->name, r->e[j].key);
		}
		for (size_t j = 0; old && j < old->n && !rc; j++)
			if (first_of_key(old, j) && !rspec_find(r, old->e[j].key))
				rc = plan_add(p, UREG_PLAN_REMOVE, r->name, old->e[j].key);
	}
	for (size_t i = 0; i < cfg->nregs && !rc; i++) {
		struct live_reg *lr = cfg->regs[i];
		if (!lr->spec || spec_find(s, lr->name))
			continue;
		for (size_t j = 0; j < lr->spec->n && !rc; j++)
			if (first_of_key(lr->spec, j))
				rc = plan_add(p, UREG_PLAN_REMOVE, lr->name, lr->spec->e[j].key);
	}
	if (!rc && p->count)
		qsort(p->v, p->count, sizeof(*p->v), plan_cmp);
	return rc;
}

/* --------------------------------------------------------- build, apply */

/* One change to one key: what the batch will put. */
struct op {
	const char *reg;     /* registry name */
	const char *key;
	struct espec *es;    /* NULL: removal */
	struct rspec *rs;
	void *item;          /* built singleton (owned until put) */
	struct binding *fb;  /* built factory arg (owned until put) */
	bool put;            /* owned by the batch now */
};

static void op_destroy_unput(struct op *o)
{
	if (o->put)
		return;
	if (o->item)
		cfg_item_destroy(o->item);
	if (o->fb)
		binding_free(o->fb);
	o->item = NULL;
	o->fb = NULL;
}

static struct live_reg *live_add(ureg_config *cfg, const char *name,
				 const ureg_type *type)
{
	struct live_reg *lr;

	if (cfg->nregs == cfg->capregs) {
		size_t cap = cfg->capregs ? cfg->capregs * 2 : 8;
		pthread_mutex_lock(&cfg->lock);
		struct live_reg **v = ureg__realloc(cfg->regs, cap * sizeof(*v));
		if (v) {
			cfg->regs = v;
			cfg->capregs = cap;
		}
		pthread_mutex_unlock(&cfg->lock);
		if (!v)
			return NULL;
	}
	if (!(lr = ureg__calloc(1, sizeof(*lr))))
		return NULL;
	if (!(lr->name = ureg__strdup(name)) || !(lr->rt = rtype_new(type)) ||
	    ureg_registry_new(&lr->rt->t, name, &lr->reg))
		goto fail;
	pthread_mutex_lock(&cfg->lock);
	cfg->regs[cfg->nregs++] = lr;
	pthread_mutex_unlock(&cfg->lock);
	return lr;
fail:
	rtype_put(lr->rt);
	ureg__free(lr->name);
	ureg__free(lr);
	return NULL;
}

static void live_free(struct live_reg *lr)
{
	ureg_registry_destroy(lr->reg);
	rtype_put(lr->rt);
	rspec_free(lr->spec);
	ureg__free(lr->name);
	ureg__free(lr);
}

static int build_op(struct load *L, struct op *o, struct cfg_rtype *rt)
{
	struct espec *es = o->es;
	int rc;

	if (!es->factory) {
		struct ureg_params prm = { es->nparams, es->params };
		void *item = NULL;
		rc = es->prov.create(NULL, &prm, es->prov.arg, &item);
		if (rc || !item) {
			err_add(L, es->line, es->col,
				"provider %s%s%s failed to build singleton '%s' of registry '%s': %s",
				es->provider ? "'" : "plugin '",
				es->provider ? es->provider : es->plugin_symbol, "'",
				es->key, o->reg, rc ? ureg_strerror(rc) : "no object returned");
			return rc ? rc : -EINVAL;
		}
		if (item_rec_add(item, es, rt)) {
			if (es->prov.destroy)
				es->prov.destroy(item, NULL);
			else if (rt->app->item_destroy)
				rt->app->item_destroy(item);
			oom_at(L, es->line, es->col);
			return -ENOMEM;
		}
		o->item = item;
		return 0;
	}
	struct binding *b = ureg__calloc(1, sizeof(*b));
	if (!b || !(b->params.v = params_copy(es->params, es->nparams))) {
		ureg__free(b);
		oom_at(L, es->line, es->col);
		return -ENOMEM;
	}
	b->params.count = es->nparams;
	b->prov = es->prov;
	b->rt = rt;
	rtype_get(rt);
	o->fb = b;
	return 0;
}

static int stage_op(ureg_batch *b, struct op *o, const char *file)
{
	char prov[PATH_MAX + 128];
	struct ureg_source src = { 0 };
	struct ureg_factory f = { 0 };
	int rc;

	if (o->es) {
		if (o->es->provider)
			snprintf(prov, sizeof(prov), "%s", o->es->provider);
		else
			snprintf(prov, sizeof(prov), "%s:%s", o->es->plugin_path,
				 o->es->plugin_symbol);
		src.provider = prov;
		src.file = file;
		src.line = o->es->line;
		src.column = o->es->col;
	}
	if (o->fb) {
		f.create = binding_create;
		f.scope = o->es->scope;
		f.arg = o->fb;
		f.arg_free = binding_free;
		f.instance_destroy = o->es->prov.destroy;
		f.anchor = o->es->plugin ? ureg__plugin_anchor(o->es->plugin) : NULL;
	}
	if (o->es)
		rc = ureg_batch_add(b, o->key, o->item, o->fb ? &f : NULL,
				    o->es->rank, &src);
	else
		rc = ureg_batch_put(b, o->key, NULL, NULL, NULL);
	if (!rc)
		o->put = true;
	return rc;
}

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

static int apply(struct load *L, struct spec *s)
{
	ureg_config *cfg = L->cfg;
	struct target *t = NULL;
	struct op *ops = NULL;
	size_t nt = 0, nops = 0, capops = 0;
	int rc = 0;

	t = ureg__calloc(s->n + cfg->nregs + 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		t[nt].name = s->r[i]->name;
		t[nt].rs = s->r[i];
		t[nt].type = s->r[i]->type;
		t[nt].lr = live_find(cfg, s->r[i]->name);
		nt++;
	}
	for (size_t i = 0; i < cfg->nregs; i++)
		if (cfg->regs[i]->spec && !spec_find(s, cfg->regs[i]->name)) {
			t[nt].name = cfg->regs[i]->name;
			t[nt].lr = cfg->regs[i];
			nt++;
		}
	/* ops per target */
	for (size_t i = 0; i < nt; i++) {
		struct rspec *old = t[i].lr ? t[i].lr->spec : NULL;
		struct rspec *nw = t[i].rs;
		t[i].first = nops;
		for (int pass = 0; pass < 2; pass++) {
			struct rspec *r = pass ? old : nw;
			for (size_t j = 0; r && j < r->n; j++) {
				struct espec *e = &r->e[j], *o;
				/* a changed key is restaged whole: every entry
				 * of it in the new file, one batch_add each */
				if (pass == 0) {
					o = rspec_find(old, e->key);
					if (o && key_equal(old, nw, e->key))
						continue;
				} else if (!first_of_key(r, j) || rspec_find(nw, e->key)) {
					continue;
				}
				if (nops == capops) {
					size_t cap = capops ? capops * 2 : 16;
					struct op *v = ureg__realloc(ops, cap * sizeof(*v));
					if (!v) {
						rc = -ENOMEM;
						goto fail;
					}
					ops = v;
					capops = cap;
				}
				ops[nops++] = (struct op){ .reg = t[i].name,
					.key = e->key, .es = pass ? NULL : e,
					.rs = nw };
			}
		}
		t[i].nops = nops - t[i].first;
	}
	/* create the new registries (empty, so invisible to lookups) */
	for (size_t i = 0; i < nt; i++) {
		if (t[i].lr)
			continue;
		if (!(t[i].lr = live_add(cfg, t[i].name, t[i].type))) {
			L->nomem = true;
			err_add(L, t[i].rs->line, t[i].rs->col,
				"cannot create registry '%s': out of memory", t[i].name);
			rc = -ENOMEM;
			goto fail;
		}
		t[i].created = true;
	}
	/* build every object; any failure destroys them all */
	for (size_t i = 0; i < nt; i++)
		for (size_t j = t[i].first; j < t[i].first + t[i].nops; j++)
			if (ops[j].es && build_op(L, &ops[j], t[i].lr->rt) && !rc)
				rc = -EBADMSG; /* reload_text makes it -ENOMEM if L->nomem */
	if (rc)
		goto fail;
	/* stage */
	for (size_t i = 0; i < nt; i++) {
		if (!t[i].nops)
			continue;
		if ((rc = ureg_batch_new(t[i].lr->reg, &t[i].batch))) {
			oom_at(L, 0, 0);
			goto fail;
		}
		for (size_t j = t[i].first; j < t[i].first + t[i].nops; j++)
			if ((rc = stage_op(t[i].batch, &ops[j], t[i].rs ? t[i].rs->file : L->file))) {
				if (rc == -ENOMEM)
					L->nomem = true;
				err_add(L, ops[j].es ? ops[j].es->line : 0,
					ops[j].es ? ops[j].es->col : 0,
					"staging '%s/%s': %s", ops[j].reg, ops[j].key,
					ureg_last_error());
				goto fail;
			}
	}
	/*
	 * Commit: one generation per registry, all registries together -
	 * ureg_batch_commit_all builds every next table before it publishes
	 * any, so running out of memory here changes nothing and leaves the
	 * batches valid for the rollback below.
	 */
	size_t nb = 0;
	ureg_batch **bs = ureg__malloc((nt ? nt : 1) * sizeof(*bs));
	if (!bs) {
		rc = -ENOMEM;
		oom_at(L, 0, 0);
		goto fail;
	}
	for (size_t i = 0; i < nt; i++)
		if (t[i].batch)
			bs[nb++] = t[i].batch;
	rc = nb ? ureg_batch_commit_all(bs, nb, L->generation) : 0;
	ureg__free(bs);
	if (rc) {
		L->nomem = L->nomem || rc == -ENOMEM;
		err_add(L, 0, 0, "committing: %s", ureg_last_error());
		goto fail; /* nothing committed: roll everything back */
	}
	for (size_t i = 0; i < nt; i++)
		t[i].batch = NULL;
	/* the new spec becomes live */
	for (size_t i = 0; i < nt; i++) {
		rspec_free(t[i].lr->spec);
		t[i].lr->spec = t[i].rs;
	}
	for (size_t m = 0; m < s->n; m++)
		s->r[m] = NULL;
	ureg__free(ops);
	ureg__free(t);
	return 0;
fail:
	for (size_t i = 0; i < nt; i++) {
		ureg_batch_abort(t[i].batch);
		t[i].batch = NULL;
	}
	for (size_t j = 0; j < nops; j++)
		op_destroy_unput(&ops[j]);
	/* registries created by this load are empty: destroy them */
	for (size_t i = nt; i-- > 0;) {
		if (!t[i].created)
			continue;
		pthread_mutex_lock(&cfg->lock);
		cfg->nregs--; /* created ones are the last ones */
		pthread_mutex_unlock(&cfg->lock);
		live_free(t[i].lr);
	}
	ureg__free(ops);
	ureg__free(t);
	return rc ? rc : -ENOMEM;
}

/* Keep only the plugins the live specs use in the cache. */
static void plugins_prune(ureg_config *cfg)
{
	for (size_t i = 0; i < cfg->nregs; i++) {
		struct rspec *r = cfg->regs[i]->spec;
		for (size_t j = 0; r && j < r->n; j++)
			if (r->e[j].plugin)
				ureg__plugin_mark(r->e[j].plugin);
	}
	ureg__plugin_prune(&cfg->plugins, false);
}

static int reload_text(ureg_config *cfg, const char *text, size_t len,
		       const char *name, unsigned flags, uint64_t generation,
		       struct ureg_config_plan *plan,
		       struct ureg_config_errors *errs)
{
	struct ureg_config_plan local_plan = { 0 };
	struct load L = { .cfg = cfg, .file = name, .out = errs, .generation = generation };
	struct spec s = { 0 };
	int rc = 0;

	const char *slash = strrchr(name, '/');
	if (slash && !(L.dir = cfg_strndup(name, (size_t)(slash - name) ? (size_t)(slash - name) : 1))) {
		oom_at(&L, 0, 0);
		rc = -ENOMEM;
		goto out;
	}
	parse_text(&L, text, len, &s);
	if (L.nerr) {
		rc = L.nomem ? -ENOMEM : -EBADMSG;
		goto out;
	}
	if (plan || (flags & UREG_CONFIG_DRY_RUN)) {
		if ((rc = make_plan(cfg, &s, plan ? plan : &local_plan))) {
			ureg_config_plan_free(plan); /* no partial plan */
			oom_at(&L, 0, 0);
			goto out;
		}
	}
	if (flags & UREG_CONFIG_DRY_RUN)
		goto out;
	rc = apply(&L, &s);
	/* an allocation failure anywhere wins over the errors it caused */
	if (rc)
		rc = L.nomem || rc == -ENOMEM ? -ENOMEM : -EBADMSG;
out:
	spec_free(&s);
	plugins_prune(cfg);
	ureg_config_plan_free(&local_plan);
	ureg__free(L.dir);
	if (rc)
		ureg_set_error(rc, "config '%s': %zu error(s)%s%s", name, L.nerr,
			  errs && errs->count ? ", first: " : "",
			  errs && errs->count ? errs->v[0].reason : "");
	else
		ureg_set_error(0, NULL);
	return rc;
}

int ureg_config_reload_buffer(ureg_config *cfg, const char *text, size_t len,
			      const char *name, unsigned flags,
			      struct ureg_config_plan *plan,
			      struct ureg_config_errors *errs)
{
	return ureg_config_reload_buffer_gen(cfg, text, len, name, flags, 0, plan, errs);
}

int ureg_config_reload_buffer_gen(ureg_config *cfg, const char *text, size_t len,
				  const char *name, unsigned flags, uint64_t generation,
				  struct ureg_config_plan *plan,
				  struct ureg_config_errors *errs)
{
	int rc;

	ureg__rcu_ensure();
	if (!cfg || (!text && len) || flags & ~UREG_CONFIG_DRY_RUN)
		return ureg_set_error(-EINVAL, "config reload: NULL config or text, or bad flags");
	if (len > CONFIG_MAX_BYTES)
		return ureg_set_error(-EINVAL, "config reload: larger than %u bytes", CONFIG_MAX_BYTES);
	if (ureg_in_read_section())
		return ureg_set_error(-EPERM, "config reload inside a read section would deadlock");
	if (!name)
		name = "<buffer>";
	pthread_mutex_lock(&cfg->reload_lock);
	rc = reload_text(cfg, text ? text : "", len, name, flags, generation, plan, errs);
	pthread_mutex_unlock(&cfg->reload_lock);
	return rc;
}

static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0;
	char *b;

	if (!f)
		return -errno;
	b = ureg__malloc(cap);
	while (b) {
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (n < cap)
			break;
		if (cap >= CONFIG_MAX_BYTES) {
			ureg__free(b);
			fclose(f);
			return -EFBIG;
		}
		char *nb = ureg__realloc(b, cap * 2);
		if (!nb) {
			ureg__free(b);
			b = NULL;
			break;
		}
		b = nb;
		cap *= 2;
	}
	int err = ferror(f);
	fclose(f);
	if (!b)
		return -ENOMEM;
	if (err) {
		ureg__free(b);
		return -EIO;
	}
	*buf = b;
	*len = n;
	return 0;
}

int ureg_config_reload(ureg_config *cfg, const char *path, unsigned flags,
		       struct ureg_config_plan *plan,
		       struct ureg_config_errors *errs)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!cfg || !path)
		return ureg_set_error(-EINVAL, "config reload: NULL config or path");
	if ((rc = read_file(path, &text, &len))) {
		if (errs) {
			struct load L = { .cfg = cfg, .file = path, .out = errs };
			err_add(&L, 0, 0, "cannot read: %s", strerror(-rc));
		}
		return ureg_set_error(rc, "config '%s': cannot read: %s", path, strerror(-rc));
	}
	rc = ureg_config_reload_buffer(cfg, text, len, path, flags, plan, errs);
	ureg__free(text);
	return rc;
}

int ureg_config_load(ureg_config *cfg, const char *path,
		     struct ureg_config_errors *errs)
{
	return ureg_config_reload(cfg, path, 0, NULL, errs);
}

/* ------------------------------------------------------------ lifecycle */

/*
 * fork(): every config's locks are held across it (lib/fork.c, step 1 of
 * its order: per config watch_lock, reload_lock, lock; then
 * item_recs_lock).  Global by necessity: fork handlers have no argument.
 */
static pthread_mutex_t all_configs_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(all_configs);
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void configs_fork_lock(void)
{
	ureg_config *cfg;

	pthread_mutex_lock(&all_configs_lock);
	cds_list_for_each_entry(cfg, &all_configs, all_node) {
		pthread_mutex_lock(&cfg->watch_lock);
		pthread_mutex_lock(&cfg->reload_lock);
		pthread_mutex_lock(&cfg->lock);
	}
	pthread_mutex_lock(&item_recs_lock);
}

static void configs_fork_unlock(void)
{
	ureg_config *cfg;

	pthread_mutex_unlock(&item_recs_lock);
	cds_list_for_each_entry(cfg, &all_configs, all_node) {
		pthread_mutex_unlock(&cfg->lock);
		pthread_mutex_unlock(&cfg->reload_lock);
		pthread_mutex_unlock(&cfg->watch_lock);
	}
	pthread_mutex_unlock(&all_configs_lock);
}

static void configs_fork_register(void)
{
	ureg_atfork_layer(configs_fork_lock, configs_fork_unlock, configs_fork_unlock);
}

int ureg_config_new(ureg_config **out)
{
	if (!out)
		return ureg_set_error(-EINVAL, "config_new: out is NULL");
	pthread_once(&fork_once, configs_fork_register);
	ureg_config *cfg = ureg__calloc(1, sizeof(*cfg));
	if (!cfg)
		return ureg_set_error(-ENOMEM, "config_new: out of memory");
	pthread_mutex_init(&cfg->reload_lock, NULL);
	pthread_mutex_init(&cfg->lock, NULL);
	pthread_mutex_init(&cfg->watch_lock, NULL);
	pthread_mutex_lock(&all_configs_lock);
	cds_list_add_tail(&cfg->all_node, &all_configs);
	pthread_mutex_unlock(&all_configs_lock);
	*out = cfg;
	return 0;
}

int ureg_config_set_flags(ureg_config *cfg, unsigned flags)
{
	if (!cfg || (flags & ~UREG_CONFIG_NO_PLUGINS))
		return ureg_set_error(-EINVAL, "config_set_flags: NULL config or bad flags");
	pthread_mutex_lock(&cfg->reload_lock);
	cfg->flags = flags;
	pthread_mutex_unlock(&cfg->reload_lock);
	return 0;
}

int ureg_config_type_register(ureg_config *cfg, const ureg_type *type)
{
	int rc = 0;

	if (!cfg || !type || !type->name || !valid_key(type->name))
		return ureg_set_error(-EINVAL, "config_type_register: NULL config, type or bad type name");
	pthread_mutex_lock(&cfg->reload_lock);
	pthread_mutex_lock(&cfg->lock);
	if (type_find(cfg, type->name)) {
		rc = ureg_set_error(-EEXIST, "config: type '%s' is already registered", type->name);
	} else {
		struct named_type *v = ureg__realloc(cfg->types, (cfg->ntypes + 1) * sizeof(*v));
		char *n = ureg__strdup(type->name);
		if (v)
			cfg->types = v;
		if (!v || !n) {
			ureg__free(n);
			rc = ureg_set_error(-ENOMEM, "config_type_register: out of memory");
		} else {
			v[cfg->ntypes++] = (struct named_type){ n, type };
		}
	}
	pthread_mutex_unlock(&cfg->lock);
	pthread_mutex_unlock(&cfg->reload_lock);
	return rc;
}

int ureg_config_provider_register(ureg_config *cfg, const char *name,
				  const struct ureg_provider *p)
{
	int rc = 0;

	if (!cfg || !name || !valid_key(name) || !p || !p->create)
		return ureg_set_error(-EINVAL, "config_provider_register: NULL config/provider/create or bad name");
	pthread_mutex_lock(&cfg->reload_lock);
	pthread_mutex_lock(&cfg->lock);
	if (prov_find(cfg, name)) {
		rc = ureg_set_error(-EEXIST, "config: provider '%s' is already registered", name);
	} else {
		struct named_prov *v = ureg__realloc(cfg->provs, (cfg->nprovs + 1) * sizeof(*v));
		char *n = ureg__strdup(name);
		if (v)
			cfg->provs = v;
		if (!v || !n) {
			ureg__free(n);
			rc = ureg_set_error(-ENOMEM, "config_provider_register: out of memory");
		} else {
			v[cfg->nprovs++] = (struct named_prov){ n, *p };
		}
	}
	pthread_mutex_unlock(&cfg->lock);
	pthread_mutex_unlock(&cfg->reload_lock);
	return rc;
}

ureg_registry *ureg_config_registry(ureg_config *cfg, const char *name)
{
	ureg_registry *reg = NULL;

	if (!cfg || !name)
		return NULL;
	pthread_mutex_lock(&cfg->lock);
	struct live_reg *lr = live_find(cfg, name);
	if (lr)
		reg = lr->reg;
	pthread_mutex_unlock(&cfg->lock);
	return reg;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ureg_config_registry_names(ureg_config *cfg, char ***names, size_t *n)
{
	char **v;
	size_t k = 0;

	if (!cfg || !names)
		return ureg_set_error(-EINVAL, "config_registry_names: NULL config or out");
	pthread_mutex_lock(&cfg->lock);
	v = ureg__calloc(cfg->nregs + 1, sizeof(*v));
	for (; v && k < cfg->nregs; k++)
		if (!(v[k] = ureg__strdup(cfg->regs[k]->name)))
			break;
	pthread_mutex_unlock(&cfg->lock);
	if (!v || (k < cfg->nregs && !v[k])) {
		ureg_keys_free(v);
		return ureg_set_error(-ENOMEM, "config_registry_names: out of memory");
	}
	qsort(v, k, sizeof(*v), name_cmp);
	*names = v;
	if (n)
		*n = k;
	return 0;
}

void ureg_config_destroy(ureg_config *cfg)
{
	if (!cfg)
		return;
	pthread_mutex_lock(&all_configs_lock);
	cds_list_del(&cfg->all_node);
	pthread_mutex_unlock(&all_configs_lock);
	ureg__config_sources_stop(cfg); /* source.h: the etcd watcher */
	ureg_config_watch_stop(cfg);
	for (size_t i = 0; i < cfg->nregs; i++)
		live_free(cfg->regs[i]);
	ureg__plugin_prune(&cfg->plugins, true);
	for (size_t i = 0; i < cfg->ntypes; i++)
		ureg__free(cfg->types[i].name);
	for (size_t i = 0; i < cfg->nprovs; i++)
		ureg__free(cfg->provs[i].name);
	ureg__free(cfg->types);
	ureg__free(cfg->provs);
	ureg__free(cfg->regs);
	pthread_mutex_destroy(&cfg->lock);
	pthread_mutex_destroy(&cfg->reload_lock);
	pthread_mutex_destroy(&cfg->watch_lock);
	ureg__free(cfg);
}

/* -------------------------------------------------------------- watcher */

/* The config whose watcher runs on this thread: its callback must not
 * start or stop that watcher (stop joins this very thread). */
static __thread ureg_config *watcher_of;

static void *watch_main(void *arg)
{
	struct cfg_watch *w = arg;
	ureg_config *cfg = w->cfg;

	watcher_of = cfg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		struct pollfd p[2] = { { w->ifd, POLLIN, 0 }, { w->stopfd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		ssize_t n = read(w->ifd, buf, sizeof(buf));
		if (n <= 0)
			continue;
		bool hit = false;
		for (char *q = buf; q < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)q;
			if (ev->len && !strcmp(ev->name, w->base))
				hit = true;
			q += sizeof(*ev) + ev->len;
		}
		if (!hit)
			continue;
		struct ureg_config_errors errs = { 0 };
		int rc = ureg_config_reload(cfg, w->path, 0, NULL, &errs);
		if (w->fn)
			w->fn(cfg, rc, &errs, w->arg);
		ureg_config_errors_free(&errs);
	}
	return NULL;
}

static void watch_free(struct cfg_watch *w)
{
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->stopfd >= 0)
		close(w->stopfd);
	ureg__free(w->path);
	ureg__free(w->base);
	ureg__free(w);
}

int ureg_config_watch_start(ureg_config *cfg, const char *path,
			    ureg_config_watch_fn fn, void *arg)
{
	struct cfg_watch *w;
	char *dir = NULL;
	int rc;

	if (!cfg || !path || !*path)
		return ureg_set_error(-EINVAL, "config_watch_start: NULL config or path");
	if (watcher_of == cfg)
		return ureg_set_error(-EBUSY, "config_watch_start: called from its own watcher");
	pthread_mutex_lock(&cfg->watch_lock);
	if (cfg->watch) {
		pthread_mutex_unlock(&cfg->watch_lock);
		return ureg_set_error(-EBUSY, "config_watch_start: already watching");
	}
	w = ureg__calloc(1, sizeof(*w));
	if (!w) {
		pthread_mutex_unlock(&cfg->watch_lock);
		return ureg_set_error(-ENOMEM, "config_watch_start: out of memory");
	}
	w->cfg = cfg;
	w->fn = fn;
	w->arg = arg;
	w->ifd = w->stopfd = -1;
	w->path = ureg__strdup(path);
	const char *slash = strrchr(path, '/');
	dir = slash ? cfg_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : ureg__strdup(".");
	w->base = ureg__strdup(slash ? slash + 1 : path);
	if (!w->path || !dir || !w->base) {
		rc = -ENOMEM;
		goto fail;
	}
	w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (w->ifd < 0) {
		rc = -errno;
		goto fail;
	}
	w->stopfd = eventfd(0, EFD_CLOEXEC);
	if (w->stopfd < 0) {
		rc = -errno;
		goto fail;
	}
	w->wd = inotify_add_watch(w->ifd, dir, IN_CLOSE_WRITE | IN_MOVED_TO);
	if (w->wd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = -pthread_create(&w->thread, NULL, watch_main, w)))
		goto fail;
	cfg->watch = w;
	pthread_mutex_unlock(&cfg->watch_lock);
	ureg__free(dir);
	return 0;
fail:
	pthread_mutex_unlock(&cfg->watch_lock);
	watch_free(w);
	ureg__free(dir);
	return ureg_set_error(rc, "config_watch_start: %s", ureg_strerror(rc));
}

void ureg_config_watch_stop(ureg_config *cfg)
{
	struct cfg_watch *w;
	uint64_t one = 1;

	/* from the watcher's own callback: joining itself would deadlock */
	if (!cfg || watcher_of == cfg)
		return;
	pthread_mutex_lock(&cfg->watch_lock);
	w = cfg->watch;
	if (!w) {
		pthread_mutex_unlock(&cfg->watch_lock);
		return;
	}
	/* an eventfd write fails only when the counter would overflow,
	 * which one write per watcher cannot reach */
	while (write(w->stopfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(w->thread, NULL);
	cfg->watch = NULL;
	pthread_mutex_unlock(&cfg->watch_lock);
	watch_free(w);
}
