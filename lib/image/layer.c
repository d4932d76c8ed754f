/*
 * layer — the tar side of images: read a layer once (hashing and copying
 * as it goes), check every entry, unpack layers into a root directory.
 *
 * Invariants:
 * - check_entry() is the one judge of an entry, at import and at unpack,
 *   so a layer that imported unpacks, and a refusal reads the same
 *   everywhere: absolute names, "..", hard links leaving the root, relative
 *   symlinks climbing above it, devices, sockets and setuid/setgid files
 *   (unless allowed) are refused, naming the entry.
 * - Unpacking does not use libarchive's disk writer: it resolves relative
 *   names against the process's working directory, and chdir is
 *   process-wide (the agent is threaded). Entries are made with *at()
 *   calls from a directory fd instead, walking the parents one component
 *   at a time with O_NOFOLLOW: a symlink on the way refuses the entry, so
 *   no symlink in a layer is ever followed on the host.
 * - dest is whole or absent: the tree is built in dest.tmp-PID-XXXXXX,
 *   synced and renamed without replacing.
 * - Directory modes and times are applied last, deepest first: a read-only
 *   directory must stay writable while later entries land in it.
 */
#include "image/layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/enc.h"
#include "util/log.h"
#include "util/ts.h"

#define UNPACKED_DEFAULT (16LL << 30)
#define CHUNK (1 << 16)
#define PROGRESS_MS 100

/* ---------------------------------------------------------------- helpers */

const char *image_shown(const char *s, char *buf, size_t size)
{
	size_t i, o = 0;

	for (i = 0; s && s[i] && o + 4 < size; i++)
		buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s && s[i]) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

int image_refuse(struct ciel_err *err, const char *ctx, const char *name, const char *fmt, ...)
{
	char why[300], nm[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return ciel_err_field(err, CIEL_EINVAL, "file", "file: %sentry '%s': %s", ctx,
			      image_shown(name, nm, sizeof(nm)), why);
}

int image_bad(struct ciel_err *err, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return ciel_err_field(err, CIEL_EINVAL, "file", "file: %s", why);
}

int64_t image_max_unpacked(const struct image_opts *o)
{
	return o && o->max_unpacked_bytes > 0 ? o->max_unpacked_bytes : UNPACKED_DEFAULT;
}

int image_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int pwrite_all(int fd, const void *p, size_t n, off_t off)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = pwrite(fd, c, n, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

/* Remove everything inside the directory dfd (which stays open and in place). */
static int empty_dir(int dfd)
{
	int fd, removed, ret = 0, saved;
	struct dirent *de;
	DIR *d;

	fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	/* readdir need not see names removed while it runs: go round again
	 * until a pass finds nothing */
	do {
		removed = 0;
		rewinddir(d);
		errno = 0;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) {
				errno = 0;
				continue;
			}
			if (image_rm_rf_at(dfd, de->d_name) < 0) {
				ret = -1;
				goto out;
			}
			removed++;
			errno = 0;
		}
		if (errno) {
			ret = -1;
			goto out;
		}
	} while (removed);
out:
	saved = errno;
	closedir(d);
	errno = saved;
	return ret;
}

int image_rm_rf_at(int dfd, const char *name)
{
	struct stat st;
	int fd, ret;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* an unprivileged owner cannot empty a read-only directory of its own */
	if ((st.st_mode & S_IRWXU) != S_IRWXU)
		(void)fchmod(fd, S_IRWXU);
	ret = empty_dir(fd);
	close(fd);
	if (ret == 0 && unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		ret = -1;
	return ret;
}

void image_progress_add(struct image_progress *p, int64_t n, int final)
{
	int64_t now;

	if (!p)
		return;
	p->done += n;
	if (!p->o || !p->o->progress || p->quiet)
		return;
	now = ts_mono_ms();
	if (!final && p->called && now - p->last_ms < PROGRESS_MS)
		return;
	p->called = 1;
	p->last_ms = now;
	p->o->progress(p->o->progress_arg, p->done,
		       p->total && p->total < p->done ? p->done : p->total);
}

/* ------------------------------------------------------------------ reader */

/* err_no set means the disk failed (CIEL_EIO), not that the archive is bad. */
struct image_tee {
	int fd; /* the source, or -1 to read mem */
	const unsigned char *mem;
	size_t mem_len, mem_off;
	int out_fd;	/* also copy here, or -1 */
	EVP_MD_CTX *md; /* also hash here, or NULL */
	struct image_progress *prog;
	int64_t bytes;
	int err_no;
	unsigned char head[8]; /* the first bytes, to name an unsupported compression */
	size_t head_len;
	unsigned char buf[CHUNK];
};

/* Next chunk into *p: its length, 0 at the end, -1 with err_no set. */
static ssize_t tee_fill(struct image_tee *t, const void **p)
{
	ssize_t n;

	if (t->fd < 0) {
		n = (ssize_t)(t->mem_len - t->mem_off < CHUNK ? t->mem_len - t->mem_off : CHUNK);
		if (n == 0)
			return 0;
		*p = t->mem + t->mem_off;
		t->mem_off += (size_t)n;
	} else {
		do
			n = read(t->fd, t->buf, sizeof(t->buf));
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			t->err_no = errno;
			return -1;
		}
		*p = t->buf;
	}
	if (n == 0)
		return 0;
	if (t->head_len < sizeof(t->head)) {
		size_t k = sizeof(t->head) - t->head_len;

		if (k > (size_t)n)
			k = (size_t)n;
		memcpy(t->head + t->head_len, *p, k);
		t->head_len += k;
	}
	if (t->md && EVP_DigestUpdate(t->md, *p, (size_t)n) != 1) {
		t->err_no = ENOMEM;
		return -1;
	}
	if (t->out_fd >= 0 && image_write_all(t->out_fd, *p, (size_t)n) < 0) {
		t->err_no = errno;
		return -1;
	}
	t->bytes += n;
	image_progress_add(t->prog, n, 0);
	return n;
}

static la_ssize_t tee_read(struct archive *a, void *arg, const void **p)
{
	struct image_tee *t = arg;
	ssize_t n = tee_fill(t, p);

	if (n < 0)
		archive_set_error(a, t->err_no, "%s", strerror(t->err_no));
	return n;
}

static const char *compression_name(const unsigned char *h, size_t n)
{
	if (n >= 4 && h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd)
		return "zstd";
	if (n >= 6 && !memcmp(h,
			      "\xfd"
			      "7zXZ\0",
			      6))
		return "xz";
	if (n >= 3 && !memcmp(h, "BZh", 3))
		return "bzip2";
	if (n >= 4 && h[0] == 0x04 && h[1] == 0x22 && h[2] == 0x4d && h[3] == 0x18)
		return "lz4";
	return NULL;
}

/* ------------------------------------------------------------ entry checks */

/*
 * Normalise an archive name into out (IMAGE_NAME_MAX + 1 bytes): "a/b/c",
 * "" for the root, empty and "." components dropped. -1 with *why for what
 * can never be inside the root.
 */
static int norm_path(const char *in, char *out, const char **why)
{
	size_t o = 0, len;
	const char *p = in;

	if (strlen(in) > IMAGE_NAME_MAX) {
		*why = "name longer than 4096 bytes";
		return -1;
	}
	if (in[0] == '/') {
		*why = "absolute path";
		return -1;
	}
	while (*p) {
		len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			*why = "path climbs out of the root (..)";
			return -1;
		}
		if (len > 0 && !(len == 1 && p[0] == '.')) {
			if (o)
				out[o++] = '/';
			memcpy(out + o, p, len);
			o += len;
		}
		p += len;
		if (*p == '/')
			p++;
	}
	out[o] = '\0';
	return 0;
}

/* Does a relative symlink target, read from the directory of the link at
 * path, stay under the root at every step? */
static int target_stays_inside(const char *path, const char *target)
{
	long depth = 0;
	const char *p;
	size_t len;

	for (p = path; *p; p++)
		if (*p == '/')
			depth++;
	for (p = target; *p;) {
		len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return 0;
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			depth++;
		}
		p += len;
		if (*p == '/')
			p++;
	}
	return 1;
}

static int check_symlink(struct archive_entry *e, const char *ctx, const char *name,
			 struct image_ent *en, struct ciel_err *err)
{
	const char *t = archive_entry_symlink(e);
	char nm[160];

	if (!t)
		t = archive_entry_symlink_utf8(e);
	if (!t || !*t)
		return image_refuse(err, ctx, name, "symlink without a target");
	if (strlen(t) > IMAGE_NAME_MAX)
		return image_refuse(err, ctx, name, "symlink target longer than 4096 bytes");
	/* an absolute target resolves inside the container's root at run time;
	 * we never follow it on the host */
	if (t[0] != '/' && !target_stays_inside(en->path, t))
		return image_refuse(err, ctx, name, "symlink target '%s' climbs out of the root",
				    image_shown(t, nm, sizeof(nm)));
	en->kind = IMAGE_ENT_SYMLINK;
	en->target = t;
	return 0;
}

static int check_type(struct archive_entry *e, const char *ctx, const char *name,
		      struct image_ent *en, struct ciel_err *err)
{
	mode_t type = archive_entry_filetype(e);
	const char *hl, *why;
	char nm[160];

	hl = archive_entry_hardlink(e);
	if (!hl)
		hl = archive_entry_hardlink_utf8(e);
	if (hl) {
		en->kind = IMAGE_ENT_HARDLINK;
		if (hl[0] == '/')
			return image_refuse(err, ctx, name, "hard link target '%s' is absolute",
					    image_shown(hl, nm, sizeof(nm)));
		if (norm_path(hl, en->link, &why) < 0)
			return image_refuse(err, ctx, name, "hard link target '%s': %s",
					    image_shown(hl, nm, sizeof(nm)), why);
		if (!en->link[0])
			return image_refuse(err, ctx, name, "hard link to the root");
		return 0;
	}
	switch (type) {
	case AE_IFREG:
		en->kind = IMAGE_ENT_FILE;
		en->size = archive_entry_size(e);
		if (en->size < 0)
			return image_refuse(err, ctx, name, "negative size");
		return 0;
	case AE_IFDIR:
		en->kind = IMAGE_ENT_DIR;
		return 0;
	case AE_IFLNK:
		return check_symlink(e, ctx, name, en, err);
	case AE_IFIFO:
		en->kind = IMAGE_ENT_FIFO;
		return 0;
	case AE_IFCHR:
		return image_refuse(err, ctx, name,
				    "character device node (not allowed in images)");
	case AE_IFBLK:
		return image_refuse(err, ctx, name, "block device node (not allowed in images)");
	case AE_IFSOCK:
		return image_refuse(err, ctx, name, "socket (not allowed in images)");
	default:
		return image_refuse(err, ctx, name, "unsupported entry type (0%o)", (unsigned)type);
	}
}

/* The one judge of an entry; fills en with its normalised form. */
static int check_entry(struct archive_entry *e, const struct image_opts *o, const char *ctx,
		       struct image_ent *en, struct ciel_err *err)
{
	const char *name, *why;
	char *base;

	name = archive_entry_pathname(e);
	if (!name)
		name = archive_entry_pathname_utf8(e);
	if (!name || !*name)
		return image_refuse(err, ctx, "", "entry without a readable name");
	snprintf(en->shown, sizeof(en->shown), "%s", name);
	if (norm_path(name, en->path, &why) < 0)
		return image_refuse(err, ctx, name, "%s", why);
	en->mode = archive_entry_perm(e) & 07777;
	en->size = 0;
	en->target = NULL;
	en->link[0] = '\0';
	if (check_type(e, ctx, name, en, err) < 0)
		return -1;
	if (!en->path[0]) {
		if (en->kind != IMAGE_ENT_DIR)
			return image_refuse(err, ctx, name, "the root is not a directory");
		en->kind = IMAGE_ENT_ROOT;
		return 0;
	}
	/* a setgid directory only hands its group to new files: no privilege */
	if (!o->allow_setuid &&
	    ((en->mode & S_ISUID) || ((en->mode & S_ISGID) && en->kind != IMAGE_ENT_DIR)))
		return image_refuse(err, ctx, name, "setuid/setgid bit (mode %04o) not allowed",
				    (unsigned)en->mode);
	base = strrchr(en->path, '/');
	base = base ? base + 1 : en->path;
	if (strncmp(base, ".wh.", 4) != 0)
		return 0;
	if (!strcmp(base, ".wh..wh..opq")) {
		en->kind = IMAGE_ENT_OPAQUE;
		if (base == en->path)
			base[0] = '\0';
		else
			base[-1] = '\0';
	} else if (!strncmp(base, ".wh..wh.", 8)) {
		en->kind = IMAGE_ENT_IGNORE;
	} else {
		if (!base[4] || !strcmp(base + 4, ".") || !strcmp(base + 4, ".."))
			return image_refuse(err, ctx, name, "whiteout that names nothing");
		memmove(base, base + 4, strlen(base + 4) + 1);
		en->kind = IMAGE_ENT_WHITEOUT;
	}
	return 0;
}

/* --------------------------------------------------------------- scanning */

int image_scan_fail(struct image_scan *s, const char *name, struct ciel_err *err)
{
	const char *msg = s->a ? archive_error_string(s->a) : NULL, *comp;
	struct image_tee *t = s->t;

	if (t && t->err_no)
		return ciel_err_sys(err, CIEL_EIO, t->err_no, "read %slayer", s->ctx);
	if (!msg)
		msg = "unknown error";
	if (name)
		return image_refuse(err, s->ctx, name, "truncated or corrupt archive: %s", msg);
	if (t && t->head_len == 0)
		return image_bad(err, "%sempty file, not a tar archive", s->ctx);
	comp = t ? compression_name(t->head, t->head_len) : NULL;
	if (comp)
		return image_bad(err, "%scompressed with %s: only tar and tar+gzip are supported",
				 s->ctx, comp);
	return image_bad(err, "%snot a tar archive, or a corrupt one: %s", s->ctx, msg);
}

int image_scan_open(struct image_scan *s, const struct image_opts *o, const char *ctx,
		    int64_t budget, int fd, const void *mem, size_t len, int copy_fd, int hash,
		    struct image_progress *prog, struct ciel_err *err)
{
	static const struct image_opts none;
	struct image_tee *t;

	memset(s, 0, offsetof(struct image_scan, ent));
	s->o = o ? o : &none;
	s->ctx = ctx;
	s->budget = budget;
	t = calloc(1, sizeof(*t));
	if (!t)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	s->t = t;
	t->fd = fd;
	t->mem = mem;
	t->mem_len = len;
	t->out_fd = copy_fd;
	t->prog = prog;
	if (hash) {
		t->md = EVP_MD_CTX_new();
		if (!t->md || EVP_DigestInit_ex(t->md, EVP_sha256(), NULL) != 1)
			return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	}
	s->a = archive_read_new();
	if (!s->a)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	archive_read_support_filter_gzip(s->a);
	archive_read_support_format_tar(s->a);
	if (archive_read_open(s->a, t, NULL, tee_read, NULL) != ARCHIVE_OK)
		return image_scan_fail(s, NULL, err);
	return 0;
}

static int push_whiteout(struct image_scan *s, struct ciel_err *err)
{
	if (s->n_wh == s->cap_wh) {
		size_t cap = s->cap_wh ? s->cap_wh * 2 : 16;
		struct image_whiteout *w = realloc(s->wh, cap * sizeof(*w));

		if (!w)
			return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		s->wh = w;
		s->cap_wh = cap;
	}
	s->wh[s->n_wh].path = strdup(s->ent.path);
	if (!s->wh[s->n_wh].path)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	s->wh[s->n_wh++].opaque = s->ent.kind == IMAGE_ENT_OPAQUE;
	return 0;
}

int image_scan_next(struct image_scan *s, struct archive_entry **e, struct ciel_err *err)
{
	int r = archive_read_next_header(s->a, e);

	if (r == ARCHIVE_EOF)
		return 0;
	/* ARCHIVE_RETRY too: a damaged header is not something to skip past */
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
		return image_scan_fail(s, s->n_entries ? s->ent.shown : NULL, err);
	if (r == ARCHIVE_WARN)
		log_debug("image layer warning: %s", archive_error_string(s->a));
	if (check_entry(*e, s->o, s->ctx, &s->ent, err) < 0)
		return -1;
	s->n_entries++;
	if (s->ent.kind == IMAGE_ENT_FILE) {
		if (s->ent.size > s->budget - s->unpacked)
			return image_refuse(err, s->ctx, s->ent.shown,
					    "the image unpacks to more than %lld bytes",
					    (long long)s->budget);
		s->unpacked += s->ent.size;
	}
	if (s->want_wh && (s->ent.kind == IMAGE_ENT_WHITEOUT || s->ent.kind == IMAGE_ENT_OPAQUE) &&
	    push_whiteout(s, err) < 0)
		return -1;
	return 1;
}

int image_scan_skip(struct image_scan *s, struct ciel_err *err)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;

	while ((r = archive_read_data_block(s->a, &buf, &len, &off)) == ARCHIVE_OK)
		;
	if (r != ARCHIVE_EOF)
		return image_scan_fail(s, s->ent.shown, err);
	return 0;
}

int image_scan_finish(struct image_scan *s, char hex[65], struct ciel_err *err)
{
	unsigned char d[32];
	unsigned int len = 0;
	const void *p;
	ssize_t n;

	if (!s->t || !s->t->md)
		return ciel_err_set(err, CIEL_EINTERNAL, "image scan: no hash to finish");
	if (s->t->err_no)
		return ciel_err_sys(err, CIEL_EIO, s->t->err_no, "read %slayer", s->ctx);
	while ((n = tee_fill(s->t, &p)) > 0)
		;
	if (n < 0)
		return ciel_err_sys(err, CIEL_EIO, s->t->err_no, "read %slayer", s->ctx);
	if (EVP_DigestFinal_ex(s->t->md, d, &len) != 1 || len != 32)
		return ciel_err_set(err, CIEL_EINTERNAL, "image scan: sha256 failed");
	enc_hex(d, 32, hex);
	s->bytes = s->t->bytes;
	return 0;
}

void image_scan_close(struct image_scan *s)
{
	if (s->a)
		archive_read_free(s->a);
	s->a = NULL;
	if (s->t) {
		EVP_MD_CTX_free(s->t->md);
		free(s->t);
		s->t = NULL;
	}
	for (size_t i = 0; i < s->n_wh; i++)
		free(s->wh[i].path);
	free(s->wh);
	s->wh = NULL;
	s->n_wh = s->cap_wh = 0;
}

static int scan_source(int fd, const void *mem, size_t len, const struct image_opts *o,
		       int64_t *unpacked, struct ciel_err *err)
{
	struct archive_entry *e;
	struct image_scan *s;
	int r = -1;

	s = malloc(sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (image_scan_open(s, o, "", image_max_unpacked(o), fd, mem, len, -1, 0, NULL, err) < 0)
		goto out;
	while ((r = image_scan_next(s, &e, err)) == 1)
		if (image_scan_skip(s, err) < 0) {
			r = -1;
			break;
		}
	if (r == 0 && unpacked)
		*unpacked = s->unpacked;
out:
	image_scan_close(s);
	free(s);
	return r;
}

int image_scan_layer(const char *path, const struct image_opts *o, int64_t *unpacked,
		     struct ciel_err *err)
{
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ciel_err_sys(err, errno == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, errno,
				    "open layer %s", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return image_bad(err, "layer %s is not a regular file", path);
	}
	ret = scan_source(fd, NULL, 0, o, unpacked, err);
	close(fd);
	return ret;
}

int image_scan_layer_mem(const void *buf, size_t len, const struct image_opts *o, int64_t *unpacked,
			 struct ciel_err *err)
{
	return scan_source(-1, buf, len, o, unpacked, err);
}

/* --------------------------------------------------------------- unpacking */

struct dirfix {
	char *path;
	mode_t mode;
	struct timespec ts[2];
	size_t seq;
	int depth;
	int dead; /* removed since, by a whiteout or a later entry */
};

struct unpack {
	int root_fd;
	int as_root;
	const struct image_opts *o;
	struct dirfix *fix;
	size_t n_fix, cap_fix;
};

static int fix_add(struct unpack *u, const char *path, mode_t mode, const struct timespec ts[2])
{
	struct dirfix *f;

	if (u->n_fix == u->cap_fix) {
		size_t cap = u->cap_fix ? u->cap_fix * 2 : 64;

		f = realloc(u->fix, cap * sizeof(*f));
		if (!f)
			return -1;
		u->fix = f;
		u->cap_fix = cap;
	}
	f = &u->fix[u->n_fix];
	f->path = strdup(path);
	if (!f->path)
		return -1;
	f->mode = mode;
	f->ts[0] = ts[0];
	f->ts[1] = ts[1];
	f->seq = u->n_fix;
	f->depth = 1;
	for (const char *p = path; *p; p++)
		f->depth += *p == '/';
	f->dead = 0;
	u->n_fix++;
	return 0;
}

/* Forget the fixups of path (unless children_only) and of everything below it. */
static void fix_forget(struct unpack *u, const char *path, int children_only)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < u->n_fix; i++) {
		const char *p = u->fix[i].path;

		if (!children_only && !strcmp(p, path))
			u->fix[i].dead = 1;
		else if (n == 0 || (!strncmp(p, path, n) && p[n] == '/'))
			u->fix[i].dead = 1;
	}
}

/*
 * Open the directory that holds path (normalised, relative) under root,
 * one component at a time with O_NOFOLLOW, so no symlink is followed.
 * Missing directories are made (0755) when create is set. *base points at
 * the last component of path; on failure *bad_len is the length of the
 * prefix that could not be opened.
 */
static int open_parent(int root_fd, const char *path, int create, const char **base,
		       size_t *bad_len)
{
	char comp[NAME_MAX + 1];
	const char *p = path, *q;
	int fd, nfd, e;

	fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	while ((q = strchr(p, '/'))) {
		size_t len = (size_t)(q - p);

		*bad_len = (size_t)(q - path);
		if (len > NAME_MAX) {
			close(fd);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 && errno == ENOENT && create &&
		    (mkdirat(fd, comp, 0755) == 0 || errno == EEXIST))
			nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		e = errno;
		close(fd);
		if (nfd < 0) {
			errno = e;
			return -1;
		}
		fd = nfd;
		p = q + 1;
	}
	*base = p;
	return fd;
}

static int walk_fail(struct image_scan *s, const char *path, size_t bad_len, int e,
		     struct ciel_err *err)
{
	char nm[160], part[IMAGE_NAME_MAX + 1];

	if (e == ELOOP || e == ENOTDIR) {
		snprintf(part, sizeof(part), "%.*s", (int)bad_len, path);
		return image_refuse(err, s->ctx, s->ent.shown,
				    "'%s' is a symlink or not a directory: refusing to write "
				    "through it",
				    image_shown(part, nm, sizeof(nm)));
	}
	if (e == ENAMETOOLONG)
		return image_refuse(err, s->ctx, s->ent.shown, "a name component is too long");
	return ciel_err_sys(err, CIEL_EIO, e, "unpack %s'%s'", s->ctx,
			    image_shown(s->ent.shown, nm, sizeof(nm)));
}

/* Make room for a new entry at base: remove what is there, directories and all. */
static int clear_at(struct unpack *u, int pfd, const char *base, const char *path)
{
	struct stat st;

	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode)) {
		fix_forget(u, path, 0);
		return image_rm_rf_at(pfd, base);
	}
	return unlinkat(pfd, base, 0);
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
	ts[1].tv_sec = 0;
	ts[1].tv_nsec = UTIME_OMIT;
	if (archive_entry_mtime_is_set(e)) {
		ts[1].tv_sec = archive_entry_mtime(e);
		ts[1].tv_nsec = archive_entry_mtime_nsec(e);
		if (ts[1].tv_nsec < 0 || ts[1].tv_nsec > 999999999)
			ts[1].tv_nsec = 0;
	}
	ts[0] = ts[1];
	if (archive_entry_atime_is_set(e)) {
		ts[0].tv_sec = archive_entry_atime(e);
		ts[0].tv_nsec = archive_entry_atime_nsec(e);
		if (ts[0].tv_nsec < 0 || ts[0].tv_nsec > 999999999)
			ts[0].tv_nsec = 0;
	}
}

/* As root, the archive's owner (images hold root-owned files); otherwise the
 * files stay the unpacking user's. */
static int set_owner(struct unpack *u, int fd, int dfd, const char *base, struct archive_entry *e)
{
	la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
	int r;

	if (!u->as_root || uid < 0 || gid < 0 || uid >= UINT32_MAX || gid >= UINT32_MAX)
		return 0;
	if (fd >= 0)
		r = fchown(fd, (uid_t)uid, (gid_t)gid);
	else
		r = fchownat(dfd, base, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW);
	/* a user namespace that does not map the id: keep root's */
	if (r < 0 && errno == EINVAL)
		return 0;
	return r;
}

static int write_data(struct image_scan *s, int fd, struct ciel_err *err)
{
	const void *buf;
	size_t len;
	la_int64_t off, end = 0, size = s->ent.size;
	int r;

	while ((r = archive_read_data_block(s->a, &buf, &len, &off)) == ARCHIVE_OK) {
		if (off < 0 || (la_int64_t)len > size || off > size - (la_int64_t)len)
			return image_refuse(err, s->ctx, s->ent.shown,
					    "data beyond the entry's size");
		if (pwrite_all(fd, buf, len, (off_t)off) < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "unpack %swrite", s->ctx);
		if (off + (la_int64_t)len > end)
			end = off + (la_int64_t)len;
	}
	if (r != ARCHIVE_EOF)
		return image_scan_fail(s, s->ent.shown, err);
	/* a sparse file may end in a hole */
	if (end < size && ftruncate(fd, (off_t)size) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "unpack %struncate", s->ctx);
	return 0;
}

static int put_hardlink(struct image_scan *s, struct unpack *u, int pfd, const char *base,
			struct ciel_err *err)
{
	struct image_ent *en = &s->ent;
	const char *tbase;
	struct stat st;
	size_t bad_len = 0;
	char nm[160];
	int tfd, ret = -1;

	tfd = open_parent(u->root_fd, en->link, 0, &tbase, &bad_len);
	if (tfd < 0 && errno != ENOENT)
		return walk_fail(s, en->link, bad_len, errno, err);
	if (tfd < 0 || fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		image_refuse(err, s->ctx, en->shown, "hard link target '%s' does not exist",
			     image_shown(en->link, nm, sizeof(nm)));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		image_refuse(err, s->ctx, en->shown, "hard link to a directory");
		goto out;
	}
	if (!strcmp(en->path, en->link)) {
		ret = 0;
		goto out;
	}
	/* flags 0: a link to a symlink links the symlink itself, never its target */
	if (clear_at(u, pfd, base, en->path) < 0 || linkat(tfd, tbase, pfd, base, 0) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "unpack %slink '%s'", s->ctx,
			     image_shown(en->shown, nm, sizeof(nm)));
		goto out;
	}
	ret = 0;
out:
	if (tfd >= 0)
		close(tfd);
	return ret;
}

static int put_dir(struct image_scan *s, struct unpack *u, struct archive_entry *e, int pfd,
		   const char *base, mode_t mode, const struct timespec ts[2])
{
	struct stat st;
	int fd, ret = -1;

	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
	    clear_at(u, pfd, base, s->ent.path) < 0)
		return -1;
	/* owner-writable until the fixups at the end */
	if (mkdirat(pfd, base, 0700) < 0 && errno != EEXIST)
		return -1;
	fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (set_owner(u, fd, -1, NULL, e) == 0 && fix_add(u, s->ent.path, mode, ts) == 0)
		ret = 0;
	close(fd);
	return ret;
}

static int put_entry(struct image_scan *s, struct unpack *u, struct archive_entry *e,
		     struct ciel_err *err)
{
	struct image_ent *en = &s->ent;
	struct timespec ts[2];
	const char *base = NULL;
	size_t bad_len = 0;
	mode_t mode = en->mode;
	int pfd, fd = -1, ret = -1;
	char nm[160];

	if (en->kind == IMAGE_ENT_ROOT || en->kind == IMAGE_ENT_WHITEOUT ||
	    en->kind == IMAGE_ENT_OPAQUE || en->kind == IMAGE_ENT_IGNORE)
		return image_scan_skip(s, err);
	if (!u->o->allow_setuid) {
		mode &= ~(mode_t)S_ISUID;
		if (en->kind != IMAGE_ENT_DIR)
			mode &= ~(mode_t)S_ISGID;
	}
	entry_times(e, ts);
	pfd = open_parent(u->root_fd, en->path, 1, &base, &bad_len);
	if (pfd < 0)
		return walk_fail(s, en->path, bad_len, errno, err);

	switch (en->kind) {
	case IMAGE_ENT_DIR:
		if (put_dir(s, u, e, pfd, base, mode, ts) < 0)
			goto io;
		break;
	case IMAGE_ENT_FILE:
		if (clear_at(u, pfd, base, en->path) < 0)
			goto io;
		fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			goto io;
		if (write_data(s, fd, err) < 0)
			goto out;
		/* chown before chmod: chown clears setuid bits */
		if (set_owner(u, fd, -1, NULL, e) < 0 || fchmod(fd, mode) < 0)
			goto io;
		(void)futimens(fd, ts);
		break;
	case IMAGE_ENT_SYMLINK:
		if (clear_at(u, pfd, base, en->path) < 0 || symlinkat(en->target, pfd, base) < 0 ||
		    set_owner(u, -1, pfd, base, e) < 0)
			goto io;
		(void)utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
		break;
	case IMAGE_ENT_FIFO:
		/* fchmodat follows symlinks, but we just made this fifo ourselves */
		if (clear_at(u, pfd, base, en->path) < 0 || mkfifoat(pfd, base, 0600) < 0 ||
		    set_owner(u, -1, pfd, base, e) < 0 || fchmodat(pfd, base, mode, 0) < 0)
			goto io;
		(void)utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
		break;
	case IMAGE_ENT_HARDLINK:
		if (put_hardlink(s, u, pfd, base, err) < 0)
			goto out;
		break;
	default:
		break;
	}
	if (en->kind != IMAGE_ENT_FILE && image_scan_skip(s, err) < 0)
		goto out;
	ret = 0;
	goto out;
io:
	ciel_err_sys(err, CIEL_EIO, errno, "unpack %s'%s'", s->ctx,
		     image_shown(en->shown, nm, sizeof(nm)));
out:
	if (fd >= 0)
		close(fd);
	close(pfd);
	return ret;
}

static int gone(int e)
{
	return e == ENOENT || e == ELOOP || e == ENOTDIR;
}

/* The directory fd a whiteout applies to, or -1 with errno (gone: nothing to do). */
static int open_target_dir(struct unpack *u, const char *path)
{
	const char *base;
	size_t bad_len;
	int pfd, dfd, e;

	if (!*path)
		return fcntl(u->root_fd, F_DUPFD_CLOEXEC, 0);
	pfd = open_parent(u->root_fd, path, 0, &base, &bad_len);
	if (pfd < 0)
		return -1;
	dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	e = errno;
	close(pfd);
	errno = e;
	return dfd;
}

/*
 * Whiteouts remove what lower layers put; they apply before the layer's
 * own entries, which they must not touch. A whiteout under a symlink
 * removes nothing: that path is not inside the tree we are building.
 */
static int apply_whiteouts(struct unpack *u, struct image_scan *s, struct ciel_err *err)
{
	const char *base;
	size_t bad_len;
	char nm[160];
	int fd, r;

	for (size_t i = 0; i < s->n_wh; i++) {
		const char *path = s->wh[i].path;

		if (s->wh[i].opaque) {
			fd = open_target_dir(u, path);
			if (fd < 0 && gone(errno))
				continue;
			r = fd < 0 ? -1 : empty_dir(fd);
		} else {
			fd = open_parent(u->root_fd, path, 0, &base, &bad_len);
			if (fd < 0 && gone(errno))
				continue;
			r = fd < 0 ? -1 : image_rm_rf_at(fd, base);
		}
		if (fd >= 0)
			close(fd);
		if (r < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "unpack %swhiteout '%s'", s->ctx,
					    image_shown(path, nm, sizeof(nm)));
		fix_forget(u, path, s->wh[i].opaque);
	}
	return 0;
}

static int fix_cmp(const void *pa, const void *pb)
{
	const struct dirfix *a = pa, *b = pb;

	if (a->depth != b->depth)
		return a->depth > b->depth ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Directory modes and times, deepest first so we can still walk down. */
static int apply_fixups(struct unpack *u, struct ciel_err *err)
{
	char nm[160];
	int fd;

	if (u->n_fix)
		qsort(u->fix, u->n_fix, sizeof(*u->fix), fix_cmp);
	for (size_t i = 0; i < u->n_fix; i++) {
		struct dirfix *f = &u->fix[i];

		if (f->dead)
			continue;
		fd = open_target_dir(u, f->path);
		if (fd < 0 && gone(errno))
			continue;
		if (fd < 0 || fchmod(fd, f->mode) < 0) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			return ciel_err_sys(err, CIEL_EIO, e, "unpack: directory '%s'",
					    image_shown(f->path, nm, sizeof(nm)));
		}
		(void)futimens(fd, f->ts);
		close(fd);
	}
	return 0;
}

/*
 * One pass over a blob, hashed and checked against its digest: the node
 * checks what it holds, a blob rotted or swapped on disk included. The
 * first pass (put = 0) checks every entry and then applies the layer's
 * whiteouts; the second puts the entries in place.
 */
static int layer_pass(struct image_scan *s, struct unpack *u, int put, const char *ctx,
		      int64_t budget, const char *path, const char *digest, struct ciel_err *err)
{
	struct archive_entry *e;
	struct ciel_err ferr;
	char hex[65];
	int fd, r = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ciel_err_sys(err, errno == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, errno,
				    "%sblob %s", ctx, digest);
	r = image_scan_open(s, u->o, ctx, budget, fd, NULL, 0, -1, 1, NULL, err);
	if (r == 0) {
		s->want_wh = !put;
		while ((r = image_scan_next(s, &e, err)) == 1)
			if ((put ? put_entry(s, u, e, err) : image_scan_skip(s, err)) < 0) {
				r = -1;
				break;
			}
	}
	if (!s->t)
		goto out;
	/* a blob that is not what its digest says explains any other failure */
	if (image_scan_finish(s, hex, &ferr) < 0) {
		if (err)
			*err = ferr;
		r = -1;
		goto out;
	}
	if (strcmp(hex, digest + 7) != 0) {
		ciel_err_set(err, CIEL_EIO, "%sblob %s on disk does not match its digest", ctx,
			     digest);
		r = -1;
		goto out;
	}
	if (r < 0)
		goto out;
	r = -1;
	if (!put && apply_whiteouts(u, s, err) < 0)
		goto out;
	r = 0;
out:
	image_scan_close(s);
	close(fd);
	return r;
}

static int fsync_parent(const char *path)
{
	char buf[PATH_MAX];
	char *slash;
	int fd, ret;

	snprintf(buf, sizeof(buf), "%s", path);
	slash = strrchr(buf, '/');
	if (!slash)
		snprintf(buf, sizeof(buf), ".");
	else if (slash == buf)
		buf[1] = '\0';
	else
		*slash = '\0';
	fd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

/* Move the finished tree to dest unless someone else's got there first. */
static int publish(const char *tmp, const char *dest, int *lost, struct ciel_err *err)
{
	int e = 0;

	*lost = 0;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_NOREPLACE) < 0) {
		e = errno;
		/* a file system without RENAME_NOREPLACE: a non-empty dest still refuses */
		if (e == EINVAL || e == ENOSYS)
			e = rename(tmp, dest) < 0 ? errno : 0;
	}
	if (e == EEXIST || e == ENOTEMPTY) {
		log_debug("image unpack dest=%s exists already: another unpack won", dest);
		*lost = 1;
		return 0;
	}
	if (e)
		return ciel_err_sys(err, CIEL_EIO, e, "unpack: rename %s to %s", tmp, dest);
	if (fsync_parent(dest) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "unpack: sync the parent of %s", dest);
	return 0;
}

int image_unpack(const char *blobs_dir, const struct image_layer *layers, size_t n,
		 const char *dest, const struct image_opts *o, struct ciel_err *err)
{
	static const struct image_opts none;
	char tmp[PATH_MAX], d[PATH_MAX], blob[PATH_MAX], ctx[96];
	struct unpack u = {.root_fd = -1};
	struct image_scan *s = NULL;
	int64_t budget;
	struct stat st;
	size_t dl;
	int ret = -1, lost;

	tmp[0] = '\0';
	u.o = o ? o : &none;
	if (n == 0 || n > IMAGE_MAX_LAYERS)
		return ciel_err_field(err, CIEL_EINVAL, "layers", "layers: %zu, need 1 to %d", n,
				      IMAGE_MAX_LAYERS);
	for (size_t i = 0; i < n; i++)
		if (!image_digest_valid(layers[i].digest))
			return ciel_err_field(err, CIEL_EINVAL, "layers",
					      "layers: layer %zu has a malformed digest", i + 1);
	dl = strlen(dest);
	while (dl > 1 && dest[dl - 1] == '/')
		dl--;
	if (dl == 0 || dl + 32 >= sizeof(d))
		return ciel_err_set(err, CIEL_EINVAL, "unpack: bad destination '%s'", dest);
	memcpy(d, dest, dl);
	d[dl] = '\0';
	/* the caller treats dest existing as done: another unpack won */
	if (lstat(d, &st) == 0)
		return 0;
	if (errno != ENOENT)
		return ciel_err_sys(err, CIEL_EIO, errno, "unpack: stat %s", d);

	s = malloc(sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	u.as_root = geteuid() == 0;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d-XXXXXX", d, (int)getpid()) >= (int)sizeof(tmp) ||
	    !mkdtemp(tmp)) {
		ciel_err_sys(err, CIEL_EIO, errno, "unpack: mkdtemp %s", tmp);
		tmp[0] = '\0';
		goto out;
	}
	u.root_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u.root_fd < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "unpack: open %s", tmp);
		goto out;
	}
	budget = image_max_unpacked(u.o);
	for (size_t i = 0; i < n; i++) {
		snprintf(ctx, sizeof(ctx), "layer %zu (%.19s): ", i + 1, layers[i].digest);
		if (image_blob_path(blobs_dir, layers[i].digest, blob, sizeof(blob), err) < 0 ||
		    layer_pass(s, &u, 0, ctx, budget, blob, layers[i].digest, err) < 0 ||
		    layer_pass(s, &u, 1, ctx, budget, blob, layers[i].digest, err) < 0)
			goto out;
		budget -= s->unpacked;
	}
	if (apply_fixups(&u, err) < 0)
		goto out;
	/* the tree must be on disk before its name says it is whole */
	if (fchmod(u.root_fd, 0755) < 0 || syncfs(u.root_fd) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "unpack: sync %s", tmp);
		goto out;
	}
	if (publish(tmp, d, &lost, err) < 0)
		goto out;
	if (!lost)
		tmp[0] = '\0';
	log_debug("image unpacked dest=%s layers=%zu", d, n);
	ret = 0;
out:
	if (u.root_fd >= 0)
		close(u.root_fd);
	if (tmp[0] && image_rm_rf_at(AT_FDCWD, tmp) < 0)
		log_warn("image unpack could not remove tmp=%s errno=%d", tmp, errno);
	for (size_t i = 0; i < u.n_fix; i++)
		free(u.fix[i].path);
	free(u.fix);
	free(s);
	return ret;
}
