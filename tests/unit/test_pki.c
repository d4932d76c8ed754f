/*
 * Unit tests for lib/crypto/pki.c: the region CA and server certificate are
 * checked with OpenSSL's own verifier (chain, purpose, SANs, extensions),
 * files keep their bytes across idempotent calls and are replaced when stale;
 * Ed25519 is checked against RFC 8032 and for tampering.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/enc.h"
#include "crypto/pki.h"

static char dir[] = "/tmp/ciel-test-pki-XXXXXX";

static int setup(void **state)
{
	(void)state;
	umask(022);
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void path_of(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

static X509 *read_cert(const char *name)
{
	char path[256];
	X509 *x;
	FILE *f;

	path_of(path, sizeof(path), name);
	f = fopen(path, "r");
	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

static char *slurp(const char *name)
{
	char path[256], *buf;
	size_t len;

	path_of(path, sizeof(path), name);
	assert_int_equal(pki_read_file(path, &buf, &len, NULL), 0);
	assert_int_equal(strlen(buf), len);
	return buf;
}

static mode_t mode_of(const char *name)
{
	char path[256];
	struct stat st;

	path_of(path, sizeof(path), name);
	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Days from now until the certificate's notAfter. */
static int days_left(X509 *x)
{
	int days = 0, secs = 0;

	assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)), 1);
	return days;
}

static int verify_chain(X509 *ca, X509 *leaf)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok;

	assert_int_equal(X509_STORE_add_cert(store, ca), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
	assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
	ok = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return ok;
}

static const char *const sans[] = {"localhost", "127.0.0.1", "::1", "ciel.example"};

static void test_ca_and_server_cert(void **state)
{
	struct ciel_err err = {0};
	const BIGNUM *serial_bn;
	BIGNUM *serial;
	X509 *ca, *srv;
	EVP_PKEY *pub;

	(void)state;
	assert_int_equal(pki_ensure_ca(dir, "eu-test-1", &err), 0);
	assert_int_equal(mode_of("ca.key"), 0600);
	assert_int_equal(mode_of("ca.pem"), 0644);
	ca = read_cert("ca.pem");
	pub = X509_get0_pubkey(ca);
	assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
	assert_int_equal(EVP_PKEY_get_bits(pub), 256);
	assert_int_equal(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_verify(ca, pub), 1); /* self-signed */
	assert_true(X509_check_ca(ca) >= 1);
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_int_equal(X509_EXTENSION_get_critical(
			     X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1))),
			 1);
	assert_in_range(days_left(ca), 3649, 3650);

	assert_int_equal(pki_ensure_server_cert(dir, sans, 4, &err), 0);
	assert_int_equal(mode_of("server.key"), 0600);
	srv = read_cert("server.pem");
	assert_int_equal(verify_chain(ca, srv), 1);
	assert_int_equal(X509_get_signature_nid(srv), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_check_ca(srv), 0);
	assert_int_equal(X509_get_key_usage(srv), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(srv), XKU_SSL_SERVER);
	assert_in_range(days_left(srv), 364, 365);
	assert_int_equal(
	    X509_check_host(srv, "localhost", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL), 1);
	assert_int_equal(
	    X509_check_host(srv, "ciel.example", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL), 1);
	assert_int_equal(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(srv, "::1", 0), 1);
	assert_int_not_equal(X509_check_host(srv, "evil.example", 0, 0, NULL), 1);
	assert_int_not_equal(X509_check_ip_asc(srv, "10.0.0.1", 0), 1);
	/* the IP literals went in as IP SANs, not as DNS names */
	assert_int_not_equal(
	    X509_check_host(srv, "127.0.0.1", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL), 1);
	/* random positive serial of about 128 bits */
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(srv), NULL);
	serial_bn = serial;
	assert_false(BN_is_negative(serial_bn));
	assert_in_range(BN_num_bits(serial_bn), 100, 127);
	BN_free(serial);
	/* the key on disk is the certificate's */
	{
		char path[256];
		EVP_PKEY *k;
		FILE *f;

		path_of(path, sizeof(path), "server.key");
		f = fopen(path, "r");
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		assert_non_null(k);
		assert_int_equal(X509_check_private_key(srv, k), 1);
		EVP_PKEY_free(k);
	}
	X509_free(srv);
	X509_free(ca);
}

static void test_idempotent_and_reissue(void **state)
{
	const char *const more[] = {"localhost", "127.0.0.1", "::1", "ciel.example", "10.1.2.3"};
	char *ca_pem, *ca_key, *srv_pem, *srv_key, *s;
	struct ciel_err err = {0};
	X509 *ca, *srv;

	(void)state;
	ca_pem = slurp("ca.pem");
	ca_key = slurp("ca.key");
	srv_pem = slurp("server.pem");
	srv_key = slurp("server.key");
	assert_int_equal(pki_ensure_ca(dir, "eu-test-1", &err), 0);
	/* same names, in another order and case: nothing to do */
	{
		const char *const again[] = {"CIEL.example", "::1", "localhost", "127.0.0.1"};

		assert_int_equal(pki_ensure_server_cert(dir, again, 4, &err), 0);
	}
	s = slurp("ca.pem");
	assert_string_equal(s, ca_pem);
	free(s);
	s = slurp("ca.key");
	assert_string_equal(s, ca_key);
	free(s);
	s = slurp("server.pem");
	assert_string_equal(s, srv_pem);
	free(s);
	s = slurp("server.key");
	assert_string_equal(s, srv_key);
	free(s);

	/* a new address: reissued, CA untouched */
	assert_int_equal(pki_ensure_server_cert(dir, more, 5, &err), 0);
	s = slurp("server.pem");
	assert_string_not_equal(s, srv_pem);
	free(s);
	s = slurp("ca.key");
	assert_string_equal(s, ca_key);
	free(s);
	ca = read_cert("ca.pem");
	srv = read_cert("server.pem");
	assert_int_equal(verify_chain(ca, srv), 1);
	assert_int_equal(X509_check_ip_asc(srv, "10.1.2.3", 0), 1);
	X509_free(srv);
	X509_free(ca);
	free(ca_pem);
	free(ca_key);
	free(srv_pem);
	free(srv_key);
}

/* Replace server.pem by a copy that expires in 10 days, signed by the CA. */
static void make_expiring(void)
{
	char path[256];
	EVP_PKEY *ca_key;
	X509 *srv;
	FILE *f;

	path_of(path, sizeof(path), "ca.key");
	f = fopen(path, "r");
	ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	srv = read_cert("server.pem");
	assert_non_null(X509_time_adj_ex(X509_getm_notAfter(srv), 10, 0, NULL));
	assert_true(X509_sign(srv, ca_key, EVP_sha256()) > 0);
	path_of(path, sizeof(path), "server.pem");
	f = fopen(path, "w");
	assert_int_equal(PEM_write_X509(f, srv), 1);
	fclose(f);
	X509_free(srv);
	EVP_PKEY_free(ca_key);
}

static void test_renewal_and_refusals(void **state)
{
	const char *const bad[] = {"localhost", "not a name"};
	const char *const newname[] = {"new.example"};
	struct ciel_err err = {0};
	char path[256], *before, *s;
	X509 *srv;

	(void)state;
	make_expiring();
	srv = read_cert("server.pem");
	assert_true(days_left(srv) <= 10);
	X509_free(srv);
	before = slurp("server.pem");
	assert_int_equal(pki_ensure_server_cert(dir, sans, 4, &err), 0);
	srv = read_cert("server.pem");
	assert_in_range(days_left(srv), 364, 365);
	X509_free(srv);
	s = slurp("server.pem");
	assert_string_not_equal(s, before);
	free(s);
	free(before);

	assert_int_equal(pki_ensure_server_cert(dir, bad, 2, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(pki_ensure_server_cert(dir, sans, 0, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(pki_ensure_ca(dir, "", &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(pki_ensure_server_cert("/nonexistent-ciel-dir", sans, 1, &err), -1);

	/* an exposed CA key is refused rather than used */
	path_of(path, sizeof(path), "ca.key");
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(pki_ensure_server_cert(dir, newname, 1, &err), -1);
	assert_int_equal(err.code, CIEL_EPERM);
	assert_int_equal(chmod(path, 0600), 0);

	/* a lone key (crash between the two writes) is replaced by a fresh pair */
	before = slurp("ca.key");
	path_of(path, sizeof(path), "ca.pem");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(pki_ensure_ca(dir, "eu-test-1", &err), 0);
	s = slurp("ca.key");
	assert_string_not_equal(s, before);
	free(s);
	free(before);
	/* and the server cert, no longer signed by this CA, follows */
	assert_int_equal(pki_ensure_server_cert(dir, sans, 4, &err), 0);
	{
		X509 *ca = read_cert("ca.pem");

		srv = read_cert("server.pem");
		assert_int_equal(verify_chain(ca, srv), 1);
		X509_free(ca);
		X509_free(srv);
	}
}

static void test_ed25519(void **state)
{
	static const char msg[] = "checkpoint 42 3f1a...";
	unsigned char sig[64], pub[32], pub2[32];
	struct ciel_err err = {0};
	EVP_PKEY *k, *k2, *pubk;
	char path[256];

	(void)state;
	path_of(path, sizeof(path), "audit.key");
	assert_int_equal(pki_ed25519_load_or_create(path, &k, &err), 0);
	assert_int_equal(mode_of("audit.key"), 0600);
	assert_int_equal(pki_ed25519_load_or_create(path, &k2, &err), 0);
	assert_int_equal(pki_ed25519_public(k, pub, &err), 0);
	assert_int_equal(pki_ed25519_public(k2, pub2, &err), 0);
	assert_memory_equal(pub, pub2, 32);

	assert_int_equal(pki_ed25519_sign(k, msg, sizeof(msg), sig, &err), 0);
	assert_int_equal(pki_ed25519_verify(k2, msg, sizeof(msg), sig, &err), 0);
	pubk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	assert_non_null(pubk);
	assert_int_equal(pki_ed25519_verify(pubk, msg, sizeof(msg), sig, &err), 0);
	for (size_t i = 0; i < sizeof(sig); i += 7) {
		sig[i] ^= 0x01;
		assert_int_equal(pki_ed25519_verify(pubk, msg, sizeof(msg), sig, &err), -1);
		assert_int_equal(err.code, CIEL_EPERM);
		sig[i] ^= 0x01;
	}
	assert_int_equal(pki_ed25519_verify(pubk, "checkpoint 43 3f1a...", sizeof(msg), sig, &err),
			 -1);
	assert_int_equal(err.code, CIEL_EPERM);
	/* a public-only key cannot sign */
	assert_int_equal(pki_ed25519_sign(pubk, msg, sizeof(msg), sig, &err), -1);
	EVP_PKEY_free(pubk);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k);

	/* exposed key file refused; an EC key is not an Ed25519 key */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(pki_ed25519_load_or_create(path, &k, &err), -1);
	assert_int_equal(err.code, CIEL_EPERM);
	assert_null(k);
	path_of(path, sizeof(path), "ca.key");
	assert_int_equal(pki_ed25519_load_or_create(path, &k, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
}

/* RFC 8032 section 7.1, TEST 1 (empty message). */
static void test_ed25519_rfc8032(void **state)
{
	unsigned char sk[32], pk[32], want[64], sig[64], pub[32];
	struct ciel_err err = {0};
	EVP_PKEY *k;

	(void)state;
	assert_int_equal(
	    enc_unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", sk, 32),
	    0);
	assert_int_equal(
	    enc_unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", pk, 32),
	    0);
	assert_int_equal(
	    enc_unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
		      "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
		      want, 64),
	    0);
	k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, 32);
	assert_non_null(k);
	assert_int_equal(pki_ed25519_public(k, pub, &err), 0);
	assert_memory_equal(pub, pk, 32);
	assert_int_equal(pki_ed25519_sign(k, NULL, 0, sig, &err), 0);
	assert_memory_equal(sig, want, 64);
	assert_int_equal(pki_ed25519_verify(k, NULL, 0, want, &err), 0);
	EVP_PKEY_free(k);
}

static void test_read_file(void **state)
{
	struct ciel_err err = {0};
	char path[256], *buf = (char *)1;
	size_t len = 7;
	FILE *f;

	(void)state;
	path_of(path, sizeof(path), "missing");
	assert_int_equal(pki_read_file(path, &buf, &len, &err), -1);
	assert_int_equal(err.code, CIEL_ENOTFOUND);
	assert_null(buf);
	path_of(path, sizeof(path), "small");
	f = fopen(path, "w");
	fputs("hello\n", f);
	fclose(f);
	assert_int_equal(pki_read_file(path, &buf, &len, &err), 0);
	assert_int_equal(len, 6);
	assert_string_equal(buf, "hello\n");
	free(buf);
	assert_int_equal(pki_read_file(dir, &buf, &len, &err), -1); /* a directory */
}

int main(void)
{
	/* order matters: later tests reuse the CA and certificate made earlier */
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ca_and_server_cert),
	    cmocka_unit_test(test_idempotent_and_reissue),
	    cmocka_unit_test(test_renewal_and_refusals),
	    cmocka_unit_test(test_ed25519),
	    cmocka_unit_test(test_ed25519_rfc8032),
	    cmocka_unit_test(test_read_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
