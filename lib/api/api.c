/* api — the request pipeline; see api.h for the order of checks and why. */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/metrics.h"
#include "crypto/enc.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

/* The handler tables, flattened once so a route has one index (metrics). */
#define MAX_ROUTES 128
static const struct api_route *routes[MAX_ROUTES];
static const char *route_names[MAX_ROUTES];
static size_t n_routes;

static void routes_init(void)
{
	const struct api_route *tables[] = {fleet_routes, iam_routes,	   trail_routes,
					    image_routes, instance_routes, quantum_routes,
					    model_routes, apikey_routes,   openai_routes};

	if (n_routes)
		return;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct api_route *rt = tables[t]; rt->method; rt++) {
			if (n_routes == MAX_ROUTES)
				BUG("more than %d routes", MAX_ROUTES);
			route_names[n_routes] = rt->action;
			routes[n_routes++] = rt;
		}
}

static const struct {
	const char *name;
	int bit;
} role_names[] = {
    {"reader", ROLE_READER},	 {"member", ROLE_MEMBER}, {"admin", ROLE_ADMIN},
    {"operator", ROLE_OPERATOR}, {"node", ROLE_NODE},
};

int api_role_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (name && strcmp(name, role_names[i].name) == 0)
			return role_names[i].bit;
	return -1;
}

const char *api_role_name(int role)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (role == role_names[i].bit)
			return role_names[i].name;
	return NULL;
}

int api_own_node(struct api_req *r, struct ciel_err *err)
{
	if (strcmp(r->params[0], r->who.principal) != 0)
		return ciel_err_set(err, CIEL_EPERM, "node %s may not act for node %s",
				    r->who.principal, r->params[0]);
	return 0;
}

int api_check_name(const char *field, const char *v, struct ciel_err *err)
{
	size_t n = v ? strlen(v) : 0;

	if (n < 2 || n > 31)
		return ciel_err_field(err, CIEL_EINVAL, field, "%s: must be 2 to 31 characters",
				      field);
	if (v[0] < 'a' || v[0] > 'z' || v[n - 1] == '-')
		return ciel_err_field(err, CIEL_EINVAL, field,
				      "%s: must start with a-z and not end with '-'", field);
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-'))
			return ciel_err_field(err, CIEL_EINVAL, field,
					      "%s: only a-z, 0-9 and '-' are allowed", field);
	return 0;
}

const char *api_query(const struct api_req *r, const char *name)
{
	return r->query ? json_string_value(json_object_get(r->query, name)) : NULL;
}

int api_query_int(const struct api_req *r, const char *name, int64_t def, int64_t min, int64_t max,
		  int64_t *out, struct ciel_err *err)
{
	const char *v = api_query(r, name);
	char *end;
	long long x;

	*out = def;
	if (!v)
		return 0;
	errno = 0;
	x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < min || x > max)
		return ciel_err_field(err, CIEL_EINVAL, name, "%s: must be an integer %lld..%lld",
				      name, (long long)min, (long long)max);
	*out = x;
	return 0;
}

char *api_dump(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(j);
	return s;
}

void api_reply(struct api_resp *resp, int status, json_t *body)
{
	json_decref(resp->json);
	resp->status = status;
	resp->json = body;
}

void api_resp_release(struct api_resp *resp)
{
	if (resp->stream_free && resp->stream_arg)
		resp->stream_free(resp->stream_arg);
	resp->stream = NULL;
	resp->stream_arg = NULL;
	json_decref(resp->json);
	free(resp->raw);
	resp->json = NULL;
	resp->raw = NULL;
}

void api_req_release(struct api_req *r)
{
	json_decref(r->query);
	r->query = NULL;
	json_decref(r->audit_detail);
	r->audit_detail = NULL;
}

static void reply_error(struct api_req *r, struct api_resp *resp, const struct ciel_err *err)
{
	json_t *e;

	/* OpenAI clients read their own error shape, whatever went wrong */
	if (r->raw_path && strncmp(r->raw_path, "/openai/", 8) == 0) {
		api_reply(resp, ciel_code_http(err->code),
			  openai_error_body(ciel_code_http(err->code), err));
		resp->err = *err;
		return;
	}
	e = json_pack("{s:s, s:s}", "code", ciel_code_name(err->code), "message", err->msg);

	if (e && err->field[0])
		json_object_set_new(e, "field", json_string(err->field));
	if (e && r->reason)
		json_object_set_new(e, "reason", json_string(r->reason));
	if (e)
		json_object_set_new(e, "request_id", json_string(r->request_id));
	api_reply(resp, ciel_code_http(err->code), e ? json_pack("{s:o}", "error", e) : NULL);
	resp->err = *err;
}

/* Percent-decode in into out; -1 on a bad escape, NUL byte or overflow. */
static int url_decode(const char *in, size_t n, char *out, size_t out_size)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = in[i];

		if (c == '%') {
			unsigned char b;

			if (i + 2 >= n)
				return -1;
			if (enc_unhex(in + i + 1, &b, 1) < 0 || b == 0)
				return -1;
			c = (char)b;
			i += 2;
		}
		if (o + 1 >= out_size)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

static int parse_query(struct api_req *r, struct ciel_err *err)
{
	const char *p = r->raw_query;

	r->query = json_object();
	if (!r->query)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	while (p && *p) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		char name[128], value[1024];

		if (end > p) {
			if (url_decode(p, (size_t)((eq ? eq : end) - p), name, sizeof(name)) < 0 ||
			    (eq &&
			     url_decode(eq + 1, (size_t)(end - eq - 1), value, sizeof(value)) < 0))
				return ciel_err_field(err, CIEL_EINVAL, "query",
						      "query: malformed or too long parameter");
			if (!eq)
				value[0] = '\0';
			if (json_object_get(r->query, name))
				return ciel_err_field(err, CIEL_EINVAL, name,
						      "%s: given more than once", name);
			json_object_set_new(r->query, name, json_string(value));
		}
		p = amp ? amp + 1 : end;
	}
	return 0;
}

/* Match decoded path against "/v1/tenants/{}"; captures into r->params. */
static int match(const char *pattern, struct api_req *r, int capture)
{
	const char *p = pattern, *s = r->path;
	int np = 0;

	while (*p && *s) {
		if (p[0] == '{' && p[1] == '}') {
			const char *end = s;

			/*
			 * a capture is one segment, stopping at '/' or, where the
			 * pattern has one, at a ':verb' suffix ("sha256:..." digests
			 * keep their colon)
			 */
			while (*end && *end != '/' && !(*end == ':' && p[2] == ':'))
				end++;
			if (end == s || np >= API_MAX_PARAMS ||
			    (size_t)(end - s) >= sizeof(r->params[0]))
				return 0;
			if (capture) {
				memcpy(r->params[np], s, (size_t)(end - s));
				r->params[np][end - s] = '\0';
			}
			np++;
			s = end;
			p += 2;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	return !*p && !*s;
}

int api_route_is_upload(const char *method, const char *raw_path)
{
	struct api_req r = {0};

	routes_init();
	if (url_decode(raw_path, strlen(raw_path), r.path, sizeof(r.path)) < 0)
		return 0;
	for (size_t i = 0; i < n_routes; i++)
		if ((routes[i]->flags & ROUTE_UPLOAD) && strcmp(routes[i]->method, method) == 0 &&
		    match(routes[i]->pattern, &r, 0))
			return 1;
	return 0;
}

static int route(struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	size_t n_allow = 0;

	r->route = -1;
	for (size_t i = 0; i < n_routes; i++) {
		if (!match(routes[i]->pattern, r, 0))
			continue;
		if (strcmp(routes[i]->method, r->method) == 0) {
			match(routes[i]->pattern, r, 1);
			r->route = (int)i;
			return 0;
		}
		n_allow += (size_t)snprintf(resp->allow + n_allow, sizeof(resp->allow) - n_allow,
					    "%s%s", n_allow ? ", " : "", routes[i]->method);
		if (n_allow >= sizeof(resp->allow))
			n_allow = sizeof(resp->allow) - 1;
	}
	if (n_allow)
		return ciel_err_set(err, CIEL_EMETHOD, "method %s not allowed on %s (allowed: %s)",
				    r->method, r->path, resp->allow);
	return ciel_err_set(err, CIEL_ENOTFOUND, "no such route: %s %s", r->method, r->path);
}

static int unauth(struct api_req *r, struct ciel_err *err, const char *reason, const char *fmt,
		  const char *arg)
{
	r->reason = reason;
	ciel_err_set(err, CIEL_EUNAUTH, fmt, arg);
	snprintf(err->field, sizeof(err->field), "authorization");
	return -1;
}

/*
 * precheck: for an upload whose body has not arrived yet, trust the claimed
 * body hash and leave the replay cache alone; the whole request is checked
 * again, replay included, once the body is in (api_upload_precheck).
 */
static int authenticate(struct api *a, struct api_req *r, int precheck, struct ciel_err *err)
{
	char key[16 + SIGN_KEY_ID_MAX], sig[65], body_sha[65];
	unsigned char *secret = NULL;
	size_t secret_len = 0;
	struct sign_request sr;
	struct sign_auth au;
	json_t *k = NULL;
	time_t date, now = r->received_s ? (time_t)r->received_s : time(NULL);
	int role, ret = -1;

	if (!r->h_authorization || !*r->h_authorization)
		return unauth(r, err, "missing_authorization",
			      "authorization: header missing; sign the request (%s)",
			      "see docs/API.md, or use the ciel CLI");
	if (sign_parse_authorization(r->h_authorization, &au, err) < 0) {
		r->reason = "malformed_authorization";
		return -1;
	}
	snprintf(r->who.key_id, sizeof(r->who.key_id), "%s", au.key_id);
	if (!r->h_date)
		return unauth(r, err, "malformed_authorization", "x-ciel-date: header %s",
			      "missing");
	if (sign_parse_date(r->h_date, &date, err) < 0) {
		r->reason = "malformed_authorization";
		return -1;
	}
	if (date > now + SIGN_MAX_SKEW_S || date < now - SIGN_MAX_SKEW_S)
		return unauth(r, err, "date_skew",
			      "x-ciel-date: %s is more than 5 minutes from the server's clock",
			      r->h_date);
	/*
	 * The replay cache lives in memory, so a restarted cield has forgotten the
	 * signatures it accepted before. Refusing every request dated before this
	 * process started closes that window; an honest client only notices if its
	 * clock lags ours, and then only until its clock passes our start.
	 */
	if ((int64_t)date < a->started_s)
		return unauth(
		    r, err, "date_skew",
		    "x-ciel-date: %s is before this server started; sign the request again",
		    r->h_date);
	if (precheck)
		snprintf(body_sha, sizeof(body_sha), "%.64s",
			 r->h_content_sha256 ? r->h_content_sha256 : "");
	else if (r->body_file)
		snprintf(body_sha, sizeof(body_sha), "%s", r->body_sha256 ? r->body_sha256 : "");
	else
		enc_sha256_hex(r->body, r->body_len, body_sha);
	if (!r->h_content_sha256 || strcmp(r->h_content_sha256, body_sha) != 0)
		return unauth(r, err, "bad_signature",
			      "x-ciel-content-sha256: %s the SHA-256 of the body",
			      r->h_content_sha256 ? "does not match" : "missing; must be");

	snprintf(key, sizeof(key), "/keys/%s", au.key_id);
	k = api_load_json(a, key, NULL, err);
	if (!k) {
		if (err->code != CIEL_ENOTFOUND)
			return -1;
		return unauth(r, err, "unknown_key", "authorization: unknown access key %s",
			      au.key_id);
	}
	/* from here on the claimed key is real: the refusal goes to its tenant's chain */
	snprintf(r->who.tenant, sizeof(r->who.tenant), "%s", jbody_str(k, "tenant", ""));
	if (strcmp(au.scope, r->who.tenant) != 0) {
		r->reason = "scope_mismatch";
		ciel_err_field(err, CIEL_EPERM, "authorization",
			       "authorization: key %s belongs to %s, not to scope %s", au.key_id,
			       r->who.tenant, au.scope);
		goto out;
	}
	if (seal_decrypt(a->master_key, jbody_str(k, "secret", ""), key, &secret, &secret_len,
			 err) < 0) {
		ciel_err_prefix(err, "key %s: ", au.key_id);
		err->code = CIEL_EINTERNAL;
		goto out;
	}
	sr = (struct sign_request){.method = r->method,
				   .path = r->raw_path,
				   .query = r->raw_query,
				   .host = r->host ? r->host : "",
				   .date = r->h_date,
				   .body_sha256_hex = body_sha,
				   .nonce = au.nonce};
	if (sign_compute(&sr, au.scope, secret, secret_len, sig, err) < 0)
		goto out;
	if (!enc_equal(sig, au.signature, 64)) {
		unauth(r, err, "bad_signature",
		       "authorization: signature does not match the request (%s)",
		       "check the secret, the clock and the Host header");
		goto out;
	}
	if (!precheck && sign_replay_check(a->replay, au.signature, date, now, err) < 0) {
		r->reason = err->code == CIEL_EUNAUTH ? "replayed" : NULL;
		goto out;
	}
	role = api_role_parse(jbody_str(k, "role", ""));
	if (role < 0) {
		ciel_err_set(err, CIEL_EINTERNAL, "key %s has an unknown role", au.key_id);
		goto out;
	}
	r->who.role = role;
	snprintf(r->who.principal, sizeof(r->who.principal), "%s", jbody_str(k, "principal", ""));
	ret = 0;
out:
	if (secret) {
		explicit_bzero(secret, secret_len);
		free(secret);
	}
	json_decref(k);
	return ret;
}

/* Which tenant the request acts on; see ROUTE_TENANT. */
static int resolve_tenant(struct api *a, struct api_req *r, const struct api_route *rt,
			  struct ciel_err *err)
{
	const char *q = api_query(r, "tenant");
	char key[96];
	json_t *t;

	if (!(rt->flags & (ROUTE_TENANT | ROUTE_TENANT_OPT))) {
		if (q)
			return ciel_err_field(err, CIEL_EINVAL, "tenant",
					      "tenant: not accepted on this route");
		return 0;
	}
	if (r->who.role != ROLE_OPERATOR) {
		if (q && strcmp(q, r->who.tenant) != 0)
			return ciel_err_field(
			    err, CIEL_EPERM, "tenant",
			    "tenant: only the operator may act on another tenant");
		snprintf(r->tenant, sizeof(r->tenant), "%s", r->who.tenant);
		return 0;
	}
	if (!q) {
		if (rt->flags & ROUTE_TENANT_OPT)
			return 0;
		return ciel_err_field(err, CIEL_EINVAL, "tenant",
				      "tenant: the operator must name a tenant with ?tenant=NAME");
	}
	if (api_check_name("tenant", q, err) < 0)
		return -1;
	snprintf(key, sizeof(key), "/region/tenants/%s", q);
	t = api_load_json(a, key, NULL, err);
	if (!t) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_field(err, CIEL_ENOTFOUND, "tenant", "tenant %s not found", q);
		return -1;
	}
	json_decref(t);
	snprintf(r->tenant, sizeof(r->tenant), "%s", q);
	return 0;
}

static void choose_chain(struct api_req *r)
{
	const char *c = AUDIT_REGION_CHAIN;

	if (r->tenant[0])
		c = r->tenant;
	else if (r->who.tenant[0] && strcmp(r->who.tenant, "region") != 0)
		c = r->who.tenant;
	snprintf(r->chain, sizeof(r->chain), "%s", c);
}

static void fill_event(struct api_req *r, struct audit_event *ev, int status, const char *ecode)
{
	*ev = (struct audit_event){
	    .chain = r->chain,
	    .request_id = r->request_id,
	    .actor_tenant = r->who.tenant,
	    .actor_principal = r->who.principal,
	    .actor_key = r->who.key_id,
	    .action = r->action	      ? r->action
		      : r->route >= 0 ? routes[r->route]->action
				      : "unknown",
	    .target = r->path[0] ? r->path : r->raw_path,
	    .source = r->source,
	    .status = status,
	    .error_code = ecode,
	    .detail = r->audit_detail,
	};
}

int api_commit(struct api *a, struct api_req *r, const struct store_op *ops, size_t n,
	       int ok_status, struct store_txn_result *res, struct ciel_err *err)
{
	struct audit_append app = {.audit = a->audit};
	struct store_txn_result local;

	if (!res)
		res = &local;
	choose_chain(r);
	fill_event(r, &app.ev, ok_status, NULL);
	if (store_txn(a->store, ops, n, audit_hook, &app, res, err) < 0) {
		metrics_audit_event(a->metrics, 0);
		return -1;
	}
	r->audited = 1;
	metrics_audit_event(a->metrics, 1);
	if (!res->conds_ok)
		return ciel_err_set(err, CIEL_ECONFLICT,
				    "the resource changed or exists already; re-read and retry");
	return 0;
}

int api_self_commit(struct api *a, const char *tenant, const char *path, const char *action,
		    const struct store_op *ops, size_t n, struct ciel_err *err)
{
	struct api_req r = {0};
	unsigned char rid[16] = {0};
	int ret;

	r.route = -1;
	r.action = action;
	enc_random(rid, sizeof(rid), NULL);
	enc_hex(rid, sizeof(rid), r.request_id);
	r.who.role = ROLE_OPERATOR;
	snprintf(r.who.tenant, sizeof(r.who.tenant), "region");
	snprintf(r.who.principal, sizeof(r.who.principal), "cield");
	snprintf(r.tenant, sizeof(r.tenant), "%s", tenant);
	snprintf(r.path, sizeof(r.path), "%s", path);
	snprintf(r.source, sizeof(r.source), "cield");
	ret = api_commit(a, &r, ops, n, 200, NULL, err);
	api_req_release(&r);
	return ret;
}

json_t *api_list_json(struct api *a, const char *prefix, struct ciel_err *err)
{
	struct store_list l = {0};
	json_t *items = json_array();

	if (!items || store_list(a->store, prefix, NULL, 0, &l, err) < 0) {
		json_decref(items);
		return NULL;
	}
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loadb(l.items[i].value, l.items[i].value_len, 0, NULL);

		/* only direct children: "/tenants/t/keys/ID", not deeper */
		if (d && !strchr(l.items[i].key + strlen(prefix), '/')) {
			json_object_set_new(d, "revision", json_integer(l.items[i].mod_rev));
			json_array_append_new(items, d);
		} else
			json_decref(d);
	}
	store_list_release(&l);
	return items;
}

json_t *api_list_visible(struct api *a, const char *tenant, const char *kind, struct ciel_err *err)
{
	char prefix[128];
	json_t *items = json_array(), *l;

	if (!items) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		return NULL;
	}
	if (tenant[0]) {
		snprintf(prefix, sizeof(prefix), "/tenants/%s/%s/", tenant, kind);
		if (!(l = api_list_json(a, prefix, err)))
			goto fail;
		json_array_extend(items, l);
		json_decref(l);
	}
	snprintf(prefix, sizeof(prefix), "/region/%s/", kind);
	if (!(l = api_list_json(a, prefix, err)))
		goto fail;
	json_array_extend(items, l);
	json_decref(l);
	return items;
fail:
	json_decref(items);
	return NULL;
}

json_t *api_load_json(struct api *a, const char *key, int64_t *mod_rev, struct ciel_err *err)
{
	struct store_kv kv = {0};
	json_error_t jerr;
	json_t *j;

	if (store_get(a->store, key, &kv, err) < 0)
		return NULL;
	j = json_loadb(kv.value, kv.value_len, 0, &jerr);
	if (!j)
		ciel_err_set(err, CIEL_EINTERNAL, "stored document %s is not JSON", key);
	else if (mod_rev)
		*mod_rev = kv.mod_rev;
	store_kv_release(&kv);
	return j;
}

int api_upload_precheck(struct api *a, struct api_req *r, struct ciel_err *err)
{
	struct api_resp resp = {0};
	const struct api_route *rt;
	int ret = -1;

	if (url_decode(r->raw_path, strlen(r->raw_path), r->path, sizeof(r->path)) < 0 ||
	    parse_query(r, err) < 0 || route(r, &resp, err) < 0)
		goto out;
	rt = routes[r->route];
	if (authenticate(a, r, 1, err) < 0)
		goto out;
	if (!(rt->roles & r->who.role)) {
		ciel_err_set(err, CIEL_EPERM, "%s: role %s may not do %s", r->who.principal,
			     api_role_name(r->who.role), rt->action);
		goto out;
	}
	ret = 0;
out:
	api_resp_release(&resp);
	return ret;
}

void api_handle(struct api *a, struct api_req *r, struct api_resp *resp)
{
	struct ciel_err err = {0};
	const struct api_route *rt = NULL;
	unsigned char rid[16];

	r->start_us = ts_mono_us();
	r->route = -1;
	r->reason = NULL;
	r->audited = 0;
	memset(&r->who, 0, sizeof(r->who));
	r->tenant[0] = '\0';
	r->path[0] = '\0';
	if (enc_random(rid, sizeof(rid), NULL) < 0)
		memset(rid, 0, sizeof(rid));
	enc_hex(rid, sizeof(rid), r->request_id);
	memset(resp, 0, sizeof(*resp));

	if (r->too_big || r->body_len > API_BODY_MAX) {
		if (r->body_file)
			ciel_err_field(&err, CIEL_ETOOBIG, "body", "body: larger than %llu bytes",
				       API_UPLOAD_MAX);
		else
			ciel_err_field(&err, CIEL_ETOOBIG, "body", "body: larger than %u bytes",
				       API_BODY_MAX);
		goto fail;
	}
	if (url_decode(r->raw_path, strlen(r->raw_path), r->path, sizeof(r->path)) < 0 ||
	    r->path[0] != '/') {
		ciel_err_field(&err, CIEL_EINVAL, "path", "path: malformed or too long");
		goto fail;
	}
	if (parse_query(r, &err) < 0)
		goto fail;
	if (route(r, resp, &err) < 0)
		goto fail;
	rt = routes[r->route];
	if (r->refused) {
		/* the HTTP layer refused the upload before its body; this records it */
		err = *r->refused;
		goto fail;
	}
	if (!(rt->flags & ROUTE_UNSIGNED)) {
		/* an OpenAI client's API key, or else the usual signature */
		if ((rt->flags & ROUTE_BEARER) && apikeys_is_bearer(r->h_authorization)) {
			if (apikeys_authenticate(a, r, &err) < 0)
				goto fail;
		} else if (authenticate(a, r, 0, &err) < 0)
			goto fail;
		if (!(rt->roles & r->who.role)) {
			ciel_err_set(&err, CIEL_EPERM, "%s: role %s may not do %s",
				     r->who.principal, api_role_name(r->who.role), rt->action);
			goto fail;
		}
	}
	if (resolve_tenant(a, r, rt, &err) < 0)
		goto fail;
	if (rt->fn(a, r, resp, &err) < 0)
		goto fail;
	goto audit;
fail:
	reply_error(r, resp, &err);
audit:
	if (!r->audited) {
		struct audit_event ev;
		struct ciel_err aerr = {0};

		choose_chain(r);
		fill_event(r, &ev, resp->status,
			   resp->status >= 400 ? ciel_code_name(resp->err.code) : NULL);
		if (audit_record(a->audit, &ev, &aerr) < 0) {
			/* no trail, no answer: the client must not believe it happened */
			log_error("audit write failed request=%s err=%s", r->request_id, aerr.msg);
			metrics_audit_event(a->metrics, 0);
			ciel_err_set(&aerr, CIEL_EUNAVAIL, "audit trail unavailable: %s", aerr.msg);
			api_resp_release(resp);
			r->reason = NULL;
			reply_error(r, resp, &aerr);
		} else {
			metrics_audit_event(a->metrics, 1);
		}
	}
	metrics_observe(a->metrics, r->route, resp->status, ts_mono_us() - r->start_us);
}

int api_open(struct api *a, const char *data_dir, const struct api_config *cfg,
	     struct ciel_err *err)
{
	char path[4096], url[4200];

	memset(a, 0, sizeof(*a));
	routes_init();
	a->cfg = *cfg;
	a->data_dir = strdup(data_dir);
	if (!a->data_dir) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto fail;
	}
	a->started_s = (int64_t)time(NULL);
	snprintf(path, sizeof(path), "%s/master.key", data_dir);
	if (seal_key_load_or_create(path, a->master_key, err) < 0)
		goto fail;
	snprintf(url, sizeof(url), "sqlite:%s/region.db", data_dir);
	if (store_open(&a->store, url, err) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/audit.key", data_dir);
	if (audit_open(&a->audit, a->store, path, 1000, 10, err) < 0)
		goto fail;
	a->replay = sign_replay_new();
	a->metrics = metrics_new(route_names, n_routes);
	if (!a->replay || !a->metrics) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto fail;
	}
	return 0;
fail:
	api_close(a);
	return -1;
}

void api_close(struct api *a)
{
	audit_close(a->audit);
	store_close(a->store);
	sign_replay_free(a->replay);
	metrics_free(a->metrics);
	free(a->data_dir);
	explicit_bzero(a->master_key, sizeof(a->master_key));
	memset(a, 0, sizeof(*a));
}
