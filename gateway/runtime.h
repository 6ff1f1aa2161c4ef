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

/* One configured connection of a backend; the gw_conn behind it changes on reconnect. */
struct gw_up_slot {
	struct gw_conn *conn;		/* NULL while down */
	uint32_t failures;		/* consecutive failed attempts (backoff) */
	uint64_t retry_at_ms;		/* next attempt while down; 0 = now */
	bool is_given_up;		/* reconnect.attempts exhausted */
	bool is_cap_fallback;		/* the last hello offering 6 was closed: offer 3 next */
};

struct gw_backend_rt {
	const struct gw_backend_cfg *cfg;
	bool is_retired;		/* removed or changed by a reload: closes as it frees */
	struct pool_link retired_link;	/* worker.retired (kept until the worker exits) */
	struct gw_pool_rt *pool;
	struct pool_backend sel;	/* what the selector sees */
	struct gw_up_slot *slots;	/* cfg->connections entries */
	/* session pools: connection failures in a row and when to try this backend again */
	uint32_t session_failures;
	uint64_t session_retry_at_ms;
	struct ssl_ctx_st *ssl_ctx;	/* TLS to this backend, or NULL */
	struct pool_link idle;		/* idle connections */
	uint64_t requests, errors, reconnects, bytes_in, bytes_out;
	bool was_up;
};

struct gw_pool_rt {
	const struct gw_pool_cfg *cfg;
	bool is_retired;
	struct pool_link retired_link;
	struct gw_backend_rt **backends;	/* each allocated alone: connections point at them */
	struct pool_backend **sel_view;	/* pointers into backends[].sel for pool_pick */
	size_t n_backends;
	struct pool_selector selector;
	struct pool_queue queue;
	uint64_t requests, errors, queue_full, queue_timeouts, timeouts, dropped_unsolicited;
	uint64_t unsolicited_closes;	/* connections closed for an answer nobody was owed */
	uint64_t health_failures;
	uint32_t queued_async;		/* queued messages that need no free connection:
					 * async ones, and dedicated syncs */
	uint32_t n_dedicated;		/* dedicated connections open now */
	uint32_t n_sessions;		/* session connections open now */
	bool is_started;		/* warm connections opened (lazy pools start on demand) */
	struct gw_hist latency;		/* request in -> answer complete, answered requests */
	struct pool_link dispatch_link;	/* worker.dispatches while marked for dispatch */
};

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
