/*
 * test_sample — the sampler: greedy and its ties, the generator's known
 * values, the same seed giving the same draws, top-k and top-p keeping
 * exactly the candidates they should, the frequencies of a draw at a
 * temperature matching the softmax, and configurations refused by field.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* the module itself, for its generator */
#include "llm/sample.c"

static struct llm_sampler *sampler(float t, int k, float p, uint64_t seed, uint32_t n)
{
	struct llm_sampling cfg = {t, k, p, seed};
	struct llm_sampler *s = NULL;
	struct ciel_err err = {0};

	if (llm_sampler_new(&s, &cfg, n, &err) < 0)
		fail_msg("%s", err.msg);
	return s;
}

static int32_t draw(struct llm_sampler *s, const float *lg, uint32_t n)
{
	float tmp[64];

	memcpy(tmp, lg, n * sizeof(float));
	return llm_sample(s, tmp);
}

static void test_generator(void **st)
{
	uint64_t x = 0;
	struct rng s;

	(void)st;
	/* splitmix64 from 0: the published first value */
	assert_true(rng_splitmix64(&x) == 0xe220a8397b1dcdafull);
	rng_seed(&s, 0);
	assert_true(rng_next(&s) == 0x99ec5f36cb75f2b4ull);
	assert_true(rng_next(&s) == 0xbf6e1f784956452aull);
	assert_true(rng_next(&s) == 0x1a5f849d4933e6e0ull);
	for (int i = 0; i < 1000; i++) {
		double u = rng_double(&s);

		assert_true(u >= 0 && u < 1);
	}
}

static void test_greedy(void **st)
{
	float lg[6] = {0.5f, 3.0f, -1.0f, 3.0f, NAN, 2.9f};
	struct llm_sampler *s = sampler(0, 0, 1, 1, 6);

	(void)st;
	/* ties go to the lowest id; a NaN is never chosen */
	for (int i = 0; i < 5; i++)
		assert_int_equal(draw(s, lg, 6), 1);
	lg[4] = 10;
	assert_int_equal(draw(s, lg, 6), 4);
	llm_sampler_free(s);
	/* top-k 1 is greedy at any temperature */
	s = sampler(2.0f, 1, 1, 7, 6);
	lg[4] = NAN;
	for (int i = 0; i < 50; i++)
		assert_int_equal(draw(s, lg, 6), 1);
	llm_sampler_free(s);
}

static void test_seed(void **st)
{
	float lg[32];
	int32_t a[200], b[200], c[200];
	struct llm_sampler *s1 = sampler(1.0f, 0, 1, 1234, 32);
	struct llm_sampler *s2 = sampler(1.0f, 0, 1, 1234, 32);
	struct llm_sampler *s3 = sampler(1.0f, 0, 1, 1235, 32);
	int differ = 0;

	(void)st;
	for (int i = 0; i < 32; i++)
		lg[i] = (float)(i % 5) * 0.3f;
	for (int i = 0; i < 200; i++) {
		a[i] = draw(s1, lg, 32);
		b[i] = draw(s2, lg, 32);
		c[i] = draw(s3, lg, 32);
		differ += a[i] != c[i];
	}
	assert_memory_equal(a, b, sizeof(a));
	assert_true(differ > 100);
	llm_sampler_free(s1);
	llm_sampler_free(s2);
	llm_sampler_free(s3);
}

static void test_top_k(void **st)
{
	float lg[20];
	int seen[20] = {0};
	struct llm_sampler *s = sampler(2.0f, 4, 1, 99, 20);

	(void)st;
	/* the 4 best are ids 17, 3, 11 and 5 (5 ties with 8 and wins by id) */
	for (int i = 0; i < 20; i++)
		lg[i] = 0.01f * (float)i;
	lg[17] = 5;
	lg[3] = 4.5f;
	lg[11] = 4;
	lg[5] = 3;
	lg[8] = 3;
	for (int i = 0; i < 4000; i++)
		seen[draw(s, lg, 20)]++;
	for (int i = 0; i < 20; i++) {
		int in = i == 17 || i == 3 || i == 11 || i == 5;

		if (in != (seen[i] > 0))
			fail_msg("id %d drawn %d times", i, seen[i]);
	}
	llm_sampler_free(s);
}

static void test_top_p(void **st)
{
	/* probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1 */
	const float lg[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
	const struct {
		float p;
		int keep;
	} cases[] = {{0.4f, 1}, {0.75f, 2}, {0.9f, 3}, {1.0f, 4}};

	(void)st;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct llm_sampler *s = sampler(1.0f, 0, cases[c].p, 5, 4);
		int seen[4] = {0};

		for (int i = 0; i < 4000; i++)
			seen[draw(s, lg, 4)]++;
		for (int i = 0; i < 4; i++)
			if ((i < cases[c].keep) != (seen[i] > 0))
				fail_msg("top_p %g: id %d drawn %d times", cases[c].p, i, seen[i]);
		/* among the kept, the proportions of the renormalised distribution */
		if (cases[c].keep >= 2) {
			double r = (double)seen[1] / seen[0];

			assert_true(fabs(r - 0.6) < 0.08);
		}
		llm_sampler_free(s);
	}
}

static void test_temperature(void **st)
{
	const float lg[3] = {1.0f, 0.0f, -1.0f};
	const float temps[] = {1.0f, 0.5f};

	(void)st;
	for (size_t t = 0; t < 2; t++) {
		struct llm_sampler *s = sampler(temps[t], 0, 1, 42, 3);
		int n = 20000, seen[3] = {0};
		double z = 0, chi = 0;

		for (int i = 0; i < n; i++)
			seen[draw(s, lg, 3)]++;
		for (int i = 0; i < 3; i++)
			z += exp(lg[i] / temps[t]);
		for (int i = 0; i < 3; i++) {
			double e = n * exp(lg[i] / temps[t]) / z;

			chi += (seen[i] - e) * (seen[i] - e) / e;
		}
		/* 2 degrees of freedom: 13.8 is p = 0.001 */
		if (chi > 13.8)
			fail_msg("temperature %g: chi2 %g (%d %d %d)", temps[t], chi, seen[0],
				 seen[1], seen[2]);
		llm_sampler_free(s);
	}
}

static void test_bad_config(void **st)
{
	const struct {
		struct llm_sampling c;
		const char *field;
	} bad[] = {
	    {{-0.1f, 0, 1, 0}, "temperature"}, {{2.5f, 0, 1, 0}, "temperature"},
	    {{NAN, 0, 1, 0}, "temperature"},   {{1, -1, 1, 0}, "top_k"},
	    {{1, 0, 0, 0}, "top_p"},	       {{1, 0, 1.01f, 0}, "top_p"},
	    {{1, 0, NAN, 0}, "top_p"},
	};
	struct llm_sampler *s = NULL;
	struct ciel_err err;

	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(llm_sampler_new(&s, &bad[i].c, 10, &err), -1);
		assert_null(s);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_string_equal(err.field, bad[i].field);
	}
	{
		struct llm_sampling ok = {1, 0, 1, 0};

		assert_int_equal(llm_sampler_new(&s, &ok, 0, &err), -1);
	}
	llm_sampler_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_generator),  cmocka_unit_test(test_greedy),
	    cmocka_unit_test(test_seed),       cmocka_unit_test(test_top_k),
	    cmocka_unit_test(test_top_p),      cmocka_unit_test(test_temperature),
	    cmocka_unit_test(test_bad_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
