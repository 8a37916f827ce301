/* SPDX-License-Identifier: MIT */
/*
 * Keys on the read path (lookup.c) and everywhere else (keys.c).
 *
 * A key is 1..UREG_KEY_MAX bytes of printable ASCII without space
 * (0x21..0x7e).  Every key in a table was checked when it was registered,
 * so a string lookup that FINDS its key has proved it valid: the read path
 * only measures and hashes the key, and validates it when the lookup
 * misses, to tell a bad key (-EINVAL) from an absent one (-ENOENT).
 * Writers validate before anything else (ureg__key_prepare).
 *
 * Measuring: the usual key (under 16 bytes, not within 16 bytes of the
 * end of a page) takes one 16-byte SSE2 load and one compare; it may read
 * past the key's NUL inside that page, as glibc's own strlen does, which
 * is why that load is exempt from AddressSanitizer (the bytes past the
 * NUL are never used).  Otherwise glibc's strnlen.  XXH3 is inlined
 * (XXH_INLINE_ALL): for a short key it is a few multiplications, with no
 * call and no length dispatch through the PLT.
 */
#ifndef UREG_KEY_INT_H
#define UREG_KEY_INT_H

#define XXH_INLINE_ALL
#include <xxhash.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "internal.h"

/*
 * Seeded: every key hash of the process is XXH3 with one random 64-bit
 * seed chosen when libureg is loaded (keys.c), so that where a bucket of
 * the table, a context's cache slot or a factory's serial bits fall cannot
 * be computed offline: keys a client chooses (tenant or user names) cannot
 * be made to pile into one chain.  With the seed, the same secret
 * (XXH3_generateSecret_fromSeed): a key past 240 bytes derives none per
 * call, and a shorter one pays a few additions of the seed (about one
 * instruction per lookup of a 15-byte key).  UREG_HASH_SEED fixes the seed
 * (0: plain XXH3_64bits) for reproducing a layout.
 */
extern uint64_t ureg__hash_seed;
extern unsigned char ureg__hash_secret[XXH3_SECRET_DEFAULT_SIZE];

uint64_t ureg__hash_long(const void *p, size_t len); /* past 240 bytes */

static inline __attribute__((always_inline)) uint64_t ureg__hash_bytes(const void *p, size_t len)
{
	/* XXH3_64bits_withSeed()'s body (xxhash.h 0.8), which GCC would
	 * otherwise call out of line here: the short paths inline, with the
	 * built-in secret's words folded into constants */
	if (UREG_LIKELY(len <= XXH3_MIDSIZE_MAX))
		return XXH3_64bits_internal(p, len, ureg__hash_seed, XXH3_kSecret,
					    sizeof(XXH3_kSecret), XXH3_hashLong_64b_withSeed);
	return ureg__hash_long(p, len);
}

#define UREG__ONES (~(uint64_t)0 / 255)
/* SWAR: some byte of w is < n (n <= 128), or > n (n < 128). */
#define UREG__HAS_LESS(w, n) (((w) - UREG__ONES * (n)) & ~(w) & UREG__ONES * 128)
#define UREG__HAS_MORE(w, n) ((((w) + UREG__ONES * (127 - (n))) | (w)) & UREG__ONES * 128)

#ifdef __SSE2__
/* Index of the first NUL in the 16 bytes at @key, 16 if none. */
__attribute__((no_sanitize_address))
static inline unsigned ureg__nul16(const char *key)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)key);
	unsigned nul = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128()));

	return (unsigned)__builtin_ctz(nul | 0x10000u);
}
#endif

/* Are the @len (>= 1) bytes at @key all in 0x21..0x7e?  Eight at a time:
 * the first and last eight (overlapping), then whatever lies between. */
static inline bool ureg__key_bytes_ok(const char *key, size_t len)
{
	uint64_t w, bad = 0;

	if (len >= 8) {
		memcpy(&w, key, 8);
		bad = UREG__HAS_LESS(w, 0x21) | UREG__HAS_MORE(w, 0x7e);
		memcpy(&w, key + len - 8, 8);
		bad |= UREG__HAS_LESS(w, 0x21) | UREG__HAS_MORE(w, 0x7e);
		for (size_t i = 8; i + 8 < len; i += 8) {
			memcpy(&w, key + i, 8);
			bad |= UREG__HAS_LESS(w, 0x21) | UREG__HAS_MORE(w, 0x7e);
		}
	} else {
		for (size_t i = 0; i < len; i++)
			bad |= (unsigned char)((unsigned char)key[i] - 0x21) > 0x7e - 0x21;
	}
	return !bad;
}

/*
 * Measures and hashes @key into @k, without validating it; false: NULL or
 * longer than UREG_KEY_MAX.  An empty key passes (and is found nowhere).
 * The fast test also sends NULL and page-aligned keys to the slow path.
 */
static inline __attribute__((always_inline)) bool ureg__key_hash(const char *key, struct ureg_key *k)
{
	size_t len;

#ifdef __SSE2__
	if (UREG_LIKELY((((uintptr_t)key - 1) & 4095) < 4096 - 16)) {
		unsigned i = ureg__nul16(key);
		if (UREG_LIKELY(i < 16)) {
			len = i;
			goto hash;
		}
	}
#endif
	if (!key || (len = strnlen(key, UREG_KEY_MAX + 1)) > UREG_KEY_MAX)
		return false;
hash:
	k->str = key;
	k->len = (uint16_t)len;
	k->hash = ureg__hash_bytes(key, len);
	return true;
}

#endif /* UREG_KEY_INT_H */
