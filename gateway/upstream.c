/*
 * upstream.c — the backend side: connect (with a linked timeout), the q handshake with
 * the backend's own credentials at the highest capability it accepts, relaying answers
 * to the request each connection owes, draining abandoned answers, dropping messages a
 * backend starts on a shared connection, reconnect with backoff, query timeouts.
 *
 * A connection owes at most one answer (up.owed); any response that arrives when none is
 * owed breaks the pairing, so the connection is closed rather than guessed at.
 */
#include "gateway/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "gateway/log.h"

#define UP_CAPABILITY 6

static const char *be_name(const struct gw_conn *c)
{
	return c->up.be->cfg->name;
}

static void set_idle(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_backend_rt *be = c->up.be;

	c->up.state = GW_UP_IDLE;
	c->up.query_deadline_ms = 0;
	be->sel.n_idle++;
	pool_list_add_tail(&be->idle, &c->up.idle_link);
	(void)w;
}

static void leave_idle(struct gw_conn *c)
{
	c->up.be->sel.n_idle--;
	pool_list_del(&c->up.idle_link);
}

void gw_upstream_start(struct gw_worker *w, struct gw_backend_rt *be, int slot)
{
	struct gw_up_slot *sl = &be->slots[slot];
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	if (gw_sockaddr_from(&be->cfg->addr, &ss, &len) < 0) {
		gw_warn("backend=%s address=%s msg=\"cannot resolve\"", be->cfg->name,
			be->cfg->addr.text);
		sl->failures++;
		sl->retry_at_ms = w->now_ms + 1000;
		return;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		gw_warn("backend=%s msg=\"socket failed\" err=\"%s\"", be->cfg->name,
			strerror(errno));
		sl->retry_at_ms = w->now_ms + 1000;
		return;
	}
	if (ss.ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct gw_conn *c = gw_conn_alloc(w, GW_CONN_BACKEND, fd);
	if (!c) {
		close(fd);
		sl->retry_at_ms = w->now_ms + 1000;
		return;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", be->cfg->addr.text);
	c->up.be = be;
	c->up.slot = slot;
	c->up.state = GW_UP_CONNECTING;
	c->up.sa = ss;
	c->up.sa_len = len;
	pool_list_init(&c->up.idle_link);
	sl->conn = c;
	uint32_t tmo = be->pool->cfg->reconnect.connect_timeout_ms;
	if (!tmo)
		tmo = 2000;
	c->up.connect_ts.tv_sec = tmo / 1000;
	c->up.connect_ts.tv_nsec = (long long)(tmo % 1000) * 1000000;
	/* handshake must also finish within the connect timeout */
	c->up.query_deadline_ms = w->now_ms + 2ull * tmo;
	/* connect + linked timeout must be submitted together: reserve both SQEs */
	if (io_uring_sq_space_left(&w->ring) < 2)
		io_uring_submit(&w->ring);
	struct io_uring_sqe *sqe = gw_sqe(w);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->up.sa, c->up.sa_len);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_CONNECT, c));
	sqe = gw_sqe(w);
	io_uring_prep_link_timeout(sqe, &c->up.connect_ts, 0);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_TIMEOUT, c));
	c->inflight += 2;
}

void gw_upstream_on_connect(struct gw_worker *w, struct gw_conn *c, int res)
{
	struct gw_backend_rt *be = c->up.be;
	uint8_t hello[1024];

	if (c->is_closing)
		return;
	if (res < 0) {
		if (be->slots[c->up.slot].failures == 0)
			gw_warn("backend=%s address=%s msg=\"connect failed\" err=\"%s\"",
				be->cfg->name, be->cfg->addr.text,
				res == -ECANCELED ? "connect timeout" : strerror(-res));
		gw_conn_close(w, c, "connect failed");
		return;
	}
	const char *user = be->cfg->user ? be->cfg->user :
			   (w->cfg->gateway_user ? w->cfg->gateway_user : "qgate");
	int n = qipc_hello_build(hello, sizeof(hello), user, be->cfg->password,
				 UP_CAPABILITY);
	if (n < 0) {
		gw_err("backend=%s msg=\"credentials do not fit a q handshake\"", be->cfg->name);
		gw_conn_close(w, c, "bad credentials");
		return;
	}
	c->up.state = GW_UP_HANDSHAKE;
	gw_tx_append(w, c, hello, (size_t)n);
	memset(hello, 0, sizeof(hello));	/* the backend's password does not linger */
	gw_conn_update_recv(w, c);
}

static void backend_ready(struct gw_worker *w, struct gw_conn *c, int capability)
{
	struct gw_backend_rt *be = c->up.be;
	struct gw_up_slot *sl = &be->slots[c->up.slot];

	c->up.capability = capability;
	/* answers stream through without being held whole, so only the protocol bounds them */
	qipc_framer_init(&c->fr, capability, 0);
	if (sl->failures > 0)
		be->reconnects++;
	sl->failures = 0;
	be->sel.n_up++;
	if (!be->was_up) {
		be->was_up = true;
		gw_info("backend=%s pool=%s address=%s capability=%d msg=\"backend up\"",
			be->cfg->name, be->pool->cfg->name, be->cfg->addr.text, capability);
	}
	set_idle(w, c);
	gw_pool_dispatch(w, be->pool);
}

/* The end of the answer owed (or being drained) on c: the connection is free again. */
static void answer_done(struct gw_worker *w, struct gw_conn *c)
{
	c->up.is_draining = false;
	c->up.be->sel.outstanding--;
	set_idle(w, c);
	gw_pool_dispatch(w, c->up.be->pool);
}

static void on_header(struct gw_worker *w, struct gw_conn *c, const struct qipc_frame_step *st)
{
	struct gw_pool_rt *p = c->up.be->pool;

	c->up.is_skipping = false;
	if (st->hdr.msg_type == QIPC_RESPONSE) {
		if (c->up.state != GW_UP_BUSY) {
			gw_warn("backend=%s msg=\"response with no request outstanding: closing\"",
				be_name(c));
			gw_conn_close(w, c, "unsolicited response");
			return;
		}
		if (c->up.owed) {
			/* sent with the first body bytes (every message has some) */
			c->up.has_hdr_pending = true;
		} else if (st->is_msg_end) {
			answer_done(w, c);	/* drained */
		}
		return;
	}
	/* a message the backend started: no client of a shared connection may get it */
	p->dropped_unsolicited++;
	if ((p->dropped_unsolicited & (p->dropped_unsolicited - 1)) == 0)	/* 1,2,4,8.. */
		gw_warn("backend=%s pool=%s type=%s dropped_total=%llu msg=\"message started "
			"by backend on a shared connection dropped\"", be_name(c), p->cfg->name,
			st->hdr.msg_type == QIPC_SYNC ? "sync" : "async",
			(unsigned long long)p->dropped_unsolicited);
	c->up.is_skipping = true;
	c->up.skip_type = st->hdr.msg_type;
	if (st->is_msg_end)
		c->up.is_skipping = false;
}

static void skip_done(struct gw_worker *w, struct gw_conn *c)
{
	uint8_t buf[128];

	c->up.is_skipping = false;
	if (c->up.skip_type == QIPC_SYNC) {
		/* a q process blocks on its sync call until answered: answer with an error */
		int n = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE,
					 "qgate: calls into the client are not supported in query mode");
		if (n > 0)
			gw_tx_append(w, c, buf, (size_t)n);
	}
}

void gw_upstream_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	struct gw_backend_rt *be = c->up.be;

	be->bytes_in += n;
	if (c->up.state == GW_UP_HANDSHAKE) {
		int cap = p[0];
		if (cap > UP_CAPABILITY) {
			gw_warn("backend=%s msg=\"bad handshake reply\" byte=%d", be->cfg->name, cap);
			gw_conn_close(w, c, "bad handshake reply");
			return;
		}
		backend_ready(w, c, cap);
		p++;
		n--;
	}
	while (n > 0 && !c->is_closing) {
		struct qipc_frame_step st;
		int ret = qipc_framer_feed(&c->fr, p, n, &st);
		if (ret < 0) {
			gw_warn("backend=%s msg=\"protocol error from backend: closing\" err=\"%s\"",
				be->cfg->name, strerror(-ret));
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
				if (st.is_msg_end) {
					c->up.owed = NULL;
					gw_req_answer_bytes(w, r, c->fr.hdr_bytes, pre_n, st.data,
							    st.len, true);
					answer_done(w, c);
				} else {
					gw_req_answer_bytes(w, r, c->fr.hdr_bytes, pre_n, st.data,
							    st.len, false);
				}
			} else if (st.is_msg_end && c->up.state == GW_UP_BUSY) {
				answer_done(w, c);	/* drained */
			}
		}
	}
}

void gw_upstream_send(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	struct gw_backend_rt *be = c->up.be;
	struct gw_chunk *msg = r->msg;

	r->msg = NULL;
	be->requests++;
	be->bytes_out += msg->len;
	if (r->is_sync) {
		leave_idle(c);
		c->up.state = GW_UP_BUSY;
		c->up.owed = r;
		c->up.busy_since_ms = w->now_ms;
		c->up.query_deadline_ms = r->timeout_ms ? w->now_ms + r->timeout_ms : 0;
		be->sel.outstanding++;
		r->backend = c;
		r->state = GW_REQ_SENT;
		gw_tx_append_chunk(w, c, msg);
	} else {
		gw_tx_append_chunk(w, c, msg);
		gw_req_free(r);
	}
}

void gw_upstream_resume(struct gw_worker *w, struct gw_conn *c)
{
	c->up.is_paused_for_client = false;
	c->is_recv_paused = false;
	gw_conn_update_recv(w, c);
}

void gw_upstream_on_close(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_backend_rt *be = c->up.be;
	struct gw_up_slot *sl = &be->slots[c->up.slot];
	enum gw_up_state was = c->up.state;
	char text[160];

	if (sl->conn == c)
		sl->conn = NULL;
	if (was == GW_UP_IDLE)
		leave_idle(c);
	if (was == GW_UP_IDLE || was == GW_UP_BUSY)
		be->sel.n_up--;
	if (was == GW_UP_BUSY)
		be->sel.outstanding--;
	c->up.state = GW_UP_DOWN;
	if (c->up.owed) {
		struct gw_req *r = c->up.owed;
		c->up.owed = NULL;
		r->backend = NULL;
		be->errors++;
		snprintf(text, sizeof(text), "qgate: backend %s lost", be->cfg->name);
		gw_req_fail(w, r, text);
	}
	if (was == GW_UP_IDLE || was == GW_UP_BUSY) {
		gw_warn("backend=%s pool=%s msg=\"backend connection lost\"", be->cfg->name,
			be->pool->cfg->name);
		sl->failures = 0;
	}
	if (w->is_stopping)
		return;
	sl->failures++;
	int64_t delay;
	if (was >= GW_UP_IDLE) {
		delay = 0;	/* it was healthy a moment ago: try again at once */
	} else {
		const struct gw_reconnect_cfg *rc = &be->pool->cfg->reconnect;
		struct pool_backoff_cfg bc = {
			.attempts = rc->attempts, .delay_ms = rc->delay_ms,
			.multiplier = rc->multiplier, .max_delay_ms = rc->max_delay_ms,
			.jitter = rc->jitter,
		};
		delay = pool_backoff_ms(&bc, sl->failures, pool_rand01(&be->pool->selector));
	}
	if (delay < 0) {
		sl->is_given_up = true;
		gw_err("backend=%s msg=\"reconnect attempts exhausted: giving up\"", be->cfg->name);
	} else {
		sl->retry_at_ms = w->now_ms + (uint64_t)delay;
	}
	if (be->sel.n_up == 0 && be->was_up) {
		be->was_up = false;
		gw_warn("backend=%s pool=%s msg=\"backend down\"", be->cfg->name,
			be->pool->cfg->name);
	}
	/* waiters pinned to this connection may now go anywhere */
	gw_pool_dispatch(w, be->pool);
}

void gw_upstream_tick(struct gw_worker *w)
{
	for (size_t i = 0; i < w->n_pools; i++) {
		struct gw_pool_rt *p = &w->pools[i];
		for (size_t b = 0; b < p->n_backends; b++) {
			struct gw_backend_rt *be = &p->backends[b];
			for (int s = 0; s < be->cfg->connections; s++) {
				struct gw_up_slot *sl = &be->slots[s];
				struct gw_conn *c = sl->conn;
				if (!c) {
					if (!sl->is_given_up && !w->is_stopping &&
					    sl->retry_at_ms <= w->now_ms)
						gw_upstream_start(w, be, s);
					continue;
				}
				if (c->is_closing || !c->up.query_deadline_ms ||
				    c->up.query_deadline_ms > w->now_ms)
					continue;
				if (c->up.state == GW_UP_HANDSHAKE || c->up.state == GW_UP_CONNECTING) {
					gw_warn("backend=%s msg=\"handshake timeout\"", be->cfg->name);
					gw_conn_close(w, c, "handshake timeout");
				} else if (c->up.state == GW_UP_BUSY && c->up.owed) {
					p->timeouts++;
					c->up.query_deadline_ms = 0;
					gw_req_fail(w, c->up.owed, "qgate: timeout");
				}
			}
		}
	}
}

void gw_upstream_on_sent(struct gw_worker *w, struct gw_conn *c)
{
	/* a client streaming a large message into c was paused while c's queue was full */
	struct gw_conn *cl = c->up.lock_client;

	if (!c->up.is_tx_locked || !cl)
		return;
	if (cl->gen == c->up.lock_client_gen && !cl->is_closing && cl->kind == GW_CONN_CLIENT)
		gw_client_update_recv(w, cl);
}
