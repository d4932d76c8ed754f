/*
 * region — `ciel region show`: name, zones, revision, time and the public
 * key that signs audit checkpoints (to check an exported trail offline).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int region_show(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "region show",
	    .summary = "Show the region: name, zones, revision, time, audit public key.",
	    .example = "  ciel region show\n  ciel region show --output json",
	};
	struct client_response resp = {0};
	char name[128], zones[512] = "", rev[32], tm[64], pk[128];
	const json_t *z;
	size_t i;
	int r;

	r = cli_parse(&u, NULL, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	if ((r = cli_call(cli, "GET", "/v1/region", NULL, NULL, &resp)) != 0)
		return r;
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
	} else {
		json_array_foreach(json_object_get(resp.json, "zones"), i, z)
		{
			const char *zn = json_is_string(z)
					     ? json_string_value(z)
					     : json_string_value(json_object_get(z, "name"));
			size_t len = strlen(zones);

			snprintf(zones + len, sizeof(zones) - len, "%s%s", len ? "," : "",
				 zn ? zn : "?");
		}
		{
			const struct kv kv[] = {
			    {"Name", fmt_member(resp.json, "name", name, sizeof(name))},
			    {"Zones", zones},
			    {"Revision", fmt_member(resp.json, "revision", rev, sizeof(rev))},
			    {"Time", fmt_time(json_object_get(resp.json, "time"), tm, sizeof(tm))},
			    {"Audit public key",
			     fmt_member(resp.json, "audit_public_key", pk, sizeof(pk))},
			    {"Endpoint", cli->client.base},
			};

			out_kv(stdout, kv, sizeof(kv) / sizeof(kv[0]));
		}
	}
	client_response_release(&resp);
	return EXIT_OK;
}

const struct group group_region = {
    .name = "region",
    .summary = "show the region",
    .example = "  ciel region show",
    .verbs =
	(const struct verb[]){
	    {"show", "show the region's name, zones and audit key", region_show},
	    {0},
	},
};
