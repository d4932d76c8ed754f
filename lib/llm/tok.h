/*
 * tok — tokenizers built from a model's own vocabulary.
 *
 * Two kinds, as GGUF's tokenizer.ggml.model names them:
 * - "llama": SentencePiece-style BPE over scores (merge the adjacent pair
 *   whose merged piece has the highest score), spaces as U+2581, a leading
 *   space added (add_space_prefix, default true), bytes with no piece
 *   encoded as <0xNN> tokens (byte fallback);
 * - "gpt2": byte-level BPE with ranked merges, bytes mapped to printable
 *   code points as GPT-2 does, text first split by the pre-tokenizer regex
 *   that tokenizer.ggml.pre names ("llama-bpe"/"llama3" for Llama-3,
 *   "qwen2" for Qwen2, "default"/"gpt2" for GPT-2's); an unknown pre name is
 *   an error naming it.
 * Special (control / user-defined) tokens such as <|eot_id|> are matched as
 * whole strings first when TOK_SPECIAL is given, never produced by merges.
 *
 * Also loads a Hugging Face tokenizer.json (model.type "BPE", with either a
 * ByteLevel pre-tokenizer or the Metaspace/SentencePiece layout) so the same
 * code serves safetensors checkpoints.
 *
 * Everything here is thread-safe once built (encode/decode do not mutate).
 */
#ifndef CIEL_TOK_H
#define CIEL_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "llm/gguf.h"
#include "util/err.h"

#define TOK_MAX_INPUT (8u << 20) /* bytes of text encode accepts */

enum tok_flags {
	TOK_BOS = 1 << 0,     /* prepend BOS if the vocabulary says so (add_bos_token) */
	TOK_SPECIAL = 1 << 1, /* recognise special tokens' text in the input */
};

enum tok_kind { TOK_SPM = 1, TOK_BPE = 2 };

struct tok;

/* From GGUF metadata (tokenizer.ggml.*). */
int tok_from_gguf(struct tok **out, const struct gguf *g, struct ciel_err *err);
/* From a Hugging Face tokenizer.json (+ optional tokenizer_config.json for bos/eos; may be NULL).
 */
int tok_from_hf(struct tok **out, const char *tokenizer_json, const char *config_json,
		struct ciel_err *err);
void tok_free(struct tok *t);

enum tok_kind tok_kind(const struct tok *t);
int32_t tok_n_vocab(const struct tok *t);
int32_t tok_bos(const struct tok *t); /* -1 if none */
int32_t tok_eos(const struct tok *t); /* -1 if none */
/* End of generation: eos, eot (<|eot_id|>, <|im_end|>) and the like, and a
 * sampled BOS (the model began a new document). */
int tok_is_eog(const struct tok *t, int32_t id);
/* Token id of an exact piece (special or normal), -1 if none. */
int32_t tok_lookup(const struct tok *t, const char *piece);

/*
 * Encode len bytes of text (need not be valid UTF-8: invalid bytes go through
 * byte fallback / byte-level mapping). *ids is malloc'd, *n set. Fails with
 * CIEL_EINVAL over TOK_MAX_INPUT.
 */
int tok_encode(const struct tok *t, const char *text, size_t len, int flags, int32_t **ids,
	       size_t *n, struct ciel_err *err);
/*
 * The bytes token id stands for, as it would appear in the decoded text (the
 * SPM leading space of the first piece is kept: the caller strips one leading
 * space after BOS if it wants llama.cpp's behaviour). Special tokens decode
 * to their text only with TOK_SPECIAL, else to "". Writes at most cap bytes,
 * returns the full length (like snprintf, no NUL), -1 for an id out of range.
 */
int tok_decode(const struct tok *t, int32_t id, int flags, char *buf, size_t cap);

/*
 * Additions for tools, tests and the model loader.
 */
/* tok_from_hf on buffers (config may be NULL): what fuzzing and tests use. */
int tok_from_hf_buf(struct tok **out, const char *json, size_t len, const char *config,
		    size_t config_len, struct ciel_err *err);
/* Write t as GGUF tokenizer.ggml.* metadata (+ tokenizer.chat_template); -1 on failure. */
int tok_to_gguf(const struct tok *t, struct gguf_writer *w);
/* The raw piece of id (len bytes, NUL-terminated), NULL if out of range. */
const char *tok_piece(const struct tok *t, int32_t id, size_t *len);
/* Would TOK_BOS add a BOS token? */
int tok_add_bos(const struct tok *t);
/* tokenizer.chat_template (GGUF) or chat_template (tokenizer_config.json), or NULL. */
const char *tok_chat_template(const struct tok *t);
/* The BPE pre-tokenizer's GGUF name ("llama-bpe", "qwen2", "gpt2"), NULL for SPM. */
const char *tok_pre_name(const struct tok *t);

#endif
