/*
 * test_circ — the gate library without the simulator: every matrix unitary,
 * the textbook identities between gates, the explicit formulas of the
 * two-qubit rotations, inversion and control, parameter errors, and the
 * circuit properties (depth, gate counts, terminal measurement).
 */
#include "qsim/circ.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define EPS 1e-12

struct mat {
	int dim;
	double re[4][4], im[4][4];
};

static struct mat of_op(const struct circ_op *op)
{
	struct mat m;

	memset(&m, 0, sizeof(m));
	m.dim = op->ntgt == 2 ? 4 : 2;
	for (int r = 0; r < m.dim; r++)
		for (int c = 0; c < m.dim; c++) {
			m.re[r][c] = op->m[2 * (r * m.dim + c)];
			m.im[r][c] = op->m[2 * (r * m.dim + c) + 1];
		}
	return m;
}

static struct mat gate(const char *name, double p0, double p1, double p2, double p3)
{
	double p[4] = {p0, p1, p2, p3};
	struct circ_op op;

	assert_int_equal(circ_std_gate(name, p, circ_std_nparams(name), &op, NULL), 0);
	return of_op(&op);
}

static struct mat mul(struct mat a, struct mat b)
{
	struct mat m;

	memset(&m, 0, sizeof(m));
	m.dim = a.dim;
	for (int r = 0; r < a.dim; r++)
		for (int c = 0; c < a.dim; c++)
			for (int k = 0; k < a.dim; k++) {
				m.re[r][c] += a.re[r][k] * b.re[k][c] - a.im[r][k] * b.im[k][c];
				m.im[r][c] += a.re[r][k] * b.im[k][c] + a.im[r][k] * b.re[k][c];
			}
	return m;
}

/* a == (sr + i si) b, entry by entry */
static int equal_times(struct mat a, struct mat b, double sr, double si)
{
	if (a.dim != b.dim)
		return 0;
	for (int r = 0; r < a.dim; r++)
		for (int c = 0; c < a.dim; c++) {
			double er = sr * b.re[r][c] - si * b.im[r][c];
			double ei = sr * b.im[r][c] + si * b.re[r][c];

			if (fabs(a.re[r][c] - er) > EPS || fabs(a.im[r][c] - ei) > EPS)
				return 0;
		}
	return 1;
}

static int equal(struct mat a, struct mat b)
{
	return equal_times(a, b, 1, 0);
}

static struct mat ident(int dim)
{
	struct mat m;

	memset(&m, 0, sizeof(m));
	m.dim = dim;
	for (int i = 0; i < dim; i++)
		m.re[i][i] = 1;
	return m;
}

static struct mat dagger(struct mat a)
{
	struct mat m = a;

	for (int r = 0; r < a.dim; r++)
		for (int c = 0; c < a.dim; c++) {
			m.re[r][c] = a.re[c][r];
			m.im[r][c] = -a.im[c][r];
		}
	return m;
}

/* Matrix with entries given as (re, im) pairs, row-major. */
static struct mat explicit(int dim, const double *v)
{
	struct mat m;

	memset(&m, 0, sizeof(m));
	m.dim = dim;
	for (int r = 0; r < dim; r++)
		for (int c = 0; c < dim; c++) {
			m.re[r][c] = v[2 * (r * dim + c)];
			m.im[r][c] = v[2 * (r * dim + c) + 1];
		}
	return m;
}

static void test_all_unitary(void **st)
{
	const double ps[4] = {0.37, -1.21, 2.5, 0.9};
	int n = 0;

	(void)st;
	for (const char *const *nm = circ_std_names; *nm; nm++, n++) {
		struct circ_op op;
		struct mat m;
		int np = circ_std_nparams(*nm);

		assert_true(np >= 0 && np <= 4);
		assert_int_equal(circ_std_gate(*nm, ps, np, &op, NULL), 0);
		assert_string_equal(op.name, *nm);
		assert_int_equal(op.kind, CIRC_GATE);
		assert_int_equal(op.nctrl + op.ntgt, circ_std_nqubits(*nm));
		m = of_op(&op);
		if (!equal(mul(dagger(m), m), ident(m.dim)))
			fail_msg("%s is not unitary", *nm);
	}
	/* qelib1.inc and stdgates.inc: the list is not short */
	assert_true(n >= 50);
}

static void test_identities(void **st)
{
	double th = 0.731, r = M_SQRT1_2;

	(void)st;
	assert_true(equal(mul(gate("h", 0, 0, 0, 0), gate("h", 0, 0, 0, 0)), ident(2)));
	assert_true(
	    equal(mul(gate("s", 0, 0, 0, 0), gate("s", 0, 0, 0, 0)), gate("z", 0, 0, 0, 0)));
	assert_true(
	    equal(mul(gate("t", 0, 0, 0, 0), gate("t", 0, 0, 0, 0)), gate("s", 0, 0, 0, 0)));
	assert_true(
	    equal(mul(gate("sx", 0, 0, 0, 0), gate("sx", 0, 0, 0, 0)), gate("x", 0, 0, 0, 0)));
	assert_true(equal(mul(gate("sxdg", 0, 0, 0, 0), gate("sx", 0, 0, 0, 0)), ident(2)));
	assert_true(equal(mul(gate("sdg", 0, 0, 0, 0), gate("s", 0, 0, 0, 0)), ident(2)));
	assert_true(equal(mul(gate("tdg", 0, 0, 0, 0), gate("t", 0, 0, 0, 0)), ident(2)));
	assert_true(equal(gate("u3", M_PI, 0, M_PI, 0), gate("x", 0, 0, 0, 0)));
	assert_true(equal(gate("u2", 0, M_PI, 0, 0), gate("h", 0, 0, 0, 0)));
	assert_true(equal_times(gate("rx", M_PI, 0, 0, 0), gate("x", 0, 0, 0, 0), 0, -1));
	assert_true(equal_times(gate("ry", M_PI, 0, 0, 0), gate("y", 0, 0, 0, 0), 0, -1));
	assert_true(equal_times(gate("rz", M_PI, 0, 0, 0), gate("z", 0, 0, 0, 0), 0, -1));
	assert_true(equal(gate("r", th, 0, 0, 0), gate("rx", th, 0, 0, 0)));
	assert_true(equal(gate("prx", th, M_PI / 2, 0, 0), gate("ry", th, 0, 0, 0)));
	assert_true(equal(gate("r", th, M_PI / 2, 0, 0), gate("ry", th, 0, 0, 0)));
	assert_true(equal(gate("p", th, 0, 0, 0), gate("u1", th, 0, 0, 0)));
	assert_true(equal(gate("p", th, 0, 0, 0), gate("u3", 0, 0, th, 0)));
	/* rz and p differ by a global phase only: e^{-i th/2} */
	assert_true(equal_times(gate("rz", th, 0, 0, 0), gate("p", th, 0, 0, 0), cos(th / 2),
				-sin(th / 2)));
	assert_true(equal(gate("u", th, 0.2, 0.3, 0), gate("u3", th, 0.2, 0.3, 0)));
	assert_true(equal(gate("U", th, 0.2, 0.3, 0), gate("u3", th, 0.2, 0.3, 0)));
	/* cu's fourth parameter is the phase a control makes visible; cu3 has none */
	assert_true(equal(gate("cu", th, 0.2, 0.3, 0), gate("cu3", th, 0.2, 0.3, 0)));
	assert_true(equal_times(gate("cu", th, 0.2, 0.3, 0.5), gate("cu3", th, 0.2, 0.3, 0),
				cos(0.5), sin(0.5)));
	assert_true(equal(gate("cx", 0, 0, 0, 0), gate("x", 0, 0, 0, 0)));
	assert_true(equal(gate("ccx", 0, 0, 0, 0), gate("x", 0, 0, 0, 0)));
	assert_true(equal(gate("cp", th, 0, 0, 0), gate("p", th, 0, 0, 0)));
	assert_true(equal(gate("crz", th, 0, 0, 0), gate("rz", th, 0, 0, 0)));
	/* h = (x + z) / sqrt 2 */
	double hv[8] = {r, 0, r, 0, r, 0, -r, 0};
	assert_true(equal(gate("h", 0, 0, 0, 0), explicit(2, hv)));
}

static void test_two_qubit_formulas(void **st)
{
	double th = 0.913, c = cos(th / 2), s = sin(th / 2);
	/* index = t0 + 2 t1 */
	double rzz[32] = {c, -s, 0, 0, 0, 0, 0, 0, 0, 0, c, s, 0, 0, 0, 0,
			  0, 0,	 0, 0, c, s, 0, 0, 0, 0, 0, 0, 0, 0, c, -s};
	double rxx[32] = {c, 0, 0, 0,  0, 0, 0, -s, 0, 0,  c, 0, 0, -s, 0, 0,
			  0, 0, 0, -s, c, 0, 0, 0,  0, -s, 0, 0, 0, 0,	c, 0};
	double ryy[32] = {c, 0, 0, 0,  0, 0, 0, s, 0, 0, c, 0, 0, -s, 0, 0,
			  0, 0, 0, -s, c, 0, 0, 0, 0, s, 0, 0, 0, 0,  c, 0};
	/* Z on target 0, X on target 1 (Qiskit's RZXGate) */
	double rzx[32] = {c, 0,	 0, 0, 0, -s, 0, 0, 0, 0, c, 0, 0, 0, 0, s,
			  0, -s, 0, 0, c, 0,  0, 0, 0, 0, 0, s, 0, 0, c, 0};
	double swp[32] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
			  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};

	(void)st;
	assert_true(equal(gate("rzz", th, 0, 0, 0), explicit(4, rzz)));
	assert_true(equal(gate("rxx", th, 0, 0, 0), explicit(4, rxx)));
	assert_true(equal(gate("ryy", th, 0, 0, 0), explicit(4, ryy)));
	assert_true(equal(gate("rzx", th, 0, 0, 0), explicit(4, rzx)));
	assert_true(equal(gate("swap", 0, 0, 0, 0), explicit(4, swp)));
	assert_true(equal(gate("cswap", 0, 0, 0, 0), explicit(4, swp)));
	assert_true(equal(mul(gate("swap", 0, 0, 0, 0), gate("swap", 0, 0, 0, 0)), ident(4)));
}

static void test_invert_control(void **st)
{
	struct circ_op op, inv;
	struct ciel_err err;
	double p[3] = {0.4, 1.3, -0.7};

	(void)st;
	const char *names[] = {"u3", "rxx", "sx", "t", "rzx", "cu3"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int np = circ_std_nparams(names[i]);

		assert_int_equal(circ_std_gate(names[i], p, np, &op, NULL), 0);
		inv = op;
		circ_op_invert(&inv);
		assert_true(equal(mul(of_op(&inv), of_op(&op)), ident(of_op(&op).dim)));
		/* not a no-op: these gates are not their own inverse */
		assert_false(equal(of_op(&inv), of_op(&op)));
	}
	assert_int_equal(circ_std_gate("cx", NULL, 0, &op, NULL), 0);
	op.q[0] = 3;
	op.q[1] = 5;
	assert_int_equal(circ_op_control(&op, 7, &err), 0);
	assert_int_equal(op.nctrl, 2);
	assert_int_equal(op.ntgt, 1);
	assert_int_equal(op.q[0], 7);
	assert_int_equal(op.q[1], 3);
	assert_int_equal(op.q[2], 5);
	assert_true(equal(of_op(&op), gate("x", 0, 0, 0, 0)));
	for (int i = 0; i < CIRC_MAX_CTRL - 2; i++)
		assert_int_equal(circ_op_control(&op, 10 + i, &err), 0);
	assert_int_equal(op.nctrl, CIRC_MAX_CTRL);
	assert_int_equal(circ_op_control(&op, 20, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
}

static void test_param_errors(void **st)
{
	struct circ_op op;
	struct ciel_err err;
	double p[4] = {1, 2, 3, 4};

	(void)st;
	memset(&err, 0, sizeof(err));
	assert_int_equal(circ_std_gate("rx", p, 0, &op, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_non_null(strstr(err.msg, "rx"));
	assert_int_equal(circ_std_gate("h", p, 1, &op, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(circ_std_gate("cu", p, 3, &op, &err), -1);
	assert_int_equal(circ_std_gate("cu", p, 4, &op, &err), 0);
	assert_int_equal(circ_std_gate("frobnicate", p, 0, &op, &err), -1);
	assert_int_equal(err.code, CIEL_ENOTFOUND);
	assert_int_equal(circ_std_nparams("u2"), 2);
	assert_int_equal(circ_std_nparams("frobnicate"), -1);
	assert_int_equal(circ_std_nqubits("ccx"), 3);
	assert_int_equal(circ_std_nqubits("c4x"), 5);
	assert_int_equal(circ_std_nqubits("cswap"), 3);
	assert_int_equal(circ_std_nqubits("frobnicate"), -1);
}

static void add(struct circ *c, const char *name, int q0, int q1)
{
	struct circ_op op;

	assert_int_equal(circ_std_gate(name, NULL, 0, &op, NULL), 0);
	op.q[0] = q0;
	op.q[1] = q1;
	assert_int_equal(circ_push(c, &op, NULL), 0);
}

static void add_kind(struct circ *c, int kind, int q, int clbit)
{
	struct circ_op op;

	memset(&op, 0, sizeof(op));
	op.kind = (uint8_t)kind;
	op.q[0] = q;
	op.clbit = clbit;
	assert_int_equal(circ_push(c, &op, NULL), 0);
}

static void test_registers(void **st)
{
	struct circ c;
	struct ciel_err err;

	(void)st;
	circ_init(&c);
	assert_int_equal(circ_add_qreg(&c, "q", 3, &err), 0);
	assert_int_equal(circ_add_qreg(&c, "r", 2, &err), 0);
	assert_int_equal(circ_add_creg(&c, "c", 4, &err), 0);
	assert_int_equal(circ_add_qreg(&c, "c", 1, &err), -1);
	assert_int_equal(err.code, CIEL_EEXIST);
	assert_int_equal(circ_add_qreg(&c, "z", 0, &err), -1);
	assert_int_equal(circ_add_qreg(&c, "big", CIRC_MAX_QUBITS, &err), -1);
	assert_int_equal(c.nq, 5);
	assert_int_equal(c.ncl, 4);
	assert_int_equal(circ_find_qreg(&c, "r")->off, 3);
	assert_null(circ_find_qreg(&c, "c"));
	assert_non_null(circ_find_creg(&c, "c"));
	circ_release(&c);
}

static void test_properties(void **st)
{
	struct circ c, d;
	json_t *counts;

	(void)st;
	circ_init(&c);
	assert_int_equal(circ_add_qreg(&c, "q", 3, NULL), 0);
	assert_int_equal(circ_add_creg(&c, "c", 3, NULL), 0);
	add(&c, "h", 0, 0);		  /* depth 1 on q0 */
	add(&c, "cx", 0, 1);		  /* 2 on q0, q1 */
	add(&c, "h", 2, 0);		  /* 1 on q2 */
	add_kind(&c, CIRC_BARRIER, 0, 0); /* no depth */
	add(&c, "x", 2, 0);		  /* 2 on q2 */
	add_kind(&c, CIRC_MEASURE, 0, 0); /* 3 */
	add_kind(&c, CIRC_MEASURE, 1, 1); /* 3 */
	assert_int_equal(circ_depth(&c), 3);
	assert_true(circ_terminal_measure(&c));
	counts = circ_gate_counts(&c);
	assert_non_null(counts);
	assert_int_equal(json_integer_value(json_object_get(counts, "h")), 2);
	assert_int_equal(json_integer_value(json_object_get(counts, "cx")), 1);
	assert_int_equal(json_integer_value(json_object_get(counts, "x")), 1);
	assert_int_equal(json_integer_value(json_object_get(counts, "measure")), 2);
	assert_null(json_object_get(counts, "swap"));
	json_decref(counts);

	/* a gate on another qubit after a measurement keeps sampling possible */
	assert_int_equal(circ_copy(&d, &c, NULL), 0);
	add(&d, "h", 2, 0);
	assert_true(circ_terminal_measure(&d));
	assert_int_equal(circ_depth(&d), 3);
	/* ... a gate on a measured qubit does not */
	add(&d, "x", 0, 0);
	assert_false(circ_terminal_measure(&d));
	assert_int_equal(circ_depth(&d), 4);
	circ_release(&d);
	/* nor does a reset, nor a condition */
	assert_int_equal(circ_copy(&d, &c, NULL), 0);
	add_kind(&d, CIRC_RESET, 2, 0);
	assert_false(circ_terminal_measure(&d));
	circ_release(&d);
	assert_int_equal(circ_copy(&d, &c, NULL), 0);
	add(&d, "x", 2, 0);
	d.ops[d.n - 1].cond_off = 0;
	d.ops[d.n - 1].cond_len = 1;
	d.ops[d.n - 1].cond_val = 1;
	assert_false(circ_terminal_measure(&d));
	/* the condition reads c[0], written at depth 3 */
	assert_int_equal(circ_depth(&d), 4);
	circ_release(&d);
	/* the copy is deep */
	assert_int_equal(circ_copy(&d, &c, NULL), 0);
	d.ops[0].q[0] = 2;
	assert_int_equal(c.ops[0].q[0], 0);
	circ_release(&d);
	circ_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_all_unitary),	       cmocka_unit_test(test_identities),
	    cmocka_unit_test(test_two_qubit_formulas), cmocka_unit_test(test_invert_control),
	    cmocka_unit_test(test_param_errors),       cmocka_unit_test(test_registers),
	    cmocka_unit_test(test_properties),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
