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

/*
 * Export streams the chain a page at a time while it is sent, so a chain of
 * millions of events never sits in memory whole. Events appended during the
 * export are included up to the moment the cursor reaches them.
 */
#define EXPORT_PAGE 512

struct export_cursor {
	struct audit *audit;
	char chain[API_NAME_MAX + 1];
	int64_t after; /* seq of the last event read */
	struct dbuf page;
	size_t off; /* bytes of page already sent */
	int done;
};

static int export_line(void *arg, const char *json, size_t len)
{
	struct export_cursor *c = arg;
	json_t *ev = json_loadb(json, len, 0, NULL);

	/* the next page starts after this seq; an event that does not parse ends it */
	if (!ev)
		return 1;
	c->after = jbody_int(ev, "seq", c->after);
	json_decref(ev);
	if (dbuf_add(&c->page, json, len) < 0 || dbuf_add(&c->page, "\n", 1) < 0)
		return 1;
	return 0;
}

static long export_read(void *arg, char *buf, size_t max)
{
	struct export_cursor *c = arg;
	size_t n;

	if (c->off == c->page.len) {
		struct audit_filter f = {.after_seq = c->after, .limit = EXPORT_PAGE};
		int64_t before = c->after;

		if (c->done)
			return 0;
		dbuf_reset(&c->page);
		c->off = 0;
		if (audit_scan(c->audit, c->chain, &f, export_line, c, NULL) < 0 || c->page.nomem)
			return -1;
		if (c->after == before || c->page.len == 0) {
			c->done = 1;
			return 0;
		}
	}
	n = c->page.len - c->off;
	if (n > max)
		n = max;
	memcpy(buf, c->page.buf + c->off, n);
	c->off += n;
	return (long)n;
}

static void export_free(void *arg)
{
	struct export_cursor *c = arg;

	dbuf_release(&c->page);
	free(c);
}

static int h_audit_export(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	struct export_cursor *c = calloc(1, sizeof(*c));

	if (!c)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	c->audit = a->audit;
	snprintf(c->chain, sizeof(c->chain), "%s", chain_of(r));
	/* one page of our own events: bounded by EXPORT_PAGE, not by outside input */
	dbuf_init(&c->page, DBUF_NO_MAX);
	resp->stream = export_read;
	resp->stream_arg = c;
	resp->stream_free = export_free;
	resp->content_type = "application/x-ndjson";
	resp->status = 200;
	return 0;
}

#define AUDIT_ROLES (ROLE_ADMIN | ROLE_READER | ROLE_OPERATOR)
const struct api_route trail_routes[] = {
    {"GET", "/v1/audit", "audit.list", AUDIT_ROLES, ROUTE_TENANT_OPT, h_audit_list},
    {"POST", "/v1/audit:verify", "audit.verify", AUDIT_ROLES, ROUTE_TENANT_OPT, h_audit_verify},
    {"GET", "/v1/audit:export", "audit.export", AUDIT_ROLES, ROUTE_TENANT_OPT, h_audit_export},
    {0},
};
