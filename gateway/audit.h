/*
 * audit — the audit log (audit.c): one line per finished request and per admin action, buffered per worker and
 * written on the tick or when the buffer fills. Owner: the worker (audit_fd, audit_buf);
 * worker thread only.
 */
#ifndef GW_GATEWAY_AUDIT_H
#define GW_GATEWAY_AUDIT_H

struct gw_req;
struct gw_worker;

int gw_audit_open(struct gw_worker *w);
void gw_audit_flush(struct gw_worker *w);
void gw_audit_close(struct gw_worker *w);
void gw_audit_req(struct gw_worker *w, const struct gw_req *r, const char *outcome);
/* One admin action (actions.c), done or refused; every value already a logfmt value
 * (gw_log_value): user, peer, arg, outcome. */
void gw_audit_action(struct gw_worker *w, const char *user, const char *peer, const char *via,
		     const char *action, const char *arg, const char *outcome);

#endif /* GW_GATEWAY_AUDIT_H */
