/*
 * instances — tenant workloads: admission against the quota, placement
 * (lib/sched), an address on the tenant's network, the desired state nodes
 * act on, the observed state they report back, and their logs.
 *
 * Store layout:
 *   /tenants/<t>/instances/<name>         the instance: spec and observed state
 *   /region/placements/<node>/<t>/<name>  what that node must run (a copy of the spec)
 *   /tenants/<t>/network                  {"index":N,"cidr":"10.200.N.0/24"}
 *   /region/subnets/<N>                   {"tenant":T}: a /24 belongs to one tenant
 *   /tenants/<t>/admission                rewritten by every admission of the tenant
 *
 * Invariants:
 * - An instance and its placement change in one commit, and "generation"
 *   grows with every change of desired state, so a node acts on the latest
 *   wish and a late report about an older generation is ignored.
 * - Admission (quota, address) reads the tenant's instances and commits on
 *   the condition that /tenants/<t>/admission did not move meanwhile: two
 *   concurrent runs cannot both take the last slot of a quota, even from two
 *   control-plane processes. Within one process a lock avoids the retry.
 * - A node sees only its own placements and reports only on them; another
 *   tenant's instance answers 404, like one that does not exist.
 */
#include "api/api.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/enc.h"
#include "crypto/seal.h"
#include "sched/sched.h"
#include "util/dbuf.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define SUBNET_FMT "10.200.%d.0/24"
#define MAX_SUBNETS 254
#define LOG_LIMIT_MAX (1 << 20)
#define WAIT_MS_MAX 30000

static pthread_mutex_t admit_lock = PTHREAD_MUTEX_INITIALIZER;

static void now_str(char out[TS_RFC3339_LEN])
{
	ts_format(ts_now_ms(), out);
}

static json_t *load_inst(struct api *a, const char *tenant, const char *name, int64_t *rev,
			 struct ciel_err *err)
{
	char key[160];
	json_t *inst;

	if (api_check_name("name", name, err) < 0) {
		/* a name that cannot exist does not exist */
		err->code = CIEL_ENOTFOUND;
		return NULL;
	}
	snprintf(key, sizeof(key), "/tenants/%s/instances/%s", tenant, name);
	inst = api_load_json(a, key, rev, err);
	if (!inst && err->code == CIEL_ENOTFOUND)
		ciel_err_set(err, CIEL_ENOTFOUND, "instance %s not found", name);
	return inst;
}

/* What a node needs to run the instance. */
static json_t *placement_of(const json_t *inst)
{
	static const char *const keep[] = {
	    "tenant", "name", "generation", "desired", "image_digest", "layers",  "command",
	    "env",    "cwd",  "cpu_millis", "address", "memory_bytes", "restart", "allow_setuid",
	};
	json_t *p = json_object();

	for (size_t i = 0; p && i < sizeof(keep) / sizeof(keep[0]); i++) {
		json_t *v = json_object_get(inst, keep[i]);

		if (v)
			json_object_set(p, keep[i], v);
	}
	return p;
}

/* The ops that store inst (at inst_rev) and its placement on its node. */
struct inst_ops {
	char k_inst[160], k_place[256], k_old[256];
	char *v_inst, *v_place;
	struct store_op ops[4];
	size_t n;
};

static void inst_ops_release(struct inst_ops *o)
{
	free(o->v_inst);
	free(o->v_place);
	o->v_inst = o->v_place = NULL;
}

/* old_node: the node it was placed on, when it moves (NULL otherwise). */
static int inst_ops_build(struct inst_ops *o, const json_t *inst, int64_t inst_rev,
			  const char *old_node, struct ciel_err *err)
{
	const char *t = jbody_str(inst, "tenant", ""), *n = jbody_str(inst, "name", "");
	json_t *copy = json_deep_copy(inst);

	memset(o, 0, sizeof(*o));
	if (copy)
		json_object_del(copy, "revision");
	o->v_inst = api_dump(copy);
	o->v_place = api_dump(placement_of(inst));
	if (!o->v_inst || !o->v_place) {
		inst_ops_release(o);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	snprintf(o->k_inst, sizeof(o->k_inst), "/tenants/%s/instances/%s", t, n);
	snprintf(o->k_place, sizeof(o->k_place), "/region/placements/%s/%s/%s",
		 jbody_str(inst, "node", ""), t, n);
	o->ops[o->n++] = (struct store_op){STORE_PUT, o->k_inst, o->v_inst, inst_rev};
	o->ops[o->n++] = (struct store_op){STORE_PUT, o->k_place, o->v_place, STORE_ANY_REV};
	if (old_node && strcmp(old_node, jbody_str(inst, "node", "")) != 0) {
		snprintf(o->k_old, sizeof(o->k_old), "/region/placements/%s/%s/%s", old_node, t, n);
		o->ops[o->n++] = (struct store_op){STORE_DELETE, o->k_old, NULL, STORE_ANY_REV};
	}
	return 0;
}

/* The ops that remove inst and its placement for good. */
static void inst_ops_delete(struct inst_ops *o, const json_t *inst, int64_t inst_rev)
{
	const char *t = jbody_str(inst, "tenant", ""), *n = jbody_str(inst, "name", "");

	memset(o, 0, sizeof(*o));
	snprintf(o->k_inst, sizeof(o->k_inst), "/tenants/%s/instances/%s", t, n);
	snprintf(o->k_place, sizeof(o->k_place), "/region/placements/%s/%s/%s",
		 jbody_str(inst, "node", ""), t, n);
	o->ops[o->n++] = (struct store_op){STORE_DELETE, o->k_inst, NULL, inst_rev};
	o->ops[o->n++] = (struct store_op){STORE_DELETE, o->k_place, NULL, STORE_ANY_REV};
}

static void reply_inst(struct api_resp *resp, int status, json_t *inst, int64_t rev)
{
	if (rev > 0)
		json_object_set_new(inst, "revision", json_integer(rev));
	api_reply(resp, status, inst);
}

/* The image's entrypoint + cmd, or the caller's command. */
static json_t *resolve_command(const json_t *body, const json_t *img, struct ciel_err *err)
{
	const json_t *cfg = json_object_get(img, "config"), *v;
	json_t *cmd = json_object_get(body, "command");
	size_t i;

	if (cmd && json_array_size(cmd) > 0)
		return json_copy(cmd);
	cmd = json_array();
	json_array_foreach(json_object_get(cfg, "entrypoint"), i, v)
	    json_array_append(cmd, (json_t *)v);
	json_array_foreach(json_object_get(cfg, "cmd"), i, v) json_array_append(cmd, (json_t *)v);
	if (json_array_size(cmd) == 0) {
		json_decref(cmd);
		ciel_err_field(err, CIEL_EINVAL, "command",
			       "command: the image has no default command; give one (ciel "
			       "instance run IMAGE -- CMD ...)");
		return NULL;
	}
	return cmd;
}

/* The image's environment with the caller's entries over it (same name wins). */
static json_t *merge_env(const json_t *body, const json_t *img, struct ciel_err *err)
{
	const json_t *mine = json_object_get(body, "env"), *v, *w;
	json_t *env = json_array();
	size_t i, j;

	json_array_foreach(mine, i, v)
	{
		const char *s = json_string_value(v), *eq = strchr(s, '=');

		if (!eq || eq == s) {
			json_decref(env);
			ciel_err_field(err, CIEL_EINVAL, "env", "env: '%.64s' must be NAME=VALUE",
				       s);
			return NULL;
		}
	}
	json_array_foreach(json_object_get(json_object_get(img, "config"), "env"), i, v)
	{
		const char *s = json_string_value(v), *eq = s ? strchr(s, '=') : NULL;
		int overridden = 0;

		if (!eq)
			continue;
		json_array_foreach(mine, j, w) overridden |=
		    strncmp(json_string_value(w), s, (size_t)(eq - s + 1)) == 0;
		if (!overridden)
			json_array_append(env, (json_t *)v);
	}
	json_array_extend(env, (json_t *)mine);
	return env;
}

/* Quota check of one more instance; fills err naming the quota that is short. */
static int admit(const json_t *quota, const json_t *items, int64_t cpu, int64_t mem,
		 struct ciel_err *err)
{
	int64_t n = (int64_t)json_array_size(items), used_cpu = 0, used_mem = 0;
	int64_t max_n = jbody_int(quota, "instances", 0),
		max_mem = jbody_int(quota, "memory_bytes", 0);
	double vcpus = json_number_value(json_object_get(quota, "vcpus"));
	const json_t *it;
	size_t i;

	json_array_foreach(items, i, it)
	{
		used_cpu += jbody_int(it, "cpu_millis", 0);
		used_mem += jbody_int(it, "memory_bytes", 0);
	}
	if (n + 1 > max_n)
		return ciel_err_field(
		    err, CIEL_EQUOTA, "instances",
		    "quota: instances: the tenant has %lld of %lld; delete one or "
		    "ask the operator to raise it (ciel quota set)",
		    (long long)n, (long long)max_n);
	if ((double)(used_cpu + cpu) > vcpus * 1000.0 + 0.5)
		return ciel_err_field(err, CIEL_EQUOTA, "vcpus",
				      "quota: vcpus: %.2f in use + %.2f asked > %.2f allowed",
				      (double)used_cpu / 1000.0, (double)cpu / 1000.0, vcpus);
	if (used_mem + mem > max_mem)
		return ciel_err_field(
		    err, CIEL_EQUOTA, "memory_bytes",
		    "quota: memory_bytes: %lld in use + %lld asked > %lld allowed",
		    (long long)used_mem, (long long)mem, (long long)max_mem);
	return 0;
}

/*
 * The tenant's subnet index, allocating one when it has none: then *ops gets
 * the two PUTs that claim it (strings in keys/vals, freed by the caller).
 */
static int tenant_subnet(struct api *a, const char *tenant, struct store_op *ops, size_t *n,
			 char *keys[2], char *vals[2], struct ciel_err *err)
{
	char key[128];
	struct store_list l = {0};
	unsigned char used[MAX_SUBNETS + 1] = {0};
	json_t *net;
	int idx;

	snprintf(key, sizeof(key), "/tenants/%s/network", tenant);
	net = api_load_json(a, key, NULL, err);
	if (net) {
		idx = (int)jbody_int(net, "index", 0);
		json_decref(net);
		return idx;
	}
	if (err->code != CIEL_ENOTFOUND)
		return -1;
	if (store_list(a->store, "/region/subnets/", NULL, 0, &l, err) < 0)
		return -1;
	for (size_t i = 0; i < l.n; i++) {
		long v = strtol(l.items[i].key + strlen("/region/subnets/"), NULL, 10);

		if (v >= 1 && v <= MAX_SUBNETS)
			used[v] = 1;
	}
	store_list_release(&l);
	for (idx = 1; idx <= MAX_SUBNETS && used[idx]; idx++)
		;
	if (idx > MAX_SUBNETS)
		return ciel_err_set(err, CIEL_EUNAVAIL,
				    "every tenant subnet of the region is taken (%d)", MAX_SUBNETS);
	if (asprintf(&keys[0], "/region/subnets/%d", idx) < 0 ||
	    asprintf(&keys[1], "/tenants/%s/network", tenant) < 0)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	vals[0] = api_dump(json_pack("{s:s}", "tenant", tenant));
	{
		char cidr[32];

		snprintf(cidr, sizeof(cidr), SUBNET_FMT, idx);
		vals[1] = api_dump(json_pack("{s:i, s:s}", "index", idx, "cidr", cidr));
	}
	if (!vals[0] || !vals[1])
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	ops[(*n)++] = (struct store_op){STORE_PUT, keys[0], vals[0], STORE_ABSENT};
	ops[(*n)++] = (struct store_op){STORE_PUT, keys[1], vals[1], STORE_ABSENT};
	return idx;
}

/* The lowest free host number .2-.254 of the tenant's /24. */
static int free_host(const json_t *items, struct ciel_err *err)
{
	unsigned char used[256] = {0};
	const json_t *it;
	size_t i;

	json_array_foreach(items, i, it)
	{
		const char *addr = jbody_str(it, "address", ""), *dot = strrchr(addr, '.');

		if (dot) {
			long h = strtol(dot + 1, NULL, 10);

			if (h > 0 && h < 256)
				used[h] = 1;
		}
	}
	for (int h = 2; h < 255; h++)
		if (!used[h])
			return h;
	return ciel_err_set(err, CIEL_EUNAVAIL, "the tenant's network has no free address");
}

static int check_restart(const char *v, struct ciel_err *err)
{
	if (strcmp(v, "no") && strcmp(v, "on-failure") && strcmp(v, "always"))
		return ciel_err_field(err, CIEL_EINVAL, "restart",
				      "restart: must be no, on-failure or always");
	return 0;
}

static int h_instance_run(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "image", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "name", .type = JB_STRING, .max_len = 64},
	    {.name = "cpu_millis", .type = JB_INT, .min = 10, .max = 64000},
	    {.name = "memory_bytes", .type = JB_SIZE, .min = 4LL << 20, .max = 64LL << 30},
	    {.name = "zone", .type = JB_STRING, .max_len = 64},
	    {.name = "restart", .type = JB_STRING, .max_len = 16},
	    {.name = "command", .type = JB_STRINGS, .max_len = 4096, .max = 256},
	    {.name = "env", .type = JB_STRINGS, .max_len = 4096, .max = 256},
	    {0},
	};
	char name[API_NAME_MAX + 1], key[128], addr[32], now[TS_RFC3339_LEN];
	char *keys[2] = {0}, *vals[2] = {0}, *v_adm = NULL;
	json_t *body = NULL, *img = NULL, *cmd = NULL, *env = NULL, *quota = NULL, *items = NULL,
	       *inst = NULL;
	struct fleet_snapshot snap = {0};
	struct sched_request req;
	struct inst_ops io = {0};
	struct store_op ops[8];
	struct store_txn_result res;
	const char *zone, *restart;
	int64_t cpu, mem, adm_rev = STORE_ABSENT;
	int idx, host, pick, locked = 0, ret = -1;
	size_t n = 0;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	if (json_object_get(body, "name")) {
		snprintf(name, sizeof(name), "%s", jbody_str(body, "name", ""));
		if (api_check_name("name", name, err) < 0)
			goto out;
	} else {
		unsigned char rnd[4];

		if (enc_random(rnd, sizeof(rnd), err) < 0)
			goto out;
		memcpy(name, "i-", 2);
		enc_hex(rnd, sizeof(rnd), name + 2);
	}
	restart = jbody_str(body, "restart", "no");
	if (check_restart(restart, err) < 0)
		goto out;
	zone = jbody_str(body, "zone", "");
	if (zone[0]) {
		json_t *z;

		if (api_check_name("zone", zone, err) < 0)
			goto out;
		snprintf(key, sizeof(key), "/region/zones/%s", zone);
		z = api_load_json(a, key, NULL, err);
		if (!z) {
			if (err->code == CIEL_ENOTFOUND)
				ciel_err_field(err, CIEL_EINVAL, "zone",
					       "zone: no zone named %s (ciel zone list)", zone);
			goto out;
		}
		json_decref(z);
	}
	img = images_find(a, r->tenant, jbody_str(body, "image", ""), err);
	if (!img) {
		if (err->code == CIEL_ENOTFOUND)
			err->code = CIEL_EINVAL;
		goto out;
	}
	cmd = resolve_command(body, img, err);
	env = cmd ? merge_env(body, img, err) : NULL;
	if (!env)
		goto out;
	cpu = jbody_int(body, "cpu_millis", 500);
	mem = jbody_int(body, "memory_bytes", 64LL << 20);

	pthread_mutex_lock(&admit_lock);
	locked = 1;
	snprintf(key, sizeof(key), "/tenants/%s/quota", r->tenant);
	quota = api_load_json(a, key, NULL, err);
	snprintf(key, sizeof(key), "/tenants/%s/instances/", r->tenant);
	items = quota ? api_list_json(a, key, err) : NULL;
	if (!items)
		goto out;
	{
		const json_t *it;
		size_t i;

		json_array_foreach(items, i, it) if (strcmp(jbody_str(it, "name", ""), name) == 0)
		{
			ciel_err_field(err, CIEL_EEXIST, "name", "instance %s already exists",
				       name);
			goto out;
		}
	}
	if (admit(quota, items, cpu, mem, err) < 0)
		goto out;
	if (fleet_snapshot_take(a, r->tenant, &snap, err) < 0)
		goto out;
	req = (struct sched_request){.cpu_millis = cpu, .memory_bytes = mem, .zone = zone};
	pick = sched_place(snap.sn, snap.n, &req, err);
	if (pick < 0)
		goto out;
	idx = tenant_subnet(a, r->tenant, ops, &n, keys, vals, err);
	host = idx < 0 ? -1 : free_host(items, err);
	if (host < 0)
		goto out;
	snprintf(addr, sizeof(addr), "10.200.%d.%d/24", idx, host);
	{
		struct store_kv kv = {0};

		snprintf(key, sizeof(key), "/tenants/%s/admission", r->tenant);
		if (store_get(a->store, key, &kv, err) == 0)
			adm_rev = kv.mod_rev;
		else if (err->code != CIEL_ENOTFOUND)
			goto out;
		store_kv_release(&kv);
	}
	now_str(now);
	v_adm = api_dump(json_pack("{s:s, s:s}", "last", name, "at", now));
	inst = json_pack(
	    "{s:s, s:s, s:s, s:s, s:O, s:o, s:o, s:s, s:I, s:I, s:s, s:s, s:s, "
	    "s:s, s:s, s:s, s:s, s:i, s:i}",
	    "name", name, "tenant", r->tenant, "image", jbody_str(img, "name", ""), "image_digest",
	    jbody_str(img, "digest", ""), "layers", json_object_get(img, "layers"), "command",
	    json_incref(cmd), "env", json_incref(env), "cwd",
	    jbody_str(json_object_get(img, "config"), "cwd", "/"), "cpu_millis", (json_int_t)cpu,
	    "memory_bytes", (json_int_t)mem, "zone", snap.sn[pick].zone, "node", snap.sn[pick].name,
	    "address", addr, "restart", restart, "desired", "running", "state", "pending",
	    "created", now, "generation", 1, "restarts", 0);
	if (!inst || !v_adm) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	/* the operator allowed setuid files at import: the node must know to keep them */
	if (json_is_true(json_object_get(img, "allow_setuid")))
		json_object_set_new(inst, "allow_setuid", json_true());
	if (inst_ops_build(&io, inst, STORE_ABSENT, NULL, err) < 0)
		goto out;
	io.ops[1].expect_rev = STORE_ABSENT;
	ops[n++] = io.ops[0];
	ops[n++] = io.ops[1];
	ops[n++] = (struct store_op){STORE_PUT, key, v_adm, adm_rev};
	if (api_commit(a, r, ops, n, 201, &res, err) < 0) {
		if (err->code == CIEL_ECONFLICT)
			ciel_err_set(err, CIEL_ECONFLICT,
				     "the tenant's instances changed meanwhile; retry");
		goto out;
	}
	log_info("instance placed tenant=%s name=%s node=%s zone=%s address=%s", r->tenant, name,
		 snap.sn[pick].name, snap.sn[pick].zone, addr);
	reply_inst(resp, 201, json_incref(inst), res.rev);
	ret = 0;
out:
	if (locked)
		pthread_mutex_unlock(&admit_lock);
	inst_ops_release(&io);
	fleet_snapshot_release(&snap);
	for (int i = 0; i < 2; i++) {
		free(keys[i]);
		free(vals[i]);
	}
	free(v_adm);
	json_decref(inst);
	json_decref(items);
	json_decref(quota);
	json_decref(env);
	json_decref(cmd);
	json_decref(img);
	json_decref(body);
	return ret;
}

static int h_instance_list(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	char prefix[128];
	json_t *items;

	snprintf(prefix, sizeof(prefix), "/tenants/%s/instances/", r->tenant);
	items = api_list_json(a, prefix, err);
	if (!items)
		return -1;
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

static int h_instance_show(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	int64_t rev;
	json_t *inst = load_inst(a, r->tenant, r->params[0], &rev, err);

	if (!inst)
		return -1;
	reply_inst(resp, 200, inst, rev);
	return 0;
}

/* Store inst (read at rev) and its placement with r's audit event, and answer it. Takes inst. */
static int commit_reply(struct api *a, struct api_req *r, struct api_resp *resp, json_t *inst,
			int64_t rev, struct ciel_err *err)
{
	struct store_txn_result res;
	struct inst_ops io;

	if (inst_ops_build(&io, inst, rev, NULL, err) < 0 ||
	    api_commit(a, r, io.ops, io.n, 200, &res, err) < 0) {
		inst_ops_release(&io);
		json_decref(inst);
		return -1;
	}
	inst_ops_release(&io);
	reply_inst(resp, 200, inst, res.rev);
	return 0;
}

static int change_desired(struct api *a, struct api_req *r, struct api_resp *resp,
			  const char *desired, struct ciel_err *err)
{
	int64_t rev;
	json_t *inst = load_inst(a, r->tenant, r->params[0], &rev, err);
	const char *state;

	if (!inst)
		return -1;
	state = jbody_str(inst, "state", "");
	if (strcmp(jbody_str(inst, "desired", ""), "deleted") == 0) {
		json_decref(inst);
		return ciel_err_set(err, CIEL_EEXIST, "instance %s is being deleted", r->params[0]);
	}
	json_object_set_new(inst, "desired", json_string(desired));
	json_object_set_new(inst, "generation", json_integer(jbody_int(inst, "generation", 0) + 1));
	if (strcmp(desired, "running") == 0 && strcmp(state, "running") != 0) {
		json_object_set_new(inst, "state", json_string("pending"));
		json_object_del(inst, "reason");
		json_object_del(inst, "exit_code");
	}
	return commit_reply(a, r, resp, inst, rev, err);
}

static int h_instance_stop(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	return change_desired(a, r, resp, "stopped", err);
}

static int h_instance_start(struct api *a, struct api_req *r, struct api_resp *resp,
			    struct ciel_err *err)
{
	return change_desired(a, r, resp, "running", err);
}

/* Is the instance's node up? A gone or silent node cannot confirm a deletion. */
static int node_ready(struct api *a, const char *node)
{
	struct ciel_err err;
	char key[128];
	json_t *n;
	int ok;

	snprintf(key, sizeof(key), "/region/nodes/%.64s", node);
	n = api_load_json(a, key, NULL, &err);
	ok = n && fleet_node_ready(a, n);
	json_decref(n);
	return ok;
}

static int h_instance_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			     struct ciel_err *err)
{
	struct inst_ops io;
	struct store_txn_result res;
	int64_t rev;
	json_t *inst = load_inst(a, r->tenant, r->params[0], &rev, err);

	if (!inst)
		return -1;
	if (!node_ready(a, jbody_str(inst, "node", ""))) {
		/* nobody to wait for: its node re-syncs and drops it if it returns */
		inst_ops_delete(&io, inst, rev);
		if (api_commit(a, r, io.ops, io.n, 200, &res, err) < 0) {
			json_decref(inst);
			return -1;
		}
		json_object_set_new(inst, "state", json_string("deleted"));
		reply_inst(resp, 200, inst, 0);
		return 0;
	}
	json_object_set_new(inst, "desired", json_string("deleted"));
	json_object_set_new(inst, "state", json_string("deleting"));
	json_object_set_new(inst, "generation", json_integer(jbody_int(inst, "generation", 0) + 1));
	return commit_reply(a, r, resp, inst, rev, err);
}

/* ---- logs: fetched from the node's agent, signed with the node's own key ---- */

static size_t curl_sink(char *p, size_t size, size_t n, void *arg)
{
	return dbuf_add(arg, p, size * n) < 0 ? 0 : size * n;
}

/* host:port of an http(s) URL, and the rest (the scheme is kept in base). */
static int split_url(const char *url, char *host, size_t size)
{
	const char *h = strstr(url, "://"), *end;

	if (!h)
		return -1;
	h += 3;
	end = strchr(h, '/');
	if (!end)
		end = h + strlen(h);
	if ((size_t)(end - h) >= size || end == h)
		return -1;
	memcpy(host, h, (size_t)(end - h));
	host[end - h] = '\0';
	return 0;
}

static json_t *agent_get(struct api *a, const json_t *node, const char *path, const char *query,
			 long *status, struct ciel_err *err)
{
	const char *url = jbody_str(node, "agent_url", ""), *key_id = jbody_str(node, "key_id", "");
	char k[160], host[256], date[17], sha[65], auth[512], hdr[700], *full = NULL;
	unsigned char *secret = NULL;
	size_t secret_len = 0;
	struct curl_slist *hs = NULL;
	struct dbuf out;
	json_t *kdoc, *j = NULL;
	CURL *c = NULL;
	CURLcode rc;

	dbuf_init(&out, 2 * LOG_LIMIT_MAX);
	if (!url[0] || split_url(url, host, sizeof(host)) < 0) {
		ciel_err_set(err, CIEL_EUNAVAIL, "node %s has not reported where to fetch logs yet",
			     jbody_str(node, "name", "?"));
		goto out;
	}
	snprintf(k, sizeof(k), "/keys/%s", key_id);
	kdoc = api_load_json(a, k, NULL, err);
	if (!kdoc)
		goto out;
	if (seal_decrypt(a->master_key, jbody_str(kdoc, "secret", ""), k, &secret, &secret_len,
			 err) < 0) {
		json_decref(kdoc);
		goto out;
	}
	json_decref(kdoc);
	if (sign_client("GET", path, query, host, "", 0, key_id, "region", secret, secret_len,
			time(NULL), date, sha, auth, sizeof(auth), err) < 0)
		goto out;
	if (asprintf(&full, "%s%s?%s", url, path, query) < 0) {
		full = NULL;
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	c = curl_easy_init();
	if (!c) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(hdr, sizeof(hdr), "Authorization: %s", auth);
	hs = curl_slist_append(hs, hdr);
	snprintf(hdr, sizeof(hdr), "X-Ciel-Date: %s", date);
	hs = curl_slist_append(hs, hdr);
	snprintf(hdr, sizeof(hdr), "X-Ciel-Content-Sha256: %s", sha);
	hs = curl_slist_append(hs, hdr);
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		ciel_err_set(err, CIEL_EUNAVAIL, "node %s unreachable for logs: %s",
			     jbody_str(node, "name", "?"), curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	j = json_loadb(dbuf_str(&out), out.len, 0, NULL);
	if (!j)
		ciel_err_set(err, CIEL_EUNAVAIL, "node %s answered logs with no JSON (HTTP %ld)",
			     jbody_str(node, "name", "?"), *status);
out:
	if (secret) {
		explicit_bzero(secret, secret_len);
		free(secret);
	}
	curl_slist_free_all(hs);
	if (c)
		curl_easy_cleanup(c);
	free(full);
	dbuf_release(&out);
	return j;
}

static int h_instance_logs(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	char path[320], query[96], key[128];
	int64_t offset, limit;
	long status = 0;
	json_t *inst, *node = NULL, *j = NULL;
	int ret = -1;

	if (api_query_int(r, "offset", 0, 0, INT64_MAX / 2, &offset, err) < 0 ||
	    api_query_int(r, "limit", 65536, 1, LOG_LIMIT_MAX, &limit, err) < 0)
		return -1;
	inst = load_inst(a, r->tenant, r->params[0], NULL, err);
	if (!inst)
		return -1;
	snprintf(key, sizeof(key), "/region/nodes/%.64s", jbody_str(inst, "node", ""));
	node = api_load_json(a, key, NULL, err);
	if (!node)
		goto out;
	snprintf(path, sizeof(path), "/v1/logs/%s/%s", r->tenant, r->params[0]);
	snprintf(query, sizeof(query), "limit=%lld&offset=%lld", (long long)limit,
		 (long long)offset);
	j = agent_get(a, node, path, query, &status, err);
	if (!j)
		goto out;
	if (status == 404) {
		/* not started on the node yet: an empty log, not an error */
		json_decref(j);
		j = json_pack("{s:s, s:I, s:I, s:I}", "data", "", "offset", (json_int_t)offset,
			      "next", (json_int_t)offset, "first", (json_int_t)0);
	} else if (status != 200) {
		ciel_err_set(err, CIEL_EUNAVAIL, "node %s refused the logs request (HTTP %ld)",
			     jbody_str(node, "name", "?"), status);
		goto out;
	}
	json_object_set_new(j, "state", json_string(jbody_str(inst, "state", "")));
	api_reply(resp, 200, j);
	j = NULL;
	ret = 0;
out:
	json_decref(j);
	json_decref(node);
	json_decref(inst);
	return ret;
}

/* ---- the node side ---- */

static int h_placements(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	char prefix[200];
	struct store_list l = {0};
	int64_t after, wait_ms;
	json_t *items;

	if (api_own_node(r, err) < 0 ||
	    api_query_int(r, "after", 0, 0, INT64_MAX, &after, err) < 0 ||
	    api_query_int(r, "wait_ms", 0, 0, WAIT_MS_MAX, &wait_ms, err) < 0)
		return -1;
	snprintf(prefix, sizeof(prefix), "/region/placements/%s/", r->params[0]);
	if (after > 0 && wait_ms > 0) {
		struct store_events ev = {0};

		/* a watcher that fell behind just re-lists, which is what follows */
		if (store_watch(a->store, prefix, after, (int)wait_ms, &ev, err) < 0 &&
		    err->code != CIEL_ECONFLICT)
			return -1;
		store_events_release(&ev);
	}
	if (store_list(a->store, prefix, NULL, 0, &l, err) < 0)
		return -1;
	items = json_array();
	for (size_t i = 0; items && i < l.n; i++) {
		json_t *p = json_loadb(l.items[i].value, l.items[i].value_len, 0, NULL);

		if (p)
			json_array_append_new(items, p);
	}
	api_reply(resp, 200,
		  json_pack("{s:I, s:o}", "revision", (json_int_t)l.rev, "items",
			    items ? items : json_array()));
	store_list_release(&l);
	return 0;
}

static int h_node_status(struct api *a, struct api_req *r, struct api_resp *resp,
			 struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "tenant", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "name", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "generation", .type = JB_INT, .required = 1, .min = 0, .max = INT64_MAX},
	    {.name = "state", .type = JB_STRING, .required = 1, .max_len = 16},
	    {.name = "exit_code", .type = JB_INT, .min = -1, .max = 65535},
	    {.name = "reason", .type = JB_STRING, .max_len = 512},
	    {.name = "started", .type = JB_STRING, .max_len = 40},
	    {.name = "finished", .type = JB_STRING, .max_len = 40},
	    {.name = "restarts", .type = JB_INT, .min = 0, .max = 1LL << 40},
	    {0},
	};
	static const char *const states[] = {"running", "stopped", "exited", "failed", "deleted"};
	static const char *const copy[] = {"exit_code", "reason", "started", "finished",
					   "restarts"};
	const char *tenant, *name, *state, *ignored = NULL;
	struct inst_ops io = {0};
	json_t *body, *inst = NULL;
	int64_t rev;
	size_t k;
	int ret = -1;

	if (api_own_node(r, err) < 0 || jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	tenant = jbody_str(body, "tenant", "");
	name = jbody_str(body, "name", "");
	state = jbody_str(body, "state", "");
	for (k = 0; k < sizeof(states) / sizeof(states[0]) && strcmp(states[k], state); k++)
		;
	if (k == sizeof(states) / sizeof(states[0])) {
		ciel_err_field(err, CIEL_EINVAL, "state",
			       "state: must be running, stopped, exited, failed or deleted");
		goto out;
	}
	if (api_check_name("tenant", tenant, err) < 0)
		goto out;
	inst = load_inst(a, tenant, name, &rev, err);
	if (!inst) {
		if (err->code != CIEL_ENOTFOUND)
			goto out;
		ignored = "no such instance";
	} else if (strcmp(jbody_str(inst, "node", ""), r->params[0]) != 0) {
		ignored = "placed on another node";
	} else if (jbody_int(body, "generation", 0) < jbody_int(inst, "generation", 0)) {
		ignored = "older generation";
	} else if (strcmp(state, "deleted") == 0) {
		if (strcmp(jbody_str(inst, "desired", ""), "deleted") != 0)
			ignored = "not asked to delete";
		else
			inst_ops_delete(&io, inst, rev);
	} else {
		json_object_set_new(inst, "state", json_string(state));
		for (k = 0; k < sizeof(copy) / sizeof(copy[0]); k++) {
			json_t *v = json_object_get(body, copy[k]);

			if (v)
				json_object_set(inst, copy[k], v);
			else if (strcmp(copy[k], "restarts") != 0 &&
				 strcmp(copy[k], "started") != 0)
				json_object_del(inst, copy[k]);
		}
		if (inst_ops_build(&io, inst, rev, NULL, err) < 0)
			goto out;
		io.n = 1; /* the placement is unchanged: do not wake the node for its own report */
	}
	if (ignored) {
		api_reply(resp, 200, json_pack("{s:b, s:s}", "ok", 0, "ignored", ignored));
		ret = 0;
		goto out;
	}
	if (api_commit(a, r, io.ops, io.n, 200, NULL, err) < 0)
		goto out;
	api_reply(resp, 200, json_pack("{s:b}", "ok", 1));
	ret = 0;
out:
	inst_ops_release(&io);
	json_decref(inst);
	json_decref(body);
	return ret;
}

/* ---- housekeeping ---- */

static void sweep_commit(struct api *a, const json_t *inst, const char *action,
			 const struct store_op *ops, size_t n)
{
	const char *tenant = jbody_str(inst, "tenant", ""), *name = jbody_str(inst, "name", "");
	struct ciel_err err = {0};
	char path[API_NAME_MAX + 32];

	snprintf(path, sizeof(path), "/v1/instances/%s", name);
	if (api_self_commit(a, tenant, path, action, ops, n, &err) < 0)
		log_warn("%s failed tenant=%s name=%s err=%s", action, tenant, name, err.msg);
	else
		log_info("%s tenant=%s name=%s node=%s", action, tenant, name,
			 jbody_str(inst, "node", ""));
}

/* One placement on a node that is not Ready. */
static void sweep_one(struct api *a, const char *node, json_t *inst, int64_t rev)
{
	const char *desired = jbody_str(inst, "desired", ""),
		   *restart = jbody_str(inst, "restart", "no");
	struct inst_ops io;
	struct ciel_err err = {0};

	if (strcmp(desired, "deleted") == 0) {
		inst_ops_delete(&io, inst, rev);
		sweep_commit(a, inst, "instance.delete", io.ops, io.n);
		return;
	}
	if (strcmp(desired, "running") == 0 && strcmp(restart, "no") != 0) {
		struct fleet_snapshot snap;
		struct sched_request req = {.cpu_millis = jbody_int(inst, "cpu_millis", 0),
					    .memory_bytes = jbody_int(inst, "memory_bytes", 0),
					    .avoid = node};
		int pick;

		if (fleet_snapshot_take(a, jbody_str(inst, "tenant", ""), &snap, &err) < 0)
			return;
		pick = sched_place(snap.sn, snap.n, &req, &err);
		if (pick >= 0) {
			char reason[128];

			snprintf(reason, sizeof(reason), "re-placed: node %s is NotReady", node);
			json_object_set_new(inst, "node", json_string(snap.sn[pick].name));
			json_object_set_new(inst, "zone", json_string(snap.sn[pick].zone));
			json_object_set_new(inst, "state", json_string("pending"));
			json_object_set_new(inst, "reason", json_string(reason));
			json_object_set_new(inst, "generation",
					    json_integer(jbody_int(inst, "generation", 0) + 1));
			if (inst_ops_build(&io, inst, rev, node, &err) == 0) {
				sweep_commit(a, inst, "instance.replace", io.ops, io.n);
				inst_ops_release(&io);
			}
		} else {
			log_warn("cannot re-place tenant=%s name=%s: %s",
				 jbody_str(inst, "tenant", ""), jbody_str(inst, "name", ""),
				 err.msg);
		}
		fleet_snapshot_release(&snap);
		return;
	}
	if (strcmp(jbody_str(inst, "state", ""), "unknown") != 0 &&
	    strcmp(jbody_str(inst, "state", ""), "stopped") != 0) {
		char reason[128];

		snprintf(reason, sizeof(reason), "node %s is NotReady", node);
		json_object_set_new(inst, "state", json_string("unknown"));
		json_object_set_new(inst, "reason", json_string(reason));
		if (inst_ops_build(&io, inst, rev, NULL, &err) == 0) {
			io.n = 1;
			sweep_commit(a, inst, "instance.lost", io.ops, io.n);
			inst_ops_release(&io);
		}
	}
}

void compute_sweep(struct api *a)
{
	struct ciel_err err = {0};
	json_t *nodes = fleet_nodes(a, &err), *node;
	size_t i;

	if (!nodes)
		return;
	json_array_foreach(nodes, i, node)
	{
		const char *name = jbody_str(node, "name", "");
		struct store_list l = {0};
		char prefix[128];

		if (strcmp(jbody_str(node, "state", ""), "Ready") == 0)
			continue;
		snprintf(prefix, sizeof(prefix), "/region/placements/%s/", name);
		if (store_list(a->store, prefix, NULL, 0, &l, &err) < 0)
			continue;
		for (size_t k = 0; k < l.n; k++) {
			json_t *p = json_loadb(l.items[k].value, l.items[k].value_len, 0, NULL);
			int64_t rev;
			json_t *inst = p ? load_inst(a, jbody_str(p, "tenant", ""),
						     jbody_str(p, "name", ""), &rev, &err)
					 : NULL;

			if (inst && strcmp(jbody_str(inst, "node", ""), name) == 0) {
				pthread_mutex_lock(&admit_lock);
				sweep_one(a, name, inst, rev);
				pthread_mutex_unlock(&admit_lock);
			}
			json_decref(inst);
			json_decref(p);
		}
		store_list_release(&l);
	}
	json_decref(nodes);
}

#define INST_WRITE (ROLE_ADMIN | ROLE_MEMBER | ROLE_OPERATOR)

const struct api_route instance_routes[] = {
    {"POST", "/v1/instances", "instance.run", INST_WRITE, ROUTE_TENANT, h_instance_run},
    {"GET", "/v1/instances", "instance.list", ROLE_ANY, ROUTE_TENANT, h_instance_list},
    {"GET", "/v1/instances/{}", "instance.show", ROLE_ANY, ROUTE_TENANT, h_instance_show},
    {"POST", "/v1/instances/{}:stop", "instance.stop", INST_WRITE, ROUTE_TENANT, h_instance_stop},
    {"POST", "/v1/instances/{}:start", "instance.start", INST_WRITE, ROUTE_TENANT,
     h_instance_start},
    {"DELETE", "/v1/instances/{}", "instance.delete", INST_WRITE, ROUTE_TENANT, h_instance_delete},
    {"GET", "/v1/instances/{}/logs", "instance.logs", ROLE_ANY, ROUTE_TENANT, h_instance_logs},
    {"GET", "/v1/nodes/{}/placements", "node.placements", ROLE_NODE, 0, h_placements},
    {"POST", "/v1/nodes/{}/status", "node.status", ROLE_NODE, 0, h_node_status},
    {0},
};
