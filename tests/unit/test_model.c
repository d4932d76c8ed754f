/*
 * test_model — the forward pass and the KV cache on small random models
 * written here (and on stories260K when the shared models are present):
 * a mixed batch gives the same logits as each sequence alone, prefill in
 * chunks equals token by token, blocks come back zeroed, bad input changes
 * nothing, and broken files are refused naming the tensor at fault. The
 * numbers themselves are checked against the numpy reference in t0090.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* the module itself, to look into the KV pool's memory */
#include "llm/model.c"

struct shape {
	const char *arch;
	uint32_t dim, layers, heads, kv_heads, ffn, vocab, ctx;
	uint32_t type; /* of the matrices */
	int tied;
	const char *omit;  /* a tensor left out */
	const char *wrong; /* a tensor given one row too many */
};

static const struct shape tiny = {"llama", 32, 2, 4, 2, 64, 40, 64, KERN_F32, 0, NULL, NULL};

static uint64_t rng = 42;

static float frand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((rng >> 40) & 0xffffff) / (float)(1 << 24) - 0.5f;
}

static void add_tensor(struct gguf_writer *w, const struct shape *s, const char *name,
		       uint32_t type, uint64_t k, uint64_t rows, float scale)
{
	uint64_t ne[2] = {k, rows};
	float *f;
	void *q;

	if (s->omit && !strcmp(name, s->omit))
		return;
	if (s->wrong && !strcmp(name, s->wrong))
		ne[1] = ++rows;
	f = malloc(k * rows * sizeof(float));
	q = malloc(kern_row_bytes(type, k) * rows);
	assert_non_null(f);
	assert_non_null(q);
	for (uint64_t i = 0; i < k * rows; i++)
		f[i] = rows == 1 ? 1.0f + scale * frand() : scale * frand();
	for (uint64_t r = 0; r < rows; r++)
		kern_quant_row(type, f + r * k, (uint8_t *)q + r * kern_row_bytes(type, k), k);
	assert_int_equal(gguf_w_tensor(w, name, type, rows == 1 ? 1 : 2, ne, q), 0);
	free(f);
	free(q);
}

static void write_model(const char *path, const struct shape *s)
{
	struct gguf_writer *w = gguf_writer_new();
	struct ciel_err err = {0};
	uint32_t hd = s->dim / s->heads;
	char k[96];
	int qwen = !strcmp(s->arch, "qwen2");

	assert_non_null(w);
	gguf_w_str(w, "general.architecture", s->arch);
	gguf_w_str(w, "general.name", "test-tiny");
#define KEY(x) (snprintf(k, sizeof(k), "%s." x, s->arch), k)
	gguf_w_u32(w, KEY("context_length"), s->ctx);
	gguf_w_u32(w, KEY("embedding_length"), s->dim);
	gguf_w_u32(w, KEY("block_count"), s->layers);
	gguf_w_u32(w, KEY("feed_forward_length"), s->ffn);
	gguf_w_u32(w, KEY("attention.head_count"), s->heads);
	gguf_w_u32(w, KEY("attention.head_count_kv"), s->kv_heads);
	gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
	gguf_w_f32(w, KEY("rope.freq_base"), 10000.0f);
	gguf_w_u32(w, KEY("rope.dimension_count"), hd);
#undef KEY
	add_tensor(w, s, "token_embd.weight", s->type, s->dim, s->vocab, 1.0f);
	for (uint32_t l = 0; l < s->layers; l++) {
		char n[64];
#define T(x) (snprintf(n, sizeof(n), "blk.%u." x, l), n)
		add_tensor(w, s, T("attn_norm.weight"), KERN_F32, s->dim, 1, 0.2f);
		add_tensor(w, s, T("ffn_norm.weight"), KERN_F32, s->dim, 1, 0.2f);
		add_tensor(w, s, T("attn_q.weight"), s->type, s->dim, s->dim, 0.3f);
		add_tensor(w, s, T("attn_k.weight"), s->type, s->dim, hd * s->kv_heads, 0.3f);
		add_tensor(w, s, T("attn_v.weight"), s->type, s->dim, hd * s->kv_heads, 0.3f);
		add_tensor(w, s, T("attn_output.weight"), s->type, s->dim, s->dim, 0.3f);
		add_tensor(w, s, T("ffn_gate.weight"), s->type, s->dim, s->ffn, 0.3f);
		add_tensor(w, s, T("ffn_up.weight"), s->type, s->dim, s->ffn, 0.3f);
		add_tensor(w, s, T("ffn_down.weight"), s->type, s->ffn, s->dim, 0.3f);
		if (qwen) {
			add_tensor(w, s, T("attn_q.bias"), KERN_F32, s->dim, 1, 0.5f);
			add_tensor(w, s, T("attn_k.bias"), KERN_F32, hd * s->kv_heads, 1, 0.5f);
			add_tensor(w, s, T("attn_v.bias"), KERN_F32, hd * s->kv_heads, 1, 0.5f);
		}
#undef T
	}
	add_tensor(w, s, "output_norm.weight", KERN_F32, s->dim, 1, 0.2f);
	if (!s->tied)
		add_tensor(w, s, "output.weight", s->type, s->dim, s->vocab, 1.0f);
	if (gguf_writer_write(w, path, 3, &err) < 0)
		fail_msg("write %s: %s", path, err.msg);
	gguf_writer_free(w);
}

static char *tmp_model(const struct shape *s)
{
	static int n;
	char *p = malloc(128);

	assert_non_null(p);
	snprintf(p, 128, "/tmp/test_model.%d.%d.gguf", (int)getpid(), n++);
	write_model(p, s);
	return p;
}

static struct llm_model *open_tmp(const struct shape *s)
{
	char *p = tmp_model(s);
	struct llm_model *m = NULL;
	struct ciel_err err = {0};

	if (llm_model_open(&m, p, &err) < 0)
		fail_msg("open: %s", err.msg);
	unlink(p);
	free(p);
	return m;
}

/* Open a model that must fail; the message must contain want. */
static void open_fails(const struct shape *s, const char *want)
{
	char *p = tmp_model(s);
	struct llm_model *m = NULL;
	struct ciel_err err = {0};

	assert_int_equal(llm_model_open(&m, p, &err), -1);
	assert_null(m);
	assert_int_equal(err.code, CIEL_EINVAL);
	if (!strstr(err.msg, want))
		fail_msg("error '%s' does not name '%s'", err.msg, want);
	unlink(p);
	free(p);
}

static void test_open(void **st)
{
	struct llm_model *m = open_tmp(&tiny);
	const struct llm_hparams *hp = llm_model_hparams(m);

	(void)st;
	assert_string_equal(hp->arch, "llama");
	assert_string_equal(hp->name, "test-tiny");
	assert_int_equal(hp->dim, 32);
	assert_int_equal(hp->n_layers, 2);
	assert_int_equal(hp->n_heads, 4);
	assert_int_equal(hp->n_kv_heads, 2);
	assert_int_equal(hp->head_dim, 8);
	assert_int_equal(hp->ffn, 64);
	assert_int_equal(hp->n_vocab, 40);
	assert_int_equal(hp->ctx_train, 64);
	assert_int_equal(hp->wtype, KERN_F32);
	assert_false(hp->rope_neox);
	/* one embedding row, every other tensor once */
	assert_true(hp->bytes_per_token > 2 * 7 * 32 * 32 * 4);
	assert_true(hp->bytes_per_token < llm_model_file_bytes(m));
	assert_null(llm_model_tok(m));
	assert_null(llm_model_chat_template(m));
	assert_int_equal(llm_kv_block_bytes(m), 2 * 2 * LLM_KV_BLOCK * 16 * sizeof(float));
	llm_model_close(m);
}

static void test_bad_models(void **st)
{
	struct shape s = tiny;

	(void)st;
	s.omit = "blk.1.ffn_up.weight";
	open_fails(&s, "blk.1.ffn_up.weight");
	s.omit = NULL;
	s.wrong = "blk.0.attn_k.weight";
	open_fails(&s, "blk.0.attn_k.weight");
	s.wrong = "output_norm.weight";
	open_fails(&s, "output_norm.weight");
	s.wrong = NULL;
	s.arch = "gpt2";
	open_fails(&s, "'gpt2' is not supported");
	s.arch = "qwen2";
	s.omit = "blk.0.attn_v.bias";
	open_fails(&s, "blk.0.attn_v.bias");
	s = tiny;
	s.kv_heads = 3;
	open_fails(&s, "head_count_kv");
	s = tiny;
	s.heads = 5;
	s.kv_heads = 5;
	open_fails(&s, "not a multiple of head_count 5");
	s = tiny;
	s.ctx = 1u << 30;
	open_fails(&s, "implausible");
}

struct rig {
	struct llm_model *m;
	struct kern_pool *pool;
	struct llm_kv *kv;
	struct llm_ctx *ctx;
};

static void rig_open(struct rig *r, struct llm_model *m, uint32_t blocks, uint32_t batch)
{
	struct ciel_err err = {0};

	r->m = m;
	r->pool = kern_pool_new(2, &err);
	assert_non_null(r->pool);
	assert_int_equal(llm_kv_new(&r->kv, m, blocks, &err), 0);
	assert_int_equal(llm_ctx_new(&r->ctx, m, batch, r->pool, &err), 0);
}

static void rig_close(struct rig *r)
{
	llm_ctx_free(r->ctx);
	llm_kv_free(r->kv);
	kern_pool_free(r->pool);
	llm_model_close(r->m);
}

/* Feed toks[0..n) to seq one call per token, logits of each into out[n][vocab]. */
static void one_by_one(struct rig *r, struct llm_seq *s, const int32_t *toks, uint32_t n,
		       float *out)
{
	uint32_t nv = llm_model_hparams(r->m)->n_vocab;
	struct ciel_err err = {0};

	for (uint32_t i = 0; i < n; i++) {
		struct llm_item it = {s, toks[i], 1};

		if (llm_forward(r->ctx, &it, 1, out + (size_t)i * nv, &err) < 0)
			fail_msg("forward: %s", err.msg);
	}
}

static void assert_close(const float *a, const float *b, uint32_t n, float tol)
{
	for (uint32_t i = 0; i < n; i++)
		if (!(fabsf(a[i] - b[i]) <= tol * fmaxf(1.0f, fabsf(a[i]))))
			fail_msg("logit %u: %.9g vs %.9g", i, a[i], b[i]);
}

static void check_mixed_batch(const struct shape *sh)
{
	struct rig r;
	const int32_t ta[] = {1, 5, 9, 33, 2, 17, 0, 39};
	const int32_t tb[] = {3, 3, 21, 8};
	float la[8 * 40], lb[4 * 40], got[5 * 40];
	struct llm_seq *a, *b;
	struct llm_item items[5];
	struct ciel_err err = {0};
	uint32_t nv;

	rig_open(&r, open_tmp(sh), 16, 8);
	nv = llm_model_hparams(r.m)->n_vocab;
	assert_int_equal(nv, 40);
	/* each sequence alone, token by token */
	a = llm_seq_new(r.kv);
	b = llm_seq_new(r.kv);
	one_by_one(&r, a, ta, 8, la);
	one_by_one(&r, b, tb, 4, lb);
	llm_seq_free(a);
	llm_seq_free(b);

	/* a prefills ta[0..3) and b tb[0..3) as chunks, logits of the last only */
	a = llm_seq_new(r.kv);
	b = llm_seq_new(r.kv);
	for (int i = 0; i < 3; i++)
		items[i] = (struct llm_item){a, ta[i], i == 2};
	assert_int_equal(llm_forward(r.ctx, items, 3, got, &err), 0);
	assert_close(la + 2 * nv, got, nv, 1e-5f);
	for (int i = 0; i < 3; i++)
		items[i] = (struct llm_item){b, tb[i], i == 2};
	assert_int_equal(llm_forward(r.ctx, items, 3, got, &err), 0);
	assert_close(lb + 2 * nv, got, nv, 1e-5f);

	/* one batch: b decodes its 4th token between a's chunk of ta[3..7) */
	items[0] = (struct llm_item){a, ta[3], 1};
	items[1] = (struct llm_item){a, ta[4], 0};
	items[2] = (struct llm_item){b, tb[3], 1};
	items[3] = (struct llm_item){a, ta[5], 1};
	items[4] = (struct llm_item){a, ta[6], 1};
	assert_int_equal(llm_forward(r.ctx, items, 5, got, &err), 0);
	assert_int_equal(llm_seq_len(a), 7);
	assert_int_equal(llm_seq_len(b), 4);
	assert_close(la + 3 * nv, got + 0 * nv, nv, 1e-5f);
	assert_close(lb + 3 * nv, got + 1 * nv, nv, 1e-5f);
	assert_close(la + 5 * nv, got + 2 * nv, nv, 1e-5f);
	assert_close(la + 6 * nv, got + 3 * nv, nv, 1e-5f);
	/* and the logits do depend on the context: a's 6th differs from a fresh start */
	assert_true(fabsf(la[5 * nv] - la[0]) > 1e-4f || fabsf(la[5 * nv + 1] - la[1]) > 1e-4f);
	llm_seq_free(a);
	llm_seq_free(b);
	rig_close(&r);
}

static void test_mixed_batch(void **st)
{
	struct shape s = tiny;

	(void)st;
	check_mixed_batch(&s);
	/* NeoX RoPE and biases, tied output */
	s.arch = "qwen2";
	s.tied = 1;
	check_mixed_batch(&s);
	/* quantised weights: activations are quantised per row, whatever the batch */
	s = tiny;
	s.type = KERN_Q8_0;
	check_mixed_batch(&s);
}

static int all_zero(const struct llm_kv *kv)
{
	for (size_t i = 0; i < kv->map_bytes; i++)
		if (kv->base[i])
			return 0;
	return 1;
}

static void test_kv_blocks(void **st)
{
	struct rig r;
	struct llm_seq *a, *b;
	struct ciel_err err = {0};
	int32_t toks[40];
	float lg[40 * 40];
	struct llm_item items[40];

	(void)st;
	rig_open(&r, open_tmp(&tiny), 4, 40);
	assert_int_equal(llm_kv_blocks_total(r.kv), 4);
	assert_int_equal(llm_kv_blocks_free(r.kv), 4);
	a = llm_seq_new(r.kv);
	b = llm_seq_new(r.kv);
	assert_int_equal(llm_seq_reserve(a, 33, &err), 0);
	assert_int_equal(llm_kv_blocks_free(r.kv), 2);
	/* reserving again what is already there takes nothing */
	assert_int_equal(llm_seq_reserve(a, 10, &err), 0);
	assert_int_equal(llm_kv_blocks_free(r.kv), 2);
	assert_int_equal(llm_seq_reserve(b, 3 * LLM_KV_BLOCK, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_int_equal(llm_kv_blocks_free(r.kv), 2);
	for (int i = 0; i < 40; i++)
		toks[i] = (i * 7) % 40;
	for (int i = 0; i < 40; i++)
		items[i] = (struct llm_item){a, toks[i], i == 39};
	assert_int_equal(llm_forward(r.ctx, items, 40, lg, &err), 0);
	assert_int_equal(llm_seq_len(a), 40);
	assert_int_equal(llm_kv_blocks_free(r.kv), 2);
	items[0] = (struct llm_item){b, 1, 1};
	assert_int_equal(llm_forward(r.ctx, items, 1, lg, &err), 0);
	assert_int_equal(llm_kv_blocks_free(r.kv), 1);
	assert_false(all_zero(r.kv));
	llm_seq_free(a);
	assert_int_equal(llm_kv_blocks_free(r.kv), 3);
	llm_seq_free(b);
	assert_int_equal(llm_kv_blocks_free(r.kv), 4);
	/* nothing of either sequence is left for the next one to read */
	assert_true(all_zero(r.kv));
	llm_seq_free(NULL);
	rig_close(&r);
}

static void test_bad_input(void **st)
{
	struct shape s = tiny;
	struct rig r, r2;
	struct llm_seq *a, *b, *other;
	struct ciel_err err = {0};
	struct llm_item items[9];
	float lg[8 * 40];

	(void)st;
	s.ctx = 40;
	rig_open(&r, open_tmp(&s), 2, 8);
	a = llm_seq_new(r.kv);
	b = llm_seq_new(r.kv);
	/* a fills its first block exactly */
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < 8; i++)
			items[i] = (struct llm_item){a, i + k, 0};
		assert_int_equal(llm_forward(r.ctx, items, 8, lg, &err), 0);
	}
	assert_int_equal(llm_seq_len(a), 32);
	assert_int_equal(llm_kv_blocks_free(r.kv), 1);

	/* token out of range, negative token: nothing appended */
	items[0] = (struct llm_item){b, 3, 1};
	items[1] = (struct llm_item){a, 40, 1};
	assert_int_equal(llm_forward(r.ctx, items, 2, lg, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	items[1].tok = -1;
	assert_int_equal(llm_forward(r.ctx, items, 2, lg, &err), -1);
	assert_int_equal(llm_seq_len(a), 32);
	assert_int_equal(llm_seq_len(b), 0);
	assert_int_equal(llm_kv_blocks_free(r.kv), 1);

	/* both need a block and one is free: neither gets it */
	items[1].tok = 4;
	assert_int_equal(llm_forward(r.ctx, items, 2, lg, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_int_equal(llm_seq_len(a), 32);
	assert_int_equal(llm_seq_len(b), 0);
	assert_int_equal(llm_kv_blocks_free(r.kv), 1);

	/* over the context of 40: a at 32 + 9 */
	assert_int_equal(llm_forward(r.ctx, items + 1, 1, lg, &err), 0);
	assert_int_equal(llm_kv_blocks_free(r.kv), 0);
	for (int i = 0; i < 8; i++)
		items[i] = (struct llm_item){a, i, 1};
	assert_int_equal(llm_forward(r.ctx, items, 8, lg, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_int_equal(llm_seq_len(a), 33);
	assert_int_equal(llm_forward(r.ctx, items, 7, lg, &err), 0);
	assert_int_equal(llm_seq_len(a), 40);

	/* over the context's batch */
	assert_int_equal(llm_forward(r.ctx, items, 9, lg, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);

	/* a sequence of another model's cache */
	rig_open(&r2, open_tmp(&tiny), 1, 1);
	other = llm_seq_new(r2.kv);
	items[0] = (struct llm_item){other, 1, 1};
	assert_int_equal(llm_forward(r.ctx, items, 1, lg, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(llm_seq_len(other), 0);
	llm_seq_free(other);
	rig_close(&r2);

	/* an empty batch is a no-op */
	assert_int_equal(llm_forward(r.ctx, items, 0, lg, &err), 0);
	llm_seq_free(a);
	llm_seq_free(b);
	rig_close(&r);
}

/* The real model: greedy from "Once upon a time" as the numpy reference decodes it. */
static void test_stories(void **st)
{
	static const int32_t prompt[] = {1, 403, 407, 261, 378};
	static const int32_t want[] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
				       426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
				       411, 322, 265, 282, 295, 433, 426, 385, 328, 432};
	char path[512];
	const char *src = __FILE__, *slash = strrchr(src, '/');
	struct llm_model *m = NULL;
	struct ciel_err err = {0};
	struct rig r;
	struct llm_seq *s;
	struct llm_item items[5];
	float lg[512];

	(void)st;
	snprintf(path, sizeof(path),
		 "%.*s/../../../shared/models/stories260K/stories260k-f32.v3.gguf",
		 slash ? (int)(slash - src) : 1, slash ? src : ".");
	if (access(path, R_OK))
		fail_msg("stories260K not found at %s (../shared beside the source)", path);
	if (llm_model_open(&m, path, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(llm_model_hparams(m)->n_vocab, 512);
	assert_int_equal(llm_model_hparams(m)->n_kv_heads, 4);
	assert_non_null(llm_model_tok(m));
	rig_open(&r, m, 4, 5);
	s = llm_seq_new(r.kv);
	for (int i = 0; i < 5; i++)
		items[i] = (struct llm_item){s, prompt[i], i == 4};
	assert_int_equal(llm_forward(r.ctx, items, 5, lg, &err), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int32_t best = 0;

		for (int32_t j = 1; j < 512; j++)
			if (lg[j] > lg[best])
				best = j;
		assert_int_equal(best, want[i]);
		items[0] = (struct llm_item){s, best, 1};
		assert_int_equal(llm_forward(r.ctx, items, 1, lg, &err), 0);
	}
	llm_seq_free(s);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open),	cmocka_unit_test(test_bad_models),
	    cmocka_unit_test(test_mixed_batch), cmocka_unit_test(test_kv_blocks),
	    cmocka_unit_test(test_bad_input),	cmocka_unit_test(test_stories),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
