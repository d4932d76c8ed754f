/*
 * cli — what the command files of `ciel` share: the global options, flag
 * parsing with generated --help, the lazily built API client, and the one
 * way errors are printed ("ciel: <code>: <message> (field: f) [request id]"
 * plus a hint). Commands return an exit code: 0 ok, 1 failed, 2 usage.
 */
#ifndef CIEL_CLI_H
#define CIEL_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/client.h"
#include "output.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define CLI_HELP (-2) /* cli_parse: --help was printed */

struct cli {
	/* global flags, NULL when not given */
	const char *endpoint;
	const char *profile;
	const char *credentials;
	const char *tenant;
	int output; /* enum out_format */

	bool client_ready;
	struct client client;

	/* the last failed call through cli_call*: HTTP status (0: no answer),
	 * the error's code, field and message as sent, so a command can add
	 * its own hint */
	long last_status;
	char last_code[64];
	char last_field[64];
	char last_message[512];
};

/* One flag of a command. A flag with a metavar takes a value (into *val),
 * one without is a switch (into *set). */
struct opt {
	const char *name; /* without the leading "--" */
	const char *metavar;
	const char *help;
	const char **val;
	bool *set;
};

struct cmd_usage {
	const char *name;    /* "tenant create" */
	const char *args;    /* "NAME", "" if none */
	const char *summary; /* one sentence */
	const char *example; /* one or more lines, each a command */
	int min_args, max_args;
};

/*
 * Parse argv (the words after the command name) against opts (NULL-name
 * terminated; --help is implicit). Positional words go to args[0..max_args).
 * Returns the number of positional words, CLI_HELP after printing help to
 * stdout, or -1 after printing a usage error to stderr.
 */
int cli_parse(const struct cmd_usage *u, const struct opt *opts, int argc, char **argv,
	      const char **args);
/* Print a usage error for u ("ciel: usage: ..." and the usage line); returns EXIT_USAGE. */
int cli_usage_error(const struct cmd_usage *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Exit code for a cli_parse result < 0. */
static inline int cli_parse_exit(int r)
{
	return r == CLI_HELP ? EXIT_OK : EXIT_USAGE;
}

/* A command group ("tenant") and its verbs; a verb name may hold two words
 * ("token create"). */
struct verb {
	const char *name;
	const char *summary;
	int (*fn)(struct cli *cli, int argc, char **argv); /* argv: words after the verb */
};
struct group {
	const char *name;
	const char *summary;
	const char *example;
	const struct verb *verbs; /* NULL-name terminated */
};
int cli_group_main(struct cli *cli, const struct group *g, int argc, char **argv);

extern const struct group group_tenant, group_key, group_principal, group_zone, group_node,
    group_quota, group_audit, group_region, group_image, group_instance, group_quantum, group_model,
    group_apikey;
int cmd_up(struct cli *cli, int argc, char **argv);
int cmd_down(struct cli *cli, int argc, char **argv);
int cmd_chat(struct cli *cli, int argc, char **argv);

/*
 * `ciel model deploy` with client c (the cli's, or `ciel up`'s operator
 * client): upload file as endpoint name (query: "public=1", "ctx=N", ...,
 * may be ""), with a progress line; then, if wait_s > 0, follow it until it
 * is ready (state changes on stderr) for at most wait_s seconds. With result
 * NULL the endpoint is printed; else *result gets it (caller decrefs; may
 * be NULL after a failure). Returns the exit code.
 */
int model_deploy(struct cli *cli, struct client *c, const char *file, const char *name,
		 const char *query, int wait_s, json_t **result);
/* Follow endpoint name with c until ready, as model_deploy's wait does. */
int model_wait(struct cli *cli, struct client *c, const char *name, const char *query, int wait_s,
	       json_t **result);

/* The client for the current global options; NULL after printing why. With
 * need_key, a missing key id or secret is an error too. */
struct client *cli_client(struct cli *cli, bool need_key);

/*
 * Send one request with the cli's client. On success (2xx) returns 0 with
 * resp filled (caller releases it). Otherwise prints the error and a hint
 * and returns EXIT_FAIL (resp released).
 */
int cli_call(struct cli *cli, const char *method, const char *path, const char *query,
	     const json_t *body, struct client_response *resp);
/* Like cli_call on a given client, for `ciel up` and its operator client. */
int cli_call_with(struct cli *cli, struct client *c, const char *method, const char *path,
		  const char *query, const json_t *body, struct client_request_opts *ro,
		  struct client_response *resp);

/* How cli_call ends: rc and cerr from client_request_ex or client_upload made
 * with c. 0 on a 2xx answer; else prints the error with a hint, fills
 * cli->last_*, releases resp and returns EXIT_FAIL. For loops that must
 * look at an answer (a 404 they wait for) before calling it a failure. */
int cli_report(struct cli *cli, struct client *c, int rc, const struct ciel_err *cerr,
	       struct client_response *resp);

/* Like cli_call, sending the contents of file as the body (client_upload). */
int cli_upload(struct cli *cli, const char *method, const char *path, const char *query,
	       const char *file, client_progress_fn progress, void *arg,
	       struct client_response *resp);

#define CLI_NAME_RULES "2 to 31 characters of a-z, 0-9 and '-', starting with a letter"
/* 0 if v is a valid image or instance name (the server's rules); else
 * prints why as the server would ("invalid_argument": exit 1, not a usage
 * error) and returns EXIT_FAIL. what names it: "image name", "--name". */
int cli_check_name(const char *what, const char *v);

/* The strings of a JSON array joined by spaces, each quoted for a POSIX
 * shell where needed ("sh -c 'echo hi'"); truncated to size. Returns buf. */
const char *cli_fmt_words(const json_t *arr, char *buf, size_t size);

/* A one-line status on stderr, redrawn in place ("\r") when stderr is a
 * terminal and silent when it is not, for progress that scripts and logs
 * should not see line by line. */
struct cli_status {
	bool tty;
	int width; /* widest line drawn since the last clear */
};
void cli_status_init(struct cli_status *st);
void cli_status(struct cli_status *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Blank the line, so what is printed next starts on a clean one. */
void cli_status_clear(struct cli_status *st);

/*
 * An upload's progress (client_progress_fn cli_progress, arg a struct
 * cli_progress) on its status line: percent, sizes and rate while it sends,
 * then "sent SIZE; <then>" while the region takes the rest in.
 */
struct cli_progress {
	struct cli_status st;
	const char *then;
	int64_t start_ms, last_ms, sent;
};
void cli_progress_init(struct cli_progress *p, const char *then);
void cli_progress(void *arg, int64_t sent, int64_t total);
/* "uploaded SIZE in S s (R MB/s)" on stderr, once the upload is accepted. */
void cli_progress_done(const struct cli_progress *p);

/* The global flags block of every help text. */
void cli_print_global_flags(FILE *f);

/* Print "ciel: code: message" to stderr; returns EXIT_FAIL. */
int cli_fail(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a struct ciel_err the same way; returns EXIT_FAIL. */
int cli_fail_err(const struct ciel_err *err);
/* Print "hint: ..." to stderr. */
void cli_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start a query string with tenant=T when --tenant was given. */
void cli_query_init(const struct cli *cli, char *q, size_t size);
/* "/v1/tenants/" + escaped name into buf; -1 (after printing) if it does not fit. */
int cli_path(char *buf, size_t size, const char *prefix, const char *name, const char *suffix);

/* The items array of a list answer, or NULL (which json_array_foreach treats as empty). */
const json_t *cli_items(const json_t *answer);

/* Ask "question [y/N]" on the terminal; false when stdin is not a terminal. */
bool cli_confirm(const char *question);

/* Before creating a key meant for --save-profile NAME: 0 if NAME can be
 * written, else prints why and returns EXIT_USAGE (bad name, or the very
 * profile this command authenticates with). */
int cli_check_save_profile(struct cli *cli, const char *profile);
/* Save an access key as a profile of the cli's credentials file (same
 * endpoint and CA as the current client). Prints what it did. */
int cli_save_profile(struct cli *cli, const char *profile, const char *key_id, const char *secret,
		     const char *scope);

/* Print a freshly created key (id and secret; the whole answer with --output
 * json) under the line `what`, then save it as save_profile (with scope) or
 * warn that the secret will not be shown again. */
int cli_print_new_key(struct cli *cli, const json_t *answer, const json_t *key, const char *what,
		      const char *save_profile, const char *scope);
/* "Key: value" lines for the members of obj; objects and arrays as compact JSON. */
void cli_show_object(const json_t *obj);

/* Delete commands: DELETE prefix+name?query, then print "<what> <name> deleted<note>"
 * (or the JSON answer with --output json). Returns the exit code. */
int cli_delete(struct cli *cli, const char *prefix, const char *name, const char *query,
	       const char *what, const char *note);

/*
 * `ciel GROUP delete NAME`: parse u (NAME, and --public with public_help
 * unless that is NULL: the operator's public=1), then cli_delete with the
 * tenant query. *pub (may be NULL) says whether --public was given, for the
 * caller's hints after an EXIT_FAIL (cli->last_status).
 */
int cli_delete_cmd(struct cli *cli, const struct cmd_usage *u, int argc, char **argv,
		   const char *prefix, const char *what, const char *note, const char *public_help,
		   bool *pub);

/* List commands: GET path?query and print its items as a table, one row per
 * item filled by fn into cells->s[column] (or the JSON with --output json). */
#define CLI_MAX_COLS 10
struct cells {
	char s[CLI_MAX_COLS][256];
};
typedef void (*cli_row_fn)(const json_t *item, struct cells *cells);
int cli_list(struct cli *cli, const char *path, const char *query, size_t ncols,
	     const char *const *hdr, cli_row_fn fn, const char *no_rows);
/*
 * `ciel GROUP show NAME`: GET prefix + NAME (with the tenant query), then
 * the object as JSON, or through show for tables. not_found, when given,
 * adds a hint after a 404 naming NAME.
 */
int cli_show(struct cli *cli, const struct cmd_usage *u, int argc, char **argv, const char *prefix,
	     void (*show)(const json_t *obj), void (*not_found)(struct cli *cli, const char *name));

/* One object as a one-row table (or its JSON with --output json). */
int cli_print_one(struct cli *cli, const json_t *obj, size_t ncols, const char *const *hdr,
		  cli_row_fn fn);

#endif
