/* metrics — see metrics.h. */
#include "api/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dbuf.h"

/* Statuses the API answers with; anything else is counted under "other". */
static const int statuses[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 500, 503};
#define N_STATUS (sizeof(statuses) / sizeof(statuses[0]) + 1)
static const double buckets_s[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
				   0.05,   0.1,	  0.25,	 0.5,	1.0,  2.5};
#define N_BUCKET (sizeof(buckets_s) / sizeof(buckets_s[0]))

struct metrics {
	const char *const *names;
	size_t n;
	atomic_ullong *count; /* (n + 1) * N_STATUS */
	atomic_ullong hist[N_BUCKET + 1];
	atomic_ullong hist_sum_us;
	atomic_ullong hist_count;
	atomic_ullong audit_ok, audit_failed;
};

struct metrics *metrics_new(const char *const *names, size_t n)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->names = names;
	m->n = n;
	m->count = calloc((n + 1) * N_STATUS, sizeof(*m->count));
	if (!m->count) {
		free(m);
		return NULL;
	}
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	free(m->count);
	free(m);
}

void metrics_observe(struct metrics *m, int route, int status, int64_t latency_us)
{
	size_t r = route < 0 || (size_t)route >= m->n ? m->n : (size_t)route, s = N_STATUS - 1;
	double secs = (double)latency_us / 1e6;
	size_t b = 0;

	for (size_t i = 0; i < N_STATUS - 1; i++)
		if (statuses[i] == status)
			s = i;
	atomic_fetch_add_explicit(&m->count[r * N_STATUS + s], 1, memory_order_relaxed);
	while (b < N_BUCKET && secs > buckets_s[b])
		b++;
	atomic_fetch_add_explicit(&m->hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->hist_sum_us, (unsigned long long)latency_us,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&m->hist_count, 1, memory_order_relaxed);
}

void metrics_audit_event(struct metrics *m, int ok)
{
	atomic_fetch_add_explicit(ok ? &m->audit_ok : &m->audit_failed, 1, memory_order_relaxed);
}

char *metrics_render(struct metrics *m, size_t *len)
{
	unsigned long long cum = 0;
	struct dbuf o;

	/* a failed add is sticky: one check at the end covers every line */
	dbuf_init(&o, DBUF_NO_MAX);
	dbuf_addstr(&o, "# HELP ciel_api_requests_total API requests by route and HTTP status.\n"
			"# TYPE ciel_api_requests_total counter\n");
	for (size_t r = 0; r <= m->n; r++) {
		for (size_t s = 0; s < N_STATUS; s++) {
			unsigned long long c = atomic_load(&m->count[r * N_STATUS + s]);
			char code[8];

			if (!c)
				continue;
			if (s < N_STATUS - 1)
				snprintf(code, sizeof(code), "%d", statuses[s]);
			else
				snprintf(code, sizeof(code), "other");
			dbuf_printf(&o, "ciel_api_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
				    r < m->n ? m->names[r] : "unknown", code, c);
		}
	}
	dbuf_addstr(&o, "# HELP ciel_api_request_duration_seconds Time from request to answer.\n"
			"# TYPE ciel_api_request_duration_seconds histogram\n");
	for (size_t b = 0; b <= N_BUCKET; b++) {
		cum += atomic_load(&m->hist[b]);
		if (b < N_BUCKET)
			dbuf_printf(&o,
				    "ciel_api_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
				    buckets_s[b], cum);
		else
			dbuf_printf(&o,
				    "ciel_api_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
				    cum);
	}
	dbuf_printf(&o, "ciel_api_request_duration_seconds_sum %.6f\n",
		    (double)atomic_load(&m->hist_sum_us) / 1e6);
	dbuf_printf(&o, "ciel_api_request_duration_seconds_count %llu\n",
		    atomic_load(&m->hist_count));
	dbuf_printf(&o,
		    "# HELP ciel_audit_events_total Audit events by result of the write.\n"
		    "# TYPE ciel_audit_events_total counter\n"
		    "ciel_audit_events_total{result=\"written\"} %llu\n"
		    "ciel_audit_events_total{result=\"failed\"} %llu\n",
		    atomic_load(&m->audit_ok), atomic_load(&m->audit_failed));
	if (o.toobig || o.nomem) {
		dbuf_release(&o);
		return NULL;
	}
	return dbuf_detach(&o, len);
}
