/* qjob — quantum job workers on a node; see qjob.h. */
#include "agent/qjob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "util/file.h"
#include "util/jbody.h"
#include "util/log.h"
#include "util/ts.h"

/* Under ASan the worker maps terabytes of shadow memory: an address-space
 * limit would kill it at start. --max-memory still bounds the state. */
#if defined(__SANITIZE_ADDRESS__)
#define QJOB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QJOB_SANITIZED 1
#endif
#endif
#ifndef QJOB_SANITIZED
#define QJOB_SANITIZED 0
#endif

#define QJOB_MAX_CPUS 1024
#define QJOB_AS_MARGIN (512LL << 20)	 /* binary, libraries, buffers */
#define QJOB_AS_PER_THREAD (128LL << 20) /* stack and a malloc arena per thread */
#define QJOB_NAME_MAX 31
enum phase {
	PH_NEW,	    /* wanted, not started (waits for CPUs) */
	PH_RUNNING, /* a worker runs */
	PH_DONE,    /* ended: final holds the report */
};

struct qjob {
	struct qjob *next;
	char tenant[QJOB_NAME_MAX + 1], id[QJOB_NAME_MAX + 1];
	char dir[PATH_MAX];
	json_t *wanted; /* the latest list's item, NULL if the list does not name it */
	enum phase phase;
	pid_t pid;   /* the worker, 0 when none */
	bool killed; /* we killed it: a cancel, nothing to report */
	int ncpus, cpus[QJOB_MAX_CPUS];
	char started[TS_RFC3339_LEN];
	int64_t started_ms, started_mono; /* wall clock, monotonic */
	bool running_sent;
	json_t *final; /* PH_DONE: the report of the end */
	bool final_sent;
};

struct qjobs {
	char root[PATH_MAX];
	char qsim_bin[PATH_MAX];
	char report_path[160];
	struct qjob *jobs;
	bool have_list;
	int nallowed, allowed[QJOB_MAX_CPUS]; /* the CPUs this process may use */
	bool busy[QJOB_MAX_CPUS];	      /* by CPU id: a worker holds it */
};

static int write_json(const char *dir, const char *name, const json_t *j)
{
	char path[PATH_MAX], *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	int r = -1;

	if (text && file_pathf(path, sizeof(path), "%s/%s", dir, name) == 0)
		r = file_write_atomic(path, text, strlen(text), NULL);
	free(text);
	return r;
}

static void remove_file(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if (file_pathf(path, sizeof(path), "%s/%s", dir, name) == 0)
		unlink(path);
}

/* The job's directory and the tenant's, when empty. */
static void remove_dir(struct qjobs *q, struct qjob *j)
{
	static const char *const files[] = {"placement.json", "job.qasm",    "out.json",
					    "err.txt",	      "worker.json", "final.json"};
	char tdir[PATH_MAX];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		remove_file(j->dir, files[i]);
	rmdir(j->dir);
	if (file_pathf(tdir, sizeof(tdir), "%s/%s", q->root, j->tenant) == 0)
		rmdir(tdir); /* the tenant's last job here: fails harmlessly otherwise */
}

/* ---- records ---- */

static struct qjob *job_find(struct qjobs *q, const char *tenant, const char *id)
{
	for (struct qjob *j = q->jobs; j; j = j->next)
		if (!strcmp(j->tenant, tenant) && !strcmp(j->id, id))
			return j;
	return NULL;
}

static struct qjob *job_new(struct qjobs *q, const char *tenant, const char *id)
{
	struct qjob *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
	snprintf(j->id, sizeof(j->id), "%s", id);
	file_pathf(j->dir, sizeof(j->dir), "%s/%s/%s", q->root, tenant, id);
	j->next = q->jobs;
	q->jobs = j;
	return j;
}

static void cpus_release(struct qjobs *q, struct qjob *j)
{
	for (int i = 0; i < j->ncpus; i++)
		if (j->cpus[i] >= 0 && j->cpus[i] < QJOB_MAX_CPUS)
			q->busy[j->cpus[i]] = false;
	j->ncpus = 0;
}

static void job_drop(struct qjobs *q, struct qjob *j)
{
	for (struct qjob **pp = &q->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	cpus_release(q, j);
	json_decref(j->wanted);
	json_decref(j->final);
	free(j);
}

/* ---- adoption ---- */

/* Is pid a worker of the job in dir? Its command line names the job's QASM file. */
static bool is_our_worker(pid_t pid, const char *dir)
{
	char path[64], buf[8192], qasm[PATH_MAX];
	ssize_t n;
	int fd;
	bool found = false;

	if (pid <= 1 || file_pathf(path, sizeof(path), "/proc/%d/cmdline", (int)pid) < 0 ||
	    file_pathf(qasm, sizeof(qasm), "%s/job.qasm", dir) < 0)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(buf + i) + 1) {
		buf[n] = '\0';
		if (strcmp(buf + i, qasm) == 0)
			found = true;
	}
	return found;
}

/* A worker a previous agent started and could not take with it: it cannot be
 * waited for by us, so it goes, and the job runs again. */
static void kill_orphan(struct qjob *j)
{
	char path[PATH_MAX];
	json_t *w;
	pid_t pid;

	if (file_pathf(path, sizeof(path), "%s/worker.json", j->dir) < 0)
		return;
	w = json_load_file(path, 0, NULL);
	pid = (pid_t)jbody_int(w, "pid", 0);
	json_decref(w);
	if (is_our_worker(pid, j->dir)) {
		log_warn(
		    "quantum job worker left by a previous agent killed tenant=%s job=%s pid=%d",
		    j->tenant, j->id, (int)pid);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		for (int i = 0; i < 100 && kill(pid, 0) == 0 && is_our_worker(pid, j->dir); i++)
			usleep(10000);
	}
	unlink(path);
}

static void adopt(struct qjobs *q)
{
	DIR *td = opendir(q->root), *jd;
	struct dirent *te, *je;
	char tpath[PATH_MAX], path[PATH_MAX];
	int n = 0;

	if (!td)
		return;
	while ((te = readdir(td))) {
		if (!agent_name_valid(te->d_name) ||
		    file_pathf(tpath, sizeof(tpath), "%s/%s", q->root, te->d_name) < 0 ||
		    !(jd = opendir(tpath)))
			continue;
		while ((je = readdir(jd))) {
			struct qjob *j;

			if (!agent_name_valid(je->d_name) || job_find(q, te->d_name, je->d_name))
				continue;
			j = job_new(q, te->d_name, je->d_name);
			if (!j)
				break;
			kill_orphan(j);
			if (file_pathf(path, sizeof(path), "%s/final.json", j->dir) == 0)
				j->final = json_load_file(path, 0, NULL);
			if (j->final) {
				j->phase = PH_DONE;
				j->running_sent = true;
			}
			log_info("quantum job adopted tenant=%s job=%s %s", j->tenant, j->id,
				 j->final ? "ended: its report goes again" : "runs again");
			n++;
		}
		closedir(jd);
	}
	closedir(td);
	if (n)
		log_info("adopted quantum jobs=%d", n);
}

int qjobs_open(struct qjobs **out, const char *state, const char *qsim_bin, const char *report_path,
	       struct ciel_err *err)
{
	struct qjobs *q = calloc(1, sizeof(*q));
	cpu_set_t set;

	*out = NULL;
	if (!q)
		return ciel_err_set(err, CIEL_ENOMEM, "out of memory");
	if (file_pathf(q->root, sizeof(q->root), "%s/qjobs", state) < 0 ||
	    file_pathf(q->qsim_bin, sizeof(q->qsim_bin), "%s", qsim_bin) < 0 ||
	    file_pathf(q->report_path, sizeof(q->report_path), "%s", report_path) < 0) {
		free(q);
		return ciel_err_set(err, CIEL_EINVAL, "qjobs: path too long");
	}
	if (mkdir(q->root, 0700) < 0 && errno != EEXIST) {
		ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", q->root);
		free(q);
		return -1;
	}
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < QJOB_MAX_CPUS && c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				q->allowed[q->nallowed++] = c;
	}
	if (q->nallowed == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		for (int c = 0; c < n && c < QJOB_MAX_CPUS; c++)
			q->allowed[q->nallowed++] = c;
	}
	if (access(q->qsim_bin, X_OK) < 0)
		log_warn("quantum jobs cannot run here: %s: %s", q->qsim_bin, strerror(errno));
	adopt(q);
	*out = q;
	return 0;
}

static void kill_worker(struct qjob *j)
{
	if (j->pid > 0) {
		kill(-j->pid, SIGKILL);
		kill(j->pid, SIGKILL);
	}
}

void qjobs_free(struct qjobs *q)
{
	if (!q)
		return;
	for (struct qjob *j = q->jobs; j; j = j->next) {
		if (j->pid > 0) {
			kill_worker(j);
			waitpid(j->pid, NULL, 0);
		}
	}
	while (q->jobs)
		job_drop(q, q->jobs);
	free(q);
}

/* ---- the placement list ---- */

bool qjobs_is_item(const json_t *item)
{
	return strcmp(jbody_str(item, "kind", ""), "qjob") == 0;
}

void qjobs_list_begin(struct qjobs *q)
{
	for (struct qjob *j = q->jobs; j; j = j->next) {
		json_decref(j->wanted);
		j->wanted = NULL;
	}
}

void qjobs_list_add(struct qjobs *q, const json_t *item)
{
	const char *t = jbody_str(item, "tenant", ""), *id = jbody_str(item, "id", "");
	const char *prec = jbody_str(item, "precision", "");
	struct qjob *j;

	/* names end up in paths and argv: only what the region's rules allow */
	if (!agent_name_valid(t) || !agent_name_valid(id) ||
	    !json_is_string(json_object_get(item, "qasm")) || jbody_int(item, "shots", 0) < 1 ||
	    jbody_int(item, "threads", 0) < 1 || jbody_int(item, "seed", -1) < 0 ||
	    (strcmp(prec, "double") && strcmp(prec, "single")) ||
	    !agent_node_valid(jbody_str(item, "profile", ""))) {
		log_warn("quantum job placement ignored tenant=%.32s job=%.32s: malformed", t, id);
		return;
	}
	j = job_find(q, t, id);
	if (j && j->wanted)
		return; /* named twice: the first wins */
	if (!j && !(j = job_new(q, t, id))) {
		log_error("out of memory");
		return;
	}
	j->wanted = json_incref((json_t *)item);
}

void qjobs_list_end(struct qjobs *q)
{
	q->have_list = true;
}

/* ---- workers ---- */

static int take_cpus(struct qjobs *q, struct qjob *j, int want)
{
	int n = 0;

	if (want > q->nallowed)
		want = q->nallowed; /* the region counts cores the agent may not have */
	for (int i = 0; i < q->nallowed && n < want; i++)
		if (!q->busy[q->allowed[i]])
			n++;
	if (n < want)
		return -1;
	j->ncpus = 0;
	for (int i = 0; i < q->nallowed && j->ncpus < want; i++) {
		if (q->busy[q->allowed[i]])
			continue;
		q->busy[q->allowed[i]] = true;
		j->cpus[j->ncpus++] = q->allowed[i];
	}
	return 0;
}

static void cpus_text(const struct qjob *j, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < j->ncpus && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%d", i ? "," : "", j->cpus[i]);
}

/* A final report of failure with reason. */
static void end_failed(struct qjob *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *report_base(const struct qjob *j, const char *state)
{
	char cpus[256];
	json_t *r;

	cpus_text(j, cpus, sizeof(cpus));
	r = json_pack("{s:s, s:s, s:s}", "tenant", j->tenant, "id", j->id, "state", state);
	if (r && j->started[0])
		json_object_set_new(r, "started", json_string(j->started));
	if (r && cpus[0])
		json_object_set_new(r, "cpus", json_string(cpus));
	return r;
}

/*
 * When the worker ended: its output's last write, since its exit is only
 * noticed at the next pass; now if there is no output.
 */
static int64_t end_ms(const struct qjob *j)
{
	char path[PATH_MAX];
	struct stat st;
	int64_t now = ts_now_ms(), m;

	if (file_pathf(path, sizeof(path), "%s/out.json", j->dir) < 0 || stat(path, &st) < 0)
		return now;
	m = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	return m >= j->started_ms && m <= now ? m : now;
}

static void set_final(struct qjob *j, json_t *r)
{
	char fin[TS_RFC3339_LEN];
	int64_t end = end_ms(j);

	if (!r)
		return;
	ts_format(end, fin);
	json_object_set_new(r, "finished", json_string(fin));
	if (j->started_ms)
		json_object_set_new(r, "duration_ms", json_integer(end - j->started_ms));
	json_decref(j->final);
	j->final = r;
	j->final_sent = false;
	j->phase = PH_DONE;
	if (write_json(j->dir, "final.json", r) < 0)
		log_warn("quantum job report not saved tenant=%s job=%s", j->tenant, j->id);
}

static void end_failed(struct qjob *j, const char *fmt, ...)
{
	char reason[1024];
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	r = report_base(j, "failed");
	if (r)
		json_object_set_new(r, "reason", json_string(reason));
	log_info("quantum job failed tenant=%s job=%s reason=%s", j->tenant, j->id, reason);
	set_final(j, r);
}

/* Build argv and fork the worker; -1 with err. */
static int spawn(struct qjobs *q, struct qjob *j, const json_t *p, struct ciel_err *err)
{
	char shots[24], seed[24], threads[16], maxmem[24], qasm[PATH_MAX], outp[PATH_MAX],
	    errp[PATH_MAX], title[96];
	const char *text = jbody_str(p, "qasm", "");
	int64_t state_bytes = jbody_int(p, "state_bytes", 0);
	const char *argv[20];
	struct rlimit rl;
	cpu_set_t set;
	pid_t parent = getpid(), pid;
	int out_fd = -1, err_fd = -1, in_fd = -1, exe_fd = -1, k = 0;
	uid_t uid = geteuid() == 0 ? agent_worker_uid(j->tenant) : 0;

	snprintf(shots, sizeof(shots), "%" PRId64, jbody_int(p, "shots", 1));
	snprintf(seed, sizeof(seed), "%" PRId64, jbody_int(p, "seed", 0));
	snprintf(threads, sizeof(threads), "%d", j->ncpus);
	snprintf(maxmem, sizeof(maxmem), "%" PRId64, state_bytes);
	if (file_pathf(qasm, sizeof(qasm), "%s/job.qasm", j->dir) < 0 ||
	    file_pathf(outp, sizeof(outp), "%s/out.json", j->dir) < 0 ||
	    file_pathf(errp, sizeof(errp), "%s/err.txt", j->dir) < 0)
		return ciel_err_set(err, CIEL_EINVAL, "job directory path too long");
	if (file_write_atomic(qasm, text, strlen(text), NULL) < 0 ||
	    write_json(j->dir, "placement.json", p) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "write %s", j->dir);
	/* the worker opens nothing of the agent's (its uid could not): the binary
	 * and the QASM come as descriptors, and its title names the job for ps */
	snprintf(title, sizeof(title), "ciel-qsim job %s/%s", j->tenant, j->id);
	argv[k++] = title;
	argv[k++] = "--output";
	argv[k++] = "json";
	argv[k++] = "--shots";
	argv[k++] = shots;
	argv[k++] = "--profile";
	argv[k++] = jbody_str(p, "profile", "ideal");
	argv[k++] = "--seed";
	argv[k++] = seed;
	argv[k++] = "--precision";
	argv[k++] = jbody_str(p, "precision", "double");
	argv[k++] = "--threads";
	argv[k++] = threads;
	if (state_bytes > 0) {
		argv[k++] = "--max-memory";
		argv[k++] = maxmem;
	}
	argv[k++] = "-";
	argv[k] = NULL;

	CPU_ZERO(&set);
	for (int i = 0; i < j->ncpus; i++)
		CPU_SET(j->cpus[i], &set);
	rl.rlim_cur = rl.rlim_max =
	    (rlim_t)(state_bytes + QJOB_AS_MARGIN + (int64_t)j->ncpus * QJOB_AS_PER_THREAD);
	out_fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	err_fd = open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	in_fd = open(qasm, O_RDONLY | O_CLOEXEC);
	exe_fd = open(q->qsim_bin, O_RDONLY | O_CLOEXEC);
	if (out_fd < 0 || err_fd < 0 || in_fd < 0 || exe_fd < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "open the worker's output in %s", j->dir);
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "fork");
		goto fail;
	}
	if (pid == 0) {
		/* the child of a threaded process: async-signal-safe calls only */
		const int fds[] = {in_fd, out_fd, err_fd, exe_fd};

		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			_exit(125);
		if (!QJOB_SANITIZED)
			setrlimit(RLIMIT_AS, &rl);
		agent_worker_exec(fds, 4, 3, uid, parent, argv);
	}
	close(out_fd);
	close(err_fd);
	close(in_fd);
	close(exe_fd);
	j->pid = pid;
	{
		json_t *w = json_pack("{s:i}", "pid", (int)pid);

		if (!w || write_json(j->dir, "worker.json", w) < 0)
			log_warn("quantum job worker record not saved tenant=%s job=%s", j->tenant,
				 j->id);
		json_decref(w);
	}
	return 0;
fail:
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	if (in_fd >= 0)
		close(in_fd);
	if (exe_fd >= 0)
		close(exe_fd);
	return -1;
}

static void start(struct qjobs *q, struct qjob *j)
{
	struct ciel_err err = {0};
	char tdir[PATH_MAX], cpus[256];
	int64_t threads = jbody_int(j->wanted, "threads", 1);

	if (take_cpus(q, j, threads > QJOB_MAX_CPUS ? QJOB_MAX_CPUS : (int)threads) < 0)
		return; /* a cancelled worker still holds CPUs: the next pass */
	if (file_pathf(tdir, sizeof(tdir), "%s/%s", q->root, j->tenant) < 0 ||
	    (mkdir(tdir, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(j->dir, 0700) < 0 && errno != EEXIST)) {
		cpus_release(q, j);
		end_failed(j, "cannot create the job directory: %s", strerror(errno));
		return;
	}
	remove_file(j->dir, "final.json");
	j->started_ms = ts_now_ms();
	ts_format(j->started_ms, j->started);
	j->started_mono = ts_mono_ms();
	if (spawn(q, j, j->wanted, &err) < 0) {
		end_failed(j, "cannot start the simulator: %s", err.msg);
		cpus_release(q, j);
		return;
	}
	j->phase = PH_RUNNING;
	j->running_sent = false;
	j->killed = false;
	cpus_text(j, cpus, sizeof(cpus));
	log_info("quantum job started tenant=%s job=%s pid=%d cpus=%s shots=%" PRId64 " profile=%s",
		 j->tenant, j->id, (int)j->pid, cpus, jbody_int(j->wanted, "shots", 0),
		 jbody_str(j->wanted, "profile", ""));
}

/* Read the worker's stdout, at most max bytes; NULL (with *size) if larger or unreadable. */
static char *read_out(const struct qjob *j, const char *name, size_t max, off_t *size)
{
	char path[PATH_MAX], *buf;
	struct stat st;
	ssize_t n;
	int fd;

	*size = -1;
	if (file_pathf(path, sizeof(path), "%s/%s", j->dir, name) < 0)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	if ((size_t)st.st_size > max) {
		*size = st.st_size;
		close(fd);
		return NULL;
	}
	*size = st.st_size;
	buf = malloc((size_t)st.st_size + 1);
	n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The last line of the worker's stderr, for a reason. */
static void err_tail(const struct qjob *j, char *out, size_t size)
{
	off_t sz;
	char *e = read_out(j, "err.txt", 64 << 10, &sz), *p;

	out[0] = '\0';
	if (!e)
		return;
	for (p = e + strlen(e); p > e && (p[-1] == '\n' || p[-1] == ' '); p--)
		p[-1] = '\0';
	p = strrchr(e, '\n');
	snprintf(out, size, "%s", p ? p + 1 : e);
	free(e);
}

/* The worker ended with status: the final report. */
static void collect(struct qjobs *q, struct qjob *j, int status)
{
	const size_t room = QJOB_REPORT_MAX - 4096; /* the report's own members */
	char tail[512];
	json_t *out = NULL, *r;
	off_t size;
	char *text;

	remove_file(j->dir, "worker.json");
	j->pid = 0;
	if (j->killed) {
		cpus_release(q, j);
		j->phase = PH_DONE;
		j->final_sent = true; /* cancelled: the region knows */
		return;
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		end_failed(j, "the simulator was killed by signal %d (%s)%s", sig, strsignal(sig),
			   sig == SIGKILL ? ": out of memory?" : "");
		cpus_release(q, j);
		return;
	}
	text = read_out(j, "out.json", room, &size);
	if (!text && size > (off_t)room) {
		end_failed(j, "result over 1 MiB: measure fewer bits or use fewer shots");
		cpus_release(q, j);
		return;
	}
	out = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	if (WEXITSTATUS(status) == 0 && json_is_object(json_object_get(out, "counts"))) {
		char *dump;

		/* the transpiled circuit can be long and the API does not keep it */
		json_object_del(out, "transpiled");
		r = report_base(j, "completed");
		if (r)
			json_object_set(r, "result", out);
		dump = r ? json_dumps(r, JSON_COMPACT) : NULL;
		if (dump && strlen(dump) > room) {
			json_decref(r);
			end_failed(j, "result over 1 MiB: measure fewer bits or use fewer shots");
		} else {
			log_info("quantum job completed tenant=%s job=%s", j->tenant, j->id);
			set_final(j, r);
		}
		free(dump);
	} else if (json_is_string(json_object_get(json_object_get(out, "error"), "message"))) {
		end_failed(
		    j, "%s",
		    json_string_value(json_object_get(json_object_get(out, "error"), "message")));
	} else {
		err_tail(j, tail, sizeof(tail));
		end_failed(j, "the simulator exited with code %d%s%s", WEXITSTATUS(status),
			   tail[0] ? ": " : "", tail);
	}
	json_decref(out);
	cpus_release(q, j);
}

bool qjobs_reaped(struct qjobs *q, pid_t pid, int status)
{
	for (struct qjob *j = q->jobs; j; j = j->next) {
		if (j->pid == pid && pid > 0) {
			collect(q, j, status);
			return true;
		}
	}
	return false;
}

void qjobs_reconcile(struct qjobs *q)
{
	struct qjob *j, *next;

	for (j = q->jobs; j; j = next) {
		int status;

		next = j->next;
		if (j->pid > 0 && waitpid(j->pid, &status, WNOHANG) == j->pid)
			collect(q, j, status);
		if (!q->have_list)
			continue; /* an unreachable region cancels nothing */
		if (!j->wanted) {
			if (j->pid > 0) {
				if (!j->killed)
					log_info("quantum job cancelled tenant=%s job=%s pid=%d",
						 j->tenant, j->id, (int)j->pid);
				j->killed = true;
				kill_worker(j);
				continue; /* reaped on a later pass */
			}
			remove_dir(q, j);
			job_drop(q, j);
			continue;
		}
		if (j->phase == PH_NEW)
			start(q, j);
	}
}

int qjobs_running(const struct qjobs *q)
{
	int n = 0;

	for (const struct qjob *j = q->jobs; j; j = j->next)
		n += j->pid > 0;
	return n;
}

int64_t qjobs_due_ms(const struct qjobs *q)
{
	int64_t due = INT64_MAX, now = ts_mono_ms();

	for (const struct qjob *j = q->jobs; j; j = j->next) {
		int64_t age, every;

		if (j->pid <= 0)
			continue;
		/* a quarter of the age: a job is noticed within 25% of its run time */
		age = now - j->started_mono;
		every = age / 4 < 50 ? 50 : age / 4;
		age = (age / every + 1) * every - age; /* to the next multiple */
		if (age < due)
			due = age;
	}
	return due;
}

void qjobs_report(struct qjobs *q, struct client *c)
{
	for (struct qjob *j = q->jobs; j; j = j->next) {
		if (!j->wanted)
			continue; /* cancelled or done with: nobody waits for a word */
		if (j->phase == PH_RUNNING && !j->running_sent) {
			json_t *r = report_base(j, "running");

			if (!r)
				continue;
			if (agent_post_report(c, q->report_path, r, "quantum job report", "job",
					      "id") < 0) {
				json_decref(r);
				return; /* the region is away: the rest waits for the next pass */
			}
			json_decref(r);
			j->running_sent = true;
		}
		if (j->phase == PH_DONE && j->final && !j->final_sent) {
			if (agent_post_report(c, q->report_path, j->final, "quantum job report",
					      "job", "id") < 0)
				return;
			j->final_sent = true;
			log_info("reported quantum job tenant=%s job=%s state=%s", j->tenant, j->id,
				 jbody_str(j->final, "state", ""));
		}
	}
}
