/*
 * api — the control-plane request pipeline, independent of the HTTP server.
 *
 * Every request goes through api_handle(), in this order:
 *   route (404/405) → authenticate (signature, date, replay, key scope)
 *   → authorise (role) → handler → audit event → answer.
 * The audit event is durable before the answer is sent, for every outcome:
 * a handler that changes state commits its ops together with the event
 * (api_commit); for reads and refusals the pipeline records the event on its
 * own. If the event cannot be written the client gets 503, never a success
 * without a trail.
 *
 * Handlers live in iam.c (tenants, principals, keys, quotas), fleet.c
 * (region, zones, nodes), trail.c (audit), images.c, instances.c,
 * quantum.c (quantum jobs), models.c (LLM endpoints), apikeys.c (API keys
 * for the OpenAI surface) and openai.c (the /openai/v1 proxy, metering);
 * each exports its route table.
 */
#ifndef CIEL_API_H
#define CIEL_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "auth/sign.h"
#include "crypto/seal.h"
#include "store/store.h"
#include "util/err.h"

#define API_BODY_MAX (1u << 20)
#define API_UPLOAD_MAX (4ULL << 30) /* bodies of ROUTE_UPLOAD routes, spooled to disk */
#define API_NAME_MAX 64
#define API_MAX_PARAMS 2

enum api_role {
	ROLE_NONE = 0,
	ROLE_READER = 1 << 0,
	ROLE_MEMBER = 1 << 1,
	ROLE_ADMIN = 1 << 2,
	ROLE_OPERATOR = 1 << 3,
	ROLE_NODE = 1 << 4,
};
#define ROLE_TENANT_ANY (ROLE_READER | ROLE_MEMBER | ROLE_ADMIN)
#define ROLE_ANY (ROLE_TENANT_ANY | ROLE_OPERATOR)

/* Role name <-> bit; -1/NULL if unknown. */
int api_role_parse(const char *name);
const char *api_role_name(int role);

struct api_config {
	const char *region_name;
	int node_timeout_s; /* heartbeat age after which a node is NotReady */
	int insecure_http;  /* plain HTTP on loopback; /v1/region reports "tls" */
};

struct metrics;

struct api {
	struct store *store;
	struct audit *audit;
	struct sign_replay *replay;
	struct metrics *metrics;
	unsigned char master_key[SEAL_KEY_LEN];
	struct api_config cfg;
	char *data_dir;	   /* owned: blobs/ and uploads/ live here */
	int64_t started_s; /* requests dated earlier are refused: see authenticate() */
};

/* Who sent a request, once authenticated. */
struct api_who {
	int role;		       /* ROLE_NONE until authenticated */
	char tenant[API_NAME_MAX + 1]; /* key's tenant, "region" for operator and nodes */
	char principal[API_NAME_MAX + 1];
	char key_id[SIGN_KEY_ID_MAX + 1]; /* claimed key id, kept even when refused */
};

struct api_req {
	/* set by the HTTP layer; borrowed */
	const char *method;
	const char *raw_path;  /* as sent, percent-encoded, no query */
	const char *raw_query; /* without '?', may be "" */
	const char *host;
	const char *h_date, *h_content_sha256, *h_authorization;
	const char *body;
	size_t body_len;
	/* for ROUTE_UPLOAD routes the body is in a file instead (body is "") */
	const char *body_file;
	const char *body_sha256;	/* hex SHA-256 of body_file's bytes, computed as it came */
	const struct ciel_err *refused; /* the HTTP layer's api_upload_precheck said no */
	int64_t received_s;		/* when the headers arrived (0 = now): a long upload's
					 * signature is judged by when it was sent, not finished */
	char source[80];		/* "ip:port" */

	/* set by the pipeline */
	char request_id[33];
	int64_t start_us;
	int route;	 /* index into the route table, -1 if none */
	char path[1024]; /* decoded path */
	char params[API_MAX_PARAMS][API_NAME_MAX * 2 + 1]; /* {name} captures, decoded */
	json_t *query; /* decoded query: object of name → string */
	struct api_who who;
	char tenant[API_NAME_MAX + 1]; /* the tenant acted on, "" if region-level */
	int audited;		       /* event already committed (api_commit) */
	int too_big;		       /* the HTTP layer cut the body at API_BODY_MAX */
	const char *reason;	       /* static: why authentication failed */
	const char *action;	       /* audit action when not from a route (init) */
	char chain[API_NAME_MAX + 1];  /* audit chain for this request */
	json_t *audit_detail;	       /* owned: the event's "detail" (audit.h), or NULL */
};

struct api_resp {
	int status;
	json_t *json; /* owned: the body, or NULL */
	char *raw;    /* owned: a non-JSON body (metrics, export) */
	size_t raw_len;
	const char *content_type; /* for raw and stream */
	/*
	 * A body produced piece by piece while it is sent (audit export): stream
	 * fills up to max bytes of buf and returns how many, 0 at the end, -1 to
	 * abort the transfer. stream_free releases stream_arg once the response is
	 * done with, sent or not; api_resp_release calls it if it never was sent.
	 */
	long (*stream)(void *arg, char *buf, size_t max);
	void *stream_arg;
	void (*stream_free)(void *arg);
	char allow[64];	     /* for 405 */
	int retry_after_s;   /* > 0: a Retry-After header (429) */
	struct ciel_err err; /* set when status >= 400 */
};
void api_resp_release(struct api_resp *resp);

typedef int (*api_handler_fn)(struct api *a, struct api_req *r, struct api_resp *resp,
			      struct ciel_err *err);

enum api_route_flags {
	ROUTE_UNSIGNED = 1 << 0,   /* no signature (health, metrics, node join) */
	ROUTE_TENANT = 1 << 1,	   /* acts on a tenant: the key's, or ?tenant= for the operator */
	ROUTE_TENANT_OPT = 1 << 2, /* like ROUTE_TENANT, but the operator may omit ?tenant= */
	ROUTE_UPLOAD = 1 << 3,	   /* a large body (API_UPLOAD_MAX) spooled to a file */
	ROUTE_BEARER = 1 << 4,	   /* also takes "Authorization: Bearer sk-ciel-..." API keys */
	ROUTE_OPENAI = 1 << 5, /* errors are OpenAI-shaped: {"error":{message,type,param,code}} */
};

struct api_route {
	const char *method;
	const char *pattern; /* "/v1/tenants/{}" ; "{}" captures one segment */
	const char *action;  /* audit action, metrics label: "tenant.create" */
	int roles;	     /* roles allowed (bitmask); 0 with ROUTE_UNSIGNED */
	int flags;
	api_handler_fn fn;
};

/* Route tables of the handler modules, NULL-method terminated. */
extern const struct api_route iam_routes[];
extern const struct api_route fleet_routes[];
extern const struct api_route trail_routes[];
extern const struct api_route image_routes[];
extern const struct api_route instance_routes[];
extern const struct api_route quantum_routes[];
extern const struct api_route model_routes[];
extern const struct api_route apikey_routes[];
extern const struct api_route openai_routes[];

/* True if method + raw (encoded) path name a ROUTE_UPLOAD route: the HTTP
 * layer then spools the body to a file under data_dir/uploads. */
int api_route_is_upload(const char *method, const char *raw_path);

/* A tenant's image by name, else a public one; NULL with CIEL_ENOTFOUND (field
 * "image", saying how to import it). tenant may be "" (public only). */
json_t *images_find(struct api *a, const char *tenant, const char *name, struct ciel_err *err);

/*
 * Before an upload's body is read: is it signed by a key whose role may use
 * the route? Checks the signature over the claimed body hash, without
 * touching the replay cache, so an unsigned client cannot fill the upload
 * spool; the full check runs again once the body is in. r needs method,
 * raw_path, raw_query, host and the signing headers; api_req_release it.
 */
int api_upload_precheck(struct api *a, struct api_req *r, struct ciel_err *err);

/* All nodes with their derived "state" (Ready/NotReady), key_id removed. */
json_t *fleet_nodes(struct api *a, struct ciel_err *err);

/*
 * The nodes as the schedulers see them: capacity from each node's document,
 * usage summed over every placement on it (instances and quantum jobs alike,
 * by their cpu_millis and memory_bytes), and how many of tenant's instances
 * it holds (tenant may be ""). sn[i].name and .zone point into nodes; release
 * with fleet_snapshot_release.
 */
struct sched_node;
struct fleet_snapshot {
	json_t *nodes;
	struct sched_node *sn;
	size_t n;
};
int fleet_snapshot_take(struct api *a, const char *tenant, struct fleet_snapshot *s,
			struct ciel_err *err);
void fleet_snapshot_release(struct fleet_snapshot *s);
/* Is a stored node document Ready now? */
int fleet_node_ready(struct api *a, const json_t *node);

/*
 * Housekeeping the control plane does on its own, every few seconds:
 * instances on a node that went NotReady are re-placed if their restart
 * policy says so, and deletions pending on a dead node are finished. Each
 * change is audited in its tenant's chain as action "instance.replace" or
 * "instance.delete" by principal "cield".
 */
void compute_sweep(struct api *a);

/* Quantum quotas of a tenant whose quota document predates them (iam.c, quantum.c). */
#define QUANTUM_DEFAULT_MAX_QUBITS 28
#define QUANTUM_DEFAULT_MAX_SHOTS 100000
#define QUANTUM_DEFAULT_MAX_JOBS 4

/*
 * Place queued quantum jobs on Ready nodes with free whole cores, oldest
 * first and round-robin between tenants; re-queue the ones whose node went
 * NotReady; record why the rest wait. Called every second by cield's main
 * loop and after anything that frees cores (see quantum.c). Each change is
 * audited in the job's tenant's chain by principal "cield".
 */
void quantum_dispatch(struct api *a);

/* ---- models as a service (models.c, apikeys.c, openai.c) ---- */

#define LLM_DEFAULT_TPM 100000 /* llm_tokens_per_minute of a quota that predates it */

/*
 * Authenticate r by its "Authorization: Bearer sk-ciel-<id>-<secret>" header
 * (an API key of a tenant): fills r->who as a member of that tenant with
 * principal "apikey:<id>". -1 with CIEL_EUNAUTH (r->reason set) otherwise.
 */
int apikeys_authenticate(struct api *a, struct api_req *r, struct ciel_err *err);
/* Is h an "Authorization: Bearer ..." header value? */
int apikeys_is_bearer(const char *h);

/*
 * The endpoint document of model name as tenant sees it: the tenant's own,
 * else a public one (tenant may be "" or "region": public only). Includes
 * the worker's url and token (never shown by GET). NULL with CIEL_ENOTFOUND
 * if there is none. Caller json_decref()s.
 */
json_t *models_find(struct api *a, const char *tenant, const char *name, struct ciel_err *err);

/*
 * Place endpoints waiting for a node (state pending), and move those whose
 * node went NotReady. Called every second by cield's main loop and after a
 * deploy; each change is audited in the endpoint's tenant's chain (public
 * ones in the region's) by principal "cield".
 */
void models_dispatch(struct api *a);

/* {"error":{"message","type","param","code"}} for err answered with status. */
json_t *openai_error_body(int status, const struct ciel_err *err);

/* Tokens (prompt + completion) tenant used in the last 60 s, as the TPM quota counts them. */
int64_t openai_tpm_used(const char *tenant);

/*
 * Handle one request. Always fills resp (status, body); never fails. Owns
 * nothing of r's borrowed inputs; api_req_release frees what the pipeline
 * allocated in r.
 */
void api_handle(struct api *a, struct api_req *r, struct api_resp *resp);
void api_req_release(struct api_req *r);

/*
 * For handlers that change state: commit ops together with this request's
 * audit event (recorded with ok_status on success, 409 if a condition
 * failed). Returns 0 when committed with all conditions met; -1 with
 * CIEL_ECONFLICT (res->failed_op says which) or the store's error.
 */
int api_commit(struct api *a, struct api_req *r, const struct store_op *ops, size_t n,
	       int ok_status, struct store_txn_result *res, struct ciel_err *err);

/*
 * Commit ops for a change cield makes on its own (housekeeping, placement),
 * with an audit event in tenant's chain: principal "cield" of the region,
 * acting on path. Returns like api_commit.
 */
int api_self_commit(struct api *a, const char *tenant, const char *path, const char *action,
		    const struct store_op *ops, size_t n, struct ciel_err *err);

/* Compact, key-sorted JSON text of j (stolen: j is freed); NULL on OOM. Caller frees. */
char *api_dump(json_t *j);

/* Answer helpers: take ownership of body. */
void api_reply(struct api_resp *resp, int status, json_t *body);

/* On /v1/nodes/{node}/... routes: 403 unless the caller is that node. */
int api_own_node(struct api_req *r, struct ciel_err *err);

/* Name rules shared by handlers; fill err naming field. */
int api_check_name(const char *field, const char *v, struct ciel_err *err);
/* Value of a decoded query parameter or NULL. */
const char *api_query(const struct api_req *r, const char *name);
/* Query parameter name as an integer in [min, max] into *out, def when it is
 * absent; -1 with err naming it if it is anything else. */
int api_query_int(const struct api_req *r, const char *name, int64_t def, int64_t min, int64_t max,
		  int64_t *out, struct ciel_err *err);

/* Open the region's state in data_dir (master key, store, audit key) for serving. */
int api_open(struct api *a, const char *data_dir, const struct api_config *cfg,
	     struct ciel_err *err);
void api_close(struct api *a);

/* Helpers for handlers: JSON of a stored document, or NULL. */
json_t *api_load_json(struct api *a, const char *key, int64_t *mod_rev, struct ciel_err *err);
/* The documents directly under prefix (not deeper), each with its "revision"; NULL on error. */
json_t *api_list_json(struct api *a, const char *prefix, struct ciel_err *err);
/* The documents of a kind ("images", "models") a tenant can use: its own
 * (/tenants/T/KIND/; none for tenant "") then the region's public ones
 * (/region/KIND/), as api_list_json gives them; NULL on error. */
json_t *api_list_visible(struct api *a, const char *tenant, const char *kind, struct ciel_err *err);
/* The strings behind the store ops of a new key; iam_key_ops_release frees them. */
struct iam_key_ops {
	char *s[6];
};
void iam_key_ops_release(struct iam_key_ops *k);

/* Create an access key for (tenant, principal, role): appends its store ops to
 * ops (IAM_KEY_OPS at most; *n advanced), whose strings live in *k until
 * iam_key_ops_release. The answer JSON (with the secret, shown this once)
 * goes to *out. A tenant key is indexed twice: under the tenant for listing,
 * under its principal so deleting the principal touches only its own keys. */
#define IAM_KEY_OPS 3
int iam_new_key(struct api *a, const char *tenant, const char *principal, const char *role,
		struct store_op *ops, size_t *n, struct iam_key_ops *k, json_t **out,
		struct ciel_err *err);

#endif
