/*
 * test_engine — continuous batching on the real stories260K model: the
 * engine's greedy tokens equal a plain llm_forward loop's, alone and with
 * six requests batched together (one prompt long enough to be chunked,
 * without holding back the others' first tokens), stop strings cut exactly,
 * max_tokens, cancel giving the KV blocks back, the submit errors, and
 * seeded sampling. The text helpers (UTF-8 hold-back, stop prefixes) are
 * checked directly: this file includes engine.c to reach them.
 */
#include "llm/engine.c"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define MAXTOK 600
#define MAXTEXT 8192

/* ../shared/models beside the source tree (CIEL_SRC or __FILE__); CIEL_LLM_MODEL overrides. */
static char model_path[4096];

static const char *model(void)
{
	const char *env = getenv("CIEL_LLM_MODEL");
	const char *f = __FILE__;
	const char *cut = strstr(f, "tests/unit/test_engine.c");

	if (env && *env)
		return env;
	env = getenv("CIEL_SRC");
	if (!model_path[0] && env && *env)
		snprintf(model_path, sizeof(model_path),
			 "%s/../shared/models/stories260K/stories260k-f32.v3.gguf", env);
	if (!model_path[0])
		snprintf(model_path, sizeof(model_path),
			 "%.*s../shared/models/stories260K/stories260k-f32.v3.gguf",
			 cut ? (int)(cut - f) : 0, f);
	return model_path;
}

/* ---- what a request saw ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

struct rec {
	int32_t toks[MAXTOK];
	size_t n_tok;
	uint64_t first_step;
	char text[MAXTEXT];
	size_t n_text;
	int done, n_done;
	enum llm_finish why;
	uint32_t pt, ct;
	struct ciel_err err;
	int cancel_after_text; /* on_text returns 1 after this many calls (0 = never) */
	int n_text_calls;
	int bad_text; /* an empty piece, or too much */
	int gate_at;  /* on_token blocks at this token until `gate` opens (0 = never) */
	int at_gate, gate;
};

static void rec_token(void *arg, int32_t tok, uint64_t step)
{
	struct rec *r = arg;

	pthread_mutex_lock(&mu);
	if (!r->n_tok)
		r->first_step = step;
	if (r->n_tok < MAXTOK)
		r->toks[r->n_tok] = tok;
	r->n_tok++;
	if (r->gate_at && (int)r->n_tok == r->gate_at) {
		r->at_gate = 1;
		pthread_cond_broadcast(&cv);
		while (!r->gate)
			pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
}

static int rec_text(void *arg, const char *text, size_t len)
{
	struct rec *r = arg;
	int stop;

	/* no cmocka asserts here: this runs on the engine thread */
	pthread_mutex_lock(&mu);
	if (!len || r->n_text + len >= MAXTEXT)
		r->bad_text = 1;
	else
		memcpy(r->text + r->n_text, text, len);
	r->n_text += len;
	if (r->n_text < MAXTEXT)
		r->text[r->n_text] = 0;
	r->n_text_calls++;
	stop = r->cancel_after_text && r->n_text_calls >= r->cancel_after_text;
	pthread_mutex_unlock(&mu);
	return stop;
}

static void rec_done(void *arg, enum llm_finish why, uint32_t pt, uint32_t ct,
		     const struct ciel_err *err)
{
	struct rec *r = arg;

	pthread_mutex_lock(&mu);
	r->why = why;
	r->pt = pt;
	r->ct = ct;
	if (err)
		r->err = *err;
	r->done = 1;
	r->n_done++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void wait_for(int *flag)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 120;
	pthread_mutex_lock(&mu);
	while (!*flag)
		if (pthread_cond_timedwait(&cv, &mu, &ts) == ETIMEDOUT)
			fail_msg("timed out waiting for the engine");
	pthread_mutex_unlock(&mu);
}

static struct llm_gen gen(const int32_t *p, size_t n, int32_t max_tokens, struct rec *r)
{
	struct llm_gen g;

	memset(&g, 0, sizeof(g));
	g.prompt = p;
	g.n_prompt = n;
	g.max_tokens = max_tokens;
	g.sampling.top_p = 1.0f; /* greedy: temperature 0 */
	g.on_text = rec_text;
	g.on_done = rec_done;
	g.on_token = rec_token;
	g.arg = r;
	return g;
}

static struct llm_engine *open_engine(uint32_t max_seqs, uint32_t ctx, uint32_t max_batch,
				      uint32_t chunk)
{
	struct llm_engine_cfg cfg = {
	    .model_path = model(),
	    .threads = 1,
	    .max_seqs = max_seqs,
	    .ctx = ctx,
	    .max_batch = max_batch,
	    .prefill_chunk = chunk,
	};
	struct llm_engine *e = NULL;
	struct ciel_err err = {0};

	if (llm_engine_open(&e, &cfg, &err) < 0)
		fail_msg("llm_engine_open %s: %s", model(), err.msg);
	return e;
}

static size_t encode(struct llm_engine *e, const char *text, int32_t *out, size_t cap)
{
	int32_t *ids = NULL;
	size_t n = 0;
	struct ciel_err err = {0};

	if (tok_encode(llm_model_tok(llm_engine_model(e)), text, strlen(text), TOK_BOS, &ids, &n,
		       &err) < 0)
		fail_msg("tok_encode: %s", err.msg);
	assert_true(n <= cap);
	memcpy(out, ids, n * sizeof(*ids));
	free(ids);
	return n;
}

static uint64_t submit(struct llm_engine *e, const struct llm_gen *g)
{
	struct ciel_err err = {0};
	uint64_t id = 0;

	if (llm_engine_submit(e, g, &id, &err) < 0)
		fail_msg("llm_engine_submit: %s (%s)", err.msg, err.field);
	return id;
}

/* ---- the reference: a plain greedy loop over llm_forward, one token per step ---- */

static int32_t argmax(const float *x, uint32_t n)
{
	uint32_t i, best = 0;

	for (i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return (int32_t)best;
}

/* Tokens a plain loop generates (EOG included, then stop), at most max. */
static size_t reference(const int32_t *prompt, size_t n_prompt, size_t max, int32_t *out)
{
	struct llm_model *m = NULL;
	struct llm_kv *kv = NULL;
	struct llm_ctx *c = NULL;
	struct llm_seq *s;
	struct kern_pool *pool;
	struct ciel_err err = {0};
	const struct llm_hparams *hp;
	float *logits;
	size_t n = 0, i;
	int32_t t;

	if (llm_model_open(&m, model(), &err) < 0)
		fail_msg("llm_model_open: %s", err.msg);
	hp = llm_model_hparams(m);
	pool = kern_pool_new(1, &err);
	assert_non_null(pool);
	if (llm_kv_new(&kv, m, blocks_for(hp->ctx_train), &err) < 0 ||
	    llm_ctx_new(&c, m, 1, pool, &err) < 0)
		fail_msg("reference: %s", err.msg);
	s = llm_seq_new(kv);
	assert_non_null(s);
	logits = malloc(hp->n_vocab * sizeof(float));
	assert_non_null(logits);
	for (i = 0; i < n_prompt; i++) {
		struct llm_item it = {.seq = s, .tok = prompt[i], .logits = i + 1 == n_prompt};

		if (llm_forward(c, &it, 1, logits, &err) < 0)
			fail_msg("llm_forward: %s", err.msg);
	}
	while (n < max) {
		struct llm_item it = {.seq = s};

		t = argmax(logits, hp->n_vocab);
		out[n++] = t;
		if (tok_is_eog(llm_model_tok(m), t) || n == max)
			break;
		it.tok = t;
		it.logits = 1;
		if (llm_forward(c, &it, 1, logits, &err) < 0)
			fail_msg("llm_forward: %s", err.msg);
	}
	free(logits);
	llm_seq_free(s);
	llm_ctx_free(c);
	llm_kv_free(kv);
	kern_pool_free(pool);
	llm_model_close(m);
	return n;
}

static void assert_same_tokens(const struct rec *r, const int32_t *ref, size_t n_ref)
{
	size_t i;

	assert_false(r->bad_text);
	assert_int_equal(r->n_tok, n_ref);
	for (i = 0; i < n_ref; i++)
		if (r->toks[i] != ref[i])
			fail_msg("token %zu: engine %d, reference %d", i, r->toks[i], ref[i]);
}

/* ---- tests ---- */

static void test_greedy_matches_reference(void **st)
{
	struct llm_engine *e = open_engine(4, 0, 0, 0);
	struct llm_engine_stats s;
	struct rec *r = calloc(1, sizeof(*r));
	int32_t p[64], ref[64];
	size_t np, nref;
	struct llm_gen g;

	(void)st;
	np = encode(e, "Once upon a time", p, 64);
	nref = reference(p, np, 40, ref);
	assert_true(nref > 10);
	g = gen(p, np, 40, r);
	submit(e, &g);
	wait_for(&r->done);
	assert_same_tokens(r, ref, nref);
	assert_int_equal(r->why, nref == 40 ? LLM_FINISH_LENGTH : LLM_FINISH_STOP);
	assert_int_equal(r->pt, np);
	assert_int_equal(r->ct, nref);
	assert_int_equal(r->n_done, 1);
	/* readable English about someone, not bytes */
	assert_true(r->n_text > 40);
	assert_non_null(strstr(r->text, " "));
	llm_engine_get_stats(e, &s);
	assert_int_equal(s.kv_blocks_used, 0);
	assert_int_equal(s.running, 0);
	assert_int_equal(s.prompt_tokens, np);
	assert_int_equal(s.completion_tokens, nref);
	llm_engine_close(e);
	free(r);
}

static const char *const prompts[6] = {
    /* long: several prefill chunks */
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "sunshine. One day, she saw a big tree in the park. She wanted to climb it, but her mom "
    "said it was too high. Lily was sad, but then she had an idea. She asked her friend Tom to "
    "help her. Together they",
    "One day, a cat",
    "Tom and Sue went to the park",
    "The sun was",
    /* long as well, so two chunked prompts share the steps */
    "There was a big dog named Max. Max liked to run and jump. He had a red ball that he "
    "loved very much. One day, Max lost his ball in the garden. He looked everywhere for it. "
    "He was very sad",
    "Lily had a",
};

static void test_batch_equals_alone(void **st)
{
	const uint32_t chunk = 8;
	struct llm_engine *e = open_engine(6, 0, 32, chunk);
	struct rec *r = calloc(6, sizeof(*r));
	int32_t p[6][512], ref[6][32];
	size_t np[6], nref[6];
	struct llm_engine_stats s;
	uint64_t at[6];
	int i;

	(void)st;
	for (i = 0; i < 6; i++) {
		np[i] = encode(e, prompts[i], p[i], 512);
		nref[i] = reference(p[i], np[i], 24, ref[i]);
	}
	assert_true(np[0] > 3 * chunk);
	assert_true(np[4] > 2 * chunk);
	/* the long ones first: were prefill not chunked, the others would wait behind them */
	for (i = 0; i < 6; i++) {
		struct llm_gen g = gen(p[i], np[i], 24, &r[i]);

		/* steps may run between submits: count from the one before each */
		llm_engine_get_stats(e, &s);
		at[i] = s.steps;
		submit(e, &g);
	}
	for (i = 0; i < 6; i++)
		wait_for(&r[i].done);
	for (i = 0; i < 6; i++) {
		assert_same_tokens(&r[i], ref[i], nref[i]);
		assert_int_equal(r[i].pt, np[i]);
	}
	/*
	 * 32 tokens a step, 8 of one prompt: the short prompts get their first
	 * token within a couple of steps of their own prefill (a whole-prompt
	 * prefill of the long ones would hold them back 6 steps), while the long
	 * one needs at least np/chunk steps.
	 */
	for (i = 1; i < 6; i++)
		if (i != 4)
			assert_in_range(r[i].first_step - at[i], 1,
					(np[i] + chunk - 1) / chunk + 2);
	assert_true(r[0].first_step - at[0] >= (np[0] + chunk - 1) / chunk);
	/* the two long prompts share: each gets at least a chunk every other step */
	assert_true(r[0].first_step - at[0] <= 2 * ((np[0] + chunk - 1) / chunk) + 3);
	assert_true(r[4].first_step - at[4] <= 2 * ((np[4] + chunk - 1) / chunk) + 3);
	llm_engine_get_stats(e, &s);
	assert_int_equal(s.kv_blocks_used, 0);
	assert_int_equal(s.running, 0);
	assert_int_equal(s.waiting, 0);
	llm_engine_close(e);
	free(r);
}

static void test_stop_strings(void **st)
{
	struct llm_engine *e = open_engine(4, 0, 0, 0);
	struct rec *full = calloc(1, sizeof(*full)), *r = calloc(1, sizeof(*r));
	int32_t p[64];
	size_t np, cut;
	char stop[16];
	struct llm_gen g;
	const char *hit;

	(void)st;
	np = encode(e, "Once upon a time", p, 64);
	g = gen(p, np, 60, full);
	submit(e, &g);
	wait_for(&full->done);
	assert_true(full->n_text > 60);

	/* a stop string from the middle of a word, most likely across tokens */
	memcpy(stop, full->text + 31, 6);
	stop[6] = 0;
	hit = strstr(full->text, stop);
	cut = (size_t)(hit - full->text);
	g = gen(p, np, 60, r);
	g.stop[0] = "zzqzz"; /* never appears: it must not hold anything back for good */
	g.stop[1] = stop;
	submit(e, &g);
	wait_for(&r->done);
	assert_int_equal(r->why, LLM_FINISH_STOP);
	assert_int_equal(r->n_text, cut);
	assert_memory_equal(r->text, full->text, cut);
	assert_null(strstr(r->text, stop));
	assert_true(r->ct < full->ct);

	/* a stop string that never comes: the whole text, nothing held back at the end */
	memset(r, 0, sizeof(*r));
	g = gen(p, np, 60, r);
	g.stop[0] = "zzqzz";
	g.stop[1] = "Once upon a time there";
	g.n_stop = 2;
	submit(e, &g);
	wait_for(&r->done);
	assert_int_equal(r->n_text, full->n_text);
	assert_memory_equal(r->text, full->text, full->n_text);
	assert_int_equal(r->why, full->why);
	llm_engine_close(e);
	free(full);
	free(r);
}

static void test_max_tokens(void **st)
{
	struct llm_engine *e = open_engine(2, 0, 0, 0);
	struct rec *r = calloc(1, sizeof(*r));
	int32_t p[64];
	size_t np;
	struct llm_gen g;

	(void)st;
	np = encode(e, "Once upon a time", p, 64);
	g = gen(p, np, 7, r);
	submit(e, &g);
	wait_for(&r->done);
	assert_int_equal(r->why, LLM_FINISH_LENGTH);
	assert_int_equal(r->ct, 7);
	assert_int_equal(r->n_tok, 7);
	llm_engine_close(e);

	/* the context's end is LENGTH too: ctx 32 leaves 32 - np positions, + 1 token sampled from
	 * the last */
	e = open_engine(2, 32, 0, 0);
	memset(r, 0, sizeof(*r));
	g = gen(p, np, -1, r);
	submit(e, &g);
	wait_for(&r->done);
	if (r->why == LLM_FINISH_LENGTH)
		assert_int_equal(r->ct, 32 - np + 1);
	else
		assert_true(r->ct <= 32 - np + 1); /* an end-of-story token came first */
	llm_engine_close(e);
	free(r);
}

static void test_cancel(void **st)
{
	struct llm_engine *e = open_engine(2, 0, 0, 0);
	struct rec *r = calloc(2, sizeof(*r));
	struct llm_engine_stats s;
	int32_t p[64];
	size_t np;
	struct llm_gen g;
	uint64_t id;

	(void)st;
	np = encode(e, "Once upon a time", p, 64);
	/* llm_engine_cancel while the request runs (held at its 3rd token) */
	r[0].gate_at = 3;
	g = gen(p, np, -1, &r[0]);
	id = submit(e, &g);
	wait_for(&r[0].at_gate);
	llm_engine_get_stats(e, &s);
	assert_int_equal(s.running, 1);
	assert_true(s.kv_blocks_used > 0);
	llm_engine_cancel(e, id);
	llm_engine_cancel(e, id + 1000); /* unknown: ignored */
	pthread_mutex_lock(&mu);
	r[0].gate = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	wait_for(&r[0].done);
	assert_int_equal(r[0].why, LLM_FINISH_CANCEL);
	assert_int_equal(r[0].ct, 3);
	assert_int_equal(r[0].n_done, 1);
	llm_engine_get_stats(e, &s);
	assert_int_equal(s.kv_blocks_used, 0);
	assert_int_equal(s.running, 0);

	/* on_text returning non-zero */
	r[1].cancel_after_text = 2;
	g = gen(p, np, -1, &r[1]);
	id = submit(e, &g);
	wait_for(&r[1].done);
	assert_int_equal(r[1].why, LLM_FINISH_CANCEL);
	assert_int_equal(r[1].n_text_calls, 2);
	assert_true(r[1].ct < 10);
	llm_engine_get_stats(e, &s);
	assert_int_equal(s.kv_blocks_used, 0);
	llm_engine_close(e);
	free(r);
}

static void test_submit_errors(void **st)
{
	struct llm_engine_cfg cfg = {
	    .model_path = model(), .threads = 1, .max_seqs = 1, .ctx = 64, .max_queue = 2};
	struct llm_engine *e = NULL;
	struct rec *r = calloc(4, sizeof(*r));
	struct ciel_err err = {0};
	int32_t p[64], one = 1;
	struct llm_gen g;
	uint64_t id[4];
	int i;

	(void)st;
	assert_int_equal(llm_engine_open(&e, &cfg, &err), 0);
	for (i = 0; i < 64; i++)
		p[i] = 10 + i % 200; /* ordinary pieces, no BOS/EOS */
	/* a prompt that fills the context leaves no room to generate */
	g = gen(p, 64, 10, &r[0]);
	assert_int_equal(llm_engine_submit(e, &g, &id[0], &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_string_equal(err.field, "prompt");
	assert_non_null(strstr(err.msg, "64 tokens"));
	assert_non_null(strstr(err.msg, "context is 64"));
	g = gen(p, 0, 10, &r[0]);
	assert_int_equal(llm_engine_submit(e, &g, &id[0], &err), -1);
	assert_string_equal(err.field, "prompt");
	p[3] = 1 << 20;
	g = gen(p, 10, 10, &r[0]);
	assert_int_equal(llm_engine_submit(e, &g, &id[0], &err), -1);
	assert_string_equal(err.field, "prompt");
	p[3] = 13;
	g = gen(p, 10, 0, &r[0]);
	assert_int_equal(llm_engine_submit(e, &g, &id[0], &err), -1);
	assert_string_equal(err.field, "max_tokens");

	/* queue full: hold the engine thread in the first request's callback */
	r[0].gate_at = 1;
	g = gen(&one, 1, -1, &r[0]);
	assert_int_equal(llm_engine_submit(e, &g, &id[0], &err), 0);
	wait_for(&r[0].at_gate);
	for (i = 1; i <= 2; i++) {
		g = gen(p, 5, 5, &r[i]);
		assert_int_equal(llm_engine_submit(e, &g, &id[i], &err), 0);
	}
	g = gen(p, 5, 5, &r[3]);
	assert_int_equal(llm_engine_submit(e, &g, &id[3], &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	/* a waiting request cancelled never runs */
	llm_engine_cancel(e, id[1]);
	llm_engine_cancel(e, id[0]);
	pthread_mutex_lock(&mu);
	r[0].gate = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (i = 0; i <= 2; i++)
		wait_for(&r[i].done);
	assert_int_equal(r[0].why, LLM_FINISH_CANCEL);
	assert_int_equal(r[1].why, LLM_FINISH_CANCEL);
	assert_int_equal(r[1].n_tok, 0);
	assert_int_equal(r[2].why, LLM_FINISH_LENGTH);
	assert_int_equal(r[2].ct, 5);
	llm_engine_close(e);

	/* a KV pool of 2 blocks: a 40-token prompt needs 3, it can never run */
	memset(&cfg, 0, sizeof(cfg));
	cfg.model_path = model();
	cfg.max_seqs = 2;
	assert_int_equal(llm_engine_open(&e, &cfg, &err), 0);
	cfg.kv_bytes = 2 * llm_kv_block_bytes(llm_engine_model(e));
	llm_engine_close(e);
	assert_int_equal(llm_engine_open(&e, &cfg, &err), 0);
	g = gen(p, 40, 5, &r[3]);
	assert_int_equal(llm_engine_submit(e, &g, &id[3], &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_non_null(strstr(err.msg, "KV blocks"));
	llm_engine_close(e);
	free(r);
}

static uint64_t block_bytes(void)
{
	struct llm_model *m = NULL;
	struct ciel_err err = {0};
	uint64_t b;

	if (llm_model_open(&m, model(), &err) < 0)
		fail_msg("llm_model_open: %s", err.msg);
	b = llm_kv_block_bytes(m);
	llm_model_close(m);
	return b;
}

/*
 * A pool of 6 blocks for 4 requests that each grow to 4: admitted with one
 * block each, they run out as they grow; the newest are preempted and
 * recomputed, and every request still gets exactly its tokens run alone.
 */
static void test_kv_pressure(void **st)
{
	static const char *const ps[4] = {"Once upon a time", "One day, a cat", "The sun was",
					  "Lily had a"};
	struct llm_engine_cfg cfg = {.model_path = model(), .threads = 1, .max_seqs = 4};
	struct llm_engine *e = NULL;
	struct rec *r = calloc(4, sizeof(*r));
	struct llm_engine_stats s;
	struct ciel_err err = {0};
	int32_t p[4][64], ref[4][128];
	size_t np[4], nref[4];
	int i;

	(void)st;
	cfg.kv_bytes = 6 * block_bytes();
	assert_int_equal(llm_engine_open(&e, &cfg, &err), 0);
	llm_engine_get_stats(e, &s);
	assert_int_equal(s.kv_blocks_total, 6);
	for (i = 0; i < 4; i++) {
		np[i] = encode(e, ps[i], p[i], 64);
		nref[i] = reference(p[i], np[i], 100, ref[i]);
	}
	for (i = 0; i < 4; i++) {
		struct llm_gen g = gen(p[i], np[i], 100, &r[i]);

		submit(e, &g);
	}
	for (i = 0; i < 4; i++) {
		wait_for(&r[i].done);
		assert_same_tokens(&r[i], ref[i], nref[i]);
		assert_int_equal(r[i].ct, nref[i]);
		assert_int_equal(r[i].pt, np[i]);
		assert_int_equal(r[i].n_done, 1);
	}
	llm_engine_get_stats(e, &s);
	assert_true(s.preemptions > 0);
	assert_int_equal(s.kv_blocks_used, 0);
	assert_int_equal(s.running + s.waiting, 0);
	llm_engine_close(e);

	/* alone in a pool of 2 blocks: it ends (LENGTH) when the pool is full */
	cfg.kv_bytes = 2 * block_bytes();
	assert_int_equal(llm_engine_open(&e, &cfg, &err), 0);
	memset(&r[0], 0, sizeof(r[0]));
	{
		struct llm_gen g = gen(p[0], np[0], -1, &r[0]);

		submit(e, &g);
	}
	wait_for(&r[0].done);
	if (r[0].why == LLM_FINISH_LENGTH)
		assert_int_equal(r[0].ct, 2 * LLM_KV_BLOCK - np[0] + 1);
	else
		assert_int_equal(r[0].why, LLM_FINISH_STOP);
	llm_engine_close(e);
	free(r);
}

static void test_seeded_sampling(void **st)
{
	struct llm_engine *e = open_engine(4, 0, 0, 0);
	struct rec *r = calloc(4, sizeof(*r));
	int32_t p[64];
	size_t np;
	int i;

	(void)st;
	np = encode(e, "Once upon a time", p, 64);
	/* 0 alone, then 1 and 2 (same seed) and 3 (another) together */
	for (i = 0; i < 4; i++) {
		struct llm_gen g = gen(p, np, 30, &r[i]);

		g.sampling.temperature = 0.8f;
		g.sampling.top_p = 1.0f;
		g.sampling.seed = i == 3 ? 43 : 42;
		submit(e, &g);
		if (i == 0)
			wait_for(&r[0].done);
	}
	for (i = 1; i < 4; i++)
		wait_for(&r[i].done);
	assert_true(r[0].n_tok > 5);
	assert_same_tokens(&r[1], r[0].toks, r[0].n_tok);
	assert_same_tokens(&r[2], r[0].toks, r[0].n_tok);
	assert_true(r[3].n_tok != r[0].n_tok ||
		    memcmp(r[3].toks, r[0].toks, r[0].n_tok * sizeof(int32_t)));
	llm_engine_close(e);
	free(r);
}

/* ---- the text helpers alone ---- */

static void test_utf8(void **st)
{
	(void)st;
	/* utf8_seq itself: tests/unit/test_utf8.c */
	assert_int_equal(utf8_tail("ab\xF0\x9F\x98", 5), 3);
	assert_int_equal(utf8_tail("ab\xF0\x9F\x98\x80", 6), 0);
	assert_int_equal(utf8_tail("ab\xC3", 3), 1);
	assert_int_equal(utf8_tail("ab", 2), 0);
	/* a cut start that is already ill-formed is not held back */
	assert_int_equal(utf8_tail("ab\xE0\x80", 4), 0);
	assert_int_equal(utf8_tail("\x80\x80\x80\x80", 4), 0); /* garbage is not held */
}

static void test_emit_and_hold(void **st)
{
	struct rec *rc = calloc(1, sizeof(*rc));
	struct req r;
	char buf[32], s0[] = "</s>", s1[] = "END";

	(void)st;
	memset(&r, 0, sizeof(r));
	r.on_text = rec_text;
	r.arg = rc;
	/* invalid bytes come out as U+FFFD, the rest untouched */
	assert_int_equal(emit(&r,
			      "a\xFF"
			      "b\xC3\xA9",
			      5),
			 0);
	assert_string_equal(rc->text, "a\xEF\xBF\xBD"
				      "b\xC3\xA9");

	r.stop[0] = s0;
	r.stop_len[0] = 4;
	r.stop[1] = s1;
	r.stop_len[1] = 3;
	r.n_stop = 2;
	r.pend = buf;
	memcpy(buf, "hello </", 8);
	r.n_pend = 8;
	assert_int_equal(stop_hold(&r), 2);
	assert_int_equal(stop_find(&r), -1);
	memcpy(buf, "hello EN", 8);
	assert_int_equal(stop_hold(&r), 2);
	memcpy(buf, "x</s>END", 8);
	assert_int_equal(stop_find(&r), 1);
	assert_int_equal(stop_hold(&r), 0); /* a whole stop string is found, not held */
	memcpy(buf, "hello E.", 8);
	assert_int_equal(stop_hold(&r), 0);
	free(rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_emit_and_hold),
	    cmocka_unit_test(test_greedy_matches_reference),
	    cmocka_unit_test(test_batch_equals_alone),
	    cmocka_unit_test(test_stop_strings),
	    cmocka_unit_test(test_max_tokens),
	    cmocka_unit_test(test_cancel),
	    cmocka_unit_test(test_submit_errors),
	    cmocka_unit_test(test_kv_pressure),
	    cmocka_unit_test(test_seeded_sampling),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
