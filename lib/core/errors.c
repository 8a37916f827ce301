/* SPDX-License-Identifier: MIT */
/* Error text: a static string per errno, plus a per-thread detail line. */
#include <stdio.h>
#include "internal.h"

static UREG_TLS char last_error[512];
UREG_TLS const char *ureg__last_msg; /* last_error, a static string or LAZY */
#define last_msg ureg__last_msg

/*
 * Read-path failures (a lookup miss, a get outside a read section) name
 * the registry and the key, but a miss may be frequent: the failing call
 * only copies the two strings (no formatting), and ureg_last_error()
 * formats them when, and if, somebody asks.  Copies, not pointers: the
 * caller's key buffer or the registry may be gone by then.
 */
static char lazy_tag; /* last_msg == &lazy_tag: format lazy_* on demand */
#define LAZY (&lazy_tag)
static UREG_TLS const char *lazy_what;
static UREG_TLS char lazy_reg[UREG_NAME_MAX + 1];
static UREG_TLS char lazy_key[UREG_KEY_MAX + 1];

static int set_verr(int err, const char *fmt, va_list ap)
{
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	last_msg = last_error;
	return err;
}

int ureg_set_error(int err, const char *fmt, ...)
{
	va_list ap;

	if (!fmt) {
		last_msg = NULL;
		return err;
	}
	va_start(ap, fmt);
	err = set_verr(err, fmt, ap);
	va_end(ap);
	return err;
}

int ureg__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err = set_verr(err, fmt, ap);
	va_end(ap);
	return err;
}

/* For hot-path misses: one thread-local pointer store, no formatting. */
int ureg__err_static(int err, const char *msg)
{
	last_msg = msg;
	return err;
}

int ureg__err_key(int err, const char *what, const char *reg_name,
		  const char *key, size_t keylen)
{
	size_t n = strnlen(reg_name, UREG_NAME_MAX);

	memcpy(lazy_reg, reg_name, n);
	lazy_reg[n] = '\0';
	if (keylen > UREG_KEY_MAX)
		keylen = UREG_KEY_MAX;
	memcpy(lazy_key, key, keylen);
	lazy_key[keylen] = '\0';
	lazy_what = what;
	last_msg = LAZY;
	return err;
}

const char *ureg_last_error(void)
{
	if (last_msg == LAZY) {
		snprintf(last_error, sizeof(last_error), "registry '%s': %s '%s'",
			 lazy_reg, lazy_what, lazy_key);
		last_msg = last_error;
	}
	return last_msg ? last_msg : "";
}

const char *ureg_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument (NULL, empty or over-long key, bad flag)";
	case -EEXIST:
		return "key already registered";
	case -ENOENT:
		return "no such key, factory or instance";
	case -ENOMEM:
		return "out of memory";
	case -EDQUOT:
		return "context memory quota exceeded";
	case -EPERM:
		return "call requires a ureg read section (ureg_read_lock)";
	case -EAGAIN:
		return "no jemalloc arena available";
	case -EBUSY:
		return "resource busy (already in use)";
	case -ENOTSUP:
		return "not supported by this build";
	case -EBADMSG:
		return "invalid configuration";
	case -ELOOP:
		return "recursive use not allowed";
	case -ETIMEDOUT:
		return "timed out waiting for holders to let go (see ureg_last_error)";
	default:
		break;
	}
	if (err < 0 && err > -4096) { /* errno range; also avoids -INT_MIN */
		/* strerror is not guaranteed thread-safe; strerrordesc_np is
		 * (glibc >= 2.32) and returns static text. */
		const char *s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "unknown error";
}

const char *ureg_version(void)
{
	return UREG_VERSION_STRING;
}
