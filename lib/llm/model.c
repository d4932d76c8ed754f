/*
 * model — see model.h.
 *
 * The forward pass is organised around the batch: every matrix product runs
 * once over all the batch's tokens (one pass over the weights serves every
 * sequence), and only attention is per item, threaded over items × heads.
 *
 * KV block layout: [layer][K|V][position in block][kv_dim] f32. Blocks are
 * page-aligned slices of one anonymous mapping so that giving a block back
 * can both zero it and return its memory with madvise(MADV_DONTNEED).
 */
#include "llm/model.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Sizes beyond these are a hostile or broken header, not a model. */
#define MAX_DIM (1u << 16)
#define MAX_LAYERS 1024u
#define MAX_HEADS 1024u
#define MAX_FFN (1u << 20)
#define MAX_CTX (1u << 24)
/* Attention of fewer multiply-adds than this runs on the calling thread. */
#define ATT_MIN_THREADED (1u << 16)

struct llm_layer {
	const struct gguf_tensor *wq, *wk, *wv, *wo, *gate, *up, *down;
	float *attn_norm, *ffn_norm; /* owned f32 copies */
	float *bq, *bk, *bv;	     /* qwen2 biases, owned, or NULL */
};

struct llm_model {
	struct gguf *g;
	struct tok *tok;
	struct llm_hparams hp;
	uint32_t n_rot, q_dim, kv_dim, n_embd_rows;
	const struct gguf_tensor *embd, *out;
	float *out_norm;
	double *rope_freq; /* n_rot/2 frequencies, scaling applied */
	struct llm_layer *layers;
	const char *chat_template;
};

struct llm_kv {
	const struct llm_model *m;
	pthread_mutex_t lock;
	uint8_t *base;
	size_t map_bytes;
	uint64_t block_bytes, stride;
	uint32_t n_blocks, n_free;
	uint32_t *free_list; /* stack of free block indices */
};

struct llm_seq {
	struct llm_kv *kv;
	uint32_t len, n_blocks, cap;
	uint32_t *blocks;
	uint32_t pending; /* tokens of the batch in flight (llm_forward only) */
};

struct llm_ctx {
	const struct llm_model *m;
	struct kern_pool *pool;
	uint32_t max_batch;
	int n_threads;
	float *x, *xb, *q, *k, *v, *att, *gate, *up, *hb;
	float *rope; /* [max_batch][n_rot/2][cos, sin] */
	uint32_t *pos;
	uint64_t att_work; /* multiply-adds of one layer's attention in this batch */
	float *scores;	   /* per thread, scores_len floats each */
	uint64_t scores_len;
};

/* ---- loading ---- */

static int get_key_u32(const struct gguf *g, const char *arch, const char *key, uint32_t *out,
		       int required, struct ciel_err *err)
{
	char k[160];
	struct ciel_err e = {0};

	snprintf(k, sizeof(k), "%s.%s", arch, key);
	if (gguf_get_u32(g, k, out, &e) == 0)
		return 0;
	if (e.code == CIEL_ENOTFOUND && !required)
		return 0;
	if (e.code == CIEL_ENOTFOUND)
		return ciel_err_set(err, CIEL_EINVAL, "missing metadata key %s", k);
	return ciel_err_set(err, CIEL_EINVAL, "%s", e.msg);
}

static int get_key_f32(const struct gguf *g, const char *arch, const char *key, float *out,
		       struct ciel_err *err)
{
	char k[160];
	struct ciel_err e = {0};

	snprintf(k, sizeof(k), "%s.%s", arch, key);
	if (gguf_get_f32(g, k, out, &e) == 0 || e.code == CIEL_ENOTFOUND)
		return 0;
	return ciel_err_set(err, CIEL_EINVAL, "%s", e.msg);
}

static int load_hparams(struct llm_model *m, const char *path, struct ciel_err *err)
{
	struct llm_hparams *hp = &m->hp;
	const struct gguf *g = m->g;
	struct gguf_str s;
	struct ciel_err e = {0};
	uint32_t key_len = 0;

	if (gguf_get_str(g, "general.architecture", &s, &e) < 0)
		return ciel_err_set(err, CIEL_EINVAL,
				    "general.architecture: %s (supported: llama, qwen2)",
				    e.code == CIEL_ENOTFOUND ? "missing" : e.msg);
	if (strcmp(s.s, "llama") && strcmp(s.s, "qwen2"))
		return ciel_err_set(err, CIEL_EINVAL,
				    "general.architecture '%.64s' is not supported (supported: "
				    "llama, qwen2)",
				    s.s);
	snprintf(hp->arch, sizeof(hp->arch), "%s", s.s);
	if (gguf_get_str(g, "general.name", &s, NULL) == 0 && s.len) {
		snprintf(hp->name, sizeof(hp->name), "%s", s.s);
	} else {
		const char *b = strrchr(path, '/');
		snprintf(hp->name, sizeof(hp->name), "%s", b ? b + 1 : path);
	}

	hp->ctx_train = 2048;
	hp->rms_eps = 1e-5f;
	hp->rope_theta = 10000.0f;
	if (get_key_u32(g, hp->arch, "embedding_length", &hp->dim, 1, err) ||
	    get_key_u32(g, hp->arch, "block_count", &hp->n_layers, 1, err) ||
	    get_key_u32(g, hp->arch, "feed_forward_length", &hp->ffn, 1, err) ||
	    get_key_u32(g, hp->arch, "attention.head_count", &hp->n_heads, 1, err) ||
	    get_key_u32(g, hp->arch, "context_length", &hp->ctx_train, 0, err) ||
	    get_key_f32(g, hp->arch, "attention.layer_norm_rms_epsilon", &hp->rms_eps, err) ||
	    get_key_f32(g, hp->arch, "rope.freq_base", &hp->rope_theta, err))
		return -1;
	hp->n_kv_heads = hp->n_heads;
	if (get_key_u32(g, hp->arch, "attention.head_count_kv", &hp->n_kv_heads, 0, err) ||
	    get_key_u32(g, hp->arch, "attention.key_length", &key_len, 0, err))
		return -1;
	if (!hp->dim || hp->dim > MAX_DIM || !hp->n_layers || hp->n_layers > MAX_LAYERS ||
	    !hp->ffn || hp->ffn > MAX_FFN || !hp->n_heads || hp->n_heads > MAX_HEADS ||
	    !hp->ctx_train || hp->ctx_train > MAX_CTX)
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s: implausible hyperparameters (embedding_length %u, "
				    "block_count %u, feed_forward_length %u, head_count %u, "
				    "context_length %u)",
				    hp->arch, hp->dim, hp->n_layers, hp->ffn, hp->n_heads,
				    hp->ctx_train);
	if (hp->dim % hp->n_heads)
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s: embedding_length %u is not a multiple of head_count %u",
				    hp->arch, hp->dim, hp->n_heads);
	hp->head_dim = hp->dim / hp->n_heads;
	if (key_len && key_len != hp->head_dim)
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s: attention.key_length %u differs from embedding_length / "
				    "head_count (%u): not supported",
				    hp->arch, key_len, hp->head_dim);
	if (!hp->n_kv_heads || hp->n_heads % hp->n_kv_heads)
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s: head_count %u is not a multiple of head_count_kv %u",
				    hp->arch, hp->n_heads, hp->n_kv_heads);
	if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_theta > 1))
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s: bad layer_norm_rms_epsilon %g or rope.freq_base %g",
				    hp->arch, hp->rms_eps, hp->rope_theta);
	m->n_rot = hp->head_dim;
	if (get_key_u32(g, hp->arch, "rope.dimension_count", &m->n_rot, 0, err))
		return -1;
	if (!m->n_rot || m->n_rot > hp->head_dim || m->n_rot % 2)
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s: rope.dimension_count %u must be even and at most the head "
				    "size %u",
				    hp->arch, m->n_rot, hp->head_dim);
	hp->rope_neox = !strcmp(hp->arch, "qwen2");
	m->q_dim = hp->n_heads * hp->head_dim;
	m->kv_dim = hp->n_kv_heads * hp->head_dim;
	return 0;
}

/* Frequencies of the rotary pairs, with Llama-3 or linear scaling applied. */
static int load_rope(struct llm_model *m, struct ciel_err *err)
{
	struct llm_hparams *hp = &m->hp;
	uint32_t half = m->n_rot / 2;
	const struct gguf_tensor *rf = gguf_find_tensor(m->g, "rope_freqs.weight");
	char k[160];
	struct gguf_str s = {0};
	float *factors = NULL;

	m->rope_freq = calloc(half, sizeof(double));
	if (!m->rope_freq)
		return ciel_err_set(err, CIEL_ENOMEM, "rope table");
	hp->rope_factor = 1.0f;
	hp->rope_low_freq = 1.0f;
	hp->rope_high_freq = 4.0f;
	hp->rope_orig_ctx = 8192;
	snprintf(k, sizeof(k), "%s.rope.scaling.type", hp->arch);
	gguf_get_str(m->g, k, &s, NULL);
	if (get_key_f32(m->g, hp->arch, "rope.scaling.factor", &hp->rope_factor, err) ||
	    get_key_f32(m->g, hp->arch, "rope.scaling.low_freq_factor", &hp->rope_low_freq, err) ||
	    get_key_f32(m->g, hp->arch, "rope.scaling.high_freq_factor", &hp->rope_high_freq,
			err) ||
	    get_key_u32(m->g, hp->arch, "rope.scaling.original_context_length", &hp->rope_orig_ctx,
			0, err))
		return -1;
	if (rf) {
		if (rf->type != KERN_F32 || rf->ne[0] < half || rf->ne[1] != 1)
			return ciel_err_set(err, CIEL_EINVAL,
					    "tensor 'rope_freqs.weight': want f32 [%u], have %s "
					    "[%llu, %llu]",
					    half, kern_type_name(rf->type) ?: "?",
					    (unsigned long long)rf->ne[0],
					    (unsigned long long)rf->ne[1]);
		factors = (float *)rf->data;
		hp->rope_llama3 = 1;
	} else if (s.s && !strcmp(s.s, "llama3")) {
		if (!(hp->rope_factor >= 1) || !(hp->rope_high_freq > hp->rope_low_freq) ||
		    !(hp->rope_low_freq > 0) || !hp->rope_orig_ctx)
			return ciel_err_set(err, CIEL_EINVAL,
					    "%s.rope.scaling: bad llama3 factors (factor %g, "
					    "low_freq_factor %g, high_freq_factor %g)",
					    hp->arch, hp->rope_factor, hp->rope_low_freq,
					    hp->rope_high_freq);
		hp->rope_llama3 = 1;
	} else if (s.s && !strcmp(s.s, "linear")) {
		if (!(hp->rope_factor > 0))
			return ciel_err_set(err, CIEL_EINVAL, "%s.rope.scaling.factor %g", hp->arch,
					    hp->rope_factor);
	} else if (s.s && strcmp(s.s, "none")) {
		return ciel_err_set(err, CIEL_EINVAL,
				    "%s.rope.scaling.type '%.32s' is not supported (none, linear, "
				    "llama3)",
				    hp->arch, s.s);
	} else {
		hp->rope_factor = 1.0f;
	}
	for (uint32_t i = 0; i < half; i++) {
		double f = pow(hp->rope_theta, -2.0 * i / m->n_rot);

		if (factors) {
			f /= factors[i];
		} else if (hp->rope_llama3) {
			/* Llama 3.1: long wavelengths slowed by factor, short ones kept, a blend
			 * between. */
			double wl = 2 * M_PI / f, orig = hp->rope_orig_ctx;
			double lo = hp->rope_low_freq, hi = hp->rope_high_freq;

			if (wl > orig / lo) {
				f /= hp->rope_factor;
			} else if (wl >= orig / hi) {
				double sm = (orig / wl - lo) / (hi - lo);
				f = (1 - sm) * f / hp->rope_factor + sm * f;
			}
		} else {
			f /= hp->rope_factor;
		}
		m->rope_freq[i] = f;
	}
	return 0;
}

/* A matrix tensor of rows × k elements (GGUF ne = [k, rows]) of a weight type we run. */
static int want_matrix(struct llm_model *m, const char *name, uint64_t k, uint64_t rows,
		       const struct gguf_tensor **out, struct ciel_err *err)
{
	const struct gguf_tensor *t = gguf_find_tensor(m->g, name);

	if (!t)
		return ciel_err_set(err, CIEL_EINVAL, "tensor '%s' is missing", name);
	if (!kern_type_ok(t->type))
		return ciel_err_set(err, CIEL_EINVAL, "tensor '%s': type %s (%u) is not supported",
				    name, kern_type_name(t->type) ?: "unknown", t->type);
	if (t->n_dims > 2 || t->ne[0] != k || (rows && t->ne[1] != rows) || t->ne[2] != 1 ||
	    t->ne[3] != 1)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tensor '%s': shape [%llu, %llu] where [%llu, %llu] is needed",
				    name, (unsigned long long)t->ne[0],
				    (unsigned long long)t->ne[1], (unsigned long long)k,
				    (unsigned long long)rows);
	if (!kern_row_bytes(t->type, k) || t->nbytes != kern_row_bytes(t->type, k) * t->ne[1])
		return ciel_err_set(err, CIEL_EINVAL,
				    "tensor '%s': %llu elements per row do not fit type %s", name,
				    (unsigned long long)k, kern_type_name(t->type));
	*out = t;
	return 0;
}

/* A vector of n elements (norms, biases), as an owned f32 copy. */
static int want_vector(struct llm_model *m, const char *name, uint64_t n, int optional, float **out,
		       struct ciel_err *err)
{
	const struct gguf_tensor *t = gguf_find_tensor(m->g, name);

	*out = NULL;
	if (!t && optional)
		return 0;
	if (!t)
		return ciel_err_set(err, CIEL_EINVAL, "tensor '%s' is missing", name);
	if (t->type != KERN_F32 && t->type != KERN_F16 && t->type != KERN_BF16)
		return ciel_err_set(err, CIEL_EINVAL,
				    "tensor '%s': type %s (%u) is not supported for a vector", name,
				    kern_type_name(t->type) ?: "unknown", t->type);
	if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1 ||
	    t->nbytes != kern_row_bytes(t->type, n))
		return ciel_err_set(err, CIEL_EINVAL,
				    "tensor '%s': shape [%llu, %llu] where [%llu] is needed", name,
				    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				    (unsigned long long)n);
	*out = malloc(n * sizeof(float));
	if (!*out)
		return ciel_err_set(err, CIEL_ENOMEM, "tensor '%s'", name);
	kern_dequant_row(t->type, t->data, *out, n);
	return 0;
}

static int load_layer(struct llm_model *m, uint32_t i, struct ciel_err *err)
{
	struct llm_layer *L = &m->layers[i];
	uint32_t d = m->hp.dim, f = m->hp.ffn;
	char n[96];
	int bias = !strcmp(m->hp.arch, "qwen2");

#define NAME(s) (snprintf(n, sizeof(n), "blk.%u." s, i), n)
	if (want_vector(m, NAME("attn_norm.weight"), d, 0, &L->attn_norm, err) ||
	    want_vector(m, NAME("ffn_norm.weight"), d, 0, &L->ffn_norm, err) ||
	    want_matrix(m, NAME("attn_q.weight"), d, m->q_dim, &L->wq, err) ||
	    want_matrix(m, NAME("attn_k.weight"), d, m->kv_dim, &L->wk, err) ||
	    want_matrix(m, NAME("attn_v.weight"), d, m->kv_dim, &L->wv, err) ||
	    want_matrix(m, NAME("attn_output.weight"), m->q_dim, d, &L->wo, err) ||
	    want_matrix(m, NAME("ffn_gate.weight"), d, f, &L->gate, err) ||
	    want_matrix(m, NAME("ffn_up.weight"), d, f, &L->up, err) ||
	    want_matrix(m, NAME("ffn_down.weight"), f, d, &L->down, err) ||
	    want_vector(m, NAME("attn_q.bias"), m->q_dim, !bias, &L->bq, err) ||
	    want_vector(m, NAME("attn_k.bias"), m->kv_dim, !bias, &L->bk, err) ||
	    want_vector(m, NAME("attn_v.bias"), m->kv_dim, !bias, &L->bv, err))
		return -1;
#undef NAME
	return 0;
}

/* Type of most matrix weights, the bytes a decode step reads, the parameter count. */
static void weigh(struct llm_model *m)
{
	struct llm_hparams *hp = &m->hp;
	uint64_t by_type[64] = {0}, best = 0;

	for (size_t i = 0; i < gguf_n_tensors(m->g); i++) {
		const struct gguf_tensor *t = gguf_tensor(m->g, i);
		uint64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];

		hp->n_params += n;
		if (t == m->embd) {
			hp->bytes_per_token += kern_row_bytes(t->type, t->ne[0]);
			if (t != m->out)
				continue;
		}
		hp->bytes_per_token += t->nbytes;
		if (t->n_dims == 2 && t->type < 64)
			by_type[t->type] += n;
	}
	for (uint32_t t = 0; t < 64; t++)
		if (by_type[t] > best) {
			best = by_type[t];
			hp->wtype = t;
		}
}

void llm_model_close(struct llm_model *m)
{
	if (!m)
		return;
	if (m->layers)
		for (uint32_t i = 0; i < m->hp.n_layers; i++) {
			struct llm_layer *L = &m->layers[i];

			free(L->attn_norm);
			free(L->ffn_norm);
			free(L->bq);
			free(L->bk);
			free(L->bv);
		}
	free(m->layers);
	free(m->out_norm);
	free(m->rope_freq);
	tok_free(m->tok);
	gguf_close(m->g);
	free(m);
}

int llm_model_open(struct llm_model **out, const char *path, struct ciel_err *err)
{
	struct llm_model *m = calloc(1, sizeof(*m));
	struct gguf_str tmpl;

	*out = NULL;
	if (!m)
		return ciel_err_set(err, CIEL_ENOMEM, "model");
	if (gguf_open(&m->g, path, err) < 0)
		goto fail;
	if (load_hparams(m, path, err) < 0 || load_rope(m, err) < 0)
		goto fail_named;
	/* the embedding table decides which token ids are valid, the output how many logits */
	if (want_matrix(m, "token_embd.weight", m->hp.dim, 0, &m->embd, err) < 0)
		goto fail_named;
	m->n_embd_rows = (uint32_t)m->embd->ne[1];
	if (!m->embd->ne[1] || m->embd->ne[1] > INT32_MAX) {
		ciel_err_set(err, CIEL_EINVAL, "tensor 'token_embd.weight': %llu rows",
			     (unsigned long long)m->embd->ne[1]);
		goto fail_named;
	}
	if (gguf_find_tensor(m->g, "output.weight")) {
		if (want_matrix(m, "output.weight", m->hp.dim, 0, &m->out, err) < 0)
			goto fail_named;
	} else {
		m->out = m->embd; /* tied embeddings */
	}
	if (!m->out->ne[1] || m->out->ne[1] > INT32_MAX) {
		ciel_err_set(err, CIEL_EINVAL, "tensor 'output.weight': %llu rows",
			     (unsigned long long)m->out->ne[1]);
		goto fail_named;
	}
	m->hp.n_vocab = (uint32_t)m->out->ne[1];
	if (want_vector(m, "output_norm.weight", m->hp.dim, 0, &m->out_norm, err) < 0)
		goto fail_named;
	m->layers = calloc(m->hp.n_layers, sizeof(*m->layers));
	if (!m->layers) {
		ciel_err_set(err, CIEL_ENOMEM, "layers");
		goto fail_named;
	}
	for (uint32_t i = 0; i < m->hp.n_layers; i++)
		if (load_layer(m, i, err) < 0)
			goto fail_named;
	/* a file without a vocabulary still runs on token ids (tests, random models) */
	if (gguf_find(m->g, "tokenizer.ggml.model") >= 0) {
		if (tok_from_gguf(&m->tok, m->g, err) < 0)
			goto fail_named;
		if (tok_n_vocab(m->tok) > (int32_t)m->n_embd_rows) {
			ciel_err_set(err, CIEL_EINVAL,
				     "the vocabulary has %d tokens but token_embd.weight only %u "
				     "rows",
				     tok_n_vocab(m->tok), m->n_embd_rows);
			goto fail_named;
		}
	}
	if (gguf_get_str(m->g, "tokenizer.chat_template", &tmpl, NULL) == 0)
		m->chat_template = tmpl.s;
	weigh(m);
	*out = m;
	return 0;
fail_named:
	ciel_err_prefix(err, "%s", path);
fail:
	llm_model_close(m);
	return -1;
}

const struct llm_hparams *llm_model_hparams(const struct llm_model *m)
{
	return &m->hp;
}

const struct tok *llm_model_tok(const struct llm_model *m)
{
	return m->tok;
}

const char *llm_model_chat_template(const struct llm_model *m)
{
	return m->chat_template;
}

uint64_t llm_model_file_bytes(const struct llm_model *m)
{
	return gguf_file_size(m->g);
}

/* ---- KV cache ---- */

uint64_t llm_kv_block_bytes(const struct llm_model *m)
{
	return (uint64_t)m->hp.n_layers * 2 * LLM_KV_BLOCK * m->kv_dim * sizeof(float);
}

int llm_kv_new(struct llm_kv **out, const struct llm_model *m, uint32_t n_blocks,
	       struct ciel_err *err)
{
	struct llm_kv *kv;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	*out = NULL;
	if (!n_blocks)
		return ciel_err_set(err, CIEL_EINVAL, "a KV cache needs at least one block");
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return ciel_err_set(err, CIEL_ENOMEM, "kv cache");
	kv->m = m;
	kv->block_bytes = llm_kv_block_bytes(m);
	kv->stride = (kv->block_bytes + page - 1) / page * page;
	if (kv->stride > SIZE_MAX / n_blocks) {
		free(kv);
		return ciel_err_set(err, CIEL_ENOMEM, "kv cache of %u blocks", n_blocks);
	}
	kv->map_bytes = (size_t)(kv->stride * n_blocks);
	/* anonymous memory: zero until written, resident only as sequences grow */
	kv->base = mmap(NULL, kv->map_bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	kv->free_list = malloc(n_blocks * sizeof(uint32_t));
	if (kv->base == MAP_FAILED || !kv->free_list) {
		uint64_t bytes = kv->stride * n_blocks;

		if (kv->base != MAP_FAILED)
			munmap(kv->base, kv->map_bytes);
		free(kv->free_list);
		free(kv);
		return ciel_err_set(err, CIEL_ENOMEM, "kv cache of %u blocks (%llu bytes)",
				    n_blocks, (unsigned long long)bytes);
	}
	/* lowest index on top, so blocks are handed out in address order */
	for (uint32_t i = 0; i < n_blocks; i++)
		kv->free_list[i] = n_blocks - 1 - i;
	kv->n_blocks = kv->n_free = n_blocks;
	pthread_mutex_init(&kv->lock, NULL);
	*out = kv;
	return 0;
}

void llm_kv_free(struct llm_kv *kv)
{
	if (!kv)
		return;
	munmap(kv->base, kv->map_bytes);
	free(kv->free_list);
	pthread_mutex_destroy(&kv->lock);
	free(kv);
}

uint32_t llm_kv_blocks_total(const struct llm_kv *kv)
{
	return kv->n_blocks;
}

uint32_t llm_kv_blocks_free(const struct llm_kv *kv)
{
	uint32_t n;

	pthread_mutex_lock((pthread_mutex_t *)&kv->lock);
	n = kv->n_free;
	pthread_mutex_unlock((pthread_mutex_t *)&kv->lock);
	return n;
}

static float *kv_block(const struct llm_kv *kv, uint32_t b)
{
	return (float *)(kv->base + (uint64_t)b * kv->stride);
}

/* Zero a block (and let the kernel take its pages back) before anyone else can get it. */
static void kv_scrub(struct llm_kv *kv, uint32_t b)
{
	uint8_t *p = (uint8_t *)kv_block(kv, b);

	if (madvise(p, kv->stride, MADV_DONTNEED) < 0)
		memset(p, 0, kv->block_bytes);
}

struct llm_seq *llm_seq_new(struct llm_kv *kv)
{
	struct llm_seq *s = calloc(1, sizeof(*s));

	if (s)
		s->kv = kv;
	return s;
}

void llm_seq_free(struct llm_seq *s)
{
	if (!s)
		return;
	for (uint32_t i = 0; i < s->n_blocks; i++)
		kv_scrub(s->kv, s->blocks[i]);
	pthread_mutex_lock(&s->kv->lock);
	for (uint32_t i = 0; i < s->n_blocks; i++)
		s->kv->free_list[s->kv->n_free++] = s->blocks[i];
	pthread_mutex_unlock(&s->kv->lock);
	free(s->blocks);
	free(s);
}

uint32_t llm_seq_len(const struct llm_seq *s)
{
	return s->len;
}

static uint32_t blocks_for(uint64_t positions)
{
	return (uint32_t)((positions + LLM_KV_BLOCK - 1) / LLM_KV_BLOCK);
}

/* Grow the block table to hold want entries (no blocks taken yet). */
static int seq_table(struct llm_seq *s, uint32_t want, struct ciel_err *err)
{
	uint32_t *nb;
	uint32_t cap;

	if (want <= s->cap)
		return 0;
	cap = want < 8 ? 8 : want;
	if (cap < s->cap * 2)
		cap = s->cap * 2;
	nb = realloc(s->blocks, (size_t)cap * sizeof(*nb));
	if (!nb)
		return ciel_err_set(err, CIEL_ENOMEM, "kv block table");
	s->blocks = nb;
	s->cap = cap;
	return 0;
}

/*
 * Take blocks for every sequence in seqs so each can hold want[i] positions,
 * all or none: the count is checked under the lock before anything is taken.
 */
static int kv_take(struct llm_kv *kv, struct llm_seq **seqs, const uint64_t *want, uint32_t n,
		   struct ciel_err *err)
{
	uint64_t need = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t b = blocks_for(want[i]);

		if (want[i] > (uint64_t)UINT32_MAX * LLM_KV_BLOCK / 2)
			return ciel_err_set(err, CIEL_EUNAVAIL, "sequence too long");
		if (seq_table(seqs[i], (uint32_t)b, err) < 0)
			return -1;
		if (b > seqs[i]->n_blocks)
			need += b - seqs[i]->n_blocks;
	}
	pthread_mutex_lock(&kv->lock);
	if (need > kv->n_free) {
		uint32_t nf = kv->n_free;

		pthread_mutex_unlock(&kv->lock);
		return ciel_err_set(err, CIEL_EUNAVAIL,
				    "KV cache full: %llu blocks needed, %u free of %u",
				    (unsigned long long)need, nf, kv->n_blocks);
	}
	for (uint32_t i = 0; i < n; i++)
		while (seqs[i]->n_blocks < blocks_for(want[i]))
			seqs[i]->blocks[seqs[i]->n_blocks++] = kv->free_list[--kv->n_free];
	pthread_mutex_unlock(&kv->lock);
	return 0;
}

int llm_seq_reserve(struct llm_seq *s, uint32_t n, struct ciel_err *err)
{
	uint64_t want = (uint64_t)s->len + n;

	return kv_take(s->kv, &s, &want, 1, err);
}

/* ---- forward ---- */

void llm_ctx_free(struct llm_ctx *c)
{
	if (!c)
		return;
	free(c->x);
	free(c->xb);
	free(c->q);
	free(c->k);
	free(c->v);
	free(c->att);
	free(c->gate);
	free(c->up);
	free(c->hb);
	free(c->rope);
	free(c->pos);
	free(c->scores);
	free(c);
}

int llm_ctx_new(struct llm_ctx **out, const struct llm_model *m, uint32_t max_batch,
		struct kern_pool *pool, struct ciel_err *err)
{
	struct llm_ctx *c;
	size_t b = max_batch;
	const struct llm_hparams *hp = &m->hp;

	*out = NULL;
	if (!max_batch || max_batch > 65536)
		return ciel_err_set(err, CIEL_EINVAL, "max_batch %u out of range 1..65536",
				    max_batch);
	c = calloc(1, sizeof(*c));
	if (!c)
		return ciel_err_set(err, CIEL_ENOMEM, "llm context");
	c->m = m;
	c->pool = pool;
	c->max_batch = max_batch;
	c->n_threads = pool ? kern_pool_threads(pool) : 1;
	c->x = malloc(b * hp->dim * sizeof(float));
	c->xb = malloc(b * hp->dim * sizeof(float));
	c->q = malloc(b * m->q_dim * sizeof(float));
	c->k = malloc(b * m->kv_dim * sizeof(float));
	c->v = malloc(b * m->kv_dim * sizeof(float));
	c->att = malloc(b * m->q_dim * sizeof(float));
	c->gate = malloc(b * hp->ffn * sizeof(float));
	c->up = malloc(b * hp->ffn * sizeof(float));
	c->hb = malloc(b * hp->ffn * sizeof(float));
	c->rope = malloc(b * m->n_rot * sizeof(float));
	c->pos = malloc(b * sizeof(uint32_t));
	if (!c->x || !c->xb || !c->q || !c->k || !c->v || !c->att || !c->gate || !c->up || !c->hb ||
	    !c->rope || !c->pos) {
		llm_ctx_free(c);
		return ciel_err_set(err, CIEL_ENOMEM, "llm context for a batch of %u", max_batch);
	}
	*out = c;
	return 0;
}

struct att_job {
	struct llm_ctx *c;
	const struct llm_item *items;
	uint32_t n, layer;
	uint32_t next; /* next item × head task, taken atomically */
};

/* Attention of one query head of one item over its sequence's positions 0..pos. */
static void attend(struct llm_ctx *c, const struct llm_item *it, uint32_t pos, uint32_t layer,
		   const float *q, float *out, uint32_t kvh, float *sc)
{
	const struct llm_model *m = c->m;
	const struct llm_kv *kv = it->seq->kv;
	uint32_t hd = m->hp.head_dim;
	uint64_t koff = ((uint64_t)layer * 2 * LLM_KV_BLOCK) * m->kv_dim + kvh * hd;
	uint64_t voff = koff + (uint64_t)LLM_KV_BLOCK * m->kv_dim;
	float scale = 1.0f / sqrtf((float)hd);

	for (uint32_t t = 0; t <= pos; t++) {
		const float *blk = kv_block(kv, it->seq->blocks[t / LLM_KV_BLOCK]);

		sc[t] = kern_dot_f32(q, blk + koff + (uint64_t)(t % LLM_KV_BLOCK) * m->kv_dim, hd) *
			scale;
	}
	kern_softmax(sc, pos + 1);
	memset(out, 0, hd * sizeof(float));
	for (uint32_t t = 0; t <= pos; t++) {
		const float *blk = kv_block(kv, it->seq->blocks[t / LLM_KV_BLOCK]);

		kern_axpy_f32(out, sc[t], blk + voff + (uint64_t)(t % LLM_KV_BLOCK) * m->kv_dim,
			      hd);
	}
}

static void att_worker(void *arg, int ti, int nt)
{
	struct att_job *j = arg;
	struct llm_ctx *c = j->c;
	const struct llm_model *m = c->m;
	uint32_t nh = m->hp.n_heads, group = nh / m->hp.n_kv_heads, hd = m->hp.head_dim;
	float *sc = c->scores + (uint64_t)ti * c->scores_len;
	uint32_t task;

	(void)nt;
	/* tasks differ in length (positions), so threads take them as they free up */
	while ((task = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->n * nh) {
		uint32_t i = task / nh, h = task % nh;
		uint64_t off = (uint64_t)i * m->q_dim + (uint64_t)h * hd;

		attend(c, &j->items[i], c->pos[i], j->layer, c->q + off, c->att + off, h / group,
		       sc);
	}
}

/* Rotate the first n_rot dims of each of n_h heads of x by the item's angles. */
static void rope_apply(const struct llm_model *m, float *x, uint32_t n_h, const float *cs)
{
	uint32_t hd = m->hp.head_dim, half = m->n_rot / 2;

	for (uint32_t h = 0; h < n_h; h++) {
		float *v = x + (uint64_t)h * hd;

		for (uint32_t j = 0; j < half; j++) {
			uint32_t a = m->hp.rope_neox ? j : 2 * j;
			uint32_t b = m->hp.rope_neox ? j + half : 2 * j + 1;
			float c = cs[2 * j], s = cs[2 * j + 1], x0 = v[a], x1 = v[b];

			v[a] = x0 * c - x1 * s;
			v[b] = x0 * s + x1 * c;
		}
	}
}

static void add_bias(float *y, const float *b, uint32_t n, uint32_t rows)
{
	if (!b)
		return;
	for (uint32_t i = 0; i < n; i++)
		kern_axpy_f32(y + (uint64_t)i * rows, 1.0f, b, rows);
}

static void layer_forward(struct llm_ctx *c, const struct llm_item *items, uint32_t n, uint32_t l)
{
	const struct llm_model *m = c->m;
	const struct llm_layer *L = &m->layers[l];
	uint32_t d = m->hp.dim, f = m->hp.ffn;
	struct att_job job = {.c = c, .items = items, .n = n, .layer = l};

	for (uint32_t i = 0; i < n; i++)
		kern_rmsnorm(c->xb + (uint64_t)i * d, c->x + (uint64_t)i * d, L->attn_norm, d,
			     m->hp.rms_eps);
	kern_matmul(c->pool, L->wq->type, L->wq->data, m->q_dim, d, c->xb, (int)n, c->q);
	kern_matmul(c->pool, L->wk->type, L->wk->data, m->kv_dim, d, c->xb, (int)n, c->k);
	kern_matmul(c->pool, L->wv->type, L->wv->data, m->kv_dim, d, c->xb, (int)n, c->v);
	add_bias(c->q, L->bq, n, m->q_dim);
	add_bias(c->k, L->bk, n, m->kv_dim);
	add_bias(c->v, L->bv, n, m->kv_dim);
	for (uint32_t i = 0; i < n; i++) {
		const float *cs = c->rope + (uint64_t)i * m->n_rot;
		float *k = c->k + (uint64_t)i * m->kv_dim;
		uint32_t p = c->pos[i];
		float *blk = kv_block(items[i].seq->kv, items[i].seq->blocks[p / LLM_KV_BLOCK]);
		uint64_t off = ((uint64_t)l * 2 * LLM_KV_BLOCK + p % LLM_KV_BLOCK) * m->kv_dim;

		rope_apply(m, c->q + (uint64_t)i * m->q_dim, m->hp.n_heads, cs);
		rope_apply(m, k, m->hp.n_kv_heads, cs);
		/* every K/V of the batch goes in first: item i reads only positions <= its own */
		memcpy(blk + off, k, m->kv_dim * sizeof(float));
		memcpy(blk + off + (uint64_t)LLM_KV_BLOCK * m->kv_dim,
		       c->v + (uint64_t)i * m->kv_dim, m->kv_dim * sizeof(float));
	}
	/* waking the pool costs more than a few short attentions (decode of a small model) */
	if (c->pool && c->att_work >= ATT_MIN_THREADED)
		kern_pool_run(c->pool, att_worker, &job);
	else
		att_worker(&job, 0, 1);
	kern_matmul(c->pool, L->wo->type, L->wo->data, d, m->q_dim, c->att, (int)n, c->xb);
	for (uint32_t i = 0; i < (uint64_t)n * d; i++)
		c->x[i] += c->xb[i];

	for (uint32_t i = 0; i < n; i++)
		kern_rmsnorm(c->xb + (uint64_t)i * d, c->x + (uint64_t)i * d, L->ffn_norm, d,
			     m->hp.rms_eps);
	kern_matmul(c->pool, L->gate->type, L->gate->data, f, d, c->xb, (int)n, c->gate);
	kern_matmul(c->pool, L->up->type, L->up->data, f, d, c->xb, (int)n, c->up);
	kern_swiglu(c->hb, c->gate, c->up, (uint64_t)n * f);
	kern_matmul(c->pool, L->down->type, L->down->data, d, f, c->hb, (int)n, c->xb);
	for (uint32_t i = 0; i < (uint64_t)n * d; i++)
		c->x[i] += c->xb[i];
}

/*
 * Everything that can fail, before anything changes: the inputs, the context
 * lengths, the scratch for attention, and the KV blocks of every sequence
 * (taken all at once). Sets c->pos and each sequence's pending count.
 */
static int forward_check(struct llm_ctx *c, const struct llm_item *items, uint32_t n,
			 struct ciel_err *err)
{
	const struct llm_model *m = c->m;
	struct llm_seq **seqs = NULL;
	uint64_t *want = NULL;
	uint32_t n_seqs = 0, max_pos = 0;
	int rc = -1;

	if (n > c->max_batch)
		return ciel_err_set(err, CIEL_EINVAL, "batch of %u over the context's maximum %u",
				    n, c->max_batch);
	for (uint32_t i = 0; i < n; i++) {
		if (!items[i].seq || items[i].seq->kv->m != m)
			return ciel_err_set(err, CIEL_EINVAL,
					    "item %u: no sequence, or one of another model", i);
		if (items[i].tok < 0 || (uint32_t)items[i].tok >= m->n_embd_rows)
			return ciel_err_set(err, CIEL_EINVAL,
					    "token %d out of range (vocabulary of %u)",
					    items[i].tok, m->n_embd_rows);
		items[i].seq->pending = 0;
	}
	c->att_work = 0;
	seqs = malloc(n * sizeof(*seqs) + 1);
	want = malloc(n * sizeof(*want) + 1);
	if (!seqs || !want) {
		ciel_err_set(err, CIEL_ENOMEM, "batch of %u", n);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct llm_seq *s = items[i].seq;

		if (!s->pending)
			seqs[n_seqs++] = s;
		c->pos[i] = s->len + s->pending++;
		if (c->pos[i] >= m->hp.ctx_train) {
			ciel_err_set(err, CIEL_EUNAVAIL,
				     "the sequence would pass the model's context of %u tokens",
				     m->hp.ctx_train);
			goto out;
		}
		if (c->pos[i] > max_pos)
			max_pos = c->pos[i];
		c->att_work += (uint64_t)(c->pos[i] + 1) * m->q_dim * 2;
	}
	if ((uint64_t)max_pos + 1 > c->scores_len) {
		uint64_t len = ((uint64_t)max_pos + 1 + 255) / 256 * 256;
		float *sc = malloc(len * c->n_threads * sizeof(float));

		if (!sc) {
			ciel_err_set(err, CIEL_ENOMEM, "attention scratch");
			goto out;
		}
		free(c->scores);
		c->scores = sc;
		c->scores_len = len;
	}
	for (uint32_t i = 0; i < n_seqs; i++) {
		want[i] = (uint64_t)seqs[i]->len + seqs[i]->pending;
		if (seqs[i]->kv != seqs[0]->kv) {
			ciel_err_set(err, CIEL_EINVAL, "a batch's sequences must share a KV cache");
			goto out;
		}
	}
	if (n_seqs && kv_take(seqs[0]->kv, seqs, want, n_seqs, err) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		for (uint32_t i = 0; i < n; i++)
			items[i].seq->pending = 0;
	free(seqs);
	free(want);
	return rc;
}

int llm_forward(struct llm_ctx *c, const struct llm_item *items, uint32_t n, float *logits,
		struct ciel_err *err)
{
	const struct llm_model *m = c->m;
	uint32_t d = m->hp.dim, half = m->n_rot / 2, n_out = 0;

	if (forward_check(c, items, n, err) < 0)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		float *cs = c->rope + (uint64_t)i * m->n_rot;

		kern_get_row(m->embd->type, m->embd->data, d, (uint64_t)items[i].tok,
			     c->x + (uint64_t)i * d);
		for (uint32_t j = 0; j < half; j++) {
			double a = (double)c->pos[i] * m->rope_freq[j];

			cs[2 * j] = (float)cos(a);
			cs[2 * j + 1] = (float)sin(a);
		}
	}
	for (uint32_t l = 0; l < m->hp.n_layers; l++)
		layer_forward(c, items, n, l);
	/* only the rows that want logits go through the (large) output matrix */
	for (uint32_t i = 0; i < n; i++)
		if (items[i].logits)
			kern_rmsnorm(c->xb + (uint64_t)n_out++ * d, c->x + (uint64_t)i * d,
				     m->out_norm, d, m->hp.rms_eps);
	if (n_out)
		kern_matmul(c->pool, m->out->type, m->out->data, m->hp.n_vocab, d, c->xb,
			    (int)n_out, logits);
	for (uint32_t i = 0; i < n; i++) {
		items[i].seq->len += items[i].seq->pending;
		items[i].seq->pending = 0;
	}
	return 0;
}
