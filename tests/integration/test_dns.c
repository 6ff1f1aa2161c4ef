/*
 * test_dns — issue #9 item 3, "names never block the loop". A backend named by host name is
 * looked up off the event loop (c-ares on a resolver thread), again on each reconnect, with
 * the pool's reconnect backoff after a failed lookup, and rarely logged; `--check` warns on a
 * name that does not resolve but passes.
 *
 * A DNS stub runs as a thread of this test on 127.0.0.1 (UDP, an ephemeral port) and qgate is
 * pointed at it with resolver.servers. It answers:
 *   slow.qgate.test  after STUB_SLOW_MS (A: 127.0.0.1)
 *   fast.qgate.test  at once (A: the address the test sets, 127.0.0.1 at first)
 *   anything else    NXDOMAIN
 * (other query types of the two names: no data). It counts the A queries it gets per name.
 *
 * T_DNS_BASELINE=1 shows how a gateway without a resolver setting fails these tests: the
 * stub listens on 127.0.0.1:53 and the config has no "resolver" key, so a QGATE_BIN wrapper
 * that runs qgate in a mount namespace whose /etc/resolv.conf says "nameserver 127.0.0.1"
 * sends the system resolver (getaddrinfo) to the stub too (needs root).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

#define STUB_SLOW_MS 5000
#define STUB_MAX_DELAYED 16

struct delayed {
	int64_t due_ms;
	uint8_t msg[512];
	size_t len;
	struct sockaddr_in to;
};

static struct {
	int fd, port;
	pthread_t thread;
	bool is_running;
	volatile int stop;
	pthread_mutex_t mu;
	int n_slow, n_fast, n_nx;	/* A queries received, by name */
	int64_t slow_first_ms;		/* when the first query for slow.qgate.test came */
	int64_t nx_ms[64];		/* when each query for nx.qgate.test came */
	in_addr_t fast_addr;		/* network order */
	struct delayed delayed[STUB_MAX_DELAYED];
} stub = { .fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER };

/* qname of a query at q (after the 12-byte header) as dotted text; its length in bytes. */
static size_t read_qname(const uint8_t *m, size_t n, char *out, size_t cap)
{
	size_t i = 12, o = 0;

	while (i < n && m[i]) {
		size_t l = m[i++];
		if (l > 63 || i + l > n || o + l + 2 > cap)
			return 0;
		if (o)
			out[o++] = '.';
		memcpy(out + o, m + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return i < n ? i + 1 - 12 : 0;
}

/* The answer to query m (n bytes) into r; its length, 0: none. */
static size_t build_answer(const uint8_t *m, size_t n, uint8_t *r, size_t cap, int *which,
			   bool *is_a)
{
	char name[256];
	size_t ql = read_qname(m, n, name, sizeof(name));

	*which = 0;
	if (n < 12 || !ql || 12 + ql + 4 > n || 12 + ql + 4 + 16 > cap)
		return 0;
	uint16_t qtype = (uint16_t)(m[12 + ql] << 8 | m[12 + ql + 1]);
	*is_a = qtype == 1;
	size_t len = 12 + ql + 4;
	memcpy(r, m, len);
	r[2] = 0x81 | (m[2] & 0x01);	/* QR, RD copied */
	r[3] = 0x80;			/* RA, NOERROR */
	r[4] = 0, r[5] = 1;		/* one question */
	memset(r + 6, 0, 6);		/* no answers yet, no authority, no additional */
	in_addr_t a;
	if (strcasecmp(name, "slow.qgate.test") == 0) {
		*which = 1;
		a = htonl(INADDR_LOOPBACK);
	} else if (strcasecmp(name, "fast.qgate.test") == 0) {
		*which = 2;
		pthread_mutex_lock(&stub.mu);
		a = stub.fast_addr;
		pthread_mutex_unlock(&stub.mu);
	} else {
		*which = 3;
		r[3] = 0x83;		/* NXDOMAIN */
		return len;
	}
	if (!*is_a)
		return len;		/* the name exists, with no data of that type */
	r[7] = 1;
	const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4 };
	memcpy(r + len, rr, sizeof(rr));
	memcpy(r + len + sizeof(rr), &a, 4);
	return len + sizeof(rr) + 4;
}

static void *stub_thread(void *arg)
{
	(void)arg;
	while (!stub.stop) {
		struct pollfd p = { .fd = stub.fd, .events = POLLIN };
		int64_t now = t_now_ms();
		for (int i = 0; i < STUB_MAX_DELAYED; i++) {
			struct delayed *d = &stub.delayed[i];
			if (d->len && d->due_ms <= now) {
				sendto(stub.fd, d->msg, d->len, 0, (struct sockaddr *)&d->to,
				       sizeof(d->to));
				d->len = 0;
			}
		}
		if (poll(&p, 1, 20) <= 0)
			continue;
		uint8_t m[512], r[512];
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(stub.fd, m, sizeof(m), 0, (struct sockaddr *)&from, &fl);
		if (n <= 0)
			continue;
		int which;
		bool is_a = false;
		size_t rl = build_answer(m, (size_t)n, r, sizeof(r), &which, &is_a);
		if (!rl)
			continue;
		pthread_mutex_lock(&stub.mu);
		if (is_a && which == 1 && !stub.n_slow++)
			stub.slow_first_ms = t_now_ms();
		if (is_a && which == 2)
			stub.n_fast++;
		if (is_a && which == 3 && stub.n_nx < 64)
			stub.nx_ms[stub.n_nx++] = t_now_ms();
		pthread_mutex_unlock(&stub.mu);
		if (which != 1) {
			sendto(stub.fd, r, rl, 0, (struct sockaddr *)&from, fl);
			continue;
		}
		for (int i = 0; i < STUB_MAX_DELAYED; i++) {
			struct delayed *d = &stub.delayed[i];
			if (!d->len) {
				d->due_ms = t_now_ms() + STUB_SLOW_MS;
				memcpy(d->msg, r, rl);
				d->len = rl;
				d->to = from;
				break;
			}
		}
	}
	return NULL;
}

static int stub_count(int which)
{
	pthread_mutex_lock(&stub.mu);
	int n = which == 1 ? stub.n_slow : which == 2 ? stub.n_fast : stub.n_nx;
	pthread_mutex_unlock(&stub.mu);
	return n;
}

/* Wait until the stub got at least n A queries for name `which`; 0 or -ETIMEDOUT. */
static int stub_wait(int which, int n, int timeout_ms)
{
	int64_t end = t_now_ms() + timeout_ms;

	while (stub_count(which) < n) {
		if (t_now_ms() >= end)
			return -ETIMEDOUT;
		usleep(5000);
	}
	return 0;
}

static void stub_set_fast(const char *ip)
{
	pthread_mutex_lock(&stub.mu);
	stub.fast_addr = inet_addr(ip);
	pthread_mutex_unlock(&stub.mu);
}

static bool is_baseline(void)
{
	const char *v = getenv("T_DNS_BASELINE");

	return v && *v && strcmp(v, "0") != 0;
}

static void stub_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(is_baseline() ? 53 : 0) };
	socklen_t al = sizeof(a);

	memset(stub.delayed, 0, sizeof(stub.delayed));
	stub.n_slow = stub.n_fast = stub.n_nx = 0;
	stub.stop = 0;
	stub_set_fast("127.0.0.1");
	stub.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert(stub.fd >= 0, "socket: %s", strerror(errno));
	cr_assert(bind(stub.fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
	cr_assert(getsockname(stub.fd, (struct sockaddr *)&a, &al) == 0);
	stub.port = ntohs(a.sin_port);
	cr_assert(pthread_create(&stub.thread, NULL, stub_thread, NULL) == 0);
	stub.is_running = true;
}

static void stub_stop(void)
{
	if (stub.is_running) {
		stub.stop = 1;
		pthread_join(stub.thread, NULL);
		stub.is_running = false;
	}
	if (stub.fd >= 0)
		close(stub.fd);
	stub.fd = -1;
}

static struct t_proc *gate;
static int port_a, port_b, port_c, port_d, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
}

static void teardown(void)
{
	/* qgate first: it must stop cleanly (exit 0 on SIGTERM) with lookups in flight */
	if (gate && t_proc_alive(gate)) {
		t_proc_signal(gate, SIGTERM);
		int rc = t_proc_wait(gate, 10000);
		cr_expect(rc == 0 && WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
			  "qgate did not exit 0 on SIGTERM (status %d): %s", gate->status,
			  t_tail(gate->err_path, 800));
	}
	t_env_fini();
	stub_stop();
}

TestSuite(dns, .init = setup, .fini = teardown, .timeout = 60.0);

/* one pool "name" with one backend at addr, a listener on port */
static void pool_json(char *out, size_t n, const char *name, const char *addr, int port)
{
	snprintf(out, n,
		 "{\"name\": \"%s\", \"backends\": [{\"name\": \"%s\", \"address\": \"%s\", "
		 "\"connections\": 1}], \"health\": {\"interval_ms\": 0}, "
		 "\"queue\": {\"timeout_ms\": 500}, \"reconnect\": {\"delay_ms\": 200, "
		 "\"multiplier\": 2, \"jitter\": 0, \"max_delay_ms\": 5000, "
		 "\"connect_timeout_ms\": 1000}}", name, name, addr);
	(void)port;
}

/* qgate with pools a (numeric), b (slow name), c (fast name), d (no such name), one listener
 * each; the resolver is the stub. */
static void start_gate(int be_a, int be_b, int be_c)
{
	char pa[400], pb[400], pc[400], pd[400], addr[64], text[4096], resolver[128];

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	port_a = T_OK(t_free_port());
	port_b = T_OK(t_free_port());
	port_c = T_OK(t_free_port());
	port_d = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", be_a);
	pool_json(pa, sizeof(pa), "a", addr, port_a);
	snprintf(addr, sizeof(addr), "slow.qgate.test:%d", be_b);
	pool_json(pb, sizeof(pb), "b", addr, port_b);
	snprintf(addr, sizeof(addr), "fast.qgate.test:%d", be_c);
	pool_json(pc, sizeof(pc), "c", addr, port_c);
	pool_json(pd, sizeof(pd), "d", "nx.qgate.test:1", port_d);
	snprintf(resolver, sizeof(resolver), " \"resolver\": {\"servers\": [\"127.0.0.1:%d\"], "
		 "\"timeout_ms\": 10000, \"tries\": 1},\n", stub.port);
	if (is_baseline())
		resolver[0] = '\0';
	snprintf(text, sizeof(text),
		 "{\"listeners\": [{\"name\": \"la\", \"listen\": \"127.0.0.1:%d\", \"pool\": \"a\"},"
		 " {\"name\": \"lb\", \"listen\": \"127.0.0.1:%d\", \"pool\": \"b\"},"
		 " {\"name\": \"lc\", \"listen\": \"127.0.0.1:%d\", \"pool\": \"c\"},"
		 " {\"name\": \"ld\", \"listen\": \"127.0.0.1:%d\", \"pool\": \"d\"}],\n"
		 " \"pools\": [%s,\n %s,\n %s,\n %s],\n"
		 "%s"
		 " \"stats\": {\"listen\": \"127.0.0.1:%d\"},\n"
		 " \"log\": {\"level\": \"info\"}}\n",
		 port_a, port_b, port_c, port_d, pa, pb, pc, pd, resolver, stats_port);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("qgate.json", text));
	gate = t_qgate_start(path, port_a);
	cr_assert(gate != NULL, "%s", t_errmsg());
}

/* .mock.id[] through port: the backend's name, or NULL (error text in *err_text) */
static struct t_obj *ask_id(int port, int timeout_ms)
{
	int fd = t_q_connect("127.0.0.1", port, "u:x", NULL);
	if (fd < 0)
		return NULL;
	struct t_obj *r = t_q_eval(fd, ".mock.id[]", timeout_ms, NULL);
	close(fd);
	return r;
}

static int count_lines(const char *path, const char *needle)
{
	char *text = t_read_file(path);
	int n = 0;

	for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(text);
	return n;
}

static struct t_proc *mockq(const char *name)
{
	const char *const extra[] = { "--name", name, NULL };

	return T_PTR(t_mockq_start(name, extra));
}

/*
 * While pool b's backend name takes the resolver 5 s, pool a's clients see their usual
 * latency; then pool b's backend comes up and serves. Before the change qgate looked names up
 * with a blocking getaddrinfo on the loop: every client of every pool waited for it.
 */
Test(dns, slow_lookup_does_not_stall_other_pools)
{
	stub_start();
	struct t_proc *a = mockq("A"), *b = mockq("B"), *c = mockq("C");
	start_gate(a->port, b->port, c->port);
	cr_assert(stub_wait(1, 1, 5000) == 0, "the stub never got the query for slow.qgate.test");
	pthread_mutex_lock(&stub.mu);
	int64_t asked = stub.slow_first_ms;
	pthread_mutex_unlock(&stub.mu);

	int fd = T_OK(t_q_connect("127.0.0.1", port_a, "u:x", NULL));
	int64_t worst = 0;
	for (int i = 0; i < 20; i++) {
		int64_t t0 = t_now_ms();
		struct t_obj *r = t_q_call(fd, t_call(".mock.echo", 1, t_long(i)), 3000, NULL, NULL);
		int64_t dt = t_now_ms() - t0;
		cr_assert(r != NULL, "round trip %d through pool a failed: %s", i, t_errmsg());
		T_EXPECT_EQ(r, t_long(i));
		t_free(r);
		worst = dt > worst ? dt : worst;
	}
	close(fd);
	/* the stall this catches is the lookup's whole delay; 1 s leaves room for a busy machine */
	cr_assert_lt(worst, 1000, "a round trip of pool a took %lld ms while b's name was being "
		     "looked up", (long long)worst);
	cr_assert_lt(t_now_ms() - asked, STUB_SLOW_MS - 500, "pool a's 20 round trips ended %lld ms "
		     "after b's lookup began: they waited for it", (long long)(t_now_ms() - asked));

	/* the answer comes after 5 s: pool b's backend then comes up and serves */
	struct t_obj *r = NULL;
	int64_t end = t_now_ms() + STUB_SLOW_MS + 5000;
	while (t_now_ms() < end) {
		r = ask_id(port_b, 2000);
		if (r && !t_is_err_prefix(r, "qgate: "))
			break;
		t_free(r);
		r = NULL;
		usleep(100 * 1000);
	}
	cr_assert(r != NULL, "pool b never served after its lookup: %s",
		  t_tail(gate->err_path, 800));
	T_EXPECT_EQ(r, t_sym("B"));
	t_free(r);
	cr_assert_geq(t_now_ms() - asked, STUB_SLOW_MS - 1000, "b served before its name resolved");
}

/*
 * Pool c's backend is reached through fast.qgate.test. The name moves to 127.0.0.2 (a second
 * mockq on the same port there) and the first backend dies: the reconnect looks the name up
 * again and lands on the new address. Before the change the name was looked up by the system
 * resolver (never the stub) and no resolver could be configured.
 */
Test(dns, name_is_resolved_again_on_reconnect)
{
	stub_start();
	struct t_proc *a = mockq("A"), *b = mockq("B"), *c1 = mockq("C1");
	start_gate(a->port, b->port, c1->port);
	struct t_obj *r = NULL;
	int64_t end = t_now_ms() + 5000;
	while (t_now_ms() < end) {
		r = ask_id(port_c, 2000);
		if (r && !t_is_err_prefix(r, "qgate: "))
			break;
		t_free(r);
		r = NULL;
		usleep(50 * 1000);
	}
	cr_assert(r != NULL, "pool c never served: %s", t_tail(gate->err_path, 800));
	T_EXPECT_EQ(r, t_sym("C1"));
	t_free(r);
	int q0 = stub_count(2);
	cr_assert_geq(q0, 1);

	char port_s[16];
	snprintf(port_s, sizeof(port_s), "%d", c1->port);
	char *argv[] = { (char *)t_bin("MOCKQ_BIN"), "--port", port_s, "--host", "127.0.0.2",
			 "--name", "C2", NULL };
	struct t_proc *c2 = T_PTR(t_proc_start("C2", argv));
	T_OK(t_wait_accepting("127.0.0.2", c1->port, 5000, c2->pid));
	stub_set_fast("127.0.0.2");
	t_proc_kill(c1);

	end = t_now_ms() + 8000;
	r = NULL;
	while (t_now_ms() < end) {
		r = ask_id(port_c, 2000);
		if (r && t_equal(r, t_sym("C2")))
			break;
		t_free(r);
		r = NULL;
		usleep(100 * 1000);
	}
	cr_assert(r != NULL, "pool c never reached the name's new address: %s",
		  t_tail(gate->err_path, 800));
	t_free(r);
	cr_assert_gt(stub_count(2), q0, "no new lookup on reconnect");
}

/*
 * nx.qgate.test does not exist: pool d's clients get a q error, the name is looked up again
 * only as the reconnect backoff allows (200 ms, doubling, no jitter: the gaps between lookups
 * grow, and a handful happen in 4.5 s, not a tight loop), and the log says so less often than
 * it fails (the 1st, 2nd, 4th... failure). Before the change a failed lookup was retried every
 * second whatever the pool's reconnect said, with a log line each time.
 */
Test(dns, unresolvable_name_backs_off_and_logs_rarely)
{
	stub_start();
	struct t_proc *a = mockq("A"), *b = mockq("B"), *c = mockq("C");
	start_gate(a->port, b->port, c->port);
	cr_assert(stub_wait(3, 1, 8000) == 0, "the stub never got the query for nx.qgate.test");
	pthread_mutex_lock(&stub.mu);
	int64_t t0 = stub.nx_ms[0];
	pthread_mutex_unlock(&stub.mu);

	int fd = T_OK(t_q_connect("127.0.0.1", port_d, "u:x", NULL));
	struct t_obj *r = t_q_eval(fd, ".mock.id[]", 5000, NULL);
	close(fd);
	cr_assert(r != NULL, "no answer from pool d: %s", t_errmsg());
	cr_assert(t_is_err_prefix(r, "qgate: "), "pool d answered %s", t_show(r));
	t_free(r);

	int64_t left = 4500 - (t_now_ms() - t0);
	if (left > 0)
		usleep((useconds_t)left * 1000);
	pthread_mutex_lock(&stub.mu);
	int n = stub.n_nx;
	int64_t ts[64];
	memcpy(ts, stub.nx_ms, sizeof(ts));
	pthread_mutex_unlock(&stub.mu);
	cr_assert(n >= 3 && n <= 8, "%d lookups of nx.qgate.test in 4.5 s: not the reconnect "
		  "backoff", n);
	int64_t first_gap = ts[1] - ts[0], last_gap = ts[n - 1] - ts[n - 2];
	cr_assert_gt(last_gap, first_gap + 300, "the gaps between lookups do not grow (first %lld "
		     "ms, last %lld ms): not the pool's doubling backoff", (long long)first_gap,
		     (long long)last_gap);
	int lines = count_lines(gate->err_path, "cannot resolve");
	cr_assert(lines >= 1 && lines < n && lines <= 3, "%d log lines for %d failed lookups: %s",
		  lines, n, t_tail(gate->err_path, 1200));
	/* the other pools are untouched */
	r = ask_id(port_a, 2000);
	cr_assert(r != NULL);
	T_EXPECT_EQ(r, t_sym("A"));
	t_free(r);
}

/*
 * `qgate --check` on a config whose backend name does not resolve (the system resolver: a
 * name under .invalid never does) passes, with a warning naming the field. Before the change
 * --check never looked names up: "config OK" and no warning.
 */
Test(dns, check_warns_but_passes_on_an_unresolvable_name)
{
	const char *path = T_PTR(t_write_file("check.json",
		"{\"pools\": [{\"name\": \"p\", \"backends\": [{\"address\": \"127.0.0.1:5001\"}, "
		"{\"address\": \"db7.qgate.invalid:5001\"}]}]}\n"));
	char *argv[] = { (char *)t_bin("QGATE_BIN"), "--check", "-c", (char *)path, NULL };
	char *out = NULL, *err = NULL;
	int rc = t_run(argv, NULL, 30000, &out, &err);
	cr_assert_eq(rc, 0, "--check exited %d: %s%s", rc, out ? out : "", err ? err : "");
	cr_assert(err && strstr(err, "pools[0].backends[1].address: \"db7.qgate.invalid\" does not "
				"resolve"), "no warning naming the field: stdout=%s stderr=%s",
		  out ? out : "", err ? err : "");
	cr_assert(out && strstr(out, "config OK"), "stdout: %s", out ? out : "");
	free(out);
	free(err);
}
