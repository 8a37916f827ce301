/* SPDX-License-Identifier: MIT */
/*
 * Fault injection, for tests.  Only a library built with
 * -Dfault_injection=true honours it; elsewhere both calls return -ENOTSUP.
 */
#ifndef UREG_FAULT_H
#define UREG_FAULT_H

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ureg_fault_inject - make the @nth allocation libureg makes from now on
 * fail (1 = the next one; 0 turns injection off), then succeed again.
 * Counts allocations of all threads.  Returns 0, -EINVAL or -ENOTSUP.
 */
int ureg_fault_inject(long nth);

/** ureg_fault_allocations - allocations seen since the last inject call. */
long ureg_fault_allocations(void);

#ifdef __cplusplus
}
#endif

#endif /* UREG_FAULT_H */
