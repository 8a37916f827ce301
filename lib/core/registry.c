/* SPDX-License-Identifier: MIT */
/*
 * The registry: a cds_lfht of immutable entries (see internal.h for the
 * lifetime rules).  Readers: one rcu_dereference of the table, one
 * cds_lfht_lookup, no writes.  Writers: the registry's writer mutex, build
 * the new entry before taking it, publish with add_unique / replace / del,
 * retire the old entry with call_rcu.  Events are queued under the mutex
 * and delivered after it is dropped (events.c).
 *
 * This file: a registry's life (new, destroy, names, counts, the key
 * listing), its table (sizing, resize, find) and the stamps of cached
 * handles.  The other concerns: registry_int.h lists the files.
 */
#include "registry_int.h"

pthread_mutex_t ureg__registries_lock = PTHREAD_MUTEX_INITIALIZER;
CDS_LIST_HEAD(ureg__registries);

/* --------------------------------------------------------------- tables */

/*
 * Table sizing.  Buckets below min_nr_alloc_buckets live in one array that
 * a lookup indexes directly; above it liburcu's "order" allocator adds an
 * fls() and an indirection, so 4,096 buckets (32 KiB) is the floor.  Above
 * that we size the table ourselves - one bucket per key, a power of two -
 * instead of liburcu's AUTO_RESIZE: its count-based policy lets chains
 * reach ~3 nodes (32,768 buckets for 100,000 keys) and its chain-length
 * policy overshoots by two orders of magnitude and never shrinks.
 */
#define MIN_ALLOC_BUCKETS 4096ul
#define MAX_BUCKETS (1ul << 26)

unsigned long ureg__buckets_for(unsigned long keys)
{
	unsigned long n = MIN_ALLOC_BUCKETS;
	while (n < keys && n < MAX_BUCKETS)
		n <<= 1;
	return n;
}

struct cds_lfht *ureg__ht_new(unsigned long size_hint)
{
	if (ureg__fault_hit())
		return NULL;
	return cds_lfht_new_flavor(ureg__buckets_for(size_hint), MIN_ALLOC_BUCKETS,
				   MAX_BUCKETS, 0, &urcu_memb_flavor, NULL);
}

/*
 * After a change, outside the writer mutex: grow the table when the keys
 * outnumber the buckets, shrink it when they fill less than an eighth.
 * cds_lfht_resize waits for grace periods, so it must not run inside a
 * read section (a change made inside one leaves the resize to the next
 * change made outside) nor under the writer mutex (a reader blocked on that
 * mutex inside its read section would stall the grace period forever).
 * resize_lock keeps a batch commit or registry destroy from destroying the
 * table while it is being resized.
 */
void ureg__maybe_resize(ureg_registry *reg)
{
	unsigned long count, want, have;

	if (ureg__thread.read_depth || urcu_memb_read_ongoing())
		return; /* also an application's own liburcu read section */
	count = __atomic_load_n(&reg->count, __ATOMIC_RELAXED);
	have = __atomic_load_n(&reg->buckets, __ATOMIC_RELAXED);
	want = ureg__buckets_for(count);
	if (want <= have && (have == MIN_ALLOC_BUCKETS || count >= have / 8))
		return;
	pthread_mutex_lock(&reg->resize_lock);
	have = reg->buckets;
	count = __atomic_load_n(&reg->count, __ATOMIC_RELAXED);
	want = ureg__buckets_for(count);
	if (want > have || (have > MIN_ALLOC_BUCKETS && count < have / 8)) {
		cds_lfht_resize(reg->ht, want);
		__atomic_store_n(&reg->buckets, want, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&reg->resize_lock);
}

/* Not inside a read section (liburcu 0.13 may deadlock destroying a
 * table during a resize from inside one). */
void ureg__ht_destroy(struct cds_lfht *ht)
{
	cds_lfht_destroy(ht, NULL);
}
/* ------------------------------------------------------------ registry */

void ureg__registry_get(ureg_registry *reg)
{
	__atomic_add_fetch(&reg->refs, 1, __ATOMIC_RELAXED);
}

void ureg__registry_put(ureg_registry *reg)
{
	if (__atomic_sub_fetch(&reg->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pthread_mutex_destroy(&reg->writer);
	pthread_mutex_destroy(&reg->resize_lock);
	pthread_mutex_destroy(&reg->evq_lock);
	ureg__free(reg);
}

int ureg_registry_new(const ureg_type *type, const char *name,
		      ureg_registry **out)
{
	ureg_registry *reg;
	int rc;

	ureg__rcu_ensure();
	if (!out)
		return ureg__err(-EINVAL, "registry_new: out is NULL");
	if (!type || !type->name)
		return ureg__err(-EINVAL, "registry_new: type or type name is NULL");
	if (!ureg__reserved_zero(type->reserved))
		return ureg__err(-EINVAL, "registry_new: type '%s' has nonzero reserved fields", type->name);
	if ((rc = ureg__name_check(name, "registry")))
		return rc;
	reg = ureg__calloc(1, sizeof(*reg) +
			   UREG_STAMP_STRIPES * sizeof(reg->stamps[0]));
	if (!reg)
		return ureg__err(-ENOMEM, "registry_new: out of memory");
	reg->ht = ureg__ht_new(0);
	reg->buckets = MIN_ALLOC_BUCKETS;
	if (!reg->ht) {
		ureg__free(reg);
		return ureg__err(-ENOMEM, "registry_new: out of memory");
	}
	reg->stamp_base = reg->stamps;
	reg->type = type;
	reg->refs = 1;
	ureg__stamp_all(reg); /* values no handle can remember yet */
	pthread_mutex_init(&reg->writer, NULL);
	pthread_mutex_init(&reg->resize_lock, NULL);
	pthread_mutex_init(&reg->evq_lock, NULL);
	CDS_INIT_LIST_HEAD(&reg->listeners);
	CDS_INIT_LIST_HEAD(&reg->evq);
	strcpy(reg->name, name);
	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_add_tail(&reg->all_node, &ureg__registries);
	pthread_mutex_unlock(&ureg__registries_lock);
	*out = reg;
	return 0;
}

void ureg_registry_destroy(ureg_registry *reg)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	struct cds_lfht *ht;

	if (!reg)
		return;
	ureg__rcu_ensure();
	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_del(&reg->all_node);
	pthread_mutex_unlock(&ureg__registries_lock);

	pthread_mutex_lock(&reg->writer);
	ht = reg->ht;
	/* handles are not to be used past destroy; moving every stamp first
	 * keeps a misused one from reaching a retired entry all the same */
	ureg__stamp_all(reg);
	urcu_memb_read_lock();
	cds_lfht_for_each(ht, &iter, node) {
		if (!cds_lfht_del(ht, node))
			ureg__entry_retire(caa_container_of(
				node, struct ureg_entry, node));
	}
	urcu_memb_read_unlock();
	reg->count = 0;
	pthread_mutex_unlock(&reg->writer);

	ureg__events_detach_registry(reg);
	/* every retired entry's callback has run (or is pinned by a counted
	 * reference) once the barrier returns; then the table is empty.  The
	 * second barrier: the folds those callbacks queued for factory boxes
	 * that still had live instances (entry.c), so that from here on each
	 * box's last instance frees it at once */
	urcu_memb_barrier();
	urcu_memb_barrier();
	pthread_mutex_lock(&reg->resize_lock); /* no resize still running */
	pthread_mutex_unlock(&reg->resize_lock);
	ureg__ht_destroy(ht);
	ureg__registry_put(reg);
}

const char *ureg_registry_name(const ureg_registry *reg)
{
	return reg ? reg->name : NULL;
}

const ureg_type *ureg_registry_type(const ureg_registry *reg)
{
	return reg ? reg->type : NULL;
}

size_t ureg_count(const ureg_registry *reg)
{
	return reg ? __atomic_load_n(&reg->count, __ATOMIC_RELAXED) : 0;
}

uint64_t ureg_generation(const ureg_registry *reg)
{
	return reg ? __atomic_load_n(&reg->generation, __ATOMIC_RELAXED) : 0;
}
/* --------------------------------------------------------------- stamps */

/* Process-wide: a stamp value is never reused and never shared by two
 * registries (see internal.h).  Only writers touch it, under their own
 * registry's writer mutex or before the registry is visible. */
static uint64_t stamp_counter;

/* Stamps are even; a stripe holds an odd value while a single-key change
 * is being published (ureg__stamp_key_begin .. ureg__stamp_key).  A
 * handle never remembers an odd stamp, so nothing filled while the change
 * was in flight - when a search may still return the old entry - can hit
 * before the change's final stamp (handle.c). */
void ureg__stamp_key_begin(ureg_registry *reg, uint64_t hash)
{
	uint64_t v = __atomic_add_fetch(&stamp_counter, 2, __ATOMIC_RELAXED);
	__atomic_store_n(&reg->stamps[hash & (UREG_STAMP_STRIPES - 1)], v | 1,
			 __ATOMIC_RELEASE);
}

void ureg__stamp_key(ureg_registry *reg, uint64_t hash)
{
	uint64_t v = __atomic_add_fetch(&stamp_counter, 2, __ATOMIC_RELAXED);
	__atomic_store_n(&reg->stamps[hash & (UREG_STAMP_STRIPES - 1)], v,
			 __ATOMIC_RELEASE);
}

void ureg__stamp_all_begin(ureg_registry *reg)
{
	uint64_t v = __atomic_add_fetch(&stamp_counter, 2, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < UREG_STAMP_STRIPES; i++)
		__atomic_store_n(&reg->stamps[i], v | 1, __ATOMIC_RELAXED);
	/* every odd value before the table the caller publishes next */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

void ureg__stamp_all(ureg_registry *reg)
{
	uint64_t v = __atomic_add_fetch(&stamp_counter, 2, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < UREG_STAMP_STRIPES; i++)
		__atomic_store_n(&reg->stamps[i], v, __ATOMIC_RELEASE);
}
int ureg_keys(ureg_registry *reg, char ***keys, size_t *n)
{
	struct cds_lfht_iter iter;
	struct ureg_entry *e;
	struct cds_lfht *ht;
	size_t cap = 16, len = 0;
	char **v;
	int rc = 0;

	ureg__rcu_ensure();
	if (!reg || !keys)
		return ureg__err(-EINVAL, "keys: NULL registry or out");
	v = ureg__malloc(cap * sizeof(*v));
	if (!v)
		return ureg__err(-ENOMEM, "keys: out of memory");
	ureg_read_lock();
	ht = ureg__ht(reg);
	cds_lfht_for_each_entry(ht, &iter, e, node) {
		if (len + 1 >= cap) {
			char **nv = ureg__realloc(v, cap * 2 * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap *= 2;
		}
		if (!(v[len] = ureg__strdup(e->key))) {
			rc = -ENOMEM;
			break;
		}
		len++;
	}
	ureg_read_unlock();
	v[len] = NULL;
	if (rc) {
		ureg_keys_free(v);
		return ureg__err(rc, "keys: out of memory");
	}
	*keys = v;
	if (n)
		*n = len;
	return 0;
}

void ureg_keys_free(char **keys)
{
	if (!keys)
		return;
	for (char **p = keys; *p; p++)
		ureg__free(*p);
	ureg__free(keys);
}
