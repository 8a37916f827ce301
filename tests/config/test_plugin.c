/* SPDX-License-Identifier: MIT */
/*
 * A test plugin: exports `const struct ureg_provider test_provider` whose
 * objects carry a pointer to code inside the plugin.  Built twice by meson
 * (PLUGIN_VERSION 1 and 2) so a test can replace the file on disk.
 */
#include <stdlib.h>
#include <ureg/config.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION 1
#endif

struct plugin_obj {
	int (*version)(void); /* code inside this shared object */
	int magic;
};

static int version(void)
{
	return PLUGIN_VERSION;
}

static int create(ureg_ctx *ctx, const struct ureg_params *p, void *arg,
		  void **out)
{
	struct plugin_obj *o = malloc(sizeof(*o));
	if (!o)
		return -12;
	o->version = version;
	o->magic = 4242;
	*out = o;
	return 0;
}

static void destroy(void *obj, ureg_ctx *ctx)
{
	struct plugin_obj *o = obj;
	o->magic = 0;
	free(o);
}

const struct ureg_provider test_provider = { .create = create, .destroy = destroy };
const int not_a_provider = 0;
