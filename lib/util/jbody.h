/*
 * jbody — strict parsing of JSON request bodies against a field table.
 *
 * Every API body goes through here, so a client gets one precise error
 * naming the field at fault: malformed JSON (with line/column), a body that
 * is not an object, an unknown member (typos are errors, not silently
 * ignored), a missing required member, a wrong type, a string too long or
 * not valid UTF-8 (jansson already refuses invalid UTF-8 and NUL bytes), a
 * nested object with its own table. Nothing is half-applied: callers only
 * act on a body that passed.
 */
#ifndef CIEL_JBODY_H
#define CIEL_JBODY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define JBODY_MAX_BYTES (1u << 20)
#define JBODY_MAX_DEPTH 8

enum jbody_type { JB_STRING = 1, JB_INT, JB_BOOL, JB_OBJECT, JB_SIZE, JB_STRINGS };

struct jbody_field {
	const char *name;
	enum jbody_type type;
	int required;
	size_t max_len;			  /* JB_STRING(S): max bytes of a string (0 = 256) */
	int64_t min, max;		  /* JB_INT / JB_SIZE: inclusive range (both 0 = >= 0);
					   * JB_STRINGS: max = most items (0 = 256) */
	const struct jbody_field *fields; /* JB_OBJECT: nested table, NULL-name terminated */
};

/*
 * Parse len bytes of body (not NUL-terminated; len 0 means {}) and check it
 * against fields (terminated by an entry with name == NULL). On success *out
 * is a new reference the caller json_decref()s. JB_SIZE accepts an integer
 * number of bytes or a string like "64M", "16G", "512Ki" and is replaced in
 * *out by the integer byte count. Field names in errors are dotted paths
 * ("capacity.cpu_millis").
 */
int jbody_parse(const char *body, size_t len, const struct jbody_field *fields, json_t **out,
		struct ciel_err *err);

/* Parse a size: plain bytes or a number with K/M/G/T (powers of 1024;
 * "Ki"/"KiB"/"KB" forms accepted too). -1 if malformed or overflowing. */
int jbody_parse_size(const char *s, int64_t *bytes);

/* Convenience getters on a checked object: absent -> def. */
const char *jbody_str(const json_t *obj, const char *name, const char *def);
int64_t jbody_int(const json_t *obj, const char *name, int64_t def);

#endif
