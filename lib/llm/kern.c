/*
 * kern — weight formats, quantised matrix products and the thread pool of
 * the LLM engine. See kern.h for the contract.
 *
 * Decode is matrix-vector work bound by memory bandwidth: every weight byte
 * is read once per token, so the products must consume bytes as fast as
 * DRAM delivers them. For the quantised types the activations are quantised
 * once per call to int8 blocks of 32 with one f32 scale (the "xq" below), and
 * each weight block meets them in an integer dot product. The per-block
 * integer dot is exact and identical on every path; only the f32 sums of
 * scaled blocks differ in order, so paths agree within float rounding.
 *
 * xq layout, per activation row a and block b: 32 int8 q, a scale dx
 * replicated over 8 lanes, and an int32 bias over 8 lanes that the Q4_0
 * kernels add to the 8 lane sums of their dot product: maddubs and VNNI
 * multiply unsigned by signed bytes, and for Q4_0 the unsigned side is the
 * raw nibble q in [0, 15] standing for q - 8, so the bias is -sum(x) per
 * lane (8 lanes: -8 * sum(x)). For Q8_0 the VNNI path stores x + 128
 * instead and needs no bias (see pair_q8).
 *
 * Q4_0 on the vector paths: a block's byte j holds element j in its low
 * nibble and element j + 16 in its high one, so the activations of a group
 * of G blocks (G = 4 in 512 bits, 2 in 256) are stored in that order once
 * per call: the low halves (elements 0..15) of the G blocks, then their
 * high halves. The weights then need only an and and a shift, never a
 * shuffle, and one dot product covers G blocks with 16 / G lanes per block;
 * dx and bias of a group are [dx of block 0 × 4, block 1 × 4, ...] in the
 * group's first 4G lanes, the bias -2 * sum(x) per lane. Blocks past the
 * last whole group keep the plain layout.
 */
#ifndef KERN_TEMPLATE
#include "llm/kern.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#define QK 32 /* elements per Q8_0 / Q4_0 block */
#define Q8_BYTES 34
#define Q4_BYTES 18
#define Q4K_ELEMS 256
#define Q4K_BYTES 144

/* ---- types ---- */

static const struct {
	uint32_t type;
	const char *name;
	uint32_t elems;
	uint32_t bytes;
} types[] = {
    {KERN_F32, "f32", 1, 4},	       {KERN_F16, "f16", 1, 2},		  {KERN_BF16, "bf16", 1, 2},
    {KERN_Q8_0, "q8_0", QK, Q8_BYTES}, {KERN_Q4_0, "q4_0", QK, Q4_BYTES},
};

static int type_index(uint32_t type)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == type)
			return (int)i;
	return -1;
}

const char *kern_type_name(uint32_t type)
{
	int i = type_index(type);

	if (i < 0)
		return type == KERN_Q4_K ? "q4_k" : NULL;
	return types[i].name;
}

int kern_type_parse(const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcasecmp(name, types[i].name))
			return (int)types[i].type;
	return -1;
}

int kern_type_ok(uint32_t type)
{
	return type_index(type) >= 0;
}

uint32_t kern_block_elems(uint32_t type)
{
	int i = type_index(type);

	if (i < 0)
		return type == KERN_Q4_K ? Q4K_ELEMS : 0;
	return types[i].elems;
}

uint64_t kern_row_bytes(uint32_t type, uint64_t n)
{
	int i = type_index(type);
	uint64_t be, bb;

	if (i < 0) {
		if (type != KERN_Q4_K)
			return 0;
		be = Q4K_ELEMS;
		bb = Q4K_BYTES;
	} else {
		be = types[i].elems;
		bb = types[i].bytes;
	}
	if (n % be)
		return 0;
	/* absurd sizes from a hostile file must not wrap */
	if (n / be > UINT64_MAX / bb)
		return 0;
	return n / be * bb;
}

/* ---- f16 / bf16, exact, round to nearest even ---- */

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

float kern_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;

	if (e == 0) {
		/* zero or subnormal: m units of 2^-24, exact in f32 */
		float v = (float)m * 0x1p-24f;

		return u2f(f2u(v) | sign);
	}
	if (e == 31)
		return u2f(sign | 0x7f800000 | (m << 13));
	return u2f(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t kern_f32_to_f16(float f)
{
	uint32_t x = f2u(f);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t h, rem, m, e, shift;

	x &= 0x7fffffff;
	if (x >= 0x7f800000) {
		if (x > 0x7f800000) /* NaN stays NaN (quiet), payload top bits kept */
			return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
		return (uint16_t)(sign | 0x7c00);
	}
	if (x >= 0x477ff000) /* >= 65520 rounds to infinity */
		return (uint16_t)(sign | 0x7c00);
	if (x >= 0x38800000) { /* normal half: rebias exponent 127 -> 15 */
		x -= 0x38000000;
		h = x >> 13;
		rem = x & 0x1fff;
		if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
	if (x <= 0x33000000) /* <= 2^-25: ties to even give zero */
		return (uint16_t)sign;
	/* subnormal half: count units of 2^-24 */
	e = x >> 23;
	m = (x & 0x7fffff) | 0x800000;
	shift = 126 - e;
	h = m >> shift;
	rem = m & ((1u << shift) - 1);
	if (rem > (1u << (shift - 1)) || (rem == (1u << (shift - 1)) && (h & 1)))
		h++;
	return (uint16_t)(sign | h);
}

float kern_bf16_to_f32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

uint16_t kern_f32_to_bf16(float f)
{
	uint32_t x = f2u(f);

	if ((x & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((x >> 16) | 0x40); /* quiet the NaN; never round it to inf */
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

static float rd_f16(const uint8_t *p)
{
	return kern_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static void wr_f16(uint8_t *p, float f)
{
	uint16_t h = kern_f32_to_f16(f);

	p[0] = (uint8_t)h;
	p[1] = (uint8_t)(h >> 8);
}

/* ---- row conversion ---- */

static void dequant_q4k(const uint8_t *b, float *y);

void kern_dequant_row(uint32_t type, const void *src, float *dst, uint64_t n)
{
	const uint8_t *s = src;

	switch (type) {
	case KERN_F32:
		memcpy(dst, src, n * 4);
		break;
	case KERN_F16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = rd_f16(s + 2 * i);
		break;
	case KERN_BF16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = kern_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
		break;
	case KERN_Q8_0:
		for (uint64_t b = 0; b < n / QK; b++, s += Q8_BYTES) {
			float d = rd_f16(s);

			for (int j = 0; j < QK; j++)
				dst[b * QK + j] = (float)(int8_t)s[2 + j] * d;
		}
		break;
	case KERN_Q4_0:
		for (uint64_t b = 0; b < n / QK; b++, s += Q4_BYTES) {
			float d = rd_f16(s);

			for (int j = 0; j < QK / 2; j++) {
				dst[b * QK + j] = (float)((s[2 + j] & 0xf) - 8) * d;
				dst[b * QK + j + QK / 2] = (float)((s[2 + j] >> 4) - 8) * d;
			}
		}
		break;
	case KERN_Q4_K:
		for (uint64_t b = 0; b < n / Q4K_ELEMS; b++, s += Q4K_BYTES)
			dequant_q4k(s, dst + b * Q4K_ELEMS);
		break;
	default:
		BUG("kern: dequant of type %u", type);
	}
}

/* ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref, bit for bit. */
void kern_quant_row(uint32_t type, const float *src, void *dst, uint64_t n)
{
	uint8_t *o = dst;

	switch (type) {
	case KERN_F32:
		memcpy(dst, src, n * 4);
		break;
	case KERN_F16:
		for (uint64_t i = 0; i < n; i++)
			wr_f16(o + 2 * i, src[i]);
		break;
	case KERN_BF16:
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h = kern_f32_to_bf16(src[i]);

			o[2 * i] = (uint8_t)h;
			o[2 * i + 1] = (uint8_t)(h >> 8);
		}
		break;
	case KERN_Q8_0:
		for (uint64_t b = 0; b < n / QK; b++, o += Q8_BYTES) {
			const float *x = src + b * QK;
			float amax = 0, d, id;

			for (int j = 0; j < QK; j++)
				amax = fmaxf(amax, fabsf(x[j]));
			d = amax / 127;
			id = d != 0 ? 1.0f / d : 0.0f;
			wr_f16(o, d);
			for (int j = 0; j < QK; j++)
				o[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
		}
		break;
	case KERN_Q4_0:
		for (uint64_t b = 0; b < n / QK; b++, o += Q4_BYTES) {
			const float *x = src + b * QK;
			float amax = 0, max = 0, d, id;

			for (int j = 0; j < QK; j++) {
				if (amax < fabsf(x[j])) {
					amax = fabsf(x[j]);
					max = x[j];
				}
			}
			d = max / -8;
			id = d != 0 ? 1.0f / d : 0.0f;
			wr_f16(o, d);
			for (int j = 0; j < QK / 2; j++) {
				int8_t a = (int8_t)(x[j] * id + 8.5f);
				int8_t c = (int8_t)(x[QK / 2 + j] * id + 8.5f);

				a = a < 15 ? a : 15;
				c = c < 15 ? c : 15;
				o[2 + j] = (uint8_t)(a | (c << 4));
			}
		}
		break;
	default:
		BUG("kern: quantise to type %u", type);
	}
}

/*
 * Q4_K (ggml block_q4_K): f16 d, f16 dmin, 12 bytes of 6-bit scales and mins
 * for 8 sub-blocks of 32, 128 bytes of nibbles. Dequantised only (loads of
 * such files convert at load time).
 */
static void q4k_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

static void dequant_q4k(const uint8_t *b, float *y)
{
	float d = rd_f16(b), dmin = rd_f16(b + 2);
	const uint8_t *sc = b + 4, *q = b + 16;
	int is = 0;

	for (int j = 0; j < Q4K_ELEMS; j += 64) {
		uint8_t s, m;
		float d1, m1, d2, m2;

		q4k_scale_min(is, sc, &s, &m);
		d1 = d * s;
		m1 = dmin * m;
		q4k_scale_min(is + 1, sc, &s, &m);
		d2 = d * s;
		m2 = dmin * m;
		for (int l = 0; l < 32; l++)
			*y++ = d1 * (q[l] & 0xf) - m1;
		for (int l = 0; l < 32; l++)
			*y++ = d2 * (q[l] >> 4) - m2;
		q += 32;
		is += 2;
	}
}

void kern_get_row(uint32_t type, const void *table, uint64_t k, uint64_t row, float *dst)
{
	uint64_t rb = kern_row_bytes(type, k);

	if (!rb)
		BUG("kern: get_row of type %u with k=%llu", type, (unsigned long long)k);
	kern_dequant_row(type, (const uint8_t *)table + rb * row, dst, k);
}

/* ---- the thread pool ----
 *
 * Decode calls matmul ~150 times per token, each a few hundred µs, so waking
 * the workers must cost well under a µs: they spin on a generation counter
 * for a while after each job, and only then sleep on it with a futex.
 *
 * Tasks are claimed, not assigned: every thread, the caller first, takes
 * the next unclaimed index of the job. Each index still runs exactly once
 * and never on two threads at a time (per-task scratch stays safe), but a
 * worker that the kernel has not scheduled yet (more threads than free
 * cores) no longer holds the whole job up: the others run its share.
 */

#define SPIN_NS 300000 /* how long a waiting thread spins before it sleeps */
#define YIELD_NS 30000 /* after this, it spins with sched_yield */

struct kern_pool {
	int n; /* threads, the caller's included */
	pthread_t *th;
	void (*fn)(void *arg, int i, int n);
	void *arg;
	_Atomic uint32_t gen;	   /* bumped for each job; futex word of the workers */
	_Atomic uint64_t claim;	   /* job generation << 32 | next task index to claim */
	_Atomic uint32_t done;	   /* tasks of the current job that ended; futex of the caller */
	_Atomic int sleepers;	   /* workers in (or entering) futex_wait on gen */
	_Atomic int caller_sleeps; /* the caller is (or enters) futex_wait on done */
	_Atomic int stop;
	/* scratch for quantised activations, used by kern_matmul on the caller's thread */
	void *scratch;
	size_t scratch_bytes;
};

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#endif
}

/*
 * Wait until *w != old: spin first, then yield (a thread we wait for may
 * share our core when threads outnumber cores), then sleep on the futex.
 */
static void wait_change(_Atomic uint32_t *w, uint32_t old, _Atomic int *sleeping)
{
	uint64_t t0 = 0, t;

	for (unsigned i = 1;; i++) {
		if (atomic_load_explicit(w, memory_order_acquire) != old)
			return;
		if (i % 64) {
			cpu_relax();
			continue;
		}
		t = now_ns();
		if (!t0)
			t0 = t;
		else if (t - t0 > SPIN_NS)
			break;
		else if (t - t0 > YIELD_NS)
			sched_yield();
	}
	for (;;) {
		atomic_fetch_add(sleeping, 1);
		/* seq_cst: the waker bumps *w then reads *sleeping; one of us sees the other */
		if (atomic_load(w) == old)
			futex(w, FUTEX_WAIT_PRIVATE, old);
		atomic_fetch_sub(sleeping, 1);
		if (atomic_load_explicit(w, memory_order_acquire) != old)
			return;
	}
}

/* Run tasks of job generation g until none is left; returns how many this thread ran. */
static uint32_t claim_tasks(struct kern_pool *p, uint32_t g)
{
	uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
	uint32_t ran = 0;

	for (;;) {
		uint32_t i = (uint32_t)c;

		if (c >> 32 != g || i >= (uint32_t)p->n)
			return ran;
		/* acquire: fn and arg were written before the generation was published */
		if (!atomic_compare_exchange_weak_explicit(
			&p->claim, &c, c + 1, memory_order_acquire, memory_order_acquire))
			continue;
		p->fn(p->arg, (int)i, p->n);
		ran++;
		if (atomic_fetch_add(&p->done, 1) + 1 == (uint32_t)p->n &&
		    atomic_load(&p->caller_sleeps))
			futex(&p->done, FUTEX_WAKE_PRIVATE, 1);
		c = atomic_load_explicit(&p->claim, memory_order_acquire);
	}
}

static void *worker_main(void *a)
{
	struct kern_pool *p = a;
	uint32_t seen = 0;

	for (;;) {
		wait_change(&p->gen, seen, &p->sleepers);
		seen = atomic_load_explicit(&p->gen, memory_order_acquire);
		if (atomic_load(&p->stop))
			return NULL;
		claim_tasks(p, seen);
	}
}

static void pool_kick(struct kern_pool *p)
{
	atomic_fetch_add(&p->gen, 1);
	if (atomic_load(&p->sleepers))
		futex(&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX);
}

struct kern_pool *kern_pool_new(int threads, struct ciel_err *err)
{
	struct kern_pool *p;

	if (threads < 1 || threads > 256) {
		ciel_err_set(err, CIEL_EINVAL, "kern: %d threads (1..256)", threads);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->th = calloc((size_t)threads, sizeof(*p->th)))) {
		free(p);
		ciel_err_set(err, CIEL_ENOMEM, "kern: out of memory");
		return NULL;
	}
	p->n = 1;
	for (int i = 1; i < threads; i++) {
		/* n is read by workers only during jobs, after the pool is complete */
		int rc = pthread_create(&p->th[i], NULL, worker_main, p);

		if (rc) {
			ciel_err_sys(err, CIEL_EUNAVAIL, rc, "kern: start %d threads", threads);
			goto fail;
		}
		p->n++;
	}
	return p;
fail:
	kern_pool_free(p);
	return NULL;
}

void kern_pool_free(struct kern_pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, 1);
	pool_kick(p);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	free(p->th);
	free(p->scratch);
	free(p);
}

int kern_pool_threads(const struct kern_pool *p)
{
	return p ? p->n : 1;
}

void kern_pool_run(struct kern_pool *p, void (*fn)(void *arg, int i, int n), void *arg)
{
	uint32_t g, want;

	if (!p || p->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	want = (uint32_t)p->n;
	g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
	p->fn = fn;
	p->arg = arg;
	atomic_store(&p->done, 0);
	atomic_store_explicit(&p->claim, (uint64_t)g << 32, memory_order_release);
	pool_kick(p);
	claim_tasks(p, g);
	for (;;) {
		uint32_t d = atomic_load_explicit(&p->done, memory_order_acquire);

		if (d == want)
			break;
		wait_change(&p->done, d, &p->caller_sleeps);
	}
}

/* Scratch of at least n bytes, 64-byte aligned; owned by the pool (or *own when p is NULL). */
static void *scratch_get(struct kern_pool *p, size_t n, void **own)
{
	n = (n + 63) & ~(size_t)63;
	if (!p) {
		*own = aligned_alloc(64, n);
		if (!*own)
			BUG("kern: out of memory for %zu bytes of scratch", n);
		return *own;
	}
	if (p->scratch_bytes < n) {
		free(p->scratch);
		p->scratch = aligned_alloc(64, n);
		if (!p->scratch)
			BUG("kern: out of memory for %zu bytes of scratch", n);
		p->scratch_bytes = n;
	}
	return p->scratch;
}

/* ---- matmul ---- */

/* Activations quantised to int8 blocks, see the top of the file. */
struct xq {
	int8_t *q;     /* nb × k */
	float *dxv;    /* nb × nblk × 8: the block's scale, 8 times */
	int32_t *bias; /* nb × nblk × 8 */
	uint64_t nblk; /* blocks per row */
};

/* Pointers into the xq of one activation row. */
struct xrow {
	const int8_t *q;
	const float *dx;
	const int32_t *bs;
};

struct mm_job {
	uint32_t type;
	const uint8_t *w;
	uint64_t rows, k, rb; /* rb: bytes per weight row */
	const float *x;
	const struct xq *xq;
	int nb;
	float *y;
};

/* A path: quantise the activations, and multiply a range of rows. */
struct kpath {
	const char *name;
	int (*supported)(void);
	int q8_xu; /* Q8_0 activations stored as x + 128 (VNNI, see pair_q8) */
	void (*rows_q)(const struct mm_job *j, uint64_t r0, uint64_t r1);
	void (*rows_f)(const struct mm_job *j, uint64_t r0, uint64_t r1);
	/* q4: for Q4_0 weights (the bias, and the path's layout); xu: x + 128 */
	void (*quant_x)(const float *x, int8_t *q, float *dxv, int32_t *bias, uint64_t nblk, int q4,
			int xu);
	float (*dot)(const float *a, const float *b, uint64_t n);
	void (*axpy)(float *y, float a, const float *x, uint64_t n);
};

static float dot_port(const float *a, const float *b, uint64_t n);
static void axpy_port(float *y, float a, const float *x, uint64_t n);

/*
 * One activation row to int8 blocks: d = amax/127 kept in f32 (not rounded
 * to f16 as weights are), q = x/d rounded to nearest even.
 */
static void quant_x_port(const float *x, int8_t *q, float *dxv, int32_t *bias, uint64_t nblk,
			 int q4, int xu)
{
	(void)xu; /* only the VNNI path asks for x + 128 */
	for (uint64_t b = 0; b < nblk; b++) {
		const float *xb = x + b * QK;
		float amax = 0, d, id;
		int32_t s = 0;

		for (int j = 0; j < QK; j++)
			amax = fmaxf(amax, fabsf(xb[j]));
		d = amax / 127;
		id = d != 0 ? 127 / amax : 0.0f;
		for (int j = 0; j < QK; j++) {
			/* lrintf: current rounding (nearest even), and defined for NaN input */
			int v = (int)lrintf(xb[j] * id);

			q[b * QK + j] = (int8_t)v;
			s += v;
		}
		for (int l = 0; l < 8; l++) {
			dxv[b * 8 + l] = d;
			bias[b * 8 + l] = q4 ? -s : 0;
		}
	}
}

/* Portable: exact integer dot per block, f32 sum of scaled blocks. */
static float dot_q8_port(const uint8_t *w, const int8_t *q, const float *dxv, uint64_t nblk)
{
	float sum = 0;

	for (uint64_t b = 0; b < nblk; b++, w += Q8_BYTES) {
		int32_t s = 0;

		for (int j = 0; j < QK; j++)
			s += (int8_t)w[2 + j] * q[b * QK + j];
		sum += (float)s * (rd_f16(w) * dxv[b * 8]);
	}
	return sum;
}

static float dot_q4_port(const uint8_t *w, const int8_t *q, const float *dxv, uint64_t nblk)
{
	float sum = 0;

	for (uint64_t b = 0; b < nblk; b++, w += Q4_BYTES) {
		int32_t s = 0;

		for (int j = 0; j < QK / 2; j++) {
			s += ((w[2 + j] & 0xf) - 8) * q[b * QK + j];
			s += ((w[2 + j] >> 4) - 8) * q[b * QK + QK / 2 + j];
		}
		sum += (float)s * (rd_f16(w) * dxv[b * 8]);
	}
	return sum;
}

static void rows_q_port(const struct mm_job *j, uint64_t r0, uint64_t r1)
{
	const struct xq *xq = j->xq;

	for (uint64_t r = r0; r < r1; r++) {
		const uint8_t *w = j->w + r * j->rb;

		for (int a = 0; a < j->nb; a++) {
			const int8_t *q = xq->q + (uint64_t)a * j->k;
			const float *dxv = xq->dxv + (uint64_t)a * xq->nblk * 8;

			j->y[(uint64_t)a * j->rows + r] = j->type == KERN_Q8_0
							      ? dot_q8_port(w, q, dxv, xq->nblk)
							      : dot_q4_port(w, q, dxv, xq->nblk);
		}
	}
}

/* Float weights: convert a chunk of the row once, use it for every activation. */
static void rows_f_port(const struct mm_job *j, uint64_t r0, uint64_t r1)
{
	float buf[256];

	for (uint64_t r = r0; r < r1; r++) {
		const uint8_t *w = j->w + r * j->rb;
		float acc[16];
		int nb = j->nb;

		for (int a0 = 0; a0 < nb; a0 += 16) {
			int na = nb - a0 < 16 ? nb - a0 : 16;

			memset(acc, 0, sizeof(acc));
			for (uint64_t c = 0; c < j->k; c += 256) {
				uint64_t n = j->k - c < 256 ? j->k - c : 256;
				uint64_t off = c * (j->type == KERN_F32 ? 4 : 2);

				kern_dequant_row(j->type, w + off, buf, n);
				for (int a = 0; a < na; a++) {
					const float *x = j->x + (uint64_t)(a0 + a) * j->k + c;
					float s = 0;

					for (uint64_t i = 0; i < n; i++)
						s += buf[i] * x[i];
					acc[a] += s;
				}
			}
			for (int a = 0; a < na; a++)
				j->y[(uint64_t)(a0 + a) * j->rows + r] = acc[a];
		}
	}
}

static int port_supported(void)
{
	return 1;
}

static const struct kpath path_port = {
    "portable", port_supported, 0, rows_q_port, rows_f_port, quant_x_port, dot_port, axpy_port,
};

#if defined(__x86_64__)
/* F(n) with n the constant equal to na (1..4): the row kernels unroll for each. */
#define KERN_NA(na, F)              \
	do {                        \
		if ((na) == 1)      \
			F(1);       \
		else if ((na) == 2) \
			F(2);       \
		else if ((na) == 3) \
			F(3);       \
		else                \
			F(4);       \
	} while (0)

/* ---- x86 paths ---- */

#define KERN_TEMPLATE
#define KV 1
#define KN(x) x##_avx512
#define KTGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#include "llm/kern.c"
#define KV 0
#define KN(x) x##_avx512bw
#define KTGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#include "llm/kern.c"
#undef KERN_TEMPLATE

#define A2 __attribute__((target("avx2,fma,f16c")))

static A2 inline float hsum256(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* The f16 scale of a block, broadcast, with F16C (exact, as rd_f16). */
static A2 inline __m256 scale1_avx2(const uint8_t *b)
{
	uint16_t h;

	memcpy(&h, b, 2);
	return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

/* Q8_0, one block at a time in 256 bits; maddubs needs an unsigned operand, see the top. */
static A2 inline __attribute__((always_inline)) void
row_q8_avx2(const uint8_t *w, const struct xq *xq, uint64_t k, int a0, int na, float *out)
{
	__m256 acc[4];
	uint64_t nblk = xq->nblk;
	const __m256i ones = _mm256_set1_epi16(1);

	for (int a = 0; a < 4; a++)
		acc[a] = _mm256_setzero_ps();
	for (uint64_t b = 0; b < nblk; b++) {
		const uint8_t *blk = w + b * Q8_BYTES;
		__m256i sg = _mm256_loadu_si256((const void *)(blk + 2));
		__m256i wv = _mm256_sign_epi8(sg, sg);
		__m256 ws = scale1_avx2(blk);

#pragma GCC unroll 4
		for (int a = 0; a < na; a++) {
			uint64_t o = (uint64_t)(a0 + a) * nblk * 8 + b * 8;
			__m256i xv = _mm256_loadu_si256(
			    (const void *)(xq->q + (uint64_t)(a0 + a) * k + b * QK));
			__m256i iv;

			xv = _mm256_sign_epi8(xv, sg);
			iv = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), ones);
			acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iv),
						 _mm256_mul_ps(ws, _mm256_loadu_ps(xq->dxv + o)),
						 acc[a]);
		}
	}
#pragma GCC unroll 4
	for (int a = 0; a < na; a++)
		out[a] = hsum256(acc[a]);
}

/*
 * Q4_0 blocks p, p + 1 against na activation rows in the group layout (see
 * the top): low nibbles meet the low halves, high nibbles the high halves,
 * and the two maddubs add in 16 bits (|sum| <= 4 * 15 * 127, no saturation).
 */
static A2 inline __attribute__((always_inline)) void
q4_pair_avx2(const uint8_t *w, uint64_t p, const int8_t *const *xq, const float *const *dx,
	     const int32_t *const *bs, int na, __m256 *acc)
{
	const uint8_t *b0 = w + p * Q4_BYTES;
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256i v =
	    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)(b0 + 2))),
				    _mm_loadu_si128((const void *)(b0 + Q4_BYTES + 2)), 1);
	__m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
	uint16_t h0, h1;
	__m256 ws;

	memcpy(&h0, b0, 2);
	memcpy(&h1, b0 + Q4_BYTES, 2);
	ws = _mm256_permutevar8x32_ps(
	    _mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h0 | (uint32_t)h1 << 16)))),
	    _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
#pragma GCC unroll 4
	for (int a = 0; a < na; a++) {
		__m256i t = _mm256_add_epi16(
		    _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const void *)(xq[a] + p * QK))),
		    _mm256_maddubs_epi16(hi,
					 _mm256_loadu_si256((const void *)(xq[a] + p * QK + 32))));
		__m256i iv = _mm256_add_epi32(_mm256_madd_epi16(t, _mm256_set1_epi16(1)),
					      _mm256_loadu_si256((const void *)(bs[a] + p * 8)));

		acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iv),
					 _mm256_mul_ps(ws, _mm256_loadu_ps(dx[a] + p * 8)), acc[a]);
	}
}

static A2 inline __attribute__((always_inline)) void
row_q4_avx2(const uint8_t *w, const struct xq *xq, uint64_t k, int a0, int na, float *out)
{
	__m256 acc[4], acc2[4];
	uint64_t nblk = xq->nblk, p = 0;
	const int8_t *xr[4];
	const float *dx[4];
	const int32_t *bs[4];

	for (int a = 0; a < 4; a++)
		acc[a] = acc2[a] = _mm256_setzero_ps();
#pragma GCC unroll 4
	for (int a = 0; a < na; a++) {
		xr[a] = xq->q + (uint64_t)(a0 + a) * k;
		dx[a] = xq->dxv + (uint64_t)(a0 + a) * nblk * 8;
		bs[a] = xq->bias + (uint64_t)(a0 + a) * nblk * 8;
	}
	/* two accumulator sets: the FMA latency must not bound the loop */
	for (; p + 4 <= nblk; p += 4) {
		q4_pair_avx2(w, p, xr, dx, bs, na, acc);
		q4_pair_avx2(w, p + 2, xr, dx, bs, na, acc2);
	}
	if (p + 2 <= nblk) {
		q4_pair_avx2(w, p, xr, dx, bs, na, acc);
		p += 2;
	}
	if (p < nblk) { /* odd block count: the last block alone, plain layout */
		const uint8_t *b0 = w + p * Q4_BYTES;
		__m128i v = _mm_loadu_si128((const void *)(b0 + 2));
		__m256i wv = _mm256_and_si256(
		    _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
		    _mm256_set1_epi8(0x0f));
		__m256 ws = scale1_avx2(b0);

#pragma GCC unroll 4
		for (int a = 0; a < na; a++) {
			__m256i iv = _mm256_madd_epi16(
			    _mm256_maddubs_epi16(
				wv, _mm256_loadu_si256((const void *)(xr[a] + p * QK))),
			    _mm256_set1_epi16(1));

			iv =
			    _mm256_add_epi32(iv, _mm256_loadu_si256((const void *)(bs[a] + p * 8)));
			acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iv),
						 _mm256_mul_ps(ws, _mm256_loadu_ps(dx[a] + p * 8)),
						 acc[a]);
		}
	}
#pragma GCC unroll 4
	for (int a = 0; a < na; a++)
		out[a] = hsum256(_mm256_add_ps(acc[a], acc2[a]));
}

static A2 void rows_q_avx2(const struct mm_job *j, uint64_t r0, uint64_t r1)
{
	float o[4] = {0};

	for (uint64_t t = r0; t < r1; t += 16) {
		uint64_t te = t + 16 < r1 ? t + 16 : r1;

		for (int a0 = 0; a0 < j->nb; a0 += 4) {
			int na = j->nb - a0 < 4 ? j->nb - a0 : 4;

			for (uint64_t r = t; r < te; r++) {
				const uint8_t *w = j->w + r * j->rb;

#define Q8(N) row_q8_avx2(w, j->xq, j->k, a0, N, o)
#define Q4(N) row_q4_avx2(w, j->xq, j->k, a0, N, o)
				if (j->type == KERN_Q8_0)
					KERN_NA(na, Q8);
				else
					KERN_NA(na, Q4);
#undef Q8
#undef Q4
#pragma GCC unroll 4
				for (int a = 0; a < na; a++)
					j->y[(uint64_t)(a0 + a) * j->rows + r] = o[a];
			}
		}
	}
}

static A2 inline __m256 load_w_avx2(uint32_t type, const uint8_t *w, uint64_t i)
{
	if (type == KERN_F32)
		return _mm256_loadu_ps((const float *)w + i);
	if (type == KERN_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + 2 * i)));
	return _mm256_castsi256_ps(_mm256_slli_epi32(
	    _mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)(w + 2 * i))), 16));
}

static A2 inline __attribute__((always_inline)) void
row_f_avx2(uint32_t type, const uint8_t *w, const float *x, uint64_t k, int na, float *out)
{
	__m256 acc[4], acc2[4];
	float tail[4] = {0};
	uint64_t i = 0;

	for (int a = 0; a < 4; a++)
		acc[a] = acc2[a] = _mm256_setzero_ps();
	for (; i + 16 <= k; i += 16) {
		__m256 w0 = load_w_avx2(type, w, i), w1 = load_w_avx2(type, w, i + 8);

#pragma GCC unroll 4
		for (int a = 0; a < na; a++) {
			acc[a] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + a * k + i), acc[a]);
			acc2[a] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + a * k + i + 8), acc2[a]);
		}
	}
	for (; i < k; i++) {
		float wf;

		kern_dequant_row(type, w + i * (type == KERN_F32 ? 4 : 2), &wf, 1);
#pragma GCC unroll 4
		for (int a = 0; a < na; a++)
			tail[a] += wf * x[a * k + i];
	}
#pragma GCC unroll 4
	for (int a = 0; a < na; a++)
		out[a] = hsum256(_mm256_add_ps(acc[a], acc2[a])) + tail[a];
}

static A2 void rows_f_avx2(const struct mm_job *j, uint64_t r0, uint64_t r1)
{
	float o[4] = {0};

	for (uint64_t t = r0; t < r1; t += 16) {
		uint64_t te = t + 16 < r1 ? t + 16 : r1;

		for (int a0 = 0; a0 < j->nb; a0 += 4) {
			int na = j->nb - a0 < 4 ? j->nb - a0 : 4;
			const float *x = j->x + (uint64_t)a0 * j->k;

			for (uint64_t r = t; r < te; r++) {
				const uint8_t *w = j->w + r * j->rb;

#define F32(N) row_f_avx2(KERN_F32, w, x, j->k, N, o)
#define F16(N) row_f_avx2(KERN_F16, w, x, j->k, N, o)
#define BF16(N) row_f_avx2(KERN_BF16, w, x, j->k, N, o)
				if (j->type == KERN_F32)
					KERN_NA(na, F32);
				else if (j->type == KERN_F16)
					KERN_NA(na, F16);
				else
					KERN_NA(na, BF16);
#undef F32
#undef F16
#undef BF16
				for (int a = 0; a < na; a++)
					j->y[(uint64_t)(a0 + a) * j->rows + r] = o[a];
			}
		}
	}
}

static A2 void quant_x_avx2(const float *x, int8_t *q, float *dxv, int32_t *bias, uint64_t nblk,
			    int q4, int xu)
{
	const __m256 sgn = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	uint64_t grouped = q4 ? nblk & ~(uint64_t)1 : 0; /* blocks in Q4_0 groups of 2 */

	(void)xu; /* only the VNNI path asks for x + 128 */
	for (uint64_t b = 0; b < nblk; b++) {
		__m256 v[4], m;
		__m128 h;
		__m256i iv[4], s, p8;
		float amax, d, id;
		int32_t sum;

		for (int l = 0; l < 4; l++)
			v[l] = _mm256_loadu_ps(x + b * QK + l * 8);
		m = _mm256_max_ps(
		    _mm256_max_ps(_mm256_and_ps(v[0], sgn), _mm256_and_ps(v[1], sgn)),
		    _mm256_max_ps(_mm256_and_ps(v[2], sgn), _mm256_and_ps(v[3], sgn)));
		h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
		h = _mm_max_ps(h, _mm_movehl_ps(h, h));
		h = _mm_max_ss(h, _mm_movehdup_ps(h));
		amax = _mm_cvtss_f32(h);
		d = amax / 127;
		id = d != 0 ? 127 / amax : 0.0f;
		for (int l = 0; l < 4; l++)
			iv[l] = _mm256_cvtps_epi32(_mm256_mul_ps(v[l], _mm256_set1_ps(id)));
		s = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]),
				     _mm256_add_epi32(iv[2], iv[3]));
		/* packs interleave 128-bit lanes; the permute puts the bytes back in order */
		p8 = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]),
					_mm256_packs_epi32(iv[2], iv[3]));
		p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
		{
			__m128i t = _mm_add_epi32(_mm256_castsi256_si128(s),
						  _mm256_extracti128_si256(s, 1));

			t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
			t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
			sum = _mm_cvtsi128_si32(t);
		}
		if (b < grouped) { /* see the top: halves of the group's blocks, 4 lanes each */
			uint64_t g = b & ~(uint64_t)1, i = b - g;

			_mm_storeu_si128((void *)(q + g * QK + i * 16), _mm256_castsi256_si128(p8));
			_mm_storeu_si128((void *)(q + g * QK + 32 + i * 16),
					 _mm256_extracti128_si256(p8, 1));
			_mm_storeu_ps(dxv + g * 8 + i * 4, _mm_set1_ps(d));
			_mm_storeu_si128((void *)(bias + g * 8 + i * 4), _mm_set1_epi32(-2 * sum));
		} else {
			_mm256_storeu_si256((void *)(q + b * QK), p8);
			_mm256_storeu_ps(dxv + b * 8, _mm256_set1_ps(d));
			_mm256_storeu_si256((void *)(bias + b * 8),
					    _mm256_set1_epi32(q4 ? -sum : 0));
		}
	}
}

static A2 float dot_avx2(const float *a, const float *b, uint64_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	float t = 0;
	uint64_t i = 0;

	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	for (; i < n; i++)
		t += a[i] * b[i];
	return hsum256(_mm256_add_ps(s0, s1)) + t;
}

static A2 void axpy_avx2(float *y, float a, const float *x, uint64_t n)
{
	__m256 va = _mm256_set1_ps(a);
	uint64_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(
		    y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += a * x[i];
}

static int avx2_supported(void)
{
	/* clang's __builtin_cpu_supports does not know "f16c": ask cpuid (leaf 1, ecx bit 29) */
	unsigned a, b, c, d;

	__builtin_cpu_init();
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29)))
		return 0;
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int avx512bw_supported(void)
{
	__builtin_cpu_init();
	return avx2_supported() && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("avx512dq");
}

static int avx512_supported(void)
{
	return avx512bw_supported() && __builtin_cpu_supports("avx512vnni");
}

static const struct kpath path_avx512 = {
    "avx512",	   avx512_supported, 1,		 rows_q_avx512,
    rows_f_avx512, quant_x_avx512,   dot_avx512, axpy_avx512,
};
static const struct kpath path_avx512bw = {
    "avx512bw",	  avx512bw_supported, 0, rows_q_avx512bw, rows_f_avx512bw, quant_x_avx512bw,
    dot_avx512bw, axpy_avx512bw,
};
static const struct kpath path_avx2 = {
    "avx2", avx2_supported, 0, rows_q_avx2, rows_f_avx2, quant_x_avx2, dot_avx2, axpy_avx2,
};
#endif /* __x86_64__ */

static const struct kpath *paths[] = {
#if defined(__x86_64__)
    &path_avx512,
    &path_avx512bw,
    &path_avx2,
#endif
    &path_port,
};

static _Atomic(const struct kpath *) cur_path;

static const struct kpath *path_pick(void)
{
	const struct kpath *p = atomic_load_explicit(&cur_path, memory_order_acquire);
	const char *want;

	if (p)
		return p;
	want = getenv("CIEL_LLM_KERNEL");
	if (want && *want && kern_set_path(want) == 0)
		return atomic_load(&cur_path);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (paths[i]->supported()) {
			p = paths[i];
			break;
		}
	}
	atomic_store(&cur_path, p);
	return p;
}

int kern_set_path(const char *name)
{
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (strcmp(paths[i]->name, name))
			continue;
		if (!paths[i]->supported())
			return -1;
		atomic_store(&cur_path, paths[i]);
		return 0;
	}
	return -1;
}

const char *kern_path(void)
{
	return path_pick()->name;
}

const char *const *kern_paths(void)
{
	static const char *names[sizeof(paths) / sizeof(paths[0]) + 1];

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		names[i] = paths[i]->name;
	return names;
}

struct mm_ctx {
	const struct kpath *kp;
	struct mm_job job;
	/* activation quantisation, split over the threads too for big batches */
	const float *x;
	int qx;
};

#define ROW_ALIGN 16

static void mm_task(void *arg, int i, int n)
{
	struct mm_ctx *c = arg;
	const struct mm_job *j = &c->job;
	uint64_t units = (j->rows + ROW_ALIGN - 1) / ROW_ALIGN;
	uint64_t r0 = units * (uint64_t)i / (uint64_t)n * ROW_ALIGN;
	uint64_t r1 = units * (uint64_t)(i + 1) / (uint64_t)n * ROW_ALIGN;

	if (r1 > j->rows)
		r1 = j->rows;
	if (r0 >= r1)
		return;
	if (c->qx)
		c->kp->rows_q(j, r0, r1);
	else
		c->kp->rows_f(j, r0, r1);
}

struct qx_ctx {
	const struct kpath *kp;
	const float *x;
	const struct xq *xq;
	uint64_t k;
	int nb, q4, xu;
};

static void qx_task(void *arg, int i, int n)
{
	struct qx_ctx *c = arg;
	int a0 = c->nb * i / n, a1 = c->nb * (i + 1) / n;

	for (int a = a0; a < a1; a++)
		c->kp->quant_x(c->x + (uint64_t)a * c->k, c->xq->q + (uint64_t)a * c->k,
			       c->xq->dxv + (uint64_t)a * c->xq->nblk * 8,
			       c->xq->bias + (uint64_t)a * c->xq->nblk * 8, c->xq->nblk, c->q4,
			       c->xu);
}

void kern_matmul(struct kern_pool *p, uint32_t wtype, const void *w, uint64_t rows, uint64_t k,
		 const float *x, int nb, float *y)
{
	struct mm_ctx c = {0};
	struct xq xq;
	void *own = NULL;
	uint64_t rb = kern_row_bytes(wtype, k);

	if (!kern_type_ok(wtype) || !rb || nb < 0)
		BUG("kern: matmul of type %u with k=%llu nb=%d", wtype, (unsigned long long)k, nb);
	if (nb == 0 || rows == 0)
		return;
	c.kp = path_pick();
	c.job = (struct mm_job){wtype, w, rows, k, rb, x, NULL, nb, y};
	if (wtype == KERN_Q8_0 || wtype == KERN_Q4_0) {
		uint64_t nblk = k / QK;
		size_t qb = ((size_t)nb * k + 63) & ~(size_t)63;
		size_t vb = (size_t)nb * nblk * 8 * 4;
		uint8_t *s = scratch_get(p, qb + 2 * vb, &own);
		struct qx_ctx qc = {
		    c.kp, x, &xq, k, nb, wtype == KERN_Q4_0, wtype == KERN_Q8_0 && c.kp->q8_xu};

		xq = (struct xq){(int8_t *)s, (float *)(s + qb), (int32_t *)(s + qb + vb), nblk};
		/* a few µs for one row; for a prefill batch worth sharing */
		if (nb >= 4 && p)
			kern_pool_run(p, qx_task, &qc);
		else
			qx_task(&qc, 0, 1);
		c.job.xq = &xq;
		c.qx = 1;
	}
	kern_pool_run(p, mm_task, &c);
	free(own);
}

/* ---- vector helpers ---- */

void kern_rmsnorm(float *out, const float *x, const float *w, uint64_t n, float eps)
{
	double ss = 0;
	float s;

	for (uint64_t i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	s = (float)(1.0 / sqrt(ss / (double)n + eps));
	for (uint64_t i = 0; i < n; i++)
		out[i] = x[i] * s * w[i];
}

void kern_softmax(float *x, uint64_t n)
{
	float max = -INFINITY, sum = 0;

	for (uint64_t i = 0; i < n; i++)
		max = fmaxf(max, x[i]);
	for (uint64_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	for (uint64_t i = 0; i < n; i++)
		x[i] /= sum;
}

void kern_swiglu(float *out, const float *gate, const float *up, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static float dot_port(const float *a, const float *b, uint64_t n)
{
	float s[8] = {0};
	uint64_t i = 0;

	/* 8 partial sums: the compiler vectorises, and rounding grows slower */
	for (; i + 8 <= n; i += 8)
		for (int l = 0; l < 8; l++)
			s[l] += a[i + l] * b[i + l];
	for (; i < n; i++)
		s[0] += a[i] * b[i];
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void axpy_port(float *y, float a, const float *x, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

/* Attention runs these over the KV cache: the vector paths pay at long contexts. */
float kern_dot_f32(const float *a, const float *b, uint64_t n)
{
	return path_pick()->dot(a, b, n);
}

void kern_axpy_f32(float *y, float a, const float *x, uint64_t n)
{
	path_pick()->axpy(y, a, x, n);
}

#else /* KERN_TEMPLATE: the AVX-512 kernels, compiled once with VNNI and once without */
/* [d0 × 8, d1 × 8] from the f16 scales of two blocks */
static KTGT inline __m512 KN(pair_scale)(const uint8_t *b0, const uint8_t *b1)
{
	uint16_t h0, h1;
	__m128 f;

	memcpy(&h0, b0, 2);
	memcpy(&h1, b1, 2);
	f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
	return _mm512_permutexvar_ps(
	    _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
	    _mm512_castps128_ps512(f));
}

/* word indexes of block scales in a 64-byte window: 2 Q8_0 blocks, 4 Q4_0 blocks */
static const uint16_t KN(q8_sidx)[32] = {0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17};
static const uint16_t KN(q4_sidx)[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};

/*
 * Scale vectors of Q8_0 blocks p..p+3 (see pair_scale) with one word permute
 * per 64 bytes of row instead of scalar loads: a 64-byte window at block p
 * holds the scales of 2 blocks (34 bytes each). The caller guarantees the 4
 * blocks exist, so every window stays in the row.
 */
static KTGT inline __attribute__((always_inline)) void KN(quad_scale)(const uint8_t *w, uint64_t p,
								      __m512 *ws)
{
	__m512i idx = _mm512_loadu_si512((const void *)KN(q8_sidx));

	for (int i = 0; i < 2; i++) {
		__m512i v = _mm512_loadu_si512((const void *)(w + (p + 2 * i) * Q8_BYTES));

		ws[i] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, v)));
	}
}

/*
 * Q8_0 blocks p and p+1 of a weight row against na activation rows: the
 * weights are loaded once into 64 bytes and a scale vector, then each
 * activation costs one dot, one convert and two float ops.
 *
 * VNNI multiplies unsigned by signed bytes. There the activations are the
 * unsigned side, stored as x + 128, and the weights stay signed; the dot
 * then holds 128 * sum(w) too much, and that term, shared by every
 * activation, starts the accumulator negated. Without VNNI, maddubs
 * saturates 16-bit pair sums, so the weights are the unsigned side: |w|
 * against x with w's sign.
 */
static KTGT inline __attribute__((always_inline)) void KN(pair_q8)(const uint8_t *w, uint64_t p,
								   const struct xrow *x, int na,
								   __m512 *acc, const __m512 *wsp)
{
	const uint8_t *b0 = w + p * Q8_BYTES, *b1 = b0 + Q8_BYTES;
	__m512i wv =
	    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void *)(b0 + 2))),
			       _mm256_loadu_si256((const void *)(b1 + 2)), 1);
	__m512 ws = wsp ? *wsp : KN(pair_scale)(b0, b1);
#if KV
	__m512i base = _mm512_sub_epi32(
	    _mm512_setzero_si512(),
	    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), wv));
#else
	__mmask64 neg = _mm512_movepi8_mask(wv);

	wv = _mm512_abs_epi8(wv);
#endif
#pragma GCC unroll 4
	for (int a = 0; a < na; a++) {
		__m512i xv = _mm512_loadu_si512((const void *)(x[a].q + p * QK)), iv;
		__m512 s = _mm512_mul_ps(ws, _mm512_loadu_ps(x[a].dx + p * 8));

#if KV
		iv = _mm512_dpbusd_epi32(base, xv, wv);
#else
		xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
		iv = _mm512_madd_epi16(_mm512_maddubs_epi16(wv, xv), _mm512_set1_epi16(1));
#endif
		acc[a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iv), s, acc[a]);
	}
}

/*
 * Q4_0 blocks p..p+3, a group (see the top), against na activation rows:
 * four 16-byte loads, an and and a shift give the 128 nibbles in the order
 * the activations were stored in; the 4 scales come from one 64-byte window
 * (18-byte blocks) and one word permute. Each activation then costs two
 * dots, one convert and two float ops for 128 elements. The nibbles are
 * the unsigned side (VNNI or maddubs), the xq bias takes 8 * sum(x) back;
 * maddubs cannot saturate here (|pair| <= 2 * 15 * 127, twice that summed).
 */
static KTGT inline __attribute__((always_inline)) void
KN(group_q4)(const uint8_t *w, uint64_t p, const struct xrow *x, int na, __m512 *acc)
{
	const uint8_t *b = w + p * Q4_BYTES;
	const __m512i m4 = _mm512_set1_epi8(0x0f);
	__m256i v01 =
	    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)(b + 2))),
				    _mm_loadu_si128((const void *)(b + Q4_BYTES + 2)), 1);
	__m256i v23 = _mm256_inserti128_si256(
	    _mm256_castsi128_si256(_mm_loadu_si128((const void *)(b + 2 * Q4_BYTES + 2))),
	    _mm_loadu_si128((const void *)(b + 3 * Q4_BYTES + 2)), 1);
	__m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(v01), v23, 1);
	__m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
	__m512 ws = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(
	    _mm512_loadu_si512((const void *)KN(q4_sidx)), _mm512_loadu_si512((const void *)b))));

#pragma GCC unroll 4
	for (int a = 0; a < na; a++) {
		const int8_t *xq = x[a].q + p * QK;
		__m512i iv = _mm512_loadu_si512((const void *)(x[a].bs + p * 8));

#if KV
		iv = _mm512_dpbusd_epi32(iv, lo, _mm512_loadu_si512((const void *)xq));
		iv = _mm512_dpbusd_epi32(iv, hi, _mm512_loadu_si512((const void *)(xq + 64)));
#else
		iv = _mm512_add_epi32(
		    iv,
		    _mm512_madd_epi16(
			_mm512_add_epi16(
			    _mm512_maddubs_epi16(lo, _mm512_loadu_si512((const void *)xq)),
			    _mm512_maddubs_epi16(hi, _mm512_loadu_si512((const void *)(xq + 64)))),
			_mm512_set1_epi16(1)));
#endif
		acc[a] =
		    _mm512_fmadd_ps(_mm512_cvtepi32_ps(iv),
				    _mm512_mul_ps(ws, _mm512_loadu_ps(x[a].dx + p * 8)), acc[a]);
	}
}

/* Block p alone, in 256 bits and the plain layout: the tail of a row. */
static KTGT inline __attribute__((always_inline)) void
KN(one_q)(uint32_t type, const uint8_t *w, uint64_t p, const struct xrow *x, int na, __m512 *acc)
{
	const uint8_t *b0;
	__m256i wv;
	__m256 ws;
#if KV
	__m256i base = _mm256_setzero_si256();
#else
	__m256i sg = _mm256_setzero_si256();
#endif

	if (type == KERN_Q8_0) {
		b0 = w + p * Q8_BYTES;
		wv = _mm256_loadu_si256((const void *)(b0 + 2));
#if KV
		base = _mm256_sub_epi32(
		    _mm256_setzero_si256(),
		    _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), wv));
#else
		sg = wv;
		wv = _mm256_abs_epi8(wv);
#endif
	} else {
		__m128i v;

		b0 = w + p * Q4_BYTES;
		v = _mm_loadu_si128((const void *)(b0 + 2));
		wv = _mm256_and_si256(
		    _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
		    _mm256_set1_epi8(0x0f));
	}
	ws = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(b0[0] | b0[1] << 8)));
#pragma GCC unroll 4
	for (int a = 0; a < na; a++) {
		__m256i xv = _mm256_loadu_si256((const void *)(x[a].q + p * QK)), iv;
		__m256 s = _mm256_mul_ps(ws, _mm256_loadu_ps(x[a].dx + p * 8));
		__m256 r;

#if KV
		if (type == KERN_Q8_0)
			iv = _mm256_dpbusd_epi32(base, xv, wv);
		else
			iv = _mm256_dpbusd_epi32(
			    _mm256_loadu_si256((const void *)(x[a].bs + p * 8)), wv, xv);
#else
		if (type == KERN_Q8_0) {
			xv = _mm256_sign_epi8(xv, sg);
			iv = _mm256_setzero_si256();
		} else {
			iv = _mm256_loadu_si256((const void *)(x[a].bs + p * 8));
		}
		iv = _mm256_add_epi32(
		    iv, _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), _mm256_set1_epi16(1)));
#endif
		r = _mm256_mul_ps(_mm256_cvtepi32_ps(iv), s);
		acc[a] = _mm512_add_ps(acc[a], _mm512_zextps256_ps512(r));
	}
}

/*
 * One weight row against na (1..4, a constant after inlining) activation
 * rows, in one pass over the row's blocks. Two sets of accumulators so the
 * FMA latency does not bound a single activation.
 */
static KTGT inline __attribute__((always_inline)) void KN(row_q)(uint32_t type, const uint8_t *w,
								 const struct xq *xq, uint64_t k,
								 int a0, int na, float *out)
{
	__m512 acc[4], acc2[4];
	uint64_t nblk = xq->nblk, p = 0;
	struct xrow x[4];

	for (int a = 0; a < 4; a++)
		acc[a] = acc2[a] = _mm512_setzero_ps();
#pragma GCC unroll 4
	for (int a = 0; a < na; a++) {
		x[a].q = xq->q + (uint64_t)(a0 + a) * k;
		x[a].dx = xq->dxv + (uint64_t)(a0 + a) * nblk * 8;
		x[a].bs = xq->bias + (uint64_t)(a0 + a) * nblk * 8;
	}
	if (type == KERN_Q8_0) {
		for (; p + 4 <= nblk; p += 4) {
			__m512 ws[2];

			KN(quad_scale)(w, p, ws);
			KN(pair_q8)(w, p, x, na, acc, &ws[0]);
			KN(pair_q8)(w, p + 2, x, na, acc2, &ws[1]);
		}
		if (p + 2 <= nblk) {
			KN(pair_q8)(w, p, x, na, acc, NULL);
			p += 2;
		}
	} else {
		for (; p + 8 <= nblk; p += 8) {
			KN(group_q4)(w, p, x, na, acc);
			KN(group_q4)(w, p + 4, x, na, acc2);
		}
		if (p + 4 <= nblk) {
			KN(group_q4)(w, p, x, na, acc);
			p += 4;
		}
	}
	for (; p < nblk; p++)
		KN(one_q)(type, w, p, x, na, acc2);
#pragma GCC unroll 4
	for (int a = 0; a < na; a++)
		out[a] = _mm512_reduce_add_ps(_mm512_add_ps(acc[a], acc2[a]));
}

static KTGT void KN(rows_q)(const struct mm_job *j, uint64_t r0, uint64_t r1)
{
	float o[4] = {0};

	/* tiles of 16 rows stay in L2 while every group of 4 activations passes */
	for (uint64_t t = r0; t < r1; t += 16) {
		uint64_t te = t + 16 < r1 ? t + 16 : r1;

		for (int a0 = 0; a0 < j->nb; a0 += 4) {
			int na = j->nb - a0 < 4 ? j->nb - a0 : 4;

			for (uint64_t r = t; r < te; r++) {
				const uint8_t *w = j->w + r * j->rb;

				/* constant na and type: the compiler unrolls each case */
#define Q8(N) KN(row_q)(KERN_Q8_0, w, j->xq, j->k, a0, N, o)
#define Q4(N) KN(row_q)(KERN_Q4_0, w, j->xq, j->k, a0, N, o)
				if (j->type == KERN_Q8_0)
					KERN_NA(na, Q8);
				else
					KERN_NA(na, Q4);
#undef Q8
#undef Q4
#pragma GCC unroll 4
				for (int a = 0; a < na; a++)
					j->y[(uint64_t)(a0 + a) * j->rows + r] = o[a];
			}
		}
	}
}

/* 16 weights of a float type as f32; m masks a short tail */
static KTGT inline __m512 KN(load_w)(uint32_t type, const uint8_t *w, uint64_t i, __mmask16 m)
{
	if (type == KERN_F32)
		return _mm512_maskz_loadu_ps(m, (const float *)w + i);
	if (type == KERN_F16)
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
	return _mm512_castsi512_ps(_mm512_slli_epi32(
	    _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i)), 16));
}

static KTGT inline __attribute__((always_inline)) void
KN(row_f)(uint32_t type, const uint8_t *w, const float *x, uint64_t k, int na, float *out)
{
	__m512 acc[4], acc2[4];
	uint64_t i = 0;

	for (int a = 0; a < 4; a++)
		acc[a] = acc2[a] = _mm512_setzero_ps();
	/* two accumulators: the FMA latency, not the loads, would bound one */
	for (; i + 32 <= k; i += 32) {
		__m512 w0 = KN(load_w)(type, w, i, 0xffff),
		       w1 = KN(load_w)(type, w, i + 16, 0xffff);

#pragma GCC unroll 4
		for (int a = 0; a < na; a++) {
			acc[a] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + a * k + i), acc[a]);
			acc2[a] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + a * k + i + 16), acc2[a]);
		}
	}
	for (; i < k; i += 16) {
		__mmask16 m = k - i >= 16 ? 0xffff : (__mmask16)((1u << (k - i)) - 1);
		__m512 w0 = KN(load_w)(type, w, i, m);

#pragma GCC unroll 4
		for (int a = 0; a < na; a++)
			acc[a] =
			    _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + a * k + i), acc[a]);
	}
#pragma GCC unroll 4
	for (int a = 0; a < na; a++)
		out[a] = _mm512_reduce_add_ps(_mm512_add_ps(acc[a], acc2[a]));
}

static KTGT void KN(rows_f)(const struct mm_job *j, uint64_t r0, uint64_t r1)
{
	float o[4] = {0};

	for (uint64_t t = r0; t < r1; t += 16) {
		uint64_t te = t + 16 < r1 ? t + 16 : r1;

		for (int a0 = 0; a0 < j->nb; a0 += 4) {
			int na = j->nb - a0 < 4 ? j->nb - a0 : 4;
			const float *x = j->x + (uint64_t)a0 * j->k;

			for (uint64_t r = t; r < te; r++) {
				const uint8_t *w = j->w + r * j->rb;

#define F32(N) KN(row_f)(KERN_F32, w, x, j->k, N, o)
#define F16(N) KN(row_f)(KERN_F16, w, x, j->k, N, o)
#define BF16(N) KN(row_f)(KERN_BF16, w, x, j->k, N, o)
				if (j->type == KERN_F32)
					KERN_NA(na, F32);
				else if (j->type == KERN_F16)
					KERN_NA(na, F16);
				else
					KERN_NA(na, BF16);
#undef F32
#undef F16
#undef BF16
#pragma GCC unroll 4
				for (int a = 0; a < na; a++)
					j->y[(uint64_t)(a0 + a) * j->rows + r] = o[a];
			}
		}
	}
}

/* Same arithmetic as quant_x_port, 32 floats at a time. */
static KTGT void KN(quant_x)(const float *x, int8_t *q, float *dxv, int32_t *bias, uint64_t nblk,
			     int q4, int xu)
{
	const __m512 sgn = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
	uint64_t grouped = q4 ? nblk & ~(uint64_t)3 : 0; /* blocks in Q4_0 groups of 4 */

	for (uint64_t b = 0; b < nblk; b++) {
		__m512 x0 = _mm512_loadu_ps(x + b * QK), x1 = _mm512_loadu_ps(x + b * QK + 16);
		float amax = _mm512_reduce_max_ps(
		    _mm512_max_ps(_mm512_and_ps(x0, sgn), _mm512_and_ps(x1, sgn)));
		float d = amax / 127, id = d != 0 ? 127 / amax : 0.0f;
		__m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
		__m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
		int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));

		if (b < grouped) { /* see the top: halves of the group's blocks, 4 lanes each */
			uint64_t g = b & ~(uint64_t)3, i = b - g;

			_mm_storeu_si128((void *)(q + g * QK + i * 16), _mm512_cvtepi32_epi8(i0));
			_mm_storeu_si128((void *)(q + g * QK + 64 + i * 16),
					 _mm512_cvtepi32_epi8(i1));
			_mm_storeu_ps(dxv + g * 8 + i * 4, _mm_set1_ps(d));
			_mm_storeu_si128((void *)(bias + g * 8 + i * 4), _mm_set1_epi32(-2 * s));
			continue;
		}
		if (xu) { /* the unsigned side of VNNI's products: x + 128 (see pair_q8) */
			i0 = _mm512_add_epi32(i0, _mm512_set1_epi32(128));
			i1 = _mm512_add_epi32(i1, _mm512_set1_epi32(128));
		} else if (q4) {
			_mm256_storeu_si256((void *)(bias + b * 8), _mm256_set1_epi32(-s));
		}
		_mm_storeu_si128((void *)(q + b * QK), _mm512_cvtepi32_epi8(i0));
		_mm_storeu_si128((void *)(q + b * QK + 16), _mm512_cvtepi32_epi8(i1));
		_mm256_storeu_ps(dxv + b * 8, _mm256_set1_ps(d));
	}
}

static KTGT float KN(dot)(const float *a, const float *b, uint64_t n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	uint64_t i = 0;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
	}
	for (; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);

		s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
				     _mm512_maskz_loadu_ps(m, b + i), s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static KTGT void KN(axpy)(float *y, float a, const float *x, uint64_t n)
{
	__m512 va = _mm512_set1_ps(a);

	for (uint64_t i = 0; i < n; i += 16) {
		__mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(y + i, m,
				      _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i),
						      _mm512_maskz_loadu_ps(m, y + i)));
	}
}

#undef KV
#undef KN
#undef KTGT
#endif /* KERN_TEMPLATE */
