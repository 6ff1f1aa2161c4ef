/*
 * test_pool.c — unit tests for pool/: connection states and their counters, holds,
 * max_inflight shared across workers, the decisions of the API (propose / commit / next),
 * the waiter queue with each client's order, async pins, waiter bits, reconnect slots,
 * sessions, and the selection strategies and backoff (select.c).
 *
 * Every test builds its own pools from the fixtures below; time is a parameter and every
 * selector is seeded, so the tests are deterministic.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <criterion/redirect.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pool/pool.h"

/* ------------------------------------------------------------------ fixtures */

#define MAXB 4
#define MAXS 4

/* One worker's pool: MAXB backends x MAXS slots at most. */
struct fx {
	struct pool p;
	struct pool_be be[MAXB];
	struct pool_be *bes[MAXB];
	struct pool_slot slots[MAXB][MAXS];
};

/* W[0], W[1]: two workers (or two pools of one worker); SH: shared counters per backend */
static struct fx W[2];
static struct pool_shared SH[MAXB];
static uint64_t NOW;	/* the pools' clock */

static const struct pool_backoff_cfg BC = { .attempts = 3, .delay_ms = 500, .multiplier = 2.0,
					    .max_delay_ms = 30000, .jitter = 0.0 };
static const struct pool_backoff_cfg GIVE_UP = { .attempts = 0, .delay_ms = 10,
						 .multiplier = 1.0, .max_delay_ms = 10 };

/* nb backends x ns slots, all down; shared: per-backend counters (NULL: private ones) */
static struct pool *fx_make(struct fx *f, int worker, size_t nb, uint32_t ns, uint32_t max_inflight,
			    struct pool_shared *shared, enum pool_strategy st, const int *weights)
{
	memset(f, 0, sizeof(*f));
	pool_init(&f->p, st, 1234 + (uint64_t)worker, 4, 1000, worker, &NOW);
	for (size_t b = 0; b < nb; b++) {
		pool_be_init(&f->be[b], &f->p, weights ? weights[b] : 1, shared ? &shared[b] : NULL,
			     max_inflight, f->slots[b], ns);
		f->bes[b] = &f->be[b];
	}
	pool_set_backends(&f->p, f->bes, nb);
	f->p.is_started = true;
	return &f->p;
}

static struct pool *fx_simple(struct fx *f, int worker, size_t nb, uint32_t ns,
			      uint32_t max_inflight)
{
	return fx_make(f, worker, nb, ns, max_inflight, NULL, POOL_LEAST_OUTSTANDING, NULL);
}

/* shared counters for two workers: both fx_make(..., SH, ...) */
static void sh_init(size_t nb, uint32_t max_inflight)
{
	for (size_t b = 0; b < nb; b++)
		pool_shared_init(&SH[b], max_inflight, 0);
}

static struct pool_conn *rec(struct fx *f, size_t b, uint32_t s)
{
	return &f->be[b].slots[s].rec;
}

/* the pooled connection of slot s of backend b: DOWN -> CONNECTING */
static struct pool_conn *conn_open(struct fx *f, size_t b, uint32_t s)
{
	struct pool_conn *c = rec(f, b, s);

	pool_conn_init(c, &f->be[b], POOL_CONN_POOLED, (int)s, NULL);
	cr_assert_eq(pool_conn_set_state(c, POOL_CONNECTING), 0);
	return c;
}

/* ... and up to IDLE */
static struct pool_conn *conn_up(struct fx *f, size_t b, uint32_t s)
{
	struct pool_conn *c = conn_open(f, b, s);

	cr_assert_eq(pool_conn_set_state(c, POOL_HANDSHAKE), 0);
	cr_assert_eq(pool_conn_set_state(c, POOL_IDLE), 0);
	pool_slot_up(&f->be[b], s);
	return c;
}

static void all_up(struct fx *f)
{
	for (size_t b = 0; b < f->p.n_bes; b++)
		for (uint32_t s = 0; s < f->be[b].n_slots; s++)
			conn_up(f, b, s);
}

/* a connection checked out (a request of the gateway's own) */
static struct pool_conn *conn_busy(struct fx *f, size_t b, uint32_t s)
{
	struct pool_conn *c = rec(f, b, s);

	cr_assert(pool_checkout(c), "checkout of be %zu slot %u", b, s);
	return c;
}

/* every slot of backend b gives up (nothing open on it) */
static void be_give_up(struct fx *f, size_t b)
{
	for (uint32_t s = 0; s < f->be[b].n_slots; s++) {
		struct pool_conn *c = rec(f, b, s);
		if (c->state != POOL_DOWN)
			pool_conn_set_state(c, POOL_DOWN);
		cr_assert_eq(pool_slot_lost(&f->be[b], s, POOL_CONNECTING, &GIVE_UP, 0.5, 0), -1);
	}
}

/* a dedicated or session connection of be, brought to `to` along the legal path */
static void extra_to(struct pool_conn *c, struct pool_be *be, enum pool_conn_kind kind,
		     enum pool_conn_state to)
{
	memset(c, 0, sizeof(*c));
	pool_conn_init(c, be, kind, -1, NULL);
	static const enum pool_conn_state path[] = { POOL_CONNECTING, POOL_HANDSHAKE, POOL_BUSY,
						     POOL_DRAINING };
	for (size_t i = 0; i < sizeof(path) / sizeof(path[0]) && c->state != to; i++)
		pool_conn_set_state(c, path[i]);
	cr_assert_eq(c->state, to);
}

/* a pooled connection of slot s brought to `to` along the legal path */
static struct pool_conn *pooled_to(struct fx *f, size_t b, uint32_t s, enum pool_conn_state to)
{
	struct pool_conn *c = rec(f, b, s);

	pool_conn_init(c, &f->be[b], POOL_CONN_POOLED, (int)s, NULL);
	if (to == POOL_DOWN)
		return c;
	pool_conn_set_state(c, POOL_CONNECTING);
	if (to == POOL_CONNECTING)
		return c;
	pool_conn_set_state(c, POOL_HANDSHAKE);
	if (to == POOL_HANDSHAKE)
		return c;
	pool_conn_set_state(c, POOL_IDLE);
	if (to == POOL_IDLE)
		return c;
	cr_assert(pool_checkout(c));
	if (to == POOL_DRAINING)
		pool_conn_set_state(c, POOL_DRAINING);
	cr_assert_eq(c->state, to);
	return c;
}

static size_t list_len(const struct pool_link *h)
{
	size_t n = 0;

	for (const struct pool_link *l = h->next; l != h; l = l->next)
		n++;
	return n;
}

static bool on_list(const struct pool_link *h, const struct pool_link *x)
{
	for (const struct pool_link *l = h->next; l != h; l = l->next)
		if (l == x)
			return true;
	return false;
}

/* The backend's per-state lists, counts and n_free agree with its connections; with
 * private counters, inflight is the pooled BUSY + DRAINING connections. */
static void check_be(const struct pool_be *be)
{
	uint32_t free = 0, slots_held = 0;

	for (int s = POOL_CONNECTING; s < POOL_NSTATES; s++) {
		cr_assert_eq(list_len(&be->conns[s]), be->n[s], "state %s: list %zu, n %u",
			     pool_state_name(s), list_len(&be->conns[s]), be->n[s]);
		for (const struct pool_link *l = be->conns[s].next; l != &be->conns[s];
		     l = l->next) {
			const struct pool_conn *c = pool_container_of(l, struct pool_conn, link);
			cr_assert_eq(c->state, (enum pool_conn_state)s);
			cr_assert_eq(c->be, be);
			cr_assert_eq(c->kind, POOL_CONN_POOLED);
			if (s == POOL_IDLE && c->holds == 0)
				free++;
			cr_assert_eq(c->holds_slot, s == POOL_BUSY || s == POOL_DRAINING);
			slots_held += c->holds_slot;
		}
	}
	cr_assert_eq(be->n_free, free, "n_free %u, free idle %u", be->n_free, free);
	if (be->shared == &be->own_shared)
		cr_assert_eq(pool_shared_inflight(be->shared), slots_held);
}

static struct pool_client CL[4];
static struct pool_req RQ[8];

/* ---------------------------------------------------------------- strategies */

static bool any_be(const struct pool_be *be, uint64_t arg)
{
	(void)be;
	(void)arg;
	return true;
}

static bool be_can_take(const struct pool_be *be, uint64_t arg)
{
	(void)arg;
	return pool_be_can_take(be);
}

/* load: check k connections of backend b out */
static void load(struct fx *f, size_t b, uint32_t k)
{
	for (uint32_t s = 0; s < k; s++)
		conn_busy(f, b, s);
	cr_assert_eq(pool_be_load(&f->be[b]), k);
}

Test(pool_pick, least_outstanding_prefers_least_loaded)
{
	struct pool *p = fx_simple(&W[0], 0, 3, 4, 4);

	all_up(&W[0]);
	load(&W[0], 0, 3);
	load(&W[0], 1, 1);
	load(&W[0], 2, 2);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(pool_pick(&p->selector, p->bes, 3, any_be, 0), 1);
}

Test(pool_pick, load_counts_dedicated_and_session_connections)
{
	struct pool *p = fx_simple(&W[0], 0, 2, 2, 2);
	struct pool_conn ded, ses;

	all_up(&W[0]);
	load(&W[0], 0, 1);
	extra_to(&ded, &W[0].be[1], POOL_CONN_DEDICATED, POOL_CONNECTING);
	extra_to(&ses, &W[0].be[1], POOL_CONN_SESSION, POOL_BUSY);
	cr_assert_eq(pool_be_load(&W[0].be[1]), 2);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pool_pick(&p->selector, p->bes, 2, any_be, 0), 0);
	pool_conn_set_state(&ded, POOL_DOWN);
	pool_conn_set_state(&ses, POOL_DOWN);
	cr_assert_eq(pool_be_load(&W[0].be[1]), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pool_pick(&p->selector, p->bes, 2, any_be, 0), 1);
}

Test(pool_pick, least_outstanding_weights_scale_load)
{
	static const int w[] = { 3, 1 };
	struct pool *p = fx_make(&W[0], 0, 2, 4, 4, NULL, POOL_LEAST_OUTSTANDING, w);

	all_up(&W[0]);
	load(&W[0], 0, 2);	/* 2/3 */
	load(&W[0], 1, 1);	/* 1/1 */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pool_pick(&p->selector, p->bes, 2, any_be, 0), 0);
	conn_busy(&W[0], 0, 2);	/* 3/3: a tie, rotated */
	int hits[2] = { 0 };
	for (int i = 0; i < 10; i++)
		hits[pool_pick(&p->selector, p->bes, 2, any_be, 0)]++;
	cr_assert_eq(hits[0], 5);
	cr_assert_eq(hits[1], 5);
}

Test(pool_pick, least_outstanding_rotates_ties)
{
	struct pool *p = fx_simple(&W[0], 0, 3, 1, 1);
	int hits[3] = { 0 };

	all_up(&W[0]);
	for (int i = 0; i < 300; i++)
		hits[pool_pick(&p->selector, p->bes, 3, any_be, 0)]++;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(hits[i], 100, "backend %d got %d of 300", i, hits[i]);
}

Test(pool_pick, qualifies_filters_backends)
{
	struct pool *p = fx_simple(&W[0], 0, 3, 2, 2);

	all_up(&W[0]);
	load(&W[0], 0, 2);	/* no free connection */
	conn_busy(&W[0], 1, 0);
	pool_conn_hold(rec(&W[0], 1, 1), POOL_HOLD_DIRTY, true);	/* none free either */
	load(&W[0], 2, 1);	/* loaded, but can take */
	int hits[3] = { 0 };
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pool_pick(&p->selector, p->bes, 3, be_can_take, 0), 2);
		hits[pool_pick(&p->selector, p->bes, 3, any_be, 0)]++;
	}
	/* with every backend qualifying, the two least loaded share the work */
	cr_assert_eq(hits[0], 0);
	cr_assert(hits[1] > 0 && hits[2] > 0);
	conn_busy(&W[0], 2, 1);
	cr_assert_eq(pool_pick(&p->selector, p->bes, 3, be_can_take, 0), -1);
	cr_assert_eq(pool_pick(&p->selector, p->bes, 0, any_be, 0), -1);
}

Test(pool_pick, round_robin_follows_weights_smoothly)
{
	static const int w[] = { 5, 1, 1 };
	struct pool *p = fx_make(&W[0], 0, 3, 1, 1, NULL, POOL_ROUND_ROBIN, w);
	int hits[3] = { 0 };
	int seq[14];

	all_up(&W[0]);
	for (int i = 0; i < 14; i++) {
		seq[i] = pool_pick(&p->selector, p->bes, 3, any_be, 0);
		hits[seq[i]]++;
	}
	cr_assert_eq(hits[0], 10);
	cr_assert_eq(hits[1], 2);
	cr_assert_eq(hits[2], 2);
	/* smooth: within a cycle (7 picks) the heavy backend never takes three in a row */
	for (int i = 0; i + 2 < 7; i++)
		cr_assert(!(seq[i] == 0 && seq[i + 1] == 0 && seq[i + 2] == 0), "at %d", i);
	/* only qualifying backends take turns */
	conn_busy(&W[0], 0, 0);
	hits[0] = hits[1] = hits[2] = 0;
	for (int i = 0; i < 6; i++)
		hits[pool_pick(&p->selector, p->bes, 3, be_can_take, 0)]++;
	cr_assert_eq(hits[0], 0);
	cr_assert_eq(hits[1], 3);
	cr_assert_eq(hits[2], 3);
}

Test(pool_pick, random_two_spreads_by_weight)
{
	static const int w[] = { 1, 3 };
	struct pool *p = fx_make(&W[0], 0, 2, 3, 3, NULL, POOL_RANDOM_TWO, w);
	int hits[2] = { 0 };

	all_up(&W[0]);
	for (int i = 0; i < 4000; i++) {
		int k = pool_pick(&p->selector, p->bes, 2, any_be, 0);
		cr_assert(k == 0 || k == 1);
		hits[k]++;
	}
	/* with equal load the draws decide: P(pick 1) = 1 - (1/4)^2 */
	cr_assert(hits[1] > 2 * hits[0], "weighted draws: %d vs %d", hits[0], hits[1]);
	/* with load, the less loaded of the two draws wins: backend 0 now takes every pair
	 * with at least one draw of it, P = 1 - (3/4)^2 = 0.4375, against 1/16 before */
	load(&W[0], 1, 3);
	hits[0] = hits[1] = 0;
	for (int i = 0; i < 1000; i++)
		hits[pool_pick(&p->selector, p->bes, 2, any_be, 0)]++;
	cr_assert(hits[0] > 370 && hits[0] < 510, "loaded pick: %d of 1000", hits[0]);
}

Test(pool_pick, rand01_is_seeded_and_in_range)
{
	struct pool_selector a, b;

	pool_selector_init(&a, POOL_RANDOM_TWO, 99);
	pool_selector_init(&b, POOL_RANDOM_TWO, 99);
	for (int i = 0; i < 1000; i++) {
		double x = pool_rand01(&a);
		cr_assert(x >= 0.0 && x < 1.0);
		cr_assert_eq(x, pool_rand01(&b));
	}
	pool_selector_init(&a, POOL_RANDOM_TWO, 0);	/* 0 is replaced by a non-zero seed */
	cr_assert_neq(a.rng, 0);
}

Test(pool_backoff, exponential_capped_and_jittered)
{
	struct pool_backoff_cfg c = { .attempts = -1, .delay_ms = 500, .multiplier = 2.0,
				      .max_delay_ms = 30000, .jitter = 0.0 };

	cr_assert_eq(pool_backoff_ms(&c, 0, 0.5), 0);
	cr_assert_eq(pool_backoff_ms(&c, 1, 0.5), 500);
	cr_assert_eq(pool_backoff_ms(&c, 2, 0.5), 1000);
	cr_assert_eq(pool_backoff_ms(&c, 4, 0.5), 4000);
	cr_assert_eq(pool_backoff_ms(&c, 30, 0.5), 30000);
	c.jitter = 0.2;
	cr_assert_eq(pool_backoff_ms(&c, 1, 0.0), 400);
	cr_assert_eq(pool_backoff_ms(&c, 1, 0.999999), 599);
	c.multiplier = 1.0;
	cr_assert_eq(pool_backoff_ms(&c, 9, 0.5), 500);
}

Test(pool_backoff, attempts_run_out)
{
	struct pool_backoff_cfg c = { .attempts = 3, .delay_ms = 10, .multiplier = 2.0,
				      .max_delay_ms = 1000, .jitter = 0.0 };

	cr_assert_eq(pool_backoff_ms(&c, 3, 0.5), 40);
	cr_assert_eq(pool_backoff_ms(&c, 4, 0.5), -1);
	c.attempts = 0;
	cr_assert_eq(pool_backoff_ms(&c, 1, 0.5), -1);
}

/* ---------------------------------------------------------- legal transitions */

Test(pool_state, names)
{
	cr_assert_str_eq(pool_state_name(POOL_DOWN), "down");
	cr_assert_str_eq(pool_state_name(POOL_CONNECTING), "connecting");
	cr_assert_str_eq(pool_state_name(POOL_HANDSHAKE), "handshake");
	cr_assert_str_eq(pool_state_name(POOL_IDLE), "idle");
	cr_assert_str_eq(pool_state_name(POOL_BUSY), "busy");
	cr_assert_str_eq(pool_state_name(POOL_DRAINING), "draining");
	cr_assert_str_eq(pool_state_name(POOL_NSTATES), "?");
}

/* DOWN -> CONNECTING -> HANDSHAKE -> IDLE -> BUSY -> IDLE -> BUSY -> DRAINING -> IDLE
 * -> DOWN, with every counter checked on the way. */
Test(pool_state, pooled_lifecycle)
{
	struct fx *f = &W[0];
	struct pool_be *be = &f->be[0];

	fx_simple(f, 0, 1, 2, 2);
	struct pool_conn *c = rec(f, 0, 0);
	pool_conn_init(c, be, POOL_CONN_POOLED, 0, NULL);
	cr_assert_eq(c->state, POOL_DOWN);
	cr_assert_eq(c->slot, 0);
	cr_assert(pool_be_is_hopeless(be) == false);

	cr_assert_eq(pool_conn_set_state(c, POOL_CONNECTING), 0);
	cr_assert_eq(be->n[POOL_CONNECTING], 1);
	cr_assert(on_list(&be->conns[POOL_CONNECTING], &c->link));
	cr_assert_eq(pool_be_up(be), 0);
	cr_assert_eq(be->n_free, 0);
	check_be(be);

	cr_assert_eq(pool_conn_set_state(c, POOL_HANDSHAKE), 0);
	cr_assert_eq(be->n[POOL_CONNECTING], 0);
	cr_assert_eq(be->n[POOL_HANDSHAKE], 1);
	cr_assert(on_list(&be->conns[POOL_HANDSHAKE], &c->link));
	cr_assert_eq(pool_be_up(be), 0);
	check_be(be);

	cr_assert_eq(pool_conn_set_state(c, POOL_IDLE), 0);
	cr_assert_eq(be->n[POOL_HANDSHAKE], 0);
	cr_assert_eq(be->n[POOL_IDLE], 1);
	cr_assert(on_list(&be->conns[POOL_IDLE], &c->link));
	cr_assert_eq(be->n_free, 1);
	cr_assert_eq(pool_be_up(be), 1);
	cr_assert_eq(pool_be_load(be), 0);
	cr_assert(pool_be_can_take(be));
	check_be(be);

	/* IDLE -> BUSY: pool_checkout takes a slot */
	cr_assert(pool_checkout(c));
	cr_assert_eq(c->state, POOL_BUSY);
	cr_assert(c->holds_slot);
	cr_assert_eq(be->n[POOL_IDLE], 0);
	cr_assert_eq(be->n[POOL_BUSY], 1);
	cr_assert(on_list(&be->conns[POOL_BUSY], &c->link));
	cr_assert_eq(be->n_free, 0);
	cr_assert_eq(pool_be_up(be), 1);
	cr_assert_eq(pool_shared_inflight(be->shared), 1);
	cr_assert_eq(pool_be_load(be), 1);
	cr_assert_not(pool_be_can_take(be));
	check_be(be);

	/* BUSY -> IDLE gives the slot back */
	cr_assert_eq(pool_conn_set_state(c, POOL_IDLE), 0);
	cr_assert_not(c->holds_slot);
	cr_assert_eq(be->n[POOL_BUSY], 0);
	cr_assert_eq(be->n[POOL_IDLE], 1);
	cr_assert_eq(be->n_free, 1);
	cr_assert_eq(pool_shared_inflight(be->shared), 0);
	check_be(be);

	/* BUSY -> DRAINING keeps it */
	cr_assert(pool_checkout(c));
	cr_assert_eq(pool_conn_set_state(c, POOL_DRAINING), 0);
	cr_assert(c->holds_slot);
	cr_assert_eq(be->n[POOL_BUSY], 0);
	cr_assert_eq(be->n[POOL_DRAINING], 1);
	cr_assert(on_list(&be->conns[POOL_DRAINING], &c->link));
	cr_assert_eq(be->n_free, 0);
	cr_assert_eq(pool_be_up(be), 1);
	cr_assert_eq(pool_shared_inflight(be->shared), 1);
	cr_assert_eq(pool_be_load(be), 1);
	check_be(be);

	/* DRAINING -> IDLE gives it back */
	cr_assert_eq(pool_conn_set_state(c, POOL_IDLE), 0);
	cr_assert_eq(be->n[POOL_DRAINING], 0);
	cr_assert_eq(be->n[POOL_IDLE], 1);
	cr_assert_eq(be->n_free, 1);
	cr_assert_eq(pool_shared_inflight(be->shared), 0);
	check_be(be);

	/* IDLE -> DOWN */
	cr_assert_eq(pool_conn_set_state(c, POOL_DOWN), 0);
	cr_assert_eq(be->n[POOL_IDLE], 0);
	cr_assert_eq(be->n_free, 0);
	cr_assert_eq(pool_be_up(be), 0);
	cr_assert(pool_list_empty(&c->link));
	check_be(be);

	/* the record is reused by the next connection, with a new serial */
	uint32_t serial = c->serial;
	pool_conn_init(c, be, POOL_CONN_POOLED, 0, NULL);
	cr_assert_neq(c->serial, serial);
	cr_assert_eq(be->n_extra, 0);
}

/* every other way to DOWN; BUSY and DRAINING give their slot back */
Test(pool_state, pooled_any_state_to_down)
{
	static const enum pool_conn_state from[] = { POOL_CONNECTING, POOL_HANDSHAKE, POOL_IDLE,
						     POOL_BUSY, POOL_DRAINING };
	struct fx *f = &W[0];

	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		fx_simple(f, 0, 1, 2, 2);
		struct pool_be *be = &f->be[0];
		pooled_to(f, 0, 1, POOL_IDLE);	/* a bystander */
		struct pool_conn *c = pooled_to(f, 0, 0, from[i]);
		bool slot = from[i] == POOL_BUSY || from[i] == POOL_DRAINING;
		cr_assert_eq(be->n[from[i]], from[i] == POOL_IDLE ? 2 : 1);
		cr_assert_eq(pool_shared_inflight(be->shared), slot);
		cr_assert_eq(pool_be_load(be), slot);
		cr_assert_eq(pool_be_up(be), 1 + (from[i] >= POOL_IDLE));
		check_be(be);
		pool_conn_set_state(c, POOL_DOWN);
		cr_assert_eq(c->state, POOL_DOWN);
		cr_assert_not(c->holds_slot);
		cr_assert_eq(be->n[from[i]], from[i] == POOL_IDLE ? 1 : 0, "from %s",
			     pool_state_name(from[i]));
		cr_assert_eq(pool_shared_inflight(be->shared), 0, "from %s",
			     pool_state_name(from[i]));
		cr_assert_eq(pool_be_load(be), 0);
		cr_assert_eq(pool_be_up(be), 1);
		cr_assert_eq(be->n_free, 1);
		check_be(be);
	}
}

/* dedicated and session connections: CONNECTING -> HANDSHAKE -> BUSY -> DRAINING -> DOWN;
 * counted in n_extra (and the load), on no list, never a slot */
static void extra_lifecycle(enum pool_conn_kind kind)
{
	struct fx *f = &W[0];
	struct pool_conn c;

	fx_simple(f, 0, 1, 1, 1);
	struct pool_be *be = &f->be[0];
	memset(&c, 0, sizeof(c));
	pool_conn_init(&c, be, kind, -1, NULL);
	cr_assert_eq(c.slot, -1);
	cr_assert_eq(be->n_extra, 0);

	cr_assert_eq(pool_conn_set_state(&c, POOL_CONNECTING), 0);
	cr_assert_eq(be->n_extra, 1);
	cr_assert_eq(pool_be_load(be), 1);
	cr_assert_eq(pool_conn_set_state(&c, POOL_HANDSHAKE), 0);
	cr_assert_eq(be->n_extra, 1);
	cr_assert_eq(pool_conn_set_state(&c, POOL_BUSY), 0);
	cr_assert_eq(be->n_extra, 1);
	cr_assert_not(c.holds_slot);
	cr_assert_eq(pool_shared_inflight(be->shared), 0);
	cr_assert_eq(pool_be_load(be), 1);
	cr_assert_eq(pool_be_up(be), 0);
	for (int s = POOL_CONNECTING; s < POOL_NSTATES; s++)
		cr_assert_eq(be->n[s], 0);
	cr_assert(pool_list_empty(&c.link));
	cr_assert_eq(be->n_free, 0);

	cr_assert_eq(pool_conn_set_state(&c, POOL_DRAINING), 0);
	cr_assert_eq(be->n_extra, 1);
	cr_assert_eq(pool_shared_inflight(be->shared), 0);
	cr_assert_eq(pool_conn_set_state(&c, POOL_DOWN), 0);
	cr_assert_eq(be->n_extra, 0);
	cr_assert_eq(pool_be_load(be), 0);
	check_be(be);

	/* straight to DOWN from each other state */
	static const enum pool_conn_state from[] = { POOL_CONNECTING, POOL_HANDSHAKE, POOL_BUSY };
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		extra_to(&c, be, kind, from[i]);
		cr_assert_eq(be->n_extra, 1);
		pool_conn_set_state(&c, POOL_DOWN);
		cr_assert_eq(be->n_extra, 0);
	}
}

Test(pool_state, dedicated_lifecycle)
{
	extra_lifecycle(POOL_CONN_DEDICATED);
}

Test(pool_state, session_lifecycle)
{
	extra_lifecycle(POOL_CONN_SESSION);
}

/* The contract's transitions, kind by kind (IDLE -> BUSY only through pool_checkout). */
static bool legal(enum pool_conn_kind kind, enum pool_conn_state from, enum pool_conn_state to)
{
	bool pooled = kind == POOL_CONN_POOLED;

	if (to == POOL_DOWN)
		return from != POOL_DOWN;
	return (from == POOL_DOWN && to == POOL_CONNECTING) ||
	       (from == POOL_CONNECTING && to == POOL_HANDSHAKE) ||
	       (from == POOL_HANDSHAKE && to == (pooled ? POOL_IDLE : POOL_BUSY)) ||
	       (from == POOL_BUSY && to == POOL_DRAINING) ||
	       (pooled && from == POOL_BUSY && to == POOL_IDLE) ||
	       (pooled && from == POOL_DRAINING && to == POOL_IDLE);
}

static bool reachable(enum pool_conn_kind kind, enum pool_conn_state s)
{
	return kind == POOL_CONN_POOLED || s != POOL_IDLE;
}

/* c (of backend 0 of W[0]) in state `from` */
static struct pool_conn EXT;
static struct pool_conn *conn_in(enum pool_conn_kind kind, enum pool_conn_state from)
{
	fx_simple(&W[0], 0, 1, 2, 2);
	if (kind == POOL_CONN_POOLED)
		return pooled_to(&W[0], 0, 0, from);
	extra_to(&EXT, &W[0].be[0], kind, from);
	return &EXT;
}

/* Every legal transition of every kind, from a fresh backend, keeps the counters right. */
Test(pool_state, every_legal_transition)
{
	int n = 0;

	for (int k = POOL_CONN_POOLED; k <= POOL_CONN_SESSION; k++)
		for (int from = 0; from < POOL_NSTATES; from++)
			for (int to = 0; to < POOL_NSTATES; to++) {
				if (!reachable(k, from) || !legal(k, from, to))
					continue;
				struct pool_conn *c = conn_in(k, from);
				struct pool_be *be = c->be;
				uint32_t extra = be->n_extra;
				pool_conn_set_state(c, to);
				cr_assert_eq(c->state, (enum pool_conn_state)to);
				check_be(be);
				if (k == POOL_CONN_POOLED) {
					cr_assert_eq(be->n_extra, 0);
					cr_assert_eq(pool_shared_inflight(be->shared),
						     to == POOL_BUSY || to == POOL_DRAINING);
					cr_assert_eq(be->n[POOL_IDLE] + be->n[POOL_BUSY] +
							     be->n[POOL_DRAINING] +
							     be->n[POOL_CONNECTING] +
							     be->n[POOL_HANDSHAKE],
						     to != POOL_DOWN);
				} else {
					cr_assert_eq(pool_shared_inflight(be->shared), 0);
					cr_assert_eq(be->n_extra,
						     from == POOL_DOWN ? extra + 1
						     : to == POOL_DOWN ? extra - 1
									: extra);
				}
				n++;
			}
	/* pooled: 5 along the way + BUSY->IDLE + DRAINING->IDLE + 5 to DOWN, less
	 * IDLE->BUSY (pool_checkout's) = 11; others: 4 + 4 to DOWN = 8 each */
	cr_assert_eq(n, 11 + 8 + 8, "%d legal transitions", n);
}

Test(pool_state, checkout_needs_a_free_connection_and_a_slot)
{
	struct fx *f = &W[0];

	fx_simple(f, 0, 1, 3, 1);
	struct pool_conn *c0 = pooled_to(f, 0, 0, POOL_HANDSHAKE);
	cr_assert_not(pool_checkout(c0));	/* not IDLE */
	cr_assert_eq(c0->state, POOL_HANDSHAKE);
	pool_conn_set_state(c0, POOL_IDLE);
	pool_conn_hold(c0, POOL_HOLD_DIRTY, true);
	cr_assert_not(pool_checkout(c0));	/* held */
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 0);
	pool_conn_hold(c0, POOL_HOLD_DIRTY, false);
	cr_assert(pool_checkout(c0));
	cr_assert_not(pool_checkout(c0));	/* BUSY */
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 1);
	check_be(&f->be[0]);
}

/* ------------------------------------------------------- illegal transitions */

/* each of these aborts (pool.c's assertion); its message goes to a silenced stderr */
#define ILLEGAL(name) Test(pool_illegal, name, .signal = SIGABRT, .init = cr_redirect_stderr)

ILLEGAL(idle_to_draining)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_IDLE), POOL_DRAINING);
}

ILLEGAL(pooled_handshake_to_busy)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_HANDSHAKE), POOL_BUSY);
}

ILLEGAL(dedicated_busy_to_idle)
{
	pool_conn_set_state(conn_in(POOL_CONN_DEDICATED, POOL_BUSY), POOL_IDLE);
}

ILLEGAL(session_handshake_to_idle)
{
	pool_conn_set_state(conn_in(POOL_CONN_SESSION, POOL_HANDSHAKE), POOL_IDLE);
}

ILLEGAL(session_draining_to_idle)
{
	pool_conn_set_state(conn_in(POOL_CONN_SESSION, POOL_DRAINING), POOL_IDLE);
}

ILLEGAL(down_to_down)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_DOWN), POOL_DOWN);
}

ILLEGAL(dedicated_down_to_down)
{
	pool_conn_set_state(conn_in(POOL_CONN_DEDICATED, POOL_DOWN), POOL_DOWN);
}

ILLEGAL(idle_to_busy_without_checkout)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_IDLE), POOL_BUSY);
}

ILLEGAL(connecting_to_idle)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_CONNECTING), POOL_IDLE);
}

ILLEGAL(down_to_idle)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_DOWN), POOL_IDLE);
}

ILLEGAL(draining_to_busy)
{
	pool_conn_set_state(conn_in(POOL_CONN_POOLED, POOL_DRAINING), POOL_BUSY);
}

ILLEGAL(checkout_of_a_dedicated_connection)
{
	pool_checkout(conn_in(POOL_CONN_DEDICATED, POOL_BUSY));
}

/* Exhaustively: every (kind, reachable from, to) the contract does not allow aborts. */
struct transition {
	enum pool_conn_kind kind;
	enum pool_conn_state from, to;
};

ParameterizedTestParameters(pool_illegal, every_illegal_transition_aborts)
{
	static struct transition t[3 * POOL_NSTATES * POOL_NSTATES];
	size_t n = 0;

	for (int k = POOL_CONN_POOLED; k <= POOL_CONN_SESSION; k++)
		for (int from = 0; from < POOL_NSTATES; from++)
			for (int to = 0; to < POOL_NSTATES; to++)
				if (reachable(k, from) && !legal(k, from, to))
					t[n++] = (struct transition){ k, from, to };
	return cr_make_param_array(struct transition, t, n);
}

ParameterizedTest(struct transition *t, pool_illegal, every_illegal_transition_aborts,
		  .signal = SIGABRT, .init = cr_redirect_stderr)
{
	struct pool_conn *c = conn_in(t->kind, t->from);

	cr_assert_eq(c->state, t->from);
	pool_conn_set_state(c, t->to);
}

/* ---------------------------------------------------------------------- holds */

static struct pool_decision propose_new(struct pool *p, struct pool_req *r,
					struct pool_client *cl, bool is_sync, bool is_dedicated)
{
	pool_req_init(r, p, cl, is_sync, is_dedicated);
	return pool_propose(p, r);
}

Test(pool_hold, n_free_follows_holds)
{
	struct fx *f = &W[0];

	fx_simple(f, 0, 1, 2, 2);
	struct pool_be *be = &f->be[0];
	struct pool_conn *c = conn_up(f, 0, 0);
	conn_up(f, 0, 1);
	cr_assert_eq(be->n_free, 2);
	pool_conn_hold(c, POOL_HOLD_STREAM, true);
	cr_assert_eq(be->n_free, 1);
	pool_conn_hold(c, POOL_HOLD_DIRTY, true);
	cr_assert_eq(be->n_free, 1);
	pool_conn_hold(c, POOL_HOLD_STREAM, false);
	cr_assert_eq(be->n_free, 1);	/* still dirty */
	pool_conn_hold(c, POOL_HOLD_DIRTY, false);
	cr_assert_eq(be->n_free, 2);
	pool_conn_hold(c, POOL_HOLD_DIRTY, false);	/* clearing twice changes nothing */
	cr_assert_eq(be->n_free, 2);
	check_be(be);

	/* a hold on a busy connection: free again only once answered and released */
	cr_assert(pool_checkout(c));
	cr_assert_eq(be->n_free, 1);
	pool_conn_hold(c, POOL_HOLD_CLOSING, true);
	cr_assert_eq(be->n_free, 1);
	pool_conn_set_state(c, POOL_IDLE);
	cr_assert_eq(be->n_free, 1);
	check_be(be);
	pool_conn_hold(c, POOL_HOLD_CLOSING, false);
	cr_assert_eq(be->n_free, 2);
	/* a held idle connection going down */
	pool_conn_hold(c, POOL_HOLD_STREAM, true);
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(be->n_free, 1);
	check_be(be);
}

/* one connection, held with `what`: a sync never gets it; an async gets it unless
 * STREAM or CLOSING */
static void hold_case(enum pool_hold what, bool async_ok)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);
	struct pool_conn *c = conn_up(f, 0, 0);
	struct pool_decision d;

	pool_client_init(&CL[0]);
	pool_conn_hold(c, what, true);
	cr_assert_not(pool_be_can_take(&f->be[0]));
	cr_assert_not(pool_checkout(c));
	d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_WAIT);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	if (async_ok) {
		cr_assert_eq(d.verdict, POOL_SEND);
		cr_assert_eq(d.conn, c);
	} else {
		cr_assert_eq(d.verdict, POOL_WAIT);
	}
	/* ... also on a busy connection */
	pool_conn_hold(c, what, false);
	cr_assert(pool_checkout(c));
	pool_conn_hold(c, what, true);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.verdict, async_ok ? POOL_SEND : POOL_WAIT);
	pool_conn_hold(c, what, false);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
}

Test(pool_hold, stream_blocks_syncs_and_asyncs)
{
	hold_case(POOL_HOLD_STREAM, false);
}

Test(pool_hold, closing_blocks_syncs_and_asyncs)
{
	hold_case(POOL_HOLD_CLOSING, false);
}

Test(pool_hold, dirty_blocks_syncs_only)
{
	hold_case(POOL_HOLD_DIRTY, true);
}

Test(pool_hold, sync_takes_the_unheld_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 2);
	struct pool_conn *c0 = conn_up(f, 0, 0), *c1 = conn_up(f, 0, 1);

	pool_client_init(&CL[0]);
	pool_conn_hold(c0, POOL_HOLD_DIRTY, true);
	for (int i = 0; i < 3; i++) {
		struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
		cr_assert_eq(d.verdict, POOL_SEND);
		cr_assert_eq(d.conn, c1);
	}
	/* an async goes to a connection that is not streaming or closing */
	pool_conn_hold(c0, POOL_HOLD_DIRTY, false);
	pool_conn_hold(c0, POOL_HOLD_STREAM, true);
	struct pool_decision d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.conn, c1);
}

/* --------------------------------------------------------------- max_inflight */

Test(pool_inflight, one_slot_two_idle_connections)
{
	struct fx *f = &W[0];

	fx_simple(f, 0, 1, 2, 1);
	struct pool_be *be = &f->be[0];
	struct pool_conn *c0 = conn_up(f, 0, 0), *c1 = conn_up(f, 0, 1);
	cr_assert(pool_be_can_take(be));
	cr_assert(pool_checkout(c0));
	cr_assert_eq(be->n_free, 1);
	cr_assert_not(pool_be_can_take(be));	/* a free connection, no slot */
	cr_assert_not(pool_checkout(c1));
	cr_assert_eq(c1->state, POOL_IDLE);
	cr_assert_eq(pool_shared_inflight(be->shared), 1);
	pool_conn_set_state(c0, POOL_IDLE);
	cr_assert(pool_be_can_take(be));
	cr_assert(pool_checkout(c1));
	check_be(be);
}

Test(pool_inflight, two_workers_share_one_counter)
{
	sh_init(1, 2);
	fx_make(&W[0], 0, 1, 3, 2, SH, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, 3, 2, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	cr_assert_eq(W[0].be[0].shared, &SH[0]);
	cr_assert_eq(W[1].be[0].shared, &SH[0]);

	int ok = 0;
	for (uint32_t s = 0; s < 3; s++)
		for (int w = 0; w < 2; w++) {
			ok += pool_checkout(rec(&W[w], 0, s));
			cr_assert(pool_shared_inflight(&SH[0]) <= 2);
		}
	cr_assert_eq(ok, 2);
	cr_assert_eq(pool_shared_inflight(&SH[0]), 2);
	for (int w = 0; w < 2; w++) {
		cr_assert_not(pool_be_can_take(&W[w].be[0]));
		cr_assert_eq(pool_be_load(&W[w].be[0]), 2);	/* load is every worker's */
	}
	/* the first two went to W[0] slot 0 and W[1] slot 0: one back, one more anywhere */
	pool_conn_set_state(rec(&W[1], 0, 0), POOL_IDLE);
	cr_assert(pool_be_can_take(&W[0].be[0]));
	cr_assert(pool_checkout(rec(&W[0], 0, 1)));
	cr_assert_not(pool_checkout(rec(&W[1], 0, 1)));
	cr_assert_eq(pool_shared_inflight(&SH[0]), 2);
	/* draining holds its slot; going down from it gives it back */
	pool_conn_set_state(rec(&W[0], 0, 1), POOL_DRAINING);
	cr_assert_not(pool_checkout(rec(&W[1], 0, 1)));
	pool_conn_set_state(rec(&W[0], 0, 1), POOL_DOWN);
	cr_assert(pool_checkout(rec(&W[1], 0, 1)));
	cr_assert_eq(pool_shared_inflight(&SH[0]), 2);
}

Test(pool_inflight, set_max_changes_the_limit)
{
	struct fx *f = &W[0];

	fx_simple(f, 0, 1, 4, 1);
	struct pool_be *be = &f->be[0];
	all_up(f);
	cr_assert(pool_checkout(rec(f, 0, 0)));
	cr_assert_not(pool_be_can_take(be));
	pool_shared_set_max(be->shared, 3, 0);
	cr_assert(pool_be_can_take(be));
	cr_assert(pool_checkout(rec(f, 0, 1)));
	cr_assert(pool_checkout(rec(f, 0, 2)));
	cr_assert_not(pool_checkout(rec(f, 0, 3)));
	/* lowered below what is in flight: nothing new until it drops under */
	pool_shared_set_max(be->shared, 1, 0);
	pool_conn_set_state(rec(f, 0, 0), POOL_IDLE);
	cr_assert_not(pool_be_can_take(be));
	pool_conn_set_state(rec(f, 0, 1), POOL_IDLE);
	cr_assert_not(pool_be_can_take(be));
	pool_conn_set_state(rec(f, 0, 2), POOL_IDLE);
	cr_assert(pool_be_can_take(be));
	/* 0 is "auto", which starts at 1 */
	pool_shared_set_max(be->shared, 0, 0);
	cr_assert_eq(be->shared->max_inflight, 1);
	cr_assert(pool_checkout(rec(f, 0, 3)));
	cr_assert_not(pool_checkout(rec(f, 0, 0)));
}

Test(pool_inflight, shared_init)
{
	struct pool_shared s;

	memset(&s, 0xff, sizeof(s));
	pool_shared_init(&s, 5, 0);
	cr_assert_eq(pool_shared_inflight(&s), 0);
	cr_assert_eq(s.max_inflight, 5);
	cr_assert_eq(s.waiters, 0);
}

/* ---------------------------------------------------------------- pool_propose */

Test(pool_propose, send_sync_to_a_free_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	conn_busy(f, 0, 0);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.req, &RQ[0]);
	cr_assert_eq(d.conn, rec(f, 1, 0));
	cr_assert_eq(d.be, &f->be[1]);
	/* it changed nothing */
	cr_assert_eq(rec(f, 1, 0)->state, POOL_IDLE);
	cr_assert_eq(pool_shared_inflight(f->be[1].shared), 0);
	cr_assert_not(RQ[0].is_queued);
	cr_assert_null(RQ[0].conn);
	cr_assert_eq(CL[0].sync_seq, 0);
	cr_assert_null(CL[0].last_sync);
	/* a request of nobody's too */
	d = propose_new(p, &RQ[1], NULL, true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, rec(f, 1, 0));
}

Test(pool_propose, send_async_to_a_busy_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);
	struct pool_conn *c = conn_up(f, 0, 0);

	pool_client_init(&CL[0]);
	cr_assert(pool_checkout(c));
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_WAIT);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, c);
	cr_assert_eq(d.be, &f->be[0]);
	/* ... and to a draining one */
	pool_conn_set_state(c, POOL_DRAINING);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, c);
}

Test(pool_propose, async_prefers_an_idle_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 2);

	all_up(f);
	conn_busy(f, 0, 0);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, rec(f, 0, 1));
}

Test(pool_propose, async_waits_while_nothing_is_up)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);

	conn_open(f, 0, 0);
	pool_client_init(&CL[0]);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], false, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], true, false).verdict, POOL_WAIT);
}

Test(pool_propose, open_dedicated_prefers_an_up_backend)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 3, 1, 1);

	conn_open(f, 0, 0);	/* connecting: hope */
	conn_up(f, 1, 0);
	conn_busy(f, 1, 0);	/* up, even if busy */
	/* backend 2: down, to be retried: hope */
	pool_client_init(&CL[0]);
	for (int i = 0; i < 6; i++) {
		struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, true);
		cr_assert_eq(d.verdict, POOL_OPEN);
		cr_assert_eq(d.be, &f->be[1]);
		cr_assert_null(d.conn);
	}
	/* nothing up: any with hope, never a hopeless one */
	pool_conn_set_state(rec(f, 1, 0), POOL_DOWN);
	be_give_up(f, 1);
	int hits[3] = { 0 };
	for (int i = 0; i < 6; i++) {
		struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, true);
		cr_assert_eq(d.verdict, POOL_OPEN);
		hits[d.be - f->be]++;
	}
	cr_assert_eq(hits[1], 0);
	cr_assert(hits[0] > 0 && hits[2] > 0);
	/* an up backend's dedicated connections count in its load */
	cr_assert_eq(pool_be_load(&f->be[0]), 0);
}

Test(pool_propose, wait_when_no_connection_is_free)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 2);

	all_up(f);
	conn_busy(f, 0, 0);
	conn_busy(f, 1, 0);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_WAIT);
	cr_assert_eq(d.req, &RQ[0]);
	cr_assert_not(RQ[0].is_queued);
}

Test(pool_propose, wait_when_another_worker_holds_the_slot)
{
	sh_init(1, 1);
	struct pool *p0 = fx_make(&W[0], 0, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	pool_client_init(&CL[0]);
	cr_assert_eq(propose_new(p0, &RQ[0], &CL[0], true, false).verdict, POOL_SEND);
	conn_busy(&W[1], 0, 0);
	cr_assert_eq(W[0].be[0].n_free, 1);
	cr_assert_eq(propose_new(p0, &RQ[0], &CL[0], true, false).verdict, POOL_WAIT);
	/* an async needs no slot */
	cr_assert_eq(propose_new(p0, &RQ[1], &CL[0], false, false).verdict, POOL_SEND);
}

Test(pool_propose, wait_behind_the_queue_fifo)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 2);

	all_up(f);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	pool_req_init(&RQ[0], p, &CL[0], true, false);
	cr_assert(pool_enqueue(p, &RQ[0], 0, false));
	/* free connections, but someone else waits: no overtaking, sync or async or
	 * dedicated */
	cr_assert_eq(propose_new(p, &RQ[1], &CL[1], true, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[1], false, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[1], true, true).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[1], NULL, true, false).verdict, POOL_WAIT);
	pool_unqueue(&RQ[0]);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[1], true, false).verdict, POOL_SEND);
}

Test(pool_propose, wait_behind_own_request_in_another_pool)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 1, 1);
	struct pool *q = fx_simple(&W[1], 0, 1, 1, 1);	/* another pool, same worker */

	all_up(&W[0]);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	pool_req_init(&RQ[0], q, &CL[0], true, false);
	cr_assert(pool_enqueue(q, &RQ[0], 0, false));
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], true, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], false, false).verdict, POOL_WAIT);
	/* another client is not held up by it */
	cr_assert_eq(propose_new(p, &RQ[2], &CL[1], true, false).verdict, POOL_SEND);
	cr_assert_eq(pool_client_next(&CL[0]), q);
	pool_unqueue(&RQ[0]);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], true, false).verdict, POOL_SEND);
}

Test(pool_propose, none_when_every_slot_gave_up)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 2, 2);

	pool_client_init(&CL[0]);
	be_give_up(f, 0);
	/* backend 1: slot 1 gave up, slot 0 still connecting: hope */
	cr_assert_eq(pool_slot_lost(&f->be[1], 1, POOL_CONNECTING, &GIVE_UP, 0.5, 0), -1);
	struct pool_conn *c = conn_open(f, 1, 0);
	cr_assert(pool_be_is_hopeless(&f->be[0]));
	cr_assert_not(pool_be_is_hopeless(&f->be[1]));
	cr_assert(pool_has_hope(p));
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, false).verdict, POOL_WAIT);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, true);
	cr_assert_eq(d.verdict, POOL_OPEN);
	cr_assert_eq(d.be, &f->be[1]);
	pool_conn_set_state(c, POOL_HANDSHAKE);
	cr_assert(pool_has_hope(p));
	/* it fails too */
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(pool_slot_lost(&f->be[1], 0, POOL_HANDSHAKE, &GIVE_UP, 0.5, 0), -1);
	cr_assert(pool_be_is_hopeless(&f->be[1]));
	cr_assert_not(pool_has_hope(p));
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, false).verdict, POOL_NONE);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], false, false).verdict, POOL_NONE);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, true).verdict, POOL_NONE);
	cr_assert_eq(propose_new(p, &RQ[0], NULL, true, false).verdict, POOL_NONE);
}

Test(pool_propose, up_connection_keeps_hope_after_giving_up)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 2);

	conn_up(f, 0, 0);
	cr_assert_eq(pool_slot_lost(&f->be[0], 1, POOL_CONNECTING, &GIVE_UP, 0.5, 0), -1);
	cr_assert(pool_has_hope(p));
	pool_client_init(&CL[0]);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, false).verdict, POOL_SEND);
}

/* ----------------------------------------------------------------- pool_commit */

Test(pool_commit, sync_takes_the_slot)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(d.conn->state, POOL_BUSY);
	cr_assert(d.conn->holds_slot);
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 1);
	cr_assert_eq(RQ[0].conn, d.conn);
	cr_assert_eq(RQ[0].seq, 1);
	cr_assert_eq(CL[0].sync_seq, 1);
	cr_assert_eq(CL[0].last_sync, d.conn);
	cr_assert_eq(CL[0].last_sync_serial, d.conn->serial);
	cr_assert_eq(CL[0].last_sync_pool, p);
	cr_assert_null(CL[0].pin);
	cr_assert_not(RQ[0].is_queued);
	check_be(&f->be[0]);
	/* the last slot is gone: the next sync waits */
	cr_assert_eq(propose_new(p, &RQ[1], &CL[1], true, false).verdict, POOL_WAIT);
}

Test(pool_commit, fails_when_another_worker_took_the_last_slot)
{
	sh_init(1, 1);
	struct pool *p0 = fx_make(&W[0], 0, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p0, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	conn_busy(&W[1], 0, 0);	/* the other worker, between proposal and commit */
	cr_assert_not(pool_commit(p0, &d));
	/* nothing changed */
	cr_assert_eq(d.conn->state, POOL_IDLE);
	cr_assert_not(d.conn->holds_slot);
	cr_assert_eq(W[0].be[0].n_free, 1);
	cr_assert_eq(pool_shared_inflight(&SH[0]), 1);
	cr_assert_null(RQ[0].conn);
	cr_assert_eq(CL[0].sync_seq, 0);
	cr_assert_null(CL[0].last_sync);
	cr_assert_not(RQ[0].is_queued);
	check_be(&W[0].be[0]);
}

Test(pool_commit, failed_commit_leaves_a_queued_request_queued)
{
	sh_init(1, 1);
	struct pool *p0 = fx_make(&W[0], 0, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	pool_client_init(&CL[0]);
	pool_req_init(&RQ[0], p0, &CL[0], true, false);
	cr_assert(pool_enqueue(p0, &RQ[0], 0, false));
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert(pool_next(p0, &cur, &d));
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.req, &RQ[0]);
	conn_busy(&W[1], 0, 0);
	cr_assert_not(pool_commit(p0, &d));
	cr_assert(RQ[0].is_queued);
	cr_assert_eq(p0->queue_len, 1);
	cr_assert(on_list(&p0->queue, &RQ[0].qlink));
	cr_assert(on_list(&CL[0].queued, &RQ[0].clink));
	cr_assert_eq(pool_client_next(&CL[0]), p0);
	cr_assert_eq(d.conn->state, POOL_IDLE);
	/* the slot comes back: it goes */
	pool_conn_set_state(rec(&W[1], 0, 0), POOL_IDLE);
	cur = NULL;
	cr_assert(pool_next(p0, &cur, &d));
	cr_assert(pool_commit(p0, &d));
	cr_assert_not(RQ[0].is_queued);
	cr_assert_eq(p0->queue_len, 0);
	cr_assert_null(pool_client_next(&CL[0]));
}

Test(pool_commit, open_takes_a_dedicated_request_off_the_queues)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);

	all_up(f);
	conn_busy(f, 0, 0);
	pool_client_init(&CL[0]);
	pool_req_init(&RQ[0], p, &CL[0], true, true);
	cr_assert(pool_enqueue(p, &RQ[0], 0, false));
	cr_assert_eq(p->queued_nofree, 1);
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert(pool_next(p, &cur, &d));	/* no room, but it needs none */
	cr_assert_eq(d.verdict, POOL_OPEN);
	cr_assert_eq(d.be, &f->be[0]);
	cr_assert(pool_commit(p, &d));
	cr_assert_not(RQ[0].is_queued);
	cr_assert_eq(p->queue_len, 0);
	cr_assert_eq(p->queued_nofree, 0);
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 1);
	cr_assert_eq(CL[0].sync_seq, 0);	/* not a pooled sync */
}

Test(pool_commit, async_sets_the_pin)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(CL[0].pin, d.conn);
	cr_assert_eq(CL[0].pin_serial, d.conn->serial);
	cr_assert_eq(CL[0].pin_pool, p);
	cr_assert_eq(CL[0].pin_epoch, 1);
	cr_assert_eq(d.conn->state, POOL_IDLE);	/* an async checks nothing out */
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 0);
	cr_assert_null(RQ[0].conn);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(CL[0].pin_epoch, 2);
	/* nobody's async: no pin anywhere */
	d = propose_new(p, &RQ[2], NULL, false, false);
	cr_assert(pool_commit(p, &d));
}

/* a sync after an async goes to the pinned connection only, until a sync answer from
 * it proves the async ran */
Test(pool_commit, pinned_sync_waits_for_its_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *pin = d.conn;
	struct pool_conn *other = pin == rec(f, 0, 0) ? rec(f, 1, 0) : rec(f, 0, 0);
	/* another client's sync takes the pinned connection */
	struct pool_req *r1 = &RQ[1];
	pool_req_init(r1, p, &CL[1], true, false);
	cr_assert(pool_checkout(pin));
	r1->conn = pin;
	cr_assert(pool_be_can_take(other->be));
	/* CL[0]'s sync waits for it, though the other backend is free */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(propose_new(p, &RQ[2], &CL[0], true, false).verdict, POOL_WAIT);
	/* while its asyncs still go there */
	d = propose_new(p, &RQ[3], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, pin);
	/* answered: the sync goes on the pinned connection */
	pool_conn_set_state(pin, POOL_IDLE);
	for (int i = 0; i < 3; i++) {
		d = propose_new(p, &RQ[2], &CL[0], true, false);
		cr_assert_eq(d.verdict, POOL_SEND);
		cr_assert_eq(d.conn, pin);
	}
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(RQ[2].epoch, CL[0].pin_epoch);
	cr_assert_eq(CL[0].pin, pin);
	pool_conn_set_state(pin, POOL_IDLE);
	pool_req_done(&RQ[2]);
	cr_assert_null(RQ[2].conn);
	cr_assert_null(CL[0].pin);
	cr_assert_null(CL[0].last_sync);
	/* unpinned: it may go anywhere again */
	conn_busy(f, pin->be - f->be, 0);
	d = propose_new(p, &RQ[4], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, other);
}

/* S1 (sync) on X, then A (async) follows it to X, then S1's answer: the pin stays (S1
 * was sent before A); S2 goes to X, and its answer clears the pin. */
Test(pool_commit, req_done_clears_the_pin_only_for_a_later_sync)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *x = d.conn;
	cr_assert_eq(RQ[0].epoch, 0);
	/* the async follows the sync in flight, though the other backend is idle */
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, x);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(CL[0].pin, x);
	cr_assert_eq(CL[0].pin_epoch, 1);
	/* S1 answered */
	pool_conn_set_state(x, POOL_IDLE);
	pool_req_done(&RQ[0]);
	cr_assert_eq(CL[0].pin, x, "an answer sent before the async must not clear the pin");
	cr_assert_null(CL[0].last_sync);
	/* S2: pinned */
	d = propose_new(p, &RQ[2], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, x);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(RQ[2].epoch, 1);
	pool_conn_set_state(x, POOL_IDLE);
	pool_req_done(&RQ[2]);
	cr_assert_null(CL[0].pin);
	/* done twice, or for a request never sent: nothing */
	pool_req_done(&RQ[2]);
	pool_req_init(&RQ[3], p, &CL[0], true, false);
	pool_req_done(&RQ[3]);
	cr_assert_null(CL[0].pin);
}

/* an async between two syncs in flight: only the newest sync's answer clears last_sync */
Test(pool_commit, async_follows_last_sync_while_in_flight)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 3, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *x = d.conn;
	cr_assert_eq(CL[0].last_sync, x);
	for (int i = 0; i < 4; i++) {
		d = propose_new(p, &RQ[1], &CL[0], false, false);
		cr_assert_eq(d.verdict, POOL_SEND);
		cr_assert_eq(d.conn, x);
		cr_assert_eq(d.be, x->be);
	}
	/* the sync is answered (and not followed by an async): the async may go anywhere */
	pool_conn_set_state(x, POOL_IDLE);
	pool_req_done(&RQ[0]);
	cr_assert_null(CL[0].last_sync);
	cr_assert_null(CL[0].pin);
	int hits[3] = { 0 };
	for (int i = 0; i < 6; i++) {
		d = propose_new(p, &RQ[1], &CL[0], false, false);
		cr_assert_eq(d.verdict, POOL_SEND);
		hits[d.be - f->be]++;
	}
	cr_assert_eq(hits[0] + hits[1] + hits[2], 6);
	cr_assert(hits[0] < 6 && hits[1] < 6 && hits[2] < 6);
}

Test(pool_commit, req_done_of_an_older_sync_keeps_last_sync)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *x = d.conn;
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *y = d.conn;
	cr_assert_neq(x, y);
	cr_assert_eq(CL[0].last_sync, y);
	pool_conn_set_state(x, POOL_IDLE);
	pool_req_done(&RQ[0]);
	cr_assert_eq(CL[0].last_sync, y);
	d = propose_new(p, &RQ[2], &CL[0], false, false);
	cr_assert_eq(d.conn, y);
	pool_conn_set_state(y, POOL_IDLE);
	pool_req_done(&RQ[1]);
	cr_assert_null(CL[0].last_sync);
}

/* S1 and S2 on the same connection: S1's answer, processed after S2 went, keeps last_sync */
Test(pool_commit, req_done_of_an_older_sync_on_the_same_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *x = d.conn;
	pool_conn_set_state(x, POOL_IDLE);
	conn_busy(f, 1 - (size_t)(x->be - f->be), 0);	/* S2 has only x */
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.conn, x);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(RQ[1].seq, 2);
	pool_req_done(&RQ[0]);
	cr_assert_eq(CL[0].last_sync, x, "S2 is still in flight on it");
	d = propose_new(p, &RQ[2], &CL[0], false, false);
	cr_assert_eq(d.conn, x);
	pool_conn_set_state(x, POOL_IDLE);
	pool_req_done(&RQ[1]);
	cr_assert_null(CL[0].last_sync);
}

Test(pool_commit, pin_goes_with_its_connection)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *pin = d.conn;
	size_t b = (size_t)(pin->be - f->be);
	/* streaming into it: both wait */
	pool_conn_hold(pin, POOL_HOLD_STREAM, true);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], true, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], false, false).verdict, POOL_WAIT);
	pool_conn_hold(pin, POOL_HOLD_STREAM, false);
	/* dirty (a stray message half-read): the sync waits for it, the async may go */
	pool_conn_hold(pin, POOL_HOLD_DIRTY, true);
	cr_assert(pool_be_can_take(&f->be[1 - b]));
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], true, false).verdict, POOL_WAIT);
	d = propose_new(p, &RQ[1], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, pin);
	pool_conn_hold(pin, POOL_HOLD_DIRTY, false);
	/* closing: ordering is moot, the pin goes */
	pool_conn_hold(pin, POOL_HOLD_CLOSING, true);
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_neq(d.conn, pin);
	cr_assert_null(CL[0].pin);
	pool_conn_set_state(pin, POOL_DOWN);	/* its close done */
	conn_up(f, b, 0);
	/* gone and reopened in the same record: a new serial, not pinned */
	d = propose_new(p, &RQ[2], &CL[0], false, false);
	cr_assert(pool_commit(p, &d));
	pin = d.conn;
	b = (size_t)(pin->be - f->be);
	pool_conn_set_state(pin, POOL_DOWN);
	conn_up(f, b, 0);
	cr_assert_eq(CL[0].pin, pin);
	cr_assert_neq(CL[0].pin_serial, pin->serial);
	conn_busy(f, b, 0);
	d = propose_new(p, &RQ[3], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_neq(d.conn, pin);
	cr_assert_null(CL[0].pin);
}

Test(pool_commit, pin_in_another_pool_does_not_bind)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 1, 1);
	struct pool *q = fx_simple(&W[1], 0, 1, 1, 1);

	all_up(&W[0]);
	all_up(&W[1]);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(q, &RQ[0], &CL[0], false, false);
	cr_assert(pool_commit(q, &d));
	cr_assert_eq(CL[0].pin_pool, q);
	conn_busy(&W[1], 0, 0);
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, rec(&W[0], 0, 0));
	/* in q it still binds */
	cr_assert_eq(propose_new(q, &RQ[2], &CL[0], true, false).verdict, POOL_WAIT);
}

/* ----------------------------------------------------------------------- queue */

Test(pool_queue, enqueue_fifo_and_bounded)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 1, 1);	/* queue_max 4, timeout 1000 */

	for (int i = 0; i < 4; i++)
		pool_client_init(&CL[i]);
	for (int i = 0; i < 4; i++) {
		pool_req_init(&RQ[i], p, &CL[i % 2], i != 1, false);
		cr_assert(pool_enqueue(p, &RQ[i], 100 + (uint64_t)i, false));
		cr_assert(RQ[i].is_queued);
		cr_assert_eq(RQ[i].deadline_ms, 1100 + (uint64_t)i);
	}
	cr_assert_eq(p->queue_len, 4);
	cr_assert_eq(p->queued_nofree, 1);	/* the async */
	pool_req_init(&RQ[4], p, &CL[2], true, false);
	cr_assert_not(pool_enqueue(p, &RQ[4], 0, false));
	cr_assert_not(RQ[4].is_queued);
	cr_assert_eq(p->queue_len, 4);
	/* pool order, and each client's order */
	struct pool_link *l = p->queue.next;
	for (int i = 0; i < 4; i++, l = l->next)
		cr_assert_eq(l, &RQ[i].qlink);
	cr_assert_eq(CL[0].queued.next, &RQ[0].clink);
	cr_assert_eq(CL[0].queued.next->next, &RQ[2].clink);
	cr_assert_eq(CL[1].queued.next, &RQ[1].clink);
	cr_assert_eq(CL[1].queued.next->next, &RQ[3].clink);
	cr_assert_eq(pool_client_next(&CL[0]), p);
	cr_assert_null(pool_client_next(&CL[2]));
	cr_assert_null(pool_client_next(NULL));
	/* taken off: room again */
	pool_unqueue(&RQ[1]);
	cr_assert_eq(p->queued_nofree, 0);
	cr_assert(pool_enqueue(p, &RQ[4], 0, false));
	cr_assert_eq(p->queue.prev, &RQ[4].qlink);
}

Test(pool_queue, retry_goes_first_even_when_full)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 1, 1);

	p->queue_max = 2;
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	pool_req_init(&RQ[0], p, &CL[0], true, false);
	pool_req_init(&RQ[1], p, &CL[1], true, false);
	pool_req_init(&RQ[2], p, &CL[1], true, false);
	cr_assert(pool_enqueue(p, &RQ[0], 0, false));
	cr_assert(pool_enqueue(p, &RQ[1], 0, false));
	cr_assert_not(pool_enqueue(p, &RQ[2], 0, false));
	cr_assert(pool_enqueue(p, &RQ[2], 100, true));
	cr_assert_eq(p->queue_len, 3);
	cr_assert_eq(p->queue.next, &RQ[2].qlink);
	cr_assert_eq(p->queue.next->next, &RQ[0].qlink);
	cr_assert_eq(CL[1].queued.next, &RQ[2].clink);
	cr_assert_eq(CL[1].queued.next->next, &RQ[1].clink);
	cr_assert_eq(RQ[2].deadline_ms, 1100);
	cr_assert_eq(pool_expired(p, 1000), &RQ[0]);
	pool_unqueue(&RQ[0]);
	pool_unqueue(&RQ[1]);
	cr_assert_null(pool_expired(p, 1099));
	cr_assert_eq(pool_expired(p, 1100), &RQ[2]);
}

Test(pool_queue, unqueue_returns_the_pool_of_the_clients_next_request)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 1, 1);
	struct pool *q = fx_simple(&W[1], 0, 1, 1, 1);

	pool_client_init(&CL[0]);
	pool_req_init(&RQ[0], p, &CL[0], true, false);
	pool_req_init(&RQ[1], q, &CL[0], true, false);
	pool_req_init(&RQ[2], p, &CL[0], false, false);
	pool_req_init(&RQ[3], q, &CL[0], true, false);
	cr_assert(pool_enqueue(p, &RQ[0], 0, false));
	cr_assert(pool_enqueue(q, &RQ[1], 0, false));
	cr_assert(pool_enqueue(p, &RQ[2], 0, false));
	cr_assert(pool_enqueue(q, &RQ[3], 0, false));
	/* not its client's next: nothing new may go */
	cr_assert_null(pool_unqueue(&RQ[3]));
	cr_assert_not(RQ[3].is_queued);
	cr_assert_eq(q->queue_len, 1);
	/* its client's next: the pool of the one after */
	cr_assert_eq(pool_unqueue(&RQ[0]), q);
	cr_assert_eq(pool_unqueue(&RQ[1]), p);
	cr_assert_null(pool_unqueue(&RQ[2]));
	cr_assert_eq(p->queue_len, 0);
	cr_assert_eq(q->queue_len, 0);
	cr_assert_eq(p->queued_nofree, 0);
	cr_assert(pool_list_empty(&CL[0].queued));
	/* nobody's request */
	pool_req_init(&RQ[4], p, NULL, true, false);
	cr_assert(pool_enqueue(p, &RQ[4], 0, false));
	cr_assert_null(pool_unqueue(&RQ[4]));
}

Test(pool_queue, expired_by_queue_timeout)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 1, 1);

	p->queue_timeout_ms = 100;
	pool_client_init(&CL[0]);
	pool_req_init(&RQ[0], p, &CL[0], true, false);
	pool_req_init(&RQ[1], p, &CL[0], true, false);
	cr_assert(pool_enqueue(p, &RQ[0], 1000, false));
	cr_assert(pool_enqueue(p, &RQ[1], 1050, false));
	cr_assert_null(pool_expired(p, 1099));
	cr_assert_eq(pool_expired(p, 1100), &RQ[0]);
	cr_assert_eq(pool_expired(p, 5000), &RQ[0]);	/* the oldest */
	pool_unqueue(&RQ[0]);
	cr_assert_null(pool_expired(p, 1149));
	cr_assert_eq(pool_expired(p, 1150), &RQ[1]);
	pool_unqueue(&RQ[1]);
	cr_assert_null(pool_expired(p, UINT64_MAX));
	/* timeout 0: waits forever */
	p->queue_timeout_ms = 0;
	cr_assert(pool_enqueue(p, &RQ[0], 1000, false));
	cr_assert_eq(RQ[0].deadline_ms, 0);
	cr_assert_null(pool_expired(p, UINT64_MAX));
}

/* ------------------------------------------------------------------ pool_next */

static struct pool_req *enq(struct pool *p, int i, struct pool_client *cl, bool is_sync,
			    bool is_dedicated)
{
	pool_req_init(&RQ[i], p, cl, is_sync, is_dedicated);
	cr_assert(pool_enqueue(p, &RQ[i], 0, false));
	return &RQ[i];
}

Test(pool_next, oldest_first)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 3, 3);

	all_up(f);
	for (int i = 0; i < 3; i++) {
		pool_client_init(&CL[i]);
		enq(p, i, &CL[i], true, false);
	}
	struct pool_link *cur = NULL;
	struct pool_decision d;
	for (int i = 0; i < 3; i++) {
		cr_assert(pool_next(p, &cur, &d));
		cr_assert_eq(d.verdict, POOL_SEND);
		cr_assert_eq(d.req, &RQ[i]);
		cr_assert(pool_commit(p, &d));
		cr_assert_eq(RQ[i].conn, d.conn);
	}
	cr_assert_not(pool_next(p, &cur, &d));
	cr_assert_eq(p->queue_len, 0);
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 3);
}

Test(pool_next, skips_a_request_that_is_not_its_clients_next)
{
	struct pool *p = fx_simple(&W[0], 0, 1, 2, 2);
	struct pool *q = fx_simple(&W[1], 0, 1, 1, 1);

	all_up(&W[0]);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	enq(q, 0, &CL[0], true, false);		/* CL[0]'s first, elsewhere */
	enq(p, 1, &CL[0], true, false);
	enq(p, 2, &CL[1], true, false);
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[2]);
	cr_assert(pool_commit(p, &d));
	cr_assert_not(pool_next(p, &cur, &d));
	/* CL[0]'s first leaves q: the caller is told to look at p */
	cr_assert_eq(pool_unqueue(&RQ[0]), p);
	cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[1]);
}

Test(pool_next, no_room_skips_syncs_but_returns_asyncs)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 1);

	all_up(f);
	conn_busy(f, 0, 0);	/* the only slot */
	for (int i = 0; i < 3; i++)
		pool_client_init(&CL[i]);
	enq(p, 0, &CL[0], true, false);
	enq(p, 1, &CL[1], false, false);
	enq(p, 2, &CL[2], true, true);
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[1]);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.conn, rec(f, 0, 1));	/* the idle one */
	cr_assert(pool_commit(p, &d));
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[2]);
	cr_assert_eq(d.verdict, POOL_OPEN);
	cr_assert(pool_commit(p, &d));
	cr_assert_not(pool_next(p, &cur, &d));
	cr_assert_eq(cur, &p->queue);
	cr_assert(RQ[0].is_queued);
	/* only syncs left and no room: nothing, from the start too */
	cur = NULL;
	cr_assert_not(pool_next(p, &cur, &d));
	/* room again */
	pool_conn_set_state(rec(f, 0, 0), POOL_IDLE);
	cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[0]);
}

Test(pool_next, none_for_every_request_when_started_and_hopeless)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	for (int i = 0; i < 3; i++)
		pool_client_init(&CL[i]);
	enq(p, 0, &CL[0], true, false);
	enq(p, 1, &CL[0], false, false);	/* not its client's next: NONE too */
	enq(p, 2, &CL[1], true, true);
	be_give_up(f, 0);
	be_give_up(f, 1);
	/* a lazy pool not started yet has not tried: no verdict on its queue */
	p->is_started = false;
	struct pool_link *cur = NULL;
	struct pool_decision d;
	while (pool_next(p, &cur, &d)) {
		cr_assert_neq(d.verdict, POOL_SEND);
		cr_assert_neq(d.req, &RQ[0], "a lazy pool's sync is not failed before it started");
	}
	p->is_started = true;
	cur = NULL;
	for (int i = 0; i < 3; i++) {
		cr_assert(pool_next(p, &cur, &d));
		cr_assert_eq(d.verdict, POOL_NONE);
		cr_assert_eq(d.req, &RQ[i]);
		cr_assert_null(d.conn);
		if (i == 1)
			pool_unqueue(&RQ[i]);	/* the caller fails it */
	}
	cr_assert_not(pool_next(p, &cur, &d));
	cr_assert_eq(p->queue_len, 2);
}

/* the caller commits, skips or unqueues what pool_next returns, and calls again */
Test(pool_next, cursor_protocol)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 4, 4);

	all_up(f);
	p->queue_max = 8;
	for (int i = 0; i < 4; i++)
		pool_client_init(&CL[i]);
	enq(p, 0, &CL[0], true, false);
	enq(p, 1, &CL[1], true, false);
	enq(p, 2, &CL[2], true, false);
	enq(p, 3, &CL[1], true, false);	/* CL[1]'s second */
	enq(p, 4, &CL[3], false, false);
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[0]);
	cr_assert(pool_commit(p, &d));			/* commit */
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[1]);			/* skip: CL[1] cannot take it now */
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[2]);
	cr_assert_null(pool_unqueue(&RQ[2]));		/* unqueue (failed) */
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[4]);			/* RQ[3] is behind RQ[1] */
	cr_assert(pool_commit(p, &d));
	cr_assert_not(pool_next(p, &cur, &d));
	cr_assert_not(pool_next(p, &cur, &d));		/* stays at the end */
	cr_assert_eq(p->queue_len, 2);
	/* the next pass starts over */
	cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[1]);
	cr_assert(pool_commit(p, &d));
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[3]);
	cr_assert(pool_commit(p, &d));
	cr_assert_neq(RQ[3].conn, RQ[1].conn);
	cr_assert_not(pool_next(p, &cur, &d));
	cr_assert_eq(p->queue_len, 0);
	check_be(&f->be[0]);
}

Test(pool_next, pinned_sync_waits_while_others_go)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert(pool_commit(p, &d));
	struct pool_conn *pin = d.conn;
	cr_assert(pool_checkout(pin));	/* busy with something else */
	enq(p, 1, &CL[0], true, false);
	enq(p, 2, &CL[1], true, false);
	struct pool_link *cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[2]);
	cr_assert_neq(d.conn, pin);
	cr_assert(pool_commit(p, &d));
	cr_assert_not(pool_next(p, &cur, &d));
	pool_conn_set_state(pin, POOL_IDLE);
	cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[1]);
	cr_assert_eq(d.conn, pin);
}

/* ----------------------------------------------------------------- client gone */

Test(pool_client, gone_leaves_requests_queued_as_nobodys)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);
	struct pool *q = fx_simple(&W[1], 0, 1, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert(pool_commit(p, &d));
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert(pool_commit(p, &d));
	cr_assert_not_null(CL[0].pin);
	cr_assert_not_null(CL[0].last_sync);
	enq(p, 2, &CL[0], true, false);
	enq(q, 3, &CL[0], false, false);
	enq(p, 4, &CL[0], false, false);
	pool_client_gone(&CL[0]);
	cr_assert_null(CL[0].pin);
	cr_assert_null(CL[0].last_sync);
	cr_assert(pool_list_empty(&CL[0].queued));
	cr_assert_null(pool_client_next(&CL[0]));
	for (int i = 2; i <= 4; i++) {
		cr_assert_null(RQ[i].client);
		cr_assert(RQ[i].is_queued);
	}
	cr_assert_eq(p->queue_len, 2);
	cr_assert_eq(q->queue_len, 1);
	cr_assert(on_list(&p->queue, &RQ[2].qlink));
	cr_assert(on_list(&p->queue, &RQ[4].qlink));
	/* the caller fails them; nobody's requests name no next pool */
	cr_assert_null(pool_unqueue(&RQ[2]));
	cr_assert_null(pool_unqueue(&RQ[3]));
	/* or they may still go (nobody waits for the answer of an async) */
	struct pool_link *cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[4]);
	cr_assert(pool_commit(p, &d));
	cr_assert_eq(p->queue_len, 0);
	/* the sync sent before it left: its answer touches no client state */
	pool_req_done(&RQ[1]);
	cr_assert_null(CL[0].pin);
}

/* ------------------------------------------------------------- waiters bits */

static struct pool *two_workers(uint32_t max_inflight, uint32_t ns)
{
	sh_init(1, max_inflight);
	struct pool *p0 = fx_make(&W[0], 0, 1, ns, max_inflight, SH, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, ns, max_inflight, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	return p0;
}

Test(pool_waiting, bit_set_while_another_worker_holds_the_slot)
{
	struct pool *p0 = two_workers(1, 1);

	pool_client_init(&CL[0]);
	enq(p0, 0, &CL[0], true, false);
	/* a slot free: no bit, but a sync waits beside it, so the caller looks again */
	cr_assert(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 0);
	/* the other worker holds it */
	struct pool_conn *c1 = conn_busy(&W[1], 0, 0);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 1u << 0);
	cr_assert(p0->is_waiting);
	/* giving it back wakes worker 0 */
	cr_assert_eq(pool_conn_set_state(c1, POOL_IDLE), 1u << 0);
	/* worker 0 dispatches: the bit goes */
	cr_assert(pool_be_can_take(&W[0].be[0]));
	pool_unqueue(&RQ[0]);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 0);
	cr_assert_not(p0->is_waiting);
	/* nothing queued: no bit even with the slot held */
	conn_busy(&W[1], 0, 0);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 0);
}

/*
 * Before: a slot given back between a worker's dispatch pass (which found none) and its
 * pool_update_waiting went to nobody. The giver saw no bit, the late look saw the slot open
 * and set no bit, and said "nothing came free": that worker's queue was never looked at
 * again while the other worker kept both backends busy (qbench with 2 workers: requests
 * failed with "qgate: queue timeout" after 5 s, others answered in milliseconds).
 */
Test(pool_waiting, slot_freed_before_the_look_is_not_lost)
{
	struct pool *p0 = two_workers(1, 1);
	struct pool_link *cur = NULL;
	struct pool_decision d;

	pool_client_init(&CL[0]);
	struct pool_conn *c1 = conn_busy(&W[1], 0, 0);
	enq(p0, 0, &CL[0], true, false);
	/* worker 0's pass: no slot */
	cr_assert_not(pool_next(p0, &cur, &d));
	/* worker 1's answer comes in now: nobody to wake */
	cr_assert_eq(pool_conn_set_state(c1, POOL_IDLE), 0);
	/* worker 0's look after its pass must send it round again (or have the tick do it) */
	cr_assert(pool_update_waiting(p0), "a slot freed between the pass and the look was lost");
	cr_assert(p0->is_waiting);
	cur = NULL;
	cr_assert(pool_next(p0, &cur, &d));
	cr_assert_eq(d.req, &RQ[0]);
	cr_assert(pool_commit(p0, &d));
	/* the queue is empty now: the flag goes at the next look */
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_not(p0->is_waiting);
}

/* a slot open but the waiting sync cannot take it now (another worker got there first):
 * the tick looks again even though no bit was set */
Test(pool_waiting, open_slot_taken_by_another_worker_is_covered_by_the_tick)
{
	struct pool *p0 = two_workers(1, 1);

	pool_client_init(&CL[0]);
	enq(p0, 0, &CL[0], true, false);
	cr_assert(pool_update_waiting(p0));
	conn_busy(&W[1], 0, 0);
	cr_assert(p0->is_waiting, "no bit was set and nothing would look at the queue again");
}

Test(pool_waiting, no_bit_for_asyncs_or_without_a_free_connection)
{
	struct pool *p0 = two_workers(1, 1);

	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	conn_busy(&W[1], 0, 0);
	/* only asyncs and dedicated syncs wait: they need no slot */
	enq(p0, 0, &CL[0], false, false);
	enq(p0, 1, &CL[1], true, true);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 0);
	/* a sync waits, but worker 0 has no free connection on that backend */
	enq(p0, 2, &CL[1], true, false);
	pool_conn_hold(rec(&W[0], 0, 0), POOL_HOLD_DIRTY, true);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 0);
	pool_conn_hold(rec(&W[0], 0, 0), POOL_HOLD_DIRTY, false);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 1u << 0);
	/* the bit goes when the free connection does */
	pool_conn_set_state(rec(&W[0], 0, 0), POOL_DOWN);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(SH[0].waiters, 0);
}

Test(pool_waiting, set_state_wakes_the_other_workers_only)
{
	struct pool *p0 = two_workers(2, 2);
	struct pool *p1 = &W[1].p;

	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	struct pool_conn *a = conn_busy(&W[0], 0, 0);
	struct pool_conn *b = conn_busy(&W[1], 0, 0);
	enq(p0, 0, &CL[0], true, false);
	enq(p1, 1, &CL[1], true, false);
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_not(pool_update_waiting(p1));
	cr_assert_eq(SH[0].waiters, 3);
	/* giving a slot back: it is kept for the other waiting record, whose worker is woken */
	cr_assert_eq(pool_conn_set_state(a, POOL_IDLE), 1u << 1);
	cr_assert_eq(SH[0].turn, W[1].be[0].reg);
	cr_assert_not(pool_checkout(a), "the giver took back the slot kept for worker 1");
	NOW += POOL_TURN_MS;	/* worker 1 did not come for it in time: anyone's again */
	cr_assert(pool_checkout(a));
	pool_conn_set_state(a, POOL_DRAINING);
	cr_assert_eq(pool_conn_set_state(a, POOL_DOWN), 1u << 1);
	NOW += POOL_TURN_MS;
	cr_assert_eq(pool_conn_set_state(b, POOL_DRAINING), 0);	/* keeps its slot */
	cr_assert_eq(pool_conn_set_state(b, POOL_IDLE), 1u << 0);
	/* nothing given back: nobody woken */
	cr_assert_eq(pool_conn_set_state(b, POOL_DOWN), 0);
	/* a third record (another pool of worker 0): the slot is kept for the next waiting
	 * record after it (round robin over the registrations), worker 0's */
	NOW += POOL_TURN_MS;
	struct pool_be lone;
	struct pool_slot ls[1];
	memset(ls, 0, sizeof(ls));
	pool_be_init(&lone, &W[0].p, 1, &SH[0], 2, ls, 1);
	cr_assert_eq(lone.reg, 2);
	pool_conn_init(&ls[0].rec, &lone, POOL_CONN_POOLED, 0, NULL);
	pool_conn_set_state(&ls[0].rec, POOL_CONNECTING);
	pool_conn_set_state(&ls[0].rec, POOL_HANDSHAKE);
	pool_conn_set_state(&ls[0].rec, POOL_IDLE);
	cr_assert(pool_checkout(&ls[0].rec));
	cr_assert_eq(pool_conn_set_state(&ls[0].rec, POOL_IDLE), 1u << 0);
}

/* every registration of a backend taken: a further record counts, but has no bit */
Test(pool_waiting, beyond_64_records_no_bit)
{
	sh_init(1, 1);
	SH[0].regs = ~0ULL;
	struct pool *p = fx_make(&W[0], 0, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	SH[0].regs = 0;
	fx_make(&W[1], 1, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	cr_assert_eq(W[0].be[0].reg, -1);
	conn_busy(&W[1], 0, 0);
	pool_client_init(&CL[0]);
	enq(p, 0, &CL[0], true, false);
	cr_assert_not(pool_update_waiting(p));
	cr_assert_eq(SH[0].waiters, 0);
}

/*
 * The race pool_update_waiting closes: the other worker gives its slot back after the
 * check and before the bit is visible. To make it happen deterministically, the shared
 * counters live on a read-only page: the bit's atomic OR faults, and the handler makes
 * the page writable and has "worker 1" give its slot back before the OR is retried.
 */
static struct pool_shared *race_sh;
static struct pool_conn *race_conn;
static volatile sig_atomic_t race_faults;

static void race_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	race_faults++;
	mprotect((void *)race_sh, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE);
	pool_conn_set_state(race_conn, POOL_IDLE);	/* worker 1 gives its slot back */
}

Test(pool_waiting, returns_true_when_a_slot_came_free_meanwhile)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	void *page = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(page, MAP_FAILED);
	race_sh = page;
	pool_shared_init(race_sh, 1, 0);
	struct pool *p0 = fx_make(&W[0], 0, 1, 1, 1, race_sh, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, 1, 1, race_sh, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	race_conn = conn_busy(&W[1], 0, 0);
	pool_client_init(&CL[0]);
	enq(p0, 0, &CL[0], true, false);

	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = race_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGSEGV, &sa, &old), 0);
	cr_assert_eq(mprotect(page, pg, PROT_READ), 0);
	bool again = pool_update_waiting(p0);
	sigaction(SIGSEGV, &old, NULL);
	mprotect(page, pg, PROT_READ | PROT_WRITE);
	cr_assert_eq(race_faults, 1, "the bit was set %d times through a fault", race_faults);
	cr_assert(again, "a slot came free between the check and the bit: dispatch again");
	cr_assert_eq(race_sh->waiters, 1u << 0);
	cr_assert(pool_be_can_take(&W[0].be[0]));
	/* the redispatch sends it, and the next update clears the bit */
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert(pool_next(p0, &cur, &d));
	cr_assert(pool_commit(p0, &d));
	cr_assert_not(pool_update_waiting(p0));
	cr_assert_eq(race_sh->waiters, 0);
	munmap(page, pg);
}

/*
 * Every slot held by this pool's own connection: its bit is set (a slot it frees is kept
 * for another waiting record in turn, and one kept for it needs the bit), but the tick need
 * not redispatch it (is_waiting): its own answer dispatches it anyway.
 */
Test(pool_waiting, own_connections_holding_the_slots_need_no_tick)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 2, 1);

	all_up(f);
	conn_busy(f, 0, 0);	/* this worker's own: its answer dispatches the pool anyway */
	pool_client_init(&CL[0]);
	enq(p, 0, &CL[0], true, false);
	cr_assert_not(pool_update_waiting(p));
	cr_assert_eq(f->be[0].shared->waiters, 1u << f->be[0].reg);
	cr_assert_not(p->is_waiting, "the tick would redispatch a pool its own answer wakes");
}

/* ------------------------------------------------------------------ reconnects */

Test(pool_slot, up_reports_a_reconnect)
{
	struct fx *f = &W[0];

	fx_simple(f, 0, 1, 1, 1);
	struct pool_be *be = &f->be[0];
	conn_open(f, 0, 0);
	cr_assert_not(pool_slot_up(be, 0));	/* first connection */
	pool_conn_set_state(rec(f, 0, 0), POOL_DOWN);
	cr_assert_eq(pool_slot_lost(be, 0, POOL_CONNECTING, &BC, 0.5, 0), 500);
	cr_assert(pool_slot_up(be, 0));
	cr_assert_eq(f->slots[0][0].failures, 0);
	cr_assert_not(pool_slot_up(be, 0));
}

Test(pool_slot, lost_healthy_retries_at_once)
{
	static const enum pool_conn_state was[] = { POOL_IDLE, POOL_BUSY, POOL_DRAINING };
	struct fx *f = &W[0];

	for (size_t i = 0; i < 3; i++) {
		fx_simple(f, 0, 1, 1, 1);
		struct pool_be *be = &f->be[0];
		struct pool_conn *c = pooled_to(f, 0, 0, was[i]);
		cr_assert_not(pool_slot_due(be, 0, 0));	/* not down */
		pool_conn_set_state(c, POOL_DOWN);
		cr_assert_eq(pool_slot_lost(be, 0, was[i], &BC, 0.5, 7000), 0);
		cr_assert_eq(f->slots[0][0].retry_at_ms, 7000);
		cr_assert(pool_slot_due(be, 0, 7000));
		cr_assert_not(f->slots[0][0].is_given_up);
		cr_assert_not(pool_be_is_hopeless(be));
		/* its reconnect, when it comes up, is one */
		conn_open(f, 0, 0);
		cr_assert(pool_slot_up(be, 0));
	}
}

Test(pool_slot, backoff_grows_then_gives_up)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);
	struct pool_be *be = &f->be[0];
	struct pool_slot *sl = &f->slots[0][0];
	uint64_t now = 10000;
	static const int64_t want[] = { 500, 1000, 2000 };	/* attempts 3 */

	for (int i = 0; i < 3; i++) {
		struct pool_conn *c = conn_open(f, 0, 0);
		if (i == 1)
			pool_conn_set_state(c, POOL_HANDSHAKE);	/* refused in its handshake */
		pool_conn_set_state(c, POOL_DOWN);
		enum pool_conn_state was = i == 1 ? POOL_HANDSHAKE : POOL_CONNECTING;
		int64_t d = pool_slot_lost(be, 0, was, &BC, 0.5, now);
		cr_assert_eq(d, want[i], "attempt %d: %lld", i + 1, (long long)d);
		cr_assert_eq(sl->failures, (uint32_t)i + 1);
		cr_assert_eq(sl->retry_at_ms, now + (uint64_t)d);
		cr_assert_not(pool_slot_due(be, 0, now + (uint64_t)d - 1));
		cr_assert(pool_slot_due(be, 0, now + (uint64_t)d));
		cr_assert(pool_has_hope(p));
		now += (uint64_t)d;
	}
	struct pool_conn *c = conn_open(f, 0, 0);
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(pool_slot_lost(be, 0, POOL_CONNECTING, &BC, 0.5, now), -1);
	cr_assert(sl->is_given_up);
	cr_assert_not(pool_slot_due(be, 0, UINT64_MAX));
	cr_assert(pool_be_is_hopeless(be));
	cr_assert_not(pool_has_hope(p));
}

/* a healthy connection lost counts as the first failure: reopened at once, then the
 * failed reopenings back off from the second step on, within `attempts` in all */
Test(pool_slot, healthy_loss_then_failed_reopenings)
{
	struct fx *f = &W[0];
	struct pool_be *be = &f->be[0];

	fx_simple(f, 0, 1, 1, 1);
	struct pool_conn *c = conn_up(f, 0, 0);
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(pool_slot_lost(be, 0, POOL_IDLE, &BC, 0.5, 0), 0);
	conn_open(f, 0, 0);
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(pool_slot_lost(be, 0, POOL_CONNECTING, &BC, 0.5, 0), 1000);
	conn_open(f, 0, 0);
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(pool_slot_lost(be, 0, POOL_CONNECTING, &BC, 0.5, 0), 2000);
	conn_open(f, 0, 0);
	pool_conn_set_state(c, POOL_DOWN);
	cr_assert_eq(pool_slot_lost(be, 0, POOL_CONNECTING, &BC, 0.5, 0), -1);
	cr_assert(f->slots[0][0].is_given_up);
}

Test(pool_slot, jitter_comes_from_u01)
{
	struct fx *f = &W[0];
	struct pool_backoff_cfg bc = BC;

	bc.jitter = 0.5;
	fx_simple(f, 0, 1, 1, 1);
	cr_assert_eq(pool_slot_lost(&f->be[0], 0, POOL_CONNECTING, &bc, 0.0, 0), 250);
	cr_assert_eq(pool_slot_lost(&f->be[0], 0, POOL_CONNECTING, &bc, 0.5, 0), 1000);
}

Test(pool_slot, lost_while_open_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
	struct fx *f = &W[0];

	fx_simple(f, 0, 1, 1, 1);
	conn_open(f, 0, 0);
	pool_slot_lost(&f->be[0], 0, POOL_CONNECTING, &BC, 0.5, 0);
}

/* -------------------------------------------------------------------- sessions */

Test(pool_session, pick_skips_backends_in_backoff)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 3, 0, 1);

	cr_assert_eq(pool_session_failed(&f->be[0], &BC, 0.5, 1000), 500);
	cr_assert_eq(pool_session_failed(&f->be[0], &BC, 0.5, 1000), 1000);	/* till 2000 */
	cr_assert_eq(pool_session_failed(&f->be[1], &BC, 0.5, 1000), 500);	/* till 1500 */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pool_pick_session(p, 1000), &f->be[2]);
	/* the backend with the fewest sessions */
	struct pool_conn s0, s1;
	extra_to(&s0, &f->be[2], POOL_CONN_SESSION, POOL_BUSY);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pool_pick_session(p, 1500), &f->be[1]);
	extra_to(&s1, &f->be[1], POOL_CONN_SESSION, POOL_BUSY);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pool_pick_session(p, 2000), &f->be[0]);
	/* every backend backing off: none */
	pool_session_failed(&f->be[2], &BC, 0.5, 1000);
	cr_assert_null(pool_pick_session(p, 1400));
	/* a session came up: its failures are forgotten */
	cr_assert(pool_session_ok(&f->be[1]));
	cr_assert_eq(f->be[1].session_failures, 0);
	cr_assert_eq(pool_pick_session(p, 1400), &f->be[1]);
	cr_assert_not(pool_session_ok(&f->be[1]));
	/* backoff restarts from the first delay */
	cr_assert_eq(pool_session_failed(&f->be[1], &BC, 0.5, 0), 500);
}

Test(pool_session, failures_never_give_up)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 0, 1);

	for (int i = 0; i < 10; i++) {
		int64_t d = pool_session_failed(&f->be[0], &BC, 0.5, 100);
		cr_assert(d >= 0, "failure %d: %lld", i + 1, (long long)d);
		cr_assert_eq(f->be[0].session_retry_at_ms, 100 + (uint64_t)d);
	}
	cr_assert_eq(pool_pick_session(p, UINT64_MAX), &f->be[0]);
}

/* ---------------------------------------------------------------------- affinity */

/* client affinity: the strategy places a client once; its messages then go there only */
Test(pool_affinity, client_stays_on_its_backend)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 3, 1, 1);

	p->affinity = POOL_AFFINITY_CLIENT;
	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	struct pool_be *home = d.be;
	cr_assert(pool_commit(p, &d));
	/* its home is busy, two others are free: a sync of its own waits for its home */
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_WAIT);
	/* an async goes home too (busy is fine for an async) */
	d = propose_new(p, &RQ[2], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.be, home);
	/* another client is placed by the strategy, not on the busy home */
	pool_client_init(&CL[1]);
	d = propose_new(p, &RQ[3], &CL[1], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_neq(d.be, home);
	/* a dedicated request of the first client opens its socket at home */
	d = propose_new(p, &RQ[4], &CL[0], true, true);
	cr_assert_eq(d.verdict, POOL_OPEN);
	cr_assert_eq(d.be, home);
	cr_assert_eq(p->affinity_moves, 0);
}

/* user affinity: the same user's clients get the same backend, in any worker's pool */
Test(pool_affinity, user_is_the_same_everywhere)
{
	struct pool *p0 = fx_simple(&W[0], 0, 3, 1, 1), *p1 = fx_simple(&W[1], 1, 3, 1, 1);
	int same = 0;

	p0->affinity = p1->affinity = POOL_AFFINITY_USER;
	all_up(&W[0]);
	all_up(&W[1]);
	for (size_t b = 0; b < 3; b++)	/* the names of the backends, as both workers see them */
		W[0].be[b].key = W[1].be[b].key = pool_key_of("b1b2b3" + 2 * b, 2);
	for (int u = 0; u < 16; u++) {
		char user[8];
		snprintf(user, sizeof(user), "u%d", u);
		pool_client_init(&CL[0]);
		pool_client_init(&CL[1]);
		CL[0].user_key = CL[1].user_key = pool_key_of(user, strlen(user));
		struct pool_decision a = propose_new(p0, &RQ[0], &CL[0], false, false);
		struct pool_decision b = propose_new(p1, &RQ[1], &CL[1], false, false);
		cr_assert_eq(a.verdict, POOL_SEND);
		cr_assert_eq(b.verdict, POOL_SEND);
		cr_assert_eq(a.be - W[0].be, b.be - W[1].be, "user %s: backend %td and %td", user,
			     a.be - W[0].be, b.be - W[1].be);
		same += a.be == &W[0].be[0];
	}
	/* and users spread: 16 users do not all hash to one backend */
	cr_assert(same > 0 && same < 16, "%d of 16 users on b1", same);
}

/* a client whose backend goes down moves, and the decision says from where */
Test(pool_affinity, a_client_moves_off_a_backend_that_went_down)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	p->affinity = POOL_AFFINITY_CLIENT;
	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	struct pool_be *home = d.be;
	cr_assert_null(d.moved_from);
	/* its home goes down */
	pool_conn_set_state(rec(f, (size_t)(home - f->be), 0), POOL_DOWN);
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_neq(d.be, home);
	cr_assert_eq(d.moved_from, home);
	cr_assert_eq(p->affinity_moves, 1);
	/* it stays on the new one, even once the old one is back */
	conn_up(f, (size_t)(home - f->be), 0);
	struct pool_be *now = d.be;
	d = propose_new(p, &RQ[2], &CL[0], true, false);
	cr_assert_eq(d.be, now);
	cr_assert_null(d.moved_from);
	cr_assert_eq(p->affinity_moves, 1);
}

/* ------------------------------------------------------------- admin: pause, disable */

/* a paused pool lets nothing new go, sync, async or dedicated, and hands nothing out of its
 * queue; resumed, the queue leaves in its order */
Test(pool_admin, pause_holds_everything_new_until_resume)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 2, 2);

	all_up(f);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	cr_assert(pool_set_paused(p, true));
	cr_assert_not(pool_set_paused(p, true), "a second pause changes nothing");
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], false, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, true).verdict, POOL_WAIT);
	enq(p, 0, &CL[0], true, false);
	enq(p, 1, &CL[1], false, false);	/* an async: needs no free connection */
	enq(p, 2, &CL[1], true, true);		/* a dedicated sync */
	enq(p, 3, &CL[0], true, false);
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert_not(pool_next(p, &cur, &d), "a paused pool hands nothing out");
	cr_assert_eq(p->queue_len, 4);
	/* its queue's deadlines still run (queue.timeout_ms applies while paused) */
	RQ[0].deadline_ms = 500;
	cr_assert_eq(pool_expired(p, 1000), &RQ[0]);
	RQ[0].deadline_ms = 0;
	/* no slot is waited for while paused */
	cr_assert_not(pool_update_waiting(p));
	cr_assert_not(p->is_waiting);
	cr_assert(pool_set_paused(p, false));
	cr_assert_not(pool_set_paused(p, false));
	cur = NULL;
	for (int i = 0; i < 4; i++) {
		cr_assert(pool_next(p, &cur, &d), "request %d", i);
		cr_assert_eq(d.req, &RQ[i], "request %d leaves in order", i);
		cr_assert_neq(d.verdict, POOL_NONE);
		cr_assert(pool_commit(p, &d));
	}
	cr_assert_eq(p->queue_len, 0);
}

/* a paused pool still fails what can never go anywhere (no hope), as an unpaused one */
Test(pool_admin, pause_does_not_hide_a_hopeless_pool)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);

	be_give_up(f, 0);
	pool_set_paused(p, true);
	pool_client_init(&CL[0]);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, false).verdict, POOL_NONE);
}

/* a paused session pool starts no session */
Test(pool_admin, pause_refuses_new_sessions)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 0, 1);

	cr_assert_not_null(pool_pick_session(p, 0));
	pool_set_paused(p, true);
	cr_assert_null(pool_pick_session(p, 0));
	pool_set_paused(p, false);
	cr_assert_not_null(pool_pick_session(p, 0));
}

/* a disabled backend takes no sync, no async, no dedicated socket, no session */
Test(pool_admin, disabled_backend_takes_nothing_new)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 2, 2);

	all_up(f);
	pool_client_init(&CL[0]);
	cr_assert(pool_be_set_disabled(&f->be[0], true));
	cr_assert_not(pool_be_set_disabled(&f->be[0], true));
	cr_assert_not(pool_be_can_take(&f->be[0]));
	for (int i = 0; i < 8; i++) {
		struct pool_decision d = propose_new(p, &RQ[0], &CL[0], i % 2 == 0, false);
		cr_assert_eq(d.verdict, POOL_SEND);
		cr_assert_eq(d.be, &f->be[1], "try %d went to the disabled backend", i);
		d = propose_new(p, &RQ[1], &CL[0], true, true);
		cr_assert_eq(d.verdict, POOL_OPEN);
		cr_assert_eq(d.be, &f->be[1]);
		cr_assert_eq(pool_pick_session(p, 0), &f->be[1]);
	}
}

/* what runs on a backend disabled meanwhile finishes normally (its slot comes back) */
Test(pool_admin, disabled_backend_finishes_what_it_runs)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 1, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert(pool_commit(p, &d));
	pool_be_set_disabled(&f->be[0], true);
	pool_conn_set_state(d.conn, POOL_IDLE);	/* its answer is in */
	pool_req_done(&RQ[0]);
	check_be(&f->be[0]);
	cr_assert_eq(pool_shared_inflight(f->be[0].shared), 0);
	cr_assert_eq(d.conn->state, POOL_IDLE, "the connection stays up");
	cr_assert_eq(propose_new(p, &RQ[1], &CL[0], true, false).verdict, POOL_WAIT);
}

/* every backend disabled: requests wait (not fail); enabled, they go */
Test(pool_admin, all_disabled_waits_then_enable_serves)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	pool_client_init(&CL[1]);
	pool_be_set_disabled(&f->be[0], true);
	pool_be_set_disabled(&f->be[1], true);
	cr_assert(pool_has_hope(p));
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], false, false).verdict, POOL_WAIT);
	cr_assert_eq(propose_new(p, &RQ[0], &CL[0], true, true).verdict, POOL_WAIT);
	enq(p, 0, &CL[0], true, false);
	enq(p, 1, &CL[1], true, true);
	struct pool_link *cur = NULL;
	struct pool_decision d;
	cr_assert_not(pool_next(p, &cur, &d));
	cr_assert(pool_be_set_disabled(&f->be[1], false));
	cur = NULL;
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[0]);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_eq(d.be, &f->be[1]);
	cr_assert(pool_commit(p, &d));
	cr_assert(pool_next(p, &cur, &d));
	cr_assert_eq(d.req, &RQ[1]);
	cr_assert_eq(d.verdict, POOL_OPEN);
	cr_assert_eq(d.be, &f->be[1]);
}

/* an async pin to a disabled backend's connection is dropped: the next sync goes elsewhere */
Test(pool_admin, pin_to_a_disabled_backend_goes)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], false, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert(pool_commit(p, &d));
	struct pool_be *pinned_be = d.be;
	cr_assert_eq(CL[0].pin, d.conn);
	pool_be_set_disabled(pinned_be, true);
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_neq(d.be, pinned_be);
	cr_assert_null(CL[0].pin);
}

/* affinity: a client whose home is disabled moves, and says from where */
Test(pool_admin, affinity_moves_off_a_disabled_home)
{
	struct fx *f = &W[0];
	struct pool *p = fx_simple(f, 0, 2, 1, 1);

	p->affinity = POOL_AFFINITY_CLIENT;
	all_up(f);
	pool_client_init(&CL[0]);
	struct pool_decision d = propose_new(p, &RQ[0], &CL[0], true, false);
	struct pool_be *home = d.be;
	pool_be_set_disabled(home, true);
	d = propose_new(p, &RQ[1], &CL[0], true, false);
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert_neq(d.be, home);
	cr_assert_eq(d.moved_from, home);
}

/* a disabled backend's free connection is not waited on for a slot */
Test(pool_admin, disabled_backend_sets_no_waiter_bit)
{
	sh_init(1, 1);
	struct pool *p0 = fx_make(&W[0], 0, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	fx_make(&W[1], 1, 1, 1, 1, SH, POOL_LEAST_OUTSTANDING, NULL);
	all_up(&W[0]);
	all_up(&W[1]);
	conn_busy(&W[1], 0, 0);
	pool_client_init(&CL[0]);
	enq(p0, 0, &CL[0], true, false);
	pool_be_set_disabled(&W[0].be[0], true);
	pool_update_waiting(p0);
	cr_assert_eq(__atomic_load_n(&SH[0].waiters, __ATOMIC_SEQ_CST), 0);
	pool_be_set_disabled(&W[0].be[0], false);
	pool_update_waiting(p0);
	cr_assert_neq(__atomic_load_n(&SH[0].waiters, __ATOMIC_SEQ_CST), 0);
}
