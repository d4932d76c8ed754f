/*
 * client — see client.h. One libcurl easy handle per struct client:
 * curl_easy_reset() between requests clears the options but keeps the
 * connection cache, so a CLI command that makes several calls pays for one
 * TLS handshake. Answers are buffered up to CLIENT_BODY_MAX; larger ones are
 * refused rather than grown without bound.
 */
#include "client/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "auth/sign.h"
#include "crypto/enc.h"
#include "util/dbuf.h"
#include "util/ts.h"

/* Copy src into a fixed field; -1 if it does not fit. */
static int set_field(char *dst, size_t size, const char *src, const char *what,
		     struct ciel_err *err)
{
	if ((size_t)snprintf(dst, size, "%s", src) >= size) {
		dst[0] = '\0';
		return ciel_err_field(err, CIEL_EINVAL, what, "%s: too long", what);
	}
	return 0;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* First non-NULL, non-empty of a, b, c; NULL if none. */
static const char *pick(const char *a, const char *b, const char *c)
{
	if (a && *a)
		return a;
	if (b && *b)
		return b;
	if (c && *c)
		return c;
	return NULL;
}

int client_resolve(struct client_config *cfg, const struct client_opts *o, struct ciel_err *err)
{
	struct profile *p;
	struct ciel_err perr;
	const char *name, *file, *v;
	int ret = -1;

	memset(cfg, 0, sizeof(*cfg));
	p = calloc(1, sizeof(*p));
	if (!p)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");

	name = pick(o->profile, env("CIEL_PROFILE"), NULL);
	cfg->profile_explicit = name != NULL;
	if (set_field(cfg->profile, sizeof(cfg->profile), name ? name : "default", "profile", err) <
	    0)
		goto out;
	file = pick(o->credentials_file, env("CIEL_CREDENTIALS_FILE"), NULL);
	if (file) {
		if (set_field(cfg->credentials_file, sizeof(cfg->credentials_file), file,
			      "credentials", err) < 0)
			goto out;
	} else if (profile_default_path(cfg->credentials_file, sizeof(cfg->credentials_file),
					&perr) < 0) {
		cfg->credentials_file[0] = '\0'; /* no HOME: flags and env only */
	}

	if (cfg->credentials_file[0]) {
		if (profile_load(cfg->credentials_file, cfg->profile, p, &perr) == 0) {
			cfg->profile_found = true;
		} else if (perr.code != CIEL_ENOTFOUND || cfg->profile_explicit) {
			if (err)
				*err = perr;
			if (perr.code == CIEL_ENOTFOUND)
				ciel_err_prefix(err, "profile '%s': ", cfg->profile);
			goto out;
		}
	} else if (cfg->profile_explicit) {
		ciel_err_set(err, CIEL_ENOTFOUND, "profile '%s': no credentials file (HOME unset)",
			     cfg->profile);
		goto out;
	}

	v = pick(o->endpoint, env("CIEL_ENDPOINT"), p->endpoint);
	if (set_field(cfg->endpoint, sizeof(cfg->endpoint), v ? v : CLIENT_DEFAULT_ENDPOINT,
		      "endpoint", err) < 0)
		goto out;
	v = pick(o->key_id, env("CIEL_KEY_ID"), p->key_id);
	if (v && set_field(cfg->key_id, sizeof(cfg->key_id), v, "key_id", err) < 0)
		goto out;
	v = pick(o->secret, env("CIEL_SECRET"), p->secret);
	if (v && set_field(cfg->secret, sizeof(cfg->secret), v, "secret", err) < 0)
		goto out;
	v = pick(o->scope, env("CIEL_SCOPE"), p->scope);
	if (v && set_field(cfg->scope, sizeof(cfg->scope), v, "scope", err) < 0)
		goto out;
	v = pick(o->ca_file, env("CIEL_CA_FILE"), p->ca_file);
	if (v && set_field(cfg->ca_file, sizeof(cfg->ca_file), v, "ca_file", err) < 0)
		goto out;
	ret = 0;
out:
	explicit_bzero(p, sizeof(*p));
	free(p);
	return ret;
}

int client_init(struct client *c, const struct client_config *cfg, struct ciel_err *err)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	size_t n;
	int ret = -1;

	memset(c, 0, sizeof(*c));
	c->cfg = *cfg;
	c->timeout_ms = 60000;
	c->connect_timeout_ms = 5000;

	u = curl_url();
	if (!u) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, cfg->endpoint, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		ciel_err_field(err, CIEL_EINVAL, "endpoint",
			       "endpoint '%s': not a URL like https://HOST:PORT", cfg->endpoint);
		goto out;
	}
	if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
		ciel_err_field(err, CIEL_EINVAL, "endpoint", "endpoint '%s': scheme must be https",
			       cfg->endpoint);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && strcmp(path, "/") != 0 &&
	    path[0]) {
		/* the signed path must be the path the server sees: no prefixes */
		ciel_err_field(err, CIEL_EINVAL, "endpoint",
			       "endpoint '%s': must not have a path (just https://HOST:PORT)",
			       cfg->endpoint);
		goto out;
	}
	snprintf(c->host, sizeof(c->host), "%s:%s", host, port);
	if (set_field(c->base, sizeof(c->base), cfg->endpoint, "endpoint", err) < 0)
		goto out;
	n = strlen(c->base);
	while (n > 0 && c->base[n - 1] == '/')
		c->base[--n] = '\0';

	c->curl = curl_easy_init();
	if (!c->curl) {
		ciel_err_set(err, CIEL_EINTERNAL, "curl_easy_init failed");
		goto out;
	}
	ret = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(u);
	if (ret < 0)
		explicit_bzero(&c->cfg, sizeof(c->cfg));
	return ret;
}

void client_release(struct client *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	c->curl = NULL;
	explicit_bzero(&c->cfg, sizeof(c->cfg));
}

bool client_has_key(const struct client *c)
{
	return c->cfg.key_id[0] && c->cfg.secret[0];
}

void client_response_release(struct client_response *r)
{
	json_decref(r->json);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* Transfer state shared with the curl callbacks. */
struct xfer {
	struct client_response *resp;
	struct client_request_opts *ro;
	struct dbuf body; /* at most CLIENT_BODY_MAX */
	bool sink_failed;
};

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems, k;
	const char *v;

	if (n > 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* a new response (after 100-continue or a redirect): start over */
		const char *sp = memchr(data, ' ', n);

		x->resp->request_id[0] = '\0';
		x->resp->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return n;
	}
	k = sizeof("x-request-id:") - 1;
	if (n > k && strncasecmp(data, "x-request-id:", k) == 0) {
		v = data + k;
		while (v < data + n && (*v == ' ' || *v == '\t'))
			v++;
		k = (size_t)(data + n - v);
		while (k > 0 && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' '))
			k--;
		if (k >= sizeof(x->resp->request_id))
			k = sizeof(x->resp->request_id) - 1;
		memcpy(x->resp->request_id, v, k);
		x->resp->request_id[k] = '\0';
	}
	return n;
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;

	if (x->ro && x->ro->sink && x->resp->status >= 200 && x->resp->status < 300) {
		if (fwrite(data, 1, n, x->ro->sink) != n) {
			x->sink_failed = true;
			return 0;
		}
		x->ro->sink_bytes += n;
		return n;
	}
	if (dbuf_add(&x->body, data, n) < 0)
		return 0; /* aborts the transfer */
	return n;
}

static struct curl_slist *add_header(struct curl_slist *h, bool *oom, const char *name,
				     const char *value)
{
	char line[1024];
	struct curl_slist *n;

	if (*oom)
		return h;
	/* "Name: " with nothing after it makes curl drop a header of its own */
	if ((size_t)snprintf(line, sizeof(line), "%s: %s", name, value) >= sizeof(line)) {
		*oom = true;
		return h;
	}
	n = curl_slist_append(h, line);
	if (!n) {
		*oom = true;
		return h;
	}
	return n;
}

/* The options every transfer of c shares: reset, URL, headers, answer
 * callbacks into x, TLS verification. The caller adds the method, body and
 * timeouts. url, hdrs, x and errbuf must outlive the transfer. */
static void setup_transfer(struct client *c, const char *url, struct curl_slist *hdrs,
			   struct xfer *x, char *errbuf)
{
	CURL *h = c->curl;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->cfg.ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_file);
}

/* base + path + "?" + query, malloc'd; NULL if out of memory. */
static char *make_url(const struct client *c, const char *path, const char *query)
{
	size_t n = strlen(c->base) + strlen(path) + (query ? strlen(query) : 0) + 2;
	char *url = malloc(n);

	if (url)
		snprintf(url, n, "%s%s%s%s", c->base, path, query && *query ? "?" : "",
			 query && *query ? query : "");
	return url;
}

/* Run the transfer set up on c and fill x->resp; 0 if an answer came back. */
static int perform(struct client *c, struct xfer *x, const char *method, const char *path,
		   const char *errbuf, struct ciel_err *err)
{
	struct client_response *resp = x->resp;
	CURL *h = c->curl;
	char *ct = NULL;
	CURLcode rc;

	rc = curl_easy_perform(h);
	c->last_curl_code = (int)rc;
	if (rc != CURLE_OK) {
		if (x->body.toobig)
			return ciel_err_set(err, CIEL_ETOOBIG, "%s %s: answer larger than %u bytes",
					    method, path, CLIENT_BODY_MAX);
		if (x->body.nomem)
			return ciel_err_set(err, CIEL_ENOMEM, "%s %s: answer: out of memory",
					    method, path);
		if (x->sink_failed)
			return ciel_err_sys(err, CIEL_EIO, errno, "%s %s: write output", method,
					    path);
		return ciel_err_set(err, CIEL_EUNAVAIL, "%s: %s", c->base,
				    errbuf[0] ? errbuf : curl_easy_strerror(rc));
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(resp->content_type, sizeof(resp->content_type), "%s", ct ? ct : "");
	if (x->body.buf) {
		/* cannot fail: the buffer is allocated */
		resp->body = dbuf_detach(&x->body, &resp->body_len);
		if (strstr(resp->content_type, "json") && !strstr(resp->content_type, "ndjson"))
			resp->json = json_loadb(resp->body, resp->body_len, 0, NULL);
	}
	return 0;
}

int client_request(struct client *c, const char *method, const char *path, const char *query,
		   const json_t *body, struct client_response *resp, struct ciel_err *err)
{
	return client_request_ex(c, method, path, query, body, NULL, resp, err);
}

int client_request_ex(struct client *c, const char *method, const char *path, const char *query,
		      const json_t *body, struct client_request_opts *ro,
		      struct client_response *resp, struct ciel_err *err)
{
	struct curl_slist *hdrs = NULL;
	struct xfer x = {.resp = resp, .ro = ro};
	char *payload = NULL, *url = NULL, errbuf[CURL_ERROR_SIZE] = "";
	char date[17], sha[65], auth[512];
	bool has_body = body != NULL, oom = false;
	size_t payload_len = 0;
	CURL *h = c->curl;
	int ret = -1;

	dbuf_init(&x.body, CLIENT_BODY_MAX);
	client_response_release(resp);
	c->last_curl_code = 0;
	if (ro)
		ro->sink_bytes = 0;
	if (!h)
		return ciel_err_set(err, CIEL_EINTERNAL, "client not initialised");
	if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		has_body = true;
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		if (!payload) {
			ciel_err_set(err, CIEL_ENOMEM, "encode request body: out of memory");
			goto out;
		}
		payload_len = strlen(payload);
	}

	url = make_url(c, path, query);
	if (!url) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}

	hdrs = add_header(hdrs, &oom, "Host", c->host);
	hdrs = add_header(hdrs, &oom, "Accept", "application/json");
	hdrs = add_header(hdrs, &oom, "Expect", ""); /* no 100-continue round trip */
	if (has_body)
		hdrs = add_header(hdrs, &oom, "Content-Type", "application/json");
	if (client_has_key(c)) {
		/* sign_client() draws a fresh nonce: no two requests share a signature */
		if (sign_client(method, path, query, c->host, payload ? payload : "", payload_len,
				c->cfg.key_id, c->cfg.scope, c->cfg.secret, strlen(c->cfg.secret),
				time(NULL), date, sha, auth, sizeof(auth), err) < 0) {
			ciel_err_prefix(err, "sign request: ");
			goto out;
		}
		hdrs = add_header(hdrs, &oom, "X-Ciel-Date", date);
		hdrs = add_header(hdrs, &oom, "X-Ciel-Content-Sha256", sha);
		hdrs = add_header(hdrs, &oom, "Authorization", auth);
		explicit_bzero(auth, sizeof(auth));
	}
	if (oom) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}

	setup_transfer(c, url, hdrs, &x, errbuf);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	if (has_body) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)payload_len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);

	ret = perform(c, &x, method, path, errbuf, err);
out:
	if (h) {
		/* the options point at our stack: drop them before returning */
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	}
	curl_slist_free_all(hdrs);
	dbuf_release(&x.body);
	free(url);
	free(payload);
	return ret;
}

/*
 * Uploads. The body is hashed before anything is sent, because the
 * signature (and so the headers) must carry its SHA-256; then the same bytes
 * are read again as curl asks for them. The stall check is ours, not
 * CURLOPT_LOW_SPEED_*: curl's would also fire while the server, holding the
 * whole body, is still checking it, which for a large image takes a while.
 */
#define UPLOAD_CHUNK (256u << 10)
#define UPLOAD_ANSWER_WAIT_MS (10 * 60 * 1000) /* server's time to judge the body */

struct upload {
	FILE *f;
	int64_t size, read; /* bytes of the file, bytes handed to curl */
	int64_t sent;	    /* bytes curl reports sent */
	client_progress_fn progress;
	void *arg;
	/* bytes sent at each second since start_ms, the last LOW_SPEED_S + 1 of
	 * them: the stall check slides over the last minute */
	int64_t start_ms, second[CLIENT_UPLOAD_LOW_SPEED_S + 1];
	int64_t seconds;     /* seconds recorded so far */
	int64_t sent_before; /* sent at the previous call */
	int64_t done_ms;     /* when the last byte went out, 0 before */
	int read_errno;
	bool changed, stalled, no_answer;
};

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct upload *u = arg;
	size_t want = size * nitems, got;

	if ((int64_t)want > u->size - u->read)
		want = (size_t)(u->size - u->read);
	if (want == 0)
		return 0;
	got = fread(buf, 1, want, u->f);
	if (got == 0) {
		/* shorter than when it was hashed: the signature no longer fits */
		if (ferror(u->f))
			u->read_errno = errno ? errno : EIO;
		else
			u->changed = true;
		return CURL_READFUNC_ABORT;
	}
	u->read += (int64_t)got;
	return got;
}

static int on_xferinfo(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct upload *u = arg;
	int64_t now = ts_mono_ms(), sent = (int64_t)ulnow;
	const int64_t n = CLIENT_UPLOAD_LOW_SPEED_S + 1;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	u->sent = sent;
	if (u->progress)
		u->progress(u->arg, sent, u->size);
	if (sent >= u->size) {
		if (!u->done_ms)
			u->done_ms = now;
		if (now - u->done_ms > UPLOAD_ANSWER_WAIT_MS) {
			u->no_answer = true;
			return 1;
		}
		return 0;
	}
	/* a second skipped between two calls counts what had been sent then */
	for (int64_t t = (now - u->start_ms) / 1000; u->seconds <= t; u->seconds++)
		u->second[u->seconds % n] = u->seconds == t ? sent : u->sent_before;
	u->sent_before = sent;
	if (u->seconds <= CLIENT_UPLOAD_LOW_SPEED_S)
		return 0;
	/* the slot after the newest is the oldest: LOW_SPEED_S seconds ago */
	if (sent - u->second[u->seconds % n] <
	    (int64_t)CLIENT_UPLOAD_LOW_SPEED_BYTES * CLIENT_UPLOAD_LOW_SPEED_S) {
		u->stalled = true;
		return 1;
	}
	return 0;
}

/* SHA-256 of the rest of f, as hex; leaves f at its end. */
static int hash_file(FILE *f, const char *file, char hex[65], int64_t *len, struct ciel_err *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *buf = malloc(UPLOAD_CHUNK);
	size_t n;
	int ret = -1;

	*len = 0;
	if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		ciel_err_set(err, CIEL_ENOMEM, "hash %s: out of memory", file);
		goto out;
	}
	while ((n = fread(buf, 1, UPLOAD_CHUNK, f)) > 0) {
		if (EVP_DigestUpdate(ctx, buf, n) != 1) {
			ciel_err_set(err, CIEL_EINTERNAL, "hash %s: EVP_DigestUpdate failed", file);
			goto out;
		}
		*len += (int64_t)n;
	}
	if (ferror(f)) {
		ciel_err_sys(err, CIEL_EIO, errno, "read %s", file);
		goto out;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
		ciel_err_set(err, CIEL_EINTERNAL, "hash %s: EVP_DigestFinal_ex failed", file);
		goto out;
	}
	enc_hex(md, 32, hex);
	ret = 0;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* What sign_client() does, for a body hashed beforehand. */
static int sign_hashed(const struct client *c, const char *method, const char *path,
		       const char *query, const char *sha_hex, char date[17], char *auth,
		       size_t auth_size, struct ciel_err *err)
{
	struct sign_request r = {0};
	unsigned char raw[16];
	char nonce[33], sig[65];
	int ret;

	if (enc_random(raw, sizeof(raw), err) < 0)
		return -1;
	enc_hex(raw, sizeof(raw), nonce);
	sign_format_date(time(NULL), date);
	r.method = method;
	r.path = path;
	r.query = query;
	r.host = c->host;
	r.date = date;
	r.body_sha256_hex = sha_hex;
	r.nonce = nonce;
	if (sign_compute(&r, c->cfg.scope, c->cfg.secret, strlen(c->cfg.secret), sig, err) < 0)
		return -1;
	ret = sign_authorization(c->cfg.key_id, c->cfg.scope, nonce, sig, auth, auth_size, err);
	explicit_bzero(sig, sizeof(sig));
	return ret;
}

int client_upload(struct client *c, const char *method, const char *path, const char *query,
		  const char *file, client_progress_fn progress, void *arg,
		  struct client_response *out, struct ciel_err *err)
{
	struct curl_slist *hdrs = NULL;
	struct xfer x = {.resp = out};
	struct upload u = {.progress = progress, .arg = arg};
	char *url = NULL, errbuf[CURL_ERROR_SIZE] = "";
	char date[17], sha[65], auth[512];
	bool oom = false;
	struct stat st;
	CURL *h = c->curl;
	int ret = -1;

	dbuf_init(&x.body, CLIENT_BODY_MAX);
	client_response_release(out);
	c->last_curl_code = 0;
	if (!h)
		return ciel_err_set(err, CIEL_EINTERNAL, "client not initialised");
	u.f = fopen(file, "rbe");
	if (!u.f)
		return ciel_err_sys(err, errno == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, errno,
				    "open %s", file);
	if (fstat(fileno(u.f), &st) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "stat %s", file);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ciel_err_field(err, CIEL_EINVAL, "file", "%s: not a regular file", file);
		goto out;
	}
	if (hash_file(u.f, file, sha, &u.size, err) < 0)
		goto out;
	if (fseeko(u.f, 0, SEEK_SET) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "rewind %s", file);
		goto out;
	}
	url = make_url(c, path, query);
	if (!url) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	hdrs = add_header(hdrs, &oom, "Host", c->host);
	hdrs = add_header(hdrs, &oom, "Accept", "application/json");
	hdrs = add_header(hdrs, &oom, "Expect", ""); /* no 100-continue round trip */
	hdrs = add_header(hdrs, &oom, "Content-Type", "application/octet-stream");
	hdrs = add_header(hdrs, &oom, "X-Ciel-Content-Sha256", sha);
	if (client_has_key(c)) {
		if (sign_hashed(c, method, path, query, sha, date, auth, sizeof(auth), err) < 0) {
			ciel_err_prefix(err, "sign request: ");
			goto out;
		}
		hdrs = add_header(hdrs, &oom, "X-Ciel-Date", date);
		hdrs = add_header(hdrs, &oom, "Authorization", auth);
		explicit_bzero(auth, sizeof(auth));
	}
	if (oom) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}

	setup_transfer(c, url, hdrs, &x, errbuf);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L); /* PUT, Content-Length from INFILESIZE */
	if (strcmp(method, "PUT") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u.size);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(h, CURLOPT_READDATA, &u);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)UPLOAD_CHUNK);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &u);
	u.start_ms = ts_mono_ms();

	ret = perform(c, &x, method, path, errbuf, err);
	if (ret < 0 && u.changed)
		ciel_err_field(err, CIEL_EIO, "file",
			       "%s changed while it was sent (was %" PRId64 " bytes when hashed)",
			       file, u.size);
	else if (ret < 0 && u.read_errno)
		ciel_err_sys(err, CIEL_EIO, u.read_errno, "read %s", file);
	else if (ret < 0 && u.stalled)
		ciel_err_set(err, CIEL_EUNAVAIL,
			     "%s: upload stalled: under %d bytes/s for %d s (%" PRId64
			     " of %" PRId64 " bytes sent)",
			     c->base, CLIENT_UPLOAD_LOW_SPEED_BYTES, CLIENT_UPLOAD_LOW_SPEED_S,
			     u.sent, u.size);
	else if (ret < 0 && u.no_answer)
		ciel_err_set(err, CIEL_EUNAVAIL, "%s: no answer %d s after the upload ended",
			     c->base, UPLOAD_ANSWER_WAIT_MS / 1000);
out:
	if (h) {
		/* the options point at our stack: drop them before returning */
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(h, CURLOPT_READDATA, NULL);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, NULL);
	}
	curl_slist_free_all(hdrs);
	dbuf_release(&x.body);
	free(url);
	fclose(u.f);
	return ret;
}

void client_response_error(const struct client_response *r, struct ciel_err *err, char *code_name,
			   size_t code_size, char *reason, size_t reason_size)
{
	const json_t *e = r->json ? json_object_get(r->json, "error") : NULL;
	const char *code = NULL, *msg = NULL, *field = NULL, *why = NULL;
	char fallback[64];
	int c = CIEL_EINTERNAL;

	if (json_is_object(e)) {
		code = json_string_value(json_object_get(e, "code"));
		msg = json_string_value(json_object_get(e, "message"));
		field = json_string_value(json_object_get(e, "field"));
		why = json_string_value(json_object_get(e, "reason"));
	}
	if (!code) {
		snprintf(fallback, sizeof(fallback), "http_%ld", r->status);
		code = fallback;
	} else {
		for (int i = 1; i < CIEL_CODE_MAX; i++)
			if (strcmp(ciel_code_name(i), code) == 0)
				c = i;
	}
	if (!msg) {
		/* not an API error body: show the start of what came back */
		if (r->body && r->body_len) {
			size_t n = strcspn(r->body, "\r\n");

			ciel_err_field(err, c, field ? field : "", "HTTP %ld: %.*s", r->status,
				       (int)(n > 200 ? 200 : n), r->body);
		} else {
			ciel_err_field(err, c, field ? field : "", "HTTP %ld", r->status);
		}
	} else {
		ciel_err_field(err, c, field ? field : "", "%s", msg);
	}
	if (code_name)
		snprintf(code_name, code_size, "%s", code);
	if (reason)
		snprintf(reason, reason_size, "%s", why ? why : "");
}

bool client_failed_connect(const struct client *c)
{
	return c->last_curl_code == CURLE_COULDNT_CONNECT ||
	       c->last_curl_code == CURLE_COULDNT_RESOLVE_HOST;
}

bool client_failed_tls(const struct client *c)
{
	switch (c->last_curl_code) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
		return true;
	default:
		return false;
	}
}

/* Percent-encode all but RFC 3986 unreserved characters and those in keep. */
static char *escape(const char *s, const char *keep)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
		    strchr(keep, *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

char *client_escape(const char *s)
{
	return escape(s, "");
}

int client_query_add(char *q, size_t size, const char *name, const char *value)
{
	size_t len = strlen(q);
	/* ':' '@' '/' ',' are legal in a query (RFC 3986 3.4) and keep RFC 3339
	 * times readable; signing canonicalises both spellings the same way */
	char *v = escape(value, ":@/,");
	int n;

	if (!v)
		return -1;
	n = snprintf(q + len, size - len, "%s%s=%s", len ? "&" : "", name, v);
	free(v);
	if (n < 0 || (size_t)n >= size - len) {
		q[len] = '\0';
		return -1;
	}
	return 0;
}
