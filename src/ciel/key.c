/*
 * key — `ciel key create|list|delete`: access keys of the tenant (admin; the
 * operator names the tenant with --tenant). A secret is only ever printed by
 * create, once.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int key_create(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "key create",
	    .summary = "Create an access key for a principal, creating the principal (with "
		       "--role, default member) if new. The secret is printed once.",
	    .example = "  ciel key create --principal ci --role reader --save-profile acme-ci\n"
		       "  ciel --tenant acme key create --principal bob",
	    .max_args = 0,
	};
	const char *principal = NULL, *role = NULL, *save = NULL;
	const struct opt opts[] = {
	    {"principal", "NAME", "principal that owns the key (required)", &principal, NULL},
	    {"role", "ROLE", "admin, member or reader (for a new principal; default member)", &role,
	     NULL},
	    {"save-profile", "PROFILE", "save the key as PROFILE in the credentials file", &save,
	     NULL},
	    {0},
	};
	struct client_response resp = {0};
	char q[256], line[256], tenant[128];
	json_t *body;
	int r;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	if (!principal)
		return cli_usage_error(&u, "--principal is required");
	if (role && strcmp(role, "admin") != 0 && strcmp(role, "member") != 0 &&
	    strcmp(role, "reader") != 0)
		return cli_usage_error(&u, "--role must be admin, member or reader, not '%s'",
				       role);
	if (save && (r = cli_check_save_profile(cli, save)) != 0)
		return r;
	cli_query_init(cli, q, sizeof(q));
	body = json_pack("{s:s}", "principal", principal);
	if (body && role)
		json_object_set_new(body, "role", json_string(role));
	r = cli_call(cli, "POST", "/v1/keys", q, body, &resp);
	json_decref(body);
	if (r)
		return r;
	fmt_member(resp.json, "tenant", tenant, sizeof(tenant));
	if (!tenant[0] && cli->tenant)
		snprintf(tenant, sizeof(tenant), "%s", cli->tenant);
	snprintf(line, sizeof(line), "key created for principal %s (tenant %s):", principal,
		 tenant[0] ? tenant : "-");
	r = cli_print_new_key(cli, resp.json, resp.json, line, save, tenant);
	client_response_release(&resp);
	return r;
}

static void key_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "id", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "principal", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "role", c->s[2], sizeof(c->s[2]));
	fmt_member(it, "tenant", c->s[3], sizeof(c->s[3]));
	fmt_time(json_object_get(it, "created"), c->s[4], sizeof(c->s[4]));
}

static int key_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "key list",
	    .summary = "List the tenant's access keys (never their secrets).",
	    .example = "  ciel key list\n  ciel --tenant acme key list",
	};
	static const char *const hdr[] = {"ID", "PRINCIPAL", "ROLE", "TENANT", "CREATED"};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/keys", q, 5, hdr, key_row, "no keys");
}

static int key_delete(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "key delete",
	    .args = "ID",
	    .summary = "Delete an access key; requests signed with it fail from now on.",
	    .example = "  ciel key delete AKC1234567890",
	    .min_args = 1,
	    .max_args = 1,
	};
	return cli_delete_cmd(cli, &u, argc, argv, "/v1/keys/", "key", "", NULL, NULL);
}

const struct group group_key = {
    .name = "key",
    .summary = "manage access keys of a tenant (admin)",
    .example = "  ciel key create --principal ci --role reader\n  ciel key list",
    .verbs =
	(const struct verb[]){
	    {"create", "create an access key (prints the secret once)", key_create},
	    {"list", "list access keys", key_list},
	    {"delete", "delete an access key", key_delete},
	    {0},
	},
};
