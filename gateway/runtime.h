/*
 * runtime — the runtime objects a worker makes from its config (runtime.c): pools, their
 * backends and each backend's connection slots, and listeners; a reload (SIGHUP) builds the
 * new ones and retires the old, which stay allocated until the worker exits because
 * requests and connections still point at them. Owner: the worker; worker thread only.
 */
#ifndef GW_GATEWAY_RUNTIME_H
#define GW_GATEWAY_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/stats_types.h"
#include "pool/pool.h"

struct gw_backend_cfg;
struct gw_config;
struct gw_conn;
struct gw_listener_cfg;
struct gw_pool_cfg;
struct gw_worker;
struct ssl_ctx_st;

/*
 * What /stats and /metrics show of a backend and of a pool, grouped so that a reload that
 * replaces the runtime object carries all of it in one assignment (carry_backend,
 * carry_pool in runtime.c): a figure added here cannot be forgotten there, and a counter
 * never falls back to 0 (rate() would read that as a restart).
 */
struct gw_backend_stat {
	uint64_t requests, errors, reconnects, bytes_in, bytes_out;
	uint64_t spare_opens;		/* spare connections opened (auto max_inflight) */
	uint64_t lookups, lookup_failures;	/* its name's lookups (resolve.h) */
	/* session pools: when (w->now_ms) its last session connection came up / failed to;
	 * 0 never. /health judges a session pool by the later of the two. */
	uint64_t connect_ok_ms, connect_failed_ms;
	struct gw_hist latency;		/* as the pool's, for the answers this backend sent */
};

struct gw_pool_stat {
	uint64_t requests, errors, queue_full, queue_timeouts, timeouts, dropped_unsolicited;
	uint64_t unsolicited_closes;	/* connections closed for an answer nobody was owed */
	uint64_t health_failures;
	struct gw_hist latency;		/* request in -> answer complete, answered requests */
};

struct gw_backend_rt {
	const struct gw_backend_cfg *cfg;
	bool is_retired;		/* removed or changed by a reload: closes as it frees */
	struct pool_link retired_link;	/* worker.retired (kept until the worker exits) */
	struct gw_pool_rt *pool;
	/* what the pool sees: connections by state, reconnect slots (cfg->connections, each
	 * slot's is_alt_hello: the last hello offering 6 was closed, offer 3 next) */
	struct pool_be pb;
	struct ssl_ctx_st *ssl_ctx;	/* TLS to this backend, or NULL */
	struct gw_backend_stat stat;	/* carried whole across a reload */
	/* its name's lookups failed in a row until the next success (the log line follows
	 * 1, 2, 4, 8... of these) */
	uint32_t lookup_failures_in_row;
	bool was_up;
	/* health: when any connection of it (this worker's) last got bytes from it, and the
	 * health checks failed in a row since then (health.failures of them take it out) */
	uint64_t last_heard_ms;
	uint32_t health_fails;
};

struct gw_pool_rt {
	const struct gw_pool_cfg *cfg;
	bool is_retired;
	struct pool_link retired_link;
	struct gw_backend_rt **backends;	/* each allocated alone: connections point at them */
	struct pool_be **pb_view;	/* &backends[i]->pb, for the pool */
	size_t n_backends;
	struct pool pl;			/* the checkout authority: queue, selection */
	struct pool_costs costs;	/* learned call costs (pl.costs; bounded, pool/limit.h) */
	struct gw_pool_stat stat;	/* carried whole across a reload */
	uint32_t n_dedicated;		/* dedicated connections open now */
	uint32_t n_sessions;		/* session connections open now */
	struct pool_link dispatch_link;	/* worker.dispatches while marked for dispatch */
};

static inline struct gw_pool_rt *gw_pool_of(struct pool *pl)
{
	return pool_container_of(pl, struct gw_pool_rt, pl);
}

static inline struct gw_backend_rt *gw_backend_of(struct pool_be *pb)
{
	return pool_container_of(pb, struct gw_backend_rt, pb);
}

/* the connection open in slot s of be, or NULL */
static inline struct gw_conn *gw_slot_conn(const struct gw_backend_rt *be, int s)
{
	const struct pool_conn *rec = &be->pb.slots[s].rec;
	return rec->state == POOL_DOWN ? NULL : (struct gw_conn *)rec->owner;
}

struct gw_listener_rt {
	const struct gw_listener_cfg *cfg;
	bool is_retired;
	struct pool_link retired_link;
	struct ssl_ctx_st *ssl_ctx;	/* a TLS listener's server context, or NULL */
	struct gw_pool_rt *pool;
	struct gw_conn *conn;
	uint64_t clients, accepted;
};

int gw_runtime_init(struct gw_worker *w);
void gw_runtime_free(struct gw_worker *w);
/* apply a new validated config (worker thread); the old one must stay alive */
void gw_runtime_reload(struct gw_worker *w, const struct gw_config *cfg);

#endif /* GW_GATEWAY_RUNTIME_H */
