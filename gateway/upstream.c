/*
 * upstream.c — the backend side: connect (with a linked timeout), the q handshake with
 * the backend's own credentials at the highest capability it accepts, relaying answers
 * to the request each connection owes, draining abandoned answers, dropping messages a
 * backend starts on a shared connection, health checks, reconnect with backoff, query
 * timeouts.
 *
 * Health: a q runs one request at a time, so a check waits behind a long query; that is
 * not death. A backend running a request of this gateway (any worker) is not checked, any
 * bytes from it on any connection count as an answer, and a check that times out leaves
 * its connection draining the late answer: only health.failures failed checks in a row
 * take the backend out. A connection-level error (refused, reset, EOF) closes a
 * connection at once, and TCP keepalive finds a peer that vanished without a word.
 *
 * Three kinds of backend connection:
 *  - POOLED: a backend's warm, shared connections (slots); at most one answer owed;
 *  - DEDICATED: opened for one sync request and closed once its answer (perhaps a late,
 *    deferred one) has been forwarded, or at once if its client leaves;
 *  - SESSION: one client's own connection; bytes pass both ways unchanged, and closing
 *    it (when the client leaves) lets the backend's .z.pc run.
 * A pooled or dedicated connection that gets a response when none is owed is closed:
 * pairing the answers after it would be a guess.
 */
#include "gateway/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "codec/qipc.h"
#include "gateway/audit.h"
#include "gateway/chunk.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/reply.h"
#include "gateway/req.h"
#include "gateway/resolve.h"
#include "gateway/runtime.h"
#include "gateway/tls.h"
#include "gateway/worker.h"
#include "pool/pool.h"

#define UP_CAPABILITY 6

static const char *be_name(const struct gw_conn *c)
{
	return c->up.be->cfg->log_name;	/* for log lines */
}

/*
 * The one place a backend connection changes state: the pool asserts the transition and
 * keeps its lists and counts (a max_inflight slot is given back on leaving BUSY or
 * DRAINING: the other workers waiting for it are woken by the loop).
 */
void gw_upstream_set_state(struct gw_worker *w, struct gw_conn *c, enum pool_conn_state to)
{
	w->wake_mask |= pool_conn_set_state(c->up.rec, to);
	if (to == POOL_IDLE) {
		GW_ASSERT(c->up.owed == NULL);
		c->up.query_deadline_ms = 0;
		c->up.last_used_ms = w->now_ms;
		c->up.is_health_drain = false;
	}
}

/* c, a pooled connection, is checked out for req (the pool took the max_inflight slot). */
static void checked_out(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	c->up.owed = r;
	c->up.query_deadline_ms = r->timeout_ms ? w->now_ms + r->timeout_ms : 0;
	r->backend = c;
	r->state = GW_REQ_SENT;
}

bool gw_upstream_is_free(const struct gw_conn *c)
{
	/* nothing owed, nothing streaming in, and no stray bytes half-read: the next answer
	 * on it can only be for what is sent now */
	return !c->is_closing && gw_up_state(c) == POOL_IDLE && !c->up.is_tx_locked &&
	       qipc_framer_idle(&c->fr);
}

void gw_upstream_pause(struct gw_worker *w, struct gw_conn *c)
{
	if (c->up.is_paused_for_client || c->is_closing)
		return;
	c->up.is_paused_for_client = true;
	c->is_recv_paused = true;
	gw_conn_update_recv(w, c);
}

/*
 * TCP keepalive on backend sockets: a backend host that vanishes (power, network) without a
 * FIN or RST is found within about KEEPIDLE + KEEPCNT * KEEPINTVL seconds even while the
 * connection idles, without a health check having to declare a busy q dead.
 */
#define UP_KEEPIDLE_S 30
#define UP_KEEPINTVL_S 10
#define UP_KEEPCNT 3

static void up_keepalive(int fd)
{
	int one = 1, idle = UP_KEEPIDLE_S, intvl = UP_KEEPINTVL_S, cnt = UP_KEEPCNT;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* c's socket to ss + connect linked to a timeout; the rest happens in gw_upstream_on_connect.
 * 0, or -errno (c is then closed: a failed attempt). */
static int up_connect(struct gw_worker *w, struct gw_conn *c, const struct sockaddr_storage *ss,
		      socklen_t len)
{
	struct gw_backend_rt *be = c->up.be;
	int one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		int e = errno;
		gw_warn("backend=%s msg=\"socket failed\" err=\"%s\"", be->cfg->log_name,
			strerror(e));
		gw_conn_close(w, c, "socket failed");
		return -e;
	}
	if (ss->ss_family != AF_UNIX) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		up_keepalive(fd);
	}
	c->fd = fd;
	c->up.sa = *ss;
	c->up.sa_len = len;
	uint32_t tmo = be->pool->cfg->reconnect.connect_timeout_ms;
	if (!tmo)
		tmo = 2000;
	c->up.connect_ts.tv_sec = tmo / 1000;
	c->up.connect_ts.tv_nsec = (long long)(tmo % 1000) * 1000000;
	/* the q handshake must also be over within twice the connect timeout */
	c->up.query_deadline_ms = w->now_ms + 2ull * tmo;
	/* connect + linked timeout must be submitted together: reserve both SQEs */
	if (io_uring_sq_space_left(&w->ring) < 2) {
		w->ring_enters++;
		w->quiet_sends = 0;	/* their completions may end the turn's wait */
		io_uring_submit(&w->ring);
	}
	struct io_uring_sqe *sqe = gw_sqe(w);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->up.sa, c->up.sa_len);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_CONNECT, c));
	sqe = gw_sqe(w);
	io_uring_prep_link_timeout(sqe, &c->up.connect_ts, 0);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_TIMEOUT, c));
	c->inflight += 2;
	return 0;
}

/*
 * A new backend connection, CONNECTING: connected at once to a numeric address, or (a host
 * name) waiting for its lookup with no socket and no deadline (resolve.h; the resolver's
 * own timeout bounds it), then connected by gw_upstream_resolved. Never blocks. NULL: no
 * slot (nothing opened); otherwise a failure later closes c as a failed attempt.
 */
static struct gw_conn *up_open(struct gw_worker *w, struct gw_backend_rt *be,
			       enum pool_conn_kind kind, int slot)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	int ret = gw_resolve_numeric(&be->cfg->addr, &ss, &len);

	if (ret < 0 && ret != -EAGAIN) {
		gw_warn("backend=%s address=%s msg=\"bad address\" err=\"%s\"", be->cfg->log_name,
			be->cfg->addr.log_text, strerror(-ret));
		return NULL;
	}
	struct gw_conn *c = gw_conn_alloc(w, GW_CONN_BACKEND, -1);
	if (!c) {
		gw_warn("backend=%s msg=\"no free connection slot\"", be->cfg->log_name);
		return NULL;
	}
	gw_log_value(c->peer, sizeof(c->peer), be->cfg->addr.text);	/* for log lines */
	c->up.be = be;
	c->up.rec = kind == POOL_CONN_POOLED ? &be->pb.slots[slot].rec : &c->up.own_rec;
	pool_conn_init(c->up.rec, &be->pb, kind, slot, c);
	gw_upstream_set_state(w, c, POOL_CONNECTING);
	c->up.offer_capability = UP_CAPABILITY;
	pool_list_init(&c->up.extra_link);
	if (kind != POOL_CONN_POOLED)
		pool_list_add_tail(&w->extra_ups, &c->up.extra_link);
	if (ret == 0) {
		up_connect(w, c, &ss, len);
		return c;
	}
	c->up.is_resolving = true;
	be->stat.lookups++;
	ret = gw_resolve_start(w, c, &be->cfg->addr);
	if (ret < 0)
		gw_upstream_resolved(w, c, NULL, 0, strerror(-ret));
	return c;
}

/* Whether this failure of be's name is logged: the first in a row, then the 2nd, 4th, 8th...
 * (a name that keeps failing is retried with backoff and logged ever more rarely). */
static bool resolve_fail_logged(struct gw_backend_rt *be)
{
	uint32_t n = ++be->lookup_failures_in_row;

	return (n & (n - 1)) == 0;
}

void gw_upstream_resolved(struct gw_worker *w, struct gw_conn *c,
			  const struct sockaddr_storage *ss, socklen_t len, const char *err)
{
	struct gw_backend_rt *be = c->up.be;

	c->up.is_resolving = false;
	if (!ss) {
		be->stat.lookup_failures++;
		if (resolve_fail_logged(be))
			gw_warn("backend=%s pool=%s address=%s failures=%u msg=\"cannot resolve the "
				"backend's name: trying again after the reconnect backoff\" "
				"err=\"%s\"", be->cfg->log_name, be->pool->cfg->log_name,
				be->cfg->addr.log_text, be->lookup_failures_in_row, err);
		gw_conn_close(w, c, "cannot resolve");
		return;
	}
	if (be->lookup_failures_in_row) {
		gw_info("backend=%s address=%s msg=\"backend's name resolves again\"",
			be->cfg->log_name, be->cfg->addr.log_text);
		be->lookup_failures_in_row = 0;
	}
	up_connect(w, c, ss, len);
}

void gw_upstream_start(struct gw_worker *w, struct gw_backend_rt *be, int slot)
{
	if (!up_open(w, be, POOL_CONN_POOLED, slot))
		be->pb.slots[slot].retry_at_ms = w->now_ms + 1000;
}

void gw_backend_start(struct gw_worker *w, struct gw_backend_rt *be)
{
	for (uint32_t s = 0; s < be->pb.n_slots; s++)
		if (!be->pb.slots[s].is_spare)
			gw_upstream_start(w, be, (int)s);
}

void gw_pool_start(struct gw_worker *w, struct gw_pool_rt *p)
{
	if (p->pl.is_started)
		return;
	p->pl.is_started = true;
	if (p->cfg->mode == GW_MODE_SESSION)
		return;	/* session pools open one connection per client instead */
	for (size_t b = 0; b < p->n_backends; b++)
		gw_backend_start(w, p->backends[b]);
}

int gw_upstream_open_dedicated(struct gw_worker *w, struct gw_backend_rt *be, struct gw_req *r)
{
	struct gw_conn *c = up_open(w, be, POOL_CONN_DEDICATED, -1);

	if (!c)
		return -EAGAIN;
	be->pool->n_dedicated++;	/* it counts for its backend's load until closed */
	r->backend_name = be->cfg->log_name;
	be->stat.requests++;
	c->up.owed = r;
	r->backend = c;
	r->state = GW_REQ_SENT;
	return 0;
}

int gw_upstream_open_session(struct gw_worker *w, struct gw_backend_rt *be, struct gw_conn *cl,
			     const uint8_t *cred, size_t cred_len, int capability)
{
	struct gw_conn *c = up_open(w, be, POOL_CONN_SESSION, -1);

	if (!c)
		return -EAGAIN;
	/* bytes pass through unchanged: the backend may use no more than the client can read */
	c->up.offer_capability = capability < UP_CAPABILITY ? capability : UP_CAPABILITY;
	be->pool->n_sessions++;	/* its backend's load counts its sessions */
	c->up.client = cl;
	c->up.client_gen = cl->gen;
	cl->cl.session_up = c;
	cl->cl.session_up_gen = c->gen;
	/* auth_passthrough: the client's own credentials, exactly as it sent them */
	if (cred) {
		uint8_t hello[1024];
		if (cred_len + 2 > sizeof(hello))
			return -EINVAL;
		memcpy(hello, cred, cred_len);
		hello[cred_len] = (uint8_t)c->up.offer_capability;
		hello[cred_len + 1] = 0;
		gw_chunkq_append(&c->txq, hello, cred_len + 2);
		memset(hello, 0, sizeof(hello));
	}
	return 0;
}

static struct gw_conn *session_client(const struct gw_conn *c)
{
	struct gw_conn *cl = c->up.client;

	if (!cl || cl->gen != c->up.client_gen || cl->is_closing || cl->kind != GW_CONN_CLIENT)
		return NULL;
	return cl;
}

void gw_upstream_on_connect(struct gw_worker *w, struct gw_conn *c, int res)
{
	struct gw_backend_rt *be = c->up.be;
	uint8_t hello[1024];

	if (c->is_closing)
		return;
	if (res < 0) {
		bool quiet = gw_up_kind(c) == POOL_CONN_POOLED &&
			     be->pb.slots[c->up.rec->slot].failures > 0;
		if (!quiet)
			gw_warn("backend=%s address=%s msg=\"connect failed\" err=\"%s\"",
				be->cfg->log_name, be->cfg->addr.log_text,
				res == -ECANCELED ? "connect timeout" : strerror(-res));
		gw_conn_close(w, c, "connect failed");
		return;
	}
	gw_upstream_set_state(w, c, POOL_HANDSHAKE);
	if (be->ssl_ctx) {
		/* TLS first; the q hello below waits in the tx queue until it is up */
		const char *host = be->cfg->addr.host ? be->cfg->addr.host : "127.0.0.1";
		if (gw_tls_connect(w, c, be->ssl_ctx, host, be->cfg->tls->is_verify) < 0) {
			gw_conn_close(w, c, "TLS setup failed");
			return;
		}
	}
	if (c->txq.bytes == 0) {
		/* the backend's own credentials (never a client's, never logged) */
		const char *user = be->cfg->user ? be->cfg->user :
				   (w->cfg->gateway_user ? w->cfg->gateway_user : "qgate");
		bool fallback = gw_up_kind(c) == POOL_CONN_POOLED &&
				be->pb.slots[c->up.rec->slot].is_alt_hello;
		int cap = c->up.offer_capability;
		int n = qipc_hello_build(hello, sizeof(hello), user, be->cfg->password,
					 fallback && cap > 3 ? 3 : cap);
		if (n < 0) {
			gw_err("backend=%s msg=\"credentials do not fit a q handshake\"",
			       be->cfg->log_name);
			gw_conn_close(w, c, "bad credentials");
			return;
		}
		gw_tx_append(w, c, hello, (size_t)n);
		memset(hello, 0, sizeof(hello));	/* the password does not linger */
	} else {
		gw_tx_kick(w, c);	/* a session's passthrough hello is already queued */
	}
	gw_conn_update_recv(w, c);
}

static void backend_ready(struct gw_worker *w, struct gw_conn *c, int capability)
{
	struct gw_backend_rt *be = c->up.be;

	c->up.capability = capability;
	c->up.last_req_ms = w->now_ms;	/* a spare's idle time counts from here */
	/* answers stream through without being held whole, so only the protocol bounds them */
	qipc_framer_init(&c->fr, capability, 0);
	if (gw_up_kind(c) == POOL_CONN_DEDICATED) {
		struct gw_req *r = c->up.owed;
		gw_upstream_set_state(w, c, POOL_BUSY);
		if (!r) {
			/* its request was failed while it connected: nothing to send, ever */
			gw_conn_close(w, c, "dedicated request gone");
			return;
		}
		c->up.query_deadline_ms = r && r->timeout_ms ? w->now_ms + r->timeout_ms : 0;
		if (r && r->msg) {
			struct gw_chunk *msg = r->msg;
			r->msg = NULL;
			be->stat.bytes_out += msg->len;
			gw_tx_append_chunk(w, c, msg);
		}
		return;
	}
	if (gw_up_kind(c) == POOL_CONN_SESSION) {
		struct gw_conn *cl = session_client(c);
		gw_upstream_set_state(w, c, POOL_BUSY);
		c->up.query_deadline_ms = 0;
		be->stat.connect_ok_ms = w->now_ms;
		if (pool_session_ok(&be->pb))
			gw_info("backend=%s pool=%s msg=\"session backend reachable again\"",
				be->cfg->log_name, be->pool->cfg->log_name);
		if (!cl) {
			gw_conn_close(w, c, "session client gone");
			return;
		}
		gw_session_ready(w, cl, capability);
		return;
	}
	if (pool_slot_up(&be->pb, (uint32_t)c->up.rec->slot))
		be->stat.reconnects++;
	if (be->pb.slots[c->up.rec->slot].is_spare)
		be->stat.spare_opens++;
	if (!be->was_up) {
		be->was_up = true;
		gw_info("backend=%s pool=%s address=%s capability=%d msg=\"backend up\"",
			be->cfg->log_name, be->pool->cfg->log_name, be->cfg->addr.log_text,
			capability);
	}
	gw_upstream_set_state(w, c, POOL_IDLE);
	gw_pool_dispatch(w, be->pool);
}

/* The end of the answer owed (or being drained) on c. */
static void answer_done(struct gw_worker *w, struct gw_conn *c)
{
	/* paused while its client was slow to read, and the last bytes were already in
	 * flight: no slot refers to it any more, so resume it here or it stays deaf */
	if (c->up.is_paused_for_client)
		gw_upstream_resume(w, c);
	if (gw_up_kind(c) == POOL_CONN_DEDICATED) {
		gw_conn_close(w, c, "dedicated request answered");
		return;
	}
	gw_upstream_set_state(w, c, POOL_IDLE);	/* no longer owes anything */
	if (c->up.be->is_retired) {
		gw_conn_close(w, c, "backend removed by reload");	/* its last answer is in */
		return;
	}
	/* marked only: the loop hands it a waiter once this receive buffer is consumed */
	gw_pool_dispatch(w, c->up.be->pool);
}

/*
 * The answer to r (a pooled sync request) starts: from its send to here is how long the
 * backend took to run it, queueing inside q included (and not the answer's transfer, nor a
 * slow client's reading). It teaches the pool what such calls cost and the backend's limiter
 * (max_inflight "auto") how q copes with what it was sent.
 */
static void answer_started(struct gw_conn *c, struct gw_req *r)
{
	if (r->is_health || !r->t_sent_us || gw_up_kind(c) != POOL_CONN_POOLED)
		return;
	uint64_t now = gw_now_us(), us = now - r->t_sent_us;
	pool_answer_time(c->up.rec, r->pq.cost_key, us > UINT32_MAX ? UINT32_MAX : (uint32_t)us,
			 now);
}

static void on_header(struct gw_worker *w, struct gw_conn *c, const struct qipc_frame_step *st)
{
	struct gw_pool_rt *p = c->up.be->pool;

	c->up.is_skipping = false;
	if (st->hdr.msg_type == QIPC_RESPONSE) {
		if (gw_up_state(c) != POOL_BUSY && gw_up_state(c) != POOL_DRAINING) {
			/* never paired with whatever request comes next (the one rule) */
			gw_warn("backend=%s msg=\"response with no request outstanding: closing\"",
				be_name(c));
			p->stat.unsolicited_closes++;
			gw_conn_close(w, c, "unsolicited response");
			return;
		}
		if (c->up.owed) {
			c->up.has_hdr_pending = true;	/* sent with the first body bytes */
			answer_started(c, c->up.owed);
		}
		return;
	}
	/* a message the backend started: no client of a shared connection may get it */
	p->stat.dropped_unsolicited++;
	if ((p->stat.dropped_unsolicited & (p->stat.dropped_unsolicited - 1)) == 0)	/* 1,2,4,8.. */
		gw_warn("backend=%s pool=%s type=%s dropped_total=%llu msg=\"message started "
			"by backend on a shared connection dropped\"", be_name(c), p->cfg->log_name,
			st->hdr.msg_type == QIPC_SYNC ? "sync" : "async",
			(unsigned long long)p->stat.dropped_unsolicited);
	c->up.is_skipping = true;
	c->up.skip_type = st->hdr.msg_type;
}

void gw_upstream_reply_refused_call(struct gw_worker *w, struct gw_conn *c)
{
	uint8_t buf[128];
	int n = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE,
				 "qgate: calls into the client are not supported in query mode");

	c->up.has_reply_pending = false;
	if (n > 0)
		gw_tx_append(w, c, buf, (size_t)n);
}

static void skip_done(struct gw_worker *w, struct gw_conn *c)
{
	c->up.is_skipping = false;
	if (c->up.skip_type != QIPC_SYNC)
		return;
	/* a q process blocks on its sync call until answered: answer with an error, but not
	 * into the middle of a client message streaming in (it follows the message's end) */
	if (c->up.is_tx_locked)
		c->up.has_reply_pending = true;
	else
		gw_upstream_reply_refused_call(w, c);
}

/* SESSION: everything goes to the client unchanged; the framer only counts answers. */
static void session_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	struct gw_conn *cl = session_client(c);
	const uint8_t *q = p;
	size_t left = n;

	if (!cl) {
		gw_conn_close(w, c, "session client gone");
		return;
	}
	while (left > 0) {
		struct qipc_frame_step st;
		int ret = qipc_framer_feed(&c->fr, q, left, &st);
		if (ret < 0) {
			gw_warn("backend=%s msg=\"protocol error from backend: closing session\"",
				be_name(c));
			gw_conn_close(w, c, "backend protocol error");
			return;
		}
		if (st.kind == QIPC_FRAME_HEADER && st.hdr.msg_type == QIPC_RESPONSE &&
		    cl->cl.session_pending > 0)
			cl->cl.session_pending--;
		q += ret;
		left -= (size_t)ret;
	}
	gw_tx_pass(w, cl, c, p, n);
	/* the client reads slower than its backend writes: stop reading the backend */
	if (gw_tx_pending(cl) > w->cfg->limits.client_buffer_bytes && !c->up.is_paused_for_client) {
		if (!cl->cl.output_stuck_since_ms)
			cl->cl.output_stuck_since_ms = w->now_ms;
		gw_upstream_pause(w, c);
	}
}

/* Bytes from be on any connection: it is alive, whatever its health checks said. */
static void heard(struct gw_worker *w, struct gw_backend_rt *be)
{
	be->last_heard_ms = w->now_ms;
	if (be->health_fails) {
		gw_info("backend=%s pool=%s failures=%u msg=\"backend answers again: health check "
			"failures reset\"", be->cfg->log_name, be->pool->cfg->log_name,
			be->health_fails);
		be->health_fails = 0;
	}
}

void gw_upstream_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	struct gw_backend_rt *be = c->up.be;

	be->stat.bytes_in += n;
	heard(w, be);
	if (gw_up_state(c) == POOL_HANDSHAKE) {
		int cap = p[0];
		if (cap > UP_CAPABILITY) {
			gw_warn("backend=%s msg=\"bad handshake reply\" byte=%d", be->cfg->log_name,
				cap);
			gw_conn_close(w, c, "bad handshake reply");
			return;
		}
		backend_ready(w, c, cap);
		p++;
		n--;
	}
	if (gw_up_kind(c) == POOL_CONN_SESSION) {
		if (n > 0 && !c->is_closing)
			session_data(w, c, p, n);
		return;
	}
	while (n > 0 && !c->is_closing) {
		struct qipc_frame_step st;
		int ret = qipc_framer_feed(&c->fr, p, n, &st);
		if (ret < 0) {
			gw_warn("backend=%s msg=\"protocol error from backend: closing\" err=\"%s\"",
				be->cfg->log_name, strerror(-ret));
			gw_conn_close(w, c, "backend protocol error");
			return;
		}
		p += ret;
		n -= (size_t)ret;
		if (st.kind == QIPC_FRAME_HEADER) {
			on_header(w, c, &st);
		} else if (st.kind == QIPC_FRAME_BODY) {
			if (c->up.is_skipping) {
				if (st.is_msg_end)
					skip_done(w, c);
			} else if (c->up.owed) {
				struct gw_req *r = c->up.owed;
				size_t pre_n = c->up.has_hdr_pending ? QIPC_HDR_SIZE : 0;
				c->up.has_hdr_pending = false;
				if (st.is_msg_end)
					c->up.owed = NULL;	/* r->backend goes with the answer */
				gw_req_answer_bytes(w, r, c->fr.hdr_bytes, pre_n, st.data, st.len,
						    st.is_msg_end);
				if (st.is_msg_end)
					answer_done(w, c);
			} else if (st.is_msg_end && gw_up_state(c) == POOL_DRAINING) {
				answer_done(w, c);	/* drained */
			}
		}
	}
	/* bytes of a message nobody asked for, cut off at the end of this read: the answer to
	 * the next request could not be told from them */
	if (!c->is_closing && gw_up_state(c) == POOL_IDLE && !qipc_framer_idle(&c->fr)) {
		gw_warn("backend=%s msg=\"bytes with no request outstanding: closing\"",
			be->cfg->log_name);
		c->up.be->pool->stat.unsolicited_closes++;
		gw_conn_close(w, c, "unsolicited bytes");
	}
}

void gw_upstream_send(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	struct gw_backend_rt *be = c->up.be;
	struct gw_chunk *msg = r->msg;

	be->stat.requests++;
	be->stat.bytes_out += msg->len;
	r->backend_name = be->cfg->log_name;
	c->up.last_req_ms = w->now_ms;	/* in use: a spare is not idle (sync or async) */
	if (r->is_sync && be->pool->cfg->is_idempotent && !r->is_streamed) {
		/* keep the request: if this backend dies before answering, it is sent again */
		gw_tx_append(w, c, msg->data, msg->len);
		msg = NULL;
	} else {
		r->msg = NULL;
	}
	if (!r->is_sync && w->audit_fd >= 0)
		gw_audit_req(w, r, "sent");
	if (r->is_sync) {
		/* checked out by the pool for r: BUSY, with its max_inflight slot */
		GW_ASSERT(gw_up_state(c) == POOL_BUSY && c->up.rec->holds_slot && !c->up.owed);
		checked_out(w, c, r);
		r->t_sent_us = gw_now_us();
		if (msg)
			gw_tx_append_chunk(w, c, msg);
	} else {
		gw_tx_append_chunk(w, c, msg);
		r->state = GW_REQ_DONE;
		gw_req_release(r);	/* written: nothing more to do for an async */
	}
}

void gw_upstream_resume(struct gw_worker *w, struct gw_conn *c)
{
	c->up.is_paused_for_client = false;
	c->is_recv_paused = false;
	gw_conn_update_recv(w, c);
}

/* A session connection that never came up: its backend is tried again only after a backoff. */
static void session_failed(struct gw_worker *w, struct gw_backend_rt *be)
{
	const struct gw_reconnect_cfg *rc = &be->pool->cfg->reconnect;
	struct pool_backoff_cfg bc = {
		.attempts = -1, .delay_ms = rc->delay_ms, .multiplier = rc->multiplier,
		.max_delay_ms = rc->max_delay_ms, .jitter = rc->jitter,
	};
	int64_t delay = pool_session_failed(&be->pb, &bc, pool_rand01(&be->pool->pl.selector),
					    w->now_ms);

	be->stat.connect_failed_ms = w->now_ms;

	if (be->pb.session_failures == 1)
		gw_warn("backend=%s pool=%s msg=\"session backend unreachable: new sessions go to "
			"other backends\" retry_ms=%lld", be->cfg->log_name,
			be->pool->cfg->log_name,
			(long long)delay);
}

static void close_extra(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_backend_rt *be = c->up.be;
	struct gw_pool_rt *p = be->pool;
	enum pool_conn_state was = gw_up_state(c);
	char text[160];

	pool_list_del(&c->up.extra_link);
	gw_upstream_set_state(w, c, POOL_DOWN);
	if (gw_up_kind(c) == POOL_CONN_DEDICATED) {
		p->n_dedicated--;
		if (c->up.owed) {
			struct gw_req *r = c->up.owed;
			c->up.owed = NULL;
			r->backend = NULL;
			be->stat.errors++;
			snprintf(text, sizeof(text), "qgate: backend %s lost", be->cfg->name);
			gw_req_fail(w, r, text);
		}
		return;
	}
	p->n_sessions--;
	/* unreachable, or (with the gateway's own credentials) refusing us: back off */
	if (was == POOL_CONNECTING || (was == POOL_HANDSHAKE && !p->cfg->is_auth_passthrough))
		session_failed(w, be);
	struct gw_conn *cl = session_client(c);
	if (cl)
		gw_session_lost(w, cl, be->cfg->name,
				!qipc_framer_idle(&c->fr) || c->pass_held_n > 0);
}

/* The last connection of be went: say so once (and "backend up" once one is back). */
static void note_if_down(struct gw_backend_rt *be)
{
	if (pool_be_up(&be->pb) == 0 && be->was_up) {
		be->was_up = false;
		gw_warn("backend=%s pool=%s msg=\"backend down\"", be->cfg->log_name,
			be->pool->cfg->log_name);
	}
}

void gw_upstream_on_close(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_backend_rt *be = c->up.be;
	enum pool_conn_state was = gw_up_state(c);
	char text[160] = "qgate: health check lost";

	if (gw_up_kind(c) != POOL_CONN_POOLED) {
		close_extra(w, c);
		return;
	}
	uint32_t slot = (uint32_t)c->up.rec->slot;
	struct pool_slot *sl = &be->pb.slots[slot];
	gw_upstream_set_state(w, c, POOL_DOWN);
	/* the slot's record goes to the next connection of the slot, which may open before
	 * this one's last completions are in: from here c answers from a DOWN record of its
	 * own */
	c->up.own_rec = (struct pool_conn){ .state = POOL_DOWN, .kind = POOL_CONN_POOLED,
					    .slot = -1, .be = &be->pb };
	pool_list_init(&c->up.own_rec.link);
	c->up.rec = &c->up.own_rec;
	if (c->up.owed) {
		struct gw_req *r = c->up.owed;
		c->up.owed = NULL;
		r->backend = NULL;
		if (!r->is_health) {
			be->stat.errors++;
			snprintf(text, sizeof(text), "qgate: backend %s lost", be->cfg->name);
		}
		if (r->is_health || !gw_req_retry(w, r))
			gw_req_fail(w, r, text);
	}
	/* waiters pinned to this connection may go elsewhere now; with no backend left to
	 * hope for, dispatch fails what is queued */
	gw_pool_dispatch(w, be->pool);
	if (be->is_retired)
		return;	/* closed on purpose by a reload: nothing lost, nothing to reopen */
	if (c->up.is_spare_idle) {
		/* closed on purpose, unused: the slot opens again on demand. It may have been the
		 * last one up while the warm ones reconnect */
		note_if_down(be);
		return;
	}
	if (was >= POOL_IDLE)
		gw_warn("backend=%s pool=%s msg=\"backend connection lost\"", be->cfg->log_name,
			be->pool->cfg->log_name);
	if (was == POOL_HANDSHAKE && c->is_peer_gone) {
		/* the backend closed before its one-byte reply: wrong credentials, or a q too old
		 * for the capability offered. Alternate 6 and 3 so either case can recover. A
		 * handshake qgate gave up on (timeout, logged as such) says neither. */
		if (!sl->is_alt_hello)
			gw_warn("backend=%s msg=\"backend closed the handshake: check its user and "
				"password; trying capability 3 next\"", be->cfg->log_name);
		sl->is_alt_hello = !sl->is_alt_hello;
	}
	if (w->is_stopping)
		return;
	const struct gw_reconnect_cfg *rc = &be->pool->cfg->reconnect;
	struct pool_backoff_cfg bc = {
		.attempts = rc->attempts, .delay_ms = rc->delay_ms, .multiplier = rc->multiplier,
		.max_delay_ms = rc->max_delay_ms, .jitter = rc->jitter,
	};
	if (pool_slot_lost(&be->pb, slot, was, &bc, pool_rand01(&be->pool->pl.selector),
			   w->now_ms) < 0)
		gw_err("backend=%s msg=\"reconnect attempts exhausted: giving up\"",
			be->cfg->log_name);
	note_if_down(be);
}

void gw_upstream_on_sent(struct gw_worker *w, struct gw_conn *c)
{
	bool is_session = gw_up_kind(c) == POOL_CONN_SESSION;
	struct gw_conn *cl = is_session ? session_client(c) : c->up.lock_client;

	/* a client writing into c (a session, or a large message streaming) may have been
	 * paused while c's queue was full */
	if (!cl || (!is_session && !c->up.is_tx_locked))
		return;
	if (cl->kind == GW_CONN_CLIENT && !cl->is_closing &&
	    (is_session || cl->gen == c->up.lock_client_gen))
		gw_client_update_recv(w, cl);
}

/*
 * A health check: the pool's health query as a sync char-vector message, no client. A
 * backend running any request of this gateway (any worker, a drained answer included) is
 * busy, not dead: it is not checked, and the check waits for a later tick. Otherwise it
 * takes a max_inflight slot like any request (q runs it like any other).
 */
static void health_check(struct gw_worker *w, struct gw_conn *c)
{
	const char *q = c->up.be->pool->cfg->health.query;
	size_t qlen = q ? strlen(q) : 0;

	if (pool_shared_inflight(c->up.be->pb.shared) > 0 || !pool_checkout(c->up.rec))
		return;
	struct gw_req *r = gw_req_new();
	r->is_sync = true;
	r->is_health = true;
	r->pool = c->up.be->pool;
	r->timeout_ms = c->up.be->pool->cfg->health.timeout_ms;
	pool_req_init(&r->pq, &r->pool->pl, NULL, true, false);
	r->msg = gw_chunk_new(QIPC_HDR_SIZE + 6 + qlen);
	uint8_t *m = r->msg->data;
	qipc_header_build(m, QIPC_SYNC, false, QIPC_HDR_SIZE + 6 + qlen);
	m[8] = QT_CHAR;
	m[9] = 0;
	m[10] = (uint8_t)qlen;
	m[11] = (uint8_t)(qlen >> 8);
	m[12] = (uint8_t)(qlen >> 16);
	m[13] = (uint8_t)(qlen >> 24);
	memcpy(m + 14, q, qlen);
	r->msg->len = QIPC_HDR_SIZE + 6 + qlen;
	gw_upstream_send(w, c, r);
	c->up.be->stat.requests--;	/* not a client request */
}

/*
 * A backend connection paused for a client that does not read its answers holds that
 * connection. A client whose send queue has not fallen to half of client_buffer_bytes for
 * limits.client_output_timeout_ms while it holds one is disconnected (Redis's output
 * buffer limits), which abandons its answers and frees the connection. A client that
 * keeps reading, even slowly, is not: only one that has stopped.
 */
static bool output_stalled(struct gw_worker *w, struct gw_conn *c)
{
	uint32_t tmo = w->cfg->limits.client_output_timeout_ms;

	if (!tmo || !c->up.is_paused_for_client)
		return false;
	bool is_session = gw_up_kind(c) == POOL_CONN_SESSION;
	struct gw_conn *cl = is_session ? session_client(c) :
			     c->up.owed ? c->up.owed->client : NULL;
	if (!cl || cl->is_closing || cl->kind != GW_CONN_CLIENT ||
	    (!is_session && cl->gen != c->up.owed->client_gen))
		return false;
	uint64_t since = cl->cl.output_stuck_since_ms;
	if (!since || since + tmo > w->now_ms)
		return false;
	w->slow_clients++;
	gw_warn("conn=%llu peer=%s user=%s backend=%s msg=\"closing client: it has not read its "
		"answers for %u ms\"", (unsigned long long)cl->id, cl->peer, cl->cl.user_log,
		be_name(c), tmo);
	gw_conn_close(w, cl, "not reading its answers");
	return true;
}

/* When output_stalled would say yes for c, if nothing changes (the loop's next deadline). */
static void note_output_due(struct gw_worker *w, const struct gw_conn *c)
{
	uint32_t tmo = w->cfg->limits.client_output_timeout_ms;

	if (!tmo || !c->up.is_paused_for_client)
		return;
	bool is_session = gw_up_kind(c) == POOL_CONN_SESSION;
	const struct gw_conn *cl = is_session ? session_client(c) :
				   c->up.owed ? c->up.owed->client : NULL;
	if (cl && cl->kind == GW_CONN_CLIENT && cl->cl.output_stuck_since_ms)
		gw_worker_due(w, cl->cl.output_stuck_since_ms + tmo);
	else
		gw_worker_due(w, w->now_ms + GW_TICK_MS);	/* not known here: looked at each tick */
}

/* health.failures checks in a row failed: be's idle connections close and reconnect with
 * backoff (c, draining the last check's answer, too). Its busy ones keep their requests. */
static void take_out(struct gw_worker *w, struct gw_pool_rt *p, struct gw_backend_rt *be,
		     struct gw_conn *c)
{
	gw_warn("backend=%s pool=%s failures=%u msg=\"health checks failed %u times in a row, "
		"nothing heard meanwhile: taking the backend out\"", be->cfg->log_name,
		p->cfg->log_name,
		be->health_fails, be->health_fails);
	for (int s = 0; s < (int)be->pb.n_slots; s++) {
		struct gw_conn *o = gw_slot_conn(be, s);
		if (o && !o->is_closing && (o == c || gw_up_state(o) == POOL_IDLE))
			gw_conn_close(w, o, "health checks failed");
	}
}

/*
 * A health check on c got no answer in time (or, still draining, for one more interval).
 * A busy q answers late, a dead one never: below health.failures in a row the connection
 * stays and keeps draining the late answer, and any bytes from the backend reset the count.
 */
static void health_failed(struct gw_worker *w, struct gw_pool_rt *p, struct gw_backend_rt *be,
			  struct gw_conn *c)
{
	const struct gw_health_cfg *h = &p->cfg->health;
	uint32_t max = h->failures > 0 ? (uint32_t)h->failures : 1;

	p->stat.health_failures++;
	be->health_fails++;
	if (be->health_fails >= max) {
		take_out(w, p, be, c);
		return;
	}
	gw_warn("backend=%s pool=%s failures=%u of=%u msg=\"health check not answered in time: "
		"busy or gone; the connection stays and drains the late answer\"",
		be->cfg->log_name,
		p->cfg->log_name, be->health_fails, max);
	/* the check still outstanding stands for the next one: no answer by the time that
	 * would be due is the next failure */
	c->up.query_deadline_ms = w->now_ms + (h->interval_ms > h->timeout_ms ? h->interval_ms :
					       h->timeout_ms);
}

static void tick_pooled(struct gw_worker *w, struct gw_pool_rt *p, struct gw_backend_rt *be,
			int s)
{
	struct gw_conn *c = gw_slot_conn(be, s);
	uint32_t hint = p->cfg->health.interval_ms;

	if (!c) {
		if (!p->pl.is_started || w->is_stopping)
			return;
		if (be->pb.slots[s].is_spare) {
			/* opened on demand only; a failed one waits its backoff as any other */
			if (pool_slot_due(&be->pb, (uint32_t)s, w->now_ms) &&
			    pool_be_wants_spare(&be->pb))
				gw_upstream_start(w, be, s);
			return;
		}
		if (pool_slot_due(&be->pb, (uint32_t)s, w->now_ms))
			gw_upstream_start(w, be, s);
		else if (!be->pb.slots[s].is_given_up)
			gw_worker_due(w, be->pb.slots[s].retry_at_ms);
		return;
	}
	if (c->is_closing || output_stalled(w, c))
		return;
	/* idle means nothing left to send either: asyncs queued behind a busy q are owed */
	if (be->pb.slots[s].is_spare && gw_up_state(c) == POOL_IDLE && !c->up.is_tx_locked &&
	    !gw_tx_pending(c) && !c->is_send_inflight) {
		uint64_t idle_until = c->up.last_req_ms + w->cfg->limits.spare_idle_ms;
		if (idle_until <= w->now_ms) {
			/* the load that opened it is gone: q keeps fewer sockets */
			c->up.is_spare_idle = true;
			gw_conn_close(w, c, "spare connection idle");
			return;
		}
		gw_worker_due(w, idle_until);
	}
	note_output_due(w, c);
	/* quiet for an interval: nothing heard from the backend, no answer on c */
	uint64_t heard_ms = c->up.last_used_ms > be->last_heard_ms ? c->up.last_used_ms :
			    be->last_heard_ms;
	/* a disabled backend is left alone: an admin took it out on purpose */
	if (gw_up_state(c) == POOL_IDLE && hint && heard_ms + hint <= w->now_ms &&
	    !c->up.is_tx_locked && !w->is_stopping && !be->pb.is_disabled) {
		health_check(w, c);
		return;
	}
	if (gw_up_state(c) == POOL_IDLE && hint && !c->up.is_tx_locked && !be->pb.is_disabled)
		gw_worker_due(w, heard_ms + hint);
	/* (a check skipped because the backend is busy elsewhere: looked at every tick) */
	if (gw_up_state(c) == POOL_IDLE && hint && heard_ms + hint <= w->now_ms)
		gw_worker_due(w, w->now_ms + GW_TICK_MS);
	if (c->up.query_deadline_ms > w->now_ms)
		gw_worker_due(w, c->up.query_deadline_ms);
	if (!c->up.query_deadline_ms || c->up.query_deadline_ms > w->now_ms)
		return;
	enum pool_conn_state st = gw_up_state(c);
	if (st == POOL_HANDSHAKE || st == POOL_CONNECTING) {
		gw_warn("backend=%s msg=\"handshake timeout\"", be->cfg->log_name);
		gw_conn_close(w, c, "handshake timeout");
	} else if (st == POOL_BUSY && c->up.owed && c->up.owed->is_health) {
		struct gw_req *r = c->up.owed;
		gw_upstream_abandon(w, c, r);	/* DRAINING: the late answer is read, dropped */
		r->state = GW_REQ_DONE;
		gw_req_release(r);
		c->up.is_health_drain = true;
		health_failed(w, p, be, c);
	} else if (st == POOL_DRAINING && c->up.is_health_drain) {
		health_failed(w, p, be, c);
	} else if (st == POOL_BUSY && c->up.owed) {
		p->stat.timeouts++;
		/* the connection drains the late answer, but not forever */
		c->up.query_deadline_ms = w->now_ms + w->cfg->limits.drain_timeout_ms;
		gw_req_fail(w, c->up.owed, "qgate: timeout");
	} else if (st >= POOL_BUSY) {
		gw_warn("backend=%s msg=\"abandoned answer still not in after %u ms: closing "
			"connection\"", be->cfg->log_name, w->cfg->limits.drain_timeout_ms);
		gw_conn_close(w, c, "drain timeout");
	}
}

void gw_upstream_tick(struct gw_worker *w)
{
	for (size_t i = 0; i < w->n_pools; i++) {
		struct gw_pool_rt *p = w->pools[i];
		if (p->cfg->mode == GW_MODE_SESSION)
			continue;	/* no warm connections: one per client */
		/* waiting for another worker's max_inflight slot: a wakeup that could not be
		 * sent (its ring full) is made up for here */
		if (p->pl.is_waiting) {
			gw_pool_dispatch(w, p);
			gw_worker_due(w, w->now_ms + GW_TICK_MS);
		}
		for (size_t b = 0; b < p->n_backends; b++)
			for (int s = 0; s < (int)p->backends[b]->pb.n_slots; s++)
				tick_pooled(w, p, p->backends[b], s);
	}
	/* backends a reload removed: their last requests still have deadlines */
	for (struct pool_link *rl = w->retired_backends.next; rl != &w->retired_backends;
	     rl = rl->next) {
		struct gw_backend_rt *be = pool_container_of(rl, struct gw_backend_rt,
							     retired_link);
		for (int s = 0; s < (int)be->pb.n_slots; s++)
			tick_pooled(w, be->pool, be, s);
	}
	/* dedicated and session connections: handshake and query deadlines */
	struct pool_link *l = w->extra_ups.next;
	while (l != &w->extra_ups) {
		struct pool_link *next = l->next;
		struct gw_conn *c = pool_container_of(l, struct gw_conn, up.extra_link);
		l = next;
		if (c->is_closing || output_stalled(w, c))
			continue;
		note_output_due(w, c);
		if (c->up.query_deadline_ms > w->now_ms)
			gw_worker_due(w, c->up.query_deadline_ms);
		if (!c->up.query_deadline_ms || c->up.query_deadline_ms > w->now_ms)
			continue;
		if (gw_up_state(c) < POOL_IDLE) {
			gw_warn("backend=%s msg=\"handshake timeout\"", be_name(c));
				gw_conn_close(w, c, "handshake timeout");
		} else if (c->up.owed) {
			/* a dedicated socket is never reused: close it rather than drain */
			c->up.be->pool->stat.timeouts++;
			struct gw_req *r = c->up.owed;
			c->up.owed = NULL;
			r->backend = NULL;
			gw_req_fail(w, r, "qgate: timeout");
			gw_conn_close(w, c, "dedicated request timed out");
		}
	}
}

void gw_upstream_abandon(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	GW_ASSERT(c->up.owed == r && r->backend == c);
	c->up.owed = NULL;
	r->backend = NULL;
	/* the answer is read and dropped (a dedicated one still connecting just closes) */
	if (gw_up_state(c) == POOL_BUSY)
		gw_upstream_set_state(w, c, POOL_DRAINING);
	if (c->up.is_paused_for_client)
		gw_upstream_resume(w, c);
}

/* ------------------------------------------------------------ connection ops */

/* the queue waits until the connection is up: the hello goes first */
static bool up_is_tx_held(const struct gw_conn *c)
{
	return gw_up_state(c) < POOL_HANDSHAKE;
}

/* its close is queued: the pool hands it out no more */
static void up_on_closing(struct gw_conn *c)
{
	pool_conn_hold(c->up.rec, POOL_HOLD_CLOSING, true);
}

const struct gw_conn_ops gw_upstream_conn_ops = {
	.is_tx_held = up_is_tx_held,
	.on_closing = up_on_closing,
	.on_connect = gw_upstream_on_connect,
	.on_data = gw_upstream_on_data,
	.on_sent_kicked = gw_upstream_on_sent,
	.on_close = gw_upstream_on_close,
};
