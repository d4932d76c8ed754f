/* http — see http.h. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <microhttpd.h>

#include "api/http.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/enc.h"
#include "util/dbuf.h"
#include "util/netaddr.h"
#include "util/log.h"

struct http_server {
	struct MHD_Daemon *d;
	int fd;
	struct api *api;
	char *cert, *key;
};

/* Per request state, created by the URI callback before any header is parsed. */
struct hreq {
	char *uri;
	struct dbuf body; /* at most API_BODY_MAX */
	int too_big;	  /* answer 413; the body is dropped, the rest of it read and ignored */
	int started;
	int64_t received_s;
	struct ciel_err refused; /* precheck of an upload said no (code != 0) */
	/* ROUTE_UPLOAD: the body goes to a file, hashed as it comes */
	int up_fd;
	char *up_path;
	EVP_MD_CTX *up_md;
	uint64_t up_len;
	char up_sha[65];
};

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct hreq *h = calloc(1, sizeof(*h));

	(void)cls;
	(void)c;
	if (h) {
		h->uri = strdup(uri ? uri : "/");
		h->up_fd = -1;
		dbuf_init(&h->body, API_BODY_MAX);
	}
	return h;
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct hreq *h = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (!h)
		return;
	free(h->uri);
	dbuf_release(&h->body);
	if (h->up_fd >= 0)
		close(h->up_fd);
	if (h->up_path) {
		unlink(h->up_path); /* whatever the handler kept, it copied */
		free(h->up_path);
	}
	EVP_MD_CTX_free(h->up_md);
	free(h);
	*con_cls = NULL;
}

static void source_of(struct MHD_Connection *c, char *out, size_t size)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (ci && ci->client_addr) {
		if (ci->client_addr->sa_family == AF_INET) {
			const struct sockaddr_in *s = (const struct sockaddr_in *)ci->client_addr;

			inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
			port = ntohs(s->sin_port);
		} else if (ci->client_addr->sa_family == AF_INET6) {
			const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ci->client_addr;

			inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
			port = ntohs(s->sin6_port);
		}
	}
	snprintf(out, size, "%s:%d", ip, port);
}

/* A streamed body (api_resp.stream) as MHD's content reader wants it. */
struct hstream {
	long (*fn)(void *arg, char *buf, size_t max);
	void *arg;
	void (*free)(void *arg);
};

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct hstream *hs = cls;
	long n;

	(void)pos;
	n = hs->fn(hs->arg, buf, max);
	if (n < 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free_cb(void *cls)
{
	struct hstream *hs = cls;

	if (hs->free)
		hs->free(hs->arg);
	free(hs);
}

static enum MHD_Result respond(struct http_server *s, struct MHD_Connection *c, const char *method,
			       struct hreq *h)
{
	struct api_req r = {0};
	struct api_resp resp;
	struct MHD_Response *mr;
	char *q, *text = NULL;
	size_t text_len = 0;
	enum MHD_Result ret;

	q = strchr(h->uri, '?');
	if (q)
		*q++ = '\0';
	r.method = method;
	r.raw_path = h->uri;
	r.raw_query = q ? q : "";
	r.host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	r.h_date = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ciel-Date");
	r.h_content_sha256 =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ciel-Content-Sha256");
	r.h_authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	r.body = dbuf_str(&h->body);
	r.body_len = h->body.len;
	r.too_big = h->too_big;
	r.received_s = h->received_s;
	if (h->refused.code)
		r.refused = &h->refused;
	if (h->up_path) {
		unsigned char md[32];
		unsigned int mdlen = 0;

		if (h->up_fd >= 0) {
			close(h->up_fd);
			h->up_fd = -1;
		}
		if (EVP_DigestFinal_ex(h->up_md, md, &mdlen) == 1 && mdlen == 32)
			enc_hex(md, 32, h->up_sha);
		r.body_file = h->up_path;
		r.body_sha256 = h->up_sha;
	}
	source_of(c, r.source, sizeof(r.source));

	api_handle(s->api, &r, &resp);
	if (resp.stream) {
		struct hstream *hs = malloc(sizeof(*hs));

		mr = NULL;
		if (hs) {
			*hs = (struct hstream){resp.stream, resp.stream_arg, resp.stream_free};
			/* MHD owns the cursor from here and frees it when the response goes */
			mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
							       stream_cb, hs, stream_free_cb);
			if (mr)
				resp.stream_arg = NULL;
			else
				free(hs);
		}
	} else if (resp.raw) {
		mr = MHD_create_response_from_buffer(resp.raw_len, resp.raw, MHD_RESPMEM_MUST_FREE);
		resp.raw = NULL;
	} else {
		if (resp.json)
			text = json_dumps(resp.json, JSON_COMPACT);
		if (text) {
			text_len = strlen(text);
			text[text_len] = '\0';
		}
		mr = MHD_create_response_from_buffer(text ? text_len : 0, text ? text : (void *)"",
						     text ? MHD_RESPMEM_MUST_FREE
							  : MHD_RESPMEM_PERSISTENT);
		resp.content_type = "application/json";
	}
	if (!mr) {
		api_resp_release(&resp);
		api_req_release(&r);
		return MHD_NO;
	}
	MHD_add_response_header(mr, "Content-Type", resp.content_type);
	MHD_add_response_header(mr, "X-Request-Id", r.request_id);
	MHD_add_response_header(mr, "Cache-Control", "no-store");
	if (resp.status == 405 && resp.allow[0])
		MHD_add_response_header(mr, "Allow", resp.allow);
	if (resp.retry_after_s > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", resp.retry_after_s);
		MHD_add_response_header(mr, "Retry-After", ra);
	}
	ret = MHD_queue_response(c, (unsigned)resp.status, mr);
	MHD_destroy_response(mr);
	api_resp_release(&resp);
	api_req_release(&r);
	return ret;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* An upload must be signed by a key that may use its route before a byte is spooled. */
static int upload_precheck(struct http_server *s, struct MHD_Connection *c, const char *method,
			   struct hreq *h)
{
	struct api_req r = {0};
	char *q = strchr(h->uri, '?');
	int ret;

	if (q)
		*q = '\0';
	r.method = method;
	r.raw_path = h->uri;
	r.raw_query = q ? q + 1 : "";
	r.host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	r.h_date = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ciel-Date");
	r.h_content_sha256 =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ciel-Content-Sha256");
	r.h_authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	ret = api_upload_precheck(s->api, &r, &h->refused);
	if (ret < 0 && !h->refused.code)
		h->refused.code = CIEL_EINTERNAL;
	api_req_release(&r);
	if (q)
		*q = '?';
	return ret;
}

/* A temp file in DATA/uploads for a large body; removed when the request ends. */
static int spool_open(struct http_server *s, struct hreq *h)
{
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s/uploads", s->api->data_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		goto fail;
	if (asprintf(&h->up_path, "%s/up-XXXXXX", dir) < 0) {
		h->up_path = NULL;
		return -1;
	}
	h->up_fd = mkostemp(h->up_path, O_CLOEXEC);
	if (h->up_fd < 0) {
		free(h->up_path);
		h->up_path = NULL;
		goto fail;
	}
	h->up_md = EVP_MD_CTX_new();
	if (!h->up_md || EVP_DigestInit_ex(h->up_md, EVP_sha256(), NULL) != 1)
		return -1;
	return 0;
fail:
	log_warn("cannot spool an upload in %s: %s", dir, strerror(errno));
	return -1;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct http_server *s = cls;
	struct hreq *h = *con_cls;

	(void)url;
	(void)version;
	if (!h)
		return MHD_NO;
	if (!h->started) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		char *q = strchr(h->uri, '?');
		int upload;

		h->started = 1;
		h->received_s = (int64_t)time(NULL);
		if (q)
			*q = '\0';
		upload = api_route_is_upload(method, h->uri);
		if (q)
			*q = '?';
		/* refuse an oversized body before reading it */
		if (cl && strtoull(cl, NULL, 10) > (upload ? API_UPLOAD_MAX : API_BODY_MAX)) {
			h->too_big = 1;
			return respond(s, c, method, h);
		}
		if (upload && upload_precheck(s, c, method, h) < 0) {
			h->too_big = 0;
			return respond(s, c, method, h);
		}
		if (upload && spool_open(s, h) < 0)
			return MHD_NO;
		return MHD_YES;
	}
	if (*upload_size && h->up_path) {
		if (!h->too_big) {
			h->up_len += *upload_size;
			if (h->up_len > API_UPLOAD_MAX) {
				h->too_big = 1;
			} else if (EVP_DigestUpdate(h->up_md, upload, *upload_size) != 1 ||
				   write_all(h->up_fd, upload, *upload_size) < 0) {
				log_warn("upload spool write failed: %s", strerror(errno));
				return MHD_NO;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!h->too_big && dbuf_add(&h->body, upload, *upload_size) < 0) {
			if (!h->body.toobig)
				return MHD_NO; /* out of memory: drop the connection */
			h->too_big = 1;
			dbuf_release(&h->body);
		}
		*upload_size = 0;
		return MHD_YES;
	}
	return respond(s, c, method, h);
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
	log_debug("httpd %s", msg);
}

int http_start(struct http_server **out, struct api *a, const struct http_opts *o,
	       struct ciel_err *err)
{
	/* poll, not select: select() cannot watch a descriptor above 1023 */
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG;
	struct sockaddr_storage ss;
	struct http_server *s;
	int loopback = 0;

	*out = NULL;
	if (netaddr_parse(o->listen, 0, &ss, &loopback, err) < 0)
		return -1;
	if (o->insecure && !loopback)
		return ciel_err_field(err, CIEL_EINVAL, "listen",
				      "plain HTTP is only allowed on a loopback address, not %s",
				      o->listen);
	if (!o->insecure && (!o->cert_pem || !o->key_pem))
		return ciel_err_set(err, CIEL_EINVAL, "TLS needs a certificate and a key");
	s = calloc(1, sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	s->api = a;
	s->fd = netaddr_listen(&ss, o->listen, 1024, err);
	if (s->fd < 0) {
		free(s);
		return -1;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (!o->insecure) {
		flags |= MHD_USE_TLS;
		s->cert = strdup(o->cert_pem);
		s->key = strdup(o->key_pem);
	}
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s, MHD_OPTION_LISTEN_SOCKET, s->fd,
				MHD_OPTION_URI_LOG_CALLBACK, uri_cb, s, MHD_OPTION_NOTIFY_COMPLETED,
				completed_cb, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				o->insecure ? MHD_OPTION_END : MHD_OPTION_HTTPS_MEM_CERT, s->cert,
				MHD_OPTION_HTTPS_MEM_KEY, s->key, MHD_OPTION_END);
	if (!s->d) {
		close(s->fd);
		free(s->cert);
		free(s->key);
		free(s);
		return ciel_err_set(err, CIEL_EIO,
				    "cannot start the HTTP server on %s (bad TLS material?)",
				    o->listen);
	}
	*out = s;
	return 0;
}

void http_stop(struct http_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	close(s->fd);
	free(s->cert);
	free(s->key);
	free(s);
}
