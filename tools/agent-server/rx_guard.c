/* SPDX-License-Identifier: MIT */
/*
 * What libwebsockets reads, seen first: this file defines recv().
 *
 * Why.  Two things lws 4.1.6 (Debian 12) does with what a client sends
 * cannot be changed through its API:
 *
 *  - it accepts unmasked client frames (RFC 6455 5.1: the server MUST
 *    close the connection): its parser (lib/roles/ws/ops-ws.c,
 *    LWS_RXPS_04_FRAME_HDR_LEN) records the mask bit and goes on, and no
 *    callback or public call says which it was (5.0.0 closes them itself:
 *    rx_guard.h says where);
 *  - it drops, without a status, a kept-alive connection whose next request
 *    has more header bytes than its header table (lib/roles/http/parsers.c,
 *    "Ran out of header data space" -> LPR_FAIL; 5.0.0 too).  The front
 *    door (http_front.c) answers 431 for first requests only.
 *
 * How.  lws reads a plain socket in exactly one place,
 * lws_ssl_capable_read_no_ssl() (lib/core-net/output.c:309 in v4.1.6:
 * recv(wsi->desc.sockfd, buf, len, 0)); its TLS read falls back to it
 * without TLS (tls/openssl/openssl-ssl.c:210), and Debian's libwebsockets.so
 * imports recv, not __recv_chk.  An executable's definition of recv comes
 * first in symbol lookup, so lws's calls land here; the real recv is the
 * next definition (dlsym(RTLD_NEXT): libc's, or the sanitizer's interceptor
 * in front of it).  Only calls from an lws service thread of this server
 * (rx_guard_enter_thread) on a connection it adopted are looked at; any
 * other recv in the process - the tests' clients in the same process
 * included - goes straight through.
 *
 * Per connection (one slot per fd, a table sized once; no allocation per
 * call, O(bytes) for headers and O(frames) for WebSocket data):
 *
 *   HEADERS  the first request: each read is cut at the end of its header
 *            block (a peek first), so lws has handled it - as HTTP or as a
 *            WebSocket upgrade - before it reads a byte after it;
 *   WAIT     between that and the server's verdict: reads are still cut
 *            at header-block ends (a request lws answers by itself gives
 *            no verdict; a later upgrade is then handled before its frames
 *            are read);
 *   FRAMES   a WebSocket (rx_guard_websocket): RFC 6455 frame headers are
 *            followed (2-14 bytes: mask bit, 7/16/64-bit length), payloads
 *            skipped.  An unmasked frame: the read is cut where that frame
 *            starts (earlier frames go to lws), on_unmasked() tells the
 *            server, which closes with 1002; -> DEAD;
 *   DEAD     input is read and dropped (lws would misparse a cut stream),
 *            end of file and errors are passed on;
 *   CLOSING  the server's 1002 close frame is on its way
 *            (rx_guard_closing): the next input - the client's own close
 *            frame - reads as end of file and lws closes the connection
 *            (lws writes before it reads when both are ready, so the close
 *            frame goes first).  A client that sends nothing keeps it
 *            until it closes or lws's close-ack timeout (5 s);
 *   NEXT     the next request of a kept-alive HTTP connection: cut at the
 *            end of its header block like HEADERS; past max_headers
 *            without one: a 431 written here (the previous answer is
 *            wholly out: see rx_guard_next_request), the write side shut,
 *            then DRAIN;
 *   DRAIN    input is dropped until end of file (then lws closes) or
 *            DRAIN_BYTES: closing with unread input would send a reset,
 *            and the reset would destroy the 431 before the client reads it;
 *   OFF      plain HTTP: passed through.
 */
#undef _FORTIFY_SOURCE /* recv is defined here, not wrapped */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>
#include <sys/socket.h>

#include "rx_guard.h"

#define DRAIN_BYTES (4u << 20)
#define MAX_SLOTS (1u << 20)

enum { ST_OFF, ST_HEADERS, ST_WAIT, ST_NEXT, ST_FRAMES, ST_DEAD, ST_CLOSING, ST_DRAIN };

struct slot {
	uint8_t state;
	uint8_t crlf;     /* HEADERS, NEXT: bytes of "\r\n\r\n" matched */
	uint8_t hdr_len;  /* FRAMES: bytes of the frame header seen, 0: none */
	uint8_t hdr_need; /* FRAMES: its length (2 until the length byte) */
	uint32_t seen;    /* NEXT: header bytes so far; DRAIN: bytes dropped */
	uint64_t left;    /* FRAMES: payload bytes left; in a header, its length */
	void *arg;        /* FRAMES: for on_unmasked */
	uint32_t max;     /* NEXT: the header limit */
};

typedef ssize_t (*recv_fn)(int, void *, size_t, int);

static struct slot *slots;
static size_t nslots;
static void (*unmasked_cb)(void *);
static int init_rc;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static __thread int guard_thread;
static recv_fn real_recv_fn; /* atomic */

static ssize_t real_recv(int fd, void *buf, size_t len, int flags)
{
	recv_fn f = __atomic_load_n(&real_recv_fn, __ATOMIC_ACQUIRE);

	if (!f) {
		f = (recv_fn)dlsym(RTLD_NEXT, "recv");
		if (!f) {
			errno = ENOSYS;
			return -1;
		}
		__atomic_store_n(&real_recv_fn, f, __ATOMIC_RELEASE);
	}
	return f(fd, buf, len, flags);
}

static void init_table(void)
{
	struct rlimit rl;
	size_t n = MAX_SLOTS;

	/* every fd the process may open: the hard limit, at most MAX_SLOTS
	 * (fds past the table are not adopted) */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_max != RLIM_INFINITY &&
	    rl.rlim_max < MAX_SLOTS)
		n = rl.rlim_max < 1024 ? 1024 : (size_t)rl.rlim_max;
	/* zeroed pages from the kernel: only the slots of fds in use are
	 * ever touched; lives as long as the process (recv may run at exit) */
	slots = calloc(n, sizeof(*slots));
	nslots = slots ? n : 0;
	init_rc = slots ? 0 : -ENOMEM;
}

int rx_guard_init(void (*on_unmasked)(void *arg))
{
	pthread_once(&init_once, init_table);
	if (!init_rc)
		__atomic_store_n(&unmasked_cb, on_unmasked, __ATOMIC_RELEASE);
	return init_rc;
}

void rx_guard_enter_thread(void)
{
	guard_thread = 1;
}

static struct slot *slot_of(int fd)
{
	return fd >= 0 && (size_t)fd < nslots ? &slots[fd] : NULL;
}

int rx_guard_adopt(int fd)
{
	struct slot *s = slot_of(fd);

	if (!s)
		return -EMFILE;
	memset(s, 0, sizeof(*s));
	s->state = RX_GUARD_CHECKS_MASK ? ST_HEADERS : ST_OFF;
	return 0;
}

void rx_guard_http(int fd)
{
	struct slot *s = slot_of(fd);

	if (s && (s->state == ST_WAIT || s->state == ST_HEADERS))
		memset(s, 0, sizeof(*s)); /* ST_OFF */
}

void rx_guard_next_request(int fd, size_t max_headers)
{
	struct slot *s = slot_of(fd);

	if (!s || s->state != ST_OFF)
		return;
	memset(s, 0, sizeof(*s));
	s->state = ST_NEXT;
	s->max = max_headers > UINT32_MAX ? UINT32_MAX : (uint32_t)max_headers;
}

bool rx_guard_upgrade_ok(int fd)
{
	struct slot *s = slot_of(fd);

	if (!RX_GUARD_CHECKS_MASK)
		return true;
	return s && s->state == ST_WAIT;
}

void rx_guard_websocket(int fd, void *arg)
{
	struct slot *s = slot_of(fd);

	if (!RX_GUARD_CHECKS_MASK || !s)
		return;
	memset(s, 0, sizeof(*s));
	s->state = ST_FRAMES;
	s->arg = arg;
}

void rx_guard_closing(int fd)
{
	struct slot *s = slot_of(fd);

	if (s && s->state == ST_DEAD)
		s->state = ST_CLOSING;
}

void rx_guard_forget(int fd)
{
	struct slot *s = slot_of(fd);

	if (s)
		memset(s, 0, sizeof(*s));
}

/* Where the header block ends in @p: the bytes up to and including its
 * blank line, or 0; *crlf carries the match across reads. */
static size_t headers_end(uint8_t *crlf, const uint8_t *p, size_t n)
{
	static const char end[4] = { '\r', '\n', '\r', '\n' };

	for (size_t i = 0; i < n; i++) {
		if (p[i] == (uint8_t)end[*crlf])
			++*crlf;
		else
			*crlf = p[i] == '\r';
		if (*crlf == 4) {
			*crlf = 0;
			return i + 1;
		}
	}
	return 0;
}

/* DRAIN: drop what is there; 0 (lws closes) at end of file or enough */
static ssize_t drain(struct slot *s, int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t r = real_recv(fd, buf, len, MSG_DONTWAIT);
		if (r <= 0)
			return r;
		if ((s->seen += (uint32_t)r) > DRAIN_BYTES)
			return 0;
	}
}

static ssize_t refuse_431(struct slot *s, int fd, void *buf, size_t len)
{
	char body[96], msg[320];
	int nb = snprintf(body, sizeof(body), "431 request header fields too large "
			  "(limit %u bytes)\n", s->max);
	int n = snprintf(msg, sizeof(msg), "HTTP/1.1 431 Request Header Fields Too Large\r\n"
			 "content-type: text/plain\r\ncontent-length: %d\r\n"
			 "cache-control: no-store\r\nconnection: close\r\n\r\n%s", nb, body);

	s->state = ST_DRAIN;
	s->seen = 0;
	if (send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
		return 0; /* the client is not reading: just close */
	shutdown(fd, SHUT_WR);
	return drain(s, fd, buf, len);
}

/* HEADERS, WAIT, NEXT: hand lws at most the rest of a header block */
static ssize_t read_headers(struct slot *s, int fd, uint8_t *buf, size_t len, int flags)
{
	uint8_t m = s->crlf;
	ssize_t n = real_recv(fd, buf, len, flags | MSG_PEEK);
	size_t take, end;

	if (n <= 0)
		return n;
	end = headers_end(&m, buf, (size_t)n);
	take = end ? end : (size_t)n;
	if (s->state == ST_NEXT && s->seen + take > s->max)
		return refuse_431(s, fd, buf, len);
	n = real_recv(fd, buf, take, flags);
	if (n <= 0)
		return n;
	if (headers_end(&s->crlf, buf, (size_t)n)) {
		s->state = s->state == ST_NEXT ? ST_OFF : ST_WAIT;
		s->crlf = 0;
		s->seen = 0;
	} else {
		s->seen += (uint32_t)n;
	}
	return n;
}

/*
 * FRAMES: follow the frame headers through @n bytes just read.  Returns @n,
 * or where an unmasked frame starts (0 if it started in an earlier read).
 */
static size_t follow_frames(struct slot *s, const uint8_t *p, size_t n)
{
	size_t i = 0, start = 0;
	bool started_here = false;

	while (i < n) {
		if (!s->hdr_len) {
			if (s->left) { /* payload: skipped, not looked at */
				size_t k = n - i < s->left ? n - i : (size_t)s->left;
				i += k;
				s->left -= k;
				continue;
			}
			start = i; /* byte 1: FIN, RSV, opcode */
			started_here = true;
			s->hdr_len = 1;
			s->hdr_need = 2;
			i++;
			continue;
		}
		uint8_t c = p[i++];
		if (s->hdr_len == 1) { /* byte 2: MASK, 7-bit length */
			if (!(c & 0x80))
				return started_here ? start : 0;
			c &= 0x7f;
			s->hdr_need = (uint8_t)(2 + (c == 126 ? 2 : c == 127 ? 8 : 0) + 4);
			s->left = c < 126 ? c : 0;
		} else if (s->hdr_len < s->hdr_need - 4) { /* extended length */
			s->left = s->left << 8 | c;
		} /* else: a byte of the masking key */
		if (++s->hdr_len == s->hdr_need)
			s->hdr_len = 0; /* s->left: the payload that follows */
	}
	return n;
}

static ssize_t read_frames(struct slot *s, int fd, uint8_t *buf, size_t len, int flags)
{
	ssize_t n = real_recv(fd, buf, len, flags);
	size_t keep;

	if (n <= 0)
		return n;
	keep = follow_frames(s, buf, (size_t)n);
	if (keep == (size_t)n)
		return n;
	s->state = ST_DEAD;
	void (*cb)(void *) = __atomic_load_n(&unmasked_cb, __ATOMIC_ACQUIRE);
	if (cb)
		cb(s->arg);
	if (keep)
		return (ssize_t)keep;
	errno = EAGAIN; /* lws: nothing now (0 would read as end of file) */
	return -1;
}

__attribute__((visibility("default")))
ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	struct slot *s;

	if (!guard_thread || (flags & MSG_PEEK) || !(s = slot_of(fd)) || s->state == ST_OFF)
		return real_recv(fd, buf, len, flags);
	switch (s->state) {
	case ST_HEADERS:
	case ST_WAIT:
	case ST_NEXT:
		return read_headers(s, fd, buf, len, flags);
	case ST_FRAMES:
		return read_frames(s, fd, buf, len, flags);
	case ST_DEAD:
	case ST_CLOSING: {
		ssize_t r = real_recv(fd, buf, len, flags);
		if (r <= 0)
			return r;
		if (s->state == ST_CLOSING)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	default: /* ST_DRAIN */
		return drain(s, fd, buf, len);
	}
}
