/*
 * logsrv — the agent's small HTTP server: it hands an instance's log to the
 * control plane, which forwards it to the tenant (GET /v1/instances/{name}/logs).
 *
 *   GET /v1/logs/{tenant}/{name}?offset=N&limit=M
 *     -> 200 {"data":"...","offset":N,"next":N2,"first":F}
 *
 * Only cield may ask: every request must carry a CIEL-HMAC-SHA256 signature
 * (lib/auth/sign.h) made with the node's own key (the key in
 * node.credentials, scope "region"), dated within SIGN_MAX_SKEW_S of our
 * clock and not before this server started, and never seen before (a replay
 * cache, as cield keeps one). Anything else is 401 before the instance is
 * even looked up, so an unsigned caller cannot probe which instances exist.
 *
 * Invariants: the answer's "data" is always a valid JSON string (invalid
 * UTF-8 becomes U+FFFD, and a multi-byte character cut by the limit is left
 * for the next read rather than mangled); at most LOGSRV_LIMIT_MAX bytes of
 * log are read per request; the server never writes anything on the node.
 * Plain HTTP: the requests are authenticated, the answers are not encrypted,
 * so listen on loopback (the default) unless the path to cield is trusted.
 */
#ifndef CIEL_LOGSRV_H
#define CIEL_LOGSRV_H

#include "util/err.h"

#define LOGSRV_LIMIT_DEFAULT 65536
#define LOGSRV_LIMIT_MAX (1 << 20)

struct logsrv;

struct logsrv_config {
	const char *listen;    /* "127.0.0.1:0" (port 0: any free port), "[::1]:7500" */
	const char *state_dir; /* instances live in STATE/instances/<tenant>/<name> */
	const char *key_id;    /* the node's key: the only one accepted */
	const char *secret;    /* copied; wiped by logsrv_stop */
};

/*
 * Bind cfg->listen and serve from a thread of libmicrohttpd's own. *out is
 * freed by logsrv_stop. -1 with CIEL_EINVAL (field "listen") on a malformed
 * address, CIEL_EIO if it cannot listen.
 */
int logsrv_start(struct logsrv **out, const struct logsrv_config *cfg, struct ciel_err *err);

/* "http://HOST:PORT" with the port actually bound; valid until logsrv_stop. */
const char *logsrv_url(const struct logsrv *s);

/* Stop serving, wait for requests in flight, wipe the secret, free. NULL is a no-op. */
void logsrv_stop(struct logsrv *s);

#endif
