/*
 * libFuzzer target for lib/auth/sign.c: everything a client controls in a
 * signed request goes through the canonicaliser and the parsers.
 *
 * Input: fields separated by '\n' — method, path, query, authorization
 * header, date, host, scope — and the rest is the body. Besides "no crash,
 * no leak", it checks properties that must hold for any input:
 * - a canonical request has exactly 8 newlines (no field can inject one);
 * - canonicalisation is idempotent on path and query;
 * - a parsed Authorization header re-serialises to one that parses the same;
 * - a parsed date formats back to the same string (one spelling per instant);
 * - the replay cache refuses the second use of a signature.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sign.h"
#include "crypto/enc.h"

#define NFIELDS 7

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

static void fuzz_canonical(const struct sign_request *r, const char *scope)
{
	char *creq = NULL, *again = NULL, *path = NULL, *query = NULL, sig[65];
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
	r2 = *r;
	r2.path = path;
	r2.query = query;
	check(sign_canonical(&r2, &again, NULL) == 0);
	check(strcmp(creq, again) == 0);
	if (sign_compute(r, scope, "k", 1, sig, NULL) == 0)
		check(strlen(sig) == 64);
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
	check(sign_authorization(a.key_id, a.scope, a.signature, out, sizeof(out), NULL) == 0);
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
				  .body_sha256_hex = body_sha};
	fuzz_canonical(&r, f[6]);
	fuzz_authorization(f[3], f[4]);
	fuzz_date(f[4]);
	{
		char date[17], sha[65], auth[512];

		sign_client(f[0], f[1], f[2], f[5], p, (size_t)(end - p), "AKFUZZ", f[6], "k", 1, 0,
			    date, sha, auth, sizeof(auth), NULL);
	}
out:
	for (i = 0; i < NFIELDS; i++)
		free(f[i]);
	return 0;
}
