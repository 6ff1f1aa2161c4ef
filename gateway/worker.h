/*
 * worker — one thread = one io_uring ring + its listeners, client sessions, backend
 * connections, pools and timers (worker.c: the loop). All per-worker state lives in struct
 * gw_worker; nothing here is shared with another worker (but what snap_mu guards, and
 * pending_cfg posted by main), so the data path takes no locks.
 *
 * The loop: submit and wait, dispatch each completion by op to the connection layer
 * (conn.h), then the deferred work handlers only queued — closes first, then pool
 * dispatches (so a backend connection is never given a request while its receive buffer is
 * being parsed), then clients' backlogs — then the tick when due.
 */
#ifndef GW_GATEWAY_WORKER_H
#define GW_GATEWAY_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <liburing.h>

#include "gateway/conn.h"
#include "pool/pool.h"

struct gw_auth;
struct gw_resolver;
struct gw_client_row;
struct gw_config;
struct gw_listener_rt;
struct gw_pool_rt;

struct gw_worker {
	int id;
	struct io_uring ring;
	const struct gw_config *cfg;
	/* provided receive buffers */
	struct io_uring_buf_ring *br;
	uint8_t *buf_mem;
	uint32_t buf_count, buf_size;
	uint16_t bgid;
	/* receive buffers lent to tx queues (gw_buf_lend): lent chunks per buffer id, buffers
	 * with any (at most half the ring, so the others are never starved of buffers), the
	 * buffer whose completion is being delivered (-1: none, or TLS plaintext) */
	uint16_t *buf_lent;
	uint32_t n_bufs_lent;
	int rx_bid;
	bool is_buf_ring_gone;		/* destroy: the ring is gone, lent chunks return nothing */
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
	struct gw_resolver *resolver;	/* backend names (resolve.c), owned by the worker */
	struct gw_conn *stats_conn;	/* the stats endpoint's listener (worker 0) */
	struct pool_link http_conns;	/* its open connections, oldest first */
	uint32_t n_http;
	/* the stats endpoint (worker 0) and the admin tables (any worker) show every worker's
	 * figures: each publishes a JSON snapshot of its own, and a copy of its client list,
	 * under snap_mu four times a second (stats.c). Other workers only ever read them,
	 * under snap_mu; the spare rows are the publisher's own (filled, then swapped in). */
	struct gw_worker *const *peers;
	int n_peers;
	pthread_mutex_t snap_mu;
	char *snap_json;
	struct gw_client_row *snap_clients;
	size_t n_snap_clients, cap_snap_clients;
	struct gw_client_row *spare_clients;
	size_t cap_spare_clients;
	uint64_t next_snap_ms;
	/* other workers to wake (a bit each): a max_inflight slot they wait for came free;
	 * sent by the loop after this turn's handlers (gw_worker_turn) */
	uint64_t wake_mask;
	int wake_fd;			/* its ring's fd for peers' msg_ring, -1: none (__atomic) */
	uint64_t wakes_received;	/* wakeups from other workers (stats) */
	uint64_t admin_gen;		/* the admin state's generation last applied (actions.h;
					 * __atomic: other workers wait for it) */
	int audit_fd;			/* -1: no audit log */
	char *audit_buf;
	size_t audit_len, audit_cap;
	/* loop control */
	volatile int *stop_flag;
	bool is_stopping;
	uint64_t now_ms;
	uint64_t next_tick_ms;
	/* the earliest deadline the tick's scans found (gw_worker_due): the loop sleeps until
	 * then when nothing happens, instead of ticking every 10 ms */
	uint64_t next_due_ms;
	uint64_t next_idle_scan_ms;
	uint64_t stop_deadline_ms;
	uint64_t rng;
	/* heartbeat for the main thread (its watchdog and status line, notify.h): the loop
	 * writes these every tick (__atomic), main only reads them */
	uint64_t alive_ms;		/* now_ms of the last tick */
	uint32_t alive_clients, alive_backends_up, alive_backends;
	/* sends submitted this turn that are expected to complete at once, inside the enter
	 * that submits them (conn.c, gw_tx_kick): the turn's wait asks for one completion more
	 * per such send, so that their completions do not end the wait on their own */
	uint32_t quiet_sends;
	/* counters; ring_enters: io_uring_enter calls the loop made (submits and waits), so
	 * that kernel crossings per request can be measured (docs/performance.md) */
	uint64_t ring_enters, loop_turns;
	uint64_t bytes_lent;		/* answer bytes sent from receive buffers, uncopied */
	uint64_t cq_overflows, enobufs, protocol_errors, slow_clients, sq_full, login_throttled;
	bool is_final_flush;		/* shutdown: last errors are being written out */
};

#define GW_SLAB_SEG 256
/* the tick's period while anything happens (a deadline is seen this late at worst) */
#define GW_TICK_MS 10

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
	GW_OP_WAKE,		/* another worker freed a max_inflight slot (msg_ring) */
	GW_OP_MSG_SENT,		/* our msg_ring to another worker (failed: it reports) */
	GW_OP_POKE,		/* main: a reload or a stop was posted (gw_worker_poke) */
};

static inline uint64_t gw_ud(enum gw_op op, const struct gw_conn *c)
{
	return ((uint64_t)op << 56) | ((uint64_t)(c->gen & 0xffffff) << 32) | c->idx;
}

/* peers: every worker (this one included), for the merged stats; may be NULL */
int gw_worker_init(struct gw_worker *w, const struct gw_config *cfg, int id,
		   volatile int *stop_flag, struct gw_worker *const *peers, int n_peers);
int gw_worker_run(struct gw_worker *w);
/* One turn of the loop: submit, wait at most max_wait_ms (less when a tick is due), handle
 * completions, then the queued closes and dispatches, and the tick when due (TICK_MS after
 * a turn that handled anything, else the next deadline gw_worker_due noted). 0 or -errno.
 * gw_worker_run is these turns plus the SIGTERM sequence; fuzz targets drive them directly. */
int gw_worker_turn(struct gw_worker *w, uint64_t max_wait_ms);
void gw_worker_destroy(struct gw_worker *w);
/* CLOCK_MONOTONIC in ms / µs; any thread */
uint64_t gw_now_ms(void);
uint64_t gw_now_us(void);

/*
 * The tick's scans note here each deadline they are waiting for (a timeout, a health
 * check, a reconnect, a retry): when a turn has nothing to handle the loop sleeps until
 * the earliest, not TICK_MS. A turn that handles anything ticks within TICK_MS as before,
 * so a deadline that an event sets is seen by the next tick's scan.
 */
static inline void gw_worker_due(struct gw_worker *w, uint64_t at_ms)
{
	if (at_ms < w->next_due_ms)
		w->next_due_ms = at_ms;
}
/* Wake w's loop out of its wait (main: a reload or a stop was posted). Any thread. */
void gw_worker_poke(struct gw_worker *w);
/* main, once the workers are joined: the ring gw_worker_poke used is closed */
void gw_worker_poke_done(void);

/* the most slots cfg needs: clients, backend, dedicated and session connections */
uint32_t gw_worker_slots_needed(const struct gw_config *cfg);
/* A submission entry, never NULL (aborts if the queue stays full). When the queue is full
 * it submits, and may move completions off the ring into w->cqes for the loop to handle
 * later; it never runs a completion handler. Worker thread only. */
struct io_uring_sqe *gw_sqe(struct gw_worker *w);
/* whether io_uring_submit_and_wait* for wait_nr completions enters the kernel (counted) */
bool gw_ring_will_enter(struct io_uring *ring, unsigned wait_nr);
/* give provided buffer bid back to the ring (published at once) */
void gw_buf_return(struct gw_worker *w, unsigned bid);
/*
 * A lent chunk over p[0..n) of the receive buffer being delivered now (w->rx_bid), for a tx
 * queue: the buffer goes back to the ring once the last chunk lent from it is freed (sent,
 * or its queue dropped), instead of when its completion handler returns. NULL (the caller
 * copies) when p is not in that buffer (TLS plaintext, or no recv being delivered) or when
 * half the ring is lent already.
 */
struct gw_chunk *gw_buf_lend(struct gw_worker *w, const uint8_t *p, size_t n);
/* Send the wakeups of w->wake_mask now rather than after this turn (an admin action that
 * waits for the other workers, actions.c). Worker thread only; runs no completion handler. */
void gw_worker_wake_now(struct gw_worker *w);

#endif /* GW_GATEWAY_WORKER_H */
