/*
 * Unit tests for lib/crypto/enc.c (encodings against RFC vectors, SHA-256,
 * HMAC-SHA256 RFC 4231, randomness helpers) and lib/crypto/seal.c (AES-GCM
 * sealing: round trip, every kind of tampering, malformed input, the key file
 * and its permissions, concurrent creation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto/enc.h"
#include "crypto/seal.h"

static void test_hex(void **state)
{
	static const unsigned char bytes[] = {0x00, 0x0a, 0xff, 0x7f, 0x80};
	unsigned char back[5];
	char hex[11];

	(void)state;
	enc_hex(bytes, sizeof(bytes), hex);
	assert_string_equal(hex, "000aff7f80");
	assert_int_equal(enc_unhex(hex, back, sizeof(back)), 0);
	assert_memory_equal(back, bytes, sizeof(bytes));
	assert_int_equal(enc_unhex("000AFF7F80", back, sizeof(back)), 0);
	assert_memory_equal(back, bytes, sizeof(bytes));
	assert_int_equal(enc_unhex("000aff7f8", back, sizeof(back)), -1); /* short */
	/* exactly 2n characters are read, so an escape can be decoded in place */
	memset(back, 0, sizeof(back));
	assert_int_equal(enc_unhex("000aff7f80zz", back, sizeof(back)), 0);
	assert_memory_equal(back, bytes, sizeof(bytes));
	assert_int_equal(enc_unhex("41/rest", back, 1), 0);
	assert_int_equal(back[0], 0x41);
	assert_int_equal(enc_unhex("000aff7f8g", back, sizeof(back)), -1);
	assert_int_equal(enc_unhex(" 00aff7f80", back, sizeof(back)), -1);
	assert_int_equal(enc_unhex("", back, 0), 0);
}

static void test_b64_rfc4648(void **state)
{
	/* RFC 4648 section 10 */
	static const char *const vec[][2] = {
	    {"", ""},
	    {"f", "Zg=="},
	    {"fo", "Zm8="},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="},
	    {"fooba", "Zm9vYmE="},
	    {"foobar", "Zm9vYmFy"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		size_t n = strlen(vec[i][0]), len;
		char *e = enc_b64((const unsigned char *)vec[i][0], n);
		char *u = enc_b64url((const unsigned char *)vec[i][0], n);
		unsigned char *d;

		assert_non_null(e);
		assert_string_equal(e, vec[i][1]);
		/* url form is the same here, minus the padding */
		assert_int_equal(strlen(u), strcspn(vec[i][1], "="));
		assert_memory_equal(u, vec[i][1], strlen(u));
		assert_int_equal(enc_unb64(e, &d, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(d, vec[i][0], n);
		free(d);
		assert_int_equal(enc_unb64(u, &d, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(d, vec[i][0], n);
		free(d);
		free(e);
		free(u);
	}
}

static void test_b64_alphabets(void **state)
{
	static const unsigned char bytes[] = {0xfb, 0xff, 0xbf, 0x3e};
	static const char *const bad[] = {
	    "Zg=",	"Z",	"Zh==", "Zm9=",	  "Zm9v YmFy", "Zm9v=",
	    "Zg==Zg==", "====", "Z===", "Zm9v\n", "Zm*v",
	};
	unsigned char *d, all[256];
	char *e, *u;
	size_t len;

	(void)state;
	e = enc_b64(bytes, sizeof(bytes));
	u = enc_b64url(bytes, sizeof(bytes));
	assert_string_equal(e, "+/+/Pg==");
	assert_string_equal(u, "-_-_Pg");
	assert_int_equal(enc_unb64("-_-_Pg==", &d, &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(d, bytes, 4);
	free(d);
	free(e);
	free(u);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = NULL;
		if (enc_unb64(bad[i], &d, &len) != -1)
			fail_msg("accepted '%s'", bad[i]);
		assert_null(d);
	}
	/* every byte value and length survives both encodings */
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)(255 - i);
	for (size_t n = 0; n <= sizeof(all); n += 1 + n / 8) {
		e = enc_b64(all, n);
		u = enc_b64url(all, n);
		assert_int_equal(enc_unb64(e, &d, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(d, all, n);
		free(d);
		assert_int_equal(enc_unb64(u, &d, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(d, all, n);
		assert_null(strpbrk(u, "+/="));
		free(d);
		free(e);
		free(u);
	}
}

static void test_hashes(void **state)
{
	unsigned char mac[32];
	char hex[65];

	(void)state;
	enc_sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	enc_sha256_hex(NULL, 0, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* RFC 4231 test case 2 */
	enc_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	enc_hex(mac, sizeof(mac), hex);
	assert_string_equal(hex,
			    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* RFC 4231 test case 1: 20 bytes of 0x0b, "Hi There" */
	{
		unsigned char key[20];

		memset(key, 0x0b, sizeof(key));
		enc_hmac_sha256(key, sizeof(key), "Hi There", 8, mac);
		enc_hex(mac, sizeof(mac), hex);
		assert_string_equal(
		    hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	}
	assert_true(enc_equal("abcd", "abcd", 4));
	assert_false(enc_equal("abcd", "abce", 4));
	assert_true(enc_equal("x", "y", 0));
}

static void test_random(void **state)
{
	unsigned char a[32] = {0}, b[32] = {0}, zero[32] = {0};
	char id[19], id2[19], small[10];
	struct ciel_err err = {0};

	(void)state;
	assert_int_equal(enc_random(a, sizeof(a), &err), 0);
	assert_int_equal(enc_random(b, sizeof(b), &err), 0);
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(enc_random_id("CK", 16, id, sizeof(id), &err), 0);
	assert_int_equal(enc_random_id("CK", 16, id2, sizeof(id2), &err), 0);
	assert_int_equal(strlen(id), 18);
	assert_memory_equal(id, "CK", 2);
	assert_int_equal(strspn(id + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 16);
	assert_string_not_equal(id, id2);
	assert_int_equal(enc_random_id("CK", 8, small, sizeof(small), &err), -1);
	assert_int_equal(enc_random_id("CK", 7, small, sizeof(small), &err), 0);
	assert_int_equal(strlen(small), 9);
}

static unsigned char key1[SEAL_KEY_LEN], key2[SEAL_KEY_LEN];

static int setup_keys(void **state)
{
	(void)state;
	for (int i = 0; i < SEAL_KEY_LEN; i++) {
		key1[i] = (unsigned char)i;
		key2[i] = (unsigned char)i;
	}
	key2[31] ^= 1;
	return 0;
}

static void test_seal_round_trip(void **state)
{
	static const char secret[] = "sk-live-\0with-nul";
	struct ciel_err err = {0};
	unsigned char *p;
	char *s, *s2;
	size_t n;

	(void)state;
	s = seal_encrypt(key1, secret, sizeof(secret), "/tenants/a/keys/k1", &err);
	assert_non_null(s);
	assert_memory_equal(s, "v1.", 3);
	assert_null(strpbrk(s + 3, "+/="));
	/* 12 nonce + 18 plaintext + 16 tag = 46 bytes -> 62 base64url chars */
	assert_int_equal(strlen(s), 3 + 62);
	assert_int_equal(seal_decrypt(key1, s, "/tenants/a/keys/k1", &p, &n, &err), 0);
	assert_int_equal(n, sizeof(secret));
	assert_memory_equal(p, secret, sizeof(secret));
	assert_int_equal(p[n], '\0');
	free(p);
	/* a fresh nonce every time */
	s2 = seal_encrypt(key1, secret, sizeof(secret), "/tenants/a/keys/k1", &err);
	assert_string_not_equal(s, s2);
	free(s2);
	free(s);
	/* empty plaintext and NULL aad (same as "") */
	s = seal_encrypt(key1, NULL, 0, NULL, &err);
	assert_non_null(s);
	assert_int_equal(seal_decrypt(key1, s, "", &p, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(p[0], '\0');
	free(p);
	free(s);
}

static void expect_decrypt_fails(const unsigned char *key, const char *sealed, const char *aad,
				 int code)
{
	struct ciel_err err = {0};
	unsigned char *p = (unsigned char *)"sentinel";
	size_t n = 99;

	assert_int_equal(seal_decrypt(key, sealed, aad, &p, &n, &err), -1);
	assert_null(p);
	assert_int_equal(n, 0);
	if (err.code != code)
		fail_msg("'%s': code %d (%s), expected %d", sealed, err.code, err.msg, code);
}

static void test_seal_tamper(void **state)
{
	struct ciel_err err = {0};
	unsigned char *raw;
	size_t raw_len;
	char *s;

	(void)state;
	s = seal_encrypt(key1, "join-token", 10, "ctx", &err);
	assert_non_null(s);
	expect_decrypt_fails(key2, s, "ctx", CIEL_EPERM);
	expect_decrypt_fails(key1, s, "ctx2", CIEL_EPERM);
	expect_decrypt_fails(key1, s, "", CIEL_EPERM);
	/* flip every bit position of every byte: nonce, ciphertext and tag are all covered */
	assert_int_equal(enc_unb64(s + 3, &raw, &raw_len), 0);
	assert_int_equal(raw_len, 12 + 10 + 16);
	for (size_t i = 0; i < raw_len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			char *b64, sealed[128];

			raw[i] ^= (unsigned char)(1u << bit);
			b64 = enc_b64url(raw, raw_len);
			snprintf(sealed, sizeof(sealed), "v1.%s", b64);
			expect_decrypt_fails(key1, sealed, "ctx", CIEL_EPERM);
			free(b64);
			raw[i] ^= (unsigned char)(1u << bit);
		}
	}
	/* truncating the tag or appending a byte breaks it too */
	{
		char *b64, sealed[128];

		b64 = enc_b64url(raw, raw_len - 1);
		snprintf(sealed, sizeof(sealed), "v1.%s", b64);
		expect_decrypt_fails(key1, sealed, "ctx", CIEL_EPERM);
		free(b64);
	}
	free(raw);
	free(s);
}

static void test_seal_malformed(void **state)
{
	static const char *const bad[] = {
	    "",
	    "v1",
	    "v1.",
	    "v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "V1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "v1.AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* padding is not base64url as written */
	    "v1.AAAA+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* nor is the standard alphabet */
	    "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",	   /* 26 bytes: shorter than nonce+tag */
	    "v1.A",
	    " v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_decrypt_fails(key1, bad[i], "", CIEL_EINVAL);
	expect_decrypt_fails(key1, NULL, "", CIEL_EINVAL);
}

static void rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_seal_key_file(void **state)
{
	char dir[] = "/tmp/ciel-test-seal-XXXXXX", path[256];
	unsigned char k[SEAL_KEY_LEN], k2[SEAL_KEY_LEN], zero[SEAL_KEY_LEN] = {0};
	struct ciel_err err = {0};
	struct stat st;
	int fd;

	(void)state;
	umask(022);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/master.key", dir);
	assert_int_equal(seal_key_load_or_create(path, k, &err), 0);
	assert_memory_not_equal(k, zero, sizeof(k));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, SEAL_KEY_LEN);
	assert_int_equal(count_entries(dir), 1); /* no temporary left behind */
	assert_int_equal(seal_key_load_or_create(path, k2, &err), 0);
	assert_memory_equal(k, k2, sizeof(k));

	/* readable by others: refused, and the key is not handed out */
	assert_int_equal(chmod(path, 0644), 0);
	memset(k2, 0xaa, sizeof(k2));
	assert_int_equal(seal_key_load_or_create(path, k2, &err), -1);
	assert_int_equal(err.code, CIEL_EPERM);
	assert_memory_not_equal(k, k2, sizeof(k));
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(seal_key_load_or_create(path, k2, &err), -1);
	assert_int_equal(err.code, CIEL_EPERM);
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(seal_key_load_or_create(path, k2, &err), 0);
	assert_memory_equal(k, k2, sizeof(k));

	/* wrong size */
	snprintf(path, sizeof(path), "%s/short.key", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, k, 31), 31);
	close(fd);
	assert_int_equal(seal_key_load_or_create(path, k2, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);

	/* a directory that does not exist */
	snprintf(path, sizeof(path), "%s/missing/master.key", dir);
	assert_int_equal(seal_key_load_or_create(path, k2, &err), -1);
	assert_int_equal(err.code, CIEL_EIO);
	rm_rf(dir);
}

/* Several processes racing to create the same key all end up with one key. */
static void test_seal_key_race(void **state)
{
	char dir[] = "/tmp/ciel-test-seal-XXXXXX", path[256];
	unsigned char keys[6][SEAL_KEY_LEN];
	int pipes[6][2];
	pid_t pids[6];

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/race.key", dir);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(pipe(pipes[i]), 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			unsigned char k[SEAL_KEY_LEN];
			int ok = seal_key_load_or_create(path, k, NULL) == 0;

			if (!ok || write(pipes[i][1], k, sizeof(k)) != (ssize_t)sizeof(k))
				_exit(1);
			_exit(0);
		}
		close(pipes[i][1]);
	}
	for (int i = 0; i < 6; i++) {
		int status;

		assert_int_equal(read(pipes[i][0], keys[i], SEAL_KEY_LEN), SEAL_KEY_LEN);
		close(pipes[i][0]);
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		assert_memory_equal(keys[i], keys[0], SEAL_KEY_LEN);
	}
	assert_int_equal(count_entries(dir), 1);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hex),		  cmocka_unit_test(test_b64_rfc4648),
	    cmocka_unit_test(test_b64_alphabets), cmocka_unit_test(test_hashes),
	    cmocka_unit_test(test_random),	  cmocka_unit_test(test_seal_round_trip),
	    cmocka_unit_test(test_seal_tamper),	  cmocka_unit_test(test_seal_malformed),
	    cmocka_unit_test(test_seal_key_file), cmocka_unit_test(test_seal_key_race),
	};

	return cmocka_run_group_tests(tests, setup_keys, NULL);
}
