/* SPDX-License-Identifier: MIT */
/*
 * For test_hash: prints the hash libureg gives each argument (the one a
 * key handle keeps), one per line in hex, as this process's seed makes
 * it.  Exit 2 when an argument is not a valid key.
 */
#include <inttypes.h>
#include <stdio.h>

#include <ureg/ureg.h>

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		ureg_key k;

		if (ureg_key_init(&k, argv[i]) != 0)
			return 2;
		printf("%016" PRIx64 "\n", k.hash); /* a private field, read for the test */
	}
	return 0;
}
