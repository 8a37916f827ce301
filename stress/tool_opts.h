/* SPDX-License-Identifier: MIT */
/*
 * Command-line conventions shared by the programs in stress/ (ureg-bench,
 * ureg-stress, ureg-stress-handles, ureg-memprofile):
 *
 *  - options are parsed with getopt_long; every option has a long name;
 *  - --help prints the usage on stdout and exits 0; a usage error prints
 *    the reason and the usage on stderr and exits 2;
 *  - --version prints "PROGRAM (ureg) VERSION", VERSION being the libureg
 *    actually loaded (ureg_version()), and exits 0;
 *  - every number is parsed whole and range-checked (no atoi: "12x", "",
 *    "-1" and values out of range are usage errors);
 *  - exit codes: 0 success, 2 usage error; 1 for the program's own
 *    failure (a check that failed, a run that could not complete); any
 *    other code only where the program's --help lists it.
 */
#ifndef UREG_STRESS_TOOL_OPTS_H
#define UREG_STRESS_TOOL_OPTS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <ureg/ureg.h>

#define TOOL_EXIT_OK 0
#define TOOL_EXIT_FAIL 1
#define TOOL_EXIT_USAGE 2

static inline void tool_print_version(const char *prog)
{
	printf("%s (ureg) %s\n", prog, ureg_version());
}

/* A decimal integer in [@min, @max], the whole string; false otherwise. */
static inline bool tool_parse_ulong(const char *s, unsigned long min,
				    unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || s[0] < '0' || s[0] > '9')
		return false; /* no sign, no leading space */
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* An unsigned 64-bit integer (decimal, or 0x hex), the whole string. */
static inline bool tool_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return false;
	*out = (uint64_t)v;
	return true;
}

/* A number in [@min, @max] (strtod syntax, finite), the whole string. */
static inline bool tool_parse_double(const char *s, double min, double max,
				     double *out)
{
	char *end;
	double v;

	if (!s || !((s[0] >= '0' && s[0] <= '9') || s[0] == '.'))
		return false; /* no sign, no leading space, no "inf" */
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !(v >= min && v <= max))
		return false;
	*out = v;
	return true;
}

#endif /* UREG_STRESS_TOOL_OPTS_H */
