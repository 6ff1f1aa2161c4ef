/*
 * listen — client-facing listening sockets (listen.c): TCP with SO_REUSEPORT, Unix paths
 * and q's abstract names; one multishot accept per listener and worker, paused at this
 * worker's max_clients and backed off after resource errors. An accepted client starts in
 * the handshake state; a stats listener's connections go to stats.c.
 *
 * Sockets: a TCP listener connection owns its socket (each worker binds its own in the
 * SO_REUSEPORT group). A Unix listener connection owns a dup() of the one socket lshare.h
 * keeps per name, and holds a user of that entry from gw_listen_bind until its close is
 * carried out (or gw_listen_release at worker exit); its fd is marked is_fd_shared, so the
 * close cancels this worker's accept and closes the dup without shutting the socket down
 * for the others. The last worker to let go shuts it down, closes it and unlinks its path.
 *
 * Worker thread only (gw_sockaddr_from, gw_sockaddr_unix, gw_listen_socket: any).
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

/* A new socket bound to a and listening (stale socket file at a path unlinked first; TCP
 * with SO_REUSEPORT): the fd, the caller's to close, or a negative errno (logged). */
int gw_listen_socket(const struct gw_addr *a, int backlog);
/* Listen on a (a socket of its own for TCP, the shared one for Unix names), arm a multishot
 * accept; *out is the listener connection (closed with gw_conn_close). 0 or -errno. */
int gw_listen_bind(struct gw_worker *w, const struct gw_addr *a, int backlog,
		   struct gw_conn **out);
int gw_listen_open(struct gw_worker *w, struct gw_listener_rt *l);
void gw_listen_arm(struct gw_worker *w, struct gw_conn *c);
void gw_listen_on_accept(struct gw_worker *w, struct gw_conn *lc, struct io_uring_cqe *cqe);
/* Let go of c's shared Unix socket, if it holds one (idempotent): its close does this;
 * worker exit calls it for listeners whose close was never carried out. */
void gw_listen_release(struct gw_conn *c);
/* re-arm listeners whose backoff ended, or (below max_clients) that were paused */
void gw_listen_tick(struct gw_worker *w);
/* a as a socket address. TCP names go through getaddrinfo, which may block: listeners and
 * claims only (bound at start and on reload; backends use resolve.h). 0 or -errno. */
int gw_sockaddr_from(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len);
/* a Unix address (a path or q's abstract name) as a socket address; never blocks. */
int gw_sockaddr_unix(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len);

#endif /* GW_GATEWAY_LISTEN_H */
