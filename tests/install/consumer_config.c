/* A program outside the tree that uses libureg-config through
 * `pkg-config ureg-config` (or CMake's ureg::config): a type and a
 * provider of its own, a YAML document loaded from a buffer, a lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ureg/config.h>

static int make_word(ureg_ctx *ctx, const struct ureg_params *params,
		     void *arg, void **out)
{
	const char *w = ureg_params_get(params, "word");
	char *copy;
	(void)ctx; (void)arg;
	if (!w)
		return -EINVAL;
	if (!(copy = malloc(strlen(w) + 1)))
		return -ENOMEM;
	*out = strcpy(copy, w);
	return 0;
}

static void free_word(void *item)
{
	free(item);
}

int main(void)
{
	static const ureg_type word_type = { .name = "word", .item_destroy = free_word };
	static const char doc[] =
		"registries:\n"
		"  - name: words\n"
		"    type: word\n"
		"    entries:\n"
		"      - key: greeting\n"
		"        kind: singleton\n"
		"        provider: word\n"
		"        params: {word: hello}\n";
	struct ureg_provider prov = { .create = make_word };
	struct ureg_config_errors errs = { 0 };
	ureg_config *cfg;
	ureg_registry *reg;
	void *item = NULL;
	int rc;

	if (ureg_config_new(&cfg) || ureg_config_type_register(cfg, &word_type) ||
	    ureg_config_provider_register(cfg, "word", &prov))
		return 1;
	rc = ureg_config_reload_buffer(cfg, doc, sizeof(doc) - 1, "inline", 0, NULL, &errs);
	if (rc) {
		ureg_config_errors_print(&errs, stderr);
		ureg_config_errors_free(&errs);
		return 2;
	}
	if (!(reg = ureg_config_registry(cfg, "words")))
		return 3;
	ureg_read_lock();
	rc = ureg_lookup(reg, "greeting", &item);
	ureg_read_unlock();
	if (rc || strcmp(item, "hello"))
		return 4;
	ureg_config_destroy(cfg);
	printf("consumer_config: ok (libureg %s)\n", ureg_version());
	return 0;
}
