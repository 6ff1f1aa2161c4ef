/*
 * worker — one thread = one io_uring ring + its listeners, client sessions, backend
 * connections, pools and timers. All per-worker state lives in struct gw_worker; nothing
 * here is shared with another worker, so the data path takes no locks.
 *
 * Ownership rules (see docs/architecture.md):
 *  - a struct gw_conn is owned by the worker's slab; it is freed (slot reused, generation
 *    bumped) only once its close has been carried out AND no SQE for it is in flight;
 *  - gw_conn_close only marks a connection and queues it: the close itself (its kind's
 *    on_close, failing what it owed, cancelling its SQEs) runs from the loop once every
 *    completion handler of this turn has returned, never nested inside another
 *    connection's handler (Redis freeClientAsync, PgBouncer's justfree lists);
 *  - gw_pool_dispatch only marks a pool: queued requests are handed out from the loop too,
 *    so a backend connection is never given a request while its receive buffer is being
 *    parsed;
 *  - provided receive buffers are owned by the ring, lent to a recv completion, and given
 *    back before that completion's handler returns (bytes are copied out into chunks);
 *  - a struct gw_chunk belongs to exactly one queue at a time (a tx queue, or a request's
 *    buffered response); whoever unlinks it frees it or links it elsewhere;
 *  - a struct gw_req (one client message) has its holders written in it: its client's slot
 *    list (is_in_slots), a pool queue (state QUEUED) and the backend connection that owes
 *    its answer (backend != NULL). Whoever lets go of it calls gw_req_release, the one
 *    function that frees it, which does so only once nothing holds it any more.
 */
#ifndef GW_GATEWAY_WORKER_H
#define GW_GATEWAY_WORKER_H

#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>

#include "codec/qipc.h"
#include "gateway/chunk.h"
#include "gateway/config.h"
#include "pool/pool.h"

#define GW_IOV_MAX 64

/* ----------------------------------------------------------- connections */

enum gw_conn_kind {
	GW_CONN_FREE = 0,
	GW_CONN_LISTENER,
	GW_CONN_CLIENT,
	GW_CONN_BACKEND,
	GW_CONN_HTTP,		/* a stats endpoint request */
	GW_CONN_EVENT,		/* the login threads' eventfd (auth.c) */
};
#define GW_CONN_N_KINDS (GW_CONN_EVENT + 1)

enum gw_client_state {
	GW_CL_HANDSHAKE = 0,
	GW_CL_READY,
};

/*
 * A backend connection's states, changed only by gw_upstream_set_state (upstream.c), which
 * asserts the transition and keeps the backend's idle list and counts:
 *   CONNECTING -> HANDSHAKE -> IDLE <-> BUSY, and any state -> DOWN (closed, final).
 * Dedicated and session connections go HANDSHAKE -> BUSY and stay BUSY until DOWN.
 * BUSY with owed == NULL is draining: an abandoned answer is read and dropped.
 */
enum gw_up_state {
	GW_UP_DOWN = 0,		/* closed */
	GW_UP_CONNECTING,	/* connect SQE in flight */
	GW_UP_HANDSHAKE,	/* hello sent, waiting for the capability byte */
	GW_UP_IDLE,		/* ready for a sync request */
	GW_UP_BUSY,		/* owes the answer to `owed` (or drains one) */
};

struct ssl_st;
struct ssl_ctx_st;
struct gw_pool_rt;
struct gw_backend_rt;
struct gw_listener_rt;
struct gw_req;
struct gw_auth;

struct gw_client {
	enum gw_client_state state;
	uint8_t hello[1024];
	size_t hello_len;
	uint64_t handshake_deadline_ms;
	struct pool_link hs_link;	/* worker.handshaking while in HANDSHAKE */
	char user[128];
	char user_log[280];		/* user as a log value: escaped, quoted if need be */
	bool is_verifying;		/* its password is being checked on a login thread */
	uint8_t peer_family;		/* AF_INET / AF_INET6 / AF_UNIX: login failure limits */
	uint8_t peer_ip[16];
	const struct gw_user_cfg *ucfg;	/* NULL without auth */
	struct gw_listener_rt *listener;
	int capability;
	/* the request being received */
	struct gw_chunk *rx_msg;
	struct qipc_header rx_hdr;
	bool has_tried_stream;		/* looked for a connection to stream it to */
	bool is_rx_streaming;		/* its bytes go straight to stream_to */
	bool is_rx_discard;		/* refused while streaming: drop the rest */
	struct gw_conn *stream_to;
	uint32_t stream_gen;
	uint64_t msg_started_ms;	/* when the message being received began */
	struct pool_link rx_link;	/* worker.receiving while a message is incomplete */
	/* sync requests in arrival order; the head's answer is the next one to send */
	struct gw_req *slots_head, *slots_tail;
	uint32_t n_slots;
	uint64_t buffered_bytes;	/* answer bytes held in non-head slots */
	/* this client's messages waiting in pool queues, oldest first: only the oldest may
	 * be sent, so its messages reach backends in the order it wrote them */
	struct pool_link queued;
	/* bytes read but not parsed yet: max_pipeline was reached in the middle of a read */
	uint8_t *backlog;
	size_t backlog_len;
	struct pool_link backlog_link;	/* worker.backlogs while it may be parsed again */
	/* session mode: the client's own backend connection */
	struct gw_conn *session_up;
	uint32_t session_up_gen;
	struct gw_pool_rt *session_pool;
	uint64_t session_pending;	/* sync requests sent up and not answered yet */
	bool is_close_after_send;	/* a final error is queued: close once it is out */
	bool is_cut;			/* an answer was cut short: nothing more goes to it */
	uint64_t linger_deadline_ms;	/* closed then even if its last bytes are not out */
	struct pool_link linger_link;	/* worker.lingering while is_close_after_send */
	int client_capability;		/* what the client offered */
	/* async pinning: the backend connection that carried this client's last async */
	struct gw_conn *pin;
	uint32_t pin_gen;
	struct gw_pool_rt *pin_pool;
	uint64_t pin_epoch;
	uint64_t requests;
	uint64_t last_active_ms;
	/* since when its unsent answers have stayed above half of client_buffer_bytes with a
	 * backend paused for it (0: not stuck); limits.client_output_timeout_ms */
	uint64_t output_stuck_since_ms;
	bool is_compress;		/* large answers are compressed for this client */
};

enum gw_up_kind {
	GW_UPK_POOLED = 0,	/* one of a backend's warm, shared connections */
	GW_UPK_DEDICATED,	/* opened for one sync request, closed after its answer */
	GW_UPK_SESSION,		/* one client's own connection for the client's lifetime */
};

struct gw_upstream {
	enum gw_up_state state;
	enum gw_up_kind kind;
	struct gw_conn *client;		/* SESSION: the client it belongs to */
	uint32_t client_gen;
	struct pool_link extra_link;	/* worker.extra_ups (DEDICATED, SESSION) */
	uint64_t last_used_ms;		/* POOLED: last answer or health check */
	struct gw_backend_rt *be;
	struct gw_req *owed;		/* the request whose answer this connection owes */
	uint64_t query_deadline_ms;	/* 0: none */
	int capability;
	int offer_capability;		/* what the hello offers (a session: the client's) */
	bool is_paused_for_client;	/* recv paused: the owning client is not reading */
	bool has_reply_pending;		/* an error reply waits for a streaming message's end */
	int slot;			/* POOLED: index into be->slots; -1 otherwise */
	struct __kernel_timespec connect_ts;
	struct sockaddr_storage sa;
	socklen_t sa_len;
	/* an unsolicited message being skipped */
	bool is_skipping;
	bool has_hdr_pending;		/* an answer's header waits for its first body bytes */
	bool is_tx_locked;		/* a client message is streaming into it ... */
	struct gw_conn *lock_client;	/* ... from this client */
	uint32_t lock_client_gen;
	uint8_t skip_type;
	struct pool_link idle_link;	/* backend's idle list while IDLE */
};

/* a listening socket's accept state (listen.c) */
struct gw_lis {
	bool is_armed;			/* a multishot accept is in flight */
	bool is_cancel_sent;		/* ... and being cancelled (paused) */
	uint32_t backoff_ms;		/* after EMFILE and the like: doubles up to 1 s */
	uint64_t retry_at_ms;		/* not re-armed before this */
	uint64_t next_log_ms;		/* accept errors are logged once a second at most */
	uint64_t suppressed;		/* errors not logged since the last line */
};

struct gw_http {
	char req[2048];
	size_t len;
	bool is_done;		/* answered: close once sent */
	uint64_t deadline_ms;	/* closed then, answered or not (stats.timeout_ms) */
	struct pool_link link;	/* worker.http_conns, oldest first */
};

struct gw_conn;
struct gw_worker;
struct io_uring_cqe;

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
	uint64_t id;			/* for logs */
	bool is_closing;		/* gw_conn_close was called: nothing more is done for it */
	bool is_closed;			/* ... and the loop has carried the close out */
	struct gw_conn *close_next;	/* worker's close queue while closing && !closed */
	const char *close_reason;
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

/* --------------------------------------------------------------- requests */

enum gw_req_state {
	GW_REQ_NEW = 0,
	GW_REQ_QUEUED,
	GW_REQ_SENT,
	GW_REQ_DONE,
};

struct gw_req {
	struct gw_req *next_slot;	/* client's slot list (sync only) */
	bool is_in_slots;		/* held by its client's slot list */
	struct gw_conn *client;		/* NULL once the client has gone */
	uint32_t client_gen;
	struct pool_link client_link;	/* client's queued list while QUEUED */
	enum gw_req_state state;
	bool is_sync;
	bool is_dedicated;		/* runs on a connection of its own */
	bool is_health;			/* the gateway's own health check, no client */
	bool has_resp_started;		/* answer bytes already went to the client */
	struct gw_chunk *msg;		/* the request bytes until handed to a backend */
	struct gw_pool_rt *pool;
	struct pool_waiter waiter;	/* pool queue link while QUEUED */
	struct gw_chunkq resp;		/* buffered answer while not at the head */
	uint32_t timeout_ms;		/* query timeout (rule or pool), 0 none */
	uint64_t epoch;			/* client's pin epoch when dispatched */
	uint64_t t_start_us;
	struct gw_conn *backend;	/* SENT: the connection that owes its answer (a holder) */
	/* for the audit log */
	char user[32];
	char what[48];			/* function name or query prefix */
	const char *backend_name;
	uint64_t req_bytes, resp_bytes;
	bool is_qerror;			/* the backend answered with a q error */
	bool gw_error;			/* failed by the gateway (already audited) */
	bool is_streamed;		/* its bytes went straight through: nothing kept to retry */
	bool is_compressing;		/* the answer is held whole, to be compressed at its end */
	uint8_t retries;		/* idempotent pools: times resent after a backend died */
};

/* ------------------------------------------------------------------ pools */

/* Latency histogram: log buckets of microseconds, ~12% resolution, no samples kept. */
#define GW_HIST_BUCKETS 512
struct gw_hist {
	uint64_t counts[GW_HIST_BUCKETS];
	uint64_t total;
	uint64_t max_us;
};

void gw_hist_add(struct gw_hist *h, uint64_t us);
uint64_t gw_hist_quantile(const struct gw_hist *h, double q);

/* One configured connection of a backend; the gw_conn behind it changes on reconnect. */
struct gw_up_slot {
	struct gw_conn *conn;		/* NULL while down */
	uint32_t failures;		/* consecutive failed attempts (backoff) */
	uint64_t retry_at_ms;		/* next attempt while down; 0 = now */
	bool is_given_up;		/* reconnect.attempts exhausted */
	bool is_cap_fallback;		/* the last hello offering 6 was closed: offer 3 next */
};

struct gw_backend_rt {
	const struct gw_backend_cfg *cfg;
	bool is_retired;		/* removed or changed by a reload: closes as it frees */
	struct pool_link retired_link;	/* worker.retired (kept until the worker exits) */
	struct gw_pool_rt *pool;
	struct pool_backend sel;	/* what the selector sees */
	struct gw_up_slot *slots;	/* cfg->connections entries */
	/* session pools: connection failures in a row and when to try this backend again */
	uint32_t session_failures;
	uint64_t session_retry_at_ms;
	struct ssl_ctx_st *ssl_ctx;	/* TLS to this backend, or NULL */
	struct pool_link idle;		/* idle connections */
	uint64_t requests, errors, reconnects, bytes_in, bytes_out;
	bool was_up;
};

struct gw_pool_rt {
	const struct gw_pool_cfg *cfg;
	bool is_retired;
	struct pool_link retired_link;
	struct gw_backend_rt **backends;	/* each allocated alone: connections point at them */
	struct pool_backend **sel_view;	/* pointers into backends[].sel for pool_pick */
	size_t n_backends;
	struct pool_selector selector;
	struct pool_queue queue;
	uint64_t requests, errors, queue_full, queue_timeouts, timeouts, dropped_unsolicited;
	uint64_t unsolicited_closes;	/* connections closed for an answer nobody was owed */
	uint64_t health_failures;
	uint32_t queued_async;		/* queued messages that need no free connection:
					 * async ones, and dedicated syncs */
	uint32_t n_dedicated;		/* dedicated connections open now */
	uint32_t n_sessions;		/* session connections open now */
	bool is_started;		/* warm connections opened (lazy pools start on demand) */
	struct gw_hist latency;		/* request in -> answer complete, answered requests */
	struct pool_link dispatch_link;	/* worker.dispatches while marked for dispatch */
};

struct gw_listener_rt {
	const struct gw_listener_cfg *cfg;
	bool is_retired;
	struct pool_link retired_link;
	struct ssl_ctx_st *ssl_ctx;	/* a TLS listener's server context, or NULL */
	struct gw_pool_rt *pool;
	struct gw_conn *conn;
	uint64_t clients, accepted;
};

/* ------------------------------------------------------------------ worker */

struct gw_worker {
	int id;
	struct io_uring ring;
	const struct gw_config *cfg;
	/* provided receive buffers */
	struct io_uring_buf_ring *br;
	uint8_t *buf_mem;
	uint32_t buf_count, buf_size;
	uint16_t bgid;
	/* connection slab: segments of GW_SLAB_SEG slots, added on demand up to max_conns
	 * (recomputed by a reload), never moved, so connection pointers stay valid */
	struct gw_conn **segs;
	uint32_t n_segs;
	uint32_t n_conns;		/* slots allocated */
	uint32_t max_conns;
	struct gw_conn *free_list;
	const struct gw_conn_ops *conn_ops[GW_CONN_N_KINDS];
	/* work the loop carries out after this turn's completion handlers (see above) */
	struct gw_conn *close_head, *close_tail;
	struct pool_link dispatches;	/* pools marked for dispatch */
	struct pool_link backlogs;	/* clients whose backlog may be parsed again */
	struct pool_link receiving;	/* clients in the middle of a message, oldest first */
	struct pool_link lingering;	/* clients flushing their last bytes before a close */
	/* limits.max_buffered_bytes spent: clients are not read, except the one finisher (a
	 * message half in, with nothing queued that could free memory, must be able to end) */
	bool is_budget_paused;
	struct gw_conn *budget_finisher;
	uint32_t budget_finisher_gen;
	uint64_t budget_pauses;
	/* completions taken off the ring and not handled yet (see gw_sqe) */
	struct io_uring_cqe *cqes;
	size_t n_cqes, cqe_cap;
	uint64_t next_conn_id;
	uint32_t n_clients;
	/* pools and listeners; pools (and backends) are allocated one by one so that the
	 * pointers requests and connections hold survive a configuration reload */
	struct gw_pool_rt **pools;
	size_t n_pools;
	struct gw_listener_rt **listeners;
	size_t n_listeners;
	struct pool_link handshaking;
	struct pool_link extra_ups;	/* dedicated and session backend connections */
	/* runtime objects a reload removed: still referenced by connections or requests,
	 * freed when the worker exits */
	struct pool_link retired_pools, retired_backends, retired_listeners;
	const struct gw_config *pending_cfg;	/* posted by main on SIGHUP (__atomic) */
	struct gw_auth *auth;		/* logins (auth.c), owned by the worker */
	struct gw_conn *stats_conn;	/* the stats endpoint's listener (worker 0) */
	struct pool_link http_conns;	/* its open connections, oldest first */
	uint32_t n_http;
	/* the stats endpoint (worker 0) sums every worker's figures: each publishes a JSON
	 * snapshot of its own under snap_mu a few times a second */
	struct gw_worker *const *peers;
	int n_peers;
	pthread_mutex_t snap_mu;
	char *snap_json;
	uint64_t next_snap_ms;
	int audit_fd;			/* -1: no audit log */
	char *audit_buf;
	size_t audit_len, audit_cap;
	/* loop control */
	volatile int *stop_flag;
	bool is_stopping;
	uint64_t now_ms;
	uint64_t next_tick_ms;
	uint64_t next_idle_scan_ms;
	uint64_t stop_deadline_ms;
	uint64_t rng;
	/* counters */
	uint64_t cq_overflows, enobufs, protocol_errors, slow_clients, sq_full, login_throttled;
	bool is_final_flush;		/* shutdown: last errors are being written out */
};

#define GW_SLAB_SEG 256

static inline struct gw_conn *gw_conn_at(const struct gw_worker *w, uint32_t idx)
{
	return &w->segs[idx / GW_SLAB_SEG][idx % GW_SLAB_SEG];
}

/* user_data: op in the top 8 bits, generation in the next 24, slot index in the low 32 */
enum gw_op {
	GW_OP_NONE = 0,
	GW_OP_ACCEPT,
	GW_OP_RECV,
	GW_OP_SEND,
	GW_OP_CONNECT,
	GW_OP_TIMEOUT,
	GW_OP_CANCEL,
	GW_OP_POLL,
	GW_OP_READ,
};

static inline uint64_t gw_ud(enum gw_op op, const struct gw_conn *c)
{
	return ((uint64_t)op << 56) | ((uint64_t)(c->gen & 0xffffff) << 32) | c->idx;
}

/* runtime.c — pools, backends and listeners made from the config, and reloads */
int gw_runtime_init(struct gw_worker *w);
void gw_runtime_free(struct gw_worker *w);
/* apply a new validated config (worker thread); the old one must stay alive */
void gw_runtime_reload(struct gw_worker *w, const struct gw_config *cfg);

/* worker.c */
/* peers: every worker (this one included), for the merged stats; may be NULL */
int gw_worker_init(struct gw_worker *w, const struct gw_config *cfg, int id,
		   volatile int *stop_flag, struct gw_worker *const *peers, int n_peers);
int gw_worker_run(struct gw_worker *w);
/* One turn of the loop: submit, wait at most max_wait_ms (less when a tick is due), handle
 * completions, then the queued closes and dispatches, and the tick when due. 0 or -errno.
 * gw_worker_run is these turns plus the SIGTERM sequence; fuzz targets drive them directly. */
int gw_worker_turn(struct gw_worker *w, uint64_t max_wait_ms);
void gw_worker_destroy(struct gw_worker *w);
uint64_t gw_now_ms(void);
uint64_t gw_now_us(void);

/* the most slots cfg needs: clients, backend, dedicated and session connections */
uint32_t gw_worker_slots_needed(const struct gw_config *cfg);
struct io_uring_sqe *gw_sqe(struct gw_worker *w);
/* give provided buffer bid back to the ring (published at once) */
void gw_buf_return(struct gw_worker *w, unsigned bid);

/* conn.c — the connection object */
void gw_conn_set_ops(struct gw_worker *w, enum gw_conn_kind kind, const struct gw_conn_ops *ops);
/* one more segment of slots, while under max_conns */
bool gw_conn_slab_grow(struct gw_worker *w);
struct gw_conn *gw_conn_alloc(struct gw_worker *w, enum gw_conn_kind kind, int fd);
/* Mark c closing and queue its close for the loop (idempotent). Never frees or runs
 * another connection's handlers from here: safe to call from any handler. */
void gw_conn_close(struct gw_worker *w, struct gw_conn *c, const char *reason);
/* loop only: carry out the oldest queued close; false when none was queued */
bool gw_conn_close_one(struct gw_worker *w);
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

extern const struct gw_conn_ops gw_listen_conn_ops;
extern const struct gw_conn_ops gw_client_conn_ops;
extern const struct gw_conn_ops gw_upstream_conn_ops;
extern const struct gw_conn_ops gw_stats_conn_ops;
extern const struct gw_conn_ops gw_auth_conn_ops;

/* listen.c */
/* bind and listen on a, arm a multishot accept; *out is the listener connection */
int gw_listen_bind(struct gw_worker *w, const struct gw_addr *a, int backlog,
		   struct gw_conn **out);
int gw_listen_open(struct gw_worker *w, struct gw_listener_rt *l);
void gw_listen_arm(struct gw_worker *w, struct gw_conn *c);
void gw_listen_on_accept(struct gw_worker *w, struct gw_conn *lc, struct io_uring_cqe *cqe);
/* re-arm listeners whose backoff ended, or (below max_clients) that were paused */
void gw_listen_tick(struct gw_worker *w);
int gw_sockaddr_from(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len);

/* session.c — client side */
void gw_client_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_client_on_close(struct gw_worker *w, struct gw_conn *c);
void gw_client_on_sent(struct gw_worker *w, struct gw_conn *c);
void gw_client_tick(struct gw_worker *w);
/* session mode: the client's backend connection is ready (capability) or gone */
void gw_session_ready(struct gw_worker *w, struct gw_conn *c, int capability);
/* is_mid_message: part of a backend message already went to the client (it is closed) */
void gw_session_lost(struct gw_worker *w, struct gw_conn *c, const char *backend,
		     bool is_mid_message);
/* parse the bytes a client had left over when it reached max_pipeline (loop only) */
void gw_client_run_backlog(struct gw_worker *w, struct gw_conn *c);
/* the password check of c (auth.c) ended: carry its login on, or refuse it */
void gw_client_auth_done(struct gw_worker *w, struct gw_conn *c, bool is_ok);
/* shutdown: every sync request still owed to a client gets a q error with text */
void gw_client_fail_all(struct gw_worker *w, const char *text);
/* re-evaluate whether the client may be read (pipeline, buffered answers, streaming) */
void gw_client_update_recv(struct gw_worker *w, struct gw_conn *c);
/*
 * Answer bytes for req (from its backend, which has cleared up.owed when is_end): pre[0..pre_n)
 * then p[0..n), queued together so a header travels with the bytes after it; is_end marks
 * the last byte of the answer, which ends the backend's hold on r (so r may be freed).
 */
void gw_req_answer_bytes(struct gw_worker *w, struct gw_req *r, const uint8_t *pre,
			 size_t pre_n, const uint8_t *p, size_t n, bool is_end);
/* complete req with a gateway error "qgate: ..."; whoever held it lets go first */
void gw_req_fail(struct gw_worker *w, struct gw_req *r, const char *text);
/* the one function that frees a request: does so once nothing holds it (see above) */
void gw_req_release(struct gw_req *r);
/* something changed for p's queue: mark it; the loop calls gw_pool_dispatch_now later */
void gw_pool_dispatch(struct gw_worker *w, struct gw_pool_rt *p);
/* hand queued requests to free connections, oldest first, each client in its order */
void gw_pool_dispatch_now(struct gw_worker *w, struct gw_pool_rt *p);
/* idempotent pools: put r (whose backend died) back at the head of its pool's queue.
 * Returns false when it cannot be retried (the caller fails it). */
bool gw_req_retry(struct gw_worker *w, struct gw_req *r);

/* upstream.c — backend side */
void gw_upstream_start(struct gw_worker *w, struct gw_backend_rt *be, int slot);
/* open every warm connection of a pool (at start, or on first use for lazy pools) */
void gw_pool_start(struct gw_worker *w, struct gw_pool_rt *p);
/* open a connection for one sync request; r is SENT on it (answer or error will follow) */
int gw_upstream_open_dedicated(struct gw_worker *w, struct gw_backend_rt *be, struct gw_req *r);
/* open the session connection of client c; gw_session_ready/-failed report back */
int gw_upstream_open_session(struct gw_worker *w, struct gw_backend_rt *be, struct gw_conn *c,
			     const uint8_t *cred, size_t cred_len, int capability);
/* the one place a backend connection changes state (asserts the transition is legal) */
void gw_upstream_set_state(struct gw_worker *w, struct gw_conn *c, enum gw_up_state to);
/* c may take a sync request now: idle, nothing streaming in, no stray bytes read */
bool gw_upstream_is_free(const struct gw_conn *c);
/* stop reading c: its client is not reading the answer fast enough */
void gw_upstream_pause(struct gw_worker *w, struct gw_conn *c);
/* answer a call the backend made into a shared connection with a q error */
void gw_upstream_reply_refused_call(struct gw_worker *w, struct gw_conn *c);
void gw_upstream_on_connect(struct gw_worker *w, struct gw_conn *c, int res);
void gw_upstream_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_upstream_on_close(struct gw_worker *w, struct gw_conn *c);
void gw_upstream_tick(struct gw_worker *w);
/* send req on c (free, for a sync); takes the request's bytes */
void gw_upstream_send(struct gw_worker *w, struct gw_conn *c, struct gw_req *r);
void gw_upstream_resume(struct gw_worker *w, struct gw_conn *c);
/* r (SENT on c) was failed by the gateway: c lets go of r, and drains the answer */
void gw_upstream_abandon(struct gw_worker *w, struct gw_conn *c, struct gw_req *r);
void gw_upstream_on_sent(struct gw_worker *w, struct gw_conn *c);

/* tls.c — OpenSSL over memory BIOs (see tls.c) */
/* a listener's server context / a backend's client context (NULL on error, logged) */
void *gw_tls_server_ctx(const struct gw_listener_cfg *l);
void *gw_tls_client_ctx(const struct gw_backend_cfg *b);
/* --check: load what t names as a context would; the failing field ("cert_file", "key_file",
 * "ciphers", ...) with a reason in why, or NULL when all is well (main thread) */
const char *gw_tls_check(const struct gw_tls_cfg *t, bool is_server, char *why, size_t n);
void gw_tls_ctx_free(void *ctx);
int gw_tls_accept(struct gw_conn *c, void *ssl_ctx);
int gw_tls_connect(struct gw_worker *w, struct gw_conn *c, void *ssl_ctx, const char *host,
		   bool is_verify);
void gw_tls_encrypt(struct gw_conn *c);
void gw_tls_on_recv(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_tls_free(struct gw_conn *c);

/* admin.c: .qgate.* answered by the gateway for admin users (see admin.c) */
bool gw_admin_call(struct gw_worker *w, struct gw_conn *c, const uint8_t *msg, size_t len,
		   uint8_t **out, size_t *out_len, const char **err, char *what, size_t what_n);

/* audit.c */
int gw_audit_open(struct gw_worker *w);
void gw_audit_flush(struct gw_worker *w);
void gw_audit_close(struct gw_worker *w);
void gw_audit_req(struct gw_worker *w, const struct gw_req *r, const char *outcome);

/* stats.c */
struct gw_conn_counts {
	unsigned idle, busy, connecting;
};
/* a pooled backend's connections by state, and its state as /stats names it */
struct gw_conn_counts gw_backend_counts(const struct gw_backend_rt *be);
const char *gw_backend_state(const struct gw_backend_rt *be);
int gw_stats_open(struct gw_worker *w);
/* publish this worker's figures for worker 0's stats endpoint (worker thread) */
void gw_stats_publish(struct gw_worker *w);
void gw_stats_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
/* a stats connection accepted on fd (the oldest gives way at stats.max_connections) */
void gw_stats_accept(struct gw_worker *w, int fd);
void gw_stats_on_close(struct gw_worker *w, struct gw_conn *c);
/* stats connections past stats.timeout_ms are closed */
void gw_stats_tick(struct gw_worker *w);

/* router.c */
struct gw_route {
	char what[48];			/* function name or query prefix (for the audit log) */
	struct gw_pool_rt *pool;
	uint32_t timeout_ms;
	bool is_dedicated;
	bool is_denied;
};
void gw_route(struct gw_worker *w, struct gw_conn *client, const uint8_t *msg, size_t len,
	      struct gw_route *out);

#endif /* GW_GATEWAY_WORKER_H */
