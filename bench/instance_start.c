/*
 * bench-instance — create→running latency of instances, as a tenant sees it.
 *
 * Uses a tenant profile (made by bench/instance-start.sh) whose tenant has an
 * image named "busybox". Phases:
 *   latency  N instances one after another, each: POST /v1/instances, then
 *            GET it every 20 ms until "running"; the time from just before
 *            the POST to the GET that saw "running" is one sample. They keep
 *            running until all N are sampled, then go together: a deletion
 *            right before a start slows it (the kernel tears network
 *            namespaces down in the background), which would measure the
 *            bench, not the start. Polling faster than 20 ms measurably
 *            slows the start on a 2-core machine.
 *   density  M instances at once on one zone (POST all, then wait for all
 *            running): how long until all run, and that they all do.
 * Prints p50/p90/p99 and the figures the wrapper measured for a raw
 * `runc run -d` of the same rootfs (passed with --raw-p50-ms/--raw-p99-ms).
 *
 * Invariants: every instance the bench made is deleted before it exits
 * (Ctrl-C included), and deletion is waited for, so the next run starts clean.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "util/ts.h"

static volatile sig_atomic_t stop;

static void on_sig(int s)
{
	(void)s;
	stop = 1;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct(int64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return n ? (double)v[i] / 1000.0 : 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* "running", "failed", ... of an instance, or "" on error. */
static void state_of(struct client *c, const char *name, char *out, size_t size)
{
	struct client_response r = {0};
	struct ciel_err err;
	char path[128];

	snprintf(path, sizeof(path), "/v1/instances/%s", name);
	out[0] = '\0';
	if (client_request(c, "GET", path, NULL, NULL, &r, &err) == 0 && r.status == 200)
		snprintf(out, size, "%s",
			 json_string_value(json_object_get(r.json, "state")) ?: "");
	client_response_release(&r);
}

static int run_one(struct client *c, const char *name, const char *zone)
{
	struct client_response r = {0};
	struct ciel_err err;
	json_t *body =
	    json_pack("{s:s, s:s, s:i, s:s, s:[s,s]}", "image", "busybox", "name", name,
		      "cpu_millis", 10, "memory_bytes", "8M", "command", "sleep", "3600");
	int ok;

	if (zone)
		json_object_set_new(body, "zone", json_string(zone));
	ok = client_request(c, "POST", "/v1/instances", NULL, body, &r, &err) == 0 &&
	     r.status == 201;
	if (!ok)
		fprintf(stderr, "bench: run %s: %s\n", name, r.body ? r.body : err.msg);
	client_response_release(&r);
	json_decref(body);
	return ok ? 0 : -1;
}

static void delete_wait(struct client *c, const char *name)
{
	struct client_response r = {0};
	struct ciel_err err;
	char path[128], st[32];

	snprintf(path, sizeof(path), "/v1/instances/%s", name);
	client_request(c, "DELETE", path, NULL, NULL, &r, &err);
	client_response_release(&r);
	for (int i = 0; i < 3000; i++) {
		state_of(c, name, st, sizeof(st));
		if (!st[0])
			return;
		sleep_ms(10);
	}
}

/* Delete PREFIX-0..n-1 at once, then wait until each is gone. */
static void delete_all(struct client *c, const char *prefix, int n)
{
	char name[64];

	for (int i = 0; i < n; i++) {
		struct client_response r = {0};
		struct ciel_err err;
		char path[128];

		snprintf(path, sizeof(path), "/v1/instances/%s-%d", prefix, i);
		client_request(c, "DELETE", path, NULL, NULL, &r, &err);
		client_response_release(&r);
	}
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s-%d", prefix, i);
		delete_wait(c, name);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"profile", required_argument, NULL, 'p'},
	    {"count", required_argument, NULL, 'n'},
	    {"density", required_argument, NULL, 'd'},
	    {"raw-p50-ms", required_argument, NULL, 'r'},
	    {"raw-p99-ms", required_argument, NULL, 'R'},
	    {0},
	};
	struct client_opts o = {0};
	struct client_config cfg;
	struct client c = {0};
	struct ciel_err err;
	int n = 50, dens = 100, opt, ran = 0;
	double raw50 = 0, raw99 = 0;
	int64_t *lat;
	char name[64], st[32];

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			o.profile = optarg;
			break;
		case 'n':
			n = (int)strtol(optarg, NULL, 10);
			break;
		case 'd':
			dens = (int)strtol(optarg, NULL, 10);
			break;
		case 'r':
			raw50 = strtod(optarg, NULL);
			break;
		case 'R':
			raw99 = strtod(optarg, NULL);
			break;
		default:
			fprintf(stderr, "usage: bench-instance --profile P [--count N] "
					"[--density M] [--raw-p50-ms X --raw-p99-ms Y]\n");
			return 2;
		}
	}
	if (n < 1 || dens < 0)
		return 2;
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	if (client_resolve(&cfg, &o, &err) < 0 || client_init(&c, &cfg, &err) < 0) {
		fprintf(stderr, "bench: %s\n", err.msg);
		return 1;
	}
	c.timeout_ms = 30000;
	lat = calloc((size_t)n, sizeof(*lat));
	for (int i = 0; i < n && !stop; i++) {
		int64_t t0;

		snprintf(name, sizeof(name), "lat-%d", i);
		t0 = ts_mono_us();
		if (run_one(&c, name, NULL) < 0)
			break;
		for (;;) {
			state_of(&c, name, st, sizeof(st));
			if (strcmp(st, "running") == 0 || strcmp(st, "failed") == 0 ||
			    strcmp(st, "exited") == 0 || stop)
				break;
			sleep_ms(20);
		}
		if (strcmp(st, "running") != 0) {
			fprintf(stderr, "bench: %s ended %s\n", name, st);
			break; /* delete_all removes it with the others */
		}
		lat[ran++] = ts_mono_us() - t0;
	}
	delete_all(&c, "lat", n);
	qsort(lat, (size_t)ran, sizeof(*lat), cmp_i64);
	printf("instance create->running, %d samples (POST, then GET every 20 ms)\n", ran);
	printf("  ciel      p50 %7.1f ms   p90 %7.1f ms   p99 %7.1f ms\n",
	       pct(lat, (size_t)ran, 0.5), pct(lat, (size_t)ran, 0.9), pct(lat, (size_t)ran, 0.99));
	if (raw50 > 0)
		printf("  raw runc  p50 %7.1f ms                   p99 %7.1f ms   (runc run -d, "
		       "same rootfs)\n  ratio     p50 %.2fx (target <= 1.3x)\n",
		       raw50, raw99, pct(lat, (size_t)ran, 0.5) / raw50);

	if (dens > 0 && !stop) {
		int64_t t0 = ts_mono_us(), made = 0, running = 0;

		for (int i = 0; i < dens && !stop; i++) {
			snprintf(name, sizeof(name), "den-%d", i);
			if (run_one(&c, name, "az1") == 0)
				made++;
		}
		for (int round = 0; round < 600 && !stop; round++) {
			struct client_response r = {0};
			json_t *it;
			size_t k;

			running = 0;
			if (client_request(&c, "GET", "/v1/instances", NULL, NULL, &r, &err) == 0)
				json_array_foreach(json_object_get(r.json, "items"), k, it)
				    running +=
				    strcmp(json_string_value(json_object_get(it, "state")) ?: "",
					   "running") == 0;
			client_response_release(&r);
			if (running >= made)
				break;
			sleep_ms(100);
		}
		printf("density: %lld of %d instances running on one node after %.1f s\n",
		       (long long)running, dens, (double)(ts_mono_us() - t0) / 1e6);
		delete_all(&c, "den", dens);
	}
	free(lat);
	client_release(&c);
	return ran == n ? 0 : 1;
}
