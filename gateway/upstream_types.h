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
 * A backend connection's states, changed only by gw_upstream_set_state (upstream.c), which
 * asserts the transition and keeps the backend's idle list and counts:
 *   CONNECTING -> HANDSHAKE -> IDLE <-> BUSY, and any state -> DOWN (closed, final).
 * Dedicated and session connections go HANDSHAKE -> BUSY and stay BUSY until DOWN.
 * BUSY with owed == NULL is draining: an abandoned answer is read and dropped.
 */
enum gw_up_state {
	GW_UP_DOWN = 0,		/* closed */
	GW_UP_CONNECTING,	/* connect SQE in flight */
	GW_UP_HANDSHAKE,	/* hello sent, waiting for the capability byte */
	GW_UP_IDLE,		/* ready for a sync request */
	GW_UP_BUSY,		/* owes the answer to `owed` (or drains one) */
};

enum gw_up_kind {
	GW_UPK_POOLED = 0,	/* one of a backend's warm, shared connections */
	GW_UPK_DEDICATED,	/* opened for one sync request, closed after its answer */
	GW_UPK_SESSION,		/* one client's own connection for the client's lifetime */
};

struct gw_upstream {
	enum gw_up_state state;
	enum gw_up_kind kind;
	struct gw_conn *client;		/* SESSION: the client it belongs to */
	uint32_t client_gen;
	struct pool_link extra_link;	/* worker.extra_ups (DEDICATED, SESSION) */
	uint64_t last_used_ms;		/* POOLED: last answer or health check */
	struct gw_backend_rt *be;
	struct gw_req *owed;		/* the request whose answer this connection owes */
	uint64_t query_deadline_ms;	/* 0: none */
	int capability;
	int offer_capability;		/* what the hello offers (a session: the client's) */
	bool is_paused_for_client;	/* recv paused: the owning client is not reading */
	bool has_reply_pending;		/* an error reply waits for a streaming message's end */
	int slot;			/* POOLED: index into be->slots; -1 otherwise */
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
	struct pool_link idle_link;	/* backend's idle list while IDLE */
};

#endif /* GW_GATEWAY_UPSTREAM_TYPES_H */
