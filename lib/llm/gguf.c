/*
 * gguf — the GGUF reader and writer (see gguf.h).
 *
 * The reader walks the header once with a cursor that refuses to step past
 * the end of the buffer; every count is bounded by what the remaining bytes
 * could hold before anything is allocated for it, so a hostile header can
 * neither read out of bounds nor make us allocate much more than the file's
 * own size. Strings are copied, NUL-terminated, into an arena owned by the
 * struct gguf; numeric arrays and tensor data stay in the buffer.
 */
#include "llm/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"

/* ggml's type numbering and block layouts. */
static const struct {
	uint32_t type;
	uint32_t blk;	/* elements per block */
	uint32_t bytes; /* bytes per block */
	const char *name;
} gtypes[] = {
    {0, 1, 4, "f32"},	    {1, 1, 2, "f16"},	    {2, 32, 18, "q4_0"},    {3, 32, 20, "q4_1"},
    {6, 32, 22, "q5_0"},    {7, 32, 24, "q5_1"},    {8, 32, 34, "q8_0"},    {9, 32, 36, "q8_1"},
    {10, 256, 84, "q2_k"},  {11, 256, 110, "q3_k"}, {12, 256, 144, "q4_k"}, {13, 256, 176, "q5_k"},
    {14, 256, 210, "q6_k"}, {15, 256, 292, "q8_k"}, {24, 1, 1, "i8"},	    {25, 1, 2, "i16"},
    {26, 1, 4, "i32"},	    {27, 1, 8, "i64"},	    {28, 1, 8, "f64"},	    {30, 1, 2, "bf16"},
};

static int gtype_idx(uint32_t type)
{
	for (size_t i = 0; i < sizeof(gtypes) / sizeof(gtypes[0]); i++)
		if (gtypes[i].type == type)
			return (int)i;
	return -1;
}

const char *gguf_type_name(uint32_t type)
{
	int i = gtype_idx(type);
	return i < 0 ? NULL : gtypes[i].name;
}

uint32_t gguf_block_elems(uint32_t type)
{
	int i = gtype_idx(type);
	return i < 0 ? 0 : gtypes[i].blk;
}

uint64_t gguf_row_bytes(uint32_t type, uint64_t n)
{
	int i = gtype_idx(type);
	if (i < 0 || n % gtypes[i].blk)
		return 0;
	uint64_t blocks = n / gtypes[i].blk;
	if (blocks > UINT64_MAX / gtypes[i].bytes)
		return 0;
	return blocks * gtypes[i].bytes;
}

static const uint8_t vsize[GGUF_VTYPE_MAX] = {
    [GGUF_U8] = 1,  [GGUF_I8] = 1,   [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4, [GGUF_I32] = 4,
    [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

const char *gguf_vtype_name(uint32_t t)
{
	static const char *const names[GGUF_VTYPE_MAX] = {
	    "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
	    "bool", "string", "array", "u64", "i64", "f64",
	};
	return t < GGUF_VTYPE_MAX ? names[t] : "?";
}

/* ---- reader ---- */

struct gguf_kv {
	const char *key;
	uint32_t type;
	uint32_t arr_type;     /* arrays */
	uint64_t n;	       /* arrays: element count */
	const uint8_t *data;   /* scalars and numeric arrays: the value in the buffer */
	struct gguf_str str;   /* GGUF_STRING */
	struct gguf_str *strs; /* arrays of strings (arena) */
};

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
};

struct gguf {
	const uint8_t *buf;
	size_t len;
	void *map; /* gguf_open: the mapping to unmap */
	uint32_t version;
	uint32_t alignment;
	uint64_t data_off;
	struct gguf_kv *kv;
	size_t n_kv;
	struct gguf_tensor *t;
	size_t n_t;
	uint32_t *kv_hash, *t_hash; /* open addressing: index + 1, 0 = empty */
	size_t kv_hcap, t_hcap;
	struct arena_chunk *arena;
};

static void *arena_alloc(struct gguf *g, size_t n)
{
	struct arena_chunk *c = g->arena;
	n = (n + 7) & ~(size_t)7;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > (64u << 10) ? n : (64u << 10);
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = g->arena;
		c->used = 0;
		c->cap = cap;
		g->arena = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static size_t hash_cap(size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap <<= 1;
	return cap;
}

struct cur {
	const uint8_t *b;
	size_t len, pos;
	uint32_t ver;
	struct ciel_err *err;
};

static int need(struct cur *c, uint64_t n, const char *what)
{
	if (n > c->len - c->pos)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: %s at byte %zu needs %llu bytes, the file has %zu left",
				    what, c->pos, (unsigned long long)n, c->len - c->pos);
	return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what)
{
	if (need(c, 4, what) < 0)
		return -1;
	memcpy(v, c->b + c->pos, 4);
	c->pos += 4;
	return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what)
{
	if (need(c, 8, what) < 0)
		return -1;
	memcpy(v, c->b + c->pos, 8);
	c->pos += 8;
	return 0;
}

/* Counts and lengths: 32-bit in version 1, 64-bit after. */
static int rd_count(struct cur *c, uint64_t *v, const char *what)
{
	if (c->ver == 1) {
		uint32_t x;
		if (rd_u32(c, &x, what) < 0)
			return -1;
		*v = x;
		return 0;
	}
	return rd_u64(c, v, what);
}

static int rd_str(struct gguf *g, struct cur *c, struct gguf_str *out, const char *what)
{
	uint64_t n;
	size_t at = c->pos;
	if (rd_count(c, &n, what) < 0)
		return -1;
	if (n > GGUF_MAX_STRING)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: %s at byte %zu is %llu bytes long (at most %u)", what,
				    at, (unsigned long long)n, GGUF_MAX_STRING);
	if (need(c, n, what) < 0)
		return -1;
	char *s = arena_alloc(g, (size_t)n + 1);
	if (!s)
		return ciel_err_set(c->err, CIEL_ENOMEM, "gguf: out of memory");
	memcpy(s, c->b + c->pos, (size_t)n);
	s[n] = '\0';
	c->pos += (size_t)n;
	out->s = s;
	out->len = n;
	return 0;
}

/* Find a name in one of the two tables; insert (if not there) when idx >= 0. */
static long hfind(uint32_t *tab, size_t cap, const char *name,
		  const char *(*nm)(const struct gguf *, size_t), const struct gguf *g, long idx)
{
	size_t m = cap - 1, h = (size_t)hash_str(name) & m;
	for (;; h = (h + 1) & m) {
		if (!tab[h]) {
			if (idx >= 0)
				tab[h] = (uint32_t)idx + 1;
			return -1;
		}
		if (!strcmp(nm(g, tab[h] - 1), name))
			return (long)tab[h] - 1;
	}
}

static const char *kv_name(const struct gguf *g, size_t i)
{
	return g->kv[i].key;
}

static const char *t_name(const struct gguf *g, size_t i)
{
	return g->t[i].name;
}

static int parse_kv(struct gguf *g, struct cur *c, struct gguf_kv *kv)
{
	struct gguf_str key;
	uint32_t type;
	if (rd_str(g, c, &key, "metadata key") < 0)
		return -1;
	kv->key = key.s;
	if (strlen(key.s) != key.len)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: metadata key before byte %zu holds a NUL byte", c->pos);
	if (rd_u32(c, &type, key.s) < 0)
		return -1;
	kv->type = type;
	if (type >= GGUF_VTYPE_MAX)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: metadata '%s' has unknown value type %u", key.s, type);
	if (type == GGUF_STRING)
		return rd_str(g, c, &kv->str, key.s);
	if (type != GGUF_ARRAY) {
		if (need(c, vsize[type], key.s) < 0)
			return -1;
		kv->data = c->b + c->pos;
		c->pos += vsize[type];
		return 0;
	}
	uint32_t at;
	uint64_t n;
	if (rd_u32(c, &at, key.s) < 0 || rd_count(c, &n, key.s) < 0)
		return -1;
	kv->arr_type = at;
	kv->n = n;
	if (at >= GGUF_VTYPE_MAX || at == GGUF_ARRAY)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: metadata '%s': arrays of %s are not supported", key.s,
				    at == GGUF_ARRAY ? "arrays" : "an unknown type");
	if (n > GGUF_MAX_ARRAY)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: metadata '%s' has %llu elements (at most %u)", key.s,
				    (unsigned long long)n, GGUF_MAX_ARRAY);
	if (at != GGUF_STRING) {
		if (need(c, n * vsize[at], key.s) < 0)
			return -1;
		kv->data = c->b + c->pos;
		c->pos += (size_t)(n * vsize[at]);
		return 0;
	}
	/* each string takes at least its length field: bound n before allocating */
	if (need(c, n * (c->ver == 1 ? 4 : 8), key.s) < 0)
		return -1;
	kv->strs = arena_alloc(g, (size_t)(n ? n : 1) * sizeof(*kv->strs));
	if (!kv->strs)
		return ciel_err_set(c->err, CIEL_ENOMEM, "gguf: out of memory");
	for (uint64_t i = 0; i < n; i++)
		if (rd_str(g, c, &kv->strs[i], key.s) < 0)
			return -1;
	return 0;
}

static int parse_tensor(struct gguf *g, struct cur *c, struct gguf_tensor *t)
{
	struct gguf_str name;
	uint32_t nd;
	if (rd_str(g, c, &name, "tensor name") < 0)
		return -1;
	t->name = name.s;
	if (strlen(name.s) != name.len)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: tensor name before byte %zu holds a NUL byte", c->pos);
	if (rd_u32(c, &nd, name.s) < 0)
		return -1;
	if (nd < 1 || nd > GGUF_MAX_DIMS)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: tensor '%s' has %u dimensions (1 to %d)", name.s, nd,
				    GGUF_MAX_DIMS);
	t->n_dims = nd;
	uint64_t nel = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		uint64_t v = 1;
		if (d < nd && rd_count(c, &v, name.s) < 0)
			return -1;
		if (v == 0 || v > (uint64_t)INT64_MAX / nel)
			return ciel_err_set(c->err, CIEL_EINVAL,
					    "gguf: tensor '%s' dimension %u is %llu (%s)", name.s,
					    d, (unsigned long long)v,
					    v == 0 ? "zero" : "the element count overflows");
		t->ne[d] = v;
		nel *= v;
	}
	if (rd_u32(c, &t->type, name.s) < 0 || rd_u64(c, &t->offset, name.s) < 0)
		return -1;
	int ti = gtype_idx(t->type);
	if (ti < 0)
		return ciel_err_set(c->err, CIEL_EINVAL, "gguf: tensor '%s' has unknown type %u",
				    name.s, t->type);
	uint64_t rb = gguf_row_bytes(t->type, t->ne[0]);
	if (!rb)
		return ciel_err_set(c->err, CIEL_EINVAL,
				    "gguf: tensor '%s': row of %llu elements is not a whole number "
				    "of %s blocks (%u)",
				    name.s, (unsigned long long)t->ne[0], gtypes[ti].name,
				    gtypes[ti].blk);
	uint64_t rows = nel / t->ne[0];
	if (rows > UINT64_MAX / rb)
		return ciel_err_set(c->err, CIEL_EINVAL, "gguf: tensor '%s' is too large", name.s);
	t->nbytes = rb * rows;
	return 0;
}

/* Placement of every tensor's data, once the data section's start is known. */
static int place_tensors(struct gguf *g, struct ciel_err *err)
{
	for (size_t i = 0; i < g->n_t; i++) {
		struct gguf_tensor *t = &g->t[i];
		if (t->offset % g->alignment)
			return ciel_err_set(err, CIEL_EINVAL,
					    "gguf: tensor '%s': data offset %llu is not a multiple "
					    "of the alignment %u",
					    t->name, (unsigned long long)t->offset, g->alignment);
		uint64_t room = g->data_off <= g->len ? g->len - g->data_off : 0;
		if (t->offset > room || t->nbytes > room - t->offset) {
			unsigned long long end = g->data_off + t->offset + t->nbytes;
			if (t->offset > UINT64_MAX - g->data_off ||
			    g->data_off + t->offset > UINT64_MAX - t->nbytes)
				end = UINT64_MAX;
			return ciel_err_set(err, CIEL_EINVAL,
					    "gguf: tensor '%s': data ends at byte %llu past the "
					    "end of the file (%zu bytes)",
					    t->name, end, g->len);
		}
		t->data = g->buf + g->data_off + t->offset;
	}
	return 0;
}

static int parse(struct gguf *g, struct ciel_err *err)
{
	struct cur c = {.b = g->buf, .len = g->len, .err = err};
	uint32_t ver;
	uint64_t n_t, n_kv;

	if (g->len < 4 || memcmp(g->buf, GGUF_MAGIC, 4))
		return ciel_err_set(err, CIEL_EINVAL, "gguf: not a GGUF file (bad magic)");
	c.pos = 4;
	if (rd_u32(&c, &ver, "version") < 0)
		return -1;
	if (ver < 1 || ver > 3)
		return ciel_err_set(err, CIEL_EINVAL,
				    "gguf: version %u is not supported (1 to 3)%s", ver,
				    (ver & 0xffff) == 0 ? " (a big-endian file?)" : "");
	g->version = c.ver = ver;
	if (rd_count(&c, &n_t, "tensor count") < 0 || rd_count(&c, &n_kv, "metadata count") < 0)
		return -1;
	if (n_t > GGUF_MAX_TENSORS)
		return ciel_err_set(err, CIEL_EINVAL, "gguf: %llu tensors (at most %u)",
				    (unsigned long long)n_t, GGUF_MAX_TENSORS);
	if (n_kv > GGUF_MAX_KV)
		return ciel_err_set(err, CIEL_EINVAL, "gguf: %llu metadata keys (at most %u)",
				    (unsigned long long)n_kv, GGUF_MAX_KV);
	/* every entry takes at least a few bytes: refuse counts the file cannot hold */
	if (n_t * 24 + n_kv * 9 > c.len - c.pos)
		return ciel_err_set(
		    err, CIEL_EINVAL,
		    "gguf: %llu tensors and %llu metadata keys cannot fit in %zu bytes",
		    (unsigned long long)n_t, (unsigned long long)n_kv, c.len);

	g->kv = calloc(n_kv ? n_kv : 1, sizeof(*g->kv));
	g->t = calloc(n_t ? n_t : 1, sizeof(*g->t));
	g->kv_hcap = hash_cap(n_kv);
	g->t_hcap = hash_cap(n_t);
	g->kv_hash = calloc(g->kv_hcap, sizeof(uint32_t));
	g->t_hash = calloc(g->t_hcap, sizeof(uint32_t));
	if (!g->kv || !g->t || !g->kv_hash || !g->t_hash)
		return ciel_err_set(err, CIEL_ENOMEM, "gguf: out of memory");

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	for (uint64_t i = 0; i < n_kv; i++) {
		struct gguf_kv *kv = &g->kv[i];
		if (parse_kv(g, &c, kv) < 0)
			return -1;
		if (hfind(g->kv_hash, g->kv_hcap, kv->key, kv_name, g, (long)i) >= 0)
			return ciel_err_set(err, CIEL_EINVAL,
					    "gguf: metadata key '%s' appears twice", kv->key);
		g->n_kv = i + 1;
		if (!strcmp(kv->key, "general.alignment")) {
			uint32_t a;
			if (kv->type != GGUF_U32)
				return ciel_err_set(err, CIEL_EINVAL,
						    "gguf: general.alignment is %s, not u32",
						    gguf_vtype_name(kv->type));
			memcpy(&a, kv->data, 4);
			if (a == 0 || (a & (a - 1)) || a > (1u << 30))
				return ciel_err_set(
				    err, CIEL_EINVAL,
				    "gguf: general.alignment %u is not a power of two up to 2^30",
				    a);
			g->alignment = a;
		}
	}
	for (uint64_t i = 0; i < n_t; i++) {
		struct gguf_tensor *t = &g->t[i];
		if (parse_tensor(g, &c, t) < 0)
			return -1;
		if (hfind(g->t_hash, g->t_hcap, t->name, t_name, g, (long)i) >= 0)
			return ciel_err_set(err, CIEL_EINVAL, "gguf: tensor '%s' appears twice",
					    t->name);
		g->n_t = i + 1;
	}
	g->data_off = ((uint64_t)c.pos + g->alignment - 1) / g->alignment * g->alignment;
	return place_tensors(g, err);
}

static int gguf_new(struct gguf **out, const void *buf, size_t len, void *map, struct ciel_err *err)
{
	struct gguf *g = calloc(1, sizeof(*g));
	*out = NULL;
	if (!g)
		return ciel_err_set(err, CIEL_ENOMEM, "gguf: out of memory");
	g->buf = buf;
	g->len = len;
	g->map = map;
	if (parse(g, err) < 0) {
		g->map = NULL; /* the caller unmaps on failure */
		gguf_close(g);
		return -1;
	}
	*out = g;
	return 0;
}

int gguf_parse(struct gguf **out, const void *buf, size_t len, struct ciel_err *err)
{
	return gguf_new(out, buf, len, NULL, err);
}

int gguf_open(struct gguf **out, const char *path, struct ciel_err *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	*out = NULL;
	if (fd < 0)
		return ciel_err_sys(err, errno == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, errno,
				    "open %s", path);
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return ciel_err_sys(err, CIEL_EIO, e, "stat %s", path);
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 8) {
		close(fd);
		return ciel_err_set(err, CIEL_EINVAL, "gguf: %s is %s", path,
				    S_ISREG(st.st_mode) ? "too short to be a GGUF file"
							: "not a regular file");
	}
	size_t len = (size_t)st.st_size;
	void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	int e = errno;
	close(fd);
	if (map == MAP_FAILED)
		return ciel_err_sys(err, CIEL_EIO, e, "mmap %s", path);
	if (gguf_new(out, map, len, map, err) < 0) {
		munmap(map, len);
		ciel_err_prefix(err, "%s: ", path);
		return -1;
	}
	return 0;
}

void gguf_close(struct gguf *g)
{
	if (!g)
		return;
	while (g->arena) {
		struct arena_chunk *n = g->arena->next;
		free(g->arena);
		g->arena = n;
	}
	free(g->kv);
	free(g->t);
	free(g->kv_hash);
	free(g->t_hash);
	if (g->map)
		munmap(g->map, g->len);
	free(g);
}

uint32_t gguf_version(const struct gguf *g)
{
	return g->version;
}

size_t gguf_file_size(const struct gguf *g)
{
	return g->len;
}

uint32_t gguf_alignment(const struct gguf *g)
{
	return g->alignment;
}

uint64_t gguf_data_offset(const struct gguf *g)
{
	return g->data_off;
}

int gguf_find(const struct gguf *g, const char *key)
{
	return (int)hfind(g->kv_hash, g->kv_hcap, key, kv_name, g, -1);
}

size_t gguf_n_kv(const struct gguf *g)
{
	return g->n_kv;
}

static const struct gguf_kv *kv_at(const struct gguf *g, int i)
{
	return i >= 0 && (size_t)i < g->n_kv ? &g->kv[i] : NULL;
}

const char *gguf_kv_key(const struct gguf *g, int i)
{
	const struct gguf_kv *kv = kv_at(g, i);
	return kv ? kv->key : NULL;
}

enum gguf_vtype gguf_kv_type(const struct gguf *g, int i)
{
	const struct gguf_kv *kv = kv_at(g, i);
	return kv ? (enum gguf_vtype)kv->type : GGUF_VTYPE_MAX;
}

enum gguf_vtype gguf_arr_type(const struct gguf *g, int i)
{
	const struct gguf_kv *kv = kv_at(g, i);
	return kv && kv->type == GGUF_ARRAY ? (enum gguf_vtype)kv->arr_type : GGUF_VTYPE_MAX;
}

uint64_t gguf_arr_len(const struct gguf *g, int i)
{
	const struct gguf_kv *kv = kv_at(g, i);
	return kv && kv->type == GGUF_ARRAY ? kv->n : 0;
}

static int is_int(uint32_t t)
{
	return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
	       t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

/* An integer value at p of type t: *neg set for negative ones, magnitude in *mag. */
static void int_val(uint32_t t, const uint8_t *p, int *neg, uint64_t *mag)
{
	int64_t s = 0;
	uint64_t u = 0;
	*neg = 0;
	switch (t) {
	case GGUF_U8:
		u = p[0];
		break;
	case GGUF_I8:
		s = (int8_t)p[0];
		goto sgn;
	case GGUF_U16: {
		uint16_t v;
		memcpy(&v, p, 2);
		u = v;
		break;
	}
	case GGUF_I16: {
		int16_t v;
		memcpy(&v, p, 2);
		s = v;
		goto sgn;
	}
	case GGUF_U32: {
		uint32_t v;
		memcpy(&v, p, 4);
		u = v;
		break;
	}
	case GGUF_I32: {
		int32_t v;
		memcpy(&v, p, 4);
		s = v;
		goto sgn;
	}
	case GGUF_U64:
		memcpy(&u, p, 8);
		break;
	case GGUF_I64:
		memcpy(&s, p, 8);
		goto sgn;
	default:
		break;
	}
	*mag = u;
	return;
sgn:
	if (s < 0) {
		*neg = 1;
		*mag = (uint64_t)0 - (uint64_t)s;
	} else {
		*mag = (uint64_t)s;
	}
}

static double num_val(uint32_t t, const uint8_t *p)
{
	if (is_int(t)) {
		int neg;
		uint64_t mag;
		int_val(t, p, &neg, &mag);
		return neg ? -(double)mag : (double)mag;
	}
	if (t == GGUF_F32) {
		float f;
		memcpy(&f, p, 4);
		return f;
	}
	if (t == GGUF_F64) {
		double d;
		memcpy(&d, p, 8);
		return d;
	}
	if (t == GGUF_BOOL)
		return p[0] ? 1.0 : 0.0;
	return NAN;
}

static const struct gguf_kv *get_kv(const struct gguf *g, const char *key, struct ciel_err *err)
{
	int i = gguf_find(g, key);
	if (i < 0) {
		ciel_err_set(err, CIEL_ENOTFOUND, "gguf: no metadata key '%s'", key);
		return NULL;
	}
	return &g->kv[i];
}

static int get_uint(const struct gguf *g, const char *key, uint64_t max, uint64_t *out,
		    struct ciel_err *err)
{
	const struct gguf_kv *kv = get_kv(g, key, err);
	int neg;
	uint64_t mag;
	if (!kv)
		return -1;
	if (!is_int(kv->type))
		return ciel_err_set(err, CIEL_EINVAL, "gguf: metadata '%s' is %s, not an integer",
				    key, gguf_vtype_name(kv->type));
	int_val(kv->type, kv->data, &neg, &mag);
	if (neg || mag > max)
		return ciel_err_set(err, CIEL_EINVAL, "gguf: metadata '%s' is %s%llu, out of range",
				    key, neg ? "-" : "", (unsigned long long)mag);
	*out = mag;
	return 0;
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct ciel_err *err)
{
	uint64_t v;
	if (get_uint(g, key, UINT32_MAX, &v, err) < 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out, struct ciel_err *err)
{
	return get_uint(g, key, UINT64_MAX, out, err);
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct ciel_err *err)
{
	const struct gguf_kv *kv = get_kv(g, key, err);
	if (!kv)
		return -1;
	if (kv->type != GGUF_F32 && kv->type != GGUF_F64)
		return ciel_err_set(err, CIEL_EINVAL, "gguf: metadata '%s' is %s, not a float", key,
				    gguf_vtype_name(kv->type));
	*out = (float)num_val(kv->type, kv->data);
	return 0;
}

int gguf_get_bool(const struct gguf *g, const char *key, int *out, struct ciel_err *err)
{
	const struct gguf_kv *kv = get_kv(g, key, err);
	if (!kv)
		return -1;
	if (kv->type != GGUF_BOOL)
		return ciel_err_set(err, CIEL_EINVAL, "gguf: metadata '%s' is %s, not a bool", key,
				    gguf_vtype_name(kv->type));
	*out = kv->data[0] != 0;
	return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out, struct ciel_err *err)
{
	const struct gguf_kv *kv = get_kv(g, key, err);
	if (!kv)
		return -1;
	if (kv->type != GGUF_STRING)
		return ciel_err_set(err, CIEL_EINVAL, "gguf: metadata '%s' is %s, not a string",
				    key, gguf_vtype_name(kv->type));
	*out = kv->str;
	return 0;
}

int gguf_arr_str(const struct gguf *g, int i, uint64_t idx, struct gguf_str *out)
{
	const struct gguf_kv *kv = kv_at(g, i);
	if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || idx >= kv->n)
		return -1;
	*out = kv->strs[idx];
	return 0;
}

double gguf_arr_num(const struct gguf *g, int i, uint64_t idx)
{
	const struct gguf_kv *kv = kv_at(g, i);
	if (!kv || kv->type != GGUF_ARRAY || kv->arr_type == GGUF_STRING || idx >= kv->n)
		return 0;
	return num_val(kv->arr_type, kv->data + idx * vsize[kv->arr_type]);
}

int gguf_kv_int(const struct gguf *g, int i, int64_t *out)
{
	const struct gguf_kv *kv = kv_at(g, i);
	int neg;
	uint64_t mag;
	if (!kv || !is_int(kv->type))
		return -1;
	int_val(kv->type, kv->data, &neg, &mag);
	if (!neg && mag > (uint64_t)INT64_MAX)
		return -1;
	*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return 0;
}

double gguf_kv_num(const struct gguf *g, int i)
{
	const struct gguf_kv *kv = kv_at(g, i);
	if (!kv || kv->type == GGUF_STRING || kv->type == GGUF_ARRAY)
		return NAN;
	return num_val(kv->type, kv->data);
}

int gguf_kv_str(const struct gguf *g, int i, struct gguf_str *out)
{
	const struct gguf_kv *kv = kv_at(g, i);
	if (!kv || kv->type != GGUF_STRING)
		return -1;
	*out = kv->str;
	return 0;
}

size_t gguf_n_tensors(const struct gguf *g)
{
	return g->n_t;
}

const struct gguf_tensor *gguf_tensor(const struct gguf *g, size_t i)
{
	return i < g->n_t ? &g->t[i] : NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
	long i = hfind(g->t_hash, g->t_hcap, name, t_name, g, -1);
	return i < 0 ? NULL : &g->t[i];
}

/* ---- writer ---- */

struct wkv {
	char *key;
	uint32_t type, arr_type;
	uint64_t n;   /* array elements */
	uint8_t *raw; /* scalar or numeric array bytes */
	char **strs;  /* string / string array */
	uint64_t *lens;
};

struct wtensor {
	char *name;
	uint32_t type, n_dims;
	uint64_t ne[GGUF_MAX_DIMS];
	uint64_t row_bytes, rows, nbytes, offset;
	void *data;
	void (*fill)(void *arg, uint64_t row, void *buf);
	void *arg;
};

struct gguf_writer {
	struct wkv *kv;
	size_t n_kv, cap_kv;
	struct wtensor *t;
	size_t n_t, cap_t;
	uint32_t alignment;
	char failed[256]; /* first error of an add, reported by gguf_writer_write */
};

static int wfail(struct gguf_writer *w, const char *fmt, const char *a)
{
	if (!w->failed[0])
		snprintf(w->failed, sizeof(w->failed), fmt, a);
	return -1;
}

struct gguf_writer *gguf_writer_new(void)
{
	struct gguf_writer *w = calloc(1, sizeof(*w));
	if (w)
		w->alignment = GGUF_DEFAULT_ALIGNMENT;
	return w;
}

static void wkv_release(struct wkv *kv)
{
	uint64_t n = kv->type == GGUF_STRING ? 1 : kv->n;
	if (kv->strs)
		for (uint64_t i = 0; i < n; i++)
			free(kv->strs[i]);
	free(kv->strs);
	free(kv->lens);
	free(kv->raw);
	free(kv->key);
}

void gguf_writer_free(struct gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_kv; i++)
		wkv_release(&w->kv[i]);
	for (size_t i = 0; i < w->n_t; i++) {
		free(w->t[i].name);
		free(w->t[i].data);
	}
	free(w->kv);
	free(w->t);
	free(w);
}

int gguf_w_alignment(struct gguf_writer *w, uint32_t alignment)
{
	if (!alignment || (alignment & (alignment - 1)) || alignment > (1u << 30))
		return wfail(w, "gguf writer: alignment %s", "is not a power of two");
	w->alignment = alignment;
	return gguf_w_u32(w, "general.alignment", alignment);
}

/* A new (or the replaced) entry for key, emptied. */
static struct wkv *wkv_slot(struct gguf_writer *w, const char *key)
{
	for (size_t i = 0; i < w->n_kv; i++)
		if (!strcmp(w->kv[i].key, key)) {
			char *k = w->kv[i].key;
			w->kv[i].key = NULL;
			wkv_release(&w->kv[i]);
			memset(&w->kv[i], 0, sizeof(w->kv[i]));
			w->kv[i].key = k;
			return &w->kv[i];
		}
	if (w->n_kv == w->cap_kv) {
		size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
		struct wkv *n = realloc(w->kv, cap * sizeof(*n));
		if (!n)
			return NULL;
		w->kv = n;
		w->cap_kv = cap;
	}
	struct wkv *kv = &w->kv[w->n_kv];
	memset(kv, 0, sizeof(*kv));
	kv->key = strdup(key);
	if (!kv->key)
		return NULL;
	w->n_kv++;
	return kv;
}

/*
 * A slot that could not be filled: the failure is sticky (gguf_writer_write
 * refuses), and what the slot holds is still freed by gguf_writer_free.
 */
static int wkv_nomem(struct gguf_writer *w, struct wkv *kv)
{
	(void)kv;
	return wfail(w, "gguf writer: %s", "out of memory");
}

static int w_scalar(struct gguf_writer *w, const char *key, uint32_t type, const void *v)
{
	struct wkv *kv = wkv_slot(w, key);
	if (!kv)
		return wfail(w, "gguf writer: %s", "out of memory");
	kv->type = type;
	kv->raw = malloc(vsize[type]);
	if (!kv->raw)
		return wkv_nomem(w, kv);
	memcpy(kv->raw, v, vsize[type]);
	return 0;
}

int gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	return w_scalar(w, key, GGUF_U32, &v);
}

int gguf_w_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	return w_scalar(w, key, GGUF_U64, &v);
}

int gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	return w_scalar(w, key, GGUF_I32, &v);
}

int gguf_w_f32(struct gguf_writer *w, const char *key, float v)
{
	return w_scalar(w, key, GGUF_F32, &v);
}

int gguf_w_bool(struct gguf_writer *w, const char *key, int v)
{
	uint8_t b = v != 0;
	return w_scalar(w, key, GGUF_BOOL, &b);
}

/* Strings with explicit lengths (they may hold NULs). */
static int w_strs(struct gguf_writer *w, const char *key, int array, const char *const *v,
		  const uint64_t *lens, size_t n)
{
	struct wkv *kv = wkv_slot(w, key);
	if (!kv)
		return wfail(w, "gguf writer: %s", "out of memory");
	kv->type = array ? GGUF_ARRAY : GGUF_STRING;
	kv->arr_type = GGUF_STRING;
	kv->n = n;
	kv->strs = calloc(n ? n : 1, sizeof(char *));
	kv->lens = calloc(n ? n : 1, sizeof(uint64_t));
	if (!kv->strs || !kv->lens)
		return wkv_nomem(w, kv);
	for (size_t i = 0; i < n; i++) {
		uint64_t l = lens ? lens[i] : strlen(v[i]);
		kv->strs[i] = malloc((size_t)l + 1);
		if (!kv->strs[i])
			return wkv_nomem(w, kv);
		memcpy(kv->strs[i], v[i], (size_t)l);
		kv->strs[i][l] = '\0';
		kv->lens[i] = l;
	}
	return 0;
}

int gguf_w_str(struct gguf_writer *w, const char *key, const char *v)
{
	return w_strs(w, key, 0, &v, NULL, 1);
}

int gguf_w_arr_str(struct gguf_writer *w, const char *key, const char *const *v, size_t n)
{
	return w_strs(w, key, 1, v, NULL, n);
}

static int w_arr(struct gguf_writer *w, const char *key, uint32_t at, const void *v, size_t n)
{
	struct wkv *kv = wkv_slot(w, key);
	if (!kv)
		return wfail(w, "gguf writer: %s", "out of memory");
	kv->type = GGUF_ARRAY;
	kv->arr_type = at;
	kv->n = n;
	kv->raw = malloc(n ? n * vsize[at] : 1);
	if (!kv->raw)
		return wkv_nomem(w, kv);
	if (n)
		memcpy(kv->raw, v, n * vsize[at]);
	return 0;
}

int gguf_w_arr_f32(struct gguf_writer *w, const char *key, const float *v, size_t n)
{
	return w_arr(w, key, GGUF_F32, v, n);
}

int gguf_w_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
	return w_arr(w, key, GGUF_I32, v, n);
}

int gguf_w_copy_kv(struct gguf_writer *w, const struct gguf *g, const char *prefix)
{
	size_t pl = strlen(prefix);
	for (size_t i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		int r;
		if (strncmp(kv->key, prefix, pl))
			continue;
		if (kv->type == GGUF_STRING) {
			r = w_strs(w, kv->key, 0, &kv->str.s, &kv->str.len, 1);
		} else if (kv->type != GGUF_ARRAY) {
			r = w_scalar(w, kv->key, kv->type, kv->data);
		} else if (kv->arr_type != GGUF_STRING) {
			r = w_arr(w, kv->key, kv->arr_type, kv->data, (size_t)kv->n);
		} else {
			const char **v = malloc((kv->n ? kv->n : 1) * sizeof(char *));
			uint64_t *l = malloc((kv->n ? kv->n : 1) * sizeof(uint64_t));
			r = -1;
			if (v && l) {
				for (uint64_t j = 0; j < kv->n; j++) {
					v[j] = kv->strs[j].s;
					l[j] = kv->strs[j].len;
				}
				r = w_strs(w, kv->key, 1, v, l, (size_t)kv->n);
			} else {
				wfail(w, "gguf writer: %s", "out of memory");
			}
			free(v);
			free(l);
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

static struct wtensor *wt_new(struct gguf_writer *w, const char *name, uint32_t type,
			      uint32_t n_dims, const uint64_t *ne)
{
	if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
		wfail(w, "gguf writer: tensor '%s': 1 to 4 dimensions", name);
		return NULL;
	}
	for (size_t i = 0; i < w->n_t; i++)
		if (!strcmp(w->t[i].name, name)) {
			wfail(w, "gguf writer: tensor '%s' added twice", name);
			return NULL;
		}
	uint64_t rows = 1;
	for (uint32_t d = 1; d < n_dims; d++) {
		if (!ne[d] || rows > UINT64_MAX / ne[d]) {
			wfail(w, "gguf writer: tensor '%s': bad dimensions", name);
			return NULL;
		}
		rows *= ne[d];
	}
	uint64_t rb = ne[0] ? gguf_row_bytes(type, ne[0]) : 0;
	if (!rb || rows > UINT64_MAX / rb) {
		wfail(w, "gguf writer: tensor '%s': unknown type or a row that is not whole blocks",
		      name);
		return NULL;
	}
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? 2 * w->cap_t : 64;
		struct wtensor *n = realloc(w->t, cap * sizeof(*n));
		if (!n) {
			wfail(w, "gguf writer: %s", "out of memory");
			return NULL;
		}
		w->t = n;
		w->cap_t = cap;
	}
	struct wtensor *t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name) {
		wfail(w, "gguf writer: %s", "out of memory");
		return NULL;
	}
	t->type = type;
	t->n_dims = n_dims;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->row_bytes = rb;
	t->rows = rows;
	t->nbytes = rb * rows;
	return t;
}

int gguf_w_tensor(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
		  const uint64_t *ne, const void *data)
{
	struct wtensor *t = wt_new(w, name, type, n_dims, ne);
	if (!t)
		return -1;
	if (t->nbytes > SIZE_MAX || !(t->data = malloc(t->nbytes ? (size_t)t->nbytes : 1))) {
		free(t->name);
		return wfail(w, "gguf writer: tensor '%s': out of memory", name);
	}
	memcpy(t->data, data, (size_t)t->nbytes);
	w->n_t++;
	return 0;
}

int gguf_w_tensor_cb(struct gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
		     const uint64_t *ne, void (*fill)(void *arg, uint64_t row, void *buf),
		     void *arg)
{
	struct wtensor *t = wt_new(w, name, type, n_dims, ne);
	if (!t)
		return -1;
	t->fill = fill;
	t->arg = arg;
	w->n_t++;
	return 0;
}

static void put_count(struct dbuf *b, uint32_t ver, uint64_t v)
{
	if (ver == 1) {
		uint32_t x = (uint32_t)v;
		dbuf_add(b, &x, 4);
	} else {
		dbuf_add(b, &v, 8);
	}
}

static void put_str(struct dbuf *b, uint32_t ver, const char *s, uint64_t len)
{
	put_count(b, ver, len);
	dbuf_add(b, s, (size_t)len);
}

static int write_all(FILE *f, const void *p, size_t n)
{
	return fwrite(p, 1, n, f) == n ? 0 : -1;
}

/* The header: magic, counts, metadata, tensor infos (offsets assigned here). */
static int build_header(struct gguf_writer *w, uint32_t ver, struct dbuf *b, struct ciel_err *err)
{
	uint32_t v32 = ver;
	uint64_t off = 0;
	if (ver == 1 && (w->n_kv > UINT32_MAX || w->n_t > UINT32_MAX))
		return ciel_err_set(err, CIEL_EINVAL,
				    "gguf writer: too many entries for version 1");
	dbuf_add(b, GGUF_MAGIC, 4);
	dbuf_add(b, &v32, 4);
	put_count(b, ver, w->n_t);
	put_count(b, ver, w->n_kv);
	for (size_t i = 0; i < w->n_kv; i++) {
		const struct wkv *kv = &w->kv[i];
		put_str(b, ver, kv->key, strlen(kv->key));
		dbuf_add(b, &kv->type, 4);
		if (kv->type == GGUF_STRING) {
			put_str(b, ver, kv->strs[0], kv->lens[0]);
			continue;
		}
		if (kv->type != GGUF_ARRAY) {
			dbuf_add(b, kv->raw, vsize[kv->type]);
			continue;
		}
		if (ver == 1 && kv->n > UINT32_MAX)
			return ciel_err_set(err, CIEL_EINVAL,
					    "gguf writer: '%s' too long for version 1", kv->key);
		dbuf_add(b, &kv->arr_type, 4);
		put_count(b, ver, kv->n);
		if (kv->arr_type == GGUF_STRING)
			for (uint64_t j = 0; j < kv->n; j++)
				put_str(b, ver, kv->strs[j], kv->lens[j]);
		else
			dbuf_add(b, kv->raw, (size_t)(kv->n * vsize[kv->arr_type]));
	}
	for (size_t i = 0; i < w->n_t; i++) {
		struct wtensor *t = &w->t[i];
		put_str(b, ver, t->name, strlen(t->name));
		dbuf_add(b, &t->n_dims, 4);
		for (uint32_t d = 0; d < t->n_dims; d++) {
			if (ver == 1 && t->ne[d] > UINT32_MAX)
				return ciel_err_set(err, CIEL_EINVAL,
						    "gguf writer: '%s' too large for version 1",
						    t->name);
			put_count(b, ver, t->ne[d]);
		}
		dbuf_add(b, &t->type, 4);
		t->offset = off;
		dbuf_add(b, &off, 8);
		off += (t->nbytes + w->alignment - 1) / w->alignment * w->alignment;
	}
	if (b->toobig || b->nomem)
		return ciel_err_set(err, CIEL_ENOMEM, "gguf writer: out of memory");
	return 0;
}

static int pad(FILE *f, uint64_t pos, uint32_t alignment)
{
	static const uint8_t zero[4096];
	uint64_t n = (alignment - pos % alignment) % alignment;
	while (n) {
		size_t k = n > sizeof(zero) ? sizeof(zero) : (size_t)n;
		if (write_all(f, zero, k) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

static int write_tensors(struct gguf_writer *w, FILE *f, uint64_t pos)
{
	uint8_t *row = NULL;
	size_t row_cap = 0;
	int r = -1;
	for (size_t i = 0; i < w->n_t; i++) {
		struct wtensor *t = &w->t[i];
		if (pad(f, pos, w->alignment) < 0)
			goto out;
		pos = (pos + w->alignment - 1) / w->alignment * w->alignment;
		if (t->data) {
			if (write_all(f, t->data, (size_t)t->nbytes) < 0)
				goto out;
		} else {
			if (row_cap < t->row_bytes) {
				free(row);
				row = malloc((size_t)t->row_bytes);
				if (!row)
					goto out;
				row_cap = (size_t)t->row_bytes;
			}
			for (uint64_t j = 0; j < t->rows; j++) {
				t->fill(t->arg, j, row);
				if (write_all(f, row, (size_t)t->row_bytes) < 0)
					goto out;
			}
		}
		pos += t->nbytes;
	}
	r = 0;
out:
	free(row);
	return r;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, uint32_t version,
		      struct ciel_err *err)
{
	struct dbuf hdr;
	char tmp[4096];
	FILE *f = NULL;
	int r = -1;

	if (w->failed[0])
		return ciel_err_set(err, CIEL_EINVAL, "%s", w->failed);
	if (version < 1 || version > 3)
		return ciel_err_set(err, CIEL_EINVAL, "gguf writer: version %u (1 to 3)", version);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return ciel_err_set(err, CIEL_EINVAL, "gguf writer: path too long");
	dbuf_init(&hdr, DBUF_NO_MAX);
	if (build_header(w, version, &hdr, err) < 0)
		goto out;
	f = fopen(tmp, "wbe");
	if (!f) {
		ciel_err_sys(err, CIEL_EIO, errno, "create %s", tmp);
		goto out;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	if (write_all(f, hdr.buf, hdr.len) < 0 || write_tensors(w, f, hdr.len) < 0 ||
	    fflush(f) != 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "write %s", tmp);
		goto out_unlink;
	}
	if (fclose(f) != 0) {
		f = NULL;
		ciel_err_sys(err, CIEL_EIO, errno, "close %s", tmp);
		goto out_unlink;
	}
	f = NULL;
	if (rename(tmp, path) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "rename %s", path);
		goto out_unlink;
	}
	r = 0;
	goto out;
out_unlink:
	if (f)
		fclose(f);
	f = NULL;
	unlink(tmp);
out:
	dbuf_release(&hdr);
	return r;
}
