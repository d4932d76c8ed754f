/*
 * qsim — a state vector of 2^n complex amplitudes and the kernels that
 * change it. Qubit k is bit k of an amplitude index (see circ.h).
 *
 * Double precision by default, single on request. Kernels are chosen at run
 * time (AVX-512, AVX2, portable) and spread over the threads given at
 * creation. Probabilities are always summed in double, pairwise, so they do
 * not stall in float at 26+ qubits.
 */
#ifndef CIEL_QSIM_H
#define CIEL_QSIM_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define QSIM_MAX_QUBITS 34 /* hard ceiling; memory usually refuses first */
#define QSIM_MAX_FUSED 5   /* targets of one qsim_apply matrix */

enum qsim_prec {
	QSIM_DOUBLE,
	QSIM_SINGLE,
};

struct qsim;

/* Bytes a state of nq qubits needs (for admission and scheduling). */
uint64_t qsim_state_bytes(int nq, enum qsim_prec prec);

/*
 * A new state |0...0> of nq qubits, run on threads threads (>= 1).
 * Refuses with CIEL_ETOOBIG, saying how much memory it would need and how
 * much is available, when the state does not fit in MemAvailable (or
 * max_bytes, when non-zero). Free with qsim_free.
 */
struct qsim *qsim_new(int nq, enum qsim_prec prec, int threads, uint64_t max_bytes,
		      struct ciel_err *err);
void qsim_free(struct qsim *s);
int qsim_nqubits(const struct qsim *s);
/* Back to |0...0>. */
void qsim_zero(struct qsim *s);

/*
 * Apply a 2^ntgt x 2^ntgt matrix m (row-major, complex interleaved, bit j of
 * an index is tgt[j]) to the amplitudes whose ctrl qubits are all 1.
 * 1 <= ntgt <= QSIM_MAX_FUSED; qubits distinct. m need not be unitary (noise
 * Kraus operators): follow with qsim_normalize if it is not.
 */
void qsim_apply(struct qsim *s, const int *ctrl, int nctrl, const int *tgt, int ntgt,
		const double *m);
/* Apply a diagonal matrix (2^ntgt complex entries) — cheaper than qsim_apply. */
void qsim_apply_diag(struct qsim *s, const int *tgt, int ntgt, const double *d);
/* The same under controls: only where the ctrl qubits are all 1. */
void qsim_apply_diag_ctrl(struct qsim *s, const int *ctrl, int nctrl, const int *tgt, int ntgt,
			  const double *d);

/* One gate of a batch: q[0 .. nctrl) controls, then ntgt targets. */
struct qsim_op {
	int nctrl, ntgt;
	int diag; /* m holds the 2^ntgt diagonal entries */
	const int *q;
	const double *m;
};

/*
 * Qubits of a cache block of s (0 when s is too small to block). A batch
 * whose gates touch at most this many qubits in all costs one pass over
 * memory: each block of amplitudes is gathered into L2 once and every gate
 * applied there.
 */
int qsim_block_qubits(const struct qsim *s);
/* Smaller blocks, or 0 for none (benchmarks); -1 past the default. */
int qsim_set_block_qubits(struct qsim *s, int b);
/* Whether gates on these qubits (bit q = qubit q) fit one blocked pass. */
int qsim_batch_fits(const struct qsim *s, uint64_t qubits);
/* Apply ops in order: in one blocked pass when they fit, else one by one. */
void qsim_apply_batch(struct qsim *s, const struct qsim_op *ops, size_t n);

/* Sum of |amp|^2. */
double qsim_norm2(struct qsim *s);
/* Multiply every amplitude by 1/sqrt(norm2). */
void qsim_normalize(struct qsim *s);
/* P(qubit q reads 1). */
double qsim_prob1(struct qsim *s, int q);
/*
 * Measure q, with r uniform in [0, 1) choosing the outcome; collapse and
 * renormalise. Returns 0 or 1.
 */
int qsim_measure(struct qsim *s, int q, double r);
/* Measure q as above, then flip it to |0> if it read 1. */
void qsim_reset(struct qsim *s, int q, double r);

/*
 * Marginal probabilities of the nsel qubits sel[] (nsel <= 30): out has 2^nsel
 * doubles, bit j of its index is sel[j]. Summed in double.
 */
int qsim_probs(struct qsim *s, const int *sel, int nsel, double *out, struct ciel_err *err);

/* One amplitude, read or written as double (tests, small states). */
void qsim_get(const struct qsim *s, uint64_t idx, double *re, double *im);
void qsim_set(struct qsim *s, uint64_t idx, double re, double im);

/* Which kernel family runs: "avx512", "avx2" or "portable". */
const char *qsim_kernel_name(void);
/* Force a family (tests compare them); -1 if the CPU lacks it. */
int qsim_force_kernel(const char *name);

#endif
