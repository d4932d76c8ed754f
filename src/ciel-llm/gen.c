/*
 * gen.c — `ciel-llm gen`: a GGUF with random weights in a real model's shape
 * (benchmarks and tests need 1B-class files no hub can give us here), and
 * `ciel-llm info`: what a GGUF file holds.
 *
 * Weights are a function of (seed, tensor, row) only, so a file is the same
 * whatever the order rows are written in, and tensors are streamed row by row
 * (a 1.1B file never sits in memory). Matrices are normal-ish with std 0.02,
 * norms 1 ± 0.02: a forward pass stays finite over every layer. The
 * vocabulary comes from --vocab-from (stories260K's by default, padded with
 * "<pad_N>" up to the shape's size), or a minimal byte-fallback SPM vocab.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd.h"
#include "llm/gguf.h"
#include "llm/kern.h"
#include "util/err.h"
#include "util/rng.h"

#define DEFAULT_VOCAB "stories260K/stories260k-f32.v3.gguf"

struct shape {
	const char *name;
	uint32_t dim, layers, heads, kv_heads, ffn, vocab, ctx;
	float theta;
	int tied, llama3;
};

static const struct shape shapes[] = {
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 0, 0},
    {"llama3-1b", 2048, 16, 32, 8, 8192, 128256, 8192, 500000.0f, 1, 1},
    {"tiny", 64, 2, 4, 2, 128, 0, 256, 10000.0f, 0, 0}, /* vocab 0: from the vocab file, or 512 */
};

/* ---- deterministic random numbers ---- */

/* Sum of four uniforms, scaled to unit variance: cheap, bounded, normal enough for weights. */
static float normalish(uint64_t *s)
{
	uint64_t r = rng_splitmix64(s);
	float sum = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) +
		    (float)((r >> 32) & 0xffff) + (float)(r >> 48);
	return (sum / 65536.0f - 2.0f) * 1.7320508f;
}

struct gen_tensor {
	uint32_t type;
	uint64_t k;	 /* row length */
	uint64_t seed;	 /* of this tensor */
	float mean, std; /* norms: 1 and 0.02; matrices: 0 and 0.02 */
	float *row;	 /* f32 scratch of k */
};

static void gen_row(void *arg, uint64_t row, void *buf)
{
	struct gen_tensor *t = arg;
	uint64_t s = t->seed ^ (row * 0xd1b54a32d192ed03ull);
	for (uint64_t i = 0; i < t->k; i++)
		t->row[i] = t->mean + t->std * normalish(&s);
	kern_quant_row(t->type, t->row, buf, t->k);
}

/* ---- options ---- */

struct gen_opts {
	struct shape sh;
	const char *shape_name, *out, *vocab_from;
	uint32_t type, version;
	uint64_t seed;
	int vocab_given;
};

static int usage_gen(FILE *f)
{
	fprintf(
	    f,
	    "usage: ciel-llm gen (--shape NAME | --dim N --layers N --heads N [--kv-heads N]\n"
	    "                     --ffn N [--vocab N] [--ctx N]) --out FILE\n"
	    "                    [--type f32|f16|bf16|q8_0|q4_0] [--seed N] [--vocab-from GGUF]\n"
	    "                    [--tied] [--gguf-version 1|2|3]\n"
	    "Write a GGUF with random weights (deterministic from --seed) in a real model's "
	    "shape.\n"
	    "Shapes: tinyllama-1.1b (dim 2048, 22 layers, 32/4 heads, ffn 5632, vocab 32000),\n"
	    "        llama3-1b (dim 2048, 16 layers, 32/8 heads, ffn 8192, vocab 128256, tied),\n"
	    "        tiny (dim 64, 2 layers, 4/2 heads, ffn 128, ctx 256; vocab of --vocab-from).\n"
	    "--dim and the others override the shape's values. The tokenizer is copied from\n"
	    "--vocab-from (default: stories260K's, under $CIEL_MODELS or ../shared/models),\n"
	    "padded with <pad_N> tokens to the vocab size; --vocab-from none synthesises a\n"
	    "byte-fallback vocabulary.\n");
	return f == stdout ? 0 : 2;
}

static int num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!s || *s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* The default vocabulary file, if there is one. */
static const char *default_vocab(char *buf, size_t size)
{
	const char *env = getenv("CIEL_MODELS");
	if (env) {
		snprintf(buf, size, "%s/%s", env, DEFAULT_VOCAB);
		return access(buf, R_OK) == 0 ? buf : NULL;
	}
	/* the source tree this binary was built from: ../shared/models beside it */
	const char *src = __FILE__, *cut = strstr(src, "/src/ciel-llm/gen.c");
	if (cut &&
	    snprintf(buf, size, "%.*s/../shared/models/%s", (int)(cut - src), src, DEFAULT_VOCAB) <
		(int)size &&
	    access(buf, R_OK) == 0)
		return buf;
	return NULL;
}

static int parse_gen(int argc, char **argv, struct gen_opts *o)
{
	enum {
		O_DIM = 256,
		O_LAYERS,
		O_HEADS,
		O_KV,
		O_FFN,
		O_VOCAB,
		O_CTX,
		O_VFROM,
		O_TIED,
		O_VER
	};
	static const struct option lo[] = {
	    {"shape", 1, NULL, 's'},	 {"type", 1, NULL, 't'},
	    {"out", 1, NULL, 'o'},	 {"seed", 1, NULL, 'S'},
	    {"dim", 1, NULL, O_DIM},	 {"layers", 1, NULL, O_LAYERS},
	    {"heads", 1, NULL, O_HEADS}, {"kv-heads", 1, NULL, O_KV},
	    {"ffn", 1, NULL, O_FFN},	 {"vocab", 1, NULL, O_VOCAB},
	    {"ctx", 1, NULL, O_CTX},	 {"vocab-from", 1, NULL, O_VFROM},
	    {"tied", 0, NULL, O_TIED},	 {"gguf-version", 1, NULL, O_VER},
	    {"help", 0, NULL, 'h'},	 {0},
	};
	uint64_t v;
	int c;
	uint32_t *fields[] = {&o->sh.dim, &o->sh.layers, &o->sh.heads, &o->sh.kv_heads,
			      &o->sh.ffn, &o->sh.vocab,	 &o->sh.ctx};

	memset(o, 0, sizeof(*o));
	o->type = KERN_F32;
	o->version = 3;
	o->seed = 1;
	o->sh.theta = 10000.0f;
	/* the shape first, so explicit dimensions override it whatever the order */
	for (int i = 1; i < argc - 1; i++)
		if (!strcmp(argv[i], "--shape")) {
			o->shape_name = argv[i + 1];
			for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
				if (!strcmp(shapes[s].name, o->shape_name))
					o->sh = shapes[s];
			if (!o->sh.name) {
				fprintf(stderr,
					"ciel-llm gen: unknown shape '%s' (tinyllama-1.1b, "
					"llama3-1b, tiny)\n",
					o->shape_name);
				return 2;
			}
		}
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			break;
		case 't': {
			int t = kern_type_parse(optarg);
			if (t != KERN_F32 && t != KERN_F16 && t != KERN_BF16 && t != KERN_Q8_0 &&
			    t != KERN_Q4_0) {
				fprintf(stderr,
					"ciel-llm gen: --type %s: f32, f16, bf16, q8_0 or q4_0\n",
					optarg);
				return 2;
			}
			o->type = (uint32_t)t;
			break;
		}
		case 'o':
			o->out = optarg;
			break;
		case 'S':
			if (num(optarg, 0, UINT64_MAX, &o->seed) < 0) {
				fprintf(stderr, "ciel-llm gen: --seed %s: not a number\n", optarg);
				return 2;
			}
			break;
		case O_DIM:
		case O_LAYERS:
		case O_HEADS:
		case O_KV:
		case O_FFN:
		case O_VOCAB:
		case O_CTX:
			if (num(optarg, 1, 1u << 20, &v) < 0) {
				fprintf(stderr,
					"ciel-llm gen: --%s %s: a number from 1 to 1048576\n",
					lo[c - O_DIM + 4].name, optarg);
				return 2;
			}
			*fields[c - O_DIM] = (uint32_t)v;
			if (c == O_VOCAB)
				o->vocab_given = 1;
			break;
		case O_VFROM:
			o->vocab_from = optarg;
			break;
		case O_TIED:
			o->sh.tied = 1;
			break;
		case O_VER:
			if (num(optarg, 1, 3, &v) < 0) {
				fprintf(stderr, "ciel-llm gen: --gguf-version %s: 1, 2 or 3\n",
					optarg);
				return 2;
			}
			o->version = (uint32_t)v;
			break;
		case 'h':
			return usage_gen(stdout) - 1; /* -1: done, exit 0 */
		default:
			return usage_gen(stderr);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ciel-llm gen: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o->out) {
		fprintf(stderr, "ciel-llm gen: --out FILE is required\n");
		return 2;
	}
	if (!o->sh.kv_heads)
		o->sh.kv_heads = o->sh.heads;
	if (!o->sh.ctx)
		o->sh.ctx = 2048;
	if (!o->sh.dim || !o->sh.layers || !o->sh.heads || !o->sh.ffn) {
		fprintf(stderr,
			"ciel-llm gen: give --shape or --dim, --layers, --heads and --ffn\n");
		return 2;
	}
	if (o->sh.dim % o->sh.heads || o->sh.heads % o->sh.kv_heads ||
	    (o->sh.dim / o->sh.heads) % 2) {
		fprintf(stderr,
			"ciel-llm gen: dim %u must split into %u heads of even size, and the heads "
			"into %u "
			"kv heads\n",
			o->sh.dim, o->sh.heads, o->sh.kv_heads);
		return 2;
	}
	uint32_t blk = kern_block_elems(o->type);
	if (o->sh.dim % blk || o->sh.ffn % blk) {
		fprintf(stderr, "ciel-llm gen: %s needs dim and ffn to be multiples of %u\n",
			kern_type_name(o->type), blk);
		return 2;
	}
	return 0;
}

/* ---- vocabulary ---- */

/* tokenizer.* from src (or synthesised), the token arrays padded to n. */
static int write_vocab(struct gguf_writer *w, const struct gguf *src, uint32_t n,
		       struct ciel_err *err)
{
	uint32_t have = 0;
	int ti = -1, si = -1, yi = -1;
	char **tok = calloc(n, sizeof(char *));
	float *score = calloc(n, sizeof(float));
	int32_t *type = calloc(n, sizeof(int32_t));
	int r = -1;

	if (!tok || !score || !type) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (src) {
		ti = gguf_find(src, "tokenizer.ggml.tokens");
		si = gguf_find(src, "tokenizer.ggml.scores");
		yi = gguf_find(src, "tokenizer.ggml.token_type");
		if (ti < 0 || gguf_arr_type(src, ti) != GGUF_STRING) {
			ciel_err_set(err, CIEL_EINVAL,
				     "the vocabulary file has no tokenizer.ggml.tokens");
			goto out;
		}
		if (gguf_arr_len(src, ti) > n) {
			ciel_err_set(err, CIEL_EINVAL,
				     "the vocabulary file has %" PRIu64
				     " tokens, more than the vocab size %u",
				     gguf_arr_len(src, ti), n);
			goto out;
		}
		have = (uint32_t)gguf_arr_len(src, ti);
		if (gguf_w_copy_kv(w, src, "tokenizer.") < 0) {
			ciel_err_set(err, CIEL_ENOMEM, "copy the tokenizer");
			goto out;
		}
		for (uint32_t i = 0; i < have; i++) {
			struct gguf_str s;
			gguf_arr_str(src, ti, i, &s);
			tok[i] = strndup(s.s, (size_t)s.len);
			score[i] = si >= 0 ? (float)gguf_arr_num(src, si, i) : 0.0f;
			type[i] = yi >= 0 ? (int32_t)gguf_arr_num(src, yi, i) : 1;
			if (!tok[i]) {
				ciel_err_set(err, CIEL_ENOMEM, "out of memory");
				goto out;
			}
		}
	} else {
		/* the least a SentencePiece tokenizer needs: specials and the 256 byte tokens */
		static const char *const special[] = {"<unk>", "<s>", "</s>"};
		if (n < 3 + 256) {
			ciel_err_set(err, CIEL_EINVAL,
				     "a synthesised vocabulary needs at least 259 tokens");
			goto out;
		}
		for (; have < 3; have++) {
			tok[have] = strdup(special[have]);
			type[have] = have == 0 ? 2 : 3;
		}
		for (int b = 0; b < 256; b++, have++) {
			char x[8];
			snprintf(x, sizeof(x), "<0x%02X>", b);
			tok[have] = strdup(x);
			type[have] = 6;
		}
		gguf_w_str(w, "tokenizer.ggml.model", "llama");
		gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
		gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
		gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
	}
	/*
	 * padding: normal tokens (a random model emits mostly these, and they must
	 * decode to visible text for streams to carry anything) with the lowest
	 * score, and pieces no merge of real tokens reaches
	 */
	for (uint32_t i = have; i < n; i++) {
		char x[32];
		snprintf(x, sizeof(x), "<pad_%u>", i);
		tok[i] = strdup(x);
		score[i] = -1e9f;
		type[i] = 1;
	}
	for (uint32_t i = 0; i < n; i++)
		if (!tok[i]) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
	/* scores only where the tokenizer has them (SentencePiece; BPE ranks by merges) */
	if (gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, n) < 0 ||
	    ((!src || si >= 0) && gguf_w_arr_f32(w, "tokenizer.ggml.scores", score, n) < 0) ||
	    gguf_w_arr_i32(w, "tokenizer.ggml.token_type", type, n) < 0) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	r = 0;
out:
	if (tok)
		for (uint32_t i = 0; i < n; i++)
			free(tok[i]);
	free(tok);
	free(score);
	free(type);
	return r;
}

/* ---- the model ---- */

static uint32_t file_type(uint32_t t)
{
	/* llama.cpp's general.file_type (enum llama_ftype) */
	switch (t) {
	case KERN_F32:
		return 0;
	case KERN_F16:
		return 1;
	case KERN_Q4_0:
		return 2;
	case KERN_Q8_0:
		return 7;
	case KERN_BF16:
		return 32;
	default:
		return 0;
	}
}

static int gen_model(const struct gen_opts *o, const struct gguf *vocab, struct ciel_err *err)
{
	const struct shape *sh = &o->sh;
	uint32_t head_dim = sh->dim / sh->heads, kv_dim = head_dim * sh->kv_heads;
	size_t n_t = 3 + 9 * (size_t)sh->layers, it = 0;
	struct gen_tensor *gt = calloc(n_t, sizeof(*gt));
	float *scratch = malloc(sizeof(float) * (sh->dim > sh->ffn ? sh->dim : sh->ffn));
	struct gguf_writer *w = gguf_writer_new();
	char name[96];
	int r = -1;

	if (!gt || !scratch || !w) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	char gname[128];
	snprintf(gname, sizeof(gname), "random %s %s seed %" PRIu64,
		 o->shape_name ? o->shape_name : "custom", kern_type_name(o->type), o->seed);
	gguf_w_str(w, "general.architecture", "llama");
	gguf_w_str(w, "general.name", gname);
	gguf_w_u32(w, "general.file_type", file_type(o->type));
	gguf_w_u32(w, "llama.context_length", sh->ctx);
	gguf_w_u32(w, "llama.embedding_length", sh->dim);
	gguf_w_u32(w, "llama.block_count", sh->layers);
	gguf_w_u32(w, "llama.feed_forward_length", sh->ffn);
	gguf_w_u32(w, "llama.rope.dimension_count", head_dim);
	gguf_w_u32(w, "llama.attention.head_count", sh->heads);
	gguf_w_u32(w, "llama.attention.head_count_kv", sh->kv_heads);
	gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	gguf_w_f32(w, "llama.rope.freq_base", sh->theta);
	gguf_w_u32(w, "llama.vocab_size", sh->vocab);
	if (sh->llama3) {
		gguf_w_str(w, "llama.rope.scaling.type", "llama3");
		gguf_w_f32(w, "llama.rope.scaling.factor", 32.0f);
		gguf_w_f32(w, "llama.rope.scaling.low_freq_factor", 1.0f);
		gguf_w_f32(w, "llama.rope.scaling.high_freq_factor", 4.0f);
		gguf_w_u32(w, "llama.rope.scaling.original_context_length", 8192);
	}
	if (write_vocab(w, vocab, sh->vocab, err) < 0)
		goto out;

	/* llama.cpp's order: embeddings, then each block, then the head */
	struct {
		const char *fmt;
		uint64_t k, rows;
		int norm;
	} blk[] = {
	    {"blk.%u.attn_norm.weight", sh->dim, 1, 1},
	    {"blk.%u.attn_q.weight", sh->dim, sh->dim, 0},
	    {"blk.%u.attn_k.weight", sh->dim, kv_dim, 0},
	    {"blk.%u.attn_v.weight", sh->dim, kv_dim, 0},
	    {"blk.%u.attn_output.weight", sh->dim, sh->dim, 0},
	    {"blk.%u.ffn_norm.weight", sh->dim, 1, 1},
	    {"blk.%u.ffn_gate.weight", sh->dim, sh->ffn, 0},
	    {"blk.%u.ffn_up.weight", sh->dim, sh->ffn, 0},
	    {"blk.%u.ffn_down.weight", sh->ffn, sh->dim, 0},
	};
	for (uint32_t l = 0; l <= sh->layers + 1; l++) {
		size_t nb = l == 0 || l == sh->layers + 1 ? 1 : sizeof(blk) / sizeof(blk[0]);
		for (size_t b = 0; b < nb; b++) {
			uint64_t ne[2];
			int norm;
			if (l == 0) {
				snprintf(name, sizeof(name), "token_embd.weight");
				ne[0] = sh->dim, ne[1] = sh->vocab, norm = 0;
			} else if (l <= sh->layers) {
				snprintf(name, sizeof(name), blk[b].fmt, l - 1);
				ne[0] = blk[b].k, ne[1] = blk[b].rows, norm = blk[b].norm;
			} else {
				snprintf(name, sizeof(name), "output_norm.weight");
				ne[0] = sh->dim, ne[1] = 1, norm = 1;
			}
			struct gen_tensor *t = &gt[it];
			uint64_t s = o->seed ^ ((uint64_t)it << 40);
			t->type = norm ? KERN_F32 : o->type;
			t->k = ne[0];
			t->seed = rng_splitmix64(&s);
			t->mean = norm ? 1.0f : 0.0f;
			t->std = 0.02f;
			t->row = scratch;
			it++;
			if (gguf_w_tensor_cb(w, name, t->type, norm ? 1 : 2, ne, gen_row, t) < 0)
				break;
		}
	}
	if (!sh->tied) {
		uint64_t ne[2] = {sh->dim, sh->vocab}, s = o->seed ^ ((uint64_t)it << 40);
		struct gen_tensor *t = &gt[it++];
		*t = (struct gen_tensor){.type = o->type,
					 .k = sh->dim,
					 .seed = rng_splitmix64(&s),
					 .std = 0.02f,
					 .row = scratch};
		gguf_w_tensor_cb(w, "output.weight", t->type, 2, ne, gen_row, t);
	}
	if (gguf_writer_write(w, o->out, o->version, err) < 0)
		goto out;
	r = 0;
out:
	gguf_writer_free(w);
	free(scratch);
	free(gt);
	return r;
}

int cmd_gen(int argc, char **argv)
{
	struct gen_opts o;
	struct ciel_err err = {0};
	struct gguf *vocab = NULL;
	char vbuf[4096];
	int rc = parse_gen(argc, argv, &o);
	struct timespec t0, t1;

	if (rc)
		return rc < 0 ? 0 : rc;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	const char *vf = o.vocab_from ? o.vocab_from : default_vocab(vbuf, sizeof(vbuf));
	if (vf && strcmp(vf, "none")) {
		if (gguf_open(&vocab, vf, &err) < 0) {
			fprintf(stderr, "ciel-llm gen: --vocab-from: %s\n", err.msg);
			return 1;
		}
		int ti = gguf_find(vocab, "tokenizer.ggml.tokens");
		if (!o.sh.vocab && ti >= 0)
			o.sh.vocab = (uint32_t)gguf_arr_len(vocab, ti);
	}
	if (!o.sh.vocab)
		o.sh.vocab = 512;
	if (gen_model(&o, vocab, &err) < 0) {
		fprintf(stderr, "ciel-llm gen: %s\n", err.msg);
		gguf_close(vocab);
		return 1;
	}
	gguf_close(vocab);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "ciel-llm gen: wrote %s (%s, dim %u, %u layers, vocab %u) in %.1f s\n",
		o.out, kern_type_name(o.type), o.sh.dim, o.sh.layers, o.sh.vocab,
		(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}

/* ---- info ---- */

/* A JSON string of bytes that may not be UTF-8 (bytes that break it become U+FFFD). */
static json_t *jstr(const char *s, uint64_t len)
{
	json_t *j = json_stringn(s, (size_t)len);
	if (j)
		return j;
	char *c = malloc((size_t)len * 3 + 1);
	size_t o = 0;
	if (!c)
		return json_string("");
	for (uint64_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch && ch < 0x80) {
			c[o++] = (char)ch;
		} else {
			memcpy(c + o, "\xef\xbf\xbd", 3); /* keep it simple: any non-ASCII byte */
			o += 3;
		}
	}
	j = json_stringn(c, o);
	free(c);
	return j ? j : json_string("");
}

/* Print a string for a terminal: escaped, cut at max bytes. */
static void put_text(FILE *f, const char *s, uint64_t len, uint64_t max)
{
	fputc('"', f);
	for (uint64_t i = 0; i < len && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
	if (len > max)
		fprintf(f, "... (%" PRIu64 " bytes)", len);
}

static json_t *kv_json(const struct gguf *g, int i, int full)
{
	enum gguf_vtype t = gguf_kv_type(g, i);
	struct gguf_str s;
	int64_t iv;
	if (t == GGUF_STRING) {
		gguf_kv_str(g, i, &s);
		return jstr(s.s, s.len);
	}
	if (t == GGUF_BOOL)
		return json_boolean(gguf_kv_num(g, i) != 0);
	if (t != GGUF_ARRAY) {
		if (gguf_kv_int(g, i, &iv) == 0)
			return json_integer(iv);
		return json_real(gguf_kv_num(g, i));
	}
	uint64_t n = gguf_arr_len(g, i), show = full ? n : (n < 8 ? n : 8);
	json_t *a = json_array();
	for (uint64_t k = 0; k < show; k++) {
		if (gguf_arr_type(g, i) == GGUF_STRING) {
			gguf_arr_str(g, i, k, &s);
			json_array_append_new(a, jstr(s.s, s.len));
		} else {
			double d = gguf_arr_num(g, i, k);
			json_array_append_new(a, d == floor(d) && fabs(d) < 9e15
						     ? json_integer((json_int_t)d)
						     : json_real(d));
		}
	}
	return json_pack("{s:s, s:s, s:I, s:o}", "type", "array", "elem",
			 gguf_vtype_name(gguf_arr_type(g, i)), "len", (json_int_t)n,
			 full ? "values" : "head", a);
}

static void kv_text(FILE *f, const struct gguf *g, int i)
{
	enum gguf_vtype t = gguf_kv_type(g, i);
	struct gguf_str s;
	int64_t iv;
	fprintf(f, "  %-44s ", gguf_kv_key(g, i));
	if (t == GGUF_STRING) {
		gguf_kv_str(g, i, &s);
		fprintf(f, "%-8s ", "string");
		put_text(f, s.s, s.len, 80);
	} else if (t == GGUF_ARRAY) {
		enum gguf_vtype at = gguf_arr_type(g, i);
		uint64_t n = gguf_arr_len(g, i);
		fprintf(f, "%s[%" PRIu64 "] ", gguf_vtype_name(at), n);
		for (uint64_t k = 0; k < n && k < 6; k++) {
			if (at == GGUF_STRING) {
				gguf_arr_str(g, i, k, &s);
				put_text(f, s.s, s.len, 24);
			} else {
				fprintf(f, "%g", gguf_arr_num(g, i, k));
			}
			fputs(k + 1 < n ? ", " : "", f);
		}
		if (n > 6)
			fputs("...", f);
	} else {
		fprintf(f, "%-8s ", gguf_vtype_name(t));
		if (gguf_kv_int(g, i, &iv) == 0)
			fprintf(f, "%" PRId64, iv);
		else if (t == GGUF_BOOL)
			fputs(gguf_kv_num(g, i) != 0 ? "true" : "false", f);
		else
			fprintf(f, "%g", gguf_kv_num(g, i));
	}
	fputc('\n', f);
}

static uint64_t tensor_elems(const struct gguf_tensor *t)
{
	return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"output", 1, NULL, 'o'},
	    {"full", 0, NULL, 'f'},
	    {"help", 0, NULL, 'h'},
	    {0},
	};
	int json = 0, full = 0, c;
	struct gguf *g = NULL;
	struct ciel_err err = {0};
	uint64_t params = 0, tbytes = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "table")) {
				fprintf(stderr, "ciel-llm info: --output json|table\n");
				return 2;
			}
			json = !strcmp(optarg, "json");
			break;
		case 'f':
			full = 1;
			break;
		case 'h':
			printf("usage: ciel-llm info FILE.gguf [--output json|table] [--full]\n"
			       "Show a GGUF file's version, metadata (arrays abbreviated unless "
			       "--full) and\n"
			       "tensors (name, type, shape, bytes).\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: ciel-llm info FILE.gguf [--output json|table] [--full]\n");
		return 2;
	}
	if (gguf_open(&g, argv[optind], &err) < 0) {
		fprintf(stderr, "ciel-llm info: %s\n", err.msg);
		return 1;
	}
	for (size_t i = 0; i < gguf_n_tensors(g); i++) {
		params += tensor_elems(gguf_tensor(g, i));
		tbytes += gguf_tensor(g, i)->nbytes;
	}
	if (json) {
		json_t *meta = json_object(), *ts = json_array();
		for (size_t i = 0; i < gguf_n_kv(g); i++)
			json_object_set_new(meta, gguf_kv_key(g, (int)i), kv_json(g, (int)i, full));
		for (size_t i = 0; i < gguf_n_tensors(g); i++) {
			const struct gguf_tensor *t = gguf_tensor(g, i);
			json_t *shape = json_array();
			for (uint32_t d = 0; d < t->n_dims; d++)
				json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
			const char *tn = gguf_type_name(t->type);
			json_array_append_new(
			    ts,
			    json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type",
				      tn ? tn : "?", "shape", shape, "bytes", (json_int_t)t->nbytes,
				      "offset", (json_int_t)(gguf_data_offset(g) + t->offset)));
		}
		json_t *root = json_pack(
		    "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "file", argv[optind],
		    "version", (json_int_t)gguf_version(g), "file_bytes",
		    (json_int_t)gguf_file_size(g), "alignment", (json_int_t)gguf_alignment(g),
		    "data_offset", (json_int_t)gguf_data_offset(g), "n_params", (json_int_t)params,
		    "tensor_bytes", (json_int_t)tbytes, "metadata", meta, "tensors", ts);
		json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(root);
	} else {
		printf("%s: GGUF version %u, %zu bytes, alignment %u, tensor data at byte %" PRIu64
		       "\n",
		       argv[optind], gguf_version(g), gguf_file_size(g), gguf_alignment(g),
		       gguf_data_offset(g));
		printf("metadata (%zu keys):\n", gguf_n_kv(g));
		for (size_t i = 0; i < gguf_n_kv(g); i++)
			kv_text(stdout, g, (int)i);
		printf("tensors (%zu, %" PRIu64 " parameters, %" PRIu64 " bytes):\n",
		       gguf_n_tensors(g), params, tbytes);
		for (size_t i = 0; i < gguf_n_tensors(g); i++) {
			const struct gguf_tensor *t = gguf_tensor(g, i);
			const char *tn = gguf_type_name(t->type);
			char shape[96];
			int o = 0;
			for (uint32_t d = 0; d < t->n_dims && o < (int)sizeof(shape); d++)
				o += snprintf(shape + o, sizeof(shape) - (size_t)o, "%s%" PRIu64,
					      d ? " x " : "", t->ne[d]);
			printf("  %-32s %-5s %-20s %12" PRIu64 "\n", t->name, tn ? tn : "?", shape,
			       t->nbytes);
		}
	}
	gguf_close(g);
	return 0;
}
