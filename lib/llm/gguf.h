/*
 * gguf — read (and, for tools and tests, write) GGUF model files.
 *
 * Versions 1 (32-bit counts), 2 and 3 (64-bit counts), little-endian only.
 * gguf_open maps the file read-only; every pointer handed out points into
 * that mapping (or into the parser's own arena for NUL-terminated copies of
 * strings) and lives until gguf_close.
 *
 * The parser trusts nothing: every count, length, offset and dimension is
 * checked against the file size before use, the tensor data of each tensor
 * must lie inside the file, be aligned as general.alignment says, and hold
 * exactly the bytes its type and shape need (gguf_row_bytes, which agrees
 * with kern_row_bytes on the types kern knows). Errors are
 * CIEL_EINVAL with a message that names what is wrong and where ("tensor
 * 'blk.3.attn_q.weight': data ends at byte 9123456 past the end of the file
 * (8000000 bytes)").
 */
#ifndef CIEL_GGUF_H
#define CIEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/dbuf.h"
#include "util/err.h"

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
/* Limits that keep a hostile header from making us allocate without bound. */
#define GGUF_MAX_KV 65536
#define GGUF_MAX_TENSORS 65536
#define GGUF_MAX_STRING (16u << 20)
#define GGUF_MAX_ARRAY (16u << 20)

enum gguf_vtype {
	GGUF_U8 = 0,
	GGUF_I8 = 1,
	GGUF_U16 = 2,
	GGUF_I16 = 3,
	GGUF_U32 = 4,
	GGUF_I32 = 5,
	GGUF_F32 = 6,
	GGUF_BOOL = 7,
	GGUF_STRING = 8,
	GGUF_ARRAY = 9,
	GGUF_U64 = 10,
	GGUF_I64 = 11,
	GGUF_F64 = 12,
	GGUF_VTYPE_MAX
};

struct gguf_str {
	const char *s; /* NUL-terminated copy (arena); len bytes, may contain NULs */
	uint64_t len;
};

struct gguf_tensor {
	const char *name; /* NUL-terminated */
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length (contiguous); unused dims are 1 */
	uint32_t type;		    /* enum kern_type (ggml numbering) */
	uint64_t offset;	    /* from the start of the data section */
	uint64_t nbytes;
	const void *data; /* into the mapping */
};

struct gguf;

/* Map and parse path. */
int gguf_open(struct gguf **out, const char *path, struct ciel_err *err);
/* Parse a buffer the caller keeps alive until gguf_close (fuzzing, tests). */
int gguf_parse(struct gguf **out, const void *buf, size_t len, struct ciel_err *err);
void gguf_close(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
size_t gguf_file_size(const struct gguf *g);

/* Metadata: index of key or -1. */
int gguf_find(const struct gguf *g, const char *key);
size_t gguf_n_kv(const struct gguf *g);
const char *gguf_kv_key(const struct gguf *g, int i);
enum gguf_vtype gguf_kv_type(const struct gguf *g, int i);
/* For arrays: element type and count (0 and GGUF_VTYPE_MAX if i is not an array). */
enum gguf_vtype gguf_arr_type(const struct gguf *g, int i);
uint64_t gguf_arr_len(const struct gguf *g, int i);

/*
 * Typed getters by key. Return 0 and set *out, or -1 with CIEL_ENOTFOUND if
 * absent and CIEL_EINVAL (naming the key) if of another type. Integer getters
 * accept any integer type whose value fits; gguf_get_f32 accepts F32 and F64.
 */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct ciel_err *err);
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out, struct ciel_err *err);
int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct ciel_err *err);
int gguf_get_bool(const struct gguf *g, const char *key, int *out, struct ciel_err *err);
int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out, struct ciel_err *err);
/* Array elements by index (i from gguf_find; idx < gguf_arr_len): any numeric type converted. */
int gguf_arr_str(const struct gguf *g, int i, uint64_t idx, struct gguf_str *out);
double gguf_arr_num(const struct gguf *g, int i, uint64_t idx);

/*
 * Scalar values by index, for tools that print every key (ciel-llm info):
 * gguf_kv_int gives integer types (0, or -1 for another type or a u64 past
 * INT64_MAX); gguf_kv_num any numeric or bool as a double (NaN otherwise);
 * gguf_kv_str a string (0, or -1 for another type).
 */
int gguf_kv_int(const struct gguf *g, int i, int64_t *out);
double gguf_kv_num(const struct gguf *g, int i);
int gguf_kv_str(const struct gguf *g, int i, struct gguf_str *out);
/* "u32", "string", "array"...; "?" for a number we do not know. */
const char *gguf_vtype_name(uint32_t t);

/* Bytes of tensor data the file's alignment applies to, and where that data starts. */
uint32_t gguf_alignment(const struct gguf *g);
uint64_t gguf_data_offset(const struct gguf *g);

/*
 * The parser's own table of ggml tensor types (it knows more of them than
 * kern computes with, so `ciel-llm info` can show any file; the model checks
 * kern_type_ok). Name ("q5_0"), or NULL if unknown; elements per block and
 * bytes of a row of n elements, 0 if unknown or n is not a whole number of
 * blocks.
 */
const char *gguf_type_name(uint32_t type);
uint32_t gguf_block_elems(uint32_t type);
uint64_t gguf_row_bytes(uint32_t type, uint64_t n);

size_t gguf_n_tensors(const struct gguf *g);
const struct gguf_tensor *gguf_tensor(const struct gguf *g, size_t i);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/*
 * Writer: collect metadata and tensors, then write a version 3 file (or 1/2
 * for tests of the old layouts). Tensor data is copied in at add time.
 */
struct gguf_writer;
struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w);
int gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_w_f32(struct gguf_writer *w, const char *key, float v);
int gguf_w_bool(struct gguf_writer *w, const char *key, int v);
int gguf_w_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_w_arr_str(struct gguf_writer *w, const char *key, const char *const *v, size_t n);
int gguf_w_arr_f32(struct gguf_writer *w, const char *key, const float *v, size_t n);
int gguf_w_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* Copy every metadata key of g whose name starts with prefix ("tokenizer."). */
int gguf_w_copy_kv(struct gguf_writer *w, const struct gguf *g, const char *prefix);
/*
 * A tensor of type with ne[0..n_dims) elements; data holds kern_row_bytes(type,
 * ne[0]) * (rows) bytes. Large tensors are streamed from a callback instead:
 * fill(arg, row, buf) writes row number `row` (0-based over all rows); rows
 * are asked for in order, once each, while gguf_writer_write runs.
 * Setting a key that is already there replaces its value; a tensor name
 * already there, an unknown type or a shape that is not whole blocks fails
 * (-1), and gguf_writer_write then reports why.
 */
int gguf_w_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
		  const uint64_t *ne, const void *data);
int gguf_w_tensor_cb(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
		     const uint64_t *ne, void (*fill)(void *arg, uint64_t row, void *buf),
		     void *arg);
int gguf_writer_write(struct gguf_writer *w, const char *path, uint32_t version,
		      struct ciel_err *err);
/* A u64 key (general.alignment is u32: use gguf_w_u32). */
int gguf_w_u64(struct gguf_writer *w, const char *key, uint64_t v);
/* Data alignment of the file written (power of two; default 32); also written as general.alignment
 * when not 32. */
int gguf_w_alignment(struct gguf_writer *w, uint32_t alignment);

#endif
