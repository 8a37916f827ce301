/* SPDX-License-Identifier: MIT */
/*
 * ureg-publish [OPTION]... FILE --etcd URL --prefix P   (see --help)
 *
 * Publishes FILE as the fleet's configuration (<P>config.yaml in etcd),
 * only when it is valid and only over the version it was checked against:
 *
 *  1. reads the document in etcd (revision R0; none: 0);
 *  2. with --revision R (the revision an operator reviewed, e.g. printed
 *     by `ureg-check --etcd`), stops at once when R0 != R;
 *  3. loads etcd's document and checks FILE against it exactly like a
 *     reload (dry run; types and providers from --plugin, --type, --demo as
 *     for ureg-check): every error is
 *     printed as file:line:column and nothing is written;
 *  4. prints the plan (+ added, ~ changed, - removed) and writes FILE with
 *     one etcd transaction that compares the key's mod_revision with the
 *     revision checked (R, else R0): when another operator published in
 *     between, nothing is written.
 *
 * Exit 0 published ("published revision N over R (sent at S.NS)": S.NS
 * the CLOCK_REALTIME of the write, for fleet latency); 1 FILE invalid; 2
 * usage; 3 the document changed since the revision checked (re-check
 * and publish again); 4 etcd unreachable or FILE unreadable.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <getopt.h>
#include "cli.h"
#include "etcd_tool.h"

static const char *prog = "ureg-publish";

static void help(void)
{
	printf("Usage: %s [OPTION]... FILE --etcd=URL[,URL...] --prefix=P\n"
	       "Check the ureg configuration FILE against the fleet's document\n"
	       "<P>config.yaml in etcd, print the plan, and write FILE there with one\n"
	       "etcd transaction that compares the key's mod_revision with the revision\n"
	       "checked (compare-and-swap): two operators cannot overwrite each other.\n"
	       "\n"
	       "Options:\n"
	       CLI_CONFIG_HELP
	       "      --etcd=URL       etcd client URL(s), tried in turn\n"
	       "      --prefix=P       the key prefix (the document is <P>config.yaml)\n"
	       "  -r, --revision=R     publish only over revision R (the one you checked,\n"
	       "                       e.g. printed by ureg-check --etcd); 0: only if\n"
	       "                       there is no document yet\n"
	       "  -q, --quiet          do not print the plan\n"
	       "  -h, --help           display this help and exit\n"
	       "  -V, --version        output version information and exit\n"
	       "\n"
	       "Exit status:\n"
	       "  0  published: \"published revision N over R (sent at S.NS)\"\n"
	       "  1  FILE is invalid (every error printed), or a --plugin cannot be loaded\n"
	       "  2  usage error\n"
	       "  3  the document changed since the revision checked: nothing written\n"
	       "  4  etcd unreachable, or FILE unreadable\n"
	       "\n"
	       "Example:\n"
	       "  %s --demo new.yaml --etcd http://127.0.0.1:2379 --prefix /ureg/fleet-a/\n",
	       prog, prog);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			char *b = realloc(buf, cap = (cap + 4096) * 2);
			if (!b) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = b;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
	} while (r);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_CONFIG_LONG_OPTIONS,
		{ "revision", required_argument, NULL, 'r' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 }
	};
	struct cli_config c = { 0 };
	const char *file = NULL, *etcd, *prefix;
	bool have_rev = false, quiet = false;
	unsigned long long want = 0;
	char name[512];
	uint64_t rev = 0, now = 0;
	int o, rc;

	while ((o = getopt_long(argc, argv, "p:t:r:qhV", opts, NULL)) != -1) {
		int shared = cli_config_option(prog, &c, o, optarg);
		if (shared < 0)
			return 1;
		if (shared)
			continue;
		switch (o) {
		case 'r': {
			long v;
			if (cli_long(prog, "--revision", optarg, 0, 0x7fffffffffffffffL, &v)) {
				cli_config_free(&c);
				return CLI_USAGE;
			}
			want = (unsigned long long)v;
			have_rev = true;
			break;
		}
		case 'q': quiet = true; break;
		default:
			return cli_config_last_option(prog, &c, o, help);
		}
	}
	if (argc - optind != 1 || !c.etcd || !c.prefix) {
		fprintf(stderr, "%s: one FILE, --etcd and --prefix are needed\n", prog);
		cli_config_free(&c);
		return cli_usage_error(prog);
	}
	file = argv[optind];
	etcd = c.etcd;
	prefix = c.prefix;

	size_t len;
	char *text = slurp(file, &len);
	if (!text) {
		fprintf(stderr, "ureg-publish: cannot read %s: %s\n", file, strerror(errno));
		cli_config_free(&c);
		return 4;
	}
	ureg_config *cfg;
	if (cli_config_new(prog, &c, &cfg)) {
		cli_config_free(&c);
		free(text);
		return 1;
	}
	struct ureg_config_errors errs = { 0 };
	struct ureg_config_plan plan = { 0 };
	int exit_code = 0;

	/* 1. what is in etcd now (a bad document there is replaced: its
	 * errors are shown, the plan is then against an empty config) */
	rc = etcd_tool_load(cfg, etcd, prefix, 0, NULL, &errs, &rev, name, sizeof(name));
	if (rc && rc != -ENOENT && rc != -EBADMSG) {
		fprintf(stderr, "ureg-publish: %s\n", ureg_last_error());
		exit_code = 4;
		goto out;
	}
	if (rc == -EBADMSG) {
		fprintf(stderr, "ureg-publish: note: the document in etcd is invalid:\n");
		ureg_config_errors_print(&errs, stderr);
	}
	ureg_config_errors_free(&errs);
	/* 2. the operator checked another revision */
	if (have_rev && rev != want) {
		fprintf(stderr, "ureg-publish: %s%s changed since revision %llu (now at %llu): "
			"nothing written; check again and publish with --revision %llu\n",
			prefix, UREG_CONFIG_ETCD_DOC, want, (unsigned long long)rev,
			(unsigned long long)rev);
		exit_code = 3;
		goto out;
	}
	/* 3. check FILE as a reload over etcd's document */
	rc = ureg_config_reload_buffer(cfg, text, len, file, UREG_CONFIG_DRY_RUN, &plan, &errs);
	if (rc) {
		if (!ureg_config_errors_print(&errs, stdout))
			printf("%s: error: %s\n", file, ureg_last_error());
		if (rc == -EBADMSG)
			cli_hint(prog, &c);
		fprintf(stderr, "ureg-publish: %s is invalid: nothing written\n", file);
		exit_code = 1;
		goto out;
	}
	if (!quiet) {
		printf("plan %s -> %s:\n", name, file);
		ureg_config_plan_print(&plan, stdout);
	}
	/* 4. compare-and-swap on the revision checked */
	struct timespec sent;
	clock_gettime(CLOCK_REALTIME, &sent);
	rc = ureg_config_etcd_put(etcd, prefix, text, len, have_rev ? want : rev, &now,
				  ETCD_TOOL_TIMEOUT_MS);
	if (rc == -ESTALE) {
		fprintf(stderr, "ureg-publish: %s; another operator published after revision "
			"%llu was checked; check again\n", ureg_last_error(),
			(unsigned long long)(have_rev ? want : rev));
		exit_code = 3;
	} else if (rc) {
		fprintf(stderr, "ureg-publish: %s\n", ureg_last_error());
		exit_code = 4;
	} else {
		printf("published revision %llu over %llu (sent at %lld.%09ld)\n",
		       (unsigned long long)now, (unsigned long long)(have_rev ? want : rev),
		       (long long)sent.tv_sec, sent.tv_nsec);
	}
out:
	ureg_config_errors_free(&errs);
	ureg_config_plan_free(&plan);
	cli_config_done(&c, cfg);
	cli_config_free(&c);
	free(text);
	return exit_code;
}
