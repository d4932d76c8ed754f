/*
 * libFuzzer: tenants send OpenQASM text straight to qasm_parse. Whatever
 * parses must also survive qasm_emit, and a failure must carry the
 * "line L, column C: " prefix every caller shows.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qsim/qasm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct circ c;
	struct ciel_err err = {0};

	circ_init(&c);
	if (qasm_parse((const char *)data, size, &c, &err) == 0) {
		char *s = qasm_emit(&c);

		free(s);
	} else if (err.code == CIEL_EINVAL && strncmp(err.msg, "line ", 5) != 0) {
		abort();
	}
	circ_release(&c);
	return 0;
}
