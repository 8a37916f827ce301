/* SPDX-License-Identifier: MIT */
/*
 * ureg_report: the hierarchy report ("MRO report") of a live process.
 *
 * It walks the global registry list under its mutex (so no registry can be
 * destroyed under it), snapshots each registry's keys, and reads every
 * entry's description inside ONE read section per registry, so each
 * registry is reported at a single generation.  Then the user contexts,
 * through ureg_ctx_foreach.  JSON is written by hand: every string goes
 * through json_str(), which escapes quotes, backslashes and control bytes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "ureg/report.h"

/* Through the fault-injection wrappers, like every library allocation. */
static void json_str(FILE *out, const char *s)
{
	if (!s) {
		fputs("null", out);
		return;
	}
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int reg_cmp(const void *a, const void *b)
{
	const ureg_registry *x = *(ureg_registry *const *)a;
	const ureg_registry *y = *(ureg_registry *const *)b;
	return strcmp(x->name, y->name);
}

static const char *kind_name(const struct ureg_entry_info *in)
{
	if (in->has_singleton && in->has_factory)
		return "singleton+factory";
	return in->has_singleton ? "singleton" : "factory";
}

/* Ranked keys: every provider, highest rank first (ureg_providers).  Up
 * to PROVIDERS_SHOWN are listed; the count covers them all. */
#define PROVIDERS_SHOWN 32

static void report_providers(FILE *out, ureg_registry *reg, const char *key,
			     bool json)
{
	struct ureg_provider_info pi[PROVIDERS_SHOWN];
	int n = ureg_providers(reg, key, pi, PROVIDERS_SHOWN);

	if (n < 0)
		n = 0;
	for (int i = 0; i < n && i < PROVIDERS_SHOWN; i++) {
		const char *kind = pi[i].what == UREG_SINGLETON ? "singleton" : "factory";
		const char *scope = pi[i].what == UREG_SINGLETON ? NULL :
			pi[i].scope == UREG_SCOPE_CONTEXT ? "context" : "transient";

		if (json) {
			fputs(i ? ", {\"kind\": " : "{\"kind\": ", out);
			json_str(out, kind);
			fprintf(out, ", \"rank\": %d, \"active\": %s, \"scope\": ",
				pi[i].rank, pi[i].active ? "true" : "false");
			json_str(out, scope);
			fputc('}', out);
		} else {
			if (pi[i].active)
				fprintf(out, "      rank %-11d %-9s %-9s (active)\n", pi[i].rank,
					kind, scope ? scope : "-");
			else
				fprintf(out, "      rank %-11d %-9s %s\n", pi[i].rank, kind,
					scope ? scope : "-");
		}
	}
	if (!json && n > PROVIDERS_SHOWN)
		fprintf(out, "      ... %d providers in all\n", n);
}

static int report_registry(FILE *out, ureg_registry *reg, bool json, bool first)
{
	char **keys;
	size_t n;
	int rc;

	if ((rc = ureg_keys(reg, &keys, &n)))
		return rc;
	qsort(keys, n, sizeof(*keys), str_cmp);

	if (json) {
		fputs(first ? "\n    {" : ",\n    {", out);
		fputs("\"name\": ", out);
		json_str(out, reg->name);
		fputs(", \"type_chain\": [", out);
		for (const ureg_type *t = reg->type; t; t = t->parent) {
			json_str(out, t->name);
			if (t->parent)
				fputs(", ", out);
		}
		fprintf(out, "], \"generation\": %llu, \"entries\": [",
			(unsigned long long)ureg_generation(reg));
	} else {
		fprintf(out, "registry %s  type ", reg->name);
		for (const ureg_type *t = reg->type; t; t = t->parent)
			fprintf(out, "%s%s", t->name, t->parent ? " -> " : "");
		fprintf(out, "  generation %llu  %zu key%s\n",
			(unsigned long long)ureg_generation(reg), n, n == 1 ? "" : "s");
	}
	ureg_read_lock();
	size_t shown = 0;
	for (size_t i = 0; i < n; i++) {
		struct ureg_entry_info in;
		if (ureg_entry_info(reg, keys[i], &in))
			continue; /* removed since the snapshot */
		const char *scope = in.has_factory ?
			(in.scope == UREG_SCOPE_CONTEXT ? "context" : "transient") : NULL;
		if (json) {
			fputs(shown ? ",\n      {" : "\n      {", out);
			fputs("\"key\": ", out);
			json_str(out, keys[i]);
			fputs(", \"kind\": ", out);
			json_str(out, kind_name(&in));
			fputs(", \"scope\": ", out);
			json_str(out, scope);
			fputs(", \"provider\": ", out);
			json_str(out, in.provider);
			fputs(", \"source\": ", out);
			if (in.source_file) {
				fputs("{\"file\": ", out);
				json_str(out, in.source_file);
				fprintf(out, ", \"line\": %u, \"column\": %u}",
					in.source_line, in.source_column);
			} else {
				fputs("null", out);
			}
			fprintf(out, ", \"generation\": %llu, \"rank\": %d, \"providers\": [",
				(unsigned long long)in.generation, in.rank);
			report_providers(out, reg, keys[i], true);
			fputs("]}", out);
		} else {
			fprintf(out, "  %-24s %-17s %-9s %-28s ", keys[i],
				kind_name(&in), scope ? scope : "-",
				in.provider ? in.provider : "-");
			if (in.source_file)
				fprintf(out, "%s:%u:%u", in.source_file,
					in.source_line, in.source_column);
			else
				fputs("-", out);
			fprintf(out, "  gen %llu", (unsigned long long)in.generation);
			/* ranked keys: the rank, and every provider when several */
			if (in.rank || in.providers > 1)
				fprintf(out, "  rank %d", in.rank);
			fputc('\n', out);
			if (in.providers > 1)
				report_providers(out, reg, keys[i], false);
		}
		shown++;
	}
	ureg_read_unlock();
	if (json)
		fputs(shown ? "\n    ]}" : "]}", out);
	ureg_keys_free(keys);
	return 0;
}

/*
 * Memory per user context: each context's totals and its per-entry
 * breakdown (ureg_ctx_entries), then the TOP_CONTEXTS largest contexts by
 * live bytes and a histogram of context sizes (powers of four from 1 KiB;
 * bucket "up_to" N counts contexts with live bytes <= N and above the
 * previous bound; the last, "up_to": null, is everything larger).
 */
#define TOP_CONTEXTS 10
#define SIZE_BUCKETS 13

struct ctx_top {
	char name[UREG_NAME_MAX + 1];
	size_t bytes;
};

struct ctx_walk {
	FILE *out;
	bool json;
	size_t n;
	size_t nentries;
	size_t ntop;
	struct ctx_top top[TOP_CONTEXTS];
	size_t hist[SIZE_BUCKETS];
};

static size_t bucket_bound(int i)
{
	return i == 0 ? 0 : (size_t)1024 << (2 * (i - 1)); /* 0, 1 KiB, 4 KiB, ... 4 GiB */
}

static void walk_note(struct ctx_walk *w, const char *name, size_t bytes)
{
	int b = 0;
	size_t i;

	while (b < SIZE_BUCKETS - 1 && bytes > bucket_bound(b))
		b++;
	w->hist[b]++;
	/* insertion into the top list, largest first (first seen wins ties) */
	for (i = w->ntop; i > 0 && w->top[i - 1].bytes < bytes; i--)
		if (i < TOP_CONTEXTS)
			w->top[i] = w->top[i - 1];
	if (i < TOP_CONTEXTS) {
		snprintf(w->top[i].name, sizeof(w->top[i].name), "%s", name);
		w->top[i].bytes = bytes;
		if (w->ntop < TOP_CONTEXTS)
			w->ntop++;
	}
}

/* Called under the context's lock (ureg_ctx_entries): only writes. */
static int report_entry(const struct ureg_ctx_entry *e, void *arg)
{
	struct ctx_walk *w = arg;

	if (w->json) {
		fputs(w->nentries ? ", {\"registry\": " : "{\"registry\": ", w->out);
		json_str(w->out, e->registry);
		fputs(", \"key\": ", w->out);
		json_str(w->out, e->key);
		/* bytes/peak as issue 12 names them; live_bytes/peak_bytes as
		 * the context itself and the agent page name them */
		fprintf(w->out, ", \"instances\": %zu, \"bytes\": %zu, \"peak\": %zu, "
			"\"allocations\": %zu, \"live_bytes\": %zu, \"peak_bytes\": %zu}",
			e->instances, e->bytes, e->peak_bytes, e->allocations,
			e->bytes, e->peak_bytes);
	} else {
		fprintf(w->out, "      %s/%s  instances %zu  live %zu B  peak %zu B  allocations %zu\n",
			e->registry, e->key, e->instances, e->bytes, e->peak_bytes,
			e->allocations);
	}
	w->nentries++;
	return 0;
}

static int report_ctx(ureg_ctx *ctx, void *arg)
{
	struct ctx_walk *w = arg;
	struct ureg_ctx_stats st;

	if (ureg_ctx_stats(ctx, &st))
		return 0;
	walk_note(w, ureg_ctx_name(ctx), st.live_bytes);
	w->nentries = 0;
	if (w->json) {
		fputs(w->n ? ",\n    {" : "\n    {", w->out);
		fputs("\"name\": ", w->out);
		json_str(w->out, ureg_ctx_name(ctx));
		fprintf(w->out, ", \"instances\": %zu, \"live_bytes\": %zu, "
			"\"peak_bytes\": %zu, \"allocations\": %zu, \"quota\": %zu, "
			"\"arena\": %u, \"dedicated\": %s, \"entries\": [",
			st.instances, st.live_bytes, st.peak_bytes, st.allocations,
			st.quota, st.arena, st.dedicated ? "true" : "false");
		ureg_ctx_entries(ctx, report_entry, w);
		fputs("]}", w->out);
	} else {
		fprintf(w->out, "  %-24s instances %-6zu live %zu B  peak %zu B  allocations %zu  quota %zu  arena %u%s\n",
			*ureg_ctx_name(ctx) ? ureg_ctx_name(ctx) : "(unnamed)",
			st.instances, st.live_bytes, st.peak_bytes,
			st.allocations, st.quota, st.arena,
			st.dedicated ? " (dedicated)" : "");
		ureg_ctx_entries(ctx, report_entry, w);
	}
	w->n++;
	return 0;
}

static void report_ctx_summary(FILE *out, const struct ctx_walk *w, bool json)
{
	if (json) {
		fputs(",\n  \"top_contexts\": [", out);
		for (size_t i = 0; i < w->ntop; i++) {
			fputs(i ? ", {\"name\": " : "{\"name\": ", out);
			json_str(out, w->top[i].name);
			fprintf(out, ", \"live_bytes\": %zu}", w->top[i].bytes);
		}
		fputs("],\n  \"context_sizes\": [", out);
		for (int b = 0; b < SIZE_BUCKETS; b++) {
			if (b < SIZE_BUCKETS - 1)
				fprintf(out, "%s{\"up_to\": %zu, \"contexts\": %zu}",
					b ? ", " : "", bucket_bound(b), w->hist[b]);
			else
				fprintf(out, ", {\"up_to\": null, \"contexts\": %zu}", w->hist[b]);
		}
		fputs("]", out);
		return;
	}
	fprintf(out, "largest contexts (top %d by live bytes)\n", TOP_CONTEXTS);
	for (size_t i = 0; i < w->ntop; i++)
		fprintf(out, "  %-24s %zu B\n", *w->top[i].name ? w->top[i].name : "(unnamed)",
			w->top[i].bytes);
	if (!w->ntop)
		fputs("  (none)\n", out);
	fputs("context sizes (live bytes: contexts)\n", out);
	for (int b = 0; b < SIZE_BUCKETS; b++) {
		if (!w->hist[b])
			continue;
		if (b == 0)
			fprintf(out, "  0 B           %zu\n", w->hist[b]);
		else if (b < SIZE_BUCKETS - 1)
			fprintf(out, "  <= %-9zu B %zu\n", bucket_bound(b), w->hist[b]);
		else
			fprintf(out, "  >  %-9zu B %zu\n", bucket_bound(b - 1), w->hist[b]);
	}
}

int ureg_report(FILE *out, unsigned flags)
{
	ureg_registry **regs = NULL, *reg;
	size_t n = 0, cap = 0;
	bool json = flags & UREG_REPORT_JSON;
	int rc = 0;

	ureg__rcu_ensure();
	if (!out || (flags & ~UREG_REPORT_JSON))
		return ureg__err(-EINVAL, "report: NULL stream or bad flags");
	if (ureg_in_read_section())
		return ureg__err(-EPERM, "report inside a read section");

	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_for_each_entry(reg, &ureg__registries, all_node) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			ureg_registry **v = ureg__realloc(regs, nc * sizeof(*v));
			if (!v) {
				rc = -ENOMEM;
				break;
			}
			regs = v;
			cap = nc;
		}
		regs[n++] = reg;
	}
	if (!rc && n)
		qsort(regs, n, sizeof(*regs), reg_cmp);
	if (!rc) {
		fputs(json ? "{\n  \"registries\": [" : "", out);
		for (size_t i = 0; i < n && !rc; i++)
			rc = report_registry(out, regs[i], json, i == 0);
	}
	pthread_mutex_unlock(&ureg__registries_lock);
	ureg__free(regs);
	if (rc)
		return ureg__err(rc, "report: %s", ureg_strerror(rc));

	struct ctx_walk w;
	memset(&w, 0, sizeof(w));
	w.out = out;
	w.json = json;
	fputs(json ? (n ? "\n  ],\n  \"contexts\": [" : "],\n  \"contexts\": [")
		   : "contexts\n", out);
	ureg_ctx_foreach(report_ctx, &w);
	if (json)
		fputs(w.n ? "\n  ]" : "]", out);
	else if (!w.n)
		fputs("  (none)\n", out);
	report_ctx_summary(out, &w, json);
	if (json)
		fputs("\n}\n", out);
	if (fflush(out) || ferror(out))
		return ureg__err(-EIO, "report: write failed");
	ureg__clear_err();
	return 0;
}
