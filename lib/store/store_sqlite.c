/*
 * store_sqlite — the embedded SQLite backend ("sqlite:/path/file.db").
 *
 * Schema (one file, journal_mode=WAL, synchronous=FULL):
 *   kv(key, value, create_rev, mod_rev)   the documents
 *   changes(rev, key, kind)               the watch log, one row per key a revision touched
 *   meta(k, v)                            'rev': the current revision; 'compact': changes at
 *                                         or below it were pruned; 'schema': layout version
 * The current revision lives in meta and is written in the same SQLite
 * transaction as the rows carrying it, so it survives restarts and never
 * goes back.
 *
 * GROUP COMMIT. Every API request appends an audit event through store_txn,
 * so the commit path sets the request rate, and one fsync per transaction
 * would cap it at 1/fsync. One writer thread owns the only write connection.
 * store_txn puts its transaction on a FIFO queue and sleeps on its own
 * condvar. The writer takes everything queued, opens one BEGIN IMMEDIATE and
 * runs each transaction inside its own SAVEPOINT: check the conditions
 * (expect_rev, against the state before the transaction's own ops, including
 * earlier transactions of the batch), apply the ops or skip them all, run the
 * hook, then RELEASE — or, if the hook failed, ROLLBACK TO the savepoint so
 * that this transaction alone fails. A transaction that changed something
 * takes the next revision, so revisions increase in commit (= queue = hook)
 * order, within a batch too. Then one COMMIT — one fsync — makes the whole
 * batch durable, and only after it returns are the callers woken with their
 * results. Nothing is acknowledged before the fsync that holds it. While the
 * writer is in fsync the next batch piles up, so the batch size follows the
 * load on its own without any timer.
 *
 * FAIL-STOP. If BEGIN or COMMIT fails (or SQLite drops the open transaction
 * on an I/O error), SQLite cannot tell us what reached the disk, and the
 * hooks that already ran (the audit chain keeps its heads in memory) believe
 * in writes that may not exist. Every transaction of the batch fails with
 * CIEL_EIO and the backend refuses all later writes with CIEL_EUNAVAIL; the
 * process is expected to restart and recover from the file, which is
 * consistent. Reads keep working meanwhile. A failed statement inside one
 * transaction is rolled back to its savepoint and fails that transaction
 * alone, as long as SQLite kept the outer transaction open.
 *
 * READS go through a small pool of connections of their own (query_only):
 * WAL lets them read a committed snapshot while the writer works, and they
 * never see a batch before its COMMIT. Only store_wtx_get inside a hook reads
 * through the write connection, to see the batch's uncommitted writes.
 * Watchers sleep on a condvar the writer broadcasts after each commit.
 */
#include "store/store_sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

#define READERS 4
#define BUSY_TIMEOUT_MS 5000
#define DEFAULT_RETAIN 100000
#define SCHEMA_VERSION 1

static const char schema_sql[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value BLOB NOT NULL,"
    " create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS changes(rev INTEGER NOT NULL, key TEXT NOT NULL,"
    " kind INTEGER NOT NULL, PRIMARY KEY(rev, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO meta(k, v) VALUES('schema', 1), ('rev', 0), ('compact', 0);"
    "COMMIT;";

enum {
	WS_BEGIN,
	WS_COMMIT,
	WS_ROLLBACK,
	WS_SAVEPOINT,
	WS_RELEASE,
	WS_ROLLBACK_TO,
	WS_MOD_REV,
	WS_GET,
	WS_UPSERT,
	WS_DELETE,
	WS_CHANGE,
	WS_META_GET,
	WS_META_SET,
	WS_PRUNE,
	WS_MAX
};

static const char *const wsql[WS_MAX] = {
    [WS_BEGIN] = "BEGIN IMMEDIATE",
    [WS_COMMIT] = "COMMIT",
    [WS_ROLLBACK] = "ROLLBACK",
    [WS_SAVEPOINT] = "SAVEPOINT t",
    [WS_RELEASE] = "RELEASE t",
    [WS_ROLLBACK_TO] = "ROLLBACK TO t",
    [WS_MOD_REV] = "SELECT mod_rev FROM kv WHERE key = ?1",
    [WS_GET] = "SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1",
    [WS_UPSERT] = "INSERT INTO kv(key, value, create_rev, mod_rev) VALUES(?1, ?2, ?3, ?3)"
		  " ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
		  " mod_rev = excluded.mod_rev",
    [WS_DELETE] = "DELETE FROM kv WHERE key = ?1",
    [WS_CHANGE] = "INSERT OR REPLACE INTO changes(rev, key, kind) VALUES(?1, ?2, ?3)",
    [WS_META_GET] = "SELECT v FROM meta WHERE k = ?1",
    [WS_META_SET] = "UPDATE meta SET v = ?2 WHERE k = ?1",
    [WS_PRUNE] = "DELETE FROM changes WHERE rev <= ?1",
};

enum { RS_BEGIN, RS_END, RS_META_GET, RS_GET, RS_LIST, RS_WATCH, RS_MAX };

static const char *const rsql[RS_MAX] = {
    [RS_BEGIN] = "BEGIN",
    [RS_END] = "COMMIT",
    [RS_META_GET] = "SELECT v FROM meta WHERE k = ?1",
    [RS_GET] = "SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1",
    [RS_LIST] = "SELECT key, value, create_rev, mod_rev FROM kv"
		" WHERE key >= ?1 AND key < ?2 AND key > ?3 ORDER BY key LIMIT ?4",
    /* level-triggered: one row per key, its current value, ordered by its last change */
    [RS_WATCH] = "SELECT c.key, c.r, kv.value, kv.create_rev, kv.mod_rev FROM"
		 " (SELECT key, MAX(rev) AS r FROM changes"
		 "  WHERE rev > ?1 AND key >= ?2 AND key < ?3 GROUP BY key) AS c"
		 " LEFT JOIN kv ON kv.key = c.key ORDER BY c.r, c.key",
};

struct reader {
	sqlite3 *db;
	sqlite3_stmt *st[RS_MAX];
	struct reader *next;
};

/* One store_txn call, on its caller's stack until done is set. */
struct wreq {
	const struct store_op *ops;
	size_t n;
	store_hook_fn hook;
	void *hook_arg;
	struct store_txn_result res;
	struct ciel_err err;
	int rc;
	int done;
	pthread_cond_t cv;
	struct wreq *next;
};

struct sq {
	char *path;

	/* writer thread only (and the open/close paths before/after it runs) */
	sqlite3 *wdb;
	sqlite3_stmt *ws[WS_MAX];
	char wmsg[256]; /* message of the last failed write statement */

	struct reader readers[READERS];
	struct reader *free_readers; /* under pool_mu */
	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv;

	pthread_mutex_t mu;	  /* guards everything below */
	pthread_cond_t work_cv;	  /* writer sleeps here */
	pthread_cond_t commit_cv; /* watchers sleep here (CLOCK_MONOTONIC) */
	struct wreq *head, *tail;
	int closing;
	int failed;	     /* fail-stop: no more writes */
	uint64_t commit_gen; /* bumped after every batch */
	int64_t retain;
	struct store_stats stats;
	pthread_t writer;
	int writer_started;
};

struct sq_wtx {
	struct store_wtx base; /* first: the hook's pointer is ours */
	struct sq *sq;
	int changed;
	int sql_failed;
};

static int code_of(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return CIEL_EUNAVAIL;
	case SQLITE_NOMEM:
		return CIEL_ENOMEM;
	default:
		return CIEL_EIO;
	}
}

static int db_err(struct ciel_err *err, sqlite3 *db, int rc, const char *what)
{
	return ciel_err_set(err, code_of(rc), "sqlite: %s: %s", what,
			    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* ---- write connection (writer thread) ---- */

/* Run a statement that returns no rows; its bindings are set by the caller. */
static int wstep(struct sq *sq, int id)
{
	sqlite3_stmt *st = sq->ws[id];
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE) {
		snprintf(sq->wmsg, sizeof(sq->wmsg), "%s: %s", wsql[id], sqlite3_errmsg(sq->wdb));
		sqlite3_reset(st);
		return -1;
	}
	sqlite3_reset(st);
	return 0;
}

static int w_meta_get(struct sq *sq, const char *k, int64_t *v)
{
	sqlite3_stmt *st = sq->ws[WS_META_GET];
	int rc;

	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		snprintf(sq->wmsg, sizeof(sq->wmsg), "meta %s: %s", k,
			 rc == SQLITE_DONE ? "missing" : sqlite3_errmsg(sq->wdb));
		sqlite3_reset(st);
		return -1;
	}
	*v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

static int w_meta_set(struct sq *sq, const char *k, int64_t v)
{
	sqlite3_bind_text(sq->ws[WS_META_SET], 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_int64(sq->ws[WS_META_SET], 2, v);
	return wstep(sq, WS_META_SET);
}

static int w_change(struct sq *sq, int64_t rev, const char *key, int kind)
{
	sqlite3_stmt *st = sq->ws[WS_CHANGE];

	sqlite3_bind_int64(st, 1, rev);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, kind);
	return wstep(sq, WS_CHANGE);
}

static int w_put(struct sq *sq, int64_t rev, const char *key, const char *value, size_t len)
{
	sqlite3_stmt *st = sq->ws[WS_UPSERT];

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 2, value, len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, rev);
	if (wstep(sq, WS_UPSERT) < 0)
		return -1;
	return w_change(sq, rev, key, STORE_PUT);
}

static int w_delete(struct sq *sq, int64_t rev, const char *key, int *changed)
{
	sqlite3_bind_text(sq->ws[WS_DELETE], 1, key, -1, SQLITE_STATIC);
	if (wstep(sq, WS_DELETE) < 0)
		return -1;
	if (sqlite3_changes(sq->wdb) == 0)
		return 0;
	*changed = 1;
	return w_change(sq, rev, key, STORE_DELETE);
}

/* Does op's condition hold in the transaction's current state? */
static int w_cond(struct sq *sq, const struct store_op *op, int *held)
{
	sqlite3_stmt *st = sq->ws[WS_MOD_REV];
	int rc, exists;
	int64_t mod_rev = 0;

	if (op->expect_rev == STORE_ANY_REV) {
		*held = 1;
		return 0;
	}
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		snprintf(sq->wmsg, sizeof(sq->wmsg), "condition: %s", sqlite3_errmsg(sq->wdb));
		sqlite3_reset(st);
		return -1;
	}
	exists = rc == SQLITE_ROW;
	if (exists)
		mod_rev = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (op->expect_rev == STORE_ABSENT)
		*held = !exists;
	else
		*held = exists && mod_rev == op->expect_rev;
	return 0;
}

static int kv_fill(struct store_kv *kv, const unsigned char *key, int key_len, const void *value,
		   int value_len, int64_t create_rev, int64_t mod_rev)
{
	kv->key = malloc((size_t)key_len + 1);
	if (!kv->key)
		return -1;
	memcpy(kv->key, key, (size_t)key_len);
	kv->key[key_len] = '\0';
	if (value) {
		kv->value = malloc((size_t)value_len + 1);
		if (!kv->value)
			return -1;
		if (value_len)
			memcpy(kv->value, value, (size_t)value_len);
		kv->value[value_len] = '\0';
		kv->value_len = (size_t)value_len;
	}
	kv->create_rev = create_rev;
	kv->mod_rev = mod_rev;
	return 0;
}

/* value/create/mod in columns 0..2 of st; the blob pointer must not be NULL for a present row */
static int kv_from_get(struct store_kv *out, const char *key, sqlite3_stmt *st)
{
	const void *v = sqlite3_column_blob(st, 0);
	int len = sqlite3_column_bytes(st, 0);

	return kv_fill(out, (const unsigned char *)key, (int)strlen(key), v ? v : "", len,
		       sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
}

static int wtx_get(struct store_wtx *base, const char *key, struct store_kv *out,
		   struct ciel_err *err)
{
	struct sq_wtx *tx = (struct sq_wtx *)base;
	sqlite3_stmt *st = tx->sq->ws[WS_GET];
	int rc, ret = -1;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		ciel_err_set(err, CIEL_ENOTFOUND, "store: key %s not found", key);
		goto out;
	}
	if (rc != SQLITE_ROW) {
		tx->sql_failed = 1;
		snprintf(tx->sq->wmsg, sizeof(tx->sq->wmsg), "hook get: %s",
			 sqlite3_errmsg(tx->sq->wdb));
		db_err(err, tx->sq->wdb, rc, "hook get");
		goto out;
	}
	if (kv_from_get(out, key, st) < 0) {
		store_kv_release(out);
		ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
		goto out;
	}
	ret = 0;
out:
	sqlite3_reset(st);
	return ret;
}

static int wtx_put(struct store_wtx *base, const char *key, const char *value, size_t len,
		   struct ciel_err *err)
{
	struct sq_wtx *tx = (struct sq_wtx *)base;

	if (w_put(tx->sq, base->rev, key, value, len) < 0) {
		tx->sql_failed = 1;
		return ciel_err_set(err, CIEL_EIO, "sqlite: hook put: %s", tx->sq->wmsg);
	}
	tx->changed = 1;
	return 0;
}

/*
 * Run one transaction of the batch inside its savepoint. Returns 0 when it
 * will commit with the batch, -1 when it alone failed (r->err says why), -2
 * when the batch's SQLite transaction is lost and the whole batch must fail.
 */
static int run_one(struct sq *sq, struct wreq *r, int64_t *cur)
{
	struct sq_wtx tx = {.base = {.get = wtx_get, .put = wtx_put, .rev = *cur + 1}, .sq = sq};
	int ok = 1, failed_op = -1;

	if (wstep(sq, WS_SAVEPOINT) < 0)
		return -2;
	for (size_t i = 0; i < r->n && ok; i++) {
		if (w_cond(sq, &r->ops[i], &ok) < 0)
			goto sql_fail;
		if (!ok)
			failed_op = (int)i;
	}
	for (size_t i = 0; i < r->n && ok; i++) {
		const struct store_op *op = &r->ops[i];

		if (op->kind == STORE_PUT) {
			if (w_put(sq, tx.base.rev, op->key, op->value, strlen(op->value)) < 0)
				goto sql_fail;
			tx.changed = 1;
		} else if (w_delete(sq, tx.base.rev, op->key, &tx.changed) < 0) {
			goto sql_fail;
		}
	}
	if (r->hook) {
		int hrc = r->hook(r->hook_arg, &tx.base, ok, &r->err);

		/* a hook that swallowed a failed write must not commit half of itself */
		if (tx.sql_failed)
			goto sql_fail;
		if (hrc < 0) {
			if (r->err.code == CIEL_OK)
				ciel_err_set(&r->err, CIEL_EINTERNAL, "store: hook failed");
			goto rollback;
		}
	}
	if (wstep(sq, WS_RELEASE) < 0)
		return -2;
	if (tx.changed)
		*cur = tx.base.rev;
	r->res.conds_ok = ok;
	r->res.failed_op = failed_op;
	r->res.rev = *cur;
	return 0;

sql_fail:
	ciel_err_set(&r->err, CIEL_EIO, "sqlite: %s", sq->wmsg);
rollback:
	r->rc = -1;
	if (sqlite3_get_autocommit(sq->wdb))
		return -2; /* SQLite rolled the whole batch back on its own */
	if (wstep(sq, WS_ROLLBACK_TO) < 0 || wstep(sq, WS_RELEASE) < 0)
		return -2;
	return -1;
}

/* Returns 0 if the batch committed, -1 if it failed as a whole (fail-stop). */
static int run_batch(struct sq *sq, struct wreq *batch, int64_t retain, int64_t *compact_out)
{
	int64_t start, cur, compact;

	if (wstep(sq, WS_BEGIN) < 0)
		goto fatal;
	if (w_meta_get(sq, "rev", &start) < 0)
		goto fatal;
	cur = start;
	for (struct wreq *r = batch; r; r = r->next)
		if (run_one(sq, r, &cur) == -2)
			goto fatal;
	if (w_meta_get(sq, "compact", &compact) < 0)
		goto fatal;
	if (cur != start) {
		if (w_meta_set(sq, "rev", cur) < 0)
			goto fatal;
		/* prune in slices of retain/16 so the DELETE cost is amortised */
		if (cur - compact > retain + retain / 16) {
			compact = cur - retain;
			sqlite3_bind_int64(sq->ws[WS_PRUNE], 1, compact);
			if (wstep(sq, WS_PRUNE) < 0 || w_meta_set(sq, "compact", compact) < 0)
				goto fatal;
		}
	}
	if (wstep(sq, WS_COMMIT) < 0)
		goto fatal;
	*compact_out = compact;
	return 0;

fatal:
	log_error("store fail-stop path=%s error=\"%s\": refusing all further writes", sq->path,
		  sq->wmsg);
	if (!sqlite3_get_autocommit(sq->wdb))
		sqlite3_exec(sq->wdb, "ROLLBACK", NULL, NULL, NULL);
	for (struct wreq *r = batch; r; r = r->next) {
		if (r->rc < 0)
			continue;
		r->rc = -1;
		ciel_err_set(&r->err, CIEL_EIO,
			     "sqlite: commit failed: %s (store is now read-only)", sq->wmsg);
	}
	return -1;
}

static void *writer_main(void *arg)
{
	struct sq *sq = arg;

	pthread_mutex_lock(&sq->mu);
	for (;;) {
		struct wreq *batch, *r, *next;
		int64_t retain, compact = 0;
		uint64_t n = 0;
		int failed, rc = -1;

		while (!sq->head && !sq->closing)
			pthread_cond_wait(&sq->work_cv, &sq->mu);
		if (!sq->head)
			break;
		batch = sq->head;
		sq->head = sq->tail = NULL;
		retain = sq->retain;
		failed = sq->failed;
		pthread_mutex_unlock(&sq->mu);

		if (failed) {
			for (r = batch; r; r = r->next) {
				r->rc = -1;
				ciel_err_set(&r->err, CIEL_EUNAVAIL,
					     "store: read-only after a failed commit");
			}
		} else {
			rc = run_batch(sq, batch, retain, &compact);
		}

		pthread_mutex_lock(&sq->mu);
		for (r = batch; r; r = next) {
			next = r->next; /* r lives on a stack that may unwind once done is seen */
			n++;
			r->done = 1;
			pthread_cond_signal(&r->cv);
		}
		if (!failed) {
			sq->stats.txns += n;
			if (rc == 0) {
				sq->stats.commits++;
				sq->stats.compact_rev = compact;
				if (n > sq->stats.max_batch)
					sq->stats.max_batch = n;
			} else {
				sq->failed = 1;
			}
		}
		sq->commit_gen++;
		pthread_cond_broadcast(&sq->commit_cv);
	}
	pthread_mutex_unlock(&sq->mu);
	return NULL;
}

static int sq_txn(void *impl, const struct store_op *ops, size_t n, store_hook_fn hook,
		  void *hook_arg, struct store_txn_result *res, struct ciel_err *err)
{
	struct sq *sq = impl;
	struct wreq r = {.ops = ops, .n = n, .hook = hook, .hook_arg = hook_arg};

	if (pthread_equal(pthread_self(), sq->writer))
		return ciel_err_set(err, CIEL_EINTERNAL, "store: store_txn called from a hook");
	r.res.failed_op = -1;
	pthread_cond_init(&r.cv, NULL);
	pthread_mutex_lock(&sq->mu);
	if (sq->failed || sq->closing) {
		r.rc = ciel_err_set(&r.err, CIEL_EUNAVAIL, "store: %s",
				    sq->failed ? "read-only after a failed commit" : "closing");
		goto out_unlock;
	}
	if (sq->tail)
		sq->tail->next = &r;
	else
		sq->head = &r;
	sq->tail = &r;
	pthread_cond_signal(&sq->work_cv);
	while (!r.done)
		pthread_cond_wait(&r.cv, &sq->mu);
out_unlock:
	pthread_mutex_unlock(&sq->mu);
	pthread_cond_destroy(&r.cv);
	if (r.rc < 0) {
		if (err)
			*err = r.err;
		return -1;
	}
	*res = r.res;
	return 0;
}

/* ---- read pool ---- */

static struct reader *reader_get(struct sq *sq)
{
	struct reader *r;

	pthread_mutex_lock(&sq->pool_mu);
	while (!sq->free_readers)
		pthread_cond_wait(&sq->pool_cv, &sq->pool_mu);
	r = sq->free_readers;
	sq->free_readers = r->next;
	pthread_mutex_unlock(&sq->pool_mu);
	return r;
}

/* Resets every statement and ends any read transaction, so the next user starts clean. */
static void reader_put(struct sq *sq, struct reader *r)
{
	for (int i = 0; i < RS_MAX; i++)
		sqlite3_reset(r->st[i]);
	if (!sqlite3_get_autocommit(r->db))
		sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_lock(&sq->pool_mu);
	r->next = sq->free_readers;
	sq->free_readers = r;
	pthread_cond_signal(&sq->pool_cv);
	pthread_mutex_unlock(&sq->pool_mu);
}

static int r_exec(struct reader *r, int id, struct ciel_err *err)
{
	int rc = sqlite3_step(r->st[id]);

	sqlite3_reset(r->st[id]);
	if (rc != SQLITE_DONE)
		return db_err(err, r->db, rc, rsql[id]);
	return 0;
}

static int r_meta(struct reader *r, const char *k, int64_t *v, struct ciel_err *err)
{
	sqlite3_stmt *st = r->st[RS_META_GET];
	int rc;

	sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		if (rc == SQLITE_DONE)
			ciel_err_set(err, CIEL_EIO, "sqlite: meta %s missing", k);
		else
			db_err(err, r->db, rc, "read meta");
		sqlite3_reset(st);
		return -1;
	}
	*v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

/* Upper bound of the keys starting with prefix. Keys are UTF-8, so they never hold 0xff. */
static void prefix_end(const char *prefix, char buf[STORE_KEY_MAX + 2])
{
	size_t n = strlen(prefix);

	if (n == 0) {
		buf[0] = (char)0xff;
		buf[1] = '\0';
		return;
	}
	memcpy(buf, prefix, n + 1);
	buf[n - 1] = (char)((unsigned char)buf[n - 1] + 1);
}

static int sq_get(void *impl, const char *key, struct store_kv *out, struct ciel_err *err)
{
	struct sq *sq = impl;
	struct reader *r = reader_get(sq);
	sqlite3_stmt *st = r->st[RS_GET];
	int rc, ret = -1;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		ciel_err_set(err, CIEL_ENOTFOUND, "store: key %s not found", key);
		goto out;
	}
	if (rc != SQLITE_ROW) {
		db_err(err, r->db, rc, "get");
		goto out;
	}
	if (kv_from_get(out, key, st) < 0) {
		store_kv_release(out);
		ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
		goto out;
	}
	ret = 0;
out:
	reader_put(sq, r);
	return ret;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return -1;
	memset((char *)p + *cap * elem, 0, (ncap - *cap) * elem);
	*arr = p;
	*cap = ncap;
	return 0;
}

static int sq_list(void *impl, const char *prefix, const char *start_after, size_t limit,
		   struct store_list *out, struct ciel_err *err)
{
	struct sq *sq = impl;
	struct reader *r = reader_get(sq);
	sqlite3_stmt *st = r->st[RS_LIST];
	char end[STORE_KEY_MAX + 2];
	size_t cap = 0;
	int rc, ret = -1;

	prefix_end(prefix, end);
	if (r_exec(r, RS_BEGIN, err) < 0 || r_meta(r, "rev", &out->rev, err) < 0)
		goto out;
	sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, end, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, start_after, -1, SQLITE_STATIC);
	/* one row past the limit tells whether the limit cut the list */
	sqlite3_bind_int64(st, 4, limit == 0 || limit >= INT64_MAX ? -1 : (int64_t)limit + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const void *v = sqlite3_column_blob(st, 1);

		if (limit && out->n == limit) {
			out->more = 1;
			break;
		}
		if (grow((void **)&out->items, &cap, out->n, sizeof(*out->items)) < 0)
			goto nomem;
		if (kv_fill(&out->items[out->n++], sqlite3_column_text(st, 0),
			    sqlite3_column_bytes(st, 0), v ? v : "", sqlite3_column_bytes(st, 1),
			    sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3)) < 0)
			goto nomem;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_err(err, r->db, rc, "list");
		goto out;
	}
	sqlite3_reset(st);
	if (r_exec(r, RS_END, err) < 0)
		goto out;
	ret = 0;
	goto out;
nomem:
	ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
out:
	reader_put(sq, r);
	if (ret < 0)
		store_list_release(out);
	return ret;
}

static int sq_rev(void *impl, int64_t *rev, struct ciel_err *err)
{
	struct sq *sq = impl;
	struct reader *r = reader_get(sq);
	int ret = r_meta(r, "rev", rev, err);

	reader_put(sq, r);
	return ret;
}

/* One look at the change log; out->n == 0 means nothing new under prefix. */
static int watch_once(struct sq *sq, const char *prefix, const char *end, int64_t after_rev,
		      struct store_events *out, struct ciel_err *err)
{
	struct reader *r = reader_get(sq);
	sqlite3_stmt *st = r->st[RS_WATCH];
	int64_t rev, compact;
	size_t cap = 0;
	int rc, ret = -1;

	if (r_exec(r, RS_BEGIN, err) < 0 || r_meta(r, "rev", &rev, err) < 0 ||
	    r_meta(r, "compact", &compact, err) < 0)
		goto out;
	if (after_rev < compact) {
		ciel_err_set(err, CIEL_ECONFLICT,
			     "store: watch from rev %lld is behind the change log (kept after "
			     "rev %lld): list again",
			     (long long)after_rev, (long long)compact);
		goto out;
	}
	out->rev = rev > after_rev ? rev : after_rev;
	if (rev > after_rev) {
		sqlite3_bind_int64(st, 1, after_rev);
		sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, end, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct store_event *e;
			int present = sqlite3_column_type(st, 2) != SQLITE_NULL;
			const void *v = sqlite3_column_blob(st, 2);

			if (grow((void **)&out->ev, &cap, out->n, sizeof(*out->ev)) < 0)
				goto nomem;
			e = &out->ev[out->n++];
			e->kind = present ? STORE_PUT : STORE_DELETE;
			if (kv_fill(&e->kv, sqlite3_column_text(st, 0), sqlite3_column_bytes(st, 0),
				    present ? (v ? v : "") : NULL, sqlite3_column_bytes(st, 2),
				    present ? sqlite3_column_int64(st, 3) : 0,
				    present ? sqlite3_column_int64(st, 4)
					    : sqlite3_column_int64(st, 1)) < 0)
				goto nomem;
		}
		if (rc != SQLITE_DONE) {
			db_err(err, r->db, rc, "watch");
			goto out;
		}
		sqlite3_reset(st);
	}
	if (r_exec(r, RS_END, err) < 0)
		goto out;
	ret = 0;
	goto out;
nomem:
	ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
out:
	reader_put(sq, r);
	if (ret < 0)
		store_events_release(out);
	return ret;
}

static int sq_watch(void *impl, const char *prefix, int64_t after_rev, int timeout_ms,
		    struct store_events *out, struct ciel_err *err)
{
	struct sq *sq = impl;
	char end[STORE_KEY_MAX + 2];
	struct timespec deadline;

	prefix_end(prefix, end);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	for (;;) {
		uint64_t gen;
		int timed_out = 0, closing;

		/* read the generation first: a commit after it wakes the wait below */
		pthread_mutex_lock(&sq->mu);
		gen = sq->commit_gen;
		pthread_mutex_unlock(&sq->mu);
		if (watch_once(sq, prefix, end, after_rev, out, err) < 0)
			return -1;
		if (out->n > 0 || timeout_ms == 0)
			return 0;
		pthread_mutex_lock(&sq->mu);
		while (sq->commit_gen == gen && !sq->closing && !timed_out)
			timed_out =
			    pthread_cond_timedwait(&sq->commit_cv, &sq->mu, &deadline) == ETIMEDOUT;
		closing = sq->closing;
		pthread_mutex_unlock(&sq->mu);
		if (timed_out || closing)
			return 0;
	}
}

/* ---- open / close ---- */

static const char *sq_path(const void *impl)
{
	return ((const struct sq *)impl)->path;
}

static void sq_stats(void *impl, struct store_stats *out)
{
	struct sq *sq = impl;

	pthread_mutex_lock(&sq->mu);
	*out = sq->stats;
	pthread_mutex_unlock(&sq->mu);
}

static int sq_set_retain(void *impl, int64_t revs, struct ciel_err *err)
{
	struct sq *sq = impl;

	(void)err;
	pthread_mutex_lock(&sq->mu);
	sq->retain = revs;
	pthread_mutex_unlock(&sq->mu);
	return 0;
}

static void sq_free(struct sq *sq)
{
	for (int i = 0; i < READERS; i++) {
		for (int k = 0; k < RS_MAX; k++)
			sqlite3_finalize(sq->readers[i].st[k]);
		sqlite3_close(sq->readers[i].db);
	}
	for (int k = 0; k < WS_MAX; k++)
		sqlite3_finalize(sq->ws[k]);
	sqlite3_close(sq->wdb);
	pthread_cond_destroy(&sq->commit_cv);
	pthread_cond_destroy(&sq->work_cv);
	pthread_mutex_destroy(&sq->mu);
	pthread_cond_destroy(&sq->pool_cv);
	pthread_mutex_destroy(&sq->pool_mu);
	free(sq->path);
	free(sq);
}

static int db_open(sqlite3 **db, const char *path, int flags, struct ciel_err *err)
{
	int rc = sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc != SQLITE_OK) {
		ciel_err_set(err, code_of(rc), "sqlite: open %s: %s", path,
			     *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
		return -1;
	}
	sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(*db, 1);
	return 0;
}

static int exec(sqlite3 *db, const char *sql, struct ciel_err *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return db_err(err, db, rc, sql);
	return 0;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, struct ciel_err *err)
{
	int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);

	if (rc != SQLITE_OK)
		return db_err(err, db, rc, "prepare");
	return 0;
}

static int open_writer(struct sq *sq, struct ciel_err *err)
{
	sqlite3_stmt *st = NULL;
	int64_t schema;
	int rc, wal;

	if (db_open(&sq->wdb, sq->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err) < 0)
		return -1;
	if (prepare(sq->wdb, "PRAGMA journal_mode=WAL", &st, err) < 0)
		return -1;
	rc = sqlite3_step(st);
	wal = rc == SQLITE_ROW &&
	      sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	sqlite3_finalize(st);
	if (!wal)
		return ciel_err_set(err, CIEL_EIO, "sqlite: %s: cannot switch to WAL mode: %s",
				    sq->path, sqlite3_errmsg(sq->wdb));
	if (exec(sq->wdb, "PRAGMA synchronous=FULL", err) < 0 ||
	    exec(sq->wdb, schema_sql, err) < 0) {
		if (!sqlite3_get_autocommit(sq->wdb))
			sqlite3_exec(sq->wdb, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	for (int k = 0; k < WS_MAX; k++)
		if (prepare(sq->wdb, wsql[k], &sq->ws[k], err) < 0)
			return -1;
	if (w_meta_get(sq, "schema", &schema) < 0 ||
	    w_meta_get(sq, "compact", &sq->stats.compact_rev) < 0)
		return ciel_err_set(err, CIEL_EIO, "sqlite: %s: %s", sq->path, sq->wmsg);
	if (schema != SCHEMA_VERSION)
		return ciel_err_set(err, CIEL_EINVAL, "sqlite: %s: schema version %lld, want %d",
				    sq->path, (long long)schema, SCHEMA_VERSION);
	return 0;
}

static int open_reader(struct sq *sq, struct reader *r, struct ciel_err *err)
{
	if (db_open(&r->db, sq->path, SQLITE_OPEN_READWRITE, err) < 0)
		return -1;
	/* read-write only so that WAL's shared memory works in every case; never writes */
	if (exec(r->db, "PRAGMA query_only=1", err) < 0)
		return -1;
	for (int k = 0; k < RS_MAX; k++)
		if (prepare(r->db, rsql[k], &r->st[k], err) < 0)
			return -1;
	return 0;
}

static int sq_open(void **impl, const char *path, struct ciel_err *err)
{
	pthread_condattr_t ca;
	struct sq *sq;
	int rc;

	*impl = NULL;
	if (!path[0])
		return ciel_err_field(err, CIEL_EINVAL, "url", "store: sqlite url without a path");
	sq = calloc(1, sizeof(*sq));
	if (!sq)
		return ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
	pthread_mutex_init(&sq->pool_mu, NULL);
	pthread_cond_init(&sq->pool_cv, NULL);
	pthread_mutex_init(&sq->mu, NULL);
	pthread_cond_init(&sq->work_cv, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sq->commit_cv, &ca);
	pthread_condattr_destroy(&ca);
	sq->retain = DEFAULT_RETAIN;
	sq->path = strdup(path);
	if (!sq->path) {
		ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
		goto fail;
	}
	if (open_writer(sq, err) < 0)
		goto fail;
	for (int i = 0; i < READERS; i++) {
		if (open_reader(sq, &sq->readers[i], err) < 0)
			goto fail;
		sq->readers[i].next = sq->free_readers;
		sq->free_readers = &sq->readers[i];
	}
	rc = pthread_create(&sq->writer, NULL, writer_main, sq);
	if (rc != 0) {
		ciel_err_sys(err, CIEL_EIO, rc, "store: start writer thread");
		goto fail;
	}
	sq->writer_started = 1;
	*impl = sq;
	return 0;
fail:
	ciel_err_prefix(err, "open store %s: ", path);
	sq_free(sq);
	return -1;
}

static void sq_close(void *impl)
{
	struct sq *sq = impl;

	if (sq->writer_started) {
		pthread_mutex_lock(&sq->mu);
		sq->closing = 1;
		pthread_cond_signal(&sq->work_cv);
		pthread_cond_broadcast(&sq->commit_cv);
		pthread_mutex_unlock(&sq->mu);
		/* the writer drains the queue before it sees closing with nothing left */
		pthread_join(sq->writer, NULL);
	}
	sq_free(sq);
}

const struct store_backend store_sqlite_backend = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .txn = sq_txn,
    .get = sq_get,
    .list = sq_list,
    .rev = sq_rev,
    .watch = sq_watch,
    .path = sq_path,
    .stats = sq_stats,
    .set_retain = sq_set_retain,
};
