/*
 * dbuf: the hard maximum every untrusted body is collected under. The module
 * is included so realloc() can be made to fail on demand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static int fail_alloc;

static void *flaky_realloc(void *p, size_t n)
{
	return fail_alloc ? NULL : realloc(p, n);
}

#define realloc flaky_realloc
#include "util/dbuf.c"
#undef realloc

/* Content, length and terminator agree, and the allocation respects max. */
static void assert_content(const struct dbuf *b, const void *want, size_t n)
{
	assert_int_equal(b->len, n);
	assert_non_null(b->buf);
	assert_memory_equal(b->buf, want, n);
	assert_int_equal(b->buf[n], '\0');
	assert_true(b->len < b->cap);
	if (b->max < SIZE_MAX)
		assert_true(b->cap <= b->max + 1);
}

static void test_growth(void **st)
{
	char want[10000];
	struct dbuf b;

	(void)st;
	dbuf_init(&b, DBUF_NO_MAX);
	assert_null(b.buf);
	assert_string_equal(dbuf_str(&b), "");
	/* odd-sized chunks cross several doublings */
	for (size_t i = 0; i < sizeof(want); i += 7) {
		size_t n = sizeof(want) - i < 7 ? sizeof(want) - i : 7;

		for (size_t k = 0; k < n; k++)
			want[i + k] = (char)('a' + (i + k) % 26);
		assert_int_equal(dbuf_add(&b, want + i, n), 0);
		assert_content(&b, want, i + n);
	}
	assert_true(b.cap >= sizeof(want) + 1);
	/* binary-safe: an embedded NUL is content like any other byte */
	dbuf_reset(&b);
	assert_int_equal(dbuf_add(&b, "a\0b", 3), 0);
	assert_content(&b, "a\0b", 3);
	assert_int_equal(dbuf_addstr(&b, "cd"), 0);
	assert_content(&b, "a\0bcd", 5);
	dbuf_release(&b);
	assert_null(b.buf);
}

static void test_exact_max(void **st)
{
	struct dbuf b;

	(void)st;
	dbuf_init(&b, 10);
	assert_int_equal(dbuf_add(&b, "0123", 4), 0);
	assert_int_equal(dbuf_add(&b, "456789", 6), 0);
	assert_content(&b, "0123456789", 10);
	assert_false(b.toobig);
	/* full: a zero-length add still fits */
	assert_int_equal(dbuf_add(&b, "", 0), 0);
	assert_false(b.toobig);
	dbuf_release(&b);

	/* the whole max in one add, and max 0 */
	dbuf_init(&b, 5);
	assert_int_equal(dbuf_add(&b, "abcde", 5), 0);
	assert_content(&b, "abcde", 5);
	dbuf_release(&b);
	dbuf_init(&b, 0);
	assert_int_equal(dbuf_add(&b, NULL, 0), 0);
	assert_content(&b, "", 0);
	assert_int_equal(dbuf_add(&b, "x", 1), -1);
	assert_true(b.toobig);
	dbuf_release(&b);
}

static void test_max_plus_one_sticky(void **st)
{
	struct dbuf b;

	(void)st;
	dbuf_init(&b, 10);
	assert_int_equal(dbuf_add(&b, "0123456789X", 11), -1);
	assert_true(b.toobig);
	assert_false(b.nomem);
	assert_int_equal(b.len, 0);
	assert_null(b.buf); /* refused before anything was allocated */

	dbuf_reset(&b);
	assert_false(b.toobig);
	assert_int_equal(dbuf_add(&b, "012345678", 9), 0);
	assert_int_equal(dbuf_add(&b, "9X", 2), -1);
	assert_true(b.toobig);
	assert_content(&b, "012345678", 9);
	/* sticky: even what would fit, and a zero-length add, are refused */
	assert_int_equal(dbuf_add(&b, "9", 1), -1);
	assert_int_equal(dbuf_add(&b, "", 0), -1);
	assert_int_equal(dbuf_printf(&b, "%s", ""), -1);
	assert_content(&b, "012345678", 9);
	assert_true(b.toobig);

	/* reset clears the state and keeps the allocation */
	{
		char *before = b.buf;

		dbuf_reset(&b);
		assert_false(b.toobig);
		assert_ptr_equal(b.buf, before);
		assert_content(&b, "", 0);
		assert_int_equal(dbuf_add(&b, "0123456789", 10), 0);
		assert_ptr_equal(b.buf, before);
	}
	dbuf_release(&b);
}

static void test_printf(void **st)
{
	char want[8192];
	size_t n = 0;
	struct dbuf b;

	(void)st;
	dbuf_init(&b, DBUF_NO_MAX);
	/* several KiB, both through the room already there and through growth */
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(dbuf_printf(&b, "%04d,", i), 0);
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%04d,", i);
		assert_content(&b, want, n);
	}
	assert_int_equal(b.len, 5000);
	/* one line longer than everything allocated so far */
	{
		char big[6000];

		memset(big, 'z', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(dbuf_printf(&b, "[%s]", big), 0);
		assert_int_equal(b.len, 5000 + 2 + sizeof(big) - 1);
		assert_int_equal(b.buf[5000], '[');
		assert_int_equal(b.buf[b.len - 1], ']');
		assert_int_equal(b.buf[b.len], '\0');
	}
	dbuf_release(&b);

	/* an empty format on a new buffer still gives a string */
	dbuf_init(&b, 4);
	assert_int_equal(dbuf_printf(&b, "%s", ""), 0);
	assert_content(&b, "", 0);
	dbuf_release(&b);
}

static void test_printf_max(void **st)
{
	struct dbuf b;

	(void)st;
	dbuf_init(&b, 20);
	assert_int_equal(dbuf_addstr(&b, "abc"), 0);
	/* fits the allocation's spare room only partly: the terminator must survive */
	assert_int_equal(dbuf_printf(&b, "%030d", 7), -1);
	assert_true(b.toobig);
	assert_content(&b, "abc", 3);
	dbuf_reset(&b);
	assert_int_equal(dbuf_printf(&b, "%020d", 7), 0);
	assert_int_equal(b.len, 20);
	assert_string_equal(b.buf, "00000000000000000007");
	assert_int_equal(dbuf_printf(&b, "x"), -1);
	assert_true(b.toobig);
	assert_string_equal(b.buf, "00000000000000000007");
	dbuf_release(&b);
}

static void test_nomem(void **st)
{
	volatile size_t huge = SIZE_MAX - 3; /* hidden from the optimiser's bounds checks */
	struct dbuf b;

	(void)st;
	dbuf_init(&b, DBUF_NO_MAX);
	fail_alloc = 1;
	assert_int_equal(dbuf_add(&b, "a", 1), -1);
	assert_true(b.nomem);
	assert_false(b.toobig);
	assert_null(b.buf);
	fail_alloc = 0;
	assert_int_equal(dbuf_add(&b, "a", 1), -1); /* sticky */
	dbuf_reset(&b);
	assert_int_equal(dbuf_add(&b, "abc", 3), 0);

	/* growth fails: the content is untouched */
	{
		char big[1024] = {0};

		fail_alloc = 1;
		assert_int_equal(dbuf_add(&b, big, sizeof(big)), -1);
		assert_true(b.nomem);
		assert_content(&b, "abc", 3);
		assert_int_equal(dbuf_printf(&b, "%1000d", 1), -1);
		assert_content(&b, "abc", 3);
		fail_alloc = 0;
	}
	dbuf_reset(&b);
	assert_int_equal(dbuf_printf(&b, "%1000d", 1), 0);
	assert_int_equal(b.len, 1000);
	dbuf_release(&b);

	/* no room for the terminator past SIZE_MAX - 1: refused, nothing copied */
	dbuf_init(&b, DBUF_NO_MAX);
	assert_int_equal(dbuf_add(&b, "abc", 3), 0);
	assert_int_equal(dbuf_add(&b, "x", huge), -1);
	assert_true(b.nomem);
	assert_content(&b, "abc", 3);
	dbuf_release(&b);
}

static void test_detach_release(void **st)
{
	struct dbuf b;
	size_t len = 99;
	char *s;

	(void)st;
	dbuf_init(&b, 100);
	assert_int_equal(dbuf_printf(&b, "%s=%d", "n", 42), 0);
	s = dbuf_detach(&b, &len);
	assert_string_equal(s, "n=42");
	assert_int_equal(len, 4);
	free(s);
	/* left empty, same max, reusable */
	assert_null(b.buf);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	assert_int_equal(b.max, 100);
	{
		char over[101] = {0};

		assert_int_equal(dbuf_add(&b, over, sizeof(over)), -1);
		assert_true(b.toobig);
	}
	/* detach clears the state too, and a buffer never added to gives "" */
	s = dbuf_detach(&b, &len);
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);
	assert_false(b.toobig);
	s = dbuf_detach(&b, NULL);
	assert_string_equal(s, "");
	free(s);

	/* release frees (ASan would report a leak otherwise) and leaves it reusable */
	assert_int_equal(dbuf_add(&b, "abc", 3), 0);
	dbuf_release(&b);
	assert_null(b.buf);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 100);
	assert_int_equal(dbuf_add(&b, "def", 3), 0);
	assert_content(&b, "def", 3);
	dbuf_release(&b);
	dbuf_release(&b); /* twice is harmless */
}

static void test_zero_length(void **st)
{
	struct dbuf b;

	(void)st;
	dbuf_init(&b, 8);
	/* a zero-length add makes the buffer a real string, with nothing in it */
	assert_int_equal(dbuf_add(&b, NULL, 0), 0);
	assert_content(&b, "", 0);
	assert_int_equal(dbuf_add(&b, "ab", 2), 0);
	assert_int_equal(dbuf_add(&b, "zz", 0), 0);
	assert_int_equal(dbuf_addstr(&b, ""), 0);
	assert_content(&b, "ab", 2);
	assert_false(b.toobig);
	dbuf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_exact_max),
	    cmocka_unit_test(test_max_plus_one_sticky),
	    cmocka_unit_test(test_printf),
	    cmocka_unit_test(test_printf_max),
	    cmocka_unit_test(test_nomem),
	    cmocka_unit_test(test_detach_release),
	    cmocka_unit_test(test_zero_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
