/*
 * test_qsim — every kernel against an independent dense reference.
 *
 * The reference builds the full 2^n x 2^n matrix of a gate by looping over
 * basis states (or, for larger n, its nonzero entries column by column) and
 * multiplies it into the state in plain scalar double. Each standard gate,
 * random k-target matrices and diagonals run on random states, random qubit
 * choices (controls and targets in every order, low and high), for every
 * kernel family the CPU has, in both precisions and on 1 and 2 threads.
 * Then fusion against the unfused circuit, and probabilities, measurement,
 * reset and the memory refusal.
 */
#include "qsim/circ.h"
#include "qsim/qfuse.h"
#include "qsim/qsim.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double unif(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

static int rndint(int n)
{
	return (int)(rnd() % (uint64_t)n);
}

/* A random normalised state of n qubits, complex interleaved. */
static double *rand_state(int n)
{
	size_t dim = (size_t)1 << n;
	double *v = malloc(2 * dim * sizeof(*v)), nrm = 0;

	assert_non_null(v);
	for (size_t i = 0; i < 2 * dim; i++) {
		v[i] = unif() * 2 - 1;
		nrm += v[i] * v[i];
	}
	for (size_t i = 0; i < 2 * dim; i++)
		v[i] /= sqrt(nrm);
	return v;
}

/* k distinct qubits out of n, in random order. */
static void rand_qubits(int n, int k, int *q)
{
	int all[64];

	for (int i = 0; i < n; i++)
		all[i] = i;
	for (int i = 0; i < k; i++) {
		int j = i + rndint(n - i), t = all[i];

		all[i] = all[j];
		all[j] = t;
		q[i] = all[i];
	}
}

/*
 * Entry (row, col) of the full matrix of "m on tgt where ctrl are all 1":
 * nonzero only where row and col agree off the targets.
 */
static void full_entry(int nctrl, const int *q, int ntgt, const double *m, int diag, uint64_t row,
		       uint64_t col, double *re, double *im)
{
	const int *tgt = q + nctrl;
	uint64_t tmask = 0;
	int r = 0, c = 0, dim = 1 << ntgt;

	*re = *im = 0;
	for (int j = 0; j < ntgt; j++) {
		tmask |= 1ull << tgt[j];
		r |= (int)(row >> tgt[j] & 1) << j;
		c |= (int)(col >> tgt[j] & 1) << j;
	}
	if ((row & ~tmask) != (col & ~tmask))
		return;
	for (int i = 0; i < nctrl; i++)
		if (!(col >> q[i] & 1)) {
			*re = row == col;
			return;
		}
	if (diag) {
		if (r == c) {
			*re = m[2 * r];
			*im = m[2 * r + 1];
		}
		return;
	}
	*re = m[2 * (r * dim + c)];
	*im = m[2 * (r * dim + c) + 1];
}

/* out = M v with M built entry by entry: densely for small n. */
static void ref_apply(int n, int nctrl, const int *q, int ntgt, const double *m, int diag,
		      const double *v, double *out)
{
	uint64_t dim = 1ull << n;

	if (n <= 7) {
		double *full = malloc(2 * dim * dim * sizeof(*full));

		assert_non_null(full);
		for (uint64_t r = 0; r < dim; r++)
			for (uint64_t c = 0; c < dim; c++)
				full_entry(nctrl, q, ntgt, m, diag, r, c, &full[2 * (r * dim + c)],
					   &full[2 * (r * dim + c) + 1]);
		for (uint64_t r = 0; r < dim; r++) {
			double sr = 0, si = 0;

			for (uint64_t c = 0; c < dim; c++) {
				double a = full[2 * (r * dim + c)], b = full[2 * (r * dim + c) + 1];

				sr += a * v[2 * c] - b * v[2 * c + 1];
				si += a * v[2 * c + 1] + b * v[2 * c];
			}
			out[2 * r] = sr;
			out[2 * r + 1] = si;
		}
		free(full);
		return;
	}
	/* large n: the column's nonzero rows differ from it only in target bits */
	memset(out, 0, 2 * dim * sizeof(*out));
	for (uint64_t c = 0; c < dim; c++)
		for (int rt = 0; rt < (1 << ntgt); rt++) {
			uint64_t row = c;
			double a, b;

			for (int j = 0; j < ntgt; j++)
				row = (row & ~(1ull << q[nctrl + j])) |
				      ((uint64_t)(rt >> j & 1) << q[nctrl + j]);
			full_entry(nctrl, q, ntgt, m, diag, row, c, &a, &b);
			out[2 * row] += a * v[2 * c] - b * v[2 * c + 1];
			out[2 * row + 1] += a * v[2 * c + 1] + b * v[2 * c];
		}
}

static struct qsim *load(int n, enum qsim_prec prec, int threads, const double *v)
{
	struct ciel_err err;
	struct qsim *s = qsim_new(n, prec, threads, 0, &err);

	assert_non_null(s);
	for (uint64_t i = 0; i < (1ull << n); i++)
		qsim_set(s, i, v[2 * i], v[2 * i + 1]);
	return s;
}

static double max_diff(struct qsim *s, const double *ref)
{
	double worst = 0;

	for (uint64_t i = 0; i < (1ull << qsim_nqubits(s)); i++) {
		double re, im;

		qsim_get(s, i, &re, &im);
		worst = fmax(worst, fabs(re - ref[2 * i]));
		worst = fmax(worst, fabs(im - ref[2 * i + 1]));
	}
	return worst;
}

static const char *const kernels[] = {"portable", "avx2", "avx512"};

static double tol(enum qsim_prec prec)
{
	return prec == QSIM_DOUBLE ? 1e-12 : 1e-5;
}

/* Apply one gate both ways and compare; diag selects qsim_apply_diag_ctrl. */
static void check_one(int n, enum qsim_prec prec, int threads, int nctrl, const int *q, int ntgt,
		      const double *m, int diag, const char *what)
{
	double *v = rand_state(n), *ref = malloc(2 * sizeof(double) << n), d;
	struct qsim *s = load(n, prec, threads, v);

	assert_non_null(ref);
	ref_apply(n, nctrl, q, ntgt, m, diag, v, ref);
	if (diag)
		qsim_apply_diag_ctrl(s, q, nctrl, q + nctrl, ntgt, m);
	else
		qsim_apply(s, q, nctrl, q + nctrl, ntgt, m);
	d = max_diff(s, ref);
	if (d > tol(prec)) {
		print_error("%s kernel=%s prec=%d threads=%d n=%d q=", what, qsim_kernel_name(),
			    (int)prec, threads, n);
		for (int i = 0; i < nctrl + ntgt; i++)
			print_error("%d%s", q[i], i + 1 == nctrl ? " | " : " ");
		print_error("diff=%g\n", d);
		fail();
	}
	qsim_free(s);
	free(v);
	free(ref);
}

static void std_gates_on(int threads, int nmin, int nmax, int trials)
{
	for (size_t kf = 0; kf < 3; kf++) {
		if (qsim_force_kernel(kernels[kf]) < 0)
			continue;
		for (int p = 0; p < 2; p++)
			for (const char *const *nm = circ_std_names; *nm; nm++) {
				int nq = circ_std_nqubits(*nm);

				for (int t = 0; t < trials; t++) {
					double params[4];
					int np = circ_std_nparams(*nm), q[8];
					int n = nq > nmin ? nq : nmin;
					struct circ_op op;

					n += rndint(nmax - n + 1);
					for (int i = 0; i < np; i++)
						params[i] = (unif() * 2 - 1) * 2 * M_PI;
					assert_int_equal(circ_std_gate(*nm, params, np, &op, NULL),
							 0);
					rand_qubits(n, nq, q);
					check_one(n, (enum qsim_prec)p, threads, op.nctrl, q,
						  op.ntgt, op.m, 0, *nm);
				}
			}
	}
	qsim_force_kernel("portable");
	assert_string_equal(qsim_kernel_name(), "portable");
}

static void test_std_gates(void **st)
{
	(void)st;
	std_gates_on(1, 1, 6, 6);
}

static void test_std_gates_threads(void **st)
{
	(void)st;
	/* 2^12 amplitudes and more: the pool really splits the groups */
	std_gates_on(2, 14, 15, 1);
	std_gates_on(2, 1, 6, 2);
}

/* Random (not unitary) k-target matrices and diagonals under random controls. */
static void fused_on(int threads, int nmin, int nmax, int trials)
{
	for (size_t kf = 0; kf < 3; kf++) {
		if (qsim_force_kernel(kernels[kf]) < 0)
			continue;
		for (int p = 0; p < 2; p++)
			for (int k = 1; k <= QSIM_MAX_FUSED; k++)
				for (int t = 0; t < trials; t++) {
					int n = k > nmin ? k : nmin, nctrl, q[16];
					double m[2 * 32 * 32];

					n += rndint(nmax - n + 1);
					nctrl = rndint(n - k + 1 < 4 ? n - k + 1 : 4);
					rand_qubits(n, nctrl + k, q);
					for (int i = 0; i < 2 << (2 * k); i++)
						m[i] = unif() - 0.5;
					check_one(n, (enum qsim_prec)p, threads, nctrl, q, k, m, 0,
						  "dense");
					check_one(n, (enum qsim_prec)p, threads, nctrl, q, k, m, 1,
						  "diag");
				}
	}
	qsim_force_kernel("portable");
}

static void test_fused_matrices(void **st)
{
	(void)st;
	fused_on(1, 1, 7, 25);
}

static void test_fused_matrices_threads(void **st)
{
	(void)st;
	fused_on(2, 13, 14, 2);
}

/* Every kernel family on every target position: the lane permutations. */
static void test_all_positions(void **st)
{
	(void)st;
	for (size_t kf = 0; kf < 3; kf++) {
		if (qsim_force_kernel(kernels[kf]) < 0)
			continue;
		for (int p = 0; p < 2; p++)
			for (int a = 0; a < 6; a++)
				for (int b = 0; b < 6; b++) {
					int q[3] = {a, b, (a + b + 1) % 6};
					double m[32];

					if (a == b)
						continue;
					for (int i = 0; i < 32; i++)
						m[i] = unif() - 0.5;
					check_one(6, (enum qsim_prec)p, 1, 0, q, 1, m, 0, "1q");
					check_one(6, (enum qsim_prec)p, 1, 0, q, 2, m, 0, "2q");
					check_one(6, (enum qsim_prec)p, 1, 1, q, 1, m, 0, "c1q");
					if (q[2] != a && q[2] != b)
						check_one(6, (enum qsim_prec)p, 1, 1, q, 2, m, 0,
							  "c2q");
				}
	}
	qsim_force_kernel("portable");
}

static void rand_circuit(struct circ *c, int nq, int ngates)
{
	circ_init(c);
	assert_int_equal(circ_add_qreg(c, "q", nq, NULL), 0);
	for (int i = 0; i < ngates; i++) {
		const char *nm;
		struct circ_op op;
		double params[4];
		int np, nqg;

		do {
			int cnt = 0;

			while (circ_std_names[cnt])
				cnt++;
			nm = circ_std_names[rndint(cnt)];
		} while (circ_std_nqubits(nm) > nq);
		np = circ_std_nparams(nm);
		nqg = circ_std_nqubits(nm);
		for (int k = 0; k < np; k++)
			params[k] = unif() * 4 * M_PI;
		assert_int_equal(circ_std_gate(nm, params, np, &op, NULL), 0);
		rand_qubits(nq, nqg, op.q);
		assert_int_equal(circ_push(c, &op, NULL), 0);
	}
}

static void test_fusion(void **st)
{
	(void)st;
	for (int trial = 0; trial < 4; trial++) {
		struct circ c;
		double *v = rand_state(8);

		rand_circuit(&c, 8, 100);
		for (int p = 0; p < 2; p++) {
			struct qsim *ref = load(8, (enum qsim_prec)p, 1, v);
			double *rv = malloc(2 * 256 * sizeof(double));

			assert_non_null(rv);
			for (size_t i = 0; i < c.n; i++)
				qsim_apply(ref, c.ops[i].q, c.ops[i].nctrl,
					   c.ops[i].q + c.ops[i].nctrl, c.ops[i].ntgt, c.ops[i].m);
			for (uint64_t i = 0; i < 256; i++)
				qsim_get(ref, i, &rv[2 * i], &rv[2 * i + 1]);
			for (int maxk = 1; maxk <= QSIM_MAX_FUSED; maxk++) {
				struct qfuse_prog prog = {0};
				struct qsim *s = load(8, (enum qsim_prec)p, trial & 1 ? 2 : 1, v);

				assert_int_equal(qfuse_build(c.ops, c.n, maxk, &prog, NULL), 0);
				assert_int_equal(prog.n_in, 100);
				/* only a gate kept as it is (swap at maxk 1) or a diagonal passes
				 * maxk */
				for (size_t g = 0; g < prog.n; g++)
					assert_true(prog.g[g].ntgt <= (prog.g[g].diag
									   ? QSIM_MAX_FUSED
								       : maxk > 2 ? maxk
										  : 2));
				if (maxk >= 3)
					assert_true(prog.n < 60);
				qfuse_run(&prog, s);
				assert_true(max_diff(s, rv) < (p ? 1e-5 : 1e-12));
				qfuse_release(&prog);
				qsim_free(s);
			}
			qsim_free(ref);
			free(rv);
		}
		circ_release(&c);
		free(v);
	}
}

/*
 * Cache-blocked runs: small blocks on a small state exercise the gather,
 * the in-place case (block = lowest qubits) and the thread split.
 */
static void test_blocked_runs(void **st)
{
	(void)st;
	for (size_t kf = 0; kf < 3; kf++) {
		if (qsim_force_kernel(kernels[kf]) < 0)
			continue;
		for (int trial = 0; trial < 3; trial++) {
			struct circ c;
			int n = 11;
			double *v = rand_state(n), *rv = malloc(2 * sizeof(double) << n);

			assert_non_null(rv);
			rand_circuit(&c, n, 120);
			for (int p = 0; p < 2; p++) {
				struct qsim *ref = load(n, (enum qsim_prec)p, 1, v);

				assert_int_equal(qsim_set_block_qubits(ref, 0), 0);
				for (size_t i = 0; i < c.n; i++)
					qsim_apply(ref, c.ops[i].q, c.ops[i].nctrl,
						   c.ops[i].q + c.ops[i].nctrl, c.ops[i].ntgt,
						   c.ops[i].m);
				for (uint64_t i = 0; i < (1ull << n); i++)
					qsim_get(ref, i, &rv[2 * i], &rv[2 * i + 1]);
				for (int b = 3; b <= 9; b++) {
					int maxk = 1 + (b + trial) % QSIM_MAX_FUSED;
					struct qfuse_prog prog = {0};
					struct qsim *s = load(n, (enum qsim_prec)p, 1 + (b & 1), v);

					assert_int_equal(qsim_set_block_qubits(s, b), 0);
					assert_int_equal(qsim_block_qubits(s), b);
					assert_int_equal(qfuse_build(c.ops, c.n, maxk, &prog, NULL),
							 0);
					/* blocking really merges passes */
					if (b >= 6)
						assert_true(qfuse_passes(&prog, s) < prog.n);
					qfuse_run(&prog, s);
					if (max_diff(s, rv) > (p ? 1e-5 : 1e-12))
						fail_msg("kernel %s prec %d block %d maxk %d: %g",
							 kernels[kf], p, b, maxk, max_diff(s, rv));
					qfuse_release(&prog);
					qsim_free(s);
				}
				qsim_free(ref);
			}
			circ_release(&c);
			free(v);
			free(rv);
		}
	}
	qsim_force_kernel("portable");
}

static void push_gate(struct circ *c, const char *nm, double p0, int q0, int q1)
{
	struct circ_op op;
	int np = circ_std_nparams(nm);

	assert_int_equal(circ_std_gate(nm, &p0, np, &op, NULL), 0);
	op.q[0] = q0;
	op.q[1] = q1;
	assert_int_equal(circ_push(c, &op, NULL), 0);
}

static void test_fusion_shapes(void **st)
{
	struct circ c;
	struct qfuse_prog prog = {0};
	struct ciel_err err;

	(void)st;
	/* phases only: every fused gate is diagonal */
	circ_init(&c);
	for (int i = 0; i < 6; i++)
		push_gate(&c, "cp", 0.3 * i, i, (i + 1) % 6);
	push_gate(&c, "rz", 0.7, 2, 0);
	push_gate(&c, "cz", 0, 4, 1);
	assert_int_equal(qfuse_build(c.ops, c.n, 3, &prog, NULL), 0);
	assert_true(prog.n < c.n);
	for (size_t g = 0; g < prog.n; g++)
		assert_true(prog.g[g].diag);
	qfuse_release(&prog);
	/* a gate wider than maxk stays as it is, controls and all */
	circ_release(&c);
	circ_init(&c);
	push_gate(&c, "h", 0, 0, 0);
	{
		struct circ_op op;

		assert_int_equal(circ_std_gate("ccx", NULL, 0, &op, NULL), 0);
		op.q[0] = 0;
		op.q[1] = 1;
		op.q[2] = 2;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
	}
	push_gate(&c, "h", 0, 0, 0);
	assert_int_equal(qfuse_build(c.ops, c.n, 2, &prog, NULL), 0);
	assert_int_equal(prog.n, 3);
	assert_int_equal(prog.g[1].nctrl, 2);
	assert_int_equal(prog.g[1].ntgt, 1);
	assert_int_equal(prog.g[1].q[2], 2);
	qfuse_release(&prog);
	/* bad input is refused */
	assert_int_equal(qfuse_build(c.ops, c.n, 0, &prog, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	c.ops[1].kind = CIRC_MEASURE;
	assert_int_equal(qfuse_build(c.ops, c.n, 3, &prog, &err), -1);
	qfuse_release(&prog);
	circ_release(&c);
}

static void test_probs_measure_reset(void **st)
{
	(void)st;
	for (size_t kf = 0; kf < 3; kf++) {
		if (qsim_force_kernel(kernels[kf]) < 0)
			continue;
		for (int p = 0; p < 2; p++) {
			double t = p ? 1e-6 : 1e-12;
			double *v = rand_state(5), pr[8], ex[8] = {0}, p1 = 0, re, im;
			struct qsim *s = load(5, (enum qsim_prec)p, 1, v);
			int sel[3] = {3, 0, 4};
			struct ciel_err err;

			assert_true(fabs(qsim_norm2(s) - 1) < t);
			for (int i = 0; i < 32; i++) {
				double a = v[2 * i] * v[2 * i] + v[2 * i + 1] * v[2 * i + 1];
				int o = (i >> 3 & 1) | (i & 1) << 1 | (i >> 4 & 1) << 2;

				ex[o] += a;
				if (i >> 1 & 1)
					p1 += a;
			}
			assert_int_equal(qsim_probs(s, sel, 3, pr, &err), 0);
			for (int o = 0; o < 8; o++)
				assert_true(fabs(pr[o] - ex[o]) < t);
			assert_true(fabs(qsim_prob1(s, 1) - p1) < t);
			sel[1] = 3;
			assert_int_equal(qsim_probs(s, sel, 2, pr, &err), -1);

			/* r below P(0) reads 0, above reads 1 */
			struct qsim *s2 = load(5, (enum qsim_prec)p, 1, v);
			assert_int_equal(qsim_measure(s, 1, (1 - p1) * 0.999), 0);
			assert_int_equal(qsim_measure(s2, 1, (1 - p1) * 1.001), 1);
			assert_true(fabs(qsim_norm2(s) - 1) < t);
			assert_true(fabs(qsim_norm2(s2) - 1) < t);
			assert_true(qsim_prob1(s, 1) < t);
			assert_true(fabs(qsim_prob1(s2, 1) - 1) < t);
			/* collapse keeps the relative amplitudes */
			for (int i = 0; i < 32; i++) {
				qsim_get(s2, (uint64_t)i, &re, &im);
				if (i >> 1 & 1) {
					assert_true(fabs(re - v[2 * i] / sqrt(p1)) < 10 * t);
					assert_true(fabs(im - v[2 * i + 1] / sqrt(p1)) < 10 * t);
				} else {
					assert_true(re == 0 && im == 0);
				}
			}
			/* an outcome of probability 0 is never chosen */
			assert_int_equal(qsim_measure(s, 1, 0.9999999), 0);
			/* reset: qubit 1 reads 0 whatever it read, norm 1 */
			qsim_reset(s2, 1, 0.5);
			assert_true(qsim_prob1(s2, 1) < t);
			assert_true(fabs(qsim_norm2(s2) - 1) < t);
			qsim_get(s2, 0, &re, &im);
			assert_true(fabs(re - v[2 * 2] / sqrt(p1)) < 10 * t);
			/* zero and normalize */
			qsim_zero(s);
			qsim_get(s, 0, &re, &im);
			assert_true(re == 1 && im == 0);
			assert_true(fabs(qsim_norm2(s) - 1) < t);
			qsim_set(s, 5, 3, 4);
			qsim_normalize(s);
			qsim_get(s, 5, &re, &im);
			assert_true(fabs(re - 3 / sqrt(26.0)) < t && fabs(im - 4 / sqrt(26.0)) < t);
			qsim_free(s);
			qsim_free(s2);
			free(v);
		}
	}
	qsim_force_kernel("portable");
}

/* Sums do not stall in float: 2^22 equal amplitudes, summed in double. */
static void test_float_sums(void **st)
{
	int n = 22, q;
	struct qsim *s = qsim_new(n, QSIM_SINGLE, 2, 0, NULL);
	double h[8], pr[4];
	struct circ_op op;
	int sel[2] = {0, 21};

	(void)st;
	assert_non_null(s);
	assert_int_equal(circ_std_gate("h", NULL, 0, &op, NULL), 0);
	memcpy(h, op.m, sizeof(h));
	for (q = 0; q < n; q++)
		qsim_apply(s, NULL, 0, &q, 1, h);
	assert_true(fabs(qsim_norm2(s) - 1) < 1e-6);
	assert_true(fabs(qsim_prob1(s, 21) - 0.5) < 1e-6);
	assert_int_equal(qsim_probs(s, sel, 2, pr, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_true(fabs(pr[i] - 0.25) < 1e-6);
	qsim_free(s);
}

static void test_memory_refusal(void **st)
{
	struct ciel_err err;

	(void)st;
	memset(&err, 0, sizeof(err));
	assert_null(qsim_new(20, QSIM_DOUBLE, 1, 1 << 20, &err));
	assert_int_equal(err.code, CIEL_ETOOBIG);
	assert_non_null(strstr(err.msg, "20 qubits in double need 16.0 MiB; 1.0 MiB"));
	memset(&err, 0, sizeof(err));
	assert_null(qsim_new(31, QSIM_SINGLE, 1, 1ull << 30, &err));
	assert_non_null(strstr(err.msg, "31 qubits in single need 16.0 GiB; 1.0 GiB"));
	memset(&err, 0, sizeof(err));
	assert_null(qsim_new(QSIM_MAX_QUBITS + 1, QSIM_SINGLE, 1, 0, &err));
	assert_int_equal(err.code, CIEL_ETOOBIG);
	assert_int_equal(qsim_state_bytes(20, QSIM_DOUBLE), 16 << 20);
	assert_int_equal(qsim_state_bytes(20, QSIM_SINGLE), 8 << 20);
	/* exactly the limit is enough */
	struct qsim *s = qsim_new(10, QSIM_DOUBLE, 1, 16 << 10, &err);
	assert_non_null(s);
	qsim_free(s);
}

static void test_kernel_names(void **st)
{
	(void)st;
	assert_int_equal(qsim_force_kernel("portable"), 0);
	assert_int_equal(qsim_force_kernel("nonsense"), -1);
	assert_string_equal(qsim_kernel_name(), "portable");
	assert_int_equal(qsim_force_kernel("avx2"), __builtin_cpu_supports("avx2") ? 0 : -1);
	assert_int_equal(qsim_force_kernel("avx512"), __builtin_cpu_supports("avx512f") ? 0 : -1);
	qsim_force_kernel("portable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kernel_names),
	    cmocka_unit_test(test_std_gates),
	    cmocka_unit_test(test_std_gates_threads),
	    cmocka_unit_test(test_all_positions),
	    cmocka_unit_test(test_fused_matrices),
	    cmocka_unit_test(test_fused_matrices_threads),
	    cmocka_unit_test(test_fusion),
	    cmocka_unit_test(test_blocked_runs),
	    cmocka_unit_test(test_fusion_shapes),
	    cmocka_unit_test(test_probs_measure_reset),
	    cmocka_unit_test(test_float_sums),
	    cmocka_unit_test(test_memory_refusal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
