/*
 * test_kern — the numeric kernels against independent references: f16/bf16
 * conversion exhaustively against the CPU's F16C instructions and hand-made
 * ties, ggml's quantisation formulas on vectors worked out by hand, and every
 * weight type × every path this CPU has × odd shapes × batch 1..9 × 1..3
 * threads against a double-precision product of the dequantised weights.
 */
#include "llm/kern.h"

#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <cpuid.h>
#include <immintrin.h>

static uint32_t rng = 12345;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* uniform in [-1, 1) */
static float frnd(void)
{
	return (float)(rnd() >> 8) / (float)(1 << 23) - 1.0f;
}

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static float u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

/* ---- conversions ---- */

static void test_f16_edges(void **st)
{
	(void)st;
	assert_int_equal(kern_f32_to_f16(0.0f), 0x0000);
	assert_int_equal(kern_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(kern_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(kern_f32_to_f16(-2.0f), 0xc000);
	assert_int_equal(kern_f32_to_f16(65504.0f), 0x7bff);
	/* 65520 is the tie between 65504 (odd mantissa) and 65536: to even = inf */
	assert_int_equal(kern_f32_to_f16(65520.0f), 0x7c00);
	assert_int_equal(kern_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
	assert_int_equal(kern_f32_to_f16(1e10f), 0x7c00);
	assert_int_equal(kern_f32_to_f16(-INFINITY), 0xfc00);
	assert_int_equal(kern_f32_to_f16(0x1p-14f), 0x0400); /* smallest normal */
	assert_int_equal(kern_f32_to_f16(0x1p-24f), 0x0001); /* smallest subnormal */
	assert_int_equal(kern_f32_to_f16(0x1p-25f), 0x0000); /* tie to even: zero */
	assert_int_equal(kern_f32_to_f16(0x1.8p-25f), 0x0001);
	assert_int_equal(kern_f32_to_f16(0x3p-25f), 0x0002); /* 1.5 units: tie to even 2 */
	assert_int_equal(kern_f32_to_f16(0x5p-25f), 0x0002); /* 2.5 units: tie to even 2 */
	/* 1 + 2^-11 is the tie between 1 and 1 + 2^-10: stays 1 */
	assert_int_equal(kern_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	assert_int_equal(kern_f32_to_f16(1.0f + 0x3p-11f), 0x3c02);
	assert_true(isnan(kern_f16_to_f32(kern_f32_to_f16(NAN))));
	assert_int_equal(kern_f32_to_f16(NAN) & 0x7c00, 0x7c00);
	assert_true((kern_f32_to_f16(NAN) & 0x3ff) != 0);
	/* a NaN whose payload lies only in the low bits must stay a NaN */
	assert_true(isnan(kern_f16_to_f32(kern_f32_to_f16(u2f(0x7f800001)))));
	assert_true(isinf(kern_f16_to_f32(0x7c00)));
	assert_true(kern_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(kern_f16_to_f32(0x83ff) == -0x3ffp-24f);
	assert_true(kern_f16_to_f32(0x3555) == 0x1.554p-2f);
}

/* The CPU's F16C conversion (IEEE, round to nearest even) is the reference. */
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
	return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT),
					   0);
}

__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h)
{
	return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

static int have_f16c(void)
{
	unsigned a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

static void test_f16_exhaustive(void **st)
{
	(void)st;
	if (!have_f16c())
		skip();
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = kern_f16_to_f32((uint16_t)h), ref = hw_f16_to_f32((uint16_t)h);

		if (isnan(ref)) {
			assert_true(isnan(f));
			continue;
		}
		assert_true(f2u(f) == f2u(ref));
		assert_int_equal(kern_f32_to_f16(f), h);
	}
	/* random floats against the hardware's rounding */
	for (int i = 0; i < 2000000; i++) {
		uint32_t u = rnd();
		float f = u2f(u);

		if (i & 1) /* exponents 2^-25 .. 2^16, where all the rounding cases are */
			f = u2f((u & 0x807fffff) | ((0x66 + (u >> 24) % 0x2a) << 23));
		if (isnan(f))
			continue;
		assert_int_equal(kern_f32_to_f16(f), hw_f32_to_f16(f));
	}
	/* every tie between two adjacent finite halves */
	for (uint32_t h = 0; h < 0x7bff; h++) {
		double lo = kern_f16_to_f32((uint16_t)h), hi = kern_f16_to_f32((uint16_t)(h + 1));
		float mid = (float)((lo + hi) / 2);

		assert_int_equal(kern_f32_to_f16(mid), (h & 1) ? h + 1 : h);
		assert_int_equal(kern_f32_to_f16(-mid), 0x8000 | ((h & 1) ? h + 1 : h));
	}
}

static void test_bf16(void **st)
{
	(void)st;
	assert_int_equal(kern_f32_to_bf16(1.0f), 0x3f80);
	assert_int_equal(kern_f32_to_bf16(-0.0f), 0x8000);
	/* 1 + 2^-8 is the tie between 1 and 1 + 2^-7: even is 1 */
	assert_int_equal(kern_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	assert_int_equal(kern_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
	assert_int_equal(kern_f32_to_bf16(1.0f + 0x1.2p-8f), 0x3f81);
	assert_int_equal(kern_f32_to_bf16(INFINITY), 0x7f80);
	assert_int_equal(kern_f32_to_bf16(FLT_MAX), 0x7f80); /* rounds up to inf */
	/* NaNs with only low payload bits must not become infinities */
	assert_true(isnan(kern_bf16_to_f32(kern_f32_to_bf16(u2f(0x7f800001)))));
	assert_true(isnan(kern_bf16_to_f32(kern_f32_to_bf16(u2f(0xffffffff)))));
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = kern_bf16_to_f32((uint16_t)h);

		assert_true(f2u(f) == h << 16);
		if (!isnan(f))
			assert_int_equal(kern_f32_to_bf16(f), h);
	}
	/* against double rounding of random values */
	for (int i = 0; i < 200000; i++) {
		float f = u2f(rnd() & 0x7effffff);
		uint32_t u = f2u(f), lo = u & 0xffff0000u, hi = lo + 0x10000;
		double dlo = fabs((double)f - u2f(lo)), dhi = fabs(u2f(hi) - (double)f);
		uint16_t want =
		    (uint16_t)((dlo < dhi || (dlo == dhi && !((lo >> 16) & 1))) ? lo >> 16
										: hi >> 16);

		assert_int_equal(kern_f32_to_bf16(f), want);
	}
}

/* ---- type table ---- */

static void test_types(void **st)
{
	(void)st;
	assert_string_equal(kern_type_name(KERN_Q8_0), "q8_0");
	assert_string_equal(kern_type_name(KERN_BF16), "bf16");
	assert_null(kern_type_name(7));
	assert_int_equal(kern_type_parse("q4_0"), KERN_Q4_0);
	assert_int_equal(kern_type_parse("F16"), KERN_F16);
	assert_int_equal(kern_type_parse("q5_1"), -1);
	assert_true(kern_type_ok(KERN_F32) && kern_type_ok(KERN_Q4_0) && !kern_type_ok(3));
	assert_int_equal(kern_block_elems(KERN_Q8_0), 32);
	assert_int_equal(kern_block_elems(KERN_F16), 1);
	assert_int_equal(kern_block_elems(99), 0);
	assert_int_equal(kern_row_bytes(KERN_Q8_0, 64), 68);
	assert_int_equal(kern_row_bytes(KERN_Q4_0, 4096), 128 * 18);
	assert_int_equal(kern_row_bytes(KERN_BF16, 3), 6);
	assert_int_equal(kern_row_bytes(KERN_Q4_K, 256), 144);
	assert_int_equal(kern_row_bytes(KERN_Q8_0, 33), 0);
	assert_int_equal(kern_row_bytes(99, 32), 0);
	/* a hostile element count must not wrap */
	assert_int_equal(kern_row_bytes(KERN_F32, UINT64_MAX / 2), 0);
	assert_int_equal(kern_row_bytes(KERN_Q8_0, UINT64_MAX / 32 * 32), 0);
}

/* ---- quantisation with ggml's formulas ---- */

static void test_quant_q8_known(void **st)
{
	float x[64], y[64];
	uint8_t b[68];

	(void)st;
	/* block 0: amax 127 makes d exactly 1, so q is x rounded half away from 0 */
	for (int j = 0; j < 32; j++)
		x[j] = (float)(j * 4 - 64) + (j % 3 == 0 ? 0.5f : 0.25f);
	x[31] = -127.0f;
	/* block 1: all zero, d = 0 and every q 0 */
	memset(x + 32, 0, 32 * sizeof(float));
	kern_quant_row(KERN_Q8_0, x, b, 64);
	assert_int_equal(b[0] | b[1] << 8, 0x3c00);
	for (int j = 0; j < 31; j++) {
		int want = j * 4 - 64 + (j % 3 == 0 ? (j * 4 - 64 < 0 ? 0 : 1) : 0);

		assert_int_equal((int8_t)b[2 + j], want);
	}
	assert_int_equal((int8_t)b[2 + 31], -127);
	for (int j = 0; j < 34; j++)
		assert_int_equal(b[34 + j], 0);
	kern_dequant_row(KERN_Q8_0, b, y, 64);
	for (int j = 0; j < 32; j++)
		assert_true(y[j] == (float)(int8_t)b[2 + j]);
	/* random data: within half a step of the input, plus the f16 rounding of d (127 * 2^-11) */
	for (int j = 0; j < 64; j++)
		x[j] = frnd() * 3;
	kern_quant_row(KERN_Q8_0, x, b, 64);
	kern_dequant_row(KERN_Q8_0, b, y, 64);
	for (int blk = 0; blk < 2; blk++) {
		float amax = 0;

		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
		for (int j = 0; j < 32; j++)
			assert_true(fabsf(y[blk * 32 + j] - x[blk * 32 + j]) <= amax / 127 * 0.57f);
	}
}

static void test_quant_q4_known(void **st)
{
	float x[32], y[32];
	uint8_t b[18];

	(void)st;
	/* the largest magnitude is -8, so d = -8 / -8 = 1 and q = min(15, (int8)(x + 8.5)) */
	for (int j = 0; j < 32; j++)
		x[j] = (float)j / 2 - 8;
	kern_quant_row(KERN_Q4_0, x, b, 32);
	assert_int_equal(b[0] | b[1] << 8, 0x3c00);
	for (int j = 0; j < 16; j++) {
		/* (int8)(j/2 - 8 + 8.5) truncates to (j + 1) / 2 */
		int lo = (j + 1) / 2, hi = (16 + j + 1) / 2;

		hi = hi > 15 ? 15 : hi;
		assert_int_equal(b[2 + j] & 0xf, lo);
		assert_int_equal(b[2 + j] >> 4, hi);
	}
	kern_dequant_row(KERN_Q4_0, b, y, 32);
	for (int j = 0; j < 32; j++)
		assert_true(y[j] == (float)(((j + 1) / 2 > 15 ? 15 : (j + 1) / 2) - 8));
	/* positive extreme: max = +4 gives d = -0.5, and x = 4 maps to q 0 = -8 * -0.5 */
	for (int j = 0; j < 32; j++)
		x[j] = 0;
	x[5] = 4;
	x[20] = -1;
	kern_quant_row(KERN_Q4_0, x, b, 32);
	assert_int_equal(b[0] | b[1] << 8, kern_f32_to_f16(-0.5f));
	assert_int_equal(b[2 + 5] & 0xf, 0);
	assert_int_equal(b[2 + 4] >> 4, 10); /* -1 / -0.5 + 8.5 = 10.5 -> 10 */
	assert_int_equal(b[2 + 0] & 0xf, 8);
	kern_dequant_row(KERN_Q4_0, b, y, 32);
	assert_true(y[5] == 4.0f && y[20] == -1.0f && y[0] == 0.0f);
}

static void test_quant_float_types(void **st)
{
	float x[8] = {1, -2.5f, 65504, 1e-8f, 0.1f, -0.0f, 3.0e38f, 1.0f / 3}, y[8];
	uint8_t b[32];

	(void)st;
	kern_quant_row(KERN_F16, x, b, 8);
	kern_dequant_row(KERN_F16, b, y, 8);
	for (int j = 0; j < 8; j++)
		assert_true(f2u(y[j]) == f2u(kern_f16_to_f32(kern_f32_to_f16(x[j]))));
	kern_quant_row(KERN_BF16, x, b, 8);
	kern_dequant_row(KERN_BF16, b, y, 8);
	for (int j = 0; j < 8; j++)
		assert_true(f2u(y[j]) == f2u(kern_bf16_to_f32(kern_f32_to_bf16(x[j]))));
	kern_get_row(KERN_BF16, b, 4, 1, y);
	assert_true(y[0] == kern_bf16_to_f32(kern_f32_to_bf16(0.1f)));
}

/* Q4_K: a hand-built super-block with known scales and mins. */
static void test_q4k_dequant(void **st)
{
	uint8_t b[144] = {0};
	float y[256];
	uint16_t d = kern_f32_to_f16(0.5f), dm = kern_f32_to_f16(0.25f);

	(void)st;
	b[0] = (uint8_t)d;
	b[1] = (uint8_t)(d >> 8);
	b[2] = (uint8_t)dm;
	b[3] = (uint8_t)(dm >> 8);
	/* sub-block 0: scale 3, min 2; sub-block 5: scale 17 (low 4 in byte 9, high 2 in byte 1) */
	b[4 + 0] = 3;
	b[4 + 4] = 2;
	b[4 + 9] = 17 & 0xf;
	b[4 + 1] = (uint8_t)((17 >> 4) << 6);
	/* nibbles: low of byte l is sub-block 2i, high is 2i+1 */
	for (int l = 0; l < 128; l++)
		b[16 + l] = (uint8_t)((l % 16) | (7 << 4));
	kern_dequant_row(KERN_Q4_K, b, y, 256);
	assert_true(y[0] == 0.5f * 3 * 0 - 0.25f * 2);
	assert_true(y[5] == 0.5f * 3 * 5 - 0.25f * 2);
	assert_true(y[32 * 5 + 1] == 0.5f * 17 * 7);
	assert_true(y[32 * 2 + 3] == 0.0f);
}

/* ---- matmul against double precision ---- */

/* Quantise one activation block as the contract says: d = amax/127, q = RNE(x * 127/amax). */
static void ref_quant_x(const float *x, double *xd, uint64_t k)
{
	for (uint64_t b = 0; b < k / 32; b++) {
		float amax = 0, id, d;

		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[b * 32 + j]));
		d = amax / 127;
		id = amax != 0 ? 127 / amax : 0;
		for (int j = 0; j < 32; j++)
			xd[b * 32 + j] = (double)nearbyintf(x[b * 32 + j] * id) * d;
	}
}

static void check_matmul(struct kern_pool *pool, uint32_t type, uint64_t rows, uint64_t k, int nb)
{
	uint64_t rb = kern_row_bytes(type, k);
	uint8_t *w = malloc(rb * rows);
	float *wf = malloc(sizeof(float) * k * rows), *x = malloc(sizeof(float) * k * nb);
	float *y = malloc(sizeof(float) * rows * nb), *row = malloc(sizeof(float) * k);
	double *xd = malloc(sizeof(double) * k);
	int quant = type == KERN_Q8_0 || type == KERN_Q4_0;

	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t i = 0; i < k; i++)
			row[i] = frnd() * (1 + (float)(r % 5));
		if (r == 3)
			memset(row, 0, k * sizeof(float)); /* an all-zero row: d = 0 */
		kern_quant_row(type, row, w + r * rb, k);
		kern_dequant_row(type, w + r * rb, wf + r * k, k);
	}
	for (uint64_t i = 0; i < k * (uint64_t)nb; i++)
		x[i] = frnd() * 2;
	if (nb > 1)
		memset(x + k, 0, k * sizeof(float)); /* an all-zero activation */
	for (uint64_t i = 0; i < rows * (uint64_t)nb; i++)
		y[i] = NAN;
	kern_matmul(pool, type, w, rows, k, x, nb, y);
	for (int a = 0; a < nb; a++) {
		if (quant)
			ref_quant_x(x + a * k, xd, k);
		else
			for (uint64_t i = 0; i < k; i++)
				xd[i] = x[a * k + i];
		for (uint64_t r = 0; r < rows; r++) {
			double s = 0, mag = 0, got = y[a * rows + r];

			for (uint64_t i = 0; i < k; i++) {
				s += wf[r * k + i] * xd[i];
				mag += fabs(wf[r * k + i] * xd[i]);
			}
			/* f32 sums of exact products (integer dots are exact): rounding only */
			if (!(fabs(got - s) <= 1e-5 * mag + 1e-30))
				fail_msg("%s path %s rows %llu k %llu nb %d: y[%d][%llu] = %.9g, "
					 "want %.9g",
					 kern_type_name(type), kern_path(),
					 (unsigned long long)rows, (unsigned long long)k, nb, a,
					 (unsigned long long)r, got, s);
		}
	}
	free(w);
	free(wf);
	free(x);
	free(y);
	free(row);
	free(xd);
}

static const uint32_t all_types[] = {KERN_F32, KERN_F16, KERN_BF16, KERN_Q8_0, KERN_Q4_0};

static void test_matmul_paths(void **st)
{
	const char *const *names = kern_paths();
	struct kern_pool *pools[3];
	int npaths = 0;

	(void)st;
	for (int t = 0; t < 3; t++) {
		pools[t] = kern_pool_new(t + 1, NULL);
		assert_non_null(pools[t]);
	}
	for (int pi = 0; names[pi]; pi++) {
		if (kern_set_path(names[pi]) < 0)
			continue; /* this CPU lacks it */
		npaths++;
		assert_string_equal(kern_path(), names[pi]);
		for (size_t ti = 0; ti < sizeof(all_types) / sizeof(all_types[0]); ti++) {
			uint32_t type = all_types[ti];
			/* odd row counts, odd block counts (k = 96: 3 blocks), a long row */
			static const uint64_t shapes[][2] = {
			    {1, 32}, {37, 96}, {17, 64}, {50, 320}, {33, 1024}};

			for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
				for (int nb = 1; nb <= 9; nb++)
					check_matmul(pools[(s + (size_t)nb) % 3], type,
						     shapes[s][0], shapes[s][1], nb);
			/* no pool at all, and float types with k off any block size */
			check_matmul(NULL, type, 19, 64, 3);
			if (type == KERN_F32 || type == KERN_F16 || type == KERN_BF16) {
				check_matmul(pools[1], type, 21, 172, 2);
				check_matmul(pools[2], type, 5, 7, 9);
				check_matmul(pools[0], type, 64, 17, 1);
			}
		}
	}
	assert_true(npaths >= 1);
	for (int t = 0; t < 3; t++)
		kern_pool_free(pools[t]);
	assert_int_equal(kern_set_path("no-such-path"), -1);
}

/* Large enough that every thread has rows, and results equal across thread counts. */
static void test_matmul_threads_agree(void **st)
{
	uint64_t rows = 1000, k = 256;
	uint8_t *w = malloc(kern_row_bytes(KERN_Q4_0, k) * rows);
	float *x = malloc(sizeof(float) * k * 2), *y1 = malloc(sizeof(float) * rows * 2);
	float *y3 = malloc(sizeof(float) * rows * 2), *row = malloc(sizeof(float) * k);
	struct kern_pool *p1 = kern_pool_new(1, NULL), *p3 = kern_pool_new(3, NULL);

	(void)st;
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t i = 0; i < k; i++)
			row[i] = frnd();
		kern_quant_row(KERN_Q4_0, row, w + r * kern_row_bytes(KERN_Q4_0, k), k);
	}
	for (uint64_t i = 0; i < 2 * k; i++)
		x[i] = frnd();
	for (int it = 0; it < 50; it++) {
		kern_matmul(p1, KERN_Q4_0, w, rows, k, x, 2, y1);
		kern_matmul(p3, KERN_Q4_0, w, rows, k, x, 2, y3);
		/* each row is computed whole by one thread: bit-identical */
		assert_memory_equal(y1, y3, sizeof(float) * rows * 2);
	}
	kern_pool_free(p1);
	kern_pool_free(p3);
	free(w);
	free(x);
	free(y1);
	free(y3);
	free(row);
}

/* ---- the pool ---- */

struct count_arg {
	int hits[8];
	int n_seen;
};

static void count_fn(void *arg, int i, int n)
{
	struct count_arg *c = arg;

	__atomic_fetch_add(&c->hits[i], 1, __ATOMIC_RELAXED);
	c->n_seen = n;
}

static void test_pool(void **st)
{
	(void)st;
	assert_null(kern_pool_new(0, NULL));
	for (int t = 1; t <= 4; t++) {
		struct kern_pool *p = kern_pool_new(t, NULL);
		struct count_arg c = {0};

		assert_non_null(p);
		assert_int_equal(kern_pool_threads(p), t);
		for (int it = 0; it < 500; it++)
			kern_pool_run(p, count_fn, &c);
		for (int i = 0; i < 8; i++)
			assert_int_equal(c.hits[i], i < t ? 500 : 0);
		assert_int_equal(c.n_seen, t);
		/* after the workers went to sleep on the futex, they still wake */
		usleep(5000);
		kern_pool_run(p, count_fn, &c);
		assert_int_equal(c.hits[t - 1], 501);
		kern_pool_free(p);
	}
	kern_pool_free(NULL);
}

/* Every task waits until all n have started: passes only if n threads run them at once. */
struct meet_arg {
	int started;
	int timed_out;
};

static void meet_fn(void *arg, int i, int n)
{
	struct meet_arg *m = arg;
	struct timespec t0, t;

	(void)i;
	__atomic_fetch_add(&m->started, 1, __ATOMIC_SEQ_CST);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (__atomic_load_n(&m->started, __ATOMIC_SEQ_CST) < n) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20) {
			m->timed_out = 1;
			return;
		}
		sched_yield();
	}
}

static void test_pool_concurrent(void **st)
{
	(void)st;
	for (int t = 2; t <= 3; t++) {
		struct kern_pool *p = kern_pool_new(t, NULL);

		for (int it = 0; it < 20; it++) {
			struct meet_arg m = {0};

			kern_pool_run(p, meet_fn, &m);
			assert_int_equal(m.started, t);
			assert_false(m.timed_out);
		}
		kern_pool_free(p);
	}
}

/* ---- vector helpers ---- */

static void check_vec(int n)
{
	float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
	float *o = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
	double ss = 0, dot = 0, mag = 0, sum = 0, max = -1e30;

	for (int i = 0; i < n; i++) {
		a[i] = frnd() * 4;
		b[i] = frnd();
		ss += (double)a[i] * a[i];
		dot += (double)a[i] * b[i];
		mag += fabs((double)a[i] * b[i]);
	}
	kern_rmsnorm(o, a, b, n, 1e-5f);
	for (int i = 0; i < n; i++)
		assert_true(fabs(o[i] - a[i] * b[i] / sqrt(ss / n + 1e-5)) < 1e-5);
	assert_true(fabs(kern_dot_f32(a, b, n) - dot) <= 1e-6 * mag + 1e-30);
	memcpy(o, b, sizeof(float) * n);
	kern_axpy_f32(o, 0.5f, a, n);
	for (int i = 0; i < n; i++)
		assert_true(fabsf(o[i] - (b[i] + 0.5f * a[i])) < 1e-6f);
	kern_swiglu(g, a, b, n);
	for (int i = 0; i < n; i++)
		assert_true(fabs(g[i] - a[i] / (1 + exp(-a[i])) * b[i]) < 1e-5);
	memcpy(o, a, sizeof(float) * n);
	o[n / 2] = 80; /* large logits must not overflow */
	for (int i = 0; i < n; i++)
		max = fmax(max, o[i]);
	for (int i = 0; i < n; i++)
		sum += exp(o[i] - max);
	memcpy(g, o, sizeof(float) * n);
	kern_softmax(o, n);
	for (int i = 0; i < n; i++)
		assert_true(fabs(o[i] - exp(g[i] - max) / sum) < 1e-6);
	free(a);
	free(b);
	free(o);
	free(g);
}

static void test_vec(void **st)
{
	const char *const *names = kern_paths();
	static const int sizes[] = {1, 5, 16, 31, 67, 300};

	(void)st;
	for (int pi = 0; names[pi]; pi++) {
		if (kern_set_path(names[pi]) < 0)
			continue;
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			check_vec(sizes[i]);
		/* axpy must not write past n */
		{
			float y[40], x[40];

			for (int i = 0; i < 40; i++)
				y[i] = x[i] = 1;
			kern_axpy_f32(y, 2, x, 19);
			assert_true(y[18] == 3 && y[19] == 1);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_f16_edges),
	    cmocka_unit_test(test_f16_exhaustive),
	    cmocka_unit_test(test_bf16),
	    cmocka_unit_test(test_types),
	    cmocka_unit_test(test_quant_q8_known),
	    cmocka_unit_test(test_quant_q4_known),
	    cmocka_unit_test(test_quant_float_types),
	    cmocka_unit_test(test_q4k_dequant),
	    cmocka_unit_test(test_matmul_paths),
	    cmocka_unit_test(test_matmul_threads_agree),
	    cmocka_unit_test(test_pool),
	    cmocka_unit_test(test_pool_concurrent),
	    cmocka_unit_test(test_vec),
	};

	/* KERN_TEST=name runs one test (timing, debugging) */
	if (getenv("KERN_TEST"))
		cmocka_set_test_filter(getenv("KERN_TEST"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
