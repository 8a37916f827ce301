/* SPDX-License-Identifier: MIT */
/*
 * etcd_stop_time URL [RUNS] - how long ureg_config_etcd_stop takes when the
 * source's watch is established and idle (blocked waiting for a change):
 * the stop wakes curl_multi_poll (curl_multi_wakeup) instead of waiting
 * for its 1 s poll timeout.  Prints one line per run and the median and
 * max.  The document <"/ureg-stop-time/">config.yaml must exist (tools/fleet.py
 * puts it).  A measurement for tools/dev fleet, not a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ureg/config_etcd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int runs = argc > 2 ? atoi(argv[2]) : 5;
	double v[100];

	if (argc < 2 || runs < 1 || runs > 100) {
		fprintf(stderr, "usage: etcd_stop_time URL [RUNS (1-100)]\n");
		return 2;
	}
	for (int i = 0; i < runs; i++) {
		struct ureg_config_etcd_opts o = { .endpoints = argv[1],
						   .prefix = "/ureg-stop-time/", .quiet = 1 };
		struct ureg_config_etcd_stats st = { 0 };
		struct timespec idle = { 0, 200 * 1000000 };
		ureg_config *cfg;

		if (ureg_config_new(&cfg) || ureg_config_etcd_start(cfg, &o) ||
		    ureg_config_etcd_wait(cfg, 1, 10000)) {
			fprintf(stderr, "etcd_stop_time: %s\n", ureg_last_error());
			return 1;
		}
		while (!ureg_config_etcd_stats(cfg, &st) && !st.connected)
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		nanosleep(&idle, NULL); /* the watch now waits for a change */
		double t0 = now_ms();
		ureg_config_etcd_stop(cfg);
		v[i] = now_ms() - t0;
		ureg_config_destroy(cfg);
	}
	qsort(v, (size_t)runs, sizeof(v[0]), cmp);
	printf("stop of an idle watch, %d runs: median %.2f ms, max %.2f ms\n", runs,
	       v[runs / 2], v[runs - 1]);
	return 0;
}
