/* SPDX-License-Identifier: MIT */
/*
 * lib/config/apply.c - build, stage and commit a reload's diff.
 *
 * Ownership across the all-or-nothing pipeline (plan.c made the ops):
 *
 *   build   run singleton constructors, make factory bindings: every
 *           object made here is destroyed again if anything fails;
 *   stage   one ureg_batch per changed registry; from a successful
 *           ureg_batch_add on, the batch owns the object;
 *   commit  ureg_batch_commit_all, one generation per registry; the new
 *           spec becomes live.
 *
 * Singletons made by a provider must be destroyed by that provider and
 * must keep their plugin loaded until after their destructor ran, but a
 * type's item_destroy(item) only gets the item.  So a registry the config
 * creates uses a private copy of the application's type (struct
 * cfg_rtype: same name and parent) whose item_destroy finds the item's
 * record in item_recs - a process-wide pointer map (map.h), because
 * item_destroy has no other way to reach it - to call the provider's
 * destructor and drop the plugin anchor.  The copy is reference counted
 * (registry, records, factory bindings): an item or instance may outlive
 * the config that made it.  Removing the table needs a per-singleton
 * argument in libureg's item_destroy (include/ureg/ureg.h).
 */
#include <limits.h>

#include "config_int.h"

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
 * Touched only when a config singleton is made or destroyed.  Held
 * across fork() (cfg_items_lock, config.c's fork layer). */
struct item_rec {
	struct item_rec *next; /* the same object made again (a provider
				* may return one static object twice) */
	void (*destroy)(void *obj, ureg_ctx *ctx);
	ureg_anchor *anchor;
	struct cfg_rtype *rt;
};
static pthread_mutex_t item_recs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cfg_map item_recs;

void cfg_items_lock(void)
{
	pthread_mutex_lock(&item_recs_lock);
}

void cfg_items_unlock(void)
{
	pthread_mutex_unlock(&item_recs_lock);
}

static void cfg_item_destroy(void *item)
{
	struct item_rec *r;

	pthread_mutex_lock(&item_recs_lock);
	r = cfg_map_delp(&item_recs, item);
	if (r && r->next)
		(void)cfg_map_putp(&item_recs, item, r->next); /* a slot just freed */
	if (!item_recs.n)
		cfg_map_free(&item_recs); /* nothing left: no memory held */
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
	int rc;

	if (!r)
		return -ENOMEM;
	r->destroy = es->prov.destroy;
	r->rt = rt;
	pthread_mutex_lock(&item_recs_lock);
	rc = cfg_map_putp(&item_recs, item, r);
	if (rc == -EEXIST) {
		struct item_rec *head = cfg_map_getp(&item_recs, item);
		r->next = head->next;
		head->next = r;
		rc = 0;
	}
	pthread_mutex_unlock(&item_recs_lock);
	if (rc) {
		ureg__free(r);
		return rc;
	}
	rtype_get(rt);
	if (es->plugin) {
		r->anchor = ureg__plugin_anchor(es->plugin);
		ureg_anchor_get(r->anchor);
	}
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
	cfg_params_free((struct ureg_param *)b->params.v, b->params.count);
	rtype_put(b->rt);
	ureg__free(b);
}

/* ---------------------------------------------------- live registries */

static struct live_reg *live_add(ureg_config *cfg, const char *name,
				 const ureg_type *type)
{
	struct live_reg *lr;
	int rc = -ENOMEM;

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
	if (!(rc = cfg_map_puts(&cfg->reg_names, lr->name, lr)))
		cfg->regs[cfg->nregs++] = lr;
	pthread_mutex_unlock(&cfg->lock);
	if (!rc)
		return lr;
fail:
	ureg_registry_destroy(lr->reg);
	rtype_put(lr->rt);
	ureg__free(lr->name);
	ureg__free(lr);
	return NULL;
}

void cfg_live_free(struct live_reg *lr)
{
	ureg_registry_destroy(lr->reg);
	rtype_put(lr->rt);
	cfg_rspec_free(lr->spec);
	ureg__free(lr->name);
	ureg__free(lr);
}

/* ------------------------------------------------------- build, stage */

void cfg_op_destroy_unput(struct op *o)
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

static int build_op(struct load *L, struct op *o, struct cfg_rtype *rt)
{
	struct espec *es = o->es;
	int rc;

	if (!es->factory) {
		struct ureg_params prm = { es->nparams, es->params };
		void *item = NULL;
		rc = es->prov.create(NULL, &prm, es->prov.arg, &item);
		if (rc || !item) {
			cfg_err_add(L, es->line, es->col,
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
			cfg_oom_at(L, es->line, es->col);
			return -ENOMEM;
		}
		o->item = item;
		return 0;
	}
	struct binding *b = ureg__calloc(1, sizeof(*b));
	if (!b || !(b->params.v = cfg_params_copy(es->params, es->nparams))) {
		ureg__free(b);
		cfg_oom_at(L, es->line, es->col);
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

/* --------------------------------------------------------------- apply */

/* Roll back: abort the batches, destroy what was built and not put,
 * destroy the registries this load created (empty, the last ones). */
static void apply_undo(ureg_config *cfg, struct diff *d)
{
	for (size_t i = 0; i < d->nt; i++) {
		ureg_batch_abort(d->t[i].batch);
		d->t[i].batch = NULL;
	}
	for (size_t j = 0; j < d->nops; j++)
		cfg_op_destroy_unput(&d->ops[j]);
	for (size_t i = d->nt; i-- > 0;) {
		if (!d->t[i].created)
			continue;
		pthread_mutex_lock(&cfg->lock);
		cfg_map_del(&cfg->reg_names, d->t[i].lr->name, strlen(d->t[i].lr->name));
		cfg->nregs--; /* created ones are the last ones */
		pthread_mutex_unlock(&cfg->lock);
		cfg_live_free(d->t[i].lr);
	}
}

static int stage_all(struct load *L, struct diff *d)
{
	int rc;

	for (size_t i = 0; i < d->nt; i++) {
		struct target *t = &d->t[i];
		if (!t->nops)
			continue;
		if ((rc = ureg_batch_new(t->lr->reg, &t->batch))) {
			cfg_oom_at(L, 0, 0);
			return rc;
		}
		for (size_t j = t->first; j < t->first + t->nops; j++) {
			struct op *o = &d->ops[j];
			if ((rc = stage_op(t->batch, o, t->rs ? t->rs->file : L->file))) {
				if (rc == -ENOMEM)
					L->nomem = true;
				cfg_err_add(L, o->es ? o->es->line : 0, o->es ? o->es->col : 0,
					    "staging '%s/%s': %s", o->reg, o->key,
					    ureg_last_error());
				return rc;
			}
		}
	}
	return 0;
}

int cfg_apply(struct load *L, struct spec *s, struct diff *d)
{
	ureg_config *cfg = L->cfg;
	int rc = 0;

	/* create the new registries (empty, so invisible to lookups) */
	for (size_t i = 0; i < d->nt; i++) {
		struct target *t = &d->t[i];
		if (t->lr)
			continue;
		if (!(t->lr = live_add(cfg, t->name, t->type))) {
			L->nomem = true;
			cfg_err_add(L, t->rs->line, t->rs->col,
				    "cannot create registry '%s': out of memory", t->name);
			rc = -ENOMEM;
			goto fail;
		}
		t->created = true;
	}
	/* build every object; any failure destroys them all */
	for (size_t i = 0; i < d->nt; i++)
		for (size_t j = d->t[i].first; j < d->t[i].first + d->t[i].nops; j++)
			if (d->ops[j].es && build_op(L, &d->ops[j], d->t[i].lr->rt) && !rc)
				rc = -EBADMSG; /* the caller makes it -ENOMEM if L->nomem */
	if (rc || (rc = stage_all(L, d)))
		goto fail;
	/*
	 * Commit: one generation per registry, all registries together -
	 * ureg_batch_commit_all builds every next table before it publishes
	 * any, so running out of memory here changes nothing and leaves the
	 * batches valid for the rollback.
	 */
	size_t nb = 0;
	ureg_batch **bs = ureg__malloc((d->nt ? d->nt : 1) * sizeof(*bs));
	if (!bs) {
		rc = -ENOMEM;
		cfg_oom_at(L, 0, 0);
		goto fail;
	}
	for (size_t i = 0; i < d->nt; i++)
		if (d->t[i].batch)
			bs[nb++] = d->t[i].batch;
	rc = nb ? ureg_batch_commit_all(bs, nb, 0) : 0;
	ureg__free(bs);
	if (rc) {
		L->nomem = L->nomem || rc == -ENOMEM;
		cfg_err_add(L, 0, 0, "committing: %s", ureg_last_error());
		goto fail; /* nothing committed: roll everything back */
	}
	for (size_t i = 0; i < d->nt; i++)
		d->t[i].batch = NULL;
	/* the new spec becomes live */
	for (size_t i = 0; i < d->nt; i++) {
		cfg_rspec_free(d->t[i].lr->spec);
		d->t[i].lr->spec = d->t[i].rs;
	}
	for (size_t m = 0; m < s->n; m++)
		s->r[m] = NULL;
	return 0;
fail:
	apply_undo(cfg, d);
	return rc ? rc : -ENOMEM;
}
