/*
 * kern — the numeric kernels of the LLM engine: weight formats, quantised
 * matrix products, and the thread pool they run on.
 *
 * Weight types use ggml's numbering and block layouts so GGUF tensors are
 * used in place: F32, F16, BF16, Q8_0 (blocks of 32: f16 scale + 32 int8),
 * Q4_0 (blocks of 32: f16 scale + 16 bytes of nibbles, value = (q - 8) * d),
 * Q4_K (super-blocks of 256, optional).
 *
 * kern_matmul computes Y = X · Wᵀ: W is rows × k (row-major, as GGUF stores a
 * [k, rows] tensor), X is nb × k floats, Y is nb × rows floats. For the
 * quantised types X is quantised on the fly to Q8_0-style blocks (one f32
 * scale per 32) and the products are integer dot products; one pass over W
 * serves all nb rows of X (batched decode: the weights are the traffic).
 * Rows of W are split between the pool's threads.
 *
 * Paths: AVX-512 (F+BW+VNNI where present), AVX2+FMA, portable C; chosen once
 * at run time from the CPU (CIEL_LLM_KERNEL=portable|avx2|avx512 forces one,
 * for tests). All paths give results within float rounding of each other.
 */
#ifndef CIEL_KERN_H
#define CIEL_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

enum kern_type {
	KERN_F32 = 0,
	KERN_F16 = 1,
	KERN_Q4_0 = 2,
	KERN_Q8_0 = 8,
	KERN_Q4_K = 12,
	KERN_BF16 = 30,
};

/* "f32", "q8_0"...; NULL for a type we do not know. */
const char *kern_type_name(uint32_t type);
/* Type by name, -1 if unknown. */
int kern_type_parse(const char *name);
/* Is the type supported for weights? */
int kern_type_ok(uint32_t type);
/* Elements per block (1 for float types), 0 if unknown. */
uint32_t kern_block_elems(uint32_t type);
/* Bytes of a row of n elements; 0 if unknown type or n not a multiple of the block. */
uint64_t kern_row_bytes(uint32_t type, uint64_t n);

/* Convert one row to/from f32 (quantise is for tools and tests: RNE scales like ggml). */
void kern_dequant_row(uint32_t type, const void *src, float *dst, uint64_t n);
void kern_quant_row(uint32_t type, const float *src, void *dst, uint64_t n);
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f);

/* Which path runs: "avx512", "avx2", "portable". */
const char *kern_path(void);
/*
 * Force a path by name ("avx512", "avx512bw": AVX-512 without VNNI, "avx2",
 * "portable"); -1 if unknown or this CPU lacks it. For tests and benches:
 * not to be called while a matmul runs.
 */
int kern_set_path(const char *name);
/* The compiled-in path names, best first, NULL-terminated (static storage). */
const char *const *kern_paths(void);

/* A persistent pool of threads; the caller's thread is one of them. */
struct kern_pool;
struct kern_pool *kern_pool_new(int threads, struct ciel_err *err);
void kern_pool_free(struct kern_pool *p);
int kern_pool_threads(const struct kern_pool *p);
/*
 * Run fn(arg, i, n) for each i in [0, n), n = the pool's threads, in parallel;
 * returns when all ended. Each i runs exactly once and on one thread, but
 * threads claim indexes as they come (the caller first), so a worker the
 * kernel has not scheduled yet does not stall the job. One caller at a time.
 */
void kern_pool_run(struct kern_pool *p, void (*fn)(void *arg, int i, int n), void *arg);

/*
 * Y[nb][rows] = X[nb][k] · W[rows][k]ᵀ. k must be a multiple of the type's
 * block. Scratch for quantised activations is the pool's own, so a pool
 * serves one caller at a time. p may be NULL (single thread).
 */
void kern_matmul(struct kern_pool *p, uint32_t wtype, const void *w, uint64_t rows, uint64_t k,
		 const float *x, int nb, float *y);

/* Row `row` of an embedding table of type (rows of k) into dst as f32. */
void kern_get_row(uint32_t type, const void *table, uint64_t k, uint64_t row, float *dst);

/* Small vector helpers the model uses (AVX paths where it pays). */
void kern_rmsnorm(float *out, const float *x, const float *w, uint64_t n, float eps);
void kern_softmax(float *x, uint64_t n);
void kern_swiglu(float *out, const float *gate, const float *up, uint64_t n); /* silu(g)*u */
float kern_dot_f32(const float *a, const float *b, uint64_t n);
void kern_axpy_f32(float *y, float a, const float *x, uint64_t n); /* y += a*x */

#endif
