/*
 * image — `ciel image import|list|show|delete`: the container images a
 * tenant's instances run (and, for the operator, region-wide public ones).
 *
 * import streams the file from disk (client_upload), never holding it in
 * memory; a directory (an OCI image layout, or a root filesystem) is first
 * packed into a tar under $TMPDIR, which is removed however the command
 * ends, Ctrl-C included.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "image/image.h"

#define IMAGE_UPLOAD_MAX (4LL << 30) /* the API's limit on an image file */

/* First 12 hex digits of "sha256:<hex>", docker style. */
static const char *fmt_short_digest(const json_t *obj, char *buf, size_t size)
{
	const char *d = json_string_value(json_object_get(obj, "digest"));

	buf[0] = '\0';
	if (d) {
		if (strncmp(d, "sha256:", 7) == 0)
			d += 7;
		snprintf(buf, size, "%.12s", d);
	}
	return buf;
}

static int64_t member_int(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static void image_row(const json_t *it, struct cells *c)
{
	const json_t *layers = json_object_get(it, "layers");
	int64_t size = member_int(it, "size");

	fmt_member(it, "name", c->s[0], sizeof(c->s[0]));
	fmt_short_digest(it, c->s[1], sizeof(c->s[1]));
	fmt_member(it, "format", c->s[2], sizeof(c->s[2]));
	if (size >= 0)
		fmt_size(size, c->s[3], sizeof(c->s[3]));
	if (json_is_array(layers))
		snprintf(c->s[4], sizeof(c->s[4]), "%zu", json_array_size(layers));
	snprintf(c->s[5], sizeof(c->s[5]), "%s",
		 json_is_true(json_object_get(it, "public")) ? "yes" : "no");
	fmt_age(json_object_get(it, "created"), c->s[6], sizeof(c->s[6]));
}

/* One image as the table import prints. */
static int print_image_row(struct cli *cli, const json_t *img)
{
	static const char *const hdr[] = {"NAME", "DIGEST", "FORMAT", "SIZE", "LAYERS"};

	return cli_print_one(cli, img, 5, hdr, image_row);
}

/*
 * The packed tar of a directory import. A signal handler removes it, so
 * only async-signal-safe calls on these fixed buffers happen there.
 */
static char tmp_dir[PATH_MAX], tmp_tar[PATH_MAX + 32];
static struct sigaction old_int, old_term, old_hup;

static void remove_tmp(void)
{
	if (tmp_tar[0])
		unlink(tmp_tar);
	if (tmp_dir[0])
		rmdir(tmp_dir);
}

static void on_signal(int sig)
{
	remove_tmp();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void tmp_guard(bool on)
{
	struct sigaction sa = {0};

	if (on) {
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old_int);
		sigaction(SIGTERM, &sa, &old_term);
		sigaction(SIGHUP, &sa, &old_hup);
		return;
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	remove_tmp();
	tmp_tar[0] = tmp_dir[0] = '\0';
}

/* Pack dir into tmp_tar; the guard must be on. */
static int pack_dir(const char *dir, struct cli_status *st)
{
	const char *t = getenv("TMPDIR");
	struct ciel_err err;

	if ((size_t)snprintf(tmp_dir, sizeof(tmp_dir), "%s/ciel-image-XXXXXX",
			     t && *t ? t : "/tmp") >= sizeof(tmp_dir)) {
		tmp_dir[0] = '\0';
		return cli_fail("invalid_argument", "TMPDIR is too long");
	}
	if (!mkdtemp(tmp_dir)) {
		int e = errno;

		tmp_dir[0] = '\0';
		cli_fail("io_error", "create a temporary directory under %s: %s",
			 t && *t ? t : "/tmp", strerror(e));
		cli_hint("point TMPDIR at a writable directory with room for the image");
		return EXIT_FAIL;
	}
	snprintf(tmp_tar, sizeof(tmp_tar), "%s/image.tar", tmp_dir);
	cli_status(st, "packing %s...", dir);
	if (image_pack_dir(dir, tmp_tar, &err) < 0) {
		cli_status_clear(st);
		cli_fail_err(&err);
		cli_hint("a directory import takes an OCI image layout (oci-layout, index.json, "
			 "blobs/) or a root filesystem tree");
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int image_import_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "image import",
	    .args = "NAME FILE|DIR",
	    .summary = "Upload an image: a root filesystem tarball (.tar, .tar.gz), an OCI image "
		       "layout tar, or a directory (an OCI layout or a root filesystem, packed "
		       "into a tar first). The region checks every layer and refuses unsafe "
		       "entries (absolute paths, '..', device nodes, setuid files). Images are "
		       "limited to 4 GiB.",
	    .example = "  ciel image import alpine alpine-minirootfs.tar.gz\n"
		       "  skopeo copy docker://nginx:alpine oci:nginx-oci && "
		       "ciel image import nginx nginx-oci\n"
		       "  ciel image import base base.tar --public   (operator)",
	    .min_args = 2,
	    .max_args = 2,
	};
	const char *args[2];
	bool pub = false, setuid_ok = false;
	const struct opt opts[] = {
	    {"public", NULL, "operator: a region-wide image every tenant can run", NULL, &pub},
	    {"allow-setuid", NULL, "operator: keep setuid/setgid bits instead of refusing them",
	     NULL, &setuid_ok},
	    {0},
	};
	struct client_response resp = {0};
	struct cli_progress p;
	const char *file;
	char q[256], path[512], a[32];
	struct stat st;
	int r;

	r = cli_parse(&u, opts, argc, argv, args);
	if (r < 0)
		return cli_parse_exit(r);
	cli_progress_init(&p, "waiting for the region to take it in...");
	if ((r = cli_check_name("image name", args[0])) != 0)
		return r;
	if (stat(args[1], &st) < 0)
		return cli_fail(errno == ENOENT ? "not_found" : "io_error", "%s: %s", args[1],
				strerror(errno));
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return cli_fail("invalid_argument", "%s: not a file or a directory", args[1]);
	if (S_ISREG(st.st_mode) && st.st_size > IMAGE_UPLOAD_MAX)
		return cli_fail("payload_too_large", "%s: %s is over the 4 GiB image limit",
				args[1], fmt_size(st.st_size, a, sizeof(a)));
	cli_query_init(cli, q, sizeof(q));
	if (pub)
		client_query_add(q, sizeof(q), "public", "1");
	if (setuid_ok)
		client_query_add(q, sizeof(q), "allow_setuid", "1");
	if (cli_path(path, sizeof(path), "/v1/images/", args[0], NULL) != 0)
		return EXIT_FAIL;
	/* before anything can fail, so the client's own errors come first */
	if (!cli_client(cli, true))
		return EXIT_FAIL;

	tmp_guard(true);
	file = args[1];
	if (S_ISDIR(st.st_mode)) {
		if ((r = pack_dir(args[1], &p.st)) != 0)
			goto out;
		file = tmp_tar;
		if (stat(file, &st) == 0 && st.st_size > IMAGE_UPLOAD_MAX) {
			r = cli_fail("payload_too_large", "%s packs into %s, over the 4 GiB limit",
				     args[1], fmt_size(st.st_size, a, sizeof(a)));
			goto out;
		}
	}
	cli_status(&p.st, "hashing %s...", args[1]);
	r = cli_upload(cli, "PUT", path, q, file, cli_progress, &p, &resp);
	cli_status_clear(&p.st);
	if (r != 0) {
		if (cli->last_status == 409 && !strstr(cli->last_message, "delete it"))
			cli_hint("image %s exists: pick another name, or `ciel image delete %s` "
				 "first",
				 args[0], args[0]);
		else if (cli->last_status == 400 && strstr(cli->last_message, "setuid") &&
			 !setuid_ok)
			cli_hint("remove the setuid/setgid bits from the image, or have the "
				 "operator import it with --allow-setuid");
		else if (cli->last_status == 400 && strcmp(cli->last_field, "file") == 0)
			cli_hint("the region takes a tar or tar.gz of a root filesystem, or an "
				 "OCI image layout (a directory, or a tar of one)");
		else if (cli->last_status == 403 && (pub || setuid_ok))
			cli_hint("--public and --allow-setuid are for the operator");
		else if (cli->last_status == 413)
			cli_hint("images are limited to 4 GiB");
		goto out;
	}
	cli_progress_done(&p);
	r = print_image_row(cli, resp.json);
	client_response_release(&resp);
out:
	tmp_guard(false);
	return r;
}

static int image_list_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "image list",
	    .summary = "List the images the tenant can run: its own, and the region's public "
		       "ones (PUBLIC yes).",
	    .example = "  ciel image list\n  ciel --tenant acme image list --output json",
	};
	static const char *const hdr[] = {"NAME",   "DIGEST", "FORMAT", "SIZE",
					  "LAYERS", "PUBLIC", "AGE"};
	char q[256];
	int r = cli_parse(&u, NULL, argc, argv, NULL);

	if (r < 0)
		return cli_parse_exit(r);
	cli_query_init(cli, q, sizeof(q));
	return cli_list(cli, "/v1/images", q, 7, hdr, image_row,
			"no images; import one with `ciel image import NAME FILE`");
}

static void show_image(const json_t *img)
{
	const json_t *cfg = json_object_get(img, "config"),
		     *layers = json_object_get(img, "layers");
	const json_t *l;
	char name[64], digest[96], format[32], size[64], unpacked[64], nl[16], ep[512], cmd[512];
	char env[1024], cwd[256], pub[8], created[64], a[32];
	struct kv kv[12];
	int64_t n;
	size_t i, k = 0;

	fmt_member(img, "name", name, sizeof(name));
	fmt_member(img, "digest", digest, sizeof(digest));
	fmt_member(img, "format", format, sizeof(format));
	size[0] = unpacked[0] = nl[0] = '\0';
	if ((n = member_int(img, "size")) >= 0)
		snprintf(size, sizeof(size), "%s (%lld bytes)", fmt_size(n, a, sizeof(a)),
			 (long long)n);
	if ((n = member_int(img, "unpacked")) >= 0)
		snprintf(unpacked, sizeof(unpacked), "%s", fmt_size(n, a, sizeof(a)));
	if (json_is_array(layers))
		snprintf(nl, sizeof(nl), "%zu", json_array_size(layers));
	cli_fmt_words(json_object_get(cfg, "entrypoint"), ep, sizeof(ep));
	cli_fmt_words(json_object_get(cfg, "cmd"), cmd, sizeof(cmd));
	cli_fmt_words(json_object_get(cfg, "env"), env, sizeof(env));
	fmt_member(cfg, "cwd", cwd, sizeof(cwd));
	snprintf(pub, sizeof(pub), "%s",
		 json_is_true(json_object_get(img, "public")) ? "yes" : "no");
	fmt_time(json_object_get(img, "created"), created, sizeof(created));
	kv[k++] = (struct kv){"Name", name};
	kv[k++] = (struct kv){"Digest", digest};
	kv[k++] = (struct kv){"Format", format};
	kv[k++] = (struct kv){"Size", size};
	kv[k++] = (struct kv){"Unpacked", unpacked};
	kv[k++] = (struct kv){"Layers", nl};
	kv[k++] = (struct kv){"Entrypoint", ep};
	kv[k++] = (struct kv){"Cmd", cmd};
	kv[k++] = (struct kv){"Env", env};
	kv[k++] = (struct kv){"Workdir", cwd};
	kv[k++] = (struct kv){"Public", pub};
	kv[k++] = (struct kv){"Created", created};
	out_kv(stdout, kv, k);
	json_array_foreach(layers, i, l)
	{
		fmt_member(l, "digest", digest, sizeof(digest));
		n = member_int(l, "size");
		printf("  %s  %s\n", digest, n >= 0 ? fmt_size(n, a, sizeof(a)) : "-");
	}
}

static void image_not_found(struct cli *cli, const char *name)
{
	(void)cli;
	cli_hint("`ciel image list` shows the images; import one with `ciel image import %s FILE`",
		 name);
}

static int image_show_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "image show",
	    .args = "NAME",
	    .summary = "Show one image: digest, format, sizes, layers, and the entrypoint, "
		       "command, environment and working directory instances start with.",
	    .example = "  ciel image show alpine\n  ciel image show alpine --output json",
	    .min_args = 1,
	    .max_args = 1,
	};

	return cli_show(cli, &u, argc, argv, "/v1/images/", show_image, image_not_found);
}

static int image_delete_cmd(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "image delete",
	    .args = "NAME",
	    .summary = "Delete an image. Refused while an instance still uses it.",
	    .example = "  ciel image delete alpine\n"
		       "  ciel image delete base --public   (operator)",
	    .min_args = 1,
	    .max_args = 1,
	};
	bool pub;
	int r = cli_delete_cmd(cli, &u, argc, argv, "/v1/images/", "image", "",
			       "operator: delete the region-wide public image NAME", &pub);

	if (r == EXIT_FAIL && cli->last_status == 409)
		cli_hint("find the instances using it with `ciel instance list` and delete them "
			 "first (`ciel instance delete NAME`)");
	else if (r == EXIT_FAIL && cli->last_status == 404)
		cli_hint("`ciel image list` shows the images%s", pub ? ""
								     : " (a public one needs "
								       "--public, operator)");
	return r;
}

const struct group group_image = {
    .name = "image",
    .summary = "import and manage container images",
    .example = "  ciel image import alpine alpine-minirootfs.tar.gz\n  ciel image list\n"
	       "  ciel instance run alpine -- echo hello",
    .verbs =
	(const struct verb[]){
	    {"import", "upload an image (tar, tar.gz, OCI layout)", image_import_cmd},
	    {"list", "list images", image_list_cmd},
	    {"show", "show one image", image_show_cmd},
	    {"delete", "delete an image", image_delete_cmd},
	    {0},
	},
};
