/* SPDX-License-Identifier: MIT */
/*
 * lib/config/parse.c - text to libyaml document, and the error list.
 *
 * Before libyaml builds its document (yaml_parser_load), one pass over the
 * parser's events refuses what the format does not allow and what would
 * make the load expensive: nesting deeper than CONFIG_MAX_DEPTH (libyaml's
 * cost grows with the square of the depth) and a second YAML document in
 * the stream (it used to be ignored silently).  Both errors carry the
 * line and column of the offending node or `---`.  A syntax error is left
 * to the load, which reports it with libyaml's own message.
 *
 * Every allocation of the config layer goes through the ureg__ wrappers
 * (lib/layer.h) so a fault-injection build can fail each one.  libyaml
 * allocates with its own malloc and is not covered.
 */
#include <limits.h>

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

yaml_node_t *cfg_node(struct load *L, int id)
{
	return yaml_document_get_node(L->doc, id);
}

/* A scalar as a C string, or NULL with an error (wrong type, NUL byte). */
const char *cfg_scalar(struct load *L, yaml_node_t *n, const char *what)
{
	if (n->type != YAML_SCALAR_NODE) {
		ERR_AT(L, n, "%s must be a scalar, not a %s", what,
		       n->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
		return NULL;
	}
	if (strlen((char *)n->data.scalar.value) != n->data.scalar.length) {
		ERR_AT(L, n, "%s contains a NUL byte", what);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

static size_t node_id(struct load *L, yaml_node_t *n)
{
	return (size_t)(n - L->doc->nodes.start);
}

/* A large mapping: mark every key that repeats an earlier one (found with
 * a map instead of comparing each pair with all before it). */
static void mark_dup_keys(struct load *L, yaml_node_t *map)
{
	struct cfg_map seen = { 0 };
	size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);

	if (cfg_map_reserve(&seen, n)) {
		OOM_AT(L, map);
		return;
	}
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = cfg_node(L, p->key);
		if (!k || k->type != YAML_SCALAR_NODE)
			continue;
		/* cannot fail: reserved */
		if (cfg_map_put(&seen, (char *)k->data.scalar.value,
				k->data.scalar.length, k) == -EEXIST &&
		    node_id(L, k) < L->nnodes)
			L->seen[node_id(L, k)] |= NODE_DUP_KEY;
	}
	cfg_map_free(&seen);
}

/* A collection node of the expected type, visited once (no aliases). */
bool cfg_collection(struct load *L, yaml_node_t *n, yaml_node_type_t t,
		    const char *what)
{
	if (n->type != t) {
		ERR_AT(L, n, "%s must be a %s", what,
		       t == YAML_MAPPING_NODE ? "mapping" : "sequence");
		return false;
	}
	size_t id = node_id(L, n);
	if (id < L->nnodes) {
		if (L->seen[id] & NODE_SEEN) {
			ERR_AT(L, n, "%s: an alias to a mapping or sequence is not supported", what);
			return false;
		}
		L->seen[id] |= NODE_SEEN;
	}
	if (t == YAML_MAPPING_NODE &&
	    n->data.mapping.pairs.top - n->data.mapping.pairs.start > CONFIG_DUP_SCAN_MAX)
		mark_dup_keys(L, n);
	return true;
}

/* Whether pair @p repeats a field name of @map (reported at @p's key). */
bool cfg_dup_field(struct load *L, yaml_node_t *map, yaml_node_pair_t *p,
		   const char *name)
{
	yaml_node_t *kn = cfg_node(L, p->key);
	bool dup = false;

	if (map->data.mapping.pairs.top - map->data.mapping.pairs.start > CONFIG_DUP_SCAN_MAX) {
		dup = node_id(L, kn) < L->nnodes && (L->seen[node_id(L, kn)] & NODE_DUP_KEY);
	} else {
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p && !dup; q++) {
			yaml_node_t *k = cfg_node(L, q->key);
			dup = k && k->type == YAML_SCALAR_NODE &&
			      !strcmp((char *)k->data.scalar.value, name);
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

/* ------------------------------------------------------------- parsing */

static void mark_err(struct load *L, const yaml_mark_t *m, const char *fmt,
		     const char *a, const char *b)
{
	cfg_err_add(L, (unsigned)m->line + 1, (unsigned)m->column + 1, fmt, a, b);
}

/* The event pass: false (with an error) for a second document or nesting
 * deeper than CONFIG_MAX_DEPTH; true otherwise, syntax errors included
 * (the load reports those). */
static bool prescan(struct load *L, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	unsigned depth = 0, docs = 0;
	bool ok = true, done = false;

	if (!yaml_parser_initialize(&parser)) {
		cfg_oom_at(L, 0, 0);
		return false;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (ok && !done) {
		if (!yaml_parser_parse(&parser, &ev))
			break;
		switch (ev.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				cfg_err_add(L, (unsigned)ev.start_mark.line + 1,
					    (unsigned)ev.start_mark.column + 1,
					    "a second YAML document: a configuration is one document (remove this '---' and what follows, or split the file)");
				ok = false;
			}
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > CONFIG_MAX_DEPTH) {
				cfg_err_add(L, (unsigned)ev.start_mark.line + 1,
					    (unsigned)ev.start_mark.column + 1,
					    "nesting deeper than %d levels", CONFIG_MAX_DEPTH);
				ok = false;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return ok;
}

void cfg_parse_text(struct load *L, const char *text, size_t len,
		    struct spec *s)
{
	yaml_parser_t parser;
	yaml_document_t doc;

	if (!prescan(L, text, len))
		return;
	if (!yaml_parser_initialize(&parser)) {
		cfg_oom_at(L, 0, 0);
		return;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		const yaml_mark_t *m = &parser.problem_mark;
		if (parser.context)
			mark_err(L, m, "YAML syntax: %s %s",
				 parser.problem ? parser.problem : "error", parser.context);
		else
			mark_err(L, m, "YAML syntax: %s%s",
				 parser.problem ? parser.problem : "error", "");
		yaml_parser_delete(&parser);
		return;
	}
	L->doc = &doc;
	L->nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
	L->seen = ureg__calloc(L->nnodes + 1, 1);
	if (!L->seen)
		cfg_oom_at(L, 0, 0);
	else
		cfg_parse_doc(L, s);
	ureg__free(L->seen);
	L->seen = NULL;
	cfg_map_free(&L->plugins);
	L->doc = NULL;
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
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
