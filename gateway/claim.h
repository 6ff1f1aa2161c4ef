/*
 * claim — only this process's workers may share a listening port.
 *
 * Workers bind TCP listeners with SO_REUSEPORT so that each has its own accept queue; the
 * kernel would let any other process of the same user join that group and take a share of
 * the clients. Before workers bind, the main thread claims each TCP address: it binds an
 * abstract Unix name derived from the address (held until exit, so a second qgate fails
 * at once, without a race) and test-binds the address itself without SO_REUSEPORT (so a
 * port another program holds fails too). Main thread only; the claims are freed by
 * gw_claims_free at exit.
 */
#ifndef GW_GATEWAY_CLAIM_H
#define GW_GATEWAY_CLAIM_H

#include <stddef.h>

#include "gateway/config.h"

struct gw_claims {
	int *fds;		/* one abstract-name socket per claimed address */
	char **keys;		/* the address each one stands for */
	size_t n;
};

/*
 * Claim every TCP listener and the stats address of cfg not claimed yet. 0, or a negative
 * errno (-EADDRINUSE when another process has one) with a message naming the address in
 * err; addresses claimed before the failure stay claimed.
 */
int gw_claims_take(struct gw_claims *cl, const struct gw_config *cfg, char *err, size_t err_n);
void gw_claims_free(struct gw_claims *cl);

#endif /* GW_GATEWAY_CLAIM_H */
