/* SPDX-License-Identifier: MIT */
/*
 * ureg-demo: a short tour.  Registers a singleton and two factories, then
 * four "user" threads each get a context, look things up and create
 * instances concurrently; finally every context's memory is printed and
 * the contexts are destroyed.  See --help (and the man page made from it).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ureg/ureg.h>
#include <ureg/typed.h>

#include "config/cli.h"

static const char *prog = "ureg-demo";

#define MAX_USERS 64

static void help(void)
{
	printf("Usage: %s [OPTION]...\n"
	       "A short tour of ureg: a registry 'tools' with a singleton (calculator) and\n"
	       "two factories (search: one per user context; scratch: a new instance per\n"
	       "call); N user threads each get a context with a memory quota, look the\n"
	       "names up and create instances concurrently; every context's memory is\n"
	       "printed, then the contexts are destroyed.\n"
	       "\n"
	       "Options:\n"
	       "  -u, --users=N        user threads and contexts (1-%d, default 4)\n"
	       "  -q, --quota=BYTES    each context's memory quota (1024-1073741824,\n"
	       "                       default 65536); creations past it are refused\n"
	       "  -h, --help           display this help and exit\n"
	       "  -V, --version        output version information and exit\n"
	       "\n"
	       "Exit status:\n"
	       "  0  the tour ran\n"
	       "  1  a registry or context could not be created\n"
	       "  2  usage error (unknown option, bad number)\n",
	       prog, MAX_USERS);
}

static long quota = 64 * 1024;

struct tool {
	char name[32];
	int calls;
};

UREG_DECLARE_TYPED(tool_reg, struct tool)

static void tool_free(void *item) { free(item); }

static int make_session_tool(ureg_ctx *ctx, void *arg, void **out)
{
	struct tool *t = ureg_ctx_calloc(ctx, 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	snprintf(t->name, sizeof(t->name), "%s@%s", (const char *)arg,
		 ureg_ctx_name(ctx));
	*out = t;
	return 0;
}

static int make_scratch(ureg_ctx *ctx, void *arg, void **out)
{
	size_t n = (size_t)(uintptr_t)arg;
	struct tool *t = ureg_ctx_calloc(ctx, 1, sizeof(*t) + n);
	if (!t)
		return -ENOMEM;
	strcpy(t->name, "scratch");
	*out = t;
	return 0;
}

static void instance_done(void *inst, ureg_ctx *ctx) { ureg_ctx_free(ctx, inst); }

static const ureg_type tool_type = {
	.name = "tool", .item_destroy = tool_free, .instance_destroy = instance_done,
};

struct user {
	pthread_t th;
	int id;
	tool_reg_registry *reg;
	ureg_ctx *ctx;
	int created, cached_same;
};

static void *user_main(void *arg)
{
	struct user *u = arg;
	char name[32];
	struct tool *a, *b, *t;

	snprintf(name, sizeof(name), "user%d", u->id);
	if (ureg_ctx_new(name, 0, &u->ctx))
		return NULL;
	ureg_ctx_set_quota(u->ctx, (size_t)quota);
	ureg_read_lock();
	if (tool_reg_get(u->reg, "search", u->ctx, &a) == 0 &&
	    tool_reg_get(u->reg, "search", u->ctx, &b) == 0)
		u->cached_same = a == b; /* CONTEXT scope: one per user */
	if (tool_reg_get(u->reg, "calculator", NULL, &t) == 0)
		__atomic_add_fetch(&t->calls, 1, __ATOMIC_RELAXED);
	ureg_read_unlock();
	for (int i = 0; i < 10 * (u->id + 1); i++)
		if (tool_reg_create_instance(u->reg, "scratch", u->ctx, &t) == 0)
			u->created++;
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "users", required_argument, NULL, 'u' },
		{ "quota", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	tool_reg_registry *reg;
	struct user users[MAX_USERS];
	long nusers = 4;
	struct tool *calc;
	int rc, o, status = 0;

	while ((o = getopt_long(argc, argv, "u:q:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'u':
			if (cli_long(prog, "--users", optarg, 1, MAX_USERS, &nusers))
				return CLI_USAGE;
			break;
		case 'q':
			if (cli_long(prog, "--quota", optarg, 1024, 1L << 30, &quota))
				return CLI_USAGE;
			break;
		case 'h': help(); return 0;
		case 'V': cli_version(prog); return 0;
		default: return cli_usage_error(prog);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
		return cli_usage_error(prog);
	}
	if (!(calc = calloc(1, sizeof(*calc)))) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	strcpy(calc->name, "calculator");
	if ((rc = tool_reg_new(&tool_type, "tools", &reg))) {
		fprintf(stderr, "registry: %s\n", ureg_strerror(rc));
		free(calc);
		return 1;
	}
	tool_reg_register(reg, "calculator", calc);
	tool_reg_register_factory(reg, "search", &(struct ureg_factory){
		.create = make_session_tool, .scope = UREG_SCOPE_CONTEXT,
		.arg = "search" });
	tool_reg_register_factory(reg, "scratch", &(struct ureg_factory){
		.create = make_scratch, .scope = UREG_SCOPE_TRANSIENT,
		.arg = (void *)(uintptr_t)2000 });
	rc = tool_reg_register(reg, "calculator", calc);
	printf("registry 'tools': %zu keys; registering 'calculator' twice -> %s\n",
	       tool_reg_count(reg), ureg_strerror(rc));
	printf("  (%s)\n", ureg_last_error());

	for (int i = 0; i < nusers; i++) {
		users[i] = (struct user){ .id = i, .reg = reg };
		if (pthread_create(&users[i].th, NULL, user_main, &users[i])) {
			fprintf(stderr, "%s: cannot start thread %d\n", prog, i);
			nusers = i;
			status = 1;
			break;
		}
	}
	for (int i = 0; i < nusers; i++)
		pthread_join(users[i].th, NULL);

	printf("calculator singleton used %d times by %ld threads\n", calc->calls, nusers);
	printf("%-8s %6s %9s %10s %10s %6s %8s %6s\n", "context", "arena", "instances",
	       "live_bytes", "peak_bytes", "allocs", "quota", "same");
	for (int i = 0; i < nusers; i++) {
		struct ureg_ctx_stats st;
		if (!users[i].ctx) {
			printf("user%d: no context\n", i);
			status = 1;
			continue;
		}
		ureg_ctx_stats(users[i].ctx, &st);
		printf("%-8s %6u %9zu %10zu %10zu %6zu %8zu %6s   (%d scratch made, rest refused by quota)\n",
		       ureg_ctx_name(users[i].ctx), st.arena, st.instances,
		       st.live_bytes, st.peak_bytes, st.allocations, st.quota,
		       users[i].cached_same ? "yes" : "NO", users[i].created);
	}
	for (int i = 0; i < nusers; i++)
		ureg_ctx_destroy(users[i].ctx);
	printf("all contexts destroyed; registry destroyed\n");
	tool_reg_destroy(reg);
	return status;
}
