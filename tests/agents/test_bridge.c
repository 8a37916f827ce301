/* SPDX-License-Identifier: MIT */
/* The agent event bridge: injection, tagging, replacement seen by live agents. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <ureg/registries.h>

struct sink {
	long events;               /* atomic */
	ureg_ctx *last_ctx;
	uint64_t last_seq;
	enum ureg_agent_event_kind last_kind;
	char last_data[64];
	int bad_order;
};

static void sink_emit(const struct ureg_agent_event *ev, void *arg)
{
	struct sink *s = arg;
	__atomic_add_fetch(&s->events, 1, __ATOMIC_RELAXED);
	s->last_ctx = ev->ctx;
	s->last_kind = ev->kind;
	s->last_seq = ev->seq;
	snprintf(s->last_data, sizeof(s->last_data), "%.*s", (int)ev->len,
		 ev->data ? ev->data : "");
	if (!ureg_in_read_section())
		s->bad_order = 1; /* emit must run inside a read section */
}

static void count_emit(const struct ureg_agent_event *ev, void *arg)
{
	struct sink *s = arg;
	__atomic_add_fetch(&s->events, 1, __ATOMIC_RELAXED);
}

static void agent_free(struct ureg_agent *a, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, a);
}

static const struct ureg_agent_ops ops = { .destroy = agent_free };

static int make_agent(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_agent *a = ureg_ctx_calloc(ctx, 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ops = &ops;
	*out = a;
	return 0;
}

static ureg_agent_reg_registry *agents;

static void setup(void)
{
	struct ureg_factory f = { .create = make_agent, .scope = UREG_SCOPE_CONTEXT };
	cr_assert_eq(ureg_agent_registry_new("agents", &agents), 0);
	cr_assert_eq(ureg_agent_reg_register_factory(agents, "echo", &f), 0);
}

static void teardown(void)
{
	ureg_agent_registry_destroy(agents);
}

static struct ureg_agent *agent_in(ureg_ctx *ctx)
{
	struct ureg_agent *a = NULL;
	ureg_read_lock();
	cr_assert_eq(ureg_agent_reg_get(agents, "echo", ctx, &a), 0);
	ureg_read_unlock();
	return a;
}

TestSuite(bridge, .init = setup, .fini = teardown);

Test(bridge, without_a_bridge_events_are_dropped_with_enotconn)
{
	ureg_ctx *ctx;
	cr_assert_eq(ureg_ctx_new("u", 0, &ctx), 0);
	cr_assert_eq(ureg_agent_emit(agent_in(ctx), UREG_AGENT_STARTED, NULL, 0), -ENOTCONN);
	cr_assert_eq(ureg_agent_emit(NULL, UREG_AGENT_STARTED, NULL, 0), -EINVAL);
	cr_assert_eq(ureg_agent_emit(agent_in(ctx), (enum ureg_agent_event_kind)9, NULL, 0), -EINVAL);
	ureg_ctx_destroy(ctx);
}

Test(bridge, events_carry_the_agent_user_context_kind_payload_and_increasing_sequence)
{
	struct sink s = { 0 };
	struct ureg_bridge b = { .emit = sink_emit, .arg = &s };
	ureg_ctx *alice, *bob;

	cr_assert_eq(ureg_agent_set_bridge(agents, &b), 0);
	cr_assert_eq(ureg_ctx_new("alice", 0, &alice), 0);
	cr_assert_eq(ureg_ctx_new("bob", 0, &bob), 0);
	cr_assert_eq(ureg_agent_emit(agent_in(alice), UREG_AGENT_STARTED, "a1", 2), 1);
	cr_assert_eq(s.last_ctx, alice);
	cr_assert_eq(ureg_agent_emit(agent_in(bob), UREG_AGENT_PROGRESS, "b1", 2), 1);
	cr_assert_eq(s.last_ctx, bob);
	cr_assert_str_eq(s.last_data, "b1");
	cr_assert_eq(s.last_kind, UREG_AGENT_PROGRESS);
	cr_assert_eq(ureg_agent_emit(agent_in(alice), UREG_AGENT_COMPLETED, "a2", 2), 2);
	cr_assert_eq(s.last_seq, 2);
	cr_assert_eq(ureg_agent_emit(agent_in(alice), UREG_AGENT_ERROR, NULL, 0), 3);
	cr_assert_eq(s.events, 4);
	cr_assert_eq(s.bad_order, 0);
	cr_assert_str_eq(ureg_agent_event_name(UREG_AGENT_COMPLETED), "completed");
	ureg_ctx_destroy(alice);
	ureg_ctx_destroy(bob);
	cr_assert_eq(ureg_agent_set_bridge(agents, NULL), 0);
}

Test(bridge, a_bridge_set_after_an_agent_was_created_reaches_that_agent)
{
	struct sink s = { 0 };
	struct ureg_bridge b = { .emit = sink_emit, .arg = &s };
	ureg_ctx *ctx;
	cr_assert_eq(ureg_ctx_new("late", 0, &ctx), 0);
	struct ureg_agent *a = agent_in(ctx);
	cr_assert_eq(ureg_agent_emit(a, UREG_AGENT_STARTED, NULL, 0), -ENOTCONN);
	cr_assert_eq(ureg_agent_set_bridge(agents, &b), 0);
	cr_assert_gt(ureg_agent_emit(a, UREG_AGENT_STARTED, NULL, 0), 0);
	cr_assert_eq(s.events, 1);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(ureg_agent_set_bridge(agents, NULL), 0);
}

Test(bridge, set_bridge_rejects_registries_that_are_not_agent_registries)
{
	ureg_tool_reg_registry *tools;
	struct sink s = { 0 };
	struct ureg_bridge b = { .emit = sink_emit, .arg = &s }, nob = { 0 };

	cr_assert_eq(ureg_tool_reg_new(&ureg_tool_type, "tools", &tools), 0);
	cr_assert_eq(ureg_agent_set_bridge((ureg_agent_reg_registry *)(void *)tools, &b), -EINVAL);
	cr_assert_eq(ureg_agent_set_bridge(NULL, &b), -EINVAL);
	cr_assert_eq(ureg_agent_set_bridge(agents, &nob), -EINVAL);
	ureg_read_lock();
	cr_assert_eq(ureg_agent_set_bridge(agents, &b), -EDEADLK);
	ureg_read_unlock();
	ureg_tool_reg_destroy(tools);
}

/* Replacement while live agents emit from several threads: once
 * set_bridge(B2) returns, B1 never runs again and B2 gets everything. */
#define EMITTERS 4
struct emitter {
	struct ureg_agent *a;
	pthread_barrier_t *start;
	int *stop;
	long emitted;
};

static void *emit_loop(void *arg)
{
	struct emitter *e = arg;
	pthread_barrier_wait(e->start);
	while (!__atomic_load_n(e->stop, __ATOMIC_ACQUIRE)) {
		ureg_agent_emit(e->a, UREG_AGENT_PROGRESS, NULL, 0);
		e->emitted++;
	}
	return NULL;
}

Test(bridge, a_replaced_bridge_is_seen_by_live_agents_and_the_old_one_is_never_called_after_the_swap)
{
	struct sink s1 = { 0 }, s2 = { 0 };
	struct ureg_bridge b1 = { .emit = count_emit, .arg = &s1 },
			   b2 = { .emit = count_emit, .arg = &s2 };
	ureg_ctx *ctx[EMITTERS];
	pthread_t th[EMITTERS];
	struct emitter em[EMITTERS];
	pthread_barrier_t start;
	int stop = 0;

	cr_assert_eq(ureg_agent_set_bridge(agents, &b1), 0);
	pthread_barrier_init(&start, NULL, EMITTERS + 1);
	for (int i = 0; i < EMITTERS; i++) {
		cr_assert_eq(ureg_ctx_new("em", 0, &ctx[i]), 0);
		em[i] = (struct emitter){ .a = agent_in(ctx[i]), .start = &start, .stop = &stop };
		pthread_create(&th[i], NULL, emit_loop, &em[i]);
	}
	pthread_barrier_wait(&start);
	/* wait (bounded) until B1 has really been used by the live agents */
	for (long spins = 0; __atomic_load_n(&s1.events, __ATOMIC_RELAXED) < 1000; spins++)
		cr_assert_lt(spins, 2000000000L, "emitters never reached bridge 1");
	cr_assert_eq(ureg_agent_set_bridge(agents, &b2), 0);
	long b1_after_swap = __atomic_load_n(&s1.events, __ATOMIC_RELAXED);
	for (long spins = 0; __atomic_load_n(&s2.events, __ATOMIC_RELAXED) < 1000; spins++)
		cr_assert_lt(spins, 2000000000L, "live agents never reached bridge 2");
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	long total = 0;
	for (int i = 0; i < EMITTERS; i++) {
		pthread_join(th[i], NULL);
		total += em[i].emitted;
	}
	cr_assert_eq(__atomic_load_n(&s1.events, __ATOMIC_RELAXED), b1_after_swap,
		     "bridge 1 ran after set_bridge returned");
	cr_assert_eq(s1.events + s2.events, total, "every emit reached exactly one bridge");
	cr_assert_eq(ureg_agent_set_bridge(agents, NULL), 0);
	for (int i = 0; i < EMITTERS; i++)
		ureg_ctx_destroy(ctx[i]);
	pthread_barrier_destroy(&start);
}
