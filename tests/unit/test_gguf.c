/*
 * test_gguf — the GGUF reader on the real stories260K files (version 1 and
 * 3 must give the same model), the writer's round trip through every
 * version, and hostile input: every truncation of a real file, absurd
 * counts, sizes and offsets, unknown types, bad magic and version.
 */
#include "llm/gguf.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llm/kern.h"
#include "util/dbuf.h"

#define V1_FILE "tinyllamas-stories-260k-f32.gguf"
#define V3_FILE "stories260k-f32.v3.gguf"

/* The test models live beside the source tree: ../shared/models (CIEL_MODELS overrides). */
static int model_path(char *out, size_t size, const char *file)
{
	const char *env = getenv("CIEL_MODELS");
	if (env)
		return snprintf(out, size, "%s/stories260K/%s", env, file) < (int)size ? 0 : -1;
	const char *src = __FILE__;
	const char *cut = strstr(src, "/tests/unit/test_gguf.c");
	if (!cut)
		return -1;
	int n = snprintf(out, size, "%.*s/../shared/models/stories260K/%s", (int)(cut - src), src,
			 file);
	return n < (int)size ? 0 : -1;
}

static struct gguf *open_model(const char *file)
{
	char path[4096];
	struct gguf *g = NULL;
	struct ciel_err err = {0};
	assert_int_equal(model_path(path, sizeof(path), file), 0);
	if (access(path, R_OK) != 0) {
		print_message("test model %s missing\n", path);
		fail();
	}
	if (gguf_open(&g, path, &err) < 0)
		fail_msg("gguf_open %s: %s", path, err.msg);
	return g;
}

static uint32_t get_u32(const struct gguf *g, const char *key)
{
	uint32_t v = 0;
	struct ciel_err err = {0};
	if (gguf_get_u32(g, key, &v, &err) < 0)
		fail_msg("%s: %s", key, err.msg);
	return v;
}

static void check_stories(const struct gguf *g)
{
	struct gguf_str s;
	struct ciel_err err = {0};
	float eps = 0;

	assert_int_equal(gguf_get_str(g, "general.architecture", &s, &err), 0);
	assert_string_equal(s.s, "llama");
	assert_int_equal(get_u32(g, "llama.block_count"), 5);
	assert_int_equal(get_u32(g, "llama.embedding_length"), 64);
	assert_int_equal(get_u32(g, "llama.attention.head_count"), 8);
	assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), 4);
	assert_int_equal(get_u32(g, "llama.feed_forward_length"), 172);
	assert_int_equal(get_u32(g, "llama.context_length"), 512);
	assert_int_equal(get_u32(g, "tokenizer.ggml.bos_token_id"), 1);
	assert_int_equal(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err), 0);
	assert_true(fabsf(eps - 1e-5f) < 1e-9f);

	int i = gguf_find(g, "tokenizer.ggml.tokens");
	assert_true(i >= 0);
	assert_int_equal(gguf_kv_type(g, i), GGUF_ARRAY);
	assert_int_equal(gguf_arr_type(g, i), GGUF_STRING);
	assert_int_equal(gguf_arr_len(g, i), 512);
	assert_int_equal(gguf_arr_str(g, i, 1, &s), 0);
	assert_string_equal(s.s, "<s>");
	assert_int_equal(gguf_arr_str(g, i, 3, &s), 0);
	assert_string_equal(s.s, "<0x00>");
	assert_int_equal(gguf_arr_str(g, i, 512, &s), -1);
	int tt = gguf_find(g, "tokenizer.ggml.token_type");
	assert_true(tt >= 0);
	assert_true(gguf_arr_num(g, tt, 0) == 2.0);
	assert_true(gguf_arr_num(g, tt, 3) == 6.0);

	assert_int_equal(gguf_n_tensors(g), 5 * 9 + 3);
	const struct gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
	assert_non_null(t);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->ne[0], 64);
	assert_int_equal(t->ne[1], 512);
	assert_int_equal(t->type, 0);
	assert_int_equal(t->nbytes, 64 * 512 * 4);
	t = gguf_find_tensor(g, "blk.4.attn_k.weight");
	assert_non_null(t);
	assert_int_equal(t->ne[0], 64);
	assert_int_equal(t->ne[1], 32);
	assert_null(gguf_find_tensor(g, "blk.5.attn_k.weight"));
	/* the data is really the weights: f32, finite, not all zero */
	const float *w = gguf_find_tensor(g, "output_norm.weight")->data;
	int nonzero = 0;
	for (int k = 0; k < 64; k++) {
		assert_true(isfinite(w[k]));
		nonzero += w[k] != 0;
	}
	assert_true(nonzero > 32);
	assert_int_equal(gguf_data_offset(g) % gguf_alignment(g), 0);
}

/* Every key and tensor of a is in b with the same type and value. */
static void same_model(const struct gguf *a, const struct gguf *b)
{
	assert_int_equal(gguf_n_kv(a), gguf_n_kv(b));
	assert_int_equal(gguf_n_tensors(a), gguf_n_tensors(b));
	for (size_t i = 0; i < gguf_n_kv(a); i++) {
		const char *key = gguf_kv_key(a, (int)i);
		int j = gguf_find(b, key);
		if (j < 0)
			fail_msg("key %s missing", key);
		enum gguf_vtype t = gguf_kv_type(a, (int)i);
		assert_int_equal(t, gguf_kv_type(b, j));
		if (t == GGUF_STRING) {
			struct gguf_str x, y;
			assert_int_equal(gguf_kv_str(a, (int)i, &x), 0);
			assert_int_equal(gguf_kv_str(b, j, &y), 0);
			assert_int_equal(x.len, y.len);
			assert_memory_equal(x.s, y.s, x.len);
		} else if (t == GGUF_ARRAY) {
			uint64_t n = gguf_arr_len(a, (int)i);
			assert_int_equal(gguf_arr_type(a, (int)i), gguf_arr_type(b, j));
			assert_int_equal(n, gguf_arr_len(b, j));
			for (uint64_t k = 0; k < n; k++) {
				struct gguf_str x, y;
				if (gguf_arr_type(a, (int)i) == GGUF_STRING) {
					assert_int_equal(gguf_arr_str(a, (int)i, k, &x), 0);
					assert_int_equal(gguf_arr_str(b, j, k, &y), 0);
					assert_int_equal(x.len, y.len);
					assert_memory_equal(x.s, y.s, x.len);
				} else {
					assert_true(gguf_arr_num(a, (int)i, k) ==
						    gguf_arr_num(b, j, k));
				}
			}
		} else {
			assert_true(gguf_kv_num(a, (int)i) == gguf_kv_num(b, j));
		}
	}
	for (size_t i = 0; i < gguf_n_tensors(a); i++) {
		const struct gguf_tensor *x = gguf_tensor(a, i);
		const struct gguf_tensor *y = gguf_find_tensor(b, x->name);
		if (!y)
			fail_msg("tensor %s missing", x->name);
		assert_int_equal(x->n_dims, y->n_dims);
		assert_int_equal(x->type, y->type);
		assert_memory_equal(x->ne, y->ne, sizeof(x->ne));
		assert_int_equal(x->nbytes, y->nbytes);
		assert_memory_equal(x->data, y->data, x->nbytes);
	}
}

static void test_stories_v1_v3(void **state)
{
	(void)state;
	struct gguf *v1 = open_model(V1_FILE);
	struct gguf *v3 = open_model(V3_FILE);
	assert_int_equal(gguf_version(v1), 1);
	assert_int_equal(gguf_version(v3), 3);
	check_stories(v1);
	check_stories(v3);
	same_model(v1, v3);
	gguf_close(v1);
	gguf_close(v3);
}

static void test_getters(void **state)
{
	(void)state;
	struct gguf *g = open_model(V3_FILE);
	struct ciel_err err = {0};
	uint32_t u;
	uint64_t u64;
	float f;
	int b;
	struct gguf_str s;

	assert_int_equal(gguf_get_u32(g, "no.such.key", &u, &err), -1);
	assert_int_equal(err.code, CIEL_ENOTFOUND);
	assert_int_equal(gguf_get_u32(g, "general.architecture", &u, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_non_null(strstr(err.msg, "general.architecture"));
	assert_int_equal(gguf_get_str(g, "llama.block_count", &s, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(gguf_get_f32(g, "llama.block_count", &f, &err), -1);
	assert_int_equal(gguf_get_bool(g, "llama.block_count", &b, &err), -1);
	assert_int_equal(gguf_get_u64(g, "llama.block_count", &u64, &err), 0);
	assert_int_equal(u64, 5);
	int64_t iv;
	int i = gguf_find(g, "llama.block_count");
	assert_int_equal(gguf_kv_int(g, i, &iv), 0);
	assert_int_equal(iv, 5);
	assert_int_equal(gguf_kv_int(g, gguf_find(g, "general.name"), &iv), -1);
	assert_true(isnan(gguf_kv_num(g, gguf_find(g, "general.name"))));
	assert_null(gguf_kv_key(g, -1));
	assert_null(gguf_kv_key(g, 100000));
	assert_int_equal(gguf_arr_len(g, i), 0);
	assert_int_equal(gguf_arr_type(g, i), GGUF_VTYPE_MAX);
	gguf_close(g);
}

struct cbarg {
	const struct gguf_tensor *t;
	uint64_t asked; /* rows asked for, in order */
	int out_of_order;
};

static void fill_row(void *arg, uint64_t row, void *buf)
{
	struct cbarg *a = arg;
	uint64_t rb = a->t->nbytes / (a->t->ne[1] * a->t->ne[2] * a->t->ne[3]);
	if (row != a->asked)
		a->out_of_order = 1;
	a->asked++;
	memcpy(buf, (const uint8_t *)a->t->data + row * rb, rb);
}

static void tmp_path(char *out, size_t size, const char *tag)
{
	snprintf(out, size, "/tmp/test_gguf.%d.%s.gguf", (int)getpid(), tag);
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct gguf *src = open_model(V3_FILE);
	struct cbarg args[64];
	assert_true(gguf_n_tensors(src) <= 64);

	for (uint32_t ver = 1; ver <= 3; ver++) {
		struct gguf_writer *w = gguf_writer_new();
		struct ciel_err err = {0};
		char path[256];
		assert_non_null(w);
		assert_int_equal(gguf_w_copy_kv(w, src, ""), 0);
		for (size_t i = 0; i < gguf_n_tensors(src); i++) {
			const struct gguf_tensor *t = gguf_tensor(src, i);
			args[i] = (struct cbarg){.t = t};
			/* half the tensors copied in, half streamed by rows */
			if (i % 2)
				assert_int_equal(
				    gguf_w_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data),
				    0);
			else
				assert_int_equal(gguf_w_tensor_cb(w, t->name, t->type, t->n_dims,
								  t->ne, fill_row, &args[i]),
						 0);
		}
		tmp_path(path, sizeof(path), "rt");
		if (gguf_writer_write(w, path, ver, &err) < 0)
			fail_msg("write v%u: %s", ver, err.msg);
		gguf_writer_free(w);
		for (size_t i = 0; i < gguf_n_tensors(src); i += 2) {
			const struct gguf_tensor *t = args[i].t;
			assert_int_equal(args[i].asked, t->ne[1] * t->ne[2] * t->ne[3]);
			assert_false(args[i].out_of_order);
		}

		struct gguf *back = NULL;
		if (gguf_open(&back, path, &err) < 0)
			fail_msg("reopen v%u: %s", ver, err.msg);
		assert_int_equal(gguf_version(back), ver);
		same_model(src, back);
		check_stories(back);
		gguf_close(back);
		unlink(path);
	}
	gguf_close(src);
}

static void test_writer_values(void **state)
{
	(void)state;
	struct gguf_writer *w = gguf_writer_new();
	struct ciel_err err = {0};
	char path[256];
	const char *strs[] = {"a", "", "ünïcode"};
	const float fv[] = {1.5f, -2.0f};
	const int32_t iv[] = {-7, 7, 0};
	float q[64];
	uint64_t ne[2] = {32, 2};

	for (int i = 0; i < 64; i++)
		q[i] = (float)i;
	assert_int_equal(gguf_w_u32(w, "k.u32", 4000000000u), 0);
	assert_int_equal(gguf_w_i32(w, "k.i32", -5), 0);
	assert_int_equal(gguf_w_u64(w, "k.u64", 1ull << 40), 0);
	assert_int_equal(gguf_w_f32(w, "k.f32", 0.25f), 0);
	assert_int_equal(gguf_w_bool(w, "k.bool", 1), 0);
	assert_int_equal(gguf_w_str(w, "k.str", "first"), 0);
	assert_int_equal(gguf_w_str(w, "k.str", "replaced"), 0); /* a key set twice is replaced */
	assert_int_equal(gguf_w_arr_str(w, "k.astr", strs, 3), 0);
	assert_int_equal(gguf_w_arr_f32(w, "k.af32", fv, 2), 0);
	assert_int_equal(gguf_w_arr_i32(w, "k.ai32", iv, 3), 0);
	assert_int_equal(gguf_w_alignment(w, 64), 0);
	assert_int_equal(gguf_w_tensor(w, "t", 0, 2, ne, q), 0);
	tmp_path(path, sizeof(path), "vals");
	if (gguf_writer_write(w, path, 3, &err) < 0)
		fail_msg("write: %s", err.msg);
	gguf_writer_free(w);

	struct gguf *g = NULL;
	uint32_t u;
	uint64_t u64;
	int b;
	float f;
	struct gguf_str s;
	if (gguf_open(&g, path, &err) < 0)
		fail_msg("open: %s", err.msg);
	assert_int_equal(gguf_n_kv(g), 10); /* k.str once */
	assert_int_equal(gguf_get_u32(g, "k.u32", &u, &err), 0);
	assert_int_equal(u, 4000000000u);
	assert_int_equal(gguf_get_u32(g, "k.i32", &u, &err), -1); /* negative does not fit */
	assert_int_equal(gguf_get_u32(g, "k.u64", &u, &err), -1); /* 2^40 does not fit */
	assert_int_equal(gguf_get_u64(g, "k.u64", &u64, &err), 0);
	assert_int_equal(u64, 1ull << 40);
	assert_int_equal(gguf_get_f32(g, "k.f32", &f, &err), 0);
	assert_true(f == 0.25f);
	assert_int_equal(gguf_get_bool(g, "k.bool", &b, &err), 0);
	assert_int_equal(b, 1);
	assert_int_equal(gguf_get_str(g, "k.str", &s, &err), 0);
	assert_string_equal(s.s, "replaced");
	int i = gguf_find(g, "k.astr");
	assert_int_equal(gguf_arr_len(g, i), 3);
	assert_int_equal(gguf_arr_str(g, i, 2, &s), 0);
	assert_string_equal(s.s, "ünïcode");
	assert_int_equal(gguf_arr_str(g, i, 1, &s), 0);
	assert_int_equal(s.len, 0);
	i = gguf_find(g, "k.ai32");
	assert_true(gguf_arr_num(g, i, 0) == -7.0);
	i = gguf_find(g, "k.af32");
	assert_true(gguf_arr_num(g, i, 1) == -2.0);
	assert_int_equal(gguf_alignment(g), 64);
	assert_int_equal(gguf_data_offset(g) % 64, 0);
	const struct gguf_tensor *t = gguf_find_tensor(g, "t");
	assert_non_null(t);
	assert_memory_equal(t->data, q, sizeof(q));
	gguf_close(g);
	unlink(path);
}

static void test_writer_errors(void **state)
{
	(void)state;
	struct ciel_err err = {0};
	char path[256];
	uint8_t buf[68] = {0};
	uint64_t ne_bad[2] = {33, 1}, ne_ok[2] = {32, 1};

	struct gguf_writer *w = gguf_writer_new();
	assert_int_equal(gguf_w_tensor(w, "q", 8, 2, ne_bad, buf),
			 -1); /* q8_0 needs whole blocks */
	tmp_path(path, sizeof(path), "err");
	assert_int_equal(gguf_writer_write(w, path, 3, &err), -1);
	assert_non_null(strstr(err.msg, "'q'"));
	assert_int_equal(access(path, F_OK), -1);
	gguf_writer_free(w);

	w = gguf_writer_new();
	assert_int_equal(gguf_w_tensor(w, "q", 8, 2, ne_ok, buf), 0);
	assert_int_equal(gguf_w_tensor(w, "q", 8, 2, ne_ok, buf), -1);
	assert_int_equal(gguf_w_tensor(w, "u", 99, 2, ne_ok, buf), -1);
	assert_int_equal(gguf_writer_write(w, path, 3, &err), -1);
	assert_non_null(strstr(err.msg, "twice"));
	gguf_writer_free(w);

	w = gguf_writer_new();
	assert_int_equal(gguf_writer_write(w, path, 4, &err), -1);
	assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf", 3, &err), -1);
	assert_int_equal(err.code, CIEL_EIO);
	gguf_writer_free(w);
}

/* Parse a copy of exactly n bytes (so ASan sees any read past them); 0 or -1. */
static int parse_copy(const void *p, size_t n, struct ciel_err *err)
{
	void *c = malloc(n ? n : 1);
	struct gguf *g = NULL;
	assert_non_null(c);
	memcpy(c, p, n);
	int r = gguf_parse(&g, c, n, err);
	if (r == 0) {
		/* walk it all, as a consumer would */
		for (size_t i = 0; i < gguf_n_tensors(g); i++) {
			const struct gguf_tensor *t = gguf_tensor(g, i);
			volatile uint8_t x = 0;
			if (t->nbytes)
				x ^= ((const uint8_t *)t->data)[t->nbytes - 1];
			(void)x;
		}
		gguf_close(g);
	} else {
		assert_null(g);
	}
	free(c);
	return r;
}

static void test_truncated(void **state)
{
	(void)state;
	struct gguf *g = open_model(V1_FILE);
	struct gguf *g3 = open_model(V3_FILE);
	const struct gguf *files[] = {g, g3};
	for (int f = 0; f < 2; f++) {
		const struct gguf *m = files[f];
		const uint8_t *base = gguf_tensor(m, 0)->data;
		base -= gguf_data_offset(m) + gguf_tensor(m, 0)->offset;
		size_t len = gguf_file_size(m);
		size_t hdr = (size_t)gguf_data_offset(m);
		struct ciel_err err = {0};
		/* every cut in the header region, then a sample of cuts in the data */
		for (size_t n = 0; n < len; n += n < hdr + 64 ? 1 : 997) {
			err.msg[0] = '\0';
			if (parse_copy(base, n, &err) == 0)
				fail_msg("v%u cut at %zu of %zu parsed", gguf_version(m), n, len);
			assert_int_equal(err.code, CIEL_EINVAL);
			assert_true(strlen(err.msg) > 10);
		}
		assert_int_equal(parse_copy(base, len, NULL), 0);
	}
	gguf_close(g);
	gguf_close(g3);
}

/* ---- hand-built files ---- */

struct fb {
	struct dbuf b;
	uint32_t ver;
};

static void fb_u32(struct fb *f, uint32_t v)
{
	dbuf_add(&f->b, &v, 4);
}

static void fb_u64(struct fb *f, uint64_t v)
{
	dbuf_add(&f->b, &v, 8);
}

static void fb_count(struct fb *f, uint64_t v)
{
	if (f->ver == 1)
		fb_u32(f, (uint32_t)v);
	else
		fb_u64(f, v);
}

static void fb_str(struct fb *f, const char *s)
{
	fb_count(f, strlen(s));
	dbuf_addstr(&f->b, s);
}

static void fb_begin(struct fb *f, uint32_t ver, uint64_t n_t, uint64_t n_kv)
{
	dbuf_init(&f->b, 1 << 20);
	f->ver = ver;
	dbuf_add(&f->b, "GGUF", 4);
	fb_u32(f, ver);
	fb_count(f, n_t);
	fb_count(f, n_kv);
}

static void fb_kv_u32(struct fb *f, const char *k, uint32_t v)
{
	fb_str(f, k);
	fb_u32(f, GGUF_U32);
	fb_u32(f, v);
}

static void fb_tensor(struct fb *f, const char *name, uint32_t nd, const uint64_t *ne,
		      uint32_t type, uint64_t off)
{
	fb_str(f, name);
	fb_u32(f, nd);
	for (uint32_t d = 0; d < nd; d++)
		fb_count(f, ne[d]);
	fb_u32(f, type);
	fb_u64(f, off);
}

/* Pad to 32 and append n bytes of data. */
static void fb_data(struct fb *f, size_t n)
{
	static const uint8_t z[4096];
	size_t pad = (32 - f->b.len % 32) % 32;
	dbuf_add(&f->b, z, pad);
	while (n) {
		size_t k = n > sizeof(z) ? sizeof(z) : n;
		dbuf_add(&f->b, z, k);
		n -= k;
	}
}

/* Expect the file to fail with a message holding want. */
static void expect_fail(struct fb *f, const char *want)
{
	struct ciel_err err = {0};
	assert_false(f->b.toobig || f->b.nomem);
	if (parse_copy(f->b.buf, f->b.len, &err) == 0)
		fail_msg("parsed, expected '%s'", want);
	assert_int_equal(err.code, CIEL_EINVAL);
	if (!strstr(err.msg, want))
		fail_msg("error '%s' does not hold '%s'", err.msg, want);
	dbuf_release(&f->b);
}

static void expect_ok(struct fb *f)
{
	struct ciel_err err = {0};
	if (parse_copy(f->b.buf, f->b.len, &err) < 0)
		fail_msg("expected to parse: %s", err.msg);
	dbuf_release(&f->b);
}

static void test_hostile(void **state)
{
	(void)state;
	struct fb f;
	uint64_t ne[4] = {32, 2, 1, 1};

	/* the well-formed base case, so the failures below are the changes */
	for (uint32_t v = 1; v <= 3; v++) {
		fb_begin(&f, v, 1, 1);
		fb_kv_u32(&f, "general.alignment", 32);
		fb_tensor(&f, "a", 2, ne, 0, 0);
		fb_data(&f, 32 * 2 * 4);
		expect_ok(&f);
	}

	fb_begin(&f, 3, 0, 0);
	f.b.buf[0] = 'X';
	expect_fail(&f, "magic");
	fb_begin(&f, 4, 0, 0);
	expect_fail(&f, "version 4");
	fb_begin(&f, 0, 0, 0);
	expect_fail(&f, "version 0");
	fb_begin(&f, 0x03000000, 0, 0);
	expect_fail(&f, "big-endian");

	/* absurd counts */
	fb_begin(&f, 3, 1ull << 40, 0);
	expect_fail(&f, "tensors");
	fb_begin(&f, 3, 0, 1ull << 62);
	expect_fail(&f, "metadata keys");
	fb_begin(&f, 3, 1000, 1000); /* under the limits but more than the file holds */
	expect_fail(&f, "cannot fit");
	fb_begin(&f, 1, 0, 0xffffffffu);
	expect_fail(&f, "metadata keys");

	/* a key whose length is absurd */
	fb_begin(&f, 3, 0, 1);
	fb_u64(&f, UINT64_MAX);
	fb_u32(&f, 0);
	fb_u32(&f, 0);
	expect_fail(&f, "bytes long");
	fb_begin(&f, 3, 0, 1);
	fb_u64(&f, 1000);
	dbuf_addstr(&f.b, "short");
	fb_u32(&f, 0);
	expect_fail(&f, "needs 1000 bytes");

	/* unknown value type, nested and huge arrays */
	fb_begin(&f, 3, 0, 1);
	fb_str(&f, "k");
	fb_u32(&f, 13);
	fb_u32(&f, 0);
	expect_fail(&f, "unknown value type 13");
	fb_begin(&f, 3, 0, 1);
	fb_str(&f, "k");
	fb_u32(&f, GGUF_ARRAY);
	fb_u32(&f, GGUF_ARRAY);
	fb_u64(&f, 0);
	expect_fail(&f, "arrays of arrays");
	fb_begin(&f, 3, 0, 1);
	fb_str(&f, "k");
	fb_u32(&f, GGUF_ARRAY);
	fb_u32(&f, GGUF_U32);
	fb_u64(&f, 1ull << 60);
	expect_fail(&f, "elements");
	fb_begin(&f, 3, 0, 1);
	fb_str(&f, "k");
	fb_u32(&f, GGUF_ARRAY);
	fb_u32(&f, GGUF_STRING);
	fb_u64(&f, 1u << 20); /* a million strings announced, none there */
	fb_u64(&f, 1);
	expect_fail(&f, "needs");

	/* duplicate key, bad alignment */
	fb_begin(&f, 3, 0, 2);
	fb_kv_u32(&f, "k", 1);
	fb_kv_u32(&f, "k", 2);
	expect_fail(&f, "appears twice");
	fb_begin(&f, 3, 0, 1);
	fb_kv_u32(&f, "general.alignment", 48);
	expect_fail(&f, "power of two");
	fb_begin(&f, 3, 0, 1);
	fb_kv_u32(&f, "general.alignment", 0);
	expect_fail(&f, "power of two");

	/* tensors: dims, type, shape, offsets */
	uint64_t ne5[5] = {32, 1, 1, 1, 1};
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 5, ne5, 0, 0);
	expect_fail(&f, "5 dimensions");
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 0, ne, 0, 0);
	expect_fail(&f, "0 dimensions");
	uint64_t big[4] = {1ull << 32, 1ull << 32, 1, 1};
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, big, 0, 0);
	expect_fail(&f, "overflows");
	uint64_t zero[4] = {32, 0, 1, 1};
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, zero, 0, 0);
	expect_fail(&f, "zero");
	uint64_t huge[4] = {1ull << 30, 1ull << 30, 1, 1}; /* 2^60 f32: 4 EiB */
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, huge, 0, 0);
	fb_data(&f, 64);
	expect_fail(&f, "past the end of the file");
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, ne, 99, 0);
	fb_data(&f, 256);
	expect_fail(&f, "unknown type 99");
	uint64_t odd[4] = {33, 2, 1, 1};
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, odd, 8, 0); /* q8_0 row of 33 */
	fb_data(&f, 256);
	expect_fail(&f, "whole number");
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, ne, 0, 4); /* misaligned */
	fb_data(&f, 512);
	expect_fail(&f, "not a multiple of the alignment");
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, ne, 0, 32); /* past the end by 32 */
	fb_data(&f, 256);
	expect_fail(&f, "past the end of the file");
	fb_begin(&f, 3, 1, 0);
	fb_tensor(&f, "a", 2, ne, 0, UINT64_MAX - 31); /* offset wraps */
	fb_data(&f, 256);
	expect_fail(&f, "past the end of the file");
	fb_begin(&f, 3, 2, 0);
	fb_tensor(&f, "a", 2, ne, 0, 0);
	fb_tensor(&f, "a", 2, ne, 0, 256);
	fb_data(&f, 512);
	expect_fail(&f, "appears twice");
	fb_begin(&f, 1, 1, 0);
	fb_tensor(&f, "a", 2, ne, 0, 0);
	fb_data(&f, 255); /* one byte short */
	expect_fail(&f, "past the end of the file");
}

static void test_types(void **state)
{
	(void)state;
	assert_string_equal(gguf_type_name(8), "q8_0");
	assert_string_equal(gguf_type_name(30), "bf16");
	assert_null(gguf_type_name(4)); /* q4_2 was removed from ggml */
	assert_int_equal(gguf_row_bytes(0, 10), 40);
	assert_int_equal(gguf_row_bytes(1, 10), 20);
	assert_int_equal(gguf_row_bytes(2, 64), 36);
	assert_int_equal(gguf_row_bytes(8, 64), 68);
	assert_int_equal(gguf_row_bytes(8, 65), 0);
	assert_int_equal(gguf_row_bytes(12, 256), 144);
	assert_int_equal(gguf_row_bytes(14, 512), 420);
	assert_int_equal(gguf_row_bytes(99, 32), 0);
	assert_int_equal(gguf_block_elems(10), 256);
	assert_string_equal(gguf_vtype_name(GGUF_STRING), "string");
	assert_string_equal(gguf_vtype_name(77), "?");
}

/* The parser's table and the kernels' agree on every type the kernels compute with. */
static void test_kern_agree(void **state)
{
	(void)state;
	int known = 0;
	for (uint32_t t = 0; t < 64; t++) {
		if (!kern_type_name(t))
			continue;
		known++;
		assert_non_null(gguf_type_name(t));
		assert_string_equal(kern_type_name(t), gguf_type_name(t));
		assert_int_equal(kern_block_elems(t), gguf_block_elems(t));
		for (uint64_t n = 1; n <= 4096; n = n * 2 + 1)
			assert_int_equal(kern_row_bytes(t, n), gguf_row_bytes(t, n));
		assert_int_equal(kern_row_bytes(t, 4096), gguf_row_bytes(t, 4096));
	}
	assert_true(known >= 5); /* f32, f16, bf16, q8_0, q4_0 at least */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stories_v1_v3), cmocka_unit_test(test_getters),
	    cmocka_unit_test(test_roundtrip),	  cmocka_unit_test(test_writer_values),
	    cmocka_unit_test(test_writer_errors), cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_hostile),	  cmocka_unit_test(test_types),
	    cmocka_unit_test(test_kern_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
