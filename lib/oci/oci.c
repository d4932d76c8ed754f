/*
 * oci — the agent's side of running a container on runc or crun (see oci.h
 * for the instance directory); shim.c is the per-container process.
 *
 * Invariants:
 *  - every external program is run with fork + execv (no shell), stdin on
 *    /dev/null, no inherited fds but 0-2, signals reset, and waited for;
 *  - files other processes read (config.json, status.json, shim.pid,
 *    log.base) are replaced whole (temporary file + rename), never written
 *    in place, so a reader sees the old or the new content;
 *  - oci_remove never follows a symlink and never crosses into another
 *    filesystem while deleting DIR, and deletes nothing while the overlay is
 *    still mounted on DIR/rootfs: the image below it must survive;
 *  - a shim is trusted to be ours only when /proc/PID/cmdline says
 *    "shim ... --id ID": a recycled pid is never signalled or believed.
 *
 * The shim is a direct child of the process calling oci_start: this
 * machine's PID 1 does not reap orphans, so a double fork would leave a
 * zombie per container run. Started shims are remembered here and reaped.
 */
#include "oci/oci.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/ts.h"

#define CMD_TIMEOUT_MS 30000 /* runc kill/delete/start should take milliseconds */
#define POLL_START_MS 5
#define POLL_STOP_MS 10
#define KILL_WAIT_MS 5000
#define RM_MAX_DEPTH 100000 /* names held in memory, not fds: only a sanity cap */

static const char *const default_path =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static const char *const default_caps[] = {OCI_DEFAULT_CAPS};

/*
 * Deny-list seccomp profile: everything is allowed except these, which fail
 * with EPERM. Most already need a capability the container lacks; the filter
 * is a second wall against kernel bugs behind them. An allow-list (Docker's
 * profile) is stricter; note clone(CLONE_NEWUSER) and clone3 pass this one.
 */
/* one row per kind of danger */
/* clang-format off */
static const char *const denied_syscalls[] = {
	"mount", "umount2", "pivot_root", "setns", "unshare",	/* escape the mount/ns setup */
	"open_by_handle_at", "name_to_handle_at",		/* reach past the root by handle */
	"ptrace", "personality", "userfaultfd", "perf_event_open", "bpf", /* attack surface */
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"keyctl", "add_key", "request_key",			/* keyrings are not namespaced */
	"reboot", "swapon", "swapoff", "acct", "quotactl", "vhangup", /* host-wide state */
	"settimeofday", "clock_settime", "syslog", "lookup_dcookie", "iopl", "ioperm",
};
/* clang-format on */

static const char *const masked_paths[] = {
    "/proc/acpi",	   "/proc/asound",     "/proc/kcore",	    "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/sys/firmware",	   "/proc/scsi",
};

static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- small helpers ---- */

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

static int path_join(char *out, size_t n, const char *dir, const char *name, struct ciel_err *err)
{
	int len = snprintf(out, n, "%s/%s", dir, name);

	if (len < 0 || (size_t)len >= n)
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s/%s", dir, name);
	return 0;
}

/* Ids end up in paths, cgroup names and runtime argv: a leading '-' would
 * read as a flag. */
static int check_id(const char *id, struct ciel_err *err)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > 64 || id[0] == '-')
		return ciel_err_field(err, CIEL_EINVAL, "id",
				      "container id must be 1-64 of [a-z0-9-]");
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') ||
		      id[i] == '-'))
			return ciel_err_field(err, CIEL_EINVAL, "id",
					      "container id must be 1-64 of [a-z0-9-]");
	return 0;
}

/* Read a small file whole; NUL-terminated, *len excludes the NUL. */
static char *read_small(const char *path, size_t max, size_t *len)
{
	char *buf = malloc(max + 1);
	size_t got = 0;
	int fd;

	if (!buf)
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out_free;
	while (got < max) {
		ssize_t r = read(fd, buf + got, max - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto out_close;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	if (len)
		*len = got;
	return buf;
out_close:
	close(fd);
out_free:
	free(buf);
	return NULL;
}

static pid_t read_pid_file(const char *path)
{
	char *s = read_small(path, 32, NULL);
	char *end;
	long v;

	if (!s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || v <= 1 || v > 0x3fffffff)
		v = -1;
	free(s);
	return (pid_t)v;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * No fsync: these files matter while the node is up (an agent restart
 * adopts from them); a machine crash takes the containers with it and
 * oci_prepare rewrites the config.
 */
int oci_write_file(const char *path, const char *data, size_t len, struct ciel_err *err)
{
	char tmp[PATH_MAX];
	int fd, n;

	/* the pid makes concurrent writers (shim, oci_status) use distinct temporaries */
	n = snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return ciel_err_set(err, CIEL_EINVAL, "path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", tmp);
	if (write_all(fd, data, len) < 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return ciel_err_sys(err, CIEL_EIO, e, "write %s", tmp);
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		return ciel_err_sys(err, CIEL_EIO, e, "rename %s", path);
	}
	return 0;
}

int oci_write_status(const char *dir, json_t *st, struct ciel_err *err)
{
	char path[PATH_MAX];
	char *s;
	int ret;

	if (path_join(path, sizeof(path), dir, "status.json", err) < 0)
		return -1;
	s = json_dumps(st, JSON_COMPACT);
	if (!s)
		return ciel_err_set(err, CIEL_ENOMEM, "encode status");
	ret = oci_write_file(path, s, strlen(s), err);
	free(s);
	return ret;
}

/* ---- running programs ---- */

/* Between fork and exec: async-signal-safe calls only (the agent has threads). */
static void child_setup(int in, int out, int errfd)
{
	int fds[3] = {in, out, errfd};
	struct sigaction sa;
	sigset_t none;
	int i;

	/* lift the sources above 2 first, so a dup2 onto 0..2 cannot clobber one */
	for (i = 0; i < 3; i++)
		fds[i] = fcntl(fds[i], F_DUPFD, 3);
	for (i = 0; i < 3; i++)
		if (fds[i] < 0 || dup2(fds[i], i) < 0)
			_exit(127);
	/* ignored signals and the blocked mask survive exec: the container must not inherit them */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (i = 1; i < NSIG; i++)
		sigaction(i, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (close_range(3, ~0U, 0) < 0)
		for (i = 3; i < 65536; i++)
			close(i);
}

pid_t oci_spawn(char *const argv[], int in, int out, int errfd, struct ciel_err *err)
{
	pid_t pid = fork();

	if (pid < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "fork for %s", argv[0]);
	if (pid == 0) {
		child_setup(in, out, errfd);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int wait_code(int ws)
{
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws))
		return 128 + WTERMSIG(ws);
	return 255;
}

int oci_run(char *const argv[], char *out, size_t out_len, int timeout_ms, struct ciel_err *err)
{
	int64_t deadline = ts_mono_ms() + timeout_ms;
	size_t got = 0;
	int p[2], null_fd, ws, timed_out = 0;
	pid_t pid;

	if (out_len)
		out[0] = '\0';
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "open /dev/null");
	if (pipe2(p, O_CLOEXEC) < 0) {
		close(null_fd);
		return ciel_err_sys(err, CIEL_EIO, errno, "pipe");
	}
	pid = oci_spawn(argv, null_fd, p[1], p[1], err);
	close(null_fd);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	for (;;) {
		struct pollfd pfd = {p[0], POLLIN, 0};
		int64_t left = deadline - ts_mono_ms();
		char buf[4096];
		ssize_t r;

		if (left <= 0) {
			timed_out = 1;
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			break;
		if (!pfd.revents)
			continue;
		r = read(p[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		/* keep the head: the first line carries the runtime's error */
		if (out_len && got < out_len - 1) {
			size_t n = (size_t)r < out_len - 1 - got ? (size_t)r : out_len - 1 - got;

			memcpy(out + got, buf, n);
			got += n;
			out[got] = '\0';
		}
	}
	close(p[0]);
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR)
			return ciel_err_sys(err, CIEL_EINTERNAL, errno, "wait for %s", argv[0]);
	}
	if (timed_out)
		return ciel_err_set(err, CIEL_EUNAVAIL, "%s %s: timed out after %d ms", argv[0],
				    argv[1] ? argv[1] : "", timeout_ms);
	if (WIFEXITED(ws) && WEXITSTATUS(ws) == 127 && got == 0)
		return ciel_err_set(err, CIEL_EUNAVAIL, "cannot execute %s", argv[0]);
	return wait_code(ws);
}

void oci_first_line(const char *in, char *out, size_t n)
{
	const char *lvl = strstr(in, "level=error");
	const char *m = strstr(lvl ? lvl : in, "msg=\"");
	size_t k = 0;

	while (*in == ' ' || *in == '\n' || *in == '\t' || *in == '\r')
		in++;
	if (m) {
		for (m += 5; *m && *m != '"' && *m != '\n' && k + 1 < n; m++) {
			if (*m == '\\' && m[1])
				m++;
			out[k++] = *m;
		}
	} else {
		for (; *in && *in != '\n' && k + 1 < n; in++)
			out[k++] = *in;
	}
	while (k > 0 && isspace((unsigned char)out[k - 1]))
		k--;
	out[k] = '\0';
}

/* Run `BIN --root ROOT VERB A1 A2`; returns the exit code or -1. */
static int runtime_cmd(const struct oci_runtime *rt, const char *verb, const char *a1,
		       const char *a2, char *out, size_t out_len, struct ciel_err *err)
{
	char *argv[] = {(char *)rt->bin,
			(char *)"--root",
			(char *)rt->root,
			(char *)verb,
			(char *)a1,
			(char *)a2,
			NULL};

	return oci_run(argv, out, out_len, CMD_TIMEOUT_MS, err);
}

static int runtime_knows(const struct oci_runtime *rt, const char *id)
{
	char path[PATH_MAX];
	struct stat st;

	if (path_join(path, sizeof(path), rt->root, id, NULL) < 0)
		return 0;
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- cgroups ---- */

static void cgroup_path(const struct oci_runtime *rt, const char *id, char *out, size_t n)
{
	snprintf(out, n, "/%s/%s", rt->cgroup_parent, id);
}

/* The killed tasks can take a moment to leave the cgroup: retry until deadline. */
static void rmdir_patient(const char *path, int64_t deadline)
{
	for (;;) {
		if (rmdir(path) == 0 || errno != EBUSY)
			return;
		if (ts_mono_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	log_warn("oci: cgroup still busy path=%s", path);
}

void oci_cgroup_remove(const char *cgroup)
{
	int64_t deadline = ts_mono_ms() + 1000; /* for all hierarchies together */
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int n;

	if (!cgroup || cgroup[0] != '/' || strstr(cgroup, ".."))
		return;
	n = snprintf(path, sizeof(path), "/sys/fs/cgroup%s", cgroup); /* v2 */
	if (n > 0 && (size_t)n < sizeof(path))
		rmdir_patient(path, deadline);
	d = opendir("/sys/fs/cgroup");
	if (!d)
		return;
	while ((e = readdir(d))) { /* one v1 hierarchy per entry */
		if (e->d_name[0] == '.')
			continue;
		n = snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s", e->d_name, cgroup);
		if (n > 0 && (size_t)n < sizeof(path))
			rmdir_patient(path, deadline);
	}
	closedir(d);
}

/* ---- detect ---- */

static int find_bin(const char *name, char *out, size_t n)
{
	static const char *const fallback =
	    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	const char *lists[2] = {getenv("PATH"), fallback};

	for (int l = 0; l < 2; l++) {
		const char *p = lists[l];

		while (p && *p) {
			const char *colon = strchr(p, ':');
			size_t len = colon ? (size_t)(colon - p) : strlen(p);
			int k;

			/* only absolute entries: the path is handed to the shim and kept */
			if (len > 0 && p[0] == '/') {
				k = snprintf(out, n, "%.*s/%s", (int)len, p, name);
				if (k > 0 && (size_t)k < n && access(out, X_OK) == 0)
					return 0;
			}
			p = colon ? colon + 1 : NULL;
		}
	}
	return -1;
}

static int try_runtime(struct oci_runtime *rt, enum oci_kind kind, struct ciel_err *err)
{
	const char *name = kind == OCI_CRUN ? "crun" : "runc";
	char out[256];
	char *argv[] = {rt->bin, (char *)"--version", NULL};
	int code;

	if (find_bin(name, rt->bin, sizeof(rt->bin)) < 0)
		return ciel_err_set(err, CIEL_EUNAVAIL, "%s not found in PATH", name);
	code = oci_run(argv, out, sizeof(out), CMD_TIMEOUT_MS, err);
	if (code < 0)
		return -1;
	if (code != 0)
		return ciel_err_set(err, CIEL_EUNAVAIL, "%s --version exited %d", rt->bin, code);
	rt->kind = kind;
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int oci_detect(struct oci_runtime *rt, const char *want, const char *root, const char *node,
	       struct ciel_err *err)
{
	struct statfs sfs;
	size_t nlen = node ? strlen(node) : 0;

	memset(rt, 0, sizeof(*rt));
	if (nlen == 0 || nlen > sizeof(rt->cgroup_parent) - 6)
		return ciel_err_field(err, CIEL_EINVAL, "node",
				      "node name must be 1-%zu characters",
				      sizeof(rt->cgroup_parent) - 6);
	for (size_t i = 0; i < nlen; i++)
		if (!isalnum((unsigned char)node[i]) && !strchr("._-", node[i]))
			return ciel_err_field(err, CIEL_EINVAL, "node",
					      "node name must be of [A-Za-z0-9._-]");
	if (!strcmp(node, ".") || !strcmp(node, ".."))
		return ciel_err_field(err, CIEL_EINVAL, "node", "node name must not be . or ..");
	snprintf(rt->cgroup_parent, sizeof(rt->cgroup_parent), "ciel/%s", node);
	rt->cgroup_v2 = statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;

	if (!want || !strcmp(want, "auto")) {
		/* crun starts faster, but refuses v1 and hybrid hosts */
		if (!(rt->cgroup_v2 && try_runtime(rt, OCI_CRUN, NULL) == 0) &&
		    try_runtime(rt, OCI_RUNC, err) < 0)
			return -1;
	} else if (!strcmp(want, "runc")) {
		if (try_runtime(rt, OCI_RUNC, err) < 0)
			return -1;
	} else if (!strcmp(want, "crun")) {
		if (!rt->cgroup_v2)
			return ciel_err_set(
			    err, CIEL_EUNAVAIL,
			    "crun needs a cgroup v2 host; this one is v1 or hybrid");
		if (try_runtime(rt, OCI_CRUN, err) < 0)
			return -1;
	} else {
		return ciel_err_field(err, CIEL_EINVAL, "runtime",
				      "runtime must be auto, runc or crun");
	}

	if (!root || !*root)
		return ciel_err_field(err, CIEL_EINVAL, "root", "runtime root is required");
	if (mkdir_p(root, 0700) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create runtime root %s", root);
	if (!realpath(root, rt->root))
		return ciel_err_sys(err, CIEL_EIO, errno, "resolve %s", root);
	log_debug("oci: runtime bin=%s root=%s cgroup_v2=%d", rt->bin, rt->root, rt->cgroup_v2);
	return 0;
}

/* ---- config.json ---- */

static json_t *str_array(const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *mount_entry(const char *dest, const char *type, const char *src,
			   const char *const *opts, size_t nopts)
{
	json_t *m = json_pack("{s:s, s:s, s:s}", "destination", dest, "type", type, "source", src);

	if (m && nopts)
		json_object_set_new(m, "options", str_array(opts, nopts));
	return m;
}

/* The mounts `runc spec` writes. */
static json_t *default_mounts(void)
{
	static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
	static const char *const pts[] = {"nosuid",	   "noexec",	"newinstance",
					  "ptmxmode=0666", "mode=0620", "gid=5"};
	static const char *const shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"};
	static const char *const mq[] = {"nosuid", "noexec", "nodev"};
	static const char *const sys[] = {"nosuid", "noexec", "nodev", "ro"};
	static const char *const cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro"};
	json_t *a = json_array();

	json_array_append_new(a, mount_entry("/proc", "proc", "proc", NULL, 0));
	json_array_append_new(a, mount_entry("/dev", "tmpfs", "tmpfs", dev, ARRAY_SIZE(dev)));
	json_array_append_new(a, mount_entry("/dev/pts", "devpts", "devpts", pts, ARRAY_SIZE(pts)));
	json_array_append_new(a, mount_entry("/dev/shm", "tmpfs", "shm", shm, ARRAY_SIZE(shm)));
	json_array_append_new(a,
			      mount_entry("/dev/mqueue", "mqueue", "mqueue", mq, ARRAY_SIZE(mq)));
	json_array_append_new(a, mount_entry("/sys", "sysfs", "sysfs", sys, ARRAY_SIZE(sys)));
	json_array_append_new(
	    a, mount_entry("/sys/fs/cgroup", "cgroup", "cgroup", cg, ARRAY_SIZE(cg)));
	return a;
}

static json_t *default_seccomp(void)
{
	return json_pack("{s:s, s:[s,s,s], s:[{s:o, s:s, s:i}]}", "defaultAction", "SCMP_ACT_ALLOW",
			 "architectures", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
			 "syscalls", "names",
			 str_array(denied_syscalls, ARRAY_SIZE(denied_syscalls)), "action",
			 "SCMP_ACT_ERRNO", "errnoRet", 1);
}

static int check_spec(const struct oci_spec *s, struct ciel_err *err)
{
	if (check_id(s->id, err) < 0)
		return -1;
	if (!s->dir || !*s->dir)
		return ciel_err_field(err, CIEL_EINVAL, "dir", "instance directory is required");
	if (!s->image || !*s->image)
		return ciel_err_field(err, CIEL_EINVAL, "image", "image directory is required");
	if (!s->argv || !s->argv[0] || !s->argv[0][0])
		return ciel_err_field(err, CIEL_EINVAL, "argv", "argv[0] is required");
	for (size_t i = 0; s->env && s->env[i]; i++)
		if (!strchr(s->env[i], '=') || s->env[i][0] == '=')
			return ciel_err_field(err, CIEL_EINVAL, "env", "env entries must be K=V");
	if (s->cwd && s->cwd[0] != '/')
		return ciel_err_field(err, CIEL_EINVAL, "cwd", "cwd must be absolute");
	if (s->hostname) {
		size_t n = strlen(s->hostname);

		if (n == 0 || n > 63)
			return ciel_err_field(err, CIEL_EINVAL, "hostname",
					      "hostname must be 1-63 characters");
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)s->hostname[i]) &&
			    !strchr("-.", s->hostname[i]))
				return ciel_err_field(err, CIEL_EINVAL, "hostname",
						      "hostname must be of [A-Za-z0-9.-]");
	}
	if (s->cpu_millis < 0 || s->memory_bytes < 0 || s->pids_max < 0)
		return ciel_err_field(err, CIEL_EINVAL, "resources", "limits must not be negative");
	if (s->cpu_millis > INT64_MAX / 100)
		return ciel_err_field(err, CIEL_EINVAL, "cpu_millis", "cpu limit too large");
	if (s->netns && s->netns[0] != '/')
		return ciel_err_field(err, CIEL_EINVAL, "netns", "netns must be an absolute path");
	return 0;
}

static json_t *build_process(const struct oci_spec *s)
{
	json_t *env = json_array(), *caps = str_array(default_caps, ARRAY_SIZE(default_caps));
	json_t *args = json_array();
	int has_path = 0;
	json_t *proc;

	for (size_t i = 0; s->argv[i]; i++)
		json_array_append_new(args, json_string(s->argv[i]));
	for (size_t i = 0; s->env && s->env[i]; i++) {
		has_path |= !strncmp(s->env[i], "PATH=", 5);
		json_array_append_new(env, json_string(s->env[i]));
	}
	if (!has_path)
		json_array_insert_new(env, 0, json_string(default_path));
	proc = json_pack("{s:b, s:{s:i, s:i}, s:o, s:o, s:s, "
			 "s:{s:O, s:O, s:O, s:[], s:[]}, "
			 "s:[{s:s, s:i, s:i}], s:b}",
			 "terminal", 0, "user", "uid", 0, "gid", 0, "args", args, "env", env, "cwd",
			 s->cwd ? s->cwd : "/", "capabilities", "bounding", caps, "effective", caps,
			 "permitted", caps, "ambient", "inheritable", "rlimits", "type",
			 "RLIMIT_NOFILE", "hard", 1024, "soft", 1024, "noNewPrivileges", 1);
	json_decref(caps); /* the three O took references of their own */
	return proc;
}

static json_t *build_resources(const struct oci_spec *s, int v2)
{
	json_t *r = json_pack("{s:[{s:b, s:s}], s:{s:I}}", "devices", "allow", 0, "access", "rwm",
			      "pids", "limit", (json_int_t)(s->pids_max ? s->pids_max : 1024));

	if (!r)
		return NULL;
	if (s->memory_bytes) {
		json_t *mem = json_pack("{s:I}", "limit", (json_int_t)s->memory_bytes);
		struct stat st;

		/* v1 sets swap through memsw, which exists only with swap accounting on */
		if (v2 || stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", &st) == 0)
			json_object_set_new(mem, "swap", json_integer(s->memory_bytes));
		json_object_set_new(r, "memory", mem);
	}
	/*
	 * No CPU quota here: `runc init` runs inside the container's cgroup
	 * until it execs the command, and a 0.1 CPU quota made that Go program
	 * (and so the start) several times slower. The shim writes the quota
	 * into the cgroup right after `start` and before it reports running.
	 */
	if (s->cpu_millis)
		json_object_set_new(r, "cpu", json_pack("{s:I}", "period", (json_int_t)100000));
	return r;
}

/* The config for spec s with the merged root at rootfs (absolute). New reference. */
static json_t *oci_config(const struct oci_runtime *rt, const struct oci_spec *s,
			  const char *rootfs, struct ciel_err *err)
{
	char cg[PATH_MAX];
	json_t *cfg, *proc, *ns, *net;

	if (check_spec(s, err) < 0)
		return NULL;
	proc = build_process(s);
	cgroup_path(rt, s->id, cg, sizeof(cg));
	net = json_pack("{s:s}", "type", "network");
	if (net && s->netns)
		json_object_set_new(net, "path", json_string(s->netns));
	ns = json_pack("[{s:s}, o, {s:s}, {s:s}, {s:s}]", "type", "pid", net, "type", "ipc", "type",
		       "uts", "type", "mount");
	cfg = json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:{s:o, s:s, s:o, s:o, s:o, s:o}}",
			"ociVersion", "1.0.2-dev", "process", proc, "root", "path", rootfs,
			"readonly", 0, "hostname", s->hostname ? s->hostname : s->id, "mounts",
			default_mounts(), "linux", "resources", build_resources(s, rt->cgroup_v2),
			"cgroupsPath", cg, "namespaces", ns, "seccomp", default_seccomp(),
			"maskedPaths", str_array(masked_paths, ARRAY_SIZE(masked_paths)),
			"readonlyPaths", str_array(readonly_paths, ARRAY_SIZE(readonly_paths)));
	if (!cfg)
		ciel_err_set(err, CIEL_ENOMEM, "build config.json");
	return cfg;
}

/* ---- prepare ---- */

/* Undo the octal escapes (\040 for a space) of a mountinfo field, in place. */
static void unescape_mnt(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static int is_mounted(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return -1;
	while (!found && getline(&line, &cap, f) > 0) {
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." */
		char *p = line;

		for (int i = 0; i < 4 && p; i++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		p[strcspn(p, " ")] = '\0';
		unescape_mnt(p);
		found = !strcmp(p, path);
	}
	free(line);
	fclose(f);
	return found;
}

static int mkdir_in(const char *dir, const char *name, char *out, size_t n, struct ciel_err *err)
{
	if (path_join(out, n, dir, name, err) < 0)
		return -1;
	if (mkdir(out, 0755) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", out);
	return 0;
}

int oci_prepare(const struct oci_runtime *rt, const struct oci_spec *s, struct ciel_err *err)
{
	char dir[PATH_MAX], image[PATH_MAX], upper[PATH_MAX], work[PATH_MAX], rootfs[PATH_MAX];
	char opts[4 * PATH_MAX], cfg_path[PATH_MAX];
	json_t *cfg;
	char *txt;
	int ret = -1, n;

	if (check_spec(s, err) < 0)
		return -1;
	if (mkdir_p(s->dir, 0700) < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "create %s", s->dir);
	/* runc wants an absolute root that is no symlink */
	if (!realpath(s->dir, dir))
		return ciel_err_sys(err, CIEL_EIO, errno, "resolve %s", s->dir);
	if (!realpath(s->image, image))
		return ciel_err_sys(err, CIEL_ENOTFOUND, errno, "image %s", s->image);
	/* overlayfs splits its options on ',' and lowerdir on ':' */
	if (strpbrk(dir, ",:\\") || strpbrk(image, ",:\\"))
		return ciel_err_set(err, CIEL_EINVAL,
				    "paths with , : or \\ cannot be overlay layers");
	if (mkdir_in(dir, "upper", upper, sizeof(upper), err) < 0 ||
	    mkdir_in(dir, "work", work, sizeof(work), err) < 0 ||
	    mkdir_in(dir, "rootfs", rootfs, sizeof(rootfs), err) < 0)
		return -1;

	n = is_mounted(rootfs);
	if (n < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "read /proc/self/mountinfo");
	if (n == 0) {
		snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", image, upper,
			 work);
		if (mount("overlay", rootfs, "overlay", 0, opts) < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "mount overlay on %s", rootfs);
	}

	cfg = oci_config(rt, s, rootfs, err);
	if (!cfg)
		return -1;
	txt = json_dumps(cfg, JSON_INDENT(2));
	if (!txt) {
		ciel_err_set(err, CIEL_ENOMEM, "encode config.json");
		goto out_cfg;
	}
	if (path_join(cfg_path, sizeof(cfg_path), dir, "config.json", err) < 0)
		goto out_txt;
	ret = oci_write_file(cfg_path, txt, strlen(txt), err);
out_txt:
	free(txt);
out_cfg:
	json_decref(cfg);
	return ret;
}

/* ---- shim tracking ---- */

static pthread_mutex_t kids_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t kids[256];

static void kid_add(pid_t pid)
{
	pthread_mutex_lock(&kids_lock);
	for (size_t i = 0; i < ARRAY_SIZE(kids); i++) {
		if (!kids[i]) {
			kids[i] = pid;
			break;
		}
	}
	pthread_mutex_unlock(&kids_lock);
}

/* Reap pid if it is a shim we started and has exited: 1 reaped (*ws set), 0 not. */
static int kid_reap(pid_t pid, int *ws)
{
	int ret = 0;

	pthread_mutex_lock(&kids_lock);
	for (size_t i = 0; i < ARRAY_SIZE(kids); i++) {
		int st = 0;
		pid_t r;

		if (!kids[i] || (pid > 0 && kids[i] != pid))
			continue;
		r = waitpid(kids[i], &st, WNOHANG);
		/* ECHILD: someone else (a SIGCHLD handler of the agent) reaped it */
		if (r == kids[i] || (r < 0 && errno == ECHILD)) {
			kids[i] = 0;
			if (ws)
				*ws = st;
			ret = 1;
		}
	}
	pthread_mutex_unlock(&kids_lock);
	return ret;
}

void oci_reap_shims(void)
{
	kid_reap(0, NULL);
}

/* ---- status ---- */

/* Is pid a live shim for id? A zombie or a recycled pid is not. */
static int shim_alive(pid_t pid, const char *id)
{
	char path[64], *s, *p, *end;
	size_t len;
	int ok = 0;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	s = read_small(path, 1024, NULL);
	if (!s)
		return 0;
	p = strrchr(s, ')'); /* the comm field may hold spaces and parentheses */
	if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X') {
		free(s);
		return 0;
	}
	free(s);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	s = read_small(path, 8192, &len);
	if (!s)
		return 0;
	/* argv: NAME shim --flag value ...; arguments are NUL-separated */
	p = s + strlen(s) + 1;
	end = s + len;
	if (p < end && !strcmp(p, "shim")) {
		for (; p < end; p += strlen(p) + 1)
			if (!strcmp(p, "--id") && p + 5 < end && !strcmp(p + 5, id))
				ok = 1;
	}
	free(s);
	return ok;
}

static pid_t shim_pid(const char *dir)
{
	char path[PATH_MAX];

	if (path_join(path, sizeof(path), dir, "shim.pid", NULL) < 0)
		return -1;
	return read_pid_file(path);
}

/* DIR/status.json, or NULL: *missing = 1 when there is none (not an error). */
static json_t *status_load(const char *dir, int *missing, struct ciel_err *err)
{
	char path[PATH_MAX];
	json_error_t je;
	json_t *st;

	*missing = 0;
	if (path_join(path, sizeof(path), dir, "status.json", err) < 0)
		return NULL;
	st = json_load_file(path, 0, &je);
	if (st && json_is_object(st) && json_is_string(json_object_get(st, "state")))
		return st;
	json_decref(st);
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		*missing = 1;
		return NULL;
	}
	ciel_err_set(err, CIEL_EIO, "read %s: %s", path, je.text);
	return NULL;
}

static const char *state_of(json_t *st)
{
	const char *s = json_string_value(json_object_get(st, "state"));

	return s ? s : "unknown";
}

json_t *oci_status(const struct oci_runtime *rt, const char *id, const char *dir,
		   struct ciel_err *err)
{
	json_t *st, *lost;
	int missing;

	(void)rt;
	if (check_id(id, err) < 0)
		return NULL;
	oci_reap_shims();
	st = status_load(dir, &missing, err);
	if (!st)
		return missing ? json_pack("{s:s}", "state", "unknown") : NULL;
	if (strcmp(state_of(st), "running") || shim_alive(shim_pid(dir), id))
		return st;
	/* the shim is gone; it may have written its last word on the way out */
	json_decref(st);
	st = status_load(dir, &missing, err);
	if (!st)
		return missing ? json_pack("{s:s}", "state", "unknown") : NULL;
	if (strcmp(state_of(st), "running"))
		return st;
	lost = json_pack("{s:s, s:s, s:O}", "state", "failed", "reason", "shim lost", "pid",
			 json_object_get(st, "pid") ? json_object_get(st, "pid") : json_null());
	json_decref(st);
	if (lost && oci_write_status(dir, lost, NULL) < 0)
		log_warn("oci: cannot record lost shim id=%s", id);
	log_warn("oci: shim lost id=%s", id);
	return lost;
}

/* ---- start ---- */

/* Wait (up to ms) until the shim for id at dir has gone. 1 gone, 0 still there. */
static int wait_shim_gone(const char *dir, const char *id, int ms)
{
	int64_t deadline = ts_mono_ms() + ms;
	pid_t pid = shim_pid(dir);

	while (shim_alive(pid, id)) {
		kid_reap(pid, NULL);
		if (ts_mono_ms() >= deadline)
			return 0;
		sleep_ms(POLL_STOP_MS);
	}
	kid_reap(pid, NULL);
	return 1;
}

/* 1 when st settles the start (0 or -1 in *ret), 0 when it does not yet. */
static int start_outcome(json_t *st, const char *id, pid_t *pid, int *ret, struct ciel_err *err)
{
	const char *state = state_of(st);

	/* "exited": it ran and is already done; that is a start too */
	if (!strcmp(state, "running") || !strcmp(state, "exited")) {
		if (pid)
			*pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
		*ret = 0;
		return 1;
	}
	if (!strcmp(state, "failed")) {
		const char *why = json_string_value(json_object_get(st, "reason"));

		*ret = ciel_err_set(err, CIEL_EUNAVAIL, "start %s: %s", id, why ? why : "failed");
		return 1;
	}
	return 0;
}

/* Fork the shim, in its own session with stdio on /dev/null. */
static pid_t spawn_shim(const char *self_exe, char *const argv[], struct ciel_err *err)
{
	int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	pid_t kid;

	if (null_fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "open /dev/null");
	kid = fork();
	if (kid == 0) {
		/* the agent's terminal and process group are not the shim's business */
		setsid();
		child_setup(null_fd, null_fd, null_fd);
		execv(self_exe, argv);
		_exit(127);
	}
	close(null_fd);
	if (kid < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "fork shim");
	kid_add(kid);
	return kid;
}

int oci_start(const struct oci_runtime *rt, const char *self_exe, const struct oci_spec *s,
	      int timeout_ms, pid_t *pid, struct ciel_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX], cg[PATH_MAX], quota[24];
	/* clang-format off */
	char *argv[] = {(char *)"ciel-agent", (char *)"shim", (char *)"--runtime-bin",
			(char *)rt->bin, (char *)"--root", (char *)rt->root, (char *)"--id",
			(char *)s->id, (char *)"--dir", dir, (char *)"--cgroup", cg,
			(char *)"--cpu-quota", quota, NULL};
	/* clang-format on */
	int64_t deadline = ts_mono_ms() + timeout_ms;
	int ws = 0, missing, ret = -1;

	/* µs per 100 ms period; the kernel refuses a quota under 1 ms */
	snprintf(quota, sizeof(quota), "%lld",
		 s->cpu_millis <= 0	      ? 0LL
		 : s->cpu_millis * 100 < 1000 ? 1000LL
					      : (long long)s->cpu_millis * 100);
	json_t *st;
	pid_t kid;

	if (check_id(s->id, err) < 0)
		return -1;
	if (!s->dir || !realpath(s->dir, dir))
		return ciel_err_sys(err, CIEL_ENOTFOUND, errno, "instance directory %s",
				    s->dir ? s->dir : "(null)");
	cgroup_path(rt, s->id, cg, sizeof(cg));
	oci_reap_shims();

	/* one shim per instance: a live one is running it, or finishing (runtime delete) */
	if (shim_alive(shim_pid(dir), s->id)) {
		int running;

		st = status_load(dir, &missing, NULL);
		running = st && !strcmp(state_of(st), "running");
		json_decref(st);
		if (running)
			return ciel_err_set(err, CIEL_EEXIST, "container %s is already running",
					    s->id);
		if (!wait_shim_gone(dir, s->id, timeout_ms))
			return ciel_err_set(err, CIEL_EUNAVAIL,
					    "the previous shim of %s is still there", s->id);
	}
	/* a status left by the last run would answer the poll below */
	if (path_join(path, sizeof(path), dir, "status.json", err) < 0)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return ciel_err_sys(err, CIEL_EIO, errno, "remove %s", path);
	kid = spawn_shim(self_exe, argv, err);
	if (kid < 0)
		return -1;

	for (int gone = 0;;) {
		st = status_load(dir, &missing, NULL);
		if (st && start_outcome(st, s->id, pid, &ret, err)) {
			json_decref(st);
			return ret;
		}
		json_decref(st);
		if (gone || kid_reap(kid, &ws)) {
			/* read once more: it may have written its status just before exiting */
			if (!gone++)
				continue;
			return ciel_err_set(err, CIEL_EUNAVAIL,
					    "start %s: shim exited with %d before a status", s->id,
					    wait_code(ws));
		}
		if (ts_mono_ms() >= deadline)
			return ciel_err_set(err, CIEL_EUNAVAIL, "start %s: not running after %d ms",
					    s->id, timeout_ms);
		sleep_ms(POLL_START_MS);
	}
}

/* ---- stop ---- */

/* Wait up to ms for dir's status to leave "running" (or the shim to be lost). */
static int wait_not_running(const struct oci_runtime *rt, const char *id, const char *dir, int ms)
{
	int64_t deadline = ts_mono_ms() + ms;

	for (;;) {
		json_t *st = oci_status(rt, id, dir, NULL);
		int running = st && !strcmp(state_of(st), "running");

		json_decref(st);
		if (!running)
			return 1;
		if (ts_mono_ms() >= deadline)
			return 0;
		sleep_ms(POLL_STOP_MS);
	}
}

/* Is pid the init of id? Checked through its cgroup, so a recycled pid is spared. */
static int pid_in_container(const struct oci_runtime *rt, const char *id, pid_t pid)
{
	char path[64], cg[PATH_MAX], *s;
	int ok;

	if (pid <= 1)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	s = read_small(path, 16384, NULL);
	if (!s)
		return 0;
	cgroup_path(rt, id, cg, sizeof(cg));
	ok = strstr(s, cg) != NULL;
	free(s);
	return ok;
}

int oci_stop(const struct oci_runtime *rt, const char *id, const char *dir, int grace_ms,
	     struct ciel_err *err)
{
	char out[1024];
	json_t *st;
	pid_t init = 0;
	int running;

	if (check_id(id, err) < 0)
		return -1;
	if (grace_ms < 0)
		grace_ms = 0;
	oci_reap_shims();
	/* a start in progress has no status yet: let it get to one first */
	if (shim_alive(shim_pid(dir), id)) {
		int64_t deadline = ts_mono_ms() + grace_ms + KILL_WAIT_MS;
		int missing;

		while ((st = status_load(dir, &missing, NULL)) == NULL && missing &&
		       shim_alive(shim_pid(dir), id) && ts_mono_ms() < deadline)
			sleep_ms(POLL_STOP_MS);
		json_decref(st);
	}
	st = oci_status(rt, id, dir, err);
	if (!st)
		return -1;
	running = !strcmp(state_of(st), "running");
	init = (pid_t)json_integer_value(json_object_get(st, "pid"));
	json_decref(st);

	if (running) {
		if (grace_ms > 0) {
			runtime_cmd(rt, "kill", id, "TERM", out, sizeof(out), NULL);
			if (wait_not_running(rt, id, dir, grace_ms))
				goto out_gone;
		}
		if (runtime_cmd(rt, "kill", id, "KILL", out, sizeof(out), NULL) != 0 &&
		    pid_in_container(rt, id, init))
			kill(init, SIGKILL);
		if (!wait_not_running(rt, id, dir, KILL_WAIT_MS))
			return ciel_err_set(err, CIEL_EUNAVAIL,
					    "stop %s: still running after SIGKILL", id);
	}
out_gone:
	/* no shim left to clean up after the runtime (lost shim, failed start): do it here */
	if (!shim_alive(shim_pid(dir), id) && runtime_knows(rt, id)) {
		char cg[PATH_MAX];

		if (runtime_cmd(rt, "delete", "--force", id, out, sizeof(out), err) < 0)
			return -1;
		cgroup_path(rt, id, cg, sizeof(cg));
		oci_cgroup_remove(cg);
	}
	return 0;
}

/* ---- remove ---- */

/*
 * One pass over the open directory fd: unlink every non-directory and stop
 * at the first subdirectory (*sub, malloc'd). 0 when none is left, -1 on
 * error, including a subdirectory on another filesystem (a mount).
 */
static int rm_scan(int fd, dev_t dev, char **sub, const char *path, struct ciel_err *err)
{
	DIR *d = fdopendir(dup(fd));
	struct dirent *e;
	struct stat st;
	int ret = 0;

	*sub = NULL;
	if (!d)
		return ciel_err_sys(err, CIEL_EIO, errno, "read dir under %s", path);
	rewinddir(d); /* the dup shares the offset of an earlier pass */
	while (!*sub && ret == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (!S_ISDIR(st.st_mode)) {
			if (unlinkat(fd, e->d_name, 0) < 0 && errno != ENOENT)
				ret = ciel_err_sys(err, CIEL_EIO, errno, "unlink under %s", path);
		} else if (st.st_dev != dev) {
			ret = ciel_err_set(err, CIEL_EIO, "%s holds a mount (%s): not removed",
					   path, e->d_name);
		} else if (!(*sub = strdup(e->d_name))) {
			ret = ciel_err_set(err, CIEL_ENOMEM, "remove %s", path);
		}
	}
	closedir(d);
	return ret < 0 ? -1 : *sub ? 1 : 0;
}

/* Replace fd with openat(fd, name) (a directory, no symlink followed). */
static int rm_step(int *fd, const char *name, const char *path, struct ciel_err *err)
{
	int nfd = openat(*fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (nfd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "open %s under %s", name, path);
	close(*fd);
	*fd = nfd;
	return 0;
}

/*
 * rm -rf path without following symlinks or leaving path's filesystem (so
 * an overlay still mounted below is refused, never emptied). Holds two fds
 * at most whatever the depth: the way back up is "..", and the names on the
 * way down are kept in memory.
 */
static int rm_tree(const char *path, struct ciel_err *err)
{
	char parent[PATH_MAX], *slash, *sub, **names = NULL;
	size_t depth = 0, cap = 16;
	struct stat st;
	int cur, ret = -1;

	if (strlen(path) >= sizeof(parent))
		return ciel_err_set(err, CIEL_EINVAL, "path too long");
	memcpy(parent, path, strlen(path) + 1);
	slash = strrchr(parent, '/');
	if (!slash || !slash[1] || !strcmp(slash + 1, "..") || !strcmp(slash + 1, "."))
		return ciel_err_set(err, CIEL_EINVAL, "refusing to remove %s", path);
	*slash = '\0';
	cur = open(slash == parent ? "/" : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return errno == ENOENT ? 0 : ciel_err_sys(err, CIEL_EIO, errno, "open %s", parent);
	if (fstatat(cur, slash + 1, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = errno == ENOENT ? 0 : ciel_err_sys(err, CIEL_EIO, errno, "stat %s", path);
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		ret = unlinkat(cur, slash + 1, 0) < 0 && errno != ENOENT
			  ? ciel_err_sys(err, CIEL_EIO, errno, "unlink %s", path)
			  : 0;
		goto out;
	}
	names = malloc(sizeof(*names) * cap);
	if (!names || !(names[0] = strdup(slash + 1))) {
		ciel_err_set(err, CIEL_ENOMEM, "remove %s", path);
		goto out;
	}
	depth = 1;
	/* cur is the parent of names[depth - 1]: go in, empty it, come back up, rmdir it */
	while (depth > 0) {
		int r;

		if (rm_step(&cur, names[depth - 1], path, err) < 0)
			goto out;
		r = rm_scan(cur, st.st_dev, &sub, path, err);
		if (r < 0)
			goto out;
		if (r > 0) {
			if (depth == cap) {
				char **nn = cap < RM_MAX_DEPTH
						? realloc(names, sizeof(*names) * cap * 2)
						: NULL;

				if (!nn) {
					free(sub);
					ciel_err_set(err, CIEL_ENOMEM, "remove %s: tree too deep",
						     path);
					goto out;
				}
				names = nn;
				cap *= 2;
			}
			names[depth++] = sub; /* cur is its parent: the next round goes in */
			continue;
		}
		if (rm_step(&cur, "..", path, err) < 0)
			goto out;
		if (unlinkat(cur, names[depth - 1], AT_REMOVEDIR) < 0 && errno != ENOENT) {
			ciel_err_sys(err, CIEL_EIO, errno, "rmdir %s under %s", names[depth - 1],
				     path);
			goto out;
		}
		free(names[--depth]);
		/* cur is now names[depth - 1] itself; its parent is where the loop starts */
		if (depth > 0 && rm_step(&cur, "..", path, err) < 0)
			goto out;
	}
	ret = 0;
out:
	while (depth > 0)
		free(names[--depth]);
	free(names);
	close(cur);
	return ret;
}

static int unmount_all(const char *path, struct ciel_err *err)
{
	for (int i = 0; i < 16; i++) {
		int m = is_mounted(path);

		if (m < 0)
			return ciel_err_sys(err, CIEL_EIO, errno, "read /proc/self/mountinfo");
		if (m == 0)
			return 0;
		if (umount2(path, 0) < 0) {
			/* busy (a process still inside): detach, the kernel frees it later */
			if (errno == EBUSY && umount2(path, MNT_DETACH) == 0)
				continue;
			if (errno != EINVAL && errno != ENOENT)
				return ciel_err_sys(err, CIEL_EIO, errno, "unmount %s", path);
		}
	}
	return ciel_err_set(err, CIEL_EIO, "%s is still mounted", path);
}

int oci_remove(const struct oci_runtime *rt, const char *id, const char *dir, struct ciel_err *err)
{
	char abs[PATH_MAX], rootfs[PATH_MAX], cg[PATH_MAX], out[1024];
	struct ciel_err stop_err = {0};
	pid_t spid;

	if (check_id(id, err) < 0)
		return -1;
	if (!dir || !*dir)
		return ciel_err_field(err, CIEL_EINVAL, "dir", "instance directory is required");
	if (!realpath(dir, abs)) {
		if (errno != ENOENT)
			return ciel_err_sys(err, CIEL_EIO, errno, "resolve %s", dir);
		abs[0] = '\0'; /* already gone: still sweep the runtime and the cgroup */
	}
	if (abs[0] && oci_stop(rt, id, abs, 0, &stop_err) < 0)
		log_warn("oci: remove id=%s: stop: %s", id, stop_err.msg);
	/* a shim that outlived stop would write into DIR as we delete it */
	spid = abs[0] ? shim_pid(abs) : -1;
	if (spid > 0 && !wait_shim_gone(abs, id, KILL_WAIT_MS)) {
		if (shim_alive(spid, id))
			kill(spid, SIGKILL);
		wait_shim_gone(abs, id, 1000);
	}
	if (runtime_knows(rt, id)) {
		int code = runtime_cmd(rt, "delete", "--force", id, out, sizeof(out), err);

		if (code < 0)
			return -1;
		if (code != 0 && runtime_knows(rt, id)) {
			char why[256];

			oci_first_line(out, why, sizeof(why));
			return ciel_err_set(err, CIEL_EIO, "delete %s: %s", id, why);
		}
	}
	cgroup_path(rt, id, cg, sizeof(cg));
	oci_cgroup_remove(cg);
	if (!abs[0])
		return 0;
	if (path_join(rootfs, sizeof(rootfs), abs, "rootfs", err) < 0 ||
	    unmount_all(rootfs, err) < 0)
		return -1;
	if (rm_tree(abs, err) < 0) {
		ciel_err_prefix(err, "remove %s: ", id);
		return -1;
	}
	return 0;
}

/* ---- list ---- */

void oci_ids_free(char **ids)
{
	for (size_t i = 0; ids && ids[i]; i++)
		free(ids[i]);
	free(ids);
}

/* Both runc and crun keep one directory per container under --root. */
int oci_list(const struct oci_runtime *rt, char ***ids, struct ciel_err *err)
{
	size_t n = 0, cap = 8;
	char **v = calloc(cap, sizeof(*v));
	struct dirent *e;
	DIR *d;

	*ids = NULL;
	if (!v)
		return ciel_err_set(err, CIEL_ENOMEM, "list containers");
	d = opendir(rt->root);
	if (!d) {
		if (errno == ENOENT) {
			*ids = v;
			return 0;
		}
		free(v);
		return ciel_err_sys(err, CIEL_EIO, errno, "open %s", rt->root);
	}
	while ((e = readdir(d))) {
		if (check_id(e->d_name, NULL) < 0 || !runtime_knows(rt, e->d_name))
			continue;
		if (n + 1 == cap) {
			char **nv = realloc(v, sizeof(*v) * cap * 2);

			if (!nv)
				goto out_nomem;
			v = nv;
			cap *= 2;
		}
		v[n] = strdup(e->d_name);
		if (!v[n])
			goto out_nomem;
		v[++n] = NULL;
	}
	closedir(d);
	*ids = v;
	return 0;
out_nomem:
	closedir(d);
	oci_ids_free(v);
	return ciel_err_set(err, CIEL_ENOMEM, "list containers");
}
