/* SPDX-License-Identifier: MIT */
/*
 * Lazy RCU thread registration.  Applications never call
 * rcu_register_thread: the first ureg call of a thread registers it, and a
 * pthread key destructor unregisters it when the thread exits.  The flag is
 * initial-exec TLS so the check on the read path is one load.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include "internal.h"

__thread struct ureg__thread ureg__thread __attribute__((tls_model("initial-exec")));

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void thread_exit(void *unused)
{
	(void)unused;
	if (ureg__thread.registered == 1) {
		ureg__gp_gate_enter(); /* liburcu's registry lock: see fork.c */
		urcu_memb_unregister_thread();
		ureg__gp_gate_leave();
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
	if (URCU_TLS(urcu_memb_reader).registered) {
		/* liburcu's own threads (call_rcu workers running our item
		 * destructors) or an application that registered itself:
		 * registering twice would corrupt liburcu's reader list, and
		 * the unregistration is not ours to do */
		ureg__thread.registered = 2;
		return;
	}
	ureg__gp_gate_enter(); /* liburcu's registry lock: see fork.c */
	urcu_memb_register_thread();
	ureg__gp_gate_leave();
	ureg__thread.registered = 1;

	/* any non-NULL value makes the destructor run at exit */
	pthread_setspecific(exit_key, &ureg__thread);
}

/*
 * In a fork child only the forking thread survives, but liburcu's reader
 * list still links the readers of every thread that did not - ours, the
 * application's and liburcu's own call_rcu workers.  Their TLS blocks sit
 * in stacks glibc hands to the child's next threads (liburcu starts a new
 * call_rcu worker at once), which zeroes them while still linked, and the
 * next grace period walks through NULL.  So, before liburcu restarts its
 * workers, walk the circular list from this thread's own reader and unlink
 * every node except the list head, which is the one node that lives inside
 * liburcu-memb's own image (dladdr tells).  The child is single-threaded:
 * no lock is needed, and no other thread is left to be a reader.
 */
void ureg__threads_forget_others_in_child(void)
{
	struct cds_list_head *self, *p, *next;

	ureg__rcu_ensure();
	self = &URCU_TLS(urcu_memb_reader).node;
	for (p = self->next; p != self; p = next) {
		Dl_info info;

		next = p->next;
		if (dladdr(p, &info) && info.dli_fname &&
		    strstr(info.dli_fname, "liburcu"))
			continue; /* the registry's list head */
		cds_list_del(p);
	}
}

void ureg_read_lock(void)
{
	ureg__rcu_ensure();
	ureg__section_enter();
}

void ureg_read_unlock(void)
{
	ureg__section_exit();
}

bool ureg_in_read_section(void)
{
	return ureg__thread.read_depth > 0;
}

void ureg_synchronize(void)
{
	ureg__rcu_ensure();
	ureg__synchronize();
}
