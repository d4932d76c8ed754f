/*
 * net — a private network per tenant on a node: one Linux bridge per
 * (node, tenant), one veth pair per instance whose inner end is eth0 of the
 * instance's own network namespace, an address from the tenant's subnet.
 *
 * Invariants:
 * - Bridges carry no host address and the host does not route between
 *   them: a tenant's instances reach each other at layer 2 and nothing
 *   else. nftables makes it explicit, in one table per node
 *   ("inet ciel_<nodehash>"): traffic entering the host from a tenant bridge
 *   is dropped (the host's control ports are unreachable), and nothing is
 *   forwarded between tenant bridges.
 * - Every name is derived from (node, tenant, instance) by hashing, so it
 *   fits IFNAMSIZ and a restarted agent finds what it made: attach and
 *   detach are idempotent, and teardown removes all of a node's objects.
 * - Only `ip` and `nft` are run (fork/exec, no shell), with fixed argv.
 * Multi-node (VXLAN per tenant) plugs in at the bridge later.
 */
#ifndef CIEL_NET_H
#define CIEL_NET_H

#include "util/err.h"

/*
 * Where net records what it made for each node: NET_STATE_DIR/<8 hex of
 * the node>/ holds an empty file per bridge ("br.NAME") and per netns
 * ("ns.NAME"), and a lock that serializes the calls below for one node.
 * Teardown reads it to find the namespaces; it lives in /run, as long as
 * the objects it names.
 */
#define NET_STATE_DIR "/run/ciel/net"

struct net_names {
	char netns[64];	      /* "ciel-<hash>" under /var/run/netns */
	char netns_path[128]; /* "/var/run/netns/ciel-<hash>" */
	char bridge[16];      /* "cb<13 hex>" */
	char veth_host[16];   /* "cv<13 hex>" */
	char veth_peer[16];   /* temporary name before it becomes eth0 inside */
};

/* The names for an instance (no system call). */
void net_names(const char *node, const char *tenant, const char *instance, struct net_names *out);

/* Create the node's nftables table and chains (idempotent). */
int net_node_setup(const char *node, struct ciel_err *err);

/*
 * Give an instance its namespace, veth and address. addr is the instance's
 * address with prefix length, "10.200.3.7/24" (chosen by the control plane).
 * Creates the tenant bridge on first use. Idempotent.
 */
int net_attach(const char *node, const char *tenant, const char *instance, const char *addr,
	       struct net_names *out, struct ciel_err *err);

/* Remove the instance's veth and namespace; the tenant bridge goes with its
 * last port. Idempotent (absent is fine). */
int net_detach(const char *node, const char *tenant, const char *instance, struct ciel_err *err);

/* Remove every bridge, veth, namespace and the nft table of the node. */
int net_node_teardown(const char *node, struct ciel_err *err);

#endif
