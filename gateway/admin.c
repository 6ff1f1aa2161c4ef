/*
 * admin.c — the gateway answering q itself, for admin users: `.qgate.stats[]`,
 * `.qgate.pools[]`, `.qgate.backends[]`, `.qgate.clients[]` (as a string query or as a
 * list headed by the name) come back as q tables built with the codec. Everything else
 * named `.qgate.*` gets `qgate: unknown admin function`; a non-admin user gets
 * `qgate: not allowed`. The gateway evaluates nothing else.
 *
 * The tables show the whole gateway, whichever worker answers: pools, backends and stats
 * come from stats.c's merged view (the numbers /stats shows), clients from every worker's
 * client list; another worker's part is as of its last snapshot (at most 250 ms old).
 * Nothing here touches another worker's live structures.
 */
#include "gateway/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec/qipc.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/stats.h"

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

static long long jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static const char *jstr(json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "";
}

static bool is_up(json_t *o)
{
	return strcmp(jstr(o, "state"), "up") == 0;
}

/* The pools and their backends of the whole gateway: stats.c's merged view (as /stats). */
static struct qipc_obj *pools_table(struct gw_worker *w)
{
	json_t *tree = gw_stats_gathered(w), *ps = json_object_get(tree, "pools"), *p, *b;
	struct table t;
	size_t i, j;

	if (!tree || table_init(&t, json_array_size(ps),
				"pool:s mode:s up:j queued:j requests:j errors:j queue_full:j "
				"queue_timeouts:j timeouts:j dedicated:j sessions:j p50_us:j "
				"p99_us:j") < 0) {
		if (tree)
			table_drop(&t);
		json_decref(tree);
		return NULL;
	}
	json_array_foreach(ps, i, p) {
		uint64_t up = 0;
		json_t *lat = json_object_get(p, "latency");
		json_array_foreach(json_object_get(p, "backends"), j, b)
			up += is_up(b);
		put_sym(&t, 0, i, jstr(p, "name"));
		put_sym(&t, 1, i, jstr(p, "mode"));
		put_long(&t, 2, i, up);
		put_long(&t, 3, i, (uint64_t)jint(p, "queued"));
		put_long(&t, 4, i, (uint64_t)jint(p, "requests"));
		put_long(&t, 5, i, (uint64_t)jint(p, "errors"));
		put_long(&t, 6, i, (uint64_t)jint(p, "queue_full"));
		put_long(&t, 7, i, (uint64_t)jint(p, "queue_timeouts"));
		put_long(&t, 8, i, (uint64_t)jint(p, "timeouts"));
		put_long(&t, 9, i, (uint64_t)jint(p, "dedicated"));
		put_long(&t, 10, i, (uint64_t)jint(p, "sessions"));
		put_long(&t, 11, i, (uint64_t)jint(lat, "p50_us"));
		put_long(&t, 12, i, (uint64_t)jint(lat, "p99_us"));
	}
	json_decref(tree);
	return table_finish(&t);
}

static struct qipc_obj *backends_table(struct gw_worker *w)
{
	json_t *tree = gw_stats_gathered(w), *ps = json_object_get(tree, "pools"), *p, *b;
	struct table t;
	size_t n = 0, row = 0, i, j;

	json_array_foreach(ps, i, p)
		n += json_array_size(json_object_get(p, "backends"));
	if (!tree || table_init(&t, n, "pool:s backend:s address:s state:s idle:j busy:j "
				       "connecting:j outstanding:j requests:j errors:j reconnects:j "
				       "bytes_in:j bytes_out:j") < 0) {
		if (tree)
			table_drop(&t);
		json_decref(tree);
		return NULL;
	}
	json_array_foreach(ps, i, p) {
		json_array_foreach(json_object_get(p, "backends"), j, b) {
			json_t *cc = json_object_get(b, "connections");
			put_sym(&t, 0, row, jstr(p, "name"));
			put_sym(&t, 1, row, jstr(b, "name"));
			put_sym(&t, 2, row, jstr(b, "address"));
			put_sym(&t, 3, row, jstr(b, "state"));
			put_long(&t, 4, row, (uint64_t)jint(cc, "idle"));
			put_long(&t, 5, row, (uint64_t)jint(cc, "busy"));
			put_long(&t, 6, row, (uint64_t)jint(cc, "connecting"));
			put_long(&t, 7, row, (uint64_t)jint(b, "outstanding"));
			put_long(&t, 8, row, (uint64_t)jint(b, "requests"));
			put_long(&t, 9, row, (uint64_t)jint(b, "errors"));
			put_long(&t, 10, row, (uint64_t)jint(b, "reconnects"));
			put_long(&t, 11, row, (uint64_t)jint(b, "bytes_in"));
			put_long(&t, 12, row, (uint64_t)jint(b, "bytes_out"));
			row++;
		}
	}
	json_decref(tree);
	return table_finish(&t);
}

/* Every worker's clients (the others' as of their last snapshot). */
static struct qipc_obj *clients_table(struct gw_worker *w)
{
	struct gw_client_row *rows;
	struct table t;
	size_t n;

	if (gw_stats_clients(w, &rows, &n) < 0)
		return NULL;
	if (table_init(&t, n, "worker:j id:j user:s peer:s listener:s capability:j "
			      "outstanding:j requests:j session_pool:s") < 0) {
		table_drop(&t);
		free(rows);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const struct gw_client_row *r = &rows[i];
		put_long(&t, 0, i, (uint64_t)r->worker);
		put_long(&t, 1, i, r->id);
		put_sym(&t, 2, i, r->user);
		put_sym(&t, 3, i, r->peer);
		put_sym(&t, 4, i, r->listener);
		put_long(&t, 5, i, (uint64_t)r->capability);
		put_long(&t, 6, i, r->outstanding);
		put_long(&t, 7, i, r->requests);
		put_sym(&t, 8, i, r->session_pool);
	}
	free(rows);
	return table_finish(&t);
}

/* One row for the whole gateway: its workers, clients and the pools' counters, summed. */
static struct qipc_obj *stats_table(struct gw_worker *w)
{
	json_t *tree = gw_stats_gathered(w), *gw = json_object_get(tree, "gateway"), *p;
	json_t *ps = json_object_get(tree, "pools");
	struct table t;
	uint64_t req = 0, err = 0, queued = 0;
	size_t i;

	if (!tree || table_init(&t, 1, "workers:j clients:j pools:j requests:j errors:j "
				       "queued:j protocol_errors:j rx_enobufs:j "
				       "cq_overflows:j") < 0) {
		if (tree)
			table_drop(&t);
		json_decref(tree);
		return NULL;
	}
	json_array_foreach(ps, i, p) {
		req += (uint64_t)jint(p, "requests");
		err += (uint64_t)jint(p, "errors");
		queued += (uint64_t)jint(p, "queued");
	}
	put_long(&t, 0, 0, (uint64_t)jint(gw, "workers"));
	put_long(&t, 1, 0, (uint64_t)jint(gw, "clients"));
	put_long(&t, 2, 0, json_array_size(ps));
	put_long(&t, 3, 0, req);
	put_long(&t, 4, 0, err);
	put_long(&t, 5, 0, queued);
	put_long(&t, 6, 0, (uint64_t)jint(gw, "protocol_errors"));
	put_long(&t, 7, 0, (uint64_t)jint(gw, "rx_enobufs"));
	put_long(&t, 8, 0, (uint64_t)jint(gw, "cq_overflows"));
	json_decref(tree);
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
