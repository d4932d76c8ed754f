/*
 * cli — see cli.h. Everything here prints: errors and hints to stderr,
 * help to stdout, so `ciel x --help | less` works and scripts reading stdout
 * never see diagnostics.
 */
#include "cli.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/ts.h"

static void print_flag(FILE *f, const char *name, const char *metavar, const char *help)
{
	char left[96];

	snprintf(left, sizeof(left), "--%s%s%s", name, metavar ? " " : "", metavar ? metavar : "");
	fprintf(f, "  %-24s %s\n", left, help);
}

void cli_print_global_flags(FILE *f)
{
	fprintf(f, "Global flags:\n");
	print_flag(f, "endpoint", "URL",
		   "API endpoint (env CIEL_ENDPOINT, default " CLIENT_DEFAULT_ENDPOINT ")");
	print_flag(f, "profile", "NAME",
		   "profile of the credentials file (env CIEL_PROFILE, default \"default\")");
	print_flag(
	    f, "credentials", "FILE",
	    "credentials file (env CIEL_CREDENTIALS_FILE, default ~/.config/ciel/credentials)");
	print_flag(f, "output", "FORMAT", "table (default) or json; also -o FORMAT");
	print_flag(f, "tenant", "NAME", "operator: act on this tenant");
}

static void print_usage_line(FILE *f, const struct cmd_usage *u, const struct opt *opts)
{
	fprintf(f, "Usage: ciel %s%s%s%s\n", u->name, u->args && u->args[0] ? " " : "",
		u->args ? u->args : "", " [flags]");
	(void)opts;
}

static void print_help(const struct cmd_usage *u, const struct opt *opts)
{
	print_usage_line(stdout, u, opts);
	printf("\n%s\n\nFlags:\n", u->summary);
	for (const struct opt *o = opts; o && o->name; o++)
		print_flag(stdout, o->name, o->metavar, o->help);
	print_flag(stdout, "help", NULL, "show this help");
	putchar('\n');
	cli_print_global_flags(stdout);
	if (u->example)
		printf("\nExample:\n%s\n", u->example);
}

int cli_usage_error(const struct cmd_usage *u, const char *fmt, ...)
{
	va_list ap;

	fputs("ciel: usage: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_usage_line(stderr, u, NULL);
	fprintf(stderr, "Run `ciel %s --help` for more.\n", u->name);
	return EXIT_USAGE;
}

int cli_parse(const struct cmd_usage *u, const struct opt *opts, int argc, char **argv,
	      const char **args)
{
	bool end = false;
	int n = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq;
		const struct opt *o;
		size_t len;

		if (!end && strcmp(a, "--") == 0) {
			end = true;
			continue;
		}
		if (!end && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
			print_help(u, opts);
			return CLI_HELP;
		}
		if (end || a[0] != '-' || a[1] == '\0') {
			if (n >= u->max_args) {
				cli_usage_error(u, "unexpected argument '%s'", a);
				return -1;
			}
			args[n++] = a;
			continue;
		}
		if (a[1] != '-') {
			cli_usage_error(u, "unknown flag '%s'", a);
			return -1;
		}
		eq = strchr(a + 2, '=');
		len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
		for (o = opts; o && o->name; o++)
			if (strlen(o->name) == len && memcmp(o->name, a + 2, len) == 0)
				break;
		if (!o || !o->name) {
			cli_usage_error(u, "unknown flag '%.*s'", (int)len + 2, a);
			return -1;
		}
		if (o->metavar) {
			if (eq) {
				*o->val = eq + 1;
			} else if (i + 1 < argc) {
				*o->val = argv[++i];
			} else {
				cli_usage_error(u, "--%s needs a value (%s)", o->name, o->metavar);
				return -1;
			}
		} else {
			if (eq) {
				cli_usage_error(u, "--%s takes no value", o->name);
				return -1;
			}
			*o->set = true;
		}
	}
	if (n < u->min_args) {
		cli_usage_error(u, "missing %s", u->args);
		return -1;
	}
	return n;
}

static void print_group_help(FILE *f, const struct group *g)
{
	int w = 0;

	fprintf(f, "Usage: ciel %s <command> [flags]\n\n%s\n\nCommands:\n", g->name, g->summary);
	for (const struct verb *v = g->verbs; v->name; v++)
		if ((int)strlen(v->name) > w)
			w = (int)strlen(v->name);
	for (const struct verb *v = g->verbs; v->name; v++)
		fprintf(f, "  %-*s   %s\n", w, v->name, v->summary);
	fputc('\n', f);
	cli_print_global_flags(f);
	if (g->example)
		fprintf(f, "\nExample:\n%s\n", g->example);
	fprintf(f, "\nRun `ciel %s <command> --help` for the flags of a command.\n", g->name);
}

int cli_group_main(struct cli *cli, const struct group *g, int argc, char **argv)
{
	if (argc == 0) {
		fprintf(stderr, "ciel: usage: `ciel %s` needs a command\n\n", g->name);
		print_group_help(stderr, g);
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
	    strcmp(argv[0], "help") == 0) {
		print_group_help(stdout, g);
		return EXIT_OK;
	}
	for (const struct verb *v = g->verbs; v->name; v++) {
		const char *sp = strchr(v->name, ' ');

		if (!sp) {
			if (strcmp(v->name, argv[0]) == 0)
				return v->fn(cli, argc - 1, argv + 1);
			continue;
		}
		/* a two-word verb: "token create" */
		if (strlen(argv[0]) != (size_t)(sp - v->name) ||
		    memcmp(v->name, argv[0], (size_t)(sp - v->name)) != 0)
			continue;
		if (argc >= 2 && strcmp(argv[1], sp + 1) == 0)
			return v->fn(cli, argc - 2, argv + 2);
	}
	fprintf(stderr, "ciel: usage: unknown command '%s %s%s%s'\n", g->name, argv[0],
		argc >= 2 && argv[1][0] != '-' ? " " : "",
		argc >= 2 && argv[1][0] != '-' ? argv[1] : "");
	fprintf(stderr, "Run `ciel %s --help` for the list of commands.\n", g->name);
	return EXIT_USAGE;
}

int cli_fail(const char *code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ciel: %s: ", code);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

int cli_fail_err(const struct ciel_err *err)
{
	if (err->field[0])
		return cli_fail(ciel_code_name(err->code), "%s (field: %s)", err->msg, err->field);
	return cli_fail(ciel_code_name(err->code), "%s", err->msg);
}

void cli_hint(const char *fmt, ...)
{
	va_list ap;

	fputs("hint: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void hint_credentials(const struct client *c)
{
	const char *id = getenv("CIEL_KEY_ID"), *secret = getenv("CIEL_SECRET");

	if ((id && *id) || (secret && *secret))
		cli_hint("check CIEL_KEY_ID, CIEL_SECRET and CIEL_SCOPE (they override profile "
			 "'%s')",
			 c->cfg.profile);
	else if (c->cfg.profile_found)
		cli_hint("check the credentials of profile '%s' (%s)", c->cfg.profile,
			 c->cfg.credentials_file);
	else
		cli_hint("check the credentials of profile '%s'", c->cfg.profile);
}

struct client *cli_client(struct cli *cli, bool need_key)
{
	struct client_opts o = {
	    .endpoint = cli->endpoint,
	    .profile = cli->profile,
	    .credentials_file = cli->credentials,
	};
	struct client_config cfg;
	struct ciel_err err;

	if (!cli->client_ready) {
		if (client_resolve(&cfg, &o, &err) < 0) {
			cli_fail_err(&err);
			if (err.code == CIEL_ENOTFOUND)
				cli_hint("create it with `ciel up` or `ciel tenant create NAME "
					 "--save-profile NAME`");
			return NULL;
		}
		if (client_init(&cli->client, &cfg, &err) < 0) {
			explicit_bzero(&cfg, sizeof(cfg));
			cli_fail_err(&err);
			return NULL;
		}
		explicit_bzero(&cfg, sizeof(cfg));
		cli->client_ready = true;
	}
	if (need_key && !client_has_key(&cli->client)) {
		const struct client_config *c = &cli->client.cfg;

		cli_fail("unauthenticated",
			 "no credentials: profile '%s' not found%s%s and "
			 "CIEL_KEY_ID/CIEL_SECRET not set",
			 c->profile, c->credentials_file[0] ? " in " : "", c->credentials_file);
		cli_hint("start a local region with `ciel up` (it writes profile 'default'), "
			 "or pass --profile NAME");
		return NULL;
	}
	if (need_key && !cli->client.cfg.scope[0]) {
		cli_fail("unauthenticated", "key %s has no scope", cli->client.cfg.key_id);
		cli_hint("set CIEL_SCOPE (or scope in profile '%s') to the key's tenant, or to "
			 "'region' for the operator",
			 cli->client.cfg.profile);
		return NULL;
	}
	return &cli->client;
}

int cli_report(struct cli *cli, struct client *c, int rc, const struct ciel_err *cerr,
	       struct client_response *resp)
{
	struct ciel_err err;
	char code[64], reason[64];

	cli->last_status = 0;
	cli->last_code[0] = cli->last_field[0] = cli->last_message[0] = '\0';
	if (rc < 0) {
		cli_fail_err(cerr);
		if (client_failed_connect(c))
			cli_hint("is the region running? start one with `make up`");
		else if (client_failed_tls(c))
			cli_hint("TLS verification failed: check ca_file of profile '%s' "
				 "(a local region's CA is DATA/pki/ca.pem)",
				 c->cfg.profile);
		return EXIT_FAIL;
	}
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	client_response_error(resp, &err, code, sizeof(code), reason, sizeof(reason));
	cli->last_status = resp->status;
	snprintf(cli->last_code, sizeof(cli->last_code), "%s", code);
	snprintf(cli->last_field, sizeof(cli->last_field), "%s", err.field);
	snprintf(cli->last_message, sizeof(cli->last_message), "%s", err.msg);
	fprintf(stderr, "ciel: %s: %s", code, err.msg);
	if (err.field[0])
		fprintf(stderr, " (field: %s)", err.field);
	if (resp->request_id[0])
		fprintf(stderr, " [request %s]", resp->request_id);
	fputc('\n', stderr);
	if (strcmp(reason, "date_skew") == 0)
		cli_hint("this machine's clock is more than 5 minutes off the region's");
	else if (strcmp(code, "unauthenticated") == 0)
		hint_credentials(c);
	else if (strcmp(code, "permission_denied") == 0 && strcmp(reason, "scope_mismatch") == 0)
		cli_hint("the key's scope does not match its tenant: check scope in profile '%s'",
			 c->cfg.profile);
	client_response_release(resp);
	return EXIT_FAIL;
}

int cli_call_with(struct cli *cli, struct client *c, const char *method, const char *path,
		  const char *query, const json_t *body, struct client_request_opts *ro,
		  struct client_response *resp)
{
	struct ciel_err err;
	int rc = client_request_ex(c, method, path, query, body, ro, resp, &err);

	return cli_report(cli, c, rc, &err, resp);
}

int cli_upload(struct cli *cli, const char *method, const char *path, const char *query,
	       const char *file, client_progress_fn progress, void *arg,
	       struct client_response *resp)
{
	struct client *c = cli_client(cli, true);
	struct ciel_err err;
	int rc;

	if (!c)
		return EXIT_FAIL;
	rc = client_upload(c, method, path, query, file, progress, arg, resp, &err);
	return cli_report(cli, c, rc, &err, resp);
}

/* Why v is not a valid image or instance name, or NULL (api_check_name). */
static const char *cli_name_problem(const char *v)
{
	size_t n = strlen(v);

	if (n < 2 || n > 31)
		return "must be 2 to 31 characters";
	if (v[0] < 'a' || v[0] > 'z')
		return "must start with a lower-case letter (a-z)";
	if (v[n - 1] == '-')
		return "must not end with '-'";
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-'))
			return "only a-z, 0-9 and '-' are allowed";
	return NULL;
}

/* Whether w can stand in a shell command line without quotes. */
static bool word_plain(const char *w)
{
	if (!*w)
		return false;
	for (; *w; w++)
		if (!isalnum((unsigned char)*w) && !strchr("-_./=:,+@%", *w))
			return false;
	return true;
}

const char *cli_fmt_words(const json_t *arr, char *buf, size_t size)
{
	const json_t *v;
	size_t i, len = 0;

	buf[0] = '\0';
	json_array_foreach(arr, i, v)
	{
		const char *w = json_string_value(v);

		if (!w)
			continue;
		if (len && len + 1 < size)
			buf[len++] = ' ';
		if (word_plain(w)) {
			for (; *w && len + 1 < size; w++)
				buf[len++] = *w;
		} else {
			/* 'it'\''s': a quote closes, an escaped quote, a quote reopens */
			if (len + 1 < size)
				buf[len++] = '\'';
			for (; *w && len + 1 < size; w++) {
				if (*w == '\'' && len + 4 < size) {
					memcpy(buf + len, "'\\''", 4);
					len += 4;
				} else if (*w != '\'') {
					buf[len++] = *w;
				}
			}
			if (len + 1 < size)
				buf[len++] = '\'';
		}
		buf[len] = '\0';
	}
	return buf;
}

int cli_check_name(const char *what, const char *v)
{
	const char *problem = cli_name_problem(v);

	if (!problem)
		return 0;
	return cli_fail("invalid_argument", "%s '%s': %s (names are " CLI_NAME_RULES ")", what, v,
			problem);
}

int cli_call(struct cli *cli, const char *method, const char *path, const char *query,
	     const json_t *body, struct client_response *resp)
{
	struct client *c = cli_client(cli, true);

	if (!c)
		return EXIT_FAIL;
	return cli_call_with(cli, c, method, path, query, body, NULL, resp);
}

void cli_query_init(const struct cli *cli, char *q, size_t size)
{
	q[0] = '\0';
	if (cli->tenant)
		client_query_add(q, size, "tenant", cli->tenant);
}

int cli_path(char *buf, size_t size, const char *prefix, const char *name, const char *suffix)
{
	char *e = client_escape(name);
	int n;

	if (!e)
		return cli_fail("out_of_memory", "out of memory");
	n = snprintf(buf, size, "%s%s%s", prefix, e, suffix ? suffix : "");
	free(e);
	if (n < 0 || (size_t)n >= size)
		return cli_fail("invalid_argument", "name too long: %s", name);
	return 0;
}

const json_t *cli_items(const json_t *answer)
{
	const json_t *items = json_object_get(answer, "items");

	return json_is_array(items) ? items : NULL;
}

bool cli_confirm(const char *question)
{
	char line[64];

	if (!isatty(STDIN_FILENO))
		return false;
	fprintf(stderr, "%s [y/N] ", question);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return strcmp(line, "y\n") == 0 || strcmp(line, "yes\n") == 0 || strcmp(line, "Y\n") == 0;
}

int cli_check_save_profile(struct cli *cli, const char *profile)
{
	struct client *c;

	if (profile_name_valid(profile) < 0) {
		fprintf(stderr,
			"ciel: usage: --save-profile: '%s' is not a profile name "
			"([A-Za-z0-9._-]{1,64})\n",
			profile);
		return EXIT_USAGE;
	}
	c = cli_client(cli, true);
	if (!c)
		return EXIT_FAIL;
	if (c->cfg.profile_found && strcmp(c->cfg.profile, profile) == 0) {
		fprintf(stderr,
			"ciel: usage: --save-profile %s would overwrite the profile this "
			"command runs with\n",
			profile);
		return EXIT_USAGE;
	}
	if (!c->cfg.credentials_file[0]) {
		fprintf(stderr, "ciel: usage: --save-profile: no credentials file (HOME unset; "
				"pass --credentials FILE)\n");
		return EXIT_USAGE;
	}
	return 0;
}

int cli_save_profile(struct cli *cli, const char *profile, const char *key_id, const char *secret,
		     const char *scope)
{
	struct client *c = cli_client(cli, false);
	struct profile *p;
	struct ciel_err err;
	char ca[PATH_MAX];
	bool existed;
	int ret = EXIT_FAIL;

	if (!c)
		return EXIT_FAIL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return cli_fail("out_of_memory", "out of memory");
	existed = profile_load(c->cfg.credentials_file, profile, p, NULL) == 0;
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", profile);
	snprintf(p->endpoint, sizeof(p->endpoint), "%s", c->cfg.endpoint);
	snprintf(p->key_id, sizeof(p->key_id), "%s", key_id);
	snprintf(p->secret, sizeof(p->secret), "%s", secret);
	snprintf(p->scope, sizeof(p->scope), "%s", scope);
	/* the profile must work from any directory */
	if (!c->cfg.ca_file[0] || !realpath(c->cfg.ca_file, ca) ||
	    (size_t)snprintf(p->ca_file, sizeof(p->ca_file), "%s", ca) >= sizeof(p->ca_file))
		snprintf(p->ca_file, sizeof(p->ca_file), "%s", c->cfg.ca_file);
	if (profile_write(c->cfg.credentials_file, p, &err) < 0) {
		cli_fail_err(&err);
		cli_hint("the key above still works: save its secret by hand");
		goto out;
	}
	fprintf(stderr, "%s profile '%s' in %s; use it with `ciel --profile %s ...`\n",
		existed ? "replaced" : "saved", profile, c->cfg.credentials_file, profile);
	ret = EXIT_OK;
out:
	explicit_bzero(p, sizeof(*p));
	free(p);
	return ret;
}

int cli_print_new_key(struct cli *cli, const json_t *answer, const json_t *key, const char *what,
		      const char *save_profile, const char *scope)
{
	char id[128], secret[PROFILE_VALUE_MAX];
	int ret = EXIT_OK;

	fmt_member(key, "id", id, sizeof(id));
	fmt_member(key, "secret", secret, sizeof(secret));
	if (!id[0] || !secret[0])
		return cli_fail("internal", "the answer holds no key id or secret");
	if (cli->output == OUT_JSON) {
		out_json(answer);
	} else {
		printf("%s\n", what);
		printf("key id:     %s\n", id);
		printf("key secret: %s\n", secret);
	}
	if (save_profile)
		ret = cli_save_profile(cli, save_profile, id, secret, scope);
	else
		fprintf(stderr, "warning: the secret is shown only now and cannot be retrieved "
				"again; store it safely (or use --save-profile NAME next time)\n");
	explicit_bzero(secret, sizeof(secret));
	return ret;
}

/* Print every scalar member of obj as "Key: value", nested objects flattened. */
void cli_show_object(const json_t *obj)
{
	struct kv kv[32];
	char vals[32][256], keys[32][64];
	const char *k;
	const json_t *v;
	size_t n = 0;

	json_object_foreach((json_t *)obj, k, v)
	{
		if (n == 32)
			break;
		/* "audit_public_key" -> "Audit public key", like region show */
		snprintf(keys[n], sizeof(keys[n]), "%s", k);
		keys[n][0] = (char)toupper((unsigned char)keys[n][0]);
		for (char *c = keys[n]; *c; c++)
			if (*c == '_')
				*c = ' ';
		if (json_is_object(v) || json_is_array(v)) {
			char *s = json_dumps(v, JSON_COMPACT);

			snprintf(vals[n], sizeof(vals[n]), "%s", s ? s : "");
			free(s);
		} else if (strcmp(k, "created") == 0 || strcmp(k, "updated") == 0) {
			fmt_time(v, vals[n], sizeof(vals[n]));
		} else {
			fmt_member(obj, k, vals[n], sizeof(vals[n]));
		}
		kv[n].key = keys[n];
		kv[n].value = vals[n];
		n++;
	}
	out_kv(stdout, kv, n);
}

int cli_delete(struct cli *cli, const char *prefix, const char *name, const char *query,
	       const char *what, const char *note)
{
	struct client_response resp = {0};
	char path[512];
	int r;

	if (cli_path(path, sizeof(path), prefix, name, NULL) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "DELETE", path, query, NULL, &resp)) != 0)
		return r;
	if (cli->output == OUT_JSON)
		out_json(resp.json);
	else
		printf("%s %s deleted%s\n", what, name, note);
	client_response_release(&resp);
	return EXIT_OK;
}

int cli_delete_cmd(struct cli *cli, const struct cmd_usage *u, int argc, char **argv,
		   const char *prefix, const char *what, const char *note, const char *public_help,
		   bool *pub)
{
	const char *args[1];
	bool p = false;
	const struct opt opts[] = {
	    {"public", NULL, public_help, NULL, &p},
	    {0},
	};
	char q[256];
	int r;

	r = cli_parse(u, public_help ? opts : NULL, argc, argv, args);
	if (pub)
		*pub = p;
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if (p)
		client_query_add(q, sizeof(q), "public", "1");
	return cli_delete(cli, prefix, args[0], q, what, note);
}

int cli_list(struct cli *cli, const char *path, const char *query, size_t ncols,
	     const char *const *hdr, cli_row_fn fn, const char *no_rows)
{
	struct client_response resp = {0};
	struct cells *cb = NULL;
	struct table *t = NULL;
	const json_t *it;
	const char *row[CLI_MAX_COLS];
	size_t i;
	int ret;

	if (ncols > CLI_MAX_COLS)
		BUG("table of %zu columns", ncols);
	if ((ret = cli_call(cli, "GET", path, query, NULL, &resp)) != 0)
		return ret;
	if (cli->output == OUT_JSON) {
		out_json(resp.json);
		goto out;
	}
	t = table_new(ncols, hdr);
	cb = calloc(1, sizeof(*cb));
	if (!t || !cb) {
		ret = cli_fail("out_of_memory", "out of memory");
		goto out;
	}
	json_array_foreach(cli_items(resp.json), i, it)
	{
		for (size_t c = 0; c < ncols; c++) {
			cb->s[c][0] = '\0';
			row[c] = cb->s[c];
		}
		fn(it, cb);
		if (table_add(t, row) < 0) {
			ret = cli_fail("out_of_memory", "out of memory");
			goto out;
		}
	}
	table_print(t, stdout, no_rows);
out:
	free(cb);
	table_free(t);
	client_response_release(&resp);
	return ret;
}

void cli_status_init(struct cli_status *st)
{
	st->tty = isatty(STDERR_FILENO);
	st->width = 0;
}

void cli_status(struct cli_status *st, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	if (!st->tty)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	/* pad over what is left of a longer line drawn before */
	fprintf(stderr, "\r%s%*s", line, st->width > n ? st->width - n : 0, "");
	if (n > st->width)
		st->width = n;
}

void cli_status_clear(struct cli_status *st)
{
	if (st->tty && st->width)
		fprintf(stderr, "\r%*s\r", st->width, "");
	st->width = 0;
}

#define CLI_PROGRESS_EVERY_MS 200

void cli_progress_init(struct cli_progress *p, const char *then)
{
	memset(p, 0, sizeof(*p));
	cli_status_init(&p->st);
	p->then = then;
}

void cli_progress(void *arg, int64_t sent, int64_t total)
{
	struct cli_progress *p = arg;
	int64_t now = ts_mono_ms(), ms;
	char a[32], b[32];
	int pct = total > 0 ? (int)(sent * 100 / total) : 100;

	/* the clock starts with the first byte: hashing the file is not upload time */
	if (!p->start_ms)
		p->start_ms = now;
	ms = now - p->start_ms;
	p->sent = sent;
	if (!p->st.tty || (now - p->last_ms < CLI_PROGRESS_EVERY_MS && sent < total))
		return;
	p->last_ms = now;
	if (total > 0 && sent >= total) {
		/* the region reads the rest from socket buffers, then checks it */
		cli_status(&p->st, "sent %s; %s", fmt_size(total, b, sizeof(b)), p->then);
		return;
	}
	cli_status(&p->st, "uploading: %3d%%  %s of %s  %.1f MB/s", pct,
		   fmt_size(sent, a, sizeof(a)), fmt_size(total, b, sizeof(b)),
		   ms > 0 ? (double)sent / 1000.0 / (double)ms : 0.0);
}

void cli_progress_done(const struct cli_progress *p)
{
	int64_t ms = p->start_ms ? ts_mono_ms() - p->start_ms : 0;
	char a[32];

	fprintf(stderr, "uploaded %s in %.1f s (%.1f MB/s)\n", fmt_size(p->sent, a, sizeof(a)),
		(double)ms / 1000.0, ms > 0 ? (double)p->sent / 1000.0 / (double)ms : 0.0);
}

int cli_print_one(struct cli *cli, const json_t *obj, size_t ncols, const char *const *hdr,
		  cli_row_fn fn)
{
	const char *row[CLI_MAX_COLS];
	struct cells *cb;
	struct table *t;

	if (cli->output == OUT_JSON) {
		out_json(obj);
		return EXIT_OK;
	}
	cb = calloc(1, sizeof(*cb));
	t = table_new(ncols, hdr);
	if (cb && t) {
		fn(obj, cb);
		for (size_t i = 0; i < ncols; i++)
			row[i] = cb->s[i];
	}
	if (!cb || !t || table_add(t, row) < 0) {
		free(cb);
		table_free(t);
		return cli_fail("out_of_memory", "out of memory");
	}
	table_print(t, stdout, NULL);
	table_free(t);
	free(cb);
	return EXIT_OK;
}

int cli_show(struct cli *cli, const struct cmd_usage *u, int argc, char **argv, const char *prefix,
	     void (*show)(const json_t *obj), void (*not_found)(struct cli *cli, const char *name))
{
	struct client_response resp = {0};
	const char *args[1];
	char q[256], path[512];
	int r;

	r = cli_parse(u, NULL, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if (cli_path(path, sizeof(path), prefix, args[0], NULL) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "GET", path, q, NULL, &resp)) != 0) {
		if (not_found && cli->last_status == 404)
			not_found(cli, args[0]);
		return r;
	}
	if (cli->output == OUT_JSON)
		out_json(resp.json);
	else
		show(resp.json);
	client_response_release(&resp);
	return EXIT_OK;
}
