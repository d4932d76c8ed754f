/*
 * oci — run one container on a real OCI runtime (runc, or crun where it
 * works), the way a node agent needs it.
 *
 * Each instance has a directory DIR on the node:
 *   DIR/config.json   the OCI bundle's config (DIR is the bundle)
 *   DIR/upper, work   the writable layer over the read-only image (overlayfs)
 *   DIR/rootfs        the merged root the container sees
 *   DIR/log, log.1    stdout+stderr, at most OCI_LOG_MAX bytes each (rotated)
 *   DIR/status.json   what the shim last saw: {"state":"running","pid":N,
 *                     "started":"RFC3339"} or {"state":"exited","exit_code":N,
 *                     "oom":bool,"finished":"RFC3339"} or {"state":"failed",
 *                     "reason":"..."}; replaced atomically (write + rename)
 *   DIR/shim.pid      the shim's pid
 *
 * A shim process per container (oci_shim_main, run by `ciel-agent shim`)
 * does `runtime run -d` as a child subreaper, so it is the parent
 * of the container's init: it gets the real exit status, records an OOM
 * kill from the cgroup before `runtime delete`, and keeps the log bounded.
 * The agent can restart at any time; the shim and the container carry on,
 * and a new agent adopts them by reading DIR/status.json.
 *
 * Confinement written into every config: all capabilities dropped but
 * OCI_DEFAULT_CAPS, no_new_privs, a default seccomp profile (deny-list of
 * dangerous syscalls: mount, ptrace, kexec, bpf, module loading, ...),
 * masked and read-only /proc paths, a read-only image under a writable
 * per-instance layer, cgroup limits for CPU, memory (no swap) and pids, on
 * cgroup v1 and v2.
 */
#ifndef CIEL_OCI_H
#define CIEL_OCI_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

#define OCI_LOG_MAX (1 << 20)

/*
 * The capabilities a container keeps (bounding, effective and permitted;
 * ambient and inheritable stay empty): Docker's default set without
 * NET_RAW, MKNOD and AUDIT_WRITE. Usable as an array initializer.
 */
#define OCI_DEFAULT_CAPS                                                                       \
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", \
	    "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"

enum oci_kind { OCI_RUNC = 1, OCI_CRUN = 2 };

struct oci_runtime {
	enum oci_kind kind;
	char bin[PATH_MAX];	 /* absolute path of runc or crun */
	char root[PATH_MAX];	 /* --root: the runtime's own state directory */
	int cgroup_v2;		 /* the host has a unified (v2) hierarchy */
	char cgroup_parent[128]; /* cgroups go under this ("ciel/<node>") */
};

/*
 * Find a runtime that works here. want is "auto", "runc" or "crun". auto
 * prefers crun (faster start) but only on a cgroup v2 host: crun refuses
 * v1/hybrid hosts ("cgroups in hybrid mode not supported"). root is the
 * runtime state directory (created); node names the cgroup parent.
 */
int oci_detect(struct oci_runtime *rt, const char *want, const char *root, const char *node,
	       struct ciel_err *err);

struct oci_spec {
	const char *id;	      /* container id, unique on the node: [a-z0-9-], <= 64 */
	const char *dir;      /* the instance directory (see top) */
	const char *image;    /* read-only unpacked image root (overlay lowerdir) */
	char *const *argv;    /* NULL-terminated, argv[0] required */
	char *const *env;     /* NULL-terminated "K=V", may be NULL */
	const char *cwd;      /* NULL = "/" */
	const char *hostname; /* NULL = id */
	int64_t cpu_millis;   /* 0 = no limit */
	int64_t memory_bytes; /* 0 = no limit */
	int64_t pids_max;     /* 0 = 1024 */
	const char *netns;    /* path of a network namespace to join; NULL = a new, empty one */
};

/* Mount the overlay rootfs (idempotent) and write DIR/config.json. */
int oci_prepare(const struct oci_runtime *rt, const struct oci_spec *s, struct ciel_err *err);

/*
 * Start the shim for a prepared instance: it execs self_exe with argv
 * {"ciel-agent", "shim", "--runtime-bin", BIN, "--root", ROOT, "--id", ID,
 * "--dir", DIR, "--cgroup", PATH} (the agent's main hands that to
 * oci_shim_main), detached in its own session. Waits until status.json says
 * running or failed (up to timeout_ms) and returns 0 if running (*pid = the
 * container's init pid), -1 with the failure reason otherwise.
 */
int oci_start(const struct oci_runtime *rt, const char *self_exe, const struct oci_spec *s,
	      int timeout_ms, pid_t *pid, struct ciel_err *err);

/* The shim (see top). Returns the process exit status for main. */
int oci_shim_main(int argc, char **argv);

/*
 * Stop: SIGTERM, then SIGKILL after grace_ms; returns once the shim has
 * recorded the exit (status.json not "running") or after grace + 5 s.
 */
int oci_stop(const struct oci_runtime *rt, const char *id, const char *dir, int grace_ms,
	     struct ciel_err *err);

/* Read DIR/status.json; *state gets "running", "exited", "failed" or "unknown"
 * (no file). Also checks a "running" claim against the shim and the runtime:
 * a shim that died leaves "failed" with reason "shim lost". Caller frees the
 * returned JSON (NULL on error). */
json_t *oci_status(const struct oci_runtime *rt, const char *id, const char *dir,
		   struct ciel_err *err);

/* Remove everything of the instance: kill if still running, runtime delete,
 * unmount the overlay, remove DIR and its cgroup. Idempotent. */
int oci_remove(const struct oci_runtime *rt, const char *id, const char *dir, struct ciel_err *err);

/* Ids of the containers the runtime knows in rt->root (for adopting and sweeping).
 * *ids is a NULL-terminated array the caller frees with oci_ids_free. */
int oci_list(const struct oci_runtime *rt, char ***ids, struct ciel_err *err);
void oci_ids_free(char **ids);

/* Read up to max bytes of the log starting at offset (log.1 then log, as one
 * stream whose offsets keep growing across rotations). *out is malloc'd;
 * *next is the offset to ask for next; *first the oldest offset still kept. */
int oci_log_read(const char *dir, int64_t offset, size_t max, char **out, size_t *len,
		 int64_t *next, int64_t *first, struct ciel_err *err);

/*
 * Reap the shims this process started (they are its children) that have
 * exited, so none stays a zombie. oci_start, oci_stop, oci_status and
 * oci_remove do it in passing; an agent calls it from time to time too.
 */
void oci_reap_shims(void);

/*
 * Internal to lib/oci: oci.c and shim.c share these. Not an API.
 */

/* fork + execv argv[0] with fds 0, 1, 2 = in, out, errfd, every other fd
 * closed and signals reset; returns the child's pid or -1. */
pid_t oci_spawn(char *const argv[], int in, int out, int errfd, struct ciel_err *err);
/* Run argv to completion (killed after timeout_ms), stdout and stderr
 * captured into out (NUL-terminated, truncated to out_len). Returns the exit
 * code (128 + signal if killed by one), or -1 if it could not be run. */
int oci_run(char *const argv[], char *out, size_t out_len, int timeout_ms, struct ciel_err *err);
/* The first line of a runtime's output, trimmed, with runc's logrus wrapping
 * (time=... level=error msg="...") peeled off: the reason a user reads. */
void oci_first_line(const char *in, char *out, size_t n);
/* Replace path with data (temporary file + rename). */
int oci_write_file(const char *path, const char *data, size_t len, struct ciel_err *err);
/* Replace DIR/status.json with st. */
int oci_write_status(const char *dir, json_t *st, struct ciel_err *err);
/* rmdir the container cgroup (a path like "/ciel/node/id") in every
 * hierarchy, v1 and v2; best effort. */
void oci_cgroup_remove(const char *cgroup);

/* The log as one stream: DIR/log.1 covers [start1, start1 + size1), DIR/log
 * [start0, start0 + size0). DIR/log.base holds "START INODE": the offset of
 * the first byte of the file with that inode, written before each rotation,
 * so a reader that opened both files can tell where they sit. */
struct oci_log_files {
	int fd1, fd0; /* -1 where the file does not exist */
	int64_t start1, size1, start0, size0;
};
int oci_log_open(const char *dir, struct oci_log_files *f, struct ciel_err *err);
void oci_log_close(struct oci_log_files *f);

#endif
