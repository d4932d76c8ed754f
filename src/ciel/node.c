/*
 * node — `ciel node list` and `ciel node token create` (operator): the
 * machines running ciel-agent, and the one-use tokens that let a new agent
 * join a zone.
 */
#include <stdio.h>

#include "cli.h"

static void node_row(const json_t *it, struct cells *c)
{
	const json_t *cap = json_object_get(it, "capacity");

	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "zone", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "state", c->s[2], sizeof(c->s[2]));
	if (json_is_integer(json_object_get(cap, "cpu_millis")))
		fmt_cpu(json_integer_value(json_object_get(cap, "cpu_millis")), c->s[3],
			sizeof(c->s[3]));
	if (json_is_integer(json_object_get(cap, "memory_bytes")))
		fmt_bytes(json_integer_value(json_object_get(cap, "memory_bytes")), c->s[4],
			  sizeof(c->s[4]));
	if (json_is_integer(json_object_get(cap, "disk_bytes")))
		fmt_bytes(json_integer_value(json_object_get(cap, "disk_bytes")), c->s[5],
			  sizeof(c->s[5]));
	fmt_age(json_object_get(it, "last_heartbeat"), c->s[6], sizeof(c->s[6]));
	fmt_age(json_object_get(it, "joined"), c->s[7], sizeof(c->s[7]));
}

static int node_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "node list",
	    .summary = "List the region's nodes: zone, state, capacity, time since the last "
		       "heartbeat, age (operator).",
	    .example = "  ciel node list",
	};
	static const char *const hdr[] = {"NAME",   "ZONE", "STATE",	 "CPU",
					  "MEMORY", "DISK", "HEARTBEAT", "AGE"};
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	return cli_list(cli, "/v1/nodes", NULL, 8, hdr, node_row, "no nodes");
}

static int node_token_create(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "node token create",
	    .summary = "Create a one-use join token for a new node of a zone (valid 24 h, "
		       "operator).",
	    .example = "  ciel node token create --zone az1",
	};
	const char *zone = NULL;
	const struct opt opts[] = {
	    {"zone", "ZONE", "zone the node will join (required)", &zone, NULL},
	    {0},
	};
	struct client_response resp = {0};
	char token[512], expires[64];
	json_t *body;
	int r;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	if (!zone)
		return cli_usage_error(&u, "--zone is required");
	body = json_pack("{s:s}", "zone", zone);
	r = cli_call(cli, "POST", "/v1/nodes/tokens", NULL, body, &resp);
	json_decref(body);
	if (r)
		return r;
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
	} else {
		const struct kv kv[] = {
		    {"Token", fmt_member(resp.json, "token", token, sizeof(token))},
		    {"Zone", zone},
		    {"Expires",
		     fmt_time(json_object_get(resp.json, "expires"), expires, sizeof(expires))},
		};

		out_kv(stdout, kv, 3);
		fprintf(stderr,
			"join a node with: ciel-agent --endpoint %s --ca-file CA.pem "
			"--zone %s --name NAME --state DIR --token %s\n",
			cli->client.base, zone, token);
	}
	client_response_release(&resp);
	return EXIT_OK;
}

const struct group group_node = {
    .name = "node",
    .summary = "list nodes and create join tokens (operator)",
    .example = "  ciel node list\n  ciel node token create --zone az1",
    .verbs =
	(const struct verb[]){
	    {"list", "list nodes", node_list},
	    {"token create", "create a join token for a zone", node_token_create},
	    {0},
	},
};
