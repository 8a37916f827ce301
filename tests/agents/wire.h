/* SPDX-License-Identifier: MIT */
/*
 * The wire, byte by byte, for tests that must send what a browser or lws
 * never would (unmasked frames, bodies, huge headers) or must not read
 * (a client that never drains its socket): plain blocking sockets on
 * 127.0.0.1 with a deadline on every wait, a hand-made WebSocket handshake
 * and frames, and the real ureg-agent-server started as a child process
 * (so that its RSS is its own).  Every call fails the test on a socket
 * error it does not expect; none sleeps.
 */
#ifndef UREG_TEST_WIRE_H
#define UREG_TEST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* a TCP connection to 127.0.0.1:@port; @rcvbuf > 0 sets SO_RCVBUF first */
int wire_connect(int port, int rcvbuf);

/* write all of @buf (fails the test after @timeout_ms) */
void wire_write_all(int fd, const void *buf, size_t len, int timeout_ms);

/* read until EOF, @cap - 1 bytes, @until appears, or @timeout_ms; the
 * bytes NUL-terminated in @buf; returns how many */
size_t wire_read_reply(int fd, char *buf, size_t cap, const char *until, int timeout_ms);

/*
 * The WebSocket handshake for protocol "ureg-agents", with Origin @origin
 * (NULL: none).  Returns the fd after "101", or -1 with the server's
 * reply (status line and headers, NUL-terminated) in @reply.
 */
int wire_ws_open(int port, const char *origin, int rcvbuf, char *reply, size_t cap);

/* the same, with @extra_len bytes (< 512) sent in the same write as the
 * request: frames that arrive in the upgrade's own TCP segment */
int wire_ws_open_with(int port, const char *origin, int rcvbuf, const void *extra,
		      size_t extra_len, char *reply, size_t cap);

/* one frame, FIN set; @mask false sends it unmasked (illegal from a client) */
void wire_ws_send(int fd, int opcode, const void *payload, size_t len, bool mask);
/* the bytes of that frame (masked), malloc'd, for non-blocking senders */
unsigned char *wire_ws_frame(int opcode, const void *payload, size_t len, size_t *out_len);
/* the same frame unmasked (illegal from a client), malloc'd */
unsigned char *wire_ws_frame_unmasked(int opcode, const void *payload, size_t len,
				      size_t *out_len);

struct wire_frame {
	int opcode;            /* 1 text, 2 binary, 8 close, ... */
	unsigned char *data;   /* malloc'd, NUL-terminated */
	size_t len;
	int close_code;        /* close frames: the code, or 0 */
	const char *close_reason; /* close frames: points into data */
};

/* 1: a frame; 0: EOF; -1: reset or error (errno); -2: @timeout_ms passed */
int wire_ws_read(int fd, struct wire_frame *f, int timeout_ms);
void wire_frame_free(struct wire_frame *f);

/* read frames until a close frame (1, in @f), EOF (0), reset (-1) or the
 * timeout (-2); data frames are counted in @nframes and dropped */
int wire_ws_read_until_close(int fd, struct wire_frame *f, size_t *nframes, int timeout_ms);

/* GET @path -> the body of the reply, malloc'd (NULL on failure) */
char *wire_http_get(int port, const char *path, int timeout_ms);

/*
 * The ureg-agent-server executable (its path in $UREG_AGENT_SERVER, set by
 * meson) on --port 0 with @args (NULL-terminated); returns its pid and the
 * port it printed.
 */
pid_t wire_server_spawn(const char *const *args, int *port);
/* SIGINT, wait for exit; returns the exit status (or -1) and its stderr
 * tail in @err if given */
int wire_server_stop(pid_t pid);
/* resident bytes of @pid (/proc/PID/statm) */
uint64_t wire_rss(pid_t pid);

uint64_t wire_now_ms(void);

#endif
