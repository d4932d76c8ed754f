/*
 * sched — where an instance runs. A pure function over a snapshot of the
 * nodes, so it is tested without a region.
 *
 * Rules, in order: only Ready nodes; only nodes whose free CPU and memory
 * (capacity minus what placed instances claim) fit the request; only the
 * pinned zone if one is given. Among those, the zone where this tenant has
 * the fewest instances (spreading a tenant across failure domains), then
 * the node with the most free memory, then the name (deterministic).
 */
#ifndef CIEL_SCHED_H
#define CIEL_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct sched_node {
	const char *name, *zone;
	int ready;
	int64_t cap_cpu_millis, cap_memory_bytes;
	int64_t used_cpu_millis,
	    used_memory_bytes; /* by placements there: instances, quantum jobs */
	int tenant_instances;  /* this tenant's instances there */
};

struct sched_request {
	int64_t cpu_millis, memory_bytes;
	const char *zone;  /* NULL or "" = any */
	const char *avoid; /* NULL or a node not to use (re-placement away from it) */
};

/*
 * Index into nodes of the chosen node, or -1 with CIEL_EUNAVAIL and a
 * message saying why none fits (no Ready node in the zone, not enough CPU,
 * not enough memory: the largest free amount is named).
 */
int sched_place(const struct sched_node *nodes, size_t n, const struct sched_request *req,
		struct ciel_err *err);

#endif
