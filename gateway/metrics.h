/*
 * metrics — GET /metrics: the gateway's figures in the Prometheus text exposition format
 * (0.0.4), rendered from the merged /stats tree (stats.c, gw_stats_gathered), plus what that
 * tree does not carry: qgate_build_info, process_* (read from /proc/self at each scrape) and
 * the configuration's last load or reload (recorded by main).
 *
 * Every family has # HELP and # TYPE, label values are escaped (\\, \", \n), names use base
 * units (_seconds, _bytes) and counters end in _total. Request latency is the histogram
 * qgate_request_duration_seconds{pool,backend}, with the fixed bounds gw_metrics_le_us.
 * docs/operations.md lists every family; tests/integration/test_metrics.c checks that each
 * numeric leaf of /stats has one.
 *
 * Threads: gw_metrics_init and gw_metrics_note_config on the main thread; gw_metrics_text
 * on the worker that serves /metrics (worker 0). The reload record is a few atomics: a
 * scrape racing a reload may see the new result with the old time, never a torn value.
 */
#ifndef GW_GATEWAY_METRICS_H
#define GW_GATEWAY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

/*
 * The histogram's `le` bounds in microseconds, ascending (+Inf not included): stats.c puts
 * each latency's cumulative counts at these bounds into the tree (latency.le_us).
 */
extern const uint64_t gw_metrics_le_us[];
extern const size_t gw_metrics_n_le;

/* Once, before the workers start: the version qgate_build_info reports (a static string),
 * and the first configuration counts as loaded successfully now. */
void gw_metrics_init(const char *version);

/* A SIGHUP's outcome: is_ok when the new configuration was accepted (its time is then the
 * new qgate_config_last_reload_success_timestamp_seconds). Main thread. */
void gw_metrics_note_config(bool is_ok);

/*
 * The exposition text for merged (gw_stats_gathered's tree; only read): a malloc'd,
 * NUL-terminated string the caller frees, or NULL when out of memory.
 */
char *gw_metrics_text(struct json_t *merged);

#endif /* GW_GATEWAY_METRICS_H */
