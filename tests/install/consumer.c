/* A program outside the tree, built only from what `meson install` put in
 * place and what `pkg-config ureg` says: the installed API is enough. */
#include <stdio.h>
#include <string.h>
#include <ureg/typed.h>

struct greeting { const char *text; };
UREG_DECLARE_TYPED(greet_reg, struct greeting)

static const ureg_type greeting_type = { .name = "greeting" };

int main(void)
{
	static struct greeting hello = { "hello" };
	greet_reg_registry *reg;
	struct greeting *g = NULL;
	int rc;

	if (greet_reg_new(&greeting_type, "greetings", &reg) ||
	    greet_reg_register(reg, "en", &hello))
		return 1;
	ureg_read_lock();
	rc = greet_reg_lookup(reg, "en", &g);
	ureg_read_unlock();
	if (rc || !g || strcmp(g->text, "hello"))
		return 2;
	if (greet_reg_register(reg, "en", &hello) != -EEXIST)
		return 3;
	greet_reg_destroy(reg);
	puts("consumer: ok");
	return 0;
}
