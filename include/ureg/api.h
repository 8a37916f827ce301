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

#ifndef UREG_API
#if defined(UREG_BUILDING)
#define UREG_API __attribute__((visibility("default")))
#else
#define UREG_API
#endif
#endif

#endif /* UREG_API_H */
