/* SPDX-License-Identifier: MIT */
/*
 * Single-key changes and ranking.  A key may hold several singletons and
 * factories, each at a rank (internal.h, struct ureg_prov); a change
 * (register, replace, unregister, and the unregister of ureg_drain) builds
 * the key's next provider set and publishes it as one new entry.  Also the
 * introspection of that set: ureg_entry_info and ureg_providers.
 */
#include <stdlib.h>
#include "registry_int.h"

/* ------------------------------------------------------------ mutations */

/* Providers gathered on the stack up to this many (a bigger set mallocs). */
#define PROV_STACK 8

/* The provider of a kind at @rank (@by_rank) or the highest-ranked one;
 * -1 when there is none.  Ranks are unique per kind. */
static long prov_find(const struct ureg_prov *v, size_t n, bool singleton,
		      bool by_rank, int rank)
{
	long best = -1;

	for (size_t i = 0; i < n; i++) {
		if (singleton ? !v[i].ib : !v[i].fb)
			continue;
		if (by_rank ? v[i].rank == rank :
		    best < 0 || v[i].rank > v[best].rank)
			best = (long)i;
	}
	return best;
}

/* Highest rank first; a singleton before a factory of the same rank. */
static int prov_cmp(const void *a, const void *b)
{
	const struct ureg_prov *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? 1 : -1;
	return (x->ib == NULL) - (y->ib == NULL);
}

/* Remove v[i] (order does not matter: the survivors are sorted later). */
static void prov_remove(struct ureg_prov *v, size_t *n, long i)
{
	v[i] = v[--*n];
}

/*
 * One single-key change.  The boxes it makes are allocated before the
 * writer mutex; under it, the key's provider set (old entry's, plus or
 * minus this change) is gathered, checked and laid out in the new entry
 * (top singleton and top factory in the hot fields, the rest in the cold
 * part), and published with one swap.  Old boxes the new entry keeps get
 * their reference only once nothing can fail any more.  On failure
 * nothing is published and the caller's item / factory arg are still the
 * caller's.
 */
int ureg__mutate(ureg_registry *reg, const char *key,
		 const struct ureg__change *c, struct ureg__drain_grab *grab)
{
	const enum ureg__op op = c->op;
	void *item = c->item;
	const struct ureg_factory *f = c->f;
	const unsigned what = c->what;
	struct ureg_key k;
	struct ureg_entry *ne = NULL, *old = NULL;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct ureg_item_box *nib = NULL, *rm_ib = NULL;
	struct ureg_factory_box *nfb = NULL, *rm_fb = NULL;
	struct ureg_event_node *ev = NULL;
	struct ureg_prov stack[PROV_STACK], *all = stack, *more = NULL;
	size_t n = 0, nmore = 0;
	long si, fi;
	struct cds_lfht *ht;
	enum ureg_event_kind kind;
	int rc;

	ureg__rcu_ensure();
	if (!reg)
		return ureg__err(-EINVAL, "registry is NULL");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	switch (op) {
	case OP_REGISTER:
	case OP_REPLACE:
		if (!item)
			return ureg__err(-EINVAL, "registry '%s': item for '%s' is NULL",
					 reg->name, key);
		kind = op == OP_REGISTER ? UREG_EV_REGISTERED : UREG_EV_REPLACED;
		break;
	case OP_FACTORY:
	case OP_REPLACE_FACTORY:
		if (!f || !f->create)
			return ureg__err(-EINVAL, "registry '%s': factory for '%s' has no create function",
					 reg->name, key);
		if (f->scope != UREG_SCOPE_TRANSIENT &&
		    f->scope != UREG_SCOPE_CONTEXT)
			return ureg__err(-EINVAL, "registry '%s': factory for '%s' has bad scope %d",
					 reg->name, key, (int)f->scope);
		if (!ureg__reserved_zero(f->reserved))
			return ureg__err(-EINVAL, "registry '%s': factory for '%s' has nonzero reserved fields",
					 reg->name, key);
		kind = op == OP_FACTORY ? UREG_EV_REGISTERED : UREG_EV_REPLACED;
		break;
	case OP_UNREGISTER:
	default:
		if (what == 0 || (what & ~(unsigned)UREG_BOTH))
			return ureg__err(-EINVAL, "unregister: bad flags 0x%x", what);
		kind = UREG_EV_UNREGISTERED;
		break;
	}

	/* allocate everything up front */
	rc = -ENOMEM;
	ne = ureg__entry_alloc(&k);
	if (!ne)
		goto fail;
	if (item && !(nib = ureg__ibox_new(reg, item)))
		goto fail;
	if (f && !(nfb = ureg__fbox_new(reg, &k, f)))
		goto fail;
	if (ureg__has_listeners(reg) &&
	    !(ev = ureg__event_prepare(reg, kind, key)))
		goto fail;

	pthread_mutex_lock(&reg->writer);
	ht = reg->ht;
	urcu_memb_read_lock();
	cds_lfht_lookup(ht, k.hash, ureg__entry_match, &k, &it);
	node = cds_lfht_iter_get_node(&it);
	old = node ? caa_container_of(node, struct ureg_entry, node) : NULL;
	rc = 0;

	/* the key's providers: the old entry's, and room for one more */
	if (old) {
		struct ureg_entry_cold *oc = ureg__cold(old);
		size_t total = (oc->ibox != NULL) + (old->fbox != NULL) + oc->nmore;

		if (total + 1 > PROV_STACK &&
		    !(all = ureg__malloc((total + 1) * sizeof(*all)))) {
			all = stack;
			rc = -ENOMEM;
		} else {
			if (oc->ibox)
				all[n++] = (struct ureg_prov){ oc->srank, oc->ibox, NULL };
			if (old->fbox)
				all[n++] = (struct ureg_prov){ oc->frank, NULL, old->fbox };
			if (oc->nmore)
				memcpy(all + n, oc->more, oc->nmore * sizeof(*all));
			n += oc->nmore;
		}
	}
	switch (rc ? -1 : (int)op) {
	case OP_REGISTER:
		if (prov_find(all, n, true, true, c->rank) >= 0)
			rc = ureg__err(-EEXIST, "registry '%s': key '%s' already has a singleton at rank %d",
				       reg->name, key, c->rank);
		else
			all[n++] = (struct ureg_prov){ c->rank, nib, NULL };
		break;
	case OP_FACTORY:
		if (prov_find(all, n, false, true, c->rank) >= 0)
			rc = ureg__err(-EEXIST, "registry '%s': key '%s' already has a factory at rank %d",
				       reg->name, key, c->rank);
		else
			all[n++] = (struct ureg_prov){ c->rank, NULL, nfb };
		break;
	case OP_REPLACE:
		if ((si = prov_find(all, n, true, false, 0)) < 0)
			rc = ureg__err(-ENOENT, "registry '%s': key '%s' has no singleton to replace",
				       reg->name, key);
		else
			all[si].ib = nib;
		break;
	case OP_REPLACE_FACTORY:
		if ((fi = prov_find(all, n, false, false, 0)) < 0)
			rc = ureg__err(-ENOENT, "registry '%s': key '%s' has no factory to replace",
				       reg->name, key);
		else
			all[fi].fb = nfb;
		break;
	case OP_UNREGISTER:
		if ((what & UREG_SINGLETON) &&
		    (si = prov_find(all, n, true, c->by_rank, c->rank)) >= 0) {
			rm_ib = all[si].ib;
			prov_remove(all, &n, si);
		}
		if ((what & UREG_FACTORY) &&
		    (fi = prov_find(all, n, false, c->by_rank, c->rank)) >= 0) {
			rm_fb = all[fi].fb;
			prov_remove(all, &n, fi);
		}
		if (!rm_ib && !rm_fb) {
			if (c->by_rank)
				rc = ureg__err(-ENOENT, "registry '%s': key '%s' has nothing to unregister at rank %d",
					       reg->name, key, c->rank);
			else
				rc = ureg__err(-ENOENT, "registry '%s': key '%s' has nothing to unregister",
					       reg->name, key);
		}
		break;
	default:
		break;
	}
	if (rc == 0 && old && ureg__entry_copy_source(ne, old))
		rc = -ENOMEM;
	si = prov_find(all, n, true, false, 0);
	fi = prov_find(all, n, false, false, 0);
	nmore = n - (si >= 0) - (fi >= 0);
	if (rc == 0 && nmore && !(more = ureg__malloc(nmore * sizeof(*more))))
		rc = -ENOMEM;
	if (rc) {
		urcu_memb_read_unlock();
		pthread_mutex_unlock(&reg->writer);
		if (all != stack)
			ureg__free(all);
		goto fail;
	}

	/* nothing can fail any more: the old boxes kept get their reference */
	for (size_t i = 0; i < n; i++) {
		if (all[i].ib && all[i].ib != nib)
			ureg__ibox_get(all[i].ib);
		if (all[i].fb && all[i].fb != nfb)
			ureg__fbox_get(all[i].fb);
	}
	if (grab) {
		/* old stays alive until its grace period: safe to take */
		if ((grab->ib = rm_ib))
			ureg__ibox_get(rm_ib);
		if ((grab->fb = rm_fb))
			ureg__fbox_get(rm_fb);
	}
	if (si >= 0) {
		ureg__cold(ne)->ibox = all[si].ib;
		ureg__cold(ne)->srank = all[si].rank;
		ne->item = all[si].ib->item;
	}
	if (fi >= 0) {
		ureg__entry_set_fbox(ne, all[fi].fb);
		ureg__cold(ne)->frank = all[fi].rank;
	}
	if (nmore) {
		size_t j = 0;

		for (size_t i = 0; i < n; i++)
			if ((long)i != si && (long)i != fi)
				more[j++] = all[i];
		qsort(more, nmore, sizeof(*more), prov_cmp);
		ureg__cold(ne)->more = more;
		ureg__cold(ne)->nmore = (uint32_t)nmore;
	}
	if (all != stack)
		ureg__free(all);
	uint64_t gen = reg->generation + 1;
	ureg__cold(ne)->generation = gen;
	/* stamp before (odd: in flight) and after publishing (internal.h,
	 * "Stamps"; registry.c) */
	ureg__stamp_key_begin(reg, k.hash);
	if (!old) {
		cds_lfht_add_unique(ht, k.hash, ureg__entry_match, &k, &ne->node);
		__atomic_store_n(&reg->count, reg->count + 1, __ATOMIC_RELAXED);
	} else if (n == 0) {
		cds_lfht_del(ht, &old->node);
		__atomic_store_n(&reg->count, reg->count - 1, __ATOMIC_RELAXED);
		ureg__entry_free_unpublished(ne);
		ne = NULL;
	} else {
		cds_lfht_replace(ht, &it, k.hash, ureg__entry_match, &k, &ne->node);
	}
	urcu_memb_read_unlock();
	ureg__stamp_key(reg, k.hash);
	__atomic_store_n(&reg->generation, gen, __ATOMIC_RELAXED);
	if (old)
		ureg__entry_retire(old);
	if (ev)
		ureg__event_queue(reg, ev, gen);
	pthread_mutex_unlock(&reg->writer);
	if (ev)
		ureg__events_flush(reg);
	ureg__maybe_resize(reg);
	ureg__clear_err();
	return 0;

fail:
	if (rc == -ENOMEM)
		ureg__err(-ENOMEM, "registry '%s': out of memory registering '%s'",
			  reg->name, key);
	/* only boxes made by this call can be here: old boxes get their
	 * references only once nothing can fail any more */
	if (nib)
		ureg__ibox_free_unused(nib);
	if (nfb)
		ureg__fbox_free_unused(nfb);
	ureg__free(more);
	ureg__entry_free_unpublished(ne);
	ureg__free(ev);
	return rc;
}

int ureg_register(ureg_registry *reg, const char *key, void *item)
{
	return ureg_register_ranked(reg, key, item, 0);
}

int ureg_register_ranked(ureg_registry *reg, const char *key, void *item,
			 int rank)
{
	struct ureg__change c = { .op = OP_REGISTER, .item = item, .rank = rank };

	return ureg__mutate(reg, key, &c, NULL);
}

int ureg_register_factory(ureg_registry *reg, const char *key,
			  const struct ureg_factory *f)
{
	return ureg_register_factory_ranked(reg, key, f, 0);
}

int ureg_register_factory_ranked(ureg_registry *reg, const char *key,
				 const struct ureg_factory *f, int rank)
{
	struct ureg__change c = { .op = OP_FACTORY, .f = f, .rank = rank };

	if (!f)
		return ureg__err(-EINVAL, "register_factory: factory is NULL");
	return ureg__mutate(reg, key, &c, NULL);
}

int ureg_replace(ureg_registry *reg, const char *key, void *item)
{
	struct ureg__change c = { .op = OP_REPLACE, .item = item };

	return ureg__mutate(reg, key, &c, NULL);
}

int ureg_replace_factory(ureg_registry *reg, const char *key,
			 const struct ureg_factory *f)
{
	struct ureg__change c = { .op = OP_REPLACE_FACTORY, .f = f };

	if (!f)
		return ureg__err(-EINVAL, "replace_factory: factory is NULL");
	return ureg__mutate(reg, key, &c, NULL);
}

int ureg_unregister(ureg_registry *reg, const char *key, unsigned what)
{
	struct ureg__change c = { .op = OP_UNREGISTER, .what = what };

	return ureg__mutate(reg, key, &c, NULL);
}

int ureg_unregister_ranked(ureg_registry *reg, const char *key, unsigned what,
			   int rank)
{
	struct ureg__change c = { .op = OP_UNREGISTER, .what = what, .rank = rank,
			    .by_rank = true };

	return ureg__mutate(reg, key, &c, NULL);
}
int ureg_entry_info(ureg_registry *reg, const char *key,
		    struct ureg_entry_info *info)
{
	struct ureg_entry *e = NULL;
	int rc;

	if ((rc = ureg__find_in_section(reg, key, info, "entry_info", &e)))
		return rc;
	if (!e)
		return ureg__miss(-ENOENT, "entry_info: no such key:", reg, key);
	memset(info, 0, sizeof(*info));
	info->has_singleton = e->item != NULL;
	info->has_factory = e->fbox != NULL;
	info->scope = e->fbox ? e->fbox->f.scope : UREG_SCOPE_TRANSIENT;
	info->generation = ureg__cold(e)->generation;
	info->provider = ureg__cold(e)->provider;
	info->source_file = ureg__cold(e)->source_file;
	info->source_line = ureg__cold(e)->source_line;
	info->source_column = ureg__cold(e)->source_column;
	info->rank = e->item ? ureg__cold(e)->srank : ureg__cold(e)->frank;
	info->providers = (e->item != NULL) + (e->fbox != NULL) + ureg__cold(e)->nmore;
	return 0;
}

static void provider_fill(struct ureg_provider_info *p, int rank, bool active,
			  const struct ureg_item_box *ib,
			  const struct ureg_factory_box *fb)
{
	memset(p, 0, sizeof(*p));
	p->what = ib ? UREG_SINGLETON : UREG_FACTORY;
	p->rank = rank;
	p->active = active;
	p->item = ib ? ib->item : NULL;
	p->scope = fb ? fb->f.scope : UREG_SCOPE_TRANSIENT;
}

int ureg_providers(ureg_registry *reg, const char *key,
		   struct ureg_provider_info *out, size_t cap)
{
	struct ureg_entry *e = NULL;
	struct ureg_entry_cold *c;
	struct ureg_provider_info tmp[2];
	size_t n = 0, top = 0;
	int rc;

	if (!out && cap)
		return ureg__err(-EINVAL, "providers: out is NULL but cap is %zu", cap);
	if ((rc = ureg__find_in_section(reg, key, &cap /* out checked above */, "providers", &e)))
		return rc;
	if (!e)
		return ureg__miss(-ENOENT, "providers: no such key:", reg, key);
	c = ureg__cold(e);
	/* the two active ones, in rank order, then the rest (already sorted):
	 * merged, so the whole list is in rank order */
	if (c->ibox)
		provider_fill(&tmp[top++], c->srank, true, c->ibox, NULL);
	if (e->fbox)
		provider_fill(&tmp[top++], c->frank, true, NULL, e->fbox);
	if (top == 2 && tmp[1].rank > tmp[0].rank) {
		struct ureg_provider_info t = tmp[0];
		tmp[0] = tmp[1];
		tmp[1] = t;
	}
	for (size_t i = 0, j = 0; i < top || j < c->nmore; n++) {
		struct ureg_provider_info p;

		if (i < top && (j == c->nmore || tmp[i].rank > c->more[j].rank ||
				(tmp[i].rank == c->more[j].rank &&
				 tmp[i].what == UREG_SINGLETON)))
			p = tmp[i++];
		else {
			provider_fill(&p, c->more[j].rank, false, c->more[j].ib,
				      c->more[j].fb);
			j++;
		}
		if (n < cap)
			out[n] = p;
	}
	return (int)n;
}
