/*
 * test_llmw — the node's model workers (lib/agent/llmw.c), without a region:
 * placement items are checked before they can name paths or argv, ready
 * files are trusted only for a loopback URL, a worker a previous agent left
 * is adopted only if it is the very process (pid and start time), and
 * teardown kills it. The worker here is a `sleep`, standing in for ciel-llm.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../lib/agent/llmw.c"

static char state[PATH_MAX];

static int setup(void **st)
{
	(void)st;
	snprintf(state, sizeof(state), "/tmp/test-llmw.XXXXXX");
	assert_non_null(mkdtemp(state));
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	rm_tree(state);
	return 0;
}

static const char *hex64 = "3c4a7c3a8313e00ae6a6b64df717828f4ba18391ea31ffb01abe9a2c4f7bb9a9";

static json_t *item(const char *tenant, bool pub, const char *name, const char *blob)
{
	return json_pack("{s:s, s:s, s:b, s:s, s:s, s:i, s:i, s:i, s:i, s:i}", "kind", "llm",
			 "tenant", tenant, "public", pub, "name", name, "blob", blob, "size", 10,
			 "ctx", 256, "max_seqs", 2, "threads", 1, "generation", 3);
}

static int count(const struct llmw *l)
{
	int n = 0;

	for (const struct ep *e = l->eps; e; e = e->next)
		n += e->wanted != NULL;
	return n;
}

static void test_items_checked(void **st)
{
	char blob[80];
	struct llmw *l;
	json_t *it;

	(void)st;
	assert_int_equal(llmw_open(&l, state, NULL, "/v1/nodes/n/llm", NULL), 0);
	snprintf(blob, sizeof(blob), "sha256:%s", hex64);
	llmw_list_begin(l);
	it = item("acme", false, "tales", blob);
	assert_true(llmw_is_item(it));
	llmw_list_add(l, it);
	json_decref(it);
	it = item("", true, "stories", hex64); /* the bare hex spelling too */
	llmw_list_add(l, it);
	json_decref(it);
	/* refused: a path in a name, a public one with a tenant, a bad digest, no generation */
	it = item("../etc", false, "x1", blob);
	llmw_list_add(l, it);
	json_decref(it);
	it = item("acme", true, "x2", blob);
	llmw_list_add(l, it);
	json_decref(it);
	it = item("acme", false, "x3", "sha256:1234");
	llmw_list_add(l, it);
	json_decref(it);
	it = item("acme", false, "x4", blob);
	json_object_del(it, "generation");
	llmw_list_add(l, it);
	json_decref(it);
	it = item("acme", false, "x5", blob);
	json_object_set_new(it, "threads", json_integer(0));
	llmw_list_add(l, it);
	json_decref(it);
	llmw_list_end(l);
	assert_int_equal(count(l), 2);
	assert_non_null(ep_find(l, "", "stories"));
	assert_non_null(ep_find(l, "acme", "tales"));
	/* public endpoints live under a key no tenant can have */
	assert_non_null(strstr(ep_find(l, "", "stories")->dir, "/llm/_public/stories"));
	assert_int_equal(llmw_due_ms(l), INT64_MAX); /* nothing runs, nothing is due */
	llmw_free(l);
}

static void test_helpers(void **st)
{
	char d[80];

	(void)st;
	assert_true(url_valid("http://127.0.0.1:8080"));
	assert_false(url_valid("http://127.0.0.1:0"));
	assert_false(url_valid("http://127.0.0.1:65536"));
	assert_false(url_valid("http://10.0.0.1:8080"));
	assert_false(url_valid("http://127.0.0.1:80/x"));
	assert_false(url_valid("http://127.0.0.1:"));
	assert_int_equal(norm_digest(hex64, d, sizeof(d)), 0);
	assert_string_equal(d + 7, hex64);
	assert_int_equal(norm_digest("sha256:ABC", d, sizeof(d)), -1);
	assert_true(agent_worker_uid("acme") != agent_worker_uid("beta"));
	assert_true(agent_worker_uid("") == AGENT_UID_PUBLIC);
	assert_true(agent_worker_uid("acme") >= AGENT_UID_BASE &&
		    agent_worker_uid("acme") < AGENT_UID_PUBLIC);
	/* FNV-1a of "acme": the uid a tenant's workers had before must not move */
	assert_int_equal(agent_worker_uid("acme"), AGENT_UID_BASE + 0x45fd71afu % AGENT_UID_SPAN);
}

/* A stand-in worker: a child that sleeps in a session of its own. */
static pid_t start_sleeper(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		setsid();
		execlp("sleep", "sleep", "30", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void write_file(const char *path, const char *text)
{
	assert_int_equal(file_write_atomic(path, text, strlen(text), NULL), 0);
}

static void test_adopt_ready_teardown(void **st)
{
	char dir[PATH_MAX + 64], path[PATH_MAX + 96], text[512];
	unsigned long long start = 0;
	struct llmw *l;
	struct ep *e;
	pid_t pid = start_sleeper(), other = start_sleeper();
	int status;

	(void)st;
	assert_true(proc_stat(pid, &start));
	snprintf(dir, sizeof(dir), "%s/llm", state);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(dir, sizeof(dir), "%s/llm/acme", state);
	assert_int_equal(mkdir(dir, 0700), 0);
	/* tales: its worker runs; stale: the pid is right but the start time is not */
	snprintf(dir, sizeof(dir), "%s/llm/acme/tales", state);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/run", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/worker.json", dir);
	snprintf(text, sizeof(text),
		 "{\"pid\":%d,\"start_time\":%llu,\"generation\":3,\"blob\":\"sha256:%s\","
		 "\"token\":\"abc\"}",
		 (int)pid, start, hex64);
	write_file(path, text);
	snprintf(dir, sizeof(dir), "%s/llm/acme/stale", state);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/worker.json", dir);
	snprintf(text, sizeof(text), "{\"pid\":%d,\"start_time\":%llu,\"generation\":1}",
		 (int)other, start + 12345);
	write_file(path, text);

	assert_int_equal(llmw_open(&l, state, NULL, "/v1/nodes/n/llm", NULL), 0);
	e = ep_find(l, "acme", "tales");
	assert_non_null(e);
	assert_int_equal(e->pid, pid);
	assert_false(e->child); /* not ours to wait for */
	assert_int_equal(e->phase, PH_LOADING);
	assert_string_equal(e->token, "abc");
	assert_int_equal(ep_find(l, "acme", "stale")->pid, 0);
	assert_int_equal(llmw_running(l), 1);
	assert_true(llmw_due_ms(l) <= LOADING_POLL_MS);

	/* a ready file pointing elsewhere is not believed; a loopback one is */
	snprintf(path, sizeof(path), "%s/ready.json", e->run);
	write_file(path, "{\"url\":\"http://192.0.2.1:80\"}");
	llmw_reconcile(l, NULL); /* no list yet: nothing starts or stops, no client needed */
	assert_int_equal(e->phase, PH_LOADING);
	snprintf(text, sizeof(text), "{\"url\":\"http://127.0.0.1:4321\",\"pid\":%d}", (int)pid);
	write_file(path, text);
	llmw_reconcile(l, NULL);
	assert_int_equal(e->phase, PH_READY);
	assert_string_equal(e->url, "http://127.0.0.1:4321");
	llmw_free(l);

	/* teardown kills the adopted worker and clears STATE/llm */
	assert_int_equal(llmw_teardown(state, stderr, NULL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	snprintf(dir, sizeof(dir), "%s/llm", state);
	assert_int_equal(access(dir, F_OK), -1);
	/* the stale record's pid was someone else's: left alone */
	assert_int_equal(kill(other, 0), 0);
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_items_checked, setup, teardown),
	    cmocka_unit_test(test_helpers),
	    cmocka_unit_test_setup_teardown(test_adopt_ready_teardown, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
