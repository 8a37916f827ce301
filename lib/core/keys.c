/* SPDX-License-Identifier: MIT */
/*
 * Key validation and hashing for writers and handles (the pieces are in
 * key_int.h, shared with the read path), the messages for a bad key, and
 * key handles.
 */
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "key_int.h"

/* key_int.h, "Seeded": set once, before main() and before any key is
 * hashed (a constructor of libureg runs before those of everything that
 * links it), never written again; a forked child keeps its parent's. */
uint64_t ureg__hash_seed;
unsigned char ureg__hash_secret[XXH3_SECRET_DEFAULT_SIZE] __attribute__((aligned(64)));

/* The same as XXH3_64bits_withSeed(), without deriving the secret again. */
__attribute__((noinline)) uint64_t ureg__hash_long(const void *p, size_t len)
{
	return XXH3_64bits_withSecretandSeed(p, len, ureg__hash_secret,
					     XXH3_SECRET_DEFAULT_SIZE, ureg__hash_seed);
}

static __attribute__((constructor)) void hash_seed_init(void)
{
	const char *env = secure_getenv("UREG_HASH_SEED"); /* not for setuid */
	uint64_t s = 0;
	char *end;

	if (env && *env) {
		errno = 0;
		s = strtoull(env, &end, 0);
		if (errno || *end) /* unusable: a random seed, as without it */
			env = NULL;
	}
	if (!env || !*env) {
		if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
			/* no entropy yet (early boot): what differs between
			 * processes and runs */
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			s = XXH3_64bits_withSeed(&ts, sizeof(ts),
						 (uint64_t)getpid() << 32 ^ (uintptr_t)&ts);
		}
	}
	ureg__hash_seed = s;
	XXH3_generateSecret_fromSeed(ureg__hash_secret, s);
}

/* Why @key is not a valid key: the message, and -EINVAL. */
static __attribute__((noinline, cold)) int key_reject(const char *key)
{
	size_t len;

	if (!key)
		return ureg__err(-EINVAL, "key is NULL");
	len = strnlen(key, UREG_KEY_MAX + 1);
	if (len == 0)
		return ureg__err(-EINVAL, "key is empty");
	if (len > UREG_KEY_MAX)
		return ureg__err(-EINVAL, "key longer than %d bytes", UREG_KEY_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if ((unsigned char)(c - 0x21) > 0x7e - 0x21)
			return ureg__err(-EINVAL, "key byte %zu is 0x%02x: keys are "
					 "printable ASCII without space", i, c);
	}
	return ureg__err(-EINVAL, "key is invalid");
}

int ureg__key_prepare(const char *key, struct ureg_key *k)
{
	if (UREG_LIKELY(ureg__key_hash(key, k) && k->len &&
			ureg__key_bytes_ok(key, k->len)))
		return 0;
	return key_reject(key);
}

int ureg__name_check(const char *name, const char *what)
{
	size_t i;

	if (!name)
		return ureg__err(-EINVAL, "%s name is NULL", what);
	for (i = 0; name[i] && i <= UREG_NAME_MAX; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((unsigned char)(c - 0x21) > 0x7e - 0x21)
			return ureg__err(-EINVAL, "%s name has byte 0x%02x",
					 what, c);
	}
	if (i == 0)
		return ureg__err(-EINVAL, "%s name is empty", what);
	if (i > UREG_NAME_MAX)
		return ureg__err(-EINVAL, "%s name longer than %d bytes", what,
				 UREG_NAME_MAX);
	return 0;
}

/* ------------------------------------------------------------ handles */

static int handle_init(ureg_key *k, const char *key, uint16_t flags)
{
	struct ureg_key tmp;
	int rc;

	if (!k)
		return ureg__err(-EINVAL, "key_init: handle is NULL");
	memset(k, 0, sizeof(*k));
	k->str = key;
	if ((rc = ureg__key_prepare(key, &tmp))) {
		k->state = (uint16_t)(UREG__KEY_BAD | flags);
		return rc;
	}
	k->len = tmp.len;
	k->hash = tmp.hash;
	k->state = (uint16_t)(UREG__KEY_READY | flags);
	return 0;
}

int ureg_key_init(ureg_key *k, const char *key)
{
	return handle_init(k, key, 0);
}

int ureg_key_init_cached(ureg_key *k, const char *key)
{
	return handle_init(k, key, UREG__KEY_CACHED);
}

const char *ureg_key_str(const ureg_key *k)
{
	return k ? k->str : NULL;
}

/*
 * First use of a statically initialized handle.  Every racing thread
 * validates and hashes the string itself; one of them wins the BUSY bit,
 * stores len and hash and publishes READY with a release store, so that
 * a thread that sees READY (acquire) sees them too.  Nobody writes len or
 * hash after READY.  The losers use their own copy for this one call.
 */
int ureg__key_handle_slow(ureg_key *k, struct ureg_key *tmp)
{
	uint16_t st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
	int rc;

	if (st & UREG__KEY_READY)
		return 0;
	if (st & UREG__KEY_BAD)
		return ureg__err(-EINVAL, "key handle '%.40s' holds an invalid key",
				 k->str ? k->str : "(null)");
	if ((rc = ureg__key_prepare(k->str, tmp))) {
		__atomic_fetch_or(&k->state, (uint16_t)UREG__KEY_BAD, __ATOMIC_RELAXED);
		return rc;
	}
	if (!(st & UREG__KEY_BUSY) &&
	    __atomic_compare_exchange_n(&k->state, &st, (uint16_t)(st | UREG__KEY_BUSY),
					false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		k->len = tmp->len;
		k->hash = tmp->hash;
		__atomic_store_n(&k->state,
				 (uint16_t)((st & ~UREG__KEY_BUSY) | UREG__KEY_READY),
				 __ATOMIC_RELEASE);
		return 0;
	}
	return 1;
}
