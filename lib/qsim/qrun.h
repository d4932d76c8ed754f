/*
 * qrun — run a circuit for a number of shots and count the outcomes.
 *
 * Chooses the method: one simulation sampled shots times when the circuit is
 * noiseless and only measures at the end; one trajectory per shot otherwise
 * (mid-circuit measurement, reset, if, noise). Seeded: the same inputs and
 * seed give the same counts, whatever the thread count.
 *
 * Counts use Qiskit's convention: the key is the classical bits with c[0]
 * rightmost, registers separated by a space, the last-declared register left.
 */
#ifndef CIEL_QRUN_H
#define CIEL_QRUN_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "qsim/circ.h"
#include "qsim/qdev.h"
#include "qsim/qsim.h"
#include "util/err.h"

#define QRUN_MAX_SHOTS 1000000

struct qrun_opts {
	int shots; /* 1 .. QRUN_MAX_SHOTS */
	uint64_t seed;
	enum qsim_prec prec;
	int threads;			    /* >= 1 */
	uint64_t max_bytes;		    /* state memory limit, 0 = MemAvailable */
	const struct qdev_profile *profile; /* NULL = ideal */
	/* polled between shots and gate runs, possibly from several threads at
	 * once; non-zero stops with CIEL_EUNAVAIL "cancelled" */
	int (*cancelled)(void *arg);
	/* called about every 1% of shots (sampled: of fused gates), one call at a time */
	void (*progress)(void *arg, int done, int total);
	void *arg;
};

struct qrun_result {
	json_t *counts;	     /* {"00": 498, "11": 502} */
	int shots;	     /* requested */
	int shots_kept;	     /* heralded shots (photonic); = shots elsewhere */
	uint64_t seed;	     /* as given in the options, for the record */
	double seconds;	     /* simulation wall time */
	int qubits;	     /* qubits simulated after compaction */
	const char *method;  /* "sampled" or "trajectories" (static) */
	size_t depth;	     /* of the transpiled circuit */
	json_t *gate_counts; /* of the transpiled circuit */
	char *transpiled;    /* OpenQASM of the transpiled circuit (qasm_emit) */
};

/*
 * Transpile c for o->profile, then simulate. res is filled on success and
 * must be released with qrun_result_release (also after failure).
 */
int qrun(const struct circ *c, const struct qrun_opts *o, struct qrun_result *res,
	 struct ciel_err *err);
void qrun_result_release(struct qrun_result *res);
/* res as the API's "result" object: counts, shots, shots_kept, seconds, ... */
json_t *qrun_result_json(const struct qrun_result *res);

/*
 * What running c on profile p (NULL = ideal) will take, without simulating:
 * transpiles, then counts the qubits actually touched. For admission in the
 * control plane. -1 with the transpiler's error, or CIEL_EINVAL (field
 * "qasm") for a circuit that measures nothing, as qrun would fail.
 */
int qrun_plan(const struct circ *c, const struct qdev_profile *p, enum qsim_prec prec, int *qubits,
	      uint64_t *state_bytes, struct ciel_err *err);

/*
 * The counts as a table for people: most frequent first, with a probability
 * and a bar, at most max_rows rows (then how many more). -1 on ENOMEM.
 */
int qrun_print_counts(FILE *f, const json_t *counts, size_t max_rows);

/* Final state of a noiseless circuit with no measurement (tests, --statevector). */
struct qsim *qrun_statevector(const struct circ *c, enum qsim_prec prec, int threads,
			      struct ciel_err *err);

#endif
