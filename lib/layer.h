/* SPDX-License-Identifier: MIT */
/*
 * lib/layer.h - private helpers of the libraries layered on libureg
 * (lib/config: libureg-config, lib/agents: libureg-agents).
 *
 * Those libraries link libureg like any application does: they may use
 * its public API (the ureg/ headers) and nothing from lib/core or lib/ctx.  The
 * helpers below are static inline over public symbols only, so no private
 * libureg symbol has to be exported for them.
 */
#ifndef UREG_LAYER_H
#define UREG_LAYER_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ureg/ureg.h"
#ifdef UREG_FAULT_INJECTION
#include "ureg/fault.h"
#endif

#define UREG_LIKELY(x) __builtin_expect(!!(x), 1)
#define UREG_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Registers the calling thread with liburcu on first use, as every
 * libureg entry point does (the thread state is public for the inline
 * read path; see <ureg/ureg.h>). */
static inline void ureg__rcu_ensure(void)
{
	if (UREG_UNLIKELY(!ureg__thread.registered))
		ureg__rcu_register_slow();
}

/* Allocation with fault injection: in a -Dfault_injection=true build the
 * Nth allocation of libureg and of every layer counts against the one
 * countdown of ureg_fault_inject(); otherwise plain libc. */
static inline bool ureg__layer_fault(void)
{
#ifdef UREG_FAULT_INJECTION
	return ureg_fault_hit();
#else
	return false;
#endif
}

static inline void *ureg__malloc(size_t n)
{
	return ureg__layer_fault() ? NULL : malloc(n);
}

static inline void *ureg__calloc(size_t n, size_t size)
{
	return ureg__layer_fault() ? NULL : calloc(n, size);
}

static inline void *ureg__realloc(void *p, size_t n)
{
	return ureg__layer_fault() ? NULL : realloc(p, n);
}

static inline char *ureg__strdup(const char *s)
{
	size_t n;
	char *d;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	d = ureg__malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

static inline void ureg__free(void *p)
{
	free(p);
}

#endif /* UREG_LAYER_H */
