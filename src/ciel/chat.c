/*
 * chat — `ciel chat NAME ["prompt"]`: one chat completion from a model
 * endpoint through the region's OpenAI-compatible API, signed with the
 * CLI's own access key (no API key needed). The answer streams to the
 * terminal as the model writes it: the request asks for server-sent events
 * and each chunk's text is printed as it arrives. With --output json the
 * whole answer object is printed once done instead.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define PROMPT_MAX (1u << 20)	/* the API's body limit */
#define SSE_LINE_MAX (1u << 20) /* one event's data line */

/* What the event stream has told so far. */
struct sse {
	char *line;
	size_t n;
	bool overflow;
	bool done;    /* data: [DONE] came */
	bool printed; /* some text went out */
	char last;    /* the last character printed */
	char finish[32];
	char error[512]; /* an error event's message */
	json_t *usage;
};

static void sse_event(struct sse *s, const char *data)
{
	const json_t *choice, *content, *e;
	json_t *j;

	if (strcmp(data, "[DONE]") == 0) {
		s->done = true;
		return;
	}
	j = json_loads(data, 0, NULL);
	if (!j)
		return; /* not ours to judge: the stream's end tells */
	e = json_object_get(j, "error");
	if (json_is_object(e)) {
		snprintf(s->error, sizeof(s->error), "%s",
			 json_string_value(json_object_get(e, "message"))
			     ? json_string_value(json_object_get(e, "message"))
			     : "the model failed");
		json_decref(j);
		return;
	}
	if (json_is_object(json_object_get(j, "usage"))) {
		json_decref(s->usage);
		s->usage = json_incref(json_object_get(j, "usage"));
	}
	choice = json_array_get(json_object_get(j, "choices"), 0);
	content = json_object_get(json_object_get(choice, "delta"), "content");
	if (json_is_string(content) && json_string_length(content) > 0) {
		const char *t = json_string_value(content);
		size_t len = json_string_length(content);

		fwrite(t, 1, len, stdout);
		fflush(stdout);
		s->printed = true;
		s->last = t[len - 1];
	}
	if (json_is_string(json_object_get(choice, "finish_reason")))
		snprintf(s->finish, sizeof(s->finish), "%s",
			 json_string_value(json_object_get(choice, "finish_reason")));
	json_decref(j);
}

static void sse_line(struct sse *s)
{
	char *l = s->line;

	if (s->n && l[s->n - 1] == '\r')
		s->n--;
	l[s->n] = '\0';
	if (strncmp(l, "data:", 5) == 0)
		sse_event(s, l[5] == ' ' ? l + 6 : l + 5);
	/* comments (":"), "event:", "id:" and blank separators carry nothing we show */
	s->n = 0;
}

/* The stdio cookie curl writes the body through: lines out as they complete. */
static ssize_t sse_write(void *cookie, const char *buf, size_t n)
{
	struct sse *s = cookie;

	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			if (!s->overflow)
				sse_line(s);
			s->overflow = false;
			s->n = 0;
			continue;
		}
		if (s->n + 1 >= SSE_LINE_MAX) {
			s->overflow = true; /* a line this long is dropped, not half-read */
			continue;
		}
		s->line[s->n++] = buf[i];
	}
	return (ssize_t)n;
}

/* All of standard input, at most PROMPT_MAX bytes; NULL after printing why. */
static char *read_stdin(void)
{
	size_t n = 0, cap = 4096;
	char *buf = malloc(cap + 1);

	if (isatty(0))
		fprintf(stderr, "(type the prompt; end it with Ctrl-D)\n");
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, stdin);

		n += got;
		if (n > PROMPT_MAX) {
			cli_fail("payload_too_large", "the prompt is over %u bytes", PROMPT_MAX);
			free(buf);
			return NULL;
		}
		if (got == 0)
			break;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	if (!buf) {
		cli_fail("out_of_memory", "out of memory");
		return NULL;
	}
	if (ferror(stdin)) {
		cli_fail("io_error", "standard input: %s", strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

static void chat_hint(struct cli *cli, const char *model)
{
	if (cli->last_status == 404)
		cli_hint("`ciel model list` shows the models you can use");
	else if (cli->last_status == 503)
		cli_hint("`ciel model show %s` says where the model is and why it is not ready",
			 model);
	else if (cli->last_status == 429)
		cli_hint("the tenant's tokens per minute are used up; `ciel quota show` shows "
			 "the limit");
	else if (cli->last_status == 400)
		cli_hint("a shorter prompt or a smaller --max-tokens may fit the model's "
			 "context");
}

static json_t *chat_body(const char *model, const char *system, const char *prompt, bool stream)
{
	json_t *msgs = json_array(), *body;

	if (!msgs)
		return NULL;
	if (system)
		json_array_append_new(msgs,
				      json_pack("{s:s, s:s}", "role", "system", "content", system));
	json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", prompt));
	body = json_pack("{s:s, s:o, s:b}", "model", model, "messages", msgs, "stream", stream);
	return body;
}

int cmd_chat(struct cli *cli, int argc, char **argv)
{
	static const struct cmd_usage u = {
	    .name = "chat",
	    .args = "MODEL [PROMPT]",
	    .summary = "Ask a model endpoint (yours or a public one) and print its answer as it "
		       "is written. Without PROMPT the prompt is read from standard input. The "
		       "request goes through the region's OpenAI-compatible API signed with your "
		       "access key; tokens count against the tenant's quota and are metered.",
	    .example = "  ciel chat stories \"Once upon a time\"\n"
		       "  echo 'Tell me a story' | ciel chat stories --max-tokens 64\n"
		       "  ciel chat stories \"Once upon a time\" --temperature 0 --output json",
	    .min_args = 1,
	    .max_args = 2,
	};
	const char *args[2] = {0}, *system = NULL, *max_s = NULL, *temp_s = NULL, *seed_s = NULL;
	const struct opt opts[] = {
	    {"system", "TEXT", "a system message before the prompt", &system, NULL},
	    {"max-tokens", "N", "most tokens to generate (default: the server's)", &max_s, NULL},
	    {"temperature", "T", "sampling temperature, 0 (greedy) to 2", &temp_s, NULL},
	    {"seed", "N", "random seed, for an answer that repeats", &seed_s, NULL},
	    {0},
	};
	static const cookie_io_functions_t io = {.write = sse_write};
	struct client_request_opts ro = {0};
	struct client_response resp = {0};
	struct sse s = {0};
	struct ciel_err err;
	struct client *c;
	char *prompt = NULL, *end, q[256];
	json_t *body = NULL;
	bool stream = cli->output != OUT_JSON;
	long old_timeout;
	FILE *sink = NULL;
	int n, r, rc;

	n = cli_parse(&u, opts, argc, argv, args);
	if (n < 0)
		return cli_parse_exit(n);
	if (n == 2) {
		prompt = strdup(args[1]);
		if (!prompt)
			return cli_fail("out_of_memory", "out of memory");
	} else if (!(prompt = read_stdin())) {
		return EXIT_FAIL;
	}
	if (!prompt[0]) {
		free(prompt);
		return cli_usage_error(&u, "the prompt is empty");
	}
	body = chat_body(args[0], system, prompt, stream);
	free(prompt);
	if (!body)
		return cli_fail("out_of_memory", "out of memory");
	r = EXIT_USAGE;
	if (max_s) {
		long v = strtol(max_s, &end, 10);

		if (!*max_s || *end || v < 1 || v > (1L << 20)) {
			cli_usage_error(&u, "--max-tokens takes a whole number from 1, not '%s'",
					max_s);
			goto out;
		}
		json_object_set_new(body, "max_tokens", json_integer(v));
	}
	if (temp_s) {
		double v = strtod(temp_s, &end);

		if (!*temp_s || *end || !(v >= 0 && v <= 2)) {
			cli_usage_error(&u, "--temperature takes a number from 0 to 2, not '%s'",
					temp_s);
			goto out;
		}
		json_object_set_new(body, "temperature", json_real(v));
	}
	if (seed_s) {
		long long v = strtoll(seed_s, &end, 10);

		if (!*seed_s || *end || v < 0) {
			cli_usage_error(&u, "--seed takes a whole number >= 0, not '%s'", seed_s);
			goto out;
		}
		json_object_set_new(body, "seed", json_integer(v));
	}
	r = EXIT_FAIL;
	if (!(c = cli_client(cli, true)))
		goto out;
	cli_query_init(cli, q, sizeof(q));
	if (stream) {
		s.line = malloc(SSE_LINE_MAX);
		sink = s.line ? fopencookie(&s, "w", io) : NULL;
		if (!sink) {
			r = cli_fail("out_of_memory", "out of memory");
			goto out;
		}
		setvbuf(sink, NULL, _IONBF, 0); /* each chunk out as it comes */
		ro.sink = sink;
	}
	/* an answer takes what it takes: no limit on the whole, only on connecting */
	old_timeout = c->timeout_ms;
	c->timeout_ms = 0;
	rc = client_request_ex(c, "POST", "/openai/v1/chat/completions", q, body,
			       stream ? &ro : NULL, &resp, &err);
	c->timeout_ms = old_timeout;
	if (sink) {
		fclose(sink);
		sink = NULL;
	}
	if (s.printed && s.last != '\n')
		putchar('\n');
	fflush(stdout);
	if ((r = cli_report(cli, c, rc, &err, &resp)) != 0) {
		chat_hint(cli, args[0]);
		goto out;
	}
	if (!stream) {
		out_json(resp.json);
		r = EXIT_OK;
	} else if (s.error[0]) {
		r = cli_fail("failed", "%s", s.error);
	} else if (!s.done) {
		r = cli_fail("unavailable", "the answer ended before the model finished");
	} else {
		if (!s.printed)
			putchar('\n'); /* an empty answer is still one line */
		if (strcmp(s.finish, "length") == 0)
			fprintf(stderr, "(stopped at the token limit: --max-tokens raises it)\n");
		r = EXIT_OK;
	}
	client_response_release(&resp);
out:
	if (sink)
		fclose(sink);
	free(s.line);
	json_decref(s.usage);
	json_decref(body);
	return r;
}
