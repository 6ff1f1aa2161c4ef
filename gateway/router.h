/*
 * router — which pool a client message goes to (router.c): the first matching rule, the
 * user's pool, or the listener's pool; rule actions (timeout, dedicated, deny) and user
 * allow lists. Pure over the config and runtime objects; worker thread only.
 */
#ifndef GW_GATEWAY_ROUTER_H
#define GW_GATEWAY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_conn;
struct gw_pool_rt;
struct gw_worker;

struct gw_route {
	char what[48];			/* function name or query prefix (for the audit log) */
	struct gw_pool_rt *pool;
	uint32_t timeout_ms;
	bool is_dedicated;
	bool is_denied;
};
void gw_route(struct gw_worker *w, struct gw_conn *client, const uint8_t *msg, size_t len,
	      struct gw_route *out);

#endif /* GW_GATEWAY_ROUTER_H */
