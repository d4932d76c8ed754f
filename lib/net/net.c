/*
 * net — see net.h. Tenant networks on one node, built with `ip` and `nft`.
 *
 * Objects, all named by hash so a restarted agent recomputes them:
 *   bridge    cb<13 hex of H(node, tenant)>            one per tenant
 *   veth      cv<13 hex of H(node, tenant, instance)>  host end, port of the bridge
 *             eth0 inside the netns                    peer, created there directly,
 *                                                      MAC 02:<40 bits of H(..., "mac")>
 *   netns     ciel-<16 hex of H(node, tenant, instance)>
 *   nft       table inet ciel_<8 hex of H(node)>, table arp ciel_<same>
 * H is FNV-1a 64 over the parts (each ended by a NUL byte, so ("ab","c")
 * and ("a","bc") differ) with a splitmix64 finish to spread the bits.
 *
 * Filtering. Each table holds a set `bridges` of this node's tenant
 * bridges; bridge names do not carry the node, so the set is what scopes
 * the rules to it:
 *   inet input    iifname @bridges drop        the host is unreachable
 *   inet forward  iifname . oifname @bridged accept, then iifname @bridges
 *                 drop and oifname @bridges drop   nothing routed in or out
 *   arp  input    iifname @bridges drop        the host does not even
 *                 answer ARP, so a tenant cannot learn its addresses
 * `bridged` holds (br . br) for each bridge: with br_netfilter loaded and
 * bridge-nf-call-iptables=1 (as on these machines) frames switched inside
 * one bridge also pass the inet forward hook, with iif = oif = the bridge;
 * without that accept a tenant's own instances could not talk.
 * A bridge's set elements are added before the bridge is created, so a
 * bridge is never up without its drop rules.
 *
 * State. /run/ciel/net/<8 hex of node>/ holds one empty file per object
 * made ("br.<bridge>", "ns.<netns>"), written before the object is created,
 * and a lock file. That is how teardown finds the netns (their names need
 * tenant and instance) and how net_node_setup refills the sets after
 * recreating the tables. /run and the objects share a lifetime (both are
 * gone after a reboot). Every public call holds flock(lock) for its
 * duration, so concurrent calls for one node, from threads or processes,
 * are serialized: "the bridge goes with its last port" cannot race an
 * attach to the same bridge.
 *
 * Commands. `ip -batch -` and `nft -f -` read a script from a memfd on
 * stdin: one exec per step instead of one per operation, no shell, argv
 * fixed, and every name in a script is one we generated (hex) or an
 * address we parsed and re-printed, so input cannot inject a command.
 * stdout and stderr are captured for the error message.
 *
 * A failed attach leaves what it made (recorded); net_detach or a repeated
 * net_attach finishes the job.
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/dbuf.h"
#include "util/log.h"

#define NETNS_DIR "/var/run/netns"
#define OUT_MAX 1024 /* captured tool output kept for messages */
#define PART_MAX 253 /* longest node, tenant or instance name accepted */

/* ---- names ---- */

static uint64_t hash_parts(const char *const *parts, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = (const unsigned char *)(parts[i] ? parts[i] : "");

		do {
			h ^= *p;
			h *= 0x100000001b3ULL;
		} while (*p++);
	}
	/* FNV's low bits mix poorly on short inputs; the finish spreads every
	 * input bit over the digits we keep */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

/* "ciel_<8 hex>", the node's table name, and the name of its state dir. */
static void node_tag(const char *node, char *out, size_t len)
{
	const char *parts[] = {node};

	snprintf(out, len, "%08" PRIx32, (uint32_t)hash_parts(parts, 1));
}

void net_names(const char *node, const char *tenant, const char *instance, struct net_names *out)
{
	const char *bp[] = {node, tenant};
	const char *ip[] = {node, tenant, instance};
	uint64_t hb = hash_parts(bp, 2), hi = hash_parts(ip, 3);
	const uint64_t low52 = (1ULL << 52) - 1;

	memset(out, 0, sizeof(*out));
	snprintf(out->netns, sizeof(out->netns), "ciel-%016" PRIx64, hi);
	snprintf(out->netns_path, sizeof(out->netns_path), NETNS_DIR "/%s", out->netns);
	snprintf(out->bridge, sizeof(out->bridge), "cb%013" PRIx64, hb & low52);
	snprintf(out->veth_host, sizeof(out->veth_host), "cv%013" PRIx64, hi & low52);
	snprintf(out->veth_peer, sizeof(out->veth_peer), "cp%013" PRIx64, hi & low52);
}

/*
 * eth0's MAC, from the same three names: an instance whose netns is made
 * again keeps its MAC, so its neighbours' ARP caches stay right instead of
 * pointing at a MAC that is gone until they time out (tens of seconds).
 * Locally administered unicast: 02 then 40 bits of hash.
 */
static void instance_mac(const char *node, const char *tenant, const char *instance, char *out,
			 size_t len)
{
	const char *parts[] = {node, tenant, instance, "mac"};
	uint64_t h = hash_parts(parts, 4);

	snprintf(out, len, "02:%02x:%02x:%02x:%02x:%02x", (unsigned)(h >> 32) & 0xff,
		 (unsigned)(h >> 24) & 0xff, (unsigned)(h >> 16) & 0xff, (unsigned)(h >> 8) & 0xff,
		 (unsigned)h & 0xff);
}

static int check_part(const char *v, const char *field, struct ciel_err *err)
{
	if (!v || !*v)
		return ciel_err_field(err, CIEL_EINVAL, field, "%s: must not be empty", field);
	if (strlen(v) > PART_MAX)
		return ciel_err_field(err, CIEL_EINVAL, field, "%s: longer than %d bytes", field,
				      PART_MAX);
	return 0;
}

/* "10.200.3.7/24" (or IPv6) re-printed canonically into out; anything else
 * is refused, so what reaches the ip script is an address and nothing more. */
static int parse_addr(const char *addr, char *out, size_t len, struct ciel_err *err)
{
	char ip[INET6_ADDRSTRLEN], *end;
	unsigned char bin[sizeof(struct in6_addr)];
	const char *slash = addr ? strchr(addr, '/') : NULL;
	int family, max;
	long prefix;

	if (!slash || slash == addr || (size_t)(slash - addr) >= sizeof(ip))
		goto bad;
	memcpy(ip, addr, (size_t)(slash - addr));
	ip[slash - addr] = '\0';
	family = strchr(ip, ':') ? AF_INET6 : AF_INET;
	max = family == AF_INET6 ? 128 : 32;
	if (inet_pton(family, ip, bin) != 1 || slash[1] < '0' || slash[1] > '9')
		goto bad;
	errno = 0;
	prefix = strtol(slash + 1, &end, 10);
	if (errno || *end || prefix < 1 || prefix > max)
		goto bad;
	if (!inet_ntop(family, bin, ip, sizeof(ip)))
		goto bad;
	snprintf(out, len, "%s/%ld", ip, prefix);
	return 0;
bad:
	return ciel_err_field(err, CIEL_EINVAL, "addr",
			      "addr: want an address with prefix length like 10.200.3.7/24, got "
			      "\"%.64s\"",
			      addr ? addr : "");
}

/* ---- running ip and nft ---- */

static const char *const tool_dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};

static int tool_path(const char *tool, char *buf, size_t len, struct ciel_err *err)
{
	for (size_t i = 0; i < sizeof(tool_dirs) / sizeof(tool_dirs[0]); i++) {
		snprintf(buf, len, "%s/%s", tool_dirs[i], tool);
		if (access(buf, X_OK) == 0)
			return 0;
	}
	return ciel_err_set(err, CIEL_EUNAVAIL, "%s: not found in /usr/sbin:/sbin:/usr/bin:/bin",
			    tool);
}

/* The child's stdio is set with dup2(); an fd that already is 0..2 (a
 * daemon that closed its stdio) would keep FD_CLOEXEC, so move it up. */
static int fd_above_stdio(int fd)
{
	int nfd;

	if (fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

/* Tool output as one line for a message: lines joined by "; ", the caret
 * lines nft draws under its errors left out. */
static void squash_output(const char *in, char *out, size_t len)
{
	size_t w = 0;

	out[0] = '\0';
	while (*in) {
		const char *nl = strchr(in, '\n');
		size_t n = nl ? (size_t)(nl - in) : strlen(in);
		int useful = 0;

		for (size_t i = 0; i < n; i++)
			if (in[i] != ' ' && in[i] != '\t' && in[i] != '^' && in[i] != '~')
				useful = 1;
		if (useful && w + 1 < len) {
			int k = snprintf(out + w, len - w, "%s%.*s", w ? "; " : "", (int)n, in);

			w = k < 0 ? w : (size_t)k + w >= len ? len - 1 : w + (size_t)k;
		}
		in += n + (nl ? 1 : 0);
	}
}

/*
 * Run /path/to/tool with args (NULL-terminated, args[0] is the tool name),
 * input on its stdin. 0 when it exits 0; else -1 with CIEL_EIO and what it
 * printed. Waits for the child itself, so SIGCHLD must not be SIG_IGN.
 */
static int run_tool(const char *const *args, const char *input, size_t input_len,
		    struct ciel_err *err)
{
	static const char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
	char path[64], out[OUT_MAX], msg[OUT_MAX];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int in = -1, pipefd[2] = {-1, -1}, status, rc = -1, e;
	size_t got = 0;
	pid_t pid;

	if (tool_path(args[0], path, sizeof(path), err) < 0)
		return -1;
	in = memfd_create("ciel-net", MFD_CLOEXEC);
	if (in < 0 || (in = fd_above_stdio(in)) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "%s: memfd", args[0]);
		goto out;
	}
	for (size_t off = 0; off < input_len;) {
		ssize_t n = write(in, input + off, input_len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ciel_err_sys(err, CIEL_EIO, errno, "%s: write script", args[0]);
			goto out_close_in;
		}
		off += (size_t)n;
	}
	if (lseek(in, 0, SEEK_SET) < 0 || pipe2(pipefd, O_CLOEXEC) < 0 ||
	    (pipefd[0] = fd_above_stdio(pipefd[0])) < 0 ||
	    (pipefd[1] = fd_above_stdio(pipefd[1])) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "%s: pipe", args[0]);
		goto out_close_pipe;
	}

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	/* posix_spawn is fork+exec without copying our address space (vfork
	 * semantics in glibc): the cheap way to exec from a large daemon */
	e = posix_spawn(&pid, path, &fa, &attr, (char *const *)args, (char *const *)envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	pipefd[1] = -1;
	if (e) {
		ciel_err_sys(err, CIEL_EIO, e, "%s: spawn %s", args[0], path);
		goto out_close_pipe;
	}

	/* read to EOF, keeping the start: the first error is the one that matters */
	for (;;) {
		char sink[512];
		ssize_t n = got < sizeof(out) - 1
				? read(pipefd[0], out + got, sizeof(out) - 1 - got)
				: read(pipefd[0], sink, sizeof(sink));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got < sizeof(out) - 1)
			got += (size_t)n;
	}
	out[got] = '\0';
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			ciel_err_sys(err, CIEL_EIO, errno, "%s: waitpid", args[0]);
			goto out_close_pipe;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		rc = 0;
		goto out_close_pipe;
	}
	squash_output(out, msg, sizeof(msg));
	if (WIFEXITED(status))
		ciel_err_set(err, CIEL_EIO, "%s failed (exit %d): %s", args[0], WEXITSTATUS(status),
			     msg[0] ? msg : "no message");
	else
		ciel_err_set(err, CIEL_EIO, "%s killed by signal %d: %s", args[0],
			     WIFSIGNALED(status) ? WTERMSIG(status) : 0, msg);

out_close_pipe:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
out_close_in:
	close(in);
out:
	return rc;
}

/* Run a script through `ip [-n NS] [-force] -batch -`. An empty script runs nothing. */
static int run_ip(const char *netns, int force, const struct dbuf *script, struct ciel_err *err)
{
	const char *args[8];
	int i = 0;

	if (script->nomem)
		return ciel_err_set(err, CIEL_ENOMEM, "ip: building the script");
	if (script->len == 0)
		return 0;
	args[i++] = "ip";
	if (netns) {
		args[i++] = "-n";
		args[i++] = netns;
	}
	if (force)
		args[i++] = "-force";
	args[i++] = "-batch";
	args[i++] = "-";
	args[i] = NULL;
	return run_tool(args, dbuf_str(script), script->len, err);
}

static int run_nft(const struct dbuf *script, struct ciel_err *err)
{
	const char *args[] = {"nft", "-f", "-", NULL};

	if (script->nomem)
		return ciel_err_set(err, CIEL_ENOMEM, "nft: building the script");
	return run_tool(args, dbuf_str(script), script->len, err);
}

/* ---- what exists ---- */

static int link_exists(const char *ifname)
{
	return if_nametoindex(ifname) != 0;
}

static int netns_exists(const char *netns)
{
	char p[128];

	snprintf(p, sizeof(p), NETNS_DIR "/%s", netns);
	return access(p, F_OK) == 0;
}

/*
 * Ports of bridge br other than `except` (may be NULL); when script is not
 * NULL, a "link del" for each port of ours (cv*) is appended to it. A
 * missing bridge has no ports.
 */
static int bridge_ports(const char *br, const char *except, struct dbuf *script)
{
	char p[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(p, sizeof(p), "/sys/class/net/%s/brif", br);
	d = opendir(p);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || (except && strcmp(de->d_name, except) == 0))
			continue;
		n++;
		if (script && strncmp(de->d_name, "cv", 2) == 0)
			dbuf_printf(script, "link del %s\n", de->d_name);
	}
	closedir(d);
	return n;
}

/* ---- per-node state: records and lock ---- */

struct node_state {
	int dirfd, lockfd;
	char tag[16];
	char path[64];
};

static int mkdir_one(const char *p, struct ciel_err *err)
{
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return ciel_err_sys(err, CIEL_EIO, errno, "mkdir %s", p);
	return 0;
}

/*
 * Open and lock the node's state dir. With create == 0 a missing dir is not
 * an error: 1 is returned and st holds no fds (nothing was recorded). Release
 * with state_close().
 */
static int state_open(const char *node, int create, struct node_state *st, struct ciel_err *err)
{
	st->dirfd = st->lockfd = -1;
	node_tag(node, st->tag, sizeof(st->tag));
	snprintf(st->path, sizeof(st->path), NET_STATE_DIR "/%s", st->tag);
	if (create && (mkdir_one("/run/ciel", err) < 0 || mkdir_one(NET_STATE_DIR, err) < 0 ||
		       mkdir_one(st->path, err) < 0))
		return -1;
	st->dirfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dirfd < 0) {
		if (errno == ENOENT && !create)
			return 1;
		return ciel_err_sys(err, CIEL_EIO, errno, "open %s", st->path);
	}
	st->lockfd = openat(st->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lockfd < 0)
		goto fail;
	while (flock(st->lockfd, LOCK_EX) < 0)
		if (errno != EINTR)
			goto fail;
	return 0;
fail:
	ciel_err_sys(err, CIEL_EIO, errno, "lock %s/lock", st->path);
	if (st->lockfd >= 0)
		close(st->lockfd);
	close(st->dirfd);
	st->dirfd = st->lockfd = -1;
	return -1;
}

static void state_close(struct node_state *st)
{
	if (st->lockfd >= 0)
		close(st->lockfd); /* releases the flock */
	if (st->dirfd >= 0)
		close(st->dirfd);
	st->dirfd = st->lockfd = -1;
}

static int record_add(struct node_state *st, const char *kind, const char *name,
		      struct ciel_err *err)
{
	char f[128];
	int fd;

	snprintf(f, sizeof(f), "%s.%s", kind, name);
	fd = openat(st->dirfd, f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return ciel_err_sys(err, CIEL_EIO, errno, "record %s/%s", st->path, f);
	close(fd);
	return 0;
}

static void record_del(struct node_state *st, const char *kind, const char *name)
{
	char f[128];

	if (st->dirfd < 0)
		return;
	snprintf(f, sizeof(f), "%s.%s", kind, name);
	unlinkat(st->dirfd, f, 0);
}

static int record_exists(struct node_state *st, const char *kind, const char *name)
{
	char f[128];

	if (st->dirfd < 0)
		return 0;
	snprintf(f, sizeof(f), "%s.%s", kind, name);
	return faccessat(st->dirfd, f, F_OK, 0) == 0;
}

/* Only names we could have written: they go into scripts verbatim. */
static int record_name_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'z') || s[n] == '-'))
			return 0;
	return n > 0 && n <= max;
}

/*
 * Call fn for every record of kind ("br" or "ns") with the object's name.
 * Stops at fn's first nonzero return and returns it.
 */
static int record_each(struct node_state *st, const char *kind,
		       int (*fn)(struct node_state *, const char *, void *), void *arg)
{
	size_t kl = strlen(kind);
	struct dirent *de;
	int fd, rc = 0;
	DIR *d;

	if (st->dirfd < 0)
		return 0;
	fd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	while (!rc && (de = readdir(d))) {
		const char *name = de->d_name + kl + 1;

		if (strncmp(de->d_name, kind, kl) != 0 || de->d_name[kl] != '.' ||
		    !record_name_ok(name, 32))
			continue;
		rc = fn(st, name, arg);
	}
	closedir(d);
	return rc;
}

/* ---- nftables ---- */

/* Add (verb "add") or remove (verb "delete") bridge br in the node's sets. */
static void nft_elements(struct dbuf *s, const char *verb, const char *tag, const char *br)
{
	dbuf_printf(s,
		    "%s element inet ciel_%s bridges { \"%s\" }\n"
		    "%s element inet ciel_%s bridged { \"%s\" . \"%s\" }\n"
		    "%s element arp ciel_%s bridges { \"%s\" }\n",
		    verb, tag, br, verb, tag, br, br, verb, tag, br);
}

/* Appends the tables' removal; "add" first makes it a no-op when absent. */
static void nft_drop_tables(struct dbuf *s, const char *tag)
{
	dbuf_printf(s,
		    "add table inet ciel_%s\ndelete table inet ciel_%s\n"
		    "add table arp ciel_%s\ndelete table arp ciel_%s\n",
		    tag, tag, tag, tag);
}

struct setup_ctx {
	struct dbuf *script;
	const char *tag;
};

static int setup_bridge(struct node_state *st, const char *br, void *arg)
{
	struct setup_ctx *c = arg;

	if (link_exists(br))
		nft_elements(c->script, "add", c->tag, br);
	else
		record_del(st, "br", br);
	return 0;
}

int net_node_setup(const char *node, struct ciel_err *err)
{
	struct node_state st;
	struct dbuf s;
	struct setup_ctx c = {.script = &s};
	int rc = -1;

	if (check_part(node, "node", err) < 0)
		return -1;
	if (state_open(node, 1, &st, err) < 0)
		return -1;
	c.tag = st.tag;
	dbuf_init(&s, DBUF_NO_MAX);
	/* One transaction: the old tables go and the new ones come with the
	 * recorded bridges in their sets, so no moment is without the rules
	 * and setting up twice gives the same ruleset, not doubled rules. */
	nft_drop_tables(&s, st.tag);
	dbuf_printf(&s,
		    "table inet ciel_%s {\n"
		    "\tset bridges { type ifname; }\n"
		    "\tset bridged { type ifname . ifname; }\n"
		    "\tchain input {\n"
		    "\t\ttype filter hook input priority -10; policy accept;\n"
		    "\t\tiifname @bridges counter drop\n"
		    "\t}\n"
		    "\tchain forward {\n"
		    "\t\ttype filter hook forward priority -10; policy accept;\n"
		    "\t\tiifname . oifname @bridged accept\n"
		    "\t\tiifname @bridges counter drop\n"
		    "\t\toifname @bridges counter drop\n"
		    "\t}\n"
		    "}\n"
		    "table arp ciel_%s {\n"
		    "\tset bridges { type ifname; }\n"
		    "\tchain input {\n"
		    "\t\ttype filter hook input priority -10; policy accept;\n"
		    "\t\tiifname @bridges counter drop\n"
		    "\t}\n"
		    "}\n",
		    st.tag, st.tag);
	if (record_each(&st, "br", setup_bridge, &c) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "read %s", st.path);
		goto out;
	}
	if (run_nft(&s, err) < 0) {
		ciel_err_prefix(err, "net setup node=%s: ", node);
		goto out;
	}
	log_debug("net setup node=%s table=ciel_%s", node, st.tag);
	rc = 0;
out:
	dbuf_release(&s);
	state_close(&st);
	return rc;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int net_attach(const char *node, const char *tenant, const char *instance, const char *addr,
	       struct net_names *out, struct ciel_err *err)
{
	char cidr[INET6_ADDRSTRLEN + 8];
	struct net_names n;
	struct node_state st;
	struct timespec t0;
	struct dbuf s;
	int ns_ok, br_ok, hv_ok, rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (check_part(node, "node", err) < 0 || check_part(tenant, "tenant", err) < 0 ||
	    check_part(instance, "instance", err) < 0 ||
	    parse_addr(addr, cidr, sizeof(cidr), err) < 0)
		return -1;
	net_names(node, tenant, instance, &n);
	if (state_open(node, 1, &st, err) < 0)
		return -1;
	dbuf_init(&s, DBUF_NO_MAX);
	if (record_add(&st, "br", n.bridge, err) < 0 || record_add(&st, "ns", n.netns, err) < 0)
		goto out;
	ns_ok = netns_exists(n.netns);
	br_ok = link_exists(n.bridge);
	hv_ok = link_exists(n.veth_host);

	if (!br_ok) {
		/* the drop rules know the bridge before it exists */
		nft_elements(&s, "add", st.tag, n.bridge);
		if (run_nft(&s, err) < 0) {
			ciel_err_prefix(err,
					"add bridge %s to table ciel_%s (net_node_setup first?): ",
					n.bridge, st.tag);
			goto out_err;
		}
		dbuf_reset(&s);
	}
	if (!ns_ok && hv_ok) {
		/* A veth whose netns was removed leads into the old namespace
		 * (still alive while a process holds it, or being destroyed:
		 * that runs asynchronously and may take the veth any moment).
		 * Delete it on its own; failing because it vanished is fine. */
		struct ciel_err e2 = {0};

		dbuf_printf(&s, "link del %s\n", n.veth_host);
		if (run_ip(NULL, 0, &s, &e2) < 0 && link_exists(n.veth_host)) {
			if (err)
				*err = e2;
			goto out_err;
		}
		dbuf_reset(&s);
		hv_ok = 0;
	}
	if (!ns_ok)
		dbuf_printf(&s, "netns add %s\n", n.netns);
	if (!br_ok)
		/* no IPv6 link-local either: the bridge carries no host address */
		dbuf_printf(&s, "link add %s type bridge\nlink set %s addrgenmode none\n", n.bridge,
			    n.bridge);
	dbuf_printf(&s, "link set %s up\n", n.bridge);
	if (!hv_ok) {
		/* the peer is born as eth0 inside the netns: no rename step, and
		 * never a moment where it sits in the host namespace */
		char mac[18];

		instance_mac(node, tenant, instance, mac, sizeof(mac));
		dbuf_printf(&s,
			    "link add %s type veth peer name eth0 address %s netns %s\n"
			    "link set %s addrgenmode none\n",
			    n.veth_host, mac, n.netns, n.veth_host);
	}
	dbuf_printf(&s, "link set %s master %s up\n", n.veth_host, n.bridge);
	if (run_ip(NULL, 0, &s, err) < 0)
		goto out_err;

	dbuf_reset(&s);
	/* replace, not add: attaching again with the same address is a no-op */
	dbuf_printf(&s, "link set lo up\naddress replace %s dev eth0\nlink set eth0 up\n", cidr);
	if (run_ip(n.netns, 0, &s, err) < 0)
		goto out_err;

	if (out)
		*out = n;
	log_debug("net attach node=%s tenant=%s instance=%s netns=%s bridge=%s addr=%s ms=%.1f",
		  node, tenant, instance, n.netns, n.bridge, cidr, ms_since(&t0));
	rc = 0;
	goto out;
out_err:
	ciel_err_prefix(err, "net attach instance=%s: ", instance);
out:
	dbuf_release(&s);
	state_close(&st);
	return rc;
}

int net_detach(const char *node, const char *tenant, const char *instance, struct ciel_err *err)
{
	struct net_names n;
	struct node_state st;
	struct dbuf s;
	int br_ok, last, rc = -1;

	if (check_part(node, "node", err) < 0 || check_part(tenant, "tenant", err) < 0 ||
	    check_part(instance, "instance", err) < 0)
		return -1;
	net_names(node, tenant, instance, &n);
	/* no state dir: nothing recorded, but still remove what is there */
	if (state_open(node, 0, &st, err) < 0)
		return -1;
	dbuf_init(&s, DBUF_NO_MAX);
	br_ok = link_exists(n.bridge);
	last = br_ok && bridge_ports(n.bridge, n.veth_host, NULL) == 0;
	/* deleting the host end takes eth0 with it even if a process still
	 * holds the netns open (netns del only unmounts it) */
	if (link_exists(n.veth_host))
		dbuf_printf(&s, "link del %s\n", n.veth_host);
	if (netns_exists(n.netns))
		dbuf_printf(&s, "netns del %s\n", n.netns);
	if (last)
		dbuf_printf(&s, "link del %s\n", n.bridge);
	if (run_ip(NULL, 0, &s, err) < 0)
		goto out_err;
	record_del(&st, "ns", n.netns);

	if (last || (!br_ok && record_exists(&st, "br", n.bridge))) {
		struct ciel_err e2 = {0};

		/* "add" first makes "delete" succeed when the element is gone;
		 * a stale name left in a drop set is harmless, so only warn */
		dbuf_reset(&s);
		nft_elements(&s, "add", st.tag, n.bridge);
		nft_elements(&s, "delete", st.tag, n.bridge);
		if (run_nft(&s, &e2) < 0)
			log_warn("net detach bridge=%s: %s", n.bridge, e2.msg);
		record_del(&st, "br", n.bridge);
	}
	log_debug("net detach node=%s tenant=%s instance=%s netns=%s", node, tenant, instance,
		  n.netns);
	rc = 0;
	goto out;
out_err:
	ciel_err_prefix(err, "net detach instance=%s: ", instance);
out:
	dbuf_release(&s);
	state_close(&st);
	return rc;
}

struct teardown_ctx {
	struct dbuf ports, netns, bridges;
};

static int teardown_bridge(struct node_state *st, const char *br, void *arg)
{
	struct teardown_ctx *c = arg;

	(void)st;
	if (!link_exists(br))
		return 0;
	bridge_ports(br, NULL, &c->ports);
	dbuf_printf(&c->bridges, "link del %s\n", br);
	return 0;
}

static int teardown_netns(struct node_state *st, const char *ns, void *arg)
{
	struct teardown_ctx *c = arg;

	(void)st;
	if (netns_exists(ns))
		dbuf_printf(&c->netns, "netns del %s\n", ns);
	return 0;
}

static int remove_record(struct node_state *st, const char *name, void *arg)
{
	record_del(st, arg, name);
	return 0;
}

int net_node_teardown(const char *node, struct ciel_err *err)
{
	struct teardown_ctx c;
	struct node_state st;
	struct dbuf s;
	int absent, rc = -1;

	if (check_part(node, "node", err) < 0)
		return -1;
	absent = state_open(node, 0, &st, err);
	if (absent < 0)
		return -1;
	dbuf_init(&c.ports, DBUF_NO_MAX);
	dbuf_init(&c.netns, DBUF_NO_MAX);
	dbuf_init(&c.bridges, DBUF_NO_MAX);
	dbuf_init(&s, DBUF_NO_MAX);
	if (record_each(&st, "br", teardown_bridge, &c) < 0 ||
	    record_each(&st, "ns", teardown_netns, &c) < 0) {
		ciel_err_sys(err, CIEL_EIO, errno, "read %s", st.path);
		goto out;
	}
	/* ports first (each takes its eth0), then the netns, then the now
	 * empty bridges; -force goes on past a failure so one stuck object
	 * does not keep the rest */
	dbuf_add(&s, dbuf_str(&c.ports), c.ports.len);
	dbuf_add(&s, dbuf_str(&c.netns), c.netns.len);
	dbuf_add(&s, dbuf_str(&c.bridges), c.bridges.len);
	/* the tables stay while a bridge may: no bridge without its rules */
	if (run_ip(NULL, 1, &s, err) < 0)
		goto out_err;
	dbuf_reset(&s);
	nft_drop_tables(&s, st.tag);
	if (run_nft(&s, err) < 0)
		goto out_err;
	if (!absent) {
		record_each(&st, "br", remove_record, (void *)"br");
		record_each(&st, "ns", remove_record, (void *)"ns");
		/* teardown is the node's last call: whoever waits on this lock
		 * finds a fresh dir on its next call */
		unlinkat(st.dirfd, "lock", 0);
		rmdir(st.path);
	}
	log_debug("net teardown node=%s table=ciel_%s", node, st.tag);
	rc = 0;
	goto out;
out_err:
	ciel_err_prefix(err, "net teardown node=%s: ", node);
out:
	dbuf_release(&s);
	dbuf_release(&c.ports);
	dbuf_release(&c.netns);
	dbuf_release(&c.bridges);
	state_close(&st);
	return rc;
}
