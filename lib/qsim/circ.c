/*
 * circ — circuit containers and the standard gate library.
 *
 * Every gate of qelib1.inc and stdgates.inc is one matrix on one or two
 * targets under zero or more controls, so the simulator needs a single
 * kernel family and the transpiler a single decomposition entry point.
 */
#include "qsim/circ.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void circ_init(struct circ *c)
{
	memset(c, 0, sizeof(*c));
}

void circ_release(struct circ *c)
{
	free(c->qregs);
	free(c->cregs);
	free(c->ops);
	memset(c, 0, sizeof(*c));
}

static void *dup_array(const void *src, size_t n, size_t size)
{
	void *p;

	if (!n)
		return NULL;
	p = malloc(n * size);
	if (p)
		memcpy(p, src, n * size);
	return p;
}

int circ_copy(struct circ *dst, const struct circ *src, struct ciel_err *err)
{
	struct circ c = *src;

	c.qregs = dup_array(src->qregs, src->nqregs, sizeof(*src->qregs));
	c.cregs = dup_array(src->cregs, src->ncregs, sizeof(*src->cregs));
	c.ops = dup_array(src->ops, src->n, sizeof(*src->ops));
	c.cap = src->n;
	if ((src->nqregs && !c.qregs) || (src->ncregs && !c.cregs) || (src->n && !c.ops)) {
		circ_release(&c);
		return ciel_err_set(err, CIEL_ENOMEM, "copy circuit: out of memory");
	}
	*dst = c;
	return 0;
}

static int add_reg(struct circ_reg **regs, size_t *n, int *total, int max, const char *kind,
		   const char *name, int len, struct ciel_err *err)
{
	struct circ_reg *r;

	if (strlen(name) >= CIRC_REG_NAME_MAX)
		return ciel_err_set(err, CIEL_EINVAL, "%s name too long: %s", kind, name);
	if (len < 1)
		return ciel_err_set(err, CIEL_EINVAL, "%s %s: size must be at least 1", kind, name);
	if (len > max - *total)
		return ciel_err_set(err, CIEL_EINVAL, "%s %s: more than %d %s in all", kind, name,
				    max, kind[0] == 'q' ? "qubits" : "classical bits");
	r = realloc(*regs, (*n + 1) * sizeof(**regs));
	if (!r)
		return ciel_err_set(err, CIEL_ENOMEM, "%s: out of memory", kind);
	*regs = r;
	r += (*n)++;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->off = *total;
	r->len = len;
	*total += len;
	return 0;
}

int circ_add_qreg(struct circ *c, const char *name, int len, struct ciel_err *err)
{
	if (circ_find_qreg(c, name) || circ_find_creg(c, name))
		return ciel_err_set(err, CIEL_EEXIST, "register %s is already declared", name);
	return add_reg(&c->qregs, &c->nqregs, &c->nq, CIRC_MAX_QUBITS, "qreg", name, len, err);
}

int circ_add_creg(struct circ *c, const char *name, int len, struct ciel_err *err)
{
	if (circ_find_qreg(c, name) || circ_find_creg(c, name))
		return ciel_err_set(err, CIEL_EEXIST, "register %s is already declared", name);
	return add_reg(&c->cregs, &c->ncregs, &c->ncl, CIRC_MAX_CLBITS, "creg", name, len, err);
}

static const struct circ_reg *find_reg(const struct circ_reg *regs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(regs[i].name, name) == 0)
			return &regs[i];
	return NULL;
}

const struct circ_reg *circ_find_qreg(const struct circ *c, const char *name)
{
	return find_reg(c->qregs, c->nqregs, name);
}

const struct circ_reg *circ_find_creg(const struct circ *c, const char *name)
{
	return find_reg(c->cregs, c->ncregs, name);
}

int circ_push(struct circ *c, const struct circ_op *op, struct ciel_err *err)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct circ_op *ops;

		if (cap > (1u << 24))
			return ciel_err_set(err, CIEL_ETOOBIG, "circuit: more than %u operations",
					    1u << 24);
		ops = realloc(c->ops, cap * sizeof(*ops));
		if (!ops)
			return ciel_err_set(err, CIEL_ENOMEM, "circuit: out of memory");
		c->ops = ops;
		c->cap = cap;
	}
	c->ops[c->n++] = *op;
	return 0;
}

/* ---- matrices ---- */

#define RE(m, dim, r, c) (m)[2 * ((r) * (dim) + (c))]
#define IM(m, dim, r, c) (m)[2 * ((r) * (dim) + (c)) + 1]

static void set(double *m, int dim, int r, int c, double re, double im)
{
	RE(m, dim, r, c) = re;
	IM(m, dim, r, c) = im;
}

void circ_u(double m[8], double theta, double phi, double lambda, double gamma)
{
	double c = cos(theta / 2), s = sin(theta / 2);

	/* e^{i gamma} [[c, -e^{i l} s], [e^{i p} s, e^{i (p + l)} c]] */
	set(m, 2, 0, 0, c * cos(gamma), c * sin(gamma));
	set(m, 2, 0, 1, -s * cos(gamma + lambda), -s * sin(gamma + lambda));
	set(m, 2, 1, 0, s * cos(gamma + phi), s * sin(gamma + phi));
	set(m, 2, 1, 1, c * cos(gamma + phi + lambda), c * sin(gamma + phi + lambda));
}

static void diag2(double m[8], double a_re, double a_im, double b_re, double b_im)
{
	memset(m, 0, 8 * sizeof(*m));
	set(m, 2, 0, 0, a_re, a_im);
	set(m, 2, 1, 1, b_re, b_im);
}

static void m_x(double *m, const double *p)
{
	(void)p;
	memset(m, 0, 8 * sizeof(*m));
	set(m, 2, 0, 1, 1, 0);
	set(m, 2, 1, 0, 1, 0);
}

static void m_y(double *m, const double *p)
{
	(void)p;
	memset(m, 0, 8 * sizeof(*m));
	set(m, 2, 0, 1, 0, -1);
	set(m, 2, 1, 0, 0, 1);
}

static void m_z(double *m, const double *p)
{
	(void)p;
	diag2(m, 1, 0, -1, 0);
}

static void m_id(double *m, const double *p)
{
	(void)p;
	diag2(m, 1, 0, 1, 0);
}

static void m_h(double *m, const double *p)
{
	double r = M_SQRT1_2;

	(void)p;
	memset(m, 0, 8 * sizeof(*m));
	set(m, 2, 0, 0, r, 0);
	set(m, 2, 0, 1, r, 0);
	set(m, 2, 1, 0, r, 0);
	set(m, 2, 1, 1, -r, 0);
}

static void m_s(double *m, const double *p)
{
	(void)p;
	diag2(m, 1, 0, 0, 1);
}

static void m_sdg(double *m, const double *p)
{
	(void)p;
	diag2(m, 1, 0, 0, -1);
}

static void m_t(double *m, const double *p)
{
	(void)p;
	diag2(m, 1, 0, M_SQRT1_2, M_SQRT1_2);
}

static void m_tdg(double *m, const double *p)
{
	(void)p;
	diag2(m, 1, 0, M_SQRT1_2, -M_SQRT1_2);
}

static void m_sx(double *m, const double *p)
{
	(void)p;
	set(m, 2, 0, 0, 0.5, 0.5);
	set(m, 2, 0, 1, 0.5, -0.5);
	set(m, 2, 1, 0, 0.5, -0.5);
	set(m, 2, 1, 1, 0.5, 0.5);
}

static void m_sxdg(double *m, const double *p)
{
	(void)p;
	set(m, 2, 0, 0, 0.5, -0.5);
	set(m, 2, 0, 1, 0.5, 0.5);
	set(m, 2, 1, 0, 0.5, 0.5);
	set(m, 2, 1, 1, 0.5, -0.5);
}

static void m_rx(double *m, const double *p)
{
	double c = cos(p[0] / 2), s = sin(p[0] / 2);

	set(m, 2, 0, 0, c, 0);
	set(m, 2, 0, 1, 0, -s);
	set(m, 2, 1, 0, 0, -s);
	set(m, 2, 1, 1, c, 0);
}

static void m_ry(double *m, const double *p)
{
	double c = cos(p[0] / 2), s = sin(p[0] / 2);

	set(m, 2, 0, 0, c, 0);
	set(m, 2, 0, 1, -s, 0);
	set(m, 2, 1, 0, s, 0);
	set(m, 2, 1, 1, c, 0);
}

static void m_rz(double *m, const double *p)
{
	diag2(m, cos(p[0] / 2), -sin(p[0] / 2), cos(p[0] / 2), sin(p[0] / 2));
}

static void m_p(double *m, const double *p)
{
	diag2(m, 1, 0, cos(p[0]), sin(p[0]));
}

static void m_u2(double *m, const double *p)
{
	circ_u(m, M_PI / 2, p[0], p[1], 0);
}

static void m_u3(double *m, const double *p)
{
	circ_u(m, p[0], p[1], p[2], 0);
}

static void m_cu(double *m, const double *p)
{
	circ_u(m, p[0], p[1], p[2], p[3]);
}

/* r(theta, phi) = exp(-i theta/2 (cos phi X + sin phi Y)), IQM's prx */
static void m_r(double *m, const double *p)
{
	double c = cos(p[0] / 2), s = sin(p[0] / 2);

	set(m, 2, 0, 0, c, 0);
	set(m, 2, 0, 1, -s * sin(p[1]), -s * cos(p[1]));
	set(m, 2, 1, 0, s * sin(p[1]), -s * cos(p[1]));
	set(m, 2, 1, 1, c, 0);
}

static void m_swap(double *m, const double *p)
{
	(void)p;
	memset(m, 0, 32 * sizeof(*m));
	set(m, 4, 0, 0, 1, 0);
	set(m, 4, 1, 2, 1, 0);
	set(m, 4, 2, 1, 1, 0);
	set(m, 4, 3, 3, 1, 0);
}

/* exp(-i theta/2 P0 P1) for Paulis P0 on target 0 and P1 on target 1 */
static void pauli_rot(double *m, double theta, char p0, char p1)
{
	double c = cos(theta / 2), s = sin(theta / 2);

	memset(m, 0, 32 * sizeof(*m));
	for (int col = 0; col < 4; col++) {
		int row = col;
		double re = 1, im = 0, t;
		int bits[2] = {col & 1, col >> 1};
		char ps[2] = {p0, p1};

		/* (P0 x P1)|col> = phase |row> */
		for (int k = 0; k < 2; k++) {
			if (ps[k] == 'x' || ps[k] == 'y')
				row ^= 1 << k;
			if (ps[k] == 'y') { /* Y|0> = i|1>, Y|1> = -i|0> */
				t = re;
				re = bits[k] ? im : -im;
				im = bits[k] ? -t : t;
			} else if (ps[k] == 'z' && bits[k]) {
				re = -re;
				im = -im;
			}
		}
		RE(m, 4, col, col) += c;
		/* -i s (re + i im) = s im - i s re */
		RE(m, 4, row, col) += s * im;
		IM(m, 4, row, col) += -s * re;
	}
}

static void m_rxx(double *m, const double *p)
{
	pauli_rot(m, p[0], 'x', 'x');
}

static void m_ryy(double *m, const double *p)
{
	pauli_rot(m, p[0], 'y', 'y');
}

static void m_rzz(double *m, const double *p)
{
	pauli_rot(m, p[0], 'z', 'z');
}

/* rzx(theta) a, b: Z on a (target 0), X on b (target 1) */
static void m_rzx(double *m, const double *p)
{
	pauli_rot(m, p[0], 'z', 'x');
}

struct std_gate {
	const char *name;
	int nparams, nctrl, ntgt;
	void (*fill)(double *m, const double *p);
};

static const struct std_gate std_gates[] = {
    {"id", 0, 0, 1, m_id},     {"u0", 1, 0, 1, m_id},	   {"x", 0, 0, 1, m_x},
    {"y", 0, 0, 1, m_y},       {"z", 0, 0, 1, m_z},	   {"h", 0, 0, 1, m_h},
    {"s", 0, 0, 1, m_s},       {"sdg", 0, 0, 1, m_sdg},	   {"t", 0, 0, 1, m_t},
    {"tdg", 0, 0, 1, m_tdg},   {"sx", 0, 0, 1, m_sx},	   {"sxdg", 0, 0, 1, m_sxdg},
    {"rx", 1, 0, 1, m_rx},     {"ry", 1, 0, 1, m_ry},	   {"rz", 1, 0, 1, m_rz},
    {"p", 1, 0, 1, m_p},       {"u1", 1, 0, 1, m_p},	   {"phase", 1, 0, 1, m_p},
    {"u2", 2, 0, 1, m_u2},     {"u3", 3, 0, 1, m_u3},	   {"u", 3, 0, 1, m_u3},
    {"U", 3, 0, 1, m_u3},      {"r", 2, 0, 1, m_r},	   {"prx", 2, 0, 1, m_r},
    {"cx", 0, 1, 1, m_x},      {"CX", 0, 1, 1, m_x},	   {"cnot", 0, 1, 1, m_x},
    {"cy", 0, 1, 1, m_y},      {"cz", 0, 1, 1, m_z},	   {"ch", 0, 1, 1, m_h},
    {"csx", 0, 1, 1, m_sx},    {"crx", 1, 1, 1, m_rx},	   {"cry", 1, 1, 1, m_ry},
    {"crz", 1, 1, 1, m_rz},    {"cp", 1, 1, 1, m_p},	   {"cu1", 1, 1, 1, m_p},
    {"cphase", 1, 1, 1, m_p},  {"cu3", 3, 1, 1, m_u3},	   {"cu", 4, 1, 1, m_cu},
    {"ccx", 0, 2, 1, m_x},     {"toffoli", 0, 2, 1, m_x},  {"ccz", 0, 2, 1, m_z},
    {"c3x", 0, 3, 1, m_x},     {"c4x", 0, 4, 1, m_x},	   {"c3sqrtx", 0, 3, 1, m_sx},
    {"swap", 0, 0, 2, m_swap}, {"cswap", 0, 1, 2, m_swap}, {"fredkin", 0, 1, 2, m_swap},
    {"rxx", 1, 0, 2, m_rxx},   {"ryy", 1, 0, 2, m_ryy},	   {"rzz", 1, 0, 2, m_rzz},
    {"rzx", 1, 0, 2, m_rzx},
};
#define N_STD (sizeof(std_gates) / sizeof(std_gates[0]))

const char *const circ_std_names[] = {
    "id",      "u0",   "x",	"y",	   "z",	   "h",	  "s",	   "sdg",     "t",   "tdg", "sx",
    "sxdg",    "rx",   "ry",	"rz",	   "p",	   "u1",  "phase", "u2",      "u3",  "u",   "U",
    "r",       "prx",  "cx",	"CX",	   "cnot", "cy",  "cz",	   "ch",      "csx", "crx", "cry",
    "crz",     "cp",   "cu1",	"cphase",  "cu3",  "cu",  "ccx",   "toffoli", "ccz", "c3x", "c4x",
    "c3sqrtx", "swap", "cswap", "fredkin", "rxx",  "ryy", "rzz",   "rzx",     NULL,
};

static const struct std_gate *find_std(const char *name)
{
	for (size_t i = 0; i < N_STD; i++)
		if (strcmp(std_gates[i].name, name) == 0)
			return &std_gates[i];
	return NULL;
}

int circ_std_nparams(const char *name)
{
	const struct std_gate *g = find_std(name);

	return g ? g->nparams : -1;
}

int circ_std_nqubits(const char *name)
{
	const struct std_gate *g = find_std(name);

	return g ? g->nctrl + g->ntgt : -1;
}

int circ_std_gate(const char *name, const double *params, int nparams, struct circ_op *op,
		  struct ciel_err *err)
{
	const struct std_gate *g = find_std(name);

	if (!g)
		return ciel_err_set(err, CIEL_ENOTFOUND, "unknown gate %s", name);
	if (nparams != g->nparams)
		return ciel_err_set(err, CIEL_EINVAL, "gate %s takes %d parameter%s, not %d", name,
				    g->nparams, g->nparams == 1 ? "" : "s", nparams);
	memset(op, 0, sizeof(*op));
	op->kind = CIRC_GATE;
	op->nctrl = (uint8_t)g->nctrl;
	op->ntgt = (uint8_t)g->ntgt;
	op->nparams = (uint8_t)nparams;
	snprintf(op->name, sizeof(op->name), "%s", name);
	for (int i = 0; i < nparams; i++)
		op->params[i] = params[i];
	g->fill(op->m, op->params);
	return 0;
}

void circ_op_invert(struct circ_op *op)
{
	int dim = op->ntgt == 2 ? 4 : 2;
	double t[32];

	memcpy(t, op->m, sizeof(t));
	for (int r = 0; r < dim; r++)
		for (int c = 0; c < dim; c++) {
			RE(op->m, dim, r, c) = RE(t, dim, c, r);
			IM(op->m, dim, r, c) = -IM(t, dim, c, r);
		}
}

int circ_op_control(struct circ_op *op, int qubit, struct ciel_err *err)
{
	int n = op->nctrl + op->ntgt;

	if (op->nctrl >= CIRC_MAX_CTRL)
		return ciel_err_set(err, CIEL_EINVAL, "gate %s: more than %d controls", op->name,
				    CIRC_MAX_CTRL);
	memmove(op->q + 1, op->q, (size_t)n * sizeof(op->q[0]));
	op->q[0] = qubit;
	op->nctrl++;
	return 0;
}

/* ---- properties ---- */

int circ_op_nqubits(const struct circ_op *op)
{
	switch (op->kind) {
	case CIRC_GATE:
		return op->nctrl + op->ntgt;
	case CIRC_MEASURE:
	case CIRC_RESET:
		return 1;
	default:
		return 0;
	}
}

size_t circ_depth(const struct circ *c)
{
	size_t *qd, *cd, depth = 0;

	qd = calloc((size_t)c->nq + 1, sizeof(*qd));
	cd = calloc((size_t)c->ncl + 1, sizeof(*cd));
	if (!qd || !cd) {
		free(qd);
		free(cd);
		return 0;
	}
	for (size_t i = 0; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];
		int nq = circ_op_nqubits(op);
		size_t d = 0;

		if (op->kind == CIRC_BARRIER)
			continue;
		for (int k = 0; k < nq; k++)
			if (qd[op->q[k]] > d)
				d = qd[op->q[k]];
		/* a measurement writes its bit; a condition reads its bits */
		if (op->kind == CIRC_MEASURE && cd[op->clbit] > d)
			d = cd[op->clbit];
		for (int b = 0; b < op->cond_len; b++)
			if (cd[op->cond_off + b] > d)
				d = cd[op->cond_off + b];
		d++;
		for (int k = 0; k < nq; k++)
			qd[op->q[k]] = d;
		if (op->kind == CIRC_MEASURE)
			cd[op->clbit] = d;
		for (int b = 0; b < op->cond_len; b++)
			cd[op->cond_off + b] = d;
		if (d > depth)
			depth = d;
	}
	free(qd);
	free(cd);
	return depth;
}

json_t *circ_gate_counts(const struct circ *c)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];
		const char *name = op->kind == CIRC_GATE      ? op->name
				   : op->kind == CIRC_MEASURE ? "measure"
				   : op->kind == CIRC_RESET   ? "reset"
							      : "barrier";
		json_t *v = json_object_get(o, name);

		if (json_object_set_new(o, name, json_integer(v ? json_integer_value(v) + 1 : 1)) <
		    0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

int circ_terminal_measure(const struct circ *c)
{
	uint64_t measured[(CIRC_MAX_QUBITS + 63) / 64] = {0};

	for (size_t i = 0; i < c->n; i++) {
		const struct circ_op *op = &c->ops[i];

		if (op->cond_len || op->kind == CIRC_RESET)
			return 0;
		if (op->kind == CIRC_MEASURE) {
			measured[op->q[0] / 64] |= 1ULL << (op->q[0] % 64);
		} else if (op->kind == CIRC_GATE) {
			for (int k = 0; k < op->nctrl + op->ntgt; k++)
				if (measured[op->q[k] / 64] & (1ULL << (op->q[k] % 64)))
					return 0;
		}
	}
	return 1;
}
