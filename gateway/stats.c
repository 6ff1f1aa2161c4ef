/*
 * stats.c — what the gateway is doing, over HTTP on its own address (stats.listen):
 *   GET /stats    JSON: per listener, per pool, per backend
 *   GET /metrics  Prometheus text format, names qgate_* (metrics.c renders this tree)
 *   GET /health   200 when every pool has a reachable backend, 503 naming those without
 *                 (see tree_pool_healthy: session and lazy pools are judged without a probe)
 *   GET /         the status page (status.html, embedded at build time), which reads /stats;
 *                 static, so served without the token, under a CSP that lets it run only
 *                 its own script and fetch only from here
 * One request per connection (Connection: close), served from the loop of worker 0; the
 * figures are every worker's, summed (see docs/operations.md). The same merged view, and
 * every worker's client list, feed the admin tables (admin.c). Also the latency histogram
 * that session.c feeds for every answered request.
 */
#include "gateway/stats.h"

#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "gateway/actions.h"
#include "gateway/chunk.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/listen.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/runtime.h"
#include "gateway/status_page.h"
#include "gateway/worker.h"
#include "pool/pool.h"

/* ------------------------------------------------------------ histogram */

/* bucket = 8 sub-buckets per power of two of microseconds: about 12% resolution */
static unsigned hist_bucket(uint64_t us)
{
	if (us < 8)
		return (unsigned)us;
	unsigned msb = 63u - (unsigned)__builtin_clzll(us);
	unsigned sub = (unsigned)(us >> (msb - 3)) & 7u;
	unsigned b = (msb - 2) * 8 + sub;
	return b < GW_HIST_BUCKETS ? b : GW_HIST_BUCKETS - 1;
}

static uint64_t hist_upper_us(unsigned b)
{
	if (b < 8)
		return b;
	unsigned msb = b / 8 + 2;
	uint64_t sub = b % 8;
	return ((8 + sub + 1) << (msb - 3)) - 1;
}

void gw_hist_add(struct gw_hist *h, uint64_t us)
{
	h->counts[hist_bucket(us)]++;
	/* the exact `le` bucket: the first bound at or above us (none: only +Inf counts it) */
	for (size_t k = 0; k < GW_HIST_N_LE; k++)
		if (us <= gw_metrics_le_us[k]) {
			h->le[k]++;
			break;
		}
	h->total++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}

uint64_t gw_hist_quantile(const struct gw_hist *h, double q)
{
	if (h->total == 0)
		return 0;
	uint64_t want = (uint64_t)ceil(q * (double)h->total), seen = 0;
	if (want == 0)
		want = 1;
	for (unsigned b = 0; b < GW_HIST_BUCKETS; b++) {
		seen += h->counts[b];
		if (seen >= want) {
			uint64_t up = hist_upper_us(b);
			return up < h->max_us ? up : h->max_us;
		}
	}
	return h->max_us;
}

void gw_hist_le_counts(const struct gw_hist *h, uint64_t *cum)
{
	uint64_t seen = 0;

	for (size_t k = 0; k < GW_HIST_N_LE; k++) {
		seen += h->le[k];
		cum[k] = seen;
	}
}

/* ---------------------------------------------------------------- figures */

struct gw_conn_counts gw_backend_counts(const struct gw_backend_rt *be)
{
	const uint32_t *n = be->pb.n;

	return (struct gw_conn_counts){
		.idle = n[POOL_IDLE],
		.busy = n[POOL_BUSY] + n[POOL_DRAINING],
		.connecting = n[POOL_CONNECTING] + n[POOL_HANDSHAKE],
	};
}

const char *gw_backend_state(const struct gw_backend_rt *be)
{
	struct gw_conn_counts n = gw_backend_counts(be);

	/* disabled by an admin: draining while it still runs something of this worker's */
	if (be->pb.is_disabled)
		return pool_be_outstanding(&be->pb) ? "draining" : "disabled";
	if (n.idle + n.busy > 0)
		return "up";
	return n.connecting ? "connecting" : "down";
}

static bool pool_is_up(const struct gw_pool_rt *p)
{
	for (size_t b = 0; b < p->n_backends; b++)
		if (pool_be_up(&p->backends[b]->pb) > 0)
			return true;
	return false;
}

static json_t *latency_json(const struct gw_hist *h)
{
	json_t *o = json_pack("{s:I,s:I,s:I}", "count", (json_int_t)h->total, "max_us",
			      (json_int_t)h->max_us, "sum_us", (json_int_t)h->sum_us);

	/* nothing answered: no buckets to scan or ship (most pools of a big config, every
	 * snapshot) */
	if (h->total == 0)
		return o;
	/* the raw buckets travel with the snapshot so workers' figures merge exactly:
	 * hist as [bucket, count] pairs in ascending bucket order (merge_hist relies on it),
	 * le as the per-bound counters */
	json_t *hist = json_array(), *le = json_array();
	for (unsigned i = 0; i < GW_HIST_BUCKETS; i++)
		if (h->counts[i])
			json_array_append_new(hist, json_pack("[i,I]", (int)i,
							      (json_int_t)h->counts[i]));
	for (size_t k = 0; k < GW_HIST_N_LE; k++)
		json_array_append_new(le, json_integer((json_int_t)h->le[k]));
	json_object_set_new(o, "hist", hist);
	json_object_set_new(o, "le", le);
	return o;
}

/* This worker's figures as a JSON tree (latency still as raw buckets). */
static json_t *stats_tree(struct gw_worker *w)
{
	json_t *root = json_object(), *ls = json_array(), *ps = json_array();

	for (size_t i = 0; i < w->n_listeners; i++) {
		const struct gw_listener_rt *l = w->listeners[i];
		json_array_append_new(ls, json_pack("{s:s,s:s,s:s,s:I,s:I}", "name", l->cfg->name,
						    "listen", l->cfg->addr.text, "pool", l->cfg->pool,
						    "clients", (json_int_t)l->clients,
						    "accepted", (json_int_t)l->accepted));
	}
	for (size_t i = 0; i < w->n_pools; i++) {
		const struct gw_pool_rt *p = w->pools[i];
		json_t *bs = json_array();
		for (size_t b = 0; b < p->n_backends; b++) {
			const struct gw_backend_rt *be = p->backends[b];
			struct gw_conn_counts n = gw_backend_counts(be);
			json_array_append_new(bs, json_pack(
				"{s:s,s:s,s:s,s:{s:i,s:i,s:i},s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:I,s:I}",
				"name", be->cfg->name, "address", be->cfg->addr.text,
				"state", gw_backend_state(be),
				"connections", "idle", n.idle, "busy", n.busy, "connecting",
				n.connecting,
				"requests", (json_int_t)be->stat.requests, "errors", (json_int_t)be->stat.errors,
				"reconnects", (json_int_t)be->stat.reconnects,
				"spare_opens", (json_int_t)be->stat.spare_opens,
				/* its name's lookups (resolve.h): 0 for a numeric address */
				"lookups", (json_int_t)be->stat.lookups,
				"lookup_failures", (json_int_t)be->stat.lookup_failures,
				"outstanding", (json_int_t)pool_be_outstanding(&be->pb),
				"bytes_in", (json_int_t)be->stat.bytes_in,
				"bytes_out", (json_int_t)be->stat.bytes_out, "weight", be->pb.weight,
				/* across all workers: the backend's own view */
				"inflight", (json_int_t)pool_shared_inflight(be->pb.shared),
				"max_inflight", (json_int_t)__atomic_load_n(&be->pb.shared->max_inflight,
									    __ATOMIC_RELAXED)));
			/* session pools keep no connections open: /health reads these instead */
			json_t *bj = json_array_get(bs, json_array_size(bs) - 1);
			json_object_set_new(bj, "connect_ok_ms", json_integer((json_int_t)
									       be->stat.connect_ok_ms));
			json_object_set_new(bj, "connect_failed_ms", json_integer((json_int_t)
						be->stat.connect_failed_ms));
			json_object_set_new(bj, "disabled", json_boolean(be->pb.is_disabled));
			/* max_inflight "auto": the limit above is the limiter's, learned from
			 * these (pool/limit.h; all workers: the backend's own view) */
			const struct pool_shared *sh = be->pb.shared;
			json_object_set_new(bj, "max_inflight_mode", json_string(
				pool_shared_is_auto(sh) ? "auto" : "fixed"));
			json_object_set_new(bj, "min_rtt_us", json_integer((json_int_t)
				__atomic_load_n(&sh->min_rtt_us, __ATOMIC_RELAXED)));
			json_object_set_new(bj, "short_rtt_us", json_integer((json_int_t)
				__atomic_load_n(&sh->short_rtt_us, __ATOMIC_RELAXED)));
			json_object_set_new(bj, "latency", latency_json(&be->stat.latency));
		}
		json_array_append_new(ps, json_pack(
			"{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:o,s:o}",
			"name", p->cfg->name, "mode", p->cfg->mode == GW_MODE_SESSION ? "session" : "query",
			"state", pool_is_up(p) ? "up" : "down",
			"queued", (json_int_t)p->pl.queue_len, "requests", (json_int_t)p->stat.requests,
			"errors", (json_int_t)p->stat.errors, "queue_full", (json_int_t)p->stat.queue_full,
			"queue_timeouts", (json_int_t)p->stat.queue_timeouts,
			"timeouts", (json_int_t)p->stat.timeouts,
			"dropped_unsolicited", (json_int_t)p->stat.dropped_unsolicited,
			"unsolicited_closes", (json_int_t)p->stat.unsolicited_closes,
			"health_failures", (json_int_t)p->stat.health_failures,
			"affinity_moves", (json_int_t)p->pl.affinity_moves,
			"dedicated", (int)p->n_dedicated, "sessions", (int)p->n_sessions,
			"latency", latency_json(&p->stat.latency), "backends", bs));
		/* summed over the workers: how many opened its connections (lazy: on first use) */
		json_object_set_new(json_array_get(ps, i), "started",
				    json_integer(p->pl.is_started ? 1 : 0));
		json_object_set_new(json_array_get(ps, i), "paused", json_boolean(p->pl.is_paused));
		/* call costs learned (entries in use, summed over the workers' own tables) */
		json_object_set_new(json_array_get(ps, i), "cost_entries",
				    json_integer((json_int_t)p->costs.n_used));
	}
	json_object_set_new(root, "listeners", ls);
	json_object_set_new(root, "pools", ps);
	json_object_set_new(root, "gateway", json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
		"workers", 1, "clients", (json_int_t)w->n_clients,
		"login_throttled", (json_int_t)w->login_throttled,
		"held_bytes", (json_int_t)(w->id == 0 ? gw_held_bytes() : 0),
		"budget_pauses", (json_int_t)w->budget_pauses,
		"protocol_errors", (json_int_t)w->protocol_errors,
		"slow_clients_closed", (json_int_t)w->slow_clients,
		"sq_full", (json_int_t)w->sq_full,
		"rx_enobufs", (json_int_t)w->enobufs, "cq_overflows", (json_int_t)w->cq_overflows,
		"bytes_zero_copy", (json_int_t)w->bytes_lent,
		"rx_buffers_lent", (json_int_t)w->n_bufs_lent,
		"inflight_wakeups", (json_int_t)w->wakes_received,
		"ring_enters", (json_int_t)w->ring_enters, "loop_turns", (json_int_t)w->loop_turns));
	return root;
}

/* ----------------------------------------------------- workers' figures, merged */

/* This worker's live clients into rows (NULL: only count them). */
static size_t client_rows(const struct gw_worker *w, struct gw_client_row *rows)
{
	size_t n = 0;

	for (uint32_t i = 0; i < w->n_conns; i++) {
		const struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind != GW_CONN_CLIENT || c->is_closing)
			continue;
		if (rows) {
			struct gw_client_row *r = &rows[n];
			memset(r, 0, sizeof(*r));
			r->worker = w->id;
			r->capability = c->cl.capability;
			r->id = c->id;
			r->requests = c->cl.requests;
			r->outstanding = c->cl.n_slots;
			r->listener = c->cl.listener ? c->cl.listener->cfg->name : "";
			r->session_pool = c->cl.session_pool ? c->cl.session_pool->cfg->name : "";
			snprintf(r->user, sizeof(r->user), "%s", c->cl.user);
			snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
		}
		n++;
	}
	return n;
}

/* The client list for other workers' admin tables: filled into the spare rows (this
 * worker's alone), then swapped with the published ones under snap_mu. */
static void publish_clients(struct gw_worker *w)
{
	size_t n = client_rows(w, NULL);

	if (n > w->cap_spare_clients) {
		size_t cap = n + n / 2 + 16;
		struct gw_client_row *r = realloc(w->spare_clients, cap * sizeof(*r));
		if (!r)
			return;	/* the last snapshot stays: staler, still consistent */
		w->spare_clients = r;
		w->cap_spare_clients = cap;
	}
	n = client_rows(w, w->spare_clients);
	pthread_mutex_lock(&w->snap_mu);
	struct gw_client_row *old = w->snap_clients;
	size_t old_cap = w->cap_snap_clients;
	w->snap_clients = w->spare_clients;
	w->cap_snap_clients = w->cap_spare_clients;
	w->n_snap_clients = n;
	pthread_mutex_unlock(&w->snap_mu);
	w->spare_clients = old;
	w->cap_spare_clients = old_cap;
}

/* a snapshot may take this share of a worker's time at most (1/N): a config of thousands
 * of pools is published less often than every 250 ms rather than eat a core */
#define SNAP_COST_SHARE 20

static uint64_t thread_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void gw_stats_publish(struct gw_worker *w)
{
	uint64_t t0 = thread_cpu_us();
	json_t *t = stats_tree(w);
	char *s = json_dumps(t, JSON_COMPACT);
	uint64_t spent_ms = (thread_cpu_us() - t0) / 1000;

	/* the loop scheduled the next one 250 ms on; a costly snapshot pushes it further */
	if (w->next_snap_ms < w->now_ms + spent_ms * SNAP_COST_SHARE)
		w->next_snap_ms = w->now_ms + spent_ms * SNAP_COST_SHARE;
	json_decref(t);
	pthread_mutex_lock(&w->snap_mu);
	char *old = w->snap_json;
	w->snap_json = s;
	pthread_mutex_unlock(&w->snap_mu);
	free(old);
	publish_clients(w);
}

int gw_stats_clients(struct gw_worker *w, struct gw_client_row **out, size_t *n_out)
{
	size_t n = client_rows(w, NULL);
	struct gw_client_row *rows = malloc((n ? n : 1) * sizeof(*rows));

	*out = NULL;
	*n_out = 0;
	if (!rows)
		return -ENOMEM;
	n = client_rows(w, rows);
	for (int i = 0; i < w->n_peers; i++) {
		struct gw_worker *o = w->peers[i];
		if (o == w)
			continue;
		/* a rare admin call: copying under the peer's lock is fine here */
		pthread_mutex_lock(&o->snap_mu);
		size_t k = o->n_snap_clients;
		struct gw_client_row *grown = k ? realloc(rows, (n + k) * sizeof(*rows)) : rows;
		if (grown && k) {	/* a peer with no clients may have published no rows at all */
			rows = grown;
			memcpy(rows + n, o->snap_clients, k * sizeof(*rows));
			n += k;
		}
		pthread_mutex_unlock(&o->snap_mu);
		if (!grown) {
			free(rows);
			return -ENOMEM;
		}
	}
	*out = rows;
	*n_out = n;
	return 0;
}

/* merged over workers, the highest wins: an admin's disable over any connection state, and
 * draining (some worker still runs something there) over disabled */
static const char *state_rank[] = { "down", "connecting", "up", "disabled", "draining" };
#define N_RANKS (sizeof(state_rank) / sizeof(state_rank[0]))

static bool same_name(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static int rank_of(const char *s)
{
	for (int i = (int)N_RANKS - 1; i >= 0; i--)
		if (s && strcmp(s, state_rank[i]) == 0)
			return i;
	return 0;
}

static void merge_into(json_t *dst, json_t *src);

/* short arrays (a pool's backends) are scanned; longer ones (pools) get a name index */
#define MERGE_SCAN_MAX 8

/*
 * Arrays of named objects merge by name (the first of a name wins, as configs have unique
 * names); an unknown name is appended. Linear in the two arrays: a config of thousands of
 * pools merges in one pass, not one scan per pool.
 */
static void merge_named(json_t *dst, json_t *src)
{
	json_t *index = NULL, *sv, *dv;
	size_t i, j;

	if (json_array_size(dst) > MERGE_SCAN_MAX && (index = json_object())) {
		json_array_foreach(dst, j, dv) {
			const char *name = json_string_value(json_object_get(dv, "name"));
			if (name && !json_object_get(index, name))
				json_object_set_nocheck(index, name, dv);
		}
	}
	json_array_foreach(src, i, sv) {
		const char *name = json_string_value(json_object_get(sv, "name"));
		json_t *match = NULL;
		if (name && index) {
			match = json_object_get(index, name);
		} else if (name) {
			json_array_foreach(dst, j, dv) {
				if (same_name(json_string_value(json_object_get(dv, "name")), name)) {
					match = dv;
					break;
				}
			}
		}
		if (match) {
			merge_into(match, sv);
		} else {
			json_array_append(dst, sv);
			if (name && index)
				json_object_set_nocheck(index, name, sv);
		}
	}
	json_decref(index);
}

/* [bucket, count] pairs, both ascending by bucket (latency_json): a new array, their sum */
static json_t *merge_hist(json_t *dst, json_t *src)
{
	json_t *out = json_array();
	size_t i = 0, j = 0, nd = json_array_size(dst), ns = json_array_size(src);

	while (i < nd || j < ns) {
		json_t *d = json_array_get(dst, i), *s = json_array_get(src, j);
		json_int_t bd = i < nd ? json_integer_value(json_array_get(d, 0)) : INT64_MAX;
		json_int_t bs = j < ns ? json_integer_value(json_array_get(s, 0)) : INT64_MAX;
		if (bd == bs) {
			json_array_append_new(out, json_pack("[I,I]", bd,
				json_integer_value(json_array_get(d, 1)) +
				json_integer_value(json_array_get(s, 1))));
			i++;
			j++;
		} else if (bd < bs) {
			json_array_append(out, d);
			i++;
		} else {
			json_array_append(out, s);
			j++;
		}
	}
	return out;
}

/* per-bound counters (latency_json's le): summed element by element, into dst */
static void merge_le(json_t *dst, json_t *src)
{
	size_t k;
	json_t *v;

	json_array_foreach(src, k, v) {
		json_t *d = json_array_get(dst, k);
		if (d)
			json_array_set_new(dst, k, json_integer(json_integer_value(d) +
								 json_integer_value(v)));
		else
			json_array_append(dst, v);
	}
}

static void merge_into(json_t *dst, json_t *src)
{
	const char *key;
	json_t *sv;

	json_object_foreach(src, key, sv) {
		json_t *dv = json_object_get(dst, key);
		if (!dv) {
			json_object_set(dst, key, sv);
		} else if (json_is_integer(sv) && json_is_integer(dv)) {
			/* the same figure in every worker, not a share of it */
			if (strcmp(key, "weight") == 0 || strcmp(key, "max_inflight") == 0 ||
			    strcmp(key, "inflight") == 0 || strcmp(key, "min_rtt_us") == 0 ||
			    strcmp(key, "short_rtt_us") == 0)
				continue;
			/* instants (the monotonic clock is the same in every worker): the latest */
			if (strcmp(key, "max_us") == 0 || strcmp(key, "connect_ok_ms") == 0 ||
			    strcmp(key, "connect_failed_ms") == 0)
				json_object_set_new(dst, key, json_integer(
					json_integer_value(sv) > json_integer_value(dv) ?
					json_integer_value(sv) : json_integer_value(dv)));
			else
				json_object_set_new(dst, key, json_integer(json_integer_value(dv) +
									  json_integer_value(sv)));
		} else if (strcmp(key, "state") == 0) {
			if (rank_of(json_string_value(sv)) > rank_of(json_string_value(dv)))
				json_object_set(dst, key, sv);
		} else if (strcmp(key, "hist") == 0) {
			json_object_set_new(dst, key, merge_hist(dv, sv));
		} else if (strcmp(key, "le") == 0 && json_is_array(sv) && json_is_array(dv)) {
			merge_le(dv, sv);
		} else if (json_is_object(sv) && json_is_object(dv)) {
			merge_into(dv, sv);
		} else if (json_is_array(sv) && json_is_array(dv)) {
			merge_named(dv, sv);
		}
	}
}

/* o's raw latency buckets into percentiles, and cumulative counts at the metrics' bounds
 * (le_us: {"100": answers in 100 us or less, ...}; count is +Inf's). */
static void finish_one_latency(json_t *o)
{
	json_t *lat = json_object_get(o, "latency"), *pair, *le = json_object();
	struct gw_hist h;
	uint64_t cum[GW_HIST_N_LE];
	size_t j;

	memset(&h, 0, sizeof(h));
	json_array_foreach(json_object_get(lat, "hist"), j, pair) {
		json_int_t b = json_integer_value(json_array_get(pair, 0));
		if (b >= 0 && b < GW_HIST_BUCKETS)
			h.counts[b] += (uint64_t)json_integer_value(json_array_get(pair, 1));
	}
	json_array_foreach(json_object_get(lat, "le"), j, pair)
		if (j < GW_HIST_N_LE)
			h.le[j] = (uint64_t)json_integer_value(pair);
	h.total = (uint64_t)json_integer_value(json_object_get(lat, "count"));
	h.max_us = (uint64_t)json_integer_value(json_object_get(lat, "max_us"));
	h.sum_us = (uint64_t)json_integer_value(json_object_get(lat, "sum_us"));
	gw_hist_le_counts(&h, cum);
	for (j = 0; j < GW_HIST_N_LE; j++) {
		char key[24];
		snprintf(key, sizeof(key), "%llu", (unsigned long long)gw_metrics_le_us[j]);
		json_object_set_new(le, key, json_integer((json_int_t)cum[j]));
	}
	json_object_set_new(o, "latency", json_pack(
		"{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "count", (json_int_t)h.total,
		"sum_us", (json_int_t)h.sum_us,
		"p50_us", (json_int_t)gw_hist_quantile(&h, 0.50),
		"p90_us", (json_int_t)gw_hist_quantile(&h, 0.90),
		"p99_us", (json_int_t)gw_hist_quantile(&h, 0.99),
		"p999_us", (json_int_t)gw_hist_quantile(&h, 0.999),
		"max_us", (json_int_t)h.max_us, "le_us", le));
}

/* Every pool's and backend's latency into its finished form. */
static void finish_latency(json_t *root)
{
	size_t i, j;
	json_t *p, *b;

	json_array_foreach(json_object_get(root, "pools"), i, p) {
		finish_one_latency(p);
		json_array_foreach(json_object_get(p, "backends"), j, b)
			finish_one_latency(b);
	}
}

/* The whole gateway's figures: this worker's now, the others' latest snapshots. */
json_t *gw_stats_gathered(struct gw_worker *w)
{
	json_t *root = stats_tree(w);

	for (int i = 0; i < w->n_peers; i++) {
		struct gw_worker *o = w->peers[i];
		if (o == w)
			continue;
		pthread_mutex_lock(&o->snap_mu);
		char *s = o->snap_json ? strdup(o->snap_json) : NULL;
		pthread_mutex_unlock(&o->snap_mu);
		json_t *t = s ? json_loads(s, 0, NULL) : NULL;
		free(s);
		if (t)
			merge_into(root, t);
		json_decref(t);
	}
	finish_latency(root);
	return root;
}

static bool tree_pool_up(json_t *p)
{
	return rank_of(json_string_value(json_object_get(p, "state"))) == 2;
}

/*
 * A pool is healthy when a backend is reachable, as far as the gateway knows without
 * connecting anywhere for /health (it never blocks or probes):
 *   session pool: some backend whose last session connection (any worker's latest) came
 *     up, or that was never tried;
 *   lazy pool no worker has started: healthy, nothing was tried yet;
 *   otherwise: some backend has a connection up (today's rule for query pools).
 */
static bool tree_pool_healthy(json_t *p)
{
	size_t i;
	json_t *b;

	const char *mode = json_string_value(json_object_get(p, "mode"));

	if (mode && strcmp(mode, "session") == 0) {
		json_array_foreach(json_object_get(p, "backends"), i, b) {
			json_int_t ok = json_integer_value(json_object_get(b, "connect_ok_ms"));
			json_int_t bad = json_integer_value(json_object_get(b, "connect_failed_ms"));
			if (ok >= bad)
				return true;
		}
		return false;
	}
	if (json_integer_value(json_object_get(p, "started")) == 0)
		return true;
	return tree_pool_up(p);
}

struct textbuf {
	char *p;
	size_t len, cap;
};

static void tb_printf(struct textbuf *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void tb_printf(struct textbuf *t, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		t->cap = (t->cap + (size_t)n + 1) * 2;
		t->p = realloc(t->p, t->cap);
		if (!t->p)
			abort();
	}
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* ------------------------------------------------------------------ HTTP */

void gw_stats_accept(struct gw_worker *w, int fd)
{
	if (w->n_http >= w->cfg->stats_max_connections && !pool_list_empty(&w->http_conns)) {
		/* full: the oldest gives way, so idle connections cannot lock /health out */
		struct gw_conn *old = pool_container_of(w->http_conns.next, struct gw_conn,
							http.link);
		pool_list_del(&old->http.link);
		w->n_http--;
		gw_conn_close(w, old, "stats connections full: oldest closed");
	}
	struct gw_conn *hc = gw_conn_alloc(w, GW_CONN_HTTP, fd);
	if (!hc) {
		close(fd);
		return;
	}
	snprintf(hc->peer, sizeof(hc->peer), "stats");
	hc->http.req = malloc(GW_HTTP_REQ_BYTES);
	if (!hc->http.req) {
		pool_list_init(&hc->http.link);
		gw_conn_close(w, hc, "out of memory");
		return;
	}
	hc->http.req[0] = '\0';
	hc->http.deadline_ms = w->now_ms + w->cfg->stats_timeout_ms;
	pool_list_add_tail(&w->http_conns, &hc->http.link);
	w->n_http++;
	gw_conn_update_recv(w, hc);
}

void gw_stats_on_close(struct gw_worker *w, struct gw_conn *c)
{
	if (!pool_list_empty(&c->http.link)) {
		pool_list_del(&c->http.link);
		w->n_http--;
	}
}

static void http_on_free(struct gw_worker *w, struct gw_conn *c)
{
	(void)w;
	free(c->http.req);
	c->http.req = NULL;
}

/* c's answer moved (queued, or part of it sent): another stats.timeout_ms from now, so
 * an answer of megabytes reaches a slow reader whole as long as it keeps reading, while a
 * reader that stops is still closed at its deadline. The list stays oldest first. */
static void http_progress(struct gw_worker *w, struct gw_conn *c)
{
	if (c->is_closing || pool_list_empty(&c->http.link))
		return;
	/* the clock now, not the loop's: building a big answer may itself have taken a while */
	c->http.deadline_ms = gw_now_ms() + w->cfg->stats_timeout_ms;
	pool_list_del(&c->http.link);
	pool_list_add_tail(&w->http_conns, &c->http.link);
}

void gw_stats_tick(struct gw_worker *w)
{
	/* oldest first: the first one not yet due ends the scan */
	while (!pool_list_empty(&w->http_conns)) {
		struct gw_conn *c = pool_container_of(w->http_conns.next, struct gw_conn, http.link);
		if (c->http.deadline_ms > w->now_ms) {
			gw_worker_due(w, c->http.deadline_ms);
			break;
		}
		pool_list_del(&c->http.link);
		w->n_http--;
		gw_conn_close(w, c, "stats request timeout");
	}
}

/*
 * The request's Authorization header carries the configured bearer token. Only the header
 * section counts (up to the blank line that ends it): a body is never read as headers.
 */
static bool is_authorized(const struct gw_worker *w, const char *req)
{
	const char *tok = w->cfg->stats_token;

	if (!tok)
		return true;
	for (const char *l = strchr(req, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
		const char *h = l + 1;
		if (h[0] == '\n' || (h[0] == '\r' && h[1] == '\n'))
			break;	/* the blank line: the header section is over */
		if (strncasecmp(h, "Authorization:", 14) != 0)
			continue;
		h += 14;
		h += strspn(h, " \t");
		if (strncasecmp(h, "Bearer ", 7) != 0)
			return false;
		h += 7;
		size_t n = strcspn(h, "\r\n"), tn = strlen(tok);
		/* constant time in the token's content */
		return n == tn && CRYPTO_memcmp(h, tok, tn) == 0;
	}
	return false;
}

static void respond(struct gw_worker *w, struct gw_conn *c, int status, const char *ctype,
		    const char *body)
{
	char head[320];
	const char *reason = status == 200 ? "OK" : status == 202 ? "Accepted" :
			     status == 404 ? "Not Found" :
			     status == 401 ? "Unauthorized" : status == 403 ? "Forbidden" :
			     status == 409 ? "Conflict" : status == 500 ? "Internal Server Error" :
			     status == 405 ? "Method Not Allowed" :
			     status == 431 ? "Request Header Fields Too Large" :
			     status == 503 ? "Service Unavailable" : "Bad Request";
	size_t blen = strlen(body);
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%sConnection: close\r\nCache-Control: no-store\r\n\r\n",
			 status, reason, ctype, blen,
			 status == 401 ? "WWW-Authenticate: Bearer realm=\"qgate\"\r\n" :
			 status == 405 ? "Allow: POST\r\n" : "");
	gw_chunkq_append(&c->txq, head, (size_t)n);
	gw_chunkq_append(&c->txq, body, blen);
	c->http.is_done = true;
	http_progress(w, c);
	gw_tx_kick(w, c);
}

/* The status page: static, so it reveals nothing and needs no token; its headers keep the
 * browser from running anything but the page's own script, or sniffing, framing, caching it. */
static void respond_status_page(struct gw_worker *w, struct gw_conn *c)
{
	char head[640];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\nCache-Control: no-store\r\n"
			 "Content-Security-Policy: %s\r\nX-Content-Type-Options: nosniff\r\n"
			 "Referrer-Policy: no-referrer\r\n\r\n",
			 gw_status_page_len, gw_status_page_csp);
	GW_ASSERT(n > 0 && (size_t)n < sizeof(head));
	gw_chunkq_append(&c->txq, head, (size_t)n);
	gw_chunkq_append(&c->txq, gw_status_page, gw_status_page_len);
	c->http.is_done = true;
	http_progress(w, c);
	gw_tx_kick(w, c);
}

/* req (a head, whole or not) asks for an admin action, whichever way it is spelt: a POST
 * in any case, or any method on /admin/... Each of these is audited, done or refused. */
static bool is_admin_request(const char *req)
{
	const char *target = req + strcspn(req, " \r\n");

	return strncasecmp(req, "POST ", 5) == 0 ||
	       (target[0] == ' ' && strncmp(target + 1, "/admin/", 7) == 0);
}

void gw_stats_on_data(struct gw_worker *w, struct gw_conn *c, const uint8_t *p, size_t n)
{
	if (c->http.is_done)
		return;
	size_t room = GW_HTTP_REQ_BYTES - 1 - c->http.len;
	if (n > room)
		n = room;
	memcpy(c->http.req + c->http.len, p, n);
	c->http.len += n;
	c->http.req[c->http.len] = '\0';
	if (!strstr(c->http.req, "\r\n\r\n") && !strstr(c->http.req, "\n\n")) {
		if (c->http.len >= GW_HTTP_REQ_BYTES - 1) {
			char msg[96];
			snprintf(msg, sizeof(msg), "request header section over %d bytes\n",
				 GW_HTTP_REQ_BYTES - 1);
			/* an admin action cut short here is still audited as refused */
			if (is_admin_request(c->http.req))
				gw_actions_http_refused(w, c->http.req, c->fd, 431,
							"request header section too large");
			respond(w, c, 431, "text/plain", msg);
		}
		return;
	}
	char method[8] = "", path[128] = "";
	if (strncmp(c->http.req, "POST ", 5) == 0) {
		/* admin actions (actions.h): arguments in the query string, a body is ignored */
		int status = 500;
		char *body = gw_actions_http(w, c->http.req, is_authorized(w, c->http.req), c->fd,
					     &status);
		respond(w, c, status, "application/json", body ? body : "{\"ok\":false}\n");
		free(body);
		return;
	}
	if (is_admin_request(c->http.req)) {
		/* an admin action asked another way (`post`, GET /admin/...): refused, audited */
		const char *e = "qgate: admin actions take POST (in capitals): POST /admin/ACTION";
		gw_actions_http_refused(w, c->http.req, c->fd, 405, e);
		respond(w, c, 405, "text/plain", "admin actions take POST: POST /admin/ACTION\n");
		return;
	}
	if (sscanf(c->http.req, "%7s %127s", method, path) != 2 || strcmp(method, "GET") != 0) {
		respond(w, c, 400, "text/plain", "only GET /stats, /metrics, /health\n");
		return;
	}
	char *q = strchr(path, '?');
	if (q)
		*q = '\0';
	if (strcmp(path, "/") == 0) {
		respond_status_page(w, c);
		return;
	}
	if ((strcmp(path, "/stats") == 0 || strcmp(path, "/metrics") == 0) &&
	    !is_authorized(w, c->http.req)) {
		respond(w, c, 401, "text/plain", "a bearer token is needed: Authorization: Bearer "
			"<stats.token>\n");
		return;
	}
	json_t *tree = gw_stats_gathered(w);
	if (strcmp(path, "/stats") == 0) {
		char *js = json_dumps(tree, JSON_INDENT(2));
		respond(w, c, 200, "application/json", js ? js : "{}");
		free(js);
	} else if (strcmp(path, "/metrics") == 0) {
		char *m = gw_metrics_text(tree);
		if (m)
			respond(w, c, 200, "text/plain; version=0.0.4; charset=utf-8", m);
		else
			respond(w, c, 503, "text/plain", "out of memory\n");
		free(m);
	} else if (strcmp(path, "/health") == 0) {
		struct textbuf tb = { 0 };
		size_t i;
		json_t *pool;
		json_array_foreach(json_object_get(tree, "pools"), i, pool)
			if (!tree_pool_healthy(pool))
				tb_printf(&tb, "pool %s has no reachable backend\n",
					  jstr(pool, "name"));
		respond(w, c, tb.len ? 503 : 200, "text/plain", tb.len ? tb.p : "ok\n");
		free(tb.p);
	} else {
		respond(w, c, 404, "text/plain", "not found: try /stats, /metrics, /health\n");
	}
	json_decref(tree);
}

int gw_stats_open(struct gw_worker *w)
{
	const struct gw_addr *a = w->cfg->stats_listen;

	if (!a || w->id != 0)
		return 0;
	int ret = gw_listen_bind(w, a, 128, &w->stats_conn);
	if (ret < 0)
		return ret;
	gw_info("stats=http://%s msg=\"stats endpoint listening\" "
		"paths=\"/ /stats /metrics /health\"", a->text);
	return 0;
}

/* answered and every byte out: done; part of it out: progress */
static void http_on_sent_kicked(struct gw_worker *w, struct gw_conn *c)
{
	if (c->http.is_done && gw_tx_pending(c) == 0)
		gw_conn_close(w, c, "answered");
	else
		http_progress(w, c);
}

const struct gw_conn_ops gw_stats_conn_ops = {
	.on_data = gw_stats_on_data,
	.on_sent_kicked = http_on_sent_kicked,
	.on_close = gw_stats_on_close,
	.on_free = http_on_free,
};
