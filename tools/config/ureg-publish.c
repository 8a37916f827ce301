/* SPDX-License-Identifier: MIT */
/*
 * ureg-publish [--no-plugins] [--revision R] [--quiet] FILE --etcd URL --prefix P
 *
 * Publishes FILE as the fleet's configuration (<P>config.yaml in etcd),
 * only when it is valid and only over the version it was checked against:
 *
 *  1. reads the document in etcd (revision R0; none: 0);
 *  2. with --revision R (the revision an operator reviewed, e.g. printed
 *     by `ureg-check --etcd`), stops at once when R0 != R;
 *  3. loads etcd's document and checks FILE against it exactly like a
 *     reload (dry run with the demo types and providers): every error is
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
#include "demo.h"
#include "etcd_tool.h"

static int usage(void)
{
	fprintf(stderr, "usage: ureg-publish [--no-plugins] [--revision R] [--quiet] FILE "
			"--etcd URL --prefix P\n");
	return 2;
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
	const char *file = NULL, *etcd = NULL, *prefix = NULL;
	unsigned flags = 0;
	bool have_rev = false, quiet = false;
	unsigned long long want = 0;
	char name[512];
	uint64_t rev = 0, now = 0;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--no-plugins"))
			flags |= UREG_CONFIG_NO_PLUGINS;
		else if (!strcmp(argv[i], "--quiet"))
			quiet = true;
		else if (!strcmp(argv[i], "--etcd") && i + 1 < argc)
			etcd = argv[++i];
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			prefix = argv[++i];
		else if (!strcmp(argv[i], "--revision") && i + 1 < argc) {
			char *end;
			want = strtoull(argv[++i], &end, 10);
			if (*end || !*argv[i])
				return usage();
			have_rev = true;
		} else if (argv[i][0] == '-' || file)
			return usage();
		else
			file = argv[i];
	}
	if (!file || !etcd || !prefix)
		return usage();

	size_t len;
	char *text = slurp(file, &len);
	if (!text) {
		fprintf(stderr, "ureg-publish: cannot read %s: %s\n", file, strerror(errno));
		return 4;
	}
	ureg_config *cfg;
	if (ureg_config_new(&cfg) || demo_register(cfg) || ureg_config_set_flags(cfg, flags)) {
		fprintf(stderr, "ureg-publish: %s\n", ureg_last_error());
		free(text);
		return 4;
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
	ureg_config_destroy(cfg);
	free(text);
	return exit_code;
}
