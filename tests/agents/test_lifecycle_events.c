/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle events as the specialized registries see them: every kind is
 * delivered after its change committed, never under the writer mutex,
 * listeners come and go while events flow, and one registry's events reach
 * each listener in strictly increasing generation order.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <ureg/events.h>
#include <ureg/registries.h>

struct seen {
	ureg_registry *reg;
	unsigned kinds;          /* bits seen */
	int not_committed;       /* an event arrived before its change showed */
	int reentry_failed;      /* the listener could not write the registry */
	uint64_t last_gen;
	int gen_not_increasing;
	long count;
	unsigned last_kind;
};

static void check_committed(const struct ureg_event *ev, void *arg)
{
	struct seen *s = arg;
	void *item;

	s->kinds |= ev->kind;
	s->count++;
	switch (ev->kind) {
	case UREG_EV_REGISTERED:
		if (ureg_contains(ev->reg, ev->key) != 1)
			s->not_committed++;
		/* not under the writer mutex: writing the same registry works
		 * (it would deadlock otherwise) */
		if (!strcmp(ev->key, "calculator") &&
		    ureg_register(ev->reg, "from-listener", &s->count) != 0)
			s->reentry_failed++;
		break;
	case UREG_EV_UNREGISTERED:
		if (ureg_contains(ev->reg, ev->key) != 0)
			s->not_committed++;
		break;
	case UREG_EV_REPLACED:
		if (ureg_lookup(ev->reg, ev->key, &item) != 0 || item != (void *)s)
			s->not_committed++;
		break;
	case UREG_EV_RELOAD_APPLIED:
		if (ureg_contains(ev->reg, "batched") != 1)
			s->not_committed++;
		break;
	default:
		break;
	}
	/* strictly increasing, except that the events of one batch share its
	 * generation and RELOAD_APPLIED closes the batch */
	if (ev->generation) {
		if (ev->generation < s->last_gen ||
		    (ev->generation == s->last_gen && s->last_kind == UREG_EV_RELOAD_APPLIED))
			s->gen_not_increasing++;
		s->last_gen = ev->generation;
		s->last_kind = ev->kind;
	}
}

static int make_tool(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_tool *t = ureg_ctx_calloc(ctx, 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	*out = t;
	return 0;
}

Test(lifecycle_events, every_kind_is_delivered_after_its_change_is_committed)
{
	ureg_tool_reg_registry *tools;
	ureg_registry *base;
	ureg_listener *l;
	struct seen s = { 0 };
	static struct ureg_tool t1, t2;
	ureg_ctx *ctx;
	struct ureg_tool *inst;
	ureg_batch *b;
	struct ureg_factory f = { .create = make_tool, .scope = UREG_SCOPE_CONTEXT };

	cr_assert_eq(ureg_tool_reg_new(&ureg_base_type, "tools", &tools), 0); /* raw items */
	base = ureg_tool_reg_base(tools);
	cr_assert_eq(ureg_listen(base, UREG_EV_ALL, check_committed, &s, &l), 0);
	cr_assert_eq(ureg_tool_reg_register(tools, "calculator", &t1), 0);
	cr_assert(s.kinds & UREG_EV_REGISTERED);
	cr_assert_eq(ureg_contains(base, "from-listener"), 1);
	cr_assert_eq(ureg_replace(base, "calculator", &s), 0);
	cr_assert(s.kinds & UREG_EV_REPLACED);
	cr_assert_eq(ureg_tool_reg_unregister(tools, "calculator", UREG_SINGLETON), 0);
	cr_assert(s.kinds & UREG_EV_UNREGISTERED);
	cr_assert_eq(ureg_tool_reg_register_factory(tools, "search", &f), 0);
	cr_assert_eq(ureg_ctx_new("dave", 0, &ctx), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_tool_reg_get(tools, "search", ctx, &inst), 0);
	ureg_read_unlock();
	cr_assert(s.kinds & UREG_EV_INSTANCE_CREATED);
	ureg_ctx_destroy(ctx);
	cr_assert(s.kinds & UREG_EV_INSTANCE_DESTROYED);
	cr_assert_eq(ureg_batch_new(base, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "batched", &t2, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert(s.kinds & UREG_EV_RELOAD_APPLIED);
	cr_assert_eq(s.kinds, UREG_EV_ALL, "all six kinds, got 0x%x", s.kinds);
	cr_assert_eq(s.not_committed, 0);
	cr_assert_eq(s.reentry_failed, 0);
	cr_assert_eq(s.gen_not_increasing, 0);
	ureg_unlisten(l);
	ureg_tool_reg_destroy(tools);
}

/* ---- many writers, listeners added and removed while events flow ---- */

#define WRITERS 3
#define CHURN 600
#define LISTENER_ROUNDS 60

static ureg_registry *churn_reg;
static pthread_barrier_t churn_start;

static void *writer(void *arg)
{
	long id = (long)arg;
	char key[32];
	pthread_barrier_wait(&churn_start);
	for (int i = 0; i < CHURN; i++) {
		snprintf(key, sizeof(key), "w%ld-%d", id, i % 16);
		if (ureg_register(churn_reg, key, churn_reg) == -EEXIST)
			ureg_unregister(churn_reg, key, UREG_SINGLETON);
	}
	return NULL;
}

static void order_check(const struct ureg_event *ev, void *arg)
{
	struct seen *s = arg;
	s->count++;
	if (ev->generation <= s->last_gen)
		s->gen_not_increasing++;
	s->last_gen = ev->generation;
}

Test(lifecycle_events, listeners_come_and_go_while_events_flow_and_each_sees_strictly_increasing_generations)
{
	ureg_service_reg_registry *svc;
	pthread_t th[WRITERS];
	struct seen steady = { 0 };
	ureg_listener *ls;
	long transient_events = 0;

	cr_assert_eq(ureg_service_reg_new(&ureg_base_type, "svc", &svc), 0);
	churn_reg = ureg_service_reg_base(svc);
	cr_assert_eq(ureg_listen(churn_reg, UREG_EV_REGISTERED | UREG_EV_UNREGISTERED,
				 order_check, &steady, &ls), 0);
	pthread_barrier_init(&churn_start, NULL, WRITERS + 1);
	for (long i = 0; i < WRITERS; i++)
		pthread_create(&th[i], NULL, writer, (void *)i);
	pthread_barrier_wait(&churn_start);
	for (int r = 0; r < LISTENER_ROUNDS; r++) {
		struct seen *t = calloc(1, sizeof(*t));
		ureg_listener *lt;
		cr_assert_eq(ureg_listen(r % 2 ? churn_reg : NULL, UREG_EV_ALL, order_check, t, &lt), 0);
		ureg_unlisten(lt); /* after this, t may be freed: it is */
		cr_assert_eq(t->gen_not_increasing, 0, "round %d", r);
		transient_events += t->count;
		free(t);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(th[i], NULL);
	ureg_unlisten(ls);
	cr_assert_eq(steady.count, WRITERS * CHURN, "one event per change");
	cr_assert_eq(steady.gen_not_increasing, 0);
	cr_assert_eq(steady.last_gen, ureg_generation(churn_reg));
	cr_log_info("transient listeners heard %ld events", transient_events);
	pthread_barrier_destroy(&churn_start);
	ureg_service_reg_destroy(svc);
}
