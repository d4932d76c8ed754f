/*
 * store_sqlite — the backend interface between store.c and a store backend,
 * and the embedded SQLite backend that implements it.
 *
 * store.c owns everything that does not depend on the backend: URL dispatch,
 * argument validation (keys, UTF-8 values, sizes, expect_rev) and the release
 * helpers. A backend receives only validated arguments and implements the
 * semantics of store.h (revisions, conditions, hooks, durability). An etcd
 * backend fills the same struct store_backend and slots in beside
 * store_sqlite_backend without changing callers.
 *
 * The few store_* functions declared at the bottom are not part of store.h:
 * they exist for tests and diagnostics (group-commit counters, the size of
 * the retained watch log).
 */
#ifndef CIEL_STORE_SQLITE_H
#define CIEL_STORE_SQLITE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

/*
 * A hook's view of a write transaction. A backend embeds it as the first
 * member of its own transaction struct; store_wtx_get/put in store.c validate
 * their arguments and call through these pointers. Valid only during the hook.
 */
struct store_wtx {
	int (*get)(struct store_wtx *tx, const char *key, struct store_kv *out,
		   struct ciel_err *err);
	/* value is valid UTF-8 of value_len bytes, NUL-terminated */
	int (*put)(struct store_wtx *tx, const char *key, const char *value, size_t value_len,
		   struct ciel_err *err);
	int64_t rev; /* the revision this transaction commits at if it changes anything */
};

/* Counters a backend keeps for tests and `ciel` diagnostics. */
struct store_stats {
	uint64_t txns;	     /* store_txn calls that reached the writer */
	uint64_t commits;    /* durable commits (one fsync each): txns / commits = batch size */
	uint64_t max_batch;  /* most txns one commit carried */
	int64_t compact_rev; /* watchers with after_rev below this get CIEL_ECONFLICT */
};

/*
 * One backend. Every function receives impl as returned by open and
 * arguments already validated by store.c (keys and values checked, ops
 * non-NULL when n > 0, res and out non-NULL). Output structs are zeroed by
 * store.c before the call and must be left releasable on failure.
 */
struct store_backend {
	const char *scheme; /* the URL's "scheme:" part, without the colon */
	int (*open)(void **impl, const char *rest, struct ciel_err *err);
	void (*close)(void *impl);
	int (*txn)(void *impl, const struct store_op *ops, size_t n, store_hook_fn hook,
		   void *hook_arg, struct store_txn_result *res, struct ciel_err *err);
	int (*get)(void *impl, const char *key, struct store_kv *out, struct ciel_err *err);
	int (*list)(void *impl, const char *prefix, const char *start_after, size_t limit,
		    struct store_list *out, struct ciel_err *err);
	int (*rev)(void *impl, int64_t *rev, struct ciel_err *err);
	int (*watch)(void *impl, const char *prefix, int64_t after_rev, int timeout_ms,
		     struct store_events *out, struct ciel_err *err);
	const char *(*path)(const void *impl);
	/* Optional (NULL if the backend has none). */
	void (*stats)(void *impl, struct store_stats *out);
	int (*set_retain)(void *impl, int64_t revs, struct ciel_err *err);
};

/* "sqlite:/path/file.db" */
extern const struct store_backend store_sqlite_backend;

/* Fill *out with the backend's counters (zeros if it keeps none). */
void store_stats(struct store *s, struct store_stats *out);
/*
 * Keep the change log for at least the last revs revisions (default 100000);
 * a smaller value lets tests reach CIEL_ECONFLICT in store_watch quickly.
 */
int store_set_watch_retain(struct store *s, int64_t revs, struct ciel_err *err);

#endif
