/*
 * qdev — device profiles and the transpiler that makes a circuit run as it
 * would on one: decomposed into the device's native gates, routed onto its
 * connectivity with SWAPs, and annotated with its noise figures.
 *
 * Profiles are JSON files under lib/qsim/profiles/, built into the binary;
 * each keeps the published sources of its figures in a "sources" array.
 */
#ifndef CIEL_QDEV_H
#define CIEL_QDEV_H

#include <jansson.h>
#include <stddef.h>

#include "qsim/circ.h"
#include "util/err.h"

#define QDEV_NAME_MAX 32
#define QDEV_MAX_NATIVE 8

struct qdev_noise {
	double p1;		   /* depolarizing probability after each 1-qubit native gate */
	double p2;		   /* two-qubit depolarizing probability after each 2-qubit gate */
	double t1_us, t2_us;	   /* 0: no damping */
	double t1q_ns, t2q_ns;	   /* gate durations, for damping per gate */
	double readout_p01;	   /* P(read 1 | state 0) (false positive) */
	double readout_p10;	   /* P(read 0 | state 1) (false negative) */
	double prep_err;	   /* P(a qubit starts in |1> instead of |0>) */
	double herald_p2;	   /* photonic: P(a 2-qubit gate's herald succeeds); 0 = n/a */
	double distinguishability; /* photonic: extra 2-qubit depolarizing from it */
};

struct qdev_profile {
	char name[QDEV_NAME_MAX]; /* "superconducting", "neutral-atom", "photonic", "ideal" */
	char technology[QDEV_NAME_MAX];
	char description[256];
	int nq;					     /* qubits the device offers */
	char native[QDEV_MAX_NATIVE][CIRC_NAME_MAX]; /* circ_std names: "prx", "cz" */
	int nnative;
	int all_to_all;
	int (*edges)[2]; /* undirected coupling pairs, when not all-to-all */
	size_t nedges;
	struct qdev_noise noise;
	int noiseless; /* ideal: no noise at all */
	json_t *json;  /* the profile file as parsed, sources included */
};

/* Built-in profiles, loaded once; never freed. */
size_t qdev_count(void);
const struct qdev_profile *qdev_at(size_t i);
/* By name; NULL with CIEL_ENOTFOUND listing the names (field "profile"). */
const struct qdev_profile *qdev_find(const char *name, struct ciel_err *err);
/* The profile for `ciel quantum profiles` / GET /v1/quantum/profiles: a new reference. */
json_t *qdev_to_json(const struct qdev_profile *p);

/*
 * Transpile in for p into out (initialised; released by the caller): every
 * gate becomes native gates, every 2-qubit gate acts on a coupled pair (SWAPs
 * inserted, the layout followed), measurements keep their classical bits so
 * counts mean the same. out->nq is the device's qubit count when the layout
 * needs it, but qubits no op touches are never simulated (qrun compacts).
 * Refuses circuits wider than the device (CIEL_EINVAL, field "qasm").
 * For "ideal" the circuit is copied unchanged.
 */
int qdev_transpile(const struct qdev_profile *p, const struct circ *in, struct circ *out,
		   struct ciel_err *err);
/*
 * qdev_transpile, also filling final_layout[l] (in->nq entries; may be NULL)
 * with the physical qubit that holds logical qubit l once the circuit ends:
 * the SWAPs of routing move qubits, so a final state is the logical one with
 * its qubits permuted this way (tests, --statevector).
 */
int qdev_transpile_layout(const struct qdev_profile *p, const struct circ *in, struct circ *out,
			  int *final_layout, struct ciel_err *err);

#endif
