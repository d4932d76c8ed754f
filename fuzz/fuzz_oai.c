/*
 * libFuzzer: every request body the worker and cield's proxy read goes
 * through oai_parse, as a chat and as a completion; whatever parses is then
 * fed to the answer and chunk builders, which must always give JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "llm/oai.h"

static void check_json(char *text, int sse)
{
	json_t *j;

	if (!text)
		return;
	if (sse) {
		size_t n = strlen(text);

		if (n < 8 || memcmp(text, "data: ", 6) || memcmp(text + n - 2, "\n\n", 2) ||
		    memchr(text, '\n', n - 2))
			abort();
		text[n - 2] = '\0';
	}
	j = json_loads(text + (sse ? 6 : 0), JSON_ALLOW_NUL, NULL);
	if (!j)
		abort(); /* a builder made something that is not JSON */
	json_decref(j);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum oai_kind kinds[] = {OAI_CHAT, OAI_COMPLETION};

	for (size_t i = 0; i < 2; i++) {
		struct ciel_err err = {0};
		struct oai_req r;
		int status;

		if (oai_parse(kinds[i], (const char *)data, size, &r, &err) == 0) {
			const char *text =
			    kinds[i] == OAI_CHAT ? r.msgs[r.n_msgs - 1].content : r.prompt;

			if (r.n_stop > OAI_MAX_STOP || !r.model[0])
				abort();
			check_json(oai_answer_json(kinds[i], "id", 1, r.model, r.user, text,
						   strlen(text), "stop", 1, 2),
				   0);
			check_json(oai_chunk_sse(kinds[i], "id", 1, r.model, NULL, r.stream, text,
						 strlen(text), NULL, r.include_usage),
				   1);
		} else {
			if (!err.msg[0])
				abort(); /* every refusal says why */
			check_json(oai_error_from(&err, r.err_code, &status), 0);
		}
		oai_req_release(&r);
	}
	/* raw bytes (any UTF-8 or none) as generated text */
	check_json(
	    oai_chunk_sse(OAI_CHAT, "id", 1, "m", NULL, 0, (const char *)data, size, NULL, 0), 1);
	return 0;
}
