/*
 * test_net — tenant networks on real namespaces, bridges and nftables.
 *
 * Node "t-<pid>", tenants A and B. A's a1 and a2 share a bridge; B's b2 has
 * an address in A's subnet, so a1 not reaching it shows isolation is by
 * bridge, not by addressing. The host gets 10.213.2.254/24 on a link of
 * our own (one end of a veth pair, both ends in the host): b1 (10.213.2.2/24) has an on-link path
 * to it in principle, and the node's nft rules are what stop it (their counters show the packets
 * arrived and were dropped). Any reply would leave through that veth, never a real interface.
 *
 * net.c is included for its statics (node_tag). The name tests run as
 * anyone; the rest needs root and skips without it. The group teardown
 * removes everything by name even when a test failed half-way.
 */
#include "net/net.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include <cmocka.h>

#define NINST 20 /* instances attached for the timing */

struct inst {
	const char *tenant;
	char id[16];
	char addr[24];
	struct net_names n;
};

static int have_root;
static char node[32], tag[16], dummy[16];
static struct inst a1 = {.tenant = "ta", .id = "a1", .addr = "10.213.1.2/24"};
static struct inst a2 = {.tenant = "ta", .id = "a2", .addr = "10.213.1.3/24"};
static struct inst b1 = {.tenant = "tb", .id = "b1", .addr = "10.213.2.2/24"};
static struct inst b2 = {.tenant = "tb", .id = "b2", .addr = "10.213.1.4/24"};
static struct inst many[NINST];

/* ---- helpers (tests may use the shell; the library may not) ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Output of a command, NUL-terminated, in buf. */
static void capture(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void capture(char *buf, size_t len, const char *fmt, ...)
{
	char cmd[512];
	size_t got = 0, n;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	buf[0] = '\0';
	f = popen(cmd, "r");
	assert_non_null(f);
	while (got + 1 < len && (n = fread(buf + got, 1, len - 1 - got, f)) > 0)
		got += n;
	buf[got] = '\0';
	pclose(f);
}

static int ping(const struct inst *from, const char *to)
{
	return sh("ip netns exec %s /bin/busybox ping -c1 -W1 %s >/dev/null 2>&1", from->n.netns,
		  to) == 0;
}

/* A first ping may spend its second on ARP: allow a few for a positive. */
static int reaches(const struct inst *from, const char *to)
{
	for (int i = 0; i < 3; i++)
		if (ping(from, to))
			return 1;
	return 0;
}

static const char *ip_of(const struct inst *i)
{
	static char buf[24];
	char *slash;

	snprintf(buf, sizeof(buf), "%s", i->addr);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	return buf;
}

/* Packets counted by the first counter of a chain. */
static long counter(const char *family, const char *chain)
{
	char out[4096];
	const char *p;

	capture(out, sizeof(out), "nft list chain %s ciel_%s %s 2>&1", family, tag, chain);
	p = strstr(out, "counter packets ");
	assert_non_null(p);
	return strtol(p + strlen("counter packets "), NULL, 10);
}

static int link_there(const char *name)
{
	return sh("ip link show dev %s >/dev/null 2>&1", name) == 0;
}

static int netns_there(const char *name)
{
	char p[128];

	snprintf(p, sizeof(p), "/var/run/netns/%s", name);
	return access(p, F_OK) == 0;
}

static int set_has(const char *family, const char *bridge)
{
	char out[4096];

	capture(out, sizeof(out), "nft list set %s ciel_%s bridges 2>&1", family, tag);
	return strstr(out, bridge) != NULL;
}

static void attach_ok(struct inst *i)
{
	struct ciel_err err = {0};
	struct net_names want;

	if (net_attach(node, i->tenant, i->id, i->addr, &i->n, &err) < 0)
		fail_msg("attach %s: %s", i->id, err.msg);
	net_names(node, i->tenant, i->id, &want);
	assert_memory_equal(&want, &i->n, sizeof(want));
}

static void detach_ok(struct inst *i)
{
	struct ciel_err err = {0};

	if (net_detach(node, i->tenant, i->id, &err) < 0)
		fail_msg("detach %s: %s", i->id, err.msg);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- names: no privileges needed ---- */

static int all_hex(const char *s)
{
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static void test_names(void **st)
{
	struct net_names x, y;

	(void)st;
	net_names("node-1", "acme", "i-1", &x);
	assert_int_equal(strlen(x.bridge), 15); /* IFNAMSIZ - 1 */
	assert_int_equal(strlen(x.veth_host), 15);
	assert_int_equal(strlen(x.veth_peer), 15);
	assert_int_equal(strlen(x.netns), 21);
	assert_memory_equal(x.bridge, "cb", 2);
	assert_memory_equal(x.veth_host, "cv", 2);
	assert_memory_equal(x.veth_peer, "cp", 2);
	assert_memory_equal(x.netns, "ciel-", 5);
	assert_true(all_hex(x.bridge + 2) && all_hex(x.veth_host + 2) && all_hex(x.netns + 5));
	assert_string_equal(x.veth_host + 2, x.veth_peer + 2);
	assert_string_equal(x.netns_path + strlen("/var/run/netns/"), x.netns);
	assert_memory_equal(x.netns_path, "/var/run/netns/", 15);
	/* deterministic: a restarted agent finds its objects */
	net_names("node-1", "acme", "i-1", &y);
	assert_memory_equal(&x, &y, sizeof(x));
	/* one bridge per (node, tenant), one netns per instance */
	net_names("node-1", "acme", "i-2", &y);
	assert_string_equal(x.bridge, y.bridge);
	assert_string_not_equal(x.netns, y.netns);
	assert_string_not_equal(x.veth_host, y.veth_host);
	net_names("node-1", "other", "i-1", &y);
	assert_string_not_equal(x.bridge, y.bridge);
	assert_string_not_equal(x.netns, y.netns);
	net_names("node-2", "acme", "i-1", &y);
	assert_string_not_equal(x.bridge, y.bridge);
	/* the parts are delimited: ("ab", "c") is not ("a", "bc") */
	net_names("n", "ab", "c", &x);
	net_names("n", "a", "bc", &y);
	assert_string_not_equal(x.bridge, y.bridge);
	assert_string_not_equal(x.netns, y.netns);
}

static void test_bad_args(void **st)
{
	static const char *const bad[] = {"",
					  "10.0.0.1",
					  "10.0.0.1/",
					  "10.0.0.1/33",
					  "10.0.0.1/0",
					  "10.0.0.1/24x",
					  "10.0.0.256/24",
					  "/24",
					  "10.0.0.1/24\nlink del eth0",
					  "10.0.0.1 dev lo/24",
					  "fe80::1/129"};
	struct ciel_err err = {0};
	char out[64];

	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(net_attach("n", "t", "i", bad[i], NULL, &err), -1);
		assert_int_equal(err.code, CIEL_EINVAL);
		assert_string_equal(err.field, "addr");
	}
	assert_int_equal(net_attach("n", "t", "i", NULL, NULL, &err), -1);
	assert_int_equal(net_attach("", "t", "i", "10.0.0.1/24", NULL, &err), -1);
	assert_string_equal(err.field, "node");
	assert_int_equal(net_detach("n", NULL, "i", &err), -1);
	assert_string_equal(err.field, "tenant");
	assert_int_equal(net_node_setup(NULL, &err), -1);
	assert_int_equal(net_node_teardown("", &err), -1);
	/* what is accepted is re-printed canonically */
	assert_int_equal(parse_addr("10.0.0.1/24", out, sizeof(out), &err), 0);
	assert_string_equal(out, "10.0.0.1/24");
	assert_int_equal(parse_addr("fd00:0::0:1/64", out, sizeof(out), &err), 0);
	assert_string_equal(out, "fd00::1/64");
}

/* The captured tool output becomes one line, caret lines dropped. */
static void test_squash(void **st)
{
	char msg[64];

	(void)st;
	squash_output("Error: x\nadd element a\n   ^^^^ \n", msg, sizeof(msg));
	assert_string_equal(msg, "Error: x; add element a");
	squash_output("", msg, sizeof(msg));
	assert_string_equal(msg, "");
	squash_output("a very long line that goes on and on and on past the end of msg\nb", msg,
		      16);
	assert_int_equal(strlen(msg), 15);
}

/* ---- on the machine (root) ---- */

static int group_setup(void **st)
{
	struct ciel_err err = {0};

	(void)st;
	if (!have_root)
		return 0;
	snprintf(node, sizeof(node), "t-%d", (int)getpid());
	node_tag(node, tag, sizeof(tag));
	snprintf(dummy, sizeof(dummy), "ctd%d", (int)(getpid() % 100000));
	for (int i = 0; i < NINST; i++) {
		many[i].tenant = "tc";
		snprintf(many[i].id, sizeof(many[i].id), "c%d", i);
		snprintf(many[i].addr, sizeof(many[i].addr), "10.213.3.%d/24", 10 + i);
		net_names(node, many[i].tenant, many[i].id, &many[i].n);
	}
	/* no dummy driver on these kernels: a veth pair whose far end is
	 * also ours, so anything sent that way dies on this machine */
	if (sh("ip link add %s type veth peer name %sp && ip addr add 10.213.2.254/24 dev %s && "
	       "ip link set %s up && ip link set %sp up",
	       dummy, dummy, dummy, dummy, dummy) != 0) {
		fprintf(stderr, "cannot create dummy link %s\n", dummy);
		return -1;
	}
	if (net_node_setup(node, &err) < 0) {
		fprintf(stderr, "net_node_setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void scrub(const struct inst *i)
{
	struct net_names n;

	net_names(node, i->tenant, i->id, &n);
	sh("ip link del %s 2>/dev/null; ip netns del %s 2>/dev/null; ip link del %s 2>/dev/null",
	   n.veth_host, n.netns, n.bridge);
}

/* Whatever the tests left, by name: runs even after a failure. */
static int group_teardown(void **st)
{
	struct ciel_err err = {0};

	(void)st;
	if (!have_root)
		return 0;
	if (net_node_teardown(node, &err) < 0)
		fprintf(stderr, "net_node_teardown: %s\n", err.msg);
	scrub(&a1);
	scrub(&a2);
	scrub(&b1);
	scrub(&b2);
	for (int i = 0; i < NINST; i++)
		scrub(&many[i]);
	sh("nft delete table inet ciel_%s 2>/dev/null; nft delete table arp ciel_%s 2>/dev/null; "
	   "ip link del %s 2>/dev/null; rm -rf " NET_STATE_DIR "/%s",
	   tag, tag, dummy, tag);
	return 0;
}

static void test_setup_idempotent(void **st)
{
	struct ciel_err err = {0};
	char out[8192];
	const char *p;
	int drops = 0;

	(void)st;
	if (!have_root)
		skip();
	assert_int_equal(net_node_setup(node, &err), 0);
	capture(out, sizeof(out), "nft list table inet ciel_%s", tag);
	for (p = out; (p = strstr(p, " drop")); p++)
		drops++;
	assert_int_equal(drops, 3); /* input, forward in, forward out: not doubled */
	capture(out, sizeof(out), "nft list table arp ciel_%s", tag);
	assert_non_null(strstr(out, "iifname @bridges"));
}

static void test_attach(void **st)
{
	char out[4096];

	(void)st;
	if (!have_root)
		skip();
	attach_ok(&a1);
	attach_ok(&a2);
	attach_ok(&b1);
	attach_ok(&b2);
	assert_string_equal(a1.n.bridge, a2.n.bridge);
	assert_string_not_equal(a1.n.bridge, b2.n.bridge);
	assert_string_equal(b1.n.bridge, b2.n.bridge);
	assert_true(netns_there(a1.n.netns) && netns_there(b2.n.netns));
	capture(out, sizeof(out), "ip -n %s -o addr show dev eth0", a2.n.netns);
	assert_non_null(strstr(out, "inet 10.213.1.3/24"));
	capture(out, sizeof(out), "ip -n %s -o link show dev lo", a2.n.netns);
	assert_non_null(strstr(out, "UP"));
	/* ports of the tenant's bridge; the peer is eth0 inside, no cp* in the host */
	capture(out, sizeof(out), "ls /sys/class/net/%s/brif", a1.n.bridge);
	assert_non_null(strstr(out, a1.n.veth_host));
	assert_non_null(strstr(out, a2.n.veth_host));
	assert_null(strstr(out, b1.n.veth_host));
	assert_false(link_there(a1.n.veth_peer));
	/* no host address on the bridge, not even an IPv6 link-local */
	capture(out, sizeof(out), "ip -o addr show dev %s", a1.n.bridge);
	assert_string_equal(out, "");
	capture(out, sizeof(out), "ip -o addr show dev %s", a1.n.veth_host);
	assert_string_equal(out, "");
	assert_true(set_has("inet", a1.n.bridge) && set_has("inet", b1.n.bridge));
	assert_true(set_has("arp", a1.n.bridge) && set_has("arp", b1.n.bridge));
}

static void test_isolation(void **st)
{
	long before;

	(void)st;
	if (!have_root)
		skip();
	/* same bridge: works, although br_netfilter sends these frames
	 * through the inet forward hook (the `bridged` accept) */
	assert_true(reaches(&a1, ip_of(&a2)));
	assert_true(reaches(&a2, ip_of(&a1)));
	/* same subnet, other tenant: no path */
	assert_false(ping(&a1, ip_of(&b2)));
	assert_false(ping(&b2, ip_of(&a1)));
	assert_false(ping(&a1, ip_of(&b1)));

	/* the host: its ARP answer is dropped before anything else */
	before = counter("arp", "input");
	assert_false(ping(&b1, "10.213.2.254"));
	assert_true(counter("arp", "input") > before);
	/* and with ARP let through (a tenant that guessed the MAC), the
	 * packet itself is dropped at inet input */
	assert_int_equal(sh("nft delete element arp ciel_%s bridges { \"%s\" }", tag, b1.n.bridge),
			 0);
	before = counter("inet", "input");
	assert_false(ping(&b1, "10.213.2.254"));
	assert_false(ping(&b1, "10.213.2.254"));
	sh("nft add element arp ciel_%s bridges { \"%s\" }", tag, b1.n.bridge);
	assert_true(counter("inet", "input") > before);
	assert_true(set_has("arp", b1.n.bridge));
}

static void test_reattach(void **st)
{
	struct ciel_err err = {0};
	char out[4096], mac[32];

	(void)st;
	if (!have_root)
		skip();
	/* attach twice: same objects, still connected */
	attach_ok(&a1);
	attach_ok(&a1);
	assert_true(reaches(&a1, ip_of(&a2)));
	/* the netns went away behind our back (its veth with it): re-attach
	 * rebuilds it with the same MAC, so a1's ARP cache is still right */
	capture(out, sizeof(out), "ip -n %s -o link show dev eth0", a2.n.netns);
	assert_non_null(strstr(out, "link/ether 02:"));
	snprintf(mac, sizeof(mac), "%.28s", strstr(out, "link/ether ")); /* + 17 for the MAC */
	assert_int_equal(sh("ip netns del %s", a2.n.netns), 0);
	attach_ok(&a2);
	capture(out, sizeof(out), "ip -n %s -o link show dev eth0", a2.n.netns);
	assert_non_null(strstr(out, mac));
	assert_true(reaches(&a1, ip_of(&a2)));
	/* the bridge was deleted: re-attach rebuilds it, rules included */
	assert_int_equal(sh("ip link del %s && ip link del %s", b1.n.veth_host, b1.n.bridge), 0);
	attach_ok(&b1);
	attach_ok(&b2);
	capture(out, sizeof(out), "ls /sys/class/net/%s/brif", b1.n.bridge);
	assert_non_null(strstr(out, b1.n.veth_host));
	assert_non_null(strstr(out, b2.n.veth_host));
	assert_true(set_has("inet", b1.n.bridge));
	/* setup again (an agent restart): the recorded bridges are back in the sets */
	assert_int_equal(net_node_setup(node, &err), 0);
	assert_true(set_has("inet", a1.n.bridge) && set_has("arp", b1.n.bridge));
	assert_false(ping(&a1, ip_of(&b2)));
}

static void test_detach(void **st)
{
	(void)st;
	if (!have_root)
		skip();
	detach_ok(&a2);
	assert_false(netns_there(a2.n.netns));
	assert_false(link_there(a2.n.veth_host));
	assert_true(link_there(a1.n.bridge)); /* a1 is still on it */
	assert_false(ping(&a1, ip_of(&a2)));
	detach_ok(&a2); /* absent is fine */
	/* the last port takes the bridge and its set elements with it */
	detach_ok(&a1);
	assert_false(netns_there(a1.n.netns));
	assert_false(link_there(a1.n.bridge));
	assert_false(set_has("inet", a1.n.bridge));
	assert_false(set_has("arp", a1.n.bridge));
	assert_true(set_has("inet", b1.n.bridge));
	attach_ok(&a1); /* for teardown to find */
	assert_true(set_has("inet", a1.n.bridge));
}

static void test_timing(void **st)
{
	double first[NINST], again[NINST], gone[NINST / 2];

	(void)st;
	if (!have_root)
		skip();
	for (int i = 0; i < NINST; i++) {
		double t0 = now_ms();

		attach_ok(&many[i]);
		first[i] = now_ms() - t0;
	}
	for (int i = 0; i < NINST; i++) {
		double t0 = now_ms();

		attach_ok(&many[i]);
		again[i] = now_ms() - t0;
	}
	assert_true(reaches(&many[0], ip_of(&many[NINST - 1])));
	/* half go now, half are left for teardown to find */
	for (int i = 0; i < NINST / 2; i++) {
		double t0 = now_ms();

		detach_ok(&many[i]);
		gone[i] = now_ms() - t0;
	}
	printf("net_attach: first %.1f ms median (%d; the first also made the bridge: %.1f ms), "
	       "again %.1f ms median; net_detach %.1f ms median\n",
	       median(first + 1, NINST - 1), NINST, first[0], median(again, NINST),
	       median(gone, NINST / 2));
}

static void test_teardown(void **st)
{
	struct inst *all[4 + NINST] = {&a1, &a2, &b1, &b2};
	struct ciel_err err = {0};
	char links[65536], netns[65536], tables[4096], p[128];

	(void)st;
	if (!have_root)
		skip();
	for (int i = 0; i < NINST; i++)
		all[4 + i] = &many[i];
	if (net_node_teardown(node, &err) < 0)
		fail_msg("teardown: %s", err.msg);
	capture(links, sizeof(links), "ip -o link");
	capture(netns, sizeof(netns), "ip netns list");
	capture(tables, sizeof(tables), "nft list tables");
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		assert_null(strstr(links, all[i]->n.veth_host));
		assert_null(strstr(links, all[i]->n.bridge));
		assert_null(strstr(netns, all[i]->n.netns));
	}
	snprintf(p, sizeof(p), "ciel_%s", tag);
	assert_null(strstr(tables, p));
	snprintf(p, sizeof(p), NET_STATE_DIR "/%s", tag);
	assert_int_equal(access(p, F_OK), -1);
	/* twice is fine */
	assert_int_equal(net_node_teardown(node, &err), 0);
	/* attach without setup refuses before making a bridge without rules */
	assert_int_equal(net_attach(node, a1.tenant, a1.id, a1.addr, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "net_node_setup"));
	assert_false(link_there(a1.n.bridge));
	assert_int_equal(net_node_teardown(node, &err), 0);
	assert_int_equal(access(p, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_bad_args),
	    cmocka_unit_test(test_squash),
	};
	const struct CMUnitTest machine[] = {
	    cmocka_unit_test(test_setup_idempotent), cmocka_unit_test(test_attach),
	    cmocka_unit_test(test_isolation),	     cmocka_unit_test(test_reattach),
	    cmocka_unit_test(test_detach),	     cmocka_unit_test(test_timing),
	    cmocka_unit_test(test_teardown),
	};
	int failed;

	have_root = geteuid() == 0 && access("/usr/sbin/nft", X_OK) == 0 &&
		    access("/bin/busybox", X_OK) == 0;
	if (!have_root)
		fprintf(stderr, "test_net: not root (or no nft/busybox): machine tests skipped\n");
	failed = cmocka_run_group_tests_name("net names", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("net on this machine", machine, group_setup,
					      group_teardown);
	return failed ? 1 : 0;
}
