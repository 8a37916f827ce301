/* SPDX-License-Identifier: MIT */
/*
 * lib/config/etcd_client.h - private: a small client of etcd's v3 JSON
 * gateway (libcurl + jansson), used by source_etcd.c (the watcher) and
 * by the one-shot ureg_config_etcd_get / _put.  Hidden symbols.
 *
 * One client is used by one thread at a time.  Every transfer runs on the
 * client's curl multi handle, so another thread can interrupt it at once
 * with etcd_client_wakeup() after setting *stop (a blocked watch, a
 * connect, a backoff sleep).
 */
#ifndef UREG_CONFIG_ETCD_CLIENT_H
#define UREG_CONFIG_ETCD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct etcd_client {
	void *multi;        /* CURLM */
	char **ep;          /* endpoint base URLs, no trailing '/' */
	size_t nep, cur;    /* cur: the endpoint in use */
	const int *stop;    /* set (atomically) by the stopping thread */
	char err[256];      /* why the last call failed */
};

/* Parses the comma-separated @endpoints (each http://...).  0, -EINVAL,
 * -ENOMEM; @stop may be NULL (never stopped). */
int etcd_client_init(struct etcd_client *c, const char *endpoints, const int *stop);
void etcd_client_fini(struct etcd_client *c);
/* Interrupts the client's transfer or sleep (any thread). */
void etcd_client_wakeup(struct etcd_client *c);
/* Sleeps @ms unless woken; -ECANCELED when *stop is set. */
int etcd_client_sleep(struct etcd_client *c, unsigned ms);

/* Called for each JSON line of a streamed reply: 0 goes on, 1 ends the
 * transfer successfully, a negative errno ends it with that error. */
typedef int (*etcd_line_fn)(json_t *line, void *arg);

/*
 * POST @body (stolen) to <endpoint>@path.  Without @on_line the whole
 * reply is parsed into *@reply (the caller json_decref's it); with it,
 * each line is handed over as it arrives (a watch) and @timeout_ms only
 * bounds the connect.  Returns 0; -ECANCELED (stopped); -ECONNREFUSED,
 * -ETIMEDOUT, -ECONNRESET (the network); -EAGAIN (HTTP 503: the member
 * has no leader, an election is running); -EPROTO (not etcd's JSON, or an
 * etcd error: c->err says which); -ENOMEM.
 */
int etcd_post(struct etcd_client *c, const char *path, json_t *body,
	      json_t **reply, etcd_line_fn on_line, void *arg, long timeout_ms);

/* Moves to the next endpoint of the list (after a failure). */
void etcd_client_next(struct etcd_client *c);

/* base64 of @n bytes (malloc'd, NUL-terminated) or NULL. */
char *etcd_b64(const void *p, size_t n);
/* decodes @s: *@out malloc'd and NUL-terminated, *@n its length; 0,
 * -EPROTO (not base64), -ENOMEM. */
int etcd_unb64(const char *s, char **out, size_t *n);
/* an int64 field of the gateway's JSON (a string, or absent: 0) */
uint64_t etcd_u64(json_t *o, const char *field);
/* <prefix>config.yaml (malloc'd) or NULL */
char *etcd_doc_key(const char *prefix);

/*
 * Range of one key: *@text / *@len its value (malloc'd, NUL-terminated)
 * or -ENOENT (no key: *@text NULL); *@mod_rev its mod_revision (0 when
 * absent); *@header_rev the store's revision (always set on 0 / -ENOENT).
 */
int etcd_range_key(struct etcd_client *c, const char *key, char **text,
		   size_t *len, uint64_t *mod_rev, uint64_t *header_rev,
		   long timeout_ms);

#endif /* UREG_CONFIG_ETCD_CLIENT_H */
