/*
 * fleet — the region's shape: zones, nodes joining with one-use tokens and
 * heartbeating, plus the unauthenticated health and metrics endpoints.
 *
 * Store layout:
 *   /region/meta                {"name","created","zones":[...]}
 *   /region/zones/<z>           {"name","created"}
 *   /region/jointokens/<id>     {"id","zone","expires","secret_sha256"}
 *   /region/nodes/<n>           {"name","zone","capacity":{...},"joined","last_heartbeat","key_id"}
 * A join token is "<id>.<secret>"; only the secret's SHA-256 is stored, and
 * the join deletes the token in the same commit that creates the node, so a
 * token joins exactly one node. Node state is derived at read time from the
 * age of the last heartbeat, so a dead agent turns NotReady without anyone
 * writing anything.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/metrics.h"
#include "crypto/enc.h"
#include "sched/sched.h"
#include "util/jbody.h"
#include "util/ts.h"

#define TOKEN_TTL_MS (24LL * 3600 * 1000)

static const struct jbody_field capacity_fields[] = {
    {.name = "cpu_millis", .type = JB_INT, .min = 0, .max = 1LL << 32},
    {.name = "memory_bytes", .type = JB_SIZE, .min = 0, .max = 1LL << 52},
    {.name = "disk_bytes", .type = JB_SIZE, .min = 0, .max = 1LL << 60},
    {0},
};

static int h_healthz(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	int64_t rev;

	(void)r;
	if (store_rev(a->store, &rev, err) < 0)
		return -1;
	api_reply(resp, 200, json_pack("{s:s, s:I}", "status", "ok", "revision", (json_int_t)rev));
	return 0;
}

static int h_metrics(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	(void)r;
	resp->raw = metrics_render(a->metrics, &resp->raw_len);
	if (!resp->raw)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	resp->status = 200;
	return 0;
}

static json_t *zone_names(struct api *a, struct ciel_err *err)
{
	struct store_list l = {0};
	json_t *names = json_array();

	if (!names || store_list(a->store, "/region/zones/", NULL, 0, &l, err) < 0) {
		json_decref(names);
		return NULL;
	}
	for (size_t i = 0; i < l.n; i++)
		json_array_append_new(names,
				      json_string(l.items[i].key + strlen("/region/zones/")));
	store_list_release(&l);
	return names;
}

static int h_region(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	char pub[65], now[TS_RFC3339_LEN];
	json_t *zones = zone_names(a, err);
	int64_t rev;

	(void)r;
	if (!zones)
		return -1;
	if (store_rev(a->store, &rev, err) < 0) {
		json_decref(zones);
		return -1;
	}
	audit_public_key_hex(a->audit, pub);
	ts_format(ts_now_ms(), now);
	api_reply(resp, 200,
		  json_pack("{s:s, s:o, s:I, s:s, s:s, s:s, s:b}", "name", a->cfg.region_name,
			    "zones", zones, "revision", (json_int_t)rev, "audit_public_key", pub,
			    "time", now, "store", "sqlite", "tls", !a->cfg.insecure_http));
	return 0;
}

int fleet_node_ready(struct api *a, const json_t *node)
{
	int64_t last;

	if (ts_parse(jbody_str(node, "last_heartbeat", ""), &last) < 0)
		return 0;
	return ts_now_ms() - last <= (int64_t)a->cfg.node_timeout_s * 1000;
}

static const char *node_state(struct api *a, const json_t *node)
{
	return fleet_node_ready(a, node) ? "Ready" : "NotReady";
}

json_t *fleet_nodes(struct api *a, struct ciel_err *err)
{
	struct store_list l = {0};
	json_t *items = json_array();

	if (!items || store_list(a->store, "/region/nodes/", NULL, 0, &l, err) < 0) {
		json_decref(items);
		return NULL;
	}
	for (size_t i = 0; i < l.n; i++) {
		json_t *n = json_loadb(l.items[i].value, l.items[i].value_len, 0, NULL);

		if (!n)
			continue;
		json_object_del(n, "key_id");
		json_object_set_new(n, "state", json_string(node_state(a, n)));
		json_array_append_new(items, n);
	}
	store_list_release(&l);
	return items;
}

static int h_zone_list(struct api *a, struct api_req *r, struct api_resp *resp,
		       struct ciel_err *err)
{
	json_t *zones = zone_names(a, err), *nodes, *items, *z, *n;
	size_t i, j;

	(void)r;
	if (!zones)
		return -1;
	nodes = fleet_nodes(a, err);
	items = json_array();
	if (!nodes || !items) {
		json_decref(zones);
		json_decref(nodes);
		json_decref(items);
		return -1;
	}
	json_array_foreach(zones, i, z)
	{
		int total = 0, ready = 0;

		json_array_foreach(nodes, j, n)
		{
			if (strcmp(jbody_str(n, "zone", ""), json_string_value(z)) != 0)
				continue;
			total++;
			ready += strcmp(jbody_str(n, "state", ""), "Ready") == 0;
		}
		json_array_append_new(items, json_pack("{s:O, s:i, s:i, s:s}", "name", z, "nodes",
						       total, "ready_nodes", ready, "state",
						       ready ? "Available" : "NoNodes"));
	}
	json_decref(zones);
	json_decref(nodes);
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

static int h_node_list(struct api *a, struct api_req *r, struct api_resp *resp,
		       struct ciel_err *err)
{
	json_t *nodes = fleet_nodes(a, err);

	(void)r;
	if (!nodes)
		return -1;
	api_reply(resp, 200, json_pack("{s:o}", "items", nodes));
	return 0;
}

static int zone_exists(struct api *a, const char *zone, struct ciel_err *err)
{
	char key[128];
	json_t *z;

	if (api_check_name("zone", zone, err) < 0)
		return -1;
	snprintf(key, sizeof(key), "/region/zones/%s", zone);
	z = api_load_json(a, key, NULL, err);
	if (!z) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_field(err, CIEL_EINVAL, "zone", "zone: no zone named %s", zone);
		return -1;
	}
	json_decref(z);
	return 0;
}

static int h_token_create(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "zone", .type = JB_STRING, .required = 1, .max_len = 64},
	    {0},
	};
	char id[24], key[64], sha[65], expires[TS_RFC3339_LEN], *secret = NULL, *val = NULL,
								*token = NULL;
	unsigned char raw[32];
	struct store_op op;
	json_t *body;
	const char *zone;
	int ret = -1;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	zone = jbody_str(body, "zone", "");
	if (zone_exists(a, zone, err) < 0)
		goto out;
	if (enc_random_id("JT", 16, id, sizeof(id), err) < 0 ||
	    enc_random(raw, sizeof(raw), err) < 0)
		goto out;
	secret = enc_b64url(raw, sizeof(raw));
	if (!secret || asprintf(&token, "%s.%s", id, secret) < 0) {
		token = NULL;
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	enc_sha256_hex(secret, strlen(secret), sha);
	ts_format(ts_now_ms() + TOKEN_TTL_MS, expires);
	val = api_dump(json_pack("{s:s, s:s, s:s, s:s}", "id", id, "zone", zone, "expires", expires,
				 "secret_sha256", sha));
	snprintf(key, sizeof(key), "/region/jointokens/%s", id);
	op = (struct store_op){STORE_PUT, key, val, STORE_ABSENT};
	if (!val || api_commit(a, r, &op, 1, 201, NULL, err) < 0)
		goto out;
	api_reply(resp, 201,
		  json_pack("{s:s, s:s, s:s}", "token", token, "zone", zone, "expires", expires));
	ret = 0;
out:
	free(secret);
	free(token);
	free(val);
	json_decref(body);
	return ret;
}

static int check_node_name(const char *v, struct ciel_err *err)
{
	size_t n = strlen(v);

	if (n < 1 || n > 63)
		return ciel_err_field(err, CIEL_EINVAL, "name", "name: must be 1 to 63 characters");
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') ||
		      (v[i] == '-' && i > 0)))
			return ciel_err_field(err, CIEL_EINVAL, "name",
					      "name: only a-z, 0-9 and '-' (not first)");
	return 0;
}

static int h_node_join(struct api *a, struct api_req *r, struct api_resp *resp,
		       struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "token", .type = JB_STRING, .required = 1, .max_len = 128},
	    {.name = "name", .type = JB_STRING, .required = 1, .max_len = 63},
	    {.name = "zone", .type = JB_STRING, .required = 1, .max_len = 64},
	    {.name = "capacity", .type = JB_OBJECT, .fields = capacity_fields},
	    {0},
	};
	char tkey[96], nkey[96], sha[65], now[TS_RFC3339_LEN], *nval = NULL;
	const char *token, *name, *zone, *dot;
	struct iam_key_ops ko = {0};
	struct store_op ops[4];
	json_t *body, *tok = NULL, *key = NULL, *cap;
	int64_t trev, expires;
	size_t n = 0;
	int ret = -1;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	token = jbody_str(body, "token", "");
	name = jbody_str(body, "name", "");
	zone = jbody_str(body, "zone", "");
	if (check_node_name(name, err) < 0)
		goto out;
	dot = strchr(token, '.');
	if (!dot || dot - token > 40) {
		ciel_err_field(err, CIEL_EUNAUTH, "token", "token: malformed join token");
		goto out;
	}
	snprintf(tkey, sizeof(tkey), "/region/jointokens/%.*s", (int)(dot - token), token);
	tok = api_load_json(a, tkey, &trev, err);
	enc_sha256_hex(dot + 1, strlen(dot + 1), sha);
	if (!tok || !enc_equal(sha, jbody_str(tok, "secret_sha256", ""), 64) ||
	    ts_parse(jbody_str(tok, "expires", ""), &expires) < 0 || expires < ts_now_ms()) {
		ciel_err_field(err, CIEL_EUNAUTH, "token",
			       "token: unknown, used or expired join token; ask the operator for "
			       "a new one (ciel node token create --zone ZONE)");
		goto out;
	}
	if (strcmp(jbody_str(tok, "zone", ""), zone) != 0) {
		ciel_err_field(err, CIEL_EINVAL, "zone", "zone: this token is for zone %s",
			       jbody_str(tok, "zone", ""));
		goto out;
	}
	snprintf(r->who.tenant, sizeof(r->who.tenant), "region");
	snprintf(r->who.principal, sizeof(r->who.principal), "%s", name);
	if (iam_new_key(a, "region", name, "node", ops, &n, &ko, &key, err) < 0)
		goto out;
	ts_format(ts_now_ms(), now);
	cap = json_object_get(body, "capacity");
	nval = api_dump(json_pack("{s:s, s:s, s:o, s:s, s:s, s:s}", "name", name, "zone", zone,
				  "capacity", cap ? json_incref(cap) : json_object(), "joined", now,
				  "last_heartbeat", now, "key_id", jbody_str(key, "id", "")));
	snprintf(nkey, sizeof(nkey), "/region/nodes/%s", name);
	ops[n++] = (struct store_op){STORE_PUT, nkey, nval, STORE_ABSENT};
	ops[n++] = (struct store_op){STORE_DELETE, tkey, NULL, trev};
	if (!nval) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (api_commit(a, r, ops, n, 201, NULL, err) < 0) {
		if (err->code == CIEL_ECONFLICT)
			ciel_err_field(err, CIEL_EEXIST, "name",
				       "node %s already joined (or the token was just used)", name);
		goto out;
	}
	json_object_del(key, "principal");
	json_object_del(key, "tenant");
	json_object_set_new(key, "scope", json_string("region"));
	api_reply(resp, 201, json_pack("{s:s, s:s, s:O}", "node", name, "zone", zone, "key", key));
	ret = 0;
out:
	free(nval);
	iam_key_ops_release(&ko);
	json_decref(key);
	json_decref(tok);
	json_decref(body);
	return ret;
}

static int h_node_heartbeat(struct api *a, struct api_req *r, struct api_resp *resp,
			    struct ciel_err *err)
{
	static const struct jbody_field fields[] = {
	    {.name = "capacity", .type = JB_OBJECT, .fields = capacity_fields},
	    {.name = "agent_url", .type = JB_STRING, .max_len = 200},
	    {0},
	};
	const char *name = r->params[0], *url;
	char key[96], now[TS_RFC3339_LEN], *val = NULL;
	struct store_op op;
	json_t *body, *node = NULL, *cap;
	int64_t rev;
	int ret = -1;

	if (jbody_parse(r->body, r->body_len, fields, &body, err) < 0)
		return -1;
	if (strcmp(name, r->who.principal) != 0) {
		ciel_err_set(err, CIEL_EPERM, "node %s may not heartbeat for %s", r->who.principal,
			     name);
		goto out;
	}
	snprintf(key, sizeof(key), "/region/nodes/%.64s", name);
	node = api_load_json(a, key, &rev, err);
	if (!node)
		goto out;
	ts_format(ts_now_ms(), now);
	json_object_set_new(node, "last_heartbeat", json_string(now));
	cap = json_object_get(body, "capacity");
	if (cap)
		json_object_set(node, "capacity", cap);
	url = jbody_str(body, "agent_url", NULL);
	if (url && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		ciel_err_field(err, CIEL_EINVAL, "agent_url", "agent_url: must be an http(s) URL");
		goto out;
	}
	if (url)
		json_object_set_new(node, "agent_url", json_string(url));
	val = json_dumps(node, JSON_COMPACT | JSON_SORT_KEYS);
	op = (struct store_op){STORE_PUT, key, val, rev};
	if (!val || api_commit(a, r, &op, 1, 200, NULL, err) < 0)
		goto out;
	api_reply(resp, 200, json_pack("{s:s, s:s}", "state", "Ready", "time", now));
	ret = 0;
out:
	free(val);
	json_decref(node);
	json_decref(body);
	return ret;
}

const struct api_route fleet_routes[] = {
    {"GET", "/healthz", "health", 0, ROUTE_UNSIGNED, h_healthz},
    {"GET", "/metrics", "metrics", 0, ROUTE_UNSIGNED, h_metrics},
    {"GET", "/v1/region", "region.show", ROLE_ANY | ROLE_NODE, 0, h_region},
    {"GET", "/v1/zones", "zone.list", ROLE_ANY, 0, h_zone_list},
    {"GET", "/v1/nodes", "node.list", ROLE_OPERATOR, 0, h_node_list},
    {"POST", "/v1/nodes/tokens", "node.token.create", ROLE_OPERATOR, 0, h_token_create},
    {"POST", "/v1/nodes:join", "node.join", 0, ROUTE_UNSIGNED, h_node_join},
    {"POST", "/v1/nodes/{}:heartbeat", "node.heartbeat", ROLE_NODE, 0, h_node_heartbeat},
    {0},
};

void fleet_snapshot_release(struct fleet_snapshot *s)
{
	json_decref(s->nodes);
	free(s->sn);
	memset(s, 0, sizeof(*s));
}

int fleet_snapshot_take(struct api *a, const char *tenant, struct fleet_snapshot *s,
			struct ciel_err *err)
{
	struct store_list l = {0};
	json_t *node;
	size_t i;

	memset(s, 0, sizeof(*s));
	s->nodes = fleet_nodes(a, err);
	if (!s->nodes)
		return -1;
	s->sn = calloc(json_array_size(s->nodes) + 1, sizeof(*s->sn));
	if (!s->sn) {
		fleet_snapshot_release(s);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	json_array_foreach(s->nodes, i, node)
	{
		const json_t *cap = json_object_get(node, "capacity");

		s->sn[i] = (struct sched_node){
		    .name = jbody_str(node, "name", ""),
		    .zone = jbody_str(node, "zone", ""),
		    .ready = strcmp(jbody_str(node, "state", ""), "Ready") == 0,
		    .cap_cpu_millis = jbody_int(cap, "cpu_millis", 0),
		    .cap_memory_bytes = jbody_int(cap, "memory_bytes", 0),
		};
	}
	s->n = json_array_size(s->nodes);
	if (store_list(a->store, "/region/placements/", NULL, 0, &l, err) < 0) {
		fleet_snapshot_release(s);
		return -1;
	}
	for (size_t k = 0; k < l.n; k++) {
		/* /region/placements/<node>/<tenant>/<name> */
		const char *rest = l.items[k].key + strlen("/region/placements/");
		const char *slash = strchr(rest, '/');
		json_t *p;

		if (!slash)
			continue;
		for (i = 0; i < s->n; i++)
			if (strlen(s->sn[i].name) == (size_t)(slash - rest) &&
			    strncmp(s->sn[i].name, rest, (size_t)(slash - rest)) == 0)
				break;
		if (i == s->n)
			continue;
		p = json_loadb(l.items[k].value, l.items[k].value_len, 0, NULL);
		if (!p)
			continue;
		s->sn[i].used_cpu_millis += jbody_int(p, "cpu_millis", 0);
		s->sn[i].used_memory_bytes += jbody_int(p, "memory_bytes", 0);
		if (strcmp(jbody_str(p, "tenant", ""), tenant) == 0)
			s->sn[i].tenant_instances++;
		json_decref(p);
	}
	store_list_release(&l);
	return 0;
}
