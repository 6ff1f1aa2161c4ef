/*
 * reply — what a backend connection may tell the client side: the one interface upstream.c
 * (and runtime.c, when a reload drops a pool) uses to hand answers, errors, retries and
 * session-connection news to session.c, which implements all of it. Keeping it this narrow
 * keeps the backend side from reaching into client internals by name. Worker thread only;
 * none of these runs another connection's close inline (closes are queued).
 */
#ifndef GW_GATEWAY_REPLY_H
#define GW_GATEWAY_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_conn;
struct gw_pool_rt;
struct gw_req;
struct gw_worker;

/*
 * Answer bytes for req (from its backend, which has cleared up.owed when is_end): pre[0..pre_n)
 * then p[0..n), queued together so a header travels with the bytes after it; is_end marks
 * the last byte of the answer, which ends the backend's hold on r (so r may be freed).
 */
void gw_req_answer_bytes(struct gw_worker *w, struct gw_req *r, const uint8_t *pre,
			 size_t pre_n, const uint8_t *p, size_t n, bool is_end);
/* complete req with a gateway error "qgate: ..."; whoever held it lets go first */
void gw_req_fail(struct gw_worker *w, struct gw_req *r, const char *text);
/* idempotent pools: put r (whose backend died) back at the head of its pool's queue.
 * Returns false when it cannot be retried (the caller fails it). */
bool gw_req_retry(struct gw_worker *w, struct gw_req *r);
/* session mode: the client's backend connection is ready (capability) or gone */
void gw_session_ready(struct gw_worker *w, struct gw_conn *c, int capability);
/* is_mid_message: part of a backend message already went to the client (it is closed) */
void gw_session_lost(struct gw_worker *w, struct gw_conn *c, const char *backend,
		     bool is_mid_message);
/* re-evaluate whether the client may be read (pipeline, buffered answers, streaming) */
void gw_client_update_recv(struct gw_worker *w, struct gw_conn *c);
/* something changed for p's queue: mark it; the loop calls gw_pool_dispatch_now later */
void gw_pool_dispatch(struct gw_worker *w, struct gw_pool_rt *p);

#endif /* GW_GATEWAY_REPLY_H */
