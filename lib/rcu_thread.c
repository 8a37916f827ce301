/* SPDX-License-Identifier: MIT */
/*
 * Lazy RCU thread registration.  Applications never call
 * rcu_register_thread: the first ureg call of a thread registers it, and a
 * pthread key destructor unregisters it when the thread exits.  The flag is
 * initial-exec TLS so the check on the read path is one load.
 */
#include <stdlib.h>
#include "internal.h"

UREG_TLS struct ureg_thread ureg__thread;

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void thread_exit(void *unused)
{
	(void)unused;
	if (ureg__thread.registered) {
		urcu_memb_unregister_thread();
		ureg__thread.registered = 0;
	}
}

static void exit_key_init(void)
{
	if (pthread_key_create(&exit_key, thread_exit) != 0)
		abort(); /* only at process start-up; nothing sane to do */
	ureg__fork_init();
}

void ureg__rcu_register_slow(void)
{
	pthread_once(&exit_key_once, exit_key_init);
	urcu_memb_register_thread();
	ureg__thread.registered = 1;
	/* any non-NULL value makes the destructor run at exit */
	pthread_setspecific(exit_key, &ureg__thread);
}

void ureg_read_lock(void)
{
	ureg__rcu_ensure();
	urcu_memb_read_lock();
	ureg__thread.read_depth++;
}

void ureg_read_unlock(void)
{
	ureg__thread.read_depth--;
	urcu_memb_read_unlock();
}

bool ureg_in_read_section(void)
{
	return ureg__thread.read_depth > 0;
}

void ureg_synchronize(void)
{
	ureg__rcu_ensure();
	urcu_memb_synchronize_rcu();
}
