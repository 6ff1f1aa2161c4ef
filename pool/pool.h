/*
 * pool — backend selection policy and bookkeeping, with no sockets and no clock.
 *
 * The gateway owns the backend connections; it describes each backend to this module
 * with a struct pool_backend (weight, outstanding requests, idle/up connection counts)
 * and asks which backend should take the next request. Time is always a parameter
 * (milliseconds), randomness comes from a caller-seeded generator, so every decision
 * is reproducible in unit tests.
 *
 * Also here: the FIFO waiter queue (intrusive list, bounded) and the reconnect backoff.
 * Nothing in this module allocates; callers own every struct passed in.
 * Thread: single-threaded per worker; no globals.
 */
#ifndef GW_POOL_POOL_H
#define GW_POOL_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- intrusive list */

struct pool_link {
	struct pool_link *prev, *next;
};

static inline void pool_list_init(struct pool_link *h)
{
	h->prev = h->next = h;
}

static inline bool pool_list_empty(const struct pool_link *h)
{
	return h->next == h;
}

static inline void pool_list_add_tail(struct pool_link *h, struct pool_link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void pool_list_del(struct pool_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define pool_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ------------------------------------------------------------------ selection */

enum pool_strategy {
	POOL_LEAST_OUTSTANDING = 0,
	POOL_ROUND_ROBIN,
	POOL_RANDOM_TWO,
};

/* What the selector needs to know about one backend. The gateway keeps it current. */
struct pool_backend {
	int weight;		/* >= 1 */
	uint32_t outstanding;	/* sync requests sent and not yet answered */
	uint32_t n_idle;	/* connections ready to take a sync request */
	uint32_t n_up;		/* connections handshaken (idle or busy) */
	int64_t rr_current;	/* smooth weighted round-robin state (owned by pool_pick) */
};

struct pool_selector {
	enum pool_strategy strategy;
	uint64_t rng;		/* xorshift state; seed with a non-zero value */
	size_t tie_cursor;	/* rotates ties for least_outstanding */
};

void pool_selector_init(struct pool_selector *s, enum pool_strategy strategy, uint64_t seed);

/*
 * Pick a backend among bes[0..n). need_idle: only backends with n_idle > 0 qualify
 * (sync requests); otherwise any backend with n_up > 0 (async messages, which do not
 * wait for a free connection). Returns the index or -1 when none qualifies.
 *  least_outstanding: lowest outstanding/weight, ties rotated so equal backends share load;
 *  round_robin: smooth weighted round robin (nginx's rule) over the qualifying backends;
 *  random_two: two weighted random draws, the one with lower outstanding/weight wins.
 */
int pool_pick(struct pool_selector *s, struct pool_backend *const *bes, size_t n, bool need_idle);

/* Uniform random in [0, 1) from the selector's generator. */
double pool_rand01(struct pool_selector *s);

/* -------------------------------------------------------------------- backoff */

struct pool_backoff_cfg {
	int attempts;		/* -1 forever */
	uint32_t delay_ms;
	double multiplier;	/* 1.0 = constant */
	uint32_t max_delay_ms;
	double jitter;		/* 0..1: delay scaled by a factor in [1-jitter, 1+jitter] */
};

/*
 * Delay before reconnect attempt number `failures` (1 = after the first failure), or
 * -1 when the configured attempts are used up. u01 is a uniform random in [0,1).
 */
int64_t pool_backoff_ms(const struct pool_backoff_cfg *cfg, uint32_t failures, double u01);

/* ---------------------------------------------------------------- waiter queue */

struct pool_waiter {
	struct pool_link link;
	uint64_t deadline_ms;	/* 0 = none */
};

struct pool_queue {
	struct pool_link head;
	uint32_t len;
	uint32_t max;
};

void pool_queue_init(struct pool_queue *q, uint32_t max);

/* Append w. Returns 0, or -ENOSPC when the queue already holds max waiters. */
int pool_queue_push(struct pool_queue *q, struct pool_waiter *w, uint64_t now_ms,
		    uint32_t timeout_ms);

/* Put w at the head of the queue (a retried request goes first); ignores max. */
void pool_queue_push_head(struct pool_queue *q, struct pool_waiter *w, uint64_t now_ms,
			  uint32_t timeout_ms);

/* Remove w (it must be queued). */
void pool_queue_remove(struct pool_queue *q, struct pool_waiter *w);

/* The oldest waiter whose deadline has passed at now_ms, or NULL. */
struct pool_waiter *pool_queue_expired(struct pool_queue *q, uint64_t now_ms);

static inline struct pool_waiter *pool_queue_first(struct pool_queue *q)
{
	return pool_list_empty(&q->head) ? NULL :
	       pool_container_of(q->head.next, struct pool_waiter, link);
}

static inline struct pool_waiter *pool_queue_next(struct pool_queue *q, struct pool_waiter *w)
{
	return w->link.next == &q->head ? NULL :
	       pool_container_of(w->link.next, struct pool_waiter, link);
}

#endif /* GW_POOL_POOL_H */
