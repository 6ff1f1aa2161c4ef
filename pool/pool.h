/*
 * pool — the checkout authority: which backend connection a request goes to, when, and
 * what happens when a connection comes, frees up or goes. No sockets, no io_uring, no
 * clock (time is a parameter), no allocation: the caller owns every struct passed in and
 * embeds the records (pool_conn in its connection, pool_req in its request, pool_client
 * in its client). The API returns decisions; the caller carries them out.
 *
 * Records and their owners:
 *  - struct pool: a pool's backends, its waiter queue (FIFO, bounded) and its selector;
 *  - struct pool_be: one backend: its connections by state (lists), its reconnect slots,
 *    and a pointer to the counters it shares with the other workers (max_inflight);
 *  - struct pool_conn: one backend connection; pool_conn_set_state is the only function
 *    that changes its state, and it asserts the transition is legal;
 *  - struct pool_req: one request: queued in a pool and in its client's order, or sent;
 *  - struct pool_client: one client's order (its queued requests, oldest first, across
 *    pools) and its async pin.
 *
 * Connection states (all kinds):  CONNECTING -> HANDSHAKE -> IDLE (pooled) | BUSY (others)
 *   IDLE -> BUSY (checked out) -> IDLE (answered) | DRAINING (its request was given up:
 *   the answer is read and dropped) -> IDLE; any state but DOWN -> DOWN (final).
 * A pooled connection in BUSY or DRAINING holds one of its backend's max_inflight slots,
 * shared by every worker: a q process runs one request at a time, and a request that
 * cannot have a slot waits in the pool's queue, where timeouts and queue.max apply, not
 * inside a busy q.
 *
 * Thread: each worker has its own pools, backends and connections; only struct
 * pool_shared is shared, through atomics.
 */
#ifndef GW_POOL_POOL_H
#define GW_POOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/limit.h"
#include "pool/list.h"
#include "pool/select.h"

/* ------------------------------------------------------------ shared counters */

/* records (pool_be) that may count on one backend's shared counters for fairness */
#define POOL_SHARED_REGS 64
/* how long a freed slot is kept for the waiter whose turn it is */
#define POOL_TURN_MS 50

/* pool_shared.inflight packs two counts: requests in flight (low bits) and, above
 * POOL_HEAVY_SHIFT, how many of them are heavy calls (auto: nothing else joins those) */
#define POOL_HEAVY_SHIFT 20
#define POOL_INFLIGHT_MASK ((1u << POOL_HEAVY_SHIFT) - 1)

/*
 * One backend as every worker sees it (found by its address, made by the process once).
 * Every pool_be record of it (one per worker and pool naming it) registers here. All fields
 * are read and written with __atomic builtins only, except lim, which only the holder of
 * lock touches.
 *
 * Fairness: a slot given back while other records have syncs waiting is kept for the next
 * of them after the giver (round robin) for POOL_TURN_MS, and that record's worker is woken;
 * so neither a busy worker nor a busy pool takes every slot it frees for itself.
 *
 * Auto (max_inflight "auto"): max_inflight is the limiter's limit (limit.h), moved by the
 * answer times every worker reports (pool_answer_time); while a heavy call runs there, the
 * backend takes nothing else (its effective limit is 1); cost_us sums the expected costs of
 * what runs there (the expected wait least_outstanding places by).
 */
struct pool_shared {
	uint32_t inflight;	/* pooled requests in flight on it, all workers (+ heavy ones) */
	uint32_t max_inflight;	/* >= 1: fixed, or the limiter's limit (auto) */
	uint8_t is_auto;	/* max_inflight follows the limiter */
	uint64_t cost_us;	/* expected costs of the requests in flight, summed */
	uint32_t min_rtt_us;	/* the limiter's figures, copied out for readers (stats) */
	uint32_t short_rtt_us;
	uint32_t lock;		/* the limiter's lock: samples try it, and skip when taken */
	struct pool_limit lim;	/* under lock */
	uint64_t regs;		/* bit r: registration r is in use */
	uint64_t waiters;	/* bit r: registration r has syncs waiting for a slot */
	uint16_t reg_worker[POOL_SHARED_REGS];	/* registration r's worker (its wakeup) */
	int32_t turn;		/* the registration a freed slot is kept for; -1: none */
	uint64_t turn_until_ms;	/* ... until then */
};

/* max_inflight 0: "auto", its limit learned between 1 and ceiling (0: the default) */
void pool_shared_init(struct pool_shared *s, uint32_t max_inflight, uint32_t ceiling);
/* A (re)configuration: fixed max_inflight, or 0 for auto up to ceiling. An auto backend
 * that stays auto keeps what its limiter learned (clamped to a new ceiling). */
void pool_shared_set_max(struct pool_shared *s, uint32_t max_inflight, uint32_t ceiling);
uint32_t pool_shared_inflight(const struct pool_shared *s);
/* heavy calls running there now */
uint32_t pool_shared_heavy(const struct pool_shared *s);
/* the limit in force now */
uint32_t pool_shared_max(const struct pool_shared *s);
bool pool_shared_is_auto(const struct pool_shared *s);

/* --------------------------------------------------------------- connections */

enum pool_conn_kind {
	POOL_CONN_POOLED = 0,	/* one of a backend's warm shared connections (a slot) */
	POOL_CONN_DEDICATED,	/* opened for one request, closed after its answer */
	POOL_CONN_SESSION,	/* one client's own connection */
};

enum pool_conn_state {
	POOL_DOWN = 0,
	POOL_CONNECTING,
	POOL_HANDSHAKE,
	POOL_IDLE,
	POOL_BUSY,
	POOL_DRAINING,
	POOL_NSTATES
};

const char *pool_state_name(enum pool_conn_state s);

/* Why a connection takes nothing new for now (set by its owner, pool_conn_hold). */
enum pool_hold {
	POOL_HOLD_STREAM = 1,	/* a client message is streaming into it */
	POOL_HOLD_DIRTY = 2,	/* a message nobody asked for is half-read on it */
	POOL_HOLD_CLOSING = 4,	/* its close is queued */
};

struct pool_be;

struct pool_conn {
	enum pool_conn_state state;
	enum pool_conn_kind kind;
	uint8_t holds;		/* enum pool_hold bits */
	bool holds_slot;	/* counted in be->shared->inflight */
	bool is_heavy;		/* its request is a heavy call (counted as one there) */
	uint32_t cost_us;	/* its request's expected cost, added to be->shared->cost_us */
	uint32_t depth;		/* requests in flight on its backend when it was checked out */
	int slot;		/* POOLED: index into be->slots; -1 otherwise */
	uint32_t serial;	/* a new one each time the record is reused (for pins) */
	struct pool_be *be;
	void *owner;		/* the caller's connection object; never dereferenced here */
	struct pool_link link;	/* be->conns[state] (POOLED only) */
};

/*
 * One configured connection of a backend: the record of its current connection (reused
 * by the next one, so a pin to it never dangles) and reconnect state that outlives it.
 */
struct pool_slot {
	struct pool_conn rec;	/* state DOWN while no connection is open */
	uint32_t failures;	/* consecutive failed attempts */
	uint64_t retry_at_ms;	/* next attempt while down; 0 = at once */
	bool is_given_up;	/* reconnect attempts used up */
	bool is_alt_hello;	/* the owner's: offer its other hello next (after a refusal) */
	bool is_spare;		/* opened only on demand (pool_be_wants_spare), beyond the
				 * configured warm ones; its absence is no failure */
};

struct pool;

struct pool_be {
	struct pool *pool;
	int weight;		/* >= 1 */
	struct pool_shared *shared;	/* never NULL: own_shared unless one is given */
	struct pool_shared own_shared;
	int reg;		/* its registration in shared (-1: none, beyond 64) */
	bool is_retired;	/* pool_be_retire was called: takes nothing new */
	bool is_disabled;	/* an admin's disable (drain): nothing new is sent to it, what
				 * runs there finishes; it keeps its connections and hope */
	uint64_t key;		/* a hash of its name: user affinity (rendezvous) */
	struct pool_link conns[POOL_NSTATES];	/* pooled connections by state (DOWN unused) */
	uint32_t n[POOL_NSTATES];	/* ... and how many */
	uint32_t n_free;	/* IDLE with no hold: can take a sync now (if a slot is free) */
	uint32_t n_extra;	/* dedicated and session connections open */
	struct pool_slot *slots;
	uint32_t n_slots;
	/* session pools: failed session connections in a row, and when to try it again */
	uint32_t session_failures;
	uint64_t session_retry_at_ms;
	int64_t rr_current;	/* smooth weighted round robin (select.c) */
};

/* shared: the process-wide counters of this backend, or NULL for private ones; slots
 * arrive zeroed (their records start DOWN). It registers in shared (pool_be_retire ends it). */
void pool_be_init(struct pool_be *be, struct pool *p, int weight, struct pool_shared *shared,
		  uint32_t max_inflight, struct pool_slot *slots, uint32_t n_slots);
/* The record takes no new requests any more (removed by a reload, or its worker exits):
 * its registration ends, so no slot is kept for it. Idempotent. */
void pool_be_retire(struct pool_be *be);
/* connections up (IDLE, BUSY or DRAINING pooled ones) */
uint32_t pool_be_up(const struct pool_be *be);
/* its load for the strategies: requests in flight (all workers) plus dedicated and
 * session connections of this worker */
uint32_t pool_be_load(const struct pool_be *be);
/* the expected wait of a request sent to it now, in µs: the expected costs of what it runs
 * (all workers), and POOL_COST_UNKNOWN_US per dedicated or session connection of this
 * worker (least_outstanding compares it between auto backends) */
uint64_t pool_be_wait_us(const struct pool_be *be);
/* this worker's share of the load: its requests in flight there, and its dedicated and
 * session connections (what a worker reports; the workers' figures add up) */
uint32_t pool_be_outstanding(const struct pool_be *be);
/* a sync request could go to it now: a free connection and a free max_inflight slot */
bool pool_be_can_take(const struct pool_be *be);
/* none of its connections is up, connecting or to be retried (spare slots aside) */
bool pool_be_is_hopeless(const struct pool_be *be);
/*
 * Auto max_inflight: one more connection to be would be used now. Syncs of its pool wait
 * for a connection, be has some up but none free, its learned limit has room above every pooled
 * connection it has open or opening and above what runs there (all workers), and no heavy
 * call runs there. The caller then opens one of its spare slots.
 */
bool pool_be_wants_spare(const struct pool_be *be);
/*
 * An admin disables (drains) or enables the backend: while disabled it is given no new
 * request, sync or async, pinned or not (a client's pin to one of its connections is
 * dropped, as when that connection closes), no new session, and is no affinity home; what
 * it runs finishes. It still counts as hope, so a pool whose backends are all disabled
 * queues (queue.max and queue.timeout_ms apply) rather than failing. Returns true when the
 * state changed (on enable the caller dispatches the pool).
 */
bool pool_be_set_disabled(struct pool_be *be, bool is_disabled);

/* A fresh record for a new connection (state DOWN until set CONNECTING): a pooled one
 * is &be->slots[slot].rec (DOWN), others are the caller's (zeroed or DOWN). */
void pool_conn_init(struct pool_conn *c, struct pool_be *be, enum pool_conn_kind kind,
		    int slot, void *owner);

/*
 * The one place a connection changes state; asserts the transition is legal (see the
 * top). IDLE -> BUSY goes through pool_checkout, which takes the max_inflight slot.
 * Returns the workers (a bit each, its own included) to wake because a slot was kept for
 * one of their pools.
 */
uint64_t pool_conn_set_state(struct pool_conn *c, enum pool_conn_state to);

/* Set or clear a hold bit (enum pool_hold). */
void pool_conn_hold(struct pool_conn *c, enum pool_hold what, bool on);

/* Check an IDLE pooled connection out for a request of the gateway's own (a health
 * check, a light call): false when it is held or its backend has no free max_inflight
 * slot. */
bool pool_checkout(struct pool_conn *c);

/*
 * The answer to the sync request checked out on c began to arrive rtt_us after it was sent
 * (now_us: the caller's clock). Teaches c's pool the cost of calls keyed key (the pool's
 * cost table, if it has one) and, unless the call was heavy, the backend's limiter (auto;
 * skipped when another worker holds the limiter at that moment). Returns the limit in force.
 */
uint32_t pool_answer_time(struct pool_conn *c, uint64_t key, uint32_t rtt_us, uint64_t now_us);

/* ------------------------------------------------------------ clients, requests */

enum pool_affinity {
	POOL_AFFINITY_NONE = 0,	/* any backend, per message */
	POOL_AFFINITY_CLIENT,	/* the backend chosen (by strategy) at the client's first message */
	POOL_AFFINITY_USER,	/* the backend up with the highest hash of (user, backend) */
};

/* a client's backend in one pool (affinity); a client uses a few pools at most */
#define POOL_CLIENT_HOMES 4
struct pool_home {
	struct pool *pool;
	struct pool_be *be;
};

struct pool_client {
	struct pool_link queued;	/* its queued requests, oldest first, across pools */
	/* async pin: the connection its last async went on; its next sync goes there too
	 * (a q process reads one connection in order, two in any order) until an answer on
	 * it shows every earlier async ran */
	struct pool_conn *pin;
	uint32_t pin_serial;
	struct pool *pin_pool;
	uint64_t pin_epoch;
	/* the pooled connection its newest sync went on: an async follows it there */
	struct pool_conn *last_sync;
	uint32_t last_sync_serial;
	struct pool *last_sync_pool;
	uint64_t sync_seq;		/* syncs sent to pooled connections */
	uint64_t user_key;		/* a hash of its user name: user affinity */
	struct pool_home homes[POOL_CLIENT_HOMES];	/* affinity: its backend per pool */
	uint8_t home_next;		/* the entry replaced next when all are used */
};

void pool_client_init(struct pool_client *cl);

/* A stable 64-bit hash of s[0..n) (FNV-1a): backend and user keys for user affinity. */
uint64_t pool_key_of(const char *s, size_t n);

struct pool_req {
	struct pool_link qlink;		/* its pool's queue while queued */
	struct pool_link clink;		/* its client's queued list while queued */
	struct pool_client *client;	/* NULL: nobody's (its client left, or none) */
	struct pool *pool;
	uint64_t deadline_ms;		/* queue deadline; 0 none */
	uint64_t epoch;			/* its client's pin epoch when sent (sync) */
	uint64_t seq;			/* its client's sync_seq when sent (sync) */
	struct pool_conn *conn;		/* the connection it went on (sync), else NULL */
	uint64_t cost_key;		/* its call's key in the cost table (pool_key_of) */
	bool is_sync;
	bool is_dedicated;		/* a connection of its own */
	bool is_queued;
};

void pool_req_init(struct pool_req *r, struct pool *p, struct pool_client *cl, bool is_sync,
		   bool is_dedicated);

/* ----------------------------------------------------------------------- pools */

struct pool {
	struct pool_be *const *bes;
	size_t n_bes;
	struct pool_selector selector;
	struct pool_link queue;		/* waiting requests, oldest first */
	uint32_t queue_len, queue_max;
	uint32_t queue_timeout_ms;	/* 0 none */
	uint32_t queued_nofree;		/* queued ones that need no free connection: asyncs
					 * and dedicated syncs */
	int worker;			/* its worker's number (wakeups) */
	const uint64_t *now_ms;		/* the caller's clock, read only (time is passed in) */
	bool is_waiting;		/* waits for a slot held or kept for another record:
					 * the caller's tick dispatches it (a lost wakeup's cover) */
	bool is_started;		/* its connections were opened (lazy pools: on use) */
	bool is_paused;			/* an admin's pause: nothing new leaves its queue */
	uint32_t next_serial;
	enum pool_affinity affinity;
	uint64_t affinity_moves;	/* clients moved off a backend that went down */
	struct pool_costs *costs;	/* learned call costs (the caller's), or NULL: unknown */
};

/* now_ms: where the pool reads the time (the caller's clock, kept current by it) */
void pool_init(struct pool *p, enum pool_strategy strategy, uint64_t seed, uint32_t queue_max,
	       uint32_t queue_timeout_ms, int worker, const uint64_t *now_ms);
void pool_set_backends(struct pool *p, struct pool_be *const *bes, size_t n);

/*
 * An admin pauses or resumes the pool. While paused, pool_propose says WAIT and pool_next
 * hands out nothing: new requests queue (queue.max and queue.timeout_ms apply), what was
 * sent finishes; no new session starts (pool_pick_session says NULL). pool_place (a
 * departing client's asyncs) ignores the pause: its caller checks is_paused. Returns true when the state changed (on
 * resume the caller dispatches the pool).
 */
bool pool_set_paused(struct pool *p, bool is_paused);

/* Some backend has a connection up, connecting, or to be retried. */
bool pool_has_hope(const struct pool *p);

enum pool_verdict {
	POOL_SEND = 0,		/* send it on conn */
	POOL_OPEN,		/* open a dedicated connection to be for it */
	POOL_WAIT,		/* nothing can take it now: queue it */
	POOL_NONE,		/* no backend will ever take it: fail it */
};

struct pool_decision {
	enum pool_verdict verdict;
	struct pool_req *req;
	struct pool_conn *conn;		/* POOL_SEND */
	struct pool_be *be;		/* POOL_SEND, POOL_OPEN */
	struct pool_be *moved_from;	/* affinity: its client's backend went down, it moved */
};

/*
 * Where a new request r (not queued) may go now, honouring FIFO: it overtakes nothing
 * queued in its pool nor anything of its own client's queued anywhere. Takes, queues and
 * pins nothing (it may advance the selector and forget a pin to a connection gone):
 * pool_commit carries a SEND or OPEN out.
 */
struct pool_decision pool_propose(struct pool *p, struct pool_req *r);

/* Where r (not queued) may go now, ignoring the queues: for what may not wait its turn
 * (a departing client's asyncs). */
struct pool_decision pool_place(struct pool *p, struct pool_req *r);

/*
 * Carry d out: take d->req off the queues, check the connection out (a sync takes its
 * max_inflight slot; another worker may have taken the last one since the proposal, then
 * nothing changes and false comes back: queue r or leave it queued), and keep pins.
 */
bool pool_commit(struct pool *p, const struct pool_decision *d);

/* Queue r behind everything (false: queue.max reached) or, for a retry, first in line
 * in its pool and its client's order. */
bool pool_enqueue(struct pool *p, struct pool_req *r, uint64_t now_ms, bool is_first);

/* Take r off the queues (timed out, failed, client gone). Returns the pool that holds
 * its client's next request, which may go now, or NULL. */
struct pool *pool_unqueue(struct pool_req *r);

/*
 * The next queued request that may go now, oldest first, each client in its order, and
 * where, or false. *cursor starts NULL; the caller commits, or skips (its client cannot
 * take an answer now), and calls again. Queued requests with no hope left come back as
 * POOL_NONE: fail them.
 */
bool pool_next(struct pool *p, struct pool_link **cursor, struct pool_decision *d);

/* The oldest queued request whose deadline has passed, or NULL. */
struct pool_req *pool_expired(struct pool *p, uint64_t now_ms);

/* A sync request's answer is complete: the client's async pin goes when this answer
 * proves the asyncs before it ran. */
void pool_req_done(struct pool_req *r);

/* The pool holding cl's oldest queued request (the one that may go next), or NULL. */
struct pool *pool_client_next(const struct pool_client *cl);

/* The client has gone: its queued requests stay queued as nobody's (the caller fails
 * them), and its pins go. */
void pool_client_gone(struct pool_client *cl);

/*
 * After a dispatch pass: keep this pool's bit in its backends' waiters while syncs wait for
 * a slot (so a slot given back is kept for it in turn, and its worker woken). Returns true
 * when a slot came free meanwhile: the caller dispatches again (so a wakeup is never lost
 * between the check and the bit).
 */
bool pool_update_waiting(struct pool *p);

/* --------------------------------------------------------------- reconnects */

/* The pooled connection in slot i came up: its failures are forgotten. Returns true
 * when it had failed before (a reconnect). */
bool pool_slot_up(struct pool_be *be, uint32_t i);

/* The pooled connection in c's slot closed in state was; returns the delay before the
 * slot tries again in ms (0: at once), or -1 when its attempts are used up (given up).
 * u01: uniform random in [0, 1) for jitter. */
int64_t pool_slot_lost(struct pool_be *be, uint32_t i, enum pool_conn_state was,
		       const struct pool_backoff_cfg *bc, double u01, uint64_t now_ms);

/* Slot i is down and due for its next attempt. */
bool pool_slot_due(const struct pool_be *be, uint32_t i, uint64_t now_ms);

/* Session pools: the backend for a new session (its backoff past, not disabled), or NULL
 * (none, or the pool is paused). */
struct pool_be *pool_pick_session(struct pool *p, uint64_t now_ms);
/* a session connection to be failed before it was up: back off (returns the delay) */
int64_t pool_session_failed(struct pool_be *be, const struct pool_backoff_cfg *bc, double u01,
			    uint64_t now_ms);
/* ... or came up: forget its failures; true when it had failed before */
bool pool_session_ok(struct pool_be *be);

#endif /* GW_POOL_POOL_H */
