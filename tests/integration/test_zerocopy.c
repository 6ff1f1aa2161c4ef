/*
 * test_zerocopy — large answers sent from the receive buffers they arrived in
 * (limits.zero_copy_bytes, issue #11 item 3): every byte and every pairing still right, only
 * answers at or above the threshold take the path (gateway.bytes_zero_copy in /stats), and the
 * lent buffers all come back (gateway.rx_buffers_lent back to 0) whatever happens mid-answer:
 * a client that leaves (FIN or RST), a client that stops reading (its backend pauses, the
 * others are served, at most half the ring is lent), a backend killed mid-answer (the client
 * sees what the copying path gives it: the cut, then the close), and several clients
 * pipelining large and small answers at once, a query timeout mid-answer (cut and close, the
 * backend drains). A large request streamed to its backend goes
 * from the receive buffers too.
 *
 * Real processes on loopback: the qgate binary (one worker, so /stats is live) and mockq,
 * whose .mock.bytes[n] answers a byte vector of n bytes i mod 256; every wait is bounded.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

/* a .mock.bytes[n] answer is a q message of n + 14 bytes: header 8, type, attr, count 4 */
#define MSG_OVERHEAD 14
#define THRESHOLD 100000

static struct t_proc *be, *gate;
static int gw_port, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	be = gate = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(zerocopy, .init = setup, .fini = teardown, .timeout = 60.0);

/* mockq b1, and qgate with one pool on it: connections (each may carry a request at once),
 * then extra "limits" members, then extra top-level members (each with a leading comma). */
static void start_with(int connections, const char *limits, const char *extra)
{
	char *text = NULL;

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text, "{\"workers\":1,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"stats\":{\"listen\":"
			   "\"127.0.0.1:%d\"},\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":"
			   "\"b1\",\"address\":\"127.0.0.1:%d\",\"connections\":%d,"
			   "\"max_inflight\":%d}]}],\"limits\":{%s}%s}", gw_port, stats_port,
			   be->port, connections, connections, limits, extra) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = t_qgate_start(path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	T_OK(t_wait_accepting("127.0.0.1", stats_port, 5000, gate->pid));
}

static void start(int connections, const char *limits)
{
	start_with(connections, limits, "");
}

static int connect_gw(void)
{
	return T_OK(t_q_connect("127.0.0.1", gw_port, "zc:x", NULL));
}

static int64_t gw_stat(const char *key)
{
	char path[96];

	snprintf(path, sizeof(path), "gateway/%s", key);
	return t_stats_int(stats_port, path);
}

static int64_t be_stat(const char *key)
{
	char path[96];

	snprintf(path, sizeof(path), "pools/0/backends/0/connections/%s", key);
	return t_stats_int(stats_port, path);
}

/* Poll (bounded) until fn(key) == want; returns the last value seen. */
static int64_t wait_eq(int64_t (*fn)(const char *), const char *key, int64_t want, int ms)
{
	int64_t deadline = t_now_ms() + ms, v = -1;

	while (t_now_ms() < deadline) {
		v = fn(key);
		if (v == want)
			break;
		poll(NULL, 0, 10);	/* pacing between polls */
	}
	return v;
}

/* Is r exactly what .mock.bytes[n] answers? Every byte is checked. */
static bool bytes_ok(const struct t_obj *r, int64_t n, char *why, size_t why_n)
{
	if (!r || r->type != T_BYTE || (int64_t)r->n != n) {
		snprintf(why, why_n, "want %" PRId64 " bytes, got %s", n,
			 r ? t_show(r) : t_errmsg());
		return false;
	}
	const uint8_t *d = r->data;
	for (int64_t i = 0; i < n; i++)
		if (d[i] != (uint8_t)i) {
			snprintf(why, why_n, "byte %" PRId64 " of %" PRId64 " is %u", i, n, d[i]);
			return false;
		}
	return true;
}

static void call_bytes(int fd, int64_t n)
{
	char why[160];
	struct t_obj *r = t_call_ok(fd, t_call(".mock.bytes", 1, t_long(n)), 10000);

	cr_assert(bytes_ok(r, n, why, sizeof(why)), ".mock.bytes[%" PRId64 "]: %s", n, why);
	t_free(r);
}

/* ----------------------------------------------------------- the threshold */

Test(zerocopy, only_answers_at_or_above_the_threshold_are_lent_and_all_arrive_whole)
{
	start(1, "\"zero_copy_bytes\":" "100000");
	int fd = connect_gw();

	/* one byte under: copied, whole */
	int64_t c0 = gw_stat("bytes_zero_copy");
	call_bytes(fd, THRESHOLD - 1 - MSG_OVERHEAD);
	cr_assert_eq(gw_stat("bytes_zero_copy"), c0, "an answer of %d bytes, under the "
		     "threshold, was sent from the receive buffers", THRESHOLD - 1);
	/* exactly at it: lent (pieces of 4 KiB or more), at most the message's bytes */
	call_bytes(fd, THRESHOLD - MSG_OVERHEAD);
	int64_t c1 = gw_stat("bytes_zero_copy");
	cr_assert(c1 > c0 && c1 - c0 <= THRESHOLD, "an answer of exactly the threshold: %"
		  PRId64 " bytes counted as sent uncopied", c1 - c0);
	/* above it, small to large */
	static const int64_t sizes[] = { THRESHOLD + 1, 1 << 20, (3 << 20) + 7, 9 << 20 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int64_t before = gw_stat("bytes_zero_copy");
		call_bytes(fd, sizes[i]);
		int64_t lent = gw_stat("bytes_zero_copy") - before;
		cr_assert(lent > 0 && lent <= sizes[i] + MSG_OVERHEAD, ".mock.bytes[%" PRId64 "]: "
			  "%" PRId64 " bytes counted as sent uncopied", sizes[i], lent);
	}
	/* small ones after the large ones are still right (nothing left over in the queue) */
	call_bytes(fd, 10);
	call_bytes(fd, 0);
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent once every answer was read");
	close(fd);
}

Test(zerocopy, zero_turns_it_off)
{
	start(1, "\"zero_copy_bytes\":0");
	int fd = connect_gw();

	call_bytes(fd, 3 << 20);
	cr_assert_eq(gw_stat("bytes_zero_copy"), 0, "zero_copy_bytes 0 still lent buffers");
	close(fd);
}

/* A 3 MiB request (streamed: above stream_threshold_bytes) echoed back: both ways lent. */
Test(zerocopy, a_large_request_goes_from_the_receive_buffers_too)
{
	const uint64_t n = 3 << 20;
	char why[160] = "";

	start(1, "\"zero_copy_bytes\":65536");
	int fd = connect_gw();
	struct t_obj *v = t_vec(T_BYTE, n);
	cr_assert(v != NULL);
	uint8_t *d = v->data;
	for (uint64_t i = 0; i < n; i++)
		d[i] = (uint8_t)(i * 7 % 251);
	int64_t c0 = gw_stat("bytes_zero_copy");
	struct t_obj *r = t_call_ok(fd, t_call(".mock.echo", 1, v), 15000);
	cr_assert(r->type == T_BYTE && r->n == n, "echo of %" PRIu64 " bytes gave %s", n,
		  t_show(r));
	const uint8_t *e = r->data;
	for (uint64_t i = 0; i < n && !why[0]; i++)
		if (e[i] != (uint8_t)(i * 7 % 251))
			snprintf(why, sizeof(why), "byte %" PRIu64 " is %u", i, e[i]);
	cr_assert(why[0] == 0, "the echoed request differs: %s", why);
	t_free(r);
	/* the answer alone is at most n + 14 bytes: more means the request was lent too */
	int64_t lent = gw_stat("bytes_zero_copy") - c0;
	cr_assert_gt(lent, (int64_t)n + 65536, "only %" PRId64 " bytes of a %" PRIu64 " byte "
		     "request and its echo went uncopied", lent, n);
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent after the echo");
	close(fd);
}

/* ------------------------------------------------ several clients at once */

#define N_CLIENTS 4
#define ROUNDS 6
#define PIPELINE 5

struct client_arg {
	int k;
	char why[200];
};

/* answer sizes unique per (client, round, slot): a misdelivered answer has the wrong size */
static int64_t size_for(int k, int round, int i)
{
	int64_t base = (i % 2 == 0) ? 150000 + (int64_t)(i * 331 + round) * 40000 : 100 + i;
	return base + k * 7 + round * 29;
}

static void *client_main(void *p)
{
	struct client_arg *a = p;
	int fd = t_q_connect("127.0.0.1", gw_port, "zc:x", NULL);

	if (fd < 0) {
		snprintf(a->why, sizeof(a->why), "connect: %s", t_errmsg());
		return NULL;
	}
	for (int round = 0; round < ROUNDS && !a->why[0]; round++) {
		for (int i = 0; i < PIPELINE; i++) {
			struct t_obj *q = t_call(".mock.bytes", 1, t_long(size_for(a->k, round, i)));
			int rc = t_q_send(fd, T_SYNC, q);
			t_free(q);
			if (rc < 0) {
				snprintf(a->why, sizeof(a->why), "send: %s", t_errmsg());
				break;
			}
		}
		for (int i = 0; i < PIPELINE && !a->why[0]; i++) {
			struct t_obj *r = NULL;
			int type = -1;
			char why[160];
			if (t_q_recv(fd, 15000, &r, &type) < 0) {
				snprintf(a->why, sizeof(a->why), "round %d answer %d: %s", round, i,
					 t_errmsg());
				break;
			}
			if (!bytes_ok(r, size_for(a->k, round, i), why, sizeof(why)))
				snprintf(a->why, sizeof(a->why), "client %d round %d answer %d: %s",
					 a->k, round, i, why);
			t_free(r);
		}
	}
	close(fd);
	return NULL;
}

Test(zerocopy, several_clients_pipelining_large_and_small_answers_get_their_own)
{
	pthread_t th[N_CLIENTS];
	struct client_arg arg[N_CLIENTS];

	start(2, "\"zero_copy_bytes\":65536");
	int64_t c0 = gw_stat("bytes_zero_copy");
	for (int k = 0; k < N_CLIENTS; k++) {
		arg[k].k = k;
		arg[k].why[0] = 0;
		cr_assert_eq(pthread_create(&th[k], NULL, client_main, &arg[k]), 0);
	}
	for (int k = 0; k < N_CLIENTS; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < N_CLIENTS; k++)
		cr_assert(arg[k].why[0] == 0, "%s", arg[k].why);
	cr_assert_gt(gw_stat("bytes_zero_copy") - c0, 10 << 20, "the large answers did not "
		     "take the uncopied path");
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent once every answer was read");
}

/* ------------------------------------------------------ hostile clients */

/* Read about n bytes of what arrives on fd (raw), bounded; returns the count. */
static size_t read_some(int fd, size_t n)
{
	static uint8_t buf[65536];
	size_t got = 0;
	int64_t deadline = t_now_ms() + 5000;

	while (got < n && t_now_ms() < deadline) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t k = recv(fd, buf, sizeof(buf), 0);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	return got;
}

static void leave_mid_answer(bool is_reset)
{
	start(1, "\"zero_copy_bytes\":65536,\"rx_buffers\":64");
	for (int round = 0; round < 5; round++) {
		int fd = connect_gw();
		T_OK(t_send_free(fd, T_SYNC, t_call(".mock.bytes", 1, t_long(16 << 20))));
		size_t got = read_some(fd, 300000);
		cr_assert_geq(got, 300000, "round %d: only %zu bytes of the answer came", round,
			      got);
		if (is_reset) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(fd);
	}
	/* the backend connection drains the rest and is free again; nothing stays lent */
	cr_assert_eq(wait_eq(be_stat, "idle", 1, 10000), 1, "the backend connection did not "
		     "come back after its clients left mid-answer");
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent after their clients left");
	/* and the ring serves: a fresh client gets large answers whole */
	int fd = connect_gw();
	for (int i = 0; i < 5; i++)
		call_bytes(fd, (1 << 20) + i);
	close(fd);
	cr_assert(t_proc_alive(gate), "qgate died: %s", t_tail(gate->err_path, 800));
}

Test(zerocopy, a_client_that_closes_mid_answer_gives_its_buffers_back)
{
	leave_mid_answer(false);
}

Test(zerocopy, a_client_that_resets_mid_answer_gives_its_buffers_back)
{
	leave_mid_answer(true);
}

/*
 * A client that never reads its 16 MiB answers: its backend connection pauses, and with a
 * ring of 64 buffers (2 MiB) against a client_buffer_bytes of 4 MiB, lending everything would
 * leave no buffer for anyone: at most half is lent, and another client on the other backend
 * connection is served in full meanwhile.
 */
Test(zerocopy, a_client_that_stops_reading_holds_at_most_half_the_ring)
{
	start(2, "\"zero_copy_bytes\":65536,\"rx_buffers\":64,\"client_output_timeout_ms\":0");
	int nr = connect_gw();
	/* a fixed, small receive buffer: with tcp_rmem's autotuning (up to 32 MiB here) the
	 * kernel could take in the whole answer, and nothing would be left for qgate to hold */
	int rcvbuf = 65536;
	cr_assert_eq(setsockopt(nr, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	T_OK(t_send_free(nr, T_SYNC, t_call(".mock.bytes", 1, t_long(16 << 20))));
	/*
	 * Wait until qgate holds all it will for it: the backend paused once the client's
	 * queue passed client_buffer_bytes, so its bytes_in stops growing. How many buffers are
	 * lent then varies: lending stops at half the ring, the rest is copied, and the kernel's
	 * send buffer to the client (tcp_wmem, up to 4 MiB) may later take in some of the oldest
	 * lent bytes, so the count can fall after it hit the cap. Half is the bound, sampled
	 * throughout.
	 */
	int64_t deadline = t_now_ms() + 15000, lent = 0, most = 0, in = -1, stable_since = 0;
	while (t_now_ms() < deadline) {
		int64_t now_in = t_stats_int(stats_port, "pools/0/backends/0/bytes_in");
		lent = gw_stat("rx_buffers_lent");
		most = lent > most ? lent : most;
		if (now_in != in) {
			in = now_in;
			stable_since = t_now_ms();
		} else if (lent > 0 && t_now_ms() - stable_since >= 500) {
			break;
		}
		poll(NULL, 0, 10);
	}
	cr_assert(lent > 0 && lent <= 32 && most <= 32, "a never-reading client holds %" PRId64
		  " of 64 receive buffers (at most %" PRId64 " seen), want 1 to 32 (half)", lent,
		  most);
	cr_assert_lt(in, (int64_t)(16 << 20), "the whole 16 MiB answer came in: the backend "
		     "was never paused for the never-reader");
	int fd = connect_gw();
	for (int i = 0; i < 10; i++)
		call_bytes(fd, (1 << 20) + 3 * i);
	cr_assert_leq(gw_stat("rx_buffers_lent"), 32, "more than half the ring lent");
	close(fd);
	close(nr);
	cr_assert_eq(wait_eq(be_stat, "idle", 2, 10000), 2, "the backend connections did not "
		     "both come back after the never-reader left");
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent after the never-reader left");
}

/* ------------------------------------------------ a backend dying mid-answer */

/*
 * .mock.partdie: mockq writes half of a 3 MB answer and exits. The client gets the bytes
 * that came and then the close (an error cannot follow part of an answer): the same with
 * the answer lent as copied. Returns the bytes the client received before the close.
 */
static size_t killed_mid_answer(const char *limits)
{
	start(1, limits);
	int fd = connect_gw();
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.partdie", 2, t_str("pd"), t_long(3000000))));
	size_t n = 0;
	int rc = t_wait_closed(fd, 10000, &n);
	cr_assert_eq(rc, 0, "the client was not closed after its backend died mid-answer: %s",
		     t_errmsg());
	close(fd);
	cr_assert(t_proc_alive(gate), "qgate died: %s", t_tail(gate->err_path, 800));
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent after the backend died");
	return n;
}

Test(zerocopy, a_backend_killed_mid_answer_cuts_it_as_the_copying_path_does)
{
	size_t lent = killed_mid_answer("\"zero_copy_bytes\":65536");
	int64_t sent = gw_stat("bytes_zero_copy");
	cr_assert_gt(sent, 0, "the half answer did not take the uncopied path");
	/* half the message came: the header and its first bytes, never a qgate error */
	cr_assert(lent >= 1000000 && lent < 3000000, "the client got %zu bytes of a 3 MB "
		  "answer cut in half", lent);
	t_proc_kill(gate);
	t_proc_kill(be);
	size_t copied = killed_mid_answer("\"zero_copy_bytes\":0");
	cr_assert_eq(lent, copied, "the client got %zu bytes when the answer was lent, %zu "
		     "when copied", lent, copied);
}

/* ------------------------------------------------ a query timeout mid-answer */

/*
 * A rule gives .mock.bytes 1.5 s; a client reads 200 KB of its 16 MiB answer and stops, so
 * the answer is still streaming (its backend paused) when the timeout fires: what was queued
 * goes out, then the client is closed (an error cannot follow part of an answer), the backend
 * connection drains the rest and is free again, and every lent buffer comes back.
 */
static void timeout_mid_answer(const char *limits)
{
	/* 1.5 s: the first 200 KB must come before it fires, even from an ASan mockq */
	start_with(1, limits, ",\"rules\":[{\"function\":\".mock.bytes\",\"timeout_ms\":1500}]");
	int fd = connect_gw();
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.bytes", 1, t_long(16 << 20))));
	size_t got = read_some(fd, 200000);
	cr_assert_geq(got, 200000, "only %zu bytes of the answer came", got);
	poll(NULL, 0, 3000);	/* the timeout fires while the client does not read */
	size_t n = 0;
	cr_assert_eq(t_wait_closed(fd, 10000, &n), 0, "the client was not closed after a "
		     "timeout in the middle of its answer: %s", t_errmsg());
	cr_assert_lt(got + n, (size_t)(16 << 20) + MSG_OVERHEAD, "the whole answer came "
		     "despite the timeout");
	close(fd);
	cr_assert_eq(wait_eq(be_stat, "idle", 1, 10000), 1, "the backend connection did not "
		     "come back after the timed-out answer");
	cr_assert_eq(wait_eq(gw_stat, "rx_buffers_lent", 0, 3000), 0,
		     "receive buffers still lent after the timed-out answer");
	fd = connect_gw();
	call_bytes(fd, (1 << 20) + 5);
	close(fd);
}

Test(zerocopy, a_query_timeout_mid_answer_cuts_it_and_the_backend_drains)
{
	timeout_mid_answer("\"zero_copy_bytes\":65536");
	cr_assert_gt(gw_stat("bytes_zero_copy"), 0, "the answers did not take the uncopied path");
	t_proc_kill(gate);
	t_proc_kill(be);
	timeout_mid_answer("\"zero_copy_bytes\":0");	/* the copying path does the same */
}
