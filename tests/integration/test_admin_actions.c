/*
 * test_admin_actions — issue #10 item 6, with real qgate and mockq processes on loopback:
 * the admin actions over q (.qgate.pause/resume/disable/enable/kill/reload) and over HTTP
 * (POST /admin/... on the stats port, behind stats.token), and the attempts to break them:
 * requests held by a pause are answered in order to the right clients after the resume, a
 * pause meets the queue timeout, a disable drains what runs and sends nothing new, a killed
 * client's answer goes to nobody, wrong users, arguments, tokens and names are refused, the
 * state survives a reload, a broken reload keeps the old configuration, and with two workers
 * a pause issued on one worker holds the clients of the other.
 *
 * What each client got is checked against what it sent (mockq echoes it back), and which
 * backend served a request is read from mockq's own name (.mock.id[]).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

#define TOKEN "s3cret-token"

static struct t_proc *b1, *b2, *gate;
static int gw_port, stats_port;
static const char *cfg_path;
static char audit_path[512];

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = b1 = b2 = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(admin_actions, .init = setup, .fini = teardown, .timeout = 60.0);

struct opts {
	int workers;
	bool has_token;
	int queue_timeout_ms;	/* pool p */
	bool has_other;		/* pool `odd "pool"` (b1 again, and a backend named "p.b1") */
	bool no_b2;		/* pool p without its backend b2 */
	int grace_ms;		/* limits.shutdown_grace_ms (0: the default) */
	int extra_port;		/* a second listener "extra" on this port (0: none) */
};

/*
 * The configuration: listener main -> pool p (backends b1, b2, one connection each, no
 * health checks), stats (with TOKEN when has_token), users ops (admin) and dev, an audit
 * log, debug log lines (which worker took a client).
 */
static char *gate_json(const struct opts *o)
{
	char *hash = T_PTR(t_hash_password("secret"));
	char other[512] = "", tok[64] = "", *text = NULL, b2j[160] = "", lim[80] = "";
	char extra[160] = "";

	if (o->has_other)
		snprintf(other, sizeof(other), ",{\"name\":\"odd \\\"pool\\\"\",\"health\":"
			 "{\"interval_ms\":0},\"backends\":[{\"name\":\"b1\",\"address\":"
			 "\"127.0.0.1:%d\",\"connections\":1},{\"name\":\"p.b1\",\"address\":"
			 "\"127.0.0.1:%d\",\"connections\":1}]}", b1->port, b2->port);
	if (o->has_token)
		snprintf(tok, sizeof(tok), ",\"token\":\"%s\"", TOKEN);
	if (!o->no_b2)
		snprintf(b2j, sizeof(b2j), ",{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\","
			 "\"connections\":1}", b2->port);
	if (o->grace_ms)
		snprintf(lim, sizeof(lim), "\"limits\":{\"shutdown_grace_ms\":%d},", o->grace_ms);
	if (o->extra_port)
		snprintf(extra, sizeof(extra), ",{\"name\":\"extra\",\"listen\":\"127.0.0.1:%d\","
			 "\"pool\":\"p\"}", o->extra_port);
	snprintf(audit_path, sizeof(audit_path), "%s/audit.log", t_env_dir());
	cr_assert(asprintf(&text,
			   "{%s\"workers\":%d,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}%s],\"stats\":{\"listen\":\"127.0.0.1:%d\"%s},"
			   "\"auth\":{\"users\":[{\"name\":\"ops\",\"password_hash\":\"%s\","
			   "\"admin\":true},{\"name\":\"dev\",\"password_hash\":\"%s\"}]},"
			   "\"pools\":[{\"name\":\"p\",\"health\":{\"interval_ms\":0},"
			   "\"queue\":{\"timeout_ms\":%d},\"backends\":["
			   "{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\",\"connections\":1}%s]}%s],"
			   "\"log\":{\"level\":\"debug\",\"audit_file\":\"%s\"}}",
			   lim, o->workers, gw_port, extra, stats_port, tok, hash, hash,
			   o->queue_timeout_ms, b1->port, b2j, other, audit_path) > 0);
	free(hash);
	T_OK(t_json_check(text));
	return text;
}

static void start(const struct opts *o)
{
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	b1 = T_PTR(t_mockq_start("b1", NULL));
	b2 = T_PTR(t_mockq_start("b2", NULL));
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	char *text = gate_json(o);
	cfg_path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = T_PTR(t_qgate_start(cfg_path, gw_port));
	T_OK(t_wait_accepting("127.0.0.1", stats_port, 5000, gate->pid));
}

/* a clean stop (under ASan this also checks for leaks: the admin table, posted kills) */
static void stop_clean(void)
{
	cr_assert(t_proc_alive(gate), "qgate died: %s", t_tail(gate->err_path, 800));
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d: %s", gate->status, t_tail(gate->err_path, 1500));
}

static int ops_connect(void)
{
	return T_OK(t_q_connect("127.0.0.1", gw_port, "ops:secret", NULL));
}

static int dev_connect(void)
{
	return T_OK(t_q_connect("127.0.0.1", gw_port, "dev:secret", NULL));
}

/* an admin call that must answer the symbol want */
static void act_ok(int fd, struct t_obj *req, const char *want)
{
	t_call_expect(fd, req, t_sym(want), 5000);
}

/* an admin call that must fail with a q error beginning prefix */
static void act_err(int fd, struct t_obj *req, const char *prefix)
{
	char rq[256];

	t_fmt(req, rq, sizeof(rq));
	struct t_obj *r = t_call_ok(fd, req, 5000);
	cr_assert(t_is_err_prefix(r, prefix), "%s gave %s, want an error '%s", rq, t_show(r),
		  prefix);
	t_free(r);
}

/* fd has nothing to read for ms milliseconds (its request is held, not answered or failed) */
static void quiet_for(int fd, int ms, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	cr_assert_eq(poll(&p, 1, ms), 0, "%s: something arrived (revents %#x)", what, p.revents);
}

/* ---------------------------------------------------------------- HTTP */

/* method path on the stats port with the bearer token (NULL: none) and extra raw bytes after
 * the head (a body, or NULL); the status, and the body in *body (malloc'd). */
static int http_raw(const char *req, size_t n, char **body);

static int http(const char *method, const char *path, const char *token, const char *extra,
		char **body)
{
	char req[4096];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n%s%s%s%s\r\n%s", method,
			 path, token ? "Authorization: Bearer " : "", token ? token : "",
			 token ? "\r\n" : "", extra ? "Content-Type: text/plain\r\n" : "",
			 extra ? extra : "");
	cr_assert(n > 0 && (size_t)n < sizeof(req));
	return http_raw(req, (size_t)n, body);
}

/* req[0..n) as it is on a new stats connection: the status, the body in *body */
static int http_raw(const char *req, size_t n, char **body)
{
	const char *method = "?", *path = req;
	int fd = T_OK(t_tcp_connect("127.0.0.1", stats_port, 3000));

	T_OK(t_send_all(fd, req, n));
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	cr_assert(buf != NULL);
	int64_t deadline = t_now_ms() + 5000;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - t_now_ms());
		cr_assert(left > 0 && poll(&p, 1, left) == 1, "%s %.60s: no answer", method, path);
		if (len + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf != NULL);
		}
		ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = '\0';
	int status = 0;
	cr_assert(sscanf(buf, "HTTP/1.1 %d", &status) == 1, "%s %.60s: bad answer %.200s", method,
		  path, buf);
	char *b = strstr(buf, "\r\n\r\n");
	*body = strdup(b ? b + 4 : "");
	free(buf);
	return status;
}

static int post(const char *path, const char *token, char **body)
{
	return http("POST", path, token, NULL, body);
}

/* /stats as JSON (with the token when the gateway has one) */
static json_t *stats(bool has_token)
{
	char *body;
	json_error_t e;

	cr_assert_eq(http("GET", "/stats", has_token ? TOKEN : NULL, NULL, &body), 200);
	json_t *j = json_loads(body, 0, &e);
	cr_assert(j != NULL, "bad /stats JSON (%s): %.200s", e.text, body);
	free(body);
	return j;
}

static json_t *pool_of(json_t *st, const char *name)
{
	size_t i;
	json_t *p;

	json_array_foreach(json_object_get(st, "pools"), i, p)
		if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0)
			return p;
	cr_assert(false, "no pool %s in /stats", name);
	return NULL;
}

static json_t *backend_of(json_t *st, const char *pool, const char *name)
{
	size_t i;
	json_t *b;

	json_array_foreach(json_object_get(pool_of(st, pool), "backends"), i, b)
		if (strcmp(json_string_value(json_object_get(b, "name")), name) == 0)
			return b;
	cr_assert(false, "no backend %s of %s in /stats", name, pool);
	return NULL;
}

static bool is_paused(bool has_token, const char *pool)
{
	json_t *st = stats(has_token);
	bool v = json_is_true(json_object_get(pool_of(st, pool), "paused"));

	json_decref(st);
	return v;
}

/* /metrics has this exact line (with the token when the gateway has one) */
static void metric_is(bool has_token, const char *line)
{
	char *body, want[512];

	cr_assert_eq(http("GET", "/metrics", has_token ? TOKEN : NULL, NULL, &body), 200);
	snprintf(want, sizeof(want), "\n%s\n", line);
	cr_assert(strstr(body, want) != NULL, "/metrics has no line %s", line);
	free(body);
}

/* backend's state string in /stats, copied into out */
static void be_state(bool has_token, const char *pool, const char *be, char *out, size_t n,
		     bool *is_disabled)
{
	json_t *st = stats(has_token), *b = backend_of(st, pool, be);

	snprintf(out, n, "%s", json_string_value(json_object_get(b, "state")));
	*is_disabled = json_is_true(json_object_get(b, "disabled"));
	json_decref(st);
}

/* wait (bounded) until pool's queued figure in /stats is want */
static void wait_queued(bool has_token, const char *pool, int64_t want)
{
	int64_t deadline = t_now_ms() + 3000, got = -1;

	while (t_now_ms() < deadline) {
		json_t *st = stats(has_token);
		got = json_integer_value(json_object_get(pool_of(st, pool), "queued"));
		json_decref(st);
		if (got == want)
			return;
		poll(NULL, 0, 30);
	}
	cr_assert(false, "pool %s: %" PRId64 " queued, want %" PRId64, pool, got, want);
}

/* ------------------------------------------------------- admin tables */

static const struct t_obj *column(const struct t_obj *r, const char *name)
{
	cr_assert(r->type == T_TABLE, "not a table: %s", t_show(r));
	const struct t_obj *d = r->items[0], *keys = d->items[0], *vals = d->items[1];

	for (uint64_t k = 0; k < keys->n; k++)
		if (strcmp(keys->syms[k], name) == 0)
			return vals->items[k];
	cr_assert(false, "table has no column %s: %s", name, t_show(r));
	return NULL;
}

/* fd's own address as the gateway shows a client's peer: "127.0.0.1:PORT" */
static void local_peer(int fd, char *out, size_t n)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	T_OK(getsockname(fd, (struct sockaddr *)&a, &len));
	snprintf(out, n, "127.0.0.1:%u", ntohs(a.sin_port));
}

/* The id and worker of the client whose socket is fd, from .qgate.clients[] asked on ops
 * (other workers' rows come from snapshots: poll, bounded). */
static int64_t client_id(int ops, int fd, int64_t *worker)
{
	char peer[64];
	int64_t deadline = t_now_ms() + 3000;

	local_peer(fd, peer, sizeof(peer));
	while (t_now_ms() < deadline) {
		struct t_obj *t = t_call_ok(ops, t_str(".qgate.clients[]"), 5000);
		const struct t_obj *peers = column(t, "peer"), *ids = column(t, "id");
		const struct t_obj *ws = column(t, "worker");
		for (uint64_t i = 0; i < peers->n; i++) {
			if (strcmp(peers->syms[i], peer) == 0) {
				int64_t id = ((const int64_t *)ids->data)[i];
				if (worker)
					*worker = ((const int64_t *)ws->data)[i];
				t_free(t);
				return id;
			}
		}
		t_free(t);
		poll(NULL, 0, 50);
	}
	cr_assert(false, "client %s not in .qgate.clients[]", peer);
	return -1;
}

/* ---------------------------------------------------------------- pause */

#define N_CLIENTS 4
#define PER_CLIENT 3

/* Pause over q: requests of several clients wait (neither answered nor failed) while the pool
 * is paused, then each client gets its own answers, in the order it sent them. Repeated
 * pause and resume are idempotent. */
Test(admin_actions, q_pause_holds_then_resume_answers_in_order)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 0 });
	int ops = ops_connect(), fds[N_CLIENTS];

	for (int i = 0; i < N_CLIENTS; i++)
		fds[i] = dev_connect();
	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");	/* idempotent */
	cr_assert(is_paused(false, "p"));
	metric_is(false, "qgate_pool_paused{pool=\"p\"} 1");
	for (int k = 0; k < PER_CLIENT; k++)
		for (int i = 0; i < N_CLIENTS; i++)
			T_OK(t_send_free(fds[i], T_SYNC, t_call(".mock.echo", 1,
								 t_long(i * 100 + k))));
	wait_queued(false, "p", N_CLIENTS * PER_CLIENT);
	for (int i = 0; i < N_CLIENTS; i++)
		quiet_for(fds[i], i == 0 ? 300 : 10, "paused pool");
	/* the admin table says so too */
	struct t_obj *t = t_call_ok(ops, t_str(".qgate.pools[]"), 5000);
	const struct t_obj *pc = column(t, "paused");
	cr_assert(pc->type == T_BOOL && ((const uint8_t *)pc->data)[0] == 1, "paused column %s",
		  t_show(pc));
	t_free(t);
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");
	for (int k = 0; k < PER_CLIENT; k++) {
		for (int i = 0; i < N_CLIENTS; i++) {
			struct t_obj *r = NULL;
			int type = -1;
			T_OK(t_q_recv(fds[i], 5000, &r, &type));
			cr_assert(r->type == -T_LONG && r->a.j == i * 100 + k,
				  "client %d answer %d: %s, want %d", i, k, t_show(r), i * 100 + k);
			t_free(r);
		}
	}
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");	/* idempotent */
	cr_assert_not(is_paused(false, "p"));
	t_call_expect(fds[0], t_call(".mock.echo", 1, t_long(7)), t_long(7), 5000);
	for (int i = 0; i < N_CLIENTS; i++)
		close(fds[i]);
	close(ops);
}

/* A long pause meets queue.timeout_ms: the held request gets the usual queue timeout. */
Test(admin_actions, pause_with_queue_timeout_times_out)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 300 });
	int ops = ops_connect(), dev = dev_connect();

	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	int64_t t0 = t_now_ms();
	struct t_obj *r = t_call_ok(dev, t_call(".mock.echo", 1, t_long(1)), 5000);
	int64_t took = t_now_ms() - t0;
	cr_assert(t_is_err_prefix(r, "qgate: queue timeout"), "got %s", t_show(r));
	cr_assert(took >= 250 && took < 3000, "timed out after %" PRId64 " ms", took);
	t_free(r);
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");
	t_call_expect(dev, t_call(".mock.echo", 1, t_long(2)), t_long(2), 5000);
	close(dev);
	close(ops);
}

/* ---------------------------------------------------------------- disable */

/* Which backend served a sync .mock.id[] on fd */
static void served_by(int fd, char *out, size_t n)
{
	struct t_obj *r = t_call_ok(fd, t_call0(".mock.id"), 5000);

	cr_assert(r->type == -T_SYM, ".mock.id gave %s", t_show(r));
	snprintf(out, n, "%s", r->s);
	t_free(r);
}

/* Disable a backend while a long request runs on it: that request finishes and gets its
 * answer, new requests all go to the other backend, /stats shows draining then disabled. */
Test(admin_actions, disable_drains_in_flight_and_sends_nothing_new)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000 });
	int ops = ops_connect(), a = dev_connect(), b = dev_connect();

	T_OK(t_send_free(a, T_SYNC, t_call(".mock.defer", 2, t_long(1500), t_sym("long"))));
	/* which backend runs it: the one with a request outstanding */
	const char *busy = NULL;
	int64_t deadline = t_now_ms() + 3000;
	while (!busy && t_now_ms() < deadline) {
		json_t *st = stats(false);
		if (json_integer_value(json_object_get(backend_of(st, "p", "b1"), "outstanding")))
			busy = "b1";
		else if (json_integer_value(json_object_get(backend_of(st, "p", "b2"),
							    "outstanding")))
			busy = "b2";
		json_decref(st);
		if (!busy)
			poll(NULL, 0, 20);
	}
	cr_assert(busy != NULL, "the deferred request is not outstanding anywhere");
	const char *other = strcmp(busy, "b1") == 0 ? "b2" : "b1";
	char call[64], state[32];
	bool is_dis;
	snprintf(call, sizeof(call), ".qgate.disable[`%s]", busy);
	act_ok(ops, t_str(call), "disabled");
	be_state(false, "p", busy, state, sizeof(state), &is_dis);
	cr_assert(strcmp(state, "draining") == 0 && is_dis, "%s: state %s disabled %d", busy,
		  state, is_dis);
	char line[160];
	snprintf(line, sizeof(line), "qgate_backend_disabled{pool=\"p\",backend=\"%s\"} 1", busy);
	metric_is(false, line);
	snprintf(line, sizeof(line), "qgate_backend_state{pool=\"p\",backend=\"%s\","
		 "state=\"draining\"} 1", busy);
	metric_is(false, line);
	snprintf(line, sizeof(line), "qgate_backend_disabled{pool=\"p\",backend=\"%s\"} 0", other);
	metric_is(false, line);
	for (int i = 0; i < 6; i++) {
		char who[32];
		served_by(b, who, sizeof(who));
		cr_assert(strcmp(who, other) == 0, "request %d went to %s (disabled %s)", i, who,
			  busy);
	}
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(a, 5000, &r, &type));
	cr_assert(r->type == -T_SYM && strcmp(r->s, "long") == 0, "in-flight answer %s",
		  t_show(r));
	t_free(r);
	be_state(false, "p", busy, state, sizeof(state), &is_dis);
	cr_assert(strcmp(state, "disabled") == 0 && is_dis, "after: state %s", state);
	snprintf(line, sizeof(line), "qgate_backend_state{pool=\"p\",backend=\"%s\","
		 "state=\"disabled\"} 1", busy);
	metric_is(false, line);
	snprintf(line, sizeof(line), "qgate_backend_up{pool=\"p\",backend=\"%s\"} 0", busy);
	metric_is(false, line);
	/* the admin table shows it */
	struct t_obj *t = t_call_ok(ops, t_str(".qgate.backends[]"), 5000);
	const struct t_obj *names = column(t, "backend"), *states = column(t, "state");
	const struct t_obj *dis = column(t, "disabled");
	for (uint64_t i = 0; i < names->n; i++) {
		bool is_busy = strcmp(names->syms[i], busy) == 0;
		cr_assert_eq(((const uint8_t *)dis->data)[i], is_busy, "%s disabled column",
			     names->syms[i]);
		if (is_busy)
			cr_assert_str_eq(states->syms[i], "disabled");
	}
	t_free(t);
	snprintf(call, sizeof(call), ".qgate.enable[`p;`%s]", busy);
	act_ok(ops, t_str(call), "enabled");
	be_state(false, "p", busy, state, sizeof(state), &is_dis);
	cr_assert(strcmp(state, "up") == 0 && !is_dis, "enabled: state %s", state);
	close(a);
	close(b);
	close(ops);
}

/* Every backend disabled: requests wait in the queue (not failed); enable one: served. */
Test(admin_actions, disable_every_backend_queues_then_enable_serves)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 0 });
	int ops = ops_connect(), dev = dev_connect();

	act_ok(ops, t_str(".qgate.disable[`b1]"), "disabled");
	act_ok(ops, t_str(".qgate.disable[`p.b2]"), "disabled");	/* pool.backend */
	T_OK(t_send_free(dev, T_SYNC, t_call0(".mock.id")));
	wait_queued(false, "p", 1);
	quiet_for(dev, 300, "every backend disabled");
	act_ok(ops, t_str(".qgate.enable[\"b2\"]"), "enabled");
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(dev, 5000, &r, &type));
	cr_assert(r->type == -T_SYM && strcmp(r->s, "b2") == 0, "answered by %s", t_show(r));
	t_free(r);
	close(dev);
	close(ops);
}

/* ---------------------------------------------------------------- kill */

/* Kill a client in the middle of a request: its answer goes to nobody (it is closed without a
 * byte), the others carry on; an unknown id and a wrong type are errors; an admin may kill
 * itself. */
Test(admin_actions, kill_a_client_mid_request)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000 });
	int ops = ops_connect(), victim = dev_connect(), other = dev_connect();

	/* 3 s: the kill must land while the victim's answer is owed (room for a busy machine) */
	T_OK(t_send_free(victim, T_SYNC, t_call(".mock.defer", 2, t_long(3000), t_sym("lost"))));
	T_OK(t_send_free(other, T_SYNC, t_call(".mock.defer", 2, t_long(3100), t_sym("mine"))));
	int64_t id = client_id(ops, victim, NULL);
	t_call_expect(ops, t_call(".qgate.kill", 1, t_long(id)), t_sym("killed"), 5000);
	size_t got = 1;
	T_OK(t_wait_closed(victim, 5000, &got));
	cr_assert_eq(got, 0, "the killed client got %zu bytes", got);
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(other, 5000, &r, &type));
	cr_assert(r->type == -T_SYM && strcmp(r->s, "mine") == 0, "other got %s", t_show(r));
	t_free(r);
	/* the backend that ran the killed request is usable again: its late answer was drained */
	for (int i = 0; i < 4; i++)
		t_call_expect(other, t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);
	/* the same id again: gone */
	act_err(ops, t_call(".qgate.kill", 1, t_long(id)), "qgate: no client with id");
	act_err(ops, t_str(".qgate.kill[999999999]"), "qgate: no client with id");
	act_err(ops, t_str(".qgate.kill[`abc]"), "qgate: .qgate.kill takes one client id");
	act_err(ops, t_str(".qgate.kill[]"), "qgate: .qgate.kill takes one client id");
	act_err(ops, t_str(".qgate.kill[1;2]"), "qgate: .qgate.kill takes one client id");
	/* killing oneself: closed, nothing crashes */
	int64_t me = client_id(ops, ops, NULL);
	T_OK(t_send_free(ops, T_SYNC, t_call(".qgate.kill", 1, t_long(me))));
	T_OK(t_wait_closed(ops, 3000, NULL));
	close(ops);
	cr_assert(t_proc_alive(gate), "qgate died");
	t_call_expect(other, t_call(".mock.echo", 1, t_long(9)), t_long(9), 5000);
	ops = ops_connect();
	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	close(ops);
	close(other);
	close(victim);
	stop_clean();
}

/* ---------------------------------------------------------------- refusals */

/* Non-admin users, wrong arity and types, unknown and ambiguous names: q errors beginning
 * `qgate: `; nothing changes. The list forms (symbol vector, general list, string head) work. */
Test(admin_actions, q_refusals_and_call_forms)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000, .has_other = true });
	int ops = ops_connect(), dev = dev_connect();

	act_err(dev, t_str(".qgate.pause[`p]"), "qgate: not allowed");
	act_err(dev, t_str(".qgate.reload[]"), "qgate: not allowed");
	act_err(dev, t_str(".qgate.kill[1]"), "qgate: not allowed");
	cr_assert_not(is_paused(false, "p"), "a non-admin paused the pool");
	act_err(ops, t_str(".qgate.pause[`nosuch]"), "qgate: unknown pool");
	act_err(ops, t_str(".qgate.pause[]"), "qgate: .qgate.pause takes one pool name");
	act_err(ops, t_str(".qgate.pause"), "qgate: .qgate.pause takes one pool name");
	act_err(ops, t_str(".qgate.pause[`p;`q]"), "qgate: .qgate.pause takes one pool name");
	act_err(ops, t_str(".qgate.pause[42]"), "qgate: .qgate.pause takes one pool name");
	act_err(ops, t_str(".qgate.pause[p]"), "qgate: .qgate.pause takes one pool name");
	act_err(ops, t_str(".qgate.resume[\"unterminated]"), "qgate: .qgate.resume takes");
	act_err(ops, t_str(".qgate.disable[`nosuch]"), "qgate: unknown backend");
	act_err(ops, t_str(".qgate.disable[`p;`nosuch]"), "qgate: pool \"p\" has no backend");
	act_err(ops, t_str(".qgate.disable[`nosuch;`b1]"), "qgate: unknown pool");
	/* `p.b1`: the backend named so in pool `odd "pool"`, and b1 of pool p */
	act_err(ops, t_str(".qgate.disable[`p.b1]"), "qgate: backend \"p.b1\" is ambiguous");
	act_err(ops, t_str(".qgate.enable[]"), "qgate: .qgate.enable takes a backend name");
	act_err(ops, t_str(".qgate.reload[1]"), "qgate: .qgate.reload takes no argument");
	act_err(ops, t_str(".qgate.frob[`p]"), "qgate: unknown admin function");
	act_err(ops, t_str(".qgate.pause[`p]; 1+1"), "qgate: admin calls must be sent alone");
	act_err(ops, t_str(".qgate.stats[1]; .qgate.pools[]"),
		"qgate: admin calls must be sent alone");
	act_err(ops, t_str(".qgate.pause[`p]; .qgate.resume[`p]"), "qgate: .qgate.pause takes");
	act_err(ops, t_str(".qgate.kill[1]; f[2]"), "qgate: .qgate.kill takes");
	cr_assert_not(is_paused(false, "p"));
	/* the forms q sends: h(`.qgate.pause;`p) is a symbol vector */
	struct t_obj *sv = t_vec(T_SYM, 2);
	sv->syms[0] = strdup(".qgate.pause");
	sv->syms[1] = strdup("p");
	act_ok(ops, sv, "paused");
	act_ok(ops, t_call(".qgate.resume", 1, t_str("p")), "running");
	act_ok(ops, t_list(2, t_str(".qgate.pause"), t_sym("odd \"pool\"")), "paused");
	cr_assert(is_paused(false, "odd \"pool\""));
	cr_assert_not(is_paused(false, "p"));
	act_ok(ops, t_str(".qgate.resume[`$\"odd \\\"pool\\\"\"]"), "running");
	cr_assert_not(is_paused(false, "odd \"pool\""));
	/* a bare name in two pools: both; then the pair form for one */
	act_ok(ops, t_call(".qgate.disable", 1, t_sym("b1")), "disabled");
	char state[32];
	bool is_dis;
	be_state(false, "p", "b1", state, sizeof(state), &is_dis);
	cr_assert(is_dis, "p/b1 not disabled");
	be_state(false, "odd \"pool\"", "b1", state, sizeof(state), &is_dis);
	cr_assert(is_dis, "odd pool/b1 not disabled");
	act_ok(ops, t_call(".qgate.enable", 2, t_sym("p"), t_sym("b1")), "enabled");
	be_state(false, "p", "b1", state, sizeof(state), &is_dis);
	cr_assert_not(is_dis);
	be_state(false, "odd \"pool\"", "b1", state, sizeof(state), &is_dis);
	cr_assert(is_dis, "enable of p/b1 enabled the other pool's b1 too");
	/* the gateway still serves */
	t_call_expect(dev, t_call(".mock.echo", 1, t_long(5)), t_long(5), 5000);
	close(dev);
	close(ops);
}

/* ---------------------------------------------------------------- HTTP */

/* No stats.token: POST actions are refused (403, naming stats.token); GET still works. */
Test(admin_actions, http_without_a_token_is_refused)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000 });
	char *body;

	int st = post("/admin/pause?pool=p", NULL, &body);
	cr_assert_eq(st, 403, "status %d: %s", st, body);
	cr_assert(strstr(body, "stats.token") && strstr(body, "\"ok\":false"), "%s", body);
	free(body);
	st = post("/admin/reload", "anything", &body);
	cr_assert_eq(st, 403, "status %d: %s", st, body);
	free(body);
	cr_assert_not(is_paused(false, "p"));
	metric_is(false, "qgate_pool_paused{pool=\"p\"} 0");
}

/* With a token: no token or the wrong one is 401; the right one acts; bad names and
 * parameters are errors; names are percent-decoded; a POST with a body is fine. */
Test(admin_actions, http_actions_behind_the_token)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000, .has_other = true,
			      .has_token = true });
	char *body;
	int st;

	st = post("/admin/pause?pool=p", NULL, &body);
	cr_assert_eq(st, 401, "no token: %d %s", st, body);
	free(body);
	st = post("/admin/pause?pool=p", "wrong", &body);
	cr_assert_eq(st, 401, "wrong token: %d %s", st, body);
	free(body);
	cr_assert_not(is_paused(true, "p"));
	st = post("/admin/pause?pool=p", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	cr_assert(strstr(body, "\"ok\":true") && strstr(body, "\"paused\":true"), "%s", body);
	free(body);
	cr_assert(is_paused(true, "p"));
	st = post("/admin/resume?pool=p", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);
	cr_assert_not(is_paused(true, "p"));
	/* a hostile name, percent-encoded */
	st = post("/admin/pause?pool=odd%20%22pool%22", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);
	cr_assert(is_paused(true, "odd \"pool\""));
	st = post("/admin/resume?x=1&pool=odd%20%22pool%22", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);
	cr_assert_not(is_paused(true, "odd \"pool\""));
	/* refusals */
	static const struct {
		const char *path;
		int status;
	} bad[] = {
		{ "/admin/pause?pool=nosuch", 404 },
		{ "/admin/pause", 400 },
		{ "/admin/pause?pool=p%00", 400 },
		{ "/admin/pause?pool=%zz", 400 },
		{ "/admin/pause?pool=p%2", 400 },
		{ "/admin/frob?pool=p", 404 },
		{ "/admin/", 404 },
		{ "/admin/disable?backend=nosuch", 404 },
		{ "/admin/disable?backend=p.b1", 409 },
		{ "/admin/disable?pool=p", 400 },
		{ "/admin/kill?id=abc", 400 },
		{ "/admin/kill?id=-1", 400 },
		{ "/admin/kill?id=99999999", 404 },
		{ "/admin/kill", 400 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = post(bad[i].path, TOKEN, &body);
		cr_assert_eq(st, bad[i].status, "%s: %d %s", bad[i].path, st, body);
		cr_assert(strstr(body, "\"ok\":false") && strstr(body, "qgate: "), "%s: %s",
			  bad[i].path, body);
		free(body);
	}
	/* over-long name */
	char longp[600];
	snprintf(longp, sizeof(longp), "/admin/pause?pool=");
	memset(longp + strlen(longp), 'x', 300);
	longp[18 + 300] = '\0';
	st = post(longp, TOKEN, &body);
	cr_assert_eq(st, 400, "long name: %d %s", st, body);
	free(body);
	/* disable/enable by pool and backend */
	st = post("/admin/disable?pool=p&backend=b2", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	cr_assert(strstr(body, "\"disabled\":true") && strstr(body, "\"backend\":\"b2\""), "%s",
		  body);
	free(body);
	char state[32];
	bool is_dis;
	be_state(true, "p", "b2", state, sizeof(state), &is_dis);
	cr_assert(is_dis && strcmp(state, "disabled") == 0, "b2: %s", state);
	int dev = dev_connect();
	for (int i = 0; i < 4; i++) {
		char who[32];
		served_by(dev, who, sizeof(who));
		cr_assert_str_eq(who, "b1");
	}
	st = post("/admin/enable?backend=p.b2", TOKEN, &body);	/* pool.backend */
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);
	be_state(true, "p", "b2", state, sizeof(state), &is_dis);
	cr_assert_not(is_dis);
	/* a POST with a body (ignored) and one whose head is cut short: no desync, no crash */
	st = http("POST", "/admin/pause?pool=p", TOKEN, "Content-Length: 11\r\n\r\nhello world",
		  &body);
	cr_assert_eq(st, 200, "with a body: %d %s", st, body);
	free(body);
	int half = T_OK(t_tcp_connect("127.0.0.1", stats_port, 3000));
	T_OK(t_send_all(half, "POST /admin/resume?pool=p HTTP/1.1\r\nAuthoriz", 43));
	close(half);
	st = post("/admin/resume?pool=p", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);
	/* kill over HTTP */
	int ops = ops_connect();
	int64_t id = client_id(ops, dev, NULL);
	char path[64];
	snprintf(path, sizeof(path), "/admin/kill?id=%" PRId64, id);
	st = post(path, TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);
	T_OK(t_wait_closed(dev, 3000, NULL));
	close(dev);
	/* reload over HTTP */
	st = post("/admin/reload", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	cr_assert(strstr(body, "\"state\":\"reloaded\""), "%s", body);
	free(body);
	/* GET still works */
	json_decref(stats(true));
	close(ops);
	/* every action is audited, with who and the result */
	T_OK(t_wait_file_contains(audit_path, 0, "user=stats-token peer=127.0.0.1:", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "via=http action=pause arg=\"odd \\\"pool\\\"\" "
				  "outcome=\"ok: paused\"", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "action=pause arg=nosuch outcome=\"qgate: "
				  "unknown pool", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "via=http action=pause arg=\"\" outcome="
				  "\"refused 401", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "action=kill", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "action=reload arg=\"\" outcome=\"ok: reloaded\"",
				  3000));
	T_OK(t_wait_file_contains(gate->err_path, 0, "via=http action=disable", 3000));
}

/*
 * Review 1 (#6, #7, #11): the token counts only in the header section, never in a body; a
 * kill id is decimal digits in 1..INT64_MAX, nothing looser; and an admin request refused
 * before its action (wrong method spelling, a head too large) is audited as refused.
 */
Test(admin_actions, http_token_ids_and_early_refusals)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000, .has_token = true });
	char *body;
	int st;

	/* the token in a body only: 401, for an action and for /stats */
	const char *in_body = "Authorization: Bearer " TOKEN "\r\n\r\n";
	st = http("POST", "/admin/pause?pool=p", NULL, in_body, &body);
	cr_assert_eq(st, 401, "token in the body only: %d %s", st, body);
	free(body);
	cr_assert_not(is_paused(true, "p"));
	st = http("GET", "/stats", NULL, in_body, &body);
	cr_assert_eq(st, 401, "GET /stats with the token in the body only: %d", st);
	free(body);
	/* ... and a body that follows a good header does not spoil it */
	st = http("POST", "/admin/pause?pool=p", TOKEN, "Authorization: Bearer wrong\r\n\r\n",
		  &body);
	cr_assert_eq(st, 200, "good header, hostile body: %d %s", st, body);
	free(body);
	st = post("/admin/resume?pool=p", TOKEN, &body);
	cr_assert_eq(st, 200, "%d %s", st, body);
	free(body);

	/* kill ids: strict */
	static const char *const bad_ids[] = {
		"+5", "%205", "5%20", "%2B5", "0x5", "5.0", "0", "", "-0",
		"9223372036854775808",		/* INT64_MAX + 1 */
		"18446744073709551615",		/* UINT64_MAX */
		"18446744073709551616",		/* UINT64_MAX + 1 */
		"99999999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		char path[96];
		snprintf(path, sizeof(path), "/admin/kill?id=%s", bad_ids[i]);
		st = post(path, TOKEN, &body);
		cr_assert_eq(st, 400, "%s: %d %s", path, st, body);
		free(body);
	}
	st = post("/admin/kill?id=9223372036854775807", TOKEN, &body);	/* INT64_MAX: nobody */
	cr_assert_eq(st, 404, "INT64_MAX: %d %s", st, body);
	cr_assert(strstr(body, "no client with id 9223372036854775807"), "%s", body);
	free(body);
	/* a real client's id, with leading zeros: killed, and the id comes back as given */
	int ops = ops_connect(), dev = dev_connect();
	int64_t id = client_id(ops, dev, NULL);
	char path[96], want[64];
	snprintf(path, sizeof(path), "/admin/kill?id=000%" PRId64, id);
	st = post(path, TOKEN, &body);
	cr_assert_eq(st, 200, "%s: %d %s", path, st, body);
	snprintf(want, sizeof(want), "\"id\":%" PRId64 "}", id);
	cr_assert(strstr(body, want), "%s: want %s", body, want);
	free(body);
	T_OK(t_wait_closed(dev, 3000, NULL));
	close(dev);
	close(ops);

	/* refused before the action: each one audited */
	st = http("post", "/admin/pause?pool=p", TOKEN, NULL, &body);
	cr_assert_eq(st, 405, "lowercase post: %d %s", st, body);
	free(body);
	st = http("GET", "/admin/resume?pool=p", TOKEN, NULL, &body);
	cr_assert_eq(st, 405, "GET on an action: %d %s", st, body);
	free(body);
	cr_assert_not(is_paused(true, "p"));
	size_t big_n = 12000;
	char *big = malloc(big_n + 1);
	cr_assert(big);
	int n = snprintf(big, big_n, "POST /admin/disable?backend=b1 HTTP/1.1\r\nHost: x\r\n"
			 "Authorization: Bearer " TOKEN "\r\nCookie: ");
	memset(big + n, 'c', big_n - (size_t)n);
	big[big_n] = '\0';
	st = http_raw(big, big_n, &body);
	cr_assert_eq(st, 431, "a 12000-byte head: %d %s", st, body);
	cr_assert(strstr(body, "8191"), "431 body names the cap: %s", body);
	free(body);
	free(big);
	T_OK(t_wait_file_contains(audit_path, 0, "via=http action=pause arg=\"\" outcome=\"refused "
				  "405: qgate: admin actions take POST", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "via=http action=resume arg=\"\" outcome=\"refused "
				  "405", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "via=http action=disable arg=\"\" outcome="
				  "\"refused 431", 3000));
	T_OK(t_wait_file_contains(audit_path, 0, "action=kill arg=\"\" outcome=\"refused 400",
				  3000));
	T_OK(t_wait_file_contains(audit_path, 0, "action=pause arg=\"\" outcome=\"refused 401",
				  3000));
	/* the refusals changed nothing */
	char state[32];
	bool is_dis;
	be_state(true, "p", "b1", state, sizeof(state), &is_dis);
	cr_assert_not(is_dis);
	stop_clean();
}

/* q actions are audited with the logged-in user, refusals too, one line each. */
Test(admin_actions, q_actions_are_audited)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 5000 });
	int ops = ops_connect(), dev = dev_connect();

	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	act_err(ops, t_str(".qgate.pause[`nosuch]"), "qgate: unknown pool");
	act_err(dev, t_str(".qgate.resume[`p]"), "qgate: not allowed");
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");
	T_OK(t_wait_file_contains(audit_path, 0, "action=resume arg=p outcome=\"ok: running\"",
				  3000));
	char *log = T_PTR(t_read_file(audit_path));
	cr_assert(strstr(log, "user=ops peer=127.0.0.1:"), "%s", log);
	cr_assert(strstr(log, "type=admin via=q action=pause arg=p outcome=\"ok: paused\""), "%s",
		  log);
	cr_assert(strstr(log, "user=ops") && strstr(log, "action=pause arg=nosuch outcome="
						       "\"qgate: unknown pool"), "%s", log);
	cr_assert(strstr(log, "user=dev") && strstr(log, "action=resume arg=\"\" outcome="
						       "\"refused 403: qgate: not allowed\""),
		  "%s", log);
	/* one line per action: no request line beside it */
	int n = 0;
	for (const char *s = log; (s = strstr(s, ".qgate.pause")); s++)
		n++;
	cr_assert_eq(n, 0, "the action also wrote a request line: %s", log);
	free(log);
	close(dev);
	close(ops);
}

/* ---------------------------------------------------------------- reload */

static void rewrite_config(const struct opts *o)
{
	char *text = gate_json(o);
	T_PTR(t_write_file("gw.json.new", text));
	free(text);
	char nw[600];
	snprintf(nw, sizeof(nw), "%s.new", cfg_path);
	T_OK(rename(nw, cfg_path));
}

/* The state survives a reload (SIGHUP and .qgate.reload[]) by name; a pool a reload removes
 * forgets it; a broken file answers its error and the old configuration keeps serving. */
Test(admin_actions, state_survives_reload_and_a_broken_reload_keeps_serving)
{
	struct opts o = { .workers = 1, .queue_timeout_ms = 0, .has_other = true };
	start(&o);
	int ops = ops_connect(), dev = dev_connect();

	act_ok(ops, t_str(".qgate.disable[`p;`b1]"), "disabled");
	act_ok(ops, t_list(2, t_str(".qgate.pause"), t_sym("odd \"pool\"")), "paused");
	/* a changed pool p (queue timeout) is rebuilt by the reload: it must stay b1-disabled */
	o.queue_timeout_ms = 4000;
	rewrite_config(&o);
	size_t from = t_file_size(gate->err_path);
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(t_wait_file_contains(gate->err_path, from, "configuration accepted", 3000));
	poll(NULL, 0, 100);	/* workers take it within a tick */
	char state[32];
	bool is_dis;
	be_state(false, "p", "b1", state, sizeof(state), &is_dis);
	cr_assert(is_dis, "b1 enabled again by the reload (state %s)", state);
	cr_assert(is_paused(false, "odd \"pool\""), "odd pool resumed by the reload");
	for (int i = 0; i < 4; i++) {
		char who[32];
		served_by(dev, who, sizeof(who));
		cr_assert_str_eq(who, "b2");
	}
	/* the pool removed by a reload forgets its pause; re-added, it runs */
	o.has_other = false;
	rewrite_config(&o);
	act_ok(ops, t_str(".qgate.reload[]"), "reloaded");
	o.has_other = true;
	rewrite_config(&o);
	act_ok(ops, t_call0(".qgate.reload"), "reloaded");
	poll(NULL, 0, 100);
	cr_assert_not(is_paused(false, "odd \"pool\""), "a removed pool's pause came back");
	be_state(false, "p", "b1", state, sizeof(state), &is_dis);
	cr_assert(is_dis, "b1 enabled again by the reload");
	/* a broken file: the error as a q error, the old configuration keeps serving */
	T_PTR(t_write_file("gw.json", "{\"listeners\": ["));
	act_err(ops, t_str(".qgate.reload[]"), "qgate: reload refused");
	struct t_obj *r = t_call_ok(ops, t_str(".qgate.reload[]"), 5000);
	cr_assert(r->type == T_ERROR && strlen(r->s) > 40, "no error text: %s", t_show(r));
	t_free(r);
	t_call_expect(dev, t_call(".mock.echo", 1, t_long(3)), t_long(3), 5000);
	be_state(false, "p", "b1", state, sizeof(state), &is_dis);
	cr_assert(is_dis);
	close(dev);
	close(ops);
	stop_clean();
}

/* ---------------------------------------------------------------- workers */

#define N_W_MIN 6
#define N_W_MAX 24

/* With two workers, a pause issued on one worker's client holds the clients of both; the
 * resume answers each its own; a kill reaches a client of the other worker. */
Test(admin_actions, pause_applies_to_every_worker)
{
	start(&(struct opts){ .workers = 2, .queue_timeout_ms = 0 });
	int ops = ops_connect(), fds[N_W_MAX], n = 0;
	int64_t ops_worker = -1, workers[N_W_MAX];

	client_id(ops, ops, &ops_worker);
	bool has[2] = { false, false };
	while (n < N_W_MIN || (n < N_W_MAX && !(has[0] && has[1]))) {
		fds[n] = dev_connect();
		t_call_expect(fds[n], t_call(".mock.echo", 1, t_long(n)), t_long(n), 5000);
		client_id(ops, fds[n], &workers[n]);
		has[workers[n]] = true;
		n++;
	}
	cr_assert(has[0] && has[1], "%d clients all on one worker", n);
	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	for (int i = 0; i < n; i++)
		T_OK(t_send_free(fds[i], T_SYNC, t_call(".mock.echo", 1, t_long(1000 + i))));
	wait_queued(false, "p", n);	/* summed over both workers */
	for (int i = 0; i < n; i++)
		quiet_for(fds[i], i == 0 ? 300 : 5, "paused on the other worker");
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");
	for (int i = 0; i < n; i++) {
		struct t_obj *r = NULL;
		int type = -1;
		T_OK(t_q_recv(fds[i], 5000, &r, &type));
		cr_assert(r->type == -T_LONG && r->a.j == 1000 + i, "client %d (worker %" PRId64
			  "): %s", i, workers[i], t_show(r));
		t_free(r);
	}
	/* a client of the other worker, killed */
	int victim = -1;
	for (int i = 0; i < n && victim < 0; i++)
		if (workers[i] != ops_worker)
			victim = i;
	int64_t id = client_id(ops, fds[victim], NULL);
	t_call_expect(ops, t_call(".qgate.kill", 1, t_long(id)), t_sym("killed"), 5000);
	T_OK(t_wait_closed(fds[victim], 3000, NULL));
	for (int i = 0; i < n; i++) {
		if (i != victim)
			t_call_expect(fds[i], t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);
		close(fds[i]);
	}
	close(ops);
	stop_clean();
}

/* ------------------------------------------------------- review 1 findings */

/* `name` as a backend (directly, not through the gateway) holds it: its value, or `undefined */
static void backend_value(struct t_proc *be, const char *name, char *out, size_t n)
{
	char q[128];
	int fd = T_OK(t_q_connect("127.0.0.1", be->port, "probe:x", NULL));

	snprintf(q, sizeof(q), "@[value;`%s;{`undefined}]", name);
	struct t_obj *r = t_call_ok(fd, t_str(q), 5000);
	if (r->type == -T_SYM)
		snprintf(out, n, "%s", r->s);
	else if (r->type == -T_LONG)
		snprintf(out, n, "%" PRId64, r->a.j);
	else
		snprintf(out, n, "%s", t_show(r));
	t_free(r);
	close(fd);
}

/* Review 1 #1: a client that leaves while a pause holds its asyncs: they stay held (q runs
 * what a client wrote, a pause lets nothing out), its sync goes to nobody; on resume they go,
 * in its order, on one connection. A later departed async meets queue.timeout_ms... and one
 * still held when the gateway stops is freed (ASan). */
Test(admin_actions, pause_holds_a_departed_clients_asyncs)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 0 });
	int ops = ops_connect(), dev = dev_connect();
	char v1[64], v2[64];

	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	T_OK(t_send_free(dev, T_ASYNC, t_str("hx::1")));
	T_OK(t_send_free(dev, T_SYNC, t_call(".mock.echo", 1, t_long(5))));
	T_OK(t_send_free(dev, T_ASYNC, t_str("hx::2")));
	wait_queued(false, "p", 3);
	close(dev);
	wait_queued(false, "p", 2);	/* the sync left (nobody takes its answer) */
	poll(NULL, 0, 300);
	backend_value(b1, "hx", v1, sizeof(v1));
	backend_value(b2, "hx", v2, sizeof(v2));
	cr_assert(strcmp(v1, "undefined") == 0 && strcmp(v2, "undefined") == 0,
		  "a paused pool let a departed client's async out: b1 %s b2 %s", v1, v2);
	cr_assert(is_paused(false, "p"));
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");
	wait_queued(false, "p", 0);
	/* both on one backend, in order: it holds 2; the other never saw them */
	int64_t deadline = t_now_ms() + 3000;
	do {
		backend_value(b1, "hx", v1, sizeof(v1));
		backend_value(b2, "hx", v2, sizeof(v2));
	} while (strcmp(v1, "2") && strcmp(v2, "2") && t_now_ms() < deadline &&
		 poll(NULL, 0, 20) == 0);
	cr_assert((strcmp(v1, "2") == 0 && strcmp(v2, "undefined") == 0) ||
		  (strcmp(v2, "2") == 0 && strcmp(v1, "undefined") == 0),
		  "after resume: b1 %s b2 %s, want 2 on one of them", v1, v2);
	/* held again when the gateway stops: freed with the queue, nothing sent */
	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	dev = dev_connect();
	T_OK(t_send_free(dev, T_ASYNC, t_str("hy::1")));
	wait_queued(false, "p", 1);
	close(dev);
	poll(NULL, 0, 100);
	close(ops);
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 15000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d: %s", gate->status, t_tail(gate->err_path, 1500));
	backend_value(b1, "hy", v1, sizeof(v1));
	backend_value(b2, "hy", v2, sizeof(v2));
	cr_assert(strcmp(v1, "undefined") == 0 && strcmp(v2, "undefined") == 0,
		  "sent at stop while paused: b1 %s b2 %s", v1, v2);
}

/* Review 1 #1: a departed client's held async meets queue.timeout_ms as any request: dropped
 * (logged), never sent, not even after the resume. */
Test(admin_actions, departed_async_held_by_a_pause_times_out)
{
	start(&(struct opts){ .workers = 1, .queue_timeout_ms = 300 });
	int ops = ops_connect(), dev = dev_connect();
	char v1[64], v2[64];

	act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
	size_t from = t_file_size(gate->err_path);
	T_OK(t_send_free(dev, T_ASYNC, t_str("hz::1")));
	wait_queued(false, "p", 1);
	close(dev);
	T_OK(t_wait_file_contains(gate->err_path, from, "reason=\"qgate: queue timeout\"", 3000));
	wait_queued(false, "p", 0);
	act_ok(ops, t_str(".qgate.resume[`p]"), "running");
	dev = dev_connect();
	t_call_expect(dev, t_call(".mock.echo", 1, t_long(1)), t_long(1), 5000);
	backend_value(b1, "hz", v1, sizeof(v1));
	backend_value(b2, "hz", v2, sizeof(v2));
	cr_assert(strcmp(v1, "undefined") == 0 && strcmp(v2, "undefined") == 0,
		  "a timed-out async was sent: b1 %s b2 %s", v1, v2);
	close(dev);
	close(ops);
	stop_clean();
}

/* Review 1 #2: one write carries `.qgate.reload[]` (a file without b2) then
 * ``.qgate.disable[`b2]``: the disable is judged against the new configuration (unknown
 * backend), so nothing outlives the reload; b2 added back runs and serves. Two workers. */
Test(admin_actions, disable_after_a_reload_that_removed_it_is_refused)
{
	struct opts o = { .workers = 2, .queue_timeout_ms = 0 };
	start(&o);
	int ops = ops_connect();

	o.no_b2 = true;
	rewrite_config(&o);
	uint8_t *m1, *m2;
	size_t n1, n2;
	struct t_obj *a = t_str(".qgate.reload[]"), *b = t_str(".qgate.disable[`b2]");
	T_OK(t_encode_msg(a, T_SYNC, &m1, &n1));
	T_OK(t_encode_msg(b, T_SYNC, &m2, &n2));
	uint8_t *both = malloc(n1 + n2);
	cr_assert(both != NULL);
	memcpy(both, m1, n1);
	memcpy(both + n1, m2, n2);
	T_OK(t_send_all(ops, both, n1 + n2));
	free(both);
	free(m1);
	free(m2);
	t_free(a);
	t_free(b);
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(ops, 5000, &r, &type));
	cr_assert(r->type == -T_SYM && strcmp(r->s, "reloaded") == 0, "reload: %s", t_show(r));
	t_free(r);
	T_OK(t_q_recv(ops, 5000, &r, &type));
	cr_assert(t_is_err_prefix(r, "qgate: unknown backend"), "disable of a removed backend: %s",
		  t_show(r));
	t_free(r);
	/* and by pool.backend, and a pause of a pool the latest file does not have */
	act_err(ops, t_str(".qgate.disable[`p;`b2]"), "qgate: pool \"p\" has no backend");
	o.no_b2 = false;
	rewrite_config(&o);
	act_ok(ops, t_str(".qgate.reload[]"), "reloaded");
	/* (the file has new password hashes: a login that straddles the workers' taking it
	 * may fail, so wait for them) */
	poll(NULL, 0, 100);
	int dev = dev_connect();
	int64_t deadline = t_now_ms() + 5000;
	bool by_b2 = false;
	while (!by_b2 && t_now_ms() < deadline) {
		char who[32];
		served_by(dev, who, sizeof(who));
		by_b2 = strcmp(who, "b2") == 0;
	}
	cr_assert(by_b2, "b2, added back, gets no traffic");
	char state[32];
	bool is_dis;
	be_state(false, "p", "b2", state, sizeof(state), &is_dis);
	cr_assert_not(is_dis, "b2 came back disabled (state %s)", state);
	close(dev);
	close(ops);
	stop_clean();
}

/* resident memory of pid in KiB */
static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert(f != NULL);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

#define N_RELOADS 3000

/* Review 1 #3: reloading an unchanged file keeps nothing new: thousands of `.qgate.reload[]`
 * leave the resident memory flat (each used to keep a whole configuration); a changed file
 * still reloads. */
Test(admin_actions, reloads_of_an_unchanged_file_keep_no_memory, .timeout = 120.0)
{
	/* ASan's quarantine keeps freed memory resident: keep it small for this process */
	const char *asan = getenv("ASAN_OPTIONS");
	if (asan) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s:quarantine_size_mb=1", asan);
		setenv("ASAN_OPTIONS", buf, 1);
	}
	struct opts o = { .workers = 2, .queue_timeout_ms = 0 };
	start(&o);
	int ops = ops_connect();

	for (int i = 0; i < 1000; i++)	/* warm up: the heap settles (logs, audit buffers) */
		act_ok(ops, t_str(".qgate.reload[]"), "reloaded");
	long before = rss_kib(gate->pid);
	for (int i = 0; i < N_RELOADS; i++)
		act_ok(ops, t_str(".qgate.reload[]"), "reloaded");
	long after = rss_kib(gate->pid);
	cr_assert(before > 0 && after - before < 1024, "RSS %ld -> %ld KiB over %d reloads", before,
		  after, N_RELOADS);
	T_OK(t_wait_file_contains(gate->err_path, 0, "msg=\"reload: configuration unchanged", 3000));
	/* a changed file builds a new one */
	size_t from = t_file_size(gate->err_path);
	o.queue_timeout_ms = 1234;
	rewrite_config(&o);
	act_ok(ops, t_str(".qgate.reload[]"), "reloaded");
	T_OK(t_wait_file_contains(gate->err_path, from, "configuration accepted", 3000));
	close(ops);
	stop_clean();
}

/* a counter verb of a backend, asked directly (.mock.inflight: requests it has read and
 * not yet answered; .mock.served: sync requests it answered) */
static int64_t mock_figure(struct t_proc *be, const char *verb)
{
	int fd = T_OK(t_q_connect("127.0.0.1", be->port, "probe:x", NULL));
	struct t_obj *r = t_call_ok(fd, t_call0(verb), 5000);

	cr_assert(r->type == -T_LONG, "%s gave %s", verb, t_show(r));
	int64_t v = r->a.j;
	t_free(r);
	close(fd);
	return v;
}

static int64_t mock_inflight(struct t_proc *be)
{
	return mock_figure(be, ".mock.inflight");
}

/* Review 1 #4: after SIGTERM, `.qgate.reload[]` is refused (`qgate: gateway stopping`), a
 * SIGHUP is logged and ignored, and a listener the new file adds is never opened; the request
 * in flight still gets its answer. */
Test(admin_actions, no_reload_while_stopping)
{
	struct opts o = { .workers = 2, .queue_timeout_ms = 0, .grace_ms = 4000 };
	start(&o);
	/* the admin's own request in flight keeps its worker in its stop's grace period (a
	 * worker with nothing owed exits at once, closing its clients) */
	int ops = ops_connect();

	T_OK(t_send_free(ops, T_SYNC, t_call(".mock.defer", 2, t_long(1500), t_sym("late"))));
	/* in flight only once a backend has it: a stop before that finds the admin idle */
	int64_t deadline = t_now_ms() + 5000;
	while (mock_inflight(b1) + mock_inflight(b2) < 1 && t_now_ms() < deadline)
		poll(NULL, 0, 10);
	cr_assert_geq(mock_inflight(b1) + mock_inflight(b2), 1, "the deferred call never "
		      "reached a backend");
	o.extra_port = T_OK(t_free_port());
	rewrite_config(&o);
	size_t from = t_file_size(gate->err_path);
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_wait_file_contains(gate->err_path, from, "msg=\"stopping\"", 3000));
	/* (the stats port closed with the listeners: HTTP runs the same gw_action_reload) */
	T_OK(t_send_free(ops, T_SYNC, t_str(".qgate.reload[]")));
	T_OK(t_wait_file_contains(audit_path, 0, "action=reload arg=\"\" outcome=\"qgate: gateway "
				  "stopping\"", 3000));
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(t_wait_file_contains(gate->err_path, from, "SIGHUP ignored: the gateway is stopping",
				  3000));
	poll(NULL, 0, 100);	/* a worker would have applied it within a tick */
	int fd = t_tcp_connect("127.0.0.1", o.extra_port, 300);
	cr_assert(fd < 0, "the new listener was opened during the stop");
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(ops, 5000, &r, &type));
	cr_assert(r->type == -T_SYM && strcmp(r->s, "late") == 0, "in flight: %s", t_show(r));
	t_free(r);
	T_OK(t_q_recv(ops, 5000, &r, &type));
	cr_assert(t_is_err_prefix(r, "qgate: gateway stopping"), "reload while stopping: %s",
		  t_show(r));
	t_free(r);
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d: %s", gate->status, t_tail(gate->err_path, 1500));
	cr_assert(t_wait_file_contains(gate->err_path, 0, "configuration accepted", 10) != 0,
		  "a reload was accepted during the stop");
	close(ops);
}

/* ops and a client of the other worker (fd, id); ops_worker set */
static int other_worker_client(int ops, int64_t *id)
{
	int64_t ops_worker = -1, wk = -1;

	client_id(ops, ops, &ops_worker);
	for (int i = 0; i < 40; i++) {
		int fd = dev_connect();
		*id = client_id(ops, fd, &wk);
		if (wk != ops_worker)
			return fd;
		close(fd);
	}
	cr_assert(false, "no client landed on the other worker");
	return -1;
}

/* Review 1 #5: a client of another worker that has just left is not reported `killed` (the
 * snapshot still lists it): its worker says it is gone, 404. A live one is killed. */
Test(admin_actions, kill_of_a_departed_client_on_another_worker_is_404)
{
	start(&(struct opts){ .workers = 2, .queue_timeout_ms = 0, .has_token = true });
	int ops = ops_connect();
	int64_t id;
	int fd = other_worker_client(ops, &id);
	char conn[48], q[64];

	snprintf(conn, sizeof(conn), "conn=%" PRId64 " ", id);
	const char *needles[] = { conn, "msg=\"closing\"" };
	size_t from = t_file_size(gate->err_path);
	close(fd);
	T_OK(t_wait_line_with(gate->err_path, from, 2, needles, 3000));
	/* within the snapshot's 250 ms it is still listed: the answer must not say killed */
	snprintf(q, sizeof(q), ".qgate.kill[%" PRId64 "]", id);
	act_err(ops, t_str(q), "qgate: no client with id");
	char path[64], *body;
	snprintf(path, sizeof(path), "/admin/kill?id=%" PRId64, id);
	int st = post(path, TOKEN, &body);
	cr_assert_eq(st, 404, "HTTP kill of a departed client: %d %s", st, body);
	free(body);
	/* a live one on the other worker: killed, and closed by the time of the answer */
	fd = other_worker_client(ops, &id);
	snprintf(q, sizeof(q), ".qgate.kill[%" PRId64 "]", id);
	act_ok(ops, t_str(q), "killed");
	T_OK(t_wait_closed(fd, 3000, NULL));
	close(fd);
	close(ops);
	stop_clean();
}

static int64_t served(struct t_proc *be)
{
	return mock_figure(be, ".mock.served");
}

#define N_PUMP 3
#define PUMP_DEPTH 200

/* Review 1 #10: `paused` comes once every worker applied the pause: with clients of the
 * other worker pumping requests, the backends serve at most what was in flight at the answer
 * (one request each: max_inflight 1), and .qgate.pools[] `outstanding` falls to 0 (the
 * operator's signal that the pause has drained). Repeated, as the window was short. */
Test(admin_actions, pause_answers_once_every_worker_stopped_sending, .timeout = 120.0)
{
	start(&(struct opts){ .workers = 2, .queue_timeout_ms = 0 });
	int ops = ops_connect(), fds[N_PUMP];
	int64_t id;

	for (int i = 0; i < N_PUMP; i++)
		fds[i] = other_worker_client(ops, &id);
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < N_PUMP; i++)
			for (int k = 0; k < PUMP_DEPTH; k++)
				T_OK(t_send_free(fds[i], T_SYNC, t_call(".mock.echo", 1,
									 t_long(k))));
		poll(NULL, 0, 5);
		act_ok(ops, t_str(".qgate.pause[`p]"), "paused");
		int64_t s0 = served(b1) + served(b2);
		/* wait for the drain the way an operator would */
		int64_t deadline = t_now_ms() + 3000, out = -1;
		while (t_now_ms() < deadline) {
			struct t_obj *t = t_call_ok(ops, t_str(".qgate.pools[]"), 5000);
			out = ((const int64_t *)column(t, "outstanding")->data)[0];
			t_free(t);
			if (out == 0)
				break;
			poll(NULL, 0, 20);
		}
		cr_assert_eq(out, 0, "round %d: outstanding %" PRId64 " after the pause", round, out);
		int64_t s1 = served(b1) + served(b2);
		poll(NULL, 0, 100);
		int64_t s2 = served(b1) + served(b2);
		cr_assert(s1 - s0 <= 2 && s2 == s1, "round %d: served %" PRId64 " at the answer, %"
			  PRId64 " after the drain, %" PRId64 " later", round, s0, s1, s2);
		act_ok(ops, t_str(".qgate.resume[`p]"), "running");
		/* every client gets all its answers, in order */
		for (int i = 0; i < N_PUMP; i++) {
			for (int k = 0; k < PUMP_DEPTH; k++) {
				struct t_obj *r = NULL;
				int type = -1;
				T_OK(t_q_recv(fds[i], 5000, &r, &type));
				cr_assert(r->type == -T_LONG && r->a.j == k, "client %d answer %d: %s",
					  i, k, t_show(r));
				t_free(r);
			}
		}
	}
	for (int i = 0; i < N_PUMP; i++)
		close(fds[i]);
	close(ops);
	stop_clean();
}
