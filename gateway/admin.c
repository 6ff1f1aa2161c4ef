/*
 * admin.c — the gateway answering q itself, for admin users: `.qgate.stats[]`,
 * `.qgate.pools[]`, `.qgate.backends[]`, `.qgate.clients[]` come back as q tables built with
 * the codec; `.qgate.pause[`p]`, `.qgate.resume`, `.qgate.disable`, `.qgate.enable`,
 * `.qgate.kill`, `.qgate.reload` have their arguments checked here (each one literal: a
 * symbol, a string, a whole number) and run the admin actions (actions.h). Everything else
 * named `.qgate.*` gets `qgate: unknown admin function`; a non-admin user gets
 * `qgate: not allowed`. The gateway evaluates nothing else.
 *
 * An admin call is a whole message and nothing else (docs/operations.md): a char vector
 * that is only `.qgate.NAME` or `.qgate.NAME[ARGS]` (blanks around; a table takes no ARGS),
 * or a list (or symbol vector) headed by the symbol `.qgate.NAME` or the string ".qgate.NAME"
 * (its other items are the arguments, decoded as data; the tables ignore them). Any other
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

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec/qipc.h"
#include "gateway/actions.h"
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

/* spec: "name:s name:j name:b ..." — s symbol column, j long column, b boolean column */
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
		t->cols[t->ncols] = qipc_obj_vec(colon[1] == 's' ? QT_SYMBOL :
						 colon[1] == 'b' ? QT_BOOL : QT_LONG, nrows);
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

static void put_bool(struct table *t, size_t col, size_t row, bool v)
{
	((uint8_t *)t->cols[col]->data)[row] = v;
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
				"p99_us:j paused:b outstanding:j") < 0) {
		if (tree)
			table_drop(&t);
		json_decref(tree);
		return NULL;
	}
	json_array_foreach(ps, i, p) {
		uint64_t up = 0, outstanding = 0;
		json_t *lat = json_object_get(p, "latency");
		json_array_foreach(json_object_get(p, "backends"), j, b) {
			up += is_up(b);
			/* sent and not answered yet: 0 once a pause has drained */
			outstanding += (uint64_t)jint(b, "outstanding");
		}
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
		put_bool(&t, 13, i, json_is_true(json_object_get(p, "paused")));
		put_long(&t, 14, i, outstanding);
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
				       "bytes_in:j bytes_out:j disabled:b") < 0) {
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
			put_bool(&t, 13, row, json_is_true(json_object_get(b, "disabled")));
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
 * The whole text is one admin call: blanks, `.qgate.NAME`, optionally `[ARGS]` (ARGS up to
 * the last `]`), blanks. NAME is letters, digits and `_`. Copies `.qgate.NAME` into name
 * and points *args (len *args_n) at ARGS (NULL without brackets).
 */
static bool text_is_call(const uint8_t *t, size_t n, bool may_bracket, char *name,
			 size_t name_n, const uint8_t **args, size_t *args_n)
{
	size_t i = 0, end;

	*args = NULL;
	*args_n = 0;
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
	size_t k = end, last = n;
	while (last > k && is_blank(t[last - 1]))
		last--;
	if (may_bracket && k < last && t[k] == '[') {
		if (t[last - 1] != ']' || last - 1 <= k)
			return false;
		*args = t + k + 1;
		*args_n = last - 1 - (k + 1);
		return true;
	}
	return k == last;
}

/* the read-only tables (no arguments) */
static bool is_table(const char *name)
{
	return strcmp(name, ".qgate.stats") == 0 || strcmp(name, ".qgate.pools") == 0 ||
	       strcmp(name, ".qgate.backends") == 0 || strcmp(name, ".qgate.clients") == 0;
}

/* ------------------------------------------------------------ arguments */

enum arg_kind {
	ARG_NONE = 0,		/* empty or :: */
	ARG_NAME,		/* a symbol or a string: s */
	ARG_LONG,		/* a whole number: j */
	ARG_BAD,		/* anything else */
};

#define MAX_ARGS 4

struct admin_args {
	size_t n;		/* given, MAX_ARGS + 1 when more */
	struct {
		enum arg_kind kind;
		int64_t j;
		char s[GW_ACTION_NAME_MAX + 1];
	} a[MAX_ARGS];
};

static void arg_add(struct admin_args *as, enum arg_kind kind, const char *s, size_t sn,
		    int64_t j)
{
	if (as->n >= MAX_ARGS) {
		as->n = MAX_ARGS + 1;
		return;
	}
	as->a[as->n].kind = kind;
	as->a[as->n].j = j;
	as->a[as->n].s[0] = '\0';
	if (kind == ARG_NAME) {
		if (sn > GW_ACTION_NAME_MAX || memchr(s, 0, sn))
			as->a[as->n].kind = ARG_BAD;	/* over-long, or a NUL in it */
		else {
			memcpy(as->a[as->n].s, s, sn);
			as->a[as->n].s[sn] = '\0';
		}
	}
	as->n++;
}

/* A q string literal t[0..n) (quotes included) unescaped into out; false: not exactly one. */
static bool unquote(const uint8_t *t, size_t n, char *out, size_t *out_n, size_t cap)
{
	size_t o = 0;

	if (n < 2 || t[0] != '"' || t[n - 1] != '"')
		return false;
	for (size_t i = 1; i + 1 < n; i++) {
		uint8_t ch = t[i];
		if (ch == '"')
			return false;
		if (ch == '\\') {
			if (i + 2 >= n)
				return false;
			ch = t[++i];
			if (ch == 'n')
				ch = '\n';
			else if (ch == 't')
				ch = '\t';
			else if (ch == 'r')
				ch = '\r';
			else if (ch >= '0' && ch <= '7' && i + 2 < n - 1 && t[i + 1] >= '0' &&
				 t[i + 1] <= '7' && t[i + 2] >= '0' && t[i + 2] <= '7') {
				ch = (uint8_t)((ch - '0') * 64 + (t[i + 1] - '0') * 8 + (t[i + 2] - '0'));
				i += 2;
			} else if (ch != '"' && ch != '\\')
				return false;
		}
		if (o >= cap)
			return false;
		out[o++] = (char)ch;
	}
	*out_n = o;
	return true;
}

/* One argument as q text: ``name`, `$"str"`, "str", a whole number, :: or nothing. */
static void text_arg(struct admin_args *as, const uint8_t *t, size_t n)
{
	char buf[GW_ACTION_NAME_MAX + 2];
	size_t bn;

	while (n && is_blank(t[0])) {
		t++;
		n--;
	}
	while (n && is_blank(t[n - 1]))
		n--;
	if (n == 0 || (n == 2 && t[0] == ':' && t[1] == ':')) {
		arg_add(as, ARG_NONE, NULL, 0, 0);
	} else if (n >= 3 && t[0] == '`' && t[1] == '$' && unquote(t + 2, n - 2, buf, &bn,
								     sizeof(buf))) {
		arg_add(as, ARG_NAME, buf, bn, 0);
	} else if (t[0] == '`') {
		for (size_t i = 1; i < n; i++)
			if (t[i] <= ' ' || t[i] >= 127 || strchr("`\"[];", t[i])) {
				arg_add(as, ARG_BAD, NULL, 0, 0);
				return;
			}
		arg_add(as, ARG_NAME, (const char *)t + 1, n - 1, 0);
	} else if (t[0] == '"') {
		if (unquote(t, n, buf, &bn, sizeof(buf)))
			arg_add(as, ARG_NAME, buf, bn, 0);
		else
			arg_add(as, ARG_BAD, NULL, 0, 0);
	} else {
		size_t i = t[0] == '-' ? 1 : 0, d = i;
		int64_t v = 0;
		while (d < n && t[d] >= '0' && t[d] <= '9' && v < INT64_MAX / 10 - 10)
			v = v * 10 + (t[d++] - '0');
		if (d < n && (t[d] == 'j' || t[d] == 'i' || t[d] == 'h'))
			d++;
		if (d == n && d > i + (t[n - 1] > '9'))
			arg_add(as, ARG_LONG, NULL, 0, i ? -v : v);
		else
			arg_add(as, ARG_BAD, NULL, 0, 0);
	}
}

/* ARGS of `f[ARGS]`: split at `;` outside string literals; `f[]` has none. */
static void text_args(struct admin_args *as, const uint8_t *t, size_t n)
{
	size_t start = 0;
	bool is_in_str = false;

	memset(as, 0, sizeof(*as));
	for (size_t i = 0; i <= n; i++) {
		if (i < n && is_in_str) {
			if (t[i] == '\\')
				i++;
			else if (t[i] == '"')
				is_in_str = false;
			continue;
		}
		if (i < n && t[i] == '"') {
			is_in_str = true;
			continue;
		}
		if (i == n || t[i] == ';') {
			text_arg(as, t + start, (i < n ? i : n) - start);
			start = i + 1;
		}
	}
	if (as->n == 1 && as->a[0].kind == ARG_NONE)
		as->n = 0;	/* f[] and f[::] */
}

/* The items after the name of a list call ((`f;x;y), `f`x, (\"f\";x)): data, decoded. */
static void list_args(struct admin_args *as, const uint8_t *msg, size_t len, uint64_t max)
{
	struct qipc_obj *o = qipc_decode_msg(msg, len, max, NULL, NULL);

	memset(as, 0, sizeof(*as));
	if (!o) {
		arg_add(as, ARG_BAD, NULL, 0, 0);
		return;
	}
	if (o->type == QT_SYMBOL) {
		for (uint64_t i = 1; i < o->n; i++)
			arg_add(as, ARG_NAME, o->syms[i], strlen(o->syms[i]), 0);
	} else if (o->type == QT_LIST) {
		for (uint64_t i = 1; i < o->n; i++) {
			const struct qipc_obj *x = o->items[i];
			if (x->type == -QT_SYMBOL)
				arg_add(as, ARG_NAME, x->s, strlen(x->s), 0);
			else if (x->type == QT_CHAR)
				arg_add(as, ARG_NAME, x->data, x->n, 0);
			else if (x->type == -QT_CHAR)
				arg_add(as, ARG_NAME, (const char *)&x->a.b, 1, 0);
			else if (x->type == -QT_LONG)
				arg_add(as, ARG_LONG, NULL, 0, x->a.j);
			else if (x->type == -QT_INT)
				arg_add(as, ARG_LONG, NULL, 0, x->a.i);
			else if (x->type == -QT_SHORT)
				arg_add(as, ARG_LONG, NULL, 0, x->a.h);
			else if (x->type == 101 && x->a.b == 0)	/* :: */
				arg_add(as, ARG_NONE, NULL, 0, 0);
			else
				arg_add(as, ARG_BAD, NULL, 0, 0);
		}
		if (as->n == 1 && as->a[0].kind == ARG_NONE)
			as->n = 0;	/* (`f;::): f[] */
	}
	qipc_obj_free(o);
}

/*
 * Decide what msg (a whole client message, header included) is to the gateway. A compressed
 * one is looked at through its first bytes, and restored whole only when its text matters
 * (a query, or code at the head of a list): up to max_bytes, else it is passed on unjudged
 * (the backend refuses what the gateway would not restore either).
 */
static enum admin_kind classify(const uint8_t *msg, size_t len, uint64_t max_bytes, char *name,
				size_t name_n, struct admin_args *args)
{
	const uint8_t *ap;
	size_t an;
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
	memset(args, 0, sizeof(*args));
	/* `.qgate.pause`name: q sends a list of symbols as a symbol vector */
	if (pn > 6 && pl[0] == QT_SYMBOL && starts_admin(pl + 6, pn - 6)) {
		const uint8_t *nul = memchr(pl + 6, 0, pn - 6);
		size_t k = nul ? (size_t)(nul - (pl + 6)) : 0;
		if (k && k < name_n) {
			memcpy(name, pl + 6, k);
			name[k] = '\0';
			list_args(args, msg, len, max_bytes);
			kind = ADMIN_CALL;
			goto out;
		}
	}
	/* the whole text: the message is whole, so nothing is missing */
	if (qipc_peek(pl, pn, msg[0] == 1, pn, &pk) != 1 || pk.is_truncated)
		goto out;
	switch (pk.kind) {
	case QIPC_PEEK_QUERY:
		if (text_is_call(pk.text, pk.text_len, true, name, name_n, &ap, &an)) {
			kind = ADMIN_CALL;
			if (ap)
				text_args(args, ap, an);
			/* a table takes no argument: `.qgate.stats[1]; f[2]` is two statements */
			if (args->n && is_table(name))
				kind = ADMIN_MENTION;
		} else if (text_mentions(pk.text, pk.text_len)) {
			kind = ADMIN_MENTION;
		}
		break;
	case QIPC_PEEK_FUNC_SYM:
		/* (`.qgate.pools;::): the name is the call, its arguments are data */
		if (starts_admin(pk.text, pk.text_len)) {
			size_t k = pk.text_len < name_n - 1 ? pk.text_len : name_n - 1;
			memcpy(name, pk.text, k);
			name[k] = '\0';
			list_args(args, msg, len, max_bytes);
			kind = ADMIN_CALL;
		}
		break;
	case QIPC_PEEK_FUNC_STR:
		/* (".qgate.pools";::): the string is q code the backend would evaluate */
		if (text_is_call(pk.text, pk.text_len, false, name, name_n, &ap, &an)) {
			list_args(args, msg, len, max_bytes);
			kind = ADMIN_CALL;
		} else if (text_mentions(pk.text, pk.text_len)) {
			kind = ADMIN_MENTION;
		}
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
	/* `.qgate.pause`name ... (a symbol vector): held to be judged whole */
	if (pn > 6 && pl[0] == QT_SYMBOL && starts_admin(pl + 6, pn - 6))
		return false;
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

/* the q text of an action's error (gw_req_fail copies it at once) */
static __thread char err_text[600];

static const char *refuse(struct gw_worker *w, const struct gw_action_who *who, const char *name,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* An action call refused before it ran: audited and logged, the error text for q. */
static const char *refuse(struct gw_worker *w, const struct gw_action_who *who, const char *name,
			  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_text, sizeof(err_text), fmt, ap);
	va_end(ap);
	gw_action_refused(w, who, name, NULL, 400, err_text);
	return err_text;
}

/* The q symbol answer of a done action, or its error text. */
static const char *action_answer(const struct gw_action_result *res, struct qipc_obj **o)
{
	if (res->status >= 300) {
		snprintf(err_text, sizeof(err_text), "%s", res->error);
		return err_text;
	}
	*o = qipc_obj_sym(res->state);
	return NULL;
}

/* `.qgate.pause[`pool]` and the rest: arity and types checked, then the action (actions.h). */
static const char *run_action(struct gw_worker *w, struct gw_conn *c, enum gw_action_kind k,
			      const struct admin_args *as, struct qipc_obj **o)
{
	struct gw_action_who who = { .user = c->cl.user, .peer = c->peer, .via = "q" };
	struct gw_action_result res;
	const char *an = gw_action_name(k);

	switch (k) {
	case GW_ACT_PAUSE:
	case GW_ACT_RESUME:
		if (as->n != 1 || as->a[0].kind != ARG_NAME)
			return refuse(w, &who, an, "qgate: .qgate.%s takes one pool name (a symbol "
				      "or string, at most %d bytes, no NUL): .qgate.%s[`pool]", an,
				      GW_ACTION_NAME_MAX, an);
		gw_action_pause(w, &who, as->a[0].s, k == GW_ACT_PAUSE, &res);
		break;
	case GW_ACT_DISABLE:
	case GW_ACT_ENABLE:
		if (as->n < 1 || as->n > 2 || as->a[0].kind != ARG_NAME ||
		    (as->n == 2 && as->a[1].kind != ARG_NAME))
			return refuse(w, &who, an, "qgate: .qgate.%s takes a backend name "
				      "(`backend or `pool.backend) or a pool and a backend: "
				      ".qgate.%s[`pool;`backend]", an, an);
		if (as->n == 2)
			gw_action_disable(w, &who, as->a[0].s, as->a[1].s, k == GW_ACT_DISABLE,
					  &res);
		else
			gw_action_disable(w, &who, NULL, as->a[0].s, k == GW_ACT_DISABLE, &res);
		break;
	case GW_ACT_KILL:
		if (as->n != 1 || as->a[0].kind != ARG_LONG || as->a[0].j <= 0)
			return refuse(w, &who, an, "qgate: .qgate.kill takes one client id (a "
				      "long, the id column of .qgate.clients[])");
		gw_action_kill(w, &who, (uint64_t)as->a[0].j, &res);
		break;
	case GW_ACT_RELOAD:
		if (as->n != 0)
			return refuse(w, &who, an, "qgate: .qgate.reload takes no argument: "
				      ".qgate.reload[]");
		gw_action_reload(w, &who, &res);
		break;
	default:
		return "qgate: unknown admin function";
	}
	return action_answer(&res, o);
}

bool gw_admin_call(struct gw_worker *w, struct gw_conn *c, const uint8_t *msg, size_t len,
		   uint8_t **out, size_t *out_len, const char **err, char *what, size_t what_n,
		   bool *is_audited)
{
	char name[64];
	struct admin_args args;

	*out = NULL;
	*err = NULL;
	*is_audited = false;
	if (len <= QIPC_HDR_SIZE)
		return false;
	switch (classify(msg, len, w->cfg->limits.max_message_bytes, name, sizeof(name),
			 &args)) {
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
	int act = gw_action_of(name + 7, strlen(name + 7));
	if (!c->cl.ucfg || !c->cl.ucfg->is_admin) {
		*err = "qgate: not allowed";
		if (act >= 0) {
			struct gw_action_who who = { .user = c->cl.user, .peer = c->peer,
						     .via = "q" };
			gw_action_refused(w, &who, name + 7, NULL, 403, *err);
			*is_audited = true;
		}
		return true;
	}
	struct qipc_obj *o = NULL;
	if (act >= 0) {
		*is_audited = true;	/* the action wrote its own audit line */
		*err = run_action(w, c, (enum gw_action_kind)act, &args, &o);
		if (*err)
			return true;
	} else if (strcmp(name, ".qgate.stats") == 0)
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
