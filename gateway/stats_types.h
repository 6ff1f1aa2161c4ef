/*
 * stats_types — struct gw_http, a stats endpoint connection's state (the http member of
 * struct gw_conn's union), and struct gw_hist, the latency histogram a pool keeps. Types
 * only. Owner: stats.c (gw_hist_add, gw_hist_quantile); the worker thread only.
 */
#ifndef GW_GATEWAY_STATS_TYPES_H
#define GW_GATEWAY_STATS_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/pool.h"

struct gw_http {
	char req[2048];
	size_t len;
	bool is_done;		/* answered: close once sent */
	uint64_t deadline_ms;	/* closed then, answered or not (stats.timeout_ms) */
	struct pool_link link;	/* worker.http_conns, oldest first */
};

/* Latency histogram: log buckets of microseconds, ~12% resolution, no samples kept. */
#define GW_HIST_BUCKETS 512
struct gw_hist {
	uint64_t counts[GW_HIST_BUCKETS];
	uint64_t total;
	uint64_t max_us;
};

#endif /* GW_GATEWAY_STATS_TYPES_H */
