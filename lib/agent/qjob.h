/*
 * qjob — the node's side of quantum jobs: run the simulator (ciel-qsim,
 * found beside the agent's own binary) for each "qjob" placement, on CPUs
 * of its own, and report what became of it.
 *
 *   placement (kind "qjob")  {"tenant","id","qasm","shots","profile","seed",
 *                             "precision","threads","state_bytes",
 *                             "memory_bytes","cpu_millis"}
 *   POST /v1/nodes/{node}/qjobs  {"tenant","id","state":"running","started","cpus":"0,1"}
 *                                then "completed" (+ "result") or "failed"
 *                                (+ "reason"), with "finished" and "duration_ms"
 *
 * On the node, per job (tenant T, id I), STATE/qjobs/T/I/ holds
 * placement.json (what was started), job.qasm, out.json and err.txt (the
 * worker's stdout and stderr), worker.json (its pid, while it may run) and
 * final.json (the last report, written before it is sent).
 *
 * Invariants:
 * - Two workers never share a CPU: each gets `threads` CPUs of the agent's
 *   affinity set, pinned with sched_setaffinity before exec; a job waits
 *   while too few are free.
 * - Workers are children of the reconcile thread, in a session of their own
 *   (so a cancel kills the whole group) and die with that thread
 *   (PR_SET_PDEATHSIG): an agent that stops leaves no simulation behind.
 * - A placement that disappears is a cancel: the worker is killed and
 *   nothing is reported. A job is reported on until the region accepts its
 *   end, and never started twice while its placement stays.
 * - After an agent restart, a job that had not finished is run again from
 *   the start (same seed, so the same counts); one whose end was recorded in
 *   final.json is reported again, not re-run.
 */
#ifndef CIEL_QJOB_H
#define CIEL_QJOB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/client.h"
#include "util/err.h"

#define QJOB_REPORT_MAX (1u << 20) /* the API's body limit (API_BODY_MAX) */

struct qjobs;

/*
 * Set up STATE/qjobs, note the CPUs this process may use, and adopt the
 * jobs a previous agent left there (see above). qsim_bin: the simulator to
 * run; report_path: "/v1/nodes/<node>/qjobs". *out is freed by qjobs_free.
 */
int qjobs_open(struct qjobs **out, const char *state, const char *qsim_bin, const char *report_path,
	       struct ciel_err *err);
/* Kill every worker (they would be re-run anyway) and free. NULL is a no-op. */
void qjobs_free(struct qjobs *q);

/* True if a placement list item is a quantum job (kind "qjob"). */
bool qjobs_is_item(const json_t *item);
/* A new placement list: begin, add each qjob item, end. */
void qjobs_list_begin(struct qjobs *q);
void qjobs_list_add(struct qjobs *q, const json_t *item);
void qjobs_list_end(struct qjobs *q);

/* A child was reaped with status: true if it was one of our workers. */
bool qjobs_reaped(struct qjobs *q, pid_t pid, int status);

/* Start what the list wants, cancel what it dropped, collect what ended. */
void qjobs_reconcile(struct qjobs *q);
/* Send the reports the region has not accepted yet, with c. */
void qjobs_report(struct qjobs *q, struct client *c);
/* Workers running now. */
int qjobs_running(const struct qjobs *q);
/*
 * Milliseconds until the workers should be looked at again (INT64_MAX with
 * none running): soon after a start, since a small circuit ends in
 * milliseconds, then less and less often, so a long job costs few passes.
 */
int64_t qjobs_due_ms(const struct qjobs *q);

#endif
