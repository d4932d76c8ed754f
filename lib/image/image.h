/*
 * image — container images: import, validate, store by content, unpack.
 *
 * An image is an ordered list of layers, each a tar (plain or gzip) kept
 * once in a content-addressed blob directory (BLOBS/sha256/<hex>). A rootfs
 * tarball is an image of one layer; an OCI image layout (a directory, or a
 * tar of one) brings its own layers and config.
 *
 * Invariants:
 * - Every layer is scanned before anything of it is kept: absolute paths,
 *   "..", hard links outside the root, symlinks whose relative target
 *   climbs above the root, device nodes and (unless allowed) setuid/setgid
 *   bits refuse the whole image with CIEL_EINVAL, field "file", naming the
 *   entry. A refused import leaves no new file in BLOBS.
 * - A blob's name is the SHA-256 of its bytes, checked as it is written.
 * - Unpacking never writes outside dest, whatever the layer holds (it is
 *   scanned again: the node does not trust the control plane's check).
 */
#ifndef CIEL_IMAGE_H
#define CIEL_IMAGE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define IMAGE_MAX_LAYERS 64
#define IMAGE_DIGEST_LEN 71 /* "sha256:" + 64 hex */

struct image_opts {
	int allow_setuid;	    /* keep setuid/setgid bits (an operator's choice) */
	int64_t max_unpacked_bytes; /* refuse an image that unpacks larger; 0 = 16 GiB */
	/* called now and then while importing; total is 0 when unknown */
	void (*progress)(void *arg, int64_t done_bytes, int64_t total_bytes);
	void *progress_arg;
};

struct image_layer {
	char digest[IMAGE_DIGEST_LEN + 1]; /* "sha256:<hex>" of the blob */
	int64_t size;			   /* blob bytes (compressed if it is) */
	int64_t unpacked;		   /* bytes of file content once unpacked */
};

struct image_info {
	char format[16];		   /* "rootfs-tar" or "oci" */
	char digest[IMAGE_DIGEST_LEN + 1]; /* the image id: of the manifest, or of the tarball */
	size_t n_layers;
	struct image_layer layers[IMAGE_MAX_LAYERS];
	/* owned: {"entrypoint":[..],"cmd":[..],"env":[..],"cwd":"/"}, each member optional */
	json_t *config;
	int64_t size;	  /* sum of layer blob sizes */
	int64_t unpacked; /* sum of unpacked sizes */
};
/* Frees what i holds (config); safe on a zeroed struct. */
void image_info_release(struct image_info *i);

/*
 * Import src (a file: .tar, .tar.gz, OCI layout tar; or an OCI layout
 * directory) into blobs_dir (created if missing). Fills out; the caller
 * releases it. -1 with CIEL_EINVAL (field "file") for a bad or hostile
 * image, CIEL_EIO for disk trouble.
 */
int image_import(const char *src, const char *blobs_dir, const struct image_opts *o,
		 struct image_info *out, struct ciel_err *err);

/* Check one layer file without writing anything; *unpacked gets its size. */
int image_scan_layer(const char *path, const struct image_opts *o, int64_t *unpacked,
		     struct ciel_err *err);
/* The same check on a layer held in memory (len bytes at buf); for fuzzing and tests. */
int image_scan_layer_mem(const void *buf, size_t len, const struct image_opts *o, int64_t *unpacked,
			 struct ciel_err *err);

/*
 * Unpack layers (blobs already in blobs_dir) in order into dest, which must
 * not exist; OCI whiteouts (.wh.NAME, .wh..wh..opq) remove what earlier
 * layers put. Builds in dest.tmp-PID and renames, so dest is whole or
 * absent. Files are owned by the unpacking user (root on a node).
 */
int image_unpack(const char *blobs_dir, const struct image_layer *layers, size_t n,
		 const char *dest, const struct image_opts *o, struct ciel_err *err);

/* Write the tree under dir as one uncompressed tar at out_tar (for uploading a layout). */
int image_pack_dir(const char *dir, const char *out_tar, struct ciel_err *err);

/* Path of a blob by digest ("sha256:<hex>"); -1/CIEL_EINVAL on a malformed digest. */
int image_blob_path(const char *blobs_dir, const char *digest, char *out, size_t size,
		    struct ciel_err *err);

/* True if s is "sha256:" followed by 64 lower-case hex digits. */
int image_digest_valid(const char *s);

#endif
