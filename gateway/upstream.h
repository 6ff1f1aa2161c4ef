/*
 * upstream — the backend side (upstream.c): connecting to q processes, the q handshake,
 * sending requests and relaying answers (through reply.h), health checks, reconnect
 * backoff, and the pooled, dedicated and session connection kinds. The loop reaches it
 * through gw_upstream_conn_ops. Worker thread only.
 */
#ifndef GW_GATEWAY_UPSTREAM_H
#define GW_GATEWAY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway/upstream_types.h"

struct gw_backend_rt;
struct gw_conn;
struct gw_conn_ops;
struct gw_pool_rt;
struct gw_req;
struct gw_worker;

/* pooled slots per backend and worker, at most (connections, or an auto ceiling) */
#define GW_SLOTS_MAX 1000

/* a backend connection's hooks (registered for GW_CONN_BACKEND) */
extern const struct gw_conn_ops gw_upstream_conn_ops;

void gw_upstream_start(struct gw_worker *w, struct gw_backend_rt *be, int slot);
/* open be's warm connections (its spare slots open on demand, from the tick) */
void gw_backend_start(struct gw_worker *w, struct gw_backend_rt *be);
/* open every warm connection of a pool (at start, or on first use for lazy pools) */
void gw_pool_start(struct gw_worker *w, struct gw_pool_rt *p);
/* open a connection for one sync request; r is SENT on it (answer or error will follow) */
int gw_upstream_open_dedicated(struct gw_worker *w, struct gw_backend_rt *be, struct gw_req *r);
/* open the session connection of client c; gw_session_ready/-failed report back */
int gw_upstream_open_session(struct gw_worker *w, struct gw_backend_rt *be, struct gw_conn *c,
			     const uint8_t *cred, size_t cred_len, int capability);
/* the one place a backend connection changes state (asserts the transition is legal) */
void gw_upstream_set_state(struct gw_worker *w, struct gw_conn *c, enum pool_conn_state to);
/* c may take a sync request now: idle, nothing streaming in, no stray bytes read */
bool gw_upstream_is_free(const struct gw_conn *c);
/* stop reading c: its client is not reading the answer fast enough */
void gw_upstream_pause(struct gw_worker *w, struct gw_conn *c);
/* answer a call the backend made into a shared connection with a q error */
void gw_upstream_reply_refused_call(struct gw_worker *w, struct gw_conn *c);
/* c's lookup (resolve.h) ended: connect to ss, or (ss NULL) close c as a failed attempt
 * (backoff as for a failed connect; the log line is rate-limited per backend) */
void gw_upstream_resolved(struct gw_worker *w, struct gw_conn *c,
			  const struct sockaddr_storage *ss, socklen_t len, const char *err);
void gw_upstream_on_connect(struct gw_worker *w, struct gw_conn *c, int res);
void gw_upstream_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n);
void gw_upstream_on_close(struct gw_worker *w, struct gw_conn *c);
void gw_upstream_tick(struct gw_worker *w);
/* send req on c (free, for a sync); takes the request's bytes */
void gw_upstream_send(struct gw_worker *w, struct gw_conn *c, struct gw_req *r);
void gw_upstream_resume(struct gw_worker *w, struct gw_conn *c);
/* r (SENT on c) was failed by the gateway: c lets go of r, and drains the answer */
void gw_upstream_abandon(struct gw_worker *w, struct gw_conn *c, struct gw_req *r);
void gw_upstream_on_sent(struct gw_worker *w, struct gw_conn *c);

#endif /* GW_GATEWAY_UPSTREAM_H */
