/*
 * images — container images per tenant, public images from the operator,
 * and the blobs nodes fetch to run them.
 *
 * Store layout:
 *   /tenants/<t>/images/<name>   image document (see docs/API.md)
 *   /region/images/<name>        a public image, visible to every tenant
 * Bytes live outside the store, in DATA/blobs/sha256/<hex> (lib/image), named
 * by their SHA-256 so a layer shared by images or tenants is kept once and a
 * node can check what it downloads. An upload is spooled to a temp file by
 * the HTTP layer; image_import validates it before a byte reaches blobs/, so
 * a hostile tarball leaves nothing behind. A tenant never sees another
 * tenant's image: the lookup only ever reads its own prefix and the public one.
 */
#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image/image.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

static int truthy(const char *v)
{
	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static void blobs_dir(struct api *a, char *out, size_t size)
{
	snprintf(out, size, "%s/blobs", a->data_dir);
}

json_t *images_find(struct api *a, const char *tenant, const char *name, struct ciel_err *err)
{
	char key[160];
	json_t *img;

	if (api_check_name("image", name, err) < 0)
		return NULL;
	if (tenant && tenant[0]) {
		snprintf(key, sizeof(key), "/tenants/%s/images/%s", tenant, name);
		img = api_load_json(a, key, NULL, err);
		if (img || err->code != CIEL_ENOTFOUND)
			return img;
	}
	snprintf(key, sizeof(key), "/region/images/%s", name);
	img = api_load_json(a, key, NULL, err);
	if (!img && err->code == CIEL_ENOTFOUND)
		ciel_err_field(err, CIEL_ENOTFOUND, "image",
			       "image %s not found; import it first: ciel image import %s FILE",
			       name, name);
	return img;
}

/* The store key an image write goes to: the tenant's, or the public one. */
static int image_key(struct api_req *r, const char *name, char *key, size_t size, int *public,
		     struct ciel_err *err)
{
	*public = truthy(api_query(r, "public"));
	if (api_check_name("name", name, err) < 0)
		return -1;
	if (*public && r->who.role != ROLE_OPERATOR)
		return ciel_err_field(err, CIEL_EPERM, "public",
				      "public: only the operator publishes images");
	if (*public && r->tenant[0])
		return ciel_err_field(err, CIEL_EINVAL, "public",
				      "public: a public image belongs to no tenant; drop ?tenant=");
	if (!*public && !r->tenant[0])
		return ciel_err_field(err, CIEL_EINVAL, "tenant",
				      "tenant: the operator must name a tenant with ?tenant=NAME, "
				      "or publish with ?public=1");
	if (*public)
		snprintf(key, size, "/region/images/%s", name);
	else
		snprintf(key, size, "/tenants/%s/images/%s", r->tenant, name);
	return 0;
}

static json_t *image_doc(const char *name, const struct image_info *info, int public,
			 int allow_setuid)
{
	char now[TS_RFC3339_LEN];
	json_t *layers = json_array();

	for (size_t i = 0; layers && i < info->n_layers; i++)
		json_array_append_new(layers,
				      json_pack("{s:s, s:I}", "digest", info->layers[i].digest,
						"size", (json_int_t)info->layers[i].size));
	ts_format(ts_now_ms(), now);
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:s, s:b, s:b}", "name", name,
			 "digest", info->digest, "format", info->format, "size",
			 (json_int_t)info->size, "unpacked", (json_int_t)info->unpacked, "layers",
			 layers, "config", info->config ? json_incref(info->config) : json_object(),
			 "created", now, "public", public, "allow_setuid", allow_setuid);
}

static int h_image_import(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	struct image_opts opts = {0};
	struct image_info info = {0};
	char key[160], blobs[4200], *val = NULL;
	struct store_op op;
	json_t *doc = NULL, *old;
	int public, ret = -1;

	if (image_key(r, r->params[0], key, sizeof(key), &public, err) < 0)
		return -1;
	opts.allow_setuid = truthy(api_query(r, "allow_setuid"));
	if (opts.allow_setuid && r->who.role != ROLE_OPERATOR)
		return ciel_err_field(err, CIEL_EPERM, "allow_setuid",
				      "allow_setuid: only the operator may keep setuid bits");
	if (!r->body_file)
		return ciel_err_field(err, CIEL_EINVAL, "file", "file: no upload received");
	/* refuse a taken name before the (possibly long) import */
	old = api_load_json(a, key, NULL, err);
	if (old || err->code != CIEL_ENOTFOUND) {
		json_decref(old);
		if (old)
			ciel_err_field(err, CIEL_EEXIST, "name",
				       "image %s already exists; delete it first or pick another "
				       "name",
				       r->params[0]);
		return -1;
	}
	blobs_dir(a, blobs, sizeof(blobs));
	if (image_import(r->body_file, blobs, &opts, &info, err) < 0)
		goto out;
	doc = image_doc(r->params[0], &info, public, opts.allow_setuid);
	val = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (!val) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	op = (struct store_op){STORE_PUT, key, val, STORE_ABSENT};
	if (api_commit(a, r, &op, 1, 201, NULL, err) < 0) {
		if (err->code == CIEL_ECONFLICT)
			ciel_err_field(err, CIEL_EEXIST, "name", "image %s already exists",
				       r->params[0]);
		goto out;
	}
	log_info("image imported name=%s tenant=%s digest=%s layers=%zu bytes=%lld", r->params[0],
		 public ? "(public)" : r->tenant, info.digest, info.n_layers, (long long)info.size);
	api_reply(resp, 201, json_incref(doc));
	ret = 0;
out:
	free(val);
	json_decref(doc);
	image_info_release(&info);
	return ret;
}

static int h_image_list(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	json_t *items = api_list_visible(a, r->tenant, "images", err);

	if (!items)
		return -1;
	api_reply(resp, 200, json_pack("{s:o}", "items", items));
	return 0;
}

static int h_image_show(struct api *a, struct api_req *r, struct api_resp *resp,
			struct ciel_err *err)
{
	json_t *img = images_find(a, r->tenant, r->params[0], err);

	if (!img)
		return -1;
	api_reply(resp, 200, img);
	return 0;
}

/* An instance of the tenant still made from the image, or NULL. */
static char *image_user(struct api *a, const char *tenant, const char *name, struct ciel_err *err,
			int *failed)
{
	char prefix[128];
	json_t *items, *it;
	char *who = NULL;
	size_t i;

	*failed = 0;
	snprintf(prefix, sizeof(prefix), "/tenants/%s/instances/", tenant);
	items = api_list_json(a, prefix, err);
	if (!items) {
		*failed = 1;
		return NULL;
	}
	json_array_foreach(items, i, it)
	{
		if (strcmp(jbody_str(it, "image", ""), name) == 0) {
			who = strdup(jbody_str(it, "name", "?"));
			break;
		}
	}
	json_decref(items);
	return who;
}

static int h_image_delete(struct api *a, struct api_req *r, struct api_resp *resp,
			  struct ciel_err *err)
{
	char key[160], *user;
	struct store_op op;
	int64_t rev;
	json_t *img;
	int public, failed;

	if (image_key(r, r->params[0], key, sizeof(key), &public, err) < 0)
		return -1;
	img = api_load_json(a, key, &rev, err);
	if (!img) {
		if (err->code == CIEL_ENOTFOUND)
			ciel_err_set(err, CIEL_ENOTFOUND, "image %s not found", r->params[0]);
		return -1;
	}
	json_decref(img);
	if (!public) {
		user = image_user(a, r->tenant, r->params[0], err, &failed);
		if (failed)
			return -1;
		if (user) {
			ciel_err_field(err, CIEL_EEXIST, "name",
				       "image %s is used by instance %s; delete the instance first",
				       r->params[0], user);
			free(user);
			return -1;
		}
	}
	/* the blobs stay: other images and running nodes may share them */
	op = (struct store_op){STORE_DELETE, key, NULL, rev};
	if (api_commit(a, r, &op, 1, 200, NULL, err) < 0)
		return -1;
	api_reply(resp, 200, json_pack("{s:s}", "deleted", r->params[0]));
	return 0;
}

struct blob_stream {
	int fd;
};

static long blob_read(void *arg, char *buf, size_t max)
{
	struct blob_stream *b = arg;
	ssize_t n;

	do
		n = read(b->fd, buf, max);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : (long)n;
}

static void blob_free(void *arg)
{
	struct blob_stream *b = arg;

	close(b->fd);
	free(b);
}

static int h_blob_get(struct api *a, struct api_req *r, struct api_resp *resp, struct ciel_err *err)
{
	char blobs[4200], path[4400];
	struct blob_stream *b;
	int fd;

	blobs_dir(a, blobs, sizeof(blobs));
	if (!image_digest_valid(r->params[0]))
		return ciel_err_field(err, CIEL_EINVAL, "digest",
				      "digest: must be sha256:<64 lower-case hex>");
	if (image_blob_path(blobs, r->params[0], path, sizeof(path), err) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return ciel_err_set(err, CIEL_ENOTFOUND, "blob %s not found", r->params[0]);
		return ciel_err_sys(err, CIEL_EIO, errno, "open blob %s", r->params[0]);
	}
	b = malloc(sizeof(*b));
	if (!b) {
		close(fd);
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	b->fd = fd;
	resp->status = 200;
	resp->content_type = "application/octet-stream";
	resp->stream = blob_read;
	resp->stream_arg = b;
	resp->stream_free = blob_free;
	return 0;
}

#define IMG_WRITE (ROLE_ADMIN | ROLE_MEMBER | ROLE_OPERATOR)

const struct api_route image_routes[] = {
    {"PUT", "/v1/images/{}", "image.import", IMG_WRITE, ROUTE_TENANT_OPT | ROUTE_UPLOAD,
     h_image_import},
    {"GET", "/v1/images", "image.list", ROLE_ANY, ROUTE_TENANT_OPT, h_image_list},
    {"GET", "/v1/images/{}", "image.show", ROLE_ANY, ROUTE_TENANT_OPT, h_image_show},
    {"DELETE", "/v1/images/{}", "image.delete", IMG_WRITE, ROUTE_TENANT_OPT, h_image_delete},
    {"GET", "/v1/blobs/{}", "blob.get", ROLE_NODE, 0, h_blob_get},
    {0},
};
