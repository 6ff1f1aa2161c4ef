/*
 * test_admin_health — two points of issue #9, with real processes on loopback.
 *   Admin calls are unambiguous: only a message that is exactly one `.qgate.` call is
 *   answered by the gateway; anything else naming `.qgate.` is refused with
 *   `qgate: admin calls must be sent alone` and never reaches a backend; text that only looks
 *   alike (a string, another namespace) goes to the backend as usual.
 *   /health is right for every pool mode: a session pool is judged by its last session
 *   connection, a lazy pool nobody used yet is healthy (nothing was tried).
 * What reached the backend is read from mockq's own count (.mock.served[], asked directly).
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

#define ALONE "qgate: admin calls must be sent alone"

static struct t_proc *be;
static struct t_proc *gate;
static int gw_port, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
	be = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(admin_health, .init = setup, .fini = teardown, .timeout = 30.0);

/* qgate with listener main (pool p) on gw_port, stats on stats_port, plus members. */
static void start_gate_json(const char *members)
{
	char *text = NULL;

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}],\"stats\":{\"listen\":\"127.0.0.1:%d\"},%s}",
			   gw_port, stats_port, members) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = t_qgate_start(path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	/* worker 0 serves /health: with workers > 1 it may open after the q listener */
	T_OK(t_wait_accepting("127.0.0.1", stats_port, 5000, gate->pid));
}

/* sync requests the backend answered, asked directly (a probe: it does not count itself) */
static int64_t served(void)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(".mock.served"), 5000);
	int64_t v;

	cr_assert(r->type == -T_LONG, ".mock.served gave %s", t_show(r));
	v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

static void start_admin_gate(void)
{
	char *hash = T_PTR(t_hash_password("secret"));
	char members[1024];

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	snprintf(members, sizeof(members),
		 "\"auth\":{\"users\":[{\"name\":\"ops\",\"password_hash\":\"%s\",\"admin\":true},"
		 "{\"name\":\"dev\",\"password_hash\":\"%s\"}]},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],\"health\":{\"interval_ms\":0}}]",
		 hash, hash, be->port);
	free(hash);
	start_gate_json(members);
}

/* a sync request that must be refused as not alone, without reaching the backend */
static void expect_alone(int fd, struct t_obj *req)
{
	char rq[160];
	int64_t before = served();

	t_fmt(req, rq, sizeof(rq));
	struct t_obj *r = t_call_ok(fd, req, 5000);
	cr_assert(t_is_err_prefix(r, ALONE), "%s gave %s, want '%s", rq, t_show(r), ALONE);
	t_free(r);
	int64_t after = served();
	cr_assert_eq(after, before, "%s reached the backend (.mock.served %" PRId64 " -> %" PRId64
		     ")", rq, before, after);
}

/* ------------------------------------------------------------ admin calls */

Test(admin_health, admin_call_with_a_second_statement_is_refused)
{
	start_admin_gate();
	int ops = T_OK(t_q_connect("127.0.0.1", gw_port, "ops:secret", NULL));

	/* before: the table came back and `1+1` was dropped without a word */
	expect_alone(ops, t_str(".qgate.stats[]; 1+1"));
	expect_alone(ops, t_str(".qgate.stats[];"));
	expect_alone(ops, t_str("1+1; .qgate.stats[]"));
	/* alone, with blanks around: the table */
	struct t_obj *r = t_call_ok(ops, t_str(" .qgate.stats[]\n"), 5000);
	cr_assert_eq(r->type, T_TABLE, "got %s", t_show(r));
	t_free(r);
	r = t_call_ok(ops, t_call0(".qgate.pools"), 5000);
	cr_assert_eq(r->type, T_TABLE, "list form: got %s", t_show(r));
	t_free(r);
	close(ops);
}

Test(admin_health, query_naming_qgate_never_reaches_a_backend)
{
	start_admin_gate();
	int ops = T_OK(t_q_connect("127.0.0.1", gw_port, "ops:secret", NULL));
	int dev = T_OK(t_q_connect("127.0.0.1", gw_port, "dev:secret", NULL));

	/* before: forwarded to the backend, which answered with its own error */
	expect_alone(ops, t_str("select from .qgate.pools[]"));
	expect_alone(dev, t_str("count `.qgate.clients"));
	expect_alone(dev, t_list(2, t_str("{x; .qgate.stats[]}"), t_long(1)));
	/* a non-admin calling one alone: not allowed, as before */
	struct t_obj *r = t_call_ok(dev, t_str(".qgate.stats[]"), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: not allowed"), "got %s", t_show(r));
	t_free(r);
	close(ops);
	close(dev);
}

Test(admin_health, large_query_naming_qgate_is_judged_whole)
{
	start_admin_gate();
	int dev = T_OK(t_q_connect("127.0.0.1", gw_port, "dev:secret", NULL));
	size_t n = 300000;
	char *text = malloc(n + 64);

	cr_assert(text != NULL);
	/* large enough to stream: the mention in its head keeps it back to be judged whole */
	snprintf(text, 64, "select from .qgate.pools[]");
	size_t k = strlen(text);
	memset(text + k, ' ', n - k);
	text[n] = '\0';
	expect_alone(dev, t_str(text));
	/* compressed (q compresses what is large), the same */
	int64_t before = served();
	struct t_obj *big = T_PTR(t_str(text));
	T_OK(t_q_send_compressed(dev, T_SYNC, big));
	t_free(big);
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(dev, 5000, &r, &type));
	cr_assert(t_is_err_prefix(r, ALONE), "compressed: got %s", t_show(r));
	t_free(r);
	cr_assert_eq(served(), before, "the compressed one reached the backend");
	free(text);
	close(dev);
}

Test(admin_health, lookalikes_go_to_the_backend)
{
	start_admin_gate();
	int dev = T_OK(t_q_connect("127.0.0.1", gw_port, "dev:secret", NULL));
	int64_t before = served();

	t_call_expect(dev, t_str("\"a.qgate.b\""), t_str("a.qgate.b"), 5000);
	t_call_expect(dev, t_str(".qgate2.f:{42}; .qgate2.f[]"), t_long(42), 5000);
	t_call_expect(dev, t_str("a.qgate.b:7; a.qgate.b"), t_long(7), 5000);
	/* data arguments are not looked into */
	t_call_expect(dev, t_call(".mock.echo", 1, t_str("select from .qgate.pools[]")),
		      t_str("select from .qgate.pools[]"), 5000);
	int64_t after = served();
	cr_assert_eq(after, before + 4, ".mock.served %" PRId64 " -> %" PRId64, before, after);
	close(dev);
}

/* ------------------------------------------------------------------ /health */

static int health(char **body)
{
	int status = t_http_get(stats_port, "/health", body);

	cr_assert(status > 0, "GET /health: %s", t_errmsg());
	return status;
}

/* /health until it gives want, bounded; returns the last status */
static int wait_health(int want, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	int status = 0;

	for (;;) {
		char *body = NULL;
		status = health(&body);
		free(body);
		if (status == want || t_now_ms() >= deadline)
			return status;
		poll(NULL, 0, 20);
	}
}

static void start_session_gate(int workers)
{
	char members[512];

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	snprintf(members, sizeof(members), "\"workers\":%d,"
		 "\"pools\":[{\"name\":\"p\",\"mode\":\"session\",\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\"}]}]", workers, be->port);
	start_gate_json(members);
}

/* a client of the session pool while its backend is down: its session connection fails */
static void try_session(void)
{
	int fd = t_q_connect("127.0.0.1", gw_port, "alice:x", NULL);

	if (fd >= 0)
		close(fd);
}

static void session_pool_health(int workers)
{
	start_session_gate(workers);
	char *body = NULL;
	/* before: 503 for ever, as a session pool keeps no connection open */
	int status = health(&body);
	cr_assert_eq(status, 200, "session pool, nothing tried yet: %d %s", status, body);
	free(body);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "alice:x", NULL));
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(7)), t_long(7), 5000);
	cr_assert_eq(wait_health(200, 2000), 200, "session pool whose session came up");
	close(fd);

	t_proc_kill(be);
	int64_t deadline = t_now_ms() + 5000;
	status = 0;
	while (t_now_ms() < deadline && status != 503) {
		try_session();
		status = wait_health(503, 300);
	}
	cr_assert_eq(status, 503, "the last session connection failed");
	health(&body);
	cr_assert(strstr(body, "pool p"), "503 body names the pool: %s", body);
	free(body);
}

Test(admin_health, session_pool_health_follows_its_last_connection)
{
	session_pool_health(1);
}

Test(admin_health, session_pool_health_across_workers)
{
	session_pool_health(2);
}

Test(admin_health, lazy_pool_nobody_used_is_healthy)
{
	char members[512];

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"connect\":\"lazy\",\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\",\"connections\":1}]}]", be->port);
	start_gate_json(members);
	char *body = NULL;
	/* before: 503 until some client used the pool */
	int status = health(&body);
	cr_assert_eq(status, 200, "lazy pool not used yet: %d %s", status, body);
	free(body);
	/* used: judged as a query pool, by its connections */
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "alice:x", NULL));
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(7)), t_long(7), 5000);
	cr_assert_eq(wait_health(200, 2000), 200);
	t_proc_kill(be);
	cr_assert_eq(wait_health(503, 5000), 503, "lazy pool started, backend gone");
	close(fd);
}

Test(admin_health, query_pool_health_as_before)
{
	char members[512];

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\",\"connections\":1}]}]", be->port);
	start_gate_json(members);
	cr_assert_eq(wait_health(200, 3000), 200, "query pool with its backend up");
	t_proc_kill(be);
	cr_assert_eq(wait_health(503, 5000), 503, "query pool with its backend gone");
}
