/*
 * apikey — `ciel apikey create|list|delete`: bearer keys for the region's
 * OpenAI-compatible API (/openai/v1), for clients that cannot sign requests
 * (the openai libraries, curl). A key belongs to one tenant, may only call
 * models, and its secret is shown once, by create.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void apikey_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "id", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "name", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "created_by", c->s[2], sizeof(c->s[2]));
	fmt_age(json_object_get(it, "created"), c->s[3], sizeof(c->s[3]));
}

static const char *const apikey_hdr[] = {"ID", "NAME", "CREATED BY", "AGE"};

/* The region's endpoint as the openai clients want it: https://HOST:PORT/openai/v1. */
static void base_url(struct cli *cli, char *buf, size_t size)
{
	struct client *c = cli_client(cli, false);

	snprintf(buf, size, "%s/openai/v1", c ? c->base : CLIENT_DEFAULT_ENDPOINT);
}

static int apikey_create(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "apikey create",
	    .summary = "Create an API key for the OpenAI-compatible API of the region "
		       "(/openai/v1): chat and completions on the tenant's models and the "
		       "public ones, nothing else. The key is printed once; keep it.",
	    .example = "  ciel apikey create --name notebook\n"
		       "  ciel --tenant acme apikey create   (operator)",
	};
	const char *name = NULL;
	const struct opt opts[] = {
	    {"name", "NAME", "a label for the key (up to 64 characters)", &name, NULL},
	    {0},
	};
	struct client_response resp = {0};
	char q[256], url[PROFILE_VALUE_MAX + 16];
	const char *key, *id, *ca;
	struct client *c;
	json_t *body;
	int r;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	if (name && strlen(name) > 64)
		return cli_usage_error(&u, "--name: at most 64 characters");
	body = name ? json_pack("{s:s}", "name", name) : json_object();
	if (!body)
		return cli_fail("out_of_memory", "out of memory");
	cli_query_init(cli, q, sizeof(q));
	r = cli_call(cli, "POST", "/v1/apikeys", q, body, &resp);
	json_decref(body);
	if (r) {
		if (cli->last_status == 400 && strstr(cli->last_message, "tenant"))
			cli_hint(
			    "the operator names the tenant: `ciel --tenant NAME apikey create`");
		return r;
	}
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
		client_response_release(&resp);
		return EXIT_OK;
	}
	key = json_string_value(json_object_get(resp.json, "key"));
	id = json_string_value(json_object_get(resp.json, "id"));
	c = cli_client(cli, false);
	base_url(cli, url, sizeof(url));
	ca = c && c->cfg.ca_file[0] ? c->cfg.ca_file : "ca.pem";
	printf("API key %s created:\n\n  %s\n\n", id ? id : "?", key ? key : "?");
	printf("It is shown only this once. Use it with any OpenAI client:\n\n"
	       "  export OPENAI_API_KEY=%s\n"
	       "  export OPENAI_BASE_URL=%s\n"
	       "  export NODE_EXTRA_CA_CERTS=%s   # the region's CA, for node\n"
	       "  export SSL_CERT_FILE=%s         # ... and for python\n\n"
	       "  curl --cacert %s %s/chat/completions \\\n"
	       "    -H \"Authorization: Bearer $OPENAI_API_KEY\" -H 'Content-Type: "
	       "application/json' \\\n"
	       "    -d '{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":"
	       "\"Once upon a time\"}]}'\n",
	       key ? key : "?", url, ca, ca, ca, url);
	client_response_release(&resp);
	return EXIT_OK;
}

static int apikey_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "apikey list",
	    .summary = "List the tenant's API keys (never their secrets).",
	    .example = "  ciel apikey list\n  ciel apikey list --output json",
	};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/apikeys", q, 4, apikey_hdr, apikey_row,
			"no API keys; create one with `ciel apikey create`");
}

static int apikey_delete(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "apikey delete",
	    .args = "ID",
	    .summary = "Delete an API key: requests with it are refused (401) from now on.",
	    .example = "  ciel apikey delete ak_0123456789abcdef",
	    .min_args = 1,
	    .max_args = 1,
	};
	int r = cli_delete_cmd(cli, &u, argc, argv, "/v1/apikeys/", "API key", "", NULL, NULL);

	if (r == EXIT_FAIL && cli->last_status == 404)
		cli_hint("`ciel apikey list` shows the keys' ids (ak_...)");
	return r;
}

const struct group group_apikey = {
    .name = "apikey",
    .summary = "API keys for the OpenAI-compatible API",
    .example = "  ciel apikey create --name notebook\n  ciel apikey list\n"
	       "  ciel apikey delete ak_0123456789abcdef",
    .verbs =
	(const struct verb[]){
	    {"create", "create a key (shown once)", apikey_create},
	    {"list", "list keys", apikey_list},
	    {"delete", "delete a key", apikey_delete},
	    {0},
	},
};
