/*
 * rng — seeded, reproducible random numbers: splitmix64 spreads a seed,
 * xoshiro256** draws (both Vigna's, public domain). The same seed gives the
 * same numbers on every machine. Not for secrets: those come from
 * /dev/urandom.
 */
#ifndef CIEL_RNG_H
#define CIEL_RNG_H

#include <stdint.h>

struct rng {
	uint64_t s[4]; /* xoshiro256** state */
};

/* The next value of the splitmix64 sequence whose state is *x. */
uint64_t rng_splitmix64(uint64_t *x);
/* State from the first four splitmix64 values after x. */
void rng_seed(struct rng *r, uint64_t x);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, 1), 53 bits. */
double rng_double(struct rng *r);

#endif
