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
#define QASM_MAX_OPS (1u << 22) /* after expanding gate definitions */

/*
 * Parse text[0..len) into out (initialised with circ_init; released by the
 * caller, also on failure). User-defined gates are expanded into standard
 * ones; a gate call that is itself a standard gate stays one op.
 * Returns -1 with CIEL_EINVAL and the position in the message on bad input.
 */
int qasm_parse(const char *text, size_t len, struct circ *out, struct ciel_err *err);

/* Write c back as OpenQASM 2.0 (named gates with their params, else u3/unitary
 * comments); malloc'd string, NULL on ENOMEM. For `--emit-transpiled` and tests. */
char *qasm_emit(const struct circ *c);

#endif
