/*
 * openai — the OpenAI-compatible surface of cield: /openai/v1/models,
 * /openai/v1/chat/completions and /openai/v1/completions, proxied to the
 * model's worker, with the tenant's token-per-minute quota, token metering
 * and an audit event per request.
 *
 * The worker (`ciel-llm serve`, run by the agent) listens on the url its
 * node reported and wants the bearer token it reported; cield speaks
 * HTTP/1.0 to it over a plain socket, so the answer comes unchunked and ends
 * when the worker closes. An SSE answer is relayed event by event as it
 * arrives (MHD runs one thread per connection: the relay may block on the
 * worker). cield always asks a stream for its usage chunk, reads the token
 * counts from it, and drops it again if the client did not ask for it.
 *
 * Store layout:
 *   /tenants/<t>/llmusage/<model>  {"requests","prompt_tokens","completion_tokens"}
 *   /region/llmusage/<model>       the same for the operator (public models)
 * Token totals are written in the commit of the request's audit event, whose
 * target is "/v1/models/<model>" and whose detail holds the counts
 * {"model","prompt_tokens","completion_tokens"} (+ "cancelled": true for a
 * stream the client left). Prompt and output text are never logged, audited
 * or stored.
 *
 * The quota counts tokens (prompt + completion) of requests that ended in
 * the last 60 s, in memory: a restarted cield starts with a fresh minute.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <netdb.h>
#include <poll.h>

#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/dbuf.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define WORKER_CONNECT_MS 5000
#define WORKER_IDLE_MS (300 * 1000) /* longest silence of a worker mid-answer */
#define WORKER_HEAD_MAX (16 << 10)
#define WORKER_BODY_MAX (16 << 20)
#define SSE_EVENT_MAX (1 << 20)

/* ---- the token-per-minute window ---- */

#define TPM_SLOTS 60

struct tpm {
	char tenant[API_NAME_MAX + 1];
	int64_t sec[TPM_SLOTS]; /* which second (monotonic) each slot counts */
	int64_t tok[TPM_SLOTS];
};

static pthread_mutex_t tpm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tpm *tpms;
static size_t n_tpms;

/* Under tpm_lock. NULL only when out of memory and create was asked. */
static struct tpm *tpm_get(const char *tenant, int create)
{
	struct tpm *t;

	for (size_t i = 0; i < n_tpms; i++)
		if (strcmp(tpms[i].tenant, tenant) == 0)
			return &tpms[i];
	if (!create)
		return NULL;
	t = realloc(tpms, (n_tpms + 1) * sizeof(*tpms));
	if (!t)
		return NULL;
	tpms = t;
	t = &tpms[n_tpms++];
	memset(t, 0, sizeof(*t));
	snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
	for (size_t i = 0; i < TPM_SLOTS; i++)
		t->sec[i] = -TPM_SLOTS;
	return t;
}

static int64_t now_s(void)
{
	return ts_mono_ms() / 1000;
}

static void tpm_add(const char *tenant, int64_t tokens)
{
	int64_t s = now_s();
	struct tpm *t;
	size_t slot = (size_t)(s % TPM_SLOTS);

	pthread_mutex_lock(&tpm_lock);
	t = tpm_get(tenant, 1);
	if (t) {
		if (t->sec[slot] != s) {
			t->sec[slot] = s;
			t->tok[slot] = 0;
		}
		t->tok[slot] += tokens;
	}
	pthread_mutex_unlock(&tpm_lock);
}

/* Tokens in the window; *retry_s: seconds until the window holds fewer than limit. */
static int64_t tpm_used(const char *tenant, int64_t limit, int *retry_s)
{
	int64_t s = now_s(), used = 0;
	struct tpm *t;

	if (retry_s)
		*retry_s = 1;
	pthread_mutex_lock(&tpm_lock);
	t = tpm_get(tenant, 0);
	for (size_t i = 0; t && i < TPM_SLOTS; i++)
		if (s - t->sec[i] < TPM_SLOTS)
			used += t->tok[i];
	if (t && retry_s && used >= limit) {
		int64_t left = used;

		/* oldest second first: when does enough of the window expire? */
		for (int64_t age = TPM_SLOTS - 1; age >= 0; age--) {
			size_t slot = (size_t)((s - age) % TPM_SLOTS);

			if (t->sec[slot] != s - age)
				continue;
			left -= t->tok[slot];
			if (left < limit) {
				*retry_s = (int)(TPM_SLOTS - age);
				break;
			}
		}
	}
	pthread_mutex_unlock(&tpm_lock);
	return used;
}

int64_t openai_tpm_used(const char *tenant)
{
	return tpm_used(tenant, INT64_MAX, NULL);
}

static int64_t tpm_limit(struct api *a, const char *tenant)
{
	struct ciel_err err = {0};
	char key[128];
	json_t *q;
	int64_t lim;

	if (!tenant[0] || strcmp(tenant, "region") == 0)
		return LLM_DEFAULT_TPM;
	snprintf(key, sizeof(key), "/tenants/%s/quota", tenant);
	q = api_load_json(a, key, NULL, &err);
	lim = jbody_int(q, "llm_tokens_per_minute", LLM_DEFAULT_TPM);
	json_decref(q);
	return lim;
}

/* ---- metering ---- */

static pthread_mutex_t usage_lock = PTHREAD_MUTEX_INITIALIZER;

static void usage_key(char *out, size_t size, const char *tenant, const char *model)
{
	if (tenant[0] && strcmp(tenant, "region") != 0)
		snprintf(out, size, "/tenants/%s/llmusage/%s", tenant, model);
	else
		snprintf(out, size, "/region/llmusage/%s", model);
}

/*
 * Add one request's tokens to the tenant's totals for model, committed with
 * r's audit event (target: the model and the counts).
 */
static int meter(struct api *a, struct api_req *r, const char *tenant, const char *model,
		 int64_t prompt, int64_t completion, int cancelled, struct ciel_err *err)
{
	char key[STORE_KEY_MAX], *val;
	struct store_op op;
	json_t *u;
	int ret;

	tpm_add(tenant, prompt + completion);
	snprintf(r->path, sizeof(r->path), "/v1/models/%s", model);
	json_decref(r->audit_detail);
	r->audit_detail =
	    json_pack("{s:s, s:I, s:I}", "model", model, "prompt_tokens", (json_int_t)prompt,
		      "completion_tokens", (json_int_t)completion);
	if (r->audit_detail && cancelled)
		json_object_set_new(r->audit_detail, "cancelled", json_true());
	usage_key(key, sizeof(key), tenant, model);
	pthread_mutex_lock(&usage_lock);
	u = api_load_json(a, key, NULL, err);
	if (!u && err->code != CIEL_ENOTFOUND) {
		pthread_mutex_unlock(&usage_lock);
		return -1;
	}
	if (!u)
		u = json_object();
	json_object_set_new(u, "requests", json_integer(jbody_int(u, "requests", 0) + 1));
	json_object_set_new(u, "prompt_tokens",
			    json_integer(jbody_int(u, "prompt_tokens", 0) + prompt));
	json_object_set_new(u, "completion_tokens",
			    json_integer(jbody_int(u, "completion_tokens", 0) + completion));
	val = api_dump(u);
	if (!val) {
		pthread_mutex_unlock(&usage_lock);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	op = (struct store_op){STORE_PUT, key, val, STORE_ANY_REV};
	ret = api_commit(a, r, &op, 1, 200, NULL, err);
	pthread_mutex_unlock(&usage_lock);
	free(val);
	return ret;
}

/* ---- errors ---- */

json_t *openai_error_body(int status, const struct ciel_err *err)
{
	const char *type = status >= 500 ? "server_error" : "invalid_request_error";
	const char *code = ciel_code_name(err->code);

	if (err->code == CIEL_EUNAUTH)
		code = "invalid_api_key";
	else if (err->code == CIEL_ENOTFOUND && strcmp(err->field, "model") == 0)
		code = "model_not_found";
	else if (status == 429)
		code = "rate_limit_exceeded";
	if (status == 429)
		type = "tokens";
	return json_pack("{s:{s:s, s:s, s:o, s:s}}", "error", "message", err->msg, "type", type,
			 "param", err->field[0] ? json_string(err->field) : json_null(), "code",
			 code);
}

/* ---- talking to the worker ---- */

static int parse_url(const char *url, char *host, size_t hsize, char *port, size_t psize)
{
	const char *p = url + 7, *colon = strrchr(p, ':');

	if (strncmp(url, "http://", 7) != 0 || !colon || colon == p)
		return -1;
	if (*p == '[' && colon[-1] == ']')
		snprintf(host, hsize, "%.*s", (int)(colon - p - 2), p + 1);
	else
		snprintf(host, hsize, "%.*s", (int)(colon - p), p);
	snprintf(port, psize, "%s", colon + 1);
	return 0;
}

static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = ev};
	int n;

	do
		n = poll(&pfd, 1, ms);
	while (n < 0 && errno == EINTR);
	return n > 0 ? 0 : -1;
}

static int worker_connect(const char *url, struct ciel_err *err)
{
	char host[256], port[16];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai, *p;
	int fd = -1, rc;

	if (parse_url(url, host, sizeof(host), port, sizeof(port)) < 0)
		return ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker url is malformed");
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc)
		return ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker %s: %s", url,
				    gai_strerror(rc));
	for (p = ai; p; p = p->ai_next) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    p->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && wait_fd(fd, POLLOUT, WORKER_CONNECT_MS) == 0 &&
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0))
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return ciel_err_set(err, CIEL_EUNAVAIL,
				    "the model's worker does not answer; it may be restarting, "
				    "retry shortly");
	return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w;

		if (wait_fd(fd, POLLOUT, WORKER_IDLE_MS) < 0)
			return -1;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Up to max bytes; 0 at the end, -1 on error or a silent worker. */
static ssize_t recv_some(int fd, char *buf, size_t max)
{
	ssize_t n;

	for (;;) {
		if (wait_fd(fd, POLLIN, WORKER_IDLE_MS) < 0)
			return -1;
		n = recv(fd, buf, max, 0);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN)
			return -1;
	}
}

struct worker_answer {
	int status;
	int sse;
	int64_t content_length; /* -1 if not given */
	char content_type[96];
	struct dbuf rest; /* body bytes read together with the head */
};

static const char *header_value(const char *head, const char *name, char *out, size_t size)
{
	size_t n = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
		const char *v = l + 2, *e;

		if (strncasecmp(v, name, n) != 0 || v[n] != ':')
			continue;
		v += n + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		e = strstr(v, "\r\n");
		snprintf(out, size, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
		return out;
	}
	return NULL;
}

/* Send the request, read the answer's head. */
static int worker_call(int fd, const json_t *doc, const char *path, const char *body,
		       size_t body_len, struct worker_answer *wa, struct ciel_err *err)
{
	const json_t *w = json_object_get(doc, "worker");
	const char *url = jbody_str(w, "url", ""), *end;
	struct dbuf head;
	char buf[4096], v[96];
	int ret = -1;

	dbuf_init(&head, DBUF_NO_MAX);
	dbuf_init(&wa->rest, WORKER_BODY_MAX);
	wa->content_length = -1;
	dbuf_printf(&head,
		    "POST %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		    path, url + 7, jbody_str(w, "token", ""), body_len);
	if (head.nomem || send_all(fd, head.buf, head.len) < 0 ||
	    send_all(fd, body, body_len) < 0) {
		ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker closed the connection");
		goto out;
	}
	explicit_bzero(head.buf, head.len); /* it held the worker's token */
	dbuf_release(&head);
	dbuf_init(&head, WORKER_HEAD_MAX);
	while (!(end = strstr(dbuf_str(&head), "\r\n\r\n"))) {
		ssize_t n = recv_some(fd, buf, sizeof(buf));

		if (n <= 0 || dbuf_add(&head, buf, (size_t)n) < 0) {
			ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker sent no answer");
			goto out;
		}
	}
	if (sscanf(head.buf, "HTTP/1.%*d %d", &wa->status) != 1 || wa->status < 100 ||
	    wa->status > 599) {
		ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker sent a malformed answer");
		goto out;
	}
	if (dbuf_add(&wa->rest, end + 4, head.len - (size_t)(end + 4 - head.buf)) < 0) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	*(char *)(end + 2) = '\0'; /* headers end at the first empty line */
	if (header_value(head.buf, "Content-Type", wa->content_type, sizeof(wa->content_type)))
		wa->sse = strncasecmp(wa->content_type, "text/event-stream", 17) == 0;
	else
		snprintf(wa->content_type, sizeof(wa->content_type), "application/json");
	if (header_value(head.buf, "Content-Length", v, sizeof(v)))
		wa->content_length = strtoll(v, NULL, 10);
	if (header_value(head.buf, "Transfer-Encoding", v, sizeof(v)) &&
	    strcasecmp(v, "identity") != 0) {
		ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker answered chunked to HTTP/1.0");
		goto out;
	}
	ret = 0;
out:
	dbuf_release(&head);
	if (ret < 0)
		dbuf_release(&wa->rest);
	return ret;
}

/* ---- the stream relay ---- */

struct relay {
	struct api *a;
	int fd;
	int eof;
	int client_usage; /* the client asked for the usage chunk */
	int have_usage, done;
	int64_t prompt, completion, chunks;
	struct dbuf in;	 /* from the worker, not yet a whole event */
	struct dbuf out; /* for the client */
	size_t out_off;
	/* for the event that records the counts when the stream ends */
	struct api_req r;
	char tenant[API_NAME_MAX + 1], model[API_NAME_MAX + 1];
};

/* One whole SSE event (with its blank line): read the usage, maybe drop it. */
static int relay_event(struct relay *rl, const char *ev, size_t n)
{
	const char *data = ev;
	int drop = 0;

	if (n > 6 && strncmp(data, "data: ", 6) == 0 && strncmp(data + 6, "[DONE]", 6) != 0) {
		json_t *j = json_loadb(data + 6, n - 6, JSON_DISABLE_EOF_CHECK, NULL);
		json_t *u = json_object_get(j, "usage");
		json_t *ch = json_object_get(j, "choices");

		if (json_is_object(u)) {
			rl->have_usage = 1;
			rl->prompt = jbody_int(u, "prompt_tokens", 0);
			rl->completion = jbody_int(u, "completion_tokens", 0);
			drop = !rl->client_usage && json_array_size(ch) == 0;
		} else if (json_array_size(ch) > 0) {
			rl->chunks++; /* about a token each: the count if the usage never comes */
		}
		json_decref(j);
	}
	return drop ? 0 : dbuf_add(&rl->out, ev, n);
}

/* Split rl->in into events ("\n\n"-terminated); keep the partial tail. */
static int relay_scan(struct relay *rl, int flush)
{
	size_t start = 0;
	char *p;

	while ((p = memmem(rl->in.buf + start, rl->in.len - start, "\n\n", 2))) {
		size_t end = (size_t)(p - rl->in.buf) + 2;

		if (relay_event(rl, rl->in.buf + start, end - start) < 0)
			return -1;
		start = end;
	}
	if (flush && start < rl->in.len) {
		if (relay_event(rl, rl->in.buf + start, rl->in.len - start) < 0)
			return -1;
		start = rl->in.len;
	}
	if (start) {
		size_t left = rl->in.len - start;

		memmove(rl->in.buf, rl->in.buf + start, left);
		rl->in.len = left;
		rl->in.buf[left] = '\0';
	}
	return 0;
}

static long relay_read(void *arg, char *buf, size_t max)
{
	struct relay *rl = arg;
	char tmp[16384];
	size_t n;

	while (rl->out.len == rl->out_off) {
		ssize_t got;

		dbuf_reset(&rl->out);
		rl->out_off = 0;
		if (rl->eof)
			return 0;
		got = recv_some(rl->fd, tmp, sizeof(tmp));
		if (got < 0)
			return -1;
		if (got == 0) {
			rl->eof = 1;
			rl->done = 1;
			if (relay_scan(rl, 1) < 0)
				return -1;
			continue;
		}
		if (dbuf_add(&rl->in, tmp, (size_t)got) < 0 || relay_scan(rl, 0) < 0)
			return -1;
	}
	n = rl->out.len - rl->out_off;
	if (n > max)
		n = max;
	memcpy(buf, rl->out.buf + rl->out_off, n);
	rl->out_off += n;
	return (long)n;
}

/* The stream is over (sent, or the client went): record what it used. */
static void relay_free(void *arg)
{
	struct relay *rl = arg;
	struct ciel_err err = {0};
	int64_t completion = rl->have_usage ? rl->completion : rl->chunks;

	close(rl->fd);
	if (meter(rl->a, &rl->r, rl->tenant, rl->model, rl->have_usage ? rl->prompt : 0, completion,
		  !rl->done, &err) < 0)
		log_warn("llm usage not recorded request=%s tenant=%s model=%s err=%s",
			 rl->r.request_id, rl->tenant, rl->model, err.msg);
	api_req_release(&rl->r);
	dbuf_release(&rl->in);
	dbuf_release(&rl->out);
	free(rl);
}

/* ---- handlers ---- */

static int h_proxy(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err,
		   const char *path)
{
	const char *tenant = r->who.tenant, *model;
	struct worker_answer wa = {0};
	json_error_t jerr;
	json_t *body, *doc = NULL, *so, *v;
	char *fwd = NULL;
	int64_t limit, used;
	int fd = -1, stream = 0, client_usage = 0, retry = 1, ret = -1;

	body = json_loadb(r->body, r->body_len, 0, &jerr);
	if (!json_is_object(body)) {
		json_decref(body);
		return ciel_err_set(err, CIEL_EINVAL,
				    "We could not parse the JSON body of your request: %s",
				    jerr.text);
	}
	v = json_object_get(body, "model");
	if (!json_is_string(v)) {
		ciel_err_field(err, CIEL_EINVAL, "model",
			       "you must provide a model parameter (a string)");
		goto out;
	}
	model = json_string_value(v);
	v = json_object_get(body, "stream");
	if (v && !json_is_boolean(v) && !json_is_null(v)) {
		ciel_err_field(err, CIEL_EINVAL, "stream", "stream: must be a boolean");
		goto out;
	}
	stream = json_is_true(v);
	so = json_object_get(body, "stream_options");
	if (so && !json_is_object(so) && !json_is_null(so)) {
		ciel_err_field(err, CIEL_EINVAL, "stream_options",
			       "stream_options: must be an object");
		goto out;
	}
	client_usage = json_is_true(json_object_get(so, "include_usage"));
	doc = models_find(a, tenant, model, err);
	if (!doc) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_field(err, CIEL_ENOTFOUND, "model",
				       "The model `%.64s` does not exist or you do not have access "
				       "to it.",
				       model);
		goto out;
	}
	snprintf(r->path, sizeof(r->path), "/v1/models/%s", jbody_str(doc, "name", ""));
	if (strcmp(jbody_str(doc, "state", ""), "ready") != 0 || !json_object_get(doc, "worker")) {
		ciel_err_set(
		    err, CIEL_EUNAVAIL, "model %s is not ready (state %s%s%s); retry later", model,
		    jbody_str(doc, "state", "?"), json_object_get(doc, "reason") ? ": " : "",
		    jbody_str(doc, "reason", ""));
		goto out;
	}
	limit = tpm_limit(a, tenant);
	used = tpm_used(tenant, limit, &retry);
	if (used >= limit) {
		struct ciel_err qe = {.code = CIEL_EQUOTA};

		snprintf(qe.msg, sizeof(qe.msg),
			 "Rate limit reached for tokens per minute: limit %" PRId64
			 ", used %" PRId64 " in the last 60 s. Please try again in %ds.",
			 limit, used, retry);
		api_reply(resp, 429, openai_error_body(429, &qe));
		resp->err = qe;
		resp->retry_after_s = retry;
		ret = 0;
		goto out;
	}
	if (stream) {
		/* always ask for the counts; the client gets them only if it asked */
		json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
	}
	fwd = json_dumps(body, JSON_COMPACT);
	if (!fwd) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	fd = worker_connect(jbody_str(json_object_get(doc, "worker"), "url", ""), err);
	if (fd < 0)
		goto out;
	if (worker_call(fd, doc, path, fwd, strlen(fwd), &wa, err) < 0)
		goto out;
	if (stream && wa.status == 200 && wa.sse) {
		struct relay *rl = calloc(1, sizeof(*rl));

		if (!rl) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
		rl->a = a;
		rl->fd = fd;
		rl->client_usage = client_usage;
		dbuf_init(&rl->in, SSE_EVENT_MAX);
		dbuf_init(&rl->out, DBUF_NO_MAX);
		snprintf(rl->tenant, sizeof(rl->tenant), "%s", tenant);
		snprintf(rl->model, sizeof(rl->model), "%s", jbody_str(doc, "name", ""));
		/* the record made when the stream ends: same request, same caller */
		rl->r.route = -1;
		rl->r.action = strstr(path, "chat") ? "llm.chat" : "llm.completion";
		rl->r.who = r->who;
		memcpy(rl->r.request_id, r->request_id, sizeof(rl->r.request_id));
		memcpy(rl->r.source, r->source, sizeof(rl->r.source));
		fd = -1;
		if (dbuf_add(&rl->in, wa.rest.buf, wa.rest.len) < 0 || relay_scan(rl, 0) < 0) {
			relay_free(rl);
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
		resp->status = 200;
		resp->content_type = "text/event-stream";
		resp->stream = relay_read;
		resp->stream_arg = rl;
		resp->stream_free = relay_free;
		ret = 0;
		goto out;
	}
	/* a whole answer: read it to the end */
	for (;;) {
		char buf[16384];
		ssize_t n;

		if (wa.content_length >= 0 && (int64_t)wa.rest.len >= wa.content_length)
			break;
		n = recv_some(fd, buf, sizeof(buf));
		if (n < 0) {
			ciel_err_set(err, CIEL_EUNAVAIL, "the model's worker stopped mid-answer");
			goto out;
		}
		if (n == 0)
			break;
		if (dbuf_add(&wa.rest, buf, (size_t)n) < 0) {
			ciel_err_set(err, CIEL_EUNAVAIL, "the model's answer is too large");
			goto out;
		}
	}
	if (wa.status == 200) {
		json_t *ans = json_loadb(wa.rest.buf ? wa.rest.buf : "", wa.rest.len, 0, NULL);
		json_t *u = json_object_get(ans, "usage");
		int64_t pt = jbody_int(u, "prompt_tokens", 0),
			ct = jbody_int(u, "completion_tokens", 0);

		json_decref(ans);
		if (meter(a, r, tenant, jbody_str(doc, "name", ""), pt, ct, 0, err) < 0)
			goto out;
	} else {
		/* the worker's own OpenAI-shaped refusal, passed on as it is */
		resp->err.code = wa.status >= 500 ? CIEL_EUNAVAIL : CIEL_EINVAL;
	}
	resp->status = wa.status;
	resp->raw = dbuf_detach(&wa.rest, &resp->raw_len);
	resp->content_type = "application/json"; /* both the answer and an error */
	ret = resp->raw ? 0 : ciel_err_set(err, CIEL_ENOMEM, "out of memory");
out:
	if (fd >= 0)
		close(fd);
	dbuf_release(&wa.rest);
	free(fwd);
	json_decref(doc);
	json_decref(body);
	return ret;
}

static int h_chat(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	return h_proxy(a, r, resp, err, "/openai/v1/chat/completions");
}

static int h_completion(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	return h_proxy(a, r, resp, err, "/openai/v1/completions");
}

/* An endpoint as an OpenAI model object. */
static json_t *model_object(const json_t *doc)
{
	const char *tenant = jbody_str(doc, "tenant", "");
	int64_t ms = 0;

	ts_parse(jbody_str(doc, "created", ""), &ms);
	return json_pack("{s:s, s:s, s:I, s:s}", "id", jbody_str(doc, "name", ""), "object",
			 "model", "created", (json_int_t)(ms / 1000), "owned_by",
			 tenant[0] ? tenant : "ciel");
}

static void add_models(json_t *data, const json_t *items)
{
	const json_t *it;
	size_t i;

	json_array_foreach(items, i, it) json_array_append_new(data, model_object(it));
}

static int h_models(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	const char *tenant = r->who.tenant;
	json_t *own = NULL, *pub, *data = json_array();
	char prefix[128];

	if (!data)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (tenant[0] && strcmp(tenant, "region") != 0) {
		snprintf(prefix, sizeof(prefix), "/tenants/%s/models/", tenant);
		own = api_list_json(a, prefix, err);
		if (!own) {
			json_decref(data);
			return -1;
		}
	}
	pub = api_list_json(a, "/region/models/", err);
	if (!pub) {
		json_decref(own);
		json_decref(data);
		return -1;
	}
	add_models(data, own);
	add_models(data, pub);
	json_decref(own);
	json_decref(pub);
	api_reply(resp, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
	return 0;
}

static int h_model(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	json_t *doc = models_find(a, r->who.tenant, r->params[0], err);

	if (!doc) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_field(err, CIEL_ENOTFOUND, "model",
				       "The model `%.64s` does not exist or you do not have access "
				       "to it.",
				       r->params[0]);
		return -1;
	}
	snprintf(r->path, sizeof(r->path), "/v1/models/%s", jbody_str(doc, "name", ""));
	api_reply(resp, 200, model_object(doc));
	json_decref(doc);
	return 0;
}

/* GET /v1/usage: the tenant's token totals per model, and its current minute. */
static int h_usage(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	const char *tenant = r->tenant[0] ? r->tenant : "region";
	struct store_list l = {0};
	json_t *models = json_object();
	char prefix[128];

	if (!models)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (strcmp(tenant, "region") != 0)
		snprintf(prefix, sizeof(prefix), "/tenants/%s/llmusage/", tenant);
	else
		snprintf(prefix, sizeof(prefix), "/region/llmusage/");
	if (store_list(a->store, prefix, NULL, 0, &l, err) < 0) {
		json_decref(models);
		return -1;
	}
	for (size_t k = 0; k < l.n; k++) {
		/* the model's name is the key's last segment */
		const char *name = l.items[k].key + strlen(prefix);
		json_t *it;

		if (strchr(name, '/'))
			continue;
		it = json_loadb(l.items[k].value, l.items[k].value_len, 0, NULL);
		if (it)
			json_object_set_new(
			    models, name,
			    json_pack("{s:I, s:I, s:I}", "requests",
				      (json_int_t)jbody_int(it, "requests", 0), "prompt_tokens",
				      (json_int_t)jbody_int(it, "prompt_tokens", 0),
				      "completion_tokens",
				      (json_int_t)jbody_int(it, "completion_tokens", 0)));
		json_decref(it);
	}
	store_list_release(&l);
	api_reply(resp, 200,
		  json_pack("{s:s, s:o, s:I, s:I}", "tenant", tenant, "models", models,
			    "tokens_last_minute", (json_int_t)openai_tpm_used(tenant),
			    "llm_tokens_per_minute", (json_int_t)tpm_limit(a, tenant)));
	return 0;
}

#define OAI (ROUTE_BEARER | ROUTE_OPENAI)

const struct api_route openai_routes[] = {
    {"GET", "/openai/v1/models", "llm.models", ROLE_ANY, OAI, h_models},
    {"GET", "/openai/v1/models/{}", "llm.models", ROLE_ANY, OAI, h_model},
    {"POST", "/openai/v1/chat/completions", "llm.chat", ROLE_ANY, OAI, h_chat},
    {"POST", "/openai/v1/completions", "llm.completion", ROLE_ANY, OAI, h_completion},
    {"GET", "/v1/usage", "llm.usage", ROLE_ANY, ROUTE_TENANT_OPT, h_usage},
    {0},
};
