/*
 * tokenize.c — `ciel-llm tokenize`: text to token ids with a model's own
 * tokenizer (GGUF) or a Hugging Face tokenizer.json, and back (--decode).
 *
 * --texts FILE runs a whole test set in one process (a 128k vocabulary
 * loads once): FILE is a JSON list of {"text": ...} or {"b64": ...}
 * entries, the answer a JSON list of {"ids": [...], "decoded_b64": ...}.
 * --to-gguf OUT writes the tokenizer as GGUF metadata, so a test can check
 * that the tokenizer.json path and the GGUF path encode alike. --chat FILE
 * renders each conversation of a JSON list (of [{"role", "content"}...])
 * with the tokenizer's own chat template, to compare with a Jinja engine.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "llm/chat.h"
#include "llm/gguf.h"
#include "llm/tok.h"
#include "util/dbuf.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ciel-llm tokenize (--model FILE.gguf | --tokenizer tokenizer.json\n"
		   "                          [--config tokenizer_config.json])\n"
		   "                         [--special] [--bos] [--output json|text] [--time]\n"
		   "                         [--to-gguf OUT.gguf] [--texts FILE.json]\n"
		   "                         [--chat FILE.json] [TEXT|-]\n"
		   "       ciel-llm tokenize ... --decode ID...\n\n"
		   "  --special   recognise special tokens' text (<|eot_id|>) in TEXT\n"
		   "  --bos       prepend BOS when the tokenizer says so\n"
		   "  --decode    print the text of the given ids (special ones included)\n"
		   "  --texts F   encode every entry of a JSON list of {\"text\"}|{\"b64\"}\n"
		   "  --to-gguf   write the tokenizer as GGUF metadata to OUT\n"
		   "  --chat F    render each conversation of F with the chat template\n"
		   "  --time      print the encode time to stderr\n");
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_encode(struct dbuf *out, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		char q[4];

		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = B64[v >> 18 & 63];
		q[1] = B64[v >> 12 & 63];
		q[2] = i + 1 < n ? B64[v >> 6 & 63] : '=';
		q[3] = i + 2 < n ? B64[v & 63] : '=';
		dbuf_add(out, q, 4);
	}
	return dbuf_add(out, NULL, 0);
}

static int b64_decode(struct dbuf *out, const char *s)
{
	uint32_t v = 0;
	int bits = 0;

	for (; *s && *s != '='; s++) {
		const char *p = strchr(B64, *s);

		if (!p || !*s)
			return -1;
		v = v << 6 | (uint32_t)(p - B64);
		bits += 6;
		if (bits >= 8) {
			char c = (char)(v >> (bits - 8) & 0xff);

			bits -= 8;
			dbuf_add(out, &c, 1);
		}
	}
	return dbuf_add(out, NULL, 0);
}

static int read_stream(FILE *f, struct dbuf *b)
{
	char chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (dbuf_add(b, chunk, n) < 0)
			return -1;
	return ferror(f) ? -1 : dbuf_add(b, NULL, 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The decoded bytes of ids (specials included), into out. */
static int decode_ids(const struct tok *t, const int32_t *ids, size_t n, struct dbuf *out)
{
	for (size_t i = 0; i < n; i++) {
		char buf[256];
		int k = tok_decode(t, ids[i], TOK_SPECIAL, buf, sizeof(buf));

		if (k < 0)
			return -1;
		if ((size_t)k > sizeof(buf)) {
			char *big = malloc((size_t)k);

			if (!big)
				return -1;
			tok_decode(t, ids[i], TOK_SPECIAL, big, (size_t)k);
			dbuf_add(out, big, (size_t)k);
			free(big);
		} else {
			dbuf_add(out, buf, (size_t)k);
		}
	}
	return dbuf_add(out, NULL, 0);
}

static int run_texts(const struct tok *t, const char *path, int flags)
{
	json_error_t je;
	json_t *list = json_load_file(path, 0, &je), *e, *res = NULL;
	struct dbuf text, dec;
	size_t i;
	int rc = 1;

	if (!json_is_array(list)) {
		fprintf(stderr, "ciel-llm: %s: %s\n", path, list ? "not a JSON list" : je.text);
		goto out;
	}
	dbuf_init(&text, TOK_MAX_INPUT + 1);
	dbuf_init(&dec, DBUF_NO_MAX);
	res = json_array();
	json_array_foreach(list, i, e)
	{
		const char *s = json_string_value(json_object_get(e, "text"));
		const char *b = json_string_value(json_object_get(e, "b64"));
		struct ciel_err err = {0};
		int32_t *ids;
		size_t n;
		json_t *arr = json_array(), *o = json_object();

		dbuf_reset(&text);
		dbuf_reset(&dec);
		if (s)
			dbuf_add(&text, s, json_string_length(json_object_get(e, "text")));
		else if (!b || b64_decode(&text, b) < 0) {
			fprintf(stderr, "ciel-llm: %s: entry %zu has no text or valid b64\n", path,
				i);
			goto fail;
		}
		dbuf_add(&text, NULL, 0);
		if (tok_encode(t, dbuf_str(&text), text.len, flags, &ids, &n, &err) < 0) {
			fprintf(stderr, "ciel-llm: entry %zu: %s\n", i, err.msg);
			goto fail;
		}
		for (size_t k = 0; k < n; k++)
			json_array_append_new(arr, json_integer(ids[k]));
		decode_ids(t, ids, n, &dec);
		free(ids);
		json_object_set_new(o, "ids", arr);
		dbuf_reset(&text);
		b64_encode(&text, (const unsigned char *)dbuf_str(&dec), dec.len);
		json_object_set_new(o, "decoded_b64", json_string(dbuf_str(&text)));
		json_array_append_new(res, o);
		continue;
	fail:
		json_decref(arr);
		json_decref(o);
		goto out_buf;
	}
	json_dumpf(res, stdout, JSON_COMPACT);
	putchar('\n');
	rc = 0;
out_buf:
	dbuf_release(&text);
	dbuf_release(&dec);
out:
	json_decref(res);
	json_decref(list);
	return rc;
}

static int run_chat(const struct tok *t, const char *path)
{
	json_error_t je;
	json_t *list = json_load_file(path, 0, &je), *conv, *res = json_array();
	struct ciel_err err = {0};
	enum chat_kind kind;
	const char *bos = NULL;
	size_t i;
	int rc = 1;

	if (!json_is_array(list)) {
		fprintf(stderr, "ciel-llm: %s: %s\n", path, list ? "not a JSON list" : je.text);
		goto out;
	}
	if (chat_detect(tok_chat_template(t), &kind, &err) < 0) {
		fprintf(stderr, "ciel-llm: %s\n", err.msg);
		goto out;
	}
	if (chat_writes_bos(kind) && tok_bos(t) >= 0)
		bos = tok_piece(t, tok_bos(t), NULL);
	json_array_foreach(list, i, conv)
	{
		size_t n = json_array_size(conv), k;
		struct chat_msg *m = calloc(n ? n : 1, sizeof(*m));
		struct dbuf b;
		json_t *msg;

		if (!m)
			goto out;
		json_array_foreach(conv, k, msg)
		{
			m[k].role = json_string_value(json_object_get(msg, "role"));
			m[k].content = json_string_value(json_object_get(msg, "content"));
		}
		dbuf_init(&b, TOK_MAX_INPUT);
		if (chat_render(kind, m, n, bos, &b, &err) < 0) {
			fprintf(stderr, "ciel-llm: conversation %zu: %s\n", i, err.msg);
			free(m);
			dbuf_release(&b);
			goto out;
		}
		json_array_append_new(res, json_stringn(dbuf_str(&b), b.len));
		free(m);
		dbuf_release(&b);
	}
	json_dumpf(res, stdout, JSON_COMPACT);
	putchar('\n');
	rc = 0;
out:
	json_decref(res);
	json_decref(list);
	return rc;
}

static int print_ids(const struct tok *t, const int32_t *ids, size_t n, int json)
{
	if (!json) {
		for (size_t i = 0; i < n; i++)
			printf("%s%d", i ? " " : "", ids[i]);
		putchar('\n');
		return 0;
	}
	json_t *o = json_object(), *a = json_array(), *p = json_array();

	for (size_t i = 0; i < n; i++) {
		size_t len;
		const char *s = tok_piece(t, ids[i], &len);
		json_t *js = json_stringn(s, len);

		json_array_append_new(a, json_integer(ids[i]));
		json_array_append_new(p, js ? js : json_string("\xef\xbf\xbd"));
	}
	json_object_set_new(o, "ids", a);
	json_object_set_new(o, "pieces", p);
	json_dumpf(o, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(o);
	return 0;
}

static int decode_args(const struct tok *t, int argc, char **argv)
{
	struct dbuf out;
	int rc = 0;

	dbuf_init(&out, DBUF_NO_MAX);
	for (int i = 0; i < argc && !rc; i++) {
		char *p = argv[i];

		while (*p && !rc) {
			char *end;
			long v;

			if (*p == ',' || *p == ' ') {
				p++;
				continue;
			}
			errno = 0;
			v = strtol(p, &end, 10);
			if (end == p || errno || v < 0 || v >= tok_n_vocab(t)) {
				fprintf(stderr,
					"ciel-llm: '%s' is not a token id of this vocabulary\n",
					argv[i]);
				rc = 2;
				break;
			}
			int32_t id = (int32_t)v;

			decode_ids(t, &id, 1, &out);
			p = end;
		}
	}
	if (!rc)
		fwrite(out.buf ? out.buf : "", 1, out.len, stdout);
	dbuf_release(&out);
	return rc;
}

int cmd_tokenize(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"model", required_argument, NULL, 'm'},
	    {"tokenizer", required_argument, NULL, 't'},
	    {"config", required_argument, NULL, 'c'},
	    {"special", no_argument, NULL, 's'},
	    {"bos", no_argument, NULL, 'b'},
	    {"decode", no_argument, NULL, 'd'},
	    {"output", required_argument, NULL, 'o'},
	    {"to-gguf", required_argument, NULL, 'g'},
	    {"texts", required_argument, NULL, 'x'},
	    {"time", no_argument, NULL, 'T'},
	    {"chat", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *model = NULL, *tokenizer = NULL, *config = NULL, *to_gguf = NULL, *texts = NULL,
		   *chat = NULL;
	int flags = 0, decode = 0, json = 0, timing = 0, c, rc = 1;
	struct ciel_err err = {0};
	struct gguf *g = NULL;
	struct tok *t = NULL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			model = optarg;
			break;
		case 't':
			tokenizer = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 's':
			flags |= TOK_SPECIAL;
			break;
		case 'b':
			flags |= TOK_BOS;
			break;
		case 'd':
			decode = 1;
			break;
		case 'g':
			to_gguf = optarg;
			break;
		case 'x':
			texts = optarg;
			break;
		case 'T':
			timing = 1;
			break;
		case 'C':
			chat = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "text") &&
			    strcmp(optarg, "table")) {
				fprintf(stderr, "ciel-llm: --output json|text\n");
				return 2;
			}
			json = !strcmp(optarg, "json");
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!model == !tokenizer) {
		fprintf(stderr, "ciel-llm: give one of --model and --tokenizer\n");
		usage(stderr);
		return 2;
	}
	if (!to_gguf && !texts && !chat && optind != argc - 1 && !(decode && optind < argc)) {
		usage(stderr);
		return 2;
	}
	if (model) {
		if (gguf_open(&g, model, &err) < 0 || tok_from_gguf(&t, g, &err) < 0)
			goto fail;
	} else if (tok_from_hf(&t, tokenizer, config, &err) < 0) {
		goto fail;
	}
	if (to_gguf) {
		struct gguf_writer *w = gguf_writer_new();

		if (!w || gguf_w_str(w, "general.architecture", "llama") < 0 ||
		    tok_to_gguf(t, w) < 0) {
			gguf_writer_free(w);
			ciel_err_set(&err, CIEL_ENOMEM, "building %s failed", to_gguf);
			goto fail;
		}
		if (gguf_writer_write(w, to_gguf, 3, &err) < 0) {
			gguf_writer_free(w);
			goto fail;
		}
		gguf_writer_free(w);
		if (!texts && !chat && optind == argc) {
			rc = 0;
			goto out;
		}
	}
	if (decode) {
		rc = decode_args(t, argc - optind, argv + optind);
		goto out;
	}
	if (texts || chat) {
		rc = texts ? run_texts(t, texts, flags) : 0;
		if (!rc && chat)
			rc = run_chat(t, chat);
		goto out;
	}
	{
		struct dbuf in;
		int32_t *ids;
		size_t n;
		double t0;

		dbuf_init(&in, TOK_MAX_INPUT + 1);
		if (!strcmp(argv[optind], "-")) {
			if (read_stream(stdin, &in) < 0 && !in.toobig) {
				dbuf_release(&in);
				ciel_err_set(&err, CIEL_EIO, "reading stdin failed");
				goto fail;
			}
		} else {
			dbuf_addstr(&in, argv[optind]);
		}
		t0 = now_s();
		if (in.toobig)
			ciel_err_set(&err, CIEL_EINVAL,
				     "text is over the tokenizer's limit of %u bytes",
				     TOK_MAX_INPUT);
		if (in.toobig || tok_encode(t, dbuf_str(&in), in.len, flags, &ids, &n, &err) < 0) {
			dbuf_release(&in);
			goto fail;
		}
		if (timing)
			fprintf(stderr, "encoded %zu bytes into %zu tokens in %.3f ms\n", in.len, n,
				(now_s() - t0) * 1e3);
		dbuf_release(&in);
		rc = print_ids(t, ids, n, json);
		free(ids);
	}
	goto out;
fail:
	fprintf(stderr, "ciel-llm: %s\n", err.msg);
	rc = 1;
out:
	tok_free(t);
	gguf_close(g);
	return rc;
}
