/*
 * oai — see oai.h. Parsing goes through jansson (which already refuses
 * invalid UTF-8 and NUL bytes in strings, so every string we keep is a C
 * string); the messages follow OpenAI's own wording and codes
 * ("missing_required_parameter", "invalid_type", "decimal_above_max_value"...)
 * so a client sees the same error it would from OpenAI.
 */
#include "llm/oai.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util/dbuf.h"
#include "util/utf8.h"

/* Fail with an OpenAI param and code; returns -1. */
static int fail(struct oai_req *req, struct ciel_err *err, const char *param, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(struct oai_req *req, struct ciel_err *err, const char *param, const char *code,
		const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(req->err_code, sizeof(req->err_code), "%s", code ? code : "");
	return ciel_err_field(err, CIEL_EINVAL, param ? param : "", "%s", msg);
}

static const char *jtype_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a decimal";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

static int bad_type(struct oai_req *req, struct ciel_err *err, const char *param, const char *want,
		    const json_t *v)
{
	return fail(req, err, param, "invalid_type",
		    "Invalid type for '%s': expected %s, but got %s instead.", param, want,
		    jtype_name(v));
}

/* A member, or NULL when absent or JSON null (OpenAI treats both alike). */
static json_t *member(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_null(v) ? NULL : v;
}

static int get_number(struct oai_req *req, const json_t *o, const char *name, double lo, double hi,
		      int lo_open, float *out, struct ciel_err *err)
{
	json_t *v = member(o, name);
	double d;

	if (!v)
		return 0;
	if (!json_is_number(v))
		return bad_type(req, err, name, "a decimal", v);
	d = json_number_value(v);
	if (!isfinite(d) || d < lo || (lo_open && d <= lo))
		return fail(req, err, name, "decimal_below_min_value",
			    "Invalid '%s': decimal below minimum value. Expected a value %s %g, "
			    "but got %g instead.",
			    name, lo_open ? ">" : ">=", lo, d);
	if (d > hi)
		return fail(
		    req, err, name, "decimal_above_max_value",
		    "Invalid '%s': decimal above maximum value. Expected a value <= %g, but "
		    "got %g instead.",
		    name, hi, d);
	*out = (float)d;
	return 0;
}

/* An integer in [lo, hi]; *present set when given. */
static int get_int(struct oai_req *req, const json_t *o, const char *name, int64_t lo, int64_t hi,
		   int64_t *out, int *present, struct ciel_err *err)
{
	json_t *v = member(o, name);
	json_int_t i;

	if (present)
		*present = 0;
	if (!v)
		return 0;
	/* 7.0 is an integer to most JSON encoders (JavaScript's among them) */
	if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
	    fabs(json_real_value(v)) < 9e15)
		i = (json_int_t)json_real_value(v);
	else if (json_is_integer(v))
		i = json_integer_value(v);
	else
		return bad_type(req, err, name, "an integer", v);
	if (i < lo)
		return fail(
		    req, err, name, "integer_below_min_value",
		    "Invalid '%s': integer below minimum value. Expected a value >= %" PRId64
		    ", but got %lld instead.",
		    name, lo, (long long)i);
	if (i > hi)
		return fail(
		    req, err, name, "integer_above_max_value",
		    "Invalid '%s': integer above maximum value. Expected a value <= %" PRId64
		    ", but got %lld instead.",
		    name, hi, (long long)i);
	*out = i;
	if (present)
		*present = 1;
	return 0;
}

static int get_bool(struct oai_req *req, const json_t *o, const char *name, int *out,
		    struct ciel_err *err)
{
	json_t *v = member(o, name);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return bad_type(req, err, name, "a boolean", v);
	*out = json_is_true(v);
	return 0;
}

static int unsupported(struct oai_req *req, struct ciel_err *err, const char *param,
		       const char *what)
{
	return fail(req, err, param, "unsupported_value", "Unsupported value for '%s': %s.", param,
		    what);
}

/* Parameters shared by both kinds. */
static int parse_common(struct oai_req *req, const json_t *root, struct ciel_err *err)
{
	json_t *v;
	int64_t i;
	int present;
	float f;

	v = member(root, "model");
	if (!v)
		return fail(req, err, "model", "missing_required_parameter",
			    "Missing required parameter: 'model'.");
	if (!json_is_string(v))
		return bad_type(req, err, "model", "a string", v);
	if (json_string_length(v) == 0 || json_string_length(v) > OAI_MAX_MODEL_LEN)
		return fail(req, err, "model", "invalid_value",
			    "Invalid 'model': expected a model name of 1 to %d bytes.",
			    OAI_MAX_MODEL_LEN);
	req->model = strdup(json_string_value(v));

	if (get_int(req, root, "max_tokens", 1, INT32_MAX, &i, &present, err) < 0)
		return -1;
	if (present)
		req->max_tokens = (int32_t)i;
	if (get_int(req, root, "max_completion_tokens", 1, INT32_MAX, &i, &present, err) < 0)
		return -1;
	if (present)
		req->max_tokens = (int32_t)i;
	if (get_number(req, root, "temperature", 0, 2, 0, &req->temperature, err) < 0)
		return -1;
	if (get_number(req, root, "top_p", 0, 1, 1, &req->top_p, err) < 0)
		return -1;
	if (get_int(req, root, "top_k", 0, 1000000, &i, &present, err) < 0)
		return -1;
	if (present)
		req->top_k = (int32_t)i;
	if (get_int(req, root, "seed", INT64_MIN, INT64_MAX, &i, &req->has_seed, err) < 0)
		return -1;
	if (req->has_seed)
		req->seed = (uint64_t)i;
	if (get_int(req, root, "n", 1, 128, &i, &present, err) < 0)
		return -1;
	if (present && i != 1)
		return unsupported(req, err, "n", "only n = 1 is supported");
	/* best_of (completions) is n's older sibling */
	if (get_int(req, root, "best_of", 1, 128, &i, &present, err) < 0)
		return -1;
	if (present && i != 1)
		return unsupported(req, err, "best_of", "only best_of = 1 is supported");
	f = 0;
	if (get_number(req, root, "presence_penalty", -2, 2, 0, &f, err) < 0)
		return -1;
	if (f != 0)
		return unsupported(req, err, "presence_penalty",
				   "penalties are not supported; leave it 0");
	if (get_number(req, root, "frequency_penalty", -2, 2, 0, &f, err) < 0)
		return -1;
	if (f != 0)
		return unsupported(req, err, "frequency_penalty",
				   "penalties are not supported; leave it 0");

	v = member(root, "logprobs");
	if (v) {
		/* chat: a boolean; completions: an integer count (0 = none) */
		if (json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0))
			return unsupported(req, err, "logprobs", "logprobs are not supported");
		if (!json_is_boolean(v) && !json_is_integer(v))
			return bad_type(req, err, "logprobs", "a boolean", v);
	}
	v = member(root, "top_logprobs");
	if (v && !(json_is_integer(v) && json_integer_value(v) == 0))
		return unsupported(req, err, "top_logprobs", "logprobs are not supported");
	v = member(root, "logit_bias");
	if (v && !(json_is_object(v) && json_object_size(v) == 0))
		return unsupported(req, err, "logit_bias", "logit_bias is not supported");

	v = member(root, "stop");
	if (v) {
		size_t k;
		json_t *s;

		if (json_is_string(v)) {
			v = json_pack("[O]", v);
		} else if (json_is_array(v)) {
			json_incref(v);
		} else {
			return bad_type(req, err, "stop", "a string or an array of strings", v);
		}
		if (!v)
			return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		if (json_array_size(v) > OAI_MAX_STOP) {
			k = json_array_size(v);
			json_decref(v);
			return fail(
			    req, err, "stop", "array_above_max_length",
			    "Invalid 'stop': array too long. Expected an array with maximum "
			    "length %d, but got an array with length %zu instead.",
			    OAI_MAX_STOP, k);
		}
		json_array_foreach(v, k, s)
		{
			char param[32];

			snprintf(param, sizeof(param), "stop[%zu]", k);
			if (!json_is_string(s)) {
				bad_type(req, err, param, "a string", s);
				json_decref(v);
				return -1;
			}
			if (json_string_length(s) > OAI_MAX_STOP_LEN) {
				json_decref(v);
				return fail(req, err, param, "string_above_max_length",
					    "Invalid '%s': string too long. Expected at most %d "
					    "bytes.",
					    param, OAI_MAX_STOP_LEN);
			}
			/* an empty stop string would end every answer before it began */
			if (json_string_length(s) == 0)
				continue;
			req->stop[req->n_stop++] = strdup(json_string_value(s));
		}
		json_decref(v);
	}

	if (get_bool(req, root, "stream", &req->stream, err) < 0)
		return -1;
	v = member(root, "stream_options");
	if (v) {
		if (!json_is_object(v))
			return bad_type(req, err, "stream_options", "an object", v);
		if (!req->stream)
			return fail(req, err, "stream_options", "invalid_value",
				    "The 'stream_options' parameter is only allowed when 'stream' "
				    "is enabled.");
		if (member(v, "include_usage") && !json_is_boolean(member(v, "include_usage")))
			return bad_type(req, err, "stream_options.include_usage", "a boolean",
					member(v, "include_usage"));
		req->include_usage = json_is_true(member(v, "include_usage"));
	}
	v = member(root, "user");
	if (v) {
		if (!json_is_string(v))
			return bad_type(req, err, "user", "a string", v);
		req->user = strdup(json_string_value(v));
	}
	return 0;
}

/* The text of a message's content: a string or an array of text parts. */
static int content_text(struct oai_req *req, const json_t *c, const char *param, char **out,
			struct ciel_err *err)
{
	struct dbuf b;
	size_t k;
	json_t *part;

	if (!c) {
		*out = strdup("");
		return 0;
	}
	if (json_is_string(c)) {
		*out = strdup(json_string_value(c));
		return 0;
	}
	if (!json_is_array(c))
		return bad_type(req, err, param, "a string or an array of content parts", c);
	dbuf_init(&b, OAI_MAX_BODY);
	json_array_foreach(c, k, part)
	{
		char pp[96];
		json_t *type, *text;

		snprintf(pp, sizeof(pp), "%s[%zu]", param, k);
		if (!json_is_object(part)) {
			dbuf_release(&b);
			return bad_type(req, err, pp, "an object", part);
		}
		type = member(part, "type");
		if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0) {
			dbuf_release(&b);
			snprintf(pp, sizeof(pp), "%s[%zu].type", param, k);
			return fail(req, err, pp, "unsupported_value",
				    "Unsupported content part type '%s': this model reads text "
				    "parts only.",
				    json_is_string(type) ? json_string_value(type) : "");
		}
		text = member(part, "text");
		if (!json_is_string(text)) {
			dbuf_release(&b);
			snprintf(pp, sizeof(pp), "%s[%zu].text", param, k);
			return text ? bad_type(req, err, pp, "a string", text)
				    : fail(req, err, pp, "missing_required_parameter",
					   "Missing required parameter: '%s'.", pp);
		}
		dbuf_add(&b, json_string_value(text), json_string_length(text));
	}
	dbuf_addstr(&b, "");
	if (b.toobig || b.nomem) {
		dbuf_release(&b);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	*out = dbuf_detach(&b, NULL);
	return 0;
}

static int parse_messages(struct oai_req *req, const json_t *root, struct ciel_err *err)
{
	json_t *msgs = member(root, "messages"), *m;
	size_t k;

	if (!msgs)
		return fail(req, err, "messages", "missing_required_parameter",
			    "Missing required parameter: 'messages'.");
	if (!json_is_array(msgs))
		return bad_type(req, err, "messages", "an array", msgs);
	if (json_array_size(msgs) == 0)
		return fail(req, err, "messages", "empty_array",
			    "Invalid 'messages': empty array. Expected an array with minimum "
			    "length 1, but got an empty array instead.");
	if (json_array_size(msgs) > OAI_MAX_MESSAGES)
		return fail(req, err, "messages", "array_above_max_length",
			    "Invalid 'messages': array too long. Expected an array with maximum "
			    "length %d, but got an array with length %zu instead.",
			    OAI_MAX_MESSAGES, json_array_size(msgs));
	req->msgs = calloc(json_array_size(msgs), sizeof(*req->msgs));
	if (!req->msgs)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	json_array_foreach(msgs, k, m)
	{
		char param[64];
		const char *role;
		json_t *r;

		snprintf(param, sizeof(param), "messages[%zu]", k);
		if (!json_is_object(m))
			return bad_type(req, err, param, "an object", m);
		snprintf(param, sizeof(param), "messages[%zu].role", k);
		r = member(m, "role");
		if (!r)
			return fail(req, err, param, "missing_required_parameter",
				    "Missing required parameter: '%s'.", param);
		if (!json_is_string(r))
			return bad_type(req, err, param, "a string", r);
		role = json_string_value(r);
		if (!strcmp(role, "developer"))
			role = "system";
		if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
			if (!strcmp(role, "tool") || !strcmp(role, "function"))
				return fail(req, err, param, "unsupported_value",
					    "Unsupported value: '%s' messages are not supported "
					    "(no tool calling).",
					    role);
			return fail(req, err, param, "invalid_value",
				    "Invalid value: '%.64s'. Supported values are: 'system', "
				    "'developer', 'user' and 'assistant'.",
				    role);
		}
		req->msgs[k].role = strdup(role);
		req->n_msgs = k + 1;
		snprintf(param, sizeof(param), "messages[%zu].content", k);
		if (!member(m, "content") && strcmp(role, "assistant") != 0)
			return fail(req, err, param, "missing_required_parameter",
				    "Missing required parameter: '%s'.", param);
		if (content_text(req, member(m, "content"), param, &req->msgs[k].content, err) < 0)
			return -1;
		if (!req->msgs[k].role || !req->msgs[k].content)
			return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	if (member(root, "tools") &&
	    !(json_is_array(member(root, "tools")) && json_array_size(member(root, "tools")) == 0))
		return unsupported(req, err, "tools", "tool calling is not supported");
	if (member(root, "functions"))
		return unsupported(req, err, "functions", "function calling is not supported");
	m = member(root, "response_format");
	if (m) {
		json_t *t = json_is_object(m) ? member(m, "type") : NULL;

		if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0)
			return unsupported(req, err, "response_format",
					   "only {\"type\": \"text\"} is supported");
	}
	return 0;
}

static int parse_prompt(struct oai_req *req, const json_t *root, struct ciel_err *err)
{
	json_t *p = member(root, "prompt"), *v;

	if (!p)
		return fail(req, err, "prompt", "missing_required_parameter",
			    "Missing required parameter: 'prompt'.");
	if (json_is_array(p)) {
		if (json_array_size(p) != 1)
			return unsupported(req, err, "prompt",
					   "give one prompt (a string or an array of one string)");
		p = json_array_get(p, 0);
		if (!json_is_string(p))
			return unsupported(req, err, "prompt",
					   "give the prompt as text, not as token ids");
	}
	if (!json_is_string(p))
		return bad_type(req, err, "prompt", "a string", p);
	req->prompt_len = json_string_length(p);
	req->prompt = malloc(req->prompt_len + 1);
	if (!req->prompt)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	memcpy(req->prompt, json_string_value(p), req->prompt_len + 1);
	v = member(root, "echo");
	if (json_is_true(v))
		return unsupported(req, err, "echo", "echo is not supported");
	v = member(root, "suffix");
	if (v && !(json_is_string(v) && json_string_length(v) == 0))
		return unsupported(req, err, "suffix", "suffix (insertion) is not supported");
	return 0;
}

int oai_parse(enum oai_kind kind, const char *body, size_t len, struct oai_req *req,
	      struct ciel_err *err)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	memset(req, 0, sizeof(*req));
	req->kind = kind;
	req->max_tokens = -1;
	req->temperature = 1;
	req->top_p = 1;
	if (len > OAI_MAX_BODY) {
		snprintf(req->err_code, sizeof(req->err_code), "request_too_large");
		return ciel_err_set(err, CIEL_ETOOBIG, "The request body is %zu bytes; at most %u.",
				    len, OAI_MAX_BODY);
	}
	root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(req, err, NULL, NULL,
			    "We could not parse the JSON body of your request: %s (line %d, "
			    "column %d).",
			    jerr.text, jerr.line, jerr.column);
	if (!json_is_object(root)) {
		json_decref(root);
		return fail(req, err, NULL, NULL,
			    "We could not parse the JSON body of your request: expected an "
			    "object.");
	}
	rc = parse_common(req, root, err);
	if (rc == 0)
		rc = kind == OAI_CHAT ? parse_messages(req, root, err)
				      : parse_prompt(req, root, err);
	if (rc == 0 && (!req->model || (member(root, "user") && !req->user)))
		rc = ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	for (size_t k = 0; rc == 0 && k < req->n_stop; k++)
		if (!req->stop[k])
			rc = ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	json_decref(root);
	return rc;
}

void oai_req_release(struct oai_req *req)
{
	if (!req)
		return;
	for (size_t k = 0; k < req->n_msgs; k++) {
		free(req->msgs[k].role);
		free(req->msgs[k].content);
	}
	free(req->msgs);
	free(req->model);
	free(req->prompt);
	for (size_t k = 0; k < req->n_stop; k++)
		free(req->stop[k]);
	free(req->user);
	memset(req, 0, sizeof(*req));
}

void oai_new_id(enum oai_kind kind, char id[OAI_ID_LEN])
{
	unsigned char r[16];
	size_t got = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	int n;

	while (fd >= 0 && got < sizeof(r) && (n = (int)read(fd, r + got, sizeof(r) - got)) > 0)
		got += (size_t)n;
	if (fd >= 0)
		close(fd);
	if (got < sizeof(r)) {
		/* an id only has to be unique, not secret */
		struct timespec ts;
		uint64_t x;

		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
		for (size_t k = 0; k < sizeof(r); k++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			r[k] = (unsigned char)(x >> 56);
		}
	}
	n = snprintf(id, OAI_ID_LEN, "%s", kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
	for (size_t k = 0; k < sizeof(r); k++)
		n += snprintf(id + n, OAI_ID_LEN - (size_t)n, "%02x", r[k]);
}

/* A JSON string of text, invalid UTF-8 replaced by U+FFFD (a NUL byte is \u0000). */
static json_t *jtext(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)(text ? text : "");
	struct dbuf b;
	json_t *j;
	size_t k = 0;
	int l;

	j = json_stringn(text ? text : "", len);
	if (j)
		return j;
	dbuf_init(&b, DBUF_NO_MAX);
	while (k < len) {
		l = utf8_seq(s + k, len - k);
		if (l > 0) {
			dbuf_add(&b, s + k, (size_t)l);
			k += (size_t)l;
		} else {
			dbuf_add(&b, "\xef\xbf\xbd", 3);
			k++;
		}
	}
	dbuf_addstr(&b, "");
	j = b.nomem ? NULL : json_stringn(dbuf_str(&b), b.len);
	dbuf_release(&b);
	return j;
}

static json_t *jstr_or_null(const char *s)
{
	return s && *s ? jtext(s, strlen(s)) : json_null();
}

static json_t *usage_obj(uint32_t prompt_tokens, uint32_t completion_tokens)
{
	return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)prompt_tokens,
			 "completion_tokens", (json_int_t)completion_tokens, "total_tokens",
			 (json_int_t)prompt_tokens + (json_int_t)completion_tokens);
}

/* The fields every answer and chunk begins with. */
static json_t *head(const char *object, const char *id, int64_t created, const char *model,
		    const char *fingerprint)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:o}", "id", id, "object", object, "created",
			      (json_int_t)created, "model", jtext(model, strlen(model)));

	if (o && fingerprint)
		json_object_set_new(o, "system_fingerprint",
				    jtext(fingerprint, strlen(fingerprint)));
	return o;
}

/* Dump o (consumed), with an SSE frame around it when sse is set. */
static char *dump(json_t *o, int sse)
{
	char *text, *out;
	size_t n;

	if (!o)
		return NULL;
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!text || !sse)
		return text;
	n = strlen(text);
	out = malloc(n + 9);
	if (out) {
		memcpy(out, "data: ", 6);
		memcpy(out + 6, text, n);
		memcpy(out + 6 + n, "\n\n", 3);
	}
	free(text);
	return out;
}

char *oai_answer_json(enum oai_kind kind, const char *id, int64_t created, const char *model,
		      const char *fingerprint, const char *text, size_t len, const char *finish,
		      uint32_t prompt_tokens, uint32_t completion_tokens)
{
	json_t *o = head(kind == OAI_CHAT ? "chat.completion" : "text_completion", id, created,
			 model, fingerprint);
	json_t *choice;

	if (kind == OAI_CHAT)
		choice = json_pack("{s:i, s:{s:s, s:o, s:n}, s:n, s:o}", "index", 0, "message",
				   "role", "assistant", "content", jtext(text, len), "refusal",
				   "logprobs", "finish_reason", jstr_or_null(finish));
	else
		choice = json_pack("{s:o, s:i, s:n, s:o}", "text", jtext(text, len), "index", 0,
				   "logprobs", "finish_reason", jstr_or_null(finish));
	if (!o || !choice) {
		json_decref(o);
		json_decref(choice);
		return NULL;
	}
	json_object_set_new(o, "choices", json_pack("[o]", choice));
	json_object_set_new(o, "usage", usage_obj(prompt_tokens, completion_tokens));
	return dump(o, 0);
}

char *oai_chunk_sse(enum oai_kind kind, const char *id, int64_t created, const char *model,
		    const char *fingerprint, int first, const char *text, size_t len,
		    const char *finish, int with_usage_null)
{
	json_t *o, *choice;

	if (kind == OAI_CHAT) {
		json_t *delta;

		o = head("chat.completion.chunk", id, created, model, fingerprint);
		if (first)
			delta = json_pack("{s:s, s:o}", "role", "assistant", "content",
					  jtext(text, len));
		else if (finish && len == 0)
			delta = json_object();
		else
			delta = json_pack("{s:o}", "content", jtext(text, len));
		choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs",
				   "finish_reason", jstr_or_null(finish));
	} else {
		o = head("text_completion", id, created, model, fingerprint);
		choice = json_pack("{s:o, s:i, s:n, s:o}", "text", jtext(text, len), "index", 0,
				   "logprobs", "finish_reason", jstr_or_null(finish));
	}
	if (!o || !choice) {
		json_decref(o);
		json_decref(choice);
		return NULL;
	}
	json_object_set_new(o, "choices", json_pack("[o]", choice));
	if (with_usage_null)
		json_object_set_new(o, "usage", json_null());
	return dump(o, 1);
}

char *oai_usage_sse(enum oai_kind kind, const char *id, int64_t created, const char *model,
		    const char *fingerprint, uint32_t prompt_tokens, uint32_t completion_tokens)
{
	json_t *o = head(kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", id,
			 created, model, fingerprint);

	if (!o)
		return NULL;
	json_object_set_new(o, "choices", json_array());
	json_object_set_new(o, "usage", usage_obj(prompt_tokens, completion_tokens));
	return dump(o, 1);
}

static json_t *model_obj(const char *name, int64_t created, const char *owned_by)
{
	return json_pack("{s:o, s:s, s:I, s:o}", "id", jtext(name, strlen(name)), "object", "model",
			 "created", (json_int_t)created, "owned_by",
			 jtext(owned_by ? owned_by : "ciel", strlen(owned_by ? owned_by : "ciel")));
}

char *oai_models_json(const char *const *names, size_t n, int64_t created, const char *owned_by)
{
	json_t *data = json_array();

	for (size_t k = 0; data && k < n; k++)
		if (json_array_append_new(data, model_obj(names[k], created, owned_by)) < 0) {
			json_decref(data);
			return NULL;
		}
	return dump(json_pack("{s:s, s:o}", "object", "list", "data", data), 0);
}

char *oai_model_json(const char *name, int64_t created, const char *owned_by)
{
	return dump(model_obj(name, created, owned_by), 0);
}

const char *oai_error_type(int status)
{
	switch (status) {
	case 403:
		return "permission_error";
	case 429:
		return "rate_limit_error";
	case 503:
		return "service_unavailable_error";
	default:
		return status >= 500 ? "server_error" : "invalid_request_error";
	}
}

int oai_status(int ciel_code)
{
	if (ciel_code == CIEL_EQUOTA)
		return 429;
	if (ciel_code == CIEL_EUNAVAIL)
		return 503;
	return ciel_code_http(ciel_code);
}

static json_t *error_obj(int status, const char *message, const char *param, const char *code)
{
	json_t *e = json_pack("{s:o, s:s, s:o, s:o}", "message",
			      jtext(message ? message : "", strlen(message ? message : "")), "type",
			      oai_error_type(status), "param", jstr_or_null(param), "code",
			      jstr_or_null(code));

	return e ? json_pack("{s:o}", "error", e) : NULL;
}

char *oai_error_json(int status, const char *message, const char *param, const char *code)
{
	return dump(error_obj(status, message, param, code), 0);
}

char *oai_error_sse(int status, const char *message, const char *param, const char *code)
{
	return dump(error_obj(status, message, param, code), 1);
}

char *oai_error_from(const struct ciel_err *err, const char *code, int *status)
{
	int st = oai_status(err->code);

	if (status)
		*status = st;
	return oai_error_json(st, err->msg, err->field, code);
}
