/*
 * oci: real containers on the host's runtime (runc here), from a busybox
 * rootfs built by hand. Needs root and runc; prints SKIP and passes
 * otherwise. The module is included so the shim runs with a 4 KiB log
 * limit (rotation is seen without writing megabytes) and so the test can
 * reach rm_tree and friends.
 *
 * This binary is also the shim: oci_start execs /proc/self/exe "shim ...".
 * `test_oci bench [N]` times oci_start against a raw `runc run -d` instead.
 *
 * Everything made lives under one mkdtemp dir, the runtime root inside it,
 * and cgroups under ciel/test-<pid>; the group teardown removes them all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#define OCI_SHIM_LOG_MAX 4096
#include "oci/oci.c"
#include "oci/shim.c"

#define START_MS 10000
#define EXIT_MS 20000

static struct oci_runtime rt;
static char base[64] = "/tmp/ciel-oci-XXXXXX";
static char image[PATH_MAX];
static char self_exe[PATH_MAX];
static char node[32];
static int ciel_cg_existed; /* /sys/fs/cgroup/memory/ciel was there before us */

static const char *const applets[] = {"sh",    "cat",	"grep", "sleep", "echo", "unshare",
				      "mount", "touch", "true", "false", "ls",	 "dd",
				      "head",  "seq",	"wc",	"id",	 "env"};

/* ---- fixtures ---- */

/* snprintf for paths: a truncated one is a test bug, not a case to handle */
static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(out, n, fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= n)
		BUG("path too long: %s", out);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out, ret = -1;
	ssize_t r;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (out < 0)
		goto out_in;
	while ((r = read(in, buf, sizeof(buf))) > 0)
		if (write_all(out, buf, (size_t)r) < 0)
			goto out_out;
	ret = r < 0 ? -1 : 0;
out_out:
	close(out);
out_in:
	close(in);
	return ret;
}

static int make_image(void)
{
	static const char *const dirs[] = {"bin", "tmp", "mnt", "proc", "dev", "sys", "etc"};
	char path[PATH_MAX];

	pathf(image, sizeof(image), "%s/image", base);
	if (mkdir(image, 0755) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		pathf(path, sizeof(path), "%s/%s", image, dirs[i]);
		if (mkdir(path, 0755) < 0)
			return -1;
	}
	pathf(path, sizeof(path), "%s/tmp", image);
	chmod(path, 01777);
	pathf(path, sizeof(path), "%s/bin/busybox", image);
	if (copy_file("/bin/busybox", path, 0755) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(applets); i++) {
		pathf(path, sizeof(path), "%s/bin/%s", image, applets[i]);
		if (symlink("busybox", path) < 0)
			return -1;
	}
	return 0;
}

static void spec_init(struct oci_spec *s, char *dir, size_t n, const char *id, char *const *argv)
{
	memset(s, 0, sizeof(*s));
	pathf(dir, n, "%s/%s", base, id);
	s->id = id;
	s->dir = dir;
	s->image = image;
	s->argv = argv;
}

/* Poll the status until state is want (or not "running" when want is NULL). */
static json_t *wait_state(const char *id, const char *dir, const char *want, int ms)
{
	int64_t deadline = ts_mono_ms() + ms;

	for (;;) {
		struct ciel_err err = {0};
		json_t *st = oci_status(&rt, id, dir, &err);
		const char *s = st ? state_of(st) : "error";

		if (want ? !strcmp(s, want) : strcmp(s, "running") && strcmp(s, "unknown"))
			return st;
		if (ts_mono_ms() >= deadline) {
			print_error("id=%s state=%s want=%s\n", id, s, want ? want : "!running");
			return st;
		}
		json_decref(st);
		sleep_ms(10);
	}
}

/* The whole retained log as one string (caller frees); *first and *end set. */
static char *log_all(const char *dir, int64_t *first, int64_t *end)
{
	struct ciel_err err = {0};
	size_t total = 0, len;
	int64_t off = 0, next, f;
	char *all = NULL, *chunk;

	for (;;) {
		assert_int_equal(oci_log_read(dir, off, 1000, &chunk, &len, &next, &f, &err), 0);
		if (off == 0 && first)
			*first = f;
		if (len == 0) {
			free(chunk);
			break;
		}
		assert_true(next > off);
		all = realloc(all, total + len + 1);
		assert_non_null(all);
		memcpy(all + total, chunk, len);
		total += len;
		all[total] = '\0';
		free(chunk);
		off = next;
	}
	if (end)
		*end = off;
	return all ? all : strdup("");
}

/* prepare + start + wait for the end; returns the final status. */
static json_t *run_to_exit(struct oci_spec *s)
{
	struct ciel_err err = {0};
	pid_t pid = 0;

	if (oci_prepare(&rt, s, &err) < 0)
		fail_msg("prepare %s: %s", s->id, err.msg);
	if (oci_start(&rt, self_exe, s, START_MS, &pid, &err) < 0)
		fail_msg("start %s: %s", s->id, err.msg);
	assert_true(pid > 1);
	return wait_state(s->id, s->dir, "exited", EXIT_MS);
}

static void remove_ok(const char *id, const char *dir)
{
	struct ciel_err err = {0};

	if (oci_remove(&rt, id, dir, &err) < 0)
		fail_msg("remove %s: %s", id, err.msg);
}

static int64_t jint(json_t *st, const char *k)
{
	return json_integer_value(json_object_get(st, k));
}

/* ---- tests ---- */

static void test_detect(void **state)
{
	struct oci_runtime r2;
	struct ciel_err err = {0};

	(void)state;
	assert_int_equal(rt.kind, OCI_RUNC); /* v1 hybrid host: auto must not pick crun */
	assert_int_equal(rt.cgroup_v2, 0);
	assert_true(rt.bin[0] == '/');
	assert_non_null(strstr(rt.cgroup_parent, "ciel/test-"));
	assert_int_equal(oci_detect(&r2, "crun", rt.root, node, &err), -1);
	assert_int_equal(err.code, CIEL_EUNAVAIL);
	assert_int_equal(oci_detect(&r2, "runc", rt.root, "../x", &err), -1);
	assert_int_equal(err.code, CIEL_EINVAL);
	assert_int_equal(oci_detect(&r2, "docker", rt.root, node, &err), -1);
}

/* The config a container gets, without running one. */
static void test_config(void **state)
{
	char *argv[] = {(char *)"sh", NULL};
	char *env[] = {(char *)"A=1", NULL};
	struct oci_spec s = {.id = "cfg",
			     .dir = "/x",
			     .image = "/y",
			     .argv = argv,
			     .env = env,
			     .cpu_millis = 500,
			     .memory_bytes = 64 << 20,
			     .netns = "/run/netns/n1"};
	struct ciel_err err = {0};
	json_t *cfg, *res, *caps, *ns, *sys;
	size_t i;
	int found = 0;

	(void)state;
	cfg = oci_config(&rt, &s, "/x/rootfs", &err);
	assert_non_null(cfg);
	assert_false(json_is_true(json_object_get(json_object_get(cfg, "process"), "terminal")));
	assert_true(
	    json_is_true(json_object_get(json_object_get(cfg, "process"), "noNewPrivileges")));
	assert_string_equal(json_string_value(json_array_get(
				json_object_get(json_object_get(cfg, "process"), "env"), 0)),
			    default_path);
	caps = json_object_get(json_object_get(cfg, "process"), "capabilities");
	assert_int_equal(json_array_size(json_object_get(caps, "effective")), 10);
	assert_int_equal(json_array_size(json_object_get(caps, "ambient")), 0);
	json_array_foreach(json_object_get(caps, "bounding"), i, sys)
	    assert_null(strstr(json_string_value(sys), "SYS_ADMIN"));
	res = json_object_get(json_object_get(cfg, "linux"), "resources");
	assert_int_equal(jint(json_object_get(res, "memory"), "limit"), 64 << 20);
	assert_int_equal(jint(json_object_get(res, "memory"), "swap"), 64 << 20);
	/* the quota is the shim's to write once started (see oci.c); test_limits reads it */
	assert_int_equal(jint(json_object_get(res, "cpu"), "quota"), 0);
	assert_int_equal(jint(json_object_get(res, "cpu"), "period"), 100000);
	assert_int_equal(jint(json_object_get(res, "pids"), "limit"), 1024);
	assert_non_null(
	    strstr(json_string_value(json_object_get(json_object_get(cfg, "linux"), "cgroupsPath")),
		   "/ciel/test-"));
	ns = json_object_get(json_object_get(cfg, "linux"), "namespaces");
	json_array_foreach(
	    ns, i, sys) if (!strcmp(json_string_value(json_object_get(sys, "type")), "network"))
	    found = !strcmp(json_string_value(json_object_get(sys, "path")), "/run/netns/n1");
	assert_true(found);
	sys = json_object_get(json_object_get(cfg, "linux"), "seccomp");
	assert_string_equal(json_string_value(json_object_get(sys, "defaultAction")),
			    "SCMP_ACT_ALLOW");
	assert_int_equal(json_array_size(json_object_get(
			     json_array_get(json_object_get(sys, "syscalls"), 0), "names")),
			 ARRAY_SIZE(denied_syscalls));
	json_decref(cfg);

	s.id = "Bad_Id";
	assert_null(oci_config(&rt, &s, "/x/rootfs", &err));
	assert_string_equal(err.field, "id");
}

static void test_exit_code_and_log(void **state)
{
	char dir[PATH_MAX];
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)"echo hello; echo err >&2; exit 3",
			NULL};
	struct oci_spec s;
	json_t *st;
	char *log;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "exit3", argv);
	st = run_to_exit(&s);
	assert_string_equal(state_of(st), "exited");
	assert_int_equal(jint(st, "exit_code"), 3);
	assert_false(json_is_true(json_object_get(st, "oom")));
	json_decref(st);
	log = log_all(dir, NULL, NULL);
	assert_non_null(strstr(log, "hello\n"));
	assert_non_null(strstr(log, "err\n"));
	free(log);
	remove_ok(s.id, dir);
}

static void test_oom(void **state)
{
	char dir[PATH_MAX];
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)"x=a; while true; do x=$x$x; done",
			NULL};
	struct oci_spec s;
	json_t *st;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "oom", argv);
	s.memory_bytes = 16 << 20;
	st = run_to_exit(&s);
	assert_string_equal(state_of(st), "exited");
	assert_true(json_is_true(json_object_get(st, "oom")));
	assert_int_equal(jint(st, "exit_code"), 137);
	json_decref(st);
	remove_ok(s.id, dir);
}

static void test_start_failure(void **state)
{
	char dir[PATH_MAX];
	char *argv[] = {(char *)"/no/such/program", NULL};
	struct ciel_err err = {0};
	struct oci_spec s;
	json_t *st;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "nostart", argv);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	assert_int_equal(oci_start(&rt, self_exe, &s, START_MS, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "/no/such/program"));
	st = oci_status(&rt, s.id, dir, &err);
	assert_string_equal(state_of(st), "failed");
	json_decref(st);
	assert_false(runtime_knows(&rt, s.id));
	remove_ok(s.id, dir);
}

static void test_stop(void **state)
{
	char dir[PATH_MAX];
	char *argv[] = {(char *)"sleep", (char *)"1000", NULL};
	struct ciel_err err = {0};
	struct oci_spec s;
	char **ids;
	int64_t t0;
	json_t *st;
	pid_t pid;
	int listed = 0;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "sleeper", argv);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	if (oci_start(&rt, self_exe, &s, START_MS, &pid, &err) < 0)
		fail_msg("start: %s", err.msg);
	st = oci_status(&rt, s.id, dir, &err);
	assert_string_equal(state_of(st), "running");
	assert_int_equal(jint(st, "pid"), pid);
	json_decref(st);
	/* a second start of a running instance is refused */
	assert_int_equal(oci_start(&rt, self_exe, &s, START_MS, NULL, &err), -1);
	assert_int_equal(err.code, CIEL_EEXIST);
	assert_int_equal(oci_list(&rt, &ids, &err), 0);
	for (size_t i = 0; ids[i]; i++)
		listed |= !strcmp(ids[i], s.id);
	oci_ids_free(ids);
	assert_true(listed);

	/* sleep as PID 1 ignores TERM: KILL after the grace */
	t0 = ts_mono_ms();
	assert_int_equal(oci_stop(&rt, s.id, dir, 500, &err), 0);
	assert_true(ts_mono_ms() - t0 < 500 + 5000);
	st = oci_status(&rt, s.id, dir, &err);
	assert_string_equal(state_of(st), "exited");
	assert_true(jint(st, "exit_code") == 137 || jint(st, "exit_code") == 143);
	json_decref(st);
	assert_false(runtime_knows(&rt, s.id));
	/* stopping what is stopped succeeds */
	assert_int_equal(oci_stop(&rt, s.id, dir, 500, &err), 0);
	remove_ok(s.id, dir);
}

static void test_confinement(void **state)
{
	char dir[PATH_MAX], secret[64], script[512];
	char *argv[] = {(char *)"sh", (char *)"-c", script, NULL};
	struct oci_spec s;
	json_t *st;
	char *log;
	int fd;

	(void)state;
	pathf(secret, sizeof(secret), "/tmp/ciel-host-secret-XXXXXX");
	fd = mkstemp(secret);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, "topsecret\n", 10), 0);
	close(fd);
	/* capabilities, then seccomp (unshare -U needs no capability, only the filter stops it),
	 * mount, and last the host file, whose exit code is the container's */
	pathf(script, sizeof(script),
	      "grep CapEff /proc/self/status; unshare -U true; echo unshare=$?; "
	      "mount -t tmpfs none /mnt; echo mount=$?; cat %s",
	      secret);
	spec_init(&s, dir, sizeof(dir), "confined", argv);
	st = run_to_exit(&s);
	unlink(secret);
	assert_string_equal(state_of(st), "exited");
	assert_int_not_equal(jint(st, "exit_code"), 0);
	json_decref(st);
	log = log_all(dir, NULL, NULL);
	/* CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT
	 */
	if (!strstr(log, "CapEff:\t00000000000405fb\n"))
		fail_msg("capabilities: %s", log);
	assert_null(strstr(log, "000001ffffffffff"));
	assert_non_null(strstr(log, "unshare=1\n"));
	assert_null(strstr(log, "mount=0\n"));
	assert_null(strstr(log, "topsecret"));
	free(log);
	remove_ok(s.id, dir);
}

/* stop, then start again on the same dir: the writable layer and the log carry over */
static void test_restart_keeps_layer(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX];
	char *argv1[] = {(char *)"sh", (char *)"-c",
			 (char *)"echo kept > /data; echo first; exec sleep 1000", NULL};
	char *argv2[] = {(char *)"sh", (char *)"-c", (char *)"cat /data", NULL};
	struct ciel_err err = {0};
	struct oci_spec s;
	struct stat sb;
	json_t *st;
	char *log;
	pid_t pid;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "restart", argv1);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	if (oci_start(&rt, self_exe, &s, START_MS, &pid, &err) < 0)
		fail_msg("start: %s", err.msg);
	json_decref(wait_state(s.id, dir, "running", START_MS));
	/* the first line shows the file is written before we stop */
	for (int i = 0; i < 500; i++) {
		log = log_all(dir, NULL, NULL);
		int ok = strstr(log, "first\n") != NULL;

		free(log);
		if (ok)
			break;
		sleep_ms(10);
	}
	assert_int_equal(oci_stop(&rt, s.id, dir, 0, &err), 0);

	s.argv = argv2;
	st = run_to_exit(&s);
	assert_int_equal(jint(st, "exit_code"), 0);
	json_decref(st);
	log = log_all(dir, NULL, NULL);
	assert_non_null(strstr(log, "first\nkept\n"));
	free(log);
	/* the lower image is untouched */
	pathf(path, sizeof(path), "%s/data", image);
	assert_int_equal(lstat(path, &sb), -1);
	remove_ok(s.id, dir);
}

static int64_t lines_bytes(int from, int to)
{
	char line[32];
	int64_t n = 0;

	for (int i = from; i <= to; i++)
		n += snprintf(line, sizeof(line), "line%d\n", i);
	return n;
}

/* 2000 numbered lines through a 4 KiB log: offsets run on across rotations */
static void test_log_rotation(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX];
	char *argv[] = {(char *)"sh", (char *)"-c",
			(char *)"i=1; while [ $i -le 2000 ]; do echo line$i; i=$((i+1)); done",
			NULL};
	int64_t first, end, total = lines_bytes(1, 2000), off;
	struct ciel_err err = {0};
	struct oci_spec s;
	struct stat sb;
	char *log, *chunk;
	size_t len;
	json_t *st;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "chatty", argv);
	st = run_to_exit(&s);
	assert_int_equal(jint(st, "exit_code"), 0);
	json_decref(st);
	pathf(path, sizeof(path), "%s/log", dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(sb.st_size <= OCI_SHIM_LOG_MAX);
	pathf(path, sizeof(path), "%s/log.1", dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, OCI_SHIM_LOG_MAX);

	log = log_all(dir, &first, &end);
	assert_int_equal(end, total);
	assert_true(first > 0);
	assert_int_equal(end - first, (int64_t)strlen(log));
	assert_true(strlen(log) > OCI_SHIM_LOG_MAX);
	assert_int_equal(strcmp(log + strlen(log) - 9, "line2000\n"), 0);
	free(log);
	/* an offset rotated away starts at the oldest kept byte; one past the end is empty */
	assert_int_equal(oci_log_read(dir, 0, 10, &chunk, &len, &off, &first, &err), 0);
	assert_int_equal(len, 10);
	assert_int_equal(off, first + 10);
	free(chunk);
	assert_int_equal(oci_log_read(dir, end + 100, 10, &chunk, &len, &off, &first, &err), 0);
	assert_int_equal(len, 0);
	free(chunk);

	/* a second run continues the stream */
	st = run_to_exit(&s);
	json_decref(st);
	log = log_all(dir, &first, &end);
	assert_int_equal(end, 2 * total);
	assert_int_equal(strcmp(log + strlen(log) - 9, "line2000\n"), 0);
	free(log);
	remove_ok(s.id, dir);
}

/*
 * Reading while the shim writes and rotates: every read either continues
 * exactly where the last ended or, when the writer got a log ahead, jumps
 * to the oldest kept byte (first > offset). Contiguous stretches must hold
 * consecutive lines: no byte lost, doubled or misplaced inside them.
 */
static void test_log_live(void **state)
{
	char dir[PATH_MAX], part[64];
	char *argv[] = {(char *)"sh", (char *)"-c",
			(char *)"i=0; while true; do echo line$i; i=$((i+1)); done", NULL};
	struct ciel_err err = {0};
	int64_t off = 0, next, first, deadline;
	long prev = -1, checked = 0;
	char bad[96] = "";
	int gaps = 0, skip = 0;
	size_t plen = 0, len;
	struct oci_spec s;
	char *chunk;
	pid_t pid;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "live", argv);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	if (oci_start(&rt, self_exe, &s, START_MS, &pid, &err) < 0)
		fail_msg("start: %s", err.msg);
	deadline = ts_mono_ms() + 1500;
	while (ts_mono_ms() < deadline) {
		assert_int_equal(oci_log_read(dir, off, 700, &chunk, &len, &next, &first, &err), 0);
		if (len && first > off) { /* rotated past us: resync at the next line */
			gaps++;
			skip = 1;
			plen = 0;
			prev = -1;
		}
		assert_true(next >= off);
		for (size_t i = 0; i < len; i++) {
			char c = chunk[i];

			if (skip) {
				skip = c != '\n';
				continue;
			}
			if (c != '\n') {
				assert_true(plen < sizeof(part) - 1);
				part[plen++] = c;
				continue;
			}
			part[plen] = '\0';
			plen = 0;
			/* reported after free(chunk): a failure must not leak it */
			if (!bad[0] && (strncmp(part, "line", 4) ||
					(prev >= 0 && strtol(part + 4, NULL, 10) != prev + 1)))
				pathf(bad, sizeof(bad), "'%s' after line%ld", part, prev);
			prev = strtol(part + 4, NULL, 10);
			checked++;
		}
		free(chunk);
		if (bad[0])
			break;
		off = next;
	}
	if (bad[0]) {
		oci_stop(&rt, s.id, dir, 0, &err);
		fail_msg("at offset %lld: %s", (long long)off, bad);
	}
	assert_int_equal(oci_stop(&rt, s.id, dir, 0, &err), 0);
	print_message("live log: %ld lines checked, %d gaps, end offset %lld\n", checked, gaps,
		      (long long)off);
	assert_true(checked > 100);
	remove_ok(s.id, dir);
}

/*
 * A new agent adopts a running container: the process that started it goes
 * away (the shim is reparented), and this one still sees and stops it.
 */
static void test_adopt(void **state)
{
	char dir[PATH_MAX];
	char *argv[] = {(char *)"sleep", (char *)"1000", NULL};
	struct ciel_err err = {0};
	struct oci_spec s;
	json_t *st;
	pid_t agent, spid;
	int ws;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "adopted", argv);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	/* the orphaned shim comes to us, so it can be reaped at the end */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	agent = fork();
	assert_true(agent >= 0);
	if (agent == 0)
		_exit(oci_start(&rt, self_exe, &s, START_MS, NULL, NULL) < 0 ? 1 : 0);
	assert_int_equal(waitpid(agent, &ws, 0), agent);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	spid = shim_pid(dir);
	assert_true(shim_alive(spid, s.id));
	st = oci_status(&rt, s.id, dir, &err);
	assert_string_equal(state_of(st), "running");
	json_decref(st);
	assert_int_equal(oci_stop(&rt, s.id, dir, 0, &err), 0);
	st = oci_status(&rt, s.id, dir, &err);
	assert_string_equal(state_of(st), "exited");
	assert_int_equal(jint(st, "exit_code"), 137);
	json_decref(st);
	waitpid(spid, &ws, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	remove_ok(s.id, dir);
}

/* A shim killed under a running container: status says so, remove still cleans. */
static void test_shim_lost(void **state)
{
	char dir[PATH_MAX];
	char *argv[] = {(char *)"sleep", (char *)"1000", NULL};
	struct ciel_err err = {0};
	struct oci_spec s;
	json_t *st;
	pid_t pid, spid;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "lost", argv);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	if (oci_start(&rt, self_exe, &s, START_MS, &pid, &err) < 0)
		fail_msg("start: %s", err.msg);
	spid = shim_pid(dir);
	assert_true(shim_alive(spid, s.id));
	kill(spid, SIGKILL);
	wait_shim_gone(dir, s.id, 5000);
	st = oci_status(&rt, s.id, dir, &err);
	assert_string_equal(state_of(st), "failed");
	assert_string_equal(json_string_value(json_object_get(st, "reason")), "shim lost");
	json_decref(st);
	remove_ok(s.id, dir);
	/* the orphaned init went with it; it may linger as a zombie of PID 1 here */
	if (kill(pid, 0) == 0) {
		char path[64], *stat;

		pathf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		stat = read_small(path, 1024, NULL);
		if (stat)
			assert_true(strstr(stat, ") Z ") != NULL);
		free(stat);
	}
}

static long long cg_value(const char *ctl, const char *id, const char *file)
{
	char path[PATH_MAX], *txt;
	long long v;

	pathf(path, sizeof(path), "/sys/fs/cgroup/%s/%s/%s/%s", ctl, rt.cgroup_parent, id, file);
	txt = read_small(path, 64, NULL);
	if (!txt)
		return -1;
	v = strtoll(txt, NULL, 10);
	free(txt);
	return v;
}

static void test_remove(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX], rootfs[PATH_MAX];
	char *argv[] = {(char *)"sleep", (char *)"1000", NULL};
	struct ciel_err err = {0};
	struct oci_spec s;
	struct stat sb;
	char **ids;
	pid_t pid;

	(void)state;
	spec_init(&s, dir, sizeof(dir), "doomed", argv);
	s.cpu_millis = 250;
	s.memory_bytes = 32 << 20;
	s.pids_max = 64;
	assert_int_equal(oci_prepare(&rt, &s, &err), 0);
	assert_int_equal(oci_prepare(&rt, &s, &err), 0); /* idempotent: one mount */
	if (oci_start(&rt, self_exe, &s, START_MS, &pid, &err) < 0)
		fail_msg("start: %s", err.msg);
	/* the limits reached the kernel (v1 here) */
	assert_int_equal(cg_value("cpu", s.id, "cpu.cfs_quota_us"), 25000);
	assert_int_equal(cg_value("cpu", s.id, "cpu.cfs_period_us"), 100000);
	assert_int_equal(cg_value("memory", s.id, "memory.limit_in_bytes"), 32 << 20);
	assert_int_equal(cg_value("memory", s.id, "memory.memsw.limit_in_bytes"), 32 << 20);
	assert_int_equal(cg_value("pids", s.id, "pids.max"), 64);
	pathf(path, sizeof(path), "/sys/fs/cgroup/memory/%s/%s", rt.cgroup_parent, s.id);
	assert_int_equal(stat(path, &sb), 0);
	pathf(rootfs, sizeof(rootfs), "%s/rootfs", dir);
	assert_int_equal(is_mounted(rootfs), 1);

	remove_ok(s.id, dir);
	assert_int_equal(is_mounted(rootfs), 0);
	assert_int_equal(stat(path, &sb), -1); /* the cgroup */
	assert_int_equal(stat(dir, &sb), -1);
	assert_false(runtime_knows(&rt, s.id));
	assert_int_equal(oci_list(&rt, &ids, &err), 0);
	for (size_t i = 0; ids[i]; i++)
		assert_string_not_equal(ids[i], s.id);
	oci_ids_free(ids);
	pathf(path, sizeof(path), "%s/bin/busybox", image);
	assert_int_equal(stat(path, &sb), 0);
	/* again, and on what never existed */
	remove_ok(s.id, dir);
	remove_ok("never-was", "/tmp/ciel-oci-never-was");
}

/* rm_tree refuses to descend into another filesystem and follows no symlink. */
static void test_rm_tree(void **state)
{
	char top[PATH_MAX], path[PATH_MAX], keep[PATH_MAX];
	struct ciel_err err = {0};
	struct stat sb;
	char *p;

	(void)state;
	pathf(top, sizeof(top), "%s/rmtest", base);
	pathf(keep, sizeof(keep), "%s/keepme", base);
	assert_int_equal(mkdir(keep, 0755), 0);
	pathf(path, sizeof(path), "%s/keepme/file", base);
	assert_int_equal(copy_file("/dev/null", path, 0644), 0);
	/* a deep chain, a symlink to keepme, and a tmpfs mount */
	pathf(path, sizeof(path), "%s", top);
	assert_int_equal(mkdir(path, 0755), 0);
	p = path + strlen(path);
	for (int i = 0; i < 40; i++) {
		p += snprintf(p, sizeof(path) - (size_t)(p - path), "/d");
		assert_int_equal(mkdir(path, 0755), 0);
	}
	pathf(path, sizeof(path), "%s/link", top);
	assert_int_equal(symlink(keep, path), 0);
	pathf(path, sizeof(path), "%s/mnt", top);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(mount("tmpfs", path, "tmpfs", 0, "size=1m"), 0);
	assert_int_equal(rm_tree(top, &err), -1);
	assert_int_equal(stat(path, &sb), 0); /* the mount point survived */
	assert_int_equal(umount2(path, 0), 0);
	assert_int_equal(rm_tree(top, &err), 0);
	assert_int_equal(lstat(top, &sb), -1);
	pathf(path, sizeof(path), "%s/keepme/file", base);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(rm_tree(keep, &err), 0);
}

/* ---- setup ---- */

static int cg_exists(const char *rel)
{
	char path[PATH_MAX];
	struct stat sb;

	pathf(path, sizeof(path), "/sys/fs/cgroup/memory/%s", rel);
	return stat(path, &sb) == 0;
}

/* Plain rmdir in every hierarchy: a busy one is someone else's, not ours to wait for. */
static void cg_rmdir_all(const char *rel)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir("/sys/fs/cgroup");

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		pathf(path, sizeof(path), "/sys/fs/cgroup/%s/%s", e->d_name, rel);
		rmdir(path);
	}
	if (d)
		closedir(d);
}

static int setup(void **state)
{
	char root[PATH_MAX];
	struct ciel_err err = {0};
	ssize_t n;

	(void)state;
	if (!mkdtemp(base))
		return -1;
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return -1;
	self_exe[n] = '\0';
	pathf(node, sizeof(node), "test-%d", (int)getpid());
	pathf(root, sizeof(root), "%s/runc-root", base);
	ciel_cg_existed = cg_exists("ciel");
	if (oci_detect(&rt, "auto", root, node, &err) < 0) {
		print_error("detect: %s\n", err.msg);
		return -1;
	}
	return make_image();
}

static int teardown(void **state)
{
	static const char *const ids[] = {"exit3",    "oom",	 "nostart", "sleeper",
					  "confined", "restart", "chatty",  "lost",
					  "doomed",   "live",	 "adopted", "bench"};
	char dir[PATH_MAX], cg[PATH_MAX];
	struct ciel_err err = {0};

	(void)state;
	/* a test that failed between mount and umount */
	pathf(dir, sizeof(dir), "%s/rmtest/mnt", base);
	umount2(dir, MNT_DETACH);
	/* after a failed test something may still run: remove is idempotent */
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
		pathf(dir, sizeof(dir), "%s/%s", base, ids[i]);
		if (oci_remove(&rt, ids[i], dir, &err) < 0)
			print_error("teardown %s: %s\n", ids[i], err.msg);
	}
	oci_reap_shims();
	if (rm_tree(base, &err) < 0)
		print_error("teardown %s: %s\n", base, err.msg);
	pathf(cg, sizeof(cg), "ciel/%s", node);
	cg_rmdir_all(cg);
	if (!ciel_cg_existed)
		cg_rmdir_all("ciel"); /* fails harmlessly if someone else uses it now */
	return 0;
}

/* ---- bench ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void report(const char *what, int64_t *us, int n)
{
	qsort(us, (size_t)n, sizeof(*us), cmp_i64);
	printf("%-34s n=%d p50=%.1f ms min=%.1f ms p90=%.1f ms\n", what, n,
	       (double)us[n / 2] / 1000.0, (double)us[0] / 1000.0,
	       (double)us[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1] / 1000.0);
}

/* oci_start -> running, against `runc run -d` of the same bundle. */
static int bench(int n)
{
	char dir[PATH_MAX], pidf[PATH_MAX];
	char *argv[] = {(char *)"sleep", (char *)"1000", NULL};
	int64_t *a = calloc((size_t)n, sizeof(*a)), *b = calloc((size_t)n, sizeof(*b));
	struct ciel_err err = {0};
	struct oci_spec s;
	int ret = 1, null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (!a || !b || null_fd < 0 || setup(NULL) < 0)
		goto out;
	prctl(PR_SET_CHILD_SUBREAPER, 1); /* runc run -d orphans its init onto us */
	spec_init(&s, dir, sizeof(dir), "bench", argv);
	if (oci_prepare(&rt, &s, &err) < 0)
		goto out_err;
	pathf(pidf, sizeof(pidf), "%s/raw.pid", dir);
	/* interleaved, so the machine's drift hits both alike */
	for (int i = 0; i < n; i++) {
		char *run[] = {rt.bin,	     (char *)"--root",	 rt.root, (char *)"run",
			       (char *)"-d", (char *)"--bundle", dir,	  (char *)"--pid-file",
			       pidf,	     (char *)"bench",	 NULL};
		char *del[] = {rt.bin,
			       (char *)"--root",
			       rt.root,
			       (char *)"delete",
			       (char *)"--force",
			       (char *)"bench",
			       NULL};
		char out[256];
		int64_t t0 = ts_mono_us();
		pid_t pid;
		int ws;

		if (oci_start(&rt, self_exe, &s, START_MS, &pid, &err) < 0)
			goto out_err;
		a[i] = ts_mono_us() - t0;
		if (oci_stop(&rt, s.id, dir, 0, &err) < 0)
			goto out_err;

		t0 = ts_mono_us();
		pid = oci_spawn(run, null_fd, null_fd, null_fd, &err);
		if (pid < 0 || waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws) || WEXITSTATUS(ws)) {
			fprintf(stderr, "runc run -d failed\n");
			goto out;
		}
		b[i] = ts_mono_us() - t0;
		oci_run(del, out, sizeof(out), 30000, NULL);
		while (waitpid(-1, &ws, WNOHANG) > 0)
			;
	}
	report("oci_start -> running (shim)", a, n);
	report("runc run -d (raw)", b, n);
	ret = 0;
	goto out;
out_err:
	fprintf(stderr, "bench: %s\n", err.msg);
out:
	teardown(NULL);
	free(a);
	free(b);
	if (null_fd >= 0)
		close(null_fd);
	return ret;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_detect),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test(test_exit_code_and_log),
	    cmocka_unit_test(test_oom),
	    cmocka_unit_test(test_start_failure),
	    cmocka_unit_test(test_stop),
	    cmocka_unit_test(test_confinement),
	    cmocka_unit_test(test_restart_keeps_layer),
	    cmocka_unit_test(test_log_rotation),
	    cmocka_unit_test(test_log_live),
	    cmocka_unit_test(test_adopt),
	    cmocka_unit_test(test_shim_lost),
	    cmocka_unit_test(test_remove),
	    cmocka_unit_test(test_rm_tree),
	};
	char bin[PATH_MAX];

	if (argc > 1 && !strcmp(argv[1], "shim"))
		return oci_shim_main(argc, argv);
	if (getuid() != 0 || find_bin("runc", bin, sizeof(bin)) < 0) {
		printf("SKIP: test_oci needs root and runc\n");
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "bench"))
		return bench(argc > 2 ? (int)strtol(argv[2], NULL, 10) : 20);
	return cmocka_run_group_tests(tests, setup, teardown);
}
