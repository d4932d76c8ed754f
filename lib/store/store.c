/*
 * store — the backend-independent half of the store (see store.h): picks a
 * backend by URL scheme, validates every argument before a backend sees it,
 * and frees what reads return.
 *
 * Invariants: a backend never receives a key that does not start with '/',
 * is longer than STORE_KEY_MAX or is not UTF-8, nor a value longer than
 * STORE_VALUE_MAX or not UTF-8, nor an expect_rev below STORE_ANY_REV. A
 * transaction with one bad op is refused whole (CIEL_EINVAL) before anything
 * is queued, so nothing of it is written. Values are not parsed as JSON here:
 * that costs a parse per write on the commit path and belongs to the callers
 * that build the documents.
 */
#include "store/store.h"
#include "store/store_sqlite.h"

#include <stdlib.h>
#include <string.h>

struct store {
	const struct store_backend *be;
	void *impl;
};

static const struct store_backend *const backends[] = {
    &store_sqlite_backend,
};

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. Values end up in JSON API answers, so bytes that are not text
 * must be refused here rather than mangled there.
 */
static int utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t need;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return 0;
		}
		if (len - i - 1 < need)
			return 0;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

static int check_key(const char *key, const char *field, struct ciel_err *err)
{
	size_t len = 0;

	if (!key)
		return ciel_err_field(err, CIEL_EINVAL, field, "store: %s is missing", field);
	len = strnlen(key, STORE_KEY_MAX + 1);
	if (len == 0 || key[0] != '/')
		return ciel_err_field(err, CIEL_EINVAL, field, "store: %s must start with '/'",
				      field);
	if (len > STORE_KEY_MAX)
		return ciel_err_field(err, CIEL_EINVAL, field, "store: %s longer than %d bytes",
				      field, STORE_KEY_MAX);
	if (!utf8_valid((const unsigned char *)key, len))
		return ciel_err_field(err, CIEL_EINVAL, field, "store: %s is not valid UTF-8",
				      field);
	return 0;
}

/* A prefix or a start_after: may be NULL or "", otherwise like a key but free-form. */
static int check_bound(const char *s, const char *field, struct ciel_err *err)
{
	size_t len = 0;

	if (!s)
		return 0;
	len = strnlen(s, STORE_KEY_MAX + 1);
	if (len > STORE_KEY_MAX)
		return ciel_err_field(err, CIEL_EINVAL, field, "store: %s longer than %d bytes",
				      field, STORE_KEY_MAX);
	if (!utf8_valid((const unsigned char *)s, len))
		return ciel_err_field(err, CIEL_EINVAL, field, "store: %s is not valid UTF-8",
				      field);
	return 0;
}

static int check_value(const char *value, size_t *len_out, struct ciel_err *err)
{
	size_t len = 0;

	if (!value)
		return ciel_err_field(err, CIEL_EINVAL, "value", "store: value is missing");
	len = strnlen(value, (size_t)STORE_VALUE_MAX + 1);
	if (len > STORE_VALUE_MAX)
		return ciel_err_field(err, CIEL_EINVAL, "value",
				      "store: value longer than %u bytes", STORE_VALUE_MAX);
	if (!utf8_valid((const unsigned char *)value, len))
		return ciel_err_field(err, CIEL_EINVAL, "value", "store: value is not valid UTF-8");
	*len_out = len;
	return 0;
}

static int check_op(const struct store_op *op, size_t i, struct ciel_err *err)
{
	size_t len = 0;

	if (op->kind != STORE_PUT && op->kind != STORE_DELETE)
		return ciel_err_field(err, CIEL_EINVAL, "kind", "store: op %zu: unknown kind %d", i,
				      (int)op->kind);
	if (op->expect_rev < STORE_ANY_REV)
		return ciel_err_field(err, CIEL_EINVAL, "expect_rev",
				      "store: op %zu: expect_rev %lld is negative", i,
				      (long long)op->expect_rev);
	if (check_key(op->key, "key", err) < 0)
		goto bad;
	if (op->kind == STORE_PUT && check_value(op->value, &len, err) < 0)
		goto bad;
	return 0;
bad:
	ciel_err_prefix(err, "op %zu: ", i);
	return -1;
}

void store_kv_release(struct store_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void store_list_release(struct store_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		store_kv_release(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

void store_events_release(struct store_events *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++)
		store_kv_release(&e->ev[i].kv);
	free(e->ev);
	memset(e, 0, sizeof(*e));
}

int store_open(struct store **out, const char *url, struct ciel_err *err)
{
	const struct store_backend *be = NULL;
	const char *colon;
	struct store *s;

	if (!out || !url)
		return ciel_err_set(err, CIEL_EINVAL, "store: no url");
	*out = NULL;
	colon = strchr(url, ':');
	if (!colon)
		return ciel_err_field(err, CIEL_EINVAL, "url",
				      "store: url '%s' has no scheme (want sqlite:/path)", url);
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		size_t n = strlen(backends[i]->scheme);

		if ((size_t)(colon - url) == n && memcmp(url, backends[i]->scheme, n) == 0)
			be = backends[i];
	}
	if (!be)
		return ciel_err_field(err, CIEL_EINVAL, "url",
				      "store: unsupported scheme in url '%s'", url);
	s = calloc(1, sizeof(*s));
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "store: out of memory");
	s->be = be;
	if (be->open(&s->impl, colon + 1, err) < 0) {
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	s->be->close(s->impl);
	free(s);
}

const char *store_path(const struct store *s)
{
	if (!s)
		return "";
	return s->be->path(s->impl);
}

int store_txn(struct store *s, const struct store_op *ops, size_t n, store_hook_fn hook,
	      void *hook_arg, struct store_txn_result *res, struct ciel_err *err)
{
	struct store_txn_result local;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	res->failed_op = -1;
	if (!s)
		return ciel_err_set(err, CIEL_EINVAL, "store: no store");
	if (n > 0 && !ops)
		return ciel_err_set(err, CIEL_EINVAL, "store: %zu ops but no array", n);
	for (size_t i = 0; i < n; i++)
		if (check_op(&ops[i], i, err) < 0)
			return -1;
	return s->be->txn(s->impl, ops, n, hook, hook_arg, res, err);
}

int store_get(struct store *s, const char *key, struct store_kv *out, struct ciel_err *err)
{
	if (!out)
		return ciel_err_set(err, CIEL_EINVAL, "store: no output");
	memset(out, 0, sizeof(*out));
	if (!s)
		return ciel_err_set(err, CIEL_EINVAL, "store: no store");
	if (check_key(key, "key", err) < 0)
		return -1;
	return s->be->get(s->impl, key, out, err);
}

int store_list(struct store *s, const char *prefix, const char *start_after, size_t limit,
	       struct store_list *out, struct ciel_err *err)
{
	if (!out)
		return ciel_err_set(err, CIEL_EINVAL, "store: no output");
	memset(out, 0, sizeof(*out));
	if (!s)
		return ciel_err_set(err, CIEL_EINVAL, "store: no store");
	if (check_bound(prefix, "prefix", err) < 0 ||
	    check_bound(start_after, "start_after", err) < 0)
		return -1;
	return s->be->list(s->impl, prefix ? prefix : "", start_after ? start_after : "", limit,
			   out, err);
}

int store_rev(struct store *s, int64_t *rev, struct ciel_err *err)
{
	if (!s || !rev)
		return ciel_err_set(err, CIEL_EINVAL, "store: no store or output");
	return s->be->rev(s->impl, rev, err);
}

int store_watch(struct store *s, const char *prefix, int64_t after_rev, int timeout_ms,
		struct store_events *out, struct ciel_err *err)
{
	if (!out)
		return ciel_err_set(err, CIEL_EINVAL, "store: no output");
	memset(out, 0, sizeof(*out));
	if (!s)
		return ciel_err_set(err, CIEL_EINVAL, "store: no store");
	if (check_bound(prefix, "prefix", err) < 0)
		return -1;
	if (after_rev < 0)
		return ciel_err_field(err, CIEL_EINVAL, "after_rev",
				      "store: after_rev %lld is negative", (long long)after_rev);
	if (timeout_ms < 0)
		return ciel_err_field(err, CIEL_EINVAL, "timeout_ms",
				      "store: timeout_ms %d is negative", timeout_ms);
	return s->be->watch(s->impl, prefix ? prefix : "", after_rev, timeout_ms, out, err);
}

int store_wtx_get(struct store_wtx *tx, const char *key, struct store_kv *out, struct ciel_err *err)
{
	if (!out)
		return ciel_err_set(err, CIEL_EINVAL, "store: no output");
	memset(out, 0, sizeof(*out));
	if (!tx)
		return ciel_err_set(err, CIEL_EINVAL, "store: no transaction");
	if (check_key(key, "key", err) < 0)
		return -1;
	return tx->get(tx, key, out, err);
}

int store_wtx_put(struct store_wtx *tx, const char *key, const char *value, struct ciel_err *err)
{
	size_t len = 0;

	if (!tx)
		return ciel_err_set(err, CIEL_EINVAL, "store: no transaction");
	if (check_key(key, "key", err) < 0 || check_value(value, &len, err) < 0)
		return -1;
	return tx->put(tx, key, value, len, err);
}

int64_t store_wtx_rev(struct store_wtx *tx)
{
	return tx ? tx->rev : 0;
}

void store_stats(struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (s && s->be->stats)
		s->be->stats(s->impl, out);
}

int store_set_watch_retain(struct store *s, int64_t revs, struct ciel_err *err)
{
	if (!s || revs < 1)
		return ciel_err_set(err, CIEL_EINVAL, "store: retain must be >= 1");
	if (!s->be->set_retain)
		return ciel_err_set(err, CIEL_EINVAL, "store: backend has no watch log to size");
	return s->be->set_retain(s->impl, revs, err);
}
