/*
 * teardown — remove everything a node's agent made on the machine, for
 * `ciel-agent teardown` (decommissioning a node, cleaning up after tests):
 * every container of STATE/runtime with its instance directory (overlay
 * unmounted, writable layer gone), every network object of the node (lib/net),
 * its cgroup parent "ciel/<node>" in every hierarchy, and STATE/instances.
 * Images, blobs and node.credentials stay: they are not running anything.
 *
 * Invariant: the recursive removal never crosses a mount point, and every
 * mount under STATE/instances is detached first, so a half-removed instance
 * can never make it delete through an overlay into a shared image.
 */
#ifndef CIEL_TEARDOWN_H
#define CIEL_TEARDOWN_H

#include <stdio.h>

#include "util/err.h"

/*
 * Run it all, going on past failures. Each thing that could not be removed is
 * one line "left: ..." on out. 0 if nothing is left, -1 (CIEL_EIO) otherwise.
 * The agent of the node must not be running.
 */
int teardown_node(const char *state, const char *node, const char *runtime, FILE *out,
		  struct ciel_err *err);

#endif
