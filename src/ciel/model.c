/*
 * model — `ciel model deploy|list|show|delete`: model endpoints, a GGUF file
 * served by a `ciel-llm` worker on a node with room for it, reached through
 * the region's OpenAI-compatible API (`ciel chat`, `ciel apikey`).
 *
 * deploy streams the file (client_upload, never held in memory); the region
 * checks it by opening it with the engine, places it, and the node's agent
 * loads it. --wait follows the endpoint until it is ready or failed.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "util/ts.h"

#define MODEL_UPLOAD_MAX (64LL << 30)
#define POLL_MS 250

static const char *member_str(const json_t *obj, const char *name)
{
	const char *s = json_string_value(json_object_get(obj, name));

	return s ? s : "";
}

static int64_t member_int(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* "260K", "1.1B": a parameter count the way model cards write it. */
static const char *fmt_params(int64_t n, char *buf, size_t size)
{
	if (n < 0)
		snprintf(buf, size, "-");
	else if (n >= 1000000000)
		snprintf(buf, size, "%.1fB", (double)n / 1e9);
	else if (n >= 1000000)
		snprintf(buf, size, "%.1fM", (double)n / 1e6);
	else if (n >= 1000)
		snprintf(buf, size, "%.0fK", (double)n / 1e3);
	else
		snprintf(buf, size, "%" PRId64, n);
	return buf;
}

static void model_row(const json_t *it, struct cells *c)
{
	int64_t size = member_int(it, "size");

	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "state", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "node", c->s[2], sizeof(c->s[2]));
	fmt_member(it, "arch", c->s[3], sizeof(c->s[3]));
	fmt_params(member_int(it, "params"), c->s[4], sizeof(c->s[4]));
	fmt_member(it, "type", c->s[5], sizeof(c->s[5]));
	if (size >= 0)
		fmt_bytes(size, c->s[6], sizeof(c->s[6]));
	fmt_member(it, "ctx", c->s[7], sizeof(c->s[7]));
	snprintf(c->s[8], sizeof(c->s[8]), "%s",
		 json_is_true(json_object_get(it, "public")) ? "yes" : "no");
	fmt_age(json_object_get(it, "created"), c->s[9], sizeof(c->s[9]));
}

static const char *const model_hdr[] = {"NAME", "STATE", "NODE", "ARCH",   "PARAMS",
					"TYPE", "SIZE",	 "CTX",	 "PUBLIC", "AGE"};

/* ---- deploy ---- */

/*
 * FILE, or the one .gguf file in DIR, into out; EXIT_OK or the exit code
 * after printing why.
 */
static int model_file(const char *arg, char *out, size_t size, struct stat *st)
{
	struct dirent *de;
	int found = 0;
	DIR *d;

	if (stat(arg, st) < 0)
		return cli_fail(errno == ENOENT ? "not_found" : "io_error", "%s: %s", arg,
				strerror(errno));
	if (S_ISREG(st->st_mode)) {
		snprintf(out, size, "%s", arg);
		return EXIT_OK;
	}
	if (!S_ISDIR(st->st_mode))
		return cli_fail("invalid_argument", "%s: not a file or a directory", arg);
	d = opendir(arg);
	while (d && (de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n > 5 && strcmp(de->d_name + n - 5, ".gguf") == 0) {
			if (found++ == 0 &&
			    (size_t)snprintf(out, size, "%s/%s", arg, de->d_name) >= size)
				found = -100;
		}
	}
	if (d)
		closedir(d);
	if (found != 1) {
		cli_fail("invalid_argument", "%s: %s", arg,
			 found == 0 ? "holds no .gguf file" : "holds several .gguf files");
		cli_hint("name the file itself: `ciel model deploy %s/MODEL.gguf --name NAME`",
			 arg);
		return EXIT_FAIL;
	}
	if (stat(out, st) < 0 || !S_ISREG(st->st_mode))
		return cli_fail("invalid_argument", "%s: not a regular file", out);
	return EXIT_OK;
}

static void not_found_hint(struct cli *cli, const char *name)
{
	(void)cli;
	cli_hint("`ciel model list` shows the models; deploy one with `ciel model deploy FILE "
		 "--name %s`",
		 name);
}

/*
 * Poll the endpoint until it is ready (0) or failed, or timeout_s passed
 * (EXIT_FAIL after printing why); state changes go to stderr.
 */
int model_wait(struct cli *cli, struct client *c, const char *name, const char *q, int timeout_s,
	       json_t **last)
{
	struct client_response resp = {0};
	char path[512], seen[512] = "", now[512], rss[32];
	int64_t end = ts_mono_ms() + (int64_t)timeout_s * 1000;

	*last = NULL;
	if (cli_path(path, sizeof(path), "/v1/models/", name, NULL) != 0)
		return EXIT_FAIL;
	for (;;) {
		struct ciel_err err;
		const char *state;
		int rc = client_request(c, "GET", path, q, NULL, &resp, &err);
		struct timespec ts = {0, POLL_MS * 1000000L};

		if (cli_report(cli, c, rc, &err, &resp) != 0) {
			if (cli->last_status == 404)
				not_found_hint(cli, name);
			return EXIT_FAIL;
		}
		state = member_str(resp.json, "state");
		if (!strcmp(state, "ready"))
			snprintf(now, sizeof(now), "ready on %s (pid %" PRId64 ", rss %sB)",
				 member_str(resp.json, "node"), member_int(resp.json, "pid"),
				 fmt_bytes(member_int(resp.json, "rss_bytes"), rss, sizeof(rss)));
		else if (member_str(resp.json, "node")[0])
			snprintf(now, sizeof(now), "%s on %s%s%s", state,
				 member_str(resp.json, "node"),
				 member_str(resp.json, "reason")[0] ? ": " : "",
				 member_str(resp.json, "reason"));
		else
			snprintf(now, sizeof(now), "%s%s%s", state,
				 member_str(resp.json, "reason")[0] ? ": " : "",
				 member_str(resp.json, "reason"));
		if (strcmp(now, seen) != 0) {
			fprintf(stderr, "model %s: %s\n", name, now);
			snprintf(seen, sizeof(seen), "%s", now);
		}
		if (!strcmp(state, "ready")) {
			*last = json_incref(resp.json);
			client_response_release(&resp);
			return EXIT_OK;
		}
		if (!strcmp(state, "failed")) {
			*last = json_incref(resp.json);
			client_response_release(&resp);
			cli_fail("failed", "model %s failed: %s", name,
				 member_str(*last, "reason"));
			cli_hint("the worker's log is STATE/llm/*/%s/err.txt on node %s", name,
				 member_str(*last, "node"));
			return EXIT_FAIL;
		}
		client_response_release(&resp);
		if (ts_mono_ms() >= end) {
			cli_fail("timeout", "model %s not ready after %d s (%s)", name, timeout_s,
				 seen);
			cli_hint("`ciel model show %s` follows it", name);
			return EXIT_FAIL;
		}
		nanosleep(&ts, NULL);
	}
}

int model_deploy(struct cli *cli, struct client *c, const char *file, const char *name,
		 const char *query, int wait_s, json_t **result)
{
	struct client_response resp = {0};
	struct cli_progress p;
	struct ciel_err err;
	json_t *last = NULL;
	char path[512];
	int rc, r;

	cli_progress_init(&p, "the region checks the model...");
	if (cli_path(path, sizeof(path), "/v1/models/", name, NULL) != 0)
		return EXIT_FAIL;
	cli_status(&p.st, "hashing %s...", file);
	rc = client_upload(c, "PUT", path, query, file, cli_progress, &p, &resp, &err);
	cli_status_clear(&p.st);
	if ((r = cli_report(cli, c, rc, &err, &resp)) != 0) {
		if (cli->last_status == 400)
			cli_hint("the region takes a GGUF file (v1 to v3) of a Llama-family model "
				 "in F32, F16, BF16, Q8_0 or Q4_0");
		else if (cli->last_status == 403)
			cli_hint("--public is for the operator");
		else if (cli->last_status == 413)
			cli_hint("the file is over the region's upload limit");
		return r;
	}
	cli_progress_done(&p);
	if (wait_s <= 0) {
		if (result)
			*result = json_incref(resp.json);
		else
			r = cli_print_one(cli, resp.json, 10, model_hdr, model_row);
		client_response_release(&resp);
		return r;
	}
	client_response_release(&resp);
	r = model_wait(cli, c, name, query, wait_s, &last);
	if (result)
		*result = json_incref(last);
	else if (last && cli->output == OUT_JSON)
		out_json(last);
	else if (last && r == EXIT_OK)
		cli_print_one(cli, last, 10, model_hdr, model_row);
	json_decref(last);
	return r;
}

/* A whole number in [min, max] into the query as name; -1 if s is none. */
static int add_int(char *q, size_t size, const char *name, const char *s, long min, long max)
{
	char *end;
	long v;

	if (!s)
		return 0;
	errno = 0;
	v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max)
		return -1;
	return client_query_add(q, size, name, s);
}

static int model_deploy_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "model deploy",
	    .args = "FILE|DIR",
	    .summary = "Deploy a GGUF model (a Llama-family architecture in F32, F16, BF16, Q8_0 "
		       "or Q4_0) as an endpoint NAME: the region checks it, places it on a node "
		       "with memory for its weights and KV cache, and the node loads it. DIR "
		       "must hold one .gguf file. Deploying a NAME again replaces the model. "
		       "With --wait it follows the endpoint until it is ready (state changes on "
		       "stderr) and exits 1 if it failed.",
	    .example = "  ciel model deploy stories260k.gguf --name stories --wait\n"
		       "  ciel model deploy ./tinyllama --name tiny --ctx 4096 --max-seqs 8\n"
		       "  ciel model deploy mistral.gguf --name mistral --public   (operator)",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1], *name = NULL, *ctx = NULL, *seqs = NULL, *threads = NULL,
			     *timeout = NULL;
	bool pub = false, wait = false;
	const struct opt opts[] = {
	    {"name", "NAME",
	     "the endpoint's name, the `model` of API requests (" CLI_NAME_RULES ")", &name, NULL},
	    {"public", NULL, "operator: a region-wide model every tenant can use", NULL, &pub},
	    {"ctx", "N", "context length in tokens (default: the model's, at most 2048)", &ctx,
	     NULL},
	    {"max-seqs", "N", "sequences decoded at once (default 4)", &seqs, NULL},
	    {"threads", "N", "CPU threads of the worker (default 1)", &threads, NULL},
	    {"wait", NULL, "wait until the endpoint is ready", NULL, &wait},
	    {"timeout", "S", "seconds --wait waits (default 600)", &timeout, NULL},
	    {0},
	};
	char file[PATH_MAX], q[256], a[32];
	struct client *c;
	struct stat st;
	long wait_s = 600;
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	if (!name)
		return cli_usage_error(&u, "--name is required");
	cli_query_init(cli, q, sizeof(q));
	if (pub)
		client_query_add(q, sizeof(q), "public", "1");
	if (add_int(q, sizeof(q), "ctx", ctx, 1, 1L << 20) < 0)
		return cli_usage_error(&u, "--ctx takes a whole number from 1, not '%s'", ctx);
	if (add_int(q, sizeof(q), "max_seqs", seqs, 1, 256) < 0)
		return cli_usage_error(
		    &u, "--max-seqs takes a whole number from 1 to 256, not '%s'", seqs);
	if (add_int(q, sizeof(q), "threads", threads, 1, 256) < 0)
		return cli_usage_error(&u, "--threads takes a whole number from 1 to 256, not '%s'",
				       threads);
	if (timeout) {
		char *end;

		wait_s = strtol(timeout, &end, 10);
		if (!*timeout || *end || wait_s < 1 || wait_s > 86400)
			return cli_usage_error(
			    &u, "--timeout takes seconds from 1 to 86400, not '%s'", timeout);
	}
	if ((r = cli_check_name("--name", name)) != 0)
		return r;
	if ((r = model_file(args[0], file, sizeof(file), &st)) != 0)
		return r;
	if (st.st_size > MODEL_UPLOAD_MAX)
		return cli_fail("payload_too_large", "%s: %sB is over the 64 GiB limit", file,
				fmt_bytes(st.st_size, a, sizeof(a)));
	if (!(c = cli_client(cli, true)))
		return EXIT_FAIL;
	return model_deploy(cli, c, file, name, q, wait ? (int)wait_s : 0, NULL);
}

static int model_list_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "model list",
	    .summary = "List the models the tenant can use: its own endpoints and the region's "
		       "public ones (PUBLIC yes), with their state and node.",
	    .example = "  ciel model list\n  ciel model list --output json",
	};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/models", q, 10, model_hdr, model_row,
			"no models; deploy one with `ciel model deploy FILE --name NAME`");
}

static void show_model(const json_t *m)
{
	char name[64], state[32], node[80], reason[512], arch[64], params[32], type[32], size[64],
	    ctx[24], seqs[24], threads[24], mem[32], rss[32], pid[24], blob[96], pub[8],
	    created[64], a[32];
	struct kv kv[17];
	size_t k = 0;

	fmt_member(m, "name", name, sizeof(name));
	fmt_member(m, "state", state, sizeof(state));
	fmt_member(m, "node", node, sizeof(node));
	fmt_member(m, "reason", reason, sizeof(reason));
	fmt_member(m, "arch", arch, sizeof(arch));
	fmt_params(member_int(m, "params"), params, sizeof(params));
	fmt_member(m, "type", type, sizeof(type));
	size[0] = mem[0] = rss[0] = '\0';
	if (member_int(m, "size") >= 0)
		snprintf(size, sizeof(size), "%sB (%" PRId64 " bytes)",
			 fmt_bytes(member_int(m, "size"), a, sizeof(a)), member_int(m, "size"));
	fmt_member(m, "ctx", ctx, sizeof(ctx));
	fmt_member(m, "max_seqs", seqs, sizeof(seqs));
	fmt_member(m, "threads", threads, sizeof(threads));
	if (member_int(m, "memory_bytes") >= 0)
		snprintf(mem, sizeof(mem), "%sB", fmt_bytes(member_int(m, "memory_bytes"), a, 32));
	if (member_int(m, "rss_bytes") >= 0)
		snprintf(rss, sizeof(rss), "%sB", fmt_bytes(member_int(m, "rss_bytes"), a, 32));
	fmt_member(m, "pid", pid, sizeof(pid));
	fmt_member(m, "blob", blob, sizeof(blob));
	snprintf(pub, sizeof(pub), "%s", json_is_true(json_object_get(m, "public")) ? "yes" : "no");
	fmt_time(json_object_get(m, "created"), created, sizeof(created));
	kv[k++] = (struct kv){"Name", name};
	kv[k++] = (struct kv){"State", state};
	if (reason[0])
		kv[k++] = (struct kv){"Reason", reason};
	kv[k++] = (struct kv){"Node", node};
	kv[k++] = (struct kv){"Arch", arch};
	kv[k++] = (struct kv){"Params", params};
	kv[k++] = (struct kv){"Type", type};
	kv[k++] = (struct kv){"Size", size};
	kv[k++] = (struct kv){"Blob", blob};
	kv[k++] = (struct kv){"Context", ctx};
	kv[k++] = (struct kv){"Max seqs", seqs};
	kv[k++] = (struct kv){"Threads", threads};
	kv[k++] = (struct kv){"Memory", mem};
	kv[k++] = (struct kv){"RSS", rss};
	kv[k++] = (struct kv){"Worker pid", pid};
	kv[k++] = (struct kv){"Public", pub};
	kv[k++] = (struct kv){"Created", created};
	out_kv(stdout, kv, k);
}

static int model_show_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "model show",
	    .args = "NAME",
	    .summary = "Show one model endpoint: state (and why, if it failed), node, "
		       "architecture, parameters, quantisation, context, memory and the "
		       "worker's resident memory.",
	    .example = "  ciel model show stories\n  ciel model show stories --output json",
	    .min_args = 1,
	    .max_args = 1,
	};

	return cli_show(cli, &u, argc, argv, "/v1/models/", show_model, not_found_hint);
}

static int model_delete_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "model delete",
	    .args = "NAME",
	    .summary = "Delete a model endpoint: its worker stops and requests for it get 404.",
	    .example = "  ciel model delete stories\n"
		       "  ciel model delete mistral --public   (operator)",
	    .min_args = 1,
	    .max_args = 1,
	};
	bool pub;
	int r = cli_delete_cmd(cli, &u, argc, argv, "/v1/models/", "model", "",
			       "operator: delete the region-wide public model NAME", &pub);

	if (r == EXIT_FAIL && cli->last_status == 404)
		cli_hint("`ciel model list` shows the models%s",
			 pub ? "" : " (a public one needs --public, operator)");
	return r;
}

const struct group group_model = {
    .name = "model",
    .summary = "deploy and manage LLM model endpoints",
    .example = "  ciel model deploy stories260k.gguf --name stories --wait\n  ciel model list\n"
	       "  ciel chat stories \"Once upon a time\"",
    .verbs =
	(const struct verb[]){
	    {"deploy", "deploy a GGUF model as an endpoint", model_deploy_cmd},
	    {"list", "list model endpoints", model_list_cmd},
	    {"show", "show one endpoint", model_show_cmd},
	    {"delete", "delete an endpoint", model_delete_cmd},
	    {0},
	},
};
