/* SPDX-License-Identifier: MIT */
/*
 * fork() without exec leaves both processes usable (DESIGN.md): the child
 * reads and writes the registry it inherited, makes contexts and instances,
 * waits for grace periods (call_rcu works again), and the parent carries on.
 *
 * The child reports by exit status: 0 is success, 21.. names the step that
 * failed (1 is what a sanitizer exits with).  alarm() turns a deadlocked child into a SIGALRM death
 * that the parent sees, instead of a hung test.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core_test.h"
#include "fork_storm.h"

#define CHILD_ALARM_S 20

static ureg_registry *new_reg(void)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "forked", &reg), 0);
	return reg;
}

static void assert_child_ok(pid_t pid)
{
	int status = 0;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(!WIFSIGNALED(status), "child killed by signal %d%s",
		  WTERMSIG(status),
		  WTERMSIG(status) == SIGALRM ? " (deadlock: alarm fired)" : "");
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child exited with %d (%s)",
		     WEXITSTATUS(status), WEXITSTATUS(status) > 20 ?
		     "a failed step of child_work" : "sanitizer report or crash");
}

/* Everything a child does; returns 0 or the failing step. */
static int child_work(ureg_registry *reg, ureg_ctx *parent_ctx)
{
	ureg_ctx *ctx = NULL;
	void *p = NULL;
	struct item *it;
	int before = atomic_load(&items_destroyed);

	alarm(CHILD_ALARM_S);
	/* read what the parent registered */
	if (lookup_rc(reg, "inherited", &p) != 0)
		return 21;
	if (((struct item *)p)->magic != ITEM_MAGIC || ((struct item *)p)->id != 1)
		return 22;
	/* a new context, and an instance in it */
	if (ureg_ctx_new("child", UREG_CTX_SHARED, &ctx) != 0)
		return 23;
	if (get_rc(reg, "maker", ctx, &p) != 0)
		return 24;
	if (((struct inst *)p)->magic != INST_MAGIC)
		return 25;
	/* the inherited context still works too */
	if (parent_ctx) {
		void *m = ureg_ctx_alloc(parent_ctx, 100);

		if (!m)
			return 26;
		ureg_ctx_free(parent_ctx, m);
	}
	/* write: a new key, a replace, an unregister */
	it = item_new(2);
	if (ureg_register(reg, "child-key", it) != 0)
		return 27;
	if (lookup_rc(reg, "child-key", &p) != 0 || p != it)
		return 28;
	if (ureg_replace(reg, "inherited", item_new(3)) != 0)
		return 29;
	if (ureg_unregister(reg, "child-key", UREG_SINGLETON) != 0)
		return 30;
	/* grace periods and call_rcu work in the child */
	ureg_synchronize();
	if (wait_count(&items_destroyed, before + 2) < before + 2)
		return 31;
	if (ureg_ctx_stats(ctx, &(struct ureg_ctx_stats){ 0 }) != 0)
		return 32;
	ureg_ctx_destroy(ctx);
	if (ureg_count(reg) != 2)
		return 33;
	/* a new registry and a new dedicated context in the child */
	{
		ureg_registry *r2 = NULL;
		ureg_ctx *d = NULL;

		if (ureg_registry_new(&item_type, "child-reg", &r2) != 0)
			return 34;
		if (ureg_register(r2, "x", item_new(4)) != 0)
			return 35;
		if (ureg_ctx_new("child-dedicated", UREG_CTX_DEDICATED, &d) != 0)
			return 36;
		if (!ureg_ctx_alloc(d, 64))
			return 37;
		ureg_ctx_destroy(d);
		ureg_registry_destroy(r2);
	}
	return 0;
}

static struct fac maker = { .id = 1 };

static void populate(ureg_registry *reg)
{
	struct ureg_factory f = fac_factory(&maker, UREG_SCOPE_CONTEXT);

	cr_assert_eq(ureg_register(reg, "inherited", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "maker", &f), 0);
}

static void parent_keeps_working(ureg_registry *reg)
{
	ureg_ctx *ctx = NULL;
	void *p = NULL;
	int before = atomic_load(&items_destroyed);

	/* the child's changes are the child's alone */
	cr_assert_eq(ureg_contains(reg, "child-key"), 0);
	cr_assert_eq(lookup_rc(reg, "inherited", &p), 0);
	cr_assert_eq(((struct item *)p)->id, 1);
	cr_assert_eq(ureg_register(reg, "after-fork", item_new(5)), 0);
	cr_assert_eq(ureg_replace(reg, "inherited", item_new(6)), 0);
	/* other writer threads may destroy items of their own meanwhile */
	cr_assert_geq(wait_count(&items_destroyed, before + 1), before + 1);
	cr_assert_eq(ureg_ctx_new("parent", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(get_rc(reg, "maker", ctx, &p), 0);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(ureg_count(reg), 3);
}

Test(fork, a_forked_child_and_its_parent_both_keep_using_the_registry)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = NULL;
	void *p = NULL;
	pid_t pid;

	populate(reg);
	cr_assert_eq(ureg_ctx_new("before-fork", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(get_rc(reg, "maker", ctx, &p), 0);
	/* pending call_rcu work at fork time */
	cr_assert_eq(ureg_register(reg, "tmp", item_new(9)), 0);
	cr_assert_eq(ureg_unregister(reg, "tmp", UREG_SINGLETON), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(child_work(reg, ctx));
	assert_child_ok(pid);
	parent_keeps_working(reg);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), atomic_load(&items_made));
}

Test(fork, a_child_forked_before_any_registry_exists_can_use_the_library)
{
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		ureg_registry *reg = NULL;

		alarm(CHILD_ALARM_S);
		if (ureg_registry_new(&item_type, "late", &reg) != 0)
			_exit(21);
		if (ureg_register(reg, "k", item_new(1)) != 0)
			_exit(22);
		if (ureg_replace(reg, "k", item_new(2)) != 0)
			_exit(23);
		ureg_registry_destroy(reg);
		_exit(atomic_load(&items_destroyed) == 2 ? 0 : 24);
	}
	assert_child_ok(pid);
}

/*
 * Threads that used ureg (so are registered with RCU) and are alive but
 * idle, outside any read section, when the process forks: the ordinary
 * state of a server's worker pool.
 */
struct idle {
	ureg_registry *reg;
	ureg_ctx *ctx;
	pthread_barrier_t used;
	pthread_barrier_t release;
	int failures;
};

static void *idle_worker(void *p)
{
	struct idle *w = p;
	void *q = NULL;
	void *m;

	if (lookup_rc(w->reg, "inherited", &q) != 0)
		w->failures++;
	if (get_rc(w->reg, "maker", w->ctx, &q) != 0)
		w->failures++;
	m = ureg_ctx_alloc(w->ctx, 64);
	ureg_ctx_free(w->ctx, m);
	pthread_barrier_wait(&w->used);
	pthread_barrier_wait(&w->release); /* idle across the fork */
	return NULL;
}

Test(fork, a_child_forked_while_idle_threads_that_used_ureg_are_alive_is_usable,
     .timeout = 60)
{
	struct idle *w = calloc(1, sizeof(*w));
	pthread_t t[4];
	pid_t pid;

	cr_assert_not_null(w);
	w->reg = new_reg();
	populate(w->reg);
	cr_assert_eq(ureg_ctx_new("pool", UREG_CTX_SHARED, &w->ctx), 0);
	pthread_barrier_init(&w->used, NULL, 5);
	pthread_barrier_init(&w->release, NULL, 5);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, idle_worker, w), 0);
	pthread_barrier_wait(&w->used);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0)
		_exit(child_work(w->reg, w->ctx));
	assert_child_ok(pid);
	pthread_barrier_wait(&w->release);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	cr_assert_eq(w->failures, 0);
	parent_keeps_working(w->reg);
	ureg_ctx_destroy(w->ctx);
	ureg_registry_destroy(w->reg);
	pthread_barrier_destroy(&w->used);
	pthread_barrier_destroy(&w->release);
	free(w);
}

/*
 * A writer keeps registering, unregistering and allocating in a context
 * while the test forks, so the fork may land while it holds the registry's
 * writer mutex or the context's mutex: the atfork handlers must leave the
 * child with both usable.  (No thread holds an application read section at
 * fork time: a reader frozen inside one would stall the child's grace
 * periods, a limit lib/fork.c documents.)
 */
struct busy {
	ureg_registry *reg;
	ureg_ctx *ctx;
	pthread_barrier_t go;
	atomic_int stop;
	atomic_long ops;
};

static void *busy_writer(void *p)
{
	struct busy *b = p;
	long ops = 0;

	pthread_barrier_wait(&b->go);
	while (!atomic_load(&b->stop)) {
		struct item *it;
		void *m;

		FORK_STORM_WORK_BEGIN(); /* parks only under ASan: fork_storm.h */
		it = item_new(7);
		if (ureg_register(b->reg, "busy", it) != 0)
			item_free_unowned(it);
		ureg_unregister(b->reg, "busy", UREG_SINGLETON);
		m = ureg_ctx_alloc(b->ctx, 128);
		ureg_ctx_free(b->ctx, m);
		FORK_STORM_WORK_END();
		ops++;
	}
	atomic_fetch_add(&b->ops, ops);
	return NULL;
}

Test(fork, forking_while_a_writer_thread_mutates_leaves_the_child_usable,
     .timeout = 90)
{
	struct busy *b = calloc(1, sizeof(*b));
	pthread_t t;

	cr_assert_not_null(b);
	b->reg = new_reg();
	populate(b->reg);
	cr_assert_eq(ureg_ctx_new("busy", UREG_CTX_SHARED, &b->ctx), 0);
	pthread_barrier_init(&b->go, NULL, 2);
	cr_assert_eq(pthread_create(&t, NULL, busy_writer, b), 0);
	pthread_barrier_wait(&b->go);
	for (int i = 0; i < 20; i++) {
		pid_t pid;

		FORK_STORM_FORK_BEGIN();
		pid = fork();
		if (pid != 0)
			FORK_STORM_FORK_END();
		cr_assert_neq(pid, -1);
		if (pid == 0) {
			/* the writer did not survive the fork, whatever it held */
			ureg_unregister(b->reg, "busy", UREG_SINGLETON);
			_exit(child_work(b->reg, b->ctx));
		}
		assert_child_ok(pid);
	}
	atomic_store(&b->stop, 1);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_gt(atomic_load(&b->ops), 0);
	/* and the parent is fine */
	ureg_unregister(b->reg, "busy", UREG_SINGLETON);
	parent_keeps_working(b->reg);
	ureg_ctx_destroy(b->ctx);
	ureg_registry_destroy(b->reg);
	pthread_barrier_destroy(&b->go);
	free(b);
}

/*
 * The fork storm (stress/stress/fork_storm.h): four threads keep every lock
 * of the library busy - contexts of both kinds, lookups, registrations,
 * config reloads, listeners - while this thread forks; every child must do
 * a lookup, a context create/destroy of both kinds, a registration and a
 * reload, and exit 0 before its alarm.  Before fork.c held every lock (and
 * closed the grace-period gate) children hung in about 1 fork in 60.
 */
#ifdef __SANITIZE_ADDRESS__
#define STORM_FORKS 200
#else
#define STORM_FORKS 1000
#endif

Test(fork, a_thousand_forks_beside_four_busy_threads_leave_every_child_usable,
     .timeout = 240)
{
	struct fork_storm_result r;

	cr_assert_eq(fork_storm_run(STORM_FORKS, &r), 0);
	cr_assert_eq(r.forks, STORM_FORKS);
	cr_assert_eq(r.hung, 0, "%ld children deadlocked", r.hung);
	cr_assert_eq(r.crashed, 0, "%ld children crashed (status 0x%x)", r.crashed,
		     r.first_bad_status);
	cr_assert_eq(r.failed, 0, "%ld children failed (first exit %d)", r.failed,
		     WEXITSTATUS(r.first_bad_status));
	cr_assert_eq(r.ok, STORM_FORKS);
	cr_assert_gt(r.busy_ops, STORM_FORKS);
	cr_assert_eq(r.busy_errors, 0);
}
