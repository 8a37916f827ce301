/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "demo.h"

static const ureg_type base_type = { .name = "base" };
static const ureg_type agent_type = { .name = "agent", .parent = &base_type };
static const ureg_type tool_type = { .name = "tool", .parent = &base_type };
static const ureg_type strategy_type = { .name = "strategy", .parent = &base_type };
static const ureg_type service_type = { .name = "service", .parent = &base_type };

/* An object with a label and an optional payload of `bytes` bytes. */
struct demo_obj {
	char label[64];
	size_t bytes;
	unsigned char payload[];
};

static int demo_object_create(ureg_ctx *ctx, const struct ureg_params *p,
			      void *arg, void **out)
{
	const char *label = ureg_params_get(p, "label");
	const char *bytes = ureg_params_get(p, "bytes");
	size_t n = bytes ? strtoul(bytes, NULL, 10) : 0;
	if (n > (1u << 20))
		return -EINVAL;
	struct demo_obj *o = ctx ? ureg_ctx_calloc(ctx, 1, sizeof(*o) + n)
				 : calloc(1, sizeof(*o) + n);
	if (!o)
		return -ENOMEM;
	strncpy(o->label, label ? label : "", sizeof(o->label) - 1);
	o->bytes = n;
	*out = o;
	return 0;
}

static void demo_object_destroy(void *obj, ureg_ctx *ctx)
{
	if (ctx)
		ureg_ctx_free(ctx, obj);
	else
		free(obj);
}

static const struct ureg_provider demo_object = {
	.create = demo_object_create, .destroy = demo_object_destroy,
};

/* A counter: like demo.object, with a `start` param. */
static int demo_counter_create(ureg_ctx *ctx, const struct ureg_params *p,
			       void *arg, void **out)
{
	const char *start = ureg_params_get(p, "start");
	long *c = ctx ? ureg_ctx_alloc(ctx, sizeof(*c)) : malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = start ? strtol(start, NULL, 10) : 0;
	*out = c;
	return 0;
}

static const struct ureg_provider demo_counter = {
	.create = demo_counter_create, .destroy = demo_object_destroy,
};

int demo_register(ureg_config *cfg)
{
	const ureg_type *types[] = { &base_type, &agent_type, &tool_type,
				     &strategy_type, &service_type };
	int rc;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((rc = ureg_config_type_register(cfg, types[i])))
			return rc;
	if ((rc = ureg_config_provider_register(cfg, "demo.object", &demo_object)))
		return rc;
	return ureg_config_provider_register(cfg, "demo.counter", &demo_counter);
}
