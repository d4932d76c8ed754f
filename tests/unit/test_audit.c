/*
 * test_audit — the audit trail on a real SQLite store in a temp dir.
 *
 * audit.c is included to reach its cache (drop it to exercise the
 * head-load path) and with a tiny page size, so every verify and scan
 * crosses many store_list pages. Hashes and checkpoint signatures are
 * re-checked with OpenSSL directly, not with the module's own helpers.
 * Tampering goes through raw store ops (the store keeps value bytes as
 * given), the way someone with write access to the database would.
 */
#define AUDIT_PAGE 7
#include "audit/audit.c"

#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#define T0_MS 1795000000000LL /* an arbitrary fixed wall time */

struct fx {
	char dir[64];
	char url[128];
	char key[128];
	struct store *s;
	struct audit *a;
};

static int fx_open(struct fx *f, int every, int secs)
{
	struct ciel_err err = {0};

	if (store_open(&f->s, f->url, &err) < 0 ||
	    audit_open(&f->a, f->s, f->key, every, secs, &err) < 0) {
		fprintf(stderr, "open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void fx_close(struct fx *f)
{
	audit_close(f->a);
	store_close(f->s);
	f->a = NULL;
	f->s = NULL;
}

static struct fx *fx_new(int every, int secs)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/ciel-audit-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->url, sizeof(f->url), "sqlite:%s/region.db", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/audit.key", f->dir);
	assert_int_equal(fx_open(f, every, secs), 0);
	return f;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fx_free(struct fx *f)
{
	fx_close(f);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
}

static int setup_4(void **state)
{
	*state = fx_new(4, 1);
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static void ev_init(struct audit_event *ev, const char *chain, const char *action, int64_t time_ms)
{
	memset(ev, 0, sizeof(*ev));
	ev->chain = chain;
	ev->request_id = "req-1";
	ev->time_ms = time_ms;
	ev->actor_tenant = "acme";
	ev->actor_principal = "alice";
	ev->actor_key = "CKTEST";
	ev->action = action;
	ev->target = "/v1/tenants";
	ev->source = "127.0.0.1:40312";
	ev->status = 200;
}

static void rec(struct fx *f, const char *chain, const char *action, int64_t time_ms)
{
	struct audit_event ev;
	struct ciel_err err = {0};

	ev_init(&ev, chain, action, time_ms);
	if (audit_record(f->a, &ev, &err) < 0)
		fail_msg("audit_record: %s", err.msg);
}

/* The stored value at key (malloc'd), NULL if absent. */
static char *get(struct fx *f, const char *key)
{
	struct store_kv kv = {0};
	struct ciel_err err = {0};
	char *v;

	if (store_get(f->s, key, &kv, &err) < 0) {
		assert_int_equal(err.code, CIEL_ENOTFOUND);
		return NULL;
	}
	v = strdup(kv.value);
	store_kv_release(&kv);
	return v;
}

static char *get_at(struct fx *f, const char *chain, const char *kind, int64_t seq)
{
	char key[STORE_KEY_MAX];

	key_of(key, sizeof(key), chain, kind, seq);
	return get(f, key);
}

static void raw_op(struct fx *f, enum store_op_kind kind, const char *key, const char *value)
{
	struct store_op op = {
	    .kind = kind, .key = key, .value = value, .expect_rev = STORE_ANY_REV};
	struct store_txn_result res;
	struct ciel_err err = {0};

	assert_int_equal(store_txn(f->s, &op, 1, NULL, NULL, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
}

static void put_at(struct fx *f, const char *chain, const char *kind, int64_t seq,
		   const char *value)
{
	char key[STORE_KEY_MAX];

	key_of(key, sizeof(key), chain, kind, seq);
	raw_op(f, value ? STORE_PUT : STORE_DELETE, key, value);
}

static struct audit_verify_result verify(struct fx *f, const char *chain)
{
	struct audit_verify_result r;
	struct ciel_err err = {0};

	if (audit_verify(f->a, chain, &r, &err) < 0)
		fail_msg("audit_verify: %s", err.msg);
	return r;
}

static void assert_verify_ok(struct fx *f, const char *chain, int64_t events)
{
	struct audit_verify_result r = verify(f, chain);

	if (!r.ok)
		fail_msg("verify %s: seq %lld: %s", chain, (long long)r.first_bad_seq, r.reason);
	assert_int_equal(r.events, events);
	assert_int_equal(r.first_bad_seq, 0);
	assert_string_equal(r.reason, "");
}

static void assert_verify_bad(struct fx *f, const char *chain, int64_t seq, const char *reason)
{
	struct audit_verify_result r = verify(f, chain);

	if (r.ok || r.first_bad_seq != seq || !strstr(r.reason, reason))
		fail_msg("verify %s: ok=%d seq=%lld reason='%s', wanted seq %lld '%s'", chain, r.ok,
			 (long long)r.first_bad_seq, r.reason, (long long)seq, reason);
}

/* ---- independent references ---- */

static void ref_sha256_hex(const char *s, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	assert_int_equal(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static char *ref_canon(const json_t *o)
{
	return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
}

static json_t *parse(const char *s)
{
	json_t *o = json_loads(s, 0, NULL);

	assert_non_null(o);
	return o;
}

static const char *sget(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	if (!v)
		fail_msg("member %s missing", k);
	return v;
}

/* Check the stored event: canonical bytes and a hash recomputed here. */
static void check_stored_event(const char *stored)
{
	json_t *o = parse(stored);
	char *dump = ref_canon(o), hash[65], want[65];

	assert_string_equal(dump, stored);
	free(dump);
	snprintf(hash, sizeof(hash), "%s", sget(o, "hash"));
	json_object_del(o, "hash");
	dump = ref_canon(o);
	ref_sha256_hex(dump, want);
	assert_string_equal(hash, want);
	free(dump);
	json_decref(o);
}

/* Verify a checkpoint's signature with OpenSSL and the published key. */
static int ref_cp_valid(struct audit *a, const char *cp_json)
{
	char pubhex[65], msg[512];
	unsigned char pub[32], sig[66 + 8];
	json_t *o = parse(cp_json);
	EVP_PKEY *pk;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int n, ok;

	audit_public_key_hex(a, pubhex);
	for (int i = 0; i < 32; i++) {
		unsigned int b;

		assert_int_equal(sscanf(pubhex + 2 * i, "%2x", &b), 1);
		pub[i] = (unsigned char)b;
	}
	assert_string_equal(sget(o, "key"), pubhex);
	pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	assert_non_null(pk);
	assert_int_equal(strlen(sget(o, "sig")), 88);
	n = EVP_DecodeBlock(sig, (const unsigned char *)sget(o, "sig"), 88);
	assert_int_equal(n, 66); /* 64 bytes + 2 padding */
	n = snprintf(msg, sizeof(msg), "ciel-audit-checkpoint\n%s\n%lld\n%s\n%s\n",
		     sget(o, "chain"), (long long)json_integer_value(json_object_get(o, "seq")),
		     sget(o, "hash"), sget(o, "time"));
	ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
	     EVP_DigestVerify(md, sig, 64, (const unsigned char *)msg, (size_t)n) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	json_decref(o);
	return ok;
}

/* ---- scan collection ---- */

struct coll {
	char *items[64];
	size_t n;
	size_t stop_after; /* 0 = never stop */
};

static int collect(void *arg, const char *json, size_t len)
{
	struct coll *c = arg;

	assert_int_equal(strlen(json), len);
	assert_true(c->n < 64);
	c->items[c->n++] = strndup(json, len);
	return c->stop_after && c->n >= c->stop_after;
}

static void coll_release(struct coll *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->items[i]);
	c->n = 0;
}

static int64_t item_seq(struct coll *c, size_t i)
{
	json_t *o = parse(c->items[i]);
	int64_t v = json_integer_value(json_object_get(o, "seq"));

	json_decref(o);
	return v;
}

/* Scan and return the seqs as a string "1,2,3" for compact assertions. */
static void scan_seqs(struct fx *f, const char *chain, const struct audit_filter *flt,
		      size_t stop_after, char *out, size_t n)
{
	struct coll c = {.stop_after = stop_after};
	struct ciel_err err = {0};
	size_t o = 0;

	if (audit_scan(f->a, chain, flt, collect, &c, &err) < 0)
		fail_msg("audit_scan: %s", err.msg);
	out[0] = '\0';
	for (size_t i = 0; i < c.n; i++)
		o += (size_t)snprintf(out + o, n - o, "%s%lld", i ? "," : "",
				      (long long)item_seq(&c, i));
	coll_release(&c);
}

/* ---- tests ---- */

static void test_event_format(void **state)
{
	struct fx *f = *state;
	struct audit_event ev;
	struct ciel_err err = {0};
	struct coll c = {0};
	char t[TS_RFC3339_LEN], target[700], *head, want_head[128];
	json_t *o, *actor;

	ev_init(&ev, "acme", "tenant.create", T0_MS + 123);
	ev.request_id = "r-\"quoted\"";
	ev.actor_principal = "Jos\xc3\xa9\xf0\x9f\x98\x80"; /* é and an emoji (a surrogate pair) */
	ev.source = "\xff\xfe"
		    "1.2.3.4";
	ev.error_code = NULL;
	ev.actor_key = NULL;
	assert_int_equal(audit_record(f->a, &ev, &err), 0);

	/* 'a' then 2-byte characters: 512 bytes would split one, so 511 are kept */
	target[0] = 'a';
	for (int i = 0; i < 340; i++)
		memcpy(target + 1 + 2 * i, "\xc3\xa9", 2);
	target[681] = '\0';
	ev_init(&ev, "acme", "tenant.delete", 0);
	ev.target = target;
	ev.error_code = "permission_denied";
	ev.status = 403;
	assert_int_equal(audit_record(f->a, &ev, &err), 0);

	assert_int_equal(audit_scan(f->a, "acme", NULL, collect, &c, &err), 0);
	assert_int_equal(c.n, 2);
	for (size_t i = 0; i < c.n; i++) {
		check_stored_event(c.items[i]);
		for (const char *p = c.items[i]; *p; p++)
			assert_true((unsigned char)*p < 0x80);
	}

	o = parse(c.items[0]);
	assert_int_equal(json_object_size(o), 12);
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 1);
	ts_format(T0_MS + 123, t);
	assert_string_equal(sget(o, "time"), t);
	assert_string_equal(sget(o, "chain"), "acme");
	assert_string_equal(sget(o, "request_id"), "r-\"quoted\"");
	actor = json_object_get(o, "actor");
	assert_string_equal(sget(actor, "tenant"), "acme");
	assert_string_equal(sget(actor, "principal"), "Jos\xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(sget(actor, "key"), "");
	assert_string_equal(sget(o, "action"), "tenant.create");
	assert_string_equal(sget(o, "target"), "/v1/tenants");
	assert_string_equal(sget(o, "source"), "??1.2.3.4");
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 200);
	assert_string_equal(sget(o, "error"), "");
	assert_string_equal(sget(o, "prev"), zero_hash);
	assert_non_null(strstr(c.items[0], "\"principal\":\"Jos\\u00E9\\uD83D\\uDE00\""));
	json_decref(o);

	o = parse(c.items[1]);
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 2);
	assert_int_equal(strlen(sget(o, "target")), 511);
	assert_memory_equal(sget(o, "target"), target, 511);
	assert_string_equal(sget(o, "error"), "permission_denied");
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 403);
	{
		json_t *first = parse(c.items[0]);

		assert_string_equal(sget(o, "prev"), sget(first, "hash"));
		json_decref(first);
	}
	snprintf(want_head, sizeof(want_head), "{\"hash\":\"%s\",\"seq\":2}", sget(o, "hash"));
	head = get(f, "/audit/acme/head");
	assert_non_null(head);
	assert_string_equal(head, want_head);
	free(head);
	json_decref(o);
	coll_release(&c);
	assert_verify_ok(f, "acme", 2);

	/* chain names */
	ev_init(&ev, "Acme", "x", 0);
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	ev.chain = NULL;
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	ev.chain = "";
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	ev.chain = "a/b";
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	memset(target, 'a', 65);
	target[65] = '\0';
	ev.chain = target;
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	target[64] = '\0';
	assert_int_equal(audit_record(f->a, &ev, &err), 0);
	ev.chain = AUDIT_REGION_CHAIN;
	assert_int_equal(audit_record(f->a, &ev, &err), 0);
	assert_verify_ok(f, target, 1);
	assert_verify_ok(f, "region", 1);
	assert_int_equal(audit_verify(f->a, "../x", &(struct audit_verify_result){0}, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
}

#define THREADS 4
#define PER_CHAIN 60

struct worker {
	struct fx *f;
	int id;
	int failed;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char rid[32];

	for (int k = 0; k < PER_CHAIN; k++) {
		for (int c = 0; c < 2; c++) {
			struct audit_event ev;
			struct ciel_err err = {0};

			ev_init(&ev, c ? "chain-b" : "chain-a", "x.y", 0);
			snprintf(rid, sizeof(rid), "t%d-%d", w->id, k);
			ev.request_id = rid;
			if (audit_record(w->f->a, &ev, &err) < 0)
				w->failed++;
		}
	}
	return NULL;
}

/* Per-chain order: each thread's events appear in the order it made them. */
static void check_chain_order(struct fx *f, const char *chain)
{
	struct ciel_err err = {0};
	int next_k[THREADS] = {0};
	int64_t want = 1;
	struct walk w;
	struct store_kv *kv;
	int r;

	/* audit_scan's collector holds 64 items; walk the store directly. */
	walk_init(&w, f->s, chain, "e", 0);
	while ((r = walk_next(&w, &kv, &err)) > 0) {
		json_t *o = parse(kv->value);
		int id, k;

		assert_int_equal(json_integer_value(json_object_get(o, "seq")), want++);
		assert_int_equal(sscanf(sget(o, "request_id"), "t%d-%d", &id, &k), 2);
		assert_true(id >= 0 && id < THREADS);
		assert_int_equal(k, next_k[id]);
		next_k[id]++;
		json_decref(o);
	}
	assert_int_equal(r, 0);
	walk_release(&w);
	assert_int_equal(want - 1, THREADS * PER_CHAIN);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(next_k[i], PER_CHAIN);
}

struct ticker {
	struct fx *f;
	atomic_int stop;
	int failed;
	int ticks;
};

/* audit_tick from its own thread, as cield runs it, racing the appends. */
static void *ticker_run(void *arg)
{
	struct ticker *t = arg;

	while (!t->stop) {
		struct ciel_err err = {0};

		if (audit_tick(t->f->a, &err) < 0)
			t->failed++;
		t->ticks++;
		usleep(2000);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	pthread_t th[THREADS], tt;
	struct worker w[THREADS];
	struct ticker t = {.f = f};

	assert_int_equal(pthread_create(&tt, NULL, ticker_run, &t), 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.f = f, .id = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failed, 0);
	}
	t.stop = 1;
	pthread_join(tt, NULL);
	assert_int_equal(t.failed, 0);
	assert_true(t.ticks > 0);
	assert_verify_ok(f, "chain-a", THREADS * PER_CHAIN);
	assert_verify_ok(f, "chain-b", THREADS * PER_CHAIN);
	/* every 4th seq, plus any tail the ticker signed */
	assert_true(verify(f, "chain-a").checkpoints >= THREADS * PER_CHAIN / 4);
	check_chain_order(f, "chain-a");
	check_chain_order(f, "chain-b");
}

static void test_hook_conflict(void **state)
{
	struct fx *f = *state;
	struct store_op op = {
	    .kind = STORE_PUT, .key = "/tenants/x", .value = "{}", .expect_rev = STORE_ABSENT};
	struct audit_append ap = {.audit = f->a};
	struct store_txn_result res;
	struct ciel_err err = {0};
	struct coll c = {0};
	json_t *o;
	char *v;

	ev_init(&ap.ev, "acme", "tenant.create", 0);
	ap.ev.status = 201;
	assert_int_equal(store_txn(f->s, &op, 1, audit_hook, &ap, &res, &err), 0);
	assert_int_equal(res.conds_ok, 1);
	assert_int_equal(ap.seq_out, 1);

	/* same create again: the condition fails, the event says so */
	ap.seq_out = 0;
	assert_int_equal(store_txn(f->s, &op, 1, audit_hook, &ap, &res, &err), 0);
	assert_int_equal(res.conds_ok, 0);
	assert_int_equal(ap.seq_out, 2);

	assert_int_equal(audit_scan(f->a, "acme", NULL, collect, &c, &err), 0);
	assert_int_equal(c.n, 2);
	o = parse(c.items[0]);
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 201);
	assert_string_equal(sget(o, "error"), "");
	json_decref(o);
	o = parse(c.items[1]);
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 409);
	assert_string_equal(sget(o, "error"), "conflict");
	assert_string_equal(sget(o, "action"), "tenant.create");
	json_decref(o);
	coll_release(&c);

	/* a hook that cannot record rolls the change back: no trail, no action */
	op.key = "/tenants/y";
	ap.ev.chain = "Not Valid";
	assert_int_equal(store_txn(f->s, &op, 1, audit_hook, &ap, &res, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	v = get(f, "/tenants/y");
	assert_null(v);
	assert_verify_ok(f, "acme", 2);
}

static int count_cps(struct fx *f, const char *chain, int64_t upto, char *list, size_t n)
{
	int count = 0;
	size_t o = 0;

	list[0] = '\0';
	for (int64_t s = 1; s <= upto; s++) {
		char *v = get_at(f, chain, "cp", s);

		if (v) {
			o += (size_t)snprintf(list + o, n - o, "%s%lld", count ? "," : "",
					      (long long)s);
			count++;
			free(v);
		}
	}
	return count;
}

static void test_checkpoints(void **state)
{
	struct fx *f = *state;
	struct ciel_err err = {0};
	char list[128], *cp, *e4;
	int64_t rev0, rev1, tail_ms = 0;
	json_t *o, *ev;

	for (int i = 0; i < 10; i++) {
		if (i == 8)
			tail_ms = ts_mono_ms(); /* seq 9 starts the unsigned tail */
		rec(f, "acme", "x.y", 0);
	}
	count_cps(f, "acme", 12, list, sizeof(list));
	assert_string_equal(list, "4,8");
	assert_int_equal(verify(f, "acme").checkpoints, 2);

	cp = get_at(f, "acme", "cp", 4);
	e4 = get_at(f, "acme", "e", 4);
	assert_true(ref_cp_valid(f->a, cp));
	o = parse(cp);
	ev = parse(e4);
	assert_string_equal(sget(o, "hash"), sget(ev, "hash"));
	assert_string_equal(sget(o, "chain"), "acme");
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 4);
	json_decref(o);
	json_decref(ev);
	free(cp);
	free(e4);

	/* the tail (9, 10) is younger than checkpoint_secs: nothing to sign yet
	 * (unless this machine was too slow to get here within the second) */
	assert_int_equal(store_rev(f->s, &rev0, &err), 0);
	assert_int_equal(audit_tick(f->a, &err), 0);
	if (ts_mono_ms() - tail_ms < 900) {
		assert_int_equal(store_rev(f->s, &rev1, &err), 0);
		assert_int_equal(rev1, rev0);
		count_cps(f, "acme", 12, list, sizeof(list));
		assert_string_equal(list, "4,8");
	}

	usleep(1200 * 1000);
	assert_int_equal(audit_tick(f->a, &err), 0);
	count_cps(f, "acme", 12, list, sizeof(list));
	assert_string_equal(list, "4,8,10");
	cp = get_at(f, "acme", "cp", 10);
	assert_true(ref_cp_valid(f->a, cp));
	free(cp);
	assert_int_equal(verify(f, "acme").checkpoints, 3);

	/* signed already: another tick commits nothing */
	assert_int_equal(store_rev(f->s, &rev0, &err), 0);
	assert_int_equal(audit_tick(f->a, &err), 0);
	assert_int_equal(store_rev(f->s, &rev1, &err), 0);
	assert_int_equal(rev1, rev0);

	rec(f, "acme", "x.y", 0);
	rec(f, "acme", "x.y", 0);
	count_cps(f, "acme", 12, list, sizeof(list));
	assert_string_equal(list, "4,8,10,12");
	assert_verify_ok(f, "acme", 12);
	assert_int_equal(verify(f, "acme").checkpoints, 4);
}

/* ---- tampering ---- */

static void build_chain(struct fx *f, const char *chain, const char *action, int n)
{
	for (int i = 0; i < n; i++)
		rec(f, chain, action, 0);
	assert_verify_ok(f, chain, n);
}

static void test_tamper_byte(void **state)
{
	struct fx *f = *state;
	char *v, *p;

	build_chain(f, "acme", "tenant.create", 10);
	v = get_at(f, "acme", "e", 5);
	p = strstr(v, "\"action\":\"tenant.create\"");
	assert_non_null(p);
	p[strlen("\"action\":\"t")] = 'u'; /* "tunant.create" */
	put_at(f, "acme", "e", 5, v);
	free(v);
	assert_verify_bad(f, "acme", 5, "seq 5: hash mismatch (stored event was modified)");
	assert_int_equal(verify(f, "acme").events, 4);
}

static void test_tamper_noncanonical(void **state)
{
	struct fx *f = *state;
	char *v, buf[4096];

	build_chain(f, "acme", "tenant.create", 10);
	v = get_at(f, "acme", "e", 5);
	/* the same JSON value, one space added: only the byte check sees it */
	snprintf(buf, sizeof(buf), "{ %s", v + 1);
	put_at(f, "acme", "e", 5, buf);
	free(v);
	assert_verify_bad(f, "acme", 5, "seq 5: not in canonical form");
}

static void test_tamper_rehash(void **state)
{
	struct fx *f = *state;
	char *v, *body, hash[65];
	json_t *o;

	build_chain(f, "acme", "tenant.create", 10);
	v = get_at(f, "acme", "e", 5);
	o = parse(v);
	free(v);
	json_object_set_new(o, "action", json_string("tenant.delete"));
	json_object_del(o, "hash");
	body = ref_canon(o);
	ref_sha256_hex(body, hash);
	free(body);
	json_object_set_new(o, "hash", json_string(hash));
	body = ref_canon(o);
	put_at(f, "acme", "e", 5, body);
	free(body);
	json_decref(o);
	assert_verify_bad(f, "acme", 6, "seq 6: prev does not match hash of seq 5");
}

static void test_tamper_delete_middle(void **state)
{
	struct fx *f = *state;

	build_chain(f, "acme", "tenant.create", 10);
	put_at(f, "acme", "e", 5, NULL);
	assert_verify_bad(f, "acme", 5, "seq 5: missing");
}

static void test_tamper_delete_last(void **state)
{
	struct fx *f = *state;

	build_chain(f, "acme", "tenant.create", 10);
	put_at(f, "acme", "e", 10, NULL);
	assert_verify_bad(f, "acme", 10, "seq 10: missing (head is at seq 10)");
	assert_int_equal(verify(f, "acme").events, 9);
}

static void test_tamper_head_rollback(void **state)
{
	struct fx *f = *state;
	char head[128], *v;
	json_t *o;

	build_chain(f, "acme", "tenant.create", 10);
	v = get_at(f, "acme", "e", 9);
	o = parse(v);
	snprintf(head, sizeof(head), "{\"hash\":\"%s\",\"seq\":9}", sget(o, "hash"));
	json_decref(o);
	free(v);
	raw_op(f, STORE_PUT, "/audit/acme/head", head);
	assert_verify_bad(f, "acme", 10, "seq 10: beyond the head");
}

static void test_tamper_cp_sig(void **state)
{
	struct fx *f = *state;
	unsigned char sig[70];
	char *v, b64[100], *p, buf[1024];
	json_t *o;

	build_chain(f, "acme", "tenant.create", 10);
	v = get_at(f, "acme", "cp", 4);
	assert_non_null(v);
	o = parse(v);
	free(v);
	assert_int_equal(EVP_DecodeBlock(sig, (const unsigned char *)sget(o, "sig"), 88), 66);
	sig[10] ^= 0x01;
	EVP_EncodeBlock((unsigned char *)b64, sig, 64);
	json_object_set_new(o, "sig", json_string(b64));
	p = ref_canon(o);
	snprintf(buf, sizeof(buf), "%s", p);
	free(p);
	json_decref(o);
	put_at(f, "acme", "cp", 4, buf);
	assert_false(ref_cp_valid(f->a, buf));
	assert_verify_bad(f, "acme", 4, "checkpoint 4: bad signature");
}

/*
 * Someone with write access rebuilds the whole chain, consistently, with
 * their own key: every hash and link holds, only the signatures give it away.
 */
static void test_tamper_rewrite(void **state)
{
	struct fx *f = *state, *g = fx_new(4, 1);
	struct ciel_err err = {0};
	struct store_list l = {0};
	struct audit_verify_result r;

	build_chain(f, "acme", "tenant.create", 10);
	build_chain(g, "acme", "tenant.delete", 10);
	assert_int_equal(store_list(g->s, "/audit/acme/", NULL, 0, &l, &err), 0);
	assert_int_equal(l.n, 10 + 2 + 1);
	for (size_t i = 0; i < l.n; i++)
		raw_op(f, STORE_PUT, l.items[i].key, l.items[i].value);
	store_list_release(&l);
	assert_verify_ok(g, "acme", 10);
	assert_verify_bad(f, "acme", 4, "checkpoint 4: bad signature (signed by another key)");
	r = verify(f, "acme");
	assert_int_equal(r.events, 4);
	assert_int_equal(r.checkpoints, 0);
	fx_free(g);
}

/* ---- restart ---- */

static void test_reopen(void **state)
{
	struct fx *f = *state;
	struct ciel_err err = {0};
	char list[64], *e3, *e4;
	json_t *o3, *o4;

	fx_close(f);
	assert_int_equal(fx_open(f, 100, 1), 0);
	build_chain(f, "acme", "x.y", 3);
	build_chain(f, "region", "x.y", 2);
	fx_close(f);

	assert_int_equal(fx_open(f, 100, 1), 0);
	/* heads were cached at open: the tails left unsigned get signed */
	usleep(1200 * 1000);
	assert_int_equal(audit_tick(f->a, &err), 0);
	count_cps(f, "acme", 5, list, sizeof(list));
	assert_string_equal(list, "3");
	count_cps(f, "region", 5, list, sizeof(list));
	assert_string_equal(list, "2");

	rec(f, "acme", "x.y", 0);
	rec(f, "acme", "x.y", 0);
	e3 = get_at(f, "acme", "e", 3);
	e4 = get_at(f, "acme", "e", 4);
	o3 = parse(e3);
	o4 = parse(e4);
	assert_string_equal(sget(o4, "prev"), sget(o3, "hash"));
	json_decref(o3);
	json_decref(o4);
	free(e3);
	free(e4);
	assert_verify_ok(f, "acme", 5);
	assert_int_equal(verify(f, "acme").checkpoints, 1);
	assert_verify_ok(f, "region", 2);
}

/* Empty the head cache, as for a chain first touched after open. */
static void cache_drop(struct audit *a)
{
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->nbuckets; i++) {
		while (a->buckets[i]) {
			struct chain_head *h = a->buckets[i];

			a->buckets[i] = h->next;
			free(h);
		}
	}
	a->nheads = 0;
	pthread_mutex_unlock(&a->mu);
}

static void test_head_load_in_hook(void **state)
{
	struct fx *f = *state;
	struct ciel_err err = {0};
	char list[64];

	/* many chains: the cache grows past its first 64 buckets */
	for (int i = 0; i < 150; i++) {
		char name[16];

		snprintf(name, sizeof(name), "t%d", i);
		rec(f, name, "x.y", 0);
	}
	build_chain(f, "acme", "x.y", 4); /* cp at 4: the head is signed */
	build_chain(f, "beta", "x.y", 2); /* unsigned tail */
	cache_drop(f->a);
	rec(f, "acme", "x.y", 0);
	rec(f, "beta", "x.y", 0);
	rec(f, "t77", "x.y", 0);
	assert_verify_ok(f, "acme", 5);
	assert_verify_ok(f, "beta", 3);
	assert_verify_ok(f, "t77", 2);
	/* the reloaded heads carry on being signed by the tick */
	usleep(1200 * 1000);
	assert_int_equal(audit_tick(f->a, &err), 0);
	count_cps(f, "beta", 3, list, sizeof(list));
	assert_string_equal(list, "3");
	count_cps(f, "acme", 5, list, sizeof(list));
	assert_string_equal(list, "4,5");
	assert_int_equal(verify(f, "t77").checkpoints, 1);
}

/* A head missing or behind its events must not let an append overwrite one. */
static void test_head_behind_refused(void **state)
{
	struct fx *f = *state;
	struct audit_event ev;
	struct ciel_err err = {0};
	char *e1, *e3, *after, head[128];
	json_t *o;

	build_chain(f, "acme", "x.y", 3);
	e1 = get_at(f, "acme", "e", 1);
	e3 = get_at(f, "acme", "e", 3);
	ev_init(&ev, "acme", "x.y", 0);

	/* head deleted: loaded in the hook as an empty chain, but seq 1 is taken */
	raw_op(f, STORE_DELETE, "/audit/acme/head", NULL);
	cache_drop(f->a);
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	assert_int_equal(err.code, CIEL_EINTERNAL);
	assert_non_null(strstr(err.msg, "seq 1 past its head"));
	after = get_at(f, "acme", "e", 1);
	assert_string_equal(after, e1);
	free(after);
	/* and after a restart (the heads are preloaded at open) */
	fx_close(f);
	assert_int_equal(fx_open(f, 4, 1), 0);
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	assert_int_equal(err.code, CIEL_EINTERNAL);

	/* head rolled back to seq 2: seq 3 must stay as it is */
	after = get_at(f, "acme", "e", 2);
	o = parse(after);
	free(after);
	snprintf(head, sizeof(head), "{\"hash\":\"%s\",\"seq\":2}", sget(o, "hash"));
	json_decref(o);
	raw_op(f, STORE_PUT, "/audit/acme/head", head);
	fx_close(f);
	assert_int_equal(fx_open(f, 4, 1), 0);
	assert_int_equal(audit_record(f->a, &ev, &err), -1);
	assert_non_null(strstr(err.msg, "seq 3 past its head"));
	after = get_at(f, "acme", "e", 3);
	assert_string_equal(after, e3);
	free(after);
	assert_verify_bad(f, "acme", 3, "seq 3: beyond the head");

	/* other chains are unaffected */
	rec(f, "beta", "x.y", 0);
	assert_verify_ok(f, "beta", 1);
	free(e1);
	free(e3);
}

/* ---- scan ---- */

static void test_scan_filters(void **state)
{
	static const char *const actions[] = {"tenant.create", "tenant.delete", "key.create",
					      "audit.list", "tenant"};
	struct fx *f = *state;
	struct audit_filter flt;
	struct ciel_err err = {0};
	struct coll c = {0};
	char out[256];

	for (int i = 0; i < 10; i++)
		rec(f, "acme", actions[i % 5], T0_MS + i * 1000);

	scan_seqs(f, "acme", NULL, 0, out, sizeof(out));
	assert_string_equal(out, "1,2,3,4,5,6,7,8,9,10");
	flt = (struct audit_filter){.since_ms = T0_MS + 5000};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "6,7,8,9,10");
	flt = (struct audit_filter){.since_ms = T0_MS + 4500};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "6,7,8,9,10");
	flt = (struct audit_filter){.action = "key.create"};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "3,8");
	flt = (struct audit_filter){.action = "tenant."};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "1,2,6,7");
	flt = (struct audit_filter){.action = "tenant"};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "5,10");
	flt = (struct audit_filter){.action = "tenant.cr"};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "");
	flt = (struct audit_filter){.after_seq = 7};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "8,9,10");
	flt = (struct audit_filter){.after_seq = 10};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "");
	flt = (struct audit_filter){.limit = 3};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "1,2,3");
	flt = (struct audit_filter){.action = "tenant.", .after_seq = 1, .limit = 2};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "2,6");
	flt = (struct audit_filter){.since_ms = T0_MS + 2000, .action = "tenant."};
	scan_seqs(f, "acme", &flt, 0, out, sizeof(out));
	assert_string_equal(out, "6,7");
	/* the emitter stops the scan */
	scan_seqs(f, "acme", NULL, 2, out, sizeof(out));
	assert_string_equal(out, "1,2");
	/* the stored bytes are what is emitted */
	flt = (struct audit_filter){.after_seq = 4, .limit = 1};
	assert_int_equal(audit_scan(f->a, "acme", &flt, collect, &c, &err), 0);
	assert_int_equal(c.n, 1);
	{
		char *v = get_at(f, "acme", "e", 5);

		assert_string_equal(c.items[0], v);
		free(v);
	}
	coll_release(&c);

	scan_seqs(f, "nobody", NULL, 0, out, sizeof(out));
	assert_string_equal(out, "");
	assert_verify_ok(f, "nobody", 0);
	assert_int_equal(audit_scan(f->a, "No", NULL, collect, &c, &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	flt = (struct audit_filter){.after_seq = -1};
	assert_int_equal(audit_scan(f->a, "acme", &flt, collect, &c, &err), -1);
	assert_int_equal(c.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_event_format, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_hook_conflict, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_checkpoints, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_byte, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_noncanonical, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_rehash, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_delete_middle, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_delete_last, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_head_rollback, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_cp_sig, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper_rewrite, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_head_load_in_hook, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_head_behind_refused, setup_4, teardown),
	    cmocka_unit_test_setup_teardown(test_scan_filters, setup_4, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
