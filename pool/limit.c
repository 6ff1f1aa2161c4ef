/*
 * limit.c — the adaptive max_inflight limiter and the table of call costs (see limit.h).
 */
#include "pool/limit.h"

#include <string.h>

static uint32_t clamp_limit(uint32_t v, uint32_t ceiling)
{
	return v < 1 ? 1 : v > ceiling ? ceiling : v;
}

void pool_limit_init(struct pool_limit *l, uint32_t ceiling)
{
	memset(l, 0, sizeof(*l));
	l->ceiling = ceiling ? ceiling : 1;
	l->limit = 1;
	l->before_probe = 1;
	l->is_probing = true;	/* the first window measures the no-load latency */
}

void pool_limit_set_ceiling(struct pool_limit *l, uint32_t ceiling)
{
	l->ceiling = ceiling ? ceiling : 1;
	l->limit = clamp_limit(l->limit, l->ceiling);
	l->before_probe = clamp_limit(l->before_probe, l->ceiling);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* the median of the window (insertion sort: 8 values) */
static uint32_t window_median(const struct pool_limit *l)
{
	uint32_t v[POOL_LIMIT_WINDOW];
	uint32_t n = l->n;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t x = l->win[i], j = i;
		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
	return n % 2 ? v[n / 2] : (uint32_t)(((uint64_t)v[n / 2 - 1] + v[n / 2]) / 2);
}

/* A full window: move the limit. */
static void decide(struct pool_limit *l, uint64_t now_us)
{
	uint32_t med = window_median(l);
	uint32_t depth = l->depth;

	l->n = 0;
	l->depth = 0;
	if (med == 0)
		med = 1;
	l->short_rtt_us = med;
	if (l->is_probing) {
		/* every answer of the window ran alone: this is the no-load latency */
		l->min_rtt_us = med;
		l->is_probing = false;
		l->limit = clamp_limit(l->before_probe, l->ceiling);
		l->probe_at_us = now_us + POOL_LIMIT_PROBE_US;
		return;
	}
	/* the floor comes from the probes only: a window's median is compared with answers
	 * that ran alone under the same recent conditions (a busy host slows both), never
	 * with one lucky quiet moment */
	uint64_t min = l->min_rtt_us;
	uint64_t down = max_u64(min * POOL_LIMIT_DOWN_PCT / 100, min + POOL_LIMIT_DOWN_SLACK_US);
	uint64_t up = max_u64(min * POOL_LIMIT_UP_PCT / 100, min + POOL_LIMIT_UP_SLACK_US);
	if (med > down) {
		/* queueing inside q grows: shrink in proportion to the excess, by one at least */
		uint64_t want = (uint64_t)l->limit * down / med;
		uint32_t to = want >= l->limit ? l->limit - 1 : (uint32_t)want;
		to = clamp_limit(to, l->ceiling);
		if (to < l->limit)
			l->decreases++;
		l->limit = to;
		l->hold = POOL_LIMIT_HOLD;
	} else if (l->hold > 0) {
		l->hold--;
	} else if (med <= up && depth >= l->limit &&
		   l->limit < l->ceiling) {
		/* no queueing to speak of, and the limit was reached: try one more */
		l->limit++;
		l->increases++;
	}
	if (now_us >= l->probe_at_us) {
		/* measure the no-load latency again: it may have moved (data grew, a slower
		 * host), and a stale floor would keep the limit wrong until then */
		l->before_probe = l->limit;
		l->limit = 1;
		l->is_probing = true;
	}
}

uint32_t pool_limit_sample(struct pool_limit *l, uint32_t rtt_us, uint32_t depth,
			   uint64_t now_us)
{
	/* a probe counts only answers that ran alone (sent before it began, some did not) */
	if (l->is_probing && depth > 1)
		return l->limit;
	l->win[l->n++] = rtt_us;
	if (depth > l->depth)
		l->depth = depth;
	if (l->n == POOL_LIMIT_WINDOW)
		decide(l, now_us);
	return l->limit;
}

/* --------------------------------------------------------------- call costs */

void pool_costs_init(struct pool_costs *t)
{
	memset(t, 0, sizeof(*t));
}

static struct pool_cost_entry *set_of(struct pool_costs *t, uint64_t key)
{
	/* the hash's high bits choose the set (its low bits are FNV's weakest) */
	return &t->e[(size_t)(key >> 58) % POOL_COST_SETS * POOL_COST_WAYS];
}

static uint64_t norm_key(uint64_t key)
{
	return key ? key : 1;	/* 0 marks an unused entry */
}

uint32_t pool_costs_get(struct pool_costs *t, uint64_t key)
{
	struct pool_cost_entry *s = set_of(t, key = norm_key(key));

	for (int w = 0; w < POOL_COST_WAYS; w++)
		if (s[w].key == key) {
			s[w].used = ++t->clock;
			return s[w].cost_us;
		}
	return 0;
}

void pool_costs_add(struct pool_costs *t, uint64_t key, uint32_t us)
{
	struct pool_cost_entry *s = set_of(t, key = norm_key(key)), *victim = &s[0];

	if (us == 0)
		us = 1;	/* 0 means unknown */
	for (int w = 0; w < POOL_COST_WAYS; w++) {
		if (s[w].key == key) {
			/* EWMA, weight 1/4: a call that changed its cost is followed in a few */
			s[w].cost_us = (uint32_t)(((uint64_t)s[w].cost_us * 3 + us) / 4);
			if (s[w].cost_us == 0)
				s[w].cost_us = 1;
			s[w].used = ++t->clock;
			return;
		}
		if (!s[w].key) {
			if (victim->key)
				victim = &s[w];
		} else if (victim->key && s[w].used < victim->used) {
			victim = &s[w];
		}
	}
	if (victim->key)
		t->evictions++;
	else
		t->n_used++;
	*victim = (struct pool_cost_entry){ .key = key, .cost_us = us, .used = ++t->clock };
}

bool pool_cost_is_heavy(uint32_t cost_us, uint32_t min_rtt_us)
{
	uint64_t bar = (uint64_t)min_rtt_us * POOL_COST_HEAVY_X;

	if (bar < POOL_COST_HEAVY_MIN_US)
		bar = POOL_COST_HEAVY_MIN_US;
	return cost_us == 0 || cost_us >= bar;
}
