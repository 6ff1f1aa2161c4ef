/*
 * fuzz_client — libFuzzer target for the gateway's client side: handshake, login, framing,
 * streaming and pipelining, session pass-through, admin calls and routing rules — the client
 * session state machine fed random bytes and random close events, on a REAL worker.
 *
 * One gw_worker runs in this process, single-threaded: the target calls gw_worker_turn itself
 * between operations. Its backend is a tiny fake q process served from the same thread (a
 * listening socket on 127.0.0.1 pumped between turns): it answers the q handshake and echoes
 * every sync message back as a response, so every answer a client gets can be traced to the
 * request it answers. Each input is a script of operations over FZ_CLIENTS client sockets
 * connected to the gateway's listener (see the op table below). After each input every
 * client is closed and the worker runs until it has forgotten them, so inputs do not leak
 * state into one another.
 *
 * Besides the sanitizers, the target checks what the clients receive (abort() = finding):
 *  - the handshake reply comes only after a complete hello with credentials that are right,
 *    and is min(offered capability, 6);
 *  - the stream a client receives is well-framed q IPC: responses only (and, in session mode,
 *    the backend's asyncs);
 *  - each answer is the echo of that client's oldest unanswered sync request, or a
 *    "qgate: ..." error for it: never another client's answer, never out of order;
 *  - the backend only ever receives well-framed messages;
 *  - once every client has gone, the worker settles within FZ_SETTLE_MS: no client, queued
 *    request, dedicated or session connection is left, every pooled connection is idle.
 *
 * Build and run (clang; see docs/testing.md):
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz_client
 *   mkdir -p /tmp/fz
 *   build-fuzz/tests/fuzz/fuzz_client -max_total_time=60 /tmp/fz tests/fuzz/corpus_client
 * (new inputs go to the first directory, so the seeds stay as they are).
 * Replay one input: build-fuzz/tests/fuzz/fuzz_client crash-<sha1>; FUZZ_CLIENT_TRACE=1 prints
 * each operation, FUZZ_CLIENT_LOG=debug the gateway's own log (default: errors only).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec/qipc.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/pwhash.h"
#include "gateway/runtime.h"
#include "gateway/shared.h"
#include "gateway/worker.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CLIENTS 4
#define FZ_MAX_OPS 128			/* operations per input; the rest of an input is ignored */
#define FZ_TURNS_PER_OP 2		/* loop turns after every operation */
#define FZ_SLEEP_BUDGET_MS 40		/* real time one input may spend in OP_SLEEP */
#define FZ_EXPECT 512			/* sync requests tracked per client */
#define FZ_BE_CONNS 64			/* fake backend connections */
#define FZ_SETTLE_MS 3000		/* after an input: the worker must settle by then */
#define FZ_MAX_MSG (1u << 20)		/* limits.max_message_bytes */
#define FZ_SEND_STALLS 8		/* EAGAINs in a row before a write gives up the rest */
#define FZ_BIG_UNIT (256 * 1024)	/* a "big" query's answer: 1..16 of these */
#ifndef FZ_MAX_PIPELINE
#define FZ_MAX_PIPELINE 4		/* limits.max_pipeline: OP_PIPE goes beyond it */
#endif

static bool g_trace;

/* FUZZ_CLIENT_TRACE=1: one line per operation, to read what a reproducer does */
static void __attribute__((format(printf, 1, 2))) trace(const char *fmt, ...)
{
	va_list ap;

	if (!g_trace)
		return;
	fprintf(stderr, "fuzz_client: %6llu ", (unsigned long long)(gw_now_us() % 1000000));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* A broken invariant: say which, then abort so libFuzzer keeps the input. */
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...);

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_client: FAILED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static void st32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A message's identity for the echo check: every byte but the type, which the echo changes. */
static uint64_t hash_header(const uint8_t *hdr)
{
	return fnv(fnv(FNV_INIT, hdr, 1), hdr + 2, QIPC_HDR_SIZE - 2);
}

/* ------------------------------------------------------------ credentials */

/*
 * The users in the config. A hello names one of them (or nobody) with a right or wrong
 * password; the target knows which logins must succeed.
 */
enum fz_role { FZ_QUERY = 0, FZ_ADMIN, FZ_SESSION, FZ_ALLOW };

static const struct {
	const char *user, *pass;
	enum fz_role role;
} g_users[] = {
	{ "alice", "apw", FZ_QUERY },	/* every pool */
	{ "ops", "opw", FZ_ADMIN },	/* .qgate.* answered by the gateway */
	{ "sess", "spw", FZ_SESSION },	/* a user rule sends the whole session to pool s */
	{ "bob", "bpw", FZ_ALLOW },	/* allow-list: f*, .qgate.*; pools q only */
};
#define FZ_N_USERS (sizeof(g_users) / sizeof(g_users[0]))

/* What OP_HELLO sends: the users above, then wrong passwords, an unknown user, no user. */
static const struct {
	const char *user, *pass;
} g_creds[] = {
	{ "alice", "apw" }, { "ops", "opw" }, { "sess", "spw" }, { "bob", "bpw" },
	{ "alice", "nope" }, { "sess", "bad" }, { "mallory", "x" }, { "", NULL }, { "alice", NULL },
};
#define FZ_N_CREDS (sizeof(g_creds) / sizeof(g_creds[0]))

/* The user a hello logs in as, or -1 when the gateway must refuse it. */
static int login_of(const struct qipc_hello *h)
{
	const uint8_t *pw = h->user_len < h->cred_len ? h->cred + h->user_len + 1 : h->cred;
	size_t pw_len = h->user_len < h->cred_len ? h->cred_len - h->user_len - 1 : 0;

	for (size_t i = 0; i < FZ_N_USERS; i++) {
		size_t ul = strlen(g_users[i].user), pl = strlen(g_users[i].pass);
		if (h->user_len == ul && memcmp(h->cred, g_users[i].user, ul) == 0 &&
		    pw_len == pl && memcmp(pw, g_users[i].pass, pl) == 0)
			return (int)i;
	}
	return -1;
}

/* --------------------------------------------------------------- clients */

struct fz_expect {
	uint64_t hash;
	bool is_complete;	/* all its bytes were sent (an error may answer it before) */
};

struct fz_client {
	int fd;			/* -1: not connected */
	bool is_wr_shut;
	bool is_rx_eof;
	/* what it sent, parsed as the gateway parses it */
	uint8_t hello[1024];
	size_t hello_len;
	int tx_state;		/* 0 hello, 1 messages, 2 the gateway must have closed it */
	int cap;		/* negotiated: min(offered, 6) */
	int user;		/* index into g_users, -1 refused */
	struct qipc_framer tx_fr;
	bool is_tx_sync;	/* the message being sent is a sync request (tracked) */
	bool is_exact;		/* every sync it sent is tracked: answers are checked */
	struct fz_expect exp[FZ_EXPECT];
	size_t exp_head, exp_n;
	/* what it received */
	bool has_cap;
	struct qipc_framer rx_fr;
	uint64_t rx_hash;
	uint8_t rx_type;
	uint8_t rx_head[32];	/* first payload bytes: a "qgate: " error, a "BIG:" answer */
	size_t rx_head_n;
	uint64_t answers;
};

static struct fz_client g_cl[FZ_CLIENTS];

/* ---------------------------------------------------------- fake backend */

struct fz_be_conn {
	int fd;			/* -1: free */
	bool is_ready;		/* handshake answered */
	bool is_session;	/* its hello carried a client's credentials (auth_passthrough) */
	bool is_dup_next;	/* answer the next sync twice (a misbehaving backend) */
	uint8_t hello[1024];
	size_t hello_len;
	struct qipc_assembler as;
	uint8_t *out;
	size_t out_len, out_off, out_cap;
};

static struct {
	int lfd;
	int port;
	bool is_stalled;	/* reads nothing: answers stop, the gateway's sends back up */
	bool is_refuse_next;	/* close the next session hello without a reply */
	struct fz_be_conn c[FZ_BE_CONNS];
} g_be;

static struct gw_worker g_w;
static struct gw_config *g_cfg;
static volatile int g_stop;
static uint64_t g_connects;	/* client connections made: the listener must accept each */
static uint8_t g_buf[256 * 1024];

static void be_close(struct fz_be_conn *b, bool is_rst)
{
	if (b->fd < 0)
		return;
	if (is_rst) {
		struct linger lg = { 1, 0 };
		setsockopt(b->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(b->fd);
	b->fd = -1;
	qipc_assembler_free(&b->as);
	free(b->out);
	b->out = NULL;
	b->out_len = b->out_off = b->out_cap = 0;
}

static void be_flush(struct fz_be_conn *b)
{
	/* bounded: every pass either writes bytes or stops */
	while (b->fd >= 0 && b->out_off < b->out_len) {
		ssize_t k = send(b->fd, b->out + b->out_off, b->out_len - b->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k > 0) {
			b->out_off += (size_t)k;
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		be_close(b, false);	/* the gateway closed it */
		return;
	}
	b->out_len = b->out_off = 0;
}

/* Room for n more bytes at the end of b's output; the caller writes them. */
static uint8_t *be_reserve(struct fz_be_conn *b, size_t n)
{
	if (b->out_len + n > b->out_cap) {
		size_t cap = b->out_cap ? b->out_cap : 4096;
		while (cap < b->out_len + n)
			cap *= 2;
		uint8_t *nb = realloc(b->out, cap);
		if (!nb)
			abort();
		b->out = nb;
		b->out_cap = cap;
	}
	b->out_len += n;
	return b->out + b->out_len - n;
}

static void be_queue(struct fz_be_conn *b, const uint8_t *p, size_t n)
{
	memcpy(be_reserve(b, n), p, n);
}

/*
 * The answer to one sync request: its echo, as a response. A string query starting "big" gets
 * (length % 16 + 1) * 256 KiB instead, "BIG:" and the request's hash at its head (check_answer
 * takes that for an echo): answers large enough that a client that does not read makes the
 * gateway hold them and pause its backends.
 */
static void be_answer(struct fz_be_conn *b, const uint8_t *msg, size_t len)
{
	if (len >= QIPC_HDR_SIZE + 9 && msg[2] == 0 && msg[8] == QT_CHAR &&
	    memcmp(msg + 14, "big", 3) == 0) {
		uint64_t h = fnv(hash_header(msg), msg + QIPC_HDR_SIZE, len - QIPC_HDR_SIZE);
		size_t n = (len % 16 + 1) * FZ_BIG_UNIT;	/* the char vector's length */
		uint8_t *o = be_reserve(b, QIPC_HDR_SIZE + 6 + n);
		qipc_header_build(o, QIPC_RESPONSE, false, QIPC_HDR_SIZE + 6 + n);
		o[8] = QT_CHAR;
		o[9] = 0;
		st32(o + 10, (uint32_t)n);
		memcpy(o + 14, "BIG:", 4);
		for (int i = 0; i < 8; i++)
			o[18 + i] = (uint8_t)(h >> (8 * i));
		memset(o + 26, ' ', n - 12);
		return;
	}
	uint8_t *o = be_reserve(b, len);
	memcpy(o, msg, len);
	o[1] = QIPC_RESPONSE;
}

/* One whole message from the gateway: a sync is answered, anything else dropped. */
static void be_on_msg(struct fz_be_conn *b, const uint8_t *msg, size_t len)
{
	if (msg[1] != QIPC_SYNC)
		return;
	be_answer(b, msg, len);
	if (b->is_dup_next && !b->is_session) {
		/* an answer nobody asked for, in the same write as the real one */
		b->is_dup_next = false;
		be_answer(b, msg, len);
	}
}

static void be_feed(struct fz_be_conn *b, const uint8_t *p, size_t n);

static void be_on_bytes(struct fz_be_conn *b, const uint8_t *p, size_t n)
{
	if (!b->is_ready) {
		/* the gateway's hello, read by the codec's rules ("creds 00 00" is capability 0) */
		size_t room = sizeof(b->hello) - b->hello_len;
		size_t k = n < room ? n : room;
		struct qipc_hello h;
		memcpy(b->hello + b->hello_len, p, k);
		b->hello_len += k;
		int ret = qipc_hello_parse(b->hello, b->hello_len, sizeof(b->hello), &h);
		if (ret == 0)
			return;
		if (ret < 0)
			fail("backend: malformed hello from the gateway");
		/* pooled and dedicated connections log in as "gw"; a session brings its client's
		 * credentials (auth_passthrough) */
		b->is_session = !(h.user_len == 2 && memcmp(h.cred, "gw", 2) == 0);
		if (b->is_session && g_be.is_refuse_next) {
			g_be.is_refuse_next = false;
			be_close(b, false);	/* q refuses a login by closing, without a byte */
			return;
		}
		uint8_t cap = qipc_hello_reply(h.capability, QIPC_MAX_CAPABILITY);
		be_queue(b, &cap, 1);
		qipc_assembler_init(&b->as, cap, 4 * FZ_MAX_MSG);
		b->is_ready = true;
		/* what followed the hello in the buffer, then the rest of this read */
		be_feed(b, b->hello + ret, b->hello_len - (size_t)ret);
		p += k;
		n -= k;
	}
	be_feed(b, p, n);
}

static void be_feed(struct fz_be_conn *b, const uint8_t *p, size_t n)
{
	while (n > 0) {
		const uint8_t *msg;
		size_t len;
		int k = qipc_assembler_feed(&b->as, p, n, &msg, &len);
		if (k <= 0) {
			const uint8_t *hb = b->as.fr.hdr_bytes;
			fail("backend: malformed stream from the gateway (%s) on a %s connection "
			     "of capability %d: header %02x %02x %02x %02x %02x %02x %02x %02x",
			     strerror(-k), b->is_session ? "session" : "pooled or dedicated",
			     b->as.fr.capability, hb[0], hb[1], hb[2], hb[3], hb[4], hb[5], hb[6],
			     hb[7]);
		}
		if (msg)
			be_on_msg(b, msg, len);
		p += k;
		n -= (size_t)k;
	}
}

static void be_read(struct fz_be_conn *b)
{
	for (int i = 0; i < 64 && b->fd >= 0; i++) {
		ssize_t k = recv(b->fd, g_buf, sizeof(g_buf), MSG_DONTWAIT);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (k <= 0) {
			be_close(b, false);	/* the gateway left (or reset): so do we */
			return;
		}
		be_on_bytes(b, g_buf, (size_t)k);
	}
}

/* Serve the fake backend: accept, read (unless stalled), answer. Never blocks. */
static void be_pump(void)
{
	for (int i = 0; i < 16; i++) {
		int fd = accept4(g_be.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		struct fz_be_conn *b = NULL;
		for (int k = 0; k < FZ_BE_CONNS && !b; k++)
			if (g_be.c[k].fd < 0)
				b = &g_be.c[k];
		if (!b) {
			close(fd);
			continue;
		}
		memset(b, 0, sizeof(*b));
		b->fd = fd;
	}
	for (int k = 0; k < FZ_BE_CONNS; k++) {
		struct fz_be_conn *b = &g_be.c[k];
		if (b->fd < 0)
			continue;
		if (!g_be.is_stalled)
			be_read(b);
		be_flush(b);
	}
}

/* The idx-th open backend connection (modulo how many are open), or NULL. */
static struct fz_be_conn *be_nth(unsigned idx)
{
	int open = 0;

	for (int k = 0; k < FZ_BE_CONNS; k++)
		open += g_be.c[k].fd >= 0;
	if (!open)
		return NULL;
	idx %= (unsigned)open;
	for (int k = 0; k < FZ_BE_CONNS; k++)
		if (g_be.c[k].fd >= 0 && idx-- == 0)
			return &g_be.c[k];
	return NULL;
}

/* ------------------------------------------------------------ the worker */

static void run_turns(int n, uint64_t wait_ms)
{
	for (int i = 0; i < n; i++) {
		be_pump();
		int ret = gw_worker_turn(&g_w, wait_ms);
		if (ret < 0)
			fail("gw_worker_turn: %s", strerror(-ret));
		be_pump();
	}
}

/* ---------------------------------------------------- client: what it sent */

static bool is_session(const struct fz_client *cl)
{
	return cl->user >= 0 && g_users[cl->user].role == FZ_SESSION;
}

static void expect_push(struct fz_client *cl, uint64_t hash)
{
	if (cl->exp_n == FZ_EXPECT) {
		cl->is_exact = false;	/* more than we track: stop checking this client */
		return;
	}
	struct fz_expect *e = &cl->exp[(cl->exp_head + cl->exp_n) % FZ_EXPECT];
	e->hash = hash;
	e->is_complete = false;
	cl->exp_n++;
}

static struct fz_expect *expect_tail(struct fz_client *cl)
{
	return &cl->exp[(cl->exp_head + cl->exp_n - 1) % FZ_EXPECT];
}

/* Message bytes the client sent, framed as the gateway frames them. */
static void track_msgs(struct fz_client *cl, const uint8_t *p, size_t n)
{
	while (n > 0 && cl->tx_state == 1) {
		struct qipc_frame_step st;
		int k = qipc_framer_feed(&cl->tx_fr, p, n, &st);
		if (k < 0) {
			cl->tx_state = 2;	/* a protocol error: the gateway closes it */
			return;
		}
		p += k;
		n -= (size_t)k;
		if (st.kind == QIPC_FRAME_HEADER) {
			/* tracked from the header: an error may answer it before its end */
			cl->is_tx_sync = st.hdr.msg_type == QIPC_SYNC;
			if (cl->is_tx_sync && cl->is_exact)
				expect_push(cl, hash_header(st.hdr_bytes));
		} else if (st.kind == QIPC_FRAME_BODY && cl->is_tx_sync && cl->is_exact) {
			struct fz_expect *e = expect_tail(cl);
			e->hash = fnv(e->hash, st.data, st.len);
			if (st.is_msg_end)
				e->is_complete = true;
		}
	}
}

/* Bytes the client sent: the hello first (as session.c reads it), then messages. */
static void track_tx(struct fz_client *cl, const uint8_t *p, size_t n)
{
	if (cl->tx_state != 0) {
		track_msgs(cl, p, n);
		return;
	}
	size_t room = sizeof(cl->hello) - cl->hello_len;
	size_t k = n < room ? n : room;
	struct qipc_hello h;

	memcpy(cl->hello + cl->hello_len, p, k);
	cl->hello_len += k;
	int ret = qipc_hello_parse(cl->hello, cl->hello_len, sizeof(cl->hello), &h);
	if (ret == 0)
		return;
	if (ret < 0) {
		cl->tx_state = 2;
		return;
	}
	cl->tx_state = 1;
	cl->cap = qipc_hello_reply(h.capability, QIPC_MAX_CAPABILITY);
	cl->user = login_of(&h);
	qipc_framer_init(&cl->tx_fr, cl->cap, FZ_MAX_MSG);
	/* what a client sends before the reply is kept and parsed after it (session.c), so
	 * the bytes after the hello are messages like any others */
	size_t before = cl->hello_len - k;
	size_t used = (size_t)ret > before ? (size_t)ret - before : 0;
	track_msgs(cl, p + used, n - used);
}

/* ------------------------------------------------ client: what it received */

/* A whole message arrived: it must answer this client's oldest unanswered sync request. */
static void check_answer(struct fz_client *cl, int idx)
{
	bool is_error = cl->rx_head_n >= 8 && cl->rx_head[0] == 0x80 &&
			memcmp(cl->rx_head + 1, "qgate: ", 7) == 0;

	cl->answers++;
	trace("client %d: answer %llu, type %d%s%s\n", idx, (unsigned long long)cl->answers,
	      cl->rx_type, is_error ? ", qgate error" : "", cl->is_exact ? "" : ", unchecked");
	if (cl->rx_type != QIPC_RESPONSE || !cl->is_exact)
		return;
	if (g_users[cl->user].role == FZ_ADMIN)
		return;	/* the gateway answers its .qgate.* calls itself: not an echo */
	if (cl->exp_n == 0)
		fail("client %d: an answer (%s) with no request outstanding", idx,
		     is_error ? "qgate error" : "echo");
	struct fz_expect *e = &cl->exp[cl->exp_head];
	/* a "big" query's answer names its request (be_answer) */
	uint64_t named = 0;
	bool is_big = cl->rx_head_n >= 18 && cl->rx_head[0] == QT_CHAR &&
		      memcmp(cl->rx_head + 6, "BIG:", 4) == 0;
	for (int i = 0; is_big && i < 8; i++)
		named |= (uint64_t)cl->rx_head[10 + i] << (8 * i);
	bool is_echo = e->hash == cl->rx_hash || (is_big && e->hash == named);
	if (!is_error && (!e->is_complete || !is_echo))
		fail("client %d: answer %llu is not the echo of its oldest request "
		     "(another client's answer, or out of order)", idx,
		     (unsigned long long)cl->answers);
	cl->exp_head = (cl->exp_head + 1) % FZ_EXPECT;
	cl->exp_n--;
}

static void track_rx(struct fz_client *cl, int idx, const uint8_t *p, size_t n)
{
	if (n > 0 && !cl->has_cap) {
		if (cl->tx_state == 0)
			fail("client %d: handshake reply before a complete hello", idx);
		if (cl->user < 0)
			fail("client %d: login accepted with wrong credentials", idx);
		if (p[0] != cl->cap)
			fail("client %d: handshake reply %d, expected %d", idx, p[0], cl->cap);
		cl->has_cap = true;
		/* answers are bounded by the protocol only (and our client buffer) */
		qipc_framer_init(&cl->rx_fr, cl->cap, 0);
		p++;
		n--;
	}
	while (n > 0) {
		struct qipc_frame_step st;
		int k = qipc_framer_feed(&cl->rx_fr, p, n, &st);
		if (k < 0)
			fail("client %d: malformed stream from the gateway (%s)", idx,
			     strerror(-k));
		p += k;
		n -= (size_t)k;
		if (st.kind == QIPC_FRAME_HEADER) {
			cl->rx_type = st.hdr.msg_type;
			/* query mode sends clients responses only; a session passes on what its
			 * backend sends too (our backend pushes asyncs) */
			if (cl->rx_type != QIPC_RESPONSE &&
			    !(is_session(cl) && cl->rx_type == QIPC_ASYNC))
				fail("client %d: a message of type %d from the gateway", idx,
				     cl->rx_type);
			cl->rx_hash = hash_header(st.hdr_bytes);
			cl->rx_head_n = 0;
		} else if (st.kind == QIPC_FRAME_BODY) {
			cl->rx_hash = fnv(cl->rx_hash, st.data, st.len);
			size_t room = sizeof(cl->rx_head) - cl->rx_head_n;
			size_t t = st.len < room ? st.len : room;
			memcpy(cl->rx_head + cl->rx_head_n, st.data, t);
			cl->rx_head_n += t;
			if (st.is_msg_end)
				check_answer(cl, idx);
		}
	}
}

/* ------------------------------------------------------- client: sockets */

static void cl_connect(int idx)
{
	struct fz_client *cl = &g_cl[idx];
	struct sockaddr_in sa;
	int rcv = 16 * 1024;	/* a small window: a client that does not read backs up soon */

	if (cl->fd >= 0)
		return;
	memset(cl, 0, sizeof(*cl));
	cl->fd = -1;
	cl->user = -1;
	cl->is_exact = true;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)g_cfg->listeners[0].addr.port);
	/* loopback: the kernel completes it from the listen backlog, before the worker runs */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail("connect to the gateway: %s", strerror(errno));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	cl->fd = fd;
	g_connects++;
	trace("client %d connected\n", idx);
}

static void cl_drain(int idx)
{
	struct fz_client *cl = &g_cl[idx];

	for (int i = 0; i < 64 && cl->fd >= 0 && !cl->is_rx_eof; i++) {
		ssize_t k = recv(cl->fd, g_buf, sizeof(g_buf), MSG_DONTWAIT);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (k <= 0) {
			cl->is_rx_eof = true;	/* closed (or reset) by the gateway */
			return;
		}
		track_rx(cl, idx, g_buf, (size_t)k);
	}
}

/* Write p[0..n) (connecting first if needed); what the socket will not take is dropped. */
static void cl_send(int idx, const uint8_t *p, size_t n)
{
	struct fz_client *cl = &g_cl[idx];
	size_t off = 0;

	cl_connect(idx);
	if (cl->is_wr_shut)
		return;
	for (int stalls = 0; off < n && stalls < FZ_SEND_STALLS;) {
		ssize_t k = send(cl->fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k > 0) {
			track_tx(cl, p + off, (size_t)k);
			off += (size_t)k;
			stalls = 0;
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
			stalls++;
			run_turns(1, 0);	/* the gateway reads, or has paused this client */
			continue;
		}
		break;	/* EPIPE, ECONNRESET: the gateway has closed it */
	}
	trace("client %d wrote %zu of %zu bytes\n", idx, off, n);
}

static void cl_close(int idx, bool is_rst)
{
	struct fz_client *cl = &g_cl[idx];

	if (cl->fd < 0)
		return;
	if (is_rst) {
		struct linger lg = { 1, 0 };
		setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(cl->fd);
	cl->fd = -1;
	trace("client %d closed (%s)\n", idx, is_rst ? "RST" : "FIN");
}

/* -------------------------------------------------------------- messages */

/*
 * Templates that reach the router's branches: rules, pools, admin calls, the allow-list.
 * Append only: an input names one by index (modulo the count), so saved inputs keep meaning
 * the same message as long as their index is below the count they were made with.
 */
static const struct {
	char kind;		/* 'q' string query, 's' (`name; 42), 'c' ("name"; 42) */
	const char *text;
} g_tpl[] = {
	{ 'q', "1+1" }, { 'q', "slow 1" }, { 'q', "ddd 2" }, { 'q', ".qgate.stats[]" },
	{ 'q', ".qgate.clients[]" }, { 'q', ".qgate.pools[]" }, { 'q', ".qgate.backends" },
	{ 'q', ".qgate.nope[]" }, { 's', "f" }, { 's', "ded1" }, { 's', "deny1" },
	{ 's', ".qgate.stats" }, { 'c', "f" }, { 'c', "ded2" }, { 's', "g" }, { 'q', "{x}" },
	{ 'q', "big" }, { 'q', "big 12345678" },	/* 512 KiB and 2.75 MiB answers */
};
#define FZ_N_TPL (sizeof(g_tpl) / sizeof(g_tpl[0]))

/* Build template t as a whole message of the given type into out; returns its length. */
static size_t tpl_build(uint8_t *out, size_t cap, unsigned t, enum qipc_msg_type type,
			size_t pad)
{
	const char *s = g_tpl[t % FZ_N_TPL].text;
	char kind = g_tpl[t % FZ_N_TPL].kind;
	size_t sl = strlen(s), n = QIPC_HDR_SIZE;

	if (cap < 64 + sl + pad)
		return 0;
	if (kind == 'q') {
		/* a char vector; pad with blanks (a long query, still the same prefix) */
		out[n++] = QT_CHAR;
		out[n++] = 0;
		st32(out + n, (uint32_t)(sl + pad));
		n += 4;
		memcpy(out + n, s, sl);
		memset(out + n + sl, ' ', pad);
		n += sl + pad;
	} else {
		/* a general list headed by the name, then a long */
		out[n++] = QT_LIST;
		out[n++] = 0;
		st32(out + n, 2);
		n += 4;
		if (kind == 's') {
			out[n++] = (uint8_t)-QT_SYMBOL;
			memcpy(out + n, s, sl + 1);
			n += sl + 1;
		} else {
			out[n++] = QT_CHAR;
			out[n++] = 0;
			st32(out + n, (uint32_t)sl);
			n += 4;
			memcpy(out + n, s, sl);
			n += sl;
		}
		out[n++] = (uint8_t)-QT_LONG;
		memset(out + n, 0, 8);
		out[n] = 42;
		n += 8;
	}
	qipc_header_build(out, type, false, n);
	return n;
}

/* --------------------------------------------------------------- the script */

struct fz_in {
	const uint8_t *p;
	size_t n, off;
};

static unsigned in_u8(struct fz_in *in)
{
	return in->off < in->n ? in->p[in->off++] : 0;
}

static enum qipc_msg_type msg_type(unsigned v)
{
	/* mostly sync: those are the ones with answers to check */
	return v == 1 ? QIPC_ASYNC : (v == 2 ? QIPC_RESPONSE : QIPC_SYNC);
}

/*
 * Operations: one byte, low nibble the op, high nibble its argument a (bits 0-1: the client,
 * bits 2-3: a variant); some read more bytes of the input.
 */
enum {
	OP_CONNECT = 0,		/* connect client a&3 */
	OP_HELLO,		/* [cred] a well-formed hello; variant: capability 6, 3, [c] c%7, or
				 * q's legacy form without one */
	OP_WRITE,		/* [len][bytes...] raw bytes */
	OP_MSG,			/* [len][payload...] a message of type variant around the payload */
	OP_TPL,			/* [tpl] a template message (router, admin), type variant */
	OP_HDR,			/* [3 bytes] a header announcing a length up to 1.25 MiB */
	OP_FILL,		/* [k][byte] (k+1) KiB of one byte: the body of a large message */
	OP_SHUT_WR,		/* half-close */
	OP_CLOSE_FIN,
	OP_CLOSE_RST,
	OP_DRAIN,		/* read what has arrived; variant 3: every client */
	OP_TURNS,		/* [n] n%32+1 more loop turns */
	OP_SLEEP,		/* [ms] let the clock run (timeouts, ticks), within a budget */
	OP_BACKEND,		/* [i] variant: kill backend connection i (FIN, RST), stall
				 * toggle, misbehave */
	OP_ZMSG,		/* a compressed template message (routing peeks into it) */
	OP_PIPE,		/* [tpl][m] m%8+1 template syncs in one write (> max_pipeline) */
};

static void op_backend(unsigned variant, unsigned i)
{
	struct fz_be_conn *b = be_nth(i);
	uint8_t msg[64];

	switch (variant) {
	case 0:
	case 1:
		if (b)
			be_close(b, variant == 1);	/* the gateway reconnects */
		trace("backend: kill %u (%s)\n", i, variant == 1 ? "RST" : "FIN");
		break;
	case 2:
		g_be.is_stalled = !g_be.is_stalled;
		trace("backend: %s\n", g_be.is_stalled ? "stalled" : "running");
		break;
	default:
		/* misbehave: (i&3) 0 answer the next sync twice, 1 push an async, 2 refuse the
		 * next session login */
		if ((i & 3) == 0 && b) {
			b->is_dup_next = true;
		} else if ((i & 3) == 1 && b && b->is_ready) {
			size_t n = tpl_build(msg, sizeof(msg), 0, QIPC_ASYNC, 0);
			be_queue(b, msg, n);
		} else if ((i & 3) == 2) {
			g_be.is_refuse_next = true;
		}
		trace("backend: misbehave %u\n", i & 3);
		break;
	}
}

static void run_op(struct fz_in *in, uint64_t *slept_ms)
{
	unsigned b = in_u8(in), op = b & 15, a = b >> 4, k = a & 3, v = a >> 2;
	static uint8_t msg[64 * 1024];
	size_t n;

	switch (op) {
	case OP_CONNECT:
		cl_connect((int)k);
		break;
	case OP_HELLO: {
		unsigned c = in_u8(in) % FZ_N_CREDS;
		int cap = v == 0 ? 6 : (v == 1 ? 3 : (v == 2 ? (int)(in_u8(in) % 7) : 6));
		int len = qipc_hello_build(msg, sizeof(msg), g_creds[c].user, g_creds[c].pass,
					   cap);
		if (len <= 0)
			break;
		if (v == 3 && len > 2) {
			/* q's legacy form "user:pass\0": no capability byte */
			msg[len - 2] = 0;
			len--;
		}
		trace("client %u hello %s:%s cap %d\n", k, g_creds[c].user,
		      g_creds[c].pass ? g_creds[c].pass : "-", v == 3 ? 0 : cap);
		cl_send((int)k, msg, (size_t)len);
		break;
	}
	case OP_WRITE:
		n = in_u8(in) + 1;
		if (n > in->n - in->off)
			n = in->n - in->off;
		cl_send((int)k, in->p + in->off, n);
		in->off += n;
		break;
	case OP_MSG:
		n = in_u8(in);
		memset(msg, 0, QIPC_HDR_SIZE + n);
		for (size_t i = 0; i < n && in->off < in->n; i++)
			msg[QIPC_HDR_SIZE + i] = (uint8_t)in_u8(in);
		qipc_header_build(msg, msg_type(v), false, QIPC_HDR_SIZE + n);
		cl_send((int)k, msg, QIPC_HDR_SIZE + n);
		break;
	case OP_TPL:
		n = tpl_build(msg, sizeof(msg), in_u8(in), msg_type(v), 0);
		cl_send((int)k, msg, n);
		break;
	case OP_HDR: {
		uint32_t len = in_u8(in) | in_u8(in) << 8 | in_u8(in) << 16;
		len = QIPC_HDR_SIZE + len % (FZ_MAX_MSG + FZ_MAX_MSG / 4);
		qipc_header_build(msg, msg_type(v), false, len);
		cl_send((int)k, msg, QIPC_HDR_SIZE);
		break;
	}
	case OP_FILL: {
		/* not g_buf: the turns cl_send runs read into that */
		static uint8_t fill[256 * 1024];
		size_t kib = in_u8(in) + 1;
		memset(fill, (int)in_u8(in), kib * 1024);
		cl_send((int)k, fill, kib * 1024);
		break;
	}
	case OP_SHUT_WR:
		if (g_cl[k].fd >= 0 && !g_cl[k].is_wr_shut) {
			shutdown(g_cl[k].fd, SHUT_WR);
			g_cl[k].is_wr_shut = true;
		}
		break;
	case OP_CLOSE_FIN:
	case OP_CLOSE_RST:
		cl_close((int)k, op == OP_CLOSE_RST);
		break;
	case OP_DRAIN:
		for (unsigned i = 0; i < FZ_CLIENTS; i++)
			if (v == 3 || i == k)
				cl_drain((int)i);
		break;
	case OP_TURNS:
		run_turns((int)(in_u8(in) % 32) + 1, 0);
		break;
	case OP_SLEEP: {
		uint64_t ms = in_u8(in) % 32, t0 = gw_now_ms();
		if (*slept_ms + ms > FZ_SLEEP_BUDGET_MS)
			ms = FZ_SLEEP_BUDGET_MS - *slept_ms;
		/* bounded by count as well as by time */
		for (int i = 0; i < 256 && gw_now_ms() - t0 < ms; i++)
			run_turns(1, 1);
		*slept_ms += ms;
		break;
	}
	case OP_BACKEND:
		op_backend(v, in_u8(in));
		break;
	case OP_ZMSG: {
		/* a query long enough for q's compression (> 2008 bytes), mostly blanks */
		static uint8_t z[8192];
		size_t plain = tpl_build(msg, sizeof(msg), in_u8(in), msg_type(v), 3000);
		int64_t zn = qipc_compress(msg, plain, z, sizeof(z));
		if (zn > 0)
			cl_send((int)k, z, (size_t)zn);
		else
			cl_send((int)k, msg, plain);
		break;
	}
	case OP_PIPE: {
		unsigned t = in_u8(in), m = in_u8(in) % 8 + 1;
		n = 0;
		for (unsigned i = 0; i < m; i++)
			n += tpl_build(msg + n, sizeof(msg) - n, t, QIPC_SYNC, 0);
		cl_send((int)k, msg, n);
		break;
	}
	}
	trace("op %u a=%u done\n", op, a);
}

/* ---------------------------------------------------------- between inputs */

/* Nothing of the last input is left: clients, queued requests, extra connections, busy ones. */
static const char *unsettled(void)
{
	struct gw_worker *w = &g_w;

	if (w->listeners[0]->accepted != g_connects)
		return "a client connection not accepted yet";
	if (w->n_clients)
		return "clients still open";
	if (!pool_list_empty(&w->extra_ups))
		return "dedicated or session backend connections still open";
	for (size_t i = 0; i < w->n_pools; i++) {
		struct gw_pool_rt *p = w->pools[i];
		if (p->pl.queue_len)
			return "requests still queued";
		if (!p->pl.is_started || p->cfg->mode == GW_MODE_SESSION)
			continue;	/* no warm connections (yet) */
		for (size_t b = 0; b < p->n_backends; b++) {
			struct gw_backend_rt *be = p->backends[b];
			for (int s = 0; s < be->cfg->connections; s++) {
				struct gw_conn *c = gw_slot_conn(be, s);
				if (!c || gw_up_state(c) != POOL_IDLE)
					return "a pooled backend connection not idle";
			}
			/* a slot never given back would stop that backend for good */
			if (pool_shared_inflight(be->pb.shared) != 0)
				return "a backend's max_inflight count not back to 0";
		}
	}
	return NULL;
}

static void end_input(void)
{
	/* let answers in flight arrive, then read them: they are checked too */
	run_turns(4, 0);
	for (int i = 0; i < FZ_CLIENTS; i++)
		cl_drain(i);
	/* RST: no TIME_WAIT piles up over millions of inputs */
	for (int i = 0; i < FZ_CLIENTS; i++)
		cl_close(i, true);
	g_be.is_stalled = false;
	g_be.is_refuse_next = false;
	for (int k = 0; k < FZ_BE_CONNS; k++)
		g_be.c[k].is_dup_next = false;
	uint64_t t0 = gw_now_ms();
	const char *why;
	/* bounded by count and time: a turn waits at most 1 ms */
	int i;
	for (i = 0; (why = unsettled()) != NULL; i++) {
		if (gw_now_ms() - t0 > FZ_SETTLE_MS || i > 100000)
			fail("the worker did not settle within %d ms: %s", FZ_SETTLE_MS, why);
		if (i == 0 || i == 64)
			trace("settling: %s\n", why);
		run_turns(1, i < 64 ? 0 : 1);
	}
	trace("settled after %d turns, %llu ms\n", i, (unsigned long long)(gw_now_ms() - t0));
}

/* -------------------------------------------------------------- set-up */

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		fail("cannot find a free port: %s", strerror(errno));
	close(fd);
	return ntohs(sa.sin_port);
}

static void be_listen(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 256) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		fail("fake backend: cannot listen: %s", strerror(errno));
	g_be.lfd = fd;
	g_be.port = ntohs(sa.sin_port);
	for (int k = 0; k < FZ_BE_CONNS; k++)
		g_be.c[k].fd = -1;
}

/*
 * The gateway under test: one TCP listener on pool q; users for each kind of login; a query
 * pool (idempotent, small queue), a lazy all-dedicated pool and a session pool reached by a
 * user rule, all on the fake backend; short timeouts and small limits, so the fuzzer reaches
 * them within an input.
 */
static char *make_config(int gw_port, int be_port)
{
	char *h[FZ_N_USERS];
	static char json[8192];
	const char *common =
		"\"reconnect\": {\"delay_ms\": 1, \"multiplier\": 1.0, \"max_delay_ms\": 1, "
		"\"jitter\": 0, \"connect_timeout_ms\": 500}, \"health\": {\"interval_ms\": 0}";

	/* a low iteration count: a login costs microseconds, not milliseconds */
	for (size_t i = 0; i < FZ_N_USERS; i++) {
		h[i] = gw_pw_hash_iter(g_users[i].pass, strlen(g_users[i].pass), 1000);
		if (!h[i])
			fail("gw_pw_hash_iter failed");
	}
	int n = snprintf(json, sizeof(json),
"{\"listeners\": [{\"name\": \"fz\", \"listen\": \"127.0.0.1:%d\", \"pool\": \"q\"}],\n"
" \"auth\": {\"users\": [\n"
"  {\"name\": \"alice\", \"password_hash\": \"%s\"},\n"
"  {\"name\": \"ops\", \"password_hash\": \"%s\", \"admin\": true},\n"
"  {\"name\": \"sess\", \"password_hash\": \"%s\"},\n"
"  {\"name\": \"bob\", \"password_hash\": \"%s\", \"allow\": [\"f*\", \".qgate.*\"],\n"
"   \"pools\": [\"q\"]}]},\n"
" \"pools\": [\n"
"  {\"name\": \"q\", \"idempotent\": true, \"queue\": {\"max\": 8, \"timeout_ms\": 20},\n"
"   \"dedicated\": {\"max\": 2}, %s,\n"
"   \"backends\": [\n"
"    {\"name\": \"b1\", \"address\": \"127.0.0.1:%d\", \"user\": \"gw\", \"connections\": 1},\n"
"    {\"name\": \"b2\", \"address\": \"127.0.0.1:%d\", \"user\": \"gw\", \"connections\": 1}]},\n"
"  {\"name\": \"d\", \"connect\": \"lazy\", \"dedicated\": {\"all\": true, \"max\": 2},\n"
"   \"queue\": {\"max\": 4, \"timeout_ms\": 20}, %s,\n"
"   \"backends\": [\n"
"    {\"name\": \"d1\", \"address\": \"127.0.0.1:%d\", \"user\": \"gw\", \"connections\": 1}]},\n"
"  {\"name\": \"s\", \"mode\": \"session\", \"auth_passthrough\": true, %s,\n"
"   \"backends\": [{\"name\": \"s1\", \"address\": \"127.0.0.1:%d\"}]}],\n"
" \"rules\": [\n"
"  {\"user\": \"sess\", \"pool\": \"s\"},\n"
"  {\"function\": \"ded*\", \"dedicated\": true, \"timeout_ms\": 15},\n"
"  {\"prefix\": \"slow\", \"timeout_ms\": 10},\n"
"  {\"prefix\": \"ddd\", \"pool\": \"d\"},\n"
"  {\"function\": \"deny*\", \"deny\": true}],\n"
" \"limits\": {\"max_clients\": 64, \"max_message_bytes\": %u,\n"
"   \"handshake_timeout_ms\": 20, \"max_pipeline\": %u, \"client_buffer_bytes\": 131072,\n"
"   \"stream_threshold_bytes\": 65536, \"drain_timeout_ms\": 200,\n"
"   \"client_output_timeout_ms\": 100, \"rx_buffers\": 128, \"rx_buffer_bytes\": 8192,\n"
"   \"shutdown_grace_ms\": 0, \"login_failures_max\": 4294967295},\n"
" \"log\": {\"level\": \"error\"}}\n",
		gw_port, h[0], h[1], h[2], h[3], common, be_port, be_port, common, be_port,
		common, be_port, FZ_MAX_MSG, FZ_MAX_PIPELINE);
	for (size_t i = 0; i < FZ_N_USERS; i++)
		free(h[i]);
	if (n < 0 || (size_t)n >= sizeof(json))
		fail("config does not fit");
	return json;
}

/*
 * At exit (libFuzzer's end of a run): the worker is taken down before OpenSSL's own exit
 * handler runs, so no login thread is still hashing a password while libcrypto is torn
 * down under it (a crash, then a hang in the sanitizer's report), and nothing is left for
 * the leak check to look at.
 */
static void fz_exit(void)
{
	for (int i = 0; i < FZ_CLIENTS; i++)
		cl_close(i, true);
	gw_worker_destroy(&g_w);
	gw_shared_free_all();
	pthread_mutex_destroy(&g_w.snap_mu);
	gw_cfg_free(g_cfg);
	g_cfg = NULL;
	for (int k = 0; k < FZ_BE_CONNS; k++)
		be_close(&g_be.c[k], true);
	close(g_be.lfd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *errs = NULL;
	const char *lvl = getenv("FUZZ_CLIENT_LOG");

	(void)argc;
	(void)argv;
	g_trace = getenv("FUZZ_CLIENT_TRACE") != NULL;
	be_listen();
	for (int i = 0; i < FZ_CLIENTS; i++)
		g_cl[i].fd = -1;
	g_cfg = gw_cfg_parse(make_config(free_port(), g_be.port), "fuzz", &errs);
	if (!g_cfg)
		fail("config: %s", errs ? errs : "?");
	gw_log_set_level(lvl && strcmp(lvl, "debug") == 0 ? GW_LOG_DEBUG :
			 lvl && strcmp(lvl, "info") == 0 ? GW_LOG_INFO :
			 lvl && strcmp(lvl, "warn") == 0 ? GW_LOG_WARN : GW_LOG_ERROR);
	/* the worker is a global (zeroed) and lives until exit; main.c does the same set-up */
	pthread_mutex_init(&g_w.snap_mu, NULL);
	int ret = gw_worker_init(&g_w, g_cfg, 0, &g_stop, NULL, 0);
	if (ret < 0)
		fail("gw_worker_init: %s", strerror(-ret));
	/* registered after OpenSSL's (the config and the worker initialised it): runs first */
	atexit(fz_exit);
	/* the warm connections come up before the first input */
	for (int i = 0; i < 2000 && unsettled(); i++)
		run_turns(1, 1);
	if (unsettled())
		fail("the worker did not start: %s", unsettled());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size, 0 };
	uint64_t slept_ms = 0;

	trace("---- input of %zu bytes\n", size);
	for (int i = 0; i < FZ_MAX_OPS && in.off < in.n; i++) {
		run_op(&in, &slept_ms);
		run_turns(FZ_TURNS_PER_OP, 0);
	}
	end_input();
	return 0;
}
