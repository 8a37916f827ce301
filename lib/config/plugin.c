/* SPDX-License-Identifier: MIT */
/*
 * Plugins: shared objects that export a `const struct ureg_provider`.
 *
 * The one tricky idea: dlopen() of a path that is already loaded returns
 * the SAME handle, even when the file changed on disk (glibc matches by
 * name first).  So a plugin is never dlopen'd from its own path: the file
 * is copied to a private temporary file ($TMPDIR/ureg-<name>-XXXXXX.so),
 * opened from there and the copy unlinked at once (the mapping keeps it).
 * Every version therefore gets its own handle, and a reload that finds the
 * file changed (device, inode, size or mtime) loads the new version beside
 * the old one.
 *
 * Lifetime: a plugin is a struct ureg_anchor.  The config's plugin cache
 * holds one reference while the live config uses it; every factory made
 * from it holds one (through struct ureg_factory.anchor, so every instance
 * keeps its factory box and with it the anchor); every singleton holds one
 * until after its destructor ran.  The last ureg_anchor_put() dlclose()s
 * the handle on whichever thread dropped it.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../layer.h"
#include "plugin.h"

struct ureg_plugin {
	ureg_anchor anchor; /* first: the release callback casts back */
	void *handle;
	char *path;         /* as resolved by the config */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct ureg_plugin *next; /* the config's cache list */
	bool used;                /* mark for the cache pruning */
};

static void plugin_release(ureg_anchor *a)
{
	struct ureg_plugin *p = (struct ureg_plugin *)a;

	if (p->handle)
		dlclose(p->handle);
	ureg__free(p->path);
	ureg__free(p);
}

/* Copy @fd to a private file and dlopen it; the copy is unlinked. */
static void *load_private_copy(int fd, const char *path, char *why,
			       size_t whylen)
{
	const char *tmp = getenv("TMPDIR");
	const char *base = strrchr(path, '/');
	char name[PATH_MAX], stem[64];
	char buf[65536];
	void *h = NULL;
	ssize_t n;
	int out;

	base = base ? base + 1 : path;
	snprintf(stem, sizeof(stem), "%s", base);
	char *dot = strstr(stem, ".so");
	if (dot)
		*dot = '\0';
	for (char *c = stem; *c; c++)
		if (*c == '/' || *c == '%')
			*c = '_';
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (snprintf(name, sizeof(name), "%s/ureg-%s-XXXXXX.so", tmp, stem) >=
	    (int)sizeof(name)) {
		snprintf(why, whylen, "temporary path too long");
		return NULL;
	}
	out = mkostemps(name, 3, O_CLOEXEC);
	if (out < 0) {
		snprintf(why, whylen, "cannot create a private copy in %s: %s",
			 tmp, strerror(errno));
		return NULL;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				snprintf(why, whylen, "copying the plugin: %s",
					 strerror(errno));
				goto out;
			}
			off += w;
		}
	}
	if (n < 0) {
		snprintf(why, whylen, "reading the plugin: %s", strerror(errno));
		goto out;
	}
	h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(why, whylen, "dlopen failed: %s", e ? e : "unknown error");
	}
out:
	close(out);
	unlink(name);
	return h;
}

const char *ureg__plugin_path(struct ureg_plugin *p)
{
	return p->path;
}

int ureg__plugin_open(struct ureg_plugin **cache, const char *path,
		      struct ureg_plugin **out, char *why, size_t whylen)
{
	struct ureg_plugin *p;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "plugin '%s': %s", path, strerror(errno));
		return -ENOENT;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "plugin '%s' is not a regular file", path);
		close(fd);
		return -ENOENT;
	}
	for (p = *cache; p; p = p->next) {
		if (!strcmp(p->path, path) && p->dev == st.st_dev &&
		    p->ino == st.st_ino && p->size == st.st_size &&
		    p->mtime.tv_sec == st.st_mtim.tv_sec &&
		    p->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			close(fd);
			*out = p;
			return 0;
		}
	}
	p = ureg__calloc(1, sizeof(*p));
	if (!p || !(p->path = ureg__strdup(path))) {
		ureg__free(p);
		close(fd);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	char w[512] = "";
	p->handle = load_private_copy(fd, path, w, sizeof(w));
	close(fd);
	if (!p->handle) {
		snprintf(why, whylen, "plugin '%s': %s", path, w);
		ureg__free(p->path);
		ureg__free(p);
		return -ENOENT;
	}
	p->dev = st.st_dev;
	p->ino = st.st_ino;
	p->size = st.st_size;
	p->mtime = st.st_mtim;
	ureg_anchor_init(&p->anchor, plugin_release); /* the cache's reference */
	p->next = *cache;
	*cache = p;
	*out = p;
	return 0;
}

const void *ureg__plugin_sym(struct ureg_plugin *p, const char *sym,
			     char *why, size_t whylen)
{
	dlerror();
	void *s = dlsym(p->handle, sym);
	if (!s) {
		const char *e = dlerror();
		snprintf(why, whylen, "plugin '%s' has no symbol '%s'%s%s",
			 p->path, sym, e ? ": " : "", e ? e : "");
	}
	return s;
}

ureg_anchor *ureg__plugin_anchor(struct ureg_plugin *p)
{
	return &p->anchor;
}

void ureg__plugin_mark(struct ureg_plugin *p)
{
	p->used = true;
}

/* Drop the cache's reference to every plugin not marked since the last
 * prune (or to all of them); marks are cleared. */
void ureg__plugin_prune(struct ureg_plugin **cache, bool all)
{
	struct ureg_plugin **pp = cache, *p;

	while ((p = *pp)) {
		if (all || !p->used) {
			*pp = p->next;
			ureg_anchor_put(&p->anchor);
		} else {
			p->used = false;
			pp = &p->next;
		}
	}
}
