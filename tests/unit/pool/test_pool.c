/* test_pool.c — unit tests for pool/: selection strategies, backoff, waiter queue. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>

#include "pool/pool.h"

static struct pool_backend be[4];
static struct pool_backend *view[4];

static void setup_equal(int n)
{
	for (int i = 0; i < n; i++) {
		be[i] = (struct pool_backend){ .weight = 1, .n_idle = 1, .n_up = 1 };
		view[i] = &be[i];
	}
}

Test(pool_pick, least_outstanding_prefers_least_loaded)
{
	struct pool_selector s;

	setup_equal(3);
	be[0].outstanding = 3;
	be[1].outstanding = 1;
	be[2].outstanding = 2;
	pool_selector_init(&s, POOL_LEAST_OUTSTANDING, 1);
	cr_assert_eq(pool_pick(&s, view, 3, true), 1);
}

Test(pool_pick, least_outstanding_weights_scale_load)
{
	struct pool_selector s;

	setup_equal(2);
	be[0].weight = 3;
	be[0].outstanding = 2;	/* 2/3 */
	be[1].outstanding = 1;	/* 1/1 */
	pool_selector_init(&s, POOL_LEAST_OUTSTANDING, 1);
	cr_assert_eq(pool_pick(&s, view, 2, true), 0);
}

Test(pool_pick, least_outstanding_rotates_ties)
{
	struct pool_selector s;
	int hits[3] = { 0 };

	setup_equal(3);
	pool_selector_init(&s, POOL_LEAST_OUTSTANDING, 7);
	for (int i = 0; i < 300; i++)
		hits[pool_pick(&s, view, 3, true)]++;
	for (int i = 0; i < 3; i++)
		cr_assert_eq(hits[i], 100, "backend %d got %d of 300", i, hits[i]);
}

Test(pool_pick, need_idle_skips_busy_backends)
{
	struct pool_selector s;

	setup_equal(3);
	be[0].n_idle = 0;
	be[1].n_idle = 0;
	be[0].outstanding = 0;
	be[1].outstanding = 1;
	be[2].outstanding = 5;
	pool_selector_init(&s, POOL_LEAST_OUTSTANDING, 1);
	cr_assert_eq(pool_pick(&s, view, 3, true), 2);
	/* async traffic only needs a connection that is up */
	cr_assert_eq(pool_pick(&s, view, 3, false), 0);
	be[2].n_idle = 0;
	cr_assert_eq(pool_pick(&s, view, 3, true), -1);
	for (int i = 0; i < 3; i++)
		be[i].n_up = 0;
	cr_assert_eq(pool_pick(&s, view, 3, false), -1);
}

Test(pool_pick, round_robin_follows_weights_smoothly)
{
	struct pool_selector s;
	int hits[3] = { 0 };
	int seq[7];

	setup_equal(3);
	be[0].weight = 5;
	pool_selector_init(&s, POOL_ROUND_ROBIN, 1);
	for (int i = 0; i < 7; i++) {
		seq[i] = pool_pick(&s, view, 3, true);
		hits[seq[i]]++;
	}
	cr_assert_eq(hits[0], 5);
	cr_assert_eq(hits[1], 1);
	cr_assert_eq(hits[2], 1);
	/* smooth: the heavy backend never takes all of the first three */
	cr_assert(!(seq[0] == 0 && seq[1] == 0 && seq[2] == 0));
}

Test(pool_pick, random_two_spreads_by_weight)
{
	struct pool_selector s;
	int hits[2] = { 0 };

	setup_equal(2);
	be[1].weight = 3;
	pool_selector_init(&s, POOL_RANDOM_TWO, 12345);
	for (int i = 0; i < 4000; i++) {
		int k = pool_pick(&s, view, 2, true);
		cr_assert(k == 0 || k == 1);
		hits[k]++;
	}
	/* with equal load the draw decides: P(pick 1) = 1 - (1/4)^2 ... roughly >= 3/4 */
	cr_assert(hits[1] > 2 * hits[0], "weighted draws: %d vs %d", hits[0], hits[1]);
	/* with load, the less loaded of the two draws wins: backend 0 now takes every
	 * pair with at least one draw of it, P = 1 - (3/4)^2 = 0.4375, against 0.25 before */
	be[1].outstanding = 100;
	hits[0] = hits[1] = 0;
	for (int i = 0; i < 1000; i++)
		hits[pool_pick(&s, view, 2, true)]++;
	cr_assert(hits[0] > 370 && hits[0] < 510, "loaded pick: %d of 1000", hits[0]);
}

Test(pool_backoff, exponential_capped_and_jittered)
{
	struct pool_backoff_cfg c = { .attempts = -1, .delay_ms = 500, .multiplier = 2.0,
				      .max_delay_ms = 30000, .jitter = 0.0 };

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
}

Test(pool_queue, fifo_bounded_and_expiry)
{
	struct pool_queue q;
	struct pool_waiter w[3];

	pool_queue_init(&q, 2);
	cr_assert_eq(pool_queue_push(&q, &w[0], 1000, 100), 0);
	cr_assert_eq(pool_queue_push(&q, &w[1], 1050, 100), 0);
	cr_assert_eq(pool_queue_push(&q, &w[2], 1060, 100), -ENOSPC);
	cr_assert_eq(q.len, 2);
	cr_assert_eq(pool_queue_first(&q), &w[0]);
	cr_assert_eq(pool_queue_next(&q, &w[0]), &w[1]);
	cr_assert_null(pool_queue_next(&q, &w[1]));
	cr_assert_null(pool_queue_expired(&q, 1099));
	cr_assert_eq(pool_queue_expired(&q, 1100), &w[0]);
	pool_queue_remove(&q, &w[0]);
	cr_assert_eq(pool_queue_expired(&q, 1200), &w[1]);
	pool_queue_remove(&q, &w[1]);
	cr_assert_null(pool_queue_first(&q));
	cr_assert_eq(q.len, 0);
	/* timeout 0 means wait forever */
	cr_assert_eq(pool_queue_push(&q, &w[2], 0, 0), 0);
	cr_assert_null(pool_queue_expired(&q, UINT64_MAX));
}

Test(pool_queue, push_head_goes_first_even_when_full)
{
	struct pool_queue q;
	struct pool_waiter w[3];

	pool_queue_init(&q, 2);
	cr_assert_eq(pool_queue_push(&q, &w[0], 0, 0), 0);
	cr_assert_eq(pool_queue_push(&q, &w[1], 0, 0), 0);
	pool_queue_push_head(&q, &w[2], 100, 50);
	cr_assert_eq(q.len, 3);
	cr_assert_eq(pool_queue_first(&q), &w[2]);
	cr_assert_eq(pool_queue_next(&q, &w[2]), &w[0]);
	cr_assert_eq(pool_queue_expired(&q, 150), &w[2]);
}
