/*
 * up — `ciel up` and `ciel down`: an all-in-one region on this machine.
 *
 * up: `cield init` (idempotent: CA, server certificate, operator key,
 * DATA/operator.credentials), `cield serve` detached, wait for /healthz, one
 * ciel-agent per zone with a fresh join token, and the operator profile
 * copied into the user's credentials file as "default". Running it again
 * while the region is up only reports it; after a crash it restarts what is
 * missing (agents that still hold node.credentials rejoin without a token).
 * down: SIGTERM what the pid files name (agents first, then cield), SIGKILL
 * after 5 s; after each agent, `ciel-agent teardown` removes what its node
 * left on the machine (containers, namespaces, bridges, nft table, cgroups).
 *
 * With --model FILE[:NAME] it also deploys that GGUF file as the public model
 * NAME and waits until a node serves it (skipped when NAME already runs that
 * very file), so `ciel chat NAME "..."` works as soon as up returns.
 *
 * Layout of DATA: cield.pid, cield.log, operator.credentials, pki/ca.pem,
 * agents/<zone>/{agent.pid,agent.log,node.credentials}.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli.h"
#include "crypto/enc.h"
#include "proc.h"
#include "util/ts.h"

#define HEALTH_TIMEOUT_MS 10000
#define HEALTH_POLL_MS 20
#define NODES_WAIT_MS 5000
#define STOP_WAIT_MS 5000
#define MAX_ZONES 64
#define MODEL_WAIT_S 300

struct up_opts {
	char data[PATH_MAX];
	char listen[256];
	char endpoint[300];
	int zones;
	bool no_agents;
	char model_file[PATH_MAX]; /* --model: "" if none */
	char model_name[32];
};

/* $HOME/.local/share/ciel */
static int default_data(char *out, size_t size)
{
	const char *home = getenv("HOME");

	if (!home || !*home)
		return -1;
	return (size_t)snprintf(out, size, "%s/.local/share/ciel", home) < size ? 0 : -1;
}

/* The endpoint clients use for a listen address: a wildcard becomes loopback. */
static int endpoint_for(const char *listen, char *out, size_t size)
{
	const char *colon = strrchr(listen, ':');
	char host[256];
	char *end;
	long port;

	if (!colon || colon == listen)
		return -1;
	port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "[::]") == 0 || strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "[::1]");
	else if (strchr(host, ':') && host[0] != '[')
		return -1; /* an IPv6 literal needs brackets: [::1]:7443 */
	return (size_t)snprintf(out, size, "https://%s:%ld", host, port) < size ? 0 : -1;
}

static void pathf(char *out, size_t size, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size)
		out[0] = '\0';
}

/* Load DATA/operator.credentials [default], filling in what init left out.
 * Reads the file only: CIEL_* in the environment must not replace the
 * operator's key with whatever key the user has exported. */
static int load_operator(const struct up_opts *o, struct profile *p, struct ciel_err *err)
{
	char file[PATH_MAX + 32];

	pathf(file, sizeof(file), o->data, "operator.credentials");
	if (profile_load(file, "default", p, err) < 0)
		return -1;
	if (!p->key_id[0] || !p->secret[0])
		return ciel_err_set(err, CIEL_EINVAL, "%s: no key_id or secret", file);
	if (!p->endpoint[0])
		snprintf(p->endpoint, sizeof(p->endpoint), "%s", o->endpoint);
	if (!p->scope[0])
		snprintf(p->scope, sizeof(p->scope), "region");
	if (!p->ca_file[0] || p->ca_file[0] != '/')
		if ((size_t)snprintf(p->ca_file, sizeof(p->ca_file), "%s/pki/ca.pem", o->data) >=
		    sizeof(p->ca_file))
			return ciel_err_set(err, CIEL_EINVAL, "data directory path too long");
	return 0;
}

static int operator_client(const struct profile *p, struct client *c, struct ciel_err *err)
{
	struct client_config cfg = {0};
	int r;

	snprintf(cfg.endpoint, sizeof(cfg.endpoint), "%s", p->endpoint);
	snprintf(cfg.key_id, sizeof(cfg.key_id), "%s", p->key_id);
	snprintf(cfg.secret, sizeof(cfg.secret), "%s", p->secret);
	snprintf(cfg.scope, sizeof(cfg.scope), "%s", p->scope);
	snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s", p->ca_file);
	snprintf(cfg.profile, sizeof(cfg.profile), "default");
	cfg.profile_found = true;
	r = client_init(c, &cfg, err);
	explicit_bzero(&cfg, sizeof(cfg));
	return r;
}

/* The user's credentials file: --credentials, CIEL_CREDENTIALS_FILE, default. */
static int user_credentials(const struct cli *cli, char *out, size_t size)
{
	const char *f = cli->credentials;
	struct ciel_err err;

	if (!f || !*f)
		f = getenv("CIEL_CREDENTIALS_FILE");
	if (f && *f)
		return (size_t)snprintf(out, size, "%s", f) < size ? 0 : -1;
	return profile_default_path(out, size, &err);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Poll /healthz until it answers 200; -1 if cield died or time ran out. */
static int wait_healthy(const struct up_opts *o, pid_t pid, int64_t *ready_ms)
{
	struct client_config cfg = {0};
	struct client_response resp = {0};
	struct client c;
	struct ciel_err err;
	int64_t start = ts_mono_ms();
	int ret = -1;

	snprintf(cfg.endpoint, sizeof(cfg.endpoint), "%s", o->endpoint);
	if ((size_t)snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s/pki/ca.pem", o->data) >=
	    sizeof(cfg.ca_file))
		return -1;
	if (client_init(&c, &cfg, &err) < 0) {
		cli_fail_err(&err);
		return -1;
	}
	c.connect_timeout_ms = 1000;
	c.timeout_ms = 2000;
	for (;;) {
		if (client_request(&c, "GET", "/healthz", NULL, NULL, &resp, &err) == 0 &&
		    resp.status == 200) {
			ret = 0;
			break;
		}
		if (!proc_alive(pid, "cield")) {
			cli_fail("unavailable", "cield exited during start-up");
			break;
		}
		if (ts_mono_ms() - start >= HEALTH_TIMEOUT_MS) {
			if (resp.status)
				cli_fail("unavailable", "%s/healthz answered HTTP %ld after %d s",
					 o->endpoint, resp.status, HEALTH_TIMEOUT_MS / 1000);
			else
				cli_fail("unavailable", "%s/healthz not ready after %d s: %s",
					 o->endpoint, HEALTH_TIMEOUT_MS / 1000, err.msg);
			break;
		}
		sleep_ms(HEALTH_POLL_MS);
	}
	*ready_ms = ts_mono_ms() - start;
	client_response_release(&resp);
	client_release(&c);
	return ret;
}

/* Zone names from /v1/region, else az1..azN. */
static size_t region_zones(struct cli *cli, struct client *c, const struct up_opts *o,
			   char zones[][64])
{
	struct client_response resp = {0};
	const json_t *z;
	size_t i, n = 0;

	if (cli_call_with(cli, c, "GET", "/v1/region", NULL, NULL, NULL, &resp) == 0) {
		json_array_foreach(json_object_get(resp.json, "zones"), i, z)
		{
			const char *name = json_is_string(z)
					       ? json_string_value(z)
					       : json_string_value(json_object_get(z, "name"));

			if (name && n < MAX_ZONES && strlen(name) < 64)
				snprintf(zones[n++], 64, "%s", name);
		}
		client_response_release(&resp);
	}
	if (n == 0)
		for (int k = 1; k <= o->zones; k++)
			snprintf(zones[n++], 64, "az%d", k);
	return n;
}

struct agent {
	char zone[64];
	char name[80];
	char dir[PATH_MAX];
	pid_t pid;
	bool already;
};

static int start_agent(struct cli *cli, struct client *c, const struct up_opts *o, struct agent *a)
{
	char agent_bin[PATH_MAX], log[PATH_MAX + 32], pidf[PATH_MAX + 32], creds[PATH_MAX + 32];
	char ca[PATH_MAX + 16], token[512] = "";
	struct client_response resp = {0};
	struct ciel_err err;
	json_t *body;
	pid_t old;
	int r;

	pathf(log, sizeof(log), a->dir, "agent.log");
	pathf(pidf, sizeof(pidf), a->dir, "agent.pid");
	pathf(creds, sizeof(creds), a->dir, "node.credentials");
	pathf(ca, sizeof(ca), o->data, "pki/ca.pem");
	if (proc_mkdirs(a->dir, 0700, &err) < 0)
		return cli_fail_err(&err);
	old = proc_read_pid(pidf);
	if (proc_alive(old, "ciel-agent")) {
		a->pid = old;
		a->already = true;
		return EXIT_OK;
	}
	if (access(creds, F_OK) != 0) {
		body = json_pack("{s:s}", "zone", a->zone);
		r = cli_call_with(cli, c, "POST", "/v1/nodes/tokens", NULL, body, NULL, &resp);
		json_decref(body);
		if (r)
			return r;
		fmt_member(resp.json, "token", token, sizeof(token));
		client_response_release(&resp);
		if (!token[0])
			return cli_fail("internal",
					"join token for zone %s: no token in the answer", a->zone);
	}
	proc_find("ciel-agent", agent_bin, sizeof(agent_bin));
	{
		char *argv[] = {agent_bin,
				(char *)"--endpoint",
				(char *)o->endpoint,
				(char *)"--ca-file",
				ca,
				(char *)"--zone",
				a->zone,
				(char *)"--name",
				a->name,
				(char *)"--state",
				a->dir,
				token[0] ? (char *)"--token" : NULL,
				token,
				NULL};

		if (proc_spawn(argv, log, &a->pid, &err) < 0) {
			cli_fail_err(&err);
			if (err.code == CIEL_ENOTFOUND)
				cli_hint("build it (`make build`) or put ciel-agent in PATH");
			return EXIT_FAIL;
		}
	}
	explicit_bzero(token, sizeof(token));
	if (proc_write_pid(pidf, a->pid, &err) < 0)
		return cli_fail_err(&err);
	return EXIT_OK;
}

/* Wait until every agent's node is Ready; returns how many are. */
static size_t wait_nodes(struct client *c, const struct agent *ag, size_t n)
{
	int64_t end = ts_mono_ms() + NODES_WAIT_MS;
	struct client_response resp = {0};
	size_t ready = 0;

	/* agents that have joined show it locally: wait for that before asking */
	for (size_t k = 0; k < n; k++) {
		char creds[PATH_MAX + 32];

		pathf(creds, sizeof(creds), ag[k].dir, "node.credentials");
		while (access(creds, F_OK) != 0 && ts_mono_ms() < end &&
		       proc_alive(ag[k].pid, NULL))
			sleep_ms(HEALTH_POLL_MS);
	}
	for (;;) {
		struct ciel_err err;
		const json_t *it;
		size_t i;

		ready = 0;
		if (client_request(c, "GET", "/v1/nodes", NULL, NULL, &resp, &err) == 0 &&
		    resp.status == 200) {
			json_array_foreach(cli_items(resp.json), i, it)
			{
				const char *name = json_string_value(json_object_get(it, "name"));
				const char *state = json_string_value(json_object_get(it, "state"));

				for (size_t k = 0; k < n; k++)
					if (name && state && strcmp(name, ag[k].name) == 0 &&
					    strcmp(state, "Ready") == 0)
						ready++;
			}
		}
		client_response_release(&resp);
		if (ready >= n || ts_mono_ms() >= end)
			return ready;
		sleep_ms(100);
	}
}

/* True if s is a valid model name (the region's rules for names). */
static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 2 || n > 31 || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* FILE[:NAME] into o; without NAME, the file's name up to its first '.' or '-f32'-like tail. */
static int parse_model_arg(const char *arg, struct up_opts *o)
{
	const char *colon = strrchr(arg, ':'), *base;
	size_t n;

	if (colon && name_ok(colon + 1)) {
		snprintf(o->model_name, sizeof(o->model_name), "%s", colon + 1);
		n = (size_t)(colon - arg);
	} else {
		n = strlen(arg);
	}
	if (n == 0 || n >= sizeof(o->model_file))
		return -1;
	memcpy(o->model_file, arg, n);
	o->model_file[n] = '\0';
	if (o->model_name[0])
		return 0;
	base = strrchr(o->model_file, '/');
	base = base ? base + 1 : o->model_file;
	n = strcspn(base, ".");
	if (n >= sizeof(o->model_name))
		return -1;
	for (size_t i = 0; i < n; i++)
		o->model_name[i] = (base[i] >= 'A' && base[i] <= 'Z') ? (char)(base[i] - 'A' + 'a')
				   : (base[i] == '_')		      ? '-'
								      : base[i];
	o->model_name[n] = '\0';
	return name_ok(o->model_name) ? 0 : -1;
}

static int parse_up(struct cli *cli, int argc, char **argv, struct up_opts *o)
{
	static const struct cmd_usage u = {
	    .name = "up",
	    .summary = "Start an all-in-one region on this machine: cield with an embedded "
		       "store and one ciel-agent per zone, all detached. Writes the operator "
		       "credentials as profile \"default\" of your credentials file.",
	    .example = "  ciel up\n  ciel up --data /tmp/region --zones 1 --listen 127.0.0.1:8443\n"
		       "  ciel up --model stories260k.gguf:stories\n"
		       "  ciel down",
	};
	const char *data = NULL, *zones = NULL, *listen = NULL, *model = NULL;
	bool no_agents = false;
	const struct opt opts[] = {
	    {"data", "DIR", "state directory (default ~/.local/share/ciel)", &data, NULL},
	    {"zones", "N", "number of zones, az1..azN (default 3)", &zones, NULL},
	    {"listen", "HOST:PORT", "API address (default 127.0.0.1:7443)", &listen, NULL},
	    {"no-agents", NULL, "start cield only", NULL, &no_agents},
	    {"model", "FILE[:NAME]",
	     "deploy a GGUF model as the public model NAME (default: the file's name) and "
	     "wait until it is ready",
	     &model, NULL},
	    {0},
	};
	char *end;
	long z = 3;
	int r;

	(void)cli;
	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	if (zones) {
		z = strtol(zones, &end, 10);
		if (*end || end == zones || z < 1 || z > MAX_ZONES)
			return cli_usage_error(&u, "--zones must be 1..%d, not '%s'", MAX_ZONES,
					       zones);
	}
	o->zones = (int)z;
	o->no_agents = no_agents;
	if (model && parse_model_arg(model, o) < 0)
		return cli_usage_error(&u,
				       "--model takes FILE or FILE:NAME, NAME being %s, not "
				       "'%s'",
				       CLI_NAME_RULES, model);
	if (model && no_agents)
		return cli_usage_error(&u, "--model needs a node to run on: drop --no-agents");
	snprintf(o->listen, sizeof(o->listen), "%s", listen ? listen : "127.0.0.1:7443");
	if (endpoint_for(o->listen, o->endpoint, sizeof(o->endpoint)) < 0)
		return cli_usage_error(&u,
				       "--listen must be HOST:PORT (IPv6 as [::1]:7443), not "
				       "'%s'",
				       o->listen);
	if (data) {
		if ((size_t)snprintf(o->data, sizeof(o->data), "%s", data) >= sizeof(o->data))
			return cli_usage_error(&u, "--data: path too long");
	} else if (default_data(o->data, sizeof(o->data)) < 0) {
		return cli_usage_error(&u, "HOME is not set: name the state directory with --data");
	}
	return -1; /* parsed: the caller goes on (help and errors return >= 0) */
}

/* Make o->data absolute (it goes into pid files, profiles and agents' args). */
static int absolute_data(struct up_opts *o)
{
	char real[PATH_MAX];
	struct ciel_err err;

	if (proc_mkdirs(o->data, 0700, &err) < 0)
		return cli_fail_err(&err);
	if (!realpath(o->data, real))
		return cli_fail("io_error", "%s: %s", o->data, strerror(errno));
	snprintf(o->data, sizeof(o->data), "%s", real);
	return 0;
}

static void print_next_steps(const char *model)
{
	printf("\nnext steps:\n"
	       "  ciel zone list\n"
	       "  ciel tenant create acme --save-profile acme\n");
	if (model && model[0])
		printf("  ciel --profile acme chat %s \"Once upon a time\"\n", model);
	printf("  ciel --profile acme audit list\n");
}

/* False if an agent this region started has a pid file but no process. */
static bool agents_alive(const struct up_opts *o)
{
	char dir[PATH_MAX], pidf[PATH_MAX + 300];
	struct dirent *de;
	bool alive = true;
	DIR *d;

	pathf(dir, sizeof(dir), o->data, "agents");
	d = opendir(dir);
	while (d && alive && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(pidf, sizeof(pidf), "%s/%s/agent.pid", dir, de->d_name);
		if (access(pidf, F_OK) == 0 && !proc_alive(proc_read_pid(pidf), "ciel-agent"))
			alive = false;
	}
	if (d)
		closedir(d);
	return alive;
}

static int report_already_up(struct cli *cli, const struct up_opts *o, pid_t pid)
{
	struct profile *p = calloc(1, sizeof(*p));
	char creds[PATH_MAX + 32];
	struct ciel_err err;
	const char *endpoint = o->endpoint;

	if (!p)
		return cli_fail("out_of_memory", "out of memory");
	pathf(creds, sizeof(creds), o->data, "operator.credentials");
	if (load_operator(o, p, &err) == 0)
		endpoint = p->endpoint;
	if (cli->output == OUT_JSON) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s}", "status", "already_up",
				      "endpoint", endpoint, "data_dir", o->data, "pid", (int)pid,
				      "operator_credentials", creds);

		out_json(j);
		json_decref(j);
	} else {
		printf("region already up: %s (cield pid %d)\n", endpoint, (int)pid);
		printf("operator credentials: %s\n", creds);
		printf("stop it with: ciel down --data %s\n", o->data);
	}
	explicit_bzero(p, sizeof(*p));
	free(p);
	return EXIT_OK;
}

static int start_cield(const struct up_opts *o, pid_t *pid, int64_t *ready_ms)
{
	char cield[PATH_MAX], log[PATH_MAX + 32], pidf[PATH_MAX + 32], zones[16];
	struct ciel_err err;
	int st;

	pathf(log, sizeof(log), o->data, "cield.log");
	pathf(pidf, sizeof(pidf), o->data, "cield.pid");
	snprintf(zones, sizeof(zones), "%d", o->zones);
	proc_find("cield", cield, sizeof(cield));
	{
		char *argv[] = {cield,
				(char *)"init",
				(char *)"--data",
				(char *)o->data,
				(char *)"--zones",
				zones,
				(char *)"--listen",
				(char *)o->listen,
				NULL};

		st = proc_run(argv, log, &err);
	}
	if (st < 0) {
		cli_fail_err(&err);
		if (err.code == CIEL_ENOTFOUND)
			cli_hint("build it (`make build`) or put cield in PATH");
		return EXIT_FAIL;
	}
	if (st != 0) {
		cli_fail("internal", "`cield init --data %s` failed (exit %d)", o->data, st);
		proc_tail(log, 20);
		return EXIT_FAIL;
	}
	{
		char *argv[] = {cield,
				(char *)"serve",
				(char *)"--data",
				(char *)o->data,
				(char *)"--listen",
				(char *)o->listen,
				NULL};

		if (proc_spawn(argv, log, pid, &err) < 0)
			return cli_fail_err(&err);
	}
	if (proc_write_pid(pidf, *pid, &err) < 0) {
		proc_stop(*pid, "cield", STOP_WAIT_MS);
		return cli_fail_err(&err);
	}
	if (wait_healthy(o, *pid, ready_ms) < 0) {
		proc_tail(log, 20);
		proc_stop(*pid, "cield", STOP_WAIT_MS);
		unlink(pidf);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* "sha256:<hex>" of the file at path; -1 if it cannot be read. */
static int file_sha256(const char *path, char *out, size_t size)
{
	unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fopen(path, "rb");
	char hex[65];
	size_t n;
	int ret = -1;

	if (!ctx || !f || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(ctx, buf, n) != 1)
			goto out;
	if (ferror(f) || EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32)
		goto out;
	enc_hex(md, 32, hex);
	ret = (size_t)snprintf(out, size, "sha256:%s", hex) < size ? 0 : -1;
out:
	if (f)
		fclose(f);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/*
 * --model: deploy the file as a public model, unless that name already runs
 * that very file (a second `ciel up` uploads nothing), then wait until a
 * node serves it. *result gets the endpoint (may stay NULL).
 */
static int up_model(struct cli *cli, struct client *oc, const struct up_opts *o, json_t **result)
{
	struct client_response resp = {0};
	char path[512], digest[80];
	struct ciel_err err;
	int rc;

	*result = NULL;
	if (access(o->model_file, R_OK) != 0)
		return cli_fail(errno == ENOENT ? "not_found" : "io_error", "--model %s: %s",
				o->model_file, strerror(errno));
	if (file_sha256(o->model_file, digest, sizeof(digest)) < 0)
		return cli_fail("io_error", "--model %s: cannot read it", o->model_file);
	if (cli_path(path, sizeof(path), "/v1/models/", o->model_name, NULL) != 0)
		return EXIT_FAIL;
	rc = client_request(oc, "GET", path, NULL, NULL, &resp, &err);
	if (rc == 0 && resp.status == 200 && json_is_true(json_object_get(resp.json, "public")) &&
	    json_is_string(json_object_get(resp.json, "blob")) &&
	    strcmp(json_string_value(json_object_get(resp.json, "blob")), digest) == 0) {
		client_response_release(&resp);
		fprintf(stderr, "model %s: deployed already from %s\n", o->model_name,
			o->model_file);
		return model_wait(cli, oc, o->model_name, "", MODEL_WAIT_S, result);
	}
	client_response_release(&resp);
	fprintf(stderr, "deploying %s as the public model %s\n", o->model_file, o->model_name);
	return model_deploy(cli, oc, o->model_file, o->model_name, "public=1", MODEL_WAIT_S,
			    result);
}

static int print_up(struct cli *cli, const struct up_opts *o, const struct profile *op, pid_t pid,
		    int64_t ready_ms, const struct agent *ag, size_t nag, size_t ready,
		    const char *user_creds, const json_t *model)
{
	char creds[PATH_MAX + 32], cdir[PATH_MAX + 32];

	pathf(creds, sizeof(creds), o->data, "operator.credentials");
	if (cli->output == OUT_JSON) {
		json_t *j =
		    json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:[s,s,s]}", "status",
			      "started", "endpoint", op->endpoint, "data_dir", o->data, "pid",
			      (int)pid, "ready_ms", (json_int_t)ready_ms, "operator_credentials",
			      creds, "credentials_file", user_creds, "profile", "default", "next",
			      "ciel zone list", "ciel tenant create acme --save-profile acme",
			      "ciel --profile acme audit list");
		json_t *arr = json_array();

		for (size_t i = 0; i < nag; i++)
			json_array_append_new(arr,
					      json_pack("{s:s, s:s, s:i, s:s}", "zone", ag[i].zone,
							"name", ag[i].name, "pid", (int)ag[i].pid,
							"state_dir", ag[i].dir));
		json_object_set_new(j, "agents", arr);
		json_object_set_new(j, "nodes_ready", json_integer((json_int_t)ready));
		if (model)
			json_object_set(j, "model", (json_t *)model);
		out_json(j);
		json_decref(j);
		return EXIT_OK;
	}
	printf("region up: %s (cield pid %d, ready in %lld ms)\n", op->endpoint, (int)pid,
	       (long long)ready_ms);
	if (nag)
		printf("nodes: %zu/%zu ready (%s/agents/*/agent.log)\n", ready, nag, o->data);
	printf("operator credentials: %s\n", creds);
	printf("  copied to %s as profile \"default\"\n", user_creds);
	pathf(cdir, sizeof(cdir), o->data, "cield.log");
	printf("log: %s\n", cdir);
	if (model)
		printf("model: %s %s on %s (public)\n",
		       json_string_value(json_object_get(model, "name"))
			   ? json_string_value(json_object_get(model, "name"))
			   : o->model_name,
		       json_string_value(json_object_get(model, "state"))
			   ? json_string_value(json_object_get(model, "state"))
			   : "?",
		       json_string_value(json_object_get(model, "node"))
			   ? json_string_value(json_object_get(model, "node"))
			   : "?");
	print_next_steps(model ? o->model_name : NULL);
	printf("\nstop it with: ciel down --data %s\n", o->data);
	return EXIT_OK;
}

int cmd_up(struct cli *cli, int argc, char **argv)
{
	struct up_opts o = {0};
	struct profile *op = NULL;
	struct agent *ag = NULL;
	struct client oc = {0};
	struct ciel_err err;
	char pidf[PATH_MAX + 32], user_creds[PATH_MAX], zones[MAX_ZONES][64];
	size_t nz = 0, ready = 0;
	int64_t ready_ms = 0;
	json_t *model = NULL;
	bool already = false;
	pid_t pid;
	int r;

	r = parse_up(cli, argc, argv, &o);
	if (r >= 0)
		return r;
	if ((r = absolute_data(&o)) != 0)
		return r;
	if (user_credentials(cli, user_creds, sizeof(user_creds)) < 0)
		return cli_fail("invalid_argument",
				"HOME is not set: name a credentials file with --credentials");

	pathf(pidf, sizeof(pidf), o.data, "cield.pid");
	pid = proc_read_pid(pidf);
	if (proc_alive(pid, "cield")) {
		/* up already, unless an agent died: then restart what is missing */
		if (o.no_agents || agents_alive(&o)) {
			if (!o.model_file[0])
				return report_already_up(cli, &o, pid);
			already = true; /* the model may still be missing */
		}
	} else {
		if (pid)
			unlink(pidf); /* stale: the machine rebooted or cield crashed */
		if ((r = start_cield(&o, &pid, &ready_ms)) != 0)
			return r;
	}

	op = calloc(1, sizeof(*op));
	ag = calloc(MAX_ZONES, sizeof(*ag));
	if (!op || !ag) {
		r = cli_fail("out_of_memory", "out of memory");
		goto out;
	}
	if (load_operator(&o, op, &err) < 0 || operator_client(op, &oc, &err) < 0) {
		r = cli_fail_err(&err);
		cli_hint("`cield init` should have written it; see %s/cield.log", o.data);
		goto out;
	}
	if (already) {
		r = up_model(cli, &oc, &o, &model);
		if (r == 0)
			r = report_already_up(cli, &o, pid);
		goto out;
	}
	if (!o.no_agents) {
		nz = region_zones(cli, &oc, &o, zones);
		for (size_t i = 0; i < nz; i++) {
			snprintf(ag[i].zone, sizeof(ag[i].zone), "%s", zones[i]);
			snprintf(ag[i].name, sizeof(ag[i].name), "node-%s", zones[i]);
			if ((size_t)snprintf(ag[i].dir, sizeof(ag[i].dir), "%s/agents/%s", o.data,
					     zones[i]) >= sizeof(ag[i].dir)) {
				r = cli_fail("invalid_argument", "data directory path too long");
				goto out;
			}
			if ((r = start_agent(cli, &oc, &o, &ag[i])) != 0)
				goto out;
		}
		ready = wait_nodes(&oc, ag, nz);
		if (ready < nz)
			fprintf(stderr,
				"warning: %zu of %zu nodes ready after %d s; see "
				"%s/agents/*/agent.log\n",
				ready, nz, NODES_WAIT_MS / 1000, o.data);
	}

	snprintf(op->name, sizeof(op->name), "default");
	if (profile_write(user_creds, op, &err) < 0) {
		r = cli_fail_err(&err);
		goto out;
	}
	/* after the profile: a model that fails still leaves a usable region */
	if (o.model_file[0] && (r = up_model(cli, &oc, &o, &model)) != 0)
		goto out;
	r = print_up(cli, &o, op, pid, ready_ms, ag, nz, ready, user_creds, model);
out:
	json_decref(model);
	if (oc.curl)
		client_release(&oc);
	if (op) {
		explicit_bzero(op, sizeof(*op));
		free(op);
	}
	free(ag);
	return r;
}

struct stopped {
	char what[96];
	pid_t pid;
	int sig;      /* SIGTERM, SIGKILL, 0 = stale pid file */
	int teardown; /* agents: 0 cleaned up, 1 teardown failed; -1 not run */
};

/* Stop what pidf names; returns proc_stop's answer (-1: it could not be
 * signalled and may still run), 0 if there was no pid to stop. */
static int stop_one(const char *pidf, const char *comm, const char *what, struct stopped *out,
		    size_t *n)
{
	pid_t pid = proc_read_pid(pidf);
	int sig;

	if (!pid) {
		unlink(pidf);
		return 0;
	}
	sig = proc_stop(pid, comm, STOP_WAIT_MS);
	snprintf(out[*n].what, sizeof(out[*n].what), "%s", what);
	out[*n].pid = pid;
	out[*n].sig = sig < 0 ? 0 : sig;
	out[*n].teardown = -1;
	(*n)++;
	if (sig >= 0)
		unlink(pidf);
	return sig;
}

/*
 * Once an agent is gone, remove what its node left on this machine:
 * containers, network namespaces, bridges, the nft table, cgroups. An agent
 * cleans up after its instances only while it runs, and one that was
 * SIGKILLed or had crashed leaves them all behind. A failure is reported,
 * not fatal: the rest of the region still has to stop. Returns 0 if the
 * teardown succeeded.
 */
static int teardown_agent(const char *dir, const char *zone)
{
	char bin[PATH_MAX], log[PATH_MAX + 32], name[80];
	struct ciel_err err;
	int st;

	pathf(log, sizeof(log), dir, "agent.log");
	snprintf(name, sizeof(name), "node-%.64s", zone); /* as cmd_up names them */
	proc_find("ciel-agent", bin, sizeof(bin));
	{
		char *argv[] = {bin,	     (char *)"teardown", (char *)"--state",
				(char *)dir, (char *)"--name",	 name,
				NULL};

		st = proc_run(argv, log, &err);
	}
	if (st == 0)
		return 0;
	if (st < 0)
		fprintf(stderr, "warning: node %s not cleaned up: %s\n", name, err.msg);
	else
		fprintf(stderr,
			"warning: node %s not cleaned up: `%s teardown` failed (exit %d); see "
			"%s\n",
			name, bin, st, log);
	fprintf(stderr,
		"hint: its containers and network may be left over; remove them with `%s "
		"teardown --state %s --name %s` (as root)\n",
		bin, dir, name);
	return 1;
}

int cmd_down(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "down",
	    .summary = "Stop the region `ciel up` started: its agents, then cield (SIGTERM, "
		       "SIGKILL after 5 s). Data is kept; `ciel up` starts it again.",
	    .example = "  ciel down\n  ciel down --data /tmp/region",
	};
	const char *data = NULL;
	const struct opt opts[] = {
	    {"data", "DIR", "state directory (default ~/.local/share/ciel)", &data, NULL},
	    {0},
	};
	struct stopped st[MAX_ZONES * 2 + 1];
	char dir[PATH_MAX], agents[PATH_MAX + 16], pidf[PATH_MAX * 2];
	struct dirent *de;
	size_t n = 0;
	DIR *d;
	int r;

	r = cli_parse(&u, opts, argc, argv, NULL);
	if (r < 0)
		return cli_parse_exit(r);
	if (data)
		snprintf(dir, sizeof(dir), "%s", data);
	else if (default_data(dir, sizeof(dir)) < 0)
		return cli_usage_error(&u, "HOME is not set: name the state directory with --data");

	pathf(agents, sizeof(agents), dir, "agents");
	d = opendir(agents);
	while (d && (de = readdir(d)) && n < MAX_ZONES * 2) {
		char what[96];
		size_t k;

		if (de->d_name[0] == '.')
			continue;
		snprintf(pidf, sizeof(pidf), "%s/%s/agent.pid", agents, de->d_name);
		if (access(pidf, F_OK) != 0)
			continue;
		snprintf(what, sizeof(what), "ciel-agent %.64s", de->d_name);
		k = n;
		if (stop_one(pidf, "ciel-agent", what, st, &n) >= 0 && n > k) {
			snprintf(pidf, sizeof(pidf), "%s/%s", agents, de->d_name);
			st[n - 1].teardown = teardown_agent(pidf, de->d_name);
		}
	}
	if (d)
		closedir(d);
	pathf(pidf, sizeof(pidf), dir, "cield.pid");
	stop_one(pidf, "cield", "cield", st, &n);

	if (cli->output == OUT_JSON) {
		json_t *j = json_pack("{s:s}", "data_dir", dir), *arr = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *p = json_pack("{s:s, s:i, s:s}", "what", st[i].what, "pid",
					      (int)st[i].pid, "result",
					      st[i].sig == SIGTERM   ? "stopped"
					      : st[i].sig == SIGKILL ? "killed"
								     : "not_running");

			if (p && st[i].teardown >= 0)
				json_object_set_new(p, "teardown",
						    json_string(st[i].teardown ? "failed" : "ok"));
			json_array_append_new(arr, p);
		}
		json_object_set_new(j, "processes", arr);
		out_json(j);
		json_decref(j);
		return EXIT_OK;
	}
	if (n == 0)
		printf("nothing to stop in %s\n", dir);
	for (size_t i = 0; i < n; i++) {
		if (st[i].sig == SIGTERM)
			printf("stopped %s (pid %d)\n", st[i].what, (int)st[i].pid);
		else if (st[i].sig == SIGKILL)
			printf("killed %s (pid %d): still running %d s after SIGTERM\n", st[i].what,
			       (int)st[i].pid, STOP_WAIT_MS / 1000);
		else
			printf("%s (pid %d) was not running; removed its pid file\n", st[i].what,
			       (int)st[i].pid);
		if (st[i].teardown == 0)
			printf("removed the containers and network of %s\n", st[i].what);
	}
	return EXIT_OK;
}
