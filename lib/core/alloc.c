/* SPDX-License-Identifier: MIT */
/*
 * Every allocation libureg makes for itself goes through these wrappers so
 * that a fault-injection build (-Dfault_injection=true) can fail the Nth
 * one and tests can prove each failure leaves everything consistent and
 * leak-free.  In a normal build ureg__fault_hit() is a constant false.
 * Library bookkeeping uses the application's malloc; context memory
 * (ctx.c) uses jemalloc arenas and also passes through ureg__fault_hit(),
 * and so do the hot parts of entries (ureg__hot_alloc, below).
 */
#include <stdlib.h>
#include <jemalloc/jemalloc.h>
#include "internal.h"
#include "ureg/fault.h"

#ifdef UREG_FAULT_INJECTION
/* Global by design: the test driver sets it from one thread and reads it
 * from all; relaxed atomics are enough for a countdown. */
static long fault_countdown; /* 0: off; N: the Nth allocation fails */
static long fault_seen;      /* allocations since the last arm */

bool ureg_fault_hit(void)
{
	__atomic_add_fetch(&fault_seen, 1, __ATOMIC_RELAXED);
	long c = __atomic_load_n(&fault_countdown, __ATOMIC_RELAXED);
	while (c > 0) {
		if (__atomic_compare_exchange_n(&fault_countdown, &c, c - 1,
						false, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED))
			return c == 1;
	}
	return false;
}

int ureg_fault_inject(long nth)
{
	if (nth < 0)
		return -EINVAL;
	__atomic_store_n(&fault_seen, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fault_countdown, nth, __ATOMIC_RELAXED);
	return 0;
}

long ureg_fault_allocations(void)
{
	return __atomic_load_n(&fault_seen, __ATOMIC_RELAXED);
}

static bool names_collide;

void ureg_fault_names_collide(bool on)
{
	__atomic_store_n(&names_collide, on, __ATOMIC_RELAXED);
}

bool ureg_fault_names_colliding(void)
{
	return __atomic_load_n(&names_collide, __ATOMIC_RELAXED);
}
#endif

void *ureg__malloc(size_t n)
{
	if (ureg__fault_hit())
		return NULL;
	return malloc(n);
}

/* @n is rounded up to a multiple of @align, as aligned_alloc wants. */
void *ureg__aligned_alloc(size_t align, size_t n)
{
	if (ureg__fault_hit())
		return NULL;
	return aligned_alloc(align, (n + align - 1) & ~(align - 1));
}

/*
 * The hot parts of entries, in one jemalloc arena of their own: jemalloc
 * keeps each size class in slabs of its own, so the hot parts of a
 * registry's entries lie side by side (64 bytes apart for keys up to 15
 * bytes) instead of between the cold parts, the items and whatever else
 * the application's malloc hands out meanwhile: a registry of 100,000
 * keys then spans a quarter of the pages (and of the TLB entries) it
 * spanned with one 256-byte allocation per entry.  No thread cache: an
 * entry is freed by liburcu's call_rcu thread, not by the thread that
 * made it, and the arena is never reset or destroyed.  Made on first use;
 * if jemalloc cannot make one, its default arenas serve.
 *
 * Under AddressSanitizer the application's malloc serves instead, so that
 * LeakSanitizer still accounts for every entry.
 */
#if defined(__SANITIZE_ADDRESS__)
#define UREG_HOT_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UREG_HOT_MALLOC 1
#endif
#endif

/*
 * The rest of an entry's bookkeeping - its cold part, its item and
 * factory boxes - in a second arena of libureg's own (same reasons, same
 * rules as the hot one: no thread cache, freed by any thread, made on
 * first use, malloc under AddressSanitizer).  From the application's
 * malloc they would land between the application's own objects: in a
 * benchmark that allocates an item and registers it, 100,000 items then
 * lay ~200 bytes apart instead of 32 (three times the pages, and the TLB
 * entries, that reading them spans), where an intrusive table's nodes lie
 * side by side.  Both arenas are made together, on first use of either.
 */
#ifndef UREG_HOT_MALLOC
/* written once, under arenas_once */
static int hot_flags = MALLOCX_TCACHE_NONE, meta_flags = MALLOCX_TCACHE_NONE;
static pthread_once_t arenas_once = PTHREAD_ONCE_INIT;

/* A new arena's flags, or the default arenas' if jemalloc cannot make one. */
static int own_arena(void)
{
	unsigned ind;
	size_t sz = sizeof(ind);

	if (mallctl("arenas.create", &ind, &sz, NULL, 0) == 0)
		return MALLOCX_ARENA(ind) | MALLOCX_TCACHE_NONE;
	return MALLOCX_TCACHE_NONE;
}

static void arenas_init(void)
{
	hot_flags = own_arena();
	meta_flags = own_arena();
}
#endif

void *ureg__hot_alloc(size_t n)
{
	if (ureg__fault_hit())
		return NULL;
	n = n <= 64 ? 64 : (n + 63) & ~(size_t)63;
#ifdef UREG_HOT_MALLOC
	return aligned_alloc(64, n);
#else
	pthread_once(&arenas_once, arenas_init);
	return mallocx(n, hot_flags | MALLOCX_ALIGN(64));
#endif
}

void *ureg__meta_alloc_unfaulted(size_t n)
{
#ifdef UREG_HOT_MALLOC
	return malloc(n);
#else
	pthread_once(&arenas_once, arenas_init);
	return mallocx(n, meta_flags);
#endif
}

void *ureg__meta_alloc_line(size_t n)
{
	if (ureg__fault_hit())
		return NULL;
#ifdef UREG_HOT_MALLOC
	return aligned_alloc(64, (n + 63) & ~(size_t)63);
#else
	pthread_once(&arenas_once, arenas_init);
	return mallocx(n, meta_flags | MALLOCX_ALIGN(64));
#endif
}

void *ureg__meta_alloc(size_t n)
{
	if (ureg__fault_hit())
		return NULL;
	return ureg__meta_alloc_unfaulted(n);
}

#ifdef UREG_HOT_MALLOC
void ureg__hot_free(void *p) { free(p); }
void ureg__meta_free(void *p) { free(p); }
#else
void ureg__hot_free(void *p)
{
	if (p)
		dallocx(p, hot_flags);
}

void ureg__meta_free(void *p)
{
	if (p)
		dallocx(p, meta_flags);
}
#endif

void *ureg__realloc(void *p, size_t n)
{
	if (ureg__fault_hit())
		return NULL;
	return realloc(p, n);
}

void *ureg__calloc(size_t n, size_t size)
{
	if (ureg__fault_hit())
		return NULL;
	return calloc(n, size);
}

char *ureg__strdup(const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = ureg__malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

void ureg__free(void *p)
{
	free(p);
}
