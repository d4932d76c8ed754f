/*
 * audit — `ciel audit list|verify|export`: read, check and take away a
 * tenant's audit trail (the operator's own region chain without --tenant).
 * verify's exit code is the verdict, so scripts and cron can act on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util/ts.h"

/* "1h", "30m", "45s", "2d" before now, or an RFC 3339 time, as RFC 3339. */
static int parse_since(const char *s, char out[TS_RFC3339_LEN])
{
	char *end;
	long long n;
	int64_t ms, unit;

	if (ts_parse(s, &ms) == 0) {
		ts_format(ms, out);
		return 0;
	}
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || end == s || n < 0 || end[0] == '\0' || end[1] != '\0')
		return -1;
	switch (end[0]) {
	case 's':
		unit = 1000;
		break;
	case 'm':
		unit = 60 * 1000;
		break;
	case 'h':
		unit = 3600 * 1000;
		break;
	case 'd':
		unit = 86400 * 1000;
		break;
	default:
		return -1;
	}
	if (n > INT64_MAX / unit / 2)
		return -1;
	ms = ts_now_ms() - n * unit;
	ts_format(ms < 0 ? 0 : ms, out);
	return 0;
}

static int parse_positive(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno || end == s || *end || *out < 0 ? -1 : 0;
}

/* Who acted: "principal@tenant", else the key id claimed, else "-". */
static void fmt_actor(const json_t *ev, char *buf, size_t size)
{
	const json_t *a = json_object_get(ev, "actor");
	char p[128], t[128], k[128];

	if (json_is_string(a)) {
		snprintf(buf, size, "%s", json_string_value(a));
		return;
	}
	if (json_is_object(a)) {
		fmt_member(a, "principal", p, sizeof(p));
		fmt_member(a, "tenant", t, sizeof(t));
		fmt_member(a, "key", k, sizeof(k));
	} else {
		fmt_member(ev, "actor_principal", p, sizeof(p));
		fmt_member(ev, "actor_tenant", t, sizeof(t));
		fmt_member(ev, "actor_key", k, sizeof(k));
	}
	if (p[0])
		snprintf(buf, size, "%s@%s", p, t[0] ? t : "?");
	else if (k[0])
		snprintf(buf, size, "key:%s", k);
	else
		snprintf(buf, size, "-");
}

static void audit_row(const json_t *ev, struct cells *c)
{
	const json_t *tm = json_object_get(ev, "time");

	if (!tm)
		tm = json_object_get(ev, "time_ms");
	fmt_member(ev, "seq", c->s[0], sizeof(c->s[0]));
	fmt_time(tm, c->s[1], sizeof(c->s[1]));
	fmt_actor(ev, c->s[2], sizeof(c->s[2]));
	fmt_member(ev, "action", c->s[3], sizeof(c->s[3]));
	fmt_member(ev, "target", c->s[4], sizeof(c->s[4]));
	fmt_member(ev, "source", c->s[5], sizeof(c->s[5]));
	fmt_member(ev, "status", c->s[6], sizeof(c->s[6]));
}

static int audit_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "audit list",
	    .summary = "List audit events of the tenant's chain (the region chain for the "
		       "operator without --tenant), oldest first.",
	    .example = "  ciel audit list --since 1h\n"
		       "  ciel audit list --action tenant. --limit 20\n"
		       "  ciel --tenant acme audit list --after 120",
	};
	static const char *const hdr[] = {"SEQ",    "TIME",   "ACTOR", "ACTION",
					  "TARGET", "SOURCE", "STATUS"};
	const char *since = NULL, *action = NULL, *limit = NULL, *after = NULL;
	const struct opt opts[] = {
	    {"since", "TIME", "events at or after TIME: RFC 3339, or an age like 1h, 30m, 2d",
	     &since, NULL},
	    {"action", "ACTION", "only this action (\"tenant.\" matches a prefix)", &action, NULL},
	    {"limit", "N", "at most N events", &limit, NULL},
	    {"after", "SEQ", "events after sequence number SEQ (for paging)", &after, NULL},
	    {0},
	};
	struct client_response resp = {0};
	struct table *t = NULL;
	struct cells *cb = NULL;
	char q[1024], ts[TS_RFC3339_LEN], next[32];
	long long n;
	const json_t *ev;
	size_t i;
	int r;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if (since) {
		if (parse_since(since, ts) < 0)
			return cli_usage_error(&u,
					       "--since: '%s' is neither RFC 3339 nor an age "
					       "like 1h or 30m",
					       since);
		client_query_add(q, sizeof(q), "since", ts);
	}
	if (action && client_query_add(q, sizeof(q), "action", action) < 0)
		return cli_usage_error(&u, "--action: too long");
	if (limit) {
		if (parse_positive(limit, &n) < 0 || n == 0)
			return cli_usage_error(&u, "--limit: '%s' is not a positive number", limit);
		client_query_add(q, sizeof(q), "limit", limit);
	}
	if (after) {
		if (parse_positive(after, &n) < 0)
			return cli_usage_error(&u, "--after: '%s' is not a sequence number", after);
		client_query_add(q, sizeof(q), "after", after);
	}
	if ((r = cli_call(cli, "GET", "/v1/audit", q, NULL, &resp)) != 0)
		return r;
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
		goto out;
	}
	t = table_new(7, hdr);
	cb = calloc(1, sizeof(*cb));
	if (!t || !cb) {
		r = cli_fail("out_of_memory", "out of memory");
		goto out;
	}
	json_array_foreach(cli_items(resp.json), i, ev)
	{
		const char *row[7];

		for (int c = 0; c < 7; c++)
			row[c] = cb->s[c];
		audit_row(ev, cb);
		table_add(t, row);
	}
	table_print(t, stdout, "no events");
	fmt_member(resp.json, "next_after", next, sizeof(next));
	/* a full page means there may be more; the server's page is 100 events
	 * unless --limit says otherwise */
	if (next[0] && json_array_size(cli_items(resp.json)) >= (limit ? (size_t)n : 100))
		fprintf(stderr, "more events may follow: add --after %s\n", next);
out:
	free(cb);
	table_free(t);
	client_response_release(&resp);
	return r;
}

static int audit_verify(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "audit verify",
	    .summary = "Recompute the audit chain and check every checkpoint signature. "
		       "Exit 0 if intact, 1 if broken.",
	    .example = "  ciel audit verify\n  ciel --tenant acme audit verify",
	};
	struct client_response resp = {0};
	char q[256], chain[128], events[32], cps[32], bad[32], reason[512];
	bool ok;
	int r;

	r = cli_parse(&u, NULL, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if ((r = cli_call(cli, "POST", "/v1/audit:verify", q, NULL, &resp)) != 0)
		return r;
	ok = json_is_true(json_object_get(resp.json, "ok"));
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
	} else {
		fmt_member(resp.json, "chain", chain, sizeof(chain));
		fmt_member(resp.json, "events", events, sizeof(events));
		fmt_member(resp.json, "checkpoints", cps, sizeof(cps));
		fmt_member(resp.json, "first_bad_seq", bad, sizeof(bad));
		fmt_member(resp.json, "reason", reason, sizeof(reason));
		if (ok)
			printf("audit chain %s: ok, %s events, %s checkpoints\n", chain,
			       events[0] ? events : "0", cps[0] ? cps : "0");
		else
			printf("audit chain %s: BROKEN at seq %s: %s\n", chain, bad[0] ? bad : "?",
			       reason[0] ? reason : "no reason given");
	}
	client_response_release(&resp);
	return ok ? EXIT_OK : EXIT_FAIL;
}

static int audit_export(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "audit export",
	    .summary = "Export the whole audit chain as JSON lines (one event per line), to "
		       "stdout or a file.",
	    .example = "  ciel audit export --file acme-audit.ndjson\n"
		       "  ciel audit export | jq .action",
	};
	const char *file = NULL;
	const struct opt opts[] = {
	    {"file", "FILE", "write to FILE (created 0600) instead of stdout", &file, NULL},
	    {0},
	};
	struct client_request_opts ro = {.sink = stdout};
	struct client_response resp = {0};
	struct client *c;
	char q[256];
	FILE *f = NULL;
	int r, fd;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	c = cli_client(cli, true);
	if (!c)
		return EXIT_FAIL;
	if (file) {
		/* the trail says who did what: not for other users of this machine */
		fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || !(f = fdopen(fd, "w"))) {
			r = cli_fail("io_error", "%s: %s", file, strerror(errno));
			if (fd >= 0)
				close(fd);
			return r;
		}
		ro.sink = f;
	}
	cli_query_init(cli, q, sizeof(q));
	r = cli_call_with(cli, c, "GET", "/v1/audit:export", q, NULL, &ro, &resp);
	if (f && fclose(f) != 0 && r == 0)
		r = cli_fail("io_error", "%s: %s", file, strerror(errno));
	if (r) {
		if (file)
			unlink(file);
		return r;
	}
	if (!file)
		fflush(stdout);
	else
		fprintf(stderr, "exported %zu bytes to %s\n", ro.sink_bytes, file);
	client_response_release(&resp);
	return EXIT_OK;
}

const struct group group_audit = {
    .name = "audit",
    .summary = "list, verify and export the audit trail",
    .example = "  ciel audit list --since 1h\n  ciel audit verify\n"
	       "  ciel audit export --file trail.ndjson",
    .verbs =
	(const struct verb[]){
	    {"list", "list audit events", audit_list},
	    {"verify", "verify the hash chain and checkpoint signatures", audit_verify},
	    {"export", "export the chain as JSON lines", audit_export},
	    {0},
	},
};
