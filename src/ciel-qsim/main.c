/*
 * ciel-qsim — run an OpenQASM circuit locally: `ciel-qsim [options] FILE.qasm`.
 *
 * Thin on purpose: parsing, transpiling and simulating live in lib/qsim, so
 * the control plane's agent and this tool give the same counts for the same
 * seed. The agent runs exactly
 *   ciel-qsim --output json --shots N --profile P --seed S --precision X
 *             --threads T --max-memory B FILE
 * and reads stdout: keep that interface stable.
 *
 * Exit codes: 0 ok, 1 failed, 2 usage. With --output json a failure is also
 * printed on stdout as {"error": {"code", "message", "field"}}.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qsim/qasm.h"
#include "qsim/qdev.h"
#include "qsim/qrun.h"
#include "qsim/qsim.h"

#define STATEVECTOR_MAX_QUBITS 20
#define SEED_MAX ((uint64_t)INT64_MAX) /* a JSON integer everywhere */

struct opts {
	struct qrun_opts run;
	const char *profile;
	const char *file;
	int json;
	int statevector;
	int emit_transpiled;
	int list_profiles;
	int progress;
	int seed_given;
};

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: ciel-qsim [options] FILE.qasm|-\n\n"
	    "Run an OpenQASM 2.0 (or Qiskit-style 3.0) circuit on the local state-vector\n"
	    "simulator, transpiled for a device profile, and print the counts.\n\n"
	    "Options:\n"
	    "  --shots N              shots to run (default 1024, at most %d)\n"
	    "  --profile NAME         device profile (default ideal; see --list-profiles)\n"
	    "  --seed N               random seed, 0..%" PRIu64 " (default: random, always "
	    "reported)\n"
	    "  --precision P          double (default) or single\n"
	    "  --threads N            threads (default: online cores)\n"
	    "  --max-memory BYTES     state memory limit, suffixes K M G T (default: "
	    "MemAvailable)\n"
	    "  --output FMT           table (default) or json\n"
	    "  --statevector          print the final amplitudes as JSON instead of shots\n"
	    "                         (ideal circuits without measure/reset, <= %d qubits)\n"
	    "  --emit-transpiled      print the circuit transpiled for the profile, do not run\n"
	    "  --list-profiles        list the device profiles\n"
	    "  --progress             print \"progress D/T\" lines on stderr\n"
	    "  --help                 show this help\n\n"
	    "Counts use Qiskit's convention: c[0] is the rightmost bit, registers are\n"
	    "separated by a space with the last-declared register on the left.\n"
	    "Profiles other than ideal emulate a device's gates, connectivity and noise in\n"
	    "the gate model; they are not the device.\n\n"
	    "Exit codes: 0 ok, 1 failed, 2 usage error.\n\n"
	    "Example:\n"
	    "  ciel-qsim --shots 4000 --profile superconducting bell.qasm\n",
	    QRUN_MAX_SHOTS, SEED_MAX, STATEVECTOR_MAX_QUBITS);
}

/* Print err as the tool's failure: JSON on stdout in json mode, always on stderr. */
static int fail(const struct opts *o, const struct ciel_err *err, int code)
{
	fprintf(stderr, "ciel-qsim: %s\n", err->msg);
	if (o->json) {
		json_t *e =
		    json_pack("{s:{s:s,s:s,s:s}}", "error", "code", ciel_code_name(err->code),
			      "message", err->msg, "field", err->field);

		if (e) {
			json_dumpf(e, stdout, JSON_INDENT(2));
			fputc('\n', stdout);
			json_decref(e);
		}
	}
	return code;
}

static int usage_error(const struct opts *o, const char *field, const char *fmt, const char *arg)
{
	struct ciel_err err = {0};

	ciel_err_field(&err, CIEL_EINVAL, field, fmt, arg);
	if (!o->json)
		fprintf(stderr, "Run 'ciel-qsim --help' for usage.\n");
	return fail(o, &err, 2);
}

static int bad_value(const struct opts *o, const char *flag, const char *arg)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "--%s: bad value '%s'", flag, arg);
	return usage_error(o, flag, "%s", msg);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s[0] || s[0] == '-' || s[0] == '+')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "4G", "512M", "1024", "2GiB": binary multiples. */
static int parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	if (!s[0] || s[0] == '-' || s[0] == '+')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10;
		break;
	case 'M':
	case 'm':
		shift = 20;
		break;
	case 'G':
	case 'g':
		shift = 30;
		break;
	case 'T':
	case 't':
		shift = 40;
		break;
	}
	if (shift)
		end++;
	if (shift && *end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static uint64_t random_seed(void)
{
	uint64_t v = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
			v = 0;
		close(fd);
	}
	if (!v) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
	}
	/* 2^53 - 1: exact in every JSON reader, JavaScript's included */
	return v & ((1ULL << 53) - 1);
}

static int parse_args(struct opts *o, int argc, char **argv, int *rc)
{
	enum {
		O_SHOTS = 256,
		O_PROFILE,
		O_SEED,
		O_PREC,
		O_THREADS,
		O_MAXMEM,
		O_OUTPUT,
		O_SV,
		O_EMIT,
		O_LIST,
		O_PROGRESS,
		O_HELP
	};
	static const struct option lo[] = {
	    {"shots", required_argument, NULL, O_SHOTS},
	    {"profile", required_argument, NULL, O_PROFILE},
	    {"seed", required_argument, NULL, O_SEED},
	    {"precision", required_argument, NULL, O_PREC},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"max-memory", required_argument, NULL, O_MAXMEM},
	    {"output", required_argument, NULL, O_OUTPUT},
	    {"statevector", no_argument, NULL, O_SV},
	    {"emit-transpiled", no_argument, NULL, O_EMIT},
	    {"list-profiles", no_argument, NULL, O_LIST},
	    {"progress", no_argument, NULL, O_PROGRESS},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c;

	/* --output first, so that errors about earlier flags already come out as JSON */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--output=json") == 0 ||
		    (strcmp(argv[i], "--output") == 0 && i + 1 < argc &&
		     strcmp(argv[i + 1], "json") == 0))
			o->json = 1;
	}
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SHOTS:
			if (parse_u64(optarg, QRUN_MAX_SHOTS, &v) < 0 || v < 1)
				goto bad_value;
			o->run.shots = (int)v;
			break;
		case O_PROFILE:
			o->profile = optarg;
			break;
		case O_SEED:
			if (parse_u64(optarg, SEED_MAX, &v) < 0)
				goto bad_value;
			o->run.seed = v;
			o->seed_given = 1;
			break;
		case O_PREC:
			if (strcmp(optarg, "double") == 0)
				o->run.prec = QSIM_DOUBLE;
			else if (strcmp(optarg, "single") == 0)
				o->run.prec = QSIM_SINGLE;
			else
				goto bad_value;
			break;
		case O_THREADS:
			if (parse_u64(optarg, 4096, &v) < 0 || v < 1)
				goto bad_value;
			o->run.threads = (int)v;
			break;
		case O_MAXMEM:
			if (parse_bytes(optarg, &v) < 0)
				goto bad_value;
			o->run.max_bytes = v;
			break;
		case O_OUTPUT:
			if (strcmp(optarg, "json") == 0)
				o->json = 1;
			else if (strcmp(optarg, "table") == 0)
				o->json = 0;
			else
				goto bad_value;
			break;
		case O_SV:
			o->statevector = 1;
			break;
		case O_EMIT:
			o->emit_transpiled = 1;
			break;
		case O_LIST:
			o->list_profiles = 1;
			break;
		case O_PROGRESS:
			o->progress = 1;
			break;
		case O_HELP:
			usage(stdout);
			*rc = 0;
			return -1;
		case ':':
			*rc = usage_error(o, "", "option %s needs a value", argv[optind - 1]);
			return -1;
		default:
			*rc = usage_error(o, "", "unknown option %s", argv[optind - 1]);
			return -1;
		}
	}
	if (o->list_profiles)
		return 0;
	if (optind != argc - 1) {
		*rc = usage_error(o, "qasm", "%s",
				  optind >= argc ? "give one QASM file (or - for stdin)"
						 : "give only one QASM file");
		return -1;
	}
	o->file = argv[optind];
	if (o->statevector && o->profile && strcmp(o->profile, "ideal") != 0) {
		*rc = usage_error(o, "profile",
				  "--statevector runs the ideal circuit: drop --profile %s",
				  o->profile);
		return -1;
	}
	return 0;
bad_value:
	*rc = bad_value(o, lo[c - O_SHOTS].name, optarg);
	return -1;
}

/* The whole file, at most QASM_MAX_BYTES; malloc'd, NUL-terminated. */
static char *read_input(const char *path, size_t *len, struct ciel_err *err)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = QASM_MAX_BYTES + 1, n = 0, r;
	char *buf;

	if (!f) {
		ciel_err_sys(err, CIEL_EINVAL, errno, "open %s", path);
		snprintf(err->field, sizeof(err->field), "qasm");
		return NULL;
	}
	buf = malloc(cap + 1);
	if (!buf) {
		ciel_err_set(err, CIEL_ENOMEM, "read %s: out of memory", path);
		goto out;
	}
	while ((r = fread(buf + n, 1, cap - n, f)) > 0)
		n += r;
	if (ferror(f)) {
		ciel_err_sys(err, CIEL_EIO, errno, "read %s", path);
		goto fail;
	}
	if (n > QASM_MAX_BYTES) {
		ciel_err_field(err, CIEL_ETOOBIG, "qasm", "%s: more than %u bytes of QASM", path,
			       QASM_MAX_BYTES);
		goto fail;
	}
	buf[n] = 0;
	*len = n;
	goto out;
fail:
	free(buf);
	buf = NULL;
out:
	if (f != stdin)
		fclose(f);
	return buf;
}

static void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	fputc('\n', stdout);
}

static int list_profiles(const struct opts *o)
{
	json_t *items = json_array();
	struct ciel_err err = {0};

	if (!items)
		goto nomem;
	for (size_t i = 0; i < qdev_count(); i++) {
		const struct qdev_profile *p = qdev_at(i);
		json_t *j = qdev_to_json(p);

		if (!j || json_array_append_new(items, j) < 0) {
			json_decref(items);
			goto nomem;
		}
		if (o->json)
			continue;
		printf("%-16s %-16s %4d qubits  ", p->name, p->technology, p->nq);
		for (int k = 0; k < p->nnative; k++)
			printf("%s%s", k ? "," : "", p->native[k]);
		printf("%s\n    %s\n", p->all_to_all ? "  all-to-all" : "", p->description);
	}
	if (o->json) {
		json_t *top = json_pack("{s:o}", "items", items);

		if (!top)
			goto nomem;
		print_json(top);
		json_decref(top);
	} else {
		json_decref(items);
	}
	return 0;
nomem:
	ciel_err_set(&err, CIEL_ENOMEM, "list profiles: out of memory");
	return fail(o, &err, 1);
}

static int print_statevector(const struct opts *o, const struct circ *c)
{
	struct ciel_err err = {0};
	struct qsim *s;
	uint64_t n;

	if (c->nq > STATEVECTOR_MAX_QUBITS) {
		ciel_err_field(&err, CIEL_EINVAL, "qasm",
			       "--statevector prints at most %d qubits, the circuit has %d",
			       STATEVECTOR_MAX_QUBITS, c->nq);
		return fail(o, &err, 1);
	}
	s = qrun_statevector(c, o->run.prec, o->run.threads, &err);
	if (!s)
		return fail(o, &err, 1);
	n = (uint64_t)1 << c->nq;
	printf("{\"qubits\": %d, \"amplitudes\": [", c->nq);
	for (uint64_t i = 0; i < n; i++) {
		double re, im;

		qsim_get(s, i, &re, &im);
		printf("%s[%.17g, %.17g]", i ? ", " : "", re, im);
	}
	printf("]}\n");
	qsim_free(s);
	return 0;
}

static int emit_transpiled(const struct opts *o, const struct circ *c, const struct qdev_profile *p)
{
	struct ciel_err err = {0};
	struct circ w;
	char *text;
	int rc = 1;

	circ_init(&w);
	if (qdev_transpile(p, c, &w, &err) < 0) {
		rc = fail(o, &err, 1);
		goto out;
	}
	text = qasm_emit(&w);
	if (!text) {
		ciel_err_set(&err, CIEL_ENOMEM, "emit: out of memory");
		rc = fail(o, &err, 1);
		goto out;
	}
	if (o->json) {
		json_t *j =
		    json_pack("{s:s,s:s,s:I,s:o}", "profile", p->name, "transpiled", text, "depth",
			      (json_int_t)circ_depth(&w), "gate_counts", circ_gate_counts(&w));

		if (j)
			print_json(j);
		json_decref(j);
	} else {
		fputs(text, stdout);
	}
	free(text);
	rc = 0;
out:
	circ_release(&w);
	return rc;
}

static void on_progress(void *arg, int done, int total)
{
	(void)arg;
	fprintf(stderr, "progress %d/%d\n", done, total);
}

static void print_table(const struct opts *o, const struct qrun_result *res)
{
	qrun_print_counts(stdout, res->counts, SIZE_MAX);
	printf("\nshots %d, kept %d, method %s, qubits %d, depth %zu, seed %" PRIu64
	       ", profile %s, %.3f s\n",
	       res->shots, res->shots_kept, res->method, res->qubits, res->depth, res->seed,
	       o->profile ? o->profile : "ideal", res->seconds);
}

static int run(struct opts *o, const struct circ *c, const struct qdev_profile *p)
{
	struct qrun_result res;
	struct ciel_err err = {0};
	int rc = 0;

	o->run.profile = p;
	if (o->progress)
		o->run.progress = on_progress;
	if (qrun(c, &o->run, &res, &err) < 0) {
		rc = fail(o, &err, 1);
	} else if (o->json) {
		json_t *j = qrun_result_json(&res);

		if (j) {
			json_object_set_new(j, "profile", json_string(p->name));
			print_json(j);
			json_decref(j);
		} else {
			ciel_err_set(&err, CIEL_ENOMEM, "result: out of memory");
			rc = fail(o, &err, 1);
		}
	} else {
		print_table(o, &res);
	}
	qrun_result_release(&res);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = {.run = {.shots = 1024, .prec = QSIM_DOUBLE}};
	const struct qdev_profile *p;
	struct ciel_err err = {0};
	struct circ c;
	char *text;
	size_t len = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int rc = 2;

	o.run.threads = ncpu > 0 ? (int)ncpu : 1;
	if (parse_args(&o, argc, argv, &rc) < 0)
		return rc;
	if (o.list_profiles)
		return list_profiles(&o);
	if (!o.seed_given)
		o.run.seed = random_seed();
	p = qdev_find(o.profile ? o.profile : "ideal", &err);
	if (!p)
		return fail(&o, &err, 2);
	text = read_input(o.file, &len, &err);
	if (!text)
		return fail(&o, &err, 1);
	circ_init(&c);
	if (qasm_parse(text, len, &c, &err) < 0) {
		if (!err.field[0])
			snprintf(err.field, sizeof(err.field), "qasm");
		rc = fail(&o, &err, 1);
	} else if (o.statevector) {
		rc = print_statevector(&o, &c);
	} else if (o.emit_transpiled) {
		rc = emit_transpiled(&o, &c, p);
	} else {
		rc = run(&o, &c, p);
	}
	circ_release(&c);
	free(text);
	return rc;
}
