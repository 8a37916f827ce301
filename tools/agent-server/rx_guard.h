/* SPDX-License-Identifier: MIT */
/*
 * What libwebsockets reads, seen first (rx_guard.c has the why and the how).
 *
 * Every call below is for the lws service thread (the one that called
 * rx_guard_enter_thread), never blocks and allocates nothing; @fd is the
 * socket of a connection lws serves.
 */
#ifndef UREG_AGENT_RX_GUARD_H
#define UREG_AGENT_RX_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include <libwebsockets.h>

/*
 * libwebsockets closes a connection on an unmasked client frame by itself
 * (1002 "client unmasked") from 5.0.0 on: commit cae06c63a ("Audit
 * fixes"), lib/roles/ws/ops-ws.c lines 270-276 of v5.0.0, in
 * lws_ws_rx_sm's LWS_RXPS_04_FRAME_HDR_LEN case.  4.1.6 (Debian 12) and
 * every release up to 4.5.8 only record the bit (this_frame_masked) and go
 * on.  Built against 5.0.0 or later, the frame check is compiled out and
 * lws does it.  (LWS_LIBRARY_VERSION_NUMBER is major*1000000 + minor*1000
 * + patch.)
 */
#if LWS_LIBRARY_VERSION_NUMBER >= 5000000
#define RX_GUARD_CHECKS_MASK 0
#else
#define RX_GUARD_CHECKS_MASK 1
#endif

/* the close code and reason of a connection that sent an unmasked frame */
#define RX_GUARD_UNMASKED_CODE 1002
#define RX_GUARD_UNMASKED_WHY "client frame not masked (RFC 6455 5.1)"

/*
 * rx_guard_init - size the table (one slot per possible fd, RLIMIT_NOFILE's
 * hard limit, at most 1M: 32 bytes each, touched only where fds are) and
 * set what is called when a WebSocket sends an unmasked frame.  Any thread,
 * once per process (later calls return the first result).  0 or -ENOMEM.
 */
int rx_guard_init(void (*on_unmasked)(void *arg));

/* the calling thread is an lws service thread: its recv() calls go
 * through the guard (other threads' never do) */
void rx_guard_enter_thread(void);

/* a connection about to be adopted into lws: its first request starts now.
 * -EMFILE if @fd is past the table (the caller must not adopt it). */
int rx_guard_adopt(int fd);

/* LWS_CALLBACK_HTTP: the request is plain HTTP, stop looking until
 * rx_guard_next_request */
void rx_guard_http(int fd);

/* an HTTP transaction is complete and the connection kept alive (nothing
 * of the answer left in lws's buffer): the next bytes start a request whose
 * header block may be at most @max_headers bytes, else 431 and a close */
void rx_guard_next_request(int fd, size_t max_headers);

/* may this connection upgrade to WebSocket?  Only in its first request
 * (false after an HTTP request was served on it: the guard would not know
 * where its frames start) */
bool rx_guard_upgrade_ok(int fd);

/* LWS_CALLBACK_ESTABLISHED: from now on frames; an unmasked one calls
 * on_unmasked(@arg) (from inside lws's read, on this thread) and neither it
 * nor anything after it reaches lws */
void rx_guard_websocket(int fd, void *arg);

/* the server is sending its 1002 close frame to a connection that sent an
 * unmasked frame: whatever the client sends next (its closing handshake;
 * lws would not understand it in a cut stream) reads as end of file, so
 * lws closes the connection at once instead of waiting 5 s for a close
 * frame it cannot get */
void rx_guard_closing(int fd);

/* the connection is closing: stop looking (on_unmasked is not called for
 * it any more) */
void rx_guard_forget(int fd);

#endif
