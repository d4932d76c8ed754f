/*
 * metrics — Prometheus text exposition of the control plane's own counters:
 * requests by route (audit action) and status, a latency histogram, audit
 * events written. Counters are lock-free atomics bumped on every request.
 */
#ifndef CIEL_METRICS_H
#define CIEL_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;

/* names[i] labels route i (n routes; index n is used for "unknown"). */
struct metrics *metrics_new(const char *const *names, size_t n);
void metrics_free(struct metrics *m);
void metrics_observe(struct metrics *m, int route, int status, int64_t latency_us);
void metrics_audit_event(struct metrics *m, int ok);
/* Render; returns a malloc'd buffer (caller frees) and its length, NULL on OOM. */
char *metrics_render(struct metrics *m, size_t *len);

#endif
