/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle events (events.h): who hears what, in which order, with which
 * generation, and that nobody hears anything after ureg_unlisten.
 */
#include <criterion/criterion.h>

#include <pthread.h>

#include <ureg/events.h>

#include "core_test.h"

#define LOG_MAX 4096

struct logged {
	enum ureg_event_kind kind;
	ureg_registry *reg;
	char key[64];
	bool key_null;
	ureg_ctx *ctx;
	void *instance;
	uint64_t generation;
	int lookup_rc;          /* ureg_lookup of the key from inside the listener */
	uint64_t instance_magic;
	bool in_read_section;
};

struct log {
	pthread_mutex_t lock;
	int n;
	struct logged ev[LOG_MAX];
};

static struct log *new_log(void)
{
	struct log *l = calloc(1, sizeof(*l));

	cr_assert_not_null(l);
	pthread_mutex_init(&l->lock, NULL);
	return l;
}

static void record(const struct ureg_event *ev, void *arg)
{
	struct log *l = arg;
	struct logged e = {
		.kind = ev->kind,
		.reg = ev->reg,
		.key_null = ev->key == NULL,
		.ctx = ev->ctx,
		.instance = ev->instance,
		.generation = ev->generation,
		.lookup_rc = 1,
		.in_read_section = ureg_in_read_section(),
	};
	void *p = NULL;

	if (ev->key) {
		snprintf(e.key, sizeof(e.key), "%s", ev->key);
		if (ev->reg)
			e.lookup_rc = ureg_lookup(ev->reg, ev->key, &p);
	}
	if (ev->instance)
		e.instance_magic = ((struct inst *)ev->instance)->magic;
	pthread_mutex_lock(&l->lock);
	if (l->n < LOG_MAX)
		l->ev[l->n++] = e;
	pthread_mutex_unlock(&l->lock);
}

static ureg_registry *new_reg(const char *name)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, name, &reg), 0);
	return reg;
}

Test(events, a_listener_hears_register_replace_and_unregister_in_order)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;
	uint64_t gens[3];

	cr_assert_eq(ureg_listen(reg, UREG_EV_ALL, record, log, &l), 0);
	cr_assert_not_null(l);
	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	gens[0] = ureg_generation(reg);
	cr_assert_eq(ureg_replace(reg, "k", item_new(2)), 0);
	gens[1] = ureg_generation(reg);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_SINGLETON), 0);
	gens[2] = ureg_generation(reg);
	/* delivered on this thread before the calls returned */
	cr_assert_eq(log->n, 3);
	cr_assert_eq(log->ev[0].kind, UREG_EV_REGISTERED);
	cr_assert_eq(log->ev[1].kind, UREG_EV_REPLACED);
	cr_assert_eq(log->ev[2].kind, UREG_EV_UNREGISTERED);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(log->ev[i].reg, reg);
		cr_assert_str_eq(log->ev[i].key, "k");
		cr_assert_null(log->ev[i].ctx);
		cr_assert_eq(log->ev[i].generation, gens[i], "event %d", i);
		cr_assert(log->ev[i].in_read_section, "listeners run in a read section");
	}
	cr_assert_lt(gens[0], gens[1]);
	cr_assert_lt(gens[1], gens[2]);
	/* after the commit: the listener sees the change it hears about */
	cr_assert_eq(log->ev[0].lookup_rc, 0);
	cr_assert_eq(log->ev[2].lookup_rc, -ENOENT);
	ureg_unlisten(l);
	ureg_registry_destroy(reg);
	free(log);
}

Test(events, failed_calls_emit_no_event)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;
	struct item *dup = item_new(2);

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_listen(reg, UREG_EV_ALL, record, log, &l), 0);
	cr_assert_eq(ureg_register(reg, "k", dup), -EEXIST);
	cr_assert_eq(ureg_replace(reg, "missing", dup), -ENOENT);
	cr_assert_eq(ureg_unregister(reg, "missing", UREG_BOTH), -ENOENT);
	cr_assert_eq(ureg_register(reg, "bad key", dup), -EINVAL);
	cr_assert_eq(log->n, 0);
	ureg_unlisten(l);
	ureg_registry_destroy(reg);
	item_free_unowned(dup);
	free(log);
}

Test(events, the_mask_selects_the_kinds_a_listener_hears)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;

	cr_assert_eq(ureg_listen(reg, UREG_EV_UNREGISTERED, record, log, &l), 0);
	cr_assert_eq(ureg_register(reg, "a", item_new(1)), 0);
	cr_assert_eq(ureg_replace(reg, "a", item_new(2)), 0);
	cr_assert_eq(log->n, 0);
	cr_assert_eq(ureg_unregister(reg, "a", UREG_BOTH), 0);
	cr_assert_eq(log->n, 1);
	cr_assert_eq(log->ev[0].kind, UREG_EV_UNREGISTERED);
	ureg_unlisten(l);
	ureg_registry_destroy(reg);
	free(log);
}

Test(events, a_global_listener_hears_every_registry_and_a_registry_listener_only_its_own)
{
	ureg_registry *a = new_reg("a"), *b = new_reg("b");
	struct log *all = new_log(), *only_a = new_log();
	ureg_listener *la = NULL, *lg = NULL;

	cr_assert_eq(ureg_listen(NULL, UREG_EV_REGISTERED, record, all, &lg), 0);
	cr_assert_eq(ureg_listen(a, UREG_EV_REGISTERED, record, only_a, &la), 0);
	cr_assert_eq(ureg_register(a, "x", item_new(1)), 0);
	cr_assert_eq(ureg_register(b, "y", item_new(2)), 0);
	cr_assert_eq(all->n, 2);
	cr_assert_eq(all->ev[0].reg, a);
	cr_assert_eq(all->ev[1].reg, b);
	cr_assert_eq(only_a->n, 1);
	cr_assert_str_eq(only_a->ev[0].key, "x");
	ureg_unlisten(la);
	ureg_unlisten(lg);
	ureg_registry_destroy(a);
	ureg_registry_destroy(b);
	free(all);
	free(only_a);
}

Test(events, instance_events_carry_the_context_and_a_live_instance_and_generation_zero)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;
	ureg_ctx *ctx = NULL;
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "maker", &uf), 0);
	cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(ureg_listen(reg, UREG_EV_INSTANCE_CREATED | UREG_EV_INSTANCE_DESTROYED,
				 record, log, &l), 0);
	cr_assert_eq(get_rc(reg, "maker", ctx, &a), 0);
	cr_assert_eq(get_rc(reg, "maker", ctx, &a), 0); /* cached: no event */
	cr_assert_eq(ureg_create_instance(reg, "maker", ctx, &b), 0);
	cr_assert_eq(log->n, 2);
	cr_assert_eq(log->ev[0].kind, UREG_EV_INSTANCE_CREATED);
	cr_assert_eq(log->ev[0].instance, a);
	cr_assert_eq(log->ev[1].instance, b);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(log->ev[i].ctx, ctx);
		cr_assert_eq(log->ev[i].reg, reg);
		cr_assert_str_eq(log->ev[i].key, "maker");
		cr_assert_eq(log->ev[i].generation, 0);
		cr_assert_eq(log->ev[i].instance_magic, INST_MAGIC);
	}
	cr_assert_eq(ureg_instance_release(ctx, b), 0);
	cr_assert_eq(log->n, 3);
	cr_assert_eq(log->ev[2].kind, UREG_EV_INSTANCE_DESTROYED);
	cr_assert_eq(log->ev[2].instance, b);
	cr_assert_eq(log->ev[2].instance_magic, INST_MAGIC, "destroyed before the event");
	ureg_ctx_destroy(ctx);
	cr_assert_eq(log->n, 4);
	cr_assert_eq(log->ev[3].kind, UREG_EV_INSTANCE_DESTROYED);
	cr_assert_eq(log->ev[3].instance, a);
	cr_assert_eq(log->ev[3].instance_magic, INST_MAGIC);
	ureg_unlisten(l);
	ureg_registry_destroy(reg);
	free(log);
}

Test(events, a_batch_commit_is_announced_as_reload_applied)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;
	ureg_batch *b = NULL;
	int reloads = 0;

	cr_assert_eq(ureg_listen(reg, UREG_EV_RELOAD_APPLIED, record, log, &l), 0);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "a", item_new(1), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "b", item_new(2), NULL, NULL), 0);
	cr_assert_eq(log->n, 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	for (int i = 0; i < log->n; i++) {
		cr_assert_eq(log->ev[i].kind, UREG_EV_RELOAD_APPLIED);
		cr_assert(log->ev[i].key_null);
		cr_assert_eq(log->ev[i].generation, ureg_generation(reg));
		reloads++;
	}
	cr_assert_eq(reloads, 1);
	ureg_unlisten(l);
	ureg_registry_destroy(reg);
	free(log);
}

Test(events, after_unlisten_a_listener_never_runs_again)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;

	cr_assert_eq(ureg_listen(reg, UREG_EV_ALL, record, log, &l), 0);
	cr_assert_eq(ureg_register(reg, "a", item_new(1)), 0);
	cr_assert_eq(log->n, 1);
	ureg_unlisten(l);
	cr_assert_eq(ureg_register(reg, "b", item_new(2)), 0);
	cr_assert_eq(ureg_unregister(reg, "a", UREG_BOTH), 0);
	cr_assert_eq(log->n, 1);
	free(log); /* unlisten promised it is safe */
	cr_assert_eq(ureg_register(reg, "c", item_new(3)), 0);
	ureg_registry_destroy(reg);
}

/* Eight writers; one registry's deliveries stay serialized in generation order. */
struct ev_writer {
	ureg_registry *reg;
	pthread_barrier_t *go;
	int thread;
	int failures;
};

static void *ev_write(void *p)
{
	struct ev_writer *w = p;
	char key[32];

	pthread_barrier_wait(w->go);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "w%d-%d", w->thread, i);
		if (ureg_register(w->reg, key, item_new(i)) != 0)
			w->failures++;
		if (i % 3 == 0 && ureg_unregister(w->reg, key, UREG_SINGLETON) != 0)
			w->failures++;
	}
	return NULL;
}

Test(events, deliveries_from_eight_writers_arrive_in_strictly_increasing_generation_order)
{
	ureg_registry *reg = new_reg("ev");
	struct log *log = new_log();
	ureg_listener *l = NULL;
	pthread_barrier_t go;
	pthread_t t[8];
	struct ev_writer w[8];
	int expected = 8 * (100 + 34);

	cr_assert_eq(ureg_listen(reg, UREG_EV_REGISTERED | UREG_EV_UNREGISTERED,
				 record, log, &l), 0);
	pthread_barrier_init(&go, NULL, 8);
	for (int i = 0; i < 8; i++) {
		w[i] = (struct ev_writer){ .reg = reg, .go = &go, .thread = i };
		cr_assert_eq(pthread_create(&t[i], NULL, ev_write, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(pthread_join(t[i], NULL), 0);
		cr_assert_eq(w[i].failures, 0);
	}
	cr_assert_eq(log->n, expected);
	for (int i = 1; i < log->n; i++)
		cr_assert_gt(log->ev[i].generation, log->ev[i - 1].generation,
			     "event %d: generation %llu after %llu", i,
			     (unsigned long long)log->ev[i].generation,
			     (unsigned long long)log->ev[i - 1].generation);
	cr_assert_eq(log->ev[log->n - 1].generation, ureg_generation(reg));
	ureg_unlisten(l);
	ureg_registry_destroy(reg);
	pthread_barrier_destroy(&go);
	free(log);
}
