/*
 * client — the HTTP client of the control-plane API, shared by the CLI, the
 * agent and tests.
 *
 * A struct client holds one resolved configuration (endpoint, key, scope,
 * CA) and one libcurl easy handle, so consecutive requests reuse the TLS
 * connection. Requests are signed with sign_client() when a key is set and
 * sent unsigned otherwise (health checks, node join). The Host header is
 * set explicitly to the endpoint's host:port, so what is signed is exactly
 * what is sent.
 *
 * Configuration comes from, in order: explicit values (flags), CIEL_*
 * environment variables, then a profile of the credentials file. The secret
 * is never taken from a flag. Not thread-safe: one client per thread.
 */
#ifndef CIEL_CLIENT_H
#define CIEL_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/profile.h"
#include "util/err.h"

#define CLIENT_DEFAULT_ENDPOINT "https://127.0.0.1:7443"
#define CLIENT_BODY_MAX (64u << 20) /* largest answer kept in memory */

/* What the caller knows before resolving; NULL fields are looked up. */
struct client_opts {
	const char *endpoint;
	const char *profile; /* profile name */
	const char *credentials_file;
	const char *ca_file;
	const char *key_id; /* e.g. read from an agent's state; never a CLI flag */
	const char *secret;
	const char *scope;
};

/* A resolved configuration; plain data, safe to copy. */
struct client_config {
	char endpoint[PROFILE_VALUE_MAX];
	char key_id[PROFILE_VALUE_MAX];
	char secret[PROFILE_VALUE_MAX];
	char scope[PROFILE_VALUE_MAX];
	char ca_file[PROFILE_VALUE_MAX];
	char profile[PROFILE_NAME_MAX + 1];	  /* name of the profile consulted */
	char credentials_file[PROFILE_VALUE_MAX]; /* the file consulted */
	bool profile_found;			  /* the profile section existed */
	bool profile_explicit;			  /* named by flag or CIEL_PROFILE */
};

/*
 * Resolve cfg from o, the environment and the profile file. A missing
 * credentials file or profile is not an error unless the profile was named
 * explicitly (-1, CIEL_ENOTFOUND); a malformed file is (CIEL_EINVAL). The
 * endpoint falls back to CLIENT_DEFAULT_ENDPOINT.
 */
int client_resolve(struct client_config *cfg, const struct client_opts *o, struct ciel_err *err);

struct client {
	struct client_config cfg;
	char host[300];		      /* "host:port" for the Host header */
	char base[PROFILE_VALUE_MAX]; /* endpoint without a trailing '/' */
	void *curl;		      /* CURL * */
	long timeout_ms;	      /* whole request; 0 = none */
	long connect_timeout_ms;
	int last_curl_code; /* CURLcode of the last transfer, 0 if ok */
};

/* Set up c for cfg (copied). -1 with CIEL_EINVAL on a malformed endpoint. */
int client_init(struct client *c, const struct client_config *cfg, struct ciel_err *err);
/* Free the curl handle and wipe the secret. */
void client_release(struct client *c);
/* Whether c will sign (has a key id and a secret). */
bool client_has_key(const struct client *c);

struct client_response {
	long status;	     /* HTTP status */
	char request_id[80]; /* X-Request-Id, "" if none */
	char content_type[128];
	json_t *json; /* owned: the body parsed as JSON, NULL if not JSON or streamed */
	char *body;   /* owned: the raw body, NUL-terminated (NULL if streamed) */
	size_t body_len;
};
void client_response_release(struct client_response *r);

/* Optional streaming: when set, a 2xx body goes to sink instead of memory. */
struct client_request_opts {
	FILE *sink;
	size_t sink_bytes; /* out: bytes written to sink */
};

/*
 * Send METHOD base+path?query with body (NULL: no body; POST/PUT send an
 * empty one) and fill resp. path is raw (already percent-encoded), query
 * without '?' (NULL or "" for none). Returns 0 whenever an HTTP answer came
 * back, whatever its status; -1 on a transport failure (CIEL_EUNAVAIL with
 * curl's message; c->last_curl_code says which) or a body over
 * CLIENT_BODY_MAX (CIEL_ETOOBIG). resp is released and refilled.
 */
int client_request(struct client *c, const char *method, const char *path, const char *query,
		   const json_t *body, struct client_response *resp, struct ciel_err *err);
int client_request_ex(struct client *c, const char *method, const char *path, const char *query,
		      const json_t *body, struct client_request_opts *ro,
		      struct client_response *resp, struct ciel_err *err);

/* Progress of an upload: sent of total body bytes so far. */
typedef void (*client_progress_fn)(void *arg, int64_t sent, int64_t total);

#define CLIENT_UPLOAD_LOW_SPEED_BYTES 1024 /* abort an upload slower than this... */
#define CLIENT_UPLOAD_LOW_SPEED_S 60	   /* ...for this long */

/*
 * Send METHOD base+path?query with the contents of file (a regular file) as
 * an application/octet-stream body, streamed from disk: the file is read
 * twice, once to hash it (the signature covers x-ciel-content-sha256), once
 * to send it, so it must not change in between (a different length aborts
 * with CIEL_EIO). progress (may be NULL) is called with arg as bytes go out.
 * There is no total timeout, only the low-speed limit above, so a large
 * file on a slow link is not cut off. Returns like client_request: 0
 * whenever an HTTP answer came back (out filled, caller releases it); -1 on
 * a transport failure (CIEL_EUNAVAIL), an unreadable file (CIEL_EIO,
 * CIEL_ENOTFOUND) or an over-long answer (CIEL_ETOOBIG).
 */
int client_upload(struct client *c, const char *method, const char *path, const char *query,
		  const char *file, client_progress_fn progress, void *arg,
		  struct client_response *out, struct ciel_err *err);

/*
 * The API error of a non-2xx answer into err: code from the body's
 * error.code (CIEL_EINTERNAL if unknown), message and field. If code_name is
 * non-NULL it receives the code string as sent ("http_502" if the body is
 * not an API error) and reason (if non-NULL) the 401 "reason" member or "".
 */
void client_response_error(const struct client_response *r, struct ciel_err *err, char *code_name,
			   size_t code_size, char *reason, size_t reason_size);

/* Transport failure classes, from c->last_curl_code. */
bool client_failed_connect(const struct client *c); /* refused, unreachable, DNS */
bool client_failed_tls(const struct client *c);	    /* certificate or CA problems */

/*
 * Percent-encode s (RFC 3986 unreserved kept) into a malloc'd string for a
 * path segment or a query value; NULL on allocation failure.
 */
char *client_escape(const char *s);

/* Append "name=value" to a query string buffer, value percent-encoded except
 * for unreserved characters and ":@/," (legal in a query); -1 if it does not fit. */
int client_query_add(char *q, size_t size, const char *name, const char *value);

#endif
