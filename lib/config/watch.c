/* SPDX-License-Identifier: MIT */
/*
 * lib/config/watch.c - the opt-in inotify watcher: a thread that reloads
 * the file each time it is written or replaced (see ureg/config.h).
 *
 * It watches the file's directory, not the file: editors and deploy
 * tools write a new file and rename it over the old one, which a watch on
 * the old inode would never see.  Stopping writes an eventfd the thread
 * polls beside inotify, then joins it.
 */
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "config_int.h"

struct cfg_watch {
	ureg_config *cfg;
	pthread_t thread;
	int ifd, stopfd, wd;
	char *path, *base;
	ureg_config_watch_fn fn;
	void *arg;
};

/* The config whose watcher runs on this thread: its callback must not
 * start or stop that watcher (stop joins this very thread). */
static __thread ureg_config *watcher_of;

static void *watch_main(void *arg)
{
	struct cfg_watch *w = arg;
	ureg_config *cfg = w->cfg;

	watcher_of = cfg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		struct pollfd p[2] = { { w->ifd, POLLIN, 0 }, { w->stopfd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		ssize_t n = read(w->ifd, buf, sizeof(buf));
		if (n <= 0)
			continue;
		bool hit = false;
		for (char *q = buf; q < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)q;
			if (ev->len && !strcmp(ev->name, w->base))
				hit = true;
			q += sizeof(*ev) + ev->len;
		}
		if (!hit)
			continue;
		struct ureg_config_errors errs = { 0 };
		int rc = ureg_config_reload(cfg, w->path, 0, NULL, &errs);
		if (w->fn)
			w->fn(cfg, rc, &errs, w->arg);
		ureg_config_errors_free(&errs);
	}
	return NULL;
}

static void watch_free(struct cfg_watch *w)
{
	if (w->ifd >= 0)
		close(w->ifd);
	if (w->stopfd >= 0)
		close(w->stopfd);
	ureg__free(w->path);
	ureg__free(w->base);
	ureg__free(w);
}

int ureg_config_watch_start(ureg_config *cfg, const char *path,
			    ureg_config_watch_fn fn, void *arg)
{
	struct cfg_watch *w;
	char *dir = NULL;
	int rc;

	if (!cfg || !path || !*path)
		return ureg_set_error(-EINVAL, "config_watch_start: NULL config or path");
	if (watcher_of == cfg)
		return ureg_set_error(-EBUSY, "config_watch_start: called from its own watcher");
	pthread_mutex_lock(&cfg->watch_lock);
	if (cfg->watch) {
		pthread_mutex_unlock(&cfg->watch_lock);
		return ureg_set_error(-EBUSY, "config_watch_start: already watching");
	}
	w = ureg__calloc(1, sizeof(*w));
	if (!w) {
		pthread_mutex_unlock(&cfg->watch_lock);
		return ureg_set_error(-ENOMEM, "config_watch_start: out of memory");
	}
	w->cfg = cfg;
	w->fn = fn;
	w->arg = arg;
	w->ifd = w->stopfd = -1;
	w->path = ureg__strdup(path);
	const char *slash = strrchr(path, '/');
	dir = slash ? cfg_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : ureg__strdup(".");
	w->base = ureg__strdup(slash ? slash + 1 : path);
	if (!w->path || !dir || !w->base) {
		rc = -ENOMEM;
		goto fail;
	}
	w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (w->ifd < 0) {
		rc = -errno;
		goto fail;
	}
	w->stopfd = eventfd(0, EFD_CLOEXEC);
	if (w->stopfd < 0) {
		rc = -errno;
		goto fail;
	}
	w->wd = inotify_add_watch(w->ifd, dir, IN_CLOSE_WRITE | IN_MOVED_TO);
	if (w->wd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = -pthread_create(&w->thread, NULL, watch_main, w)))
		goto fail;
	cfg->watch = w;
	pthread_mutex_unlock(&cfg->watch_lock);
	ureg__free(dir);
	return 0;
fail:
	pthread_mutex_unlock(&cfg->watch_lock);
	watch_free(w);
	ureg__free(dir);
	return ureg_set_error(rc, "config_watch_start: %s", ureg_strerror(rc));
}

void ureg_config_watch_stop(ureg_config *cfg)
{
	struct cfg_watch *w;
	uint64_t one = 1;

	/* from the watcher's own callback: joining itself would deadlock */
	if (!cfg || watcher_of == cfg)
		return;
	pthread_mutex_lock(&cfg->watch_lock);
	w = cfg->watch;
	if (!w) {
		pthread_mutex_unlock(&cfg->watch_lock);
		return;
	}
	/* an eventfd write fails only when the counter would overflow,
	 * which one write per watcher cannot reach */
	while (write(w->stopfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(w->thread, NULL);
	cfg->watch = NULL;
	pthread_mutex_unlock(&cfg->watch_lock);
	watch_free(w);
}
