/* SPDX-License-Identifier: MIT */
/*
 * Every allocation libureg makes for itself goes through these wrappers so
 * that a fault-injection build (-Dfault_injection=true) can fail the Nth
 * one and tests can prove each failure leaves everything consistent and
 * leak-free.  In a normal build ureg__fault_hit() is a constant false.
 * Library bookkeeping uses the application's malloc; context memory
 * (ctx.c) uses jemalloc arenas and also passes through ureg__fault_hit().
 */
#include <stdlib.h>
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
