/*
 * profile — see profile.h. The file is small and read whole; writing builds
 * the new text in memory from the old one and swaps it in with rename(2).
 */
#include "client/profile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int profile_default_path(char *out, size_t size, struct ciel_err *err)
{
	const char *home = getenv("HOME");

	if (!home || !*home)
		return ciel_err_set(err, CIEL_EINVAL,
				    "HOME is not set: cannot find the credentials file");
	if ((size_t)snprintf(out, size, "%s/.config/ciel/credentials", home) >= size)
		return ciel_err_set(err, CIEL_EINVAL, "HOME is too long");
	return 0;
}

int profile_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > PROFILE_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -1;
	}
	return 0;
}

/* Read file whole, NUL-terminated; *out NULL and 0 returned with errno kept if missing. */
static int read_all(const char *file, char **out, size_t *len, struct ciel_err *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, ret = -1;

	*out = NULL;
	*len = 0;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return ciel_err_set(err, CIEL_ENOTFOUND, "%s: no such file", file);
		return ciel_err_sys(err, CIEL_EIO, errno, "open %s", file);
	}
	if (fstat(fd, &st) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "stat %s", file);
		goto out_close;
	}
	if (st.st_size > (off_t)PROFILE_FILE_MAX) {
		ciel_err_set(err, CIEL_ETOOBIG, "%s: larger than %u bytes", file, PROFILE_FILE_MAX);
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ciel_err_set(err, CIEL_ENOMEM, "read %s: out of memory", file);
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "read %s", file);
			goto out_free;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	buf = NULL;
	ret = 0;
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}

/* Trim [*s, *e) of blanks in place (pointers only). */
static void trim(const char **s, const char **e)
{
	while (*s < *e && (**s == ' ' || **s == '\t' || **s == '\r'))
		(*s)++;
	while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t' || (*e)[-1] == '\r'))
		(*e)--;
}

/* If line [s, e) is a section header, copy its name into name and return 1. */
static int section_of(const char *s, const char *e, char *name, size_t size)
{
	trim(&s, &e);
	if (e - s < 2 || *s != '[' || e[-1] != ']')
		return 0;
	s++;
	e--;
	trim(&s, &e);
	snprintf(name, size, "%.*s", (int)(e - s), s);
	return 1;
}

static char *field_of(struct profile *p, const char *key, size_t n)
{
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {
	    {"endpoint", offsetof(struct profile, endpoint)},
	    {"key_id", offsetof(struct profile, key_id)},
	    {"secret", offsetof(struct profile, secret)},
	    {"scope", offsetof(struct profile, scope)},
	    {"ca_file", offsetof(struct profile, ca_file)},
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strlen(fields[i].name) == n && memcmp(fields[i].name, key, n) == 0)
			return (char *)p + fields[i].off;
	return NULL;
}

int profile_load(const char *file, const char *name, struct profile *out, struct ciel_err *err)
{
	char *text = NULL, cur[PROFILE_NAME_MAX + 2] = "";
	const char *line, *next;
	bool in = false, found = false;
	int lineno = 0, ret = -1;
	size_t len;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	if (read_all(file, &text, &len, err) < 0)
		return -1;
	for (line = text; *line; line = next) {
		const char *end = strchr(line, '\n'), *s, *e, *eq;
		char *dst;

		next = end ? end + 1 : line + strlen(line);
		end = end ? end : next;
		lineno++;
		s = line;
		e = end;
		trim(&s, &e);
		if (s == e || *s == '#' || *s == ';')
			continue;
		if (section_of(s, e, cur, sizeof(cur))) {
			in = strcmp(cur, name) == 0;
			found |= in;
			continue;
		}
		eq = memchr(s, '=', (size_t)(e - s));
		if (!eq) {
			ciel_err_set(err, CIEL_EINVAL,
				     "%s:%d: expected `key = value` or `[profile]`", file, lineno);
			goto out;
		}
		if (!in)
			continue;
		{
			const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;

			trim(&ks, &ke);
			trim(&vs, &ve);
			dst = field_of(out, ks, (size_t)(ke - ks));
			if (!dst)
				continue; /* unknown keys are for newer versions; keep going */
			if ((size_t)(ve - vs) >= PROFILE_VALUE_MAX) {
				ciel_err_set(err, CIEL_EINVAL, "%s:%d: value too long", file,
					     lineno);
				goto out;
			}
			memcpy(dst, vs, (size_t)(ve - vs));
			dst[ve - vs] = '\0';
		}
	}
	if (!found) {
		ciel_err_set(err, CIEL_ENOTFOUND, "%s: no profile [%s]", file, name);
		goto out;
	}
	ret = 0;
out:
	if (ret < 0) {
		memset(out, 0, sizeof(*out));
		snprintf(out->name, sizeof(out->name), "%s", name);
	}
	if (text) {
		/* the text holds secrets: do not leave them in freed heap */
		explicit_bzero(text, len);
		free(text);
	}
	return ret;
}

struct buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = malloc(cap);
		if (!p) {
			b->oom = true;
			return;
		}
		if (b->p) {
			memcpy(p, b->p, b->len);
			explicit_bzero(b->p, b->cap);
			free(b->p);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_free(struct buf *b)
{
	if (b->p) {
		explicit_bzero(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

static void add_section(struct buf *b, const struct profile *p)
{
	const struct {
		const char *key, *val;
	} kv[] = {
	    {"endpoint", p->endpoint}, {"key_id", p->key_id},	{"secret", p->secret},
	    {"scope", p->scope},       {"ca_file", p->ca_file},
	};

	buf_str(b, "[");
	buf_str(b, p->name);
	buf_str(b, "]\n");
	for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
		if (!kv[i].val[0])
			continue;
		buf_str(b, kv[i].key);
		buf_str(b, " = ");
		buf_str(b, kv[i].val);
		buf_str(b, "\n");
	}
}

/* mkdir -p of the parent of file, new directories 0700. */
static int make_parents(const char *file, struct ciel_err *err)
{
	char dir[PATH_MAX];
	char *slash;

	if ((size_t)snprintf(dir, sizeof(dir), "%s", file) >= sizeof(dir))
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", file);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", dir);
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", dir);
	return 0;
}

static int write_atomic(const char *file, const char *data, size_t len, struct ciel_err *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX], *slash;
	size_t off = 0;
	int fd, dfd, ret = -1;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", file) >= sizeof(tmp))
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", file);
	fd = mkstemp(tmp); /* 0600 */
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", tmp);
	if (fchmod(fd, 0600) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "chmod %s", tmp);
		goto out_unlink;
	}
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "write %s", tmp);
			goto out_unlink;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "fsync %s", tmp);
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		ciel_err_sys(err, CIEL_EIO, errno, "close %s", tmp);
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, file) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "rename %s to %s", tmp, file);
		goto out_unlink;
	}
	/* make the rename itself durable */
	snprintf(dir, sizeof(dir), "%s", file);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0) {
			/* the data is in place; only its durability across a crash is in doubt */
		}
		close(dfd);
	}
	return 0;
out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return ret;
}

int profile_write(const char *file, const struct profile *p, struct ciel_err *err)
{
	struct buf b = {0};
	struct ciel_err rerr;
	char *old = NULL, cur[PROFILE_NAME_MAX + 2];
	bool skipping = false, written = false;
	size_t old_len = 0;
	int ret = -1;

	if (profile_name_valid(p->name) < 0)
		return ciel_err_field(err, CIEL_EINVAL, "profile",
				      "profile name must match [A-Za-z0-9._-]{1,64}");
	if (make_parents(file, err) < 0)
		return -1;
	if (read_all(file, &old, &old_len, &rerr) < 0 && rerr.code != CIEL_ENOTFOUND) {
		if (err)
			*err = rerr;
		return -1;
	}
	for (const char *line = old ? old : "", *next; *line; line = next) {
		const char *end = strchr(line, '\n');

		next = end ? end + 1 : line + strlen(line);
		if (section_of(line, end ? end : next, cur, sizeof(cur))) {
			bool was_skipping = skipping;

			skipping = strcmp(cur, p->name) == 0;
			if (skipping) {
				/* a duplicate section of the same name is dropped too */
				if (!written)
					add_section(&b, p);
				written = true;
				continue;
			}
			if (was_skipping)
				buf_str(&b,
					"\n"); /* the blank line that ended the replaced section */
		}
		if (skipping)
			continue;
		buf_add(&b, line, (size_t)(next - line));
		if (!end)
			buf_str(&b, "\n");
	}
	if (!written) {
		if (b.len && !(b.len >= 2 && b.p[b.len - 2] == '\n'))
			buf_str(&b, "\n");
		add_section(&b, p);
	}
	if (b.oom) {
		ciel_err_set(err, CIEL_ENOMEM, "write %s: out of memory", file);
		goto out;
	}
	if (write_atomic(file, b.p ? b.p : "", b.len, err) < 0)
		goto out;
	ret = 0;
out:
	buf_free(&b);
	if (old) {
		explicit_bzero(old, old_len);
		free(old);
	}
	return ret;
}
