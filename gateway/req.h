/*
 * req — struct gw_req, one client message on its way to a backend and its answer back.
 * Its holders are written in it: its client's slot list (is_in_slots), a pool queue
 * (pq.is_queued) and the backend connection that owes its answer (backend != NULL). Whoever lets
 * go of it calls gw_req_release, the one function that frees it (session.c), which does so
 * only once nothing holds it any more. Worker thread only.
 */
#ifndef GW_GATEWAY_REQ_H
#define GW_GATEWAY_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/chunk.h"
#include "pool/pool.h"

struct gw_conn;
struct gw_pool_rt;

/* queued or not is the pool's to say: pq.is_queued */
enum gw_req_state {
	GW_REQ_NEW = 0,
	GW_REQ_SENT,
	GW_REQ_DONE,
};

struct gw_req {
	struct gw_req *next_slot;	/* client's slot list (sync only) */
	bool is_in_slots;		/* held by its client's slot list */
	struct gw_conn *client;		/* NULL once the client has gone */
	uint32_t client_gen;
	struct pool_req pq;		/* what the pool sees: queues, pins, its connection */
	enum gw_req_state state;
	bool is_sync;
	bool is_dedicated;		/* runs on a connection of its own */
	bool is_health;			/* the gateway's own health check, no client */
	bool has_resp_started;		/* answer bytes already went to the client */
	struct gw_chunk *msg;		/* the request bytes until handed to a backend */
	struct gw_pool_rt *pool;
	struct gw_chunkq resp;		/* buffered answer while not at the head */
	uint32_t timeout_ms;		/* query timeout (rule or pool), 0 none */
	uint64_t t_start_us;
	uint64_t t_sent_us;		/* sync, pooled: when handed to its backend connection */
	struct gw_conn *backend;	/* SENT: the connection that owes its answer (a holder) */
	/* for the audit log */
	char user[32];
	char what[48];			/* function name or query prefix */
	const char *backend_name;	/* as a logfmt value, for the audit line */
	uint64_t req_bytes, resp_bytes;
	bool is_qerror;			/* the backend answered with a q error */
	bool gw_error;			/* failed by the gateway (already audited) */
	bool is_streamed;		/* its bytes went straight through: nothing kept to retry */
	bool is_compressing;		/* the answer is held whole, to be compressed at its end */
	bool is_lent;			/* large: sent from receive buffers (gw_buf_lend) */
	uint8_t retries;		/* idempotent pools: times resent after a backend died */
};

/* a zeroed request, from the calling worker's free list when it has one (no malloc on
 * the small-message path); aborts when out of memory */
struct gw_req *gw_req_new(void);
/* the one function that frees a request: does so once nothing holds it (see above); the
 * request goes back to the free list */
void gw_req_release(struct gw_req *r);
/* free the calling worker's free list (as it ends) */
void gw_req_cache_free(void);

static inline struct gw_req *gw_req_of(struct pool_req *pq)
{
	return pool_container_of(pq, struct gw_req, pq);
}

#endif /* GW_GATEWAY_REQ_H */
