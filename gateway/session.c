/*
 * session.c — the client side of the gateway: q handshake and authentication, framing
 * of client messages into requests, routing them to a pool, the pool's FIFO queue, and
 * delivery of answers strictly in the order of the client's requests.
 *
 * The one rule: an answer goes to the client that sent that request, or to nobody.
 *  - Every sync request gets a slot in its client's slot list, in arrival order. Only the
 *    head slot's answer streams to the socket; later answers wait in their slot.
 *  - A backend connection carries at most one sync request at a time (gw_upstream.owed),
 *    so the next response on it can only be that request's answer.
 *  - A request whose client has gone is abandoned: its backend reads and drops the answer.
 */
#include "gateway/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "codec/qipc.h"
#include "gateway/admin.h"
#include "gateway/audit.h"
#include "gateway/auth.h"
#include "gateway/chunk.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/reply.h"
#include "gateway/req.h"
#include "gateway/router.h"
#include "gateway/runtime.h"
#include "gateway/stats.h"
#include "gateway/upstream.h"
#include "gateway/worker.h"
#include "pool/pool.h"

#define GW_CAPABILITY 6
/* the most a client may send after its hello before it gets the reply */
#define GW_EARLY_BYTES (64 * 1024)
/* how much of a large message (above limits.stream_threshold_bytes) is held before it is
 * routed and streams through to a free backend connection */
#define GW_STREAM_HEAD (64 * 1024)
/* idempotent pools: how often one request may be resent after its backend died */
#define GW_MAX_RETRIES 2

/* ------------------------------------------------------------------ auth */

/* The user name of the hello, as it is matched and as it is logged. */
static void set_user(struct gw_conn *c, const struct qipc_hello *h)
{
	size_t ulen = h->user_len < sizeof(c->cl.user) - 1 ? h->user_len : sizeof(c->cl.user) - 1;

	memcpy(c->cl.user, h->cred, ulen);
	c->cl.user[ulen] = '\0';
	gw_log_value(c->cl.user_log, sizeof(c->cl.user_log), c->cl.user);
	c->cl.pc.user_key = pool_key_of(c->cl.user, ulen);	/* user affinity */
}

static bool user_may_use(const struct gw_conn *c, const struct gw_pool_rt *p)
{
	const struct gw_user_cfg *u = c->cl.ucfg;

	if (!u || !u->pools)
		return true;
	for (size_t i = 0; i < u->n_pools; i++)
		if (strcmp(u->pools[i], p->cfg->name) == 0)
			return true;
	return false;
}

/* -------------------------------------------------------------- slots */

static bool client_alive(const struct gw_req *r)
{
	return r->client && r->client->gen == r->client_gen && !r->client->is_closing &&
	       !r->client->cl.is_cut;
}

/* How long a client being closed may take to read the bytes already queued for it. */
#define GW_LINGER_MS 2000

/*
 * Close c once what is queued for it has been sent (a final error, or the part of an
 * answer that was already on its way), within GW_LINGER_MS; it is not read meanwhile.
 */
static void close_after_send(struct gw_worker *w, struct gw_conn *c, const char *reason)
{
	if (c->is_closing)
		return;
	if (gw_tx_pending(c) == 0) {
		gw_conn_close(w, c, reason);
		return;
	}
	c->cl.is_close_after_send = true;
	if (pool_list_empty(&c->cl.linger_link)) {
		c->cl.linger_deadline_ms = w->now_ms + GW_LINGER_MS;
		pool_list_add_tail(&w->lingering, &c->cl.linger_link);
	}
	gw_client_update_recv(w, c);
}

/* Requests let go of by this worker, for its next ones; bounded, and not under ASan (a
 * use after free must be seen, not served by a reused request). */
#define REQ_CACHE_MAX GW_FREE_LIST_MAX
static __thread struct gw_req *req_cache;
static __thread unsigned req_cache_n;

struct gw_req *gw_req_new(void)
{
	struct gw_req *r = req_cache;

	if (r) {
		req_cache = r->next_slot;
		req_cache_n--;
		memset(r, 0, sizeof(*r));
		return r;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	return r;
}

void gw_req_cache_free(void)
{
	while (req_cache) {
		struct gw_req *r = req_cache;
		req_cache = r->next_slot;
		free(r);
	}
	req_cache_n = 0;
}

void gw_req_release(struct gw_req *r)
{
	if (r->is_in_slots || r->backend || r->pq.is_queued)
		return;	/* still held */
	GW_ASSERT(pool_list_empty(&r->pq.clink));
	gw_chunk_free(r->msg);
	gw_chunkq_free(&r->resp);
	if ((int)req_cache_n < REQ_CACHE_MAX) {
		r->next_slot = req_cache;
		req_cache = r;
		req_cache_n++;
		return;
	}
	free(r);
}

static struct gw_conn *stream_conn(struct gw_conn *c);
static struct gw_conn *session_conn(struct gw_conn *c);

/* A client's unread answers have reached the high watermark: it gets no new connection. */
static bool output_blocked(struct gw_worker *w, const struct gw_conn *c)
{
	/* (a client being closed takes nothing new either) */
	return gw_tx_pending(c) + c->cl.buffered_bytes > w->cfg->limits.client_buffer_bytes ||
	       c->cl.is_close_after_send;
}

static bool queues_empty(const struct gw_worker *w)
{
	for (size_t i = 0; i < w->n_pools; i++)
		if (w->pools[i]->pl.queue_len)
			return false;
	return true;
}

/* The client allowed past a spent budget, while it is still in the middle of its message. */
static struct gw_conn *budget_finisher(const struct gw_worker *w)
{
	struct gw_conn *f = w->budget_finisher;

	if (f && f->gen == w->budget_finisher_gen && f->kind == GW_CONN_CLIENT && !f->is_closing &&
	    !pool_list_empty(&f->cl.rx_link))
		return f;
	return NULL;
}

/*
 * Whether limits.max_buffered_bytes stops c being read. While it is spent, only the
 * finisher is read: one client half-way through a message when nothing is queued that
 * could free memory, so that partial messages cannot hold the budget for good.
 */
static bool budget_stops_with(struct gw_worker *w, struct gw_conn *c, uint64_t extra)
{
	if (gw_held_bytes() + extra <= w->cfg->limits.max_buffered_bytes)
		return false;
	struct gw_conn *f = budget_finisher(w);
	bool has_finisher = f != NULL;
	if (has_finisher && f == c)
		return false;
	if (!has_finisher && !pool_list_empty(&c->cl.rx_link) && queues_empty(w)) {
		w->budget_finisher = c;
		w->budget_finisher_gen = c->gen;
		return false;
	}
	if (!w->is_budget_paused)
		w->budget_pauses++;
	w->is_budget_paused = true;
	return true;
}

static bool budget_stops(struct gw_worker *w, struct gw_conn *c)
{
	return budget_stops_with(w, c, 0);
}

void gw_client_update_recv(struct gw_worker *w, struct gw_conn *c)
{
	uint64_t limit = w->cfg->limits.client_buffer_bytes;
	struct gw_conn *uc = c->cl.is_rx_streaming ? stream_conn(c) : NULL;
	struct gw_conn *su = session_conn(c);
	bool is_full = c->cl.n_slots >= w->cfg->limits.max_pipeline;
	/* not read further while: too many requests outstanding (or bytes of a read left over
	 * from reaching that), answers piling up unread, or a message streaming to a backend
	 * that does not take it fast enough */
	bool is_ready = c->cl.state == GW_CL_READY;
	bool pause;
	if (!is_ready)
		pause = c->cl.is_verifying || c->cl.session_up || c->cl.backlog;
	else if (c->cl.is_rx_streaming)
		/* the message holds its backend connection until it ends: only that connection
		 * may slow it (other reasons would stop the queue behind it for good) */
		pause = (uc && gw_tx_pending(uc) > limit) || c->cl.is_close_after_send;
	else
		pause = is_full || c->cl.backlog || output_blocked(w, c) || budget_stops(w, c) ||
			(su && gw_tx_pending(su) > limit) || c->cl.is_close_after_send;

	if (c->cl.backlog && is_ready && !is_full && pool_list_empty(&c->cl.backlog_link))
		pool_list_add_tail(&w->backlogs, &c->cl.backlog_link);	/* parsed by the loop */
	if (pause != c->is_recv_paused) {
		c->is_recv_paused = pause;
		gw_conn_update_recv(w, c);
	}
}

/*
 * Pause or resume the backend answering r. Only the head slot's answer goes to the socket,
 * so the head's backend follows the bytes waiting to be sent, the others' the answers held
 * for later: the head can always make progress while the client reads, whatever the others
 * hold (no deadlock), and what one client holds stays near two watermarks.
 */
static void flow_backend(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	struct gw_conn *uc = r->backend;
	uint64_t limit = w->cfg->limits.client_buffer_bytes;

	if (!uc || uc->is_closing || r->is_compressing)
		return;	/* an answer being compressed is bounded by the limit and comes whole */
	bool is_head = c->cl.slots_head == r;
	uint64_t held = is_head ? gw_tx_pending(c) : c->cl.buffered_bytes;
	if (!uc->up.is_paused_for_client && held > limit)
		gw_upstream_pause(w, uc);
	else if (uc->up.is_paused_for_client && held <= limit / 2)
		gw_upstream_resume(w, uc);
	/* the head waits on the client's own socket: limits.client_output_timeout_ms counts
	 * from now until its send queue falls to half */
	if (is_head && uc->up.is_paused_for_client && !c->cl.output_stuck_since_ms)
		c->cl.output_stuck_since_ms = w->now_ms;
}

static void flow_all(struct gw_worker *w, struct gw_conn *c)
{
	for (struct gw_req *r = c->cl.slots_head; r; r = r->next_slot)
		if (r->backend)
			flow_backend(w, c, r);
}

/* Move the head's buffered answer to the socket; pop heads whose answer is complete. */
static void advance_slots(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_req *h;

	while ((h = c->cl.slots_head) != NULL) {
		if (h->is_compressing && h->state != GW_REQ_DONE)
			break;	/* held whole until it can be compressed */
		while (h->resp.head) {
			/* chunk by chunk onto the tx queue, no copy */
			struct gw_chunk *ch = h->resp.head;
			h->resp.head = ch->next;
			if (!h->resp.head)
				h->resp.tail = NULL;
			uint64_t nbytes = ch->len - ch->off;
			h->resp.bytes -= nbytes;
			c->cl.buffered_bytes -= nbytes;
			h->has_resp_started = true;
			gw_tx_append_chunk(w, c, ch);
		}
		if (h->state != GW_REQ_DONE)
			break;
		c->cl.slots_head = h->next_slot;
		if (!c->cl.slots_head)
			c->cl.slots_tail = NULL;
		c->cl.n_slots--;
		h->is_in_slots = false;
		gw_req_release(h);
	}
}

void gw_client_on_sent(struct gw_worker *w, struct gw_conn *c)
{
	if (c->cl.is_close_after_send && gw_tx_pending(c) == 0) {
		gw_conn_close(w, c, "final error sent");
		return;
	}
	if (gw_tx_pending(c) <= w->cfg->limits.client_buffer_bytes / 2) {
		c->cl.output_stuck_since_ms = 0;	/* it reads: the clock starts again */
		flow_all(w, c);
		struct gw_conn *su = session_conn(c);
		if (su && su->up.is_paused_for_client)
			gw_upstream_resume(w, su);
		/* its oldest waiting request may have been held back while it did not read */
		struct pool *np = pool_client_next(&c->cl.pc);
		if (np && !output_blocked(w, c))
			gw_pool_dispatch(w, gw_pool_of(np));
	}
	gw_client_update_recv(w, c);
}

/*
 * A large answer (limits.zero_copy_bytes) to a plain-socket client is sent from the receive
 * buffers it arrives in, without a copy: only while it is its client's head (what waits
 * behind the head is copied, so no receive buffer waits on another answer) and only from a
 * plain backend socket (gw_buf_lend copies TLS plaintext). The slow-client pause bounds what
 * one client holds, gw_buf_lend what all of them do.
 */
#define LEND_MIN_BYTES 4096	/* smaller pieces are copied: a lent piece holds a whole buffer */

/* a message of msg_len bytes going out on a socket with (is_tls) or without TLS */
static bool is_lendable(const struct gw_worker *w, bool is_tls, uint64_t msg_len)
{
	uint64_t min = w->cfg->limits.zero_copy_bytes;

	return min && !is_tls && msg_len >= min;
}

/* p[0..n) of a lendable message as a chunk lent from its receive buffer; NULL: copy it */
static struct gw_chunk *lend_piece(struct gw_worker *w, bool may_lend, const uint8_t *p,
				   size_t n)
{
	return may_lend && n >= LEND_MIN_BYTES ? gw_buf_lend(w, p, n) : NULL;
}

/*
 * q's rule (protocol page 6.1) for a client that asked for it: an uncompressed answer above
 * 2008 bytes on a connection of capability 1 or more; answers above client_buffer_bytes
 * stream through as they are, since compressing needs the whole message.
 */
static bool want_compression(struct gw_worker *w, const struct gw_conn *c, const uint8_t *hdr)
{
	uint64_t len = qipc_header_length(hdr);

	if (!c->cl.is_compress || c->cl.capability < 1 || hdr[2] != 0 || hdr[0] != 1)
		return false;
	/* held whole and never paused: all of a client's such answers share one budget */
	return len > 2008 && len + c->cl.buffered_bytes <= w->cfg->limits.client_buffer_bytes;
}

/* The whole answer is in r->resp: replace it with q's compressed form when that is smaller. */
static void compress_answer(struct gw_conn *c, struct gw_req *r)
{
	size_t n = (size_t)r->resp.bytes, off = 0;
	uint8_t *flat = malloc(n ? n : 1);
	struct gw_chunk *out = gw_chunk_new(n / 2 + 16);

	if (!flat)
		abort();
	for (struct gw_chunk *ch = r->resp.head; ch; ch = ch->next) {
		memcpy(flat + off, gw_chunk_bytes(ch) + ch->off, ch->len - ch->off);
		off += ch->len - ch->off;
	}
	int64_t cn = qipc_compress(flat, n, out->data, out->cap);
	free(flat);
	if (cn <= 0) {
		gw_chunk_free(out);	/* q would send it plain: so do we */
		return;
	}
	out->len = (size_t)cn;
	c->cl.buffered_bytes -= r->resp.bytes;
	gw_chunkq_free(&r->resp);
	r->resp.head = r->resp.tail = out;
	r->resp.bytes = out->len;
	c->cl.buffered_bytes += out->len;
}

void gw_req_answer_bytes(struct gw_worker *w, struct gw_req *r, const uint8_t *pre,
			 size_t pre_n, const uint8_t *p, size_t n, bool is_end)
{
	if (!client_alive(r)) {
		if (is_end) {
			if (w->audit_fd >= 0 && !r->gw_error)
				gw_audit_req(w, r, "abandoned");
			r->state = GW_REQ_DONE;
			r->backend = NULL;
			gw_req_release(r);	/* the backend's hold ends with the answer */
		}
		return;
	}
	struct gw_conn *c = r->client;
	GW_ASSERT(r->is_in_slots && r->state != GW_REQ_DONE);
	if (pre_n == QIPC_HDR_SIZE && r->resp_bytes == 0) {
		if (n > 0 && p[0] == 0x80)
			r->is_qerror = true;	/* an error object as the answer's payload */
		r->is_compressing = want_compression(w, c, pre);
		r->is_lent = !r->is_compressing &&
			     is_lendable(w, c->ssl != NULL, qipc_header_length(pre));
	}
	r->resp_bytes += pre_n + n;
	if (c->cl.slots_head == r && !r->is_compressing) {
		/* both pieces queued before one kick: a header never leaves on its own */
		gw_chunkq_append(&c->txq, pre, pre_n);
		struct gw_chunk *ch = lend_piece(w, r->is_lent, p, n);
		if (ch)
			gw_chunkq_push(&c->txq, ch);
		else
			gw_chunkq_append(&c->txq, p, n);
		gw_tx_kick(w, c);
		r->has_resp_started = true;
	} else {
		gw_chunkq_append(&r->resp, pre, pre_n);
		gw_chunkq_append(&r->resp, p, n);
		c->cl.buffered_bytes += pre_n + n;
	}
	if (!is_end) {
		flow_backend(w, c, r);
		return;
	}
	if (r->is_compressing)
		compress_answer(c, r);
	r->state = GW_REQ_DONE;
	if (r->pool) {
		uint64_t us = gw_now_us() - r->t_start_us;
		gw_hist_add(&r->pool->stat.latency, us);
		/* the backend that answered (none when qgate made the answer: gw_req_fail) */
		if (r->backend && r->backend->kind == GW_CONN_BACKEND && r->backend->up.be)
			gw_hist_add(&r->backend->up.be->stat.latency, us);
	}
	if (w->audit_fd >= 0 && !r->gw_error)
		gw_audit_req(w, r, r->is_qerror ? "q error" : "ok");
	pool_req_done(&r->pq);	/* the answer may prove its client's asyncs ran */
	r->backend = NULL;
	advance_slots(w, c);
	flow_all(w, c);
	gw_client_update_recv(w, c);
}

/*
 * A departed client's order, for the asyncs it left queued (gw_client_on_close): q runs what
 * a client wrote before it left, so they stay queued, oldest first, under this record that
 * outlives the client (its pins copied: they go where its earlier messages went), until the
 * pool lets them go, they time out, or their pool goes. Such a request has client NULL and
 * pq.client here; the record is freed with its last request's leaving the queue.
 */
struct ghost {
	struct pool_client pc;
};

static struct ghost *ghost_of(const struct gw_req *r)
{
	return !r->client && r->pq.client ? pool_container_of(r->pq.client, struct ghost, pc) :
					    NULL;
}

/* r of ghost g has left its queue: g goes with its last request */
static void ghost_left(struct ghost *g, struct gw_req *r)
{
	r->pq.client = NULL;
	if (pool_list_empty(&g->pc.queued))
		free(g);
}

/* Take r out of its pool's queue and its client's. */
static void unqueue(struct gw_worker *w, struct gw_req *r)
{
	struct ghost *g = ghost_of(r);
	struct pool *next = pool_unqueue(&r->pq);

	/* its client's next message may wait in another pool that nothing else will look at
	 * (this one left unsent: timed out, failed) */
	if (next)
		gw_pool_dispatch(w, gw_pool_of(next));
	if (g)
		ghost_left(g, r);
}

void gw_req_drop_queued(struct gw_req *r)
{
	struct ghost *g = ghost_of(r);

	pool_unqueue(&r->pq);
	if (g)
		ghost_left(g, r);
	r->state = GW_REQ_NEW;
	gw_req_release(r);
}

/* Queue r in its pool and behind its client's earlier messages (a retry: before them);
 * false when the pool's queue is full. */
static bool enqueue(struct gw_worker *w, struct gw_req *r, bool is_first)
{
	return pool_enqueue(&r->pool->pl, &r->pq, w->now_ms, is_first);
}

void gw_req_fail(struct gw_worker *w, struct gw_req *r, const char *text)
{
	uint8_t buf[1024];	/* an admin action's error (a reload's) can be long */
	int len;

	if (r->pq.is_queued)
		unqueue(w, r);
	if (r->state == GW_REQ_SENT && r->backend)
		gw_upstream_abandon(w, r->backend, r);	/* it reads and drops the answer */
	if (r->pool)
		r->pool->stat.errors++;
	if (w->audit_fd >= 0 && !r->gw_error)
		gw_audit_req(w, r, text);
	r->gw_error = true;
	if (!r->is_sync) {
		char rv[512];	/* a backend's name, an admin's argument */
		gw_log_value(rv, sizeof(rv), text);
		gw_warn("user=%s pool=%s msg=\"async message dropped\" reason=%s",
			client_alive(r) ? r->client->cl.user_log : "-",
			r->pool ? r->pool->cfg->log_name : "-", rv);
		r->state = GW_REQ_DONE;
		gw_req_release(r);
		return;
	}
	if (!client_alive(r)) {
		r->state = GW_REQ_DONE;
		gw_req_release(r);	/* freed now, or by the slot walk of its closing client */
		return;
	}
	if (r->has_resp_started) {
		/* part of the real answer is on its way: an error cannot follow it. What is queued
		 * still goes out (the client sees the cut, as from a q that died), then the
		 * client is closed; no other answer follows it. */
		r->state = GW_REQ_DONE;
		r->client->cl.is_cut = true;
		close_after_send(w, r->client, "answer cut short");
		return;
	}
	r->client->cl.buffered_bytes -= r->resp.bytes;
	gw_chunkq_free(&r->resp);
	r->is_compressing = false;
	len = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE, text);
	if (len < 0)
		len = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE, "qgate: error");
	r->resp_bytes = 0;
	gw_req_answer_bytes(w, r, buf, (size_t)len, NULL, 0, true);
}

/* ---------------------------------------------------------------- dispatch */

bool gw_req_retry(struct gw_worker *w, struct gw_req *r)
{
	struct gw_pool_rt *p = r->pool;

	if (!p || !p->cfg->is_idempotent || !r->is_sync || !r->msg || r->has_resp_started ||
	    r->retries >= GW_MAX_RETRIES || p->is_retired || !client_alive(r))
		return false;
	/* the part of an answer that came before the backend died is thrown away: the retry
	 * starts from a clean response */
	r->client->cl.buffered_bytes -= r->resp.bytes;
	gw_chunkq_free(&r->resp);
	r->resp_bytes = 0;
	r->is_qerror = false;
	r->is_compressing = false;
	r->retries++;
	r->state = GW_REQ_NEW;
	/* first in line, in its pool and for its client: it was sent before all they hold */
	enqueue(w, r, true);
	gw_debug("pool=%s msg=\"request retried after its backend died\" retry=%u",
		 p->cfg->log_name, r->retries);
	gw_pool_dispatch(w, p);
	return true;
}

/* A sync request on a socket of its own to be; closed after the answer, however late. */
static void submit_dedicated(struct gw_worker *w, struct gw_req *r, struct gw_backend_rt *be)
{
	struct gw_pool_rt *p = r->pool;

	if (p->n_dedicated >= p->cfg->dedicated_max) {
		gw_req_fail(w, r, "qgate: dedicated connection limit reached");
		return;
	}
	if (gw_upstream_open_dedicated(w, be, r) < 0)
		gw_req_fail(w, r, "qgate: no backend available");
}

/* Carry out a committed decision of the pool for r. */
/* affinity: the client's backend went down and the pool gave it another */
static void log_moved(const struct gw_req *r, const struct pool_decision *d)
{
	if (!d->moved_from || !r->client)
		return;
	gw_info("conn=%llu user=%s pool=%s from=%s to=%s msg=\"client moved to another backend: "
		"its own is down\"", (unsigned long long)r->client->id, r->client->cl.user_log,
		r->pool->cfg->log_name, gw_backend_of(d->moved_from)->cfg->log_name,
		gw_backend_of(d->be)->cfg->log_name);
}

static void carry_out(struct gw_worker *w, struct gw_req *r, const struct pool_decision *d)
{
	log_moved(r, d);
	if (d->verdict == POOL_OPEN)
		submit_dedicated(w, r, gw_backend_of(d->be));
	else
		gw_upstream_send(w, d->conn->owner, r);	/* asyncs are released once written */
}

void gw_pool_dispatch(struct gw_worker *w, struct gw_pool_rt *p)
{
	if (pool_list_empty(&p->dispatch_link))
		pool_list_add_tail(&w->dispatches, &p->dispatch_link);
}

/* One pass over p's queue: the pool pairs waiters with connections, oldest first. */
static void dispatch_pass(struct gw_worker *w, struct gw_pool_rt *p)
{
	struct pool_link *cur = NULL;
	struct pool_decision d;

	while (pool_next(&p->pl, &cur, &d)) {
		struct gw_req *r = gw_req_of(d.req);
		struct pool_client *pc = r->pq.client;
		if (d.verdict == POOL_NONE) {
			/* reconnects exhausted everywhere: nothing queued would ever leave */
			gw_req_fail(w, r, "qgate: no backend available");
			continue;
		}
		/* a client not reading its answers takes no connection for another */
		if (d.verdict == POOL_SEND && r->is_sync && r->client && output_blocked(w, r->client))
			continue;
		struct ghost *g = ghost_of(r);
		if (!pool_commit(&p->pl, &d))
			continue;
		if (g)
			r->pq.client = NULL;	/* (an async: freed once written) */
		carry_out(w, r, &d);
		/* its client's next message may wait in another pool */
		struct pool *np = pc ? pool_client_next(pc) : NULL;
		if (np && np != &p->pl)
			gw_pool_dispatch(w, gw_pool_of(np));
		if (g && pool_list_empty(&g->pc.queued))
			free(g);
	}
}

void gw_pool_dispatch_now(struct gw_worker *w, struct gw_pool_rt *p)
{
	dispatch_pass(w, p);
	/* a max_inflight slot held by another worker came free while this worker was setting
	 * its wakeup bit: one more pass, as that worker may not have seen the bit */
	if (pool_update_waiting(&p->pl))
		dispatch_pass(w, p);
}

static void submit_request(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	struct gw_pool_rt *p = r->pool;
	struct pool_decision d = { .verdict = POOL_WAIT, .req = &r->pq };

	p->stat.requests++;
	if (!p->pl.is_started)
		gw_pool_start(w, p);	/* a lazy pool opens its connections on first use */
	/* pool_propose says NONE itself when no backend has hope: asked here only when the
	 * proposal is skipped (a client not reading its answers takes no connection) */
	if (!(r->is_sync && !r->is_dedicated && output_blocked(w, c)))
		d = pool_propose(&p->pl, &r->pq);
	else if (!pool_has_hope(&p->pl))
		d.verdict = POOL_NONE;
	if (d.verdict == POOL_NONE) {
		gw_req_fail(w, r, "qgate: no backend available");
		return;
	}
	if (d.verdict != POOL_WAIT && pool_commit(&p->pl, &d)) {
		carry_out(w, r, &d);
		return;
	}
	if (!enqueue(w, r, false)) {
		p->stat.queue_full++;
		gw_req_fail(w, r, "qgate: queue full");
		return;
	}
	/* waiting for a max_inflight slot another worker holds: ask to be woken */
	if (pool_update_waiting(&p->pl))
		gw_pool_dispatch(w, p);
}

/* ------------------------------------------------------------ messages */

static void client_protocol_error(struct gw_worker *w, struct gw_conn *c, const char *what,
				  int err)
{
	w->protocol_errors++;
	gw_warn("conn=%llu peer=%s user=%s msg=\"closing client: protocol error\" "
		"detail=\"%s\" err=\"%s\"", (unsigned long long)c->id, c->peer, c->cl.user_log, what,
		strerror(-err));
	gw_conn_close(w, c, what);
}

/* A request for msg (ownership moves to it); sync requests take the next slot. */
static struct gw_req *new_request(struct gw_conn *c, struct gw_chunk *msg)
{
	struct gw_req *r = gw_req_new();

	c->cl.requests++;
	r->client = c;
	r->client_gen = c->gen;
	/* every audit line names its user: admin calls and denials too */
	size_t ul = strnlen(c->cl.user, sizeof(r->user) - 1);
	memcpy(r->user, c->cl.user, ul);
	r->user[ul] = '\0';
	r->is_sync = msg->data[1] == QIPC_SYNC;
	r->msg = msg;
	r->t_start_us = gw_now_us();
	pool_req_init(&r->pq, NULL, &c->cl.pc, r->is_sync, false);
	if (r->is_sync) {
		r->is_in_slots = true;
		if (c->cl.slots_tail)
			c->cl.slots_tail->next_slot = r;
		else
			c->cl.slots_head = r;
		c->cl.slots_tail = r;
		c->cl.n_slots++;
	}
	return r;
}

/* Take back the newest request (it was never routed anywhere); its message is kept. */
static struct gw_chunk *undo_request(struct gw_conn *c, struct gw_req *r)
{
	struct gw_chunk *msg = r->msg;

	if (r->is_sync) {
		struct gw_req **pp = &c->cl.slots_head, *prev = NULL;
		while (*pp != r) {
			prev = *pp;
			pp = &(*pp)->next_slot;
		}
		*pp = NULL;
		c->cl.slots_tail = prev;
		c->cl.n_slots--;
		r->is_in_slots = false;
	}
	r->msg = NULL;
	gw_req_release(r);
	return msg;
}

/*
 * The key of r's call in its pool's cost table (pool/limit.h): the function name of a list
 * message; for a text query, its text up to the first '[' (a call written as text,
 * ".f[1;2]", is .f's) and at most 32 bytes; "" (one key) for anything else.
 */
#define COST_KEY_MAX 32
static uint64_t cost_key(const char *what)
{
	size_t n = strcspn(what, "[");

	return pool_key_of(what, n < COST_KEY_MAX ? n : COST_KEY_MAX);
}

/* Route r (its message head must be in r->msg). false: r was failed with a q error. */
static bool route_request(struct gw_worker *w, struct gw_conn *c, struct gw_req *r)
{
	struct gw_route rt;

	gw_route(w, c, r->msg->data, r->msg->len, &rt);
	memcpy(r->what, rt.what, sizeof(r->what));
	r->pq.cost_key = cost_key(r->what);
	r->req_bytes = c->cl.rx_hdr.length;
	r->pool = rt.pool;
	r->timeout_ms = rt.timeout_ms ? rt.timeout_ms :
			(rt.pool ? rt.pool->cfg->query_timeout_ms : 0);
	r->is_dedicated = rt.is_dedicated || (rt.pool && rt.pool->cfg->is_dedicated);
	r->pq.pool = rt.pool ? &rt.pool->pl : NULL;
	r->pq.is_dedicated = r->is_dedicated;
	if (rt.is_denied) {
		gw_req_fail(w, r, "qgate: not allowed");
		return false;
	}
	if (!rt.pool) {
		gw_req_fail(w, r, "qgate: no pool for this request");
		return false;
	}
	if (!user_may_use(c, rt.pool)) {
		gw_req_fail(w, r, "qgate: not allowed");
		return false;
	}
	if (rt.pool->cfg->mode == GW_MODE_SESSION) {
		/* a session pool has no shared connections to run a single message on */
		gw_req_fail(w, r, "qgate: pool serves whole sessions only");
		return false;
	}
	return true;
}

static bool unexpected_response(struct gw_conn *c, const struct gw_chunk *msg)
{
	if (msg->data[1] != QIPC_RESPONSE)
		return false;
	/* nothing in query mode sends a client a sync request, so nothing is owed */
	gw_warn("conn=%llu peer=%s user=%s msg=\"unexpected response from client dropped\"",
		(unsigned long long)c->id, c->peer, c->cl.user_log);
	return true;
}

static void handle_message(struct gw_worker *w, struct gw_conn *c, struct gw_chunk *msg)
{
	if (unexpected_response(c, msg)) {
		gw_chunk_free(msg);
		return;
	}
	struct gw_req *r = new_request(c, msg);
	uint8_t *ans;
	size_t ans_len;
	const char *err;
	bool is_audited;
	if (gw_admin_call(w, c, msg->data, msg->len, &ans, &ans_len, &err, r->what,
			  sizeof(r->what), &is_audited)) {
		/* answered by the gateway itself, in its place among the client's answers */
		r->gw_error = is_audited;	/* an admin action wrote its own audit line */
		if (err) {
			gw_req_fail(w, r, err);
		} else if (r->is_sync) {
			r->state = GW_REQ_SENT;
			gw_req_answer_bytes(w, r, ans, ans_len, NULL, 0, true);
		} else {
			gw_req_release(r);
		}
		free(ans);
	} else if (route_request(w, c, r)) {
		submit_request(w, c, r);
	}
	gw_client_update_recv(w, c);
}

/* The backend connection a large message is streaming to, while it is still usable. */
static struct gw_conn *stream_conn(struct gw_conn *c)
{
	struct gw_conn *uc = c->cl.stream_to;

	if (!uc || uc->gen != c->cl.stream_gen || uc->is_closing)
		return NULL;
	return uc;
}

/*
 * A large message whose head is in: if a backend connection is free right now, send the
 * head and stream the rest to it as it arrives (cut-through), instead of holding it all.
 * While it streams, the connection takes no other message (is_tx_locked). Returns false
 * when nothing is free: the caller then assembles the message whole and queues it.
 */
static bool try_stream(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_chunk *head = c->cl.rx_msg;

	if (head->data[1] == QIPC_RESPONSE)
		return false;
	/* text that may name .qgate. is judged whole (gw_admin_call) before it goes anywhere */
	if (!gw_admin_may_stream(head->data, head->len))
		return false;
	c->cl.rx_msg = NULL;
	struct gw_req *r = new_request(c, head);
	if (!route_request(w, c, r)) {
		c->cl.is_rx_discard = true;	/* refused: the rest of it goes nowhere */
		return true;
	}
	struct gw_pool_rt *p = r->pool;
	struct pool_decision d = { .verdict = POOL_WAIT };
	if (!r->is_dedicated && p->pl.is_started && !(r->is_sync && output_blocked(w, c)))
		d = pool_propose(&p->pl, &r->pq);
	struct gw_conn *uc = d.verdict == POOL_SEND ? d.conn->owner : NULL;
	/* only into a connection that carries nothing else: should the sender leave in the
	 * middle, closing that connection fails nobody else's request */
	if (uc && (!gw_upstream_is_free(uc) || gw_tx_pending(uc) > 0))
		uc = NULL;
	if (!uc || !pool_commit(&p->pl, &d)) {
		c->cl.rx_msg = undo_request(c, r);
		c->cl.requests--;
		return false;
	}
	p->stat.requests++;
	r->is_streamed = true;
	log_moved(r, &d);
	gw_upstream_send(w, uc, r);
	uc->up.is_tx_locked = true;
	pool_conn_hold(uc->up.rec, POOL_HOLD_STREAM, true);
	uc->up.lock_client = c;
	uc->up.lock_client_gen = c->gen;
	c->cl.stream_to = uc;
	c->cl.stream_gen = uc->gen;
	c->cl.is_rx_streaming = true;
	return true;
}

static void stream_end(struct gw_worker *w, struct gw_conn *c)
{
	struct gw_conn *uc = stream_conn(c);

	c->cl.is_rx_streaming = false;
	c->cl.stream_to = NULL;
	if (uc) {
		uc->up.is_tx_locked = false;
		pool_conn_hold(uc->up.rec, POOL_HOLD_STREAM, false);
		uc->up.lock_client = NULL;
		if (uc->up.has_reply_pending)
			gw_upstream_reply_refused_call(w, uc);	/* held back until the message end */
		gw_pool_dispatch(w, uc->up.be->pool);
	}
}

static void on_body(struct gw_worker *w, struct gw_conn *c, const struct qipc_frame_step *st)
{
	if (c->cl.is_rx_discard)
		return;
	if (c->cl.is_rx_streaming) {
		struct gw_conn *uc = stream_conn(c);
		if (!uc)
			return;	/* its backend is gone: the request already got its error */
		/* a large request goes on from the receive buffers, as large answers do: its
		 * backend connection carries nothing else, and its pending bytes pause the client */
		struct gw_chunk *ch = lend_piece(w, is_lendable(w, uc->ssl != NULL,
								c->cl.rx_hdr.length),
						 st->data, st->len);
		if (ch)
			gw_tx_append_chunk(w, uc, ch);
		else
			gw_tx_append(w, uc, st->data, st->len);
		return;
	}
	struct gw_chunk *m = c->cl.rx_msg;
	if (m->len + st->len > m->cap) {
		if (!c->cl.has_tried_stream) {
			c->cl.has_tried_stream = true;
			if (try_stream(w, c)) {
				on_body(w, c, st);
				return;
			}
			m = c->cl.rx_msg;
		}
		/* nothing free: hold the whole message (bounded by max_message_bytes), at its
		 * full size when the buffer budget has room for it (a large one is mapped alone),
		 * else only what has arrived, and the client pauses until the budget has room:
		 * what a paused client holds is what it sent before the pause took effect */
		size_t want = (size_t)c->cl.rx_hdr.length;
		if (budget_stops_with(w, c, want - m->cap)) {
			want = m->len + st->len;
			if (want < m->cap * 2 && m->cap * 2 < c->cl.rx_hdr.length)
				want = m->cap * 2;
		}
		m = gw_chunk_grow(m, want);
		c->cl.rx_msg = m;
		gw_client_update_recv(w, c);
	}
	memcpy(m->data + m->len, st->data, st->len);
	m->len += st->len;
}

static void on_msg_end(struct gw_worker *w, struct gw_conn *c)
{
	pool_list_del(&c->cl.rx_link);
	if (w->budget_finisher == c)
		w->budget_finisher = NULL;	/* one message only: its next one waits its turn */
	c->cl.has_tried_stream = false;
	if (c->cl.is_rx_discard) {
		c->cl.is_rx_discard = false;
		return;
	}
	if (c->cl.is_rx_streaming) {
		stream_end(w, c);
		gw_client_update_recv(w, c);
		return;
	}
	struct gw_chunk *m = c->cl.rx_msg;
	c->cl.rx_msg = NULL;
	handle_message(w, c, m);
}

/* The handshake is over: reply with the capability both sides will use. */
static void client_ready(struct gw_worker *w, struct gw_conn *c, int server_cap)
{
	c->cl.capability = qipc_hello_reply(c->cl.client_capability, server_cap);
	uint8_t reply = (uint8_t)c->cl.capability;
	pool_list_del(&c->cl.hs_link);
	c->cl.state = GW_CL_READY;
	qipc_framer_init(&c->fr, c->cl.capability, w->cfg->limits.max_message_bytes);
	gw_tx_append(w, c, &reply, 1);	/* the reply is a write of its own */
	gw_debug("conn=%llu peer=%s user=%s capability=%d msg=\"client ready\"",
		 (unsigned long long)c->id, c->peer, c->cl.user_log, c->cl.capability);
	gw_client_update_recv(w, c);	/* what it sent early is parsed now */
}

/* The pool a client's whole session belongs to: user rules, user pool, listener pool. */
static struct gw_pool_rt *session_pool_for(struct gw_worker *w, struct gw_conn *c)
{
	const struct gw_config *cfg = w->cfg;
	const char *name = NULL;

	for (size_t i = 0; i < cfg->n_rules && !name; i++) {
		const struct gw_rule_cfg *r = &cfg->rules[i];
		if (r->user && !r->function && !r->prefix && r->pool &&
		    strcmp(r->user, c->cl.user) == 0)
			name = r->pool;
	}
	if (!name && c->cl.ucfg && c->cl.ucfg->default_pool)
		name = c->cl.ucfg->default_pool;
	if (name) {
		for (size_t i = 0; i < w->n_pools; i++)
			if (strcmp(w->pools[i]->cfg->name, name) == 0)
				return w->pools[i];
	}
	return c->cl.listener ? c->cl.listener->pool : NULL;
}

static int start_session(struct gw_worker *w, struct gw_conn *c, struct gw_pool_rt *p,
			 const struct qipc_hello *h)
{
	/* a backend takes new sessions unless its last ones failed and its backoff runs;
	 * among those, the strategy picks (least_outstanding: the fewest sessions) */
	struct pool_be *pbe = pool_pick_session(&p->pl, w->now_ms);
	if (!pbe) {
		/* paused (an admin's .qgate.pause): new sessions are refused, not held */
		gw_info("conn=%llu peer=%s pool=%s msg=\"%s\"", (unsigned long long)c->id, c->peer,
			p->cfg->log_name, p->pl.is_paused ? "pool paused: new session refused" :
			"no session backend reachable");
		return -ENOENT;
	}
	c->cl.session_pool = p;
	p->stat.requests++;
	bool passthrough = p->cfg->is_auth_passthrough;
	int ret = gw_upstream_open_session(w, gw_backend_of(pbe), c, passthrough ? h->cred : NULL,
					   passthrough ? h->cred_len : 0, h->capability);
	if (ret < 0)
		gw_warn("conn=%llu peer=%s pool=%s msg=\"cannot open session connection\"",
			(unsigned long long)c->id, c->peer, p->cfg->log_name);
	return ret;
}

static struct gw_conn *session_conn(struct gw_conn *c)
{
	struct gw_conn *uc = c->cl.session_up;

	if (!uc || uc->gen != c->cl.session_up_gen || uc->is_closing)
		return NULL;
	return uc;
}

void gw_session_ready(struct gw_worker *w, struct gw_conn *c, int capability)
{
	/* the client may not use more than the backend accepted */
	client_ready(w, c, capability < GW_CAPABILITY ? capability : GW_CAPABILITY);
}

void gw_session_lost(struct gw_worker *w, struct gw_conn *c, const char *backend,
		     bool is_mid_message)
{
	char text[160], bv[512];
	uint8_t buf[200];

	gw_log_value(bv, sizeof(bv), backend);
	c->cl.session_up = NULL;
	if (is_mid_message) {
		/* part of a message already went to the client: nothing may follow it (q too
		 * would just drop the connection) */
		gw_info("conn=%llu peer=%s user=%s backend=%s msg=\"session backend lost in the "
			"middle of a message: closing client\"", (unsigned long long)c->id, c->peer,
			c->cl.user_log, bv);
		gw_conn_close(w, c, "session backend lost mid-message");
		return;
	}
	if (c->cl.state != GW_CL_READY) {
		gw_info("conn=%llu peer=%s user=%s backend=%s msg=\"session backend refused or "
			"unreachable: closing client\"", (unsigned long long)c->id, c->peer,
			c->cl.user_log, bv);
		gw_conn_close(w, c, "session backend refused");
		return;
	}
	if (c->cl.session_pending == 0) {
		gw_conn_close(w, c, "session backend closed");
		return;
	}
	/* a request is in flight: it gets its q error, then the client is closed */
	snprintf(text, sizeof(text), "qgate: backend %s lost", backend);
	int n = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE, text);
	if (n > 0)
		gw_tx_append(w, c, buf, (size_t)n);
	close_after_send(w, c, "session backend lost");
}

/* SESSION: validate and count, then pass the bytes on unchanged. */
static void session_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	struct gw_conn *uc = session_conn(c);
	const uint8_t *q = p;
	size_t left = n;

	while (left > 0) {
		struct qipc_frame_step st;
		int ret = qipc_framer_feed(&c->fr, q, left, &st);
		if (ret < 0) {
			client_protocol_error(w, c, ret == -EMSGSIZE ? "message too large" :
						    "bad message header", ret);
			return;
		}
		if (st.kind == QIPC_FRAME_HEADER) {
			c->cl.requests++;
			if (st.hdr.msg_type == QIPC_SYNC)
				c->cl.session_pending++;
		}
		q += ret;
		left -= (size_t)ret;
	}
	gw_tx_pass(w, uc, c, p, n);
	gw_client_update_recv(w, c);
}

/* Bytes a client sent before its handshake is over, parsed once it is (its backlog). */
/* Append p[0..n) to c's unparsed bytes, which are parsed in order later. */
static void backlog_add(struct gw_conn *c, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	uint8_t *b = realloc(c->cl.backlog, c->cl.backlog_len + n);
	if (!b)
		abort();
	memcpy(b + c->cl.backlog_len, p, n);
	c->cl.backlog = b;
	c->cl.backlog_len += n;
}

static bool keep_early(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	if (c->cl.backlog_len + n > GW_EARLY_BYTES) {
		client_protocol_error(w, c, "too much sent before the handshake reply", -EMSGSIZE);
		return false;
	}
	backlog_add(c, p, n);
	return true;
}

static void refuse_login(struct gw_worker *w, struct gw_conn *c)
{
	/* as q: refuse by closing without a byte */
	gw_info("conn=%llu peer=%s user=%s msg=\"authentication failed\"",
		(unsigned long long)c->id, c->peer, c->cl.user_log);
	gw_conn_close(w, c, "auth failed");
}

/* The credentials are good: open its session, or reply to the hello. */
static void login(struct gw_worker *w, struct gw_conn *c)
{
	struct qipc_hello h;
	int ret = qipc_hello_parse(c->cl.hello, c->cl.hello_len, sizeof(c->cl.hello), &h);

	GW_ASSERT(ret > 0);
	struct gw_pool_rt *sp = session_pool_for(w, c);
	if (sp && sp->cfg->mode == GW_MODE_SESSION) {
		/* the reply waits until the client's own backend connection is up */
		if (!user_may_use(c, sp) || start_session(w, c, sp, &h) < 0)
			gw_conn_close(w, c, "no session backend");
	} else {
		client_ready(w, c, GW_CAPABILITY);
	}
	/* the password is not kept (a passthrough hello was copied out already) */
	OPENSSL_cleanse(c->cl.hello, sizeof(c->cl.hello));
	c->cl.hello_len = 0;
}

void gw_client_auth_done(struct gw_worker *w, struct gw_conn *c, bool is_ok)
{
	c->cl.is_verifying = false;
	if (!is_ok) {
		refuse_login(w, c);
		return;
	}
	login(w, c);
	gw_client_update_recv(w, c);
}

static void on_handshake(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	size_t room = sizeof(c->cl.hello) - c->cl.hello_len;
	size_t k = n < room ? n : room;
	struct qipc_hello h;

	memcpy(c->cl.hello + c->cl.hello_len, p, k);
	c->cl.hello_len += k;
	int ret = qipc_hello_parse(c->cl.hello, c->cl.hello_len, sizeof(c->cl.hello), &h);
	if (ret == 0)
		return;
	if (ret < 0) {
		gw_warn("conn=%llu peer=%s msg=\"closing client: bad handshake\" err=\"%s\"",
			(unsigned long long)c->id, c->peer, strerror(-ret));
		gw_conn_close(w, c, "bad handshake");
		return;
	}
	set_user(c, &h);
	c->cl.client_capability = h.capability;
	/* bytes after the hello: a client that did not wait for the reply; kept for later */
	if (!keep_early(w, c, c->cl.hello + ret, c->cl.hello_len - (size_t)ret) ||
	    !keep_early(w, c, p + k, n - k))
		return;
	c->cl.hello_len = (size_t)ret;
	switch (gw_auth_start(w, c, &h)) {
	case GW_AUTH_REFUSED:
		refuse_login(w, c);
		return;
	case GW_AUTH_PENDING:
		c->cl.is_verifying = true;	/* a login thread checks it; not read meanwhile */
		break;
	case GW_AUTH_OK:
		login(w, c);
		break;
	}
	gw_client_update_recv(w, c);
}

void gw_client_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	if (c->cl.state == GW_CL_HANDSHAKE) {
		if (c->cl.is_verifying || c->cl.session_up)
			keep_early(w, c, p, n);	/* its login is under way */
		else
			on_handshake(w, c, p, n);
		return;
	}
	if (c->cl.backlog) {
		/* bytes wait unparsed already: these go behind them. (A receive completes a few
		 * more times after it is paused, until its cancellation lands.) */
		backlog_add(c, p, n);
		gw_client_update_recv(w, c);
		return;
	}
	if (c->cl.session_pool) {
		session_data(w, c, p, n);
		return;
	}
	while (n > 0 && !c->is_closing) {
		struct qipc_frame_step st;
		if (qipc_framer_idle(&c->fr) && c->cl.n_slots >= w->cfg->limits.max_pipeline) {
			/* at the limit in the middle of a read: the rest waits, unparsed, until
			 * answers go out (its recv stays paused meanwhile) */
			backlog_add(c, p, n);
			gw_client_update_recv(w, c);
			return;
		}
		int ret = qipc_framer_feed(&c->fr, p, n, &st);
		if (ret < 0) {
			client_protocol_error(w, c, ret == -EMSGSIZE ? "message too large" :
						    "bad message header", ret);
			return;
		}
		p += ret;
		n -= (size_t)ret;
		if (st.kind == QIPC_FRAME_HEADER) {
			uint64_t len = st.hdr.length;
			c->cl.rx_hdr = st.hdr;
			/* in transit from now: limits.message_timeout_ms bounds its body */
			c->cl.msg_started_ms = w->now_ms;
			pool_list_add_tail(&w->receiving, &c->cl.rx_link);
			/* a large message starts with its head only: it may stream through */
			bool big = len > w->cfg->limits.stream_threshold_bytes;
			c->cl.rx_msg = gw_chunk_new(big ? GW_STREAM_HEAD : (size_t)len);
			memcpy(c->cl.rx_msg->data, st.hdr_bytes, QIPC_HDR_SIZE);
			c->cl.rx_msg->len = QIPC_HDR_SIZE;
		} else if (st.kind == QIPC_FRAME_BODY) {
			on_body(w, c, &st);
		}
		if (st.kind != QIPC_FRAME_NONE && st.is_msg_end)
			on_msg_end(w, c);
	}
}

void gw_client_run_backlog(struct gw_worker *w, struct gw_conn *c)
{
	uint8_t *p = c->cl.backlog;
	size_t n = c->cl.backlog_len;

	if (c->is_closing || !p || c->cl.state != GW_CL_READY)
		return;
	c->cl.backlog = NULL;
	c->cl.backlog_len = 0;
	gw_client_on_data(w, c, p, n);	/* may keep a new backlog of what is left */
	free(p);
	gw_client_update_recv(w, c);
}

void gw_client_on_close(struct gw_worker *w, struct gw_conn *c)
{
	if (c->cl.state == GW_CL_HANDSHAKE)
		pool_list_del(&c->cl.hs_link);
	pool_list_del(&c->cl.backlog_link);
	pool_list_del(&c->cl.rx_link);
	pool_list_del(&c->cl.linger_link);
	struct gw_conn *su = session_conn(c);
	c->cl.session_up = NULL;
	if (su)
		gw_conn_close(w, su, "session client left");	/* the backend's .z.pc runs */
	if (c->cl.is_rx_streaming) {
		struct gw_conn *uc = stream_conn(c);
		/* the backend got part of a message: that socket can never be in step again */
		c->cl.is_rx_streaming = false;
		if (uc) {
			gw_warn("conn=%llu peer=%s backend=%s msg=\"client left in the middle of a "
				"message: closing its backend connection\"", (unsigned long long)c->id,
				c->peer, uc->up.be->cfg->log_name);
			gw_conn_close(w, uc, "client left mid-message");
		}
	}
	/* its queued syncs leave the pool queues (nobody takes their answers); q runs what a
	 * client wrote before it left, so its asyncs still go, oldest first: now when they can
	 * (to the pinned connection when there is one); from the first that cannot (a paused
	 * pool, its connection streaming, none up) they and the asyncs after it stay queued in
	 * its order under a record that outlives it (struct ghost), as any client's requests
	 * wait: until the pool lets them go, queue.timeout_ms, or their pool is removed */
	struct ghost *g = NULL;
	for (struct pool_link *l = c->cl.pc.queued.next; l != &c->cl.pc.queued;) {
		struct gw_req *r = gw_req_of(pool_container_of(l, struct pool_req, clink));
		struct gw_pool_rt *p = r->pool;
		l = l->next;
		if (r->is_sync) {
			unqueue(w, r);	/* in its slot: let go of below */
			continue;
		}
		if (!g && !p->pl.is_paused) {
			struct pool_decision d = pool_place(&p->pl, &r->pq);
			if (d.verdict == POOL_SEND && pool_commit(&p->pl, &d)) {
				gw_upstream_send(w, d.conn->owner, r);
				continue;
			}
		}
		if (!g) {
			g = calloc(1, sizeof(*g));
			if (!g)
				abort();
			g->pc = c->cl.pc;	/* its pins and affinity homes */
			pool_list_init(&g->pc.queued);
			gw_debug("conn=%llu user=%s pool=%s msg=\"client left: its asyncs wait in "
				 "the queue\"", (unsigned long long)c->id, c->cl.user_log,
				 p->cfg->log_name);
		}
		pool_list_del(&r->pq.clink);
		pool_list_add_tail(&g->pc.queued, &r->pq.clink);
		r->pq.client = &g->pc;
		r->client = NULL;
	}
	pool_client_gone(&c->cl.pc);
	struct gw_req *r = c->cl.slots_head;
	while (r) {
		struct gw_req *next = r->next_slot;
		r->client = NULL;
		r->pq.client = NULL;
		r->is_in_slots = false;
		r->next_slot = NULL;
		if (r->backend && gw_up_kind(r->backend) == POOL_CONN_DEDICATED) {
			/* its own socket: closed, which fails and so frees r */
			gw_conn_close(w, r->backend, "dedicated client left");
		} else if (r->backend && r->backend->up.is_paused_for_client) {
			/* abandoned in flight: the backend holds it and drops its answer */
			gw_upstream_resume(w, r->backend);
		}
		gw_req_release(r);
		r = next;
	}
	c->cl.slots_head = c->cl.slots_tail = NULL;
	c->cl.n_slots = 0;
	c->cl.buffered_bytes = 0;
	if (w->n_clients > 0)
		w->n_clients--;
	if (c->cl.listener && c->cl.listener->clients > 0)
		c->cl.listener->clients--;
}

void gw_client_fail_all(struct gw_worker *w, const char *text)
{
	uint8_t buf[200];

	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind != GW_CONN_CLIENT || c->is_closing)
			continue;
		if (c->cl.session_pool) {
			struct gw_conn *su = session_conn(c);
			if (c->cl.session_pending == 0 || !su)
				continue;
			if (!qipc_framer_idle(&su->fr) || su->pass_held_n > 0) {
				gw_conn_close(w, c, "shutdown in the middle of an answer");
				continue;
			}
			int n = qipc_error_build(buf, sizeof(buf), QIPC_RESPONSE, text);
			if (n > 0)
				gw_tx_append(w, c, buf, (size_t)n);
			close_after_send(w, c, "gateway shutting down");
			continue;
		}
		/* each failure may complete (and free) heads: look again from the start */
		for (;;) {
			struct gw_req *r = c->cl.slots_head;
			while (r && r->state == GW_REQ_DONE)
				r = r->next_slot;
			if (!r || c->is_closing)
				break;
			gw_req_fail(w, r, text);
		}
	}
}

void gw_client_tick(struct gw_worker *w)
{
	/* handshakes that did not finish in time */
	struct pool_link *l = w->handshaking.next;
	while (l != &w->handshaking) {
		struct pool_link *next = l->next;
		struct gw_conn *c = pool_container_of(l, struct gw_conn, cl.hs_link);
		if (c->cl.handshake_deadline_ms <= w->now_ms) {
			gw_info("conn=%llu peer=%s msg=\"closing client: handshake timeout\"",
				(unsigned long long)c->id, c->peer);
			gw_conn_close(w, c, "handshake timeout");
		} else {
			gw_worker_due(w, c->cl.handshake_deadline_ms);
		}
		l = next;
	}
	/* messages whose body is still coming after limits.message_timeout_ms (a slow sender
	 * would otherwise hold the backend connection it streams into for good); oldest
	 * first, so the first one not due ends the scan */
	uint32_t mt = w->cfg->limits.message_timeout_ms;
	while (mt && !pool_list_empty(&w->receiving)) {
		struct gw_conn *c = pool_container_of(w->receiving.next, struct gw_conn, cl.rx_link);
		if (c->cl.msg_started_ms + mt > w->now_ms) {
			gw_worker_due(w, c->cl.msg_started_ms + mt);
			break;
		}
		pool_list_del(&c->cl.rx_link);
		gw_warn("conn=%llu peer=%s user=%s msg=\"closing client: message not complete "
			"after %u ms\" streaming=%d", (unsigned long long)c->id, c->peer,
			c->cl.user_log, mt, c->cl.is_rx_streaming);
		gw_conn_close(w, c, "message timeout");
	}
	/* the buffer budget has room again (with some slack): read every client again; if it
	 * is still spent with nothing queued, let the oldest half-received message finish */
	if (w->is_budget_paused) {
		gw_worker_due(w, w->now_ms + GW_TICK_MS);	/* the budget is looked at again each tick */
		uint64_t budget = w->cfg->limits.max_buffered_bytes;
		bool has_room = gw_held_bytes() <= budget - budget / 8;
		bool has_finisher = budget_finisher(w) != NULL;
		if (has_room) {
			w->is_budget_paused = false;
			for (uint32_t i = 0; i < w->n_conns; i++) {
				struct gw_conn *k = gw_conn_at(w, i);
				if (k->kind == GW_CONN_CLIENT && !k->is_closing &&
				    k->cl.state == GW_CL_READY)
					gw_client_update_recv(w, k);
			}
		} else if (!has_finisher && !pool_list_empty(&w->receiving) && queues_empty(w)) {
			gw_client_update_recv(w, pool_container_of(w->receiving.next, struct gw_conn,
								   cl.rx_link));
		}
	}
	/* clients being closed whose last bytes are not out in time: closed now */
	while (!pool_list_empty(&w->lingering)) {
		struct gw_conn *c = pool_container_of(w->lingering.next, struct gw_conn,
						      cl.linger_link);
		if (c->cl.linger_deadline_ms > w->now_ms) {
			gw_worker_due(w, c->cl.linger_deadline_ms);
			break;
		}
		pool_list_del(&c->cl.linger_link);
		gw_conn_close(w, c, "closing: last bytes not read in time");
	}
	/* requests that waited too long in a pool queue */
	for (size_t i = 0; i < w->n_pools; i++) {
		struct gw_pool_rt *p = w->pools[i];
		struct pool_req *pq;
		while ((pq = pool_expired(&p->pl, w->now_ms)) != NULL) {
			struct gw_req *r = gw_req_of(pq);
			p->stat.queue_timeouts++;
			gw_req_fail(w, r, "qgate: queue timeout");
		}
		/* the earliest queue deadline (a retry's is its own): queues are bounded */
		for (struct pool_link *ql = p->pl.queue.next; ql != &p->pl.queue; ql = ql->next) {
			const struct pool_req *q = pool_container_of(ql, struct pool_req, qlink);
			if (q->deadline_ms)
				gw_worker_due(w, q->deadline_ms);
		}
	}
}

/* ------------------------------------------------------------ connection ops */

static void client_on_alloc(struct gw_worker *w, struct gw_conn *c)
{
	(void)w;
	pool_client_init(&c->cl.pc);
	pool_list_init(&c->cl.backlog_link);
	pool_list_init(&c->cl.rx_link);
	pool_list_init(&c->cl.linger_link);
}

/* bytes came in (TLS records too): the idle clock starts again */
static void client_on_recv(struct gw_worker *w, struct gw_conn *c)
{
	c->cl.last_active_ms = w->now_ms;
}

static void client_on_free(struct gw_worker *w, struct gw_conn *c)
{
	(void)w;
	GW_ASSERT(!c->cl.slots_head && pool_list_empty(&c->cl.pc.queued));
	gw_chunk_free(c->cl.rx_msg);
	c->cl.rx_msg = NULL;
	free(c->cl.backlog);
	c->cl.backlog = NULL;
}

const struct gw_conn_ops gw_client_conn_ops = {
	.is_eof_watched = true,
	.on_alloc = client_on_alloc,
	.on_recv = client_on_recv,
	.on_data = gw_client_on_data,
	.on_sent = gw_client_on_sent,
	.on_close = gw_client_on_close,
	.on_free = client_on_free,
};
