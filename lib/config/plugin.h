/* SPDX-License-Identifier: MIT */
/*
 * lib/config/plugin.h - private: the dlopen'd plugin cache of the config
 * layer (plugin.c), used by config.c.  Hidden symbols of libureg-config.
 */
#ifndef UREG_CONFIG_PLUGIN_H
#define UREG_CONFIG_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include "ureg/ureg.h"

struct ureg_plugin;
int ureg__plugin_open(struct ureg_plugin **cache, const char *path,
		      struct ureg_plugin **out, char *why, size_t whylen);
const void *ureg__plugin_sym(struct ureg_plugin *p, const char *sym,
			     char *why, size_t whylen);
ureg_anchor *ureg__plugin_anchor(struct ureg_plugin *p);
/* The path the plugin was opened from; valid while it is in the cache. */
const char *ureg__plugin_path(struct ureg_plugin *p);
void ureg__plugin_mark(struct ureg_plugin *p);
void ureg__plugin_prune(struct ureg_plugin **cache, bool all);

#endif /* UREG_CONFIG_PLUGIN_H */
