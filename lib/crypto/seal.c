/*
 * seal — see seal.h for the format.
 *
 * Invariants:
 * - A nonce is never reused under a key: each one is 96 fresh random bits,
 *   which is safe for far more values than a region will ever seal.
 * - Nothing is returned from seal_decrypt unless the tag verified; partial
 *   plaintext is wiped before it is freed.
 * - A key file is either absent or complete: it is written under a temporary
 *   name (O_EXCL, 0600), fsync'd, then linked into place, and linking never
 *   replaces a key another process created meanwhile (data sealed under that
 *   key would be lost).
 */
#include "crypto/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/enc.h"
#include "util/log.h"

#define SEAL_PREFIX "v1."
#define NONCE_LEN 12
#define TAG_LEN 16
#define SEAL_PLAIN_MAX (16u << 20) /* small secrets; a cap keeps EVP's int lengths safe */

char *seal_encrypt(const unsigned char key[SEAL_KEY_LEN], const void *plain, size_t plain_len,
		   const char *aad, struct ciel_err *err)
{
	static const unsigned char empty;
	size_t raw_len = NONCE_LEN + plain_len + TAG_LEN;
	unsigned char *raw = NULL;
	char *b64 = NULL, *out = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	int n, m;

	if (plain_len > SEAL_PLAIN_MAX) {
		ciel_err_set(err, CIEL_ETOOBIG, "seal: %zu bytes is more than %u", plain_len,
			     SEAL_PLAIN_MAX);
		return NULL;
	}
	if (!aad)
		aad = "";
	raw = malloc(raw_len);
	ctx = EVP_CIPHER_CTX_new();
	if (!raw || !ctx) {
		ciel_err_set(err, CIEL_ENOMEM, "seal: out of memory");
		goto out;
	}
	if (enc_random(raw, NONCE_LEN, err) < 0)
		goto out;
	if (!EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) ||
	    !EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) ||
	    !EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n, plain_len ? plain : &empty,
			       (int)plain_len) ||
	    !EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + n, &m) || (size_t)(n + m) != plain_len ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + plain_len)) {
		ciel_err_set(err, CIEL_EINTERNAL, "seal: AES-256-GCM encryption failed");
		ERR_clear_error();
		goto out;
	}
	b64 = enc_b64url(raw, raw_len);
	out = b64 ? malloc(strlen(SEAL_PREFIX) + strlen(b64) + 1) : NULL;
	if (!out) {
		ciel_err_set(err, CIEL_ENOMEM, "seal: out of memory");
		goto out;
	}
	memcpy(out, SEAL_PREFIX, strlen(SEAL_PREFIX));
	memcpy(out + strlen(SEAL_PREFIX), b64, strlen(b64) + 1);
out:
	if (raw) {
		explicit_bzero(raw, raw_len);
		free(raw);
	}
	free(b64);
	EVP_CIPHER_CTX_free(ctx);
	return out;
}

int seal_decrypt(const unsigned char key[SEAL_KEY_LEN], const char *sealed, const char *aad,
		 unsigned char **plain, size_t *plain_len, struct ciel_err *err)
{
	unsigned char *raw = NULL, *pt = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	size_t raw_len = 0, ct_len, slen;
	int n, m, ret = -1;

	*plain = NULL;
	*plain_len = 0;
	if (!aad)
		aad = "";
	if (!sealed || strncmp(sealed, SEAL_PREFIX, strlen(SEAL_PREFIX)) != 0)
		return ciel_err_set(err, CIEL_EINVAL,
				    "sealed value: missing '" SEAL_PREFIX "' prefix");
	sealed += strlen(SEAL_PREFIX);
	/* base64url only, as written: one spelling per sealed value */
	slen = strspn(sealed, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
	if (sealed[slen] != '\0' || slen > (SEAL_PLAIN_MAX + NONCE_LEN + TAG_LEN) / 3 * 4 + 4 ||
	    enc_unb64(sealed, &raw, &raw_len) < 0)
		return ciel_err_set(err, CIEL_EINVAL, "sealed value: not base64url");
	if (raw_len < NONCE_LEN + TAG_LEN) {
		ciel_err_set(err, CIEL_EINVAL, "sealed value: %zu bytes is too short", raw_len);
		goto out;
	}
	ct_len = raw_len - NONCE_LEN - TAG_LEN;
	pt = malloc(ct_len + 1);
	ctx = EVP_CIPHER_CTX_new();
	if (!pt || !ctx) {
		ciel_err_set(err, CIEL_ENOMEM, "unseal: out of memory");
		goto out;
	}
	if (!EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) ||
	    !EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) ||
	    !EVP_DecryptUpdate(ctx, pt, &n, raw + NONCE_LEN, (int)ct_len) ||
	    !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + ct_len)) {
		ciel_err_set(err, CIEL_EINTERNAL, "unseal: AES-256-GCM setup failed");
		ERR_clear_error();
		goto out;
	}
	if (EVP_DecryptFinal_ex(ctx, pt + n, &m) != 1 || (size_t)(n + m) != ct_len) {
		ciel_err_set(
		    err, CIEL_EPERM,
		    "unseal: authentication failed (wrong key, wrong context or tampered)");
		ERR_clear_error();
		goto out;
	}
	pt[ct_len] = '\0';
	*plain = pt;
	*plain_len = ct_len;
	pt = NULL;
	ret = 0;
out:
	if (pt) {
		explicit_bzero(pt, ct_len + 1);
		free(pt);
	}
	free(raw);
	EVP_CIPHER_CTX_free(ctx);
	return ret;
}

static int key_read(int fd, const char *path, unsigned char key[SEAL_KEY_LEN], struct ciel_err *err)
{
	struct stat st;
	size_t got = 0;

	if (fstat(fd, &st) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "stat key file `%s`", path);
	if (!S_ISREG(st.st_mode))
		return ciel_err_set(err, CIEL_EINVAL, "key file `%s` is not a regular file", path);
	if (st.st_mode & 077)
		return ciel_err_set(err, CIEL_EPERM,
				    "key file `%s` is accessible by group or others (mode %04o); "
				    "chmod 600 it",
				    path, (unsigned)(st.st_mode & 07777));
	if (st.st_size != SEAL_KEY_LEN)
		return ciel_err_set(err, CIEL_EINVAL, "key file `%s` holds %lld bytes, not %d",
				    path, (long long)st.st_size, SEAL_KEY_LEN);
	while (got < SEAL_KEY_LEN) {
		ssize_t r = read(fd, key + got, SEAL_KEY_LEN - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "read key file `%s`", path);
		if (r == 0)
			return ciel_err_set(err, CIEL_EIO, "key file `%s` shrank while reading",
					    path);
		got += (size_t)r;
	}
	return 0;
}

static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, ret;

	if (!slash) {
		memcpy(dir, ".", 2);
	} else if (slash == path) {
		memcpy(dir, "/", 2);
	} else {
		if ((size_t)(slash - path) >= sizeof(dir))
			return -1;
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

/* 1 if created, 0 if another process created it first, -1 on error. */
static int key_create(const char *path, unsigned char key[SEAL_KEY_LEN], struct ciel_err *err)
{
	char tmp[PATH_MAX], rnd[9];
	size_t done = 0;
	int fd, ret = -1;

	if (enc_random_id("", 8, rnd, sizeof(rnd), err) < 0)
		return -1;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%s", path, rnd) >= sizeof(tmp))
		return ciel_err_set(err, CIEL_EINVAL, "key file path `%s` too long", path);
	if (enc_random(key, SEAL_KEY_LEN, err) < 0)
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create key file `%s`", tmp);
	while (done < SEAL_KEY_LEN) {
		ssize_t w = write(fd, key + done, SEAL_KEY_LEN - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "write key file `%s`", tmp);
			goto out_close;
		}
		done += (size_t)w;
	}
	if (fsync(fd) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "fsync key file `%s`", tmp);
		goto out_close;
	}
	/* link, not rename: never replace a key someone else just made */
	if (link(tmp, path) < 0) {
		if (errno == EEXIST)
			ret = 0;
		else
			ciel_err_sys(err, CIEL_EIO, errno, "link key file `%s`", path);
		goto out_close;
	}
	if (fsync_parent(path) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "fsync directory of `%s`", path);
		goto out_close;
	}
	ret = 1;
out_close:
	close(fd);
	unlink(tmp);
	return ret;
}

int seal_key_load_or_create(const char *path, unsigned char key[SEAL_KEY_LEN], struct ciel_err *err)
{
	int fd, ret;

	for (int attempt = 0; attempt < 2; attempt++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ret = key_read(fd, path, key, err);
			close(fd);
			if (ret < 0)
				explicit_bzero(key, SEAL_KEY_LEN);
			return ret;
		}
		if (errno != ENOENT)
			return ciel_err_sys(err, CIEL_EIO, errno, "open key file `%s`", path);
		ret = key_create(path, key, err);
		if (ret < 0) {
			explicit_bzero(key, SEAL_KEY_LEN);
			return -1;
		}
		if (ret == 1) {
			log_info("created key file path=%s", path);
			return 0;
		}
		/* lost a race with another creator: load theirs */
	}
	explicit_bzero(key, SEAL_KEY_LEN);
	return ciel_err_set(err, CIEL_EIO, "key file `%s` appears and disappears", path);
}
