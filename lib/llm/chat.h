/*
 * chat — chat templates, recognised from the model's template text.
 *
 * GGUF and tokenizer_config.json carry a Jinja template; we do not run
 * Jinja. We recognise the families by markers in the text and render them
 * in C: ChatML (<|im_start|>), Llama-3 (<|start_header_id|>) and Mistral
 * ([INST]). Any other template is an error that says which families we know.
 * A model with no template at all (base models such as stories260K) gets
 * CHAT_NONE: the messages' contents joined with newlines, no markers.
 */
#ifndef CIEL_CHAT_H
#define CIEL_CHAT_H

#include <stddef.h>

#include "util/dbuf.h"
#include "util/err.h"

enum chat_kind { CHAT_NONE = 0, CHAT_CHATML, CHAT_LLAMA3, CHAT_MISTRAL };

struct chat_msg {
	const char *role; /* "system", "user", "assistant" (others refused) */
	const char *content;
};

/* tmpl may be NULL or "" (CHAT_NONE). Unknown text: CIEL_EINVAL. */
int chat_detect(const char *tmpl, enum chat_kind *out, struct ciel_err *err);
const char *chat_kind_name(enum chat_kind k);

/*
 * Append the prompt text for msgs to out, ending with the assistant header
 * (generation prompt). bos is the BOS token's text the template writes
 * itself (Llama-3, Mistral), or NULL; callers then encode with TOK_SPECIAL
 * and without TOK_BOS when the template wrote it. Role order rules of the
 * family (Mistral: alternating user/assistant, system folded into the first
 * user turn) are enforced with CIEL_EINVAL naming "messages".
 */
int chat_render(enum chat_kind k, const struct chat_msg *msgs, size_t n, const char *bos,
		struct dbuf *out, struct ciel_err *err);
/* Does the rendered text already start with BOS (so the encoder must not add one)? */
int chat_writes_bos(enum chat_kind k);

#endif
