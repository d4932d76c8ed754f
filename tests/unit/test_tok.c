/*
 * test_tok — the tokenizers on small vocabularies built here (byte-level
 * BPE from a tokenizer.json, SentencePiece from a GGUF written with the
 * writer), the pre-tokenizer matchers alternative by alternative, hostile
 * vocabularies (empty, duplicate pieces and ids, merges naming unknown
 * pieces, ids out of range, unknown regexes) and, when the shared models are
 * present, stories260K's real vocabulary.
 *
 * It includes tok.c to reach the matchers (the library's copy is then not
 * linked in).
 */
#include "../../lib/llm/tok.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- helpers ----------------------------------------------------------- */

static size_t n_ids;

static int32_t *enc(const struct tok *t, const char *s, int flags)
{
	struct ciel_err err = {0};
	int32_t *ids = NULL;

	if (tok_encode(t, s, strlen(s), flags, &ids, &n_ids, &err) < 0) {
		print_message("encode '%s': %s\n", s, err.msg);
		fail();
	}
	return ids;
}

static void expect_ids(const struct tok *t, const char *s, int flags, const int32_t *want, size_t n)
{
	int32_t *ids = enc(t, s, flags);

	if (n_ids != n || (n && memcmp(ids, want, n * sizeof(*ids)))) {
		print_message("'%s': got %zu ids:", s, n_ids);
		for (size_t i = 0; i < n_ids; i++)
			print_message(" %d", ids[i]);
		print_message("\n");
		free(ids);
		fail();
	}
	free(ids);
}

/* decode(ids) as one string (caller frees). */
static char *dec_all(const struct tok *t, const int32_t *ids, size_t n, int flags)
{
	struct dbuf b;

	dbuf_init(&b, DBUF_NO_MAX);
	for (size_t i = 0; i < n; i++) {
		char buf[64];
		int k = tok_decode(t, ids[i], flags, buf, sizeof(buf));

		assert_true(k >= 0 && k <= (int)sizeof(buf));
		dbuf_add(&b, buf, (size_t)k);
	}
	dbuf_add(&b, NULL, 0);
	return dbuf_detach(&b, NULL);
}

static void expect_roundtrip(const struct tok *t, const char *s, const char *want)
{
	int32_t *ids = enc(t, s, 0);
	char *d = dec_all(t, ids, n_ids, 0);

	assert_string_equal(d, want ? want : s);
	free(d);
	free(ids);
}

/* The GPT-2 byte map's code point for byte b, as UTF-8. */
static const char *bchar(unsigned b)
{
	static char buf[8];
	size_t n = uni_put(byte_to_cp(b), buf);

	buf[n] = 0;
	return buf;
}

/*
 * A byte-level BPE tokenizer.json: the 256 byte pieces (id = byte), then
 * merged pieces, then specials. pre is the Split regex (NULL: plain ByteLevel).
 */
static char *bpe_json(const char *pre, int ignore_merges, const char *extra_vocab,
		      const char *merges, const char *added)
{
	struct dbuf b;

	dbuf_init(&b, DBUF_NO_MAX);
	dbuf_printf(&b, "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,\"vocab\":{",
		    ignore_merges ? "true" : "false");
	for (unsigned i = 0; i < 256; i++) {
		json_t *s = json_string(bchar(i));
		char *q = json_dumps(s, JSON_ENCODE_ANY);

		dbuf_printf(&b, "%s%s:%u", i ? "," : "", q, i);
		free(q);
		json_decref(s);
	}
	dbuf_printf(&b, "%s},\"merges\":[%s]},\"added_tokens\":[%s],", extra_vocab, merges, added);
	if (pre) {
		json_t *s = json_string(pre);
		char *q = json_dumps(s, JSON_ENCODE_ANY);

		dbuf_printf(
		    &b,
		    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
		    "{\"type\":\"Split\",\"pattern\":{\"Regex\":%s},\"behavior\":\"Isolated\"},"
		    "{\"type\":\"ByteLevel\",\"use_regex\":false}]}}",
		    q);
		free(q);
		json_decref(s);
	} else {
		dbuf_addstr(&b, "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}");
	}
	return dbuf_detach(&b, NULL);
}

static struct tok *hf(const char *json, const char *cfg)
{
	struct tok *t = NULL;
	struct ciel_err err = {0};

	if (tok_from_hf_buf(&t, json, strlen(json), cfg, cfg ? strlen(cfg) : 0, &err) < 0) {
		print_message("tok_from_hf_buf: %s\n", err.msg);
		fail();
	}
	return t;
}

static void hf_fails(const char *json, const char *needle)
{
	struct tok *t = NULL;
	struct ciel_err err = {0};

	assert_int_equal(tok_from_hf_buf(&t, json, strlen(json), NULL, 0, &err), -1);
	assert_null(t);
	if (!strstr(err.msg, needle)) {
		print_message("error '%s' lacks '%s'\n", err.msg, needle);
		fail();
	}
}

/* Ġ is the byte map's space. Merged pieces from id 256 on. */
#define SMALL_VOCAB                                                                \
	",\"he\":256,\"ll\":257,\"hell\":258,\"\\u0120t\":259,\"\\u0120the\":260," \
	"\"\\u0120\\u0120\":261,\"\\u0120xyz\":262"
#define SMALL_MERGES \
	"\"h e\",\"l l\",\"he ll\",\"\\u0120 t\",[\"\\u0120t\",\"he\"],\"\\u0120 \\u0120\""
#define SMALL_ADDED                                                        \
	"{\"id\":263,\"content\":\"<|eot_id|>\",\"special\":true},"        \
	"{\"id\":264,\"content\":\"<|begin_of_text|>\",\"special\":true}," \
	"{\"id\":265,\"content\":\"<tool>\",\"special\":false}"

static struct tok *small_bpe(int ignore_merges)
{
	char *j = bpe_json(LLAMA3_RE, ignore_merges, SMALL_VOCAB, SMALL_MERGES, SMALL_ADDED);
	struct tok *t = hf(j, "{\"bos_token\":\"<|begin_of_text|>\",\"add_bos_token\":true,"
			      "\"chat_template\":\"<|start_header_id|> <|eot_id|>\"}");

	free(j);
	return t;
}

/* ---- BPE ------------------------------------------------------------------ */

static void test_bpe_merges(void **st)
{
	struct tok *t = small_bpe(0);

	(void)st;
	assert_int_equal(tok_kind(t), TOK_BPE);
	assert_int_equal(tok_n_vocab(t), 266);
	assert_string_equal(tok_pre_name(t), "llama-bpe");
	/* h e l l o: "h e" (rank 0), "l l" (1), "he ll" (2), o stays */
	expect_ids(t, "hello", 0, (int32_t[]){258, 'o'}, 2);
	expect_ids(t, " the", 0, (int32_t[]){260}, 1);
	/* lowest rank first, leftmost on ties: lll -> ll + l */
	expect_ids(t, "lll", 0, (int32_t[]){257, 'l'}, 2);
	tok_free(t);
}

static void test_bpe_split_spaces(void **st)
{
	struct tok *t = small_bpe(0);
	/* byte ids are the bytes themselves; Ġ (space) is id 32 */
	(void)st;
	expect_ids(t, "a  b", 0, (int32_t[]){'a', ' ', ' ', 'b'}, 4);
	/* three spaces at the end: one run, merged by "Ġ Ġ" */
	expect_ids(t, "a   ", 0, (int32_t[]){'a', 261, ' '}, 3);
	/* \s+(?!\S) leaves one space for " the" */
	expect_ids(t, "   the", 0, (int32_t[]){261, 260}, 2);
	tok_free(t);
}

static void test_bpe_special(void **st)
{
	struct tok *t = small_bpe(0);
	int32_t *ids;

	(void)st;
	expect_ids(t, "<|eot_id|>", TOK_SPECIAL, (int32_t[]){263}, 1);
	expect_ids(t, "x<|eot_id|><|begin_of_text|>", TOK_SPECIAL | TOK_BOS,
		   (int32_t[]){264, 'x', 263, 264}, 4);
	/* without TOK_SPECIAL the text is text */
	ids = enc(t, "<|eot_id|>", 0);
	assert_true(n_ids > 1);
	for (size_t i = 0; i < n_ids; i++)
		assert_true(ids[i] < 256);
	free(ids);
	/* a user-defined (non-special) added token is matched either way */
	expect_ids(t, "<tool>", 0, (int32_t[]){265}, 1);
	assert_true(tok_is_eog(t, 263));
	assert_true(tok_is_eog(t, 264)); /* a sampled BOS ends generation too */
	assert_false(tok_is_eog(t, 265));
	assert_false(tok_is_eog(t, 'x'));
	assert_int_equal(tok_bos(t), 264);
	assert_int_equal(tok_lookup(t, "<|eot_id|>"), 263);
	assert_int_equal(tok_lookup(t, "nope"), -1);
	assert_string_equal(tok_chat_template(t), "<|start_header_id|> <|eot_id|>");
	{
		char buf[32];

		assert_int_equal(tok_decode(t, 263, 0, buf, sizeof(buf)), 0);
		assert_int_equal(tok_decode(t, 263, TOK_SPECIAL, buf, sizeof(buf)), 10);
		assert_memory_equal(buf, "<|eot_id|>", 10);
		assert_int_equal(tok_decode(t, 266, 0, buf, sizeof(buf)), -1);
		assert_int_equal(tok_decode(t, -1, 0, buf, sizeof(buf)), -1);
		/* snprintf-like: the full length even when cap is short */
		assert_int_equal(tok_decode(t, 258, 0, buf, 2), 4);
		assert_memory_equal(buf, "he", 2);
	}
	tok_free(t);
}

static void test_bpe_ignore_merges(void **st)
{
	struct tok *a = small_bpe(0), *b = small_bpe(1);

	(void)st;
	/* "Ġxyz" is a piece no merge reaches: only ignore_merges finds it */
	expect_ids(a, " xyz", 0, (int32_t[]){' ', 'x', 'y', 'z'}, 4);
	expect_ids(b, " xyz", 0, (int32_t[]){262}, 1);
	tok_free(a);
	tok_free(b);
}

static void test_bpe_roundtrip(void **st)
{
	struct tok *t = small_bpe(1);
	const char bad[] = "bad \xff\xfe \xc3( \xe2\x82";

	(void)st;
	expect_roundtrip(t, "hello the world", NULL);
	expect_roundtrip(t, "", NULL);
	expect_roundtrip(t, "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac\n\n\t x", NULL);
	/* byte-level BPE keeps any bytes, valid UTF-8 or not */
	expect_roundtrip(t, bad, NULL);
	tok_free(t);
}

static void test_bpe_gguf_same(void **st)
{
	struct tok *t = small_bpe(1), *u = NULL;
	struct gguf_writer *w = gguf_writer_new();
	struct gguf *g = NULL;
	struct ciel_err err = {0};
	char path[] = "/tmp/test_tok_XXXXXX";
	int fd = mkstemp(path);
	const char *texts[] = {"hello the world", "   the  x", "<|eot_id|>hi<tool>", " xyz",
			       "It's 1234567!\n\n"};

	(void)st;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(tok_to_gguf(t, w), 0);
	assert_int_equal(gguf_writer_write(w, path, 3, &err), 0);
	gguf_writer_free(w);
	assert_int_equal(gguf_open(&g, path, &err), 0);
	if (tok_from_gguf(&u, g, &err) < 0) {
		print_message("%s\n", err.msg);
		fail();
	}
	unlink(path);
	assert_int_equal(tok_n_vocab(u), tok_n_vocab(t));
	assert_int_equal(tok_bos(u), tok_bos(t));
	assert_string_equal(tok_chat_template(u), tok_chat_template(t));
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int32_t *a = enc(t, texts[i], TOK_SPECIAL | TOK_BOS);
		size_t na = n_ids;
		int32_t *b = enc(u, texts[i], TOK_SPECIAL | TOK_BOS);

		assert_int_equal(na, n_ids);
		assert_memory_equal(a, b, na * sizeof(*a));
		free(a);
		free(b);
	}
	tok_free(u);
	gguf_close(g);
	tok_free(t);
}

/* ---- pre-tokenizer matchers -------------------------------------------------- */

/* The words the matcher splits s into, joined with '|'. */
static char *split(const char *s, int pre)
{
	struct cps c = {0};
	struct dbuf b;

	dbuf_init(&b, DBUF_NO_MAX);
	assert_int_equal(cps_fill(&c, s, strlen(s)), 0);
	for (size_t i = 0; i < c.n;) {
		size_t e = pre == PRE_GPT2 ? match_gpt2(&c, i)
					   : match_llama3(&c, i, pre == PRE_LLAMA3 ? 3 : 1);

		assert_true(e > i && e <= c.n);
		if (i)
			dbuf_add(&b, "|", 1);
		dbuf_add(&b, s + c.pos[i], c.pos[e] - c.pos[i]);
		i = e;
	}
	dbuf_add(&b, NULL, 0);
	free(c.cp);
	free(c.pos);
	free(c.cls);
	return dbuf_detach(&b, NULL);
}

static void expect_split(const char *s, int pre, const char *want)
{
	char *got = split(s, pre);

	if (strcmp(got, want)) {
		print_message("split '%s': got '%s' want '%s'\n", s, got, want);
		free(got);
		fail();
	}
	free(got);
}

static void test_pre_llama3(void **st)
{
	(void)st;
	expect_split("Hello world", PRE_LLAMA3, "Hello| world");
	expect_split("I'm they'll IT'S", PRE_LLAMA3, "I|'m| they|'ll| IT|'S");
	expect_split("1234567", PRE_LLAMA3, "123|456|7");
	expect_split("a  b", PRE_LLAMA3, "a| | b");
	expect_split("a\n\n\nb", PRE_LLAMA3, "a|\n\n\n|b");
	expect_split("x  \n  y", PRE_LLAMA3, "x|  \n| | y");
	expect_split("end   ", PRE_LLAMA3, "end|   ");
	expect_split("!!! ??\n\nok", PRE_LLAMA3, "!!!| ??\n\n|ok");
	expect_split("\tx", PRE_LLAMA3, "\tx");
	expect_split("_of", PRE_LLAMA3, "_of");
	expect_split("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", PRE_LLAMA3,
		     "caf\xc3\xa9| \xe6\x97\xa5\xe6\x9c\xac");
	/* U+017F (long s) folds to s under (?i) */
	expect_split("'\xc5\xbf", PRE_LLAMA3, "'\xc5\xbf");
	/* invalid bytes are "other" */
	expect_split("a\xff\xfe b", PRE_LLAMA3, "a|\xff\xfe| b");
}

static void test_pre_qwen2_gpt2(void **st)
{
	(void)st;
	expect_split("1234", PRE_QWEN2, "1|2|3|4");
	expect_split("I'm", PRE_QWEN2, "I|'m");
	/* GPT-2: case-sensitive contractions, digits in one run, one space in front */
	expect_split("IT'S 1234567 x", PRE_GPT2, "IT|'|S| 1234567| x");
	expect_split("a  b", PRE_GPT2, "a| | b");
	expect_split("a\n\nb", PRE_GPT2, "a|\n|\n|b");
	expect_split("hi!!", PRE_GPT2, "hi|!!");
}

/* ---- SentencePiece --------------------------------------------------------- */

/* A tiny SPM vocabulary: <unk> <s> </s>, the 256 byte tokens, then pieces. */
static struct tok *small_spm(const char *extra_key, int add_space_prefix)
{
	static const char *pieces[] = {"\xe2\x96\x81",
				       "a",
				       "b",
				       "\xe2\x96\x81"
				       "a",
				       "ab",
				       "\xe2\x96\x81"
				       "ab",
				       "\xe2\x96\x81\xe2\x96\x81"};
	static const float pscore[] = {-1, -2, -3, -4, -5, -6, -7};
	const size_t np = sizeof(pieces) / sizeof(pieces[0]), n = 3 + 256 + np;
	const char **tok = calloc(n, sizeof(*tok));
	float *score = calloc(n, sizeof(*score));
	int32_t *type = calloc(n, sizeof(*type));
	char(*bytes)[8] = calloc(256, 8);
	struct gguf_writer *w = gguf_writer_new();
	struct gguf *g = NULL;
	struct tok *t = NULL;
	struct ciel_err err = {0};
	char path[] = "/tmp/test_tok_XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	tok[0] = "<unk>", type[0] = TT_UNKNOWN;
	tok[1] = "<s>", type[1] = TT_CONTROL;
	tok[2] = "</s>", type[2] = TT_CONTROL;
	for (unsigned i = 0; i < 256; i++) {
		snprintf(bytes[i], 8, "<0x%02X>", i);
		tok[3 + i] = bytes[i];
		type[3 + i] = TT_BYTE;
	}
	for (size_t i = 0; i < np; i++) {
		tok[259 + i] = pieces[i];
		score[259 + i] = pscore[i];
		type[259 + i] = TT_NORMAL;
	}
	/* "▁ab" scores best as a whole but forms only through "▁a" + "b" or "▁" + "ab". */
	score[259 + 5] = 10;
	assert_int_equal(gguf_w_str(w, "tokenizer.ggml.model", "llama"), 0);
	assert_int_equal(gguf_w_arr_str(w, "tokenizer.ggml.tokens", tok, n), 0);
	assert_int_equal(gguf_w_arr_f32(w, "tokenizer.ggml.scores", score, n), 0);
	assert_int_equal(gguf_w_arr_i32(w, "tokenizer.ggml.token_type", type, n), 0);
	assert_int_equal(gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", add_space_prefix), 0);
	if (extra_key)
		assert_int_equal(gguf_w_u32(w, extra_key, 99999), 0);
	assert_int_equal(gguf_writer_write(w, path, 3, &err), 0);
	gguf_writer_free(w);
	assert_int_equal(gguf_open(&g, path, &err), 0);
	unlink(path);
	if (tok_from_gguf(&t, g, &err) < 0 && !extra_key) {
		print_message("%s\n", err.msg);
		fail();
	}
	if (extra_key) {
		assert_null(t);
		assert_non_null(strstr(err.msg, extra_key));
		assert_non_null(strstr(err.msg, "99999"));
	}
	gguf_close(g);
	free(tok);
	free(score);
	free(type);
	free(bytes);
	return t;
}

static void test_spm(void **st)
{
	struct tok *t = small_spm(NULL, 1);

	(void)st;
	assert_int_equal(tok_kind(t), TOK_SPM);
	assert_int_equal(tok_bos(t), 1);
	assert_int_equal(tok_eos(t), 2);
	assert_true(tok_is_eog(t, 2));
	/* "ab" -> "▁ab": first the best pair ("▁a" -4 beats "ab" -5), then "▁a"+"b" (10) */
	expect_ids(t, "ab", TOK_BOS, (int32_t[]){1, 264}, 2);
	expect_ids(t, "ab", 0, (int32_t[]){264}, 1);
	expect_ids(t, "", TOK_BOS, (int32_t[]){1}, 1);
	expect_ids(t, "", 0, NULL, 0);
	/* é is no piece: bytes C3 A9 */
	expect_ids(t, "\xc3\xa9", 0, (int32_t[]){259, 3 + 0xc3, 3 + 0xa9}, 3);
	/* "▁▁a": "▁a" (-4) beats "▁▁" (-7), and "▁▁a" is no piece */
	expect_ids(t, " a", 0, (int32_t[]){259, 262}, 2);
	/* specials: <s> is a control token, text without TOK_SPECIAL; a space follows it */
	expect_ids(t, "<s>a", TOK_SPECIAL, (int32_t[]){1, 262}, 2);
	expect_roundtrip(t, "ab a b", " ab a b");
	expect_roundtrip(t, "caf\xc3\xa9 \xe6\x97\xa5", " caf\xc3\xa9 \xe6\x97\xa5");
	tok_free(t);
	t = small_spm(NULL, 0);
	expect_ids(t, "ab", 0, (int32_t[]){263}, 1);
	tok_free(t);
	/* an id key past the vocabulary is refused, naming the key */
	assert_null(small_spm("tokenizer.ggml.bos_token_id", 1));
	assert_null(small_spm("tokenizer.ggml.eos_token_id", 1));
}

/* ---- hostile vocabularies ------------------------------------------------- */

static void test_hostile_hf(void **st)
{
	char *j;

	(void)st;
	hf_fails("{", "line 1");
	hf_fails("[]", "model.vocab");
	hf_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]},"
		 "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
		 "empty");
	hf_fails("{\"model\":{\"type\":\"Unigram\",\"vocab\":{}}}", "Unigram");
	hf_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]},"
		 "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
		 "given to both");
	hf_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":5000000},\"merges\":[]},"
		 "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
		 "not a token id");
	hf_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":400000},\"merges\":[]},"
		 "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
		 "unused");
	hf_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]},"
		 "\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
		 "not a token id");
	hf_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "neither");
	/* merges naming pieces the vocabulary lacks */
	j = bpe_json(NULL, 0, "", "\"h zz\"", "");
	hf_fails(j, "merge 0");
	free(j);
	j = bpe_json(NULL, 0, "", "\"h e\"", ""); /* "he" is no piece */
	hf_fails(j, "makes a piece");
	free(j);
	j = bpe_json(NULL, 0, "", "\"nospace\"", "");
	hf_fails(j, "not 'a b'");
	free(j);
	j = bpe_json(NULL, 0, "", "[1,2]", "");
	hf_fails(j, "merges[0]");
	free(j);
	/* a regex we have no matcher for is named */
	j = bpe_json("\\p{L}+|\\d+", 0, "", "", "");
	hf_fails(j, "\\p{L}+|\\d+");
	free(j);
	j = bpe_json(NULL, 0, "", "", "{\"id\":\"x\",\"content\":\"<a>\"}");
	hf_fails(j, "added_tokens[0]");
	free(j);
	/* a config naming a bos that is not a token */
	{
		struct tok *t = NULL;
		struct ciel_err err = {0};

		j = bpe_json(NULL, 0, "", "", "");
		assert_int_equal(
		    tok_from_hf_buf(&t, j, strlen(j), "{\"bos_token\":\"<nope>\"}", 22, &err), -1);
		assert_non_null(strstr(err.msg, "<nope>"));
		assert_int_equal(tok_from_hf_buf(&t, j, strlen(j), "{", 1, &err), -1);
		assert_non_null(strstr(err.msg, "tokenizer_config.json"));
		free(j);
	}
}

static void test_hostile_gguf(void **st)
{
	const char *dup[] = {"a", "a", "b", "ab"};
	const float sc[] = {0, 0, 0, 1};
	const float sc_short[] = {0, 0};
	struct {
		const char *model;
		const float *scores;
		size_t n_scores;
		const char *want; /* NULL: loads */
	} cases[] = {
	    {"llama", sc, 4, NULL},
	    {"bert", sc, 4, "'bert'"},
	    {"llama", sc_short, 2, "tokenizer.ggml.scores"},
	};

	(void)st;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct gguf_writer *w = gguf_writer_new();
		struct gguf *g = NULL;
		struct tok *t = NULL;
		struct ciel_err err = {0};
		char path[] = "/tmp/test_tok_XXXXXX";
		int fd = mkstemp(path);

		assert_true(fd >= 0);
		close(fd);
		gguf_w_str(w, "tokenizer.ggml.model", cases[c].model);
		gguf_w_arr_str(w, "tokenizer.ggml.tokens", dup, 4);
		gguf_w_arr_f32(w, "tokenizer.ggml.scores", cases[c].scores, cases[c].n_scores);
		gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", 0);
		assert_int_equal(gguf_writer_write(w, path, 3, &err), 0);
		gguf_writer_free(w);
		assert_int_equal(gguf_open(&g, path, &err), 0);
		unlink(path);
		if (!cases[c].want) {
			assert_int_equal(tok_from_gguf(&t, g, &err), 0);
			/* a duplicate piece: the first id keeps it */
			assert_int_equal(tok_lookup(t, "a"), 0);
			/* no byte tokens and no piece for 'c': unk (id 0 by default) */
			expect_ids(t, "c", 0, (int32_t[]){0}, 1);
			expect_ids(t, "ab", 0, (int32_t[]){3}, 1);
			tok_free(t);
		} else {
			assert_int_equal(tok_from_gguf(&t, g, &err), -1);
			assert_null(t);
			assert_non_null(strstr(err.msg, cases[c].want));
		}
		gguf_close(g);
	}
}

static void test_limits(void **st)
{
	struct tok *t = small_bpe(1);
	struct ciel_err err = {0};
	int32_t *ids = (int32_t *)1;
	size_t n = 7;
	struct dbuf big;
	struct timespec a, b;
	double s;

	(void)st;
	/* the length is checked before the text is read */
	assert_int_equal(tok_encode(t, "x", (size_t)TOK_MAX_INPUT + 1, 0, &ids, &n, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_null(ids);
	assert_int_equal(n, 0);
	/* 100 KB of mixed text, and of one letter (the n log n merge loop) */
	dbuf_init(&big, DBUF_NO_MAX);
	while (big.len < 100000)
		dbuf_addstr(&big,
			    "hello the world, it's 2024!\n\tcaf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac ");
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(tok_encode(t, big.buf, big.len, 0, &ids, &n, &err), 0);
	free(ids);
	memset(big.buf, 'l', big.len);
	assert_int_equal(tok_encode(t, big.buf, big.len, 0, &ids, &n, &err), 0);
	assert_int_equal(n, (big.len + 1) / 2);
	free(ids);
	clock_gettime(CLOCK_MONOTONIC, &b);
	s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	print_message("200 KB encoded in %.3f s\n", s);
	assert_true(s < 5.0); /* generous for ASan on a busy 2-core machine */
	dbuf_release(&big);
	tok_free(t);
}

/* ---- stories260K ------------------------------------------------------------ */

static int model_path(char *out, size_t size, const char *file)
{
	const char *env = getenv("CIEL_MODELS");
	const char *src = __FILE__, *cut;

	if (env)
		return snprintf(out, size, "%s/stories260K/%s", env, file) < (int)size ? 0 : -1;
	cut = strstr(src, "/tests/unit/test_tok.c");
	if (!cut)
		return -1;
	return snprintf(out, size, "%.*s/../shared/models/stories260K/%s", (int)(cut - src), src,
			file) < (int)size
		   ? 0
		   : -1;
}

static void test_stories(void **st)
{
	char path[4096];
	struct gguf *g = NULL;
	struct tok *t = NULL;
	struct ciel_err err = {0};
	int32_t *ids;
	char *d;

	(void)st;
	/* the model ships in ../shared beside the source: missing is a failure */
	if (model_path(path, sizeof(path), "stories260k-f32.v3.gguf") < 0 || access(path, R_OK))
		fail_msg("stories260K not found at %s", path);
	assert_int_equal(gguf_open(&g, path, &err), 0);
	assert_int_equal(tok_from_gguf(&t, g, &err), 0);
	assert_int_equal(tok_n_vocab(t), 512);
	assert_true(tok_add_bos(t));
	/* the ids llama.cpp and llama2.c give (▁Once ▁upon ▁a ▁time) */
	expect_ids(t, "Once upon a time", TOK_BOS, (int32_t[]){1, 403, 407, 261, 378}, 5);
	ids = enc(t, "Lily saw a big dog. \"Hi!\" she said \xf0\x9f\x98\x80.", TOK_BOS);
	d = dec_all(t, ids + 1, n_ids - 1, 0);
	assert_string_equal(d, " Lily saw a big dog. \"Hi!\" she said \xf0\x9f\x98\x80.");
	free(d);
	free(ids);
	tok_free(t);
	gguf_close(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bpe_merges),	  cmocka_unit_test(test_bpe_split_spaces),
	    cmocka_unit_test(test_bpe_special),	  cmocka_unit_test(test_bpe_ignore_merges),
	    cmocka_unit_test(test_bpe_roundtrip), cmocka_unit_test(test_bpe_gguf_same),
	    cmocka_unit_test(test_pre_llama3),	  cmocka_unit_test(test_pre_qwen2_gpt2),
	    cmocka_unit_test(test_spm),		  cmocka_unit_test(test_hostile_hf),
	    cmocka_unit_test(test_hostile_gguf),  cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_stories),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
