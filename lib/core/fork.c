/* SPDX-License-Identifier: MIT */
/*
 * fork() without exec.  The prepare handler takes every lock of the
 * library, so a child never inherits one held by a thread that did not
 * survive the fork; parent and child release them all afterwards.
 *
 * The order, outermost first.  It is the order in which the library nests
 * them anywhere, so prepare can wait for any holder to finish:
 *
 *   0. liburcu's call_rcu workers are paused first
 *      (urcu_memb_call_rcu_before_fork): their callbacks - item and entry
 *      destructors - take locks below (config item records, the registry
 *      list), so a worker must never be left waiting on a lock prepare
 *      already holds while prepare waits for it to pause.  This holds
 *      liburcu's call_rcu_mutex, which call_rcu() itself never takes once
 *      the default call_rcu data exists (ureg__fork_init makes sure).
 *   1. upper layers, in the order they registered (ureg_atfork_layer):
 *      config (lib/config/config.c), per config: watch_lock, reload_lock (held
 *      during a whole load; a reload nests registry writers inside it),
 *      lock; then item_recs_lock.  Agents (lib/agents/bridge.c): the bridge
 *      setters' lock.
 *   2. the grace-period gate (a writer-preferring rwlock).  liburcu 0.13
 *      has no fork handlers for its memb flavor's own mutexes: the grace
 *      period lock (held through a whole synchronize_rcu) and the reader
 *      registry lock (thread registration and exit).  A child forked while
 *      another thread held one hangs in its first synchronize_rcu; ureg's
 *      fork storm did so in 5 of 300 forks.  So the library calls
 *      synchronize_rcu and (un)registers threads only through this gate,
 *      read-locked, and prepare write-locks it: no such call is in flight
 *      at the fork.  It comes after the config locks because a reload
 *      waits for grace periods under its reload_lock, and before every
 *      core lock because no core lock is held across a grace period (and a
 *      grace period may wait for a reader that waits for a context lock).
 *      An application's own synchronize_rcu calls are its business: it
 *      must not fork while one runs.
 *   3. ureg__registries_lock, the list of registries.
 *   4. every registry's writer mutex, in address order - the order
 *      ureg_batch_commit_all takes several of them in.
 *   5. per registry: resize_lock (taken under the writer when a table
 *      grows), then evq_lock (events queued under the writer).
 *   6. events.c's listeners_lock.
 *   7. arena_pool.c's pool_lock (its critical sections call jemalloc,
 *      whose own fork handlers, registered before ours, run after ours).
 *   8. the context list lock, then every context's lock (ctx.c), then
 *      bias.c's seat_lock (the free list of the biased lock's per-thread
 *      seats: a thread's first context lock and its exit; a leaf).
 *   9. the enqueue gate: no thread of the library is inside call_rcu().
 *      liburcu's callback queue is a wait-free queue whose enqueue is two
 *      steps (swap the tail, then link the old tail to the new node); a
 *      child forked between them inherits a queue whose link never comes,
 *      and urcu_memb_call_rcu_after_fork_child's blocking splice of the
 *      old queue into the new worker's waits on it forever.  Found by
 *      reading liburcu 0.13's urcu-call-rcu-impl.h, not reproduced (the
 *      child hang first suspected turned out to be ASan's allocator: see
 *      stress/stress/fork_storm.h).  Library code calls
 *      call_rcu only through ureg__call_rcu, read-locking this gate, often
 *      under a writer or context lock; so it is taken late, when every
 *      such lock is already held here and nobody can be waiting for one.
 *  10. fbox.c's holds_lock (the factory boxes' per-thread hold counters:
 *      a thread's first hold, its counters' growth and exit, a box's id
 *      and fold).  A leaf: nothing is locked or called back under it.
 *      The child also clears the drop marks of the threads that did not
 *      survive (a fold would wait for them forever), as ctx.c clears the
 *      seats of contexts' owners that did not.
 *
 * In the child the threads that did not survive the fork are still in
 * liburcu's reader list; rcu_thread.c unlinks them before liburcu restarts
 * its workers (which would reuse their stacks).
 *
 * Not covered: a fork() from inside a library callback that runs under one
 * of these locks (none does by contract: factories, destructors and
 * listeners run with no ureg lock held, config watch callbacks included).
 */
#include <stdlib.h>
#include "internal.h"

#define LAYERS_MAX 8

struct fork_layer {
	void (*lock)(void);
	void (*unlock)(void);
	void (*unlock_child)(void);
};

/* Written once per layer (pthread_once in the layer) before any fork can
 * use it; layer_count is published with a release store. */
static struct fork_layer layers[LAYERS_MAX];
static unsigned layer_count;
static pthread_mutex_t layers_lock = PTHREAD_MUTEX_INITIALIZER;

int ureg_atfork_layer(void (*lock)(void), void (*unlock)(void),
		      void (*unlock_child)(void))
{
	int rc = 0;

	if (!lock || !unlock || !unlock_child)
		return ureg_set_error(-EINVAL, "atfork_layer: NULL hook");
	ureg__rcu_ensure(); /* core's handlers are registered first */
	pthread_mutex_lock(&layers_lock);
	if (layer_count < LAYERS_MAX) {
		layers[layer_count] = (struct fork_layer){ lock, unlock, unlock_child };
		__atomic_store_n(&layer_count, layer_count + 1, __ATOMIC_RELEASE);
	} else {
		rc = ureg_set_error(-ENOSPC, "atfork_layer: more than %d layers", LAYERS_MAX);
	}
	pthread_mutex_unlock(&layers_lock);
	return rc;
}

static int reg_order(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(ureg_registry *const *)a;
	uintptr_t y = (uintptr_t)*(ureg_registry *const *)b;

	return x < y ? -1 : x > y;
}

/*
 * The registries sorted by address, for step 3.  A fixed array would cap
 * the registries a process may have; allocating in prepare is allowed (no
 * lock of ours is held yet by this thread at that point, and malloc's own
 * fork handlers run after ours).  If it fails, list order is used: still
 * correct unless a multi-registry batch commit races the fork.
 */
static ureg_registry **sorted;
static size_t nsorted;

static pthread_rwlock_t gp_gate = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

void ureg__gp_gate_enter(void)
{
	pthread_rwlock_rdlock(&gp_gate);
}

void ureg__gp_gate_leave(void)
{
	pthread_rwlock_unlock(&gp_gate);
}

static pthread_rwlock_t enqueue_gate = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

void ureg__call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	pthread_rwlock_rdlock(&enqueue_gate);
	urcu_memb_call_rcu(head, fn);
	pthread_rwlock_unlock(&enqueue_gate);
}

void ureg__synchronize(void)
{
	pthread_rwlock_rdlock(&gp_gate);
	urcu_memb_synchronize_rcu();
	pthread_rwlock_unlock(&gp_gate);
}

static void prepare(void)
{
	ureg_registry *reg;
	size_t n = 0, cap = 0;

	urcu_memb_call_rcu_before_fork();
	for (unsigned i = 0; i < __atomic_load_n(&layer_count, __ATOMIC_ACQUIRE); i++)
		layers[i].lock();
	pthread_rwlock_wrlock(&gp_gate);
	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_for_each_entry(reg, &ureg__registries, all_node)
		cap++;
	sorted = cap ? malloc(cap * sizeof(*sorted)) : NULL;
	cds_list_for_each_entry(reg, &ureg__registries, all_node)
		if (sorted)
			sorted[n++] = reg;
	nsorted = n;
	if (sorted) {
		qsort(sorted, n, sizeof(*sorted), reg_order);
		for (size_t i = 0; i < n; i++)
			pthread_mutex_lock(&sorted[i]->writer);
	} else {
		cds_list_for_each_entry(reg, &ureg__registries, all_node)
			pthread_mutex_lock(&reg->writer);
	}
	cds_list_for_each_entry(reg, &ureg__registries, all_node) {
		pthread_mutex_lock(&reg->resize_lock);
		pthread_mutex_lock(&reg->evq_lock);
	}
	ureg__events_lock();
	ureg__arena_lock();
	ureg__ctx_lock_all();
	pthread_rwlock_wrlock(&enqueue_gate);
	ureg__holds_lock();
}

static void unlock_core(bool child)
{
	ureg_registry *reg;

	ureg__holds_unlock(child);
	if (child)
		enqueue_gate = (pthread_rwlock_t)PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
	else
		pthread_rwlock_unlock(&enqueue_gate);
	if (child)
		ureg__ctx_unlock_all_child();
	else
		ureg__ctx_unlock_all();
	ureg__arena_unlock();
	ureg__events_unlock();
	cds_list_for_each_entry(reg, &ureg__registries, all_node) {
		pthread_mutex_unlock(&reg->evq_lock);
		pthread_mutex_unlock(&reg->resize_lock);
		pthread_mutex_unlock(&reg->writer);
	}
	pthread_mutex_unlock(&ureg__registries_lock);
	if (child) /* a fresh lock: the writer's thread id is not ours any more */
		gp_gate = (pthread_rwlock_t)PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
	else
		pthread_rwlock_unlock(&gp_gate);
	free(sorted);
	sorted = NULL;
	nsorted = 0;
	for (unsigned i = __atomic_load_n(&layer_count, __ATOMIC_ACQUIRE); i-- > 0;)
		(child ? layers[i].unlock_child : layers[i].unlock)();
}

static void parent(void)
{
	unlock_core(false);
	urcu_memb_call_rcu_after_fork_parent();
}

static void child(void)
{
	ureg__threads_forget_others_in_child();
	unlock_core(true);
	urcu_memb_call_rcu_after_fork_child();
}

/*
 * Called once, from the first thread that registers with RCU.
 *
 * liburcu's call_rcu() takes its call_rcu_mutex only while the default
 * call_rcu data does not exist yet, and prepare's first step holds that
 * mutex until after the fork.  A writer calling call_rcu() for the
 * process's first time under its writer mutex at that moment deadlocked
 * against prepare (seen under ASan).  Creating the default data here, before
 * any ureg lock can be held, leaves call_rcu() lock-free for good (the child
 * gets a new one from urcu_memb_call_rcu_after_fork_child).
 */
void ureg__fork_init(void)
{
	(void)urcu_memb_get_default_call_rcu_data();
	pthread_atfork(prepare, parent, child);
}
