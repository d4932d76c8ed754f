/*
 * test_sched — placement over hand-built snapshots: each rule alone, the
 * order of the tie-breaks, the messages when nothing fits, and a tenant
 * spreading over three zones as the control plane feeds the result back.
 */
#include "sched/sched.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define MIB ((int64_t)1 << 20)
#define GIB ((int64_t)1 << 30)

/* A Ready node with 4 CPUs and 8 GiB, nothing placed on it. */
static struct sched_node node(const char *name, const char *zone)
{
	struct sched_node n = {
	    .name = name,
	    .zone = zone,
	    .ready = 1,
	    .cap_cpu_millis = 4000,
	    .cap_memory_bytes = 8 * GIB,
	};
	return n;
}

static struct sched_request small(void)
{
	struct sched_request r = {.cpu_millis = 500, .memory_bytes = 256 * MIB};
	return r;
}

static int place(const struct sched_node *nodes, size_t n, const struct sched_request *r,
		 struct ciel_err *err)
{
	memset(err, 0, sizeof(*err));
	return sched_place(nodes, n, r, err);
}

static void test_fewest_tenant_instances_zone(void **st)
{
	struct sched_node ns[] = {node("a1", "az1"), node("a2", "az1"), node("b1", "az2"),
				  node("c1", "az3")};
	struct sched_request r = small();
	struct ciel_err err;

	(void)st;
	ns[0].tenant_instances = 1;
	ns[2].tenant_instances = 1;
	/* c1 has less free memory than the others, but az3 holds none of the tenant's */
	ns[3].used_memory_bytes = 6 * GIB;
	assert_int_equal(place(ns, 4, &r, &err), 3);
	/* the count is per zone: a2 holds none itself, but az1 has one on a1 */
	ns[3].tenant_instances = 1;
	ns[2].tenant_instances = 2;
	ns[0].tenant_instances = 0;
	ns[1].tenant_instances = 1;
	/* az1 = 1, az2 = 2, az3 = 1: az1 and az3 tie, most free memory wins (a1/a2 8 GiB) */
	assert_int_equal(place(ns, 4, &r, &err), 0);
	/* an instance on a NotReady node still counts for its zone */
	ns[1].ready = 0;
	ns[1].tenant_instances = 5;
	assert_int_equal(place(ns, 4, &r, &err), 3);
}

static void test_ties(void **st)
{
	struct sched_node ns[] = {node("n-c", "az1"), node("n-b", "az2"), node("n-a", "az3")};
	struct sched_request r = small();
	struct ciel_err err;

	(void)st;
	/* all zones equal: most free memory */
	ns[2].used_memory_bytes = 1 * GIB;
	ns[1].used_memory_bytes = 512 * MIB;
	assert_int_equal(place(ns, 3, &r, &err), 0);
	/* equal memory too: the smallest name, whatever the order in the array */
	ns[0].used_memory_bytes = 512 * MIB;
	assert_int_equal(place(ns, 3, &r, &err), 1);
	ns[2].used_memory_bytes = 512 * MIB;
	assert_int_equal(place(ns, 3, &r, &err), 2);
	/* free CPU is not a tie-break */
	ns[2].used_cpu_millis = 3000;
	assert_int_equal(place(ns, 3, &r, &err), 2);
}

static void test_never_notready(void **st)
{
	struct sched_node ns[] = {node("a", "az1"), node("b", "az2")};
	struct sched_request r = small();
	struct ciel_err err;

	(void)st;
	ns[1].ready = 0;
	ns[0].tenant_instances = 3; /* az1 is the worst zone, still the only Ready one */
	assert_int_equal(place(ns, 2, &r, &err), 0);
	ns[0].ready = 0;
	assert_int_equal(place(ns, 2, &r, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_string_equal(err.msg, "no Ready node");
	/* no nodes at all */
	assert_int_equal(place(NULL, 0, &r, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
}

static void test_capacity(void **st)
{
	struct sched_node ns[] = {node("node-a", "az1"), node("node-b", "az2"),
				  node("node-c", "az3")};
	struct sched_request r = {.cpu_millis = 2000, .memory_bytes = 1 * GIB};
	struct ciel_err err;

	(void)st;
	ns[0].used_cpu_millis = 3000;		       /* 1000 free */
	ns[1].used_cpu_millis = 2500;		       /* 1500 free */
	ns[2].used_memory_bytes = 7 * GIB + 512 * MIB; /* CPU fits, memory not */
	assert_int_equal(place(ns, 3, &r, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_string_equal(err.msg,
			    "no Ready node has both 2000 millicpu and 1 GiB of memory free "
			    "(most cpu free: 4000 on node-c; most memory free: 8 GiB on "
			    "node-a)");
	/* exactly enough fits */
	ns[2].used_memory_bytes = 7 * GIB;
	assert_int_equal(place(ns, 3, &r, &err), 2);
	/* CPU short everywhere: the message names the need and the best node */
	ns[2].used_cpu_millis = 3000;
	assert_int_equal(place(ns, 3, &r, &err), -1);
	assert_string_equal(err.msg,
			    "no Ready node has 2000 millicpu free (most free: 1500 on node-b)");
	assert_string_equal(err.field, "cpu");
	/* memory short everywhere */
	for (int i = 0; i < 3; i++) {
		ns[i].used_cpu_millis = 0;
		ns[i].used_memory_bytes = 7 * GIB + 512 * MIB;
	}
	ns[1].used_memory_bytes = 7 * GIB + 100 * MIB;
	assert_int_equal(place(ns, 3, &r, &err), -1);
	assert_string_equal(
	    err.msg, "no Ready node has 1 GiB of memory free (most free: 924 MiB on node-b)");
	assert_string_equal(err.field, "memory");
	/* both short: both named */
	ns[1].used_cpu_millis = 3999;
	ns[0].used_cpu_millis = 3999;
	ns[2].used_cpu_millis = 3000;
	ns[1].used_memory_bytes = 8 * GIB - 1000;
	assert_int_equal(place(ns, 3, &r, &err), -1);
	assert_string_equal(err.msg, "no Ready node has 2000 millicpu free (most free: 1000 on "
				     "node-c) nor 1 GiB of memory free (most free: 512 MiB on "
				     "node-a)");
	/* an overcommitted node (used > capacity) simply does not fit */
	ns[0].used_cpu_millis = 9000;
	ns[0].used_memory_bytes = 0;
	r.memory_bytes = MIB;
	r.cpu_millis = 1000;
	assert_int_equal(place(ns, 3, &r, &err), 2);
}

static void test_pinned_zone(void **st)
{
	struct sched_node ns[] = {node("a", "az1"), node("b", "az2"), node("c", "az2"),
				  node("d", "az3")};
	struct sched_request r = small();
	struct ciel_err err;

	(void)st;
	ns[1].tenant_instances = 4; /* az2 is the worst zone for spreading */
	ns[2].used_memory_bytes = GIB;
	r.zone = "az2";
	assert_int_equal(place(ns, 4, &r, &err), 1);
	r.zone = "";
	assert_int_equal(place(ns, 4, &r, &err), 0);
	/* a pinned zone whose nodes are all NotReady: the zone is named */
	r.zone = "az3";
	ns[3].ready = 0;
	assert_int_equal(place(ns, 4, &r, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_string_equal(err.msg, "no Ready node in zone az3");
	assert_string_equal(err.field, "zone");
	/* a zone no node is in */
	r.zone = "az9";
	assert_int_equal(place(ns, 4, &r, &err), -1);
	assert_string_equal(err.msg, "no node in zone az9");
	/* the pinned zone is Ready but full: the shortage message says where */
	r.zone = "az1";
	r.cpu_millis = 5000;
	assert_int_equal(place(ns, 4, &r, &err), -1);
	assert_string_equal(
	    err.msg, "no Ready node in zone az1 has 5000 millicpu free (most free: 4000 on a)");
}

static void test_avoid(void **st)
{
	struct sched_node ns[] = {node("a", "az1"), node("b", "az2")};
	struct sched_request r = small();
	struct ciel_err err;

	(void)st;
	ns[1].tenant_instances = 2;
	assert_int_equal(place(ns, 2, &r, &err), 0);
	r.avoid = "a";
	assert_int_equal(place(ns, 2, &r, &err), 1);
	ns[1].ready = 0;
	assert_int_equal(place(ns, 2, &r, &err), -1);
	assert_string_equal(err.msg, "no Ready node other than a");
	/* avoiding a node that is not in the snapshot changes nothing */
	ns[1].ready = 1;
	r.avoid = "zz";
	assert_int_equal(place(ns, 2, &r, &err), 0);
}

/* Three placements of one tenant, fed back as the control plane does, land in three zones. */
static void test_spread(void **st)
{
	struct sched_node ns[] = {node("a1", "az1"), node("a2", "az1"), node("b1", "az2"),
				  node("b2", "az2"), node("c1", "az3")};
	struct sched_request r = {.cpu_millis = 1000, .memory_bytes = 2 * GIB};
	struct ciel_err err;
	int zones_used[3] = {0, 0, 0};

	(void)st;
	ns[4].used_memory_bytes = 3 * GIB; /* least free memory: chosen last by memory */
	for (int k = 0; k < 3; k++) {
		int i = place(ns, 5, &r, &err);

		assert_true(i >= 0);
		ns[i].used_cpu_millis += r.cpu_millis;
		ns[i].used_memory_bytes += r.memory_bytes;
		ns[i].tenant_instances++;
		zones_used[ns[i].zone[2] - '1']++;
	}
	assert_int_equal(zones_used[0], 1);
	assert_int_equal(zones_used[1], 1);
	assert_int_equal(zones_used[2], 1);
	/* the fourth goes back to a zone with one, on its emptiest node */
	int i = place(ns, 5, &r, &err);
	assert_true(i == 1 || i == 3);
}

static void test_bad_input(void **st)
{
	struct sched_node ns[] = {node("a", "az1")};
	struct sched_request r = small();
	struct ciel_err err;

	(void)st;
	assert_int_equal(place(ns, 1, NULL, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(place(NULL, 1, &r, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	r.cpu_millis = -1;
	assert_int_equal(place(ns, 1, &r, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_string_equal(err.field, "cpu");
	/* NULL err is allowed */
	assert_int_equal(sched_place(ns, 1, &r, NULL), -1);
	/* NULL zone/name are read as "" */
	ns[0].zone = NULL;
	ns[0].name = NULL;
	r = small();
	assert_int_equal(place(ns, 1, &r, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fewest_tenant_instances_zone),
	    cmocka_unit_test(test_ties),
	    cmocka_unit_test(test_never_notready),
	    cmocka_unit_test(test_capacity),
	    cmocka_unit_test(test_pinned_zone),
	    cmocka_unit_test(test_avoid),
	    cmocka_unit_test(test_spread),
	    cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
