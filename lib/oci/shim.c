/*
 * shim — the process that watches over one run of a container (see oci.h
 * for the instance directory). oci_start execs it; it outlives the agent.
 *
 * It creates and starts the container on the runtime as the child
 * subreaper, so the container's init becomes its child once `runtime
 * run -d` exits: it gets the real exit status from waitpid, where the
 * runtime would only know "stopped". It pumps the container's stdout and
 * stderr (one pipe) into DIR/log, and records how the run ended.
 *
 * Invariants:
 *  - status.json goes running -> exited, or straight to failed. "exited" is
 *    written only after `runtime delete` and the cgroup rmdir, so whoever
 *    reads it may start the same id again at once without racing this
 *    shim's clean-up;
 *  - the OOM count is read from the cgroup before delete removes it;
 *  - DIR/log and DIR/log.1 never exceed OCI_SHIM_LOG_MAX bytes; log.base is
 *    written before the rename that turns log into log.1, so a reader that
 *    opened both files can always place them in the stream (oci_log_open).
 *    The log's reader lives here too, beside the writer it must agree with.
 *
 * Its stdio is /dev/null: it speaks through status.json only.
 */
#include "oci/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/ts.h"

#ifndef OCI_SHIM_LOG_MAX
#define OCI_SHIM_LOG_MAX OCI_LOG_MAX /* a test includes this file with a small one */
#endif

#define SHIM_DRAIN_MS 2000    /* after init's exit, for the last output in the pipe */
#define SHIM_CMD_MS 30000     /* runtime run/delete */
#define SHIM_CREATE_HEAD 8192 /* run -d's own output kept for the failure reason */

struct shim {
	const char *bin, *root, *id, *dir, *cgroup;
	long long cpu_quota_us; /* per 100 ms; 0 = none (see oci.c: not in config.json) */
	int sfd;		/* signalfd for SIGCHLD */
	int out_r;		/* the container's stdout+stderr pipe; -1 after EOF */
	int log_fd;		/* DIR/log, append-only */
	int64_t log_size;	/* bytes in DIR/log */
	int64_t log_start;	/* stream offset of DIR/log's first byte */
	pid_t init;
	int init_done, init_ws;
	char started[TS_RFC3339_LEN];
};

static int shim_path(const struct shim *sh, const char *name, char *out, size_t n)
{
	int len = snprintf(out, n, "%s/%s", sh->dir, name);

	return len < 0 || (size_t)len >= n ? -1 : 0;
}

static int shim_args(struct shim *sh, int argc, char **argv)
{
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (!strcmp(k, "--runtime-bin"))
			sh->bin = v;
		else if (!strcmp(k, "--root"))
			sh->root = v;
		else if (!strcmp(k, "--id"))
			sh->id = v;
		else if (!strcmp(k, "--dir"))
			sh->dir = v;
		else if (!strcmp(k, "--cgroup"))
			sh->cgroup = v;
		else if (!strcmp(k, "--cpu-quota"))
			sh->cpu_quota_us = strtoll(v, NULL, 10);
		else
			return -1;
	}
	if (!sh->bin || !sh->root || !sh->id || !sh->dir || !sh->cgroup || sh->dir[0] != '/')
		return -1;
	return 0;
}

static void shim_status_failed(struct shim *sh, const char *reason)
{
	json_t *st = json_pack("{s:s, s:s}", "state", "failed", "reason", reason);

	if (st)
		oci_write_status(sh->dir, st, NULL);
	json_decref(st);
}

/* ---- the log ---- */

static int log_open(struct shim *sh)
{
	struct oci_log_files f;
	struct stat st;
	char path[PATH_MAX];

	if (oci_log_open(sh->dir, &f, NULL) < 0)
		return -1;
	sh->log_start = f.start0;
	oci_log_close(&f);
	if (shim_path(sh, "log", path, sizeof(path)) < 0)
		return -1;
	sh->log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (sh->log_fd < 0 || fstat(sh->log_fd, &st) < 0)
		return -1;
	sh->log_size = st.st_size;
	return 0;
}

static int log_rotate(struct shim *sh)
{
	char base[PATH_MAX], log[PATH_MAX], log1[PATH_MAX], txt[64];
	struct stat st;
	int n;

	if (fstat(sh->log_fd, &st) < 0 || shim_path(sh, "log.base", base, sizeof(base)) < 0 ||
	    shim_path(sh, "log", log, sizeof(log)) < 0 ||
	    shim_path(sh, "log.1", log1, sizeof(log1)) < 0)
		return -1;
	/* first say where the file about to become log.1 starts, then rename it */
	n = snprintf(txt, sizeof(txt), "%lld %llu\n", (long long)sh->log_start,
		     (unsigned long long)st.st_ino);
	if (oci_write_file(base, txt, (size_t)n, NULL) < 0 || rename(log, log1) < 0)
		return -1;
	close(sh->log_fd);
	sh->log_start += sh->log_size;
	sh->log_size = 0;
	sh->log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	return sh->log_fd < 0 ? -1 : 0;
}

/* Append to the log, rotating at the limit. Output that cannot be written
 * (disk full) is dropped: the pipe must keep flowing or the container blocks. */
static void log_append(struct shim *sh, const char *buf, size_t n)
{
	while (n > 0 && sh->log_fd >= 0) {
		size_t room, chunk;
		ssize_t w;

		if (sh->log_size >= OCI_SHIM_LOG_MAX && log_rotate(sh) < 0)
			return;
		room = (size_t)(OCI_SHIM_LOG_MAX - sh->log_size);
		chunk = n < room ? n : room;
		w = write(sh->log_fd, buf, chunk);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		sh->log_size += w;
		buf += w;
		n -= (size_t)w;
	}
}

/* One read of the container's output into the log; closes the pipe at EOF. */
static void pump(struct shim *sh)
{
	char buf[65536];
	ssize_t r = read(sh->out_r, buf, sizeof(buf));

	if (r > 0) {
		log_append(sh, buf, (size_t)r);
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
		close(sh->out_r);
		sh->out_r = -1;
	}
}

/* ---- children ---- */

static int exit_code(int ws)
{
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws))
		return 128 + WTERMSIG(ws);
	return 255;
}

/* Empty the signalfd; poll would report a pending SIGCHLD forever. */
static void sfd_drain(struct shim *sh)
{
	struct signalfd_siginfo si;

	while (read(sh->sfd, &si, sizeof(si)) > 0)
		;
}

/* Reap every exited child: the init, and runtime helpers orphaned onto us. */
static void reap(struct shim *sh)
{
	pid_t pid;
	int ws;

	sfd_drain(sh);
	while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
		if (pid == sh->init && !sh->init_done) {
			sh->init_done = 1;
			sh->init_ws = ws;
		}
	}
}

static pid_t read_pid(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &v) != 1 || v < 0 || v > 0x3fffffff)
		v = 0;
	fclose(f);
	return (pid_t)v;
}

static int runtime_leftover(const struct shim *sh)
{
	char path[PATH_MAX];
	struct stat st;
	int n = snprintf(path, sizeof(path), "%s/%s", sh->root, sh->id);

	return n > 0 && (size_t)n < sizeof(path) && lstat(path, &st) == 0;
}

static void runtime_delete(struct shim *sh)
{
	char *argv[] = {(char *)sh->bin,
			(char *)"--root",
			(char *)sh->root,
			(char *)"delete",
			(char *)"--force",
			(char *)sh->id,
			NULL};
	char out[512];

	if (runtime_leftover(sh))
		oci_run(argv, out, sizeof(out), SHIM_CMD_MS, NULL);
	oci_cgroup_remove(sh->cgroup);
}

/*
 * `runtime run -d`: its stdout/stderr, and so the container's, are the
 * pipe. Until it exits the pipe carries only the runtime's own words; they
 * go to the log, and the first line is the reason if it failed.
 */
static int shim_run(struct shim *sh, char *why, size_t why_len)
{
	char pid_file[PATH_MAX], head[SHIM_CREATE_HEAD];
	/*
	 * `run -d` rather than `create` + `start`: one runtime process instead
	 * of two (about 30 ms less per start), and the shim is still the
	 * subreaper its init is handed to when `run -d` exits.
	 */
	char *argv[] = {(char *)sh->bin,
			(char *)"--root",
			(char *)sh->root,
			(char *)"run",
			(char *)"-d",
			(char *)"--bundle",
			(char *)sh->dir,
			(char *)"--pid-file",
			pid_file,
			(char *)sh->id,
			NULL};
	struct ciel_err err = {0};
	size_t got = 0;
	int p[2], null_fd, ws = 0, done = 0, head_logged = 0;
	pid_t pid;

	why[0] = '\0';
	if (shim_path(sh, "init.pid", pid_file, sizeof(pid_file)) < 0) {
		snprintf(why, why_len, "instance path too long");
		return -1;
	}
	unlink(pid_file);
	/* a container of this id left by a crash would make create fail */
	runtime_delete(sh);
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(why, why_len, "pipe: %s", strerror(errno));
		return -1;
	}
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid = null_fd < 0 ? -1 : oci_spawn(argv, null_fd, p[1], p[1], &err);
	if (null_fd >= 0)
		close(null_fd);
	close(p[1]);
	sh->out_r = p[0];
	if (pid < 0) {
		snprintf(why, why_len, "%s", err.msg[0] ? err.msg : "cannot open /dev/null");
		return -1;
	}
	fcntl(sh->out_r, F_SETFL, O_NONBLOCK);

	for (int64_t deadline = ts_mono_ms() + SHIM_CMD_MS;;) {
		struct pollfd pf[2] = {{sh->sfd, POLLIN, 0}, {sh->out_r, POLLIN, 0}};

		poll(pf, sh->out_r >= 0 ? 2 : 1, 100);
		sfd_drain(sh);
		/* only create itself: the init is unknown yet, and reaped later by pid. Checked
		 * before reading, so all create wrote is in the pipe for the pass below */
		done = waitpid(pid, &ws, WNOHANG) == pid;
		while (sh->out_r >= 0 && got < sizeof(head) - 1) {
			ssize_t r = read(sh->out_r, head + got, sizeof(head) - 1 - got);

			if (r > 0) {
				got += (size_t)r;
				continue;
			}
			if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(sh->out_r);
				sh->out_r = -1;
			}
			break;
		}
		if (sh->out_r >= 0 && got == sizeof(head) - 1 && pf[1].revents) {
			/* past the head: it goes to the log first, then the rest straight on,
			 * or the log would hold the output out of order */
			if (!head_logged) {
				log_append(sh, head, got);
				head_logged = 1;
			}
			pump(sh);
		}
		if (done)
			break;
		if (ts_mono_ms() >= deadline) {
			/* a hung runtime must not hang the shim: oci_start is waiting on us */
			kill(pid, SIGKILL);
			waitpid(pid, &ws, 0);
			snprintf(why, why_len, "%s run timed out after %d ms", sh->bin,
				 SHIM_CMD_MS);
			return -1;
		}
	}
	head[got] = '\0';
	if (!head_logged)
		log_append(sh, head, got);
	if (exit_code(ws) != 0) {
		oci_first_line(head, why, why_len);
		if (!why[0])
			snprintf(why, why_len, "%s run exited %d", sh->bin, exit_code(ws));
		return -1;
	}
	sh->init = read_pid(pid_file);
	if (sh->init <= 1) {
		snprintf(why, why_len, "%s run wrote no init pid", sh->bin);
		return -1;
	}
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return ok ? 0 : -1;
}

/* The CPU quota, written once the command runs (v1 cpu.cfs_quota_us, v2 cpu.max). */
static int cpu_limit(const struct shim *sh, char *why, size_t n)
{
	char path[PATH_MAX], text[64];

	if (sh->cpu_quota_us <= 0)
		return 0;
	snprintf(text, sizeof(text), "%lld", sh->cpu_quota_us);
	snprintf(path, sizeof(path), "/sys/fs/cgroup/cpu%s/cpu.cfs_quota_us", sh->cgroup);
	if (access(path, F_OK) == 0) {
		if (write_file(path, text) == 0)
			return 0;
	} else {
		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", sh->cgroup);
		snprintf(text, sizeof(text), "%lld 100000", sh->cpu_quota_us);
		if (write_file(path, text) == 0)
			return 0;
	}
	snprintf(why, n, "cannot set the CPU limit in %.300s: %s", path, strerror(errno));
	return -1;
}

/* The cgroup's OOM-kill count (v1 memory.oom_control, v2 memory.events) > 0. */
static int oom_killed(const struct shim *sh)
{
	const char *fmt[] = {"/sys/fs/cgroup/memory%s/memory.oom_control",
			     "/sys/fs/cgroup%s/memory.events"};

	for (int i = 0; i < 2; i++) {
		char path[PATH_MAX], line[256];
		FILE *f;
		long long n = 0;
		int found = 0;

		snprintf(path, sizeof(path), fmt[i], sh->cgroup);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "oom_kill %lld", &n) == 1) {
				found = 1;
				break;
			}
		fclose(f);
		if (found)
			return n > 0;
	}
	return 0;
}

static int shim_setup(struct shim *sh, char *why, size_t why_len)
{
	char path[PATH_MAX], txt[32];
	sigset_t set;
	int n;

	/* the container's init is reparented to us when `runtime run -d` exits */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		snprintf(why, why_len, "set child subreaper: %s", strerror(errno));
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	n = snprintf(txt, sizeof(txt), "%d\n", (int)getpid());
	if (shim_path(sh, "shim.pid", path, sizeof(path)) < 0 ||
	    oci_write_file(path, txt, (size_t)n, NULL) < 0) {
		snprintf(why, why_len, "cannot write %s/shim.pid", sh->dir);
		return -1;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sh->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sh->sfd < 0) {
		snprintf(why, why_len, "signalfd: %s", strerror(errno));
		return -1;
	}
	if (log_open(sh) < 0) {
		snprintf(why, why_len, "cannot open %s/log: %s", sh->dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* After init's exit: how it ended, then the runtime and cgroup clean-up,
 * then "exited" (see the invariants at the top). */
static int shim_finish(struct shim *sh)
{
	char finished[TS_RFC3339_LEN];
	int oom = oom_killed(sh), ret = 1;
	json_t *st;

	runtime_delete(sh);
	reap(sh);
	ts_format(ts_now_ms(), finished);
	st = json_pack("{s:s, s:i, s:b, s:s, s:s, s:i}", "state", "exited", "exit_code",
		       exit_code(sh->init_ws), "oom", oom, "started", sh->started, "finished",
		       finished, "pid", (int)sh->init);
	if (st && oci_write_status(sh->dir, st, NULL) == 0)
		ret = 0;
	json_decref(st);
	return ret;
}

int oci_shim_main(int argc, char **argv)
{
	struct shim sh = {.sfd = -1, .out_r = -1, .log_fd = -1};
	char why[512] = "";
	json_t *st;
	int64_t deadline;
	int ret = 1;

	if (argc < 2 || shim_args(&sh, argc, argv) < 0)
		return 2;
	if (shim_setup(&sh, why, sizeof(why)) < 0) {
		shim_status_failed(&sh, why);
		goto out;
	}
	if (shim_run(&sh, why, sizeof(why)) < 0) {
		runtime_delete(&sh); /* kills an init that was created but never started */
		reap(&sh);
		shim_status_failed(&sh, why);
		goto out;
	}
	if (cpu_limit(&sh, why, sizeof(why)) < 0) {
		runtime_delete(&sh);
		reap(&sh);
		shim_status_failed(&sh, why);
		goto out;
	}
	ts_format(ts_now_ms(), sh.started);
	st = json_pack("{s:s, s:i, s:s}", "state", "running", "pid", (int)sh.init, "started",
		       sh.started);
	if (!st || oci_write_status(sh.dir, st, NULL) < 0) {
		json_decref(st);
		runtime_delete(&sh);
		shim_status_failed(&sh, "cannot write status.json");
		goto out;
	}
	json_decref(st);

	while (!sh.init_done) {
		struct pollfd pf[2] = {{sh.sfd, POLLIN, 0}, {sh.out_r, POLLIN, 0}};

		/* the timeout is a backstop: SIGCHLDs coalesce, a reap per round cannot miss */
		poll(pf, sh.out_r >= 0 ? 2 : 1, 1000);
		if (sh.out_r >= 0 && pf[1].revents)
			pump(&sh);
		reap(&sh);
	}
	/* init's death killed the rest of its pid namespace: the pipe ends soon */
	deadline = ts_mono_ms() + SHIM_DRAIN_MS;
	while (sh.out_r >= 0 && ts_mono_ms() < deadline) {
		struct pollfd pf = {sh.out_r, POLLIN, 0};

		if (poll(&pf, 1, (int)(deadline - ts_mono_ms())) > 0)
			pump(&sh);
	}

	ret = shim_finish(&sh);
out:
	if (sh.out_r >= 0)
		close(sh.out_r);
	if (sh.log_fd >= 0)
		close(sh.log_fd);
	if (sh.sfd >= 0)
		close(sh.sfd);
	return ret;
}

/* ---- the log stream, as oci_log_read sees it (the writer is above) ---- */

void oci_log_close(struct oci_log_files *f)
{
	if (f->fd1 >= 0)
		close(f->fd1);
	if (f->fd0 >= 0)
		close(f->fd0);
	f->fd1 = f->fd0 = -1;
}

static int log_path(const char *dir, const char *name, char *out, size_t n)
{
	int len = snprintf(out, n, "%s/%s", dir, name);

	return len < 0 || (size_t)len >= n ? -1 : 0;
}

static int open_stat(const char *dir, const char *name, struct stat *st)
{
	char path[PATH_MAX];
	int fd;

	if (log_path(dir, name, path, sizeof(path)) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && fstat(fd, st) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* DIR/log.base: 1 and the pair, or 0 when there is none (never rotated). */
static int read_base(const char *path, long long *base, unsigned long long *ino)
{
	FILE *f = fopen(path, "re");
	int ok;

	*base = 0;
	*ino = 0;
	if (!f)
		return 0;
	ok = fscanf(f, "%lld %llu", base, ino) == 2 && *base >= 0;
	fclose(f);
	return ok;
}

/*
 * log.base is read before and after opening the two files, seqlock style:
 * when both reads agree, no rotation began in between (offsets only grow,
 * so equal means the same generation), and the files can only be the pair
 * from just before its rename (log is the file log.base names, log.1 its
 * predecessor) or from just after (log.1 is that file). Anything else is a
 * rotation caught half way: open again.
 */
int oci_log_open(const char *dir, struct oci_log_files *f, struct ciel_err *err)
{
	const struct timespec ms1 = {0, 1000000};
	char path[PATH_MAX];

	f->fd1 = f->fd0 = -1;
	if (log_path(dir, "log.base", path, sizeof(path)) < 0)
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", dir);
	for (int attempt = 0; attempt < 50; attempt++) {
		struct stat s1 = {0}, s0 = {0};
		unsigned long long ino, ino2;
		long long base, base2;
		int have = read_base(path, &base, &ino), have2;

		f->fd1 = open_stat(dir, "log.1", &s1);
		f->fd0 = open_stat(dir, "log", &s0);
		have2 = read_base(path, &base2, &ino2);
		f->size1 = f->fd1 >= 0 ? s1.st_size : 0;
		f->size0 = f->fd0 >= 0 ? s0.st_size : 0;
		if (have == have2 && base == base2 && ino == ino2) {
			if (!have) {
				f->start1 = 0;
				f->start0 = f->size1;
				return 0;
			}
			if (f->fd1 >= 0 && s1.st_ino == ino) {
				f->start1 = base;
				f->start0 = base + f->size1;
				return 0;
			}
			if ((f->fd0 >= 0 && s0.st_ino == ino) || (f->fd0 < 0 && f->fd1 < 0)) {
				f->start0 = base;
				f->start1 = base - f->size1 < 0 ? 0 : base - f->size1;
				return 0;
			}
		}
		oci_log_close(f);
		nanosleep(&ms1, NULL);
	}
	return ciel_err_set(err, CIEL_EUNAVAIL, "log of %s is rotating too fast to read", dir);
}

static int pread_all(int fd, char *buf, size_t n, off_t off)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return (int)got;
}

int oci_log_read(const char *dir, int64_t offset, size_t max, char **out, size_t *len,
		 int64_t *next, int64_t *first, struct ciel_err *err)
{
	struct oci_log_files f;
	struct stat st;
	int64_t end, want, off;
	size_t got = 0;
	char *buf;

	*out = NULL;
	*len = 0;
	if (!dir || stat(dir, &st) < 0)
		return ciel_err_sys(err, CIEL_ENOTFOUND, errno, "instance directory %s",
				    dir ? dir : "(null)");
	if (oci_log_open(dir, &f, err) < 0)
		return -1;
	*first = f.fd1 >= 0 ? f.start1 : f.start0;
	end = f.start0 + f.size0;
	off = offset < *first ? *first : offset > end ? end : offset;
	want = end - off < (int64_t)max ? end - off : (int64_t)max;
	buf = malloc((size_t)want + 1);
	if (!buf) {
		oci_log_close(&f);
		return ciel_err_set(err, CIEL_ENOMEM, "read log");
	}
	if (f.fd1 >= 0 && off < f.start0) {
		int64_t n = f.start0 - off < want ? f.start0 - off : want;

		got = (size_t)pread_all(f.fd1, buf, (size_t)n, (off_t)(off - f.start1));
		/* log.1 ends where log begins: short means it was cut under us, stop there */
		if ((int64_t)got < n)
			want = (int64_t)got;
	}
	if ((int64_t)got < want && f.fd0 >= 0)
		got += (size_t)pread_all(f.fd0, buf + got, (size_t)(want - (int64_t)got),
					 (off_t)(off + (int64_t)got - f.start0));
	oci_log_close(&f);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	*next = off + (int64_t)got;
	return 0;
}
