/*
 * test_qrun — the runner: seeded reproducibility whatever the thread count,
 * Qiskit's bit order, sampled counts against exact probabilities with a
 * chi-squared test, and each noise channel's rate against its closed form.
 *
 * Circuits are built with the circ API, not parsed, so a parser bug cannot
 * hide a runner bug. Seeds are fixed: a statistical check passes or fails
 * the same way every run, and thresholds sit at p = 1e-4 / 5 sigma.
 */
/* the module itself, to force its sampling path (qrun_probs_max_qubits) */
#include "qsim/qrun.c"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct circ new_circ(int nq, int ncl)
{
	struct circ c;

	circ_init(&c);
	assert_int_equal(circ_add_qreg(&c, "q", nq, NULL), 0);
	if (ncl)
		assert_int_equal(circ_add_creg(&c, "c", ncl, NULL), 0);
	return c;
}

static void gate(struct circ *c, const char *name, const double *params, int np, int q0, int q1,
		 int q2)
{
	struct circ_op op;
	int qs[3] = {q0, q1, q2};
	struct ciel_err err = {0};

	assert_int_equal(circ_std_gate(name, params, np, &op, &err), 0);
	for (int k = 0; k < op.nctrl + op.ntgt; k++)
		op.q[k] = qs[k];
	assert_int_equal(circ_push(c, &op, NULL), 0);
}

static void g1(struct circ *c, const char *name, int q)
{
	gate(c, name, NULL, 0, q, -1, -1);
}

static void g2(struct circ *c, const char *name, int a, int b)
{
	gate(c, name, NULL, 0, a, b, -1);
}

static struct circ_op *measure(struct circ *c, int q, int clbit)
{
	struct circ_op op = {.kind = CIRC_MEASURE, .q = {q}, .clbit = clbit};

	snprintf(op.name, sizeof(op.name), "measure");
	assert_int_equal(circ_push(c, &op, NULL), 0);
	return &c->ops[c->n - 1];
}

static void reset(struct circ *c, int q)
{
	struct circ_op op = {.kind = CIRC_RESET, .q = {q}};

	snprintf(op.name, sizeof(op.name), "reset");
	assert_int_equal(circ_push(c, &op, NULL), 0);
}

static struct qrun_opts opts(int shots, uint64_t seed, int threads)
{
	struct qrun_opts o = {
	    .shots = shots, .seed = seed, .threads = threads, .prec = QSIM_DOUBLE};
	return o;
}

static void run_ok(const struct circ *c, const struct qrun_opts *o, struct qrun_result *res)
{
	struct ciel_err err = {0};

	if (qrun(c, o, res, &err) < 0)
		fail_msg("qrun: %s", err.msg);
}

static long count_of(const struct qrun_result *res, const char *key)
{
	json_t *v = json_object_get(res->counts, key);

	return v ? (long)json_integer_value(v) : 0;
}

static long total(const struct qrun_result *res)
{
	const char *k;
	json_t *v;
	long t = 0;

	json_object_foreach(res->counts, k, v) t += (long)json_integer_value(v);
	return t;
}

/* The ideal profile with some noise switched on: same gates and layout. */
static struct qdev_profile noisy_ideal(void)
{
	const struct qdev_profile *ideal = qdev_find("ideal", NULL);
	struct qdev_profile p;

	assert_non_null(ideal);
	p = *ideal;
	p.noiseless = 0;
	memset(&p.noise, 0, sizeof(p.noise));
	return p;
}

/* |got - n p| within 5 binomial standard deviations */
static void assert_binomial(long got, long n, double p, const char *what)
{
	double sd = sqrt((double)n * p * (1 - p));

	if (fabs((double)got - (double)n * p) > 5 * sd + 1)
		fail_msg("%s: %ld of %ld, want %.1f +- %.1f", what, got, n, n * p, 5 * sd);
}

/* ---- chi-squared: regularised upper incomplete gamma, Q(dof/2, x/2) ---- */

static double gamma_q(double a, double x)
{
	double gln = lgamma(a), sum, del, ap, b, c, d, h;

	if (x <= 0)
		return 1;
	if (x < a + 1) { /* series for P */
		ap = a;
		sum = del = 1 / a;
		for (int n = 0; n < 1000; n++) {
			ap += 1;
			del *= x / ap;
			sum += del;
			if (fabs(del) < fabs(sum) * 1e-15)
				break;
		}
		return 1 - sum * exp(-x + a * log(x) - gln);
	}
	/* continued fraction for Q (modified Lentz) */
	b = x + 1 - a;
	c = 1 / 1e-300;
	d = 1 / b;
	h = d;
	for (int i = 1; i < 1000; i++) {
		double an = -i * (i - a), del2;

		b += 2;
		d = an * d + b;
		if (fabs(d) < 1e-300)
			d = 1e-300;
		c = b + an / c;
		if (fabs(c) < 1e-300)
			c = 1e-300;
		d = 1 / d;
		del2 = d * c;
		h *= del2;
		if (fabs(del2 - 1) < 1e-15)
			break;
	}
	return exp(-x + a * log(x) - gln) * h;
}

/* p-value of counts (clbit value i = outcome index i) against probs[0..n). */
static double chi2_pvalue(const struct qrun_result *res, const double *probs, int nbits)
{
	size_t n = (size_t)1 << nbits;
	double stat = 0, rest_o = 0, rest_e = 0, shots = (double)res->shots;
	int bins = 0;
	char key[64];

	for (size_t i = 0; i < n; i++) {
		double e = probs[i] * shots, o;

		for (int b = 0; b < nbits; b++)
			key[nbits - 1 - b] = (i >> b) & 1 ? '1' : '0';
		key[nbits] = 0;
		o = (double)count_of(res, key);
		if (probs[i] < 1e-12 && o > 0)
			return 0; /* an impossible outcome */
		if (e < 5) {
			rest_o += o;
			rest_e += e;
			continue;
		}
		stat += (o - e) * (o - e) / e;
		bins++;
	}
	if (rest_e > 0) {
		stat += (rest_o - rest_e) * (rest_o - rest_e) / rest_e;
		bins++;
	}
	return bins < 2 ? 1 : gamma_q((bins - 1) / 2.0, stat / 2);
}

static void test_chi2_helper(void **st)
{
	(void)st;
	/* scipy: chi2.sf(3.841459, 1) = 0.05, chi2.sf(20, 10) = 0.0292527, chi2.sf(80, 100) =
	 * 0.9296649 */
	assert_true(fabs(gamma_q(0.5, 3.841459 / 2) - 0.05) < 1e-5);
	assert_true(fabs(gamma_q(5, 10) - 0.029252688) < 1e-6);
	assert_true(fabs(gamma_q(50, 40) - 0.929664933) < 1e-6);
}

/* ---- tests ---- */

static void test_bit_order(void **st)
{
	struct circ c = new_circ(2, 2);
	struct qrun_opts o = opts(100, 1, 1);
	struct qrun_result res;

	(void)st;
	g1(&c, "x", 0);
	measure(&c, 0, 0);
	measure(&c, 1, 1);
	run_ok(&c, &o, &res);
	/* c[0] rightmost */
	assert_int_equal(count_of(&res, "01"), 100);
	assert_int_equal(json_object_size(res.counts), 1);
	assert_string_equal(res.method, "sampled");
	assert_int_equal(res.shots_kept, 100);
	qrun_result_release(&res);
	circ_release(&c);

	/* two registers: the last-declared one on the left, a space between */
	circ_init(&c);
	assert_int_equal(circ_add_qreg(&c, "q", 3, NULL), 0);
	assert_int_equal(circ_add_creg(&c, "a", 1, NULL), 0);
	assert_int_equal(circ_add_creg(&c, "b", 2, NULL), 0);
	g1(&c, "x", 0);
	g1(&c, "x", 2);
	measure(&c, 0, 0); /* a[0] = 1 */
	measure(&c, 1, 1); /* b[0] = 0 */
	measure(&c, 2, 2); /* b[1] = 1 */
	run_ok(&c, &o, &res);
	assert_int_equal(count_of(&res, "10 1"), 100);
	qrun_result_release(&res);

	/* a mid-circuit measurement takes the trajectory path: same convention */
	reset(&c, 1);
	measure(&c, 1, 1);
	run_ok(&c, &o, &res);
	assert_string_equal(res.method, "trajectories");
	assert_int_equal(count_of(&res, "10 1"), 100);
	qrun_result_release(&res);
	circ_release(&c);
}

/* H on every qubit, some entanglement and mid-circuit measurement with reset */
static struct circ mixed_circuit(int mid)
{
	struct circ c = new_circ(4, 4);
	double th = 0.7;

	for (int q = 0; q < 4; q++)
		g1(&c, "h", q);
	g2(&c, "cx", 0, 1);
	gate(&c, "ry", &th, 1, 2, -1, -1);
	g2(&c, "cz", 2, 3);
	if (mid) {
		measure(&c, 1, 1);
		reset(&c, 1);
		g1(&c, "h", 1);
	}
	for (int q = 0; q < 4; q++)
		measure(&c, q, q);
	return c;
}

static void test_reproducible(void **st)
{
	(void)st;
	for (int mid = 0; mid < 2; mid++) {
		struct circ c = mixed_circuit(mid);
		struct qrun_result a, b, d, e;
		struct qrun_opts o1 = opts(3000, 42, 1), o2 = opts(3000, 42, 2),
				 o3 = opts(3000, 43, 2), o4 = opts(3000, 42, 3);

		run_ok(&c, &o1, &a);
		run_ok(&c, &o2, &b);
		run_ok(&c, &o3, &d);
		run_ok(&c, &o4, &e);
		assert_string_equal(a.method, mid ? "trajectories" : "sampled");
		assert_int_equal(total(&a), 3000);
		/* same seed: same counts, whatever the threads */
		assert_true(json_equal(a.counts, b.counts));
		assert_true(json_equal(a.counts, e.counts));
		/* another seed: other counts (16 outcomes, 3000 shots) */
		assert_false(json_equal(a.counts, d.counts));
		assert_int_equal(a.qubits, 4);
		qrun_result_release(&a);
		qrun_result_release(&b);
		qrun_result_release(&d);
		qrun_result_release(&e);
		circ_release(&c);
	}
}

/* A random circuit of qelib1 gates on n qubits, no measurement. */
static struct circ random_circuit(int n, int ngates, unsigned *seed)
{
	static const char *const names[] = {"h",  "x",	"sx", "t",   "u3",  "rx",  "ry",   "rz",
					    "cx", "cz", "cp", "cu3", "ccx", "rzz", "swap", "cswap"};
	struct circ c = new_circ(n, n);

	for (int i = 0; i < ngates; i++) {
		const char *name = names[rand_r(seed) % (sizeof(names) / sizeof(names[0]))];
		int k = circ_std_nqubits(name), np = circ_std_nparams(name), qs[3] = {-1, -1, -1};
		double p[4];

		for (int j = 0; j < np; j++)
			p[j] = (rand_r(seed) / (double)RAND_MAX - 0.5) * 4 * M_PI;
		for (int j = 0; j < k; j++) {
			int q, dup;

			do {
				q = rand_r(seed) % n;
				dup = 0;
				for (int m = 0; m < j; m++)
					dup |= qs[m] == q;
			} while (dup);
			qs[j] = q;
		}
		gate(&c, name, p, np, qs[0], qs[1], qs[2]);
	}
	return c;
}

static void test_chi2_sampled(void **st)
{
	unsigned seed = 12345;

	(void)st;
	for (int t = 0; t < 8; t++) {
		/* half the circuits sample from the marginal table, half stream */
		qrun_probs_max_qubits = t < 4 ? 16 : 0;
		int n = 3 + t % 3;
		struct circ c = random_circuit(n, 12 * n, &seed);
		struct ciel_err err = {0};
		struct qsim *s = qrun_statevector(&c, QSIM_DOUBLE, 1, &err);
		double probs[64];
		struct qrun_opts o = opts(20000, 1000 + (uint64_t)t, 2);
		struct qrun_result res;
		double p;

		assert_non_null(s);
		for (uint64_t i = 0; i < (1u << n); i++) {
			double re, im;

			qsim_get(s, i, &re, &im);
			probs[i] = re * re + im * im;
		}
		qsim_free(s);
		/* odd circuits leave their top qubit unmeasured: its clbit reads 0 */
		if (t % 2) {
			for (uint64_t i = 0; i < (1u << (n - 1)); i++) {
				probs[i] += probs[i | 1u << (n - 1)];
				probs[i | 1u << (n - 1)] = 0;
			}
		}
		for (int q = 0; q < n - t % 2; q++)
			measure(&c, q, q);
		run_ok(&c, &o, &res);
		qrun_probs_max_qubits = 16;
		p = chi2_pvalue(&res, probs, n);
		if (p < 1e-4)
			fail_msg("circuit %d (%d qubits): chi-squared p = %g", t, n, p);
		/* the same circuit through trajectories (a no-op reset forces them) */
		qrun_result_release(&res);
		{
			struct circ d = new_circ(n, n);

			reset(&d, 0);
			for (size_t i = 0; i < c.n; i++)
				assert_int_equal(circ_push(&d, &c.ops[i], NULL), 0);
			o.shots = 4000;
			run_ok(&d, &o, &res);
			assert_string_equal(res.method, "trajectories");
			p = chi2_pvalue(&res, probs, n);
			if (p < 1e-4)
				fail_msg("circuit %d by trajectories: chi-squared p = %g", t, p);
			qrun_result_release(&res);
			circ_release(&d);
		}
		circ_release(&c);
	}
	/* and the test can fail: counts of one circuit against another's probabilities */
	{
		struct circ c = new_circ(2, 2);
		double uniform[4] = {0.25, 0.25, 0.25, 0.25};
		double th = 1.2;
		struct qrun_opts o = opts(20000, 5, 1);
		struct qrun_result res;

		g1(&c, "h", 0);
		gate(&c, "ry", &th, 1, 1, -1, -1);
		measure(&c, 0, 0);
		measure(&c, 1, 1);
		run_ok(&c, &o, &res);
		assert_true(chi2_pvalue(&res, uniform, 2) < 1e-4);
		qrun_result_release(&res);
		circ_release(&c);
	}
}

static void test_readout_error(void **st)
{
	struct qdev_profile p = noisy_ideal();

	(void)st;
	p.noise.readout_p01 = 0.1;
	p.noise.readout_p10 = 0.25;
	for (int traj = 0; traj < 2; traj++) {
		struct circ c = new_circ(2, 2);
		struct qrun_opts o = opts(20000, 77, 2);
		struct qrun_result res;

		o.profile = &p;
		if (traj)
			reset(&c, 0);
		g1(&c, "x", 0);
		measure(&c, 0, 0);
		measure(&c, 1, 1);
		run_ok(&c, &o, &res);
		assert_string_equal(res.method, traj ? "trajectories" : "sampled");
		/* c0 was 1: read 0 with p10; c1 was 0: read 1 with p01 */
		assert_binomial(count_of(&res, "00") + count_of(&res, "10"), 20000, 0.25,
				"c0 read as 0");
		assert_binomial(count_of(&res, "10") + count_of(&res, "11"), 20000, 0.1,
				"c1 read as 1");
		assert_binomial(count_of(&res, "10"), 20000, 0.25 * 0.1, "both flipped");
		qrun_result_release(&res);
		circ_release(&c);
	}
}

static void test_depolarizing_and_damping(void **st)
{
	struct qdev_profile p = noisy_ideal();
	struct circ c = new_circ(1, 1);
	struct qrun_opts o = opts(20000, 9, 2);
	struct qrun_result res;

	(void)st;
	o.profile = &p;
	g1(&c, "x", 0);
	measure(&c, 0, 0);
	/* depolarizing: X or Y (2/3 of p1) undo the x */
	p.noise.p1 = 0.3;
	run_ok(&c, &o, &res);
	assert_string_equal(res.method, "trajectories");
	assert_binomial(count_of(&res, "0"), 20000, 0.2, "depolarized x reads 0");
	qrun_result_release(&res);

	/* two-qubit depolarizing: each of the 15 Paulis with p2/15; 8 of them
	 * flip q0, 8 flip q1, 4 flip both */
	{
		struct circ d = new_circ(2, 2);

		p.noise.p1 = 0;
		p.noise.p2 = 0.6;
		g2(&d, "cz", 0, 1);
		measure(&d, 0, 0);
		measure(&d, 1, 1);
		run_ok(&d, &o, &res);
		assert_binomial(count_of(&res, "01") + count_of(&res, "11"), 20000, 0.32,
				"q0 flipped");
		assert_binomial(count_of(&res, "10") + count_of(&res, "11"), 20000, 0.32,
				"q1 flipped");
		assert_binomial(count_of(&res, "11"), 20000, 0.16, "both flipped");
		qrun_result_release(&res);
		circ_release(&d);
		p.noise.p2 = 0;
	}

	/* amplitude damping: gamma = 1 - exp(-t/T1) = 0.5 */
	p.noise.p1 = 0;
	p.noise.t1_us = 10;
	p.noise.t1q_ns = 10000 * log(2);
	run_ok(&c, &o, &res);
	assert_binomial(count_of(&res, "0"), 20000, 0.5, "damped |1> decays");
	qrun_result_release(&res);

	/* dephasing alone: h, wait, h; T2 = T1 * 2 would be none, T1 = 0 all T2 */
	circ_release(&c);
	c = new_circ(1, 1);
	g1(&c, "h", 0);
	g1(&c, "h", 0);
	measure(&c, 0, 0);
	p.noise.t1_us = 0;
	p.noise.t2_us = 10;
	p.noise.t1q_ns = 5000;
	/* a Z between the two h flips the outcome; after the first h (pz) and the
	 * second (no effect on Z basis) */
	run_ok(&c, &o, &res);
	assert_binomial(count_of(&res, "1"), 20000, (1 - exp(-0.5)) / 2, "dephased h-h");
	qrun_result_release(&res);
	circ_release(&c);
}

static void test_prep_and_herald(void **st)
{
	struct qdev_profile p = noisy_ideal();
	struct circ c = new_circ(3, 3);
	struct qrun_opts o = opts(20000, 11, 2);
	struct qrun_result res;

	(void)st;
	o.profile = &p;
	p.noise.herald_p2 = 0.6;
	g1(&c, "h", 0);
	g2(&c, "cz", 0, 1);
	g2(&c, "cz", 1, 2);
	g2(&c, "cz", 0, 2);
	g1(&c, "h", 0);
	for (int q = 0; q < 3; q++)
		measure(&c, q, q);
	run_ok(&c, &o, &res);
	assert_string_equal(res.method, "trajectories");
	assert_int_equal(res.shots, 20000);
	assert_binomial(res.shots_kept, 20000, 0.6 * 0.6 * 0.6, "heralded shots");
	assert_int_equal(total(&res), res.shots_kept);
	/* the kept shots are the ideal ones: h cz.. h on |000> gives |000> */
	assert_int_equal(count_of(&res, "000"), res.shots_kept);
	qrun_result_release(&res);

	/* preparation error: each qubit starts in |1> with prep_err */
	p.noise.herald_p2 = 0;
	p.noise.prep_err = 0.05;
	circ_release(&c);
	c = new_circ(2, 2);
	measure(&c, 0, 0);
	measure(&c, 1, 1);
	run_ok(&c, &o, &res);
	assert_int_equal(res.shots_kept, 20000);
	assert_binomial(count_of(&res, "01") + count_of(&res, "11"), 20000, 0.05, "q0 prep");
	assert_binomial(count_of(&res, "11"), 20000, 0.05 * 0.05, "both prep");
	qrun_result_release(&res);
	circ_release(&c);
}

static void test_conditions(void **st)
{
	struct circ c = new_circ(2, 2);
	struct qrun_opts o = opts(4000, 3, 2);
	struct qrun_result res;
	struct circ_op *m;

	(void)st;
	/* q0 random; if c == 1 then x q1: q1 copies q0 classically */
	g1(&c, "h", 0);
	measure(&c, 0, 0);
	g1(&c, "x", 1);
	m = &c.ops[c.n - 1];
	m->cond_off = 0;
	m->cond_len = 2;
	m->cond_val = 1;
	measure(&c, 1, 1);
	run_ok(&c, &o, &res);
	assert_string_equal(res.method, "trajectories");
	assert_int_equal(count_of(&res, "00") + count_of(&res, "11"), 4000);
	assert_binomial(count_of(&res, "11"), 4000, 0.5, "if followed the bit");
	qrun_result_release(&res);
	circ_release(&c);
}

static int cancel_now(void *arg)
{
	(void)arg;
	return 1;
}

/* called from worker threads: record, assert later in the test's own thread */
static void on_progress(void *arg, int done, int tot)
{
	int *last = arg;

	if (done <= last[0] || done > tot)
		last[3] = 1;
	last[0] = done;
	last[1] = tot;
	last[2]++;
}

static void test_errors_cancel_progress(void **st)
{
	struct circ c = new_circ(2, 2);
	struct qrun_opts o = opts(1000, 1, 2);
	struct qrun_result res;
	struct ciel_err err = {0};
	int prog[4] = {0, 0, 0, 0};

	(void)st;
	g1(&c, "h", 0);
	assert_int_equal(qrun(&c, &o, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_non_null(strstr(err.msg, "measures nothing"));
	qrun_result_release(&res);
	assert_int_equal(qrun_plan(&c, NULL, QSIM_DOUBLE, NULL, NULL, &err), -1);
	assert_string_equal(err.field, "qasm");

	measure(&c, 0, 0);
	reset(&c, 0);
	measure(&c, 0, 1);
	o.shots = 0;
	assert_int_equal(qrun(&c, &o, &res, &err), -1);
	assert_string_equal(err.field, "shots");
	qrun_result_release(&res);
	o.shots = QRUN_MAX_SHOTS + 1;
	assert_int_equal(qrun(&c, &o, &res, &err), -1);
	qrun_result_release(&res);

	o.shots = 1000;
	o.cancelled = cancel_now;
	assert_int_equal(qrun(&c, &o, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_non_null(strstr(err.msg, "cancelled"));
	qrun_result_release(&res);

	o.cancelled = NULL;
	o.progress = on_progress;
	o.arg = prog;
	run_ok(&c, &o, &res);
	assert_int_equal(prog[0], 1000);
	assert_int_equal(prog[1], 1000);
	assert_true(prog[2] >= 10 && prog[2] <= 130);
	assert_int_equal(prog[3], 0);
	qrun_result_release(&res);
	circ_release(&c);
}

static void test_compaction_plan_json(void **st)
{
	struct circ c = new_circ(6, 2);
	struct qrun_opts o = opts(500, 1, 1);
	struct qrun_result res;
	struct ciel_err err = {0};
	uint64_t bytes = 0;
	int nq = 0;
	json_t *j;

	(void)st;
	g1(&c, "h", 1);
	g2(&c, "cx", 1, 5);
	measure(&c, 1, 0);
	measure(&c, 5, 1);
	assert_int_equal(qrun_plan(&c, NULL, QSIM_DOUBLE, &nq, &bytes, &err), 0);
	assert_int_equal(nq, 2);
	assert_int_equal(bytes, qsim_state_bytes(2, QSIM_DOUBLE));
	/* on a 20-qubit device the Bell pair still simulates 2 qubits */
	assert_int_equal(
	    qrun_plan(&c, qdev_find("superconducting", NULL), QSIM_SINGLE, &nq, &bytes, &err), 0);
	assert_int_equal(nq, 2);
	assert_int_equal(bytes, qsim_state_bytes(2, QSIM_SINGLE));
	run_ok(&c, &o, &res);
	assert_int_equal(res.qubits, 2);
	assert_int_equal(count_of(&res, "00") + count_of(&res, "11"), 500);
	assert_binomial(count_of(&res, "11"), 500, 0.5, "bell");
	assert_int_equal(res.depth, 3);
	j = qrun_result_json(&res);
	assert_non_null(j);
	assert_true(json_equal(json_object_get(j, "counts"), res.counts));
	assert_int_equal(json_integer_value(json_object_get(j, "shots")), 500);
	assert_int_equal(json_integer_value(json_object_get(j, "shots_kept")), 500);
	assert_int_equal(json_integer_value(json_object_get(j, "qubits")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "seed")), 1);
	assert_string_equal(json_string_value(json_object_get(j, "method")), "sampled");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(j, "gate_counts"), "cx")), 1);
	assert_non_null(json_string_value(json_object_get(j, "transpiled")));
	assert_true(json_is_real(json_object_get(j, "seconds")));
	json_decref(j);
	qrun_result_release(&res);
	circ_release(&c);
}

static void test_statevector(void **st)
{
	struct circ c = new_circ(2, 1);
	struct ciel_err err = {0};
	struct qsim *s;
	double re, im;

	(void)st;
	g1(&c, "h", 0);
	g2(&c, "cx", 0, 1);
	s = qrun_statevector(&c, QSIM_DOUBLE, 1, &err);
	assert_non_null(s);
	qsim_get(s, 0, &re, &im);
	assert_true(fabs(re - M_SQRT1_2) < 1e-15 && fabs(im) < 1e-15);
	qsim_get(s, 3, &re, &im);
	assert_true(fabs(re - M_SQRT1_2) < 1e-15 && fabs(im) < 1e-15);
	qsim_get(s, 1, &re, &im);
	assert_true(fabs(re) < 1e-15 && fabs(im) < 1e-15);
	qsim_free(s);
	measure(&c, 0, 0);
	assert_null(qrun_statevector(&c, QSIM_DOUBLE, 1, &err));
	assert_int_equal(err.code, CIEL_EINVAL);
	circ_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_chi2_helper),
	    cmocka_unit_test(test_bit_order),
	    cmocka_unit_test(test_reproducible),
	    cmocka_unit_test(test_chi2_sampled),
	    cmocka_unit_test(test_readout_error),
	    cmocka_unit_test(test_depolarizing_and_damping),
	    cmocka_unit_test(test_prep_and_herald),
	    cmocka_unit_test(test_conditions),
	    cmocka_unit_test(test_errors_cancel_progress),
	    cmocka_unit_test(test_compaction_plan_json),
	    cmocka_unit_test(test_statevector),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
