/* SPDX-License-Identifier: MIT */
/*
 * fork() without exec.  Before the fork we take every lock a child could
 * otherwise inherit held (the registry list, each registry's writer
 * mutex, the context list) and let liburcu quiesce its call_rcu workers
 * (which also covers the rculfhash resize workers); after it both sides
 * release them and liburcu restarts its workers in the child.
 *
 * In the child the threads that did not survive the fork are still in
 * liburcu's reader list; rcu_thread.c unlinks them before liburcu restarts
 * its workers (which would reuse their stacks).
 */
#include "internal.h"

static void prepare(void)
{
	ureg_registry *reg;

	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_for_each_entry(reg, &ureg__registries, all_node)
		pthread_mutex_lock(&reg->writer);
	ureg__ctx_lock_all();
	urcu_memb_call_rcu_before_fork();
}

static void unlock_all(void)
{
	ureg_registry *reg;

	ureg__ctx_unlock_all();
	cds_list_for_each_entry(reg, &ureg__registries, all_node)
		pthread_mutex_unlock(&reg->writer);
	pthread_mutex_unlock(&ureg__registries_lock);
}

static void parent(void)
{
	urcu_memb_call_rcu_after_fork_parent();
	unlock_all();
}

static void child(void)
{
	ureg__threads_forget_others_in_child();
	urcu_memb_call_rcu_after_fork_child();
	unlock_all();
}

/* Called once, from the first thread that registers with RCU. */
void ureg__fork_init(void)
{
	pthread_atfork(prepare, parent, child);
}
