/*
 * t_net — loopback sockets and a blocking q IPC client for the integration tests.
 * Every wait is a poll() with a deadline; nothing here can block a test forever.
 */
#include "tests/support/t_net.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_obj.h"

/* Largest message the test client accepts: far above anything a test asks for. */
#define T_MAX_RECV ((size_t)512 << 20)

static __thread char errbuf[512];

const char *t_errmsg(void)
{
	return errbuf;
}

int t_fail(int err_code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return err_code > 0 ? -err_code : err_code;
}

int64_t t_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t t_now_ms(void)
{
	return t_now_us() / 1000;
}

static int ms_left(int64_t deadline_ms)
{
	int64_t left = deadline_ms - t_now_ms();

	return left < 0 ? 0 : (int)left;
}

/* ------------------------------------------------------------------- ports */

static pthread_mutex_t port_lock = PTHREAD_MUTEX_INITIALIZER;
static int port_next;

static bool tcp_port_free(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool is_free;

	if (fd < 0)
		return false;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* No SO_REUSEADDR: a port in TIME_WAIT is not "free" for a server started without it. */
	is_free = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return is_free;
}

static socklen_t abstract_addr(int port, struct sockaddr_un *su)
{
	int k;

	memset(su, 0, sizeof(*su));
	su->sun_family = AF_UNIX;
	k = snprintf(su->sun_path + 1, sizeof(su->sun_path) - 1, "/tmp/kx.%d", port);
	/* q's name has no trailing NUL: the length ends at the last character. */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
}

static bool abstract_port_free(int port)
{
	struct sockaddr_un su;
	socklen_t len = abstract_addr(port, &su);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool is_free;

	if (fd < 0)
		return false;
	is_free = bind(fd, (struct sockaddr *)&su, len) == 0;
	close(fd);
	return is_free;
}

/*
 * Ports come from [20000, 32000): below the usual ephemeral range (32768-60999), so that
 * outgoing client sockets never take them. Each process starts at a pid-and-time derived
 * offset and walks forward, so parallel test processes rarely race for the same port.
 */
static int next_port(bool (*is_free)(int))
{
	int port = -1;

	pthread_mutex_lock(&port_lock);
	if (port_next == 0)
		port_next = 20000 + (int)(((unsigned)getpid() * 7919u + (unsigned)time(NULL)) %
					  12000u);
	for (int tries = 0; tries < 12000; tries++) {
		int cand = port_next;

		port_next = port_next + 1 >= 32000 ? 20000 : port_next + 1;
		if (is_free(cand)) {
			port = cand;
			break;
		}
	}
	pthread_mutex_unlock(&port_lock);
	return port < 0 ? t_fail(EADDRINUSE, "no free port in 20000-32000") : port;
}

int t_free_port(void)
{
	return next_port(tcp_port_free);
}

int t_free_abstract_port(void)
{
	return next_port(abstract_port_free);
}

/* ----------------------------------------------------------------- connect */

static int set_blocking(int fd, bool is_blocking)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = is_blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

static int connect_bounded(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int rc, soerr = 0;

	set_blocking(fd, false);
	rc = connect(fd, sa, len);
	if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN)
		return -errno;
	if (rc < 0) {
		do
			rc = poll(&pfd, 1, timeout_ms);
		while (rc < 0 && errno == EINTR);
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc < 0)
			return -errno;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -errno;
		if (soerr)
			return -soerr;
	}
	return set_blocking(fd, true);
}

int t_tcp_connect(const char *host, int port, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd, rc, one = 1;

	if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &sa.sin_addr) != 1)
		return t_fail(EINVAL, "bad IPv4 address %s", host);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return t_fail(errno, "socket: %s", strerror(errno));
	rc = connect_bounded(fd, (struct sockaddr *)&sa, sizeof(sa), timeout_ms);
	if (rc < 0) {
		close(fd);
		return t_fail(rc, "connect %s:%d: %s", host, port, strerror(-rc));
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int t_unix_connect(int port, int timeout_ms)
{
	struct sockaddr_un su;
	socklen_t len = abstract_addr(port, &su);
	int fd, rc;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return t_fail(errno, "socket: %s", strerror(errno));
	rc = connect_bounded(fd, (struct sockaddr *)&su, len, timeout_ms);
	if (rc < 0) {
		close(fd);
		return t_fail(rc, "connect unix \\0/tmp/kx.%d: %s", port, strerror(-rc));
	}
	return fd;
}

static bool pid_exited(pid_t pid)
{
	/* The process may be a zombie our harness has not reaped yet: ask /proc for its state. */
	char path[64], buf[256];
	FILE *f;
	char *p;
	bool is_dead = true;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		is_dead = p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
	}
	fclose(f);
	return is_dead;
}

static int wait_accepting(const char *host, int port, bool is_unix, int timeout_ms, pid_t pid)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	int fd = -ETIMEDOUT;

	/* Bounded by the deadline: each try is at most 200 ms, then a 10 ms pause. */
	while (t_now_ms() < deadline) {
		if (pid > 0 && pid_exited(pid))
			return t_fail(ECHILD, "process %d exited before %s%s:%d accepted", (int)pid,
				      is_unix ? "unix " : "", is_unix ? "" : host, port);
		fd = is_unix ? t_unix_connect(port, 200) : t_tcp_connect(host, port, 200);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		poll(NULL, 0, 10);
	}
	return t_fail(ETIMEDOUT, "%s%s:%d not accepting after %d ms (last: %s)",
		      is_unix ? "unix " : "", is_unix ? "" : host, port, timeout_ms,
		      strerror(-fd));
}

int t_wait_accepting(const char *host, int port, int timeout_ms, pid_t pid)
{
	return wait_accepting(host, port, false, timeout_ms, pid);
}

int t_wait_accepting_unix(int port, int timeout_ms, pid_t pid)
{
	return wait_accepting("", port, true, timeout_ms, pid);
}

/* ------------------------------------------------------------------ q client */

int t_send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return t_fail(errno, "send: %s", strerror(errno));
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Read exactly n bytes before the deadline. 0, -ETIMEDOUT, -ECONNRESET (EOF) or -errno. */
static int recv_exact(int fd, uint8_t *p, size_t n, int64_t deadline_ms)
{
	while (n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int rc = poll(&pfd, 1, ms_left(deadline_ms));
		ssize_t k;

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		k = recv(fd, p, n, 0);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k == 0 || (k < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return -ECONNRESET;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int t_q_handshake(int fd, const char *cred, int capability, int timeout_ms)
{
	size_t len = cred ? strlen(cred) : 0;
	uint8_t hello[512], reply;
	int rc;

	if (len + 2 > sizeof(hello))
		return t_fail(EINVAL, "credentials too long");
	if (len)
		memcpy(hello, cred, len);
	hello[len] = (uint8_t)capability;
	hello[len + 1] = 0;
	rc = t_send_all(fd, hello, len + 2);
	if (rc < 0)
		return rc;
	rc = recv_exact(fd, &reply, 1, t_now_ms() + timeout_ms);
	if (rc == -ECONNRESET)
		return t_fail(EACCES, "handshake refused: connection closed without a reply byte");
	if (rc == -ETIMEDOUT)
		return t_fail(ETIMEDOUT, "handshake: no reply byte within %d ms", timeout_ms);
	if (rc < 0)
		return t_fail(rc, "handshake: %s", strerror(-rc));
	return reply;
}

static int finish_connect(int fd, const char *cred, int *cap)
{
	int rc;

	if (fd < 0)
		return fd;
	rc = t_q_handshake(fd, cred, 3, 5000);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	if (cap)
		*cap = rc;
	return fd;
}

int t_q_connect(const char *host, int port, const char *cred, int *cap)
{
	return finish_connect(t_tcp_connect(host, port, 3000), cred, cap);
}

int t_q_connect_unix(int port, const char *cred, int *cap)
{
	return finish_connect(t_unix_connect(port, 3000), cred, cap);
}

int t_q_send(int fd, int msg_type, const struct t_obj *o)
{
	uint8_t *buf;
	size_t len;
	int rc;

	rc = t_encode_msg(o, msg_type, &buf, &len);
	if (rc < 0)
		return t_fail(rc, "encode %s: %s", t_show(o), strerror(-rc));
	rc = t_send_all(fd, buf, len);
	free(buf);
	return rc;
}

int t_q_send_compressed(int fd, int msg_type, const struct t_obj *o)
{
	uint8_t *buf, *z = NULL;
	size_t len;
	int64_t zn;
	int rc;

	rc = t_encode_msg(o, msg_type, &buf, &len);
	if (rc < 0)
		return t_fail(rc, "encode %s: %s", t_show(o), strerror(-rc));
	zn = t_compress(buf, len, &z);
	free(buf);
	if (zn <= 0)
		return t_fail(zn < 0 ? (int)zn : EINVAL, "%s does not compress (%zu bytes)",
			      t_show(o), len);
	rc = t_send_all(fd, z, (size_t)zn);
	free(z);
	return rc;
}

int t_q_recv_raw(int fd, int timeout_ms, uint8_t **out, size_t *out_len)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	uint8_t hdr[8], *msg;
	uint64_t n;
	uint32_t n32;
	int rc;

	*out = NULL;
	*out_len = 0;
	rc = recv_exact(fd, hdr, 8, deadline);
	if (rc == -ETIMEDOUT)
		return t_fail(rc, "no message within %d ms", timeout_ms);
	if (rc == -ECONNRESET)
		return t_fail(rc, "connection closed by peer");
	if (rc < 0)
		return t_fail(rc, "recv: %s", strerror(-rc));
	if (hdr[0] > 1 || hdr[1] > 2 || hdr[2] > 1)
		return t_fail(EBADMSG, "bad header %02x %02x %02x %02x", hdr[0], hdr[1], hdr[2],
			      hdr[3]);
	if (hdr[0] == 1)
		memcpy(&n32, hdr + 4, 4);
	else
		n32 = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 |
		      hdr[7];
	n = n32 + ((uint64_t)hdr[3] << 32);
	if (n < 10 || n > T_MAX_RECV)
		return t_fail(EBADMSG, "bad message length %llu", (unsigned long long)n);
	msg = malloc(n);
	if (!msg)
		return t_fail(ENOMEM, "out of memory for %llu bytes", (unsigned long long)n);
	memcpy(msg, hdr, 8);
	rc = recv_exact(fd, msg + 8, n - 8, deadline);
	if (rc < 0) {
		free(msg);
		return t_fail(rc, "message body (%llu bytes): %s", (unsigned long long)n,
			      rc == -ETIMEDOUT ? "timed out" : rc == -ECONNRESET ?
			      "connection closed mid-message" : strerror(-rc));
	}
	*out = msg;
	*out_len = n;
	return 0;
}

int t_q_recv(int fd, int timeout_ms, struct t_obj **out, int *msg_type)
{
	uint8_t *msg;
	size_t n;
	int rc, err;

	*out = NULL;
	rc = t_q_recv_raw(fd, timeout_ms, &msg, &n);
	if (rc < 0)
		return rc;
	*out = t_decode_msg(msg, n, msg_type, &err);
	free(msg);
	if (!*out)
		return t_fail(err, "undecodable message of %zu bytes: %s", n, strerror(-err));
	return 0;
}

struct t_obj *t_q_call(int fd, const struct t_obj *req, int timeout_ms, int *n_async, int *err)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	struct t_obj *resp = NULL;
	int rc, type = -1, asyncs = 0;

	rc = t_q_send(fd, T_SYNC, req);
	/* Bounded: each pass consumes one message; the deadline ends the loop. */
	while (rc == 0) {
		rc = t_q_recv(fd, ms_left(deadline), &resp, &type);
		if (rc < 0)
			break;
		if (type == T_RESPONSE)
			break;
		asyncs++;
		t_free(resp);
		resp = NULL;
		if (type == T_SYNC) {
			rc = t_fail(EPROTO, "peer sent a sync request to the test client");
			break;
		}
	}
	if (n_async)
		*n_async = asyncs;
	if (err)
		*err = rc;
	if (rc < 0) {
		char what[160];

		snprintf(what, sizeof(what), "%s", t_errmsg());
		t_fail(rc, "call %s: %s", t_show(req), what);
		return NULL;
	}
	return resp;
}

struct t_obj *t_q_eval(int fd, const char *text, int timeout_ms, int *err)
{
	struct t_obj *q = t_str(text), *r;

	if (!q) {
		if (err)
			*err = -ENOMEM;
		return NULL;
	}
	r = t_q_call(fd, q, timeout_ms, NULL, err);
	t_free(q);
	return r;
}

int t_wait_closed(int fd, int timeout_ms, size_t *n_bytes)
{
	int64_t deadline = t_now_ms() + timeout_ms;
	size_t got = 0;
	uint8_t buf[4096];

	if (n_bytes)
		*n_bytes = 0;
	/* Bounded by the deadline; bytes that arrive first are counted and dropped. */
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int rc = poll(&pfd, 1, ms_left(deadline));
		ssize_t k;

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0)
			return t_fail(ETIMEDOUT, "connection still open after %d ms (%zu bytes)",
				      timeout_ms, got);
		k = recv(fd, buf, sizeof(buf), 0);
		if (k == 0 || (k < 0 && (errno == ECONNRESET || errno == EPIPE)))
			break;
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return t_fail(errno, "recv: %s", strerror(errno));
		got += (size_t)k;
		if (n_bytes)
			*n_bytes = got;
		if (t_now_ms() >= deadline)
			return t_fail(ETIMEDOUT, "connection still open after %d ms", timeout_ms);
	}
	return 0;
}

int t_http_get(int port, const char *path, char **body)
{
	char req[256];
	size_t got = 0, cap = 65536;
	char *buf = malloc(cap);
	int fd, status = 0;

	*body = NULL;
	if (!buf)
		return t_fail(ENOMEM, "out of memory");
	fd = t_tcp_connect("127.0.0.1", port, 2000);
	if (fd < 0) {
		free(buf);
		return fd;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	if (t_send_all(fd, req, strlen(req)) < 0) {
		close(fd);
		free(buf);
		return -EIO;
	}
	/* the endpoint answers once and closes: read to EOF (bounded by time and size) */
	for (int i = 0; i < 10000; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, 3000) != 1)
			break;
		if (got + 1 >= cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) {
		t_fail(EPROTO, "not an HTTP answer from port %d: %.80s", port, buf);
		free(buf);
		return -EPROTO;
	}
	char *b = strstr(buf, "\r\n\r\n");
	*body = strdup(b ? b + 4 : "");
	free(buf);
	return status;
}

int64_t t_stats_int(int port, const char *path)
{
	char *body = NULL, key[64];
	json_error_t e;
	int64_t v = -1;

	if (t_http_get(port, "/stats", &body) != 200) {
		free(body);
		return -1;
	}
	json_t *root = json_loads(body, 0, &e);
	free(body);
	if (!root) {
		t_fail(EINVAL, "bad /stats JSON: %s", e.text);
		return -1;
	}
	json_t *o = root;
	for (const char *p = path; o && *p;) {
		size_t n = strcspn(p, "/");
		if (n >= sizeof(key))
			break;
		memcpy(key, p, n);
		key[n] = '\0';
		p += n + (p[n] == '/');
		char *end;
		long idx = strtol(key, &end, 10);
		o = json_is_array(o) && *end == '\0' && end != key ?
		    json_array_get(o, (size_t)idx) : json_object_get(o, key);
	}
	if (json_is_integer(o))
		v = json_integer_value(o);
	json_decref(root);
	return v;
}
