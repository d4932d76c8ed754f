/*
 * bench-llm — the LLM engine's speed beside this machine's memory bandwidth.
 *
 * Decode is memory-bound: each token reads every weight once, so the bound
 * is (measured read bandwidth) / (bytes of weights per token), and the ratio
 * to it is the figure that matters. For each weight type (random weights in
 * TinyLlama-1.1B's shape, generated once and cached): prefill tok/s for a
 * 128-token prompt and decode tok/s for 128 tokens at 1 and 2 threads,
 * through llm_forward directly. Then the real worker (`ciel-llm serve`):
 * aggregate tok/s of 1, 4 and 8 concurrent streaming requests, the ratio of
 * 8 streams to 1 (continuous batching reads the weights once per step for
 * every stream), and the worker's peak RSS against weights + KV + 64 MiB.
 *
 *   bench-llm [--models DIR] [--ciel-llm PATH] [--types q8_0,q4_0]
 *             [--threads 1,2] [--prompt N] [--gen N] [--streams 1,4,8]
 *             [--serve-tokens N] [--serve-type T] [--no-serve] [--output json|table]
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "llm/kern.h"
#include "llm/model.h"
#include "util/err.h"

#define BW_BYTES ((size_t)1 << 30)
#define MAX_LIST 8
#define MIB (1024.0 * 1024.0)

struct opts {
	const char *models, *ciel_llm, *serve_type;
	char types[MAX_LIST][16];
	int n_types;
	int threads[MAX_LIST], n_threads;
	int streams[MAX_LIST], n_streams;
	int prompt, gen, serve_tokens, serve, json;
};

static json_t *out_json;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- memory read bandwidth ---- */

typedef long long bw_v8 __attribute__((vector_size(64)));
typedef long long bw_v4 __attribute__((vector_size(32)));

/* a pure read sweep in the widest vectors the CPU has, as the kernels read weights */
__attribute__((target("avx512f"))) static long long read512(const char *a, size_t n)
{
	bw_v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
	for (const bw_v8 *v = (const bw_v8 *)a; v + 4 <= (const bw_v8 *)(a + n); v += 4) {
		s0 ^= v[0];
		s1 ^= v[1];
		s2 ^= v[2];
		s3 ^= v[3];
	}
	s0 ^= s1 ^ s2 ^ s3;
	return s0[0] ^ s0[7];
}

__attribute__((target("avx2"))) static long long read256(const char *a, size_t n)
{
	bw_v4 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
	for (const bw_v4 *v = (const bw_v4 *)a; v + 4 <= (const bw_v4 *)(a + n); v += 4) {
		s0 ^= v[0];
		s1 ^= v[1];
		s2 ^= v[2];
		s3 ^= v[3];
	}
	s0 ^= s1 ^ s2 ^ s3;
	return s0[0] ^ s0[3];
}

static long long read_any(const char *a, size_t n)
{
	long long s = 0;
	if (__builtin_cpu_supports("avx512f"))
		return read512(a, n);
	if (__builtin_cpu_supports("avx2"))
		return read256(a, n);
	for (const long long *p = (const long long *)a; p < (const long long *)(a + n); p++)
		s ^= *p;
	return s;
}

struct bw_arg {
	const char *a;
	size_t n;
	pthread_barrier_t *bar;
	double t; /* seconds of this thread's sweep */
	long long sink;
};

static void *bw_thread(void *p)
{
	struct bw_arg *b = p;
	pthread_barrier_wait(b->bar);
	double t0 = now();
	b->sink = read_any(b->a, b->n);
	b->t = now() - t0;
	return NULL;
}

/* Best of 3 sweeps of the whole buffer split between threads: bytes per second. */
static double bandwidth(char *buf, int threads)
{
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		pthread_t tid[MAX_LIST];
		struct bw_arg a[MAX_LIST];
		pthread_barrier_t bar;
		size_t per = BW_BYTES / (size_t)threads / 256 * 256;
		pthread_barrier_init(&bar, NULL, (unsigned)threads);
		double t0 = now();
		for (int i = 0; i < threads; i++) {
			a[i] = (struct bw_arg){.a = buf + (size_t)i * per, .n = per, .bar = &bar};
			if (i)
				pthread_create(&tid[i], NULL, bw_thread, &a[i]);
		}
		bw_thread(&a[0]);
		for (int i = 1; i < threads; i++)
			pthread_join(tid[i], NULL);
		double t = now() - t0;
		pthread_barrier_destroy(&bar);
		double bw = (double)per * threads / t;
		if (bw > best)
			best = bw;
	}
	return best;
}

/*
 * Measure in a child, so the 1 GiB buffer never counts in this process's
 * peak RSS. Results for each thread count come back through a pipe.
 */
static int measure_bandwidth(const struct opts *o, double *bw)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fd[0]);
		char *buf = aligned_alloc(4096, BW_BYTES);
		if (!buf)
			_exit(1);
		memset(buf, 1, BW_BYTES);
		for (int i = 0; i < o->n_threads; i++) {
			double b = bandwidth(buf, o->threads[i]);
			if (write(fd[1], &b, sizeof(b)) != sizeof(b))
				_exit(1);
		}
		_exit(0);
	}
	close(fd[1]);
	int ok = 0;
	for (int i = 0; i < o->n_threads; i++)
		ok += read(fd[0], &bw[i], sizeof(double)) == sizeof(double);
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	return ok == o->n_threads ? 0 : -1;
}

/* ---- models ---- */

static int model_file(const struct opts *o, const char *type, char *path, size_t size)
{
	struct stat st;
	snprintf(path, size, "%s/tinyllama-1.1b-%s.gguf", o->models, type);
	if (stat(path, &st) == 0)
		return 0;
	fprintf(stderr, "bench-llm: generating %s (once; cached)\n", path);
	mkdir(o->models, 0755);
	pid_t pid = fork();
	if (pid == 0) {
		execl(o->ciel_llm, o->ciel_llm, "gen", "--shape", "tinyllama-1.1b", "--type", type,
		      "--seed", "1", "--out", path, (char *)NULL);
		fprintf(stderr, "bench-llm: exec %s: %s\n", o->ciel_llm, strerror(errno));
		_exit(127);
	}
	int st2;
	if (pid < 0 || waitpid(pid, &st2, 0) < 0 || !WIFEXITED(st2) || WEXITSTATUS(st2)) {
		fprintf(stderr, "bench-llm: could not generate %s\n", path);
		return -1;
	}
	return 0;
}

static long status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	long v = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t fl = strlen(field);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, fl) && line[fl] == ':')
			v = strtol(line + fl + 1, NULL, 10);
	fclose(f);
	return v;
}

static int argmax(const float *x, uint32_t n)
{
	int best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = (int)i;
	return best;
}

/* Prefill and decode speed of one model at one thread count. */
static int run_forward(struct llm_model *m, const struct opts *o, int threads, double *prefill,
		       double *decode, struct ciel_err *err)
{
	const struct llm_hparams *hp = llm_model_hparams(m);
	uint32_t n_pos = (uint32_t)(o->prompt + o->gen + 16);
	struct kern_pool *pool = NULL;
	struct llm_kv *kv = NULL;
	struct llm_seq *seq = NULL;
	struct llm_ctx *ctx = NULL;
	struct llm_item *items = calloc((size_t)o->prompt, sizeof(*items));
	float *logits = malloc(sizeof(float) * hp->n_vocab);
	int r = -1;

	if (!items || !logits) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	if (!(pool = kern_pool_new(threads, err)) ||
	    llm_kv_new(&kv, m, (n_pos + LLM_KV_BLOCK - 1) / LLM_KV_BLOCK + 1, err) < 0 ||
	    llm_ctx_new(&ctx, m, (uint32_t)o->prompt, pool, err) < 0)
		goto out;
	/* warm-up: page the weights in and settle the threads */
	seq = llm_seq_new(kv);
	if (!seq) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < 4; i++) {
		struct llm_item it = {.seq = seq, .tok = 1 + i, .logits = 1};
		if (llm_forward(ctx, &it, 1, logits, err) < 0)
			goto out;
	}
	llm_seq_free(seq);
	seq = llm_seq_new(kv);
	if (!seq) {
		ciel_err_set(err, CIEL_ENOMEM, "out of memory");
		goto out;
	}
	uint64_t s = 12345;
	for (int i = 0; i < o->prompt; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		items[i] = (struct llm_item){.seq = seq,
					     .tok = (int32_t)(3 + (s >> 33) % (hp->n_vocab - 3)),
					     .logits = i == o->prompt - 1};
	}
	double t0 = now();
	if (llm_forward(ctx, items, (uint32_t)o->prompt, logits, err) < 0)
		goto out;
	*prefill = o->prompt / (now() - t0);
	int tok = argmax(logits, hp->n_vocab);
	t0 = now();
	for (int i = 0; i < o->gen; i++) {
		struct llm_item it = {.seq = seq, .tok = tok, .logits = 1};
		if (llm_forward(ctx, &it, 1, logits, err) < 0)
			goto out;
		tok = argmax(logits, hp->n_vocab);
	}
	*decode = o->gen / (now() - t0);
	r = 0;
out:
	llm_seq_free(seq);
	llm_ctx_free(ctx);
	llm_kv_free(kv);
	kern_pool_free(pool);
	free(items);
	free(logits);
	return r;
}

static void bench_model(const struct opts *o, const char *type, const double *bw)
{
	char path[4096];
	struct llm_model *m = NULL;
	struct ciel_err err = {0};
	if (model_file(o, type, path, sizeof(path)) < 0)
		return;
	if (llm_model_open(&m, path, &err) < 0) {
		fprintf(stderr, "bench-llm: %s: %s\n", path, err.msg);
		return;
	}
	const struct llm_hparams *hp = llm_model_hparams(m);
	if (!o->json)
		printf("\n%s: %.2f B params, %.1f MiB of weights read per token (kernels: %s)\n",
		       path, hp->n_params / 1e9, hp->bytes_per_token / MIB, kern_path());
	for (int i = 0; i < o->n_threads; i++) {
		double pf = 0, dc = 0, bound = bw[i] / (double)hp->bytes_per_token;
		if (run_forward(m, o, o->threads[i], &pf, &dc, &err) < 0) {
			fprintf(stderr, "bench-llm: %s at %d threads: %s\n", type, o->threads[i],
				err.msg);
			continue;
		}
		if (o->json) {
			json_array_append_new(
			    json_object_get(out_json, "forward"),
			    json_pack("{s:s, s:i, s:f, s:f, s:f, s:f, s:I}", "type", type,
				      "threads", o->threads[i], "prefill_tok_s", pf, "decode_tok_s",
				      dc, "bound_tok_s", bound, "decode_ratio", dc / bound,
				      "bytes_per_token", (json_int_t)hp->bytes_per_token));
		} else {
			printf("  %-5s %d thread%s  prefill %3d tok: %7.1f tok/s (%5.1fx the read "
			       "bound)\n",
			       type, o->threads[i], o->threads[i] > 1 ? "s" : " ", o->prompt, pf,
			       pf / bound);
			printf("  %-5s %d thread%s  decode  %3d tok: %7.2f tok/s   bound %6.2f "
			       "tok/s  ratio %5.1f%%\n",
			       type, o->threads[i], o->threads[i] > 1 ? "s" : " ", o->gen, dc,
			       bound, 100 * dc / bound);
		}
	}
	llm_model_close(m);
}

/* ---- the worker over HTTP ---- */

struct worker {
	pid_t pid;
	int port;
	char dir[256];
};

static int start_worker(const struct opts *o, const char *model, struct worker *w)
{
	char ready[300], log[300];
	snprintf(w->dir, sizeof(w->dir), "/tmp/bench-llm.XXXXXX");
	if (!mkdtemp(w->dir))
		return -1;
	snprintf(ready, sizeof(ready), "%s/ready.json", w->dir);
	snprintf(log, sizeof(log), "%s/worker.log", w->dir);
	w->pid = fork();
	if (w->pid < 0)
		return -1;
	if (w->pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(o->ciel_llm, o->ciel_llm, "serve", "--model", model, "--name", "bench",
		      "--listen", "127.0.0.1:0", "--threads", "2", "--max-seqs", "8",
		      "--ready-file", ready, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1200; i++) { /* 120 s: loading maps 1 GiB */
		json_error_t je;
		json_t *j = json_load_file(ready, 0, &je);
		if (j) {
			const char *url = json_string_value(json_object_get(j, "url"));
			const char *p = url ? strrchr(url, ':') : NULL;
			w->port = p ? (int)strtol(p + 1, NULL, 10) : 0;
			json_decref(j);
			if (w->port > 0)
				return 0;
		}
		int st;
		if (waitpid(w->pid, &st, WNOHANG) == w->pid) {
			fprintf(stderr, "bench-llm: the worker exited; its log (%s):\n", log);
			FILE *f = fopen(log, "r");
			char line[512];
			while (f && fgets(line, sizeof(line), f))
				fputs(line, stderr);
			if (f)
				fclose(f);
			w->pid = 0;
			return -1;
		}
		usleep(100000);
	}
	fprintf(stderr, "bench-llm: the worker did not get ready in 120 s\n");
	return -1;
}

static void stop_worker(struct worker *w)
{
	char path[300];
	if (w->pid > 0) {
		kill(w->pid, SIGTERM);
		for (int i = 0; i < 100; i++) {
			if (waitpid(w->pid, NULL, WNOHANG) == w->pid) {
				w->pid = 0;
				break;
			}
			usleep(100000);
		}
		if (w->pid > 0) {
			kill(w->pid, SIGKILL);
			waitpid(w->pid, NULL, 0);
		}
	}
	snprintf(path, sizeof(path), "%s/ready.json", w->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/worker.log", w->dir);
	unlink(path);
	rmdir(w->dir);
}

/* One HTTP/1.0 request; the whole answer (the worker closes at its end) in a malloc'd string. */
static char *http(int port, const char *method, const char *path, const char *body, double *t_first)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char head[512];
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	double t0 = now();

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || !buf || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		goto fail;
	int hl = snprintf(head, sizeof(head),
			  "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  method, path, body ? strlen(body) : 0);
	if (write(fd, head, (size_t)hl) != hl ||
	    (body && write(fd, body, strlen(body)) != (ssize_t)strlen(body)))
		goto fail;
	if (t_first)
		*t_first = -1;
	for (;;) {
		if (cap - len < 4096) {
			char *n = realloc(buf, cap *= 2);
			if (!n)
				goto fail;
			buf = n;
		}
		ssize_t k = read(fd, buf + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
		buf[len] = '\0';
		if (t_first && *t_first < 0 && strstr(buf, "data: "))
			*t_first = now() - t0;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

struct stream_arg {
	int port, tokens, id;
	long completion; /* tokens the answer's usage says */
	double ttft, t;
};

static void *stream_thread(void *p)
{
	struct stream_arg *s = p;
	char body[512];
	/* greedy, so every stream has the same work; different prompts so none is a copy */
	snprintf(body, sizeof(body),
		 "{\"model\":\"bench\",\"prompt\":\"Once upon a time, in a land number %d, there "
		 "lived\","
		 "\"max_tokens\":%d,\"temperature\":0,\"stream\":true,"
		 "\"stream_options\":{\"include_usage\":true}}",
		 s->id, s->tokens);
	double t0 = now();
	char *ans = http(s->port, "POST", "/v1/completions", body, &s->ttft);
	s->t = now() - t0;
	s->completion = -1;
	const char *u = ans ? strstr(ans, "\"completion_tokens\"") : NULL;
	if (u && (u = strchr(u, ':')))
		s->completion = strtol(u + 1, NULL, 10);
	if (s->completion < 0 && ans)
		fprintf(stderr, "bench-llm: stream %d: no usage in the answer: %.300s\n", s->id,
			ans);
	free(ans);
	return NULL;
}

static double run_streams(int port, int n, int tokens, double *ttft)
{
	pthread_t tid[64];
	struct stream_arg a[64];
	long total = 0;
	double t0 = now(), tt = 0;
	for (int i = 0; i < n; i++) {
		a[i] = (struct stream_arg){.port = port, .tokens = tokens, .id = i};
		pthread_create(&tid[i], NULL, stream_thread, &a[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		if (a[i].completion < 0)
			return -1;
		total += a[i].completion;
		tt += a[i].ttft;
	}
	*ttft = tt / n;
	return (double)total / (now() - t0);
}

static uint64_t json_num_field(const char *ans, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\"", key);
	const char *p = ans ? strstr(ans, k) : NULL;
	if (!p || !(p = strchr(p, ':')))
		return 0;
	return strtoull(p + 1, NULL, 10);
}

static void bench_serve(const struct opts *o)
{
	char path[4096];
	struct worker w = {0};
	struct llm_model *m = NULL;
	struct ciel_err err = {0};
	double agg[MAX_LIST] = {0}, ttft[MAX_LIST] = {0};

	if (model_file(o, o->serve_type, path, sizeof(path)) < 0)
		return;
	if (llm_model_open(&m, path, &err) < 0) {
		fprintf(stderr, "bench-llm: %s: %s\n", path, err.msg);
		return;
	}
	uint64_t kv_block = llm_kv_block_bytes(m), file_bytes = llm_model_file_bytes(m);
	llm_model_close(m);
	if (start_worker(o, path, &w) < 0) {
		stop_worker(&w);
		return;
	}
	if (!o->json)
		printf("\nworker: ciel-llm serve %s, 2 threads, 8 sequences, port %d; streaming "
		       "completions of %d "
		       "tokens\n",
		       o->serve_type, w.port, o->serve_tokens);
	for (int i = 0; i < o->n_streams; i++) {
		agg[i] = run_streams(w.port, o->streams[i], o->serve_tokens, &ttft[i]);
		if (agg[i] < 0) {
			fprintf(stderr, "bench-llm: streams failed\n");
			break;
		}
		if (o->json)
			json_array_append_new(
			    json_object_get(out_json, "serve"),
			    json_pack("{s:s, s:i, s:f, s:f, s:f}", "type", o->serve_type, "streams",
				      o->streams[i], "aggregate_tok_s", agg[i], "per_stream_tok_s",
				      agg[i] / o->streams[i], "mean_ttft_s", ttft[i]));
		else
			printf("  %d stream%s: aggregate %7.2f tok/s (%6.2f per stream), mean time "
			       "to first chunk %.2f "
			       "s\n",
			       o->streams[i], o->streams[i] > 1 ? "s" : " ", agg[i],
			       agg[i] / o->streams[i], ttft[i]);
	}
	if (o->n_streams > 1 && agg[0] > 0 && agg[o->n_streams - 1] > 0) {
		double ratio = agg[o->n_streams - 1] / agg[0];
		if (o->json)
			json_object_set_new(out_json, "streams_ratio", json_real(ratio));
		else
			printf("  %d streams / %d stream: %.2fx (target >= 4x)\n",
			       o->streams[o->n_streams - 1], o->streams[0], ratio);
	}
	char *h = http(w.port, "GET", "/healthz", NULL, NULL);
	uint64_t kv_total = json_num_field(h, "kv_blocks_total");
	free(h);
	long hwm = status_kib(w.pid, "VmHWM"), rss = status_kib(w.pid, "VmRSS");
	double bound = (double)file_bytes + (double)kv_total * (double)kv_block + 64 * MIB;
	if (o->json) {
		json_object_set_new(
		    out_json, "worker_memory",
		    json_pack("{s:I, s:I, s:I, s:I, s:f}", "peak_rss_bytes", (json_int_t)hwm * 1024,
			      "rss_bytes", (json_int_t)rss * 1024, "weights_bytes",
			      (json_int_t)file_bytes, "kv_bytes", (json_int_t)(kv_total * kv_block),
			      "bound_bytes", bound));
	} else {
		printf("  worker peak RSS %.1f MiB (now %.1f) vs weights %.1f + KV %.1f (%llu "
		       "blocks) + 64 MiB = "
		       "%.1f MiB: %s\n",
		       hwm * 1024 / MIB, rss * 1024 / MIB, file_bytes / MIB,
		       (double)(kv_total * kv_block) / MIB, (unsigned long long)kv_total,
		       bound / MIB, hwm * 1024.0 <= bound ? "within" : "OVER");
	}
	stop_worker(&w);
}

/* ---- options ---- */

static int parse_list(const char *s, int *out, int max, int lo, int hi)
{
	int n = 0;
	while (*s) {
		char *end;
		long v = strtol(s, &end, 10);
		if (end == s || v < lo || v > hi || n == max)
			return -1;
		out[n++] = (int)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return n ? n : -1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: bench-llm [--models DIR] [--ciel-llm PATH] [--types q8_0,q4_0] [--threads "
		"1,2]\n"
		"                 [--prompt N] [--gen N] [--streams 1,4,8] [--serve-tokens N]\n"
		"                 [--serve-type T] [--no-serve] [--output json|table]\n");
	return 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
	o->models = "build/bench-models";
	o->ciel_llm = "build/ciel-llm";
	o->serve_type = "q8_0";
	snprintf(o->types[0], sizeof(o->types[0]), "q8_0");
	snprintf(o->types[1], sizeof(o->types[1]), "q4_0");
	o->n_types = 2;
	o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
	o->streams[0] = 1, o->streams[1] = 4, o->streams[2] = 8, o->n_streams = 3;
	o->prompt = 128, o->gen = 128, o->serve_tokens = 64, o->serve = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int one[1];
		if (!strcmp(a, "--no-serve")) {
			o->serve = 0;
			continue;
		}
		if (!v)
			return usage();
		i++;
		if (!strcmp(a, "--models")) {
			o->models = v;
		} else if (!strcmp(a, "--ciel-llm")) {
			o->ciel_llm = v;
		} else if (!strcmp(a, "--serve-type")) {
			o->serve_type = v;
		} else if (!strcmp(a, "--types")) {
			o->n_types = 0;
			for (const char *p = v; *p && o->n_types < MAX_LIST;) {
				size_t l = strcspn(p, ",");
				snprintf(o->types[o->n_types++], sizeof(o->types[0]), "%.*s",
					 (int)l, p);
				p += l + (p[l] == ',');
			}
		} else if (!strcmp(a, "--threads")) {
			if ((o->n_threads = parse_list(v, o->threads, MAX_LIST, 1, 64)) < 0)
				return usage();
		} else if (!strcmp(a, "--streams")) {
			if ((o->n_streams = parse_list(v, o->streams, MAX_LIST, 1, 64)) < 0)
				return usage();
		} else if (!strcmp(a, "--prompt") || !strcmp(a, "--gen") ||
			   !strcmp(a, "--serve-tokens")) {
			if (parse_list(v, one, 1, 1, 4096) != 1)
				return usage();
			*(!strcmp(a, "--prompt") ? &o->prompt
			  : !strcmp(a, "--gen")	 ? &o->gen
						 : &o->serve_tokens) = one[0];
		} else if (!strcmp(a, "--output")) {
			o->json = !strcmp(v, "json");
			if (!o->json && strcmp(v, "table"))
				return usage();
		} else {
			return usage();
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	double bw[MAX_LIST] = {0};

	if (parse(argc, argv, &o))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0); /* figures as they come: a run takes minutes */
	out_json = json_pack("{s:[], s:[], s:[]}", "bandwidth", "forward", "serve");
	if (measure_bandwidth(&o, bw) < 0) {
		fprintf(stderr, "bench-llm: bandwidth measurement failed\n");
		return 1;
	}
	for (int i = 0; i < o.n_threads; i++) {
		if (o.json)
			json_array_append_new(json_object_get(out_json, "bandwidth"),
					      json_pack("{s:i, s:f}", "threads", o.threads[i],
							"read_bytes_s", bw[i]));
		else
			printf("memory read bandwidth, %d thread%s: %.2f GB/s (best of 3 sweeps "
			       "over 1 GiB)\n",
			       o.threads[i], o.threads[i] > 1 ? "s" : "", bw[i] / 1e9);
	}
	for (int i = 0; i < o.n_types; i++)
		bench_model(&o, o.types[i], bw);
	if (o.serve)
		bench_serve(&o);
	if (o.json) {
		json_dumpf(out_json, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	json_decref(out_json);
	return 0;
}
