/* SPDX-License-Identifier: MIT */
/* What ureg-check, ureg-inspect and ureg-publish share for --etcd. */
#ifndef UREG_TOOLS_ETCD_TOOL_H
#define UREG_TOOLS_ETCD_TOOL_H
#include <stdint.h>
#include <ureg/config_etcd.h>

/* network timeout of the tools' etcd requests */
#define ETCD_TOOL_TIMEOUT_MS 5000

/*
 * Loads (or with UREG_CONFIG_DRY_RUN checks) the document under @prefix
 * into @cfg, its revision as the generation.  *@rev: its revision (0: no
 * document); @name (@namelen bytes) gets "etcd:<key>@<rev>".  Returns the
 * reload's value, or ureg_config_etcd_get's (-ENOENT: no document).
 */
int etcd_tool_load(ureg_config *cfg, const char *endpoints, const char *prefix,
		   unsigned flags, struct ureg_config_plan *plan,
		   struct ureg_config_errors *errs, uint64_t *rev,
		   char *name, size_t namelen);
#endif
