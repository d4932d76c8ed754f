/*
 * http — the HTTPS server in front of the api pipeline, on libmicrohttpd.
 *
 * One thread per connection: a request blocks while its audit event is
 * group-committed, and the store batches everything in flight into one
 * fsync, so throughput grows with the number of concurrent connections
 * instead of being capped by a small pool. Bodies are read into a buffer
 * capped at API_BODY_MAX; a Content-Length over it is answered 413 before
 * the body is read.
 */
#ifndef CIEL_HTTP_H
#define CIEL_HTTP_H

#include "api/api.h"

struct http_server;

struct http_opts {
	const char *listen;   /* "127.0.0.1:7443", "[::1]:7443", "localhost:7443" */
	const char *cert_pem; /* PEM text, NULL with insecure */
	const char *key_pem;
	int insecure; /* plain HTTP: refused unless listen is a loopback address */
};

int http_start(struct http_server **out, struct api *a, const struct http_opts *o,
	       struct ciel_err *err);
/* Stops accepting, waits for in-flight requests, frees. NULL is a no-op. */
void http_stop(struct http_server *s);

#endif
