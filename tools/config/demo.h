/* SPDX-License-Identifier: MIT */
/* Demo types and builtin providers shared by ureg-inspect and ureg-check:
 * what an application registers before loading its config. */
#ifndef UREG_TOOLS_DEMO_H
#define UREG_TOOLS_DEMO_H
#include <ureg/config.h>

/* Registers the types base, agent, tool, strategy, service (all -> base)
 * and the providers demo.object and demo.counter.  Returns 0 or -errno. */
int demo_register(ureg_config *cfg);
#endif
