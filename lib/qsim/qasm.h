/*
 * qasm — OpenQASM 2.0 in full and the OpenQASM 3 subset Qiskit emits for
 * plain circuits, parsed into a struct circ.
 *
 * Input is untrusted (tenants send it): bounded length, bounded nesting and
 * gate-definition expansion, never a crash. Every error names its line and
 * column: "line 3, column 5: unknown gate foo".
 */
#ifndef CIEL_QASM_H
#define CIEL_QASM_H

#include <stddef.h>

#include "qsim/circ.h"
#include "util/err.h"

#define QASM_MAX_BYTES (4u << 20)
/* Operations after expanding gate definitions. A circ_op is ~360 bytes, so
 * this keeps one parse under ~400 MiB; no simulation runs a million gates. */
#define QASM_MAX_OPS (1u << 20)

/*
 * Parse text[0..len) into out (initialised with circ_init; released by the
 * caller, also on failure). User-defined gates are expanded into standard
 * ones; a gate call that is itself a standard gate stays one op.
 * Returns -1 with CIEL_EINVAL, field "qasm" and a message that starts with
 * "line L, column C: " (1-based, columns in bytes) on bad input; CIEL_ENOMEM
 * when memory runs out.
 *
 * What the ops look like:
 *  - ctrl @ / negctrl @ add controls (negctrl: an x before and after);
 *    the name becomes the standard one where the matrix matches (ctrl @ x
 *    is "cx", ctrl(2) @ z "ccz", ctrl @ U "cu"), else "c<k><name>" ("c2h").
 *  - inv @ gives the standard inverse where there is one (s -> sdg,
 *    rx(a) -> rx(-a), u3(t,p,l) -> u3(-t,-l,-p)), else the conjugate
 *    transpose named "<name>dg". pow(k) @ repeats the gate |k| times
 *    (inverted when k < 0).
 *  - gphase is dropped (a global phase) unless controlled: then a p gate on
 *    the controls.
 *  - A barrier is one CIRC_BARRIER op per eight qubits it names (duplicates
 *    dropped, `barrier;` names all): ntgt = k, the qubits in q[0..k), the
 *    unused slots of q[] -1. qdev maps q[0 .. nctrl + ntgt) of a barrier;
 *    qasm_emit reads a barrier with no qubits as one on all of them.
 *  - Measure and reset ops have ntgt 1 and the qubit in q[0].
 *  - if (c == n) sets cond_off/cond_len/cond_val on every op it covers, the
 *    ops a user gate expands to included; if (c[i]) / if (!c[i]) / else
 *    work on a single bit.
 *  - Physical qubits ($0, $1, ...) live in a register named "q" sized by
 *    the highest one used; they cannot be mixed with declared qubits.
 */
int qasm_parse(const char *text, size_t len, struct circ *out, struct ciel_err *err);

/* Write c back as OpenQASM 2.0 (named gates with their params, else u3/unitary
 * comments); malloc'd string, NULL on ENOMEM. For `--emit-transpiled` and tests. */
char *qasm_emit(const struct circ *c);

#endif
