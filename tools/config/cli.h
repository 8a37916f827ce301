/* SPDX-License-Identifier: MIT */
/*
 * tools/config/cli.h - what every ureg tool shares on its command line
 * (static library ureg_cli, tools/meson.build): checked number parsing,
 * --version, and for the config tools the loader setup from --plugin,
 * --type, --demo and --no-plugins.
 *
 * Conventions (README "Tools"): getopt_long; --help on stdout, exit 0;
 * --version prints "TOOL (ureg) VERSION" with the loaded libureg's
 * ureg_version(); a bad option or number exits 2 with a message on stderr.
 */
#ifndef UREG_TOOLS_CLI_H
#define UREG_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <ureg/config.h>

/* Exit status of a usage error (bad option, bad number, missing operand). */
#define CLI_USAGE 2

/* Parse @arg as a base-10 integer in [@min, @max] into *@out.  On error
 * prints "PROG: OPT: 'ARG' is not an integer from MIN to MAX" to stderr
 * and returns -1 (exit with CLI_USAGE); 0 on success.  No atoi. */
int cli_long(const char *prog, const char *opt, const char *arg, long min,
	     long max, long *out);

/* "PROG (ureg) VERSION" on stdout. */
void cli_version(const char *prog);

/* "Try 'PROG --help'." on stderr; returns CLI_USAGE. */
int cli_usage_error(const char *prog);

/* The loader setup of ureg-check and ureg-inspect. */
struct cli_config {
	const char **plugins;   /* --plugin PATH, in order */
	size_t nplugins;
	const char **types;     /* --type NAME */
	size_t ntypes;
	bool demo;              /* --demo */
	const char *etcd;       /* --etcd URL[,URL...], NULL if not given */
	const char *prefix;     /* --prefix P, NULL if not given */
	unsigned flags;         /* UREG_CONFIG_NO_PLUGINS */
	void **handles;         /* dlopen'd --plugin objects */
	ureg_type *typev;       /* --type descriptors */
};

/* Remember a repeatable option's value; -1 (message printed) on OOM. */
int cli_config_add(const char *prog, const char ***v, size_t *n, const char *s);

/* The long options every config tool shares (put first in its table):
 * the ones cli_config_option() takes, then --help and --version, which
 * cli_config_last_option() handles. */
#define CLI_CONFIG_LONG_OPTIONS                               \
	{ "plugin", required_argument, NULL, 'p' },           \
	{ "type", required_argument, NULL, 't' },             \
	{ "demo", no_argument, NULL, 'D' },                   \
	{ "no-plugins", no_argument, NULL, 'N' },             \
	{ "etcd", required_argument, NULL, 'E' },             \
	{ "prefix", required_argument, NULL, 'X' },           \
	{ "help", no_argument, NULL, 'h' },                   \
	{ "version", no_argument, NULL, 'V' }

/* The options every config tool shares, as getopt_long returns them:
 * -p/--plugin, -t/--type, 'D' (--demo), 'N' (--no-plugins), 'E' (--etcd),
 * 'X' (--prefix).  Returns 1 when @o was one of them (taken into @c), 0
 * when it was not, -1 after printing why (out of memory). */
int cli_config_option(const char *prog, struct cli_config *c, int o, const char *arg);

/* The default case of a config tool's option switch: frees @c's option
 * lists, then for 'h' calls @help, for 'V' prints the version, and
 * returns the tool's exit status: 0 for those two, CLI_USAGE (after the
 * usage hint) for anything else getopt_long returned. */
int cli_config_last_option(const char *prog, struct cli_config *c, int o,
			   void (*help)(void));

/* A loader with the demo types (--demo), the --type types and whatever
 * each --plugin's ureg_config_plugin_init registers.  Returns 0, or 1
 * after printing why (a plugin that cannot be loaded or initialized). */
int cli_config_new(const char *prog, struct cli_config *c, ureg_config **out);

/* Destroy @cfg (may be NULL), then unload the --plugin objects; the
 * option lists stay for another cli_config_new(). */
void cli_config_done(struct cli_config *c, ureg_config *cfg);

/* After a failed load: on stderr, how to register types and providers
 * when none of --plugin, --type, --demo was given. */
void cli_hint(const char *prog, const struct cli_config *c);

/* Free the option lists. */
void cli_config_free(struct cli_config *c);

/* Help text lines for the options above (shared by both tools). */
#define CLI_CONFIG_HELP \
	"  -p, --plugin=PATH    load the shared object PATH and call its\n" \
	"                       " UREG_CONFIG_PLUGIN_INIT "(cfg) to register\n" \
	"                       the types and builtin providers your config\n" \
	"                       names (repeatable; see ureg/config.h)\n" \
	"  -t, --type=NAME      declare a plain type NAME (no destructor), for a\n" \
	"                       config whose entries are all plugin: entries\n" \
	"                       (repeatable)\n" \
	"      --demo           register the demo types (base; agent, tool,\n" \
	"                       strategy, service -> base) and providers\n" \
	"                       (demo.object, demo.counter) of tools/example.yaml\n" \
	"      --no-plugins     refuse plugin: entries (untrusted input)\n"

#endif
