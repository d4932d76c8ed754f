/*
 * sample — see sample.h.
 *
 * Candidates are ordered by (logit descending, id ascending) everywhere, so
 * ties break the same way in greedy, top-k and top-p, and a seed gives the
 * same tokens whatever the machine.
 */
#include "llm/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/rng.h"

struct llm_sampler {
	struct llm_sampling cfg;
	uint32_t n_vocab;
	struct rng rng;
	int32_t *idx; /* candidate ids */
	float *p;     /* their probabilities */
};

int llm_sampler_new(struct llm_sampler **out, const struct llm_sampling *cfg, uint32_t n_vocab,
		    struct ciel_err *err)
{
	struct llm_sampler *s;

	*out = NULL;
	if (!(cfg->temperature >= 0 && cfg->temperature <= 2))
		return ciel_err_field(err, CIEL_EINVAL, "temperature",
				      "temperature %g out of range 0..2", cfg->temperature);
	if (cfg->top_k < 0)
		return ciel_err_field(err, CIEL_EINVAL, "top_k", "top_k %d is negative",
				      cfg->top_k);
	if (!(cfg->top_p > 0 && cfg->top_p <= 1))
		return ciel_err_field(err, CIEL_EINVAL, "top_p", "top_p %g out of range (0, 1]",
				      cfg->top_p);
	if (!n_vocab || n_vocab > INT32_MAX)
		return ciel_err_set(err, CIEL_EINVAL, "vocabulary of %u", n_vocab);
	s = calloc(1, sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "sampler");
	s->cfg = *cfg;
	s->n_vocab = n_vocab;
	s->idx = malloc(n_vocab * sizeof(*s->idx));
	s->p = malloc(n_vocab * sizeof(*s->p));
	if (!s->idx || !s->p) {
		llm_sampler_free(s);
		return ciel_err_set(err, CIEL_ENOMEM, "sampler for %u tokens", n_vocab);
	}
	rng_seed(&s->rng, cfg->seed);
	*out = s;
	return 0;
}

void llm_sampler_free(struct llm_sampler *s)
{
	if (!s)
		return;
	free(s->idx);
	free(s->p);
	free(s);
}

/* a before b: higher logit, then lower id. */
static int before(const float *lg, int32_t a, int32_t b)
{
	return lg[a] > lg[b] || (lg[a] == lg[b] && a < b);
}

static int cmp_cand(const void *pa, const void *pb, void *lg)
{
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;

	return before(lg, a, b) ? -1 : before(lg, b, a) ? 1 : 0;
}

static void swap(int32_t *v, uint32_t i, uint32_t j)
{
	int32_t t = v[i];

	v[i] = v[j];
	v[j] = t;
}

/* Put the k best of v[0..n) first (in no order): quickselect with a median-of-three pivot. */
static void select_top(const float *lg, int32_t *v, uint32_t n, uint32_t k)
{
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2, store = lo;

		if (before(lg, v[mid], v[lo]))
			swap(v, mid, lo);
		if (before(lg, v[hi], v[lo]))
			swap(v, hi, lo);
		if (before(lg, v[hi], v[mid]))
			swap(v, hi, mid);
		swap(v, mid, hi); /* the median is the pivot, at hi */
		for (uint32_t i = lo; i < hi; i++)
			if (before(lg, v[i], v[hi]))
				swap(v, i, store++);
		swap(v, store, hi);
		if (store == k - 1 || store == k)
			return;
		if (store > k)
			hi = store - 1;
		else
			lo = store + 1;
	}
}

static int32_t argmax(const float *lg, uint32_t n)
{
	int32_t best = 0;

	for (uint32_t i = 1; i < n; i++)
		if (lg[i] > lg[best])
			best = (int32_t)i;
	return best;
}

int32_t llm_sample(struct llm_sampler *s, float *logits)
{
	uint32_t n = s->n_vocab, k = n;
	float t = s->cfg.temperature, mx;
	double sum = 0, u, acc = 0;
	int sorted = 0;

	/* a NaN would break every ordering below; it can only mean "never" */
	for (uint32_t i = 0; i < n; i++)
		if (isnan(logits[i]))
			logits[i] = -INFINITY;
	if (t == 0)
		return argmax(logits, n);
	for (uint32_t i = 0; i < n; i++)
		s->idx[i] = (int32_t)i;
	if (s->cfg.top_k > 0 && (uint32_t)s->cfg.top_k < n) {
		k = (uint32_t)s->cfg.top_k;
		select_top(logits, s->idx, n, k);
	}
	if (s->cfg.top_p < 1 || k < n) {
		qsort_r(s->idx, k, sizeof(*s->idx), cmp_cand, logits);
		sorted = 1;
	}
	mx = sorted ? logits[s->idx[0]] : logits[argmax(logits, n)];
	if (mx == -INFINITY)
		return s->idx[0];
	for (uint32_t i = 0; i < k; i++) {
		s->p[i] = expf((logits[s->idx[i]] - mx) / t);
		sum += s->p[i];
	}
	if (s->cfg.top_p < 1) {
		/* the smallest prefix of the sorted candidates holding top_p of the mass */
		double keep = s->cfg.top_p * sum, c = 0;
		uint32_t j;

		for (j = 0; j < k; j++) {
			c += s->p[j];
			if (c >= keep) {
				j++;
				break;
			}
		}
		k = j;
		sum = c;
	}
	u = rng_double(&s->rng) * sum;
	for (uint32_t i = 0; i < k; i++) {
		acc += s->p[i];
		if (u < acc)
			return s->idx[i];
	}
	/* rounding left u at the very top: the last candidate with any mass */
	for (uint32_t i = k; i-- > 0;)
		if (s->p[i] > 0)
			return s->idx[i];
	return s->idx[0];
}
