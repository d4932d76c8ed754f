/*
 * tenant — `ciel tenant create|list|show|delete` (operator commands).
 * create is the one moment the tenant's first admin secret is visible: it is
 * printed once (or saved straight into a profile) and never again.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int tenant_create(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "tenant create",
	    .args = "NAME",
	    .summary = "Create a tenant and its first admin access key (operator). The key's "
		       "secret is printed once.",
	    .example = "  ciel tenant create acme --save-profile acme\n"
		       "  ciel --profile acme audit list",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1], *save = NULL;
	const struct opt opts[] = {
	    {"save-profile", "PROFILE",
	     "save the admin key as PROFILE in the credentials file (same endpoint and CA)", &save,
	     NULL},
	    {0},
	};
	struct client_response resp = {0};
	json_t *body;
	int r, ret;
	char line[256];

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	if (save && (ret = cli_check_save_profile(cli, save)) != 0)
		return ret;
	body = json_pack("{s:s}", "name", args[0]);
	ret = cli_call(cli, "POST", "/v1/tenants", NULL, body, &resp);
	json_decref(body);
	if (ret)
		return ret;
	snprintf(line, sizeof(line), "tenant %s created; its admin key:", args[0]);
	ret = cli_print_new_key(cli, resp.json, json_object_get(resp.json, "key"), line, save,
				args[0]);
	client_response_release(&resp);
	return ret;
}

static void tenant_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_time(json_object_get(it, "created"), c->s[1], sizeof(c->s[1]));
	fmt_member(it, "revision", c->s[2], sizeof(c->s[2]));
}

static int tenant_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "tenant list",
	    .summary = "List the region's tenants (operator).",
	    .example = "  ciel tenant list\n  ciel tenant list --output json",
	};
	static const char *const hdr[] = {"NAME", "CREATED", "REVISION"};
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	return cli_list(cli, "/v1/tenants", NULL, 3, hdr, tenant_row, "no tenants");
}

static int tenant_show(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "tenant show",
	    .args = "NAME",
	    .summary = "Show one tenant (operator, or a key of that tenant).",
	    .example = "  ciel tenant show acme",
	    .min_args = 1,
	    .max_args = 1,
	};
	struct client_response resp = {0};
	const char *args[1];
	const json_t *obj;
	char path[512];
	int r;

	r = cli_parse(&u, NULL, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	if (cli_path(path, sizeof(path), "/v1/tenants/", args[0], NULL) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "GET", path, NULL, NULL, &resp)) != 0)
		return r;
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
	} else {
		/* the answer is the tenant, or {"tenant": {...}} */
		obj = json_object_get(resp.json, "tenant");
		cli_show_object(json_is_object(obj) ? obj : resp.json);
	}
	client_response_release(&resp);
	return EXIT_OK;
}

static int tenant_delete(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "tenant delete",
	    .args = "NAME",
	    .summary = "Delete a tenant with its keys and principals (operator). Its audit "
		       "trail is kept. Asks for confirmation unless --yes.",
	    .example = "  ciel tenant delete acme --yes",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1];
	bool yes = false;
	const struct opt opts[] = {
	    {"yes", NULL, "do not ask for confirmation", NULL, &yes},
	    {0},
	};
	char q[256];
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	if (!yes) {
		snprintf(q, sizeof(q), "delete tenant '%s', its keys and its principals?", args[0]);
		if (!isatty(0))
			return cli_usage_error(&u,
					       "refusing to delete tenant '%s' without --yes "
					       "(stdin is not a terminal)",
					       args[0]);
		if (!cli_confirm(q)) {
			fprintf(stderr, "not deleted\n");
			return EXIT_FAIL;
		}
	}
	return cli_delete(cli, "/v1/tenants/", args[0], NULL, "tenant", "");
}

const struct group group_tenant = {
    .name = "tenant",
    .summary = "manage tenants (operator)",
    .example = "  ciel tenant create acme --save-profile acme\n  ciel tenant list",
    .verbs =
	(const struct verb[]){
	    {"create", "create a tenant and its first admin key", tenant_create},
	    {"list", "list tenants", tenant_list},
	    {"show", "show one tenant", tenant_show},
	    {"delete", "delete a tenant, its keys and principals", tenant_delete},
	    {0},
	},
};
