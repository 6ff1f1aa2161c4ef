/*
 * conn — the connection object of a worker (conn.c): a slot of the worker's slab, its tx
 * queue (one sendmsg in flight at a time), receive arming and pausing, and the close
 * sequence. Each kind of connection (client, backend, stats, listener, login-thread
 * eventfd) brings its behaviour as a struct gw_conn_ops, registered per kind at worker init;
 * the connection layer calls no protocol code by name.
 *
 * Ownership: a struct gw_conn is owned by the worker's slab; it is freed (slot reused,
 * generation bumped) only once its close has been carried out AND no SQE for it is in
 * flight. gw_conn_close only marks a connection and queues it: the close itself (its kind's
 * on_close, cancelling its SQEs) runs from the loop once every completion handler of this
 * turn has returned, never nested inside another connection's handler (Redis
 * freeClientAsync, PgBouncer's justfree lists). Provided receive buffers are lent to a recv
 * completion and given back before its handler returns (bytes are copied out into chunks),
 * unless the handler lent some of them to a tx queue (gw_buf_lend): then with the last
 * chunk lent from it.
 * Worker thread only.
 */
#ifndef GW_GATEWAY_CONN_H
#define GW_GATEWAY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "codec/qipc.h"
#include "gateway/chunk.h"
#include "gateway/listen_types.h"
#include "gateway/session_types.h"
#include "gateway/stats_types.h"
#include "gateway/upstream_types.h"

#define GW_IOV_MAX 64

enum gw_conn_kind {
	GW_CONN_FREE = 0,
	GW_CONN_LISTENER,
	GW_CONN_CLIENT,
	GW_CONN_BACKEND,
	GW_CONN_HTTP,		/* a stats endpoint request */
	GW_CONN_EVENT,		/* the login threads' eventfd (auth.c) */
	GW_CONN_RESOLVER,	/* the resolver thread's eventfd (resolve.c) */
};
#define GW_CONN_N_KINDS (GW_CONN_RESOLVER + 1)

struct gw_conn;
struct gw_worker;
struct io_uring_cqe;
struct ssl_st;

/*
 * What a kind of connection does with its bytes and events: registered per kind
 * (gw_conn_set_ops), so the connection layer calls no protocol code by name. Every hook
 * may be NULL. All run on the worker thread, never nested in another connection's handler.
 */
struct gw_conn_ops {
	/* recv: keep a paused connection watched for its peer leaving (poll) */
	bool is_eof_watched;
	/* send: hold the queue back (a backend not connected yet) */
	bool (*is_tx_held)(const struct gw_conn *c);
	/* a slot was just taken for this kind (fields zeroed) */
	void (*on_alloc)(struct gw_worker *w, struct gw_conn *c);
	/* bytes arrived on the socket (before TLS) */
	void (*on_recv)(struct gw_worker *w, struct gw_conn *c);
	/* plaintext received, p[0..n) valid only during the call */
	void (*on_data)(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
	/* part of the tx queue went out, before the next send starts: may queue or close */
	void (*on_sent)(struct gw_worker *w, struct gw_conn *c);
	/* ... after the next send was started (or nothing was left to send) */
	void (*on_sent_kicked)(struct gw_worker *w, struct gw_conn *c);
	/* gw_conn_close was just called (the close is queued): nothing may be handed to it */
	void (*on_closing)(struct gw_conn *c);
	/* the loop carries out the close: let go of what it holds, fail what it owes */
	void (*on_close)(struct gw_worker *w, struct gw_conn *c);
	/* the slot is being freed: closed, nothing in flight */
	void (*on_free)(struct gw_worker *w, struct gw_conn *c);
	/* completions of the kind's own SQEs: accept, connect, eventfd read */
	void (*on_accept)(struct gw_worker *w, struct gw_conn *c, struct io_uring_cqe *cqe);
	void (*on_connect)(struct gw_worker *w, struct gw_conn *c, int res);
	void (*on_read)(struct gw_worker *w, struct gw_conn *c, int res);
};

struct gw_conn {
	uint32_t idx;
	uint32_t gen;
	enum gw_conn_kind kind;
	const struct gw_conn_ops *ops;	/* its kind's (never NULL while allocated) */
	int fd;
	uint64_t id;			/* for logs; unique in the process (.qgate.kill) */
	bool is_closing;		/* gw_conn_close was called: nothing more is done for it */
	bool is_closed;			/* ... and the loop has carried the close out */
	/* fd is this worker's dup of a socket other workers use too (a Unix listener): its
	 * close cancels this worker's SQEs and closes the dup, never shuts the socket down */
	bool is_fd_shared;
	struct gw_conn *close_next;	/* worker's close queue while closing && !closed */
	const char *close_reason;
	bool is_peer_gone;		/* closed because the peer did (EOF, reset, send error) */
	int inflight;			/* SQEs submitted and not yet completed for good */
	bool recv_armed;
	bool recv_cancel_sent;
	bool is_recv_paused;
	bool is_poll_armed;		/* paused: a poll watches for the peer leaving */
	bool is_send_inflight;
	struct gw_chunkq txq;		/* bytes to send (plaintext on a TLS connection) */
	struct gw_chunkq ctq;		/* TLS: ciphertext to send */
	struct ssl_st *ssl;		/* NULL: plain socket */
	struct msghdr msg;
	struct iovec iov[GW_IOV_MAX];
	struct qipc_framer fr;
	uint8_t pass_held[QIPC_HDR_SIZE];	/* session pass-through: a header cut short */
	size_t pass_held_n;
	char peer[64];
	union {
		struct gw_client cl;
		struct gw_upstream up;
		struct gw_http http;
		struct gw_lis lis;
	};
	struct gw_conn *next_free;
};

/* worker init: kind's hooks, before a connection of that kind is allocated (ops: static) */
void gw_conn_set_ops(struct gw_worker *w, enum gw_conn_kind kind, const struct gw_conn_ops *ops);
/* one more segment of slots, while under max_conns; false when full or out of memory */
bool gw_conn_slab_grow(struct gw_worker *w);
/* a zeroed slot of kind for fd (owned by the slab; closed with gw_conn_close), or NULL
 * when the slab is full: the accept backpressure signal */
struct gw_conn *gw_conn_alloc(struct gw_worker *w, enum gw_conn_kind kind, int fd);
/* Mark c closing and queue its close for the loop (idempotent). Never frees or runs
 * another connection's handlers from here: safe to call from any handler. */
void gw_conn_close(struct gw_worker *w, struct gw_conn *c, const char *reason);
/* loop only: carry out the oldest queued close; false when none was queued */
bool gw_conn_close_one(struct gw_worker *w);
/* arm, pause (cancel) or resume c's multishot recv as c->is_recv_paused says */
void gw_conn_update_recv(struct gw_worker *w, struct gw_conn *c);
/* completions (loop only) */
void gw_conn_on_recv(struct gw_worker *w, struct gw_conn *c, struct io_uring_cqe *cqe);
void gw_conn_on_send(struct gw_worker *w, struct gw_conn *c, int res);
void gw_conn_on_poll(struct gw_worker *w, struct gw_conn *c, int res);
/* the last completion of one of c's SQEs was handled: frees the slot when it may */
void gw_conn_sqe_done(struct gw_worker *w, struct gw_conn *c);
/* bytes queued on c and not yet sent (both queues on a TLS connection) */
static inline uint64_t gw_tx_pending(const struct gw_conn *c)
{
	return c->txq.bytes + c->ctq.bytes;
}
/* plaintext received on c (after TLS, if any) to its kind's handler */
void gw_conn_deliver(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
/* append bytes to the tx queue (copied) and start a send if none is in flight */
int gw_tx_append(struct gw_worker *w, struct gw_conn *c, const void *p, size_t n);
/* append a whole chunk (ownership moves to the queue) */
void gw_tx_append_chunk(struct gw_worker *w, struct gw_conn *c, struct gw_chunk *ch);
void gw_tx_kick(struct gw_worker *w, struct gw_conn *c);
/*
 * Pass stream bytes p[0..n) from src (already fed to src->fr) on to dst unchanged, except
 * that a message header cut off at the end is held back until it is whole: a header never
 * leaves in pieces. dst may be NULL (the bytes are dropped, the held state still kept).
 */
void gw_tx_pass(struct gw_worker *w, struct gw_conn *dst, struct gw_conn *src,
		const uint8_t *p, size_t n);

#endif /* GW_GATEWAY_CONN_H */
