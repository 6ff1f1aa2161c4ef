/*
 * test_limit — pool/limit.c (the adaptive max_inflight limiter, the call cost table) and the
 * placement pool.c builds on them (max_inflight "auto": a heavy call runs alone, the least
 * expected wait wins). Time is passed in: the limiter is driven by a simulated q.
 *
 * The simulated q is what makes the limiter's case: one process running one request at a
 * time (FIFO), a fixed round trip rtt0 between gateway and q (network and gateway overhead,
 * half each way) and a service time s per request. Closed loop: the gateway always has more
 * requests than the limit lets go, and sends the next one the moment an answer frees a slot.
 * Each answer is a sample: its time from send to answer, and how many were in flight when it
 * was sent.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "pool/limit.h"
#include "pool/pool.h"

/* --------------------------------------------------------------- a simulated q */

#define SIM_MAX 64

struct sim {
	uint64_t now_us;		/* the gateway's clock */
	uint64_t server_free_us;	/* when q has finished what it was sent */
	uint64_t sent[SIM_MAX], done[SIM_MAX];
	uint32_t depth[SIM_MAX];
	uint32_t head, n;		/* requests in flight, oldest first */
	uint32_t rtt0_us;
	uint32_t s_us;			/* service time of what is sent next */
	struct pool_limit lim;
	/* over the answers of the last run */
	uint32_t lim_min, lim_max;
	uint64_t lim_sum, answers, waited_us;
};

static void sim_init(struct sim *m, uint32_t rtt0_us, uint32_t s_us, uint32_t ceiling)
{
	memset(m, 0, sizeof(*m));
	m->rtt0_us = rtt0_us;
	m->s_us = s_us;
	pool_limit_init(&m->lim, ceiling);
}

/* Run until `answers` answers came back; limits seen are recorded. */
static void sim_run(struct sim *m, uint64_t answers)
{
	m->lim_min = UINT32_MAX;
	m->lim_max = 0;
	m->lim_sum = 0;
	m->answers = 0;
	m->waited_us = 0;
	for (uint64_t a = 0; a < answers; a++) {
		/* send while the limit lets */
		while (m->n < m->lim.limit) {
			cr_assert_lt(m->n, SIM_MAX);
			uint32_t k = (m->head + m->n) % SIM_MAX;
			uint64_t arrive = m->now_us + m->rtt0_us / 2;
			uint64_t start = arrive > m->server_free_us ? arrive : m->server_free_us;
			m->waited_us += start - arrive;	/* queued inside q */
			m->server_free_us = start + m->s_us;
			m->sent[k] = m->now_us;
			m->done[k] = m->server_free_us + m->rtt0_us / 2;
			m->depth[k] = ++m->n;
		}
		/* the oldest answer comes back (q is FIFO: answers come in send order) */
		uint32_t k = m->head;
		m->head = (m->head + 1) % SIM_MAX;
		m->n--;
		m->now_us = m->done[k];
		uint32_t l = pool_limit_sample(&m->lim, (uint32_t)(m->done[k] - m->sent[k]),
					       m->depth[k], m->now_us);
		cr_assert(l >= 1 && l <= m->lim.ceiling, "limit %u outside 1..%u", l,
			  m->lim.ceiling);
		if (l < m->lim_min)
			m->lim_min = l;
		if (l > m->lim_max)
			m->lim_max = l;
		m->lim_sum += l;
		m->answers++;
	}
}

static double sim_mean_limit(const struct sim *m)
{
	return (double)m->lim_sum / (double)m->answers;
}

/* the figures of the last run, for --verbose */
static void sim_log(const struct sim *m, const char *what)
{
	cr_log_info("%s: limit %u..%u (mean %.2f, now %u), wait in q %.0f us per answer, "
		    "min_rtt %u us, short_rtt %u us", what, m->lim_min, m->lim_max,
		    sim_mean_limit(m), m->lim.limit, (double)m->waited_us / (double)m->answers,
		    m->lim.min_rtt_us, m->lim.short_rtt_us);
}

/* ------------------------------------------------------------------- limiter */

TestSuite(pool_limit, .timeout = 30.0);

Test(pool_limit, starts_at_one_and_probes)
{
	struct pool_limit l;

	pool_limit_init(&l, 4);
	cr_assert_eq(l.limit, 1);
	cr_assert(l.is_probing);
	cr_assert_eq(l.min_rtt_us, 0);
	/* the probe window: answers that ran alone give the no-load latency (the median) */
	static const uint32_t rtt[POOL_LIMIT_WINDOW] = { 50, 48, 900, 51, 49, 50, 52, 47,
							  50, 49, 50, 51, 1200, 50, 48, 52 };
	for (int i = 0; i < POOL_LIMIT_WINDOW; i++)
		pool_limit_sample(&l, rtt[i], 1, 1000 + (uint64_t)i);
	cr_assert_not(l.is_probing);
	cr_assert_eq(l.min_rtt_us, 50, "min_rtt %u: the median, not thrown by one 900", l.min_rtt_us);
	/* an answer sent with others in flight says nothing about the no-load latency */
	pool_limit_init(&l, 4);
	for (int i = 0; i < 3 * POOL_LIMIT_WINDOW; i++)
		pool_limit_sample(&l, 10, 2, 1000);
	cr_assert(l.is_probing);
	cr_assert_eq(l.min_rtt_us, 0);
}

/* q's calls are long next to the round trip: pipelining only queues inside q. The limit
 * stays at 1 nearly always (a window at 2 now and then, which shows the cost and is undone). */
Test(pool_limit, heavy_calls_keep_the_limit_near_one)
{
	struct sim m;

	sim_init(&m, 40, 5000, 8);
	sim_run(&m, 2000);	/* settle (about 10 s of simulated time) */
	sim_run(&m, 4000);
	sim_log(&m, "heavy (rtt0 40 us, s 5 ms)");
	cr_assert_eq(m.lim_min, 1);
	cr_assert_leq(m.lim_max, 2, "limit reached %u", m.lim_max);
	cr_assert_lt(sim_mean_limit(&m), 1.3, "mean limit %.2f", sim_mean_limit(&m));
	/* the wait inside q per answer stays a fraction of one service time */
	double wait = (double)m.waited_us / (double)m.answers;
	cr_assert_lt(wait, 0.3 * 5000, "each answer waited %.0f us inside q on average", wait);
	cr_assert_gt(m.lim.decreases, 0);
	cr_assert_eq(m.lim.min_rtt_us, 5040);
}

/* tiny calls next to a 40 us round trip: the limit rises to pipeline, within the ceiling */
Test(pool_limit, tiny_calls_pipeline)
{
	struct sim m;

	sim_init(&m, 40, 5, 8);
	sim_run(&m, 2000);
	cr_assert_gt(m.lim.limit, 2, "limit %u", m.lim.limit);
	sim_run(&m, 20000);
	sim_log(&m, "tiny (rtt0 40 us, s 5 us)");
	cr_assert_geq(m.lim_min, 1);
	cr_assert_leq(m.lim_max, 8);
	cr_assert_gt(sim_mean_limit(&m), 2.5, "mean limit %.2f", sim_mean_limit(&m));
	/* ... and never past a lower ceiling */
	sim_init(&m, 40, 5, 2);
	sim_run(&m, 5000);
	cr_assert_eq(m.lim_max, 2);
	cr_assert_eq(m.lim.limit, 2);
	/* a ceiling of 1 pins it */
	sim_init(&m, 40, 5, 1);
	sim_run(&m, 2000);
	cr_assert_eq(m.lim_max, 1);
}

/* Past the point where q is always busy, more in flight only queues inside it: the limit
 * stops once that queueing passes its slack, well under a high ceiling. */
Test(pool_limit, stops_where_q_saturates)
{
	struct sim m;

	sim_init(&m, 40, 50, 16);	/* saturated from 2 in flight (90 us / 50 us) */
	sim_run(&m, 5000);
	sim_run(&m, 5000);
	sim_log(&m, "saturating (rtt0 40 us, s 50 us, ceiling 16)");
	cr_assert_geq(m.lim.limit, 3);
	cr_assert_leq(m.lim_max, 10, "limit reached %u", m.lim_max);
	double wait = (double)m.waited_us / (double)m.answers;
	cr_assert_lt(wait, POOL_LIMIT_DOWN_SLACK_US, "each answer waited %.0f us inside q", wait);
}

/* The limit grows only when it is used: a gateway with two connections to offer never
 * reaches more than what it sends (a limit nobody uses says nothing). */
Test(pool_limit, grows_only_when_used)
{
	struct pool_limit l;
	uint64_t t = 0;

	pool_limit_init(&l, 8);
	for (int i = 0; i < 4000; i++, t += 50)
		pool_limit_sample(&l, 50, (uint32_t)(i % 2) + 1, t);
	cr_assert_leq(l.limit, 3, "limit %u with at most 2 ever in flight", l.limit);
	cr_assert_geq(l.limit, 2);
}

/* A slow period (q busy with something else: every call takes 100x longer) drives the limit
 * down to 1; once it ends, the limit rises again. */
Test(pool_limit, recovers_after_a_slow_period)
{
	struct sim m;

	sim_init(&m, 40, 5, 8);
	sim_run(&m, 5000);
	uint32_t before = m.lim.limit;
	cr_assert_gt(before, 2);
	m.s_us = 500;
	sim_run(&m, 400);
	sim_log(&m, "slow period (s 500 us)");
	cr_assert_eq(m.lim.limit, 1, "limit %u during the slow period", m.lim.limit);
	m.s_us = 5;
	sim_run(&m, 3000);
	sim_log(&m, "after it (s 5 us)");
	cr_assert_geq(m.lim.limit, before - 1, "limit %u after, %u before", m.lim.limit, before);
}

/* The no-load latency is measured again every POOL_LIMIT_PROBE_US: a backend that became
 * slower for good (a longer route, more data) is judged by its new floor, not the old one. */
Test(pool_limit, min_rtt_measured_again)
{
	struct sim m;

	sim_init(&m, 40, 5, 8);
	sim_run(&m, 5000);
	cr_assert_eq(m.lim.min_rtt_us, 45);
	m.rtt0_us = 1000;	/* every call takes 20x longer: a new route */
	sim_run(&m, 2000);
	cr_assert_eq(m.lim_min, 1);	/* judged by the old floor, it looked like queueing */
	uint64_t until = m.now_us + 2 * POOL_LIMIT_PROBE_US;
	for (int g = 0; g < 1000 && m.now_us < until; g++)
		sim_run(&m, 100);
	cr_assert_eq(m.lim.min_rtt_us, 1005, "min_rtt %u", m.lim.min_rtt_us);
	cr_assert_gt(m.lim.limit, 2, "limit %u on the new floor", m.lim.limit);
}

/* Same samples, same limits; and any samples at all keep it within 1..ceiling. */
Test(pool_limit, deterministic_and_bounded)
{
	struct pool_limit a, b;
	uint64_t x = 88172645463325252ULL, t = 0;

	pool_limit_init(&a, 6);
	pool_limit_init(&b, 6);
	for (int i = 0; i < 100000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t rtt = (uint32_t)(x % 100000), depth = (uint32_t)(x >> 40) % 10;
		t += x % 1000;
		if (i % 1000 == 0)
			rtt = 0;	/* a zero is not a division by zero */
		uint32_t la = pool_limit_sample(&a, rtt, depth, t);
		uint32_t lb = pool_limit_sample(&b, rtt, depth, t);
		cr_assert_eq(la, lb);
		cr_assert(la >= 1 && la <= 6, "limit %u", la);
	}
	cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
	/* a lower ceiling (a reload) clamps at once */
	pool_limit_set_ceiling(&a, 2);
	cr_assert_leq(a.limit, 2);
	cr_assert_leq(a.before_probe, 2);
}

/* ---------------------------------------------------------------- call costs */

Test(pool_limit, costs_learned)
{
	static struct pool_costs t;
	uint64_t k = pool_key_of(".mock.sleep", 11), j = pool_key_of(".mock.id", 8);

	pool_costs_init(&t);
	cr_assert_eq(pool_costs_get(&t, k), 0);
	pool_costs_add(&t, k, 50000);
	pool_costs_add(&t, j, 40);
	cr_assert_eq(pool_costs_get(&t, k), 50000);
	cr_assert_eq(pool_costs_get(&t, j), 40);
	cr_assert_eq(t.n_used, 2);
	/* the EWMA follows a call whose cost changed, in a few answers */
	for (int i = 0; i < 12; i++)
		pool_costs_add(&t, k, 100);
	cr_assert_lt(pool_costs_get(&t, k), 2000);
	/* key 0 is a key like any other */
	pool_costs_add(&t, 0, 7);
	cr_assert_eq(pool_costs_get(&t, 0), 7);
	pool_costs_add(&t, j, 0);
	cr_assert_gt(pool_costs_get(&t, j), 0, "a cost never reads as unknown once learned");
}

/* A hostile client calling a million names cannot grow the table, and a call in steady use
 * keeps its entry (least recently used goes first). */
Test(pool_limit, costs_bounded)
{
	static struct pool_costs t;
	uint64_t hot = pool_key_of("hot", 3);
	char name[32];

	pool_costs_init(&t);
	pool_costs_add(&t, hot, 30);
	for (int i = 0; i < 1000000; i++) {
		int n = snprintf(name, sizeof(name), "f%d", i);
		pool_costs_add(&t, pool_key_of(name, (size_t)n), 5000);
		cr_assert_eq(pool_costs_get(&t, hot), 30, "the hot entry went at %d", i);
	}
	cr_assert_eq(t.n_used, POOL_COST_ENTRIES);
	cr_assert_eq(t.evictions, 1000000 - (POOL_COST_ENTRIES - 1));
}

Test(pool_limit, heavy_or_light)
{
	cr_assert(pool_cost_is_heavy(0, 40), "unknown: heavy until learned");
	cr_assert_not(pool_cost_is_heavy(60, 40));
	cr_assert_not(pool_cost_is_heavy(999, 0));
	cr_assert(pool_cost_is_heavy(1000, 0));
	cr_assert(pool_cost_is_heavy(50000, 40));
	/* relative to the round trip: a remote backend's 2 ms is not heavy */
	cr_assert_not(pool_cost_is_heavy(2000, 2000));
	cr_assert(pool_cost_is_heavy(16000, 2000));
}

/* ------------------------------------------------------------------ placement */

#define NB 3
#define NS 4

static uint64_t NOW;
static struct pool P;
static struct pool_be BE[NB];
static struct pool_be *BES[NB];
static struct pool_slot SL[NB][NS];
static struct pool_costs COSTS;
static struct pool_client CL[16];
static struct pool_req RQ[16];
static uint64_t K_HEAVY, K_LIGHT, K_MID;

/* NB auto backends (limit set to `limit` as if learned, min_rtt 40 us) of NS connections,
 * all up; costs learned: heavy 50 ms, light 40 us, mid 800 us */
static void place_fx(enum pool_strategy st, uint32_t max_inflight, uint32_t limit)
{
	memset(SL, 0, sizeof(SL));
	pool_init(&P, st, 99, 100, 0, 0, &NOW);
	for (int b = 0; b < NB; b++) {
		pool_be_init(&BE[b], &P, 1, NULL, max_inflight, SL[b], NS);
		BES[b] = &BE[b];
		struct pool_shared *s = BE[b].shared;
		if (!max_inflight) {
			pool_limit_set_ceiling(&s->lim, 8);
			s->lim.limit = limit;
			s->lim.min_rtt_us = 40;
			s->min_rtt_us = 40;
			s->max_inflight = limit;
		}
		for (int k = 0; k < NS; k++) {
			struct pool_conn *c = &SL[b][k].rec;
			pool_conn_init(c, &BE[b], POOL_CONN_POOLED, k, NULL);
			pool_conn_set_state(c, POOL_CONNECTING);
			pool_conn_set_state(c, POOL_HANDSHAKE);
			pool_conn_set_state(c, POOL_IDLE);
		}
	}
	pool_set_backends(&P, BES, NB);
	P.is_started = true;
	pool_costs_init(&COSTS);
	P.costs = &COSTS;
	K_HEAVY = pool_key_of(".mock.sleep", 11);
	K_LIGHT = pool_key_of(".mock.id", 8);
	K_MID = pool_key_of("mid", 3);
	pool_costs_add(&COSTS, K_HEAVY, 50000);
	pool_costs_add(&COSTS, K_LIGHT, 40);
	pool_costs_add(&COSTS, K_MID, 800);
}

/* request i (client i) of the call key: proposed and, unless it must wait, committed;
 * returns the backend index it went to, or -1 (WAIT) */
static int send_call(int i, uint64_t key)
{
	pool_client_init(&CL[i]);
	pool_req_init(&RQ[i], &P, &CL[i], true, false);
	RQ[i].cost_key = key;
	struct pool_decision d = pool_propose(&P, &RQ[i]);
	if (d.verdict == POOL_WAIT)
		return -1;
	cr_assert_eq(d.verdict, POOL_SEND);
	cr_assert(pool_commit(&P, &d));
	return (int)(d.be - BE);
}

static void answer(int i)
{
	pool_conn_set_state(RQ[i].conn, POOL_IDLE);
	pool_req_done(&RQ[i]);
}

TestSuite(pool_place, .timeout = 10.0);

/* A backend running a heavy call takes nothing else; one running light calls takes several
 * (up to its limit); the least expected wait goes first. */
Test(pool_place, heavy_runs_alone_lights_share)
{
	place_fx(POOL_LEAST_OUTSTANDING, 0, 4);
	int h = send_call(0, K_HEAVY);
	cr_assert_geq(h, 0);
	cr_assert_eq(pool_shared_heavy(BE[h].shared), 1);
	cr_assert_not(pool_be_can_take(&BE[h]), "a backend running a heavy call takes more");
	/* eight light calls: never where the heavy one runs, four on each of the others */
	int on[NB] = { 0 };
	for (int i = 1; i <= 8; i++) {
		int b = send_call(i, K_LIGHT);
		cr_assert_geq(b, 0, "light call %d waits with room elsewhere", i);
		cr_assert_neq(b, h, "light call %d went behind the heavy call", i);
		on[b]++;
	}
	for (int b = 0; b < NB; b++)
		cr_assert_eq(on[b], b == h ? 0 : 4, "backend %d took %d", b, on[b]);
	/* full: the next light call waits in qgate, not inside a busy q */
	cr_assert_eq(send_call(9, K_LIGHT), -1);
	/* the heavy call's answer frees its backend for lights again */
	answer(0);
	cr_assert_eq(pool_shared_heavy(BE[h].shared), 0);
	cr_assert_eq(send_call(9, K_LIGHT), h);
	cr_assert_eq(send_call(10, K_LIGHT), h);
	/* a heavy call may join a backend running lights (they end soon) but then nothing
	 * more goes there */
	for (int i = 1; i <= 8; i++)
		answer(i);
	int h2 = send_call(11, K_HEAVY);
	cr_assert_geq(h2, 0);
	cr_assert_neq(h2, h, "the heavy call went where two lights run, with empty backends");
	cr_assert_not(pool_be_can_take(&BE[h2]));
	for (int i = 0; i < 12; i++)
		if (RQ[i].conn)
			answer(i);
	for (int b = 0; b < NB; b++) {
		cr_assert_eq(pool_shared_inflight(BE[b].shared), 0);
		cr_assert_eq(pool_shared_heavy(BE[b].shared), 0);
		cr_assert_eq(BE[b].shared->cost_us, 0, "backend %d: cost left %llu", b,
			     (unsigned long long)BE[b].shared->cost_us);
	}
}

/* An unknown call counts as heavy until its first answer teaches its cost. */
Test(pool_place, unknown_calls_run_alone_until_learned)
{
	place_fx(POOL_LEAST_OUTSTANDING, 0, 4);
	uint64_t k = pool_key_of("new", 3);
	int b = send_call(0, k);
	cr_assert_eq(pool_shared_heavy(BE[b].shared), 1);
	cr_assert_eq(pool_answer_time(RQ[0].conn, k, 60, NOW), 4);
	answer(0);
	cr_assert_eq(pool_costs_get(&COSTS, k), 60);
	b = send_call(1, k);
	cr_assert_eq(pool_shared_heavy(BE[b].shared), 0);
	cr_assert(pool_be_can_take(&BE[b]));
}

/* least_outstanding among auto backends: by expected wait, not by count */
Test(pool_place, least_expected_wait_first)
{
	place_fx(POOL_LEAST_OUTSTANDING, 0, 4);
	int a = send_call(0, K_MID);	/* 800 us, not heavy: the backend takes more */
	cr_assert_geq(a, 0);
	cr_assert_eq(pool_shared_heavy(BE[a].shared), 0);
	int b = send_call(1, K_LIGHT);
	int c = send_call(2, K_LIGHT);
	int d = send_call(3, K_LIGHT);
	/* two empty backends take the first two lights, then the one with 40 us beats 800 */
	cr_assert(b != a && c != a && b != c, "a=%d b=%d c=%d", a, b, c);
	cr_assert(d == b || d == c, "d=%d went to the backend expected busy 800 us", d);
	cr_assert_eq(pool_be_wait_us(&BE[a]), 800);
	/* the learned figures the pool sees: the sum of what runs */
	cr_assert_eq(pool_be_wait_us(&BE[d]), 80);
}

/* A fixed max_inflight keeps the old meaning: a heavy call does not block its backend. */
Test(pool_place, fixed_limit_unchanged)
{
	place_fx(POOL_LEAST_OUTSTANDING, 2, 0);
	int h = send_call(0, K_HEAVY);
	cr_assert_eq(pool_shared_heavy(BE[h].shared), 0);
	cr_assert(pool_be_can_take(&BE[h]));
	for (int i = 1; i <= 5; i++)
		cr_assert_geq(send_call(i, K_LIGHT), 0);
	cr_assert_eq(send_call(6, K_LIGHT), -1, "three backends, two each");
	cr_assert_eq(pool_answer_time(RQ[0].conn, K_HEAVY, 100, NOW), 2, "no limiter");
}

/* Other strategies keep their meaning but respect the limit and the heavy rule. */
Test(pool_place, round_robin_respects_heavy)
{
	place_fx(POOL_ROUND_ROBIN, 0, 2);
	int h = send_call(0, K_HEAVY);
	for (int i = 1; i <= 4; i++) {
		int b = send_call(i, K_LIGHT);
		cr_assert_geq(b, 0);
		cr_assert_neq(b, h);
	}
	cr_assert_eq(send_call(5, K_LIGHT), -1);
}

/* The limiter lives in the shared counters: answers teach the limit every record uses. */
Test(pool_place, answers_move_the_shared_limit)
{
	place_fx(POOL_LEAST_OUTSTANDING, 0, 1);
	struct pool_shared *s = BE[0].shared;
	pool_limit_init(&s->lim, 4);
	s->max_inflight = 1;
	/* probe window: eight answers alone at 50 us, then windows in which the limit is used */
	uint64_t t = 0;
	for (int i = 0; i < 200; i++) {
		struct pool_conn *c = &SL[0][0].rec;
		cr_assert(pool_checkout(c));
		c->depth = pool_shared_max(s);	/* as if the limit was full */
		t += 50;
		pool_answer_time(c, K_LIGHT, 50, t);
		pool_conn_set_state(c, POOL_IDLE);
	}
	cr_assert_eq(pool_shared_max(s), 4, "limit %u", pool_shared_max(s));
	cr_assert_eq(s->min_rtt_us, 50);
	cr_assert_eq(s->short_rtt_us, 50);
	/* a reload to a fixed number stops it; back to auto starts learning anew at 1 */
	pool_shared_set_max(s, 2, 0);
	cr_assert_eq(pool_shared_max(s), 2);
	cr_assert_not(pool_shared_is_auto(s));
	pool_shared_set_max(s, 0, 0);
	cr_assert_eq(pool_shared_max(s), 1);
	cr_assert(pool_shared_is_auto(s));
	/* auto to auto (a reload that changed something else) keeps what was learned */
	s->lim.limit = 3;
	pool_shared_set_max(s, 0, 2);
	cr_assert_eq(pool_shared_max(s), 2, "clamped to the new ceiling");
}

/* A spare connection is wanted only when it would be used at once: syncs wait, every
 * connection of the backend is busy, the learned limit has room, no heavy call runs there,
 * and the backend is up. A pinned max_inflight never wants one. */
Test(pool_place, spare_wanted_only_when_it_would_be_used)
{
	place_fx(POOL_LEAST_OUTSTANDING, 0, 8);
	for (int b = 0; b < NB; b++)
		cr_assert_not(pool_be_wants_spare(&BE[b]), "idle backend %d wants a spare", b);
	for (int i = 0; i < NB * NS; i++)
		cr_assert_geq(send_call(i, K_LIGHT), 0);
	for (int b = 0; b < NB; b++)
		cr_assert_not(pool_be_wants_spare(&BE[b]), "nothing waits, yet %d wants one", b);
	/* one more waits for a connection: each backend, full at 4 of its limit 8, wants one */
	pool_client_init(&CL[NB * NS]);
	pool_req_init(&RQ[NB * NS], &P, &CL[NB * NS], true, false);
	RQ[NB * NS].cost_key = K_LIGHT;
	cr_assert(pool_enqueue(&P, &RQ[NB * NS], NOW, false));
	for (int b = 0; b < NB; b++)
		cr_assert(pool_be_wants_spare(&BE[b]), "backend %d", b);
	/* at its limit: no */
	__atomic_store_n(&BE[0].shared->max_inflight, NS, __ATOMIC_SEQ_CST);
	cr_assert_not(pool_be_wants_spare(&BE[0]));
	/* a heavy call running there: no (its effective limit is 1) */
	__atomic_add_fetch(&BE[1].shared->inflight, 1u << POOL_HEAVY_SHIFT, __ATOMIC_SEQ_CST);
	cr_assert_not(pool_be_wants_spare(&BE[1]));
	__atomic_sub_fetch(&BE[1].shared->inflight, 1u << POOL_HEAVY_SHIFT, __ATOMIC_SEQ_CST);
	cr_assert(pool_be_wants_spare(&BE[1]));
	/* a free connection: no */
	answer(1);
	for (int b = 1; b < NB; b++) {
		bool has_free = BE[b].n_free > 0;
		cr_assert_eq(pool_be_wants_spare(&BE[b]), !has_free, "backend %d", b);
	}
	/* disabled, or paused pool: no */
	cr_assert(pool_be_set_disabled(&BE[2], true));
	cr_assert_not(pool_be_wants_spare(&BE[2]));
	cr_assert(pool_be_set_disabled(&BE[2], false));
	/* down (no connection up): its configured connections come back first */
	for (int k = 0; k < NS; k++)
		pool_conn_set_state(&SL[2][k].rec, POOL_DOWN);
	cr_assert_not(pool_be_wants_spare(&BE[2]));
	/* a pinned limit never */
	place_fx(POOL_LEAST_OUTSTANDING, 8, 0);
	for (int i = 0; i < NB * NS; i++)
		cr_assert_geq(send_call(i, K_LIGHT), 0);
	pool_client_init(&CL[NB * NS]);
	pool_req_init(&RQ[NB * NS], &P, &CL[NB * NS], true, false);
	cr_assert(pool_enqueue(&P, &RQ[NB * NS], NOW, false));
	for (int b = 0; b < NB; b++)
		cr_assert_not(pool_be_wants_spare(&BE[b]));
}
