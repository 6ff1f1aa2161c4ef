/*
 * test_log_lines — issue #10 review: no name from the config or a peer can forge or break a
 * log line, with the real qgate, mockq and HTTP on loopback.
 *   Pool, backend and listener names and a backend address hold a newline, quotes, a
 *   backslash, '=', spaces and a whole forged line ("ts=... level=error msg=INJECTED").
 *   With traffic, a backend going down and coming back, a reload that adds and removes such
 *   pools, and an admin pause of one: every stderr line is strict logfmt (key=value pairs,
 *   values plain or quoted with \" \\ \n \t \xNN escapes, no key twice) or, with log.format
 *   json, one JSON object with no member twice; no line's msg is INJECTED; and the names read
 *   back from the lines are the names of the config, byte for byte.
 *   A long line (an admin action naming 255-byte hostile names, percent-encoded multibyte
 *   and control bytes over HTTP) keeps its msg, ends cleanly, and says truncated=true
 *   when it was cut.
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

#define TOKEN "log-token"
#define EVIL "x\" \\ = y\nts=2026-01-01T00:00:00.000Z level=error msg=INJECTED"

static struct t_proc *b1, *b2, *gate;
static int gw_port, stats_port;
static const char *cfg_path;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = b1 = b2 = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(log_lines, .init = setup, .fini = teardown, .timeout = 120.0);

/* ------------------------------------------------------------ a strict logfmt reader */

#define MAX_PAIRS 32

struct pair {
	char key[64];
	char val[4096];
};

/* One logfmt line into pairs: keys of [A-Za-z0-9_.-], values plain (printable ASCII but
 * space, '"' and '=') or quoted with the escapes gw_log_value writes. -1 when it is not. */
static int logfmt_parse(const char *p, struct pair *out, int max)
{
	int n = 0;

	while (*p) {
		if (n == max)
			return -1;
		struct pair *pr = &out[n++];
		size_t k = 0, v = 0;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-') {
			if (k + 1 >= sizeof(pr->key))
				return -1;
			pr->key[k++] = *p++;
		}
		pr->key[k] = '\0';
		if (k == 0 || *p++ != '=')
			return -1;
		if (*p == '"') {
			for (p++; *p != '"'; p++) {
				if (!*p || (unsigned char)*p < 0x20 || v + 2 >= sizeof(pr->val))
					return -1;
				if (*p != '\\') {
					pr->val[v++] = *p;
					continue;
				}
				p++;
				if (*p == '"' || *p == '\\') {
					pr->val[v++] = *p;
				} else if (*p == 'n') {
					pr->val[v++] = '\n';
				} else if (*p == 't') {
					pr->val[v++] = '\t';
				} else if (*p == 'x' && p[1] && p[2]) {
					unsigned x;
					char hex[3] = { p[1], p[2], 0 };
					if (sscanf(hex, "%2x", &x) != 1 || !strchr("0123456789abcdef", p[1]) ||
					    !strchr("0123456789abcdef", p[2]))
						return -1;
					pr->val[v++] = (char)x;
					p += 2;
				} else {
					return -1;
				}
			}
			p++;
		} else {
			while (*p && *p != ' ') {
				if (*p == '"' || *p == '=' || (unsigned char)*p <= 0x20 ||
				    (unsigned char)*p >= 0x7f || v + 1 >= sizeof(pr->val))
					return -1;
				pr->val[v++] = *p++;
			}
		}
		pr->val[v] = '\0';
		for (int i = 0; i < n - 1; i++)
			if (strcmp(out[i].key, pr->key) == 0)
				return -1;	/* a key twice: something forged one */
		if (*p == ' ' && p[1] && p[1] != ' ')
			p++;
		else if (*p)
			return -1;
	}
	return n;
}

static const char *pair_get(const struct pair *ps, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(ps[i].key, key) == 0)
			return ps[i].val;
	return NULL;
}

/* What the whole log says, read back: each line as its key/value pairs (JSON members as
 * strings, numbers and booleans as their text). */
struct line {
	struct pair *p;
	int n;
};

struct log {
	struct line *v;
	int n;
};

static void log_free(struct log *lg)
{
	for (int i = 0; i < lg->n; i++)
		free(lg->v[i].p);
	free(lg->v);
}

/* Every line of path, checked strictly for its format; fails the test on the first bad one. */
static struct log log_read(const char *path, bool is_json)
{
	char *text = T_PTR(t_read_file(path));
	struct log lg = { 0 };
	size_t len = strlen(text);

	cr_assert(len > 0 && text[len - 1] == '\n', "the log does not end with a newline");
	for (char *p = text, *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = '\0';
		struct pair *ps = calloc(MAX_PAIRS, sizeof(*ps));
		int n = 0;
		cr_assert(ps != NULL);
		if (is_json) {
			json_error_t e;
			json_t *j = json_loads(p, JSON_REJECT_DUPLICATES, &e);
			cr_assert(j && json_is_object(j), "not one JSON object (%s): %s", e.text, p);
			const char *k;
			json_t *v;
			json_object_foreach(j, k, v) {
				cr_assert(n < MAX_PAIRS);
				snprintf(ps[n].key, sizeof(ps[n].key), "%s", k);
				if (json_is_string(v))
					snprintf(ps[n].val, sizeof(ps[n].val), "%s", json_string_value(v));
				else if (json_is_integer(v))
					snprintf(ps[n].val, sizeof(ps[n].val), "%lld",
						 (long long)json_integer_value(v));
				else if (json_is_true(v))
					snprintf(ps[n].val, sizeof(ps[n].val), "true");
				else
					cr_assert_fail("member %s is not a string, integer or true: %s",
						       k, p);
				n++;
			}
			json_decref(j);
		} else {
			n = logfmt_parse(p, ps, MAX_PAIRS);
			cr_assert(n > 0, "not strict logfmt: %s", p);
			cr_assert(strcmp(ps[0].key, "ts") == 0 && strcmp(ps[1].key, "level") == 0,
				  "not ts=... level=...: %s", p);
		}
		const char *msg = pair_get(ps, n, "msg");
		cr_assert(msg != NULL, "no msg: %s", p);
		cr_assert(strcmp(msg, "INJECTED") != 0, "a forged line: %s", p);
		cr_assert(pair_get(ps, n, "level") != NULL && pair_get(ps, n, "ts") != NULL);
		lg.v = realloc(lg.v, (size_t)(lg.n + 1) * sizeof(*lg.v));
		cr_assert(lg.v != NULL);
		lg.v[lg.n++] = (struct line){ ps, n };
	}
	free(text);
	return lg;
}

/* Lines whose msg is msg and whose key holds exactly want (NULL: any). */
static int count(const struct log *lg, const char *msg, const char *key, const char *want)
{
	int c = 0;

	for (int i = 0; i < lg->n; i++) {
		const char *m = pair_get(lg->v[i].p, lg->v[i].n, "msg");
		const char *v = key ? pair_get(lg->v[i].p, lg->v[i].n, key) : NULL;
		if (m && strcmp(m, msg) == 0 && (!key || (v && (!want || strcmp(v, want) == 0))))
			c++;
	}
	return c;
}

/* ------------------------------------------------------------ the gateway */

/* pool P (listener L's) of b1 and b2; pool P2 with a backend at a hostile unix address that
 * nothing serves; second: P3 in P2's place. All names hostile. */
static const char *evil = " " EVIL;	/* what every name ends with */

static char *gate_json(bool is_json, bool is_second)
{
	char n[8][256];
	const char *const base[] = { "b1", "b2", "lis", "pool", "pool3", "pool2", "b3",
				     "unix:/nonexistent/q" };
	for (int i = 0; i < 8; i++)
		snprintf(n[i], sizeof(n[i]), "%s%s", base[i], evil);
	json_t *be = json_pack("[{s:s, s:s, s:i}, {s:s, s:s, s:i}]",
			       "name", n[0], "address", "", "connections", 1,
			       "name", n[1], "address", "", "connections", 1);
	char a1[64], a2[64], listen[64], sl[64];
	snprintf(a1, sizeof(a1), "127.0.0.1:%d", b1->port);
	snprintf(a2, sizeof(a2), "127.0.0.1:%d", b2->port);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", gw_port);
	snprintf(sl, sizeof(sl), "127.0.0.1:%d", stats_port);
	json_object_set_new(json_array_get(be, 0), "address", json_string(a1));
	json_object_set_new(json_array_get(be, 1), "address", json_string(a2));
	json_t *cfg = json_pack(
		"{s:i, s:[{s:s, s:s, s:s}], s:{s:s, s:s}, s:{s:s, s:s},"
		" s:[{s:s, s:o, s:{s:i, s:i}, s:{s:i}}, {s:s, s:[{s:s, s:s, s:i}], s:{s:i}}]}",
		"workers", 1,
		"listeners", "name", n[2], "listen", listen, "pool", n[3],
		"stats", "listen", sl, "token", TOKEN,
		"log", "level", "debug", "format", is_json ? "json" : "logfmt",
		"pools",
		"name", n[3], "backends", be, "reconnect", "delay_ms", 100, "max_delay_ms", 200,
		"health", "interval_ms", 0,
		"name", is_second ? n[4] : n[5], "backends",
		"name", n[6], "address", n[7], "connections", 1,
		"reconnect", "delay_ms", 100);
	cr_assert(cfg != NULL);
	char *text = json_dumps(cfg, JSON_COMPACT);
	json_decref(cfg);
	cr_assert(text != NULL);
	return text;
}

static void write_cfg(bool is_json, bool is_second)
{
	char *text = gate_json(is_json, is_second);
	cfg_path = T_PTR(t_write_file("gw.json", text));
	free(text);
}

static void query_ok(int64_t v)
{
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "u:pw", NULL));
	t_call_expect(fd, t_call(".mock.echo", 1, t_long(v)), t_long(v), 5000);
	close(fd);
}

/* POST path on the stats port with the token; the status code. */
static int post(const char *path)
{
	char req[4096], buf[8192];
	int fd = T_OK(t_tcp_connect("127.0.0.1", stats_port, 3000));
	int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
			 TOKEN "\r\n\r\n", path);
	cr_assert(n > 0 && (size_t)n < sizeof(req));
	T_OK(t_send_all(fd, req, (size_t)n));
	size_t len = 0;
	int64_t deadline = t_now_ms() + 5000;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - t_now_ms());
		cr_assert(left > 0 && poll(&p, 1, left) == 1, "POST %s: no answer", path);
		ssize_t k = recv(fd, buf + len, sizeof(buf) - len - 1, 0);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = '\0';
	int status = 0;
	cr_assert(sscanf(buf, "HTTP/1.1 %d", &status) == 1, "bad answer %.200s", buf);
	return status;
}

static void stop_clean(void)
{
	cr_assert(t_proc_alive(gate), "qgate died: %s", t_tail(gate->err_path, 800));
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d: %s", gate->status, t_tail(gate->err_path, 1500));
}

/* mockq b2 again, on its port */
static struct t_proc *restart_b2(int port)
{
	char link[300], port_s[16];
	snprintf(link, sizeof(link), "%s/be-under-test", t_env_dir());
	snprintf(port_s, sizeof(port_s), "%d", port);
	char *argv[] = { link, "--port", port_s, "--name", "b2", NULL };
	struct t_proc *p = T_PTR(t_proc_start("b2-again", argv));
	T_OK(t_wait_accepting("127.0.0.1", port, 10000, p->pid));
	p->port = port;
	return p;
}

/* Two backends and the gateway (the first config), its stats port accepting. */
static void start_all(bool is_json)
{
	b1 = T_PTR(t_mockq_start("b1", NULL));
	b2 = T_PTR(t_mockq_start("b2", NULL));
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	write_cfg(is_json, false);
	gate = T_PTR(t_qgate_start(cfg_path, gw_port));
	T_OK(t_wait_accepting("127.0.0.1", stats_port, 5000, gate->pid));
}

/* The whole run: start, traffic, b2 down and up, an admin pause and resume of the hostile
 * pool, a reload swapping P2 for P3, stop; then every line is read back. */
static void run(bool is_json)
{
	start_all(is_json);
	for (int i = 0; i < 6; i++)
		query_ok(i);

	int port2 = b2->port;
	t_proc_kill(b2);
	T_OK(t_wait_file_contains(gate->err_path, 0, "backend down", 5000));
	size_t from = t_file_size(gate->err_path);
	b2 = restart_b2(port2);
	T_OK(t_wait_file_contains(gate->err_path, from, "backend up", 10000));
	query_ok(7);

	/* the listener's pool by name, percent-encoded: "pool x\" \\ = y\n..." */
	char enc[512], path[600];
	size_t k = 0;
	for (const unsigned char *s = (const unsigned char *)"pool " EVIL; *s; s++)
		k += (size_t)snprintf(enc + k, sizeof(enc) - k, "%%%02X", *s);
	snprintf(path, sizeof(path), "/admin/pause?pool=%s", enc);
	cr_assert_eq(post(path), 200, "pause of the hostile pool refused");
	snprintf(path, sizeof(path), "/admin/resume?pool=%s", enc);
	cr_assert_eq(post(path), 200, "resume of the hostile pool refused");
	query_ok(8);

	write_cfg(is_json, true);
	from = t_file_size(gate->err_path);
	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(t_wait_file_contains(gate->err_path, from, "pool added by reload", 5000));
	query_ok(9);
	stop_clean();

	struct log lg = log_read(gate->err_path, is_json);
	cr_assert(lg.n >= 15, "only %d lines", lg.n);
	/* the names read back are the config's, byte for byte */
	cr_assert(count(&lg, "listening", "listener", "lis " EVIL) >= 1, "listener name");
	cr_assert(count(&lg, "listening", "pool", "pool " EVIL) >= 1, "listener's pool name");
	cr_assert(count(&lg, "backend up", "backend", "b1 " EVIL) >= 1, "backend b1's name");
	cr_assert(count(&lg, "backend down", "backend", "b2 " EVIL) == 1, "backend b2's name");
	cr_assert(count(&lg, "backend down", "pool", "pool " EVIL) == 1, "its pool's name");
	cr_assert(count(&lg, "connect failed", "address", "unix:/nonexistent/q " EVIL) >= 1,
		  "the hostile address");
	cr_assert(count(&lg, "pool removed by reload", "pool", "pool2 " EVIL) == 1);
	cr_assert(count(&lg, "pool added by reload", "pool", "pool3 " EVIL) == 1);
	cr_assert(count(&lg, "admin action", "arg", "pool " EVIL) == 2, "pause and resume");
	log_free(&lg);
}

Test(log_lines, hostile_names_logfmt)
{
	run(false);
}

Test(log_lines, hostile_names_json)
{
	run(true);
}

/* ------------------------------------------------------------ long lines */

/* A long admin action line: 255-byte names, multibyte and control bytes over HTTP (the
 * config's names are plain here: only the admin's names are long). */
static void long_names(bool is_json)
{
	evil = "-plain";
	start_all(is_json);

	/* 127 x U+00E9 and a newline: 255 bytes, 4 x 255 escaped in the arg, again in the
	 * outcome naming the unknown pool */
	char path[2048] = "/admin/pause?pool=";
	size_t o = strlen(path);
	for (int i = 0; i < 127; i++)
		o += (size_t)snprintf(path + o, sizeof(path) - o, "%%C3%%A9");
	snprintf(path + o, sizeof(path) - o, "%%0A");
	cr_assert_eq(post(path), 404, "an unknown pool");
	/* both names at 255 control bytes over HTTP: arg and outcome at their longest */
	char path2[2048] = "/admin/disable?pool=";
	o = strlen(path2);
	for (int i = 0; i < 255 && o + 8 < sizeof(path2); i++)
		o += (size_t)snprintf(path2 + o, sizeof(path2) - o, "%%01");
	o += (size_t)snprintf(path2 + o, sizeof(path2) - o, "&backend=");
	for (int i = 0; i < 255 && o + 8 < sizeof(path2); i++)
		o += (size_t)snprintf(path2 + o, sizeof(path2) - o, "%%22");
	int st = post(path2);
	cr_assert(st == 404 || st == 400, "disable of unknown names: %d", st);
	T_OK(t_wait_file_contains(gate->err_path, 0,
				  is_json ? "\"action\":\"disable\"" : "action=disable", 5000));
	query_ok(1);
	stop_clean();

	struct log lg = log_read(gate->err_path, is_json);
	char want[300];
	memset(want, 0, sizeof(want));
	for (int i = 0; i < 127; i++)
		memcpy(want + 2 * i, "\xc3\xa9", 2);
	want[254] = '\n';
	int pause = 0, disable = 0;
	for (int i = 0; i < lg.n; i++) {
		const struct line *l = &lg.v[i];
		const char *m = pair_get(l->p, l->n, "msg");
		if (strcmp(m, "admin action") != 0)
			continue;
		const char *action = pair_get(l->p, l->n, "action");
		cr_assert(action != NULL);
		const char *outcome = pair_get(l->p, l->n, "outcome");
		const char *arg = pair_get(l->p, l->n, "arg");
		const char *cut = pair_get(l->p, l->n, "truncated");
		if (strcmp(action, "pause") == 0) {
			pause++;
			cr_assert(arg && strcmp(arg, want) == 0, "the 255-byte name read back");
			cr_assert(outcome && strstr(outcome, "unknown pool"), "outcome lost");
			cr_assert(!cut, "a line that fits is not cut");
		} else if (strcmp(action, "disable") == 0) {
			disable++;
			/* cut or whole, it is well-formed (checked by log_read) and says which */
			cr_assert(cut == NULL || strcmp(cut, "true") == 0);
			cr_assert(cut != NULL || outcome != NULL, "outcome lost without truncated");
		}
	}
	cr_assert_eq(pause, 1);
	cr_assert_eq(disable, 1);
	log_free(&lg);
}

Test(log_lines, long_names_logfmt)
{
	long_names(false);
}

Test(log_lines, long_names_json)
{
	long_names(true);
}
