/* SPDX-License-Identifier: MIT */
/*
 * lib/config/config.c - the loader object: its name tables (types,
 * providers, live registries; each a hash map beside its array), the
 * load and reload entry points that run the pipeline of config_int.h
 * (parse -> schema -> plan -> apply), and the fork handlers.
 */
#include "config_int.h"

/* -------------------------------------------------------- name tables */

bool cfg_provider_reserved_zero(const struct ureg_provider *p)
{
	for (size_t i = 0; i < sizeof(p->reserved) / sizeof(p->reserved[0]); i++)
		if (p->reserved[i])
			return false;
	return true;
}

const ureg_type *cfg_type_find(ureg_config *cfg, const char *name)
{
	uintptr_t i = (uintptr_t)cfg_map_gets(&cfg->type_names, name);
	return i ? cfg->types[i - 1].type : NULL;
}

const struct ureg_provider *cfg_prov_find(ureg_config *cfg, const char *name)
{
	uintptr_t i = (uintptr_t)cfg_map_gets(&cfg->prov_names, name);
	return i ? &cfg->provs[i - 1].p : NULL;
}

struct live_reg *cfg_live_find(ureg_config *cfg, const char *name)
{
	return cfg_map_gets(&cfg->reg_names, name);
}

/* Keep only the plugins the live specs use in the cache. */
static void plugins_prune(ureg_config *cfg)
{
	for (size_t i = 0; i < cfg->nregs; i++) {
		struct rspec *r = cfg->regs[i]->spec;
		for (size_t j = 0; r && j < r->n; j++)
			if (r->e[j].plugin)
				ureg__plugin_mark(r->e[j].plugin);
	}
	ureg__plugin_prune(&cfg->plugins, false);
}

/* -------------------------------------------------------------- reload */

static int reload_text(ureg_config *cfg, const char *text, size_t len,
		       const char *name, unsigned flags,
		       struct ureg_config_plan *plan,
		       struct ureg_config_errors *errs)
{
	struct load L = { .cfg = cfg, .file = name, .out = errs };
	struct spec s = { 0 };
	struct diff d = { 0 };
	int rc = 0;

	const char *slash = strrchr(name, '/');
	if (slash && !(L.dir = cfg_strndup(name, (size_t)(slash - name) ? (size_t)(slash - name) : 1))) {
		cfg_oom_at(&L, 0, 0);
		rc = -ENOMEM;
		goto out;
	}
	cfg_parse_text(&L, text, len, &s);
	if (L.nerr) {
		rc = L.nomem ? -ENOMEM : -EBADMSG;
		goto out;
	}
	/* a dry run without a plan is validation only: no diff */
	if ((flags & UREG_CONFIG_DRY_RUN) && !plan)
		goto out;
	/* the diff, once: the plan is read off it, apply executes it */
	if ((rc = cfg_diff(cfg, &s, &d)) || (plan && (rc = cfg_diff_plan(&d, plan)))) {
		cfg_oom_at(&L, 0, 0);
		goto out;
	}
	if (flags & UREG_CONFIG_DRY_RUN)
		goto out;
	rc = cfg_apply(&L, &s, &d);
	/* an allocation failure anywhere wins over the errors it caused */
	if (rc)
		rc = L.nomem || rc == -ENOMEM ? -ENOMEM : -EBADMSG;
out:
	cfg_diff_free(&d);
	cfg_spec_free(&s);
	plugins_prune(cfg);
	ureg__free(L.dir);
	if (rc)
		ureg_set_error(rc, "config '%s': %zu error(s)%s%s", name, L.nerr,
			  errs && errs->count ? ", first: " : "",
			  errs && errs->count ? errs->v[0].reason : "");
	else
		ureg_set_error(0, NULL);
	return rc;
}

int ureg_config_reload_buffer(ureg_config *cfg, const char *text, size_t len,
			      const char *name, unsigned flags,
			      struct ureg_config_plan *plan,
			      struct ureg_config_errors *errs)
{
	int rc;

	ureg__rcu_ensure();
	if (!cfg || (!text && len) || flags & ~UREG_CONFIG_DRY_RUN)
		return ureg_set_error(-EINVAL, "config reload: NULL config or text, or bad flags");
	if (len > CONFIG_MAX_BYTES)
		return ureg_set_error(-EINVAL, "config reload: larger than %u bytes", CONFIG_MAX_BYTES);
	if (ureg_in_read_section())
		return ureg_set_error(-EPERM, "config reload inside a read section would deadlock");
	if (!name)
		name = "<buffer>";
	pthread_mutex_lock(&cfg->reload_lock);
	rc = reload_text(cfg, text ? text : "", len, name, flags, plan, errs);
	pthread_mutex_unlock(&cfg->reload_lock);
	return rc;
}

int ureg_config_reload(ureg_config *cfg, const char *path, unsigned flags,
		       struct ureg_config_plan *plan,
		       struct ureg_config_errors *errs)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!cfg || !path)
		return ureg_set_error(-EINVAL, "config reload: NULL config or path");
	if ((rc = cfg_read_file(path, &text, &len))) {
		if (errs) {
			struct load L = { .cfg = cfg, .file = path, .out = errs };
			cfg_err_add(&L, 0, 0, "cannot read: %s", strerror(-rc));
		}
		return ureg_set_error(rc, "config '%s': cannot read: %s", path, strerror(-rc));
	}
	rc = ureg_config_reload_buffer(cfg, text, len, path, flags, plan, errs);
	ureg__free(text);
	return rc;
}

int ureg_config_load(ureg_config *cfg, const char *path,
		     struct ureg_config_errors *errs)
{
	return ureg_config_reload(cfg, path, 0, NULL, errs);
}

/* ------------------------------------------------------------ lifecycle */

/*
 * fork(): every config's locks are held across it (lib/fork.c, step 1 of
 * its order: per config watch_lock, reload_lock, lock; then
 * item_recs_lock).  Global by necessity: fork handlers have no argument.
 */
static pthread_mutex_t all_configs_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(all_configs);
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void configs_fork_lock(void)
{
	ureg_config *cfg;

	pthread_mutex_lock(&all_configs_lock);
	cds_list_for_each_entry(cfg, &all_configs, all_node) {
		pthread_mutex_lock(&cfg->watch_lock);
		pthread_mutex_lock(&cfg->reload_lock);
		pthread_mutex_lock(&cfg->lock);
	}
	cfg_items_lock();
}

static void configs_fork_unlock(void)
{
	ureg_config *cfg;

	cfg_items_unlock();
	cds_list_for_each_entry(cfg, &all_configs, all_node) {
		pthread_mutex_unlock(&cfg->lock);
		pthread_mutex_unlock(&cfg->reload_lock);
		pthread_mutex_unlock(&cfg->watch_lock);
	}
	pthread_mutex_unlock(&all_configs_lock);
}

static void configs_fork_register(void)
{
	ureg_atfork_layer(configs_fork_lock, configs_fork_unlock, configs_fork_unlock);
}

int ureg_config_new(ureg_config **out)
{
	if (!out)
		return ureg_set_error(-EINVAL, "config_new: out is NULL");
	pthread_once(&fork_once, configs_fork_register);
	ureg_config *cfg = ureg__calloc(1, sizeof(*cfg));
	if (!cfg)
		return ureg_set_error(-ENOMEM, "config_new: out of memory");
	pthread_mutex_init(&cfg->reload_lock, NULL);
	pthread_mutex_init(&cfg->lock, NULL);
	pthread_mutex_init(&cfg->watch_lock, NULL);
	pthread_mutex_lock(&all_configs_lock);
	cds_list_add_tail(&cfg->all_node, &all_configs);
	pthread_mutex_unlock(&all_configs_lock);
	*out = cfg;
	return 0;
}

int ureg_config_set_flags(ureg_config *cfg, unsigned flags)
{
	if (!cfg || (flags & ~UREG_CONFIG_NO_PLUGINS))
		return ureg_set_error(-EINVAL, "config_set_flags: NULL config or bad flags");
	pthread_mutex_lock(&cfg->reload_lock);
	cfg->flags = flags;
	pthread_mutex_unlock(&cfg->reload_lock);
	return 0;
}

int ureg_config_type_register(ureg_config *cfg, const ureg_type *type)
{
	int rc = 0;

	if (!cfg || !type || !type->name || !cfg_valid_key(type->name))
		return ureg_set_error(-EINVAL, "config_type_register: NULL config, type or bad type name");
	pthread_mutex_lock(&cfg->reload_lock);
	pthread_mutex_lock(&cfg->lock);
	if (cfg_type_find(cfg, type->name)) {
		rc = ureg_set_error(-EEXIST, "config: type '%s' is already registered", type->name);
	} else {
		struct named_type *v = ureg__realloc(cfg->types, (cfg->ntypes + 1) * sizeof(*v));
		char *n = ureg__strdup(type->name);
		if (v)
			cfg->types = v;
		if (!v || !n || cfg_map_puts(&cfg->type_names, n, (void *)(uintptr_t)(cfg->ntypes + 1))) {
			ureg__free(n);
			rc = ureg_set_error(-ENOMEM, "config_type_register: out of memory");
		} else {
			v[cfg->ntypes++] = (struct named_type){ n, type };
		}
	}
	pthread_mutex_unlock(&cfg->lock);
	pthread_mutex_unlock(&cfg->reload_lock);
	return rc;
}

int ureg_config_provider_register(ureg_config *cfg, const char *name,
				  const struct ureg_provider *p)
{
	int rc = 0;

	if (!cfg || !name || !cfg_valid_key(name) || !p || !p->create)
		return ureg_set_error(-EINVAL, "config_provider_register: NULL config/provider/create or bad name");
	if (!cfg_provider_reserved_zero(p))
		return ureg_set_error(-EINVAL, "config_provider_register: provider '%s' has nonzero reserved fields (built for a newer ureg?)", name);
	pthread_mutex_lock(&cfg->reload_lock);
	pthread_mutex_lock(&cfg->lock);
	if (cfg_prov_find(cfg, name)) {
		rc = ureg_set_error(-EEXIST, "config: provider '%s' is already registered", name);
	} else {
		struct named_prov *v = ureg__realloc(cfg->provs, (cfg->nprovs + 1) * sizeof(*v));
		char *n = ureg__strdup(name);
		if (v)
			cfg->provs = v;
		if (!v || !n || cfg_map_puts(&cfg->prov_names, n, (void *)(uintptr_t)(cfg->nprovs + 1))) {
			ureg__free(n);
			rc = ureg_set_error(-ENOMEM, "config_provider_register: out of memory");
		} else {
			v[cfg->nprovs++] = (struct named_prov){ n, *p };
		}
	}
	pthread_mutex_unlock(&cfg->lock);
	pthread_mutex_unlock(&cfg->reload_lock);
	return rc;
}

ureg_registry *ureg_config_registry(ureg_config *cfg, const char *name)
{
	ureg_registry *reg = NULL;

	if (!cfg || !name)
		return NULL;
	pthread_mutex_lock(&cfg->lock);
	struct live_reg *lr = cfg_live_find(cfg, name);
	if (lr)
		reg = lr->reg;
	pthread_mutex_unlock(&cfg->lock);
	return reg;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ureg_config_registry_names(ureg_config *cfg, char ***names, size_t *n)
{
	char **v;
	size_t k = 0;

	if (!cfg || !names)
		return ureg_set_error(-EINVAL, "config_registry_names: NULL config or out");
	pthread_mutex_lock(&cfg->lock);
	v = ureg__calloc(cfg->nregs + 1, sizeof(*v));
	for (; v && k < cfg->nregs; k++)
		if (!(v[k] = ureg__strdup(cfg->regs[k]->name)))
			break;
	pthread_mutex_unlock(&cfg->lock);
	if (!v || (k < cfg->nregs && !v[k])) {
		ureg_keys_free(v);
		return ureg_set_error(-ENOMEM, "config_registry_names: out of memory");
	}
	qsort(v, k, sizeof(*v), name_cmp);
	*names = v;
	if (n)
		*n = k;
	return 0;
}

void ureg_config_destroy(ureg_config *cfg)
{
	if (!cfg)
		return;
	pthread_mutex_lock(&all_configs_lock);
	cds_list_del(&cfg->all_node);
	pthread_mutex_unlock(&all_configs_lock);
	ureg_config_watch_stop(cfg);
	for (size_t i = 0; i < cfg->nregs; i++)
		cfg_live_free(cfg->regs[i]);
	ureg__plugin_prune(&cfg->plugins, true);
	for (size_t i = 0; i < cfg->ntypes; i++)
		ureg__free(cfg->types[i].name);
	for (size_t i = 0; i < cfg->nprovs; i++)
		ureg__free(cfg->provs[i].name);
	ureg__free(cfg->types);
	ureg__free(cfg->provs);
	cfg_map_free(&cfg->type_names);
	cfg_map_free(&cfg->prov_names);
	cfg_map_free(&cfg->reg_names);
	ureg__free(cfg->regs);
	pthread_mutex_destroy(&cfg->lock);
	pthread_mutex_destroy(&cfg->reload_lock);
	pthread_mutex_destroy(&cfg->watch_lock);
	ureg__free(cfg);
}

