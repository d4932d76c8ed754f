/*
 * quantum — quantum jobs as a service: OpenQASM circuits run by the
 * simulator (lib/qsim) in a worker process on a node, never in cield.
 *
 * Store layout:
 *   /tenants/<t>/qjobs/<id>                  the job: request, state, result
 *   /region/placements/<node>/<t>/qjob.<id>  what that node must run ('.' is
 *                                            not allowed in instance names, so
 *                                            the key cannot clash with one)
 *
 * A job's life: queued (node unset) → queued on a node (placed, the node
 * has not started it yet) → running → completed | failed, or cancelled at
 * any point before the end. Only cield places jobs (quantum_dispatch), only
 * the node it is placed on reports on it, and a finished job's placement is
 * removed in the commit that records the end, which is what frees its cores.
 *
 * Invariants:
 * - Everything is checked before anything is stored: the QASM parses, the
 *   profile exists, the circuit fits the profile and some node's memory,
 *   and the tenant's quantum quotas allow it.
 * - Jobs never share cores: a placement reserves threads * 1000 cpu_millis
 *   on its node, counted like an instance's, and a job is only placed where
 *   whole cores are free.
 * - Every change is audited in the job's tenant's chain, including the ones
 *   made by cield itself (placement) and by the node (running, the end).
 * - Another tenant's job answers 404, like one that does not exist.
 */
#include "api/api.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/enc.h"
#include "sched/sched.h"
#include "qsim/qasm.h"
#include "qsim/qdev.h"
#include "qsim/qrun.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define QJOB_DEFAULT_SHOTS 1024
#define QJOB_MEM_MARGIN (64LL << 20) /* the worker's own needs beside the state */
#define QJOB_THREADS_FROM 16	     /* below this many qubits threads do not pay */
#define QJOB_MAX_THREADS 256
#define QJOB_SEED_BITS 48 /* random seeds stay exact in any JSON reader */

/* Admission, placement and reports read then write the same jobs: one at a time. */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;

static bool active(const char *state)
{
	return strcmp(state, "queued") == 0 || strcmp(state, "running") == 0;
}

static int job_key(char *out, size_t size, const char *tenant, const char *id)
{
	int n = snprintf(out, size, "/tenants/%s/qjobs/%s", tenant, id);

	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int place_key(char *out, size_t size, const char *node, const char *tenant, const char *id)
{
	int n = snprintf(out, size, "/region/placements/%s/%s/qjob.%s", node, tenant, id);

	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static json_t *load_job(struct api *a, const char *tenant, const char *id, int64_t *rev,
			struct ciel_err *err)
{
	char key[STORE_KEY_MAX];
	json_t *j;

	if (api_check_name("id", id, err) < 0 || job_key(key, sizeof(key), tenant, id) < 0) {
		/* an id that cannot exist does not exist */
		ciel_err_set(err, CIEL_ENOTFOUND, "quantum job %s not found", id);
		return NULL;
	}
	j = api_load_json(a, key, rev, err);
	if (!j && err->code == CIEL_ENOTFOUND)
		ciel_err_set(err, CIEL_ENOTFOUND, "quantum job %s not found", id);
	return j;
}

/* The job as stored: without the "revision" the list adds. Caller frees. */
static char *job_text(const json_t *job)
{
	json_t *c = json_deep_copy(job);

	if (c)
		json_object_del(c, "revision");
	return api_dump(c);
}

/* The job as answered: the QASM only where asked for (it may be large). */
static json_t *job_view(const json_t *job, int64_t rev, bool with_qasm, bool with_counts)
{
	json_t *v = json_deep_copy(job);
	json_t *res;

	if (!v)
		return NULL;
	if (!with_qasm)
		json_object_del(v, "qasm");
	res = json_object_get(v, "result");
	if (!with_counts && json_is_object(res)) {
		json_object_del(res, "counts");
		json_object_del(res, "transpiled");
	}
	if (rev > 0)
		json_object_set_new(v, "revision", json_integer(rev));
	return v;
}

/* Commit ops for a change cield makes on its own, audited in the job's tenant's chain. */
static int self_commit(struct api *a, const json_t *job, const char *action,
		       const struct store_op *ops, size_t n)
{
	const char *tenant = jbody_str(job, "tenant", ""), *id = jbody_str(job, "id", "");
	struct ciel_err err = {0};
	char path[API_NAME_MAX + 32];
	int ret;

	snprintf(path, sizeof(path), "/v1/quantum/jobs/%s", id);
	ret = api_self_commit(a, tenant, path, action, ops, n, &err);
	if (ret < 0)
		log_warn("%s failed tenant=%s job=%s err=%s", action, tenant, id, err.msg);
	return ret;
}

/* ---- nodes and what they have free ---- */

static int64_t free_cores(const struct sched_node *n)
{
	int64_t c = (n->cap_cpu_millis - n->used_cpu_millis) / 1000;

	return c > 0 ? c : 0;
}

static int64_t free_mem(const struct sched_node *n)
{
	return n->cap_memory_bytes - n->used_memory_bytes;
}

static struct sched_node *snapshot_node(struct fleet_snapshot *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->sn[i].name, name) == 0)
			return &f->sn[i];
	return NULL;
}

/* ---- admission ---- */

static int parse_prec(const char *s, enum qsim_prec *prec, struct ciel_err *err)
{
	if (strcmp(s, "double") == 0)
		*prec = QSIM_DOUBLE;
	else if (strcmp(s, "single") == 0)
		*prec = QSIM_SINGLE;
	else
		return ciel_err_field(err, CIEL_EINVAL, "precision",
				      "precision: must be double or single, not '%.32s'", s);
	return 0;
}

/*
 * Parse, find the profile, plan: the circuit's simulated qubits and state
 * bytes. Every refusal is a 400 naming the field at fault.
 */
static int check_circuit(const char *qasm, const char *profile, enum qsim_prec prec, int *qubits,
			 uint64_t *bytes, struct ciel_err *err)
{
	const struct qdev_profile *p;
	struct circ c;
	int ret = -1;

	circ_init(&c);
	if (qasm_parse(qasm, strlen(qasm), &c, err) < 0) {
		if (err->code != CIEL_ENOMEM)
			err->code = CIEL_EINVAL;
		if (!err->field[0])
			snprintf(err->field, sizeof(err->field), "qasm");
		goto out;
	}
	p = qdev_find(profile, err);
	if (!p) {
		if (err->code == CIEL_ENOTFOUND)
			err->code = CIEL_EINVAL;
		snprintf(err->field, sizeof(err->field), "profile");
		goto out;
	}
	if (qrun_plan(&c, p, prec, qubits, bytes, err) < 0) {
		if (err->code != CIEL_ENOMEM && err->code != CIEL_EINTERNAL)
			err->code = CIEL_EINVAL;
		if (!err->field[0])
			snprintf(err->field, sizeof(err->field), "qasm");
		goto out;
	}
	ret = 0;
out:
	circ_release(&c);
	return ret;
}

/* The job must fit one node's memory some day; a full region is a wait, not a refusal. */
static int check_memory(struct api *a, uint64_t bytes, int qubits, struct ciel_err *err)
{
	struct fleet_snapshot f;
	int64_t best = -1;
	char need[32], have[32];

	if (fleet_snapshot_take(a, "", &f, err) < 0)
		return -1;
	for (size_t i = 0; i < f.n; i++)
		if (f.sn[i].cap_memory_bytes > best)
			best = f.sn[i].cap_memory_bytes;
	fleet_snapshot_release(&f);
	if (best < 0 || (int64_t)bytes + QJOB_MEM_MARGIN <= best)
		return 0;
	snprintf(need, sizeof(need), "%.1f GiB", (double)bytes / (double)(1LL << 30));
	snprintf(have, sizeof(have), "%.1f GiB", (double)best / (double)(1LL << 30));
	return ciel_err_field(err, CIEL_EINVAL, "qasm",
			      "qasm: %d qubits need %s of state, more than the largest node has "
			      "(%s); use fewer qubits or precision single",
			      qubits, need, have);
}

/* The tenant's quantum quotas; defaults for tenants created before they existed. */
static int load_quota(struct api *a, const char *tenant, int64_t *max_q, int64_t *max_s,
		      int64_t *max_j, struct ciel_err *err)
{
	char key[160];
	json_t *q;

	snprintf(key, sizeof(key), "/tenants/%s/quota", tenant);
	q = api_load_json(a, key, NULL, err);
	if (!q)
		return -1;
	*max_q = jbody_int(q, "quantum_max_qubits", QUANTUM_DEFAULT_MAX_QUBITS);
	*max_s = jbody_int(q, "quantum_max_shots", QUANTUM_DEFAULT_MAX_SHOTS);
	*max_j = jbody_int(q, "quantum_max_jobs", QUANTUM_DEFAULT_MAX_JOBS);
	json_decref(q);
	return 0;
}

static int check_size_quota(struct api *a, const char *tenant, int qubits, int64_t shots,
			    struct ciel_err *err)
{
	int64_t max_q, max_s, max_j;

	if (load_quota(a, tenant, &max_q, &max_s, &max_j, err) < 0)
		return -1;
	if (qubits > max_q)
		return ciel_err_field(err, CIEL_EQUOTA, "quantum_max_qubits",
				      "quota: quantum_max_qubits: the circuit simulates %d qubits, "
				      "the tenant may use %" PRId64,
				      qubits, max_q);
	if (shots > max_s)
		return ciel_err_field(err, CIEL_EQUOTA, "quantum_max_shots",
				      "quota: quantum_max_shots: %" PRId64
				      " shots asked, the tenant may use %" PRId64 " per job",
				      shots, max_s);
	return 0;
}

/* Under q_lock, so two requests cannot both take the last slot. */
static int check_jobs_quota(struct api *a, const char *tenant, struct ciel_err *err)
{
	char key[160];
	json_t *items;
	const json_t *it;
	int64_t max_q, max_s, max_j, n = 0;
	size_t i;

	if (load_quota(a, tenant, &max_q, &max_s, &max_j, err) < 0)
		return -1;
	snprintf(key, sizeof(key), "/tenants/%s/qjobs/", tenant);
	items = api_list_json(a, key, err);
	if (!items)
		return -1;
	json_array_foreach(items, i, it) n += active(jbody_str(it, "state", ""));
	json_decref(items);
	if (n >= max_j)
		return ciel_err_field(err, CIEL_EQUOTA, "quantum_max_jobs",
				      "quota: quantum_max_jobs: the tenant has %" PRId64
				      " jobs queued or running, of %" PRId64
				      " allowed; wait for one or cancel one",
				      n, max_j);
	return 0;
}

static int h_job_create(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "qasm", .type = JB_STRING, .required = 1, .max_len = API_BODY_MAX},
	    {.name = "shots", .type = JB_INT, .min = 1, .max = QRUN_MAX_SHOTS},
	    {.name = "profile", .type = JB_STRING, .max_len = QDEV_NAME_MAX},
	    {.name = "seed", .type = JB_INT, .min = 0, .max = INT64_MAX},
	    {.name = "precision", .type = JB_STRING, .max_len = 16},
	    {.name = "name", .type = JB_STRING, .max_len = 64},
	    {0},
	};
	char id[API_NAME_MAX + 1], key[STORE_KEY_MAX], now[TS_RFC3339_LEN];
	const char *profile, *precision, *qasm;
	json_t *body = NULL, *job = NULL;
	struct store_txn_result res;
	struct store_op op;
	enum qsim_prec prec = QSIM_DOUBLE;
	unsigned char rnd[8], idr[6];
	uint64_t bytes = 0, seed;
	int64_t shots;
	int qubits = 0, ret = -1;
	char *val = NULL;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	if (json_object_get(body, "name") &&
	    api_check_name("name", jbody_str(body, "name", ""), err) < 0)
		goto out;
	qasm = jbody_str(body, "qasm", "");
	profile = jbody_str(body, "profile", "ideal");
	precision = jbody_str(body, "precision", "double");
	shots = jbody_int(body, "shots", QJOB_DEFAULT_SHOTS);
	if (parse_prec(precision, &prec, err) < 0)
		goto out;
	if (check_circuit(qasm, profile, prec, &qubits, &bytes, err) < 0 ||
	    check_size_quota(a, r->tenant, qubits, shots, err) < 0 ||
	    check_memory(a, bytes, qubits, err) < 0)
		goto out;
	if (enc_random(rnd, sizeof(rnd), err) < 0 || enc_random(idr, sizeof(idr), err) < 0)
		goto out;
	memcpy(&seed, rnd, sizeof(seed));
	seed &= (1ULL << QJOB_SEED_BITS) - 1;
	if (json_object_get(body, "seed"))
		seed = (uint64_t)jbody_int(body, "seed", 0);
	memcpy(id, "q-", 2);
	enc_hex(idr, sizeof(idr), id + 2);

	ts_format(ts_now_ms(), now);
	job = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:i, s:I, s:s, s:I, s:s}", "id", id,
			"tenant", r->tenant, "state", "queued", "profile", profile, "shots",
			(json_int_t)shots, "seed", (json_int_t)seed, "precision", precision,
			"qubits", qubits, "memory_bytes", (json_int_t)bytes, "created", now,
			"queued_ms", (json_int_t)ts_now_ms(), "qasm", qasm);
	if (job && json_object_get(body, "name"))
		json_object_set_new(job, "name", json_string(jbody_str(body, "name", "")));
	val = job ? job_text(job) : NULL;
	if (!val) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	job_key(key, sizeof(key), r->tenant, id);
	op = (struct store_op){STORE_PUT, key, val, STORE_ABSENT};

	pthread_mutex_lock(&q_lock);
	if (check_jobs_quota(a, r->tenant, err) < 0 ||
	    api_commit(a, r, &op, 1, 201, &res, err) < 0) {
		pthread_mutex_unlock(&q_lock);
		goto out;
	}
	pthread_mutex_unlock(&q_lock);
	log_info("quantum job queued tenant=%s job=%s profile=%s qubits=%d shots=%" PRId64,
		 r->tenant, id, profile, qubits, shots);
	api_reply(resp, 201, job_view(job, res.rev, false, false));
	/* a free node starts it now rather than at the next tick */
	quantum_dispatch(a);
	ret = 0;
out:
	free(val);
	json_decref(job);
	json_decref(body);
	return ret;
}

/* ---- reading and cancelling ---- */

static int64_t queued_ms(const json_t *j)
{
	return jbody_int(j, "queued_ms", 0);
}

/* Oldest first (then by id), in place: lists are a tenant's jobs, a few hundred at most. */
static void sort_jobs(json_t *arr)
{
	size_t n = json_array_size(arr);

	for (size_t i = 1; i < n; i++) {
		for (size_t k = i; k > 0; k--) {
			json_t *x = json_array_get(arr, k - 1), *y = json_array_get(arr, k);

			if (queued_ms(x) < queued_ms(y) ||
			    (queued_ms(x) == queued_ms(y) &&
			     strcmp(jbody_str(x, "id", ""), jbody_str(y, "id", "")) <= 0))
				break;
			json_incref(x);
			json_array_set(arr, k - 1, y);
			json_array_set_new(arr, k, x);
		}
	}
}

static int h_job_list(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	char prefix[160];
	json_t *items, *out, *it;
	size_t i;

	snprintf(prefix, sizeof(prefix), "/tenants/%s/qjobs/", r->tenant);
	items = api_list_json(a, prefix, err);
	if (!items)
		return -1;
	sort_jobs(items);
	out = json_array();
	json_array_foreach(items, i, it)
	    json_array_append_new(out, job_view(it, jbody_int(it, "revision", 0), false, false));
	json_decref(items);
	api_reply(resp, 200, json_pack("{s:o}", "items", out ? out : json_array()));
	return 0;
}

static int h_job_show(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	int64_t rev;
	json_t *job = load_job(a, r->tenant, r->params[0], &rev, err);

	if (!job)
		return -1;
	api_reply(resp, 200, job_view(job, rev, true, true));
	json_decref(job);
	return 0;
}

/*
 * DELETE: a queued or running job is cancelled (its placement removed in the
 * same commit: the node kills the worker when it sees it gone); a finished
 * one is removed.
 */
static int h_job_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	char k_job[STORE_KEY_MAX], k_place[STORE_KEY_MAX], now[TS_RFC3339_LEN];
	struct store_op ops[2];
	struct store_txn_result res;
	json_t *job;
	char *val = NULL;
	int64_t rev;
	size_t n = 0;
	int ret = -1;

	pthread_mutex_lock(&q_lock);
	job = load_job(a, r->tenant, r->params[0], &rev, err);
	if (!job)
		goto out;
	job_key(k_job, sizeof(k_job), r->tenant, r->params[0]);
	if (!active(jbody_str(job, "state", ""))) {
		ops[n++] = (struct store_op){STORE_DELETE, k_job, NULL, rev};
		if (api_commit(a, r, ops, n, 200, NULL, err) < 0)
			goto out;
		api_reply(resp, 200,
			  json_pack("{s:s, s:s}", "deleted", r->params[0], "state",
				    jbody_str(job, "state", "")));
		ret = 0;
		goto out;
	}
	ts_format(ts_now_ms(), now);
	if (jbody_str(job, "node", "")[0]) {
		place_key(k_place, sizeof(k_place), jbody_str(job, "node", ""), r->tenant,
			  r->params[0]);
		ops[n++] = (struct store_op){STORE_DELETE, k_place, NULL, STORE_ANY_REV};
	}
	json_object_set_new(job, "state", json_string("cancelled"));
	json_object_set_new(job, "finished", json_string(now));
	json_object_set_new(job, "reason", json_string("cancelled by the tenant"));
	json_object_del(job, "waiting");
	val = job_text(job);
	if (!val) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	ops[n++] = (struct store_op){STORE_PUT, k_job, val, rev};
	if (api_commit(a, r, ops, n, 200, &res, err) < 0)
		goto out;
	log_info("quantum job cancelled tenant=%s job=%s node=%s", r->tenant, r->params[0],
		 jbody_str(job, "node", "-"));
	api_reply(resp, 200, job_view(job, res.rev, false, false));
	ret = 0;
out:
	pthread_mutex_unlock(&q_lock);
	free(val);
	json_decref(job);
	if (ret == 0 && n > 1)
		quantum_dispatch(a); /* its cores are free again */
	return ret;
}

static int h_profiles(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	json_t *items = json_array();

	(void)a;
	(void)r;
	if (!items)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	for (size_t i = 0; i < qdev_count(); i++) {
		json_t *p = qdev_to_json(qdev_at(i));

		if (p)
			json_array_append_new(items, p);
	}
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

/* ---- placement ---- */

/* The placement a node acts on (see lib/agent/qjob.h). NULL on ENOMEM. */
static char *placement_text(const json_t *job, int64_t threads)
{
	json_t *p = json_pack(
	    "{s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:I, s:I, s:I, s:I}", "kind", "qjob",
	    "tenant", jbody_str(job, "tenant", ""), "id", jbody_str(job, "id", ""), "qasm",
	    json_object_get(job, "qasm"), "shots", json_object_get(job, "shots"), "profile",
	    json_object_get(job, "profile"), "seed", json_object_get(job, "seed"), "precision",
	    json_object_get(job, "precision"), "threads", (json_int_t)threads, "state_bytes",
	    (json_int_t)jbody_int(job, "memory_bytes", 0), "memory_bytes",
	    (json_int_t)(jbody_int(job, "memory_bytes", 0) + QJOB_MEM_MARGIN), "cpu_millis",
	    (json_int_t)(threads * 1000));

	return api_dump(p);
}

/* Place job (queued, read at rev) on n; 0 if committed. */
static int place(struct api *a, json_t *job, int64_t rev, struct sched_node *n)
{
	char k_job[STORE_KEY_MAX], k_place[STORE_KEY_MAX], now[TS_RFC3339_LEN];
	const char *t = jbody_str(job, "tenant", ""), *id = jbody_str(job, "id", "");
	int64_t threads = 1, cores = free_cores(n);
	char *v_job = NULL, *v_place = NULL;
	struct store_op ops[2];
	int ret = -1;

	if (jbody_int(job, "qubits", 0) >= QJOB_THREADS_FROM)
		threads = cores > QJOB_MAX_THREADS ? QJOB_MAX_THREADS : cores;
	ts_format(ts_now_ms(), now);
	json_object_set_new(job, "node", json_string(n->name));
	json_object_set_new(job, "threads", json_integer(threads));
	json_object_set_new(job, "placed", json_string(now));
	json_object_del(job, "waiting");
	v_job = job_text(job);
	v_place = placement_text(job, threads);
	if (!v_job || !v_place || job_key(k_job, sizeof(k_job), t, id) < 0 ||
	    place_key(k_place, sizeof(k_place), n->name, t, id) < 0)
		goto out;
	ops[0] = (struct store_op){STORE_PUT, k_job, v_job, rev};
	ops[1] = (struct store_op){STORE_PUT, k_place, v_place, STORE_ANY_REV};
	if (self_commit(a, job, "qjob.place", ops, 2) < 0)
		goto out;
	n->used_cpu_millis += threads * 1000;
	n->used_memory_bytes += jbody_int(job, "memory_bytes", 0) + QJOB_MEM_MARGIN;
	log_info("quantum job placed tenant=%s job=%s node=%s threads=%" PRId64, t, id, n->name,
		 threads);
	ret = 0;
out:
	free(v_job);
	free(v_place);
	return ret;
}

/* The node for job: NULL with why in reason. */
static struct sched_node *pick(struct fleet_snapshot *f, const json_t *job, char *reason,
			       size_t size)
{
	int64_t need = jbody_int(job, "memory_bytes", 0) + QJOB_MEM_MARGIN;
	bool wide = jbody_int(job, "qubits", 0) >= QJOB_THREADS_FROM, any_ready = false,
	     any_core = false;
	struct sched_node *best = NULL;

	for (size_t i = 0; i < f->n; i++) {
		struct sched_node *n = &f->sn[i];

		if (!n->ready)
			continue;
		any_ready = true;
		if (free_cores(n) < 1)
			continue;
		any_core = true;
		if (free_mem(n) < need)
			continue;
		/* a wide job wants the most threads; a narrow one leaves big holes alone */
		if (!best || (wide && free_cores(n) > free_cores(best)) ||
		    (!wide && free_cores(n) < free_cores(best)))
			best = n;
	}
	if (best)
		return best;
	if (!any_ready)
		snprintf(reason, size, "no node is Ready");
	else if (!any_core)
		snprintf(reason, size, "no node has a free core");
	else
		snprintf(reason, size, "no node with a free core has %.1f MiB of free memory",
			 (double)need / (double)(1 << 20));
	return NULL;
}

/* A placed or running job whose node went away: queue it again (same seed, same result). */
static void requeue(struct api *a, json_t *job, int64_t rev)
{
	char k_job[STORE_KEY_MAX], k_place[STORE_KEY_MAX], reason[160];
	const char *t = jbody_str(job, "tenant", ""), *id = jbody_str(job, "id", "");
	struct store_op ops[2];
	char *val;

	snprintf(reason, sizeof(reason), "re-queued: node %s is NotReady",
		 jbody_str(job, "node", ""));
	if (job_key(k_job, sizeof(k_job), t, id) < 0 ||
	    place_key(k_place, sizeof(k_place), jbody_str(job, "node", ""), t, id) < 0)
		return;
	json_object_set_new(job, "state", json_string("queued"));
	json_object_set_new(job, "waiting", json_string(reason));
	json_object_del(job, "node");
	json_object_del(job, "threads");
	json_object_del(job, "cpus");
	json_object_del(job, "started");
	json_object_del(job, "placed");
	val = job_text(job);
	if (!val)
		return;
	ops[0] = (struct store_op){STORE_DELETE, k_place, NULL, STORE_ANY_REV};
	ops[1] = (struct store_op){STORE_PUT, k_job, val, rev};
	self_commit(a, job, "qjob.requeue", ops, 2);
	free(val);
}

/* Record why a job waits, when that changed (so a waiting job is not a write per tick). */
static void set_waiting(struct api *a, json_t *job, int64_t rev, const char *why)
{
	char k_job[STORE_KEY_MAX];
	struct store_op op;
	char *val;

	if (strcmp(jbody_str(job, "waiting", ""), why) == 0 ||
	    job_key(k_job, sizeof(k_job), jbody_str(job, "tenant", ""), jbody_str(job, "id", "")) <
		0)
		return;
	json_object_set_new(job, "waiting", json_string(why));
	val = job_text(job);
	if (!val)
		return;
	op = (struct store_op){STORE_PUT, k_job, val, rev};
	self_commit(a, job, "qjob.wait", &op, 1);
	free(val);
}

struct tqueue {
	json_t *jobs; /* the tenant's queued, unplaced jobs, oldest first */
	bool *placed; /* per job: placed in this pass */
};

static unsigned rr_start; /* the tenant served first turns with every pass */

void quantum_dispatch(struct api *a)
{
	struct store_list tl = {0};
	struct ciel_err err = {0};
	struct fleet_snapshot f = {0};
	struct tqueue *q = NULL;
	size_t nt = 0;
	bool progress = true;

	pthread_mutex_lock(&q_lock);
	if (fleet_snapshot_take(a, "", &f, &err) < 0 ||
	    store_list(a->store, "/region/tenants/", NULL, 0, &tl, &err) < 0)
		goto out;
	q = calloc(tl.n + 1, sizeof(*q));
	if (!q)
		goto out;
	for (size_t i = 0; i < tl.n; i++) {
		const char *tenant = tl.items[i].key + strlen("/region/tenants/");
		char prefix[160];
		json_t *items, *it, *queue = json_array();
		size_t k;

		snprintf(prefix, sizeof(prefix), "/tenants/%s/qjobs/", tenant);
		items = api_list_json(a, prefix, &err);
		if (!items || !queue) {
			json_decref(items);
			json_decref(queue);
			continue;
		}
		json_array_foreach(items, k, it)
		{
			const char *node = jbody_str(it, "node", "");
			struct sched_node *n;

			if (!active(jbody_str(it, "state", "")))
				continue;
			if (!node[0]) {
				json_array_append(queue, it);
				continue;
			}
			n = snapshot_node(&f, node);
			if (!n || !n->ready)
				requeue(a, it, jbody_int(it, "revision", 0));
		}
		json_decref(items);
		sort_jobs(queue);
		if (json_array_size(queue) == 0) {
			json_decref(queue);
			continue;
		}
		q[nt].placed = calloc(json_array_size(queue), sizeof(bool));
		if (!q[nt].placed) {
			json_decref(queue);
			continue;
		}
		q[nt++].jobs = queue;
	}
	/* one job per tenant per round: a tenant with a long queue cannot starve the others */
	while (progress && nt) {
		unsigned start = rr_start % (unsigned)nt;

		progress = false;
		for (size_t k = 0; k < nt; k++) {
			struct tqueue *tq = &q[(start + k) % nt];

			/* the tenant's oldest job that fits: a big one does not block small ones */
			for (size_t j = 0; j < json_array_size(tq->jobs); j++) {
				json_t *job = json_array_get(tq->jobs, j);
				char why[160];
				struct sched_node *n;

				if (tq->placed[j])
					continue;
				n = pick(&f, job, why, sizeof(why));
				if (!n)
					continue;
				tq->placed[j] = true;
				if (place(a, job, jbody_int(job, "revision", 0), n) == 0)
					progress = true;
				break;
			}
		}
	}
	rr_start++;
	for (size_t k = 0; k < nt; k++) {
		json_t *job;
		size_t j;

		json_array_foreach(q[k].jobs, j, job)
		{
			char why[160];

			if (q[k].placed[j])
				continue;
			if (!pick(&f, job, why, sizeof(why)))
				set_waiting(a, job, jbody_int(job, "revision", 0), why);
		}
	}
out:
	pthread_mutex_unlock(&q_lock);
	for (size_t k = 0; k < nt; k++) {
		json_decref(q[k].jobs);
		free(q[k].placed);
	}
	free(q);
	store_list_release(&tl);
	fleet_snapshot_release(&f);
}

/* ---- the node side ---- */

/* "0,1,3" → [0,1,3]; NULL if it is no such list. */
static json_t *parse_cpus(const char *s)
{
	json_t *arr = json_array();
	const char *p = s;

	while (arr && *p) {
		char *end;
		long v = strtol(p, &end, 10);

		if (end == p || v < 0 || v > 65535 || (*end && *end != ',')) {
			json_decref(arr);
			return NULL;
		}
		json_array_append_new(arr, json_integer(v));
		p = *end ? end + 1 : end;
	}
	return arr;
}

static bool all_ints(const json_t *obj)
{
	const char *k;
	json_t *v;

	if (!json_is_object(obj))
		return false;
	json_object_foreach((json_t *)obj, k,
			    v) if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
	return true;
}

/* The members of a worker's result the API shows, checked; NULL with err. */
static json_t *clean_result(const json_t *in, struct ciel_err *err)
{
	static const char *const ints[] = {"shots", "shots_kept", "qubits", "depth"};
	json_t *out;

	if (!json_is_object(in) || !all_ints(json_object_get(in, "counts"))) {
		ciel_err_field(err, CIEL_EINVAL, "result",
			       "result: must hold counts, an object of integers");
		return NULL;
	}
	out = json_pack("{s:O}", "counts", json_object_get(in, "counts"));
	for (size_t i = 0; out && i < sizeof(ints) / sizeof(ints[0]); i++)
		if (json_is_integer(json_object_get(in, ints[i])))
			json_object_set(out, ints[i], json_object_get(in, ints[i]));
	if (out && json_is_number(json_object_get(in, "seconds")))
		json_object_set(out, "seconds", json_object_get(in, "seconds"));
	if (out && json_is_string(json_object_get(in, "method")))
		json_object_set(out, "method", json_object_get(in, "method"));
	if (out && all_ints(json_object_get(in, "gate_counts")))
		json_object_set(out, "gate_counts", json_object_get(in, "gate_counts"));
	if (!out)
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	return out;
}

/*
 * A node's report on a job placed on it: running (started, cpus), then
 * completed (result) or failed (reason). The end removes the placement in
 * the same commit. Reports on a job that is no longer this node's, or no
 * longer active (cancelled meanwhile), are answered 200 "ignored".
 */
static int h_node_qjob(struct api *a, struct api_req *r, struct api_resp *resp,
		       struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "tenant", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "id", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "state", .type = JB_STRING, .required = 1, .max_len = 16},
	    {.name = "started", .type = JB_STRING, .max_len = 40},
	    {.name = "finished", .type = JB_STRING, .max_len = 40},
	    {.name = "duration_ms", .type = JB_INT, .min = 0, .max = INT64_MAX},
	    {.name = "cpus", .type = JB_STRING, .max_len = 1024},
	    {.name = "reason", .type = JB_STRING, .max_len = 1024},
	    {.name = "result", .type = JB_OBJECT},
	    {0},
	};
	const char *tenant, *id, *state, *ignored = NULL;
	char k_job[STORE_KEY_MAX], k_place[STORE_KEY_MAX];
	struct store_op ops[2];
	json_t *body, *job = NULL, *v;
	char *val = NULL;
	bool final;
	int64_t rev;
	size_t n = 0;
	int ret = -1;

	if (api_own_node(r, err) < 0 || jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	tenant = jbody_str(body, "tenant", "");
	id = jbody_str(body, "id", "");
	state = jbody_str(body, "state", "");
	if (strcmp(state, "running") && strcmp(state, "completed") && strcmp(state, "failed")) {
		ciel_err_field(err, CIEL_EINVAL, "state",
			       "state: must be running, completed or failed");
		goto out_body;
	}
	final = strcmp(state, "running") != 0;
	if (api_check_name("tenant", tenant, err) < 0)
		goto out_body;
	pthread_mutex_lock(&q_lock);
	job = load_job(a, tenant, id, &rev, err);
	if (!job) {
		if (err->code != CIEL_ENOTFOUND)
			goto out;
		ignored = "no such job";
	} else if (strcmp(jbody_str(job, "node", ""), r->params[0]) != 0) {
		ignored = "placed on another node";
	} else if (!active(jbody_str(job, "state", ""))) {
		ignored = "the job is no longer active";
	}
	if (ignored) {
		api_reply(resp, 200, json_pack("{s:b, s:s}", "ok", 0, "ignored", ignored));
		ret = 0;
		goto out;
	}
	json_object_set_new(job, "state", json_string(state));
	if ((v = json_object_get(body, "started")))
		json_object_set(job, "started", v);
	if ((v = json_object_get(body, "cpus"))) {
		json_t *cpus = parse_cpus(json_string_value(v));

		if (!cpus) {
			ciel_err_field(err, CIEL_EINVAL, "cpus",
				       "cpus: must be CPU numbers separated by commas");
			goto out;
		}
		json_object_set_new(job, "cpus", cpus);
	}
	if (final) {
		if ((v = json_object_get(body, "finished")))
			json_object_set(job, "finished", v);
		if ((v = json_object_get(body, "duration_ms")))
			json_object_set_new(job, "duration_s",
					    json_real((double)json_integer_value(v) / 1000.0));
		if (strcmp(state, "completed") == 0) {
			json_t *res = clean_result(json_object_get(body, "result"), err);

			if (!res)
				goto out;
			/* wall time on the node, beside the simulator's own "seconds" */
			if (json_object_get(job, "duration_s"))
				json_object_set(res, "duration_s",
						json_object_get(job, "duration_s"));
			json_object_set_new(job, "result", res);
		} else {
			json_object_set_new(
			    job, "reason", json_string(jbody_str(body, "reason", "worker failed")));
		}
		if (place_key(k_place, sizeof(k_place), r->params[0], tenant, id) < 0)
			goto out;
		ops[n++] = (struct store_op){STORE_DELETE, k_place, NULL, STORE_ANY_REV};
	}
	json_object_del(job, "waiting");
	val = job_text(job);
	if (!val || job_key(k_job, sizeof(k_job), tenant, id) < 0) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	ops[n++] = (struct store_op){STORE_PUT, k_job, val, rev};
	/* the job's own trail: its tenant's chain, under the job's path */
	snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
	snprintf(r->path, sizeof(r->path), "/v1/quantum/jobs/%s", id);
	r->action = strcmp(state, "running") == 0     ? "qjob.running"
		    : strcmp(state, "completed") == 0 ? "qjob.completed"
						      : "qjob.failed";
	if (api_commit(a, r, ops, n, 200, NULL, err) < 0)
		goto out;
	log_info("quantum job %s tenant=%s job=%s node=%s", state, tenant, id, r->params[0]);
	api_reply(resp, 200, json_pack("{s:b}", "ok", 1));
	ret = 0;
out:
	pthread_mutex_unlock(&q_lock);
	free(val);
	json_decref(job);
	if (ret == 0 && final && !ignored)
		quantum_dispatch(a); /* its cores are free again */
out_body:
	json_decref(body);
	return ret;
}

#define QJOB_WRITE (ROLE_ADMIN | ROLE_MEMBER | ROLE_OPERATOR)

const struct api_route quantum_routes[] = {
    {"POST", "/v1/quantum/jobs", "qjob.create", QJOB_WRITE, ROUTE_TENANT, h_job_create},
    {"GET", "/v1/quantum/jobs", "qjob.list", ROLE_ANY, ROUTE_TENANT, h_job_list},
    {"GET", "/v1/quantum/jobs/{}", "qjob.show", ROLE_ANY, ROUTE_TENANT, h_job_show},
    {"DELETE", "/v1/quantum/jobs/{}", "qjob.delete", QJOB_WRITE, ROUTE_TENANT, h_job_delete},
    {"GET", "/v1/quantum/profiles", "qjob.profiles", ROLE_ANY, 0, h_profiles},
    {"POST", "/v1/nodes/{}/qjobs", "node.qjob", ROLE_NODE, 0, h_node_qjob},
    {0},
};
