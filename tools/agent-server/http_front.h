/* SPDX-License-Identifier: MIT */
/*
 * The agent server's front door: its own listening socket and one thread
 * that looks at each new connection's request headers before libwebsockets
 * does.  Why: lws 4.1.6 keeps a request's headers in a fixed table
 * (max_http_header_data) and, past it, drops the connection without a
 * status (roles/http/parsers.c: "Ran out of header data space" ->
 * LPR_FAIL).  The front peeks (MSG_PEEK: it consumes nothing) until the
 * header block is complete; a request whose request line or header block
 * is over the limits gets 414 or 431 and a clean close from here, and any
 * other connection is handed, unread, to the lws service thread, which
 * adopts it (lws_adopt_socket_vhost) as if its own listener had accepted
 * it.  Connections that never complete their headers are closed after
 * header_timeout_ms (FRONT_HEADER_TIMEOUT_MS by default; a slow-loris
 * client holds nothing else).
 *
 * What the front sees is the first request of a connection (every
 * WebSocket handshake is one).  A later request on a kept-alive HTTP
 * connection goes to lws directly; rx_guard.c holds it to the same header
 * limit (431 past it) before lws's table (twice the limit) could overflow.
 */
#ifndef UREG_HTTP_FRONT_H
#define UREG_HTTP_FRONT_H

#include <stddef.h>

#define FRONT_HEADER_TIMEOUT_MS 10000

struct http_front;

struct http_front_opts {
	const char *host;        /* IPv4 address to bind */
	int port;                /* 0: the kernel picks */
	size_t max_headers;      /* bytes of the request line + headers + CRLFCRLF */
	size_t max_uri;          /* bytes of the request target */
	unsigned header_timeout_ms; /* 0: FRONT_HEADER_TIMEOUT_MS */
	/* a connection whose headers passed: the callee owns @fd (called on
	 * the front's thread; must not block) */
	void (*handoff)(int fd, void *arg);
	void *arg;
};

/**
 * http_front_start - bind, listen, start the thread.  Any thread; blocks
 * until the socket is bound.  Returns 0 or a negative errno (-EADDRINUSE,
 * -EINVAL for a bad address, -ENOMEM, -EAGAIN: no thread).
 */
int http_front_start(const struct http_front_opts *o, struct http_front **out);

/** http_front_port - the bound port.  Any thread, never blocks. */
int http_front_port(const struct http_front *f);

/**
 * http_front_stop - stop accepting, close every connection still being
 * looked at, join the thread, free @f.  Not from the front's thread (not
 * from @handoff).  NULL is a no-op.
 */
void http_front_stop(struct http_front *f);

#endif
