/* jbody: strict body parsing, the first line of defence for every API body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/jbody.h"

static const struct jbody_field cap[] = {
    {.name = "cpu_millis", .type = JB_INT, .min = 0, .max = 1000000},
    {.name = "memory_bytes", .type = JB_SIZE},
    {0},
};
static const struct jbody_field fields[] = {
    {.name = "name", .type = JB_STRING, .required = 1, .max_len = 8},
    {.name = "enabled", .type = JB_BOOL},
    {.name = "capacity", .type = JB_OBJECT, .fields = cap},
    {.name = "command", .type = JB_STRINGS, .max_len = 4, .max = 2},
    {0},
};

static int parse(const char *s, struct ciel_err *err)
{
	json_t *o = NULL;
	int r = jbody_parse(s, strlen(s), fields, &o, err);

	json_decref(o);
	return r;
}

static void test_ok(void **st)
{
	struct ciel_err err = {0};
	const char *s = "{\"name\":\"acme\",\"capacity\":{\"memory_bytes\":\"64M\"}}";
	json_t *o;

	(void)st;
	assert_int_equal(jbody_parse(s, strlen(s), fields, &o, &err), 0);
	assert_string_equal(jbody_str(o, "name", ""), "acme");
	/* the size string is normalised to bytes for callers */
	assert_int_equal(jbody_int(json_object_get(o, "capacity"), "memory_bytes", 0), 64 << 20);
	json_decref(o);
}

static void test_string_arrays(void **st)
{
	struct ciel_err err = {0};

	(void)st;
	assert_int_equal(parse("{\"name\":\"a\",\"command\":[\"sh\",\"-c\"]}", &err), 0);
	assert_int_equal(parse("{\"name\":\"a\",\"command\":\"sh\"}", &err), -1);
	assert_string_equal(err.field, "command");
	assert_non_null(strstr(err.msg, "array of strings"));
	assert_int_equal(parse("{\"name\":\"a\",\"command\":[\"sh\",1]}", &err), -1);
	assert_string_equal(err.field, "command");
	assert_int_equal(parse("{\"name\":\"a\",\"command\":[\"a\",\"b\",\"c\"]}", &err), -1);
	assert_non_null(strstr(err.msg, "more than 2 items"));
	assert_int_equal(parse("{\"name\":\"a\",\"command\":[\"toolong\"]}", &err), -1);
	assert_non_null(strstr(err.msg, "longer than 4"));
}

static void test_errors_name_the_field(void **st)
{
	struct ciel_err err = {0};

	(void)st;
	assert_int_equal(parse("{\"name\":", &err), -1);
	assert_string_equal(err.field, "body");
	assert_non_null(strstr(err.msg, "invalid JSON"));
	assert_int_equal(parse("[1]", &err), -1);
	assert_string_equal(err.field, "body");
	assert_int_equal(parse("{\"name\":\"a\",\"nmae\":1}", &err), -1);
	assert_string_equal(err.field, "nmae");
	assert_int_equal(parse("{}", &err), -1);
	assert_string_equal(err.field, "name");
	assert_non_null(strstr(err.msg, "required"));
	assert_int_equal(parse("{\"name\":5}", &err), -1);
	assert_string_equal(err.field, "name");
	assert_int_equal(parse("{\"name\":\"123456789\"}", &err), -1);
	assert_string_equal(err.field, "name");
	assert_int_equal(parse("{\"name\":\"a\",\"capacity\":{\"cpu_millis\":-1}}", &err), -1);
	assert_string_equal(err.field, "capacity.cpu_millis");
	assert_int_equal(parse("{\"name\":\"a\",\"capacity\":{\"memory_bytes\":\"64Q\"}}", &err),
			 -1);
	assert_string_equal(err.field, "capacity.memory_bytes");
	assert_int_equal(parse("{\"name\":\"a\",\"capacity\":{\"x\":1}}", &err), -1);
	assert_string_equal(err.field, "capacity.x");
	assert_int_equal(parse("{\"name\":\"a\",\"name\":\"b\"}", &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(parse("{\"name\":\"a\\u0000b\"}", &err), -1);
}

static void test_sizes(void **st)
{
	int64_t b;

	(void)st;
	assert_int_equal(jbody_parse_size("512", &b), 0);
	assert_int_equal(b, 512);
	assert_int_equal(jbody_parse_size("16G", &b), 0);
	assert_int_equal(b, 16LL << 30);
	assert_int_equal(jbody_parse_size("2MiB", &b), 0);
	assert_int_equal(b, 2 << 20);
	assert_int_equal(jbody_parse_size("-1", &b), -1);
	assert_int_equal(jbody_parse_size("1.5G", &b), -1);
	assert_int_equal(jbody_parse_size("99999999999T", &b), -1);
	assert_int_equal(jbody_parse_size("", &b), -1);
}

static void test_too_big(void **st)
{
	struct ciel_err err = {0};
	json_t *o;

	(void)st;
	assert_int_equal(jbody_parse("{}", JBODY_MAX_BYTES + 1, fields, &o, &err), -1);
	assert_int_equal(err.code, CIEL_ETOOBIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ok),
	    cmocka_unit_test(test_errors_name_the_field),
	    cmocka_unit_test(test_string_arrays),
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_too_big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
