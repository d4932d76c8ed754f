/*
 * fetch — see fetch.h. The download streams through a stdio cookie that
 * writes to the temporary file and feeds SHA-256 at once, so a blob of
 * gigabytes is read from the network once and never held in memory.
 */
#include "agent/fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "crypto/enc.h"
#include "util/log.h"
#include "util/ts.h"

#define FETCH_TIMEOUT_MS (30L * 60 * 1000) /* one blob; a long poll uses far less */

/* What the stdio cookie writes through. */
struct sink {
	int fd;
	EVP_MD_CTX *md;
	int64_t written, max; /* max 0 = no bound */
	int failed_errno;     /* the write error, 0 if none */
};

static ssize_t sink_write(void *cookie, const char *buf, size_t n)
{
	struct sink *s = cookie;
	size_t off = 0;

	if (s->max > 0 && s->written + (int64_t)n > s->max) {
		s->failed_errno = EFBIG;
		return 0; /* stdio takes 0 as an error: the transfer stops */
	}
	while (off < n) {
		ssize_t w = write(s->fd, buf + off, n - off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			s->failed_errno = errno;
			return 0;
		}
		off += (size_t)w;
	}
	if (EVP_DigestUpdate(s->md, buf, n) != 1) {
		s->failed_errno = ENOMEM;
		return 0;
	}
	s->written += (int64_t)n;
	return (ssize_t)n;
}

/* mkdir dir and each missing parent (0700: nothing under STATE is for others). */
static int mkdir_parents(const char *dir, struct ciel_err *err)
{
	char p[PATH_MAX];
	size_t n;

	if ((size_t)snprintf(p, sizeof(p), "%s", dir) >= sizeof(p))
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", dir);
	n = strlen(p);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", p);
		p[i] = i < n ? '/' : '\0';
	}
	return 0;
}

static int fsync_dir(const char *path)
{
	char d[PATH_MAX];
	char *slash;
	int fd, r;

	snprintf(d, sizeof(d), "%s", path);
	slash = strrchr(d, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	fd = open(d[0] ? d : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/* The region's answer to a failed download, as one of fetch_blob's codes. */
static int download_error(const struct client_response *resp, const char *digest,
			  struct ciel_err *err)
{
	char code[64];

	if (resp->status == 404)
		return ciel_err_set(err, CIEL_ENOTFOUND, "blob %s: not found in the region",
				    digest);
	client_response_error(resp, err, code, sizeof(code), NULL, 0);
	ciel_err_prefix(err, "blob %s: %s: ", digest, code);
	/* a refusal (4xx) will not change by asking again; a failure (5xx) may */
	err->code = resp->status >= 500 || resp->status == 429 || resp->status == 408
			? CIEL_EUNAVAIL
			: CIEL_EINVAL;
	return -1;
}

int fetch_blob(struct client *c, const char *blobs_dir, const char *digest, int64_t size,
	       struct ciel_err *err)
{
	static const cookie_io_functions_t io = {.write = sink_write};
	struct client_request_opts ro = {0};
	struct client_response resp = {0};
	struct sink s = {.fd = -1, .max = size};
	char path[PATH_MAX], tmp[PATH_MAX + 32], url[128], hex[65], *slash;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	long old_timeout = c->timeout_ms;
	int64_t t0 = ts_mono_ms();
	struct stat st;
	FILE *f = NULL;
	struct ciel_err local;
	int ret = -1, r;

	if (!err)
		err = &local; /* the codes below steer the caller: always fill one */
	if (image_blob_path(blobs_dir, digest, path, sizeof(path), err) < 0)
		return -1;
	if (stat(path, &st) == 0)
		return 0; /* only ever renamed into place whole and verified */
	snprintf(tmp, sizeof(tmp), "%s", path);
	slash = strrchr(tmp, '/');
	if (slash) {
		*slash = '\0';
		if (mkdir_parents(tmp, err) < 0)
			return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s.part-%ld", path, (long)getpid());
	/* ':' is legal in a path segment: the digest goes as it is */
	snprintf(url, sizeof(url), "/v1/blobs/%s", digest);

	s.md = EVP_MD_CTX_new();
	if (!s.md || EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
		ciel_err_set(err, CIEL_ENOMEM, "sha256: out of memory");
		goto out;
	}
	s.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s.fd < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "open %s", tmp);
		goto out;
	}
	f = fopencookie(&s, "w", io);
	if (!f) {
		ciel_err_sys(err, CIEL_ENOMEM, errno, "fopencookie");
		goto out;
	}
	ro.sink = f;
	c->timeout_ms = FETCH_TIMEOUT_MS;
	r = client_request_ex(c, "GET", url, NULL, NULL, &ro, &resp, err);
	c->timeout_ms = old_timeout;
	if (fclose(f) != 0 && r == 0 && resp.status == 200) {
		f = NULL;
		ciel_err_sys(err, CIEL_EIO, s.failed_errno ? s.failed_errno : errno, "write %s",
			     tmp);
		goto out;
	}
	f = NULL;
	if (r < 0) {
		if (s.failed_errno == EFBIG)
			ciel_err_set(err, CIEL_EINVAL,
				     "blob %s: larger than the %" PRId64 " bytes announced", digest,
				     size);
		else if (s.failed_errno)
			ciel_err_sys(err, CIEL_EIO, s.failed_errno, "write %s", tmp);
		else if (err->code != CIEL_ETOOBIG)
			err->code = CIEL_EUNAVAIL;
		goto out;
	}
	if (resp.status != 200) {
		download_error(&resp, digest, err);
		goto out;
	}
	if (EVP_DigestFinal_ex(s.md, md, &md_len) != 1 || md_len != 32) {
		ciel_err_set(err, CIEL_EINTERNAL, "sha256: digest failed");
		goto out;
	}
	enc_hex(md, 32, hex);
	if (strcmp(hex, digest + 7) != 0) {
		ciel_err_set(err, CIEL_EINVAL, "blob %s: the bytes received hash to sha256:%s",
			     digest, hex);
		goto out;
	}
	if (size > 0 && s.written != size) {
		ciel_err_set(err, CIEL_EINVAL,
			     "blob %s: %" PRId64 " bytes received, %" PRId64 " announced", digest,
			     s.written, size);
		goto out;
	}
	if (fsync(s.fd) < 0 || rename(tmp, path) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "keep blob %s", path);
		goto out;
	}
	fsync_dir(path);
	log_info("blob fetched digest=%s bytes=%" PRId64 " ms=%" PRId64, digest, s.written,
		 ts_mono_ms() - t0);
	ret = 0;
out:
	if (f)
		fclose(f);
	if (s.fd >= 0)
		close(s.fd);
	if (ret < 0)
		unlink(tmp);
	EVP_MD_CTX_free(s.md);
	client_response_release(&resp);
	return ret;
}

int fetch_image(struct client *c, const char *blobs_dir, const char *images_dir,
		const char *image_digest, const struct image_layer *layers, size_t n,
		const struct image_opts *o, char *root, size_t root_size, struct ciel_err *err)
{
	struct ciel_err uerr;
	struct stat st;
	int64_t t0;

	if (!image_digest_valid(image_digest))
		return ciel_err_field(err, CIEL_EINVAL, "image_digest",
				      "image_digest: must be sha256:<64 hex>");
	if ((size_t)snprintf(root, root_size, "%s/%s", images_dir, image_digest + 7) >= root_size)
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", images_dir);
	if (stat(root, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (n == 0)
		return ciel_err_field(err, CIEL_EINVAL, "layers", "layers: the image has none");
	for (size_t i = 0; i < n; i++)
		if (fetch_blob(c, blobs_dir, layers[i].digest, layers[i].size, err) < 0)
			return -1;
	if (mkdir_parents(images_dir, err) < 0)
		return -1;
	t0 = ts_mono_ms();
	if (image_unpack(blobs_dir, layers, n, root, o, &uerr) < 0) {
		/* someone else's unpack of the same image got there first: that is success */
		if (stat(root, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		if (err)
			*err = uerr;
		ciel_err_prefix(err, "unpack %s: ", image_digest);
		return -1;
	}
	log_info("image unpacked digest=%s layers=%zu ms=%" PRId64, image_digest, n,
		 ts_mono_ms() - t0);
	return 0;
}
