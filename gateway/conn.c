/*
 * conn.c — the connection object of a worker: the slab of slots, the per-socket tx queue
 * (one sendmsg in flight at a time), receive arming and pausing, the provided buffers a
 * recv completion lends, and the close sequence. What a connection's bytes mean is its
 * kind's business: conn.c reaches the client, backend, stats, listener and login-thread
 * code only through the struct gw_conn_ops registered for each kind.
 *
 * Invariants:
 *  - at most one send SQE in flight per socket (io_uring(7): sends on a stream socket may
 *    be reordered otherwise);
 *  - a provided buffer is returned to the ring before its completion handler returns, or
 *    (lent to tx queues, gw_buf_lend) when the last chunk lent from it is freed;
 *  - gw_conn_close only queues: the close is carried out by the loop (gw_conn_close_one);
 *  - a connection slot is recycled only when is_closed && inflight == 0.
 */
#include "gateway/conn.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "codec/qipc.h"
#include "gateway/chunk.h"
#include "gateway/log.h"
#include "gateway/tls.h"
#include "gateway/worker.h"

#define SEND_MAX_BYTES (256 * 1024)	/* fairness: cap one sendmsg */
/* a send this small that empties its queue is expected to complete inside the enter that
 * submits it (worker.h, quiet_sends) */
#define QUIET_SEND_BYTES (16 * 1024)

/* a kind nobody registered: every hook absent */
static const struct gw_conn_ops no_ops;
/* connection ids, unique in the process (__atomic): clients are named by them across workers */
static uint64_t next_conn_id;

/* ------------------------------------------------------------------- slab */

void gw_conn_set_ops(struct gw_worker *w, enum gw_conn_kind kind, const struct gw_conn_ops *ops)
{
	GW_ASSERT((unsigned)kind < GW_CONN_N_KINDS);
	w->conn_ops[kind] = ops;
}

bool gw_conn_slab_grow(struct gw_worker *w)
{
	if (w->n_conns >= w->max_conns)
		return false;
	struct gw_conn **segs = realloc(w->segs, (w->n_segs + 1) * sizeof(*segs));
	if (!segs)
		return false;
	w->segs = segs;
	struct gw_conn *seg = calloc(GW_SLAB_SEG, sizeof(*seg));
	if (!seg)
		return false;
	w->segs[w->n_segs++] = seg;
	for (uint32_t i = GW_SLAB_SEG; i-- > 0;) {
		seg[i].idx = w->n_conns + i;
		seg[i].fd = -1;
		seg[i].next_free = w->free_list;
		w->free_list = &seg[i];
	}
	w->n_conns += GW_SLAB_SEG;
	return true;
}

struct gw_conn *gw_conn_alloc(struct gw_worker *w, enum gw_conn_kind kind, int fd)
{
	if (!w->free_list && !gw_conn_slab_grow(w))
		return NULL;
	struct gw_conn *c = w->free_list;
	w->free_list = c->next_free;
	uint32_t idx = c->idx, gen = c->gen;
	memset(c, 0, sizeof(*c));
	c->idx = idx;
	c->gen = gen;
	c->kind = kind;
	c->ops = w->conn_ops[kind] ? w->conn_ops[kind] : &no_ops;
	c->fd = fd;
	/* unique in the process, not only the worker: .qgate.kill names a client by it */
	c->id = __atomic_add_fetch(&next_conn_id, 1, __ATOMIC_RELAXED);
	if (c->ops->on_alloc)
		c->ops->on_alloc(w, c);
	return c;
}

static void conn_free(struct gw_worker *w, struct gw_conn *c)
{
	GW_ASSERT(c->is_closed && c->inflight == 0);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	gw_chunkq_free(&c->txq);
	gw_chunkq_free(&c->ctq);
	if (c->ssl)
		gw_tls_free(c);
	if (c->ops->on_free)
		c->ops->on_free(w, c);
	c->kind = GW_CONN_FREE;
	c->ops = &no_ops;
	c->gen = (c->gen + 1) & 0xffffff;
	c->next_free = w->free_list;
	w->free_list = c;
}

static void maybe_free(struct gw_worker *w, struct gw_conn *c)
{
	if (c->is_closed && c->inflight == 0)
		conn_free(w, c);
}

void gw_conn_sqe_done(struct gw_worker *w, struct gw_conn *c)
{
	c->inflight--;
	maybe_free(w, c);
}

/* ------------------------------------------------------------------ close */

void gw_conn_close(struct gw_worker *w, struct gw_conn *c, const char *reason)
{
	if (c->is_closing)
		return;
	c->is_closing = true;
	c->close_reason = reason;
	if (c->ops->on_closing)
		c->ops->on_closing(c);
	c->close_next = NULL;
	if (w->close_tail)
		w->close_tail->close_next = c;
	else
		w->close_head = c;
	w->close_tail = c;
}

/* Carry out one queued close: its kind's on_close, then stop its socket's SQEs. */
static void close_now(struct gw_worker *w, struct gw_conn *c)
{
	GW_ASSERT(c->is_closing && !c->is_closed);
	if (c->close_reason)
		gw_debug("conn=%llu peer=%s msg=\"closing\" reason=\"%s\"",
			 (unsigned long long)c->id, c->peer, c->close_reason);
	if (c->ops->on_close)
		c->ops->on_close(w, c);
	c->is_closed = true;
	if (c->fd >= 0) {
		/* wakes a pending multishot recv (res 0) and fails pending sends; a shared
		 * socket would be shut for every worker: the cancel below is enough there */
		if (!c->is_fd_shared)
			shutdown(c->fd, SHUT_RDWR);
		if (c->inflight > 0) {
			struct io_uring_sqe *sqe = gw_sqe(w);
			io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_CANCEL, c));
			c->inflight++;
		}
	}
	maybe_free(w, c);
}

bool gw_conn_close_one(struct gw_worker *w)
{
	struct gw_conn *c = w->close_head;

	if (!c)
		return false;
	w->close_head = c->close_next;
	if (!w->close_head)
		w->close_tail = NULL;
	close_now(w, c);
	return true;
}

/* ------------------------------------------------------------------- recv */

void gw_conn_update_recv(struct gw_worker *w, struct gw_conn *c)
{
	if (c->is_closing)
		return;
	if (c->is_recv_paused && !c->is_poll_armed && c->fd >= 0 && c->ops->is_eof_watched) {
		/* not read while paused, so its EOF would go unseen: watch for the peer leaving.
		 * (Clients only: a backend that answers and then closes must be read to the end,
		 * and it is resumed whenever its client goes.) */
		struct io_uring_sqe *sqe = gw_sqe(w);
		io_uring_prep_poll_add(sqe, c->fd, POLLRDHUP | POLLHUP | POLLERR);
		io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_POLL, c));
		c->is_poll_armed = true;
		c->inflight++;
	}
	if (!c->is_recv_paused && !c->recv_armed) {
		struct io_uring_sqe *sqe = gw_sqe(w);
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = w->bgid;
		io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_RECV, c));
		c->recv_armed = true;
		c->recv_cancel_sent = false;
		c->inflight++;
	} else if (c->is_recv_paused && c->recv_armed && !c->recv_cancel_sent) {
		struct io_uring_sqe *sqe = gw_sqe(w);
		io_uring_prep_cancel64(sqe, gw_ud(GW_OP_RECV, c), 0);
		io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_CANCEL, c));
		c->recv_cancel_sent = true;
		c->inflight++;
	}
}

void gw_conn_deliver(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	if (c->ops->on_data)
		c->ops->on_data(w, c, p, n);
}

void gw_conn_on_recv(struct gw_worker *w, struct gw_conn *c, struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;
	int res = cqe->res;

	if (!more)
		c->recv_armed = false;
	if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		const uint8_t *data = w->buf_mem + (size_t)bid * w->buf_size;
		if (!c->is_closing) {
			if (c->ops->on_recv)
				c->ops->on_recv(w, c);
			if (c->ssl) {
				gw_tls_on_recv(w, c, data, (size_t)res);
			} else {
				w->rx_bid = (int)bid;	/* may be lent (gw_buf_lend) */
				gw_conn_deliver(w, c, data, (size_t)res);
				w->rx_bid = -1;
			}
		}
		if (w->buf_lent[bid] == 0)
			gw_buf_return(w, bid);	/* else: with the last chunk lent from it */
	} else if (res == 0) {
		if (!c->is_closing) {
			c->is_peer_gone = true;
			gw_conn_close(w, c, "peer closed");
		}
		return;
	} else if (res == -ENOBUFS) {
		w->enobufs++;	/* flow control: re-armed below once buffers are back */
	} else if (res < 0 && res != -ECANCELED) {
		if (!c->is_closing) {
			c->is_peer_gone = true;
			gw_conn_close(w, c, strerror(-res));
		}
		return;
	}
	if (!more)
		gw_conn_update_recv(w, c);
}

void gw_conn_on_poll(struct gw_worker *w, struct gw_conn *c, int res)
{
	c->is_poll_armed = false;
	if (c->is_closing || res < 0)
		return;
	if (c->is_recv_paused) {
		c->is_peer_gone = true;
		gw_conn_close(w, c, "peer left while not being read");
	}
	/* otherwise its recv is armed again and will see the end itself */
}

/* ------------------------------------------------------------------- send */

/* the queue the socket sends from: ciphertext on a TLS connection */
static struct gw_chunkq *sendq(struct gw_conn *c)
{
	return c->ssl ? &c->ctq : &c->txq;
}

void gw_tx_kick(struct gw_worker *w, struct gw_conn *c)
{
	if (c->is_send_inflight || c->is_closing)
		return;
	if (c->ops->is_tx_held && c->ops->is_tx_held(c))
		return;	/* not connected yet: the queue waits */
	if (c->ssl)
		gw_tls_encrypt(c);
	struct gw_chunkq *q = sendq(c);
	if (q->bytes == 0)
		return;
	size_t n = 0, bytes = 0;
	for (struct gw_chunk *ch = q->head; ch && n < GW_IOV_MAX && bytes < SEND_MAX_BYTES;
	     ch = ch->next) {
		if (ch->len == ch->off)
			continue;
		c->iov[n].iov_base = (uint8_t *)gw_chunk_bytes(ch) + ch->off;
		c->iov[n].iov_len = ch->len - ch->off;
		bytes += c->iov[n].iov_len;
		n++;
	}
	if (n == 0)
		return;
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = n;
	struct io_uring_sqe *sqe = gw_sqe(w);
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_SEND, c));
	c->is_send_inflight = true;
	c->inflight++;
	if (bytes == q->bytes && bytes <= QUIET_SEND_BYTES)
		w->quiet_sends++;
}

void gw_tx_pass(struct gw_worker *w, struct gw_conn *dst, struct gw_conn *src,
		const uint8_t *p, size_t n)
{
	const struct qipc_framer *fr = &src->fr;
	size_t held = src->pass_held_n, total = held + n;
	/* the framer sits inside a header it has not finished: those bytes wait */
	size_t tail = (fr->body_left == 0 && fr->hdr_have < QIPC_HDR_SIZE) ? fr->hdr_have : 0;
	size_t fwd = total - tail;
	uint8_t keep[QIPC_HDR_SIZE];

	for (size_t i = 0; i < tail; i++) {
		size_t at = fwd + i;
		keep[i] = at < held ? src->pass_held[at] : p[at - held];
	}
	if (dst && !dst->is_closing && fwd > 0) {
		size_t from_held = held < fwd ? held : fwd;
		gw_chunkq_append(&dst->txq, src->pass_held, from_held);
		if (fwd > held)
			gw_chunkq_append(&dst->txq, p, fwd - held);
		gw_tx_kick(w, dst);
	}
	memcpy(src->pass_held, keep, tail);
	src->pass_held_n = tail;
}

int gw_tx_append(struct gw_worker *w, struct gw_conn *c, const void *p, size_t n)
{
	if (c->is_closing)
		return -EPIPE;
	gw_chunkq_append(&c->txq, p, n);
	gw_tx_kick(w, c);
	return 0;
}

void gw_tx_append_chunk(struct gw_worker *w, struct gw_conn *c, struct gw_chunk *ch)
{
	if (c->is_closing) {
		gw_chunk_free(ch);
		return;
	}
	gw_chunkq_push(&c->txq, ch);
	gw_tx_kick(w, c);
}

void gw_conn_on_send(struct gw_worker *w, struct gw_conn *c, int res)
{
	c->is_send_inflight = false;
	if (c->is_closing)
		return;
	if (res <= 0) {
		c->is_peer_gone = true;
		gw_conn_close(w, c, res == 0 ? "send returned 0" : strerror(-res));
		return;
	}
	size_t left = (size_t)res;
	struct gw_chunkq *q = sendq(c);
	q->bytes -= left;
	while (left > 0 && q->head) {
		struct gw_chunk *ch = q->head;
		size_t avail = ch->len - ch->off;
		size_t k = left < avail ? left : avail;
		ch->off += k;
		left -= k;
		if (ch->off == ch->len) {
			q->head = ch->next;
			if (!q->head)
				q->tail = NULL;
			gw_chunk_free(ch);
		}
	}
	if (c->ops->on_sent) {
		c->ops->on_sent(w, c);
		if (c->is_closing)
			return;
	}
	gw_tx_kick(w, c);
	if (c->ops->on_sent_kicked)
		c->ops->on_sent_kicked(w, c);
}
