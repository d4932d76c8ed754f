/*
 * libFuzzer target for the layer scanner (lib/image/layer.c): every tar an
 * image brings, on the control plane and again on each node, goes through
 * it. In memory, so no file and no fsync slow the loop. Besides "no crash,
 * no leak", for any input:
 * - a refusal is CIEL_EINVAL, field "file", message "file: ..." (memory
 *   cannot fail with an I/O error, and the API must get a 400, not a 500);
 * - allowing setuid only ever accepts more: what passes without it passes
 *   with it, with the same unpacked size;
 * - the unpacked size never exceeds the cap it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

#define CAP (1 << 20) /* keeps gzip bombs quick: sizes are checked before data is read */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static void check_refusal(const struct ciel_err *err)
{
	check(err->code == CIEL_EINVAL);
	check(!strcmp(err->field, "file"));
	check(!strncmp(err->msg, "file: ", 6));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct image_opts strict = {.max_unpacked_bytes = CAP};
	const struct image_opts allow = {.allow_setuid = 1, .max_unpacked_bytes = CAP};
	struct ciel_err err = {0};
	int64_t a = -1, b = -1;
	int ra, rb;

	ra = image_scan_layer_mem(data, size, &strict, &a, &err);
	if (ra < 0)
		check_refusal(&err);
	else
		check(a >= 0 && a <= CAP);
	rb = image_scan_layer_mem(data, size, &allow, &b, &err);
	if (rb < 0)
		check_refusal(&err);
	if (ra == 0)
		check(rb == 0 && a == b);
	return 0;
}
