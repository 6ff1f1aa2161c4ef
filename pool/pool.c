/*
 * pool.c — the checkout authority: connection states, max_inflight slots shared across
 * workers, the waiter queue with each client's order, async pins, and the decisions that
 * pair requests with connections (see pool.h).
 */
#include "pool/pool.h"

#include <stdio.h>
#include <stdlib.h>

#define POOL_ASSERT(x)                                                                  \
	do {                                                                            \
		if (!(x)) {                                                             \
			fprintf(stderr, "pool: assertion failed: %s (%s:%d)\n", #x, __FILE__, \
				__LINE__);                                              \
			abort();                                                        \
		}                                                                       \
	} while (0)

/* ------------------------------------------------------------ shared counters */

static void lim_lock(struct pool_shared *s)
{
	while (__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE))
		;	/* held for a few instructions by a sample: spin */
}

static bool lim_trylock(struct pool_shared *s)
{
	return !__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE);
}

static void lim_unlock(struct pool_shared *s)
{
	__atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE);
}

/* the limiter's figures out to the atomics readers use (under lock) */
static void lim_publish(struct pool_shared *s)
{
	__atomic_store_n(&s->min_rtt_us, s->lim.min_rtt_us, __ATOMIC_RELAXED);
	__atomic_store_n(&s->short_rtt_us, s->lim.short_rtt_us, __ATOMIC_RELAXED);
	if (__atomic_load_n(&s->is_auto, __ATOMIC_RELAXED))
		__atomic_store_n(&s->max_inflight, s->lim.limit, __ATOMIC_SEQ_CST);
}

void pool_shared_init(struct pool_shared *s, uint32_t max_inflight, uint32_t ceiling)
{
	__atomic_store_n(&s->inflight, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->cost_us, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->regs, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->waiters, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->turn, -1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->turn_until_ms, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->lock, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->is_auto, 0, __ATOMIC_SEQ_CST);
	pool_limit_init(&s->lim, ceiling ? ceiling : POOL_LIMIT_CEILING_DEFAULT);
	pool_shared_set_max(s, max_inflight, ceiling);
}

void pool_shared_set_max(struct pool_shared *s, uint32_t max_inflight, uint32_t ceiling)
{
	lim_lock(s);
	if (ceiling)
		pool_limit_set_ceiling(&s->lim, ceiling);
	if (max_inflight) {
		__atomic_store_n(&s->is_auto, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&s->max_inflight, max_inflight, __ATOMIC_SEQ_CST);
	} else {
		if (!__atomic_load_n(&s->is_auto, __ATOMIC_SEQ_CST))	/* fixed until now */
			pool_limit_init(&s->lim, s->lim.ceiling);
		__atomic_store_n(&s->is_auto, 1, __ATOMIC_SEQ_CST);
	}
	lim_publish(s);
	lim_unlock(s);
}

uint32_t pool_shared_inflight(const struct pool_shared *s)
{
	return __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST) & POOL_INFLIGHT_MASK;
}

uint32_t pool_shared_heavy(const struct pool_shared *s)
{
	return __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST) >> POOL_HEAVY_SHIFT;
}

uint32_t pool_shared_max(const struct pool_shared *s)
{
	return __atomic_load_n(&s->max_inflight, __ATOMIC_SEQ_CST);
}

bool pool_shared_is_auto(const struct pool_shared *s)
{
	return __atomic_load_n(&s->is_auto, __ATOMIC_SEQ_CST) != 0;
}

/* v (a value of inflight) leaves no room: the limit is reached, or (auto) a heavy call runs */
static bool is_full(const struct pool_shared *s, uint32_t v)
{
	return (v & POOL_INFLIGHT_MASK) >= __atomic_load_n(&s->max_inflight, __ATOMIC_SEQ_CST) ||
	       ((v >> POOL_HEAVY_SHIFT) && __atomic_load_n(&s->is_auto, __ATOMIC_SEQ_CST));
}

static uint64_t now_of(const struct pool_be *be)
{
	return be->pool && be->pool->now_ms ? *be->pool->now_ms : 0;
}

static uint64_t reg_bit(const struct pool_be *be)
{
	return be->reg >= 0 ? 1ULL << be->reg : 0;
}

/* A freed slot is kept for another record that still waits, and its time is not up. */
static bool turn_blocks(const struct pool_be *be)
{
	const struct pool_shared *s = be->shared;
	int32_t t = __atomic_load_n(&s->turn, __ATOMIC_SEQ_CST);

	return t >= 0 && t != be->reg && now_of(be) < __atomic_load_n(&s->turn_until_ms,
								      __ATOMIC_SEQ_CST) &&
	       (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) & (1ULL << t));
}

/* be may take a slot now: one is free, and not kept for another record */
static bool slot_open(const struct pool_be *be)
{
	const struct pool_shared *s = be->shared;

	return !is_full(s, __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST)) && !turn_blocks(be);
}

/* Take a slot for c's request (c->cost_us and c->is_heavy set): one compare-and-swap moves
 * both counts, so a heavy call and another request cannot both find the backend empty of
 * heavy calls and both go. */
static bool slot_take(struct pool_be *be, const struct pool_conn *c)
{
	struct pool_shared *s = be->shared;
	uint32_t cur = __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST);
	uint32_t add = 1 + (c->is_heavy ? 1u << POOL_HEAVY_SHIFT : 0);

	do {
		if (is_full(s, cur) || turn_blocks(be))
			return false;
	} while (!__atomic_compare_exchange_n(&s->inflight, &cur, cur + add, false,
					      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	__atomic_fetch_add(&s->cost_us, c->cost_us, __ATOMIC_SEQ_CST);
	int32_t mine = be->reg;
	if (mine >= 0)	/* its turn is used */
		__atomic_compare_exchange_n(&s->turn, &mine, -1, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
	return true;
}

/*
 * Give a slot back. If other records wait, it is kept for the next of them after this one
 * (round robin) for POOL_TURN_MS, and that record's worker is returned to be woken. The
 * decrement comes before the read of waiters, and a waiter sets its bit before it looks at
 * inflight again (pool_update_waiting): both sequentially consistent, one sees the other.
 */
static uint64_t slot_give(struct pool_be *be, const struct pool_conn *c)
{
	struct pool_shared *s = be->shared;
	uint32_t sub = 1 + (c->is_heavy ? 1u << POOL_HEAVY_SHIFT : 0);

	__atomic_fetch_sub(&s->cost_us, c->cost_us, __ATOMIC_SEQ_CST);
	uint32_t was = __atomic_fetch_sub(&s->inflight, sub, __ATOMIC_SEQ_CST);

	POOL_ASSERT((was & POOL_INFLIGHT_MASK) > 0 && (!c->is_heavy || was >> POOL_HEAVY_SHIFT));
	uint64_t others = __atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) & ~reg_bit(be);
	if (!others)
		return 0;
	int from = be->reg >= 0 ? be->reg + 1 : 0, next = -1;
	for (int k = 0; k < POOL_SHARED_REGS && next < 0; k++) {
		int r = (from + k) % POOL_SHARED_REGS;
		if (others & (1ULL << r))
			next = r;
	}
	__atomic_store_n(&s->turn_until_ms, now_of(be) + POOL_TURN_MS, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->turn, next, __ATOMIC_SEQ_CST);
	uint16_t worker = __atomic_load_n(&s->reg_worker[next], __ATOMIC_SEQ_CST);
	return worker < 64 ? 1ULL << worker : 0;	/* beyond 64 workers: its tick looks */
}

/* A registration in s for be (-1 when all POOL_SHARED_REGS are taken: it then just never
 * has a slot kept for it). */
static int reg_claim(struct pool_shared *s, int worker)
{
	uint64_t cur = __atomic_load_n(&s->regs, __ATOMIC_SEQ_CST);

	for (;;) {
		if (cur == ~0ULL)
			return -1;
		int r = __builtin_ctzll(~cur);
		if (__atomic_compare_exchange_n(&s->regs, &cur, cur | (1ULL << r), false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&s->reg_worker[r], (uint16_t)worker,
					 __ATOMIC_SEQ_CST);
			return r;
		}
	}
}

void pool_be_retire(struct pool_be *be)
{
	struct pool_shared *s = be->shared;
	int reg = be->reg;
	int32_t expect = reg;

	be->is_retired = true;
	if (reg < 0)
		return;
	be->reg = -1;
	__atomic_fetch_and(&s->waiters, ~(1ULL << reg), __ATOMIC_SEQ_CST);
	__atomic_compare_exchange_n(&s->turn, &expect, -1, false, __ATOMIC_SEQ_CST,
				    __ATOMIC_SEQ_CST);
	__atomic_fetch_and(&s->regs, ~(1ULL << reg), __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------ backends */

void pool_be_init(struct pool_be *be, struct pool *p, int weight, struct pool_shared *shared,
		  uint32_t max_inflight, struct pool_slot *slots, uint32_t n_slots)
{
	be->pool = p;
	be->weight = weight > 0 ? weight : 1;
	be->is_retired = false;
	be->is_disabled = false;
	if (shared) {
		be->shared = shared;
		if (max_inflight)	/* auto: its giver configured it (and its ceiling) */
			pool_shared_set_max(shared, max_inflight, 0);
	} else {
		pool_shared_init(&be->own_shared, max_inflight, 0);
		be->shared = &be->own_shared;
	}
	be->reg = reg_claim(be->shared, p ? p->worker : 0);
	for (int s = 0; s < POOL_NSTATES; s++) {
		pool_list_init(&be->conns[s]);
		be->n[s] = 0;
	}
	be->n_free = 0;
	be->n_extra = 0;
	be->slots = slots;
	be->n_slots = n_slots;
	for (uint32_t i = 0; i < n_slots; i++) {
		slots[i].rec.state = POOL_DOWN;
		slots[i].rec.be = be;
		slots[i].rec.slot = (int)i;
		pool_list_init(&slots[i].rec.link);
	}
	be->session_failures = 0;
	be->session_retry_at_ms = 0;
	be->rr_current = 0;
}

uint32_t pool_be_up(const struct pool_be *be)
{
	return be->n[POOL_IDLE] + be->n[POOL_BUSY] + be->n[POOL_DRAINING];
}

uint32_t pool_be_load(const struct pool_be *be)
{
	return pool_shared_inflight(be->shared) + be->n_extra;
}

uint64_t pool_be_wait_us(const struct pool_be *be)
{
	return __atomic_load_n(&be->shared->cost_us, __ATOMIC_SEQ_CST) +
	       (uint64_t)be->n_extra * POOL_COST_UNKNOWN_US;
}

uint32_t pool_be_outstanding(const struct pool_be *be)
{
	return be->n[POOL_BUSY] + be->n[POOL_DRAINING] + be->n_extra;
}

bool pool_be_can_take(const struct pool_be *be)
{
	return !be->is_disabled && be->n_free > 0 && slot_open(be);
}

bool pool_be_set_disabled(struct pool_be *be, bool is_disabled)
{
	if (be->is_disabled == is_disabled)
		return false;
	be->is_disabled = is_disabled;
	return true;
}

bool pool_be_is_hopeless(const struct pool_be *be)
{
	if (pool_be_up(be) || be->n[POOL_CONNECTING] || be->n[POOL_HANDSHAKE])
		return false;
	for (uint32_t i = 0; i < be->n_slots; i++)
		if (!be->slots[i].is_given_up && !be->slots[i].is_spare)
			return false;
	return true;
}

bool pool_be_wants_spare(const struct pool_be *be)
{
	const struct pool *p = be->pool;
	uint32_t up = pool_be_up(be), open = up + be->n[POOL_CONNECTING] + be->n[POOL_HANDSHAKE];
	uint32_t max = pool_shared_max(be->shared);

	/* up > 0: a backend that is down gets its configured connections back first, never a
	 * spare more to fail */
	return up > 0 && pool_shared_is_auto(be->shared) && !be->is_disabled && !be->is_retired &&
	       !p->is_paused && p->queue_len > p->queued_nofree && be->n_free == 0 &&
	       open < max && pool_shared_inflight(be->shared) < max &&
	       pool_shared_heavy(be->shared) == 0;
}

/* --------------------------------------------------------------- connections */

const char *pool_state_name(enum pool_conn_state s)
{
	static const char *const names[POOL_NSTATES] = {
		"down", "connecting", "handshake", "idle", "busy", "draining",
	};
	return (unsigned)s < POOL_NSTATES ? names[s] : "?";
}

void pool_conn_init(struct pool_conn *c, struct pool_be *be, enum pool_conn_kind kind,
		    int slot, void *owner)
{
	POOL_ASSERT(c->state == POOL_DOWN || kind != POOL_CONN_POOLED);
	POOL_ASSERT((kind == POOL_CONN_POOLED) == (slot >= 0));
	POOL_ASSERT(kind != POOL_CONN_POOLED || c == &be->slots[slot].rec);
	c->state = POOL_DOWN;
	c->kind = kind;
	c->holds = 0;
	c->holds_slot = false;
	c->slot = slot;
	c->be = be;
	c->owner = owner;
	c->serial = be->pool ? ++be->pool->next_serial : c->serial + 1;
	pool_list_init(&c->link);
}

static bool is_free(const struct pool_conn *c)
{
	return c->state == POOL_IDLE && c->holds == 0;
}

static bool is_legal(enum pool_conn_kind kind, enum pool_conn_state from,
		     enum pool_conn_state to)
{
	bool pooled = kind == POOL_CONN_POOLED;

	if (to == POOL_DOWN)
		return from != POOL_DOWN;
	switch (from) {
	case POOL_DOWN:
		return to == POOL_CONNECTING;
	case POOL_CONNECTING:
		return to == POOL_HANDSHAKE;
	case POOL_HANDSHAKE:
		return to == (pooled ? POOL_IDLE : POOL_BUSY);
	case POOL_IDLE:
		return to == POOL_BUSY;
	case POOL_BUSY:
		return to == POOL_DRAINING || (to == POOL_IDLE && pooled);
	case POOL_DRAINING:
		return to == POOL_IDLE && pooled;
	default:
		return false;
	}
}

uint64_t pool_conn_set_state(struct pool_conn *c, enum pool_conn_state to)
{
	struct pool_be *be = c->be;
	enum pool_conn_state from = c->state;
	uint64_t wake = 0;

	POOL_ASSERT(is_legal(c->kind, from, to));
	/* a pooled connection is checked out only with a slot (pool_checkout) */
	POOL_ASSERT(!(from == POOL_IDLE && to == POOL_BUSY) || c->holds_slot);
	bool was_free = is_free(c);
	c->state = to;
	if (c->kind == POOL_CONN_POOLED) {
		if (from != POOL_DOWN) {
			POOL_ASSERT(be->n[from] > 0);
			be->n[from]--;
			pool_list_del(&c->link);
		}
		if (to != POOL_DOWN) {
			be->n[to]++;
			pool_list_add_tail(&be->conns[to], &c->link);
		}
		if (was_free != is_free(c)) {
			if (was_free)
				be->n_free--;
			else
				be->n_free++;
		}
	} else if (from == POOL_DOWN) {
		be->n_extra++;
	} else if (to == POOL_DOWN) {
		POOL_ASSERT(be->n_extra > 0);
		be->n_extra--;
	}
	if (c->holds_slot && to != POOL_BUSY && to != POOL_DRAINING) {
		c->holds_slot = false;
		wake = slot_give(be, c);
		c->cost_us = 0;
		c->is_heavy = false;
	}
	return wake;
}

void pool_conn_hold(struct pool_conn *c, enum pool_hold what, bool on)
{
	bool was_free = is_free(c);

	if (on)
		c->holds |= (uint8_t)what;
	else
		c->holds &= (uint8_t)~what;
	if (c->kind != POOL_CONN_POOLED || was_free == is_free(c))
		return;
	if (was_free)
		c->be->n_free--;
	else
		c->be->n_free++;
}

/* Check c out for a request of expected cost cost_us (0: unknown): heavy or not on its
 * backend (auto only), as its slot records. */
static bool checkout(struct pool_conn *c, uint32_t cost_us, bool is_light)
{
	struct pool_shared *s = c->be->shared;

	POOL_ASSERT(c->kind == POOL_CONN_POOLED);
	if (!is_free(c))
		return false;
	c->cost_us = cost_us ? cost_us : is_light ? 1 : POOL_COST_UNKNOWN_US;
	c->is_heavy = !is_light && pool_shared_is_auto(s) &&
		      pool_cost_is_heavy(cost_us, __atomic_load_n(&s->min_rtt_us, __ATOMIC_RELAXED));
	if (!slot_take(c->be, c)) {
		c->cost_us = 0;
		c->is_heavy = false;
		return false;
	}
	c->depth = pool_shared_inflight(s);
	c->holds_slot = true;
	pool_conn_set_state(c, POOL_BUSY);
	return true;
}

bool pool_checkout(struct pool_conn *c)
{
	return checkout(c, 0, true);
}

uint32_t pool_answer_time(struct pool_conn *c, uint64_t key, uint32_t rtt_us, uint64_t now_us)
{
	struct pool_be *be = c->be;
	struct pool_shared *s = be->shared;

	if (be->pool && be->pool->costs)
		pool_costs_add(be->pool->costs, key, rtt_us);
	/* a heavy call ran alone and says nothing about how q copes with concurrency; a sample
	 * that finds another worker in the limiter is dropped rather than waited for */
	if (!c->is_heavy && pool_shared_is_auto(s) && lim_trylock(s)) {
		pool_limit_sample(&s->lim, rtt_us, c->depth, now_us);
		lim_publish(s);
		lim_unlock(s);
	}
	return pool_shared_max(s);
}

/* ------------------------------------------------------------ clients, requests */

void pool_client_init(struct pool_client *cl)
{
	*cl = (struct pool_client){ 0 };
	pool_list_init(&cl->queued);
}

void pool_req_init(struct pool_req *r, struct pool *p, struct pool_client *cl, bool is_sync,
		   bool is_dedicated)
{
	*r = (struct pool_req){ .client = cl, .pool = p, .is_sync = is_sync,
				.is_dedicated = is_dedicated };
	pool_list_init(&r->qlink);
	pool_list_init(&r->clink);
}

uint64_t pool_key_of(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

struct pool *pool_client_next(const struct pool_client *cl)
{
	if (!cl || pool_list_empty(&cl->queued))
		return NULL;
	return pool_container_of(cl->queued.next, struct pool_req, clink)->pool;
}

/* A record pinned as (c, serial) still names that connection, up and usable. */
static bool still_up(const struct pool_conn *c, uint32_t serial)
{
	/* a disabled backend takes nothing new: a pin to it goes, as with a closed connection */
	return c && c->serial == serial && c->state >= POOL_IDLE &&
	       !(c->holds & POOL_HOLD_CLOSING) && !c->be->is_disabled;
}

static struct pool_conn *pinned(struct pool_client *cl, const struct pool *p)
{
	if (!cl || !cl->pin || cl->pin_pool != p)
		return NULL;
	if (!still_up(cl->pin, cl->pin_serial)) {
		cl->pin = NULL;	/* the pinned connection is gone: ordering is moot */
		return NULL;
	}
	return cl->pin;
}

static struct pool_conn *last_sync(struct pool_client *cl, const struct pool *p)
{
	if (!cl || !cl->last_sync || cl->last_sync_pool != p)
		return NULL;
	if (!still_up(cl->last_sync, cl->last_sync_serial)) {
		cl->last_sync = NULL;
		return NULL;
	}
	return cl->last_sync;
}

void pool_req_done(struct pool_req *r)
{
	struct pool_client *cl = r->client;
	struct pool_conn *c = r->conn;

	r->conn = NULL;
	if (!cl || !c)
		return;
	/* the sync answer proves every earlier async on that connection ran */
	if (cl->pin == c && r->epoch == cl->pin_epoch)
		cl->pin = NULL;
	/* nothing of this client's is in flight there any more */
	if (cl->last_sync == c && r->seq == cl->sync_seq)
		cl->last_sync = NULL;
}

void pool_client_gone(struct pool_client *cl)
{
	while (!pool_list_empty(&cl->queued)) {
		struct pool_req *r = pool_container_of(cl->queued.next, struct pool_req, clink);
		pool_list_del(&r->clink);
		r->client = NULL;
	}
	cl->pin = NULL;
	cl->last_sync = NULL;
}

/* ----------------------------------------------------------------------- pools */

void pool_init(struct pool *p, enum pool_strategy strategy, uint64_t seed, uint32_t queue_max,
	       uint32_t queue_timeout_ms, int worker, const uint64_t *now_ms)
{
	p->bes = NULL;
	p->n_bes = 0;
	pool_selector_init(&p->selector, strategy, seed);
	pool_list_init(&p->queue);
	p->queue_len = 0;
	p->queue_max = queue_max;
	p->queue_timeout_ms = queue_timeout_ms;
	p->queued_nofree = 0;
	p->worker = worker;
	p->now_ms = now_ms;
	p->is_waiting = false;
	p->is_started = false;
	p->is_paused = false;
	p->next_serial = 0;
	p->costs = NULL;
}

bool pool_set_paused(struct pool *p, bool is_paused)
{
	if (p->is_paused == is_paused)
		return false;
	p->is_paused = is_paused;
	return true;
}

void pool_set_backends(struct pool *p, struct pool_be *const *bes, size_t n)
{
	p->bes = bes;
	p->n_bes = n;
}

bool pool_has_hope(const struct pool *p)
{
	for (size_t b = 0; b < p->n_bes; b++)
		if (!pool_be_is_hopeless(p->bes[b]))
			return true;
	return false;
}

static bool can_take(const struct pool_be *be, uint64_t arg)
{
	(void)arg;
	return pool_be_can_take(be);
}

/* a connection an async may go on: up, not closing, nothing streaming into it */
static bool takes_async(const struct pool_conn *c)
{
	return c->state >= POOL_IDLE && !(c->holds & (POOL_HOLD_STREAM | POOL_HOLD_CLOSING));
}

/* The first connection of be in states from..to (in that order) for which ok holds. */
static struct pool_conn *find_conn(const struct pool_be *be, enum pool_conn_state from,
				   enum pool_conn_state to, bool (*ok)(const struct pool_conn *c))
{
	for (int s = from; s <= (int)to; s++)
		for (struct pool_link *l = be->conns[s].next; l != &be->conns[s]; l = l->next) {
			struct pool_conn *c = pool_container_of(l, struct pool_conn, link);
			if (ok(c))
				return c;
		}
	return NULL;
}

/* an idle one first: the async is read at once */
static struct pool_conn *async_conn(const struct pool_be *be)
{
	return find_conn(be, POOL_IDLE, POOL_DRAINING, takes_async);
}

static bool takes_asyncs(const struct pool_be *be, uint64_t arg)
{
	(void)arg;
	return !be->is_disabled && async_conn(be) != NULL;
}

static struct pool_conn *free_conn(const struct pool_be *be)
{
	return find_conn(be, POOL_IDLE, POOL_IDLE, is_free);
}

static bool is_up(const struct pool_be *be, uint64_t arg)
{
	(void)arg;
	return !be->is_disabled && pool_be_up(be) > 0;
}

static bool has_hope(const struct pool_be *be, uint64_t arg)
{
	(void)arg;
	return !be->is_disabled && !pool_be_is_hopeless(be);
}

/* some disabled backend would have taken it: wait for an enable rather than fail */
static bool disabled_hope(const struct pool *p)
{
	for (size_t b = 0; b < p->n_bes; b++)
		if (p->bes[b]->is_disabled && !pool_be_is_hopeless(p->bes[b]))
			return true;
	return false;
}

static bool session_due(const struct pool_be *be, uint64_t now_ms)
{
	return !be->is_disabled && be->session_retry_at_ms <= now_ms;
}

static struct pool_be *pick(struct pool *p, pool_qualifies_fn ok, uint64_t arg)
{
	int i = pool_pick(&p->selector, p->bes, p->n_bes, ok, arg);

	return i >= 0 ? p->bes[i] : NULL;
}

static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser: every input bit moves every output bit */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static bool may_be_home(const struct pool_be *be)
{
	return !be->is_retired && !be->is_disabled && pool_be_up(be) > 0;
}

/* user affinity: the backend up with the highest hash of (user, backend), so adding or
 * losing one backend moves only the users whose top choice it is (rendezvous hashing) */
static struct pool_be *rendezvous(const struct pool *p, uint64_t user_key)
{
	struct pool_be *best = NULL;
	uint64_t best_score = 0;

	for (size_t b = 0; b < p->n_bes; b++) {
		uint64_t score = mix64(user_key ^ mix64(p->bes[b]->key));
		if (may_be_home(p->bes[b]) && (!best || score > best_score)) {
			best = p->bes[b];
			best_score = score;
		}
	}
	return best;
}

/*
 * The client's backend in p (affinity), chosen now if it has none or its backend went down
 * (then *moved_from says which); NULL when no backend is up (the request waits, as any).
 */
static struct pool_be *home_of(struct pool *p, struct pool_client *cl,
			       struct pool_be **moved_from)
{
	struct pool_home *h = NULL;

	for (int i = 0; i < POOL_CLIENT_HOMES && !h; i++)
		if (cl->homes[i].pool == p)
			h = &cl->homes[i];
	struct pool_be *was = h ? h->be : NULL;
	struct pool_be *home;
	if (p->affinity == POOL_AFFINITY_USER)
		home = rendezvous(p, cl->user_key);	/* the same answer on every worker */
	else
		home = was && may_be_home(was) ? was : pick(p, is_up, 0);
	if (!home)
		return NULL;
	if (was && was != home && !may_be_home(was)) {
		*moved_from = was;
		p->affinity_moves++;
	}
	if (!h) {
		h = &cl->homes[cl->home_next];
		cl->home_next = (uint8_t)((cl->home_next + 1) % POOL_CLIENT_HOMES);
		h->pool = p;
	}
	h->be = home;
	return home;
}

struct pool_decision pool_place(struct pool *p, struct pool_req *r)
{
	struct pool_decision d = { .verdict = POOL_WAIT, .req = r };
	struct pool_be *home = NULL;

	if (p->affinity != POOL_AFFINITY_NONE && r->client)
		home = home_of(p, r->client, &d.moved_from);
	if (r->is_sync && r->is_dedicated) {
		/* a socket of its own: its home, else any backend that is up, else any with hope */
		d.be = home ? home : pick(p, is_up, 0);
		if (!d.be)
			d.be = pick(p, has_hope, 0);
		d.verdict = d.be ? POOL_OPEN : disabled_hope(p) ? POOL_WAIT : POOL_NONE;
		return d;
	}
	struct pool_conn *pc = pinned(r->client, p);
	/* an async goes behind its client's sync still in flight, on the same connection */
	if (!pc && !r->is_sync)
		pc = last_sync(r->client, p);
	if (pc) {
		if (pc->holds & POOL_HOLD_STREAM)
			return d;	/* another message is streaming into it */
		if (!r->is_sync || (is_free(pc) && slot_open(pc->be))) {
			d.verdict = POOL_SEND;
			d.conn = pc;
			d.be = pc->be;
		}
		return d;
	}
	struct pool_be *be;
	if (home)	/* affinity: its backend or nothing */
		be = (r->is_sync ? pool_be_can_take(home) : takes_asyncs(home, 0)) ? home : NULL;
	else
		be = pick(p, r->is_sync ? can_take : takes_asyncs, 0);
	if (be) {
		d.verdict = POOL_SEND;
		d.conn = r->is_sync ? free_conn(be) : async_conn(be);
		d.be = be;
		POOL_ASSERT(d.conn);
	}
	return d;
}

static bool clients_next(const struct pool_req *r)
{
	return !r->client || r->client->queued.next == &r->clink;
}

struct pool_decision pool_propose(struct pool *p, struct pool_req *r)
{
	struct pool_decision d = { .verdict = POOL_WAIT, .req = r };

	POOL_ASSERT(!r->is_queued && r->pool == p);
	if (!pool_has_hope(p)) {
		d.verdict = POOL_NONE;
		return d;
	}
	/* FIFO: it overtakes nothing waiting in the pool, nor anything its own client sent
	 * earlier (which may wait in another pool) */
	if (!pool_list_empty(&p->queue) || (r->client && !pool_list_empty(&r->client->queued)))
		return d;
	if (p->is_paused)
		return d;	/* held in the queue until resumed */
	return pool_place(p, r);
}

static void unqueue(struct pool_req *r)
{
	struct pool *p = r->pool;

	POOL_ASSERT(r->is_queued && p->queue_len > 0);
	pool_list_del(&r->qlink);
	pool_list_del(&r->clink);
	p->queue_len--;
	if (!r->is_sync || r->is_dedicated) {
		POOL_ASSERT(p->queued_nofree > 0);
		p->queued_nofree--;
	}
	r->is_queued = false;
}

struct pool *pool_unqueue(struct pool_req *r)
{
	struct pool_client *cl = r->client;
	bool was_next = cl && cl->queued.next == &r->clink;

	unqueue(r);
	/* its client's next request may wait in a pool that nothing else will look at */
	return was_next ? pool_client_next(cl) : NULL;
}

bool pool_commit(struct pool *p, const struct pool_decision *d)
{
	struct pool_req *r = d->req;
	struct pool_client *cl = r->client;
	struct pool_conn *c = d->conn;

	POOL_ASSERT(r->pool == p && (d->verdict == POOL_SEND || d->verdict == POOL_OPEN));
	if (d->verdict == POOL_SEND) {
		POOL_ASSERT(c && c->kind == POOL_CONN_POOLED && c->be->pool == p);
		if (r->is_sync) {
			uint32_t cost = p->costs ? pool_costs_get(p->costs, r->cost_key) : 0;
			if (!checkout(c, cost, false))
				return false;	/* another worker took the last slot */
			r->conn = c;
			if (cl) {
				r->epoch = cl->pin_epoch;
				r->seq = ++cl->sync_seq;
				cl->last_sync = c;
				cl->last_sync_serial = c->serial;
				cl->last_sync_pool = p;
			}
		} else if (cl) {
			if (cl->pin != c || cl->pin_serial != c->serial) {
				cl->pin = c;
				cl->pin_serial = c->serial;
				cl->pin_pool = p;
			}
			cl->pin_epoch++;
		}
	}
	if (r->is_queued)
		unqueue(r);
	return true;
}

bool pool_enqueue(struct pool *p, struct pool_req *r, uint64_t now_ms, bool is_first)
{
	POOL_ASSERT(!r->is_queued && r->pool == p);
	if (!is_first && p->queue_len >= p->queue_max)
		return false;
	r->deadline_ms = p->queue_timeout_ms ? now_ms + p->queue_timeout_ms : 0;
	if (is_first) {
		/* a retry: it was sent before everything its pool and its client hold */
		pool_list_add_head(&p->queue, &r->qlink);
		if (r->client)
			pool_list_add_head(&r->client->queued, &r->clink);
	} else {
		pool_list_add_tail(&p->queue, &r->qlink);
		if (r->client)
			pool_list_add_tail(&r->client->queued, &r->clink);
	}
	p->queue_len++;
	if (!r->is_sync || r->is_dedicated)
		p->queued_nofree++;
	r->is_queued = true;
	return true;
}

static bool has_room(const struct pool *p)
{
	for (size_t b = 0; b < p->n_bes; b++)
		if (pool_be_can_take(p->bes[b]))
			return true;
	return false;
}

bool pool_next(struct pool *p, struct pool_link **cursor, struct pool_decision *d)
{
	struct pool_link *l = *cursor ? *cursor : p->queue.next;
	bool hope = !p->is_started || pool_has_hope(p);
	/* with no room no sync can go anywhere, pinned or not: unless something that needs
	 * no free connection waits, the rest of the queue need not be looked at */
	bool room = has_room(p);

	for (; l != &p->queue; l = l->next) {
		struct pool_req *r = pool_container_of(l, struct pool_req, qlink);
		if (!hope) {
			/* reconnects exhausted everywhere: nothing queued would ever leave */
			*d = (struct pool_decision){ .verdict = POOL_NONE, .req = r };
			*cursor = l->next;
			return true;
		}
		if (p->is_paused || (!room && p->queued_nofree == 0))
			break;
		if (!clients_next(r) || (r->is_sync && !r->is_dedicated && !room))
			continue;
		*d = pool_place(p, r);
		if (d->verdict == POOL_WAIT)
			continue;
		*cursor = l->next;
		return true;
	}
	*cursor = &p->queue;
	return false;
}

struct pool_req *pool_expired(struct pool *p, uint64_t now_ms)
{
	/* deadlines differ per request (a retry's is new), so scan; queues are bounded */
	for (struct pool_link *l = p->queue.next; l != &p->queue; l = l->next) {
		struct pool_req *r = pool_container_of(l, struct pool_req, qlink);
		if (r->deadline_ms && r->deadline_ms <= now_ms)
			return r;
	}
	return NULL;
}

bool pool_update_waiting(struct pool *p)
{
	/* paused: nothing leaves, so no slot is waited for */
	bool syncs_wait = !p->is_paused && p->queue_len > p->queued_nofree;
	bool again = false;

	p->is_waiting = false;
	for (size_t b = 0; b < p->n_bes; b++) {
		struct pool_be *be = p->bes[b];
		struct pool_shared *s = be->shared;
		uint64_t bit = reg_bit(be);
		/* a free connection but no slot: wait for one in turn (with none free here, this
		 * pool's own answers dispatch it anyway) */
		bool usable = syncs_wait && !be->is_disabled && be->n_free > 0;
		bool need = usable && !slot_open(be);
		if (usable && !need) {
			/* The slot came free after the caller's pass found none, before this
			 * look: its giver saw no bit of ours, so nobody wakes us. Look again,
			 * and let the tick look too in case that pass cannot use it either
			 * (another worker may take it first; then no bit is set for us). */
			again = true;
			p->is_waiting = true;
		}
		if (need && bit) {
			__atomic_fetch_or(&s->waiters, bit, __ATOMIC_SEQ_CST);
			if (slot_open(be))
				again = true;	/* freed between the check and the bit */
		} else if (bit && (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) & bit)) {
			__atomic_fetch_and(&s->waiters, ~bit, __ATOMIC_SEQ_CST);
		}
		/* held by another worker or pool, or kept for one: no answer of this pool's
		 * will come to dispatch it, so the tick covers a lost wakeup */
		uint32_t own = be->n[POOL_BUSY] + be->n[POOL_DRAINING];
		if (need && (pool_shared_inflight(s) > own || turn_blocks(be)))
			p->is_waiting = true;
	}
	return again;
}

/* --------------------------------------------------------------- reconnects */

bool pool_slot_up(struct pool_be *be, uint32_t i)
{
	POOL_ASSERT(i < be->n_slots);
	bool had_failed = be->slots[i].failures > 0;
	be->slots[i].failures = 0;
	return had_failed;
}

int64_t pool_slot_lost(struct pool_be *be, uint32_t i, enum pool_conn_state was,
		       const struct pool_backoff_cfg *bc, double u01, uint64_t now_ms)
{
	struct pool_slot *sl = &be->slots[i];
	int64_t delay;

	POOL_ASSERT(i < be->n_slots && sl->rec.state == POOL_DOWN);
	if (was >= POOL_IDLE) {
		/* it was healthy a moment ago: try again at once */
		sl->failures = 1;
		delay = 0;
	} else {
		delay = pool_backoff_ms(bc, ++sl->failures, u01);
	}
	if (delay < 0)
		sl->is_given_up = true;
	else
		sl->retry_at_ms = now_ms + (uint64_t)delay;
	return delay;
}

bool pool_slot_due(const struct pool_be *be, uint32_t i, uint64_t now_ms)
{
	const struct pool_slot *sl = &be->slots[i];

	return sl->rec.state == POOL_DOWN && !sl->is_given_up && sl->retry_at_ms <= now_ms;
}

struct pool_be *pool_pick_session(struct pool *p, uint64_t now_ms)
{
	/* least_outstanding: the backend with the fewest sessions */
	if (p->is_paused)
		return NULL;
	return pick(p, session_due, now_ms);
}

int64_t pool_session_failed(struct pool_be *be, const struct pool_backoff_cfg *bc, double u01,
			    uint64_t now_ms)
{
	int64_t delay = pool_backoff_ms(bc, ++be->session_failures, u01);

	if (delay < 0)
		delay = bc->max_delay_ms;	/* sessions never give up a backend for good */
	be->session_retry_at_ms = now_ms + (uint64_t)delay;
	return delay;
}

bool pool_session_ok(struct pool_be *be)
{
	bool had_failed = be->session_failures > 0;

	be->session_failures = 0;
	be->session_retry_at_ms = 0;
	return had_failed;
}
