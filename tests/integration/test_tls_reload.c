/*
 * test_tls_reload — issue #9 item 4, "reload what operators rotate": SIGHUP re-reads TLS
 * certificate, key and CA files even when their paths did not change. Real processes on
 * loopback: certificates are made with the openssl CLI in the test's directory, rotated by
 * overwriting the same paths, and `openssl s_client` shows which certificate a new
 * connection gets. A TLS q client connected before the reload must keep getting answers; a
 * file that no longer loads keeps the previous context and the log says which and why.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tests/support/t_crit.h"

static struct t_proc *be, *gate;
static int tls_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	be = gate = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(tls_reload, .init = setup, .fini = teardown, .timeout = 60.0);

static const char *in_dir(const char *name)
{
	static char paths[8][300];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, sizeof(paths[0]), "%s/%s", t_env_dir(), name);
	return p;
}

/* A self-signed certificate for localhost whose subject CN is cn, at crt/key. */
static void make_cert(const char *cn, const char *crt, const char *key)
{
	char subj[64], *out = NULL, *err = NULL;

	snprintf(subj, sizeof(subj), "/CN=%s", cn);
	char *const gen[] = { "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
			      "-keyout", (char *)key, "-out", (char *)crt, "-days", "2", "-subj",
			      subj, "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", NULL };
	int rc = t_run(gen, NULL, 30000, &out, &err);
	cr_assert_eq(rc, 0, "openssl req failed (%d): %s", rc, err ? err : t_errmsg());
	free(out);
	free(err);
}

/* Overwrite dst in place (same path, same inode) with src's bytes, as `cp` would. */
static void overwrite(const char *dst, const char *src)
{
	char *text = T_PTR(t_read_file(src));
	FILE *f = fopen(dst, "w");

	cr_assert(f != NULL, "cannot open %s: %s", dst, strerror(errno));
	cr_assert(fputs(text, f) >= 0 && fclose(f) == 0);
	free(text);
}

static void overwrite_text(const char *dst, const char *text)
{
	FILE *f = fopen(dst, "w");

	cr_assert(f != NULL, "cannot open %s: %s", dst, strerror(errno));
	cr_assert(fputs(text, f) >= 0 && fclose(f) == 0);
}

/* qgate with one TLS listener "tls" on cert/key, in front of one plain mockq. */
static void start_tls_gate(const char *crt, const char *key)
{
	char *text = NULL;

	be = T_PTR(t_mockq_start("b1", NULL));
	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	tls_port = T_OK(t_free_port());
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"tls\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\",\"tls\":{\"cert_file\":\"%s\",\"key_file\":\"%s\"}}],"
			   "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"b1\",\"address\":"
			   "\"127.0.0.1:%d\",\"connections\":1}]}]}", tls_port, crt, key,
			   be->port) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = T_PTR(t_qgate_start(path, tls_port));
}

/* The subject line `openssl s_client` prints for a fresh connection to the gateway. */
static char *peer_subject(void)
{
	char port[16], *out = NULL, *err = NULL;

	snprintf(port, sizeof(port), "127.0.0.1:%d", tls_port);
	char *const argv[] = { "/usr/bin/openssl", "s_client", "-connect", port, "-servername",
			       "localhost", NULL };
	int rc = t_run(argv, "", 15000, &out, &err);
	cr_assert(rc >= 0, "openssl s_client did not run: %s", t_errmsg());
	char *s = out ? strstr(out, "subject=") : NULL;
	cr_assert(s != NULL, "openssl s_client shows no certificate (rc %d): %s %s", rc,
		  out ? out : "", err ? err : "");
	char *subject = strndup(s, strcspn(s, "\n"));
	free(out);
	free(err);
	return subject;
}

static void expect_cn(const char *cn, const char *why)
{
	char *subject = peer_subject();

	cr_assert(strstr(subject, cn) != NULL, "%s: a new connection sees %s, want CN %s", why,
		  subject, cn);
	free(subject);
}

/* ---------------------------------------------------------- a TLS q client */

struct tls_client {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
};

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

static void tls_client_open(struct tls_client *tc)
{
	uint8_t cap = 0xff;
	struct timeval tv = { .tv_sec = 5 };

	tc->ctx = SSL_CTX_new(TLS_client_method());
	cr_assert(tc->ctx != NULL);
	tc->fd = T_OK(t_tcp_connect("127.0.0.1", tls_port, 2000));
	/* a gateway that stops answering fails the test instead of hanging it */
	setsockopt(tc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	tc->ssl = SSL_new(tc->ctx);
	SSL_set_fd(tc->ssl, tc->fd);
	cr_assert(SSL_connect(tc->ssl) == 1, "TLS handshake with the gateway failed");
	cr_assert(tls_send_all(tc->ssl, "tls:x\3", 7) == 0);	/* user, capability 3, NUL */
	cr_assert(tls_recv_n(tc->ssl, &cap, 1) == 0 && cap == 3, "capability %d", cap);
}

/* .mock.echo[v] through the client's connection must answer v. */
static void tls_client_echo(struct tls_client *tc, int64_t v, const char *when)
{
	uint8_t *msg, hdr[8], body[64];
	size_t len;
	struct t_obj *req = t_call(".mock.echo", 1, t_long(v));

	T_OK(t_encode_msg(req, T_SYNC, &msg, &len));
	t_free(req);
	cr_assert(tls_send_all(tc->ssl, msg, len) == 0, "%s: cannot send", when);
	free(msg);
	cr_assert(tls_recv_n(tc->ssl, hdr, 8) == 0, "%s: the client connected before the "
		  "reload gets no answer", when);
	uint32_t n = (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
		     (uint32_t)hdr[7] << 24;
	cr_assert(n == 17 && hdr[1] == T_RESPONSE, "%s: answer header n=%u type=%d", when, n,
		  hdr[1]);
	cr_assert(tls_recv_n(tc->ssl, body, n - 8) == 0);
	int64_t got;
	memcpy(&got, body + 1, sizeof(got));
	cr_assert(body[0] == 0xf9 && got == v, "%s: answer %02x %" PRId64 ", want %" PRId64, when,
		  body[0], got, v);
}

static void tls_client_close(struct tls_client *tc)
{
	SSL_free(tc->ssl);
	close(tc->fd);
	SSL_CTX_free(tc->ctx);
}

/* SIGHUP and wait until the worker has applied the file (its reload line comes last). */
static size_t reload(void)
{
	size_t from = t_file_size(gate->err_path);

	T_OK(t_proc_signal(gate, SIGHUP));
	T_OK(t_wait_file_contains(gate->err_path, from, "configuration reloaded", 5000));
	return from;
}

/* A clean stop: exit 0, and under ASan no leak report (replaced contexts must be freed). */
static void stop_gate(void)
{
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d: %s", gate->status, t_tail(gate->err_path, 1500));
	char *log = t_read_file(gate->err_path);
	cr_assert(log && !strstr(log, "Sanitizer"), "qgate's stop reported: %s",
		  t_tail(gate->err_path, 3000));
	free(log);
}

/* ---------------------------------------------------------------- rotation */

/* Before: a listener whose paths did not change kept its old context, so s_client still saw
 * certificate A after the files held B. */
Test(tls_reload, sighup_serves_a_rotated_certificate_at_the_same_path)
{
	const char *crt = in_dir("gw.crt"), *key = in_dir("gw.key");
	const char *crt_b = in_dir("b.crt"), *key_b = in_dir("b.key");
	struct tls_client tc;

	make_cert("qgate-cert-a", crt, key);
	make_cert("qgate-cert-b", crt_b, key_b);
	start_tls_gate(crt, key);
	expect_cn("qgate-cert-a", "before the rotation");
	tls_client_open(&tc);
	tls_client_echo(&tc, 1, "before the rotation");

	overwrite(key, key_b);
	overwrite(crt, crt_b);
	size_t from = reload();
	expect_cn("qgate-cert-b", "after the rotation and SIGHUP");
	const char *const ok[] = { "listener=tls", "TLS context reloaded" };
	cr_assert(t_wait_line_with(gate->err_path, from, 2, ok, 1000) == 0,
		  "no log line says the listener's certificate was reloaded: %s",
		  t_tail(gate->err_path, 1500));
	/* clients connected before the reload keep their session on the old context */
	tls_client_echo(&tc, 2, "after the rotation");
	/* stopped with that client still on the replaced context: it is freed with its last
	 * connection */
	stop_gate();
	tls_client_close(&tc);
}

/* Before: no line named the file that failed (the kept context just carried on unnoticed),
 * so an operator could not tell a broken rotation from a good one. */
Test(tls_reload, a_key_that_does_not_load_keeps_the_previous_certificate_and_says_why)
{
	const char *crt = in_dir("gw.crt"), *key = in_dir("gw.key");
	const char *crt_b = in_dir("b.crt"), *key_b = in_dir("b.key");
	struct tls_client tc;

	make_cert("qgate-cert-a", crt, key);
	make_cert("qgate-cert-b", crt_b, key_b);
	start_tls_gate(crt, key);
	tls_client_open(&tc);

	overwrite_text(key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
	size_t from = reload();
	const char *const bad[] = { "listener=tls", "listeners[0].tls.key_file",
				    "keeping the previous" };
	cr_assert(t_wait_line_with(gate->err_path, from, 3, bad, 1000) == 0,
		  "no log line names the listener, the failing field and what was kept: %s",
		  t_tail(gate->err_path, 1500));
	cr_assert(t_proc_alive(gate), "qgate exited after a key that does not load");
	expect_cn("qgate-cert-a", "after a failed reload");
	tls_client_echo(&tc, 3, "after a failed reload");

	/* the operator fixes the files: the next SIGHUP takes them */
	overwrite(key, key_b);
	overwrite(crt, crt_b);
	reload();
	expect_cn("qgate-cert-b", "after the files were fixed");
	tls_client_echo(&tc, 4, "after the files were fixed");
	tls_client_close(&tc);
	stop_gate();
}

/* ----------------------------------------------------------- backend CA file */

/* Before: a backend whose ca_file path did not change kept its old client context, so a
 * backend whose new certificate the rotated CA file does trust stayed unusable. */
Test(tls_reload, sighup_rereads_a_backends_ca_file)
{
	const char *be_crt = in_dir("be.crt"), *be_key = in_dir("be.key");
	const char *other_crt = in_dir("other.crt"), *other_key = in_dir("other.key");
	const char *ca = in_dir("ca.crt");
	char *text = NULL;

	make_cert("localhost", be_crt, be_key);
	make_cert("localhost", other_crt, other_key);
	overwrite(ca, other_crt);	/* a CA that did not sign the backend's certificate */
	const char *const tls_args[] = { "--tls-cert", be_crt, "--tls-key", be_key, NULL };
	be = T_PTR(t_mockq_start("b1", tls_args));
	int port = T_OK(t_free_port());
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\",\"queue\":{\"timeout_ms\":"
			   "300},\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\","
			   "\"connections\":1,\"tls\":{\"ca_file\":\"%s\"}}]}]}", port, be->port,
			   ca) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = T_PTR(t_qgate_start(path, port));
	T_OK(t_wait_file_contains(gate->err_path, 0, "TLS handshake failed", 5000));

	overwrite(ca, be_crt);
	size_t from = reload();
	/* the next reconnect uses the new context; backoff bounds how long that takes */
	int fd = T_OK(t_q_connect("127.0.0.1", port, "t:x", NULL));
	int64_t deadline = t_now_ms() + 15000;
	bool is_up = false;
	while (!is_up && t_now_ms() < deadline) {
		struct t_obj *r = t_call_ok(fd, t_call0(".mock.id"), 5000);
		is_up = r->type == -T_SYM && strcmp(r->s, "b1") == 0;
		t_free(r);
		if (!is_up)
			poll(NULL, 0, 100);
	}
	cr_assert(is_up, "the backend is still unusable after its CA file was rotated: %s",
		  t_tail(gate->err_path, 1500));
	close(fd);
	const char *const ok[] = { "backend=b1", "TLS context reloaded" };
	cr_assert(t_wait_line_with(gate->err_path, from, 2, ok, 1000) == 0,
		  "no log line says the backend's CA was reloaded: %s",
		  t_tail(gate->err_path, 1500));
	stop_gate();
}
