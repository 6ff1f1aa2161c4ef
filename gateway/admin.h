/*
 * admin — .qgate.* calls answered by the gateway itself for admin users (admin.c): pool and
 * backend state, counters and clients of every worker, and the q front end of the admin
 * actions (pause, resume, disable, enable, kill, reload: actions.h) (the other workers' as of their last
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

/*
 * Whether msg (a whole client message, header included, maybe compressed) is for the
 * gateway: exactly one admin call is answered into *out (a whole response message, malloc'd,
 * the caller frees; NULL for an error) or refused with a q error text in *err (static); any
 * other message naming `.qgate.` gets *err "qgate: admin calls must be sent alone". Those
 * return true, with what (what_n bytes) set for the audit line. Anything else: false, and
 * the message is the router's. An admin action (`.qgate.pause[`p]`, ... actions.h) writes
 * its own audit line: *is_audited says so, and the request's own line is not written. *err
 * may point into a thread-local buffer, valid until the next call.
 */
bool gw_admin_call(struct gw_worker *w, struct gw_conn *c, const uint8_t *msg, size_t len,
		   uint8_t **out, size_t *out_len, const char **err, char *what, size_t what_n,
		   bool *is_audited);

/*
 * Whether a large message may stream to a backend before it is whole, judged from its head
 * (head[0..len), header included, maybe compressed): not when the head's text (its first
 * 256 bytes) names `.qgate.`; such a message is held until whole and gw_admin_call refuses
 * it. A mention further into a message large enough to stream is not seen (the same limit
 * as the router's rules: a streamed message is judged by its head).
 */
bool gw_admin_may_stream(const uint8_t *head, size_t len);

#endif /* GW_GATEWAY_ADMIN_H */
