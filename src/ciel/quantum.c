/*
 * quantum — `ciel quantum profiles|run|jobs|result|cancel|delete`: OpenQASM
 * circuits run by the region's simulator on a device profile. A job is
 * queued at once and runs on a node when cores are free, so `run` answers
 * with the queued job and --wait (or `result --wait`) polls until it ends.
 *
 * Counts follow Qiskit's convention: the key's rightmost character is c[0].
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "qsim/qrun.h"
#include "util/ts.h"

#define POLL_MS 500
#define QASM_FILE_MAX ((1 << 20) - 4096) /* the API's body limit, less the other members */
#define SHOTS_MAX 1000000		 /* the simulator's most */
#define ROWS_MAX 32			 /* a table longer than this is for --output json */

static void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static const char *member_str(const json_t *obj, const char *name)
{
	const char *s = json_string_value(json_object_get(obj, name));

	return s ? s : "";
}

static bool finished(const char *state)
{
	return strcmp(state, "completed") == 0 || strcmp(state, "failed") == 0 ||
	       strcmp(state, "cancelled") == 0;
}

/* "0,1" from a job's cpus array; "" without one. */
static const char *fmt_cpus(const json_t *job, char *buf, size_t size)
{
	const json_t *v;
	size_t i, o = 0;

	buf[0] = '\0';
	json_array_foreach(json_object_get(job, "cpus"), i, v)
	{
		if (o >= size)
			break;
		o += (size_t)snprintf(buf + o, size - o, "%s%" JSON_INTEGER_FORMAT, i ? "," : "",
				      json_integer_value(v));
	}
	return buf;
}

static void hint_unknown(struct cli *cli, const char *id)
{
	if (cli->last_status == 404)
		cli_hint("no quantum job %s: `ciel quantum jobs` lists the tenant's jobs", id);
}

/* ---- profiles ---- */

static void profile_row(const json_t *it, struct cells *c)
{
	const json_t *native = json_object_get(it, "native_gates"), *v;
	const json_t *conn = json_object_get(it, "connectivity");
	size_t i, o = 0, cut;

	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "technology", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "qubits", c->s[2], sizeof(c->s[2]));
	json_array_foreach(native, i, v) if (o < sizeof(c->s[3])) o +=
	    (size_t)snprintf(c->s[3] + o, sizeof(c->s[3]) - o, "%s%s", i ? "," : "",
			     json_string_value(v) ? json_string_value(v) : "?");
	fmt_member(conn, "kind", c->s[4], sizeof(c->s[4]));
	/* the first phrase: the rest is for --output json */
	fmt_member(it, "description", c->s[5], sizeof(c->s[5]));
	cut = strcspn(c->s[5], ":.");
	c->s[5][cut] = '\0';
}

static int quantum_profiles(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quantum profiles",
	    .summary = "List the device profiles a circuit can run on: technology, qubits, "
		       "native gates. --output json shows connectivity, noise figures and their "
		       "published sources.",
	    .example = "  ciel quantum profiles\n  ciel quantum profiles --output json",
	};
	static const char *const hdr[] = {"NAME",	  "TECHNOLOGY",	  "QUBITS",
					  "NATIVE GATES", "CONNECTIVITY", "LIKE"};
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	return cli_list(cli, "/v1/quantum/profiles", NULL, 6, hdr, profile_row, "no profiles");
}

/* ---- the counts table ---- */

/* The result of a completed job: counts, most frequent first, with bars, then the figures. */
static int print_result(const json_t *job)
{
	const json_t *res = json_object_get(job, "result"),
		     *counts = json_object_get(res, "counts");
	char dur[64], kept[64];

	if (qrun_print_counts(stdout, counts, ROWS_MAX) < 0)
		return cli_fail("out_of_memory", "out of memory");
	if (json_is_number(json_object_get(job, "duration_s")))
		snprintf(dur, sizeof(dur), "%.2f s",
			 json_number_value(json_object_get(job, "duration_s")));
	else
		snprintf(dur, sizeof(dur), "-");
	snprintf(kept, sizeof(kept), "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(res, "shots_kept")));
	printf("\nshots: %" JSON_INTEGER_FORMAT
	       "  kept: %s  profile: %s  qubits: %" JSON_INTEGER_FORMAT
	       "  method: %s  depth: %" JSON_INTEGER_FORMAT "  duration: %s\n",
	       json_integer_value(json_object_get(res, "shots")), kept, member_str(job, "profile"),
	       json_integer_value(json_object_get(res, "qubits")), member_str(res, "method"),
	       json_integer_value(json_object_get(res, "depth")), dur);
	printf("(counts: c[0] is the rightmost bit)\n");
	return EXIT_OK;
}

/* A finished job: its result table (or JSON); a failed or cancelled one exits 1 with why. */
static int print_end(struct cli *cli, const json_t *job)
{
	const char *state = member_str(job, "state"), *id = member_str(job, "id");

	if (cli->output == OUT_JSON)
		out_json(job);
	if (strcmp(state, "failed") == 0)
		return cli_fail("failed", "quantum job %s failed: %s", id,
				member_str(job, "reason"));
	if (strcmp(state, "cancelled") == 0)
		return cli_fail("cancelled", "quantum job %s was cancelled", id);
	if (cli->output == OUT_JSON)
		return EXIT_OK;
	return print_result(job);
}

/*
 * Poll the job until it ends, telling its state changes on stderr; then
 * print its end. No time limit: a job takes what it takes (Ctrl-C stops
 * waiting, not the job).
 */
static int wait_job(struct cli *cli, const char *id, const char *q)
{
	struct client_response resp = {0};
	struct client *c = cli_client(cli, true);
	char path[512], seen[256] = "", now[256], cpus[128];
	int r;

	if (!c || cli_path(path, sizeof(path), "/v1/quantum/jobs/", id, NULL) != 0)
		return EXIT_FAIL;
	for (;;) {
		const char *state;
		struct ciel_err err;
		int rc = client_request(c, "GET", path, q, NULL, &resp, &err);

		if (cli_report(cli, c, rc, &err, &resp) != 0) {
			hint_unknown(cli, id);
			return EXIT_FAIL;
		}
		state = member_str(resp.json, "state");
		if (strcmp(state, "running") == 0)
			snprintf(now, sizeof(now), "running on %s (cpus %s)",
				 member_str(resp.json, "node"),
				 fmt_cpus(resp.json, cpus, sizeof(cpus)));
		else if (strcmp(state, "queued") == 0 && member_str(resp.json, "node")[0])
			snprintf(now, sizeof(now), "queued on %s", member_str(resp.json, "node"));
		else if (strcmp(state, "queued") == 0 && member_str(resp.json, "waiting")[0])
			snprintf(now, sizeof(now), "queued (%s)", member_str(resp.json, "waiting"));
		else
			snprintf(now, sizeof(now), "%s", state);
		if (strcmp(now, seen) != 0) {
			fprintf(stderr, "%s: %s\n", id, now);
			snprintf(seen, sizeof(seen), "%s", now);
		}
		if (finished(state)) {
			r = print_end(cli, resp.json);
			client_response_release(&resp);
			return r;
		}
		client_response_release(&resp);
		nap_ms(POLL_MS);
	}
}

/* ---- run ---- */

/* The file's text, at most QASM_FILE_MAX bytes; NULL after printing why. Caller frees. */
static char *read_qasm(const char *file)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	size_t n = 0, cap = 65536;
	char *buf;

	if (!f) {
		cli_fail("invalid_argument", "%s: %s", file, strerror(errno));
		return NULL;
	}
	buf = malloc(cap + 1);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (n > QASM_FILE_MAX) {
			cli_fail("payload_too_large", "%s: larger than %d bytes", file,
				 QASM_FILE_MAX);
			free(buf);
			buf = NULL;
			break;
		}
		if (got == 0) {
			if (ferror(f)) {
				cli_fail("io_error", "%s: %s", file, strerror(errno));
				free(buf);
				buf = NULL;
			}
			break;
		}
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (buf)
		buf[n] = '\0';
	if (f != stdin)
		fclose(f);
	if (buf && strlen(buf) != n) {
		cli_fail("invalid_argument", "%s: holds a NUL byte: not an OpenQASM file", file);
		free(buf);
		return NULL;
	}
	return buf;
}

/* A decimal integer in [min, max]; -1 if s is none. */
static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static void job_row(const json_t *it, struct cells *c)
{
	fmt_member(it, "id", c->s[0], sizeof(c->s[0]));
	fmt_member(it, "name", c->s[1], sizeof(c->s[1]));
	fmt_member(it, "state", c->s[2], sizeof(c->s[2]));
	fmt_member(it, "profile", c->s[3], sizeof(c->s[3]));
	fmt_member(it, "qubits", c->s[4], sizeof(c->s[4]));
	fmt_member(it, "shots", c->s[5], sizeof(c->s[5]));
	fmt_member(it, "node", c->s[6], sizeof(c->s[6]));
	fmt_cpus(it, c->s[7], sizeof(c->s[7]));
	fmt_age(json_object_get(it, "created"), c->s[8], sizeof(c->s[8]));
}

static const char *const job_hdr[] = {"ID",    "NAME", "STATE", "PROFILE", "QUBITS",
				      "SHOTS", "NODE", "CPUS",	"AGE"};

static int quantum_run(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quantum run",
	    .args = "FILE",
	    .summary =
		"Run an OpenQASM 2.0 (or Qiskit-style 3) circuit on a device profile of the "
		"region's simulator: it is transpiled to the device's native gates and "
		"connectivity and simulated with its noise. Without --wait it prints the queued "
		"job; with --wait it follows the job (state changes on stderr) and prints the "
		"counts, and exits 1 if the job failed. FILE '-' reads standard input. After "
		"`quantum`, --profile names the device profile: give the credentials profile "
		"before it (`ciel --profile acme quantum run ...`) or in CIEL_PROFILE.",
	    .example =
		"  ciel quantum run bell.qasm --shots 1000 --profile superconducting --wait\n"
		"  ciel quantum run qft.qasm --shots 100 --precision single --name qft",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1], *shots_s = NULL, *profile = NULL, *device = NULL, *seed_s = NULL,
			     *prec = NULL, *name = NULL;
	bool wait = false;
	const struct opt opts[] = {
	    {"shots", "N", "shots, 1 to 1000000 (default 1024; the tenant's quota may be lower)",
	     &shots_s, NULL},
	    {"profile", "NAME", "device profile (default ideal; `ciel quantum profiles`)", &profile,
	     NULL},
	    {"device", "NAME", "the same as --profile", &device, NULL},
	    {"seed", "N", "random seed, for counts that repeat (default: random, shown)", &seed_s,
	     NULL},
	    {"precision", "P", "double (default) or single: half the memory", &prec, NULL},
	    {"name", "NAME", "a name for the job (" CLI_NAME_RULES ")", &name, NULL},
	    {"wait", NULL, "wait until the job ends and print its counts", NULL, &wait},
	    {0},
	};
	struct client_response resp = {0};
	int64_t shots = 0, seed = 0;
	json_t *body = NULL;
	char *text = NULL, q[256];
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	if (shots_s && parse_int(shots_s, 1, SHOTS_MAX, &shots) < 0)
		return cli_usage_error(&u, "--shots takes a whole number from 1 to %d, not '%s'",
				       SHOTS_MAX, shots_s);
	if (seed_s && parse_int(seed_s, 0, INT64_MAX, &seed) < 0)
		return cli_usage_error(&u, "--seed takes a whole number >= 0, not '%s'", seed_s);
	if (prec && strcmp(prec, "double") != 0 && strcmp(prec, "single") != 0)
		return cli_usage_error(&u, "--precision must be double or single, not '%s'", prec);
	if (profile && device && strcmp(profile, device) != 0)
		return cli_usage_error(&u, "--profile %s and --device %s disagree: give one",
				       profile, device);
	if (!profile)
		profile = device;
	if (name && cli_check_name("--name", name) != 0)
		return EXIT_FAIL;
	if (!(text = read_qasm(args[0])))
		return EXIT_FAIL;
	body = json_pack("{s:s}", "qasm", text);
	if (!body || (shots_s && json_object_set_new(body, "shots", json_integer(shots)) < 0) ||
	    (seed_s && json_object_set_new(body, "seed", json_integer(seed)) < 0) ||
	    (profile && json_object_set_new(body, "profile", json_string(profile)) < 0) ||
	    (prec && json_object_set_new(body, "precision", json_string(prec)) < 0) ||
	    (name && json_object_set_new(body, "name", json_string(name)) < 0)) {
		r = cli_fail("out_of_memory", "out of memory");
		goto out;
	}
	cli_query_init(cli, q, sizeof(q));
	if ((r = cli_call(cli, "POST", "/v1/quantum/jobs", q, body, &resp)) != 0) {
		if (strcmp(cli->last_field, "profile") == 0)
			cli_hint("`ciel quantum profiles` lists the profiles");
		else if (strcmp(cli->last_code, "quota_exceeded") == 0)
			cli_hint(
			    "`ciel quota show --output json` shows the tenant's quantum quotas");
		goto out;
	}
	if (!wait) {
		r = cli_print_one(cli, resp.json, 9, job_hdr, job_row);
		goto out;
	}
	r = wait_job(cli, member_str(resp.json, "id"), q);
out:
	client_response_release(&resp);
	json_decref(body);
	free(text);
	return r;
}

static int quantum_jobs(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quantum jobs",
	    .summary = "List the tenant's quantum jobs, oldest first, with where they run.",
	    .example = "  ciel quantum jobs\n  ciel quantum jobs --output json",
	};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/quantum/jobs", q, 9, job_hdr, job_row,
			"no quantum jobs; start one with `ciel quantum run FILE`");
}

static int quantum_result(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quantum result",
	    .args = "ID",
	    .summary = "Print a job's counts (most frequent first) and figures: shots kept, "
		       "depth and gate counts of the transpiled circuit, duration. A failed or "
		       "cancelled job exits 1 with why; one not finished yet exits 1 unless "
		       "--wait.",
	    .example = "  ciel quantum result q-0123456789ab\n"
		       "  ciel quantum result q-0123456789ab --wait --output json",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1];
	bool wait = false;
	const struct opt opts[] = {
	    {"wait", NULL, "wait until the job ends", NULL, &wait},
	    {0},
	};
	struct client_response resp = {0};
	char q[256], path[512];
	const char *state;
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if (wait)
		return wait_job(cli, args[0], q);
	if (cli_path(path, sizeof(path), "/v1/quantum/jobs/", args[0], NULL) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "GET", path, q, NULL, &resp)) != 0) {
		hint_unknown(cli, args[0]);
		return r;
	}
	state = member_str(resp.json, "state");
	if (finished(state)) {
		r = print_end(cli, resp.json);
	} else {
		if (cli->output == OUT_JSON)
			out_json(resp.json);
		r = cli_fail("not_finished", "quantum job %s is %s", args[0], state);
		cli_hint("`ciel quantum result %s --wait` waits for it", args[0]);
	}
	client_response_release(&resp);
	return r;
}

/* DELETE the job; *state gets what the answer says it was or became. */
static int delete_once(struct cli *cli, const char *id, const char *q, char *state, size_t size)
{
	struct client_response resp = {0};
	char path[512];
	int r;

	if (cli_path(path, sizeof(path), "/v1/quantum/jobs/", id, NULL) != 0)
		return EXIT_FAIL;
	if ((r = cli_call(cli, "DELETE", path, q, NULL, &resp)) != 0) {
		hint_unknown(cli, id);
		return r;
	}
	snprintf(state, size, "%s",
		 member_str(resp.json, "deleted")[0] ? "deleted" : member_str(resp.json, "state"));
	client_response_release(&resp);
	return EXIT_OK;
}

static int print_done(struct cli *cli, const char *id, const char *what)
{
	if (cli->output == OUT_JSON) {
		json_t *j = json_pack("{s:s, s:s}", "id", id, "state", what);

		out_json(j);
		json_decref(j);
	} else {
		printf("quantum job %s %s\n", id, what);
	}
	return EXIT_OK;
}

static int quantum_cancel(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quantum cancel",
	    .args = "ID",
	    .summary = "Cancel a queued or running job: its worker is stopped and its cores go "
		       "to the next job. The job stays listed as cancelled until deleted.",
	    .example = "  ciel quantum cancel q-0123456789ab",
	    .min_args = 1,
	    .max_args = 1,
	};
	struct client_response resp = {0};
	const char *args[1];
	char q[256], path[512], state[32];
	int r;

	r = cli_parse(&u, NULL, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if (cli_path(path, sizeof(path), "/v1/quantum/jobs/", args[0], NULL) != 0)
		return EXIT_FAIL;
	/* DELETE removes a finished job: cancel must not do that by surprise */
	if ((r = cli_call(cli, "GET", path, q, NULL, &resp)) != 0) {
		hint_unknown(cli, args[0]);
		return r;
	}
	snprintf(state, sizeof(state), "%s", member_str(resp.json, "state"));
	client_response_release(&resp);
	if (finished(state)) {
		cli_fail("conflict", "quantum job %s is already %s", args[0], state);
		cli_hint("`ciel quantum delete %s` removes it", args[0]);
		return EXIT_FAIL;
	}
	if ((r = delete_once(cli, args[0], q, state, sizeof(state))) != 0)
		return r;
	return print_done(cli, args[0], "cancelled");
}

static int quantum_delete(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "quantum delete",
	    .args = "ID",
	    .summary = "Delete a job and its result; a queued or running one is cancelled first.",
	    .example = "  ciel quantum delete q-0123456789ab",
	    .min_args = 1,
	    .max_args = 1,
	};
	const char *args[1];
	char q[256], state[32];
	int r;

	r = cli_parse(&u, NULL, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	if ((r = delete_once(cli, args[0], q, state, sizeof(state))) != 0)
		return r;
	/* an active job was only cancelled by the first DELETE */
	if (strcmp(state, "deleted") != 0 &&
	    (r = delete_once(cli, args[0], q, state, sizeof(state))) != 0)
		return r;
	return print_done(cli, args[0], "deleted");
}

const struct group group_quantum = {
    .name = "quantum",
    .summary = "run OpenQASM circuits on simulated quantum devices",
    .example = "  ciel quantum profiles\n"
	       "  ciel quantum run bell.qasm --shots 1000 --profile superconducting --wait\n"
	       "  ciel quantum jobs\n  ciel quantum result q-0123456789ab",
    .verbs =
	(const struct verb[]){
	    {"profiles", "list the device profiles", quantum_profiles},
	    {"run", "run a circuit", quantum_run},
	    {"jobs", "list quantum jobs", quantum_jobs},
	    {"result", "print a job's counts", quantum_result},
	    {"cancel", "cancel a queued or running job", quantum_cancel},
	    {"delete", "delete a job", quantum_delete},
	    {0},
	},
};
