/* region — see region.h. */
#include "api/region.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "crypto/pki.h"
#include "util/jbody.h"
#include "util/ts.h"

static int write_credentials(const char *path, const char *endpoint, const json_t *key,
			     const char *ca, struct ciel_err *err)
{
	char tmp[4200];
	FILE *f;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", tmp);
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return ciel_err_sys(err, CIEL_EIO, errno, "fdopen %s", tmp);
	}
	fprintf(f,
		"# ciel operator credentials: full control of this region. Keep private.\n"
		"[default]\nendpoint = %s\nkey_id = %s\nsecret = %s\nscope = region\n"
		"ca_file = %s\n",
		endpoint, jbody_str(key, "id", ""), jbody_str(key, "secret", ""), ca);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		fclose(f);
		return ciel_err_sys(err, CIEL_EIO, errno, "write %s", tmp);
	}
	fclose(f);
	if (rename(tmp, path) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "rename %s", tmp);
	return 0;
}

int region_init(const struct region_init_opts *o, struct ciel_err *err)
{
	char path[4096], pki[4096], ca[4200], endpoint[300], host[256], ts[TS_RFC3339_LEN];
	char *zkeys[16] = {0}, *zvals[16] = {0}, *meta = NULL, *opval = NULL;
	const char *sans[4];
	struct api_config cfg = {.region_name = o->name ? o->name : "local", .node_timeout_s = 15};
	struct iam_key_ops ko = {0};
	struct store_op ops[24];
	struct api a;
	struct api_req r = {0};
	json_t *zones = NULL, *key = NULL, *m;
	const char *colon;
	size_t n = 0, nsans = 0;
	int ret = -1, opened = 0;

	if (o->zones < 1 || o->zones > 16)
		return ciel_err_field(err, CIEL_EINVAL, "zones", "zones: must be 1 to 16");
	if (mkdir(o->data_dir, 0700) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", o->data_dir);
	snprintf(pki, sizeof(pki), "%s/pki", o->data_dir);
	if (mkdir(pki, 0700) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", pki);
	colon = strrchr(o->listen, ':');
	if (!colon || colon == o->listen || (size_t)(colon - o->listen) >= sizeof(host))
		return ciel_err_field(err, CIEL_EINVAL, "listen", "listen: must be HOST:PORT");
	memcpy(host, o->listen, (size_t)(colon - o->listen));
	host[colon - o->listen] = '\0';
	sans[nsans++] = "localhost";
	sans[nsans++] = "127.0.0.1";
	sans[nsans++] = "::1";
	if (strcmp(host, "localhost") && strcmp(host, "127.0.0.1") && strcmp(host, "::1"))
		sans[nsans++] = host;
	if (pki_ensure_ca(pki, cfg.region_name, err) < 0 ||
	    pki_ensure_server_cert(pki, sans, nsans, err) < 0)
		return -1;
	snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
	snprintf(endpoint, sizeof(endpoint), "%s://%s", o->insecure_http ? "http" : "https",
		 o->listen);

	if (api_open(&a, o->data_dir, &cfg, err) < 0)
		return -1;
	opened = 1;
	m = api_load_json(&a, "/region/meta", NULL, err);
	if (m) {
		json_decref(m);
		ret = 1;
		goto out;
	}
	if (err->code != CIEL_ENOTFOUND)
		goto out;

	ts_format(ts_now_ms(), ts);
	zones = json_array();
	for (int z = 0; z < o->zones; z++) {
		char zn[16];

		snprintf(zn, sizeof(zn), "az%d", z + 1);
		json_array_append_new(zones, json_string(zn));
		if (asprintf(&zkeys[z], "/region/zones/%s", zn) < 0) {
			zkeys[z] = NULL;
			goto oom;
		}
		zvals[z] = api_dump(json_pack("{s:s, s:s}", "name", zn, "created", ts));
		if (!zvals[z])
			goto oom;
		ops[n++] = (struct store_op){STORE_PUT, zkeys[z], zvals[z], STORE_ABSENT};
	}
	meta = api_dump(
	    json_pack("{s:s, s:s, s:O}", "name", cfg.region_name, "created", ts, "zones", zones));
	opval = api_dump(
	    json_pack("{s:s, s:s, s:s}", "name", "operator", "role", "operator", "created", ts));
	if (!meta || !opval)
		goto oom;
	ops[n++] = (struct store_op){STORE_PUT, "/region/meta", meta, STORE_ABSENT};
	ops[n++] = (struct store_op){STORE_PUT, "/region/principals/operator", opval, STORE_ABSENT};
	if (iam_new_key(&a, "region", "operator", "operator", ops, &n, &ko, &key, err) < 0)
		goto out;
	/* the founding commit is itself the region chain's first event */
	r.method = "INIT";
	r.raw_path = "/";
	snprintf(r.source, sizeof(r.source), "local:cield-init");
	snprintf(r.request_id, sizeof(r.request_id), "init");
	snprintf(r.path, sizeof(r.path), "/v1/region");
	snprintf(r.who.tenant, sizeof(r.who.tenant), "region");
	snprintf(r.who.principal, sizeof(r.who.principal), "cield-init");
	r.route = -1;
	r.action = "region.init";
	if (api_commit(&a, &r, ops, n, 201, NULL, err) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/operator.credentials", o->data_dir);
	if (write_credentials(path, endpoint, key, ca, err) < 0)
		goto out;
	ret = 0;
	goto out;
oom:
	ciel_err_set(err, CIEL_ENOMEM, "out of memory");
out:
	if (opened)
		api_close(&a);
	for (int i = 0; i < 16; i++) {
		free(zkeys[i]);
		free(zvals[i]);
	}
	iam_key_ops_release(&ko);
	free(meta);
	free(opval);
	json_decref(zones);
	json_decref(key);
	return ret;
}
