/* SPDX-License-Identifier: MIT */
/*
 * ureg-demo: a short tour.  Registers a singleton and two factories, then
 * four "user" threads each get a context, look things up and create
 * instances concurrently; finally every context's memory is printed and
 * the contexts are destroyed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ureg/ureg.h>
#include <ureg/typed.h>

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
	ureg_ctx_set_quota(u->ctx, 64 * 1024);
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

int main(void)
{
	tool_reg_registry *reg;
	struct user users[4];
	struct tool *calc = calloc(1, sizeof(*calc));
	int rc;

	strcpy(calc->name, "calculator");
	if ((rc = tool_reg_new(&tool_type, "tools", &reg))) {
		fprintf(stderr, "registry: %s\n", ureg_strerror(rc));
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

	for (int i = 0; i < 4; i++) {
		users[i] = (struct user){ .id = i, .reg = reg };
		pthread_create(&users[i].th, NULL, user_main, &users[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(users[i].th, NULL);

	printf("calculator singleton used %d times by 4 threads\n", calc->calls);
	printf("%-8s %6s %9s %10s %10s %6s %8s %6s\n", "context", "arena", "instances",
	       "live_bytes", "peak_bytes", "allocs", "quota", "same");
	for (int i = 0; i < 4; i++) {
		struct ureg_ctx_stats st;
		ureg_ctx_stats(users[i].ctx, &st);
		printf("%-8s %6u %9zu %10zu %10zu %6zu %8zu %6s   (%d scratch made, rest refused by quota)\n",
		       ureg_ctx_name(users[i].ctx), st.arena, st.instances,
		       st.live_bytes, st.peak_bytes, st.allocations, st.quota,
		       users[i].cached_same ? "yes" : "NO", users[i].created);
	}
	for (int i = 0; i < 4; i++)
		ureg_ctx_destroy(users[i].ctx);
	printf("all contexts destroyed; registry destroyed\n");
	tool_reg_destroy(reg);
	return 0;
}
