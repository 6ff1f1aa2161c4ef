/*
 * actions — the admin actions (actions.c): pause and resume a pool, disable (drain) and
 * enable a backend, kill a client, reload the configuration. One function per action; two
 * thin front ends call them: `.qgate.*` calls of admin users (admin.c) and `POST /admin/...`
 * on the stats port behind its token (stats.c). Each action, done or refused, writes one
 * audit line and one log line at info.
 *
 * State: paused pools and disabled backends are kept by name in one process-wide table
 * under a mutex, with a generation counter; an action changes the table, bumps the counter
 * and wakes every worker (GW_OP_WAKE); each worker applies the table to its own pools on
 * wakeup (gw_actions_apply; its tick looks at the counter too, covering a lost wakeup). A
 * pause or disable (or its undoing) answers once every worker applied it, and a kill of
 * another worker's client once that worker says whether it found the client: the caller
 * waits (at most 200 ms), applying the table itself meanwhile. Names are checked against the
 * last accepted configuration (gw_actions_prune records it). The table outlives reloads: a
 * reload keeps each entry whose pool (and backend) still exists (gw_actions_prune) and every
 * worker applies it to the pools it builds.
 *
 * Threads: the actions and gw_actions_apply run on worker threads; gw_actions_prune and
 * gw_actions_set_reload on main. Nothing here touches another worker's live structures: a
 * kill for a client of another worker is posted in the table for that worker to carry out.
 */
#ifndef GW_GATEWAY_ACTIONS_H
#define GW_GATEWAY_ACTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_config;
struct gw_worker;

/* the longest pool or backend name an action accepts (config names are not longer) */
#define GW_ACTION_NAME_MAX 255

enum gw_action_kind {
	GW_ACT_PAUSE = 0,
	GW_ACT_RESUME,
	GW_ACT_DISABLE,
	GW_ACT_ENABLE,
	GW_ACT_KILL,
	GW_ACT_RELOAD,
	GW_ACT_N
};

/* "pause", "resume", ... (the q name after `.qgate.` and the HTTP path after /admin/) */
const char *gw_action_name(enum gw_action_kind k);
/* the action called name, or -1 */
int gw_action_of(const char *name, size_t len);

/* Who asks, for the audit and log lines. */
struct gw_action_who {
	const char *user;	/* q: the logged-in user; HTTP: "stats-token" */
	const char *peer;	/* the client's or HTTP peer's address */
	const char *via;	/* "q" or "http" */
};

/*
 * An action's outcome. status is HTTP's: 200 done, 202 a kill posted to another worker that
 * did not confirm in time (state "posted"), 400 bad argument, 403 not allowed, 404 unknown
 * name, 409 ambiguous name, 500 failed, 503 a reload while stopping. Done (2xx): state names
 * the new state ("paused", "running", "disabled", "enabled", "killed", "posted",
 * "reloaded"). Otherwise error is a q error text beginning "qgate: ".
 */
struct gw_action_result {
	int status;
	char state[16];
	char error[512];
	char pool[GW_ACTION_NAME_MAX + 1];	/* pause, resume: the pool */
	/* disable, enable: the (pool, backend) entries acted on */
	size_t n_targets;
	struct {
		const char *pool, *backend;	/* into the last accepted configuration (kept
						 * until exit) */
	} targets[16];
	uint64_t id;				/* kill */
};

/*
 * The actions. Each validates its arguments against the last accepted configuration,
 * changes the shared table, applies it to this worker at once, wakes the others and waits
 * for them (above); then audits and logs. Idempotent: pausing a paused pool answers
 * "paused" again.
 * disable/enable: pool NULL names the backend alone, as `backend` (every pool that has a
 * backend of that name) or `pool.backend`; a name that reads both ways, or splits at two
 * dots, is ambiguous (409): then give the pool apart. Worker thread.
 */
void gw_action_pause(struct gw_worker *w, const struct gw_action_who *who, const char *pool,
		     bool is_pause, struct gw_action_result *res);
void gw_action_disable(struct gw_worker *w, const struct gw_action_who *who, const char *pool,
		       const char *backend, bool is_disable, struct gw_action_result *res);
/* id: a client's id as .qgate.clients[] and /stats show it (unique in the process; both
 * front ends pass 1 to INT64_MAX only, so it prints the same as a q long and in JSON) */
void gw_action_kill(struct gw_worker *w, const struct gw_action_who *who, uint64_t id,
		    struct gw_action_result *res);
/* what SIGHUP does (the function main registered); blocks this worker while the file is
 * read and checked */
void gw_action_reload(struct gw_worker *w, const struct gw_action_who *who,
		      struct gw_action_result *res);

/* A request refused before any action ran (not allowed, wrong arguments, no token): its
 * audit and log lines. arg: the argument as given, or NULL. */
void gw_action_refused(struct gw_worker *w, const struct gw_action_who *who, const char *action,
		       const char *arg, int status, const char *error);

/* A request for /admin/... (or a POST) that stats.c refused before gw_actions_http could
 * read it (a method other than POST, a head too large): its audit and log lines, as
 * refused. req: what was received of its head, NUL-terminated. Worker thread. */
void gw_actions_http_refused(struct gw_worker *w, const char *req, int fd, int status,
			     const char *error);

/* The HTTP front end: req is a whole request head ("POST /admin/ACTION?k=v HTTP/1.1 ..."),
 * is_authorized whether it carried the right bearer token. Returns the JSON body
 * (malloc'd, the caller frees) and sets *status. Worker thread (the stats worker). */
char *gw_actions_http(struct gw_worker *w, const char *req, bool is_authorized, int fd,
		      int *status);

/* Whether the admin state changed since this worker last applied it; apply it (pause and
 * disable flags of its pools, kills of its clients; dispatching what a resume or enable
 * frees). force: apply even when the counter did not move (after a reload built new
 * pools). Worker thread. */
void gw_actions_apply(struct gw_worker *w, bool force);

/* Is the pool named so paused / the backend disabled (for a pool being built). Any thread. */
bool gw_actions_is_paused(const char *pool);
bool gw_actions_is_disabled(const char *pool, const char *backend);

/* main: the function SIGHUP runs (0; -ESHUTDOWN while stopping; or -1 with the first error
 * lines in err). */
typedef int (*gw_reload_fn)(char *err, size_t err_n);
void gw_actions_set_reload(gw_reload_fn fn);
/* main, after a reload was accepted: cfg is the configuration names are checked against
 * from now on (kept until exit); forget entries whose pool or backend is gone */
void gw_actions_prune(const struct gw_config *cfg);
/* main, after every worker exited */
void gw_actions_free_all(void);

#endif /* GW_GATEWAY_ACTIONS_H */
