/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include "registry_int.h"

/*
 * ureg_drain: unregister, then wait until the removed entry's boxes are
 * held by nobody but the drain.
 *
 * The removed entry still holds its boxes until its grace period ends
 * (call_rcu drops the table's reference).  The drain queues a marker
 * callback behind that retirement and waits for it without a deadline (a
 * grace period is bounded by read sections, which the contract keeps
 * short); the deadline applies to the holders: counted references and
 * live instances, which only their owners can drop.  Every box put wakes
 * the drain (drain_wake), so the wait is a futex wait with the time left,
 * re-checked after each wake.
 */
struct drain_marker {
	struct rcu_head rcu;
	uint32_t fired;
};

static void drain_marker_cb(struct rcu_head *head)
{
	struct drain_marker *m = caa_container_of(head, struct drain_marker, rcu);

	/* the drain may return (and its stack frame go) once it sees fired:
	 * touch only globals afterwards */
	__atomic_store_n(&m->fired, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&ureg__drain_seq, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &ureg__drain_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Only once the factory box is folded (ureg__fbox_kill): before, its
 * holds are spread over per-thread counters and @refs carries a bias. */
static bool drain_held(const struct ureg__drain_grab *g)
{
	/* the box: entries still holding it besides the drain's grab
	 * (@trefs), or live holds (@refs: the holds, +1 for the trefs) */
	return (g->ib && __atomic_load_n(&g->ib->refs, __ATOMIC_SEQ_CST) > 1) ||
	       (g->fb && (__atomic_load_n(&g->fb->trefs, __ATOMIC_SEQ_CST) > 1 ||
			  __atomic_load_n(&g->fb->refs, __ATOMIC_SEQ_CST) > 1));
}

static bool drain_folded(const struct ureg__drain_grab *g)
{
	return !g->fb || __atomic_load_n(&g->fb->folded, __ATOMIC_SEQ_CST);
}

struct holders_walk {
	const struct ureg_factory_box *fb;
	struct ureg_drain_report *rep;
};

static int count_holder(ureg_ctx *ctx, void *arg)
{
	struct holders_walk *w = arg;
	size_t n = ureg__ctx_instances_of(ctx, w->fb);

	if (n) {
		struct ureg_drain_report *r = w->rep;

		r->instances += n;
		if (r->nholders < UREG_DRAIN_HOLDERS_MAX) {
			struct ureg_drain_holder *h = &r->holders[r->nholders++];

			h->ctx = ctx;
			h->instances = n;
			snprintf(h->name, sizeof(h->name), "%s", ureg_ctx_name(ctx));
		}
		r->contexts++;
	}
	return 0;
}

/* Who still holds what the drain waits for; the message for last_error. */
static void drain_report(const struct ureg__drain_grab *g, struct ureg_drain_report *r)
{
	memset(r, 0, sizeof(*r));
	if (g->ib)
		r->refs = (size_t)__atomic_load_n(&g->ib->counted, __ATOMIC_RELAXED);
	if (g->fb) {
		struct holders_walk w = { .fb = g->fb, .rep = r };
		long holds = __atomic_load_n(&g->fb->refs, __ATOMIC_RELAXED) - 1;
		long entries = __atomic_load_n(&g->fb->trefs, __ATOMIC_RELAXED) - 1;

		(void)ureg_ctx_foreach(count_holder, &w);
		/* creations in flight, and removed entries still pinned */
		r->other = (size_t)(entries > 0 ? entries : 0);
		if (holds > (long)r->instances)
			r->other += (size_t)holds - r->instances;
	}
}

int ureg_drain(ureg_registry *reg, const char *key, unsigned what,
	       unsigned timeout_ms, struct ureg_drain_report *report)
{
	struct ureg__drain_grab g = { NULL, NULL };
	struct drain_marker m = { .fired = 0 };
	bool killed = false;
	struct ureg_drain_report local;
	uint64_t deadline;
	int rc;

	ureg__rcu_ensure();
	if (report)
		memset(report, 0, sizeof(*report));
	if (!reg)
		return ureg__err(-EINVAL, "drain: registry is NULL");
	if (ureg__thread.read_depth || urcu_memb_read_ongoing())
		return ureg__err(-EPERM, "registry '%s': drain of '%s' inside a read section "
				 "(it waits for a grace period)", reg->name, key ? key : "(null)");
	deadline = 0; /* set once the grace period (and the fold) is over */

	/* raised before the unregister: every later put wakes us */
	__atomic_add_fetch(&ureg__drain_active, 1, __ATOMIC_SEQ_CST);
	{
		struct ureg__change c = { .op = OP_UNREGISTER, .what = what };

		rc = ureg__mutate(reg, key, &c, &g);
	}
	if (rc) {
		__atomic_sub_fetch(&ureg__drain_active, 1, __ATOMIC_SEQ_CST);
		return rc;
	}
	ureg__call_rcu(&m.rcu, drain_marker_cb);

	for (;;) {
		uint32_t seq = __atomic_load_n(&ureg__drain_seq, __ATOMIC_SEQ_CST);
		bool fired = __atomic_load_n(&m.fired, __ATOMIC_SEQ_CST);
		struct timespec ts, *tsp = NULL;
		uint64_t now;

		if (fired && g.fb && !killed) {
			/* past the grace period no reader can reach the box:
			 * fold its holds into one count (one more grace
			 * period, no deadline either; the fold wakes us) */
			ureg__fbox_kill(g.fb);
			killed = true;
		}
		if (fired && drain_folded(&g) && !drain_held(&g))
			break;
		if (fired && drain_folded(&g)) {
			if (!deadline)
				deadline = timeout_ms == UREG_WAIT_FOREVER ? UINT64_MAX :
					now_ns() + (uint64_t)timeout_ms * 1000000u;
			if (deadline != UINT64_MAX) {
				now = now_ns();
				if (now >= deadline)
					break;
				ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
				ts.tv_nsec = (long)((deadline - now) % 1000000000u);
				tsp = &ts;
			}
		}
		/* not fired or not folded yet: grace periods, no deadline */
		syscall(SYS_futex, &ureg__drain_seq, FUTEX_WAIT_PRIVATE, seq, tsp, NULL, 0);
	}

	rc = 0;
	if (drain_held(&g)) {
		char who[256] = "";
		size_t off = 0;

		drain_report(&g, &local);
		for (size_t i = 0; i < local.nholders && off < sizeof(who); i++)
			off += (size_t)snprintf(who + off, sizeof(who) - off, "%s%s%s: %zu",
						i ? ", " : "",
						local.holders[i].name[0] ? "" : "(unnamed)",
						local.holders[i].name, local.holders[i].instances);
		rc = ureg__err(-ETIMEDOUT, "registry '%s': drain of '%s' timed out after %u ms: "
			       "%zu instance%s in %zu context%s (%s), %zu counted reference%s, "
			       "%zu other reference%s (creations in flight, pinned entries)",
			       reg->name, key, timeout_ms,
			       local.instances, local.instances == 1 ? "" : "s",
			       local.contexts, local.contexts == 1 ? "" : "s", who,
			       local.refs, local.refs == 1 ? "" : "s",
			       local.other, local.other == 1 ? "" : "s");
		if (report)
			*report = local;
	}
	__atomic_sub_fetch(&ureg__drain_active, 1, __ATOMIC_SEQ_CST);
	/* the last references, when drained: destructor and arg_free run here */
	ureg__ibox_put(g.ib);
	ureg__fbox_put(g.fb);
	if (rc == 0)
		ureg__clear_err();
	return rc;
}
