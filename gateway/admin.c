/*
 * admin.c — the gateway answering q itself, for admin users: `.qgate.stats[]`,
 * `.qgate.pools[]`, `.qgate.backends[]`, `.qgate.clients[]` (as a string query or as a
 * list headed by the name) come back as q tables built with the codec. Everything else
 * named `.qgate.*` gets `qgate: unknown admin function`; a non-admin user gets
 * `qgate: not allowed`. The gateway evaluates nothing else.
 */
#include "gateway/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/qipc.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/runtime.h"
#include "gateway/stats.h"
#include "gateway/worker.h"

#define MAX_COLS 16

struct table {
	size_t ncols, nrows;
	struct qipc_obj *names;
	struct qipc_obj *cols[MAX_COLS];
};

/* spec: "name:s name:j ..." — s symbol column, j long column */
static int table_init(struct table *t, size_t nrows, const char *spec)
{
	memset(t, 0, sizeof(*t));
	t->nrows = nrows;
	t->names = qipc_obj_vec(QT_SYMBOL, MAX_COLS);
	if (!t->names)
		return -1;
	for (const char *p = spec; *p && t->ncols < MAX_COLS;) {
		size_t len = strcspn(p, " ");
		const char *colon = memchr(p, ':', len);
		char name[32];
		if (!colon || (size_t)(colon - p) >= sizeof(name))
			return -1;
		memcpy(name, p, (size_t)(colon - p));
		name[colon - p] = '\0';
		qipc_obj_set_sym(t->names, t->ncols, name);
		t->cols[t->ncols] = qipc_obj_vec(colon[1] == 's' ? QT_SYMBOL : QT_LONG, nrows);
		if (!t->cols[t->ncols])
			return -1;
		t->ncols++;
		p += len;
		p += strspn(p, " ");
	}
	t->names->n = t->ncols;	/* the unused tail of the name vector is never encoded */
	return 0;
}

static void put_sym(struct table *t, size_t col, size_t row, const char *s)
{
	qipc_obj_set_sym(t->cols[col], row, s ? s : "");
}

static void put_long(struct table *t, size_t col, size_t row, uint64_t v)
{
	((int64_t *)t->cols[col]->data)[row] = (int64_t)v;
}

static struct qipc_obj *table_finish(struct table *t)
{
	struct qipc_obj *list = qipc_obj_list(t->ncols);

	if (!list)
		return NULL;
	for (size_t i = 0; i < t->ncols; i++)
		list->items[i] = t->cols[i];
	return qipc_obj_table(t->names, list);
}

static void table_drop(struct table *t)
{
	for (size_t i = 0; i < t->ncols; i++)
		qipc_obj_free(t->cols[i]);
	qipc_obj_free(t->names);
}

static struct qipc_obj *pools_table(struct gw_worker *w)
{
	struct table t;

	if (table_init(&t, w->n_pools, "pool:s mode:s up:j queued:j requests:j errors:j "
				       "queue_full:j queue_timeouts:j timeouts:j dedicated:j "
				       "sessions:j p50_us:j p99_us:j") < 0) {
		table_drop(&t);
		return NULL;
	}
	for (size_t i = 0; i < w->n_pools; i++) {
		const struct gw_pool_rt *p = w->pools[i];
		uint64_t up = 0;
		for (size_t b = 0; b < p->n_backends; b++)
			up += pool_be_up(&p->backends[b]->pb) > 0;
		put_sym(&t, 0, i, p->cfg->name);
		put_sym(&t, 1, i, p->cfg->mode == GW_MODE_SESSION ? "session" : "query");
		put_long(&t, 2, i, up);
		put_long(&t, 3, i, p->pl.queue_len);
		put_long(&t, 4, i, p->requests);
		put_long(&t, 5, i, p->errors);
		put_long(&t, 6, i, p->queue_full);
		put_long(&t, 7, i, p->queue_timeouts);
		put_long(&t, 8, i, p->timeouts);
		put_long(&t, 9, i, p->n_dedicated);
		put_long(&t, 10, i, p->n_sessions);
		put_long(&t, 11, i, gw_hist_quantile(&p->latency, 0.5));
		put_long(&t, 12, i, gw_hist_quantile(&p->latency, 0.99));
	}
	return table_finish(&t);
}

static struct qipc_obj *backends_table(struct gw_worker *w)
{
	struct table t;
	size_t n = 0, row = 0;

	for (size_t i = 0; i < w->n_pools; i++)
		n += w->pools[i]->n_backends;
	if (table_init(&t, n, "pool:s backend:s address:s state:s idle:j busy:j connecting:j "
			      "outstanding:j requests:j errors:j reconnects:j bytes_in:j "
			      "bytes_out:j") < 0) {
		table_drop(&t);
		return NULL;
	}
	for (size_t i = 0; i < w->n_pools; i++) {
		const struct gw_pool_rt *p = w->pools[i];
		for (size_t b = 0; b < p->n_backends; b++, row++) {
			const struct gw_backend_rt *be = p->backends[b];
			struct gw_conn_counts cc = gw_backend_counts(be);
			put_sym(&t, 0, row, p->cfg->name);
			put_sym(&t, 1, row, be->cfg->name);
			put_sym(&t, 2, row, be->cfg->addr.text);
			put_sym(&t, 3, row, gw_backend_state(be));
			put_long(&t, 4, row, cc.idle);
			put_long(&t, 5, row, cc.busy);
			put_long(&t, 6, row, cc.connecting);
			put_long(&t, 7, row, pool_be_outstanding(&be->pb));
			put_long(&t, 8, row, be->requests);
			put_long(&t, 9, row, be->errors);
			put_long(&t, 10, row, be->reconnects);
			put_long(&t, 11, row, be->bytes_in);
			put_long(&t, 12, row, be->bytes_out);
		}
	}
	return table_finish(&t);
}

static struct qipc_obj *clients_table(struct gw_worker *w)
{
	struct table t;
	size_t n = 0, row = 0;

	for (uint32_t i = 0; i < w->n_conns; i++)
		n += gw_conn_at(w, i)->kind == GW_CONN_CLIENT && !gw_conn_at(w, i)->is_closing;
	if (table_init(&t, n, "id:j user:s peer:s listener:s capability:j outstanding:j "
			      "requests:j session_pool:s") < 0) {
		table_drop(&t);
		return NULL;
	}
	for (uint32_t i = 0; i < w->n_conns && row < n; i++) {
		const struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind != GW_CONN_CLIENT || c->is_closing)
			continue;
		put_long(&t, 0, row, c->id);
		put_sym(&t, 1, row, c->cl.user);
		put_sym(&t, 2, row, c->peer);
		put_sym(&t, 3, row, c->cl.listener ? c->cl.listener->cfg->name : "");
		put_long(&t, 4, row, (uint64_t)c->cl.capability);
		put_long(&t, 5, row, c->cl.n_slots);
		put_long(&t, 6, row, c->cl.requests);
		put_sym(&t, 7, row, c->cl.session_pool ? c->cl.session_pool->cfg->name : "");
		row++;
	}
	return table_finish(&t);
}

static struct qipc_obj *stats_table(struct gw_worker *w)
{
	struct table t;
	uint64_t req = 0, err = 0, queued = 0;

	for (size_t i = 0; i < w->n_pools; i++) {
		req += w->pools[i]->requests;
		err += w->pools[i]->errors;
		queued += w->pools[i]->pl.queue_len;
	}
	if (table_init(&t, 1, "worker:j clients:j pools:j requests:j errors:j queued:j "
			      "protocol_errors:j rx_enobufs:j cq_overflows:j") < 0) {
		table_drop(&t);
		return NULL;
	}
	put_long(&t, 0, 0, (uint64_t)w->id);
	put_long(&t, 1, 0, w->n_clients);
	put_long(&t, 2, 0, w->n_pools);
	put_long(&t, 3, 0, req);
	put_long(&t, 4, 0, err);
	put_long(&t, 5, 0, queued);
	put_long(&t, 6, 0, w->protocol_errors);
	put_long(&t, 7, 0, w->enobufs);
	put_long(&t, 8, 0, w->cq_overflows);
	return table_finish(&t);
}

/*
 * If msg calls a .qgate.* function, answer it into *out (a whole response message,
 * malloc'd) or with an error text in *err, and return true. Otherwise return false.
 */
bool gw_admin_call(struct gw_worker *w, struct gw_conn *c, const uint8_t *msg, size_t len,
		   uint8_t **out, size_t *out_len, const char **err, char *what, size_t what_n)
{
	struct qipc_peek pk;
	char name[64];

	*out = NULL;
	*err = NULL;
	if (len <= QIPC_HDR_SIZE || msg[2] != 0)
		return false;
	if (qipc_peek(msg + QIPC_HDR_SIZE, len - QIPC_HDR_SIZE, msg[0] == 1, sizeof(name) - 1,
		      &pk) != 1)
		return false;
	if (pk.kind != QIPC_PEEK_QUERY && pk.kind != QIPC_PEEK_FUNC_SYM &&
	    pk.kind != QIPC_PEEK_FUNC_STR)
		return false;
	size_t n = pk.text_len;
	if (n < 7 || memcmp(pk.text, ".qgate.", 7) != 0)
		return false;
	memcpy(name, pk.text, n);
	name[n] = '\0';
	if (pk.kind == QIPC_PEEK_QUERY) {
		/* ".qgate.pools[]" or ".qgate.pools" with trailing blanks */
		char *e = name + strcspn(name, "[ \t\r\n");
		if (strcmp(e, "[]") && strspn(e, " \t\r\n") != strlen(e) &&
		    strncmp(e, "[]", 2) != 0)
			return false;
		*e = '\0';
	}
	snprintf(what, what_n, "%s", name);	/* for the audit line */
	if (!c->cl.ucfg || !c->cl.ucfg->is_admin) {
		*err = "qgate: not allowed";
		return true;
	}
	struct qipc_obj *o = NULL;
	if (strcmp(name, ".qgate.stats") == 0)
		o = stats_table(w);
	else if (strcmp(name, ".qgate.pools") == 0)
		o = pools_table(w);
	else if (strcmp(name, ".qgate.backends") == 0)
		o = backends_table(w);
	else if (strcmp(name, ".qgate.clients") == 0)
		o = clients_table(w);
	else {
		*err = "qgate: unknown admin function";
		return true;
	}
	if (!o || qipc_encode_msg(o, QIPC_RESPONSE, false, out, out_len) < 0)
		*err = "qgate: admin answer failed";
	qipc_obj_free(o);
	return true;
}
