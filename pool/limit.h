/*
 * limit — how many requests one backend may run at once when its max_inflight is "auto",
 * learned from its answer times (a gradient/Vegas-style limiter), and what each call is
 * expected to cost (a bounded table of learned costs by function name or query prefix).
 * Pure: no clock (time is a parameter), no allocation, no locks; the caller serialises
 * calls on one struct (pool_shared does it with a try-lock, pool.h).
 *
 * The limiter. A q process runs one request at a time, so a request sent while another runs
 * waits inside q: its latency is the round trip, plus the wait, plus its own service time.
 * The limiter keeps the no-load latency (min_rtt_us: the median of a window of answers sent
 * alone, measured again every POOL_LIMIT_PROBE_US at limit 1, so under the host's present
 * load: a busy gateway host slows every answer, and that is not q queueing) and the recent
 * latency (short_rtt_us: the median of the last window of POOL_LIMIT_WINDOW answers). While short stays within
 * POOL_LIMIT_UP_PCT of min (or POOL_LIMIT_UP_SLACK_US above it), queueing inside q is not
 * growing: the limit goes up by one (if it was used). Above POOL_LIMIT_DOWN_PCT (and
 * POOL_LIMIT_DOWN_SLACK_US above min), q queues: the limit shrinks in proportion, and
 * does not grow again for POOL_LIMIT_HOLD windows. So a backend whose calls are tiny next
 * to the round trip pipelines (limit > 1), and one whose calls are long stays at 1 or 2.
 * The limit is always within 1..ceiling.
 *
 * The cost table: an EWMA of the latency of each call kind, keyed by a 64-bit hash of its
 * name (pool_key_of). It is a fixed array (POOL_COST_SETS sets of POOL_COST_WAYS entries):
 * a new name evicts the least recently used entry of its set, so no client can make it grow.
 */
#ifndef GW_POOL_LIMIT_H
#define GW_POOL_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define POOL_LIMIT_WINDOW 16		/* answers per decision */
#define POOL_LIMIT_UP_PCT 150		/* short <= 1.5 x min: room for one more */
#define POOL_LIMIT_DOWN_PCT 175		/* short > 1.75 x min: q queues, shrink */
/* ... or within these many µs of it: a few calls of tens of µs queued inside q cost less
 * than the gateway round trip each would wait for otherwise */
#define POOL_LIMIT_UP_SLACK_US 200
#define POOL_LIMIT_DOWN_SLACK_US 400
#define POOL_LIMIT_HOLD 4		/* windows without growth after a shrink */
#define POOL_LIMIT_PROBE_US 1000000	/* min_rtt measured again (at limit 1) this often */
#define POOL_LIMIT_CEILING_DEFAULT 8

struct pool_limit {
	uint32_t limit;			/* 1..ceiling */
	uint32_t ceiling;		/* >= 1 */
	uint32_t min_rtt_us;		/* no-load latency; 0: not measured yet */
	uint32_t short_rtt_us;		/* the last window's median; 0: none yet */
	uint64_t probe_at_us;		/* when min_rtt is measured again */
	bool is_probing;		/* running at limit 1 to measure min_rtt */
	uint32_t before_probe;		/* the limit to go back to after the probe */
	uint32_t hold;			/* windows left without growth */
	uint32_t n;			/* samples in the window */
	uint32_t depth;			/* the most in flight any of them was sent with */
	uint32_t win[POOL_LIMIT_WINDOW];
	uint64_t increases, decreases;	/* changes made (for tests and /stats) */
};

/* Start at limit 1, probing (nothing is known yet). */
void pool_limit_init(struct pool_limit *l, uint32_t ceiling);

/* A new ceiling (a reload): the limit is clamped to it. */
void pool_limit_set_ceiling(struct pool_limit *l, uint32_t ceiling);

/*
 * One answer: rtt_us from the request's send to its answer's first byte, depth the requests
 * in flight on the backend (all workers) when it was sent, itself included. Returns the
 * limit now in force. Deterministic: the same samples give the same limits.
 */
uint32_t pool_limit_sample(struct pool_limit *l, uint32_t rtt_us, uint32_t depth,
			   uint64_t now_us);

/* --------------------------------------------------------------- call costs */

#define POOL_COST_SETS 64
#define POOL_COST_WAYS 4
#define POOL_COST_ENTRIES (POOL_COST_SETS * POOL_COST_WAYS)
/* a call whose cost is unknown counts as this much, and as heavy (it runs alone) */
#define POOL_COST_UNKNOWN_US 1000
/* heavy: at least this, and at least POOL_COST_HEAVY_X times its backend's min_rtt */
#define POOL_COST_HEAVY_MIN_US 1000
#define POOL_COST_HEAVY_X 8

struct pool_cost_entry {
	uint64_t key;			/* 0: unused */
	uint32_t cost_us;		/* EWMA, weight 1/4 for a new sample */
	uint64_t used;			/* the table's clock when last read or written (LRU) */
};

struct pool_costs {
	struct pool_cost_entry e[POOL_COST_ENTRIES];
	uint32_t n_used;		/* entries holding a key */
	uint64_t clock;			/* counts lookups and updates */
	uint64_t evictions;
};

void pool_costs_init(struct pool_costs *t);

/* The expected cost of calls keyed key, in µs; 0 when unknown. */
uint32_t pool_costs_get(struct pool_costs *t, uint64_t key);

/* A call keyed key took us (from send to its answer's first byte). */
void pool_costs_add(struct pool_costs *t, uint64_t key, uint32_t us);

/* A call of expected cost cost_us (0: unknown) is heavy on a backend whose no-load latency
 * is min_rtt_us (0: unknown): while it runs there, nothing else is sent there (auto). */
bool pool_cost_is_heavy(uint32_t cost_us, uint32_t min_rtt_us);

#endif /* GW_POOL_LIMIT_H */
