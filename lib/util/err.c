/* err — see err.h. */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	int http;
} codes[CIEL_CODE_MAX] = {
    [CIEL_OK] = {"ok", 200},
    [CIEL_EINVAL] = {"invalid_argument", 400},
    [CIEL_EUNAUTH] = {"unauthenticated", 401},
    [CIEL_EPERM] = {"permission_denied", 403},
    [CIEL_ENOTFOUND] = {"not_found", 404},
    [CIEL_EMETHOD] = {"method_not_allowed", 405},
    [CIEL_ECONFLICT] = {"conflict", 409},
    [CIEL_EEXIST] = {"already_exists", 409},
    [CIEL_ETOOBIG] = {"payload_too_large", 413},
    [CIEL_EQUOTA] = {"quota_exceeded", 403},
    [CIEL_EUNAVAIL] = {"unavailable", 503},
    [CIEL_EIO] = {"io_error", 500},
    [CIEL_ENOMEM] = {"out_of_memory", 500},
    [CIEL_EINTERNAL] = {"internal", 500},
};

const char *ciel_code_name(int code)
{
	if (code < 0 || code >= CIEL_CODE_MAX)
		return "internal";
	return codes[code].name;
}

int ciel_code_http(int code)
{
	if (code < 0 || code >= CIEL_CODE_MAX)
		return 500;
	return codes[code].http;
}

static void vset(struct ciel_err *err, int code, const char *field, const char *fmt, va_list ap)
{
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int ciel_err_set(struct ciel_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	va_start(ap, fmt);
	vset(err, code, NULL, fmt, ap);
	va_end(ap);
	return -1;
}

int ciel_err_field(struct ciel_err *err, int code, const char *field, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	va_start(ap, fmt);
	vset(err, code, field, fmt, ap);
	va_end(ap);
	return -1;
}

int ciel_err_sys(struct ciel_err *err, int code, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	if (!err)
		return -1;
	va_start(ap, fmt);
	vset(err, code, NULL, fmt, ap);
	va_end(ap);
	len = strlen(err->msg);
	snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", strerror(errnum));
	return -1;
}

void ciel_err_prefix(struct ciel_err *err, const char *fmt, ...)
{
	char pre[200], old[sizeof(err->msg)];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s%.*s", pre,
		 (int)(sizeof(err->msg) - 1 - strlen(pre)), old);
}

void ciel_err_clear(struct ciel_err *err)
{
	if (!err)
		return;
	err->code = CIEL_OK;
	err->field[0] = '\0';
	err->msg[0] = '\0';
}

void ciel_bug(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "BUG at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}
