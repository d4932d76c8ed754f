/*
 * test_store — the store contract (store.h) on the SQLite backend: CRUD,
 * conditions, atomicity, listing, revisions across restarts, hooks in commit
 * order, concurrency and group commit, watch, input validation, a kill -9
 * crash test and an fsync-failure fail-stop test through a faulty SQLite VFS.
 *
 * Everything lives in one temporary directory removed at the end. The crash
 * test forks, so it runs first, before this process has started any thread.
 */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"
#include "store/store_sqlite.h"
#include "util/ts.h"

static char tmpdir[128];

static void url_of(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "sqlite:%s/%s.db", tmpdir, name);
}

static struct store *open_named(const char *name)
{
	struct ciel_err err = {0};
	struct store *s = NULL;
	char url[256];

	url_of(url, sizeof(url), name);
	if (store_open(&s, url, &err) < 0)
		fail_msg("store_open %s: %s", url, err.msg);
	return s;
}

static int64_t rev_of(struct store *s)
{
	struct ciel_err err = {0};
	int64_t rev = -1;

	assert_int_equal(store_rev(s, &rev, &err), 0);
	return rev;
}

/* One PUT with a condition; returns store_txn's result. */
static int put_c(struct store *s, const char *key, const char *value, int64_t expect,
		 struct store_txn_result *res, struct ciel_err *err)
{
	struct store_op op = {.kind = STORE_PUT, .key = key, .value = value, .expect_rev = expect};

	return store_txn(s, &op, 1, NULL, NULL, res, err);
}

static int64_t put_ok(struct store *s, const char *key, const char *value)
{
	struct store_txn_result res;
	struct ciel_err err = {0};

	if (put_c(s, key, value, STORE_ANY_REV, &res, &err) < 0)
		fail_msg("put %s: %s", key, err.msg);
	assert_int_equal(res.conds_ok, 1);
	return res.rev;
}

static int del_c(struct store *s, const char *key, int64_t expect, struct store_txn_result *res,
		 struct ciel_err *err)
{
	struct store_op op = {.kind = STORE_DELETE, .key = key, .expect_rev = expect};

	return store_txn(s, &op, 1, NULL, NULL, res, err);
}

static void assert_value(struct store *s, const char *key, const char *want)
{
	struct store_kv kv = {0};
	struct ciel_err err = {0};

	if (store_get(s, key, &kv, &err) < 0)
		fail_msg("get %s: %s", key, err.msg);
	assert_string_equal(kv.key, key);
	assert_string_equal(kv.value, want);
	assert_int_equal(kv.value_len, strlen(want));
	store_kv_release(&kv);
}

static void assert_absent(struct store *s, const char *key)
{
	struct store_kv kv = {0};
	struct ciel_err err = {0};

	assert_int_equal(store_get(s, key, &kv, &err), -1);
	assert_int_equal(err.code, CIEL_ENOTFOUND);
	assert_null(kv.key);
}

/* ---- crash test: kill -9 a writer, every acknowledged put must survive ---- */

#define CRASH_THREADS 4
#define CRASH_ROUNDS 5

struct crash_arg {
	struct store *s;
	int fd;
	int round;
	int t;
};

static void crash_value(char *buf, size_t n, const char *key)
{
	snprintf(buf, n, "{\"k\":\"%s\"}", key);
}

static void *crash_writer(void *p)
{
	struct crash_arg *a = p;

	for (int i = 0; i < 1000000; i++) {
		struct store_txn_result res;
		struct ciel_err err;
		char key[64], value[128], line[72];
		int n;

		snprintf(key, sizeof(key), "/crash/%d/%d/%07d", a->round, a->t, i);
		crash_value(value, sizeof(value), key);
		if (put_c(a->s, key, value, STORE_ANY_REV, &res, &err) < 0)
			_exit(3);
		/* only now is the put acknowledged; one write(2) below PIPE_BUF is atomic */
		n = snprintf(line, sizeof(line), "%s\n", key);
		if (write(a->fd, line, (size_t)n) != n)
			_exit(4);
	}
	return NULL;
}

static void __attribute__((noreturn)) crash_child(const char *url, int fd, int round)
{
	struct crash_arg args[CRASH_THREADS];
	pthread_t th[CRASH_THREADS];
	struct store *s;

	if (store_open(&s, url, NULL) < 0)
		_exit(2);
	for (int t = 0; t < CRASH_THREADS; t++) {
		args[t] = (struct crash_arg){.s = s, .fd = fd, .round = round, .t = t};
		if (pthread_create(&th[t], NULL, crash_writer, &args[t]) != 0)
			_exit(5);
	}
	for (int t = 0; t < CRASH_THREADS; t++)
		pthread_join(th[t], NULL);
	_exit(0);
}

struct acks {
	char buf[1 << 16];
	size_t len;
	char **keys;
	size_t n, cap;
};

/* Move the complete lines of a->buf into a->keys. */
static void acks_take_lines(struct acks *a)
{
	size_t start = 0;

	for (size_t i = 0; i < a->len; i++) {
		if (a->buf[i] != '\n')
			continue;
		if (a->n == a->cap) {
			a->cap = a->cap ? a->cap * 2 : 1024;
			a->keys = realloc(a->keys, a->cap * sizeof(*a->keys));
			assert_non_null(a->keys);
		}
		a->keys[a->n] = strndup(a->buf + start, i - start);
		assert_non_null(a->keys[a->n]);
		a->n++;
		start = i + 1;
	}
	memmove(a->buf, a->buf + start, a->len - start);
	a->len -= start;
}

static void acks_read(struct acks *a, int fd, int64_t until_ms)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = until_ms < 0 ? 1000 : until_ms - ts_mono_ms();
		ssize_t r;

		if (left <= 0)
			return;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		r = read(fd, a->buf + a->len, sizeof(a->buf) - a->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return; /* EOF: the child is gone */
		a->len += (size_t)r;
		acks_take_lines(a);
	}
}

static void test_crash_kill9(void **state)
{
	int64_t total_acked = 0, last_rev = 0;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	char url[256];

	(void)state;
	url_of(url, sizeof(url), "crash");
	srand(seed);
	for (int round = 0; round < CRASH_ROUNDS; round++) {
		struct acks *a = calloc(1, sizeof(*a));
		int run_ms = 50 + rand() % 251, fds[2], status;
		struct store *s;
		struct ciel_err err = {0};
		int64_t rev;
		pid_t pid;

		assert_non_null(a);
		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(url, fds[1], round);
		}
		close(fds[1]);
		acks_read(a, fds[0], ts_mono_ms() + run_ms);
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* the child must have died of our signal, not of an error of its own */
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGKILL);
		acks_read(a, fds[0], -1); /* acks still in the pipe were acknowledged too */
		close(fds[0]);
		total_acked += (int64_t)a->n;

		if (store_open(&s, url, &err) < 0)
			fail_msg("reopen after kill: %s", err.msg);
		for (size_t i = 0; i < a->n; i++) {
			char value[128];

			crash_value(value, sizeof(value), a->keys[i]);
			assert_value(s, a->keys[i], value);
			free(a->keys[i]);
		}
		rev = rev_of(s);
		assert_true(rev >= total_acked);
		assert_true(rev >= last_rev);
		last_rev = rev;
		print_message(
		    "crash round %d (seed %u): %d ms, %zu acked puts survived, rev %lld\n", round,
		    seed, run_ms, a->n, (long long)rev);
		store_close(s);
		free(a->keys);
		free(a);
	}
	/* a run that acknowledged nothing tested nothing */
	assert_true(total_acked > 0);
}

/* ---- basics ---- */

static void test_put_get_delete(void **state)
{
	struct store *s = open_named("basic");
	struct store_txn_result res;
	struct store_kv kv = {0};
	struct ciel_err err = {0};
	int64_t r1, r2;

	(void)state;
	assert_true(strstr(store_path(s), "basic.db") != NULL);
	assert_int_equal(rev_of(s), 0);
	assert_absent(s, "/a");

	r1 = put_ok(s, "/a", "{\"v\":1}");
	assert_int_equal(r1, 1);
	r2 = put_ok(s, "/a", "{\"v\":2}");
	assert_int_equal(r2, 2);
	assert_int_equal(store_get(s, "/a", &kv, &err), 0);
	assert_string_equal(kv.value, "{\"v\":2}");
	assert_int_equal(kv.create_rev, 1);
	assert_int_equal(kv.mod_rev, 2);
	store_kv_release(&kv);
	store_kv_release(&kv); /* releasing twice is harmless: it zeroes */

	/* an empty value is still text */
	put_ok(s, "/empty", "");
	assert_value(s, "/empty", "");

	assert_int_equal(del_c(s, "/a", STORE_ANY_REV, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_int_equal(res.rev, 4);
	assert_absent(s, "/a");

	/* deleting an absent key changes nothing and takes no revision */
	assert_int_equal(del_c(s, "/a", STORE_ANY_REV, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_int_equal(res.rev, 4);
	assert_int_equal(rev_of(s), 4);

	/* re-created: create_rev starts again */
	assert_int_equal(put_ok(s, "/a", "{}"), 5);
	assert_int_equal(store_get(s, "/a", &kv, &err), 0);
	assert_int_equal(kv.create_rev, 5);
	assert_int_equal(kv.mod_rev, 5);
	store_kv_release(&kv);

	/* an empty transaction commits nothing */
	assert_int_equal(store_txn(s, NULL, 0, NULL, NULL, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_int_equal(res.rev, 5);
	store_close(s);
	store_close(NULL);
}

static void test_conditions(void **state)
{
	struct store *s = open_named("cond");
	struct store_txn_result res;
	struct ciel_err err = {0};
	int64_t r;

	(void)state;
	/* ABSENT: create only */
	assert_int_equal(put_c(s, "/k", "1", STORE_ABSENT, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_int_equal(res.failed_op, -1);
	r = res.rev;
	assert_int_equal(put_c(s, "/k", "2", STORE_ABSENT, &res, &err), 0);
	assert_int_equal(res.conds_ok, 0);
	assert_int_equal(res.failed_op, 0);
	assert_int_equal(res.rev, r); /* nothing changed: the store's revision */
	assert_value(s, "/k", "1");

	/* exact revision: wrong one refused, right one applied */
	assert_int_equal(put_c(s, "/k", "3", r + 7, &res, &err), 0);
	assert_int_equal(res.conds_ok, 0);
	assert_value(s, "/k", "1");
	assert_int_equal(put_c(s, "/k", "4", r, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_int_equal(res.rev, r + 1);
	assert_value(s, "/k", "4");
	/* the old revision no longer matches */
	assert_int_equal(put_c(s, "/k", "5", r, &res, &err), 0);
	assert_int_equal(res.conds_ok, 0);

	/* an exact revision on an absent key fails */
	assert_int_equal(put_c(s, "/nope", "1", r, &res, &err), 0);
	assert_int_equal(res.conds_ok, 0);
	assert_absent(s, "/nope");

	/* delete with conditions */
	assert_int_equal(del_c(s, "/k", r, &res, &err), 0);
	assert_int_equal(res.conds_ok, 0);
	assert_value(s, "/k", "4");
	assert_int_equal(del_c(s, "/k", r + 1, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_absent(s, "/k");
	assert_int_equal(del_c(s, "/k", STORE_ABSENT, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);

	/* ANY always holds */
	assert_int_equal(put_c(s, "/k", "6", STORE_ANY_REV, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	store_close(s);
}

static void test_multi_op_atomic(void **state)
{
	struct store *s = open_named("multi");
	struct store_txn_result res;
	struct ciel_err err = {0};
	struct store_kv kv = {0};
	int64_t r0, rb;

	(void)state;
	rb = put_ok(s, "/b", "old");
	r0 = rev_of(s);
	{
		/* third op's condition fails: the first two must not be applied */
		struct store_op ops[] = {
		    {STORE_PUT, "/a", "1", STORE_ABSENT},
		    {STORE_DELETE, "/b", NULL, STORE_ANY_REV},
		    {STORE_PUT, "/c", "1", 12345},
		};

		assert_int_equal(store_txn(s, ops, 3, NULL, NULL, &res, &err), 0);
		assert_int_equal(res.conds_ok, 0);
		assert_int_equal(res.failed_op, 2);
		assert_int_equal(res.rev, r0);
	}
	assert_absent(s, "/a");
	assert_value(s, "/b", "old");
	assert_absent(s, "/c");
	assert_int_equal(rev_of(s), r0);
	{
		/* all hold: one revision for the whole transaction */
		struct store_op ops[] = {
		    {STORE_PUT, "/a", "1", STORE_ABSENT},
		    {STORE_DELETE, "/b", NULL, rb},
		    {STORE_PUT, "/c", "1", STORE_ANY_REV},
		    {STORE_PUT, "/c", "2", STORE_ANY_REV}, /* later op on the same key wins */
		};

		assert_int_equal(store_txn(s, ops, 4, NULL, NULL, &res, &err), 0);
		assert_int_equal(res.conds_ok, 1);
		assert_int_equal(res.failed_op, -1);
		assert_int_equal(res.rev, r0 + 1);
	}
	assert_value(s, "/a", "1");
	assert_absent(s, "/b");
	assert_value(s, "/c", "2");
	assert_int_equal(store_get(s, "/a", &kv, &err), 0);
	assert_int_equal(kv.mod_rev, r0 + 1);
	store_kv_release(&kv);
	assert_int_equal(rev_of(s), r0 + 1);
	store_close(s);
}

static void test_list(void **state)
{
	static const char *const keys[] = {"/l/a", "/l/b", "/l/b/x", "/l/c", "/l/d", "/l0", "/m/a"};
	struct store *s = open_named("list");
	struct store_list l = {0};
	struct ciel_err err = {0};

	(void)state;
	/* insert out of order: the list must come back in key order */
	for (int i = 6; i >= 0; i--)
		put_ok(s, keys[i], "{}");

	assert_int_equal(store_list(s, "/l/", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 5);
	assert_int_equal(l.more, 0);
	assert_int_equal(l.rev, 7);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(l.items[i].key, keys[i]);
		assert_string_equal(l.items[i].value, "{}");
	}
	assert_int_equal(l.items[0].mod_rev, 7);
	store_list_release(&l);

	/* pages of 2 */
	assert_int_equal(store_list(s, "/l/", "", 2, &l, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.more, 1);
	assert_string_equal(l.items[1].key, "/l/b");
	store_list_release(&l);
	assert_int_equal(store_list(s, "/l/", "/l/b", 2, &l, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.more, 1);
	assert_string_equal(l.items[0].key, "/l/b/x");
	assert_string_equal(l.items[1].key, "/l/c");
	store_list_release(&l);
	assert_int_equal(store_list(s, "/l/", "/l/c", 2, &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.more, 0); /* exactly the rest: not cut */
	assert_string_equal(l.items[0].key, "/l/d");
	store_list_release(&l);
	/* a limit equal to the count is not "more" */
	assert_int_equal(store_list(s, "/l/", NULL, 5, &l, &err), 0);
	assert_int_equal(l.n, 5);
	assert_int_equal(l.more, 0);
	store_list_release(&l);

	/* the prefix is a byte prefix, not a path component */
	assert_int_equal(store_list(s, "/l", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 6);
	store_list_release(&l);
	/* everything */
	assert_int_equal(store_list(s, "", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 7);
	assert_string_equal(l.items[6].key, "/m/a");
	store_list_release(&l);
	assert_int_equal(store_list(s, NULL, NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 7);
	store_list_release(&l);
	/* nothing */
	assert_int_equal(store_list(s, "/zz", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 0);
	assert_null(l.items);
	assert_int_equal(l.rev, 7);
	store_list_release(&l);
	store_close(s);
}

static void test_revisions_persist(void **state)
{
	struct store *s = open_named("persist");
	struct store_txn_result res;
	struct ciel_err err = {0};
	struct store_kv kv = {0};
	int64_t last = 0;

	(void)state;
	for (int i = 0; i < 20; i++) {
		char key[32];
		int64_t r;

		snprintf(key, sizeof(key), "/p/%02d", i);
		r = put_ok(s, key, "{\"x\":1}");
		assert_true(r > last);
		last = r;
	}
	/* delete everything: the revision is not derived from the rows left */
	for (int i = 0; i < 20; i++) {
		char key[32];

		snprintf(key, sizeof(key), "/p/%02d", i);
		assert_int_equal(del_c(s, key, STORE_ANY_REV, &res, &err), 0);
		assert_int_equal(res.rev, last + 1);
		last = res.rev;
	}
	put_ok(s, "/keep", "\"v\"");
	last++;
	assert_int_equal(rev_of(s), last);
	store_close(s);

	s = open_named("persist");
	assert_int_equal(rev_of(s), last);
	assert_int_equal(store_get(s, "/keep", &kv, &err), 0);
	assert_string_equal(kv.value, "\"v\"");
	assert_int_equal(kv.create_rev, last);
	store_kv_release(&kv);
	assert_absent(s, "/p/00");
	assert_int_equal(put_ok(s, "/after", "1"), last + 1);
	store_close(s);

	s = open_named("persist");
	assert_int_equal(rev_of(s), last + 1);
	store_close(s);
}

/* ---- hooks ---- */

struct seq_hook {
	pthread_mutex_t mu; /* hooks run on one thread, but the test reads these after */
	int64_t revs[4096];
	int conds[4096];
	size_t n;
	int fail_every; /* 0: never; k: every k-th call fails */
	int calls;
};

/* Audit-like hook: reads /seq/head (seeing the batch's uncommitted writes), writes head+1. */
static int seq_hook_fn(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err)
{
	struct seq_hook *h = arg;
	struct store_kv kv = {0};
	struct ciel_err gerr = {0};
	long n = 0;
	char buf[64], key[64];
	int fail;

	pthread_mutex_lock(&h->mu);
	h->calls++;
	fail = h->fail_every && h->calls % h->fail_every == 0;
	pthread_mutex_unlock(&h->mu);

	if (store_wtx_get(tx, "/seq/head", &kv, &gerr) == 0) {
		n = strtol(kv.value, NULL, 10);
		store_kv_release(&kv);
	} else if (gerr.code != CIEL_ENOTFOUND) {
		*err = gerr;
		return -1;
	}
	snprintf(buf, sizeof(buf), "%ld", n + 1);
	if (store_wtx_put(tx, "/seq/head", buf, err) < 0)
		return -1;
	snprintf(key, sizeof(key), "/seq/e/%08ld", n + 1);
	if (store_wtx_put(tx, key, buf, err) < 0)
		return -1;
	if (fail)
		return ciel_err_set(err, CIEL_EPERM, "hook refused");
	pthread_mutex_lock(&h->mu);
	if (h->n < 4096) {
		h->revs[h->n] = store_wtx_rev(tx);
		h->conds[h->n] = conds_ok;
		h->n++;
	}
	pthread_mutex_unlock(&h->mu);
	return 0;
}

/* A hook must not call store_txn: refused with an error instead of a deadlock. */
static int hook_reenter(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err)
{
	struct store_txn_result res;
	struct ciel_err e = {0};

	(void)tx;
	(void)conds_ok;
	if (store_txn(arg, NULL, 0, NULL, NULL, &res, &e) == 0)
		return ciel_err_set(err, CIEL_EINTERNAL, "nested store_txn went through");
	*err = e;
	return -1;
}

static void test_hook_basics(void **state)
{
	struct store *s = open_named("hook");
	struct seq_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct store_txn_result res;
	struct ciel_err err = {0};
	int64_t r0;

	(void)state;
	put_ok(s, "/x", "1");
	r0 = rev_of(s);

	/* conditions fail: the ops are skipped, the hook still writes and commits */
	{
		struct store_op op = {STORE_PUT, "/x", "2", 999};

		assert_int_equal(store_txn(s, &op, 1, seq_hook_fn, &h, &res, &err), 0);
	}
	assert_int_equal(res.conds_ok, 0);
	assert_int_equal(res.failed_op, 0);
	assert_int_equal(res.rev, r0 + 1);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.conds[0], 0);
	assert_int_equal(h.revs[0], r0 + 1);
	assert_value(s, "/x", "1");
	assert_value(s, "/seq/head", "1");
	assert_value(s, "/seq/e/00000001", "1");

	/* conditions hold: ops and hook writes share one revision */
	{
		struct store_op op = {STORE_PUT, "/x", "3", STORE_ANY_REV};
		struct store_kv kv = {0};

		assert_int_equal(store_txn(s, &op, 1, seq_hook_fn, &h, &res, &err), 0);
		assert_int_equal(res.conds_ok, 1);
		assert_int_equal(res.rev, r0 + 2);
		assert_int_equal(h.conds[1], 1);
		assert_int_equal(store_get(s, "/seq/head", &kv, &err), 0);
		assert_int_equal(kv.mod_rev, r0 + 2);
		store_kv_release(&kv);
	}
	assert_value(s, "/x", "3");

	/* no ops, a hook that writes: that is a change and takes a revision */
	assert_int_equal(store_txn(s, NULL, 0, seq_hook_fn, &h, &res, &err), 0);
	assert_int_equal(res.rev, r0 + 3);
	assert_value(s, "/seq/head", "3");

	/* hook failure: nothing of the txn (ops nor hook writes) commits, its error comes back */
	h.fail_every = 1;
	{
		struct store_op op = {STORE_PUT, "/y", "1", STORE_ANY_REV};

		memset(&res, 0x55, sizeof(res));
		assert_int_equal(store_txn(s, &op, 1, seq_hook_fn, &h, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EPERM);
		assert_string_equal(err.msg, "hook refused");
		assert_int_equal(res.failed_op, -1); /* the result is reset, not left as garbage */
	}
	assert_absent(s, "/y");
	assert_value(s, "/seq/head", "3");
	assert_absent(s, "/seq/e/00000004");
	assert_int_equal(rev_of(s), r0 + 3);
	h.fail_every = 0;

	assert_int_equal(store_txn(s, NULL, 0, hook_reenter, s, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EINTERNAL);
	assert_non_null(strstr(err.msg, "from a hook"));

	/* the store works on after a failed hook */
	assert_int_equal(store_txn(s, NULL, 0, seq_hook_fn, &h, &res, &err), 0);
	assert_int_equal(res.rev, r0 + 4);
	assert_value(s, "/seq/head", "4");
	store_close(s);
}

/* A hook that stops the writer until the test lets it go: reads must not wait for it. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int in_hook, go;
	struct store *s;
	int rc;
};

static int gate_hook(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err)
{
	struct gate *g = arg;

	(void)tx;
	(void)conds_ok;
	(void)err;
	pthread_mutex_lock(&g->mu);
	g->in_hook = 1;
	pthread_cond_broadcast(&g->cv);
	while (!g->go)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	return 0;
}

static void *gate_writer(void *p)
{
	struct gate *g = p;
	struct store_op op = {STORE_PUT, "/iso/x", "1", STORE_ANY_REV};
	struct store_txn_result res;

	g->rc = store_txn(g->s, &op, 1, gate_hook, g, &res, NULL);
	return NULL;
}

static void test_reads_beside_writer(void **state)
{
	struct gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct store_list l = {0};
	struct ciel_err err = {0};
	pthread_t th;
	int64_t r0;

	(void)state;
	g.s = open_named("iso");
	put_ok(g.s, "/iso/a", "1");
	r0 = rev_of(g.s);
	assert_int_equal(pthread_create(&th, NULL, gate_writer, &g), 0);
	pthread_mutex_lock(&g.mu);
	while (!g.in_hook)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);

	/* the writer holds an open write transaction: reads go on, and see only commits */
	assert_absent(g.s, "/iso/x");
	assert_value(g.s, "/iso/a", "1");
	assert_int_equal(rev_of(g.s), r0);
	assert_int_equal(store_list(g.s, "/iso/", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.rev, r0);
	store_list_release(&l);

	pthread_mutex_lock(&g.mu);
	g.go = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	pthread_join(th, NULL);
	assert_int_equal(g.rc, 0);
	assert_value(g.s, "/iso/x", "1");
	assert_int_equal(rev_of(g.s), r0 + 1);
	store_close(g.s);
}

/* ---- concurrency ---- */

struct worker {
	struct store *s;
	struct seq_hook *hook;
	int id, count;
	_Atomic int *errors;
	int64_t *revs; /* count result revisions, or NULL */
	int *ok;       /* per txn: 1 if it committed, or NULL */
	int retries;
};

static void *cas_worker(void *p)
{
	struct worker *w = p;

	for (int i = 0; i < w->count; i++) {
		for (;;) {
			struct store_kv kv = {0};
			struct store_txn_result res;
			struct ciel_err err;
			char buf[32];
			long n;

			if (store_get(w->s, "/counter", &kv, &err) < 0) {
				(*w->errors)++;
				return NULL;
			}
			n = strtol(kv.value + 5, NULL, 10); /* {"n":N} */
			snprintf(buf, sizeof(buf), "{\"n\":%ld}", n + 1);
			if (put_c(w->s, "/counter", buf, kv.mod_rev, &res, &err) < 0) {
				store_kv_release(&kv);
				(*w->errors)++;
				return NULL;
			}
			store_kv_release(&kv);
			if (res.conds_ok)
				break;
			w->retries++;
		}
	}
	return NULL;
}

static void test_cas_counter(void **state)
{
	enum { THREADS = 8, PER = 200 };
	struct store *s = open_named("cas");
	struct worker w[THREADS];
	pthread_t th[THREADS];
	_Atomic int errors = 0;
	int retries = 0;

	(void)state;
	{
		struct store_txn_result res;

		assert_int_equal(put_c(s, "/counter", "{\"n\":0}", STORE_ABSENT, &res, NULL), 0);
	}
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){.s = s, .id = t, .count = PER, .errors = &errors};
		assert_int_equal(pthread_create(&th[t], NULL, cas_worker, &w[t]), 0);
	}
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		retries += w[t].retries;
	}
	assert_int_equal(errors, 0);
	assert_value(s, "/counter", "{\"n\":1600}");
	/* every increment took one revision, the failed CAS attempts none */
	assert_int_equal(rev_of(s), 1 + THREADS * PER);
	print_message("cas: %d increments, %d conflicts retried\n", THREADS * PER, retries);
	store_close(s);
}

static void *put_worker(void *p)
{
	struct worker *w = p;

	for (int i = 0; i < w->count; i++) {
		struct store_op op = {STORE_PUT, NULL, "{\"v\":true}", STORE_ABSENT};
		struct store_txn_result res;
		struct ciel_err err;
		char key[64];
		int rc;

		snprintf(key, sizeof(key), "/g/%02d/%04d", w->id, i);
		op.key = key;
		rc = store_txn(w->s, &op, 1, w->hook ? seq_hook_fn : NULL, w->hook, &res, &err);
		if (w->ok)
			w->ok[i] = rc == 0;
		if (rc < 0) {
			if (!w->hook || err.code != CIEL_EPERM)
				(*w->errors)++;
			continue;
		}
		if (!res.conds_ok)
			(*w->errors)++;
		if (w->revs)
			w->revs[i] = res.rev;
	}
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void test_group_commit(void **state)
{
	enum { THREADS = 16, PER = 150, N = THREADS * PER };
	struct store *s = open_named("group");
	struct worker w[THREADS];
	pthread_t th[THREADS];
	struct store_stats st0, st1;
	struct store_list l = {0};
	struct ciel_err err = {0};
	_Atomic int errors = 0;
	int64_t *revs = calloc(N, sizeof(*revs)), r0, t0, t1;

	(void)state;
	assert_non_null(revs);
	put_ok(s, "/start", "1");
	r0 = rev_of(s);
	store_stats(s, &st0);
	t0 = ts_mono_us();
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){
		    .s = s, .id = t, .count = PER, .errors = &errors, .revs = revs + t * PER};
		assert_int_equal(pthread_create(&th[t], NULL, put_worker, &w[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	t1 = ts_mono_us();
	store_stats(s, &st1);
	assert_int_equal(errors, 0);

	/* every txn got its own revision, all of them distinct, none skipped */
	qsort(revs, N, sizeof(*revs), cmp_i64);
	for (int i = 0; i < N; i++)
		assert_int_equal(revs[i], r0 + 1 + i);
	assert_int_equal(rev_of(s), r0 + N);
	assert_int_equal(store_list(s, "/g/", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, N);
	store_list_release(&l);

	/* and they shared fsyncs */
	assert_int_equal(st1.txns - st0.txns, N);
	assert_true(st1.commits - st0.commits < (uint64_t)N);
	assert_true(st1.max_batch > 1);
	print_message("group commit: %d txns in %llu commits (max batch %llu), %.0f txn/s\n", N,
		      (unsigned long long)(st1.commits - st0.commits),
		      (unsigned long long)st1.max_batch, N * 1e6 / (double)(t1 - t0));
	free(revs);
	store_close(s);
}

/* Hooks under concurrency: they run in commit order, and a failed one takes only its own txn. */
static void test_hook_order_concurrent(void **state)
{
	enum { THREADS = 8, PER = 60, N = THREADS * PER };
	struct store *s = open_named("hookcc");
	struct seq_hook *h = calloc(1, sizeof(*h));
	struct worker w[THREADS];
	pthread_t th[THREADS];
	_Atomic int errors = 0;
	int *ok = calloc(N, sizeof(*ok)), committed = 0;
	struct store_list l = {0};
	struct ciel_err err = {0};

	(void)state;
	assert_non_null(h);
	assert_non_null(ok);
	pthread_mutex_init(&h->mu, NULL);
	h->fail_every = 5;
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){.s = s,
				       .id = t,
				       .count = PER,
				       .errors = &errors,
				       .hook = h,
				       .ok = ok + t * PER};
		assert_int_equal(pthread_create(&th[t], NULL, put_worker, &w[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	assert_int_equal(errors, 0);
	assert_int_equal(h->calls, N);

	/* each committed txn has its key, each failed one has not */
	for (int t = 0; t < THREADS; t++) {
		for (int i = 0; i < PER; i++) {
			char key[64];

			snprintf(key, sizeof(key), "/g/%02d/%04d", t, i);
			if (ok[t * PER + i]) {
				committed++;
				assert_value(s, key, "{\"v\":true}");
			} else {
				assert_absent(s, key);
			}
		}
	}
	assert_int_equal(committed, N - N / 5);
	assert_int_equal((int)h->n, committed);
	/* hook calls that committed saw strictly increasing revisions: commit order */
	for (size_t i = 1; i < h->n; i++)
		assert_true(h->revs[i] == h->revs[i - 1] + 1);
	assert_int_equal(rev_of(s), committed);
	/* the hook chain has no gap and no duplicate: every event 1..committed, head = committed */
	assert_int_equal(store_list(s, "/seq/e/", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, committed);
	for (size_t i = 0; i < l.n; i++) {
		char want[32];

		snprintf(want, sizeof(want), "%zu", i + 1);
		assert_string_equal(l.items[i].value, want);
	}
	store_list_release(&l);
	{
		char want[32];

		snprintf(want, sizeof(want), "%d", committed);
		assert_value(s, "/seq/head", want);
	}
	pthread_mutex_destroy(&h->mu);
	free(h);
	free(ok);
	store_close(s);
}

/* ---- watch ---- */

struct later {
	struct store *s;
	int delay_ms;
	const char *keys[4];
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *later_puts(void *p)
{
	struct later *l = p;

	for (int i = 0; i < 4 && l->keys[i]; i++) {
		struct store_op op = {STORE_PUT, l->keys[i], "\"late\"", STORE_ANY_REV};
		struct store_txn_result res;

		sleep_ms(l->delay_ms);
		store_txn(l->s, &op, 1, NULL, NULL, &res, NULL);
	}
	return NULL;
}

static void test_watch(void **state)
{
	struct store *s = open_named("watch");
	struct store_events e = {0};
	struct store_txn_result res;
	struct ciel_err err = {0};
	int64_t r0, t0, el;
	pthread_t th;

	(void)state;
	put_ok(s, "/w/a", "1");
	r0 = rev_of(s);

	/* nothing new: no wait, and the returned rev is where to continue */
	assert_int_equal(store_watch(s, "/w/", r0, 0, &e, &err), 0);
	assert_int_equal(e.n, 0);
	assert_int_equal(e.rev, r0);
	store_events_release(&e);

	/* nothing new for 200 ms: times out empty */
	t0 = ts_mono_ms();
	assert_int_equal(store_watch(s, "/w/", r0, 200, &e, &err), 0);
	el = ts_mono_ms() - t0;
	assert_int_equal(e.n, 0);
	assert_true(el >= 190);
	assert_true(el < 3000);
	store_events_release(&e);

	/* a change 100 ms later wakes the watcher long before its timeout */
	{
		struct later l = {.s = s, .delay_ms = 100, .keys = {"/w/b"}};

		assert_int_equal(pthread_create(&th, NULL, later_puts, &l), 0);
		t0 = ts_mono_ms();
		assert_int_equal(store_watch(s, "/w/", r0, 10000, &e, &err), 0);
		el = ts_mono_ms() - t0;
		pthread_join(th, NULL);
	}
	assert_int_equal(e.n, 1);
	assert_int_equal(e.ev[0].kind, STORE_PUT);
	assert_string_equal(e.ev[0].kv.key, "/w/b");
	assert_string_equal(e.ev[0].kv.value, "\"late\"");
	assert_int_equal(e.ev[0].kv.mod_rev, r0 + 1);
	assert_int_equal(e.rev, r0 + 1);
	assert_true(el < 5000);
	store_events_release(&e);
	r0++;

	/* prefix filter: a change elsewhere does not end the wait, the later one here does */
	{
		struct later l = {.s = s, .delay_ms = 60, .keys = {"/other/x", "/w/c"}};

		assert_int_equal(pthread_create(&th, NULL, later_puts, &l), 0);
		assert_int_equal(store_watch(s, "/w/", r0, 10000, &e, &err), 0);
		pthread_join(th, NULL);
	}
	assert_int_equal(e.n, 1);
	assert_string_equal(e.ev[0].kv.key, "/w/c");
	assert_int_equal(e.rev, r0 + 2);
	store_events_release(&e);
	r0 += 2;

	/* level-triggered: a key changed three times comes once with its current value;
	 * a deleted key comes as a DELETE; order is the order of their last change */
	put_ok(s, "/w/c", "2");
	put_ok(s, "/w/d", "1");
	put_ok(s, "/w/c", "3");
	assert_int_equal(del_c(s, "/w/a", STORE_ANY_REV, &res, &err), 0);
	put_ok(s, "/w/c", "4");
	assert_int_equal(store_watch(s, "/w/", r0, 0, &e, &err), 0);
	assert_int_equal(e.n, 3);
	assert_string_equal(e.ev[0].kv.key, "/w/d");
	assert_int_equal(e.ev[0].kind, STORE_PUT);
	assert_string_equal(e.ev[1].kv.key, "/w/a");
	assert_int_equal(e.ev[1].kind, STORE_DELETE);
	assert_null(e.ev[1].kv.value);
	assert_int_equal(e.ev[1].kv.mod_rev, r0 + 4);
	assert_string_equal(e.ev[2].kv.key, "/w/c");
	assert_string_equal(e.ev[2].kv.value, "4");
	assert_int_equal(e.ev[2].kv.mod_rev, r0 + 5);
	assert_int_equal(e.rev, r0 + 5);
	store_events_release(&e);

	/* from revision 0: every key ever touched under the prefix, deleted ones included */
	assert_int_equal(store_watch(s, "/w/", 0, 0, &e, &err), 0);
	assert_int_equal(e.n, 4);
	store_events_release(&e);
	assert_int_equal(store_watch(s, "", 0, 0, &e, &err), 0);
	assert_int_equal(e.n, 5);
	store_events_release(&e);

	/* a changed elsewhere only: empty, but the rev moves on */
	put_ok(s, "/other/y", "1");
	assert_int_equal(store_watch(s, "/w/", r0 + 5, 0, &e, &err), 0);
	assert_int_equal(e.n, 0);
	assert_int_equal(e.rev, r0 + 6);
	store_events_release(&e);
	store_close(s);
}

static void test_watch_behind(void **state)
{
	struct store *s = open_named("behind");
	struct store_events e = {0};
	struct store_stats st;
	struct ciel_err err = {0};
	int64_t rev;

	(void)state;
	assert_int_equal(store_set_watch_retain(s, 10, &err), 0);
	for (int i = 0; i < 40; i++) {
		char key[32];

		snprintf(key, sizeof(key), "/b/%02d", i);
		put_ok(s, key, "1");
	}
	rev = rev_of(s);
	store_stats(s, &st);
	assert_true(st.compact_rev > 0);
	assert_true(st.compact_rev >= rev - 11);

	assert_int_equal(store_watch(s, "/b/", 1, 0, &e, &err), -1);
	assert_int_equal(err.code, CIEL_ECONFLICT);
	assert_int_equal(e.n, 0);
	assert_null(e.ev);

	assert_int_equal(store_watch(s, "/b/", rev - 5, 0, &e, &err), 0);
	assert_int_equal(e.n, 5);
	assert_string_equal(e.ev[4].kv.key, "/b/39");
	store_events_release(&e);

	/* the compaction point is persisted: still behind after a restart */
	store_close(s);
	s = open_named("behind");
	assert_int_equal(store_watch(s, "/b/", 1, 0, &e, &err), -1);
	assert_int_equal(err.code, CIEL_ECONFLICT);
	store_close(s);
}

/* ---- input validation ---- */

static int hook_bad_put(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err)
{
	int *code = arg;
	struct ciel_err e = {0};

	(void)conds_ok;
	(void)err;
	*code = store_wtx_put(tx, "no-slash", "1", &e) < 0 ? e.code : 0;
	if (store_wtx_put(tx, "/ok", "\xff", &e) == 0 || e.code != CIEL_EINVAL)
		*code = -1;
	return 0;
}

static void test_bad_input(void **state)
{
	static const char *const bad_keys[] = {
	    "", "no-slash", "/bad\xff", "/over\xc0\xaf", "/cut\xe2\x82", NULL,
	};
	static const char *const bad_values[] = {
	    "\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\xe2\x82", "\x80",
	};
	struct store *s = open_named("bad");
	struct store_txn_result res;
	struct ciel_err err = {0};
	struct store_kv kv = {0};
	struct store_list l = {0};
	struct store_events e = {0};
	char *long_key = malloc(STORE_KEY_MAX + 2);
	char *big = malloc((size_t)STORE_VALUE_MAX + 2);
	int64_t r0;
	int code = 99;

	(void)state;
	assert_non_null(long_key);
	assert_non_null(big);
	put_ok(s, "/exists", "1");
	r0 = rev_of(s);

	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		err.code = 0;
		assert_int_equal(put_c(s, bad_keys[i], "1", STORE_ANY_REV, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		err.code = 0;
		assert_int_equal(store_get(s, bad_keys[i], &kv, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
	}
	for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
		err.code = 0;
		assert_int_equal(put_c(s, "/v", bad_values[i], STORE_ANY_REV, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_string_equal(err.field, "value");
	}
	assert_int_equal(put_c(s, "/v", NULL, STORE_ANY_REV, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);

	/* key length: STORE_KEY_MAX fits, one more does not */
	memset(long_key, 'k', STORE_KEY_MAX + 1);
	long_key[0] = '/';
	long_key[STORE_KEY_MAX + 1] = '\0';
	assert_int_equal(put_c(s, long_key, "1", STORE_ANY_REV, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(store_list(s, long_key, NULL, 0, &l, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	long_key[STORE_KEY_MAX] = '\0';
	put_ok(s, long_key, "1");
	assert_value(s, long_key, "1");
	r0++;

	/* value length: STORE_VALUE_MAX fits, one more does not */
	memset(big, 'a', (size_t)STORE_VALUE_MAX + 1);
	big[0] = '"';
	big[STORE_VALUE_MAX + 1] = '\0';
	assert_int_equal(put_c(s, "/big", big, STORE_ANY_REV, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	big[STORE_VALUE_MAX - 1] = '"';
	big[STORE_VALUE_MAX] = '\0';
	put_ok(s, "/big", big);
	r0++;
	assert_int_equal(store_get(s, "/big", &kv, &err), 0);
	assert_int_equal(kv.value_len, STORE_VALUE_MAX);
	assert_memory_equal(kv.value, big, STORE_VALUE_MAX + 1);
	store_kv_release(&kv);

	/* multi-byte UTF-8 is text */
	put_ok(s, "/utf8/\xc3\xa9t\xc3\xa9", "{\"s\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}");
	assert_value(s, "/utf8/\xc3\xa9t\xc3\xa9", "{\"s\":\"\xe2\x82\xac \xf0\x9f\x98\x80\"}");
	r0++;

	/* one bad op refuses the whole txn: the good op before it is not written */
	{
		struct store_op ops[] = {
		    {STORE_PUT, "/good", "1", STORE_ANY_REV},
		    {STORE_PUT, "/bad", "\xff", STORE_ANY_REV},
		};

		assert_int_equal(store_txn(s, ops, 2, NULL, NULL, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_non_null(strstr(err.msg, "op 1"));
	}
	{
		struct store_op ops[] = {
		    {STORE_PUT, "/good", "1", STORE_ANY_REV},
		    {7, "/x", "1", STORE_ANY_REV},
		    {STORE_PUT, "/x", "1", -2},
		};

		assert_int_equal(store_txn(s, ops, 2, NULL, NULL, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_int_equal(store_txn(s, ops + 2, 1, NULL, NULL, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_int_equal(store_txn(s, NULL, 1, NULL, NULL, &res, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
	}
	assert_absent(s, "/good");
	assert_int_equal(rev_of(s), r0);

	/* bad arguments to reads and watch */
	assert_int_equal(store_list(s, "/\xff", NULL, 0, &l, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(store_list(s, "/", "/\xff", 0, &l, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(store_watch(s, "/", -1, 0, &e, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(store_watch(s, "/", 0, -5, &e, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);

	/* a hook's writes are validated too */
	assert_int_equal(store_txn(s, NULL, 0, hook_bad_put, &code, &res, &err), 0);
	assert_int_equal(code, CIEL_EINVAL);
	assert_int_equal(res.rev, r0);

	/* URLs */
	{
		static char sentinel;
		struct store *t = (struct store *)&sentinel; /* must come back NULL */
		char url[256];

		assert_int_equal(store_open(&t, "etcd:http://127.0.0.1:2379", &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_null(t);
		assert_int_equal(store_open(&t, "sqlite:", &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_int_equal(store_open(&t, "/no/scheme.db", &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		snprintf(url, sizeof(url), "sqlite:%s/missing-dir/x.db", tmpdir);
		assert_int_equal(store_open(&t, url, &err), -1);
		assert_int_equal(err.code, CIEL_EIO);
		assert_null(t);
	}
	free(long_key);
	free(big);
	store_close(s);
}

/* ---- fail-stop: a failed fsync at COMMIT stops all writes ---- */

/*
 * A VFS shim over the default one whose xSync fails while fail_sync is set,
 * like SQLite's own I/O-error tests: the only honest way to make a COMMIT
 * fail from outside the store.
 */
static sqlite3_vfs *real_vfs;
static sqlite3_vfs faulty_vfs;
static atomic_int fail_sync;

struct ffile {
	sqlite3_file base;
	sqlite3_file *real; /* points just past this struct */
};

#define REAL(f) (((struct ffile *)(f))->real)

static int f_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static int f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int f_sync(sqlite3_file *f, int flags)
{
	if (atomic_load(&fail_sync))
		return SQLITE_IOERR_FSYNC;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int f_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int f_fcntl(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int f_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int f_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), o, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods faulty_io = {
    3,		f_close,       f_read,	    f_write, f_truncate, f_sync,    f_size,
    f_lock,	f_unlock,      f_reserved,  f_fcntl, f_sector,	 f_devchar, f_shm_map,
    f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
		  int *out_flags)
{
	struct ffile *f = (struct ffile *)file;
	int rc;

	(void)vfs;
	f->real = (sqlite3_file *)(f + 1);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
	f->base.pMethods = f->real->pMethods ? &faulty_io : NULL;
	return rc;
}

static void test_fail_stop(void **state)
{
	struct store *s;
	struct store_txn_result res;
	struct ciel_err err = {0};
	struct store_list l = {0};
	int64_t r0;

	(void)state;
	real_vfs = sqlite3_vfs_find(NULL);
	assert_non_null(real_vfs);
	faulty_vfs = *real_vfs;
	faulty_vfs.zName = "ciel-faulty";
	faulty_vfs.szOsFile = (int)sizeof(struct ffile) + real_vfs->szOsFile;
	faulty_vfs.xOpen = f_open;
	faulty_vfs.pNext = NULL;
	assert_int_equal(sqlite3_vfs_register(&faulty_vfs, 1), SQLITE_OK);

	s = open_named("failstop");
	put_ok(s, "/fs/a", "1");
	r0 = rev_of(s);

	atomic_store(&fail_sync, 1);
	assert_int_equal(put_c(s, "/fs/b", "1", STORE_ANY_REV, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EIO);
	atomic_store(&fail_sync, 0);

	/* the disk is fine again, but the store will not take the risk */
	assert_int_equal(put_c(s, "/fs/c", "1", STORE_ANY_REV, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_int_equal(store_txn(s, NULL, 0, seq_hook_fn, NULL, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);

	/* reads go on */
	assert_value(s, "/fs/a", "1");
	assert_absent(s, "/fs/c");
	assert_int_equal(rev_of(s), r0);
	assert_int_equal(store_list(s, "/fs/", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 1);
	store_list_release(&l);
	store_close(s);

	/* a restart recovers from the file and takes writes again */
	s = open_named("failstop");
	assert_value(s, "/fs/a", "1");
	assert_true(rev_of(s) >= r0);
	put_ok(s, "/fs/d", "1");
	assert_value(s, "/fs/d", "1");
	store_close(s);
	assert_int_equal(sqlite3_vfs_unregister(&faulty_vfs), SQLITE_OK);
}

/* ---- setup ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ciel-test-store-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    /* forks: must run while this process has no thread */
	    cmocka_unit_test(test_crash_kill9),
	    cmocka_unit_test(test_put_get_delete),
	    cmocka_unit_test(test_conditions),
	    cmocka_unit_test(test_multi_op_atomic),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_revisions_persist),
	    cmocka_unit_test(test_hook_basics),
	    cmocka_unit_test(test_reads_beside_writer),
	    cmocka_unit_test(test_cas_counter),
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_hook_order_concurrent),
	    cmocka_unit_test(test_watch),
	    cmocka_unit_test(test_watch_behind),
	    cmocka_unit_test(test_bad_input),
	    /* swaps SQLite's default VFS: last */
	    cmocka_unit_test(test_fail_stop),
	};

	return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
