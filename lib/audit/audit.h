/*
 * audit — the tamper-evident audit trail: one hash chain per tenant plus one
 * for the region ("region"), stored in the region store.
 *
 * Layout in the store (seq is 16 zero-padded decimal digits, so key order is
 * chain order):
 *   /audit/<chain>/head          {"seq":N,"hash":"<hex>"}  (the etcd backend CASes on it)
 *   /audit/<chain>/e/<seq>       one event, canonical JSON (sorted keys, compact)
 *   /audit/<chain>/cp/<seq>      a signed checkpoint of the chain at seq
 * An event's "hash" is hex SHA-256 of the event's canonical JSON without the
 * "hash" member; its "prev" is the previous event's hash (64 zeros for seq 1).
 * Every checkpoint_every events, and by audit_tick() once an unsigned tail is
 * older than checkpoint_secs, a checkpoint signs (chain, seq, hash, time) with
 * the region's Ed25519 key, so rewriting a whole chain after the fact is
 * caught too.
 *
 * Events are written through the store hook, in the same commit as the change
 * they record: an action that is not in the trail did not happen. The
 * in-memory chain heads are touched only inside hooks, which the store runs
 * one at a time in commit order.
 */
#ifndef CIEL_AUDIT_H
#define CIEL_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

#define AUDIT_REGION_CHAIN "region"

struct audit;

/* Inputs of one event; all strings borrowed for the duration of the call.
 * NULL strings are stored as "". */
struct audit_event {
	const char *chain; /* tenant name, or AUDIT_REGION_CHAIN */
	const char *request_id;
	int64_t time_ms;	     /* wall clock, ms since epoch; 0 = now */
	const char *actor_tenant;    /* "region" for the operator, "" if unidentified */
	const char *actor_principal; /* "" if unidentified */
	const char *actor_key;	     /* access key id claimed, even if refused */
	const char *action;	     /* "tenant.create", "audit.list", "unknown" */
	const char *target;	     /* the request path */
	const char *source;	     /* "127.0.0.1:40312" */
	int status;		     /* HTTP status of the answer */
	const char *error_code;	     /* ciel_code_name() of the refusal, NULL/"" if ok */
	/* what else the event must prove (a model request's token counts), as
	 * "detail"; borrowed, NULL = none. Never request or answer content. */
	const json_t *detail;
};

/* What a store hook needs; fill ev, pass &append as hook_arg with audit_hook.
 * If the transaction's conditions fail, the event is recorded with status 409
 * and error "conflict" (which is what the client then gets). */
struct audit_append {
	struct audit *audit;
	struct audit_event ev;
	int64_t seq_out; /* set by the hook: the event's seq */
};
int audit_hook(void *arg, struct store_wtx *tx, int conds_ok, struct ciel_err *err);

/*
 * Open the trail on store s (not owned). key_path: the region Ed25519 key
 * (created if missing). checkpoint_every: events between checkpoints (>0);
 * checkpoint_secs: max age of an unsigned tail before audit_tick signs it.
 */
int audit_open(struct audit **out, struct store *s, const char *key_path, int checkpoint_every,
	       int checkpoint_secs, struct ciel_err *err);
void audit_close(struct audit *a);

/* Record one event on its own (a read, or a refused request): commits before returning. */
int audit_record(struct audit *a, const struct audit_event *ev, struct ciel_err *err);

/* Sign checkpoints for chains whose unsigned tail is older than checkpoint_secs.
 * Call periodically (cield does, every second). */
int audit_tick(struct audit *a, struct ciel_err *err);

struct audit_verify_result {
	int ok;		       /* 1 if the whole chain verified */
	int64_t events;	       /* events checked */
	int64_t checkpoints;   /* checkpoints whose signature verified */
	int64_t first_bad_seq; /* seq of the first broken or missing link, 0 if ok */
	char reason[256];      /* what is wrong there */
};
/* Recompute the chain from seq 1: every event parses, is canonical, hashes to
 * its "hash", links to its predecessor, seqs are contiguous up to the head,
 * and every checkpoint signature verifies and matches its event. */
int audit_verify(struct audit *a, const char *chain, struct audit_verify_result *res,
		 struct ciel_err *err);

/* Called once per event (the stored canonical JSON line, no newline). Return
 * non-zero to stop early. */
typedef int (*audit_emit_fn)(void *arg, const char *json, size_t len);

struct audit_filter {
	int64_t since_ms;   /* 0 = from the start */
	const char *action; /* NULL = any; "tenant." matches as a prefix when it ends in '.' */
	int64_t after_seq;  /* 0 = from seq 1 */
	size_t limit;	    /* 0 = no limit */
};
int audit_scan(struct audit *a, const char *chain, const struct audit_filter *f, audit_emit_fn emit,
	       void *arg, struct ciel_err *err);

/* Hex of the region's checkpoint public key (64 chars + NUL). */
void audit_public_key_hex(struct audit *a, char out[65]);

#endif
