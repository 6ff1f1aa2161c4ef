/*
 * select — the pool's policies as pure functions: backend selection strategies and the
 * reconnect backoff. Randomness comes from a caller-seeded generator and time is never
 * read, so every decision is reproducible in unit tests. No allocation, no globals.
 */
#ifndef GW_POOL_SELECT_H
#define GW_POOL_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool_be;

enum pool_strategy {
	POOL_LEAST_OUTSTANDING = 0,
	POOL_ROUND_ROBIN,
	POOL_RANDOM_TWO,
};

struct pool_selector {
	enum pool_strategy strategy;
	uint64_t rng;		/* xorshift state; seed with a non-zero value */
	size_t tie_cursor;	/* rotates ties for least_outstanding */
};

void pool_selector_init(struct pool_selector *s, enum pool_strategy strategy, uint64_t seed);

/* which backends may be picked */
typedef bool (*pool_qualifies_fn)(const struct pool_be *be, uint64_t arg);

/*
 * Pick a backend among bes[0..n) for which ok(be, arg) holds; the index, or -1. Load is
 * pool_be_load(be) / be->weight.
 *  least_outstanding: lowest load, ties rotated so equal backends share the work; between
 *    backends whose max_inflight is auto, the least expected wait first (pool_be_wait_us);
 *  round_robin: smooth weighted round robin (nginx's rule) over the qualifying backends;
 *  random_two: two weighted random draws, the less loaded one wins.
 */
int pool_pick(struct pool_selector *s, struct pool_be *const *bes, size_t n,
	      pool_qualifies_fn ok, uint64_t arg);

/* Uniform random in [0, 1) from the selector's generator. */
double pool_rand01(struct pool_selector *s);

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

#endif /* GW_POOL_SELECT_H */
