/*
 * listen — client-facing listening sockets (listen.c): TCP with SO_REUSEPORT, Unix paths
 * and q's abstract names; one multishot accept per listener, paused at max_clients and
 * backed off after resource errors. An accepted client starts in the handshake state; a
 * stats listener's connections go to stats.c. Worker thread only (gw_sockaddr_from: any).
 */
#ifndef GW_GATEWAY_LISTEN_H
#define GW_GATEWAY_LISTEN_H

#include <sys/socket.h>

struct gw_addr;
struct gw_conn;
struct gw_conn_ops;
struct gw_listener_rt;
struct gw_worker;
struct io_uring_cqe;

/* a listener's hooks (registered for GW_CONN_LISTENER) */
extern const struct gw_conn_ops gw_listen_conn_ops;

/* bind and listen on a, arm a multishot accept; *out is the listener connection */
int gw_listen_bind(struct gw_worker *w, const struct gw_addr *a, int backlog,
		   struct gw_conn **out);
int gw_listen_open(struct gw_worker *w, struct gw_listener_rt *l);
void gw_listen_arm(struct gw_worker *w, struct gw_conn *c);
void gw_listen_on_accept(struct gw_worker *w, struct gw_conn *lc, struct io_uring_cqe *cqe);
/* re-arm listeners whose backoff ended, or (below max_clients) that were paused */
void gw_listen_tick(struct gw_worker *w);
int gw_sockaddr_from(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len);

#endif /* GW_GATEWAY_LISTEN_H */
