/*
 * qfuse — gate fusion: merge runs of unitary gates that touch few qubits into
 * one matrix of up to maxk targets, so the state is streamed once per fused
 * gate instead of once per gate.
 *
 * Only a run of plain unitary gates (no measure, reset, barrier or condition)
 * is fused; the caller cuts the circuit at those.
 */
#ifndef CIEL_QFUSE_H
#define CIEL_QFUSE_H

#include "qsim/circ.h"
#include "qsim/qsim.h"

/*
 * maxk to use when there is no reason to pick another: the fastest one
 * measured with bench-qsim on the 2-core AVX-512 machine (see bench/qsim.c):
 * with cache-blocked runs, compute outweighs passes, and a 3-qubit matrix
 * costs 8 multiply-adds per amplitude against 32 for 5.
 */
#define QFUSE_MAXK_DEFAULT 3

struct qfuse_gate {
	int nctrl, ntgt;
	int q[CIRC_MAX_CTRL + QSIM_MAX_FUSED]; /* controls first, then targets */
	double *m;			       /* 2^ntgt x 2^ntgt complex, owned by the program */
	int diag;			       /* m holds only the 2^ntgt diagonal entries */
};

struct qfuse_prog {
	struct qfuse_gate *g;
	size_t n, cap;
	size_t n_in; /* gates fused into the program */
};

/*
 * Fuse ops[0..n) (all CIRC_GATE, no condition) into prog (initialised with
 * {0}), each fused gate on at most maxk (1..QSIM_MAX_FUSED) targets.
 * The product equals the ops applied in order, exactly (up to rounding).
 */
int qfuse_build(const struct circ_op *ops, size_t n, int maxk, struct qfuse_prog *prog,
		struct ciel_err *err);
void qfuse_release(struct qfuse_prog *prog);
/* Apply every gate of prog to s, in order. */
void qfuse_run(const struct qfuse_prog *prog, struct qsim *s);
/* Passes over the whole state qfuse_run makes for prog on s (for bench figures). */
size_t qfuse_passes(const struct qfuse_prog *prog, const struct qsim *s);

#endif
