/*
 * model — a Llama-family transformer loaded from GGUF, its KV cache, and the
 * forward pass over a batch of tokens from many sequences.
 *
 * Architectures: "llama" (Llama 1/2/3, Mistral, TinyLlama...), and "qwen2"
 * (the same block with biases on q/k/v and NeoX-style RoPE). Anything else is
 * refused with CIEL_EINVAL naming general.architecture and what we support.
 * RMSNorm, RoPE (theta from the file; Llama-3 frequency scaling when
 * rope.scaling.type is "llama3" or rope_freqs/llama3 keys are present),
 * grouped-query attention, SwiGLU FFN, output.weight or tied to
 * token_embd.weight. Weights stay in the mapping; nothing is copied.
 *
 * KV cache: a pool of fixed-size blocks (LLM_KV_BLOCK positions of every
 * layer's K and V, f32). A sequence owns a table of blocks; a block belongs
 * to one sequence at a time and is zeroed when it is given back, so nothing
 * of one request (or tenant) is ever visible to another.
 *
 * Threads: one llm_ctx per thread that calls llm_forward; the model and the
 * KV pool are shared read-only / by disjoint blocks.
 */
#ifndef CIEL_MODEL_H
#define CIEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "llm/gguf.h"
#include "llm/kern.h"
#include "llm/tok.h"
#include "util/err.h"

#define LLM_KV_BLOCK 32

struct llm_hparams {
	char arch[32];
	char name[128]; /* general.name, or the file's base name */
	uint32_t n_vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn;
	uint32_t ctx_train; /* context length the model was trained for */
	float rope_theta, rms_eps;
	int rope_neox; /* rotate halves (qwen2) instead of adjacent pairs (llama) */
	int rope_llama3;
	float rope_factor, rope_low_freq, rope_high_freq;
	uint32_t rope_orig_ctx;
	uint32_t wtype;		  /* type of most matrix weights (for display) */
	uint64_t bytes_per_token; /* bytes of weights one decode step reads */
	uint64_t n_params;
};

struct llm_model;

/* Map path, check every tensor's shape and type against the hparams, build the tokenizer. */
int llm_model_open(struct llm_model **out, const char *path, struct ciel_err *err);
void llm_model_close(struct llm_model *m);
const struct llm_hparams *llm_model_hparams(const struct llm_model *m);
/* The tokenizer, or NULL when the file has no vocabulary (tokenizer.ggml.model absent). */
const struct tok *llm_model_tok(const struct llm_model *m);
/* tokenizer.chat_template, or NULL. */
const char *llm_model_chat_template(const struct llm_model *m);
/* Bytes of the mapped file (the resident part of a worker's memory besides the KV cache). */
uint64_t llm_model_file_bytes(const struct llm_model *m);

/* KV cache pool. */
struct llm_kv;
uint64_t llm_kv_block_bytes(const struct llm_model *m);
int llm_kv_new(struct llm_kv **out, const struct llm_model *m, uint32_t n_blocks,
	       struct ciel_err *err);
void llm_kv_free(struct llm_kv *kv);
uint32_t llm_kv_blocks_total(const struct llm_kv *kv);
uint32_t llm_kv_blocks_free(const struct llm_kv *kv);

/* A sequence: its length so far and its blocks. Not thread-safe against llm_forward on it. */
struct llm_seq;
struct llm_seq *llm_seq_new(struct llm_kv *kv);
/* Give back (zeroing) every block. NULL is a no-op. */
void llm_seq_free(struct llm_seq *s);
uint32_t llm_seq_len(const struct llm_seq *s);
/* Make sure blocks exist for n more positions; CIEL_EUNAVAIL if the pool is short. */
int llm_seq_reserve(struct llm_seq *s, uint32_t n, struct ciel_err *err);

/* Scratch for one forward caller: activations for up to max_batch tokens. */
struct llm_ctx;
int llm_ctx_new(struct llm_ctx **out, const struct llm_model *m, uint32_t max_batch,
		struct kern_pool *pool, struct ciel_err *err);
void llm_ctx_free(struct llm_ctx *c);

struct llm_item {
	struct llm_seq *seq;
	int32_t tok;
	int logits; /* want this token's next-token logits */
};

/*
 * Run items[0..n) through the model. Each token is appended to its sequence
 * at position llm_seq_len(seq) as it is reached in item order (a prefill
 * chunk is consecutive items of one sequence; attention is causal within
 * it). For each item with logits set, n_vocab floats are written to logits,
 * in item order. Fails (nothing appended) with CIEL_EINVAL for a token out
 * of range or n > max_batch, CIEL_EUNAVAIL when a sequence's blocks cannot be
 * reserved or a sequence would pass ctx_train.
 */
int llm_forward(struct llm_ctx *c, const struct llm_item *items, uint32_t n, float *logits,
		struct ciel_err *err);

#endif
