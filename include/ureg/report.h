/* SPDX-License-Identifier: MIT */
/*
 * <ureg/report.h> - the hierarchy report of a live process (libureg):
 * registries, entries, providers and user contexts.
 */
#ifndef UREG_REPORT_H
#define UREG_REPORT_H

#include <ureg/api.h>

#include <stdio.h>
#include <ureg/ureg.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
	UREG_REPORT_TEXT = 0,
	UREG_REPORT_JSON = 1u << 0,
};

/**
 * ureg_report - the hierarchy report of the live process: every registry
 * (sorted by name) with its type chain (agent -> base) and every entry
 * (sorted by key) with kind, scope, provider, source file:line,
 * generation and rank; a key with several providers (ureg.h, "Ranking")
 * lists each with its kind, rank and whether it is the active one (JSON:
 * "rank" and "providers" on every entry); then every live user context
 * with its instances and bytes and its per-entry breakdown (ctx.h,
 * ureg_ctx_entries; JSON: "entries": [{"registry", "key", "instances",
 * "bytes", "peak", "allocations", "live_bytes", "peak_bytes"}], the last
 * two repeating bytes and peak under the context's own names); then the
 * 10 largest contexts by live bytes ("top_contexts": [{"name",
 * "live_bytes"}]) and a histogram of context sizes ("context_sizes":
 * [{"up_to": 0 | 1024 | 4096 | ... | null, "contexts"}], powers of four
 * from 1 KiB; null: larger than the last bound).
 * @flags: UREG_REPORT_TEXT or UREG_REPORT_JSON.
 *
 * Any thread, not inside a read section.  Blocks on the global registry
 * and context list mutexes (registries cannot be created or destroyed
 * while it runs; a context being destroyed waits for the walk); takes no
 * context's lock; allocates.  Each
 * registry is read in its own read section (a consistent generation per
 * registry).  Returns 0, -EINVAL, -ENOMEM or -EIO (write failed).
 */
UREG_API int ureg_report(FILE *out, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* UREG_REPORT_H */
