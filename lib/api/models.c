/*
 * models — LLM endpoints: a GGUF model uploaded once, placed on a node with
 * the memory for its weights and KV cache, run there by the agent as a
 * `ciel-llm serve` worker, and reached through cield's /openai/v1 proxy
 * (openai.c).
 *
 * Store layout:
 *   /tenants/<t>/models/<name>   an endpoint of tenant t
 *   /region/models/<name>        a public endpoint (the operator's), usable by every tenant
 *   /region/placements/<node>/<t or "region">/llm.<name>
 *                                what the node must run ('.' is not allowed in
 *                                names, so the key cannot clash with an
 *                                instance's; the agent only reads the values)
 * The GGUF file lives in the image blob store (DATA/blobs/sha256/<hex>) under
 * its SHA-256, so GET /v1/blobs/sha256:<hex> serves it to nodes and a model
 * deployed twice is kept once.
 *
 * Invariants:
 * - Nothing is stored for a file the engine cannot open: llm_model_open
 *   checks every tensor before the blob or the document exist.
 * - An endpoint has a placement exactly when it has a "node"; both change in
 *   one commit. "generation" grows on each deploy of a name, so the agent
 *   restarts its worker when a model is replaced.
 * - The worker's url and token (the "worker" member) are never shown by the
 *   API; only the proxy reads them.
 * - Another tenant's endpoint answers 404, like one that does not exist.
 */
#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "llm/gguf.h"
#include "llm/model.h"
#include "sched/sched.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define MODEL_MEM_MARGIN (64LL << 20) /* the worker's own needs beside weights and KV */
#define MODEL_DEFAULT_CTX 2048
#define MODEL_DEFAULT_SEQS 4
#define MODEL_MAX_SEQS 256
#define MODEL_MAX_THREADS 256

/* Deploys, deletes, reports and placement read then write the same documents: one at a time. */
static pthread_mutex_t m_lock = PTHREAD_MUTEX_INITIALIZER;

static int truthy(const char *v)
{
	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static void doc_key(char *out, size_t size, const char *tenant, const char *name)
{
	if (tenant && tenant[0] && strcmp(tenant, "region") != 0)
		snprintf(out, size, "/tenants/%s/models/%s", tenant, name);
	else
		snprintf(out, size, "/region/models/%s", name);
}

static void place_key(char *out, size_t size, const char *node, const char *tenant,
		      const char *name)
{
	snprintf(out, size, "/region/placements/%s/%s/llm.%s", node, tenant[0] ? tenant : "region",
		 name);
}

/* The endpoint as answered: without the worker's url and token. */
static json_t *model_view(const json_t *doc, int64_t rev)
{
	json_t *v = json_deep_copy(doc);

	if (!v)
		return NULL;
	json_object_del(v, "worker");
	json_object_del(v, "revision");
	if (rev > 0)
		json_object_set_new(v, "revision", json_integer(rev));
	return v;
}

/* The document as stored. Caller frees. */
static char *doc_text(const json_t *doc)
{
	json_t *c = json_deep_copy(doc);

	if (c)
		json_object_del(c, "revision");
	return api_dump(c);
}

static json_t *load_doc(struct api *a, const char *tenant, const char *name, int64_t *rev,
			struct ciel_err *err)
{
	char key[STORE_KEY_MAX];

	doc_key(key, sizeof(key), tenant, name);
	return api_load_json(a, key, rev, err);
}

json_t *models_find(struct api *a, const char *tenant, const char *name, struct ciel_err *err)
{
	json_t *d;

	if (api_check_name("model", name, err) < 0) {
		ciel_err_field(err, CIEL_ENOTFOUND, "model", "model %.64s not found", name);
		return NULL;
	}
	if (tenant && tenant[0] && strcmp(tenant, "region") != 0) {
		d = load_doc(a, tenant, name, NULL, err);
		if (d || err->code != CIEL_ENOTFOUND)
			return d;
	}
	d = load_doc(a, "", name, NULL, err);
	if (!d && err->code == CIEL_ENOTFOUND)
		ciel_err_field(
		    err, CIEL_ENOTFOUND, "model",
		    "model %s not found; deploy it first: ciel model deploy FILE --name %s", name,
		    name);
	return d;
}

/* Which tenant a write acts on: its own, or the public namespace (""). */
static int write_target(struct api_req *r, const char *name, const char **tenant,
			struct ciel_err *err)
{
	int public = truthy(api_query(r, "public"));

	if (api_check_name("name", name, err) < 0)
		return -1;
	if (public && r->who.role != ROLE_OPERATOR)
		return ciel_err_field(err, CIEL_EPERM, "public",
				      "public: only the operator publishes models");
	if (public && r->tenant[0])
		return ciel_err_field(err, CIEL_EINVAL, "public",
				      "public: a public model belongs to no tenant; drop ?tenant=");
	if (!public && !r->tenant[0])
		return ciel_err_field(err, CIEL_EINVAL, "tenant",
				      "tenant: the operator must name a tenant with ?tenant=NAME, "
				      "or publish with ?public=1");
	*tenant = public ? "" : r->tenant;
	return 0;
}

/* ---- placement ---- */

static int64_t free_mem(const struct sched_node *n)
{
	return n->cap_memory_bytes - n->used_memory_bytes;
}

static int64_t free_cpu(const struct sched_node *n)
{
	return n->cap_cpu_millis - n->used_cpu_millis;
}

/*
 * A Ready node with the memory: among those, one with the cores free too if
 * any (a worker on busy cores is slow, not wrong), then the most free memory.
 * NULL with why in reason.
 */
static struct sched_node *pick(struct fleet_snapshot *f, int64_t mem, int64_t cpu, char *reason,
			       size_t size)
{
	struct sched_node *best = NULL;
	int any_ready = 0;
	int64_t most = -1;

	for (size_t i = 0; i < f->n; i++) {
		struct sched_node *n = &f->sn[i];

		if (!n->ready)
			continue;
		any_ready = 1;
		if (free_mem(n) > most)
			most = free_mem(n);
		if (free_mem(n) < mem)
			continue;
		if (!best || (free_cpu(n) >= cpu && free_cpu(best) < cpu) ||
		    ((free_cpu(n) >= cpu) == (free_cpu(best) >= cpu) &&
		     free_mem(n) > free_mem(best)))
			best = n;
	}
	if (best)
		return best;
	if (!any_ready)
		snprintf(reason, size, "no node is Ready");
	else
		snprintf(reason, size,
			 "no Ready node has %.1f MiB of free memory (the most free is %.1f MiB)",
			 (double)mem / (double)(1 << 20), (double)most / (double)(1 << 20));
	return NULL;
}

static struct sched_node *snapshot_node(struct fleet_snapshot *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->sn[i].name, name) == 0)
			return &f->sn[i];
	return NULL;
}

/* What the node must run. Caller frees. */
static char *placement_text(const json_t *doc)
{
	const char *tenant = jbody_str(doc, "tenant", "");

	return api_dump(json_pack("{s:s, s:s, s:b, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
				  "kind", "llm", "tenant", tenant, "public", !tenant[0], "name",
				  jbody_str(doc, "name", ""), "blob", jbody_str(doc, "blob", ""),
				  "size", (json_int_t)jbody_int(doc, "size", 0), "ctx",
				  (json_int_t)jbody_int(doc, "ctx", 0), "max_seqs",
				  (json_int_t)jbody_int(doc, "max_seqs", 0), "threads",
				  (json_int_t)jbody_int(doc, "threads", 1), "memory_bytes",
				  (json_int_t)jbody_int(doc, "memory_bytes", 0), "cpu_millis",
				  (json_int_t)(jbody_int(doc, "threads", 1) * 1000), "generation",
				  (json_int_t)jbody_int(doc, "generation", 1)));
}

/* Set doc's node (or its reason for waiting); the runtime fields of an old worker go. */
static void assign(json_t *doc, struct sched_node *n, const char *reason)
{
	json_object_del(doc, "worker");
	json_object_del(doc, "pid");
	json_object_del(doc, "rss_bytes");
	if (n) {
		json_object_set_new(doc, "node", json_string(n->name));
		json_object_set_new(doc, "state", json_string("placed"));
		json_object_del(doc, "reason");
		n->used_memory_bytes += jbody_int(doc, "memory_bytes", 0);
		n->used_cpu_millis += jbody_int(doc, "threads", 1) * 1000;
	} else {
		json_object_del(doc, "node");
		json_object_set_new(doc, "state", json_string("pending"));
		json_object_set_new(doc, "reason", json_string(reason));
	}
}

/* ---- deploy, read, delete ---- */

/* Hard-link the validated upload into the blob store under its digest. */
static int store_blob(struct api *a, const char *file, const char *digest, struct ciel_err *err)
{
	char dir[4200], sub[4300], path[4400];
	int fd;

	snprintf(dir, sizeof(dir), "%s/blobs", a->data_dir);
	snprintf(sub, sizeof(sub), "%s/sha256", dir);
	if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || (mkdir(sub, 0700) < 0 && errno != EEXIST))
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", sub);
	if (image_blob_path(dir, digest, path, sizeof(path), err) < 0)
		return -1;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return ciel_err_sys(err, CIEL_EIO, e, "sync the upload");
	}
	close(fd);
	/* the same bytes may be there already: content-addressed, so that is success */
	if (link(file, path) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "store blob %s", digest);
	fd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

struct model_facts {
	char arch[32], type[16];
	uint64_t params, size, kv_per_pos; /* kv_per_pos: bytes of K and V per position */
	uint32_t ctx_train;
};

/* Open the file as the engine will: the upload is refused with the engine's words. */
static int inspect(const char *file, struct model_facts *mf, struct ciel_err *err)
{
	struct llm_model *m = NULL;
	const struct llm_hparams *hp;
	const char *tn;

	if (llm_model_open(&m, file, err) < 0) {
		if (err->code != CIEL_ENOMEM)
			err->code = CIEL_EINVAL;
		ciel_err_prefix(err, "file: not a model the engine can serve: ");
		snprintf(err->field, sizeof(err->field), "file");
		return -1;
	}
	hp = llm_model_hparams(m);
	snprintf(mf->arch, sizeof(mf->arch), "%s", hp->arch);
	tn = gguf_type_name(hp->wtype);
	snprintf(mf->type, sizeof(mf->type), "%s", tn ? tn : "?");
	mf->params = hp->n_params;
	mf->size = llm_model_file_bytes(m);
	mf->kv_per_pos = 2ULL * hp->n_layers * hp->n_kv_heads * hp->head_dim * sizeof(float);
	mf->ctx_train = hp->ctx_train;
	llm_model_close(m);
	return 0;
}

static int h_model_put(struct api *a, struct api_req *r, struct api_resp *resp,
		       struct ciel_err *err)
{
	const char *name = r->params[0], *tenant;
	char k_doc[STORE_KEY_MAX], k_place[STORE_KEY_MAX], k_old[STORE_KEY_MAX];
	char digest[80], now[TS_RFC3339_LEN], reason[160] = "";
	struct model_facts mf = {0};
	struct fleet_snapshot f = {0};
	struct store_op ops[3];
	struct store_txn_result res;
	struct sched_node *n = NULL;
	int64_t ctx, seqs, threads, mem, rev = STORE_ABSENT, gen = 1;
	char *v_doc = NULL, *v_place = NULL;
	json_t *old = NULL, *doc = NULL;
	size_t nops = 0;
	int ret = -1, locked = 0;

	if (write_target(r, name, &tenant, err) < 0)
		return -1;
	if (!r->body_file || !r->body_sha256 || strlen(r->body_sha256) != 64)
		return ciel_err_field(err, CIEL_EINVAL, "file", "file: no upload received");
	if (api_query_int(r, "max_seqs", MODEL_DEFAULT_SEQS, 1, MODEL_MAX_SEQS, &seqs, err) < 0 ||
	    api_query_int(r, "threads", 1, 1, MODEL_MAX_THREADS, &threads, err) < 0 ||
	    api_query_int(r, "ctx", 0, 16, 1 << 20, &ctx, err) < 0)
		return -1;
	if (inspect(r->body_file, &mf, err) < 0)
		return -1;
	if (!ctx)
		ctx = mf.ctx_train && mf.ctx_train < MODEL_DEFAULT_CTX ? mf.ctx_train
								       : MODEL_DEFAULT_CTX;
	if (mf.ctx_train && (uint64_t)ctx > mf.ctx_train)
		return ciel_err_field(
		    err, CIEL_EINVAL, "ctx",
		    "ctx: %lld is past the %u positions the model was trained for", (long long)ctx,
		    mf.ctx_train);
	mem = (int64_t)mf.size + ctx * seqs * (int64_t)mf.kv_per_pos + MODEL_MEM_MARGIN;
	snprintf(digest, sizeof(digest), "sha256:%s", r->body_sha256);
	if (store_blob(a, r->body_file, digest, err) < 0)
		return -1;

	pthread_mutex_lock(&m_lock);
	locked = 1;
	doc_key(k_doc, sizeof(k_doc), tenant, name);
	old = api_load_json(a, k_doc, &rev, err);
	if (!old && err->code != CIEL_ENOTFOUND)
		goto out;
	if (old)
		gen = jbody_int(old, "generation", 0) + 1;
	else
		rev = STORE_ABSENT;
	if (fleet_snapshot_take(a, "", &f, err) < 0)
		goto out;
	if (old && jbody_str(old, "node", "")[0]) {
		struct sched_node *on = snapshot_node(&f, jbody_str(old, "node", ""));

		/* the old worker's reservation is what this deploy replaces */
		if (on) {
			on->used_memory_bytes -= jbody_int(old, "memory_bytes", 0);
			on->used_cpu_millis -= jbody_int(old, "threads", 1) * 1000;
		}
		place_key(k_old, sizeof(k_old), jbody_str(old, "node", ""), tenant, name);
		ops[nops++] = (struct store_op){STORE_DELETE, k_old, NULL, STORE_ANY_REV};
	}
	ts_format(ts_now_ms(), now);
	doc =
	    json_pack("{s:s, s:s, s:I, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "name", name,
		      "blob", digest, "size", (json_int_t)mf.size, "arch", mf.arch, "params",
		      (json_int_t)mf.params, "type", mf.type, "ctx", (json_int_t)ctx, "max_seqs",
		      (json_int_t)seqs, "threads", (json_int_t)threads, "memory_bytes",
		      (json_int_t)mem, "generation", (json_int_t)gen, "created", now);
	if (!doc) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (tenant[0])
		json_object_set_new(doc, "tenant", json_string(tenant));
	else
		json_object_set_new(doc, "public", json_true());
	n = pick(&f, mem, threads * 1000, reason, sizeof(reason));
	assign(doc, n, reason);
	v_doc = doc_text(doc);
	if (!v_doc) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (n) {
		place_key(k_place, sizeof(k_place), n->name, tenant, name);
		v_place = placement_text(doc);
		if (!v_place) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
		/* a delete and a put of the same key in one commit: keep only the put */
		if (nops && strcmp(k_old, k_place) == 0)
			nops--;
		ops[nops++] = (struct store_op){STORE_PUT, k_place, v_place, STORE_ANY_REV};
	}
	ops[nops++] = (struct store_op){STORE_PUT, k_doc, v_doc, rev};
	snprintf(r->path, sizeof(r->path), "/v1/models/%s", name);
	if (api_commit(a, r, ops, nops, old ? 200 : 201, &res, err) < 0)
		goto out;
	log_info("model deployed name=%s tenant=%s blob=%s generation=%" PRId64
		 " memory_bytes=%" PRId64 " node=%s",
		 name, tenant[0] ? tenant : "(public)", digest, gen, mem,
		 n ? n->name : "(pending)");
	api_reply(resp, old ? 200 : 201, model_view(doc, res.rev));
	ret = 0;
out:
	if (locked)
		pthread_mutex_unlock(&m_lock);
	fleet_snapshot_release(&f);
	free(v_doc);
	free(v_place);
	json_decref(doc);
	json_decref(old);
	return ret;
}

static int h_model_list(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	json_t *docs = api_list_visible(a, r->tenant, "models", err), *items, *it;
	size_t i;

	if (!docs)
		return -1;
	if (!(items = json_array())) {
		json_decref(docs);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	json_array_foreach(docs, i, it)
	    json_array_append_new(items, model_view(it, jbody_int(it, "revision", 0)));
	json_decref(docs);
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

static int h_model_show(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	json_t *d = models_find(a, r->tenant, r->params[0], err);

	if (!d)
		return -1;
	api_reply(resp, 200, model_view(d, 0));
	json_decref(d);
	return 0;
}

static int h_model_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	const char *name = r->params[0], *tenant;
	char k_doc[STORE_KEY_MAX], k_place[STORE_KEY_MAX];
	struct store_op ops[2];
	size_t n = 0;
	int64_t rev;
	json_t *d;
	int ret = -1;

	if (write_target(r, name, &tenant, err) < 0)
		return -1;
	pthread_mutex_lock(&m_lock);
	d = load_doc(a, tenant, name, &rev, err);
	if (!d) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_set(err, CIEL_ENOTFOUND, "model %s not found", name);
		goto out;
	}
	doc_key(k_doc, sizeof(k_doc), tenant, name);
	ops[n++] = (struct store_op){STORE_DELETE, k_doc, NULL, rev};
	if (jbody_str(d, "node", "")[0]) {
		/* the node sees its placement go and stops the worker */
		place_key(k_place, sizeof(k_place), jbody_str(d, "node", ""), tenant, name);
		ops[n++] = (struct store_op){STORE_DELETE, k_place, NULL, STORE_ANY_REV};
	}
	if (api_commit(a, r, ops, n, 200, NULL, err) < 0)
		goto out;
	log_info("model deleted name=%s tenant=%s", name, tenant[0] ? tenant : "(public)");
	api_reply(resp, 200, json_pack("{s:s}", "deleted", name));
	ret = 0;
out:
	pthread_mutex_unlock(&m_lock);
	json_decref(d);
	return ret;
}

/* ---- the dispatcher ---- */

static void self_commit(struct api *a, const json_t *doc, const char *action,
			const struct store_op *ops, size_t n)
{
	const char *tenant = jbody_str(doc, "tenant", ""), *name = jbody_str(doc, "name", "");
	struct ciel_err err = {0};
	char path[API_NAME_MAX + 16];

	snprintf(path, sizeof(path), "/v1/models/%s", name);
	if (api_self_commit(a, tenant, path, action, ops, n, &err) < 0)
		log_warn("%s failed tenant=%s model=%s err=%s", action, tenant, name, err.msg);
}

/* One endpoint: move it off a dead node, place it if it waits. */
static void dispatch_one(struct api *a, struct fleet_snapshot *f, json_t *doc)
{
	const char *tenant = jbody_str(doc, "tenant", ""), *name = jbody_str(doc, "name", "");
	const char *node = jbody_str(doc, "node", "");
	char k_doc[STORE_KEY_MAX], k_place[STORE_KEY_MAX], k_old[STORE_KEY_MAX], reason[160] = "";
	int64_t rev = jbody_int(doc, "revision", 0);
	struct sched_node *n = NULL, *on;
	struct store_op ops[3];
	size_t nops = 0;
	char *v_doc = NULL, *v_place = NULL;
	int moved = 0;

	if (node[0]) {
		on = snapshot_node(f, node);
		if (on && on->ready)
			return;
		place_key(k_old, sizeof(k_old), node, tenant, name);
		ops[nops++] = (struct store_op){STORE_DELETE, k_old, NULL, STORE_ANY_REV};
		if (on) {
			on->used_memory_bytes -= jbody_int(doc, "memory_bytes", 0);
			on->used_cpu_millis -= jbody_int(doc, "threads", 1) * 1000;
		}
		log_info("model moved off node=%s name=%s tenant=%s: the node is NotReady", node,
			 name, tenant[0] ? tenant : "(public)");
		moved = 1;
		/* a fresh worker wherever it lands, even back on the same node: an
		 * adopted one would not report again, and the endpoint forgot it */
		json_object_set_new(doc, "generation",
				    json_integer(jbody_int(doc, "generation", 0) + 1));
	}
	n = pick(f, jbody_int(doc, "memory_bytes", 0), jbody_int(doc, "threads", 1) * 1000, reason,
		 sizeof(reason));
	/* a wait that did not change is not worth a write every tick */
	if (!n && !moved && strcmp(jbody_str(doc, "reason", ""), reason) == 0)
		return;
	assign(doc, n, reason);
	doc_key(k_doc, sizeof(k_doc), tenant, name);
	v_doc = doc_text(doc);
	if (!v_doc)
		goto out;
	if (n) {
		place_key(k_place, sizeof(k_place), n->name, tenant, name);
		v_place = placement_text(doc);
		if (!v_place)
			goto out;
		if (nops && strcmp(k_old, k_place) == 0)
			nops--;
		ops[nops++] = (struct store_op){STORE_PUT, k_place, v_place, STORE_ANY_REV};
	}
	ops[nops++] = (struct store_op){STORE_PUT, k_doc, v_doc, rev};
	self_commit(a, doc, n ? "llm.place" : "llm.wait", ops, nops);
	if (n)
		log_info("model placed name=%s tenant=%s node=%s", name,
			 tenant[0] ? tenant : "(public)", n->name);
out:
	free(v_doc);
	free(v_place);
}

static void dispatch_prefix(struct api *a, struct fleet_snapshot *f, const char *prefix)
{
	struct ciel_err err = {0};
	json_t *items = api_list_json(a, prefix, &err), *it;
	size_t i;

	json_array_foreach(items, i, it)
	{
		const char *st = jbody_str(it, "state", "");
		const char *node = jbody_str(it, "node", "");

		if (node[0] || strcmp(st, "pending") == 0)
			dispatch_one(a, f, it);
	}
	json_decref(items);
}

void models_dispatch(struct api *a)
{
	struct store_list tl = {0};
	struct ciel_err err = {0};
	struct fleet_snapshot f = {0};

	pthread_mutex_lock(&m_lock);
	if (fleet_snapshot_take(a, "", &f, &err) < 0 ||
	    store_list(a->store, "/region/tenants/", NULL, 0, &tl, &err) < 0)
		goto out;
	dispatch_prefix(a, &f, "/region/models/");
	for (size_t i = 0; i < tl.n; i++) {
		char prefix[160];

		snprintf(prefix, sizeof(prefix), "/tenants/%s/models/",
			 tl.items[i].key + strlen("/region/tenants/"));
		dispatch_prefix(a, &f, prefix);
	}
out:
	pthread_mutex_unlock(&m_lock);
	store_list_release(&tl);
	fleet_snapshot_release(&f);
}

/* ---- the node side ---- */

/* "http://HOST:PORT" with nothing after the port: where the proxy will connect. */
static int url_valid(const char *u)
{
	const char *p, *colon;
	char *end;
	long port;

	if (strncmp(u, "http://", 7) != 0)
		return 0;
	p = u + 7;
	colon = strrchr(p, ':');
	if (!colon || colon == p)
		return 0;
	for (const char *c = p; c < colon; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
		      *c == '-' || *c == '[' || *c == ']' || *c == ':'))
			return 0;
	port = strtol(colon + 1, &end, 10);
	return *end == '\0' && port > 0 && port < 65536;
}

static int token_valid(const char *t)
{
	size_t n = strlen(t);

	if (n < 16 || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
			return 0;
	return 1;
}

/*
 * A node's report on a worker it runs: loading, ready (url, token, pid,
 * rss) or failed (reason). Reports on an endpoint that is gone, placed on
 * another node, or of an older generation are answered 200 "ignored".
 */
static int h_node_llm(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "tenant", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "name", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "generation", .type = JB_INT, .required = 1, .min = 0, .max = INT64_MAX},
	    {.name = "state", .type = JB_STRING, .required = 1, .max_len = 16},
	    {.name = "url", .type = JB_STRING, .max_len = 256},
	    {.name = "token", .type = JB_STRING, .max_len = 128},
	    {.name = "pid", .type = JB_INT, .min = 0, .max = INT32_MAX},
	    {.name = "rss_bytes", .type = JB_INT, .min = 0, .max = INT64_MAX},
	    {.name = "reason", .type = JB_STRING, .max_len = 4096},
	    {0},
	};
	const char *tenant, *name, *state, *url, *token, *ignored = NULL;
	char k_doc[STORE_KEY_MAX], now[TS_RFC3339_LEN];
	json_t *body, *d = NULL;
	struct store_op op;
	char *val = NULL;
	int64_t rev;
	int ret = -1;

	if (api_own_node(r, err) < 0 || jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	tenant = jbody_str(body, "tenant", "");
	name = jbody_str(body, "name", "");
	state = jbody_str(body, "state", "");
	url = jbody_str(body, "url", "");
	token = jbody_str(body, "token", "");
	if (strcmp(tenant, "region") == 0)
		tenant = "";
	if ((tenant[0] && api_check_name("tenant", tenant, err) < 0) ||
	    api_check_name("name", name, err) < 0)
		goto out_body;
	if (strcmp(state, "loading") && strcmp(state, "ready") && strcmp(state, "failed")) {
		ciel_err_field(err, CIEL_EINVAL, "state",
			       "state: must be loading, ready or failed");
		goto out_body;
	}
	if (strcmp(state, "ready") == 0 && (!url_valid(url) || !token_valid(token))) {
		ciel_err_field(err, CIEL_EINVAL, url_valid(url) ? "token" : "url",
			       "%s: a ready worker needs url http://HOST:PORT and a hex token",
			       url_valid(url) ? "token" : "url");
		goto out_body;
	}
	pthread_mutex_lock(&m_lock);
	d = load_doc(a, tenant, name, &rev, err);
	if (!d) {
		if (err->code != CIEL_ENOTFOUND)
			goto out;
		ignored = "no such model";
	} else if (strcmp(jbody_str(d, "node", ""), r->params[0]) != 0) {
		ignored = "placed on another node";
	} else if (jbody_int(d, "generation", 0) != jbody_int(body, "generation", -1)) {
		ignored = "an older generation";
	}
	if (ignored) {
		api_reply(resp, 200, json_pack("{s:b, s:s}", "ok", 0, "ignored", ignored));
		ret = 0;
		goto out;
	}
	ts_format(ts_now_ms(), now);
	json_object_set_new(d, "state", json_string(state));
	json_object_set_new(d, "updated", json_string(now));
	if (json_object_get(body, "pid"))
		json_object_set(d, "pid", json_object_get(body, "pid"));
	if (json_object_get(body, "rss_bytes"))
		json_object_set(d, "rss_bytes", json_object_get(body, "rss_bytes"));
	if (strcmp(state, "ready") == 0) {
		json_object_set_new(d, "worker",
				    json_pack("{s:s, s:s}", "url", url, "token", token));
		json_object_del(d, "reason");
	} else {
		json_object_del(d, "worker");
		if (strcmp(state, "failed") == 0)
			json_object_set_new(
			    d, "reason", json_string(jbody_str(body, "reason", "worker failed")));
		else
			json_object_del(d, "reason");
	}
	val = doc_text(d);
	if (!val) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	doc_key(k_doc, sizeof(k_doc), tenant, name);
	op = (struct store_op){STORE_PUT, k_doc, val, rev};
	/* the endpoint's own trail: its tenant's chain (the region's for a public one) */
	snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
	snprintf(r->path, sizeof(r->path), "/v1/models/%s", name);
	r->action = strcmp(state, "ready") == 0	    ? "llm.ready"
		    : strcmp(state, "loading") == 0 ? "llm.loading"
						    : "llm.failed";
	if (api_commit(a, r, &op, 1, 200, NULL, err) < 0)
		goto out;
	log_info("model %s name=%s tenant=%s node=%s", state, name, tenant[0] ? tenant : "(public)",
		 r->params[0]);
	api_reply(resp, 200, json_pack("{s:b}", "ok", 1));
	ret = 0;
out:
	pthread_mutex_unlock(&m_lock);
	free(val);
	json_decref(d);
out_body:
	json_decref(body);
	return ret;
}

#define MODEL_WRITE (ROLE_ADMIN | ROLE_MEMBER | ROLE_OPERATOR)

const struct api_route model_routes[] = {
    {"PUT", "/v1/models/{}", "model.deploy", MODEL_WRITE, ROUTE_TENANT_OPT | ROUTE_UPLOAD,
     h_model_put},
    {"GET", "/v1/models", "model.list", ROLE_ANY, ROUTE_TENANT_OPT, h_model_list},
    {"GET", "/v1/models/{}", "model.show", ROLE_ANY, ROUTE_TENANT_OPT, h_model_show},
    {"DELETE", "/v1/models/{}", "model.delete", MODEL_WRITE, ROUTE_TENANT_OPT, h_model_delete},
    {"POST", "/v1/nodes/{}/llm", "node.llm", ROLE_NODE, 0, h_node_llm},
    {0},
};
