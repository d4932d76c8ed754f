/*
 * err — error values for everything in lib/.
 *
 * Library functions return -1 on failure and fill a struct ciel_err (may be
 * NULL when the caller does not care). The code maps one-to-one onto the API's
 * JSON error codes and HTTP statuses, so an error raised deep in the store
 * reaches the client with its meaning intact. Callers add context with
 * ciel_err_prefix() and propagate; nothing in lib/ exits.
 */
#ifndef CIEL_ERR_H
#define CIEL_ERR_H

#include <stddef.h>

enum ciel_code {
	CIEL_OK = 0,
	CIEL_EINVAL,	/* invalid_argument      400 */
	CIEL_EUNAUTH,	/* unauthenticated       401 */
	CIEL_EPERM,	/* permission_denied     403 */
	CIEL_ENOTFOUND, /* not_found             404 */
	CIEL_EMETHOD,	/* method_not_allowed    405 */
	CIEL_ECONFLICT, /* conflict              409 (revision mismatch) */
	CIEL_EEXIST,	/* already_exists        409 */
	CIEL_ETOOBIG,	/* payload_too_large     413 */
	CIEL_EQUOTA,	/* quota_exceeded        403 */
	CIEL_EUNAVAIL,	/* unavailable           503 */
	CIEL_EIO,	/* io_error              500 */
	CIEL_ENOMEM,	/* out_of_memory         500 */
	CIEL_EINTERNAL, /* internal              500 */
	CIEL_CODE_MAX
};

struct ciel_err {
	int code;	/* enum ciel_code */
	char field[64]; /* offending input field, "" if none */
	char msg[512];
};

/* Set err (if non-NULL) and return -1, so callers can `return ciel_err_set(...)`. */
int ciel_err_set(struct ciel_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like ciel_err_set, naming the input field at fault. */
int ciel_err_field(struct ciel_err *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like ciel_err_set, appending ": strerror(errnum)". */
int ciel_err_sys(struct ciel_err *err, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepend context ("open store: ") to an error already set. */
void ciel_err_prefix(struct ciel_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ciel_err_clear(struct ciel_err *err);

/* Stable snake_case name used in API error bodies ("invalid_argument"). */
const char *ciel_code_name(int code);
/* HTTP status for a code. */
int ciel_code_http(int code);

/* Marks a broken invariant: print and abort. Not for bad input. */
#define BUG(...) ciel_bug(__FILE__, __LINE__, __VA_ARGS__)
void ciel_bug(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#endif
