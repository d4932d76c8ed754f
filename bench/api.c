/*
 * bench-api — load generator for the control-plane API.
 *
 * Signs every request exactly as a real client does (lib/auth sign_client)
 * and drives a running cield over HTTPS on loopback, so what it measures is
 * what a tenant would see: TLS, signature check, replay cache, policy, audit
 * append and the store, per request.
 *
 * Run: create a throw-away tenant with the operator key, then for each
 * connection count C run these phases on C threads, each with its own
 * keep-alive curl handle:
 *   bare     GET /healthz unsigned, N s: the cheapest request the server has
 *            (TLS + routing + its audit event), the floor under the others
 *   get      signed GET /v1/zones?n=<unique>, N s
 *   create   signed POST /v1/keys {"principal":"p<C>-<thread>-<i>","role":"reader"}, N s
 *   delete   DELETE /v1/keys/<id> of every key created, untimed
 *   cleanup  DELETE /v1/principals/<name> of every principal created, untimed
 * and print them beside the physical bounds measured in the same run: the
 * fdatasync latency of the data directory's disk, and the bare rate.
 *
 * Invariants:
 *  - every signed request is unique, because the server refuses a replayed
 *    signature and the date has second resolution: sign_client adds a random
 *    nonce, and the query counter, body or path differ as well, so the
 *    bench does not rest on the nonce alone;
 *  - what a create phase made is deleted before the next round, so every
 *    round starts from the same tenant size, and the server refuses to
 *    delete a tenant that owns more than a few thousand objects; keys go
 *    first because a principal delete scans all of the tenant's keys;
 *  - the tenant is deleted on every exit path after it was created,
 *    Ctrl-C included (delete and cleanup still run; a second Ctrl-C kills
 *    the program outright);
 *  - connections are opened (a warm-up /healthz) before a phase's clock
 *    starts, so handshakes do not count against the first phase.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "auth/sign.h"
#include "util/dbuf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/ts.h"

#define MAX_CONNS 1024
#define MAX_CONN_COUNTS 16
#define MAX_BODY_BYTES (1024 * 1024 + 4096)
#define FSYNC_SAMPLES 200
#define FSYNC_BLOCK 4096
#define REQ_TIMEOUT_MS 30000

/* lock-free, so the signal handler may store it and every worker read it */
static atomic_int g_stop;

struct creds {
	char endpoint[512]; /* scheme://authority, no path, no trailing slash */
	char prefix[256];   /* path part of the endpoint, "" normally */
	char host[256];	    /* authority, as sent in Host and signed */
	char key_id[SIGN_KEY_ID_MAX + 1];
	char scope[SIGN_SCOPE_MAX + 1];
	char secret[1024];
	char ca_file[PATH_MAX];
};

struct conn {
	CURL *h;
	struct dbuf body; /* the last answer, at most MAX_BODY_BYTES */
	char errbuf[CURL_ERROR_SIZE];
};

/* the last two run untimed, until what create made is gone: they are the cleanup */
enum phase { PH_BARE, PH_GET, PH_CREATE, PH_DELETE, PH_CLEANUP, PH_MAX };
static const char *const phase_names[PH_MAX] = {"bare", "get", "create", "delete", "cleanup"};
static const char *const phase_desc[PH_MAX] = {
    "GET /healthz, unsigned (still one audit event)",
    "GET /v1/zones?n=<unique>, signed",
    "POST /v1/keys {principal: new one each, role: reader}, signed",
    "DELETE /v1/keys/<each key created>, signed, untimed until done",
    "DELETE /v1/principals/<each principal created>, signed, untimed until done",
};

/* What one successful create made: principal p<conns>-<worker>-<i> and a key. */
struct made {
	uint32_t i;
	char key_id[SIGN_KEY_ID_MAX + 1];
};

struct run;

struct worker {
	pthread_t tid;
	int idx;
	struct run *run;
	struct conn *conn;
	uint32_t *lat_us;
	size_t n, cap;
	struct made *made; /* for the delete and cleanup phases */
	size_t nmade, made_cap, pos;
	uint64_t errors;
	int64_t end_us;
	int oom;
};

struct run {
	const struct creds *cr;
	int conns;
	enum phase phase;
	int64_t start_us, deadline_us;
	/* the start gate: every thread exists before the clock starts */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int go;
	atomic_flag first_err;
};

struct result {
	int conns;
	enum phase phase;
	uint64_t requests, errors;
	double secs, rps, p50_ms, p99_ms, max_ms;
};

struct fsync_dist {
	double median_ms, p99_ms, max_ms;
};

struct fsync_stat {
	int measured;
	char dir[PATH_MAX];
	char fs[24];
	struct fsync_dist overwrite; /* the floor: no metadata to journal */
	struct fsync_dist append;    /* a growing file: the size goes to the journal too */
};

static void on_signal(int sig)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};

	(void)sig;
	g_stop = 1;
	/* the next Ctrl-C kills: a stuck cleanup must not hold the terminal */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* ---- credentials file ---- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int copy_field(char *dst, size_t size, const char *src, const char *name,
		      struct ciel_err *err)
{
	size_t n = strlen(src);

	if (n >= size)
		return ciel_err_field(err, CIEL_EINVAL, name, "%s: longer than %zu bytes", name,
				      size - 1);
	memcpy(dst, src, n + 1);
	return 0;
}

/* Split "https://h:p/prefix" into endpoint, host and prefix. */
static int creds_set_endpoint(struct creds *cr, const char *url, struct ciel_err *err)
{
	const char *auth = strstr(url, "://");
	const char *slash;
	size_t alen, hlen;

	if (!auth || auth == url)
		return ciel_err_field(err, CIEL_EINVAL, "endpoint", "endpoint: not a URL: %s", url);
	auth += 3;
	slash = strchr(auth, '/');
	hlen = slash ? (size_t)(slash - auth) : strlen(auth);
	alen = (size_t)(auth - url) + hlen;
	if (hlen == 0 || hlen >= sizeof(cr->host) || alen >= sizeof(cr->endpoint))
		return ciel_err_field(err, CIEL_EINVAL, "endpoint", "endpoint: bad host: %s", url);
	memcpy(cr->host, auth, hlen);
	cr->host[hlen] = '\0';
	memcpy(cr->endpoint, url, alen);
	cr->endpoint[alen] = '\0';
	cr->prefix[0] = '\0';
	if (slash) {
		size_t plen = strlen(slash);

		while (plen > 0 && slash[plen - 1] == '/')
			plen--;
		if (plen >= sizeof(cr->prefix))
			return ciel_err_field(err, CIEL_EINVAL, "endpoint",
					      "endpoint: path too long");
		memcpy(cr->prefix, slash, plen);
		cr->prefix[plen] = '\0';
	}
	return 0;
}

/*
 * Read one [profile] of an INI file as `cield init` writes it. A relative
 * ca_file is taken relative to the file's directory, so a data directory
 * can be moved as a whole.
 */
static int creds_load(struct creds *cr, const char *path, const char *profile, struct ciel_err *err)
{
	char line[1024], section[128] = "", endpoint[512] = "", ca[PATH_MAX] = "";
	int found = 0, lineno = 0, ret = -1;
	FILE *f;

	memset(cr, 0, sizeof(*cr));
	f = fopen(path, "r");
	if (!f)
		return ciel_err_sys(err, CIEL_EIO, errno, "open %s", path);
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line), *eq, *k, *v;

		lineno++;
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']');

			if (!e || (size_t)(e - s - 1) >= sizeof(section)) {
				ciel_err_set(err, CIEL_EINVAL, "%s:%d: bad section", path, lineno);
				goto out;
			}
			*e = '\0';
			snprintf(section, sizeof(section), "%s", trim(s + 1));
			if (strcmp(section, profile) == 0)
				found = 1;
			continue;
		}
		if (strcmp(section, profile) != 0)
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			ciel_err_set(err, CIEL_EINVAL, "%s:%d: expected key = value", path, lineno);
			goto out;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		if (strcmp(k, "endpoint") == 0)
			ret = copy_field(endpoint, sizeof(endpoint), v, k, err);
		else if (strcmp(k, "key_id") == 0)
			ret = copy_field(cr->key_id, sizeof(cr->key_id), v, k, err);
		else if (strcmp(k, "secret") == 0)
			ret = copy_field(cr->secret, sizeof(cr->secret), v, k, err);
		else if (strcmp(k, "scope") == 0)
			ret = copy_field(cr->scope, sizeof(cr->scope), v, k, err);
		else if (strcmp(k, "ca_file") == 0)
			ret = copy_field(ca, sizeof(ca), v, k, err);
		else
			ret = 0; /* other clients' settings are not ours to refuse */
		if (ret < 0) {
			ciel_err_prefix(err, "%s:%d: ", path, lineno);
			goto out;
		}
		ret = -1;
	}
	if (!found) {
		ciel_err_set(err, CIEL_ENOTFOUND, "%s: no profile [%s]", path, profile);
		goto out;
	}
	if (!endpoint[0] || !cr->key_id[0] || !cr->secret[0]) {
		ciel_err_set(err, CIEL_EINVAL, "%s [%s]: endpoint, key_id and secret are required",
			     path, profile);
		goto out;
	}
	if (!cr->scope[0])
		snprintf(cr->scope, sizeof(cr->scope), "region");
	if (creds_set_endpoint(cr, endpoint, err) < 0)
		goto out;
	if (ca[0] == '/' || ca[0] == '\0') {
		snprintf(cr->ca_file, sizeof(cr->ca_file), "%s", ca);
	} else {
		const char *sl = strrchr(path, '/');
		int dlen = sl ? (int)(sl - path) : 1;

		if (snprintf(cr->ca_file, sizeof(cr->ca_file), "%.*s/%s", dlen, sl ? path : ".",
			     ca) >= (int)sizeof(cr->ca_file)) {
			ciel_err_set(err, CIEL_EINVAL, "ca_file: path too long");
			goto out;
		}
	}
	ret = 0;
out:
	fclose(f);
	return ret;
}

/* ---- one keep-alive connection ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	size_t n = size * nmemb;

	/* a failed add makes curl fail the transfer: a bench must not buffer a runaway body */
	return dbuf_add(ud, data, n) < 0 ? 0 : n;
}

static int conn_init(struct conn *c, const struct creds *cr, struct ciel_err *err)
{
	memset(c, 0, sizeof(*c));
	dbuf_init(&c->body, MAX_BODY_BYTES);
	c->h = curl_easy_init();
	if (!c->h)
		return ciel_err_set(err, CIEL_ENOMEM, "curl_easy_init failed");
	curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)REQ_TIMEOUT_MS);
	curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->body);
	curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->errbuf);
	if (cr->ca_file[0])
		curl_easy_setopt(c->h, CURLOPT_CAINFO, cr->ca_file);
	return 0;
}

static void conn_release(struct conn *c)
{
	if (c->h)
		curl_easy_cleanup(c->h);
	dbuf_release(&c->body);
	memset(c, 0, sizeof(*c));
}

static int hdr_add(struct curl_slist **h, const char *line)
{
	struct curl_slist *t = curl_slist_append(*h, line);

	if (!t)
		return -1;
	*h = t;
	return 0;
}

/*
 * One request. cr NULL sends it unsigned. Returns 0 with *status set for any
 * HTTP answer (the body is dbuf_str(&c->body), valid until the next
 * call), -1 for a transport or signing failure.
 */
static int conn_do(struct conn *c, const struct creds *base, const struct creds *cr,
		   const char *method, const char *path, const char *query, const char *body,
		   long *status, struct ciel_err *err)
{
	char url[2048], full_path[1024], hdr[640], date[17], sha[65], auth[512];
	size_t body_len = body ? strlen(body) : 0;
	struct curl_slist *h = NULL;
	CURLcode rc;
	int ret = -1;

	snprintf(full_path, sizeof(full_path), "%s%s", base->prefix, path);
	if (snprintf(url, sizeof(url), "%s%s%s%s", base->endpoint, full_path,
		     query && *query ? "?" : "", query ? query : "") >= (int)sizeof(url))
		return ciel_err_set(err, CIEL_EINVAL, "url too long");
	dbuf_reset(&c->body);
	c->errbuf[0] = '\0';

	snprintf(hdr, sizeof(hdr), "Host: %s", base->host);
	if (hdr_add(&h, hdr) < 0 || hdr_add(&h, "Expect:") < 0 ||
	    (body && hdr_add(&h, "Content-Type: application/json") < 0))
		goto out_nomem;
	if (cr) {
		if (sign_client(method, full_path, query, base->host, body ? body : "", body_len,
				cr->key_id, cr->scope, cr->secret, strlen(cr->secret), time(NULL),
				date, sha, auth, sizeof(auth), err) < 0) {
			ciel_err_prefix(err, "sign: ");
			goto out;
		}
		snprintf(hdr, sizeof(hdr), "X-Ciel-Date: %s", date);
		if (hdr_add(&h, hdr) < 0)
			goto out_nomem;
		snprintf(hdr, sizeof(hdr), "X-Ciel-Content-Sha256: %s", sha);
		if (hdr_add(&h, hdr) < 0)
			goto out_nomem;
		snprintf(hdr, sizeof(hdr), "Authorization: %s", auth);
		if (hdr_add(&h, hdr) < 0)
			goto out_nomem;
	}

	curl_easy_setopt(c->h, CURLOPT_URL, url);
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, h);
	if (body) {
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)body_len);
	} else {
		curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
	}
	/* the handle is reused across methods: reset the verb every time */
	curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST,
			 strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0 ? NULL : method);
	rc = curl_easy_perform(c->h);
	if (rc != CURLE_OK) {
		ciel_err_set(err, CIEL_EUNAVAIL, "%s %s: %s", method, path,
			     c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, status);
	ret = 0;
	goto out;
out_nomem:
	ciel_err_set(err, CIEL_ENOMEM, "curl_slist_append failed");
out:
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return ret;
}

/* ---- the load ---- */

/* Remember a create from its answer; -1 only when out of memory. */
static int made_push(struct worker *w, uint32_t i, const char *answer)
{
	json_t *j = json_loads(answer ? answer : "", 0, NULL);
	const char *id = json_string_value(json_object_get(j, "id"));
	struct made *m;

	if (w->nmade == w->made_cap) {
		size_t c = w->made_cap ? w->made_cap * 2 : 1024;

		m = realloc(w->made, c * sizeof(*m));
		if (!m) {
			json_decref(j);
			return -1;
		}
		w->made = m;
		w->made_cap = c;
	}
	m = &w->made[w->nmade++];
	m->i = i;
	/* no id: the principal delete removes the key all the same */
	snprintf(m->key_id, sizeof(m->key_id), "%s", id ? id : "");
	json_decref(j);
	return 0;
}

static int lat_push(struct worker *w, int64_t us)
{
	if (w->n == w->cap) {
		size_t c = w->cap ? w->cap * 2 : 4096;
		uint32_t *p = realloc(w->lat_us, c * sizeof(*p));

		if (!p)
			return -1;
		w->lat_us = p;
		w->cap = c;
	}
	w->lat_us[w->n++] = us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	struct ciel_err err = {0};
	char query[64], body[160], path[96];
	uint32_t i = 0;

	w->n = 0;
	w->errors = 0;
	w->oom = 0;
	if (r->phase == PH_CREATE)
		w->nmade = 0;
	w->pos = 0;
	pthread_mutex_lock(&r->mu);
	while (!r->go)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	for (;;) {
		const struct creds *cr = r->phase == PH_BARE ? NULL : r->cr;
		const char *method = "GET", *q = NULL, *b = NULL;
		long status = 0;
		int64_t t0, t1;
		int rc;

		/* delete and cleanup undo the creates: neither clock nor Ctrl-C cut them */
		if (r->phase >= PH_DELETE) {
			if (r->deadline_us == 0)
				break;
			/* keys without an id were not seen: the principal delete takes them */
			while (r->phase == PH_DELETE && w->pos < w->nmade &&
			       !w->made[w->pos].key_id[0])
				w->pos++;
			if (w->pos >= w->nmade)
				break;
		} else if (g_stop || ts_mono_us() >= r->deadline_us) {
			break;
		}
		switch (r->phase) {
		case PH_BARE:
			snprintf(path, sizeof(path), "/healthz");
			break;
		case PH_GET:
			snprintf(path, sizeof(path), "/v1/zones");
			snprintf(query, sizeof(query), "n=%d-%" PRIu32, w->idx, i);
			q = query;
			break;
		case PH_CREATE:
			method = "POST";
			snprintf(path, sizeof(path), "/v1/keys");
			snprintf(body, sizeof(body),
				 "{\"principal\":\"p%d-%d-%" PRIu32 "\",\"role\":\"reader\"}",
				 r->conns, w->idx, i);
			b = body;
			break;
		case PH_DELETE:
			method = "DELETE";
			snprintf(path, sizeof(path), "/v1/keys/%s", w->made[w->pos++].key_id);
			break;
		case PH_CLEANUP:
		default:
			method = "DELETE";
			snprintf(path, sizeof(path), "/v1/principals/p%d-%d-%" PRIu32, r->conns,
				 w->idx, w->made[w->pos++].i);
			break;
		}
		i++;
		t0 = ts_mono_us();
		rc = conn_do(w->conn, r->cr, cr, method, path, q, b, &status, &err);
		t1 = ts_mono_us();
		if (lat_push(w, t1 - t0) < 0) {
			w->oom = 1;
			break;
		}
		if (rc == 0 && status >= 200 && status <= 299 && r->phase == PH_CREATE &&
		    made_push(w, i - 1, dbuf_str(&w->conn->body)) < 0) {
			w->oom = 1;
			break;
		}
		if (rc < 0 || status < 200 || status > 299) {
			w->errors++;
			if (!atomic_flag_test_and_set(&r->first_err)) {
				if (rc < 0)
					log_error("first error conns=%d phase=%s: %s", r->conns,
						  phase_names[r->phase], err.msg);
				else
					log_error(
					    "first error conns=%d phase=%s status=%ld body=%.400s",
					    r->conns, phase_names[r->phase], status,
					    dbuf_str(&w->conn->body));
			}
		}
	}
	w->end_us = ts_mono_us();
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (pct in 1..100) of a sorted array, in ms. */
static double pct_ms(const uint32_t *v, size_t n, unsigned pct)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (pct * n + 99) / 100; /* ceil(pct/100 * n) without libm */
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1] / 1000.0;
}

/* One phase on conns threads; cr signs (and names the server) for all of them. */
static int run_phase(struct worker *ws, int conns, enum phase ph, const struct creds *cr,
		     int seconds, struct result *res, struct ciel_err *err)
{
	struct run r = {.cr = cr, .conns = conns, .phase = ph};
	uint32_t *all = NULL;
	size_t total = 0, k = 0;
	int64_t end = 0;
	int started, ret = -1, i;

	atomic_flag_clear(&r.first_err);
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	for (started = 0; started < conns; started++) {
		ws[started].run = &r;
		if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0)
			break;
	}
	pthread_mutex_lock(&r.mu);
	r.start_us = ts_mono_us();
	/* on a failed create, the started ones see their deadline passed */
	r.deadline_us = started < conns ? 0 : r.start_us + (int64_t)seconds * 1000000;
	r.go = 1;
	pthread_cond_broadcast(&r.cv);
	pthread_mutex_unlock(&r.mu);
	for (i = 0; i < started; i++) {
		pthread_join(ws[i].tid, NULL);
		total += ws[i].n;
		if (ws[i].end_us > end)
			end = ws[i].end_us;
	}
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
	if (started < conns)
		return ciel_err_set(err, CIEL_EINTERNAL, "pthread_create failed after %d threads",
				    started);

	memset(res, 0, sizeof(*res));
	res->conns = conns;
	res->phase = ph;
	res->secs = (double)(end - r.start_us) / 1e6;
	for (i = 0; i < conns; i++) {
		if (ws[i].oom) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory recording latencies");
			goto out;
		}
		res->errors += ws[i].errors;
	}
	all = malloc((total ? total : 1) * sizeof(*all));
	if (!all) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory merging latencies");
		goto out;
	}
	for (i = 0; i < conns; i++) {
		memcpy(all + k, ws[i].lat_us, ws[i].n * sizeof(*all));
		k += ws[i].n;
	}
	qsort(all, total, sizeof(*all), cmp_u32);
	res->requests = total;
	res->rps = res->secs > 0 ? (double)total / res->secs : 0;
	res->p50_ms = pct_ms(all, total, 50);
	res->p99_ms = pct_ms(all, total, 99);
	res->max_ms = total ? all[total - 1] / 1000.0 : 0;
	ret = 0;
out:
	free(all);
	return ret;
}

/* ---- the disk bound ---- */

static const char *fs_name(long type, char *buf, size_t size)
{
	switch ((unsigned long)type) {
	case 0xEF53UL:
		return "ext4";
	case 0x58465342UL:
		return "xfs";
	case 0x9123683EUL:
		return "btrfs";
	case 0x01021994UL:
		return "tmpfs";
	case 0x794c7630UL:
		return "overlayfs";
	case 0x2FC12FC1UL:
		return "zfs";
	default:
		snprintf(buf, size, "0x%lx", (unsigned long)type);
		return buf;
	}
}

/* pwrite+fdatasync each FSYNC_BLOCK of fd from offset 0; latencies into d. */
static int time_fsyncs(int fd, const char *path, struct fsync_dist *d, struct ciel_err *err)
{
	char block[FSYNC_BLOCK];
	uint32_t lat[FSYNC_SAMPLES];

	memset(block, 0xa5, sizeof(block));
	for (int i = 0; i < FSYNC_SAMPLES; i++) {
		int64_t t0 = ts_mono_us();

		if (pwrite(fd, block, sizeof(block), (off_t)i * FSYNC_BLOCK) !=
		    (ssize_t)sizeof(block))
			return ciel_err_sys(err, CIEL_EIO, errno, "write %s", path);
		if (fdatasync(fd) < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "fdatasync %s", path);
		lat[i] = (uint32_t)(ts_mono_us() - t0);
	}
	qsort(lat, FSYNC_SAMPLES, sizeof(lat[0]), cmp_u32);
	d->median_ms = pct_ms(lat, FSYNC_SAMPLES, 50);
	d->p99_ms = pct_ms(lat, FSYNC_SAMPLES, 99);
	d->max_ms = lat[FSYNC_SAMPLES - 1] / 1000.0;
	return 0;
}

/*
 * A durable create is acknowledged after at least one fdatasync (SQLite WAL,
 * synchronous=FULL). Group commit shares one fsync among the requests of a
 * batch, so the fsync latency bounds the latency of a create from below, not
 * the rate. The floor is an overwrite of blocks already allocated (a WAL
 * after its first checkpoint); appends also journal the new size, so they
 * cost what a WAL pays while it grows.
 */
static int measure_fsync(const char *dir, struct fsync_stat *st, struct ciel_err *err)
{
	char path[PATH_MAX], tmp[24];
	struct statfs sfs;
	int fd, ret = -1;

	memset(st, 0, sizeof(*st));
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	if (snprintf(path, sizeof(path), "%s/.bench-fsync-XXXXXX", dir) >= (int)sizeof(path))
		return ciel_err_set(err, CIEL_EINVAL, "--data: path too long");
	fd = mkstemp(path);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create a file in %s", dir);
	if (fstatfs(fd, &sfs) == 0)
		snprintf(st->fs, sizeof(st->fs), "%s", fs_name((long)sfs.f_type, tmp, sizeof(tmp)));
	/* the first pass grows the file, the second rewrites what it allocated */
	if (time_fsyncs(fd, path, &st->append, err) < 0 ||
	    time_fsyncs(fd, path, &st->overwrite, err) < 0)
		goto out;
	st->measured = 1;
	ret = 0;
out:
	close(fd);
	unlink(path);
	return ret;
}

/* ---- the throw-away tenant ---- */

static int tenant_create(const struct creds *op, struct creds *tc, char *name, size_t name_size,
			 struct ciel_err *err)
{
	unsigned char rnd[4];
	char body[128];
	struct conn c;
	json_t *root = NULL, *key;
	json_error_t jerr;
	const char *id, *secret, *tenant;
	long status = 0;
	int ret = -1;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return ciel_err_sys(err, CIEL_EIO, errno, "getrandom");
	snprintf(name, name_size, "bench-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
	snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
	if (conn_init(&c, op, err) < 0)
		return -1;
	if (conn_do(&c, op, op, "POST", "/v1/tenants", NULL, body, &status, err) < 0)
		goto out;
	if (status != 201) {
		ciel_err_set(err, CIEL_EINTERNAL, "POST /v1/tenants: HTTP %ld: %.400s", status,
			     dbuf_str(&c.body));
		goto out;
	}
	root = json_loads(dbuf_str(&c.body), 0, &jerr);
	key = root ? json_object_get(root, "key") : NULL;
	id = json_string_value(json_object_get(key, "id"));
	secret = json_string_value(json_object_get(key, "secret"));
	tenant = json_string_value(json_object_get(key, "tenant"));
	if (!id || !secret) {
		ciel_err_set(err, CIEL_EINTERNAL,
			     "POST /v1/tenants: no key.id/key.secret in %.400s", dbuf_str(&c.body));
		/* created all the same: the caller must still delete it */
		ret = -2;
		goto out;
	}
	*tc = *op;
	if (copy_field(tc->key_id, sizeof(tc->key_id), id, "key.id", err) < 0 ||
	    copy_field(tc->secret, sizeof(tc->secret), secret, "key.secret", err) < 0 ||
	    copy_field(tc->scope, sizeof(tc->scope), tenant ? tenant : name, "key.tenant", err) <
		0) {
		ret = -2;
		goto out;
	}
	ret = 0;
out:
	json_decref(root);
	conn_release(&c);
	return ret;
}

static int tenant_delete(const struct creds *op, const char *name, struct ciel_err *err)
{
	char path[128];
	struct conn c;
	long status = 0;
	int ret = -1;

	snprintf(path, sizeof(path), "/v1/tenants/%s", name);
	if (conn_init(&c, op, err) < 0)
		return -1;
	if (conn_do(&c, op, op, "DELETE", path, NULL, NULL, &status, err) < 0)
		goto out;
	if (status < 200 || status > 299) {
		ciel_err_set(err, CIEL_EINTERNAL, "DELETE %s: HTTP %ld: %.400s", path, status,
			     dbuf_str(&c.body));
		goto out;
	}
	ret = 0;
out:
	conn_release(&c);
	return ret;
}

/* ---- report ---- */

/* signed GET rate over bare GET rate of round k (results come PH_MAX a round). */
static double ratio(const struct result *rs, int n, int k)
{
	const struct result *b = &rs[k * PH_MAX + PH_BARE], *g = &rs[k * PH_MAX + PH_GET];

	if (k * PH_MAX + PH_GET >= n || b->rps <= 0)
		return 0;
	return g->rps / b->rps;
}

static void print_table(const struct result *rs, int n, const struct fsync_stat *fs,
			const int *conns, int nconns, int seconds, long nproc, const char *tenant)
{
	printf("bench-api: nproc=%ld seconds/phase=%d tenant=%s\n", nproc, seconds, tenant);
	for (int p = 0; p < PH_MAX; p++)
		printf("  %-7s  %s\n", phase_names[p], phase_desc[p]);
	printf("\n%5s  %-7s  %10s  %8s  %8s  %8s  %7s\n", "conns", "phase", "req/s", "p50 ms",
	       "p99 ms", "max ms", "errors");
	for (int i = 0; i < n; i++)
		printf("%5d  %-7s  %10.1f  %8.3f  %8.3f  %8.3f  %7" PRIu64 "\n", rs[i].conns,
		       phase_names[rs[i].phase], rs[i].rps, rs[i].p50_ms, rs[i].p99_ms,
		       rs[i].max_ms, rs[i].errors);
	printf("\nsigned GET / bare GET (req/s):");
	for (int i = 0; i < nconns && i * PH_MAX + PH_GET < n; i++)
		printf("  conns=%d %.2f", conns[i], ratio(rs, n, i));
	printf("\n");
	if (fs->measured) {
		printf("fsync in %s (%s), %d x 4 KiB pwrite + fdatasync:\n", fs->dir, fs->fs,
		       FSYNC_SAMPLES);
		printf("  overwrite  median %.3f ms  p99 %.3f ms  max %.3f ms   <- floor under a "
		       "create's latency\n",
		       fs->overwrite.median_ms, fs->overwrite.p99_ms, fs->overwrite.max_ms);
		printf("  append     median %.3f ms  p99 %.3f ms  max %.3f ms\n",
		       fs->append.median_ms, fs->append.p99_ms, fs->append.max_ms);
	} else {
		printf("fsync: not measured (no --data)\n");
	}
}

static int print_json(const struct result *rs, int n, const struct fsync_stat *fs, const int *conns,
		      int nconns, int seconds, long nproc, const char *tenant)
{
	json_t *root = json_object(), *arr = json_array(), *rat = json_array(), *f;
	char *s;
	int ret = -1;

	for (int i = 0; i < n; i++)
		json_array_append_new(
		    arr, json_pack("{s:i, s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "conns",
				   rs[i].conns, "phase", phase_names[rs[i].phase], "requests",
				   (json_int_t)rs[i].requests, "errors", (json_int_t)rs[i].errors,
				   "seconds", rs[i].secs, "rps", rs[i].rps, "p50_ms", rs[i].p50_ms,
				   "p99_ms", rs[i].p99_ms, "max_ms", rs[i].max_ms));
	for (int i = 0; i < nconns && i * PH_MAX + PH_GET < n; i++)
		json_array_append_new(
		    rat, json_pack("{s:i, s:f}", "conns", conns[i], "ratio", ratio(rs, n, i)));
	if (fs->measured)
		f = json_pack("{s:s, s:s, s:i, s:i, s:{s:f, s:f, s:f}, s:{s:f, s:f, s:f}}", "dir",
			      fs->dir, "fs", fs->fs, "samples", FSYNC_SAMPLES, "block_bytes",
			      FSYNC_BLOCK, "overwrite", "median_ms", fs->overwrite.median_ms,
			      "p99_ms", fs->overwrite.p99_ms, "max_ms", fs->overwrite.max_ms,
			      "append", "median_ms", fs->append.median_ms, "p99_ms",
			      fs->append.p99_ms, "max_ms", fs->append.max_ms);
	else
		f = json_null();
	json_object_set_new(root, "nproc", json_integer(nproc));
	json_object_set_new(root, "seconds_per_phase", json_integer(seconds));
	json_object_set_new(root, "tenant", json_string(tenant));
	json_object_set_new(root, "results", arr);
	json_object_set_new(root, "signed_get_over_bare_get", rat);
	json_object_set_new(root, "fsync", f);
	s = json_dumps(root, JSON_INDENT(2));
	if (s) {
		printf("%s\n", s);
		free(s);
		ret = 0;
	}
	json_decref(root);
	return ret;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-api [--credentials FILE] [--profile NAME] [--seconds N]\n"
		"                 [--conns 1,16,64] [--data DIR] [--output table|json]\n"
		"  --credentials FILE  INI profile file (default ~/.config/ciel/credentials;\n"
		"                      `cield init` writes DATA/operator.credentials)\n"
		"  --profile NAME      profile in it (default: default)\n"
		"  --seconds N         seconds per phase (default 5)\n"
		"  --conns LIST        connection counts, comma-separated (default 1,16,64)\n"
		"  --data DIR          measure append+fdatasync latency there (the store's disk)\n"
		"  --output FORMAT     table (default) or json\n"
		"Creates a throw-away tenant with the operator key and deletes it at the end.\n");
}

static int parse_conns(const char *s, int *out, int max)
{
	int n = 0;

	while (*s) {
		char *end;
		long v;

		errno = 0;
		v = strtol(s, &end, 10);
		if (errno || end == s || v < 1 || v > MAX_CONNS || n == max)
			return -1;
		out[n++] = (int)v;
		if (*end == ',')
			end++;
		else if (*end)
			return -1;
		s = end;
	}
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"credentials", required_argument, NULL, 'c'},
	    {"profile", required_argument, NULL, 'p'},
	    {"seconds", required_argument, NULL, 's'},
	    {"conns", required_argument, NULL, 'n'},
	    {"data", required_argument, NULL, 'd'},
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *cred_path = NULL, *profile = "default", *data = NULL, *output = "table";
	char def_cred[PATH_MAX], tenant[64] = "";
	int conns[MAX_CONN_COUNTS] = {1, 16, 64}, nconns = 3, seconds = 5, maxc = 0;
	struct result results[MAX_CONN_COUNTS * PH_MAX];
	struct sigaction sa = {.sa_handler = on_signal};
	struct creds op, tc;
	struct fsync_stat fs = {0};
	struct ciel_err err = {0};
	struct conn *pool = NULL;
	struct worker *ws = NULL;
	int nres = 0, npool = 0, rc = 1, c, t;
	long nproc = sysconf(_SC_NPROCESSORS_ONLN);

	log_set_prog("bench-api");
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end;
		long v;

		switch (c) {
		case 'c':
			cred_path = optarg;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'd':
			data = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "table")) {
				fprintf(stderr, "bench-api: --output: json or table\n");
				return 2;
			}
			output = optarg;
			break;
		case 's':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > 3600) {
				fprintf(stderr, "bench-api: --seconds: 1..3600\n");
				return 2;
			}
			seconds = (int)v;
			break;
		case 'n':
			nconns = parse_conns(optarg, conns, MAX_CONN_COUNTS);
			if (nconns < 1) {
				fprintf(
				    stderr,
				    "bench-api: --conns: up to %d counts in 1..%d, like 1,16,64\n",
				    MAX_CONN_COUNTS, MAX_CONNS);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (!cred_path) {
		const char *home = getenv("HOME");

		snprintf(def_cred, sizeof(def_cred), "%s/.config/ciel/credentials",
			 home ? home : ".");
		cred_path = def_cred;
	}
	for (int i = 0; i < nconns; i++)
		if (conns[i] > maxc)
			maxc = conns[i];

	if (creds_load(&op, cred_path, profile, &err) < 0) {
		log_error("credentials: %s", err.msg);
		return 1;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("curl_global_init failed");
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* the disk first, while the server is idle */
	if (data && measure_fsync(data, &fs, &err) < 0) {
		log_error("fsync: %s", err.msg);
		goto out_curl;
	}

	t = tenant_create(&op, &tc, tenant, sizeof(tenant), &err);
	if (t < 0) {
		log_error("create tenant %s: %s", tenant, err.msg);
		if (t == -2)
			goto out_tenant;
		goto out_curl;
	}
	log_info("tenant=%s created key=%s", tenant, tc.key_id);

	pool = calloc((size_t)maxc, sizeof(*pool));
	ws = calloc((size_t)maxc, sizeof(*ws));
	if (!pool || !ws) {
		log_error("out of memory");
		goto out_tenant;
	}
	for (int i = 0; i < nconns && !g_stop; i++) {
		int cn = conns[i];

		/* fresh connections per count: C handshakes, done before the clock */
		for (int k = 0; k < npool; k++)
			conn_release(&pool[k]);
		npool = 0;
		for (int k = 0; k < cn; k++) {
			long status = 0;

			if (conn_init(&pool[k], &op, &err) < 0) {
				log_error("conns=%d: %s", cn, err.msg);
				goto out_tenant;
			}
			npool++;
			if (conn_do(&pool[k], &op, NULL, "GET", "/healthz", NULL, NULL, &status,
				    &err) < 0) {
				log_error("conns=%d warm-up: %s", cn, err.msg);
				goto out_tenant;
			}
			if (status != 200) {
				log_error("conns=%d warm-up: GET /healthz status=%ld", cn, status);
				goto out_tenant;
			}
		}
		for (int p = 0; p < PH_MAX; p++) {
			/* once creates ran, delete and cleanup run even after Ctrl-C */
			if (g_stop && p < PH_DELETE)
				break;
			for (int k = 0; k < cn; k++) {
				ws[k].idx = k;
				ws[k].conn = &pool[k];
			}
			if (run_phase(ws, cn, (enum phase)p, &tc, seconds, &results[nres], &err) <
			    0) {
				log_error("conns=%d phase=%s: %s", cn, phase_names[p], err.msg);
				goto out_tenant;
			}
			log_info("conns=%d phase=%s rps=%.1f errors=%" PRIu64, cn, phase_names[p],
				 results[nres].rps, results[nres].errors);
			nres++;
		}
	}
	if (g_stop) {
		log_warn("interrupted: deleting tenant=%s", tenant);
		goto out_tenant;
	}
	if (strcmp(output, "json") == 0) {
		if (print_json(results, nres, &fs, conns, nconns, seconds, nproc, tenant) < 0)
			goto out_tenant;
	} else {
		print_table(results, nres, &fs, conns, nconns, seconds, nproc, tenant);
	}
	rc = 0;
out_tenant:
	for (int k = 0; k < npool; k++)
		conn_release(&pool[k]);
	for (int k = 0; k < maxc && ws; k++) {
		free(ws[k].lat_us);
		free(ws[k].made);
	}
	free(ws);
	free(pool);
	if (tenant_delete(&op, tenant, &err) < 0) {
		log_error("delete tenant %s: %s (delete it by hand)", tenant, err.msg);
		rc = 1;
	} else {
		log_info("tenant=%s deleted", tenant);
	}
out_curl:
	curl_global_cleanup();
	return rc;
}
