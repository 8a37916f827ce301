/* SPDX-License-Identifier: MIT */
/*
 * Key validation and hashing, done once per call.  A key is 1..UREG_KEY_MAX
 * bytes of printable ASCII without space (0x21..0x7e); the single pass that
 * finds its length also checks every byte, then XXH3 hashes it.
 */
#include <xxhash.h>
#include "internal.h"

int ureg__key_prepare(const char *key, struct ureg_key *k)
{
	size_t i;

	if (UREG_UNLIKELY(!key))
		return ureg__err(-EINVAL, "key is NULL");
	for (i = 0; i <= UREG_KEY_MAX; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c == '\0')
			break;
		if (UREG_UNLIKELY((unsigned char)(c - 0x21) > 0x7e - 0x21))
			return ureg__err(-EINVAL,
					 "key byte %zu is 0x%02x: keys are "
					 "printable ASCII without space", i, c);
	}
	if (UREG_UNLIKELY(i == 0))
		return ureg__err(-EINVAL, "key is empty");
	if (UREG_UNLIKELY(i > UREG_KEY_MAX))
		return ureg__err(-EINVAL, "key longer than %d bytes",
				 UREG_KEY_MAX);
	k->str = key;
	k->len = i;
	k->hash = XXH3_64bits(key, i);
	return 0;
}

int ureg__name_check(const char *name, const char *what)
{
	size_t i;

	if (!name)
		return ureg__err(-EINVAL, "%s name is NULL", what);
	for (i = 0; name[i] && i <= UREG_NAME_MAX; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((unsigned char)(c - 0x21) > 0x7e - 0x21)
			return ureg__err(-EINVAL, "%s name has byte 0x%02x",
					 what, c);
	}
	if (i == 0)
		return ureg__err(-EINVAL, "%s name is empty", what);
	if (i > UREG_NAME_MAX)
		return ureg__err(-EINVAL, "%s name longer than %d bytes", what,
				 UREG_NAME_MAX);
	return 0;
}
