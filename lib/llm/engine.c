/*
 * engine — continuous batching over one model; see engine.h.
 *
 * Ownership: a request sits either in the waiting queue (FIFO, under e->mu)
 * or in the running table. Only the engine thread admits, runs and finishes
 * requests; it changes the running table under e->mu so that cancel() and
 * get_stats() from other threads see a consistent picture. Callbacks are
 * called without e->mu held, so they may call cancel(), submit() and
 * get_stats() themselves.
 *
 * Memory per request is fixed at submit (prompt copy, stop strings, sampler,
 * the pending-text buffer) and once more at admission (room for a whole
 * context of token ids); while it runs only its KV blocks grow.
 *
 * KV blocks are admitted optimistically (the prompt and one block more), so
 * with a pool smaller than max_seqs full contexts a growing sequence can find
 * it empty. Then the newest running request is preempted: its blocks go back
 * and it waits at the head of the queue to be recomputed from its token
 * history (prompt + tokens fed so far). Its sampler and text state are kept,
 * so what the client receives does not change.
 */
#include "llm/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"

#define DEF_MAX_SEQS 8
#define DEF_MAX_BATCH 512
#define DEF_PREFILL_CHUNK 256
#define DEF_MAX_QUEUE 256
/* Bytes of one token's text we expect at most; a longer piece grows the pending buffer once. */
#define PIECE_CAP 64

struct req {
	struct req *next; /* waiting queue */
	uint64_t id;
	int cancel; /* under e->mu */

	int32_t *toks;	   /* the prompt, then each generated token once fed */
	uint32_t cap_toks; /* n_prompt while waiting first, the context once admitted */
	uint32_t n_prompt;
	uint32_t n_hist; /* tokens of toks to be in the KV cache before decoding */
	uint32_t n_fed;	 /* tokens of toks in the KV cache */
	uint32_t n_take; /* tokens of toks in this step's batch */
	uint32_t n_gen;	 /* tokens sampled */
	int32_t next_tok;
	int logit_idx;	 /* row of this step's logits, -1 if none */
	uint64_t served; /* tick of its last prefill chunk, 0 = none yet */
	int32_t max_tokens;
	int after_bos; /* SPM: the prompt ends with BOS, strip the first piece's space */

	struct llm_sampler *sampler;
	struct llm_seq *seq;

	char *stop[LLM_MAX_STOP];
	size_t stop_len[LLM_MAX_STOP];
	size_t n_stop;

	/* decoded bytes not handed out yet: a partial UTF-8 tail or a possible stop prefix */
	char *pend;
	size_t n_pend, cap_pend;

	int (*on_text)(void *arg, const char *text, size_t len);
	void (*on_done)(void *arg, enum llm_finish why, uint32_t prompt_tokens,
			uint32_t completion_tokens, const struct ciel_err *err);
	void (*on_token)(void *arg, int32_t tok, uint64_t step);
	void *arg;
};

struct llm_engine {
	struct llm_model *model;
	const struct tok *tok;
	uint32_t n_vocab;
	struct kern_pool *pool;
	struct llm_ctx *ctx;
	struct llm_kv *kv;
	uint32_t n_ctx, max_seqs, max_batch, chunk, max_queue;

	/* engine thread only */
	struct llm_item *items;
	struct req **batch; /* the request of each item */
	struct req **pre;   /* prefilling requests of this step */
	float *logits;	    /* max_seqs rows of n_vocab */
	uint64_t tick;	    /* steps run, for the prefill rotation */

	pthread_t thread;
	int thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	int stop;
	struct req *wait_head, *wait_tail;
	uint32_t n_wait;
	struct req **run; /* max_seqs slots, n_run used, in admission order */
	uint32_t n_run;
	uint64_t next_id;
	struct llm_engine_stats st;
};

const char *llm_finish_name(enum llm_finish f)
{
	switch (f) {
	case LLM_FINISH_STOP:
		return "stop";
	case LLM_FINISH_LENGTH:
		return "length";
	case LLM_FINISH_CANCEL:
		return "cancelled";
	case LLM_FINISH_ERROR:
		return "error";
	}
	return "error";
}

const struct llm_model *llm_engine_model(const struct llm_engine *e)
{
	return e->model;
}

uint32_t llm_engine_ctx(const struct llm_engine *e)
{
	return e->n_ctx;
}

static uint32_t blocks_for(uint64_t positions)
{
	return (uint32_t)((positions + LLM_KV_BLOCK - 1) / LLM_KV_BLOCK);
}

/* Blocks a new request needs before it may start: its prompt and room to grow. */
static uint32_t admit_blocks(uint32_t n_prompt)
{
	return blocks_for(n_prompt) + 1;
}

/* Blocks r needs to (re)start: a preempted one only room for its pending token. */
static uint32_t need_blocks(const struct req *r)
{
	return r->n_gen ? blocks_for(r->n_hist + 1) : admit_blocks(r->n_hist);
}

static void req_free(struct req *r)
{
	size_t i;

	if (!r)
		return;
	llm_seq_free(r->seq);
	llm_sampler_free(r->sampler);
	for (i = 0; i < r->n_stop; i++)
		free(r->stop[i]);
	free(r->pend);
	free(r->toks);
	free(r);
}

/* ---- UTF-8 ---- */

/* Bytes at the end of s[0..n) that start a character not finished yet. */
static size_t utf8_tail(const char *s, size_t n)
{
	size_t k;

	for (k = 1; k <= 3 && k <= n; k++) {
		const unsigned char *p = (const unsigned char *)s + n - k;

		if ((*p & 0xC0) == 0x80)
			continue; /* continuation byte: the start is further back */
		return utf8_seq(p, k) == 0 ? k : 0;
	}
	return 0;
}

/* ---- text ---- */

/* Hand s[0..n) to the client, invalid bytes as U+FFFD. Non-zero if the client wants to stop. */
static int emit(struct req *r, const char *s, size_t n)
{
	static const char repl[] = "\xEF\xBF\xBD";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, start = 0;

	if (!r->on_text)
		return 0;
	while (i < n) {
		int l = utf8_seq(u + i, n - i);

		if (l > 0) {
			i += (size_t)l;
			continue;
		}
		if (i > start && r->on_text(r->arg, s + start, i - start))
			return 1;
		if (r->on_text(r->arg, repl, 3))
			return 1;
		start = ++i;
	}
	if (n > start && r->on_text(r->arg, s + start, n - start))
		return 1;
	return 0;
}

/* Longest suffix of the pending text that is a proper prefix of a stop string. */
static size_t stop_hold(const struct req *r)
{
	size_t best = 0, i;

	for (i = 0; i < r->n_stop; i++) {
		size_t k = r->stop_len[i] - 1;

		if (k > r->n_pend)
			k = r->n_pend;
		for (; k > best; k--)
			if (!memcmp(r->pend + r->n_pend - k, r->stop[i], k)) {
				best = k;
				break;
			}
	}
	return best;
}

/* Earliest stop string in the pending text; its offset, or -1. */
static long stop_find(const struct req *r)
{
	long best = -1;
	size_t i;

	for (i = 0; i < r->n_stop; i++) {
		const char *p = memmem(r->pend, r->n_pend, r->stop[i], r->stop_len[i]);

		if (p && (best < 0 || p - r->pend < best))
			best = p - r->pend;
	}
	return best;
}

enum text_res { TEXT_MORE, TEXT_STOP, TEXT_CANCEL, TEXT_NOMEM };

/* Add one token's text and hand out what is safe to. */
static enum text_res text_add(struct llm_engine *e, struct req *r, int32_t tok)
{
	char piece[PIECE_CAP];
	const char *src = piece;
	int n = tok_decode(e->tok, tok, 0, piece, sizeof(piece));
	size_t len, out;
	long at;

	if (n <= 0)
		return TEXT_MORE;
	len = (size_t)n;
	if (r->n_pend + len > r->cap_pend) {
		size_t cap = r->n_pend + len;
		char *p = realloc(r->pend, cap);

		if (!p)
			return TEXT_NOMEM;
		r->pend = p;
		r->cap_pend = cap;
	}
	if (len > sizeof(piece)) {
		/* rare long piece: decode straight into the pending buffer */
		tok_decode(e->tok, tok, 0, r->pend + r->n_pend, len);
		src = NULL;
	}
	if (src)
		memcpy(r->pend + r->n_pend, src, len);
	if (r->after_bos && r->n_gen == 1 && r->pend[r->n_pend] == ' ') {
		memmove(r->pend + r->n_pend, r->pend + r->n_pend + 1, len - 1);
		len--;
	}
	r->n_pend += len;

	at = stop_find(r);
	if (at >= 0) {
		r->n_pend = 0;
		return emit(r, r->pend, (size_t)at) ? TEXT_CANCEL : TEXT_STOP;
	}
	out = stop_hold(r);
	if (utf8_tail(r->pend, r->n_pend) > out)
		out = utf8_tail(r->pend, r->n_pend);
	out = r->n_pend - out;
	if (!out)
		return TEXT_MORE;
	if (emit(r, r->pend, out))
		return TEXT_CANCEL;
	memmove(r->pend, r->pend + out, r->n_pend - out);
	r->n_pend -= out;
	return TEXT_MORE;
}

/* At the end, whatever was held back goes out (a partial character as U+FFFD). */
static int text_flush(struct req *r)
{
	size_t n = r->n_pend;

	r->n_pend = 0;
	return n ? emit(r, r->pend, n) : 0;
}

/* ---- finishing ---- */

static void stats_kv(struct llm_engine *e)
{
	e->st.kv_blocks_used = e->st.kv_blocks_total - llm_kv_blocks_free(e->kv);
}

/*
 * Take r out of the running table, give its blocks back, tell the client, free it.
 * Engine thread only (or close() once the thread has ended).
 */
static void finish(struct llm_engine *e, struct req *r, enum llm_finish why,
		   const struct ciel_err *err)
{
	uint32_t i;

	llm_seq_free(r->seq);
	r->seq = NULL;
	pthread_mutex_lock(&e->mu);
	for (i = 0; i < e->n_run; i++)
		if (e->run[i] == r) {
			memmove(&e->run[i], &e->run[i + 1], (e->n_run - i - 1) * sizeof(*e->run));
			e->n_run--;
			break;
		}
	e->st.running = e->n_run;
	stats_kv(e);
	pthread_mutex_unlock(&e->mu);
	if (r->on_done)
		r->on_done(r->arg, why, r->n_prompt, r->n_gen,
			   why == LLM_FINISH_ERROR ? err : NULL);
	req_free(r);
}

static void finish_error(struct llm_engine *e, struct req *r, const struct ciel_err *err)
{
	struct ciel_err fallback;

	if (!err || err->code == CIEL_OK) {
		ciel_err_set(&fallback, CIEL_EINTERNAL, "generation failed");
		err = &fallback;
	}
	finish(e, r, LLM_FINISH_ERROR, err);
}

/* ---- the step ---- */

/*
 * Under e->mu: move cancelled waiting requests to *cancelled, admit waiting
 * ones FIFO while a slot and their blocks are free, collect running ones
 * that were cancelled. Requests that can never fit go to *failed.
 */
static void admit(struct llm_engine *e, struct req **cancelled, struct req **failed)
{
	struct req **pp = &e->wait_head, *r;
	uint32_t i;

	while ((r = *pp)) {
		if (r->cancel) {
			*pp = r->next;
			r->next = *cancelled;
			*cancelled = r;
			e->n_wait--;
			continue;
		}
		pp = &r->next;
	}
	e->wait_tail = NULL;
	for (r = e->wait_head; r; r = r->next)
		e->wait_tail = r;

	while ((r = e->wait_head) && e->n_run < e->max_seqs) {
		uint32_t need = need_blocks(r);
		struct ciel_err err;

		if (need > e->st.kv_blocks_total) {
			/* a history longer than the pool: it cannot run again; do not block the
			 * queue */
			e->wait_head = r->next;
			r->next = *failed;
			*failed = r;
			e->n_wait--;
			continue;
		}
		if (need > llm_kv_blocks_free(e->kv))
			break; /* FIFO: wait for blocks to come back */
		if (r->cap_toks < e->n_ctx) {
			int32_t *t = realloc(r->toks, e->n_ctx * sizeof(*t));

			if (!t) {
				if (e->n_run)
					break;
				e->wait_head = r->next;
				r->next = *failed;
				*failed = r;
				e->n_wait--;
				continue;
			}
			r->toks = t;
			r->cap_toks = e->n_ctx;
		}
		r->seq = llm_seq_new(e->kv);
		if (!r->seq || llm_seq_reserve(r->seq, r->n_hist + 1, &err) < 0) {
			llm_seq_free(r->seq);
			r->seq = NULL;
			if (e->n_run)
				break; /* blocks come back as others finish */
			/* nothing runs that could free blocks: waiting would spin */
			e->wait_head = r->next;
			r->next = *failed;
			*failed = r;
			e->n_wait--;
			continue;
		}
		e->wait_head = r->next;
		r->next = NULL;
		e->n_wait--;
		e->run[e->n_run++] = r;
	}
	if (!e->wait_head)
		e->wait_tail = NULL;
	for (i = 0; i < e->n_run; i++)
		if (e->run[i]->cancel)
			e->run[i]->logit_idx = -2; /* marks "cancel before running" */
	e->st.waiting = e->n_wait;
	e->st.running = e->n_run;
	stats_kv(e);
}

/* One sampled token: tell the client, decide whether the request goes on. */
static void on_sampled(struct llm_engine *e, struct req *r, int32_t tok, uint64_t step)
{
	struct ciel_err err;
	enum text_res tr;

	r->n_gen++;
	if (r->on_token)
		r->on_token(r->arg, tok, step);
	if (tok_is_eog(e->tok, tok)) {
		if (text_flush(r))
			return finish(e, r, LLM_FINISH_CANCEL, NULL);
		return finish(e, r, LLM_FINISH_STOP, NULL);
	}
	tr = text_add(e, r, tok);
	if (tr == TEXT_STOP)
		return finish(e, r, LLM_FINISH_STOP, NULL);
	if (tr == TEXT_CANCEL)
		return finish(e, r, LLM_FINISH_CANCEL, NULL);
	if (tr == TEXT_NOMEM) {
		ciel_err_set(&err, CIEL_ENOMEM, "out of memory for generated text");
		return finish_error(e, r, &err);
	}
	/* the token is fed at position llm_seq_len: it must fit in the context */
	if ((r->max_tokens > 0 && r->n_gen >= (uint32_t)r->max_tokens) ||
	    llm_seq_len(r->seq) >= e->n_ctx) {
		if (text_flush(r))
			return finish(e, r, LLM_FINISH_CANCEL, NULL);
		return finish(e, r, LLM_FINISH_LENGTH, NULL);
	}
	r->next_tok = tok;
}

/*
 * Give r's blocks back and queue it first to be recomputed. Engine thread; r
 * is running and not in this step's batch yet.
 */
static void preempt(struct llm_engine *e, struct req *r)
{
	uint32_t i;

	llm_seq_free(r->seq);
	r->seq = NULL;
	r->n_fed = 0;
	pthread_mutex_lock(&e->mu);
	for (i = 0; i < e->n_run; i++)
		if (e->run[i] == r) {
			memmove(&e->run[i], &e->run[i + 1], (e->n_run - i - 1) * sizeof(*e->run));
			e->n_run--;
			break;
		}
	r->next = e->wait_head;
	e->wait_head = r;
	if (!e->wait_tail)
		e->wait_tail = r;
	e->n_wait++;
	e->st.running = e->n_run;
	e->st.waiting = e->n_wait;
	e->st.preemptions++;
	stats_kv(e);
	pthread_mutex_unlock(&e->mu);
}

/*
 * A block for r's next position. When the pool is empty, preempt the newest
 * running request until one comes free; 0 if r may decode, -1 if r itself
 * was preempted or finished.
 */
static int grow(struct llm_engine *e, struct req *r)
{
	struct ciel_err err;

	while (llm_seq_reserve(r->seq, 1, &err) < 0) {
		struct req *victim = e->run[e->n_run - 1];

		if (victim != r) {
			preempt(e, victim);
			continue;
		}
		if (e->n_run == 1) {
			/* alone and the pool is full: the pool is its context */
			if (text_flush(r))
				finish(e, r, LLM_FINISH_CANCEL, NULL);
			else
				finish(e, r, LLM_FINISH_LENGTH, NULL);
		} else {
			preempt(e, r);
		}
		return -1;
	}
	return 0;
}

static void step(struct llm_engine *e)
{
	struct req *cancelled = NULL, *failed = NULL, *r, *nx;
	struct ciel_err err;
	uint32_t n = 0, nl = 0, n_pre = 0, n_batch = 0, budget, i, k;
	uint64_t stepno, n_prompt_tok = 0;

	pthread_mutex_lock(&e->mu);
	admit(e, &cancelled, &failed);
	pthread_mutex_unlock(&e->mu);

	for (r = cancelled; r; r = nx) {
		nx = r->next;
		finish(e, r, LLM_FINISH_CANCEL, NULL);
	}
	for (r = failed; r; r = nx) {
		nx = r->next;
		if (r->n_gen) {
			/* preempted with more history than the pool holds: its context is full */
			if (text_flush(r))
				finish(e, r, LLM_FINISH_CANCEL, NULL);
			else
				finish(e, r, LLM_FINISH_LENGTH, NULL);
			continue;
		}
		if (need_blocks(r) <= e->st.kv_blocks_total)
			ciel_err_set(&err, CIEL_ENOMEM, "engine: out of memory");
		else
			ciel_err_field(&err, CIEL_EINVAL, "prompt",
				       "prompt of %u tokens needs %u KV blocks; the pool has %u",
				       r->n_prompt, need_blocks(r), e->st.kv_blocks_total);
		finish_error(e, r, &err);
	}

	/* a snapshot of the running table: finish() edits it while we walk */
	for (i = 0; i < e->n_run; i++)
		e->batch[n_batch++] = e->run[i];
	for (i = 0; i < n_batch; i++) {
		r = e->batch[i];
		if (!r->seq)
			continue; /* preempted by an older one's growth this step */
		if (r->logit_idx == -2) {
			finish(e, r, LLM_FINISH_CANCEL, NULL);
			continue;
		}
		r->logit_idx = -1;
		r->n_take = 0;
		if (r->n_fed < r->n_hist) {
			e->pre[n_pre++] = r;
			continue;
		}
		if (grow(e, r) < 0)
			continue;
		e->items[n] = (struct llm_item){.seq = r->seq, .tok = r->next_tok, .logits = 1};
		e->batch[n] = r;
		r->logit_idx = (int)nl++;
		n++;
	}

	/*
	 * Prefill chunks in the room decode left. Round robin: the request served
	 * longest ago goes first (new ones before all, in arrival order), so
	 * several long prompts share the steps and a short one is not queued
	 * behind them.
	 */
	for (k = 1; k < n_pre; k++) {
		uint32_t j = k;

		r = e->pre[k];
		for (; j > 0 && e->pre[j - 1]->served > r->served; j--)
			e->pre[j] = e->pre[j - 1];
		e->pre[j] = r;
	}
	e->tick++;
	budget = e->max_batch - n;
	for (k = 0; k < n_pre && budget > 0; k++) {
		uint32_t take, j;

		r = e->pre[k];
		r->served = e->tick;
		take = r->n_hist - r->n_fed;
		if (take > e->chunk)
			take = e->chunk;
		if (take > budget)
			take = budget;
		for (j = 0; j < take; j++) {
			e->items[n] =
			    (struct llm_item){.seq = r->seq, .tok = r->toks[r->n_fed + j]};
			e->batch[n++] = r;
		}
		r->n_take = take;
		budget -= take;
		n_prompt_tok += take;
		if (r->n_fed + take == r->n_hist && !r->n_gen) {
			/*
			 * only the prompt's last token wants logits: the first generated
			 * token (a recomputed history has its next token already)
			 */
			e->items[n - 1].logits = 1;
			r->logit_idx = (int)nl++;
		}
	}
	if (!n)
		return;

	if (llm_forward(e->ctx, e->items, n, e->logits, &err) < 0) {
		/* nothing was appended; every request in the batch is failed */
		for (i = 0; i < n; i++) {
			r = e->batch[i];
			if (i > 0 && e->batch[i - 1] == r)
				continue;
			finish_error(e, r, &err);
		}
		return;
	}

	pthread_mutex_lock(&e->mu);
	stepno = ++e->st.steps;
	e->st.prompt_tokens += n_prompt_tok;
	e->st.completion_tokens += nl;
	stats_kv(e);
	pthread_mutex_unlock(&e->mu);

	for (i = 0; i < n; i++) {
		int32_t tok;

		r = e->batch[i];
		if (i > 0 && e->batch[i - 1] == r)
			continue; /* one visit per request: a prefill chunk is consecutive */
		if (r->n_take) {
			r->n_fed += r->n_take;
		} else {
			/* a decoded token joins the history, for recomputation after preemption */
			r->toks[r->n_hist++] = r->next_tok;
			r->n_fed++;
		}
		if (r->logit_idx < 0)
			continue;
		tok = llm_sample(r->sampler, e->logits + (size_t)r->logit_idx * e->n_vocab);
		on_sampled(e, r, tok, stepno);
	}
}

static void *engine_main(void *arg)
{
	struct llm_engine *e = arg;

	pthread_mutex_lock(&e->mu);
	while (!e->stop) {
		if (!e->n_run && !e->wait_head) {
			pthread_cond_wait(&e->cv, &e->mu);
			continue;
		}
		pthread_mutex_unlock(&e->mu);
		step(e);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* ---- public ---- */

static void engine_free(struct llm_engine *e)
{
	free(e->items);
	free(e->batch);
	free(e->pre);
	free(e->logits);
	free(e->run);
	llm_ctx_free(e->ctx);
	llm_kv_free(e->kv);
	kern_pool_free(e->pool);
	llm_model_close(e->model);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

int llm_engine_open(struct llm_engine **out, const struct llm_engine_cfg *cfg, struct ciel_err *err)
{
	struct llm_engine *e;
	const struct llm_hparams *hp;
	uint64_t n_blocks, bb;
	int rc;

	*out = NULL;
	if (!cfg->model_path)
		return ciel_err_field(err, CIEL_EINVAL, "model", "no model path");
	e = calloc(1, sizeof(*e));
	if (!e)
		return ciel_err_set(err, CIEL_ENOMEM, "engine: out of memory");
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->next_id = 1;
	if (llm_model_open(&e->model, cfg->model_path, err) < 0)
		goto fail;
	hp = llm_model_hparams(e->model);
	e->tok = llm_model_tok(e->model);
	e->n_vocab = hp->n_vocab;

	e->n_ctx = cfg->ctx ? cfg->ctx : hp->ctx_train;
	if (e->n_ctx > hp->ctx_train) {
		ciel_err_field(err, CIEL_EINVAL, "ctx",
			       "context %u is over the %u positions this model was trained for",
			       e->n_ctx, hp->ctx_train);
		goto fail;
	}
	e->max_seqs = cfg->max_seqs ? cfg->max_seqs : DEF_MAX_SEQS;
	e->max_batch = cfg->max_batch ? cfg->max_batch : DEF_MAX_BATCH;
	/* every running sequence decodes each step, so a step must hold them all */
	if (e->max_batch < e->max_seqs)
		e->max_batch = e->max_seqs;
	e->chunk = cfg->prefill_chunk ? cfg->prefill_chunk : DEF_PREFILL_CHUNK;
	e->max_queue = cfg->max_queue ? cfg->max_queue : DEF_MAX_QUEUE;

	bb = llm_kv_block_bytes(e->model);
	n_blocks = cfg->kv_bytes ? cfg->kv_bytes / (bb ? bb : 1)
				 : (uint64_t)e->max_seqs * blocks_for(e->n_ctx);
	if (n_blocks < 2 || n_blocks > UINT32_MAX) {
		ciel_err_field(
		    err, CIEL_EINVAL, "kv_bytes",
		    "KV pool of %llu bytes holds %llu blocks of %llu bytes; need 2 or more",
		    (unsigned long long)cfg->kv_bytes, (unsigned long long)n_blocks,
		    (unsigned long long)bb);
		goto fail;
	}
	e->pool = kern_pool_new(cfg->threads > 0 ? cfg->threads : 1, err);
	if (!e->pool)
		goto fail;
	if (llm_kv_new(&e->kv, e->model, (uint32_t)n_blocks, err) < 0)
		goto fail;
	if (llm_ctx_new(&e->ctx, e->model, e->max_batch, e->pool, err) < 0)
		goto fail;
	e->items = calloc(e->max_batch, sizeof(*e->items));
	e->batch = calloc(e->max_batch, sizeof(*e->batch));
	e->pre = calloc(e->max_seqs, sizeof(*e->pre));
	e->run = calloc(e->max_seqs, sizeof(*e->run));
	e->logits = calloc((size_t)e->max_seqs * e->n_vocab, sizeof(float));
	if (!e->items || !e->batch || !e->pre || !e->run || !e->logits) {
		ciel_err_set(err, CIEL_ENOMEM, "engine: out of memory");
		goto fail;
	}
	e->st.kv_blocks_total = llm_kv_blocks_total(e->kv);
	rc = pthread_create(&e->thread, NULL, engine_main, e);
	if (rc) {
		ciel_err_sys(err, CIEL_EINTERNAL, rc, "engine: start thread");
		goto fail;
	}
	e->thread_started = 1;
	*out = e;
	return 0;
fail:
	engine_free(e);
	return -1;
}

void llm_engine_close(struct llm_engine *e)
{
	struct req *r;

	if (!e)
		return;
	if (e->thread_started) {
		pthread_mutex_lock(&e->mu);
		e->stop = 1;
		pthread_cond_signal(&e->cv);
		pthread_mutex_unlock(&e->mu);
		pthread_join(e->thread, NULL);
	}
	/* the thread has ended: this thread now owns every request */
	while (e->n_run)
		finish(e, e->run[e->n_run - 1], LLM_FINISH_CANCEL, NULL);
	while ((r = e->wait_head)) {
		e->wait_head = r->next;
		finish(e, r, LLM_FINISH_CANCEL, NULL);
	}
	engine_free(e);
}

/* Copy and check what submit is given; the request is not queued yet. */
static int req_new(struct llm_engine *e, const struct llm_gen *g, struct req **out,
		   struct ciel_err *err)
{
	struct req *r;
	size_t i, n_stop = g->n_stop, max_stop = 0;

	*out = NULL;
	if (!g->n_prompt || !g->prompt)
		return ciel_err_field(err, CIEL_EINVAL, "prompt", "prompt is empty");
	if (g->n_prompt >= e->n_ctx)
		return ciel_err_field(err, CIEL_EINVAL, "prompt",
				      "prompt is %zu tokens; this model's context is %u",
				      g->n_prompt, e->n_ctx);
	if (admit_blocks((uint32_t)g->n_prompt) > e->st.kv_blocks_total)
		return ciel_err_field(err, CIEL_EINVAL, "prompt",
				      "prompt of %zu tokens needs %u KV blocks; the pool has %u",
				      g->n_prompt, admit_blocks((uint32_t)g->n_prompt),
				      e->st.kv_blocks_total);
	for (i = 0; i < g->n_prompt; i++)
		if (g->prompt[i] < 0 || (uint32_t)g->prompt[i] >= e->n_vocab)
			return ciel_err_field(err, CIEL_EINVAL, "prompt",
					      "token %d at %zu is outside the vocabulary of %u",
					      g->prompt[i], i, e->n_vocab);
	if (g->max_tokens == 0 || g->max_tokens < -1)
		return ciel_err_field(err, CIEL_EINVAL, "max_tokens",
				      "max_tokens must be 1 or more (or -1 for the context)");
	if (!n_stop)
		while (n_stop < LLM_MAX_STOP && g->stop[n_stop])
			n_stop++;
	if (n_stop > LLM_MAX_STOP)
		return ciel_err_field(err, CIEL_EINVAL, "stop", "at most %d stop sequences",
				      LLM_MAX_STOP);
	for (i = 0; i < n_stop; i++) {
		size_t l = g->stop[i] ? strlen(g->stop[i]) : 0;

		if (l > LLM_STOP_MAX_LEN)
			return ciel_err_field(err, CIEL_EINVAL, "stop",
					      "stop sequence of %zu bytes; at most %d", l,
					      LLM_STOP_MAX_LEN);
		if (l > max_stop)
			max_stop = l;
	}

	r = calloc(1, sizeof(*r));
	if (!r)
		return ciel_err_set(err, CIEL_ENOMEM, "engine: out of memory");
	r->toks = malloc(g->n_prompt * sizeof(*r->toks));
	r->cap_pend = max_stop + PIECE_CAP + 4;
	r->pend = malloc(r->cap_pend);
	if (!r->toks || !r->pend)
		goto nomem;
	memcpy(r->toks, g->prompt, g->n_prompt * sizeof(*r->toks));
	r->n_prompt = r->n_hist = r->cap_toks = (uint32_t)g->n_prompt;
	for (i = 0; i < n_stop; i++) {
		size_t l = g->stop[i] ? strlen(g->stop[i]) : 0;

		if (!l)
			continue; /* an empty stop string would match everywhere: ignore it */
		r->stop[r->n_stop] = strdup(g->stop[i]);
		if (!r->stop[r->n_stop])
			goto nomem;
		r->stop_len[r->n_stop++] = l;
	}
	if (llm_sampler_new(&r->sampler, &g->sampling, e->n_vocab, err) < 0) {
		if (err && !err->field[0])
			snprintf(err->field, sizeof(err->field), "sampling");
		req_free(r);
		return -1;
	}
	r->max_tokens = g->max_tokens;
	/* llama.cpp drops the SPM leading space only of a piece right after BOS */
	r->after_bos = tok_kind(e->tok) == TOK_SPM && tok_bos(e->tok) >= 0 &&
		       r->toks[r->n_prompt - 1] == tok_bos(e->tok);
	r->on_text = g->on_text;
	r->on_done = g->on_done;
	r->on_token = g->on_token;
	r->arg = g->arg;
	*out = r;
	return 0;
nomem:
	req_free(r);
	return ciel_err_set(err, CIEL_ENOMEM, "engine: out of memory");
}

int llm_engine_submit(struct llm_engine *e, const struct llm_gen *g, uint64_t *id,
		      struct ciel_err *err)
{
	struct req *r;

	if (req_new(e, g, &r, err) < 0)
		return -1;
	pthread_mutex_lock(&e->mu);
	if (e->n_wait >= e->max_queue || e->stop) {
		uint32_t q = e->n_wait;

		pthread_mutex_unlock(&e->mu);
		req_free(r);
		return ciel_err_set(err, CIEL_EUNAVAIL,
				    "engine busy: %u requests already wait; try again later", q);
	}
	r->id = e->next_id++;
	if (e->wait_tail)
		e->wait_tail->next = r;
	else
		e->wait_head = r;
	e->wait_tail = r;
	e->n_wait++;
	e->st.waiting = e->n_wait;
	if (id)
		*id = r->id;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

void llm_engine_cancel(struct llm_engine *e, uint64_t id)
{
	struct req *r;
	uint32_t i;

	pthread_mutex_lock(&e->mu);
	for (r = e->wait_head; r; r = r->next)
		if (r->id == id)
			r->cancel = 1;
	for (i = 0; i < e->n_run; i++)
		if (e->run[i]->id == id)
			e->run[i]->cancel = 1;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

void llm_engine_get_stats(struct llm_engine *e, struct llm_engine_stats *s)
{
	pthread_mutex_lock(&e->mu);
	*s = e->st;
	pthread_mutex_unlock(&e->mu);
}
