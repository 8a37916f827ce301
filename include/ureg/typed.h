/* SPDX-License-Identifier: MIT */
/*
 * UREG_DECLARE_TYPED(prefix, T) - the C form of UniversalRegistry[T].
 *
 * Declares an incomplete type `prefix_registry` and static inline wrappers
 * for every registry call, with T* in place of void*, so that handing a
 * `struct tool *` to an agent registry is a compile-time error (compile
 * with -Werror=incompatible-pointer-types, as ureg's own build does).
 * The wrappers are one cast each: same contracts, same costs as the
 * generic calls they wrap (see ureg.h for who may call what, what each
 * call may block on and how long a returned pointer stays valid).
 *
 *   struct agent;
 *   UREG_DECLARE_TYPED(agent_reg, struct agent)
 *   agent_reg_registry *r;  agent_reg_new(&agent_type, "agents", &r);
 *   struct agent *a;        agent_reg_lookup(r, "planner", &a);
 *   static ureg_key planner = UREG_KEY_CACHED_INIT("planner");
 *                           agent_reg_lookup_key(r, &planner, &a);
 *
 * Besides the registry, a declaration gives:
 *  - prefix_item:         T itself (a typedef);
 *  - prefix_factory_fn:   the typed factory signature,
 *                         int (*)(ureg_ctx *ctx, void *arg, T **out);
 *  - prefix_factory:      a typed factory handle, made by UREG_FACTORY
 *                         below; a factory of another registry type does
 *                         not convert to it;
 *  - prefix_batch:        a batch of this registry (prefix_batch_new/put/
 *                         add/commit/abort), T* items only.
 *
 * A typed factory, defined in one go (its parameters named by you):
 *
 *   UREG_FACTORY(agent_reg, make_agent, ctx, arg, out)
 *   {
 *           *out = ureg_ctx_calloc(ctx, 1, sizeof(**out)); // struct agent **
 *           return *out ? 0 : -ENOMEM;
 *   }
 *   agent_reg_register_factory_of(r, "planner", make_agent_factory,
 *                                 UREG_SCOPE_CONTEXT, NULL);
 *
 * UREG_FACTORY(prefix, name, ctx, arg, out) defines the static function
 * `name` with the typed signature (the body follows the macro), a generic
 * adapter for it, and `name_factory`, the prefix_factory that the
 * *_register_factory_of / *_replace_factory_of wrappers take.  The
 * adapter costs one call and stores *out only on success.  For the full
 * set of options (arg_free, instance_destroy, anchor) fill a struct
 * ureg_factory with `.create = name_factory.create` and use
 * prefix_register_factory.
 */
#ifndef UREG_TYPED_H
#define UREG_TYPED_H

#include <ureg/api.h>

#include <ureg/ureg.h>

#define UREG_DECLARE_TYPED(prefix, T)                                          \
	typedef T prefix##_item;                                               \
	typedef struct prefix##_registry prefix##_registry;                    \
	typedef struct prefix##_batch prefix##_batch;                          \
	typedef int (*prefix##_factory_fn)(ureg_ctx *ctx, void *arg, T **out); \
	/* a typed factory: only UREG_FACTORY(prefix, ...) makes one */        \
	typedef struct prefix##_factory { ureg_factory_fn create; }            \
		prefix##_factory;                                              \
	static inline ureg_registry *prefix##_base(prefix##_registry *r)       \
	{ return (ureg_registry *)(void *)r; }                                 \
	static inline int prefix##_new(const ureg_type *type, const char *name, \
				       prefix##_registry **out)                \
	{ return ureg_registry_new(type, name, (ureg_registry **)(void *)out); } \
	static inline void prefix##_destroy(prefix##_registry *r)             \
	{ ureg_registry_destroy(prefix##_base(r)); }                           \
	static inline const char *prefix##_name(prefix##_registry *r)         \
	{ return ureg_registry_name(prefix##_base(r)); }                       \
	static inline uint64_t prefix##_generation(prefix##_registry *r)      \
	{ return ureg_generation(prefix##_base(r)); }                          \
	static inline int prefix##_register(prefix##_registry *r,             \
					    const char *key, T *item)          \
	{ return ureg_register(prefix##_base(r), key, (void *)item); }         \
	static inline int prefix##_register_factory(prefix##_registry *r,     \
			const char *key, const struct ureg_factory *f)         \
	{ return ureg_register_factory(prefix##_base(r), key, f); }            \
	static inline int prefix##_register_factory_of(prefix##_registry *r,  \
			const char *key, prefix##_factory tf,                  \
			enum ureg_scope scope, void *arg)                      \
	{ struct ureg_factory f = { .create = tf.create, .scope = scope,       \
				    .arg = arg };                              \
	  return ureg_register_factory(prefix##_base(r), key, &f); }           \
	static inline int prefix##_replace(prefix##_registry *r,              \
					   const char *key, T *item)           \
	{ return ureg_replace(prefix##_base(r), key, (void *)item); }          \
	static inline int prefix##_replace_factory(prefix##_registry *r,      \
			const char *key, const struct ureg_factory *f)         \
	{ return ureg_replace_factory(prefix##_base(r), key, f); }             \
	static inline int prefix##_replace_factory_of(prefix##_registry *r,   \
			const char *key, prefix##_factory tf,                  \
			enum ureg_scope scope, void *arg)                      \
	{ struct ureg_factory f = { .create = tf.create, .scope = scope,       \
				    .arg = arg };                              \
	  return ureg_replace_factory(prefix##_base(r), key, &f); }            \
	static inline int prefix##_unregister(prefix##_registry *r,           \
					      const char *key, unsigned what)  \
	{ return ureg_unregister(prefix##_base(r), key, what); }               \
	static inline int prefix##_register_ranked(prefix##_registry *r,      \
					const char *key, T *item, int rank)   \
	{ return ureg_register_ranked(prefix##_base(r), key, (void *)item,     \
				      rank); }                                 \
	static inline int prefix##_register_factory_ranked(                   \
			prefix##_registry *r, const char *key,                 \
			const struct ureg_factory *f, int rank)                \
	{ return ureg_register_factory_ranked(prefix##_base(r), key, f, rank); } \
	static inline int prefix##_unregister_ranked(prefix##_registry *r,    \
				const char *key, unsigned what, int rank)      \
	{ return ureg_unregister_ranked(prefix##_base(r), key, what, rank); }  \
	static inline int prefix##_providers(prefix##_registry *r,            \
			const char *key, struct ureg_provider_info *out,       \
			size_t cap)                                            \
	{ return ureg_providers(prefix##_base(r), key, out, cap); }            \
	static inline int prefix##_lookup(prefix##_registry *r,               \
					  const char *key, T **out)            \
	{ void *p = NULL; int rc = ureg_lookup(prefix##_base(r), key, &p);     \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_get(prefix##_registry *r, const char *key, \
				       ureg_ctx *ctx, T **out)                 \
	{ void *p = NULL; int rc = ureg_get(prefix##_base(r), key, ctx, &p);   \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_contains(prefix##_registry *r,             \
					    const char *key)                   \
	{ return ureg_contains(prefix##_base(r), key); }                       \
	static inline int prefix##_entry_info(prefix##_registry *r,           \
			const char *key, struct ureg_entry_info *info)         \
	{ return ureg_entry_info(prefix##_base(r), key, info); }               \
	static inline int prefix##_lookup_key(prefix##_registry *r,           \
					      ureg_key *k, T **out)            \
	{ void *p = NULL; int rc = ureg_lookup_key(prefix##_base(r), k, &p);   \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_get_key(prefix##_registry *r, ureg_key *k, \
					   ureg_ctx *ctx, T **out)             \
	{ void *p = NULL; int rc = ureg_get_key(prefix##_base(r), k, ctx, &p); \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_contains_key(prefix##_registry *r,         \
						ureg_key *k)                   \
	{ return ureg_contains_key(prefix##_base(r), k); }                     \
	static inline int prefix##_create_instance(prefix##_registry *r,      \
			const char *key, ureg_ctx *ctx, T **out)               \
	{ void *p = NULL;                                                      \
	  int rc = ureg_create_instance(prefix##_base(r), key, ctx, &p);       \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_create_instance_key(prefix##_registry *r,  \
			ureg_key *k, ureg_ctx *ctx, T **out)                   \
	{ void *p = NULL;                                                      \
	  int rc = ureg_create_instance_key(prefix##_base(r), k, ctx, &p);     \
	  if (rc == 0) { *out = (T *)p; } return rc; }                         \
	static inline int prefix##_acquire(prefix##_registry *r,              \
					   const char *key, ureg_ref **ref)    \
	{ return ureg_acquire(prefix##_base(r), key, ref); }                   \
	static inline int prefix##_acquire_key(prefix##_registry *r,          \
					       ureg_key *k, ureg_ref **ref)    \
	{ return ureg_acquire_key(prefix##_base(r), k, ref); }                 \
	static inline T *prefix##_ref_item(const ureg_ref *ref)               \
	{ return (T *)ureg_ref_item(ref); }                                    \
	static inline size_t prefix##_count(prefix##_registry *r)             \
	{ return ureg_count(prefix##_base(r)); }                               \
	static inline int prefix##_keys(prefix##_registry *r, char ***keys,   \
					size_t *n)                             \
	{ return ureg_keys(prefix##_base(r), keys, n); }                       \
	static inline ureg_batch *prefix##_batch_base(prefix##_batch *b)      \
	{ return (ureg_batch *)(void *)b; }                                    \
	static inline int prefix##_batch_new(prefix##_registry *r,            \
					     prefix##_batch **out)             \
	{ return ureg_batch_new(prefix##_base(r), (ureg_batch **)(void *)out); } \
	static inline int prefix##_batch_put(prefix##_batch *b,               \
			const char *key, T *item, const struct ureg_factory *f, \
			const struct ureg_source *src)                         \
	{ return ureg_batch_put(prefix##_batch_base(b), key, (void *)item, f, src); } \
	static inline int prefix##_batch_add(prefix##_batch *b,               \
			const char *key, T *item, const struct ureg_factory *f, \
			int rank, const struct ureg_source *src)               \
	{ return ureg_batch_add(prefix##_batch_base(b), key, (void *)item, f,  \
				rank, src); }                                  \
	static inline int prefix##_batch_commit(prefix##_batch *b,            \
						uint64_t generation)           \
	{ return ureg_batch_commit(prefix##_batch_base(b), generation); }      \
	static inline void prefix##_batch_abort(prefix##_batch *b)            \
	{ ureg_batch_abort(prefix##_batch_base(b)); }                          \
	static inline int prefix##_drain(prefix##_registry *r, const char *key, \
			unsigned what, unsigned timeout_ms,                    \
			struct ureg_drain_report *report)                      \
	{ return ureg_drain(prefix##_base(r), key, what, timeout_ms, report); }

/*
 * UREG_FACTORY(prefix, name, ctx, arg, out) - define a typed factory of
 * registry type @prefix (see the top of this file).  The body that follows
 * the macro is the function
 *	static int name(ureg_ctx *ctx, void *arg, prefix_item **out)
 * with the contract of ureg_factory_fn (ureg.h).  Also defines
 * `name_factory`, the handle the typed register wrappers take.  At file
 * scope only.
 */
#define UREG_FACTORY(prefix, name, ctx, arg, out)                              \
	static int name(ureg_ctx *ctx, void *arg, prefix##_item **out);        \
	static int name##__ureg_adapter(ureg_ctx *c_, void *a_, void **o_)     \
	{ prefix##_item *p_ = NULL; int rc_ = name(c_, a_, &p_);               \
	  if (rc_ == 0) { *o_ = (void *)p_; } return rc_; }                    \
	static const prefix##_factory name##_factory                           \
		__attribute__((unused)) = { name##__ureg_adapter };            \
	static int name(ureg_ctx *ctx, void *arg, prefix##_item **out)

#endif /* UREG_TYPED_H */
