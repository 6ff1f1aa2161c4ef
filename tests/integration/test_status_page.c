/*
 * test_status_page — the status page (GET / on the stats port; issue #10 item 7) in a real
 * browser. qgate runs with two pools over real mockq backends: "main" (b1 up, down1 at a port
 * where nothing listens) and a pool and a backend with names written as markup. After some
 * traffic, headless Chromium loads the page and runs its script for 5 s of virtual time (the
 * page fetches /stats at 0, 2 and 4 s); the test reads the DOM Chromium dumps after that:
 * names and states, figures, hostile names as text (never elements), no error banner and no
 * console message at all (a CSP refusal or a script error would print one). With stats.token
 * set: the token in the fragment shows the data; none, or a wrong one, shows the prompt only.
 * The page's own headers (type, CSP naming the script's real hash, nosniff, no-store) are
 * checked over raw HTTP.
 *
 * Chromium is CHROMIUM_BIN or `chromium` on PATH (Debian package chromium); it runs under
 * coreutils timeout (its own process group, killed whole when late) with a fresh profile in
 * the test's directory, which t_env_fini removes.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "tests/support/t_crit.h"

#define HOSTILE_POOL "<img src=x onerror=alert(1)>"
#define HOSTILE_POOL_DOM "&lt;img src=x onerror=alert(1)&gt;"
#define HOSTILE_BE "<script>alert(2)</script>&amp;"
#define HOSTILE_BE_DOM "&lt;script&gt;alert(2)&lt;/script&gt;&amp;amp;"
#define TOKEN "s3cret-T0k_en"

static struct t_proc *gate;
static int q_main, q_odd, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

/* browsers on a 2-core machine shared with other tests: generous, but bounded */
TestSuite(status_page, .init = setup, .fini = teardown, .timeout = 120.0);

/* A program on PATH (execv needs a path), or NULL. */
static const char *on_path(const char *prog)
{
	static char found[4][512];
	static unsigned slot;
	char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	char *save = NULL, *res = NULL;

	cr_assert(path != NULL);
	for (char *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *f = found[slot % 4];
		snprintf(f, sizeof(found[0]), "%s/%s", d, prog);
		if (access(f, X_OK) == 0) {
			slot++;
			res = f;
			break;
		}
	}
	free(path);
	return res;
}

/* One raw HTTP exchange with the stats port: the whole answer (head and body), malloc'd. */
static char *http_raw(const char *request)
{
	size_t got = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	int fd = T_OK(t_tcp_connect("127.0.0.1", stats_port, 2000));

	cr_assert(buf != NULL);
	T_OK(t_send_all(fd, request, strlen(request)));
	/* one answer per connection, then the server closes: read to EOF, bounded */
	for (int i = 0; i < 1000; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		cr_assert(poll(&pfd, 1, 5000) == 1, "no answer to %.40s within 5 s", request);
		if (got + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf != NULL);
		}
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return buf;
}

static int status_of(const char *answer)
{
	int st = 0;

	return sscanf(answer, "HTTP/1.1 %d", &st) == 1 ? st : -1;
}

/* The value of header name in answer (up to its CR), copied into out; false if absent. */
static bool header(const char *answer, const char *name, char *out, size_t out_n)
{
	size_t nl = strlen(name);
	const char *end = strstr(answer, "\r\n\r\n");

	for (const char *l = strstr(answer, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, name, nl) == 0 && l[2 + nl] == ':') {
			const char *v = l + 2 + nl + 1;
			v += strspn(v, " ");
			snprintf(out, out_n, "%.*s", (int)strcspn(v, "\r"), v);
			return true;
		}
	}
	return false;
}

/* The state /stats gives backend b of pool p (static copy; "" when not found). */
static const char *stats_state(const char *token, int p, int b)
{
	static char st[32];
	char req[256];

	snprintf(req, sizeof(req), "GET /stats HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n",
		 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
	char *a = http_raw(req);
	const char *body = strstr(a, "\r\n\r\n");
	json_t *root = body ? json_loads(body + 4, 0, NULL) : NULL;
	const char *s = json_string_value(json_object_get(json_array_get(json_object_get(
		json_array_get(json_object_get(root, "pools"), (size_t)p), "backends"),
		(size_t)b), "state"));
	snprintf(st, sizeof(st), "%s", s ? s : "");
	json_decref(root);
	free(a);
	return st;
}

/*
 * qgate with listener main -> pool main {b1 (mockq), down1 (nothing there)} and listener odd
 * -> pool HOSTILE_POOL {HOSTILE_BE (mockq)}; stats.token when token is not NULL. Sends a few
 * requests through each listener and waits until /stats shows b1 up and down1 down.
 */
static void start_gate(const char *token)
{
	struct t_proc *b1 = T_PTR(t_mockq_start("b1", NULL));
	struct t_proc *b2 = T_PTR(t_mockq_start("b2", NULL));
	int nobody = T_OK(t_free_port());
	char tok[128] = "";
	char *text = NULL;

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	q_main = T_OK(t_free_port());
	q_odd = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	if (token)
		snprintf(tok, sizeof(tok), ",\"token\":\"%s\"", token);
	cr_assert(asprintf(&text,
		"{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"main\"},"
		"{\"name\":\"odd\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"" HOSTILE_POOL "\"}],"
		"\"stats\":{\"listen\":\"127.0.0.1:%d\"%s},"
		/* down1 stays down once refused: no reconnect (a brief "connecting") in the test */
		"\"pools\":[{\"name\":\"main\",\"health\":{\"interval_ms\":0},"
		"\"reconnect\":{\"delay_ms\":60000,\"max_delay_ms\":60000},\"backends\":["
		"{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\",\"connections\":2},"
		"{\"name\":\"down1\",\"address\":\"127.0.0.1:%d\",\"connections\":1}]},"
		"{\"name\":\"" HOSTILE_POOL "\",\"health\":{\"interval_ms\":0},\"backends\":["
		"{\"name\":\"" HOSTILE_BE "\",\"address\":\"127.0.0.1:%d\",\"connections\":1}]}]}",
		q_main, q_odd, stats_port, tok, b1->port, nobody, b2->port) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = t_qgate_start(path, q_main);
	cr_assert(gate != NULL, "%s", t_errmsg());
	T_OK(t_wait_accepting("127.0.0.1", stats_port, 5000, gate->pid));

	int ports[2] = { q_main, q_odd };
	for (int i = 0; i < 2; i++) {
		int fd = T_OK(t_q_connect("127.0.0.1", ports[i], NULL, NULL));
		for (int k = 0; k < 20; k++)
			t_free(t_call_ok(fd, t_str("1+1"), 5000));
		close(fd);
	}
	/* down1 is "connecting" until its first attempt is refused */
	int64_t until = t_now_ms() + 5000;
	while (strcmp(stats_state(token, 0, 1), "down") != 0 ||
	       strcmp(stats_state(token, 0, 0), "up") != 0) {
		cr_assert(t_now_ms() < until, "down1 not down / b1 not up within 5 s: %s, %s",
			  stats_state(token, 0, 1), stats_state(token, 0, 0));
		poll(NULL, 0, 20);
	}
}

struct browser {
	char *dom;	/* the DOM after the script ran */
	char *err;	/* Chromium's log (console messages included) */
};

/* Load url in headless Chromium for 5 s of virtual time; its DOM and log. */
static struct browser browse(const char *url)
{
	static unsigned n;
	const char *chromium = getenv("CHROMIUM_BIN");
	const char *tmo = on_path("timeout");
	char profile[512], profile_arg[600];
	struct browser b = { 0 };

	if (!chromium || !*chromium)
		chromium = on_path("chromium");
	cr_assert(chromium != NULL, "chromium not found (Debian package chromium, or set "
		  "CHROMIUM_BIN)");
	cr_assert(tmo != NULL, "coreutils timeout not found");
	/* a fresh profile each time, inside the test's directory (removed with it) */
	snprintf(profile, sizeof(profile), "%s/chromium-profile-%u", t_env_dir(), n++);
	snprintf(profile_arg, sizeof(profile_arg), "--user-data-dir=%s", profile);
	/* timeout puts Chromium in its own process group and kills all of it when late */
	char *const argv[] = {
		(char *)tmo, "-k", "5", "60", (char *)chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		/* without these Chromium calls home (refused connections here, slow runs) */
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		profile_arg, "--enable-logging=stderr", "--v=0",
		/* virtual time: timers run fast, and waits for fetches in flight */
		"--virtual-time-budget=5000", "--dump-dom", (char *)url, NULL,
	};
	int rc = t_run(argv, NULL, 75000, &b.dom, &b.err);
	size_t el = b.err ? strlen(b.err) : 0;
	cr_assert(rc == 0, "chromium exited %d (%s); its log ends: %s", rc, t_errmsg(),
		  b.err ? b.err + (el > 1500 ? el - 1500 : 0) : "");
	cr_assert(b.dom != NULL && b.err != NULL);
	cr_assert(strstr(b.dom, "</html>") != NULL, "no DOM from chromium: %.300s\nlog: %.2000s",
		  b.dom, b.err);
	/* the page's own script text would match the searches below: what it rendered counts */
	char *s = strstr(b.dom, "<script>"), *e = s ? strstr(s, "</script>") : NULL;
	cr_assert(e != NULL, "the page's script is gone: %s", b.dom);
	memmove(s, e + strlen("</script>"), strlen(e + strlen("</script>")) + 1);
	cr_assert(strstr(b.dom, "<script") == NULL, "a second script element: %s", b.dom);
	return b;
}

static void browser_free(struct browser *b)
{
	free(b->dom);
	free(b->err);
}

/* Chromium's console lines ("INFO:CONSOLE..."), or "" when none. */
static const char *console_lines(const char *log)
{
	static char out[2048];
	size_t used = 0;

	out[0] = '\0';
	for (const char *l = strstr(log, ":CONSOLE"); l; l = strstr(l + 1, ":CONSOLE")) {
		int len = (int)strcspn(l, "\n");
		int w = snprintf(out + used, sizeof(out) - used, "%.*s\n", len, l);
		if (w < 0 || (size_t)w >= sizeof(out) - used)
			break;
		used += (size_t)w;
	}
	return out;
}

/* The DOM text of the table row holding the backend whose name cell is name_dom. */
static char *backend_row(const char *dom, const char *name_dom)
{
	char cell[256];

	snprintf(cell, sizeof(cell), ">%s</td>", name_dom);
	const char *at = strstr(dom, cell);
	cr_assert(at != NULL, "backend %s not in the page:\n%s", name_dom, dom);
	const char *start = at;
	while (start > dom && strncmp(start, "<tr", 3) != 0)
		start--;
	const char *end = strstr(at, "</tr>");
	cr_assert(end != NULL);
	return strndup(start, (size_t)(end - start));
}

static void expect_state(const char *dom, const char *name_dom, const char *state)
{
	char want[64];
	char *row = backend_row(dom, name_dom);

	snprintf(want, sizeof(want), "st-%s\">%s</span>", state, state);
	cr_assert(strstr(row, want) != NULL, "backend %s: want state %s in its row: %s", name_dom,
		  state, row);
	free(row);
}

/* The page showing the data of start_gate's gateway, fully and safely. */
static void expect_data(const struct browser *b)
{
	const char *dom = b->dom;

	cr_assert(strstr(dom, "<body data-state=\"ok\">") != NULL,
		  "the page did not reach state ok:\n%s\nlog: %s", dom, console_lines(b->err));
	cr_assert(strstr(dom, "<div id=\"banner\" class=\"banner\" hidden=\"\"></div>") != NULL,
		  "an error banner is shown:\n%s", dom);
	cr_assert(strstr(dom, "<form id=\"auth\" hidden=\"\">") != NULL, "the token prompt shows");
	cr_assert_str_empty(console_lines(b->err), "console messages (script error or CSP "
			    "refusal?):\n%s", console_lines(b->err));
	/* pools, by name, with their state */
	cr_assert(strstr(dom, "<span class=\"pool-name\">main</span>") != NULL, "%s", dom);
	cr_assert(strstr(dom, "<span class=\"pool-name\">" HOSTILE_POOL_DOM "</span>") != NULL,
		  "the hostile pool name is not shown as text:\n%s", dom);
	/* backends with their states */
	expect_state(dom, "b1", "up");
	expect_state(dom, "down1", "down");
	expect_state(dom, HOSTILE_BE_DOM, "up");
	/* markup in names stays text: no element of theirs made it into the DOM */
	cr_assert(strstr(dom, "<img") == NULL, "an <img> element in the DOM:\n%s", dom);
	/* figures: requests counted (20 each), a rate from two refreshes, latency, listeners */
	cr_assert(strstr(dom, "requests <b>20</b>") != NULL, "pool requests not 20:\n%s", dom);
	cr_assert(strstr(dom, "req/s <b>0.0</b>") != NULL, "no rate (needs two refreshes):\n%s",
		  dom);
	cr_assert(strstr(dom, "p50 <b>") != NULL && strstr(dom, "p50 <b>–</b>") == NULL,
		  "no latency:\n%s", dom);
	cr_assert(strstr(dom, ">odd</td>") != NULL, "listener odd missing:\n%s", dom);
}

/* The prompt for a token, and nothing of the gateway's data. */
static void expect_prompt(const struct browser *b, const char *msg)
{
	const char *dom = b->dom;

	cr_assert(strstr(dom, "<body data-state=\"auth\">") != NULL, "not asking for a token:\n%s",
		  dom);
	cr_assert(strstr(dom, "<form id=\"auth\">") != NULL, "the token form is hidden:\n%s", dom);
	cr_assert(strstr(dom, msg) != NULL, "want \"%s\":\n%s", msg, dom);
	cr_assert(strstr(dom, "down1") == NULL && strstr(dom, "b1<") == NULL &&
		  strstr(dom, "pool-name") == NULL, "data shown without the token:\n%s", dom);
}

static char *page_url(const char *fragment)
{
	char *url = NULL;

	cr_assert(asprintf(&url, "http://127.0.0.1:%d/%s", stats_port, fragment) > 0);
	return url;
}

/* ---------------------------------------------------------------- tests */

Test(status_page, headers_csp_hash_and_token_rules)
{
	char v[1024];

	start_gate(TOKEN);
	/* the page itself needs no token: it is static */
	char *a = http_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(status_of(a), 200, "%.300s", a);
	cr_assert(header(a, "Content-Type", v, sizeof(v)));
	cr_assert_str_eq(v, "text/html; charset=utf-8");
	cr_assert(header(a, "Cache-Control", v, sizeof(v)));
	cr_assert_str_eq(v, "no-store");
	cr_assert(header(a, "X-Content-Type-Options", v, sizeof(v)));
	cr_assert_str_eq(v, "nosniff");
	cr_assert(header(a, "Content-Security-Policy", v, sizeof(v)), "no CSP:\n%.600s", a);
	cr_assert(strstr(v, "default-src 'none'") && strstr(v, "connect-src 'self'"), "%s", v);
	cr_assert(!strstr(v, "unsafe"), "CSP allows unsafe-*: %s", v);

	/* the CSP names the hash of the script actually served (else the page runs nothing) */
	const char *body = strstr(a, "\r\n\r\n") + 4;
	const char *s = strstr(body, "<script>"), *e = s ? strstr(s, "</script>") : NULL;
	cr_assert(s && e && !strstr(e + 1, "<script"), "want one inline script");
	s += strlen("<script>");
	unsigned char md[32], b64[64], want[128];
	unsigned int mdlen = 0;
	cr_assert(EVP_Digest(s, (size_t)(e - s), md, &mdlen, EVP_sha256(), NULL) == 1);
	EVP_EncodeBlock(b64, md, (int)mdlen);
	snprintf((char *)want, sizeof(want), "script-src 'sha256-%s'", b64);
	cr_assert(strstr(v, (char *)want), "CSP %s\nlacks %s", v, want);
	/* self-contained: nothing from the net */
	cr_assert(!strstr(body, "http://") && !strstr(body, "https://"), "external URL in page");
	free(a);

	/* a query string is still the page; /stats and /metrics still need the token */
	a = http_raw("GET /?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(status_of(a), 200);
	free(a);
	a = http_raw("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(status_of(a), 401, "%.200s", a);
	free(a);
	a = http_raw("GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN "\r\n\r\n");
	cr_assert_eq(status_of(a), 200, "%.200s", a);
	free(a);
	a = http_raw("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(status_of(a), 401, "%.200s", a);
	free(a);
	/* a request that arrives in pieces is still answered with the whole page */
	int fd = T_OK(t_tcp_connect("127.0.0.1", stats_port, 2000));
	static const char *const pieces[] = { "GET / HT", "TP/1.1\r\nHost: x\r\n", "\r\n" };
	for (int i = 0; i < 3; i++) {
		if (i)
			poll(NULL, 0, 50);
		T_OK(t_send_all(fd, pieces[i], strlen(pieces[i])));
	}
	char buf[65536];
	size_t got = 0;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		cr_assert(poll(&pfd, 1, 5000) == 1, "no answer to a request sent in pieces");
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		cr_assert(got < sizeof(buf) - 1, "answer too large");
	}
	close(fd);
	buf[got] = '\0';
	cr_assert_eq(status_of(buf), 200, "%.200s", buf);
	cr_assert(strstr(buf, "</html>") != NULL, "the page was cut: %zu bytes", got);
	/* only "/" is the page */
	a = http_raw("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(status_of(a), 404, "%.200s", a);
	free(a);
}

/* "GET path" with a Cookie header padded so the whole head is exactly head_n bytes */
static char *head_of(const char *path, const char *token, size_t head_n)
{
	char start[256];
	int n = snprintf(start, sizeof(start), "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%sCookie: c=",
			 path, token ? "Authorization: Bearer " : "", token ? token : "",
			 token ? "\r\n" : "");
	char *req = malloc(head_n + 1);

	cr_assert(req && (size_t)n + 4 < head_n);
	memcpy(req, start, (size_t)n);
	memset(req + n, 'v', head_n - (size_t)n - 4);
	memcpy(req + head_n - 4, "\r\n\r\n", 4);
	req[head_n] = '\0';
	return req;
}

/* A browser sends every cookie of the host to the stats port too: a head of up to 8191
 * bytes is served; one byte more is 431 with a message naming the cap (review 2 #12). */
Test(status_page, large_cookie_headers_are_served_up_to_the_cap)
{
	start_gate(TOKEN);
	static const size_t ok_sizes[] = { 2100, 4000, 7000, 8191 };
	for (size_t i = 0; i < sizeof(ok_sizes) / sizeof(ok_sizes[0]); i++) {
		char *req = head_of("/", NULL, ok_sizes[i]);
		char *a = http_raw(req);
		cr_assert_eq(status_of(a), 200, "GET / with a %zu-byte head: %.200s", ok_sizes[i], a);
		cr_assert(strstr(a, "</html>"), "GET / with a %zu-byte head: page cut", ok_sizes[i]);
		free(a);
		free(req);
		req = head_of("/stats", TOKEN, ok_sizes[i]);
		a = http_raw(req);
		cr_assert_eq(status_of(a), 200, "GET /stats with a %zu-byte head: %.200s",
			     ok_sizes[i], a);
		free(a);
		free(req);
	}
	char *req = head_of("/", NULL, 8192);
	char *a = http_raw(req);
	cr_assert_eq(status_of(a), 431, "an 8192-byte head: %.200s", a);
	cr_assert(strstr(a, "request header section over 8191 bytes"), "%.300s", a);
	free(a);
	free(req);
	/* still serving afterwards */
	a = http_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(status_of(a), 200);
	free(a);
}

Test(status_page, browser_shows_pools_backends_states_without_token)
{
	start_gate(NULL);
	char *url = page_url("");
	struct browser b = browse(url);

	expect_data(&b);
	browser_free(&b);
	free(url);
}

Test(status_page, browser_token_from_fragment_shows_data)
{
	start_gate(TOKEN);
	char *url = page_url("#token=" TOKEN);
	struct browser b = browse(url);

	expect_data(&b);
	browser_free(&b);
	free(url);
}

Test(status_page, browser_without_or_with_wrong_token_shows_prompt_only)
{
	start_gate(TOKEN);
	char *url = page_url("");
	struct browser b = browse(url);

	expect_prompt(&b, "stats need its token");
	browser_free(&b);
	free(url);

	url = page_url("#token=wrong");
	b = browse(url);
	expect_prompt(&b, "That token was refused");
	browser_free(&b);
	free(url);
}
