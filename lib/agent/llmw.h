/*
 * llmw — the node's side of model endpoints: one `ciel-llm serve` worker
 * (found beside the agent's own binary) per "llm" placement, and reports of
 * what it does.
 *
 *   placement (kind "llm")  {"tenant" ("" when public),"public","name","blob",
 *                            "size","ctx","max_seqs","threads","memory_bytes",
 *                            "cpu_millis","generation"}
 *   GET  /v1/blobs/{sha256}        the GGUF file, once per node (shared)
 *   POST /v1/nodes/{node}/llm      {"tenant","name","generation","state":
 *                                   "loading|ready|failed","url","token","pid",
 *                                   "rss_bytes","reason"}
 *
 * On the node: STATE/models/sha256/<hex> holds each model file once, whatever
 * the endpoints using it; per endpoint (K = tenant, or "_public"),
 * STATE/llm/K/NAME/ (the agent's, 0700) holds worker.json (pid, its start
 * time, generation, token) and err.txt (the worker's stdout and stderr), and
 * STATE/llm/K/NAME/run/ (the worker's own, 0700) its token file and the ready
 * file it writes once it listens.
 *
 * Invariants:
 * - A worker runs under a uid of its tenant's (public models: a uid of their
 *   own), never root, with no_new_privs; it opens nothing of the agent's by
 *   path: the model and its run directory come as descriptors, named to it
 *   as /proc/self/fd/N, so STATE stays closed to it.
 * - Workers outlive the agent (like containers): a new agent adopts the one
 *   worker.json names if that process still runs (same pid and start time),
 *   so a restart never starts a second worker for an endpoint.
 * - One worker per endpoint and generation: a new generation (the model was
 *   replaced) or a placement that goes stops the old worker (SIGTERM, then
 *   SIGKILL after a grace) before anything else starts.
 * - A worker that dies is started again, with backoff; each start has a
 *   fresh random token, so a token never outlives its worker.
 * - An unreachable region stops nothing: only a received placement list
 *   that no longer names an endpoint stops its worker.
 */
#ifndef CIEL_LLMW_H
#define CIEL_LLMW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "client/client.h"
#include "util/err.h"

#define LLMW_STOP_GRACE_MS 5000 /* SIGTERM to SIGKILL */
#define LLMW_LOAD_TIMEOUT_MS (10 * 60 * 1000)

struct llmw;

/*
 * Set up STATE/llm and STATE/models and adopt the workers a previous agent
 * left (see above). llm_bin: the worker program; report_path:
 * "/v1/nodes/<node>/llm". *out is freed by llmw_free.
 */
int llmw_open(struct llmw **out, const char *state, const char *llm_bin, const char *report_path,
	      struct ciel_err *err);
/* Free the records; running workers stay, for the next agent to adopt. NULL is a no-op. */
void llmw_free(struct llmw *l);

/* True if a placement list item is a model endpoint (kind "llm"). */
bool llmw_is_item(const json_t *item);
/* A new placement list: begin, add each llm item, end. */
void llmw_list_begin(struct llmw *l);
void llmw_list_add(struct llmw *l, const json_t *item);
void llmw_list_end(struct llmw *l);

/* A child was reaped with status: true if it was one of our workers. */
bool llmw_reaped(struct llmw *l, pid_t pid, int status);

/*
 * Start what the list wants (fetching model files with c), stop what it
 * dropped or replaced, notice workers that became ready or died.
 */
void llmw_reconcile(struct llmw *l, struct client *c);
/* Send the reports the region has not accepted yet, with c. */
void llmw_report(struct llmw *l, struct client *c);
/* Milliseconds until the workers should be looked at again (INT64_MAX: no need). */
int64_t llmw_due_ms(const struct llmw *l);
/* Workers running now. */
int llmw_running(const struct llmw *l);

/*
 * `ciel-agent teardown`: kill every worker STATE/llm records (the agent must
 * not run) and remove STATE/llm. Each worker that could not be stopped is a
 * line "left: ..." on out. 0 if none is left, -1 (CIEL_EIO) otherwise.
 */
int llmw_teardown(const char *state, FILE *out, struct ciel_err *err);

#endif
