/*
 * chat — see chat.h.
 *
 * The renderings follow the families' reference templates byte for byte
 * (checked against a Jinja renderer in tests/integration/t0092): Llama-3 trims
 * each message's content (its template applies `| trim`), ChatML and
 * Mistral do not.
 */
#include "llm/chat.h"

#include <string.h>

#include "llm/uni.h"

const char *chat_kind_name(enum chat_kind k)
{
	switch (k) {
	case CHAT_CHATML:
		return "chatml";
	case CHAT_LLAMA3:
		return "llama3";
	case CHAT_MISTRAL:
		return "mistral";
	case CHAT_NONE:
		break;
	}
	return "none";
}

int chat_detect(const char *tmpl, enum chat_kind *out, struct ciel_err *err)
{
	*out = CHAT_NONE;
	if (!tmpl || !*tmpl)
		return 0;
	/* Most specific marker first: a Llama-3 template never holds <|im_start|>. */
	if (strstr(tmpl, "<|start_header_id|>") && strstr(tmpl, "<|eot_id|>"))
		*out = CHAT_LLAMA3;
	else if (strstr(tmpl, "<|im_start|>"))
		*out = CHAT_CHATML;
	else if (strstr(tmpl, "[INST]"))
		*out = CHAT_MISTRAL;
	else
		return ciel_err_field(
		    err, CIEL_EINVAL, "chat_template",
		    "chat template not recognised (known: chatml, llama3, mistral)");
	return 0;
}

int chat_writes_bos(enum chat_kind k)
{
	return k == CHAT_LLAMA3 || k == CHAT_MISTRAL;
}

/* Jinja's trim: white space off both ends (Unicode White_Space). */
static void trim(const char *s, const char **start, size_t *len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), b = 0, e = n;

	while (b < e) {
		size_t adv;
		uint32_t cp = uni_next(p + b, e - b, &adv);

		if (cp == UNI_BAD || uni_class(cp) != UNI_SPACE)
			break;
		b += adv;
	}
	while (e > b) {
		size_t k = e - 1, adv;

		while (k > b && (p[k] & 0xc0) == 0x80 && e - k < 4)
			k--;
		uint32_t cp = uni_next(p + k, e - k, &adv);

		if (cp == UNI_BAD || k + adv != e || uni_class(cp) != UNI_SPACE)
			break;
		e = k;
	}
	*start = s + b;
	*len = e - b;
}

static int role_ok(const char *r)
{
	return r && (!strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant"));
}

static int render_llama3(const struct chat_msg *msgs, size_t n, const char *bos, struct dbuf *out)
{
	if (bos)
		dbuf_addstr(out, bos);
	for (size_t i = 0; i < n; i++) {
		const char *c;
		size_t len;

		trim(msgs[i].content, &c, &len);
		dbuf_printf(out, "<|start_header_id|>%s<|end_header_id|>\n\n", msgs[i].role);
		dbuf_add(out, c, len);
		dbuf_addstr(out, "<|eot_id|>");
	}
	return dbuf_addstr(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static int render_chatml(const struct chat_msg *msgs, size_t n, struct dbuf *out)
{
	for (size_t i = 0; i < n; i++)
		dbuf_printf(out, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role, msgs[i].content);
	return dbuf_addstr(out, "<|im_start|>assistant\n");
}

/*
 * Mistral v0.1/v0.2: <s>[INST] {user} [/INST]{assistant}</s>[INST] ... [/INST]
 * A leading system message is folded into the first user turn.
 */
static int render_mistral(const struct chat_msg *msgs, size_t n, const char *bos, struct dbuf *out,
			  struct ciel_err *err)
{
	const char *sys = NULL;
	size_t i = 0, turn = 0;

	if (n && !strcmp(msgs[0].role, "system")) {
		sys = msgs[0].content;
		i = 1;
	}
	if (bos)
		dbuf_addstr(out, bos);
	for (; i < n; i++, turn++) {
		const char *want = turn % 2 ? "assistant" : "user";

		if (strcmp(msgs[i].role, want))
			return ciel_err_field(
			    err, CIEL_EINVAL, "messages",
			    "messages[%zu]: the Mistral template needs an optional "
			    "system message, then user and assistant turns in "
			    "alternation; got '%s' where '%s' belongs",
			    i, msgs[i].role, want);
		if (turn % 2) {
			dbuf_addstr(out, msgs[i].content);
			dbuf_addstr(out, "</s>");
		} else if (sys && turn == 0) {
			dbuf_printf(out, "[INST] %s\n\n%s [/INST]", sys, msgs[i].content);
		} else {
			dbuf_printf(out, "[INST] %s [/INST]", msgs[i].content);
		}
	}
	if (turn % 2 == 0)
		return ciel_err_field(
		    err, CIEL_EINVAL, "messages",
		    "the last message must be the user's for the Mistral template");
	return 0;
}

int chat_render(enum chat_kind k, const struct chat_msg *msgs, size_t n, const char *bos,
		struct dbuf *out, struct ciel_err *err)
{
	int rc = 0;

	if (!n)
		return ciel_err_field(err, CIEL_EINVAL, "messages", "messages must not be empty");
	for (size_t i = 0; i < n; i++) {
		if (!role_ok(msgs[i].role))
			return ciel_err_field(err, CIEL_EINVAL, "messages",
					      "messages[%zu]: role '%.32s' is not system, user or "
					      "assistant",
					      i, msgs[i].role ? msgs[i].role : "(none)");
		if (!msgs[i].content)
			return ciel_err_field(err, CIEL_EINVAL, "messages",
					      "messages[%zu]: content is missing", i);
	}
	switch (k) {
	case CHAT_LLAMA3:
		rc = render_llama3(msgs, n, bos, out);
		break;
	case CHAT_CHATML:
		rc = render_chatml(msgs, n, out);
		break;
	case CHAT_MISTRAL:
		rc = render_mistral(msgs, n, bos, out, err);
		break;
	case CHAT_NONE:
		for (size_t i = 0; i < n; i++) {
			if (i)
				dbuf_addstr(out, "\n");
			rc = dbuf_addstr(out, msgs[i].content);
		}
		break;
	default:
		return ciel_err_set(err, CIEL_EINVAL, "unknown chat template kind %d", (int)k);
	}
	if (out->toobig || out->nomem)
		return ciel_err_field(err, out->toobig ? CIEL_ETOOBIG : CIEL_ENOMEM, "messages",
				      "the rendered prompt is too large");
	return rc;
}
