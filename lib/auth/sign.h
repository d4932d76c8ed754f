/*
 * sign — request signing for the control-plane API, in the spirit of AWS
 * SigV4. Shared by the server (verify), the CLI and the bench (sign), so both
 * sides canonicalise with the same code.
 *
 * Canonical request (each part ends with '\n' except the last):
 *   METHOD
 *   canonical path      (each segment percent-encoded per RFC 3986 unreserved;
 *                         the raw path is first decoded, so "/a%2Fb" and "/a/b"
 *                         are different, and "%7e" == "~")
 *   canonical query     (name=value pairs, each percent-encoded the same way,
 *                         sorted by name then value, joined by '&'; "" if none)
 *   canonical headers   ("host:<host>\nx-ciel-content-sha256:<hex>\nx-ciel-date:<date>\n")
 *   signed headers      ("host;x-ciel-content-sha256;x-ciel-date")
 *   body SHA-256 hex
 * String to sign:
 *   "CIEL-HMAC-SHA256\n" date "\n" scope "\n" nonce "\n" hex(SHA-256(canonical request))
 * Signature: hex(HMAC-SHA256(secret, string to sign)).
 * Authorization header:
 *   CIEL-HMAC-SHA256 Credential=<key id>/<scope>,
 * SignedHeaders=host;x-ciel-content-sha256;x-ciel-date, Nonce=<32 hex>, Signature=<64 hex> The
 * nonce is 16 random bytes per request. Without it two identical requests in the same second (the
 * date's resolution) would carry the same signature, and the server's replay cache would refuse the
 * second, legitimate one. The scope is the tenant the request acts for ("region" for the operator);
 * a key used under another tenant's scope is refused by the server.
 * Date: x-ciel-date header, ISO 8601 basic UTC "20261123T105500Z".
 */
#ifndef CIEL_SIGN_H
#define CIEL_SIGN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/err.h"

#define SIGN_ALGO "CIEL-HMAC-SHA256"
#define SIGN_SIGNED_HEADERS "host;x-ciel-content-sha256;x-ciel-date"
#define SIGN_MAX_SKEW_S 300
#define SIGN_KEY_ID_MAX 64
#define SIGN_SCOPE_MAX 64

struct sign_request {
	const char *method;
	const char *path;  /* raw, as sent (percent-encoded), without the query */
	const char *query; /* raw query string without '?', NULL or "" if none */
	const char *host;
	const char *date; /* "20261123T105500Z" */
	const char *body_sha256_hex;
	const char *nonce; /* 32 lower-case hex chars */
};

/* The canonical request as above; returns a malloc'd string (caller frees).
 * -1 with CIEL_EINVAL (field "path" or "query") on malformed percent-encoding. */
int sign_canonical(const struct sign_request *r, char **out, struct ciel_err *err);

/* Compute the signature (64 hex + NUL). */
int sign_compute(const struct sign_request *r, const char *scope, const void *secret,
		 size_t secret_len, char sig_hex[65], struct ciel_err *err);

/* Build the Authorization header value into out. */
int sign_authorization(const char *key_id, const char *scope, const char nonce[33],
		       const char sig_hex[65], char *out, size_t out_size, struct ciel_err *err);

struct sign_auth {
	char key_id[SIGN_KEY_ID_MAX + 1];
	char scope[SIGN_SCOPE_MAX + 1];
	char nonce[33];
	char signature[65];
};
/* Parse an Authorization header; -1 with CIEL_EUNAUTH and a precise message
 * on anything malformed (unknown algorithm, missing part, bad signed headers). */
int sign_parse_authorization(const char *hdr, struct sign_auth *out, struct ciel_err *err);

/* Format now as a date; parse one (-1 with CIEL_EUNAUTH if malformed). */
void sign_format_date(time_t t, char out[17]);
int sign_parse_date(const char *s, time_t *out, struct ciel_err *err);

/* Sign in one go for clients, with a fresh random nonce: fills date_out (17),
 * body_sha_out and auth_out (the nonce travels inside it). */
int sign_client(const char *method, const char *path, const char *query, const char *host,
		const void *body, size_t body_len, const char *key_id, const char *scope,
		const void *secret, size_t secret_len, time_t now, char date_out[17],
		char body_sha_out[65], char *auth_out, size_t auth_size, struct ciel_err *err);

/*
 * Replay cache: remembers every accepted signature until it can no longer be
 * accepted anyway (its date is outside ±SIGN_MAX_SKEW_S of now), so memory is
 * bounded by the request rate times the window. Thread-safe.
 */
struct sign_replay;
struct sign_replay *sign_replay_new(void);
void sign_replay_free(struct sign_replay *r);
/* 0 if sig was not seen (and records it), -1 with CIEL_EUNAUTH if it was. */
int sign_replay_check(struct sign_replay *r, const char sig_hex[65], time_t date, time_t now,
		      struct ciel_err *err);

#endif
