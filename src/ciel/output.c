/*
 * output — see output.h. Tables are small (one page of an API answer), so
 * cells are copied and the widths computed at print time.
 */
#include "output.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/ts.h"

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* (nrows + 1) * ncols, row 0 the headers */
};

struct table *table_new(size_t ncols, const char *const *headers)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	if (table_add(t, headers) < 0) {
		free(t->cells);
		free(t);
		return NULL;
	}
	t->nrows = 0; /* the header row does not count */
	return t;
}

int table_add(struct table *t, const char *const *cells)
{
	size_t rows = t->cells ? t->nrows + 1 : 0; /* rows stored so far, headers included */

	if (rows + 1 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **p = realloc(t->cells, cap * t->ncols * sizeof(*p));

		if (!p)
			return -1;
		t->cells = p;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		const char *c = cells[i] && cells[i][0] ? cells[i] : "-";

		t->cells[rows * t->ncols + i] = strdup(c);
		if (!t->cells[rows * t->ncols + i]) {
			while (i-- > 0)
				free(t->cells[rows * t->ncols + i]);
			return -1;
		}
	}
	if (rows > 0)
		t->nrows++;
	return 0;
}

void table_print(const struct table *t, FILE *f, const char *no_rows)
{
	size_t *w;

	if (t->nrows == 0 && no_rows) {
		fprintf(f, "%s\n", no_rows);
		return;
	}
	w = calloc(t->ncols, sizeof(*w));
	if (!w)
		return;
	for (size_t r = 0; r <= t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t n = strlen(t->cells[r * t->ncols + c]);

			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r <= t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];

			if (c + 1 == t->ncols)
				fprintf(f, "%s\n", s); /* no trailing blanks */
			else
				fprintf(f, "%-*s   ", (int)w[c], s);
		}
	}
	free(w);
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

void out_json(const json_t *j)
{
	if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) == 0)
		fputc('\n', stdout);
}

void out_kv(FILE *f, const struct kv *kv, size_t n)
{
	int w = 0;

	for (size_t i = 0; i < n; i++)
		if ((int)strlen(kv[i].key) > w)
			w = (int)strlen(kv[i].key);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s:%*s %s\n", kv[i].key, w - (int)strlen(kv[i].key), "",
			kv[i].value && kv[i].value[0] ? kv[i].value : "-");
}

const char *fmt_member(const json_t *obj, const char *name, char *buf, size_t size)
{
	const json_t *v = json_object_get(obj, name);

	buf[0] = '\0';
	if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, size, "%g", json_real_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
	return buf;
}

const char *fmt_bytes(int64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = {"Ki", "Mi", "Gi", "Ti", "Pi"};
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, size, "%" PRId64, bytes);
		return buf;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (v == (double)(int64_t)v || v >= 100)
		snprintf(buf, size, "%.0f%s", v, units[u]);
	else
		snprintf(buf, size, "%.1f%s", v, units[u]);
	return buf;
}

const char *fmt_size(int64_t bytes, char *buf, size_t size)
{
	char b[32];

	fmt_bytes(bytes, b, sizeof(b));
	snprintf(buf, size, "%.30sB", b);
	return buf;
}

const char *fmt_cpu(int64_t millis, char *buf, size_t size)
{
	if (millis % 1000 == 0)
		snprintf(buf, size, "%" PRId64, millis / 1000);
	else
		snprintf(buf, size, "%" PRId64 "m", millis);
	return buf;
}

/* ms since epoch of a time member; -1 if absent or unreadable. */
static int64_t time_ms(const json_t *v)
{
	int64_t ms;

	if (json_is_string(v))
		return ts_parse(json_string_value(v), &ms) == 0 ? ms : -1;
	if (json_is_integer(v)) {
		ms = json_integer_value(v);
		/* seconds until the year 5138, ms after 1973: tell them apart by size */
		return ms > 100000000000LL ? ms : ms * 1000;
	}
	return -1;
}

const char *fmt_time(const json_t *v, char *buf, size_t size)
{
	char t[TS_RFC3339_LEN];
	int64_t ms = time_ms(v);

	if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (ms >= 0) {
		ts_format(ms, t);
		snprintf(buf, size, "%s", t);
	} else
		snprintf(buf, size, "-");
	return buf;
}

const char *fmt_age(const json_t *v, char *buf, size_t size)
{
	int64_t ms = time_ms(v), s;

	if (ms < 0) {
		snprintf(buf, size, "-");
		return buf;
	}
	s = (ts_now_ms() - ms) / 1000;
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, size, "%" PRId64 "s", s);
	else if (s < 7200)
		snprintf(buf, size, "%" PRId64 "m", s / 60);
	else if (s < 172800)
		snprintf(buf, size, "%" PRId64 "h", s / 3600);
	else
		snprintf(buf, size, "%" PRId64 "d", s / 86400);
	return buf;
}
