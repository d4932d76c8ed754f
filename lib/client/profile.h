/*
 * profile — credentials files: INI text with one "[name]" section per
 * profile and "key = value" lines (endpoint, key_id, secret, scope, ca_file).
 *
 * The default file is $HOME/.config/ciel/credentials. Secrets live only
 * here (or in CIEL_SECRET), never on a command line, so writing keeps the
 * file 0600 in a 0700 directory and replaces it atomically (write a
 * temporary file beside it, fsync, rename): a crash leaves the old file or
 * the new one, never half of each. Other sections are kept verbatim,
 * comments included; the replaced section's own lines (up to the next
 * header) go, and so does any later duplicate of it.
 */
#ifndef CIEL_PROFILE_H
#define CIEL_PROFILE_H

#include <stddef.h>

#include "util/err.h"

#define PROFILE_NAME_MAX 64
#define PROFILE_VALUE_MAX 1024
#define PROFILE_FILE_MAX (1u << 20) /* refuse to read larger credentials files */

struct profile {
	char name[PROFILE_NAME_MAX + 1];
	char endpoint[PROFILE_VALUE_MAX];
	char key_id[PROFILE_VALUE_MAX];
	char secret[PROFILE_VALUE_MAX];
	char scope[PROFILE_VALUE_MAX];
	char ca_file[PROFILE_VALUE_MAX];
};

/* $HOME/.config/ciel/credentials into out; -1 (CIEL_EINVAL) if HOME is unset. */
int profile_default_path(char *out, size_t size, struct ciel_err *err);

/*
 * Load section name of file into out (fields absent from the section are "").
 * -1 with CIEL_ENOTFOUND if the file does not exist or has no such section,
 * CIEL_EINVAL on a malformed line (message names file and line), CIEL_EIO on
 * a read error. out is cleared first in every case.
 */
int profile_load(const char *file, const char *name, struct profile *out, struct ciel_err *err);

/*
 * Write p as section p->name of file: an existing section of that name is
 * replaced in place, otherwise the section is appended. Missing parent
 * directories are created 0700; the file ends up 0600. Empty fields are
 * left out.
 */
int profile_write(const char *file, const struct profile *p, struct ciel_err *err);

/* 0 if name is usable as a section name ([A-Za-z0-9._-]{1,64}), else -1. */
int profile_name_valid(const char *name);

#endif
