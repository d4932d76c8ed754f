/*
 * circ — a quantum circuit as the simulator, the transpiler and the QASM
 * parser all see it: registers, then a flat list of operations.
 *
 * Conventions every module relies on:
 *  - Qubit k is bit k of an amplitude index (little-endian, as Qiskit).
 *  - A gate is a 2x2 or 4x4 complex matrix on its targets, applied only where
 *    all of its controls are 1. The matrix is exact, global phase included:
 *    under a control a phase is no longer global (cu1 is not cu3).
 *  - Matrices are row-major, complex interleaved (re, im). Bit j of a row or
 *    column index is target j, so for a two-target gate index = t0 + 2*t1.
 *  - Classical bits are numbered across all cregs in declaration order;
 *    a condition reads bits [cond_off, cond_off + cond_len) as an unsigned
 *    integer with cond_off as its least significant bit.
 */
#ifndef CIEL_CIRC_H
#define CIEL_CIRC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define CIRC_MAX_CTRL 6	   /* controls on one gate (ctrl@ modifiers, c4x) */
#define CIRC_MAX_TGT 2	   /* targets of one gate matrix */
#define CIRC_MAX_QUBITS 64 /* per circuit; the simulator refuses far earlier */
#define CIRC_MAX_CLBITS 64 /* so a creg value fits in uint64_t */
#define CIRC_NAME_MAX 16
#define CIRC_REG_NAME_MAX 32

enum circ_kind {
	CIRC_GATE,
	CIRC_MEASURE, /* q[0] into clbit */
	CIRC_RESET,   /* q[0] to |0> */
	CIRC_BARRIER, /* no effect on the state; stops fusion and transpiler reordering;
		       * its qubits are q[0 .. ntgt) (the parser splits wide barriers) */
};

struct circ_op {
	uint8_t kind;  /* enum circ_kind */
	uint8_t nctrl; /* q[0 .. nctrl) are controls */
	uint8_t ntgt;  /* q[nctrl .. nctrl + ntgt) are targets: 1 or 2 (barrier: its qubits) */
	uint8_t nparams;
	char name[CIRC_NAME_MAX]; /* "cx", "prx", "u3": for display and gate counts */
	int q[CIRC_MAX_CTRL + CIRC_MAX_TGT];
	double params[4];	/* as written, for display and for the transpiler */
	double m[32];		/* 2x2 (8 doubles) or 4x4 (32 doubles) on the targets */
	int clbit;		/* CIRC_MEASURE */
	int cond_off, cond_len; /* cond_len 0: unconditional */
	uint64_t cond_val;
};

struct circ_reg {
	char name[CIRC_REG_NAME_MAX];
	int off, len;
};

struct circ {
	int nq, ncl;
	struct circ_reg *qregs, *cregs;
	size_t nqregs, ncregs;
	struct circ_op *ops;
	size_t n, cap;
};

void circ_init(struct circ *c);
/* Frees what c holds; c may be reused after circ_init. */
void circ_release(struct circ *c);
/* Deep copy of src into dst (initialised or released). */
int circ_copy(struct circ *dst, const struct circ *src, struct ciel_err *err);

/* Append a register; -1 if the name exists or the total passes the maximum. */
int circ_add_qreg(struct circ *c, const char *name, int len, struct ciel_err *err);
int circ_add_creg(struct circ *c, const char *name, int len, struct ciel_err *err);
const struct circ_reg *circ_find_qreg(const struct circ *c, const char *name);
const struct circ_reg *circ_find_creg(const struct circ *c, const char *name);

/* Append a copy of op. */
int circ_push(struct circ *c, const struct circ_op *op, struct ciel_err *err);

/*
 * Fill op (kind, name, nctrl, ntgt, params, m) for a standard gate of
 * qelib1.inc / stdgates.inc by name, with nparams parameters; the caller sets
 * op->q. Returns -1 with CIEL_ENOTFOUND for an unknown name and CIEL_EINVAL
 * for a wrong parameter count. circ_std_nparams says what a name expects
 * (-1 if unknown) and circ_std_nqubits how many qubits it takes.
 */
int circ_std_gate(const char *name, const double *params, int nparams, struct circ_op *op,
		  struct ciel_err *err);
int circ_std_nparams(const char *name);
int circ_std_nqubits(const char *name);
/* NULL-terminated list of the standard names, for tests and docs. */
extern const char *const circ_std_names[];

/* Replace op's matrix by its conjugate transpose (inv@). */
void circ_op_invert(struct circ_op *op);
/* Add one control qubit in front (ctrl@); -1 past CIRC_MAX_CTRL. */
int circ_op_control(struct circ_op *op, int qubit, struct ciel_err *err);
/* Fill a 1-target gate's matrix: U(theta, phi, lambda) times e^{i gamma}. */
void circ_u(double m[8], double theta, double phi, double lambda, double gamma);

/* Qubits op acts on, q[0 .. n): a gate's controls and targets, 1 for measure
 * and reset, none for a barrier (it changes nothing). */
int circ_op_nqubits(const struct circ_op *op);

/* Depth: the longest chain of operations sharing a qubit (barriers excluded). */
size_t circ_depth(const struct circ *c);
/* {"cx": 3, "h": 2, "measure": 2}: a new object, or NULL on ENOMEM. */
json_t *circ_gate_counts(const struct circ *c);
/* True if no gate, reset or condition follows a measurement of a qubit, so
 * shots may be sampled from one final state. */
int circ_terminal_measure(const struct circ *c);

#endif
