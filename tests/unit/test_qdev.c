/*
 * test_qdev — the built-in profiles and the transpiler.
 *
 * The transpiler is checked against a tiny dense simulator written here (not
 * qsim.c), on random circuits of every standard gate, extra controls and
 * inverses: the output uses only native gates with consistent parameters,
 * couples only coupled pairs, gives the same measured distribution, and the
 * same state up to global phase once the final layout is undone.
 */
#include "qsim/qdev.h"

#include <complex.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef double complex cplx;

#define MAX_SIM 16 /* qubits the reference simulator takes */

/* ---- reference simulator: a state over n qubits, ops on mapped qubits ---- */

static void sim_apply(cplx *a, int n, const struct circ_op *op, const int *map)
{
	int nc = op->nctrl, nt = op->ntgt, dim = 1 << nt;
	uint64_t cmask = 0, tb[2];

	for (int i = 0; i < nc; i++)
		cmask |= 1ULL << map[op->q[i]];
	for (int j = 0; j < nt; j++)
		tb[j] = 1ULL << map[op->q[nc + j]];
	for (uint64_t x = 0; x < (1ULL << n); x++) {
		uint64_t idx[4];
		cplx in[4], out[4];

		if ((x & cmask) != cmask || (x & tb[0]) || (nt == 2 && (x & tb[1])))
			continue;
		for (int r = 0; r < dim; r++) {
			idx[r] = x | ((r & 1) ? tb[0] : 0) | ((r & 2) ? tb[1] : 0);
			in[r] = a[idx[r]];
		}
		for (int r = 0; r < dim; r++) {
			out[r] = 0;
			for (int c = 0; c < dim; c++)
				out[r] +=
				    (op->m[2 * (r * dim + c)] + I * op->m[2 * (r * dim + c) + 1]) *
				    in[c];
		}
		for (int r = 0; r < dim; r++)
			a[idx[r]] = out[r];
	}
}

/* Run the gates of c (measurements skipped) from |0..0>; map: circuit -> sim qubit. */
static cplx *sim_run(const struct circ *c, int n, const int *map)
{
	cplx *a = calloc(1ULL << n, sizeof(*a));

	assert_non_null(a);
	a[0] = 1;
	for (size_t i = 0; i < c->n; i++)
		if (c->ops[i].kind == CIRC_GATE)
			sim_apply(a, n, &c->ops[i], map);
	return a;
}

/* Exact distribution over the classical bits measured by c's ops. */
static void sim_dist(const struct circ *c, const cplx *a, int n, const int *map, double *dist)
{
	memset(dist, 0, (1u << c->ncl) * sizeof(*dist));
	for (uint64_t x = 0; x < (1ULL << n); x++) {
		unsigned v = 0;

		for (size_t i = 0; i < c->n; i++)
			if (c->ops[i].kind == CIRC_MEASURE && (x >> map[c->ops[i].q[0]] & 1))
				v |= 1u << c->ops[i].clbit;
		dist[v] += creal(a[x] * conj(a[x]));
	}
}

static int cond_holds(const struct circ_op *op, uint64_t creg)
{
	uint64_t mask = (1ULL << op->cond_len) - 1;

	return !op->cond_len || ((creg >> op->cond_off) & mask) == op->cond_val;
}

/*
 * Exact distribution of a circuit with mid-circuit measurement, reset and
 * conditions: every outcome is a branch, weighted by its probability.
 */
static void sim_branch(const struct circ *c, size_t i, cplx *a, int n, const int *map,
		       uint64_t creg, double p, double *dist)
{
	for (; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];
		uint64_t bit;
		double p1 = 0;

		if (!cond_holds(op, creg) || op->kind == CIRC_BARRIER)
			continue;
		if (op->kind == CIRC_GATE) {
			sim_apply(a, n, op, map);
			continue;
		}
		bit = 1ULL << map[op->q[0]];
		for (uint64_t x = 0; x < (1ULL << n); x++)
			if (x & bit)
				p1 += creal(a[x] * conj(a[x]));
		for (int o = 0; o < 2; o++) {
			double po = o ? p1 : 1 - p1;
			cplx *b;

			if (po < 1e-13)
				continue;
			b = calloc(1ULL << n, sizeof(*b));
			assert_non_null(b);
			for (uint64_t x = 0; x < (1ULL << n); x++)
				if (!(x & bit) == !o)
					b[op->kind == CIRC_RESET ? x & ~bit : x] = a[x] / sqrt(po);
			sim_branch(c, i + 1, b, n, map,
				   op->kind == CIRC_MEASURE
				       ? (creg & ~(1ULL << op->clbit)) | (uint64_t)o << op->clbit
				       : creg,
				   p * po, dist);
			free(b);
		}
		return;
	}
	dist[creg] += p;
}

/* ---- random circuits ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int rnd_int(int n)
{
	return (int)(rnd() % (uint64_t)n);
}

static double rnd_angle(void)
{
	return ((double)(rnd() >> 11) / (double)(1ULL << 53) * 2 - 1) * M_PI;
}

static size_t n_std_names(void)
{
	size_t n = 0;

	while (circ_std_names[n])
		n++;
	return n;
}

/*
 * A 2-target op with an arbitrary matrix (as ctrl@/inv@ of user gates can
 * give): Gram-Schmidt on random columns, a permutation with random phases,
 * a diagonal, or a phase on |00> beside a random 3x3 block (which leaves
 * Givens a column with nothing to eliminate); the transpiler must read only
 * op->m.
 */
static void random_u4(struct circ_op *op)
{
	cplx m[16];
	int kind = rnd_int(4), perm[4] = {0, 1, 2, 3};

	memset(op, 0, sizeof(*op));
	op->kind = CIRC_GATE;
	op->ntgt = 2;
	snprintf(op->name, sizeof(op->name), "unitary");
	for (int i = 3; i > 0; i--) {
		int j = rnd_int(i + 1), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int c = 0; c < 4; c++) {
		for (int r = 0; r < 4; r++)
			m[4 * r + c] = kind == 1 || kind == 2 ? 0 : rnd_angle() + I * rnd_angle();
		if (kind == 3 && c == 0) { /* a phase on |00>, a random block on the rest */
			for (int r = 0; r < 4; r++)
				m[4 * r] = r ? 0 : cexp(I * rnd_angle());
			continue;
		}
		if (kind == 1 || kind == 2) {
			m[4 * (kind == 1 ? perm[c] : c) + c] = cexp(I * rnd_angle());
			continue;
		}
		for (int k = 0; k < c; k++) {
			cplx d = 0;

			for (int r = 0; r < 4; r++)
				d += conj(m[4 * r + k]) * m[4 * r + c];
			for (int r = 0; r < 4; r++)
				m[4 * r + c] -= d * m[4 * r + k];
		}
		double nr = 0;

		for (int r = 0; r < 4; r++)
			nr += creal(m[4 * r + c] * conj(m[4 * r + c]));
		for (int r = 0; r < 4; r++)
			m[4 * r + c] /= sqrt(nr);
	}
	for (int i = 0; i < 16; i++) {
		op->m[2 * i] = creal(m[i]);
		op->m[2 * i + 1] = cimag(m[i]);
	}
}

/* measure 0: gates only; 1: and measure all at the end; 2: also mid-circuit
 * measurements, resets and conditions */
static void random_circuit(struct circ *c, int nq, int ngates, int measure)
{
	size_t nnames = n_std_names();
	int perm[8];

	circ_init(c);
	assert_int_equal(circ_add_qreg(c, "q", nq, NULL), 0);
	assert_int_equal(circ_add_creg(c, "c", nq, NULL), 0);
	for (int g = 0; g < ngates;) {
		const char *name = circ_std_names[rnd_int((int)nnames)];
		int nqs = circ_std_nqubits(name), np = circ_std_nparams(name), used = 0;
		double par[4];
		struct circ_op op;

		if (nqs > nq)
			continue;
		for (int i = 0; i < np; i++)
			par[i] = rnd_angle();
		assert_int_equal(circ_std_gate(name, par, np, &op, NULL), 0);
		if (rnd_int(8) == 0) {
			random_u4(&op);
			nqs = 2;
		}
		for (int i = 0; i < nqs; i++) {
			int q;

			do
				q = rnd_int(nq);
			while (used >> q & 1);
			used |= 1 << q;
			op.q[i] = q;
		}
		/* ctrl@ on a random gate, up to the maximum */
		while (rnd_int(4) == 0 && nqs < nq && op.nctrl < CIRC_MAX_CTRL) {
			int q;

			do
				q = rnd_int(nq);
			while (used >> q & 1);
			used |= 1 << q;
			assert_int_equal(circ_op_control(&op, q, NULL), 0);
			nqs++;
		}
		if (rnd_int(5) == 0)
			circ_op_invert(&op);
		if (measure == 2 && rnd_int(4) == 0) {
			op.cond_len = 1 + rnd_int(2);
			op.cond_off = rnd_int(nq - op.cond_len + 1);
			op.cond_val = (uint64_t)rnd_int(1 << op.cond_len);
		}
		if (measure == 2 && rnd_int(6) == 0) {
			struct circ_op mo = {.kind = rnd_int(3) ? CIRC_MEASURE : CIRC_RESET};

			mo.q[0] = rnd_int(nq);
			mo.clbit = rnd_int(nq);
			if (rnd_int(4) == 0) { /* conditional reset or measurement */
				mo.cond_len = 1;
				mo.cond_off = rnd_int(nq);
				mo.cond_val = (uint64_t)rnd_int(2);
			}
			assert_int_equal(circ_push(c, &mo, NULL), 0);
		}
		assert_int_equal(circ_push(c, &op, NULL), 0);
		g++;
	}
	if (!measure)
		return;
	for (int i = 0; i < nq; i++)
		perm[i] = i;
	for (int i = nq - 1; i > 0; i--) {
		int j = rnd_int(i + 1), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int i = 0; i < nq; i++) {
		struct circ_op op = {.kind = CIRC_MEASURE, .clbit = perm[i]};

		op.q[0] = i;
		snprintf(op.name, sizeof(op.name), "measure");
		assert_int_equal(circ_push(c, &op, NULL), 0);
	}
}

/* ---- checks on a transpiled circuit ---- */

static int is_native(const struct qdev_profile *p, const char *name)
{
	for (int i = 0; i < p->nnative; i++)
		if (strcmp(p->native[i], name) == 0)
			return 1;
	return 0;
}

static int is_edge(const struct qdev_profile *p, int a, int b)
{
	if (p->all_to_all)
		return 1;
	for (size_t e = 0; e < p->nedges; e++)
		if ((p->edges[e][0] == a && p->edges[e][1] == b) ||
		    (p->edges[e][0] == b && p->edges[e][1] == a))
			return 1;
	return 0;
}

static void check_native(const struct qdev_profile *p, const struct circ *out)
{
	if (!p->nnative) /* ideal: the circuit as it came */
		return;
	assert_int_equal(out->nq, p->nq);
	for (size_t i = 0; i < out->n; i++) {
		const struct circ_op *op = &out->ops[i];
		struct circ_op ref;

		if (op->kind != CIRC_GATE)
			continue;
		if (!is_native(p, op->name))
			fail_msg("profile %s: op %zu is %s, not native", p->name, i, op->name);
		/* params fully describe the gate: circ_std_gate rebuilds the matrix */
		assert_int_equal(circ_std_gate(op->name, op->params, op->nparams, &ref, NULL), 0);
		for (int k = 0; k < (op->ntgt == 2 ? 32 : 8); k++)
			assert_true(fabs(ref.m[k] - op->m[k]) < 1e-12);
		for (int k = 0; k < op->nctrl + op->ntgt; k++)
			assert_true(op->q[k] >= 0 && op->q[k] < p->nq);
		if (op->nctrl + op->ntgt == 2 && !is_edge(p, op->q[0], op->q[1]))
			fail_msg("profile %s: %s on uncoupled %d-%d", p->name, op->name, op->q[0],
				 op->q[1]);
	}
}

/* Physical qubits the output touches, numbered compactly for the simulator. */
static int compact(const struct circ *out, int *map)
{
	int n = 0;

	for (int q = 0; q < out->nq; q++)
		map[q] = -1;
	for (size_t i = 0; i < out->n; i++) {
		const struct circ_op *op = &out->ops[i];
		int k = op->kind == CIRC_GATE	   ? op->nctrl + op->ntgt
			: op->kind == CIRC_BARRIER ? 0
						   : 1;

		for (int j = 0; j < k; j++)
			if (map[op->q[j]] < 0)
				map[op->q[j]] = n++;
	}
	return n;
}

static void dump(const char *what, const struct circ *c)
{
	print_message("%s (%d qubits):\n", what, c->nq);
	for (size_t i = 0; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];

		print_message("  %s", op->kind == CIRC_MEASURE ? "measure" : op->name);
		for (int k = 0; k < op->nparams; k++)
			print_message(" %.17g", op->params[k]);
		for (int k = 0; k < (op->kind == CIRC_GATE ? op->nctrl + op->ntgt : 1); k++)
			print_message(" q%d", op->q[k]);
		print_message(" (nctrl %d)\n", op->nctrl);
	}
}

static void check_equivalent(const struct qdev_profile *p, const struct circ *in, int measured)
{
	struct circ out;
	struct ciel_err err = {0};
	int layout[CIRC_MAX_QUBITS], map[CIRC_MAX_QUBITS], id[CIRC_MAX_QUBITS], n;
	cplx *a, *b;

	circ_init(&out);
	if (qdev_transpile_layout(p, in, &out, layout, &err) < 0)
		fail_msg("transpile on %s: %s", p->name, err.msg);
	check_native(p, &out);
	n = compact(&out, map);
	for (int l = 0; l < in->nq; l++) {
		id[l] = l;
		/* a qubit no gate touches stays where it is, so give it a slot */
		if (map[layout[l]] < 0)
			map[layout[l]] = n++;
	}
	if (n > MAX_SIM)
		fail_msg("profile %s: %d physical qubits touched", p->name, n);
	a = sim_run(in, in->nq, id);
	b = sim_run(&out, n, map);
	if (measured) {
		double da[256] = {0}, db[256] = {0};

		if (measured == 2) { /* restart from |0>, branching */
			memset(a, 0, (1ULL << in->nq) * sizeof(*a));
			memset(b, 0, (1ULL << n) * sizeof(*b));
			a[0] = b[0] = 1;
			sim_branch(in, 0, a, in->nq, id, 0, 1, da);
			sim_branch(&out, 0, b, n, map, 0, 1, db);
		} else {
			sim_dist(in, a, in->nq, id, da);
			sim_dist(&out, b, n, map, db);
		}
		for (int v = 0; v < 1 << in->ncl; v++)
			if (fabs(da[v] - db[v]) > 1e-9) {
				dump("input", in);
				dump("output", &out);
				fail_msg("profile %s: P(%d) %.12f != %.12f", p->name, v, da[v],
					 db[v]);
			}
	} else {
		/* logical x sits at physical layout[], the rest is |0> */
		uint64_t big = 0;
		cplx ph = 1;

		for (uint64_t x = 1; x < (1ULL << in->nq); x++)
			if (cabs(a[x]) > cabs(a[big]))
				big = x;
		for (int pass = 0; pass < 2; pass++) {
			double tot = 0;

			for (uint64_t x = 0; x < (1ULL << in->nq); x++) {
				uint64_t y = 0;

				for (int l = 0; l < in->nq; l++)
					if (x >> l & 1)
						y |= 1ULL << map[layout[l]];
				if (pass == 0 && x == big) {
					ph = b[y] / a[x];
					if (fabs(cabs(ph) - 1) > 1e-9) {
						dump("input", in);
						dump("output", &out);
						fail_msg("profile %s: |ratio| %g", p->name,
							 cabs(ph));
					}
				}
				if (pass == 1) {
					if (cabs(b[y] - ph * a[x]) > 1e-9)
						fail_msg("profile %s: amplitude %llu differs",
							 p->name, (unsigned long long)x);
					tot += creal(b[y] * conj(b[y]));
				}
			}
			if (pass == 1)
				assert_true(fabs(tot - 1) < 1e-9); /* nothing left elsewhere */
		}
	}
	free(a);
	free(b);
	circ_release(&out);
}

/* ---- tests ---- */

static void test_profiles(void **st)
{
	const struct qdev_profile *sc, *na, *ph, *id;
	struct ciel_err err = {0};

	(void)st;
	assert_int_equal(qdev_count(), 4);
	sc = qdev_find("superconducting", &err);
	na = qdev_find("neutral-atom", &err);
	ph = qdev_find("photonic", &err);
	id = qdev_find("ideal", &err);
	assert_non_null(sc);
	assert_non_null(na);
	assert_non_null(ph);
	assert_non_null(id);

	/* IQM Garnet: 20 qubits, 30 couplers, prx + cz */
	assert_int_equal(sc->nq, 20);
	assert_false(sc->all_to_all);
	assert_int_equal(sc->nedges, 30);
	assert_int_equal(sc->nnative, 2);
	assert_true(is_native(sc, "prx") && is_native(sc, "cz"));
	assert_true(fabs(sc->noise.t1_us - 37) < 1e-9 && fabs(sc->noise.t2_us - 10) < 1e-9);
	assert_true(fabs(sc->noise.readout_p01 - 0.025) < 1e-9);
	assert_true(sc->noise.p1 > 0 && sc->noise.p1 < 1e-3);
	assert_true(sc->noise.p2 > 0 && sc->noise.p2 < 5e-3);
	assert_true(sc->noise.t1q_ns >= 20 && sc->noise.t1q_ns <= 40);
	assert_true(sc->noise.t2q_ns >= 40 && sc->noise.t2q_ns <= 60);
	assert_false(sc->noiseless);

	/* Pasqal-like: blockade edges, never the whole device, Pulser SPAM */
	assert_true(na->nq >= 60);
	assert_false(na->all_to_all);
	assert_true(na->nedges > (size_t)na->nq && na->nedges < (size_t)(na->nq * 4));
	assert_true(is_native(na, "rx") && is_native(na, "ry") && is_native(na, "rz") &&
		    is_native(na, "cz"));
	assert_true(fabs(na->noise.prep_err - 0.005) < 1e-12);
	assert_true(fabs(na->noise.readout_p01 - 0.01) < 1e-12);
	assert_true(fabs(na->noise.readout_p10 - 0.05) < 1e-12);
	assert_true(na->noise.t1q_ns >= 100 && na->noise.t2_us >= 100);

	/* Quandela-like */
	assert_int_equal(ph->nq, 6);
	assert_true(ph->all_to_all);
	assert_true(fabs(ph->noise.herald_p2 - 2.0 / 27) < 1e-12);
	assert_true(ph->noise.distinguishability > 0.05 && ph->noise.distinguishability < 0.1);
	assert_non_null(
	    strstr(json_string_value(json_object_get(ph->json, "description")),
		   "a gate-model emulation; it does not simulate photons in linear optics"));

	assert_int_equal(id->nq, 34);
	assert_true(id->noiseless);
	assert_true(id->all_to_all);
	assert_int_equal(id->nnative, 0);

	for (size_t i = 0; i < qdev_count(); i++) {
		const struct qdev_profile *p = qdev_at(i);
		json_t *j = qdev_to_json(p), *src;
		size_t k;
		json_t *s;

		assert_non_null(j);
		assert_string_equal(json_string_value(json_object_get(j, "name")), p->name);
		assert_int_equal(json_integer_value(json_object_get(j, "qubits")), p->nq);
		assert_non_null(json_object_get(j, "technology"));
		assert_non_null(json_object_get(j, "description"));
		assert_true(json_array_size(json_object_get(j, "native_gates")) > 0);
		assert_non_null(json_object_get(j, "noise"));
		if (!p->all_to_all)
			assert_int_equal(json_integer_value(json_object_get(
					     json_object_get(j, "connectivity"), "edge_count")),
					 p->nedges);
		src = json_object_get(j, "sources");
		assert_true(json_array_size(src) > 0);
		json_array_foreach(src, k, s)
		{
			assert_true(json_is_string(json_object_get(s, "title")));
			assert_true(json_is_string(json_object_get(s, "url")));
		}
		json_decref(j);
	}
	assert_null(qdev_at(qdev_count()));
}

static void test_find_unknown(void **st)
{
	struct ciel_err err = {0};

	(void)st;
	assert_null(qdev_find("trapped-ion", &err));
	assert_int_equal(err.code, CIEL_ENOTFOUND);
	assert_string_equal(err.field, "profile");
	assert_non_null(strstr(err.msg, "trapped-ion"));
	assert_non_null(strstr(err.msg, "superconducting"));
	assert_non_null(strstr(err.msg, "neutral-atom"));
	assert_non_null(strstr(err.msg, "photonic"));
	assert_non_null(strstr(err.msg, "ideal"));
}

static void test_wider_refused(void **st)
{
	struct circ c, out;
	struct ciel_err err = {0};

	(void)st;
	circ_init(&c);
	circ_init(&out);
	assert_int_equal(circ_add_qreg(&c, "q", 30, NULL), 0);
	assert_int_equal(qdev_transpile(qdev_find("superconducting", NULL), &c, &out, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_string_equal(err.field, "qasm");
	assert_string_equal(err.msg, "circuit needs 30 qubits; profile superconducting has 20");
	circ_release(&out);
	circ_init(&out);
	/* ideal takes it as it is */
	assert_int_equal(qdev_transpile(qdev_find("ideal", NULL), &c, &out, &err), 0);
	assert_int_equal(out.nq, 30);
	circ_release(&out);
	circ_release(&c);
}

static void random_for(const char *name, int n)
{
	const struct qdev_profile *p = qdev_find(name, NULL);

	assert_non_null(p);
	for (int i = 0; i < n; i++) {
		struct circ c;
		int nq = 3 + rnd_int(p->nq < 6 ? p->nq - 2 : 4);
		int ngates = 4 + rnd_int(12);
		uint64_t seed = rng_state;

		random_circuit(&c, nq, ngates, 0);
		check_equivalent(p, &c, 0);
		circ_release(&c);
		/* the same circuit with measurements in a shuffled bit order */
		rng_state = seed;
		random_circuit(&c, nq, ngates, 1);
		check_equivalent(p, &c, 1);
		circ_release(&c);
		/* mid-circuit measurement, reset and if(): exact branch distributions */
		random_circuit(&c, nq, ngates, 2);
		check_equivalent(p, &c, 2);
		circ_release(&c);
	}
}

static void test_random_superconducting(void **st)
{
	(void)st;
	random_for("superconducting", 200);
}

static void test_random_neutral_atom(void **st)
{
	(void)st;
	random_for("neutral-atom", 200);
}

static void test_random_photonic(void **st)
{
	(void)st;
	random_for("photonic", 200);
}

static void test_random_ideal(void **st)
{
	(void)st;
	random_for("ideal", 50);
}

/* Count the 2-qubit gates one standard gate costs on an all-to-all device. */
static size_t cz_count(const char *name, const double *par, int *nat1)
{
	const struct qdev_profile *p = qdev_find("photonic", NULL);
	struct circ c, out;
	struct circ_op op;
	size_t n = 0;
	int nqs = circ_std_nqubits(name);

	circ_init(&c);
	circ_init(&out);
	assert_int_equal(circ_add_qreg(&c, "q", 6, NULL), 0);
	assert_int_equal(circ_std_gate(name, par, circ_std_nparams(name), &op, NULL), 0);
	for (int i = 0; i < nqs; i++)
		op.q[i] = i;
	assert_int_equal(circ_push(&c, &op, NULL), 0);
	assert_int_equal(qdev_transpile(p, &c, &out, NULL), 0);
	*nat1 = 0;
	for (size_t i = 0; i < out.n; i++)
		if (strcmp(out.ops[i].name, "cz") == 0)
			n++;
		else
			(*nat1)++;
	check_equivalent(p, &c, 0);
	circ_release(&c);
	circ_release(&out);
	return n;
}

static void test_gate_costs(void **st)
{
	double par[4] = {0.3, 0.7, -1.1, 0.4};
	int n1;

	(void)st;
	assert_int_equal(cz_count("cz", par, &n1), 1);
	assert_int_equal(n1, 0);
	assert_int_equal(cz_count("cx", par, &n1), 1);
	assert_int_equal(cz_count("cy", par, &n1), 1);
	assert_int_equal(cz_count("ch", par, &n1), 1);
	assert_int_equal(cz_count("swap", par, &n1), 3);
	assert_int_equal(cz_count("rzz", par, &n1), 2);
	assert_int_equal(cz_count("rxx", par, &n1), 2);
	assert_int_equal(cz_count("ryy", par, &n1), 2);
	assert_int_equal(cz_count("rzx", par, &n1), 2);
	assert_int_equal(cz_count("crx", par, &n1), 2);
	assert_int_equal(cz_count("cu", par, &n1), 2);
	assert_int_equal(cz_count("cp", par, &n1), 2);
	assert_int_equal(cz_count("ccx", par, &n1), 6);
	assert_int_equal(cz_count("ccz", par, &n1), 6);
	assert_int_equal(cz_count("cswap", par, &n1), 8);
	assert_true(cz_count("c3x", par, &n1) <= 14);
	assert_true(cz_count("c4x", par, &n1) <= 30);
	/* one u3: at most 3 rotations with rx/rz */
	assert_int_equal(cz_count("u3", par, &n1), 0);
	assert_true(n1 >= 1 && n1 <= 3);
	assert_int_equal(cz_count("id", par, &n1), 0);
	assert_int_equal(n1, 0);
}

/* Runs of 1-qubit gates merge: h h vanishes, any run is at most 2 prx. */
static void test_merge_1q(void **st)
{
	const struct qdev_profile *p = qdev_find("superconducting", NULL);
	const char *names[] = {"h", "t", "sx", "u3", "rz", "ry", "s", "h"};
	double par[3] = {0.4, -0.9, 2.2};
	struct circ c, out;
	struct circ_op op;

	(void)st;
	circ_init(&c);
	circ_init(&out);
	assert_int_equal(circ_add_qreg(&c, "q", 2, NULL), 0);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(
		    circ_std_gate(names[i], par, circ_std_nparams(names[i]), &op, NULL), 0);
		op.q[0] = 0;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
	}
	for (int i = 0; i < 2; i++) { /* h h on qubit 1: nothing */
		assert_int_equal(circ_std_gate("h", NULL, 0, &op, NULL), 0);
		op.q[0] = 1;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
	}
	assert_int_equal(qdev_transpile(p, &c, &out, NULL), 0);
	assert_true(out.n >= 1 && out.n <= 2);
	for (size_t i = 0; i < out.n; i++)
		assert_string_equal(out.ops[i].name, "prx");
	check_equivalent(p, &c, 0);
	circ_release(&out);
	circ_release(&c);
}

/* Every op a conditional op expands into keeps the condition. */
static void test_conditions_kept(void **st)
{
	const char *profs[] = {"photonic", "superconducting", "neutral-atom"};

	(void)st;
	for (int pi = 0; pi < 3; pi++) {
		const struct qdev_profile *p = qdev_find(profs[pi], NULL);
		struct circ c, out;
		struct circ_op op;
		double par[1] = {0.3};
		size_t ncond = 0, meas_at = 0, nbefore = 0;

		circ_init(&c);
		circ_init(&out);
		assert_int_equal(circ_add_qreg(&c, "q", 4, NULL), 0);
		assert_int_equal(circ_add_creg(&c, "c", 2, NULL), 0);
		assert_int_equal(circ_std_gate("h", NULL, 0, &op, NULL), 0);
		op.q[0] = 0;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
		/* reads c[1] before the measurement writes it: must stay before */
		assert_int_equal(circ_std_gate("ry", par, 1, &op, NULL), 0);
		op.q[0] = 3;
		op.cond_off = 1;
		op.cond_len = 1;
		op.cond_val = 0;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
		memset(&op, 0, sizeof(op));
		op.kind = CIRC_MEASURE;
		op.q[0] = 0;
		op.clbit = 1;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
		assert_int_equal(circ_std_gate("ccx", NULL, 0, &op, NULL), 0);
		op.q[0] = 1;
		op.q[1] = 2;
		op.q[2] = 3;
		op.cond_off = 0;
		op.cond_len = 2;
		op.cond_val = 2;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
		assert_int_equal(circ_std_gate("rx", par, 1, &op, NULL), 0);
		op.q[0] = 2;
		op.cond_off = 1;
		op.cond_len = 1;
		op.cond_val = 1;
		assert_int_equal(circ_push(&c, &op, NULL), 0);
		assert_int_equal(qdev_transpile(p, &c, &out, NULL), 0);
		check_native(p, &out);
		for (size_t i = 0; i < out.n; i++) {
			const struct circ_op *o = &out.ops[i];

			if (o->kind == CIRC_MEASURE) {
				assert_int_equal(o->clbit, 1);
				assert_int_equal(o->cond_len, 0);
				meas_at = i;
				continue;
			}
			if (o->cond_len == 1 && o->cond_val == 0) {
				assert_int_equal(meas_at, 0); /* not moved past the measurement */
				nbefore++;
			} else if (o->cond_len) {
				/* conditional ops come after the measurement that feeds them */
				assert_true(i > meas_at && meas_at > 0);
				assert_true(
				    (o->cond_off == 0 && o->cond_len == 2 && o->cond_val == 2) ||
				    (o->cond_off == 1 && o->cond_len == 1 && o->cond_val == 1));
				ncond++;
			} else if (i > meas_at && meas_at) {
				/* only routing SWAPs run unconditionally */
				assert_false(p->all_to_all);
			}
		}
		assert_true(meas_at > 0);
		assert_true(nbefore >= 1);
		assert_true(ncond >= 7); /* ccx: 6 cz and 1-qubit gates, rx: 1 */
		circ_release(&out);
		circ_release(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_profiles),
	    cmocka_unit_test(test_find_unknown),
	    cmocka_unit_test(test_wider_refused),
	    cmocka_unit_test(test_gate_costs),
	    cmocka_unit_test(test_merge_1q),
	    cmocka_unit_test(test_conditions_kept),
	    cmocka_unit_test(test_random_photonic),
	    cmocka_unit_test(test_random_superconducting),
	    cmocka_unit_test(test_random_neutral_atom),
	    cmocka_unit_test(test_random_ideal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
