/*
 * image — import container images into the content-addressed blob store;
 * OCI image layouts; blob paths; packing a directory for upload.
 *
 * Invariants (see image.h for the contract):
 * - An import stages everything in BLOBS/.import-PID-XXXXXX and renames
 *   into BLOBS/sha256 only once every layer has been read, hashed and
 *   scanned (layer.c): a refused import removes the staging directory and
 *   leaves no file behind. Staging in BLOBS keeps the final rename on one
 *   file system.
 * - A blob is taken only if its bytes hash to the digest that names it,
 *   checked on the very bytes that are kept (one read, see layer.h), so a
 *   layout cannot smuggle in content under another blob's name.
 * - Every JSON document of a layout is read whole under a 1 MiB cap
 *   before it is parsed; a layout names at most IMAGE_MAX_LAYERS layers.
 * - Kept with the layers: the manifest and the config, so the image
 *   digest always names a blob in BLOBS.
 */
#include "image/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/enc.h"
#include "image/layer.h"
#include "util/log.h"

#define JSON_MAX (1 << 20)	  /* index, manifest, config */
#define LAYOUT_FILE_MAX (1 << 16) /* the oci-layout marker */
#define CHUNK (1 << 16)
#define STALE_IMPORT_S (24 * 3600)

#if defined(__aarch64__)
#define HOST_ARCH "arm64"
#elif defined(__powerpc64__)
#define HOST_ARCH "ppc64le"
#elif defined(__s390x__)
#define HOST_ARCH "s390x"
#else
#define HOST_ARCH "amd64"
#endif

/* ------------------------------------------------------ digests and paths */

int image_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != IMAGE_DIGEST_LEN)
		return 0;
	for (s += 7; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static int hex64_valid(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[64] == '\0';
}

int image_blob_path(const char *blobs_dir, const char *digest, char *out, size_t size,
		    struct ciel_err *err)
{
	char nm[160];
	int n;

	if (!image_digest_valid(digest))
		return ciel_err_field(err, CIEL_EINVAL, "digest",
				      "digest: '%s' is not sha256:<64 lower-case hex>",
				      image_shown(digest, nm, sizeof(nm)));
	n = snprintf(out, size, "%s/sha256/%s", blobs_dir, digest + 7);
	if (n < 0 || (size_t)n >= size)
		return ciel_err_set(err, CIEL_EINVAL, "blob path for %s is too long", digest);
	return 0;
}

void image_info_release(struct image_info *i)
{
	if (!i)
		return;
	json_decref(i->config);
	i->config = NULL;
}

/* mkdir -p; the directories it makes get mode. */
static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------ import */

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

static const char *const layer_types[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    NULL,
};

struct keep {
	char name[128]; /* under the staging directory */
	char hex[65];
};

struct import {
	const struct image_opts *o;
	struct image_info *out;
	int blobs_fd, sha_fd, stage_fd;
	char stage[PATH_MAX];
	const char *stage_name; /* its name under blobs_fd */
	struct image_progress prog;
	int64_t budget;
	struct keep keep[IMAGE_MAX_LAYERS + 2];
	size_t n_keep;
};

struct desc {
	const char *media; /* NULL when absent */
	const char *digest;
	int64_t size;
};

static void keep_add(struct import *imp, const char *name, const char *hex)
{
	for (size_t i = 0; i < imp->n_keep; i++)
		if (!strcmp(imp->keep[i].hex, hex))
			return;
	if (imp->n_keep == sizeof(imp->keep) / sizeof(imp->keep[0]))
		BUG("image import keeps more than %zu blobs", imp->n_keep);
	snprintf(imp->keep[imp->n_keep].name, sizeof(imp->keep[0].name), "%s", name);
	snprintf(imp->keep[imp->n_keep].hex, sizeof(imp->keep[0].hex), "%s", hex);
	imp->n_keep++;
}

/* Rename what was staged into BLOBS/sha256, each fsynced, the manifest last. */
static int commit(struct import *imp, struct ciel_err *err)
{
	struct stat st;
	int fd;

	for (size_t i = 0; i < imp->n_keep; i++) {
		struct keep *k = &imp->keep[i];

		/* already held: the bytes are the same, leave the inode readers may hold */
		if (fstatat(imp->sha_fd, k->hex, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		fd = openat(imp->stage_fd, k->name, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0) {
			if (fd >= 0)
				close(fd);
			return ciel_err_sys(err, CIEL_EIO, errno, "import: sync blob %s", k->hex);
		}
		close(fd);
		if (renameat(imp->stage_fd, k->name, imp->sha_fd, k->hex) < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "import: store blob %s", k->hex);
	}
	if (fsync(imp->sha_fd) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "import: sync blob directory");
	return 0;
}

static int stage_bytes(struct import *imp, const char *name, const void *buf, size_t len,
		       struct ciel_err *err)
{
	int fd = openat(imp->stage_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0 || image_write_all(fd, buf, len) < 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return ciel_err_sys(err, CIEL_EIO, e, "import: stage %s", name);
	}
	close(fd);
	return 0;
}

/*
 * Read one layer from fd once: copy it to the staging file copy_name (when
 * set), hash it, scan it. want is the digest it must have, or NULL; the
 * hash is given back in hex. A blob whose bytes do not match its digest is
 * reported as that, even when its content is also broken.
 */
static int take_layer(struct import *imp, int fd, const char *copy_name, const char *want,
		      const char *ctx, int64_t *unpacked, int64_t *bytes, char hex[65],
		      struct ciel_err *err)
{
	struct archive_entry *e;
	struct image_scan *s;
	struct ciel_err rerr;
	int out_fd = -1, ret = -1, r;

	s = malloc(sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	memset(s, 0, offsetof(struct image_scan, ent));
	if (copy_name) {
		out_fd =
		    openat(imp->stage_fd, copy_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out_fd < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "import: stage %s", copy_name);
			goto out;
		}
	}
	r = image_scan_open(s, imp->o, ctx, imp->budget - imp->out->unpacked, fd, NULL, 0, out_fd,
			    1, &imp->prog, err);
	if (r == 0) {
		while ((r = image_scan_next(s, &e, err)) == 1)
			if (image_scan_skip(s, err) < 0) {
				r = -1;
				break;
			}
	}
	/* read the rest even after a refusal: a blob that is not what its
	 * digest says is the first thing to report */
	if (!s->t || image_scan_finish(s, hex, &rerr) < 0) {
		if (s->t && err)
			*err = rerr;
		goto out;
	}
	if (want && strcmp(hex, want + 7) != 0) {
		image_bad(err, "%sblob %s does not match its digest (its bytes hash to sha256:%s)",
			  ctx, want, hex);
		goto out;
	}
	if (r < 0)
		goto out;
	*unpacked = s->unpacked;
	*bytes = s->bytes;
	ret = 0;
out:
	image_scan_close(s);
	if (out_fd >= 0)
		close(out_fd);
	free(s);
	return ret;
}

static int import_rootfs(struct import *imp, int fd, int64_t size, struct ciel_err *err)
{
	struct image_info *out = imp->out;
	struct image_layer *l = &out->layers[0];
	int64_t unpacked = 0, bytes = 0;
	char hex[65];

	if (lseek(fd, 0, SEEK_SET) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "import: seek");
	/* the first look did not count: this is the pass that reads it all */
	imp->prog.done = 0;
	imp->prog.quiet = 0;
	imp->prog.total = size;
	if (take_layer(imp, fd, "rootfs", NULL, "", &unpacked, &bytes, hex, err) < 0)
		return -1;
	/* what was read and hashed, should the file have changed since stat */
	size = bytes;
	snprintf(out->format, sizeof(out->format), "rootfs-tar");
	snprintf(l->digest, sizeof(l->digest), "sha256:%s", hex);
	snprintf(out->digest, sizeof(out->digest), "sha256:%s", hex);
	l->size = size;
	l->unpacked = unpacked;
	out->n_layers = 1;
	out->size = size;
	out->unpacked = unpacked;
	out->config = json_object();
	if (!out->config)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	keep_add(imp, "rootfs", hex);
	return 0;
}

/* A whole small file under dfd, at most max bytes; the caller frees *buf. */
static int read_small(int dfd, const char *path, size_t max, const char *what, char **buf,
		      size_t *len, struct ciel_err *err)
{
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd;

	*buf = NULL;
	fd = openat(dfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return image_bad(err, "%s is missing", what);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "import: open %s", what);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return image_bad(err, "%s is not a regular file", what);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return image_bad(err, "%s is larger than %zu bytes", what, max);
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		close(fd);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			close(fd);
			free(*buf);
			*buf = NULL;
			return ciel_err_sys(err, CIEL_EIO, e, "import: read %s", what);
		}
		got += (size_t)n;
	}
	close(fd);
	(*buf)[got] = '\0';
	*len = got;
	return 0;
}

static json_t *parse_json(const char *buf, size_t len, const char *what, struct ciel_err *err)
{
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	char nm[160];

	if (!j) {
		image_bad(err, "%s is not valid JSON: %s (line %d)", what,
			  image_shown(je.text, nm, sizeof(nm)), je.line);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		image_bad(err, "%s is not a JSON object", what);
		return NULL;
	}
	return j;
}

static int get_desc(json_t *d, const char *what, struct desc *out, struct ciel_err *err)
{
	json_t *sz;
	char nm[160];

	if (!json_is_object(d))
		return image_bad(err, "%s: descriptor is not an object", what);
	out->media = json_string_value(json_object_get(d, "mediaType"));
	out->digest = json_string_value(json_object_get(d, "digest"));
	if (!out->digest)
		return image_bad(err, "%s: descriptor has no digest", what);
	if (!image_digest_valid(out->digest))
		return image_bad(err, "%s: digest '%s' is not sha256:<64 lower-case hex>", what,
				 image_shown(out->digest, nm, sizeof(nm)));
	sz = json_object_get(d, "size");
	if (!json_is_integer(sz) || json_integer_value(sz) < 0)
		return image_bad(err, "%s: descriptor has no valid size", what);
	out->size = json_integer_value(sz);
	return 0;
}

/*
 * A JSON blob of the layout (manifest, config, nested index): at most
 * JSON_MAX bytes, hashing to its digest, of the size its descriptor says.
 * The raw bytes come back in *raw (caller frees) to be kept.
 */
static json_t *read_blob_json(int lfd, const struct desc *d, const char *what, char **raw,
			      size_t *raw_len, struct ciel_err *err)
{
	char path[96], hex[65], label[160];
	json_t *j;

	snprintf(label, sizeof(label), "%s %s", what, d->digest);
	if (d->size > JSON_MAX) {
		image_bad(err, "%s is larger than %d bytes", label, JSON_MAX);
		return NULL;
	}
	snprintf(path, sizeof(path), "blobs/sha256/%s", d->digest + 7);
	if (read_small(lfd, path, JSON_MAX, label, raw, raw_len, err) < 0)
		return NULL;
	enc_sha256_hex(*raw, *raw_len, hex);
	if (strcmp(hex, d->digest + 7) != 0) {
		image_bad(err, "%s does not match its digest (its bytes hash to sha256:%s)", label,
			  hex);
		goto fail;
	}
	if ((int64_t)*raw_len != d->size) {
		image_bad(err, "%s is %zu bytes, its descriptor says %lld", label, *raw_len,
			  (long long)d->size);
		goto fail;
	}
	j = parse_json(*raw, *raw_len, label, err);
	if (j)
		return j;
fail:
	free(*raw);
	*raw = NULL;
	return NULL;
}

/* The manifest an index points at: the only one, or the first for linux/HOST_ARCH. */
static int pick_manifest(json_t *index, const char *what, struct desc *out, struct ciel_err *err)
{
	json_t *ms = json_object_get(index, "manifests"), *m;
	size_t i;

	if (!json_is_array(ms) || json_array_size(ms) == 0)
		return image_bad(err, "%s lists no manifests", what);
	if (json_array_size(ms) == 1)
		return get_desc(json_array_get(ms, 0), what, out, err);
	json_array_foreach(ms, i, m)
	{
		json_t *p = json_object_get(m, "platform");
		const char *os = json_string_value(json_object_get(p, "os"));
		const char *arch = json_string_value(json_object_get(p, "architecture"));

		if (os && arch && !strcmp(os, "linux") && !strcmp(arch, HOST_ARCH))
			return get_desc(m, what, out, err);
	}
	return image_bad(err, "%s has no manifest for linux/%s among its %zu", what, HOST_ARCH,
			 json_array_size(ms));
}

/* 1 for an index, 0 for a manifest, -1 for anything else. */
static int index_or_manifest(const char *media, json_t *j)
{
	const char *own = json_string_value(json_object_get(j, "mediaType"));

	if (!media)
		media = own;
	if (!media)
		return json_object_get(j, "manifests") ? 1 : 0;
	if (!strcmp(media, MT_OCI_INDEX) || !strcmp(media, MT_DOCKER_LIST))
		return 1;
	if (!strcmp(media, MT_OCI_MANIFEST) || !strcmp(media, MT_DOCKER_MANIFEST))
		return 0;
	return -1;
}

static int copy_strv(json_t *c, const char *from, json_t *res, const char *to, struct ciel_err *err)
{
	json_t *v = json_object_get(c, from), *x;
	size_t i;

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return image_bad(err, "config: %s is not an array of strings", from);
	json_array_foreach(v, i, x)
	{
		if (!json_is_string(x))
			return image_bad(err, "config: %s is not an array of strings", from);
	}
	if (json_object_set(res, to, v) < 0)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	return 0;
}

/* {"entrypoint","cmd","env","cwd"} from the image config's "config". */
static int parse_config(json_t *cfg, json_t **out, struct ciel_err *err)
{
	const char *os = json_string_value(json_object_get(cfg, "os")), *cwd;
	json_t *c = json_object_get(cfg, "config"), *res, *wd;
	char nm[160];

	if (os && strcmp(os, "linux") != 0)
		return image_bad(err, "config: the image is for os '%s', not linux",
				 image_shown(os, nm, sizeof(nm)));
	if (c && !json_is_null(c) && !json_is_object(c))
		return image_bad(err, "config: \"config\" is not an object");
	res = json_object();
	if (!res)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (json_is_object(c)) {
		if (copy_strv(c, "Entrypoint", res, "entrypoint", err) < 0 ||
		    copy_strv(c, "Cmd", res, "cmd", err) < 0 ||
		    copy_strv(c, "Env", res, "env", err) < 0)
			goto fail;
		wd = json_object_get(c, "WorkingDir");
		if (wd && !json_is_null(wd) && !json_is_string(wd)) {
			image_bad(err, "config: WorkingDir is not a string");
			goto fail;
		}
		cwd = json_string_value(wd);
		if (cwd && *cwd && json_object_set_new(res, "cwd", json_string(cwd)) < 0) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto fail;
		}
	}
	*out = res;
	return 0;
fail:
	json_decref(res);
	return -1;
}

static int check_layer_type(const char *media, size_t i, struct ciel_err *err)
{
	char nm[160];

	if (!media)
		return image_bad(err, "layer %zu: descriptor has no mediaType", i + 1);
	for (size_t k = 0; layer_types[k]; k++)
		if (!strcmp(media, layer_types[k]))
			return 0;
	if (strstr(media, "zstd"))
		return image_bad(
		    err,
		    "layer %zu: zstd-compressed layers (%s) are not supported: use tar "
		    "or tar+gzip",
		    i + 1, image_shown(media, nm, sizeof(nm)));
	return image_bad(err, "layer %zu: media type '%s' is not supported (tar or tar+gzip only)",
			 i + 1, image_shown(media, nm, sizeof(nm)));
}

/* The layers of a manifest: each copied (or, when staged, taken in place) and scanned. */
static int import_layers(struct import *imp, int lfd, int staged, json_t *ls, struct ciel_err *err)
{
	struct image_info *out = imp->out;
	struct desc d[IMAGE_MAX_LAYERS];
	char path[96], ctx[48], name[128], hex[65];
	size_t n = json_array_size(ls);
	int64_t total = 0;

	if (n == 0)
		return image_bad(err, "the manifest has no layers");
	if (n > IMAGE_MAX_LAYERS)
		return image_bad(err, "the manifest has %zu layers, at most %d are allowed", n,
				 IMAGE_MAX_LAYERS);
	/* refuse what we cannot use before reading a byte of it */
	for (size_t i = 0; i < n; i++) {
		snprintf(ctx, sizeof(ctx), "layer %zu", i + 1);
		if (get_desc(json_array_get(ls, i), ctx, &d[i], err) < 0 ||
		    check_layer_type(d[i].media, i, err) < 0)
			return -1;
		total += d[i].size;
	}
	imp->prog.total += total;
	for (size_t i = 0; i < n; i++) {
		struct image_layer *l = &out->layers[i];
		struct stat st;
		int64_t unpacked = 0, bytes = 0;
		int fd, r;

		size_t j;

		snprintf(l->digest, sizeof(l->digest), "%s", d[i].digest);
		l->size = d[i].size;
		out->n_layers = i + 1;
		out->size += l->size;
		for (j = 0; j < i; j++)
			if (!strcmp(out->layers[j].digest, l->digest))
				break;
		/* the same blob twice: read once, but it unpacks twice */
		if (j < i) {
			l->unpacked = out->layers[j].unpacked;
			if (l->unpacked > imp->budget - out->unpacked)
				return image_bad(err, "the image unpacks to more than %lld bytes",
						 (long long)imp->budget);
			out->unpacked += l->unpacked;
			continue;
		}
		snprintf(ctx, sizeof(ctx), "layer %zu: ", i + 1);
		snprintf(path, sizeof(path), "blobs/sha256/%s", d[i].digest + 7);
		fd = openat(lfd, path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			return image_bad(err, "%sblob %s is missing from the layout", ctx,
					 d[i].digest);
		if (fd < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "import: open %s", d[i].digest);
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != d[i].size) {
			close(fd);
			return image_bad(
			    err, "%sblob %s is not a file of the %lld bytes its descriptor says",
			    ctx, d[i].digest, (long long)d[i].size);
		}
		if (staged)
			snprintf(name, sizeof(name), "layout/%s", path);
		else
			snprintf(name, sizeof(name), "layer-%zu", i + 1);
		r = take_layer(imp, fd, staged ? NULL : name, d[i].digest, ctx, &unpacked, &bytes,
			       hex, err);
		close(fd);
		if (r < 0)
			return -1;
		l->unpacked = unpacked;
		out->unpacked += unpacked;
		keep_add(imp, name, hex);
	}
	return 0;
}

/* Keep a JSON blob we read (manifest, config) alongside the layers. */
static int keep_json(struct import *imp, int staged, const struct desc *d, const char *name,
		     const char *raw, size_t len, struct ciel_err *err)
{
	char path[128];

	if (staged) {
		snprintf(path, sizeof(path), "layout/blobs/sha256/%s", d->digest + 7);
		keep_add(imp, path, d->digest + 7);
		return 0;
	}
	if (stage_bytes(imp, name, raw, len, err) < 0)
		return -1;
	keep_add(imp, name, d->digest + 7);
	return 0;
}

/* An OCI layout in directory lfd (the caller's, or the one staged from a tar). */
static int import_layout(struct import *imp, int lfd, int staged, struct ciel_err *err)
{
	json_t *marker = NULL, *index = NULL, *nested = NULL, *man = NULL, *cfg = NULL;
	char *buf = NULL, *man_raw = NULL, *cfg_raw = NULL;
	size_t len, man_len = 0, cfg_len = 0;
	struct desc md, cd;
	json_t *sv, *ls;
	int ret = -1, kind;

	if (read_small(lfd, "oci-layout", LAYOUT_FILE_MAX, "oci-layout", &buf, &len, err) < 0)
		goto out;
	marker = parse_json(buf, len, "oci-layout", err);
	free(buf);
	buf = NULL;
	if (!marker)
		goto out;
	if (!json_is_string(json_object_get(marker, "imageLayoutVersion"))) {
		image_bad(err, "oci-layout has no imageLayoutVersion");
		goto out;
	}
	if (read_small(lfd, "index.json", JSON_MAX, "index.json", &buf, &len, err) < 0)
		goto out;
	index = parse_json(buf, len, "index.json", err);
	free(buf);
	buf = NULL;
	if (!index || pick_manifest(index, "index.json", &md, err) < 0)
		goto out;
	man = read_blob_json(lfd, &md, "manifest", &man_raw, &man_len, err);
	if (!man)
		goto out;
	kind = index_or_manifest(md.media, man);
	if (kind == 1) {
		/* a nested index (a multi-platform image): one level only */
		nested = man;
		man = NULL;
		free(man_raw);
		man_raw = NULL;
		if (pick_manifest(nested, "nested index", &md, err) < 0)
			goto out;
		man = read_blob_json(lfd, &md, "manifest", &man_raw, &man_len, err);
		if (!man)
			goto out;
		kind = index_or_manifest(md.media, man);
		if (kind == 1) {
			image_bad(err, "index nested more than one level deep");
			goto out;
		}
	}
	if (kind < 0) {
		image_bad(err, "manifest %s: media type is not an image manifest", md.digest);
		goto out;
	}
	sv = json_object_get(man, "schemaVersion");
	if (sv && json_integer_value(sv) != 2) {
		image_bad(err, "manifest %s: schemaVersion is not 2", md.digest);
		goto out;
	}
	if (get_desc(json_object_get(man, "config"), "manifest config", &cd, err) < 0)
		goto out;
	if (cd.media && strcmp(cd.media, MT_OCI_CONFIG) != 0 &&
	    strcmp(cd.media, MT_DOCKER_CONFIG) != 0) {
		char nm[160];

		image_bad(err, "config media type '%s': not a container image",
			  image_shown(cd.media, nm, sizeof(nm)));
		goto out;
	}
	ls = json_object_get(man, "layers");
	if (!json_is_array(ls)) {
		image_bad(err, "manifest %s has no layers array", md.digest);
		goto out;
	}
	cfg = read_blob_json(lfd, &cd, "config", &cfg_raw, &cfg_len, err);
	if (!cfg || parse_config(cfg, &imp->out->config, err) < 0)
		goto out;
	if (import_layers(imp, lfd, staged, ls, err) < 0)
		goto out;
	if (keep_json(imp, staged, &cd, "config", cfg_raw, cfg_len, err) < 0 ||
	    keep_json(imp, staged, &md, "manifest", man_raw, man_len, err) < 0)
		goto out;
	snprintf(imp->out->format, sizeof(imp->out->format), "oci");
	snprintf(imp->out->digest, sizeof(imp->out->digest), "%s", md.digest);
	ret = 0;
out:
	json_decref(marker);
	json_decref(index);
	json_decref(nested);
	json_decref(man);
	json_decref(cfg);
	free(buf);
	free(man_raw);
	free(cfg_raw);
	return ret;
}

/*
 * Write one tar entry's data to the staging file name (at most max bytes;
 * when hex is set, the bytes must hash to it).
 */
static int stage_entry(struct import *imp, struct image_scan *s, const char *name, int64_t max,
		       const char *hex, struct ciel_err *err)
{
	EVP_MD_CTX *md = NULL;
	const void *buf;
	size_t len;
	la_int64_t off, pos = 0;
	unsigned char dg[32];
	unsigned int dlen = 0;
	char got[65];
	int fd, r, ret = -1;

	if (s->ent.size > max)
		return image_refuse(err, "", s->ent.shown, "larger than %lld bytes",
				    (long long)max);
	fd = openat(imp->stage_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		return image_refuse(err, "", s->ent.shown, "appears twice in the layout");
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "import: stage %s", name);
	if (hex && (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	while ((r = archive_read_data_block(s->a, &buf, &len, &off)) == ARCHIVE_OK) {
		if (off != pos) {
			image_refuse(err, "", s->ent.shown, "sparse entry in an OCI layout");
			goto out;
		}
		if (image_write_all(fd, buf, len) < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "import: stage %s", name);
			goto out;
		}
		if (md && EVP_DigestUpdate(md, buf, len) != 1) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
		pos += (la_int64_t)len;
	}
	if (r != ARCHIVE_EOF) {
		image_scan_fail(s, s->ent.shown, err);
		goto out;
	}
	if (md) {
		if (EVP_DigestFinal_ex(md, dg, &dlen) != 1 || dlen != 32) {
			ciel_err_set(err, CIEL_EINTERNAL, "import: sha256 failed");
			goto out;
		}
		enc_hex(dg, 32, got);
		if (strcmp(got, hex) != 0) {
			image_bad(err,
				  "blob sha256:%s does not match its digest (its bytes hash to "
				  "sha256:%s)",
				  hex, got);
			goto out;
		}
	}
	ret = 0;
out:
	EVP_MD_CTX_free(md);
	close(fd);
	return ret;
}

/*
 * First look at a tar file: is it an OCI layout? It stops at the first
 * entry that has no place in a layout (a rootfs, most likely, after a
 * header or two). Otherwise it stages oci-layout, index.json and the blobs
 * under stage/layout, each blob checked against its name as it is written.
 */
static int stage_layout(struct import *imp, int fd, int64_t size, int *is_layout,
			struct ciel_err *err)
{
	/* only names matter here: a rootfs is judged by the rootfs path */
	static const struct image_opts lenient = {.allow_setuid = 1};
	struct archive_entry *e;
	struct ciel_err first;
	struct image_scan *s;
	int saw_marker = 0, saw_index = 0, ret = -1, r;
	char name[128];

	*is_layout = 0;
	s = malloc(sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	/* quiet until this is known to be a layout: a rootfs starts over */
	imp->prog.total = size;
	imp->prog.quiet = 1;
	/* not a tar at all: the rootfs path says so, in its own words */
	if (image_scan_open(s, &lenient, "", imp->budget, fd, NULL, 0, -1, 0, &imp->prog, &first) <
	    0) {
		ret = 0;
		goto out;
	}
	if (mkdirat(imp->stage_fd, "layout", 0700) < 0 ||
	    mkdirat(imp->stage_fd, "layout/blobs", 0700) < 0 ||
	    mkdirat(imp->stage_fd, "layout/blobs/sha256", 0700) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "import: stage layout");
		goto out;
	}
	while ((r = image_scan_next(s, &e, &first)) == 1) {
		const char *p = s->ent.path;
		int is_reg = s->ent.kind == IMAGE_ENT_FILE;

		if (s->ent.kind == IMAGE_ENT_ROOT ||
		    (s->ent.kind == IMAGE_ENT_DIR &&
		     (!strcmp(p, "blobs") || !strcmp(p, "blobs/sha256"))))
			continue;
		if (is_reg && !strcmp(p, "oci-layout")) {
			saw_marker = 1;
			r = stage_entry(imp, s, "layout/oci-layout", LAYOUT_FILE_MAX, NULL, err);
		} else if (is_reg && !strcmp(p, "index.json")) {
			saw_index = 1;
			r = stage_entry(imp, s, "layout/index.json", JSON_MAX, NULL, err);
		} else if (is_reg && !strncmp(p, "blobs/sha256/", 13) && hex64_valid(p + 13)) {
			snprintf(name, sizeof(name), "layout/blobs/sha256/%.64s", p + 13);
			r = stage_entry(imp, s, name, INT64_MAX, p + 13, err);
		} else if (is_reg && (!strcmp(p, "manifest.json") || !strcmp(p, "repositories"))) {
			continue; /* docker save writes these beside the layout */
		} else if (saw_marker) {
			/* a stray entry in what claims to be a layout is an error, not a rootfs */
			image_refuse(err, "", s->ent.shown, "has no place in an OCI image layout");
			goto out;
		} else {
			ret = 0;
			goto out;
		}
		if (r < 0)
			goto out;
		imp->prog.quiet = 0;
	}
	if (r < 0) {
		/* broken before we knew what it was: the rootfs path reports it */
		if (saw_marker && err)
			*err = first;
		ret = saw_marker ? -1 : 0;
		goto out;
	}
	*is_layout = saw_marker && saw_index;
	ret = 0;
out:
	image_scan_close(s);
	free(s);
	return ret;
}

/* Staging directories of imports that died: gone after a day. */
static void sweep_stale(int blobs_fd)
{
	struct dirent *de;
	struct stat st;
	time_t now = time(NULL);
	int fd = fcntl(blobs_fd, F_DUPFD_CLOEXEC, 0);
	DIR *d;

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, ".import-", 8) != 0)
			continue;
		if (fstatat(blobs_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode) && st.st_mtime < now - STALE_IMPORT_S) {
			log_info("image removing stale staging dir=%s", de->d_name);
			(void)image_rm_rf_at(blobs_fd, de->d_name);
		}
	}
	closedir(d);
}

int image_import(const char *src, const char *blobs_dir, const struct image_opts *o,
		 struct image_info *out, struct ciel_err *err)
{
	static const struct image_opts none;
	struct import *imp;
	struct stat st;
	int fd = -1, lfd = -1, ret = -1, is_layout = 0;
	char nm[160];

	memset(out, 0, sizeof(*out));
	imp = calloc(1, sizeof(*imp));
	if (!imp)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	imp->o = o ? o : &none;
	imp->out = out;
	imp->budget = image_max_unpacked(imp->o);
	imp->prog.o = imp->o;
	imp->blobs_fd = imp->sha_fd = imp->stage_fd = -1;

	if (mkdir_p(blobs_dir, 0700) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "import: create %s", blobs_dir);
		goto out;
	}
	imp->blobs_fd = open(blobs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (imp->blobs_fd < 0 || (mkdirat(imp->blobs_fd, "sha256", 0700) < 0 && errno != EEXIST) ||
	    (imp->sha_fd = openat(imp->blobs_fd, "sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) <
		0) {
		ciel_err_sys(err, CIEL_EIO, errno, "import: open %s", blobs_dir);
		goto out;
	}
	sweep_stale(imp->blobs_fd);
	if (snprintf(imp->stage, sizeof(imp->stage), "%s/.import-%d-XXXXXX", blobs_dir,
		     (int)getpid()) >= (int)sizeof(imp->stage) ||
	    !mkdtemp(imp->stage)) {
		ciel_err_sys(err, CIEL_EIO, errno, "import: staging directory in %s", blobs_dir);
		imp->stage[0] = '\0';
		goto out;
	}
	imp->stage_name = strrchr(imp->stage, '/') + 1;
	imp->stage_fd = open(imp->stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (imp->stage_fd < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "import: open %s", imp->stage);
		goto out;
	}

	if (stat(src, &st) < 0) {
		ciel_err_field(err, CIEL_EINVAL, "file", "file: cannot read '%s': %s",
			       image_shown(src, nm, sizeof(nm)), strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		lfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (lfd < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "import: open %s", src);
			goto out;
		}
		if (import_layout(imp, lfd, 0, err) < 0)
			goto out;
	} else if (S_ISREG(st.st_mode)) {
		fd = open(src, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "import: open %s", src);
			goto out;
		}
		if (stage_layout(imp, fd, st.st_size, &is_layout, err) < 0)
			goto out;
		if (is_layout) {
			lfd = openat(imp->stage_fd, "layout", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (lfd < 0) {
				ciel_err_sys(err, CIEL_EIO, errno, "import: open staged layout");
				goto out;
			}
			if (import_layout(imp, lfd, 1, err) < 0)
				goto out;
		} else if (import_rootfs(imp, fd, st.st_size, err) < 0) {
			goto out;
		}
	} else {
		image_bad(err, "'%s' is neither a file nor a directory",
			  image_shown(src, nm, sizeof(nm)));
		goto out;
	}
	if (commit(imp, err) < 0)
		goto out;
	imp->prog.total = imp->prog.done;
	image_progress_add(&imp->prog, 0, 1);
	log_info("image imported digest=%s format=%s layers=%zu size=%lld unpacked=%lld",
		 out->digest, out->format, out->n_layers, (long long)out->size,
		 (long long)out->unpacked);
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (lfd >= 0)
		close(lfd);
	if (imp->stage_fd >= 0)
		close(imp->stage_fd);
	if (imp->stage[0] && image_rm_rf_at(imp->blobs_fd, imp->stage_name) < 0)
		log_warn("image import could not remove staging dir=%s errno=%d", imp->stage,
			 errno);
	if (imp->sha_fd >= 0)
		close(imp->sha_fd);
	if (imp->blobs_fd >= 0)
		close(imp->blobs_fd);
	free(imp);
	if (ret < 0) {
		image_info_release(out);
		memset(out, 0, sizeof(*out));
	}
	return ret;
}

/* ------------------------------------------------------------------- pack */

int image_pack_dir(const char *dir, const char *out_tar, struct ciel_err *err)
{
	struct archive *disk = NULL, *w = NULL;
	struct archive_entry *e = NULL;
	char rel[PATH_MAX], buf[CHUNK];
	struct stat self;
	size_t dl = strlen(dir);
	int fd, r, ret = -1;

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	fd = open(out_tar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "pack: create %s", out_tar);
	if (fstat(fd, &self) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "pack: stat %s", out_tar);
		goto out;
	}
	disk = archive_read_disk_new();
	w = archive_write_new();
	e = archive_entry_new();
	if (!disk || !w || !e) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	archive_read_disk_set_symlink_hybrid(disk);
	archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
						 ARCHIVE_READDISK_NO_FFLAGS);
	if (archive_write_set_format_pax_restricted(w) != ARCHIVE_OK ||
	    archive_write_open_fd(w, fd) != ARCHIVE_OK) {
		ciel_err_set(err, CIEL_EIO, "pack: %s", archive_error_string(w));
		goto out;
	}
	if (archive_read_disk_open(disk, dir) != ARCHIVE_OK) {
		ciel_err_set(err, CIEL_EIO, "pack: %s", archive_error_string(disk));
		goto out;
	}
	for (;;) {
		const char *p;
		la_ssize_t n;

		archive_entry_clear(e);
		r = archive_read_next_header2(disk, e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			ciel_err_set(err, CIEL_EIO, "pack: %s", archive_error_string(disk));
			goto out;
		}
		archive_read_disk_descend(disk);
		p = archive_entry_pathname(e);
		if (!p || strncmp(p, dir, dl) != 0 || (p[dl] != '/' && p[dl] != '\0')) {
			ciel_err_set(err, CIEL_EINTERNAL, "pack: unexpected path under %s", dir);
			goto out;
		}
		p += dl;
		while (*p == '/')
			p++;
		/* the root itself, and the tar we are writing if it lies inside */
		if (!*p || (archive_entry_dev(e) == self.st_dev &&
			    archive_entry_ino64(e) == (la_int64_t)self.st_ino))
			continue;
		if (snprintf(rel, sizeof(rel), "%s", p) >= (int)sizeof(rel)) {
			ciel_err_set(err, CIEL_EINVAL, "pack: path too long under %s", dir);
			goto out;
		}
		archive_entry_copy_pathname(e, rel);
		/* ownership means nothing in a layout; do not ship local names */
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_uname(e, NULL);
		archive_entry_set_gname(e, NULL);
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			ciel_err_set(err, CIEL_EIO, "pack %s: %s", rel, archive_error_string(w));
			goto out;
		}
		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		while ((n = archive_read_data(disk, buf, sizeof(buf))) > 0)
			if (archive_write_data(w, buf, (size_t)n) != n) {
				ciel_err_set(err, CIEL_EIO, "pack %s: %s", rel,
					     archive_error_string(w));
				goto out;
			}
		if (n < 0) {
			ciel_err_set(err, CIEL_EIO, "pack %s: %s", rel, archive_error_string(disk));
			goto out;
		}
	}
	if (archive_write_close(w) != ARCHIVE_OK) {
		ciel_err_set(err, CIEL_EIO, "pack: %s", archive_error_string(w));
		goto out;
	}
	if (fsync(fd) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "pack: sync %s", out_tar);
		goto out;
	}
	ret = 0;
out:
	if (e)
		archive_entry_free(e);
	if (disk)
		archive_read_free(disk);
	if (w)
		archive_write_free(w);
	close(fd);
	if (ret < 0)
		unlink(out_tar);
	return ret;
}
