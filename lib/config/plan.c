/* SPDX-License-Identifier: MIT */
/*
 * lib/config/plan.c - the diff of a reload, computed once.
 *
 * cfg_diff() compares each registry of the new file with its live spec
 * and lists the operations a reload performs (struct op, grouped per
 * registry in struct target): every entry of an added or changed key
 * (a changed key is restaged whole, all its (kind, rank) entries), and
 * one removal per key that is gone.  The key's first op carries the plan
 * kind (ADD, CHANGE, REMOVE), so the public plan (dry runs, --plan) is
 * read off the same list apply.c executes - never a second diff.
 *
 * Keys are found through each rspec's key map: the diff is linear in
 * the number of entries.
 */
#include "config_int.h"

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
	const struct espec *x = cfg_rspec_find(a, key), *y = cfg_rspec_find(b, key);
	size_t na = 0, nb = 0;

	if (!x || !y)
		return false;
	for (; x; x = x->next == ESPEC_NONE ? NULL : &a->e[x->next]) {
		const struct espec *o = cfg_rspec_find_ranked(b, key, x->factory, x->rank);
		if (!o || !espec_equal(x, o))
			return false;
		na++;
	}
	for (; y; y = y->next == ESPEC_NONE ? NULL : &b->e[y->next])
		nb++;
	return na == nb;
}

static int op_push(struct diff *d, size_t *cap, struct op o)
{
	if (d->nops == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct op *v = ureg__realloc(d->ops, c * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->ops = v;
		*cap = c;
	}
	d->ops[d->nops++] = o;
	return 0;
}

/* The ops of one target: @nw's added and changed keys, @old's gone ones. */
static int diff_target(struct diff *d, size_t *cap, struct target *t)
{
	struct rspec *old = t->lr ? t->lr->spec : NULL, *nw = t->rs;

	t->first = d->nops;
	for (size_t j = 0; nw && j < nw->n; j++) {
		struct espec *e = &nw->e[j], *first = cfg_rspec_find(nw, e->key);
		enum ureg_plan_op kind = 0;

		if (first == e) {
			bool had = cfg_rspec_find(old, e->key) != NULL;
			e->unchanged = had && key_equal(old, nw, e->key);
			kind = had ? UREG_PLAN_CHANGE : UREG_PLAN_ADD;
		}
		if (first->unchanged)
			continue;
		if (op_push(d, cap, (struct op){ .reg = t->name, .key = e->key,
						 .es = e, .kind = kind }))
			return -ENOMEM;
	}
	for (size_t j = 0; old && j < old->n; j++) {
		struct espec *e = &old->e[j];
		if (cfg_rspec_find(old, e->key) != e || cfg_rspec_find(nw, e->key))
			continue;
		if (op_push(d, cap, (struct op){ .reg = t->name, .key = e->key,
						 .kind = UREG_PLAN_REMOVE }))
			return -ENOMEM;
	}
	t->nops = d->nops - t->first;
	return 0;
}

int cfg_diff(ureg_config *cfg, struct spec *s, struct diff *d)
{
	size_t cap = 0;

	*d = (struct diff){ 0 };
	d->t = ureg__calloc(s->n + cfg->nregs + 1, sizeof(*d->t));
	if (!d->t)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		d->t[d->nt++] = (struct target){ .name = s->r[i]->name,
			.rs = s->r[i], .type = s->r[i]->type,
			.lr = cfg_live_find(cfg, s->r[i]->name) };
	for (size_t i = 0; i < cfg->nregs; i++)
		if (cfg->regs[i]->spec && !cfg_spec_find(s, cfg->regs[i]->name))
			d->t[d->nt++] = (struct target){ .name = cfg->regs[i]->name,
							 .lr = cfg->regs[i] };
	for (size_t i = 0; i < d->nt; i++)
		if (diff_target(d, &cap, &d->t[i])) {
			cfg_diff_free(d);
			return -ENOMEM;
		}
	return 0;
}

void cfg_diff_free(struct diff *d)
{
	ureg__free(d->ops);
	ureg__free(d->t);
	*d = (struct diff){ 0 };
}

/* ---------------------------------------------------------------- plan */

static int plan_cmp(const void *a, const void *b)
{
	const struct ureg_plan_item *x = a, *y = b;
	int c = strcmp(x->registry, y->registry);
	return c ? c : strcmp(x->key, y->key);
}

/* The public plan: one item per key, sorted by registry then key. */
int cfg_diff_plan(const struct diff *d, struct ureg_config_plan *p)
{
	size_t n = 0;

	for (size_t i = 0; i < d->nops; i++)
		n += d->ops[i].kind != 0;
	p->count = 0;
	p->v = NULL;
	if (!n)
		return 0; /* an empty plan holds no memory */
	if (!(p->v = ureg__calloc(n, sizeof(*p->v))))
		return -ENOMEM;
	for (size_t i = 0; i < d->nops; i++) {
		const struct op *o = &d->ops[i];
		struct ureg_plan_item *it = &p->v[p->count];

		if (!o->kind)
			continue;
		it->op = o->kind;
		it->registry = ureg__strdup(o->reg);
		it->key = ureg__strdup(o->key);
		if (!it->registry || !it->key) {
			ureg__free(it->registry);
			ureg__free(it->key);
			ureg_config_plan_free(p);
			return -ENOMEM;
		}
		p->count++;
	}
	if (p->count)
		qsort(p->v, p->count, sizeof(*p->v), plan_cmp);
	return 0;
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
