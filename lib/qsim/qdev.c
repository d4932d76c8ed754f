/*
 * qdev — device profiles and the transpiler.
 *
 * Profiles are the JSON files under lib/qsim/profiles/, compiled in as byte
 * arrays (CMake writes qsim/qdev_profiles.h); a profile that does not parse
 * is a BUG() at first use, since it shipped with the binary.
 *
 * The transpiler works in three layers:
 *  - decomposition (lg_*) on logical qubits: every gate, whatever its
 *    controls, becomes 1-qubit unitaries and CZ, exactly (global phase of the
 *    whole op aside). Controlled gates are diagonalised on their targets
 *    (W D W^dagger), and the controlled diagonal is a phase polynomial: a sum
 *    of phases on parities of qubit subsets, walked in Gray-code order so
 *    each step costs one CX (CCZ comes out as the usual 6 CX + 7 phases).
 *    4x4 targets that no local Clifford diagonalises fall back to at most 6
 *    two-level rotations (Givens), each a multi-controlled 1-qubit gate.
 *  - routing: a CZ between logical qubits whose physical qubits are not
 *    coupled moves one of them along a shortest path with SWAPs (3 CX each).
 *  - emission (ph_*) on physical qubits: 1-qubit unitaries are multiplied
 *    into a pending matrix per qubit and only written out, in the device's
 *    native 1-qubit gates, when something else touches the qubit; so runs
 *    collapse to at most 2 prx or 3 rotations, and identities vanish.
 */
#include "qsim/qdev.h"

#include <complex.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsim/qdev_profiles.h"

typedef double complex cplx;

#define EPS 1e-12 /* below this a matrix entry or an angle is zero */

/* ---- profiles ---- */

static struct qdev_profile *profiles;
static size_t nprofiles;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static double num_or(json_t *o, const char *key, double dflt)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return dflt;
	if (!json_is_number(v))
		BUG("profile: %s is not a number", key);
	return json_number_value(v);
}

static const char *str_at(json_t *o, const char *key, const char *file)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v))
		BUG("profile %s: \"%s\" missing or not a string", file, key);
	return json_string_value(v);
}

static void add_edge(struct qdev_profile *p, int a, int b, const char *file)
{
	if (a < 0 || b < 0 || a >= p->nq || b >= p->nq || a == b)
		BUG("profile %s: bad edge %d-%d", file, a, b);
	p->edges = realloc(p->edges, (p->nedges + 1) * sizeof(*p->edges));
	if (!p->edges)
		BUG("profile %s: out of memory", file);
	p->edges[p->nedges][0] = a < b ? a : b;
	p->edges[p->nedges][1] = a < b ? b : a;
	p->nedges++;
}

static void load_connectivity(struct qdev_profile *p, json_t *c, const char *file)
{
	const char *kind = str_at(c, "kind", file);
	json_t *v;
	size_t i, j;

	if (strcmp(kind, "all_to_all") == 0) {
		p->all_to_all = 1;
		return;
	}
	if (strcmp(kind, "edges") == 0) {
		json_array_foreach(json_object_get(c, "edges"), i, v)
		{
			if (json_array_size(v) != 2)
				BUG("profile %s: edge %zu is not a pair", file, i);
			add_edge(p, (int)json_integer_value(json_array_get(v, 0)),
				 (int)json_integer_value(json_array_get(v, 1)), file);
		}
	} else if (strcmp(kind, "blockade") == 0) {
		/* neutral atoms: a CZ needs the pair inside one blockade radius */
		json_t *pos = json_object_get(c, "positions_um");
		double r = num_or(c, "blockade_radius_um", 0);

		if (json_array_size(pos) != (size_t)p->nq || r <= 0)
			BUG("profile %s: %d positions and a blockade radius needed", file, p->nq);
		for (i = 0; i < json_array_size(pos); i++)
			for (j = i + 1; j < json_array_size(pos); j++) {
				json_t *a = json_array_get(pos, i), *b = json_array_get(pos, j);
				double dx = json_number_value(json_array_get(a, 0)) -
					    json_number_value(json_array_get(b, 0));
				double dy = json_number_value(json_array_get(a, 1)) -
					    json_number_value(json_array_get(b, 1));

				if (dx * dx + dy * dy < r * r)
					add_edge(p, (int)i, (int)j, file);
			}
	} else {
		BUG("profile %s: unknown connectivity %s", file, kind);
	}
	if (!p->nedges)
		BUG("profile %s: no coupled pair", file);
}

/* Routing needs a path between any two qubits. */
static void check_connected(const struct qdev_profile *p, const char *file)
{
	uint64_t seen = 1, grown;

	if (p->all_to_all)
		return;
	do {
		grown = seen;
		for (size_t e = 0; e < p->nedges; e++)
			if ((seen >> p->edges[e][0] & 1) || (seen >> p->edges[e][1] & 1))
				seen |= 1ULL << p->edges[e][0] | 1ULL << p->edges[e][1];
	} while (grown != seen);
	if (seen != (p->nq == 64 ? ~0ULL : (1ULL << p->nq) - 1))
		BUG("profile %s: coupling graph is not connected", file);
}

static void load_one(struct qdev_profile *p, const char *text, const char *file)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr), *v, *noise;
	size_t i;
	int has_1q = 0, has_cz = 0, has_rz = 0;

	if (!j)
		BUG("profile %s: line %d: %s", file, jerr.line, jerr.text);
	memset(p, 0, sizeof(*p));
	p->json = j;
	if (snprintf(p->name, sizeof(p->name), "%s", str_at(j, "name", file)) >=
		(int)sizeof(p->name) ||
	    snprintf(p->technology, sizeof(p->technology), "%s", str_at(j, "technology", file)) >=
		(int)sizeof(p->technology))
		BUG("profile %s: name or technology too long", file);
	if (snprintf(p->description, sizeof(p->description), "%s",
		     str_at(j, "description", file)) >= (int)sizeof(p->description))
		BUG("profile %s: description longer than %zu", file, sizeof(p->description) - 1);
	p->nq = (int)json_integer_value(json_object_get(j, "qubits"));
	if (p->nq < 1 || p->nq > CIRC_MAX_QUBITS)
		BUG("profile %s: qubits must be 1..%d", file, CIRC_MAX_QUBITS);
	json_array_foreach(json_object_get(j, "native_gates"), i, v)
	{
		const char *g = json_string_value(v);

		if (!g)
			BUG("profile %s: native gate %zu is not a string", file, i);
		if (strcmp(g, "any") == 0)
			continue; /* ideal: nnative stays 0 */
		if (p->nnative == QDEV_MAX_NATIVE || circ_std_nparams(g) < 0)
			BUG("profile %s: native gate %s unknown or one too many", file, g);
		snprintf(p->native[p->nnative++], CIRC_NAME_MAX, "%s", g);
		has_cz |= strcmp(g, "cz") == 0;
		has_rz |= strcmp(g, "rz") == 0;
		has_1q |= strcmp(g, "prx") == 0;
	}
	for (int k = 0; k < p->nnative; k++)
		if (has_rz && (strcmp(p->native[k], "rx") == 0 || strcmp(p->native[k], "ry") == 0))
			has_1q = 1;
	if (p->nnative && (!has_cz || !has_1q))
		BUG("profile %s: natives need cz and prx or rz with rx/ry", file);
	load_connectivity(p, json_object_get(j, "connectivity"), file);
	check_connected(p, file);
	if (!json_is_array(json_object_get(j, "sources")) ||
	    !json_array_size(json_object_get(j, "sources")))
		BUG("profile %s: no sources", file);
	noise = json_object_get(j, "noise");
	p->noise.p1 = num_or(noise, "p1", 0);
	p->noise.p2 = num_or(noise, "p2", 0);
	p->noise.t1_us = num_or(noise, "t1_us", 0);
	p->noise.t2_us = num_or(noise, "t2_us", 0);
	p->noise.t1q_ns = num_or(noise, "gate_1q_ns", 0);
	p->noise.t2q_ns = num_or(noise, "gate_2q_ns", 0);
	p->noise.readout_p01 = num_or(noise, "readout_p01", 0);
	p->noise.readout_p10 = num_or(noise, "readout_p10", 0);
	p->noise.prep_err = num_or(noise, "prep_err", 0);
	p->noise.herald_p2 = num_or(noise, "herald_p2", 0);
	p->noise.distinguishability = num_or(noise, "distinguishability", 0);
	p->noiseless = p->noise.p1 == 0 && p->noise.p2 == 0 && p->noise.t1_us == 0 &&
		       p->noise.t2_us == 0 && p->noise.readout_p01 == 0 &&
		       p->noise.readout_p10 == 0 && p->noise.prep_err == 0 &&
		       (p->noise.herald_p2 == 0 || p->noise.herald_p2 == 1) &&
		       p->noise.distinguishability == 0;
}

static void load_all(void)
{
	size_t n = 0;

	while (qdev_profile_texts[n])
		n++;
	profiles = calloc(n, sizeof(*profiles));
	if (!profiles)
		BUG("profiles: out of memory");
	for (size_t i = 0; i < n; i++) {
		load_one(&profiles[i], qdev_profile_texts[i], qdev_profile_files[i]);
		for (size_t k = 0; k < i; k++)
			if (strcmp(profiles[k].name, profiles[i].name) == 0)
				BUG("profile %s: name %s used twice", qdev_profile_files[i],
				    profiles[i].name);
	}
	nprofiles = n;
}

size_t qdev_count(void)
{
	pthread_once(&load_once, load_all);
	return nprofiles;
}

const struct qdev_profile *qdev_at(size_t i)
{
	return i < qdev_count() ? &profiles[i] : NULL;
}

const struct qdev_profile *qdev_find(const char *name, struct ciel_err *err)
{
	char names[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < qdev_count(); i++) {
		if (strcmp(profiles[i].name, name) == 0)
			return &profiles[i];
		len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "",
					profiles[i].name);
		if (len >= sizeof(names))
			len = sizeof(names) - 1;
	}
	ciel_err_field(err, CIEL_ENOTFOUND, "profile", "unknown profile %s (profiles: %s)", name,
		       names);
	return NULL;
}

json_t *qdev_to_json(const struct qdev_profile *p)
{
	json_t *o = json_object(), *c = json_object(), *edges = json_array();
	json_t *src = json_object_get(p->json, "connectivity");
	int bad = !o || !c || !edges;

	if (p->all_to_all) {
		bad |= json_object_set_new(c, "kind", json_string("all_to_all")) < 0;
		json_decref(edges);
	} else {
		for (size_t e = 0; e < p->nedges; e++)
			bad |= json_array_append_new(
				   edges, json_pack("[ii]", p->edges[e][0], p->edges[e][1])) < 0;
		bad |= json_object_set(c, "kind", json_object_get(src, "kind")) < 0;
		bad |=
		    json_object_set_new(c, "edge_count", json_integer((json_int_t)p->nedges)) < 0;
		bad |= json_object_set_new(c, "edges", edges) < 0;
	}
	/* layout and blockade figures, as the file gives them */
	if (json_object_get(src, "layout"))
		bad |= json_object_set(c, "layout", json_object_get(src, "layout")) < 0;
	if (json_object_get(src, "blockade_radius_um"))
		bad |= json_object_set(c, "blockade_radius_um",
				       json_object_get(src, "blockade_radius_um")) < 0;
	bad |= json_object_set_new(o, "name", json_string(p->name)) < 0;
	bad |= json_object_set_new(o, "technology", json_string(p->technology)) < 0;
	bad |= json_object_set(o, "description", json_object_get(p->json, "description")) < 0;
	bad |= json_object_set_new(o, "qubits", json_integer(p->nq)) < 0;
	bad |= json_object_set_new(o, "native_gates",
				   json_deep_copy(json_object_get(p->json, "native_gates"))) < 0;
	bad |= json_object_set_new(o, "connectivity", c) < 0;
	bad |=
	    json_object_set_new(o, "noise", json_deep_copy(json_object_get(p->json, "noise"))) < 0;
	if (json_object_get(p->json, "noise_model"))
		bad |=
		    json_object_set(o, "noise_model", json_object_get(p->json, "noise_model")) < 0;
	if (json_object_get(p->json, "published"))
		bad |=
		    json_object_set_new(o, "published",
					json_deep_copy(json_object_get(p->json, "published"))) < 0;
	bad |= json_object_set_new(o, "sources",
				   json_deep_copy(json_object_get(p->json, "sources"))) < 0;
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- 2x2 complex matrices: row-major m[0] m[1] / m[2] m[3] ---- */

static void mat_mul(cplx r[4], const cplx a[4], const cplx b[4])
{
	cplx t[4] = {a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
		     a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3]};

	memcpy(r, t, sizeof(t));
}

static void mat_dag(cplx r[4], const cplx a[4])
{
	cplx t[4] = {conj(a[0]), conj(a[2]), conj(a[1]), conj(a[3])};

	memcpy(r, t, sizeof(t));
}

static void mat_from_op(cplx r[4], const double *m)
{
	for (int i = 0; i < 4; i++)
		r[i] = m[2 * i] + I * m[2 * i + 1];
}

/* e^{-i theta/2 Z} and e^{-i theta/2 Y}, for building W */
static void mat_rz(cplx r[4], double th)
{
	r[0] = cexp(-I * th / 2);
	r[1] = r[2] = 0;
	r[3] = cexp(I * th / 2);
}

static void mat_ry(cplx r[4], double th)
{
	r[0] = r[3] = cos(th / 2);
	r[1] = -sin(th / 2);
	r[2] = sin(th / 2);
}

static const cplx MAT_H[4] = {M_SQRT1_2, M_SQRT1_2, M_SQRT1_2, -M_SQRT1_2};
static const cplx MAT_X[4] = {0, 1, 1, 0};
/* S H: maps Z to Y, for diagonalising Y-type Pauli rotations */
static const cplx MAT_SH[4] = {M_SQRT1_2, M_SQRT1_2, I *M_SQRT1_2, -I *M_SQRT1_2};

/* Angle in (-pi, pi]. */
static double wrap(double a)
{
	a = fmod(a, 2 * M_PI);
	if (a > M_PI)
		a -= 2 * M_PI;
	else if (a <= -M_PI)
		a += 2 * M_PI;
	return a;
}

/* ---- the transpiler's state ---- */

struct tp {
	const struct qdev_profile *p;
	struct circ *out;
	struct ciel_err *err;
	int np, nl;
	int l2p[CIRC_MAX_QUBITS], p2l[CIRC_MAX_QUBITS];
	uint64_t adj[CIRC_MAX_QUBITS];
	int use_prx, use_rx, use_ry;
	/*
	 * Physical qubits known to be |0> (never touched, or emptied by a move):
	 * a SWAP with one is 2 CX, between two of them none at all.
	 */
	uint64_t zero;
	/* the condition every op emitted now carries (that of the source op) */
	int cond_off, cond_len;
	uint64_t cond_val;
	/* 1-qubit unitaries waiting to be merged, per physical qubit */
	struct pend {
		int has;
		cplx m[4];
		int cond_off, cond_len;
		uint64_t cond_val;
	} pend[CIRC_MAX_QUBITS];
};

static void set_cond(struct circ_op *op, int off, int len, uint64_t val)
{
	op->cond_off = off;
	op->cond_len = len;
	op->cond_val = val;
}

static int push_std(struct tp *t, const struct pend *pd, const char *name, const double *params,
		    int np, int q0, int q1)
{
	struct circ_op op;

	double par[4];

	/* -3e-17 reads as noise in the emitted QASM; rounding it to 0 changes nothing */
	for (int i = 0; i < np; i++)
		par[i] = fabs(params[i]) < EPS ? 0 : params[i];
	if (circ_std_gate(name, par, np, &op, t->err) < 0)
		BUG("native %s refused", name);
	op.q[0] = q0;
	op.q[1] = q1;
	set_cond(&op, pd->cond_off, pd->cond_len, pd->cond_val);
	return circ_push(t->out, &op, t->err);
}

/* One rotation unless it is the identity (up to phase). */
static int push_rot(struct tp *t, const struct pend *pd, const char *name, double a, int q)
{
	a = wrap(a);
	if (fabs(a) < EPS)
		return 0;
	return push_std(t, pd, name, &a, 1, q, 0);
}

/* U / sqrt(det U): in SU(2), [[a, -conj(b)], [b, conj(a)]] up to rounding. */
static void to_su2(const cplx u[4], cplx *a, cplx *b)
{
	cplx s = csqrt(u[0] * u[3] - u[1] * u[2]);

	*a = (u[0] / s + conj(u[3] / s)) / 2;
	*b = (u[2] / s - conj(u[1] / s)) / 2;
}

/* An equatorial SU(2) element (Im a = 0) as prx(theta, phi); none if identity. */
static int push_prx_su2(struct tp *t, const struct pend *pd, cplx a, cplx b, int q)
{
	double par[2];

	if (creal(a) < 0) { /* -R is R up to phase */
		a = -a;
		b = -b;
	}
	par[0] = 2 * atan2(cabs(b), creal(a));
	if (fabs(par[0]) < EPS)
		return 0;
	/* R(theta, phi)[1][0] = -i sin(theta/2) e^{i phi} */
	par[1] = wrap(carg(I * b));
	return push_std(t, pd, "prx", par, 2, q, 0);
}

/*
 * Any U(2) as at most two prx: choose B = prx(th2, ph2) so that A = U B^-1
 * has a real (0,0) entry, which makes A a rotation about an equatorial axis.
 */
static int emit_prx(struct tp *t, const struct pend *pd, const cplx u[4], int q)
{
	cplx a, b, ba, bb, v[4], binv[4], am[4];
	double th2, ph2;

	to_su2(u, &a, &b);
	if (fabs(cimag(a)) < EPS)
		return push_prx_su2(t, pd, a, b, q);
	th2 = 2 * atan2(-cimag(a), cabs(b));
	ph2 = wrap(M_PI + carg(b));
	v[0] = a;
	v[1] = -conj(b);
	v[2] = b;
	v[3] = conj(a);
	binv[0] = binv[3] = cos(th2 / 2);
	binv[1] = I * sin(th2 / 2) * cexp(-I * ph2);
	binv[2] = I * sin(th2 / 2) * cexp(I * ph2);
	mat_mul(am, v, binv);
	ba = am[0];
	bb = am[2];
	{
		double par[2] = {th2, ph2};

		if (push_std(t, pd, "prx", par, 2, q, 0) < 0)
			return -1;
	}
	return push_prx_su2(t, pd, creal(ba), bb, q);
}

/*
 * ZYZ Euler angles: U = e^{i g} Rz(a) Ry(b) Rz(c), read off U in SU(2):
 * [0][0] = e^{-i(a+c)/2} cos(b/2), [1][0] = e^{i(a-c)/2} sin(b/2), so a and
 * c come out consistent (halves of a sum and a difference would not: a
 * 2 pi ambiguity in either flips the sign of b). Returns 1 when b = pi,
 * where only a - c is defined (then c = 0).
 */
static int zyz(const cplx u[4], double *pa, double *pb, double *pc)
{
	cplx al, be;

	to_su2(u, &al, &be);
	*pb = 2 * atan2(cabs(be), cabs(al));
	if (cabs(al) <= EPS) {
		*pa = 2 * carg(be);
		*pc = 0;
		return 1;
	}
	if (cabs(be) <= EPS) {
		*pa = -2 * carg(al);
		*pc = 0;
		return 0;
	}
	*pa = carg(be) - carg(al);
	*pc = -carg(al) - carg(be);
	return 0;
}

static int nonzero(double a)
{
	return fabs(wrap(a)) >= EPS;
}

/*
 * rz / rx / ry devices: U = Rz(a) Ry(b) Rz(c) = Rz(a + pi/2) Rx(b) Rz(c - pi/2),
 * and each also as (a + pi, -b, c + pi); the form with fewest non-zero
 * rotations wins (x is rx(pi), sxdg is rx(-pi/2), not three gates).
 */
static int emit_rot(struct tp *t, const struct pend *pd, const cplx u[4], int q)
{
	double a, b, c, best[3] = {0, 0, 0};
	int deg, nbest = 99;
	const char *mid = "ry";

	deg = zyz(u, &a, &b, &c);
	if (!nonzero(b))
		return push_rot(t, pd, "rz", a + c, q);
	for (int x = 0; x < 2; x++) {
		double sh = x ? M_PI / 2 : 0, ang[2][3];

		if (!(x ? t->use_rx : t->use_ry))
			continue;
		ang[0][0] = a + sh;
		ang[0][1] = b;
		ang[0][2] = c - sh;
		if (deg) { /* only a - c counts: all of it on one side */
			ang[0][0] = a - c + 2 * sh;
			ang[0][2] = 0;
		}
		ang[1][0] = ang[0][0] + M_PI;
		ang[1][1] = -b;
		ang[1][2] = ang[0][2] + M_PI;
		for (int f = 0; f < 2; f++) {
			int n = nonzero(ang[f][0]) + nonzero(ang[f][2]);

			if (n < nbest) {
				nbest = n;
				memcpy(best, ang[f], sizeof(best));
				mid = x ? "rx" : "ry";
			}
		}
	}
	if (push_rot(t, pd, "rz", best[2], q) < 0 || push_rot(t, pd, mid, best[1], q) < 0)
		return -1;
	return push_rot(t, pd, "rz", best[0], q);
}

static int flush(struct tp *t, int q)
{
	struct pend *pd = &t->pend[q];
	int rc;

	if (!pd->has)
		return 0;
	pd->has = 0;
	rc = t->use_prx ? emit_prx(t, pd, pd->m, q) : emit_rot(t, pd, pd->m, q);
	return rc;
}

/* Conditional gates must not wait past a measurement that may set their bits. */
static int flush_conditional(struct tp *t)
{
	for (int q = 0; q < t->np; q++)
		if (t->pend[q].has && t->pend[q].cond_len && flush(t, q) < 0)
			return -1;
	return 0;
}

static int flush_all(struct tp *t)
{
	for (int q = 0; q < t->np; q++)
		if (flush(t, q) < 0)
			return -1;
	return 0;
}

/* ---- physical layer ---- */

static int same_cond(const struct pend *pd, const struct tp *t)
{
	return pd->cond_len == t->cond_len && pd->cond_off == t->cond_off &&
	       pd->cond_val == t->cond_val;
}

static int ph_1q(struct tp *t, int q, const cplx u[4])
{
	struct pend *pd = &t->pend[q];

	t->zero &= ~(1ULL << q);
	if (pd->has && !same_cond(pd, t) && flush(t, q) < 0)
		return -1;
	if (pd->has) {
		mat_mul(pd->m, u, pd->m);
		return 0;
	}
	pd->has = 1;
	memcpy(pd->m, u, sizeof(pd->m));
	pd->cond_off = t->cond_off;
	pd->cond_len = t->cond_len;
	pd->cond_val = t->cond_val;
	return 0;
}

static int ph_cz(struct tp *t, int a, int b)
{
	struct pend pd = {
	    .cond_off = t->cond_off, .cond_len = t->cond_len, .cond_val = t->cond_val};

	if (flush(t, a) < 0 || flush(t, b) < 0)
		return -1;
	t->zero &= ~(1ULL << a | 1ULL << b);
	return push_std(t, &pd, "cz", NULL, 0, a, b);
}

static int ph_cx(struct tp *t, int c, int x)
{
	if (ph_1q(t, x, MAT_H) < 0 || ph_cz(t, c, x) < 0)
		return -1;
	return ph_1q(t, x, MAT_H);
}

/*
 * SWAP, unconditional since the layout must not depend on a branch: 3 CX, or
 * 2 when one side is |0> (CX a->b, CX b->a moves a's state onto b and leaves
 * a at |0>), or a relabelling when both are.
 */
static int ph_swap(struct tp *t, int a, int b)
{
	int off = t->cond_off, len = t->cond_len, l;
	int za = t->zero >> a & 1, zb = t->zero >> b & 1;
	uint64_t val = t->cond_val;

	t->cond_off = t->cond_len = 0;
	t->cond_val = 0;
	if (za && zb) {
		/* nothing to move */
	} else if (za || zb) {
		int from = za ? b : a, to = za ? a : b;

		if (ph_cx(t, from, to) < 0 || ph_cx(t, to, from) < 0)
			return -1;
		t->zero |= 1ULL << from;
	} else if (ph_cx(t, a, b) < 0 || ph_cx(t, b, a) < 0 || ph_cx(t, a, b) < 0) {
		return -1;
	}
	t->cond_off = off;
	t->cond_len = len;
	t->cond_val = val;
	l = t->p2l[a];
	t->p2l[a] = t->p2l[b];
	t->p2l[b] = l;
	if (t->p2l[a] >= 0)
		t->l2p[t->p2l[a]] = a;
	if (t->p2l[b] >= 0)
		t->l2p[t->p2l[b]] = b;
	return 0;
}

static int coupled(const struct tp *t, int a, int b)
{
	return t->p->all_to_all || (t->adj[a] >> b & 1);
}

/* ---- logical layer: 1-qubit unitaries and CZ, routed ---- */

static int lg_1q(struct tp *t, int q, const cplx u[4])
{
	return ph_1q(t, t->l2p[q], u);
}

static int lg_cz(struct tp *t, int a, int b)
{
	int pa = t->l2p[a], pb = t->l2p[b], prev[CIRC_MAX_QUBITS], queue[CIRC_MAX_QUBITS];
	int path[CIRC_MAX_QUBITS], head = 0, tail = 0, len = 0;

	if (coupled(t, pa, pb))
		return ph_cz(t, pa, pb);
	/* BFS from pb, so following prev[] from pa walks toward pb */
	for (int i = 0; i < t->np; i++)
		prev[i] = -1;
	prev[pb] = pb;
	queue[tail++] = pb;
	while (head < tail && prev[pa] < 0) {
		int x = queue[head++];

		for (int y = 0; y < t->np; y++)
			if ((t->adj[x] >> y & 1) && prev[y] < 0) {
				prev[y] = x;
				queue[tail++] = y;
			}
	}
	if (prev[pa] < 0)
		BUG("profile %s: no path %d-%d", t->p->name, pa, pb);
	for (int x = pa; x != pb; x = prev[x])
		path[len++] = x;
	/* path[0] = pa ... path[len-1] is next to pb; move a along it */
	for (int i = 0; i + 1 < len; i++)
		if (ph_swap(t, path[i], path[i + 1]) < 0)
			return -1;
	return ph_cz(t, t->l2p[a], t->l2p[b]);
}

static int lg_cx(struct tp *t, int c, int x)
{
	if (lg_1q(t, x, MAT_H) < 0 || lg_cz(t, c, x) < 0)
		return -1;
	return lg_1q(t, x, MAT_H);
}

static int lg_phase(struct tp *t, int q, double phi)
{
	cplx p[4] = {1, 0, 0, cexp(I * phi)};

	if (!nonzero(phi))
		return 0;
	return lg_1q(t, q, p);
}

#define MAX_DIAG_Q (CIRC_MAX_CTRL + CIRC_MAX_TGT)

/*
 * The diagonal exp(i f(x)) on qubits qs[0..n) (bit j of x is qs[j]), up to a
 * global phase. f = const + sum over subsets S of c_S * parity_S(x), with
 * c_S from the Walsh transform of f; each parity term is a phase on one
 * qubit once the parity is XORed into it, and walking the subsets in
 * Gray-code order needs one CX per step.
 */
static int lg_diag(struct tp *t, const int *qs, int n, const double *f)
{
	double c[1 << MAX_DIAG_Q];
	int N = 1 << n, sup[MAX_DIAG_Q], m = 0, prev = 0;

	for (int s = 0; s < N; s++) {
		double w = 0;

		for (int x = 0; x < N; x++)
			w += __builtin_parity((unsigned)(s & x)) ? -f[x] : f[x];
		/* (-1)^(S.x) = 1 - 2 parity_S(x) */
		c[s] = wrap(-2 * w / N);
	}
	/* exp(i pi parity_S) is a Z on each member: no CX needed */
	for (int s = 1; s < N; s++)
		if (__builtin_popcount((unsigned)s) > 1 && fabs(fabs(c[s]) - M_PI) < EPS) {
			c[s] = 0;
			for (int j = 0; j < n; j++)
				if (s >> j & 1)
					c[1 << j] += M_PI;
		}
	for (int j = 0; j < n; j++) {
		int used = 0;

		if (lg_phase(t, qs[j], c[1 << j]) < 0)
			return -1;
		c[1 << j] = 0;
		for (int s = 1; s < N; s++)
			used |= (s >> j & 1) && nonzero(c[s]);
		if (used)
			sup[m++] = j;
	}
	if (m == 0)
		return 0;
	if (m == 2) {
		int s = 1 << sup[0] | 1 << sup[1];

		/* exp(i c parity) with c = +-pi/2 is P(c) x P(c) times CZ */
		if (fabs(fabs(c[s]) - M_PI / 2) < EPS) {
			if (lg_phase(t, qs[sup[0]], c[s]) < 0 || lg_phase(t, qs[sup[1]], c[s]) < 0)
				return -1;
			return lg_cz(t, qs[sup[0]], qs[sup[1]]);
		}
	}
	/*
	 * Gray code over the m support qubits: the highest member of the current
	 * subset holds its parity, every other qubit holds its own value; the
	 * last subset is a single qubit, so everything ends restored.
	 */
	for (int i = 1; i < 1 << m; i++) {
		int g = i ^ (i >> 1), top = 31 - __builtin_clz((unsigned)g), s = 0;
		int flip = g ^ prev;
		int p = 31 - __builtin_clz((unsigned)flip);

		if (i > 1) {
			int from = p == top ? top - 1 : p;

			if (lg_cx(t, qs[sup[from]], qs[sup[top]]) < 0)
				return -1;
		}
		for (int j = 0; j < m; j++)
			if (g >> j & 1)
				s |= 1 << sup[j];
		if (lg_phase(t, qs[sup[top]], c[s]) < 0)
			return -1;
		prev = g;
	}
	return 0;
}

/*
 * U on target tq under controls cs[0..k): with U = W diag(l0, l1) W^dagger,
 * the controlled U is W, then the phase arg l0 or arg l1 on the states with
 * all controls set, then W^dagger — exact, phase under the controls included.
 */
static int lg_ctrl_u(struct tp *t, const int *cs, int k, int tq, const cplx u[4])
{
	cplx s, v00, v10, v01, v11, w[4], rz[4], wd[4];
	double x, y, z, r, th, f[1 << MAX_DIAG_Q], l0, l1, beta, gam;
	int qs[MAX_DIAG_Q], n = k + 1, all = (1 << k) - 1;

	if (k == 0)
		return lg_1q(t, tq, u);
	s = csqrt(u[0] * u[3] - u[1] * u[2]);
	v00 = u[0] / s;
	v01 = u[1] / s;
	v10 = u[2] / s;
	v11 = u[3] / s;
	/* V = w I - i (x X + y Y + z Z) */
	x = -(cimag(v10) + cimag(v01)) / 2;
	y = (creal(v10) - creal(v01)) / 2;
	z = (cimag(v11) - cimag(v00)) / 2;
	r = sqrt(x * x + y * y + z * z);
	th = 2 * atan2(r, (creal(v00) + creal(v11)) / 2);
	beta = r > 0 ? atan2(hypot(x, y), z) : 0;
	gam = hypot(x, y) > EPS ? atan2(y, x) : 0;
	/* W = Rz(gam) Ry(beta) turns Z into the rotation axis */
	mat_rz(rz, gam);
	mat_ry(w, beta);
	mat_mul(w, rz, w);
	mat_dag(wd, w);
	l0 = carg(s) - th / 2;
	l1 = carg(s) + th / 2;
	for (int i = 0; i < k; i++)
		qs[i] = cs[i];
	qs[k] = tq;
	for (int xx = 0; xx < 1 << n; xx++)
		f[xx] = (xx & all) != all ? 0 : (xx >> k & 1) ? l1 : l0;
	if (lg_1q(t, tq, wd) < 0 || lg_diag(t, qs, n, f) < 0)
		return -1;
	return lg_1q(t, tq, w);
}

/* ---- two-target gates ---- */

static int is_diag4(const cplx m[16])
{
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 4; c++)
			if (r != c && cabs(m[4 * r + c]) > EPS)
				return 0;
	return 1;
}

/* (a0 on target 0) x (a1 on target 1); index = t0 + 2 t1 */
static void kron(cplx r[16], const cplx a0[4], const cplx a1[4])
{
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			r[4 * i + j] = a1[2 * (i >> 1) + (j >> 1)] * a0[2 * (i & 1) + (j & 1)];
}

static void mul4(cplx r[16], const cplx a[16], const cplx b[16])
{
	cplx t[16];

	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++) {
			t[4 * i + j] = 0;
			for (int k = 0; k < 4; k++)
				t[4 * i + j] += a[4 * i + k] * b[4 * k + j];
		}
	memcpy(r, t, sizeof(t));
}

static void dag4(cplx r[16], const cplx a[16])
{
	cplx t[16];

	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			t[4 * i + j] = conj(a[4 * j + i]);
	memcpy(r, t, sizeof(t));
}

static int lg_ctrl_diag4(struct tp *t, const int *cs, int k, int t0, int t1, const cplx m[16])
{
	double f[1 << MAX_DIAG_Q];
	int qs[MAX_DIAG_Q], all = (1 << k) - 1;

	for (int i = 0; i < k; i++)
		qs[i] = cs[i];
	qs[k] = t0;
	qs[k + 1] = t1;
	for (int x = 0; x < 1 << (k + 2); x++)
		f[x] = (x & all) != all ? 0 : carg(m[5 * (x >> k)]);
	return lg_diag(t, qs, k + 2, f);
}

/* A two-level unitary g on basis states i < j of (t0, t1), under cs[0..k). */
static int lg_two_level(struct tp *t, const int *cs, int k, int t0, int t1, int i, int j,
			const cplx g[4])
{
	int c2[CIRC_MAX_CTRL + 1], o, v, tq, d = i ^ j;
	cplx gx[4];
	const cplx *gg = g;

	if (d == 3) {
		/* CX(t0 -> t1) maps (0,3) to (0,1) and (1,2) to (3,2) */
		if (lg_cx(t, t0, t1) < 0)
			return -1;
		if (i == 1) {
			mat_mul(gx, MAT_X, g);
			mat_mul(gx, gx, MAT_X);
			gg = gx;
		}
		o = t1;
		v = i == 1;
		tq = t0;
	} else {
		o = d == 1 ? t1 : t0;
		v = d == 1 ? i >> 1 & 1 : i & 1;
		tq = d == 1 ? t0 : t1;
	}
	memcpy(c2, cs, (size_t)k * sizeof(*cs));
	c2[k] = o;
	if (!v && lg_1q(t, o, MAT_X) < 0)
		return -1;
	if (lg_ctrl_u(t, c2, k + 1, tq, gg) < 0)
		return -1;
	if (!v && lg_1q(t, o, MAT_X) < 0)
		return -1;
	return d == 3 ? lg_cx(t, t0, t1) : 0;
}

static int is_identity2(const cplx g[4])
{
	return cabs(g[0] - 1) < EPS && cabs(g[3] - 1) < EPS && cabs(g[1]) < EPS && cabs(g[2]) < EPS;
}

/*
 * Givens elimination: G_n ... G_1 M = I, so M = G_1^dagger ... G_n^dagger and
 * the circuit applies G_n^dagger first.
 */
static int lg_givens4(struct tp *t, const int *cs, int k, int t0, int t1, const cplx m[16])
{
	cplx r[16], g[8][4];
	int pi[8], pj[8], n = 0;

	memcpy(r, m, sizeof(r));
	for (int j = 0; j < 2; j++) {
		for (int i = j + 1; i < 4; i++) {
			cplx a = r[4 * j + j], b = r[4 * i + j];
			double nr = sqrt(creal(a * conj(a)) + creal(b * conj(b)));

			if (cabs(b) < EPS)
				continue;
			g[n][0] = conj(a) / nr;
			g[n][1] = conj(b) / nr;
			g[n][2] = -b / nr;
			g[n][3] = a / nr;
			for (int c = 0; c < 4; c++) {
				cplx rj = r[4 * j + c], ri = r[4 * i + c];

				r[4 * j + c] = g[n][0] * rj + g[n][1] * ri;
				r[4 * i + c] = g[n][2] * rj + g[n][3] * ri;
			}
			pi[n] = j;
			pj[n++] = i;
		}
		if (cabs(r[5 * j] - 1) > EPS) { /* a phase left on the diagonal */
			g[n][0] = conj(r[5 * j]);
			g[n][1] = g[n][2] = 0;
			g[n][3] = 1;
			for (int c = 0; c < 4; c++)
				r[4 * j + c] *= g[n][0];
			pi[n] = j;
			pj[n++] = j + 1;
		}
	}
	{
		cplx b[4] = {r[10], r[11], r[14], r[15]};

		if (!is_identity2(b)) {
			mat_dag(g[n], b);
			pi[n] = 2;
			pj[n++] = 3;
		}
	}
	for (int s = n - 1; s >= 0; s--) {
		cplx gd[4];

		mat_dag(gd, g[s]);
		if (lg_two_level(t, cs, k, t0, t1, pi[s], pj[s], gd) < 0)
			return -1;
	}
	return 0;
}

/*
 * A monomial M (swap, cswap, iswap-like) is a permutation of the basis, done
 * as two-level X's cycle by cycle, then a diagonal: exact and cheaper than
 * Givens, which would leave signs behind.
 */
static int lg_monomial4(struct tp *t, const int *cs, int k, int t0, int t1, const cplx m[16])
{
	int sigma[4], done = 0;
	cplx d[16] = {0};

	for (int c = 0; c < 4; c++) {
		sigma[c] = -1;
		for (int r = 0; r < 4; r++)
			if (cabs(m[4 * r + c]) > EPS) {
				if (sigma[c] >= 0)
					return 1;
				sigma[c] = r;
			}
		if (sigma[c] < 0)
			return 1;
		d[5 * sigma[c]] = m[4 * sigma[c] + c];
	}
	/* cycle c0 -> c1 -> ... : swap (c0 c1), then (c0 c2), ... */
	for (int c0 = 0; c0 < 4; c0++) {
		if (done >> c0 & 1)
			continue;
		done |= 1 << c0;
		for (int c = sigma[c0]; c != c0; c = sigma[c]) {
			done |= 1 << c;
			if (lg_two_level(t, cs, k, t0, t1, c0 < c ? c0 : c, c0 < c ? c : c0,
					 MAT_X) < 0)
				return -1;
		}
	}
	return lg_ctrl_diag4(t, cs, k, t0, t1, d);
}

static int lg_ctrl_u4(struct tp *t, const int *cs, int k, int t0, int t1, const cplx m[16])
{
	int rc;

	const cplx *basis[3] = {NULL, MAT_H, MAT_SH};
	static const cplx id[4] = {1, 0, 0, 1};

	if (is_diag4(m))
		return lg_ctrl_diag4(t, cs, k, t0, t1, m);
	/* Pauli rotations (rxx, ryy, rzx) are diagonal in a local Clifford basis */
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			const cplx *a0 = basis[a] ? basis[a] : id, *a1 = basis[b] ? basis[b] : id;
			cplx kr[16], kd[16], md[16], a0d[4], a1d[4];

			if (!a && !b)
				continue;
			kron(kr, a0, a1);
			dag4(kd, kr);
			mul4(md, kd, m);
			mul4(md, md, kr);
			if (!is_diag4(md))
				continue;
			mat_dag(a0d, a0);
			mat_dag(a1d, a1);
			if (lg_1q(t, t0, a0d) < 0 || lg_1q(t, t1, a1d) < 0 ||
			    lg_ctrl_diag4(t, cs, k, t0, t1, md) < 0 || lg_1q(t, t0, a0) < 0)
				return -1;
			return lg_1q(t, t1, a1);
		}
	rc = lg_monomial4(t, cs, k, t0, t1, m);
	if (rc <= 0)
		return rc;
	return lg_givens4(t, cs, k, t0, t1, m);
}

/* ---- driver ---- */

static int lg_op(struct tp *t, const struct circ_op *op)
{
	int nq = op->nctrl + op->ntgt;
	cplx m[16];

	for (int i = 0; i < nq; i++)
		if (op->q[i] < 0 || op->q[i] >= t->nl)
			return ciel_err_field(t->err, CIEL_EINVAL, "qasm",
					      "gate %s: qubit %d out of range", op->name, op->q[i]);
	if (op->ntgt == 1) {
		mat_from_op(m, op->m);
		return lg_ctrl_u(t, op->q, op->nctrl, op->q[op->nctrl], m);
	}
	if (op->ntgt != 2)
		return ciel_err_field(t->err, CIEL_EINVAL, "qasm", "gate %s: %d targets", op->name,
				      op->ntgt);
	for (int i = 0; i < 16; i++)
		m[i] = op->m[2 * i] + I * op->m[2 * i + 1];
	return lg_ctrl_u4(t, op->q, op->nctrl, op->q[op->nctrl], op->q[op->nctrl + 1], m);
}

static int emit_op(struct tp *t, const struct circ_op *in)
{
	struct circ_op op;
	int nq;

	t->cond_off = in->cond_off;
	t->cond_len = in->cond_len;
	t->cond_val = in->cond_val;
	switch (in->kind) {
	case CIRC_GATE:
		return lg_op(t, in);
	case CIRC_MEASURE:
	case CIRC_RESET:
		if (in->q[0] < 0 || in->q[0] >= t->nl)
			return ciel_err_field(t->err, CIEL_EINVAL, "qasm", "qubit %d out of range",
					      in->q[0]);
		op = *in;
		op.q[0] = t->l2p[in->q[0]];
		if (flush(t, op.q[0]) < 0)
			return -1;
		/* an unconditional reset leaves |0>; a measurement does not */
		if (in->kind == CIRC_RESET && !in->cond_len)
			t->zero |= 1ULL << op.q[0];
		else
			t->zero &= ~(1ULL << op.q[0]);
		if (in->kind == CIRC_MEASURE && flush_conditional(t) < 0)
			return -1;
		return circ_push(t->out, &op, t->err);
	case CIRC_BARRIER:
		op = *in;
		nq = op.nctrl + op.ntgt;
		if (!nq && flush_all(t) < 0)
			return -1;
		for (int i = 0; i < nq; i++) {
			if (in->q[i] < 0 || in->q[i] >= t->nl)
				return ciel_err_field(t->err, CIEL_EINVAL, "qasm",
						      "barrier: qubit %d out of range", in->q[i]);
			op.q[i] = t->l2p[in->q[i]];
			if (flush(t, op.q[i]) < 0)
				return -1;
		}
		return circ_push(t->out, &op, t->err);
	default:
		return ciel_err_set(t->err, CIEL_EINVAL, "unknown op kind %d", in->kind);
	}
}

/*
 * Initial layout: physical qubits in BFS order from the best-connected one
 * (a compact region), given to the logical qubits that take part in the most
 * multi-qubit gates first, so the busiest ones sit in the middle.
 */
static void initial_layout(struct tp *t, const struct circ *in)
{
	int order[CIRC_MAX_QUBITS], used[CIRC_MAX_QUBITS] = {0}, bfs[CIRC_MAX_QUBITS];
	int head = 0, tail = 0, best = 0, seen[CIRC_MAX_QUBITS] = {0};

	for (int q = 0; q < t->np; q++)
		t->p2l[q] = -1;
	if (t->p->all_to_all) {
		for (int l = 0; l < t->nl; l++) {
			t->l2p[l] = l;
			t->p2l[l] = l;
		}
		return;
	}
	for (size_t i = 0; i < in->n; i++) {
		const struct circ_op *op = &in->ops[i];

		if (op->kind == CIRC_GATE && op->nctrl + op->ntgt > 1)
			for (int k = 0; k < op->nctrl + op->ntgt; k++)
				if (op->q[k] >= 0 && op->q[k] < t->nl)
					used[op->q[k]]++;
	}
	for (int l = 0; l < t->nl; l++)
		order[l] = l;
	for (int a = 1; a < t->nl; a++) /* stable insertion sort, busiest first */
		for (int b = a; b > 0 && used[order[b]] > used[order[b - 1]]; b--) {
			int x = order[b];

			order[b] = order[b - 1];
			order[b - 1] = x;
		}
	for (int q = 1; q < t->np; q++)
		if (__builtin_popcountll(t->adj[q]) > __builtin_popcountll(t->adj[best]))
			best = q;
	bfs[tail++] = best;
	seen[best] = 1;
	while (head < tail) {
		int x = bfs[head++];

		for (int y = 0; y < t->np; y++)
			if ((t->adj[x] >> y & 1) && !seen[y]) {
				seen[y] = 1;
				bfs[tail++] = y;
			}
	}
	for (int i = 0; i < t->nl; i++) {
		t->l2p[order[i]] = bfs[i];
		t->p2l[bfs[i]] = order[i];
	}
}

static int out_regs(const struct qdev_profile *p, const struct circ *in, struct circ *out,
		    struct ciel_err *err)
{
	if (circ_add_qreg(out, circ_find_creg(in, "q") ? "qphys" : "q", p->nq, err) < 0)
		return -1;
	for (size_t i = 0; i < in->ncregs; i++)
		if (circ_add_creg(out, in->cregs[i].name, in->cregs[i].len, err) < 0)
			return -1;
	return 0;
}

int qdev_transpile_layout(const struct qdev_profile *p, const struct circ *in, struct circ *out,
			  int *final_layout, struct ciel_err *err)
{
	struct tp *t;
	int rc = -1;

	if (in->nq > p->nq)
		return ciel_err_field(err, CIEL_EINVAL, "qasm",
				      "circuit needs %d qubits; profile %s has %d", in->nq, p->name,
				      p->nq);
	if (!p->nnative) { /* ideal: any gate, all-to-all */
		for (int l = 0; final_layout && l < in->nq; l++)
			final_layout[l] = l;
		return circ_copy(out, in, err);
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return ciel_err_set(err, CIEL_ENOMEM, "transpile: out of memory");
	t->p = p;
	t->out = out;
	t->err = err;
	t->np = p->nq;
	t->nl = in->nq;
	for (size_t e = 0; e < p->nedges; e++) {
		t->adj[p->edges[e][0]] |= 1ULL << p->edges[e][1];
		t->adj[p->edges[e][1]] |= 1ULL << p->edges[e][0];
	}
	for (int i = 0; i < p->nnative; i++) {
		t->use_prx |= strcmp(p->native[i], "prx") == 0;
		t->use_rx |= strcmp(p->native[i], "rx") == 0;
		t->use_ry |= strcmp(p->native[i], "ry") == 0;
	}
	t->zero = ~0ULL;
	initial_layout(t, in);
	if (out_regs(p, in, out, err) < 0)
		goto out;
	for (size_t i = 0; i < in->n; i++)
		if (emit_op(t, &in->ops[i]) < 0)
			goto out;
	if (flush_all(t) < 0)
		goto out;
	for (int l = 0; final_layout && l < in->nq; l++)
		final_layout[l] = t->l2p[l];
	rc = 0;
out:
	free(t);
	return rc;
}

int qdev_transpile(const struct qdev_profile *p, const struct circ *in, struct circ *out,
		   struct ciel_err *err)
{
	return qdev_transpile_layout(p, in, out, NULL, err);
}
