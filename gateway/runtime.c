/*
 * runtime.c — the worker's live objects made from the configuration (pools, their backends,
 * listeners), and SIGHUP reloads that add, change or remove them without dropping clients.
 *
 * Lifetime rule: requests, pins and connections hold pointers to pools, backends and
 * listeners, so each is allocated on its own and never moved. A reload that removes or
 * changes one retires it instead of freeing it: a retired backend's idle connections close
 * at once, busy ones close after their answer, and nothing reconnects; a retired pool's
 * queued requests get `qgate: pool removed`; a retired listener stops accepting while its
 * clients carry on. Retired objects are freed when the worker exits. The configurations they
 * point into are kept alive by main for the same reason.
 *
 * TLS contexts are the exception: they are reference counted by OpenSSL, so a kept listener
 * or backend gets a new one at every reload (its files read again, for certificate
 * rotation) and drops its reference to the old one at once; connections made from the old
 * context keep it until they close. Each worker builds its own, on its own thread.
 */
#include "gateway/runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/auth.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/listen.h"
#include "gateway/log.h"
#include "gateway/reply.h"
#include "gateway/req.h"
#include "gateway/tls.h"
#include "gateway/upstream.h"
#include "gateway/worker.h"
#include "pool/pool.h"
#include "gateway/shared.h"

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_tls(const struct gw_tls_cfg *a, const struct gw_tls_cfg *b)
{
	if (!a || !b)
		return a == b;
	return same_str(a->cert_file, b->cert_file) && same_str(a->key_file, b->key_file) &&
	       same_str(a->client_ca_file, b->client_ca_file) && same_str(a->ca_file, b->ca_file) &&
	       a->is_verify == b->is_verify;
}

/*
 * Pooled connection slots per worker: the warm `connections`, and with max_inflight "auto"
 * spare ones up to its ceiling, opened only while the learned limit has room and requests
 * wait (pool_be_wants_spare): tiny calls then run several at once without every
 * configuration having to size `connections` for the busiest moment.
 */
static uint32_t backend_slots(const struct gw_backend_cfg *bc)
{
	uint32_t n = (uint32_t)bc->connections;

	if (bc->max_inflight == 0 && (uint32_t)bc->max_inflight_ceiling > n)
		n = (uint32_t)bc->max_inflight_ceiling;
	return n < GW_SLOTS_MAX ? n : GW_SLOTS_MAX;
}

/* Can the live backend keep its connections under the new definition? */
static bool backend_same(const struct gw_backend_cfg *a, const struct gw_backend_cfg *b)
{
	return same_str(a->addr.text, b->addr.text) && same_str(a->user, b->user) &&
	       same_str(a->password, b->password) && a->connections == b->connections &&
	       backend_slots(a) == backend_slots(b) && same_tls(a->tls, b->tls);
}

/* Where a backend sits in the file ("pools[0].backends[1]"), for --check-style log lines. */
static void backend_path(const struct gw_config *cfg, const struct gw_backend_cfg *bc, char *buf,
			 size_t n)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct gw_pool_cfg *pc = &cfg->pools[i];
		if (bc >= pc->backends && bc < pc->backends + pc->n_backends) {
			snprintf(buf, n, "pools[%zu].backends[%zu]", i,
				 (size_t)(bc - pc->backends));
			return;
		}
	}
	snprintf(buf, n, "backend %s", bc->name);
}

static void listener_path(const struct gw_config *cfg, const struct gw_listener_cfg *lc,
			  char *buf, size_t n)
{
	if (lc >= cfg->listeners && lc < cfg->listeners + cfg->n_listeners)
		snprintf(buf, n, "listeners[%zu]", (size_t)(lc - cfg->listeners));
	else
		snprintf(buf, n, "listener %s", lc->name);
}

/*
 * A fresh context from t's files. NULL on failure, logged as one line naming the object
 * (kind=name, name already a logfmt value), the failing field as --check names it, and the
 * reason; is_reload says the caller keeps the context it has.
 */
static struct ssl_ctx_st *tls_ctx_new(struct gw_worker *w, const struct gw_tls_cfg *t,
				      bool is_server, const char *kind, const char *name,
				      const char *path, bool is_reload)
{
	const char *field = NULL;
	char why[320], e[512], ev[2048];
	struct ssl_ctx_st *ctx = gw_tls_ctx_new(t, is_server, &field, why, sizeof(why));

	if (!ctx) {	/* why may name a file of the config */
		snprintf(e, sizeof(e), "%s.tls.%s: %s", path, field, why);
		gw_log_value(ev, sizeof(ev), e);
	}
	if (!ctx && is_reload)
		gw_err("worker=%d %s=%s msg=\"reload: TLS files not loaded, keeping the previous "
		       "context\" error=%s", w->id, kind, name, ev);
	else if (!ctx)
		gw_err("worker=%d %s=%s msg=\"cannot load TLS files\" error=%s",
		       w->id, kind, name, ev);
	return ctx;
}

/*
 * Reload of a kept listener or backend: its files are read again even when their paths did
 * not change, so a certificate rotated in place is served to new connections. On failure the
 * old context stays. The old one is only unreferenced (gw_tls_ctx_free): connections made
 * from it hold their own reference and keep working on it until they close.
 */
static void tls_ctx_reload(struct gw_worker *w, struct ssl_ctx_st **slot,
			   const struct gw_tls_cfg *t, bool is_server, const char *kind,
			   const char *name, const char *path)
{
	struct ssl_ctx_st *ctx = tls_ctx_new(w, t, is_server, kind, name, path, true);

	if (!ctx)
		return;
	gw_tls_ctx_free(*slot);
	*slot = ctx;
	gw_info("worker=%d %s=%s msg=\"TLS context reloaded\"", w->id, kind, name);
}

static struct gw_backend_rt *backend_new(struct gw_worker *w, struct gw_pool_rt *p,
					 const struct gw_backend_cfg *bc)
{
	struct gw_backend_rt *be = calloc(1, sizeof(*be));

	if (!be)
		return NULL;
	be->cfg = bc;
	be->pool = p;
	uint32_t n_slots = backend_slots(bc);
	struct pool_slot *slots = calloc(n_slots, sizeof(*slots));
	pool_list_init(&be->retired_link);
	if (!slots) {
		free(be);
		return NULL;
	}
	/* one count of requests in flight per backend across all workers (max_inflight) */
	pool_be_init(&be->pb, &p->pl, bc->weight,
		     gw_shared_backend(&bc->addr, bc->max_inflight,
				       (uint32_t)bc->max_inflight_ceiling),
		     bc->max_inflight, slots, n_slots);
	for (uint32_t s = (uint32_t)bc->connections; s < n_slots; s++)
		slots[s].is_spare = true;
	be->pb.key = pool_key_of(bc->name, strlen(bc->name));
	if (bc->tls) {
		char path[64];
		backend_path(w->cfg, bc, path, sizeof(path));
		be->ssl_ctx = tls_ctx_new(w, bc->tls, false, "backend", bc->log_name, path, false);
		if (!be->ssl_ctx) {
			free(slots);
			free(be);
			return NULL;
		}
	}
	return be;
}

static void backend_free(struct gw_backend_rt *be)
{
	/* a worker leaving with answers still owed (the grace period ran out) gives their
	 * slots back: the other workers' requests must not wait for them forever */
	for (uint32_t s = 0; s < be->pb.n_slots; s++)
		if (be->pb.slots[s].rec.state != POOL_DOWN)
			pool_conn_set_state(&be->pb.slots[s].rec, POOL_DOWN);
	pool_be_retire(&be->pb);
	if (be->ssl_ctx)
		gw_tls_ctx_free(be->ssl_ctx);
	free(be->pb.slots);
	free(be);
}

/* Give the pool its current backends. */
static int set_backends(struct gw_pool_rt *p, struct gw_backend_rt **bes, size_t n)
{
	struct pool_be **view = calloc(n ? n : 1, sizeof(*view));

	if (!view)
		return -ENOMEM;
	for (size_t b = 0; b < n; b++)
		view[b] = &bes[b]->pb;
	free(p->backends);
	free(p->pb_view);
	p->backends = bes;
	p->pb_view = view;
	p->n_backends = n;
	pool_set_backends(&p->pl, view, n);
	return 0;
}

static void pool_apply_cfg(struct gw_pool_rt *p, const struct gw_pool_cfg *pc)
{
	p->cfg = pc;
	p->pl.queue_max = pc->queue_max;
	p->pl.queue_timeout_ms = pc->queue_timeout_ms;
	p->pl.selector.strategy = (enum pool_strategy)pc->strategy;
	p->pl.affinity = (enum pool_affinity)pc->affinity;
}

static struct gw_pool_rt *pool_new(struct gw_worker *w, const struct gw_pool_cfg *pc)
{
	struct gw_pool_rt *p = calloc(1, sizeof(*p));
	struct gw_backend_rt **bes = calloc(pc->n_backends ? pc->n_backends : 1, sizeof(*bes));

	if (!p || !bes)
		goto fail;
	pool_list_init(&p->retired_link);
	p->cfg = pc;
	pool_init(&p->pl, (enum pool_strategy)pc->strategy,
		  w->rng ^ (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL, pc->queue_max,
		  pc->queue_timeout_ms, w->id, &w->now_ms);
	p->pl.affinity = (enum pool_affinity)pc->affinity;
	pool_costs_init(&p->costs);
	p->pl.costs = &p->costs;
	pool_list_init(&p->dispatch_link);
	for (size_t b = 0; b < pc->n_backends; b++) {
		bes[b] = backend_new(w, p, &pc->backends[b]);
		if (!bes[b])
			goto fail;
	}
	if (set_backends(p, bes, pc->n_backends) < 0)
		goto fail;
	return p;
fail:
	for (size_t b = 0; bes && b < pc->n_backends; b++)
		if (bes[b])
			backend_free(bes[b]);
	free(bes);
	free(p);
	return NULL;
}

static void pool_free(struct gw_pool_rt *p)
{
	for (size_t b = 0; b < p->n_backends; b++)
		backend_free(p->backends[b]);
	free(p->backends);
	free(p->pb_view);
	free(p);
}

static struct gw_listener_rt *listener_new(struct gw_worker *w, const struct gw_listener_cfg *lc)
{
	struct gw_listener_rt *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->cfg = lc;
	pool_list_init(&l->retired_link);
	for (size_t p = 0; p < w->n_pools; p++)
		if (strcmp(w->pools[p]->cfg->name, lc->pool) == 0)
			l->pool = w->pools[p];
	if (lc->tls) {
		char path[64];
		listener_path(w->cfg, lc, path, sizeof(path));
		l->ssl_ctx = tls_ctx_new(w, lc->tls, true, "listener", lc->log_name, path, false);
		if (!l->ssl_ctx) {
			free(l);
			return NULL;
		}
	}
	return l;
}

static void listener_free(struct gw_listener_rt *l)
{
	if (l->ssl_ctx)
		gw_tls_ctx_free(l->ssl_ctx);
	free(l);
}

int gw_runtime_init(struct gw_worker *w)
{
	const struct gw_config *cfg = w->cfg;

	pool_list_init(&w->retired_pools);
	pool_list_init(&w->retired_backends);
	pool_list_init(&w->retired_listeners);
	w->pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(*w->pools));
	w->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*w->listeners));
	if (!w->pools || !w->listeners)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		w->pools[i] = pool_new(w, &cfg->pools[i]);
		if (!w->pools[i])
			return -ENOMEM;
		w->n_pools++;
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		w->listeners[i] = listener_new(w, &cfg->listeners[i]);
		if (!w->listeners[i])
			return -EINVAL;
		w->n_listeners++;
	}
	/* every worker accepts on every listener: TCP through SO_REUSEPORT, a Unix name
	 * through a dup of its one shared socket (lshare.h) */
	for (size_t i = 0; i < w->n_listeners; i++) {
		int ret = gw_listen_open(w, w->listeners[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void gw_runtime_free(struct gw_worker *w)
{
	struct pool_link *l;

	for (size_t i = 0; w->pools && i < w->n_pools; i++)
		pool_free(w->pools[i]);
	for (size_t i = 0; w->listeners && i < w->n_listeners; i++)
		listener_free(w->listeners[i]);
	while (w->retired_pools.next && !pool_list_empty(&w->retired_pools)) {
		l = w->retired_pools.next;
		pool_list_del(l);
		pool_free(pool_container_of(l, struct gw_pool_rt, retired_link));
	}
	while (w->retired_backends.next && !pool_list_empty(&w->retired_backends)) {
		l = w->retired_backends.next;
		pool_list_del(l);
		backend_free(pool_container_of(l, struct gw_backend_rt, retired_link));
	}
	while (w->retired_listeners.next && !pool_list_empty(&w->retired_listeners)) {
		l = w->retired_listeners.next;
		pool_list_del(l);
		listener_free(pool_container_of(l, struct gw_listener_rt, retired_link));
	}
	free(w->pools);
	free(w->listeners);
	w->pools = NULL;
	w->listeners = NULL;
}

/* ------------------------------------------------------------------ reload */

static void retire_backend(struct gw_worker *w, struct gw_backend_rt *be)
{
	be->is_retired = true;
	pool_be_retire(&be->pb);	/* no slot is kept for it any more */
	pool_list_add_tail(&w->retired_backends, &be->retired_link);
	for (uint32_t s = 0; s < be->pb.n_slots; s++) {
		be->pb.slots[s].is_given_up = true;	/* nothing reconnects */
		struct gw_conn *c = gw_slot_conn(be, s);
		if (c && !c->is_closing && gw_up_state(c) != POOL_BUSY &&
		    gw_up_state(c) != POOL_DRAINING)
			gw_conn_close(w, c, "backend removed by reload");
		/* a busy one closes once its answer is through (answer_done) */
	}
	gw_info("backend=%s pool=%s msg=\"backend retired by reload\"", be->cfg->log_name,
		be->pool->cfg->log_name);
}

static void retire_pool(struct gw_worker *w, struct gw_pool_rt *p)
{
	p->is_retired = true;
	while (!pool_list_empty(&p->pl.queue))
		gw_req_fail(w, gw_req_of(pool_container_of(p->pl.queue.next, struct pool_req, qlink)),
			    "qgate: pool removed");
	for (size_t b = 0; b < p->n_backends; b++)
		retire_backend(w, p->backends[b]);
	/* the backends now live on the retired list; the pool keeps none */
	p->n_backends = 0;
	pool_list_add_tail(&w->retired_pools, &p->retired_link);
	gw_info("pool=%s msg=\"pool removed by reload\"", p->cfg->log_name);
}

/*
 * A backend (or pool) a reload replaces under the same name carries its counters and
 * histogram over: its /metrics series are one series, and a counter must never fall (a
 * rate() would read the drop as a restart). What the retired one still counts after this
 * (answers of its busy connections) is left out: a small undercount, never a fall.
 */
static void carry_backend(struct gw_backend_rt *to, const struct gw_backend_rt *from)
{
	to->stat = from->stat;
}

/* p's backend named name, or NULL */
static struct gw_backend_rt *backend_named(const struct gw_pool_rt *p, const char *name)
{
	for (size_t b = 0; b < p->n_backends; b++)
		if (strcmp(p->backends[b]->cfg->name, name) == 0)
			return p->backends[b];
	return NULL;
}

static void carry_pool(struct gw_pool_rt *to, const struct gw_pool_rt *from)
{
	to->stat = from->stat;
	to->pl.affinity_moves = from->pl.affinity_moves;
	for (size_t b = 0; b < to->n_backends; b++) {
		const struct gw_backend_rt *old = backend_named(from, to->backends[b]->cfg->name);
		if (old)
			carry_backend(to->backends[b], old);
	}
}

/* Rebuild a kept pool's backends: unchanged ones keep their connections. */
static void reload_pool(struct gw_worker *w, struct gw_pool_rt *p, const struct gw_pool_cfg *pc)
{
	struct gw_backend_rt **bes = calloc(pc->n_backends ? pc->n_backends : 1, sizeof(*bes));
	bool *kept = calloc(p->n_backends ? p->n_backends : 1, sizeof(*kept));

	if (!bes || !kept) {
		gw_err("pool=%s msg=\"reload: out of memory, pool left as it was\"",
			p->cfg->log_name);
		free(bes);
		free(kept);
		return;
	}
	for (size_t b = 0; b < pc->n_backends; b++) {
		const struct gw_backend_cfg *bc = &pc->backends[b];
		for (size_t o = 0; o < p->n_backends && !bes[b]; o++) {
			if (kept[o] || strcmp(p->backends[o]->cfg->name, bc->name) != 0 ||
			    !backend_same(p->backends[o]->cfg, bc))
				continue;
			kept[o] = true;
			bes[b] = p->backends[o];
			bes[b]->cfg = bc;
			bes[b]->pb.weight = bc->weight > 0 ? bc->weight : 1;
			pool_shared_set_max(bes[b]->pb.shared, bc->max_inflight,
					    (uint32_t)bc->max_inflight_ceiling);
			if (bc->tls) {
				char path[64];
				backend_path(w->cfg, bc, path, sizeof(path));
				tls_ctx_reload(w, &bes[b]->ssl_ctx, bc->tls, false, "backend",
					       bc->log_name, path);
			}
		}
		if (!bes[b]) {
			bes[b] = backend_new(w, p, bc);
			if (!bes[b]) {
				gw_err("backend=%s msg=\"reload: cannot create backend\"",
					bc->log_name);
				continue;
			}
			const struct gw_backend_rt *old = backend_named(p, bc->name);
			if (old)
				carry_backend(bes[b], old);
			gw_info("backend=%s pool=%s address=%s msg=\"backend added by reload\"",
				bc->log_name, pc->log_name, bc->addr.log_text);
			if (p->pl.is_started)
				gw_backend_start(w, bes[b]);
		}
	}
	for (size_t o = 0; o < p->n_backends; o++)
		if (!kept[o])
			retire_backend(w, p->backends[o]);
	/* compact away backends that could not be created */
	size_t n = 0;
	for (size_t b = 0; b < pc->n_backends; b++)
		if (bes[b])
			bes[n++] = bes[b];
	free(kept);
	pool_apply_cfg(p, pc);
	if (set_backends(p, bes, n) < 0)
		gw_err("pool=%s msg=\"reload: out of memory\"", pc->log_name);
	gw_pool_dispatch(w, p);
}

static void reload_pools(struct gw_worker *w, const struct gw_config *cfg)
{
	struct gw_pool_rt **pools = calloc(cfg->n_pools ? cfg->n_pools : 1, sizeof(*pools));
	bool *kept = calloc(w->n_pools ? w->n_pools : 1, sizeof(*kept));
	size_t n = 0;

	if (!pools || !kept) {
		gw_err("msg=\"reload: out of memory, pools left as they were\"");
		free(pools);
		free(kept);
		return;
	}
	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct gw_pool_cfg *pc = &cfg->pools[i];
		struct gw_pool_rt *p = NULL, *same_name = NULL;
		for (size_t o = 0; o < w->n_pools && !p; o++) {
			if (kept[o] || strcmp(w->pools[o]->cfg->name, pc->name) != 0)
				continue;
			if (w->pools[o]->cfg->mode == pc->mode) {
				kept[o] = true;
				p = w->pools[o];
			} else {
				same_name = w->pools[o];	/* replaced: a new mode */
			}
		}
		if (p) {
			reload_pool(w, p, pc);
		} else {
			p = pool_new(w, pc);
			if (!p) {
				gw_err("pool=%s msg=\"reload: cannot create pool\"", pc->log_name);
				continue;
			}
			if (same_name)
				carry_pool(p, same_name);
			gw_info("pool=%s msg=\"pool added by reload\"", pc->log_name);
			if (!pc->is_lazy)
				gw_pool_start(w, p);
		}
		pools[n++] = p;
	}
	for (size_t o = 0; o < w->n_pools; o++)
		if (!kept[o])
			retire_pool(w, w->pools[o]);
	free(kept);
	free(w->pools);
	w->pools = pools;
	w->n_pools = n;
}

static struct gw_pool_rt *pool_named(struct gw_worker *w, const char *name)
{
	for (size_t p = 0; p < w->n_pools; p++)
		if (strcmp(w->pools[p]->cfg->name, name) == 0)
			return w->pools[p];
	return NULL;
}

static void reload_listeners(struct gw_worker *w, const struct gw_config *cfg)
{
	struct gw_listener_rt **ls = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*ls));
	bool *kept = calloc(w->n_listeners ? w->n_listeners : 1, sizeof(*kept));
	size_t n = 0;

	if (!ls || !kept) {
		gw_err("msg=\"reload: out of memory, listeners left as they were\"");
		free(ls);
		free(kept);
		return;
	}
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct gw_listener_cfg *lc = &cfg->listeners[i];
		struct gw_listener_rt *l = NULL;
		for (size_t o = 0; o < w->n_listeners && !l; o++) {
			struct gw_listener_rt *ol = w->listeners[o];
			if (!kept[o] && strcmp(ol->cfg->name, lc->name) == 0 &&
			    same_str(ol->cfg->addr.text, lc->addr.text) && same_tls(ol->cfg->tls, lc->tls)) {
				kept[o] = true;
				l = ol;
				l->cfg = lc;
				l->pool = pool_named(w, lc->pool);
				if (lc->tls) {
					char path[64];
					listener_path(cfg, lc, path, sizeof(path));
					tls_ctx_reload(w, &l->ssl_ctx, lc->tls, true, "listener",
						       lc->log_name, path);
				}
			}
		}
		if (!l) {
			l = listener_new(w, lc);
			if (!l) {
				gw_err("listener=%s msg=\"reload: cannot create listener\"",
					lc->log_name);
				continue;
			}
			if (gw_listen_open(w, l) < 0) {
				listener_free(l);
				continue;
			}
		}
		ls[n++] = l;
	}
	for (size_t o = 0; o < w->n_listeners; o++) {
		struct gw_listener_rt *ol = w->listeners[o];
		if (kept[o])
			continue;
		/* its clients carry on (routed to the pool of that name, if any); it just stops
		 * accepting (a shared Unix socket closes, and its path goes, once the last worker
		 * has let go of it) */
		ol->is_retired = true;
		ol->pool = pool_named(w, ol->cfg->pool);
		if (ol->conn)
			gw_conn_close(w, ol->conn, "listener removed by reload");
		ol->conn = NULL;
		pool_list_add_tail(&w->retired_listeners, &ol->retired_link);
		gw_info("listener=%s msg=\"listener removed by reload\"", ol->cfg->log_name);
	}
	free(kept);
	free(w->listeners);
	w->listeners = ls;
	w->n_listeners = n;
}

/* Clients keep their sessions; their user entry is looked up again in the new file. */
static void reload_clients(struct gw_worker *w, const struct gw_config *old,
			   const struct gw_config *cfg)
{
	bool had_auth = old->has_auth;

	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind != GW_CONN_CLIENT || c->is_closing)
			continue;
		if (!c->cl.ucfg && cfg->has_auth && !had_auth && c->cl.state == GW_CL_READY) {
			/* auth turned on: nobody logged in before may stay without a password */
			gw_info("conn=%llu user=%s msg=\"authentication turned on by reload: closing "
				"client\"", (unsigned long long)c->id, c->cl.user_log);
			gw_conn_close(w, c, "auth turned on");
			continue;
		}
		if (!c->cl.ucfg)
			continue;
		c->cl.ucfg = cfg->has_auth ? gw_cfg_user(cfg, c->cl.user) : NULL;
		if (cfg->has_auth && !c->cl.ucfg) {
			gw_info("conn=%llu user=%s msg=\"user removed by reload: closing client\"",
				(unsigned long long)c->id, c->cl.user_log);
			gw_conn_close(w, c, "user removed");
		}
	}
}

void gw_runtime_reload(struct gw_worker *w, const struct gw_config *cfg)
{
	const struct gw_config *old = w->cfg;

	if (cfg->workers != old->workers)
		gw_warn("msg=\"reload: a new workers count takes effect at restart\"");
	if (!same_str(cfg->stats_listen ? cfg->stats_listen->text : NULL,
		      old->stats_listen ? old->stats_listen->text : NULL))
		gw_warn("msg=\"reload: a new stats address takes effect at restart\"");
	if (!same_str(cfg->audit_file, old->audit_file))
		gw_warn("msg=\"reload: a new audit_file takes effect at restart\"");
	w->cfg = cfg;
	gw_auth_reload(w);
	/* room for the connections the new file adds (the slab grows on demand) */
	uint32_t need = gw_worker_slots_needed(cfg);
	if (need > w->max_conns)
		w->max_conns = need;
	reload_pools(w, cfg);
	reload_listeners(w, cfg);
	reload_clients(w, old, cfg);
	gw_info("worker=%d msg=\"configuration reloaded\" pools=%zu listeners=%zu", w->id,
		w->n_pools, w->n_listeners);
}
