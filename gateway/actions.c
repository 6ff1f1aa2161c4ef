/*
 * actions.c — the admin actions, one function each, shared by the q front end (admin.c)
 * and the HTTP one (gw_actions_http, called by stats.c): pause/resume a pool,
 * disable/enable a backend, kill a client, reload.
 *
 * The state (paused pools, disabled backends, kills posted for a worker) is one table by
 * name under a mutex, with a generation counter. An action changes the table, applies it to
 * its own worker at once and wakes the others with the loop's msg_ring (w->wake_mask);
 * a woken worker (or its tick, should a wakeup be lost) sees the counter moved and applies
 * the table to its own pools: pool/ decides what a paused pool or disabled backend means
 * (pool_set_paused, pool_be_set_disabled). By name, so a reload keeps it: main prunes the
 * entries whose pool or backend is gone, each worker applies the rest to the pools it builds.
 *
 * Every action, done or refused, writes one audit line (audit.c) and one log line at info.
 */
#include "gateway/actions.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <jansson.h>

#include "gateway/audit.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/reply.h"
#include "gateway/runtime.h"
#include "gateway/stats.h"
#include "gateway/worker.h"

/* ------------------------------------------------------------------ the table */

struct entry {
	char *pool;
	char *backend;		/* NULL: a paused pool */
};

/* a kill posted for another worker's client; the poster waits for its outcome */
enum kill_state {
	KILL_POSTED = 0,	/* not taken yet */
	KILL_TAKEN,		/* its worker looks for the client */
	KILL_DONE,		/* killed */
	KILL_GONE,		/* no such client there */
};

struct kill {
	int worker;
	uint64_t id;
	uint64_t seq;		/* this post's number */
	enum kill_state state;
	bool is_orphan;		/* its poster stopped waiting: its worker removes it when done */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *paused, *disabled;
static size_t n_paused, n_disabled;
static struct kill *kills;
static size_t n_kills;
static uint64_t kill_seq;
static uint64_t gen = 1;	/* __atomic; workers start at 0, so each applies once */
/* the configuration the last accepted reload made (NULL: none yet, every worker runs the
 * first one): names are checked against it under mu, so a name a reload removed is refused
 * even before a worker applies that reload, and prune and check cannot cross */
static const struct gw_config *latest;
static gw_reload_fn reload_fn;	/* __atomic */

static const char *const names[GW_ACT_N] = {
	"pause", "resume", "disable", "enable", "kill", "reload",
};

const char *gw_action_name(enum gw_action_kind k)
{
	return (unsigned)k < GW_ACT_N ? names[k] : "?";
}

int gw_action_of(const char *name, size_t len)
{
	for (int k = 0; k < GW_ACT_N; k++)
		if (strlen(names[k]) == len && memcmp(names[k], name, len) == 0)
			return k;
	return -1;
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* caller holds mu */
static ssize_t find(const struct entry *v, size_t n, const char *pool, const char *backend)
{
	for (size_t i = 0; i < n; i++)
		if (same(v[i].pool, pool) && same(v[i].backend, backend))
			return (ssize_t)i;
	return -1;
}

/* Add or remove (pool, backend) in *v (caller holds mu). -ENOMEM or 0. */
static int set_entry(struct entry **v, size_t *n, const char *pool, const char *backend,
		     bool on)
{
	ssize_t i = find(*v, *n, pool, backend);

	if (!on) {
		if (i >= 0) {
			free((*v)[i].pool);
			free((*v)[i].backend);
			(*v)[i] = (*v)[--*n];
		}
		return 0;
	}
	if (i >= 0)
		return 0;
	struct entry *g = realloc(*v, (*n + 1) * sizeof(**v));
	if (!g)
		return -ENOMEM;
	*v = g;
	g[*n].pool = strdup(pool);
	g[*n].backend = backend ? strdup(backend) : NULL;
	if (!g[*n].pool || (backend && !g[*n].backend)) {
		free(g[*n].pool);
		free(g[*n].backend);
		return -ENOMEM;
	}
	++*n;
	return 0;
}

bool gw_actions_is_paused(const char *pool)
{
	pthread_mutex_lock(&mu);
	bool on = find(paused, n_paused, pool, NULL) >= 0;
	pthread_mutex_unlock(&mu);
	return on;
}

bool gw_actions_is_disabled(const char *pool, const char *backend)
{
	pthread_mutex_lock(&mu);
	bool on = find(disabled, n_disabled, pool, backend) >= 0;
	pthread_mutex_unlock(&mu);
	return on;
}

/* The table changed: this worker applies it now, the others when woken (now: the caller
 * waits for them). Returns the new generation. */
static uint64_t publish(struct gw_worker *w)
{
	uint64_t g = __atomic_add_fetch(&gen, 1, __ATOMIC_SEQ_CST);

	for (int i = 0; i < w->n_peers && i < 64; i++)
		if (i != w->id)
			w->wake_mask |= 1ULL << i;
	gw_actions_apply(w, false);
	gw_worker_wake_now(w);
	return g;
}

/* How long an action waits for the other workers (all applied a pause or disable; the
 * client's worker carried out a kill) before it answers anyway. */
#define WAIT_PEERS_US (200 * 1000)

/* every other worker still running applied generation g */
static bool all_applied(struct gw_worker *w, uint64_t g)
{
	for (int i = 0; i < w->n_peers; i++) {
		const struct gw_worker *o = w->peers[i];
		if (i == w->id || __atomic_load_n(&o->wake_fd, __ATOMIC_ACQUIRE) <= 0)
			continue;	/* not started, or gone: it sends nothing new */
		if (__atomic_load_n(&o->admin_gen, __ATOMIC_ACQUIRE) < g)
			return false;
	}
	return true;
}

/* caller holds mu */
static struct kill *kill_of(uint64_t seq)
{
	for (size_t i = 0; i < n_kills; i++)
		if (kills[i].seq == seq)
			return &kills[i];
	return NULL;
}

static bool kill_settled(struct gw_worker *w, uint64_t seq)
{
	(void)w;
	pthread_mutex_lock(&mu);
	struct kill *k = kill_of(seq);
	bool is_settled = !k || k->state >= KILL_DONE;
	pthread_mutex_unlock(&mu);
	return is_settled;
}

/*
 * Wait until ok(w, arg), at most WAIT_PEERS_US: the other workers were woken (publish) and
 * take the change on their next turn, microseconds to a millisecond away. Meanwhile this
 * worker applies what they publish, so two workers waiting for each other cannot hold each
 * other up; its own connections wait that long (an admin action is rare). false: timed out.
 */
static bool wait_peers(struct gw_worker *w, bool (*ok)(struct gw_worker *, uint64_t),
		       uint64_t arg)
{
	uint64_t until = gw_now_us() + WAIT_PEERS_US;

	for (;;) {
		if (ok(w, arg))
			return true;
		if (gw_now_us() >= until)
			return false;
		gw_actions_apply(w, false);
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* After a pause or disable (or their undoing): answer once every worker applied it, so no
 * worker sends anything new to what the answer says is paused or disabled. */
static void wait_applied(struct gw_worker *w, uint64_t g, const char *what)
{
	if (w->n_peers > 1 && !wait_peers(w, all_applied, g))
		gw_warn("action=%s msg=\"admin action: not every worker applied it within %d ms; "
			"answered anyway, they apply it on their next tick\"", what,
			WAIT_PEERS_US / 1000);
}

static struct gw_conn *client_by_id(struct gw_worker *w, uint64_t id)
{
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind == GW_CONN_CLIENT && !c->is_closing && c->id == id)
			return c;
	}
	return NULL;
}

static void kill_client(struct gw_worker *w, struct gw_conn *c)
{
	gw_info("conn=%llu peer=%s user=%s msg=\"client killed by an admin\"",
		(unsigned long long)c->id, c->peer, c->cl.user_log);
	gw_conn_close(w, c, "killed by an admin");
}

void gw_actions_apply(struct gw_worker *w, bool force)
{
	uint64_t g = __atomic_load_n(&gen, __ATOMIC_SEQ_CST);
	uint64_t mine[16], seqs[16];
	size_t n_mine = 0;
	bool is_changed = false;

	if (g == w->admin_gen && !force)
		return;
	pthread_mutex_lock(&mu);
	g = __atomic_load_n(&gen, __ATOMIC_SEQ_CST);
	for (size_t i = 0; i < w->n_pools; i++) {
		struct gw_pool_rt *p = w->pools[i];
		bool is_freed = false;
		bool on = find(paused, n_paused, p->cfg->name, NULL) >= 0;
		if (pool_set_paused(&p->pl, on)) {
			is_changed = true;
			is_freed |= !on;
		}
		for (size_t b = 0; b < p->n_backends; b++) {
			struct gw_backend_rt *be = p->backends[b];
			on = find(disabled, n_disabled, p->cfg->name, be->cfg->name) >= 0;
			if (pool_be_set_disabled(&be->pb, on)) {
				is_changed = true;
				is_freed |= !on;
			}
		}
		if (is_freed && p->pl.queue_len)
			gw_pool_dispatch(w, p);	/* what it held may go now */
	}
	/* kills posted for this worker's clients (a handful at most: taken in batches) */
	bool more = false;
	for (size_t i = 0; i < n_kills; i++) {
		if (kills[i].worker != w->id || kills[i].state != KILL_POSTED)
			continue;
		if (n_mine == 16) {
			more = true;
			break;
		}
		kills[i].state = KILL_TAKEN;
		seqs[n_mine] = kills[i].seq;
		mine[n_mine++] = kills[i].id;
	}
	pthread_mutex_unlock(&mu);
	bool found[16];
	for (size_t i = 0; i < n_mine; i++) {
		struct gw_conn *c = client_by_id(w, mine[i]);
		found[i] = c != NULL;
		if (c)
			kill_client(w, c);
	}
	if (n_mine) {
		/* the outcome for the poster; one it stopped waiting for is removed here */
		pthread_mutex_lock(&mu);
		for (size_t i = 0; i < n_mine; i++) {
			struct kill *k = kill_of(seqs[i]);
			if (!k)
				continue;
			k->state = found[i] ? KILL_DONE : KILL_GONE;
			if (k->is_orphan)
				*k = kills[--n_kills];
		}
		pthread_mutex_unlock(&mu);
	}
	/* /stats and the tables of other workers read this worker's snapshot: once the change
	 * is applied here, it shows there (an operator waits on it for a pause to drain) */
	if (is_changed && w->n_peers > 1)
		gw_stats_publish(w);
	/* more kills: the next tick takes them */
	__atomic_store_n(&w->admin_gen, more ? g - 1 : g, __ATOMIC_RELEASE);
}

void gw_actions_set_reload(gw_reload_fn fn)
{
	__atomic_store_n(&reload_fn, fn, __ATOMIC_RELEASE);
}

static bool pool_exists(const struct gw_config *cfg, const char *pool, const char *backend)
{
	const struct gw_pool_cfg *p = gw_cfg_pool(cfg, pool);

	if (!p)
		return false;
	if (!backend)
		return true;
	for (size_t b = 0; b < p->n_backends; b++)
		if (p->backends[b].name && strcmp(p->backends[b].name, backend) == 0)
			return true;
	return false;
}

static void prune(struct entry *v, size_t *n, const struct gw_config *cfg)
{
	for (size_t i = 0; i < *n;) {
		if (pool_exists(cfg, v[i].pool, v[i].backend)) {
			i++;
			continue;
		}
		char pv[GW_ACTION_NAME_MAX * 4 + 3], bv[GW_ACTION_NAME_MAX * 4 + 3];
		gw_log_value(pv, sizeof(pv), v[i].pool);
		gw_log_value(bv, sizeof(bv), v[i].backend ? v[i].backend : "-");
		gw_info("pool=%s backend=%s msg=\"reload removed it: its admin %s state is "
			"forgotten\"", pv, bv, v[i].backend ? "disable" : "pause");
		free(v[i].pool);
		free(v[i].backend);
		v[i] = v[--*n];
	}
}

void gw_actions_prune(const struct gw_config *cfg)
{
	pthread_mutex_lock(&mu);
	latest = cfg;
	prune(paused, &n_paused, cfg);
	prune(disabled, &n_disabled, cfg);
	pthread_mutex_unlock(&mu);
	__atomic_add_fetch(&gen, 1, __ATOMIC_SEQ_CST);
}

void gw_actions_free_all(void)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < n_paused; i++)
		free(paused[i].pool);
	for (size_t i = 0; i < n_disabled; i++) {
		free(disabled[i].pool);
		free(disabled[i].backend);
	}
	free(paused);
	free(disabled);
	free(kills);
	paused = disabled = NULL;
	kills = NULL;
	latest = NULL;
	n_paused = n_disabled = n_kills = 0;
	pthread_mutex_unlock(&mu);
}

/* ---------------------------------------------------------- audit and logs */

static void record(struct gw_worker *w, const struct gw_action_who *who, const char *action,
		   const char *arg, const char *outcome)
{
	char uv[GW_ACTION_NAME_MAX * 4 + 3], pv[80], av[1100], ov[2100];

	gw_log_value(uv, sizeof(uv), who->user && who->user[0] ? who->user : "-");
	gw_log_value(pv, sizeof(pv), who->peer && who->peer[0] ? who->peer : "-");
	gw_log_value(av, sizeof(av), arg ? arg : "");
	gw_log_value(ov, sizeof(ov), outcome);
	/* msg first: a line cut for its length (log.h) keeps it */
	gw_info("msg=\"admin action\" user=%s peer=%s via=%s action=%s arg=%s outcome=%s", uv, pv,
		who->via, action, av, ov);
	gw_audit_action(w, uv, pv, who->via, action, av, ov);
}

static void finish(struct gw_worker *w, const struct gw_action_who *who, enum gw_action_kind k,
		   const char *arg, struct gw_action_result *res)
{
	char out[600];

	if (res->status < 300)
		snprintf(out, sizeof(out), "ok: %s", res->state);
	else
		snprintf(out, sizeof(out), "%s", res->error);
	record(w, who, gw_action_name(k), arg, out);
}

void gw_action_refused(struct gw_worker *w, const struct gw_action_who *who, const char *action,
		       const char *arg, int status, const char *error)
{
	char out[600];

	snprintf(out, sizeof(out), "refused %d: %s", status, error);
	record(w, who, action, arg, out);
}

static void fail(struct gw_action_result *res, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct gw_action_result *res, int status, const char *fmt, ...)
{
	va_list ap;

	res->status = status;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
}

static void done(struct gw_action_result *res, const char *state)
{
	res->status = 200;
	snprintf(res->state, sizeof(res->state), "%s", state);
}

/* a name as it may appear in an error text: printable, shortened */
static void shown(char *dst, size_t n, const char *s)
{
	size_t i = 0;

	for (; s[i] && i + 1 < n && i < 64; i++)
		dst[i] = (s[i] >= ' ' && s[i] < 127) ? s[i] : '?';
	dst[i] = '\0';
}

/* --------------------------------------------------------------- the actions */

void gw_action_pause(struct gw_worker *w, const struct gw_action_who *who, const char *pool,
		     bool is_pause, struct gw_action_result *res)
{
	enum gw_action_kind k = is_pause ? GW_ACT_PAUSE : GW_ACT_RESUME;
	char sp[80];

	memset(res, 0, sizeof(*res));
	shown(sp, sizeof(sp), pool);
	snprintf(res->pool, sizeof(res->pool), "%s", pool);
	pthread_mutex_lock(&mu);
	bool is_known = gw_cfg_pool(latest ? latest : w->cfg, pool) != NULL;
	int ret = is_known ? set_entry(&paused, &n_paused, pool, NULL, is_pause) : 0;
	pthread_mutex_unlock(&mu);
	if (!is_known) {
		fail(res, 404, "qgate: unknown pool \"%s\"", sp);
	} else {
		if (ret < 0) {
			fail(res, 500, "qgate: out of memory");
		} else {
			wait_applied(w, publish(w), gw_action_name(k));
			done(res, is_pause ? "paused" : "running");
		}
	}
	finish(w, who, k, pool, res);
}

/* Every (pool, backend) of cfg that name (pool NULL) or (pool, backend) designates. */
static void resolve_backend(const struct gw_config *cfg, const char *pool, const char *backend,
			    struct gw_action_result *res)
{
	char sp[80], sb[80];

	shown(sb, sizeof(sb), backend);
	if (pool) {
		shown(sp, sizeof(sp), pool);
		const struct gw_pool_cfg *p = gw_cfg_pool(cfg, pool);
		if (!p) {
			fail(res, 404, "qgate: unknown pool \"%s\"", sp);
			return;
		}
		for (size_t b = 0; b < p->n_backends; b++) {
			if (p->backends[b].name && strcmp(p->backends[b].name, backend) == 0) {
				res->targets[0].pool = p->name;
				res->targets[0].backend = p->backends[b].name;
				res->n_targets = 1;
				return;
			}
		}
		fail(res, 404, "qgate: pool \"%s\" has no backend \"%s\"", sp, sb);
		return;
	}
	/* `name`: every pool with a backend of that name */
	size_t by_name = 0, by_split = 0;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct gw_pool_cfg *p = &cfg->pools[i];
		for (size_t b = 0; b < p->n_backends; b++) {
			if (!p->backends[b].name || strcmp(p->backends[b].name, backend) != 0)
				continue;
			if (res->n_targets < sizeof(res->targets) / sizeof(res->targets[0])) {
				res->targets[res->n_targets].pool = p->name;
				res->targets[res->n_targets].backend = p->backends[b].name;
				res->n_targets++;
			}
			by_name++;
		}
	}
	/* `pool.backend`: split at each dot */
	const char *split_pool = NULL, *split_be = NULL;
	size_t len = strlen(backend);
	for (const char *dot = strchr(backend, '.'); dot; dot = strchr(dot + 1, '.')) {
		size_t pl = (size_t)(dot - backend);
		for (size_t i = 0; i < cfg->n_pools; i++) {
			const struct gw_pool_cfg *p = &cfg->pools[i];
			if (strlen(p->name) != pl || memcmp(p->name, backend, pl) != 0)
				continue;
			for (size_t b = 0; b < p->n_backends; b++) {
				const char *bn = p->backends[b].name;
				if (bn && strlen(bn) == len - pl - 1 && strcmp(bn, dot + 1) == 0) {
					split_pool = p->name;
					split_be = bn;
					by_split++;
				}
			}
		}
	}
	if (by_name + by_split == 0) {
		fail(res, 404, "qgate: unknown backend \"%s\"", sb);
	} else if (by_split > 1 || (by_split && by_name)) {
		res->n_targets = 0;
		fail(res, 409, "qgate: backend \"%s\" is ambiguous: it reads as a backend name and "
		     "as pool.backend, or splits at more than one dot; give the pool apart "
		     "(.qgate.disable[`pool;`backend], ?pool=P&backend=B)", sb);
	} else if (by_split) {
		res->targets[0].pool = split_pool;
		res->targets[0].backend = split_be;
		res->n_targets = 1;
	} else if (by_name > res->n_targets) {
		res->n_targets = 0;
		fail(res, 409, "qgate: backend \"%s\" is in more than %zu pools: give the pool "
		     "apart", sb, sizeof(res->targets) / sizeof(res->targets[0]));
	}
}

void gw_action_disable(struct gw_worker *w, const struct gw_action_who *who, const char *pool,
		       const char *backend, bool is_disable, struct gw_action_result *res)
{
	enum gw_action_kind k = is_disable ? GW_ACT_DISABLE : GW_ACT_ENABLE;
	char arg[2 * GW_ACTION_NAME_MAX + 8];

	memset(res, 0, sizeof(*res));
	if (pool)
		snprintf(arg, sizeof(arg), "%s;%s", pool, backend);
	else
		snprintf(arg, sizeof(arg), "%s", backend);
	int ret = 0;
	pthread_mutex_lock(&mu);
	resolve_backend(latest ? latest : w->cfg, pool, backend, res);
	for (size_t i = 0; i < res->n_targets && ret == 0; i++)
		ret = set_entry(&disabled, &n_disabled, res->targets[i].pool,
				res->targets[i].backend, is_disable);
	pthread_mutex_unlock(&mu);
	if (res->n_targets) {
		if (ret < 0) {
			fail(res, 500, "qgate: out of memory");
		} else {
			wait_applied(w, publish(w), gw_action_name(k));
			done(res, is_disable ? "disabled" : "enabled");
		}
	}
	finish(w, who, k, arg, res);
}

void gw_action_kill(struct gw_worker *w, const struct gw_action_who *who, uint64_t id,
		    struct gw_action_result *res)
{
	char arg[24];

	memset(res, 0, sizeof(*res));
	res->id = id;
	snprintf(arg, sizeof(arg), "%llu", (unsigned long long)id);
	struct gw_conn *c = client_by_id(w, id);
	if (c) {
		kill_client(w, c);	/* queued: closes once this turn's handlers are done */
		done(res, "killed");
		finish(w, who, GW_ACT_KILL, arg, res);
		return;
	}
	/* another worker's client, as its last snapshot shows it (at most 250 ms old) */
	struct gw_client_row *rows;
	size_t n;
	int owner = -1;
	if (gw_stats_clients(w, &rows, &n) == 0) {
		for (size_t i = 0; i < n && owner < 0; i++)
			if (rows[i].id == id && rows[i].worker != w->id)
				owner = rows[i].worker;
		free(rows);
	}
	if (owner < 0) {
		fail(res, 404, "qgate: no client with id %llu", (unsigned long long)id);
		finish(w, who, GW_ACT_KILL, arg, res);
		return;
	}
	/* posted for its worker, which says whether the client was still there: the answer
	 * waits for that rather than trusting the snapshot */
	pthread_mutex_lock(&mu);
	uint64_t seq = ++kill_seq;
	struct kill *g = realloc(kills, (n_kills + 1) * sizeof(*kills));
	if (g) {
		kills = g;
		kills[n_kills++] = (struct kill){ .worker = owner, .id = id, .seq = seq };
	}
	pthread_mutex_unlock(&mu);
	if (!g) {
		fail(res, 500, "qgate: out of memory");
		finish(w, who, GW_ACT_KILL, arg, res);
		return;
	}
	publish(w);
	wait_peers(w, kill_settled, seq);
	pthread_mutex_lock(&mu);
	struct kill *k = kill_of(seq);
	enum kill_state st = k ? k->state : KILL_GONE;
	if (k && st >= KILL_DONE)
		*k = kills[--n_kills];
	else if (k)
		k->is_orphan = true;	/* its worker carries it out and removes it */
	pthread_mutex_unlock(&mu);
	if (st == KILL_DONE) {
		done(res, "killed");
	} else if (st == KILL_GONE) {
		fail(res, 404, "qgate: no client with id %llu", (unsigned long long)id);
	} else {
		/* its worker did not answer in time: it will close the client on its next turn */
		done(res, "posted");
		res->status = 202;
	}
	finish(w, who, GW_ACT_KILL, arg, res);
}

void gw_action_reload(struct gw_worker *w, const struct gw_action_who *who,
		      struct gw_action_result *res)
{
	gw_reload_fn fn = __atomic_load_n(&reload_fn, __ATOMIC_ACQUIRE);
	char why[400] = "";

	memset(res, 0, sizeof(*res));
	int ret = 0;
	/* a stopping gateway takes no new configuration (main refuses it too: SIGTERM may have
	 * come after this check) */
	if (w->is_stopping || *w->stop_flag)
		ret = -ESHUTDOWN;
	else if (fn)
		ret = fn(why, sizeof(why));
	if (!fn)
		fail(res, 500, "qgate: reload is not available here");
	else if (ret == -ESHUTDOWN)
		fail(res, 503, "qgate: gateway stopping");
	else if (ret < 0)
		fail(res, 400, "qgate: reload refused, the running configuration is kept: %s",
		     why[0] ? why : "see the log");
	else
		done(res, "reloaded");
	finish(w, who, GW_ACT_RELOAD, "", res);
}

/* ---------------------------------------------------------------- HTTP */

/* Percent-decode src[0..n) into dst (GW_ACTION_NAME_MAX + 1 bytes). '+' stays '+'. -1: a
 * bad escape, a NUL, or too long. */
static int pct_decode(const char *src, size_t n, char *dst)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)src[i];
		if (ch == '%') {
			int a = i + 1 < n ? gw_hex_digit(src[i + 1]) : -1;
			int b = i + 2 < n ? gw_hex_digit(src[i + 2]) : -1;
			if (a < 0 || b < 0)
				return -1;
			ch = a * 16 + b;
			i += 2;
		}
		if (ch == 0 || o >= GW_ACTION_NAME_MAX)
			return -1;
		dst[o++] = (char)ch;
	}
	dst[o] = '\0';
	return 0;
}

/* The query parameter key of q[0..qn) ("a=1&b=2"), decoded into out. 0 found, 1 absent,
 * -1 malformed. */
static int query_param(const char *q, size_t qn, const char *key, char *out)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i < qn;) {
		size_t e = i;
		while (e < qn && q[e] != '&')
			e++;
		if (e - i > kl && memcmp(q + i, key, kl) == 0 && q[i + kl] == '=')
			return pct_decode(q + i + kl + 1, e - i - kl - 1, out) < 0 ? -1 : 0;
		i = e + 1;
	}
	return 1;
}

static char *json_reply(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	size_t n = s ? strlen(s) : 0;
	char *t = s ? realloc(s, n + 2) : NULL;

	json_decref(o);
	if (!t) {
		free(s);
		return strdup("{\"ok\":false}\n");
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	return t;
}

static char *json_error(int status, int *out_status, const char *error)
{
	*out_status = status;
	return json_reply(json_pack("{s:b,s:s}", "ok", 0, "error", error));
}

static char *result_json(enum gw_action_kind k, const struct gw_action_result *res,
			 int *status)
{
	if (res->status >= 300)
		return json_error(res->status, status, res->error);
	json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 1, "action", gw_action_name(k), "state",
			      res->state);
	switch (k) {
	case GW_ACT_PAUSE:
	case GW_ACT_RESUME:
		json_object_set_new(o, "pool", json_string(res->pool));
		json_object_set_new(o, "paused", json_boolean(k == GW_ACT_PAUSE));
		break;
	case GW_ACT_DISABLE:
	case GW_ACT_ENABLE: {
		json_t *a = json_array();
		for (size_t i = 0; i < res->n_targets; i++)
			json_array_append_new(a, json_pack("{s:s,s:s}", "pool",
							   res->targets[i].pool, "backend",
							   res->targets[i].backend));
		json_object_set_new(o, "backends", a);
		json_object_set_new(o, "disabled", json_boolean(k == GW_ACT_DISABLE));
		break;
	}
	case GW_ACT_KILL:
		json_object_set_new(o, "id", json_integer((json_int_t)res->id));
		break;
	default:
		break;
	}
	*status = res->status;	/* 200, or 202: a kill posted, not confirmed */
	return json_reply(o);
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, n, "%s:%u", host, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, n, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, n, "unix");
	}
}

static void http_peer(int fd, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		format_peer(&ss, out, n);
}

/* "METHOD /admin/ACTION?QUERY HTTP/1.1": the action named (-1: none), and the query */
static int http_target(const char *req, const char **q, size_t *qn)
{
	const char *t = req + strcspn(req, " \r\n");

	t += *t == ' ';
	const char *te = t + strcspn(t, " \r\n");
	const char *qm = memchr(t, '?', (size_t)(te - t));
	const char *pe = qm ? qm : te;

	*q = qm ? qm + 1 : te;
	*qn = (size_t)(te - *q);
	if ((size_t)(pe - t) > 7 && memcmp(t, "/admin/", 7) == 0)
		return gw_action_of(t + 7, (size_t)(pe - t - 7));
	return -1;
}

/*
 * A kill's id as HTTP gives it: decimal digits only (no sign, space or other base), 1 to
 * INT64_MAX (what a q long can name too, so every id prints the same both ways). 0, or -1
 * when it is not one.
 */
static int parse_id(const char *a, uint64_t *id)
{
	uint64_t v = 0;

	if (!a[0])
		return -1;
	for (const char *p = a; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return -1;	/* over INT64_MAX: no client has such an id */
		v = v * 10 + d;
	}
	if (v == 0)
		return -1;
	*id = v;
	return 0;
}

void gw_actions_http_refused(struct gw_worker *w, const char *req, int fd, int status,
			     const char *error)
{
	struct gw_action_who who = { .user = "-", .peer = "-", .via = "http" };
	char peer[64] = "-";
	const char *q;
	size_t qn;
	int k = http_target(req, &q, &qn);

	http_peer(fd, peer, sizeof(peer));
	who.peer = peer;
	gw_action_refused(w, &who, k >= 0 ? gw_action_name((enum gw_action_kind)k) : "?", NULL,
			  status, error);
}

char *gw_actions_http(struct gw_worker *w, const char *req, bool is_authorized, int fd,
		      int *status)
{
	struct gw_action_who who = { .user = "stats-token", .peer = "-", .via = "http" };
	char peer[64] = "-", a[GW_ACTION_NAME_MAX + 1], b[GW_ACTION_NAME_MAX + 1];
	struct gw_action_result res;
	const char *q;
	size_t qn;

	http_peer(fd, peer, sizeof(peer));
	who.peer = peer;
	int k = http_target(req, &q, &qn);
	const char *an = k >= 0 ? gw_action_name((enum gw_action_kind)k) : "?";
	if (!w->cfg->stats_token) {
		const char *e = "qgate: admin actions over HTTP are refused while no stats.token "
				"is configured: set stats.token";
		who.user = "-";
		gw_action_refused(w, &who, an, NULL, 403, e);
		return json_error(403, status, e);
	}
	if (!is_authorized) {
		const char *e = "qgate: a bearer token is needed: Authorization: Bearer "
				"<stats.token>";
		who.user = "-";
		gw_action_refused(w, &who, an, NULL, 401, e);
		return json_error(401, status, e);
	}
	if (k < 0) {
		const char *e = "qgate: unknown admin action: POST /admin/pause|resume?pool=P, "
				"/admin/disable|enable?backend=B[&pool=P], /admin/kill?id=N, "
				"/admin/reload";
		gw_action_refused(w, &who, "?", NULL, 404, e);
		return json_error(404, status, e);
	}
	int rp, rb;
	switch ((enum gw_action_kind)k) {
	case GW_ACT_PAUSE:
	case GW_ACT_RESUME:
		rp = query_param(q, qn, "pool", a);
		if (rp != 0) {
			const char *e = rp < 0 ? "qgate: bad pool parameter (percent-encoded, no NUL, "
						 "at most 255 bytes)" : "qgate: the pool parameter is "
						 "needed: ?pool=NAME";
			gw_action_refused(w, &who, an, NULL, 400, e);
			return json_error(400, status, e);
		}
		gw_action_pause(w, &who, a, k == GW_ACT_PAUSE, &res);
		break;
	case GW_ACT_DISABLE:
	case GW_ACT_ENABLE:
		rb = query_param(q, qn, "backend", b);
		rp = query_param(q, qn, "pool", a);
		if (rb != 0 || rp < 0) {
			const char *e = rb > 0 ? "qgate: the backend parameter is needed: "
						 "?backend=NAME[&pool=POOL]" :
					"qgate: bad backend or pool parameter (percent-encoded, no "
					"NUL, at most 255 bytes)";
			gw_action_refused(w, &who, an, NULL, 400, e);
			return json_error(400, status, e);
		}
		gw_action_disable(w, &who, rp == 0 ? a : NULL, b, k == GW_ACT_DISABLE, &res);
		break;
	case GW_ACT_KILL: {
		uint64_t id = 0;
		rp = query_param(q, qn, "id", a);
		if (rp != 0 || parse_id(a, &id) < 0) {
			const char *e = "qgate: the id parameter is needed, a client id as "
					".qgate.clients[] shows it (decimal digits, 1 to "
					"9223372036854775807): ?id=N";
			gw_action_refused(w, &who, an, NULL, 400, e);
			return json_error(400, status, e);
		}
		gw_action_kill(w, &who, id, &res);
		break;
	}
	case GW_ACT_RELOAD:
		gw_action_reload(w, &who, &res);
		break;
	default:
		return json_error(404, status, "qgate: unknown admin action");
	}
	return result_json((enum gw_action_kind)k, &res, status);
}
