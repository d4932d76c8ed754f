/*
 * output — how the CLI renders answers: aligned tables with upper-case
 * headers (kubectl style), "Key: value" blocks for single objects, and the
 * server's JSON pretty-printed for --output json. Also the small formatters
 * (sizes, CPU, ages, times) the tables share, so every command shows a
 * value the same way.
 */
#ifndef CIEL_CLI_OUTPUT_H
#define CIEL_CLI_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum out_format { OUT_TABLE, OUT_JSON };

/* A table of strings, copied in; printed with columns padded to the widest cell. */
struct table;
/* headers: ncols strings. NULL if out of memory. */
struct table *table_new(size_t ncols, const char *const *headers);
/* Add one row of ncols cells (NULL cells print as "-"); -1 if out of memory. */
int table_add(struct table *t, const char *const *cells);
/* Print; a table with no rows prints no_rows instead (unless NULL). */
void table_print(const struct table *t, FILE *f, const char *no_rows);
void table_free(struct table *t);

/* Print j indented by 2 to stdout, with a final newline. */
void out_json(const json_t *j);

/* "Key:   value" lines, keys padded to the longest. */
struct kv {
	const char *key;
	const char *value;
};
void out_kv(FILE *f, const struct kv *kv, size_t n);

/* Scalar member of obj as text into buf ("" if absent or null): strings as
 * is, integers and reals in decimal, booleans as true/false. Returns buf. */
const char *fmt_member(const json_t *obj, const char *name, char *buf, size_t size);
/* 17179869184 -> "16Gi", 1536 -> "1.5Ki", 100 -> "100". Returns buf. */
const char *fmt_bytes(int64_t bytes, char *buf, size_t size);
/* fmt_bytes with the unit spelled out: 1536 -> "1.5KiB", 100 -> "100B". */
const char *fmt_size(int64_t bytes, char *buf, size_t size);
/* 2000 -> "2", 500 -> "500m". Returns buf. */
const char *fmt_cpu(int64_t millis, char *buf, size_t size);
/* A time member (RFC 3339 string, or ms/seconds since epoch) as RFC 3339. */
const char *fmt_time(const json_t *v, char *buf, size_t size);
/* How long ago a time member was: "5s", "3m", "2h", "4d"; "-" if unknown. */
const char *fmt_age(const json_t *v, char *buf, size_t size);

#endif
