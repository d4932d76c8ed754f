/*
 * sched — see sched.h. Where an instance runs, decided over a snapshot.
 *
 * One pass marks which nodes are candidates (Ready, in the pinned zone, not
 * the avoided node, enough CPU and memory); a second picks the best by
 * (tenant instances in the node's zone, most free memory, name). A zone's
 * count is summed over every node of the zone, Ready or not: an instance on
 * a NotReady node still lives in that failure domain, and spreading away
 * from it is the point.
 *
 * When nothing fits, the message names the first filter that emptied the
 * set (no node in the zone, none Ready, only the avoided node) or what is
 * short, with the largest free amount and the node that has it, so an
 * operator reads the fix from the error alone.
 *
 * Invariants: pure (no allocation, no I/O, no clock); the same snapshot and
 * request always give the same answer, whatever the order of nodes.
 */
#include "sched/sched.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

static int zone_given(const char *zone)
{
	return zone && *zone;
}

/* Memory for a message: exact binary units when exact, else MiB rounded down
 * (so a "free" amount never reads as more than it is). */
static void fmt_bytes(char *buf, size_t len, int64_t n)
{
	if (n != 0 && n % GIB == 0)
		snprintf(buf, len, "%lld GiB", (long long)(n / GIB));
	else if (n != 0 && n % MIB == 0)
		snprintf(buf, len, "%lld MiB", (long long)(n / MIB));
	else if (n >= MIB)
		snprintf(buf, len, "%lld.%lld MiB", (long long)(n / MIB),
			 (long long)(n % MIB * 10 / MIB));
	else
		snprintf(buf, len, "%lld bytes", (long long)n);
}

/* This tenant's instances in zone, over every node of the snapshot. */
static long zone_instances(const struct sched_node *nodes, size_t n, const char *zone)
{
	long sum = 0;

	for (size_t i = 0; i < n; i++)
		if (strcmp(str_or_empty(nodes[i].zone), zone) == 0)
			sum += nodes[i].tenant_instances;
	return sum;
}

/* Nodes that pass the filters before capacity: Ready, in the zone, not avoided. */
static int eligible(const struct sched_node *nd, const struct sched_request *req)
{
	if (!nd->ready)
		return 0;
	if (zone_given(req->zone) && strcmp(str_or_empty(nd->zone), req->zone) != 0)
		return 0;
	if (req->avoid && strcmp(str_or_empty(nd->name), req->avoid) == 0)
		return 0;
	return 1;
}

/* Is a better than b? Fewer of the tenant's instances in the zone, then more
 * free memory, then the smaller name. */
static int better(long za, int64_t ma, const char *na, long zb, int64_t mb, const char *nb)
{
	if (za != zb)
		return za < zb;
	if (ma != mb)
		return ma > mb;
	return strcmp(na, nb) < 0;
}

/* Why no node fits, once the filters have been applied. Fills err, returns -1. */
static int explain(const struct sched_node *nodes, size_t n, const struct sched_request *req,
		   struct ciel_err *err)
{
	const struct sched_node *cpu_best = NULL, *mem_best = NULL;
	int in_zone = 0, ready_in_zone = 0, cpu_fits = 0, mem_fits = 0;
	char zone_note[96] = "", need_mem[32], free_mem[32];

	if (zone_given(req->zone))
		snprintf(zone_note, sizeof(zone_note), " in zone %s", req->zone);
	for (size_t i = 0; i < n; i++) {
		const struct sched_node *nd = &nodes[i];
		int64_t fcpu = nd->cap_cpu_millis - nd->used_cpu_millis;
		int64_t fmem = nd->cap_memory_bytes - nd->used_memory_bytes;

		if (zone_given(req->zone) && strcmp(str_or_empty(nd->zone), req->zone) != 0)
			continue;
		in_zone++;
		if (nd->ready)
			ready_in_zone++;
		if (!eligible(nd, req))
			continue;
		if (!cpu_best || fcpu > cpu_best->cap_cpu_millis - cpu_best->used_cpu_millis)
			cpu_best = nd;
		if (!mem_best || fmem > mem_best->cap_memory_bytes - mem_best->used_memory_bytes)
			mem_best = nd;
		cpu_fits += fcpu >= req->cpu_millis;
		mem_fits += fmem >= req->memory_bytes;
	}
	if (in_zone == 0 && zone_given(req->zone))
		return ciel_err_field(err, CIEL_EUNAVAIL, "zone", "no node in zone %s", req->zone);
	if (ready_in_zone == 0)
		return ciel_err_field(err, CIEL_EUNAVAIL, zone_given(req->zone) ? "zone" : "",
				      "no Ready node%s", zone_note);
	if (!cpu_best)
		return ciel_err_set(err, CIEL_EUNAVAIL, "no Ready node%s other than %s", zone_note,
				    req->avoid);

	int64_t cpu_most = cpu_best->cap_cpu_millis - cpu_best->used_cpu_millis;
	int64_t mem_most = mem_best->cap_memory_bytes - mem_best->used_memory_bytes;

	fmt_bytes(need_mem, sizeof(need_mem), req->memory_bytes);
	fmt_bytes(free_mem, sizeof(free_mem), mem_most);
	if (!cpu_fits && !mem_fits)
		return ciel_err_set(
		    err, CIEL_EUNAVAIL,
		    "no Ready node%s has %lld millicpu free (most free: %lld on %s) "
		    "nor %s of memory free (most free: %s on %s)",
		    zone_note, (long long)req->cpu_millis, (long long)cpu_most,
		    str_or_empty(cpu_best->name), need_mem, free_mem, str_or_empty(mem_best->name));
	if (!cpu_fits)
		return ciel_err_field(
		    err, CIEL_EUNAVAIL, "cpu",
		    "no Ready node%s has %lld millicpu free (most free: %lld on %s)", zone_note,
		    (long long)req->cpu_millis, (long long)cpu_most, str_or_empty(cpu_best->name));
	if (!mem_fits)
		return ciel_err_field(err, CIEL_EUNAVAIL, "memory",
				      "no Ready node%s has %s of memory free (most free: %s on %s)",
				      zone_note, need_mem, free_mem, str_or_empty(mem_best->name));
	/* Each resource fits somewhere, never both on one node. */
	return ciel_err_set(err, CIEL_EUNAVAIL,
			    "no Ready node%s has both %lld millicpu and %s of memory free "
			    "(most cpu free: %lld on %s; most memory free: %s on %s)",
			    zone_note, (long long)req->cpu_millis, need_mem, (long long)cpu_most,
			    str_or_empty(cpu_best->name), free_mem, str_or_empty(mem_best->name));
}

int sched_place(const struct sched_node *nodes, size_t n, const struct sched_request *req,
		struct ciel_err *err)
{
	int best = -1;
	long best_zone = 0;
	int64_t best_mem = 0;

	if (!req || (n > 0 && !nodes))
		return ciel_err_set(err, CIEL_EINVAL, "sched: no nodes or no request");
	if (n > INT_MAX)
		return ciel_err_set(err, CIEL_EINVAL, "sched: %zu nodes is too many", n);
	if (req->cpu_millis < 0)
		return ciel_err_field(err, CIEL_EINVAL, "cpu", "cpu must not be negative");
	if (req->memory_bytes < 0)
		return ciel_err_field(err, CIEL_EINVAL, "memory", "memory must not be negative");

	for (size_t i = 0; i < n; i++) {
		const struct sched_node *nd = &nodes[i];
		int64_t fmem = nd->cap_memory_bytes - nd->used_memory_bytes;
		long zc;

		if (!eligible(nd, req) ||
		    nd->cap_cpu_millis - nd->used_cpu_millis < req->cpu_millis ||
		    fmem < req->memory_bytes)
			continue;
		zc = zone_instances(nodes, n, str_or_empty(nd->zone));
		if (best < 0 || better(zc, fmem, str_or_empty(nd->name), best_zone, best_mem,
				       str_or_empty(nodes[best].name))) {
			best = (int)i;
			best_zone = zc;
			best_mem = fmem;
		}
	}
	if (best < 0)
		return explain(nodes, n, req, err);
	return best;
}
