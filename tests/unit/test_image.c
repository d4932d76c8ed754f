/*
 * image: import, scan and unpack, on archives built here with libarchive's
 * writer in a fresh directory per test: a busybox rootfs (plain and gzip),
 * OCI layouts (directory and tar, nested index, whiteouts), and hostile
 * layers that must be refused by name without leaving a file in BLOBS or
 * writing a byte outside the unpack destination.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto/enc.h"
#include "image/image.h"

extern char **environ;

#define MTIME 1700000000

static char root[PATH_MAX];  /* this test's scratch directory */
static char blobs[PATH_MAX]; /* root/blobs */
static unsigned char *busybox;
static size_t busybox_len;

/* ------------------------------------------------------------- fixtures */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static int open_up(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)f;
	if (flag == FTW_D && !S_ISLNK(st->st_mode))
		chmod(p, 0700);
	return 0;
}

/* rm -rf, read-only directories (the tests make some) included when not root */
static void rm_tree(const char *p)
{
	nftw(p, open_up, 16, FTW_PHYS);
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* dir/rel into buf (PATH_MAX bytes) */
static char *pj(char *buf, const char *dir, const char *rel)
{
	if (snprintf(buf, PATH_MAX, "%s/%s", dir, rel) >= PATH_MAX)
		fail();
	return buf;
}

static int setup(void **st)
{
	(void)st;
	snprintf(root, sizeof(root), "/tmp/ciel-test-image-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	pj(blobs, root, "blobs");
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	rm_tree(root);
	return 0;
}

static char *path_in(char *buf, const char *rel)
{
	return pj(buf, root, rel);
}

static unsigned char *read_file(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *buf;
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
	buf[st.st_size] = '\0';
	fclose(f);
	*len = (size_t)st.st_size;
	return buf;
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void file_digest(const char *path, char out[IMAGE_DIGEST_LEN + 1])
{
	size_t n;
	unsigned char *b = read_file(path, &n);
	char hex[65];

	enc_sha256_hex(b, n, hex);
	snprintf(out, IMAGE_DIGEST_LEN + 1, "sha256:%s", hex);
	free(b);
}

static int n_files;

static int count_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)p;
	(void)st;
	(void)f;
	if (flag != FTW_D && flag != FTW_DP && flag != FTW_DNR)
		n_files++;
	return 0;
}

/* Files (anything but directories) under dir; 0 if it does not exist. */
static int count_files(const char *dir)
{
	n_files = 0;
	nftw(dir, count_one, 16, FTW_PHYS);
	return n_files;
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Any name in root that starts with prefix (a leftover temporary). */
static int leftover(const char *prefix)
{
	struct dirent *de;
	DIR *d = opendir(root);
	int found = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			found = 1;
	closedir(d);
	return found;
}

/* ------------------------------------------------------- building tars */

struct ent {
	const char *name;
	char type; /* f file, d dir, l symlink, h hard link, c/b device, p fifo */
	unsigned mode;
	const char *data; /* file content or link target */
	size_t len;	  /* file length; 0 = strlen(data) */
	int64_t uid;
};

static void add_ent(struct archive *a, const struct ent *x)
{
	struct archive_entry *e = archive_entry_new();
	size_t len = x->len ? x->len : (x->data ? strlen(x->data) : 0);

	archive_entry_set_pathname(e, x->name);
	archive_entry_set_mtime(e, MTIME, 0);
	archive_entry_set_uid(e, x->uid);
	archive_entry_set_gid(e, x->uid);
	archive_entry_set_perm(e, x->mode ? x->mode : (x->type == 'd' ? 0755 : 0644));
	switch (x->type) {
	case 'f':
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_size(e, (la_int64_t)len);
		break;
	case 'd':
		archive_entry_set_filetype(e, AE_IFDIR);
		break;
	case 'l':
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_symlink(e, x->data);
		break;
	case 'h':
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_hardlink(e, x->data);
		archive_entry_set_size(e, 0);
		break;
	case 'c':
		archive_entry_set_filetype(e, AE_IFCHR);
		archive_entry_set_rdev(e, makedev(1, 3));
		break;
	case 'b':
		archive_entry_set_filetype(e, AE_IFBLK);
		archive_entry_set_rdev(e, makedev(8, 0));
		break;
	case 'p':
		archive_entry_set_filetype(e, AE_IFIFO);
		break;
	default:
		fail();
	}
	assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
	if (x->type == 'f' && len)
		assert_int_equal(archive_write_data(a, x->data, len), (la_ssize_t)len);
	archive_entry_free(e);
}

static void write_tar(const char *path, int gzip, const struct ent *ents, size_t n)
{
	struct archive *a = archive_write_new();

	assert_non_null(a);
	if (gzip)
		assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
	assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++)
		add_ent(a, &ents[i]);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void write_busybox_tar(const char *path, int gzip)
{
	const struct ent ents[] = {
	    {"./", 'd', 0755, NULL, 0, 0},
	    {"bin/", 'd', 0755, NULL, 0, 0},
	    {"bin/busybox", 'f', 0755, (const char *)busybox, busybox_len, 0},
	    {"bin/sh", 'l', 0777, "busybox", 0, 0},
	    {"bin/ls", 'l', 0777, "/bin/busybox", 0, 0},
	    {"etc/", 'd', 0755, NULL, 0, 0},
	    {"etc/hostname", 'f', 0644, "ciel\n", 0, 1234},
	};

	write_tar(path, gzip, ents, N(ents));
}

/* Put a file into BLOBS under its digest, as a node holds a downloaded layer. */
static void put_blob(const char *path, struct image_layer *l)
{
	char dst[PATH_MAX], dir[PATH_MAX];
	unsigned char *b;
	size_t n;

	pj(dir, blobs, "sha256");
	mkdir(blobs, 0700);
	mkdir(dir, 0700);
	file_digest(path, l->digest);
	b = read_file(path, &n);
	assert_int_equal(image_blob_path(blobs, l->digest, dst, sizeof(dst), NULL), 0);
	write_file(dst, b, n);
	l->size = (int64_t)n;
	free(b);
}

static void assert_refused(int rc, const struct ciel_err *err, const char *name, const char *why)
{
	assert_int_equal(rc, -1);
	assert_int_equal(err->code, CIEL_EINVAL);
	assert_string_equal(err->field, "file");
	if (!strstr(err->msg, name) || (why && !strstr(err->msg, why)))
		fail_msg("message '%s' should name '%s' and say '%s'", err->msg, name,
			 why ? why : "");
	assert_true(!strncmp(err->msg, "file: ", 6));
}

/* ----------------------------------------------------------- rootfs tar */

struct prog {
	int calls;
	int64_t done, total;
};

static void on_progress(void *arg, int64_t done, int64_t total)
{
	struct prog *p = arg;

	assert_true(done >= p->done);
	p->calls++;
	p->done = done;
	p->total = total;
}

static void check_rootfs(int gzip)
{
	char tar[PATH_MAX], dest[PATH_MAX], p[PATH_MAX], want[IMAGE_DIGEST_LEN + 1], link[80];
	struct prog pr = {0};
	struct image_opts o = {.progress = on_progress, .progress_arg = &pr};
	struct image_info info;
	struct ciel_err err = {0};
	struct stat st;
	static char a0[] = "sh", a1[] = "-c", a2[] = "test -x /proc/self/exe && exit 7";
	char *argv[] = {a0, a1, a2, NULL};
	pid_t pid;
	int status;

	path_in(tar, gzip ? "rootfs.tar.gz" : "rootfs.tar");
	write_busybox_tar(tar, gzip);
	file_digest(tar, want);
	assert_int_equal(stat(tar, &st), 0);

	assert_int_equal(image_import(tar, blobs, &o, &info, &err), 0);
	assert_string_equal(info.format, "rootfs-tar");
	assert_int_equal(info.n_layers, 1);
	assert_string_equal(info.digest, want);
	assert_string_equal(info.layers[0].digest, want);
	assert_int_equal(info.layers[0].size, st.st_size);
	assert_int_equal(info.size, st.st_size);
	assert_int_equal(info.unpacked, (int64_t)busybox_len + 5);
	assert_true(json_is_object(info.config));
	/* the blob is the file as given, named by its hash */
	assert_int_equal(image_blob_path(blobs, want, p, sizeof(p), &err), 0);
	file_digest(p, link);
	assert_string_equal(link, want);
	assert_int_equal(count_files(blobs), 1);
	assert_true(pr.calls >= 1);
	assert_int_equal(pr.done, st.st_size);
	assert_int_equal(pr.total, st.st_size);

	path_in(dest, "rootfs");
	assert_int_equal(image_unpack(blobs, info.layers, 1, dest, NULL, &err), 0);
	pj(p, dest, "bin/busybox");
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(st.st_size, (off_t)busybox_len);
	assert_int_equal(st.st_mtime, MTIME);
	pj(p, dest, "bin/sh");
	assert_int_equal(readlink(p, link, sizeof(link)), 7);
	assert_memory_equal(link, "busybox", 7);
	pj(p, dest, "bin/ls");
	assert_int_equal(readlink(p, link, sizeof(link)), 12);
	assert_memory_equal(link, "/bin/busybox", 12);
	pj(p, dest, "etc/hostname");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, geteuid() == 0 ? 1234 : geteuid());
	assert_int_equal(stat(dest, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755);

	/* it runs: bin/sh resolves to busybox through the relative symlink */
	pj(p, dest, "bin/sh");
	assert_int_equal(posix_spawn(&pid, p, NULL, NULL, argv, environ), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 7);

	/* dest exists: another unpack won, nothing to do */
	assert_int_equal(image_unpack(blobs, info.layers, 1, dest, NULL, &err), 0);
	assert_false(leftover("rootfs.tmp-"));
	/* the same image again adds nothing */
	image_info_release(&info);
	assert_int_equal(image_import(tar, blobs, NULL, &info, &err), 0);
	assert_string_equal(info.digest, want);
	assert_int_equal(count_files(blobs), 1);
	image_info_release(&info);
}

static void test_rootfs_tar(void **st)
{
	(void)st;
	check_rootfs(0);
}

static void test_rootfs_tar_gz(void **st)
{
	(void)st;
	check_rootfs(1);
}

static void test_scan_file_and_mem_agree(void **st)
{
	char tar[PATH_MAX];
	struct ciel_err err;
	int64_t a = -1, b = -1;
	unsigned char *buf;
	size_t n;

	(void)st;
	path_in(tar, "rootfs.tar.gz");
	write_busybox_tar(tar, 1);
	assert_int_equal(image_scan_layer(tar, NULL, &a, &err), 0);
	buf = read_file(tar, &n);
	assert_int_equal(image_scan_layer_mem(buf, n, NULL, &b, &err), 0);
	assert_int_equal(a, (int64_t)busybox_len + 5);
	assert_int_equal(a, b);
	/* a scan writes nothing */
	assert_int_equal(count_files(root), 1);
	free(buf);
}

/* -------------------------------------------------------- hostile layers */

struct hostile {
	struct ent e[2];
	size_t n;
	const char *name; /* the entry the message must name */
	const char *why;
};

static void test_hostile_refused(void **st)
{
	static char longname[5001];
	const struct hostile cases[] = {
	    {{{"../etc/passwd", 'f', 0, "x", 0, 0}}, 1, "../etc/passwd", "climbs out"},
	    {{{"/etc/passwd", 'f', 0, "x", 0, 0}}, 1, "/etc/passwd", "absolute"},
	    {{{"a/../../x", 'f', 0, "x", 0, 0}}, 1, "a/../../x", "(..)"},
	    {{{"a/..", 'd', 0, NULL, 0, 0}}, 1, "a/..", "(..)"},
	    {{{"ok", 'f', 0, "x", 0, 0}, {"h", 'h', 0, "/etc/shadow", 0, 0}}, 2, "'h'", "absolute"},
	    {{{"h", 'h', 0, "../x", 0, 0}}, 1, "'h'", "hard link"},
	    {{{"a/", 'd', 0, NULL, 0, 0}, {"a/l", 'l', 0, "../../x", 0, 0}},
	     2,
	     "a/l",
	     "climbs out"},
	    {{{"l", 'l', 0, "..", 0, 0}}, 1, "'l'", "climbs out"},
	    {{{"dev/null", 'c', 0666, NULL, 0, 0}}, 1, "dev/null", "device"},
	    {{{"dev/sda", 'b', 0660, NULL, 0, 0}}, 1, "dev/sda", "device"},
	    {{{"bin/su", 'f', 04755, "x", 0, 0}}, 1, "bin/su", "setuid"},
	    {{{"bin/wall", 'f', 02755, "x", 0, 0}}, 1, "bin/wall", "setgid"},
	    {{{"a/.wh..", 'f', 0, "", 0, 0}}, 1, "a/.wh..", "whiteout"},
	    {{{longname, 'f', 0, "x", 0, 0}}, 1, "aaaaaaaaaaaaaaaa", "longer than 4096"},
	};
	char tar[PATH_MAX], want[64];
	struct image_info info;
	struct ciel_err err;
	int64_t unpacked;
	unsigned char *buf;
	size_t len;

	(void)st;
	for (size_t i = 0; i < sizeof(longname) - 1; i++)
		longname[i] = (i % 100 == 99) ? '/' : 'a';
	longname[sizeof(longname) - 1] = '\0';
	for (size_t i = 0; i < N(cases); i++)
		for (int gz = 0; gz < 2; gz++) {
			const struct hostile *c = &cases[i];
			int before = count_files(blobs);

			snprintf(want, sizeof(want), "%s", c->name);
			path_in(tar, gz ? "hostile.tar.gz" : "hostile.tar");
			write_tar(tar, gz, c->e, c->n);
			memset(&err, 0, sizeof(err));
			assert_refused(image_import(tar, blobs, NULL, &info, &err), &err, want,
				       c->why);
			assert_null(info.config);
			assert_int_equal(count_files(blobs), before);
			assert_int_equal(count_files(blobs), 0);
			memset(&err, 0, sizeof(err));
			assert_refused(image_scan_layer(tar, NULL, &unpacked, &err), &err, want,
				       c->why);
			buf = read_file(tar, &len);
			assert_refused(image_scan_layer_mem(buf, len, NULL, &unpacked, &err), &err,
				       want, c->why);
			free(buf);
		}
	/* an absolute symlink is fine: it resolves inside the container */
	{
		const struct ent ok[] = {{"etc/", 'd', 0, NULL, 0, 0},
					 {"etc/mtab", 'l', 0, "/proc/self/mounts", 0, 0},
					 {"usr/bin/x", 'l', 0, "../../bin/busybox", 0, 0},
					 {"var/mail/", 'd', 02775, NULL, 0, 0},
					 {"run/p", 'p', 0600, NULL, 0, 0}};

		path_in(tar, "ok.tar");
		write_tar(tar, 0, ok, N(ok));
		assert_int_equal(image_scan_layer(tar, NULL, &unpacked, &err), 0);
	}
}

static void test_setuid_needs_allow(void **st)
{
	const struct ent ents[] = {
	    {"bin/", 'd', 0755, NULL, 0, 0},
	    {"bin/su", 'f', 04755, "#!/bin/sh\n", 0, 0},
	    {"var/mail/", 'd', 02775, NULL, 0, 0},
	};
	struct image_opts allow = {.allow_setuid = 1};
	char tar[PATH_MAX], dest[PATH_MAX], p[PATH_MAX];
	struct image_info info;
	struct ciel_err err;
	struct stat sb;

	(void)st;
	path_in(tar, "suid.tar");
	write_tar(tar, 0, ents, N(ents));
	assert_refused(image_import(tar, blobs, NULL, &info, &err), &err, "bin/su", "setuid");
	assert_int_equal(count_files(blobs), 0);

	assert_int_equal(image_import(tar, blobs, &allow, &info, &err), 0);
	/* the node scans again with its own options */
	path_in(dest, "strict");
	assert_refused(image_unpack(blobs, info.layers, 1, dest, NULL, &err), &err, "bin/su",
		       "setuid");
	assert_false(exists(dest));
	assert_false(leftover("strict.tmp-"));

	path_in(dest, "allowed");
	assert_int_equal(image_unpack(blobs, info.layers, 1, dest, &allow, &err), 0);
	pj(p, dest, "bin/su");
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 04755);
	pj(p, dest, "var/mail");
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 02775);
	image_info_release(&info);
}

static void test_corrupt_refused(void **st)
{
	char tar[PATH_MAX], bad[PATH_MAX];
	struct image_info info;
	struct ciel_err err;
	unsigned char *b;
	size_t n;

	(void)st;
	/* cut in the middle of bin/busybox's data, plain and gzip */
	for (int gz = 0; gz < 2; gz++) {
		path_in(tar, "whole.tar");
		write_busybox_tar(tar, gz);
		b = read_file(tar, &n);
		path_in(bad, "cut.tar");
		write_file(bad, b, n / 2);
		free(b);
		assert_refused(image_import(bad, blobs, NULL, &info, &err), &err, "bin/busybox",
			       "truncated or corrupt");
		assert_int_equal(count_files(blobs), 0);
	}
	/* not a tar at all */
	b = calloc(1, 10000);
	assert_non_null(b);
	for (size_t i = 0; i < 10000; i++)
		b[i] = (unsigned char)(i * 7 + 3);
	write_file(bad, b, 10000);
	assert_refused(image_import(bad, blobs, NULL, &info, &err), &err,
		       "file:", "not a tar archive");
	/* zstd is named as such */
	memcpy(b, "\x28\xb5\x2f\xfd", 4);
	write_file(bad, b, 10000);
	assert_refused(image_import(bad, blobs, NULL, &info, &err), &err, "zstd", NULL);
	free(b);
	write_file(bad, "", 0);
	assert_refused(image_import(bad, blobs, NULL, &info, &err), &err, "empty", NULL);
	assert_int_equal(count_files(blobs), 0);
	/* neither file nor directory */
	assert_refused(image_import("/dev/null", blobs, NULL, &info, &err), &err, "/dev/null",
		       "neither");
	path_in(bad, "missing.tar");
	assert_refused(image_import(bad, blobs, NULL, &info, &err), &err, "missing.tar", NULL);
	assert_int_equal(count_files(blobs), 0);
}

static void test_max_unpacked(void **st)
{
	struct image_opts o = {.max_unpacked_bytes = 1000};
	char tar[PATH_MAX];
	struct image_info info;
	struct ciel_err err;

	(void)st;
	path_in(tar, "rootfs.tar");
	write_busybox_tar(tar, 0);
	assert_refused(image_import(tar, blobs, &o, &info, &err), &err, "bin/busybox",
		       "more than 1000 bytes");
	assert_int_equal(count_files(blobs), 0);
	o.max_unpacked_bytes = (int64_t)busybox_len + 5;
	assert_int_equal(image_import(tar, blobs, &o, &info, &err), 0);
	image_info_release(&info);
}

/* ------------------------------------------------------------ OCI layout */

struct blob {
	char digest[IMAGE_DIGEST_LEN + 1];
	json_int_t size;
};

static void layout_blob(const char *dir, const void *p, size_t n, struct blob *b)
{
	char path[PATH_MAX], hex[65];

	enc_sha256_hex(p, n, hex);
	snprintf(b->digest, sizeof(b->digest), "sha256:%s", hex);
	b->size = (json_int_t)n;
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, hex);
	write_file(path, p, n);
}

static void layout_json(const char *dir, json_t *j, struct blob *b)
{
	char *s = json_dumps(j, JSON_COMPACT);

	assert_non_null(s);
	layout_blob(dir, s, strlen(s), b);
	free(s);
	json_decref(j);
}

static void layout_tar_blob(const char *dir, int gz, const struct ent *e, size_t n, struct blob *b)
{
	char tmp[PATH_MAX];
	unsigned char *buf;
	size_t len;

	path_in(tmp, "layer.tmp");
	write_tar(tmp, gz, e, n);
	buf = read_file(tmp, &len);
	layout_blob(dir, buf, len, b);
	free(buf);
	unlink(tmp);
}

struct layout_opts {
	int nested;		/* index.json -> index (arm64, amd64) -> manifest */
	int corrupt;		/* flip a byte of layer 2, keeping its name */
	const char *media2;	/* layer 2 media type */
	const struct ent *evil; /* extra entry in layer 2 */
};

/* An OCI layout in dir: two gzip layers, the second with whiteouts. */
static void make_layout(const char *dir, const struct layout_opts *lo, char *man_digest)
{
	const struct ent l1[] = {
	    {"bin/", 'd', 0755, NULL, 0, 0},
	    {"bin/busybox", 'f', 0755, (const char *)busybox, busybox_len, 0},
	    {"bin/sh", 'l', 0777, "busybox", 0, 0},
	    {"etc/", 'd', 0755, NULL, 0, 0},
	    {"etc/hostname", 'f', 0644, "one\n", 0, 0},
	    {"etc/gone", 'f', 0644, "x", 0, 0},
	    {"d/", 'd', 0755, NULL, 0, 0},
	    {"d/old", 'f', 0644, "y", 0, 0},
	};
	struct ent l2[] = {
	    {"etc/.wh.gone", 'f', 0644, "", 0, 0}, {"d/.wh..wh..opq", 'f', 0644, "", 0, 0},
	    {"d/new", 'f', 0644, "z", 0, 0},	   {"etc/hostname", 'f', 0644, "two\n", 0, 0},
	    {"etc/extra", 'f', 0644, "e", 0, 0},
	};
	const char *gz = "application/vnd.oci.image.layer.v1.tar+gzip";
	struct blob b1, b2, cfg, man, inner;
	char path[PATH_MAX];
	json_t *j;

	if (lo->evil)
		l2[4] = *lo->evil;
	mkdir(dir, 0755);
	pj(path, dir, "blobs");
	mkdir(path, 0755);
	pj(path, dir, "blobs/sha256");
	mkdir(path, 0755);
	layout_tar_blob(dir, 1, l1, N(l1), &b1);
	layout_tar_blob(dir, 1, l2, N(l2), &b2);
	if (lo->corrupt) {
		unsigned char *buf;
		size_t n;

		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, b2.digest + 7);
		buf = read_file(path, &n);
		buf[n / 2] ^= 0x40;
		write_file(path, buf, n);
		free(buf);
	}
	j = json_pack("{s:s, s:s, s:{s:[s], s:[s,s], s:[s], s:s}, s:{s:s, s:[s,s]}}",
		      "architecture", "amd64", "os", "linux", "config", "Entrypoint", "/bin/sh",
		      "Cmd", "-c", "echo hi", "Env", "PATH=/bin", "WorkingDir", "/d", "rootfs",
		      "type", "layers", "diff_ids", b1.digest, b2.digest);
	assert_non_null(j);
	layout_json(dir, j, &cfg);
	j = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[{s:s, s:s, s:I}, {s:s, s:s, s:I}]}",
		      "schemaVersion", 2, "mediaType", "application/vnd.oci.image.manifest.v1+json",
		      "config", "mediaType", "application/vnd.oci.image.config.v1+json", "digest",
		      cfg.digest, "size", cfg.size, "layers", "mediaType", gz, "digest", b1.digest,
		      "size", b1.size, "mediaType", lo->media2 ? lo->media2 : gz, "digest",
		      b2.digest, "size", b2.size);
	assert_non_null(j);
	layout_json(dir, j, &man);
	snprintf(man_digest, IMAGE_DIGEST_LEN + 1, "%s", man.digest);
	if (lo->nested) {
		/* arm64 first, its manifest absent: it must not even be read */
		j = json_pack("{s:i, s:s, s:[{s:s, s:s, s:I, s:{s:s, s:s}}, {s:s, s:s, s:I, "
			      "s:{s:s, s:s}}]}",
			      "schemaVersion", 2, "mediaType",
			      "application/vnd.oci.image.index.v1+json", "manifests", "mediaType",
			      "application/vnd.oci.image.manifest.v1+json", "digest",
			      "sha256:"
			      "0000000000000000000000000000000000000000000000000000000000000000",
			      "size", (json_int_t)100, "platform", "architecture", "arm64", "os",
			      "linux", "mediaType", "application/vnd.oci.image.manifest.v1+json",
			      "digest", man.digest, "size", man.size, "platform", "architecture",
			      "amd64", "os", "linux");
		assert_non_null(j);
		layout_json(dir, j, &inner);
		man = inner;
	}
	j = json_pack("{s:i, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "manifests", "mediaType",
		      lo->nested ? "application/vnd.oci.image.index.v1+json"
				 : "application/vnd.oci.image.manifest.v1+json",
		      "digest", man.digest, "size", man.size);
	pj(path, dir, "index.json");
	{
		char *s = json_dumps(j, JSON_COMPACT);

		write_file(path, s, strlen(s));
		free(s);
		json_decref(j);
	}
	pj(path, dir, "oci-layout");
	write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
}

static void check_oci_image(const struct image_info *info, const char *man_digest)
{
	char dest[PATH_MAX], p[PATH_MAX];
	struct ciel_err err;
	struct stat st;
	unsigned char *b;
	size_t n;
	json_t *c = info->config;

	assert_string_equal(info->format, "oci");
	assert_string_equal(info->digest, man_digest);
	assert_int_equal(info->n_layers, 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "entrypoint"), 0)),
			    "/bin/sh");
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "cmd"), 1)),
			    "echo hi");
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "env"), 0)),
			    "PATH=/bin");
	assert_string_equal(json_string_value(json_object_get(c, "cwd")), "/d");
	/* two layers, the config and the manifest: the image digest names a blob */
	assert_int_equal(count_files(blobs), 4);
	assert_int_equal(image_blob_path(blobs, info->digest, p, sizeof(p), &err), 0);
	assert_true(exists(p));

	path_in(dest, "oci-root");
	rm_tree(dest);
	assert_int_equal(image_unpack(blobs, info->layers, info->n_layers, dest, NULL, &err), 0);
	pj(p, dest, "etc/hostname");
	b = read_file(p, &n);
	assert_string_equal((char *)b, "two\n");
	free(b);
	pj(p, dest, "etc/gone");
	assert_false(exists(p));
	pj(p, dest, "d/old");
	assert_false(exists(p));
	pj(p, dest, "d/new");
	assert_true(exists(p));
	pj(p, dest, "etc/.wh.gone");
	assert_false(exists(p));
	pj(p, dest, "d/.wh..wh..opq");
	assert_false(exists(p));
	pj(p, dest, "bin/busybox");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755);
	pj(p, dest, "d");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mtime, MTIME);
}

static void test_oci_dir(void **st)
{
	const struct layout_opts lo = {0};
	char dir[PATH_MAX], man[IMAGE_DIGEST_LEN + 1];
	struct image_info info;
	struct ciel_err err;

	(void)st;
	path_in(dir, "layout");
	make_layout(dir, &lo, man);
	assert_int_equal(image_import(dir, blobs, NULL, &info, &err), 0);
	check_oci_image(&info, man);
	image_info_release(&info);
}

static void test_oci_tar(void **st)
{
	const struct layout_opts lo = {0};
	char dir[PATH_MAX], tar[PATH_MAX], man[IMAGE_DIGEST_LEN + 1];
	struct archive_entry *e;
	struct image_info info;
	struct ciel_err err;
	struct archive *a;
	int n = 0;

	(void)st;
	path_in(dir, "layout");
	make_layout(dir, &lo, man);
	/* the tar lands inside the tree it packs: it must not pack itself */
	pj(tar, dir, "self.tar");
	assert_int_equal(image_pack_dir(dir, tar, &err), 0);
	a = archive_read_new();
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, tar, 10240), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		const char *p = archive_entry_pathname(e);

		assert_true(p[0] != '/');
		assert_true(strncmp(p, "layout", 6) != 0);
		assert_null(strstr(p, root));
		assert_null(strstr(p, "self.tar"));
		n++;
	}
	archive_read_free(a);
	/* oci-layout, index.json, blobs, blobs/sha256, 4 blobs */
	assert_int_equal(n, 8);

	assert_int_equal(image_import(tar, blobs, NULL, &info, &err), 0);
	check_oci_image(&info, man);
	image_info_release(&info);
	/* the directory form of the same image is the same image */
	assert_int_equal(image_import(dir, blobs, NULL, &info, &err), 0);
	assert_string_equal(info.digest, man);
	assert_int_equal(count_files(blobs), 4);
	image_info_release(&info);
}

/* docker save order: blobs first, its own files beside, gzipped; found by content */
static void test_oci_tar_docker_save(void **st)
{
	const struct layout_opts lo = {0};
	char dir[PATH_MAX], tar[PATH_MAX], p[PATH_MAX], f[PATH_MAX], man[IMAGE_DIGEST_LEN + 1];
	char names[8][128];
	unsigned char *owned[8];
	struct ent ents[12];
	struct image_info info;
	struct ciel_err err;
	struct dirent *de;
	size_t n = 0, n_owned = 0, len;
	DIR *d;

	(void)st;
	path_in(dir, "layout");
	make_layout(dir, &lo, man);
	pj(p, dir, "blobs/sha256");
	d = opendir(p);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		assert_true(n_owned < 8);
		snprintf(names[n_owned], sizeof(names[0]), "blobs/sha256/%.64s", de->d_name);
		owned[n_owned] = read_file(pj(f, p, de->d_name), &len);
		ents[n++] =
		    (struct ent){names[n_owned], 'f', 0644, (const char *)owned[n_owned], len, 0};
		n_owned++;
	}
	closedir(d);
	ents[n++] = (struct ent){"manifest.json", 'f', 0644, "[]", 0, 0};
	ents[n++] = (struct ent){"repositories", 'f', 0644, "{}", 0, 0};
	owned[n_owned] = read_file(pj(f, dir, "index.json"), &len);
	ents[n++] = (struct ent){"index.json", 'f', 0644, (const char *)owned[n_owned++], len, 0};
	ents[n++] =
	    (struct ent){"oci-layout", 'f', 0644, "{\"imageLayoutVersion\":\"1.0.0\"}", 0, 0};
	path_in(tar, "saved.tar.gz");
	write_tar(tar, 1, ents, n);
	for (size_t i = 0; i < n_owned; i++)
		free(owned[i]);
	assert_int_equal(image_import(tar, blobs, NULL, &info, &err), 0);
	check_oci_image(&info, man);
	image_info_release(&info);
}

static void test_oci_nested_index(void **st)
{
	const struct layout_opts lo = {.nested = 1};
	char dir[PATH_MAX], man[IMAGE_DIGEST_LEN + 1];
	struct image_info info;
	struct ciel_err err;

	(void)st;
	path_in(dir, "layout");
	make_layout(dir, &lo, man);
	assert_int_equal(image_import(dir, blobs, NULL, &info, &err), 0);
	check_oci_image(&info, man);
	image_info_release(&info);
}

static void test_oci_refused(void **st)
{
	const struct ent evil = {"../evil", 'f', 0, "x", 0, 0};
	const struct layout_opts zstd = {.media2 = "application/vnd.oci.image.layer.v1.tar+zstd"};
	const struct layout_opts odd = {.media2 = "application/vnd.example.thing"};
	const struct layout_opts corrupt = {.corrupt = 1};
	const struct layout_opts hostile = {.evil = &evil};
	char dir[PATH_MAX], tar[PATH_MAX], man[IMAGE_DIGEST_LEN + 1];
	struct image_info info;
	struct ciel_err err;
	const struct {
		const struct layout_opts *lo;
		const char *name, *why;
	} cases[] = {
	    {&zstd, "layer 2", "zstd"},
	    {&odd, "layer 2", "not supported"},
	    {&corrupt, "sha256:", "does not match its digest"},
	    {&hostile, "layer 2: entry '../evil'", "climbs out"},
	};

	(void)st;
	for (size_t i = 0; i < N(cases); i++) {
		path_in(dir, "layout");
		rm_tree(dir);
		make_layout(dir, cases[i].lo, man);
		assert_refused(image_import(dir, blobs, NULL, &info, &err), &err, cases[i].name,
			       cases[i].why);
		/* layer 1 was good, and still nothing is kept */
		assert_int_equal(count_files(blobs), 0);
		path_in(tar, "layout.tar");
		assert_int_equal(image_pack_dir(dir, tar, &err), 0);
		assert_refused(image_import(tar, blobs, NULL, &info, &err), &err, cases[i].name,
			       cases[i].why);
		assert_int_equal(count_files(blobs), 0);
	}
	/* a layout tar with a stray entry is not taken for a rootfs */
	{
		const struct ent ents[] = {
		    {"oci-layout", 'f', 0, "{\"imageLayoutVersion\":\"1.0.0\"}", 0, 0},
		    {"etc/passwd", 'f', 0, "root:x:0:0::/:/bin/sh\n", 0, 0},
		};

		path_in(tar, "stray.tar");
		write_tar(tar, 0, ents, N(ents));
		assert_refused(image_import(tar, blobs, NULL, &info, &err), &err, "etc/passwd",
			       "OCI image layout");
	}
	assert_int_equal(count_files(blobs), 0);
}

/* --------------------------------------------------- unpack never escapes */

static void unpack_refused(const struct image_layer *l, size_t n, const char *name, const char *why)
{
	char dest[PATH_MAX];
	struct ciel_err err;

	path_in(dest, "dest");
	assert_refused(image_unpack(blobs, l, n, dest, NULL, &err), &err, name, why);
	assert_false(exists(dest));
	assert_false(leftover("dest.tmp-"));
}

static void test_unpack_symlink_tricks(void **st)
{
	char outside[PATH_MAX], victim[PATH_MAX], tar[PATH_MAX], dest[PATH_MAX], p[PATH_MAX];
	struct image_layer l[2];
	struct ciel_err err;
	struct stat sb;
	unsigned char *b;
	size_t n;

	(void)st;
	memset(l, 0, sizeof(l));
	path_in(outside, "outside");
	assert_int_equal(mkdir(outside, 0755), 0);
	pj(victim, outside, "victim");
	write_file(victim, "safe", 4);
	{
		/* layer 1: "a" -> the outside directory (absolute: the scan lets it
		 * through, it would resolve inside the container) */
		const struct ent l1[] = {{"a", 'l', 0777, outside, 0, 0}};
		const struct ent l2[] = {{"a/evil", 'f', 0644, "pwned", 0, 0}};
		const struct ent l2h[] = {{"h", 'h', 0, "a/victim", 0, 0}};
		const struct ent l2w[] = {{"a/.wh.victim", 'f', 0, "", 0, 0},
					  {"ok", 'f', 0, "ok", 0, 0}};
		const struct ent same[] = {{"a", 'l', 0777, outside, 0, 0},
					   {"a/evil", 'f', 0644, "pwned", 0, 0}};

		path_in(tar, "l1.tar");
		write_tar(tar, 0, l1, N(l1));
		put_blob(tar, &l[0]);
		/* a file under the symlinked directory */
		path_in(tar, "l2.tar");
		write_tar(tar, 0, l2, N(l2));
		put_blob(tar, &l[1]);
		unpack_refused(l, 2, "a/evil", "symlink");
		pj(p, outside, "evil");
		assert_false(exists(p));
		/* a hard link to a file through it */
		path_in(tar, "l2h.tar");
		write_tar(tar, 0, l2h, N(l2h));
		put_blob(tar, &l[1]);
		unpack_refused(l, 2, "'h'", "symlink");
		assert_int_equal(stat(victim, &sb), 0);
		assert_int_equal(sb.st_nlink, 1);
		/* a whiteout through it removes nothing outside */
		path_in(tar, "l2w.tar");
		write_tar(tar, 0, l2w, N(l2w));
		put_blob(tar, &l[1]);
		path_in(dest, "dest-w");
		assert_int_equal(image_unpack(blobs, l, 2, dest, NULL, &err), 0);
		assert_true(exists(victim));
		pj(p, dest, "ok");
		assert_true(exists(p));
		/* the same trick inside one layer */
		path_in(tar, "same.tar");
		write_tar(tar, 0, same, N(same));
		put_blob(tar, &l[0]);
		unpack_refused(l, 1, "a/evil", "symlink");
		pj(p, outside, "evil");
		assert_false(exists(p));
	}
	{
		/* a relative symlink climbing out: refused by the node's own scan */
		const struct ent l1[] = {{"a", 'l', 0777, "../../../tmp/x", 0, 0}};
		const struct ent l2[] = {{"a/evil", 'f', 0644, "pwned", 0, 0}};

		path_in(tar, "r1.tar");
		write_tar(tar, 0, l1, N(l1));
		put_blob(tar, &l[0]);
		path_in(tar, "r2.tar");
		write_tar(tar, 0, l2, N(l2));
		put_blob(tar, &l[1]);
		unpack_refused(l, 2, "layer 1", "climbs out");
	}
	{
		/* a symlink replaced by a file: the file is written, not its target */
		const struct ent l1[] = {{"l", 'l', 0777, victim, 0, 0}};
		const struct ent l2[] = {{"l", 'f', 0644, "new", 0, 0}};

		path_in(tar, "s1.tar");
		write_tar(tar, 0, l1, N(l1));
		put_blob(tar, &l[0]);
		path_in(tar, "s2.tar");
		write_tar(tar, 0, l2, N(l2));
		put_blob(tar, &l[1]);
		path_in(dest, "dest-s");
		assert_int_equal(image_unpack(blobs, l, 2, dest, NULL, &err), 0);
		b = read_file(victim, &n);
		assert_string_equal((char *)b, "safe");
		free(b);
		pj(p, dest, "l");
		assert_int_equal(lstat(p, &sb), 0);
		assert_true(S_ISREG(sb.st_mode));
	}
	/* a blob whose bytes changed on the node */
	{
		char path[PATH_MAX];

		assert_int_equal(image_blob_path(blobs, l[0].digest, path, sizeof(path), &err), 0);
		b = read_file(path, &n);
		b[0] ^= 1;
		write_file(path, b, n);
		free(b);
		path_in(dest, "dest-rot");
		assert_int_equal(image_unpack(blobs, l, 1, dest, NULL, &err), -1);
		assert_true(strstr(err.msg, "does not match") != NULL);
		assert_false(exists(dest));
	}
}

static void test_unpack_tree(void **st)
{
	/* a read-only directory still gets its files; a dir replaces a file;
	 * hard links and fifos come through */
	const struct ent l1[] = {
	    {"ro/", 'd', 0555, NULL, 0, 0}, {"ro/f", 'f', 0444, "f", 0, 0},
	    {"x", 'f', 0644, "file", 0, 0}, {"y/", 'd', 0755, NULL, 0, 0},
	    {"y/z", 'f', 0644, "z", 0, 0},
	};
	const struct ent l2[] = {
	    {"ro/g", 'f', 0444, "g", 0, 0},	  {"x/", 'd', 0700, NULL, 0, 0},
	    {"y", 'f', 0600, "now a file", 0, 0}, {"ro/h", 'h', 0, "ro/f", 0, 0},
	    {"run/fifo", 'p', 0620, NULL, 0, 0},
	};
	char tar[PATH_MAX], dest[PATH_MAX], p[PATH_MAX];
	struct image_layer l[2];
	struct ciel_err err;
	struct stat a, b;

	(void)st;
	memset(l, 0, sizeof(l));
	path_in(tar, "t1.tar");
	write_tar(tar, 1, l1, N(l1));
	put_blob(tar, &l[0]);
	path_in(tar, "t2.tar");
	write_tar(tar, 0, l2, N(l2));
	put_blob(tar, &l[1]);
	path_in(dest, "tree");
	assert_int_equal(image_unpack(blobs, l, 2, dest, NULL, &err), 0);
	pj(p, dest, "ro");
	assert_int_equal(stat(p, &a), 0);
	assert_int_equal(a.st_mode & 07777, 0555);
	assert_int_equal(a.st_mtime, MTIME);
	pj(p, dest, "ro/g");
	assert_true(exists(p));
	pj(p, dest, "ro/f");
	assert_int_equal(stat(p, &a), 0);
	pj(p, dest, "ro/h");
	assert_int_equal(stat(p, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	pj(p, dest, "x");
	assert_int_equal(lstat(p, &a), 0);
	assert_true(S_ISDIR(a.st_mode));
	assert_int_equal(a.st_mode & 07777, 0700);
	pj(p, dest, "y");
	assert_int_equal(lstat(p, &a), 0);
	assert_true(S_ISREG(a.st_mode));
	pj(p, dest, "run/fifo");
	assert_int_equal(lstat(p, &a), 0);
	assert_true(S_ISFIFO(a.st_mode));
	assert_int_equal(a.st_mode & 07777, 0620);
	/* bad arguments */
	assert_int_equal(image_unpack(blobs, l, 0, dest, NULL, &err), -1);
	assert_string_equal(err.field, "layers");
	snprintf(l[1].digest, sizeof(l[1].digest), "sha256:XYZ");
	path_in(dest, "tree2");
	assert_int_equal(image_unpack(blobs, l, 2, dest, NULL, &err), -1);
	assert_string_equal(err.field, "layers");
}

/* ---------------------------------------------------------- trivialities */

static void test_digest_and_blob_path(void **st)
{
	const char *good =
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char out[PATH_MAX], small[16];
	struct ciel_err err;

	(void)st;
	assert_true(image_digest_valid(good));
	assert_false(image_digest_valid(NULL));
	assert_false(image_digest_valid(""));
	assert_false(image_digest_valid("sha256:"));
	assert_false(image_digest_valid(
	    "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(image_digest_valid(
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
	assert_false(image_digest_valid(
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"));
	assert_false(image_digest_valid(
	    "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_false(image_digest_valid(
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"));
	assert_false(image_digest_valid(
	    "sha256:../456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_int_equal(image_blob_path("/b", good, out, sizeof(out), &err), 0);
	assert_string_equal(out,
			    "/b/sha256/"
			    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	assert_int_equal(image_blob_path("/b", "sha256:../../etc/passwd", out, sizeof(out), &err),
			 -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_string_equal(err.field, "digest");
	assert_int_equal(image_blob_path("/b", good, small, sizeof(small), &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rootfs_tar, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rootfs_tar_gz, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scan_file_and_mem_agree, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_setuid_needs_allow, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_unpacked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oci_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oci_tar, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oci_tar_docker_save, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oci_nested_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oci_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unpack_symlink_tricks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unpack_tree, setup, teardown),
	    cmocka_unit_test(test_digest_and_blob_path),
	};
	int rc;

	busybox = read_file("/bin/busybox", &busybox_len);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(busybox);
	return rc;
}
