/*
 * test_autolimit — max_inflight "auto" (the default) against real mockq backends.
 *
 *  - heavy calls run alone: one client keeps a 50 ms call going, light clients call next to
 *    it; no light request may run inside the backend that runs the heavy one. The heavy call
 *    is .mock.defer[50;...]: to the gateway it is a 50 ms answer like .mock.sleep[50], but
 *    mockq keeps counting while it waits, so each light call can report (.mock.inflight[])
 *    whether anything else was in flight on its backend when it ran — the backend's own
 *    word, not a timing guess.
 *  - tiny queries from 64 clients to one backend: the learned limit rises above 1 (/stats)
 *    and the backend saw requests side by side (.mock.maxinflight), with no answer mismatched
 *    (qbench's own check).
 *  - with two workers, the limit never passes max_inflight_ceiling, from the backend's view.
 *
 * T_AUTOLIMIT_FIXED=N writes "max_inflight": N into the configs instead (the old fixed
 * limit): the heavy/light test then fails for N = 2, as it does on a gateway without auto.
 */
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

#define MAX_BE 3

static struct t_proc *be[MAX_BE];
static struct t_proc *gate;
static int gw_port, stats_port;
static const char *queue_timeout = "5000";	/* the pool's queue.timeout_ms */
static const char *limits = "";			/* ",\"limits\":{...}" or "" */
static int64_t conns_max;	/* the most connections to backend 0 qbench() saw up */

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
	for (int k = 0; k < MAX_BE; k++)
		be[k] = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(autolimit, .init = setup, .fini = teardown, .timeout = 90.0);

static void start_backends(int n)
{
	for (int k = 0; k < n; k++) {
		char name[8];

		snprintf(name, sizeof(name), "b%d", k + 1);
		be[k] = t_mockq_start(name, NULL);
		cr_assert(be[k] != NULL, "%s", t_errmsg());
	}
}

/* qgate over backends b1..bn: `extra` goes into every backend object (may be "") */
static void start_gate(int n, int workers, int connections, const char *extra)
{
	char backends[MAX_BE * 200] = "", limit[48] = "", *text = NULL;
	const char *fixed = getenv("T_AUTOLIMIT_FIXED");

	if (fixed && *fixed)
		snprintf(limit, sizeof(limit), ",\"max_inflight\":%d", atoi(fixed));
	for (int k = 0; k < n; k++) {
		size_t l = strlen(backends);
		snprintf(backends + l, sizeof(backends) - l,
			 "%s{\"name\":\"b%d\",\"address\":\"127.0.0.1:%d\",\"connections\":%d%s%s}",
			 k ? "," : "", k + 1, be[k]->port, connections, limit,
			 fixed && *fixed ? "" : extra);
	}
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text,
			   "{\"workers\":%d,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"health\":{\"interval_ms\":0},\"queue\":{\"max\":10000,"
			   "\"timeout_ms\":%s},"
			   "\"backends\":[%s]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"info\"}%s}",
			   workers, gw_port, queue_timeout, backends, stats_port, limits) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = t_qgate_start(path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
}

static int64_t be_stat(int k, const char *key)
{
	char path[96];

	snprintf(path, sizeof(path), "pools/0/backends/%d/%s", k, key);
	return t_stats_int(stats_port, path);
}

/* backend 0's pooled connections up now (idle, busy or draining), from one /stats read */
static int64_t be_conns(void)
{
	char *body = NULL;
	json_error_t jerr;

	cr_assert_eq(t_http_get(stats_port, "/stats", &body), 200);
	json_t *j = json_loads(body, 0, &jerr);
	cr_assert(j != NULL, "/stats: %s", jerr.text);
	json_t *c = json_object_get(json_array_get(json_object_get(json_array_get(
		json_object_get(j, "pools"), 0), "backends"), 0), "connections");
	cr_assert(json_is_object(c), "no connections object: %s", body);
	int64_t n = json_integer_value(json_object_get(c, "idle")) +
		    json_integer_value(json_object_get(c, "busy"));
	json_decref(j);
	free(body);
	return n;
}

/* a counter verb asked of backend k directly (a probe: not counted) */
static int64_t ask(int k, const char *verb)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be[k]->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(verb), 5000);

	cr_assert(r->type == -T_LONG, "b%d %s gave %s", k + 1, verb, t_show(r));
	int64_t v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

static struct t_obj *recv_answer(int fd, int timeout_ms, const char *what)
{
	struct t_obj *r = NULL;
	int type = -1, rc = t_q_recv(fd, timeout_ms, &r, &type);

	cr_assert(rc == 0, "%s: no answer (%d): %s", what, rc, t_errmsg());
	cr_assert(type == T_RESPONSE, "%s: message type %d, want a response", what, type);
	cr_assert(r->type != T_ERROR, "%s: error %s", what, t_show(r));
	return r;
}

/* ------------------------------------------------------ heavy calls run alone */

#define N_LIGHT 4
#define MIX_MS 3000
#define HEAVY ".mock.defer[50;.mock.id[]]"
/* the light call: what else its backend holds while it runs (deferred heavy calls) */
#define LIGHT ".mock.inflight[]"

Test(autolimit, heavy_calls_run_alone)
{
	int fh, fl[N_LIGHT];
	int64_t heavy_done = 0, light_done = 0, shared = 0, light_max_ms = 0;
	bool h_wait = false, l_wait[N_LIGHT] = { false };
	int64_t l_sent[N_LIGHT] = { 0 };

	start_backends(3);
	start_gate(3, 1, 2, "");
	fh = T_OK(t_q_connect("127.0.0.1", gw_port, "heavy:x", NULL));
	for (int i = 0; i < N_LIGHT; i++)
		fl[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "light:x", NULL));
	/* the costs are learned from the first answers: one of each, alone */
	t_free(t_call_ok(fh, t_str(HEAVY), 5000));
	for (int i = 0; i < N_LIGHT; i++) {
		struct t_obj *r = t_call_ok(fl[i], t_str(LIGHT), 5000);
		cr_assert(r->type == -T_LONG && r->a.j == 0, "a light call alone saw %s",
			  t_show(r));
		t_free(r);
	}

	/* closed loop: the heavy client always has a heavy call out, each light client a
	 * light one */
	int64_t stop_at = t_now_ms() + MIX_MS;
	for (int guard = 0; guard < 200000; guard++) {
		bool is_sending = t_now_ms() < stop_at;
		struct pollfd pfd[1 + N_LIGHT];

		if (!h_wait && is_sending) {
			T_OK(t_send_free(fh, T_SYNC, t_str(HEAVY)));
			h_wait = true;
		}
		pfd[0] = (struct pollfd){ .fd = fh, .events = h_wait ? POLLIN : 0 };
		int n_wait = h_wait;
		for (int i = 0; i < N_LIGHT; i++) {
			if (!l_wait[i] && is_sending) {
				T_OK(t_send_free(fl[i], T_SYNC, t_str(LIGHT)));
				l_wait[i] = true;
				l_sent[i] = t_now_ms();
			}
			n_wait += l_wait[i];
			pfd[1 + i] = (struct pollfd){ .fd = fl[i], .events = l_wait[i] ? POLLIN : 0 };
		}
		if (!n_wait)
			break;
		cr_assert(poll(pfd, 1 + N_LIGHT, 5000) > 0, "no answer for 5 s");
		if (pfd[0].revents) {
			struct t_obj *r = recv_answer(fh, 5000, "heavy");
			cr_assert(r->type == -T_SYM, "heavy: %s", t_show(r));
			t_free(r);
			h_wait = false;
			heavy_done++;
		}
		for (int i = 0; i < N_LIGHT; i++) {
			if (!pfd[1 + i].revents)
				continue;
			struct t_obj *r = recv_answer(fl[i], 5000, "light");
			cr_assert(r->type == -T_LONG, "light: %s", t_show(r));
			if (r->a.j > 0)
				shared++;
			int64_t took = t_now_ms() - l_sent[i];
			if (took > light_max_ms)
				light_max_ms = took;
			t_free(r);
			l_wait[i] = false;
			light_done++;
		}
	}
	cr_log_info("heavy/light: %" PRId64 " heavy, %" PRId64 " light calls, %" PRId64
		    " light calls ran next to a heavy one, slowest light %" PRId64 " ms; "
		    "limits b1..b3 %" PRId64 " %" PRId64 " %" PRId64 "; most at once %" PRId64
		    " %" PRId64 " %" PRId64, heavy_done, light_done, shared, light_max_ms,
		    be_stat(0, "max_inflight"), be_stat(1, "max_inflight"),
		    be_stat(2, "max_inflight"), ask(0, ".mock.maxinflight"),
		    ask(1, ".mock.maxinflight"), ask(2, ".mock.maxinflight"));
	cr_assert_gt(heavy_done, MIX_MS / 50 / 3, "only %" PRId64 " heavy calls", heavy_done);
	cr_assert_gt(light_done, heavy_done * 3, "only %" PRId64 " light calls", light_done);
	cr_assert_eq(shared, 0, "%" PRId64 " of %" PRId64 " light calls ran inside a backend "
		     "that was running a heavy call", shared, light_done);
	/* the gateway learned the two costs (one entry each) */
	cr_assert_eq(t_stats_int(stats_port, "pools/0/cost_entries"), 2);
	for (int k = 0; k < 3; k++)
		cr_assert_eq(t_stats_int(stats_port, "pools/0/backends/0/inflight"), 0);
	close(fh);
	for (int i = 0; i < N_LIGHT; i++)
		close(fl[i]);
}

/* ------------------------------------------------------ tiny queries pipeline */

/* qbench through the gateway, on a thread while the test watches /stats */
struct bench_run {
	int conns, seconds, rc;
	char *out, *err;
};

static void *bench_thread(void *arg)
{
	struct bench_run *b = arg;
	const char *bin = t_bin("QBENCH_BIN");
	char port_s[16], conns_s[16], secs_s[16];

	b->rc = -1;
	if (!bin)
		return NULL;
	snprintf(port_s, sizeof(port_s), "%d", gw_port);
	snprintf(conns_s, sizeof(conns_s), "%d", b->conns);
	snprintf(secs_s, sizeof(secs_s), "%d", b->seconds);
	char *const argv[] = { (char *)bin, "--host", "127.0.0.1", "--port", port_s, "--conns",
			       conns_s, "--seconds", secs_s, "--json", NULL };
	b->rc = t_run(argv, NULL, 60000, &b->out, &b->err);
	return NULL;
}

/*
 * qbench with `conns` connections for `seconds`; meanwhile backend 0's max_inflight and
 * inflight (requests it runs now, all workers) are read from /stats every 20 ms (the highest
 * seen of each). qbench's own verdicts must all be
 * zero; returns the requests done.
 */
static int64_t qbench(int conns, int seconds, int64_t *limit_max, int64_t *inflight_max,
		      bool is_stall_known)
{
	struct bench_run b = { .conns = conns, .seconds = seconds };
	pthread_t th;
	json_error_t jerr;

	cr_assert(t_bin("QBENCH_BIN"), "%s", t_errmsg());
	cr_assert_eq(pthread_create(&th, NULL, bench_thread, &b), 0);
	*limit_max = 0;
	*inflight_max = 0;
	conns_max = 0;
	int64_t until = t_now_ms() + seconds * 1000 + 2000;
	while (t_now_ms() < until && pthread_tryjoin_np(th, NULL) != 0) {
		int64_t l = be_stat(0, "max_inflight");
		if (l > *limit_max)
			*limit_max = l;
		l = be_stat(0, "inflight");
		if (l > *inflight_max)
			*inflight_max = l;
		l = be_conns();
		if (l > conns_max)
			conns_max = l;
		poll(NULL, 0, 20);
	}
	pthread_join(th, NULL);
	cr_assert(b.rc == 0 || (is_stall_known && b.rc == 1), "qbench exited %d\nstdout: %s\n"
		  "stderr: %s", b.rc, b.out ? b.out : "", b.err ? b.err : "");
	json_t *j = json_loads(b.out, JSON_DECODE_ANY, &jerr);
	cr_assert(j != NULL, "qbench --json output is not JSON (%s): %s", jerr.text, b.out);
	const char *zero[] = { "mismatches", "errors", "unexpected", "unanswered" };
	for (int k = 0; k < (is_stall_known ? 3 : 4); k++) {
		json_t *v = json_object_get(j, zero[k]);
		cr_assert(json_is_integer(v), "no integer \"%s\" in %s", zero[k], b.out);
		cr_assert_eq(json_integer_value(v), 0, "%s: %s", zero[k], b.out);
	}
	int64_t n = json_integer_value(json_object_get(j, "requests"));
	json_decref(j);
	free(b.out);
	free(b.err);
	return n;
}

/*
 * mockq answers an immediate call before it reads the next message, so its own maxinflight
 * cannot show requests queued in its socket; the gateway's shared count (inflight, all
 * workers) and the learned limit can, and mockq's served count checks every request ran once.
 */
Test(autolimit, tiny_queries_pipeline)
{
	start_backends(1);
	start_gate(1, 1, 4, "");
	cr_assert_eq(be_stat(0, "max_inflight"), 1, "an auto limit starts at 1");
	cr_assert_eq(ask(0, ".mock.reset"), 0);
	int64_t limit, inflight;
	int64_t n = qbench(64, 3, &limit, &inflight, false), served = ask(0, ".mock.served");
	int64_t min_rtt = be_stat(0, "min_rtt_us"), short_rtt = be_stat(0, "short_rtt_us");

	cr_log_info("tiny: %" PRId64 " requests (%" PRId64 " served), limit up to %" PRId64
		    " (ceiling 8), up to %" PRId64 " in flight at once, min_rtt %" PRId64
		    " us, short_rtt %" PRId64 " us", n, served, limit, inflight, min_rtt,
		    short_rtt);
	cr_assert_gt(n, 1000);
	cr_assert_geq(served, n, "qbench counted %" PRId64 ", the backend served %" PRId64, n,
		      served);
	cr_assert_gt(limit, 1, "the limit stayed at %" PRId64, limit);
	cr_assert_leq(limit, 8);
	cr_assert_geq(inflight, 2, "never two requests in flight at once");
	cr_assert_leq(inflight, limit);
	cr_assert_gt(min_rtt, 0);
	cr_assert_gt(short_rtt, 0);
	cr_assert_eq(be_stat(0, "inflight"), 0);
	char *body = NULL;
	cr_assert_eq(t_http_get(stats_port, "/stats", &body), 200);
	cr_assert(strstr(body, "\"max_inflight_mode\": \"auto\"") ||
		  strstr(body, "\"max_inflight_mode\":\"auto\""), "%s", body);
	free(body);
}

/* ------------------------------------------------------ the ceiling across workers */

Test(autolimit, ceiling_holds_across_workers)
{
	start_backends(1);
	/* 2 workers x 2 connections could run 4 at once: the ceiling says 3 */
	queue_timeout = "0";
	start_gate(1, 2, 2, ",\"max_inflight_ceiling\":3");
	int64_t limit, inflight;
	/*
	 * Known, and not this test's subject: with two workers sharing one backend's slots, a
	 * request or two can stay queued until the queue timeout (fixed limits alike, on a
	 * gateway without "auto" too: reported with issue #11). With no queue timeout they show
	 * as qbench's "unanswered"; mismatches and errors must still be zero.
	 */
	int64_t n = qbench(64, 3, &limit, &inflight, true);

	cr_log_info("ceiling 3, 2 workers: %" PRId64 " requests, limit up to %" PRId64 ", up to %"
		    PRId64 " in flight at once", n, limit, inflight);
	cr_assert_gt(n, 1000);
	cr_assert_leq(limit, 3);
	cr_assert_leq(inflight, 3, "%" PRId64 " in flight at once, ceiling 3", inflight);
	cr_assert_geq(limit, 2, "the limit never rose");
}

/* ------------------------------------------------------ spare connections */

/*
 * One connection configured, ceiling 6: tiny calls from 64 clients raise the limit, and the
 * connections it needs open on demand (never more than the ceiling, by qgate's count and by
 * the backend's); once the load is gone they close quietly after spare_idle_ms, and the next
 * load opens them again. With a pinned max_inflight there are none.
 */
Test(autolimit, spare_connections_follow_the_load)
{
	start_backends(1);
	limits = ",\"limits\":{\"spare_idle_ms\":1000}";
	start_gate(1, 1, 1, ",\"max_inflight_ceiling\":6");
	/* "qgate ready" does not wait for backend connections: the warm one may still be
	 * connecting */
	int64_t deadline = t_now_ms() + 5000, conns = -1, clients = -1;
	while ((conns = be_conns()) != 1 && t_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_eq(conns, 1);
	while ((clients = ask(0, ".mock.clients")) != 2 && t_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_eq(clients, 2, "the gateway's one connection and this probe");
	int64_t limit, inflight, opens = 0;
	for (int round = 1; round <= 2; round++) {
		int64_t n = qbench(64, 2, &limit, &inflight, false);
		int64_t seen = ask(0, ".mock.clients") - 1;

		cr_log_info("round %d: %" PRId64 " requests, limit up to %" PRId64 ", up to %" PRId64
			    " connections up, %" PRId64 " in flight; the backend sees %" PRId64,
			    round, n, limit, conns_max, inflight, seen);
		cr_assert_gt(n, 1000);
		cr_assert_gt(conns_max, 1, "round %d: no spare connection opened (limit up to %"
			     PRId64 ")", round, limit);
		cr_assert_leq(conns_max, 6);
		cr_assert_leq(seen, 6, "the backend has %" PRId64 " connections from qgate", seen);
		cr_assert_leq(inflight, limit);
		int64_t o = be_stat(0, "spare_opens");
		cr_assert_geq(o, opens + conns_max - 1, "round %d: %" PRId64 " spares opened in all, "
			      "%" PRId64 " before, %" PRId64 " up at once", round, o, opens, conns_max);
		opens = o;
		/* idle now: every spare closes within spare_idle_ms (and the 1 s tick) */
		int64_t until = t_now_ms() + 5000, now_up = be_conns();
		while (now_up > 1 && t_now_ms() < until) {
			poll(NULL, 0, 50);
			now_up = be_conns();
		}
		cr_assert_eq(now_up, 1, "round %d: %" PRId64 " connections still up", round, now_up);
		cr_assert_eq(ask(0, ".mock.clients"), 2, "round %d: the backend still has more than "
			     "one connection from qgate", round);
	}
	const char *log = t_read_file(gate->err_path);
	cr_assert(log != NULL);
	cr_assert(!strstr(log, "backend connection lost"), "a spare's close was taken for a loss");
	cr_assert(!strstr(log, "level=warn"), "warnings: %s", log);
	free((void *)log);
}

Test(autolimit, no_spares_with_a_pinned_limit)
{
	start_backends(1);
	start_gate(1, 1, 2, ",\"max_inflight\":6");
	int64_t limit, inflight;
	int64_t n = qbench(64, 2, &limit, &inflight, false);

	cr_assert_gt(n, 1000);
	cr_assert_eq(conns_max, 2, "%" PRId64 " connections with max_inflight pinned", conns_max);
	cr_assert_leq(inflight, 2);
	cr_assert_eq(ask(0, ".mock.clients"), 3);
}

/*
 * Asyncs queued on a spare connection behind a busy q are owed: the spare must not close
 * as unused while they wait to be sent. Spares open under load (idle time 300 ms), then the
 * backend is kept busy for 1.5 s by a direct caller while 4 clients send 12 asyncs of 3 MB
 * each through the gateway; every one of them must reach the backend. (Before the fix, the
 * spares carrying them closed as idle and 47 of 48 were lost without a word.)
 */
Test(autolimit, spare_with_queued_asyncs_is_not_idle)
{
	start_backends(1);
	limits = ",\"limits\":{\"spare_idle_ms\":300}";
	start_gate(1, 1, 1, ",\"max_inflight_ceiling\":6");
	int64_t limit, inflight;
	qbench(64, 2, &limit, &inflight, false);
	cr_assert_gt(conns_max, 1, "no spare opened");

	int direct = T_OK(t_q_connect("127.0.0.1", be[0]->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(direct, t_call0(".mock.count"), 5000);
	int64_t c0 = r->a.j;
	t_free(r);
	struct t_obj *sleep = t_call(".mock.sleep", 1, t_long(1500));
	T_OK(t_q_send(direct, T_ASYNC, sleep));
	t_free(sleep);

	enum { CLIENTS = 4, EACH = 12 };
	int fd[CLIENTS];
	struct t_obj *big = t_call(".mock.echo", 1, t_vec(4 /* byte */, 3000000));
	for (int k = 0; k < CLIENTS; k++)
		fd[k] = T_OK(t_q_connect("127.0.0.1", gw_port, "u:x", NULL));
	for (int i = 0; i < EACH; i++)
		for (int k = 0; k < CLIENTS; k++)
			T_OK(t_q_send(fd[k], T_ASYNC, big));
	t_free(big);
	/* the backend counts every message: the asyncs, its sleep and each count query */
	int64_t got = 0, queries = 0, until = t_now_ms() + 10000;
	do {
		poll(NULL, 0, 100);
		r = t_call_ok(direct, t_call0(".mock.count"), 10000);
		queries++;
		got = r->a.j - c0 - 1 - queries;
		t_free(r);
	} while (got < CLIENTS * EACH && t_now_ms() < until);
	cr_log_info("%" PRId64 " of %d asyncs reached the backend; %" PRId64 " spares opened",
		    got, CLIENTS * EACH, be_stat(0, "spare_opens"));
	cr_assert_eq(got, CLIENTS * EACH, "asyncs lost on spare connections closed as idle");
	for (int k = 0; k < CLIENTS; k++)
		close(fd[k]);
	close(direct);
}
