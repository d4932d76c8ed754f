/*
 * layer — internal to lib/image (image.c and layer.c): the one reader every
 * layer tar goes through and the checks made on each of its entries. Other
 * modules use image.h.
 *
 * A struct image_scan reads a tar (plain or gzip) from a file or memory;
 * every byte libarchive asks for is also hashed (SHA-256) and copied when
 * asked, so what is scanned, hashed and kept are the same bytes, read once.
 * image_scan_next() hands out only entries that passed check_entry (see
 * layer.c), with their name normalised.
 */
#ifndef CIEL_IMAGE_LAYER_H
#define CIEL_IMAGE_LAYER_H

#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <sys/types.h>

#include "image/image.h"

#define IMAGE_NAME_MAX 4096 /* entry names and link targets */

struct image_progress {
	const struct image_opts *o;
	int64_t done, total; /* total may grow as we learn more; 0 = unknown */
	int64_t last_ms;
	int called;
	int quiet; /* count, but do not tell yet */
};
/* Count n more bytes and tell o->progress, at most every 100 ms unless final. */
void image_progress_add(struct image_progress *p, int64_t n, int final);

enum image_ent_kind {
	IMAGE_ENT_ROOT,
	IMAGE_ENT_FILE,
	IMAGE_ENT_DIR,
	IMAGE_ENT_SYMLINK,
	IMAGE_ENT_HARDLINK,
	IMAGE_ENT_FIFO,
	IMAGE_ENT_WHITEOUT, /* path: what it removes */
	IMAGE_ENT_OPAQUE,   /* path: the directory it empties */
	IMAGE_ENT_IGNORE,   /* other .wh..wh.* bookkeeping */
};

struct image_ent {
	enum image_ent_kind kind;
	mode_t mode; /* permission bits (07777) */
	int64_t size;
	const char *target;		/* symlink target; libarchive owns it */
	char path[IMAGE_NAME_MAX + 1];	/* normalised: "a/b", "" for the root */
	char link[IMAGE_NAME_MAX + 1];	/* normalised hard link target */
	char shown[IMAGE_NAME_MAX + 1]; /* the name as the archive has it */
};

struct image_whiteout {
	char *path;
	int opaque;
};

struct image_tee;

struct image_scan {
	const struct image_opts *o;
	const char *ctx;  /* put before "entry" in messages: "" or "layer 2: " */
	int64_t budget;	  /* unpacked bytes allowed */
	int64_t unpacked; /* bytes of file content so far */
	struct image_tee *t;
	struct archive *a;
	int want_wh; /* collect whiteouts (for unpack) */
	struct image_whiteout *wh;
	size_t n_wh, cap_wh;
	int n_entries;
	int64_t bytes;	      /* read from the source, set by image_scan_finish() */
	struct image_ent ent; /* the entry just handed out */
};

/*
 * Start reading a tar from fd (or from mem when fd < 0). copy_fd >= 0 gets
 * a copy of every byte; hash keeps a SHA-256 of them. On -1 (not a tar,
 * unsupported compression) the reader may still be drained by
 * image_scan_finish(). Always pair with image_scan_close().
 */
int image_scan_open(struct image_scan *s, const struct image_opts *o, const char *ctx,
		    int64_t budget, int fd, const void *mem, size_t len, int copy_fd, int hash,
		    struct image_progress *prog, struct ciel_err *err);
/* Next checked entry: 1 with s->ent filled and *e libarchive's, 0 at the end, -1. */
int image_scan_next(struct image_scan *s, struct archive_entry **e, struct ciel_err *err);
/* Read the current entry's data and drop it: a truncated archive shows up here. */
int image_scan_skip(struct image_scan *s, struct ciel_err *err);
/* Read to the end of the source, so the hash and copy are whole; hex of the hash. */
int image_scan_finish(struct image_scan *s, char hex[65], struct ciel_err *err);
/* Why libarchive gave up, naming the entry (NULL before the first). */
int image_scan_fail(struct image_scan *s, const char *name, struct ciel_err *err);
void image_scan_close(struct image_scan *s);

/* An archive name made safe for a message: printable ASCII, cut short. */
const char *image_shown(const char *s, char *buf, size_t size);
/* A refused entry: CIEL_EINVAL, field "file", "file: <ctx>entry '<name>': <why>". */
int image_refuse(struct ciel_err *err, const char *ctx, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A bad image: CIEL_EINVAL, field "file", "file: <why>". */
int image_bad(struct ciel_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int64_t image_max_unpacked(const struct image_opts *o);
int image_write_all(int fd, const void *p, size_t n);
/* rm -rf of name under dfd, never following a symlink; 0 if it was not there. */
int image_rm_rf_at(int dfd, const char *name);

#endif
