/* SPDX-License-Identifier: MIT */
/*
 * The string-key read path (ureg_lookup, ureg_get) and the calls that take
 * a read section of their own (contains, acquire, create_instance), for a
 * string key and for a key handle alike: a finder (registry_int.h) is the
 * only difference.  The handle read path proper is in handle.c.
 */
#include "registry_int.h"
#include "key_int.h"

/* Failure messages of the read path: copied, formatted only when read
 * (errors.c), so a miss costs two short copies and no formatting. */
int ureg__miss(int err, const char *what, const ureg_registry *reg,
	       const char *key)
{
	return ureg__err_key(err, what, reg->name, key, strnlen(key, UREG_KEY_MAX));
}

/* A call of the read path refused: which check failed, in the order the
 * API documents (NULL arguments, the key, the read section).  Only ever
 * reached when one of them did fail. */
static __attribute__((noinline, cold)) int refused(ureg_registry *reg,
						  const char *key,
						  const void *out,
						  const char *call)
{
	struct ureg_entry *e;
	int rc = ureg__find_in_section(reg, key, out, call, &e);

	return rc ? rc : ureg__err(-EINVAL, "%s: refused", call);
}

/*
 * A string lookup found nothing under @key: a bad key gets its -EINVAL
 * (the fast path only measured it: key_int.h), a good one the miss.
 */
static __attribute__((noinline, cold)) int not_found(ureg_registry *reg,
						    const char *key,
						    const char *what)
{
	struct ureg_key k;
	int rc = ureg__key_prepare(key, &k);

	return rc ? rc : ureg__miss(-ENOENT, what, reg, key);
}

/*
 * The string read path: measure the key, XXH3 inlined, the table this
 * section pinned, one cds_lfht_lookup.  A key found is a valid key (it
 * was validated when registered); one not found is validated then.  Every
 * refusal is out of line (refused), re-checked there in the documented
 * order.
 */
int ureg_lookup(ureg_registry *reg, const char *key, void **item)
{
	struct ureg_entry *e;
	struct ureg_key k;

	if (UREG_UNLIKELY(!reg || !item || !ureg__thread.read_depth ||
			  !ureg__key_hash(key, &k)))
		return refused(reg, key, item, "lookup");
	e = ureg__find(ureg__ht(reg), &k);
	if (UREG_UNLIKELY(!e || !e->item))
		return not_found(reg, key, "lookup: no singleton under");
	*item = e->item;
	return 0;
}

/*
 * ureg_get outside a read section (ureg.h, ureg_get): a factory's
 * instance belongs to its context and outlives any section, so the call
 * takes a section of its own for the lookup.  A singleton is refused: its
 * borrowed pointer would be dead by the time the caller sees it.
 * TRANSIENT creations run after the section is closed (as
 * ureg_create_instance does); a CONTEXT-scope get keeps it, because the
 * context's instance cache is probed, and replaced, under RCU.
 * @find looks the key up (string or handle) inside the section.
 */
int ureg__get_own_section(ureg_registry *reg, ureg_ctx *ctx, void **out,
			  ureg__finder find, const void *karg, const char *key)
{
	struct ureg_factory_box *fb;
	struct ureg_entry *e = NULL;
	int rc;

	ureg__rcu_ensure();
	ureg_read_lock();
	if ((rc = find(reg, karg, &e))) {
		ureg_read_unlock();
		return rc;
	}
	if (e && e->item) {
		ureg_read_unlock();
		return ureg__miss(-EPERM, "get outside a read section: it is a singleton (use "
			    "UREG_READ_SECTION or ureg_acquire):", reg, key);
	}
	if (!e || !e->fbox || !ctx || e->fbox->f.scope == UREG_SCOPE_CONTEXT) {
		rc = ureg__get_from(reg, e, key, ctx, out);
		ureg_read_unlock();
		return rc;
	}
	fb = e->fbox;
	rc = ureg__fbox_hold(fb);
	ureg_read_unlock();
	if (rc)
		return ureg__err(rc, "registry '%s': out of memory creating '%s'", reg->name, key);
	return ureg__ctx_create_ref(ctx, reg, fb, out); /* the instance keeps the hold */
}

int ureg__find_str(ureg_registry *reg, const void *karg, struct ureg_entry **e)
{
	*e = ureg__find(ureg__ht(reg), karg);
	return 0;
}

int ureg_get(ureg_registry *reg, const char *key, ureg_ctx *ctx, void **out)
{
	struct ureg_entry *e;
	struct ureg_key k;
	int rc;

	if (UREG_UNLIKELY(!ureg__thread.read_depth)) {
		if (!reg || !out)
			return ureg__err(-EINVAL, "get: NULL registry or out");
		if ((rc = ureg__key_prepare(key, &k)))
			return rc;
		return ureg__get_own_section(reg, ctx, out, ureg__find_str, &k, key);
	}
	if (UREG_UNLIKELY(!reg || !out || !ureg__key_hash(key, &k)))
		return refused(reg, key, out, "get");
	if (ctx)
		ureg__ctx_cache_prefetch(ctx, k.hash);
	e = ureg__find(ureg__ht(reg), &k);
	if (UREG_UNLIKELY(!e))
		return not_found(reg, key, "get: no such key:");
	return ureg__get_from(reg, e, key, ctx, out);
}

int ureg_create_instance_key(ureg_registry *reg, ureg_key *k, ureg_ctx *ctx,
			     void **out)
{
	struct ureg_entry *e = NULL;
	struct ureg_factory_box *fb = NULL;
	int rc, hrc = 0;

	ureg__rcu_ensure();
	if (!reg || !k || !ctx || !out)
		return ureg__err(-EINVAL, "create_instance_key: NULL registry, key handle, context or out");
	ureg_read_lock();
	rc = ureg__find_handle(reg, k, &e);
	if (e && e->fbox && !rc) {
		fb = e->fbox;
		if ((hrc = ureg__fbox_hold(fb)))
			fb = NULL;
	}
	ureg_read_unlock();
	if (rc)
		return rc;
	if (hrc)
		return ureg__err(hrc, "registry '%s': out of memory creating '%s'", reg->name, k->str);
	if (!fb)
		return ureg__err(-ENOENT, "registry '%s': no factory under '%s'",
				 reg->name, k->str);
	return ureg__ctx_create_ref(ctx, reg, fb, out); /* the instance keeps the hold */
}

int ureg_create_instance(ureg_registry *reg, const char *key, ureg_ctx *ctx,
			 void **out)
{
	struct ureg_key k;
	struct ureg_entry *e;
	struct ureg_factory_box *fb = NULL;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !ctx || !out)
		return ureg__err(-EINVAL, "create_instance: NULL registry, context or out");
	/* measured and hashed only, as on the read path: a key found was
	 * validated when registered; one not found is validated below */
	if (UREG_UNLIKELY(!ureg__key_hash(key, &k)))
		return ureg__key_prepare(key, &k); /* NULL or too long: its error */
	ureg__section_enter();
	e = ureg__find(ureg__ht(reg), &k);
	if (e && e->fbox) {
		fb = e->fbox;
		/* the box's line is needed next (the factory call): fetch it
		 * while the hold, by the id the entry carries, writes the
		 * thread's counter */
		__builtin_prefetch(fb);
		if ((rc = ureg__fbox_hold_id(ureg__entry_hid(e)))) {
			ureg__section_exit();
			return ureg__err(rc, "registry '%s': out of memory creating '%s'",
					 reg->name, key);
		}
	}
	ureg__section_exit();
	if (!fb)
		return (rc = ureg__key_prepare(key, &k)) ? rc :
			ureg__err(-ENOENT, "registry '%s': no factory under '%s'", reg->name, key);
	return ureg__ctx_create_ref(ctx, reg, fb, out); /* the instance keeps the hold */
}

int ureg_contains(ureg_registry *reg, const char *key)
{
	struct ureg_key k;
	int rc;

	ureg__rcu_ensure();
	if (!reg)
		return ureg__err(-EINVAL, "contains: registry is NULL");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	ureg_read_lock();
	rc = ureg__find(ureg__ht(reg), &k) != NULL;
	ureg_read_unlock();
	return rc;
}

int ureg_contains_key(ureg_registry *reg, ureg_key *k)
{
	struct ureg_entry *e = NULL;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !k)
		return ureg__err(-EINVAL, "contains_key: NULL registry or key handle");
	ureg_read_lock();
	rc = ureg__find_handle(reg, k, &e);
	ureg_read_unlock();
	return rc ? rc : e != NULL;
}

/*
 * The counted reference of ureg_acquire and ureg_acquire_key: in a read
 * section of its own, the entry @find gives for @karg gets one more
 * reference (and its item box one more "counted"), which keeps it past
 * its grace period until ureg_ref_release.  @key names the key in
 * messages.
 */
static int acquire_ref(ureg_registry *reg, ureg__finder find, const void *karg,
		       const char *key, ureg_ref **ref)
{
	struct ureg_entry *e = NULL;
	int rc;

	ureg_read_lock();
	rc = find(reg, karg, &e);
	if (e && e->item) {
		/* safe: the table's reference cannot be dropped before this
		 * read section ends */
		__atomic_add_fetch(&ureg__cold(e)->refs, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&ureg__cold(e)->ibox->counted, 1, __ATOMIC_RELAXED);
	} else
		e = NULL;
	ureg_read_unlock();
	if (rc)
		return rc;
	if (!e)
		return ureg__err(-ENOENT, "registry '%s': no singleton under '%s'",
				 reg->name, key);
	*ref = (ureg_ref *)e;
	return 0;
}

int ureg_acquire(ureg_registry *reg, const char *key, ureg_ref **ref)
{
	struct ureg_key k;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !ref)
		return ureg__err(-EINVAL, "acquire: NULL registry or ref");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	return acquire_ref(reg, ureg__find_str, &k, key, ref);
}

int ureg_acquire_key(ureg_registry *reg, ureg_key *k, ureg_ref **ref)
{
	ureg__rcu_ensure();
	if (!reg || !k || !ref)
		return ureg__err(-EINVAL, "acquire_key: NULL registry, key handle or ref");
	return acquire_ref(reg, ureg__find_handle, k, k->str, ref);
}

void *ureg_ref_item(const ureg_ref *ref)
{
	return ref ? ((const struct ureg_entry *)ref)->item : NULL;
}

void ureg_ref_release(ureg_ref *ref)
{
	struct ureg_entry *e = (struct ureg_entry *)ref;

	if (!e)
		return;
	__atomic_sub_fetch(&ureg__cold(e)->ibox->counted, 1, __ATOMIC_RELAXED);
	ureg__entry_put(e);
}
