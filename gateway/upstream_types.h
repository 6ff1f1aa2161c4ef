/*
 * upstream_types — struct gw_upstream, the backend-side state of a connection (the up member
 * of struct gw_conn's union), its states and kinds. Types only, so conn.h can hold a
 * backend connection without the upstream functions. Owner: upstream.c (its state changes
 * only through gw_upstream_set_state); the worker thread only.
 */
#ifndef GW_GATEWAY_UPSTREAM_TYPES_H
#define GW_GATEWAY_UPSTREAM_TYPES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <linux/time_types.h>

#include "pool/pool.h"

struct gw_backend_rt;
struct gw_conn;
struct gw_req;

/*
 * A backend connection's state and kind live in its pool record (struct pool_conn, see
 * pool/pool.h), changed only through gw_upstream_set_state (upstream.c), which lets the
 * pool assert the transition and keep its lists and counts.
 */
#define gw_up_state(c) ((c)->up.rec->state)
#define gw_up_kind(c) ((c)->up.rec->kind)

struct gw_upstream {
	/* its pool record: the slot's for a pooled connection, own_rec for the others */
	struct pool_conn *rec;
	struct pool_conn own_rec;
	struct gw_conn *client;		/* SESSION: the client it belongs to */
	uint32_t client_gen;
	struct pool_link extra_link;	/* worker.extra_ups (DEDICATED, SESSION) */
	uint64_t last_used_ms;		/* POOLED: last answer or health check */
	uint64_t last_req_ms;		/* POOLED: last request sent, sync or async (or up since) */
	bool is_spare_idle;		/* closed by qgate: a spare slot's connection unused */
	struct gw_backend_rt *be;
	struct gw_req *owed;		/* the request whose answer this connection owes */
	uint64_t query_deadline_ms;	/* 0: none */
	int capability;
	int offer_capability;		/* what the hello offers (a session: the client's) */
	bool is_resolving;		/* CONNECTING, its name being looked up (no socket) */
	bool is_paused_for_client;	/* recv paused: the owning client is not reading */
	bool has_reply_pending;		/* an error reply waits for a streaming message's end */
	struct __kernel_timespec connect_ts;
	struct sockaddr_storage sa;
	socklen_t sa_len;
	/* an unsolicited message being skipped */
	bool is_skipping;
	bool has_hdr_pending;		/* an answer's header waits for its first body bytes */
	bool is_tx_locked;		/* a client message is streaming into it ... */
	struct gw_conn *lock_client;	/* ... from this client */
	uint32_t lock_client_gen;
	uint8_t skip_type;
	/* DRAINING the answer to a health check that timed out: each health interval it is
	 * still not in counts one more failure (drain_timeout does not apply) */
	bool is_health_drain;
};

#endif /* GW_GATEWAY_UPSTREAM_TYPES_H */
