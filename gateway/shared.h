/*
 * shared — the process-wide state the workers share: one struct pool_shared per backend
 * (its max_inflight slots in use and which workers wait for one), found by its address: a
 * q process runs one request at a time whichever worker, and whichever pool, sent it.
 *
 * Entries are made on first use by any worker (under a mutex: only at start and on a
 * reload) and live until gw_shared_free_all, which main calls after every worker has
 * exited. The counters themselves are only touched through pool/'s atomics.
 */
#ifndef GW_GATEWAY_SHARED_H
#define GW_GATEWAY_SHARED_H

#include <stdint.h>

#include "pool/pool.h"

struct gw_addr;

/* The counters of the backend at address addr (however it is spelt: gw_addr_key);
 * max_inflight (0: "auto", learned up to ceiling) is set on them (a reload may change it;
 * --check makes every pool agree on it; an auto backend that stays auto keeps what it
 * learned). NULL when out of memory (the caller then counts alone). */
struct pool_shared *gw_shared_backend(const struct gw_addr *addr, uint32_t max_inflight,
				      uint32_t ceiling);

/* Free every entry (main, once no worker runs). */
void gw_shared_free_all(void);

#endif /* GW_GATEWAY_SHARED_H */
