/*
 * audit — the tamper-evident audit trail (see audit.h for the layout).
 *
 * Canonical form: every document this module writes (event, head,
 * checkpoint) is json_dumps(obj, AUDIT_JSON_FLAGS) = compact, keys sorted,
 * everything outside ASCII escaped as \uXXXX. The stored bytes are pure
 * ASCII and a function of the values alone, so the verifier can demand that
 * re-dumping a parsed event gives back exactly the stored bytes: any byte
 * change is caught, even one a JSON parser would tolerate (a space, "\u0041"
 * for "A"). The hash is taken over the same form without "hash".
 *
 * Invariants:
 * - Appends happen only in audit_hook / cp_hook, which the store runs one at a
 *   time in commit order; seq is head.seq + 1 and prev is head.hash.
 * - The cached head of a chain is changed only after its store puts
 *   succeeded. A commit that fails after the hook leaves the cache ahead of
 *   the disk, but the SQLite store then refuses every later write
 *   (fail-stop), so no event can be built on the phantom head.
 * - Checkpoints are put at every seq that is a multiple of checkpoint_every,
 *   and by audit_tick at the head of a chain whose unsigned tail is older
 *   than checkpoint_secs; the signature covers
 *   "ciel-audit-checkpoint\n<chain>\n<seq>\n<hash>\n<time>\n".
 * - An event key is never overwritten: a head loaded from the store must
 *   have a free slot after it (a missing or rolled-back head refuses the
 *   append instead of writing over the trail).
 * - The heads of all chains in the store are cached at open, so audit_tick
 *   also signs tails a previous run left unsigned (their age counts from
 *   the load: the head does not say when the tail began).
 * - The cache is a hash map guarded by a mutex: hooks and audit_tick (another
 *   thread) use it. The mutex is never held while calling store_txn, which
 *   would deadlock against a hook waiting for it.
 * - audit_verify and audit_scan read the store page by page and never hold
 *   more than two pages; they do not touch the cache.
 */
#include "audit/audit.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/enc.h"
#include "crypto/pki.h"
#include "util/log.h"
#include "util/ts.h"

#define AUDIT_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define AUDIT_FIELD_MAX 512 /* bytes of one event string, after UTF-8 cleaning */
#define AUDIT_CHAIN_MAX 64
#ifndef AUDIT_PAGE
#define AUDIT_PAGE 1000 /* keys per store_list call in verify/scan; tests shrink it */
#endif
#define AUDIT_MAX_TIME_MS 253402300799999LL /* 9999-12-31T23:59:59.999Z */
#define CP_DOMAIN "ciel-audit-checkpoint"

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct chain_head {
	struct chain_head *next;
	char name[AUDIT_CHAIN_MAX + 1];
	int64_t seq;	      /* last event, 0 for an empty chain */
	char hash[65];	      /* its hash, zero_hash for an empty chain */
	int64_t cp_seq;	      /* == seq when the head is signed; < seq: unsigned tail */
	int64_t tail_mono_ms; /* when the tail became unsigned (ts_mono_ms) */
};

struct audit {
	struct store *s;
	EVP_PKEY *key;
	char pub_hex[65];
	int every;
	int secs;
	pthread_mutex_t mu; /* guards the map below */
	struct chain_head **buckets;
	size_t nbuckets;
	size_t nheads;
};

/* ---- names, fields, keys ---- */

static int chain_valid(const char *c)
{
	size_t n = 0;

	if (!c)
		return 0;
	for (; c[n]; n++) {
		if (n >= AUDIT_CHAIN_MAX)
			return 0;
		if (!((c[n] >= 'a' && c[n] <= 'z') || (c[n] >= '0' && c[n] <= '9') || c[n] == '-'))
			return 0;
	}
	return n > 0;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, surrogates or code points past U+10FFFF), 0 if there is none.
 * Continuation bytes are read only while the previous one was one, so a
 * sequence cut by the terminating NUL never reads past it. */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/*
 * Copy an event string into out: NULL becomes "", bytes that are not valid
 * UTF-8 become '?' (jansson refuses them, and the event must still be
 * written), and the result is cut at a character boundary to at most
 * AUDIT_FIELD_MAX bytes. Request paths and peer strings are untrusted.
 */
static void field_clean(const char *in, char out[AUDIT_FIELD_MAX + 1])
{
	const unsigned char *p = (const unsigned char *)(in ? in : "");
	size_t o = 0, n;

	while (*p) {
		n = utf8_seq(p);
		if (n == 0) {
			if (o + 1 > AUDIT_FIELD_MAX)
				break;
			out[o++] = '?';
			p++;
			continue;
		}
		if (o + n > AUDIT_FIELD_MAX)
			break;
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
}

static int chain_err(struct ciel_err *err)
{
	return ciel_err_field(err, CIEL_EINVAL, "chain",
			      "audit: chain must be 1-64 characters of [a-z0-9-]");
}

static void key_of(char *out, size_t n, const char *chain, const char *kind, int64_t seq)
{
	snprintf(out, n, "/audit/%s/%s/%016" PRId64, chain, kind, seq);
}

static void head_key(char *out, size_t n, const char *chain)
{
	snprintf(out, n, "/audit/%s/head", chain);
}

/* The seq of key = prefix + 16 digits exactly; -1 for anything else. */
static int64_t key_seq(const char *key, const char *prefix)
{
	size_t pl = strlen(prefix);
	int64_t v = 0;

	if (strncmp(key, prefix, pl) != 0 || strlen(key + pl) != 16)
		return -1;
	for (const char *p = key + pl; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static int is_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static char *canon(const json_t *o)
{
	return json_dumps(o, AUDIT_JSON_FLAGS);
}

static int set_new(json_t *o, const char *k, json_t *v)
{
	return v ? json_object_set_new(o, k, v) : -1;
}

/* Release and zero, so a second release on any later path is harmless. */
static void kv_drop(struct store_kv *kv)
{
	store_kv_release(kv);
	memset(kv, 0, sizeof(*kv));
}

static void list_drop(struct store_list *l)
{
	store_list_release(l);
	memset(l, 0, sizeof(*l));
}

/* ---- events, heads, checkpoints ---- */

/* The event without "hash"; caller json_decref()s. NULL on ENOMEM. */
static json_t *event_build(const struct audit_event *ev, const char *chain, int64_t seq,
			   const char *prev, int status, const char *error)
{
	char f[7][AUDIT_FIELD_MAX + 1], t[TS_RFC3339_LEN];
	int64_t ms = ev->time_ms;
	json_t *o = json_object(), *actor = json_object();
	int bad = 0;

	if (ms <= 0 || ms > AUDIT_MAX_TIME_MS)
		ms = ts_now_ms();
	ts_format(ms, t);
	field_clean(ev->request_id, f[0]);
	field_clean(ev->actor_tenant, f[1]);
	field_clean(ev->actor_principal, f[2]);
	field_clean(ev->actor_key, f[3]);
	field_clean(ev->action, f[4]);
	field_clean(ev->target, f[5]);
	field_clean(ev->source, f[6]);
	if (!o || !actor) {
		json_decref(o);
		json_decref(actor);
		return NULL;
	}
	bad |= set_new(actor, "tenant", json_string(f[1]));
	bad |= set_new(actor, "principal", json_string(f[2]));
	bad |= set_new(actor, "key", json_string(f[3]));
	bad |= set_new(o, "actor", actor);
	bad |= set_new(o, "seq", json_integer(seq));
	bad |= set_new(o, "time", json_string(t));
	bad |= set_new(o, "chain", json_string(chain));
	bad |= set_new(o, "request_id", json_string(f[0]));
	bad |= set_new(o, "action", json_string(f[4]));
	bad |= set_new(o, "target", json_string(f[5]));
	bad |= set_new(o, "source", json_string(f[6]));
	bad |= set_new(o, "status", json_integer(status));
	bad |= set_new(o, "error", json_string(error));
	bad |= set_new(o, "prev", json_string(prev));
	if (ev->detail && json_is_object(ev->detail))
		bad |= set_new(o, "detail", json_deep_copy(ev->detail));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Hash o (which has no "hash" yet), add it, and dump the whole event.
 * *out is malloc'd (caller frees). */
static int event_seal(json_t *o, char hash[65], char **out, struct ciel_err *err)
{
	char *body = canon(o);

	if (!body)
		return ciel_err_set(err, CIEL_ENOMEM, "audit: encode event");
	enc_sha256_hex(body, strlen(body), hash);
	free(body);
	if (set_new(o, "hash", json_string(hash)) < 0)
		return ciel_err_set(err, CIEL_ENOMEM, "audit: encode event");
	*out = canon(o);
	if (!*out)
		return ciel_err_set(err, CIEL_ENOMEM, "audit: encode event");
	return 0;
}

static char *head_encode(int64_t seq, const char *hash)
{
	json_t *o = json_pack("{s:I,s:s}", "seq", (json_int_t)seq, "hash", hash);
	char *s = o ? canon(o) : NULL;

	json_decref(o);
	return s;
}

static int head_decode(const char *v, size_t len, int64_t *seq, char hash[65])
{
	json_t *o = json_loadb(v, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *js = json_object_get(o, "seq"), *jh = json_object_get(o, "hash");
	int ret = -1;

	if (!json_is_integer(js) || json_integer_value(js) < 0 || !is_hex64(json_string_value(jh)))
		goto out;
	*seq = json_integer_value(js);
	memcpy(hash, json_string_value(jh), 65);
	if (*seq == 0 && strcmp(hash, zero_hash) != 0)
		goto out;
	ret = 0;
out:
	json_decref(o);
	return ret;
}

static int cp_message(char *buf, size_t n, const char *chain, int64_t seq, const char *hash,
		      const char *time)
{
	int len = snprintf(buf, n, CP_DOMAIN "\n%s\n%" PRId64 "\n%s\n%s\n", chain, seq, hash, time);

	return len < 0 || (size_t)len >= n ? -1 : len;
}

/* A signed checkpoint of (chain, seq, hash) now; *out malloc'd. */
static int cp_encode(struct audit *a, const char *chain, int64_t seq, const char *hash, char **out,
		     struct ciel_err *err)
{
	char t[TS_RFC3339_LEN], msg[256];
	unsigned char sig[64];
	char *b64 = NULL;
	json_t *o = NULL;
	int len;

	ts_format(ts_now_ms(), t);
	len = cp_message(msg, sizeof(msg), chain, seq, hash, t);
	if (len < 0)
		return ciel_err_set(err, CIEL_EINTERNAL, "audit: checkpoint message too long");
	if (pki_ed25519_sign(a->key, msg, (size_t)len, sig, err) < 0) {
		ciel_err_prefix(err, "audit: sign checkpoint: ");
		return -1;
	}
	b64 = enc_b64(sig, sizeof(sig));
	if (b64)
		o = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s}", "chain", chain, "seq", (json_int_t)seq,
			      "hash", hash, "time", t, "sig", b64, "key", a->pub_hex);
	*out = o ? canon(o) : NULL;
	json_decref(o);
	free(b64);
	if (!*out)
		return ciel_err_set(err, CIEL_ENOMEM, "audit: encode checkpoint");
	return 0;
}

/* ---- the head cache ---- */

static size_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

/* Caller holds a->mu. */
static struct chain_head *cache_find(struct audit *a, const char *chain)
{
	struct chain_head *h = a->buckets[name_hash(chain) & (a->nbuckets - 1)];

	while (h && strcmp(h->name, chain) != 0)
		h = h->next;
	return h;
}

/* Insert a copy of h (whose name is not cached yet). Caller holds a->mu. */
static int cache_insert(struct audit *a, const struct chain_head *h, struct ciel_err *err)
{
	struct chain_head *n;
	size_t b;

	if (a->nheads >= a->nbuckets) {
		size_t nb = a->nbuckets * 2;
		struct chain_head **nbk = calloc(nb, sizeof(*nbk));

		if (!nbk)
			return ciel_err_set(err, CIEL_ENOMEM, "audit: grow chain cache");
		for (size_t i = 0; i < a->nbuckets; i++) {
			while (a->buckets[i]) {
				struct chain_head *c = a->buckets[i];

				a->buckets[i] = c->next;
				b = name_hash(c->name) & (nb - 1);
				c->next = nbk[b];
				nbk[b] = c;
			}
		}
		free(a->buckets);
		a->buckets = nbk;
		a->nbuckets = nb;
	}
	n = malloc(sizeof(*n));
	if (!n)
		return ciel_err_set(err, CIEL_ENOMEM, "audit: cache chain head");
	*n = *h;
	b = name_hash(n->name) & (a->nbuckets - 1);
	n->next = a->buckets[b];
	a->buckets[b] = n;
	a->nheads++;
	return 0;
}

/* ---- appending (inside the store's writer) ---- */

/* 1 if key exists in tx, 0 if not, -1 on error. */
static int wtx_exists(struct store_wtx *tx, const char *key, struct ciel_err *err)
{
	struct store_kv kv = {0};
	struct ciel_err e = {0};

	if (store_wtx_get(tx, key, &kv, &e) == 0) {
		kv_drop(&kv);
		return 1;
	}
	if (e.code == CIEL_ENOTFOUND)
		return 0;
	if (err)
		*err = e;
	return -1;
}

/*
 * Read the head of chain through tx into h; an absent head is an empty
 * chain. The slot after the head must be free: a head that is missing or
 * behind the events (damage, or tampering) must not make the next append
 * overwrite an event, so the chain is refused until someone looks at it.
 */
static int head_load_wtx(struct store_wtx *tx, const char *chain, struct chain_head *h,
			 struct ciel_err *err)
{
	char key[STORE_KEY_MAX];
	struct store_kv kv = {0};
	struct ciel_err e = {0};
	int r;

	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", chain);
	memcpy(h->hash, zero_hash, sizeof(h->hash));
	head_key(key, sizeof(key), chain);
	if (store_wtx_get(tx, key, &kv, &e) == 0) {
		r = head_decode(kv.value, kv.value_len, &h->seq, h->hash);
		kv_drop(&kv);
		if (r < 0)
			return ciel_err_set(err, CIEL_EINTERNAL,
					    "audit: head of chain %s is corrupt", chain);
	} else if (e.code != CIEL_ENOTFOUND) {
		if (err)
			*err = e;
		goto fail;
	}
	h->cp_seq = h->seq;

	key_of(key, sizeof(key), chain, "e", h->seq + 1);
	r = wtx_exists(tx, key, err);
	if (r < 0)
		goto fail;
	if (r)
		return ciel_err_set(err, CIEL_EINTERNAL,
				    "audit: chain %s has an event at seq %" PRId64
				    " past its head; refusing to overwrite it",
				    chain, h->seq + 1);
	if (h->seq == 0)
		return 0;
	key_of(key, sizeof(key), chain, "cp", h->seq);
	r = wtx_exists(tx, key, err);
	if (r < 0)
		goto fail;
	if (!r) {
		/* Not knowing since when the tail is unsigned, start the clock now. */
		h->cp_seq = 0;
		h->tail_mono_ms = ts_mono_ms();
	}
	return 0;
fail:
	ciel_err_prefix(err, "audit: read head of chain %s: ", chain);
	return -1;
}

/* Caller holds a->mu. */
static int append_locked(struct audit_append *ap, struct store_wtx *tx, int conds_ok,
			 struct ciel_err *err)
{
	struct audit *a = ap->audit;
	const char *chain = ap->ev.chain;
	struct chain_head *cached = cache_find(a, chain), h;
	char key[STORE_KEY_MAX], hash[65];
	char *event = NULL, *head = NULL, *cp = NULL;
	json_t *o = NULL;
	int64_t seq;
	int ret = -1;

	if (cached)
		h = *cached;
	else if (head_load_wtx(tx, chain, &h, err) < 0)
		return -1;
	seq = h.seq + 1;
	o = event_build(&ap->ev, chain, seq, h.hash, conds_ok ? ap->ev.status : 409,
			conds_ok ? (ap->ev.error_code ? ap->ev.error_code : "")
				 : ciel_code_name(CIEL_ECONFLICT));
	if (!o) {
		ciel_err_set(err, CIEL_ENOMEM, "audit: build event");
		goto out;
	}
	if (event_seal(o, hash, &event, err) < 0)
		goto out;
	head = head_encode(seq, hash);
	if (!head) {
		ciel_err_set(err, CIEL_ENOMEM, "audit: encode head");
		goto out;
	}
	if (seq % a->every == 0 && cp_encode(a, chain, seq, hash, &cp, err) < 0)
		goto out;

	key_of(key, sizeof(key), chain, "e", seq);
	if (store_wtx_put(tx, key, event, err) < 0)
		goto out_prefix;
	head_key(key, sizeof(key), chain);
	if (store_wtx_put(tx, key, head, err) < 0)
		goto out_prefix;
	if (cp) {
		key_of(key, sizeof(key), chain, "cp", seq);
		if (store_wtx_put(tx, key, cp, err) < 0)
			goto out_prefix;
	}

	/* Everything is in the transaction: only now move the cached head. */
	if (cp)
		h.cp_seq = seq;
	else if (h.cp_seq == h.seq)
		h.tail_mono_ms = ts_mono_ms();
	h.seq = seq;
	memcpy(h.hash, hash, sizeof(h.hash));
	if (cached) {
		h.next = cached->next;
		*cached = h;
	} else if (cache_insert(a, &h, err) < 0) {
		goto out;
	}
	ap->seq_out = seq;
	ret = 0;
	goto out;
out_prefix:
	ciel_err_prefix(err, "audit: append to chain %s: ", chain);
out:
	json_decref(o);
	free(event);
	free(head);
	free(cp);
	return ret;
}

int audit_hook(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err)
{
	struct audit_append *ap = arg;
	int ret;

	if (!ap || !ap->audit || !tx)
		return ciel_err_set(err, CIEL_EINVAL, "audit: hook without an append");
	if (!chain_valid(ap->ev.chain))
		return chain_err(err);
	pthread_mutex_lock(&ap->audit->mu);
	ret = append_locked(ap, tx, conds_ok, err);
	pthread_mutex_unlock(&ap->audit->mu);
	return ret;
}

int audit_record(struct audit *a, const struct audit_event *ev, struct ciel_err *err)
{
	struct audit_append ap = {.audit = a};
	struct store_txn_result res;

	if (!a || !ev)
		return ciel_err_set(err, CIEL_EINVAL, "audit: no event");
	/* Refuse before opening a transaction for nothing. */
	if (!chain_valid(ev->chain))
		return chain_err(err);
	ap.ev = *ev;
	return store_txn(a->s, NULL, 0, audit_hook, &ap, &res, err);
}

/* ---- time-based checkpoints ---- */

struct cp_job {
	struct audit *a;
	const char *chain;
};

static int cp_hook(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err)
{
	struct cp_job *j = arg;
	struct audit *a = j->a;
	struct chain_head *h;
	char key[STORE_KEY_MAX], *cp = NULL;
	int ret = -1;

	(void)conds_ok;
	pthread_mutex_lock(&a->mu);
	h = cache_find(a, j->chain);
	/* An append may have signed it since audit_tick looked. */
	if (!h || h->cp_seq >= h->seq) {
		ret = 0;
		goto out;
	}
	if (cp_encode(a, h->name, h->seq, h->hash, &cp, err) < 0)
		goto out;
	key_of(key, sizeof(key), h->name, "cp", h->seq);
	if (store_wtx_put(tx, key, cp, err) < 0) {
		ciel_err_prefix(err, "audit: checkpoint chain %s: ", h->name);
		goto out;
	}
	h->cp_seq = h->seq;
	ret = 0;
out:
	pthread_mutex_unlock(&a->mu);
	free(cp);
	return ret;
}

int audit_tick(struct audit *a, struct ciel_err *err)
{
	int64_t now = ts_mono_ms(), age_ms = (int64_t)a->secs * 1000;
	char(*due)[AUDIT_CHAIN_MAX + 1] = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	/* Collect first: store_txn must not run under a->mu (its hook takes it). */
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->nbuckets; i++) {
		for (struct chain_head *h = a->buckets[i]; h; h = h->next) {
			if (h->cp_seq >= h->seq || now - h->tail_mono_ms < age_ms)
				continue;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 8;
				void *p = realloc(due, nc * sizeof(*due));

				if (!p) {
					pthread_mutex_unlock(&a->mu);
					free(due);
					return ciel_err_set(err, CIEL_ENOMEM, "audit: tick");
				}
				due = p;
				cap = nc;
			}
			memcpy(due[n++], h->name, sizeof(h->name));
		}
	}
	pthread_mutex_unlock(&a->mu);

	for (size_t i = 0; i < n; i++) {
		struct cp_job j = {.a = a, .chain = due[i]};
		struct store_txn_result res;

		if (store_txn(a->s, NULL, 0, cp_hook, &j, &res, err) < 0) {
			ret = -1;
			break;
		}
	}
	free(due);
	return ret;
}

/* ---- open / close ---- */

/* 1 if key exists in the store, 0 if not, -1 on error. */
static int key_exists(struct store *s, const char *key, struct ciel_err *err)
{
	struct store_kv kv = {0};
	struct ciel_err e = {0};

	if (store_get(s, key, &kv, &e) == 0) {
		kv_drop(&kv);
		return 1;
	}
	if (e.code == CIEL_ENOTFOUND)
		return 0;
	if (err)
		*err = e;
	return -1;
}

/*
 * Cache the head of every chain already in the store, so that audit_tick
 * signs a tail left unsigned by the previous run. Chains are found by
 * skipping: after a key "/audit/<chain>/...", list from "/audit/<chain>0",
 * which sorts after every key of that chain ('0' follows '/') and before
 * any later chain.
 */
static int cache_preload(struct audit *a, struct ciel_err *err)
{
	char after[STORE_KEY_MAX + 8] = "", key[STORE_KEY_MAX];
	struct store_list l = {0};
	struct store_kv kv = {0};
	struct ciel_err e = {0};
	int r, ret = -1;

	for (;;) {
		const char *name, *slash;
		struct chain_head h = {0};
		size_t len;

		if (store_list(a->s, "/audit/", after, 1, &l, err) < 0)
			goto out;
		if (l.n == 0)
			break;
		name = l.items[0].key + strlen("/audit/");
		slash = strchr(name, '/');
		len = slash ? (size_t)(slash - name) : strlen(name);
		snprintf(after, sizeof(after), "/audit/%.*s%s", (int)len, name, slash ? "0" : "");
		if (len > 0 && len <= AUDIT_CHAIN_MAX) {
			memcpy(h.name, name, len);
			h.name[len] = '\0';
		}
		list_drop(&l);
		if (!chain_valid(h.name))
			continue;
		head_key(key, sizeof(key), h.name);
		if (store_get(a->s, key, &kv, &e) < 0) {
			if (e.code == CIEL_ENOTFOUND)
				continue; /* the hook's head load decides */
			if (err)
				*err = e;
			goto out;
		}
		r = head_decode(kv.value, kv.value_len, &h.seq, h.hash);
		kv_drop(&kv);
		if (r < 0) {
			log_warn("audit head is corrupt chain=%s", h.name);
			continue;
		}
		/* A head behind its events is left to the hook, which refuses it. */
		key_of(key, sizeof(key), h.name, "e", h.seq + 1);
		r = key_exists(a->s, key, err);
		if (r < 0)
			goto out;
		if (r) {
			log_warn("audit head is behind its events chain=%s seq=%" PRId64, h.name,
				 h.seq);
			continue;
		}
		h.cp_seq = h.seq;
		if (h.seq > 0) {
			key_of(key, sizeof(key), h.name, "cp", h.seq);
			r = key_exists(a->s, key, err);
			if (r < 0)
				goto out;
			if (!r) {
				h.cp_seq = 0;
				h.tail_mono_ms = ts_mono_ms();
			}
		}
		if (cache_insert(a, &h, err) < 0)
			goto out;
	}
	ret = 0;
out:
	list_drop(&l);
	kv_drop(&kv);
	return ret;
}

int audit_open(struct audit **out, struct store *s, const char *key_path, int checkpoint_every,
	       int checkpoint_secs, struct ciel_err *err)
{
	unsigned char pub[32];
	struct audit *a;

	*out = NULL;
	if (!s || !key_path || checkpoint_every <= 0 || checkpoint_secs <= 0)
		return ciel_err_set(
		    err, CIEL_EINVAL,
		    "audit: need a store, a key path and positive checkpoint intervals");
	a = calloc(1, sizeof(*a));
	if (!a)
		return ciel_err_set(err, CIEL_ENOMEM, "audit: open");
	a->s = s;
	a->every = checkpoint_every;
	a->secs = checkpoint_secs;
	a->nbuckets = 64;
	a->buckets = calloc(a->nbuckets, sizeof(*a->buckets));
	if (!a->buckets || pthread_mutex_init(&a->mu, NULL) != 0) {
		free(a->buckets);
		free(a);
		return ciel_err_set(err, CIEL_ENOMEM, "audit: open");
	}
	if (pki_ed25519_load_or_create(key_path, &a->key, err) < 0 ||
	    pki_ed25519_public(a->key, pub, err) < 0) {
		ciel_err_prefix(err, "audit: checkpoint key %s: ", key_path);
		goto fail;
	}
	enc_hex(pub, sizeof(pub), a->pub_hex);
	if (cache_preload(a, err) < 0) {
		ciel_err_prefix(err, "audit: load chain heads: ");
		goto fail;
	}
	*out = a;
	return 0;
fail:
	audit_close(a);
	return -1;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nbuckets; i++) {
		while (a->buckets[i]) {
			struct chain_head *h = a->buckets[i];

			a->buckets[i] = h->next;
			free(h);
		}
	}
	free(a->buckets);
	EVP_PKEY_free(a->key);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

void audit_public_key_hex(struct audit *a, char out[65])
{
	memcpy(out, a->pub_hex, 65);
}

/* ---- reading: one page of keys at a time ---- */

struct walk {
	struct store *s;
	char prefix[STORE_KEY_MAX + 1];
	char after[STORE_KEY_MAX + 1];
	struct store_list page;
	size_t i;
	int done;
};

static void walk_init(struct walk *w, struct store *s, const char *chain, const char *kind,
		      int64_t after_seq)
{
	memset(w, 0, sizeof(*w));
	w->s = s;
	snprintf(w->prefix, sizeof(w->prefix), "/audit/%s/%s/", chain, kind);
	if (after_seq > 0)
		key_of(w->after, sizeof(w->after), chain, kind, after_seq);
}

/* 1 and *kv (valid until the next call) for the next key, 0 at the end. */
static int walk_next(struct walk *w, struct store_kv **kv, struct ciel_err *err)
{
	if (w->i < w->page.n) {
		*kv = &w->page.items[w->i++];
		return 1;
	}
	if (w->done)
		return 0;
	if (w->page.n > 0)
		snprintf(w->after, sizeof(w->after), "%s", w->page.items[w->page.n - 1].key);
	list_drop(&w->page);
	w->i = 0;
	if (store_list(w->s, w->prefix, w->after, AUDIT_PAGE, &w->page, err) < 0)
		return -1;
	if (!w->page.more || w->page.n == 0)
		w->done = 1;
	if (w->page.n == 0)
		return 0;
	*kv = &w->page.items[w->i++];
	return 1;
}

static void walk_release(struct walk *w)
{
	list_drop(&w->page);
}

/* ---- verify ---- */

struct vctx {
	struct audit *a;
	const char *chain;
	struct audit_verify_result *res;
};

static int vbad(struct vctx *v, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first break; returns 1 so callers can `return vbad(...)`. */
static int vbad(struct vctx *v, int64_t seq, const char *fmt, ...)
{
	va_list ap;

	v->res->ok = 0;
	v->res->first_bad_seq = seq;
	va_start(ap, fmt);
	vsnprintf(v->res->reason, sizeof(v->res->reason), fmt, ap);
	va_end(ap);
	return 1;
}

/*
 * Check the event stored at seq: 0 if sound (its hash into hash_out), 1 if
 * broken (reason recorded), -1 on failure to check.
 */
static int check_event(struct vctx *v, const struct store_kv *kv, int64_t seq,
		       const char *prev_hash, char hash_out[65], struct ciel_err *err)
{
	json_t *o = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
	const char *chain, *prev, *h;
	char *dump = NULL, stored[65], calc[65];
	json_t *js;
	int ret = 1;

	if (!json_is_object(o)) {
		vbad(v, seq, "seq %" PRId64 ": not a JSON object (stored event was modified)", seq);
		goto out;
	}
	dump = canon(o);
	if (!dump) {
		ret = ciel_err_set(err, CIEL_ENOMEM, "audit: verify");
		goto out;
	}
	if (strlen(dump) != kv->value_len || memcmp(dump, kv->value, kv->value_len) != 0) {
		vbad(v, seq, "seq %" PRId64 ": not in canonical form (stored event was modified)",
		     seq);
		goto out;
	}
	free(dump);
	dump = NULL;
	js = json_object_get(o, "seq");
	if (!json_is_integer(js) || json_integer_value(js) != seq) {
		vbad(v, seq, "seq %" PRId64 ": seq member does not match its key", seq);
		goto out;
	}
	chain = json_string_value(json_object_get(o, "chain"));
	if (!chain || strcmp(chain, v->chain) != 0) {
		vbad(v, seq, "seq %" PRId64 ": chain member is not %s", seq, v->chain);
		goto out;
	}
	h = json_string_value(json_object_get(o, "hash"));
	prev = json_string_value(json_object_get(o, "prev"));
	if (!is_hex64(h) || !is_hex64(prev) || !json_is_string(json_object_get(o, "time"))) {
		vbad(v, seq, "seq %" PRId64 ": hash, prev or time missing or malformed", seq);
		goto out;
	}
	memcpy(stored, h, sizeof(stored));
	if (strcmp(prev, prev_hash) != 0) {
		/* Check the event's own hash first: a modified event is the
		 * more precise diagnosis than the link it also breaks. */
		prev = NULL;
	}
	json_object_del(o, "hash");
	dump = canon(o);
	if (!dump) {
		ret = ciel_err_set(err, CIEL_ENOMEM, "audit: verify");
		goto out;
	}
	enc_sha256_hex(dump, strlen(dump), calc);
	if (strcmp(calc, stored) != 0) {
		vbad(v, seq, "seq %" PRId64 ": hash mismatch (stored event was modified)", seq);
		goto out;
	}
	if (!prev) {
		if (seq == 1)
			vbad(v, seq, "seq 1: prev is not the chain start (64 zeros)");
		else
			vbad(v, seq, "seq %" PRId64 ": prev does not match hash of seq %" PRId64,
			     seq, seq - 1);
		goto out;
	}
	memcpy(hash_out, stored, 65);
	ret = 0;
out:
	free(dump);
	json_decref(o);
	return ret;
}

/* Check the checkpoint stored at seq against the event hash there: 0, 1 or -1 as above. */
static int check_cp(struct vctx *v, const struct store_kv *kv, int64_t seq, const char *hash,
		    struct ciel_err *err)
{
	json_t *o = json_loadb(kv->value, kv->value_len, JSON_REJECT_DUPLICATES, NULL);
	const char *chain, *h, *t, *sig, *key;
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	char msg[256];
	struct ciel_err e = {0};
	json_t *js;
	int len, ret = 1;

	chain = json_string_value(json_object_get(o, "chain"));
	h = json_string_value(json_object_get(o, "hash"));
	t = json_string_value(json_object_get(o, "time"));
	sig = json_string_value(json_object_get(o, "sig"));
	key = json_string_value(json_object_get(o, "key"));
	js = json_object_get(o, "seq");
	if (!chain || !h || !t || !sig || !json_is_integer(js)) {
		vbad(v, seq, "checkpoint %" PRId64 ": malformed", seq);
		goto out;
	}
	if (strcmp(chain, v->chain) != 0 || json_integer_value(js) != seq) {
		vbad(v, seq, "checkpoint %" PRId64 ": chain or seq does not match its key", seq);
		goto out;
	}
	len = cp_message(msg, sizeof(msg), chain, seq, h, t);
	if (len < 0 || enc_unb64(sig, &raw, &raw_len) < 0 || raw_len != 64) {
		vbad(v, seq, "checkpoint %" PRId64 ": bad signature", seq);
		goto out;
	}
	if (pki_ed25519_verify(v->a->key, msg, (size_t)len, raw, &e) < 0) {
		if (e.code != CIEL_EPERM) {
			if (err)
				*err = e;
			ciel_err_prefix(err, "audit: verify checkpoint: ");
			ret = -1;
			goto out;
		}
		if (key && strcmp(key, v->a->pub_hex) != 0)
			vbad(v, seq,
			     "checkpoint %" PRId64 ": bad signature (signed by another key)", seq);
		else
			vbad(v, seq, "checkpoint %" PRId64 ": bad signature", seq);
		goto out;
	}
	if (strcmp(h, hash) != 0) {
		vbad(v, seq, "checkpoint %" PRId64 ": signed hash does not match seq %" PRId64, seq,
		     seq);
		goto out;
	}
	v->res->checkpoints++;
	ret = 0;
out:
	free(raw);
	json_decref(o);
	return ret;
}

/* Head of chain from the store: 0 (absent = empty chain), 1 if corrupt, -1 on error. */
static int head_read(struct store *s, const char *chain, int64_t *seq, char hash[65],
		     struct ciel_err *err)
{
	char key[STORE_KEY_MAX];
	struct store_kv kv = {0};
	struct ciel_err e = {0};
	int ret;

	*seq = 0;
	memcpy(hash, zero_hash, 65);
	head_key(key, sizeof(key), chain);
	if (store_get(s, key, &kv, &e) < 0) {
		if (e.code == CIEL_ENOTFOUND)
			return 0;
		if (err)
			*err = e;
		return -1;
	}
	ret = head_decode(kv.value, kv.value_len, seq, hash) < 0 ? 1 : 0;
	kv_drop(&kv);
	return ret;
}

/*
 * A key past the head read at the start is fine if a concurrent append put
 * it (the head has moved past it since); otherwise the head was rolled back
 * under it. 0 if fine, 1 if broken, -1 on error.
 */
static int check_beyond(struct vctx *v, int64_t seq, int64_t head_seq, int is_cp,
			struct ciel_err *err)
{
	int64_t now_seq;
	char h[65];
	int r = head_read(v->a->s, v->chain, &now_seq, h, err);

	if (r < 0)
		return -1;
	if (r == 0 && now_seq >= seq)
		return 0;
	return vbad(v, seq, "%s %" PRId64 ": beyond the head (head is at seq %" PRId64 ")",
		    is_cp ? "checkpoint" : "seq", seq, head_seq);
}

static int verify_walk(struct vctx *v, struct walk *ew, struct walk *cw, struct ciel_err *err)
{
	struct audit_verify_result *res = v->res;
	char prev[65], cur[65], head_hash[65];
	int64_t head_seq, want = 1, seq, cseq;
	struct store_kv *kv, *cp = NULL;
	int head_bad, r;

	head_bad = head_read(v->a->s, v->chain, &head_seq, head_hash, err);
	if (head_bad < 0)
		return -1;
	if (head_bad)
		head_seq = INT64_MAX; /* check every event, then report the head */
	memcpy(prev, zero_hash, sizeof(prev));
	r = walk_next(cw, &cp, err);
	if (r < 0)
		return -1;
	if (r == 0)
		cp = NULL;

	for (;;) {
		r = walk_next(ew, &kv, err);
		if (r <= 0)
			break;
		seq = key_seq(kv->key, ew->prefix);
		if (seq < 0 && want <= head_seq)
			return vbad(v, want, "seq %" PRId64 ": stray key %s", want, kv->key);
		if (seq > head_seq || seq < 0) {
			r = check_beyond(v, seq, head_seq, 0, err);
			if (r)
				return r;
			break;
		}
		if (seq != want)
			return vbad(v, want, "seq %" PRId64 ": missing", want);
		r = check_event(v, kv, seq, prev, cur, err);
		if (r)
			return r;
		memcpy(prev, cur, sizeof(prev));
		res->events++;
		want++;
		while (cp) {
			cseq = key_seq(cp->key, cw->prefix);
			if (cseq > seq)
				break;
			if (cseq < 0)
				return vbad(v, seq, "checkpoint: stray key %s", cp->key);
			if (cseq < seq)
				return vbad(v, cseq > 0 ? cseq : seq,
					    "checkpoint %" PRId64 ": no event at that seq", cseq);
			r = check_cp(v, cp, seq, prev, err);
			if (r)
				return r;
			r = walk_next(cw, &cp, err);
			if (r < 0)
				return -1;
			if (r == 0)
				cp = NULL;
		}
	}
	if (r < 0)
		return -1;
	if (head_bad)
		return vbad(v, want, "head: malformed");
	if (want - 1 < head_seq)
		return vbad(v, want, "seq %" PRId64 ": missing (head is at seq %" PRId64 ")", want,
			    head_seq);
	if (strcmp(prev, head_hash) != 0)
		return vbad(v, head_seq, "head: hash does not match seq %" PRId64, head_seq);
	if (cp) {
		cseq = key_seq(cp->key, cw->prefix);
		if (cseq < 0)
			return vbad(v, head_seq + 1, "checkpoint: stray key %s", cp->key);
		r = check_beyond(v, cseq, head_seq, 1, err);
		if (r)
			return r;
	}
	return 0;
}

int audit_verify(struct audit *a, const char *chain, struct audit_verify_result *res,
		 struct ciel_err *err)
{
	struct vctx v = {.a = a, .chain = chain, .res = res};
	struct walk ew, cw;
	int r;

	memset(res, 0, sizeof(*res));
	if (!chain_valid(chain))
		return chain_err(err);
	walk_init(&ew, a->s, chain, "e", 0);
	walk_init(&cw, a->s, chain, "cp", 0);
	r = verify_walk(&v, &ew, &cw, err);
	walk_release(&ew);
	walk_release(&cw);
	if (r < 0) {
		memset(res, 0, sizeof(*res));
		ciel_err_prefix(err, "audit: verify chain %s: ", chain);
		return -1;
	}
	if (r == 0) {
		res->ok = 1;
		res->first_bad_seq = 0;
		res->reason[0] = '\0';
	}
	return 0;
}

/* ---- scan ---- */

static int scan_match(const struct audit_filter *f, json_t *o)
{
	const char *t = json_string_value(json_object_get(o, "time"));
	const char *act = json_string_value(json_object_get(o, "action"));
	int64_t ms;

	if (f->since_ms > 0 && (!t || ts_parse(t, &ms) < 0 || ms < f->since_ms))
		return 0;
	if (f->action) {
		size_t n = strlen(f->action);

		if (!act)
			return 0;
		if (n > 0 && f->action[n - 1] == '.')
			return strncmp(act, f->action, n) == 0;
		return strcmp(act, f->action) == 0;
	}
	return 1;
}

int audit_scan(struct audit *a, const char *chain, const struct audit_filter *f, audit_emit_fn emit,
	       void *arg, struct ciel_err *err)
{
	static const struct audit_filter none;
	struct walk w;
	struct store_kv *kv;
	size_t sent = 0;
	int r;

	if (!chain_valid(chain))
		return chain_err(err);
	if (!f)
		f = &none;
	if (f->after_seq < 0)
		return ciel_err_field(err, CIEL_EINVAL, "after", "audit: after must be >= 0");
	walk_init(&w, a->s, chain, "e", f->after_seq);
	while ((r = walk_next(&w, &kv, err)) > 0) {
		json_t *o;
		int match;

		if (key_seq(kv->key, w.prefix) < 0)
			continue;
		o = json_loadb(kv->value, kv->value_len, 0, NULL);
		match = o && scan_match(f, o);
		json_decref(o);
		if (!match)
			continue;
		if (emit(arg, kv->value, kv->value_len))
			break;
		if (f->limit && ++sent >= f->limit)
			break;
	}
	walk_release(&w);
	if (r < 0) {
		ciel_err_prefix(err, "audit: scan chain %s: ", chain);
		return -1;
	}
	return 0;
}
