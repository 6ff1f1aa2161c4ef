/*
 * test_deploy — docs/deployment.md, run as written: two qgate instances behind HAProxy with
 * the very file docs/examples/haproxy.cfg (only its ports swapped for free ones), and the
 * rolling restart the document describes (stop one instance, start it again, then the
 * other) under load. Every answer must be the asker's own, every connect through HAProxy
 * must succeed, and requests in flight when an instance is stopped are answered.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

#define N_CLIENTS 8

static struct t_proc *be[2];
static struct t_proc *gw[2];
static const char *gw_cfg[2];
static int gw_port[2];
static int stats_port[2];
static int lb_port;
static int fds[N_CLIENTS];
static int connects, connect_failures, reconnects;
static int64_t answered;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	for (int i = 0; i < N_CLIENTS; i++)
		fds[i] = -1;
	connects = connect_failures = reconnects = 0;
	answered = 0;
}

static void teardown(void)
{
	for (int i = 0; i < N_CLIENTS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	t_env_fini();
}

TestSuite(deploy, .init = setup, .fini = teardown, .timeout = 120.0);

/* Replace every occurrence of from in *text by to (the text is the caller's, reallocated). */
static void replace_all(char **text, const char *from, const char *to)
{
	char *p;
	int hits = 0;

	while ((p = strstr(*text, from)) != NULL) {
		char *next = NULL;
		cr_assert(asprintf(&next, "%.*s%s%s", (int)(p - *text), *text, to,
				   p + strlen(from)) > 0);
		free(*text);
		*text = next;
		hits++;
	}
	cr_assert(hits > 0, "docs/examples/haproxy.cfg no longer names %s", from);
}

static const char *haproxy_bin(void)
{
	if (access("/usr/sbin/haproxy", X_OK) == 0)
		return "/usr/sbin/haproxy";
	if (access("/usr/bin/haproxy", X_OK) == 0)
		return "/usr/bin/haproxy";
	cr_assert_fail("haproxy is not installed (scripts/install-deps.sh tools)");
	return NULL;
}

/* HAProxy with docs/examples/haproxy.cfg, its three ports replaced by free ones. */
static struct t_proc *start_haproxy(void)
{
	const char *src = getenv("QGATE_SRC");
	char path[512], port[32];

	cr_assert(src && *src, "QGATE_SRC (the source tree) is not set: run through meson test");
	snprintf(path, sizeof(path), "%s/docs/examples/haproxy.cfg", src);
	char *cfg = t_read_file(path);
	cr_assert(cfg != NULL, "%s: %s", path, t_errmsg());
	lb_port = T_OK(t_free_port());
	snprintf(port, sizeof(port), "127.0.0.1:%d", lb_port);
	replace_all(&cfg, "127.0.0.1:5000", port);
	for (int i = 0; i < 2; i++) {
		snprintf(port, sizeof(port), "127.0.0.1:%d", gw_port[i]);
		replace_all(&cfg, i == 0 ? "127.0.0.1:5050" : "127.0.0.1:5051", port);
	}
	const char *cpath = T_PTR(t_write_file("haproxy.cfg", cfg));
	free(cfg);

	char *argv[] = { (char *)haproxy_bin(), "-f", (char *)cpath, "-db", NULL };
	struct t_proc *h = T_PTR(t_proc_start("haproxy", argv));
	T_OK(t_wait_accepting("127.0.0.1", lb_port, 5000, h->pid));
	return h;
}

static void start_gateway(int i)
{
	gw[i] = t_qgate_start(gw_cfg[i], gw_port[i]);
	cr_assert(gw[i] != NULL, "%s", t_errmsg());
}

/* SIGTERM, as `systemctl stop` sends it; the instance must exit 0 within its grace period. */
static void stop_gateway(int i)
{
	T_OK(t_proc_signal(gw[i], SIGTERM));
	int rc = t_proc_wait(gw[i], 15000);
	cr_assert_eq(rc, 0, "qgate %d exited with %d: %s", i, rc, t_tail(gw[i]->err_path, 2000));
}

static void connect_client(int i)
{
	connects++;
	fds[i] = t_q_connect("127.0.0.1", lb_port, "deploy:x", NULL);
	if (fds[i] < 0)
		connect_failures++;
	cr_assert(fds[i] >= 0, "connect %d through HAProxy failed: %s", connects, t_errmsg());
}

/*
 * One echo on client i. A connection the stopping instance closed is opened again through
 * HAProxy and the echo sent again: the instance closes a client only when it owes it
 * nothing, so an unanswered echo never ran. Any answer must be this client's own.
 */
static void echo(int i, const char *tok)
{
	for (int attempt = 0; attempt < 4; attempt++) {
		if (fds[i] < 0) {
			connect_client(i);
			if (attempt > 0)
				reconnects++;
		}
		struct t_obj *req = t_call(".mock.echo", 1, t_str(tok));
		int err = 0;
		struct t_obj *r = t_q_call(fds[i], req, 10000, NULL, &err);
		t_free(req);
		if (r) {
			struct t_obj *want = t_str(tok);
			cr_assert(t_equal(r, want), "client %d asked for %s and got %s", i, tok,
				  t_show(r));
			t_free(want);
			t_free(r);
			answered++;
			return;
		}
		cr_assert(err == -ECONNRESET || err == -EPIPE, "client %d: %s (%d)", i, t_errmsg(),
			  err);
		close(fds[i]);
		fds[i] = -1;
	}
	cr_assert_fail("client %d: echo %s not answered after 4 connections", i, tok);
}

static void round_of_echoes(int round)
{
	for (int i = 0; i < N_CLIENTS; i++) {
		char tok[32];
		snprintf(tok, sizeof(tok), "c%d-r%d", i, round);
		echo(i, tok);
	}
}

/* requests the running instances have read, all pools */
static int64_t requests_seen(void)
{
	int64_t n = 0;
	for (int k = 0; k < 2; k++) {
		if (!gw[k] || !t_proc_alive(gw[k]))
			continue;
		int64_t v = t_stats_int(stats_port[k], "pools/0/requests");
		cr_assert_geq(v, 0, "qgate %d's /stats: %s", k, t_errmsg());
		n += v;
	}
	return n;
}

/*
 * Requests in flight when an instance stops: each client with a live connection sends a
 * deferred echo, the instance is told to stop, and every such request is answered with
 * its own value before the connection closes.
 */
static void stop_with_requests_in_flight(int k, int round)
{
	int sent[N_CLIENTS] = { 0 }, n_sent = 0;
	int64_t before = requests_seen();

	for (int i = 0; i < N_CLIENTS; i++) {
		char tok[32];
		snprintf(tok, sizeof(tok), "late%d-r%d", i, round);
		if (fds[i] < 0)
			continue;
		T_OK(t_send_free(fds[i], T_SYNC, t_call(".mock.defer", 2, t_long(200),
							   t_str(tok))));
		sent[i] = 1;
		n_sent++;
	}
	/* only a request the instance has read is in flight: one still in HAProxy or in a
	 * socket buffer when the stop comes finds an idle connection, which is closed (that
	 * request never ran; echo() covers that race) */
	int64_t deadline = t_now_ms() + 10000;
	while (requests_seen() < before + n_sent && t_now_ms() < deadline)
		poll(NULL, 0, 5);
	cr_assert_geq(requests_seen(), before + n_sent, "the gateways did not read the %d "
		      "deferred requests", n_sent);
	T_OK(t_proc_signal(gw[k], SIGTERM));
	for (int i = 0; i < N_CLIENTS; i++) {
		if (!sent[i])
			continue;
		struct t_obj *r = NULL;
		int type = -1;
		char tok[32];
		snprintf(tok, sizeof(tok), "late%d-r%d", i, round);
		T_OK(t_q_recv(fds[i], 10000, &r, &type));
		struct t_obj *want = t_str(tok);
		cr_assert(t_equal(r, want), "client %d waited for %s and got %s", i, tok, t_show(r));
		t_free(want);
		t_free(r);
		answered++;
	}
	int rc = t_proc_wait(gw[k], 15000);
	cr_assert_eq(rc, 0, "qgate %d exited with %d", k, rc);
}

Test(deploy, rolling_restart_behind_the_documented_haproxy, .timeout = 120.0)
{
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	for (int k = 0; k < 2; k++) {
		char name[8];
		snprintf(name, sizeof(name), "b%d", k + 1);
		be[k] = T_PTR(t_mockq_start(name, NULL));
	}
	/* two instances with one configuration but their own ports, as on one host */
	for (int i = 0; i < 2; i++) {
		char *text = NULL, name[16];
		gw_port[i] = T_OK(t_free_port());
		stats_port[i] = T_OK(t_free_port());
		cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":"
				   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
				   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\"},"
				   "{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\"}]}],"
				   "\"stats\":{\"listen\":\"127.0.0.1:%d\"}}", gw_port[i],
				   be[0]->port, be[1]->port, stats_port[i]) > 0);
		snprintf(name, sizeof(name), "gw%d.json", i);
		gw_cfg[i] = T_PTR(t_write_file(name, text));
		free(text);
		start_gateway(i);
	}
	struct t_proc *h = start_haproxy();
	(void)h;

	int round = 0;
	for (int i = 0; i < N_CLIENTS; i++)
		connect_client(i);
	for (; round < 10; round++)
		round_of_echoes(round);
	/* leastconn spread the clients: both instances are serving */
	int64_t base[2];
	for (int k = 0; k < 2; k++) {
		int fd = T_OK(t_q_connect("127.0.0.1", be[k]->port, "direct:pw", NULL));
		struct t_obj *r = t_call_ok(fd, t_call0(".mock.count"), 5000);
		base[k] = r->a.j;
		t_free(r);
		close(fd);
	}
	cr_assert(base[0] > 10 && base[1] > 10, "backends saw %" PRId64 " and %" PRId64,
		  base[0], base[1]);

	/* the procedure: stop a (its clients' requests in flight are answered), start it,
	 * then the same for b; clients reconnect through HAProxy and never miss */
	for (int k = 0; k < 2; k++) {
		stop_with_requests_in_flight(k, round);
		for (int n = 0; n < 5; n++, round++)
			round_of_echoes(round);
		start_gateway(k);
		for (int n = 0; n < 5; n++, round++)
			round_of_echoes(round);
	}
	/* a plain stop with nothing in flight, and back */
	stop_gateway(0);
	for (int n = 0; n < 3; n++, round++)
		round_of_echoes(round);
	start_gateway(0);
	for (int n = 0; n < 3; n++, round++)
		round_of_echoes(round);

	cr_assert_eq(connect_failures, 0);
	cr_assert(reconnects >= N_CLIENTS / 2, "only %d reconnects: were instances stopped?",
		  reconnects);
	cr_assert(answered >= (int64_t)round * N_CLIENTS, "answered %" PRId64 " of %d", answered,
		  round * N_CLIENTS);
	fprintf(stderr, "deploy: %d rounds, %" PRId64 " answers, %d connects, %d reconnects\n",
		round, answered, connects, reconnects);
}
