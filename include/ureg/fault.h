/* SPDX-License-Identifier: MIT */
/*
 * Fault injection, for tests: failed allocations, forced hash collisions.
 * Only a library built with -Dfault_injection=true has these calls.
 */
#ifndef UREG_FAULT_H
#define UREG_FAULT_H

#include <ureg/api.h>

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Test-only: these exist only in a libureg built with
 * -Dfault_injection=true (a release library exports none of them; linking
 * a test that calls them against one fails at link time, on purpose).
 */

/**
 * ureg_fault_inject - make the @nth allocation libureg (and the libraries
 * layered on it) makes from now on fail (1 = the next one; 0 turns
 * injection off), then succeed again.  Counts allocations of all threads.
 * Any thread; never blocks.  Returns 0 or -EINVAL.
 */
UREG_API int ureg_fault_inject(long nth);

/** ureg_fault_allocations - allocations seen since the last inject call. */
UREG_API long ureg_fault_allocations(void);

/**
 * ureg_fault_hit - count one allocation; true when it is the one
 * ureg_fault_inject() chose to fail.  For the layered libraries'
 * allocation wrappers.  Any thread; never blocks.
 */
UREG_API bool ureg_fault_hit(void);

/**
 * ureg_fault_names_collide - while @on, every hash a context computes to
 * find its per-entry record by registry name and key (lib/ctx, by_name)
 * is the same value, as if every pair of names collided in 64 bits: what
 * no real key set can be made to do on demand.  Lookups must still find
 * one record per registry name and key.  Any thread; never blocks; set it
 * before the contexts it is meant for make records.
 */
UREG_API void ureg_fault_names_collide(bool on);

/** ureg_fault_names_colliding - whether ureg_fault_names_collide() is on. */
UREG_API bool ureg_fault_names_colliding(void);

#ifdef __cplusplus
}
#endif

#endif /* UREG_FAULT_H */
