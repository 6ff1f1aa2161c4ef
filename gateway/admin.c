/*
 * admin.c — the gateway answering q itself, for admin users: `.qgate.stats[]`,
 * `.qgate.pools[]`, `.qgate.backends[]`, `.qgate.clients[]` come back as q tables built with
 * the codec. Everything else named `.qgate.*` gets `qgate: unknown admin function`; a
 * non-admin user gets `qgate: not allowed`. The gateway evaluates nothing else.
 *
 * An admin call is a whole message and nothing else (docs/operations.md): a char vector
 * that is only `.qgate.NAME` or `.qgate.NAME[]` (blanks around), or a list headed by the
 * symbol `.qgate.NAME` or the string ".qgate.NAME" (its other items are ignored). Any other
 * message that names `.qgate.` — in query text outside string literals, in the string or
 * lambda at the head of a list — is refused with `qgate: admin calls must be sent alone`,
 * so no statement beside an admin call is dropped and no `.qgate.` text reaches a backend.
 * Data (a list's other items, anything not q code) is never looked into.
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

/* ------------------------------------------------------------ recognition */

enum admin_kind {
	ADMIN_NONE = 0,		/* nothing of the gateway's: routed as usual */
	ADMIN_CALL,		/* exactly one admin call: name holds it */
	ADMIN_MENTION,		/* names .qgate. in any other way: refused */
};

#define PEEK_HEAD_MAX 256

static bool is_blank(uint8_t ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static bool is_name_char(uint8_t ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.';
}

static bool starts_admin(const uint8_t *t, size_t n)
{
	return n >= 7 && memcmp(t, ".qgate.", 7) == 0;
}

/*
 * q text naming the .qgate namespace outside a string literal: ".qgate." not glued to a
 * name before it (`a.qgate.b` is one name of q's, `.qgate2.f` another namespace).
 * Comments are not told apart: a mention in one is refused too, which costs nothing.
 */
static bool text_mentions(const uint8_t *t, size_t n)
{
	bool is_in_str = false;

	for (size_t i = 0; i < n; i++) {
		if (is_in_str) {
			if (t[i] == '\\')
				i++;	/* \" does not end the string */
			else if (t[i] == '"')
				is_in_str = false;
		} else if (t[i] == '"') {
			is_in_str = true;
		} else if (starts_admin(t + i, n - i) && (i == 0 || !is_name_char(t[i - 1]))) {
			return true;
		}
	}
	return false;
}

/*
 * The whole text is one admin call: blanks, `.qgate.NAME`, optionally `[]` (blanks allowed
 * inside), blanks. NAME is letters, digits and `_`. Copies `.qgate.NAME` into name.
 */
static bool text_is_call(const uint8_t *t, size_t n, bool may_bracket, char *name,
			 size_t name_n)
{
	size_t i = 0, end;

	while (i < n && is_blank(t[i]))
		i++;
	if (!starts_admin(t + i, n - i))
		return false;
	end = i + 7;
	while (end < n && is_name_char(t[end]) && t[end] != '.')
		end++;
	if (end == i + 7 || end - i >= name_n)
		return false;
	memcpy(name, t + i, end - i);
	name[end - i] = '\0';
	size_t k = end;
	if (may_bracket && k < n && t[k] == '[') {
		for (k++; k < n && is_blank(t[k]); k++)
			;
		if (k == n || t[k] != ']')
			return false;
		k++;
	}
	while (k < n && is_blank(t[k]))
		k++;
	return k == n;
}

/*
 * Decide what msg (a whole client message, header included) is to the gateway. A compressed
 * one is looked at through its first bytes, and restored whole only when its text matters
 * (a query, or code at the head of a list): up to max_bytes, else it is passed on unjudged
 * (the backend refuses what the gateway would not restore either).
 */
static enum admin_kind classify(const uint8_t *msg, size_t len, uint64_t max_bytes, char *name,
				size_t name_n)
{
	uint8_t head[QIPC_HDR_SIZE + 2 * PEEK_HEAD_MAX];
	uint8_t *whole = NULL;
	const uint8_t *pl = msg + QIPC_HDR_SIZE;
	size_t pn = len - QIPC_HDR_SIZE;
	struct qipc_peek pk;
	enum admin_kind kind = ADMIN_NONE;

	if (msg[2] != 0) {
		int64_t got = qipc_decompress_prefix(msg, len, head, sizeof(head));
		if (got <= QIPC_HDR_SIZE ||
		    qipc_peek(head + QIPC_HDR_SIZE, (size_t)got - QIPC_HDR_SIZE, msg[0] == 1,
			      PEEK_HEAD_MAX, &pk) != 1 || pk.kind == QIPC_PEEK_OTHER)
			return ADMIN_NONE;
		if (pk.kind == QIPC_PEEK_FUNC_SYM && !pk.is_truncated &&
		    !starts_admin(pk.text, pk.text_len))
			return ADMIN_NONE;
		int64_t u = qipc_compressed_orig_len(msg, len);
		if (u <= QIPC_HDR_SIZE || (uint64_t)u > max_bytes)
			return ADMIN_NONE;
		whole = malloc((size_t)u);
		if (!whole || qipc_decompress(msg, len, whole, (size_t)u) != u) {
			free(whole);
			return ADMIN_NONE;
		}
		pl = whole + QIPC_HDR_SIZE;
		pn = (size_t)u - QIPC_HDR_SIZE;
	}
	/* the whole text: the message is whole, so nothing is missing */
	if (qipc_peek(pl, pn, msg[0] == 1, pn, &pk) != 1 || pk.is_truncated)
		goto out;
	switch (pk.kind) {
	case QIPC_PEEK_QUERY:
		if (text_is_call(pk.text, pk.text_len, true, name, name_n))
			kind = ADMIN_CALL;
		else if (text_mentions(pk.text, pk.text_len))
			kind = ADMIN_MENTION;
		break;
	case QIPC_PEEK_FUNC_SYM:
		/* (`.qgate.pools;::): the name is the call, its arguments are data */
		if (starts_admin(pk.text, pk.text_len)) {
			size_t k = pk.text_len < name_n - 1 ? pk.text_len : name_n - 1;
			memcpy(name, pk.text, k);
			name[k] = '\0';
			kind = ADMIN_CALL;
		}
		break;
	case QIPC_PEEK_FUNC_STR:
		/* (".qgate.pools";::): the string is q code the backend would evaluate */
		if (text_is_call(pk.text, pk.text_len, false, name, name_n))
			kind = ADMIN_CALL;
		else if (text_mentions(pk.text, pk.text_len))
			kind = ADMIN_MENTION;
		break;
	case QIPC_PEEK_LAMBDA:
		if (text_mentions(pk.text, pk.text_len))
			kind = ADMIN_MENTION;
		break;
	default:
		break;
	}
out:
	free(whole);
	return kind;
}

bool gw_admin_may_stream(const uint8_t *head, size_t len)
{
	uint8_t plain[QIPC_HDR_SIZE + 2 * PEEK_HEAD_MAX];
	const uint8_t *pl = head + QIPC_HDR_SIZE;
	size_t pn = len > QIPC_HDR_SIZE ? len - QIPC_HDR_SIZE : 0;
	struct qipc_peek pk;

	if (head[2] != 0) {
		int64_t got = qipc_decompress_prefix(head, len, plain, sizeof(plain));
		pl = plain + QIPC_HDR_SIZE;
		pn = got > QIPC_HDR_SIZE ? (size_t)got - QIPC_HDR_SIZE : 0;
	}
	/* what the head cannot tell streams as before: the router sees no more of it */
	if (pn == 0 || qipc_peek(pl, pn, head[0] == 1, PEEK_HEAD_MAX, &pk) != 1)
		return true;
	switch (pk.kind) {
	case QIPC_PEEK_FUNC_SYM:
		return !starts_admin(pk.text, pk.text_len);
	case QIPC_PEEK_QUERY:
	case QIPC_PEEK_FUNC_STR:
	case QIPC_PEEK_LAMBDA:
		return !text_mentions(pk.text, pk.text_len);
	default:
		return true;
	}
}

bool gw_admin_call(struct gw_worker *w, struct gw_conn *c, const uint8_t *msg, size_t len,
		   uint8_t **out, size_t *out_len, const char **err, char *what, size_t what_n)
{
	char name[64];

	*out = NULL;
	*err = NULL;
	if (len <= QIPC_HDR_SIZE)
		return false;
	switch (classify(msg, len, w->cfg->limits.max_message_bytes, name, sizeof(name))) {
	case ADMIN_NONE:
		return false;
	case ADMIN_MENTION:
		snprintf(what, what_n, ".qgate.");	/* for the audit line */
		*err = "qgate: admin calls must be sent alone";
		return true;
	case ADMIN_CALL:
		break;
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
