/* SPDX-License-Identifier: MIT */
/*
 * lib/config/schema.c - the document model (parse.c) becomes a
 * struct spec (registries, their entries, params), every field checked
 * against the format of ureg/config.h and every error collected with the
 * node's line and column.  Names resolve here: a registry's type, an
 * entry's builtin provider (the loader's tables) or plugin (dlopen'd
 * through plugin.c).
 *
 * Duplicates are found with hash maps: registry names in spec->names,
 * keys in each rspec->keys (a key's entries chained by espec.next, one
 * per (kind, rank)), so checking a file is linear in its size.
 */
#include <limits.h>

#include "config_int.h"

/* ------------------------------------------------------------- params */

const char *ureg_params_get(const struct ureg_params *p, const char *name)
{
	if (!p || !name)
		return NULL;
	for (size_t i = 0; i < p->count; i++)
		if (!strcmp(p->v[i].name, name))
			return p->v[i].value;
	return NULL;
}

void cfg_params_free(struct ureg_param *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ureg__free((char *)v[i].name);
		ureg__free((char *)v[i].value);
	}
	ureg__free(v);
}

struct ureg_param *cfg_params_copy(const struct ureg_param *v, size_t n)
{
	struct ureg_param *c = ureg__calloc(n ? n : 1, sizeof(*c));
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i].name = ureg__strdup(v[i].name);
		c[i].value = ureg__strdup(v[i].value);
		if (!c[i].name || !c[i].value) {
			cfg_params_free(c, n);
			return NULL;
		}
	}
	return c;
}

/* -------------------------------------------------------------- model */

static void espec_clear(struct espec *e)
{
	ureg__free(e->key);
	ureg__free(e->provider);
	ureg__free(e->plugin_path);
	ureg__free(e->plugin_symbol);
	cfg_params_free(e->params, e->nparams);
}

void cfg_rspec_free(struct rspec *r)
{
	if (!r)
		return;
	cfg_map_free(&r->keys);
	for (size_t i = 0; i < r->n; i++)
		espec_clear(&r->e[i]);
	ureg__free(r->e);
	ureg__free(r->name);
	ureg__free(r->file);
	ureg__free(r);
}

void cfg_spec_free(struct spec *s)
{
	for (size_t i = 0; i < s->n; i++)
		cfg_rspec_free(s->r[i]);
	ureg__free(s->r);
	cfg_map_free(&s->names);
	s->r = NULL;
	s->n = 0;
}

/* The first entry of @key (a key may have one per (kind, rank)). */
struct espec *cfg_rspec_find(const struct rspec *r, const char *key)
{
	uintptr_t i;

	if (!r || !(i = (uintptr_t)cfg_map_gets(&r->keys, key)))
		return NULL;
	return &r->e[i - 1];
}

/* The entry of @key of that kind at that rank. */
struct espec *cfg_rspec_find_ranked(const struct rspec *r, const char *key,
				    bool factory, int rank)
{
	struct espec *e = cfg_rspec_find(r, key);

	while (e && (e->factory != factory || e->rank != rank))
		e = e->next == ESPEC_NONE ? NULL : &r->e[e->next];
	return e;
}

const struct rspec *cfg_spec_find(const struct spec *s, const char *name)
{
	return cfg_map_gets(&s->names, name);
}

/* Append @e to @r and link it to its key (r->n < r->cap). */
static int rspec_push(struct rspec *r, struct espec *e)
{
	struct espec *first = cfg_rspec_find(r, e->key);

	e->next = ESPEC_NONE;
	if (!first) {
		int rc = cfg_map_puts(&r->keys, e->key, (void *)(uintptr_t)(r->n + 1));
		if (rc)
			return rc;
	} else {
		while (first->next != ESPEC_NONE)
			first = &r->e[first->next];
		first->next = r->n;
	}
	r->e[r->n++] = *e;
	return 0;
}

/* ------------------------------------------------------------- fields */

static void parse_plugin(struct load *L, struct cfg_node *n, struct espec *e)
{
	const char *path = NULL, *sym = NULL;
	struct cfg_node *pathn = NULL, *symn = NULL;

	if (!cfg_collection(L, n, CFG_MAPPING, "plugin"))
		return;
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = cfg_scalar(L, kn, "a plugin field name");
		if (!k || cfg_dup_field(L, n, p, k))
			continue;
		if (!strcmp(k, "path")) {
			path = cfg_scalar(L, vn, "plugin path");
			pathn = vn;
		} else if (!strcmp(k, "symbol")) {
			sym = cfg_scalar(L, vn, "plugin symbol");
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
	struct ureg_plugin *pl = cfg_map_gets(&L->plugins, full);
	if (!pl) {
		int prc = ureg__plugin_open(&L->cfg->plugins, full, &pl, why, sizeof(why));
		if (prc == -ENOMEM) {
			OOM_AT(L, pathn);
			return;
		} else if (prc) {
			ERR_AT(L, pathn, "%s", why);
			return;
		}
		if (cfg_map_puts(&L->plugins, ureg__plugin_path(pl), pl)) {
			OOM_AT(L, pathn);
			return;
		}
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
	if (!cfg_provider_reserved_zero(pv)) {
		ERR_AT(L, symn, "plugin symbol '%s' is a provider with nonzero reserved fields (built for a newer ureg?)", sym);
		return;
	}
	e->plugin = pl;
	e->prov = *pv;
}

static void parse_params(struct load *L, struct cfg_node *n, struct espec *e)
{
	if (!cfg_collection(L, n, CFG_MAPPING, "params"))
		return;
	size_t cap = n->len;
	e->params = ureg__calloc(cap ? cap : 1, sizeof(*e->params));
	if (!e->params) {
		OOM_AT(L, n);
		return;
	}
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = cfg_scalar(L, kn, "a param name");
		const char *v = cfg_scalar(L, vn, "a param value");
		if (!k || !v || cfg_dup_field(L, n, p, k))
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

/* kind:, rank:, scope: of an entry; false when one of them is bad. */
static bool parse_kind_rank_scope(struct load *L, struct rspec *r, struct espec *e,
				  struct cfg_node *keyn, struct cfg_node *kindn,
				  struct cfg_node *rankn, struct cfg_node *scopen,
				  struct cfg_node *n, bool ok)
{
	const char *s;

	if (!kindn) {
		ERR_AT(L, n, "entry has no 'kind' (singleton or factory)");
		ok = false;
	} else if ((s = cfg_scalar(L, kindn, "kind"))) {
		if (!strcmp(s, "factory"))
			e->factory = true;
		else if (strcmp(s, "singleton")) {
			ERR_AT(L, kindn, "bad kind '%.64s' (expected singleton or factory)", s);
			ok = false;
		}
	} else {
		ok = false;
	}
	if (rankn && (s = cfg_scalar(L, rankn, "rank"))) {
		char *end;
		long v;

		errno = 0;
		v = strtol(s, &end, 10);
		if (!*s || *end || errno || v < INT_MIN || v > INT_MAX) {
			ERR_AT(L, rankn, "bad rank '%.64s' (expected an integer from %d to %d)",
			       s, INT_MIN, INT_MAX);
			ok = false;
		} else {
			e->rank = (int)v;
		}
	} else if (rankn) {
		ok = false;
	}
	/* a key may appear once per (kind, rank) */
	struct espec *prev;
	if (e->key && kindn && (prev = cfg_rspec_find_ranked(r, e->key, e->factory, e->rank))) {
		if (rankn || prev->rank)
			ERR_AT(L, keyn, "duplicate key '%s' in registry '%s': a %s at rank %d already",
			       e->key, r->name ? r->name : "?",
			       e->factory ? "factory" : "singleton", e->rank);
		else
			ERR_AT(L, keyn, "duplicate key '%s' in registry '%s'", e->key,
			       r->name ? r->name : "?");
		ok = false;
	}
	if (scopen && (s = cfg_scalar(L, scopen, "scope"))) {
		if (kindn && !e->factory && ok)
			ERR_AT(L, scopen, "scope applies to factories only"), ok = false;
		else if (!strcmp(s, "context"))
			e->scope = UREG_SCOPE_CONTEXT;
		else if (strcmp(s, "transient")) {
			ERR_AT(L, scopen, "bad scope '%.64s' (expected transient or context)", s);
			ok = false;
		}
	} else if (scopen) {
		ok = false;
	}
	return ok;
}

static void parse_entry(struct load *L, struct cfg_node *n, struct rspec *r)
{
	struct cfg_node *keyn = NULL, *kindn = NULL, *scopen = NULL, *provn = NULL,
		    *plugn = NULL, *rankn = NULL;
	struct espec e = { .scope = UREG_SCOPE_TRANSIENT };
	const char *s;
	bool ok = true;

	if (!cfg_collection(L, n, CFG_MAPPING, "an entry"))
		return;
	e.line = n->line;
	e.col = n->col;
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = cfg_scalar(L, kn, "an entry field name");
		if (!k || cfg_dup_field(L, n, p, k)) {
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
	} else if ((s = cfg_scalar(L, keyn, "key"))) {
		if (!cfg_valid_key(s)) {
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
	ok = parse_kind_rank_scope(L, r, &e, keyn, kindn, rankn, scopen, n, ok);
	if (provn && plugn) {
		ERR_AT(L, plugn, "entry has both 'provider' and 'plugin'");
		ok = false;
	} else if (!provn && !plugn) {
		ERR_AT(L, n, "entry has no 'provider' or 'plugin'");
		ok = false;
	} else if (provn) {
		if ((s = cfg_scalar(L, provn, "provider"))) {
			const struct ureg_provider *pv = cfg_prov_find(L->cfg, s);
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
			if (rspec_push(r, &ph)) {
				OOM_AT(L, n);
				ureg__free(ph.key);
			}
		}
		espec_clear(&e);
		return;
	}
	if (rspec_push(r, &e)) {
		OOM_AT(L, n);
		espec_clear(&e);
	}
}

/* ---------------------------------------------------------- registries */

static void parse_registry(struct load *L, struct cfg_node *n, struct spec *s)
{
	struct cfg_node *namen = NULL, *typen = NULL, *reqn = NULL, *entn = NULL;
	const char *name = NULL, *tname;
	struct rspec *r;

	if (!cfg_collection(L, n, CFG_MAPPING, "a registry"))
		return;
	r = ureg__calloc(1, sizeof(*r));
	if (!r) {
		OOM_AT(L, n);
		return;
	}
	r->line = n->line;
	r->col = n->col;
	FOR_PAIRS(L, n, kn, vn, p) {
		const char *k = cfg_scalar(L, kn, "a registry field name");
		if (!k || cfg_dup_field(L, n, p, k))
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
	} else if ((name = cfg_scalar(L, namen, "registry name"))) {
		const struct rspec *first;
		if (!cfg_valid_key(name) || strlen(name) > UREG_NAME_MAX) {
			ERR_AT(L, namen, "invalid registry name '%.64s': 1..%d printable ASCII characters without spaces",
			       name, UREG_NAME_MAX);
			name = NULL;
		} else if ((first = cfg_spec_find(s, name))) {
			ERR_AT(L, namen, "duplicate registry '%s' (first at line %u)",
			       name, first->line);
			name = NULL;
		}
	}
	r->name = name ? ureg__strdup(name) : NULL;
	r->file = ureg__strdup(L->file);
	if ((name && !r->name) || !r->file) {
		OOM_AT(L, n);
		cfg_rspec_free(r);
		return;
	}
	if (!typen) {
		ERR_AT(L, n, "registry has no 'type'");
	} else if ((tname = cfg_scalar(L, typen, "registry type"))) {
		if (!(r->type = cfg_type_find(L->cfg, tname))) {
			ERR_AT(L, typen, "unknown type '%.64s'", tname);
		} else if (name) {
			struct live_reg *lr = cfg_live_find(L->cfg, name);
			if (lr && lr->rt->app != r->type)
				ERR_AT(L, typen, "registry '%s' was created with type '%s'; a reload cannot change it to '%s'",
				       name, lr->rt->app->name, tname);
		}
	}
	if (entn && cfg_collection(L, entn, CFG_SEQUENCE, "entries")) {
		if (cfg_map_reserve(&r->keys, entn->len))
			OOM_AT(L, entn);
		else
			FOR_ITEMS(L, entn, en)
				parse_entry(L, en, r);
	}
	if (reqn && cfg_collection(L, reqn, CFG_SEQUENCE, "required")) {
		FOR_ITEMS(L, reqn, qn) {
			const char *q = cfg_scalar(L, qn, "a required key");
			if (q && !cfg_rspec_find(r, q))
				ERR_AT(L, qn, "required key '%.64s' is missing from registry '%s'",
				       q, name ? name : "?");
		}
	}
	/* keep it even when broken: its name detects duplicates */
	struct rspec **v = ureg__realloc(s->r, (s->n + 1) * sizeof(*v));
	if (!v || (r->name && cfg_map_puts(&s->names, r->name, r))) {
		if (v)
			s->r = v;
		OOM_AT(L, n);
		cfg_rspec_free(r);
		return;
	}
	s->r = v;
	s->r[s->n++] = r;
}

void cfg_parse_doc(struct load *L, struct spec *s)
{
	struct cfg_node *root = L->doc->root;
	struct cfg_node *regs = NULL;

	if (!root)
		return; /* an empty file: no registries */
	if (root->type == CFG_SCALAR && !root->len)
		return;
	if (!cfg_collection(L, root, CFG_MAPPING, "the configuration"))
		return;
	FOR_PAIRS(L, root, kn, vn, p) {
		const char *k = cfg_scalar(L, kn, "a top-level field name");
		if (!k || cfg_dup_field(L, root, p, k))
			continue;
		if (!strcmp(k, "registries"))
			regs = vn;
		else
			ERR_AT(L, kn, "unknown top-level field '%s' (expected registries)", k);
	}
	if (!regs || !cfg_collection(L, regs, CFG_SEQUENCE, "registries"))
		return;
	FOR_ITEMS(L, regs, rn)
		parse_registry(L, rn, s);
}
