/*
 * ciel — the command-line client: `ciel [global flags] <group> <verb> [args]`.
 *
 * main() pulls the global flags out of argv (they may appear anywhere before
 * a "--", kubectl style), then dispatches on the table below; each group
 * lives in its own file (tenant.c, key.c, ...) and every level answers
 * --help. Exit codes: 0 ok, 1 failed, 2 usage.
 */
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/log.h"

#ifndef CIEL_VERSION
#define CIEL_VERSION "0.1.0-dev"
#endif

static const struct entry {
	const char *name;
	const struct group *group;
	int (*fn)(struct cli *cli, int argc, char **argv);
	const char *summary; /* for fn entries; groups carry their own */
} entries[] = {
    {"up", NULL, cmd_up, "start an all-in-one region on this machine"},
    {"down", NULL, cmd_down, "stop the region `ciel up` started"},
    {"region", &group_region, NULL, NULL},
    {"zone", &group_zone, NULL, NULL},
    {"node", &group_node, NULL, NULL},
    {"tenant", &group_tenant, NULL, NULL},
    {"key", &group_key, NULL, NULL},
    {"principal", &group_principal, NULL, NULL},
    {"quota", &group_quota, NULL, NULL},
    {"image", &group_image, NULL, NULL},
    {"instance", &group_instance, NULL, NULL},
    {"quantum", &group_quantum, NULL, NULL},
    {"model", &group_model, NULL, NULL},
    {"apikey", &group_apikey, NULL, NULL},
    {"chat", NULL, cmd_chat, "ask a model and print its answer as it streams"},
    {"audit", &group_audit, NULL, NULL},
};

static void print_help(FILE *f)
{
	fprintf(
	    f,
	    "Usage: ciel [global flags] <command> [args] [flags]\n\n"
	    "ciel is the client of a ciel region: tenants, access keys, zones, nodes, "
	    "quotas, images, instances, quantum jobs, models and the audit trail.\n\nCommands:\n");
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
		fprintf(f, "  %-10s %s\n", entries[i].name,
			entries[i].group ? entries[i].group->summary : entries[i].summary);
	fputc('\n', f);
	cli_print_global_flags(f);
	fprintf(f, "  --%-22s %s\n", "help", "show help (also after any command)");
	fprintf(f, "  --%-22s %s\n", "version", "print the version");
	fprintf(f,
		"\nCredentials come from the environment (CIEL_KEY_ID, CIEL_SECRET, CIEL_SCOPE,\n"
		"CIEL_CA_FILE) or the profile; a secret is never taken from a flag.\n"
		"\nExit codes: 0 ok, 1 failed, 2 usage error.\n"
		"\nExample:\n"
		"  ciel up\n"
		"  ciel zone list\n"
		"  ciel tenant create acme --save-profile acme\n"
		"  ciel --profile acme image import alpine alpine-minirootfs.tar.gz\n"
		"  ciel --profile acme instance run alpine --name clock --wait -- sh -c 'while "
		"date; do sleep 5; done'\n"
		"  ciel --profile acme instance logs clock --follow\n"
		"  ciel --profile acme chat stories \"Once upon a time\"\n"
		"  ciel --profile acme audit list\n");
}

/*
 * Flags a command takes for itself once its name is given: in `ciel quantum
 * run FILE --profile superconducting` the profile is the device's (as the
 * issue and DESIGN.md spell it). The credentials profile then goes before
 * the command (`ciel --profile acme quantum ...`) or in CIEL_PROFILE.
 */
static const struct {
	const char *cmd, *flag;
} claimed[] = {
    {"quantum", "--profile"},
};

static bool is_claimed(const char *cmd, const char *a)
{
	for (size_t i = 0; i < sizeof(claimed) / sizeof(claimed[0]); i++) {
		size_t n = strlen(claimed[i].flag);

		if (strcmp(cmd, claimed[i].cmd) == 0 && strncmp(a, claimed[i].flag, n) == 0 &&
		    (a[n] == '\0' || a[n] == '='))
			return true;
	}
	return false;
}

static const char *const global_value_flags[] = {"endpoint", "profile", "credentials", "output",
						 "tenant"};

/* If a is a global flag with a value, store it and return how many words it
 * took (1 or 2); 0 if a is not a global flag; -1 if its value is missing. */
static int take_global(struct cli *cli, const char **output, int argc, char **argv, int i)
{
	const char *a = argv[i], *name, *eq, *val;
	const char **dst[] = {&cli->endpoint, &cli->profile, &cli->credentials, output,
			      &cli->tenant};
	size_t len;

	if (strcmp(a, "-o") == 0)
		a = "--output";
	if (strncmp(a, "--", 2) != 0)
		return 0;
	name = a + 2;
	eq = strchr(name, '=');
	len = eq ? (size_t)(eq - name) : strlen(name);
	for (size_t k = 0; k < sizeof(dst) / sizeof(dst[0]); k++) {
		if (strlen(global_value_flags[k]) != len ||
		    memcmp(global_value_flags[k], name, len) != 0)
			continue;
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[i + 1];
		} else {
			fprintf(stderr, "ciel: usage: --%s needs a value\n", global_value_flags[k]);
			return -1;
		}
		if (!*val) {
			fprintf(stderr, "ciel: usage: --%s needs a value\n", global_value_flags[k]);
			return -1;
		}
		*dst[k] = val;
		return eq ? 1 : 2;
	}
	return 0;
}

static int dispatch(struct cli *cli, int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		if (strcmp(entries[i].name, argv[0]) != 0)
			continue;
		if (entries[i].group)
			return cli_group_main(cli, entries[i].group, argc - 1, argv + 1);
		return entries[i].fn(cli, argc - 1, argv + 1);
	}
	fprintf(stderr,
		"ciel: usage: unknown command '%s'\nRun `ciel --help` for the list of "
		"commands.\n",
		argv[0]);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const char *output = NULL;
	char **words;
	int nw = 0, ret = EXIT_USAGE;
	bool rest = false;

	log_set_prog("ciel");
	words = calloc((size_t)argc + 2, sizeof(*words));
	if (!words) {
		fprintf(stderr, "ciel: out_of_memory: out of memory\n");
		return EXIT_FAIL;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int took;

		if (rest || strcmp(a, "--") == 0) {
			rest = true;
			words[nw++] = argv[i];
			continue;
		}
		if (nw > 0 && is_claimed(words[0], a)) {
			words[nw++] = argv[i];
			if (!strchr(a, '=') && i + 1 < argc)
				words[nw++] = argv[++i];
			continue;
		}
		took = take_global(&cli, &output, argc, argv, i);
		if (took < 0)
			goto out;
		if (took > 0) {
			i += took - 1;
			continue;
		}
		if (nw == 0 && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
			print_help(stdout);
			ret = EXIT_OK;
			goto out;
		}
		if (nw == 0 && strcmp(a, "--version") == 0) {
			printf("ciel %s\n", CIEL_VERSION);
			ret = EXIT_OK;
			goto out;
		}
		if (nw == 0 && a[0] == '-') {
			fprintf(stderr,
				"ciel: usage: unknown flag '%s'\nRun `ciel --help` for the "
				"global flags.\n",
				a);
			goto out;
		}
		words[nw++] = argv[i];
	}
	if (output) {
		if (strcmp(output, "json") == 0) {
			cli.output = OUT_JSON;
		} else if (strcmp(output, "table") == 0) {
			cli.output = OUT_TABLE;
		} else {
			fprintf(stderr, "ciel: usage: --output must be json or table, not '%s'\n",
				output);
			goto out;
		}
	}
	if (nw == 0) {
		print_help(stderr);
		goto out;
	}
	if (strcmp(words[0], "help") == 0) {
		if (nw == 1) {
			print_help(stdout);
			ret = EXIT_OK;
			goto out;
		}
		/* `ciel help tenant create` == `ciel tenant create --help` */
		words[nw++] = (char *)"--help";
		ret = dispatch(&cli, nw - 1, words + 1);
		goto out;
	}
	if (strcmp(words[0], "version") == 0) {
		printf("ciel %s\n", CIEL_VERSION);
		ret = EXIT_OK;
		goto out;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	ret = dispatch(&cli, nw, words);
	if (cli.client_ready)
		client_release(&cli.client);
	curl_global_cleanup();
out:
	free(words);
	return ret;
}
