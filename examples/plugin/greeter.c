/* SPDX-License-Identifier: MIT */
/*
 * A plugin: a shared object that exports one `const struct ureg_provider`
 * under a name a config file gives (examples/greeter.yaml).  ureg loads it
 * with dlopen when the config names it, and unloads it once the last entry
 * and the last instance made from it are gone.
 * Build: cc -shared -fPIC greeter.c -o greeter.so $(pkg-config --cflags ureg-config)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ureg/config.h>

struct greeter { char text[64]; };

/* singleton (@ctx NULL): malloc; factory instance: the user's context */
static int create(ureg_ctx *ctx, const struct ureg_params *params, void *arg, void **out)
{
	const char *word = ureg_params_get(params, "word");
	struct greeter *g;

	(void)arg;
	if (!word)
		return ureg_set_error(-EINVAL, "greeter: params.word is required");
	g = ctx ? ureg_ctx_alloc(ctx, sizeof(*g)) : malloc(sizeof(*g));
	if (!g)
		return -ENOMEM;
	snprintf(g->text, sizeof(g->text), "%s, %s", word, ctx ? ureg_ctx_name(ctx) : "world");
	*out = g;
	return 0;
}

static void destroy(void *obj, ureg_ctx *ctx)
{
	if (ctx)
		ureg_ctx_free(ctx, obj);
	else
		free(obj);
}

const struct ureg_provider greeter_provider = { .create = create, .destroy = destroy };
