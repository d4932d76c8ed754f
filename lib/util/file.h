/*
 * file — small path and file helpers for code that keeps state on disk
 * (the agent's instance records, quantum job directories).
 */
#ifndef CIEL_FILE_H
#define CIEL_FILE_H

#include <stddef.h>

#include "util/err.h"

/* snprintf for paths: -1 (and "" in out) if it does not fit. */
int file_pathf(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Write data to path atomically and durably (temp file, fsync, rename, mode
 * 0600): a crash leaves the old file or the new one. -1 with err (may be NULL).
 */
int file_write_atomic(const char *path, const void *data, size_t len, struct ciel_err *err);

#endif
