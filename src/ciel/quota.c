/*
 * quota — `ciel quota show|set`: a tenant's limits and usage. Any key of the
 * tenant may read them; only the operator sets them (--tenant NAME).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/jbody.h"

static void quota_cell(const json_t *obj, const char *name, bool bytes, char *buf, size_t size)
{
	const json_t *v = json_object_get(obj, name);

	if (!json_is_number(v))
		snprintf(buf, size, "-");
	else if (bytes)
		fmt_bytes((int64_t)json_number_value(v), buf, size);
	else if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		snprintf(buf, size, "%g", json_real_value(v)); /* fractional vCPUs */
}

static int quota_print(struct cli *cli, const json_t *q)
{
	static const char *const hdr[] = {"RESOURCE", "LIMIT", "USED"};
	static const struct {
		const char *label, *name;
		bool bytes;
	} rows[] = {
	    {"instances", "instances", false},
	    {"vcpus", "vcpus", false},
	    {"memory", "memory_bytes", true},
	    {"quantum qubits", "quantum_max_qubits", false},
	    {"quantum shots", "quantum_max_shots", false},
	    {"quantum jobs", "quantum_max_jobs", false},
	    {"llm tokens/minute", "llm_tokens_per_minute", false},
	};
	const json_t *limits = json_object_get(q, "limits"), *usage = json_object_get(q, "usage");
	struct table *t;
	char tenant[128];

	if (cli->output == OUT_JSON) {
		out_json(q);
		return EXIT_OK;
	}
	t = table_new(3, hdr);
	if (!t)
		return cli_fail("out_of_memory", "out of memory");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char lim[64], used[64];
		const char *row[] = {rows[i].label, lim, used};

		quota_cell(limits, rows[i].name, rows[i].bytes, lim, sizeof(lim));
		quota_cell(usage, rows[i].name, rows[i].bytes, used, sizeof(used));
		table_add(t, row);
	}
	printf("tenant: %s\n", fmt_member(q, "tenant", tenant, sizeof(tenant)));
	table_print(t, stdout, NULL);
	table_free(t);
	return EXIT_OK;
}

static int quota_show(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quota show",
	    .summary = "Show the tenant's quota: limits and current usage.",
	    .example = "  ciel quota show\n  ciel --tenant acme quota show",
	};
	struct client_response resp = {0};
	char q[256];
	int r;

	r = cli_parse(&u, NULL, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if ((r = cli_call(cli, "GET", "/v1/quota", q, NULL, &resp)) != 0)
		return r;
	r = quota_print(cli, resp.json);
	client_response_release(&resp);
	return r;
}

static int parse_count(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		return -1;
	*out = v;
	return 0;
}

static int quota_set(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quota set",
	    .summary = "Set a tenant's limits (operator, with --tenant). Limits not named "
		       "are kept.",
	    .example = "  ciel --tenant acme quota set --instances 20 --vcpus 16 --memory 32G\n"
		       "  ciel --tenant acme quota set --quantum-qubits 30 --quantum-jobs 8\n"
		       "  ciel --tenant acme quota set --llm-tpm 200000",
	};
	const char *counts[6] = {0}, *mem = NULL;
	/* flag → field, for the limits that are plain counts (same order as counts[]) */
	static const char *const count_fields[] = {"instances",		 "vcpus",
						   "quantum_max_qubits", "quantum_max_shots",
						   "quantum_max_jobs",	 "llm_tokens_per_minute"};
	const struct opt opts[] = {
	    {"instances", "N", "maximum number of instances", &counts[0], NULL},
	    {"vcpus", "N", "maximum number of vCPUs", &counts[1], NULL},
	    {"memory", "SIZE", "maximum memory, like 16G or 512M (powers of 1024)", &mem, NULL},
	    {"quantum-qubits", "N", "most qubits one quantum job may simulate", &counts[2], NULL},
	    {"quantum-shots", "N", "most shots per quantum job", &counts[3], NULL},
	    {"quantum-jobs", "N", "quantum jobs queued or running at once", &counts[4], NULL},
	    {"llm-tpm", "N", "LLM tokens (prompt + completion) per minute, over all models",
	     &counts[5], NULL},
	    {0},
	};
	struct client_response resp = {0};
	json_t *body;
	int64_t v;
	char q[256];
	int r, any;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	any = mem != NULL;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		any |= counts[i] != NULL;
	if (!any)
		return cli_usage_error(&u, "name at least one of --instances, --vcpus, --memory, "
					   "--quantum-qubits, --quantum-shots, --quantum-jobs, "
					   "--llm-tpm");
	body = json_object();
	if (!body)
		return cli_fail("out_of_memory", "out of memory");
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		if (!counts[i])
			continue;
		if (parse_count(counts[i], &v) < 0) {
			json_decref(body);
			return cli_usage_error(&u, "--%s: '%s' is not a count",
					       opts[i < 2 ? i : i + 1].name, counts[i]);
		}
		json_object_set_new(body, count_fields[i], json_integer(v));
	}
	if (mem) {
		if (jbody_parse_size(mem, &v) < 0) {
			json_decref(body);
			return cli_usage_error(&u, "--memory: '%s' is not a size like 16G or 512M",
					       mem);
		}
		json_object_set_new(body, "memory_bytes", json_integer(v));
	}
	cli_query_init(cli, q, sizeof(q));
	r = cli_call(cli, "PUT", "/v1/quota", q, body, &resp);
	json_decref(body);
	if (r)
		return r;
	r = quota_print(cli, resp.json);
	client_response_release(&resp);
	return r;
}

const struct group group_quota = {
    .name = "quota",
    .summary = "show and set a tenant's quota",
    .example = "  ciel quota show\n  ciel --tenant acme quota set --memory 32G",
    .verbs =
	(const struct verb[]){
	    {"show", "show limits and usage", quota_show},
	    {"set", "set limits (operator)", quota_set},
	    {0},
	},
};
