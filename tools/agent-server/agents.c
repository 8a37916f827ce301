/* SPDX-License-Identifier: MIT */
/* The demo agents of the agent server (see server_int.h). */

#include "server_int.h"

/* ----------------------------------------------------------- the agents */

struct echo_agent {
	struct ureg_agent base;
	uint64_t runs;
	char *last_input; /* context memory: shows up in the accounting */
};

/*
 * The payload an agent of this server is emitting, as jansson built it
 * (this thread only).  ureg_agent_emit hands the bridge text - the
 * contract for any bridge - and our bridge would parse that text again to
 * nest it in the event; when the text is the one emit_json just made from
 * this value, the bridge takes the value instead.  Measured: with 60 KB
 * inputs the second parse was a third of a run's cost.
 */
__thread const json_t *srv_emitting_json;
__thread const char *srv_emitting_text;

/*
 * Emit @payload (a JSON value, consumed) as one event of @a.  Every frame
 * the server sends is built by jansson, never by printf: a string the
 * client sent (the input, an agent name) reaches the wire escaped.
 */
static int emit_json(struct ureg_agent *a, enum ureg_agent_event_kind kind, json_t *payload)
{
	char *txt;

	if (!payload) /* json_pack: the input is not UTF-8, or no memory */
		return -EINVAL;
	txt = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!txt) {
		json_decref(payload);
		return -ENOMEM;
	}
	srv_emitting_json = payload;
	srv_emitting_text = txt;
	ureg_agent_emit(a, kind, txt, strlen(txt));
	srv_emitting_json = NULL;
	srv_emitting_text = NULL;
	json_decref(payload);
	free(txt);
	return 0;
}

/* The input is one jansson string shared by the run's 5 payloads (checked
 * for UTF-8 and copied once). */
static int echo_run(struct ureg_agent *a, const char *input)
{
	struct echo_agent *e = (struct echo_agent *)a;
	json_t *in = json_string(input);
	int rc;

	if (!in)
		return -EINVAL; /* not UTF-8 (or no memory) */
	e->runs++;
	ureg_ctx_free(a->ctx, e->last_input);
	e->last_input = ureg_ctx_strdup(a->ctx, input); /* NULL on quota: fine */
	rc = emit_json(a, UREG_AGENT_STARTED, json_pack("{s:O,s:I}", "input", in,
							"run", (json_int_t)e->runs));
	for (int i = 1; i <= ECHO_STEPS && !rc; i++)
		rc = emit_json(a, UREG_AGENT_PROGRESS, json_pack("{s:O,s:i,s:i}", "input", in,
								 "step", i, "of", ECHO_STEPS));
	if (!rc)
		rc = emit_json(a, UREG_AGENT_COMPLETED, json_pack("{s:O,s:O}", "input", in,
								  "output", in));
	json_decref(in);
	return rc;
}

static int fail_run(struct ureg_agent *a, const char *input)
{
	int rc = emit_json(a, UREG_AGENT_STARTED, json_pack("{s:s}", "input", input));
	if (rc)
		return rc;
	return emit_json(a, UREG_AGENT_ERROR, json_pack("{s:s,s:s}", "input", input, "error",
							"this agent always fails"));
}

static void echo_destroy(struct ureg_agent *a, ureg_ctx *ctx)
{
	struct echo_agent *e = (struct echo_agent *)a;
	ureg_ctx_free(ctx, e->last_input);
	ureg_ctx_free(ctx, e);
}

const struct ureg_agent_ops srv_echo_ops = { .run = echo_run, .destroy = echo_destroy };
const struct ureg_agent_ops srv_fail_ops = { .run = fail_run, .destroy = echo_destroy };

int srv_agent_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct echo_agent *e = ureg_ctx_calloc(ctx, 1, sizeof(*e));
	if (!e)
		return -errno;
	e->base.ops = arg;
	*out = e;
	return 0;
}
