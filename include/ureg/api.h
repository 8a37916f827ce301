/* SPDX-License-Identifier: MIT */
/*
 * <ureg/api.h> - UREG_API, the export mark of every public function, and
 * the version of the headers.  The libraries are built with
 * -fvisibility=hidden: a symbol without UREG_API is not exported.
 */
#ifndef UREG_API_H
#define UREG_API_H

#define UREG_VERSION_MAJOR 0
#define UREG_VERSION_MINOR 2
#define UREG_VERSION_PATCH 0
#define UREG_VERSION_STRING "0.2.0"
/* one number that compares: UREG_VERSION >= UREG_VERSION_AT(0, 2, 0) */
#define UREG_VERSION_AT(maj, min, pat) (((maj) << 16) | ((min) << 8) | (pat))
#define UREG_VERSION \
	UREG_VERSION_AT(UREG_VERSION_MAJOR, UREG_VERSION_MINOR, UREG_VERSION_PATCH)

/*
 * ABI policy.  A program built against these headers keeps working with
 * every later libureg of the same SONAME:
 *  - structs the caller fills and the library reads (ureg_type,
 *    ureg_factory, ureg_provider, ureg_bridge, ureg_agent_ops, ...) and
 *    structs the library fills in the caller's storage (stats, info,
 *    reports) end with reserved fields.  A later version turns reserved
 *    fields into new ones whose zero value means "as before"; the struct
 *    never grows.  Callers must zero what they fill (designated
 *    initializers and `= { 0 }` do); where the library can check, a
 *    nonzero reserved field is refused with -EINVAL, so a program written
 *    for a newer library fails clearly on an older one.
 *  - headers embedded as a struct's first member (ureg_tool, ureg_agent,
 *    ...) carry reserved fields for the same reason.
 *  - structs the library allocates and hands out by pointer (events,
 *    errors, plans) may grow at the end.
 * tests/install/abi.c pins every public struct's size: growing one is a
 * deliberate ABI decision, not an accident.
 */

#ifndef UREG_API
#if defined(UREG_BUILDING)
#define UREG_API __attribute__((visibility("default")))
#else
#define UREG_API
#endif
#endif

#endif /* UREG_API_H */
