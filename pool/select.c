/*
 * select.c — backend selection strategies and reconnect backoff (see select.h).
 */
#include "pool/select.h"

#include <math.h>

#include "pool/pool.h"

void pool_selector_init(struct pool_selector *s, enum pool_strategy strategy, uint64_t seed)
{
	s->strategy = strategy;
	s->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
	s->tie_cursor = 0;
}

static uint64_t next_rand(struct pool_selector *s)
{
	/* xorshift64*: small, fast, good enough for load spreading */
	uint64_t x = s->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

double pool_rand01(struct pool_selector *s)
{
	return (double)(next_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* a is less loaded than b: load/weight compared without division. */
static int load_cmp(const struct pool_be *a, const struct pool_be *b)
{
	uint64_t la = (uint64_t)pool_be_load(a) * (uint64_t)b->weight;
	uint64_t lb = (uint64_t)pool_be_load(b) * (uint64_t)a->weight;
	return la < lb ? -1 : la > lb ? 1 : 0;
}

/*
 * least_outstanding: between two auto backends, the expected wait (the learned costs of what
 * each runs, limit.h) per weight, then the load; otherwise the load alone, as ever (a fixed
 * max_inflight keeps the strategy's meaning).
 */
static int wait_cmp(const struct pool_be *a, const struct pool_be *b)
{
	if (pool_shared_is_auto(a->shared) && pool_shared_is_auto(b->shared)) {
		/* both sides below 2^63 / 10^6: waits are sums of 32-bit µs, weights <= 10^6 */
		uint64_t wa = pool_be_wait_us(a) * (uint64_t)b->weight;
		uint64_t wb = pool_be_wait_us(b) * (uint64_t)a->weight;
		if (wa != wb)
			return wa < wb ? -1 : 1;
	}
	return load_cmp(a, b);
}

static int pick_least(struct pool_selector *s, struct pool_be *const *bes, size_t n,
		      pool_qualifies_fn ok, uint64_t arg)
{
	int best = -1;

	/* Start the scan at a rotating offset: among equally loaded backends the first
	 * one seen wins, so rotating the start spreads ties evenly. */
	for (size_t k = 0; k < n; k++) {
		size_t i = (s->tie_cursor + k) % n;
		if (!ok(bes[i], arg))
			continue;
		if (best < 0 || wait_cmp(bes[i], bes[best]) < 0)
			best = (int)i;
	}
	s->tie_cursor = (s->tie_cursor + 1) % n;
	return best;
}

static int pick_rr(struct pool_be *const *bes, size_t n, pool_qualifies_fn ok, uint64_t arg)
{
	int64_t total = 0;
	int best = -1;

	for (size_t i = 0; i < n; i++) {
		if (!ok(bes[i], arg))
			continue;
		bes[i]->rr_current += bes[i]->weight;
		total += bes[i]->weight;
		if (best < 0 || bes[i]->rr_current > bes[best]->rr_current)
			best = (int)i;
	}
	if (best >= 0)
		bes[best]->rr_current -= total;
	return best;
}

static int weighted_draw(struct pool_selector *s, struct pool_be *const *bes, size_t n,
			 pool_qualifies_fn ok, uint64_t arg, int64_t total)
{
	int64_t r = (int64_t)(next_rand(s) % (uint64_t)total);

	for (size_t i = 0; i < n; i++) {
		if (!ok(bes[i], arg))
			continue;
		r -= bes[i]->weight;
		if (r < 0)
			return (int)i;
	}
	return -1;
}

static int pick_two(struct pool_selector *s, struct pool_be *const *bes, size_t n,
		    pool_qualifies_fn ok, uint64_t arg)
{
	int64_t total = 0;

	for (size_t i = 0; i < n; i++)
		if (ok(bes[i], arg))
			total += bes[i]->weight;
	if (total == 0)
		return -1;
	int a = weighted_draw(s, bes, n, ok, arg, total);
	int b = weighted_draw(s, bes, n, ok, arg, total);
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return load_cmp(bes[b], bes[a]) < 0 ? b : a;
}

int pool_pick(struct pool_selector *s, struct pool_be *const *bes, size_t n,
	      pool_qualifies_fn ok, uint64_t arg)
{
	if (n == 0)
		return -1;
	switch (s->strategy) {
	case POOL_ROUND_ROBIN:
		return pick_rr(bes, n, ok, arg);
	case POOL_RANDOM_TWO:
		return pick_two(s, bes, n, ok, arg);
	case POOL_LEAST_OUTSTANDING:
	default:
		return pick_least(s, bes, n, ok, arg);
	}
}

int64_t pool_backoff_ms(const struct pool_backoff_cfg *cfg, uint32_t failures, double u01)
{
	if (failures == 0)
		return 0;
	if (cfg->attempts >= 0 && failures > (uint32_t)cfg->attempts)
		return -1;
	double mult = cfg->multiplier < 1.0 ? 1.0 : cfg->multiplier;
	double d = (double)cfg->delay_ms * pow(mult, (double)(failures - 1));
	if (d > (double)cfg->max_delay_ms)
		d = (double)cfg->max_delay_ms;
	double j = cfg->jitter < 0 ? 0 : cfg->jitter > 1 ? 1 : cfg->jitter;
	d *= 1.0 - j + 2.0 * j * u01;
	return d < 0 ? 0 : (int64_t)d;
}
