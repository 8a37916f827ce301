/* SPDX-License-Identifier: MIT */
/*
 * The smallest useful ureg program: one registry of named singletons,
 * registered once at start-up, looked up without a lock on every request.
 * Build: cc minimal.c $(pkg-config --cflags --libs ureg)
 */
#include <stdio.h>
#include <ureg/ureg.h>

struct codec { const char *mime; int level; };

int main(void)
{
	static const ureg_type codec_type = { .name = "codec" };
	static struct codec gzip = { "application/gzip", 6 }, zstd = { "application/zstd", 3 };
	ureg_registry *codecs;
	void *found = NULL;
	int rc;

	if ((rc = ureg_registry_new(&codec_type, "codecs", &codecs)) ||
	    (rc = ureg_register(codecs, "gzip", &gzip)) ||
	    (rc = ureg_register(codecs, "zstd", &zstd))) {
		fprintf(stderr, "minimal: %s: %s\n", ureg_strerror(rc), ureg_last_error());
		return 1;
	}
	/* a duplicate is refused and changes nothing */
	rc = ureg_register(codecs, "gzip", &zstd);
	printf("register gzip again: %s (%s)\n", ureg_strerror(rc), ureg_last_error());

	ureg_read_lock(); /* a reader: never blocks, writes no shared memory */
	rc = ureg_lookup(codecs, "zstd", &found);
	if (rc == 0)
		printf("zstd -> %s, level %d\n", ((struct codec *)found)->mime,
		       ((struct codec *)found)->level);
	rc = ureg_lookup(codecs, "brotli", &found);
	printf("brotli -> %s\n", ureg_strerror(rc));
	ureg_read_unlock(); /* pointers found above are valid until here */

	ureg_registry_destroy(codecs);
	return 0;
}
