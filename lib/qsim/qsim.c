/*
 * qsim — the state vector and its kernels.
 *
 * Layout: 2^n complex amplitudes, interleaved (re, im), 64-byte aligned, on
 * transparent huge pages when large. A kernel sees the state as an array of
 * SIMD vectors of C = 2^LB complex amplitudes; qubits below LB live inside a
 * vector ("lane" qubits), the others select vectors ("high" qubits).
 *
 * One gate = one pass over the vectors it touches. For a k-target matrix the
 * high targets pick 2^kh vectors of a group; the lane targets are handled by
 * permuting lanes of each loaded vector (2^L permutations, L = k - kh) and
 * multiplying by per-lane coefficients, so every target position runs at
 * SIMD speed. Controls on high qubits are never visited: the group counter
 * walks only the free bits. Controls on lane qubits fold into the
 * coefficients (identity on the lanes they do not select).
 *
 * The kernels are written once with GCC vector extensions and instantiated
 * per family (portable 16-byte vectors, AVX2, AVX-512) and precision by
 * including this file into itself with QSIM_TEMPLATE set; the families are
 * chosen at run time with __builtin_cpu_supports.
 *
 * Threads: a persistent pool made at qsim_new splits the group range; the
 * calling thread is worker 0. Small states run on the caller alone.
 */
#ifndef QSIM_TEMPLATE

#include "qsim/qsim.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* below this many amplitudes a pass runs on the calling thread alone */
#define QSIM_PAR_MIN_AMPS (1u << 14)
/* leaf of the pairwise sums, in vectors */
#define QSIM_SUM_LEAF 512
/* states from this size on are mmap'ed and madvise'd for huge pages */
#define QSIM_HUGE_BYTES (4u << 20)
#define QSIM_HUGE_ALIGN (2u << 20)
/* a cache block: what a run of gates works on while it stays in L2 */
#define QSIM_BLOCK_BYTES (512u << 10)
/* ... gathered from memory in pieces of at least this much */
#define QSIM_CHUNK_BYTES 4096u
/* the scratch a kernel's coefficients need: 2^(2*5 + 1) vectors of 64 bytes */
#define QSIM_SCRATCH_BYTES (2048 * 64 + 64 * 64)

struct qpool {
	pthread_t *th;
	int n; /* workers besides the caller */
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	uint64_t gen;
	int pending, stop;
	void (*fn)(void *arg, int tid, int nth);
	void *arg;
};

struct qsim {
	int nq;
	enum qsim_prec prec;
	int threads;
	void *amp; /* 2^nq complex, (re, im) of double or float */
	void *map; /* what to munmap, or NULL if amp came from aligned_alloc */
	size_t map_bytes;
	void *scratch; /* kernel coefficients, QSIM_SCRATCH_BYTES, 64-aligned */
	struct qpool *pool;
	int nth;      /* threads in the pool, caller included */
	int blk;      /* qubits of a cache block; 0: no blocking */
	void *blkbuf; /* nth blocks of 2^blk amplitudes, for gathered blocks */
};

/*
 * A gate as the kernels see it, prepared once per call (or per cache block)
 * in the vector geometry of one family and precision.
 */
struct kgate {
	int k, kh, uni;		  /* targets, high targets, 1: no lane target or control */
	int real;		  /* every entry real: half the multiplies */
	uint64_t free;		  /* vector-index bits the group counter walks */
	uint64_t ctrl;		  /* vector-index bits that must be 1 */
	uint64_t ngroups;	  /* 2^popcount(free) */
	uint64_t off[32];	  /* vector offset of each high-target pattern */
	int hpos[QSIM_MAX_FUSED]; /* diagonal: vector-index bit of each high target */
	uint64_t run;		  /* diagonal: bits below the lowest high target or control */
	const void *coef;	  /* see prep_dense / prep_diag */
	const void *perm;	  /* 2^L lane permutations (index vectors) */
};

/* What one family provides for one precision. */
struct kfuncs {
	void (*dense)(void *amp, const struct kgate *g, uint64_t gb, uint64_t ge);
	void (*diag)(void *amp, const struct kgate *g, uint64_t gb, uint64_t ge);
	/* sum of w * |v|^2 over n vectors of the free/set walk starting at y */
	double (*sumsq)(const void *amp, uint64_t free, uint64_t set, uint64_t y, uint64_t n,
			const double *w);
};

struct kfamily {
	const char *name;
	int vbytes; /* SIMD vector bytes */
	int (*supported)(void);
	struct kfuncs f[2]; /* [enum qsim_prec] */
};

/* Next value of a counter that only uses the bits of free. */
static inline uint64_t walk_next(uint64_t y, uint64_t free)
{
	return ((y | ~free) + 1) & free;
}

/* The g-th value of that counter: g's bits spread onto free's bits. */
static inline uint64_t walk_at(uint64_t g, uint64_t free)
{
	uint64_t r = 0;

	for (uint64_t m = free; m && g; m &= m - 1, g >>= 1)
		if (g & 1)
			r |= m & -m;
	return r;
}

/* ---- kernel families ---- */

#define QSIM_TEMPLATE 1

#define KT double
#define KI int64_t
#define KB 16
#define KN(x) x##_port_d
#define KTGT
#include "qsim/qsim.c"

#define KT float
#define KI int32_t
#define KB 16
#define KN(x) x##_port_f
#define KTGT
#include "qsim/qsim.c"

#if defined(__x86_64__)
#define KT double
#define KI int64_t
#define KB 32
#define KN(x) x##_avx2_d
#define KTGT __attribute__((target("avx2,fma")))
#include "qsim/qsim.c"

#define KT float
#define KI int32_t
#define KB 32
#define KN(x) x##_avx2_f
#define KTGT __attribute__((target("avx2,fma")))
#include "qsim/qsim.c"

#define KT double
#define KI int64_t
#define KB 64
#define KN(x) x##_avx512_d
#define KTGT __attribute__((target("avx512f")))
#include "qsim/qsim.c"

#define KT float
#define KI int32_t
#define KB 64
#define KN(x) x##_avx512_f
#define KTGT __attribute__((target("avx512f")))
#include "qsim/qsim.c"
#endif

#undef QSIM_TEMPLATE

static int port_supported(void)
{
	return 1;
}

#if defined(__x86_64__)
static int avx2_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int avx512_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
}
#endif

#define FAMILY(nm, vb, sup, sfx)                                                \
	{                                                                       \
		nm, vb, sup,                                                    \
		{                                                               \
			{dense_##sfx##_d, diag_##sfx##_d, sumsq_##sfx##_d},     \
			    {dense_##sfx##_f, diag_##sfx##_f, sumsq_##sfx##_f}, \
		}                                                               \
	}

/* best first */
static const struct kfamily families[] = {
#if defined(__x86_64__)
    FAMILY("avx512", 64, avx512_supported, avx512),
    FAMILY("avx2", 32, avx2_supported, avx2),
#endif
    FAMILY("portable", 16, port_supported, port),
};
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

static const struct kfamily *cur_family;

static const struct kfamily *family(void)
{
	const struct kfamily *f = __atomic_load_n(&cur_family, __ATOMIC_ACQUIRE);

	if (f)
		return f;
	for (size_t i = 0; i < N_FAMILIES; i++)
		if (families[i].supported()) {
			f = &families[i];
			break;
		}
	__atomic_store_n(&cur_family, f, __ATOMIC_RELEASE);
	return f;
}

const char *qsim_kernel_name(void)
{
	return family()->name;
}

int qsim_force_kernel(const char *name)
{
	for (size_t i = 0; i < N_FAMILIES; i++)
		if (strcmp(families[i].name, name) == 0) {
			if (!families[i].supported())
				return -1;
			__atomic_store_n(&cur_family, &families[i], __ATOMIC_RELEASE);
			return 0;
		}
	return -1;
}

/* log2 of the complex amplitudes in one vector of f */
static int family_lb(const struct kfamily *f, enum qsim_prec prec)
{
	int c = f->vbytes / (prec == QSIM_DOUBLE ? 16 : 8);

	return __builtin_ctz((unsigned)c);
}

/*
 * The family a state of nq qubits runs on: the current one, or the portable
 * one when the state is smaller than one of its vectors.
 */
static const struct kfamily *family_for(int nq, enum qsim_prec prec, int *lb)
{
	const struct kfamily *f = family();

	if (family_lb(f, prec) > nq)
		f = &families[N_FAMILIES - 1];
	*lb = family_lb(f, prec);
	return f;
}

/* ---- thread pool ---- */

static void *pool_main(void *arg)
{
	struct qpool *p = ((void **)arg)[0];
	int tid = (int)(intptr_t)((void **)arg)[1];
	uint64_t seen = 0;

	free(arg);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->cv_work, &p->mu);
		if (p->stop)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->mu);
		p->fn(p->arg, tid, p->n + 1);
		pthread_mutex_lock(&p->mu);
		if (--p->pending == 0)
			pthread_cond_signal(&p->cv_done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void pool_free(struct qpool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv_work);
	pthread_cond_destroy(&p->cv_done);
	free(p->th);
	free(p);
}

static struct qpool *pool_new(int nworkers, struct ciel_err *err)
{
	struct qpool *p = calloc(1, sizeof(*p));

	if (!p || !(p->th = calloc((size_t)nworkers, sizeof(*p->th)))) {
		free(p);
		ciel_err_set(err, CIEL_ENOMEM, "qsim: out of memory");
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv_work, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	for (int i = 0; i < nworkers; i++) {
		void **a = malloc(2 * sizeof(*a));
		int rc;

		if (!a) {
			pool_free(p);
			ciel_err_set(err, CIEL_ENOMEM, "qsim: out of memory");
			return NULL;
		}
		a[0] = p;
		a[1] = (void *)(intptr_t)(i + 1);
		rc = pthread_create(&p->th[i], NULL, pool_main, a);
		if (rc) {
			free(a);
			pool_free(p);
			ciel_err_sys(err, CIEL_EUNAVAIL, rc, "qsim: start %d threads", nworkers);
			return NULL;
		}
		p->n++;
	}
	return p;
}

/* Run fn on every thread of s (the caller is tid 0) and wait for all. */
static void run_par(struct qsim *s, uint64_t amps, void (*fn)(void *, int, int), void *arg)
{
	struct qpool *p = s->pool;

	if (!p || amps < QSIM_PAR_MIN_AMPS) {
		fn(arg, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->pending = p->n;
	p->gen++;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	fn(arg, 0, p->n + 1);
	pthread_mutex_lock(&p->mu);
	while (p->pending)
		pthread_cond_wait(&p->cv_done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

static void split(uint64_t n, int tid, int nth, uint64_t *b, uint64_t *e)
{
	*b = n * (uint64_t)tid / (uint64_t)nth;
	*e = n * (uint64_t)(tid + 1) / (uint64_t)nth;
}

/* ---- creation ---- */

uint64_t qsim_state_bytes(int nq, enum qsim_prec prec)
{
	if (nq < 0 || nq > 60)
		return UINT64_MAX;
	return ((uint64_t)1 << nq) * (prec == QSIM_DOUBLE ? 16 : 8);
}

static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	uint64_t kb = 0;

	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "MemAvailable:", 13) == 0) {
			kb = strtoull(line + 13, NULL, 10);
			break;
		}
	fclose(f);
	return kb ? kb * 1024 : UINT64_MAX;
}

static void human(char *buf, size_t n, uint64_t bytes)
{
	if (bytes >= (1ull << 30))
		snprintf(buf, n, "%.1f GiB", (double)bytes / (1ull << 30));
	else if (bytes >= (1ull << 20))
		snprintf(buf, n, "%.1f MiB", (double)bytes / (1ull << 20));
	else
		snprintf(buf, n, "%.1f KiB", (double)bytes / (1ull << 10));
}

static int alloc_amps(struct qsim *s, uint64_t bytes)
{
	if (bytes >= QSIM_HUGE_BYTES) {
		size_t len = (size_t)bytes + QSIM_HUGE_ALIGN;
		char *m =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uintptr_t a;

		if (m == MAP_FAILED)
			return -1;
		a = ((uintptr_t)m + QSIM_HUGE_ALIGN - 1) & ~(uintptr_t)(QSIM_HUGE_ALIGN - 1);
		/* a hint: without THP the state still works on 4 KiB pages */
		madvise((void *)a, (size_t)bytes, MADV_HUGEPAGE);
		s->map = m;
		s->map_bytes = len;
		s->amp = (void *)a;
		return 0;
	}
	s->amp = aligned_alloc(64, bytes < 64 ? 64 : (size_t)bytes);
	return s->amp ? 0 : -1;
}

struct qsim *qsim_new(int nq, enum qsim_prec prec, int threads, uint64_t max_bytes,
		      struct ciel_err *err)
{
	const char *pname = prec == QSIM_DOUBLE ? "double" : "single";
	uint64_t bytes, avail;
	struct qsim *s;

	if (prec != QSIM_DOUBLE && prec != QSIM_SINGLE) {
		ciel_err_set(err, CIEL_EINVAL, "qsim: unknown precision %d", (int)prec);
		return NULL;
	}
	if (nq < 1) {
		ciel_err_set(err, CIEL_EINVAL, "qsim: a state needs at least 1 qubit");
		return NULL;
	}
	if (nq > QSIM_MAX_QUBITS) {
		ciel_err_set(err, CIEL_ETOOBIG, "%d qubits: the simulator takes at most %d", nq,
			     QSIM_MAX_QUBITS);
		return NULL;
	}
	if (threads < 1)
		threads = 1;
	bytes = qsim_state_bytes(nq, prec);
	avail = max_bytes ? max_bytes : mem_available();
	if (bytes > avail) {
		char need[32], have[32];

		human(need, sizeof(need), bytes);
		human(have, sizeof(have), avail);
		ciel_err_set(err, CIEL_ETOOBIG, "%d qubits in %s need %s; %s %s", nq, pname, need,
			     have, max_bytes ? "allowed" : "available");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto nomem;
	s->nq = nq;
	s->prec = prec;
	s->threads = threads;
	s->scratch = aligned_alloc(64, QSIM_SCRATCH_BYTES);
	if (!s->scratch || alloc_amps(s, bytes) < 0)
		goto nomem;
	if (threads > 1 && !(s->pool = pool_new(threads - 1, err)))
		goto fail;
	s->nth = s->pool ? s->pool->n + 1 : 1;
	/* a block of QSIM_BLOCK_BYTES stays in L2 while a run of gates works on it */
	s->blk = __builtin_ctzll(QSIM_BLOCK_BYTES / (prec == QSIM_DOUBLE ? 16 : 8));
	if (nq < s->blk + 2)
		s->blk = 0;
	if (s->blk && !(s->blkbuf = aligned_alloc(64, (size_t)s->nth * QSIM_BLOCK_BYTES)))
		goto nomem;
	qsim_zero(s);
	return s;
nomem:
	ciel_err_set(err, CIEL_ENOMEM, "%d qubits in %s: out of memory", nq, pname);
fail:
	qsim_free(s);
	return NULL;
}

void qsim_free(struct qsim *s)
{
	if (!s)
		return;
	pool_free(s->pool);
	if (s->map)
		munmap(s->map, s->map_bytes);
	else
		free(s->amp);
	free(s->scratch);
	free(s->blkbuf);
	free(s);
}

int qsim_nqubits(const struct qsim *s)
{
	return s->nq;
}

static size_t amp_bytes(const struct qsim *s)
{
	return (size_t)qsim_state_bytes(s->nq, s->prec);
}

struct zero_job {
	struct qsim *s;
};

static void zero_fn(void *arg, int tid, int nth)
{
	struct qsim *s = ((struct zero_job *)arg)->s;
	uint64_t b, e, nb = amp_bytes(s) / 64;

	split(nb, tid, nth, &b, &e);
	memset((char *)s->amp + b * 64, 0, (size_t)(e - b) * 64);
}

void qsim_zero(struct qsim *s)
{
	struct zero_job j = {s};

	if (amp_bytes(s) < 64)
		memset(s->amp, 0, amp_bytes(s));
	else
		run_par(s, (uint64_t)1 << s->nq, zero_fn, &j);
	qsim_set(s, 0, 1, 0);
}

void qsim_get(const struct qsim *s, uint64_t idx, double *re, double *im)
{
	if (s->prec == QSIM_DOUBLE) {
		const double *a = s->amp;

		*re = a[2 * idx];
		*im = a[2 * idx + 1];
	} else {
		const float *a = s->amp;

		*re = a[2 * idx];
		*im = a[2 * idx + 1];
	}
}

void qsim_set(struct qsim *s, uint64_t idx, double re, double im)
{
	if (s->prec == QSIM_DOUBLE) {
		double *a = s->amp;

		a[2 * idx] = re;
		a[2 * idx + 1] = im;
	} else {
		float *a = s->amp;

		a[2 * idx] = (float)re;
		a[2 * idx + 1] = (float)im;
	}
}

/* ---- gate preparation ---- */

/*
 * Geometry shared by dense and diagonal gates: which vector-index bits are
 * walked, which must be set, and where each high-target pattern lies.
 * hi[] receives the positions j (into tgt) of the high targets, lo[] those
 * of the lane targets; *lcm the lane bits controls require.
 */
static void prep_geometry(struct kgate *g, int nq, int lb, const int *ctrl, int nctrl,
			  const int *tgt, int ntgt, int *hi, int *nhi, int *lo, int *nlo,
			  unsigned *lcm)
{
	uint64_t used = 0;

	*nhi = *nlo = 0;
	*lcm = 0;
	g->k = ntgt;
	g->ctrl = 0;
	for (int i = 0; i < nctrl; i++) {
		if (ctrl[i] < lb) {
			*lcm |= 1u << ctrl[i];
		} else {
			g->ctrl |= 1ull << (ctrl[i] - lb);
			used |= 1ull << (ctrl[i] - lb);
		}
	}
	for (int j = 0; j < ntgt; j++) {
		if (tgt[j] < lb) {
			lo[(*nlo)++] = j;
		} else {
			hi[(*nhi)++] = j;
			used |= 1ull << (tgt[j] - lb);
		}
	}
	g->kh = *nhi;
	for (int r = 0; r < (1 << *nhi); r++) {
		uint64_t o = 0;

		for (int i = 0; i < *nhi; i++)
			if (r >> i & 1)
				o |= 1ull << (tgt[hi[i]] - lb);
		g->off[r] = o;
	}
	g->free = (((uint64_t)1 << (nq - lb)) - 1) & ~used;
	g->ngroups = (uint64_t)1 << __builtin_popcountll(g->free);
}

/* Matrix index of lane l (lane targets) combined with high pattern r. */
static int mat_index(int l, int r, const int *tgt, const int *hi, int nhi, const int *lo, int nlo)
{
	int idx = 0;

	for (int i = 0; i < nlo; i++)
		idx |= (l >> tgt[lo[i]] & 1) << lo[i];
	for (int i = 0; i < nhi; i++)
		idx |= (r >> i & 1) << hi[i];
	return idx;
}

/* Store coefficient value v at element slot e of vector number vi, in prec. */
static inline void put(void *base, int prec_single, int w, int vi, int e, double v)
{
	if (prec_single)
		((float *)base)[vi * w + e] = (float)v;
	else
		((double *)base)[vi * w + e] = v;
}

/*
 * Dense gate. Uniform case (no lane target, no lane control): coef holds the
 * matrix as scalars, re[N*N] then im[N*N]. Otherwise coef holds vectors
 * [rh][ch][d][re|im] with per-lane values and perm the 2^L lane xors.
 */
static void prep_dense(struct kgate *g, void *scratch, int nq, int lb, int vbytes, int single,
		       const int *ctrl, int nctrl, const int *tgt, int ntgt, const double *m)
{
	int hi[QSIM_MAX_FUSED], lo[QSIM_MAX_FUSED], nhi, nlo, dim = 1 << ntgt;
	int w = vbytes / (single ? 4 : 8), lanes = 1 << lb;
	unsigned lcm;

	prep_geometry(g, nq, lb, ctrl, nctrl, tgt, ntgt, hi, &nhi, lo, &nlo, &lcm);
	g->uni = nlo == 0 && lcm == 0;
	g->coef = scratch;
	g->real = 1;
	for (int i = 0; i < dim * dim; i++)
		if (m[2 * i + 1] != 0)
			g->real = 0;
	if (g->uni) {
		for (int i = 0; i < dim * dim; i++) {
			put(scratch, single, 1, 0, i, m[2 * i]);
			put(scratch, single, 1, 0, dim * dim + i, m[2 * i + 1]);
		}
		return;
	}
	int nh = 1 << nhi, nl = 1 << nlo;
	char *pbase = (char *)scratch + (size_t)nh * nh * nl * 2 * vbytes;

	g->perm = pbase;
	for (int d = 0; d < nl; d++) {
		int dl = 0;

		for (int i = 0; i < nlo; i++)
			if (d >> i & 1)
				dl |= 1 << tgt[lo[i]];
		for (int e = 0; e < w; e++) {
			int src = 2 * ((e / 2) ^ dl) + (e & 1);

			if (single)
				((int32_t *)pbase)[d * w + e] = src;
			else
				((int64_t *)pbase)[d * w + e] = src;
		}
	}
	for (int rh = 0; rh < nh; rh++)
		for (int ch = 0; ch < nh; ch++)
			for (int d = 0; d < nl; d++) {
				int vi = ((rh * nh + ch) * nl + d) * 2, dl = 0;

				for (int i = 0; i < nlo; i++)
					if (d >> i & 1)
						dl |= 1 << tgt[lo[i]];
				for (int l = 0; l < lanes; l++) {
					double re, im;

					if ((l & (int)lcm) != (int)lcm) {
						re = rh == ch && d == 0;
						im = 0;
					} else {
						int r = mat_index(l, rh, tgt, hi, nhi, lo, nlo);
						int c =
						    mat_index(l ^ dl, ch, tgt, hi, nhi, lo, nlo);

						re = m[2 * (r * dim + c)];
						im = m[2 * (r * dim + c) + 1];
					}
					put(scratch, single, w, vi, 2 * l, re);
					put(scratch, single, w, vi, 2 * l + 1, re);
					put(scratch, single, w, vi + 1, 2 * l, im);
					put(scratch, single, w, vi + 1, 2 * l + 1, im);
				}
			}
}

/* Diagonal gate: coef holds vectors [rh][re|im] with per-lane values. */
static void prep_diag(struct kgate *g, void *scratch, int nq, int lb, int vbytes, int single,
		      const int *ctrl, int nctrl, const int *tgt, int ntgt, const double *d)
{
	int hi[QSIM_MAX_FUSED], lo[QSIM_MAX_FUSED], nhi, nlo;
	int w = vbytes / (single ? 4 : 8), lanes = 1 << lb;
	unsigned lcm;

	prep_geometry(g, nq, lb, ctrl, nctrl, tgt, ntgt, hi, &nhi, lo, &nlo, &lcm);
	g->coef = scratch;
	{
		uint64_t special = g->ctrl, nvec = (uint64_t)1 << (nq - lb);

		for (int i = 0; i < nhi; i++) {
			g->hpos[i] = tgt[hi[i]] - lb;
			special |= 1ull << g->hpos[i];
		}
		g->run = special ? (special & -special) - 1 : nvec - 1;
		/*
		 * Long runs of vectors with one coefficient: stream through memory
		 * in order (the range is every vector). Short ones: walk groups.
		 */
		g->uni = g->run >= 7;
		if (g->uni)
			g->ngroups = nvec;
	}
	for (int rh = 0; rh < (1 << nhi); rh++)
		for (int l = 0; l < lanes; l++) {
			double re = 1, im = 0;

			if ((l & (int)lcm) == (int)lcm) {
				int r = mat_index(l, rh, tgt, hi, nhi, lo, nlo);

				re = d[2 * r];
				im = d[2 * r + 1];
			}
			put(scratch, single, w, 2 * rh, 2 * l, re);
			put(scratch, single, w, 2 * rh, 2 * l + 1, re);
			put(scratch, single, w, 2 * rh + 1, 2 * l, im);
			put(scratch, single, w, 2 * rh + 1, 2 * l + 1, im);
		}
}

static void check_qubits(const struct qsim *s, const int *ctrl, int nctrl, const int *tgt, int ntgt,
			 int maxt)
{
	uint64_t seen = 0;

	if (ntgt < 1 || ntgt > maxt || nctrl < 0)
		BUG("qsim: %d targets, %d controls", ntgt, nctrl);
	for (int i = 0; i < nctrl + ntgt; i++) {
		int q = i < nctrl ? ctrl[i] : tgt[i - nctrl];

		if (q < 0 || q >= s->nq || (seen >> q & 1))
			BUG("qsim: qubit %d out of range or repeated (%d qubits)", q, s->nq);
		seen |= 1ull << q;
	}
}

struct apply_job {
	void (*fn)(void *amp, const struct kgate *g, uint64_t gb, uint64_t ge);
	void *amp;
	const struct kgate *g;
};

static void apply_fn(void *arg, int tid, int nth)
{
	struct apply_job *j = arg;
	uint64_t b, e;

	split(j->g->ngroups, tid, nth, &b, &e);
	if (b < e)
		j->fn(j->amp, j->g, b, e);
}

void qsim_apply(struct qsim *s, const int *ctrl, int nctrl, const int *tgt, int ntgt,
		const double *m)
{
	int lb;
	const struct kfamily *f = family_for(s->nq, s->prec, &lb);
	struct kgate g;
	struct apply_job j;

	check_qubits(s, ctrl, nctrl, tgt, ntgt, QSIM_MAX_FUSED);
	prep_dense(&g, s->scratch, s->nq, lb, f->vbytes, s->prec == QSIM_SINGLE, ctrl, nctrl, tgt,
		   ntgt, m);
	j.fn = f->f[s->prec].dense;
	j.amp = s->amp;
	j.g = &g;
	run_par(s, g.ngroups << (lb + g.kh), apply_fn, &j);
}

void qsim_apply_diag_ctrl(struct qsim *s, const int *ctrl, int nctrl, const int *tgt, int ntgt,
			  const double *d)
{
	int lb;
	const struct kfamily *f = family_for(s->nq, s->prec, &lb);
	struct kgate g;
	struct apply_job j;

	check_qubits(s, ctrl, nctrl, tgt, ntgt, QSIM_MAX_FUSED);
	prep_diag(&g, s->scratch, s->nq, lb, f->vbytes, s->prec == QSIM_SINGLE, ctrl, nctrl, tgt,
		  ntgt, d);
	j.fn = f->f[s->prec].diag;
	j.amp = s->amp;
	j.g = &g;
	run_par(s, g.ngroups << (lb + g.kh), apply_fn, &j);
}

void qsim_apply_diag(struct qsim *s, const int *tgt, int ntgt, const double *d)
{
	qsim_apply_diag_ctrl(s, NULL, 0, tgt, ntgt, d);
}

/* ---- cache-blocked runs ---- */

int qsim_block_qubits(const struct qsim *s)
{
	return s->blk;
}

/*
 * The block always holds the lowest qubits too, so that it is gathered in
 * chunks of at least QSIM_CHUNK_BYTES: short pieces scattered over the whole
 * state cost more in DRAM than the passes they save.
 */
int qsim_batch_fits(const struct qsim *s, uint64_t qubits)
{
	int c = __builtin_ctz(QSIM_CHUNK_BYTES / (s->prec == QSIM_DOUBLE ? 16 : 8));

	if (!s->blk)
		return 0;
	/* small blocks (tests) keep half of their qubits free */
	if (c > s->blk / 2)
		c = s->blk / 2;
	return __builtin_popcountll(qubits | ((1ull << c) - 1)) <= s->blk;
}

int qsim_set_block_qubits(struct qsim *s, int b)
{
	int max = __builtin_ctzll(QSIM_BLOCK_BYTES / (s->prec == QSIM_DOUBLE ? 16 : 8));

	if (b < 0 || b > max)
		return -1;
	if (b && !s->blkbuf && !(s->blkbuf = aligned_alloc(64, (size_t)s->nth * QSIM_BLOCK_BYTES)))
		return -1;
	s->blk = b && s->nq >= b + 2 ? b : 0;
	return 0;
}

struct batch_job {
	struct qsim *s;
	const struct kfamily *f;
	struct kgate *g;
	const int *diag;
	size_t n;
	uint64_t bmask;	  /* the block's qubits */
	uint64_t nblocks; /* 2^(nq - blk) */
	int chunk;	  /* qubits 0 .. chunk-1 are in the block: runs of 2^chunk amplitudes */
};

static void batch_fn(void *arg, int tid, int nth)
{
	struct batch_job *j = arg;
	struct qsim *s = j->s;
	size_t esz = s->prec == QSIM_DOUBLE ? 16 : 8, clen = esz << j->chunk;
	size_t bbytes = esz << s->blk;
	uint64_t ob, oe, outer = (((uint64_t)1 << s->nq) - 1) & ~j->bmask;
	uint64_t hi = j->bmask & ~(((uint64_t)1 << j->chunk) - 1);
	char *amp = s->amp, *buf = (char *)s->blkbuf + (size_t)tid * QSIM_BLOCK_BYTES;
	const struct kfuncs *k = &j->f->f[s->prec];

	split(j->nblocks, tid, nth, &ob, &oe);
	for (uint64_t o = ob, base = walk_at(ob, outer); o < oe;
	     o++, base = walk_next(base, outer)) {
		int inplace = hi == 0;
		char *b = inplace ? amp + base * esz : buf;
		uint64_t y = 0;

		/* gather: the block's chunks lie at base | (walk over its high qubits) */
		if (!inplace)
			for (char *d = buf; d < buf + bbytes; d += clen, y = walk_next(y, hi))
				memcpy(d, amp + (base | y) * esz, clen);
		for (size_t i = 0; i < j->n; i++)
			(j->diag[i] ? k->diag : k->dense)(b, &j->g[i], 0, j->g[i].ngroups);
		if (!inplace) {
			y = 0;
			for (char *d = buf; d < buf + bbytes; d += clen, y = walk_next(y, hi))
				memcpy(amp + (base | y) * esz, d, clen);
		}
	}
}

void qsim_apply_batch(struct qsim *s, const struct qsim_op *ops, size_t n)
{
	uint64_t used = 0, bmask;
	int pos[64], lb, b = s->blk, nb = 0;
	const struct kfamily *f;
	struct batch_job j;
	size_t bytes = 0, at = 0;
	char *coef;

	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < ops[i].nctrl + ops[i].ntgt; k++)
			used |= 1ull << ops[i].q[k];
	if (n < 2 || !qsim_batch_fits(s, used))
		goto one_by_one;
	/* fill the block with the lowest qubits: longer contiguous chunks */
	bmask = used;
	for (int q = 0; __builtin_popcountll(bmask) < b; q++)
		bmask |= 1ull << q;
	for (int q = 0; q < s->nq; q++)
		if (bmask >> q & 1)
			pos[q] = nb++;
	f = family_for(b, s->prec, &lb);
	for (size_t i = 0; i < n; i++) {
		size_t dim = (size_t)1 << ops[i].ntgt;

		bytes += ((2 * dim * dim + dim) * (size_t)f->vbytes + 63) & ~(size_t)63;
	}
	coef = aligned_alloc(64, bytes);
	j.g = malloc(n * (sizeof(*j.g) + sizeof(int)));
	if (!coef || !j.g) {
		free(coef);
		free(j.g);
		goto one_by_one;
	}
	j.diag = (const int *)(j.g + n);
	for (size_t i = 0; i < n; i++) {
		const struct qsim_op *op = &ops[i];
		int q[64], dim = 1 << op->ntgt;

		check_qubits(s, op->q, op->nctrl, op->q + op->nctrl, op->ntgt, QSIM_MAX_FUSED);
		for (int k = 0; k < op->nctrl + op->ntgt; k++)
			q[k] = pos[op->q[k]];
		if (op->diag)
			prep_diag(&j.g[i], coef + at, b, lb, f->vbytes, s->prec == QSIM_SINGLE, q,
				  op->nctrl, q + op->nctrl, op->ntgt, op->m);
		else
			prep_dense(&j.g[i], coef + at, b, lb, f->vbytes, s->prec == QSIM_SINGLE, q,
				   op->nctrl, q + op->nctrl, op->ntgt, op->m);
		((int *)j.diag)[i] = op->diag;
		at += ((2 * (size_t)dim * dim + dim) * (size_t)f->vbytes + 63) & ~(size_t)63;
	}
	j.s = s;
	j.f = f;
	j.n = n;
	j.bmask = bmask;
	j.nblocks = (uint64_t)1 << (s->nq - b);
	j.chunk = __builtin_ctzll(~bmask);
	run_par(s, (uint64_t)1 << s->nq, batch_fn, &j);
	free(coef);
	free(j.g);
	return;
one_by_one:
	for (size_t i = 0; i < n; i++) {
		const struct qsim_op *op = &ops[i];

		if (op->diag)
			qsim_apply_diag_ctrl(s, op->q, op->nctrl, op->q + op->nctrl, op->ntgt,
					     op->m);
		else
			qsim_apply(s, op->q, op->nctrl, op->q + op->nctrl, op->ntgt, op->m);
	}
}

/* ---- sums ---- */

struct sum_job {
	const struct kfuncs *k;
	const void *amp;
	uint64_t free, set, n;
	const double *w;
	double part[64];
};

/* Pairwise over [b, b + n) of the walk: halves until a leaf. */
static double sum_pairwise(const struct sum_job *j, uint64_t b, uint64_t n)
{
	if (n <= QSIM_SUM_LEAF)
		return j->k->sumsq(j->amp, j->free, j->set, walk_at(b, j->free), n, j->w);
	return sum_pairwise(j, b, n / 2) + sum_pairwise(j, b + n / 2, n - n / 2);
}

static void sum_fn(void *arg, int tid, int nth)
{
	struct sum_job *j = arg;
	uint64_t b, e;

	split(j->n, tid, nth, &b, &e);
	j->part[tid] = b < e ? sum_pairwise(j, b, e - b) : 0;
}

/* Sum of |amp|^2 over the amplitudes whose qubit q is 1 (q < 0: all). */
static double sum_where(struct qsim *s, int q)
{
	int lb;
	const struct kfamily *f = family_for(s->nq, s->prec, &lb);
	double w[16], total = 0;
	int nw = f->vbytes / (s->prec == QSIM_DOUBLE ? 8 : 4);
	uint64_t all = ((uint64_t)1 << (s->nq - lb)) - 1;
	struct sum_job j = {.k = &f->f[s->prec], .amp = s->amp, .free = all, .w = w};
	int nth = s->pool ? s->pool->n + 1 : 1;

	for (int e = 0; e < nw; e++)
		w[e] = q < 0 || q >= lb || ((e / 2) >> q & 1);
	if (q >= lb) {
		j.set = 1ull << (q - lb);
		j.free = all & ~j.set;
	}
	j.n = (uint64_t)1 << __builtin_popcountll(j.free);
	if (nth > 64)
		nth = 64;
	memset(j.part, 0, sizeof(j.part));
	run_par(s, j.n << lb, sum_fn, &j);
	/* the parts are adjacent halves already; add them in a tree too */
	for (int step = 1; step < nth; step *= 2)
		for (int i = 0; i + step < nth; i += 2 * step)
			j.part[i] += j.part[i + step];
	total = j.part[0];
	return total;
}

double qsim_norm2(struct qsim *s)
{
	return sum_where(s, -1);
}

double qsim_prob1(struct qsim *s, int q)
{
	if (q < 0 || q >= s->nq)
		BUG("qsim_prob1: qubit %d of %d", q, s->nq);
	return sum_where(s, q);
}

void qsim_normalize(struct qsim *s)
{
	double n = qsim_norm2(s), d[4];
	int t = 0;

	if (n <= 0)
		return;
	d[0] = d[2] = 1 / sqrt(n);
	d[1] = d[3] = 0;
	qsim_apply_diag(s, &t, 1, d);
}

/* Outcome of measuring q with r; *p gets its probability (norm-relative). */
static int choose(struct qsim *s, int q, double r, double *p)
{
	double p1 = qsim_prob1(s, q), n = qsim_norm2(s), p0 = n - p1;
	int out;

	if (p0 < 0)
		p0 = 0;
	out = r * n < p0 ? 0 : 1;
	/* rounding must not pick an outcome that cannot happen */
	if (out == 0 && p0 <= 0)
		out = 1;
	else if (out == 1 && p1 <= 0)
		out = 0;
	*p = out ? p1 : p0;
	return out;
}

int qsim_measure(struct qsim *s, int q, double r)
{
	double p, d[4] = {0, 0, 0, 0};
	int out = choose(s, q, r, &p);

	d[2 * out] = p > 0 ? 1 / sqrt(p) : 0;
	qsim_apply_diag(s, &q, 1, d);
	return out;
}

void qsim_reset(struct qsim *s, int q, double r)
{
	double p, m[8] = {0};
	int out = choose(s, q, r, &p);
	double k = p > 0 ? 1 / sqrt(p) : 0;

	/* project and move |1> to |0> in one pass */
	if (out)
		m[2] = k; /* row 0, column 1 */
	else
		m[0] = k;
	qsim_apply(s, NULL, 0, &q, 1, m);
}

/* ---- marginals ---- */

struct probs_job {
	struct qsim *s;
	int nsel;
	uint64_t tab[8][256]; /* index bits of each byte of the amplitude index */
	double *part[64];
};

#define PROBS_BLOCK 4096

static void probs_fn(void *arg, int tid, int nth)
{
	struct probs_job *j = arg;
	uint64_t b, e, n = (uint64_t)1 << j->s->nq, nout = (uint64_t)1 << j->nsel;
	double *out = j->part[tid];
	int single = j->s->prec == QSIM_SINGLE;
	int nbytes = (j->s->nq + 7) / 8;

	split(n, tid, nth, &b, &e);
	/*
	 * Each output is the sum of block sums, so blocks bound the error growth.
	 * A wide selection needs no blocks: each output then gathers only a few
	 * terms per block, and clearing a 2^nsel table per block would cost
	 * 2^(nq + nsel) / PROBS_BLOCK.
	 */
	int direct = nout * 4 > PROBS_BLOCK;
	double *blk = direct ? out : out + nout;
	for (uint64_t i0 = b; i0 < e; i0 += PROBS_BLOCK) {
		uint64_t i1 = i0 + PROBS_BLOCK < e ? i0 + PROBS_BLOCK : e;

		if (!direct)
			memset(blk, 0, nout * sizeof(*blk));
		for (uint64_t i = i0; i < i1; i++) {
			uint64_t o = 0;
			double re, im;

			for (int k = 0; k < nbytes; k++)
				o |= j->tab[k][(i >> (8 * k)) & 255];
			if (single) {
				re = ((const float *)j->s->amp)[2 * i];
				im = ((const float *)j->s->amp)[2 * i + 1];
			} else {
				re = ((const double *)j->s->amp)[2 * i];
				im = ((const double *)j->s->amp)[2 * i + 1];
			}
			blk[o] += re * re + im * im;
		}
		for (uint64_t o = 0; !direct && o < nout; o++)
			out[o] += blk[o];
	}
}

int qsim_probs(struct qsim *s, const int *sel, int nsel, double *out, struct ciel_err *err)
{
	struct probs_job *j;
	uint64_t nout = (uint64_t)1 << nsel;
	int nth = s->pool ? s->pool->n + 1 : 1, rc = -1;

	if (nsel < 0 || nsel > 30 || nsel > s->nq)
		return ciel_err_set(err, CIEL_EINVAL, "qsim_probs: %d qubits selected of %d", nsel,
				    s->nq);
	for (int i = 0; i < nsel; i++) {
		if (sel[i] < 0 || sel[i] >= s->nq)
			return ciel_err_set(err, CIEL_EINVAL, "qsim_probs: qubit %d of %d", sel[i],
					    s->nq);
		for (int k = 0; k < i; k++)
			if (sel[k] == sel[i])
				return ciel_err_set(err, CIEL_EINVAL,
						    "qsim_probs: qubit %d selected twice", sel[i]);
	}
	/* per-thread copies only while they stay small beside the state */
	if (nsel > 16 || (uint64_t)1 << s->nq < QSIM_PAR_MIN_AMPS)
		nth = 1;
	if (nth > 64)
		nth = 64;
	j = calloc(1, sizeof(*j));
	if (!j)
		return ciel_err_set(err, CIEL_ENOMEM, "qsim_probs: out of memory");
	j->s = s;
	j->nsel = nsel;
	for (int k = 0; k < 8; k++)
		for (int v = 0; v < 256; v++)
			for (int i = 0; i < nsel; i++) {
				int bit = sel[i] - 8 * k;

				if (bit >= 0 && bit < 8 && (v >> bit & 1))
					j->tab[k][v] |= 1ull << i;
			}
	for (int t = 0; t < nth; t++) {
		j->part[t] = calloc(2 * nout, sizeof(double));
		if (!j->part[t]) {
			ciel_err_set(err, CIEL_ENOMEM, "qsim_probs: out of memory");
			goto out;
		}
	}
	if (nth == 1)
		probs_fn(j, 0, 1);
	else
		run_par(s, (uint64_t)1 << s->nq, probs_fn, j);
	for (uint64_t o = 0; o < nout; o++) {
		out[o] = 0;
		for (int t = 0; t < nth; t++)
			out[o] += j->part[t][o];
	}
	rc = 0;
out:
	for (int t = 0; t < nth; t++)
		free(j->part[t]);
	free(j);
	return rc;
}

#else /* QSIM_TEMPLATE: one kernel family in one precision */

/*
 * Expects KT (float or double), KI (integer of the same width), KB (vector
 * bytes), KN(x) (names x with the family suffix), KTGT (target attribute).
 */
typedef KT KN(vec) __attribute__((vector_size(KB), aligned(KB)));
typedef KI KN(ivec) __attribute__((vector_size(KB)));
typedef double KN(dvec) __attribute__((vector_size(KB * sizeof(double) / sizeof(KT))));

#define KW ((int)(KB / sizeof(KT)))
#ifndef KUNROLL
/* unrolled kernels take minutes to compile under the sanitizers: not there */
#if defined(__SANITIZE_ADDRESS__)
#define KUNROLL(n)
#else
#define KPRAGMA(x) _Pragma(#x)
#define KUNROLL(n) KPRAGMA(GCC unroll n)
#endif
#endif
/* log2 of the complex amplitudes in a vector */
#define KLB (KW >= 16 ? 3 : KW >= 8 ? 2 : KW >= 4 ? 1 : 0)
#define KINL static inline __attribute__((always_inline)) KTGT

#if defined(__clang__)
/* clang has no run-time-index __builtin_shuffle; it only builds the fuzzers */
KINL KN(vec) KN(shuf)(KN(vec) x, KN(ivec) m)
{
	KN(vec) r;

	for (int e = 0; e < KW; e++)
		r[e] = x[m[e] & (KW - 1)];
	return r;
}
#define KSHUF(x, m) KN(shuf)(x, m)
#else
#define KSHUF(x, m) __builtin_shuffle(x, m)
#endif

/* (a + i b) per lane from the re-part sum a and the im-part sum b: a + (-b.im, b.re) */
KINL KN(vec) KN(combine)(KN(vec) a, KN(vec) b)
{
	KN(ivec) sw, sg;

	for (int e = 0; e < KW; e++) {
		sw[e] = e ^ 1;
		sg[e] = e & 1 ? 1 : -1;
	}
	return a + KSHUF(b, sw) * __builtin_convertvector(sg, KN(vec));
}

/*
 * All targets high, no lane control: scalar matrix entries broadcast.
 * Two rows at a time and two partial sums per row keep eight FMA chains in
 * flight; one chain per row left the FMA units waiting on latency.
 */
KINL void KN(uni_body)(KT *amp, const struct kgate *g, uint64_t gb, uint64_t ge, const int K,
		       const int REAL)
{
	const int N = 1 << K;
	const KT *mr = g->coef, *mi = mr + N * N;
	KN(vec) *v = (KN(vec) *)amp;
	uint64_t free = g->free, ctrl = g->ctrl, y = walk_at(gb, free), off[1 << QSIM_MAX_FUSED];

	for (int c = 0; c < N; c++)
		off[c] = g->off[c];
	for (uint64_t i = gb; i < ge; i++, y = walk_next(y, free)) {
		KN(vec) *p = v + (y | ctrl), in[1 << QSIM_MAX_FUSED];

		KUNROLL(32)
		for (int c = 0; c < N; c++)
			in[c] = p[off[c]];
		for (int r = 0; r < N; r += 2) {
			KN(vec) a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
			KN(vec) c0 = {0}, c1 = {0}, d0 = {0}, d1 = {0};
			const KT *r0 = mr + r * N, *i0 = mi + r * N;

			KUNROLL(16)
			for (int c = 0; c < N; c += 2) {
				a0 += r0[c] * in[c];
				a1 += r0[c + 1] * in[c + 1];
				c0 += r0[N + c] * in[c];
				c1 += r0[N + c + 1] * in[c + 1];
				if (!REAL) {
					b0 += i0[c] * in[c];
					b1 += i0[c + 1] * in[c + 1];
					d0 += i0[N + c] * in[c];
					d1 += i0[N + c + 1] * in[c + 1];
				}
			}
			if (REAL) {
				p[off[r]] = a0 + a1;
				p[off[r + 1]] = c0 + c1;
			} else {
				p[off[r]] = KN(combine)(a0 + a1, b0 + b1);
				p[off[r + 1]] = KN(combine)(c0 + c1, d0 + d1);
			}
		}
	}
}

/* Some target or control inside the vector: per-lane coefficients. */
KINL void KN(lane_body)(KT *amp, const struct kgate *g, uint64_t gb, uint64_t ge, const int K,
			const int KH, const int REAL)
{
	const int NH = 1 << KH, NL = 1 << (K - KH), NI = NH * NL;
	const KN(vec) *cf = g->coef;
	const KN(ivec) *pm = g->perm;
	KN(vec) *v = (KN(vec) *)amp;
	uint64_t free = g->free, ctrl = g->ctrl, y = walk_at(gb, free), off[1 << QSIM_MAX_FUSED];

	for (int c = 0; c < NH; c++)
		off[c] = g->off[c];
	for (uint64_t i = gb; i < ge; i++, y = walk_next(y, free)) {
		KN(vec) *p = v + (y | ctrl), in[1 << QSIM_MAX_FUSED];

		KUNROLL(32)
		for (int c = 0; c < NH; c++) {
			KN(vec) x = p[off[c]];

			in[c * NL] = x;
			KUNROLL(8)
			for (int d = 1; d < NL; d++)
				in[c * NL + d] = KSHUF(x, pm[d]);
		}
		for (int r = 0; r < NH; r++) {
			const KN(vec) *cr = cf + (size_t)r * NI * 2;
			KN(vec) a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};

			/* NI is even: K >= 1 */
			KUNROLL(16)
			for (int c = 0; c < NI; c += 2) {
				a0 += cr[2 * c] * in[c];
				a1 += cr[2 * c + 2] * in[c + 1];
				if (!REAL) {
					b0 += cr[2 * c + 1] * in[c];
					b1 += cr[2 * c + 3] * in[c + 1];
				}
			}
			p[off[r]] = REAL ? a0 + a1 : KN(combine)(a0 + a1, b0 + b1);
		}
	}
}

static KTGT void KN(dense)(void *amp, const struct kgate *g, uint64_t gb, uint64_t ge)
{
	const int re = g->real;

	if (g->uni) {
		switch (g->k) {
		case 1:
			re ? KN(uni_body)(amp, g, gb, ge, 1, 1)
			   : KN(uni_body)(amp, g, gb, ge, 1, 0);
			return;
		case 2:
			re ? KN(uni_body)(amp, g, gb, ge, 2, 1)
			   : KN(uni_body)(amp, g, gb, ge, 2, 0);
			return;
		case 3:
			re ? KN(uni_body)(amp, g, gb, ge, 3, 1)
			   : KN(uni_body)(amp, g, gb, ge, 3, 0);
			return;
		case 4:
			re ? KN(uni_body)(amp, g, gb, ge, 4, 1)
			   : KN(uni_body)(amp, g, gb, ge, 4, 0);
			return;
		case 5:
			re ? KN(uni_body)(amp, g, gb, ge, 5, 1)
			   : KN(uni_body)(amp, g, gb, ge, 5, 0);
			return;
		}
		BUG("qsim: %d targets", g->k);
	}
	/* at most KLB lane targets: only those bodies are compiled */
	switch (g->k * 8 + g->kh) {
	case 1 * 8 + 0:
		if (1 - 0 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 1, 0, 1)
			   : KN(lane_body)(amp, g, gb, ge, 1, 0, 0);
			return;
		}
		break;
	case 1 * 8 + 1:
		if (1 - 1 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 1, 1, 1)
			   : KN(lane_body)(amp, g, gb, ge, 1, 1, 0);
			return;
		}
		break;
	case 2 * 8 + 0:
		if (2 - 0 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 2, 0, 1)
			   : KN(lane_body)(amp, g, gb, ge, 2, 0, 0);
			return;
		}
		break;
	case 2 * 8 + 1:
		if (2 - 1 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 2, 1, 1)
			   : KN(lane_body)(amp, g, gb, ge, 2, 1, 0);
			return;
		}
		break;
	case 2 * 8 + 2:
		if (2 - 2 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 2, 2, 1)
			   : KN(lane_body)(amp, g, gb, ge, 2, 2, 0);
			return;
		}
		break;
	case 3 * 8 + 0:
		if (3 - 0 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 3, 0, 1)
			   : KN(lane_body)(amp, g, gb, ge, 3, 0, 0);
			return;
		}
		break;
	case 3 * 8 + 1:
		if (3 - 1 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 3, 1, 1)
			   : KN(lane_body)(amp, g, gb, ge, 3, 1, 0);
			return;
		}
		break;
	case 3 * 8 + 2:
		if (3 - 2 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 3, 2, 1)
			   : KN(lane_body)(amp, g, gb, ge, 3, 2, 0);
			return;
		}
		break;
	case 3 * 8 + 3:
		if (3 - 3 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 3, 3, 1)
			   : KN(lane_body)(amp, g, gb, ge, 3, 3, 0);
			return;
		}
		break;
	case 4 * 8 + 0:
		if (4 - 0 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 4, 0, 1)
			   : KN(lane_body)(amp, g, gb, ge, 4, 0, 0);
			return;
		}
		break;
	case 4 * 8 + 1:
		if (4 - 1 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 4, 1, 1)
			   : KN(lane_body)(amp, g, gb, ge, 4, 1, 0);
			return;
		}
		break;
	case 4 * 8 + 2:
		if (4 - 2 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 4, 2, 1)
			   : KN(lane_body)(amp, g, gb, ge, 4, 2, 0);
			return;
		}
		break;
	case 4 * 8 + 3:
		if (4 - 3 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 4, 3, 1)
			   : KN(lane_body)(amp, g, gb, ge, 4, 3, 0);
			return;
		}
		break;
	case 4 * 8 + 4:
		if (4 - 4 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 4, 4, 1)
			   : KN(lane_body)(amp, g, gb, ge, 4, 4, 0);
			return;
		}
		break;
	case 5 * 8 + 0:
		if (5 - 0 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 5, 0, 1)
			   : KN(lane_body)(amp, g, gb, ge, 5, 0, 0);
			return;
		}
		break;
	case 5 * 8 + 1:
		if (5 - 1 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 5, 1, 1)
			   : KN(lane_body)(amp, g, gb, ge, 5, 1, 0);
			return;
		}
		break;
	case 5 * 8 + 2:
		if (5 - 2 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 5, 2, 1)
			   : KN(lane_body)(amp, g, gb, ge, 5, 2, 0);
			return;
		}
		break;
	case 5 * 8 + 3:
		if (5 - 3 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 5, 3, 1)
			   : KN(lane_body)(amp, g, gb, ge, 5, 3, 0);
			return;
		}
		break;
	case 5 * 8 + 4:
		if (5 - 4 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 5, 4, 1)
			   : KN(lane_body)(amp, g, gb, ge, 5, 4, 0);
			return;
		}
		break;
	case 5 * 8 + 5:
		if (5 - 5 <= KLB) {
			re ? KN(lane_body)(amp, g, gb, ge, 5, 5, 1)
			   : KN(lane_body)(amp, g, gb, ge, 5, 5, 0);
			return;
		}
		break;
	}
	BUG("qsim: %d targets, %d high", g->k, g->kh);
}

/*
 * A diagonal streams: vectors in memory order, one coefficient pair per run
 * of vectors that share their high-target bits. Runs whose controls are not
 * all 1 are skipped without being read. (!uni: runs too short, by groups.)
 */
static KTGT void KN(diag)(void *amp, const struct kgate *g, uint64_t vb, uint64_t ve)
{
	const KN(vec) *cf = g->coef;
	KN(vec) *v = (KN(vec) *)amp;
	uint64_t ctrl = g->ctrl;

	if (!g->uni) {
		uint64_t free = g->free, y = walk_at(vb, free);

		for (uint64_t i = vb; i < ve; i++, y = walk_next(y, free)) {
			KN(vec) *p = v + (y | ctrl);

			for (int r = 0; r < 1 << g->kh; r++) {
				KN(vec) x = p[g->off[r]];

				p[g->off[r]] = KN(combine)(cf[2 * r] * x, cf[2 * r + 1] * x);
			}
		}
		return;
	}
	for (uint64_t x = vb, e; x < ve; x = e) {
		int r = 0;

		e = (x | g->run) + 1;
		if (e > ve)
			e = ve;
		if ((x & ctrl) != ctrl)
			continue;
		for (int i = 0; i < g->kh; i++)
			r |= (int)(x >> g->hpos[i] & 1) << i;
		KN(vec) cr = cf[2 * r], ci = cf[2 * r + 1];

		for (uint64_t k = x; k < e; k++)
			v[k] = KN(combine)(cr * v[k], ci * v[k]);
	}
}

static KTGT double KN(sumsq)(const void *amp, uint64_t free, uint64_t set, uint64_t y, uint64_t n,
			     const double *w)
{
	const KN(vec) *v = (const KN(vec) *)amp;
	KN(dvec) s = {0}, wv;
	double t = 0;

	for (int e = 0; e < KW; e++)
		wv[e] = w[e];
	for (uint64_t i = 0; i < n; i++, y = walk_next(y, free)) {
		KN(dvec) x = __builtin_convertvector(v[y | set], KN(dvec));

		s += x * x;
	}
	s *= wv;
	for (int e = 0; e < KW; e++)
		t += s[e];
	return t;
}

#undef KW
#undef KLB
#undef KINL
#undef KT
#undef KI
#undef KB
#undef KN
#undef KTGT

#endif /* QSIM_TEMPLATE */
