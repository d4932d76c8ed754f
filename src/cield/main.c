/*
 * cield — the region control plane.
 *   cield init  --data DIR [--zones N] [--region NAME] [--listen HOST:PORT] [--insecure-http]
 *   cield serve --data DIR [--listen HOST:PORT] [--insecure-http] [--node-timeout-s N]
 * Options come from one table: flag, then CIEL_* environment, then default.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/http.h"
#include "api/region.h"
#include "crypto/pki.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

enum opt_type { OPT_STR, OPT_INT, OPT_BOOL };

struct opt {
	const char *name; /* flag without "--" */
	const char *env;
	enum opt_type type;
	const char *def;
	const char *help;
	const char *val; /* resolved */
};

static struct opt opts[] = {
    {"data", "CIEL_DATA", OPT_STR, NULL, "region state directory (required)", NULL},
    {"listen", "CIEL_LISTEN", OPT_STR, "127.0.0.1:7443", "address to serve on", NULL},
    {"zones", "CIEL_ZONES", OPT_INT, "3", "init: number of availability zones", NULL},
    {"region", "CIEL_REGION", OPT_STR, "local", "init: region name", NULL},
    {"insecure-http", "CIEL_INSECURE_HTTP", OPT_BOOL, "0",
     "plain HTTP instead of HTTPS (loopback only)", NULL},
    {"node-timeout-s", "CIEL_NODE_TIMEOUT_S", OPT_INT, "15",
     "serve: seconds without heartbeat before a node is NotReady", NULL},
    {"log-level", "CIEL_LOG_LEVEL", OPT_STR, "info", "debug, info, warn or error", NULL},
    {0},
};

static const char *opt(const char *name)
{
	for (struct opt *o = opts; o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o->val;
	return NULL;
}

static long opt_int(const char *name)
{
	return strtol(opt(name), NULL, 10);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cield init|serve [options]\n\n"
		"  init    create a region's state in --data (keys, CA, store, zones, operator)\n"
		"  serve   run the control-plane API\n\noptions (flag, environment, default):\n");
	for (struct opt *o = opts; o->name; o++)
		fprintf(f, "  --%-16s %-20s %-16s %s\n", o->name, o->env, o->def ? o->def : "",
			o->help);
	fprintf(f,
		"\nexample: cield init --data /var/lib/ciel && cield serve --data /var/lib/ciel\n");
}

static int parse_opts(int argc, char **argv)
{
	for (struct opt *o = opts; o->name; o++)
		o->val = getenv(o->env) ? getenv(o->env) : o->def;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		struct opt *o;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strncmp(a, "--", 2) != 0)
			goto bad;
		for (o = opts; o->name; o++) {
			size_t n = strlen(o->name);

			if (strncmp(a + 2, o->name, n) != 0 || (a[2 + n] && a[2 + n] != '='))
				continue;
			if (o->type == OPT_BOOL && !a[2 + n])
				o->val = "1";
			else if (a[2 + n] == '=')
				o->val = a + 3 + n;
			else if (i + 1 < argc)
				o->val = argv[++i];
			else
				goto bad;
			break;
		}
		if (!o->name)
			goto bad;
		if (o->type == OPT_INT) {
			char *end;

			errno = 0;
			(void)strtol(o->val, &end, 10);
			if (errno || !*o->val || *end) {
				fprintf(stderr, "cield: --%s: must be an integer\n", o->name);
				return -1;
			}
		}
		continue;
	bad:
		fprintf(stderr, "cield: unknown or incomplete option '%s' (see cield --help)\n", a);
		return -1;
	}
	if (!opt("data")) {
		fprintf(stderr, "cield: --data DIR is required (see cield --help)\n");
		return -1;
	}
	if (log_parse_level(opt("log-level")) < 0) {
		fprintf(stderr, "cield: --log-level: one of debug, info, warn, error\n");
		return -1;
	}
	log_level = log_parse_level(opt("log-level"));
	return 0;
}

static int cmd_init(void)
{
	struct region_init_opts o = {.data_dir = opt("data"),
				     .name = opt("region"),
				     .zones = (int)opt_int("zones"),
				     .listen = opt("listen"),
				     .insecure_http = strcmp(opt("insecure-http"), "0") != 0};
	struct ciel_err err = {0};
	int r = region_init(&o, &err);

	if (r < 0) {
		fprintf(stderr, "cield: init: %s\n", err.msg);
		return 1;
	}
	if (r == 1)
		printf("region already initialised in %s\n", o.data_dir);
	else
		printf("region %s initialised in %s (%d zones); operator credentials: "
		       "%s/operator.credentials\n",
		       o.name, o.data_dir, o.zones, o.data_dir);
	return 0;
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int cmd_serve(void)
{
	struct api_config cfg = {.node_timeout_s = (int)opt_int("node-timeout-s"),
				 .insecure_http = strcmp(opt("insecure-http"), "0") != 0};
	struct http_opts ho = {.listen = opt("listen"), .insecure = cfg.insecure_http};
	struct ciel_err err = {0};
	struct http_server *srv = NULL;
	char path[4096], *cert = NULL, *key = NULL, name[64] = "local";
	struct sigaction sa = {.sa_handler = on_signal};
	size_t len;
	struct api a;
	json_t *meta;
	int64_t t0 = ts_mono_ms();
	int ret = 1;

	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	cfg.region_name = name;
	if (api_open(&a, opt("data"), &cfg, &err) < 0) {
		log_error("cannot open region data=%s err=%s", opt("data"), err.msg);
		return 1;
	}
	meta = api_load_json(&a, "/region/meta", NULL, &err);
	if (!meta) {
		log_error("no region in %s: run `cield init --data %s` first", opt("data"),
			  opt("data"));
		goto out;
	}
	snprintf(name, sizeof(name), "%s", jbody_str(meta, "name", "local"));
	json_decref(meta);
	if (!ho.insecure) {
		snprintf(path, sizeof(path), "%s/pki/server.pem", opt("data"));
		if (pki_read_file(path, &cert, &len, &err) < 0)
			goto tls_fail;
		snprintf(path, sizeof(path), "%s/pki/server.key", opt("data"));
		if (pki_read_file(path, &key, &len, &err) < 0)
			goto tls_fail;
		ho.cert_pem = cert;
		ho.key_pem = key;
	}
	if (http_start(&srv, &a, &ho, &err) < 0) {
		log_error("cannot serve: %s", err.msg);
		goto out;
	}
	log_info("listening url=%s://%s region=%s ready_ms=%lld", ho.insecure ? "http" : "https",
		 ho.listen, name, (long long)(ts_mono_ms() - t0));
	while (!stopping) {
		struct timespec ts = {0, 200 * 1000 * 1000};
		static int ticks;

		nanosleep(&ts, NULL);
		if (++ticks % 5 == 0 && audit_tick(a.audit, &err) < 0)
			log_warn("audit checkpoint failed err=%s", err.msg);
		if (ticks % 10 == 0)
			compute_sweep(&a);
		if (ticks % 5 == 0)
			quantum_dispatch(&a);
		if (ticks % 5 == 0)
			models_dispatch(&a);
	}
	log_info("stopping");
	http_stop(srv);
	ret = 0;
	goto out;
tls_fail:
	log_error("cannot load TLS material: %s (run `cield init --data %s`)", err.msg,
		  opt("data"));
out:
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	free(cert);
	api_close(&a);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("cield 0.1.0\n");
		return 0;
	}
	if (strcmp(argv[1], "init") != 0 && strcmp(argv[1], "serve") != 0) {
		fprintf(stderr, "cield: unknown command '%s' (init or serve; see cield --help)\n",
			argv[1]);
		return 2;
	}
	log_set_prog("cield");
	if (parse_opts(argc - 2, argv + 2) < 0)
		return 2;
	return strcmp(argv[1], "init") == 0 ? cmd_init() : cmd_serve();
}
