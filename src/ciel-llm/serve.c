/*
 * serve — the model worker: one model behind the OpenAI-compatible API.
 *
 * libmicrohttpd with a thread per connection: a request's thread parses
 * the body (lib/llm/oai), renders the chat template, tokenizes and submits
 * to the engine, then blocks until the engine's callbacks (on the engine
 * thread, which must never block) have copied text into the request's
 * shared state and signalled it. A non-stream answer is built once the
 * engine says done; a stream is an MHD content reader that blocks for the
 * next text and writes it as SSE chunks. The shared state is refcounted:
 * the engine side drops its reference in on_done, the HTTP side when MHD
 * frees the response (or the handler returns), whichever is last frees it.
 *
 * A client that goes away is noticed while we wait (POLLRDHUP on its
 * socket every 200 ms) or when a write fails; either cancels its request so
 * its KV blocks go back at once.
 *
 * Never logs prompt or output text: only sizes, token counts and times.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <microhttpd.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "llm/chat.h"
#include "llm/engine.h"
#include "llm/oai.h"
#include "llm/tok.h"
#include "util/dbuf.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"
#include "util/netaddr.h"

#define SERVE_WAIT_MS 200	   /* how often a waiting request checks its client */
#define SERVE_TEXT_MAX (64u << 20) /* bytes of generated text kept for one answer */

struct server {
	/* the engine: read-locked by every user, write-locked to close it */
	pthread_rwlock_t lock;
	struct llm_engine *eng; /* NULL once shutting down */
	int stopping;		/* set (atomically) when the signal came */
	/* answers being written: shutdown lets them finish before closing connections */
	pthread_mutex_t amu;
	pthread_cond_t acv;
	int active;
	const struct tok *tok;
	uint32_t ctx;
	enum chat_kind chat;
	int chat_ok;
	char chat_err[512];
	char *name;
	char *token; /* NULL: no auth */
	int64_t created;
	char fingerprint[32];
	struct MHD_Daemon *d;
};

/* One generation, shared by the engine thread and the connection's thread. */
struct sreq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	struct server *s;
	uint64_t id;
	int fd; /* the client's socket, to notice a hang-up */
	enum oai_kind kind;
	int stream, include_usage;
	char oid[OAI_ID_LEN];
	int64_t created;
	struct dbuf text; /* stream: text not sent yet; else all text */
	int done, cancelled;
	enum llm_finish why;
	uint32_t prompt_tokens, completion_tokens;
	struct ciel_err err;
	/* stream writer state (connection thread only) */
	struct dbuf out;
	size_t out_off;
	int sent_first, finished;
	struct timespec t0;
};

/* Per connection request, before and while the body arrives. */
struct conn {
	struct dbuf body;
	int toobig;
};

static void active_add(struct server *s, int d)
{
	pthread_mutex_lock(&s->amu);
	s->active += d;
	pthread_cond_broadcast(&s->acv);
	pthread_mutex_unlock(&s->amu);
}

/* Wait up to ms for the answers in flight to be written out. */
static void active_drain(struct server *s, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->amu);
	while (s->active > 0)
		if (pthread_cond_timedwait(&s->acv, &s->amu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->amu);
}

static void sreq_put(struct sreq *r)
{
	int last;

	pthread_mutex_lock(&r->mu);
	last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (!last)
		return;
	dbuf_release(&r->text);
	dbuf_release(&r->out);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* Engine thread: copy and signal, never block. */
static int on_text(void *arg, const char *text, size_t len)
{
	struct sreq *r = arg;
	int stop;

	pthread_mutex_lock(&r->mu);
	if (dbuf_add(&r->text, text, len) < 0)
		r->cancelled = 1; /* past SERVE_TEXT_MAX: end it rather than grow */
	stop = r->cancelled;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return stop;
}

static void on_done(void *arg, enum llm_finish why, uint32_t prompt_tokens,
		    uint32_t completion_tokens, const struct ciel_err *err)
{
	struct sreq *r = arg;

	pthread_mutex_lock(&r->mu);
	r->done = 1;
	r->why = why;
	r->prompt_tokens = prompt_tokens;
	r->completion_tokens = completion_tokens;
	if (err)
		r->err = *err;
	else if (why == LLM_FINISH_ERROR)
		ciel_err_set(&r->err, CIEL_EINTERNAL, "generation failed");
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	sreq_put(r);
}

static void cancel(struct sreq *r)
{
	struct server *s = r->s;

	pthread_mutex_lock(&r->mu);
	r->cancelled = 1;
	pthread_mutex_unlock(&r->mu);
	pthread_rwlock_rdlock(&s->lock);
	if (s->eng)
		llm_engine_cancel(s->eng, r->id);
	pthread_rwlock_unlock(&s->lock);
}

static int client_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	return fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Wait (r->mu held) until the engine has text or is done. Every
 * SERVE_WAIT_MS, even while text keeps coming (a non-stream answer), look
 * whether the client hung up, and cancel the request if so (then keep
 * waiting for on_done, which comes at the engine's next step).
 */
static void wait_engine(struct sreq *r, int want_text)
{
	int64_t next = now_ms() + SERVE_WAIT_MS;

	while (!r->done && !(want_text && r->text.len)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SERVE_WAIT_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (now_ms() < next || r->cancelled)
			continue;
		next = now_ms() + SERVE_WAIT_MS;
		if (client_gone(r->fd)) {
			pthread_mutex_unlock(&r->mu);
			cancel(r);
			pthread_mutex_lock(&r->mu);
		}
	}
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void log_done(const struct sreq *r)
{
	log_info("request id=%s kind=%s stream=%d finish=%s prompt_tokens=%" PRIu32
		 " completion_tokens=%" PRIu32 " ms=%.1f",
		 r->oid, r->kind == OAI_CHAT ? "chat" : "completion", r->stream,
		 llm_finish_name(r->why), r->prompt_tokens, r->completion_tokens, ms_since(&r->t0));
}

static uint64_t rss_bytes(void)
{
	unsigned long long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%llu %llu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- answers ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, char *text,
				 const char *ctype)
{
	struct MHD_Response *mr;
	enum MHD_Result ret;

	if (!text)
		return MHD_NO; /* out of memory: drop the connection */
	mr = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!mr) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(mr, "Content-Type", ctype);
	MHD_add_response_header(mr, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, status, mr);
	MHD_destroy_response(mr);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, char *text)
{
	return send_text(c, status, text, "application/json");
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *msg,
				  const char *param, const char *code)
{
	/* the status, param and code say what was wrong; the message may quote the body */
	log_info("rejected status=%d param=%s code=%s", status, param && *param ? param : "-",
		 code && *code ? code : "-");
	return send_json(c, (unsigned)status, oai_error_json(status, msg, param, code));
}

static enum MHD_Result send_ciel_err(struct MHD_Connection *c, const struct ciel_err *err,
				     const char *code)
{
	return send_error(c, oai_status(err->code), err->msg, err->field, code);
}

static enum MHD_Result healthz(struct server *s, struct MHD_Connection *c)
{
	struct llm_engine_stats st = {0};
	int up;
	char *body;
	struct dbuf b;

	pthread_rwlock_rdlock(&s->lock);
	up = s->eng != NULL;
	if (up)
		llm_engine_get_stats(s->eng, &st);
	pthread_rwlock_unlock(&s->lock);
	dbuf_init(&b, 4096);
	dbuf_printf(
	    &b,
	    "{\"status\":\"%s\",\"model\":\"%s\",\"ctx\":%" PRIu32 ",\"running\":%" PRIu32
	    ",\"waiting\":%" PRIu32 ",\"kv_blocks_used\":%" PRIu32 ",\"kv_blocks_total\":%" PRIu32
	    ",\"steps\":%" PRIu64 ",\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu64
	    ",\"rss_bytes\":%" PRIu64 "}",
	    up ? "ok" : "stopping", s->name, s->ctx, st.running, st.waiting, st.kv_blocks_used,
	    st.kv_blocks_total, st.steps, st.prompt_tokens, st.completion_tokens, rss_bytes());
	if (b.toobig || b.nomem) {
		dbuf_release(&b);
		return MHD_NO;
	}
	body = dbuf_detach(&b, NULL);
	return send_json(c, up ? 200 : 503, body);
}

/* ---- streaming ---- */

static const char *cancel_msg(struct server *s)
{
	return __atomic_load_n(&s->stopping, __ATOMIC_RELAXED)
		   ? "the server is shutting down; retry the request"
		   : "the request was cancelled";
}

/* Append an SSE event (consumed) to r->out. */
static void out_add(struct sreq *r, char *ev)
{
	if (!ev || dbuf_addstr(&r->out, ev) < 0)
		r->out.nomem = 1;
	free(ev);
}

/* Fill r->out with the next events; 0, or -1 when the stream is over. */
static int stream_next(struct sreq *r)
{
	struct server *s = r->s;
	char *text = NULL;
	size_t len = 0;
	int done;

	dbuf_reset(&r->out);
	r->out_off = 0;
	if (r->finished)
		return -1;
	if (r->kind == OAI_CHAT && !r->sent_first) {
		/* the role chunk at once: the client sees the stream start */
		r->sent_first = 1;
		out_add(r, oai_chunk_sse(r->kind, r->oid, r->created, s->name, s->fingerprint, 1,
					 "", 0, NULL, r->include_usage));
		return 0;
	}
	pthread_mutex_lock(&r->mu);
	wait_engine(r, 1);
	if (r->text.len) {
		text = dbuf_detach(&r->text, &len);
		if (!text)
			len = 0;
	}
	done = r->done;
	pthread_mutex_unlock(&r->mu);
	if (len)
		out_add(r, oai_chunk_sse(r->kind, r->oid, r->created, s->name, s->fingerprint, 0,
					 text, len, NULL, r->include_usage));
	free(text);
	if (!done)
		return 0;
	r->finished = 1;
	log_done(r);
	if (r->why == LLM_FINISH_ERROR || r->why == LLM_FINISH_CANCEL) {
		/* the headers are gone: an error event, as OpenAI sends mid-stream */
		int st = r->why == LLM_FINISH_ERROR ? 500 : 503;

		out_add(r,
			oai_error_sse(st, r->why == LLM_FINISH_ERROR ? r->err.msg : cancel_msg(s),
				      NULL, NULL));
		return 0;
	}
	out_add(r, oai_chunk_sse(r->kind, r->oid, r->created, s->name, s->fingerprint, 0, "", 0,
				 llm_finish_name(r->why), r->include_usage));
	if (r->include_usage)
		out_add(r, oai_usage_sse(r->kind, r->oid, r->created, s->name, s->fingerprint,
					 r->prompt_tokens, r->completion_tokens));
	if (dbuf_addstr(&r->out, OAI_SSE_DONE) < 0)
		r->out.nomem = 1;
	return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sreq *r = cls;
	size_t n;

	(void)pos;
	while (r->out_off >= r->out.len) {
		if (stream_next(r) < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (r->out.nomem)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = r->out.len - r->out_off;
	if (n > max)
		n = max;
	memcpy(buf, r->out.buf + r->out_off, n);
	r->out_off += n;
	return (ssize_t)n;
}

/* MHD is done with the stream: finished, or the client went away. */
static void stream_free(void *cls)
{
	struct sreq *r = cls;
	int done;

	pthread_mutex_lock(&r->mu);
	done = r->done;
	pthread_mutex_unlock(&r->mu);
	if (!done)
		cancel(r);
	active_add(r->s, -1);
	sreq_put(r);
}

/* ---- generation ---- */

static uint64_t random_seed(void)
{
	char id[OAI_ID_LEN];
	uint64_t x = 0;

	oai_new_id(OAI_COMPLETION, id);
	for (const char *p = id + 5; *p; p++)
		x = x * 16 + (uint64_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
	return x;
}

/* The prompt's tokens (malloc'd) for req; -1 with err (field, and *code). */
static int prompt_tokens(struct server *s, const struct oai_req *req, int32_t **ids, size_t *n,
			 const char **code, struct ciel_err *err)
{
	const char *param = req->kind == OAI_CHAT ? "messages" : "prompt";
	struct dbuf text;
	int flags = TOK_SPECIAL | TOK_BOS, rc;

	*code = NULL;
	dbuf_init(&text, TOK_MAX_INPUT);
	if (req->kind == OAI_CHAT) {
		struct chat_msg *msgs;
		char bos[64];
		const char *bos_text = NULL;

		if (!s->chat_ok) {
			*code = "unsupported_chat_template";
			return ciel_err_field(err, CIEL_EINVAL, "messages",
					      "model %s cannot chat: %s; use /completions", s->name,
					      s->chat_err);
		}
		if (chat_writes_bos(s->chat)) {
			int32_t b = tok_bos(s->tok);
			int l =
			    b >= 0 ? tok_decode(s->tok, b, TOK_SPECIAL, bos, sizeof(bos) - 1) : -1;

			if (l > 0 && (size_t)l < sizeof(bos)) {
				bos[l] = '\0';
				bos_text = bos;
			}
			flags = TOK_SPECIAL;
		}
		msgs = calloc(req->n_msgs, sizeof(*msgs));
		if (!msgs)
			return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		for (size_t k = 0; k < req->n_msgs; k++)
			msgs[k] = (struct chat_msg){req->msgs[k].role, req->msgs[k].content};
		rc = chat_render(s->chat, msgs, req->n_msgs, bos_text, &text, err);
		free(msgs);
		if (rc < 0) {
			dbuf_release(&text);
			if (err && !err->field[0])
				snprintf(err->field, sizeof(err->field), "messages");
			return -1;
		}
		rc = tok_encode(s->tok, dbuf_str(&text), text.len, flags, ids, n, err);
	} else {
		rc = tok_encode(s->tok, req->prompt, req->prompt_len, flags, ids, n, err);
	}
	dbuf_release(&text);
	if (rc < 0) {
		if (err && !err->field[0])
			snprintf(err->field, sizeof(err->field), "%s", param);
		return -1;
	}
	if (*n >= s->ctx) {
		*code = "context_length_exceeded";
		free(*ids);
		*ids = NULL;
		return ciel_err_field(
		    err, CIEL_EINVAL, param,
		    "This model's maximum context length is %" PRIu32 " tokens. However, your %s "
		    "resulted in %zu tokens. Please reduce the length of the %s.",
		    s->ctx, req->kind == OAI_CHAT ? "messages" : "prompt", *n, param);
	}
	return 0;
}

static enum MHD_Result generate(struct server *s, struct MHD_Connection *c, enum oai_kind kind,
				const struct dbuf *body)
{
	const union MHD_ConnectionInfo *ci;
	struct ciel_err err = {0};
	struct oai_req req;
	struct sreq *r = NULL;
	struct llm_gen g;
	int32_t *ids = NULL;
	size_t n_ids = 0;
	const char *code = NULL;
	enum MHD_Result ret;
	int rc;

	if (oai_parse(kind, dbuf_str(body), body->len, &req, &err) < 0) {
		ret = send_ciel_err(c, &err, req.err_code[0] ? req.err_code : NULL);
		oai_req_release(&req);
		return ret;
	}
	if (strcmp(req.model, s->name) != 0) {
		char msg[400];

		snprintf(msg, sizeof(msg),
			 "The model `%.256s` does not exist or you do not have access to it.",
			 req.model);
		oai_req_release(&req);
		return send_error(c, 404, msg, "model", "model_not_found");
	}
	if (prompt_tokens(s, &req, &ids, &n_ids, &code, &err) < 0) {
		ret = send_ciel_err(c, &err, code);
		oai_req_release(&req);
		return ret;
	}

	r = calloc(1, sizeof(*r));
	if (!r) {
		free(ids);
		oai_req_release(&req);
		return MHD_NO;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->refs = 2; /* the engine's (on_done) and ours */
	r->s = s;
	r->kind = kind;
	r->stream = req.stream;
	r->include_usage = req.include_usage;
	r->created = (int64_t)time(NULL);
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	oai_new_id(kind, r->oid);
	dbuf_init(&r->text, SERVE_TEXT_MAX);
	dbuf_init(&r->out, DBUF_NO_MAX);
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	r->fd = ci ? ci->connect_fd : -1;

	g = (struct llm_gen){
	    .prompt = ids,
	    .n_prompt = n_ids,
	    .sampling = {.temperature = req.temperature,
			 .top_k = req.top_k,
			 .top_p = req.top_p,
			 .seed = req.has_seed ? req.seed : random_seed()},
	    .max_tokens = req.max_tokens,
	    .n_stop = req.n_stop,
	    .on_text = on_text,
	    .on_done = on_done,
	    .arg = r,
	};
	for (size_t k = 0; k < req.n_stop; k++)
		g.stop[k] = req.stop[k];
	pthread_rwlock_rdlock(&s->lock);
	if (s->eng)
		rc = llm_engine_submit(s->eng, &g, &r->id, &err);
	else
		rc = ciel_err_set(&err, CIEL_EUNAVAIL, "the server is shutting down");
	pthread_rwlock_unlock(&s->lock);
	free(ids);
	oai_req_release(&req);
	if (rc < 0) {
		r->refs = 1; /* no on_done will come */
		sreq_put(r);
		if (err.code == CIEL_EINVAL && !strcmp(err.field, "prompt"))
			return send_ciel_err(c, &err, "context_length_exceeded");
		return send_ciel_err(c, &err, NULL);
	}

	active_add(s, 1);
	if (r->stream) {
		struct MHD_Response *mr = MHD_create_response_from_callback(
		    MHD_SIZE_UNKNOWN, 16384, stream_reader, r, stream_free);

		if (!mr) {
			stream_free(r);
			return MHD_NO;
		}
		MHD_add_response_header(mr, "Content-Type", "text/event-stream");
		MHD_add_response_header(mr, "Cache-Control", "no-cache");
		MHD_add_response_header(mr, "X-Accel-Buffering", "no");
		ret = MHD_queue_response(c, 200, mr);
		MHD_destroy_response(mr);
		return ret;
	}

	pthread_mutex_lock(&r->mu);
	wait_engine(r, 0);
	pthread_mutex_unlock(&r->mu);
	log_done(r);
	if (r->why == LLM_FINISH_ERROR)
		ret = send_ciel_err(c, &r->err, NULL);
	else if (r->why == LLM_FINISH_CANCEL)
		ret = send_error(c, 503, cancel_msg(s), NULL, NULL);
	else if (r->text.nomem)
		ret = MHD_NO;
	else
		ret = send_json(c, 200,
				oai_answer_json(kind, r->oid, r->created, s->name, s->fingerprint,
						dbuf_str(&r->text), r->text.len,
						llm_finish_name(r->why), r->prompt_tokens,
						r->completion_tokens));
	active_add(s, -1);
	sreq_put(r);
	return ret;
}

/* ---- routing ---- */

static int authorized(struct server *s, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	size_t n, tn;
	unsigned char diff = 0;

	if (!s->token)
		return 1;
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	tn = strlen(s->token);
	/* constant time in the token's content */
	for (size_t k = 0; k < tn; k++)
		diff |= (unsigned char)(s->token[k] ^ (k < n ? h[k] : 0));
	return diff == 0 && n == tn;
}

/* The path under /openai/v1 or /v1, or NULL. */
static const char *api_path(const char *url)
{
	if (!strncmp(url, "/openai/v1/", 11))
		return url + 10;
	if (!strncmp(url, "/v1/", 4))
		return url + 3;
	return NULL;
}

static enum MHD_Result bad_method(struct MHD_Connection *c, const char *method, const char *allow)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "Method %.16s not allowed here; use %s.", method, allow);
	return send_error(c, 405, msg, NULL, "method_not_allowed");
}

static enum MHD_Result route(struct server *s, struct MHD_Connection *c, const char *url,
			     const char *method, const struct dbuf *body)
{
	const char *p = api_path(url);
	int get = !strcmp(method, "GET");

	if (!p) {
		char msg[300];

		snprintf(msg, sizeof(msg), "Invalid URL (%s %.200s)", method, url);
		return send_error(c, 404, msg, NULL, "unknown_url");
	}
	if (!strcmp(p, "/models")) {
		const char *names[1] = {s->name};

		if (!get)
			return bad_method(c, method, "GET");
		return send_json(c, 200, oai_models_json(names, 1, s->created, "ciel"));
	}
	if (!strncmp(p, "/models/", 8)) {
		char msg[400];

		if (!get)
			return bad_method(c, method, "GET");
		if (!strcmp(p + 8, s->name))
			return send_json(c, 200, oai_model_json(s->name, s->created, "ciel"));
		snprintf(msg, sizeof(msg),
			 "The model `%.256s` does not exist or you do not have access to it.",
			 p + 8);
		return send_error(c, 404, msg, "model", "model_not_found");
	}
	if (!strcmp(p, "/chat/completions") || !strcmp(p, "/completions")) {
		if (strcmp(method, "POST") != 0)
			return bad_method(c, method, "POST");
		return generate(s, c, !strcmp(p, "/completions") ? OAI_COMPLETION : OAI_CHAT, body);
	}
	{
		char msg[300];

		snprintf(msg, sizeof(msg), "Invalid URL (%s %.200s)", method, url);
		return send_error(c, 404, msg, NULL, "unknown_url");
	}
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	struct conn *h = *con_cls;

	(void)version;
	if (!h) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");

		if (!strcmp(url, "/healthz")) {
			if (strcmp(method, "GET") != 0)
				return bad_method(c, method, "GET");
			return healthz(s, c);
		}
		if (!authorized(s, c))
			return send_error(c, 401,
					  "Incorrect API key provided. Send it as "
					  "'Authorization: Bearer <key>'.",
					  NULL, "invalid_api_key");
		if (cl && strtoull(cl, NULL, 10) > OAI_MAX_BODY) {
			char msg[128];

			snprintf(msg, sizeof(msg), "The request body is larger than %u bytes.",
				 OAI_MAX_BODY);
			return send_error(c, 413, msg, NULL, "request_too_large");
		}
		h = calloc(1, sizeof(*h));
		if (!h)
			return MHD_NO;
		dbuf_init(&h->body, OAI_MAX_BODY);
		*con_cls = h;
		return MHD_YES;
	}
	if (*upload_size) {
		if (dbuf_add(&h->body, upload, *upload_size) < 0)
			h->toobig = 1;
		*upload_size = 0;
		return MHD_YES;
	}
	if (h->toobig) {
		char msg[128];

		snprintf(msg, sizeof(msg), "The request body is larger than %u bytes.",
			 OAI_MAX_BODY);
		return send_error(c, 413, msg, NULL, "request_too_large");
	}
	return route(s, c, url, method, &h->body);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct conn *h = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (!h)
		return;
	dbuf_release(&h->body);
	free(h);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("http: %s", msg);
}

/* ---- program ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ciel-llm serve --model FILE.gguf --name NAME [options]\n"
		"\n"
		"Serve one model over the OpenAI-compatible API: GET /openai/v1/models,\n"
		"POST /openai/v1/chat/completions and /openai/v1/completions (also under /v1),\n"
		"with SSE streaming; GET /healthz for load and memory.\n"
		"\n"
		"  --model FILE        the GGUF model to load (required)\n"
		"  --name NAME         the model id clients ask for (required)\n"
		"  --listen ADDR:PORT  where to listen (default 127.0.0.1:0, a free port)\n"
		"  --threads N         kernel threads (default: the CPUs available)\n"
		"  --ctx N             positions per sequence (default: the model's)\n"
		"  --max-seqs N        sequences generated at once; more wait (default 8)\n"
		"  --token-file F      require 'Authorization: Bearer <first line of F>'\n"
		"  --ready-file F      once listening, write {url,pid,model,ctx,rss_bytes} to F\n"
		"  --log-level L       debug|info|warn|error|off (default info)\n"
		"\n"
		"Prompts and outputs are never logged. SIGTERM or SIGINT stops it (exit 0).\n"
		"Exit status: 0 stopped by a signal, 1 failed, 2 usage.\n");
}

static int parse_u32(const char *flag, const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || x < lo || x > hi) {
		fprintf(stderr, "ciel-llm serve: %s: expected an integer in %u..%u, got '%s'\n",
			flag, lo, hi, v);
		return -1;
	}
	*out = (uint32_t)x;
	return 0;
}

static char *read_token(const char *path, struct ciel_err *err)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		ciel_err_sys(err, CIEL_EIO, errno, "--token-file %s", path);
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	n = strlen(buf);
	while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (!n) {
		ciel_err_set(err, CIEL_EINVAL, "--token-file %s: the first line is empty", path);
		return NULL;
	}
	return strdup(buf);
}

/*
 * The URL clients use for the address bound: a wildcard address is reached
 * through loopback (127.0.0.1 / [::1]), anything else as it is.
 */
static void bound_url(const struct sockaddr_storage *ss, char *url, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
	int port;

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		port = ntohs(a->sin6_port);
		if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
			snprintf(ip, sizeof(ip), "::1");
		else
			inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		snprintf(url, n, "http://[%s]:%d", ip, port);
		return;
	}
	{
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		port = ntohs(a->sin_port);
		if (a->sin_addr.s_addr != htonl(INADDR_ANY))
			inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		snprintf(url, n, "http://%s:%d", ip, port);
	}
}

static int write_ready(const char *path, const struct server *s, const char *url,
		       struct ciel_err *err)
{
	struct dbuf b;
	int rc;

	dbuf_init(&b, 4096);
	dbuf_printf(&b,
		    "{\"url\":\"%s\",\"pid\":%ld,\"model\":\"%s\",\"ctx\":%" PRIu32
		    ",\"rss_bytes\":%" PRIu64 "}\n",
		    url, (long)getpid(), s->name, s->ctx, rss_bytes());
	rc = b.toobig || b.nomem ? ciel_err_set(err, CIEL_ENOMEM, "ready file: too long")
				 : file_write_atomic(path, b.buf, b.len, err);
	dbuf_release(&b);
	return rc;
}

/* A model name goes into JSON we print ourselves and into URLs: keep it plain. */
static int name_ok(const char *n)
{
	size_t l = strlen(n);

	if (!l || l > 128)
		return 0;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("-_.:", *p)))
			return 0;
	return 1;
}

int cmd_serve(int argc, char **argv)
{
	const char *model = NULL, *listen = "127.0.0.1:0", *token_file = NULL, *ready = NULL;
	struct llm_engine_cfg cfg = {.threads = 0, .max_seqs = 8};
	struct server s = {.chat_ok = 0};
	struct ciel_err err = {0};
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
	uint32_t threads = 0;
	sigset_t sigs;
	char url[96];
	int fd = -1, loopback, sig, rc = 1;

	log_set_prog("ciel-llm");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!v || strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "ciel-llm serve: %s '%s'\n",
				strncmp(a, "--", 2) ? "unexpected argument" : "missing value for",
				a);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--model"))
			model = v;
		else if (!strcmp(a, "--name"))
			s.name = (char *)v;
		else if (!strcmp(a, "--listen"))
			listen = v;
		else if (!strcmp(a, "--token-file"))
			token_file = v;
		else if (!strcmp(a, "--ready-file"))
			ready = v;
		else if (!strcmp(a, "--threads")) {
			if (parse_u32(a, v, 1, 1024, &threads) < 0)
				return 2;
		} else if (!strcmp(a, "--ctx")) {
			if (parse_u32(a, v, 1, 1u << 24, &cfg.ctx) < 0)
				return 2;
		} else if (!strcmp(a, "--max-seqs")) {
			if (parse_u32(a, v, 1, 4096, &cfg.max_seqs) < 0)
				return 2;
		} else if (!strcmp(a, "--log-level")) {
			int l = log_parse_level(v);

			if (l < 0) {
				fprintf(stderr, "ciel-llm serve: --log-level: unknown level '%s'\n",
					v);
				return 2;
			}
			log_level = l;
		} else {
			fprintf(stderr, "ciel-llm serve: unknown option '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!model || !s.name) {
		fprintf(stderr, "ciel-llm serve: --model and --name are required\n");
		usage(stderr);
		return 2;
	}
	if (!name_ok(s.name)) {
		fprintf(stderr,
			"ciel-llm serve: --name: '%s' must be 1-128 of A-Z a-z 0-9 - _ . :\n",
			s.name);
		return 2;
	}
	if (netaddr_parse(listen, 1, &ss, &loopback, &err) < 0) {
		fprintf(stderr, "ciel-llm serve: --listen: %s\n", err.msg);
		return 2;
	}
	if (token_file && !(s.token = read_token(token_file, &err))) {
		fprintf(stderr, "ciel-llm serve: %s\n", err.msg);
		return 1;
	}
	if (!threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (uint32_t)n : 1;
	}
	cfg.threads = (int)threads;
	cfg.model_path = model;

	/* every thread started from here on inherits the mask: sigwait below gets them */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	pthread_rwlock_init(&s.lock, NULL);
	pthread_mutex_init(&s.amu, NULL);
	pthread_cond_init(&s.acv, NULL);
	s.created = (int64_t)time(NULL);
	snprintf(s.fingerprint, sizeof(s.fingerprint), "fp_ciel");
	if (llm_engine_open(&s.eng, &cfg, &err) < 0) {
		fprintf(stderr, "ciel-llm serve: %s\n", err.msg);
		goto out;
	}
	s.tok = llm_model_tok(llm_engine_model(s.eng));
	s.ctx = llm_engine_ctx(s.eng);
	{
		struct ciel_err cerr = {0};

		s.chat_ok = chat_detect(llm_model_chat_template(llm_engine_model(s.eng)), &s.chat,
					&cerr) == 0;
		if (!s.chat_ok) {
			snprintf(s.chat_err, sizeof(s.chat_err), "%s", cerr.msg);
			log_warn("chat disabled: %s", cerr.msg);
		}
	}

	fd = netaddr_listen(&ss, listen, 1024, &err);
	if (fd < 0) {
		fprintf(stderr, "ciel-llm serve: %s\n", err.msg);
		goto out;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	s.d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, &s, MHD_OPTION_EXTERNAL_LOGGER,
			       mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
			       MHD_OPTION_NOTIFY_COMPLETED, completed_cb, &s,
			       MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
	if (!s.d) {
		fprintf(stderr, "ciel-llm serve: cannot start the HTTP server\n");
		goto out;
	}
	bound_url(&ss, url, sizeof(url));
	if (ready && write_ready(ready, &s, url, &err) < 0) {
		fprintf(stderr, "ciel-llm serve: --ready-file: %s\n", err.msg);
		goto out;
	}
	fprintf(stderr, "listening on %s\n", url);
	log_info("serving model=%s ctx=%" PRIu32 " threads=%" PRIu32 " max_seqs=%" PRIu32
		 " chat=%s auth=%s",
		 s.name, s.ctx, threads, cfg.max_seqs, s.chat_ok ? chat_kind_name(s.chat) : "none",
		 s.token ? "bearer" : "none");

	while (sigwait(&sigs, &sig) != 0)
		;
	log_info("stopping signal=%d", sig);
	__atomic_store_n(&s.stopping, 1, __ATOMIC_RELAXED);
	rc = 0;
out:
	if (s.d) {
		/* stop accepting, end every generation (streams get their end), then the rest */
		int lfd = MHD_quiesce_daemon(s.d);

		if (lfd >= 0) {
			close(lfd);
			fd = -1;
		}
	}
	pthread_rwlock_wrlock(&s.lock);
	if (s.eng)
		llm_engine_close(s.eng);
	s.eng = NULL;
	pthread_rwlock_unlock(&s.lock);
	if (s.d) {
		active_drain(&s, 3000);
		MHD_stop_daemon(s.d);
	} else if (fd >= 0)
		close(fd);
	pthread_rwlock_destroy(&s.lock);
	pthread_cond_destroy(&s.acv);
	pthread_mutex_destroy(&s.amu);
	free(s.token);
	return rc;
}
