/*
 * iam — tenants, principals, access keys and quotas.
 *
 * Store layout:
 *   /region/tenants/<t>               {"name","created"}
 *   /tenants/<t>/principals/<p>       {"name","role","created"}
 *   /tenants/<t>/keys/<id>            {"id","principal","role","created"} (listing index)
 *   /tenants/<t>/quota                {"instances","vcpus","memory_bytes",
 *                                      "quantum_max_qubits","quantum_max_shots",
 *                                      "quantum_max_jobs","llm_tokens_per_minute"}
 *                                      (quantum and llm ones default to
 *                                      QUANTUM_DEFAULT_* / LLM_DEFAULT_TPM when
 *                                      absent: older tenants)
 *   /keys/<id>                        {"id","tenant","principal","role","secret","created"}
 *   /region/keys/<id>                 listing index of region keys (operator, nodes)
 * /keys/<id> is what authentication reads; "secret" is sealed with the master
 * key and bound (AAD) to its store key, so a copied row does not decrypt. A
 * secret is returned once, in the answer that creates it.
 * Another tenant's key or tenant answers 404, never 403: existence must not leak.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/enc.h"
#include "util/jbody.h"
#include "util/ts.h"

#define DEFAULT_QUOTA_INSTANCES 20
#define DEFAULT_QUOTA_VCPUS 16
#define DEFAULT_QUOTA_MEMORY (32LL << 30)
#define MAX_TENANT_OPS 4096

static char *now_str(char buf[TS_RFC3339_LEN])
{
	ts_format(ts_now_ms(), buf);
	return buf;
}

static int check_principal_name(const char *v, struct ciel_err *err)
{
	size_t n = strlen(v);

	if (n < 1 || n > 64)
		return ciel_err_field(err, CIEL_EINVAL, "principal",
				      "principal: must be 1 to 64 characters");
	for (size_t i = 0; i < n; i++) {
		char c = v[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      (c == '.' && i > 0)))
			return ciel_err_field(
			    err, CIEL_EINVAL, "principal",
			    "principal: only a-z, 0-9, '-', '_' and '.' (not first)");
	}
	return 0;
}

void iam_key_ops_release(struct iam_key_ops *k)
{
	for (size_t i = 0; i < sizeof(k->s) / sizeof(k->s[0]); i++) {
		free(k->s[i]);
		k->s[i] = NULL;
	}
}

int iam_new_key(struct api *a, const char *tenant, const char *principal, const char *role,
		struct store_op *ops, size_t *n, struct iam_key_ops *k, json_t **out,
		struct ciel_err *err)
{
	unsigned char raw[32];
	char id[24], ts[TS_RFC3339_LEN], *secret = NULL, *sealed = NULL;
	int region = strcmp(tenant, "region") == 0;

	memset(k, 0, sizeof(*k));
	*out = NULL;
	if (enc_random_id("CK", 16, id, sizeof(id), err) < 0 ||
	    enc_random(raw, sizeof(raw), err) < 0)
		return -1;
	secret = enc_b64url(raw, sizeof(raw));
	explicit_bzero(raw, sizeof(raw));
	if (!secret)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (asprintf(&k->s[0], "/keys/%s", id) < 0)
		goto oom;
	sealed = seal_encrypt(a->master_key, secret, strlen(secret), k->s[0], err);
	if (!sealed)
		goto fail;
	now_str(ts);
	k->s[1] = api_dump(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "tenant", tenant,
				     "principal", principal, "role", role, "secret", sealed,
				     "created", ts));
	if (region ? asprintf(&k->s[2], "/region/keys/%s", id) < 0
		   : asprintf(&k->s[2], "/tenants/%s/keys/%s", tenant, id) < 0)
		goto oom;
	k->s[3] = api_dump(json_pack("{s:s, s:s, s:s, s:s}", "id", id, "principal", principal,
				     "role", role, "created", ts));
	if (!region &&
	    (asprintf(&k->s[4], "/tenants/%s/principals/%s/keys/%s", tenant, principal, id) < 0 ||
	     !(k->s[5] = strdup("{}"))))
		goto oom;
	*out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "secret", secret, "principal",
			 principal, "role", role, "tenant", tenant, "created", ts);
	if (!k->s[1] || !k->s[3] || !*out)
		goto oom;
	ops[(*n)++] = (struct store_op){STORE_PUT, k->s[0], k->s[1], STORE_ABSENT};
	ops[(*n)++] = (struct store_op){STORE_PUT, k->s[2], k->s[3], STORE_ABSENT};
	if (!region)
		ops[(*n)++] = (struct store_op){STORE_PUT, k->s[4], k->s[5], STORE_ABSENT};
	explicit_bzero(secret, strlen(secret));
	free(secret);
	free(sealed);
	return 0;
oom:
	ciel_err_set(err, CIEL_ENOMEM, "out of memory");
fail:
	if (secret)
		explicit_bzero(secret, strlen(secret));
	free(secret);
	free(sealed);
	json_decref(*out);
	*out = NULL;
	iam_key_ops_release(k);
	return -1;
}

/* List a prefix into a JSON array of the stored documents. */
/* Answer {"items": [...]} with the documents under prefix; stamp_tenant, when
 * given, is added to each item (key records do not repeat their tenant). */
static int reply_list(struct api *a, struct api_resp *resp, const char *prefix,
		      const char *stamp_tenant, struct ciel_err *err)
{
	json_t *items = api_list_json(a, prefix, err), *it;
	size_t i;

	if (!items)
		return -1;
	if (stamp_tenant)
		json_array_foreach(items, i, it)
		    json_object_set_new(it, "tenant", json_string(stamp_tenant));
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

static int h_tenant_create(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "name", .type = JB_STRING, .required = 1, .max_len = 64},
	    {0},
	};
	char *k_tenant = NULL, *k_admin = NULL, *k_quota = NULL, *v_tenant = NULL, *v_admin = NULL,
	     *v_quota = NULL, ts[TS_RFC3339_LEN];
	struct iam_key_ops ko = {0};
	struct store_op ops[8];
	struct store_txn_result res;
	json_t *body, *key = NULL;
	const char *name;
	size_t n = 0;
	int ret = -1;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	name = jbody_str(body, "name", "");
	if (api_check_name("name", name, err) < 0)
		goto out;
	if (strcmp(name, "region") == 0) {
		ciel_err_field(err, CIEL_EINVAL, "name", "name: 'region' is reserved");
		goto out;
	}
	now_str(ts);
	if (asprintf(&k_tenant, "/region/tenants/%s", name) < 0 ||
	    asprintf(&k_admin, "/tenants/%s/principals/admin", name) < 0 ||
	    asprintf(&k_quota, "/tenants/%s/quota", name) < 0)
		goto oom;
	v_tenant = api_dump(json_pack("{s:s, s:s}", "name", name, "created", ts));
	v_admin =
	    api_dump(json_pack("{s:s, s:s, s:s}", "name", "admin", "role", "admin", "created", ts));
	v_quota = api_dump(json_pack(
	    "{s:i, s:i, s:I, s:i, s:i, s:i, s:I}", "instances", DEFAULT_QUOTA_INSTANCES, "vcpus",
	    DEFAULT_QUOTA_VCPUS, "memory_bytes", (json_int_t)DEFAULT_QUOTA_MEMORY,
	    "quantum_max_qubits", QUANTUM_DEFAULT_MAX_QUBITS, "quantum_max_shots",
	    QUANTUM_DEFAULT_MAX_SHOTS, "quantum_max_jobs", QUANTUM_DEFAULT_MAX_JOBS,
	    "llm_tokens_per_minute", (json_int_t)LLM_DEFAULT_TPM));
	if (!v_tenant || !v_admin || !v_quota)
		goto oom;
	ops[n++] = (struct store_op){STORE_PUT, k_tenant, v_tenant, STORE_ABSENT};
	ops[n++] = (struct store_op){STORE_PUT, k_admin, v_admin, STORE_ABSENT};
	ops[n++] = (struct store_op){STORE_PUT, k_quota, v_quota, STORE_ABSENT};
	if (iam_new_key(a, name, "admin", "admin", ops, &n, &ko, &key, err) < 0)
		goto out;
	if (api_commit(a, r, ops, n, 201, &res, err) < 0) {
		if (err->code == CIEL_ECONFLICT)
			ciel_err_field(err, CIEL_EEXIST, "name", "tenant %s already exists", name);
		goto out;
	}
	api_reply(resp, 201,
		  json_pack("{s:{s:s, s:s, s:I}, s:O}", "tenant", "name", name, "created", ts,
			    "revision", (json_int_t)res.rev, "key", key));
	ret = 0;
	goto out;
oom:
	ciel_err_set(err, CIEL_ENOMEM, "out of memory");
out:
	free(k_tenant);
	free(k_admin);
	free(k_quota);
	free(v_tenant);
	free(v_admin);
	free(v_quota);
	iam_key_ops_release(&ko);
	json_decref(key);
	json_decref(body);
	return ret;
}

static int h_tenant_list(struct api *a, struct api_req *r, struct api_resp *resp,
			 struct ciel_err *err)
{
	(void)r;
	return reply_list(a, resp, "/region/tenants/", NULL, err);
}

static int h_tenant_show(struct api *a, struct api_req *r, struct api_resp *resp,
			 struct ciel_err *err)
{
	const char *name = r->params[0];
	char key[128];
	int64_t rev;
	json_t *t;

	/* a tenant principal sees only its own tenant, and others do not exist for it */
	if (r->who.role != ROLE_OPERATOR && strcmp(r->who.tenant, name) != 0)
		return ciel_err_set(err, CIEL_ENOTFOUND, "tenant %s not found", name);
	snprintf(key, sizeof(key), "/region/tenants/%.64s", name);
	t = api_load_json(a, key, &rev, err);
	if (!t) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_set(err, CIEL_ENOTFOUND, "tenant %s not found", name);
		return -1;
	}
	json_object_set_new(t, "revision", json_integer(rev));
	api_reply(resp, 200, t);
	return 0;
}

static int h_tenant_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	const char *name = r->params[0];
	struct store_list owned = {0}, keys = {0};
	struct store_op *ops = NULL;
	char tkey[128], prefix[128], **paths = NULL;
	size_t n = 0, np = 0;
	int64_t rev;
	json_t *t;
	int ret = -1;

	snprintf(tkey, sizeof(tkey), "/region/tenants/%.64s", name);
	t = api_load_json(a, tkey, &rev, err);
	if (!t) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_set(err, CIEL_ENOTFOUND, "tenant %s not found", name);
		return -1;
	}
	json_decref(t);
	snprintf(prefix, sizeof(prefix), "/tenants/%.64s/", name);
	if (store_list(a->store, prefix, NULL, MAX_TENANT_OPS, &owned, err) < 0)
		goto out;
	snprintf(prefix, sizeof(prefix), "/tenants/%.64s/keys/", name);
	if (store_list(a->store, prefix, NULL, MAX_TENANT_OPS, &keys, err) < 0)
		goto out;
	if (owned.more || 2 * owned.n + keys.n + 1 > MAX_TENANT_OPS) {
		ciel_err_set(err, CIEL_ECONFLICT,
			     "tenant %s owns more than %d objects; delete its resources first",
			     name, MAX_TENANT_OPS);
		goto out;
	}
	for (size_t i = 0; i < owned.n; i++) {
		char ipfx[128], mpfx[128];

		/* its placements live under /region/: nodes must stop them first */
		snprintf(ipfx, sizeof(ipfx), "/tenants/%.64s/instances/", name);
		snprintf(mpfx, sizeof(mpfx), "/tenants/%.64s/models/", name);
		if (strncmp(owned.items[i].key, ipfx, strlen(ipfx)) == 0) {
			ciel_err_set(err, CIEL_EEXIST,
				     "tenant %s still has instances (%s); delete them first", name,
				     owned.items[i].key + strlen(ipfx));
			goto out;
		}
		if (strncmp(owned.items[i].key, mpfx, strlen(mpfx)) == 0) {
			ciel_err_set(err, CIEL_EEXIST,
				     "tenant %s still has models (%s); delete them first", name,
				     owned.items[i].key + strlen(mpfx));
			goto out;
		}
	}
	ops = calloc(2 * owned.n + keys.n + 2, sizeof(*ops));
	paths = calloc(owned.n + keys.n + 2, sizeof(*paths));
	if (!ops || !paths) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	/* the tenant's audit chain is not under /tenants/: it outlives the tenant */
	ops[n++] = (struct store_op){STORE_DELETE, tkey, NULL, rev};
	for (size_t i = 0; i < owned.n; i++) {
		const char *k = owned.items[i].key + strlen(name) + strlen("/tenants//");

		ops[n++] = (struct store_op){STORE_DELETE, owned.items[i].key, NULL,
					     owned.items[i].mod_rev};
		/* an API key is found by its id alone: that index goes too */
		if (strncmp(k, "apikeys/", 8) == 0 && !strchr(k + 8, '/')) {
			if (asprintf(&paths[np], "/apikeys/%s", k + 8) < 0) {
				ciel_err_set(err, CIEL_ENOMEM, "out of memory");
				goto out;
			}
			ops[n++] =
			    (struct store_op){STORE_DELETE, paths[np++], NULL, STORE_ANY_REV};
		}
		/* its subnet goes back to the region */
		if (strcmp(k, "network") == 0) {
			json_t *net =
			    json_loadb(owned.items[i].value, owned.items[i].value_len, 0, NULL);

			if (net && asprintf(&paths[np], "/region/subnets/%lld",
					    (long long)jbody_int(net, "index", 0)) >= 0)
				ops[n++] = (struct store_op){STORE_DELETE, paths[np++], NULL,
							     STORE_ANY_REV};
			json_decref(net);
		}
	}
	for (size_t i = 0; i < keys.n; i++) {
		const char *id = strrchr(keys.items[i].key, '/') + 1;

		if (asprintf(&paths[np], "/keys/%s", id) < 0) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
		ops[n++] = (struct store_op){STORE_DELETE, paths[np++], NULL, STORE_ANY_REV};
	}
	if (api_commit(a, r, ops, n, 200, NULL, err) < 0)
		goto out;
	api_reply(resp, 200, json_pack("{s:s}", "deleted", name));
	ret = 0;
out:
	for (size_t i = 0; i < np; i++)
		free(paths[i]);
	free(paths);
	free(ops);
	store_list_release(&owned);
	store_list_release(&keys);
	return ret;
}

static int h_key_create(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "principal", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "role", .type = JB_STRING, .max_len = 16},
	    {0},
	};
	char pkey[160], *pval = NULL, ts[TS_RFC3339_LEN];
	struct iam_key_ops ko = {0};
	struct store_op ops[1 + IAM_KEY_OPS];
	json_t *body, *p = NULL, *key = NULL;
	const char *principal, *role;
	int64_t prev = STORE_ABSENT;
	size_t n = 0;
	int ret = -1, rbit;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	principal = jbody_str(body, "principal", "");
	role = jbody_str(body, "role", NULL);
	if (check_principal_name(principal, err) < 0)
		goto out;
	rbit = role ? api_role_parse(role) : ROLE_MEMBER;
	if (!(rbit & ROLE_TENANT_ANY)) {
		ciel_err_field(err, CIEL_EINVAL, "role", "role: must be admin, member or reader");
		goto out;
	}
	snprintf(pkey, sizeof(pkey), "/tenants/%s/principals/%s", r->tenant, principal);
	p = api_load_json(a, pkey, &prev, err);
	if (p) {
		const char *have = jbody_str(p, "role", "");

		if (role && strcmp(have, role) != 0) {
			ciel_err_field(err, CIEL_EINVAL, "role",
				       "role: principal %s already has role %s", principal, have);
			goto out;
		}
		role = have;
		/* re-put it unchanged, conditioned on its revision, so a concurrent
		 * principal delete cannot leave this key orphaned */
		pval = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
		ops[n++] = (struct store_op){STORE_PUT, pkey, pval, prev};
	} else {
		if (err->code != CIEL_ENOTFOUND)
			goto out;
		role = api_role_name(rbit);
		pval = api_dump(json_pack("{s:s, s:s, s:s}", "name", principal, "role", role,
					  "created", now_str(ts)));
		ops[n++] = (struct store_op){STORE_PUT, pkey, pval, STORE_ABSENT};
	}
	if (!pval) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (iam_new_key(a, r->tenant, principal, role, ops, &n, &ko, &key, err) < 0)
		goto out;
	if (api_commit(a, r, ops, n, 201, NULL, err) < 0)
		goto out;
	api_reply(resp, 201, key);
	key = NULL;
	ret = 0;
out:
	free(pval);
	iam_key_ops_release(&ko);
	json_decref(key);
	json_decref(p);
	json_decref(body);
	return ret;
}

static int h_key_list(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	char prefix[128];

	snprintf(prefix, sizeof(prefix), "/tenants/%s/keys/", r->tenant);
	return reply_list(a, resp, prefix, r->tenant, err);
}

static int h_key_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	const char *id = r->params[0];
	char key[96], idx[160], pidx[240];
	int64_t rev;
	json_t *k;
	struct store_op ops[3];

	snprintf(key, sizeof(key), "/keys/%.64s", id);
	k = api_load_json(a, key, &rev, err);
	if (!k || strcmp(jbody_str(k, "tenant", ""), r->tenant) != 0) {
		json_decref(k);
		return ciel_err_set(err, CIEL_ENOTFOUND, "key %s not found", id);
	}
	snprintf(idx, sizeof(idx), "/tenants/%s/keys/%.64s", r->tenant, id);
	snprintf(pidx, sizeof(pidx), "/tenants/%s/principals/%.64s/keys/%.64s", r->tenant,
		 jbody_str(k, "principal", ""), id);
	json_decref(k);
	ops[0] = (struct store_op){STORE_DELETE, key, NULL, rev};
	ops[1] = (struct store_op){STORE_DELETE, idx, NULL, STORE_ANY_REV};
	ops[2] = (struct store_op){STORE_DELETE, pidx, NULL, STORE_ANY_REV};
	if (api_commit(a, r, ops, 3, 200, NULL, err) < 0)
		return -1;
	api_reply(resp, 200, json_pack("{s:s}", "deleted", id));
	return 0;
}

static int h_principal_list(struct api *a, struct api_req *r, struct api_resp *resp,
			    struct ciel_err *err)
{
	char prefix[128];

	snprintf(prefix, sizeof(prefix), "/tenants/%s/principals/", r->tenant);
	return reply_list(a, resp, prefix, NULL, err);
}

static int h_principal_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			      struct ciel_err *err)
{
	const char *name = r->params[0];
	struct store_list keys = {0};
	struct store_op *ops = NULL;
	char pkey[160], prefix[200], **paths = NULL;
	size_t n = 0, np = 0;
	int64_t rev;
	json_t *p;
	int ret = -1;

	snprintf(pkey, sizeof(pkey), "/tenants/%s/principals/%.64s", r->tenant, name);
	p = api_load_json(a, pkey, &rev, err);
	if (!p) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_set(err, CIEL_ENOTFOUND, "principal %s not found", name);
		return -1;
	}
	json_decref(p);
	/* the principal's own key index: the cost is its keys, not the tenant's */
	snprintf(prefix, sizeof(prefix), "%s/keys/", pkey);
	if (store_list(a->store, prefix, NULL, 0, &keys, err) < 0)
		return -1;
	ops = calloc(3 * keys.n + 1, sizeof(*ops));
	paths = calloc(2 * keys.n + 1, sizeof(*paths));
	if (!ops || !paths) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	ops[n++] = (struct store_op){STORE_DELETE, pkey, NULL, rev};
	for (size_t i = 0; i < keys.n; i++) {
		const char *id = keys.items[i].key + strlen(prefix);

		if (asprintf(&paths[np], "/keys/%s", id) < 0 ||
		    asprintf(&paths[np + 1], "/tenants/%s/keys/%s", r->tenant, id) < 0) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto out;
		}
		ops[n++] = (struct store_op){STORE_DELETE, paths[np++], NULL, STORE_ANY_REV};
		ops[n++] = (struct store_op){STORE_DELETE, paths[np++], NULL, STORE_ANY_REV};
		ops[n++] =
		    (struct store_op){STORE_DELETE, keys.items[i].key, NULL, keys.items[i].mod_rev};
	}
	if (api_commit(a, r, ops, n, 200, NULL, err) < 0)
		goto out;
	api_reply(resp, 200, json_pack("{s:s}", "deleted", name));
	ret = 0;
out:
	for (size_t i = 0; i < np; i++)
		free(paths[i]);
	free(paths);
	free(ops);
	store_list_release(&keys);
	return ret;
}

/* Quantum jobs queued or running: what quantum_max_jobs limits. */
static int quantum_active(struct api *a, const char *tenant, int64_t *n, struct ciel_err *err)
{
	struct store_list l = {0};
	char prefix[128];

	*n = 0;
	snprintf(prefix, sizeof(prefix), "/tenants/%s/qjobs/", tenant);
	if (store_list(a->store, prefix, NULL, 0, &l, err) < 0)
		return -1;
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loadb(l.items[i].value, l.items[i].value_len, 0, NULL);
		const char *st = jbody_str(d, "state", "");

		*n += strcmp(st, "queued") == 0 || strcmp(st, "running") == 0;
		json_decref(d);
	}
	store_list_release(&l);
	return 0;
}

/* Usage is what the tenant's instances claim, and its active quantum jobs. */
static json_t *quota_usage(struct api *a, const char *tenant, struct ciel_err *err)
{
	struct store_list l = {0};
	char prefix[128];
	int64_t cpu = 0, mem = 0, count = 0, qjobs = 0;

	snprintf(prefix, sizeof(prefix), "/tenants/%s/instances/", tenant);
	if (store_list(a->store, prefix, NULL, 0, &l, err) < 0)
		return NULL;
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loadb(l.items[i].value, l.items[i].value_len, 0, NULL);

		if (d && !strchr(l.items[i].key + strlen(prefix), '/')) {
			count++;
			cpu += jbody_int(d, "cpu_millis", 0);
			mem += jbody_int(d, "memory_bytes", 0);
		}
		json_decref(d);
	}
	store_list_release(&l);
	if (quantum_active(a, tenant, &qjobs, err) < 0)
		return NULL;
	return json_pack("{s:I, s:f, s:I, s:I, s:I}", "instances", (json_int_t)count, "vcpus",
			 (double)cpu / 1000.0, "memory_bytes", (json_int_t)mem, "quantum_max_jobs",
			 (json_int_t)qjobs, "llm_tokens_per_minute",
			 (json_int_t)openai_tpm_used(tenant));
}

static int quota_answer(struct api *a, struct api_req *r, struct api_resp *resp, json_t *limits,
			struct ciel_err *err)
{
	json_t *usage = quota_usage(a, r->tenant, err);

	if (!usage) {
		json_decref(limits);
		return -1;
	}
	api_reply(
	    resp, 200,
	    json_pack("{s:s, s:o, s:o}", "tenant", r->tenant, "limits", limits, "usage", usage));
	return 0;
}

/* A quota document from before the quantum quotas shows their defaults. */
static void quota_defaults(json_t *q)
{
	if (!json_object_get(q, "quantum_max_qubits"))
		json_object_set_new(q, "quantum_max_qubits",
				    json_integer(QUANTUM_DEFAULT_MAX_QUBITS));
	if (!json_object_get(q, "quantum_max_shots"))
		json_object_set_new(q, "quantum_max_shots",
				    json_integer(QUANTUM_DEFAULT_MAX_SHOTS));
	if (!json_object_get(q, "quantum_max_jobs"))
		json_object_set_new(q, "quantum_max_jobs", json_integer(QUANTUM_DEFAULT_MAX_JOBS));
	if (!json_object_get(q, "llm_tokens_per_minute"))
		json_object_set_new(q, "llm_tokens_per_minute", json_integer(LLM_DEFAULT_TPM));
}

static int h_quota_show(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	char key[128];
	json_t *q;

	snprintf(key, sizeof(key), "/tenants/%s/quota", r->tenant);
	q = api_load_json(a, key, NULL, err);
	if (!q)
		return -1;
	quota_defaults(q);
	return quota_answer(a, r, resp, q, err);
}

static int h_quota_set(struct api *a, struct api_req *r, struct api_resp *resp,
		       struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "instances", .type = JB_INT, .min = 0, .max = 100000},
	    {.name = "vcpus", .type = JB_INT, .min = 0, .max = 1000000},
	    {.name = "memory_bytes", .type = JB_SIZE, .min = 0, .max = 1LL << 50},
	    {.name = "quantum_max_qubits", .type = JB_INT, .min = 0, .max = 64},
	    {.name = "quantum_max_shots", .type = JB_INT, .min = 0, .max = 1000000},
	    {.name = "quantum_max_jobs", .type = JB_INT, .min = 0, .max = 100000},
	    {.name = "llm_tokens_per_minute", .type = JB_INT, .min = 0, .max = 1LL << 40},
	    {0},
	};
	char key[128], *val = NULL;
	struct store_op op;
	const char *name;
	json_t *body, *q = NULL, *v;
	int64_t rev;
	int ret = -1;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	snprintf(key, sizeof(key), "/tenants/%s/quota", r->tenant);
	q = api_load_json(a, key, &rev, err);
	if (!q)
		goto out;
	quota_defaults(q);
	json_object_foreach(body, name, v) if (!json_is_null(v)) json_object_set(q, name, v);
	val = json_dumps(q, JSON_COMPACT | JSON_SORT_KEYS);
	if (!val) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	op = (struct store_op){STORE_PUT, key, val, rev};
	if (api_commit(a, r, &op, 1, 200, NULL, err) < 0)
		goto out;
	ret = quota_answer(a, r, resp, q, err);
	q = NULL;
out:
	free(val);
	json_decref(q);
	json_decref(body);
	return ret;
}

const struct api_route iam_routes[] = {
    {"POST", "/v1/tenants", "tenant.create", ROLE_OPERATOR, 0, h_tenant_create},
    {"GET", "/v1/tenants", "tenant.list", ROLE_OPERATOR, 0, h_tenant_list},
    {"GET", "/v1/tenants/{}", "tenant.show", ROLE_ANY, 0, h_tenant_show},
    {"DELETE", "/v1/tenants/{}", "tenant.delete", ROLE_OPERATOR, 0, h_tenant_delete},
    {"POST", "/v1/keys", "key.create", ROLE_ADMIN | ROLE_OPERATOR, ROUTE_TENANT, h_key_create},
    {"GET", "/v1/keys", "key.list", ROLE_ADMIN | ROLE_OPERATOR, ROUTE_TENANT, h_key_list},
    {"DELETE", "/v1/keys/{}", "key.delete", ROLE_ADMIN | ROLE_OPERATOR, ROUTE_TENANT, h_key_delete},
    {"GET", "/v1/principals", "principal.list", ROLE_ADMIN | ROLE_OPERATOR, ROUTE_TENANT,
     h_principal_list},
    {"DELETE", "/v1/principals/{}", "principal.delete", ROLE_ADMIN | ROLE_OPERATOR, ROUTE_TENANT,
     h_principal_delete},
    {"GET", "/v1/quota", "quota.show", ROLE_ANY, ROUTE_TENANT, h_quota_show},
    {"PUT", "/v1/quota", "quota.set", ROLE_OPERATOR, ROUTE_TENANT, h_quota_set},
    {0},
};
