/*
 * test_gateway — acceptance tests for qgate (issue #3): real qgate, real mockq backends and
 * real q clients on loopback. Load spread and per-request tokens with 200 clients, a client's
 * async-then-sync order and pipelined response order, the pool queue's timeout and bound,
 * clients that break the protocol, authentication and --check, a backend killed under a
 * request, qbench through the gateway, and the abstract unix listener.
 *
 * Each test starts its own backends and gateway (fresh ports, fresh temp dir) and kills them
 * on teardown. Without a qgate binary (QGATE_BIN empty) every test fails saying so.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

#define MAX_BE 4

static struct t_proc *be[MAX_BE];
static int n_be;
static struct t_proc *gate;
static int gw_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	n_be = 0;
	gate = NULL;
	gw_port = 0;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(gateway, .init = setup, .fini = teardown, .timeout = 60.0);

/* Fail at once, with the reason, when there is no qgate to test. */
static void need_qgate(void)
{
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
}

/* Start n backends b1..bn, each with the extra mockq arguments (NULL-terminated, may be NULL). */
static void start_backends(int n, const char *const extra[])
{
	cr_assert(n <= MAX_BE);
	for (int k = 0; k < n; k++) {
		char name[16];

		snprintf(name, sizeof(name), "b%d", k + 1);
		be[k] = t_mockq_start(name, extra);
		cr_assert(be[k] != NULL, "%s", t_errmsg());
	}
	n_be = n;
}

/* Fill the config's backends from the running ones, each with conns connections. */
static void cfg_backends(struct t_cfg *c, int conns)
{
	for (int k = 0; k < n_be; k++) {
		c->backends[k].name = be[k]->name;
		c->backends[k].port = be[k]->port;
		c->backends[k].connections = conns;
	}
	c->n_backends = n_be;
}

/* Write the config (listener on a fresh port) and start qgate on it. */
static void start_gate(struct t_cfg *c)
{
	const char *path;

	need_qgate();
	gw_port = T_OK(t_free_port());
	c->listen_port = gw_port;
	path = t_cfg_write(c, "gw.json");
	cr_assert(path != NULL, "%s", t_errmsg());
	gate = t_qgate_start(path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
}

static int connect_gw(void)
{
	return T_OK(t_q_connect("127.0.0.1", gw_port, "tester:pw", NULL));
}

/* .mock.count[] asked directly of backend k (the query itself is counted). */
static int64_t backend_count(int k)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be[k]->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(".mock.count"), 5000);
	int64_t v;

	cr_assert(r->type == -T_LONG, "%s: .mock.count[] gave %s", be[k]->name, t_show(r));
	v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

/*
 * Wait until backend k is inside a blocking .mock.sleep: mockq is single-threaded, so while it
 * sleeps a fresh connection's handshake stays unanswered. Returns true once seen, false if the
 * backend kept answering handshakes for timeout_ms.
 */
static bool backend_busy(int k, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;

	/* Bounded by the deadline: each probe takes at most ~60 ms. */
	while (t_now_ms() < deadline) {
		int fd = t_tcp_connect("127.0.0.1", be[k]->port, 500), rc;

		if (fd < 0)
			return false;
		rc = t_q_handshake(fd, "probe", 3, 40);
		close(fd);
		if (rc == -ETIMEDOUT)
			return true;
		poll(NULL, 0, 5);
	}
	return false;
}

/* backend k does not finish a handshake in 300 ms: asleep, not merely slow to be scheduled */
static bool backend_stalled(int k)
{
	int fd = t_tcp_connect("127.0.0.1", be[k]->port, 500);

	if (fd < 0)
		return false;
	int rc = t_q_handshake(fd, "probe", 3, 300);
	close(fd);
	return rc == -ETIMEDOUT;
}

static const char *const work_args[] = { "--work-us", "300", NULL };

/* ------------------------------------------------------------------ basics */

Test(gateway, proxies_queries_errors_and_large_results)
{
	struct t_cfg c = { 0 };
	int64_t til10[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	struct t_obj *r;
	int cap = -1, fd;

	need_qgate();
	start_backends(2, NULL);
	cfg_backends(&c, 2);
	start_gate(&c);
	fd = T_OK(t_q_connect("127.0.0.1", gw_port, "tester:pw", &cap));
	cr_assert_eq(cap, 3, "gateway replied capability %d to our 3", cap);
	t_call_expect(fd, t_str("1+1"), t_long(2), 5000);
	t_call_expect(fd, t_str("til 10"), t_longs(10, til10), 5000);
	t_call_expect(fd, t_call(".mock.echo", 1, t_list(2, t_sym("x"), t_str("yz"))),
		      t_list(2, t_sym("x"), t_str("yz")), 5000);
	/* A backend's own q error passes through untouched (no "qgate: " prefix). */
	t_call_expect(fd, t_call(".mock.error", 1, t_str("boom")), t_err("boom"), 5000);
	r = t_call_ok(fd, t_call(".mock.bytes", 1, t_long(1000000)), 10000);
	cr_assert(r->type == T_BYTE && r->n == 1000000, "got %s", t_show(r));
	for (uint64_t k = 0; k < r->n; k++)
		cr_assert_eq(((uint8_t *)r->data)[k], (uint8_t)(k % 256), "byte %" PRIu64, k);
	t_free(r);
	r = t_call_ok(fd, t_call0(".mock.id"), 5000);
	cr_assert(r->type == -T_SYM && (!strcmp(r->s, "b1") || !strcmp(r->s, "b2")),
		  "id %s", t_show(r));
	t_free(r);
	close(fd);
}

Test(gateway, compressed_messages_pass_through_both_ways)
{
	const char *const zip[] = { "--compress", NULL };
	struct t_cfg c = { 0 };
	char *text = T_PTR(malloc(100001));
	struct t_obj *req, *r;
	int fd, type = -1, err = 0;
	uint8_t *msg;
	size_t n;

	need_qgate();
	/* mockq --compress compresses large answers even on loopback, as q does to remote peers. */
	start_backends(1, zip);
	cfg_backends(&c, 1);
	start_gate(&c);
	for (int k = 0; k < 100000; k++)
		text[k] = "kdb+ipc "[k % 8];
	text[100000] = 0;
	req = T_PTR(t_call(".mock.echo", 1, t_str(text)));
	fd = connect_gw();
	/* A compressed request reaches the backend intact, and the answer comes back whole. */
	T_OK(t_q_send_compressed(fd, T_SYNC, req));
	T_OK(t_q_recv_raw(fd, 10000, &msg, &n));
	r = t_decode_msg(msg, n, &type, &err);
	cr_assert(r, "answer does not decode (%d)", err);
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(t_is_str(r, text), "echo of a compressed request came back as %s", t_show(r));
	/* "Messages pass through as the peer sent them": still compressed, as mockq sent it. */
	cr_assert_eq(msg[2], 1, "the backend's compressed answer reached the client plain");
	t_free(r);
	free(msg);
	/* And a plain request after it is unaffected. */
	t_call_expect(fd, t_call(".mock.echo", 1, t_str("plain")), t_str("plain"), 5000);
	t_free(req);
	free(text);
	close(fd);
}

Test(gateway, handshake_accepts_every_capability)
{
	struct t_cfg c = { 0 };

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	start_gate(&c);
	for (int cap = 0; cap <= 6; cap++) {
		int fd = T_OK(t_tcp_connect("127.0.0.1", gw_port, 2000));
		int reply = t_q_handshake(fd, "capper:pw", cap, 3000);

		cr_assert(reply >= 0, "capability %d refused: %s", cap, t_errmsg());
		/* min(client, gateway), and the gateway speaks at least 3 */
		if (cap <= 3)
			cr_assert_eq(reply, cap, "client offered %d, gateway replied %d", cap,
				     reply);
		else
			cr_assert(reply >= 3 && reply <= cap,
				  "client offered %d, gateway replied %d", cap, reply);
		t_call_expect(fd, t_call(".mock.echo", 1, t_long(cap)), t_long(cap), 5000);
		close(fd);
	}
}

Test(gateway, silent_connection_dropped_after_handshake_timeout)
{
	struct t_cfg c = { 0 };
	int fd, good;
	int64_t t0, dt;
	size_t got = 0;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	c.extra_top = "\"limits\": {\"handshake_timeout_ms\": 300}";
	start_gate(&c);
	t0 = t_now_ms();
	fd = T_OK(t_tcp_connect("127.0.0.1", gw_port, 2000));
	/* Half a hello, then silence. */
	T_OK(t_send_all(fd, "slow", 4));
	T_OK(t_wait_closed(fd, 3000, &got));
	dt = t_now_ms() - t0;
	cr_log_info("silent client dropped after %" PRId64 " ms", dt);
	cr_assert(dt >= 250 && dt < 1500, "dropped after %" PRId64 " ms, want ~300", dt);
	cr_assert_eq(got, 0, "%zu bytes sent to a client that never finished its hello", got);
	close(fd);
	/* A client that does finish is served as usual. */
	good = connect_gw();
	t_call_expect(good, t_str("1+1"), t_long(2), 5000);
	close(good);
}

Test(gateway, backend_initiated_messages_reach_no_client_in_query_mode)
{
	struct t_cfg c = { 0 };
	struct t_obj *r = NULL;
	int fd, other, type = -1;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	start_gate(&c);
	fd = connect_gw();
	other = connect_gw();
	/* The backend answers 3, then pushes 3 async (`upd;i) on the shared connection. */
	t_call_expect(fd, t_call(".mock.pub", 2, t_long(3), t_long(10)), t_long(3), 5000);
	/* Those pushes belong to no client: neither this one nor another may see them. */
	t_call_expect(other, t_call(".mock.echo", 1, t_str("o1")), t_str("o1"), 5000);
	cr_assert_eq(t_q_recv(fd, 300, &r, &type), -ETIMEDOUT, "client got %s (type %d)",
		     t_show(r), type);
	cr_assert_eq(t_q_recv(other, 50, &r, &type), -ETIMEDOUT, "other client got %s",
		     t_show(r));
	/* And the connection is still good for both. */
	t_call_expect(fd, t_call(".mock.echo", 1, t_str("after")), t_str("after"), 5000);
	t_call_expect(other, t_call(".mock.echo", 1, t_str("o2")), t_str("o2"), 5000);
	close(fd);
	close(other);
}

/* ------------------------------------------------- 200 clients, tokens, spread */

#define N_CLIENTS 200
#define N_ROUNDS 30

struct client_job {
	int id;
	pthread_barrier_t *start;
	int n_sync_ok;
	int n_async;
	char err[256];
};

static void *client_mix(void *arg)
{
	struct client_job *j = arg;
	int fd = t_q_connect("127.0.0.1", gw_port, "mix:pw", NULL);

	if (fd < 0)
		snprintf(j->err, sizeof(j->err), "client %d: connect: %s", j->id, t_errmsg());
	pthread_barrier_wait(j->start);
	if (fd < 0)
		return NULL;
	for (int i = 0; i < N_ROUNDS; i++) {
		char tok[48];
		struct t_obj *req, *r;

		snprintf(tok, sizeof(tok), "%s-c%d-r%d", i % 3 == 1 ? "async" : "sync", j->id, i);
		/*
		 * Sync requests are answered by the backend after 3 ms of wall-clock time
		 * (.mock.defer does not spin), so how busy a backend is depends on how the gateway
		 * spreads the load and not on how the OS shares two cores among the processes.
		 */
		req = i % 3 == 1 ? t_call(".mock.echo", 1, t_str(tok)) :
				   t_call(".mock.defer", 2, t_long(3), t_str(tok));
		if (!req) {
			snprintf(j->err, sizeof(j->err), "client %d: out of memory", j->id);
			break;
		}
		/*
		 * Every third message is async: it must not disturb the sync answers around it.
		 * The last message is sync, so every async one is followed by a sync that proves
		 * it was passed on (async_then_close_is_delivered covers the other case).
		 */
		if (i % 3 == 1) {
			if (t_q_send(fd, T_ASYNC, req) < 0) {
				snprintf(j->err, sizeof(j->err), "client %d async %d: %s", j->id, i,
					 t_errmsg());
				t_free(req);
				break;
			}
			j->n_async++;
			t_free(req);
			continue;
		}
		r = t_q_call(fd, req, 30000, NULL, NULL);
		t_free(req);
		if (!r) {
			snprintf(j->err, sizeof(j->err), "client %d round %d: %s", j->id, i,
				 t_errmsg());
			break;
		}
		if (!t_is_str(r, tok)) {
			snprintf(j->err, sizeof(j->err),
				 "client %d round %d: sent token %s, got %s", j->id, i, tok,
				 t_show(r));
			t_free(r);
			break;
		}
		t_free(r);
		j->n_sync_ok++;
	}
	close(fd);
	return NULL;
}

Test(gateway, two_hundred_clients_get_their_own_tokens_and_load_is_spread, .timeout = 180.0)
{
	static struct client_job jobs[N_CLIENTS];
	pthread_t th[N_CLIENTS];
	pthread_barrier_t start;
	pthread_attr_t attr;
	struct t_cfg c = { 0 };
	int64_t before[3], after[3], delta[3], lo, hi, sum = 0;
	int n_sync = 0, n_async = 0, want_sync = 0, want_async = 0;

	need_qgate();
	start_backends(3, NULL);
	cfg_backends(&c, 4);
	c.queue_max = 10000;
	c.queue_timeout_ms = 60000;
	start_gate(&c);
	for (int k = 0; k < 3; k++)
		before[k] = backend_count(k);

	pthread_barrier_init(&start, NULL, N_CLIENTS + 1);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (int k = 0; k < N_CLIENTS; k++) {
		jobs[k] = (struct client_job){ .id = k, .start = &start };
		cr_assert_eq(pthread_create(&th[k], &attr, client_mix, &jobs[k]), 0);
	}
	pthread_barrier_wait(&start);
	for (int k = 0; k < N_CLIENTS; k++)
		pthread_join(th[k], NULL);
	pthread_barrier_destroy(&start);
	for (int k = 0; k < N_CLIENTS; k++) {
		cr_assert(jobs[k].err[0] == 0, "%s", jobs[k].err);
		n_sync += jobs[k].n_sync_ok;
		n_async += jobs[k].n_async;
	}
	for (int i = 0; i < N_ROUNDS; i++) {
		want_sync += i % 3 != 1;
		want_async += i % 3 == 1;
	}
	cr_assert_eq(n_sync, N_CLIENTS * want_sync);
	cr_assert_eq(n_async, N_CLIENTS * want_async);

	/*
	 * Async messages have no reply to wait for: give the backends a bounded time to have
	 * seen every message, then compare the counts.
	 */
	{
		int64_t deadline = t_now_ms() + 10000;
		int n_polls = 0;

		/* Bounded by the deadline; each pass asks every backend once. */
		do {
			n_polls++;
			sum = 0;
			for (int k = 0; k < 3; k++) {
				after[k] = backend_count(k);
				/* minus our own count queries made since `before` */
				delta[k] = after[k] - before[k] - n_polls;
				sum += delta[k];
			}
		} while (sum < n_sync + n_async && t_now_ms() < deadline);
	}
	/* Every message reached a backend exactly once; only a few gateway probes on top. */
	cr_assert(sum >= n_sync + n_async && sum <= n_sync + n_async + 12,
		  "backends saw %" PRId64 " messages, clients sent %d", sum, n_sync + n_async);
	lo = hi = delta[0];
	for (int k = 1; k < 3; k++) {
		lo = delta[k] < lo ? delta[k] : lo;
		hi = delta[k] > hi ? delta[k] : hi;
	}
	cr_log_info("spread: b1=%" PRId64 " b2=%" PRId64 " b3=%" PRId64, delta[0], delta[1],
		    delta[2]);
	/* 1.5x: a busy machine skews answer times; a balancer that ignores a backend is far off */
	cr_assert(lo > 0 && hi * 2 <= lo * 3,
		  "uneven spread: b1=%" PRId64 " b2=%" PRId64 " b3=%" PRId64 " (max > 1.5 x min)",
		  delta[0], delta[1], delta[2]);
}

/* ------------------------------------------------------------------ ordering */

#define N_WRITERS 8
#define N_WRITES 60

struct writer_job {
	int id;
	char err[256];
};

static void *writer(void *arg)
{
	struct writer_job *j = arg;
	int fd = t_q_connect("127.0.0.1", gw_port, "writer:pw", NULL);
	char key[32];

	if (fd < 0) {
		snprintf(j->err, sizeof(j->err), "writer %d: connect: %s", j->id, t_errmsg());
		return NULL;
	}
	snprintf(key, sizeof(key), "k%d", j->id);
	for (int i = 0; i < N_WRITES; i++) {
		int64_t v = (int64_t)j->id * 1000000 + i;
		struct t_obj *set = t_call("set", 2, t_sym(key), t_long(v));
		struct t_obj *get = t_sym(key), *r;
		int rc = set && get ? t_q_send(fd, T_ASYNC, set) : -ENOMEM;

		t_free(set);
		r = rc == 0 ? t_q_call(fd, get, 10000, NULL, NULL) : NULL;
		t_free(get);
		if (!r) {
			snprintf(j->err, sizeof(j->err), "writer %d write %d: %s", j->id, i,
				 t_errmsg());
			break;
		}
		if (r->type != -T_LONG || r->a.j != v) {
			snprintf(j->err, sizeof(j->err),
				 "writer %d: async set `%s to %" PRId64 " then sync read got %s",
				 j->id, key, v, t_show(r));
			t_free(r);
			break;
		}
		t_free(r);
	}
	close(fd);
	return NULL;
}

Test(gateway, async_write_then_sync_read_sees_own_write, .timeout = 120.0)
{
	struct writer_job jobs[N_WRITERS];
	pthread_t th[N_WRITERS];
	struct t_cfg c = { 0 };

	need_qgate();
	/* Two separate backends: a read sent to the other one would not see the write. */
	start_backends(2, NULL);
	cfg_backends(&c, 3);
	start_gate(&c);
	for (int k = 0; k < N_WRITERS; k++) {
		jobs[k] = (struct writer_job){ .id = k };
		cr_assert_eq(pthread_create(&th[k], NULL, writer, &jobs[k]), 0);
	}
	for (int k = 0; k < N_WRITERS; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < N_WRITERS; k++)
		cr_assert(jobs[k].err[0] == 0, "%s", jobs[k].err);
}

/* Read global name directly from backend k; NULL-free: returns the response (caller frees). */
static struct t_obj *backend_get(int k, const char *name)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be[k]->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_sym(name), 5000);

	close(fd);
	return r;
}

#define N_CLOSERS 50

struct closer_job {
	int id;
	char err[256];
};

static void *closer(void *arg)
{
	struct closer_job *j = arg;
	int fd = t_q_connect("127.0.0.1", gw_port, "closer:pw", NULL);
	struct t_obj *m;
	char key[16];

	if (fd < 0) {
		snprintf(j->err, sizeof(j->err), "closer %d: connect: %s", j->id, t_errmsg());
		return NULL;
	}
	for (int i = 0; i < 3; i++) {
		struct t_obj *r;

		m = t_call(".mock.echo", 1, t_long(i));
		r = m ? t_q_call(fd, m, 10000, NULL, NULL) : NULL;
		t_free(m);
		if (!r || r->type != -T_LONG || r->a.j != i) {
			snprintf(j->err, sizeof(j->err), "closer %d: echo %d gave %s", j->id, i,
				 r ? t_show(r) : t_errmsg());
			t_free(r);
			close(fd);
			return NULL;
		}
		t_free(r);
	}
	snprintf(key, sizeof(key), "z%d", j->id);
	m = t_call("set", 2, t_sym(key), t_long(j->id));
	if (!m || t_q_send(fd, T_ASYNC, m) < 0)
		snprintf(j->err, sizeof(j->err), "closer %d: send: %s", j->id, t_errmsg());
	t_free(m);
	close(fd);
	return NULL;
}

Test(gateway, async_then_close_is_delivered)
{
	struct closer_job jobs[N_CLOSERS];
	pthread_t th[N_CLOSERS];
	struct t_cfg c = { 0 };

	need_qgate();
	start_backends(2, work_args);
	cfg_backends(&c, 2);
	start_gate(&c);
	/*
	 * As on a direct connection, bytes q received before the client closed are still
	 * executed. Each client: sync round trips, an async set, then close at once -- many at
	 * the same time, so that the gateway's connections are busy when the sets arrive.
	 */
	for (int k = 0; k < N_CLOSERS; k++) {
		jobs[k] = (struct closer_job){ .id = k };
		cr_assert_eq(pthread_create(&th[k], NULL, closer, &jobs[k]), 0);
	}
	for (int k = 0; k < N_CLOSERS; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < N_CLOSERS; k++)
		cr_assert(jobs[k].err[0] == 0, "%s", jobs[k].err);
	for (int k = 0; k < N_CLOSERS; k++) {
		int64_t deadline = t_now_ms() + 3000;
		char key[16];
		struct t_obj *r[2] = { NULL, NULL };

		snprintf(key, sizeof(key), "z%d", k);
		/* Bounded: the write may still be on its way; look again for up to 3 s. */
		for (;;) {
			r[0] = backend_get(0, key);
			r[1] = backend_get(1, key);
			if (r[0]->type == -T_LONG || r[1]->type == -T_LONG ||
			    t_now_ms() >= deadline)
				break;
			t_free(r[0]);
			t_free(r[1]);
			poll(NULL, 0, 20);
		}
		cr_assert((r[0]->type == -T_LONG && r[0]->a.j == k) ||
			  (r[1]->type == -T_LONG && r[1]->a.j == k),
			  "async set of `%s sent just before close reached no backend: "
			  "b1 has %s, b2 has %s", key, t_show(r[0]), t_show(r[1]));
		t_free(r[0]);
		t_free(r[1]);
	}
}

Test(gateway, pipelined_sync_requests_answer_in_request_order)
{
	struct t_cfg c = { 0 };
	struct t_obj *reqs[6], *want[6];
	int fd, type = -1;
	int64_t t0;

	need_qgate();
	start_backends(2, NULL);
	cfg_backends(&c, 2);
	start_gate(&c);
	fd = connect_gw();
	/* Slow first, fast after it, all written before reading anything. */
	reqs[0] = t_call(".mock.sleep", 1, t_long(300));
	want[0] = t_long(300);
	reqs[1] = t_call(".mock.echo", 1, t_str("fast"));
	want[1] = t_str("fast");
	reqs[2] = t_call(".mock.sleep", 1, t_long(100));
	want[2] = t_long(100);
	reqs[3] = t_call(".mock.echo", 1, t_str("b"));
	want[3] = t_str("b");
	reqs[4] = t_call(".mock.echo", 1, t_long(4));
	want[4] = t_long(4);
	reqs[5] = t_call(".mock.sleep", 1, t_long(20));
	want[5] = t_long(20);
	t0 = t_now_ms();
	for (int k = 0; k < 6; k++) {
		cr_assert(reqs[k] && want[k]);
		T_OK(t_q_send(fd, T_SYNC, reqs[k]));
	}
	for (int k = 0; k < 6; k++) {
		struct t_obj *r = NULL;

		T_OK(t_q_recv(fd, 10000, &r, &type));
		cr_assert_eq(type, T_RESPONSE, "message %d has type %d", k, type);
		cr_assert(t_equal(r, want[k]), "response %d is %s, want %s (request %s)", k,
			  t_show(r), t_show(want[k]), t_show(reqs[k]));
		if (k == 0)
			cr_assert(t_now_ms() - t0 >= 300, "first answer before its 300 ms sleep");
		t_free(r);
	}
	for (int k = 0; k < 6; k++) {
		t_free(reqs[k]);
		t_free(want[k]);
	}
	close(fd);
}

/* ------------------------------------------------------------------ queue */

Test(gateway, queued_request_times_out_with_queue_timeout)
{
	struct t_cfg c = { 0 };
	struct t_obj *r = NULL;
	int a, b, type = -1;
	int64_t t0, dt;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	c.queue_max = 1000;
	c.queue_timeout_ms = 100;
	start_gate(&c);
	a = connect_gw();
	b = connect_gw();
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.sleep", 1, t_long(2000))));
	cr_assert(backend_busy(0, 2000), "backend never became busy with A's sleep");

	t0 = t_now_ms();
	T_OK(t_send_free(b, T_SYNC, t_call(".mock.echo", 1, t_str("B"))));
	T_OK(t_q_recv(b, 3000, &r, &type));
	dt = t_now_ms() - t0;
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(t_is_err_prefix(r, "qgate: queue timeout"), "B got %s", t_show(r));
	cr_log_info("queue timeout after %" PRId64 " ms", dt);
	/* the queue's 100 ms, not A's 2 s: a bound with room for a busy machine */
	cr_assert(dt >= 100 && dt < 1000, "queue timeout after %" PRId64 " ms, want 100-1000",
		  dt);
	struct pollfd pa = { .fd = a, .events = POLLIN };
	cr_assert_eq(poll(&pa, 1, 0), 0, "A's answer came before B's queue timeout");
	t_free(r);
	/* A is unaffected and B's connection still works once the backend is free. */
	T_OK(t_q_recv(a, 5000, &r, &type));
	T_EXPECT_EQ(r, t_long(2000));
	t_free(r);
	t_call_expect(b, t_call(".mock.echo", 1, t_str("again")), t_str("again"), 3000);
	close(a);
	close(b);
}

/* The first pool's "queued" figure from the stats endpoint on port (-1 if unreadable). */
static int64_t stats_queued(int port)
{
	char *body = NULL;
	int64_t v = -1;

	if (t_http_get(port, "/stats", &body) == 200) {
		const char *q = strstr(body, "\"queued\": ");
		if (q)
			v = strtoll(q + 10, NULL, 10);
	}
	free(body);
	return v;
}

Test(gateway, queue_full_refuses_the_extra_request_at_once)
{
	struct t_cfg c = { 0 };
	struct t_obj *r = NULL;
	int a, b, x, type = -1;
	int64_t t0, dt;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	c.queue_max = 1;
	c.queue_timeout_ms = 5000;
	int stats_port = T_OK(t_free_port());
	char extra[64];
	snprintf(extra, sizeof(extra), "\"stats\":{\"listen\":\"127.0.0.1:%d\"}", stats_port);
	c.extra_top = extra;
	start_gate(&c);
	a = connect_gw();
	b = connect_gw();
	x = connect_gw();
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.sleep", 1, t_long(2000))));
	cr_assert(backend_busy(0, 2000), "backend never became busy with A's sleep");
	T_OK(t_send_free(b, T_SYNC, t_call(".mock.echo", 1, t_str("queued"))));
	/* B's request must be in the queue before X's arrives: the stats endpoint says when */
	int64_t queued = -1, until = t_now_ms() + 2000;
	while (queued != 1 && t_now_ms() < until)
		queued = stats_queued(stats_port);
	cr_assert_eq(queued, 1, "B's request never showed as queued");
	t0 = t_now_ms();
	T_OK(t_send_free(x, T_SYNC, t_call(".mock.echo", 1, t_str("extra"))));
	T_OK(t_q_recv(x, 3000, &r, &type));
	dt = t_now_ms() - t0;
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(t_is_err_prefix(r, "qgate: queue full"), "extra request got %s", t_show(r));
	cr_log_info("queue full after %" PRId64 " ms", dt);
	/* at once: while A's 2 s sleep still runs (a bound with room for a busy machine) */
	struct pollfd pa = { .fd = a, .events = POLLIN };
	cr_assert_eq(poll(&pa, 1, 0), 0, "A's answer came before X's refusal");
	cr_assert(dt < 500, "queue full answered after %" PRId64 " ms, want < 500", dt);
	t_free(r);
	/* The queued one waits for the backend, then gets its own answer. */
	T_OK(t_q_recv(a, 5000, &r, &type));
	T_EXPECT_EQ(r, t_long(2000));
	t_free(r);
	T_OK(t_q_recv(b, 3000, &r, &type));
	T_EXPECT_EQ(r, t_str("queued"));
	t_free(r);
	close(a);
	close(b);
	close(x);
}

/* ------------------------------------------------- abandoned answers never leak */

Test(gateway, query_timeout_answers_then_late_reply_is_drained)
{
	struct t_cfg c = { 0 };
	struct t_obj *r = NULL;
	int a, b, type = -1;
	int64_t t0, dt;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	c.query_timeout_ms = 200;
	start_gate(&c);
	a = connect_gw();
	b = connect_gw();
	t0 = t_now_ms();
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.sleep", 1, t_long(1500))));
	T_OK(t_q_recv(a, 3000, &r, &type));
	dt = t_now_ms() - t0;
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(t_is_err_prefix(r, "qgate: timeout"), "slow request got %s", t_show(r));
	cr_log_info("query timeout after %" PRId64 " ms", dt);
	/* the 200 ms timeout, well before the 1.5 s answer (room for a busy machine) */
	cr_assert(dt >= 200 && dt < 1000, "timeout after %" PRId64 " ms, want ~200", dt);
	t_free(r);
	/* The backend's late 1500 must be read and dropped, never given to the next request. */
	t_call_expect(b, t_call(".mock.echo", 1, t_str("mine")), t_str("mine"), 5000);
	t_call_expect(a, t_call(".mock.echo", 1, t_str("a again")), t_str("a again"), 5000);
	close(a);
	close(b);
}

Test(gateway, answer_for_a_client_that_left_goes_to_nobody_else)
{
	struct t_cfg c = { 0 };
	int a, b;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	start_gate(&c);
	a = connect_gw();
	b = connect_gw();
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.sleep", 1, t_long(300))));
	cr_assert(backend_busy(0, 2000), "backend never became busy with A's request");
	close(a);
	/* B's request can only run after A's; B must get its own answer, not A's 300. */
	t_call_expect(b, t_call(".mock.echo", 1, t_str("B's own")), t_str("B's own"), 5000);
	for (int k = 0; k < 5; k++)
		t_call_expect(b, t_call(".mock.echo", 1, t_long(k)), t_long(k), 5000);
	close(b);
}

/* ------------------------------------------------------------------ garbage */

#define N_GOOD 50
#define N_GOOD_ROUNDS 40

struct echo_job {
	int id;
	pthread_barrier_t *start;
	int n_ok;
	char err[256];
};

static void *echo_client(void *arg)
{
	struct echo_job *j = arg;
	int fd = t_q_connect("127.0.0.1", gw_port, "good:pw", NULL);

	if (fd < 0)
		snprintf(j->err, sizeof(j->err), "good client %d: connect: %s", j->id, t_errmsg());
	pthread_barrier_wait(j->start);
	for (int i = 0; fd >= 0 && i < N_GOOD_ROUNDS; i++) {
		char tok[32];
		struct t_obj *req, *r;

		snprintf(tok, sizeof(tok), "g%d-%d", j->id, i);
		req = t_call(".mock.echo", 1, t_str(tok));
		r = req ? t_q_call(fd, req, 10000, NULL, NULL) : NULL;
		t_free(req);
		if (!r || !t_is_str(r, tok)) {
			snprintf(j->err, sizeof(j->err), "good client %d round %d: %s", j->id, i,
				 r ? t_show(r) : t_errmsg());
			t_free(r);
			break;
		}
		t_free(r);
		j->n_ok++;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	return ntohs(sa.sin_port);
}

/* Send bytes on a handshaken client; it must be closed and a log line must name it. */
static void expect_closed_and_logged(const uint8_t *bytes, size_t n, const char *what)
{
	int fd = connect_gw(), rc;
	size_t got = 0, log_from = t_file_size(gate->err_path);
	char port_s[16];
	const char *needles[2] = { "closing client", port_s };

	snprintf(port_s, sizeof(port_s), ":%d", local_port(fd));
	T_OK(t_send_all(fd, bytes, n));
	rc = t_wait_closed(fd, 3000, &got);
	cr_assert_eq(rc, 0, "%s: client not closed: %s", what, t_errmsg());
	close(fd);
	rc = t_wait_line_with(gate->err_path, log_from, 2, needles, 3000);
	cr_assert_eq(rc, 0, "%s: no log line about the client (want \"closing client\" and "
		     "its address): %s", what, t_errmsg());
}

Test(gateway, garbage_closes_only_the_sender, .timeout = 120.0)
{
	static struct echo_job jobs[N_GOOD];
	const uint8_t bad_header[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	/* A sync message claiming 2^31-1 bytes: far above max_message_bytes (256 MiB). */
	const uint8_t huge[] = { 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f,
				 0x0a, 0x00, 0x10, 0x00, 0x00, 0x00 };
	pthread_t th[N_GOOD];
	pthread_barrier_t start;
	struct t_cfg c = { 0 };

	need_qgate();
	start_backends(2, NULL);
	cfg_backends(&c, 2);
	start_gate(&c);
	pthread_barrier_init(&start, NULL, N_GOOD + 1);
	for (int k = 0; k < N_GOOD; k++) {
		jobs[k] = (struct echo_job){ .id = k, .start = &start };
		cr_assert_eq(pthread_create(&th[k], NULL, echo_client, &jobs[k]), 0);
	}
	pthread_barrier_wait(&start);
	/* While the 50 good clients run: */
	expect_closed_and_logged(bad_header, sizeof(bad_header), "bad header");
	expect_closed_and_logged(huge, sizeof(huge), "absurd length");
	for (int k = 0; k < N_GOOD; k++)
		pthread_join(th[k], NULL);
	pthread_barrier_destroy(&start);
	for (int k = 0; k < N_GOOD; k++) {
		cr_assert(jobs[k].err[0] == 0, "%s", jobs[k].err);
		cr_assert_eq(jobs[k].n_ok, N_GOOD_ROUNDS);
	}
	cr_assert(t_proc_alive(gate), "qgate died");
}

/* ------------------------------------------------------------------ auth */

static char *hash_password(const char *pw)
{
	char *h = t_hash_password(pw);

	cr_assert(h != NULL, "%s", t_errmsg());
	return h;
}

Test(gateway, auth_accepts_alice_and_closes_wrong_passwords)
{
	struct t_cfg c = { 0 };
	char extra[512], *hash;
	const char *bad[] = { "alice:wrong", "alice:", "alice", "bob:secret", "" };
	int cap = -1, fd;

	need_qgate();
	hash = hash_password("secret");
	snprintf(extra, sizeof(extra),
		 "\"auth\": {\"users\": [{\"name\": \"alice\", \"password_hash\": \"%s\", "
		 "\"pools\": [\"p\"]}]}", hash);
	free(hash);
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	c.extra_top = extra;
	start_gate(&c);

	fd = T_OK(t_q_connect("127.0.0.1", gw_port, "alice:secret", &cap));
	cr_assert_eq(cap, 3, "capability byte %d", cap);
	t_call_expect(fd, t_call(".mock.echo", 1, t_str("hi alice")), t_str("hi alice"), 5000);
	close(fd);
	for (int k = 0; k < 5; k++) {
		size_t got = 0;

		fd = T_OK(t_tcp_connect("127.0.0.1", gw_port, 2000));
		cr_assert_eq(t_q_handshake(fd, bad[k], 3, 5000), -EACCES,
			     "\"%s\" was not refused by closing: %s", bad[k], t_errmsg());
		/* Closed without any byte: the handshake saw EOF; nothing more may follow. */
		T_OK(t_wait_closed(fd, 1000, &got));
		cr_assert_eq(got, 0);
		close(fd);
	}
}

static int run_check(const char *cfg_text, char **output)
{
	char *const argv[] = { (char *)t_bin("QGATE_BIN"), "--check", "-c",
			       (char *)t_write_file("check.json", cfg_text), NULL };
	char *out = NULL, *err = NULL;
	int rc;

	cr_assert(argv[0] && argv[3], "%s", t_errmsg());
	rc = t_run(argv, NULL, 30000, &out, &err);
	cr_assert(rc >= 0, "qgate --check: %s", t_errmsg());
	if (asprintf(output, "%s%s", out ? out : "", err ? err : "") < 0)
		*output = NULL;
	free(out);
	free(err);
	return rc;
}

Test(gateway, check_validates_and_names_the_bad_field)
{
	struct t_cfg c = { 0 };
	char *text, *bad, *p, *out = NULL;
	int rc;

	need_qgate();
	c.listen_port = 5999;
	c.backends[0] = (struct t_cfg_backend){ .name = "b1", .port = 5998, .connections = 2 };
	c.n_backends = 1;
	text = T_PTR(t_cfg_json(&c));
	rc = run_check(text, &out);
	cr_assert_eq(rc, 0, "a valid config was refused (%d): %s", rc, out);
	free(out);

	/* Same file with an unknown strategy. */
	bad = T_PTR(strdup(text));
	p = strstr(bad, "least_outstanding");
	cr_assert(p);
	memcpy(p, "most_outstanding!", strlen("least_outstanding"));
	rc = run_check(bad, &out);
	cr_assert(rc != 0, "bad strategy accepted: %s", out);
	cr_assert(out && strstr(out, "strategy"), "message does not name the field: %s", out);
	free(out);
	free(bad);

	/* A backend address that is no address. */
	c.backends[0].port = 70000;
	free(text);
	text = T_PTR(t_cfg_json(&c));
	rc = run_check(text, &out);
	cr_assert(rc != 0, "port 70000 accepted: %s", out);
	cr_assert(out && strstr(out, "address"), "message does not name the field: %s", out);
	free(out);
	free(text);
}

/* ------------------------------------------------------------- backend loss */

Test(gateway, request_on_killed_backend_gets_backend_error)
{
	struct t_cfg c = { 0 };
	struct t_obj *r = NULL;
	int fd, type = -1, victim = -1, survivor;
	int64_t t0;

	need_qgate();
	start_backends(2, NULL);
	cfg_backends(&c, 2);
	start_gate(&c);
	fd = connect_gw();
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.sleep", 1, t_long(5000))));
	/* Find which backend holds the request: it is the one that stops answering. */
	for (int tries = 0; tries < 20 && victim < 0; tries++)
		for (int k = 0; k < 2 && victim < 0; k++)
			if (backend_busy(k, 100) && backend_stalled(k))
				victim = k;
	cr_assert(victim >= 0, "no backend became busy with the request");
	survivor = 1 - victim;
	T_OK(t_proc_signal(be[victim], SIGKILL));
	T_OK(t_proc_wait(be[victim], 2000));
	t0 = t_now_ms();
	T_OK(t_q_recv(fd, 4000, &r, &type));
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(t_is_err_prefix(r, "qgate: backend"), "in-flight request got %s", t_show(r));
	cr_assert(strstr(r->s, be[victim]->name), "error \"%s\" does not name %s", r->s,
		  be[victim]->name);
	cr_assert(t_now_ms() - t0 < 2000, "error came %" PRId64 " ms after the kill",
		  t_now_ms() - t0);
	t_free(r);
	/* Later requests, on this connection and a new one, go to the backend that remains. */
	for (int i = 0; i < 10; i++)
		t_call_expect(fd, t_call0(".mock.id"), t_sym(be[survivor]->name), 5000);
	close(fd);
	fd = connect_gw();
	for (int i = 0; i < 10; i++)
		t_call_expect(fd, t_call0(".mock.id"), t_sym(be[survivor]->name), 5000);
	close(fd);
}

/* ------------------------------------------------------------------ qbench */

Test(gateway, qbench_64_connections_through_gateway, .timeout = 90.0)
{
	const char *bin = t_bin("QBENCH_BIN");
	char port_s[16], *out = NULL, *err = NULL;
	struct t_cfg c = { 0 };
	json_error_t jerr;
	json_t *j, *mm, *req;
	int rc;

	need_qgate();
	cr_assert(bin, "%s", t_errmsg());
	start_backends(2, NULL);
	cfg_backends(&c, 4);
	c.queue_max = 10000;
	start_gate(&c);
	snprintf(port_s, sizeof(port_s), "%d", gw_port);
	{
		char *const argv[] = { (char *)bin, "--host", "127.0.0.1", "--port", port_s,
				       "--conns", "64", "--seconds", "5", "--json", NULL };

		rc = t_run(argv, NULL, 60000, &out, &err);
	}
	cr_assert_eq(rc, 0, "qbench exited %d: %s\nstdout: %s\nstderr: %s", rc, t_errmsg(),
		     out ? out : "", err ? err : "");
	j = json_loads(out, JSON_DECODE_ANY, &jerr);
	cr_assert(j != NULL, "qbench --json output is not JSON (%s): %s", jerr.text, out);
	/* qbench's own verdicts, each must be zero; and it must have done real work. */
	{
		const char *zero[] = { "mismatches", "errors", "unexpected", "unanswered" };

		for (int k = 0; k < 4; k++) {
			mm = json_object_get(j, zero[k]);
			cr_assert(json_is_integer(mm), "no integer \"%s\" in %s", zero[k], out);
			cr_assert_eq(json_integer_value(mm), 0, "%s: %s", zero[k], out);
		}
	}
	req = json_object_get(j, "requests");
	cr_assert(json_is_integer(req) && json_integer_value(req) > 1000,
		  "implausible request count in %s", out);
	json_decref(j);
	free(out);
	free(err);
	cr_assert(t_proc_alive(gate), "qgate died under qbench");
}

/*
 * A ring of 8 submission entries (16 completions) under 64 busy connections: the submission
 * queue fills many times a turn and completions overflow. qgate used to abort when a submit
 * could not make room; now it moves completions aside and goes on, with every answer right.
 */
Test(gateway, tiny_ring_keeps_every_answer_right_under_load, .timeout = 90.0)
{
	const char *bin = t_bin("QBENCH_BIN");
	char port_s[16], extra[256], *out = NULL, *err = NULL, *body = NULL;
	struct t_cfg c = { 0 };
	int stats_port = T_OK(t_free_port());
	json_error_t jerr;
	int rc;

	need_qgate();
	cr_assert(bin, "%s", t_errmsg());
	start_backends(2, NULL);
	cfg_backends(&c, 4);
	c.queue_max = 10000;
	snprintf(extra, sizeof(extra), "\"stats\":{\"listen\":\"127.0.0.1:%d\"},"
		 "\"limits\":{\"ring_entries\":8,\"rx_buffers\":64}", stats_port);
	c.extra_top = extra;
	start_gate(&c);
	snprintf(port_s, sizeof(port_s), "%d", gw_port);
	{
		char *const argv[] = { (char *)bin, "--host", "127.0.0.1", "--port", port_s,
				       "--conns", "64", "--seconds", "3", "--async-ratio", "0.2",
				       "--json", NULL };

		rc = t_run(argv, NULL, 60000, &out, &err);
	}
	cr_assert_eq(rc, 0, "qbench exited %d: %s\nstdout: %s\nstderr: %s", rc, t_errmsg(),
		     out ? out : "", err ? err : "");
	json_t *j = json_loads(out, JSON_DECODE_ANY, &jerr);
	cr_assert(j != NULL, "qbench --json output is not JSON (%s): %s", jerr.text, out);
	const char *zero[] = { "mismatches", "errors", "unexpected", "unanswered" };
	for (int k = 0; k < 4; k++)
		cr_assert_eq(json_integer_value(json_object_get(j, zero[k])), 0, "%s: %s", zero[k],
			     out);
	cr_assert(json_integer_value(json_object_get(j, "requests")) > 1000, "too few: %s", out);
	json_decref(j);
	cr_assert(t_proc_alive(gate), "qgate died with a tiny ring");
	/* the full-queue path did run */
	cr_assert_eq(t_http_get(stats_port, "/stats", &body), 200, "no /stats: %s", t_errmsg());
	j = json_loads(body, 0, &jerr);
	cr_assert(j, "bad /stats JSON: %s", body);
	json_int_t full = json_integer_value(json_object_get(json_object_get(j, "gateway"),
							     "sq_full"));
	cr_assert(full > 0, "the submission queue never filled: %s", body);
	json_decref(j);
	free(body);
	free(out);
	free(err);
}

/* ------------------------------------------------------------------ unix */

Test(gateway, unix_listener_on_q_abstract_name)
{
	struct t_cfg c = { 0 };
	struct t_obj *r;
	int fd, cap = -1;

	need_qgate();
	start_backends(1, NULL);
	cfg_backends(&c, 1);
	c.unix_port = T_OK(t_free_abstract_port());
	start_gate(&c);
	T_OK(t_wait_accepting_unix(c.unix_port, 5000, gate->pid));
	fd = T_OK(t_q_connect_unix(c.unix_port, "local:pw", &cap));
	cr_assert_eq(cap, 3);
	t_call_expect(fd, t_str("1+1"), t_long(2), 5000);
	r = t_call_ok(fd, t_call0(".mock.id"), 5000);
	T_EXPECT_EQ(r, t_sym("b1"));
	t_free(r);
	close(fd);
}
