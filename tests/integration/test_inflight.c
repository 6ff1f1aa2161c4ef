/*
 * test_inflight — a backend's max_inflight holds across workers. q runs one request at a time:
 * a request sent to a q that is busy waits inside it, where no worker can see it, while another
 * replica idles. With `workers: 2` each worker balancing on its own view does exactly that, so
 * qgate must count a backend's running requests across workers and queue the rest itself.
 *
 * mockq shows it from the backend's side: .mock.defer answers later without blocking, and
 * .mock.maxinflight[] / .mock.served[] (asked directly, not through qgate) report the most
 * sync requests it ever held at once and how many it answered (docs/mockq.md).
 *
 * T_INFLIGHT_BASELINE=1 leaves the max_inflight key out of the configs, so that the scenarios
 * also run against a gateway that does not know it (it refuses unknown keys); the tests then
 * fail on the behaviour, not on the config.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

#define N_BE 3

static struct t_proc *be[N_BE];
static struct t_proc *gate;
static int gw_port, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
	for (int k = 0; k < N_BE; k++)
		be[k] = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(inflight, .init = setup, .fini = teardown, .timeout = 30.0);

static void start_backends(void)
{
	for (int k = 0; k < N_BE; k++) {
		char name[8];

		snprintf(name, sizeof(name), "b%d", k + 1);
		be[k] = t_mockq_start(name, NULL);
		cr_assert(be[k] != NULL, "%s", t_errmsg());
	}
}

static bool is_baseline(void)
{
	const char *v = getenv("T_INFLIGHT_BASELINE");

	return v && *v && strcmp(v, "0") != 0;
}

/*
 * qgate with two workers and one query pool over the N_BE backends, each with `connections`
 * connections per worker and its own max_inflight. Health checks are off: they are sync
 * requests too and would blur the backends' counts.
 */
static void start_gate(const int max_inflight[N_BE], int connections)
{
	char backends[N_BE][160], limit[32], *text = NULL;

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	for (int k = 0; k < N_BE; k++) {
		limit[0] = 0;
		if (!is_baseline())
			snprintf(limit, sizeof(limit), ",\"max_inflight\":%d", max_inflight[k]);
		snprintf(backends[k], sizeof(backends[k]),
			 "{\"name\":\"b%d\",\"address\":\"127.0.0.1:%d\",\"connections\":%d%s}",
			 k + 1, be[k]->port, connections, limit);
	}
	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"mode\":\"query\",\"strategy\":\"least_outstanding\","
			   "\"health\":{\"interval_ms\":0},\"backends\":[%s,%s,%s]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"info\"}}",
			   gw_port, backends[0], backends[1], backends[2], stats_port) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = t_qgate_start(path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	/*
	 * The port accepts once one worker listens; clients that connect before the other has
	 * bound its SO_REUSEPORT socket all land on the first. "qgate ready" follows every
	 * worker's start-up.
	 */
	cr_assert(t_wait_file_contains(gate->err_path, 0, "qgate ready", 5000) == 0,
		  "qgate did not log \"qgate ready\": %s", t_tail(gate->err_path, 400));
}

/* A figure of /stats: key of the "gateway" section, or of backend k's entry (-1: absent). */
static int64_t stat_of(int k, const char *key)
{
	char path[96];

	if (k < 0)
		snprintf(path, sizeof(path), "gateway/%s", key);
	else
		snprintf(path, sizeof(path), "pools/0/backends/%d/%s", k, key);
	return t_stats_int(stats_port, path);
}

/* A counter verb asked of backend k directly, over a fresh connection (a probe: not counted). */
static int64_t ask(int k, const char *verb)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be[k]->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(verb), 5000);
	int64_t v;

	cr_assert(r->type == -T_LONG, "b%d %s gave %s", k + 1, verb, t_show(r));
	v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

/* Receive the response on fd within timeout_ms; it must be a response and not an error. */
static struct t_obj *recv_answer(int fd, int timeout_ms, const char *what)
{
	struct t_obj *r = NULL;
	int type = -1, rc = t_q_recv(fd, timeout_ms, &r, &type);

	cr_assert(rc == 0, "%s: no answer (%d): %s", what, rc, t_errmsg());
	cr_assert(type == T_RESPONSE, "%s: message type %d, want a response", what, type);
	cr_assert(r->type != T_ERROR, "%s: error %s", what, t_show(r));
	return r;
}

/* ------------------------------------------------------ a busy backend is skipped */

#define A_DEFER_MS 5000	/* the window for the quick rounds (room for a busy machine) */
#define N_QUICK 12	/* clients: SO_REUSEPORT spreads them over both workers */
#define QUICK_ROUNDS 4
#define QUICK_MAX_MS 1000	/* a correctness bound (nothing waits for the slow one) */

Test(inflight, sleeping_backend_skipped)
{
	const int max_inflight[N_BE] = { 1, 1, 1 };
	int fa, quick[N_QUICK], x = -1;
	int64_t t0, t_quick_done, t_a;
	char xname[8];

	start_backends();
	start_gate(max_inflight, 2);

	/* client A: a request that keeps its backend busy for 5 s and then says which it was */
	fa = T_OK(t_q_connect("127.0.0.1", gw_port, "a:x", NULL));
	t0 = t_now_ms();
	T_OK(t_send_free(fa, T_SYNC, t_str(".mock.defer[5000;.mock.id[]]")));

	/* find the busy backend from the backends' own view (bounded), rather than sleeping */
	for (int64_t deadline = t_now_ms() + 1500; x < 0 && t_now_ms() < deadline;) {
		for (int k = 0; k < N_BE && x < 0; k++)
			if (ask(k, ".mock.inflight") == 1)
				x = k;
		if (x < 0)
			poll(NULL, 0, 10);
	}
	cr_assert(x >= 0, "client A's request reached no backend within 1.5 s");
	snprintf(xname, sizeof(xname), "b%d", x + 1);

	for (int i = 0; i < N_QUICK; i++)
		quick[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "q:x", NULL));
	/*
	 * Rounds of N_QUICK concurrent quick requests (20 ms each, so they overlap and a balancer
	 * has to spread them): each names the backend that ran it. None may be the busy one.
	 */
	for (int round = 0; round < QUICK_ROUNDS; round++) {
		int64_t sent_at = t_now_ms();

		for (int i = 0; i < N_QUICK; i++)
			T_OK(t_send_free(quick[i], T_SYNC, t_str(".mock.defer[20;.mock.id[]]")));
		for (int i = 0; i < N_QUICK; i++) {
			char what[64];

			snprintf(what, sizeof(what), "quick client %d round %d", i, round);
			struct t_obj *r = recv_answer(quick[i], 3000, what);
			int64_t took = t_now_ms() - sent_at;

			cr_assert(r->type == -T_SYM, "%s: got %s, want a backend name", what,
				  t_show(r));
			cr_assert(strcmp(r->s, xname) != 0,
				  "%s was served by %s, which was still busy with client A's "
				  "request (max_inflight 1) %" PRId64 " ms into it", what, r->s,
				  t_now_ms() - t0);
			cr_assert(took < QUICK_MAX_MS, "%s took %" PRId64 " ms", what, took);
			t_free(r);
		}
	}
	t_quick_done = t_now_ms() - t0;

	struct t_obj *ra = recv_answer(fa, 8000, "client A");
	t_a = t_now_ms() - t0;
	T_EXPECT_EQ(ra, t_sym(xname));
	t_free(ra);
	/* the quick requests all ran while A's backend was busy */
	cr_assert(t_quick_done < t_a && t_a >= A_DEFER_MS - 100,
		  "quick requests done at %" PRId64 " ms, client A answered at %" PRId64 " ms",
		  t_quick_done, t_a);
	for (int i = 0; i < N_QUICK; i++)
		close(quick[i]);
	close(fa);
}

/* ------------------------------------------------------ the limit holds under load */

#define N_LOAD 16
#define LOAD_MS 2000
#define LOAD_MAX_PER_CLIENT 400

Test(inflight, max_inflight_never_exceeded)
{
	/* b3 may run two at once: the limit is per backend, not a global 1 */
	const int max_inflight[N_BE] = { 1, 1, 2 };
	int fds[N_LOAD];
	int64_t seq[N_LOAD] = { 0 }, sent = 0, served = 0;
	bool is_waiting[N_LOAD] = { false };
	char tok[N_LOAD][32];

	start_backends();
	/* 2 connections per worker: without the shared limit a backend could run 4 at once */
	start_gate(max_inflight, 2);

	for (int i = 0; i < N_LOAD; i++)
		fds[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "l:x", NULL));
	/* readiness: one request through qgate, then clear what the backends counted so far */
	t_call_expect(fds[0], t_call(".mock.echo", 1, t_long(1)), t_long(1), 5000);
	for (int k = 0; k < N_BE; k++)
		cr_assert_eq(ask(k, ".mock.reset"), 0, "b%d has a request in flight at rest", k + 1);

	/*
	 * Closed loop: each client keeps one request (answered after 5 ms, without blocking the
	 * backend) outstanding, for LOAD_MS or LOAD_MAX_PER_CLIENT requests. Every answer must
	 * be that client's own token.
	 */
	int64_t stop_at = t_now_ms() + LOAD_MS;
	int n_waiting = 0;

	for (int64_t guard = 0; guard < (int64_t)N_LOAD * (LOAD_MAX_PER_CLIENT + 1); guard++) {
		bool is_sending = t_now_ms() < stop_at;
		struct pollfd pfd[N_LOAD];

		for (int i = 0; i < N_LOAD; i++) {
			if (!is_waiting[i] && is_sending && seq[i] < LOAD_MAX_PER_CLIENT) {
				snprintf(tok[i], sizeof(tok[i]), "c%d:%" PRId64, i, seq[i]++);
				T_OK(t_send_free(fds[i], T_SYNC,
						 t_call(".mock.defer", 2, t_long(5), t_str(tok[i]))));
				is_waiting[i] = true;
				n_waiting++;
				sent++;
			}
			pfd[i] = (struct pollfd){ .fd = fds[i], .events = is_waiting[i] ? POLLIN : 0 };
		}
		if (!n_waiting)
			break;
		cr_assert(poll(pfd, N_LOAD, 5000) > 0, "no answer for 5 s with %d outstanding",
			  n_waiting);
		for (int i = 0; i < N_LOAD; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct t_obj *r = recv_answer(fds[i], 5000, tok[i]);

			cr_assert(t_is_str(r, tok[i]), "client %d sent %s, got %s", i, tok[i],
				  t_show(r));
			t_free(r);
			is_waiting[i] = false;
			n_waiting--;
		}
	}
	cr_assert_eq(n_waiting, 0, "%d requests never answered", n_waiting);
	cr_assert(sent >= N_LOAD * 10, "only %" PRId64 " requests in %d ms", sent, LOAD_MS);

	/* the backends' own view: the limit held, and every request ran exactly once */
	int64_t most[N_BE], n_served[N_BE];

	for (int k = 0; k < N_BE; k++) {
		most[k] = ask(k, ".mock.maxinflight");
		n_served[k] = ask(k, ".mock.served");
		served += n_served[k];
	}
	for (int k = 0; k < N_BE; k++)
		cr_assert(most[k] <= max_inflight[k],
			  "b%d ran %" PRId64 " requests at once, its max_inflight is %d (most at "
			  "once b1..b3: %" PRId64 " %" PRId64 " %" PRId64 "; served %" PRId64 " %"
			  PRId64 " %" PRId64 ")", k + 1, most[k], max_inflight[k], most[0], most[1],
			  most[2], n_served[0], n_served[1], n_served[2]);
	cr_assert_eq(served, sent, "backends served %" PRId64 " requests, clients sent %" PRId64,
		     served, sent);
	if (!is_baseline()) {
		/* the two workers waited for each other's slots: the freeing worker woke the
		 * other (msg_ring), and /stats shows each backend's limit, not a sum per worker */
		cr_assert_gt(stat_of(-1, "inflight_wakeups"), 0);
		for (int k = 0; k < N_BE; k++) {
			cr_assert_eq(stat_of(k, "max_inflight"), max_inflight[k]);
			cr_assert_eq(stat_of(k, "inflight"), 0, "b%d: requests in flight at rest",
				     k + 1);
		}
	}
	for (int i = 0; i < N_LOAD; i++)
		close(fds[i]);
}
