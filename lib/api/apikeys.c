/*
 * apikeys — bearer API keys for the OpenAI-compatible surface.
 *
 * OpenAI clients cannot sign requests; they send one static secret,
 * "Authorization: Bearer sk-ciel-<id>-<secret>". A key belongs to one tenant
 * and acts as a member of it, and only on ROUTE_BEARER routes (/openai/...):
 * it cannot manage anything.
 *
 * Store layout:
 *   /apikeys/<id>               {"id","tenant","name","secret_sha256","created","created_by"}
 *   /tenants/<t>/apikeys/<id>   {"id","name","created","created_by"} (listing index)
 * Only the SHA-256 of the secret is kept: the secret (32 random bytes, so a
 * plain hash is enough; there is nothing to brute-force) is shown once, in
 * the answer that creates it. Another tenant's key answers 404.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto/enc.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define APIKEY_PREFIX "sk-ciel-"
#define APIKEY_ID_HEX 16     /* "ak_" + 16 hex */
#define APIKEY_SECRET_HEX 64 /* 32 random bytes */
#define APIKEY_ID_LEN (3 + APIKEY_ID_HEX)
#define APIKEYS_PER_TENANT 100

static int is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int id_valid(const char *id)
{
	return strlen(id) == APIKEY_ID_LEN && strncmp(id, "ak_", 3) == 0 &&
	       is_hex(id + 3, APIKEY_ID_HEX);
}

int apikeys_is_bearer(const char *h)
{
	return h && strncasecmp(h, "Bearer ", 7) == 0;
}

static int bad_key(struct api_req *r, struct ciel_err *err, const char *reason, const char *msg)
{
	r->reason = reason;
	ciel_err_field(err, CIEL_EUNAUTH, "authorization", "authorization: %s", msg);
	return -1;
}

int apikeys_authenticate(struct api *a, struct api_req *r, struct ciel_err *err)
{
	const char *v = r->h_authorization + 7, *id_start, *secret;
	char id[APIKEY_ID_LEN + 1], key[64], sha[65];
	json_t *k;
	int ok;

	while (*v == ' ')
		v++;
	if (strncmp(v, APIKEY_PREFIX, strlen(APIKEY_PREFIX)) != 0)
		return bad_key(r, err, "malformed_authorization",
			       "not a ciel API key (sk-ciel-...); create one with `ciel apikey "
			       "create`");
	id_start = v + strlen(APIKEY_PREFIX);
	if (strlen(id_start) != APIKEY_ID_LEN + 1 + APIKEY_SECRET_HEX ||
	    id_start[APIKEY_ID_LEN] != '-')
		return bad_key(r, err, "malformed_authorization", "malformed API key");
	memcpy(id, id_start, APIKEY_ID_LEN);
	id[APIKEY_ID_LEN] = '\0';
	secret = id_start + APIKEY_ID_LEN + 1;
	if (!id_valid(id) || !is_hex(secret, APIKEY_SECRET_HEX))
		return bad_key(r, err, "malformed_authorization", "malformed API key");
	snprintf(r->who.key_id, sizeof(r->who.key_id), "%s", id);
	snprintf(key, sizeof(key), "/apikeys/%s", id);
	k = api_load_json(a, key, NULL, err);
	if (!k) {
		if (err->code != CIEL_ENOTFOUND)
			return -1;
		return bad_key(r, err, "unknown_key", "unknown or deleted API key");
	}
	enc_sha256_hex(secret, APIKEY_SECRET_HEX, sha);
	ok = strlen(jbody_str(k, "secret_sha256", "")) == 64 &&
	     enc_equal(sha, jbody_str(k, "secret_sha256", ""), 64);
	if (!ok) {
		json_decref(k);
		return bad_key(r, err, "bad_signature", "wrong API key secret");
	}
	r->who.role = ROLE_MEMBER;
	snprintf(r->who.tenant, sizeof(r->who.tenant), "%s", jbody_str(k, "tenant", ""));
	snprintf(r->who.principal, sizeof(r->who.principal), "apikey:%s", id);
	json_decref(k);
	return 0;
}

static int count_keys(struct api *a, const char *tenant, size_t *n, struct ciel_err *err)
{
	struct store_list l = {0};
	char prefix[128];

	snprintf(prefix, sizeof(prefix), "/tenants/%s/apikeys/", tenant);
	if (store_list(a->store, prefix, NULL, 0, &l, err) < 0)
		return -1;
	*n = l.n;
	store_list_release(&l);
	return 0;
}

static int h_apikey_create(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "name", .type = JB_STRING, .max_len = 64},
	    {0},
	};
	unsigned char rid[APIKEY_ID_HEX / 2], raw[APIKEY_SECRET_HEX / 2];
	char id[APIKEY_ID_LEN + 1], secret[APIKEY_SECRET_HEX + 1], sha[65], now[TS_RFC3339_LEN];
	char k_key[64], k_idx[160], *v_key = NULL, *v_idx = NULL, full[128];
	struct store_op ops[2];
	const char *name;
	json_t *body;
	size_t have;
	int ret = -1;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	name = jbody_str(body, "name", "default");
	if (api_check_name("name", name, err) < 0 || count_keys(a, r->tenant, &have, err) < 0)
		goto out;
	if (have >= APIKEYS_PER_TENANT) {
		ciel_err_field(err, CIEL_EQUOTA, "name",
			       "tenant %s has %d API keys already; delete one first", r->tenant,
			       APIKEYS_PER_TENANT);
		goto out;
	}
	if (enc_random(rid, sizeof(rid), err) < 0 || enc_random(raw, sizeof(raw), err) < 0)
		goto out;
	memcpy(id, "ak_", 3);
	enc_hex(rid, sizeof(rid), id + 3);
	enc_hex(raw, sizeof(raw), secret);
	explicit_bzero(raw, sizeof(raw));
	enc_sha256_hex(secret, APIKEY_SECRET_HEX, sha);
	ts_format(ts_now_ms(), now);
	snprintf(k_key, sizeof(k_key), "/apikeys/%s", id);
	snprintf(k_idx, sizeof(k_idx), "/tenants/%s/apikeys/%s", r->tenant, id);
	v_key = api_dump(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "tenant", r->tenant,
				   "name", name, "secret_sha256", sha, "created", now, "created_by",
				   r->who.principal));
	v_idx = api_dump(json_pack("{s:s, s:s, s:s, s:s}", "id", id, "name", name, "created", now,
				   "created_by", r->who.principal));
	if (!v_key || !v_idx) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	ops[0] = (struct store_op){STORE_PUT, k_key, v_key, STORE_ABSENT};
	ops[1] = (struct store_op){STORE_PUT, k_idx, v_idx, STORE_ABSENT};
	if (api_commit(a, r, ops, 2, 201, NULL, err) < 0)
		goto out;
	snprintf(full, sizeof(full), APIKEY_PREFIX "%s-%s", id, secret);
	api_reply(resp, 201,
		  json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "name", name, "key", full,
			    "tenant", r->tenant, "created", now));
	explicit_bzero(full, sizeof(full));
	log_info("api key created tenant=%s id=%s", r->tenant, id);
	ret = 0;
out:
	explicit_bzero(secret, sizeof(secret));
	free(v_key);
	free(v_idx);
	json_decref(body);
	return ret;
}

static int h_apikey_list(struct api *a, struct api_req *r, struct api_resp *resp,
			 struct ciel_err *err)
{
	char prefix[128];
	json_t *items, *it;
	size_t i;

	snprintf(prefix, sizeof(prefix), "/tenants/%s/apikeys/", r->tenant);
	items = api_list_json(a, prefix, err);
	if (!items)
		return -1;
	json_array_foreach(items, i, it) json_object_set_new(it, "tenant", json_string(r->tenant));
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

static int h_apikey_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			   struct ciel_err *err)
{
	const char *id = r->params[0];
	char k_key[STORE_KEY_MAX], k_idx[STORE_KEY_MAX];
	struct store_op ops[2];
	int64_t rev;
	json_t *k;

	if (!id_valid(id))
		return ciel_err_set(err, CIEL_ENOTFOUND, "API key %.32s not found", id);
	snprintf(k_key, sizeof(k_key), "/apikeys/%s", id);
	k = api_load_json(a, k_key, &rev, err);
	if (!k || strcmp(jbody_str(k, "tenant", ""), r->tenant) != 0) {
		json_decref(k);
		if (k || err->code == CIEL_ENOTFOUND)
			return ciel_err_set(err, CIEL_ENOTFOUND, "API key %s not found", id);
		return -1;
	}
	json_decref(k);
	snprintf(k_idx, sizeof(k_idx), "/tenants/%s/apikeys/%s", r->tenant, id);
	ops[0] = (struct store_op){STORE_DELETE, k_key, NULL, rev};
	ops[1] = (struct store_op){STORE_DELETE, k_idx, NULL, STORE_ANY_REV};
	if (api_commit(a, r, ops, 2, 200, NULL, err) < 0)
		return -1;
	api_reply(resp, 200, json_pack("{s:s}", "deleted", id));
	return 0;
}

#define AK_WRITE (ROLE_ADMIN | ROLE_MEMBER | ROLE_OPERATOR)

const struct api_route apikey_routes[] = {
    {"POST", "/v1/apikeys", "apikey.create", AK_WRITE, ROUTE_TENANT, h_apikey_create},
    {"GET", "/v1/apikeys", "apikey.list", AK_WRITE, ROUTE_TENANT, h_apikey_list},
    {"DELETE", "/v1/apikeys/{}", "apikey.delete", AK_WRITE, ROUTE_TENANT, h_apikey_delete},
    {0},
};
