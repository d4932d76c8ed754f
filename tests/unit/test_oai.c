/*
 * oai: the OpenAI wire format. A table of good and bad bodies (each bad one
 * must name the param OpenAI would name, with its code), then the JSON
 * builders checked by parsing their output back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "llm/oai.h"

static int parse(enum oai_kind k, const char *s, struct oai_req *req, struct ciel_err *err)
{
	return oai_parse(k, s, strlen(s), req, err);
}

static void test_chat_ok(void **st)
{
	struct ciel_err err = {0};
	struct oai_req r;
	const char *s =
	    "{\"model\":\"stories\",\"messages\":["
	    "{\"role\":\"developer\",\"content\":\"be brief\"},"
	    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Once \"},"
	    "{\"type\":\"text\",\"text\":\"upon\"}]},"
	    "{\"role\":\"assistant\",\"content\":null},"
	    "{\"role\":\"user\",\"content\":\"a time\",\"name\":\"bob\"}],"
	    "\"max_tokens\":5,\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,"
	    "\"top_k\":40,\"seed\":-1,\"stop\":[\"\\n\",\"\",\"END\"],\"n\":1,\"stream\":true,"
	    "\"stream_options\":{\"include_usage\":true},\"presence_penalty\":0,"
	    "\"frequency_penalty\":0.0,\"logprobs\":false,\"user\":\"u1\",\"unknown\":[1,2]}";

	(void)st;
	assert_int_equal(parse(OAI_CHAT, s, &r, &err), 0);
	assert_string_equal(r.model, "stories");
	assert_int_equal(r.n_msgs, 4);
	assert_string_equal(r.msgs[0].role, "system");
	assert_string_equal(r.msgs[0].content, "be brief");
	assert_string_equal(r.msgs[1].content, "Once upon");
	assert_string_equal(r.msgs[2].role, "assistant");
	assert_string_equal(r.msgs[2].content, "");
	assert_string_equal(r.msgs[3].content, "a time");
	assert_int_equal(r.max_tokens, 7); /* max_completion_tokens wins */
	assert_true(r.temperature == 0.0f);
	assert_true(r.top_p == 0.5f);
	assert_int_equal(r.top_k, 40);
	assert_true(r.has_seed);
	assert_true(r.seed == UINT64_MAX);
	assert_int_equal(r.n_stop, 2); /* the empty one is dropped */
	assert_string_equal(r.stop[0], "\n");
	assert_string_equal(r.stop[1], "END");
	assert_true(r.stream);
	assert_true(r.include_usage);
	assert_string_equal(r.user, "u1");
	oai_req_release(&r);
	assert_null(r.model);
}

static void test_defaults(void **st)
{
	struct ciel_err err = {0};
	struct oai_req r;

	(void)st;
	assert_int_equal(
	    parse(OAI_CHAT,
		  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
		  "\"temperature\":null,\"stop\":\"x\",\"seed\":null}",
		  &r, &err),
	    0);
	assert_int_equal(r.max_tokens, -1);
	assert_true(r.temperature == 1.0f);
	assert_true(r.top_p == 1.0f);
	assert_int_equal(r.top_k, 0);
	assert_false(r.has_seed);
	assert_false(r.stream);
	assert_int_equal(r.n_stop, 1);
	assert_string_equal(r.stop[0], "x");
	oai_req_release(&r);
}

static void test_completion_ok(void **st)
{
	struct ciel_err err = {0};
	struct oai_req r;

	(void)st;
	assert_int_equal(
	    parse(OAI_COMPLETION,
		  "{\"model\":\"m\",\"prompt\":[\"Once upon a time\"],\"max_tokens\":3,"
		  "\"echo\":false,\"logprobs\":null,\"best_of\":1,\"suffix\":null}",
		  &r, &err),
	    0);
	assert_string_equal(r.prompt, "Once upon a time");
	assert_int_equal(r.prompt_len, 16);
	assert_int_equal(r.max_tokens, 3);
	assert_null(r.msgs);
	oai_req_release(&r);
	assert_int_equal(parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"\"}", &r, &err), 0);
	assert_int_equal(r.prompt_len, 0);
	oai_req_release(&r);
}

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static const struct bad {
	enum oai_kind kind;
	const char *body;
	const char *param; /* "" = null */
	const char *code;  /* "" = null */
} bad[] = {
    {OAI_CHAT, "", "", ""},
    {OAI_CHAT, "{\"model\":", "", ""},
    {OAI_CHAT, "[1]", "", ""},
    {OAI_CHAT, "{\"model\":\"m\",\"model\":\"n\"," MSG "}", "", ""},
    {OAI_CHAT, "{" MSG "}", "model", "missing_required_parameter"},
    {OAI_CHAT, "{\"model\":3," MSG "}", "model", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"\"," MSG "}", "model", "invalid_value"},
    {OAI_CHAT, "{\"model\":\"m\"}", "messages", "missing_required_parameter"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "empty_array"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[3]}", "messages[0]", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role",
     "missing_required_parameter"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}",
     "messages[0].role", "invalid_value"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
     "messages[0].role", "unsupported_value"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\"}]}",
     "messages[1].content", "missing_required_parameter"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
     "messages[0].content", "invalid_type"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
     "messages[0].content[0].type", "unsupported_value"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
     "messages[0].content[0].text", "missing_required_parameter"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":\"hot\"}", "temperature", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":2.5}", "temperature",
     "decimal_above_max_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":-0.1}", "temperature",
     "decimal_below_min_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"top_p\":0}", "top_p", "decimal_below_min_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"top_p\":1.5}", "top_p", "decimal_above_max_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"top_k\":-1}", "top_k", "integer_below_min_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"max_tokens\":0}", "max_tokens",
     "integer_below_min_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"max_tokens\":1.5}", "max_tokens", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"max_completion_tokens\":99999999999}",
     "max_completion_tokens", "integer_above_max_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"seed\":\"7\"}", "seed", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"n\":2}", "n", "unsupported_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop",
     "array_above_max_length"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",1]}", "stop[1]", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"stop\":7}", "stop", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"stream\":\"yes\"}", "stream", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":true}}",
     "stream_options", "invalid_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
     "stream_options.include_usage", "invalid_type"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"presence_penalty\":0.5}", "presence_penalty",
     "unsupported_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"frequency_penalty\":-1}", "frequency_penalty",
     "unsupported_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"frequency_penalty\":3}", "frequency_penalty",
     "decimal_above_max_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"logprobs\":true}", "logprobs", "unsupported_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\"}]}", "tools",
     "unsupported_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_object\"}}",
     "response_format", "unsupported_value"},
    {OAI_CHAT, "{\"model\":\"m\"," MSG ",\"user\":5}", "user", "invalid_type"},
    {OAI_COMPLETION, "{\"model\":\"m\"}", "prompt", "missing_required_parameter"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":5}", "prompt", "invalid_type"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "prompt", "unsupported_value"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2,3]}", "prompt", "unsupported_value"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}", "echo",
     "unsupported_value"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":3}", "best_of",
     "unsupported_value"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":2}", "logprobs",
     "unsupported_value"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"end\"}", "suffix",
     "unsupported_value"},
};

static void test_bad_bodies(void **st)
{
	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ciel_err err = {0};
		struct oai_req r;
		int rc = parse(bad[i].kind, bad[i].body, &r, &err);

		if (rc != -1 || strcmp(err.field, bad[i].param) || strcmp(r.err_code, bad[i].code))
			fail_msg("body %zu %s: rc %d param '%s' code '%s' (%s); want '%s' '%s'", i,
				 bad[i].body, rc, err.field, r.err_code, err.msg, bad[i].param,
				 bad[i].code);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_true(err.msg[0] != '\0');
		oai_req_release(&r);
	}
}

static void test_too_big(void **st)
{
	struct ciel_err err = {0};
	struct oai_req r;

	(void)st;
	assert_int_equal(oai_parse(OAI_CHAT, "{}", OAI_MAX_BODY + 1, &r, &err), -1);
	assert_int_equal(err.code, CIEL_ETOOBIG);
	assert_int_equal(oai_status(err.code), 413);
	oai_req_release(&r);
}

/* Parse JSON text we built; asserts it is JSON. */
static json_t *load(const char *text)
{
	json_error_t je;
	json_t *j;

	assert_non_null(text);
	j = json_loads(text, JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("not JSON (%s): %s", je.text, text);
	return j;
}

/* An SSE event: "data: " JSON "\n\n". */
static json_t *load_sse(const char *ev)
{
	size_t n;
	char *body;
	json_t *j;

	assert_non_null(ev);
	n = strlen(ev);
	assert_true(n > 8);
	assert_memory_equal(ev, "data: ", 6);
	assert_string_equal(ev + n - 2, "\n\n");
	assert_null(memchr(ev, '\n', n - 2)); /* one line: no framing break inside */
	body = strndup(ev + 6, n - 8);
	j = load(body);
	free(body);
	return j;
}

static void test_answers(void **st)
{
	char id[OAI_ID_LEN], id2[OAI_ID_LEN];
	char *t;
	json_t *j;

	(void)st;
	oai_new_id(OAI_CHAT, id);
	oai_new_id(OAI_CHAT, id2);
	assert_int_equal(strncmp(id, "chatcmpl-", 9), 0);
	assert_int_equal(strlen(id), 9 + 32);
	assert_string_not_equal(id, id2);
	oai_new_id(OAI_COMPLETION, id2);
	assert_int_equal(strncmp(id2, "cmpl-", 5), 0);

	t = oai_answer_json(OAI_CHAT, id, 1700000000, "stories", "fp_x", "Hi \"you\"\n", 9, "stop",
			    5, 3);
	j = load(t);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
	assert_string_equal(json_string_value(json_object_get(j, "id")), id);
	assert_int_equal(json_integer_value(json_object_get(j, "created")), 1700000000);
	assert_string_equal(json_string_value(json_object_get(j, "model")), "stories");
	assert_string_equal(json_string_value(json_object_get(j, "system_fingerprint")), "fp_x");
	{
		json_t *c = json_array_get(json_object_get(j, "choices"), 0);
		json_t *m = json_object_get(c, "message");
		json_t *u = json_object_get(j, "usage");

		assert_int_equal(json_integer_value(json_object_get(c, "index")), 0);
		assert_string_equal(json_string_value(json_object_get(m, "role")), "assistant");
		assert_string_equal(json_string_value(json_object_get(m, "content")),
				    "Hi \"you\"\n");
		assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "stop");
		assert_true(json_is_null(json_object_get(c, "logprobs")));
		assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 5);
		assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 3);
		assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 8);
	}
	json_decref(j);
	free(t);

	t = oai_answer_json(OAI_COMPLETION, id2, 1, "m", NULL, "abc", 3, "length", 1, 2);
	j = load(t);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
	assert_null(json_object_get(j, "system_fingerprint"));
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(j, "choices"), 0), "text")),
			    "abc");
	json_decref(j);
	free(t);
}

static void test_invalid_utf8_replaced(void **st)
{
	/* a split character (two invalid bytes) and a NUL byte must not break the JSON */
	char *t =
	    oai_answer_json(OAI_COMPLETION, "cmpl-1", 1, "m", NULL, "a\xe2\x82\0b", 5, NULL, 0, 0);
	json_t *j = load(t), *c;

	(void)st;
	c = json_array_get(json_object_get(j, "choices"), 0);
	assert_int_equal(json_string_length(json_object_get(c, "text")), 9);
	assert_memory_equal(json_string_value(json_object_get(c, "text")),
			    "a\xef\xbf\xbd\xef\xbf\xbd\0b", 9);
	assert_true(json_is_null(json_object_get(c, "finish_reason")));
	json_decref(j);
	free(t);
}

static void test_chunks(void **st)
{
	char *ev;
	json_t *j, *c, *d;

	(void)st;
	ev = oai_chunk_sse(OAI_CHAT, "chatcmpl-1", 5, "m", "fp", 1, "", 0, NULL, 1);
	j = load_sse(ev);
	assert_string_equal(json_string_value(json_object_get(j, "object")),
			    "chat.completion.chunk");
	c = json_array_get(json_object_get(j, "choices"), 0);
	d = json_object_get(c, "delta");
	assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
	assert_string_equal(json_string_value(json_object_get(d, "content")), "");
	assert_true(json_is_null(json_object_get(c, "finish_reason")));
	assert_true(json_is_null(json_object_get(j, "usage")));
	assert_non_null(json_object_get(j, "usage"));
	json_decref(j);
	free(ev);

	ev = oai_chunk_sse(OAI_CHAT, "chatcmpl-1", 5, "m", "fp", 0, "line\n\nnext", 10, NULL, 0);
	j = load_sse(ev);
	d = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
	assert_string_equal(json_string_value(json_object_get(d, "content")), "line\n\nnext");
	assert_null(json_object_get(d, "role"));
	assert_null(json_object_get(j, "usage"));
	json_decref(j);
	free(ev);

	ev = oai_chunk_sse(OAI_CHAT, "chatcmpl-1", 5, "m", "fp", 0, "", 0, "length", 0);
	j = load_sse(ev);
	c = json_array_get(json_object_get(j, "choices"), 0);
	assert_int_equal(json_object_size(json_object_get(c, "delta")), 0);
	assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "length");
	json_decref(j);
	free(ev);

	ev = oai_chunk_sse(OAI_COMPLETION, "cmpl-1", 5, "m", NULL, 0, "xy", 2, NULL, 0);
	j = load_sse(ev);
	assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
	c = json_array_get(json_object_get(j, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(c, "text")), "xy");
	json_decref(j);
	free(ev);

	ev = oai_usage_sse(OAI_CHAT, "chatcmpl-1", 5, "m", "fp", 4, 6);
	j = load_sse(ev);
	assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 10);
	json_decref(j);
	free(ev);
	assert_string_equal(OAI_SSE_DONE, "data: [DONE]\n\n");
}

static void test_models(void **st)
{
	const char *names[] = {"stories", "mistral-7b"};
	char *t = oai_models_json(names, 2, 42, "ciel");
	json_t *j = load(t), *m;

	(void)st;
	assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
	assert_int_equal(json_array_size(json_object_get(j, "data")), 2);
	m = json_array_get(json_object_get(j, "data"), 1);
	assert_string_equal(json_string_value(json_object_get(m, "id")), "mistral-7b");
	assert_string_equal(json_string_value(json_object_get(m, "object")), "model");
	assert_int_equal(json_integer_value(json_object_get(m, "created")), 42);
	assert_string_equal(json_string_value(json_object_get(m, "owned_by")), "ciel");
	json_decref(j);
	free(t);
	t = oai_model_json("stories", 1, NULL);
	j = load(t);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "stories");
	json_decref(j);
	free(t);
}

static void test_errors(void **st)
{
	struct ciel_err err = {0};
	struct oai_req r;
	int status = 0;
	char *t;
	json_t *j, *e;

	(void)st;
	assert_int_equal(parse(OAI_CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":9}", &r, &err),
			 -1);
	t = oai_error_from(&err, r.err_code, &status);
	assert_int_equal(status, 400);
	j = load(t);
	e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
	assert_string_equal(json_string_value(json_object_get(e, "param")), "temperature");
	assert_string_equal(json_string_value(json_object_get(e, "code")),
			    "decimal_above_max_value");
	assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "temperature"));
	json_decref(j);
	free(t);
	oai_req_release(&r);

	t = oai_error_json(401, "bad key", NULL, "invalid_api_key");
	j = load(t);
	e = json_object_get(j, "error");
	assert_true(json_is_null(json_object_get(e, "param")));
	assert_string_equal(json_string_value(json_object_get(e, "code")), "invalid_api_key");
	json_decref(j);
	free(t);

	t = oai_error_sse(500, "boom", "", "");
	j = load_sse(t);
	e = json_object_get(j, "error");
	assert_string_equal(json_string_value(json_object_get(e, "type")), "server_error");
	assert_true(json_is_null(json_object_get(e, "code")));
	json_decref(j);
	free(t);

	assert_int_equal(oai_status(CIEL_EQUOTA), 429);
	assert_int_equal(oai_status(CIEL_EUNAVAIL), 503);
	assert_int_equal(oai_status(CIEL_ENOTFOUND), 404);
	assert_string_equal(oai_error_type(429), "rate_limit_error");
	assert_string_equal(oai_error_type(503), "service_unavailable_error");
	assert_string_equal(oai_error_type(404), "invalid_request_error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chat_ok),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_completion_ok),
	    cmocka_unit_test(test_bad_bodies),
	    cmocka_unit_test(test_too_big),
	    cmocka_unit_test(test_answers),
	    cmocka_unit_test(test_invalid_utf8_replaced),
	    cmocka_unit_test(test_chunks),
	    cmocka_unit_test(test_models),
	    cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
