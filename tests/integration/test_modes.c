/*
 * test_modes — qgate beyond plain query pooling, with real processes on loopback: session
 * pools (own backend connection, publishes reach the client, .z.pc on leave, passthrough
 * auth), dedicated dispatch of deferred answers, the stats endpoint, admin queries over q,
 * the audit log, large messages streaming through, reconnect after a backend restart, and
 * a graceful SIGTERM.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

static struct t_proc *be[2];
static struct t_proc *gate;
static int gw_port, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
	be[0] = be[1] = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(modes, .init = setup, .fini = teardown, .timeout = 60.0);

static void start_backend(int k, const char *const extra[])
{
	char name[8];

	snprintf(name, sizeof(name), "b%d", k + 1);
	be[k] = t_mockq_start(name, extra);
	cr_assert(be[k] != NULL, "%s", t_errmsg());
}

/* qgate with listener main on gw_port, stats on stats_port, and the given pools/rules/etc. */
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
}

/* GET path from the stats endpoint: returns the HTTP status and the body (caller frees). */
static int http_get(const char *path, char **body)
{
	int status = t_http_get(stats_port, path, body);

	cr_assert(status > 0, "GET %s: %s", path, t_errmsg());
	return status;
}

static json_t *stats(void)
{
	char *body;
	json_error_t e;

	cr_assert_eq(http_get("/stats", &body), 200);
	json_t *j = json_loads(body, 0, &e);
	cr_assert(j != NULL, "bad /stats JSON (%s): %.200s", e.text, body);
	free(body);
	return j;
}

static int64_t count_on(int k, const char *verb)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be[k]->port, "direct:pw", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(verb), 5000);
	int64_t v;

	cr_assert(r->type == -T_LONG, "%s gave %s", verb, t_show(r));
	v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

/* Wait (bounded) until backend k reports want open connections besides the probe itself. */
static void wait_clients(int k, int64_t want)
{
	int64_t deadline = t_now_ms() + 3000, got = -1;

	while (t_now_ms() < deadline) {
		got = count_on(k, ".mock.clients") - 1;
		if (got == want)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("backend %d has %" PRId64 " client connections, want %" PRId64, k + 1, got,
		       want);
}

/* ---------------------------------------------------------------- sessions */

Test(modes, session_pool_gives_each_client_its_own_connection)
{
	start_backend(0, NULL);
	char pools[512];
	snprintf(pools, sizeof(pools), "\"pools\":[{\"name\":\"p\",\"mode\":\"session\","
		 "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\"}]}]", be[0]->port);
	start_gate_json(pools);
	wait_clients(0, 0);	/* a session pool keeps no warm connections */

	int a = T_OK(t_q_connect("127.0.0.1", gw_port, "alice:x", NULL));
	int b = T_OK(t_q_connect("127.0.0.1", gw_port, "bob:x", NULL));
	wait_clients(0, 2);
	t_call_expect(a, t_call(".mock.echo", 1, t_long(7)), t_long(7), 5000);

	/* publishes started by the backend reach the session's client */
	t_call_expect(b, t_call(".mock.pub", 2, t_long(3), t_long(10)), t_long(3), 5000);
	for (int i = 0; i < 3; i++) {
		struct t_obj *m = NULL;
		int type = -1;
		T_OK(t_q_recv(b, 3000, &m, &type));
		cr_assert_eq(type, T_ASYNC, "publish %d arrived as type %d", i, type);
		T_EXPECT_EQ(m, t_list(2, t_sym("upd"), t_long(i)));
		t_free(m);
	}
	/* the client leaving closes its backend socket (the backend's .z.pc runs) */
	close(a);
	wait_clients(0, 1);
	close(b);
	wait_clients(0, 0);
}

Test(modes, session_passthrough_lets_the_backend_judge_credentials)
{
	static const char *const auth[] = { "--user", "carol:right", NULL };

	start_backend(0, auth);
	char pools[512];
	snprintf(pools, sizeof(pools), "\"pools\":[{\"name\":\"p\",\"mode\":\"session\","
		 "\"auth_passthrough\":true,\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\"}]}]", be[0]->port);
	start_gate_json(pools);

	int cap = -1;
	int ok = T_OK(t_q_connect("127.0.0.1", gw_port, "carol:right", &cap));
	cr_assert(cap >= 3 && cap <= 6, "capability %d", cap);
	t_call_expect(ok, t_str("1+1"), t_long(2), 5000);
	close(ok);
	/* the backend refuses: so does the gateway, the way q does (close, no byte) */
	int fd = T_OK(t_tcp_connect("127.0.0.1", gw_port, 2000));
	cr_assert_lt(t_q_handshake(fd, "carol:wrong", 3, 3000), 0,
		     "a wrong password got a capability byte");
	close(fd);
}

/* --------------------------------------------------------------- dedicated */

Test(modes, dedicated_rule_keeps_deferred_answers_off_the_pool)
{
	start_backend(0, NULL);
	char members[768];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}],"
		 "\"rules\":[{\"function\":\".mock.defer\",\"dedicated\":true}]", be[0]->port);
	start_gate_json(members);
	wait_clients(0, 1);

	int a = T_OK(t_q_connect("127.0.0.1", gw_port, "a:x", NULL));
	int b = T_OK(t_q_connect("127.0.0.1", gw_port, "b:x", NULL));
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.defer", 2, t_long(2000), t_sym("late"))));
	wait_clients(0, 2);	/* the pooled connection plus one opened for the deferred call */
	/* the pool's only connection is free: b is answered while a's answer is deferred */
	int64_t t0 = t_now_ms();
	t_call_expect(b, t_call(".mock.echo", 1, t_sym("quick")), t_sym("quick"), 5000);
	cr_assert_lt(t_now_ms() - t0, 1000, "b waited behind the deferred request");
	struct pollfd pa = { .fd = a, .events = POLLIN };
	cr_assert_eq(poll(&pa, 1, 0), 0, "a's deferred answer came before b's");
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(a, 6000, &r, &type));
	cr_assert_eq(type, T_RESPONSE);
	T_EXPECT_EQ(r, t_sym("late"));
	t_free(r);
	wait_clients(0, 1);	/* the dedicated socket is closed after its answer */

	/* a client that leaves before its deferred answer: its socket closes at once */
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.defer", 2, t_long(2000), t_sym("never"))));
	wait_clients(0, 2);
	close(a);
	wait_clients(0, 1);
	t_call_expect(b, t_call(".mock.echo", 1, t_long(1)), t_long(1), 5000);
	close(b);
}

/* ---------------------------------------------------- stats, admin, audit */

Test(modes, stats_endpoint_reports_pools_backends_and_health)
{
	start_backend(0, NULL);
	start_backend(1, NULL);
	char members[512];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":2},{\"name\":\"b2\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":2}]}]", be[0]->port, be[1]->port);
	start_gate_json(members);
	wait_clients(0, 2);
	wait_clients(1, 2);

	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "s:x", NULL));
	for (int i = 0; i < 10; i++)
		t_call_expect(fd, t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);

	json_t *j = stats();
	json_t *pool = json_array_get(json_object_get(j, "pools"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(pool, "name")), "p");
	cr_assert_eq(json_integer_value(json_object_get(pool, "requests")), 10);
	cr_assert_eq(json_integer_value(json_object_get(pool, "queued")), 0);
	json_t *bs = json_object_get(pool, "backends");
	int64_t served = 0;
	for (size_t i = 0; i < json_array_size(bs); i++) {
		json_t *b = json_array_get(bs, i);
		cr_assert_str_eq(json_string_value(json_object_get(b, "state")), "up");
		json_t *conns = json_object_get(b, "connections");
		cr_assert_eq(json_integer_value(json_object_get(conns, "idle")), 2);
		served += json_integer_value(json_object_get(b, "requests"));
	}
	cr_assert_eq(served, 10);
	json_t *l = json_array_get(json_object_get(j, "listeners"), 0);
	cr_assert_eq(json_integer_value(json_object_get(l, "clients")), 1);
	json_decref(j);

	char *body;
	cr_assert_eq(http_get("/metrics", &body), 200);
	cr_assert(strstr(body, "qgate_pool_requests_total{pool=\"p\"} 10"), "%.400s", body);
	cr_assert(strstr(body, "qgate_backend_up{pool=\"p\",backend=\"b1\"} 1"), "%.400s", body);
	free(body);
	cr_assert_eq(http_get("/health", &body), 200);
	free(body);
	cr_assert_eq(http_get("/nope", &body), 404);
	free(body);

	/* every backend gone: the pool is down and /health says so */
	t_proc_kill(be[0]);
	t_proc_kill(be[1]);
	int64_t deadline = t_now_ms() + 3000;
	int status = 0;
	while (t_now_ms() < deadline) {
		status = http_get("/health", &body);
		free(body);
		if (status == 503)
			break;
		poll(NULL, 0, 20);
	}
	cr_assert_eq(status, 503);
	close(fd);
}

Test(modes, admin_user_reads_tables_and_others_are_refused)
{
	char *hash = T_PTR(t_hash_password("secret"));

	start_backend(0, NULL);
	char members[1024];
	snprintf(members, sizeof(members),
		 "\"auth\":{\"users\":[{\"name\":\"ops\",\"password_hash\":\"%s\",\"admin\":true},"
		 "{\"name\":\"dev\",\"password_hash\":\"%s\"}]},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", hash, hash, be[0]->port);
	free(hash);
	start_gate_json(members);

	int ops = T_OK(t_q_connect("127.0.0.1", gw_port, "ops:secret", NULL));
	struct t_obj *r = t_call_ok(ops, t_str(".qgate.backends[]"), 5000);
	cr_assert_eq(r->type, T_TABLE, "got %s", t_show(r));
	char text[2048];
	t_fmt(r, text, sizeof(text));
	cr_assert(strstr(text, "b1") && strstr(text, "up"), "table: %s", text);
	t_free(r);
	r = t_call_ok(ops, t_call0(".qgate.pools"), 5000);
	cr_assert_eq(r->type, T_TABLE, "got %s", t_show(r));
	t_free(r);
	r = t_call_ok(ops, t_str(".qgate.nosuch[]"), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: unknown admin function"), "got %s", t_show(r));
	t_free(r);
	int dev = T_OK(t_q_connect("127.0.0.1", gw_port, "dev:secret", NULL));
	r = t_call_ok(dev, t_str(".qgate.clients[]"), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: not allowed"), "got %s", t_show(r));
	t_free(r);
	close(ops);
	close(dev);
}

Test(modes, audit_log_has_one_line_per_request)
{
	start_backend(0, NULL);
	char members[768];
	char audit[320];
	snprintf(audit, sizeof(audit), "%s/audit.log", t_env_dir());
	snprintf(members, sizeof(members),
		 "\"log\":{\"level\":\"info\",\"audit_file\":\"%s\"},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", audit, be[0]->port);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "auditor:x", NULL));
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(5)), t_long(5), 5000);
	struct t_obj *r = t_call_ok(fd, t_call(".mock.error", 1, t_str("boom")), 5000);
	cr_assert(t_is_err_prefix(r, "boom"), "got %s", t_show(r));
	t_free(r);
	T_OK(t_wait_file_contains(audit, 0, "what=\".mock.error\"", 3000));
	char *log = t_read_file(audit);
	cr_assert(strstr(log, "user=auditor pool=p backend=b1 type=sync what=\".mock.echo\""),
		  "%s", log);
	cr_assert(strstr(log, "outcome=\"q error\""), "%s", log);
	free(log);
	close(fd);
}

/* ------------------------------------------------------ large, restart, stop */

Test(modes, large_messages_stream_through_both_ways)
{
	start_backend(0, NULL);
	char members[512];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", be[0]->port);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "big:x", NULL));
	size_t n = 12u << 20;
	char *big = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	big[n] = '\0';
	struct t_obj *r = t_call_ok(fd, t_call(".mock.echo", 1, t_strn(big, n)), 60000);
	cr_assert(r->type == T_CHAR && r->n == n, "got %s", t_show(r));
	cr_assert(memcmp(r->data, big, n) == 0, "12 MiB echo came back different");
	t_free(r);
	free(big);
	/* and the connection is still in step afterwards */
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(3)), t_long(3), 5000);
	close(fd);
}

Test(modes, gateway_reconnects_when_a_backend_comes_back)
{
	start_backend(0, NULL);
	int port = be[0]->port;
	char members[768];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],\"queue\":{\"timeout_ms\":3000},"
		 "\"reconnect\":{\"delay_ms\":50,\"max_delay_ms\":200,\"jitter\":0}}]", port);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "r:x", NULL));
	t_call_expect(fd, t_call(".mock.id", 1, t_atom(T_UNARY)), t_sym("b1"), 5000);
	t_proc_kill(be[0]);

	/* the same port again, a new process */
	char port_s[16];
	snprintf(port_s, sizeof(port_s), "%d", port);
	char *argv[] = { (char *)t_bin("MOCKQ_BIN"), "--port", port_s, "--name", "b1again", NULL };
	struct t_proc *again = T_PTR(t_proc_start("b1again", argv));
	T_OK(t_wait_accepting("127.0.0.1", port, 5000, again->pid));
	/* queued while the gateway reconnects, then answered by the new process */
	t_call_expect(fd, t_call(".mock.id", 1, t_atom(T_UNARY)), t_sym("b1again"), 5000);
	close(fd);
}

Test(modes, sigterm_lets_requests_in_flight_finish)
{
	start_backend(0, NULL);
	char members[512];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", be[0]->port);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "t:x", NULL));
	/* 1.5 s: the window for the stats poll below, and within the 5 s grace */
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.sleep", 1, t_long(1500))));
	/* wait (bounded) until the gateway reports the request in flight */
	int64_t deadline = t_now_ms() + 3000;
	int64_t busy = 0;
	while (busy != 1 && t_now_ms() < deadline) {
		json_t *j = stats();
		json_t *b = json_array_get(json_object_get(json_array_get(
				json_object_get(j, "pools"), 0), "backends"), 0);
		busy = json_integer_value(json_object_get(json_object_get(b, "connections"), "busy"));
		json_decref(j);
	}
	cr_assert_eq(busy, 1, "the request never showed as in flight");
	T_OK(t_proc_signal(gate, SIGTERM));
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(fd, 5000, &r, &type));
	cr_assert_eq(type, T_RESPONSE);
	T_EXPECT_EQ(r, t_long(1500));
	t_free(r);
	T_OK(t_proc_wait(gate, 6000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d", gate->status);
	/* no new clients once stopping */
	cr_assert_lt(t_q_connect("127.0.0.1", gw_port, "late:x", NULL), 0);
	close(fd);
}

/* -------------------------------------------------------------------- TLS */

#include <openssl/err.h>
#include <openssl/ssl.h>

static int tls_send_all(SSL *ssl, const void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		size_t w = 0;
		if (SSL_write_ex(ssl, (const char *)p + done, n - done, &w) != 1)
			return -1;
		done += w;
	}
	return 0;
}

static int tls_recv_n(SSL *ssl, void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		size_t r = 0;
		if (SSL_read_ex(ssl, (char *)p + done, n - done, &r) != 1)
			return -1;
		done += r;
	}
	return 0;
}

Test(modes, tls_on_the_client_side_and_to_a_backend, .timeout = 60.0)
{
	char *out = NULL, *err = NULL;
	char crt[300], key[300];

	snprintf(crt, sizeof(crt), "%s/gw.crt", t_env_dir());
	snprintf(key, sizeof(key), "%s/gw.key", t_env_dir());
	char *const gen[] = { "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
			      "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
			      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", NULL };
	int rc = t_run(gen, NULL, 30000, &out, &err);
	cr_assert_eq(rc, 0, "openssl req failed (%d): %s", rc, err ? err : t_errmsg());
	free(out);
	free(err);

	/* gateway A: a TLS listener in front of mockq */
	start_backend(0, NULL);
	char members[1024];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", be[0]->port);
	char *text = NULL;
	int tls_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"tls\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\",\"tls\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},%s}", tls_port, crt, key,
			   stats_port, members) > 0);
	const char *path = T_PTR(t_write_file("a.json", text));
	free(text);
	struct t_proc *a = T_PTR(t_qgate_start(path, tls_port));

	/* a TLS client speaking q through it */
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert(SSL_CTX_load_verify_locations(ctx, crt, NULL) == 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int fd = T_OK(t_tcp_connect("127.0.0.1", tls_port, 2000));
	SSL *ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set1_host(ssl, "localhost");
	cr_assert(SSL_connect(ssl) == 1, "TLS handshake with the gateway failed");
	uint8_t cap = 0xff;
	T_OK(tls_send_all(ssl, "tls:x\3", 7));	/* hello: user, capability 3, NUL */
	cr_assert(tls_recv_n(ssl, &cap, 1) == 0 && cap == 3, "capability %d", cap);
	uint8_t *msg;
	size_t len;
	struct t_obj *req = t_call(".mock.echo", 1, t_long(99));
	T_OK(t_encode_msg(req, T_SYNC, &msg, &len));
	t_free(req);
	T_OK(tls_send_all(ssl, msg, len));
	free(msg);
	uint8_t hdr[8], body[64];
	cr_assert(tls_recv_n(ssl, hdr, 8) == 0);
	uint32_t n = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
		     (uint32_t)hdr[7] << 24;
	cr_assert(n == 17 && hdr[1] == T_RESPONSE, "answer header n=%u type=%d", n, hdr[1]);
	cr_assert(tls_recv_n(ssl, body, n - 8) == 0);
	cr_assert(body[0] == 0xf9 && body[1] == 99, "answer payload %02x %02x", body[0], body[1]);
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);

	/* gateway B: its backend is gateway A, over TLS, verified against the same cert */
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"viatls\",\"address\":"
		 "\"localhost:%d\",\"connections\":1,\"tls\":{\"ca_file\":\"%s\"}}]}]",
		 tls_port, crt);
	start_gate_json(members);
	int b = T_OK(t_q_connect("127.0.0.1", gw_port, "b:x", NULL));
	t_call_expect(b, t_call0(".mock.id"), t_sym("b1"), 5000);
	close(b);
	(void)a;
}

/* ------------------------------------------------------------------ reload */

static void write_pool_cfg(const char *path, const char *backends, const char *extra)
{
	char *text = NULL;

	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}%s],\"stats\":{\"listen\":\"127.0.0.1:%d\"},"
			   "\"pools\":[{\"name\":\"p\",\"backends\":[%s]}]}", gw_port,
			   extra ? extra : "", stats_port, backends) > 0);
	T_OK(t_json_check(text));
	char *tmp = NULL;
	cr_assert(asprintf(&tmp, "%s.tmp", path) > 0);
	FILE *f = fopen(tmp, "w");
	cr_assert(f != NULL);
	fputs(text, f);
	fclose(f);
	cr_assert(rename(tmp, path) == 0);	/* the gateway never reads half a file */
	free(tmp);
	free(text);
}

/* Ask .mock.id[] n times through the gateway; return a bit per backend seen (b1=1, b2=2). */
static int ids_seen(int fd, int n)
{
	int seen = 0;

	for (int i = 0; i < n; i++) {
		struct t_obj *r = t_call_ok(fd, t_call0(".mock.id"), 5000);
		cr_assert(r->type == -T_SYM, "got %s", t_show(r));
		seen |= !strcmp(r->s, "b1") ? 1 : !strcmp(r->s, "b2") ? 2 : 4;
		t_free(r);
	}
	return seen;
}

/* Poll /stats (bounded) until the pool lists want_n backends, all up. */
static void wait_backends_up(size_t want_n)
{
	int64_t deadline = t_now_ms() + 5000;
	size_t n = 0, up = 0;

	while (t_now_ms() < deadline) {
		json_t *j = stats();
		json_t *bs = json_object_get(json_array_get(json_object_get(j, "pools"), 0),
					     "backends");
		n = json_array_size(bs);
		up = 0;
		for (size_t i = 0; i < n; i++)
			up += !strcmp(json_string_value(json_object_get(json_array_get(bs, i),
									"state")), "up");
		json_decref(j);
		if (n == want_n && up == want_n)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("pool has %zu backends, %zu up; want %zu up", n, up, want_n);
}

Test(modes, sighup_adds_and_removes_backends_without_dropping_clients)
{
	start_backend(0, NULL);
	start_backend(1, NULL);
	char b1[128], b2[128], both[256];
	snprintf(b1, sizeof(b1), "{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\",\"connections\":1}",
		 be[0]->port);
	snprintf(b2, sizeof(b2), "{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\",\"connections\":1}",
		 be[1]->port);
	snprintf(both, sizeof(both), "%s,%s", b1, b2);

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	char path[320];
	snprintf(path, sizeof(path), "%s/reload.json", t_env_dir());
	write_pool_cfg(path, b1, NULL);
	gate = T_PTR(t_qgate_start(path, gw_port));
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "stay:x", NULL));
	cr_assert_eq(ids_seen(fd, 4), 1);

	/* add b2 and a second listener */
	int port2 = T_OK(t_free_port());
	char extra[128];
	snprintf(extra, sizeof(extra), ",{\"name\":\"second\",\"listen\":\"127.0.0.1:%d\","
		 "\"pool\":\"p\"}", port2);
	write_pool_cfg(path, both, extra);
	T_OK(t_proc_signal(gate, SIGHUP));
	wait_backends_up(2);
	cr_assert_eq(ids_seen(fd, 12), 3, "both backends serve after the reload");
	T_OK(t_wait_accepting("127.0.0.1", port2, 3000, gate->pid));

	/* remove b1 while requests are in flight on both backends (one connection each, so
	 * one of them is on b1): both still get their answers */
	int slow[2];
	for (int i = 0; i < 2; i++) {
		slow[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "slow:x", NULL));
		T_OK(t_send_free(slow[i], T_SYNC, t_call(".mock.defer", 2, t_long(300),
							 t_long(i))));
	}
	write_pool_cfg(path, b2, NULL);
	T_OK(t_proc_signal(gate, SIGHUP));
	for (int i = 0; i < 2; i++) {
		struct t_obj *r = NULL;
		int type = -1;
		T_OK(t_q_recv(slow[i], 3000, &r, &type));
		cr_assert(type == T_RESPONSE && r->type == -T_LONG && r->a.j == i, "got %s",
			  t_show(r));
		t_free(r);
		close(slow[i]);
	}
	wait_backends_up(1);
	cr_assert_eq(ids_seen(fd, 6), 2, "only b2 serves once b1 is removed");

	/* a broken file is refused and the running configuration stays */
	size_t from = t_file_size(gate->err_path);
	FILE *f = fopen(path, "w");
	fputs("{\"pools\": []", f);
	fclose(f);
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(t_wait_file_contains(gate->err_path, from, "new configuration refused", 3000));
	cr_assert_eq(ids_seen(fd, 3), 2);
	close(fd);
}

/* ------------------------------------------------------------ slow readers */

Test(modes, a_slow_reader_pauses_its_backend_and_the_connection_recovers, .timeout = 90.0)
{
	start_backend(0, NULL);
	char members[512];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}],"
		 "\"limits\":{\"client_buffer_bytes\":65536}", be[0]->port);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "slow:x", NULL));
	for (int round = 0; round < 4; round++) {
		/* ask for 6 MiB and read nothing for a while: the gateway must stop reading the
		 * backend (bounded memory) and start again once the client reads */
		T_OK(t_send_free(fd, T_SYNC, t_call(".mock.bytes", 1, t_long(6 << 20))));
		poll(NULL, 0, 150);	/* the client being slow is the point, not a wait */
		struct t_obj *r = NULL;
		int type = -1;
		T_OK(t_q_recv(fd, 20000, &r, &type));
		cr_assert(r->type == T_BYTE && r->n == (6u << 20), "got %s", t_show(r));
		t_free(r);
		/* the backend connection serves the next requests: it was not left paused */
		for (int i = 0; i < 5; i++)
			t_call_expect(fd, t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);
	}
	json_t *j = stats();
	json_t *b = json_array_get(json_object_get(json_array_get(json_object_get(j, "pools"), 0),
						   "backends"), 0);
	cr_assert_eq(json_integer_value(json_object_get(b, "requests")), 24);
	json_decref(j);
	close(fd);
}

/* ----------------------------------------------------------------- workers */

Test(modes, two_workers_share_the_port_and_stats_sum_both, .timeout = 60.0)
{
	start_backend(0, NULL);
	char members[512];
	snprintf(members, sizeof(members), "\"workers\":2,"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", be[0]->port);
	start_gate_json(members);
	wait_clients(0, 2);	/* one connection per worker */
	int fds[16], sent = 0;
	for (int i = 0; i < 16; i++)
		fds[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "w:x", NULL));
	for (int i = 0; i < 16; i++)
		for (int k = 0; k < 5; k++, sent++)
			t_call_expect(fds[i], t_call(".mock.echo", 1, t_long(k)), t_long(k), 5000);
	/* workers publish their figures a few times a second: poll (bounded) for the sum */
	int64_t deadline = t_now_ms() + 3000, got = -1, accepted = -1, workers = -1;
	while (t_now_ms() < deadline) {
		json_t *j = stats();
		got = json_integer_value(json_object_get(json_array_get(json_object_get(j, "pools"),
									 0), "requests"));
		accepted = json_integer_value(json_object_get(json_array_get(
			json_object_get(j, "listeners"), 0), "accepted"));
		/* a worker counts once it has published its first figures */
		workers = json_integer_value(json_object_get(json_object_get(j, "gateway"),
							     "workers"));
		json_decref(j);
		if (got == sent && accepted >= 16 && workers == 2)
			break;
		poll(NULL, 0, 50);
	}
	cr_assert_eq(workers, 2, "stats sum %" PRId64 " workers of 2", workers);
	cr_assert_eq(got, sent, "stats count %" PRId64 " requests of %d", got, sent);
	/* 16 clients, plus the readiness probe that found the port open */
	cr_assert(accepted >= 16 && accepted <= 17, "accepted %" PRId64, accepted);
	for (int i = 0; i < 16; i++)
		close(fds[i]);
}

/* ------------------------------------------------------ health, allow, deny */

Test(modes, health_check_closes_a_connection_to_a_stopped_backend, .timeout = 60.0)
{
	start_backend(0, NULL);
	start_backend(1, NULL);
	char members[768];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1},{\"name\":\"b2\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],"
		 "\"health\":{\"interval_ms\":100,\"timeout_ms\":200}}]", be[0]->port, be[1]->port);
	start_gate_json(members);
	wait_clients(0, 1);
	wait_clients(1, 1);
	/* b1 freezes (SIGSTOP): its socket stays open, only the health check can tell */
	T_OK(t_proc_signal(be[0], SIGSTOP));
	int64_t deadline = t_now_ms() + 5000, failures = 0;
	while (failures == 0 && t_now_ms() < deadline) {
		json_t *j = stats();
		failures = json_integer_value(json_object_get(json_array_get(
			json_object_get(j, "pools"), 0), "health_failures"));
		json_decref(j);
		if (!failures)
			poll(NULL, 0, 50);
	}
	cr_assert_gt(failures, 0, "no health check failed against a stopped backend");
	/* meanwhile every request is served by b2 */
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "h:x", NULL));
	for (int i = 0; i < 6; i++)
		t_call_expect(fd, t_call0(".mock.id"), t_sym("b2"), 5000);
	T_OK(t_proc_signal(be[0], SIGCONT));
	close(fd);
}

Test(modes, deny_rules_and_allow_lists_refuse_with_not_allowed)
{
	char *hash = T_PTR(t_hash_password("pw"));

	start_backend(0, NULL);
	char members[1024];
	snprintf(members, sizeof(members),
		 "\"auth\":{\"users\":[{\"name\":\"open\",\"password_hash\":\"%s\"},"
		 "{\"name\":\"narrow\",\"password_hash\":\"%s\",\"allow\":[\".mock.echo\"]}]},"
		 "\"rules\":[{\"function\":\".mock.drop\",\"deny\":true}],"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", hash, hash, be[0]->port);
	free(hash);
	start_gate_json(members);
	int open_fd = T_OK(t_q_connect("127.0.0.1", gw_port, "open:pw", NULL));
	struct t_obj *r = t_call_ok(open_fd, t_call0(".mock.drop"), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: not allowed"), "got %s", t_show(r));
	t_free(r);
	t_call_expect(open_fd, t_call0(".mock.id"), t_sym("b1"), 5000);
	int narrow = T_OK(t_q_connect("127.0.0.1", gw_port, "narrow:pw", NULL));
	t_call_expect(narrow, t_call(".mock.echo", 1, t_long(4)), t_long(4), 5000);
	r = t_call_ok(narrow, t_call0(".mock.id"), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: not allowed"), "got %s", t_show(r));
	t_free(r);
	r = t_call_ok(narrow, t_str("1+1"), 5000);	/* a string query names no function */
	cr_assert(t_is_err_prefix(r, "qgate: not allowed"), "got %s", t_show(r));
	t_free(r);
	close(open_fd);
	close(narrow);
}

/* ------------------------------------------------------------ idempotent */

Test(modes, idempotent_pool_retries_a_request_whose_backend_died, .timeout = 60.0)
{
	start_backend(0, NULL);
	start_backend(1, NULL);
	char members[768];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"idempotent\":true,\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\",\"connections\":1},{\"name\":\"b2\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],\"reconnect\":{\"delay_ms\":5000}}]",
		 be[0]->port, be[1]->port);
	start_gate_json(members);
	wait_clients(0, 1);
	wait_clients(1, 1);
	/* one deferred request on each backend (one connection each) */
	int fd[2];
	for (int i = 0; i < 2; i++) {
		fd[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "idem:x", NULL));
		/* 2 s: the window for seeing both in flight before the kill */
		T_OK(t_send_free(fd[i], T_SYNC, t_call(".mock.defer", 2, t_long(2000),
						       t_long(100 + i))));
	}
	/* both in flight (per /stats), then b1 dies under its request */
	int64_t deadline = t_now_ms() + 3000, busy = 0;
	while (busy < 2 && t_now_ms() < deadline) {
		json_t *j = stats();
		json_t *bs = json_object_get(json_array_get(json_object_get(j, "pools"), 0),
					     "backends");
		busy = 0;
		for (size_t k = 0; k < json_array_size(bs); k++)
			busy += json_integer_value(json_object_get(json_object_get(
				json_array_get(bs, k), "connections"), "busy"));
		json_decref(j);
	}
	cr_assert_eq(busy, 2, "requests not both in flight");
	t_proc_kill(be[0]);
	/* both clients get their own answers: the one from b1 was resent to b2 */
	for (int i = 0; i < 2; i++) {
		struct t_obj *r = NULL;
		int type = -1;
		T_OK(t_q_recv(fd[i], 8000, &r, &type));
		T_EXPECT_EQ(r, t_long(100 + i));
		t_free(r);
		close(fd[i]);
	}
}

/* ------------------------------------------------------------ compression */

Test(modes, listener_compress_sends_large_answers_compressed_as_q_would)
{
	start_backend(0, NULL);
	char *text = NULL;
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\",\"compress\":\"always\"}],\"pools\":[{\"name\":\"p\","
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1}]}]}", gw_port, be[0]->port) > 0);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = T_PTR(t_qgate_start(path, gw_port));
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "z:x", NULL));

	/* pipelined: a large compressible answer, a small one, a large incompressible one */
	size_t sizes[3] = { 100000, 100, 300000 };
	char *texts[3];
	uint32_t x = 1;
	for (int i = 0; i < 3; i++) {
		texts[i] = malloc(sizes[i]);
		for (size_t k = 0; k < sizes[i]; k++) {
			x = x * 1103515245u + 12345u;	/* the protocol page's LCG */
			texts[i][k] = i == 2 ? (char)(x >> 16) : "kdb+ipc "[k % 8];
		}
		T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_strn(texts[i], sizes[i]))));
	}
	for (int i = 0; i < 3; i++) {
		uint8_t *raw = NULL;
		size_t len = 0;
		T_OK(t_q_recv_raw(fd, 10000, &raw, &len));
		/* q's rule: above 2008 bytes and only when it halves the message */
		int want = i == 0 ? 1 : 0;
		cr_assert_eq(raw[2], want, "answer %d: compressed flag %d", i, raw[2]);
		if (want)
			cr_assert_lt(len, sizes[i] / 2, "answer %d: %zu bytes", i, len);
		int type = -1, err = 0;
		struct t_obj *r = t_decode_msg(raw, len, &type, &err);
		cr_assert(r && r->type == T_CHAR && r->n == sizes[i], "answer %d: %s", i,
			  r ? t_show(r) : "undecodable");
		cr_assert(memcmp(r->data, texts[i], sizes[i]) == 0, "answer %d differs", i);
		t_free(r);
		free(raw);
		free(texts[i]);
	}
	close(fd);
}

Test(modes, an_answer_that_never_comes_is_drained_then_the_connection_replaced)
{
	start_backend(0, NULL);
	char members[768];
	snprintf(members, sizeof(members),
		 "\"limits\":{\"drain_timeout_ms\":150},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\",\"connections\":1}],"
		 "\"reconnect\":{\"delay_ms\":20}}],"
		 /* the 50 ms on the deferred call only: the echo after it must not race it */
		 "\"rules\":[{\"function\":\".mock.defer\",\"timeout_ms\":50}]", be[0]->port);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "d:x", NULL));
	size_t from = t_file_size(gate->err_path);
	struct t_obj *r = t_call_ok(fd, t_call(".mock.defer", 2, t_long(5000), t_long(1)), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: timeout"), "got %s", t_show(r));
	t_free(r);
	/* the late answer would take 5 s: after drain_timeout_ms the socket is given up */
	T_OK(t_wait_file_contains(gate->err_path, from, "abandoned answer still not in", 3000));
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(2)), t_long(2), 5000);
	close(fd);
}

Test(modes, session_passes_byte_by_byte_messages_through_intact)
{
	start_backend(0, NULL);
	char pools[512];
	snprintf(pools, sizeof(pools), "\"pools\":[{\"name\":\"p\",\"mode\":\"session\","
		 "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\"}]}]", be[0]->port);
	start_gate_json(pools);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "frag:x", NULL));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int round = 0; round < 3; round++) {
		uint8_t *msg;
		size_t len;
		struct t_obj *req = t_call(".mock.echo", 1, t_long(40 + round));
		T_OK(t_encode_msg(req, T_SYNC, &msg, &len));
		t_free(req);
		/* one byte per write, each given time to travel alone (pacing, not a wait) */
		for (size_t i = 0; i < len; i++) {
			T_OK(t_send_all(fd, msg + i, 1));
			poll(NULL, 0, 2);
		}
		free(msg);
		struct t_obj *r = NULL;
		int type = -1;
		T_OK(t_q_recv(fd, 5000, &r, &type));
		T_EXPECT_EQ(r, t_long(40 + round));
		t_free(r);
	}
	close(fd);
}

Test(modes, tls_backend_is_verified_against_its_ca, .timeout = 60.0)
{
	char crt[300], key[300], other_crt[300], other_key[300];
	char *out = NULL, *err = NULL;

	snprintf(crt, sizeof(crt), "%s/be.crt", t_env_dir());
	snprintf(key, sizeof(key), "%s/be.key", t_env_dir());
	snprintf(other_crt, sizeof(other_crt), "%s/other.crt", t_env_dir());
	snprintf(other_key, sizeof(other_key), "%s/other.key", t_env_dir());
	for (int i = 0; i < 2; i++) {
		char *const gen[] = { "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048",
				      "-nodes", "-keyout", i ? other_key : key, "-out",
				      i ? other_crt : crt, "-days", "2", "-subj", "/CN=localhost",
				      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", NULL };
		int rc = t_run(gen, NULL, 30000, &out, &err);
		cr_assert_eq(rc, 0, "openssl req failed (%d): %s", rc, err ? err : t_errmsg());
		free(out);
		free(err);
	}
	/* mockq speaking TLS only, as a q started with -E 2 */
	const char *const tls_args[] = { "--tls-cert", crt, "--tls-key", key, NULL };
	start_backend(0, tls_args);
	char members[1024];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"queue\":{\"timeout_ms\":300},\"backends\":["
		 "{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\",\"connections\":1,"
		 "\"tls\":{\"ca_file\":\"%s\"}}]},"
		 "{\"name\":\"wrong\",\"queue\":{\"timeout_ms\":300},\"backends\":["
		 "{\"name\":\"b1x\",\"address\":\"127.0.0.1:%d\",\"connections\":1,"
		 "\"tls\":{\"ca_file\":\"%s\"}}]}],"
		 "\"rules\":[{\"function\":\".wrong.*\",\"pool\":\"wrong\"}]",
		 be[0]->port, crt, be[0]->port, other_crt);
	start_gate_json(members);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "t:x", NULL));
	t_call_expect(fd, t_call0(".mock.id"), t_sym("b1"), 5000);
	/* a backend whose certificate the pool's CA did not sign is never used */
	T_OK(t_wait_file_contains(gate->err_path, 0, "TLS handshake failed", 5000));
	struct t_obj *r = t_call_ok(fd, t_call(".wrong.f", 1, t_long(1)), 5000);
	cr_assert(t_is_err_prefix(r, "qgate: "), "got %s", t_show(r));
	t_free(r);
	close(fd);
}

/* ------------------------------------------------------ backend credentials */

Test(modes, backend_passwords_from_file_and_env_log_in_and_are_never_logged)
{
	static const char *const auth[] = { "--user", "gw:s3cr3t-pw", NULL };

	start_backend(0, auth);
	start_backend(1, auth);
	const char *pwfile = T_PTR(t_write_file("pw.txt", "s3cr3t-pw\n"));
	/* qgate inherits this test's environment */
	cr_assert(setenv("QGATE_TEST_BACKEND_PW", "s3cr3t-pw", 1) == 0);
	char members[1024];
	snprintf(members, sizeof(members),
		 "\"log\":{\"level\":\"debug\"},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":["
		 "{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\",\"user\":\"gw\","
		 "\"password_file\":\"%s\",\"connections\":1},"
		 "{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\",\"user\":\"gw\","
		 "\"password_env\":\"QGATE_TEST_BACKEND_PW\",\"connections\":1}]}]",
		 be[0]->port, pwfile, be[1]->port);
	start_gate_json(members);
	wait_backends_up(2);	/* both logged in: the spread below needs both */
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "c:x", NULL));
	int seen = 0;
	for (int i = 0; i < 10; i++) {
		struct t_obj *r = t_call_ok(fd, t_call0(".mock.id"), 5000);
		cr_assert(r->type == -T_SYM, "got %s", t_show(r));
		seen |= !strcmp(r->s, "b1") ? 1 : 2;
		t_free(r);
	}
	cr_assert_eq(seen, 3, "both backends (file and env password) should serve");
	char *log = t_read_file(gate->err_path);
	cr_assert(log && !strstr(log, "s3cr3t"), "a backend password reached the log");
	free(log);
	close(fd);
}
