/*
 * libFuzzer: the whole request pipeline in-process (no sockets), on a real
 * region in a temporary directory: percent-decoding, query parsing, routing,
 * Authorization/date parsing, the unsigned join body, and the audit write of
 * every outcome. Input: "METHOD\nPATH\nQUERY\nAUTHORIZATION\nDATE\nBODY".
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

#include "api/api.h"
#include "api/region.h"

static struct api api;
static int ready;
static char dir[] = "/tmp/ciel-fuzz-api.XXXXXX";

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* libFuzzer leaves through exit(): the region directory goes with it */
static void teardown(void)
{
	api_close(&api);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	struct region_init_opts o = {.name = "fuzz", .zones = 3, .listen = "127.0.0.1:7443"};
	struct api_config cfg = {.region_name = "fuzz", .node_timeout_s = 15};
	struct ciel_err err = {0};

	if (!mkdtemp(dir))
		abort();
	o.data_dir = dir;
	if (region_init(&o, &err) < 0 || api_open(&api, dir, &cfg, &err) < 0) {
		fprintf(stderr, "fuzz_api setup: %s\n", err.msg);
		abort();
	}
	ready = 1;
	atexit(teardown);
}

static const char *field(char **p, char *end)
{
	char *s = *p, *nl;

	if (s >= end)
		return "";
	nl = memchr(s, '\n', (size_t)(end - s));
	if (!nl) {
		*p = end;
		return s;
	}
	*nl = '\0';
	*p = nl + 1;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct api_req r = {0};
	struct api_resp resp;
	char *buf, *p, *end;

	if (!ready)
		setup();
	if (size > 65536)
		return 0;
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	/* strings end at the first NUL, as they would coming out of the HTTP parser */
	end = buf + strlen(buf);
	p = buf;
	r.method = field(&p, end);
	r.raw_path = field(&p, end);
	r.raw_query = field(&p, end);
	r.h_authorization = field(&p, end);
	r.h_date = field(&p, end);
	r.host = "127.0.0.1:7443";
	r.body = p;
	r.body_len = (size_t)(end - p);
	snprintf(r.source, sizeof(r.source), "fuzz:0");
	api_handle(&api, &r, &resp);
	if (resp.status < 200 || resp.status > 599)
		abort();
	api_resp_release(&resp);
	api_req_release(&r);
	free(buf);
	return 0;
}
