/*
 * session — the client side (session.c): q handshake and login, framing client messages
 * into requests, routing them to a pool, the pools' FIFO queues, and answers delivered
 * strictly in the order of the client's requests. The loop reaches it through
 * gw_client_conn_ops and the functions below; backend connections only through reply.h.
 * Worker thread only.
 */
#ifndef GW_GATEWAY_SESSION_H
#define GW_GATEWAY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_conn;
struct gw_conn_ops;
struct gw_pool_rt;
struct gw_req;
struct gw_worker;

/* a client connection's hooks (registered for GW_CONN_CLIENT) */
extern const struct gw_conn_ops gw_client_conn_ops;

void gw_client_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_client_on_close(struct gw_worker *w, struct gw_conn *c);
void gw_client_on_sent(struct gw_worker *w, struct gw_conn *c);
void gw_client_tick(struct gw_worker *w);
/* parse the bytes a client had left over when it reached max_pipeline (loop only) */
void gw_client_run_backlog(struct gw_worker *w, struct gw_conn *c);
/* the password check of c (auth.c) ended: carry its login on, or refuse it */
void gw_client_auth_done(struct gw_worker *w, struct gw_conn *c, bool is_ok);
/* shutdown: every sync request still owed to a client gets a q error with text */
void gw_client_fail_all(struct gw_worker *w, const char *text);
/* worker exit: a queued request leaves its queue and is freed (with the record of a
 * departed client's asyncs, when it was that record's last) */
void gw_req_drop_queued(struct gw_req *r);
/* hand queued requests to free connections, oldest first, each client in its order */
void gw_pool_dispatch_now(struct gw_worker *w, struct gw_pool_rt *p);

#endif /* GW_GATEWAY_SESSION_H */
