/*
 * utf8: the well-formedness rule shared by log cleaning, streamed model text
 * and OpenAI JSON strings — whole characters, cut ones (held back by a
 * stream) and ill-formed prefixes (each one U+FFFD) told apart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/utf8.h"

static int seq(const char *s)
{
	return utf8_seq((const unsigned char *)s, strlen(s));
}

static void test_whole(void **st)
{
	(void)st;
	assert_int_equal(seq("a"), 1);
	assert_int_equal(seq("\xC2\xA9x"), 2);	      /* © */
	assert_int_equal(seq("\xE2\x82\xAC"), 3);     /* € */
	assert_int_equal(seq("\xED\x9F\xBF"), 3);     /* U+D7FF, just below the surrogates */
	assert_int_equal(seq("\xF0\x9F\x98\x80"), 4); /* 😀 */
	assert_int_equal(seq("\xF4\x8F\xBF\xBF"), 4); /* U+10FFFF */
	assert_int_equal(utf8_seq((const unsigned char *)"", 1), 1); /* NUL is a character */
}

static void test_cut(void **st)
{
	(void)st;
	assert_int_equal(seq("\xC2"), 0);
	assert_int_equal(seq("\xE2\x82"), 0);
	assert_int_equal(seq("\xF0\x9F\x98"), 0);
	/* a cut start must still be a valid one: E0 80 is overlong, whatever follows */
	assert_int_equal(seq("\xE0\x80"), -1);
}

static void test_ill_formed(void **st)
{
	(void)st;
	assert_int_equal(seq("\x80"), -1);     /* lone continuation */
	assert_int_equal(seq("\xC0\xAF"), -1); /* overlong '/' */
	assert_int_equal(seq("\xC1\xBF"), -1);
	assert_int_equal(seq("\xE0\x9F\xBF"), -1);     /* overlong 3-byte */
	assert_int_equal(seq("\xED\xA0\x80"), -1);     /* surrogate U+D800 */
	assert_int_equal(seq("\xF0\x8F\xBF\xBF"), -1); /* overlong 4-byte */
	assert_int_equal(seq("\xF4\x90\x80\x80"), -1); /* above U+10FFFF */
	assert_int_equal(seq("\xF5\x80\x80\x80"), -1);
	assert_int_equal(seq("\xFF"), -1);
	/* the longest ill-formed prefix: a valid start and continuation, then 'A' */
	assert_int_equal(seq("\xE2\x82"
			     "A"),
			 -2);
	assert_int_equal(seq("\xF0\x9F\x98"
			     "A"),
			 -3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whole),
	    cmocka_unit_test(test_cut),
	    cmocka_unit_test(test_ill_formed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
