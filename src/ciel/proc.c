/*
 * proc — see proc.h. Children never inherit our descriptors (curl's
 * sockets, pipes): everything above stderr is closed before exec.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/ts.h"

void proc_find(const char *name, char *out, size_t size)
{
	char self[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if ((size_t)snprintf(out, size, "%s/%s", self, name) < size &&
			    access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, size, "%s", name);
}

static void close_from(int lo, int keep)
{
	if (keep >= lo) {
		if (keep > lo && close_range((unsigned)lo, (unsigned)keep - 1, 0) < 0)
			for (int fd = lo; fd < keep; fd++)
				close(fd);
		lo = keep + 1;
	}
	if (close_range((unsigned)lo, ~0U, 0) < 0)
		for (int fd = lo; fd < 4096; fd++)
			close(fd);
}

/* In a child: stdin from /dev/null, stdout/stderr to log, other fds closed,
 * default signals; then exec. Reports errno on report_fd if exec fails. */
static void child_exec(char *const argv[], const char *log, int report_fd)
{
	sigset_t none;
	int fd, e;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	close_from(3, report_fd);
	execvp(argv[0], argv);
	e = errno;
	if (report_fd >= 0 && write(report_fd, &e, sizeof(e)) < 0) {
		/* the parent sees EOF and a dead child: still a failure */
	}
	_exit(127);
}

int proc_run(char *const argv[], const char *log, struct ciel_err *err)
{
	int p[2], status, e = 0;
	pid_t pid;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "pipe");
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return ciel_err_sys(err, CIEL_EIO, errno, "fork");
	}
	if (pid == 0) {
		close(p[0]);
		child_exec(argv, log, p[1]);
	}
	close(p[1]);
	do
		n = read(p[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return ciel_err_sys(err, CIEL_EIO, errno, "wait for %s", argv[0]);
	if (n == (ssize_t)sizeof(e))
		return ciel_err_sys(err, e == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, e, "run %s",
				    argv[0]);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int proc_spawn(char *const argv[], const char *log, pid_t *pid, struct ciel_err *err)
{
	int p[2], status, e = 0;
	pid_t mid, grand = 0;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "pipe");
	mid = fork();
	if (mid < 0) {
		close(p[0]);
		close(p[1]);
		return ciel_err_sys(err, CIEL_EIO, errno, "fork");
	}
	if (mid == 0) {
		pid_t g;

		close(p[0]);
		/* own session: no controlling terminal, no SIGHUP or ^C from ours */
		setsid();
		g = fork();
		if (g < 0)
			_exit(1);
		if (g == 0)
			child_exec(argv, log, p[1]);
		_exit(write(p[1], &g, sizeof(g)) == (ssize_t)sizeof(g) ? 0 : 1);
	}
	close(p[1]);
	while (waitpid(mid, &status, 0) < 0 && errno == EINTR)
		;
	do
		n = read(p[0], &grand, sizeof(grand));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(grand)) {
		close(p[0]);
		return ciel_err_set(err, CIEL_EIO, "start %s: fork failed", argv[0]);
	}
	/* EOF here means the exec succeeded (the pipe is close-on-exec) */
	do
		n = read(p[0], &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == (ssize_t)sizeof(e))
		return ciel_err_sys(err, e == ENOENT ? CIEL_ENOTFOUND : CIEL_EIO, e, "run %s",
				    argv[0]);
	*pid = grand;
	return 0;
}

bool proc_alive(pid_t pid, const char *comm)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* "pid (comm) S ...": comm may hold spaces and parentheses, the state
	 * follows the last ')' */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
		return false;
	if (comm) {
		char *open_paren = strchr(buf, '(');

		if (!open_paren)
			return false;
		*p = '\0';
		/* the kernel keeps 15 characters of the name */
		if (strncmp(open_paren + 1, comm, 15) != 0)
			return false;
	}
	return true;
}

pid_t proc_read_pid(const char *file)
{
	char buf[32];
	FILE *f = fopen(file, "re");
	long v;
	char *end;

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return 0;
	}
	fclose(f);
	v = strtol(buf, &end, 10);
	if (end == buf || v <= 0 || v > INT_MAX)
		return 0;
	return (pid_t)v;
}

int proc_write_pid(const char *file, pid_t pid, struct ciel_err *err)
{
	char tmp[PATH_MAX], buf[32];
	int fd, n;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", file) >= sizeof(tmp))
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", tmp);
	n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	if (write(fd, buf, (size_t)n) != n) {
		close(fd);
		unlink(tmp);
		return ciel_err_sys(err, CIEL_EIO, errno, "write %s", tmp);
	}
	close(fd);
	if (rename(tmp, file) < 0) {
		unlink(tmp);
		return ciel_err_sys(err, CIEL_EIO, errno, "rename %s", tmp);
	}
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool wait_gone(pid_t pid, const char *comm, int wait_ms)
{
	int64_t end = ts_mono_ms() + wait_ms;

	while (proc_alive(pid, comm)) {
		if (ts_mono_ms() >= end)
			return false;
		sleep_ms(20);
	}
	return true;
}

int proc_stop(pid_t pid, const char *comm, int wait_ms)
{
	if (!proc_alive(pid, comm))
		return 0;
	if (kill(pid, SIGTERM) < 0)
		return errno == ESRCH ? 0 : -1;
	if (wait_gone(pid, comm, wait_ms))
		return SIGTERM;
	kill(pid, SIGKILL);
	wait_gone(pid, comm, 2000);
	return SIGKILL;
}

int proc_mkdirs(const char *path, int mode, struct ciel_err *err)
{
	char dir[PATH_MAX];

	if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir))
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, (mode_t)mode) < 0 && errno != EEXIST)
			return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", dir);
		*p = '/';
	}
	if (mkdir(dir, (mode_t)mode) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", dir);
	return 0;
}

void proc_tail(const char *file, int n)
{
	char *buf;
	long size, start;
	FILE *f = fopen(file, "re");
	int lines = 0;
	size_t got;

	if (!f) {
		fprintf(stderr, "  (no log at %s)\n", file);
		return;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	start = size > 16384 ? size - 16384 : 0;
	fseek(f, start, SEEK_SET);
	buf = malloc(16385);
	if (!buf) {
		fclose(f);
		return;
	}
	got = fread(buf, 1, 16384, f);
	fclose(f);
	buf[got] = '\0';
	for (size_t i = got; i > 0; i--) {
		if (buf[i - 1] == '\n' && i != got && ++lines >= n) {
			memmove(buf, buf + i, got - i + 1);
			break;
		}
	}
	fprintf(stderr, "--- last lines of %s ---\n%s", file, buf);
	if (buf[0] && buf[strlen(buf) - 1] != '\n')
		fputc('\n', stderr);
	fprintf(stderr, "---\n");
	free(buf);
}
