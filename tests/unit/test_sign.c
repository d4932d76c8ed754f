/*
 * Unit tests for lib/auth/sign.c: canonical form, a known-answer signature
 * computed with Python's hmac/hashlib for a fixed nonce, round trip and
 * tampering, the per-request nonce (fresh on every sign_client call, inside
 * the signature, strictly validated), the strict Authorization and date
 * parsers, and the replay cache (included as .c to reach its size and cap).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>

#include "auth/sign.c"

#define DATE "20261123T105500Z"
#define DATE_T                                     \
	((time_t)1795431300) /* python3 -c 'import \
				calendar;print(calendar.timegm((2026,11,23,10,55,0)))' */
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_canonical_literal(void **state)
{
	struct sign_request r = {
	    .method = "GET",
	    .path = "/v1/a%2fb/c%7Ed/sp ace/%E2%82%ac/",
	    .query = "z=last&a=b%20c&a=a&%41=upper&t=%7e&p=1+1&e=&flag&s=a/b?c=d",
	    .host = "ciel.example:8443",
	    .date = DATE,
	    .body_sha256_hex = EMPTY_SHA,
	};
	struct ciel_err err = {0};
	char *c = NULL;

	(void)state;
	assert_int_equal(sign_canonical(&r, &c, &err), 0);
	assert_string_equal(c, "GET\n"
			       "/v1/a%2Fb/c~d/sp%20ace/%E2%82%AC/\n"
			       "A=upper&a=a&a=b%20c&e=&flag=&p=1%2B1&s=a%2Fb%3Fc%3Dd&t=~&z=last\n"
			       "host:ciel.example:8443\n"
			       "x-ciel-content-sha256:" EMPTY_SHA "\n"
			       "x-ciel-date:" DATE "\n"
			       "\n"
			       "host;x-ciel-content-sha256;x-ciel-date\n" EMPTY_SHA);
	/* the nonce goes into the string to sign only: the canonical request ignores it */
	{
		char *d = NULL;

		r.nonce = "ffeeddccbbaa99887766554433221100";
		assert_int_equal(sign_canonical(&r, &d, &err), 0);
		assert_string_equal(d, c);
		free(d);
	}
	free(c);
}

static char *canon(const char *path, const char *query)
{
	/* the nonce is not part of the canonical request */
	struct sign_request r = {"GET", path, query, "h", DATE, EMPTY_SHA, NULL};
	char *c = NULL;

	assert_int_equal(sign_canonical(&r, &c, NULL), 0);
	return c;
}

static void test_canonical_equivalences(void **state)
{
	char *a, *b;

	(void)state;
	a = canon("/x/%7e", "k=%7E");
	b = canon("/x/~", "k=~");
	assert_string_equal(a, b);
	free(a);
	free(b);
	/* an encoded slash stays inside its segment */
	a = canon("/a%2Fb", NULL);
	b = canon("/a/b", NULL);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	/* '+' is literal, not a space */
	a = canon("/", "q=a+b");
	b = canon("/", "q=a%20b");
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	a = canon("", "");
	b = canon("/", NULL);
	assert_string_equal(a, b);
	assert_non_null(strstr(a, "GET\n/\n\nhost:h\n"));
	free(a);
	free(b);
}

struct reject_case {
	const char *method, *path, *query, *host, *date, *sha;
	const char *field;
};

static void test_canonical_rejects(void **state)
{
	char long_path[2100], many[64 * 4 + 8];
	const struct reject_case cases[] = {
	    {"GET", "/a%", NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", "/a%4", NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", "/a%zz", NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", "/a%4g/b", NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", "/a%00b", NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", "relative", NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", long_path, NULL, "h", DATE, EMPTY_SHA, "path"},
	    {"GET", "/", "a=%", "h", DATE, EMPTY_SHA, "query"},
	    {"GET", "/", "a%2=1", "h", DATE, EMPTY_SHA, "query"},
	    {"GET", "/", "a=%00", "h", DATE, EMPTY_SHA, "query"},
	    {"GET", "/", "a=1&&b=2", "h", DATE, EMPTY_SHA, "query"},
	    {"GET", "/", "a=1&", "h", DATE, EMPTY_SHA, "query"},
	    {"GET", "/", many, "h", DATE, EMPTY_SHA, "query"},
	    {"get", "/", NULL, "h", DATE, EMPTY_SHA, "method"},
	    {"GET\n/x", "/", NULL, "h", DATE, EMPTY_SHA, "method"},
	    {"GET", "/", NULL, "h\nx-ciel-date:x", DATE, EMPTY_SHA, "host"},
	    {"GET", "/", NULL, "", DATE, EMPTY_SHA, "host"},
	    {"GET", "/", NULL, "h", "2026-11-23T10:55:00Z", EMPTY_SHA, "x-ciel-date"},
	    {"GET", "/", NULL, "h", DATE,
	     "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
	     "x-ciel-content-sha256"},
	    {"GET", "/", NULL, "h", DATE, "abc", "x-ciel-content-sha256"},
	};
	size_t o = 0;

	(void)state;
	long_path[0] = '/';
	memset(long_path + 1, 'a', 2048);
	long_path[2049] = '\0';
	for (int i = 0; i < 65; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%sk=%d", i ? "&" : "", i % 10);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sign_request r = {
		    cases[i].method, cases[i].path, cases[i].query, cases[i].host, cases[i].date,
		    cases[i].sha,    NULL};
		struct ciel_err err = {0};
		char *c = (char *)1;

		if (sign_canonical(&r, &c, &err) != -1)
			fail_msg("case %zu (%s) accepted", i, cases[i].path);
		assert_null(c);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_string_equal(err.field, cases[i].field);
	}
	/* the limits themselves are accepted: 2048-byte path, 64 parameters */
	{
		struct sign_request r = {"GET", long_path, NULL, "h", DATE, EMPTY_SHA, NULL};
		char *c;

		long_path[2048] = '\0';
		assert_int_equal(sign_canonical(&r, &c, NULL), 0);
		free(c);
		many[strlen(many) - 4] = '\0'; /* drop "&k=4", the 65th */
		r.path = "/";
		r.query = many;
		assert_int_equal(sign_canonical(&r, &c, NULL), 0);
		free(c);
	}
}

/* clang-format off */
/*
 * Known answer, computed independently of this code (nonce fixed; the string
 * to sign is algo, date, scope, nonce, hex(SHA-256(canonical request))); the
 * one-liner is kept on one line so it can be pasted into a shell:
 * python3 -c 'import hmac,hashlib;b=b"{\"name\":\"web\"}";bh=hashlib.sha256(b).hexdigest();c="POST\n/v1/instances\na=1&b=2\nhost:ciel.example:8443\nx-ciel-content-sha256:"+bh+"\nx-ciel-date:20261123T105500Z\n\nhost;x-ciel-content-sha256;x-ciel-date\n"+bh;s="CIEL-HMAC-SHA256\n20261123T105500Z\nacme\n00112233445566778899aabbccddeeff\n"+hashlib.sha256(c.encode()).hexdigest();print(bh,hmac.new(b"s3cr3t-key",s.encode(),hashlib.sha256).hexdigest())'
 */
/* clang-format on */
#define KAT_BODY "{\"name\":\"web\"}"
#define KAT_BODY_SHA "447f02909facb4efb07be873f56f58789cdefad3830594f957cf2731e97f8b98"
#define KAT_NONCE "00112233445566778899aabbccddeeff"
#define KAT_SIG "2b4e6448d8cdf65a2ba2036b182ea5d401acaafa59c595525a8c36877b8baff7"
#define KAT_SECRET "s3cr3t-key"

#define KAT_AUTH                                                                 \
	"CIEL-HMAC-SHA256 Credential=AK0123/acme, "                              \
	"SignedHeaders=host;x-ciel-content-sha256;x-ciel-date, Nonce=" KAT_NONCE \
	", Signature=" KAT_SIG

static int is_lower_hex(const char *s, size_t n)
{
	return strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

static void test_known_answer(void **state)
{
	struct sign_request r = {"POST", "/v1/instances", "b=2&a=1", "ciel.example:8443",
				 DATE,	 KAT_BODY_SHA,	  KAT_NONCE};
	char sig[65], date[17], bsha[65], auth[512], want[512];
	struct sign_auth a;
	struct ciel_err err = {0};

	(void)state;
	assert_int_equal(sign_compute(&r, "acme", KAT_SECRET, strlen(KAT_SECRET), sig, &err), 0);
	assert_string_equal(sig, KAT_SIG);
	assert_int_equal(
	    sign_authorization("AK0123", "acme", KAT_NONCE, KAT_SIG, auth, sizeof(auth), &err), 0);
	assert_string_equal(auth, KAT_AUTH);

	/* sign_client draws its own nonce, so its header is checked against that nonce */
	assert_int_equal(sign_client("POST", "/v1/instances", "b=2&a=1", "ciel.example:8443",
				     KAT_BODY, strlen(KAT_BODY), "AK0123", "acme", KAT_SECRET,
				     strlen(KAT_SECRET), DATE_T, date, bsha, auth, sizeof(auth),
				     &err),
			 0);
	assert_string_equal(date, DATE);
	assert_string_equal(bsha, KAT_BODY_SHA);
	assert_int_equal(sign_parse_authorization(auth, &a, &err), 0);
	assert_true(is_lower_hex(a.nonce, 32));
	r.nonce = a.nonce;
	assert_int_equal(sign_compute(&r, "acme", KAT_SECRET, strlen(KAT_SECRET), sig, &err), 0);
	snprintf(want, sizeof(want),
		 "CIEL-HMAC-SHA256 Credential=AK0123/acme, "
		 "SignedHeaders=host;x-ciel-content-sha256;x-ciel-date, Nonce=%s, Signature=%s",
		 a.nonce, sig);
	assert_string_equal(auth, want);
}

static void test_round_trip(void **state)
{
	static const char secret[] = "another secret";
	char date[17], bsha[65], auth[512], sig[65], again[512];
	struct sign_auth a;
	struct sign_request r;
	struct ciel_err err = {0};
	size_t n;
	time_t t;

	(void)state;
	assert_int_equal(sign_client("DELETE", "/v1/instances/i-1", NULL, "localhost", NULL, 0,
				     "AKROUND", "region", secret, sizeof(secret) - 1, DATE_T + 7,
				     date, bsha, auth, sizeof(auth), &err),
			 0);
	assert_string_equal(bsha, EMPTY_SHA);
	assert_int_equal(sign_parse_authorization(auth, &a, &err), 0);
	assert_string_equal(a.key_id, "AKROUND");
	assert_string_equal(a.scope, "region");
	assert_true(is_lower_hex(a.nonce, 32));
	assert_int_equal(sign_parse_date(date, &t, &err), 0);
	assert_int_equal(t, DATE_T + 7);
	/* what the server does: rebuild the request, take the nonce from the header */
	r = (struct sign_request){"DELETE", "/v1/instances/i-1", "", "localhost", date, bsha,
				  a.nonce};
	assert_int_equal(sign_compute(&r, a.scope, secret, sizeof(secret) - 1, sig, &err), 0);
	assert_string_equal(sig, a.signature);
	assert_true(enc_equal(sig, a.signature, 64));

	/* the parsed parts rebuild the very same header, and it needs every byte it takes */
	n = strlen(auth);
	assert_int_equal(
	    sign_authorization(a.key_id, a.scope, a.nonce, a.signature, again, n + 1, &err), 0);
	assert_string_equal(again, auth);
	assert_int_equal(
	    sign_authorization(a.key_id, a.scope, a.nonce, a.signature, again, n, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);

	/* too small a buffer is an error, not a truncated header */
	assert_int_equal(sign_client("GET", "/", NULL, "h", NULL, 0, "AK", "region", secret,
				     sizeof(secret) - 1, DATE_T, date, bsha, auth, 40, &err),
			 -1);
}

/*
 * The reason the nonce exists: the same request signed twice in the same
 * second must carry different signatures, so the replay cache lets both
 * through and still refuses a real replay of either.
 */
static void test_nonce_fresh(void **state)
{
	static const char secret[] = "fresh secret";
	char date[2][17], bsha[2][65], auth[2][512], sig[65], nonces[64][33];
	struct sign_replay *rc = sign_replay_new();
	struct sign_auth a[2], b;
	struct ciel_err err = {0};

	(void)state;
	assert_non_null(rc);
	for (int i = 0; i < 2; i++) {
		struct sign_request r;

		assert_int_equal(sign_client("POST", "/v1/instances", "a=1", "h", KAT_BODY,
					     strlen(KAT_BODY), "AKSAME", "acme", secret,
					     sizeof(secret) - 1, DATE_T, date[i], bsha[i], auth[i],
					     sizeof(auth[i]), &err),
				 0);
		assert_int_equal(sign_parse_authorization(auth[i], &a[i], &err), 0);
		r = (struct sign_request){"POST",  "/v1/instances", "a=1",     "h",
					  date[i], bsha[i],	    a[i].nonce};
		assert_int_equal(sign_compute(&r, "acme", secret, sizeof(secret) - 1, sig, &err),
				 0);
		assert_string_equal(sig, a[i].signature);
		assert_int_equal(sign_replay_check(rc, a[i].signature, DATE_T, DATE_T, &err), 0);
	}
	assert_string_equal(date[0], date[1]);
	assert_string_equal(bsha[0], bsha[1]);
	assert_string_not_equal(auth[0], auth[1]);
	assert_string_not_equal(a[0].nonce, a[1].nonce);
	assert_string_not_equal(a[0].signature, a[1].signature);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sign_replay_check(rc, a[i].signature, DATE_T, DATE_T, &err), -1);
		assert_int_equal(err.code, CIEL_EUNAUTH);
	}
	sign_replay_free(rc);

	/* every call draws anew: no two of many nonces repeat */
	for (int i = 0; i < 64; i++) {
		assert_int_equal(sign_client("GET", "/", NULL, "h", NULL, 0, "AK", "region", secret,
					     sizeof(secret) - 1, DATE_T, date[0], bsha[0], auth[0],
					     sizeof(auth[0]), &err),
				 0);
		assert_int_equal(sign_parse_authorization(auth[0], &b, &err), 0);
		memcpy(nonces[i], b.nonce, sizeof(b.nonce));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(nonces[i], nonces[j]);
	}
}

static void test_tamper(void **state)
{
	const struct sign_request base = {"POST", "/v1/instances", "b=2&a=1", "ciel.example:8443",
					  DATE,	  KAT_BODY_SHA,	   KAT_NONCE};
	struct sign_request r;
	char sig[65];

	(void)state;
#define CHANGED(field, value, scope, secret)                                                     \
	do {                                                                                     \
		r = base;                                                                        \
		r.field = value;                                                                 \
		assert_int_equal(sign_compute(&r, scope, secret, strlen(secret), sig, NULL), 0); \
		assert_string_not_equal(sig, KAT_SIG);                                           \
	} while (0)
	CHANGED(method, "PUT", "acme", KAT_SECRET);
	CHANGED(path, "/v1/instance", "acme", KAT_SECRET);
	CHANGED(path, "/v1/instances/", "acme", KAT_SECRET);
	CHANGED(query, "b=2&a=2", "acme", KAT_SECRET);
	CHANGED(query, "b=2&a=1&c=", "acme", KAT_SECRET);
	CHANGED(query, NULL, "acme", KAT_SECRET);
	CHANGED(host, "other.example:8443", "acme", KAT_SECRET);
	CHANGED(body_sha256_hex, EMPTY_SHA, "acme", KAT_SECRET);
	CHANGED(date, "20261123T105501Z", "acme", KAT_SECRET);
	/* the nonce is signed: swapping in another one, even by one digit, breaks the signature */
	CHANGED(nonce, "00112233445566778899aabbccddeefe", "acme", KAT_SECRET);
	CHANGED(nonce, "10112233445566778899aabbccddeeff", "acme", KAT_SECRET);
	CHANGED(nonce, "00000000000000000000000000000000", "acme", KAT_SECRET);
	CHANGED(method, "POST", "acme2", KAT_SECRET);
	CHANGED(method, "POST", "acme", "s3cr3t-kez");
#undef CHANGED
	/* reordering the query is not tampering */
	r = base;
	r.query = "a=1&b=2";
	assert_int_equal(sign_compute(&r, "acme", KAT_SECRET, strlen(KAT_SECRET), sig, NULL), 0);
	assert_string_equal(sig, KAT_SIG);
	/* a scope that could smuggle a line into the string to sign is refused */
	assert_int_equal(sign_compute(&base, "acme\n", KAT_SECRET, 10, sig, NULL), -1);
	assert_int_equal(sign_compute(&base, "", KAT_SECRET, 10, sig, NULL), -1);
	assert_int_equal(sign_compute(&base, "acme", "", 0, sig, NULL), -1);
}

/*
 * Only one spelling of a nonce is signed (32 lower-case hex), so a nonce can
 * neither smuggle a '\n' into the string to sign nor be left out.
 */
static void test_nonce_rejects(void **state)
{
	static const char *const bad[] = {
	    NULL,
	    "",
	    "0011223344556677",
	    "00112233445566778899aabbccddeef",	 /* 31 */
	    "00112233445566778899aabbccddeeff0", /* 33 */
	    "00112233445566778899AABBCCDDEEFF",
	    "00112233445566778899aabbccddeeFf",
	    "g0112233445566778899aabbccddeeff",
	    "0x112233445566778899aabbccddeeff",
	    " 0112233445566778899aabbccddeeff",
	    "00112233445566778899aabbccddee\nf",
	};
	struct sign_request r = {"POST", "/v1/instances", "b=2&a=1", "ciel.example:8443",
				 DATE,	 KAT_BODY_SHA,	  NULL};
	char sig[65], auth[512];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ciel_err err = {0};

		r.nonce = bad[i];
		if (sign_compute(&r, "acme", KAT_SECRET, strlen(KAT_SECRET), sig, &err) != -1)
			fail_msg("sign_compute: nonce %zu accepted", i);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_string_equal(err.field, "nonce");
		assert_string_equal(err.msg, "nonce: must be 32 lower-case hex characters");
		err = (struct ciel_err){0};
		if (sign_authorization("AK0123", "acme", bad[i], KAT_SIG, auth, sizeof(auth),
				       &err) != -1)
			fail_msg("sign_authorization: nonce %zu accepted", i);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_string_equal(err.msg, "nonce: must be 32 lower-case hex characters");
	}
	/* the same request with a good nonce signs, so it was the nonce that was refused */
	r.nonce = KAT_NONCE;
	assert_int_equal(sign_compute(&r, "acme", KAT_SECRET, strlen(KAT_SECRET), sig, NULL), 0);
	assert_string_equal(sig, KAT_SIG);
}

#define GOOD_SIG "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SH "SignedHeaders=host;x-ciel-content-sha256;x-ciel-date"
#define NONCE "Nonce=" KAT_NONCE

static void test_parse_authorization_ok(void **state)
{
	struct sign_auth a;
	struct ciel_err err = {0};

	(void)state;
	/* parts in any order, optional whitespace, upper-case hex folded to lower */
	assert_int_equal(sign_parse_authorization("  CIEL-HMAC-SHA256   Signature=0123456789ABCDEF"
						  "0123456789abcdef0123456789abcdef0123456789abcdef"
						  " ,Nonce=00112233445566778899AABBCCDDEEFF"
						  ",Credential=Ak9/t-1,\t" SH " \t",
						  &a, &err),
			 0);
	assert_string_equal(a.key_id, "Ak9");
	assert_string_equal(a.scope, "t-1");
	assert_string_equal(a.nonce, KAT_NONCE);
	assert_string_equal(a.signature, GOOD_SIG);
	/* the nonce first works as well, and mixed case folds the same */
	assert_int_equal(sign_parse_authorization("CIEL-HMAC-SHA256 Nonce=0011223344556677"
						  "8899aAbBcCdDeEfF, Credential=AK/t, " SH
						  ", Signature=" GOOD_SIG,
						  &a, &err),
			 0);
	assert_string_equal(a.key_id, "AK");
	assert_string_equal(a.nonce, KAT_NONCE);
	/* and what sign_authorization writes parses back to the same parts */
	assert_int_equal(sign_parse_authorization(KAT_AUTH, &a, &err), 0);
	assert_string_equal(a.key_id, "AK0123");
	assert_string_equal(a.scope, "acme");
	assert_string_equal(a.nonce, KAT_NONCE);
	assert_string_equal(a.signature, KAT_SIG);
}

static void test_parse_authorization_rejects(void **state)
{
	char k65[512], s65[512], longhdr[1100];
	const struct {
		const char *hdr;
		const char *msg;
	} cases[] = {
	    {"", "authorization: empty header"},
	    {"AWS4-HMAC-SHA256 Credential=a/b",
	     "authorization: unsupported algorithm 'AWS4-HMAC-SHA256'"},
	    {"ciel-hmac-sha256 Credential=a/b",
	     "authorization: unsupported algorithm 'ciel-hmac-sha256'"},
	    {"Bearer\x01xyz", "authorization: unsupported algorithm 'Bearer?xyz'"},
	    {"CIEL-HMAC-SHA256", "authorization: missing Credential"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE,
	     "authorization: missing Signature"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " NONCE ", Signature=" GOOD_SIG,
	     "authorization: missing SignedHeaders"},
	    {"CIEL-HMAC-SHA256 " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: missing Credential"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, SignedHeaders=host;x-ciel-date, " NONCE
	     ", Signature=" GOOD_SIG,
	     "authorization: SignedHeaders must be host;x-ciel-content-sha256;x-ciel-date"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, SignedHeaders=, " NONCE ", Signature=" GOOD_SIG,
	     "authorization: SignedHeaders must be host;x-ciel-content-sha256;x-ciel-date"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE ", Signature=abc",
	     "authorization: signature must be 64 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE ", Signature=" GOOD_SIG "0",
	     "authorization: signature must be 64 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE
	     ", Signature=g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	     "authorization: signature must be 64 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK-1/t, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: key id must be 1-64 characters [A-Za-z0-9]"},
	    {"CIEL-HMAC-SHA256 Credential=/t, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: key id must be 1-64 characters [A-Za-z0-9]"},
	    {k65, "authorization: key id must be 1-64 characters [A-Za-z0-9]"},
	    {"CIEL-HMAC-SHA256 Credential=AK/Acme, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: scope must be 1-64 characters [a-z0-9-]"},
	    {"CIEL-HMAC-SHA256 Credential=AK/, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: scope must be 1-64 characters [a-z0-9-]"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t/u, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: scope must be 1-64 characters [a-z0-9-]"},
	    {s65, "authorization: scope must be 1-64 characters [a-z0-9-]"},
	    {"CIEL-HMAC-SHA256 Credential=AK, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: Credential must be <key id>/<scope>"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, Credential=AK/t, " SH ", " NONCE
	     ", Signature=" GOOD_SIG,
	     "authorization: duplicate Credential"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE ", Signature=" GOOD_SIG ", Extra=1",
	     "authorization: unknown part 'Extra'"},
	    {"CIEL-HMAC-SHA256 credential=AK/t, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: unknown part 'credential'"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t,, " SH ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: empty part"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE ", Signature=" GOOD_SIG ",",
	     "authorization: empty part"},
	    {"CIEL-HMAC-SHA256 Credential AK/t", "authorization: malformed part 'Credential AK/t'"},
	    {longhdr, "authorization: longer than 1024 bytes"},
	    /* the nonce: required, exactly 32 hex digits, once */
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", Signature=" GOOD_SIG,
	     "authorization: missing Nonce"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", Nonce=, Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", Nonce=abc, Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH
	     ", Nonce=00112233445566778899aabbccddeef, Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE "0, Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", Nonce=" GOOD_SIG ", Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH
	     ", Nonce=g0112233445566778899aabbccddeeff, Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH
	     ", Nonce=00112233445566778899aabbccdd eff, Signature=" GOOD_SIG,
	     "authorization: nonce must be 32 hex characters"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE ", Signature=" GOOD_SIG ", " NONCE,
	     "authorization: duplicate Nonce"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", " NONCE ", " NONCE ", Signature=" GOOD_SIG,
	     "authorization: duplicate Nonce"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", nonce=" KAT_NONCE ", Signature=" GOOD_SIG,
	     "authorization: unknown part 'nonce'"},
	    {"CIEL-HMAC-SHA256 Credential=AK/t, " SH ", Nonce, Signature=" GOOD_SIG,
	     "authorization: malformed part 'Nonce'"},
	};
	struct sign_auth a;

	(void)state;
	snprintf(k65, sizeof(k65),
		 "CIEL-HMAC-SHA256 Credential=%065d/t, " SH ", " NONCE ", Signature=" GOOD_SIG, 0);
	snprintf(s65, sizeof(s65),
		 "CIEL-HMAC-SHA256 Credential=AK/%065d, " SH ", " NONCE ", Signature=" GOOD_SIG, 0);
	memset(longhdr, 'x', sizeof(longhdr) - 1);
	longhdr[sizeof(longhdr) - 1] = '\0';
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ciel_err err = {0};

		if (sign_parse_authorization(cases[i].hdr, &a, &err) != -1)
			fail_msg("case %zu accepted: %s", i, cases[i].hdr);
		assert_int_equal(err.code, CIEL_EUNAUTH);
		assert_string_equal(err.msg, cases[i].msg);
	}
	/* exactly 64-character key id and scope are fine */
	snprintf(k65, sizeof(k65),
		 "CIEL-HMAC-SHA256 Credential=%064d/%064d, " SH ", " NONCE ", Signature=" GOOD_SIG,
		 1, 2);
	assert_int_equal(sign_parse_authorization(k65, &a, NULL), 0);
	assert_int_equal(strlen(a.key_id), 64);
	assert_int_equal(strlen(a.scope), 64);
	assert_string_equal(a.nonce, KAT_NONCE);
}

static void test_dates(void **state)
{
	static const char *const bad[] = {
	    "20261123T105500",	    "20261123T105500z",	 "20261123t105500Z",
	    "2026-11-23T10:55:00Z", "20261123T105500Z ", "20261323T105500Z",
	    "20261100T105500Z",	    "20270229T000000Z",	 "20261123T245500Z",
	    "20261123T106000Z",	    "20261123T105560Z",	 "19691231T235959Z",
	    "2026112 T105500Z",	    "+0261123T105500Z",	 "",
	};
	struct ciel_err err = {0};
	char out[17];
	time_t t;

	(void)state;
	assert_int_equal(sign_parse_date(DATE, &t, &err), 0);
	assert_int_equal(t, DATE_T);
	assert_int_equal(sign_parse_date("19700101T000000Z", &t, &err), 0);
	assert_int_equal(t, 0);
	assert_int_equal(sign_parse_date("20280229T235959Z", &t, &err), 0);
	sign_format_date(t, out);
	assert_string_equal(out, "20280229T235959Z");
	assert_int_equal(sign_parse_date("20000229T120000Z", &t, &err), 0);
	assert_int_equal(t, 951825600); /* python3 -c 'import
					   calendar;print(calendar.timegm((2000,2,29,12,0,0)))' */
	assert_int_equal(sign_parse_date("99991231T235959Z", &t, &err), 0);
	sign_format_date(t + 1000, out); /* clamped to what four digits can say */
	assert_string_equal(out, "99991231T235959Z");
	sign_format_date(DATE_T, out);
	assert_string_equal(out, DATE);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sign_parse_date(bad[i], &t, &err) != -1)
			fail_msg("date accepted: '%s'", bad[i]);
		assert_int_equal(err.code, CIEL_EUNAUTH);
	}
}

static void sig_of(unsigned i, char out[65])
{
	unsigned char b[32] = {0};

	memcpy(b, &i, sizeof(i));
	enc_hex(b, sizeof(b), out);
}

static void test_replay_basic(void **state)
{
	struct sign_replay *r = sign_replay_new();
	struct ciel_err err = {0};
	char s[65];

	(void)state;
	assert_non_null(r);
	assert_int_equal(sign_replay_check(r, GOOD_SIG, DATE_T, DATE_T, &err), 0);
	assert_int_equal(sign_replay_check(r, GOOD_SIG, DATE_T, DATE_T + 1, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAUTH);
	assert_non_null(strstr(err.msg, "replay"));
	/* the same bytes spelled in upper case are the same signature */
	assert_int_equal(sign_replay_check(r,
					   "0123456789ABCDEF0123456789abcdef0123456789abcdef"
					   "0123456789abcdef",
					   DATE_T, DATE_T, &err),
			 -1);
	sig_of(1, s);
	assert_int_equal(sign_replay_check(r, s, DATE_T, DATE_T, &err), 0);
	/* outside the window it can never be accepted, so it is not recorded either */
	sig_of(2, s);
	assert_int_equal(sign_replay_check(r, s, DATE_T - SIGN_MAX_SKEW_S - 1, DATE_T, &err), -1);
	assert_int_equal(sign_replay_check(r, s, DATE_T + SIGN_MAX_SKEW_S + 1, DATE_T, &err), -1);
	assert_int_equal(r->count, 2);
	memset(s, 0, sizeof(s));
	memcpy(s, "xyz", 3);
	assert_int_equal(sign_replay_check(r, s, DATE_T, DATE_T, &err), -1);
	{
		char longer[66] = GOOD_SIG "0";

		assert_int_equal(sign_replay_check(r, longer, DATE_T, DATE_T, &err), -1);
		assert_int_equal(r->count, 2);
	}

	/* once now has moved past date + skew, both entries are pruned */
	sig_of(3, s);
	assert_int_equal(
	    sign_replay_check(r, s, DATE_T + SIGN_MAX_SKEW_S, DATE_T + SIGN_MAX_SKEW_S, &err), 0);
	assert_int_equal(r->count, 3); /* DATE_T is still exactly at the edge */
	sig_of(4, s);
	assert_int_equal(
	    sign_replay_check(r, s, DATE_T + SIGN_MAX_SKEW_S, DATE_T + SIGN_MAX_SKEW_S + 1, &err),
	    0);
	assert_int_equal(r->count, 2);
	sign_replay_free(r);
}

static void test_replay_cap_and_order(void **state)
{
	struct sign_replay *r = sign_replay_new();
	struct ciel_err err = {0};
	int64_t dates[5000];
	char s[65];

	(void)state;
	assert_non_null(r);
	r->cap = 3;
	for (unsigned i = 0; i < 3; i++) {
		sig_of(i, s);
		assert_int_equal(sign_replay_check(r, s, DATE_T + i, DATE_T, &err), 0);
	}
	sig_of(99, s);
	assert_int_equal(sign_replay_check(r, s, DATE_T, DATE_T, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	/* full does not mean forgetful: the old ones are still refused */
	sig_of(0, s);
	assert_int_equal(sign_replay_check(r, s, DATE_T, DATE_T, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAUTH);
	/* the oldest ages out, which makes room */
	sig_of(99, s);
	assert_int_equal(sign_replay_check(r, s, DATE_T + 100, DATE_T + SIGN_MAX_SKEW_S + 1, &err),
			 0);
	assert_int_equal(r->count, 3);

	/* many entries with shuffled dates: the heap must prune exactly the expired ones,
	 * and the table must grow and still find everything */
	sign_replay_free(r);
	r = sign_replay_new();
	assert_non_null(r);
	srand(7);
	for (unsigned i = 0; i < 5000; i++) {
		dates[i] = DATE_T - SIGN_MAX_SKEW_S + rand() % (2 * SIGN_MAX_SKEW_S + 1);
		sig_of(i + 1000, s);
		assert_int_equal(sign_replay_check(r, s, dates[i], DATE_T, &err), 0);
	}
	assert_true(r->nbuckets >= 4096);
	for (unsigned i = 0; i < 5000; i += 97) {
		sig_of(i + 1000, s);
		assert_int_equal(sign_replay_check(r, s, DATE_T, DATE_T, &err), -1);
		assert_int_equal(err.code, CIEL_EUNAUTH);
	}
	for (int64_t now = DATE_T; now <= DATE_T + 2 * SIGN_MAX_SKEW_S + 1; now += 37) {
		size_t live = 0;

		for (unsigned i = 0; i < 5000; i++)
			live += dates[i] >= now - SIGN_MAX_SKEW_S;
		sig_of((unsigned)now, s);
		/* a fresh signature dated now is always accepted and pushes the prune */
		assert_int_equal(sign_replay_check(r, s, now, now, &err), 0);
		/* fresh ones dated now stay; count them by date too */
		size_t fresh = 0;
		for (int64_t t = DATE_T; t <= now; t += 37)
			fresh += t >= now - SIGN_MAX_SKEW_S;
		assert_int_equal(r->count, live + fresh);
	}
	sign_replay_free(r);
}

struct race {
	struct sign_replay *r;
	int accepted;
};

static void *race_thread(void *arg)
{
	struct race *x = arg;
	char s[65];

	for (unsigned i = 0; i < 2000; i++) {
		sig_of(i, s);
		if (sign_replay_check(x->r, s, DATE_T, DATE_T, NULL) == 0)
			x->accepted++;
	}
	return NULL;
}

static void test_replay_threads(void **state)
{
	struct race rs[4];
	pthread_t th[4];
	struct sign_replay *r = sign_replay_new();
	int total = 0;

	(void)state;
	assert_non_null(r);
	for (int i = 0; i < 4; i++) {
		rs[i] = (struct race){r, 0};
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &rs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		total += rs[i].accepted;
	}
	/* check and insert are one step: each signature got through exactly once */
	assert_int_equal(total, 2000);
	assert_int_equal(r->count, 2000);
	sign_replay_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canonical_literal),
	    cmocka_unit_test(test_canonical_equivalences),
	    cmocka_unit_test(test_canonical_rejects),
	    cmocka_unit_test(test_known_answer),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_nonce_fresh),
	    cmocka_unit_test(test_tamper),
	    cmocka_unit_test(test_nonce_rejects),
	    cmocka_unit_test(test_parse_authorization_ok),
	    cmocka_unit_test(test_parse_authorization_rejects),
	    cmocka_unit_test(test_dates),
	    cmocka_unit_test(test_replay_basic),
	    cmocka_unit_test(test_replay_cap_and_order),
	    cmocka_unit_test(test_replay_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
