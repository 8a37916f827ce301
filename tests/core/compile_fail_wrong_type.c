/* SPDX-License-Identifier: MIT */
/*
 * Compile test for UREG_DECLARE_TYPED (not linked, not run).
 *
 * Built twice by meson with -fsyntax-only -Werror=incompatible-pointer-types:
 *  - with -DUREG_COMPILE_OK the item is a `struct agent *` and this must
 *    compile (so the failing build below fails for one reason only);
 *  - without it the item is a `struct tool *` handed to an agent-typed
 *    registry, and the build must fail (meson `should_fail : true`).
 */
#include <ureg/typed.h>

struct agent {
	int id;
};

struct tool {
	int arity;
};

UREG_DECLARE_TYPED(agent_reg, struct agent)

#ifdef UREG_COMPILE_OK
typedef struct agent item_t;
#else
typedef struct tool item_t;
#endif

int register_one(agent_reg_registry *r, item_t *item);

int register_one(agent_reg_registry *r, item_t *item)
{
	return agent_reg_register(r, "planner", item);
}
