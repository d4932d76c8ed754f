/*
 * sign — see sign.h for the canonical request and header formats.
 *
 * Invariants:
 * - Every value that goes into the canonical request or the string to sign is
 *   validated first (method token, host without controls, strict date, hex
 *   body hash, scope alphabet), so no input can smuggle a '\n' and make two
 *   different requests canonicalise to the same bytes.
 * - Path and query are percent-decoded then re-encoded with one fixed rule
 *   (RFC 3986 unreserved kept, everything else %XX upper-case), so equivalent
 *   spellings sign the same and different meanings never do. Path segments
 *   are split before decoding: "/a%2Fb" is one segment, "/a/b" two. No dot
 *   segment or '//' folding: the server routes on the raw path, and the
 *   signature must cover exactly what is routed.
 * - Untrusted sizes are capped (path, query, parameter count, header length)
 *   before anything is allocated from them.
 * - The replay cache never forgets an entry that could still be accepted:
 *   when it is full it refuses new requests rather than evict.
 */
#include "auth/sign.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/enc.h"
#include "util/dbuf.h"

#define PATH_MAX_BYTES 2048
#define QUERY_MAX_BYTES 8192
#define QUERY_MAX_PARAMS 64
#define METHOD_MAX 16
#define HOST_MAX 255
#define AUTH_HDR_MAX 1024
#define REPLAY_CAP (1u << 20) /* ~80 MB at worst: 1M signatures in the skew window */

/*
 * The caps above already bound a canonical request to about 31 KiB (every
 * input byte encodes to at most three); this is the buffers' own hard maximum
 * all the same, so a cap loosened later fails cleanly instead of growing.
 */
#define CANON_MAX_BYTES (3 * (PATH_MAX_BYTES + QUERY_MAX_BYTES) + 4096)

/* The error for a failed dbuf_add() while building the part named what. */
static int canon_fail(const struct dbuf *b, const char *what, struct ciel_err *err)
{
	if (b->toobig)
		return ciel_err_set(err, CIEL_EINVAL, "%s: canonical request longer than %d bytes",
				    what, CANON_MAX_BYTES);
	return ciel_err_set(err, CIEL_ENOMEM, "%s: out of memory", what);
}

static int is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * Append the canonical form of raw[0..n): decode %XX, then encode every byte
 * outside the unreserved set. '+' is not a space here: it is taken literally.
 */
static int canon_part(struct dbuf *b, const char *raw, size_t n, const char *field,
		      struct ciel_err *err)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)raw[i];
		char enc[3];

		if (c == '%') {
			int hi = -1, lo = -1;

			if (i + 2 < n) {
				hi = enc_hexval((unsigned char)raw[i + 1]);
				lo = enc_hexval((unsigned char)raw[i + 2]);
			}

			if (hi < 0 || lo < 0)
				return ciel_err_field(err, CIEL_EINVAL, field,
						      "%s: malformed percent-encoding at byte %zu",
						      field, i);
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0)
				return ciel_err_field(err, CIEL_EINVAL, field,
						      "%s: NUL byte (%%00) not allowed", field);
			i += 2;
		}
		if (is_unreserved(c)) {
			enc[0] = (char)c;
			if (dbuf_add(b, enc, 1) < 0)
				goto nomem;
			continue;
		}
		enc[0] = '%';
		enc[1] = hex[c >> 4];
		enc[2] = hex[c & 15];
		if (dbuf_add(b, enc, 3) < 0)
			goto nomem;
	}
	return 0;
nomem:
	return canon_fail(b, field, err);
}

static int canon_path(struct dbuf *b, const char *path, struct ciel_err *err)
{
	size_t n = path ? strlen(path) : 0;
	const char *p, *end;

	if (n == 0)
		return dbuf_addstr(b, "/") < 0 ? canon_fail(b, "path", err) : 0;
	if (n > PATH_MAX_BYTES)
		return ciel_err_field(err, CIEL_EINVAL, "path", "path: longer than %d bytes",
				      PATH_MAX_BYTES);
	if (path[0] != '/')
		return ciel_err_field(err, CIEL_EINVAL, "path", "path: must start with '/'");
	p = path;
	end = path + n;
	while (p < end) {
		const char *seg = p + 1, *slash = memchr(seg, '/', (size_t)(end - seg));
		const char *segend = slash ? slash : end;

		if (dbuf_add(b, "/", 1) < 0)
			return canon_fail(b, "path", err);
		if (canon_part(b, seg, (size_t)(segend - seg), "path", err) < 0)
			return -1;
		p = segend;
	}
	return 0;
}

struct qparam {
	size_t name, value; /* offsets into the encoded buffer */
};

static int qparam_cmp_r(const void *a, const void *b, void *base)
{
	const struct qparam *x = a, *y = b;
	const char *s = base;
	int c = strcmp(s + x->name, s + y->name);

	return c ? c : strcmp(s + x->value, s + y->value);
}

static int canon_query(struct dbuf *b, const char *query, struct ciel_err *err)
{
	struct qparam params[QUERY_MAX_PARAMS];
	struct dbuf enc;
	size_t n = query ? strlen(query) : 0, np = 0;
	const char *p, *end;
	int ret = -1;

	dbuf_init(&enc, CANON_MAX_BYTES);
	if (n == 0)
		return 0;
	if (n > QUERY_MAX_BYTES)
		return ciel_err_field(err, CIEL_EINVAL, "query", "query: longer than %d bytes",
				      QUERY_MAX_BYTES);
	p = query;
	end = query + n;
	for (;;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pend = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(pend - p));
		const char *nend = eq ? eq : pend;

		if (pend == p) {
			ciel_err_field(err, CIEL_EINVAL, "query", "query: empty parameter");
			goto out;
		}
		if (np == QUERY_MAX_PARAMS) {
			ciel_err_field(err, CIEL_EINVAL, "query", "query: more than %d parameters",
				       QUERY_MAX_PARAMS);
			goto out;
		}
		/*
		 * A parameter without '=' signs as "name=", as in SigV4. Each
		 * encoded string is NUL-terminated inside enc for strcmp.
		 */
		params[np].name = enc.len;
		if (canon_part(&enc, p, (size_t)(nend - p), "query", err) < 0)
			goto out;
		if (dbuf_add(&enc, "", 1) < 0) {
			canon_fail(&enc, "query", err);
			goto out;
		}
		params[np].value = enc.len;
		if (eq && canon_part(&enc, eq + 1, (size_t)(pend - eq - 1), "query", err) < 0)
			goto out;
		if (dbuf_add(&enc, "", 1) < 0) {
			canon_fail(&enc, "query", err);
			goto out;
		}
		np++;
		if (!amp)
			break;
		p = amp + 1;
	}
	qsort_r(params, np, sizeof(params[0]), qparam_cmp_r, enc.buf);
	for (size_t i = 0; i < np; i++) {
		if ((i && dbuf_add(b, "&", 1) < 0) ||
		    dbuf_addstr(b, enc.buf + params[i].name) < 0 || dbuf_add(b, "=", 1) < 0 ||
		    dbuf_addstr(b, enc.buf + params[i].value) < 0) {
			canon_fail(b, "query", err);
			goto out;
		}
	}
	ret = 0;
out:
	dbuf_release(&enc);
	return ret;
}

static int valid_method(const char *m)
{
	size_t n = 0;

	if (!m)
		return 0;
	for (; m[n]; n++)
		if (m[n] < 'A' || m[n] > 'Z' || n >= METHOD_MAX)
			return 0;
	return n > 0;
}

static int valid_host(const char *h)
{
	size_t n = 0;

	if (!h)
		return 0;
	for (; h[n]; n++)
		if ((unsigned char)h[n] <= ' ' || (unsigned char)h[n] >= 0x7f || n >= HOST_MAX)
			return 0;
	return n > 0;
}

static int valid_lower_hex64(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++)
		if (n >= 64 || !((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == 64;
}

static int valid_key_id(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++)
		if (n >= SIGN_KEY_ID_MAX ||
		    !((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') ||
		      (s[n] >= '0' && s[n] <= '9')))
			return 0;
	return n > 0;
}

static int valid_scope(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++)
		if (n >= SIGN_SCOPE_MAX ||
		    !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
			return 0;
	return n > 0;
}

int sign_canonical(const struct sign_request *r, char **out, struct ciel_err *err)
{
	struct dbuf b;
	time_t t;

	*out = NULL;
	dbuf_init(&b, CANON_MAX_BYTES);
	if (!valid_method(r->method))
		return ciel_err_field(err, CIEL_EINVAL, "method",
				      "method: must be 1-%d upper-case letters", METHOD_MAX);
	if (!valid_host(r->host))
		return ciel_err_field(err, CIEL_EINVAL, "host",
				      "host: must be 1-%d printable characters without spaces",
				      HOST_MAX);
	if (!r->date || sign_parse_date(r->date, &t, NULL) < 0)
		return ciel_err_field(err, CIEL_EINVAL, "x-ciel-date",
				      "x-ciel-date: must be YYYYMMDDTHHMMSSZ");
	if (!valid_lower_hex64(r->body_sha256_hex))
		return ciel_err_field(
		    err, CIEL_EINVAL, "x-ciel-content-sha256",
		    "x-ciel-content-sha256: must be 64 lower-case hex characters");
	if (dbuf_addstr(&b, r->method) < 0 || dbuf_add(&b, "\n", 1) < 0)
		goto nomem;
	if (canon_path(&b, r->path, err) < 0)
		goto fail;
	if (dbuf_add(&b, "\n", 1) < 0)
		goto nomem;
	if (canon_query(&b, r->query, err) < 0)
		goto fail;
	if (dbuf_addstr(&b, "\nhost:") < 0 || dbuf_addstr(&b, r->host) < 0 ||
	    dbuf_addstr(&b, "\nx-ciel-content-sha256:") < 0 ||
	    dbuf_addstr(&b, r->body_sha256_hex) < 0 || dbuf_addstr(&b, "\nx-ciel-date:") < 0 ||
	    dbuf_addstr(&b, r->date) < 0 || dbuf_addstr(&b, "\n\n" SIGN_SIGNED_HEADERS "\n") < 0 ||
	    dbuf_addstr(&b, r->body_sha256_hex) < 0)
		goto nomem;
	/* never NULL: the method put content in b */
	*out = dbuf_detach(&b, NULL);
	return 0;
nomem:
	canon_fail(&b, "canonical request", err);
fail:
	dbuf_release(&b);
	return -1;
}

int sign_compute(const struct sign_request *r, const char *scope, const void *secret,
		 size_t secret_len, char sig_hex[65], struct ciel_err *err)
{
	char creq_hash[65], *creq, *sts;
	unsigned char mac[32];
	size_t sts_len;
	int n;

	if (!valid_scope(scope))
		return ciel_err_field(err, CIEL_EINVAL, "scope",
				      "scope: must be 1-%d characters [a-z0-9-]", SIGN_SCOPE_MAX);
	if (!secret || secret_len == 0)
		return ciel_err_set(err, CIEL_EINVAL, "signing secret is empty");
	if (!r->nonce || strlen(r->nonce) != 32 || strspn(r->nonce, "0123456789abcdef") != 32)
		return ciel_err_field(err, CIEL_EINVAL, "nonce",
				      "nonce: must be 32 lower-case hex characters");
	if (sign_canonical(r, &creq, err) < 0)
		return -1;
	enc_sha256_hex(creq, strlen(creq), creq_hash);
	free(creq);
	/* date (16) and scope (<= 64) are validated, so the size is known */
	sts_len = sizeof(SIGN_ALGO) + 16 + 1 + SIGN_SCOPE_MAX + 1 + 32 + 1 + 64 + 1;
	sts = malloc(sts_len);
	if (!sts)
		return ciel_err_set(err, CIEL_ENOMEM, "string to sign: out of memory");
	n = snprintf(sts, sts_len, SIGN_ALGO "\n%s\n%s\n%s\n%s", r->date, scope, r->nonce,
		     creq_hash);
	if (n < 0 || (size_t)n >= sts_len)
		BUG("string to sign does not fit");
	enc_hmac_sha256(secret, secret_len, sts, (size_t)n, mac);
	enc_hex(mac, sizeof(mac), sig_hex);
	explicit_bzero(mac, sizeof(mac));
	free(sts);
	return 0;
}

int sign_authorization(const char *key_id, const char *scope, const char nonce[33],
		       const char sig_hex[65], char *out, size_t out_size, struct ciel_err *err)
{
	int n;

	if (!valid_key_id(key_id))
		return ciel_err_field(err, CIEL_EINVAL, "key_id",
				      "key id: must be 1-%d characters [A-Za-z0-9]",
				      SIGN_KEY_ID_MAX);
	if (!valid_scope(scope))
		return ciel_err_field(err, CIEL_EINVAL, "scope",
				      "scope: must be 1-%d characters [a-z0-9-]", SIGN_SCOPE_MAX);
	if (!valid_lower_hex64(sig_hex))
		return ciel_err_set(err, CIEL_EINVAL,
				    "signature: must be 64 lower-case hex characters");
	if (!nonce || strlen(nonce) != 32 || strspn(nonce, "0123456789abcdef") != 32)
		return ciel_err_set(err, CIEL_EINVAL,
				    "nonce: must be 32 lower-case hex characters");
	n = snprintf(out, out_size,
		     SIGN_ALGO " Credential=%s/%s, SignedHeaders=" SIGN_SIGNED_HEADERS
			       ", Nonce=%s, Signature=%s",
		     key_id, scope, nonce, sig_hex);
	if (n < 0 || (size_t)n >= out_size)
		return ciel_err_set(err, CIEL_EINVAL,
				    "authorization: buffer of %zu bytes too small", out_size);
	return 0;
}

/* Quote at most 32 bytes of outside input into an error message, harmlessly. */
static void quote(char *dst, size_t dst_size, const char *p, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < dst_size && i < 32; i++)
		dst[o++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	if (i < n && o + 4 < dst_size) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static int auth_credential(const char *v, size_t n, struct sign_auth *out, struct ciel_err *err)
{
	const char *slash = memchr(v, '/', n);
	size_t klen, slen;

	if (!slash)
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: Credential must be <key id>/<scope>");
	klen = (size_t)(slash - v);
	slen = n - klen - 1;
	if (klen == 0 || klen > SIGN_KEY_ID_MAX)
		goto bad_key;
	memcpy(out->key_id, v, klen);
	out->key_id[klen] = '\0';
	if (!valid_key_id(out->key_id))
		goto bad_key;
	if (slen == 0 || slen > SIGN_SCOPE_MAX)
		goto bad_scope;
	memcpy(out->scope, slash + 1, slen);
	out->scope[slen] = '\0';
	if (!valid_scope(out->scope))
		goto bad_scope;
	return 0;
bad_key:
	return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
			      "authorization: key id must be 1-%d characters [A-Za-z0-9]",
			      SIGN_KEY_ID_MAX);
bad_scope:
	return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
			      "authorization: scope must be 1-%d characters [a-z0-9-]",
			      SIGN_SCOPE_MAX);
}

static int auth_signature(const char *v, size_t n, struct sign_auth *out, struct ciel_err *err)
{
	if (n != 64)
		goto bad;
	for (size_t i = 0; i < 64; i++) {
		int x = enc_hexval((unsigned char)v[i]);

		if (x < 0)
			goto bad;
		/* one spelling per signature, so case games cannot dodge the replay cache */
		out->signature[i] = "0123456789abcdef"[x];
	}
	out->signature[64] = '\0';
	return 0;
bad:
	return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
			      "authorization: signature must be 64 hex characters");
}

static int auth_nonce(const char *v, size_t n, struct sign_auth *out, struct ciel_err *err)
{
	if (n != 32)
		goto bad;
	for (size_t i = 0; i < 32; i++) {
		int x = enc_hexval((unsigned char)v[i]);

		if (x < 0)
			goto bad;
		out->nonce[i] = "0123456789abcdef"[x];
	}
	out->nonce[32] = '\0';
	return 0;
bad:
	return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
			      "authorization: nonce must be 32 hex characters");
}

int sign_parse_authorization(const char *hdr, struct sign_auth *out, struct ciel_err *err)
{
	static const char *const names[] = {"Credential", "SignedHeaders", "Signature", "Nonce"};
	int seen[4] = {0};
	const char *p, *end;
	char q[48];
	size_t n;

	memset(out, 0, sizeof(*out));
	if (!hdr)
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: missing header");
	n = strnlen(hdr, AUTH_HDR_MAX + 1);
	if (n > AUTH_HDR_MAX)
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: longer than %d bytes", AUTH_HDR_MAX);
	p = hdr;
	end = hdr + n;
	while (p < end && is_ows(*p))
		p++;
	while (end > p && is_ows(end[-1]))
		end--;
	if (p == end)
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: empty header");
	{
		const char *a = p;

		while (p < end && !is_ows(*p))
			p++;
		if ((size_t)(p - a) != strlen(SIGN_ALGO) || memcmp(a, SIGN_ALGO, (size_t)(p - a))) {
			quote(q, sizeof(q), a, (size_t)(p - a));
			return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
					      "authorization: unsupported algorithm '%s'", q);
		}
	}
	/* a comma always starts another part, so a trailing one is an empty part */
	if (p == end)
		p = NULL;
	while (p) {
		const char *part, *pend, *eq, *v;
		size_t plen, nlen, vlen;
		int which = -1;

		while (p < end && is_ows(*p))
			p++;
		part = p;
		/* p <= end always; the guard tells gcc's -O2 overread check so */
		pend = end > p ? memchr(p, ',', (size_t)(end - p)) : NULL;
		if (!pend)
			pend = end;
		p = pend < end ? pend + 1 : NULL;
		while (pend > part && is_ows(pend[-1]))
			pend--;
		plen = (size_t)(pend - part);
		if (plen == 0)
			return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
					      "authorization: empty part");
		eq = memchr(part, '=', plen);
		if (!eq) {
			quote(q, sizeof(q), part, plen);
			return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
					      "authorization: malformed part '%s'", q);
		}
		nlen = (size_t)(eq - part);
		v = eq + 1;
		vlen = (size_t)(pend - v);
		for (int i = 0; i < 4; i++)
			if (nlen == strlen(names[i]) && !memcmp(part, names[i], nlen))
				which = i;
		if (which < 0) {
			quote(q, sizeof(q), part, nlen);
			return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
					      "authorization: unknown part '%s'", q);
		}
		if (seen[which]++)
			return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
					      "authorization: duplicate %s", names[which]);
		if (which == 0 && auth_credential(v, vlen, out, err) < 0)
			return -1;
		if (which == 1 &&
		    (vlen != strlen(SIGN_SIGNED_HEADERS) || memcmp(v, SIGN_SIGNED_HEADERS, vlen)))
			return ciel_err_field(
			    err, CIEL_EUNAUTH, "authorization",
			    "authorization: SignedHeaders must be " SIGN_SIGNED_HEADERS);
		if (which == 2 && auth_signature(v, vlen, out, err) < 0)
			return -1;
		if (which == 3 && auth_nonce(v, vlen, out, err) < 0)
			return -1;
	}
	for (int i = 0; i < 4; i++)
		if (!seen[i])
			return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
					      "authorization: missing %s", names[i]);
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

#define DATE_MIN ((time_t)0)
#define DATE_MAX ((time_t)253402300799) /* 9999-12-31T23:59:59Z */

void sign_format_date(time_t t, char out[17])
{
	struct tm tm;

	/* a four-digit year is all the format has room for */
	if (t < DATE_MIN)
		t = DATE_MIN;
	if (t > DATE_MAX)
		t = DATE_MAX;
	gmtime_r(&t, &tm);
	if (strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
		BUG("sign_format_date: strftime");
}

int sign_parse_date(const char *s, time_t *out, struct ciel_err *err)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int v[6] = {0}, y, mo, d, leap;
	/* digit counts of YYYY MM DD, then HH MM SS after the 'T' */
	static const int widths[6] = {4, 2, 2, 2, 2, 2};
	const char *p = s;

	if (!s || strnlen(s, 17) != 16 || s[8] != 'T' || s[15] != 'Z')
		goto bad;
	for (int f = 0; f < 6; f++) {
		if (f == 3)
			p++; /* the 'T' */
		for (int i = 0; i < widths[f]; i++, p++) {
			if (*p < '0' || *p > '9')
				goto bad;
			v[f] = v[f] * 10 + (*p - '0');
		}
	}
	y = v[0];
	mo = v[1];
	d = v[2];
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) ||
	    v[3] > 23 || v[4] > 59 || v[5] > 59)
		goto bad;
	*out = (time_t)(days_from_civil(y, mo, d) * 86400 + v[3] * 3600 + v[4] * 60 + v[5]);
	return 0;
bad:
	return ciel_err_field(err, CIEL_EUNAUTH, "x-ciel-date",
			      "x-ciel-date: must be YYYYMMDDTHHMMSSZ (UTC)");
}

int sign_client(const char *method, const char *path, const char *query, const char *host,
		const void *body, size_t body_len, const char *key_id, const char *scope,
		const void *secret, size_t secret_len, time_t now, char date_out[17],
		char body_sha_out[65], char *auth_out, size_t auth_size, struct ciel_err *err)
{
	struct sign_request r = {0};
	unsigned char raw[16];
	char sig[65], nonce[33];

	if (!body && body_len)
		return ciel_err_set(err, CIEL_EINVAL, "body: NULL with length %zu", body_len);
	if (enc_random(raw, sizeof(raw), err) < 0)
		return -1;
	enc_hex(raw, sizeof(raw), nonce);
	sign_format_date(now, date_out);
	enc_sha256_hex(body, body_len, body_sha_out);
	r.method = method;
	r.path = path;
	r.query = query;
	r.host = host;
	r.date = date_out;
	r.body_sha256_hex = body_sha_out;
	r.nonce = nonce;
	if (sign_compute(&r, scope, secret, secret_len, sig, err) < 0)
		return -1;
	return sign_authorization(key_id, scope, nonce, sig, auth_out, auth_size, err);
}

/*
 * Replay cache: a chained hash set of signatures plus a min-heap on their
 * dates. An entry is useless once its date falls below now - SIGN_MAX_SKEW_S
 * (the server refuses such a request anyway), so every check first pops
 * those off the heap. Entries dated ahead of a clock that stepped back are
 * kept until they age out the same way: forgetting them early would let a
 * replay through once the clock catches up.
 *
 * Memory is capped at REPLAY_CAP entries. When the cache is full it refuses
 * new requests with CIEL_EUNAVAIL instead of evicting: evicting a live entry
 * would reopen the door to a replay, and a full cache means the region is
 * taking more signed requests than it was sized for, which callers should see.
 *
 * Callers check a signature only after verifying it, so keys are HMAC output;
 * the hash is still keyed with a random seed so crafted input cannot pile up
 * in one chain.
 */
struct rnode {
	struct rnode *next;
	int64_t date;
	unsigned char sig[32];
};

struct sign_replay {
	pthread_mutex_t lock;
	struct rnode **buckets;
	size_t nbuckets; /* power of two */
	struct rnode **heap;
	size_t count, heap_cap;
	size_t cap;
	uint64_t seed[2];
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static size_t rhash(const struct sign_replay *r, const unsigned char sig[32])
{
	uint64_t h = r->seed[0], w;

	for (int i = 0; i < 4; i++) {
		memcpy(&w, sig + 8 * i, 8);
		h = mix64(h ^ w ^ r->seed[1]);
	}
	return (size_t)h & (r->nbuckets - 1);
}

struct sign_replay *sign_replay_new(void)
{
	struct sign_replay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->nbuckets = 1024;
	r->heap_cap = 1024;
	r->cap = REPLAY_CAP;
	r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
	r->heap = calloc(r->heap_cap, sizeof(*r->heap));
	if (!r->buckets || !r->heap || enc_random(r->seed, sizeof(r->seed), NULL) < 0 ||
	    pthread_mutex_init(&r->lock, NULL) != 0)
		goto fail;
	return r;
fail:
	free(r->buckets);
	free(r->heap);
	free(r);
	return NULL;
}

void sign_replay_free(struct sign_replay *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->count; i++)
		free(r->heap[i]);
	free(r->heap);
	free(r->buckets);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void heap_swap(struct rnode **h, size_t a, size_t b)
{
	struct rnode *t = h[a];

	h[a] = h[b];
	h[b] = t;
}

static void heap_push(struct sign_replay *r, struct rnode *n)
{
	size_t i = r->count++;

	r->heap[i] = n;
	while (i > 0 && r->heap[(i - 1) / 2]->date > r->heap[i]->date) {
		heap_swap(r->heap, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static struct rnode *heap_pop(struct sign_replay *r)
{
	struct rnode *top = r->heap[0];
	size_t i = 0;

	r->heap[0] = r->heap[--r->count];
	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l < r->count && r->heap[l]->date < r->heap[m]->date)
			m = l;
		if (l + 1 < r->count && r->heap[l + 1]->date < r->heap[m]->date)
			m = l + 1;
		if (m == i)
			break;
		heap_swap(r->heap, i, m);
		i = m;
	}
	return top;
}

static void replay_prune(struct sign_replay *r, int64_t oldest_ok)
{
	while (r->count > 0 && r->heap[0]->date < oldest_ok) {
		struct rnode *n = heap_pop(r), **pp = &r->buckets[rhash(r, n->sig)];

		while (*pp != n)
			pp = &(*pp)->next;
		*pp = n->next;
		free(n);
	}
}

/* Keep chains short; on allocation failure carry on with longer chains. */
static void replay_grow(struct sign_replay *r)
{
	size_t nb = r->nbuckets * 2, old = r->nbuckets;
	struct rnode **b, **ob = r->buckets;

	if (r->count < r->nbuckets || nb > r->cap)
		return;
	b = calloc(nb, sizeof(*b));
	if (!b)
		return;
	r->buckets = b;
	r->nbuckets = nb;
	for (size_t i = 0; i < old; i++) {
		for (struct rnode *n = ob[i], *next; n; n = next) {
			size_t h = rhash(r, n->sig);

			next = n->next;
			n->next = b[h];
			b[h] = n;
		}
	}
	free(ob);
}

int sign_replay_check(struct sign_replay *r, const char sig_hex[65], time_t date, time_t now,
		      struct ciel_err *err)
{
	unsigned char sig[32];
	struct rnode *n, **slot;
	int64_t oldest_ok, skew;
	int ret = -1;

	if (strnlen(sig_hex, 65) != 64 || enc_unhex(sig_hex, sig, sizeof(sig)) < 0)
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: signature must be 64 hex characters");
	if (__builtin_sub_overflow((int64_t)now, (int64_t)SIGN_MAX_SKEW_S, &oldest_ok))
		oldest_ok = INT64_MIN;
	if (__builtin_sub_overflow((int64_t)date, (int64_t)now, &skew) || skew > SIGN_MAX_SKEW_S ||
	    skew < -SIGN_MAX_SKEW_S)
		return ciel_err_field(err, CIEL_EUNAUTH, "x-ciel-date",
				      "x-ciel-date: more than %d s away from the server's clock",
				      SIGN_MAX_SKEW_S);

	pthread_mutex_lock(&r->lock);
	replay_prune(r, oldest_ok);
	slot = &r->buckets[rhash(r, sig)];
	for (n = *slot; n; n = n->next) {
		if (!memcmp(n->sig, sig, sizeof(sig))) {
			ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				       "authorization: signature already used (replay)");
			goto out;
		}
	}
	if (r->count >= r->cap) {
		ciel_err_set(err, CIEL_EUNAVAIL, "replay cache full (%zu signatures in the window)",
			     r->count);
		goto out;
	}
	if (r->count == r->heap_cap) {
		size_t nc = r->heap_cap * 2 < r->cap ? r->heap_cap * 2 : r->cap;
		struct rnode **h = realloc(r->heap, nc * sizeof(*h));

		if (!h) {
			ciel_err_set(err, CIEL_ENOMEM, "replay cache: out of memory");
			goto out;
		}
		r->heap = h;
		r->heap_cap = nc;
	}
	n = malloc(sizeof(*n));
	if (!n) {
		ciel_err_set(err, CIEL_ENOMEM, "replay cache: out of memory");
		goto out;
	}
	memcpy(n->sig, sig, sizeof(sig));
	n->date = date;
	heap_push(r, n);
	replay_grow(r);
	slot = &r->buckets[rhash(r, sig)];
	n->next = *slot;
	*slot = n;
	ret = 0;
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}
