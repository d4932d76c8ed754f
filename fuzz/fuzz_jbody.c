/* libFuzzer: every API body goes through jbody_parse; try the tables the handlers use. */
#include <stddef.h>
#include <stdint.h>

#include "util/jbody.h"

static const struct jbody_field cap[] = {
    {.name = "cpu_millis", .type = JB_INT, .min = 0, .max = 1LL << 32},
    {.name = "memory_bytes", .type = JB_SIZE, .min = 0, .max = 1LL << 52},
    {0},
};
static const struct jbody_field join[] = {
    {.name = "token", .type = JB_STRING, .required = 1, .max_len = 128},
    {.name = "name", .type = JB_STRING, .required = 1, .max_len = 63},
    {.name = "capacity", .type = JB_OBJECT, .fields = cap},
    {0},
};
static const struct jbody_field quota[] = {
    {.name = "instances", .type = JB_INT, .min = 0, .max = 100000},
    {.name = "memory_bytes", .type = JB_SIZE, .min = 0, .max = 1LL << 50},
    {.name = "flag", .type = JB_BOOL},
    {0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct jbody_field *tables[] = {join, quota};
	struct ciel_err err;

	for (size_t i = 0; i < 2; i++) {
		json_t *o = NULL;

		if (jbody_parse((const char *)data, size, tables[i], &o, &err) == 0)
			json_decref(o);
	}
	if (size < 64) {
		char s[64];
		int64_t b;

		memcpy(s, data, size);
		s[size] = '\0';
		(void)jbody_parse_size(s, &b);
	}
	return 0;
}
