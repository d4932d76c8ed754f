/*
 * teardown — see teardown.h. The order matters: containers first (they hold
 * the overlays, the cgroups and the network namespaces busy), then the
 * network, then the now empty cgroups, then the files.
 */
#include "agent/teardown.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "net/net.h"
#include "oci/oci.h"
#include "util/log.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

/* rmdir a cgroup and its children, deepest first: a cgroup's files cannot be
 * unlinked, an empty cgroup directory can be removed. */
static int rmdir_cgroup(const char *path)
{
	char sub[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(path);

	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) < sizeof(sub))
			rmdir_cgroup(sub);
	}
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

/* One cgroup parent; its "ciel" parent goes too if no other node uses it. */
static int remove_cgroup_at(const char *hier, const char *parent, FILE *out)
{
	char p[PATH_MAX], top[PATH_MAX];

	if ((size_t)snprintf(p, sizeof(p), "%s/%s", hier, parent) >= sizeof(p) ||
	    (size_t)snprintf(top, sizeof(top), "%s/ciel", hier) >= sizeof(top))
		return 0;
	if (rmdir_cgroup(p) < 0) {
		fprintf(out, "left: cgroup %s: %s\n", p, strerror(errno));
		return 1;
	}
	rmdir(top); /* fails harmlessly while another node of this machine has one */
	return 0;
}

/* "ciel/<node>" in the unified hierarchy, or under every v1 controller. */
static int remove_cgroups(const struct oci_runtime *rt, const char *node, FILE *out)
{
	char parent[160], hier[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int left = 0;

	if (rt && rt->cgroup_parent[0])
		snprintf(parent, sizeof(parent), "%s", rt->cgroup_parent);
	else
		snprintf(parent, sizeof(parent), "ciel/%s", node);
	if (rt && rt->cgroup_v2)
		return remove_cgroup_at(CGROUP_ROOT, parent, out);
	/* v1 or hybrid: one mount per controller plus "unified"; the
	 * co-mounted aliases (cpu -> cpu,cpuacct) are symlinks, skipped */
	d = opendir(CGROUP_ROOT);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(hier, sizeof(hier), CGROUP_ROOT "/%s", e->d_name) <
		    sizeof(hier))
			left += remove_cgroup_at(hier, parent, out);
	}
	closedir(d);
	return left;
}

/* Detach every mount under prefix (an overlay a failed remove left behind). */
static void unmount_under(const char *prefix)
{
	char line[8192], mp[4096];
	size_t n = strlen(prefix);
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..."; our paths hold no escapes */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		if (!strncmp(mp, prefix, n) && (mp[n] == '/' || mp[n] == '\0') &&
		    umount2(mp, MNT_DETACH) == 0)
			log_info("teardown unmounted path=%s", mp);
	}
	fclose(f);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

/* Remove the container and the network of every instance directory. */
static int remove_instances(const struct oci_runtime *rt, const char *instances, const char *node,
			    FILE *out)
{
	char tpath[PATH_MAX], dir[PATH_MAX], id[80];
	struct dirent *te, *ne;
	struct ciel_err e;
	DIR *td = opendir(instances), *nd;
	int left = 0;

	while (td && (te = readdir(td))) {
		if (!agent_name_valid(te->d_name) ||
		    (size_t)snprintf(tpath, sizeof(tpath), "%s/%s", instances, te->d_name) >=
			sizeof(tpath))
			continue;
		nd = opendir(tpath);
		while (nd && (ne = readdir(nd))) {
			struct stat st;

			/* N.json records go with the directory tree at the end */
			if (!agent_name_valid(ne->d_name) ||
			    (size_t)snprintf(dir, sizeof(dir), "%s/%s", tpath, ne->d_name) >=
				sizeof(dir) ||
			    lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
				continue;
			/* both names are at most 31 characters: the id always fits */
			snprintf(id, sizeof(id), "%.31s-%.31s", te->d_name, ne->d_name);
			if (oci_remove(rt, id, dir, &e) < 0) {
				fprintf(out, "left: container %s: %s\n", id, e.msg);
				left++;
			}
			if (net_detach(node, te->d_name, ne->d_name, &e) < 0) {
				fprintf(out, "left: network of %s: %s\n", id, e.msg);
				left++;
			}
		}
		if (nd)
			closedir(nd);
	}
	if (td)
		closedir(td);
	return left;
}

/* Containers the runtime still knows; with remove set, try to remove them. */
static int sweep_runtime(const struct oci_runtime *rt, const char *instances, bool remove,
			 FILE *out)
{
	char gone[PATH_MAX];
	struct ciel_err e;
	char **ids = NULL;
	int left = 0;

	if (oci_list(rt, &ids, &e) < 0) {
		fprintf(out, "left: containers unknown (%s)\n", e.msg);
		return 1;
	}
	for (size_t i = 0; ids[i]; i++) {
		/* no directory left for it (a crash between create and record):
		 * a path that does not exist lets oci_remove skip the files */
		if (remove &&
		    (size_t)snprintf(gone, sizeof(gone), "%s/.gone/%s", instances, ids[i]) <
			sizeof(gone) &&
		    oci_remove(rt, ids[i], gone, &e) == 0)
			continue;
		fprintf(out, "left: container %s%s%s\n", ids[i], remove ? ": " : "",
			remove ? e.msg : "");
		left++;
	}
	oci_ids_free(ids);
	return left;
}

int teardown_node(const char *state, const char *node, const char *runtime, FILE *out,
		  struct ciel_err *err)
{
	char root[PATH_MAX], instances[PATH_MAX], real[PATH_MAX];
	char host_id[80];
	struct oci_runtime rt;
	struct ciel_err e;
	bool have_rt;
	int left = 0;

	agent_host_id(state, node, host_id, sizeof(host_id));
	node = host_id;
	if ((size_t)snprintf(root, sizeof(root), "%s/runtime", state) >= sizeof(root) ||
	    (size_t)snprintf(instances, sizeof(instances), "%s/instances", state) >=
		sizeof(instances))
		return ciel_err_set(err, CIEL_EINVAL, "state path too long");
	have_rt = oci_detect(&rt, runtime ? runtime : "auto", root, node, &e) == 0;
	if (have_rt) {
		left += remove_instances(&rt, instances, node, out);
		left += sweep_runtime(&rt, instances, true, out);
	} else {
		fprintf(out, "left: containers (no runtime: %s)\n", e.msg);
		left++;
	}
	if (net_node_teardown(node, &e) < 0) {
		fprintf(out, "left: network: %s\n", e.msg);
		left++;
	}
	left += remove_cgroups(have_rt ? &rt : NULL, node, out);
	if (realpath(instances, real)) {
		unmount_under(real);
		if (nftw(real, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 ||
		    access(real, F_OK) == 0) {
			fprintf(out, "left: %s: %s\n", real, errno ? strerror(errno) : "not empty");
			left++;
		}
	} else if (errno != ENOENT) {
		fprintf(out, "left: %s: %s\n", instances, strerror(errno));
		left++;
	}
	if (left)
		return ciel_err_set(err, CIEL_EIO, "teardown node=%s: %d thing(s) left", node,
				    left);
	log_info("teardown done node=%s", node);
	return 0;
}
