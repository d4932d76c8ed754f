/*
 * agent — see agent.h. One thread runs passes:
 *
 *   1. reap children (the shims we started are ours)
 *   2. long poll the placement list (at most 2 s, less when a restart is due)
 *   3. per instance: read oci_status, then act toward the placement
 *      (start, stop, delete; restart per policy; remove orphans)
 *   4. per instance: derive the report from what is now observed, send it if
 *      it differs from the last one the region accepted
 *
 * An instance's record (struct inst) keeps three placements apart: "wanted"
 * is the item of the latest list (NULL if the list does not name it),
 * "acted" the one we last acted on (persisted in N.json), and the decision
 * compares their generations. A new generation is acted on once; within a
 * generation only the restart policy starts a container again.
 */
#include "agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent/fetch.h"
#include "agent/llmw.h"
#include "agent/qjob.h"
#include "image/image.h"
#include "net/net.h"
#include "oci/oci.h"
#include "util/file.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define PASS_MAX_MS 2000     /* exits are noticed at least this often */
#define POLL_MIN_WAIT_MS 100 /* below this a due restart goes first, the poll waits */
#define START_TIMEOUT_MS 15000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define RAN_LONG_MS 30000 /* a container that ran this long restarts without backoff */
#define NAME_MAX_LEN 31

struct inst {
	struct inst *next;
	char tenant[NAME_MAX_LEN + 1], name[NAME_MAX_LEN + 1];
	char id[2 * NAME_MAX_LEN + 2]; /* "<tenant>-<name>", see id_taken() */
	char dir[PATH_MAX], meta[PATH_MAX];
	json_t *wanted; /* the latest list's item; NULL if the list does not name it */
	json_t *acted;	/* the placement last acted on (persisted); NULL if none */
	json_t *sent;	/* the last report the region accepted (persisted) */
	json_t *status; /* oci_status of this pass; NULL if there is no local container */
	char fail[512]; /* why the last start of "acted" failed, "" if it did not */
	int64_t restarts;
	bool removed;	   /* deleted here; the "deleted" report is still to go */
	bool start_due;	   /* a start of "acted" is wanted (at next_try_ms) */
	bool start_counts; /* ... and it is a restart (policy), counted in restarts */
	int64_t next_try_ms, backoff_ms, started_ms; /* monotonic */
	char last_local[16]; /* state seen by the previous pass, "" before the first */
};

struct agent {
	char node[64];
	char host_id[80]; /* agent_host_id: what cgroups and network objects are named after */
	char state[PATH_MAX], instances[PATH_MAX], blobs[PATH_MAX], images[PATH_MAX];
	char self_exe[PATH_MAX];
	char placements_path[128], status_path[128];
	struct oci_runtime rt;
	struct client client;
	bool have_client;
	struct inst *insts;
	struct qjobs *qjobs; /* quantum job workers (qjob.h) */
	struct llmw *llmw;   /* model workers (llmw.h) */
	int64_t revision;
	bool have_list; /* a placement list came back since we started */
	int64_t next_poll_ms, poll_backoff_ms;
	int poll_failures;

	pthread_t thread;
	bool running;
	pthread_mutex_t lock; /* guards stopping, for the cond */
	pthread_cond_t cond;
	bool stopping;
};

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		h = (h ^ *c) * 16777619u;
	return h;
}

void agent_host_id(const char *state, const char *node, char *out, size_t size)
{
	char real[PATH_MAX];
	const char *p = realpath(state, real) ? real : state;

	snprintf(out, size, "%.63s-%08x", node, fnv1a(p));
}

uid_t agent_worker_uid(const char *tenant)
{
	if (!tenant[0])
		return (uid_t)AGENT_UID_PUBLIC;
	return (uid_t)(AGENT_UID_BASE + fnv1a(tenant) % AGENT_UID_SPAN);
}

void agent_worker_exec(const int *fds, int n, int exe, uid_t uid, pid_t parent,
		       const char *const *argv)
{
	int hi[16];
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setsid();
	if (n > (int)(sizeof(hi) / sizeof(hi[0])))
		_exit(124);
	/* first out of the way of 0..n-1, so no dup2 below overwrites a source */
	for (int i = 0; i < n; i++)
		if ((hi[i] = fcntl(fds[i], F_DUPFD, n)) < 0)
			_exit(124);
	for (int i = 0; i < n; i++)
		if (dup2(hi[i], i) < 0)
			_exit(124);
	if (fcntl(exe, F_SETFD, FD_CLOEXEC) < 0)
		_exit(124);
	syscall(SYS_close_range, (unsigned)n, ~0U, 0U);
	if (uid && (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
		    setresuid(uid, uid, uid) < 0))
		_exit(123);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		_exit(123);
	if (parent > 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			_exit(123);
		if (getppid() != parent)
			_exit(126); /* the agent went while we were being born */
	}
	syscall(SYS_execveat, exe, "", (char *const *)argv, environ, AT_EMPTY_PATH);
	_exit(127);
}

int agent_post_report(struct client *c, const char *path, const json_t *report, const char *what,
		      const char *label, const char *key)
{
	struct client_response resp = {0};
	struct ciel_err err;
	char code[64];
	int ret = -1;

	if (client_request(c, "POST", path, NULL, report, &resp, &err) < 0) {
		log_warn("%s failed: %s", what, err.msg);
		goto out;
	}
	if (resp.status >= 200 && resp.status < 300) {
		ret = 0;
		goto out;
	}
	client_response_error(&resp, &err, code, sizeof(code), NULL, 0);
	if (resp.status >= 500 || resp.status == 408 || resp.status == 429 || resp.status == 401) {
		log_warn("%s failed: %s: %s request=%s", what, code, err.msg, resp.request_id);
		goto out;
	}
	log_warn("%s refused tenant=%s %s=%s: %s: %s request=%s", what,
		 jbody_str(report, "tenant", ""), label, jbody_str(report, key, ""), code, err.msg,
		 resp.request_id);
	ret = 1;
out:
	client_response_release(&resp);
	return ret;
}

int agent_node_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 63 || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

int agent_name_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 2 || n > NAME_MAX_LEN || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

/* ---- small helpers ---------------------------------------------------- */

static int mkdir_one(const char *p, struct ciel_err *err)
{
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", p);
	return 0;
}

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int64_t gen_of(const json_t *p)
{
	return p ? jbody_int(p, "generation", -1) : -1;
}

static const char *local_state(const struct inst *in)
{
	return in->status ? jbody_str(in->status, "state", "unknown") : "unknown";
}

/* A NULL-terminated copy of a JSON array of strings; *out NULL for an absent
 * member. Caller frees with strv_free. -1 if it is not such an array. */
static int strv_from(const json_t *arr, bool need, char ***out)
{
	size_t n, i;
	json_t *v;
	char **sv;

	*out = NULL;
	if (!arr || json_is_null(arr))
		return need ? -1 : 0;
	if (!json_is_array(arr) || (need && json_array_size(arr) == 0))
		return -1;
	n = json_array_size(arr);
	sv = calloc(n + 1, sizeof(*sv));
	if (!sv)
		return -1;
	json_array_foreach(arr, i, v)
	{
		if (!json_is_string(v) || !(sv[i] = strdup(json_string_value(v)))) {
			for (size_t k = 0; k < i; k++)
				free(sv[k]);
			free(sv);
			return -1;
		}
	}
	*out = sv;
	return 0;
}

static void strv_free(char **sv)
{
	for (size_t i = 0; sv && sv[i]; i++)
		free(sv[i]);
	free(sv);
}

/* ---- instance records ------------------------------------------------- */

static struct inst *inst_find(struct agent *a, const char *tenant, const char *name)
{
	for (struct inst *in = a->insts; in; in = in->next)
		if (!strcmp(in->tenant, tenant) && !strcmp(in->name, name))
			return in;
	return NULL;
}

/* A new record for tenant/name (both already valid), linked in; NULL on ENOMEM. */
static struct inst *inst_new(struct agent *a, const char *tenant, const char *name)
{
	struct inst *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	snprintf(in->tenant, sizeof(in->tenant), "%s", tenant);
	snprintf(in->name, sizeof(in->name), "%s", name);
	snprintf(in->id, sizeof(in->id), "%s-%s", tenant, name);
	file_pathf(in->dir, sizeof(in->dir), "%s/%s/%s", a->instances, tenant, name);
	file_pathf(in->meta, sizeof(in->meta), "%s/%s/%s.json", a->instances, tenant, name);
	in->backoff_ms = BACKOFF_MIN_MS;
	in->next = a->insts;
	a->insts = in;
	return in;
}

/*
 * Another record whose container id is in's: "<tenant>-<name>" is not
 * one-to-one ("acme" + "a-b" and "acme-a" + "b"). The first to start keeps
 * the id; the other is refused, so one tenant's instance can never act on
 * another's container.
 */
static const struct inst *id_taken(const struct agent *a, const struct inst *in)
{
	for (const struct inst *o = a->insts; o; o = o->next)
		if (o != in && !strcmp(o->id, in->id))
			return o;
	return NULL;
}

static void inst_drop(struct agent *a, struct inst *in)
{
	for (struct inst **pp = &a->insts; *pp; pp = &(*pp)->next) {
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	}
	json_decref(in->wanted);
	json_decref(in->acted);
	json_decref(in->sent);
	json_decref(in->status);
	free(in);
}

/* Persist what must survive a restart of the agent (see agent.h). */
static int save_meta(struct agent *a, struct inst *in)
{
	struct ciel_err err;
	char tdir[PATH_MAX];
	json_t *j;
	char *text;
	int r;

	if (in->removed)
		return 0; /* its record went with it */
	file_pathf(tdir, sizeof(tdir), "%s/%s", a->instances, in->tenant);
	if (mkdir_one(tdir, &err) < 0) {
		log_warn("instance record not saved tenant=%s name=%s: %s", in->tenant, in->name,
			 err.msg);
		return -1;
	}
	j = json_pack("{s:O?, s:O?, s:I, s:s}", "placement", in->acted, "report", in->sent,
		      "restarts", (json_int_t)in->restarts, "fail", in->fail);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!text) {
		log_warn("instance record not saved tenant=%s name=%s: out of memory", in->tenant,
			 in->name);
		return -1;
	}
	r = file_write_atomic(in->meta, text, strlen(text), &err);
	free(text);
	if (r < 0)
		log_warn("instance record not saved tenant=%s name=%s: %s", in->tenant, in->name,
			 err.msg);
	return r;
}

static void load_meta(struct inst *in)
{
	json_error_t jerr;
	json_t *j = json_load_file(in->meta, 0, &jerr);
	json_t *p;

	if (!j) {
		if (access(in->meta, F_OK) == 0)
			log_warn("instance record unreadable tenant=%s name=%s: %s", in->tenant,
				 in->name, jerr.text);
		return;
	}
	p = json_object_get(j, "placement");
	if (json_is_object(p) && !strcmp(jbody_str(p, "tenant", ""), in->tenant) &&
	    !strcmp(jbody_str(p, "name", ""), in->name))
		in->acted = json_incref(p);
	if (json_is_object(json_object_get(j, "report")))
		in->sent = json_incref(json_object_get(j, "report"));
	in->restarts = jbody_int(j, "restarts", 0);
	snprintf(in->fail, sizeof(in->fail), "%s", jbody_str(j, "fail", ""));
	json_decref(j);
}

/* Replace acted by p (a reference is taken) and persist, if it changed. */
static void set_acted(struct agent *a, struct inst *in, json_t *p)
{
	if (in->acted == p || (in->acted && json_equal(in->acted, p)))
		return;
	json_decref(in->acted);
	in->acted = json_incref(p);
	save_meta(a, in);
}

/* Read oci_status into in->status; log a change of state once. */
static void refresh_status(struct agent *a, struct inst *in)
{
	struct ciel_err err;
	const char *st;

	json_decref(in->status);
	in->status = NULL;
	if (is_dir(in->dir)) {
		in->status = oci_status(&a->rt, in->id, in->dir, &err);
		if (!in->status)
			log_warn("instance status unreadable tenant=%s name=%s: %s", in->tenant,
				 in->name, err.msg);
	}
	st = local_state(in);
	/* the first look (adoption) is logged by the caller, not as a change */
	if (!strcmp(st, in->last_local) || !in->last_local[0])
		goto out;
	if (!strcmp(st, "exited"))
		log_info("instance exited tenant=%s name=%s exit_code=%" PRId64 " oom=%s",
			 in->tenant, in->name, jbody_int(in->status, "exit_code", -1),
			 json_is_true(json_object_get(in->status, "oom")) ? "true" : "false");
	else if (!strcmp(st, "failed"))
		log_info("instance failed tenant=%s name=%s reason=\"%s\"", in->tenant, in->name,
			 jbody_str(in->status, "reason", ""));
out:
	snprintf(in->last_local, sizeof(in->last_local), "%s", st);
}

/* ---- acting ----------------------------------------------------------- */

/* Record why a start failed; it is reported as the reason, so plain ASCII only
 * (a runtime's message may carry anything, and JSON strings must be UTF-8). */
static void set_fail(struct inst *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fail(struct inst *in, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(in->fail, sizeof(in->fail), fmt, ap);
	va_end(ap);
	for (char *c = in->fail; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	log_warn("instance start failed tenant=%s name=%s reason=\"%s\"", in->tenant, in->name,
		 in->fail);
}

static int parse_layers(const json_t *p, struct image_layer *layers, size_t *n)
{
	const json_t *arr = json_object_get(p, "layers"), *l;
	size_t i;

	if (!json_is_array(arr) || json_array_size(arr) == 0 ||
	    json_array_size(arr) > IMAGE_MAX_LAYERS)
		return -1;
	json_array_foreach(arr, i, l)
	{
		const char *d = jbody_str(l, "digest", "");

		if (!image_digest_valid(d))
			return -1;
		memset(&layers[i], 0, sizeof(layers[i]));
		snprintf(layers[i].digest, sizeof(layers[i].digest), "%s", d);
		layers[i].size = jbody_int(l, "size", 0);
		if (layers[i].size < 0)
			return -1;
	}
	*n = i;
	return 0;
}

/*
 * Start the container of placement p: image, network, bundle, shim.
 * 0 started; -1 failed (in->fail says why); 1 not now (the region could not
 * be reached for the image: try again later, nothing to report).
 */
static int start_inst(struct agent *a, struct inst *in, const json_t *p)
{
	struct image_layer layers[IMAGE_MAX_LAYERS];
	struct image_opts io = {0};
	struct oci_spec spec = {0};
	struct net_names nn;
	struct ciel_err err = {0};
	char root[PATH_MAX], tdir[PATH_MAX], **argv = NULL, **env = NULL;
	const char *addr = jbody_str(p, "address", NULL), *cwd = jbody_str(p, "cwd", NULL);
	const struct inst *other = id_taken(a, in);
	int64_t t0 = ts_mono_ms(), t_image = t0, t_net = t0, t_prep = t0, t_start = t0;
	pid_t pid = 0;
	size_t nl = 0;
	int ret = -1;

	if (other && is_dir(other->dir)) {
		snprintf(root, sizeof(root), "%s/%s", other->tenant, other->name);
		set_fail(in, "container id taken on this node by %s", root);
		goto out;
	}
	if (parse_layers(p, layers, &nl) < 0) {
		set_fail(in, "bad placement: %s", "layers: must be 1 to 64 {digest,size}");
		goto out;
	}
	if (strv_from(json_object_get(p, "command"), true, &argv) < 0 ||
	    strv_from(json_object_get(p, "env"), false, &env) < 0) {
		set_fail(in, "bad placement: %s", "command and env must be arrays of strings");
		goto out;
	}
	if (cwd && cwd[0] != '/') {
		set_fail(in, "bad placement: %s", "cwd must be an absolute path");
		goto out;
	}
	/* the operator allowed setuid files at import; the node checks again either way */
	io.allow_setuid = json_is_true(json_object_get(p, "allow_setuid"));
	t_image = ts_mono_ms();
	if (fetch_image(&a->client, a->blobs, a->images, jbody_str(p, "image_digest", ""), layers,
			nl, &io, root, sizeof(root), &err) < 0) {
		if (err.code == CIEL_EUNAVAIL) {
			log_warn("instance waits for its image tenant=%s name=%s: %s", in->tenant,
				 in->name, err.msg);
			ret = 1;
		} else if (err.code == CIEL_ENOTFOUND) {
			set_fail(in, "image missing: %s", err.msg);
		} else {
			set_fail(in, "image: %s", err.msg);
		}
		goto out;
	}
	file_pathf(tdir, sizeof(tdir), "%s/%s", a->instances, in->tenant);
	if (mkdir_one(tdir, &err) < 0 || mkdir_one(in->dir, &err) < 0) {
		set_fail(in, "%s", err.msg);
		goto out;
	}
	spec.netns = NULL;
	t_net = ts_mono_ms();
	if (addr && *addr) {
		if (net_attach(a->host_id, in->tenant, in->name, addr, &nn, &err) < 0) {
			set_fail(in, "network: %s", err.msg);
			goto out;
		}
		spec.netns = nn.netns_path;
	} else {
		log_warn("instance has no address, no network tenant=%s name=%s", in->tenant,
			 in->name);
	}
	spec.id = in->id;
	spec.dir = in->dir;
	spec.image = root;
	spec.argv = argv;
	spec.env = env;
	spec.cwd = cwd;
	spec.hostname = in->name;
	spec.cpu_millis = jbody_int(p, "cpu_millis", 0);
	spec.memory_bytes = jbody_int(p, "memory_bytes", 0);
	spec.pids_max = AGENT_PIDS_MAX;
	t_prep = ts_mono_ms();
	if (oci_prepare(&a->rt, &spec, &err) < 0) {
		set_fail(in, "prepare: %s", err.msg);
		goto out;
	}
	t_start = ts_mono_ms();
	if (oci_start(&a->rt, a->self_exe, &spec, START_TIMEOUT_MS, &pid, &err) < 0) {
		set_fail(in, "%s", err.msg);
		goto out;
	}
	in->fail[0] = '\0';
	in->started_ms = ts_mono_ms();
	/* where a start's time goes, so a slow one can be told apart */
	log_info("instance started tenant=%s name=%s generation=%" PRId64 " pid=%d ms=%" PRId64
		 " image_ms=%" PRId64 " net_ms=%" PRId64 " prepare_ms=%" PRId64
		 " runtime_ms=%" PRId64,
		 in->tenant, in->name, gen_of(p), (int)pid, ts_mono_ms() - t0, t_net - t_image,
		 t_prep - t_net, t_start - t_prep, in->started_ms - t_start);
	ret = 0;
out:
	strv_free(argv);
	strv_free(env);
	return ret;
}

/* Remove the container, its network and its record. 0 when all of it is gone. */
static int remove_local(struct agent *a, struct inst *in)
{
	struct ciel_err err;
	char tdir[PATH_MAX];
	int ret = 0;

	/* a refused twin (id_taken) never had a container: the id is the other's */
	if ((!id_taken(a, in) || is_dir(in->dir)) &&
	    oci_remove(&a->rt, in->id, in->dir, &err) < 0) {
		log_warn("instance remove failed tenant=%s name=%s: %s", in->tenant, in->name,
			 err.msg);
		ret = -1;
	}
	if (net_detach(a->host_id, in->tenant, in->name, &err) < 0) {
		log_warn("instance network remove failed tenant=%s name=%s: %s", in->tenant,
			 in->name, err.msg);
		ret = -1;
	}
	if (ret == 0) {
		if (unlink(in->meta) < 0 && errno != ENOENT) {
			log_warn("instance record not removed tenant=%s name=%s: %s", in->tenant,
				 in->name, strerror(errno));
			return -1;
		}
		file_pathf(tdir, sizeof(tdir), "%s/%s", a->instances, in->tenant);
		rmdir(tdir); /* the tenant's last instance here: fails harmlessly otherwise */
		json_decref(in->status);
		in->status = NULL;
	}
	return ret;
}

/* Whether the restart policy wants the acted placement running again. */
static bool policy_restarts(const struct inst *in)
{
	const char *policy = jbody_str(in->acted, "restart", "no");
	const char *st = local_state(in);

	if (!strcmp(policy, "always"))
		return true;
	if (strcmp(policy, "on-failure") != 0)
		return false;
	if (in->fail[0] || !strcmp(st, "failed"))
		return true;
	return !strcmp(st, "exited") && (jbody_int(in->status, "exit_code", 0) != 0 ||
					 json_is_true(json_object_get(in->status, "oom")));
}

static void want_running(struct agent *a, struct inst *in, json_t *p, int64_t now)
{
	const char *st = local_state(in);
	int r;

	if (!strcmp(st, "running")) {
		in->start_due = false;
		in->fail[0] = '\0';
		set_acted(a, in, p); /* a newer generation of what already runs: nothing to do */
		return;
	}
	if (gen_of(in->acted) != gen_of(p)) {
		in->fail[0] = '\0';
		set_acted(a, in, p);
		in->start_due = true;
		in->start_counts = false;
		in->next_try_ms = 0;
		in->backoff_ms = BACKOFF_MIN_MS;
	} else if (!in->start_due) {
		if (!strcmp(st, "unknown") && !in->fail[0]) {
			/* acted on but never got as far as a status: finish the start */
			in->start_due = true;
			in->start_counts = false;
			in->next_try_ms = 0;
		} else if (policy_restarts(in)) {
			if (in->started_ms && now - in->started_ms >= RAN_LONG_MS)
				in->backoff_ms = BACKOFF_MIN_MS;
			in->start_due = true;
			in->start_counts = true;
			in->next_try_ms = now + in->backoff_ms;
			log_info("instance restart scheduled tenant=%s name=%s in_ms=%" PRId64
				 " restarts=%" PRId64,
				 in->tenant, in->name, in->backoff_ms, in->restarts);
			in->backoff_ms = in->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
									     : in->backoff_ms * 2;
		}
	}
	if (!in->start_due || now < in->next_try_ms)
		return;
	r = start_inst(a, in, in->acted);
	if (r > 0) {
		in->next_try_ms = now + in->backoff_ms;
		in->backoff_ms =
		    in->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : in->backoff_ms * 2;
		return;
	}
	in->start_due = false;
	if (in->start_counts)
		in->restarts++;
	save_meta(a, in);
	refresh_status(a, in);
}

static void want_stopped(struct agent *a, struct inst *in, json_t *p)
{
	struct ciel_err err;
	int64_t t0 = ts_mono_ms();

	in->start_due = false;
	if (!strcmp(local_state(in), "running")) {
		if (oci_stop(&a->rt, in->id, in->dir, AGENT_STOP_GRACE_MS, &err) < 0) {
			log_warn("instance stop failed tenant=%s name=%s: %s", in->tenant, in->name,
				 err.msg);
			return; /* still running: the next pass tries again */
		}
		refresh_status(a, in);
		log_info("instance stopped tenant=%s name=%s exit_code=%" PRId64 " ms=%" PRId64,
			 in->tenant, in->name, jbody_int(in->status, "exit_code", -1),
			 ts_mono_ms() - t0);
	}
	in->fail[0] = '\0';
	set_acted(a, in, p);
}

static void reconcile_one(struct agent *a, struct inst *in, int64_t now)
{
	json_t *p = in->wanted ? in->wanted : in->acted;
	const char *desired;

	refresh_status(a, in);
	if (!p)
		return;
	desired = jbody_str(p, "desired", "");
	if (in->removed && strcmp(desired, "deleted") != 0) {
		/* a new instance under a deleted one's name: start from nothing */
		in->removed = false;
		json_decref(in->acted);
		in->acted = NULL;
		in->restarts = 0;
	}
	if (!strcmp(desired, "deleted")) {
		in->start_due = false;
		if (!in->removed && remove_local(a, in) == 0) {
			log_info("instance deleted tenant=%s name=%s", in->tenant, in->name);
			in->removed = true;
			json_decref(in->acted);
			in->acted = json_incref(p);
		}
	} else if (!strcmp(desired, "stopped")) {
		want_stopped(a, in, p);
	} else if (!strcmp(desired, "running")) {
		want_running(a, in, p, now);
	}
}

/* ---- reports ---------------------------------------------------------- */

static void copy_member(json_t *dst, const json_t *src, const char *from, const char *to)
{
	json_t *v = json_object_get(src, from);

	if (v && !json_is_null(v))
		json_object_set(dst, to, v);
}

/*
 * What to tell the region about in now, or NULL if nothing yet (a start is
 * on its way). Only members the status route knows: it refuses others.
 */
static json_t *derive_report(const struct inst *in)
{
	const json_t *p = in->wanted ? in->wanted : in->acted;
	const char *desired, *st;
	json_t *r;

	if (!p)
		return NULL;
	desired = jbody_str(p, "desired", "");
	st = local_state(in);
	if (!strcmp(desired, "deleted") && !in->removed)
		return NULL;
	r = json_pack("{s:s, s:s, s:I}", "tenant", in->tenant, "name", in->name, "generation",
		      (json_int_t)gen_of(p));
	if (!r)
		return NULL;
	if (in->removed) {
		json_object_set_new(r, "state", json_string("deleted"));
		return r;
	}
	if (!strcmp(st, "running")) {
		json_object_set_new(r, "state", json_string("running"));
		copy_member(r, in->status, "started", "started");
	} else if (!strcmp(desired, "stopped")) {
		json_object_set_new(r, "state", json_string("stopped"));
		if (!strcmp(st, "exited")) {
			copy_member(r, in->status, "exit_code", "exit_code");
			copy_member(r, in->status, "finished", "finished");
		}
		return r;
	} else if (gen_of(in->acted) != gen_of(p) || (in->start_due && !in->start_counts)) {
		json_decref(r); /* a first start is on its way */
		return NULL;
	} else if (in->fail[0]) {
		json_object_set_new(r, "state", json_string("failed"));
		json_object_set_new(r, "reason", json_string(in->fail));
	} else if (!strcmp(st, "failed")) {
		json_object_set_new(r, "state", json_string("failed"));
		copy_member(r, in->status, "reason", "reason");
	} else if (!strcmp(st, "exited")) {
		json_object_set_new(r, "state", json_string("exited"));
		copy_member(r, in->status, "exit_code", "exit_code");
		copy_member(r, in->status, "finished", "finished");
		if (json_is_true(json_object_get(in->status, "oom")))
			json_object_set_new(r, "reason", json_string("oom"));
	} else {
		json_decref(r);
		return NULL;
	}
	json_object_set_new(r, "restarts", json_integer(in->restarts));
	return r;
}

static void send_reports(struct agent *a)
{
	struct inst *in, *next;

	for (in = a->insts; in; in = next) {
		json_t *r = derive_report(in);
		int rc;

		next = in->next;
		if (!r)
			continue;
		if (in->sent && json_equal(r, in->sent)) {
			json_decref(r);
			continue;
		}
		rc = agent_post_report(&a->client, a->status_path, r, "report", "name", "name");
		if (rc < 0) {
			json_decref(r);
			return; /* the region is away: the rest waits for the next pass */
		}
		if (rc == 0)
			log_info("reported tenant=%s name=%s generation=%" PRId64 " state=%s",
				 in->tenant, in->name, jbody_int(r, "generation", -1),
				 jbody_str(r, "state", ""));
		json_decref(in->sent);
		in->sent = r;
		if (in->removed) {
			inst_drop(a, in);
			continue;
		}
		save_meta(a, in);
	}
}

/* ---- the placement list ----------------------------------------------- */

/* 0 if item names an instance we can act on; its tenant and name are safe in paths. */
static int item_valid(const json_t *item, const char **why)
{
	const char *d = jbody_str(item, "desired", "");

	*why = NULL;
	if (!json_is_object(item))
		*why = "not an object";
	else if (!agent_name_valid(jbody_str(item, "tenant", "")))
		*why = "tenant: not a valid name";
	else if (!agent_name_valid(jbody_str(item, "name", "")))
		*why = "name: not a valid name";
	else if (!json_is_integer(json_object_get(item, "generation")) || gen_of(item) < 0)
		*why = "generation: must be an integer >= 0";
	else if (strcmp(d, "running") && strcmp(d, "stopped") && strcmp(d, "deleted"))
		*why = "desired: must be running, stopped or deleted";
	return *why ? -1 : 0;
}

/* Long poll; on an answer, the list replaces every instance's "wanted". */
static int poll_placements(struct agent *a, int64_t wait_ms)
{
	struct client_response resp = {0};
	struct ciel_err err;
	char query[96], code[64];
	json_t *items, *item;
	int64_t rev;
	size_t i;
	int ret = -1;

	snprintf(query, sizeof(query), "after=%" PRId64 "&wait_ms=%" PRId64, a->revision, wait_ms);
	if (client_request(&a->client, "GET", a->placements_path, query, NULL, &resp, &err) < 0) {
		log_warn("placements unreachable node=%s: %s", a->node, err.msg);
		goto out;
	}
	if (resp.status != 200) {
		client_response_error(&resp, &err, code, sizeof(code), NULL, 0);
		log_warn("placements refused node=%s: %s: %s request=%s", a->node, code, err.msg,
			 resp.request_id);
		goto out;
	}
	items = json_object_get(resp.json, "items");
	if (!json_is_integer(json_object_get(resp.json, "revision")) || !json_is_array(items)) {
		log_warn("placements answer malformed node=%s request=%s", a->node,
			 resp.request_id);
		goto out;
	}
	rev = jbody_int(resp.json, "revision", 0);
	for (struct inst *in = a->insts; in; in = in->next) {
		json_decref(in->wanted);
		in->wanted = NULL;
	}
	qjobs_list_begin(a->qjobs);
	llmw_list_begin(a->llmw);
	json_array_foreach(items, i, item)
	{
		const char *why, *t, *n;
		struct inst *in;

		if (qjobs_is_item(item)) {
			qjobs_list_add(a->qjobs, item);
			continue;
		}
		if (llmw_is_item(item)) {
			llmw_list_add(a->llmw, item);
			continue;
		}
		if (item_valid(item, &why) < 0) {
			if (rev != a->revision)
				log_warn("placement ignored index=%zu: %s", i, why);
			continue;
		}
		t = jbody_str(item, "tenant", "");
		n = jbody_str(item, "name", "");
		in = inst_find(a, t, n);
		if (in && in->wanted)
			continue; /* named twice: the first wins */
		if (!in && !(in = inst_new(a, t, n))) {
			log_error("out of memory");
			continue;
		}
		in->wanted = json_incref(item);
	}
	if (!a->have_list || rev != a->revision)
		log_info("placements node=%s revision=%" PRId64 " items=%zu%s", a->node, rev,
			 json_array_size(items),
			 a->poll_failures ? " (region reachable again)" : "");
	qjobs_list_end(a->qjobs);
	llmw_list_end(a->llmw);
	a->revision = rev;
	a->have_list = true;
	ret = 0;
out:
	client_response_release(&resp);
	return ret;
}

/* ---- adoption --------------------------------------------------------- */

/* Records for every instance STATE/instances holds, with their status. */
static void adopt(struct agent *a)
{
	DIR *td = opendir(a->instances), *nd;
	struct dirent *te, *ne;
	char tpath[PATH_MAX], name[NAME_MAX + 1];
	int n = 0;

	if (!td)
		return;
	while ((te = readdir(td))) {
		if (!agent_name_valid(te->d_name))
			continue;
		file_pathf(tpath, sizeof(tpath), "%s/%s", a->instances, te->d_name);
		nd = opendir(tpath);
		if (!nd)
			continue;
		while ((ne = readdir(nd))) {
			size_t len = strlen(ne->d_name);
			struct inst *in;

			snprintf(name, sizeof(name), "%s", ne->d_name);
			if (len > 5 && !strcmp(name + len - 5, ".json"))
				name[len - 5] = '\0';
			if (!agent_name_valid(name) || inst_find(a, te->d_name, name))
				continue;
			in = inst_new(a, te->d_name, name);
			if (!in)
				break;
			load_meta(in);
			refresh_status(a, in);
			log_info("instance adopted tenant=%s name=%s generation=%" PRId64
				 " state=%s pid=%" PRId64,
				 in->tenant, in->name, gen_of(in->acted), local_state(in),
				 jbody_int(in->status, "pid", 0));
			n++;
		}
		closedir(nd);
	}
	closedir(td);
	if (n)
		log_info("adopted instances=%d node=%s", n, a->node);
}

/* ---- the loop --------------------------------------------------------- */

static bool stop_asked(struct agent *a)
{
	bool s;

	pthread_mutex_lock(&a->lock);
	s = a->stopping;
	pthread_mutex_unlock(&a->lock);
	return s;
}

/* Sleep ms, or less if a stop is asked; returns whether one was. */
static bool sleep_ms(struct agent *a, int64_t ms)
{
	struct timespec ts;
	bool s;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->lock);
	while (!a->stopping && pthread_cond_timedwait(&a->cond, &a->lock, &ts) == 0)
		;
	s = a->stopping;
	pthread_mutex_unlock(&a->lock);
	return s;
}

/*
 * Shims are our children (lib/oci reaps the ones it tracks, and copes with
 * ECHILD); this catches any it could not track. Only here, on the thread
 * that forks, between operations: never under someone else's waitpid.
 * Quantum workers are children too: their exit status is their result, so
 * it goes to qjob rather than being thrown away; model workers (llmw) are
 * children too, until an agent restart leaves them to their adopter.
 */
static void reap_children(struct agent *a)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (!qjobs_reaped(a->qjobs, pid, status))
			llmw_reaped(a->llmw, pid, status);
}

/* Milliseconds until the next pass has work of its own (a due start). */
static int64_t ms_until_due(const struct agent *a, int64_t now)
{
	int64_t due = PASS_MAX_MS;

	for (const struct inst *in = a->insts; in; in = in->next)
		if (in->start_due && in->next_try_ms - now < due)
			due = in->next_try_ms - now;
	/* a quantum worker's end is noticed by looking: soon after its start */
	if (qjobs_due_ms(a->qjobs) < due)
		due = qjobs_due_ms(a->qjobs) < POLL_MIN_WAIT_MS ? POLL_MIN_WAIT_MS
								: qjobs_due_ms(a->qjobs);
	/* a loading model worker's ready file, a stop's grace, a restart's backoff */
	if (llmw_due_ms(a->llmw) < due)
		due = llmw_due_ms(a->llmw) < POLL_MIN_WAIT_MS ? POLL_MIN_WAIT_MS
							      : llmw_due_ms(a->llmw);
	return due < 0 ? 0 : due;
}

static void *reconcile_main(void *arg)
{
	struct agent *a = arg;

	adopt(a);
	while (!stop_asked(a)) {
		int64_t now = ts_mono_ms(), due = ms_until_due(a, now);

		reap_children(a);
		if (now >= a->next_poll_ms && due >= POLL_MIN_WAIT_MS) {
			if (poll_placements(a, due) < 0) {
				a->poll_failures++;
				a->next_poll_ms = ts_mono_ms() + a->poll_backoff_ms;
				a->poll_backoff_ms = a->poll_backoff_ms * 2 > BACKOFF_MAX_MS
							 ? BACKOFF_MAX_MS
							 : a->poll_backoff_ms * 2;
			} else {
				a->poll_failures = 0;
				a->next_poll_ms = 0;
				a->poll_backoff_ms = BACKOFF_MIN_MS;
			}
		} else {
			int64_t wait = a->next_poll_ms > now && a->next_poll_ms - now < due
					   ? a->next_poll_ms - now
					   : due;

			/* never spin: at worst a due start waits a few milliseconds */
			if (sleep_ms(a, wait < 10 ? 10 : wait))
				break;
		}
		if (stop_asked(a))
			break;
		now = ts_mono_ms();
		for (struct inst *in = a->insts, *next; in; in = next) {
			next = in->next;
			if (a->have_list && !in->wanted) {
				in->start_due = false;
				/* the region placed it elsewhere, or forgot it, while we were away
				 */
				if (remove_local(a, in) == 0) {
					log_info("orphan removed tenant=%s name=%s", in->tenant,
						 in->name);
					inst_drop(a, in);
				}
				continue;
			}
			reconcile_one(a, in, now);
		}
		qjobs_reconcile(a->qjobs);
		llmw_reconcile(a->llmw, &a->client);
		send_reports(a);
		qjobs_report(a->qjobs, &a->client);
		llmw_report(a->llmw, &a->client);
	}
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------- */

int agent_open(struct agent **out, const struct agent_config *cfg, struct ciel_err *err)
{
	char root[PATH_MAX + 16];
	struct agent *a;
	char *esc;

	*out = NULL;
	if (!agent_node_valid(cfg->node))
		return ciel_err_field(
		    err, CIEL_EINVAL, "name",
		    "node name: 1 to 63 characters of a-z, 0-9 and '-' (not first)");
	if (!cfg->state || !cfg->self_exe)
		return ciel_err_set(err, CIEL_EINVAL, "agent: state and self_exe are needed");
	a = calloc(1, sizeof(*a));
	if (!a)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	pthread_mutex_init(&a->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&a->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	a->poll_backoff_ms = BACKOFF_MIN_MS;
	snprintf(a->node, sizeof(a->node), "%s", cfg->node);
	if (mkdir_one(cfg->state, err) < 0)
		goto fail;
	/* absolute: the paths end up in runtime configs and in shims' argv */
	if (!realpath(cfg->state, a->state)) {
		ciel_err_sys(err, CIEL_EIO, errno, "state dir %s", cfg->state);
		goto fail;
	}
	if (strlen(a->state) >= sizeof(a->state) - 64 ||
	    (size_t)snprintf(a->self_exe, sizeof(a->self_exe), "%s", cfg->self_exe) >=
		sizeof(a->self_exe)) {
		ciel_err_set(err, CIEL_EINVAL, "agent: path too long");
		goto fail;
	}
	file_pathf(a->instances, sizeof(a->instances), "%s/instances", a->state);
	file_pathf(a->blobs, sizeof(a->blobs), "%s/blobs", a->state);
	file_pathf(a->images, sizeof(a->images), "%s/images", a->state);
	file_pathf(root, sizeof(root), "%s/runtime", a->state);
	esc = client_escape(a->node);
	if (!esc) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto fail;
	}
	snprintf(a->placements_path, sizeof(a->placements_path), "/v1/nodes/%s/placements", esc);
	snprintf(a->status_path, sizeof(a->status_path), "/v1/nodes/%s/status", esc);
	free(esc);
	if (mkdir_one(a->instances, err) < 0 || mkdir_one(a->blobs, err) < 0 ||
	    mkdir_one(a->images, err) < 0)
		goto fail;
	{
		/* the simulator and the model worker are installed beside the agent
		 * (ciel-qsim, ciel-llm) */
		char qsim[PATH_MAX + 16], llm[PATH_MAX + 16], dir[PATH_MAX], qpath[160], lpath[160];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", a->self_exe);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		else
			snprintf(dir, sizeof(dir), ".");
		file_pathf(qsim, sizeof(qsim), "%s/ciel-qsim", dir);
		esc = client_escape(a->node);
		if (!esc) {
			ciel_err_set(err, CIEL_ENOMEM, "out of memory");
			goto fail;
		}
		snprintf(qpath, sizeof(qpath), "/v1/nodes/%s/qjobs", esc);
		snprintf(lpath, sizeof(lpath), "/v1/nodes/%s/llm", esc);
		free(esc);
		if (qjobs_open(&a->qjobs, a->state, qsim, qpath, err) < 0)
			goto fail;
		file_pathf(llm, sizeof(llm), "%s/ciel-llm", dir);
		if (llmw_open(&a->llmw, a->state, llm, lpath, err) < 0)
			goto fail;
	}
	agent_host_id(a->state, a->node, a->host_id, sizeof(a->host_id));
	if (oci_detect(&a->rt, cfg->runtime ? cfg->runtime : "auto", root, a->host_id, err) < 0) {
		ciel_err_prefix(err, "container runtime: ");
		goto fail;
	}
	if (net_node_setup(a->host_id, err) < 0) {
		ciel_err_prefix(err, "node network: ");
		goto fail;
	}
	log_info("runtime ready node=%s runtime=%s bin=%s cgroup_v2=%d cgroup_parent=%s", a->node,
		 agent_runtime_name(a), a->rt.bin, a->rt.cgroup_v2, a->rt.cgroup_parent);
	*out = a;
	return 0;
fail:
	agent_free(a);
	return -1;
}

const char *agent_runtime_name(const struct agent *a)
{
	return a->rt.kind == OCI_CRUN ? "crun" : "runc";
}

int agent_start(struct agent *a, const struct client_config *cc, struct ciel_err *err)
{
	int r;

	if (a->running)
		return ciel_err_set(err, CIEL_EINVAL, "agent: already started");
	if (client_init(&a->client, cc, err) < 0)
		return -1;
	a->have_client = true;
	/* a long poll waits up to PASS_MAX_MS on the server: leave it room */
	a->client.connect_timeout_ms = 3000;
	a->client.timeout_ms = 10000 + PASS_MAX_MS;
	r = pthread_create(&a->thread, NULL, reconcile_main, a);
	if (r != 0)
		return ciel_err_sys(err, CIEL_EINTERNAL, r, "start the reconcile thread");
	a->running = true;
	return 0;
}

void agent_stop(struct agent *a)
{
	if (!a || !a->running)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	a->running = false;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	agent_stop(a);
	while (a->insts)
		inst_drop(a, a->insts);
	qjobs_free(a->qjobs);
	llmw_free(a->llmw);
	if (a->have_client)
		client_release(&a->client);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
