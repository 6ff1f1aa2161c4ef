/*
 * resolve — backend host names looked up off the event loop (resolve.c), with c-ares.
 *
 * Each worker owns one resolver thread running one c-ares channel (its own poll loop). The
 * loop hands it a lookup for one backend connection that is opening (gw_resolve_start: the
 * name, the port, the connection's slot and generation); the thread posts the answer back
 * through an eventfd the ring reads (a GW_CONN_RESOLVER connection, GW_OP_READ), and the loop
 * gives it to gw_upstream_resolved if that connection still lives and still waits for it.
 * A connection closed meanwhile (its backend retired by a reload, its client gone, the worker
 * stopping) has another generation or is closing: the late answer is dropped and freed here.
 *
 * Nothing is cached: every connection attempt looks the name up again, so a DNS change is
 * followed at the next reconnect (c-ares keeps no cache of its own in 1.18).
 * Numeric addresses (IPv4 and IPv6 literals) and Unix sockets never reach the resolver.
 *
 * Ownership: a lookup's job is the resolver's from gw_resolve_start until the loop has read
 * its answer (freed in the event handler) or gw_resolve_free ran (pending ones are freed
 * there, after the thread is joined). The resolver settings are read at start (a reload
 * does not change them). Loop functions: worker thread only; gw_resolve_check: any thread.
 */
#ifndef GW_GATEWAY_RESOLVE_H
#define GW_GATEWAY_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct gw_addr;
struct gw_config;
struct gw_conn;
struct gw_conn_ops;
struct gw_worker;

/* the resolver's eventfd hooks (registered for GW_CONN_RESOLVER) */
extern const struct gw_conn_ops gw_resolve_conn_ops;

/* The thread, its channel and the eventfds. 0 or -errno. */
int gw_resolve_init(struct gw_worker *w);
/* Stop and join the thread (c-ares ends its lookups), free every job. Safe when absent. */
void gw_resolve_free(struct gw_worker *w);

/* a needs no lookup: a Unix socket or a numeric address; fills *ss and *len. 0, -EAGAIN (a
 * name: look it up) or -errno. Never blocks. */
int gw_resolve_numeric(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len);

/* Look up a (a TCP address with a host name) for backend connection c. 0 or -errno. */
int gw_resolve_start(struct gw_worker *w, struct gw_conn *c, const struct gw_addr *a);

/* --check: look host up now (blocking) with cfg's resolver settings. 0, or -1 with the
 * reason in why. */
int gw_resolve_check(const struct gw_config *cfg, const char *host, char *why, size_t n);

#endif /* GW_GATEWAY_RESOLVE_H */
