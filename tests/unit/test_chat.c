/*
 * test_chat — template recognition from real template texts, the exact
 * renderings of each family (the Llama-3 one as its Jinja template renders
 * it; t0092 checks that against a Jinja engine too), and refused
 * conversations: unknown roles, broken Mistral alternation, empty lists,
 * prompts past the buffer's maximum.
 */
#include "llm/chat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* Llama-3's template as its tokenizer_config.json ships it. */
static const char LLAMA3_TMPL[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
static const char CHATML_TMPL[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";
static const char MISTRAL_TMPL[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
    "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
    "message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";

static void test_detect(void **st)
{
	enum chat_kind k = CHAT_LLAMA3;
	struct ciel_err err = {0};

	(void)st;
	assert_int_equal(chat_detect(NULL, &k, &err), 0);
	assert_int_equal(k, CHAT_NONE);
	assert_int_equal(chat_detect("", &k, &err), 0);
	assert_int_equal(k, CHAT_NONE);
	assert_int_equal(chat_detect(LLAMA3_TMPL, &k, &err), 0);
	assert_int_equal(k, CHAT_LLAMA3);
	assert_string_equal(chat_kind_name(k), "llama3");
	assert_int_equal(chat_detect(CHATML_TMPL, &k, &err), 0);
	assert_int_equal(k, CHAT_CHATML);
	assert_string_equal(chat_kind_name(k), "chatml");
	assert_int_equal(chat_detect(MISTRAL_TMPL, &k, &err), 0);
	assert_int_equal(k, CHAT_MISTRAL);
	assert_string_equal(chat_kind_name(k), "mistral");
	assert_int_equal(chat_detect("{{ messages[0].content }}<start_of_turn>", &k, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_non_null(strstr(err.msg, "chatml, llama3, mistral"));
	assert_true(chat_writes_bos(CHAT_LLAMA3));
	assert_true(chat_writes_bos(CHAT_MISTRAL));
	assert_false(chat_writes_bos(CHAT_CHATML));
	assert_false(chat_writes_bos(CHAT_NONE));
}

static void expect_render(enum chat_kind k, const struct chat_msg *m, size_t n, const char *bos,
			  const char *want)
{
	struct dbuf b;
	struct ciel_err err = {0};

	dbuf_init(&b, 1 << 20);
	if (chat_render(k, m, n, bos, &b, &err) < 0) {
		print_message("render: %s\n", err.msg);
		fail();
	}
	assert_string_equal(dbuf_str(&b), want);
	dbuf_release(&b);
}

static void expect_refused(enum chat_kind k, const struct chat_msg *m, size_t n, const char *needle)
{
	struct dbuf b;
	struct ciel_err err = {0};

	dbuf_init(&b, 1 << 20);
	assert_int_equal(chat_render(k, m, n, "<s>", &b, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_string_equal(err.field, "messages");
	if (!strstr(err.msg, needle)) {
		print_message("'%s' lacks '%s'\n", err.msg, needle);
		fail();
	}
	dbuf_release(&b);
}

static void test_llama3(void **st)
{
	const struct chat_msg m[] = {{"system", " You are terse. "},
				     {"user", "\n\thi\n"},
				     {"assistant", "Hello."},
				     {"user", "again"}};

	(void)st;
	expect_render(CHAT_LLAMA3, m, 4, "<|begin_of_text|>",
		      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are "
		      "terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|"
		      "start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_"
		      "header_id|>user<|end_header_id|>\n\nagain<|eot_id|><|start_header_id|>"
		      "assistant<|end_header_id|>\n\n");
	/* trim covers Unicode white space (NBSP, ideographic space) but not other text */
	const struct chat_msg u[] = {{"user", "\xc2\xa0\xe3\x80\x80x\xc3\xa9\xe3\x80\x80"}};

	expect_render(CHAT_LLAMA3, u, 1, NULL,
		      "<|start_header_id|>user<|end_header_id|>\n\nx\xc3\xa9<|eot_id|><|start_"
		      "header_id|>assistant<|end_header_id|>\n\n");
	const struct chat_msg e[] = {{"user", "   "}};

	expect_render(CHAT_LLAMA3, e, 1, NULL,
		      "<|start_header_id|>user<|end_header_id|>\n\n<|eot_id|><|start_header_id|>"
		      "assistant<|end_header_id|>\n\n");
}

static void test_chatml(void **st)
{
	const struct chat_msg m[] = {{"system", "Be kind."}, {"user", " hi "}};

	(void)st;
	expect_render(CHAT_CHATML, m, 2, NULL,
		      "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\n hi "
		      "<|im_end|>\n<|im_start|>assistant\n");
}

static void test_mistral(void **st)
{
	const struct chat_msg m[] = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
	const struct chat_msg s[] = {{"system", "Be brief."}, {"user", "Hi"}};
	const struct chat_msg bad1[] = {{"user", "a"}, {"user", "b"}};
	const struct chat_msg bad2[] = {{"assistant", "a"}};
	const struct chat_msg bad3[] = {{"user", "a"}, {"assistant", "b"}};
	const struct chat_msg bad4[] = {{"user", "a"}, {"system", "b"}};

	(void)st;
	expect_render(CHAT_MISTRAL, m, 3, "<s>",
		      "<s>[INST] Hi [/INST]Hello!</s>[INST] Bye [/INST]");
	expect_render(CHAT_MISTRAL, s, 2, "<s>", "<s>[INST] Be brief.\n\nHi [/INST]");
	expect_refused(CHAT_MISTRAL, bad1, 2, "messages[1]");
	expect_refused(CHAT_MISTRAL, bad2, 1, "'assistant' where 'user'");
	expect_refused(CHAT_MISTRAL, bad3, 2, "last message");
	expect_refused(CHAT_MISTRAL, bad4, 2, "'system'");
}

static void test_none_and_refusals(void **st)
{
	const struct chat_msg m[] = {{"system", "Once"}, {"user", "upon a time"}};
	const struct chat_msg tool[] = {{"user", "x"}, {"tool", "y"}};
	const struct chat_msg norole[] = {{NULL, "x"}};
	const struct chat_msg nocontent[] = {{"user", NULL}};
	struct dbuf b;
	struct ciel_err err = {0};

	(void)st;
	expect_render(CHAT_NONE, m, 2, NULL, "Once\nupon a time");
	expect_refused(CHAT_CHATML, tool, 2, "'tool'");
	expect_refused(CHAT_LLAMA3, norole, 1, "role");
	expect_refused(CHAT_LLAMA3, nocontent, 1, "content");
	expect_refused(CHAT_CHATML, m, 0, "empty");
	/* a prompt past the buffer's maximum is an error, not a short prompt */
	dbuf_init(&b, 16);
	assert_int_equal(chat_render(CHAT_CHATML, m, 2, NULL, &b, &err), -1);
	assert_int_equal(err.code, CIEL_ETOOBIG);
	dbuf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_detect),
	    cmocka_unit_test(test_llama3),
	    cmocka_unit_test(test_chatml),
	    cmocka_unit_test(test_mistral),
	    cmocka_unit_test(test_none_and_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
