/* SPDX-License-Identifier: MIT */
/*
 * The front door (see http_front.h for why).  One thread, one epoll set:
 * the listening socket, an eventfd that says stop, and the connections
 * whose headers are not complete yet.  Connections are edge-triggered:
 * the front only peeks, so the data stays in the socket and only new data
 * makes a new event.  Pending connections sit on a list in arrival order;
 * their deadline is arrival + FRONT_HEADER_TIMEOUT_MS, so only the head of
 * the list can be late.
 *
 * A refused request gets its status line, a one-line body and
 * "connection: close", then the write side is shut and the front reads and
 * drops what the client still sends (up to DRAIN_BYTES, DRAIN_MS): closing
 * a socket with unread input sends a reset, and the reset would destroy
 * the answer in the client's receive buffer before it reads it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_front.h"

#define DRAIN_BYTES (4u << 20)
#define DRAIN_MS 2000

struct pending {
	int fd;
	bool draining;
	size_t drained;
	uint64_t deadline;        /* ns, CLOCK_MONOTONIC */
	struct pending *prev, *next;
};

struct http_front {
	struct http_front_opts o;
	int lfd, efd, stopfd, port;
	pthread_t th;
	struct pending *head, *tail; /* front thread only */
	char *peek;                  /* max_headers + 1 bytes */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void list_remove(struct http_front *f, struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		f->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		f->tail = p->prev;
	p->prev = p->next = NULL;
}

static void list_append(struct http_front *f, struct pending *p)
{
	p->prev = f->tail;
	p->next = NULL;
	if (f->tail)
		f->tail->next = p;
	else
		f->head = p;
	f->tail = p;
}

/* closing a file descriptor removes it from the epoll set */
static void pending_close(struct http_front *f, struct pending *p)
{
	list_remove(f, p);
	close(p->fd);
	free(p);
}

static void drain(struct http_front *f, struct pending *p)
{
	char buf[16384];

	for (;;) {
		ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0 && (p->drained += (size_t)n) <= DRAIN_BYTES)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		pending_close(f, p); /* EOF, error, or enough */
		return;
	}
}

/* The answer to a request that will not reach lws, then drain and close. */
static void refuse(struct http_front *f, struct pending *p, unsigned status, const char *reason,
		   const char *why, size_t limit)
{
	char body[160], msg[512];
	int nb = snprintf(body, sizeof(body), "%u %s (limit %zu bytes)\n", status, why, limit);
	int n = snprintf(msg, sizeof(msg), "HTTP/1.1 %u %s\r\ncontent-type: text/plain\r\n"
			 "content-length: %d\r\ncache-control: no-store\r\nconnection: close\r\n"
			 "\r\n%s", status, reason, nb, body);

	if (send(p->fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		pending_close(f, p);
		return;
	}
	shutdown(p->fd, SHUT_WR);
	p->draining = true;
	p->drained = 0;
	/* to the tail, with the drain deadline: the list stays in order */
	list_remove(f, p);
	p->deadline = now_ns() + DRAIN_MS * 1000000ull;
	list_append(f, p);
	drain(f, p); /* what is there already: edge-triggered, no new event for it */
}

/* What has arrived of @p's request: wait, refuse, or hand over. */
static void look(struct http_front *f, struct pending *p)
{
	size_t lim = f->o.max_headers, line_max = f->o.max_uri + 64;
	ssize_t n = recv(p->fd, f->peek, lim + 1, MSG_PEEK | MSG_DONTWAIT);
	const char *eol, *end;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		pending_close(f, p); /* closed before a whole request */
		return;
	}
	/* the request line: method, target, version; past max_uri: 414 */
	eol = memmem(f->peek, (size_t)n, "\r\n", 2);
	if ((eol && (size_t)(eol - f->peek) > line_max) || (!eol && (size_t)n > line_max)) {
		refuse(f, p, 414, "URI Too Long", "URI too long", f->o.max_uri);
		return;
	}
	end = memmem(f->peek, (size_t)n, "\r\n\r\n", 4);
	if (end && (size_t)(end + 4 - f->peek) <= lim) {
		/* a whole header block within the limit: lws's now */
		list_remove(f, p);
		int fd = p->fd;
		free(p);
		epoll_ctl(f->efd, EPOLL_CTL_DEL, fd, NULL);
		f->o.handoff(fd, f->o.arg);
		return;
	}
	if ((size_t)n > lim)
		refuse(f, p, 431, "Request Header Fields Too Large",
		       "request header fields too large", lim);
}

static void accept_all(struct http_front *f)
{
	for (;;) {
		int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or out of fds: the backlog waits */
		struct pending *p = calloc(1, sizeof(*p));
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };
		if (!p) {
			close(fd);
			continue;
		}
		/* what lws's own listener sets on an accepted socket
		 * (lws_plat_set_socket_options): without TCP_NODELAY, Nagle
		 * and delayed ACKs held every small event frame ~40 ms -
		 * measured: p50 43 ms instead of 3 ms at 100 connections */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		p->fd = fd;
		p->deadline = now_ns() + (uint64_t)f->o.header_timeout_ms * 1000000ull;
		ev.data.ptr = p;
		if (epoll_ctl(f->efd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			free(p);
			continue;
		}
		list_append(f, p);
		look(f, p); /* the request may be there already */
	}
}

static void *front_main(void *arg)
{
	struct http_front *f = arg;
	struct epoll_event evs[64];

	for (;;) {
		int n = epoll_wait(f->efd, evs, 64, 100);
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;
			if (ptr == &f->lfd)
				accept_all(f);
			else if (ptr == &f->stopfd)
				return NULL;
			else if (((struct pending *)ptr)->draining)
				drain(f, ptr);
			else
				look(f, ptr);
		}
		uint64_t now = now_ns();
		while (f->head && f->head->deadline <= now)
			pending_close(f, f->head);
	}
}

int http_front_start(const struct http_front_opts *o, struct http_front **out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port) };
	socklen_t alen = sizeof(a);
	struct http_front *f;
	int one = 1, rc;

	if (!o->handoff || o->port < 0 || o->port > 65535 || !o->max_headers ||
	    inet_pton(AF_INET, o->host, &a.sin_addr) != 1)
		return -EINVAL;
	if (!(f = calloc(1, sizeof(*f))) || !(f->peek = malloc(o->max_headers + 1))) {
		free(f);
		return -ENOMEM;
	}
	f->o = *o;
	if (!f->o.header_timeout_ms)
		f->o.header_timeout_ms = FRONT_HEADER_TIMEOUT_MS;
	f->lfd = f->efd = f->stopfd = -1;
	if ((f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(f->lfd, SOMAXCONN) ||
	    getsockname(f->lfd, (struct sockaddr *)&a, &alen) ||
	    (f->efd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (f->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		goto fail;
	}
	f->port = ntohs(a.sin_port);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &f->lfd };
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &f->stopfd };
	if (epoll_ctl(f->efd, EPOLL_CTL_ADD, f->lfd, &ev) ||
	    epoll_ctl(f->efd, EPOLL_CTL_ADD, f->stopfd, &sev)) {
		rc = -errno;
		goto fail;
	}
	if ((rc = -pthread_create(&f->th, NULL, front_main, f)))
		goto fail;
	*out = f;
	return 0;
fail:
	if (f->stopfd >= 0)
		close(f->stopfd);
	if (f->efd >= 0)
		close(f->efd);
	if (f->lfd >= 0)
		close(f->lfd);
	free(f->peek);
	free(f);
	return rc ? rc : -EIO;
}

int http_front_port(const struct http_front *f)
{
	return f->port;
}

void http_front_stop(struct http_front *f)
{
	uint64_t one = 1;

	if (!f)
		return;
	if (write(f->stopfd, &one, sizeof(one)) != sizeof(one))
		abort(); /* an eventfd write cannot fail here */
	pthread_join(f->th, NULL);
	while (f->head)
		pending_close(f, f->head);
	close(f->stopfd);
	close(f->efd);
	close(f->lfd);
	free(f->peek);
	free(f);
}
