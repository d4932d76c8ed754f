/*
 * bench-qsim — the simulator's speed beside this machine's memory bandwidth.
 *
 * For each qubit count and precision: (a) H on every qubit and a CNOT
 * ladder, three times; (b) QFT on all qubits. Times fusion plus the run,
 * and one unfused gate alone. A state-vector pass is memory-bound, so the
 * figure that matters is the effective bandwidth (every pass reads and
 * writes the whole state) against a measured read+write sweep.
 *
 *   bench-qsim [--threads N] [--maxk K] [--output json|table] [NQ ...]
 */
#include "qsim/circ.h"
#include "qsim/qfuse.h"
#include "qsim/qsim.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BW_BYTES ((size_t)2 << 30)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct bw_arg {
	double *a;
	size_t b, e;
	pthread_barrier_t *bar;
	int reps;
};

typedef double bw_v8 __attribute__((vector_size(64)));
typedef double bw_v4 __attribute__((vector_size(32)));

/* the sweep in the widest vectors the CPU has, as the kernels use them */
__attribute__((target("avx512f"))) static void scale512(double *a, size_t b, size_t e)
{
	for (bw_v8 *v = (bw_v8 *)(a + b); v < (bw_v8 *)(a + e); v++)
		*v *= 1.0000001;
}

__attribute__((target("avx2"))) static void scale256(double *a, size_t b, size_t e)
{
	for (bw_v4 *v = (bw_v4 *)(a + b); v < (bw_v4 *)(a + e); v++)
		*v *= 1.0000001;
}

static void scale(double *a, size_t b, size_t e)
{
	for (size_t i = b; i < e; i++)
		a[i] *= 1.0000001;
}

static void *bw_worker(void *p)
{
	struct bw_arg *w = p;
	void (*fn)(double *, size_t, size_t) = scale;

	if (__builtin_cpu_supports("avx512f"))
		fn = scale512;
	else if (__builtin_cpu_supports("avx2"))
		fn = scale256;
	for (int r = 0; r < w->reps; r++) {
		pthread_barrier_wait(w->bar);
		fn(w->a, w->b, w->e);
		pthread_barrier_wait(w->bar);
	}
	return NULL;
}

/* STREAM "scale" in place over 2 GiB: bytes read + written per second, best of 4. */
static double measure_bw(int threads)
{
	size_t n = BW_BYTES / sizeof(double);
	double *a =
	    mmap(NULL, BW_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pthread_t th[256];
	struct bw_arg w[256];
	pthread_barrier_t bar;
	int reps = 4;
	double best = 0;

	if (a == MAP_FAILED)
		return 0;
	madvise(a, BW_BYTES, MADV_HUGEPAGE);
	memset(a, 1, BW_BYTES);
	pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
	for (int t = 0; t < threads; t++) {
		w[t] = (struct bw_arg){a, n / 8 * t / threads * 8, n / 8 * (t + 1) / threads * 8,
				       &bar, reps};
		pthread_create(&th[t], NULL, bw_worker, &w[t]);
	}
	for (int r = 0; r < reps; r++) {
		double t0;

		pthread_barrier_wait(&bar);
		t0 = now();
		pthread_barrier_wait(&bar);
		best = fmax(best, 2.0 * BW_BYTES / (now() - t0) / 1e9);
	}
	for (int t = 0; t < threads; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&bar);
	munmap(a, BW_BYTES);
	return best;
}

static void push(struct circ *c, const char *name, double p, int q0, int q1)
{
	struct circ_op op;
	int np = circ_std_nparams(name);

	if (circ_std_gate(name, &p, np, &op, NULL) < 0)
		abort();
	op.q[0] = q0;
	op.q[1] = q1;
	if (circ_push(c, &op, NULL) < 0)
		abort();
}

static void layer_circuit(struct circ *c, int n)
{
	circ_init(c);
	for (int rep = 0; rep < 3; rep++) {
		for (int q = 0; q < n; q++)
			push(c, "h", 0, q, 0);
		for (int q = 0; q + 1 < n; q++)
			push(c, "cx", 0, q, q + 1);
	}
}

static void qft_circuit(struct circ *c, int n)
{
	circ_init(c);
	for (int j = n - 1; j >= 0; j--) {
		push(c, "h", 0, j, 0);
		for (int k = j - 1; k >= 0; k--)
			push(c, "cp", M_PI / (double)(1ull << (j - k)), j, k);
	}
	for (int i = 0; i < n / 2; i++)
		push(c, "swap", 0, i, n - 1 - i);
}

struct result {
	const char *circuit, *prec;
	int nq;
	size_t gates, passes;
	double seconds, per_gate_ms, gbs, ratio, unfused_gate_ms;
};

/* One unfused gate (H on the middle qubit) applied alone: best of 3. */
static double unfused_gate_ms(struct qsim *s, int nq)
{
	struct circ_op op;
	int q = nq / 2;
	double best = 1e30;

	circ_std_gate("h", NULL, 0, &op, NULL);
	for (int r = 0; r < 3; r++) {
		double t0 = now();

		qsim_apply(s, NULL, 0, &q, 1, op.m);
		best = fmin(best, now() - t0);
	}
	return best * 1e3;
}

static int block = -1; /* --block B: cache-block qubits, 0 none; -1 default */

static int run_case(const char *name, int nq, enum qsim_prec prec, int threads, int maxk, double bw,
		    struct result *r)
{
	struct ciel_err err;
	struct qsim *s = qsim_new(nq, prec, threads, 0, &err);
	struct circ c;
	struct qfuse_prog prog = {0};
	double t0, t1;

	if (!s) {
		fprintf(stderr, "bench-qsim: %s\n", err.msg);
		return -1;
	}
	if (block >= 0 && qsim_set_block_qubits(s, block) < 0)
		fprintf(stderr, "bench-qsim: --block %d refused, default kept\n", block);
	if (strcmp(name, "layer3") == 0)
		layer_circuit(&c, nq);
	else
		qft_circuit(&c, nq);
	/* touch the state once so page faults are not timed */
	qsim_zero(s);
	t0 = now();
	if (qfuse_build(c.ops, c.n, maxk, &prog, &err) < 0) {
		fprintf(stderr, "bench-qsim: %s\n", err.msg);
		return -1;
	}
	qfuse_run(&prog, s);
	t1 = now();
	r->circuit = name;
	r->prec = prec == QSIM_DOUBLE ? "double" : "single";
	r->nq = nq;
	r->gates = c.n;
	r->passes = qfuse_passes(&prog, s);
	r->seconds = t1 - t0;
	r->per_gate_ms = r->seconds / (double)c.n * 1e3;
	r->gbs = (double)r->passes * 2.0 * (double)qsim_state_bytes(nq, prec) / r->seconds / 1e9;
	r->ratio = r->gbs / bw;
	r->unfused_gate_ms = unfused_gate_ms(s, nq);
	qfuse_release(&prog);
	circ_release(&c);
	qsim_free(s);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-qsim [--threads N] [--maxk K] [--block B] [--no-bw] "
			"[--output json|table] "
			"[NQ ...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), maxk = QFUSE_MAXK_DEFAULT, json = 0;
	int nqs[16], nn = 0;
	struct result res[64];
	int nres = 0, nobw = 0;
	double bw;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--maxk") == 0 && i + 1 < argc)
			maxk = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--block") == 0 && i + 1 < argc)
			block = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--no-bw") == 0)
			nobw = 1;
		else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc)
			json = strcmp(argv[++i], "json") == 0;
		else if (argv[i][0] == '-')
			usage();
		else if (nn < 16)
			nqs[nn++] = (int)strtol(argv[i], NULL, 10);
	}
	if (threads < 1 || threads > 256 || maxk < 1 || maxk > QSIM_MAX_FUSED)
		usage();
	if (!nn) {
		nqs[nn++] = 24;
		nqs[nn++] = 26;
		nqs[nn++] = 28;
	}
	bw = nobw ? 1 : measure_bw(threads);
	if (!json)
		printf(
		    "kernel %s, %d threads, maxk %d, memory bandwidth %.1f GB/s (read+write, "
		    "in-place scale over 2 GiB)\n\n%-7s %-6s %3s %6s %6s %9s %11s %8s %6s %12s\n",
		    qsim_kernel_name(), threads, maxk, bw, "circuit", "prec", "nq", "gates",
		    "passes", "seconds", "ms/gate", "GB/s", "of bw", "1 gate ms");
	for (int i = 0; i < nn; i++)
		for (int p = 0; p < 2; p++)
			for (int k = 0; k < 2; k++) {
				struct result *r = &res[nres];

				if (run_case(k ? "qft" : "layer3", nqs[i],
					     p ? QSIM_SINGLE : QSIM_DOUBLE, threads, maxk, bw,
					     r) < 0)
					continue;
				nres++;
				if (!json) {
					printf("%-7s %-6s %3d %6zu %6zu %9.3f %11.3f %8.1f %5.0f%% "
					       "%12.2f\n",
					       r->circuit, r->prec, r->nq, r->gates, r->passes,
					       r->seconds, r->per_gate_ms, r->gbs, 100 * r->ratio,
					       r->unfused_gate_ms);
					fflush(stdout);
				}
			}
	if (json) {
		json_t *o = json_object(), *a = json_array();

		json_object_set_new(o, "kernel", json_string(qsim_kernel_name()));
		json_object_set_new(o, "threads", json_integer(threads));
		json_object_set_new(o, "maxk", json_integer(maxk));
		json_object_set_new(o, "bandwidth_gbs", json_real(bw));
		for (int i = 0; i < nres; i++) {
			struct result *r = &res[i];

			json_array_append_new(
			    a,
			    json_pack("{s:s, s:s, s:i, s:I, s:I, s:f, s:f, s:f, s:f, s:f}",
				      "circuit", r->circuit, "precision", r->prec, "qubits", r->nq,
				      "gates", (json_int_t)r->gates, "passes",
				      (json_int_t)r->passes, "seconds", r->seconds, "ms_per_gate",
				      r->per_gate_ms, "gbs", r->gbs, "bandwidth_ratio", r->ratio,
				      "unfused_gate_ms", r->unfused_gate_ms));
		}
		json_object_set_new(o, "results", a);
		json_object_set_new(o, "anchors",
				    json_pack("{s:f, s:f, s:f, s:f}", "cpp_float_layer3_26q_s",
					      0.93, "cpp_float_qft26_s", 4.7,
					      "c_double_gate_26q_ms", 50.0, "c_double_qft26_s",
					      12.0));
		json_dumpf(o, stdout, JSON_INDENT(2));
		printf("\n");
		json_decref(o);
	} else {
		printf("\nanchors (this machine, from the issue): C++ simulator, float, fused: "
		       "layer3 26q 0.93 s, QFT-26 4.7 s;\n"
		       "C simulator, double: 50 ms per gate at 26q, QFT-26 12 s.\n"
		       "targets: beat the C++ one in float, the C one >= 5x in double, >= 70%% "
		       "of bandwidth.\n");
	}
	return 0;
}
