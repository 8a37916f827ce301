/* SPDX-License-Identifier: MIT */
/*
 * The context lock's bias (ctx_int.h, "The context lock, biased to its
 * owner", and "Seats"): membarrier, the per-thread seats, and the futex
 * path every thread but a biased owner takes.
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include "ctx_int.h"

static uint32_t seat_lock; /* the free seats and the chunks' creation */

UREG_TLS struct ctx_seat *ureg__ctx_seat;
static UREG_TLS bool seat_tried;       /* the thread asked once for a seat */
static bool bias_ok;        /* membarrier registered: contexts get owners */

void ureg__ctx_membarrier(void)
{
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
		abort(); /* registered at start-up: cannot fail afterwards */
}

void ureg__ctx_bias_init(void)
{
	bias_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
		  syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/*
 * Seats (ctx_int.h, "Seats"): in chunks of SEAT_CHUNK, made on demand and
 * never freed, indexed from 1; a thread takes one at its first context
 * and its exit (a pthread key) puts it on the free list.  seat_lock (a
 * leaf, taken last by ureg__ctx_lock_all for fork) guards the list and
 * the chunks' creation; a chunk pointer is published with a release
 * store before any index in it is handed out.
 */
static struct ctx_seat *seat_chunks[SEAT_CHUNKS];
static uint32_t seats_made;       /* indices 1..seats_made handed out */
static struct ctx_seat *free_seats;
static pthread_key_t seat_key;
static pthread_once_t seat_once = PTHREAD_ONCE_INIT;
static bool seat_key_ok;

struct ctx_seat *ureg__ctx_seat_at(uint32_t index)
{
	struct ctx_seat *chunk = __atomic_load_n(&seat_chunks[index / SEAT_CHUNK],
						 __ATOMIC_ACQUIRE);

	return &chunk[index % SEAT_CHUNK];
}

static void seat_put_locked(struct ctx_seat *s)
{
	s->next = free_seats;
	free_seats = s;
}

static void seat_exit(void *arg)
{
	ureg__ctx_seat = NULL; /* later entries (other destructors) take the futex */
	lock_take(&seat_lock);
	seat_put_locked(arg);
	lock_drop(&seat_lock);
}

static void seat_key_init(void)
{
	seat_key_ok = pthread_key_create(&seat_key, seat_exit) == 0;
}

/* Under seat_lock: a seat from the free list, or a new index (a new
 * chunk when it starts one); NULL when all are taken or no memory. */
static struct ctx_seat *seat_new_locked(void)
{
	struct ctx_seat *s, *chunk;
	uint32_t i;

	if ((s = free_seats)) {
		free_seats = s->next;
		return s;
	}
	if (seats_made + 1 >= SEAT_CHUNK * SEAT_CHUNKS)
		return NULL;
	i = seats_made + 1;
	if (!(chunk = seat_chunks[i / SEAT_CHUNK])) {
		/* not a fault-injection site: no seat only costs speed */
		if (!(chunk = aligned_alloc(_Alignof(struct ctx_seat),
					    SEAT_CHUNK * sizeof(*chunk))))
			return NULL;
		memset(chunk, 0, SEAT_CHUNK * sizeof(*chunk));
		__atomic_store_n(&seat_chunks[i / SEAT_CHUNK], chunk, __ATOMIC_RELEASE);
	}
	seats_made = i;
	s = &chunk[i % SEAT_CHUNK];
	s->key = i << 2 | BIAS_ON;
	return s;
}

/* The calling thread's seat, taken at its first need; NULL if it can have
 * none (no membarrier, every seat taken, no memory): it then never owns a
 * context, and asks only once. */
struct ctx_seat *ureg__ctx_seat_slow(void)
{
	struct ctx_seat *s;

	if (seat_tried || !bias_ok)
		return NULL;
	seat_tried = true;
	pthread_once(&seat_once, seat_key_init);
	if (!seat_key_ok)
		return NULL;
	lock_take(&seat_lock);
	s = seat_new_locked();
	lock_drop(&seat_lock);
	if (!s)
		return NULL;
	if (pthread_setspecific(seat_key, s) != 0) {
		lock_take(&seat_lock);
		seat_put_locked(s);
		lock_drop(&seat_lock);
		return NULL;
	}
	return ureg__ctx_seat = s;
}

/* ctx_lock for everyone but a biased owner (ctx_int.h, "biased"). */
void ureg__ctx_lock_slow(ureg_ctx *ctx)
{
	struct ctx_seat *me = ctx_seat();
	uint32_t self = me ? me->key >> 2 : 0, r, owner;
	unsigned seen, moves;

	lock_take(&ctx->lock);
	r = __atomic_load_n(&ctx->bias, __ATOMIC_RELAXED);
	owner = r >> 2;
	/* the state is ON or OFF here: only a holder of the futex lock
	 * pauses, and it resumes before it lets go */
	if ((r & BIAS_STATE) == BIAS_OFF || owner == self)
		return;
	if (!owner) {
		/* the first thread in owns it; nobody can be inside biased */
		if (me)
			__atomic_store_n(&ctx->bias, me->key, __ATOMIC_RELAXED);
		return;
	}
	__atomic_store_n(&ctx->bias, (r & ~BIAS_STATE) | BIAS_PAUSED, __ATOMIC_RELAXED);
	ureg__ctx_membarrier();
	while (__atomic_load_n(&ureg__ctx_seat_at(owner)->inside, __ATOMIC_ACQUIRE) == ctx)
		sched_yield();
	seen = ctx->bias_hist & 15u;
	moves = ctx->bias_hist >> 4;
	if (++seen < 15) {
		ctx->bias_hist = (uint8_t)(moves << 4 | seen);
	} else if (moves < 3 && me) {
		/* used elsewhere now: this thread becomes the owner (after the
		 * wait above: the former owner is out, and its seat is no
		 * longer waited on) */
		ctx->bias_hist = (uint8_t)((moves + 1) << 4);
		__atomic_store_n(&ctx->bias, (me->key & ~BIAS_STATE) | BIAS_PAUSED,
				 __ATOMIC_RELAXED);
	} else {
		/* unlock leaves it off */
		__atomic_store_n(&ctx->bias, (r & ~BIAS_STATE) | BIAS_OFF, __ATOMIC_RELAXED);
	}
}

/* fork (ureg__ctx_lock_all): seat_lock, a leaf, taken last */
void ureg__ctx_seats_lock(void)
{
	lock_take(&seat_lock);
}

void ureg__ctx_seats_unlock(bool child)
{
	if (child)
		__atomic_store_n(&seat_lock, 0, __ATOMIC_RELAXED);
	else
		lock_drop(&seat_lock);
}
