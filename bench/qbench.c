/*
 * qbench — closed-loop load generator for q IPC endpoints (mockq, qgate, a real q).
 *
 * N connections each send a sync (`.mock.echo;token) and wait for its response before the
 * next one; the token carries the connection id and a sequence number, padded to
 * --payload-bytes, and the response must be exactly that token (compared byte for byte on the
 * serialised payload). A fraction of requests (--async-ratio) is sent async instead and not
 * answered. Variants keep the token: --payload-max draws each token's size at random;
 * --answer-bytes N and --sleep-ms M send the text ("token";.mock.bytes[N]) or
 * ("token";.mock.sleep[M]) and check the whole answer (token, then exactly N bytes i mod 256,
 * or the long M). --port takes a list: connection i goes to the (i mod n)-th port. --hold
 * only opens and handshakes the connections, prints one line and holds them until SIGTERM or
 * --seconds (the bench's idle-client case). One epoll loop, non-blocking sockets. Latency goes
 * into a log-bucketed histogram (about 3% resolution), never a list of samples.
 *
 * Exit status: 0 all answers were right, 1 any mismatch, error or missing answer,
 * 2 bad usage or the connections could not be set up.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec/qipc.h"

#define SUB_BITS 5
#define SUB_COUNT (1 << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS) * SUB_COUNT + SUB_COUNT)
#define ASYNC_BURST 64
#define GRACE_NS (5ULL * 1000000000ULL)
#define ECHO_NAME ".mock.echo"

enum bc_state {
	BC_CONNECTING = 0,
	BC_HELLO,
	BC_READY,
	BC_DONE,
	BC_FAILED,
};

struct bconn {
	int fd;
	int id;
	enum bc_state state;
	struct qipc_assembler as;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	uint8_t *expect;	/* serialised payload the response must carry (g.tail after) */
	size_t expect_len, expect_cap;
	uint64_t seq;
	uint64_t sent_ns;
	bool is_awaiting;
	bool want_out;
	uint32_t events;
};

#define MAX_PORTS 64

static struct {
	const char *host;
	int port;
	int ports[MAX_PORTS], n_ports;	/* --port P1,P2,...: connection i uses ports[i % n] */
	size_t payload_max;		/* > payload_bytes: each token's size is drawn at random */
	long long answer_bytes;		/* >= 0: ask for ("token";.mock.bytes[N]) */
	long long sleep_ms;		/* >= 0: ask for ("token";.mock.sleep[M]) */
	uint8_t *tail;			/* the answer's bytes after c->expect (the byte vector) */
	size_t tail_len;
	bool is_hold;
	int unix_port;
	const char *user;
	int conns;
	double seconds;
	size_t payload_bytes;
	double async_ratio;
	bool json;
	int capability;
	int ep;
	struct bconn *bc;
	uint64_t rng;
	uint64_t hist[NBUCKETS];
	uint64_t lat_count, lat_sum_ns, lat_max_ns;
	uint64_t requests, async_sent, mismatches, errors, unexpected;
	char first_problem[256];
	uint64_t t_start, t_end;
	uint8_t rbuf[256 * 1024];
} g = {
	.host = "127.0.0.1",
	.port = -1,
	.unix_port = -1,
	.conns = 1,
	.seconds = 5.0,
	.payload_bytes = 32,
	.capability = 3,
	.answer_bytes = -1,
	.sleep_ms = -1,
};

static volatile sig_atomic_t stop_hold;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(void)
{
	/* xorshift64*: cheap and good enough to pick sync or async */
	g.rng ^= g.rng >> 12;
	g.rng ^= g.rng << 25;
	g.rng ^= g.rng >> 27;
	return g.rng * 2685821657736338717ULL;
}

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void problem(const char *fmt, ...)
{
	va_list ap;

	if (g.first_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(g.first_problem, sizeof(g.first_problem), fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ histogram */

static int bucket_of(uint64_t v)
{
	int e;

	if (v < SUB_COUNT)
		return (int)v;
	e = 63 - __builtin_clzll(v);	/* e >= SUB_BITS */
	return (e - SUB_BITS + 1) * SUB_COUNT + (int)((v >> (e - SUB_BITS)) & (SUB_COUNT - 1));
}

/* A representative value (the middle) of bucket b. */
static double bucket_mid(int b)
{
	int e, sub;
	double lo, width;

	if (b < SUB_COUNT)
		return b;
	e = b / SUB_COUNT + SUB_BITS - 1;
	sub = b % SUB_COUNT;
	width = ldexp(1.0, e - SUB_BITS);
	lo = (double)(SUB_COUNT + sub) * width;
	return lo + width / 2;
}

static void hist_add(uint64_t ns)
{
	g.hist[bucket_of(ns)]++;
	g.lat_count++;
	g.lat_sum_ns += ns;
	if (ns > g.lat_max_ns)
		g.lat_max_ns = ns;
}

static double percentile_us(double p)
{
	uint64_t target, cum = 0;
	double v;

	if (!g.lat_count)
		return 0;
	target = (uint64_t)ceil(p * (double)g.lat_count);
	if (target < 1)
		target = 1;
	for (int b = 0; b < NBUCKETS; b++) {
		cum += g.hist[b];
		if (cum >= target) {
			v = bucket_mid(b);
			if (v > (double)g.lat_max_ns)
				v = (double)g.lat_max_ns;
			return v / 1000.0;
		}
	}
	return (double)g.lat_max_ns / 1000.0;
}

/* ------------------------------------------------------------------ messages */

static int out_reserve(struct bconn *c, size_t extra)
{
	size_t need = c->out_len + extra, nc;
	uint8_t *nb;

	if (c->out_off && c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		need = extra;
	}
	if (need <= c->out_cap)
		return 0;
	nc = c->out_cap ? c->out_cap : 4096;
	while (nc < need)
		nc *= 2;
	nb = realloc(c->out, nc);
	if (!nb)
		return -ENOMEM;
	c->out = nb;
	c->out_cap = nc;
	return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static int expect_reserve(struct bconn *c, size_t n)
{
	uint8_t *ne;

	if (c->expect_cap >= n)
		return 0;
	ne = realloc(c->expect, n);
	if (!ne)
		return -ENOMEM;
	c->expect = ne;
	c->expect_cap = n;
	return 0;
}

/*
 * Queue the next request as a message of the given type: (`.mock.echo;token), or with
 * --answer-bytes / --sleep-ms the text ("token";.mock.bytes[N]) / ("token";.mock.sleep[M]).
 * For a sync message the expected response payload is kept in c->expect (g.tail follows it).
 */
static int queue_request(struct bconn *c, enum qipc_msg_type type)
{
	char id[64], verb[64];
	int idl = snprintf(id, sizeof(id), "c%d:s%llu:", c->id, (unsigned long long)c->seq++);
	size_t tl = g.payload_bytes > (size_t)idl ? g.payload_bytes : (size_t)idl;
	size_t nl = sizeof(ECHO_NAME);		/* with the NUL */
	bool is_text = g.answer_bytes >= 0 || g.sleep_ms >= 0;
	int vl = 0;
	size_t payload, total;
	uint8_t *p, *e;

	if (g.payload_max > tl)
		tl += (size_t)(rnd() % (g.payload_max - tl + 1));
	if (is_text)
		vl = g.answer_bytes >= 0 ?
		     snprintf(verb, sizeof(verb), "\";.mock.bytes[%lld])", g.answer_bytes) :
		     snprintf(verb, sizeof(verb), "\";.mock.sleep[%lld])", g.sleep_ms);
	payload = is_text ? 6 + 2 + tl + (size_t)vl : 6 + 1 + nl + 6 + tl;
	total = QIPC_HDR_SIZE + payload;
	if (out_reserve(c, total) < 0)
		return -ENOMEM;
	p = c->out + c->out_len;
	qipc_header_build(p, type, false, total);
	p += QIPC_HDR_SIZE;
	if (is_text) {
		p[0] = QT_CHAR;
		p[1] = 0;
		put_le32(p + 2, (uint32_t)(2 + tl + (size_t)vl));
		p += 6;
		*p++ = '(';
		*p++ = '"';
	} else {
		p[0] = 0;		/* general list, no attribute, 2 items */
		p[1] = 0;
		put_le32(p + 2, 2);
		p += 6;
		*p++ = 0xf5;		/* symbol atom */
		memcpy(p, ECHO_NAME, nl);
		p += nl;
		p[0] = QT_CHAR;		/* char vector */
		p[1] = 0;
		put_le32(p + 2, (uint32_t)tl);
		p += 6;
	}
	memcpy(p, id, (size_t)idl);
	memset(p + idl, '.', tl - (size_t)idl);
	if (is_text)
		memcpy(p + tl, verb, (size_t)vl);
	c->out_len += total;
	if (type != QIPC_SYNC)
		return 0;
	/* the answer: the token as a char vector, inside a 2-item list for the text forms */
	if (expect_reserve(c, (is_text ? 6 + 6 + 9 : 0) + 6 + tl) < 0)
		return -ENOMEM;
	e = c->expect;
	if (is_text) {
		e[0] = 0;
		e[1] = 0;
		put_le32(e + 2, 2);
		e += 6;
	}
	e[0] = QT_CHAR;
	e[1] = 0;
	put_le32(e + 2, (uint32_t)tl);
	memcpy(e + 6, p, tl);
	e += 6 + tl;
	if (g.answer_bytes >= 0) {
		e[0] = 4;		/* byte vector; its bytes are g.tail */
		e[1] = 0;
		put_le32(e + 2, (uint32_t)g.answer_bytes);
		e += 6;
	} else if (g.sleep_ms >= 0) {
		*e++ = 0xf9;		/* long atom */
		for (int i = 0; i < 8; i++)
			*e++ = (uint8_t)((uint64_t)g.sleep_ms >> (8 * i));
	}
	c->expect_len = (size_t)(e - c->expect);
	return 0;
}

static void set_events(struct bconn *c, uint32_t want)
{
	struct epoll_event ev = { .events = want, .data.ptr = c };

	if (want == c->events)
		return;
	if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

static void conn_fail(struct bconn *c, const char *why)
{
	if (c->state == BC_FAILED)
		return;
	g.errors++;
	problem("connection %d: %s", c->id, why);
	if (c->is_awaiting)
		c->is_awaiting = false;
	c->state = BC_FAILED;
	epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

static int flush_out(struct bconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	return 0;
}

/* Send the next requests: async ones (up to a burst) until a sync one goes out. */
static void issue(struct bconn *c)
{
	uint64_t now = now_ns();
	int burst = 0;

	if (c->state != BC_READY)
		return;
	c->want_out = false;
	while (!c->is_awaiting) {
		if (now >= g.t_end) {
			c->state = BC_DONE;
			break;
		}
		if (burst == ASYNC_BURST || c->out_len - c->out_off > (1u << 20)) {
			c->want_out = true;	/* continue when the socket takes more */
			break;
		}
		if (g.async_ratio > 0 &&
		    (double)(rnd() >> 11) * 0x1.0p-53 < g.async_ratio) {
			if (queue_request(c, QIPC_ASYNC) < 0) {
				conn_fail(c, "out of memory");
				return;
			}
			g.async_sent++;
			burst++;
			continue;
		}
		if (queue_request(c, QIPC_SYNC) < 0) {
			conn_fail(c, "out of memory");
			return;
		}
		c->sent_ns = now_ns();
		c->is_awaiting = true;
	}
	if (flush_out(c) < 0) {
		conn_fail(c, strerror(errno));
		return;
	}
	set_events(c, EPOLLIN | ((c->out_len > c->out_off || c->want_out) ? EPOLLOUT : 0));
}

static void on_message(struct bconn *c, const uint8_t *msg, size_t len)
{
	const uint8_t *payload = msg + QIPC_HDR_SIZE;
	size_t plen = len - QIPC_HDR_SIZE;
	uint8_t *plain = NULL;
	uint64_t lat;

	if (msg[1] != QIPC_RESPONSE || !c->is_awaiting) {
		g.unexpected++;
		problem("connection %d: unexpected message of type %u (%zu bytes)", c->id, msg[1],
			len);
		return;
	}
	lat = now_ns() - c->sent_ns;
	c->is_awaiting = false;
	if (msg[2]) {
		int64_t u = qipc_compressed_orig_len(msg, len);

		if (u < QIPC_HDR_SIZE || !(plain = malloc((size_t)u)) ||
		    qipc_decompress(msg, len, plain, (size_t)u) != u) {
			free(plain);
			g.errors++;
			problem("connection %d: bad compressed response", c->id);
			return;
		}
		payload = plain + QIPC_HDR_SIZE;
		plen = (size_t)u - QIPC_HDR_SIZE;
	}
	if (plen >= 1 && payload[0] == 0x80) {
		g.errors++;
		problem("connection %d: error response '%.*s", c->id,
			(int)(plen > 101 ? 100 : plen - 1), (const char *)payload + 1);
	} else if (plen != c->expect_len + g.tail_len || memcmp(payload, c->expect, c->expect_len) ||
		   (g.tail_len && memcmp(payload + c->expect_len, g.tail, g.tail_len))) {
		g.mismatches++;
		problem("connection %d: response is not its own token (%zu bytes, want %zu)",
			c->id, plen, c->expect_len + g.tail_len);
	} else {
		g.requests++;
		hist_add(lat);
	}
	free(plain);
}

static void on_readable(struct bconn *c)
{
	for (int round = 0; round < 8 && (c->state == BC_READY || c->state == BC_DONE ||
					  c->state == BC_HELLO); round++) {
		ssize_t r = recv(c->fd, g.rbuf, c->state == BC_HELLO ? 1 : sizeof(g.rbuf), 0);
		size_t off = 0;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_fail(c, strerror(errno));
			return;
		}
		if (r == 0) {
			conn_fail(c, c->state == BC_HELLO ? "handshake refused (closed)" :
				  "closed by the server");
			return;
		}
		if (c->state == BC_HELLO) {
			int cap = g.rbuf[0];

			qipc_assembler_init(&c->as, cap < g.capability ? cap : g.capability, 0);
			c->state = BC_READY;
			return;
		}
		while (off < (size_t)r) {
			const uint8_t *msg;
			size_t mlen;
			int rc = qipc_assembler_feed(&c->as, g.rbuf + off, (size_t)r - off, &msg,
						     &mlen);

			if (rc <= 0) {
				conn_fail(c, "malformed response stream");
				return;
			}
			off += (size_t)rc;
			if (msg)
				on_message(c, msg, mlen);
		}
		if (!c->is_awaiting)
			issue(c);
		if ((size_t)r < sizeof(g.rbuf))
			return;
	}
}

/* ------------------------------------------------------------------ setup */

static int connect_one(struct bconn *c)
{
	int fd, one = 1;

	if (g.unix_port >= 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "/tmp/kx.%d",
				 g.unix_port);
		socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS &&
		    errno != EAGAIN) {
			int e = errno;

			close(fd);
			return -e;
		}
	} else {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_NUMERICSERV };
		struct addrinfo *ai = NULL;
		char port_s[16];
		int rc;

		snprintf(port_s, sizeof(port_s), "%d", g.ports[c->id % g.n_ports]);
		rc = getaddrinfo(g.host, port_s, &hints, &ai);
		if (rc || !ai) {
			fprintf(stderr, "qbench: cannot resolve %s: %s\n", g.host,
				gai_strerror(rc));
			return -EINVAL;
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			freeaddrinfo(ai);
			return -errno;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			int e = errno;

			freeaddrinfo(ai);
			close(fd);
			return -e;
		}
		freeaddrinfo(ai);
	}
	c->fd = fd;
	return 0;
}

/* Connect every connection and finish its q handshake; bounded by 10 s. */
static int setup_conns(void)
{
	struct epoll_event evs[256];
	/* 10 s, and 1 s more per thousand connections (a burst of SYNs may overflow a backlog) */
	uint64_t limit_s = 10 + (uint64_t)g.conns / 1000;
	uint64_t deadline = now_ns() + limit_s * 1000000000ULL;
	uint8_t hello[600];
	int hl, ready = 0;
	const char *user = g.user ? g.user : "";

	if (strlen(user) > 512)
		return -EINVAL;
	memcpy(hello, user, strlen(user));
	hl = (int)strlen(user);
	hello[hl++] = (uint8_t)g.capability;
	hello[hl++] = 0;
	for (int i = 0; i < g.conns; i++) {
		struct bconn *c = &g.bc[i];
		struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
		int rc;

		c->id = i;
		rc = connect_one(c);
		if (rc < 0) {
			fprintf(stderr, "qbench: connect %d: %s\n", i, strerror(-rc));
			return rc;
		}
		c->events = EPOLLOUT;
		if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			return -errno;
	}
	while (ready < g.conns) {
		int n, to = (int)((deadline - now_ns()) / 1000000ULL);

		if (now_ns() >= deadline) {
			fprintf(stderr, "qbench: %d of %d connections ready after %llu s\n", ready,
				g.conns, (unsigned long long)limit_s);
			return -ETIMEDOUT;
		}
		n = epoll_wait(g.ep, evs, 256, to > 0 ? to : 1);
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			struct bconn *c = evs[i].data.ptr;

			if (c->state == BC_CONNECTING) {
				int err = 0;
				socklen_t el = sizeof(err);

				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err) {
					fprintf(stderr, "qbench: connect %d: %s\n", c->id,
						strerror(err));
					return -err;
				}
				if (send(c->fd, hello, (size_t)hl, MSG_NOSIGNAL) != hl) {
					fprintf(stderr, "qbench: hello %d: %s\n", c->id,
						strerror(errno));
					return -EIO;
				}
				c->state = BC_HELLO;
				set_events(c, EPOLLIN);
			} else if (c->state == BC_HELLO) {
				on_readable(c);
				if (c->state == BC_FAILED) {
					fprintf(stderr, "qbench: %s\n", g.first_problem);
					return -EACCES;
				}
				if (c->state == BC_READY)
					ready++;
			}
		}
	}
	return 0;
}

static void run(void)
{
	struct epoll_event evs[256];
	uint64_t hard_end;

	g.t_start = now_ns();
	g.t_end = g.t_start + (uint64_t)(g.seconds * 1e9);
	hard_end = g.t_end + GRACE_NS;
	for (int i = 0; i < g.conns; i++)
		issue(&g.bc[i]);
	for (;;) {
		uint64_t now = now_ns();
		int busy = 0, n, to;

		for (int i = 0; i < g.conns; i++) {
			struct bconn *c = &g.bc[i];

			if (c->state == BC_FAILED)
				continue;
			if (now >= g.t_end && c->state == BC_READY && !c->is_awaiting)
				c->state = BC_DONE;
			if (c->is_awaiting || c->state == BC_READY || c->out_len > c->out_off)
				busy++;
		}
		if (!busy || now >= hard_end)
			break;
		to = now < g.t_end ? (int)((g.t_end - now) / 1000000ULL) + 1 :
				     (int)((hard_end - now) / 1000000ULL) + 1;
		n = epoll_wait(g.ep, evs, 256, to);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct bconn *c = evs[i].data.ptr;

			if (c->state == BC_FAILED)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				on_readable(c);
			if (c->state == BC_FAILED || !(evs[i].events & EPOLLOUT))
				continue;
			if (flush_out(c) < 0) {
				conn_fail(c, strerror(errno));
				continue;
			}
			if (c->want_out && !c->is_awaiting)
				issue(c);
			else
				set_events(c, EPOLLIN | (c->out_len > c->out_off ? EPOLLOUT : 0));
		}
	}
}

static void on_stop(int sig)
{
	(void)sig;
	stop_hold = 1;
}

/*
 * --hold: the connections are open and handshaken; say so and keep them until SIGTERM/SIGINT
 * or --seconds. A connection the server closes meanwhile is an error.
 */
static int hold(void)
{
	struct epoll_event evs[256];
	uint64_t end = now_ns() + (uint64_t)(g.seconds * 1e9);

	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	if (g.json)
		printf("{\"held\":%d}\n", g.conns);
	else
		printf("qbench: holding %d connections\n", g.conns);
	fflush(stdout);
	while (!stop_hold && now_ns() < end) {
		int n = epoll_wait(g.ep, evs, 256, 200);

		for (int i = 0; i < n; i++) {
			struct bconn *c = evs[i].data.ptr;
			ssize_t r = recv(c->fd, g.rbuf, sizeof(g.rbuf), 0);

			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				fprintf(stderr, "qbench: connection %d closed while held\n", c->id);
				return 1;
			}
			if (r > 0) {
				fprintf(stderr, "qbench: connection %d got %zd unexpected bytes\n",
					c->id, r);
				return 1;
			}
		}
	}
	return 0;
}

static void report(uint64_t unanswered, double secs)
{
	double rps = secs > 0 ? (double)g.requests / secs : 0;
	double mean = g.lat_count ? (double)g.lat_sum_ns / (double)g.lat_count / 1000.0 : 0;
	char target[128];

	if (g.unix_port >= 0)
		snprintf(target, sizeof(target), "unix:%d", g.unix_port);
	else if (g.n_ports > 1)
		snprintf(target, sizeof(target), "%s:%d+%d", g.host, g.ports[0], g.n_ports - 1);
	else
		snprintf(target, sizeof(target), "%s:%d", g.host, g.port);
	if (g.json) {
		printf("{\"target\":\"%s\",\"conns\":%d,\"seconds\":%.3f,\"payload_bytes\":%zu,"
		       "\"async_ratio\":%.3f,\"requests\":%llu,\"async_sent\":%llu,"
		       "\"requests_per_sec\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,"
		       "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f},"
		       "\"mismatches\":%llu,\"errors\":%llu,\"unexpected\":%llu,"
		       "\"unanswered\":%llu}\n",
		       target, g.conns, secs, g.payload_bytes, g.async_ratio,
		       (unsigned long long)g.requests, (unsigned long long)g.async_sent, rps,
		       percentile_us(0.50), percentile_us(0.90), percentile_us(0.99),
		       percentile_us(0.999), (double)g.lat_max_ns / 1000.0, mean,
		       (unsigned long long)g.mismatches, (unsigned long long)g.errors,
		       (unsigned long long)g.unexpected, (unsigned long long)unanswered);
	} else {
		printf("qbench: %s, %d conns, %.2f s, payload %zu B, async ratio %.2f\n", target,
		       g.conns, secs, g.payload_bytes, g.async_ratio);
		printf("requests    %llu (%.1f/s)  async sent %llu\n",
		       (unsigned long long)g.requests, rps, (unsigned long long)g.async_sent);
		printf("latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f"
		       "  mean %.1f\n",
		       percentile_us(0.50), percentile_us(0.90), percentile_us(0.99),
		       percentile_us(0.999), (double)g.lat_max_ns / 1000.0, mean);
		printf("mismatches  %llu  errors %llu  unexpected %llu  unanswered %llu\n",
		       (unsigned long long)g.mismatches, (unsigned long long)g.errors,
		       (unsigned long long)g.unexpected, (unsigned long long)unanswered);
	}
	if (g.first_problem[0])
		fprintf(stderr, "qbench: first problem: %s\n", g.first_problem);
	fflush(stdout);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: qbench (--port P[,P2...] [--host H] | --unix PORT) [--user u:p]\n"
		"              [--conns N] [--seconds S] [--payload-bytes B] [--payload-max B2]\n"
		"              [--answer-bytes N | --sleep-ms M] [--async-ratio R]\n"
		"              [--capability C] [--hold] [--json]\n"
		"  each connection sends sync (`.mock.echo;token), token = id + padding to\n"
		"  B bytes (up to B2 at random), and checks the response is exactly its own\n"
		"  token; R of requests go async. --answer-bytes/--sleep-ms send\n"
		"  (\"token\";.mock.bytes[N]) / (\"token\";.mock.sleep[M]) instead. Connection i\n"
		"  uses the (i mod n)-th port. --hold: open, handshake, hold until SIGTERM or S.\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "unix", required_argument, NULL, 'x' },
		{ "user", required_argument, NULL, 'u' },
		{ "conns", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "payload-bytes", required_argument, NULL, 'b' },
		{ "payload-max", required_argument, NULL, 'B' },
		{ "answer-bytes", required_argument, NULL, 'A' },
		{ "sleep-ms", required_argument, NULL, 'S' },
		{ "hold", no_argument, NULL, 'L' },
		{ "async-ratio", required_argument, NULL, 'a' },
		{ "capability", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'H': g.host = optarg; break;
		case 'p':
			for (char *q = optarg;; q = end + 1) {
				long v = strtol(q, &end, 10);

				if (end == q || v < 1 || v > 65535 || g.n_ports == MAX_PORTS ||
				    (*end && *end != ','))
					return -1;
				g.ports[g.n_ports++] = (int)v;
				if (!*end)
					break;
			}
			g.port = g.ports[0];
			break;
		case 'B':
			g.payload_max = (size_t)strtoull(optarg, &end, 10);
			if (*end)
				return -1;
			break;
		case 'A': g.answer_bytes = strtoll(optarg, &end, 10); if (*end) return -1; break;
		case 'S': g.sleep_ms = strtoll(optarg, &end, 10); if (*end) return -1; break;
		case 'L': g.is_hold = true; break;
		case 'x': g.unix_port = (int)strtol(optarg, &end, 10); if (*end) return -1; break;
		case 'u': g.user = optarg; break;
		case 'c': g.conns = (int)strtol(optarg, &end, 10); if (*end) return -1; break;
		case 's': g.seconds = strtod(optarg, &end); if (*end) return -1; break;
		case 'b':
			g.payload_bytes = (size_t)strtoull(optarg, &end, 10);
			if (*end)
				return -1;
			break;
		case 'a': g.async_ratio = strtod(optarg, &end); if (*end) return -1; break;
		case 'C': g.capability = (int)strtol(optarg, &end, 10); if (*end) return -1; break;
		case 'j': g.json = true; break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (optind != argc || (g.port < 0) == (g.unix_port < 0))
		return -1;
	if (g.port > 65535 || g.unix_port > 65535 || g.conns < 1 || g.conns > 100000 ||
	    g.seconds <= 0 || g.seconds > 86400 || g.async_ratio < 0 || g.async_ratio > 1 ||
	    g.payload_bytes > (64u << 20) || g.capability < 0 || g.capability > 6 ||
	    g.payload_max > (64u << 20) || (g.payload_max && g.payload_max < g.payload_bytes) ||
	    g.answer_bytes > (1LL << 30) || g.sleep_ms > 3600000 ||
	    (g.answer_bytes >= 0 && g.sleep_ms >= 0) ||
	    (g.unix_port >= 0 && g.n_ports > 1))
		return -1;
	if (g.answer_bytes < -1 || g.sleep_ms < -1)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t unanswered = 0;
	double secs;
	struct rlimit rl;
	int rc;

	if (parse_args(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	g.rng = (uint64_t)now_ns() | 1;
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	g.bc = calloc((size_t)g.conns, sizeof(*g.bc));
	if (g.ep < 0 || !g.bc) {
		fprintf(stderr, "qbench: setup: %s\n", strerror(errno));
		return 2;
	}
	if (g.answer_bytes > 0) {
		g.tail_len = (size_t)g.answer_bytes;
		g.tail = malloc(g.tail_len);
		if (!g.tail)
			return 2;
		for (size_t i = 0; i < g.tail_len; i++)
			g.tail[i] = (uint8_t)i;
	}
	rc = setup_conns();
	if (rc < 0)
		return 2;
	if (g.is_hold)
		return hold();
	run();
	secs = (double)(g.t_end - g.t_start) / 1e9;
	for (int i = 0; i < g.conns; i++) {
		struct bconn *c = &g.bc[i];

		if (c->is_awaiting) {
			unanswered++;
			problem("connection %d: no answer within %llu s after the end", c->id,
				(unsigned long long)(GRACE_NS / 1000000000ULL));
		}
		if (c->fd >= 0)
			close(c->fd);
		qipc_assembler_free(&c->as);
		free(c->out);
		free(c->expect);
	}
	report(unanswered, secs);
	free(g.bc);
	free(g.tail);
	close(g.ep);
	return (g.mismatches || g.errors || g.unexpected || unanswered ||
		(!g.requests && !g.async_sent)) ? 1 : 0;
}
