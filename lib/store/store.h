/*
 * store — versioned JSON documents under keys (the model Kubernetes uses on
 * etcd), with one interface and interchangeable backends.
 *
 * Invariants every backend keeps:
 * - The store has one revision counter. Every committed transaction that
 *   changes anything gets the next revision; each key remembers the revision
 *   that created it (create_rev) and last modified it (mod_rev). Revisions
 *   start at 1 and never go back, across restarts.
 * - A transaction (store_txn) is all-or-nothing and durable when it returns 0:
 *   a kill -9 after that moment loses nothing. Backends may group-commit
 *   concurrent transactions into one fsync, but never acknowledge early.
 * - Conditions (expect_rev) are checked at commit time, under the same lock as
 *   the write: optimistic concurrency without a read-modify-write race.
 * - Keys are '/'-separated paths ("/tenants/acme/keys/CK123"), at most
 *   STORE_KEY_MAX bytes; values are JSON text, at most STORE_VALUE_MAX bytes.
 *
 * Thread safety: every function may be called from any thread concurrently.
 *
 * URLs: "sqlite:/path/to/region.db" (embedded, WAL, synchronous=FULL).
 * The etcd backend ("etcd:http://host:2379,...") follows without changing
 * callers: the hook below maps to an etcd Txn whose compares include the
 * hook's own head key.
 */
#ifndef CIEL_STORE_H
#define CIEL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define STORE_KEY_MAX 512
#define STORE_VALUE_MAX (4u << 20)

struct store;

struct store_kv {
	char *key;   /* owned */
	char *value; /* owned, NUL-terminated */
	size_t value_len;
	int64_t create_rev;
	int64_t mod_rev;
};
/* Frees what kv holds (not kv itself); safe on a zeroed kv. */
void store_kv_release(struct store_kv *kv);

struct store_list {
	struct store_kv *items; /* owned array of n */
	size_t n;
	int64_t rev; /* store revision the list was read at */
	int more;    /* 1 if the limit cut the list short */
};
void store_list_release(struct store_list *l);

enum store_op_kind { STORE_PUT = 1, STORE_DELETE = 2 };

#define STORE_ANY_REV (-1) /* no condition */
#define STORE_ABSENT 0	   /* the key must not exist */

struct store_op {
	enum store_op_kind kind;
	const char *key;
	const char *value;  /* STORE_PUT only, NUL-terminated JSON */
	int64_t expect_rev; /* STORE_ANY_REV, STORE_ABSENT, or the key's required mod_rev
			     * (for STORE_DELETE, STORE_ANY_REV on an absent key is a no-op) */
};

/* A write transaction being committed; valid only inside a hook call. */
struct store_wtx;

/*
 * A hook runs inside the transaction, in the order transactions commit, after
 * the conditions of the transaction's own ops were evaluated (conds_ok = 1 if
 * they all held and the ops were applied, 0 if not and the ops were skipped).
 * Whatever it puts commits with the transaction, whatever the conditions
 * said. Its use is the audit chain: the event of a request, with its outcome,
 * becomes durable in the same commit as the change it records, and chain
 * order is commit order.
 * Returning -1 rolls back this transaction alone (ops and hook writes);
 * store_txn then returns -1 with the hook's error.
 * A hook must be quick and must not call store_txn (it would deadlock).
 */
typedef int (*store_hook_fn)(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err);

/* Read inside a hook: sees the transaction's own writes. -1/CIEL_ENOTFOUND if absent. */
int store_wtx_get(struct store_wtx *tx, const char *key, struct store_kv *out,
		  struct ciel_err *err);
int store_wtx_put(struct store_wtx *tx, const char *key, const char *value, struct ciel_err *err);
/* The revision this transaction will commit at. */
int64_t store_wtx_rev(struct store_wtx *tx);

struct store_txn_result {
	int conds_ok;  /* 1: all conditions held, ops applied; 0: nothing of ops applied */
	int failed_op; /* index of the first op whose condition failed, -1 if none */
	int64_t rev;   /* revision of the commit (the store's revision if nothing changed) */
};

/*
 * Apply ops (n may be 0) atomically, run hook (may be NULL), commit durably.
 * Returns 0 once committed (check res->conds_ok), -1 if nothing was
 * committed: bad argument (CIEL_EINVAL), hook failure, or a store failure
 * (CIEL_EIO/CIEL_EUNAVAIL). After a failed commit the SQLite backend refuses
 * all further writes with CIEL_EUNAVAIL (fail-stop: the process restarts and
 * recovers from disk) rather than risk acknowledging a write it may not hold.
 */
int store_txn(struct store *s, const struct store_op *ops, size_t n, store_hook_fn hook,
	      void *hook_arg, struct store_txn_result *res, struct ciel_err *err);

/* Read one key. -1 with CIEL_ENOTFOUND if absent. */
int store_get(struct store *s, const char *key, struct store_kv *out, struct ciel_err *err);

/*
 * Keys beginning with prefix, in byte order of key, starting after
 * start_after (NULL or "" from the beginning), at most limit (0 = no limit).
 */
int store_list(struct store *s, const char *prefix, const char *start_after, size_t limit,
	       struct store_list *out, struct ciel_err *err);

/* Current revision. */
int store_rev(struct store *s, int64_t *rev, struct ciel_err *err);

struct store_event {
	enum store_op_kind kind; /* STORE_PUT or STORE_DELETE */
	struct store_kv kv;	 /* kv.value is the value as of the read (NULL for DELETE) */
};
struct store_events {
	struct store_event *ev; /* owned array of n, in revision order */
	size_t n;
	int64_t rev; /* pass as after_rev to the next store_watch */
};
void store_events_release(struct store_events *e);

/*
 * Changes under prefix after revision after_rev, waiting up to timeout_ms
 * for the first one (0 = do not wait). Level-triggered: a key changed
 * several times is reported once, with its current value; a watcher that
 * falls behind the retained change log gets CIEL_ECONFLICT and must re-list.
 */
int store_watch(struct store *s, const char *prefix, int64_t after_rev, int timeout_ms,
		struct store_events *out, struct ciel_err *err);

/* Open a store by URL (see top). Creates the database if missing. */
int store_open(struct store **out, const char *url, struct ciel_err *err);
/* Waits for in-flight commits, then frees everything. NULL is a no-op. */
void store_close(struct store *s);

/* Path of the backing file for embedded stores ("" for others); for tests and `ciel tenant show`.
 */
const char *store_path(const struct store *s);

#endif
