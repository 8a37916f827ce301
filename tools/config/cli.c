/* SPDX-License-Identifier: MIT */
/* tools/config/cli.c - see cli.h. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

int cli_long(const char *prog, const char *opt, const char *arg, long min,
	     long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (!*arg || *end || errno || v < min || v > max) {
		fprintf(stderr, "%s: %s: '%s' is not an integer from %ld to %ld\n",
			prog, opt, arg, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

void cli_version(const char *prog)
{
	printf("%s (ureg) %s\n", prog, ureg_version());
}

int cli_usage_error(const char *prog)
{
	fprintf(stderr, "Try '%s --help' for more information.\n", prog);
	return CLI_USAGE;
}

int cli_config_add(const char *prog, const char ***v, size_t *n, const char *s)
{
	const char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return -1;
	}
	nv[(*n)++] = s;
	*v = nv;
	return 0;
}

int cli_config_option(const char *prog, struct cli_config *c, int o, const char *arg)
{
	switch (o) {
	case 'p': return cli_config_add(prog, &c->plugins, &c->nplugins, arg) ? -1 : 1;
	case 't': return cli_config_add(prog, &c->types, &c->ntypes, arg) ? -1 : 1;
	case 'D': c->demo = true; return 1;
	case 'N': c->flags |= UREG_CONFIG_NO_PLUGINS; return 1;
	case 'E': c->etcd = arg; return 1;
	case 'X': c->prefix = arg; return 1;
	default: return 0;
	}
}

int cli_config_last_option(const char *prog, struct cli_config *c, int o,
			   void (*help)(void))
{
	cli_config_free(c);
	if (o == 'h')
		help();
	else if (o == 'V')
		cli_version(prog);
	else
		return cli_usage_error(prog);
	return 0;
}

static int load_plugin(const char *prog, struct cli_config *c, size_t i,
		       ureg_config *cfg)
{
	const char *path = c->plugins[i];
	/* a bare name would be searched in the library path: make it a file */
	char buf[PATH_MAX];
	if (!strchr(path, '/') && snprintf(buf, sizeof(buf), "./%s", path) < (int)sizeof(buf))
		path = buf;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "%s: --plugin %s: %s\n", prog, c->plugins[i], dlerror());
		return 1;
	}
	c->handles[i] = h;
	ureg_config_plugin_init_fn init;
	*(void **)&init = dlsym(h, UREG_CONFIG_PLUGIN_INIT);
	if (!init) {
		fprintf(stderr, "%s: --plugin %s: no function %s: %s\n", prog,
			c->plugins[i], UREG_CONFIG_PLUGIN_INIT, dlerror());
		return 1;
	}
	int rc = init(cfg);
	if (rc) {
		fprintf(stderr, "%s: --plugin %s: %s failed: %s (%s)\n", prog,
			c->plugins[i], UREG_CONFIG_PLUGIN_INIT, ureg_strerror(rc),
			ureg_last_error());
		return 1;
	}
	return 0;
}

int cli_config_new(const char *prog, struct cli_config *c, ureg_config **out)
{
	ureg_config *cfg = NULL;
	int rc;

	*out = NULL;
	c->handles = calloc(c->nplugins + 1, sizeof(*c->handles));
	c->typev = calloc(c->ntypes + 1, sizeof(*c->typev));
	if (!c->handles || !c->typev || ureg_config_new(&cfg) ||
	    ureg_config_set_flags(cfg, c->flags)) {
		fprintf(stderr, "%s: %s\n", prog, c->handles && c->typev ?
			ureg_last_error() : "out of memory");
		goto fail;
	}
	if (c->demo && (rc = demo_register(cfg))) {
		fprintf(stderr, "%s: --demo: %s\n", prog, ureg_last_error());
		goto fail;
	}
	for (size_t i = 0; i < c->ntypes; i++) {
		c->typev[i].name = c->types[i];
		if ((rc = ureg_config_type_register(cfg, &c->typev[i]))) {
			fprintf(stderr, "%s: --type %s: %s\n", prog, c->types[i],
				ureg_last_error());
			goto fail;
		}
	}
	for (size_t i = 0; i < c->nplugins; i++)
		if (load_plugin(prog, c, i, cfg))
			goto fail;
	*out = cfg;
	return 0;
fail:
	cli_config_done(c, cfg);
	return 1;
}

void cli_config_done(struct cli_config *c, ureg_config *cfg)
{
	/* the config's objects may use the plugins' code: destroy it first */
	ureg_config_destroy(cfg);
	for (size_t i = 0; c->handles && i < c->nplugins; i++)
		if (c->handles[i])
			dlclose(c->handles[i]);
	free(c->handles);
	free(c->typev);
	c->handles = NULL;
	c->typev = NULL;
}

void cli_config_free(struct cli_config *c)
{
	free(c->plugins);
	free(c->types);
	c->plugins = c->types = NULL;
	c->nplugins = c->ntypes = 0;
}

void cli_hint(const char *prog, const struct cli_config *c)
{
	if (!c->nplugins && !c->ntypes && !c->demo)
		fprintf(stderr, "%s: hint: no type or provider was registered: name your own\n"
			"  with --plugin PATH (or --type NAME), or the demo's with --demo\n", prog);
}
