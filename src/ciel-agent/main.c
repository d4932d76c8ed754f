/*
 * ciel-agent — the per-node agent. Joins the region once with a one-use
 * token (POST /v1/nodes:join, unsigned), keeps the node key it gets in
 * STATE/node.credentials (0600), then runs three threads:
 *   - this one: a heartbeat with the node's capacity and the log server's
 *     URL every --heartbeat-s seconds, signed with that key (scope "region");
 *   - the reconcile loop (lib/agent/agent.h): placements in, containers
 *     started/stopped/removed, status reports out;
 *   - the log server (lib/agent/logsrv.h), libmicrohttpd's own thread.
 * Subcommands: `shim` (the per-container process lib/oci starts; never typed
 * by hand) and `teardown` (remove everything the node runs).
 *
 * Invariants: a node joins at most once per state directory (the token is
 * spent, the key is the node's identity from then on); the runtime and the
 * node network are checked before the token is spent; the agent never exits
 * because the server is down, it retries with backoff; SIGTERM and SIGINT
 * end it with status 0, leaving the containers running for the next agent
 * to adopt. Signals are blocked in every thread and let through only while
 * this one sleeps, so a request in flight always completes or times out
 * cleanly.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/llmw.h"
#include "agent/logsrv.h"
#include "agent/teardown.h"
#include "client/client.h"
#include "client/profile.h"
#include "oci/oci.h"
#include "util/err.h"
#include "util/log.h"

#define BACKOFF_MAX_S 30

struct prog {
	const char *endpoint, *ca_file, *zone, *name, *state, *token;
	const char *runtime, *listen;
	const char *agent_url; /* the log server's, sent with every heartbeat */
	int heartbeat_s;
	char creds[PATH_MAX];
	char ca_abs[PROFILE_VALUE_MAX];
	struct client client;
	sigset_t waitmask; /* the mask while sleeping: SIGTERM/SIGINT let through */
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Sleep up to s seconds; returns early (and true) once a stop was asked. */
static bool sleep_or_stop(struct prog *a, int s)
{
	struct timespec ts = {s, 0};

	if (!stopping)
		ppoll(NULL, 0, &ts, &a->waitmask);
	return stopping;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ciel-agent --endpoint URL --zone ZONE --name NAME --state DIR [flags]\n"
		"       ciel-agent teardown --state DIR --name NAME [--runtime R]\n"
		"\nJoin a ciel region as a node, run the instances placed on it and report\n"
		"their state and the node's capacity.\n"
		"\nFlags:\n"
		"  --endpoint URL        region API endpoint (https://HOST:PORT)\n"
		"  --ca-file FILE        region CA certificate (PEM)\n"
		"  --zone ZONE           zone this node belongs to\n"
		"  --name NAME           node name\n"
		"  --state DIR           state directory (node.credentials, instances, images)\n"
		"  --token TOKEN         one-use join token (`ciel node token create`), needed\n"
		"                        only until the node has joined (env CIEL_JOIN_TOKEN)\n"
		"  --heartbeat-s N       seconds between heartbeats (default 5)\n"
		"  --runtime R           auto, runc or crun (default auto, env CIEL_RUNTIME)\n"
		"  --listen ADDR:PORT    log server address (default 127.0.0.1:0, any free port)\n"
		"  --log-level LEVEL     debug, info, warn, error (default info)\n"
		"  --help                show this help\n"
		"\nCommands:\n"
		"  teardown              remove every container, network object and cgroup of\n"
		"                        the node (stop the agent first); exit 1 if some are left\n"
		"\nExample:\n"
		"  ciel-agent --endpoint https://10.0.0.1:7443 --ca-file ca.pem --zone az1 \\\n"
		"      --name node-1 --state /var/lib/ciel-agent --token TOKEN\n");
}

static int64_t mem_total_bytes(void)
{
	char line[256];
	long long kb = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return (int64_t)kb * 1024;
}

static json_t *capacity(const struct prog *a)
{
	struct statvfs vfs;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int64_t disk = 0;

	if (statvfs(a->state, &vfs) == 0)
		disk = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
	return json_pack("{s:I, s:I, s:I}", "cpu_millis", (json_int_t)(cpus > 0 ? cpus : 1) * 1000,
			 "memory_bytes", (json_int_t)mem_total_bytes(), "disk_bytes",
			 (json_int_t)disk);
}

/* The client configuration for the region, signed with p's key if p is set. */
static void fill_config(const struct prog *a, const struct profile *p, struct client_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->endpoint, sizeof(cfg->endpoint), "%s", a->endpoint);
	snprintf(cfg->ca_file, sizeof(cfg->ca_file), "%s", a->ca_abs);
	if (p) {
		snprintf(cfg->key_id, sizeof(cfg->key_id), "%s", p->key_id);
		snprintf(cfg->secret, sizeof(cfg->secret), "%s", p->secret);
		snprintf(cfg->scope, sizeof(cfg->scope), "%s", p->scope[0] ? p->scope : "region");
	}
}

static int client_for(struct prog *a, const struct profile *p, struct ciel_err *err)
{
	struct client_config cfg;
	int r;

	fill_config(a, p, &cfg);
	if (a->client.curl)
		client_release(&a->client);
	r = client_init(&a->client, &cfg, err);
	explicit_bzero(&cfg, sizeof(cfg));
	if (r == 0) {
		a->client.connect_timeout_ms = 3000;
		a->client.timeout_ms = 10000;
	}
	return r;
}

static int next_backoff(int b)
{
	return b * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : b * 2;
}

/* Join with the token and save the key; 0 on success, 1 if the server
 * refused for good (bad token, name taken), -1 if asked to stop. */
static int join(struct prog *a, struct profile *p)
{
	struct client_response resp = {0};
	struct ciel_err err;
	int backoff = 1, ret = 1;
	json_t *body;
	char code[64];

	body = json_pack("{s:s, s:s, s:s, s:o}", "token", a->token, "name", a->name, "zone",
			 a->zone, "capacity", capacity(a));
	if (!body || client_for(a, NULL, &err) < 0) {
		log_error("join failed: %s", body ? err.msg : "out of memory");
		json_decref(body);
		return 1;
	}
	for (;;) {
		if (client_request(&a->client, "POST", "/v1/nodes:join", NULL, body, &resp, &err) <
		    0) {
			log_warn("join: region unreachable, retrying in %ds: %s", backoff, err.msg);
		} else if (resp.status == 201 || resp.status == 200) {
			break;
		} else if (resp.status >= 500) {
			client_response_error(&resp, &err, code, sizeof(code), NULL, 0);
			log_warn("join: %s: %s, retrying in %ds", code, err.msg, backoff);
		} else {
			client_response_error(&resp, &err, code, sizeof(code), NULL, 0);
			log_error("join refused: %s: %s%s%s request=%s", code, err.msg,
				  err.field[0] ? " field=" : "", err.field, resp.request_id);
			goto out;
		}
		if (sleep_or_stop(a, backoff)) {
			ret = -1;
			goto out;
		}
		backoff = next_backoff(backoff);
	}

	{
		const json_t *key = json_object_get(resp.json, "key");
		const char *id = json_string_value(json_object_get(key, "id"));
		const char *secret = json_string_value(json_object_get(key, "secret"));
		const char *scope = json_string_value(json_object_get(key, "scope"));

		if (!id || !secret) {
			log_error("join: the answer holds no key id or secret request=%s",
				  resp.request_id);
			goto out;
		}
		memset(p, 0, sizeof(*p));
		snprintf(p->name, sizeof(p->name), "default");
		snprintf(p->endpoint, sizeof(p->endpoint), "%s", a->endpoint);
		snprintf(p->key_id, sizeof(p->key_id), "%s", id);
		snprintf(p->secret, sizeof(p->secret), "%s", secret);
		snprintf(p->scope, sizeof(p->scope), "%s", scope ? scope : "region");
		snprintf(p->ca_file, sizeof(p->ca_file), "%s", a->ca_abs);
		if (profile_write(a->creds, p, &err) < 0) {
			/* the token is spent: without this file the node cannot come back */
			log_error("joined but could not save the node key: %s", err.msg);
			goto out;
		}
		log_info("joined node=%s zone=%s key=%s", a->name, a->zone, id);
	}
	ret = 0;
out:
	client_response_release(&resp);
	json_decref(body);
	return ret;
}

static void heartbeat_loop(struct prog *a)
{
	struct client_response resp = {0};
	struct ciel_err err;
	char path[512], code[64], *esc;
	int backoff = 1, failures = 0;
	bool ok = false;

	esc = client_escape(a->name);
	if (!esc)
		return;
	snprintf(path, sizeof(path), "/v1/nodes/%s:heartbeat", esc);
	free(esc);
	while (!stopping) {
		json_t *body =
		    json_pack("{s:o, s:s?}", "capacity", capacity(a), "agent_url", a->agent_url);
		int r = client_request(&a->client, "POST", path, NULL, body, &resp, &err);

		json_decref(body);
		if (r == 0 && resp.status >= 200 && resp.status < 300) {
			const char *state = json_string_value(json_object_get(resp.json, "state"));

			if (!ok)
				log_info("heartbeat ok node=%s state=%s%s", a->name,
					 state ? state : "?",
					 failures ? " (region reachable again)" : "");
			else
				log_debug("heartbeat ok node=%s state=%s", a->name,
					  state ? state : "?");
			ok = true;
			failures = 0;
			backoff = 1;
			if (sleep_or_stop(a, a->heartbeat_s))
				break;
			continue;
		}
		if (r < 0) {
			log_warn("heartbeat failed node=%s: %s; retrying in %ds", a->name, err.msg,
				 backoff);
		} else {
			client_response_error(&resp, &err, code, sizeof(code), NULL, 0);
			log_warn("heartbeat refused node=%s: %s: %s request=%s; retrying in %ds",
				 a->name, code, err.msg, resp.request_id, backoff);
		}
		ok = false;
		failures++;
		if (sleep_or_stop(a, backoff))
			break;
		backoff = next_backoff(backoff);
	}
	client_response_release(&resp);
}

/* --log-level or CIEL_LOG_LEVEL; 0, or 2 (usage) if unknown. */
static int set_log_level(const char *lvl)
{
	int l;

	if (!lvl || !*lvl)
		return 0;
	l = log_parse_level(lvl);
	if (l < 0) {
		fprintf(stderr, "ciel-agent: usage: unknown log level '%s'\n", lvl);
		return 2;
	}
	log_level = l;
	return 0;
}

static bool runtime_valid(const char *r)
{
	return !strcmp(r, "auto") || !strcmp(r, "runc") || !strcmp(r, "crun");
}

static int parse_args(struct prog *a, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"endpoint", required_argument, NULL, 'e'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {"zone", required_argument, NULL, 'z'},
	    {"name", required_argument, NULL, 'n'},
	    {"state", required_argument, NULL, 's'},
	    {"token", required_argument, NULL, 't'},
	    {"heartbeat-s", required_argument, NULL, 'b'},
	    {"runtime", required_argument, NULL, 'r'},
	    {"listen", required_argument, NULL, 'L'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *lvl = getenv("CIEL_LOG_LEVEL"), *rt = getenv("CIEL_RUNTIME");
	char *end;
	long v;
	int c;

	a->heartbeat_s = 5;
	a->token = getenv("CIEL_JOIN_TOKEN");
	a->runtime = rt && *rt ? rt : "auto";
	a->listen = "127.0.0.1:0";
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'e':
			a->endpoint = optarg;
			break;
		case 'c':
			a->ca_file = optarg;
			break;
		case 'z':
			a->zone = optarg;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 's':
			a->state = optarg;
			break;
		case 't':
			a->token = optarg;
			break;
		case 'r':
			a->runtime = optarg;
			break;
		case 'L':
			a->listen = optarg;
			break;
		case 'l':
			lvl = optarg;
			break;
		case 'b':
			v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 1 || v > 3600) {
				fprintf(stderr,
					"ciel-agent: usage: --heartbeat-s must be 1..3600\n");
				return 2;
			}
			a->heartbeat_s = (int)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ciel-agent: usage: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!a->endpoint || !a->zone || !a->name || !a->state) {
		fprintf(stderr, "ciel-agent: usage: --endpoint, --zone, --name and --state are "
				"required\n");
		usage(stderr);
		return 2;
	}
	if (!agent_node_valid(a->name)) {
		fprintf(stderr, "ciel-agent: usage: --name must be 1 to 63 characters of a-z, 0-9 "
				"and '-', not starting with '-'\n");
		return 2;
	}
	if (!runtime_valid(a->runtime)) {
		fprintf(stderr, "ciel-agent: usage: --runtime must be auto, runc or crun\n");
		return 2;
	}
	if (set_log_level(lvl))
		return 2;
	return -1;
}

/* `ciel-agent teardown --state DIR --name NODE [--runtime R]` */
static int cmd_teardown(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"state", required_argument, NULL, 's'},   {"name", required_argument, NULL, 'n'},
	    {"runtime", required_argument, NULL, 'r'}, {"log-level", required_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},	       {0},
	};
	const char *state = NULL, *name = NULL, *runtime = getenv("CIEL_RUNTIME");
	const char *lvl = getenv("CIEL_LOG_LEVEL");
	struct ciel_err err;
	int c, ret = 0;

	if (!runtime || !*runtime)
		runtime = "auto";
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'r':
			runtime = optarg;
			break;
		case 'l':
			lvl = optarg;
			break;
		case 'h':
			printf("Usage: ciel-agent teardown --state DIR --name NAME [--runtime R]\n"
			       "\nStop the model workers of node NAME, remove every container, "
			       "network\n"
			       "object and cgroup of it and DIR/instances. Stop the agent first. "
			       "Exit 0\n"
			       "if all went, 1 if some things are left (named on stderr), 2 on a "
			       "usage\n"
			       "error.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc || !state || !name) {
		fprintf(stderr, "ciel-agent: usage: teardown needs --state and --name\n");
		return 2;
	}
	if (!agent_node_valid(name) || !runtime_valid(runtime)) {
		fprintf(stderr, "ciel-agent: usage: bad --name or --runtime\n");
		return 2;
	}
	if (set_log_level(lvl))
		return 2;
	/* model workers outlive their agent (they are adopted): they go first */
	if (llmw_teardown(state, stderr, &err) < 0) {
		log_error("%s", err.msg);
		ret = 1;
	}
	if (teardown_node(state, name, runtime, stderr, &err) < 0) {
		log_error("%s", err.msg);
		ret = 1;
	}
	return ret;
}

/* The path of this very program, for the shims to run (`ciel-agent shim`). */
static int self_exe(char *out, size_t size)
{
	ssize_t n = readlink("/proc/self/exe", out, size - 1);

	if (n < 0 || (size_t)n >= size - 1)
		return -1;
	out[n] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	struct prog a = {0};
	struct profile *p = NULL;
	struct agent *ag = NULL;
	struct logsrv *ls = NULL;
	struct client_config cc;
	struct agent_config acfg;
	struct sigaction sa = {0};
	struct ciel_err err;
	char exe[PATH_MAX];
	sigset_t block;
	int r, ret = 1;

	/* the per-container shim lib/oci starts: argv as it was built there */
	if (argc > 1 && !strcmp(argv[1], "shim"))
		return oci_shim_main(argc, argv);
	log_set_prog("ciel-agent");
	if (argc > 1 && !strcmp(argv[1], "teardown"))
		return cmd_teardown(argc - 1, argv + 1);
	r = parse_args(&a, argc, argv);
	if (r >= 0)
		return r;

	if (mkdir(a.state, 0700) < 0 && errno != EEXIST) {
		log_error("state dir %s: %s", a.state, strerror(errno));
		return 1;
	}
	if ((size_t)snprintf(a.creds, sizeof(a.creds), "%s/node.credentials", a.state) >=
	    sizeof(a.creds)) {
		log_error("state dir path too long");
		return 1;
	}
	/* the key file must keep working whatever our working directory was */
	if (a.ca_file) {
		char real[PATH_MAX];

		if (!realpath(a.ca_file, real)) {
			log_error("ca file %s: %s", a.ca_file, strerror(errno));
			return 1;
		}
		if ((size_t)snprintf(a.ca_abs, sizeof(a.ca_abs), "%s", real) >= sizeof(a.ca_abs)) {
			log_error("ca file path too long");
			return 1;
		}
	}
	if (self_exe(exe, sizeof(exe)) < 0) {
		log_error("cannot find this program's path: %s", strerror(errno));
		return 1;
	}

	if (client_for(&a, NULL, &err) < 0) {
		fprintf(stderr, "ciel-agent: usage: %s\n", err.msg);
		return 2;
	}
	client_release(&a.client);

	/* blocked here, before any thread exists, so every thread inherits it */
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &a.waitmask);
	sigdelset(&a.waitmask, SIGTERM);
	sigdelset(&a.waitmask, SIGINT);

	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* a node that cannot run containers must fail before it spends its token */
	acfg = (struct agent_config){
	    .node = a.name, .state = a.state, .runtime = a.runtime, .self_exe = exe};
	if (agent_open(&ag, &acfg, &err) < 0) {
		log_error("%s", err.msg);
		goto out;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		log_error("out of memory");
		goto out;
	}
	if (profile_load(a.creds, "default", p, &err) == 0) {
		log_info("node key found node=%s zone=%s key=%s", a.name, a.zone, p->key_id);
	} else if (err.code != CIEL_ENOTFOUND) {
		log_error("%s", err.msg);
		goto out;
	} else if (!a.token || !*a.token) {
		log_error(
		    "no %s and no --token: create one with `ciel node token create --zone %s`",
		    a.creds, a.zone);
		ret = 2;
		goto out;
	} else {
		r = join(&a, p);
		if (r != 0) {
			ret = r < 0 ? 0 : 1;
			goto out;
		}
	}
	if (client_for(&a, p, &err) < 0) {
		log_error("%s", err.msg);
		goto out;
	}
	{
		struct logsrv_config lc = {.listen = a.listen,
					   .state_dir = a.state,
					   .key_id = p->key_id,
					   .secret = p->secret};

		if (logsrv_start(&ls, &lc, &err) < 0) {
			log_error("%s", err.msg);
			goto out;
		}
	}
	a.agent_url = logsrv_url(ls);
	fill_config(&a, p, &cc);
	r = agent_start(ag, &cc, &err);
	explicit_bzero(&cc, sizeof(cc));
	explicit_bzero(p, sizeof(*p));
	if (r < 0) {
		log_error("%s", err.msg);
		goto out;
	}
	log_info("started node=%s zone=%s endpoint=%s heartbeat_s=%d runtime=%s agent_url=%s",
		 a.name, a.zone, a.endpoint, a.heartbeat_s, agent_runtime_name(ag), a.agent_url);
	heartbeat_loop(&a);
	log_info("stopping node=%s", a.name);
	ret = 0;
out:
	/* the reconcile thread first: it may be mid-request, the log server is idle */
	agent_free(ag);
	logsrv_stop(ls);
	if (a.client.curl)
		client_release(&a.client);
	if (p) {
		explicit_bzero(p, sizeof(*p));
		free(p);
	}
	curl_global_cleanup();
	return ret;
}
