/*
 * zone — `ciel zone list`: the region's availability zones and how many of
 * their nodes are Ready.
 */
#include "cli.h"

static void zone_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "nodes", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "ready_nodes", c->s[2], sizeof(c->s[2]));
}

static int zone_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "zone list",
	    .summary = "List the region's zones with their node counts.",
	    .example = "  ciel zone list",
	};
	static const char *const hdr[] = {"NAME", "NODES", "READY"};
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	return cli_list(cli, "/v1/zones", NULL, 3, hdr, zone_row, "no zones");
}

const struct group group_zone = {
    .name = "zone",
    .summary = "list availability zones",
    .example = "  ciel zone list",
    .verbs =
	(const struct verb[]){
	    {"list", "list zones and their nodes", zone_list},
	    {0},
	},
};
