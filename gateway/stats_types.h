/*
 * stats_types — struct gw_http, a stats endpoint connection's state (the http member of
 * struct gw_conn's union), struct gw_hist, the latency histogram a pool and a backend keep, and struct
 * gw_client_row, one client as a snapshot lists it. Types only. Owner: stats.c
 * (gw_hist_add, gw_hist_quantile, gw_stats_publish); the worker thread only, but client rows
 * published in a snapshot are read by other workers under the publisher's snap_mu.
 */
#ifndef GW_GATEWAY_STATS_TYPES_H
#define GW_GATEWAY_STATS_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/pool.h"

/* a stats request's head, cookies included (a browser sends the host's cookies to every
 * port); a longer head is answered 431 */
#define GW_HTTP_REQ_BYTES 8192

struct gw_http {
	/* malloc'd at accept (GW_HTTP_REQ_BYTES, kept off the connection slab), freed with the
	 * slot; NUL-terminated at len */
	char *req;
	size_t len;
	bool is_done;		/* answered: close once sent */
	/* closed then (stats.timeout_ms): from accept while the request comes, then from the
	 * answer's last progress, so a slow reader that keeps reading gets it whole */
	uint64_t deadline_ms;
	struct pool_link link;	/* worker.http_conns, oldest first */
};

/* Latency histogram: log buckets of microseconds, ~12% resolution, no samples kept (the
 * percentiles); a counter per /metrics bound, exact (its `le` buckets); the sum is exact
 * (Prometheus's _sum, averages). */
#define GW_HIST_BUCKETS 512
#define GW_HIST_N_LE 16		/* gw_metrics_le_us's bounds (metrics.c checks the count) */
struct gw_hist {
	uint64_t counts[GW_HIST_BUCKETS];
	uint64_t le[GW_HIST_N_LE];	/* le[k]: samples above bound k-1, at or below bound k */
	uint64_t total;
	uint64_t max_us;
	uint64_t sum_us;
};

/*
 * One client, copied out of its connection so that another worker may read it: nothing in
 * it points into a worker's live state. The names point into a configuration, and every
 * configuration loaded lives until the process exits.
 */
struct gw_client_row {
	int worker;			/* the worker it is connected to */
	int capability;
	uint64_t id;			/* connection id, unique in the process (.qgate.kill) */
	uint64_t requests;
	uint32_t outstanding;		/* sync requests not answered yet */
	const char *listener;		/* its listener's name, "" if none */
	const char *session_pool;	/* session mode: its pool's name, else "" */
	char user[128];
	char peer[64];
};

#endif /* GW_GATEWAY_STATS_TYPES_H */
