#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

int file_pathf(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

int file_write_atomic(const char *path, const void *data, size_t len, struct ciel_err *err)
{
	char tmp[PATH_MAX + 16];
	size_t off = 0;
	int fd;

	if (file_pathf(tmp, sizeof(tmp), "%s.tmp", path) < 0)
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "open %s", tmp);
	while (off < len) {
		ssize_t w = write(fd, (const char *)data + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "rename %s", path);
		unlink(tmp);
		return -1;
	}
	return 0;
fail:
	ciel_err_sys(err, CIEL_EIO, errno, "write %s", tmp);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}
