/*
 * fetch — bring an image to the node: its layer blobs from the region
 * (GET /v1/blobs/{digest}) into STATE/blobs, then unpacked once into
 * STATE/images/<hex of the image digest>, the read-only lower layer every
 * instance of that image shares.
 *
 * Invariants:
 * - A blob file under its digest's name holds exactly those bytes: the
 *   download goes to a temporary file beside it, hashed as it is written,
 *   and is renamed into place only once the SHA-256 matched (and fsynced).
 *   So "the file exists" is the whole cache check, and a crash mid-download
 *   leaves only a temporary file, never a wrong blob.
 * - An unpacked image directory is whole or absent (image_unpack builds
 *   beside it and renames), so "the directory exists" means done; two
 *   unpacks of the same image end with one of them in place.
 */
#ifndef CIEL_FETCH_H
#define CIEL_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "client/client.h"
#include "image/image.h"
#include "util/err.h"

/*
 * Make sure blobs_dir holds digest ("sha256:<hex>"). size is the expected
 * byte count (0 if unknown), a bound on what is accepted. -1 with
 * CIEL_ENOTFOUND if the region has no such blob, CIEL_EUNAVAIL if the region
 * could not be reached or failed (worth retrying), CIEL_EINVAL if what came
 * back is not that blob, CIEL_EIO for local disk trouble.
 */
int fetch_blob(struct client *c, const char *blobs_dir, const char *digest, int64_t size,
	       struct ciel_err *err);

/*
 * Make sure images_dir/<hex> holds the image whose id is image_digest,
 * unpacked from layers (fetched into blobs_dir first as needed). root gets
 * the unpacked directory's path. Errors as fetch_blob, plus image_unpack's.
 */
int fetch_image(struct client *c, const char *blobs_dir, const char *images_dir,
		const char *image_digest, const struct image_layer *layers, size_t n,
		const struct image_opts *o, char *root, size_t root_size, struct ciel_err *err);

#endif
