/*
 * admin — .qgate.* calls answered by the gateway itself for admin users (admin.c): pool and
 * backend state, counters and clients of every worker (the other workers' as of their last
 * snapshot, at most 250 ms old). Worker thread only; takes the other workers' snapshot
 * locks (stats.h), which is why it serves rare admin calls only.
 */
#ifndef GW_GATEWAY_ADMIN_H
#define GW_GATEWAY_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_conn;
struct gw_worker;

bool gw_admin_call(struct gw_worker *w, struct gw_conn *c, const uint8_t *msg, size_t len,
		   uint8_t **out, size_t *out_len, const char **err, char *what, size_t what_n);

#endif /* GW_GATEWAY_ADMIN_H */
