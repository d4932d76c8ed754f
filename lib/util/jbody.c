/* jbody — see jbody.h. */
#include "util/jbody.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int jbody_parse_size(const char *s, int64_t *bytes)
{
	static const struct {
		const char *suffix;
		int shift;
	} units[] = {
	    {"", 0},	{"B", 0},    {"K", 10},	 {"KB", 10},  {"Ki", 10}, {"KiB", 10},
	    {"M", 20},	{"MB", 20},  {"Mi", 20}, {"MiB", 20}, {"G", 30},  {"GB", 30},
	    {"Gi", 30}, {"GiB", 30}, {"T", 40},	 {"TB", 40},  {"Ti", 40}, {"TiB", 40},
	};
	char *end;
	long long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v < 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		if (v > (INT64_MAX >> units[i].shift))
			return -1;
		*bytes = (int64_t)v << units[i].shift;
		return 0;
	}
	return -1;
}

static const char *type_name(enum jbody_type t)
{
	switch (t) {
	case JB_STRING:
		return "a string";
	case JB_INT:
		return "an integer";
	case JB_BOOL:
		return "a boolean";
	case JB_OBJECT:
		return "an object";
	case JB_SIZE:
		return "a size (bytes, or a string like \"64M\")";
	case JB_STRINGS:
		return "an array of strings";
	}
	return "?";
}

static int check_string(const json_t *v, const struct jbody_field *f, const char *path,
			struct ciel_err *err)
{
	size_t max = f->max_len ? f->max_len : 256;

	if (json_string_length(v) > max)
		return ciel_err_field(err, CIEL_EINVAL, path, "%s: longer than %zu bytes", path,
				      max);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return ciel_err_field(err, CIEL_EINVAL, path, "%s: must not contain NUL", path);
	return 0;
}

static int check_object(json_t *obj, const struct jbody_field *fields, const char *prefix,
			int depth, struct ciel_err *err)
{
	char path[128];
	const char *name;
	json_t *v;

	if (depth > JBODY_MAX_DEPTH)
		return ciel_err_field(err, CIEL_EINVAL, prefix, "%s: nested too deeply", prefix);

	json_object_foreach(obj, name, v)
	{
		const struct jbody_field *f = fields;

		while (f->name && strcmp(f->name, name) != 0)
			f++;
		snprintf(path, sizeof(path), "%s%s%.64s", prefix, *prefix ? "." : "", name);
		if (!f->name)
			return ciel_err_field(err, CIEL_EINVAL, path, "%s: unknown field", path);
		if (json_is_null(v) && !f->required)
			continue;
		switch (f->type) {
		case JB_STRING:
			if (!json_is_string(v))
				goto wrong_type;
			if (check_string(v, f, path, err) < 0)
				return -1;
			break;
		case JB_STRINGS: {
			size_t i, max = f->max ? (size_t)f->max : 256;
			json_t *item;

			if (!json_is_array(v))
				goto wrong_type;
			if (json_array_size(v) > max)
				return ciel_err_field(err, CIEL_EINVAL, path,
						      "%s: more than %zu items", path, max);
			json_array_foreach(v, i, item)
			{
				if (!json_is_string(item))
					goto wrong_type;
				if (check_string(item, f, path, err) < 0)
					return -1;
			}
			break;
		}
		case JB_INT:
		case JB_SIZE: {
			int64_t n;

			if (json_is_integer(v)) {
				n = json_integer_value(v);
			} else if (f->type == JB_SIZE && json_is_string(v)) {
				if (jbody_parse_size(json_string_value(v), &n) < 0)
					return ciel_err_field(err, CIEL_EINVAL, path,
							      "%s: must be a size like 64M or 16G",
							      path);
				/* callers see bytes, whatever form the client used */
				json_object_set_new(obj, name, json_integer(n));
			} else {
				goto wrong_type;
			}
			if (f->min || f->max) {
				if (n < f->min || n > f->max)
					return ciel_err_field(err, CIEL_EINVAL, path,
							      "%s: must be between %lld and %lld",
							      path, (long long)f->min,
							      (long long)f->max);
			} else if (n < 0) {
				return ciel_err_field(err, CIEL_EINVAL, path,
						      "%s: must not be negative", path);
			}
			break;
		}
		case JB_BOOL:
			if (!json_is_boolean(v))
				goto wrong_type;
			break;
		case JB_OBJECT:
			if (!json_is_object(v))
				goto wrong_type;
			if (f->fields && check_object(v, f->fields, path, depth + 1, err) < 0)
				return -1;
			break;
		}
		continue;
	wrong_type:
		return ciel_err_field(err, CIEL_EINVAL, path, "%s: must be %s", path,
				      type_name(f->type));
	}
	for (const struct jbody_field *f = fields; f->name; f++) {
		json_t *got = json_object_get(obj, f->name);

		if (f->required && (!got || json_is_null(got))) {
			snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", f->name);
			return ciel_err_field(err, CIEL_EINVAL, path, "%s: required", path);
		}
	}
	return 0;
}

int jbody_parse(const char *body, size_t len, const struct jbody_field *fields, json_t **out,
		struct ciel_err *err)
{
	json_error_t jerr;
	json_t *obj;

	*out = NULL;
	if (len > JBODY_MAX_BYTES)
		return ciel_err_set(err, CIEL_ETOOBIG, "body: larger than %u bytes",
				    JBODY_MAX_BYTES);
	if (len == 0) {
		obj = json_object();
	} else {
		obj = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
		if (!obj)
			return ciel_err_field(err, CIEL_EINVAL, "body",
					      "body: invalid JSON at line %d column %d: %s",
					      jerr.line, jerr.column, jerr.text);
	}
	if (!obj)
		return ciel_err_set(err, CIEL_ENOMEM, "body: out of memory");
	if (!json_is_object(obj)) {
		json_decref(obj);
		return ciel_err_field(err, CIEL_EINVAL, "body", "body: must be a JSON object");
	}
	if (check_object(obj, fields, "", 0, err) < 0) {
		json_decref(obj);
		return -1;
	}
	*out = obj;
	return 0;
}

const char *jbody_str(const json_t *obj, const char *name, const char *def)
{
	const json_t *v = json_object_get(obj, name);

	return json_is_string(v) ? json_string_value(v) : def;
}

int64_t jbody_int(const json_t *obj, const char *name, int64_t def)
{
	const json_t *v = json_object_get(obj, name);

	return json_is_integer(v) ? json_integer_value(v) : def;
}
