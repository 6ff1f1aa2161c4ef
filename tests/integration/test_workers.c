/*
 * test_workers — one gateway across workers (issue #8): with `workers: 2`, a Unix listener is
 * served by every worker (one socket, each worker accepting on its own dup of it), a reload
 * removes it from all of them (path unlinked once) and adds it back, and the admin tables over
 * q show every worker's clients and the same summed figures as /stats.
 *
 * Which worker took a client is read from qgate's debug log ("worker=N ... msg=accepted").
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

#define N_UNIX 20
#define MAX_CLIENTS 12	/* per worker: more than N_UNIX / 2, fewer than N_UNIX */

static struct t_proc *be, *gate;
static int gw_port, stats_port;
static char unix_path[200];

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = be = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(workers, .init = setup, .fini = teardown, .timeout = 60.0);

/*
 * The configuration: two workers, TCP listener main, a Unix listener local when unix_listen
 * is not NULL, stats, one pool p over mockq b1 (health checks off: they would count as
 * requests), and extra members (may be "").
 */
static char *gate_json(const char *unix_listen, const char *extra)
{
	char local[256] = "", *text = NULL;

	if (unix_listen)
		snprintf(local, sizeof(local), ",{\"name\":\"local\",\"listen\":\"%s\",\"pool\":\"p\"}",
			 unix_listen);
	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}%s],\"stats\":{\"listen\":"
			   "\"127.0.0.1:%d\"},\"pools\":[{\"name\":\"p\",\"health\":{\"interval_ms\":0},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":2}]}],\"limits\":{\"max_clients\":%d},"
			   "\"log\":{\"level\":\"debug\"}%s}",
			   gw_port, local, stats_port, be->port, MAX_CLIENTS, extra) > 0);
	T_OK(t_json_check(text));
	return text;
}

static void start_gate(const char *unix_listen, const char *extra)
{
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	be = T_PTR(t_mockq_start("b1", NULL));
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	char *text = gate_json(unix_listen, extra);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = T_PTR(t_qgate_start(path, gw_port));
}

/* Lines of qgate's log after byte from holding every needle. */
static int count_lines(size_t from, int n, const char *const needles[])
{
	char *log = T_PTR(t_read_file(gate->err_path));
	int count = 0;

	for (char *line = log + (from < strlen(log) ? from : strlen(log)), *next; *line;
	     line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		else
			next = line + strlen(line);
		bool is_all = true;
		for (int k = 0; k < n && is_all; k++)
			is_all = strstr(line, needles[k]) != NULL;
		count += is_all;
	}
	free(log);
	return count;
}

/* Clients worker k accepted on listener name, as logged after byte from. */
static int accepted_by(int k, const char *name, size_t from)
{
	char w[32], l[64];

	snprintf(w, sizeof(w), "worker=%d conn=", k);
	snprintf(l, sizeof(l), "listener=%s msg=\"accepted\"", name);
	const char *const needles[] = { w, l };
	return count_lines(from, 2, needles);
}

/* Rewrite gw.json whole (a new name, then rename, as docs/operations.md says), SIGHUP, and
 * wait until both workers have applied it. */
static void reload(const char *text)
{
	char final[300];
	size_t from = t_file_size(gate->err_path);
	const char *tmp = T_PTR(t_write_file("gw.json.new", text));
	const char *const needles[] = { "msg=\"configuration reloaded\"" };

	snprintf(final, sizeof(final), "%s/gw.json", t_env_dir());
	cr_assert(rename(tmp, final) == 0, "rename: %s", strerror(errno));
	T_OK(t_proc_signal(gate, SIGHUP));
	int64_t deadline = t_now_ms() + 5000;
	while (count_lines(from, 1, needles) < 2 && t_now_ms() < deadline)
		poll(NULL, 0, 10);
	cr_assert_eq(count_lines(from, 1, needles), 2, "both workers did not reload: %s",
		     t_tail(gate->err_path, 600));
}

/* Connect to the Unix socket at path: fd, or -errno. */
static int connect_path(const char *path)
{
	struct sockaddr_un su;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(su.sun_path)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	memcpy(su.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&su, sizeof(su)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* A q client over the Unix socket at path (handshake done). */
static int q_connect_path(const char *path, const char *cred)
{
	int fd = connect_path(path);

	cr_assert(fd >= 0, "connect %s: %s", path, strerror(-fd));
	int cap = t_q_handshake(fd, cred, 3, 3000);
	cr_assert(cap == 3, "handshake over %s: %d", path, cap);
	return fd;
}

/* ------------------------------------------------------- Unix listener, every worker */

/*
 * 20 clients over the abstract name with at most 12 per worker: served only if both workers
 * accept on it (worker 0 alone stops at 12: the rest would wait in the backlog), and each
 * worker's max_clients pausing hands the rest to the other.
 */
Test(workers, unix_listener_is_served_by_every_worker)
{
	int port = T_OK(t_free_abstract_port());
	char listen[64];
	int fds[N_UNIX];

	snprintf(listen, sizeof(listen), "unix:%d", port);
	start_gate(listen, "");	/* "qgate ready": every worker listens (no probe to count) */
	size_t from = t_file_size(gate->err_path);
	for (int i = 0; i < N_UNIX; i++) {
		fds[i] = t_q_connect_unix(port, "u:x", NULL);
		cr_assert(fds[i] >= 0, "unix client %d of %d not served (%s): %d taken by worker 0, "
			  "%d by worker 1", i + 1, N_UNIX, t_errmsg(), accepted_by(0, "local", from),
			  accepted_by(1, "local", from));
	}
	for (int i = 0; i < N_UNIX; i++)
		t_call_expect(fds[i], t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);
	int on0 = accepted_by(0, "local", from), on1 = accepted_by(1, "local", from);
	cr_assert(on0 > 0 && on1 > 0 && on0 + on1 == N_UNIX,
		  "unix clients accepted by worker 0: %d, worker 1: %d (want both, %d in all)", on0,
		  on1, N_UNIX);
	for (int i = 0; i < N_UNIX; i++)
		close(fds[i]);
}

/*
 * A Unix path listener: every worker listens on it; a reload that keeps it does not rebind
 * (same socket file); one that removes it closes it everywhere (connects refused, the file
 * gone, clients already in carry on); one that adds it back serves on every worker again.
 */
Test(workers, reload_removes_and_adds_a_unix_listener_on_every_worker)
{
	char listen[256];
	struct stat st0, st1;

	snprintf(unix_path, sizeof(unix_path), "%s/q.sock", t_env_dir());
	snprintf(listen, sizeof(listen), "unix:%s", unix_path);
	start_gate(listen, "");
	const char *const lis0[] = { "worker=0 listener=local", "msg=\"listening\"" };
	const char *const lis1[] = { "worker=1 listener=local", "msg=\"listening\"" };
	cr_assert(count_lines(0, 2, lis0) == 1 && count_lines(0, 2, lis1) == 1,
		  "both workers should listen on %s: %s", unix_path, t_tail(gate->err_path, 800));
	cr_assert(stat(unix_path, &st0) == 0, "no socket file at %s", unix_path);

	int kept = q_connect_path(unix_path, "k:x");
	t_call_expect(kept, t_call(".mock.echo", 1, t_long(1)), t_long(1), 5000);

	/* a reload that keeps the listener (rules added): the same socket file */
	char *text = gate_json(listen, ",\"rules\":[]");
	reload(text);
	free(text);
	cr_assert(stat(unix_path, &st1) == 0 && st1.st_ino == st0.st_ino,
		  "a reload that kept the listener rebound its socket");

	/* removed: refused at once on every worker, the file gone, the client in carries on */
	text = gate_json(NULL, "");
	reload(text);
	free(text);
	int64_t deadline = t_now_ms() + 3000;
	while (access(unix_path, F_OK) == 0 && t_now_ms() < deadline)
		poll(NULL, 0, 10);
	cr_assert(access(unix_path, F_OK) != 0 && errno == ENOENT,
		  "socket file %s still there after the listener was removed", unix_path);
	for (int i = 0; i < 10; i++) {
		int fd = connect_path(unix_path);
		cr_assert(fd < 0, "connect %d to a removed listener succeeded", i);
	}
	t_call_expect(kept, t_call(".mock.echo", 1, t_long(2)), t_long(2), 5000);

	/* added back: both workers listen again and serve */
	size_t from = t_file_size(gate->err_path);
	text = gate_json(listen, "");
	reload(text);
	free(text);
	cr_assert(count_lines(from, 2, lis0) == 1 && count_lines(from, 2, lis1) == 1,
		  "both workers should listen on %s again: %s", unix_path,
		  t_tail(gate->err_path, 800));
	int fds[N_UNIX];
	for (int i = 0; i < N_UNIX; i++)
		fds[i] = q_connect_path(unix_path, "u:x");
	for (int i = 0; i < N_UNIX; i++)
		t_call_expect(fds[i], t_call(".mock.echo", 1, t_long(i)), t_long(i), 5000);
	int on0 = accepted_by(0, "local", from), on1 = accepted_by(1, "local", from);
	cr_assert(on0 > 0 && on1 > 0, "after the re-add, worker 0 took %d, worker 1 %d", on0, on1);
	for (int i = 0; i < N_UNIX; i++)
		close(fds[i]);
	close(kept);

	/* SIGTERM: the last worker to let go removes the file */
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status 0x%x (a sanitizer report?): %s", gate->status,
		  t_tail(gate->err_path, 1500));
	cr_assert(access(unix_path, F_OK) != 0, "socket file %s left behind at exit", unix_path);
}

/* ----------------------------------------------------- admin tables, every worker */

/* Column name of admin table r (a q table): the vector, owned by r, or NULL. */
static const struct t_obj *find_column(const struct t_obj *r, const char *name)
{
	cr_assert(r->type == T_TABLE, "not a table: %s", t_show(r));
	const struct t_obj *d = r->items[0], *keys = d->items[0], *vals = d->items[1];

	for (uint64_t k = 0; k < keys->n; k++)
		if (strcmp(keys->syms[k], name) == 0)
			return vals->items[k];
	return NULL;
}

static const struct t_obj *column(const struct t_obj *r, const char *name)
{
	const struct t_obj *c = find_column(r, name);

	cr_assert(c != NULL, "table has no column %s: %s", name, t_show(r));
	return c;
}

/* Long column name of r, row i. */
static int64_t cell(const struct t_obj *r, const char *name, uint64_t i)
{
	const struct t_obj *c = column(r, name);

	cr_assert(c->type == T_LONG && i < c->n, "column %s: %s", name, t_show(c));
	return ((const int64_t *)c->data)[i];
}

static struct t_obj *admin(int fd, const char *call)
{
	struct t_obj *r = t_call_ok(fd, t_str(call), 5000);

	cr_assert(r->type == T_TABLE, "%s gave %s", call, t_show(r));
	return r;
}

/* /stats: pool p's and backend b1's request counts */
static void stats_requests(int64_t *pool, int64_t *backend)
{
	char *body = NULL;
	json_error_t e;

	cr_assert_eq(t_http_get(stats_port, "/stats", &body), 200, "%s", t_errmsg());
	json_t *j = json_loads(body, 0, &e);
	cr_assert(j != NULL, "bad /stats JSON (%s): %.200s", e.text, body);
	free(body);
	json_t *p = json_array_get(json_object_get(j, "pools"), 0);
	*pool = json_integer_value(json_object_get(p, "requests"));
	*backend = json_integer_value(json_object_get(json_array_get(json_object_get(p, "backends"),
								     0), "requests"));
	json_decref(j);
}

#define N_ADMIN_MIN 10
#define N_ADMIN_MAX 20	/* within both workers' max_clients */
#define CALLS 3

/*
 * Clients on both workers (TCP: SO_REUSEPORT spreads them; more are opened until the log shows
 * each worker took some): .qgate.clients[] lists all of them and the admin itself, with the
 * worker each is on, and .qgate.pools[], .qgate.backends[] and .qgate.stats[] count every
 * worker's requests, as /stats does — whichever worker answers the admin.
 */
Test(workers, admin_tables_show_every_worker)
{
	char *hash = T_PTR(t_hash_password("secret"));
	char auth[1024];
	int fds[N_ADMIN_MAX], n = 0;

	snprintf(auth, sizeof(auth), ",\"auth\":{\"users\":[{\"name\":\"ops\",\"password_hash\":"
		 "\"%s\",\"admin\":true},{\"name\":\"w\",\"password_hash\":\"%s\"}]}", hash, hash);
	free(hash);
	start_gate(NULL, auth);
	size_t from = t_file_size(gate->err_path);
	while (n < N_ADMIN_MIN || (n < N_ADMIN_MAX && (accepted_by(0, "main", from) == 0 ||
						       accepted_by(1, "main", from) == 0))) {
		fds[n] = T_OK(t_q_connect("127.0.0.1", gw_port, "w:secret", NULL));
		for (int k = 0; k < CALLS; k++)
			t_call_expect(fds[n], t_call(".mock.echo", 1, t_long(k)), t_long(k), 5000);
		n++;
	}
	int on0 = accepted_by(0, "main", from), on1 = accepted_by(1, "main", from);
	cr_assert(on0 > 0 && on1 > 0, "%d clients, all on one worker (%d, %d)", n, on0, on1);
	int ops = T_OK(t_q_connect("127.0.0.1", gw_port, "ops:secret", NULL));
	const int64_t want_clients = n + 1, want_requests = (int64_t)n * CALLS;

	/* other workers' parts come from snapshots (every 250 ms): poll, bounded */
	int64_t deadline = t_now_ms() + 3000, rows = -1, workers_seen = 0;
	int64_t pool_req = -1, be_req = -1, st_req = -1, st_clients = -1, st_workers = -1;
	int64_t http_pool = -1, http_be = -1;
	bool is_done = false;
	while (!is_done && t_now_ms() < deadline) {
		struct t_obj *c = admin(ops, ".qgate.clients[]");
		rows = (int64_t)column(c, "id")->n;
		workers_seen = 0;
		for (uint64_t i = 0; find_column(c, "worker") && i < (uint64_t)rows; i++)
			workers_seen |= INT64_C(1) << cell(c, "worker", i);
		t_free(c);
		struct t_obj *p = admin(ops, ".qgate.pools[]");
		pool_req = cell(p, "requests", 0);
		t_free(p);
		struct t_obj *b = admin(ops, ".qgate.backends[]");
		be_req = cell(b, "requests", 0);
		t_free(b);
		struct t_obj *s = admin(ops, ".qgate.stats[]");
		st_req = cell(s, "requests", 0);
		st_clients = cell(s, "clients", 0);
		st_workers = find_column(s, "workers") ? cell(s, "workers", 0) : -1;
		t_free(s);
		stats_requests(&http_pool, &http_be);
		is_done = rows == want_clients && workers_seen == 3 && pool_req == want_requests &&
			  be_req == want_requests && st_req == want_requests &&
			  st_clients == want_clients && st_workers == 2 &&
			  http_pool == want_requests && http_be == want_requests;
		if (!is_done)
			poll(NULL, 0, 50);
	}
	cr_assert_eq(rows, want_clients, ".qgate.clients[] lists %" PRId64 " clients, want %" PRId64
		     " (%d on worker 0, %d on worker 1, and the admin)", rows, want_clients, on0,
		     on1);
	cr_assert_eq(workers_seen, 3, ".qgate.clients[] shows workers (bits) %" PRId64,
		     workers_seen);
	cr_assert_eq(http_pool, want_requests, "/stats pool requests %" PRId64, http_pool);
	cr_assert_eq(http_be, want_requests, "/stats backend requests %" PRId64, http_be);
	cr_assert_eq(pool_req, http_pool, ".qgate.pools[] requests %" PRId64 ", /stats %" PRId64,
		     pool_req, http_pool);
	cr_assert_eq(be_req, http_be, ".qgate.backends[] requests %" PRId64 ", /stats %" PRId64,
		     be_req, http_be);
	cr_assert_eq(st_req, want_requests, ".qgate.stats[] requests %" PRId64, st_req);
	cr_assert_eq(st_clients, want_clients, ".qgate.stats[] clients %" PRId64, st_clients);
	cr_assert_eq(st_workers, 2, ".qgate.stats[] workers %" PRId64, st_workers);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(ops);
}

/* ------------------------------------------------ max_inflight slots across workers */

/*
 * Two workers share two backends of max_inflight 1. Before: a slot given back between one
 * worker's dispatch pass (which found none) and its look at the waiters bits woke nobody, and
 * that worker's queue was not looked at again; its clients failed with "qgate: queue
 * timeout" while the other worker's were answered in milliseconds (2-10 per 5 s qbench run).
 * Several runs of qbench must see no error at all with a queue timeout far above any wait.
 */
Test(workers, shared_slots_never_strand_a_workers_queue, .timeout = 120.0)
{
	const char *bin = t_bin("QBENCH_BIN");
	char *text = NULL, port_s[16];

	cr_assert(bin && t_bin("QGATE_BIN"), "%s", t_errmsg());
	be = T_PTR(t_mockq_start("b1", NULL));
	struct t_proc *be2 = T_PTR(t_mockq_start("b2", NULL));
	gw_port = T_OK(t_free_port());
	cr_assert(asprintf(&text,
			   "{\"workers\":2,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\","
			   "\"queue\":{\"max\":1000,\"timeout_ms\":1500},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\"},"
			   "{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\"}]}]}",
			   gw_port, be->port, be2->port) > 0);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = T_PTR(t_qgate_start(path, gw_port));
	snprintf(port_s, sizeof(port_s), "%d", gw_port);
	for (int run = 0; run < 4; run++) {
		char *out = NULL, *err = NULL;
		char *const argv[] = { (char *)bin, "--host", "127.0.0.1", "--port", port_s,
				       "--conns", "8", "--seconds", "3", "--json", NULL };
		int rc = t_run(argv, NULL, 30000, &out, &err);
		cr_assert_eq(rc, 0, "qbench exited %d: %s\nstdout: %s\nstderr: %s", rc,
			     t_errmsg(), out ? out : "", err ? err : "");
		json_error_t jerr;
		json_t *j = json_loads(out, JSON_DECODE_ANY, &jerr);
		cr_assert(j, "qbench --json output is not JSON (%s): %s", jerr.text, out);
		const char *zero[] = { "mismatches", "errors", "unexpected", "unanswered" };
		for (int k = 0; k < 4; k++)
			cr_assert_eq(json_integer_value(json_object_get(j, zero[k])), 0,
				     "run %d: %s: %s\nstderr: %s", run, zero[k], out, err);
		cr_assert(json_integer_value(json_object_get(j, "requests")) > 1000,
			  "run %d: too few requests: %s", run, out);
		json_decref(j);
		free(out);
		free(err);
	}
	cr_assert(t_proc_alive(gate), "qgate died under qbench");
}
