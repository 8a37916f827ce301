/* SPDX-License-Identifier: MIT */
/*
 * The string read path (lib/core/key_int.h, lookup.c): a lookup measures
 * and hashes its key without validating it, and validates only when it
 * finds nothing, to tell a bad key (-EINVAL) from an absent one (-ENOENT);
 * the usual key is measured with one 16-byte load that stays inside the
 * key's page.  The spec: every length and every alignment is found, a key
 * that ends at the last byte of a page before an unmapped one is read
 * without a fault, and a near miss (a prefix, one byte more, one byte
 * different) is never found.
 */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core_test.h"

static ureg_registry *new_reg(void)
{
	ureg_registry *r = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "lookup", &r), 0);
	return r;
}

/* "k" followed by @len - 1 characters from the printable range */
static void make_key(char *buf, size_t len, unsigned salt)
{
	buf[0] = 'k';
	for (size_t i = 1; i < len; i++)
		buf[i] = (char)(0x21 + (i * 7 + salt) % (0x7e - 0x21 + 1));
	buf[len] = '\0';
}

Test(lookup, keys_of_every_length_are_found_at_every_alignment)
{
	ureg_registry *r = new_reg();
	char keys[UREG_KEY_MAX + 1][UREG_KEY_MAX + 1];
	char buf[UREG_KEY_MAX + 32];

	for (size_t len = 1; len <= UREG_KEY_MAX; len++) {
		make_key(keys[len], len, (unsigned)len);
		cr_assert_eq(ureg_register(r, keys[len], item_new((int)len)), 0, "len %zu", len);
	}
	for (size_t len = 1; len <= UREG_KEY_MAX; len++) {
		for (size_t off = 0; off < 16; off++) {
			void *p = NULL;

			memcpy(buf + off, keys[len], len + 1);
			cr_assert_eq(lookup_rc(r, buf + off, &p), 0, "len %zu off %zu", len, off);
			cr_assert_eq(((struct item *)p)->id, (int)len);
		}
	}
	ureg_registry_destroy(r);
}

Test(lookup, a_near_miss_is_not_found_and_a_bad_key_is_still_einval)
{
	ureg_registry *r = new_reg();
	const char *key = "svc.tool.000123";
	char longer[UREG_KEY_MAX + 2];
	void *p = NULL;

	cr_assert_eq(ureg_register(r, key, item_new(1)), 0);
	cr_assert_eq(lookup_rc(r, "svc.tool.00012", &p), -ENOENT);   /* prefix */
	cr_assert_eq(lookup_rc(r, "svc.tool.0001234", &p), -ENOENT); /* one more */
	cr_assert_eq(lookup_rc(r, "svc.tool.000124", &p), -ENOENT);  /* last byte */
	cr_assert_eq(lookup_rc(r, "tvc.tool.000123", &p), -ENOENT);  /* first byte */
	cr_assert_eq(lookup_rc(r, "svc.tool 000123", &p), -EINVAL);  /* space */
	cr_assert_eq(lookup_rc(r, "svc.tool.000123\x7f", &p), -EINVAL);
	cr_assert_eq(lookup_rc(r, "svc.tool.0001234567\x01", &p), -EINVAL); /* past 16 */
	cr_assert_eq(lookup_rc(r, "", &p), -EINVAL);
	cr_assert_eq(lookup_rc(r, NULL, &p), -EINVAL);
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	cr_assert_eq(lookup_rc(r, longer, &p), -EINVAL);
	cr_assert_neq(strstr(ureg_last_error(), "longer"), NULL, "%s", ureg_last_error());
	ureg_read_lock();
	cr_assert_eq(ureg_get(r, "no.such.key", NULL, &p), -ENOENT);
	cr_assert_eq(ureg_get(r, "bad key", NULL, &p), -EINVAL);
	ureg_read_unlock();
	ureg_registry_destroy(r);
}

Test(lookup, a_key_at_the_end_of_a_page_before_an_unmapped_one_is_read_without_a_fault)
{
	long page = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ureg_registry *r = new_reg();

	cr_assert_neq(map, MAP_FAILED);
	cr_assert_eq(mprotect(map + page, (size_t)page, PROT_NONE), 0);
	for (size_t len = 1; len <= 40; len++) {
		char *at_end = map + page - (len + 1);  /* NUL is the page's last byte */
		char *at_start = map;                   /* page-aligned */
		void *p = NULL;

		make_key(at_end, len, 3);
		cr_assert_eq(ureg_register(r, at_end, item_new((int)len)), 0, "len %zu", len);
		cr_assert_eq(lookup_rc(r, at_end, &p), 0, "len %zu", len);
		cr_assert_eq(((struct item *)p)->id, (int)len);
		memcpy(at_start, at_end, len + 1);
		cr_assert_eq(lookup_rc(r, at_start, &p), 0, "len %zu", len);
		at_end[0] = ' '; /* now invalid: found nowhere, and refused */
		cr_assert_eq(lookup_rc(r, at_end, &p), -EINVAL, "len %zu", len);
	}
	ureg_registry_destroy(r);
	munmap(map, (size_t)page * 2);
}
