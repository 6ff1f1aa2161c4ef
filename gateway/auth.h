/*
 * auth — client logins: password checks off the event loop, a cache of recent successes,
 * and a per-address limit on failures.
 *
 *  - A password is verified (PBKDF2, tens of milliseconds by design) on one of the worker's
 *    login threads (limits.login_threads), never on the loop; the result comes back through
 *    an eventfd the loop reads, and gw_client_auth_done carries the login on. A client that
 *    left meanwhile is recognised by its slot generation and its result dropped.
 *  - An unknown user (or one without a password) is checked against a dummy hash of the
 *    same cost, so timing does not tell which user names exist.
 *  - Successes are remembered as SHA-256(per-worker key, user, stored hash, password): any
 *    change of the user's entry (a reload with a new hash) invalidates them. Failures are
 *    never cached.
 *  - More than limits.login_failures_max failures from one address within
 *    limits.login_failure_window_ms refuse further logins from it until the window passes
 *    (process-wide table, a mutex: logins are rare next to messages). Only failures count;
 *    an answer that guesses still in flight from its address could overtake is held on its
 *    worker until they are in (every worker's loop is woken when one of them finishes), and
 *    at most limits.login_pending_max checks of one address run or wait at once.
 *
 * Owner: the worker (gw_auth_init / gw_auth_free). Loop functions: worker thread only.
 */
#ifndef GW_GATEWAY_AUTH_H
#define GW_GATEWAY_AUTH_H

#include <stdbool.h>

struct gw_worker;
struct gw_conn;
struct gw_conn_ops;
struct qipc_hello;

/* the login threads' eventfd hooks (registered for GW_CONN_EVENT) */
extern const struct gw_conn_ops gw_auth_conn_ops;

enum gw_auth_result {
	GW_AUTH_OK = 0,		/* logged in now (no auth configured, or a cached success) */
	GW_AUTH_PENDING,	/* being verified: gw_client_auth_done follows */
	GW_AUTH_REFUSED,	/* refused now (throttled, password too long); logged here */
};

/* Login threads, the eventfd and the dummy hash. 0 or -errno. */
int gw_auth_init(struct gw_worker *w);
/* A reload: the dummy hash follows the new users' cost. */
void gw_auth_reload(struct gw_worker *w);
/* Stop and join the threads, drop pending jobs. */
void gw_auth_free(struct gw_worker *w);
/* Start checking the credentials of c's hello h (c->cl.user already set). */
enum gw_auth_result gw_auth_start(struct gw_worker *w, struct gw_conn *c,
				  const struct qipc_hello *h);
/* The eventfd read completed (res: bytes or -errno): hand finished checks to their clients. */
void gw_auth_on_event(struct gw_worker *w, struct gw_conn *ec, int res);
/* Record a failed login from c's address (also called for failures decided elsewhere). */
void gw_auth_failed(struct gw_worker *w, const struct gw_conn *c);

#endif /* GW_GATEWAY_AUTH_H */
