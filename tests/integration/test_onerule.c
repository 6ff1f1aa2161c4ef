/*
 * test_onerule — regression tests for issue #6, "the one rule": no client can crash qgate,
 * stall it, or receive another client's bytes. One test per defect the issue lists:
 *  1. a client that leaves (FIN or RST) in the middle of a streamed message;
 *  2. a backend that sends two answers in one read;
 *  3. an idempotent retry after a partial answer;
 *  4. session pools that keep choosing a dead backend;
 *  5. flow control: two large answers to a reading client, a client that never reads,
 *     and the backend connections of a never-reader that left;
 *  6. a client's async overtaking its own queued sync;
 *  7. an abandoned async upload failing another client's request;
 *  8. the smaller ones: an error reply inside a streaming message, the capability a session
 *     pool offers its backend, a session backend dying mid-answer, max_pipeline exceeded by
 *     one read, queue.timeout_ms 0 once reconnects are exhausted, a reload that outgrows the
 *     connection slab, requests still in flight when shutdown_grace_ms ends, and the removed
 *     `pipeline` option.
 *
 * Real processes on loopback: the qgate binary and mockq, and where a backend must misbehave,
 * a scripted fake backend run by threads of this test (a listener on 127.0.0.1, the q
 * handshake, then exactly the bytes its script writes). Readiness is read from /stats, from
 * the gateway's log and from the fake's own events; every wait is bounded.
 *
 * T_ONERULE_BASELINE=1 leaves out the limits key that the fix for 5b adds
 * (client_output_timeout_ms), so that the scenario can also be run against a gateway that does
 * not know the key yet; the test then fails on the behaviour, not on the config.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

static struct t_proc *be[2];
static struct t_proc *gate;
static int gw_port, stats_port;
static char cfg_path[320];

static void fk_stop(void);

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	be[0] = be[1] = NULL;
	gate = NULL;
}

static void teardown(void)
{
	fk_stop();
	t_env_fini();
}

TestSuite(onerule, .init = setup, .fini = teardown, .timeout = 30.0);

/* ------------------------------------------------------------------ processes */

static void start_backend(int k, const char *const extra[])
{
	char name[8];

	snprintf(name, sizeof(name), "b%d", k + 1);
	be[k] = t_mockq_start(name, extra);
	cr_assert(be[k] != NULL, "%s", t_errmsg());
}

/* The whole config text: listener main on gw_port, stats on stats_port, then members. */
static char *cfg_text(const char *members)
{
	char *text = NULL;

	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}],\"stats\":{\"listen\":\"127.0.0.1:%d\"},%s}",
			   gw_port, stats_port, members) > 0);
	T_OK(t_json_check(text));
	return text;
}

/* Write the config (fresh ports) and start qgate on it. */
static void start_gate(const char *members)
{
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	char *text = cfg_text(members);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	snprintf(cfg_path, sizeof(cfg_path), "%s", path);
	gate = t_qgate_start(cfg_path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	/* the listener accepts before start-up is over: the stats endpoint may come a bit later */
	T_OK(t_wait_accepting("127.0.0.1", stats_port, 5000, gate->pid));
}

static int connect_gw(void)
{
	return T_OK(t_q_connect("127.0.0.1", gw_port, "onerule:x", NULL));
}

/* ------------------------------------------------------------------ /stats */

/* The parsed /stats document, or NULL when the endpoint does not answer (a dead gateway). */
static json_t *stats_try(void)
{
	char *body = NULL;
	json_t *j = NULL;

	if (t_http_get(stats_port, "/stats", &body) == 200)
		j = json_loads(body, 0, NULL);
	free(body);
	return j;
}

static json_t *stats(void)
{
	json_t *j = stats_try();

	cr_assert(j != NULL, "no /stats from the gateway: %s", t_errmsg());
	return j;
}

/* A backend's figure: a key of its "connections" object (idle, busy, connecting) or of the
 * backend itself (bytes_in, outstanding, ...); -1 when the backend is not listed. */
static int64_t be_stat_in(json_t *j, const char *name, const char *key)
{
	json_t *ps = json_object_get(j, "pools");
	int64_t v = -1;

	for (size_t i = 0; i < json_array_size(ps); i++) {
		json_t *bs = json_object_get(json_array_get(ps, i), "backends");
		for (size_t k = 0; k < json_array_size(bs); k++) {
			json_t *b = json_array_get(bs, k);
			if (strcmp(json_string_value(json_object_get(b, "name")), name) != 0)
				continue;
			json_t *x = json_object_get(json_object_get(b, "connections"), key);
			if (!x)
				x = json_object_get(b, key);
			v = json_integer_value(x);
		}
	}
	return v;
}

static int64_t be_stat(const char *name, const char *key)
{
	json_t *j = stats();
	int64_t v = be_stat_in(j, name, key);

	json_decref(j);
	return v;
}

/* A figure of the first pool (queued, dropped_unsolicited, ...). */
static int64_t pool_stat(const char *key)
{
	json_t *j = stats();
	int64_t v = json_integer_value(json_object_get(json_array_get(json_object_get(j, "pools"),
								      0), key));

	json_decref(j);
	return v;
}

/* Poll (bounded) until a backend's figure is at least want; returns the last value seen. */
static int64_t wait_be_at_least(const char *name, const char *key, int64_t want, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms, v = -1;

	while (t_now_ms() < deadline) {
		v = be_stat(name, key);
		if (v >= want)
			break;
		poll(NULL, 0, 10);	/* pacing between polls */
	}
	return v;
}

/* Same, until the figure equals want. */
static int64_t wait_be_eq(const char *name, const char *key, int64_t want, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms, v = -1;

	while (t_now_ms() < deadline) {
		v = be_stat(name, key);
		if (v == want)
			break;
		poll(NULL, 0, 10);
	}
	return v;
}

static void need_idle(const char *name, int64_t want)
{
	int64_t v = wait_be_eq(name, "idle", want, 5000);

	cr_assert_eq(v, want, "backend %s has %" PRId64 " idle connections, want %" PRId64, name,
		     v, want);
}

static int64_t wait_pool_at_least(const char *key, int64_t want, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms, v = -1;

	while (t_now_ms() < deadline) {
		v = pool_stat(key);
		if (v >= want)
			break;
		poll(NULL, 0, 10);
	}
	return v;
}

/* ------------------------------------------------------------------ raw messages */

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A whole message of msg_type holding a char vector, total bytes long, header included:
 * byte i of the text is 'a' + i % 26 (malloc'd). */
static uint8_t *char_msg(int msg_type, uint32_t total)
{
	uint8_t *m = malloc(total);

	cr_assert(m != NULL && total > 14);
	m[0] = 1;
	m[1] = (uint8_t)msg_type;
	m[2] = m[3] = 0;
	put_le32(m + 4, total);
	m[8] = T_CHAR;
	m[9] = 0;
	put_le32(m + 10, total - 14);
	for (uint32_t i = 14; i < total; i++)
		m[i] = (uint8_t)('a' + (i - 14) % 26);
	return m;
}

/* Send the first n bytes of a char-vector message that announces total bytes. */
static void send_partial(int fd, int msg_type, uint32_t total, size_t n)
{
	uint8_t *m = char_msg(msg_type, total);

	T_OK(t_send_all(fd, m, n));
	free(m);
}

/* Read whatever arrives until the peer closes (or timeout_ms); true when it closed. */
static bool read_until_closed(int fd, uint8_t *buf, size_t cap, size_t *n, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;

	*n = 0;
	/* bounded by the deadline */
	while (t_now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - t_now_ms());
		if (poll(&pfd, 1, left > 0 ? left : 0) <= 0)
			continue;
		uint8_t scratch[4096];
		ssize_t k = recv(fd, *n < cap ? buf + *n : scratch,
				 *n < cap ? cap - *n : sizeof(scratch), 0);
		if (k == 0 || (k < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return true;
		if (k < 0 && errno != EINTR)
			return false;
		if (k > 0 && *n < cap)
			*n += (size_t)k;
	}
	return false;
}

/* The whole message as bytes (type msg_type), malloc'd. */
static uint8_t *encode(const struct t_obj *o, int msg_type, size_t *len)
{
	uint8_t *m = NULL;

	cr_assert(o != NULL, "out of memory building a message");
	T_OK(t_encode_msg(o, msg_type, &m, len));
	return m;
}

/* ------------------------------------------------------------------ fake backend */

/*
 * A backend that does what its script says. An acceptor thread takes connections on
 * 127.0.0.1 (port 0), and each connection gets a thread: the q handshake (read up to the NUL,
 * record the capability byte, reply min(cap, 6)), then script(conn_no, fd). The connection
 * is closed when the script returns. Scripts coordinate with the test through event bits.
 * fk_stop() (also run at teardown) shuts every socket down and joins every thread.
 */
#define FK_MAX_CONNS 16
#define FK_RX_CAP (4u << 20)

enum {
	FK_GOT_A = 1 << 0,	/* test 2: the first request is in */
	FK_GO = 1 << 1,		/* test 2: answer it now */
	FK_R2_AGAIN = 1 << 2,	/* test 3: R2 was sent again after its connection died */
	FK_PINGED = 1 << 3,	/* test 8a: the call into the client was written */
};

typedef void (*fk_script)(int conn_no, int fd);

static struct {
	int lfd, port;
	fk_script script;
	bool is_running;
	pthread_t acceptor;
	pthread_t th[FK_MAX_CONNS];
	int fd[FK_MAX_CONNS];
	int hello_cap[FK_MAX_CONNS];
	int n_conns;
	unsigned events;
	atomic_int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *rx;		/* bytes received on connection 0 (scripts that record) */
	size_t rx_len;
} fk = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .lfd = -1 };

static void fk_signal(unsigned bits)
{
	pthread_mutex_lock(&fk.mu);
	fk.events |= bits;
	pthread_cond_broadcast(&fk.cv);
	pthread_mutex_unlock(&fk.mu);
}

/* Wait until one of bits is signalled, at most timeout_ms (or until the fake stops). */
static bool fk_wait(unsigned bits, int timeout_ms)
{
	struct timespec ts;
	bool got;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&fk.mu);
	/* bounded by the deadline: each wake-up re-checks it */
	while (!(fk.events & bits) && !atomic_load(&fk.stop))
		if (pthread_cond_timedwait(&fk.cv, &fk.mu, &ts) == ETIMEDOUT)
			break;
	got = (fk.events & bits) != 0;
	pthread_mutex_unlock(&fk.mu);
	return got;
}

static int fk_handshake(int k, int fd)
{
	uint8_t hello[1024], reply;
	size_t n = 0;
	int64_t deadline = t_now_ms() + 3000;

	/* one byte at a time, so that nothing after the NUL is taken from the script */
	while (n < sizeof(hello)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - t_now_ms());
		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			return -1;
		if (recv(fd, hello + n, 1, 0) != 1)
			return -1;
		if (hello[n++] == 0)
			break;
	}
	if (n < 2 || hello[n - 1] != 0)
		return -1;
	pthread_mutex_lock(&fk.mu);
	fk.hello_cap[k] = hello[n - 2];
	pthread_mutex_unlock(&fk.mu);
	reply = hello[n - 2] < 6 ? hello[n - 2] : 6;
	return t_send_all(fd, &reply, 1);
}

static void *fk_conn_main(void *arg)
{
	int k = (int)(intptr_t)arg;
	int fd = fk.fd[k];

	if (fk_handshake(k, fd) == 0)
		fk.script(k, fd);
	pthread_mutex_lock(&fk.mu);
	fk.fd[k] = -1;		/* fk_stop must not shut down a number reused meanwhile */
	pthread_mutex_unlock(&fk.mu);
	close(fd);
	return NULL;
}

static void *fk_accept_main(void *arg)
{
	(void)arg;
	/* runs until fk_stop; each pass waits at most 50 ms */
	while (!atomic_load(&fk.stop)) {
		struct pollfd pfd = { .fd = fk.lfd, .events = POLLIN };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept4(fk.lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&fk.mu);
		int k = fk.n_conns;
		if (k >= FK_MAX_CONNS || atomic_load(&fk.stop)) {
			pthread_mutex_unlock(&fk.mu);
			close(fd);
			continue;
		}
		fk.fd[k] = fd;
		if (pthread_create(&fk.th[k], NULL, fk_conn_main, (void *)(intptr_t)k) == 0) {
			fk.n_conns++;
		} else {
			fk.fd[k] = -1;
			close(fd);
		}
		pthread_mutex_unlock(&fk.mu);
	}
	return NULL;
}

static void fk_start(fk_script script)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	fk.script = script;
	fk.n_conns = 0;
	fk.events = 0;
	fk.rx_len = 0;
	atomic_store(&fk.stop, 0);
	for (int k = 0; k < FK_MAX_CONNS; k++) {
		fk.fd[k] = -1;
		fk.hello_cap[k] = -1;
	}
	fk.rx = malloc(FK_RX_CAP);
	cr_assert(fk.rx != NULL);
	fk.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fk.lfd >= 0, "socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s",
		  strerror(errno));
	cr_assert(listen(fk.lfd, 64) == 0);
	cr_assert(getsockname(fk.lfd, (struct sockaddr *)&sa, &len) == 0);
	fk.port = ntohs(sa.sin_port);
	cr_assert(pthread_create(&fk.acceptor, NULL, fk_accept_main, NULL) == 0);
	fk.is_running = true;
}

static void fk_stop(void)
{
	int n;

	if (!fk.is_running)
		return;
	fk.is_running = false;
	atomic_store(&fk.stop, 1);
	pthread_join(fk.acceptor, NULL);
	pthread_mutex_lock(&fk.mu);
	pthread_cond_broadcast(&fk.cv);
	for (int k = 0; k < fk.n_conns; k++)
		if (fk.fd[k] >= 0)
			shutdown(fk.fd[k], SHUT_RDWR);	/* wakes a script blocked in recv */
	n = fk.n_conns;
	pthread_mutex_unlock(&fk.mu);
	for (int k = 0; k < n; k++)
		pthread_join(fk.th[k], NULL);
	close(fk.lfd);
	fk.lfd = -1;
	free(fk.rx);
	fk.rx = NULL;
}

/* What an echoing backend answers: x for (`f;x), the message itself otherwise. */
static struct t_obj *echo_of(const struct t_obj *req)
{
	if (req->type == T_LIST && req->n == 2)
		return t_copy(req->items[1]);
	return t_copy(req);
}

/* The text of x in (`f;"x"), or "" (into a buffer of 64). */
static const char *token_of(const struct t_obj *req, char tok[64])
{
	tok[0] = '\0';
	if (req->type == T_LIST && req->n == 2 && req->items[1]->type == T_CHAR &&
	    req->items[1]->n < 64) {
		memcpy(tok, req->items[1]->data, req->items[1]->n);
		tok[req->items[1]->n] = '\0';
	}
	return tok;
}

/* Answer every sync message with echo_of it, until the connection or the fake stops. */
static void fk_echo_loop(int fd)
{
	/* bounded: each message waits at most 30 s, and fk_stop shuts the socket down */
	while (!atomic_load(&fk.stop)) {
		struct t_obj *req = NULL, *ans;
		int type = -1;
		if (t_q_recv(fd, 30000, &req, &type) < 0)
			return;
		if (type == T_SYNC) {
			ans = echo_of(req);
			if (!ans || t_q_send(fd, T_RESPONSE, ans) < 0) {
				t_free(ans);
				t_free(req);
				return;
			}
			t_free(ans);
		}
		t_free(req);
	}
}

static void fk_script_echo(int k, int fd)
{
	(void)k;
	fk_echo_loop(fd);
}

/* A pool "p" of one fake backend "fk" with conns connections and no health checks, plus
 * extra pool members (may be ""). */
static void fk_pool(char *out, size_t cap, int conns, const char *extra)
{
	snprintf(out, cap, "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"fk\","
		 "\"address\":\"127.0.0.1:%d\",\"connections\":%d,\"max_inflight\":%d}],"
		 "\"health\":{\"interval_ms\":0},"
		 "\"reconnect\":{\"delay_ms\":20,\"max_delay_ms\":200}%s}]", fk.port, conns, conns,
		 extra);
}

/* A pool "p" of mockq b1 with conns connections, plus extra pool members (may be ""). The
 * backend runs as many requests at once as it has connections: these tests are about
 * connections, and mockq answers deferred requests concurrently. */
static void b1_pool(char *out, size_t cap, int conns, const char *extra)
{
	snprintf(out, cap, "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\","
		 "\"address\":\"127.0.0.1:%d\",\"connections\":%d,\"max_inflight\":%d}]%s}]",
		 be[0]->port, conns, conns, extra);
}

/* ====================================================== 1. leaving mid-stream */

/*
 * A sync message above stream_threshold_bytes (2 MiB announced, 300 KiB sent) streams into an
 * idle pooled connection; its client then leaves. Baseline: the request is freed twice on
 * the way out (use-after-free) and the gateway dies.
 */
static void client_leaves_mid_stream(bool rst)
{
	char members[512];

	start_backend(0, NULL);
	b1_pool(members, sizeof(members), 2, "");
	start_gate(members);
	need_idle("b1", 2);
	int other = connect_gw();
	t_call_expect(other, t_call(".mock.echo", 1, t_str("before")), t_str("before"), 5000);

	int fd = connect_gw();
	send_partial(fd, T_SYNC, 2u << 20, 300u << 10);
	/* streaming has begun once the request holds a pooled connection */
	int64_t busy = wait_be_at_least("b1", "busy", 1, 5000);
	cr_assert_geq(busy, 1, "the large message never reached a backend connection");
	if (rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		cr_assert(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
	}
	close(fd);

	/* the gateway has handled the departure once only `other` is left (or it is dead) */
	int64_t deadline = t_now_ms() + 5000, clients = -1;
	while (t_now_ms() < deadline) {
		json_t *j = stats_try();
		if (!j)
			break;
		clients = json_integer_value(json_object_get(json_object_get(j, "gateway"),
							     "clients"));
		json_decref(j);
		if (clients == 1)
			break;
		poll(NULL, 0, 10);
	}
	/* a gateway that stopped answering may be dying: give it time to be reaped */
	if (clients != 1)
		t_proc_wait(gate, 2000);
	cr_assert(t_proc_alive(gate), "qgate died (wait status 0x%x) when a client left "
		  "mid-message with %s: %s", gate->status, rst ? "RST" : "FIN",
		  t_tail(gate->err_path, 1500));
	cr_assert_eq(clients, 1, "the departed client is still counted (%" PRId64 " clients)",
		     clients);
	t_call_expect(other, t_call(".mock.echo", 1, t_str("after")), t_str("after"), 5000);
	int again = connect_gw();
	t_call_expect(again, t_call(".mock.echo", 1, t_long(7)), t_long(7), 5000);
	close(again);
	close(other);
}

Test(onerule, client_leaving_mid_stream_with_fin_does_not_crash)
{
	client_leaves_mid_stream(false);
}

Test(onerule, client_leaving_mid_stream_with_rst_does_not_crash)
{
	client_leaves_mid_stream(true);
}

/* ====================================================== 2. two answers, one read */

/* Connection 0 answers the first request with its answer and "EVIL" in one write; after
 * that, and on every later connection, it echoes. */
static void script_two_answers(int k, int fd)
{
	if (k == 0) {
		struct t_obj *a = NULL;
		int type = -1;
		if (t_q_recv(fd, 10000, &a, &type) < 0)
			return;
		fk_signal(FK_GOT_A);
		if (fk_wait(FK_GO, 10000)) {
			struct t_obj *ans = echo_of(a), *evil = t_str("EVIL");
			uint8_t *m1 = NULL, *m2 = NULL, *both;
			size_t n1 = 0, n2 = 0;
			if (ans && evil && t_encode_msg(ans, T_RESPONSE, &m1, &n1) == 0 &&
			    t_encode_msg(evil, T_RESPONSE, &m2, &n2) == 0 &&
			    (both = malloc(n1 + n2)) != NULL) {
				memcpy(both, m1, n1);
				memcpy(both + n1, m2, n2);
				t_send_all(fd, both, n1 + n2);	/* one write: one read */
				free(both);
			}
			free(m1);
			free(m2);
			t_free(ans);
			t_free(evil);
		}
		t_free(a);
	}
	fk_echo_loop(fd);
}

Test(onerule, an_unowed_second_answer_in_the_same_read_reaches_nobody)
{
	char members[512];

	fk_start(script_two_answers);
	fk_pool(members, sizeof(members), 1, "");
	start_gate(members);
	need_idle("fk", 1);
	int a = connect_gw(), b = connect_gw();
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.echo", 1, t_str("A"))));
	cr_assert(fk_wait(FK_GOT_A, 5000), "the fake backend never got A's request");
	/* B's request waits in the queue behind A's (one connection) */
	T_OK(t_send_free(b, T_SYNC, t_call(".mock.echo", 1, t_str("B"))));
	int64_t queued = wait_pool_at_least("queued", 1, 5000);
	cr_assert_eq(queued, 1, "B's request never showed as queued");
	size_t log_from = t_file_size(gate->err_path);
	fk_signal(FK_GO);

	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(a, 5000, &r, &type));
	T_EXPECT_EQ(r, t_str("A"));
	t_free(r);
	r = NULL;
	T_OK(t_q_recv(b, 5000, &r, &type));
	cr_assert(!t_is_str(r, "EVIL"), "B received the answer nobody asked for (\"EVIL\"), "
		  "written by the backend in the same read as A's answer");
	cr_assert(t_is_str(r, "B") || t_is_err_prefix(r, "qgate: "),
		  "B got %s, want its own \"B\" or a qgate error", t_show(r));
	t_free(r);
	/* the connection that sent an answer nobody was owed is closed, with a log line */
	const char *needles[2] = { "backend=fk", "clos" };
	cr_assert_eq(t_wait_line_with(gate->err_path, log_from, 2, needles, 3000), 0,
		     "no log line about closing the connection to fk: %s",
		     t_tail(gate->err_path, 1500));
	/* and both clients are served afterwards */
	t_call_expect(b, t_call(".mock.echo", 1, t_str("B2")), t_str("B2"), 5000);
	t_call_expect(a, t_call(".mock.echo", 1, t_str("A2")), t_str("A2"), 5000);
	close(a);
	close(b);
}

/* ====================================================== 3. retry after a partial answer */

#define R2_LEN (1u << 20)
#define R2_CUT (200u << 10)

static uint8_t *r2_msg;		/* R2's whole answer as the fake writes it */
static atomic_int r2_seen;

/*
 * R1 is answered only once R2 has been sent again (or after 3 s); R2's first sending gets
 * the header and R2_CUT bytes of its 1 MiB answer, then its connection closes; R2 sent again
 * gets the whole answer. Everything else is echoed.
 */
static void script_partial_then_die(int k, int fd)
{
	(void)k;
	/* bounded: a handful of messages per connection in this test */
	for (int i = 0; i < 16 && !atomic_load(&fk.stop); i++) {
		struct t_obj *req = NULL, *ans;
		int type = -1;
		char tok[64];
		if (t_q_recv(fd, 30000, &req, &type) < 0)
			return;
		if (type != T_SYNC) {
			t_free(req);
			continue;
		}
		token_of(req, tok);
		if (strcmp(tok, "R2") == 0) {
			t_free(req);
			if (atomic_fetch_add(&r2_seen, 1) == 0) {
				t_send_all(fd, r2_msg, R2_CUT);
				return;		/* dies mid-answer */
			}
			fk_signal(FK_R2_AGAIN);
			if (t_send_all(fd, r2_msg, R2_LEN) < 0)
				return;
			continue;
		}
		if (strcmp(tok, "R1") == 0)
			fk_wait(FK_R2_AGAIN, 3000);
		ans = echo_of(req);
		t_free(req);
		if (!ans || t_q_send(fd, T_RESPONSE, ans) < 0) {
			t_free(ans);
			return;
		}
		t_free(ans);
	}
}

Test(onerule, idempotent_retry_after_a_partial_answer_keeps_the_framing)
{
	char members[512];

	r2_msg = char_msg(T_RESPONSE, R2_LEN);
	atomic_store(&r2_seen, 0);
	fk_start(script_partial_then_die);
	fk_pool(members, sizeof(members), 2, ",\"idempotent\":true");
	start_gate(members);
	need_idle("fk", 2);
	int fd = connect_gw();
	/* pipelined: R1 and R2 each take one of the two connections */
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_str("R1"))));
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_str("R2"))));

	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(fd, 10000, &r, &type));
	T_EXPECT_EQ(r, t_str("R1"));
	t_free(r);

	uint8_t *raw = NULL;
	size_t n = 0;
	int err = 0;
	T_OK(t_q_recv_raw(fd, 10000, &raw, &n));
	r = t_decode_msg(raw, n, &type, &err);
	cr_assert(r != NULL, "R2's answer (%zu bytes) does not decode (%d)", n, err);
	if (r->type != T_ERROR) {
		cr_assert(r->type == T_CHAR && r->n == R2_LEN - 14, "R2's answer is %s", t_show(r));
		size_t bad = 0;
		while (bad < n && raw[bad] == r2_msg[bad])
			bad++;
		cr_assert_eq(bad, n, "R2's answer differs from what the backend sent at byte %zu "
			     "of %zu: the retried answer was appended after the partial one "
			     "(the cut came at byte %u)", bad, n, R2_CUT);
	} else {
		cr_assert(t_is_err_prefix(r, "qgate: "), "R2 got %s", t_show(r));
	}
	t_free(r);
	free(raw);
	/* nothing of R2 is left over on the client's socket: the next answer is in step */
	t_call_expect(fd, t_call(".mock.echo", 1, t_str("after")), t_str("after"), 5000);
	close(fd);
	fk_stop();	/* its threads may still hold r2_msg */
	free(r2_msg);
}

/* ====================================================== 4. sessions, dead backend */

Test(onerule, session_clients_avoid_a_dead_backend)
{
	start_backend(0, NULL);
	int dead = T_OK(t_free_port());		/* nothing listens there */
	char members[512];
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"mode\":\"session\",\"strategy\":"
		 "\"least_outstanding\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\"},{\"name\":\"dead\",\"address\":\"127.0.0.1:%d\"}],"
		 "\"reconnect\":{\"delay_ms\":500}}]", be[0]->port, dead);
	start_gate(members);

	int fds[10], ok = 0;
	char why[256] = "";
	for (int i = 0; i < 10; i++) {
		fds[i] = t_q_connect("127.0.0.1", gw_port, "sess:x", NULL);
		if (fds[i] < 0) {
			if (!why[0])
				snprintf(why, sizeof(why), "client %d: %s", i, t_errmsg());
			continue;
		}
		struct t_obj *q = t_call0(".mock.id");
		struct t_obj *r = t_q_call(fds[i], q, 5000, NULL, NULL);
		t_free(q);
		if (r && r->type == -T_SYM && strcmp(r->s, "b1") == 0)
			ok++;
		else if (!why[0])
			snprintf(why, sizeof(why), "client %d: .mock.id[] gave %s", i,
				 r ? t_show(r) : t_errmsg());
		t_free(r);
	}
	for (int i = 0; i < 10; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	cr_assert_geq(ok, 9, "only %d of 10 session clients were served with one of two "
		      "backends down (first failure: %s)", ok, why);
}

/* ====================================================== 5. flow control */

/*
 * 5a: a client that reads normally sends two requests whose answers are 4.5 and 5 MB. The
 * first one takes a little longer (.mock.defer), so the second answer comes in first and
 * waits in its slot. Baseline counts those waiting bytes against the first answer's
 * backpressure, so neither backend connection is ever resumed: both answers stall for good.
 */
Test(onerule, two_large_answers_to_a_reading_client_do_not_stall, .timeout = 60.0)
{
	static const int64_t sizes[2] = { 4500000, 5000000 };
	char members[512];

	start_backend(0, NULL);
	b1_pool(members, sizeof(members), 2, "");
	start_gate(members);
	need_idle("b1", 2);
	/* a few fresh clients: one stall is enough to fail */
	for (int round = 0; round < 3; round++) {
		int fd = connect_gw();
		int64_t t0 = t_now_ms();
		T_OK(t_send_free(fd, T_SYNC, t_str(".mock.defer[200;.mock.bytes[4500000]]")));
		T_OK(t_send_free(fd, T_SYNC, t_call(".mock.bytes", 1, t_long(sizes[1]))));
		for (int i = 0; i < 2; i++) {
			struct t_obj *r = NULL;
			int type = -1;
			int left = (int)(t0 + 10000 - t_now_ms());
			int rc = t_q_recv(fd, left > 0 ? left : 1, &r, &type);
			cr_assert_eq(rc, 0, "round %d: answer %d (%" PRId64 " bytes) not complete "
				     "10 s after the requests: %s", round, i, sizes[i], t_errmsg());
			cr_assert(r->type == T_BYTE && (int64_t)r->n == sizes[i],
				  "round %d: answer %d is %s", round, i, t_show(r));
			const uint8_t *d = r->data;
			cr_assert(d[0] == 0 && d[255] == 255 && d[r->n - 1] == (r->n - 1) % 256,
				  "round %d: answer %d has the wrong bytes", round, i);
			t_free(r);
		}
		close(fd);
	}
}

/* The limits member 5b needs: the new client_output_timeout_ms (left out when
 * T_ONERULE_BASELINE is set, to run the scenario against a gateway without the key). */
static const char *output_timeout_member(void)
{
	const char *e = getenv("T_ONERULE_BASELINE");

	return e && *e && strcmp(e, "0") != 0 ? "" : ",\"client_output_timeout_ms\":1000";
}

/* Pipeline n requests for 16 MiB answers on a fresh client that will never read. */
static int never_reader(int n)
{
	int fd = connect_gw();

	for (int i = 0; i < n; i++)
		T_OK(t_send_free(fd, T_SYNC, t_call(".mock.bytes", 1, t_long(16 << 20))));
	return fd;
}

/* 5b: a client that never reads is disconnected; it cannot hold every backend connection. */
Test(onerule, a_client_that_never_reads_does_not_starve_the_others)
{
	char members[768];

	start_backend(0, NULL);
	snprintf(members, sizeof(members),
		 "\"limits\":{\"max_pipeline\":1024%s},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":2,\"max_inflight\":2}],\"queue\":{\"max\":1000,"
		 "\"timeout_ms\":20000}}]", output_timeout_member(), be[0]->port);
	start_gate(members);
	need_idle("b1", 2);
	int nr = never_reader(50);
	/* both connections carry its answers, and the rest of its requests wait in the queue */
	/* its answers hold both connections: the reader's queries wait behind them */
	cr_assert_eq(wait_be_eq("b1", "busy", 2, 5000), 2, "the never-reader's requests were "
		     "not both in flight");

	int rd = connect_gw();
	for (int i = 0; i < 10; i++) {
		struct t_obj *q = t_call(".mock.echo", 1, t_long(i));
		int64_t t0 = t_now_ms();
		struct t_obj *r = t_q_call(rd, q, 5000, NULL, NULL);
		t_free(q);
		cr_assert(r != NULL, "query %d of a reading client: %s (after %" PRId64 " ms) "
			  "while another client never reads its answers", i, t_errmsg(),
			  t_now_ms() - t0);
		cr_assert(r->type == -T_LONG && r->a.j == i, "query %d got %s", i, t_show(r));
		t_free(r);
	}
	close(rd);
	close(nr);
}

/*
 * 5c: once a never-reader closes its socket, its backend connections come back. Its first
 * request answers a little later than the others, so the second answer fills the client's
 * buffer first: the gateway stops reading the client with nothing left to send it, and
 * baseline never sees it leave.
 */
Test(onerule, a_never_reader_that_leaves_frees_its_backend_connections)
{
	char members[768];

	start_backend(0, NULL);
	b1_pool(members, sizeof(members), 2, ",\"queue\":{\"max\":1000,\"timeout_ms\":20000}");
	start_gate(members);
	need_idle("b1", 2);
	int nr = connect_gw();
	T_OK(t_send_free(nr, T_SYNC, t_str(".mock.defer[200;.mock.bytes[16777216]]")));
	for (int i = 1; i < 8; i++)
		T_OK(t_send_free(nr, T_SYNC, t_call(".mock.bytes", 1, t_long(16 << 20))));
	cr_assert_eq(wait_be_eq("b1", "busy", 2, 5000), 2, "the never-reader's requests were "
		     "not both in flight");
	/* answers have come in that it does not read */
	int64_t in = wait_be_at_least("b1", "bytes_in", 1 << 20, 5000);
	cr_assert_geq(in, 1 << 20, "only %" PRId64 " bytes of answers came in", in);
	/* the first answer has begun to reach the client (seen without reading it) */
	struct pollfd pfd = { .fd = nr, .events = POLLIN };
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "no byte of the first answer reached the client");
	be_stat("b1", "busy");	/* a round trip through the gateway's loop */
	close(nr);

	int64_t idle = wait_be_eq("b1", "idle", 2, 5000);
	cr_assert_eq(idle, 2, "5 s after the never-reader left, b1 has %" PRId64 " idle and %"
		     PRId64 " busy connections, want 2 idle", idle, be_stat("b1", "busy"));
	int rd = connect_gw();
	for (int i = 0; i < 5; i++)
		t_call_expect(rd, t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);
	close(rd);
}

/* ====================================================== 6. order of a client's messages */

/*
 * Both connections are busy (X long, Z short) and W waits in the queue. Y then writes, without
 * waiting: sync `.t.v:1`, async `.t.v:2`, sync `.t.v`. When Z's connection frees, W takes it;
 * baseline then sends Y's queued async at once to a busy connection, ahead of Y's own sync.
 */
Test(onerule, a_clients_async_does_not_overtake_its_queued_sync)
{
	char members[512];

	start_backend(0, NULL);
	b1_pool(members, sizeof(members), 2, "");
	start_gate(members);
	need_idle("b1", 2);
	int x = connect_gw(), z = connect_gw(), w = connect_gw(), y = connect_gw();
	/* Z's 2 s is the window for the steps up to Y's queued sync (room for a busy machine) */
	T_OK(t_send_free(x, T_SYNC, t_call(".mock.defer", 2, t_long(4000), t_sym("x"))));
	T_OK(t_send_free(z, T_SYNC, t_call(".mock.defer", 2, t_long(2000), t_sym("z"))));
	cr_assert_eq(wait_be_eq("b1", "busy", 2, 3000), 2, "X and Z never held both connections");
	T_OK(t_send_free(w, T_SYNC, t_call(".mock.defer", 2, t_long(300), t_sym("w"))));
	cr_assert_geq(wait_pool_at_least("queued", 1, 3000), 1, "W never queued");
	T_OK(t_send_free(y, T_SYNC, t_str(".t.v:1")));
	T_OK(t_send_free(y, T_ASYNC, t_str(".t.v:2")));
	T_OK(t_send_free(y, T_SYNC, t_str(".t.v")));
	cr_assert_geq(wait_pool_at_least("queued", 2, 3000), 2, "Y's first sync never queued");

	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(y, 8000, &r, &type));
	T_EXPECT_EQ(r, t_long(1));
	t_free(r);
	r = NULL;
	T_OK(t_q_recv(y, 8000, &r, &type));
	cr_assert(r->type == -T_LONG && r->a.j == 2, "Y read .t.v as %s after writing 1 (sync) "
		  "then 2 (async): the async overtook the queued sync", t_show(r));
	t_free(r);
	int fds[3] = { z, w, x };
	const char *want[3] = { "z", "w", "x" };
	for (int i = 0; i < 3; i++) {
		r = NULL;
		T_OK(t_q_recv(fds[i], 8000, &r, &type));
		T_EXPECT_EQ(r, t_sym(want[i]));
		t_free(r);
		close(fds[i]);
	}
	close(y);
}

/* ====================================================== 7. abandoned async upload */

Test(onerule, an_abandoned_async_upload_does_not_fail_another_client)
{
	char members[512];

	start_backend(0, NULL);
	b1_pool(members, sizeof(members), 1, "");
	start_gate(members);
	need_idle("b1", 1);
	int a = connect_gw();
	T_OK(t_send_free(a, T_SYNC, t_call(".mock.sleep", 1, t_long(600))));
	cr_assert_eq(wait_be_eq("b1", "busy", 1, 3000), 1, "A's request never went out");
	/* B: an async above the threshold, cut short by B leaving */
	int b = connect_gw();
	send_partial(b, T_ASYNC, 2u << 20, 400u << 10);
	close(b);

	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(a, 5000, &r, &type));
	cr_assert(r->type == -T_LONG && r->a.j == 600, "A's request got %s, want its own 600",
		  t_show(r));
	t_free(r);
	t_call_expect(a, t_call(".mock.echo", 1, t_str("again")), t_str("again"), 5000);
	close(a);
}

/* ====================================================== 8a. error reply mid-stream */

#define BIG_LEN (1u << 20)

/*
 * Records every byte on connection 0. Once 100 KiB of the client's message are in, it makes
 * a call into the client (a sync message); once the client's message is in (by its header's
 * length), it answers it with that length.
 */
static void script_ping_mid_stream(int k, int fd)
{
	uint8_t buf[65536];
	size_t total = 0;
	uint32_t want = 0;
	bool pinged = false, answered = false;

	if (k != 0) {
		fk_echo_loop(fd);
		return;
	}
	/* bounded: each read waits at most 10 s, and fk_stop shuts the socket down */
	while (!atomic_load(&fk.stop)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 10000) <= 0)
			return;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return;
		pthread_mutex_lock(&fk.mu);
		size_t room = FK_RX_CAP - fk.rx_len, take = (size_t)n < room ? (size_t)n : room;
		memcpy(fk.rx + fk.rx_len, buf, take);
		fk.rx_len += take;
		if (!want && fk.rx_len >= 8)
			want = get_le32(fk.rx + 4);
		pthread_mutex_unlock(&fk.mu);
		total += (size_t)n;
		if (!pinged && total >= (100u << 10)) {
			struct t_obj *ping = t_str("ping");
			if (ping)
				t_q_send(fd, T_SYNC, ping);
			t_free(ping);
			pinged = true;
			fk_signal(FK_PINGED);
		}
		if (!answered && want && total >= want) {
			struct t_obj *ans = t_long(want);
			if (ans)
				t_q_send(fd, T_RESPONSE, ans);
			t_free(ans);
			answered = true;
		}
	}
}

Test(onerule, an_error_reply_never_lands_inside_a_streaming_message)
{
	char members[512];

	fk_start(script_ping_mid_stream);
	fk_pool(members, sizeof(members), 1, "");
	start_gate(members);
	need_idle("fk", 1);
	int fd = connect_gw();
	uint8_t *msg = char_msg(T_SYNC, BIG_LEN);
	T_OK(t_send_all(fd, msg, 300u << 10));
	cr_assert(fk_wait(FK_PINGED, 5000), "the large message never streamed to the backend");
	/* the gateway has read the backend's call (and answered it, or will) */
	cr_assert_geq(wait_pool_at_least("dropped_unsolicited", 1, 5000), 1,
		      "the gateway never saw the backend's call");
	T_OK(t_send_all(fd, msg + (300u << 10), BIG_LEN - (300u << 10)));

	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(fd, 10000, &r, &type));
	cr_assert((r->type == -T_LONG && r->a.j == BIG_LEN) || t_is_err_prefix(r, "qgate: "),
		  "the client got %s, want %u or a qgate error", t_show(r), BIG_LEN);
	t_free(r);

	pthread_mutex_lock(&fk.mu);
	size_t got = fk.rx_len, upto = got < BIG_LEN ? got : BIG_LEN, bad = 0;
	while (bad < upto && fk.rx[bad] == msg[bad])
		bad++;
	/* after the client's message, only whole error responses may follow */
	bool tail_ok = true;
	for (size_t off = BIG_LEN; bad == upto && off + 8 <= got && tail_ok;) {
		uint32_t len = get_le32(fk.rx + off + 4);
		tail_ok = fk.rx[off] == 1 && fk.rx[off + 1] == T_RESPONSE && len > 9 &&
			  (off + len > got || fk.rx[off + 8] == 0x80);
		off += len > 8 ? len : 8;
	}
	pthread_mutex_unlock(&fk.mu);
	cr_assert_eq(bad, upto, "the backend received other bytes at offset %zu of the client's "
		     "%u-byte message (%zu bytes in all): something was written into the middle "
		     "of the streaming message", bad, BIG_LEN, got);
	cr_assert(tail_ok, "what followed the client's message is not a q error response");
	free(msg);
	close(fd);
}

/* ====================================================== 8b. session capability */

Test(onerule, a_session_backend_is_offered_no_more_than_the_client_negotiated)
{
	char members[512];

	fk_start(fk_script_echo);
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"mode\":\"session\",\"backends\":[{\"name\":\"fk\","
		 "\"address\":\"127.0.0.1:%d\"}]}]", fk.port);
	start_gate(members);
	int cap = -1;
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "three:x", &cap));	/* offers 3 */
	cr_assert_leq(cap, 3, "the gateway answered capability %d to a client offering 3", cap);
	t_call_expect(fd, t_call(".mock.echo", 1, t_str("cap")), t_str("cap"), 5000);
	pthread_mutex_lock(&fk.mu);
	int offered = fk.hello_cap[0];
	pthread_mutex_unlock(&fk.mu);
	cr_assert(offered >= 0 && offered <= 3, "the gateway offered the session backend "
		  "capability %d for a client that negotiated 3", offered);
	close(fd);
}

/* ====================================================== 8c. session dies mid-answer */

#define CUT_ANS_LEN 100000u
#define CUT_AT 30000u

static uint8_t *cut_ans;

/* Read both pipelined requests (so the close is a FIN), write part of the first answer,
 * and close. */
static void script_session_cut(int k, int fd)
{
	(void)k;
	for (int i = 0; i < 2; i++) {
		struct t_obj *req = NULL;
		int type = -1;
		if (t_q_recv(fd, 5000, &req, &type) < 0)
			return;
		t_free(req);
	}
	t_send_all(fd, cut_ans, CUT_AT);
}

Test(onerule, a_session_backend_dying_mid_answer_closes_the_client_without_an_error_after)
{
	char members[512];

	cut_ans = char_msg(T_RESPONSE, CUT_ANS_LEN);
	fk_start(script_session_cut);
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"mode\":\"session\",\"backends\":[{\"name\":\"fk\","
		 "\"address\":\"127.0.0.1:%d\"}]}]", fk.port);
	start_gate(members);
	int fd = connect_gw();
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_str("one"))));
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_str("two"))));

	size_t cap = 2 * CUT_ANS_LEN, n = 0, bad = 0;
	uint8_t *got = T_PTR(malloc(cap));
	bool closed = read_until_closed(fd, got, cap, &n, 5000);
	cr_assert(closed, "the client was not closed after its session backend died "
		  "(%zu bytes received)", n);
	while (bad < n && bad < CUT_ANS_LEN && got[bad] == cut_ans[bad])
		bad++;
	cr_assert(bad == n, "the client received %zu bytes, and byte %zu on is not the backend's "
		  "partial answer (%u bytes sent): something was appended to it (%02x %02x ...)",
		  n, bad, CUT_AT, got[bad], bad + 1 < n ? got[bad + 1] : 0);
	free(got);
	close(fd);
	fk_stop();	/* its threads may still hold cut_ans */
	free(cut_ans);
}

/* ====================================================== 8d. max_pipeline in one read */

Test(onerule, max_pipeline_holds_even_when_one_read_brings_more)
{
	char members[768];

	start_backend(0, NULL);
	snprintf(members, sizeof(members),
		 "\"limits\":{\"max_pipeline\":4},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],\"queue\":{\"max\":8}}]", be[0]->port);
	start_gate(members);
	need_idle("b1", 1);
	int fd = connect_gw();
	/* 20 small syncs in one write */
	uint8_t *all = NULL;
	size_t len = 0;
	for (int i = 0; i < 20; i++) {
		struct t_obj *q = t_call(".mock.echo", 1, t_long(i));
		size_t n = 0;
		uint8_t *m = encode(q, T_SYNC, &n);
		t_free(q);
		all = realloc(all, len + n);
		cr_assert(all != NULL);
		memcpy(all + len, m, n);
		len += n;
		free(m);
	}
	T_OK(t_send_all(fd, all, len));
	free(all);
	for (int i = 0; i < 20; i++) {
		struct t_obj *r = NULL;
		int type = -1;
		T_OK(t_q_recv(fd, 5000, &r, &type));
		cr_assert(r->type == -T_LONG && r->a.j == i, "answer %d of 20 sent in one write is "
			  "%s (max_pipeline 4, queue max 8)", i, t_show(r));
		t_free(r);
	}
	close(fd);
}

/* ====================================================== 8e. timeout_ms 0, no backend left */

Test(onerule, queued_requests_fail_once_reconnects_are_exhausted)
{
	char members[512];

	start_backend(0, NULL);
	b1_pool(members, sizeof(members), 1, ",\"queue\":{\"timeout_ms\":0},"
		"\"reconnect\":{\"attempts\":2,\"delay_ms\":200}");
	start_gate(members);
	need_idle("b1", 1);
	int fd = connect_gw();
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(1)), t_long(1), 5000);
	t_proc_kill(be[0]);
	/* the gateway has seen the loss and is reconnecting */
	cr_assert_eq(wait_be_eq("b1", "idle", 0, 3000), 0, "the gateway never saw b1 die");

	int64_t t0 = t_now_ms();
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_long(2))));
	struct t_obj *r = NULL;
	int type = -1;
	int rc = t_q_recv(fd, 5000, &r, &type);
	cr_assert_eq(rc, 0, "a request queued while b1 was being reconnected (2 attempts) got "
		     "no answer within 5 s: %s", t_errmsg());
	cr_assert(t_is_err_prefix(r, "qgate: "), "got %s after %" PRId64 " ms", t_show(r),
		  t_now_ms() - t0);
	t_free(r);
	close(fd);
}

/* ====================================================== 8f. reload past the slab */

Test(onerule, a_reload_that_adds_200_connections_gets_them_all)
{
	char members[1024];

	start_backend(0, NULL);
	start_backend(1, NULL);
	const char *small = "\"limits\":{\"max_clients\":8},\"pools\":[{\"name\":\"p\","
			    "\"dedicated\":{\"max\":1},\"backends\":[{\"name\":\"b1\","
			    "\"address\":\"127.0.0.1:%d\",\"connections\":1}%s]}]";
	char b2[160] = "";
	snprintf(members, sizeof(members), small, be[0]->port, b2);
	start_gate(members);
	need_idle("b1", 1);

	snprintf(b2, sizeof(b2), ",{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\","
		 "\"connections\":200}", be[1]->port);
	snprintf(members, sizeof(members), small, be[0]->port, b2);
	char *text = cfg_text(members);
	const char *tmp = T_PTR(t_write_file("gw.json.tmp", text));
	free(text);
	cr_assert(rename(tmp, cfg_path) == 0);	/* the gateway never reads half a file */
	T_OK(t_proc_signal(gate, SIGHUP));

	/* /stats itself needs a connection slot: a gateway out of slots may not answer */
	int64_t deadline = t_now_ms() + 10000, idle = -1;
	while (t_now_ms() < deadline && idle != 200) {
		json_t *j = stats_try();
		idle = j ? be_stat_in(j, "b2", "idle") : -2;
		json_decref(j);
		if (idle != 200)
			poll(NULL, 0, 20);
	}
	cr_assert_eq(idle, 200, "after the reload b2 has %" PRId64 " idle connections of 200 "
		     "(-2: /stats did not answer): %s", idle, t_tail(gate->err_path, 600));
	int fd = connect_gw();
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(3)), t_long(3), 5000);
	close(fd);
}

/* ====================================================== 8g. grace period over */

Test(onerule, requests_in_flight_when_the_grace_period_ends_get_a_qgate_error)
{
	char members[512];

	start_backend(0, NULL);
	snprintf(members, sizeof(members),
		 "\"limits\":{\"shutdown_grace_ms\":300},"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}]}]", be[0]->port);
	start_gate(members);
	need_idle("b1", 1);
	int fd = connect_gw();
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.sleep", 1, t_long(3000))));
	cr_assert_eq(wait_be_eq("b1", "busy", 1, 3000), 1, "the request never went out");
	T_OK(t_proc_signal(gate, SIGTERM));

	struct t_obj *r = NULL;
	int type = -1;
	int rc = t_q_recv(fd, 3000, &r, &type);
	cr_assert_eq(rc, 0, "no q error before the close when shutdown_grace_ms (300) ran out: "
		     "%s", t_errmsg());
	cr_assert(type == T_RESPONSE && t_is_err_prefix(r, "qgate: "), "got %s (type %d)",
		  t_show(r), type);
	t_free(r);
	T_OK(t_wait_closed(fd, 3000, NULL));
	T_OK(t_proc_wait(gate, 5000));
	close(fd);
}

/* ====================================================== 8h. pipeline is gone */

Test(onerule, check_refuses_the_removed_pipeline_option)
{
	char *out = NULL, *err = NULL, *text = NULL;

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:5999\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"pipeline\":4,\"backends\":[{\"name\":\"b1\",\"address\":"
			   "\"127.0.0.1:5998\"}]}]}") > 0);
	const char *path = T_PTR(t_write_file("check.json", text));
	free(text);
	char *const argv[] = { (char *)t_bin("QGATE_BIN"), "--check", "-c", (char *)path, NULL };
	int rc = t_run(argv, NULL, 30000, &out, &err);
	cr_assert(rc >= 0, "qgate --check: %s", t_errmsg());
	char *all = NULL;
	cr_assert(asprintf(&all, "%s%s", out ? out : "", err ? err : "") > 0);
	cr_assert(rc != 0, "a config with \"pipeline\": 4 was accepted: %s", all);
	cr_assert(strstr(all, "pipeline") && strstr(all, "dedicated"),
		  "the refusal does not name pipeline and point to dedicated: %s", all);
	free(all);
	free(out);
	free(err);
}


/* ====================================================== found by review */

/*
 * A client's oldest message waits in a pool with no backend up; its next one is for a healthy,
 * idle pool. When the first leaves its queue unsent (queue timeout), the second must go at
 * once. Before, nothing looked at the second pool again: with health checks off, the client's
 * next sync got 'qgate: queue timeout' from an idle pool.
 */
Test(onerule, a_message_behind_an_expired_one_in_another_pool_goes_at_once)
{
	char members[1024];
	int dead_port = T_OK(t_free_port());

	start_backend(0, NULL);
	snprintf(members, sizeof(members),
		 "\"rules\":[{\"prefix\":\"dead\",\"pool\":\"dead\"}],"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],\"health\":{\"interval_ms\":0},"
		 "\"queue\":{\"timeout_ms\":3000}},"
		 "{\"name\":\"dead\",\"backends\":[{\"name\":\"nobody\",\"address\":"
		 "\"127.0.0.1:%d\",\"connections\":1}],\"health\":{\"interval_ms\":0},"
		 "\"queue\":{\"timeout_ms\":300},\"reconnect\":{\"delay_ms\":5000}}]",
		 be[0]->port, dead_port);
	start_gate(members);
	need_idle("b1", 1);
	int fd = connect_gw();
	T_OK(t_send_free(fd, T_ASYNC, t_str("dead;1")));	/* waits in "dead", then expires */
	T_OK(t_send_free(fd, T_SYNC, t_str("2+2")));		/* behind it, for the idle pool */
	int64_t t0 = t_now_ms();
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(fd, 5000, &r, &type));
	int64_t took = t_now_ms() - t0;
	cr_assert(r->type == -T_LONG && r->a.j == 4, "the sync behind the expired async got %s",
		  t_show(r));
	cr_assert_lt(took, 2000, "the sync waited %" PRId64 " ms behind an async that expired "
		     "after 300 ms in another pool", took);
	t_free(r);
	close(fd);
}
