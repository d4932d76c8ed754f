/*
 * instance — `ciel instance run|list|show|logs|stop|start|delete`: the
 * containers a tenant runs. The region places each on a node of one of its
 * zones; the node's agent starts it and reports back, so every change is
 * asynchronous: the API answers at once with the desired state, and --wait
 * polls until the node has caught up (or 60 s pass).
 *
 * Flags are checked here before anything is sent (names, sizes, CPU), so a
 * typo costs a usage message, not a round trip; the server checks again.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"
#include "util/ts.h"

#define WAIT_MS 60000
#define POLL_MS 500
#define LOG_PAGE (1 << 20)    /* the API's largest logs page */
#define TAIL_MAX (64LL << 20) /* --tail-bytes is kept in memory */
#define MAX_ENV 256
#define CPU_MIN_MILLIS 10 /* the API's range */
#define CPU_MAX_MILLIS 64000
#define MEM_MIN_BYTES (4LL << 20) /* the API's range */
#define MEM_MAX_BYTES (64LL << 30)

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Sleep, cut short by a signal (so Ctrl-C is seen at once). */
static void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/*
 * "0.5" -> 500, "2" -> 2000, "250m" -> 250: the API counts thousandths of
 * a vCPU. -1 if s is no such number, -2 if it is absurdly large, -3 if it
 * has more than three decimals.
 */
static int parse_cpu(const char *s, int64_t *millis)
{
	int64_t whole = 0, frac = 0;
	int digits = 0, fdigits = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (whole > 1000000000)
			return -2;
		whole = whole * 10 + (*p - '0');
	}
	if (*p == 'm' && p[1] == '\0' && digits) {
		*millis = whole;
		return 0;
	}
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, fdigits++)
			if (fdigits < 3)
				frac = frac * 10 + (*p - '0');
		if (!fdigits)
			return -1;
	}
	if (*p || !(digits || fdigits))
		return -1;
	if (fdigits > 3)
		return -3;
	for (; fdigits < 3; fdigits++)
		frac *= 10;
	*millis = whole * 1000 + frac;
	return 0;
}

/*
 * "64M", "64Mi", "1.5G", "512KiB", "67108864" -> bytes. K, M and G are
 * powers of 1024 whether or not an 'i' follows (memory is sold in binary
 * units; "64M" meaning 64 000 000 would only ever be a surprise). -1 on
 * anything else, -2 if it is too large to count.
 */
static int parse_size(const char *s, int64_t *bytes)
{
	static const struct {
		const char *suffix;
		int shift;
	} units[] = {
	    {"", 0},	 {"B", 0},   {"K", 10},	  {"Ki", 10}, {"KiB", 10}, {"KB", 10},
	    {"M", 20},	 {"Mi", 20}, {"MiB", 20}, {"MB", 20}, {"G", 30},   {"Gi", 30},
	    {"GiB", 30}, {"GB", 30}, {"T", 40},	  {"Ti", 40}, {"TiB", 40}, {"TB", 40},
	};
	int64_t whole = 0, frac = 0, scale = 1, mult = -1;
	const char *p = s;
	int digits = 0;

	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (whole > (INT64_MAX - 9) / 10)
			return -2;
		whole = whole * 10 + (*p - '0');
	}
	if (!digits)
		return -1;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			if (scale < 1000000000) { /* more digits than that change nothing */
				frac = frac * 10 + (*p - '0');
				scale *= 10;
			}
		}
		if (scale == 1)
			return -1;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(p, units[i].suffix) == 0)
			mult = (int64_t)1 << units[i].shift;
	if (mult < 0 || (scale > 1 && mult == 1))
		return -1; /* unknown unit, or a fraction of a byte */
	if (whole > INT64_MAX / mult)
		return -2;
	*bytes = whole * mult + frac * mult / scale;
	return 0;
}

/* Take the --env K=V flags (before any "--") out of argv, whose other words
 * go to rest in order; -1 after a usage error. */
static int take_env(const struct cmd_usage *u, int argc, char **argv, char **rest, int *nrest,
		    const char **env, size_t *nenv)
{
	int i;

	*nrest = 0;
	*nenv = 0;
	for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *v;

		if (strcmp(argv[i], "--env") == 0) {
			if (i + 1 >= argc) {
				cli_usage_error(u, "--env needs a value (NAME=VALUE)");
				return -1;
			}
			v = argv[++i];
		} else if (strncmp(argv[i], "--env=", 6) == 0) {
			v = argv[i] + 6;
		} else {
			rest[(*nrest)++] = argv[i];
			continue;
		}
		if (!strchr(v, '=') || v[0] == '=') {
			cli_usage_error(u, "--env takes NAME=VALUE, not '%s'", v);
			return -1;
		}
		if (*nenv == MAX_ENV) {
			cli_usage_error(u, "at most %d --env flags", MAX_ENV);
			return -1;
		}
		env[(*nenv)++] = v;
	}
	for (; i < argc; i++)
		rest[(*nrest)++] = argv[i];
	return 0;
}

static int64_t member_int(const json_t *obj, const char *name, int64_t dflt)
{
	const json_t *v = json_object_get(obj, name);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static const char *member_str(const json_t *obj, const char *name)
{
	const char *s = json_string_value(json_object_get(obj, name));

	return s ? s : "";
}

/* Whether a failed or exited instance will be started again by its node. */
static bool will_restart(const json_t *inst)
{
	const char *restart = member_str(inst, "restart"), *state = member_str(inst, "state");

	if (strcmp(member_str(inst, "desired"), "running") != 0)
		return false;
	if (strcmp(restart, "always") == 0)
		return true;
	return strcmp(restart, "on-failure") == 0 &&
	       (strcmp(state, "failed") == 0 || member_int(inst, "exit_code", 1) != 0);
}

/* "exit code 1, oom" or "" from an instance's exit_code and reason. */
static const char *fmt_outcome(const json_t *inst, char *buf, size_t size)
{
	int64_t code = member_int(inst, "exit_code", -1);
	const char *reason = member_str(inst, "reason");

	if (code >= 0 && reason[0])
		snprintf(buf, size, "exit code %" PRId64 ", %s", code, reason);
	else if (code >= 0)
		snprintf(buf, size, "exit code %" PRId64, code);
	else
		snprintf(buf, size, "%s", reason);
	return buf;
}

static void run_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "state", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "zone", c->s[2], sizeof(c->s[2]));
	fmt_member(it, "node", c->s[3], sizeof(c->s[3]));
	fmt_member(it, "address", c->s[4], sizeof(c->s[4]));
	fmt_member(it, "image", c->s[5], sizeof(c->s[5]));
}

/* One instance as the table run, start and stop print (or its JSON). */
static int print_instance(struct cli *cli, const json_t *inst)
{
	static const char *const hdr[] = {"NAME", "STATE", "ZONE", "NODE", "ADDRESS", "IMAGE"};

	return cli_print_one(cli, inst, 6, hdr, run_row);
}

static void hint_unknown(struct cli *cli, const char *name)
{
	if (cli->last_status == 404)
		cli_hint("no instance %s: `ciel instance list` shows the tenant's instances", name);
}

enum want { WANT_RUNNING, WANT_STOPPED, WANT_GONE };

/*
 * Poll GET /v1/instances/NAME until it reaches w, for up to WAIT_MS. On
 * success *last gets the final instance (the caller decrefs; NULL for
 * WANT_GONE). Prints why on failure: an instance that failed or exited
 * (and will not be restarted) when it should run, a vanished one, time out.
 */
static int wait_for(struct cli *cli, const char *name, const char *q, enum want w, json_t **last)
{
	static const char *const goal[] = {"running", "stopped", "deleted"};
	struct client_response resp = {0};
	struct client *c = cli_client(cli, true);
	struct cli_status st;
	struct ciel_err err;
	int64_t start = ts_mono_ms(), s;
	char path[512], seen[32] = "", outcome[300];
	int rc;

	*last = NULL;
	if (!c || cli_path(path, sizeof(path), "/v1/instances/", name, NULL) != 0)
		return EXIT_FAIL;
	cli_status_init(&st);
	for (;;) {
		const char *state;
		bool done = false;

		rc = client_request(c, "GET", path, q, NULL, &resp, &err);
		if (rc == 0 && resp.status == 404 && w == WANT_GONE) {
			cli_status_clear(&st);
			client_response_release(&resp);
			return EXIT_OK;
		}
		if (rc < 0 || resp.status < 200 || resp.status > 299 ||
		    !json_is_object(resp.json)) {
			cli_status_clear(&st);
			if (rc == 0 && resp.status >= 200 && resp.status <= 299) {
				client_response_release(&resp);
				return cli_fail("internal", "GET %s: the answer is not an instance",
						path);
			}
			cli_report(cli, c, rc, &err, &resp);
			if (cli->last_status == 404)
				cli_hint("instance %s is gone: it was deleted meanwhile", name);
			return EXIT_FAIL;
		}
		state = member_str(resp.json, "state");
		if (w == WANT_RUNNING) {
			if (strcmp(state, "running") == 0) {
				done = true;
			} else if ((strcmp(state, "failed") == 0 || strcmp(state, "exited") == 0) &&
				   !will_restart(resp.json)) {
				cli_status_clear(&st);
				fmt_outcome(resp.json, outcome, sizeof(outcome));
				cli_fail(state, "instance %s %s%s%s%s", name, state,
					 outcome[0] ? " (" : "", outcome, outcome[0] ? ")" : "");
				cli_hint("its output: `ciel instance logs %s`; all of it: `ciel "
					 "instance show %s`",
					 name, name);
				client_response_release(&resp);
				return EXIT_FAIL;
			} else if (strcmp(state, "stopped") == 0 ||
				   strcmp(state, "deleting") == 0) {
				cli_status_clear(&st);
				cli_fail("conflict", "instance %s is %s: something else changed it",
					 name, state);
				client_response_release(&resp);
				return EXIT_FAIL;
			}
		} else if (w == WANT_STOPPED) {
			done = strcmp(state, "stopped") == 0 || strcmp(state, "exited") == 0 ||
			       strcmp(state, "failed") == 0;
		}
		if (done) {
			cli_status_clear(&st);
			*last = json_incref(resp.json);
			client_response_release(&resp);
			return EXIT_OK;
		}
		s = (ts_mono_ms() - start) / 1000;
		if (st.tty)
			cli_status(&st, "waiting for %s to be %s: %s (%" PRId64 " s)", name,
				   goal[w], state, s);
		else if (strcmp(seen, state) != 0)
			fprintf(stderr, "%s: %s\n", name, state);
		snprintf(seen, sizeof(seen), "%s", state);
		client_response_release(&resp);
		if (ts_mono_ms() - start >= WAIT_MS) {
			cli_status_clear(&st);
			cli_fail("timeout", "instance %s is still %s after %d s, not %s", name,
				 seen, WAIT_MS / 1000, goal[w]);
			if (w == WANT_RUNNING)
				cli_hint("it may yet start (its node may still be fetching the "
					 "image): `ciel instance show %s` tells",
					 name);
			else
				cli_hint("is its node up? `ciel instance show %s`, then `ciel node "
					 "list`",
					 name);
			return EXIT_FAIL;
		}
		nap_ms(POLL_MS);
	}
}

/* What `instance run` asks for, as parsed. NULL: not given (server default). */
struct run_req {
	const char *image, *name, *cpu, *mem, *zone, *restart;
	int64_t cpu_millis, mem_bytes;
	char **cmd; /* the words after "--", NULL without one */
	int ncmd;
	const char **env;
	size_t nenv;
};

/* Check the flags' values; 0, or the exit code after printing why. */
static int run_check(const struct cmd_usage *u, struct run_req *rq)
{
	int pr;

	if (cli_check_name("image name", rq->image) != 0 ||
	    (rq->name && cli_check_name("--name", rq->name) != 0))
		return EXIT_FAIL;
	if (rq->cpu) {
		pr = parse_cpu(rq->cpu, &rq->cpu_millis);
		if (pr == -1)
			return cli_usage_error(u,
					       "--cpu takes a number of vCPUs like 0.5 or 2 (or "
					       "thousandths like 250m), not '%s'",
					       rq->cpu);
		if (pr == -3)
			return cli_usage_error(u,
					       "--cpu '%s': at most 3 decimals (the region counts "
					       "thousandths of a vCPU)",
					       rq->cpu);
		if (pr == -2 || rq->cpu_millis < CPU_MIN_MILLIS || rq->cpu_millis > CPU_MAX_MILLIS)
			return cli_usage_error(u,
					       "--cpu must be between 0.01 and %d vCPUs, not '%s'",
					       CPU_MAX_MILLIS / 1000, rq->cpu);
	}
	if (rq->mem) {
		pr = parse_size(rq->mem, &rq->mem_bytes);
		if (pr == -1)
			return cli_usage_error(u,
					       "--memory takes a size like 64M, 512Mi, 1G or a "
					       "number of bytes, not '%s'",
					       rq->mem);
		if (pr == -2 || rq->mem_bytes < MEM_MIN_BYTES || rq->mem_bytes > MEM_MAX_BYTES)
			return cli_usage_error(u, "--memory must be between 4M and 64G, not '%s'",
					       rq->mem);
	}
	if (rq->restart && strcmp(rq->restart, "no") != 0 &&
	    strcmp(rq->restart, "on-failure") != 0 && strcmp(rq->restart, "always") != 0)
		return cli_usage_error(u, "--restart must be no, on-failure or always, not '%s'",
				       rq->restart);
	if (rq->cmd && rq->ncmd == 0)
		return cli_usage_error(u, "nothing after '--': name the command to run, or leave "
					  "out '--' to run the image's own");
	return 0;
}

/* Append the strings to a new array member name of obj; -1 if out of memory. */
static int set_words(json_t *obj, const char *name, const char *const *w, size_t n)
{
	json_t *a = json_array();

	if (!a || json_object_set_new(obj, name, a) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, json_string(w[i])) < 0)
			return -1;
	return 0;
}

/* The POST /v1/instances body, with only what was given; NULL if out of memory. */
static json_t *run_body(const struct run_req *rq)
{
	json_t *b = json_pack("{s:s}", "image", rq->image);

	if (!b)
		return NULL;
	if ((rq->name && json_object_set_new(b, "name", json_string(rq->name)) < 0) ||
	    (rq->cpu && json_object_set_new(b, "cpu_millis", json_integer(rq->cpu_millis)) < 0) ||
	    (rq->mem && json_object_set_new(b, "memory_bytes", json_integer(rq->mem_bytes)) < 0) ||
	    (rq->zone && json_object_set_new(b, "zone", json_string(rq->zone)) < 0) ||
	    (rq->restart && json_object_set_new(b, "restart", json_string(rq->restart)) < 0) ||
	    (rq->cmd &&
	     set_words(b, "command", (const char *const *)rq->cmd, (size_t)rq->ncmd) < 0) ||
	    (rq->nenv && set_words(b, "env", rq->env, rq->nenv) < 0)) {
		json_decref(b);
		return NULL;
	}
	return b;
}

/* What to do next after a refused POST /v1/instances. */
static void run_hint(const struct cli *cli, const struct run_req *rq)
{
	/* the server's message may carry the advice already */
	if (((cli->last_status == 400 && strcmp(cli->last_field, "image") == 0) ||
	     (cli->last_status == 404 && strstr(cli->last_message, "image"))) &&
	    !strstr(cli->last_message, "image import"))
		cli_hint("import it first: ciel image import %s FILE (`ciel image list` shows the "
			 "images)",
			 rq->image);
	else if (cli->last_status == 409 && rq->name)
		cli_hint("pick another --name, or `ciel instance delete %s` first", rq->name);
	else if (strcmp(cli->last_code, "quota_exceeded") == 0)
		cli_hint("`ciel quota show` shows the limits and what is used; delete an instance "
			 "or ask for less --cpu/--memory");
	else if (cli->last_status == 503)
		cli_hint("no Ready node has room for it: `ciel node list` shows the nodes; ask for "
			 "less --cpu/--memory%s",
			 rq->zone ? ", or drop --zone" : "");
}

static int instance_run(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance run",
	    .args = "IMAGE [-- COMMAND [ARG...]]",
	    .summary = "Start an instance of IMAGE on a node of the region. Without a COMMAND it "
		       "runs the image's entrypoint and cmd. Sizes take K, M, G (or Ki, Mi, "
		       "Gi): both spellings mean powers of 1024, so 64M is 64 MiB. With --wait "
		       "it returns once the instance runs, and fails (exit 1) if it failed or "
		       "exited and will not be restarted.",
	    .example = "  ciel instance run alpine --name web --cpu 0.5 --memory 128M --wait -- "
		       "httpd -f -p 8080\n"
		       "  ciel instance run alpine --env GREETING=hi --restart on-failure -- sh "
		       "-c 'echo $GREETING'",
	    .min_args = 1,
	    .max_args = 16, /* more words are a command missing its "--" */
	};
	struct run_req rq = {0};
	const char *args[16], *env_flag = NULL, *env[MAX_ENV];
	bool wait = false;
	const struct opt opts[] = {
	    {"name", "NAME", "instance name (" CLI_NAME_RULES "; default i-<8 hex>)", &rq.name,
	     NULL},
	    {"cpu", "VCPUS", "vCPUs, like 0.5 or 2 (or 250m); 0.01 to 64, default 0.5", &rq.cpu,
	     NULL},
	    {"memory", "SIZE",
	     "memory limit, like 64M, 512Mi, 1G (M = Mi = 1024*1024 bytes); "
	     "4M to 64G, default 64M",
	     &rq.mem, NULL},
	    {"zone", "ZONE", "run in this zone (default: the scheduler picks)", &rq.zone, NULL},
	    {"restart", "POLICY", "no (default), on-failure or always", &rq.restart, NULL},
	    {"env", "NAME=VALUE", "environment variable; repeat for more", &env_flag, NULL},
	    {"wait", NULL, "wait (up to 60 s) until it runs", NULL, &wait},
	    {0},
	};
	struct client_response resp = {0};
	char **rest, q[256];
	json_t *body = NULL, *last = NULL;
	const char *name;
	int nrest, r, dd;

	rest = calloc((size_t)argc + 1, sizeof(*rest));
	if (!rest)
		return cli_fail("out_of_memory", "out of memory");
	if (take_env(&u, argc, argv, rest, &nrest, env, &rq.nenv) < 0) {
		r = EXIT_USAGE;
		goto out;
	}
	rq.env = env;
	/* the words after "--" are the command, whatever they look like */
	for (dd = 0; dd < nrest && strcmp(rest[dd], "--") != 0; dd++)
		;
	if (dd < nrest) {
		rq.cmd = rest + dd + 1;
		rq.ncmd = nrest - dd - 1;
	}
	r = cli_parse(&u, opts, dd, rest, args);
	if (r < 0) {
		r = cli_parse_exit(r);
		goto out;
	}
	if (r > 1) {
		r = cli_usage_error(&u,
				    "unexpected argument '%s': a command goes after '--' "
				    "(ciel instance run %s -- %s ...)",
				    args[1], args[0], args[1]);
		goto out;
	}
	rq.image = args[0];
	if ((r = run_check(&u, &rq)) != 0)
		goto out;
	if (!(body = run_body(&rq))) {
		r = cli_fail("out_of_memory", "out of memory");
		goto out;
	}
	cli_query_init(cli, q, sizeof(q));
	if ((r = cli_call(cli, "POST", "/v1/instances", q, body, &resp)) != 0) {
		run_hint(cli, &rq);
		goto out;
	}
	if (!wait) {
		r = print_instance(cli, resp.json);
		goto out;
	}
	/* the generated name, when --name was not given */
	name = member_str(resp.json, "name")[0] ? member_str(resp.json, "name") : rq.name;
	if (!name) {
		r = cli_fail("internal", "the answer to POST /v1/instances names no instance");
		goto out;
	}
	r = wait_for(cli, name, q, WANT_RUNNING, &last);
	if (r == 0)
		r = print_instance(cli, last);
out:
	json_decref(last);
	json_decref(body);
	client_response_release(&resp);
	free(rest);
	return r;
}

static void list_row(const json_t *it, struct cells *c)
{
	const json_t *cpu = json_object_get(it, "cpu_millis"),
		     *mem = json_object_get(it, "memory_bytes");

	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "state", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "zone", c->s[2], sizeof(c->s[2]));
	fmt_member(it, "node", c->s[3], sizeof(c->s[3]));
	if (json_is_integer(cpu))
		fmt_cpu(json_integer_value(cpu), c->s[4], sizeof(c->s[4]));
	if (json_is_integer(mem))
		fmt_bytes(json_integer_value(mem), c->s[5], sizeof(c->s[5]));
	fmt_member(it, "address", c->s[6], sizeof(c->s[6]));
	fmt_member(it, "image", c->s[7], sizeof(c->s[7]));
	fmt_age(json_object_get(it, "created"), c->s[8], sizeof(c->s[8]));
}

static int instance_list(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance list",
	    .summary = "List the tenant's instances.",
	    .example = "  ciel instance list\n  ciel --tenant acme instance list --output json",
	};
	static const char *const hdr[] = {"NAME",   "STATE",   "ZONE",	"NODE", "CPU",
					  "MEMORY", "ADDRESS", "IMAGE", "AGE"};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/instances", q, 9, hdr, list_row,
			"no instances; start one with `ciel instance run IMAGE`");
}

static void show_instance(const json_t *in)
{
	char name[64], tenant[64], image[64], digest[96], state[32], desired[32], code[32];
	char reason[256], restarts[32], policy[32], zone[64], node[80], addr[64], cpu[32], mem[32];
	char cmd[1024], env[1024], created[64], started[64], finished[64], gen[32];
	const json_t *v;
	struct kv kv[21];
	size_t k = 0;

	fmt_member(in, "name", name, sizeof(name));
	fmt_member(in, "tenant", tenant, sizeof(tenant));
	fmt_member(in, "image", image, sizeof(image));
	fmt_member(in, "image_digest", digest, sizeof(digest));
	fmt_member(in, "state", state, sizeof(state));
	fmt_member(in, "desired", desired, sizeof(desired));
	fmt_member(in, "exit_code", code, sizeof(code));
	fmt_member(in, "reason", reason, sizeof(reason));
	fmt_member(in, "restarts", restarts, sizeof(restarts));
	fmt_member(in, "restart", policy, sizeof(policy));
	fmt_member(in, "zone", zone, sizeof(zone));
	fmt_member(in, "node", node, sizeof(node));
	fmt_member(in, "address", addr, sizeof(addr));
	cpu[0] = mem[0] = '\0';
	if (json_is_integer(v = json_object_get(in, "cpu_millis")))
		fmt_cpu(json_integer_value(v), cpu, sizeof(cpu));
	if (json_is_integer(v = json_object_get(in, "memory_bytes")))
		fmt_bytes(json_integer_value(v), mem, sizeof(mem));
	cli_fmt_words(json_object_get(in, "command"), cmd, sizeof(cmd));
	cli_fmt_words(json_object_get(in, "env"), env, sizeof(env));
	created[0] = started[0] = finished[0] = '\0';
	if (json_object_get(in, "created"))
		fmt_time(json_object_get(in, "created"), created, sizeof(created));
	if (json_object_get(in, "started"))
		fmt_time(json_object_get(in, "started"), started, sizeof(started));
	if (json_object_get(in, "finished"))
		fmt_time(json_object_get(in, "finished"), finished, sizeof(finished));
	fmt_member(in, "generation", gen, sizeof(gen));
	kv[k++] = (struct kv){"Name", name};
	kv[k++] = (struct kv){"Tenant", tenant};
	kv[k++] = (struct kv){"Image", image};
	kv[k++] = (struct kv){"Image digest", digest};
	kv[k++] = (struct kv){"State", state};
	kv[k++] = (struct kv){"Desired", desired};
	kv[k++] = (struct kv){"Exit code", code};
	kv[k++] = (struct kv){"Reason", reason};
	kv[k++] = (struct kv){"Restarts", restarts};
	kv[k++] = (struct kv){"Restart policy", policy};
	kv[k++] = (struct kv){"Zone", zone};
	kv[k++] = (struct kv){"Node", node};
	kv[k++] = (struct kv){"Address", addr};
	kv[k++] = (struct kv){"CPU", cpu};
	kv[k++] = (struct kv){"Memory", mem};
	kv[k++] = (struct kv){"Command", cmd};
	kv[k++] = (struct kv){"Env", env};
	kv[k++] = (struct kv){"Created", created};
	kv[k++] = (struct kv){"Started", started};
	kv[k++] = (struct kv){"Finished", finished};
	kv[k++] = (struct kv){"Generation", gen};
	out_kv(stdout, kv, k);
}

static int instance_show(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance show",
	    .args = "NAME",
	    .summary = "Show one instance: where it runs, its state and why (exit code, "
		       "reason, restarts), its command and limits.",
	    .example = "  ciel instance show web\n  ciel instance show web --output json",
	    .min_args = 1,
	    .max_args = 1,
	};

	return cli_show(cli, &u, argc, argv, "/v1/instances/", show_instance, hint_unknown);
}

/* The last bytes of a log, for --tail-bytes. */
struct tail {
	char *buf;
	size_t len, max;
	bool cut; /* bytes were dropped from the front */
};

static void tail_add(struct tail *t, const char *data, size_t n)
{
	if (n >= t->max) {
		memcpy(t->buf, data + n - t->max, t->max);
		t->cut = t->cut || n > t->max || t->len > 0;
		t->len = t->max;
		return;
	}
	if (t->len + n > t->max) {
		size_t drop = t->len + n - t->max;

		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
		t->cut = true;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
}

/* One page of the log: GET .../logs?offset=N&limit=M, parsed with NUL bytes
 * allowed (a log may hold them; the client's own parse refuses them). */
struct page {
	json_t *json;
	const char *data;
	size_t len;
	int64_t offset, next; /* where data starts, where the next page does */
	const char *state;
};

static int get_page(struct cli *cli, struct client *c, const char *path, const char *tq,
		    int64_t offset, struct page *pg)
{
	struct client_response resp = {0};
	struct ciel_err err;
	const json_t *d;
	char q[400], n[32];
	int rc;

	snprintf(q, sizeof(q), "%s", tq);
	snprintf(n, sizeof(n), "%" PRId64, offset);
	client_query_add(q, sizeof(q), "offset", n);
	snprintf(n, sizeof(n), "%d", LOG_PAGE);
	client_query_add(q, sizeof(q), "limit", n);
	rc = client_request(c, "GET", path, q, NULL, &resp, &err);
	if (cli_report(cli, c, rc, &err, &resp) != 0)
		return EXIT_FAIL;
	pg->json = resp.body ? json_loadb(resp.body, resp.body_len, JSON_ALLOW_NUL, NULL) : NULL;
	client_response_release(&resp);
	d = json_object_get(pg->json, "data");
	if (!json_is_string(d)) {
		json_decref(pg->json);
		pg->json = NULL;
		return cli_fail("internal", "GET %s: the answer holds no log data", path);
	}
	pg->data = json_string_value(d);
	pg->len = json_string_length(d);
	pg->offset = member_int(pg->json, "offset", offset);
	pg->next = member_int(pg->json, "next", pg->offset + (int64_t)pg->len);
	pg->state = member_str(pg->json, "state");
	if (pg->offset > offset)
		fprintf(stderr,
			"note: %" PRId64 " bytes of log were rotated away before they were read "
			"(offsets %" PRId64 " to %" PRId64 ")\n",
			pg->offset - offset, offset, pg->offset);
	return 0;
}

/* Print a page: raw bytes, or the answer as one JSON line with --output json. */
static int put_page(struct cli *cli, const struct page *pg)
{
	if (cli->output == OUT_JSON) {
		if (json_dumpf(pg->json, stdout, JSON_COMPACT | JSON_ENCODE_ANY) == 0)
			fputc('\n', stdout);
	} else if (pg->len) {
		fwrite(pg->data, 1, pg->len, stdout);
	}
	fflush(stdout);
	if (ferror(stdout))
		return cli_fail("io_error", "write to stdout: %s", strerror(errno));
	return 0;
}

/* After a terminal state and an empty page: whether a node will restart it
 * (so --follow goes on). */
static bool logs_go_on(struct client *c, const char *ipath, const char *tq)
{
	struct client_response resp = {0};
	struct ciel_err err;
	bool on = false;

	if (client_request(c, "GET", ipath, tq, NULL, &resp, &err) == 0 && resp.status == 200)
		on = will_restart(resp.json);
	client_response_release(&resp);
	return on;
}

static int instance_logs(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance logs",
	    .args = "NAME",
	    .summary = "Print an instance's output (stdout and stderr) as it was written. "
		       "--follow keeps printing as it grows until the instance stops (Ctrl-C "
		       "ends it too). A node keeps a bounded log: a note on stderr says when "
		       "older output was rotated away.",
	    .example =
		"  ciel instance logs web\n  ciel instance logs web --follow --tail-bytes 4K",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1], *tail_s = NULL;
	bool follow = false;
	const struct opt opts[] = {
	    {"follow", NULL, "keep printing new output until the instance stops", NULL, &follow},
	    {"tail-bytes", "N", "print only the last N bytes (like 4096, 16K, 1M) first", &tail_s,
	     NULL},
	    {0},
	};
	struct tail t = {0};
	struct page pg = {0};
	struct sigaction sa = {0}, old;
	struct client *c;
	char tq[256], path[512], ipath[512];
	int64_t offset = 0, tail_n = 0;
	bool guarded = false, got_any = false;
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	if (tail_s) {
		int pr = parse_size(tail_s, &tail_n);

		if (pr == -1)
			return cli_usage_error(&u,
					       "--tail-bytes takes a size like 4096 or 16K, "
					       "not '%s'",
					       tail_s);
		if (pr == -2 || tail_n > TAIL_MAX)
			return cli_usage_error(&u, "--tail-bytes: at most 64M");
	}
	cli_query_init(cli, tq, sizeof(tq));
	if (cli_path(path, sizeof(path), "/v1/instances/", args[0], "/logs") != 0 ||
	    cli_path(ipath, sizeof(ipath), "/v1/instances/", args[0], NULL) != 0)
		return EXIT_FAIL;
	if (!(c = cli_client(cli, true)))
		return EXIT_FAIL;
	if (tail_s) {
		t.max = (size_t)tail_n;
		t.buf = malloc(t.max ? t.max : 1);
		if (!t.buf)
			return cli_fail("out_of_memory", "out of memory");
	}
	if (follow) {
		/* Ctrl-C is how a follow ends: exit 0, not 130 */
		sa.sa_handler = on_interrupt;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old);
		guarded = true;
	}

	/* what is there now: page until a page comes back short */
	for (;;) {
		if ((r = get_page(cli, c, path, tq, offset, &pg)) != 0) {
			hint_unknown(cli, args[0]);
			goto out;
		}
		got_any = true;
		if (t.buf)
			tail_add(&t, pg.data, pg.len);
		else if ((r = put_page(cli, &pg)) != 0)
			goto out;
		offset = pg.next;
		if (pg.len == 0 || pg.next - pg.offset < LOG_PAGE || interrupted)
			break;
		json_decref(pg.json);
		pg.json = NULL;
	}
	if (t.buf) {
		size_t skip = 0;

		/* do not start the tail in the middle of a UTF-8 character */
		while (t.cut && skip < 3 && skip < t.len &&
		       ((unsigned char)t.buf[skip] & 0xC0) == 0x80)
			skip++;
		if (cli->output == OUT_JSON) {
			json_t *j = json_pack("{s:s%, s:I}", "data", t.buf + skip, t.len - skip,
					      "next", (json_int_t)offset);

			out_json(j);
			json_decref(j);
		} else {
			fwrite(t.buf + skip, 1, t.len - skip, stdout);
		}
		fflush(stdout);
	}

	while (follow && !interrupted) {
		bool live = strcmp(pg.state, "running") == 0 || strcmp(pg.state, "pending") == 0;

		if (pg.len == 0 && !live && !logs_go_on(c, ipath, tq))
			break;
		if (pg.len == 0 || pg.next - pg.offset < LOG_PAGE)
			nap_ms(POLL_MS);
		if (interrupted)
			break;
		json_decref(pg.json);
		pg.json = NULL;
		if ((r = get_page(cli, c, path, tq, offset, &pg)) != 0) {
			if (cli->last_status == 404 && got_any) {
				fprintf(stderr, "note: instance %s was deleted\n", args[0]);
				r = EXIT_OK;
			}
			goto out;
		}
		if (pg.len && (r = put_page(cli, &pg)) != 0)
			goto out;
		offset = pg.next;
	}
	r = EXIT_OK;
out:
	if (guarded)
		sigaction(SIGINT, &old, NULL);
	json_decref(pg.json);
	free(t.buf);
	return r;
}

/* stop and start: POST .../NAME:VERB, then maybe wait. */
static int change(struct cli *cli, const struct cmd_usage *u, int argc, char **argv,
		  const char *verb, enum want w)
{
	struct client_response resp = {0};
	const char *args[1];
	bool wait = false;
	const struct opt opts[] = {
	    {"wait", NULL,
	     w == WANT_RUNNING ? "wait (up to 60 s) until it runs"
			       : "wait (up to 60 s) until its node has stopped it",
	     NULL, &wait},
	    {0},
	};
	char q[256], path[512], suffix[16];
	json_t *last = NULL;
	int r;

	r = cli_parse(u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	snprintf(suffix, sizeof(suffix), ":%s", verb);
	if (cli_path(path, sizeof(path), "/v1/instances/", args[0], suffix) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "POST", path, q, NULL, &resp)) != 0) {
		hint_unknown(cli, args[0]);
		return r;
	}
	if (!wait) {
		r = print_instance(cli, resp.json);
		client_response_release(&resp);
		return r;
	}
	client_response_release(&resp);
	r = wait_for(cli, args[0], q, w, &last);
	if (r == 0)
		r = print_instance(cli, last);
	json_decref(last);
	return r;
}

static int instance_stop(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance stop",
	    .args = "NAME",
	    .summary = "Stop an instance (SIGTERM, then SIGKILL); it keeps its name, address "
		       "and node, and `ciel instance start` runs it again.",
	    .example = "  ciel instance stop web --wait",
	    .min_args = 1,
	    .max_args = 1,
	};

	return change(cli, &u, argc, argv, "stop", WANT_STOPPED);
}

static int instance_start(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance start",
	    .args = "NAME",
	    .summary = "Start a stopped or exited instance again, with the same command.",
	    .example = "  ciel instance start web --wait",
	    .min_args = 1,
	    .max_args = 1,
	};

	return change(cli, &u, argc, argv, "start", WANT_RUNNING);
}

static int instance_delete(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "instance delete",
	    .args = "NAME",
	    .summary = "Delete an instance: its node stops it and removes it, then it is gone "
		       "from the list.",
	    .example = "  ciel instance delete web --wait",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1];
	bool wait = false;
	const struct opt opts[] = {
	    {"wait", NULL, "wait (up to 60 s) until it is gone", NULL, &wait},
	    {0},
	};
	struct client_response resp = {0};
	char q[256], path[512];
	json_t *last = NULL;
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if (cli_path(path, sizeof(path), "/v1/instances/", args[0], NULL) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "DELETE", path, q, NULL, &resp)) != 0) {
		hint_unknown(cli, args[0]);
		return r;
	}
	if (wait && (r = wait_for(cli, args[0], q, WANT_GONE, &last)) != 0) {
		client_response_release(&resp);
		return r;
	}
	if (cli->output == OUT_JSON) {
		if (wait) {
			json_t *j = json_pack("{s:s}", "deleted", args[0]);

			out_json(j);
			json_decref(j);
		} else {
			out_json(resp.json);
		}
	} else {
		printf("instance %s %s\n", args[0], wait ? "deleted" : "deleting");
	}
	client_response_release(&resp);
	return EXIT_OK;
}

const struct group group_instance = {
    .name = "instance",
    .summary = "run and manage containers",
    .example = "  ciel instance run alpine --name web --wait -- httpd -f -p 8080\n"
	       "  ciel instance list\n  ciel instance logs web --follow",
    .verbs =
	(const struct verb[]){
	    {"run", "start an instance of an image", instance_run},
	    {"list", "list instances", instance_list},
	    {"show", "show one instance", instance_show},
	    {"logs", "print an instance's output", instance_logs},
	    {"stop", "stop an instance", instance_stop},
	    {"start", "start a stopped instance", instance_start},
	    {"delete", "delete an instance", instance_delete},
	    {0},
	},
};
