/*
 * engine — continuous batching over one model.
 *
 * One engine thread runs steps. Each step builds one batch: one decode
 * token for every running sequence, then prefill tokens of waiting prompts
 * up to the step's token budget (max_batch), at most prefill_chunk of one
 * prompt per step, so a long prompt is taken in chunks between decode steps
 * and never stalls the streams already running. One llm_forward serves the
 * whole batch: one pass over the weights for every active sequence.
 * Requests join at any step and leave as soon as they finish; their KV
 * blocks go back to the pool (zeroed) at once. A request is admitted when a
 * sequence slot and blocks for its prompt + 1 are free (FIFO); if the pool
 * runs dry as sequences grow (kv_bytes below max_seqs full contexts), the
 * newest running request is preempted and later recomputed, invisibly to its
 * client.
 *
 * Text: tokens are detokenised incrementally; bytes are handed out only once
 * they form complete UTF-8 and cannot be the start of a stop sequence, so the
 * client never sees a partial character or any part of a stop string.
 * Bytes that are not UTF-8 (a model can emit any byte) reach on_text as
 * U+FFFD, so every piece of text handed out is valid UTF-8.
 *
 * Callbacks run on the engine thread and must not block (copy and signal).
 */
#ifndef CIEL_ENGINE_H
#define CIEL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "llm/model.h"
#include "llm/sample.h"
#include "util/err.h"

#define LLM_MAX_STOP 4
#define LLM_STOP_MAX_LEN 256 /* bytes of one stop sequence */

struct llm_engine_cfg {
	const char *model_path;
	int threads;		/* kernel threads (>= 1) */
	uint32_t max_seqs;	/* sequences running at once; more wait in a queue */
	uint32_t ctx;		/* most positions per sequence (0 = the model's ctx_train) */
	uint32_t max_batch;	/* tokens per step (0 = 512) */
	uint32_t prefill_chunk; /* most prompt tokens of one request per step (0 = 256) */
	uint32_t max_queue;	/* waiting requests before submit says EUNAVAIL (0 = 256) */
	uint64_t kv_bytes;	/* KV pool size (0 = enough for max_seqs full contexts) */
};

enum llm_finish {
	LLM_FINISH_STOP = 0, /* end-of-generation token or a stop sequence */
	LLM_FINISH_LENGTH,   /* max_tokens or the context's end */
	LLM_FINISH_CANCEL,
	LLM_FINISH_ERROR,
};
const char *llm_finish_name(enum llm_finish f); /* "stop", "length", "cancelled", "error" */

struct llm_gen {
	const int32_t *prompt; /* copied at submit */
	size_t n_prompt;
	struct llm_sampling sampling;
	int32_t max_tokens;		/* -1 = until the context ends */
	const char *stop[LLM_MAX_STOP]; /* copied at submit; NULL-terminated or n_stop */
	size_t n_stop;
	/* text ready to send; non-zero return cancels the request */
	int (*on_text)(void *arg, const char *text, size_t len);
	/* exactly once, last; err set for LLM_FINISH_ERROR */
	void (*on_done)(void *arg, enum llm_finish why, uint32_t prompt_tokens,
			uint32_t completion_tokens, const struct ciel_err *err);
	void *arg;
	/*
	 * Optional (may be NULL): every sampled token, the end-of-generation one
	 * included, before its text, with the number of the engine step that
	 * produced it (steps count from 1). For tests and metering.
	 */
	void (*on_token)(void *arg, int32_t tok, uint64_t step);
};

/* A snapshot; prompt_tokens counts prompt tokens run through the model, completion_tokens sampled
 * ones. */
struct llm_engine_stats {
	uint32_t running, waiting;
	uint32_t kv_blocks_total, kv_blocks_used;
	uint64_t steps, prompt_tokens, completion_tokens;
	uint64_t preemptions; /* requests sent back to the queue when the KV pool ran out */
};

struct llm_engine;
int llm_engine_open(struct llm_engine **out, const struct llm_engine_cfg *cfg,
		    struct ciel_err *err);
/* Cancel everything (on_done with LLM_FINISH_CANCEL), stop the thread, free. */
void llm_engine_close(struct llm_engine *e);
const struct llm_model *llm_engine_model(const struct llm_engine *e);
uint32_t llm_engine_ctx(const struct llm_engine *e);

/*
 * Queue a request. CIEL_EINVAL (field "prompt") if the prompt is empty or
 * leaves no room in the context ("prompt is 5000 tokens; this model's context
 * is 4096"), CIEL_EUNAVAIL if the queue is full. *id names it for cancel.
 */
int llm_engine_submit(struct llm_engine *e, const struct llm_gen *g, uint64_t *id,
		      struct ciel_err *err);
/* Finish it with LLM_FINISH_CANCEL at the next step; unknown ids are ignored. */
void llm_engine_cancel(struct llm_engine *e, uint64_t id);
void llm_engine_get_stats(struct llm_engine *e, struct llm_engine_stats *s);

#endif
