/* SPDX-License-Identifier: MIT */
/*
 * lib/config/etcd_client.c - etcd's v3 JSON gateway over libcurl.
 *
 * The gateway (etcd 3.4: POST <client-url>/v3/...) maps etcd's protobuf
 * messages to JSON: keys and values are base64, 64-bit integers are JSON
 * strings, fields with their default value (0, false, PUT) are left out.
 * A watch is one POST whose chunked reply is one JSON object per line,
 * for as long as the watch lives.
 *
 * Every transfer runs on the client's own curl multi handle and waits in
 * curl_multi_poll, which curl_multi_wakeup interrupts from another thread:
 * that is how ureg_config_etcd_stop ends a watch that is blocked waiting
 * for the next change, a connect to a dead member, or a backoff sleep,
 * without waiting for any timeout.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/evp.h>

#include "../layer.h"
#include "etcd_client.h"
#include "ureg/config_etcd.h"

/* a reply larger than this is refused (the config limit is 16 MiB of
 * YAML, 22 MiB in base64) */
#define REPLY_MAX (32u << 20)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	/* thread-safe since curl 7.84; once per process, never cleaned up
	 * (other libraries of the process may use curl too) */
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool stopped(const struct etcd_client *c)
{
	return c->stop && __atomic_load_n(c->stop, __ATOMIC_ACQUIRE);
}

static void set_err(struct etcd_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_err(struct etcd_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

int etcd_client_init(struct etcd_client *c, const char *endpoints, const int *stop)
{
	memset(c, 0, sizeof(*c));
	c->stop = stop;
	if (!endpoints || !*endpoints)
		return -EINVAL;
	pthread_once(&curl_once, curl_init_once);
	for (const char *p = endpoints; *p;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		while (n && p[n - 1] == '/')
			n--;
		if (n <= 7 || strncmp(p, "http://", 7)) {
			etcd_client_fini(c);
			return -EINVAL;
		}
		char **ep = ureg__realloc(c->ep, (c->nep + 1) * sizeof(*ep));
		if (!ep) {
			etcd_client_fini(c);
			return -ENOMEM;
		}
		c->ep = ep;
		if (!(c->ep[c->nep] = ureg__malloc(n + 1))) {
			etcd_client_fini(c);
			return -ENOMEM;
		}
		memcpy(c->ep[c->nep], p, n);
		c->ep[c->nep++][n] = '\0';
		p = e ? e + 1 : p + n;
	}
	if (!c->nep)
		return -EINVAL;
	if (ureg__layer_fault() || !(c->multi = curl_multi_init())) {
		etcd_client_fini(c);
		return -ENOMEM;
	}
	return 0;
}

void etcd_client_fini(struct etcd_client *c)
{
	if (c->multi)
		curl_multi_cleanup(c->multi);
	for (size_t i = 0; i < c->nep; i++)
		ureg__free(c->ep[i]);
	ureg__free(c->ep);
	c->ep = NULL;
	c->nep = 0;
	c->multi = NULL;
}

void etcd_client_wakeup(struct etcd_client *c)
{
	curl_multi_wakeup(c->multi);
}

void etcd_client_next(struct etcd_client *c)
{
	c->cur = (c->cur + 1) % c->nep;
}

int etcd_client_sleep(struct etcd_client *c, unsigned ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (stopped(c))
			return -ECANCELED;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long done = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (done >= (long)ms)
			return 0;
		/* no transfer: waits for the timeout or a wakeup */
		curl_multi_poll(c->multi, NULL, 0, (int)(ms - done), NULL);
	}
}

/* ----------------------------------------------------------- transfers */

struct xfer {
	struct etcd_client *c;
	char *buf;
	size_t len, cap;
	etcd_line_fn on_line;
	void *arg;
	int rc;        /* set by a line handler or an overflow */
};

static int take_line(struct xfer *x, const char *s, size_t n)
{
	json_error_t je;
	json_t *j = json_loadb(s, n, 0, &je);
	int rc;

	if (!j) {
		set_err(x->c, "%s: not JSON: %s", x->c->ep[x->c->cur], je.text);
		return -EPROTO;
	}
	json_t *err = json_object_get(j, "error");
	if (err) {
		json_t *m = json_is_object(err) ? json_object_get(err, "message") : err;
		set_err(x->c, "%s: etcd: %s", x->c->ep[x->c->cur],
			json_is_string(m) ? json_string_value(m) : "error");
		json_decref(j);
		return -EPROTO;
	}
	rc = x->on_line(j, x->arg);
	json_decref(j);
	return rc;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;

	if (x->rc)
		return 0;
	if (x->len + len + 1 > REPLY_MAX) {
		set_err(x->c, "%s: reply over %u bytes", x->c->ep[x->c->cur], REPLY_MAX);
		x->rc = -EPROTO;
		return 0;
	}
	if (x->len + len + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + len + 1)
			cap *= 2;
		char *b = ureg__realloc(x->buf, cap);
		if (!b) {
			x->rc = -ENOMEM;
			return 0;
		}
		x->buf = b;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, p, len);
	x->len += len;
	if (!x->on_line)
		return len;
	/* hand over every complete line, keep the rest */
	char *start = x->buf, *nl;
	while ((nl = memchr(start, '\n', x->len - (size_t)(start - x->buf)))) {
		if (nl > start && (x->rc = take_line(x, start, (size_t)(nl - start))))
			return 0; /* 1 (done) or an error: ends the transfer */
		start = nl + 1;
	}
	x->len -= (size_t)(start - x->buf);
	memmove(x->buf, start, x->len);
	return len;
}

static int curl_errno(struct etcd_client *c, CURLcode res, const char *errbuf)
{
	set_err(c, "%s: %s", c->ep[c->cur], errbuf[0] ? errbuf : curl_easy_strerror(res));
	switch (res) {
	case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
	default: return -ECONNRESET;
	}
}

int etcd_post(struct etcd_client *c, const char *path, json_t *body,
	      json_t **reply, etcd_line_fn on_line, void *arg, long timeout_ms)
{
	struct xfer x = { .c = c, .on_line = on_line, .arg = arg };
	char url[1024], errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdr = NULL, *h2;
	char *text = json_dumps(body, JSON_COMPACT);
	CURL *h = NULL;
	int rc = 0, running = 1;
	CURLcode res = CURLE_OK;

	json_decref(body);
	if (reply)
		*reply = NULL;
	if (!text || ureg__layer_fault() || !(h = curl_easy_init()) ||
	    !(h2 = curl_slist_append(hdr, "Content-Type: application/json"))) {
		rc = -ENOMEM;
		goto out;
	}
	hdr = h2;
	snprintf(url, sizeof(url), "%s%s", c->ep[c->cur], path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	/* a dead peer on a quiet watch is found by TCP keepalive */
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 2L);
	if (!on_line)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (curl_multi_add_handle(c->multi, h)) {
		rc = -ENOMEM;
		goto out;
	}
	while (running) {
		if (stopped(c)) {
			rc = -ECANCELED;
			break;
		}
		if (curl_multi_perform(c->multi, &running)) {
			rc = -ENOMEM;
			break;
		}
		if (running)
			curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
	}
	if (!rc) {
		CURLMsg *m;
		int q;
		while ((m = curl_multi_info_read(c->multi, &q)))
			if (m->msg == CURLMSG_DONE)
				res = m->data.result;
	}
	curl_multi_remove_handle(c->multi, h);
	if (rc)
		goto out;
	if (x.rc) { /* a line handler's result or our own error wins */
		rc = x.rc > 0 ? 0 : x.rc;
		goto out;
	}
	if (res != CURLE_OK) {
		rc = curl_errno(c, res, errbuf);
		goto out;
	}
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (on_line) {
		/* the stream ended (etcd went away cleanly): a final partial line */
		if (x.len && (rc = take_line(&x, x.buf, x.len)) > 0)
			rc = 0;
		if (!rc) {
			set_err(c, "%s: watch ended (HTTP %ld)", c->ep[c->cur], status);
			rc = -ECONNRESET;
		}
		goto out;
	}
	json_error_t je;
	json_t *j = json_loadb(x.buf ? x.buf : "", x.len, 0, &je);
	if (!j || status != 200 || json_object_get(j, "error")) {
		json_t *m = j ? json_object_get(j, "message") : NULL;
		if (!m && j)
			m = json_object_get(j, "error");
		set_err(c, "%s%s: HTTP %ld: %s", c->ep[c->cur], path, status,
			json_is_string(m) ? json_string_value(m) : !j ? je.text : "error");
		json_decref(j);
		/* 503: the member has no leader now (an election): try again */
		rc = status == 503 ? -EAGAIN : -EPROTO;
		goto out;
	}
	*reply = j;
out:
	if (rc == -ENOMEM)
		set_err(c, "out of memory");
	curl_easy_cleanup(h);
	curl_slist_free_all(hdr);
	free(text);
	ureg__free(x.buf);
	return rc;
}

/* ------------------------------------------------------------- helpers */

char *etcd_b64(const void *p, size_t n)
{
	if (n > INT_MAX / 2)
		return NULL;
	char *s = ureg__malloc(4 * ((n + 2) / 3) + 1);
	if (s)
		EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

int etcd_unb64(const char *s, char **out, size_t *n)
{
	size_t len = strlen(s);
	*out = NULL;
	if (len % 4 || len > INT_MAX / 2)
		return -EPROTO;
	char *d = ureg__malloc(len / 4 * 3 + 1);
	if (!d)
		return -ENOMEM;
	int m = len ? EVP_DecodeBlock((unsigned char *)d, (const unsigned char *)s, (int)len) : 0;
	if (m < 0) {
		ureg__free(d);
		return -EPROTO;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes */
	for (size_t i = len; i > 0 && s[i - 1] == '='; i--)
		m--;
	d[m] = '\0';
	*out = d;
	*n = (size_t)m;
	return 0;
}

uint64_t etcd_u64(json_t *o, const char *field)
{
	json_t *v = json_object_get(o, field);
	if (json_is_string(v))
		return strtoull(json_string_value(v), NULL, 10);
	if (json_is_integer(v))
		return (uint64_t)json_integer_value(v);
	return 0;
}

char *etcd_doc_key(const char *prefix)
{
	size_t a = strlen(prefix), b = strlen(UREG_CONFIG_ETCD_DOC);
	char *k = ureg__malloc(a + b + 1);
	if (k) {
		memcpy(k, prefix, a);
		memcpy(k + a, UREG_CONFIG_ETCD_DOC, b + 1);
	}
	return k;
}

int etcd_range_key(struct etcd_client *c, const char *key, char **text,
		   size_t *len, uint64_t *mod_rev, uint64_t *header_rev,
		   long timeout_ms)
{
	char *k64 = etcd_b64(key, strlen(key));
	json_t *body, *reply = NULL;
	int rc;

	*text = NULL;
	*mod_rev = 0;
	if (!k64 || !(body = json_pack("{s:s}", "key", k64))) {
		ureg__free(k64);
		set_err(c, "out of memory");
		return -ENOMEM;
	}
	ureg__free(k64);
	if ((rc = etcd_post(c, "/v3/kv/range", body, &reply, NULL, NULL, timeout_ms)))
		return rc;
	*header_rev = etcd_u64(json_object_get(reply, "header"), "revision");
	json_t *kv = json_array_get(json_object_get(reply, "kvs"), 0);
	if (!kv) {
		json_decref(reply);
		return -ENOENT;
	}
	json_t *v = json_object_get(kv, "value");
	*mod_rev = etcd_u64(kv, "mod_revision");
	rc = etcd_unb64(json_is_string(v) ? json_string_value(v) : "", text, len);
	if (rc == -EPROTO)
		set_err(c, "%s: the value of %s is not base64", c->ep[c->cur], key);
	json_decref(reply);
	return rc;
}

/* --------------------------------------------------- one-shot (tools) */

static bool transient(int rc)
{
	return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -ECONNRESET ||
	       rc == -EHOSTUNREACH || rc == -EAGAIN;
}

/* Runs @fn on each endpoint in turn until one answers (not a network
 * error, not an election in progress), going round the list again after
 * a short pause while @timeout_ms allows (a member was just killed: the
 * others elect a leader within about a second); the last error
 * otherwise. */
static int each_endpoint(struct etcd_client *c, int (*fn)(struct etcd_client *, void *),
			 void *arg, long timeout_ms)
{
	struct timespec t0, t;
	unsigned pause = 20;
	int rc = -ECONNREFUSED;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (size_t i = 0; i < c->nep; i++, etcd_client_next(c))
			if (!transient(rc = fn(c, arg)))
				return rc;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long done = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (done + pause > timeout_ms)
			return rc;
		etcd_client_sleep(c, pause);
		pause = pause * 2 > 500 ? 500 : pause * 2;
	}
}

struct oneshot {
	const char *key;
	char *text;
	size_t len;
	const char *put;
	size_t putlen;
	uint64_t rev, new_rev;
	long timeout_ms;
};

static int get_one(struct etcd_client *c, void *arg)
{
	struct oneshot *o = arg;
	uint64_t hdr;
	ureg__free(o->text);
	o->text = NULL;
	return etcd_range_key(c, o->key, &o->text, &o->len, &o->rev, &hdr, o->timeout_ms);
}

static int put_one(struct etcd_client *c, void *arg)
{
	struct oneshot *o = arg;
	char *k64 = etcd_b64(o->key, strlen(o->key));
	char *v64 = etcd_b64(o->put, o->putlen);
	char rev[32];
	json_t *body = NULL, *reply = NULL;
	int rc;

	snprintf(rev, sizeof(rev), "%llu", (unsigned long long)o->rev);
	if (k64 && v64)
		body = json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s}}]}",
				 "compare", "key", k64, "target", "MOD",
				 "result", "EQUAL", "mod_revision", rev,
				 "success", "request_put", "key", k64, "value", v64);
	ureg__free(k64);
	ureg__free(v64);
	if (!body) {
		set_err(c, "out of memory");
		return -ENOMEM;
	}
	if ((rc = etcd_post(c, "/v3/kv/txn", body, &reply, NULL, NULL, o->timeout_ms)))
		return rc;
	o->new_rev = etcd_u64(json_object_get(reply, "header"), "revision");
	if (!json_is_true(json_object_get(reply, "succeeded")))
		rc = -ESTALE;
	json_decref(reply);
	return rc;
}

static int oneshot(const char *endpoints, const char *prefix, struct oneshot *o,
		   int (*fn)(struct etcd_client *, void *), const char *what)
{
	struct etcd_client c;
	int rc;

	ureg__rcu_ensure();
	if (!prefix || !*prefix)
		return ureg_set_error(-EINVAL, "etcd %s: empty prefix", what);
	if ((rc = etcd_client_init(&c, endpoints, NULL)))
		return ureg_set_error(rc, "etcd %s: %s", what, rc == -EINVAL ?
				 "endpoints must be http://HOST:PORT[,http://...]" : "out of memory");
	char *key = etcd_doc_key(prefix);
	if (!key) {
		etcd_client_fini(&c);
		return ureg_set_error(-ENOMEM, "etcd %s: out of memory", what);
	}
	o->key = key;
	rc = each_endpoint(&c, fn, o, o->timeout_ms);
	if (rc == -ENOENT)
		ureg_set_error(rc, "etcd %s: no key %s", what, key);
	else if (rc == -ESTALE)
		ureg_set_error(rc, "etcd %s: %s changed since revision %llu (now at %llu): "
			       "nothing written", what, key, (unsigned long long)o->rev,
			       (unsigned long long)o->new_rev);
	else if (rc)
		ureg_set_error(rc, "etcd %s: %s", what, c.err);
	else
		ureg_set_error(0, NULL);
	ureg__free(key);
	etcd_client_fini(&c);
	return rc;
}

int ureg_config_etcd_get(const char *endpoints, const char *prefix,
			 char **text, size_t *len, uint64_t *mod_revision,
			 int timeout_ms)
{
	struct oneshot o = { .timeout_ms = timeout_ms > 0 ? timeout_ms : 5000 };
	int rc;

	if (!text || !len || !mod_revision)
		return ureg_set_error(-EINVAL, "etcd get: NULL argument");
	*text = NULL;
	*len = 0;
	rc = oneshot(endpoints, prefix, &o, get_one, "get");
	*mod_revision = o.rev;
	if (rc) {
		ureg__free(o.text);
		return rc;
	}
	*text = o.text;
	*len = o.len;
	return 0;
}

int ureg_config_etcd_put(const char *endpoints, const char *prefix,
			 const char *text, size_t len, uint64_t expect_revision,
			 uint64_t *new_revision, int timeout_ms)
{
	struct oneshot o = { .put = text, .putlen = len, .rev = expect_revision,
			     .timeout_ms = timeout_ms > 0 ? timeout_ms : 5000 };
	int rc;

	if (!text && len)
		return ureg_set_error(-EINVAL, "etcd put: NULL text");
	if (!text)
		o.put = "";
	rc = oneshot(endpoints, prefix, &o, put_one, "put");
	if (rc == -ESTALE) {
		/* a retried request whose first try had landed finds its own
		 * write: the document is what the caller wanted */
		struct oneshot g = { .timeout_ms = o.timeout_ms };
		if (!oneshot(endpoints, prefix, &g, get_one, "put") && g.len == len &&
		    !memcmp(g.text, o.put, len) && g.rev > expect_revision) {
			o.new_rev = g.rev;
			rc = 0;
		} else {
			ureg_set_error(rc, "etcd put: %s%s changed since revision %llu (now at "
				       "%llu): nothing written", prefix, UREG_CONFIG_ETCD_DOC,
				       (unsigned long long)expect_revision,
				       (unsigned long long)(g.rev ? g.rev : o.new_rev));
		}
		ureg__free(g.text);
	}
	if (new_revision)
		*new_revision = rc ? 0 : o.new_rev;
	return rc;
}
