/*
 * qrun — run a circuit for a number of shots and count the outcomes.
 *
 * The circuit is transpiled for the profile, then compacted to the qubits it
 * touches (a 20-qubit device running a Bell pair simulates 2 qubits).
 *
 * Two methods:
 *  - sampled: the circuit only measures at the end and the profile's noise is
 *    at most a readout error, so one simulation of the unitary part gives the
 *    exact distribution; shots are drawn from it and readout flips applied
 *    per bit.
 *  - trajectories: one Monte Carlo run per shot, from |0..0>, with the noise
 *    drawn as random Paulis and quantum jumps, measurements collapsing the
 *    state and if() reading the shot's own classical bits.
 *
 * Reproducibility: shot i draws from its own generator seeded by (seed, i),
 * and each shot's outcome is stored at its index before counting, so the
 * counts depend on the seed and not on how shots were spread over threads.
 */
#include "qsim/qrun.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qsim/qasm.h"
#include "qsim/qfuse.h"
#include "util/rng.h"

/* States this small run one per thread, shots in parallel; larger ones run
 * shots in turn with the threads inside qsim. Chosen by size alone, never by
 * thread count, so both paths give the same counts. */
#define QRUN_SHOT_PARALLEL_MAX_QUBITS 14
/* Up to this many measured qubits, sample from qsim_probs' marginal table;
 * above, stream the amplitudes once against sorted uniforms: no 2^nsel table,
 * and qsim_probs costs more than a stream for wide selections. A variable
 * so the tests can force either path. */
static int qrun_probs_max_qubits = 16;
#define QRUN_TRANSPILED_JSON_MAX (64 * 1024)

/* ---- random numbers: splitmix64 seeds xoshiro256** ---- */

/* Stream `stream` of seed: independent streams for shots, whatever the order. */
static void rng_init(struct rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed;

	x = rng_splitmix64(&x) ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
	rng_seed(r, x);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- circuit preparation ---- */

static int measures_something(const struct circ *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->ops[i].kind == CIRC_MEASURE)
			return 1;
	return 0;
}

/*
 * Renumber the qubits w touches to 0..k-1 in their original order, so qubits
 * the layout never uses cost no memory. Returns k.
 */
static int compact(struct circ *w)
{
	int map[CIRC_MAX_QUBITS], k = 0;

	for (int q = 0; q < CIRC_MAX_QUBITS; q++)
		map[q] = -1;
	for (size_t i = 0; i < w->n; i++)
		for (int j = 0; j < circ_op_nqubits(&w->ops[i]); j++)
			map[w->ops[i].q[j]] = 0;
	for (int q = 0; q < CIRC_MAX_QUBITS; q++)
		if (map[q] == 0)
			map[q] = k++;
	for (size_t i = 0; i < w->n; i++)
		for (int j = 0; j < circ_op_nqubits(&w->ops[i]); j++)
			w->ops[i].q[j] = map[w->ops[i].q[j]];
	w->nq = k;
	return k;
}

static int check_circ(const struct circ *c, struct ciel_err *err)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];

		for (int j = 0; j < circ_op_nqubits(op); j++)
			if (op->q[j] < 0 || op->q[j] >= c->nq || op->q[j] >= CIRC_MAX_QUBITS)
				return ciel_err_field(err, CIEL_EINVAL, "qasm",
						      "operation %zu: qubit %d out of range", i,
						      op->q[j]);
		if (op->kind == CIRC_MEASURE && (op->clbit < 0 || op->clbit >= c->ncl))
			return ciel_err_field(err, CIEL_EINVAL, "qasm",
					      "operation %zu: classical bit %d out of range", i,
					      op->clbit);
		if (op->cond_len &&
		    (op->cond_off < 0 || op->cond_len > 64 || op->cond_off + op->cond_len > c->ncl))
			return ciel_err_field(err, CIEL_EINVAL, "qasm",
					      "operation %zu: condition out of range", i);
		if (op->kind == CIRC_GATE &&
		    (op->ntgt < 1 || op->ntgt > CIRC_MAX_TGT || op->nctrl > CIRC_MAX_CTRL))
			return ciel_err_field(err, CIEL_EINVAL, "qasm",
					      "operation %zu: malformed gate %s", i, op->name);
	}
	return 0;
}

static int fuse_k(int nq)
{
	/* tiny states gain nothing from blocks wider than themselves */
	int k = QFUSE_MAXK_DEFAULT;

	return k > nq ? (nq > 0 ? nq : 1) : k;
}

/* ---- counting ---- */

/* Open-addressed table of clbit values; shots <= QRUN_MAX_SHOTS. */
struct tally {
	uint64_t *key;
	int *cnt;
	size_t cap, n;
};

static int tally_init(struct tally *t, size_t expect)
{
	t->cap = 16;
	while (t->cap < 2 * expect)
		t->cap *= 2;
	t->n = 0;
	t->key = calloc(t->cap, sizeof(*t->key));
	t->cnt = calloc(t->cap, sizeof(*t->cnt));
	return t->key && t->cnt ? 0 : -1;
}

static void tally_release(struct tally *t)
{
	free(t->key);
	free(t->cnt);
}

static void tally_add(struct tally *t, uint64_t v)
{
	size_t i = (size_t)((v * 0x9e3779b97f4a7c15ULL) >> 20) & (t->cap - 1);

	while (t->cnt[i] && t->key[i] != v)
		i = (i + 1) & (t->cap - 1);
	if (!t->cnt[i]) {
		t->key[i] = v;
		t->n++;
	}
	t->cnt[i]++;
}

/* Qiskit's key: last-declared register left, c[0] of each register rightmost. */
static void format_key(const struct circ *c, uint64_t v, char *buf, size_t size)
{
	size_t pos = 0;

	for (size_t r = c->ncregs; r-- > 0;) {
		const struct circ_reg *reg = &c->cregs[r];

		if (r + 1 < c->ncregs && pos + 1 < size)
			buf[pos++] = ' ';
		for (int b = reg->len; b-- > 0 && pos + 1 < size;)
			buf[pos++] = (v >> (reg->off + b)) & 1 ? '1' : '0';
	}
	buf[pos] = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Counts of the kept shots as a JSON object, keys in ascending order. */
static json_t *count_outcomes(const struct circ *c, const uint64_t *out, const uint8_t *kept,
			      int shots, struct ciel_err *err)
{
	struct tally t;
	uint64_t *keys = NULL;
	json_t *o = NULL;
	char key[CIRC_MAX_CLBITS * 2 + 2];
	size_t nk = 0;

	if (tally_init(&t, (size_t)shots) < 0)
		goto nomem;
	for (int i = 0; i < shots; i++)
		if (!kept || kept[i])
			tally_add(&t, out[i]);
	keys = malloc((t.n ? t.n : 1) * sizeof(*keys));
	o = json_object();
	if (!keys || !o)
		goto nomem;
	for (size_t i = 0; i < t.cap; i++)
		if (t.cnt[i])
			keys[nk++] = t.key[i];
	qsort(keys, nk, sizeof(*keys), cmp_u64);
	for (size_t i = 0; i < nk; i++) {
		size_t j = (size_t)((keys[i] * 0x9e3779b97f4a7c15ULL) >> 20) & (t.cap - 1);

		while (t.key[j] != keys[i] || !t.cnt[j])
			j = (j + 1) & (t.cap - 1);
		format_key(c, keys[i], key, sizeof(key));
		if (json_object_set_new(o, key, json_integer(t.cnt[j])) < 0)
			goto nomem;
	}
	free(keys);
	tally_release(&t);
	return o;
nomem:
	json_decref(o);
	free(keys);
	tally_release(&t);
	ciel_err_set(err, CIEL_ENOMEM, "count outcomes: out of memory");
	return NULL;
}

/* ---- sampled method ---- */

/* Readout error on a recorded bit. */
static int readout(const struct qdev_noise *nz, int bit, struct rng *r)
{
	if (!nz)
		return bit;
	if (bit == 0 && nz->readout_p01 > 0 && rng_double(r) < nz->readout_p01)
		return 1;
	if (bit == 1 && nz->readout_p10 > 0 && rng_double(r) < nz->readout_p10)
		return 0;
	return bit;
}

struct run_ctx {
	const struct circ *w; /* transpiled and compacted */
	const struct qrun_opts *o;
	const struct qdev_noise *nz; /* NULL: noiseless */
	int shots;
	uint64_t *out;
	uint8_t *kept;
	/* trajectories */
	struct step *steps;
	size_t nsteps;
	int nq, qsim_threads;
	atomic_int next, done, stop;
	pthread_mutex_t lock; /* progress calls and the first error */
	int last_progress;
	struct ciel_err err;
	int failed;
};

static int is_cancelled(struct run_ctx *x)
{
	if (atomic_load(&x->stop))
		return 1;
	if (x->o->cancelled && x->o->cancelled(x->o->arg)) {
		atomic_store(&x->stop, 1);
		return 1;
	}
	return 0;
}

static void report_progress(struct run_ctx *x, int done, int total)
{
	int step = total / 100 > 0 ? total / 100 : 1;

	if (!x->o->progress)
		return;
	pthread_mutex_lock(&x->lock);
	if (done >= x->last_progress + step || done == total) {
		if (done > x->last_progress) {
			x->last_progress = done;
			x->o->progress(x->o->arg, done, total);
		}
	}
	pthread_mutex_unlock(&x->lock);
}

/* Apply prog's gates to s in slices, polling for cancellation between them. */
static int run_prog(struct run_ctx *x, const struct qfuse_prog *prog, struct qsim *s)
{
	const size_t slice =
	    64; /* cancel and progress granularity; cache-blocked runs need long slices */

	for (size_t i = 0; i < prog->n; i += slice) {
		struct qfuse_prog sub = *prog;

		if (is_cancelled(x))
			return -1;
		sub.g = prog->g + i;
		sub.n = prog->n - i < slice ? prog->n - i : slice;
		qfuse_run(&sub, s);
		report_progress(x, (int)(i + sub.n), (int)prog->n);
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Draw x->shots outcomes over the nsel qubits sel[] into idx[] (bit j is
 * sel[j]). Small selections use the marginal table; large ones stream the
 * amplitudes once against sorted uniforms, so no 2^nsel table is needed.
 */
static int sample_indices(struct run_ctx *x, struct qsim *s, const int *sel, int nsel,
			  struct rng *r, uint64_t *idx, struct ciel_err *err)
{
	int shots = x->shots;

	if (nsel <= qrun_probs_max_qubits) {
		size_t n = (size_t)1 << nsel;
		double *cum = malloc(n * sizeof(*cum)), acc = 0;

		if (!cum)
			return ciel_err_set(err, CIEL_ENOMEM, "sample: out of memory");
		if (qsim_probs(s, sel, nsel, cum, err) < 0) {
			free(cum);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			acc += cum[i];
			cum[i] = acc;
		}
		for (int k = 0; k < shots; k++) {
			double u = rng_double(r) * acc;
			size_t lo = 0, hi = n - 1;

			/* first i with cum[i] > u: never an outcome of probability 0 */
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;

				if (cum[mid] > u)
					hi = mid;
				else
					lo = mid + 1;
			}
			idx[k] = lo;
		}
		free(cum);
	} else {
		int nq = qsim_nqubits(s);
		uint64_t n = (uint64_t)1 << nq, a = 0;
		double *u = malloc((size_t)shots * sizeof(*u)), total = qsim_norm2(s), acc = 0;

		if (!u)
			return ciel_err_set(err, CIEL_ENOMEM, "sample: out of memory");
		for (int k = 0; k < shots; k++)
			u[k] = rng_double(r) * total;
		qsort(u, (size_t)shots, sizeof(*u), cmp_double);
		for (int k = 0; k < shots; k++) {
			double re, im;

			while (a < n) {
				qsim_get(s, a, &re, &im);
				if (acc + re * re + im * im > u[k])
					break;
				acc += re * re + im * im;
				a++;
			}
			if (a == n) /* rounding at the very top: the last index */
				a = n - 1;
			idx[k] = 0;
			for (int j = 0; j < nsel; j++)
				idx[k] |= ((a >> sel[j]) & 1) << j;
		}
		free(u);
	}
	return 0;
}

static int run_sampled(struct run_ctx *x, struct ciel_err *err)
{
	const struct circ *w = x->w;
	struct qfuse_prog prog = {0};
	struct circ_op *gates = NULL;
	struct qsim *s = NULL;
	uint64_t *idx = NULL;
	int sel[CIRC_MAX_QUBITS], nsel = 0, pos[CIRC_MAX_CLBITS], ret = -1;
	size_t ng = 0;
	struct rng r;

	/* the last measurement into a clbit decides it */
	for (int b = 0; b < CIRC_MAX_CLBITS; b++)
		pos[b] = -1;
	gates = malloc((w->n ? w->n : 1) * sizeof(*gates));
	if (!gates) {
		ciel_err_set(err, CIEL_ENOMEM, "run: out of memory");
		goto out;
	}
	for (size_t i = 0; i < w->n; i++) {
		const struct circ_op *op = &w->ops[i];
		int j;

		if (op->kind == CIRC_GATE) {
			gates[ng++] = *op;
		} else if (op->kind == CIRC_MEASURE) {
			for (j = 0; j < nsel && sel[j] != op->q[0]; j++)
				;
			if (j == nsel)
				sel[nsel++] = op->q[0];
			pos[op->clbit] = j;
		}
	}
	s = qsim_new(x->nq, x->o->prec, x->o->threads, x->o->max_bytes, err);
	if (!s)
		goto out;
	if (qfuse_build(gates, ng, fuse_k(x->nq), &prog, err) < 0)
		goto out;
	if (run_prog(x, &prog, s) < 0 || is_cancelled(x)) {
		ciel_err_set(err, CIEL_EUNAVAIL, "cancelled");
		goto out;
	}
	idx = malloc((size_t)x->shots * sizeof(*idx));
	if (!idx) {
		ciel_err_set(err, CIEL_ENOMEM, "run: out of memory");
		goto out;
	}
	rng_init(&r, x->o->seed, 0);
	if (sample_indices(x, s, sel, nsel, &r, idx, err) < 0)
		goto out;
	for (int k = 0; k < x->shots; k++) {
		uint64_t v = 0;

		for (int b = 0; b < w->ncl; b++)
			if (pos[b] >= 0 && readout(x->nz, (int)((idx[k] >> pos[b]) & 1), &r))
				v |= 1ULL << b;
		x->out[k] = v;
	}
	ret = 0;
out:
	free(idx);
	qfuse_release(&prog);
	qsim_free(s);
	free(gates);
	return ret;
}

/* ---- trajectories ---- */

struct step {
	const struct circ_op *op; /* NULL: a fused run */
	struct qfuse_prog prog;	  /* fused run of unconditioned gates (noiseless only) */
};

static void release_steps(struct step *steps, size_t n)
{
	for (size_t i = 0; steps && i < n; i++)
		qfuse_release(&steps[i].prog);
	free(steps);
}

/*
 * Cut w into steps. Noiseless: runs of unconditioned gates are fused once
 * and shared by every shot. Noisy: every gate is its own step, as noise
 * follows each one.
 */
static int build_steps(struct run_ctx *x, struct ciel_err *err)
{
	const struct circ *w = x->w;
	struct step *steps = calloc(w->n ? w->n : 1, sizeof(*steps));
	struct circ_op *run = malloc((w->n ? w->n : 1) * sizeof(*run));
	size_t n = 0, nrun = 0;

	if (!steps || !run) {
		free(steps);
		free(run);
		return ciel_err_set(err, CIEL_ENOMEM, "run: out of memory");
	}
	for (size_t i = 0; i <= w->n; i++) {
		const struct circ_op *op = i < w->n ? &w->ops[i] : NULL;

		if (op && op->kind == CIRC_BARRIER)
			continue;
		if (op && !x->nz && op->kind == CIRC_GATE && !op->cond_len) {
			run[nrun++] = *op;
			continue;
		}
		if (nrun) {
			if (qfuse_build(run, nrun, fuse_k(x->nq), &steps[n].prog, err) < 0) {
				release_steps(steps, n + 1);
				free(run);
				return -1;
			}
			n++;
			nrun = 0;
		}
		if (op)
			steps[n++].op = op;
	}
	free(run);
	x->steps = steps;
	x->nsteps = n;
	return 0;
}

static void pauli(struct qsim *s, int q, int which)
{
	static const double X[8] = {0, 0, 1, 0, 1, 0, 0, 0};
	static const double Y[8] = {0, 0, 0, -1, 0, 1, 0, 0};
	static const double Z[4] = {1, 0, -1, 0};

	if (which == 1)
		qsim_apply(s, NULL, 0, &q, 1, X);
	else if (which == 2)
		qsim_apply(s, NULL, 0, &q, 1, Y);
	else if (which == 3)
		qsim_apply_diag(s, &q, 1, Z);
}

/* Amplitude damping by gamma, unravelled as a quantum jump. */
static void damp(struct qsim *s, int q, double gamma, struct rng *r)
{
	double p1 = qsim_prob1(s, q);

	if (rng_double(r) < gamma * p1) {
		const double k1[8] = {0, 0, 1, 0, 0, 0, 0, 0}; /* |0><1| */

		qsim_apply(s, NULL, 0, &q, 1, k1);
	} else {
		const double k0[4] = {1, 0, sqrt(1 - gamma), 0};

		qsim_apply_diag(s, &q, 1, k0);
	}
	qsim_normalize(s);
}

/* Decoherence of one qubit during a gate of t_ns. */
static void decohere(const struct qdev_noise *nz, struct qsim *s, int q, double t_ns, struct rng *r)
{
	double t_us = t_ns * 1e-3, inv_tphi;

	if (t_us <= 0)
		return;
	if (nz->t1_us > 0)
		damp(s, q, 1 - exp(-t_us / nz->t1_us), r);
	if (nz->t2_us > 0) {
		/* 1/T2 = 1/(2 T1) + 1/Tphi: dephase only by what T1 does not explain */
		inv_tphi = 1 / nz->t2_us - (nz->t1_us > 0 ? 1 / (2 * nz->t1_us) : 0);
		if (inv_tphi > 0 && rng_double(r) < (1 - exp(-t_us * inv_tphi)) / 2)
			pauli(s, q, 3);
	}
}

/*
 * Noise after one gate: depolarizing, then damping and dephasing on each of
 * its qubits. Returns 0 if the shot goes on, 1 if a photonic herald failed.
 */
static int gate_noise(const struct qdev_noise *nz, struct qsim *s, const struct circ_op *op,
		      struct rng *r)
{
	int nq = op->nctrl + op->ntgt;

	if (nq == 2) {
		double p = nz->p2 + nz->distinguishability;

		if (nz->herald_p2 > 0 && rng_double(r) >= nz->herald_p2)
			return 1;
		if (p > 0 && rng_double(r) < p) {
			/* one of the 15 non-identity two-qubit Paulis */
			int k = 1 + (int)(rng_double(r) * 15);

			pauli(s, op->q[0], k & 3);
			pauli(s, op->q[1], k >> 2);
		}
	} else if (nz->p1 > 0) {
		/* wider gates are never native; treat each qubit as a 1-qubit gate */
		for (int j = 0; j < nq; j++)
			if (rng_double(r) < nz->p1)
				pauli(s, op->q[j], 1 + (int)(rng_double(r) * 3));
	}
	for (int j = 0; j < nq; j++)
		decohere(nz, s, op->q[j], nq == 2 ? nz->t2q_ns : nz->t1q_ns, r);
	return 0;
}

static int cond_holds(const struct circ_op *op, uint64_t creg)
{
	uint64_t mask = op->cond_len >= 64 ? ~0ULL : (1ULL << op->cond_len) - 1;

	return ((creg >> op->cond_off) & mask) == op->cond_val;
}

/*
 * One shot: fills x->out[shot] with the recorded bits; returns 1 if the shot
 * is kept, 0 if its herald failed, -1 if the job was cancelled mid-shot
 * (polled between steps only for states large enough to make a shot slow).
 */
static int run_shot(struct run_ctx *x, struct qsim *s, int shot)
{
	int poll = x->nq > QRUN_SHOT_PARALLEL_MAX_QUBITS;
	const struct qdev_noise *nz = x->nz;
	uint64_t creg = 0;
	struct rng r;

	rng_init(&r, x->o->seed, (uint64_t)shot);
	qsim_zero(s);
	if (nz && nz->prep_err > 0)
		for (int q = 0; q < x->nq; q++)
			if (rng_double(&r) < nz->prep_err)
				pauli(s, q, 1);
	for (size_t i = 0; i < x->nsteps; i++) {
		const struct circ_op *op = x->steps[i].op;

		if (poll && is_cancelled(x))
			return -1;
		if (!op) {
			qfuse_run(&x->steps[i].prog, s);
			continue;
		}
		if (op->cond_len && !cond_holds(op, creg))
			continue;
		if (op->kind == CIRC_GATE) {
			qsim_apply(s, op->q, op->nctrl, op->q + op->nctrl, op->ntgt, op->m);
			if (nz && gate_noise(nz, s, op, &r))
				return 0;
		} else if (op->kind == CIRC_MEASURE) {
			int bit = readout(nz, qsim_measure(s, op->q[0], rng_double(&r)), &r);

			creg = (creg & ~(1ULL << op->clbit)) | ((uint64_t)bit << op->clbit);
		} else if (op->kind == CIRC_RESET) {
			qsim_reset(s, op->q[0], rng_double(&r));
		}
	}
	x->out[shot] = creg;
	return 1;
}

static void *traj_worker(void *arg)
{
	struct run_ctx *x = arg;
	struct ciel_err err = {0};
	const int chunk = 8;
	struct qsim *s;

	s = qsim_new(x->nq, x->o->prec, x->qsim_threads, x->o->max_bytes, &err);
	if (!s) {
		pthread_mutex_lock(&x->lock);
		if (!x->failed) {
			x->failed = 1;
			x->err = err;
		}
		pthread_mutex_unlock(&x->lock);
		atomic_store(&x->stop, 1);
		return NULL;
	}
	for (;;) {
		int first = atomic_fetch_add(&x->next, chunk), last, done;

		if (first >= x->shots || is_cancelled(x))
			break;
		last = first + chunk < x->shots ? first + chunk : x->shots;
		for (int i = first; i < last; i++) {
			int kept = run_shot(x, s, i);

			if (kept < 0)
				break;
			x->kept[i] = (uint8_t)kept;
		}
		if (atomic_load(&x->stop))
			break;
		done = atomic_fetch_add(&x->done, last - first) + (last - first);
		report_progress(x, done, x->shots);
	}
	qsim_free(s);
	return NULL;
}

static int run_trajectories(struct run_ctx *x, struct ciel_err *err)
{
	int nthreads = 1, started = 0;
	pthread_t *tids = NULL;

	if (build_steps(x, err) < 0)
		return -1;
	x->qsim_threads = x->o->threads;
	if (x->nq <= QRUN_SHOT_PARALLEL_MAX_QUBITS) {
		nthreads = x->o->threads < x->shots ? x->o->threads : x->shots;
		x->qsim_threads = 1;
	}
	if (nthreads > 1)
		tids = calloc((size_t)nthreads, sizeof(*tids));
	for (int t = 1; tids && t < nthreads; t++)
		if (pthread_create(&tids[t], NULL, traj_worker, x) == 0)
			started = t;
		else
			break;
	traj_worker(x);
	for (int t = 1; t <= started; t++)
		pthread_join(tids[t], NULL);
	free(tids);
	if (x->failed) {
		*err = x->err;
		return -1;
	}
	if (atomic_load(&x->stop))
		return ciel_err_set(err, CIEL_EUNAVAIL, "cancelled");
	return 0;
}

/* ---- entry points ---- */

static int noise_beyond_readout(const struct qdev_profile *p)
{
	const struct qdev_noise *n = &p->noise;

	if (p->noiseless)
		return 0;
	return n->p1 > 0 || n->p2 > 0 || n->t1_us > 0 || n->t2_us > 0 || n->prep_err > 0 ||
	       (n->herald_p2 > 0 && n->herald_p2 < 1) || n->distinguishability > 0;
}

static const struct qdev_profile *profile_or_ideal(const struct qdev_profile *p,
						   struct ciel_err *err)
{
	return p ? p : qdev_find("ideal", err);
}

int qrun(const struct circ *c, const struct qrun_opts *o, struct qrun_result *res,
	 struct ciel_err *err)
{
	const struct qdev_profile *p;
	struct run_ctx x;
	struct circ w;
	double t0;
	int ret = -1;

	memset(res, 0, sizeof(*res));
	memset(&x, 0, sizeof(x));
	circ_init(&w);
	res->shots = o->shots;
	res->seed = o->seed;
	res->method = "sampled";
	if (o->shots < 1 || o->shots > QRUN_MAX_SHOTS)
		return ciel_err_field(err, CIEL_EINVAL, "shots", "shots must be 1 to %d, not %d",
				      QRUN_MAX_SHOTS, o->shots);
	if (o->threads < 1)
		return ciel_err_field(err, CIEL_EINVAL, "threads",
				      "threads must be at least 1, not %d", o->threads);
	if (check_circ(c, err) < 0)
		return -1;
	if (!measures_something(c))
		return ciel_err_field(err, CIEL_EINVAL, "qasm",
				      "circuit measures nothing: add measure");
	p = profile_or_ideal(o->profile, err);
	if (!p)
		return -1;
	if (qdev_transpile(p, c, &w, err) < 0)
		goto out;
	if (check_circ(&w, err) < 0) {
		ciel_err_prefix(err, "transpiled circuit: ");
		goto out;
	}
	res->depth = circ_depth(&w);
	res->gate_counts = circ_gate_counts(&w);
	res->transpiled = qasm_emit(&w);
	if (!res->gate_counts || !res->transpiled) {
		ciel_err_set(err, CIEL_ENOMEM, "run: out of memory");
		goto out;
	}
	res->qubits = compact(&w);

	x.w = &w;
	x.o = o;
	x.nz = p->noiseless ? NULL : &p->noise;
	x.shots = o->shots;
	x.nq = res->qubits;
	x.last_progress = 0;
	pthread_mutex_init(&x.lock, NULL);
	x.out = calloc((size_t)o->shots, sizeof(*x.out));
	x.kept = malloc((size_t)o->shots);
	if (!x.out || !x.kept) {
		ciel_err_set(err, CIEL_ENOMEM, "run: out of memory");
		goto out_lock;
	}
	memset(x.kept, 1, (size_t)o->shots);

	t0 = now_s();
	if (circ_terminal_measure(&w) && !noise_beyond_readout(p)) {
		if (run_sampled(&x, err) < 0)
			goto out_lock;
	} else {
		res->method = "trajectories";
		if (run_trajectories(&x, err) < 0)
			goto out_lock;
	}
	res->seconds = now_s() - t0;
	res->shots_kept = 0;
	for (int i = 0; i < o->shots; i++)
		res->shots_kept += x.kept[i];
	/* keys are formatted with the submitted registers: counts mean what the user wrote */
	res->counts = count_outcomes(c, x.out, x.kept, o->shots, err);
	if (!res->counts)
		goto out_lock;
	ret = 0;
out_lock:
	pthread_mutex_destroy(&x.lock);
out:
	release_steps(x.steps, x.nsteps);
	free(x.out);
	free(x.kept);
	circ_release(&w);
	return ret;
}

void qrun_result_release(struct qrun_result *res)
{
	json_decref(res->counts);
	json_decref(res->gate_counts);
	free(res->transpiled);
	memset(res, 0, sizeof(*res));
}

json_t *qrun_result_json(const struct qrun_result *res)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (json_object_set(o, "counts", res->counts ? res->counts : json_object()) < 0 ||
	    json_object_set_new(o, "shots", json_integer(res->shots)) < 0 ||
	    json_object_set_new(o, "shots_kept", json_integer(res->shots_kept)) < 0 ||
	    json_object_set_new(o, "seed", json_integer((json_int_t)res->seed)) < 0 ||
	    json_object_set_new(o, "seconds", json_real(res->seconds)) < 0 ||
	    json_object_set_new(o, "qubits", json_integer(res->qubits)) < 0 ||
	    json_object_set_new(o, "method", json_string(res->method ? res->method : "")) < 0 ||
	    json_object_set_new(o, "depth", json_integer((json_int_t)res->depth)) < 0 ||
	    json_object_set(o, "gate_counts", res->gate_counts ? res->gate_counts : json_object()) <
		0)
		goto fail;
	if (res->transpiled && strlen(res->transpiled) <= QRUN_TRANSPILED_JSON_MAX &&
	    json_object_set_new(o, "transpiled", json_string(res->transpiled)) < 0)
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

int qrun_plan(const struct circ *c, const struct qdev_profile *p, enum qsim_prec prec, int *qubits,
	      uint64_t *state_bytes, struct ciel_err *err)
{
	struct circ w;
	int n;

	if (check_circ(c, err) < 0)
		return -1;
	/* refused at admission, not after the job has waited in a queue */
	if (!measures_something(c))
		return ciel_err_field(err, CIEL_EINVAL, "qasm",
				      "circuit measures nothing: add measure");
	p = profile_or_ideal(p, err);
	if (!p)
		return -1;
	circ_init(&w);
	if (qdev_transpile(p, c, &w, err) < 0) {
		circ_release(&w);
		return -1;
	}
	n = compact(&w);
	circ_release(&w);
	if (qubits)
		*qubits = n;
	if (state_bytes)
		*state_bytes = qsim_state_bytes(n, prec);
	return 0;
}

struct qsim *qrun_statevector(const struct circ *c, enum qsim_prec prec, int threads,
			      struct ciel_err *err)
{
	struct qfuse_prog prog = {0};
	struct circ_op *gates;
	struct qsim *s;
	size_t ng = 0;

	if (check_circ(c, err) < 0)
		return NULL;
	if (threads < 1)
		threads = 1;
	for (size_t i = 0; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];

		if (op->kind == CIRC_MEASURE || op->kind == CIRC_RESET || op->cond_len) {
			ciel_err_field(err, CIEL_EINVAL, "qasm",
				       "the state vector needs a circuit without measure, reset "
				       "or if");
			return NULL;
		}
	}
	gates = malloc((c->n ? c->n : 1) * sizeof(*gates));
	if (!gates) {
		ciel_err_set(err, CIEL_ENOMEM, "statevector: out of memory");
		return NULL;
	}
	for (size_t i = 0; i < c->n; i++)
		if (c->ops[i].kind == CIRC_GATE)
			gates[ng++] = c->ops[i];
	s = qsim_new(c->nq, prec, threads, 0, err);
	if (s && qfuse_build(gates, ng, fuse_k(c->nq), &prog, err) < 0) {
		qsim_free(s);
		s = NULL;
	}
	if (s)
		qfuse_run(&prog, s);
	qfuse_release(&prog);
	free(gates);
	return s;
}

/* ---- the counts table ---- */

struct outcome {
	const char *key;
	int64_t n;
};

static int by_count(const void *x, const void *y)
{
	const struct outcome *a = x, *b = y;

	if (a->n != b->n)
		return a->n < b->n ? 1 : -1;
	return strcmp(a->key, b->key);
}

int qrun_print_counts(FILE *f, const json_t *counts, size_t max_rows)
{
	static const char bar[] = "########################################";
	const int bar_width = (int)sizeof(bar) - 1;
	size_t n = json_object_size(counts), k = 0, shown;
	int64_t total = 0, max = 1;
	struct outcome *o;
	const char *key;
	json_t *v;
	int kw = 7;

	o = calloc(n + 1, sizeof(*o));
	if (!o)
		return -1;
	json_object_foreach((json_t *)counts, key, v)
	{
		o[k].key = key;
		o[k].n = json_integer_value(v);
		total += o[k].n;
		if (o[k].n > max)
			max = o[k].n;
		if ((int)strlen(key) > kw)
			kw = (int)strlen(key);
		k++;
	}
	qsort(o, n, sizeof(*o), by_count);
	shown = n > max_rows ? max_rows : n;
	fprintf(f, "%-*s %8s %7s\n", kw, "OUTCOME", "COUNT", "PROB");
	for (size_t i = 0; i < shown; i++)
		fprintf(f, "%-*s %8lld %7.4f %.*s\n", kw, o[i].key, (long long)o[i].n,
			total ? (double)o[i].n / (double)total : 0.0,
			(int)((o[i].n * bar_width + max / 2) / max), bar);
	if (n > shown)
		fprintf(f, "... %zu more outcomes (--output json shows them all)\n", n - shown);
	free(o);
	return 0;
}
