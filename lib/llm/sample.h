/*
 * sample — pick the next token from logits.
 *
 * temperature 0 is greedy (argmax, lowest id on ties). Otherwise, in this
 * order: top-k (0 = off), softmax at temperature, top-p (nucleus, 1 = off),
 * then a draw from a seeded generator of our own (xoshiro256**), so the same
 * seed gives the same tokens on every machine and thread count.
 */
#ifndef CIEL_SAMPLE_H
#define CIEL_SAMPLE_H

#include <stdint.h>

#include "util/err.h"

struct llm_sampling {
	float temperature; /* 0 .. 2 */
	int top_k;	   /* 0 = all */
	float top_p;	   /* (0, 1] */
	uint64_t seed;
};

struct llm_sampler;
int llm_sampler_new(struct llm_sampler **out, const struct llm_sampling *cfg, uint32_t n_vocab,
		    struct ciel_err *err);
void llm_sampler_free(struct llm_sampler *s);
/* logits: n_vocab floats (may be overwritten). */
int32_t llm_sample(struct llm_sampler *s, float *logits);

#endif
