/*
 * mockq — a backend emulator that speaks q IPC like one single-threaded q process.
 *
 * One epoll loop serves TCP (and, with --unix, q's abstract unix socket for the same port).
 * Each connection: q handshake, then every message is decoded with the codec and evaluated
 * by the mini evaluator (mockq_eval.c); sync messages get exactly one response, in order.
 * Output goes through a per-connection queue on a non-blocking socket, so one slow reader
 * does not hold up the others. A deferred answer (.mock.defer) parks its connection: later
 * messages on it wait, in order, while other connections are served. Timers (deferred
 * answers, .mock.pub publishers) live in a small list scanned by the loop.
 *
 * In flight: a sync request counts from the moment its last byte is read (a per-connection
 * framer sees it arrive, even behind a deferred answer) until its response is queued or its
 * connection closes. Counter verbs (.mock.inflight, .mock.maxinflight, .mock.served,
 * .mock.reset) are probes: once evaluated they leave the count and never raise the maximum,
 * so a test can ask a backend how busy it was without being counted itself.
 *
 * A connection that breaks the protocol is closed (as q's 'badmsg); nothing else is disturbed.
 * On command (.mock.twice, .mock.unsolicited, .mock.pushsync, .mock.partdie, .mock.refuse) it
 * misbehaves on purpose, for the gateway's torture test: answers twice, sends what nobody asked
 * for, dies half-way through an answer, refuses handshakes.
 * See docs/mockq.md for options and the supported q.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

#include "bench/mockq.h"
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "codec/qipc.h"

#define HELLO_MAX 4096
#define READ_CHUNK (256 * 1024)
/* Stop reading a connection while this much output is queued for it (back-pressure). */
#define OUT_HIGH (32u << 20)
/* Stop reading a parked (deferred) connection once this much input is buffered. */
#define IN_HIGH (16u << 20)
#define TRACE_MAX 65536
/* .mock.partdie: the longest the dying process waits for its half answer to leave */
#define DIE_FLUSH_NS (2000ULL * 1000000ULL)
/* .mock.partdie: the exit status, so a harness can tell a death on command from a crash */
#define DIE_STATUS 3

enum ep_kind {
	EP_LISTEN = 1,
	EP_CONN,
	EP_SIGNAL,
};

struct ep_tag {
	enum ep_kind kind;
};

struct listener {
	struct ep_tag tag;
	int fd;
	bool is_unix;
	bool is_paused;		/* out of fds: re-armed when a connection closes */
};

struct conn {
	struct ep_tag tag;
	int fd;
	SSL *ssl;		/* --tls-cert: every TCP connection speaks TLS (like q -E 2) */
	uint64_t id;
	bool is_unix;
	bool is_open;		/* handshake done */
	bool is_dead;		/* closed; freed at the end of the loop iteration */
	bool is_parked;		/* a deferred answer is owed: later messages wait */
	int cap;
	uint8_t hello[HELLO_MAX];
	size_t hello_len;
	struct qipc_assembler as;
	struct qipc_framer arrive;	/* counts sync requests as they arrive, held or not */
	bool is_arrive_bad;	/* the framer failed: the assembler closes us when it gets there */
	uint64_t owed;		/* sync requests arrived and not answered (nor probes) */
	uint8_t *in;		/* bytes read but not processed yet */
	size_t in_len, in_off, in_cap;
	uint8_t *out;		/* bytes queued for the peer */
	size_t out_len, out_off, out_cap;
	uint32_t events;
	struct conn *next, *prev;
};

enum timer_kind {
	TM_DEFER = 1,
	TM_PUB,
};

struct timer {
	enum timer_kind kind;
	uint64_t due_ns;
	struct conn *c;
	struct qipc_obj *val;	/* TM_DEFER: the answer */
	int64_t next, n, every_ms;	/* TM_PUB */
	bool is_counted;	/* TM_DEFER: answering it ends a counted request */
	struct timer *link;
};

static struct {
	const char *name;
	const char *host;
	int port;
	bool use_unix;
	const char *tls_cert, *tls_key;
	SSL_CTX *ssl_ctx;
	const char *user;
	int64_t work_us;
	uint64_t max_msg;
	bool is_trace;
	bool compress;
	int ep;
	struct listener lsn[2];
	int nlsn;
	struct ep_tag sig_tag;
	int sig_fd;
	struct conn *conns;
	struct conn *dead;
	uint64_t next_id;
	uint64_t msg_count;
	uint64_t clients;
	uint64_t inflight;	/* sum of every connection's owed */
	uint64_t max_inflight;	/* the most inflight reached, probes aside (.mock.maxinflight) */
	uint64_t served;	/* counted sync requests answered (.mock.served) */
	struct timer *timers;
	uint8_t *rbuf;
	bool is_stopping;
	uint64_t refuse_left;	/* .mock.refuse: handshakes still to refuse */
	struct conn *die_conn;	/* .mock.partdie: exit once its half answer is written */
	uint64_t die_deadline_ns;	/* ... or at this time, whichever comes first */
} g = {
	.name = "mockq",
	.port = -1,
	.sig_fd = -1,
	.ep = -1,
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mockq %s: ", g.name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ buffers */

static int buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
	size_t nc;
	uint8_t *nb;

	if (need <= *cap)
		return 0;
	nc = *cap ? *cap : 4096;
	while (nc < need)
		nc *= 2;
	nb = realloc(*buf, nc);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = nc;
	return 0;
}

/*
 * Append to a byte FIFO buf[off..len): the consumed front is dropped when it is all of it,
 * or compacted away once it passes 1 MiB and half the buffer, so a busy connection's buffer
 * does not grow without end.
 */
static int fifo_append(uint8_t **buf, size_t *len, size_t *off, size_t *cap, const uint8_t *p,
		       size_t n)
{
	if (*off && *off == *len)
		*off = *len = 0;
	if (*off > (1u << 20) && *off > *len / 2) {
		memmove(*buf, *buf + *off, *len - *off);
		*len -= *off;
		*off = 0;
	}
	if (buf_reserve(buf, cap, *len + n) < 0)
		return -ENOMEM;
	memcpy(*buf + *len, p, n);
	*len += n;
	return 0;
}

static size_t out_pending(const struct conn *c)
{
	return c->out_len - c->out_off;
}

/* ------------------------------------------------------------------ in flight */

/* Count the sync requests completed by bytes p[0..n) of c's stream (after the handshake). */
static void arrive_bytes(struct conn *c, const uint8_t *p, size_t n)
{
	while (n && !c->is_arrive_bad) {
		struct qipc_frame_step st;
		int rc = qipc_framer_feed(&c->arrive, p, n, &st);

		if (rc <= 0) {
			c->is_arrive_bad = true;
			break;
		}
		p += rc;
		n -= (size_t)rc;
		if (st.kind == QIPC_FRAME_BODY && st.is_msg_end && st.hdr.msg_type == QIPC_SYNC) {
			c->owed++;
			g.inflight++;
		}
	}
}

/*
 * Raise the maximum to the count now. Called only where no probe can be in the count unless it
 * waits behind other messages on its connection: after a counted request is evaluated, and
 * after a read (the probes it carried have been evaluated by then).
 */
static void note_inflight(void)
{
	if (g.inflight > g.max_inflight)
		g.max_inflight = g.inflight;
}

/* One request owed on c leaves the count: answered (served) or a probe (not served). */
static void owed_done(struct conn *c, bool is_served)
{
	if (!c->owed)	/* the framer gave up on this stream: nothing was counted */
		return;
	c->owed--;
	g.inflight--;
	if (is_served)
		g.served++;
}

/* ------------------------------------------------------------------ connections */

static void conn_close(struct conn *c, const char *why);

static void conn_update_events(struct conn *c)
{
	uint32_t want = 0;
	struct epoll_event ev;

	if (c->is_dead)
		return;
	if (out_pending(c) < OUT_HIGH && !(c->is_parked && c->in_len - c->in_off > IN_HIGH))
		want |= EPOLLIN;
	if (out_pending(c))
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ev.events = want;
	ev.data.ptr = &c->tag;
	if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
}

/*
 * Socket I/O, through TLS when the connection has it. Both return what send/recv would, with
 * errno EAGAIN when TLS needs the socket to be ready again (the handshake runs inside the
 * first reads and writes).
 */
static ssize_t io_send(struct conn *c, const void *p, size_t n)
{
	size_t done = 0;

	if (!c->ssl)
		return send(c->fd, p, n, MSG_NOSIGNAL);
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, p, n, &done) == 1)
		return (ssize_t)done;
	int e = SSL_get_error(c->ssl, 0);
	errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : EIO;
	return -1;
}

static ssize_t io_recv(struct conn *c, void *p, size_t n)
{
	size_t got = 0;

	if (!c->ssl)
		return recv(c->fd, p, n, 0);
	ERR_clear_error();
	if (SSL_read_ex(c->ssl, p, n, &got) == 1)
		return (ssize_t)got;
	int e = SSL_get_error(c->ssl, 0);
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : EIO;
	return -1;
}

/* Write as much queued output as the socket takes. */
static int conn_flush(struct conn *c)
{
	while (out_pending(c)) {
		ssize_t w = io_send(c, c->out + c->out_off, out_pending(c));

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

/* Queue bytes for the peer, writing straight away when nothing is queued before them. */
static int conn_write(struct conn *c, const uint8_t *p, size_t n)
{
	if (!out_pending(c)) {
		while (n) {
			ssize_t w = io_send(c, p, n);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				return -errno;
			}
			p += w;
			n -= (size_t)w;
		}
		if (!n)
			return 0;
	}
	return fifo_append(&c->out, &c->out_len, &c->out_off, &c->out_cap, p, n);
}

static void timers_drop_conn(struct conn *c)
{
	struct timer **pp = &g.timers, *t;

	while ((t = *pp)) {
		if (t->c == c) {
			*pp = t->link;
			qipc_obj_free(t->val);
			free(t);
		} else {
			pp = &t->link;
		}
	}
}

static void conn_close(struct conn *c, const char *why)
{
	if (c->is_dead)
		return;
	if (g.is_trace || (why && strcmp(why, "eof")))
		logf_("conn %llu closed: %s", (unsigned long long)c->id, why ? why : "");
	epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	c->is_dead = true;
	if (c->is_open)
		g.clients--;
	/* what it owed will never be answered: no longer in flight, not served */
	g.inflight -= c->owed;
	c->owed = 0;
	timers_drop_conn(c);
	/* unlink from the live list, park on the dead list until the loop iteration ends */
	if (c->prev)
		c->prev->next = c->next;
	else
		g.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = g.dead;
	c->prev = NULL;
	g.dead = c;
	for (int i = 0; i < g.nlsn; i++) {
		struct listener *l = &g.lsn[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &l->tag };

		if (l->is_paused && epoll_ctl(g.ep, EPOLL_CTL_ADD, l->fd, &ev) == 0)
			l->is_paused = false;
	}
}

static void conn_close_rc(struct conn *c, const char *what, int rc)
{
	char why[128];

	snprintf(why, sizeof(why), "%s: %s", what, strerror(-rc));
	conn_close(c, why);
}

static void free_dead(void)
{
	struct conn *c;

	while ((c = g.dead)) {
		g.dead = c->next;
		qipc_assembler_free(&c->as);
		free(c->in);
		free(c->out);
		free(c);
	}
}

/* ------------------------------------------------------------------ tracing */

static void trace_bytes(const struct conn *c, const char *what, const uint8_t *p, size_t n)
{
	size_t shown = n < TRACE_MAX ? n : TRACE_MAX;
	char line[100];

	fprintf(stderr, "mockq %s: conn %llu %s %zu bytes\n", g.name, (unsigned long long)c->id,
		what, n);
	for (size_t off = 0; off < shown; off += 16) {
		int len = snprintf(line, sizeof(line), "  %06zx ", off);

		for (size_t k = 0; k < 16; k++)
			len += snprintf(line + len, sizeof(line) - (size_t)len,
					off + k < shown ? "%02x " : "   ", off + k < shown ?
					p[off + k] : 0);
		len += snprintf(line + len, sizeof(line) - (size_t)len, " ");
		for (size_t k = 0; k < 16 && off + k < shown; k++) {
			uint8_t b = p[off + k];

			line[len++] = (b >= 32 && b < 127) ? (char)b : '.';
		}
		line[len] = 0;
		fprintf(stderr, "%s\n", line);
	}
	if (shown < n)
		fprintf(stderr, "  ... %zu more bytes\n", n - shown);
}

/* ------------------------------------------------------------------ responses */

static void send_error(struct conn *c, const char *text)
{
	uint8_t buf[MQ_ERR_MAX + 16];
	char clean[MQ_ERR_MAX];
	size_t k = 0;
	int n;

	for (const char *p = text; *p && k + 1 < sizeof(clean); p++)
		clean[k++] = *p;
	clean[k] = 0;
	n = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE, clean);
	if (n < 0)
		return;
	n = conn_write(c, buf, (size_t)n);
	if (n < 0)
		conn_close_rc(c, "write failed", n);
}

/* Encode o (taken) as one whole message of type into *buf (malloc'd). 0 or -errno. */
static int encode_obj(struct conn *c, struct qipc_obj *o, enum qipc_msg_type type, uint8_t **buf,
		      size_t *len)
{
	int rc = mq_sanitize(o);

	if (rc == 0)
		rc = qipc_encode_msg(o, type, g.compress && !c->is_unix, buf, len);
	qipc_obj_free(o);
	return rc;
}

/* Encode and queue one message carrying o (taken). */
static void send_obj(struct conn *c, struct qipc_obj *o, enum qipc_msg_type type)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	rc = encode_obj(c, o, type, &buf, &len);
	if (rc < 0) {
		if (type == QIPC_RESPONSE)
			send_error(c, rc == -ENOMEM ? "wsfull" : "nyi");
		return;
	}
	rc = conn_write(c, buf, len);
	free(buf);
	if (rc < 0)
		conn_close_rc(c, "write failed", rc);
}

static void send_upd(struct conn *c, int64_t i)
{
	struct qipc_obj *l = qipc_obj_list(2);

	if (!l)
		return;
	l->items[0] = qipc_obj_sym("upd");
	l->items[1] = qipc_obj_long(i);
	if (!l->items[0] || !l->items[1]) {
		qipc_obj_free(l);
		return;
	}
	send_obj(c, l, QIPC_ASYNC);
}

/* (`tag;x) as one message of type: what .mock.unsolicited and .mock.pushsync send first. */
static int encode_tagged(struct conn *c, const char *tag, const struct qipc_obj *x,
			 enum qipc_msg_type type, uint8_t **buf, size_t *len)
{
	struct qipc_obj *l = qipc_obj_list(2);

	if (!l)
		return -ENOMEM;
	l->items[0] = qipc_obj_sym(tag);
	l->items[1] = mq_obj_copy(x);
	if (!l->items[0] || !l->items[1]) {
		qipc_obj_free(l);
		return -ENOMEM;
	}
	return encode_obj(c, l, type, buf, len);
}

/*
 * The misbehaving answers: a response nobody asked for and/or a sync call into the client
 * first, then the answer (twice with .mock.twice). All of it goes in ONE write, so a peer on
 * loopback usually gets it in one read: that is the case a gateway must not pair with the
 * next request it sends. In an async message only the extra messages are sent.
 */
static void send_misbehaving(struct conn *c, struct qipc_obj *res, const struct mq_eval *ev,
			     bool is_sync)
{
	uint8_t *part[3] = { NULL, NULL, NULL }, *all = NULL;
	size_t plen[3] = { 0, 0, 0 }, total = 0;
	int rc = 0, reps = is_sync && ev->is_twice ? 2 : 1;

	if (ev->is_unsolicited)
		rc = encode_tagged(c, "unsolicited", res, QIPC_RESPONSE, &part[0], &plen[0]);
	if (rc == 0 && ev->is_pushsync)
		rc = encode_tagged(c, "callback", res, QIPC_SYNC, &part[1], &plen[1]);
	if (rc == 0 && is_sync) {
		rc = encode_obj(c, res, QIPC_RESPONSE, &part[2], &plen[2]);
		res = NULL;
	}
	qipc_obj_free(res);
	total = plen[0] + plen[1] + plen[2] * (size_t)reps;
	if (rc == 0 && total)
		all = malloc(total);
	if (rc < 0 || (total && !all)) {
		if (is_sync)
			send_error(c, "wsfull");
	} else if (total) {
		size_t off = 0;

		for (int k = 0; k < 3; k++) {
			for (int r = 0; r < (k == 2 ? reps : 1) && plen[k]; r++) {
				memcpy(all + off, part[k], plen[k]);
				off += plen[k];
			}
		}
		rc = conn_write(c, all, total);
		if (rc < 0)
			conn_close_rc(c, "write failed", rc);
	}
	free(all);
	for (int k = 0; k < 3; k++)
		free(part[k]);
}

/*
 * .mock.partdie: write the first half of the answer, then the whole process exits (from the
 * main loop, once those bytes have left or after DIE_FLUSH_NS), like a q process dying in the
 * middle of a large answer. Nothing more is read from any connection meanwhile.
 */
static void send_part_and_die(struct conn *c, struct qipc_obj *res)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = encode_obj(c, res, QIPC_RESPONSE, &buf, &len);

	if (rc < 0) {
		send_error(c, "wsfull");
		return;
	}
	logf_("conn %llu: .mock.partdie: writing %zu of a %zu-byte answer, then exiting",
	      (unsigned long long)c->id, len / 2, len);
	rc = conn_write(c, buf, len / 2);
	free(buf);
	c->is_parked = true;
	g.die_conn = c;
	g.die_deadline_ns = now_ns() + DIE_FLUSH_NS;
	if (rc < 0)
		conn_close_rc(c, "write failed", rc);
}

static int timer_add(struct timer *t)
{
	t->link = g.timers;
	g.timers = t;
	return 0;
}

/* ------------------------------------------------------------------ messages */

static void busy_spin_us(int64_t us)
{
	uint64_t end = now_ns() + (uint64_t)us * 1000ULL;

	while (now_ns() < end)
		;
}

static void handle_msg(struct conn *c, const uint8_t *msg, size_t len)
{
	struct mq_eval ev = { 0 };
	struct qipc_obj *obj, *res;
	uint8_t type = 0;
	int err = 0;
	bool is_sync, is_counted;

	g.msg_count++;
	if (g.is_trace)
		trace_bytes(c, "recv", msg, len);
	if (g.work_us > 0)
		busy_spin_us(g.work_us);
	obj = qipc_decode_msg(msg, len, g.max_msg, &type, &err);
	is_sync = len >= 2 && msg[1] == QIPC_SYNC;
	if (!obj) {
		/* a type we do not model: fail the request as q would fail on it */
		if (err == -EPROTO && is_sync) {
			note_inflight();
			send_error(c, "nyi");
			owed_done(c, true);
			return;
		}
		if (err == -ENOMEM && is_sync) {
			note_inflight();
			send_error(c, "wsfull");
			owed_done(c, true);
			return;
		}
		if (err == -EPROTO || err == -ENOMEM)
			return;
		conn_close(c, "badmsg");
		return;
	}
	if (type == QIPC_RESPONSE) {	/* we never ask, so nothing can be owed to us */
		qipc_obj_free(obj);
		return;
	}
	is_sync = type == QIPC_SYNC;
	ev.name = g.name;
	ev.msg_count = g.msg_count;
	ev.clients = g.clients;
	ev.is_sync = is_sync;
	/* a sync message is in the count since it arrived: what a probe reports leaves it out */
	ev.inflight = g.inflight - (is_sync && c->owed ? 1 : 0);
	ev.max_inflight = g.max_inflight;
	ev.served = g.served;
	mq_eval_reset(&ev);
	res = mq_eval_msg(&ev, obj);
	qipc_obj_free(obj);
	if (ev.refuse_n >= 0)
		g.refuse_left = (uint64_t)ev.refuse_n;
	is_counted = is_sync && !ev.is_probe;
	if (is_sync && ev.is_probe)
		owed_done(c, false);
	if (ev.is_stats_reset) {
		g.max_inflight = g.inflight;
		g.served = 0;
	}
	if (is_counted)
		note_inflight();
	if (ev.is_drop) {
		qipc_obj_free(res);
		conn_close(c, g.is_trace ? ".mock.drop" : NULL);
		return;
	}
	if (is_sync) {
		if (!res) {
			send_error(c, ev.err[0] ? ev.err : "error");
		} else if (ev.is_partdie) {
			send_part_and_die(c, res);
			return;
		} else if (ev.defer_ms >= 0) {
			struct timer *t = calloc(1, sizeof(*t));

			if (!t) {
				qipc_obj_free(res);
				send_error(c, "wsfull");
			} else {
				t->kind = TM_DEFER;
				t->due_ns = now_ns() + (uint64_t)ev.defer_ms * 1000000ULL;
				t->c = c;
				t->val = res;
				t->is_counted = is_counted;
				timer_add(t);
				c->is_parked = true;
				/* still owed: the timer ends it */
				is_counted = false;
			}
		} else if (ev.is_twice || ev.is_unsolicited || ev.is_pushsync) {
			send_misbehaving(c, res, &ev, true);
		} else {
			send_obj(c, res, QIPC_RESPONSE);
		}
		if (is_counted)
			owed_done(c, true);
	} else if (res && (ev.is_unsolicited || ev.is_pushsync)) {
		send_misbehaving(c, res, &ev, false);
	} else {
		qipc_obj_free(res);
	}
	if (c->is_dead || ev.pub_n <= 0)
		return;
	if (ev.pub_ms == 0) {
		for (int64_t i = 0; i < ev.pub_n && !c->is_dead; i++)
			send_upd(c, i);
		return;
	}
	{
		struct timer *t = calloc(1, sizeof(*t));

		if (!t)
			return;
		t->kind = TM_PUB;
		t->due_ns = now_ns() + (uint64_t)ev.pub_ms * 1000000ULL;
		t->c = c;
		t->n = ev.pub_n;
		t->every_ms = ev.pub_ms;
		timer_add(t);
	}
}

/* Feed bytes to the assembler and handle whole messages until parked or blocked. */
static size_t process_bytes(struct conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0;

	while (off < n && !c->is_dead && !c->is_parked && out_pending(c) < OUT_HIGH &&
	       !g.die_conn) {
		const uint8_t *msg = NULL;
		size_t mlen = 0;
		int rc = qipc_assembler_feed(&c->as, p + off, n - off, &msg, &mlen);

		if (rc < 0) {
			conn_close(c, rc == -EMSGSIZE ? "message over --max-msg" : "badmsg");
			return n;
		}
		if (rc == 0)
			break;
		off += (size_t)rc;
		if (msg)
			handle_msg(c, msg, mlen);
	}
	return off;
}

static int in_append(struct conn *c, const uint8_t *p, size_t n)
{
	return fifo_append(&c->in, &c->in_len, &c->in_off, &c->in_cap, p, n);
}

/* Process bytes buffered while the connection was parked or blocked on output. */
static void conn_pump(struct conn *c)
{
	int rc;

	if (c->is_dead || !c->is_open)
		return;
	if (c->in_len > c->in_off)
		c->in_off += process_bytes(c, c->in + c->in_off, c->in_len - c->in_off);
	if (c->is_dead)
		return;
	rc = conn_flush(c);
	if (rc < 0) {
		conn_close_rc(c, "write failed", rc);
		return;
	}
	conn_update_events(c);
}

/* ------------------------------------------------------------------ handshake */

static bool creds_ok(const struct qipc_hello *h)
{
	size_t ul;

	if (!g.user)
		return true;
	ul = strlen(g.user);
	return h->cred_len == ul && !memcmp(h->cred, g.user, ul);
}

static void on_hello_bytes(struct conn *c)
{
	struct qipc_hello h;
	int rc = qipc_hello_parse(c->hello, c->hello_len, HELLO_MAX, &h);
	uint8_t reply;

	if (rc == 0)
		return;
	if (rc < 0) {
		conn_close(c, rc == -EPROTO ? "not q (HTTP/TLS?)" : "bad hello");
		return;
	}
	if (g.is_trace)
		trace_bytes(c, "hello", c->hello, (size_t)rc);
	if (g.refuse_left > 0) {	/* .mock.refuse: refused as q refuses credentials */
		g.refuse_left--;
		conn_close(c, "handshake refused (.mock.refuse)");
		return;
	}
	if (!creds_ok(&h)) {	/* q refuses by closing without a reply */
		conn_close(c, "access");
		return;
	}
	c->cap = qipc_hello_reply(h.capability, QIPC_MAX_CAPABILITY);
	reply = (uint8_t)c->cap;
	/* the reply byte goes in its own write, as q does */
	if (io_send(c, &reply, 1) != 1) {
		conn_close(c, "hello reply failed");
		return;
	}
	c->is_open = true;
	g.clients++;
	qipc_assembler_init(&c->as, c->cap, g.max_msg);
	qipc_framer_init(&c->arrive, c->cap, g.max_msg);
	/* bytes that followed the hello are the first messages */
	if ((size_t)rc < c->hello_len) {
		arrive_bytes(c, c->hello + rc, c->hello_len - (size_t)rc);
		if (in_append(c, c->hello + rc, c->hello_len - (size_t)rc) < 0)
			conn_close(c, "out of memory");
	}
	c->hello_len = 0;
}

/* ------------------------------------------------------------------ events */

static void on_readable(struct conn *c)
{
	int rc;

	for (int round = 0; round < 16 && !c->is_dead; round++) {
		ssize_t r;

		if (!c->is_open) {
			r = io_recv(c, c->hello + c->hello_len, HELLO_MAX - c->hello_len);
		} else {
			if (out_pending(c) >= OUT_HIGH ||
			    (c->is_parked && c->in_len - c->in_off > IN_HIGH))
				break;
			r = io_recv(c, g.rbuf, READ_CHUNK);
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(c, "read error");
			break;
		}
		if (r == 0) {
			conn_close(c, "eof");
			break;
		}
		if (!c->is_open) {
			c->hello_len += (size_t)r;
			on_hello_bytes(c);
			if (c->is_dead)
				break;
			if (c->is_open)
				conn_pump(c);
			continue;
		}
		arrive_bytes(c, g.rbuf, (size_t)r);
		if (c->in_len > c->in_off || c->is_parked || out_pending(c) >= OUT_HIGH) {
			if (in_append(c, g.rbuf, (size_t)r) < 0) {
				conn_close(c, "out of memory");
				break;
			}
			conn_pump(c);
		} else {
			size_t used = process_bytes(c, g.rbuf, (size_t)r);

			if (!c->is_dead && used < (size_t)r &&
			    in_append(c, g.rbuf + used, (size_t)r - used) < 0)
				conn_close(c, "out of memory");
		}
		/* TLS may hold decrypted bytes epoll cannot see: keep reading while it does */
		if ((size_t)r < READ_CHUNK && !(c->ssl && SSL_pending(c->ssl) > 0))
			break;
	}
	/* requests read but held (behind a deferred answer, or output back-pressure) count too */
	note_inflight();
	if (c->is_dead)
		return;
	rc = conn_flush(c);
	if (rc < 0) {
		conn_close_rc(c, "write failed", rc);
		return;
	}
	conn_update_events(c);
}

static void on_writable(struct conn *c)
{
	int rc = conn_flush(c);


	if (rc < 0) {
		conn_close_rc(c, "write failed", rc);
		return;
	}
	/* output drained below the mark: resume messages that waited behind it */
	conn_pump(c);
}

static void on_accept(struct listener *l)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct conn *c;
		struct epoll_event ev;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				logf_("accept: %s; pausing the listener", strerror(errno));
				epoll_ctl(g.ep, EPOLL_CTL_DEL, l->fd, NULL);
				l->is_paused = true;
			}
			return;
		}
		if (!l->is_unix)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->tag.kind = EP_CONN;
		c->fd = fd;
		c->id = ++g.next_id;
		c->is_unix = l->is_unix;
		if (g.ssl_ctx && !l->is_unix) {
			c->ssl = SSL_new(g.ssl_ctx);
			if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
				SSL_free(c->ssl);
				close(fd);
				free(c);
				continue;
			}
			SSL_set_accept_state(c->ssl);
		}
		c->events = EPOLLIN;
		ev.events = EPOLLIN;
		ev.data.ptr = &c->tag;
		if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = g.conns;
		if (g.conns)
			g.conns->prev = c;
		g.conns = c;
		if (g.is_trace)
			logf_("conn %llu accepted (%s)", (unsigned long long)c->id,
			      l->is_unix ? "unix" : "tcp");
	}
}

/* The first timer that is due, unlinked from the list; NULL when none is. */
static struct timer *timer_pop_due(uint64_t now)
{
	struct timer **pp = &g.timers, *t;

	for (; (t = *pp); pp = &t->link)
		if (t->due_ns <= now) {
			*pp = t->link;
			t->link = NULL;
			return t;
		}
	return NULL;
}

static void run_timers(void)
{
	uint64_t now = now_ns();
	struct timer *t;

	/* a timer is unlinked before it runs: running it may close its connection, which
	 * frees that connection's timers still in the list */
	while ((t = timer_pop_due(now))) {
		struct conn *c = t->c;

		if (t->kind == TM_DEFER) {
			c->is_parked = false;
			send_obj(c, t->val, QIPC_RESPONSE);
			if (t->is_counted)
				owed_done(c, true);
			free(t);
			/* the connection's later messages run now, in order */
			conn_pump(c);
			continue;
		}
		send_upd(c, t->next++);
		if (!c->is_dead && t->next < t->n) {
			t->due_ns += (uint64_t)t->every_ms * 1000000ULL;
			timer_add(t);
		} else {
			free(t);
		}
		if (!c->is_dead) {
			int rc = conn_flush(c);

			if (rc < 0)
				conn_close_rc(c, "write failed", rc);
			else
				conn_update_events(c);
		}
	}
}

static int next_timeout_ms(void)
{
	uint64_t now = now_ns(), best = g.die_conn ? g.die_deadline_ns : UINT64_MAX;

	for (struct timer *t = g.timers; t; t = t->link)
		if (t->due_ns < best)
			best = t->due_ns;
	if (best == UINT64_MAX)
		return -1;
	if (best <= now)
		return 0;
	return (int)((best - now + 999999ULL) / 1000000ULL);
}

/* ------------------------------------------------------------------ setup */

static int listen_tcp(void)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char port_s[16];
	int fd = -1, one = 1, rc;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	snprintf(port_s, sizeof(port_s), "%d", g.port);
	rc = getaddrinfo(g.host, port_s, &hints, &ai);
	if (rc) {
		logf_("cannot resolve %s: %s", g.host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4096) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		logf_("cannot listen on %s:%d: %s", g.host, g.port, strerror(errno));
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			g.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			g.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

/* q's abstract unix socket "\0/tmp/kx.PORT"; the address length excludes a trailing NUL. */
static int listen_unix(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, n;
	socklen_t len;

	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "/tmp/kx.%d", g.port);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 4096) < 0) {
		logf_("cannot listen on unix @/tmp/kx.%d: %s", g.port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mockq --port N [--host H] [--unix] [--name NAME] [--user user:pass]\n"
		"             [--work-us N] [--max-msg BYTES] [--compress] [--trace]\n"
		"             [--tls-cert FILE --tls-key FILE]\n"
		"  --port N       TCP port (0: pick a free one; the banner names it)\n"
		"  --host H       bind address (default 127.0.0.1)\n"
		"  --unix         also listen on q's abstract unix socket @/tmp/kx.N\n"
		"  --name NAME    id returned by .mock.id[] (default mockq)\n"
		"  --user u:p     accept only these credentials (others: closed, as q does)\n"
		"  --work-us N    busy-spin N microseconds per message\n"
		"  --max-msg B    close connections that send a message over B bytes\n"
		"  --compress     compress large responses on TCP with q's rule\n"
		"  --tls-cert F   with --tls-key: TCP connections speak TLS only (as q -E 2)\n"
		"  --trace        hex-dump handshakes and received messages to stderr\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "host", required_argument, NULL, 'H' },
		{ "unix", no_argument, NULL, 'u' },
		{ "name", required_argument, NULL, 'n' },
		{ "user", required_argument, NULL, 'U' },
		{ "work-us", required_argument, NULL, 'w' },
		{ "max-msg", required_argument, NULL, 'm' },
		{ "compress", no_argument, NULL, 'c' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "trace", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	char *end;

	g.host = "127.0.0.1";
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'p':
			g.port = (int)strtol(optarg, &end, 10);
			if (*end || g.port < 0 || g.port > 65535)
				return -1;
			break;
		case 'H': g.host = optarg; break;
		case 'u': g.use_unix = true; break;
		case 'n': g.name = optarg; break;
		case 'U':
			if (!strchr(optarg, ':'))
				return -1;
			g.user = optarg;
			break;
		case 'w':
			g.work_us = strtoll(optarg, &end, 10);
			if (*end || g.work_us < 0)
				return -1;
			break;
		case 'm':
			g.max_msg = strtoull(optarg, &end, 10);
			if (*end)
				return -1;
			break;
		case 'c': g.compress = true; break;
		case 'C': g.tls_cert = optarg; break;
		case 'K': g.tls_key = optarg; break;
		case 't': g.is_trace = true; break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (optind != argc || g.port < 0 || !g.tls_cert != !g.tls_key)
		return -1;
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void shutdown_all(void)
{
	while (g.conns)
		conn_close(g.conns, NULL);
	free_dead();
	for (int i = 0; i < g.nlsn; i++)
		close(g.lsn[i].fd);
	if (g.sig_fd >= 0)
		close(g.sig_fd);
	close(g.ep);
	free(g.rbuf);
	mq_globals_free();
}

int main(int argc, char **argv)
{
	struct epoll_event evs[256];
	sigset_t mask;
	int fd;

	if (parse_args(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (g.tls_cert) {
		g.ssl_ctx = SSL_CTX_new(TLS_server_method());
		if (!g.ssl_ctx ||
		    SSL_CTX_use_certificate_chain_file(g.ssl_ctx, g.tls_cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(g.ssl_ctx, g.tls_key, SSL_FILETYPE_PEM) != 1) {
			logf_("cannot load TLS certificate %s / key %s", g.tls_cert, g.tls_key);
			return 1;
		}
		SSL_CTX_set_min_proto_version(g.ssl_ctx, TLS1_2_VERSION);
	}
	g.rbuf = malloc(READ_CHUNK);
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	if (!g.rbuf || g.ep < 0) {
		logf_("setup failed: %s", strerror(errno));
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	g.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	g.sig_tag.kind = EP_SIGNAL;
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &g.sig_tag };

		if (g.sig_fd < 0 || epoll_ctl(g.ep, EPOLL_CTL_ADD, g.sig_fd, &ev) < 0) {
			logf_("signalfd: %s", strerror(errno));
			return 1;
		}
	}
	fd = listen_tcp();
	if (fd < 0)
		return 1;
	g.lsn[g.nlsn++] = (struct listener){ .tag.kind = EP_LISTEN, .fd = fd };
	if (g.use_unix) {
		fd = listen_unix();
		if (fd < 0)
			return 1;
		g.lsn[g.nlsn++] = (struct listener){ .tag.kind = EP_LISTEN, .fd = fd,
						     .is_unix = true };
	}
	for (int i = 0; i < g.nlsn; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &g.lsn[i].tag };

		if (epoll_ctl(g.ep, EPOLL_CTL_ADD, g.lsn[i].fd, &ev) < 0) {
			logf_("epoll: %s", strerror(errno));
			return 1;
		}
	}
	printf("mockq %s listening on port %d\n", g.name, g.port);
	fflush(stdout);

	while (!g.is_stopping) {
		int n = epoll_wait(g.ep, evs, 256, next_timeout_ms());

		if (n < 0) {
			if (errno == EINTR)
				continue;
			logf_("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct ep_tag *tag = evs[i].data.ptr;

			if (tag->kind == EP_SIGNAL) {
				struct signalfd_siginfo si;

				if (read(g.sig_fd, &si, sizeof(si)) > 0)
					g.is_stopping = true;
			} else if (tag->kind == EP_LISTEN) {
				on_accept((struct listener *)tag);
			} else {
				struct conn *c = (struct conn *)tag;

				if (c->is_dead)
					continue;
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					on_readable(c);
				if (!c->is_dead && (evs[i].events & EPOLLOUT))
					on_writable(c);
			}
		}
		run_timers();
		/* .mock.partdie: go once the half answer has left (or could not) */
		if (g.die_conn && (g.die_conn->is_dead || !out_pending(g.die_conn) ||
				   now_ns() >= g.die_deadline_ns)) {
			logf_("exiting with status %d on .mock.partdie", DIE_STATUS);
			_exit(DIE_STATUS);
		}
		free_dead();
	}
	shutdown_all();
	return 0;
}
