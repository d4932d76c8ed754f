/*
 * principal — `ciel principal list|delete`: users and service accounts of
 * the tenant (admin). Principals are created by `ciel key create`.
 */
#include <stdio.h>

#include "cli.h"

static void principal_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "role", c->s[1], sizeof(c->s[1]));
	fmt_time(json_object_get(it, "created"), c->s[2], sizeof(c->s[2]));
}

static int principal_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "principal list",
	    .summary = "List the tenant's principals.",
	    .example = "  ciel principal list\n  ciel --tenant acme principal list",
	};
	static const char *const hdr[] = {"NAME", "ROLE", "CREATED"};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/principals", q, 3, hdr, principal_row, "no principals");
}

static int principal_delete(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "principal delete",
	    .args = "NAME",
	    .summary = "Delete a principal and all its access keys.",
	    .example = "  ciel principal delete ci",
	    .min_args = 1,
	    .max_args = 1,
	};
	return cli_delete_cmd(cli, &u, argc, argv, "/v1/principals/", "principal",
			      " (with its keys)", NULL, NULL);
}

const struct group group_principal = {
    .name = "principal",
    .summary = "manage principals (users, service accounts) of a tenant (admin)",
    .example = "  ciel principal list\n  ciel principal delete ci",
    .verbs =
	(const struct verb[]){
	    {"list", "list principals", principal_list},
	    {"delete", "delete a principal and its keys", principal_delete},
	    {0},
	},
};
