/*
 * test_mockq — acceptance tests for the backend emulator (issue #2): a real mockq process on
 * loopback answers q expressions and its .mock.* verbs, refuses bad credentials by closing,
 * serves other connections while an answer is deferred, closes only a connection that breaks
 * the protocol, and holds up under qbench with zero mismatches; and misbehaves on command
 * (answers twice, sends what nobody asked for, dies half-way through an answer, refuses
 * handshakes) for the gateway's torture test.
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

static struct t_proc *mq;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	mq = t_mockq_start("m1", NULL);
	cr_assert(mq != NULL, "%s", t_errmsg());
}

static void teardown(void)
{
	t_env_fini();
}

static int connect_mq(void)
{
	return T_OK(t_q_connect("127.0.0.1", mq->port, "tester:pw", NULL));
}

TestSuite(mockq, .init = setup, .fini = teardown, .timeout = 30.0);

Test(mockq, announces_ready_on_stdout)
{
	char want[96];

	snprintf(want, sizeof(want), "mockq m1 listening on port %d", mq->port);
	T_OK(t_wait_file_contains(mq->out_path, 0, want, 2000));
}

Test(mockq, handshake_replies_capability)
{
	int cap = -1, fd = T_OK(t_q_connect("127.0.0.1", mq->port, "any:thing", &cap));

	/* We offer 3; the reply is min(ours, its own) and a q server supports at least 3. */
	cr_assert_eq(cap, 3, "capability byte %d, want 3", cap);
	close(fd);
}

Test(mockq, evaluates_text_queries)
{
	int64_t til10[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	int fd = connect_mq();

	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	t_call_expect(fd, t_str("til 10"), t_longs(10, til10), 2000);
	t_call_expect(fd, t_str(".mock.echo[42]"), t_long(42), 2000);
	close(fd);
}

Test(mockq, applies_lambdas_and_keeps_assignments)
{
	struct t_obj *lam = t_atom(T_LAMBDA);
	int fd = connect_mq();

	/* ({x+y+z};1;2;3), as PyKX's guide sends it. */
	cr_assert(lam);
	lam->s = strdup("");
	lam->n = 1;
	lam->items = calloc(1, sizeof(*lam->items));
	cr_assert(lam->s && lam->items);
	lam->items[0] = t_str("{x+y+z}");
	t_call_expect(fd, t_list(4, lam, t_long(1), t_long(2), t_long(3)), t_long(6), 2000);

	t_free(t_call_ok(fd, t_str(".test.addition:{x+y}"), 2000));
	t_call_expect(fd, t_call(".test.addition", 2, t_long(2), t_long(3)), t_long(5), 2000);
	close(fd);
}

Test(mockq, echo_returns_its_argument_unchanged)
{
	struct t_obj *vals[6];
	int fd = connect_mq();

	vals[0] = t_long(-7);
	vals[1] = t_str("token-123");
	vals[2] = t_vec(T_SYM, 2);
	vals[3] = t_list(3, t_long(1), t_sym("bcd"), t_str("0bc"));
	vals[4] = t_dict(t_vec(T_SYM, 1), t_list(1, t_float(1.5)));
	vals[5] = t_vec(T_INT, 3);
	cr_assert(vals[2] && vals[4] && vals[5]);
	free(vals[2]->syms[0]);
	vals[2]->syms[0] = strdup("the");
	free(vals[4]->items[0]->syms[0]);
	vals[4]->items[0]->syms[0] = strdup("k");
	((int32_t *)vals[5]->data)[1] = 12345;
	for (int k = 0; k < 6; k++) {
		struct t_obj *want = t_copy(vals[k]);

		t_call_expect(fd, t_call(".mock.echo", 1, vals[k]), want, 2000);
	}
	close(fd);
}

Test(mockq, sleep_blocks_then_returns_ms)
{
	int fd = connect_mq();
	int64_t t0 = t_now_ms(), took;

	t_call_expect(fd, t_call(".mock.sleep", 1, t_long(120)), t_long(120), 3000);
	took = t_now_ms() - t0;
	cr_assert(took >= 120 && took < 1500, ".mock.sleep[120] took %" PRId64 " ms", took);
	close(fd);
}

Test(mockq, bytes_returns_the_pattern)
{
	const uint64_t sizes[] = { 1, 1000, 300000 };
	int fd = connect_mq();

	for (int s = 0; s < 3; s++) {
		struct t_obj *r = t_call_ok(fd, t_call(".mock.bytes", 1, t_long((int64_t)sizes[s])),
					    5000);
		const uint8_t *b = r->data;

		cr_assert_eq(r->type, T_BYTE, "type %d, want byte vector", r->type);
		cr_assert_eq(r->n, sizes[s], "%" PRIu64 " bytes, want %" PRIu64, r->n, sizes[s]);
		for (uint64_t k = 0; k < r->n; k++)
			cr_assert_eq(b[k], (uint8_t)(k % 256), "byte %" PRIu64 " is %u", k, b[k]);
		t_free(r);
	}
	close(fd);
}

Test(mockq, error_verb_gives_an_error_response)
{
	int fd = connect_mq();

	t_call_expect(fd, t_call(".mock.error", 1, t_str("boom")), t_err("boom"), 2000);
	/* The connection survives an error. */
	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	close(fd);
}

Test(mockq, unknown_function_is_a_q_error)
{
	int fd = connect_mq();
	struct t_obj *r = t_call_ok(fd, t_call(".no.such.fn", 1, t_long(1)), 2000);

	cr_assert_eq(r->type, T_ERROR, "got %s, want a q error", t_show(r));
	t_free(r);
	close(fd);
}

Test(mockq, drop_closes_without_answer)
{
	int fd = connect_mq(), other = connect_mq();
	size_t got = 99;

	T_OK(t_send_free(fd, T_SYNC, t_call0(".mock.drop")));
	T_OK(t_wait_closed(fd, 2000, &got));
	cr_assert_eq(got, 0, "%zu bytes arrived before the close", got);
	t_call_expect(other, t_str("1+1"), t_long(2), 2000);
	close(fd);
	close(other);
}

Test(mockq, pub_returns_n_then_publishes)
{
	struct t_obj *req = t_call(".mock.pub", 2, t_long(3), t_long(20));
	int fd = connect_mq(), type = -1;
	int64_t first = INT64_MIN;
	struct t_obj *m;

	cr_assert(req);
	m = t_q_call(fd, req, 3000, NULL, NULL);
	cr_assert(m != NULL, "%s", t_errmsg());
	cr_assert(m->type == -T_LONG && m->a.j == 3, "got %s, want 3", t_show(m));
	t_free(m);
	t_free(req);
	for (int k = 0; k < 3; k++) {
		T_OK(t_q_recv(fd, 3000, &m, &type));
		cr_assert_eq(type, T_ASYNC, "publish %d has message type %d, want async", k, type);
		cr_assert(m->type == T_LIST && m->n == 2 && m->items[0]->type == -T_SYM &&
			  !strcmp(m->items[0]->s, "upd") && m->items[1]->type == -T_LONG,
			  "publish %d is %s, want (`upd;i)", k, t_show(m));
		if (k == 0)
			first = m->items[1]->a.j;
		cr_assert_eq(m->items[1]->a.j, first + k, "publish %d carries %s", k, t_show(m));
		t_free(m);
	}
	/* Exactly n: nothing more comes. */
	cr_assert_eq(t_q_recv(fd, 200, &m, &type), -ETIMEDOUT, "a 4th message arrived: %s",
		     t_show(m));
	close(fd);
}

Test(mockq, id_and_count)
{
	int fd = connect_mq();
	struct t_obj *c1, *c2;

	t_call_expect(fd, t_call0(".mock.id"), t_sym("m1"), 2000);
	t_call_expect(fd, t_str(".mock.id[]"), t_sym("m1"), 2000);
	c1 = t_call_ok(fd, t_call0(".mock.count"), 2000);
	for (int k = 0; k < 3; k++)
		t_free(t_call_ok(fd, t_call(".mock.echo", 1, t_long(k)), 2000));
	c2 = t_call_ok(fd, t_call0(".mock.count"), 2000);
	cr_assert(c1->type == -T_LONG && c2->type == -T_LONG, "count types %s %s", t_show(c1),
		  t_show(c2));
	/* The count includes the message asking for it: 3 echoes + this count query. */
	cr_assert_eq(c2->a.j - c1->a.j, 4, "count went %" PRId64 " -> %" PRId64, c1->a.j,
		     c2->a.j);
	t_free(c1);
	t_free(c2);
	close(fd);
}

Test(mockq, set_then_read_back)
{
	int fd = connect_mq(), other = connect_mq();

	/* Async set, then sync reads on the same connection (in order) and on another one. */
	T_OK(t_send_free(fd, T_ASYNC, t_call("set", 2, t_sym("a"), t_long(42))));
	t_call_expect(fd, t_sym("a"), t_long(42), 2000);
	t_call_expect(fd, t_str("a"), t_long(42), 2000);
	t_call_expect(other, t_sym("a"), t_long(42), 2000);
	t_free(t_call_ok(fd, t_call("set", 2, t_sym("a"), t_str("xyz")), 2000));
	t_call_expect(other, t_sym("a"), t_str("xyz"), 2000);
	close(fd);
	close(other);
}

Test(mockq, rejects_bad_credentials_by_closing)
{
	const char *const extra[] = { "--user", "u:p", NULL };
	struct t_proc *sec = T_PTR(t_mockq_start("secure", extra));
	const char *bad[] = { "u:wrong", "x:p", "u", "" };
	int cap = -1, fd;

	for (int k = 0; k < 4; k++) {
		fd = T_OK(t_tcp_connect("127.0.0.1", sec->port, 2000));
		cr_assert_eq(t_q_handshake(fd, bad[k], 3, 2000), -EACCES,
			     "credentials \"%s\" were not refused: %s", bad[k], t_errmsg());
		close(fd);
	}
	fd = T_OK(t_q_connect("127.0.0.1", sec->port, "u:p", &cap));
	cr_assert_eq(cap, 3);
	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	close(fd);
}

Test(mockq, defer_answers_later_while_serving_others)
{
	int slow = connect_mq(), fast = connect_mq(), type = -1;
	struct t_obj *r = NULL;
	int64_t t0, t_fast, t_slow;

	t0 = t_now_ms();
	T_OK(t_send_free(slow, T_SYNC, t_call(".mock.defer", 2, t_long(400), t_sym("late"))));
	/* Another client is served while the answer is held. */
	t_call_expect(fast, t_call(".mock.echo", 1, t_str("meanwhile")), t_str("meanwhile"), 2000);
	t_fast = t_now_ms() - t0;
	cr_assert(t_fast < 300, "other connection waited %" PRId64 " ms", t_fast);
	/* Nothing early on the deferred one. */
	cr_assert_eq(t_q_recv(slow, 100, &r, &type), -ETIMEDOUT, "early answer %s", t_show(r));
	T_OK(t_q_recv(slow, 3000, &r, &type));
	t_slow = t_now_ms() - t0;
	cr_assert_eq(type, T_RESPONSE);
	T_EXPECT_EQ(r, t_sym("late"));
	cr_assert(t_slow >= 400 && t_slow < 2000, "deferred answer after %" PRId64 " ms", t_slow);
	t_free(r);
	close(slow);
	close(fast);
}

/* A counter verb asked over a fresh connection (a probe: it does not count itself). */
static int64_t probe(const char *verb)
{
	int fd = connect_mq();
	struct t_obj *r = t_call_ok(fd, t_call0(verb), 2000);
	int64_t v;

	cr_assert(r->type == -T_LONG, "%s gave %s", verb, t_show(r));
	v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

/* Poll (bounded) until .mock.inflight[] reports want. */
static void wait_inflight(int64_t want)
{
	int64_t deadline = t_now_ms() + 3000, got = -1;

	while (t_now_ms() < deadline) {
		got = probe(".mock.inflight");
		if (got == want)
			return;
		poll(NULL, 0, 10);
	}
	cr_assert_fail(".mock.inflight[] is %" PRId64 ", want %" PRId64, got, want);
}

Test(mockq, inflight_counts_pending_requests_not_probes)
{
	int a = connect_mq(), b = connect_mq(), c = connect_mq(), type = -1;
	struct t_obj *r = NULL;

	/* probes over fresh connections, nothing pending: they do not count themselves */
	cr_assert_eq(probe(".mock.inflight"), 0);
	cr_assert_eq(probe(".mock.maxinflight"), 0);
	cr_assert_eq(probe(".mock.served"), 0);

	T_OK(t_send_free(a, T_SYNC, t_call(".mock.defer", 2, t_long(2000), t_sym("a"))));
	T_OK(t_send_free(b, T_SYNC, t_call(".mock.defer", 2, t_long(2000), t_sym("b"))));
	wait_inflight(2);
	/* a request held behind a's deferred answer waits inside the backend: it counts */
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.echo", 1, t_sym("a2"))));
	wait_inflight(3);
	/* one answered at once counts itself while it runs */
	t_call_expect(c, t_call(".mock.echo", 1, t_long(1)), t_long(1), 2000);
	cr_assert_eq(probe(".mock.maxinflight"), 4);
	cr_assert_eq(probe(".mock.served"), 1);

	T_OK(t_q_recv(a, 5000, &r, &type));
	T_EXPECT_EQ(r, t_sym("a"));
	t_free(r);
	T_OK(t_q_recv(a, 2000, &r, &type));
	T_EXPECT_EQ(r, t_sym("a2"));
	t_free(r);
	T_OK(t_q_recv(b, 5000, &r, &type));
	T_EXPECT_EQ(r, t_sym("b"));
	t_free(r);
	wait_inflight(0);
	cr_assert_eq(probe(".mock.served"), 4);
	cr_assert_eq(probe(".mock.maxinflight"), 4);

	/* reset: served 0, the maximum down to what is in flight now (0), the count returned */
	t_call_expect(c, t_call0(".mock.reset"), t_long(0), 2000);
	cr_assert_eq(probe(".mock.maxinflight"), 0);
	cr_assert_eq(probe(".mock.served"), 0);

	/* a connection that closes takes its pending request out of the count, unserved */
	T_OK(t_send_free(b, T_SYNC, t_call(".mock.defer", 2, t_long(5000), t_sym("never"))));
	wait_inflight(1);
	close(b);
	wait_inflight(0);
	cr_assert_eq(probe(".mock.served"), 0);
	cr_assert_eq(probe(".mock.maxinflight"), 1);
	close(a);
	close(c);
}

/* Send raw bytes after the handshake; the connection must close and another stay served. */
static void check_garbage_closes_only_sender(const uint8_t *bytes, size_t n)
{
	int bad = connect_mq(), good = connect_mq();
	size_t got = 0;

	T_OK(t_send_all(bad, bytes, n));
	T_OK(t_wait_closed(bad, 3000, &got));
	t_call_expect(good, t_call(".mock.echo", 1, t_str("still here")), t_str("still here"),
		      2000);
	close(bad);
	close(good);
	/* And the server keeps accepting. */
	good = connect_mq();
	t_call_expect(good, t_str("1+1"), t_long(2), 2000);
	close(good);
}

Test(mockq, bad_header_closes_only_that_connection)
{
	const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	check_garbage_closes_only_sender(junk, sizeof(junk));
}

Test(mockq, malformed_payload_closes_only_that_connection)
{
	/* Sync message of 14 bytes whose char vector claims 255 items. */
	const uint8_t msg[] = { 0x01, 0x01, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
				0x0a, 0x00, 0xff, 0x00, 0x00, 0x00 };

	check_garbage_closes_only_sender(msg, sizeof(msg));
}

Test(mockq, listens_on_q_abstract_unix_name)
{
	const char *const extra[] = { "--unix", NULL };
	struct t_proc *u = T_PTR(t_mockq_start("unixy", extra));
	int cap = -1, fd;

	T_OK(t_wait_accepting_unix(u->port, 5000, u->pid));
	fd = T_OK(t_q_connect_unix(u->port, "local:pw", &cap));
	cr_assert_eq(cap, 3);
	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	t_call_expect(fd, t_call0(".mock.id"), t_sym("unixy"), 2000);
	close(fd);
}

Test(mockq, compress_sends_large_answers_compressed)
{
	const char *const extra[] = { "--compress", NULL };
	struct t_proc *z = T_PTR(t_mockq_start("zipper", extra));
	int fd = T_OK(t_q_connect("127.0.0.1", z->port, "z:z", NULL)), type = -1, err = 0;
	char *text = T_PTR(malloc(100001));
	struct t_obj *req, *r;
	uint8_t *msg;
	size_t n;

	/* The text q's own compressed samples use: it compresses far below half. */
	for (int k = 0; k < 100000; k++)
		text[k] = "kdb+ipc "[k % 8];
	text[100000] = 0;
	req = T_PTR(t_call(".mock.echo", 1, t_str(text)));
	T_OK(t_q_send(fd, T_SYNC, req));
	T_OK(t_q_recv_raw(fd, 5000, &msg, &n));
	/* q's rule: above 2008 bytes and when it halves the size. */
	cr_assert_eq(msg[2], 1, "a 100014-byte answer was not compressed (%zu bytes)", n);
	cr_assert(n < 50000, "compressed answer is %zu bytes", n);
	r = t_decode_msg(msg, n, &type, &err);
	cr_assert(r, "compressed answer does not decompress/decode (%d)", err);
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(t_is_str(r, text), "decompressed answer differs from the request: %s",
		  t_show(r));
	t_free(r);
	free(msg);
	/* A compressed request is understood too. */
	T_OK(t_q_send_compressed(fd, T_SYNC, req));
	T_OK(t_q_recv(fd, 5000, &r, &type));
	cr_assert(t_is_str(r, text), "compressed request echoed as %s", t_show(r));
	t_free(r);
	/* Small answers stay plain. */
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_str("short"))));
	T_OK(t_q_recv_raw(fd, 5000, &msg, &n));
	cr_assert_eq(msg[2], 0, "a short answer was compressed");
	free(msg);
	t_free(req);
	free(text);
	close(fd);
}

/* ------------------------------------------------------------------ misbehaviour on command */

/* Receive one message, assert its type and that it equals want (consumed). */
static void expect_msg(int fd, int want_type, struct t_obj *want, int timeout_ms)
{
	struct t_obj *m = NULL;
	int type = -1;

	cr_assert(want != NULL, "out of memory building the expected value");
	T_OK(t_q_recv(fd, timeout_ms, &m, &type));
	cr_assert_eq(type, want_type, "message type %d, want %d (%s)", type, want_type, t_show(m));
	T_EXPECT_EQ(m, want);
	t_free(m);
}

/* Nothing more arrives within ms. */
static void expect_quiet(int fd, int ms)
{
	struct t_obj *m = NULL;
	int type = -1;

	cr_assert_eq(t_q_recv(fd, ms, &m, &type), -ETIMEDOUT, "unexpected message %s", t_show(m));
}

Test(mockq, twice_answers_one_request_twice)
{
	int fd = connect_mq();

	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.twice", 1, t_str("tw-1"))));
	expect_msg(fd, T_RESPONSE, t_str("tw-1"), 2000);
	/* written with the first in one write: it is there already */
	expect_msg(fd, T_RESPONSE, t_str("tw-1"), 200);
	expect_quiet(fd, 200);
	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	close(fd);
}

Test(mockq, unsolicited_sends_a_response_nobody_asked_for_first)
{
	int fd = connect_mq();

	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.unsolicited", 1, t_str("un-1"))));
	expect_msg(fd, T_RESPONSE, t_list(2, t_sym("unsolicited"), t_str("un-1")), 2000);
	expect_msg(fd, T_RESPONSE, t_str("un-1"), 200);
	expect_quiet(fd, 200);
	close(fd);
}

Test(mockq, pushsync_calls_into_the_client_before_answering)
{
	int fd = connect_mq();

	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.pushsync", 1, t_str("ps-1"))));
	expect_msg(fd, T_SYNC, t_list(2, t_sym("callback"), t_str("ps-1")), 2000);
	expect_msg(fd, T_RESPONSE, t_str("ps-1"), 200);
	/* the client answers the call as q would; mockq reads and ignores that answer */
	T_OK(t_send_free(fd, T_RESPONSE, t_str("called back")));
	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	close(fd);
}

/* Read raw bytes until the peer closes (bounded); returns how many, the first in buf. */
static size_t read_until_closed(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	uint8_t sink[65536];
	size_t got = 0;

	/* bounded by the deadline */
	while (t_now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		r = recv(fd, got < cap ? buf + got : sink, got < cap ? cap - got : sizeof(sink), 0);
		if (r <= 0)
			return got;
		got += (size_t)r;
	}
	cr_assert_fail("connection still open after %d ms (%zu bytes read)", timeout_ms, got);
	return got;
}

Test(mockq, partdie_writes_half_an_answer_then_exits)
{
	struct t_proc *pd = T_PTR(t_mockq_start("pd", NULL));
	int fd = T_OK(t_q_connect("127.0.0.1", pd->port, "t:t", NULL));
	uint8_t *buf = T_PTR(malloc(100000));
	size_t got;
	uint32_t announced;

	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.partdie", 2, t_str("pd-tok"), t_long(100000))));
	got = read_until_closed(fd, buf, 100000, 5000);
	cr_assert_eq(got, 50000, "%zu bytes before the close, want half of 100000", got);
	memcpy(&announced, buf + 4, 4);
	cr_assert(buf[1] == T_RESPONSE && announced == 100000, "header: type %d, length %u",
		  buf[1], announced);
	cr_assert(buf[8] == T_CHAR && !memcmp(buf + 14, "pd-tok....", 10),
		  "the answer is not pd-tok padded with dots");
	T_OK(t_proc_wait(pd, 5000));
	cr_assert(WIFEXITED(pd->status) && WEXITSTATUS(pd->status) == 3,
		  "mockq ended with wait status %d, want exit status 3", pd->status);
	free(buf);
	close(fd);
}

Test(mockq, partdie_with_another_name_answers_whole)
{
	int fd = connect_mq();
	struct t_obj *r;
	char want[987];

	/* the message is 1000 bytes: 14 of header and vector prefix, then 986 chars */
	memset(want, '.', sizeof(want) - 1);
	want[sizeof(want) - 1] = 0;
	memcpy(want, "pd-2", 4);
	r = t_call_ok(fd, t_call(".mock.partdie", 3, t_str("pd-2"), t_long(1000), t_sym("other")),
		      2000);
	cr_assert(t_is_str(r, want), "got %s", t_show(r));
	t_free(r);
	cr_assert(t_proc_alive(mq), "mockq m1 exited on a partdie meant for another name");
	close(fd);
}

Test(mockq, refuse_closes_the_next_n_handshakes)
{
	int fd = connect_mq(), other;

	t_call_expect(fd, t_str(".mock.refuse[2]"), t_long(2), 2000);
	for (int k = 0; k < 2; k++) {
		other = T_OK(t_tcp_connect("127.0.0.1", mq->port, 2000));
		cr_assert_eq(t_q_handshake(other, "t:t", 3, 2000), -EACCES,
			     "handshake %d after .mock.refuse[2] was not refused", k);
		close(other);
	}
	other = connect_mq();
	t_call_expect(other, t_str("1+1"), t_long(2), 2000);
	/* connections already open were not disturbed */
	t_call_expect(fd, t_str("1+1"), t_long(2), 2000);
	close(other);
	close(fd);
}

Test(mockq, qbench_16_connections_no_mismatch, .timeout = 60.0)
{
	const char *bin = t_bin("QBENCH_BIN");
	char port_s[16], *out = NULL, *err = NULL;
	json_error_t jerr;
	json_t *j, *mm, *req;
	int rc;

	cr_assert(bin, "%s", t_errmsg());
	snprintf(port_s, sizeof(port_s), "%d", mq->port);
	{
		char *const argv[] = { (char *)bin, "--host", "127.0.0.1", "--port", port_s,
				       "--conns", "16", "--seconds", "5", "--json", NULL };

		rc = t_run(argv, NULL, 45000, &out, &err);
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
}
