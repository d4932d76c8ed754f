/*
 * fuzz_tok — the tokenizers on hostile input, two ways:
 * - the first byte's low bit clear: the rest is a tokenizer.json (plus a
 *   tokenizer_config.json after a NUL, if any) to load; what loads must then
 *   encode and decode its own input without fault;
 * - set: the rest is text, encoded with stories260K's SentencePiece vocabulary
 *   (CIEL_FUZZ_TOK_MODEL, else the shared models beside the source tree, else
 *   a small built-in vocabulary) and with a small byte-level BPE built here,
 *   whose decode must give the text back byte for byte.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/gguf.h"
#include "llm/tok.h"
#include "llm/uni.h"
#include "util/dbuf.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gguf *g_model;
static struct tok *spm, *bpe;

/* A byte-level BPE: the 256 byte pieces (GPT-2 map) and a few merges. */
static struct tok *build_bpe(void)
{
	static const char head[] =
	    "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{";
	struct dbuf b;
	struct tok *t = NULL;
	uint32_t next = 256;

	dbuf_init(&b, DBUF_NO_MAX);
	dbuf_addstr(&b, head);
	for (unsigned i = 0; i < 256; i++) {
		int keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
		char u[8];
		size_t n = uni_put(keep ? i : next++, u);
		json_t *s = json_stringn(u, n);
		char *q = json_dumps(s, JSON_ENCODE_ANY);

		dbuf_printf(&b, "%s%s:%u", i ? "," : "", q, i);
		free(q);
		json_decref(s);
	}
	dbuf_addstr(
	    &b,
	    ",\"he\":256,\"ll\":257,\"hell\":258,\"\\u0120t\":259,\"\\u0120the\":260,"
	    "\"\\u0120\\u0120\":261},\"merges\":[\"h e\",\"l l\",\"he ll\",\"\\u0120 t\","
	    "\"\\u0120t he\",\"\\u0120 \\u0120\"]},"
	    "\"added_tokens\":[{\"id\":262,\"content\":\"<|eot_id|>\",\"special\":true}],"
	    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
	    "\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
	    "\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
	    "\\\\s+(?!\\\\S)|\\\\s+\"}},{\"type\":\"ByteLevel\",\"use_regex\":false}]}}");
	if (tok_from_hf_buf(&t, b.buf, b.len, NULL, 0, NULL) < 0)
		abort();
	dbuf_release(&b);
	return t;
}

/* stories260K's vocabulary, or an SPM one of byte tokens and a few pieces. */
static struct tok *build_spm(void)
{
	const char *env = getenv("CIEL_FUZZ_TOK_MODEL");
	char path[4096];
	struct tok *t = NULL;
	const char *src = __FILE__, *cut = strstr(src, "/fuzz/fuzz_tok.c");

	if (env)
		snprintf(path, sizeof(path), "%s", env);
	else if (cut)
		snprintf(path, sizeof(path),
			 "%.*s/../shared/models/stories260K/stories260k-f32.v3.gguf",
			 (int)(cut - src), src);
	else
		path[0] = 0;
	if (path[0] && gguf_open(&g_model, path, NULL) == 0 &&
	    tok_from_gguf(&t, g_model, NULL) == 0)
		return t;
	fprintf(stderr, "fuzz_tok: %s not usable, built-in SPM vocabulary\n", path);
	static const char spm_json[] =
	    "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,"
	    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"\\u2581\":3,\"a\":4,\"b\":5,"
	    "\"\\u2581a\":6,\"ab\":7,\"<0x41>\":8,\"<0xC3>\":9},\"merges\":[\"\\u2581 a\",\"a "
	    "b\"]},"
	    "\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
	    "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\"}}";
	if (tok_from_hf_buf(&t, spm_json, sizeof(spm_json) - 1, NULL, 0, NULL) < 0)
		abort();
	return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	spm = build_spm();
	bpe = build_bpe();
	return 0;
}

/* Encode, then decode every id; returns the decoded bytes (caller frees). */
static char *encode_decode(const struct tok *t, const char *s, size_t n, int flags, size_t *out_len)
{
	int32_t *ids;
	size_t k;
	struct dbuf d;

	if (tok_encode(t, s, n, flags, &ids, &k, NULL) < 0)
		abort(); /* any text under the limit must encode */
	dbuf_init(&d, DBUF_NO_MAX);
	for (size_t i = 0; i < k; i++) {
		char buf[64];
		int m = tok_decode(t, ids[i], flags, buf, sizeof(buf));

		if (m < 0 || ids[i] >= tok_n_vocab(t))
			abort();
		if ((size_t)m > sizeof(buf)) {
			char *big = malloc((size_t)m);

			tok_decode(t, ids[i], flags, big, (size_t)m);
			dbuf_add(&d, big, (size_t)m);
			free(big);
		} else {
			dbuf_add(&d, buf, (size_t)m);
		}
	}
	free(ids);
	dbuf_add(&d, NULL, 0);
	return dbuf_detach(&d, out_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;
	size_t n = size ? size - 1 : 0, dn;
	char *d;

	if (!size)
		return 0;
	if (!(data[0] & 1)) {
		const char *nul = memchr(s, 0, n);
		size_t jn = nul ? (size_t)(nul - s) : n;
		struct tok *t = NULL;

		if (tok_from_hf_buf(&t, s, jn, nul ? nul + 1 : NULL, nul ? n - jn - 1 : 0, NULL) ==
		    0) {
			free(encode_decode(t, s, n, TOK_SPECIAL | TOK_BOS, &dn));
			tok_free(t);
		}
		return 0;
	}
	free(encode_decode(spm, s, n, (data[0] >> 1) & 3, &dn));
	/* byte-level BPE is lossless: without specials decode(encode(x)) == x */
	d = encode_decode(bpe, s, n, 0, &dn);
	if (dn != n || memcmp(d, s, n))
		abort();
	free(d);
	return 0;
}
