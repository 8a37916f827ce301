/* SPDX-License-Identifier: MIT */
/*
 * Creating, caching and releasing the instances of a user context.
 *
 * Rollback.  A factory runs inside a creation frame (thread-local, on the
 * creating thread's stack).  Blocks the creating thread allocates in that
 * context while the frame is open go to the frame's own list; if the
 * creation fails they are freed and the context's counters restored, so a
 * failed creation changes nothing.  On success the list is spliced into the
 * context's.
 *
 * The CONTEXT-scope cache maps a factory's serial number to the instance, in
 * an open-addressing table homed at the serial's low bits (its key's hash,
 * so a get fetches the slot while it searches the registry:
 * ureg__ctx_cache_prefetch) that readers probe inside their read section
 * without a lock: slots are only ever added (serial 0 -> serial, published
 * with a release store) and a slot's value moves between an instance,
 * TOMB (none) and a tagged pointer to the in-flight creation record.
 * Growing copies the table and publishes the copy with rcu_assign_pointer;
 * the old one is freed after a grace period.
 *
 * Single flight.  The first thread to miss becomes the creator: it stores a
 * tagged pointer to its creation record (on its stack) in the slot and runs
 * the factory with no lock held.  Threads that find the record wait on its
 * futex word and take its answer - the instance or the same error, the
 * factory never reruns for them.  The creator does not return (its record
 * lives on its stack) until every waiter has copied the answer.
 *
 * Cycles.  Before waiting on a record, a thread follows the wait-for chain
 * under the context lock: the record's owner, the record that owner waits
 * on in this context, and so on.  Reaching itself means the wait could
 * never end (a factory asking for its own key, directly, through other
 * factories, or through another thread of the same context): -EDEADLK with
 * the chain of keys in ureg_last_error().  Every link of the chain is only
 * written under this context's lock, so the walk is exact.  Chains that
 * leave the context (a factory of context A waiting in context B) are not
 * followed.
 */
#include <jemalloc/jemalloc.h>
#include <limits.h>
#include <stdio.h>
#include "ctx_int.h"

UREG_TLS struct creation *ureg__ctx_creating;       /* innermost frame */
static UREG_TLS struct creation_wait waiting;

void ureg__ctx_instance_destroy(ureg_ctx *ctx, const struct inst_gone *g)
{
	struct ureg_factory_box *fb = g->fb;
	void (*destroy)(void *, ureg_ctx *) = fb->destroy;

	ureg__event_instance(fb->reg, UREG_EV_INSTANCE_DESTROYED, fb->key, ctx, g->obj);
	if (destroy)
		destroy(g->obj, ctx);
	ureg__fbox_unhold(fb);
}

/* Under ctx->lock: record @i out of the book; what destroying the
 * instance needs goes to @g. */
void ureg__ctx_instance_unlink(ureg_ctx *ctx, uint32_t i, struct inst_gone *g)
{
	struct insttab *t = &ctx->inst->inst;
	struct ureg_instance *in = &t->tab[i];
	struct ctx_use *u = in->use;

	/* two lines about to be needed (the use record's count below, the
	 * box by the destroy): fetch both while the table shifts */
	__builtin_prefetch(u, 1);
	g->obj = in->obj;
	g->fb = inst_fb(in);
	__builtin_prefetch(g->fb);
	insttab_remove(t, i);
	CTR_SET(u->instances, u->instances - 1);
}

/* ------------------------------------------------------------ creations */

/* No lock: the frame is this thread's until ureg__ctx_creating points to
 * it, and ctx_alloc() notes peak_before (under the context lock) at the
 * frame's first allocation. */
static void frame_open(struct creation *c, ureg_ctx *ctx, const char *key)
{
	c->parent = ureg__ctx_creating;
	c->ctx = ctx;
	c->key = key;
	hdr_list_init(&c->allocs);
	c->allocated = 0;
	c->peak_before = 0;
}

/* Under ctx->lock.  Failure: free what the creation allocated, restore
 * the counters. */
static void frame_rollback_locked(struct creation *c)
{
	ureg_ctx *ctx = c->ctx;
	struct alloc_hdr *h, *next;

	for (h = hdr_next(&c->allocs); h != &c->allocs; h = next) {
		size_t usable = hdr_size(h);

		next = hdr_next(h);
		CTR_SET(ctx->live_bytes, ctx->live_bytes - usable);
		CTR_SET(ctx->allocations, ctx->allocations - 1);
		if (ctx->dedicated || !bc_push(h, usable))
			sdallocx(h, usable, free_flags(ctx));
	}
	CTR_SET(ctx->total_allocations, ctx->total_allocations - c->allocated);
	/* the failed creation's own high-water mark does not count */
	if (c->allocated && ctx->peak_bytes > c->peak_before)
		CTR_SET(ctx->peak_bytes, ctx->live_bytes > c->peak_before ?
			ctx->live_bytes : c->peak_before);
}

static struct ctx_book *book_of(ureg_ctx *ctx)
{
	struct ctx_book *b = ctx->inst;

	if (b)
		return b;
	if (!(b = ureg__calloc(1, sizeof(*b))))
		return NULL;
	insttab_init(&b->inst);
	ptrmap_init(&b->by_serial);
	ptrmap_init(&b->by_name);
	b->uses_tail = &b->uses;
	__atomic_store_n(&ctx->inst, b, __ATOMIC_RELEASE); /* lock-free stats */
	return b;
}

/*
 * Under ctx->lock, before the factory runs: everything recording its
 * instance will need, so that a creation fails for lack of memory before
 * the factory runs (never after, which would run the factory and its
 * destructor for nothing): the book, room for a record in the instance
 * table (a steady create/release cycle allocates none), and the entry's
 * use record - found, or made but not yet published.  -ENOMEM changes
 * nothing visible.
 */
static int book_prepare_locked(ureg_ctx *ctx, struct ureg_factory_box *fb,
			       struct creation *c)
{
	_Static_assert(sizeof(uint64_t) == sizeof(uintptr_t), "serials are map keys");
	struct ctx_book *b = book_of(ctx);
	struct ctx_use *u = NULL;

	if (!b || insttab_reserve(&b->inst, b->reserved + 1))
		return -ENOMEM;
	c->use = ptrmap_find(&b->by_serial, use_key(fb));
	if (c->use) {
		/* read and written again once the factory ran: fetch it now */
		__builtin_prefetch(c->use, 1);
	} else if (!(c->use = ureg__ctx_use_rebind(b, fb))) {
		size_t rl = strlen(fb->reg->name) + 1, kl = strlen(fb->key) + 1;

		if (ptrmap_reserve(&b->by_serial, b->reserved_uses + 1) ||
		    ureg__ctx_use_reserve_by_name(b) ||
		    !(u = ureg__malloc(sizeof(*u) + rl + kl)))
			return -ENOMEM;
		memset(u, 0, sizeof(*u));
		memcpy(u->names, fb->reg->name, rl);
		memcpy(u->names + rl, fb->key, kl);
		u->key = u->names + rl;
		u->serial = use_key(fb);
	}
	c->new_use = u;
	b->reserved++;
	b->reserved_uses += u != NULL;
	return 0;
}

/* Under ctx->lock: give back what book_prepare_locked held (failure). */
static void book_unprepare_locked(ureg_ctx *ctx, struct creation *c)
{
	struct ctx_book *b = ctx->inst;

	b->reserved--;
	if (c->new_use) {
		b->reserved_uses--;
		ureg__free(c->new_use);
	}
}

/*
 * Under ctx->lock, after the factory succeeded: record the instance
 * (creation order, object map, its entry's use record, published now if
 * new) and make the frame's blocks the context's, counted for that entry.
 * Cannot fail: book_prepare_locked reserved everything.
 */
static void book_keep_locked(ureg_ctx *ctx, struct creation *c, void *obj,
			     struct ureg_factory_box *fb, bool cached)
{
	struct ctx_book *b = ctx->inst;
	struct ctx_use *u = c->use;
	struct alloc_hdr *h;
	size_t bytes = 0, blocks = 0;

	b->reserved--;
	if (c->new_use) {
		b->reserved_uses--;
		/* another creation of the entry may have published one since */
		if (!(u = ptrmap_find(&b->by_serial, use_key(fb))) &&
		    !(u = ureg__ctx_use_rebind(b, fb))) {
			u = c->new_use;
			ptrmap_insert(&b->by_serial, use_key(fb), u);
			ureg__ctx_use_name_add(b, u);
			__atomic_store_n(b->uses_tail, u, __ATOMIC_RELEASE); /* ureg_ctx_entries */
			b->uses_tail = &u->next;
		} else {
			ureg__free(c->new_use);
		}
	}
	for (h = hdr_next(&c->allocs); h != &c->allocs; h = hdr_next(h)) {
		((struct ctx_blk *)h)->use = u;
		bytes += hdr_size(h);
		blocks++;
	}
	hdr_splice_tail(&ctx->allocs, &c->allocs);
	CTR_SET(u->bytes, u->bytes + bytes);
	CTR_SET(u->blocks, u->blocks + blocks);
	if (u->bytes > u->peak)
		CTR_SET(u->peak, u->bytes);
	CTR_SET(u->instances, u->instances + 1);
	insttab_insert(&b->inst, obj, (uintptr_t)fb | (cached ? INST_CACHED : 0), u);
}

static void instance_destroy_unrecorded(struct ureg_factory_box *fb,
				       void *obj, ureg_ctx *ctx)
{
	void (*destroy)(void *, ureg_ctx *) = fb->destroy;
	if (destroy)
		destroy(obj, ctx);
}

/*
 * Run @fb's factory in @ctx inside the creation frame @c and record the
 * instance (creation order, object map, its entry's use record).  @cached
 * marks a CONTEXT-scope instance.  @ref: the caller hands over a hold
 * on @fb (ureg__fbox_hold) that the instance keeps (dropped on failure);
 * without it one is taken first (the caller is in the read section that
 * found @fb).  The context lock is taken before the
 * factory (to reserve what recording needs) and after it; none is held
 * while the factory and the on_create hook run.  On failure everything
 * the creation allocated in @ctx is freed again.
 */
static int create_in_frame(ureg_ctx *ctx, ureg_registry *reg,
			   struct ureg_factory_box *fb, bool cached, bool ref,
			   struct creation *c, void **out)
{
	void *obj = NULL;
	int rc;

	if (!ref) {
		/* the caller is in the read section that found @fb: hold it
		 * now, before the factory runs, so that nothing can fail
		 * after it */
		if (ureg__fbox_hold(fb))
			return ureg__err(-ENOMEM, "registry '%s': out of memory creating '%s'",
					 reg->name, fb->key);
		ref = true;
	}
	ctx_lock(ctx);
	rc = book_prepare_locked(ctx, fb, c);
	ctx_unlock(ctx);
	if (rc) {
		if (ref)
			ureg__fbox_unhold(fb);
		return ureg__err(-ENOMEM, "registry '%s': out of memory creating '%s'",
				 reg->name, fb->key);
	}
	frame_open(c, ctx, fb->key);
	ureg__ctx_creating = c;
	ureg__clear_err();
	rc = fb->create(ctx, fb->arg, &obj);
	if (rc == 0 && !obj)
		rc = ureg__err(-EINVAL, "registry '%s': factory '%s' returned success but no instance",
			       reg->name, fb->key);
	else if (rc > 0)
		rc = -rc; /* a factory that returned a positive errno */
	if (rc == 0 && fb->type->on_create) {
		rc = fb->type->on_create(reg, fb->key, obj, ctx,
					 fb->type->on_create_arg);
		if (rc) {
			instance_destroy_unrecorded(fb, obj, ctx);
			if (rc > 0)
				rc = -rc;
		}
	}
	ureg__ctx_creating = c->parent;
	if (rc) {
		ctx_lock(ctx);
		frame_rollback_locked(c);
		book_unprepare_locked(ctx, c);
		ctx_unlock(ctx);
		if (ref)
			ureg__fbox_unhold(fb);
		if (!*ureg_last_error())
			ureg__err(rc, "registry '%s': factory '%s' failed: %s",
				  reg->name, fb->key, ureg_strerror(rc));
		return rc;
	}
	ctx_lock(ctx);
	book_keep_locked(ctx, c, obj, fb, cached);
	ctx_unlock(ctx);
	ureg__event_instance(reg, UREG_EV_INSTANCE_CREATED, fb->key, ctx, obj);
	*out = obj;
	return 0;
}

int ureg__ctx_create(ureg_ctx *ctx, ureg_registry *reg,
		     struct ureg_factory_box *fb, bool cached, void **out)
{
	struct creation c;

	c.owner = NULL;
	return create_in_frame(ctx, reg, fb, cached, false, &c, out);
}

int ureg__ctx_create_ref(ureg_ctx *ctx, ureg_registry *reg,
			 struct ureg_factory_box *fb, void **out)
{
	struct creation c;

	c.owner = NULL;
	return create_in_frame(ctx, reg, fb, false, true, &c, out);
}

void ureg__ctx_cache_prefetch(const ureg_ctx *ctx, uint64_t hash)
{
	const struct ctx_cache *c = rcu_dereference(ctx->cache);

	if (c && c->mask < (1u << UREG__SERIAL_HBITS))
		__builtin_prefetch(&c->slots[cache_home(hash, c->mask)]);
}

/* Under ctx->lock, or in a read section for a lock-free probe. */
static struct cache_slot *cache_find(struct ctx_cache *c, uint64_t serial)
{
	if (!c)
		return NULL;
	for (uint32_t i = cache_home(serial, c->mask);; i = (i + 1) & c->mask) {
		uint64_t s = __atomic_load_n(&c->slots[i].serial, __ATOMIC_ACQUIRE);
		if (s == serial)
			return &c->slots[i];
		if (s == 0)
			return NULL;
	}
}

static void cache_free_rcu(struct rcu_head *head)
{
	ureg__free(caa_container_of(head, struct ctx_cache, rcu));
}

/*
 * Under ctx->lock: a slot for @serial (absent before), value TOMB.
 *
 * A full table is rebuilt without its TOMB slots (instances released or
 * never made: a later get inserts them again), so slots of factories long
 * replaced or unregistered do not pile up in a context that outlives many
 * reloads.  The copy is at most a third full, which leaves a sixth of its
 * size in inserts before the next rebuild (a table without TOMB slots
 * doubles, as it always did).  Readers still probing the old table find
 * what they found before (it is freed a grace period later).  No slot of
 * a creation in flight is TOMB: its creator made it pending before it
 * dropped the lock.
 */
static struct cache_slot *cache_insert(ureg_ctx *ctx, uint64_t serial)
{
	struct ctx_cache *c = ctx->cache, *nc;
	struct cache_slot *s;

	if (!c || (c->used + 1) * 2 > c->mask + 1) {
		uint64_t live = 1;
		uint32_t n = 8;

		for (uint32_t i = 0; c && i <= c->mask; i++)
			live += c->slots[i].serial && c->slots[i].obj != TOMB;
		while ((uint64_t)n < live * 3)
			n *= 2;
		nc = ureg__calloc(1, sizeof(*nc) + n * sizeof(nc->slots[0]));
		if (!nc)
			return NULL;
		nc->mask = n - 1;
		for (uint32_t i = 0; c && i <= c->mask; i++) {
			if (!c->slots[i].serial || c->slots[i].obj == TOMB)
				continue;
			uint32_t j = cache_home(c->slots[i].serial, nc->mask);
			while (nc->slots[j].serial)
				j = (j + 1) & nc->mask;
			nc->slots[j] = c->slots[i];
			nc->used++;
		}
		rcu_assign_pointer(ctx->cache, nc);
		if (c)
			ureg__call_rcu(&c->rcu, cache_free_rcu);
		c = nc;
	}
	uint32_t i = cache_home(serial, c->mask);
	while (c->slots[i].serial)
		i = (i + 1) & c->mask;
	s = &c->slots[i];
	s->obj = TOMB;
	__atomic_store_n(&s->serial, serial, __ATOMIC_RELEASE);
	c->used++;
	return s;
}

/*
 * Under ctx->lock: would waiting on @target close a wait-for loop back to
 * this thread?  Then describe it ("a -> b -> a") and return true.
 */
static bool would_deadlock(ureg_ctx *ctx, struct creation *target,
			   char *chain, size_t len)
{
	struct creation *r = target;
	size_t off = 0;
	int guard = 0;

	chain[0] = '\0';
	while (r && guard++ < 64) {
		off += (size_t)snprintf(chain + off, off < len ? len - off : 0, "%s -> ",
					r->key);
		if (r->owner == &waiting) {
			/* close the loop with what this thread is creating
			 * inside @r, innermost last */
			struct creation *mine[16];
			int n = 0;
			for (struct creation *f = ureg__ctx_creating; f && f != r && n < 16; f = f->parent)
				if (f->ctx == ctx)
					mine[n++] = f;
			while (n-- > 0)
				off += (size_t)snprintf(chain + off, off < len ? len - off : 0,
							"%s -> ", mine[n]->key);
			snprintf(chain + off, off < len ? len - off : 0, "%s", target->key);
			return true;
		}
		/* follow the owner only while it waits in this context: those
		 * links are written under ctx->lock, which we hold */
		struct creation_wait *w = r->owner;
		if (!w || __atomic_load_n(&w->ctx, __ATOMIC_RELAXED) != ctx)
			return false;
		r = w->on;
	}
	return false;
}

int ureg__ctx_get_instance(ureg_ctx *ctx, ureg_registry *reg,
			   struct ureg_entry *e, void **out)
{
	struct ureg_factory_box *fb = e->fbox;
	struct cache_slot *s;
	struct creation c, *rec;
	uint64_t serial;
	void *obj;
	int rc;

	/* fast path: lock-free probe, no writes; the entry carries the
	 * serial of a CONTEXT-scope factory (internal.h, fb_hot), so a
	 * hit reads nothing of the factory box */
	if (UREG_LIKELY((serial = ureg__entry_ctx_serial(e)))) {
		s = cache_find(rcu_dereference(ctx->cache), serial);
		if (UREG_LIKELY(s)) {
			obj = __atomic_load_n(&s->obj, __ATOMIC_ACQUIRE);
			if (UREG_LIKELY(is_instance(obj))) {
				*out = obj;
				return 0;
			}
		}
	} else if (fb->f.scope == UREG_SCOPE_TRANSIENT) {
		return ureg__ctx_create(ctx, reg, fb, false, out);
	}

	/* slow path: single-flight creation */
	ctx_lock(ctx);
	s = cache_find(ctx->cache, fb->serial);
	obj = s ? s->obj : TOMB;
	if (is_instance(obj)) {
		ctx_unlock(ctx);
		*out = obj;
		return 0;
	}
	if (obj != TOMB) {
		/* another creation is in flight: take its answer */
		char chain[256];

		rec = (struct creation *)((uintptr_t)obj & ~PENDING_TAG);
		if (would_deadlock(ctx, rec, chain, sizeof(chain))) {
			ctx_unlock(ctx);
			return ureg__err(-EDEADLK, "registry '%s': creation cycle in context '%s': %s",
					 reg->name, ctx->name, chain);
		}
		__atomic_add_fetch(&rec->waiters, 1, __ATOMIC_RELAXED);
		CTR_SET(ctx->waiting, ctx->waiting + 1);
		__atomic_store_n(&waiting.ctx, ctx, __ATOMIC_RELAXED);
		waiting.on = rec;
		ctx_unlock(ctx);
		while (!__atomic_load_n(&rec->done, __ATOMIC_ACQUIRE))
			futex_wait(&rec->done, 0);
		ctx_lock(ctx);
		__atomic_store_n(&waiting.ctx, NULL, __ATOMIC_RELAXED);
		waiting.on = NULL;
		CTR_SET(ctx->waiting, ctx->waiting - 1);
		rc = rec->rc;
		obj = rec->obj;
		/* the record lives on its creator's stack: let it go once the
		 * last waiter has read it */
		if (__atomic_sub_fetch(&rec->waiters, 1, __ATOMIC_RELEASE) == 0)
			futex_wake(&rec->waiters, 1);
		ctx_unlock(ctx);
		if (rc)
			return ureg__err(rc, "registry '%s': creating '%s' in context '%s' failed (on another thread): %s",
					 reg->name, fb->key, ctx->name, ureg_strerror(rc));
		*out = obj;
		return 0;
	}
	if (!s && !(s = cache_insert(ctx, fb->serial))) {
		ctx_unlock(ctx);
		return ureg__err(-ENOMEM, "context '%s': out of memory", ctx->name);
	}
	c.owner = &waiting;
	c.key = fb->key;
	c.done = 0;
	c.waiters = 0;
	__atomic_store_n(&s->obj, (void *)((uintptr_t)&c | PENDING_TAG), __ATOMIC_RELAXED);
	ctx_unlock(ctx);

	rc = create_in_frame(ctx, reg, fb, true, false, &c, &obj);

	ctx_lock(ctx);
	s = cache_find(ctx->cache, fb->serial); /* the table may have grown */
	__atomic_store_n(&s->obj, rc == 0 ? obj : TOMB, __ATOMIC_RELEASE);
	c.rc = rc;
	c.obj = obj;
	__atomic_store_n(&c.done, 1, __ATOMIC_RELEASE);
	ctx_unlock(ctx);
	futex_wake(&c.done, INT_MAX);
	for (;;) {
		uint32_t w = __atomic_load_n(&c.waiters, __ATOMIC_ACQUIRE);
		if (!w)
			break;
		futex_wait(&c.waiters, w);
	}
	if (rc == 0)
		*out = obj;
	return rc;
}

int ureg_instance_release(ureg_ctx *ctx, void *instance)
{
	struct ureg_instance *in;
	struct inst_gone g;
	uint32_t i;

	if (!ctx || !instance)
		return ureg__err(-EINVAL, "instance_release: NULL context or instance");
	ureg__rcu_ensure();
	ctx_lock(ctx);
	i = ctx->inst ? insttab_find(&ctx->inst->inst, instance) : INST_NONE;
	if (i == INST_NONE) {
		ctx_unlock(ctx);
		return ureg__err(-ENOENT, "instance_release: not an instance of context '%s'",
				 ctx->name);
	}
	in = &ctx->inst->inst.tab[i];
	if (in->fbc & INST_CACHED) {
		struct cache_slot *s = cache_find(ctx->cache, inst_fb(in)->serial);
		if (s && s->obj == instance)
			__atomic_store_n(&s->obj, TOMB, __ATOMIC_RELEASE);
	}
	ureg__ctx_instance_unlink(ctx, i, &g);
	ctx_unlock(ctx);
	ureg__ctx_instance_destroy(ctx, &g);
	return 0;
}

/*
 * ureg_drain's holder report (registry.c): the live instances of @fb in
 * @ctx.  Called from ureg_ctx_foreach: the list lock, then this context's
 * lock (the order fork.c states).  Walks the context's instances: only
 * for a report, never on a lookup or creation path.
 */
size_t ureg__ctx_instances_of(ureg_ctx *ctx, const struct ureg_factory_box *fb)
{
	size_t n = 0;

	ctx_lock(ctx);
	if (ctx->inst) {
		const struct insttab *t = &ctx->inst->inst;

		for (uint32_t i = t->oldest; i != INST_NONE; i = t->tab[i].next)
			n += inst_fb(&t->tab[i]) == fb;
	}
	ctx_unlock(ctx);
	return n;
}
