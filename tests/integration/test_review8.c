/*
 * test_review8 — an adversarial review of issue #8 (pool/ as the checkout authority, max_inflight
 * shared across workers). Each test names the defect it shows; a test that held up is kept
 * when it covers a path nothing else covers (said so above it).
 *
 * Which worker took a client is read from qgate's debug log ("worker=N ... msg=accepted").
 * mockq's .mock.defer answers later without blocking it, so a backend with max_inflight 1 is
 * kept busy by qgate's own queue, not by mockq.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

static struct t_proc *be1, *gate;
static int gw_port, gw_port2, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = be1 = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(review8, .init = setup, .fini = teardown, .timeout = 30.0);

static void start_gate(const char *text)
{
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	gate = T_PTR(t_qgate_start(path, gw_port));
}

static void start_backend(void)
{
	be1 = T_PTR(t_mockq_start("b1", NULL));
	gw_port = T_OK(t_free_port());
	gw_port2 = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
}

/* A counter verb asked of b1 directly, over a fresh connection (not counted by mockq). */
static int64_t ask(const char *verb)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be1->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(verb), 5000);
	int64_t v;

	cr_assert(r->type == -T_LONG, "b1 %s gave %s", verb, t_show(r));
	v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

/* backends[0] figure of pools[0] in /stats (-1: absent) */
static int64_t be_stat(const char *key)
{
	char path[96];

	snprintf(path, sizeof(path), "pools/0/backends/0/%s", key);
	return t_stats_int(stats_port, path);
}

/*
 * A q client on port accepted by worker want (SO_REUSEPORT spreads connections by hash: try
 * new ones, bounded, keeping the misses open until the end so they do not come back).
 */
static int client_on_worker(int port, int want)
{
	int miss[40], n_miss = 0, got = -1;
	char needle[48];

	snprintf(needle, sizeof(needle), "worker=%d conn=", want);
	for (int i = 0; i < 40 && got < 0; i++) {
		size_t from = t_file_size(gate->err_path);
		int fd = T_OK(t_q_connect("127.0.0.1", port, "c:x", NULL));
		const char *const acc[] = { "msg=\"accepted\"" };
		T_OK(t_wait_line_with(gate->err_path, from, 1, acc, 2000));
		const char *const mine[] = { needle, "msg=\"accepted\"" };
		if (t_wait_line_with(gate->err_path, from, 2, mine, 0) == 0)
			got = fd;
		else
			miss[n_miss++] = fd;
	}
	for (int i = 0; i < n_miss; i++)
		close(miss[i]);
	cr_assert(got >= 0, "no client landed on worker %d in 40 tries", want);
	return got;
}

/*
 * Client x keeps two requests outstanding (answered by b1 after 40 ms each, without blocking
 * it) for up to x_ms; once x has had 3 answers, client y sends one quick request. Returns how
 * long y waited for its answer (-1: none within x_ms), and y's answer in *out.
 */
static int64_t y_wait_behind_x(int x, int y, int x_ms, struct t_obj **out)
{
	int64_t stop_at = t_now_ms() + x_ms, y_sent = -1, y_took = -1;
	int x_out = 0, x_done = 0;

	*out = NULL;
	for (int i = 0; i < 2; i++, x_out++)
		T_OK(t_send_free(x, T_SYNC, t_str(".mock.defer[40;`x]")));
	for (int guard = 0; guard < 10000 && t_now_ms() < stop_at && y_took < 0; guard++) {
		struct pollfd pfd[2] = { { .fd = x, .events = POLLIN },
					 { .fd = y, .events = y_sent >= 0 ? POLLIN : 0 } };
		cr_assert(poll(pfd, 2, 3000) > 0, "nothing answered for 3 s");
		if (pfd[0].revents) {
			struct t_obj *r = NULL;
			int type = -1;
			cr_assert_eq(t_q_recv(x, 3000, &r, &type), 0, "x: %s", t_errmsg());
			cr_assert(r->type == -T_SYM && strcmp(r->s, "x") == 0, "x got %s", t_show(r));
			t_free(r);
			x_done++;
			T_OK(t_send_free(x, T_SYNC, t_str(".mock.defer[40;`x]")));
		}
		if (x_done >= 3 && y_sent < 0) {
			y_sent = t_now_ms();
			T_OK(t_send_free(y, T_SYNC, t_str(".mock.echo[42]")));
		}
		if (pfd[1].revents) {
			int type = -1;
			cr_assert_eq(t_q_recv(y, 3000, out, &type), 0, "y: %s", t_errmsg());
			y_took = t_now_ms() - y_sent;
		}
	}
	return y_took;
}

/* ---------------------------------------------------- a freed slot goes to its own pool */

/*
 * STALL (starvation). Two pools at the same address share b1's one max_inflight slot (documented:
 * "backends at the same address in several pools share it"). Client x on pool p2 keeps b1 busy
 * with a queue that never empties; client y on pool p1 sends one request after x's. When x's
 * answer frees the slot, slot_give wakes only *other* workers (pool.c slot_give masks self_bit)
 * and answer_done dispatches only p2 (upstream.c answer_done): p2's next request takes the slot
 * in the same loop turn. p1 is only looked at by the tick, when the slot is taken again. y waits
 * until its queue timeout although b1 answered every 40 ms the whole time.
 */
Test(review8, same_address_pools_share_the_slot_in_turn)
{
	char *text = NULL;

	start_backend();
	cr_assert(asprintf(&text,
			   "{\"workers\":1,\"listeners\":["
			   "{\"name\":\"a\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"p1\"},"
			   "{\"name\":\"b\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"p2\"}],"
			   "\"pools\":["
			   "{\"name\":\"p1\",\"health\":{\"interval_ms\":0},\"queue\":{\"timeout_ms\":1500},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1,\"max_inflight\":1}]},"
			   "{\"name\":\"p2\",\"health\":{\"interval_ms\":0},\"queue\":{\"timeout_ms\":1500},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1,\"max_inflight\":1}]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"info\"}}",
			   gw_port, gw_port2, be1->port, be1->port, stats_port) > 0);
	start_gate(text);
	free(text);
	T_OK(t_wait_accepting("127.0.0.1", gw_port2, 3000, 0));

	int y = T_OK(t_q_connect("127.0.0.1", gw_port, "y:x", NULL));
	int x = T_OK(t_q_connect("127.0.0.1", gw_port2, "x:x", NULL));
	struct t_obj *ans = NULL;
	int64_t took = y_wait_behind_x(x, y, 4000, &ans);

	cr_assert(took >= 0, "y (pool p1) had no answer in 4 s while b1 served pool p2 every 40 ms");
	cr_assert(ans && ans->type == -T_LONG && ans->a.j == 42,
		  "y (pool p1) got %s after %" PRId64 " ms, want 42: the slot freed by each answer on "
		  "p2 went to p2's queue; p1 waited for a slot b1 kept giving back",
		  ans ? t_show(ans) : "nothing", took);
	cr_assert(took < 600, "y (pool p1) waited %" PRId64 " ms behind 40 ms requests", took);
	t_free(ans);
	close(x);
	close(y);
}

/* ------------------------------------------------- a freed slot goes to its own worker */

/*
 * STALL (starvation across workers). workers: 2, one pool, b1 with max_inflight 1. Client x on
 * one worker keeps a queue that never empties; client y on the other sends one request. The
 * worker freeing the slot wakes y's worker (msg_ring, after the loop's deferred work) but first
 * dispatches its own pool (upstream.c answer_done -> gw_pool_dispatch; worker.c run_deferred runs
 * dispatches before wake_peers), so x's next request has the slot again before y's worker looks.
 * y waits until its queue timeout (1500 ms) while b1 answers every 40 ms.
 */
Test(review8, workers_share_the_slot_in_turn)
{
	char *text = NULL;

	start_backend();
	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"health\":{\"interval_ms\":0},\"queue\":{\"timeout_ms\":1500},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1,\"max_inflight\":1}]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"debug\"}}",
			   gw_port, be1->port, stats_port) > 0);
	start_gate(text);
	free(text);

	int x = client_on_worker(gw_port, 1);
	int y = client_on_worker(gw_port, 0);
	struct t_obj *ans = NULL;
	int64_t took = y_wait_behind_x(x, y, 4000, &ans);

	cr_assert(took >= 0, "y (worker 0) had no answer in 4 s while b1 served worker 1 every 40 ms");
	cr_assert(ans && ans->type == -T_LONG && ans->a.j == 42,
		  "y (worker 0) got %s after %" PRId64 " ms, want 42: each slot worker 1 freed went "
		  "to worker 1's own queue before worker 0 was woken",
		  ans ? t_show(ans) : "nothing", took);
	cr_assert(took < 600, "y (worker 0) waited %" PRId64 " ms behind 40 ms requests", took);
	t_free(ans);
	close(x);
	close(y);
}

/* ------------------------------------------------------------ shutdown across workers */

/*
 * STALL/LEAK at shutdown. workers: 2, b1 with max_inflight 1. Client x on worker 1 sends a
 * request answered after 500 ms and leaves (its request stays owed on a BUSY pooled connection,
 * holding b1's slot). Client y on worker 0 sends a quick request: it waits for the slot. SIGTERM
 * with a 3 s grace period. Worker 1 has no client left, so it is "drained" (worker.c drained()
 * looks at clients and queues only) and exits at once, its BUSY connection still holding the
 * shared slot: nobody reads the late answer, the slot never comes back (gw_worker_destroy gives
 * no slot back), and y, which the grace period is for, gets "qgate: gateway shutting down"
 * after 3 s instead of its answer after 1.5 s.
 */
static void shutdown_behind_other_worker(bool x_leaves)
{
	char *text = NULL;

	start_backend();
	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"health\":{\"interval_ms\":0},\"queue\":{\"timeout_ms\":0},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1,\"max_inflight\":1}]}],"
			   "\"limits\":{\"shutdown_grace_ms\":3000},"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"debug\"}}",
			   gw_port, be1->port, stats_port) > 0);
	start_gate(text);
	free(text);

	int x = client_on_worker(gw_port, 1);
	int y = client_on_worker(gw_port, 0);
	/* readiness: both workers' connections up */
	t_call_expect(y, t_call(".mock.echo", 1, t_long(1)), t_long(1), 3000);
	t_call_expect(x, t_call(".mock.echo", 1, t_long(1)), t_long(1), 3000);
	/* 1.5 s: the window for the checks below (room for a busy machine), in the 3 s grace */
	T_OK(t_send_free(x, T_SYNC, t_str(".mock.defer[1500;`late]")));
	int64_t deadline = t_now_ms() + 2000;
	while (ask(".mock.inflight") < 1 && t_now_ms() < deadline)
		poll(NULL, 0, 5);
	cr_assert_eq(ask(".mock.inflight"), 1, "x's request did not reach b1");
	if (x_leaves)
		close(x);
	int64_t t0 = t_now_ms();
	T_OK(t_send_free(y, T_SYNC, t_str(".mock.echo[42]")));
	/* y waits for the slot x's request holds (b1 has max_inflight 1) */
	struct pollfd pfd = { .fd = y, .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 100), 0, "y was answered while b1's one slot was taken");
	T_OK(t_proc_signal(gate, SIGTERM));

	struct t_obj *r = NULL;
	int type = -1;
	cr_assert_eq(t_q_recv(y, 6000, &r, &type), 0, "y: no answer: %s", t_errmsg());
	int64_t took = t_now_ms() - t0;
	cr_assert(r->type == -T_LONG && r->a.j == 42,
		  "y got %s after %" PRId64 " ms, want 42 within the grace period: worker 1 exited "
		  "holding b1's max_inflight slot for x's %s request", t_show(r), took,
		  x_leaves ? "abandoned" : "answered");
	t_free(r);
	close(y);
	if (!x_leaves)
		close(x);
}

Test(review8, shutdown_worker_exit_keeps_no_slot)
{
	shutdown_behind_other_worker(true);
}

/*
 * HELD UP (the control of the test above, kept: nothing else stops a gateway of two workers
 * with a request of one waiting for the other's slot): x stays, so worker 1 is not drained
 * until x's answer is in, which gives the slot back, and y is answered in the grace period.
 */
Test(review8, shutdown_waits_for_the_other_workers_answer)
{
	shutdown_behind_other_worker(false);
}

/* ------------------------------------------------ slots come back on every way out */

/*
 * HELD UP (kept: no other test walks these ways out of BUSY/DRAINING with two workers and then
 * checks the shared count at rest). b1 max_inflight 1, a 150 ms timeout rule on .mock.defer,
 * drain_timeout_ms 800, on both workers: a late answer drained after a timeout; an answer that never comes in
 * the drain time (connection closed); a client that leaves with its request in flight; a
 * backend that dies with a request in flight. /stats must show inflight 0 at rest and the
 * backend must still serve.
 */
Test(review8, slots_come_back_on_every_way_out)
{
	char *text = NULL;

	start_backend();
	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"health\":{\"interval_ms\":0},"
			   "\"reconnect\":{\"delay_ms\":50},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1,\"max_inflight\":1}]}],"
			   /* the timeout on the deferred calls only, not on the echoes after */
			   "\"rules\":[{\"prefix\":\".mock.defer\",\"timeout_ms\":150}],"
			   "\"limits\":{\"drain_timeout_ms\":800},"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"debug\"}}",
			   gw_port, be1->port, stats_port) > 0);
	start_gate(text);
	free(text);

	for (int w = 0; w < 2; w++) {
		int c = client_on_worker(gw_port, w);
		struct t_obj *r;

		/* timed out, then drained (the late answer comes within the drain time; each
		 * side has 350 ms or more of room) */
		r = t_call_ok(c, t_str(".mock.defer[500;1]"), 3000);
		cr_assert(r->type == T_ERROR, "worker %d: want a timeout, got %s", w, t_show(r));
		t_free(r);
		/* timed out, then closed (no answer within the drain time) */
		r = t_call_ok(c, t_str(".mock.defer[3000;1]"), 3000);
		cr_assert(r->type == T_ERROR, "worker %d: want a timeout, got %s", w, t_show(r));
		t_free(r);
		/* the client leaves with its request in flight */
		T_OK(t_send_free(c, T_SYNC, t_str(".mock.defer[100;1]")));
		close(c);
	}
	/* at rest: every slot back, and b1 serves each worker again */
	int64_t deadline = t_now_ms() + 5000, inflight = -1;
	while ((inflight = be_stat("inflight")) != 0 && t_now_ms() < deadline)
		poll(NULL, 0, 50);
	cr_assert_eq(inflight, 0, "b1: %" PRId64 " slots still taken at rest", inflight);
	for (int w = 0; w < 2; w++) {
		int c = client_on_worker(gw_port, w);
		t_call_expect(c, t_call(".mock.echo", 1, t_long(7)), t_long(7), 3000);
		close(c);
	}
}

/* ------------------------------------------ one address, two spellings, two counts */

/*
 * LIMIT BROKEN (two requests inside a q with max_inflight 1). "unix:N" and "unix://N" are one
 * address: addr.c parses both to the abstract socket /tmp/kx.N, and --check (config.c
 * check_same_backends, through gw_addr_same) treats them as the same q process and refuses
 * differing max_inflight. But shared.c keys the shared count by the address *text*
 * (gw_shared_backend: strcmp(e->addr, addr)), so the two spellings get two counts: each pool
 * sends one request and the q process runs two at once.
 */
Test(review8, one_address_two_spellings_one_count)
{
	const char *const extra[] = { "--unix", NULL };
	char *text = NULL;

	be1 = T_PTR(t_mockq_start("b1", extra));
	gw_port = T_OK(t_free_port());
	gw_port2 = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	const char *fmt =
		"{\"workers\":1,\"listeners\":["
		"{\"name\":\"a\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"p1\"},"
		"{\"name\":\"b\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"p2\"}],"
		"\"pools\":["
		"{\"name\":\"p1\",\"health\":{\"interval_ms\":0},"
		"\"backends\":[{\"name\":\"b1\",\"address\":\"unix:%d\","
		"\"connections\":1,\"max_inflight\":1}]},"
		"{\"name\":\"p2\",\"health\":{\"interval_ms\":0},"
		"\"backends\":[{\"name\":\"b1\",\"address\":\"unix://%d\","
		"\"connections\":1,\"max_inflight\":%d}]}],"
		"\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"info\"}}";

	/* qgate's own view: these are one address (differing limits are refused) */
	cr_assert(asprintf(&text, fmt, gw_port, gw_port2, be1->port, be1->port, 2, stats_port) > 0);
	const char *bad = T_PTR(t_write_file("bad.json", text));
	free(text);
	char *const argv[] = { (char *)t_bin("QGATE_BIN"), "--check", "-c", (char *)bad, NULL };
	char *err = NULL;
	int rc = t_run(argv, NULL, 5000, NULL, &err);
	cr_assert(rc > 0 && err && strstr(err, "max_inflight"),
		  "--check should refuse max_inflight 1 and 2 for unix:N and unix://N (rc %d): %s",
		  rc, err ? err : "");
	free(err);

	cr_assert(asprintf(&text, fmt, gw_port, gw_port2, be1->port, be1->port, 1, stats_port) > 0);
	start_gate(text);
	free(text);
	T_OK(t_wait_accepting("127.0.0.1", gw_port2, 3000, 0));
	int a = T_OK(t_q_connect("127.0.0.1", gw_port, "a:x", NULL));
	int b = T_OK(t_q_connect("127.0.0.1", gw_port2, "b:x", NULL));
	/* readiness: each pool's connection up */
	t_call_expect(a, t_call(".mock.echo", 1, t_long(1)), t_long(1), 3000);
	t_call_expect(b, t_call(".mock.echo", 1, t_long(2)), t_long(2), 3000);
	cr_assert_eq(ask(".mock.reset"), 0);

	T_OK(t_send_free(a, T_SYNC, t_str(".mock.defer[300;`a]")));
	T_OK(t_send_free(b, T_SYNC, t_str(".mock.defer[300;`b]")));
	struct t_obj *r = NULL;
	int type = -1;
	cr_assert_eq(t_q_recv(a, 3000, &r, &type), 0, "a: %s", t_errmsg());
	T_EXPECT_EQ(r, t_sym("a"));
	t_free(r);
	cr_assert_eq(t_q_recv(b, 3000, &r, &type), 0, "b: %s", t_errmsg());
	T_EXPECT_EQ(r, t_sym("b"));
	t_free(r);
	int64_t most = ask(".mock.maxinflight");
	cr_assert(most <= 1, "b1 (max_inflight 1, reached as unix:%d and unix://%d) ran %" PRId64
		  " requests at once: shared.c counts the two spellings apart", be1->port,
		  be1->port, most);
	close(a);
	close(b);
}

/* ------------------------------------------------------------- Unix listener sharing */

static char *unix_json(const char *lname, const char *path)
{
	char *text = NULL;

	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"},{\"name\":\"%s\",\"listen\":"
			   "\"unix:%s\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"health\":{\"interval_ms\":0},\"backends\":[{\"name\":\"b1\","
			   "\"address\":\"127.0.0.1:%d\",\"connections\":1}]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"debug\"}}",
			   gw_port, lname, path, be1->port, stats_port) > 0);
	return text;
}

static int unix_q_connect(const char *path)
{
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	cr_assert(strlen(path) < sizeof(su.sun_path), "path too long: %s", path);
	memcpy(su.sun_path, path, strlen(path) + 1);
	cr_assert(connect(fd, (struct sockaddr *)&su, sizeof(su)) == 0, "connect %s: %s", path,
		  strerror(errno));
	cr_assert_eq(t_q_handshake(fd, "u:x", 3, 3000), 3, "handshake over %s", path);
	return fd;
}

/*
 * HELD UP (kept: no other test renames a shared Unix listener or replaces its file under a
 * running gateway). A reload that renames the listener on the same path acquires before it
 * releases (runtime.c reload_listeners): same socket file, still served. Then another process
 * takes the path over (unlink and bind, as a second gateway started by mistake would): at
 * SIGTERM the last release must not unlink the newcomer's file (lshare.c entry_close checks
 * dev and inode).
 */
Test(review8, unix_rename_keeps_socket_and_exit_spares_a_foreign_file)
{
	char path[256];
	struct stat st0, st1;

	start_backend();
	snprintf(path, sizeof(path), "%s/gw.sock", t_env_dir());
	char *text = unix_json("local", path);
	start_gate(text);
	free(text);
	cr_assert(stat(path, &st0) == 0, "no socket file at %s", path);

	/* rename: local -> local2, same path; wait until both workers have reloaded */
	size_t from = t_file_size(gate->err_path);
	text = unix_json("local2", path);
	const char *tmp = T_PTR(t_write_file("gw.json.new", text));
	free(text);
	char final[300];
	snprintf(final, sizeof(final), "%s/gw.json", t_env_dir());
	cr_assert(rename(tmp, final) == 0);
	T_OK(t_proc_signal(gate, SIGHUP));
	const char *const w0[] = { "worker=0", "msg=\"configuration reloaded\"" };
	const char *const w1[] = { "worker=1", "msg=\"configuration reloaded\"" };
	T_OK(t_wait_line_with(gate->err_path, from, 2, w0, 5000));
	T_OK(t_wait_line_with(gate->err_path, from, 2, w1, 5000));
	cr_assert(stat(path, &st1) == 0 && st1.st_ino == st0.st_ino,
		  "renaming the listener rebound (or removed) its socket file");
	for (int i = 0; i < 6; i++) {
		int fd = unix_q_connect(path);
		t_call_expect(fd, t_call(".mock.echo", 1, t_long(i)), t_long(i), 3000);
		close(fd);
	}

	/* another process takes the path over */
	cr_assert(unlink(path) == 0);
	int foreign = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	cr_assert(strlen(path) < sizeof(su.sun_path), "path too long: %s", path);
	memcpy(su.sun_path, path, strlen(path) + 1);
	cr_assert(bind(foreign, (struct sockaddr *)&su, sizeof(su)) == 0, "bind: %s",
		  strerror(errno));
	T_OK(t_proc_signal(gate, SIGTERM));
	cr_assert_eq(t_proc_wait(gate, 8000), 0, "qgate did not exit cleanly: %s",
		     t_tail(gate->err_path, 400));
	cr_assert(stat(path, &st1) == 0, "qgate unlinked a socket file it did not bind");
	close(foreign);
	unlink(path);
}

/* ------------------------------------------------- reload retires a busy backend */

static char *retire_json(const char *bname)
{
	char *text = NULL;

	cr_assert(asprintf(&text,
			   "{\"workers\":1,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"health\":{\"interval_ms\":0},\"backends\":[{\"name\":\"%s\","
			   "\"address\":\"127.0.0.1:%d\",\"connections\":1,\"max_inflight\":1}]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"info\"}}",
			   gw_port, bname, be1->port, stats_port) > 0);
	return text;
}

/*
 * HELD UP (kept: nothing else reloads a backend away while it is busy and checks the shared
 * count). A reload renames b1 (retired, its request still running) to b1x at the same address:
 * b1x shares b1's count, so a request to b1x waits until the retired connection's answer is in
 * (mockq never runs two), and the count is 0 at rest.
 */
Test(review8, reload_retiring_a_busy_backend_keeps_the_count)
{
	start_backend();
	char *text = retire_json("b1");
	start_gate(text);
	free(text);
	int a = T_OK(t_q_connect("127.0.0.1", gw_port, "a:x", NULL));
	int b = T_OK(t_q_connect("127.0.0.1", gw_port, "b:x", NULL));
	t_call_expect(a, t_call(".mock.echo", 1, t_long(1)), t_long(1), 3000);
	cr_assert_eq(ask(".mock.reset"), 0);
	T_OK(t_send_free(a, T_SYNC, t_str(".mock.defer[600;`old]")));
	int64_t deadline = t_now_ms() + 2000;
	while (ask(".mock.inflight") < 1 && t_now_ms() < deadline)
		poll(NULL, 0, 5);

	size_t from = t_file_size(gate->err_path);
	text = retire_json("b1x");
	const char *tmp = T_PTR(t_write_file("gw.json.new", text));
	free(text);
	char final[300];
	snprintf(final, sizeof(final), "%s/gw.json", t_env_dir());
	cr_assert(rename(tmp, final) == 0);
	T_OK(t_proc_signal(gate, SIGHUP));
	const char *const done[] = { "msg=\"configuration reloaded\"" };
	T_OK(t_wait_line_with(gate->err_path, from, 1, done, 5000));

	T_OK(t_send_free(b, T_SYNC, t_str(".mock.defer[50;`new]")));
	struct t_obj *r = NULL;
	int type = -1;
	cr_assert_eq(t_q_recv(a, 3000, &r, &type), 0, "a: %s", t_errmsg());
	T_EXPECT_EQ(r, t_sym("old"));
	t_free(r);
	cr_assert_eq(t_q_recv(b, 3000, &r, &type), 0, "b: %s", t_errmsg());
	T_EXPECT_EQ(r, t_sym("new"));
	t_free(r);
	cr_assert(ask(".mock.maxinflight") <= 1, "b1 ran two at once across the reload");
	int64_t inflight = -1;
	deadline = t_now_ms() + 3000;
	while ((inflight = be_stat("inflight")) != 0 && t_now_ms() < deadline)
		poll(NULL, 0, 50);
	cr_assert_eq(inflight, 0, "b1x: %" PRId64 " slots taken at rest", inflight);
	close(a);
	close(b);
}
