/*
 * pki — see pki.h.
 *
 * Invariants:
 * - Files appear whole or not at all: each is written under a temporary
 *   name (O_CREAT|O_EXCL, final mode), fsync'd, then renamed (or, for the
 *   Ed25519 key, linked so a concurrent creator's key is never replaced),
 *   then the directory is fsync'd. A private key is 0600 from its first byte.
 * - A private key found readable by group or others is refused, not used.
 * - Private key PEM only passes through OpenSSL secure-memory BIOs or
 *   buffers wiped before they are freed.
 * - The server certificate is reused only while it is good for 30 more days,
 *   matches its key, is signed by the current CA and names every requested
 *   SAN; otherwise it is replaced, so adding an address or renewing the CA
 *   needs no manual step.
 */
#include "crypto/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/enc.h"
#include "util/log.h"

#define PKI_FILE_MAX (1u << 20)
#define CA_DAYS 3650
#define SERVER_DAYS 365
#define RENEW_BEFORE_S (30L * 86400)
#define BACKDATE_S 300 /* tolerate peers whose clock is a little behind */
#define MAX_SANS 64
#define REGION_NAME_MAX 48 /* "ciel CA " + this fits the 64-char CN limit */

/* Fill err with msg plus OpenSSL's most recent reason, and empty its queue. */
static int ossl_err(struct ciel_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ossl_err(struct ciel_err *err, int code, const char *fmt, ...)
{
	char msg[256], why[256] = "";
	unsigned long e = ERR_peek_last_error();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	return ciel_err_set(err, code, "%s%s%s", msg, why[0] ? ": " : "", why);
}

static int join(char *out, size_t size, const char *dir, const char *name, struct ciel_err *err)
{
	if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size)
		return ciel_err_set(err, CIEL_EINVAL, "path `%s/%s` too long", dir, name);
	return 0;
}

/* 1 if path exists, 0 if not, -1 on any other error. */
static int exists(const char *path, struct ciel_err *err)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	return ciel_err_sys(err, CIEL_EIO, errno, "stat `%s`", path);
}

static void fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	int fd;

	if (!slash)
		memcpy(dir, ".", 2);
	else if (n == 0)
		memcpy(dir, "/", 2);
	else if (n < sizeof(dir)) {
		memcpy(dir, path, n);
		dir[n] = '\0';
	} else
		return;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	/* best effort: the data itself is already fsync'd */
	if (fsync(fd) < 0)
		log_warn("fsync directory failed dir=%s errno=%d", dir, errno);
	close(fd);
}

/*
 * Write data to path atomically with the given mode. With replace, an
 * existing file is replaced (rename); without, an existing file wins and 0 is
 * returned instead of 1.
 */
static int write_atomic(const char *path, const void *data, size_t len, mode_t mode, int replace,
			struct ciel_err *err)
{
	char tmp[PATH_MAX], rnd[9];
	const unsigned char *p = data;
	size_t done = 0;
	int fd, ret = -1;

	if (enc_random_id("", 8, rnd, sizeof(rnd), err) < 0)
		return -1;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%s", path, rnd) >= sizeof(tmp))
		return ciel_err_set(err, CIEL_EINVAL, "path `%s` too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create `%s`", tmp);
	while (done < len) {
		ssize_t w = write(fd, p + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "write `%s`", tmp);
			goto out_close;
		}
		done += (size_t)w;
	}
	if (fsync(fd) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "fsync `%s`", tmp);
		goto out_close;
	}
	if (replace ? rename(tmp, path) : link(tmp, path)) {
		if (!replace && errno == EEXIST)
			ret = 0;
		else
			ciel_err_sys(err, CIEL_EIO, errno, "%s `%s`",
				     replace ? "rename to" : "link", path);
		goto out_close;
	}
	fsync_dir_of(path);
	ret = 1;
out_close:
	close(fd);
	/* after a rename tmp is gone already; after link or failure it must go */
	if (ret != 1 || !replace)
		unlink(tmp);
	return ret;
}

int pki_read_file(const char *path, char **out, size_t *len, struct ciel_err *err)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0, cap;
	int fd, ret = -1;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ciel_err_sys(err, errno == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, errno,
				    "open `%s`", path);
	if (fstat(fd, &st) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "stat `%s`", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ciel_err_set(err, CIEL_EINVAL, "`%s` is not a regular file", path);
		goto out;
	}
	if (st.st_size > (off_t)PKI_FILE_MAX) {
		ciel_err_set(err, CIEL_ETOOBIG, "`%s` is larger than %u bytes", path, PKI_FILE_MAX);
		goto out;
	}
	/* the size is a hint: the file may change under us, the cap still holds */
	cap = (size_t)st.st_size + 1;
	buf = malloc(cap + 1);
	if (!buf) {
		ciel_err_set(err, CIEL_ENOMEM, "read `%s`: out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb;

			if (cap >= PKI_FILE_MAX) {
				ciel_err_set(err, CIEL_ETOOBIG, "`%s` is larger than %u bytes",
					     path, PKI_FILE_MAX);
				goto out;
			}
			cap = cap * 2 > PKI_FILE_MAX ? PKI_FILE_MAX : cap * 2;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				ciel_err_set(err, CIEL_ENOMEM, "read `%s`: out of memory", path);
				goto out;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "read `%s`", path);
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	ret = 0;
out:
	if (buf) {
		explicit_bzero(buf, n);
		free(buf);
	}
	close(fd);
	return ret;
}

static int check_private_mode(const char *path, struct ciel_err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return ciel_err_sys(err, errno == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, errno,
				    "stat `%s`", path);
	if (st.st_mode & 077)
		return ciel_err_set(
		    err, CIEL_EPERM,
		    "private key `%s` is accessible by group or others (mode %04o); "
		    "chmod 600 it",
		    path, (unsigned)(st.st_mode & 07777));
	return 0;
}

static EVP_PKEY *load_key(const char *path, struct ciel_err *err)
{
	EVP_PKEY *key = NULL;
	char *pem;
	size_t len;
	BIO *bio;

	if (check_private_mode(path, err) < 0 || pki_read_file(path, &pem, &len, err) < 0)
		return NULL;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio)
		key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (!key)
		ossl_err(err, CIEL_EINVAL, "read private key `%s`", path);
	BIO_free(bio);
	explicit_bzero(pem, len);
	free(pem);
	return key;
}

static X509 *load_cert(const char *path, struct ciel_err *err)
{
	X509 *cert = NULL;
	char *pem;
	size_t len;
	BIO *bio;

	if (pki_read_file(path, &pem, &len, err) < 0)
		return NULL;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio)
		cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!cert)
		ossl_err(err, CIEL_EINVAL, "read certificate `%s`", path);
	BIO_free(bio);
	free(pem);
	return cert;
}

/* PEM-encode key (PKCS#8, unencrypted) or cert and write it atomically. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *cert, int replace, struct ciel_err *err)
{
	BIO *bio = BIO_new(key ? BIO_s_secmem() : BIO_s_mem());
	char *data;
	long len;
	int ret = -1;

	if (!bio)
		return ossl_err(err, CIEL_ENOMEM, "write `%s`", path);
	if (key ? !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
		: !PEM_write_bio_X509(bio, cert)) {
		ossl_err(err, CIEL_EINTERNAL, "encode `%s`", path);
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	if (len <= 0) {
		ossl_err(err, CIEL_EINTERNAL, "encode `%s`", path);
		goto out;
	}
	ret = write_atomic(path, data, (size_t)len, key ? 0600 : 0644, replace, err);
out:
	BIO_free(bio);
	return ret;
}

static EVP_PKEY *ec_keygen(struct ciel_err *err)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	if (!key)
		ossl_err(err, CIEL_EINTERNAL, "generate EC P-256 key");
	return key;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value, struct ciel_err *err)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = ext && X509_add_ext(x, ext, -1);

	X509_EXTENSION_free(ext);
	if (!ok)
		return ossl_err(err, CIEL_EINTERNAL, "add extension %s=%s", OBJ_nid2sn(nid), value);
	return 0;
}

static int set_serial(X509 *x, struct ciel_err *err)
{
	unsigned char rnd[16];
	BIGNUM *bn;
	int ok;

	do {
		if (enc_random(rnd, sizeof(rnd), err) < 0)
			return -1;
		rnd[0] &= 0x7f; /* serials are positive INTEGERs */
		bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
		if (!bn)
			return ossl_err(err, CIEL_ENOMEM, "serial number");
		if (BN_is_zero(bn)) {
			BN_free(bn);
			bn = NULL;
		}
	} while (!bn);
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : ossl_err(err, CIEL_EINTERNAL, "serial number");
}

/*
 * A v3 certificate for pub named cn, valid from a few minutes ago for days,
 * issued by issuer (NULL: self-signed) and signed with sign_key. Extensions
 * are added by the caller through the returned context before signing.
 */
static X509 *cert_new(EVP_PKEY *pub, const char *cn, X509 *issuer, int days, X509V3_CTX *v3,
		      struct ciel_err *err)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();

	if (!x || !name) {
		ossl_err(err, CIEL_ENOMEM, "new certificate");
		goto fail;
	}
	if (set_serial(x, err) < 0)
		goto fail;
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"ciel", -1,
					-1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					-1, 0) ||
	    !X509_set_subject_name(x, name) ||
	    !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_S) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) || !X509_set_pubkey(x, pub)) {
		ossl_err(err, CIEL_EINTERNAL, "build certificate for `%s`", cn);
		goto fail;
	}
	X509V3_set_ctx(v3, issuer ? issuer : x, x, NULL, NULL, 0);
	X509_NAME_free(name);
	return x;
fail:
	X509_NAME_free(name);
	X509_free(x);
	return NULL;
}

static int valid_region_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > REGION_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

static int ensure_dir(const char *dir, struct ciel_err *err)
{
	struct stat st;

	if (mkdir(dir, 0700) == 0 || errno == EEXIST) {
		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		return ciel_err_set(err, CIEL_EINVAL, "`%s` is not a directory", dir);
	}
	return ciel_err_sys(err, CIEL_EIO, errno, "create directory `%s`", dir);
}

int pki_ensure_ca(const char *dir, const char *region_name, struct ciel_err *err)
{
	char cert_path[PATH_MAX], key_path[PATH_MAX], cn[80];
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509V3_CTX v3;
	int have_cert, have_key, ret = -1;

	if (!valid_region_name(region_name))
		return ciel_err_field(err, CIEL_EINVAL, "region",
				      "region: name must be 1-%d printable characters",
				      REGION_NAME_MAX);
	if (ensure_dir(dir, err) < 0 || join(cert_path, sizeof(cert_path), dir, "ca.pem", err) ||
	    join(key_path, sizeof(key_path), dir, "ca.key", err))
		return -1;
	have_cert = exists(cert_path, err);
	have_key = exists(key_path, err);
	if (have_cert < 0 || have_key < 0)
		return -1;
	if (have_cert && have_key)
		return 0;
	if (have_cert || have_key)
		/* a crash between the two writes leaves the key alone: start over */
		log_warn("replacing incomplete region ca dir=%s has_cert=%d has_key=%d", dir,
			 have_cert, have_key);

	snprintf(cn, sizeof(cn), "ciel CA %s", region_name);
	key = ec_keygen(err);
	if (!key)
		goto out;
	x = cert_new(key, cn, NULL, CA_DAYS, &v3, err);
	if (!x || add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE", err) ||
	    add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign", err) ||
	    add_ext(x, &v3, NID_subject_key_identifier, "hash", err) ||
	    add_ext(x, &v3, NID_authority_key_identifier, "keyid:always", err))
		goto out;
	if (!X509_sign(x, key, EVP_sha256())) {
		ossl_err(err, CIEL_EINTERNAL, "sign region CA certificate");
		goto out;
	}
	/* key first: a cert on disk always has its key next to it */
	if (write_pem(key_path, key, NULL, 1, err) < 0 || write_pem(cert_path, NULL, x, 1, err) < 0)
		goto out;
	log_info("created region ca dir=%s region=%s", dir, region_name);
	ret = 0;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return ret;
}

/* A requested SAN as it appears in a certificate. */
struct san {
	int type; /* GEN_DNS or GEN_IPADD */
	unsigned char ip[16];
	size_t len;
	char dns[254];
};

static int san_parse(const char *s, struct san *out, struct ciel_err *err)
{
	char buf[64];
	size_t n = strlen(s);

	memset(out, 0, sizeof(*out));
	/* "[::1]" is how an IPv6 address is written next to a port; accept it */
	if (n >= 2 && n < sizeof(buf) + 2 && s[0] == '[' && s[n - 1] == ']') {
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
		if (inet_pton(AF_INET6, buf, out->ip) == 1)
			goto v6;
	}
	if (inet_pton(AF_INET, s, out->ip) == 1) {
		out->type = GEN_IPADD;
		out->len = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->ip) == 1)
		goto v6;
	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		goto bad;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_' || (c == '*' && i == 0)))
			goto bad;
	}
	out->type = GEN_DNS;
	memcpy(out->dns, s, n + 1);
	return 0;
v6:
	out->type = GEN_IPADD;
	out->len = 16;
	return 0;
bad:
	return ciel_err_field(err, CIEL_EINVAL, "san",
			      "san: `%.64s` is neither an IP address nor a DNS name", s);
}

static int cert_has_san(X509 *cert, const struct san *want)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	int found = 0;

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *v;

		if (g->type != want->type)
			continue;
		v = want->type == GEN_DNS ? g->d.dNSName : g->d.iPAddress;
		if (want->type == GEN_IPADD)
			found = (size_t)ASN1_STRING_length(v) == want->len &&
				!memcmp(ASN1_STRING_get0_data(v), want->ip, want->len);
		else
			found = (size_t)ASN1_STRING_length(v) == strlen(want->dns) &&
				!strncasecmp((const char *)ASN1_STRING_get0_data(v), want->dns,
					     strlen(want->dns));
	}
	GENERAL_NAMES_free(gens);
	return found;
}

static int add_sans(X509 *x, const struct san *sans, size_t n, struct ciel_err *err)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	int ret = -1;

	if (!gens)
		return ossl_err(err, CIEL_ENOMEM, "subjectAltName");
	for (size_t i = 0; i < n; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_STRING *v =
		    sans[i].type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
		int ok = g && v &&
			 (sans[i].type == GEN_DNS
			      ? ASN1_STRING_set(v, sans[i].dns, (int)strlen(sans[i].dns))
			      : ASN1_OCTET_STRING_set(v, sans[i].ip, (int)sans[i].len));

		if (ok) {
			GENERAL_NAME_set0_value(g, sans[i].type, v);
			v = NULL;
			ok = sk_GENERAL_NAME_push(gens, g) > 0;
			if (ok)
				g = NULL;
		}
		ASN1_STRING_free(v);
		GENERAL_NAME_free(g);
		if (!ok) {
			ossl_err(err, CIEL_ENOMEM, "subjectAltName");
			goto out;
		}
	}
	if (!X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT)) {
		ossl_err(err, CIEL_EINTERNAL, "add subjectAltName");
		goto out;
	}
	ret = 0;
out:
	GENERAL_NAMES_free(gens);
	return ret;
}

/* Why the server cert at hand must be replaced, or NULL if it is fine. */
static const char *server_cert_stale(const char *cert_path, const char *key_path, X509 *ca,
				     const struct san *sans, size_t n_sans)
{
	const char *why = NULL;
	EVP_PKEY *ca_pub = X509_get0_pubkey(ca), *key = NULL;
	X509 *cert = NULL;
	time_t horizon = time(NULL) + RENEW_BEFORE_S;

	cert = load_cert(cert_path, NULL);
	if (!cert) {
		why = "unreadable certificate";
		goto out;
	}
	key = load_key(key_path, NULL);
	if (!key) {
		why = "unreadable or exposed key";
		goto out;
	}
	if (X509_cmp_time(X509_get0_notAfter(cert), &horizon) <= 0)
		why = "expires within 30 days";
	else if (X509_check_private_key(cert, key) != 1)
		why = "key does not match certificate";
	else if (!ca_pub || X509_verify(cert, ca_pub) != 1)
		why = "not signed by the current ca";
	for (size_t i = 0; !why && i < n_sans; i++)
		if (!cert_has_san(cert, &sans[i]))
			why = "missing a requested name";
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	X509_free(cert);
	return why;
}

int pki_ensure_server_cert(const char *dir, const char *const *sans, size_t n_sans,
			   struct ciel_err *err)
{
	char cert_path[PATH_MAX], key_path[PATH_MAX], ca_path[PATH_MAX], ca_key_path[PATH_MAX];
	char cn[65];
	struct san *want = NULL;
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *x = NULL;
	const char *why = "missing";
	X509V3_CTX v3;
	int have_cert, have_key, ret = -1;

	if (n_sans == 0 || n_sans > MAX_SANS)
		return ciel_err_field(err, CIEL_EINVAL, "san", "san: need 1-%d names, got %zu",
				      MAX_SANS, n_sans);
	if (join(cert_path, sizeof(cert_path), dir, "server.pem", err) ||
	    join(key_path, sizeof(key_path), dir, "server.key", err) ||
	    join(ca_path, sizeof(ca_path), dir, "ca.pem", err) ||
	    join(ca_key_path, sizeof(ca_key_path), dir, "ca.key", err))
		return -1;
	want = calloc(n_sans, sizeof(*want));
	if (!want)
		return ciel_err_set(err, CIEL_ENOMEM, "server cert: out of memory");
	for (size_t i = 0; i < n_sans; i++)
		if (san_parse(sans[i], &want[i], err) < 0)
			goto out;
	ca = load_cert(ca_path, err);
	if (!ca) {
		ciel_err_prefix(err, "region ca: ");
		goto out;
	}
	have_cert = exists(cert_path, err);
	have_key = exists(key_path, err);
	if (have_cert < 0 || have_key < 0)
		goto out;
	if (have_cert && have_key) {
		why = server_cert_stale(cert_path, key_path, ca, want, n_sans);
		if (!why) {
			ret = 0;
			goto out;
		}
	}
	ca_key = load_key(ca_key_path, err);
	if (!ca_key) {
		ciel_err_prefix(err, "region ca: ");
		goto out;
	}
	if (X509_check_private_key(ca, ca_key) != 1) {
		ossl_err(err, CIEL_EINVAL, "region ca: ca.key does not match ca.pem in `%s`", dir);
		goto out;
	}
	/* the CN is informational (clients match SANs); it must fit 64 chars */
	snprintf(cn, sizeof(cn), "%s", sans[0]);
	key = ec_keygen(err);
	if (!key)
		goto out;
	x = cert_new(key, cn, ca, SERVER_DAYS, &v3, err);
	if (!x || add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE", err) ||
	    add_ext(x, &v3, NID_key_usage, "critical,digitalSignature", err) ||
	    add_ext(x, &v3, NID_ext_key_usage, "serverAuth", err) ||
	    add_ext(x, &v3, NID_subject_key_identifier, "hash", err) ||
	    add_ext(x, &v3, NID_authority_key_identifier, "keyid:always", err) ||
	    add_sans(x, want, n_sans, err))
		goto out;
	if (!X509_sign(x, ca_key, EVP_sha256())) {
		ossl_err(err, CIEL_EINTERNAL, "sign server certificate");
		goto out;
	}
	/*
	 * Key first, then cert: between the two renames the pair does not
	 * match, which the next start detects and repairs.
	 */
	if (write_pem(key_path, key, NULL, 1, err) < 0 || write_pem(cert_path, NULL, x, 1, err) < 0)
		goto out;
	log_info("issued server certificate dir=%s reason=\"%s\" names=%zu", dir, why, n_sans);
	ret = 0;
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	free(want);
	return ret;
}

static int is_ed25519(EVP_PKEY *key, struct ciel_err *err)
{
	if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519)
		return ciel_err_set(err, CIEL_EINVAL, "not an Ed25519 key");
	return 0;
}

int pki_ed25519_load_or_create(const char *path, struct evp_pkey_st **out, struct ciel_err *err)
{
	EVP_PKEY *key = NULL;
	int have, w;

	*out = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		have = exists(path, err);
		if (have < 0)
			return -1;
		if (have) {
			key = load_key(path, err);
			if (!key)
				return -1;
			if (is_ed25519(key, err) < 0) {
				EVP_PKEY_free(key);
				return ciel_err_set(err, CIEL_EINVAL, "`%s` is not an Ed25519 key",
						    path);
			}
			*out = key;
			return 0;
		}
		key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		if (!key)
			return ossl_err(err, CIEL_EINTERNAL, "generate Ed25519 key");
		w = write_pem(path, key, NULL, 0, err);
		if (w == 1) {
			log_info("created ed25519 key path=%s", path);
			*out = key;
			return 0;
		}
		EVP_PKEY_free(key);
		if (w < 0)
			return -1;
		/* another process created it first: use theirs */
	}
	return ciel_err_set(err, CIEL_EIO, "`%s` appears and disappears", path);
}

int pki_ed25519_sign(struct evp_pkey_st *key, const void *msg, size_t n, unsigned char sig[64],
		     struct ciel_err *err)
{
	static const unsigned char empty;
	EVP_MD_CTX *ctx;
	size_t len = 64;
	int ok;

	if (is_ed25519(key, err) < 0)
		return -1;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return ossl_err(err, CIEL_ENOMEM, "ed25519 sign");
	ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
	     EVP_DigestSign(ctx, sig, &len, n ? msg : &empty, n) == 1 && len == 64;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return ossl_err(err, CIEL_EINTERNAL, "ed25519 sign");
	return 0;
}

int pki_ed25519_verify(struct evp_pkey_st *key, const void *msg, size_t n,
		       const unsigned char sig[64], struct ciel_err *err)
{
	static const unsigned char empty;
	EVP_MD_CTX *ctx;
	int ok;

	if (is_ed25519(key, err) < 0)
		return -1;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return ossl_err(err, CIEL_ENOMEM, "ed25519 verify");
	ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
	     EVP_DigestVerify(ctx, sig, 64, n ? msg : &empty, n) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (!ok)
		return ciel_err_set(err, CIEL_EPERM, "ed25519 signature does not verify");
	return 0;
}

int pki_ed25519_public(struct evp_pkey_st *key, unsigned char pub[32], struct ciel_err *err)
{
	size_t len = 32;

	if (is_ed25519(key, err) < 0)
		return -1;
	if (EVP_PKEY_get_raw_public_key(key, pub, &len) != 1 || len != 32)
		return ossl_err(err, CIEL_EINTERNAL, "ed25519 public key");
	return 0;
}
