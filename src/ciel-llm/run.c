/*
 * run.c — `ciel-llm logits` (the logits of every position of a token list,
 * as JSON, for the reference tests) and `ciel-llm run` (generate from a
 * prompt on this machine, streaming the text as it comes).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "llm/model.h"
#include "llm/sample.h"
#include "llm/tok.h"
#include "util/err.h"

#define MAX_TOKENS_ARG 65536

struct run_opts {
	const char *model, *prompt, *tokens;
	long n, threads, top_k, chunk;
	double temperature, top_p;
	uint64_t seed;
	int seed_given, json, tokens_out, ignore_eos;
};

/* Everything a generation needs, opened from the options. */
struct session {
	struct llm_model *m;
	struct kern_pool *pool;
	struct llm_kv *kv;
	struct llm_seq *seq;
	struct llm_ctx *ctx;
	float *logits;
};

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	fprintf(stderr, "ciel-llm %s: ", cmd);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (ciel-llm %s --help)\n", cmd);
	return 2;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

/* "1,2,3" into a malloc'd array. */
static int parse_tokens(const char *s, int32_t **out, size_t *n)
{
	size_t cap = 16, len = 0;
	int32_t *v = malloc(cap * sizeof(*v));

	if (!v)
		return -1;
	while (*s) {
		char *end;
		long t;

		errno = 0;
		t = strtol(s, &end, 10);
		if (errno || end == s || t < 0 || t > INT32_MAX || (*end && *end != ',') ||
		    len >= MAX_TOKENS_ARG)
			goto bad;
		if (len == cap) {
			int32_t *nv = realloc(v, 2 * cap * sizeof(*v));

			if (!nv)
				goto bad;
			v = nv;
			cap *= 2;
		}
		v[len++] = (int32_t)t;
		s = *end ? end + 1 : end;
	}
	if (!len)
		goto bad;
	*out = v;
	*n = len;
	return 0;
bad:
	free(v);
	return -1;
}

static void session_close(struct session *s)
{
	free(s->logits);
	llm_ctx_free(s->ctx);
	llm_seq_free(s->seq);
	llm_kv_free(s->kv);
	kern_pool_free(s->pool);
	llm_model_close(s->m);
}

/* A KV cache for positions (capped at the model's context), one sequence, a context for batch. */
static int session_kv(struct session *s, uint64_t positions, uint32_t batch, struct ciel_err *err)
{
	const struct llm_hparams *hp = llm_model_hparams(s->m);

	if (positions > hp->ctx_train)
		positions = hp->ctx_train;
	if (llm_kv_new(&s->kv, s->m, (uint32_t)((positions + LLM_KV_BLOCK - 1) / LLM_KV_BLOCK),
		       err) < 0 ||
	    llm_ctx_new(&s->ctx, s->m, batch, s->pool, err) < 0)
		return -1;
	s->seq = llm_seq_new(s->kv);
	s->logits = malloc((size_t)batch * hp->n_vocab * sizeof(float));
	if (!s->seq || !s->logits)
		return ciel_err_set(err, CIEL_ENOMEM, "session");
	return 0;
}

/* The model and a pool of threads; session_kv adds the rest. */
static int session_open(struct session *s, const struct run_opts *o, struct ciel_err *err)
{
	memset(s, 0, sizeof(*s));
	if (llm_model_open(&s->m, o->model, err) < 0)
		return -1;
	s->pool = kern_pool_new((int)o->threads, err);
	if (!s->pool) {
		session_close(s);
		return -1;
	}
	return 0;
}

static void print_json_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void print_logits_row(const float *row, uint32_t n)
{
	putchar('[');
	for (uint32_t j = 0; j < n; j++) {
		if (isfinite(row[j]))
			printf(j ? ",%.9g" : "%.9g", row[j]);
		else
			fputs(j ? ",null" : "null", stdout);
	}
	putchar(']');
}

static void logits_usage(FILE *f)
{
	fprintf(f, "Usage: ciel-llm logits --model FILE --tokens ID,ID,... [--threads N] "
		   "[--chunk N]\n\n"
		   "Print {\"logits\": [[...], ...]}: the next-token logits after every position.\n"
		   "  --chunk N   feed the tokens N at a time (default: all in one batch)\n");
}

int cmd_logits(int argc, char **argv)
{
	enum { O_MODEL = 1, O_TOKENS, O_THREADS, O_CHUNK, O_HELP };
	static const struct option lo[] = {
	    {"model", required_argument, NULL, O_MODEL},
	    {"tokens", required_argument, NULL, O_TOKENS},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"chunk", required_argument, NULL, O_CHUNK},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct run_opts o = {.threads = 1};
	struct session s;
	struct ciel_err err = {0};
	int32_t *toks = NULL;
	size_t n = 0;
	int c, rc = 1;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_MODEL:
			o.model = optarg;
			break;
		case O_TOKENS:
			o.tokens = optarg;
			break;
		case O_THREADS:
			if (parse_long(optarg, 1, 256, &o.threads) < 0)
				return usage_error("logits", "bad --threads '%s' (1..256)", optarg);
			break;
		case O_CHUNK:
			if (parse_long(optarg, 1, 65536, &o.chunk) < 0)
				return usage_error("logits", "bad --chunk '%s' (1..65536)", optarg);
			break;
		case O_HELP:
			logits_usage(stdout);
			return 0;
		default:
			return usage_error("logits", "unknown or incomplete option %s",
					   argv[optind - 1]);
		}
	}
	if (!o.model || !o.tokens)
		return usage_error("logits", "%s", "--model and --tokens are required");
	if (parse_tokens(o.tokens, &toks, &n) < 0)
		return usage_error("logits", "bad --tokens '%s' (comma-separated ids)", o.tokens);
	if (!o.chunk || (size_t)o.chunk > n)
		o.chunk = (long)n;
	if (session_open(&s, &o, &err) < 0) {
		fprintf(stderr, "ciel-llm logits: %s\n", err.msg);
		free(toks);
		return 1;
	}
	if (session_kv(&s, n, (uint32_t)o.chunk, &err) < 0) {
		fprintf(stderr, "ciel-llm logits: %s\n", err.msg);
		goto out;
	}
	{
		uint32_t nv = llm_model_hparams(s.m)->n_vocab;
		struct llm_item *items = calloc((size_t)o.chunk, sizeof(*items));

		if (!items) {
			fprintf(stderr, "ciel-llm logits: out of memory\n");
			goto out;
		}
		fputs("{\"logits\":[", stdout);
		for (size_t at = 0; at < n; at += (size_t)o.chunk) {
			uint32_t b =
			    (uint32_t)(n - at < (size_t)o.chunk ? n - at : (size_t)o.chunk);

			for (uint32_t i = 0; i < b; i++)
				items[i] = (struct llm_item){s.seq, toks[at + i], 1};
			if (llm_forward(s.ctx, items, b, s.logits, &err) < 0) {
				fflush(stdout);
				fprintf(stderr, "\nciel-llm logits: %s\n", err.msg);
				free(items);
				goto out;
			}
			for (uint32_t i = 0; i < b; i++) {
				if (at + i)
					putchar(',');
				print_logits_row(s.logits + (size_t)i * nv, nv);
			}
		}
		fputs("]}\n", stdout);
		free(items);
		rc = 0;
	}
out:
	session_close(&s);
	free(toks);
	return rc;
}

static void run_usage(FILE *f)
{
	fprintf(f,
		"Usage: ciel-llm run --model FILE [--prompt TEXT | --tokens ID,...] [options]\n\n"
		"Generate text from a prompt (encoded with BOS), printed as it comes.\n"
		"  -n N                tokens to generate (default 128)\n"
		"  --temperature T     0 = greedy (default 0.8)\n"
		"  --top-k K           keep the K most likely (default 40, 0 = all)\n"
		"  --top-p P           nucleus sampling (default 0.95, 1 = off)\n"
		"  --seed S            random seed (default: from the clock)\n"
		"  --threads N         threads (default: the CPUs)\n"
		"  --ignore-eos        do not stop at end of generation\n"
		"  --tokens-out        print the generated token ids instead of the text\n"
		"  --output json       {\"prompt_tokens\",\"tokens\",\"text\",\"tok_per_s\"}\n");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_run(int argc, char **argv, struct run_opts *o)
{
	enum {
		O_MODEL = 1,
		O_PROMPT,
		O_TOKENS,
		O_N,
		O_TEMP,
		O_TOPK,
		O_TOPP,
		O_SEED,
		O_THREADS,
		O_IGNORE_EOS,
		O_TOKENS_OUT,
		O_OUTPUT,
		O_HELP
	};
	static const struct option lo[] = {
	    {"model", required_argument, NULL, O_MODEL},
	    {"prompt", required_argument, NULL, O_PROMPT},
	    {"tokens", required_argument, NULL, O_TOKENS},
	    {"temperature", required_argument, NULL, O_TEMP},
	    {"top-k", required_argument, NULL, O_TOPK},
	    {"top-p", required_argument, NULL, O_TOPP},
	    {"seed", required_argument, NULL, O_SEED},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"ignore-eos", no_argument, NULL, O_IGNORE_EOS},
	    {"tokens-out", no_argument, NULL, O_TOKENS_OUT},
	    {"output", required_argument, NULL, O_OUTPUT},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	long v;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
		switch (c) {
		case O_MODEL:
			o->model = optarg;
			break;
		case O_PROMPT:
			o->prompt = optarg;
			break;
		case O_TOKENS:
			o->tokens = optarg;
			break;
		case 'n':
			if (parse_long(optarg, 0, 1 << 24, &o->n) < 0)
				return usage_error("run", "bad -n '%s'", optarg);
			break;
		case O_TEMP:
			if (parse_double(optarg, 0, 2, &o->temperature) < 0)
				return usage_error("run", "bad --temperature '%s' (0..2)", optarg);
			break;
		case O_TOPK:
			if (parse_long(optarg, 0, INT32_MAX, &o->top_k) < 0)
				return usage_error("run", "bad --top-k '%s'", optarg);
			break;
		case O_TOPP:
			if (parse_double(optarg, 1e-9, 1, &o->top_p) < 0)
				return usage_error("run", "bad --top-p '%s' (0..1]", optarg);
			break;
		case O_SEED:
			if (parse_long(optarg, 0, LONG_MAX, &v) < 0)
				return usage_error("run", "bad --seed '%s'", optarg);
			o->seed = (uint64_t)v;
			o->seed_given = 1;
			break;
		case O_THREADS:
			if (parse_long(optarg, 1, 256, &o->threads) < 0)
				return usage_error("run", "bad --threads '%s' (1..256)", optarg);
			break;
		case O_IGNORE_EOS:
			o->ignore_eos = 1;
			break;
		case O_TOKENS_OUT:
			o->tokens_out = 1;
			break;
		case O_OUTPUT:
			if (!strcmp(optarg, "json"))
				o->json = 1;
			else if (!strcmp(optarg, "text") || !strcmp(optarg, "table"))
				o->json = 0;
			else
				return usage_error("run", "bad --output '%s' (json, text)", optarg);
			break;
		case O_HELP:
			run_usage(stdout);
			return 0;
		default:
			return usage_error("run", "unknown or incomplete option %s",
					   argv[optind - 1]);
		}
	}
	if (!o->model)
		return usage_error("run", "%s", "--model is required");
	if (o->prompt && o->tokens)
		return usage_error("run", "%s", "--prompt and --tokens exclude each other");
	return -1;
}

/* The prompt's ids: --tokens as given, or --prompt (or nothing) encoded with BOS. */
static int prompt_ids(const struct run_opts *o, const struct tok *t, int32_t **ids, size_t *n,
		      struct ciel_err *err)
{
	const char *p = o->prompt ? o->prompt : "";

	if (o->tokens) {
		if (parse_tokens(o->tokens, ids, n) < 0)
			return ciel_err_field(err, CIEL_EINVAL, "tokens",
					      "bad --tokens (comma-separated ids)");
		return 0;
	}
	if (!t)
		return ciel_err_set(
		    err, CIEL_EINVAL,
		    "the model has no vocabulary: give --tokens instead of --prompt");
	if (tok_encode(t, p, strlen(p), TOK_BOS, ids, n, err) < 0)
		return -1;
	if (!*n)
		return ciel_err_set(err, CIEL_EINVAL,
				    "the prompt is empty and the model has no BOS token");
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o = {.n = 128, .temperature = 0.8, .top_k = 40, .top_p = 0.95};
	struct session s;
	struct ciel_err err = {0};
	struct llm_sampler *smp = NULL;
	struct llm_item *items = NULL;
	int32_t *prompt = NULL, *out = NULL;
	size_t n_prompt = 0, n_out = 0, text_len = 0, text_cap = 0;
	char *text = NULL;
	const struct tok *t;
	uint32_t nv;
	double t0, t1 = 0;
	int rc = parse_run(argc, argv, &o);

	if (rc >= 0)
		return rc;
	rc = 1;
	if (!o.threads)
		o.threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
	if (o.threads > 256)
		o.threads = 256;
	if (!o.seed_given)
		o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (session_open(&s, &o, &err) < 0) {
		fprintf(stderr, "ciel-llm run: %s\n", err.msg);
		return 1;
	}
	t = llm_model_tok(s.m);
	nv = llm_model_hparams(s.m)->n_vocab;
	if (prompt_ids(&o, t, &prompt, &n_prompt, &err) < 0)
		goto fail;
	{
		struct llm_sampling cfg = {(float)o.temperature, (int)o.top_k, (float)o.top_p,
					   o.seed};

		if (llm_sampler_new(&smp, &cfg, nv, &err) < 0)
			goto fail;
	}
	/* the prompt in one batch: a context of its size, logits of its last token only */
	items = calloc(n_prompt, sizeof(*items));
	out = malloc(((size_t)o.n + 1) * sizeof(*out));
	if (!items || !out) {
		ciel_err_set(&err, CIEL_ENOMEM, "prompt of %zu tokens", n_prompt);
		goto fail;
	}
	if (n_prompt > UINT32_MAX ||
	    session_kv(&s, n_prompt + (uint64_t)o.n, (uint32_t)n_prompt, &err) < 0)
		goto fail;
	for (size_t i = 0; i < n_prompt; i++)
		items[i] = (struct llm_item){s.seq, prompt[i], i + 1 == n_prompt};
	t0 = now_s();
	if (llm_forward(s.ctx, items, (uint32_t)n_prompt, s.logits, &err) < 0)
		goto fail;
	t1 = now_s();
	for (long i = 0; i < o.n; i++) {
		int32_t id = llm_sample(smp, s.logits);
		char piece[256];
		int len;

		if (!o.ignore_eos && t && tok_is_eog(t, id))
			break;
		out[n_out++] = id;
		len = t ? tok_decode(t, id, 0, piece, sizeof(piece)) : 0;
		if (len > (int)sizeof(piece))
			len = (int)sizeof(piece);
		if (len > 0) {
			const char *p = piece;

			/* SentencePiece's leading space of the first piece after BOS is not text */
			if (!text_len && n_prompt == 1 && tok_kind(t) == TOK_SPM && *p == ' ') {
				p++;
				len--;
			}
			if (text_len + (size_t)len + 1 > text_cap) {
				char *nt = realloc(text, text_cap * 2 + (size_t)len + 64);

				if (!nt) {
					ciel_err_set(&err, CIEL_ENOMEM, "text");
					goto fail;
				}
				text = nt;
				text_cap = text_cap * 2 + (size_t)len + 64;
			}
			memcpy(text + text_len, p, (size_t)len);
			text_len += (size_t)len;
			if (!o.json && !o.tokens_out) {
				fwrite(p, 1, (size_t)len, stdout);
				fflush(stdout);
			}
		}
		if (i + 1 == o.n || llm_seq_len(s.seq) >= llm_model_hparams(s.m)->ctx_train)
			break;
		items[0] = (struct llm_item){s.seq, id, 1};
		if (llm_forward(s.ctx, items, 1, s.logits, &err) < 0)
			goto fail;
	}
	{
		double dt = now_s() - t1, tps = n_out > 1 && dt > 0 ? (double)(n_out - 1) / dt : 0;

		if (o.json) {
			printf("{\"prompt_tokens\":[");
			for (size_t i = 0; i < n_prompt; i++)
				printf(i ? ",%d" : "%d", prompt[i]);
			printf("],\"tokens\":[");
			for (size_t i = 0; i < n_out; i++)
				printf(i ? ",%d" : "%d", out[i]);
			printf("],\"text\":");
			print_json_string(stdout, text ? text : "", text_len);
			printf(",\"prefill_tok_per_s\":%.2f,\"tok_per_s\":%.2f}\n",
			       t1 > t0 ? (double)n_prompt / (t1 - t0) : 0, tps);
		} else if (o.tokens_out) {
			for (size_t i = 0; i < n_out; i++)
				printf(i ? ",%d" : "%d", out[i]);
			printf("\n");
		} else {
			printf("\n");
		}
	}
	rc = 0;
	goto out;
fail:
	fflush(stdout);
	if (o.json) {
		printf("{\"error\":{\"code\":\"%s\",\"message\":", ciel_code_name(err.code));
		print_json_string(stdout, err.msg, strlen(err.msg));
		printf("}}\n");
	}
	fprintf(stderr, "ciel-llm run: %s\n", err.msg);
out:
	free(text);
	free(out);
	free(items);
	free(prompt);
	llm_sampler_free(smp);
	session_close(&s);
	return rc;
}
