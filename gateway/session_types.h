/*
 * session_types — struct gw_client, the client-side state of a connection (the cl member
 * of struct gw_conn's union). Types only, so conn.h can hold a client without the session
 * functions. Owner: session.c; listen.c fills it in at accept; the worker thread only.
 */
#ifndef GW_GATEWAY_SESSION_TYPES_H
#define GW_GATEWAY_SESSION_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/qipc.h"
#include "pool/pool.h"

struct gw_chunk;
struct gw_conn;
struct gw_listener_rt;
struct gw_pool_rt;
struct gw_req;
struct gw_user_cfg;

enum gw_client_state {
	GW_CL_HANDSHAKE = 0,
	GW_CL_READY,
};

struct gw_client {
	enum gw_client_state state;
	uint8_t hello[1024];
	size_t hello_len;
	uint64_t handshake_deadline_ms;
	struct pool_link hs_link;	/* worker.handshaking while in HANDSHAKE */
	char user[128];
	char user_log[280];		/* user as a log value: escaped, quoted if need be */
	bool is_verifying;		/* its password is being checked on a login thread */
	uint8_t peer_family;		/* AF_INET / AF_INET6 / AF_UNIX: login failure limits */
	uint8_t peer_ip[16];
	const struct gw_user_cfg *ucfg;	/* NULL without auth */
	struct gw_listener_rt *listener;
	int capability;
	/* the request being received */
	struct gw_chunk *rx_msg;
	struct qipc_header rx_hdr;
	bool has_tried_stream;		/* looked for a connection to stream it to */
	bool is_rx_streaming;		/* its bytes go straight to stream_to */
	bool is_rx_discard;		/* refused while streaming: drop the rest */
	struct gw_conn *stream_to;
	uint32_t stream_gen;
	uint64_t msg_started_ms;	/* when the message being received began */
	struct pool_link rx_link;	/* worker.receiving while a message is incomplete */
	/* sync requests in arrival order; the head's answer is the next one to send */
	struct gw_req *slots_head, *slots_tail;
	uint32_t n_slots;
	uint64_t buffered_bytes;	/* answer bytes held in non-head slots */
	/* its order as the pools see it: its messages waiting in pool queues, oldest first
	 * (only the oldest may be sent, so they reach backends in the order it wrote them),
	 * and its async pin */
	struct pool_client pc;
	/* bytes read but not parsed yet: max_pipeline was reached in the middle of a read */
	uint8_t *backlog;
	size_t backlog_len;
	struct pool_link backlog_link;	/* worker.backlogs while it may be parsed again */
	/* session mode: the client's own backend connection */
	struct gw_conn *session_up;
	uint32_t session_up_gen;
	struct gw_pool_rt *session_pool;
	uint64_t session_pending;	/* sync requests sent up and not answered yet */
	bool is_close_after_send;	/* a final error is queued: close once it is out */
	bool is_cut;			/* an answer was cut short: nothing more goes to it */
	uint64_t linger_deadline_ms;	/* closed then even if its last bytes are not out */
	struct pool_link linger_link;	/* worker.lingering while is_close_after_send */
	int client_capability;		/* what the client offered */
	uint64_t requests;
	uint64_t last_active_ms;
	/* since when its unsent answers have stayed above half of client_buffer_bytes with a
	 * backend paused for it (0: not stuck); limits.client_output_timeout_ms */
	uint64_t output_stuck_since_ms;
	bool is_compress;		/* large answers are compressed for this client */
};

#endif /* GW_GATEWAY_SESSION_TYPES_H */
