/*
 * stats — the stats endpoint (stats.c): /stats and /health over HTTP on worker 0, summing
 * every worker's JSON snapshot (each publishes its own under snap_mu), the same merged view
 * and every worker's client list for the admin tables, and the latency histogram. The loop
 * reaches its connections through gw_stats_conn_ops. Worker thread only (snapshots: under
 * snap_mu).
 *
 * Staleness: another worker's figures and clients are as of its last snapshot, published
 * every 250 ms when workers > 1 (less often for a config so big that a snapshot is costly:
 * gw_stats_publish); the calling worker's own are live.
 */
#ifndef GW_GATEWAY_STATS_H
#define GW_GATEWAY_STATS_H

#include <stddef.h>
#include <stdint.h>

struct gw_backend_rt;
struct gw_client_row;
struct gw_conn;
struct gw_conn_ops;
struct gw_hist;
struct gw_worker;
struct json_t;

/* a stats connection's hooks (registered for GW_CONN_HTTP) */
extern const struct gw_conn_ops gw_stats_conn_ops;

void gw_hist_add(struct gw_hist *h, uint64_t us);
uint64_t gw_hist_quantile(const struct gw_hist *h, double q);
/* cum[k] (GW_HIST_N_LE of them): samples at or below gw_metrics_le_us[k], exactly (each
 * sample was counted under its bound by gw_hist_add) */
void gw_hist_le_counts(const struct gw_hist *h, uint64_t *cum);

struct gw_conn_counts {
	unsigned idle, busy, connecting;
};
/* a pooled backend's connections by state, and its state as /stats names it */
struct gw_conn_counts gw_backend_counts(const struct gw_backend_rt *be);
const char *gw_backend_state(const struct gw_backend_rt *be);
int gw_stats_open(struct gw_worker *w);
/* publish this worker's figures and client list for the other workers (worker thread;
 * takes only its own snap_mu). A snapshot that cost c ms of CPU puts the next one at least
 * 20c ms away (w->next_snap_ms): at most 5% of the worker for a config of thousands of pools */
void gw_stats_publish(struct gw_worker *w);
/*
 * The whole gateway's figures as /stats shows them (listeners, pools with their backends,
 * gateway; counters summed over workers, latency as percentiles): a new tree, the caller's
 * to json_decref. Takes each other worker's snap_mu in turn, briefly: for rare calls only
 * (/stats, admin tables), never the data path.
 */
struct json_t *gw_stats_gathered(struct gw_worker *w);
/*
 * Every worker's clients: this worker's now, the others' as of their last snapshot. *out is
 * malloc'd (the caller frees it), *n its rows. 0, or -ENOMEM (nothing to free). Takes each
 * other worker's snap_mu in turn, like gw_stats_gathered.
 */
int gw_stats_clients(struct gw_worker *w, struct gw_client_row **out, size_t *n);
void gw_stats_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
/* a stats connection accepted on fd (the oldest gives way at stats.max_connections) */
void gw_stats_accept(struct gw_worker *w, int fd);
void gw_stats_on_close(struct gw_worker *w, struct gw_conn *c);
/* stats connections past stats.timeout_ms are closed */
void gw_stats_tick(struct gw_worker *w);

#endif /* GW_GATEWAY_STATS_H */
