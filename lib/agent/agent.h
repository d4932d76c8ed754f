/*
 * agent — the node's reconcile loop: watch the placements the region wants
 * on this node, make them real as OCI containers, and report what they do.
 *
 *   GET  /v1/nodes/{node}/placements?after=REV&wait_ms=N   the wanted set (long poll)
 *   GET  /v1/blobs/{digest}                                image layers (lib/agent/fetch.h)
 *   POST /v1/nodes/{node}/status                           what happened, per instance
 *   POST /v1/nodes/{node}/qjobs                            quantum jobs (lib/agent/qjob.h)
 *   POST /v1/nodes/{node}/llm                              model workers (lib/agent/llmw.h)
 *
 * On the node, per instance (tenant T, name N, container id "T-N"):
 *   STATE/instances/T/N/       the oci instance directory (lib/oci/oci.h)
 *   STATE/instances/T/N.json   {"placement": the placement last acted on,
 *                               "report": the last report the region accepted,
 *                               "restarts": N, "fail": "why the last start failed"}
 * and, shared: STATE/blobs (layer blobs), STATE/images/<hex> (unpacked
 * images), STATE/runtime (the OCI runtime's --root); cgroups under
 * "ciel/<node>"; the network per tenant from lib/net.
 *
 * Invariants:
 * - Restarting the agent adopts what runs: the shims and containers live on
 *   without it, status.json says what they are, N.json says which placement
 *   they came from, so nothing is started twice and nothing is left behind.
 * - A report is derived from what is observed (and the placement), sent
 *   when it differs from the last one the region accepted, and retried on
 *   the next pass until it is accepted: a restart of either side neither
 *   loses a report nor repeats one.
 * - Local instances without a placement (moved elsewhere while this node was
 *   away) are removed, but only once a placement list has actually been
 *   received: an unreachable region never empties a node.
 * - All container and network work happens on the one reconcile thread, so
 *   operations on an instance never race; children are reaped there too,
 *   between operations, never under another waitpid.
 */
#ifndef CIEL_AGENT_H
#define CIEL_AGENT_H

#include <sys/types.h>

#include <jansson.h>

#include "client/client.h"
#include "util/err.h"

#define AGENT_STOP_GRACE_MS 10000 /* SIGTERM to SIGKILL on a stop */
#define AGENT_PIDS_MAX 1024

struct agent;

struct agent_config {
	const char *node;     /* this node's name */
	const char *state;    /* state directory */
	const char *runtime;  /* "auto", "runc" or "crun" */
	const char *self_exe; /* the program the shims run as (`ciel-agent shim ...`) */
};

/* True if s is a valid tenant or instance name (api_check_name's rules). */
int agent_name_valid(const char *s);
/*
 * The name this node's objects carry on the host (cgroup parent, nftables
 * table, bridges): the node name plus a hash of the state directory's real
 * path. Node names are unique in a region, not on a machine: two regions on
 * one host (a test beside `make up`) both have a "node-az1", and one's
 * teardown must not remove the other's network.
 */
void agent_host_id(const char *state, const char *node, char *out, size_t size);

/*
 * Workers (quantum jobs, model endpoints) parse and run tenant input, so they
 * never run as root: each tenant's workers get a uid of their own (no passwd
 * entry needed), made from the tenant's name (FNV-1a), so one tenant's worker
 * cannot signal, trace or read /proc of another's. Far above the uids
 * distributions hand out; public models (tenant "") get the one just past
 * the range, which no tenant gets.
 */
#define AGENT_UID_BASE 0x60000000u
#define AGENT_UID_SPAN 0x01000000u
#define AGENT_UID_PUBLIC (AGENT_UID_BASE + AGENT_UID_SPAN)

/* The uid tenant's workers run under when the agent is root ("" = public). */
uid_t agent_worker_uid(const char *tenant);

/*
 * In the child of a fork(), become a worker (quantum job, model endpoint):
 * default signal mask and SIGPIPE, a session of its own, fds[i] as
 * descriptor i for i < n and every other descriptor closed (fds[exe], the
 * binary, close-on-exec), uid's ids (0: stay), no new privileges, and, when
 * parent > 0, death with that parent (set after the uid change, which clears
 * it; exits at once if the parent went already). Then execveat(fds[exe], argv).
 * Async-signal-safe. Never returns: _exit 124 (descriptors), 123 (uid or
 * prctl), 126 (parent gone), 127 (exec).
 */
__attribute__((noreturn)) void agent_worker_exec(const int *fds, int n, int exe, uid_t uid,
						 pid_t parent, const char *const *argv);

/*
 * POST report to the region at path. 0 accepted, 1 refused for good (a 4xx:
 * sending it again would not help), -1 try again later (no answer, 5xx, 408,
 * 429, or 401: a clock out of step or a region restarting heals). The log
 * lines start with what ("report", "quantum job report"); a refusal names
 * the report's tenant and its member key as label=value.
 */
int agent_post_report(struct client *c, const char *path, const json_t *report, const char *what,
		      const char *label, const char *key);

/* True if s is a valid node name (the join route's rules: 1-63 of [a-z0-9-], not '-' first). */
int agent_node_valid(const char *s);

/*
 * Find the OCI runtime (root STATE/runtime, cgroup parent "ciel/<node>"),
 * set up the node's network table, create the state subdirectories. Nothing
 * is contacted. *out is freed by agent_free.
 */
int agent_open(struct agent **out, const struct agent_config *cfg, struct ciel_err *err);

/* "runc" or "crun": the runtime agent_open found. */
const char *agent_runtime_name(const struct agent *a);

/*
 * Start the reconcile thread, with a client of its own for cc (copied, the
 * secret wiped by agent_free). The thread adopts what STATE/instances holds,
 * then loops until agent_stop.
 */
int agent_start(struct agent *a, const struct client_config *cc, struct ciel_err *err);

/* Ask the reconcile thread to stop and wait for it (at most the operation in
 * progress plus one long poll). Containers keep running. */
void agent_stop(struct agent *a);

/* Stop if needed and free. NULL is a no-op. */
void agent_free(struct agent *a);

#endif
