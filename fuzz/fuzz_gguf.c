/*
 * libFuzzer: gguf_parse on the input, then walk every key, array element and
 * tensor as the model loader and `ciel-llm info` do, reading the last byte of
 * each tensor's data (ASan catches a placement past the buffer).
 */
#include <stddef.h>
#include <stdint.h>

#include "llm/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf *g = NULL;
	struct ciel_err err;
	volatile double sink = 0;

	if (gguf_parse(&g, data, size, &err) < 0)
		return 0;
	for (size_t i = 0; i < gguf_n_kv(g); i++) {
		const char *key = gguf_kv_key(g, (int)i);
		struct gguf_str s;
		int64_t iv;
		uint32_t u;
		float f;
		if (gguf_find(g, key) != (int)i)
			__builtin_trap();
		(void)gguf_get_u32(g, key, &u, &err);
		(void)gguf_get_f32(g, key, &f, &err);
		if (gguf_kv_int(g, (int)i, &iv) == 0)
			sink += (double)iv;
		if (gguf_kv_str(g, (int)i, &s) == 0 && s.len)
			sink += s.s[s.len - 1];
		sink += gguf_kv_num(g, (int)i);
		uint64_t n = gguf_arr_len(g, (int)i);
		for (uint64_t k = 0; k < n && k < 4096; k++) {
			if (gguf_arr_str(g, (int)i, k, &s) == 0)
				sink += s.s[s.len];
			else
				sink += gguf_arr_num(g, (int)i, k);
		}
	}
	for (size_t i = 0; i < gguf_n_tensors(g); i++) {
		const struct gguf_tensor *t = gguf_tensor(g, i);
		if (gguf_find_tensor(g, t->name) != t)
			__builtin_trap();
		if (t->nbytes)
			sink += ((const uint8_t *)t->data)[t->nbytes - 1];
	}
	gguf_close(g);
	(void)sink;
	return 0;
}
