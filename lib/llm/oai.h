/*
 * oai — the OpenAI-compatible wire format, without any HTTP.
 *
 * Request bodies of /chat/completions and /completions are parsed and
 * validated into a struct oai_req; answers, SSE chunks, the model list and
 * OpenAI-shaped errors are built as JSON text here. Both the model worker
 * (ciel-llm serve) and cield's proxy use it, and it is fuzzed, so it takes
 * arbitrary bytes and never trusts them: a body past OAI_MAX_BODY, malformed
 * JSON, a wrong type or a value out of range is an error that names the
 * field ("param") the way OpenAI does. Fields we do not know are ignored,
 * as OpenAI ignores them; fields we know but cannot honour (n > 1,
 * logprobs, non-zero penalties, tools) are refused, never silently dropped.
 *
 * Errors: on failure oai_parse returns -1 with err->code CIEL_EINVAL (or
 * CIEL_ETOOBIG for the body size), err->field the OpenAI "param" ("" for
 * null) and req->err_code the OpenAI "code" string ("" for null).
 *
 * Text given to the builders need not be valid UTF-8: invalid bytes become
 * U+FFFD (NUL bytes \u0000), so a JSON answer is always well-formed.
 */
#ifndef CIEL_OAI_H
#define CIEL_OAI_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define OAI_MAX_BODY (1u << 20) /* bytes of a request body (413 past it) */
#define OAI_MAX_MESSAGES 4096	/* entries of "messages" */
#define OAI_MAX_STOP 4		/* strings in "stop" (OpenAI's limit) */
#define OAI_MAX_STOP_LEN 256	/* bytes of one stop string */
#define OAI_MAX_MODEL_LEN 256	/* bytes of "model" */
#define OAI_ID_LEN 48		/* room for "chatcmpl-" + 32 hex + NUL */

enum oai_kind {
	OAI_CHAT = 1,	    /* POST .../chat/completions */
	OAI_COMPLETION = 2, /* POST .../completions (legacy text completions) */
};

struct oai_msg {
	char *role;    /* "system", "user" or "assistant" ("developer" is read as "system") */
	char *content; /* string content, or the text parts joined (no separator) */
};

struct oai_req {
	enum oai_kind kind;
	char *model; /* required, non-empty */
	/* OAI_CHAT: non-empty */
	struct oai_msg *msgs;
	size_t n_msgs;
	/* OAI_COMPLETION: a string or an array of exactly one string */
	char *prompt;
	size_t prompt_len;
	int32_t max_tokens; /* max_completion_tokens, else max_tokens; -1 if neither */
	float temperature;  /* 0..2, default 1 (as OpenAI) */
	float top_p;	    /* (0..1], default 1 */
	int32_t top_k;	    /* extension: 0 (off) .. 1e6, default 0 */
	int has_seed;
	uint64_t seed; /* only when has_seed */
	char *stop[OAI_MAX_STOP];
	size_t n_stop;
	int stream;
	int include_usage; /* stream_options.include_usage */
	char *user;	   /* NULL if absent; never logged */
	char err_code[48]; /* OpenAI error code on failure, "" for null */
};

/*
 * Parse len bytes of body (not NUL-terminated) as a request of kind into
 * req (which it initialises; release it with oai_req_release whatever the
 * result). 0, or -1 with err filled (see the top of this file).
 */
int oai_parse(enum oai_kind kind, const char *body, size_t len, struct oai_req *req,
	      struct ciel_err *err);
/* Free everything req holds; it is left zeroed. */
void oai_req_release(struct oai_req *req);

/* "chatcmpl-<32 hex>" or "cmpl-<32 hex>" from /dev/urandom into id[OAI_ID_LEN]. */
void oai_new_id(enum oai_kind kind, char id[OAI_ID_LEN]);

/*
 * The JSON texts below are malloc'd, NUL-terminated, owned by the caller
 * (free()); NULL only when out of memory. finish is "stop", "length" or
 * NULL (JSON null). created is Unix seconds. fingerprint is the
 * system_fingerprint (NULL: omitted).
 */

/* A whole answer: chat.completion (choices[0].message) or text_completion
 * (choices[0].text), with usage. */
char *oai_answer_json(enum oai_kind kind, const char *id, int64_t created, const char *model,
		      const char *fingerprint, const char *text, size_t len, const char *finish,
		      uint32_t prompt_tokens, uint32_t completion_tokens);

/*
 * One SSE event, "data: {...}\n\n", of a stream: chat.completion.chunk
 * (choices[0].delta: {"role":"assistant","content":""} when first is set,
 * {"content":text} otherwise, {} when finish is set and len is 0) or
 * text_completion (choices[0].text). with_usage_null adds "usage":null, as
 * OpenAI does on every chunk but the last when include_usage is on.
 */
char *oai_chunk_sse(enum oai_kind kind, const char *id, int64_t created, const char *model,
		    const char *fingerprint, int first, const char *text, size_t len,
		    const char *finish, int with_usage_null);
/* The usage event of a stream ("choices":[] and usage), "data: {...}\n\n". */
char *oai_usage_sse(enum oai_kind kind, const char *id, int64_t created, const char *model,
		    const char *fingerprint, uint32_t prompt_tokens, uint32_t completion_tokens);
#define OAI_SSE_DONE "data: [DONE]\n\n"

/* GET /models: {"object":"list","data":[{"id","object":"model","created","owned_by"}...]}. */
char *oai_models_json(const char *const *names, size_t n, int64_t created, const char *owned_by);
/* GET /models/{id}: one model object. */
char *oai_model_json(const char *name, int64_t created, const char *owned_by);

/*
 * OpenAI-shaped error {"error":{"message","type","param","code"}}; param
 * and code NULL or "" give JSON null. type follows the status as OpenAI's
 * does: 4xx "invalid_request_error" (401 too, with code "invalid_api_key"
 * from the caller), 403 "permission_error", 429 "rate_limit_error", 503
 * "service_unavailable_error", other 5xx "server_error". Stream errors after the headers went out
 * use the same body as an SSE event: oai_error_sse.
 */
char *oai_error_json(int status, const char *message, const char *param, const char *code);
char *oai_error_sse(int status, const char *message, const char *param, const char *code);
const char *oai_error_type(int status);
/*
 * HTTP status of an error for OpenAI clients: ciel_code_http() except that
 * CIEL_EQUOTA is 429 (rate limit: clients back off and retry) and
 * CIEL_EUNAVAIL 503.
 */
int oai_status(int ciel_code);
/* oai_error_json from a ciel_err (param = err->field); *status gets the HTTP status. */
char *oai_error_from(const struct ciel_err *err, const char *code, int *status);

#endif
