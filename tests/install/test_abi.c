/* SPDX-License-Identifier: MIT */
/*
 * The ABI policy of <ureg/api.h>, as behaviour:
 *  - every public struct keeps its size (growing one is a deliberate ABI
 *    decision: change the number here and say so in CHANGELOG.md);
 *  - a caller-filled struct with a nonzero reserved field is refused with
 *    -EINVAL and changes nothing;
 *  - a library-filled struct comes back with its reserved fields zeroed.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <ureg/ureg.h>
#include <ureg/ctx.h>
#include <ureg/events.h>
#include <ureg/config.h>
#include <ureg/config_etcd.h>
#include <ureg/registries.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define S(t, n) _Static_assert(sizeof(t) == (n), #t " changed size: an ABI break")
S(struct ureg_type, 80);
S(struct ureg_factory, 80);
S(struct ureg_anchor, 32);
S(struct ureg_source, 40);
S(struct ureg_key, 48);
S(struct ureg_drain_holder, 96);
S(struct ureg_drain_report, 840);
S(struct ureg_entry_info, 80);
S(struct ureg_provider_info, 48);
S(struct ureg_ctx_stats, 96);
S(struct ureg_arena_stats, 56);
S(struct ureg_ctx_entry, 48);
S(struct ureg_event, 48);
S(struct ureg_param, 16);
S(struct ureg_params, 16);
S(struct ureg_provider, 56);
S(struct ureg_config_error, 40);
S(struct ureg_config_errors, 32);
S(struct ureg_plan_item, 40);
S(struct ureg_config_plan, 32);
S(struct ureg_config_etcd_opts, 80);
S(struct ureg_config_etcd_stats, 368);
S(struct ureg_tool, 32);
S(struct ureg_strategy, 32);
S(struct ureg_service, 32);
S(struct ureg_agent_ops, 48);
S(struct ureg_agent, 56);
S(struct ureg_agent_event, 56);
S(struct ureg_bridge, 32);
#endif

static int make(ureg_ctx *ctx, void *arg, void **out)
{
	(void)arg;
	*out = ureg_ctx_alloc(ctx, 8);
	return *out ? 0 : -ENOMEM;
}

Test(abi, a_type_with_a_nonzero_reserved_field_is_refused)
{
	ureg_type t = { .name = "t" };
	ureg_registry *reg = NULL;

	t.reserved[3] = &t;
	cr_assert_eq(ureg_registry_new(&t, "abi_type", &reg), -EINVAL);
	cr_assert_null(reg);
	cr_assert(strstr(ureg_last_error(), "reserved"), "%s", ureg_last_error());
	t.reserved[3] = NULL;
	cr_assert_eq(ureg_registry_new(&t, "abi_type", &reg), 0);
	ureg_registry_destroy(reg);
}

Test(abi, a_factory_or_source_with_a_nonzero_reserved_field_is_refused_and_changes_nothing)
{
	static const ureg_type t = { .name = "t" };
	struct ureg_factory f = { .create = make };
	struct ureg_source src = { .provider = "p" };
	ureg_registry *reg;
	ureg_batch *b;

	cr_assert_eq(ureg_registry_new(&t, "abi_factory", &reg), 0);
	f.reserved[0] = &f;
	cr_assert_eq(ureg_register_factory(reg, "k", &f), -EINVAL);
	cr_assert_eq(ureg_contains(reg, "k"), 0);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "k", NULL, &f, NULL), -EINVAL);
	f.reserved[0] = NULL;
	src.reserved[1] = &src;
	cr_assert_eq(ureg_batch_put(b, "k", NULL, &f, &src), -EINVAL);
	src.reserved[1] = NULL;
	cr_assert_eq(ureg_batch_put(b, "k", NULL, &f, &src), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(ureg_contains(reg, "k"), 1);
	ureg_registry_destroy(reg);
}

static void emit(const struct ureg_agent_event *ev, void *arg)
{
	(void)ev; (void)arg;
}

Test(abi, a_bridge_with_a_nonzero_reserved_field_is_refused)
{
	struct ureg_bridge br = { .emit = emit };
	ureg_agent_reg_registry *agents;

	cr_assert_eq(ureg_agent_registry_new("abi_agents", &agents), 0);
	br.reserved[1] = &br;
	cr_assert_eq(ureg_agent_set_bridge(agents, &br), -EINVAL);
	br.reserved[1] = NULL;
	cr_assert_eq(ureg_agent_set_bridge(agents, &br), 0);
	cr_assert_eq(ureg_agent_set_bridge(agents, NULL), 0);
	ureg_agent_registry_destroy(agents);
}

static int prov_create(ureg_ctx *ctx, const struct ureg_params *p, void *arg, void **out)
{
	(void)ctx; (void)p; (void)arg;
	*out = NULL;
	return -ENOENT;
}

Test(abi, a_provider_with_a_nonzero_reserved_field_is_refused)
{
	struct ureg_provider p = { .create = prov_create };
	ureg_config *cfg;

	cr_assert_eq(ureg_config_new(&cfg), 0);
	p.reserved[2] = &p;
	cr_assert_eq(ureg_config_provider_register(cfg, "p", &p), -EINVAL);
	p.reserved[2] = NULL;
	cr_assert_eq(ureg_config_provider_register(cfg, "p", &p), 0);
	ureg_config_destroy(cfg);
}

static bool zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

Test(abi, library_filled_structs_come_back_with_reserved_fields_zeroed)
{
	static const ureg_type t = { .name = "t" };
	static int item;
	struct ureg_ctx_stats st;
	struct ureg_arena_stats as;
	struct ureg_entry_info info;
	struct ureg_provider_info pi[2];
	ureg_registry *reg;
	ureg_ctx *ctx;

	cr_assert_eq(ureg_registry_new(&t, "abi_info", &reg), 0);
	cr_assert_eq(ureg_register(reg, "k", &item), 0);
	cr_assert_eq(ureg_ctx_new("abi", 0, &ctx), 0);
	memset(&st, 0xa5, sizeof(st));
	memset(&as, 0xa5, sizeof(as));
	memset(&info, 0xa5, sizeof(info));
	memset(pi, 0xa5, sizeof(pi));
	cr_assert_eq(ureg_ctx_stats(ctx, &st), 0);
	cr_assert_eq(ureg_arena_stats(&as), 0);
	ureg_read_lock(); /* entry_info's strings live until the unlock */
	cr_assert_eq(ureg_entry_info(reg, "k", &info), 0, "%s", ureg_last_error());
	cr_assert_geq(ureg_providers(reg, "k", pi, 2), 1, "%s", ureg_last_error());
	ureg_read_unlock();
	cr_assert(zero(st.reserved, sizeof(st.reserved)));
	cr_assert(zero(as.reserved, sizeof(as.reserved)));
	cr_assert(zero(info.reserved, sizeof(info.reserved)));
	cr_assert(zero(pi[0].reserved, sizeof(pi[0].reserved)));
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}
