/*
 * trail — the audit trail over the API: list, verify, export.
 * A tenant's admins and readers see their tenant's chain; the operator sees
 * the region chain, or a tenant's with ?tenant=. Each of these reads is
 * itself an event, appended after the read.
 */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dbuf.h"
#include "util/jbody.h"
#include "util/ts.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000

static const char *chain_of(const struct api_req *r)
{
	return r->tenant[0] ? r->tenant : AUDIT_REGION_CHAIN;
}

static int int_param(const struct api_req *r, const char *name, int64_t def, int64_t min,
		     int64_t max, int64_t *out, struct ciel_err *err)
{
	const char *v = api_query(r, name);
	char *end;
	long long n;

	*out = def;
	if (!v)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (!*v || *end || errno || n < min || n > max)
		return ciel_err_field(err, CIEL_EINVAL, name,
				      "%s: must be an integer from %lld to %lld", name,
				      (long long)min, (long long)max);
	*out = n;
	return 0;
}

static int filter_of(const struct api_req *r, struct audit_filter *f, struct ciel_err *err)
{
	const char *since = api_query(r, "since"), *action = api_query(r, "action");
	int64_t after, limit;

	memset(f, 0, sizeof(*f));
	if (since && ts_parse(since, &f->since_ms) < 0)
		return ciel_err_field(err, CIEL_EINVAL, "since",
				      "since: must be an RFC 3339 time like 2026-11-23T10:00:00Z");
	if (action && (strlen(action) == 0 || strlen(action) > 64))
		return ciel_err_field(err, CIEL_EINVAL, "action", "action: 1 to 64 characters");
	if (int_param(r, "after", 0, 0, INT64_MAX, &after, err) < 0 ||
	    int_param(r, "limit", LIST_DEFAULT, 1, LIST_MAX, &limit, err) < 0)
		return -1;
	f->action = action;
	f->after_seq = after;
	f->limit = (size_t)limit;
	return 0;
}

static int collect(void *arg, const char *json, size_t len)
{
	json_t *ev = json_loadb(json, len, 0, NULL);

	if (ev)
		json_array_append_new(arg, ev);
	return 0;
}

static int h_audit_list(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	struct audit_filter f;
	json_t *items, *last;

	if (filter_of(r, &f, err) < 0)
		return -1;
	items = json_array();
	if (!items)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (audit_scan(a->audit, chain_of(r), &f, collect, items, err) < 0) {
		json_decref(items);
		return -1;
	}
	last = json_array_get(items, json_array_size(items) - 1);
	api_reply(resp, 200,
		  json_pack("{s:s, s:o, s:I}", "chain", chain_of(r), "items", items, "next_after",
			    (json_int_t)(last ? jbody_int(last, "seq", 0) : f.after_seq)));
	return 0;
}

static int h_audit_verify(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	static const struct jbody_field none[] = {{0}};
	struct audit_verify_result v;
	json_t *body;

	if (jbody_parse(r->body, r->body_len, none, &body, err) < 0)
		return -1;
	json_decref(body);
	if (audit_verify(a->audit, chain_of(r), &v, err) < 0)
		return -1;
	api_reply(resp, 200,
		  json_pack("{s:s, s:b, s:I, s:I, s:I, s:s}", "chain", chain_of(r), "ok", v.ok,
			    "events", (json_int_t)v.events, "checkpoints",
			    (json_int_t)v.checkpoints, "first_bad_seq", (json_int_t)v.first_bad_seq,
			    "reason", v.reason));
	return 0;
}

/* Non-zero stops the scan; the failure stays in the dbuf for the handler. */
static int append_line(void *arg, const char *json, size_t len)
{
	return dbuf_add(arg, json, len) < 0 || dbuf_add(arg, "\n", 1) < 0;
}

static int h_audit_export(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	struct audit_filter f = {0};
	struct dbuf o;

	/* our own chain, not outside input: bounded by what was written, not by a cap */
	dbuf_init(&o, DBUF_NO_MAX);
	if (audit_scan(a->audit, chain_of(r), &f, append_line, &o, err) < 0 || o.nomem) {
		int oom = o.nomem;

		dbuf_release(&o);
		return oom ? ciel_err_set(err, CIEL_ENOMEM, "out of memory") : -1;
	}
	resp->raw = dbuf_detach(&o, &resp->raw_len);
	resp->content_type = "application/x-ndjson";
	resp->status = 200;
	return resp->raw ? 0 : ciel_err_set(err, CIEL_ENOMEM, "out of memory");
}

#define AUDIT_ROLES (ROLE_ADMIN | ROLE_READER | ROLE_OPERATOR)
const struct api_route trail_routes[] = {
    {"GET", "/v1/audit", "audit.list", AUDIT_ROLES, ROUTE_TENANT_OPT, h_audit_list},
    {"POST", "/v1/audit:verify", "audit.verify", AUDIT_ROLES, ROUTE_TENANT_OPT, h_audit_verify},
    {"GET", "/v1/audit:export", "audit.export", AUDIT_ROLES, ROUTE_TENANT_OPT, h_audit_export},
    {0},
};
