/* SPDX-License-Identifier: MIT */
/*
 * User contexts: the memory, the instances and the CONTEXT-scope instance
 * cache of one user.
 *
 * Memory: every block a context hands out carries a 16-byte header linking
 * it into the context's list, so destroy frees exactly what the context
 * still holds (a dedicated arena is simply destroyed).  Accounting uses
 * nallocx before the allocation - the quota check is exact and refuses
 * without side effects - and sallocx on free.
 *
 * The CONTEXT-scope cache is the one tricky piece.  It maps a factory's
 * serial number to the instance, in an open-addressing table that readers
 * probe inside their read section without a lock: slots are only ever
 * added (serial 0 -> serial, published with a release store) and a slot's
 * object moves NULL (being created) -> instance or TOMB (failed/released).
 * Growing copies the table and publishes the copy with rcu_assign_pointer;
 * the old one is freed after a grace period.  Creation is single-flight:
 * the first thread marks the slot pending under ctx->lock and runs the
 * factory with no lock held; racing threads wait on ctx->created.
 */
#include <jemalloc/jemalloc.h>
#include <stdlib.h>
#include "internal.h"

#define TOMB ((void *)1)

struct alloc_hdr {
	struct alloc_hdr *prev, *next;
};
_Static_assert(sizeof(struct alloc_hdr) == 16, "header keeps 16-byte alignment");

struct cache_slot {
	uint64_t serial; /* 0: empty */
	void *obj;       /* NULL: being created; TOMB: none */
};

struct ctx_cache {
	struct rcu_head rcu;
	uint32_t mask;
	uint32_t used;
	struct cache_slot slots[];
};

struct ureg_instance {
	struct ureg_instance *prev, *next; /* creation order */
	void *obj;
	struct ureg_factory_box *fb;       /* keeps arg, anchor, destructor */
	ureg_registry *reg;                /* alive while fb is */
	bool cached;
};

/*
 * Object pointer -> instance record, so ureg_instance_release is O(1):
 * open addressing with linear probing, at most half full, deletion by
 * backward shift.  Under ctx->lock; allocated on the first instance.
 */
struct inst_map {
	uint32_t mask, used;
	uint32_t reserved; /* creations in flight that hold a free slot */
	struct ureg_instance **slot;
};

static inline uint32_t ptr_hash(const void *p)
{
	return (uint32_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 32);
}

/*
 * Hold room for one more record, taken before a factory runs so that the
 * insert after it cannot fail; -ENOMEM leaves the map as it was.
 */
static int map_reserve(struct inst_map *m)
{
	uint32_t n = m->slot ? (m->mask + 1) * 2 : 8;
	struct ureg_instance **ns;

	if (m->slot && (m->used + m->reserved + 1) * 2 <= m->mask + 1) {
		m->reserved++;
		return 0;
	}
	if (!(ns = ureg__calloc(n, sizeof(*ns))))
		return -ENOMEM;
	for (uint32_t i = 0; m->slot && i <= m->mask; i++) {
		if (!m->slot[i])
			continue;
		uint32_t j = ptr_hash(m->slot[i]->obj) & (n - 1);
		while (ns[j])
			j = (j + 1) & (n - 1);
		ns[j] = m->slot[i];
	}
	ureg__free(m->slot);
	m->slot = ns;
	m->mask = n - 1;
	m->reserved++;
	return 0;
}

static void map_insert(struct inst_map *m, struct ureg_instance *in)
{
	uint32_t i = ptr_hash(in->obj) & m->mask;

	while (m->slot[i])
		i = (i + 1) & m->mask;
	m->slot[i] = in;
	m->used++;
	m->reserved--;
}

/* Remove and return the record of @obj, or NULL. */
static struct ureg_instance *map_take(struct inst_map *m, const void *obj)
{
	struct ureg_instance *in;
	uint32_t i, j;

	if (!m->slot)
		return NULL;
	for (i = ptr_hash(obj) & m->mask; m->slot[i]; i = (i + 1) & m->mask)
		if (m->slot[i]->obj == obj)
			break;
	if (!(in = m->slot[i]))
		return NULL;
	/* backward-shift the rest of the cluster into the hole */
	for (j = (i + 1) & m->mask; m->slot[j]; j = (j + 1) & m->mask) {
		uint32_t home = ptr_hash(m->slot[j]->obj) & m->mask;
		/* move j to i when its home is not cyclically in (i, j] */
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slot[i] = m->slot[j];
			i = j;
		}
	}
	m->slot[i] = NULL;
	m->used--;
	return in;
}

struct ureg_ctx {
	pthread_mutex_t lock;             /* allocations, instances, cache writes */
	pthread_cond_t created;           /* single-flight wake-up */
	struct ctx_cache *cache;          /* rcu pointer, NULL until first use */
	struct alloc_hdr allocs;          /* circular list sentinel */
	struct ureg_instance *oldest, *newest;
	struct inst_map instances;        /* object -> record, for release */
	struct ureg_ctx_stats st;
	struct cds_list_head all_node;    /* all_contexts */
	char name[UREG_NAME_MAX + 1];
};

/* Every live context, for ureg_ctx_foreach and reports.  Global by design:
 * a process-wide view is the point of ureg_report. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(all_contexts);

/* fork: hold every context's mutex across the fork, so that a child does
 * not inherit one locked by a thread that no longer exists. */
void ureg__ctx_lock_all(void)
{
	ureg_ctx *ctx;

	pthread_mutex_lock(&all_lock);
	cds_list_for_each_entry(ctx, &all_contexts, all_node)
		pthread_mutex_lock(&ctx->lock);
}

void ureg__ctx_unlock_all(void)
{
	ureg_ctx *ctx;

	cds_list_for_each_entry(ctx, &all_contexts, all_node)
		pthread_mutex_unlock(&ctx->lock);
	pthread_mutex_unlock(&all_lock);
}

/* ------------------------------------------------------------ lifecycle */

int ureg_ctx_new(const char *name, unsigned flags, ureg_ctx **out)
{
	ureg_ctx *ctx;
	int rc;

	ureg__rcu_ensure();
	if (!out)
		return ureg__err(-EINVAL, "ctx_new: out is NULL");
	if (flags & ~(unsigned)UREG_CTX_DEDICATED)
		return ureg__err(-EINVAL, "ctx_new: unknown flags 0x%x", flags);
	if (name && strlen(name) > UREG_NAME_MAX)
		return ureg__err(-EINVAL, "ctx_new: name longer than %d bytes", UREG_NAME_MAX);
	ctx = ureg__calloc(1, sizeof(*ctx));
	if (!ctx)
		return ureg__err(-ENOMEM, "ctx_new: out of memory");
	if (flags & UREG_CTX_DEDICATED) {
		rc = ureg__arena_dedicated_new(&ctx->st.arena);
		ctx->st.dedicated = 1;
	} else {
		rc = ureg__arena_shared(&ctx->st.arena);
	}
	if (rc) {
		ureg__free(ctx);
		return ureg__err(rc, "ctx_new: %s", rc == -EAGAIN ?
				 "jemalloc has no arena left" : "cannot create an arena");
	}
	pthread_mutex_init(&ctx->lock, NULL);
	pthread_cond_init(&ctx->created, NULL);
	ctx->allocs.prev = ctx->allocs.next = &ctx->allocs;
	if (name)
		strcpy(ctx->name, name);
	pthread_mutex_lock(&all_lock);
	cds_list_add_tail(&ctx->all_node, &all_contexts);
	pthread_mutex_unlock(&all_lock);
	*out = ctx;
	return 0;
}

static void instance_destroy(ureg_ctx *ctx, struct ureg_instance *in)
{
	void (*destroy)(void *, ureg_ctx *) = in->fb->f.instance_destroy ?
		in->fb->f.instance_destroy : in->fb->type->instance_destroy;

	ureg__event_instance(in->reg, UREG_EV_INSTANCE_DESTROYED, in->fb->key,
			     ctx, in->obj);
	if (destroy)
		destroy(in->obj, ctx);
	ureg__fbox_put(in->fb);
	ureg__free(in);
}

/* Under ctx->lock: out of the creation-order list (not the map). */
static void instance_unlink(ureg_ctx *ctx, struct ureg_instance *in)
{
	if (in->prev)
		in->prev->next = in->next;
	else
		ctx->oldest = in->next;
	if (in->next)
		in->next->prev = in->prev;
	else
		ctx->newest = in->prev;
	ctx->st.instances--;
}

void ureg_ctx_destroy(ureg_ctx *ctx)
{
	struct ureg_instance *in;

	if (!ctx)
		return;
	ureg__rcu_ensure();
	pthread_mutex_lock(&all_lock);
	cds_list_del(&ctx->all_node);
	pthread_mutex_unlock(&all_lock);

	/* newest first; destructors may free context memory (takes lock) */
	for (;;) {
		pthread_mutex_lock(&ctx->lock);
		in = ctx->newest;
		if (in)
			instance_unlink(ctx, in); /* the map is dropped whole below */
		pthread_mutex_unlock(&ctx->lock);
		if (!in)
			break;
		instance_destroy(ctx, in);
	}
	if (ctx->st.dedicated) {
		ureg__arena_dedicated_destroy(ctx->st.arena);
	} else {
		struct alloc_hdr *h = ctx->allocs.next, *next;
		for (; h != &ctx->allocs; h = next) {
			next = h->next;
			dallocx(h, MALLOCX_TCACHE_NONE);
		}
	}
	/* no other thread may use ctx now (contract), so no reader can be
	 * probing the cache: free it at once */
	ureg__free(ctx->cache);
	ureg__free(ctx->instances.slot);
	pthread_cond_destroy(&ctx->created);
	pthread_mutex_destroy(&ctx->lock);
	ureg__free(ctx);
}

const char *ureg_ctx_name(const ureg_ctx *ctx)
{
	return ctx ? ctx->name : NULL;
}

int ureg_ctx_set_quota(ureg_ctx *ctx, size_t bytes)
{
	if (!ctx)
		return ureg__err(-EINVAL, "ctx_set_quota: context is NULL");
	pthread_mutex_lock(&ctx->lock);
	ctx->st.quota = bytes;
	pthread_mutex_unlock(&ctx->lock);
	return 0;
}

int ureg_ctx_stats(ureg_ctx *ctx, struct ureg_ctx_stats *st)
{
	if (!ctx || !st)
		return ureg__err(-EINVAL, "ctx_stats: NULL context or stats");
	pthread_mutex_lock(&ctx->lock);
	*st = ctx->st;
	pthread_mutex_unlock(&ctx->lock);
	return 0;
}

int ureg_ctx_foreach(int (*fn)(ureg_ctx *ctx, void *arg), void *arg)
{
	ureg_ctx *ctx;
	int rc = 0;

	if (!fn)
		return ureg__err(-EINVAL, "ctx_foreach: callback is NULL");
	pthread_mutex_lock(&all_lock);
	cds_list_for_each_entry(ctx, &all_contexts, all_node)
		if ((rc = fn(ctx, arg)))
			break;
	pthread_mutex_unlock(&all_lock);
	return rc;
}

/* --------------------------------------------------------------- memory */

static void *ctx_alloc(ureg_ctx *ctx, size_t size, int zero)
{
	int flags = MALLOCX_ARENA(ctx->st.arena) | MALLOCX_TCACHE_NONE | zero;
	struct alloc_hdr *h;
	size_t total, usable;

	if (size == 0 || size > SIZE_MAX / 2) {
		errno = EINVAL;
		return NULL;
	}
	total = size + sizeof(*h);
	usable = nallocx(total, flags);
	if (!usable) {
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_lock(&ctx->lock);
	if (ctx->st.quota && ctx->st.live_bytes + usable > ctx->st.quota) {
		pthread_mutex_unlock(&ctx->lock);
		ureg__err(-EDQUOT, "context '%s': %zu more bytes would pass its quota of %zu",
			  ctx->name, usable, ctx->st.quota);
		errno = EDQUOT;
		return NULL;
	}
	h = ureg__fault_hit() ? NULL : mallocx(total, flags);
	if (!h) {
		pthread_mutex_unlock(&ctx->lock);
		errno = ENOMEM;
		return NULL;
	}
	h->next = &ctx->allocs;
	h->prev = ctx->allocs.prev;
	ctx->allocs.prev->next = h;
	ctx->allocs.prev = h;
	ctx->st.live_bytes += usable;
	if (ctx->st.live_bytes > ctx->st.peak_bytes)
		ctx->st.peak_bytes = ctx->st.live_bytes;
	ctx->st.allocations++;
	ctx->st.total_allocations++;
	pthread_mutex_unlock(&ctx->lock);
	return h + 1;
}

void *ureg_ctx_alloc(ureg_ctx *ctx, size_t size)
{
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, size, 0);
}

void *ureg_ctx_calloc(ureg_ctx *ctx, size_t n, size_t size)
{
	if (!ctx || (size && n > SIZE_MAX / size)) {
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, n * size, MALLOCX_ZERO);
}

char *ureg_ctx_strdup(ureg_ctx *ctx, const char *s)
{
	if (!ctx || !s) {
		errno = EINVAL;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *d = ctx_alloc(ctx, n, 0);
	if (d)
		memcpy(d, s, n);
	return d;
}

void ureg_ctx_free(ureg_ctx *ctx, void *p)
{
	struct alloc_hdr *h;

	if (!ctx || !p)
		return;
	h = (struct alloc_hdr *)p - 1;
	size_t usable = sallocx(h, 0);
	pthread_mutex_lock(&ctx->lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	ctx->st.live_bytes -= usable;
	ctx->st.allocations--;
	pthread_mutex_unlock(&ctx->lock);
	dallocx(h, MALLOCX_TCACHE_NONE);
}

/* ------------------------------------------------------------ instances */

static void instance_destroy_unrecorded(struct ureg_factory_box *fb,
				       void *obj, ureg_ctx *ctx)
{
	void (*destroy)(void *, ureg_ctx *) = fb->f.instance_destroy ?
		fb->f.instance_destroy : fb->type->instance_destroy;
	if (destroy)
		destroy(obj, ctx);
}

/*
 * Run @fb's factory in @ctx and record the instance (creation order list,
 * object map).  @cached marks a CONTEXT-scope instance.  No lock is held
 * while the factory and on_create hook run.
 */
int ureg__ctx_create(ureg_ctx *ctx, ureg_registry *reg,
		     struct ureg_factory_box *fb, bool cached, void **out)
{
	struct ureg_instance *in;
	void *obj = NULL;
	int rc;

	if (!(in = ureg__calloc(1, sizeof(*in))))
		return ureg__err(-ENOMEM, "registry '%s': out of memory creating '%s'",
				 reg->name, fb->key);
	pthread_mutex_lock(&ctx->lock);
	rc = map_reserve(&ctx->instances);
	pthread_mutex_unlock(&ctx->lock);
	if (rc) {
		ureg__free(in);
		return ureg__err(-ENOMEM, "registry '%s': out of memory creating '%s'",
				 reg->name, fb->key);
	}
	ureg__clear_err();
	rc = fb->f.create(ctx, fb->f.arg, &obj);
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
	if (rc) {
		pthread_mutex_lock(&ctx->lock);
		ctx->instances.reserved--;
		pthread_mutex_unlock(&ctx->lock);
		ureg__free(in);
		if (!*ureg_last_error())
			ureg__err(rc, "registry '%s': factory '%s' failed: %s",
				  reg->name, fb->key, ureg_strerror(rc));
		return rc;
	}
	in->obj = obj;
	in->fb = fb;
	in->reg = reg;
	in->cached = cached;
	pthread_mutex_lock(&ctx->lock);
	map_insert(&ctx->instances, in);
	in->prev = ctx->newest;
	if (ctx->newest)
		ctx->newest->next = in;
	else
		ctx->oldest = in;
	ctx->newest = in;
	ctx->st.instances++;
	pthread_mutex_unlock(&ctx->lock);
	ureg__fbox_get(fb);
	ureg__event_instance(reg, UREG_EV_INSTANCE_CREATED, fb->key, ctx, obj);
	*out = obj;
	return 0;
}

static inline uint32_t serial_hash(uint64_t serial)
{
	serial *= 0x9e3779b97f4a7c15ull; /* Fibonacci hashing */
	return (uint32_t)(serial >> 32);
}

/* Under ctx->lock, or in a read section for a lock-free probe. */
static struct cache_slot *cache_find(struct ctx_cache *c, uint64_t serial)
{
	if (!c)
		return NULL;
	for (uint32_t i = serial_hash(serial) & c->mask;; i = (i + 1) & c->mask) {
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

/* Under ctx->lock: a pending slot for @serial (absent before). */
static struct cache_slot *cache_insert(ureg_ctx *ctx, uint64_t serial)
{
	struct ctx_cache *c = ctx->cache, *nc;
	struct cache_slot *s;

	if (!c || (c->used + 1) * 2 > c->mask + 1) {
		uint32_t n = c ? (c->mask + 1) * 2 : 8;
		nc = ureg__calloc(1, sizeof(*nc) + n * sizeof(nc->slots[0]));
		if (!nc)
			return NULL;
		nc->mask = n - 1;
		for (uint32_t i = 0; c && i <= c->mask; i++) {
			if (!c->slots[i].serial)
				continue;
			uint32_t j = serial_hash(c->slots[i].serial) & nc->mask;
			while (nc->slots[j].serial)
				j = (j + 1) & nc->mask;
			nc->slots[j] = c->slots[i];
			nc->used++;
		}
		rcu_assign_pointer(ctx->cache, nc);
		if (c)
			urcu_memb_call_rcu(&c->rcu, cache_free_rcu);
		c = nc;
	}
	uint32_t i = serial_hash(serial) & c->mask;
	while (c->slots[i].serial)
		i = (i + 1) & c->mask;
	s = &c->slots[i];
	s->obj = NULL;
	__atomic_store_n(&s->serial, serial, __ATOMIC_RELEASE);
	c->used++;
	return s;
}

int ureg__ctx_get_instance(ureg_ctx *ctx, ureg_registry *reg,
			   struct ureg_entry *e, void **out)
{
	struct ureg_factory_box *fb = e->fbox;
	struct cache_slot *s;
	void *obj;
	int rc;

	if (fb->f.scope == UREG_SCOPE_TRANSIENT)
		return ureg__ctx_create(ctx, reg, fb, false, out);

	/* fast path: lock-free probe, no writes */
	s = cache_find(rcu_dereference(ctx->cache), fb->serial);
	if (UREG_LIKELY(s)) {
		obj = __atomic_load_n(&s->obj, __ATOMIC_ACQUIRE);
		if (UREG_LIKELY(obj && obj != TOMB)) {
			*out = obj;
			return 0;
		}
	}

	/* slow path: single-flight creation */
	pthread_mutex_lock(&ctx->lock);
	for (;;) {
		s = cache_find(ctx->cache, fb->serial);
		obj = s ? s->obj : TOMB;
		if (obj && obj != TOMB) {
			pthread_mutex_unlock(&ctx->lock);
			*out = obj;
			return 0;
		}
		if (!obj) { /* another thread is creating it */
			pthread_cond_wait(&ctx->created, &ctx->lock);
			continue;
		}
		break;
	}
	if (s) {
		__atomic_store_n(&s->obj, NULL, __ATOMIC_RELAXED);
	} else if (!(s = cache_insert(ctx, fb->serial))) {
		pthread_mutex_unlock(&ctx->lock);
		return ureg__err(-ENOMEM, "context '%s': out of memory", ctx->name);
	}
	pthread_mutex_unlock(&ctx->lock);

	rc = ureg__ctx_create(ctx, reg, fb, true, &obj);

	pthread_mutex_lock(&ctx->lock);
	s = cache_find(ctx->cache, fb->serial); /* the table may have grown */
	__atomic_store_n(&s->obj, rc == 0 ? obj : TOMB, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&ctx->created);
	pthread_mutex_unlock(&ctx->lock);
	if (rc == 0)
		*out = obj;
	return rc;
}

int ureg_instance_release(ureg_ctx *ctx, void *instance)
{
	struct ureg_instance *in;

	if (!ctx || !instance)
		return ureg__err(-EINVAL, "instance_release: NULL context or instance");
	ureg__rcu_ensure();
	pthread_mutex_lock(&ctx->lock);
	in = map_take(&ctx->instances, instance);
	if (!in) {
		pthread_mutex_unlock(&ctx->lock);
		return ureg__err(-ENOENT, "instance_release: not an instance of context '%s'",
				 ctx->name);
	}
	instance_unlink(ctx, in);
	if (in->cached) {
		struct cache_slot *s = cache_find(ctx->cache, in->fb->serial);
		if (s && s->obj == instance)
			__atomic_store_n(&s->obj, TOMB, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&ctx->lock);
	instance_destroy(ctx, in);
	return 0;
}
