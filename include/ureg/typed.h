/* SPDX-License-Identifier: MIT */
/*
 * UREG_DECLARE_TYPED(prefix, T) - the C form of UniversalRegistry[T].
 *
 * Declares an incomplete type `prefix_registry` and static inline wrappers
 * for every registry call, with T* in place of void*, so that handing a
 * `struct tool *` to an agent registry is a compile-time error (compile
 * with -Werror=incompatible-pointer-types, as ureg's own build does).
 * The wrappers are one cast each: same contracts, same costs as the
 * generic calls they wrap (see ureg.h for who may call what).
 *
 *   struct agent;
 *   UREG_DECLARE_TYPED(agent_reg, struct agent)
 *   agent_reg_registry *r;  agent_reg_new(&agent_type, "agents", &r);
 *   struct agent *a;        agent_reg_lookup(r, "planner", &a);
 *   static ureg_key planner = UREG_KEY_CACHED_INIT("planner");
 *                           agent_reg_lookup_key(r, &planner, &a);
 */
#ifndef UREG_TYPED_H
#define UREG_TYPED_H

#include <ureg/ureg.h>

#define UREG_DECLARE_TYPED(prefix, T)                                          \
	typedef struct prefix##_registry prefix##_registry;                    \
	static inline ureg_registry *prefix##_base(prefix##_registry *r)       \
	{ return (ureg_registry *)(void *)r; }                                 \
	static inline int prefix##_new(const ureg_type *type, const char *name, \
				       prefix##_registry **out)                \
	{ return ureg_registry_new(type, name, (ureg_registry **)(void *)out); } \
	static inline void prefix##_destroy(prefix##_registry *r)             \
	{ ureg_registry_destroy(prefix##_base(r)); }                           \
	static inline int prefix##_register(prefix##_registry *r,             \
					    const char *key, T *item)          \
	{ return ureg_register(prefix##_base(r), key, (void *)item); }         \
	static inline int prefix##_register_factory(prefix##_registry *r,     \
			const char *key, const struct ureg_factory *f)         \
	{ return ureg_register_factory(prefix##_base(r), key, f); }            \
	static inline int prefix##_replace(prefix##_registry *r,              \
					   const char *key, T *item)           \
	{ return ureg_replace(prefix##_base(r), key, (void *)item); }          \
	static inline int prefix##_unregister(prefix##_registry *r,           \
					      const char *key, unsigned what)  \
	{ return ureg_unregister(prefix##_base(r), key, what); }               \
	static inline int prefix##_lookup(prefix##_registry *r,               \
					  const char *key, T **out)            \
	{ void *p = NULL; int rc = ureg_lookup(prefix##_base(r), key, &p);     \
	  if (rc == 0) { *out = (T *)p; } return rc; }                             \
	static inline int prefix##_get(prefix##_registry *r, const char *key, \
				       ureg_ctx *ctx, T **out)                 \
	{ void *p = NULL; int rc = ureg_get(prefix##_base(r), key, ctx, &p);   \
	  if (rc == 0) { *out = (T *)p; } return rc; }                             \
	static inline int prefix##_lookup_key(prefix##_registry *r,           \
					      ureg_key *k, T **out)            \
	{ void *p = NULL; int rc = ureg_lookup_key(prefix##_base(r), k, &p);   \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_get_key(prefix##_registry *r, ureg_key *k, \
					   ureg_ctx *ctx, T **out)             \
	{ void *p = NULL; int rc = ureg_get_key(prefix##_base(r), k, ctx, &p); \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_create_instance(prefix##_registry *r,      \
			const char *key, ureg_ctx *ctx, T **out)               \
	{ void *p = NULL;                                                      \
	  int rc = ureg_create_instance(prefix##_base(r), key, ctx, &p);       \
	  if (rc == 0) { *out = (T *)p; } return rc; }                             \
	static inline int prefix##_acquire(prefix##_registry *r,              \
					   const char *key, ureg_ref **ref)    \
	{ return ureg_acquire(prefix##_base(r), key, ref); }                   \
	static inline T *prefix##_ref_item(const ureg_ref *ref)               \
	{ return (T *)ureg_ref_item(ref); }                                    \
	static inline size_t prefix##_count(prefix##_registry *r)             \
	{ return ureg_count(prefix##_base(r)); }                               \
	static inline int prefix##_keys(prefix##_registry *r, char ***keys,   \
					size_t *n)                             \
	{ return ureg_keys(prefix##_base(r), keys, n); }

#endif /* UREG_TYPED_H */
