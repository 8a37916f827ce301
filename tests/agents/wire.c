/* SPDX-License-Identifier: MIT */
/* See wire.h. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

uint64_t wire_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int wire_connect(int port, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	return fd;
}

static int wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = wire_now_ms();
	struct pollfd p = { .fd = fd, .events = ev };

	if (now >= deadline)
		return 0;
	return poll(&p, 1, (int)(deadline - now));
}

void wire_write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const char *p = buf;
	uint64_t deadline = wire_now_ms() + (uint64_t)timeout_ms;

	while (len) {
		cr_assert_gt(wait_fd(fd, POLLOUT, deadline), 0, "socket not writable in %d ms", timeout_ms);
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

size_t wire_read_reply(int fd, char *buf, size_t cap, const char *until, int timeout_ms)
{
	uint64_t deadline = wire_now_ms() + (uint64_t)timeout_ms;
	size_t got = 0;

	buf[0] = 0;
	while (got < cap - 1) {
		if (until && strstr(buf, until))
			break;
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			break;
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = 0;
	}
	return got;
}

int wire_ws_open(int port, const char *origin, int rcvbuf, char *reply, size_t cap)
{
	return wire_ws_open_with(port, origin, rcvbuf, NULL, 0, reply, cap);
}

int wire_ws_open_with(int port, const char *origin, int rcvbuf, const void *extra,
		      size_t extra_len, char *reply, size_t cap)
{
	char req[1024], orig[160] = "";
	int fd = wire_connect(port, rcvbuf);

	if (origin)
		snprintf(orig, sizeof(orig), "Origin: %s\r\n", origin);
	cr_assert_lt(extra_len, 512);
	int n = snprintf(req, sizeof(req),
			 "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ureg-agents\r\n%s\r\n",
			 port, orig);
	if (extra_len) /* one write: one segment on 127.0.0.1 */
		memcpy(req + n, extra, extra_len);
	wire_write_all(fd, req, (size_t)n + extra_len, 5000);
	/* byte by byte up to the blank line: what follows is the first frame */
	size_t got = 0;
	uint64_t deadline = wire_now_ms() + 5000;
	reply[0] = 0;
	while (got < cap - 1 && !strstr(reply, "\r\n\r\n")) {
		if (wait_fd(fd, POLLIN, deadline) <= 0)
			break;
		if (recv(fd, reply + got, 1, 0) != 1)
			break;
		reply[++got] = 0;
	}
	if (strncmp(reply, "HTTP/1.1 101", 12)) {
		close(fd);
		return -1;
	}
	return fd;
}

unsigned char *wire_ws_frame(int opcode, const void *payload, size_t len, size_t *out_len)
{
	unsigned char *f = malloc(len + 14), *p = f;
	static const unsigned char key[4] = { 0x37, 0xfa, 0x21, 0x3d };

	cr_assert_not_null(f);
	*p++ = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		*p++ = (unsigned char)(0x80 | len);
	} else if (len < 65536) {
		*p++ = 0x80 | 126;
		*p++ = (unsigned char)(len >> 8);
		*p++ = (unsigned char)len;
	} else {
		*p++ = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			*p++ = (unsigned char)((uint64_t)len >> (8 * i));
	}
	memcpy(p, key, 4);
	p += 4;
	for (size_t i = 0; i < len; i++)
		p[i] = ((const unsigned char *)payload)[i] ^ key[i % 4];
	*out_len = (size_t)(p - f) + len;
	return f;
}

unsigned char *wire_ws_frame_unmasked(int opcode, const void *payload, size_t len,
				      size_t *out_len)
{
	size_t n;
	unsigned char *f = wire_ws_frame(opcode, payload, len, &n);
	size_t hdr = n - len - 4;

	/* drop the mask bit and key, keep the payload clear */
	f[1] &= 0x7f;
	memmove(f + hdr, payload, len);
	*out_len = hdr + len;
	return f;
}

void wire_ws_send(int fd, int opcode, const void *payload, size_t len, bool mask)
{
	size_t n;
	unsigned char *f = mask ? wire_ws_frame(opcode, payload, len, &n) :
			   wire_ws_frame_unmasked(opcode, payload, len, &n);

	wire_write_all(fd, f, n, 5000);
	free(f);
}

/* exactly @len bytes: 1, or 0 EOF, -1 error, -2 timeout */
static int read_exact(int fd, void *buf, size_t len, uint64_t deadline)
{
	char *p = buf;

	while (len) {
		int w = wait_fd(fd, POLLIN, deadline);
		if (w == 0)
			return -2;
		if (w < 0)
			return -1;
		ssize_t n = recv(fd, p, len, 0);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 1;
}

int wire_ws_read(int fd, struct wire_frame *f, int timeout_ms)
{
	uint64_t deadline = wire_now_ms() + (uint64_t)timeout_ms;
	unsigned char h[8];
	uint64_t len;
	int rc;

	memset(f, 0, sizeof(*f));
	if ((rc = read_exact(fd, h, 2, deadline)) != 1)
		return rc;
	f->opcode = h[0] & 0x0f;
	len = h[1] & 0x7f;
	cr_assert_eq(h[1] & 0x80, 0, "the server masked a frame");
	if (len == 126) {
		if ((rc = read_exact(fd, h, 2, deadline)) != 1)
			return rc;
		len = (uint64_t)h[0] << 8 | h[1];
	} else if (len == 127) {
		if ((rc = read_exact(fd, h, 8, deadline)) != 1)
			return rc;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | h[i];
	}
	cr_assert_lt(len, (uint64_t)1 << 30);
	f->len = (size_t)len;
	f->data = malloc(f->len + 1);
	cr_assert_not_null(f->data);
	if (f->len && (rc = read_exact(fd, f->data, f->len, deadline)) != 1) {
		wire_frame_free(f);
		return rc;
	}
	f->data[f->len] = 0;
	if (f->opcode == 8 && f->len >= 2) {
		f->close_code = f->data[0] << 8 | f->data[1];
		f->close_reason = (const char *)f->data + 2;
	}
	return 1;
}

void wire_frame_free(struct wire_frame *f)
{
	free(f->data);
	f->data = NULL;
}

int wire_ws_read_until_close(int fd, struct wire_frame *f, size_t *nframes, int timeout_ms)
{
	uint64_t deadline = wire_now_ms() + (uint64_t)timeout_ms;
	int rc;

	*nframes = 0;
	for (;;) {
		uint64_t now = wire_now_ms();
		rc = wire_ws_read(fd, f, now < deadline ? (int)(deadline - now) : 0);
		if (rc != 1 || f->opcode == 8)
			return rc;
		(*nframes)++;
		wire_frame_free(f);
	}
}

char *wire_http_get(int port, const char *path, int timeout_ms)
{
	size_t cap = 1 << 22;
	char req[256], *buf = malloc(cap), *body;
	int fd = wire_connect(port, 0);
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);

	cr_assert_not_null(buf);
	wire_write_all(fd, req, (size_t)n, timeout_ms);
	wire_read_reply(fd, buf, cap, NULL, timeout_ms);
	close(fd);
	if (strncmp(buf, "HTTP/1.1 200", 12) || !(body = strstr(buf, "\r\n\r\n"))) {
		free(buf);
		return NULL;
	}
	body = strdup(body + 4);
	free(buf);
	return body;
}

pid_t wire_server_spawn(const char *const *args, int *port)
{
	const char *exe = getenv("UREG_AGENT_SERVER");
	const char *argv[32];
	int pfd[2], n = 0;
	char line[256];

	cr_assert_not_null(exe, "UREG_AGENT_SERVER is not set (meson sets it)");
	argv[n++] = exe;
	argv[n++] = "--port";
	argv[n++] = "0";
	for (int i = 0; args && args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
#if defined(__SANITIZE_ADDRESS__)
		/* freed memory waits in ASan's quarantine (256 MB by default):
		 * keep it small, or the RSS measures the quarantine */
		char opts[512];
		const char *old = getenv("ASAN_OPTIONS");
		snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4:thread_local_quarantine_size_kb=64",
			 old ? old : "", old && *old ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
#endif
		dup2(pfd[1], 1);
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t got = 0;
	uint64_t deadline = wire_now_ms() + 10000;
	line[0] = 0;
	while (got < sizeof(line) - 1 && !strchr(line, '\n')) {
		if (wait_fd(pfd[0], POLLIN, deadline) <= 0)
			break;
		ssize_t r = read(pfd[0], line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		line[got] = 0;
	}
	close(pfd[0]);
	char *colon = strrchr(line, ':');
	cr_assert(colon && strstr(line, "listening on"), "server did not start: '%s'", line);
	*port = atoi(colon + 1);
	cr_assert_gt(*port, 0);
	return pid;
}

int wire_server_stop(pid_t pid)
{
	int st;

	kill(pid, SIGINT);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

uint64_t wire_rss(pid_t pid)
{
	char path[64];
	unsigned long size, resident;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	int n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	cr_assert_eq(n, 2);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}
