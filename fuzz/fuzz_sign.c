/*
 * libFuzzer target for lib/auth/sign.c: everything a client controls in a
 * signed request goes through the canonicaliser and the parsers.
 *
 * Input: fields separated by '\n' — method, path, query, authorization
 * header, date, host, scope, nonce — and the rest is the body. Besides "no
 * crash, no leak", it checks properties that must hold for any input:
 * - a canonical request has exactly 8 newlines (no field can inject one);
 * - canonicalisation is idempotent on path and query;
 * - a signature is only computed over a 32 lower-case hex nonce, and any
 *   other nonce gives another signature (the nonce is inside what is signed);
 * - a parsed Authorization header re-serialises to one that parses the same,
 *   its nonce in the one lower-case spelling;
 * - what sign_client writes parses, and verifies with the nonce it carries;
 * - a parsed date formats back to the same string (one spelling per instant);
 * - the replay cache refuses the second use of a signature.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sign.h"
#include "crypto/enc.h"

#define NFIELDS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

/* The canonical path or query line (index 1 or 2) of a canonical request. */
static char *line_of(const char *creq, int idx)
{
	const char *p = creq, *nl;

	for (int i = 0; i < idx; i++)
		p = strchr(p, '\n') + 1;
	nl = strchr(p, '\n');
	return strndup(p, (size_t)(nl - p));
}

static int is_lower_hex(const char *s, size_t n)
{
	return strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

static void fuzz_canonical(const struct sign_request *r, const char *scope)
{
	char *creq = NULL, *again = NULL, *path = NULL, *query = NULL, sig[65], sig2[65];
	char other[33];
	struct sign_request r2;
	size_t newlines = 0;

	if (sign_canonical(r, &creq, NULL) < 0) {
		check(creq == NULL);
		return;
	}
	for (const char *p = creq; *p; p++)
		newlines += *p == '\n';
	check(newlines == 8);
	path = line_of(creq, 1);
	query = line_of(creq, 2);
	check(path && query);
	/* canonical form is a fixed point, for canonical forms that are themselves
	 * within the input limits (escaping can triple a path's length) */
	if (strlen(path) <= 2048 && strlen(query) <= 8192) {
		r2 = *r;
		r2.path = path;
		r2.query = query;
		check(sign_canonical(&r2, &again, NULL) == 0);
		check(strcmp(creq, again) == 0);
	}
	if (sign_compute(r, scope, "k", 1, sig, NULL) == 0) {
		check(is_lower_hex(sig, 64));
		check(is_lower_hex(r->nonce, 32));
		/* flip one digit of the nonce: the signature must change */
		memcpy(other, r->nonce, sizeof(other));
		other[31] = other[31] == '0' ? '1' : '0';
		r2 = *r;
		r2.nonce = other;
		check(sign_compute(&r2, scope, "k", 1, sig2, NULL) == 0);
		check(strcmp(sig, sig2) != 0);
	}
	free(path);
	free(query);
	free(again);
	free(creq);
}

static void fuzz_authorization(const char *hdr, const char *date)
{
	struct sign_auth a, b;
	struct sign_replay *rc;
	char out[512];
	time_t t;

	if (sign_parse_authorization(hdr, &a, NULL) < 0)
		return;
	check(is_lower_hex(a.nonce, 32) && is_lower_hex(a.signature, 64));
	check(sign_authorization(a.key_id, a.scope, a.nonce, a.signature, out, sizeof(out), NULL) ==
	      0);
	check(sign_parse_authorization(out, &b, NULL) == 0);
	check(memcmp(&a, &b, sizeof(a)) == 0);
	if (sign_parse_date(date, &t, NULL) < 0)
		return;
	rc = sign_replay_new();
	check(rc != NULL);
	check(sign_replay_check(rc, a.signature, t, t, NULL) == 0);
	check(sign_replay_check(rc, a.signature, t, t + 1, NULL) < 0);
	sign_replay_free(rc);
}

/* Whatever sign_client signs, the server side can parse and verify. */
static void fuzz_client(char *const f[NFIELDS], const void *body, size_t body_len)
{
	char date[17], sha[65], auth[512], sig[65];
	struct sign_request r;
	struct sign_auth a;

	if (sign_client(f[0], f[1], f[2], f[5], body, body_len, "AKFUZZ", f[6], "k", 1, 0, date,
			sha, auth, sizeof(auth), NULL) < 0)
		return;
	check(sign_parse_authorization(auth, &a, NULL) == 0);
	check(strcmp(a.key_id, "AKFUZZ") == 0 && strcmp(a.scope, f[6]) == 0);
	check(is_lower_hex(a.nonce, 32));
	check(strstr(auth, a.nonce) != NULL);
	r = (struct sign_request){.method = f[0],
				  .path = f[1],
				  .query = f[2],
				  .host = f[5],
				  .date = date,
				  .body_sha256_hex = sha,
				  .nonce = a.nonce};
	check(sign_compute(&r, a.scope, "k", 1, sig, NULL) == 0);
	check(strcmp(sig, a.signature) == 0);
}

static void fuzz_date(const char *s)
{
	char back[17];
	time_t t;

	if (sign_parse_date(s, &t, NULL) < 0)
		return;
	sign_format_date(t, back);
	check(strcmp(back, s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *f[NFIELDS] = {0}, body_sha[65];
	const uint8_t *p = data, *end = data + size;
	struct sign_request r;
	int i;

	for (i = 0; i < NFIELDS; i++) {
		const uint8_t *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
		const uint8_t *fe = nl ? nl : end;

		f[i] = strndup((const char *)p, (size_t)(fe - p));
		if (!f[i])
			goto out;
		p = nl ? nl + 1 : end;
	}
	enc_sha256_hex(p, (size_t)(end - p), body_sha);
	r = (struct sign_request){.method = f[0],
				  .path = f[1],
				  .query = f[2],
				  .host = f[5],
				  .date = f[4],
				  .body_sha256_hex = body_sha,
				  .nonce = f[7]};
	fuzz_canonical(&r, f[6]);
	fuzz_authorization(f[3], f[4]);
	fuzz_date(f[4]);
	fuzz_client(f, p, (size_t)(end - p));
out:
	for (i = 0; i < NFIELDS; i++)
		free(f[i]);
	return 0;
}
