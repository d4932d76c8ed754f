/*
 * test_qasm — the OpenQASM parser on real-world shaped programs (Qiskit's
 * QASM 2 and QASM 3 exports, QFT, teleportation), the expansion of user
 * gates and modifiers checked op by op against circ's own matrices, every
 * kind of error with its line and column, the limits that protect the
 * service from hostile input, and qasm_emit read back by the parser.
 */
#include "qsim/qasm.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define EPS 1e-12

static struct circ parse_ok(const char *text)
{
	struct circ c;
	struct ciel_err err = {0};

	circ_init(&c);
	if (qasm_parse(text, strlen(text), &c, &err) != 0) {
		print_error("unexpected parse error: %s\n", err.msg);
		fail();
	}
	return c;
}

/* text must fail at line:col with a message containing what. */
static void parse_err(const char *text, int line, int col, const char *what)
{
	struct circ c;
	struct ciel_err err = {0};
	char prefix[64];
	int r;

	circ_init(&c);
	r = qasm_parse(text, strlen(text), &c, &err);
	circ_release(&c);
	if (r == 0) {
		print_error("parsed but should fail with '%s':\n%s\n", what, text);
		fail();
	}
	snprintf(prefix, sizeof(prefix), "line %d, column %d: ", line, col);
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, what)) {
		print_error("wanted '%s...%s', got '%s'\n", prefix, what, err.msg);
		fail();
	}
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_string_equal(err.field, "qasm");
}

static void assert_op(const struct circ_op *op, const char *name, int nctrl, int ntgt, const int *q)
{
	if (strcmp(op->name, name) != 0) {
		print_error("op is %s, wanted %s\n", op->name, name);
		fail();
	}
	assert_int_equal(op->kind, CIRC_GATE);
	assert_int_equal(op->nctrl, nctrl);
	assert_int_equal(op->ntgt, ntgt);
	for (int i = 0; i < nctrl + ntgt; i++)
		assert_int_equal(op->q[i], q[i]);
}

#define OP(c, i, name, nctrl, ntgt, ...)                       \
	do {                                                   \
		const int q_[] = {__VA_ARGS__};                \
		assert_op(&(c).ops[i], name, nctrl, ntgt, q_); \
	} while (0)

static int mat_close(const double *a, const double *b, int n)
{
	for (int i = 0; i < n; i++)
		if (fabs(a[i] - b[i]) > 1e-10)
			return 0;
	return 1;
}

/* Conjugate transpose of a dim x dim complex matrix. */
static void dagger(const double *m, double *out, int dim)
{
	for (int r = 0; r < dim; r++)
		for (int c = 0; c < dim; c++) {
			out[2 * (r * dim + c)] = m[2 * (c * dim + r)];
			out[2 * (r * dim + c) + 1] = -m[2 * (c * dim + r) + 1];
		}
}

static void std_matrix(const char *name, const double *par, int np, double *m)
{
	struct circ_op op;

	assert_int_equal(circ_std_gate(name, par, np, &op, NULL), 0);
	memcpy(m, op.m, (op.ntgt == 2 ? 32 : 8) * sizeof(double));
}

/* a and b equal up to a global phase (2x2) */
static int equal_up_to_phase(const double *a, const double *b)
{
	int k = fabs(a[0]) + fabs(a[1]) > 1e-6 ? 0 : 2;
	double ph_re, ph_im, n;

	/* phase = b[k] / a[k] */
	n = a[k] * a[k] + a[k + 1] * a[k + 1];
	ph_re = (b[k] * a[k] + b[k + 1] * a[k + 1]) / n;
	ph_im = (b[k + 1] * a[k] - b[k] * a[k + 1]) / n;
	for (int i = 0; i < 8; i += 2) {
		double re = a[i] * ph_re - a[i + 1] * ph_im, im = a[i] * ph_im + a[i + 1] * ph_re;

		if (fabs(re - b[i]) > 1e-9 || fabs(im - b[i + 1]) > 1e-9)
			return 0;
	}
	return 1;
}

/* ---- OpenQASM 2 ---- */

/* As qiskit.qasm2.dumps writes a circuit with gates outside qelib1.inc. */
static const char qiskit2[] =
    "OPENQASM 2.0;\n"
    "include \"qelib1.inc\";\n"
    "gate rzx(param0) q0,q1 { h q1; cx q0,q1; rz(param0) q1; cx q0,q1; h q1; }\n"
    "gate ecr q0,q1 { rzx(pi/4) q0,q1; x q0; rzx(-pi/4) q0,q1; }\n"
    "gate r(param0,param1) q0 { u3(param0,param1 - pi/2,-param1 + pi/2) q0; }\n"
    "qreg q[3];\n"
    "creg meas[3];\n"
    "h q[0];\n"
    "ecr q[0],q[1];\n"
    "r(pi/2,pi/4) q[2];\n"
    "sxdg q[1];\n"
    "barrier q[0],q[1],q[2];\n"
    "measure q[0] -> meas[0];\n"
    "measure q[1] -> meas[1];\n"
    "measure q[2] -> meas[2];\n";

static void test_qiskit_qasm2(void **st)
{
	struct circ c = parse_ok(qiskit2);
	const char *names[] = {"h", "h",  "cx", "rz", "cx", "h",  "x",
			       "h", "cx", "rz", "cx", "h",  "u3", "sxdg"};

	(void)st;
	assert_int_equal(c.nq, 3);
	assert_int_equal(c.ncl, 3);
	assert_int_equal(c.nqregs, 1);
	assert_string_equal(c.cregs[0].name, "meas");
	assert_int_equal(c.n, 14 + 1 + 3);
	for (size_t i = 0; i < 14; i++)
		assert_string_equal(c.ops[i].name, names[i]);
	OP(c, 2, "cx", 1, 1, 0, 1);
	OP(c, 3, "rz", 0, 1, 1);
	assert_true(fabs(c.ops[3].params[0] - M_PI / 4) < EPS);
	assert_true(fabs(c.ops[9].params[0] + M_PI / 4) < EPS);
	OP(c, 6, "x", 0, 1, 0);
	/* r(pi/2, pi/4) = u3(pi/2, -pi/4, pi/4) */
	assert_int_equal(c.ops[12].nparams, 3);
	assert_true(fabs(c.ops[12].params[0] - M_PI / 2) < EPS);
	assert_true(fabs(c.ops[12].params[1] + M_PI / 4) < EPS);
	assert_true(fabs(c.ops[12].params[2] - M_PI / 4) < EPS);
	assert_int_equal(c.ops[14].kind, CIRC_BARRIER);
	assert_int_equal(c.ops[14].ntgt, 3);
	assert_int_equal(c.ops[14].nctrl, 0);
	assert_int_equal(c.ops[14].q[2], 2);
	assert_int_equal(c.ops[14].q[3], -1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c.ops[15 + i].kind, CIRC_MEASURE);
		assert_int_equal(c.ops[15 + i].q[0], i);
		assert_int_equal(c.ops[15 + i].clbit, i);
	}
	circ_release(&c);
}

static void test_qft_cu1(void **st)
{
	const char *text = "OPENQASM 2.0;\n"
			   "include \"qelib1.inc\";\n"
			   "qreg q[4];\n"
			   "creg c[4];\n"
			   "x q[0];\nx q[2];\n"
			   "barrier q;\n"
			   "h q[0];\n"
			   "cu1(pi/2) q[1],q[0];\n"
			   "h q[1];\n"
			   "cu1(pi/4) q[2],q[0];\n"
			   "cu1(pi/2) q[2],q[1];\n"
			   "h q[2];\n"
			   "cu1(pi/8) q[3],q[0];\n"
			   "cu1(pi/4) q[3],q[1];\n"
			   "cu1(pi/2) q[3],q[2];\n"
			   "h q[3];\n"
			   "measure q -> c;\n";
	struct circ c = parse_ok(text);
	double want[8] = {1, 0, 0, 0, 0, 0, M_SQRT1_2, M_SQRT1_2};

	(void)st;
	assert_int_equal(c.n, 2 + 1 + 10 + 4);
	assert_int_equal(c.ops[2].kind, CIRC_BARRIER);
	for (int i = 0; i < 4; i++)
		assert_int_equal(c.ops[2].q[i], i);
	OP(c, 4, "cu1", 1, 1, 1, 0);
	OP(c, 6, "cu1", 1, 1, 2, 0);
	assert_true(fabs(c.ops[6].params[0] - M_PI / 4) < EPS);
	assert_true(mat_close(c.ops[6].m, want, 8));
	OP(c, 9, "cu1", 1, 1, 3, 0);
	assert_true(fabs(c.ops[9].params[0] - M_PI / 8) < EPS);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(c.ops[13 + i].kind, CIRC_MEASURE);
		assert_int_equal(c.ops[13 + i].q[0], i);
		assert_int_equal(c.ops[13 + i].clbit, i);
	}
	assert_true(circ_terminal_measure(&c));
	circ_release(&c);
}

static void test_teleport_if(void **st)
{
	const char *text = "OPENQASM 2.0;\n"
			   "include \"qelib1.inc\";\n"
			   "qreg q[3];\n"
			   "creg c0[1];\n"
			   "creg c1[1];\n"
			   "creg c2[1];\n"
			   "u3(0.3,0.2,0.1) q[0];\n"
			   "h q[1];\n"
			   "cx q[1],q[2];\n"
			   "barrier q;\n"
			   "cx q[0],q[1];\n"
			   "h q[0];\n"
			   "measure q[0] -> c0[0];\n"
			   "measure q[1] -> c1[0];\n"
			   "if(c0==1) z q[2];\n"
			   "if(c1==1) x q[2];\n"
			   "measure q[2] -> c2[0];\n";
	struct circ c = parse_ok(text);

	(void)st;
	assert_int_equal(c.ncl, 3);
	assert_int_equal(c.n, 11);
	assert_true(fabs(c.ops[0].params[0] - 0.3) < EPS);
	assert_int_equal(c.ops[6].clbit, 0);
	assert_int_equal(c.ops[7].clbit, 1);
	OP(c, 8, "z", 0, 1, 2);
	assert_int_equal(c.ops[8].cond_off, 0);
	assert_int_equal(c.ops[8].cond_len, 1);
	assert_int_equal(c.ops[8].cond_val, 1);
	OP(c, 9, "x", 0, 1, 2);
	assert_int_equal(c.ops[9].cond_off, 1);
	assert_int_equal(c.ops[9].cond_len, 1);
	assert_int_equal(c.ops[10].clbit, 2);
	assert_int_equal(c.ops[10].cond_len, 0);
	assert_false(circ_terminal_measure(&c));
	circ_release(&c);
}

/* A user gate with expressions in its parameters, called with expressions. */
static void test_user_gate_params(void **st)
{
	const char *text =
	    "OPENQASM 2.0;\n"
	    "include \"qelib1.inc\";\n"
	    "gate g(a, b) x, y {\n"
	    "  rz(a*2 - b/2) x;\n"
	    "  u3(sin(a), cos(b)^2, -(a+b)) y;\n"
	    "  cu1(sqrt(4)*ln(exp(a)) + tan(0)) x, y;\n"
	    "  U(a, 2^-1, -b) x;\n"
	    "  CX y, x;\n"
	    "}\n"
	    "gate h2(t) p { g(t, 1.5e-1) p, q_; }\n" /* q_ is not an argument: refused below */
	    ;
	const char *ok = "OPENQASM 2.0;\n"
			 "include \"qelib1.inc\";\n"
			 "gate g(a, b) x, y {\n"
			 "  rz(a*2 - b/2) x;\n"
			 "  u3(sin(a), cos(b)^2, -(a+b)) y;\n"
			 "  cu1(sqrt(4)*ln(exp(a)) + tan(0)) x, y;\n"
			 "  U(a, 2^-1, -b) x;\n"
			 "  CX y, x;\n"
			 "}\n"
			 "qreg q[2];\n"
			 "g(pi/3, .7) q[1], q[0];\n";
	struct circ c = parse_ok(ok);
	double a = M_PI / 3, b = 0.7;

	(void)st;
	assert_int_equal(c.n, 5);
	OP(c, 0, "rz", 0, 1, 1);
	assert_true(fabs(c.ops[0].params[0] - (a * 2 - b / 2)) < EPS);
	OP(c, 1, "u3", 0, 1, 0);
	assert_true(fabs(c.ops[1].params[0] - sin(a)) < EPS);
	assert_true(fabs(c.ops[1].params[1] - pow(cos(b), 2)) < EPS);
	assert_true(fabs(c.ops[1].params[2] + (a + b)) < EPS);
	OP(c, 2, "cu1", 1, 1, 1, 0);
	assert_true(fabs(c.ops[2].params[0] - 2 * a) < EPS);
	OP(c, 3, "U", 0, 1, 1);
	assert_true(fabs(c.ops[3].params[1] - 0.5) < EPS);
	OP(c, 4, "CX", 1, 1, 0, 1);
	circ_release(&c);
	parse_err(text, 10, 32, "q_ is not an argument of gate h2");
}

static void test_broadcast(void **st)
{
	const char *text = "OPENQASM 2.0;\n"
			   "include \"qelib1.inc\";\n"
			   "qreg q[3];\nqreg r[3];\ncreg c[3];\n"
			   "h q;\n"
			   "cx q, r;\n"
			   "cx q[0], r;\n"
			   "rzz(0.5) r, q[1];\n"
			   "measure r -> c;\n"
			   "reset q;\n";
	struct circ c = parse_ok(text);

	(void)st;
	assert_int_equal(c.n, 3 + 3 + 3 + 3 + 3 + 3);
	OP(c, 0, "h", 0, 1, 0);
	OP(c, 2, "h", 0, 1, 2);
	OP(c, 4, "cx", 1, 1, 1, 4);
	OP(c, 7, "cx", 1, 1, 0, 4);
	OP(c, 10, "rzz", 0, 2, 4, 1);
	assert_int_equal(c.ops[12].kind, CIRC_MEASURE);
	assert_int_equal(c.ops[14].q[0], 5);
	assert_int_equal(c.ops[14].clbit, 2);
	assert_int_equal(c.ops[17].kind, CIRC_RESET);
	assert_int_equal(c.ops[17].q[0], 2);
	circ_release(&c);
	/* rzz r, q[1] with r[1] == ... no clash; but rzz q, q[1] repeats q[1] */
	parse_err("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[3];\nrzz(1) q, q[1];\n", 4, 11,
		  "qubit q[1] used twice");
}

/* A condition on a user gate lands on every op it expands to. */
static void test_if_user_gate(void **st)
{
	const char *text = "OPENQASM 2.0;\n"
			   "include \"qelib1.inc\";\n"
			   "gate bell a, b { h a; cx a, b; }\n"
			   "qreg q[2];\ncreg x[1];\ncreg c[2];\n"
			   "if(c==2) bell q[0], q[1];\n"
			   "if(x==1) measure q[0] -> c[1];\n";
	struct circ c = parse_ok(text);

	(void)st;
	assert_int_equal(c.n, 3);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c.ops[i].cond_off, 1);
		assert_int_equal(c.ops[i].cond_len, 2);
		assert_int_equal(c.ops[i].cond_val, 2);
	}
	assert_int_equal(c.ops[2].kind, CIRC_MEASURE);
	assert_int_equal(c.ops[2].clbit, 2);
	assert_int_equal(c.ops[2].cond_off, 0);
	assert_int_equal(c.ops[2].cond_val, 1);
	circ_release(&c);
}

static void test_qelib1_gates(void **st)
{
	/* every qelib1.inc name is callable; rccx and rc3x come as definitions */
	const char *text = "OPENQASM 2.0;\n"
			   "include \"qelib1.inc\";\n"
			   "qreg q[5];\n"
			   "u3(1,2,3) q[0]; u2(1,2) q[0]; u1(1) q[0]; u(1,2,3) q[0]; p(1) q[0];\n"
			   "u0(1) q[0]; id q[0]; x q[0]; y q[0]; z q[0]; h q[0]; s q[0];\n"
			   "sdg q[0]; t q[0]; tdg q[0]; rx(1) q[0]; ry(1) q[0]; rz(1) q[0];\n"
			   "sx q[0]; sxdg q[0]; cx q[0],q[1]; cz q[0],q[1]; cy q[0],q[1];\n"
			   "swap q[0],q[1]; ch q[0],q[1]; ccx q[0],q[1],q[2];\n"
			   "cswap q[0],q[1],q[2]; crx(1) q[0],q[1]; cry(1) q[0],q[1];\n"
			   "crz(1) q[0],q[1]; cu1(1) q[0],q[1]; cp(1) q[0],q[1];\n"
			   "cu3(1,2,3) q[0],q[1]; csx q[0],q[1]; cu(1,2,3,4) q[0],q[1];\n"
			   "rxx(1) q[0],q[1]; rzz(1) q[0],q[1]; c3x q[0],q[1],q[2],q[3];\n"
			   "c3sqrtx q[0],q[1],q[2],q[3]; c4x q[0],q[1],q[2],q[3],q[4];\n"
			   "rccx q[0],q[1],q[2]; rc3x q[0],q[1],q[2],q[3];\n";
	struct circ c = parse_ok(text);

	(void)st;
	assert_int_equal(c.n, 40 + 9 + 18);
	OP(c, 39, "c4x", 4, 1, 0, 1, 2, 3, 4);
	OP(c, 40, "u2", 0, 1, 2);
	circ_release(&c);
	/* ryy is not in qelib1.inc */
	parse_err("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nryy(1) q[0],q[1];\n", 4, 1,
		  "unknown gate ryy");
}

/* ---- OpenQASM 3 ---- */

/* As qiskit.qasm3.dumps writes it, with modifiers added by hand. */
static const char qiskit3[] = "OPENQASM 3.0;\n"
			      "include \"stdgates.inc\";\n"
			      "gate rzx(_gate_p_0) _gate_q_0, _gate_q_1 {\n"
			      "  h _gate_q_1;\n"
			      "  cx _gate_q_0, _gate_q_1;\n"
			      "  rz(_gate_p_0) _gate_q_1;\n"
			      "  cx _gate_q_0, _gate_q_1;\n"
			      "  h _gate_q_1;\n"
			      "}\n"
			      "gate sxdg _gate_q_0 {\n"
			      "  s _gate_q_0;\n"
			      "  h _gate_q_0;\n"
			      "  s _gate_q_0;\n"
			      "}\n"
			      "bit[2] c;\n"
			      "qubit[3] q;\n"
			      "h q[0];\n"			/* 0 */
			      "ctrl @ x q[0], q[1];\n"		/* 1: cx */
			      "ctrl(2) @ z q[0], q[1], q[2];\n" /* 2: ccz */
			      "inv @ s q[2];\n"			/* 3: sdg */
			      "inv @ rzx(pi/4) q[1], q[2];\n" /* 4..8: reversed and each inverted */
			      "negctrl @ h q[2], q[0];\n"     /* 9..11: x, ch, x */
			      "pow(3) @ t q[1];\n"	      /* 12..14 */
			      "inv @ ctrl @ sxdg q[0], q[1];\n" /* 15..17: sdg h sdg, controlled */
			      "c[0] = measure q[0];\n"		/* 18 */
			      "c[1] = measure q[1];\n";		/* 19 */

static void test_qiskit_qasm3(void **st)
{
	struct circ c = parse_ok(qiskit3);
	double m[8], d[8], par = -M_PI / 4;

	(void)st;
	assert_int_equal(c.nq, 3);
	assert_int_equal(c.ncl, 2);
	assert_int_equal(c.n, 20);
	OP(c, 0, "h", 0, 1, 0);
	OP(c, 1, "cx", 1, 1, 0, 1);
	OP(c, 2, "ccz", 2, 1, 0, 1, 2);
	OP(c, 3, "sdg", 0, 1, 2);
	/* inv @ rzx: h, cx, rz(-pi/4), cx, h */
	OP(c, 4, "h", 0, 1, 2);
	OP(c, 6, "rz", 0, 1, 2);
	assert_true(fabs(c.ops[6].params[0] - par) < EPS);
	std_matrix("rz", &par, 1, m);
	assert_true(mat_close(c.ops[6].m, m, 8));
	OP(c, 9, "x", 0, 1, 2);
	OP(c, 10, "ch", 1, 1, 2, 0);
	OP(c, 11, "x", 0, 1, 2);
	for (int i = 12; i < 15; i++)
		OP(c, i, "t", 0, 1, 1);
	/* inv @ ctrl @ sxdg: (s h s)^-1 = sdg h sdg, each under the control */
	OP(c, 15, "csdg", 1, 1, 0, 1);
	OP(c, 16, "ch", 1, 1, 0, 1);
	std_matrix("s", NULL, 0, m);
	dagger(m, d, 2);
	assert_true(mat_close(c.ops[15].m, d, 8));
	assert_int_equal(c.ops[18].kind, CIRC_MEASURE);
	assert_int_equal(c.ops[19].clbit, 1);
	circ_release(&c);
}

/* inv @ is the conjugate transpose, for every standard gate. */
static void test_inv_matrices(void **st)
{
	int tested = 0;

	(void)st;
	for (const char *const *n = circ_std_names; *n; n++) {
		int np = circ_std_nparams(*n), nq = circ_std_nqubits(*n);
		double par[4] = {0.3, -1.1, 2.2, 0.7}, m[32], d[32];
		char text[512], call[128];
		struct circ c;
		struct ciel_err err = {0};
		int len = 0;

		if (!strcmp(*n, "U") || !strcmp(*n, "CX"))
			continue; /* built in, not in qelib1.inc's namespace */
		len = snprintf(call, sizeof(call), "inv @ %s", *n);
		if (np > 0) {
			len += snprintf(call + len, sizeof(call) - (size_t)len, "(");
			for (int i = 0; i < np; i++)
				len += snprintf(call + len, sizeof(call) - (size_t)len, "%s%.17g",
						i ? "," : "", par[i]);
			len += snprintf(call + len, sizeof(call) - (size_t)len, ")");
		}
		for (int i = 0; i < nq; i++)
			len += snprintf(call + len, sizeof(call) - (size_t)len, "%sq[%d]",
					i ? ", " : " ", i);
		snprintf(text, sizeof(text),
			 "OPENQASM 3;\ninclude \"qelib1.inc\";\ninclude \"stdgates.inc\";\n"
			 "qubit[6] q;\n%s;\n",
			 call);
		circ_init(&c);
		if (qasm_parse(text, strlen(text), &c, &err) != 0) {
			/* not every circ name is in an include (ryy, prx) */
			assert_non_null(strstr(err.msg, "unknown gate"));
			circ_release(&c);
			continue;
		}
		tested++;
		assert_int_equal(c.n, 1);
		std_matrix(*n, par, np, m);
		dagger(m, d, c.ops[0].ntgt == 2 ? 4 : 2);
		if (!mat_close(c.ops[0].m, d, c.ops[0].ntgt == 2 ? 32 : 8)) {
			print_error("inv @ %s is not the conjugate transpose\n", *n);
			fail();
		}
		assert_int_equal(c.ops[0].nctrl + c.ops[0].ntgt, nq);
		circ_release(&c);
	}
	assert_true(tested >= 40);
}

static void test_modifiers(void **st)
{
	const char *text = "OPENQASM 3;\n"
			   "include \"stdgates.inc\";\n"
			   "gate bell a, b { h a; cx a, b; }\n"
			   "gate ph(t) a { gphase(t); }\n"
			   "qubit[4] q;\n"
			   "ctrl @ U(1, 2, 3) q[0], q[1];\n"	    /* 0: cu(1,2,3,0) */
			   "ctrl @ ctrl @ x q[0], q[1], q[2];\n"    /* 1: ccx */
			   "ctrl @ cx q[3], q[0], q[1];\n"	    /* 2: ccx */
			   "ctrl(2) @ h q[0], q[1], q[2];\n"	    /* 3: c2h */
			   "ctrl @ bell q[3], q[0], q[1];\n"	    /* 4, 5: ch, ccx */
			   "pow(-2) @ s q[0];\n"		    /* 6, 7: sdg */
			   "inv @ pow(0) @ x q[0];\n"		    /* nothing */
			   "gphase(0.5);\n"			    /* nothing */
			   "ctrl @ gphase(0.5) q[2];\n"		    /* 8: p(0.5) */
			   "ctrl(2) @ ph(0.25) q[2], q[3], q[0];\n" /* 9: cp(0.25) */
			   "inv @ ctrl @ ph(0.25) q[1], q[0];\n"    /* 10: p(-0.25) */
			   "negctrl @ ctrl @ x q[0], q[1], q[2];\n" /* 11..13 */
			   "ctrl @ negctrl @ inv @ rx(0.5) q[0], q[1], q[2];\n"; /* 14..16 */
	struct circ c = parse_ok(text);
	double m[8];

	(void)st;
	assert_int_equal(c.n, 17);
	OP(c, 0, "cu", 1, 1, 0, 1);
	assert_int_equal(c.ops[0].nparams, 4);
	assert_true(fabs(c.ops[0].params[3]) < EPS);
	circ_u(m, 1, 2, 3, 0);
	assert_true(mat_close(c.ops[0].m, m, 8));
	OP(c, 1, "ccx", 2, 1, 0, 1, 2);
	OP(c, 2, "ccx", 2, 1, 3, 0, 1);
	OP(c, 3, "c2h", 2, 1, 0, 1, 2);
	OP(c, 4, "ch", 1, 1, 3, 0);
	OP(c, 5, "ccx", 2, 1, 3, 0, 1);
	OP(c, 6, "sdg", 0, 1, 0);
	OP(c, 7, "sdg", 0, 1, 0);
	OP(c, 8, "p", 0, 1, 2);
	assert_true(fabs(c.ops[8].params[0] - 0.5) < EPS);
	OP(c, 9, "cp", 1, 1, 2, 3);
	assert_true(fabs(c.ops[9].params[0] - 0.25) < EPS);
	OP(c, 10, "p", 0, 1, 1);
	assert_true(fabs(c.ops[10].params[0] + 0.25) < EPS);
	OP(c, 11, "x", 0, 1, 0);
	OP(c, 12, "ccx", 2, 1, 0, 1, 2);
	OP(c, 13, "x", 0, 1, 0);
	OP(c, 14, "x", 0, 1, 1);
	OP(c, 15, "c2rx", 2, 1, 0, 1, 2);
	assert_true(fabs(c.ops[15].params[0] + 0.5) < EPS);
	OP(c, 16, "x", 0, 1, 1);
	circ_release(&c);
}

static void test_qasm3_syntax(void **st)
{
	const char *text = "OPENQASM 3;\n"
			   "include \"stdgates.inc\";\n"
			   "// comment\n"
			   "/* block\n   comment */ qubit q0;\n"
			   "qubit[2] q;\n"
			   "bit b;\n"
			   "bit[2] c;\n"
			   "#pragma anything at all\n"
			   "pragma qiskit something\n"
			   "@annotation with words\n"
			   "h q0;\n"
			   "rx(π/2) q[0]; rz(τ) q[1]; ry(1_000e-3) q[1];\n"
			   "b = measure q0;\n"
			   "measure q -> c;\n"
			   "c = measure q;\n"
			   "if (b) { x q[0]; y q[1]; } else z q[0];\n"
			   "if (!b) x q[1];\n"
			   "if (c[1] == 0) x q[1];\n"
			   "if (c == 3) { ctrl @ x q[0], q[1]; }\n"
			   "if (b == true) x q[0];\n"
			   "reset q0;\n"
			   "barrier;\n"
			   "barrier q0, q;\n"
			   "rz(2**3) q[0];\n";
	struct circ c = parse_ok(text);

	(void)st;
	assert_int_equal(c.nq, 3);
	assert_int_equal(c.ncl, 3);
	assert_int_equal(c.n, 20);
	assert_true(fabs(c.ops[1].params[0] - M_PI / 2) < EPS);
	assert_true(fabs(c.ops[2].params[0] - 2 * M_PI) < EPS);
	assert_true(fabs(c.ops[3].params[0] - 1) < EPS);
	assert_int_equal(c.ops[4].clbit, 0);
	assert_int_equal(c.ops[5].clbit, 1);
	assert_int_equal(c.ops[7].q[0], 1);
	assert_int_equal(c.ops[7].clbit, 1);
	/* if (b) {x; y} else z */
	for (int i = 9; i < 12; i++) {
		assert_int_equal(c.ops[i].cond_off, 0);
		assert_int_equal(c.ops[i].cond_len, 1);
		assert_int_equal(c.ops[i].cond_val, i < 11 ? 1 : 0);
	}
	OP(c, 11, "z", 0, 1, 1);
	assert_int_equal(c.ops[12].cond_val, 0);
	assert_int_equal(c.ops[13].cond_off, 2);
	assert_int_equal(c.ops[13].cond_val, 0);
	OP(c, 14, "cx", 1, 1, 1, 2);
	assert_int_equal(c.ops[14].cond_off, 1);
	assert_int_equal(c.ops[14].cond_len, 2);
	assert_int_equal(c.ops[14].cond_val, 3);
	assert_int_equal(c.ops[15].cond_val, 1);
	assert_int_equal(c.ops[16].kind, CIRC_RESET);
	assert_int_equal(c.ops[16].cond_len, 0);
	assert_int_equal(c.ops[17].kind, CIRC_BARRIER);
	assert_int_equal(c.ops[17].ntgt, 3);
	assert_int_equal(c.ops[17].q[2], 2);
	assert_int_equal(c.ops[17].q[3], -1);
	assert_true(fabs(c.ops[19].params[0] - 8) < EPS);
	circ_release(&c);
}

/* circ_op holds eight qubits: a wide barrier is split, duplicates dropped. */
static void test_wide_barrier(void **st)
{
	struct circ c = parse_ok("OPENQASM 2.0;\nqreg a[6];\nqreg b[6];\n"
				 "barrier a, b[0], a[2], b;\n");
	char *s;

	(void)st;
	assert_int_equal(c.n, 2);
	assert_int_equal(c.ops[0].ntgt, 8);
	assert_int_equal(c.ops[1].ntgt, 4);
	for (int i = 0; i < 8; i++)
		assert_int_equal(c.ops[0].q[i], i);
	for (int i = 0; i < 4; i++)
		assert_int_equal(c.ops[1].q[i], 8 + i);
	for (int i = 4; i < 8; i++)
		assert_int_equal(c.ops[1].q[i], -1);
	s = qasm_emit(&c);
	assert_non_null(strstr(s, "barrier q[0],q[1],q[2],q[3],q[4],q[5],q[6],q[7];\n"
				  "barrier q[8],q[9],q[10],q[11];\n"));
	free(s);
	/* a barrier with no qubits named (as another module may make) is on all */
	c.ops[1].ntgt = 0;
	s = qasm_emit(&c);
	assert_non_null(strstr(s, "barrier q;\n"));
	free(s);
	circ_release(&c);
}

static void test_physical_qubits(void **st)
{
	struct circ c = parse_ok("OPENQASM 3;\ninclude \"stdgates.inc\";\nbit[2] c;\n"
				 "h $0;\ncx $0, $4;\nc[1] = measure $4;\n");

	(void)st;
	assert_int_equal(c.nq, 5);
	OP(c, 1, "cx", 1, 1, 0, 4);
	assert_int_equal(c.ops[2].q[0], 4);
	circ_release(&c);
	parse_err("OPENQASM 3;\nqubit[2] q;\nU(0,0,0) $1;\n", 3, 10, "cannot be mixed");
}

static void test_opaque(void **st)
{
	const char *text = "OPENQASM 2.0;\ninclude \"qelib1.inc\";\n"
			   "opaque magic(t) a, b;\n"
			   "gate wrap a, b { h a; magic(0.5) a, b; }\n"
			   "qreg q[2];\n"
			   "h q[0];\n";
	struct circ c = parse_ok(text); /* declaring and using in a definition is fine */

	(void)st;
	assert_int_equal(c.n, 1);
	circ_release(&c);
	parse_err("OPENQASM 2.0;\nopaque magic(t) a, b;\nqreg q[2];\nmagic(1) q[1], q[0];\n", 4, 1,
		  "opaque gate magic cannot be simulated");
	parse_err("OPENQASM 2.0;\ninclude \"qelib1.inc\";\nopaque magic a;\n"
		  "gate wrap a { h a; magic a; }\nqreg q[2];\nwrap q[1];\n",
		  4, 20, "opaque gate magic cannot be simulated");
	parse_err("OPENQASM 2.0;\nopaque magic a;\nqreg q[2];\nmagic q[0], q[1];\n", 4, 1,
		  "gate magic takes 1 qubit, not 2");
}

/* ---- errors ---- */

static void test_errors(void **st)
{
	static const struct {
		const char *text;
		int line, col;
		const char *what;
	} cases[] = {
	    {"OPENQASM 2.0;\nqreg q[2];\nh q[0];\n", 3, 1,
	     "unknown gate h — did you forget include \"qelib1.inc\"?"},
	    {"OPENQASM 3;\nqubit[2] q;\n  cx q[0], q[1];\n", 3, 3,
	     "did you forget include \"stdgates.inc\""},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nfoo q[0];\n", 4, 1,
	     "unknown gate foo"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncx q[0], q[0];\n", 4, 10,
	     "qubit q[0] used twice in one gate call"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncx q[0];\n", 4, 1,
	     "gate cx takes 2 qubits, not 1"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nrx(1, 2) q[0];\n", 4, 1,
	     "gate rx takes 1 parameter, not 2"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nh q[2];\n", 4, 5,
	     "index 2 out of range for q[2]"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\nh r[0];\n", 4, 3,
	     "unknown qubit register r"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[2];\ncreg c[2];\nh c[0];\n", 5, 3,
	     "c is a classical register, not a qubit register"},
	    {"OPENQASM 2.0;\nqreg q[2];\ncreg c[2];\nmeasure c[0] -> c[1];\n", 4, 9,
	     "c is a classical register"},
	    {"OPENQASM 2.0;\nqreg q[2];\ncreg c[2];\nmeasure q[0] -> q[1];\n", 4, 17,
	     "q is a qubit register, not a classical register"},
	    {"OPENQASM 2.0;\nqreg q[2];\ncreg c[3];\nmeasure q -> c;\n", 4, 9,
	     "two registers of the same size"},
	    {"OPENQASM 2.0;\nqreg q[2];\ncreg q[2];\n", 3, 6, "register q is already declared"},
	    {"OPENQASM 2.0;\nqreg q[0];\n", 2, 8, "register size 0 out of range"},
	    {"OPENQASM 2.0;\nqreg q[40];\nqreg r[40];\n", 3, 6, "more than 64 qubits"},
	    {"OPENQASM 2.0;\ngate g a { U(0,0,0) a; }\ngate g b { CX b, b; }\n", 3, 6,
	     "gate g is already defined on line 2"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc\";\ngate cx a, b { CX a, b; }\n", 3, 6,
	     "gate cx is already defined by qelib1.inc"},
	    {"OPENQASM 2.0;\ngate h a { U(pi/2,0,pi) a; }\ninclude \"qelib1.inc\";\n", 3, 1,
	     "gate h is defined on line 2 and in qelib1.inc"},
	    {"OPENQASM 2.0;\ngate g(t) a { U(s,0,0) a; }\n", 2, 17,
	     "unknown parameter s in gate g"},
	    {"OPENQASM 2.0;\ngate g a, b { CX a, a; }\n", 2, 21, "argument a used twice"},
	    {"OPENQASM 2.0;\ngate g a { CX a; }\n", 2, 12, "gate CX takes 2 qubits, not 1"},
	    {"OPENQASM 2.0;\ngate g a { U(0,0,0) a[0]; }\n", 2, 22, "cannot be indexed"},
	    {"OPENQASM 2.0;\ngate g a { U(0,0,0) b; }\n", 2, 21, "b is not an argument of gate g"},
	    {"OPENQASM 2.0;\ngate g a { g a; }\n", 2, 12, "gate g cannot call itself"},
	    {"OPENQASM 2.0;\ngate g a { measure a -> c; }\n", 2, 12, "not allowed in a gate body"},
	    {"OPENQASM 2.0;\ngate g a, a { }\n", 2, 11, "argument a declared twice"},
	    {"OPENQASM 2.0;\ngate g a { U(0,0,0) a;\n", 3, 1, "gate g: missing '}'"},
	    {"OPENQASM 2.0;\ngate measure a { }\n", 2, 6, "measure is a keyword"},
	    {"OPENQASM 2.0;\ninclude \"other.inc\";\n", 2, 9, "cannot include \"other.inc\""},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(1/0, 0, 0) q[0];\n", 3, 1,
	     "parameter 1 is not a finite number"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(x, 0, 0) q[0];\n", 3, 3, "unknown identifier x"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(sin 1, 0, 0) q[0];\n", 3, 7, "expected '('"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU((1, 0, 0) q[0];\n", 3, 5, "expected ')'"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(1 +, 0, 0) q[0];\n", 3, 6, "expected an expression"},
	    {"OPENQASM 2.0;\nqreg q[1]\nqreg r[1];\n", 3, 1, "expected ';', found 'qreg'"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(0,0,0) q[0]; ?\n", 3, 16, "unexpected character '?'"},
	    {"OPENQASM 2.0;\nqreg q[1];\n\x01", 3, 1, "unexpected byte 0x01"},
	    {"OPENQASM 2.0;\n/* never closed\n\n", 2, 1, "unterminated /* comment"},
	    {"OPENQASM 2.0;\ninclude \"qelib1.inc;\n", 2, 9, "unterminated string"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(1.2.3, 0, 0) q[0];\n", 3, 6, "malformed number"},
	    {"OPENQASM 5;\n", 1, 10, "unsupported OpenQASM version 5"},
	    /* names are quoted back as valid UTF-8 only: θ stays, a stray byte is '?' */
	    {"OPENQASM 3;\nqubit q;\nθ\xff\x01x q;\n", 3, 4, "unexpected byte 0x01"},
	    {"OPENQASM 3;\nqubit q;\nθ\xffx q;\n", 3, 1, "unknown gate θ?x"},
	    {"qreg q[1];\nOPENQASM 2.0;\n", 2, 1, "OPENQASM must be the first statement"},
	    {"OPENQASM 2.0;\nqreg q[1];\ncreg c[2];\nif(c==4) U(0,0,0) q[0];\n", 4, 7,
	     "4 does not fit in 2 bits"},
	    {"OPENQASM 2.0;\nqreg q[1];\ncreg c[2];\nif(c!=1) U(0,0,0) q[0];\n", 4, 1,
	     "only == conditions on a register"},
	    {"OPENQASM 2.0;\nqreg q[1];\ncreg c[2];\nif(c==1) qreg r[1];\n", 4, 10,
	     "qreg is not allowed inside if"},
	    {"OPENQASM 3;\nqubit[1] q;\nbit[2] c;\nif (c == 1) { if (c == 2) U(0,0,0) q[0]; }\n", 4,
	     15, "nested if is not supported"},
	    {"OPENQASM 3;\nqubit[1] q;\nbit[2] c;\nif (c == 1) U(0,0,0) q[0]; else U(0,0,0) "
	     "q[0];\n",
	     4, 28, "else is only supported on a single-bit condition"},
	    {"OPENQASM 3;\ninclude \"stdgates.inc\";\ninput float[64] theta;\n", 3, 1,
	     "'input' is not supported"},
	    {"OPENQASM 3;\nqubit[2] q;\nfor int i in [0:1] { }\n", 3, 1, "'for' is not supported"},
	    {"OPENQASM 3;\nqubit[2] q;\nU(2^3, 0, 0) q[0];\n", 3, 4, "'^' is xor in OpenQASM 3"},
	    {"OPENQASM 3;\nqubit[2] q;\npow(0.5) @ U(0, 0, 0) q[0];\n", 3, 5,
	     "pow() exponent must be an integer"},
	    {"OPENQASM 3;\nqubit[8] q;\nctrl(7) @ U(0, 0, 0) q;\n", 3, 6,
	     "number of controls 7 out of range"},
	    {"OPENQASM 3;\ninclude \"stdgates.inc\";\nqubit[8] q;\n"
	     "ctrl(5) @ ccx q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7];\n",
	     4, 11, "more than 6 controls"},
	    {"OPENQASM 3;\nqubit[2] q;\nctrl @ U(0, 0, 0) q[0];\n", 3, 8,
	     "gate U with 1 control takes 2 qubits, not 1"},
	    {"OPENQASM 3;\nqubit[2] q;\nmeasure q[0];\n", 3, 13, "measure needs a target"},
	    {"OPENQASM 3;\nqubit[2] q;\nbit[2] c;\nc = reset q;\n", 4, 5,
	     "only c = measure q; assignments"},
	    {"OPENQASM 3;\nqubit[2] q;\nbit[2] c = \"00\";\n", 3, 10,
	     "initialised declarations are not supported"},
	    {"OPENQASM 2.0;\nqreg q[1];\nU(((((((((((((((((((((((((((((((((((((((((((((((((((((("
	     "(((((((((((((((((0)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))"
	     "), 0, 0) q[0];\n",
	     3, 68, "expression nested more than 64 deep"},
	};

	(void)st;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		parse_err(cases[i].text, cases[i].line, cases[i].col, cases[i].what);
}

/* ---- limits ---- */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Definitions doubling at each level: 2^80 ops, refused before expanding. */
static void test_exponential_nesting(void **st)
{
	char *text = malloc(1 << 16);
	size_t n = 0;
	double t0;
	int line;

	(void)st;
	n += (size_t)snprintf(text + n, 1 << 16, "OPENQASM 2.0;\ngate g0 a { U(0,0,0) a; }\n");
	for (int i = 1; i <= 80; i++)
		n += (size_t)snprintf(text + n, (1 << 16) - n, "gate g%d a { g%d a; g%d a; }\n", i,
				      i - 1, i - 1);
	line = 84;
	n += (size_t)snprintf(text + n, (1 << 16) - n, "qreg q[1];\ng80 q[0];\n");
	t0 = now();
	parse_err(text, line, 1, "gate g80 expands to more than 1048576 operations");
	assert_true(now() - t0 < 1.0);

	/* empty bodies: no ops, but 3^80 calls; work is counted too */
	n = (size_t)snprintf(text, 1 << 16, "OPENQASM 2.0;\ngate g0 a { }\n");
	for (int i = 1; i <= 80; i++)
		n += (size_t)snprintf(text + n, (1 << 16) - n,
				      "gate g%d a { g%d a; g%d a; g%d a; }\n", i, i - 1, i - 1,
				      i - 1);
	n += (size_t)snprintf(text + n, (1 << 16) - n, "qreg q[1];\ng80 q[0];\n");
	t0 = now();
	parse_err(text, 84, 1, "gate g80 takes too long to expand");
	assert_true(now() - t0 < 1.0);

	/* pow() multiplies too */
	parse_err("OPENQASM 3;\nqubit q;\npow(1000) @ pow(1000) @ pow(1000) @ U(0,0,0) q;\n", 3, 25,
		  "pow() exponents multiply past");
	/* and a chain of definitions is bounded in depth */
	n = (size_t)snprintf(text, 1 << 16, "OPENQASM 2.0;\ngate g0 a { U(0,0,0) a; }\n");
	for (int i = 1; i <= 120; i++)
		n += (size_t)snprintf(text + n, (1 << 16) - n, "gate g%d a { g%d a; }\n", i, i - 1);
	parse_err(text, 101, 14, "gate definitions nested more than 100 deep");
	free(text);
}

static void test_size_limits(void **st)
{
	size_t big = QASM_MAX_BYTES + 1;
	char *text = malloc(big);
	struct circ c;
	struct ciel_err err = {0};
	const char *head = "OPENQASM 2.0;\nqreg q[1];\n";
	size_t n = strlen(head);

	(void)st;
	memcpy(text, head, n);
	while (n + 14 < big) {
		memcpy(text + n, "U(0,0,0) q;\n", 12);
		n += 12;
	}
	memset(text + n, ' ', big - n);
	circ_init(&c);
	assert_int_equal(qasm_parse(text, big, &c, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_non_null(strstr(err.msg, "line 1, column 1: program of 4194305 bytes"));
	circ_release(&c);
	/* one byte less is accepted */
	assert_int_equal(qasm_parse(text, big - 1, &c, &err), 0);
	assert_true(c.n > 300000);
	circ_release(&c);

	/* operation limit reached by expansion, not by text */
	n = (size_t)snprintf(text, big, "OPENQASM 2.0;\ngate g a {");
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(text + n, big - n, " U(0,0,0) a;");
	n += (size_t)snprintf(text + n, big - n, " }\nqreg q[1];\n");
	for (int i = 0; i < 1100; i++)
		n += (size_t)snprintf(text + n, big - n, "g q[0];\n");
	parse_err(text, 3 + 1049, 1, "expands to more than 1048576 operations");

	/* a long identifier and a long expression */
	n = (size_t)snprintf(text, big, "OPENQASM 2.0;\nqreg ");
	memset(text + n, 'a', 65);
	snprintf(text + n + 65, big - n - 65, "[1];\n");
	parse_err(text, 2, 6, "identifier longer than 64 characters");
	n = (size_t)snprintf(text, big, "OPENQASM 2.0;\ngate g(t) a { U(t");
	for (int i = 0; i < 2000; i++)
		n += (size_t)snprintf(text + n, big - n, "+t");
	snprintf(text + n, big - n, ",0,0) a; }\n");
	parse_err(text, 2, 2066, "expression too long");
	/* a long constant expression folds and is fine */
	n = (size_t)snprintf(text, big, "OPENQASM 2.0;\nqreg q[1];\nU(0");
	for (int i = 0; i < 100000; i++)
		n += (size_t)snprintf(text + n, big - n, "+1");
	snprintf(text + n, big - n, ",0,0) q[0];\n");
	c = parse_ok(text);
	assert_true(fabs(c.ops[0].params[0] - 100000) < EPS);
	circ_release(&c);
	free(text);
}

/* ---- emit ---- */

static void assert_same_circuit(const struct circ *a, const struct circ *b)
{
	assert_int_equal(a->nq, b->nq);
	assert_int_equal(a->ncl, b->ncl);
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct circ_op *x = &a->ops[i], *y = &b->ops[i];

		assert_int_equal(x->kind, y->kind);
		assert_int_equal(x->nctrl, y->nctrl);
		assert_int_equal(x->ntgt, y->ntgt);
		assert_int_equal(x->cond_off, y->cond_off);
		assert_int_equal(x->cond_len, y->cond_len);
		assert_int_equal(x->cond_val, y->cond_val);
		if (x->kind == CIRC_MEASURE)
			assert_int_equal(x->clbit, y->clbit);
		for (int k = 0; k < 8; k++)
			if (x->kind != CIRC_GATE || k < x->nctrl + x->ntgt)
				assert_int_equal(x->q[k], y->q[k]);
		if (x->kind == CIRC_GATE) {
			assert_string_equal(x->name, y->name);
			assert_true(mat_close(x->m, y->m, x->ntgt == 2 ? 32 : 8));
		}
	}
}

static void test_emit_roundtrip(void **st)
{
	const char *texts[] = {
	    qiskit2,
	    "OPENQASM 2.0;\ninclude \"qelib1.inc\";\nqreg q[3];\ncreg a[1];\ncreg b[2];\n"
	    "u3(0.1,-0.2,0.3) q[0];\ncu(1,2,3,4) q[1],q[0];\nrzz(pi/7) q[0],q[2];\n"
	    "measure q[0] -> b[1];\nif(b==2) crx(-3*pi/4) q[2],q[0];\nif(a==1) reset q[1];\n"
	    "barrier q;\n",
	    "OPENQASM 3;\ninclude \"stdgates.inc\";\nqubit[3] q;\nbit[2] c;\n"
	    "c[1] = measure q[1];\nif (c[1]) ctrl @ x q[0], q[2];\n",
	};

	(void)st;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct circ a = parse_ok(texts[i]), b;
		char *s = qasm_emit(&a);

		assert_non_null(s);
		assert_true(strncmp(s, "OPENQASM 2.0;\ninclude \"qelib1.inc\";\n", 36) == 0);
		b = parse_ok(s);
		assert_same_circuit(&a, &b);
		free(s);
		circ_release(&a);
		circ_release(&b);
	}
}

/* Gates without a qelib1 name: a comment, and u3 / cu where that is exact. */
static void test_emit_unitary(void **st)
{
	struct circ c, d;
	struct circ_op op;
	char *s;

	(void)st;
	circ_init(&c);
	assert_int_equal(circ_add_qreg(&c, "q", 3, NULL), 0);
	assert_int_equal(circ_add_creg(&c, "q", 1, NULL) == 0, 0); /* names are shared */
	assert_int_equal(circ_add_creg(&c, "c", 1, NULL), 0);
	memset(&op, 0, sizeof(op));
	op.kind = CIRC_GATE;
	op.ntgt = 1;
	snprintf(op.name, sizeof(op.name), "mystery");
	circ_u(op.m, 0.4, 1.3, -0.6, 0.9);
	op.q[0] = 2;
	assert_int_equal(circ_push(&c, &op, NULL), 0);
	op.nctrl = 1;
	op.q[0] = 0;
	op.q[1] = 1;
	assert_int_equal(circ_push(&c, &op, NULL), 0);
	op.nctrl = 2;
	op.q[0] = 0;
	op.q[1] = 1;
	op.q[2] = 2;
	assert_int_equal(circ_push(&c, &op, NULL), 0);
	s = qasm_emit(&c);
	assert_non_null(s);
	assert_non_null(strstr(s, "// unitary mystery on q[2] (0 controls)"));
	assert_non_null(strstr(s, "// unitary mystery on q[0],q[1],q[2] (2 controls)"));
	d = parse_ok(s);
	assert_int_equal(d.n, 2); /* the doubly controlled one is only a comment */
	assert_string_equal(d.ops[0].name, "u3");
	assert_true(equal_up_to_phase(d.ops[0].m, c.ops[0].m));
	/* under a control the phase matters: cu carries it exactly */
	assert_string_equal(d.ops[1].name, "cu");
	assert_true(mat_close(d.ops[1].m, c.ops[1].m, 8));
	free(s);
	circ_release(&c);
	circ_release(&d);
}

/* Mutated samples: any outcome but a crash (ASan watches) or a bad message. */
static void test_mutations(void **st)
{
	static const char alphabet[] = "(){};,[]@-+*/^ \n\"$0129aqxe.>=!";
	const char *seeds[] = {qiskit2, qiskit3};
	unsigned x = 12345;
	char buf[4096];

	(void)st;
	for (int it = 0; it < 3000; it++) {
		const char *s = seeds[it % 2];
		size_t n = strlen(s);
		struct circ c;
		struct ciel_err err = {0};

		memcpy(buf, s, n);
		for (int k = 0; k < 1 + it % 4; k++) {
			x = x * 1103515245u + 12345u;
			size_t pos = (x >> 8) % n;

			x = x * 1103515245u + 12345u;
			buf[pos] = alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
		}
		circ_init(&c);
		if (qasm_parse(buf, n, &c, &err) != 0) {
			assert_true(strncmp(err.msg, "line ", 5) == 0);
			assert_non_null(strstr(err.msg, ", column "));
		} else {
			char *e = qasm_emit(&c);

			assert_non_null(e);
			free(e);
		}
		circ_release(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_qiskit_qasm2),    cmocka_unit_test(test_qft_cu1),
	    cmocka_unit_test(test_teleport_if),	    cmocka_unit_test(test_user_gate_params),
	    cmocka_unit_test(test_broadcast),	    cmocka_unit_test(test_if_user_gate),
	    cmocka_unit_test(test_qelib1_gates),    cmocka_unit_test(test_qiskit_qasm3),
	    cmocka_unit_test(test_inv_matrices),    cmocka_unit_test(test_modifiers),
	    cmocka_unit_test(test_qasm3_syntax),    cmocka_unit_test(test_wide_barrier),
	    cmocka_unit_test(test_physical_qubits), cmocka_unit_test(test_opaque),
	    cmocka_unit_test(test_errors),	    cmocka_unit_test(test_exponential_nesting),
	    cmocka_unit_test(test_size_limits),	    cmocka_unit_test(test_emit_roundtrip),
	    cmocka_unit_test(test_emit_unitary),    cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
