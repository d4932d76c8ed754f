/*
 * logsrv — see logsrv.h. One libmicrohttpd daemon with its own polling
 * thread: log reads are small file reads, so one thread serves them all and
 * the agent's reconcile loop is never slowed by a reader.
 *
 * The signature check mirrors cield's authenticate() (lib/api/api.c): parse
 * the Authorization header, bound the date, hash the body, recompute the
 * signature over the request as it arrived (raw path and query, the Host
 * header) and compare in constant time, then record it in the replay cache.
 * The only difference is where the secret comes from: there is exactly one
 * key this server accepts, the node's own.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <microhttpd.h>

#include "agent/logsrv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/agent.h"
#include "auth/sign.h"
#include "crypto/enc.h"
#include "oci/oci.h"
#include "util/dbuf.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "util/utf8.h"

#define LOGSRV_BODY_MAX 4096 /* a GET has no body; anything larger is not ours */

struct logsrv {
	struct MHD_Daemon *d;
	int fd;
	char url[96];
	char *state_dir;
	char key_id[SIGN_KEY_ID_MAX + 1];
	char *secret;
	size_t secret_len;
	int64_t started_s; /* see authenticate(): the replay cache starts empty */
	struct sign_replay *replay;
};

/* Per request, created by the URI callback before any header is parsed. */
struct lreq {
	char *uri; /* raw, as sent: the signature covers it undecoded */
	struct dbuf body;
	int started;
};

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct lreq *h = calloc(1, sizeof(*h));

	(void)cls;
	(void)c;
	if (h) {
		h->uri = strdup(uri ? uri : "/");
		dbuf_init(&h->body, LOGSRV_BODY_MAX);
		if (!h->uri) {
			free(h);
			h = NULL;
		}
	}
	return h;
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct lreq *h = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (!h)
		return;
	free(h->uri);
	dbuf_release(&h->body);
	free(h);
	*con_cls = NULL;
}

/* Queue json (a new reference, consumed) as the answer. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *json)
{
	struct MHD_Response *mr;
	enum MHD_Result ret;
	char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;

	json_decref(json);
	if (!text)
		return MHD_NO; /* out of memory: drop the connection */
	mr = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!mr) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(mr, "Content-Type", "application/json");
	MHD_add_response_header(mr, "Cache-Control", "no-store");
	if (status == 405)
		MHD_add_response_header(mr, "Allow", "GET");
	ret = MHD_queue_response(c, status, mr);
	MHD_destroy_response(mr);
	return ret;
}

/* An API-style error: {"error":{"code","message","field"?,"reason"?}}. */
static enum MHD_Result send_error(struct MHD_Connection *c, const struct ciel_err *err,
				  const char *reason)
{
	json_t *e = json_pack("{s:s, s:s}", "code", ciel_code_name(err->code), "message", err->msg);

	if (e && err->field[0])
		json_object_set_new(e, "field", json_string(err->field));
	if (e && reason)
		json_object_set_new(e, "reason", json_string(reason));
	return send_json(c, (unsigned)ciel_code_http(err->code),
			 e ? json_pack("{s:o}", "error", e) : NULL);
}

/*
 * 0 if the request is signed by the node's key; -1 with CIEL_EUNAUTH and
 * *reason (a stable word for logs and clients) otherwise.
 */
static int authenticate(struct logsrv *s, struct MHD_Connection *c, const char *method,
			const char *path, const char *query, const struct dbuf *body,
			const char **reason, struct ciel_err *err)
{
	const char *hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *hdate = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ciel-Date");
	const char *hsha = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ciel-Content-Sha256");
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	char body_sha[65], sig[65];
	struct sign_request sr;
	struct sign_auth au;
	time_t date, now = time(NULL);

	*reason = "malformed_authorization";
	if (!hdr || !*hdr) {
		*reason = "missing_authorization";
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: header missing; only cield may read logs");
	}
	if (sign_parse_authorization(hdr, &au, err) < 0)
		return -1;
	if (!hdate)
		return ciel_err_field(err, CIEL_EUNAUTH, "x-ciel-date",
				      "x-ciel-date: header missing");
	if (sign_parse_date(hdate, &date, err) < 0)
		return -1;
	*reason = "date_skew";
	if (date > now + SIGN_MAX_SKEW_S || date < now - SIGN_MAX_SKEW_S)
		return ciel_err_field(
		    err, CIEL_EUNAUTH, "x-ciel-date",
		    "x-ciel-date: %s is more than 5 minutes from the node's clock", hdate);
	/* the replay cache is in memory: a restarted agent must not accept
	 * what its previous life may already have accepted */
	if ((int64_t)date < s->started_s)
		return ciel_err_field(err, CIEL_EUNAUTH, "x-ciel-date",
				      "x-ciel-date: %s is before this agent started; sign again",
				      hdate);
	*reason = "bad_signature";
	enc_sha256_hex(dbuf_str(body), body->len, body_sha);
	if (!hsha || strcmp(hsha, body_sha) != 0)
		return ciel_err_field(err, CIEL_EUNAUTH, "x-ciel-content-sha256",
				      "x-ciel-content-sha256: %s the SHA-256 of the body",
				      hsha ? "does not match" : "missing; must be");
	if (strcmp(au.key_id, s->key_id) != 0) {
		*reason = "unknown_key";
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: only this node's key is accepted here");
	}
	if (strcmp(au.scope, "region") != 0) {
		*reason = "scope_mismatch";
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: scope must be region");
	}
	sr = (struct sign_request){.method = method,
				   .path = path,
				   .query = query,
				   .host = host ? host : "",
				   .date = hdate,
				   .body_sha256_hex = body_sha,
				   .nonce = au.nonce};
	if (sign_compute(&sr, au.scope, s->secret, s->secret_len, sig, err) < 0) {
		/* malformed path or query encoding: it cannot match anything we sign */
		err->code = CIEL_EUNAUTH;
		return -1;
	}
	if (!enc_equal(sig, au.signature, 64))
		return ciel_err_field(err, CIEL_EUNAUTH, "authorization",
				      "authorization: signature does not match the request");
	*reason = "replayed";
	if (sign_replay_check(s->replay, au.signature, date, now, err) < 0) {
		if (err->code != CIEL_EUNAUTH)
			*reason = NULL;
		return -1;
	}
	*reason = NULL;
	return 0;
}

/* A decimal in [min, max] from a raw query value; -1 if anything else. */
static int parse_num(const char *v, size_t n, int64_t min, int64_t max, int64_t *out)
{
	int64_t x = 0;

	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	if (x < min || x > max)
		return -1;
	*out = x;
	return 0;
}

static int parse_query(const char *q, int64_t *offset, int64_t *limit, struct ciel_err *err)
{
	*offset = 0;
	*limit = LOGSRV_LIMIT_DEFAULT;
	while (q && *q) {
		size_t n = strcspn(q, "&"), k = strcspn(q, "=");
		const char *v = q + k + 1;
		size_t vn = k < n ? n - k - 1 : 0;

		if (k < n && k == 6 && memcmp(q, "offset", 6) == 0) {
			if (parse_num(v, vn, 0, INT64_MAX / 2, offset) < 0)
				return ciel_err_field(err, CIEL_EINVAL, "offset",
						      "offset: must be a byte offset >= 0");
		} else if (k < n && k == 5 && memcmp(q, "limit", 5) == 0) {
			if (parse_num(v, vn, 1, LOGSRV_LIMIT_MAX, limit) < 0)
				return ciel_err_field(err, CIEL_EINVAL, "limit",
						      "limit: must be 1 to %d bytes",
						      LOGSRV_LIMIT_MAX);
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return 0;
}

/*
 * Copy n bytes of in to out, invalid UTF-8 replaced by U+FFFD. A valid
 * character cut at the end is held back (*used < n) so the next read gets it
 * whole, unless nothing precedes it and may_hold is false (then it is
 * replaced, or a tiny limit would never make progress). -1 on allocation
 * failure.
 */
static int utf8_clean(const char *in, size_t n, int may_hold, struct dbuf *out, size_t *used)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, start = 0;

	while (i < n) {
		int k = utf8_seq(p + i, n - i);

		if (k > 0) {
			i += (size_t)k;
			continue;
		}
		if (k == 0 && (i > 0 || may_hold))
			break;
		dbuf_add(out, in + start, i - start);
		dbuf_add(out, "\xEF\xBF\xBD", 3);
		i += k == 0 ? n - i : (size_t)-k;
		start = i;
	}
	dbuf_add(out, in + start, i - start);
	*used = i;
	return out->nomem || out->toobig ? -1 : 0;
}

/*
 * The instance's directory into out: 1 if it exists; 0 if only its record
 * does (it never got as far as a container: no log yet); -1 if the node
 * does not know the instance.
 */
static int instance_dir(const struct logsrv *s, const char *tenant, const char *name, char *out,
			size_t size)
{
	char rec[4200];
	struct stat st;

	if ((size_t)snprintf(out, size, "%s/instances/%s/%s", s->state_dir, tenant, name) >= size)
		return -1;
	if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
		return 1;
	snprintf(rec, sizeof(rec), "%s.json", out);
	return access(rec, F_OK) == 0 ? 0 : -1;
}

static enum MHD_Result serve_log(struct logsrv *s, struct MHD_Connection *c, const char *tenant,
				 const char *name, const char *query)
{
	struct ciel_err err = {0};
	struct dbuf clean;
	char dir[4096], *raw = NULL;
	int64_t offset, limit, next = 0, first = 0, start;
	size_t len = 0, used;
	int known;
	json_t *j;

	if (parse_query(query, &offset, &limit, &err) < 0)
		return send_error(c, &err, NULL);
	known = instance_dir(s, tenant, name, dir, sizeof(dir));
	if (known < 0) {
		ciel_err_set(&err, CIEL_ENOTFOUND, "instance %s/%s not found on this node", tenant,
			     name);
		return send_error(c, &err, NULL);
	}
	if (!known) {
		next = first = 0;
	} else if (oci_log_read(dir, offset, (size_t)limit, &raw, &len, &next, &first, &err) < 0) {
		/* not found: removed between our look and the read */
		if (err.code != CIEL_ENOTFOUND)
			log_warn("log read failed tenant=%s name=%s: %s", tenant, name, err.msg);
		return send_error(c, &err, NULL);
	}
	start = next - (int64_t)len;
	dbuf_init(&clean, (size_t)LOGSRV_LIMIT_MAX * 3 + 16);
	if (utf8_clean(raw ? raw : "", len, len < (size_t)limit, &clean, &used) < 0) {
		free(raw);
		dbuf_release(&clean);
		return MHD_NO;
	}
	free(raw);
	next = start + (int64_t)used;
	j = json_pack("{s:o, s:I, s:I, s:I}", "data", json_stringn(dbuf_str(&clean), clean.len),
		      "offset", (json_int_t)start, "next", (json_int_t)next, "first",
		      (json_int_t)first);
	dbuf_release(&clean);
	log_debug("log read tenant=%s name=%s offset=%" PRId64 " next=%" PRId64, tenant, name,
		  start, next);
	return send_json(c, 200, j);
}

/* Split "/v1/logs/<tenant>/<name>" into valid names; -1 if it is not that. */
static int parse_path(const char *path, char *tenant, char *name, size_t size)
{
	static const char prefix[] = "/v1/logs/";
	const char *t = path + sizeof(prefix) - 1, *slash;

	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	slash = strchr(t, '/');
	if (!slash || (size_t)(slash - t) >= size || strlen(slash + 1) >= size)
		return -1;
	memcpy(tenant, t, (size_t)(slash - t));
	tenant[slash - t] = '\0';
	snprintf(name, size, "%s", slash + 1);
	return agent_name_valid(tenant) && agent_name_valid(name) ? 0 : -1;
}

static enum MHD_Result respond(struct logsrv *s, struct MHD_Connection *c, const char *method,
			       struct lreq *h)
{
	struct ciel_err err = {0};
	char tenant[64], name[64];
	const char *reason, *query;
	char *q;

	q = strchr(h->uri, '?');
	if (q)
		*q++ = '\0';
	query = q ? q : "";
	if (h->body.toobig) {
		ciel_err_set(&err, CIEL_ETOOBIG, "request body: more than %d bytes",
			     LOGSRV_BODY_MAX);
		return send_error(c, &err, NULL);
	}
	if (authenticate(s, c, method, h->uri, query, &h->body, &reason, &err) < 0) {
		log_warn("log request refused path=%s reason=%s", h->uri, reason ? reason : "-");
		return send_error(c, &err, reason);
	}
	if (strcmp(method, "GET") != 0) {
		ciel_err_set(&err, CIEL_EMETHOD, "%s: only GET is served here", method);
		return send_error(c, &err, NULL);
	}
	if (parse_path(h->uri, tenant, name, sizeof(tenant)) < 0) {
		ciel_err_set(&err, CIEL_ENOTFOUND, "no such route: %s", h->uri);
		return send_error(c, &err, NULL);
	}
	return serve_log(s, c, tenant, name, query);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct lreq *h = *con_cls;

	(void)url;
	(void)version;
	if (!h)
		return MHD_NO;
	if (!h->started) {
		h->started = 1;
		return MHD_YES;
	}
	if (*upload_size) {
		/* past the cap the rest is read and dropped; toobig answers 413 */
		dbuf_add(&h->body, upload, *upload_size);
		if (h->body.nomem)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	return respond(cls, c, method, h);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_debug("logsrv httpd %s", msg);
}

/* Bind and listen; fills s->url from the address the kernel actually gave. */
static int listen_socket(struct logsrv *s, const char *listen_addr, struct ciel_err *err)
{
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN];
	int loopback;

	if (netaddr_parse(listen_addr, 1, &ss, &loopback, err) < 0)
		return -1;
	s->fd = netaddr_listen(&ss, listen_addr, 64, err);
	if (s->fd < 0) {
		ciel_err_prefix(err, "log server: ");
		return -1;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(s->url, sizeof(s->url), "http://[%s]:%u", ip, ntohs(s6->sin6_port));
		if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr))
			log_warn("log server listens on every address url=%s: cield must be told "
				 "a reachable one; logs travel unencrypted",
				 s->url);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(s->url, sizeof(s->url), "http://%s:%u", ip, ntohs(s4->sin_port));
		if (s4->sin_addr.s_addr == htonl(INADDR_ANY))
			log_warn("log server listens on every address url=%s: cield must be told "
				 "a reachable one; logs travel unencrypted",
				 s->url);
	}
	return 0;
}

int logsrv_start(struct logsrv **out, const struct logsrv_config *cfg, struct ciel_err *err)
{
	/* poll, not select: select() cannot watch a descriptor above 1023 */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
	struct logsrv *s;

	*out = NULL;
	if (!cfg->key_id || !*cfg->key_id || strlen(cfg->key_id) > SIGN_KEY_ID_MAX ||
	    !cfg->secret || !*cfg->secret)
		return ciel_err_set(err, CIEL_EINVAL, "log server: no node key to verify with");
	s = calloc(1, sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	s->fd = -1;
	s->started_s = (int64_t)time(NULL);
	snprintf(s->key_id, sizeof(s->key_id), "%s", cfg->key_id);
	s->secret = strdup(cfg->secret);
	s->secret_len = strlen(cfg->secret);
	s->state_dir = strdup(cfg->state_dir);
	s->replay = sign_replay_new();
	if (!s->secret || !s->state_dir || !s->replay) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto fail;
	}
	if (listen_socket(s, cfg->listen, err) < 0)
		goto fail;
	if (strchr(s->url, '['))
		flags |= MHD_USE_IPv6;
	/* the logger first: MHD reports options given before it on stderr itself */
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s, MHD_OPTION_EXTERNAL_LOGGER,
				mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, s->fd,
				MHD_OPTION_URI_LOG_CALLBACK, uri_cb, s, MHD_OPTION_NOTIFY_COMPLETED,
				completed_cb, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
	if (!s->d) {
		ciel_err_set(err, CIEL_EIO, "log server: cannot start on %s", cfg->listen);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	logsrv_stop(s);
	return -1;
}

const char *logsrv_url(const struct logsrv *s)
{
	return s->url;
}

void logsrv_stop(struct logsrv *s)
{
	if (!s)
		return;
	if (s->d)
		MHD_stop_daemon(s->d);
	if (s->fd >= 0)
		close(s->fd);
	if (s->secret) {
		explicit_bzero(s->secret, s->secret_len);
		free(s->secret);
	}
	sign_replay_free(s->replay);
	free(s->state_dir);
	free(s);
}
