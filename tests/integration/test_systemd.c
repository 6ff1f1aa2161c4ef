/*
 * test_systemd — qgate under systemd's eyes (issue #10), with the real binary on loopback:
 *   the notification protocol (gateway/notify.c): READY=1 only once the port accepts, the
 *   watchdog fed at about half WATCHDOG_USEC, RELOADING=1 then READY=1 around every SIGHUP
 *   (a refused file too, the old configuration still serving), STOPPING=1 on SIGTERM, the
 *   abstract-namespace socket form, and nothing changed without NOTIFY_SOCKET;
 *   the log formats (gateway/log.c): logfmt lines, JSON lines that stay valid JSON whatever a
 *   client's user name holds, and syslog priority prefixes when stderr is the journal.
 * The test plays systemd: it binds the datagram socket and sets the variables qgate reads.
 */
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

static struct t_proc *be, *gate;
static int gw_port;
static const char *cfg_path;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("JOURNAL_STREAM");
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(systemd, .init = setup, .fini = teardown, .timeout = 60.0);

/* A datagram socket bound where NOTIFY_SOCKET will say: a path, or "@name" (abstract). */
static int notify_socket(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	if (name[0] == '@') {
		/* abstract: a leading NUL, the length counts only the name */
		memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	} else {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", name);
		len = sizeof(sa);
	}
	cr_assert(bind(fd, (struct sockaddr *)&sa, len) == 0, "bind %s: %s", name, strerror(errno));
	setenv("NOTIFY_SOCKET", name, 1);
	return fd;
}

/* The next notification within timeout_ms into buf; 0, or -ETIMEDOUT. */
static int next_msg(int fd, char *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	ssize_t n = recv(fd, buf, cap - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/* Read until a message containing needle (returned in buf); WATCHDOG=1 messages seen on
 * the way are counted into *watchdogs (may be NULL). */
static int wait_msg(int fd, const char *needle, char *buf, size_t cap, int timeout_ms,
		    int *watchdogs)
{
	int64_t deadline = t_now_ms() + timeout_ms;

	while (t_now_ms() < deadline) {
		if (next_msg(fd, buf, cap, (int)(deadline - t_now_ms())) < 0)
			break;
		if (strstr(buf, needle))
			return 0;
		if (watchdogs && strcmp(buf, "WATCHDOG=1") == 0)
			(*watchdogs)++;
	}
	return -ETIMEDOUT;
}

static void write_cfg(const char *log_members)
{
	char *text = NULL;

	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":"
			   "\"b1\",\"address\":\"127.0.0.1:%d\"}]}],\"log\":{%s}}",
			   gw_port, be->port, log_members) > 0);
	T_OK(t_json_check(text));
	cfg_path = T_PTR(t_write_file("gw.json", text));
	free(text);
}

static void start_backend(void)
{
	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
}

static struct t_proc *start_qgate_raw(const char *name)
{
	char *argv[] = { (char *)T_PTR(t_bin("QGATE_BIN")), "-c", (char *)cfg_path, NULL };
	struct t_proc *p = t_proc_start(name, argv);

	cr_assert(p != NULL, "%s", t_errmsg());
	return p;
}

static void query_ok(int port, int64_t v)
{
	int fd = T_OK(t_q_connect("127.0.0.1", port, "u:pw", NULL));
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(v)), t_long(v), 5000);
	close(fd);
}

Test(systemd, ready_watchdog_reload_stop)
{
	char path[300], msg[4096];
	int wd = 0;

	start_backend();
	write_cfg("\"level\":\"info\"");
	snprintf(path, sizeof(path), "%s/notify.sock", t_env_dir());
	int nfd = notify_socket(path);
	setenv("WATCHDOG_USEC", "1000000", 1);
	gate = start_qgate_raw("gw");

	T_OK(wait_msg(nfd, "READY=1", msg, sizeof(msg), 10000, &wd));
	/* READY comes after the listeners are open: the port accepts at once */
	int fd = t_tcp_connect("127.0.0.1", gw_port, 200);
	cr_assert(fd >= 0, "READY=1 came before the port accepted: %s", t_errmsg());
	close(fd);
	cr_assert(strstr(msg, "STATUS="), "READY=1 without a status line: %s", msg);

	/* the watchdog: 1 s asked, so about one WATCHDOG=1 per 500 ms (a gap that misses the
	 * deadline is a stall of about a second, far beyond a busy machine's scheduling) */
	int64_t t0 = t_now_ms(), last = t0, max_gap = 0;
	wd = 0;
	while (t_now_ms() - t0 < 3500) {
		if (next_msg(nfd, msg, sizeof(msg), 1000) < 0)
			break;
		if (strcmp(msg, "WATCHDOG=1") == 0) {
			int64_t now = t_now_ms();
			if (now - last > max_gap)
				max_gap = now - last;
			last = now;
			wd++;
		}
	}
	cr_assert(wd >= 4 && wd <= 16, "%d WATCHDOG=1 in 3.5 s, want about 7", wd);
	cr_assert(max_gap < 950, "a gap of %lld ms between WATCHDOG=1 (interval 1 s)",
		  (long long)max_gap);

	/* a good reload: RELOADING=1 (with MONOTONIC_USEC) then READY=1 */
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(wait_msg(nfd, "RELOADING=1", msg, sizeof(msg), 5000, NULL));
	cr_assert(strstr(msg, "MONOTONIC_USEC="), "RELOADING=1 without MONOTONIC_USEC: %s", msg);
	T_OK(wait_msg(nfd, "READY=1", msg, sizeof(msg), 5000, NULL));
	cr_assert(strstr(msg, "reloaded"), "status after a good reload: %s", msg);

	/* a refused reload: READY=1 again, and the old configuration keeps serving */
	T_PTR(t_write_file("gw.json", "{\"listeners\": [oops"));
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(wait_msg(nfd, "RELOADING=1", msg, sizeof(msg), 5000, NULL));
	T_OK(wait_msg(nfd, "READY=1", msg, sizeof(msg), 5000, NULL));
	cr_assert(strstr(msg, "refused"), "status after a refused reload: %s", msg);
	query_ok(gw_port, 42);
	/* and the watchdog is still fed after reloads */
	wd = 0;
	wait_msg(nfd, "never", msg, sizeof(msg), 1500, &wd);
	cr_assert(wd >= 2, "%d WATCHDOG=1 in 1.5 s after the reloads", wd);

	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(wait_msg(nfd, "STOPPING=1", msg, sizeof(msg), 5000, NULL));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d", gate->status);
	close(nfd);
}

/* The watchdog belongs to qgate only when WATCHDOG_PID is unset or its own pid. */
Test(systemd, watchdog_pid_of_another_process_is_ignored)
{
	char path[300], msg[4096];
	int wd = 0;

	start_backend();
	write_cfg("\"level\":\"info\"");
	snprintf(path, sizeof(path), "%s/notify.sock", t_env_dir());
	int nfd = notify_socket(path);
	setenv("WATCHDOG_USEC", "200000", 1);
	setenv("WATCHDOG_PID", "1", 1);
	gate = start_qgate_raw("gw");
	T_OK(wait_msg(nfd, "READY=1", msg, sizeof(msg), 10000, NULL));
	wait_msg(nfd, "never", msg, sizeof(msg), 600, &wd);
	cr_assert(wd == 0, "%d WATCHDOG=1 sent for a watchdog meant for pid 1", wd);
	close(nfd);
}

Test(systemd, abstract_notify_socket)
{
	char name[108], msg[4096];

	start_backend();
	write_cfg("\"level\":\"info\"");
	snprintf(name, sizeof(name), "@qgate-test-notify-%d", (int)getpid());
	int nfd = notify_socket(name);
	gate = start_qgate_raw("gw");
	T_OK(wait_msg(nfd, "READY=1", msg, sizeof(msg), 10000, NULL));
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(wait_msg(nfd, "STOPPING=1", msg, sizeof(msg), 5000, NULL));
	close(nfd);
}

Test(systemd, without_notify_socket_nothing_changes)
{
	start_backend();
	write_cfg("\"level\":\"info\"");
	gate = t_qgate_start(cfg_path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	query_ok(gw_port, 7);
	size_t from = t_file_size(gate->err_path);
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(t_wait_file_contains(gate->err_path, from, "configuration reloaded", 5000));
	query_ok(gw_port, 8);
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0);
}

/* ------------------------------------------------------------------ log formats */

static int send_hello(int fd, const char *cred, size_t n)
{
	char buf[512];

	memcpy(buf, cred, n);
	buf[n] = 3;
	buf[n + 1] = 0;
	return t_send_all(fd, buf, n + 2);
}

/* Log in with user names a peer chooses: quotes, a newline with a forged line, backslashes,
 * control bytes, bytes >= 0x80 (valid and invalid UTF-8), and a long one; each then sends a
 * query so that it is logged (client ready, at debug). */
static void hostile_logins(void)
{
	static const char *const users[] = {
		"a\"b", "evil\nts=x level=error msg=\"forged\"", "back\\slash\\", "ctl\x01\x1f\x7f",
		"utf8-\xc3\xa9-\xe2\x82\xac", "bad-\x80\xff\xc3(-\xed\xa0\x80-\xf4\x90\x80\x80",
		"{\"json\":true}", "trunc-\xe2\x82",
	};
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		char cred[256];
		int n = snprintf(cred, sizeof(cred), "%s:pw", users[i]);
		int fd = T_OK(t_tcp_connect("127.0.0.1", gw_port, 3000));
		T_OK(send_hello(fd, cred, (size_t)n));
		uint8_t b;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert(poll(&p, 1, 5000) == 1 && recv(fd, &b, 1, 0) == 1, "no hello reply");
		close(fd);
	}
	/* a long one: the line is cut, and must still be one valid object */
	char big[400];
	memset(big, '"', sizeof(big) - 4);
	memcpy(big + sizeof(big) - 4, ":pw", 4);
	int fd = T_OK(t_tcp_connect("127.0.0.1", gw_port, 3000));
	T_OK(send_hello(fd, big, strlen(big)));
	close(fd);
}

Test(systemd, json_lines_stay_valid_json_with_hostile_user_names)
{
	start_backend();
	write_cfg("\"level\":\"debug\",\"format\":\"json\"");
	gate = t_qgate_start(cfg_path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	hostile_logins();
	query_ok(gw_port, 5);
	/* the evil user's line, then stop so everything is written */
	T_OK(t_wait_file_contains(gate->err_path, 0, "forged", 5000));
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));

	char *log = T_PTR(t_read_file(gate->err_path));
	int lines = 0, evil = 0, bad_utf8 = 0, ready = 0;
	for (char *p = log, *nl; p && *p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		json_error_t e;
		json_t *j = json_loads(p, JSON_REJECT_DUPLICATES, &e);
		cr_assert(j && json_is_object(j), "not a JSON object (%s): %s", e.text, p);
		cr_assert(json_is_string(json_object_get(j, "level")), "no level: %s", p);
		cr_assert(json_is_string(json_object_get(j, "ts")), "no ts: %s", p);
		cr_assert(json_is_string(json_object_get(j, "msg")), "no msg: %s", p);
		const char *u = json_string_value(json_object_get(j, "user"));
		const char *m = json_string_value(json_object_get(j, "msg"));
		if (u && strcmp(u, "evil\nts=x level=error msg=\"forged\"") == 0)
			evil++;
		if (u && strstr(u, "bad-\\x80\\xff"))
			bad_utf8++;
		if (strcmp(m, "qgate ready") == 0 &&
		    json_integer_value(json_object_get(j, "workers")) == 1)
			ready++;
		json_decref(j);
		lines++;
	}
	cr_assert(lines >= 10, "only %d lines", lines);
	cr_assert(evil >= 1, "the user name with a newline is not one field, decoded: %s",
		  t_tail(gate->err_path, 3000));
	cr_assert(bad_utf8 >= 1, "invalid UTF-8 is not shown as \\xNN text: %s",
		  t_tail(gate->err_path, 3000));
	cr_assert(ready == 1, "no {\"msg\":\"qgate ready\",\"workers\":1}");
	free(log);
}

Test(systemd, logfmt_lines)
{
	start_backend();
	write_cfg("\"level\":\"debug\"");
	gate = t_qgate_start(cfg_path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	hostile_logins();
	T_OK(t_wait_file_contains(gate->err_path, 0, "forged", 5000));
	char *log = T_PTR(t_read_file(gate->err_path));
	int lines = 0;
	for (char *p = log, *nl; p && *p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		char lvl[16] = "";
		cr_assert(strncmp(p, "ts=20", 5) == 0 && strlen(p) > 27 && p[26] == 'Z' &&
			  sscanf(p + 27, " level=%15s", lvl) == 1, "not ts=... level=...: %s", p);
		cr_assert(strcmp(lvl, "error") == 0 || strcmp(lvl, "warn") == 0 ||
			  strcmp(lvl, "info") == 0 || strcmp(lvl, "debug") == 0, "level %s", lvl);
		lines++;
	}
	cr_assert(lines >= 10);
	cr_assert(strstr(T_PTR(t_read_file(gate->err_path)), "level=info msg=\"qgate ready\""));
	free(log);
}

/* stderr is "the journal" when JOURNAL_STREAM names its device and inode, as systemd sets */
static void journal_run(bool is_match)
{
	char err[300], env[64];
	struct stat st;

	start_backend();
	write_cfg("\"level\":\"info\"");
	/* t_proc_start truncates <dir>/gw.err in place: the inode stays */
	snprintf(err, sizeof(err), "%s/gw.err", t_env_dir());
	FILE *f = fopen(err, "w");
	cr_assert(f);
	fclose(f);
	cr_assert(stat(err, &st) == 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + (is_match ? 0 : 1));
	setenv("JOURNAL_STREAM", env, 1);
	gate = start_qgate_raw("gw");
	T_OK(t_wait_accepting("127.0.0.1", gw_port, 10000, gate->pid));
	/* a backend that goes away gives warn lines */
	t_proc_kill(be);
	T_OK(t_wait_file_contains(gate->err_path, 0, "level=warn", 10000));
}

Test(systemd, journal_stream_gives_priority_prefixes)
{
	journal_run(true);
	char *log = T_PTR(t_read_file(gate->err_path));
	cr_assert(strstr(log, "<6>level=info msg=\"qgate ready\""), "%s", log);
	cr_assert(strstr(log, "<4>level=warn "), "%s", log);
	for (char *p = log, *nl; p && *p; p = nl ? nl + 1 : NULL) {
		nl = strchr(p, '\n');
		cr_assert(p[0] == '<' && p[2] == '>' && strchr("3467", p[1]) &&
			  strncmp(p + 3, "level=", 6) == 0, "line without <N>level=: %.200s", p);
	}
	free(log);
}

Test(systemd, journal_stream_of_another_file_is_ignored)
{
	journal_run(false);
	char *log = T_PTR(t_read_file(gate->err_path));
	cr_assert(strncmp(log, "ts=", 3) == 0 && !strstr(log, "<6>"), "%s", log);
	free(log);
}
