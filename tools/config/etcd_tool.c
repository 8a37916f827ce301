/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "etcd_tool.h"

int etcd_tool_load(ureg_config *cfg, const char *endpoints, const char *prefix,
		   unsigned flags, struct ureg_config_plan *plan,
		   struct ureg_config_errors *errs, uint64_t *rev,
		   char *name, size_t namelen)
{
	char *text;
	size_t len;
	int rc = ureg_config_etcd_get(endpoints, prefix, &text, &len, rev,
				      ETCD_TOOL_TIMEOUT_MS);

	snprintf(name, namelen, "etcd:%s%s@%llu", prefix, UREG_CONFIG_ETCD_DOC,
		 (unsigned long long)*rev);
	if (rc)
		return rc;
	rc = ureg_config_reload_buffer_gen(cfg, text, len, name, flags, *rev, plan, errs);
	free(text);
	return rc;
}
