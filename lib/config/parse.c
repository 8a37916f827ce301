/* SPDX-License-Identifier: MIT */
/*
 * lib/config/parse.c - text to document model, and the error list.
 *
 * libyaml parses; its events are composed here into struct cfg_doc (see
 * config_int.h: compact nodes, children as indexes, text in an arena)
 * rather than libyaml's own document, which took ~200 bytes and three
 * mallocs per node.  The same pass refuses what the format does not
 * allow and what would make parsing expensive: nesting deeper than
 * CONFIG_MAX_DEPTH (libyaml's cost grows with the square of the depth)
 * and a second YAML document in the stream (once ignored silently); both
 * errors carry the line and column of the offending node or `---`.
 * Syntax errors carry libyaml's own message and position.  Aliases share
 * the anchored node, as libyaml's loader does (schema.c refuses aliases
 * to collections).
 *
 * Every allocation of the config layer goes through the ureg__ wrappers
 * (lib/layer.h) so a fault-injection build can fail each one.  libyaml
 * allocates with its own malloc and is not covered.
 */
#include <limits.h>
#include <yaml.h>

#include "config_int.h"

char *cfg_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = ureg__malloc(len + 1);
	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

/* ------------------------------------------------------------- errors */

void cfg_err_add(struct load *L, unsigned line, unsigned col,
		 const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	L->nerr++;
	if (!L->out || L->out->count > UREG_CONFIG_MAX_ERRORS)
		return;
	if (L->out->count == UREG_CONFIG_MAX_ERRORS) {
		snprintf(msg, sizeof(msg), "too many errors, stopping here");
		line = col = 0;
	} else {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	struct ureg_config_error *v = ureg__realloc(L->out->v,
		(L->out->count + 1) * sizeof(*v));
	if (!v)
		return;
	L->out->v = v;
	v += L->out->count;
	v->file = ureg__strdup(L->file);
	v->reason = ureg__strdup(msg);
	v->line = line;
	v->column = col;
	v->reserved[0] = v->reserved[1] = NULL;
	if (!v->file || !v->reason) {
		ureg__free(v->file);
		ureg__free(v->reason);
		return;
	}
	L->out->count++;
}

/* An allocation failed: the load fails with -ENOMEM (the error entry
 * itself may be lost if that allocation fails too). */
void cfg_oom_at(struct load *L, unsigned line, unsigned col)
{
	L->nomem = true;
	cfg_err_add(L, line, col, "out of memory");
}

void ureg_config_errors_free(struct ureg_config_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->count; i++) {
		ureg__free(errs->v[i].file);
		ureg__free(errs->v[i].reason);
	}
	ureg__free(errs->v);
	errs->v = NULL;
	errs->count = 0;
}

size_t ureg_config_errors_print(const struct ureg_config_errors *errs,
				FILE *out)
{
	if (!errs || !out)
		return 0;
	for (size_t i = 0; i < errs->count; i++) {
		const struct ureg_config_error *e = &errs->v[i];
		if (e->line)
			fprintf(out, "%s:%u:%u: error: %s\n", e->file, e->line,
				e->column, e->reason);
		else
			fprintf(out, "%s: error: %s\n", e->file, e->reason);
	}
	return errs->count;
}

/* ------------------------------------------------------- node helpers */

/* A scalar as a C string, or NULL with an error (wrong type, NUL byte). */
const char *cfg_scalar(struct load *L, struct cfg_node *n, const char *what)
{
	if (n->type != CFG_SCALAR) {
		ERR_AT(L, n, "%s must be a scalar, not a %s", what,
		       n->type == CFG_MAPPING ? "mapping" : "sequence");
		return NULL;
	}
	if (strlen(n->value) != n->len) {
		ERR_AT(L, n, "%s contains a NUL byte", what);
		return NULL;
	}
	return n->value;
}

/* A large mapping: mark every key that repeats an earlier one (found with
 * a map instead of comparing each pair with all before it). */
static void mark_dup_keys(struct load *L, struct cfg_node *map)
{
	struct cfg_map seen = { 0 };

	if (cfg_map_reserve(&seen, map->len)) {
		OOM_AT(L, map);
		return;
	}
	FOR_PAIRS(L, map, kn, vn, p) {
		(void)vn;
		/* cannot fail: reserved */
		if (kn->type == CFG_SCALAR &&
		    cfg_map_put(&seen, kn->value, kn->len, kn) == -EEXIST)
			kn->flags |= NODE_DUP_KEY;
	}
	cfg_map_free(&seen);
}

/* A collection node of the expected type, visited once (no aliases). */
bool cfg_collection(struct load *L, struct cfg_node *n, enum cfg_node_type t,
		    const char *what)
{
	if (n->type != t) {
		ERR_AT(L, n, "%s must be a %s", what,
		       t == CFG_MAPPING ? "mapping" : "sequence");
		return false;
	}
	if (n->flags & NODE_SEEN) {
		ERR_AT(L, n, "%s: an alias to a mapping or sequence is not supported", what);
		return false;
	}
	n->flags |= NODE_SEEN;
	if (t == CFG_MAPPING && n->len > CONFIG_DUP_SCAN_MAX)
		mark_dup_keys(L, n);
	return true;
}

/* Whether pair @pair repeats a field name of @map (reported at its key). */
bool cfg_dup_field(struct load *L, struct cfg_node *map, size_t pair,
		   const char *name)
{
	struct cfg_node *kn = cfg_kid(L, map, 2 * pair);
	bool dup = false;

	if (map->len > CONFIG_DUP_SCAN_MAX) {
		dup = kn->flags & NODE_DUP_KEY;
	} else {
		for (size_t q = 0; q < pair && !dup; q++) {
			struct cfg_node *k = cfg_kid(L, map, 2 * q);
			dup = k->type == CFG_SCALAR && !strcmp(k->value, name);
		}
	}
	if (dup)
		ERR_AT(L, kn, "duplicate field '%s'", name);
	return dup;
}

bool cfg_valid_key(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > UREG_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* ------------------------------------------------- the document model */

/* Scalar text and anchor names, in 64 KiB chunks (bigger strings get a
 * chunk of their own). */
struct cfg_arena {
	struct cfg_arena *next;
	size_t used, cap;
	char data[];
};

static char *arena_copy(struct cfg_doc *d, const unsigned char *s, size_t len)
{
	struct cfg_arena *a = d->arena;

	if (!a || a->cap - a->used < len + 1) {
		size_t cap = len + 1 > 65536 - sizeof(*a) ? len + 1 : 65536 - sizeof(*a);
		if (!(a = ureg__malloc(sizeof(*a) + cap)))
			return NULL;
		a->used = 0;
		a->cap = cap;
		a->next = d->arena;
		d->arena = a;
	}
	char *p = a->data + a->used;
	if (len)
		memcpy(p, s, len);
	p[len] = '\0';
	a->used += len + 1;
	return p;
}

static void doc_free(struct cfg_doc *d)
{
	while (d->arena) {
		struct cfg_arena *next = d->arena->next;
		ureg__free(d->arena);
		d->arena = next;
	}
	ureg__free(d->nodes);
	ureg__free(d->kids);
	*d = (struct cfg_doc){ 0 };
}

/* Make room for @need elements of @size bytes in the array *@v. */
#define GROW(v, cap, need) grow_array((void *)&(v), &(cap), (need), sizeof(*(v)))
static bool grow_array(void *vp, size_t *cap, size_t need, size_t size)
{
	void *v;

	if (need <= *cap)
		return true;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	memcpy(&v, vp, sizeof(v));
	if (!(v = ureg__realloc(v, c * size)))
		return false;
	memcpy(vp, &v, sizeof(v));
	*cap = c;
	return true;
}

/* The composer: libyaml's events -> struct cfg_doc. */
struct compose {
	struct load *L;
	struct cfg_doc *d;
	uint32_t *open;            /* children of the open collections */
	size_t nopen, capopen;
	struct { uint32_t node; size_t open0; } stack[CONFIG_MAX_DEPTH];
	unsigned depth;
	struct cfg_map anchors;    /* name (in the arena) -> node index + 1 */
	unsigned docs;
	size_t root;               /* the first document's root node + 1 */
};

static bool oom(struct compose *c, const yaml_mark_t *m)
{
	cfg_oom_at(c->L, (unsigned)m->line + 1, (unsigned)m->column + 1);
	return false;
}

static bool add_child(struct compose *c, uint32_t id, const yaml_mark_t *m)
{
	if (!c->depth) {
		if (!c->root)
			c->root = (size_t)id + 1;
		return true;
	}
	if (!GROW(c->open, c->capopen, c->nopen + 1))
		return oom(c, m);
	c->open[c->nopen++] = id;
	return true;
}

/* A new node for an event at @m, registered under @anchor. */
static bool add_node(struct compose *c, enum cfg_node_type t, const yaml_mark_t *m,
		     const yaml_char_t *anchor, uint32_t *id)
{
	struct cfg_doc *d = c->d;

	if (d->nnodes >= UINT32_MAX ||
	    !GROW(d->nodes, d->capnodes, d->nnodes + 1))
		return oom(c, m);
	*id = (uint32_t)d->nnodes;
	d->nodes[d->nnodes++] = (struct cfg_node){ .type = (unsigned char)t,
		.line = (unsigned)m->line + 1, .col = (unsigned)m->column + 1 };
	if (anchor) {
		size_t len = strlen((const char *)anchor);
		const char *name = arena_copy(d, anchor, len);
		if (!name)
			return oom(c, m);
		/* a redefined anchor names the new node from here on */
		cfg_map_del(&c->anchors, name, len);
		if (cfg_map_put(&c->anchors, name, len, (void *)(uintptr_t)(*id + 1)))
			return oom(c, m);
	}
	return add_child(c, *id, m);
}

static bool on_event(struct compose *c, yaml_event_t *ev, bool *done)
{
	struct cfg_doc *d = c->d;
	const yaml_mark_t *m = &ev->start_mark;
	uint32_t id;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++c->docs > 1) {
			cfg_err_add(c->L, (unsigned)m->line + 1, (unsigned)m->column + 1,
				    "a second YAML document: a configuration is one document (remove this '---' and what follows, or split the file)");
			return false;
		}
		return true;
	case YAML_STREAM_END_EVENT:
		*done = true;
		return true;
	case YAML_ALIAS_EVENT: {
		const char *a = (const char *)ev->data.alias.anchor;
		uintptr_t to = (uintptr_t)cfg_map_gets(&c->anchors, a);
		if (!to) {
			cfg_err_add(c->L, (unsigned)m->line + 1, (unsigned)m->column + 1,
				    "YAML syntax: found undefined alias '*%.64s'", a);
			return false;
		}
		return add_child(c, (uint32_t)(to - 1), m);
	}
	case YAML_SCALAR_EVENT:
		if (!add_node(c, CFG_SCALAR, m, ev->data.scalar.anchor, &id))
			return false;
		if (!(d->nodes[id].value = arena_copy(d, ev->data.scalar.value,
						       ev->data.scalar.length)))
			return oom(c, m);
		d->nodes[id].len = ev->data.scalar.length;
		return true;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (c->depth >= CONFIG_MAX_DEPTH) {
			cfg_err_add(c->L, (unsigned)m->line + 1, (unsigned)m->column + 1,
				    "nesting deeper than %d levels", CONFIG_MAX_DEPTH);
			return false;
		}
		if (!add_node(c, ev->type == YAML_MAPPING_START_EVENT ? CFG_MAPPING : CFG_SEQUENCE,
			      m, ev->type == YAML_MAPPING_START_EVENT ?
			      ev->data.mapping_start.anchor : ev->data.sequence_start.anchor, &id))
			return false;
		c->stack[c->depth].node = id;
		c->stack[c->depth].open0 = c->nopen;
		c->depth++;
		return true;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		c->depth--;
		struct cfg_node *n = &d->nodes[c->stack[c->depth].node];
		size_t open0 = c->stack[c->depth].open0, k = c->nopen - open0;
		if (!GROW(d->kids, d->capkids, d->nkids + k))
			return oom(c, m);
		if (k) /* an empty collection may have no arrays at all */
			memcpy(d->kids + d->nkids, c->open + open0, k * sizeof(*d->kids));
		n->first = d->nkids;
		n->len = n->type == CFG_MAPPING ? k / 2 : k;
		d->nkids += k;
		c->nopen = open0;
		return true;
	}
	default:
		return true;
	}
}

/* Compose @text into @d: false (with an error) on a syntax error, a second
 * document, nesting past CONFIG_MAX_DEPTH or no memory. */
static bool compose(struct load *L, const char *text, size_t len, struct cfg_doc *d)
{
	struct compose c = { .L = L, .d = d };
	yaml_parser_t parser;
	yaml_event_t ev;
	bool ok = true, done = false;

	if (!yaml_parser_initialize(&parser)) {
		cfg_oom_at(L, 0, 0);
		return false;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (ok && !done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			const yaml_mark_t *m = &parser.problem_mark;
			if (parser.error == YAML_MEMORY_ERROR)
				cfg_oom_at(L, 0, 0);
			else
				cfg_err_add(L, (unsigned)m->line + 1, (unsigned)m->column + 1,
					    "YAML syntax: %s%s%s",
					    parser.problem ? parser.problem : "error",
					    parser.context ? " " : "",
					    parser.context ? parser.context : "");
			ok = false;
			break;
		}
		ok = on_event(&c, &ev, &done);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	cfg_map_free(&c.anchors);
	ureg__free(c.open);
	d->root = ok && c.root ? &d->nodes[c.root - 1] : NULL;
	return ok;
}

void cfg_parse_text(struct load *L, const char *text, size_t len,
		    struct spec *s)
{
	struct cfg_doc doc = { 0 };

	if (compose(L, text, len, &doc)) {
		L->doc = &doc;
		cfg_parse_doc(L, s);
		L->doc = NULL;
	}
	cfg_map_free(&L->plugins);
	doc_free(&doc);
}

int cfg_read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 4096, n = 0;
	char *b;

	if (!f)
		return -errno;
	b = ureg__malloc(cap);
	while (b) {
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (n < cap)
			break;
		if (cap >= CONFIG_MAX_BYTES) {
			ureg__free(b);
			fclose(f);
			return -EFBIG;
		}
		char *nb = ureg__realloc(b, cap * 2);
		if (!nb) {
			ureg__free(b);
			b = NULL;
			break;
		}
		b = nb;
		cap *= 2;
	}
	int err = ferror(f);
	fclose(f);
	if (!b)
		return -ENOMEM;
	if (err) {
		ureg__free(b);
		return -EIO;
	}
	*buf = b;
	*len = n;
	return 0;
}
