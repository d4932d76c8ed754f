/*
 * llmw — model workers on a node; see llmw.h. Each endpoint's record moves
 * through phases: IDLE (wanted, not started), LOADING (the worker runs, its
 * ready file has not appeared), READY, FAILED (it died or could not start;
 * started again at next_try) and STOPPING (SIGTERM sent: it goes because its
 * placement went or a new generation replaces it).
 */
#include "agent/llmw.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/fetch.h"
#include "image/image.h"
#include "crypto/enc.h"
#include "util/file.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

#define NAME_LEN 31
#define PUBLIC_KEY "_public" /* the directory of public endpoints: no tenant is named so */
#define TOKEN_BYTES 32
#define READY_MAX 4096
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define RAN_LONG_MS 60000 /* a worker ready this long restarts without backoff */
#define RSS_EVERY_MS 30000
#define LOADING_POLL_MS 100

enum phase { PH_IDLE, PH_LOADING, PH_READY, PH_FAILED, PH_STOPPING };

struct ep {
	struct ep *next;
	char tenant[NAME_LEN + 1]; /* "" for a public endpoint */
	char name[NAME_LEN + 1];
	char dir[PATH_MAX], run[PATH_MAX + 8];
	json_t *wanted; /* the latest list's item, NULL if the list does not name it */
	enum phase phase;
	int64_t gen; /* the generation started (or tried) last, -1 before */
	pid_t pid;   /* the worker, 0 when none */
	bool child;  /* ours to waitpid; an adopted one is watched through /proc */
	unsigned long long start_time; /* /proc/PID/stat's, against pid reuse */
	char blob[72];		       /* "sha256:<hex>" of the model it runs */
	char token[2 * TOKEN_BYTES + 1];
	char url[64];
	char reason[512];
	int64_t rss_bytes, rss_mono;
	int64_t started_mono, ready_mono, stop_deadline, next_try, backoff_ms;
	json_t *sent; /* the last report the region accepted */
};

struct llmw {
	char root[PATH_MAX], models[PATH_MAX];
	char bin[PATH_MAX];
	char report_path[160];
	struct ep *eps;
	bool have_list;
};

/* ---- small helpers ---- */

static const char *ep_key(const struct ep *e)
{
	return e->tenant[0] ? e->tenant : PUBLIC_KEY;
}

static const char *ep_shown(const struct ep *e, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", e->tenant[0] ? e->tenant : "public", e->name);
	return buf;
}

static int mkdir_one(const char *p, mode_t mode)
{
	return mkdir(p, mode) < 0 && errno != EEXIST ? -1 : 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/* rm -r, never following a link (the run directory is the worker's to fill). */
static void rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A blob as "sha256:<hex>", from either spelling; -1 if it is neither. */
static int norm_digest(const char *in, char *out, size_t size)
{
	const char *hex = strncmp(in, "sha256:", 7) == 0 ? in + 7 : in;

	if (strlen(hex) != 64)
		return -1;
	for (const char *c = hex; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return -1;
	return (size_t)snprintf(out, size, "sha256:%s", hex) < size ? 0 : -1;
}

/* Field 22 of /proc/PID/stat, and whether the process is there and not a zombie. */
static bool proc_stat(pid_t pid, unsigned long long *start_time)
{
	char path[64], buf[1024], *p, state;
	unsigned long long st = 0;
	ssize_t n;
	int fd;

	if (pid <= 1 || file_pathf(path, sizeof(path), "/proc/%d/stat", (int)pid) < 0)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
	if (!p || sscanf(p + 1,
			 " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
			 "%*d %llu",
			 &state, &st) != 2)
		return false;
	if (start_time)
		*start_time = st;
	return state != 'Z' && state != 'X';
}

static bool worker_alive(const struct ep *e)
{
	unsigned long long st;

	return e->pid > 0 && proc_stat(e->pid, &st) && st == e->start_time;
}

static int64_t proc_rss(pid_t pid)
{
	char path[64], buf[128];
	long long size = 0, res = 0;
	ssize_t n;
	int fd;

	if (file_pathf(path, sizeof(path), "/proc/%d/statm", (int)pid) < 0)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%lld %lld", &size, &res) != 2)
		return 0;
	return (int64_t)res * sysconf(_SC_PAGESIZE);
}

/* The last non-empty line of the worker's err.txt, for a reason; plain ASCII
 * only (it goes into a JSON report). */
static void err_tail(const struct ep *e, char *out, size_t size)
{
	char path[PATH_MAX + 16], buf[4096], *p, *end;
	struct stat st;
	ssize_t n;
	int fd;

	out[0] = '\0';
	if (file_pathf(path, sizeof(path), "%s/err.txt", e->dir) < 0)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(buf) - 1)
		lseek(fd, st.st_size - (off_t)sizeof(buf) + 1, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (end = buf + n; end > buf && (end[-1] == '\n' || end[-1] == ' '); end--)
		end[-1] = '\0';
	p = strrchr(buf, '\n');
	p = p ? p + 1 : buf;
	if (strlen(p) >= size)
		p[size - 1] = '\0'; /* a cut, not a warning: a reason is one line */
	memcpy(out, p, strlen(p) + 1);
	for (char *c = out; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
}

/* ---- records ---- */

static struct ep *ep_find(struct llmw *l, const char *tenant, const char *name)
{
	for (struct ep *e = l->eps; e; e = e->next)
		if (!strcmp(e->tenant, tenant) && !strcmp(e->name, name))
			return e;
	return NULL;
}

static struct ep *ep_new(struct llmw *l, const char *tenant, const char *name)
{
	struct ep *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
	snprintf(e->name, sizeof(e->name), "%s", name);
	file_pathf(e->dir, sizeof(e->dir), "%s/%s/%s", l->root, ep_key(e), name);
	file_pathf(e->run, sizeof(e->run), "%s/run", e->dir);
	e->gen = -1;
	e->backoff_ms = BACKOFF_MIN_MS;
	e->next = l->eps;
	l->eps = e;
	return e;
}

static void ep_drop(struct llmw *l, struct ep *e)
{
	for (struct ep **pp = &l->eps; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	json_decref(e->wanted);
	json_decref(e->sent);
	explicit_bzero(e->token, sizeof(e->token));
	free(e);
}

/* worker.json: what a new agent needs to adopt the worker (and report on it). */
static void save_worker(const struct ep *e)
{
	char path[PATH_MAX + 16], *text;
	json_t *j;

	if (file_pathf(path, sizeof(path), "%s/worker.json", e->dir) < 0)
		return;
	j = json_pack("{s:i, s:I, s:I, s:s, s:s}", "pid", (int)e->pid, "start_time",
		      (json_int_t)e->start_time, "generation", (json_int_t)e->gen, "blob", e->blob,
		      "token", e->token);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (!text || file_write_atomic(path, text, strlen(text), NULL) < 0)
		log_warn("model worker record not saved dir=%s", e->dir);
	if (text)
		explicit_bzero(text, strlen(text));
	free(text);
	json_decref(j);
}

static void forget_worker(const struct ep *e)
{
	char path[PATH_MAX + 16];

	if (file_pathf(path, sizeof(path), "%s/worker.json", e->dir) == 0)
		unlink(path);
}

/* ---- adoption ---- */

static void adopt_one(struct llmw *l, const char *key, const char *name)
{
	const char *tenant = strcmp(key, PUBLIC_KEY) == 0 ? "" : key;
	char path[PATH_MAX + 16], shown[80];
	struct ep *e;
	json_t *w;

	if (ep_find(l, tenant, name) || !(e = ep_new(l, tenant, name)))
		return;
	if (file_pathf(path, sizeof(path), "%s/worker.json", e->dir) < 0)
		return;
	w = json_load_file(path, 0, NULL);
	e->pid = (pid_t)jbody_int(w, "pid", 0);
	e->start_time = (unsigned long long)jbody_int(w, "start_time", 0);
	e->gen = jbody_int(w, "generation", -1);
	snprintf(e->blob, sizeof(e->blob), "%s", jbody_str(w, "blob", ""));
	snprintf(e->token, sizeof(e->token), "%s", jbody_str(w, "token", ""));
	json_decref(w);
	if (e->pid > 0 && worker_alive(e)) {
		/* the ready file, if there, is read on the first pass */
		e->phase = PH_LOADING;
		e->started_mono = ts_mono_ms();
		log_info("model worker adopted endpoint=%s generation=%" PRId64 " pid=%d",
			 ep_shown(e, shown, sizeof(shown)), e->gen, (int)e->pid);
		return;
	}
	e->pid = 0;
	e->phase = PH_IDLE;
	forget_worker(e);
}

static void adopt(struct llmw *l)
{
	DIR *kd = opendir(l->root), *nd;
	struct dirent *ke, *ne;
	char kpath[PATH_MAX];

	if (!kd)
		return;
	while ((ke = readdir(kd))) {
		if ((strcmp(ke->d_name, PUBLIC_KEY) && !agent_name_valid(ke->d_name)) ||
		    file_pathf(kpath, sizeof(kpath), "%s/%s", l->root, ke->d_name) < 0 ||
		    !(nd = opendir(kpath)))
			continue;
		while ((ne = readdir(nd)))
			if (agent_name_valid(ne->d_name))
				adopt_one(l, ke->d_name, ne->d_name);
		closedir(nd);
	}
	closedir(kd);
}

int llmw_open(struct llmw **out, const char *state, const char *llm_bin, const char *report_path,
	      struct ciel_err *err)
{
	struct llmw *l = calloc(1, sizeof(*l));

	*out = NULL;
	if (!l)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (file_pathf(l->root, sizeof(l->root), "%s/llm", state) < 0 ||
	    file_pathf(l->models, sizeof(l->models), "%s/models", state) < 0 ||
	    file_pathf(l->bin, sizeof(l->bin), "%s", llm_bin ? llm_bin : "") < 0 ||
	    file_pathf(l->report_path, sizeof(l->report_path), "%s", report_path) < 0) {
		free(l);
		return ciel_err_set(err, CIEL_EINVAL, "llmw: path too long");
	}
	if (mkdir_one(l->root, 0700) < 0 || mkdir_one(l->models, 0700) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", l->root);
		free(l);
		return -1;
	}
	if (llm_bin && access(l->bin, X_OK) < 0)
		log_warn("model endpoints cannot run here: %s: %s", l->bin, strerror(errno));
	adopt(l);
	*out = l;
	return 0;
}

void llmw_free(struct llmw *l)
{
	if (!l)
		return;
	/* workers stay: they are adopted by the next agent, or stopped by teardown */
	while (l->eps)
		ep_drop(l, l->eps);
	free(l);
}

/* ---- the placement list ---- */

bool llmw_is_item(const json_t *item)
{
	return strcmp(jbody_str(item, "kind", ""), "llm") == 0;
}

void llmw_list_begin(struct llmw *l)
{
	for (struct ep *e = l->eps; e; e = e->next) {
		json_decref(e->wanted);
		e->wanted = NULL;
	}
}

static bool in_range(const json_t *item, const char *name, int64_t lo, int64_t hi)
{
	const json_t *v = json_object_get(item, name);

	return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

void llmw_list_add(struct llmw *l, const json_t *item)
{
	const char *t = jbody_str(item, "tenant", ""), *n = jbody_str(item, "name", "");
	bool pub = json_is_true(json_object_get(item, "public"));
	char digest[72];
	struct ep *e;

	/* names end up in paths and argv: only what the region's rules allow */
	if ((pub ? t[0] != '\0' : !agent_name_valid(t)) || !agent_name_valid(n) ||
	    norm_digest(jbody_str(item, "blob", ""), digest, sizeof(digest)) < 0 ||
	    !in_range(item, "generation", 0, INT64_MAX) || !in_range(item, "threads", 1, 1024) ||
	    !in_range(item, "ctx", 1, 1 << 24) || !in_range(item, "max_seqs", 1, 4096)) {
		log_warn("model placement ignored tenant=%.32s name=%.32s: malformed", t, n);
		return;
	}
	e = ep_find(l, t, n);
	if (e && e->wanted)
		return; /* named twice: the first wins */
	if (!e && !(e = ep_new(l, t, n))) {
		log_error("out of memory");
		return;
	}
	e->wanted = json_incref((json_t *)item);
}

void llmw_list_end(struct llmw *l)
{
	l->have_list = true;
}

/* ---- workers ---- */

static void set_reason(struct ep *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(struct ep *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
	va_end(ap);
}

/* A start failed or the worker died: try again after the backoff. */
static void retry_later(struct ep *e)
{
	char shown[80];
	int64_t now = ts_mono_ms();
	bool ran_long = e->ready_mono && now - e->ready_mono >= RAN_LONG_MS;

	if (ran_long)
		e->backoff_ms = BACKOFF_MIN_MS;
	e->phase = PH_FAILED;
	/* a worker that served a good while died of something passing: at once */
	e->next_try = ran_long ? now : now + e->backoff_ms;
	log_warn("model worker failed endpoint=%s generation=%" PRId64 " retry_ms=%" PRId64
		 " reason=\"%s\"",
		 ep_shown(e, shown, sizeof(shown)), e->gen, e->backoff_ms, e->reason);
	e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : e->backoff_ms * 2;
	e->ready_mono = 0;
	e->url[0] = '\0';
}

/* The worker is gone (status -1: not ours to know). */
static void worker_gone(struct ep *e, int status)
{
	char tail[400];

	e->pid = 0;
	e->child = false;
	forget_worker(e);
	explicit_bzero(e->token, sizeof(e->token));
	if (e->phase == PH_STOPPING) {
		e->phase = PH_IDLE;
		e->url[0] = '\0';
		return;
	}
	err_tail(e, tail, sizeof(tail));
	if (e->reason[0])
		; /* check_ready killed it and said why */
	else if (status >= 0 && WIFSIGNALED(status) &&
		 (WTERMSIG(status) == SIGKILL || WTERMSIG(status) == SIGTERM))
		/* from outside: what it last logged is not why */
		set_reason(e, "the worker was killed by signal %d (%s)", WTERMSIG(status),
			   strsignal(WTERMSIG(status)));
	else if (status >= 0 && WIFSIGNALED(status))
		set_reason(e, "the worker was killed by signal %d (%s)%s%s", WTERMSIG(status),
			   strsignal(WTERMSIG(status)), tail[0] ? ": " : "", tail);
	else if (status >= 0)
		set_reason(e, "the worker exited with code %d%s%s", WEXITSTATUS(status),
			   tail[0] ? ": " : "", tail);
	else
		set_reason(e, "the worker is gone%s%s", tail[0] ? ": " : "", tail);
	retry_later(e);
}

static void stop_worker(struct ep *e, const char *why)
{
	char shown[80];

	if (e->pid <= 0)
		return;
	if (e->phase != PH_STOPPING) {
		log_info("model worker stopping endpoint=%s pid=%d: %s",
			 ep_shown(e, shown, sizeof(shown)), (int)e->pid, why);
		e->phase = PH_STOPPING;
		e->stop_deadline = ts_mono_ms() + LLMW_STOP_GRACE_MS;
		kill(e->pid, SIGTERM);
		return;
	}
	if (ts_mono_ms() >= e->stop_deadline) {
		kill(-e->pid, SIGKILL);
		kill(e->pid, SIGKILL);
	}
}

/* 32 random bytes as hex. */
static int new_token(char *out, size_t size)
{
	unsigned char b[TOKEN_BYTES];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, b, sizeof(b)) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(b) || size < 2 * TOKEN_BYTES + 1)
		return -1;
	enc_hex(b, sizeof(b), out);
	explicit_bzero(b, sizeof(b));
	return 0;
}

/* A descriptor moved to 10 or above, close-on-exec, so the child's dup2s cannot clash. */
static int high_fd(int fd)
{
	int h;

	if (fd < 0)
		return -1;
	h = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	close(fd);
	return h;
}

/* The run directory, owned by the worker's uid, with a fresh token file. */
static int prepare_run(struct ep *e, uid_t uid, struct ciel_err *err)
{
	char path[PATH_MAX + 32];
	int fd;
	ssize_t n;

	if (mkdir_one(e->run, 0700) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", e->run);
	/* lchown: the directory is the old worker's to have replaced by a link */
	if (uid && lchown(e->run, uid, uid) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "chown %s", e->run);
	file_pathf(path, sizeof(path), "%s/ready.json", e->run);
	unlink(path);
	file_pathf(path, sizeof(path), "%s/token", e->run);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", path);
	n = write(fd, e->token, strlen(e->token));
	if (n != (ssize_t)strlen(e->token) || write(fd, "\n", 1) != 1 ||
	    (uid && fchown(fd, uid, uid) < 0)) {
		ciel_err_sys(err, CIEL_EIO, errno, "write %s", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Fork and exec the worker; -1 with err. */
static int spawn(struct llmw *l, struct ep *e, const char *model, struct ciel_err *err)
{
	char threads[16], ctx[16], seqs[16], title[96], errp[PATH_MAX + 16];
	const json_t *p = e->wanted;
	const char *argv[24];
	uid_t uid = geteuid() == 0 ? agent_worker_uid(e->tenant) : 0;
	int model_fd = -1, run_fd = -1, exe_fd = -1, err_fd = -1, null_fd = -1, k = 0;
	pid_t pid;

	if (prepare_run(e, uid, err) < 0)
		return -1;
	snprintf(threads, sizeof(threads), "%" PRId64, jbody_int(p, "threads", 1));
	snprintf(ctx, sizeof(ctx), "%" PRId64, jbody_int(p, "ctx", 2048));
	snprintf(seqs, sizeof(seqs), "%" PRId64, jbody_int(p, "max_seqs", 4));
	/* the title names the endpoint for ps; the worker reaches its files
	 * through the descriptors below, never by a path under STATE */
	snprintf(title, sizeof(title), "ciel-llm:%s/%s", ep_key(e), e->name);
	argv[k++] = title;
	argv[k++] = "serve";
	argv[k++] = "--model";
	argv[k++] = "/proc/self/fd/3";
	argv[k++] = "--name";
	argv[k++] = e->name;
	argv[k++] = "--listen";
	argv[k++] = "127.0.0.1:0";
	argv[k++] = "--threads";
	argv[k++] = threads;
	argv[k++] = "--ctx";
	argv[k++] = ctx;
	argv[k++] = "--max-seqs";
	argv[k++] = seqs;
	argv[k++] = "--token-file";
	argv[k++] = "/proc/self/fd/4/token";
	argv[k++] = "--ready-file";
	argv[k++] = "/proc/self/fd/4/ready.json";
	argv[k] = NULL;

	file_pathf(errp, sizeof(errp), "%s/err.txt", e->dir);
	model_fd = high_fd(open(model, O_RDONLY | O_CLOEXEC));
	run_fd = high_fd(open(e->run, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	exe_fd = high_fd(open(l->bin, O_RDONLY | O_CLOEXEC));
	err_fd = high_fd(open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
	null_fd = high_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
	if (model_fd < 0 || run_fd < 0 || exe_fd < 0 || err_fd < 0 || null_fd < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "open the worker's files (%s, %s)", model,
			     l->bin);
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "fork");
		goto out;
	}
	if (pid == 0) {
		/* no parent-death signal: the worker outlives the agent, which adopts it */
		const int fds[] = {null_fd, err_fd, err_fd, model_fd, run_fd, exe_fd};

		agent_worker_exec(fds, 6, 5, uid, 0, argv);
	}
	e->pid = pid;
	e->child = true;
	if (!proc_stat(pid, &e->start_time))
		e->start_time = 0; /* gone already: reaped and reported on the next pass */
	close(model_fd);
	close(run_fd);
	close(exe_fd);
	close(err_fd);
	close(null_fd);
	return 0;
out:
	if (model_fd >= 0)
		close(model_fd);
	if (run_fd >= 0)
		close(run_fd);
	if (exe_fd >= 0)
		close(exe_fd);
	if (err_fd >= 0)
		close(err_fd);
	if (null_fd >= 0)
		close(null_fd);
	return -1;
}

static void start(struct llmw *l, struct ep *e, struct client *c)
{
	char model[PATH_MAX], tdir[PATH_MAX], shown[80];
	struct ciel_err err = {0};
	int64_t t0 = ts_mono_ms();

	e->gen = jbody_int(e->wanted, "generation", 0);
	e->reason[0] = '\0';
	norm_digest(jbody_str(e->wanted, "blob", ""), e->blob, sizeof(e->blob));
	if (fetch_blob(c, l->models, e->blob, jbody_int(e->wanted, "size", 0), &err) < 0 ||
	    image_blob_path(l->models, e->blob, model, sizeof(model), &err) < 0) {
		set_reason(e, "cannot fetch the model: %s", err.msg);
		retry_later(e);
		return;
	}
	/* the worker reopens it through /proc/self/fd as another uid: readable by
	 * mode, while STATE's 0700 directories keep it from anyone else's reach */
	if (chmod(model, 0644) < 0 ||
	    file_pathf(tdir, sizeof(tdir), "%s/%s", l->root, ep_key(e)) < 0 ||
	    mkdir_one(tdir, 0700) < 0 || mkdir_one(e->dir, 0700) < 0) {
		set_reason(e, "cannot prepare the worker's directory: %s", strerror(errno));
		retry_later(e);
		return;
	}
	if (new_token(e->token, sizeof(e->token)) < 0) {
		set_reason(e, "cannot read /dev/urandom");
		retry_later(e);
		return;
	}
	if (spawn(l, e, model, &err) < 0) {
		set_reason(e, "cannot start the worker: %s", err.msg);
		retry_later(e);
		return;
	}
	save_worker(e);
	e->phase = PH_LOADING;
	e->started_mono = ts_mono_ms();
	e->url[0] = '\0';
	log_info("model worker started endpoint=%s generation=%" PRId64 " pid=%d uid=%u "
		 "threads=%" PRId64 " ctx=%" PRId64 " max_seqs=%" PRId64 " start_ms=%" PRId64,
		 ep_shown(e, shown, sizeof(shown)), e->gen, (int)e->pid,
		 geteuid() == 0 ? (unsigned)agent_worker_uid(e->tenant) : (unsigned)geteuid(),
		 jbody_int(e->wanted, "threads", 0), jbody_int(e->wanted, "ctx", 0),
		 jbody_int(e->wanted, "max_seqs", 0), e->started_mono - t0);
}

/* True if u is "http://127.0.0.1:PORT" and nothing else: cield forwards there. */
static bool url_valid(const char *u)
{
	const char *pre = "http://127.0.0.1:", *p;
	char *end;
	long port;

	if (strncmp(u, pre, strlen(pre)) != 0)
		return false;
	p = u + strlen(pre);
	if (*p < '1' || *p > '9')
		return false;
	port = strtol(p, &end, 10);
	return *end == '\0' && port > 0 && port <= 65535;
}

/* LOADING: has the worker written its ready file? */
static void check_ready(struct ep *e)
{
	char path[PATH_MAX + 16], buf[READY_MAX + 1], shown[80];
	struct stat st;
	json_t *j;
	ssize_t n;
	int fd;

	if (file_pathf(path, sizeof(path), "%s/ready.json", e->run) < 0)
		return;
	/* the worker's directory: never follow a link, never block on a FIFO */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		goto not_yet;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > READY_MAX) {
		close(fd);
		goto not_yet;
	}
	n = read(fd, buf, READY_MAX);
	close(fd);
	if (n <= 0)
		goto not_yet;
	buf[n] = '\0';
	j = json_loads(buf, 0, NULL);
	if (!j || !url_valid(jbody_str(j, "url", "")) ||
	    (json_object_get(j, "pid") && jbody_int(j, "pid", 0) != e->pid)) {
		json_decref(j);
		goto not_yet;
	}
	snprintf(e->url, sizeof(e->url), "%s", jbody_str(j, "url", ""));
	json_decref(j);
	e->phase = PH_READY;
	e->ready_mono = ts_mono_ms();
	e->rss_bytes = proc_rss(e->pid);
	e->rss_mono = e->ready_mono;
	e->reason[0] = '\0';
	log_info("model worker ready endpoint=%s generation=%" PRId64 " pid=%d url=%s "
		 "load_ms=%" PRId64 " rss_bytes=%" PRId64,
		 ep_shown(e, shown, sizeof(shown)), e->gen, (int)e->pid, e->url,
		 e->ready_mono - e->started_mono, e->rss_bytes);
	return;
not_yet:
	if (ts_mono_ms() - e->started_mono > LLMW_LOAD_TIMEOUT_MS) {
		set_reason(e, "the worker was not ready after %d s", LLMW_LOAD_TIMEOUT_MS / 1000);
		kill(-e->pid, SIGKILL);
		kill(e->pid, SIGKILL);
	}
}

bool llmw_reaped(struct llmw *l, pid_t pid, int status)
{
	for (struct ep *e = l->eps; e; e = e->next) {
		if (e->child && e->pid == pid && pid > 0) {
			worker_gone(e, status);
			return true;
		}
	}
	return false;
}

/* No endpoint uses the model any more: its file goes. */
static void gc_model(struct llmw *l, const char *blob)
{
	char path[PATH_MAX];

	if (!blob[0])
		return;
	for (struct ep *e = l->eps; e; e = e->next)
		if (!strcmp(e->blob, blob) ||
		    (e->wanted && !strcmp(jbody_str(e->wanted, "blob", ""), blob + 7)) ||
		    (e->wanted && !strcmp(jbody_str(e->wanted, "blob", ""), blob)))
			return;
	if (image_blob_path(l->models, blob, path, sizeof(path), NULL) == 0 && unlink(path) == 0)
		log_info("model file removed blob=%s", blob);
}

void llmw_reconcile(struct llmw *l, struct client *c)
{
	int64_t now = ts_mono_ms();
	struct ep *e, *next;

	for (e = l->eps; e; e = next) {
		int status;

		next = e->next;
		if (e->pid > 0 && e->child && waitpid(e->pid, &status, WNOHANG) == e->pid)
			worker_gone(e, status);
		else if (e->pid > 0 && !e->child && !worker_alive(e))
			worker_gone(e, -1);
		if (e->pid > 0 && e->phase == PH_LOADING)
			check_ready(e);
		if (e->phase == PH_READY && now - e->rss_mono >= RSS_EVERY_MS) {
			e->rss_bytes = proc_rss(e->pid);
			e->rss_mono = now;
		}
		if (!l->have_list)
			continue; /* an unreachable region stops nothing */
		if (!e->wanted) {
			char blob[72], kdir[PATH_MAX];

			if (e->pid > 0) {
				stop_worker(e, "its placement went");
				continue;
			}
			snprintf(blob, sizeof(blob), "%s", e->blob);
			rm_tree(e->dir);
			if (file_pathf(kdir, sizeof(kdir), "%s/%s", l->root, ep_key(e)) == 0)
				rmdir(
				    kdir); /* the key's last endpoint: fails harmlessly otherwise */
			ep_drop(l, e);
			gc_model(l, blob);
			continue;
		}
		if (e->pid > 0 && e->gen != jbody_int(e->wanted, "generation", 0)) {
			stop_worker(e, "a new generation replaces it");
			continue;
		}
		if (e->pid > 0 && e->phase == PH_STOPPING) {
			stop_worker(e, "stopping");
			continue;
		}
		/* a failed start waits for its backoff, unless the model was replaced */
		if (e->pid == 0 && (e->phase != PH_FAILED || now >= e->next_try ||
				    e->gen != jbody_int(e->wanted, "generation", 0)))
			start(l, e, c);
	}
}

int llmw_running(const struct llmw *l)
{
	int n = 0;

	for (const struct ep *e = l->eps; e; e = e->next)
		n += e->pid > 0;
	return n;
}

int64_t llmw_due_ms(const struct llmw *l)
{
	int64_t due = INT64_MAX, now = ts_mono_ms();

	for (const struct ep *e = l->eps; e; e = e->next) {
		int64_t d = INT64_MAX;

		if (e->phase == PH_LOADING || e->phase == PH_STOPPING)
			d = LOADING_POLL_MS;
		else if (e->phase == PH_FAILED && e->wanted)
			d = e->next_try > now ? e->next_try - now : 0;
		else if (e->phase == PH_READY)
			d = RSS_EVERY_MS;
		if (d < due)
			due = d;
	}
	return due;
}

/* ---- reports ---- */

static json_t *derive_report(const struct ep *e)
{
	int64_t gen = jbody_int(e->wanted, "generation", 0);
	json_t *r;

	if (!e->wanted || e->gen != gen || e->phase == PH_IDLE || e->phase == PH_STOPPING)
		return NULL;
	r = json_pack("{s:s, s:s, s:I}", "tenant", e->tenant, "name", e->name, "generation",
		      (json_int_t)gen);
	if (!r)
		return NULL;
	if (e->phase == PH_FAILED) {
		json_object_set_new(r, "state", json_string("failed"));
		json_object_set_new(r, "reason", json_string(e->reason));
		return r;
	}
	json_object_set_new(r, "state", json_string(e->phase == PH_READY ? "ready" : "loading"));
	json_object_set_new(r, "pid", json_integer(e->pid));
	if (e->phase == PH_READY) {
		json_object_set_new(r, "url", json_string(e->url));
		json_object_set_new(r, "token", json_string(e->token));
		json_object_set_new(r, "rss_bytes", json_integer(e->rss_bytes));
	}
	return r;
}

void llmw_report(struct llmw *l, struct client *c)
{
	for (struct ep *e = l->eps; e; e = e->next) {
		json_t *r = derive_report(e);
		char shown[80];

		if (!r)
			continue;
		if (e->sent && json_equal(r, e->sent)) {
			json_decref(r);
			continue;
		}
		if (agent_post_report(c, l->report_path, r, "model endpoint report", "name",
				      "name") < 0) {
			json_decref(r);
			return; /* the region is away: the rest waits for the next pass */
		}
		if (!e->sent || strcmp(jbody_str(e->sent, "state", ""), jbody_str(r, "state", "")))
			log_info("reported model endpoint=%s generation=%" PRId64 " state=%s",
				 ep_shown(e, shown, sizeof(shown)), jbody_int(r, "generation", 0),
				 jbody_str(r, "state", ""));
		json_decref(e->sent);
		e->sent = r;
	}
}

/* ---- teardown ---- */

int llmw_teardown(const char *state, FILE *out, struct ciel_err *err)
{
	struct llmw *l = NULL;
	int left = 0;

	if (llmw_open(&l, state, NULL, "", err) < 0)
		return -1;
	for (struct ep *e = l->eps; e; e = e->next) {
		if (e->pid <= 0)
			continue;
		kill(-e->pid, SIGKILL);
		kill(e->pid, SIGKILL);
		for (int i = 0; i < 200 && worker_alive(e); i++)
			usleep(10000);
		if (worker_alive(e)) {
			char shown[80];

			fprintf(out, "left: model worker %s pid %d\n",
				ep_shown(e, shown, sizeof(shown)), (int)e->pid);
			left++;
		}
	}
	if (!left)
		rm_tree(l->root);
	llmw_free(l);
	if (left)
		return ciel_err_set(err, CIEL_EIO, "%d model workers left", left);
	return 0;
}
