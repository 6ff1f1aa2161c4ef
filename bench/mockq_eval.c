/*
 * mockq_eval — a deliberately small q evaluator for the backend emulator.
 *
 * It implements q's default message handler (`value`) for the forms documented in
 * docs/mockq.md: char-vector queries parsed right to left, general lists headed by a symbol,
 * a string or a lambda, the PyKX context-interface probe and file_execute envelope, and the
 * .mock.* test verbs. Anything else fails with a q-style error text ('nyi, 'type, the name of
 * an undefined global, ...); nothing here may crash on hostile input.
 *
 * Invariants: every eval_* function returns a value owned by the caller, or NULL with
 * ev->err set; inputs are never modified. Recursion is bounded by MQ_MAX_DEPTH.
 */
#include "bench/mockq.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/qipc.h"

#define MQ_MAX_DEPTH 48
#define MQ_MAX_ARGS 8
/* Evaluator-internal marker: a lambda in this namespace is a built-in named by its source. */
#define MQ_BUILTIN_NS "\x01"

/* ------------------------------------------------------------------ helpers */

__attribute__((format(printf, 2, 3)))
static struct qipc_obj *fail(struct mq_eval *ev, const char *fmt, ...)
{
	va_list ap;

	if (ev->err[0])		/* keep the innermost error */
		return NULL;
	va_start(ap, fmt);
	vsnprintf(ev->err, sizeof(ev->err), fmt, ap);
	va_end(ap);
	if (!ev->err[0])
		snprintf(ev->err, sizeof(ev->err), "error");
	return NULL;
}

static struct qipc_obj *oom(struct mq_eval *ev)
{
	return fail(ev, "wsfull");
}

/* o, or the out-of-memory error when an allocation returned NULL. */
static struct qipc_obj *chk(struct mq_eval *ev, struct qipc_obj *o)
{
	return o ? o : oom(ev);
}

static bool is_identity(const struct qipc_obj *o)
{
	return o->type == QT_UNARY && o->a.x == 0;
}

static bool is_atom(const struct qipc_obj *o)
{
	return o->type < 0 && o->type > -20;
}

static bool is_simple_vec(const struct qipc_obj *o)
{
	return o->type >= 1 && o->type <= 19;
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

struct qipc_obj *mq_obj_copy(const struct qipc_obj *o)
{
	struct qipc_obj *c;
	size_t w;

	if (!o)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	*c = *o;
	c->s = NULL;
	c->data = NULL;
	c->syms = NULL;
	c->items = NULL;
	if (o->s && !(c->s = strdup(o->s)))
		goto fail;
	if (o->data) {
		w = qipc_type_width(o->type > 0 ? o->type : -o->type);
		if (!w)
			w = 1;
		c->data = malloc(o->n ? (size_t)o->n * w : 1);
		if (!c->data)
			goto fail;
		if (o->n)
			memcpy(c->data, o->data, (size_t)o->n * w);
	}
	if (o->syms) {
		c->syms = calloc(o->n ? (size_t)o->n : 1, sizeof(char *));
		if (!c->syms)
			goto fail;
		for (uint64_t i = 0; i < o->n; i++)
			if (!(c->syms[i] = strdup(o->syms[i] ? o->syms[i] : "")))
				goto fail;
	}
	if (o->items) {
		c->items = calloc(o->n ? (size_t)o->n : 1, sizeof(*c->items));
		if (!c->items)
			goto fail;
		for (uint64_t i = 0; i < o->n; i++)
			if (o->items[i] && !(c->items[i] = mq_obj_copy(o->items[i])))
				goto fail;
	}
	return c;
fail:
	qipc_obj_free(c);
	return NULL;
}

static struct qipc_obj *mk_lambda_ns(const char *ns, const char *src, size_t len)
{
	struct qipc_obj *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->type = QT_LAMBDA;
	o->n = 1;
	o->s = strdup(ns);
	o->items = calloc(1, sizeof(*o->items));
	if (!o->s || !o->items || !(o->items[0] = qipc_obj_str(src, len))) {
		qipc_obj_free(o);
		return NULL;
	}
	return o;
}

static struct qipc_obj *mk_builtin(const char *name)
{
	return mk_lambda_ns(MQ_BUILTIN_NS, name, strlen(name));
}

static bool is_builtin(const struct qipc_obj *o)
{
	return o->type == QT_LAMBDA && o->s && !strcmp(o->s, MQ_BUILTIN_NS) && o->n == 1 &&
	       o->items && o->items[0] && o->items[0]->type == QT_CHAR;
}

/* Source text of a lambda (not NUL-terminated). */
static const char *lambda_src(const struct qipc_obj *o, size_t *len)
{
	if (o->type != QT_LAMBDA || o->n < 1 || !o->items || !o->items[0] ||
	    o->items[0]->type != QT_CHAR) {
		*len = 0;
		return "";
	}
	*len = (size_t)o->items[0]->n;
	return o->items[0]->data ? o->items[0]->data : "";
}

static struct qipc_obj *mk_short(int16_t v)
{
	struct qipc_obj *o = qipc_obj_atom(-QT_SHORT);

	if (o)
		o->a.h = v;
	return o;
}

/* A string (char vector) or symbol as a NUL-terminated copy; NULL if o is neither. */
static char *text_of(const struct qipc_obj *o)
{
	if (o->type == QT_CHAR)
		return xstrndup(o->data ? o->data : "", (size_t)o->n);
	if (o->type == -QT_CHAR)
		return xstrndup((const char *)&o->a.b, 1);
	if (o->type == -QT_SYMBOL)
		return strdup(o->s ? o->s : "");
	return NULL;
}

/* Item i of a vector, list or atom as a new object. */
static struct qipc_obj *item_at(const struct qipc_obj *o, uint64_t i)
{
	struct qipc_obj *r;
	size_t w;

	if (o->type == QT_LIST)
		return mq_obj_copy(o->items[i]);
	if (o->type == QT_SYMBOL)
		return qipc_obj_sym(o->syms[i] ? o->syms[i] : "");
	if (is_simple_vec(o)) {
		r = qipc_obj_atom((int8_t)-o->type);
		if (!r)
			return NULL;
		w = qipc_type_width(o->type);
		memcpy(&r->a, (const uint8_t *)o->data + i * w, w);
		return r;
	}
	return mq_obj_copy(o);
}

/* Count as q's `count`. */
static uint64_t obj_count(const struct qipc_obj *o)
{
	if (o->type >= 0 && o->type <= 19)
		return o->n;
	if (o->type == QT_DICT || o->type == QT_SORTED_DICT)
		return obj_count(o->items[0]);
	if (o->type == QT_TABLE && o->items[0]->items[1]->n > 0)
		return obj_count(o->items[0]->items[1]->items[0]);
	return 1;
}

/*
 * Turn a general list (taken) into a simple vector when all items are atoms of one type,
 * as q does for (1;2;3). Returns the result (the input is consumed).
 */
static struct qipc_obj *collapse(struct qipc_obj *l)
{
	struct qipc_obj *v;
	int8_t t;
	size_t w;

	if (!l || l->type != QT_LIST || l->n == 0)
		return l;
	t = l->items[0]->type;
	if (!is_atom(l->items[0]))
		return l;
	for (uint64_t i = 1; i < l->n; i++)
		if (l->items[i]->type != t)
			return l;
	v = qipc_obj_vec((int8_t)-t, l->n);
	if (!v)
		return l;	/* the list is still a correct value */
	if (t == -QT_SYMBOL) {
		for (uint64_t i = 0; i < l->n; i++)
			if (qipc_obj_set_sym(v, i, l->items[i]->s ? l->items[i]->s : "") < 0) {
				qipc_obj_free(v);
				return l;
			}
	} else {
		w = qipc_type_width(-t);
		for (uint64_t i = 0; i < l->n; i++)
			memcpy((uint8_t *)v->data + i * w, &l->items[i]->a, w);
	}
	qipc_obj_free(l);
	return v;
}

/* ------------------------------------------------------------------ globals */

/* .q and .mock hold the built-ins: assigning into them is refused, as q refuses .q. */
static bool is_reserved_ns(const char *name)
{
	return !strcmp(name, ".q") || !strncmp(name, ".q.", 3) || !strcmp(name, ".mock") ||
	       !strncmp(name, ".mock.", 6);
}

struct mq_global {
	char *name;
	struct qipc_obj *val;
};

static struct mq_global *g_vars;
static size_t g_nvars, g_capvars;

static struct mq_global *global_find(const char *name)
{
	for (size_t i = 0; i < g_nvars; i++)
		if (!strcmp(g_vars[i].name, name))
			return &g_vars[i];
	return NULL;
}

/* Store a value under name (takes val). Returns 0 or -ENOMEM (val freed then). */
static int global_set(const char *name, struct qipc_obj *val)
{
	struct mq_global *g = global_find(name);

	if (g) {
		qipc_obj_free(g->val);
		g->val = val;
		return 0;
	}
	if (g_nvars == g_capvars) {
		size_t cap = g_capvars ? g_capvars * 2 : 16;
		struct mq_global *nv = realloc(g_vars, cap * sizeof(*nv));

		if (!nv) {
			qipc_obj_free(val);
			return -ENOMEM;
		}
		g_vars = nv;
		g_capvars = cap;
	}
	g_vars[g_nvars].name = strdup(name);
	if (!g_vars[g_nvars].name) {
		qipc_obj_free(val);
		return -ENOMEM;
	}
	g_vars[g_nvars++].val = val;
	return 0;
}

void mq_globals_free(void)
{
	for (size_t i = 0; i < g_nvars; i++) {
		free(g_vars[i].name);
		qipc_obj_free(g_vars[i].val);
	}
	free(g_vars);
	g_vars = NULL;
	g_nvars = g_capvars = 0;
}

/* ------------------------------------------------------------------ builtins table */

typedef struct qipc_obj *(*builtin_fn)(struct mq_eval *ev, struct qipc_obj **a, int n);

struct builtin {
	const char *name;
	int min_args, max_args;
	builtin_fn fn;
	bool is_infix;		/* keyword used between its arguments, like `a set 1 */
	bool is_q;		/* listed in the .q namespace */
};

static const struct builtin *builtin_find(const char *name);

/* ------------------------------------------------------------------ tokens */

enum tok_kind {
	T_END = 0,
	T_CONST,
	T_NAME,
	T_VERB,
	T_LP, T_RP, T_LB, T_RB, T_LC, T_RC,
	T_SEMI,
};

struct tok {
	enum tok_kind kind;
	const char *p;		/* text in the source */
	size_t len;
	struct qipc_obj *val;	/* T_CONST */
};

struct toks {
	struct tok *t;
	size_t n, cap;
};

static void toks_free(struct toks *ts)
{
	for (size_t i = 0; i < ts->n; i++)
		qipc_obj_free(ts->t[i].val);
	free(ts->t);
	ts->t = NULL;
	ts->n = ts->cap = 0;
}

static int toks_push(struct toks *ts, enum tok_kind k, const char *p, size_t len,
		     struct qipc_obj *val)
{
	if (ts->n == ts->cap) {
		size_t cap = ts->cap ? ts->cap * 2 : 32;
		struct tok *nt = realloc(ts->t, cap * sizeof(*nt));

		if (!nt) {
			qipc_obj_free(val);
			return -ENOMEM;
		}
		ts->t = nt;
		ts->cap = cap;
	}
	ts->t[ts->n++] = (struct tok){ .kind = k, .p = p, .len = len, .val = val };
	return 0;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static const char VERB_CHARS[] = "+-*%!&|<>=~,^#_$?@.:";

/* Keywords that q applies infix (x kw y); those without an implementation fail with nyi. */
static const char *const INFIX_KW[] = {
	"set", "mod", "div", "in", "and", "or", "like", "xbar", "each", "over", "scan",
	"within", "except", "inter", "union", "cross", "sv", "vs", "cut", "sublist", "rotate",
	"xexp", "xlog", "bin", "ss", "lj", "ij", "uj", "aj", "upsert", "insert", "xkey", NULL,
};

static bool is_infix_kw(const char *p, size_t len)
{
	for (int i = 0; INFIX_KW[i]; i++)
		if (strlen(INFIX_KW[i]) == len && !memcmp(INFIX_KW[i], p, len))
			return true;
	return false;
}

/* qSQL and control words: parsing them as names would give misleading errors. */
static bool is_unsupported_word(const char *p, size_t len)
{
	static const char *const words[] = {
		"select", "exec", "update", "delete", "from", "if", "do", "while", NULL,
	};

	for (int i = 0; words[i]; i++)
		if (strlen(words[i]) == len && !memcmp(words[i], p, len))
			return true;
	return false;
}

/* The word at p looks like the start of a number. */
static bool number_start(const char *p, const char *end)
{
	if (p < end && is_digit(*p))
		return true;
	if (p + 1 < end && *p == '.' && is_digit(p[1]))
		return true;
	if (p + 1 < end && *p == '-' && (is_digit(p[1]) || (p[1] == '.' && p + 2 < end &&
							     is_digit(p[2]))))
		return true;
	return false;
}

/* Length of a number word at p. */
static size_t number_len(const char *p, const char *end)
{
	const char *q = p;

	if (q < end && *q == '-')
		q++;
	while (q < end && (is_digit(*q) || is_alpha(*q) || *q == '.')) {
		/* exponent sign: 1e-3 */
		if ((*q == 'e' || *q == 'E') && q + 1 < end && (q[1] == '-' || q[1] == '+') &&
		    q > p && is_digit(q[-1]))
			q++;
		q++;
	}
	return (size_t)(q - p);
}

struct numlit {
	int8_t type;		/* atom type, negative */
	bool is_explicit;	/* a type suffix was given */
	int64_t j;
	double f;
};

static int parse_number_word(const char *p, size_t len, struct numlit *out)
{
	char buf[64];
	char suffix = 0;
	char *endp;
	bool neg = false;
	const char *q = p;
	size_t ql = len;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memset(out, 0, sizeof(*out));
	if (*q == '-') {
		neg = true;
		q++;
		ql--;
	}
	if (ql == 2 && q[0] == '0' && (q[1] == 'N' || q[1] == 'n' || q[1] == 'W' ||
				       q[1] == 'w')) {
		if (q[1] == 'N') {
			out->type = -QT_LONG;
			out->j = QIPC_NULL_LONG;
		} else if (q[1] == 'W') {
			out->type = -QT_LONG;
			out->j = neg ? -QIPC_INF_LONG : QIPC_INF_LONG;
		} else if (q[1] == 'n') {
			out->type = -QT_FLOAT;
			out->f = NAN;
		} else {
			out->type = -QT_FLOAT;
			out->f = neg ? -INFINITY : INFINITY;
		}
		return 0;
	}
	memcpy(buf, p, len);
	buf[len] = 0;
	if (is_alpha(buf[len - 1])) {
		suffix = buf[len - 1];
		buf[len - 1] = 0;
		if (!buf[0] || (buf[0] == '-' && !buf[1]))
			return -1;
	}
	switch (suffix) {
	case 0:
		if (strpbrk(buf, ".eE")) {
			out->type = -QT_FLOAT;
			errno = 0;
			out->f = strtod(buf, &endp);
			return *endp ? -1 : 0;
		}
		out->type = -QT_LONG;
		errno = 0;
		out->j = strtoll(buf, &endp, 10);
		return (*endp || errno) ? -1 : 0;
	case 'j': case 'i': case 'h':
		out->type = suffix == 'j' ? -QT_LONG : suffix == 'i' ? -QT_INT : -QT_SHORT;
		out->is_explicit = true;
		errno = 0;
		out->j = strtoll(buf, &endp, 10);
		return (*endp || errno) ? -1 : 0;
	case 'f': case 'e':
		out->type = suffix == 'f' ? -QT_FLOAT : -QT_REAL;
		out->is_explicit = true;
		out->f = strtod(buf, &endp);
		return *endp ? -1 : 0;
	default:
		return -1;
	}
}

static struct qipc_obj *numlit_atom(const struct numlit *nl, int8_t type)
{
	struct qipc_obj *o = qipc_obj_atom(type);
	bool is_f = nl->type == -QT_FLOAT || nl->type == -QT_REAL;

	if (!o)
		return NULL;
	switch (-type) {
	case QT_LONG: o->a.j = is_f ? (int64_t)nl->f : nl->j; break;
	case QT_INT: o->a.i = (int32_t)(is_f ? (int64_t)nl->f : nl->j); break;
	case QT_SHORT: o->a.h = (int16_t)(is_f ? (int64_t)nl->f : nl->j); break;
	case QT_FLOAT: o->a.f = is_f ? nl->f : (nl->j == QIPC_NULL_LONG ? NAN : (double)nl->j);
		break;
	case QT_REAL: o->a.e = (float)(is_f ? nl->f : (double)nl->j); break;
	default: break;
	}
	return o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Numeric literal (atom or space-separated vector) starting at *pp. */
static struct qipc_obj *lex_number(struct mq_eval *ev, const char **pp, const char *end)
{
	const char *p = *pp;
	size_t len = number_len(p, end);
	struct numlit lits[64];
	struct numlit *many = lits;
	size_t n = 0, cap = 64;
	int8_t type;
	struct qipc_obj *v = NULL;

	/* 0x bytes and 101b booleans are single words */
	if (len > 2 && p[0] == '0' && p[1] == 'x') {
		size_t nd = len - 2;

		if (nd % 2)
			return fail(ev, "'%.*s", (int)len, p);
		v = nd == 2 ? qipc_obj_atom(-QT_BYTE) : qipc_obj_vec(QT_BYTE, nd / 2);
		if (!v)
			return oom(ev);
		for (size_t i = 0; i < nd / 2; i++) {
			int hi = hexval(p[2 + 2 * i]), lo = hexval(p[3 + 2 * i]);

			if (hi < 0 || lo < 0) {
				qipc_obj_free(v);
				return fail(ev, "'%.*s", (int)len, p);
			}
			if (nd == 2)
				v->a.b = (uint8_t)(hi * 16 + lo);
			else
				((uint8_t *)v->data)[i] = (uint8_t)(hi * 16 + lo);
		}
		*pp = p + len;
		return v;
	}
	if (len > 1 && p[len - 1] == 'b' && strspn(p, "01") == len - 1) {
		v = len == 2 ? qipc_obj_bool(p[0] == '1') : qipc_obj_vec(QT_BOOL, len - 1);
		if (!v)
			return oom(ev);
		if (len > 2)
			for (size_t i = 0; i + 1 < len; i++)
				((uint8_t *)v->data)[i] = p[i] == '1';
		*pp = p + len;
		return v;
	}
	for (;;) {
		if (n == cap) {
			struct numlit *nm = malloc(cap * 2 * sizeof(*nm));

			if (!nm) {
				if (many != lits)
					free(many);
				return oom(ev);
			}
			memcpy(nm, many, n * sizeof(*nm));
			if (many != lits)
				free(many);
			many = nm;
			cap *= 2;
		}
		if (parse_number_word(p, len, &many[n]) < 0) {
			if (many != lits)
				free(many);
			return fail(ev, "'%.*s", (int)len, p);
		}
		n++;
		p += len;
		/* another number after spaces continues the vector */
		const char *q = p;

		while (q < end && is_space(*q))
			q++;
		if (q == p || !number_start(q, end))
			break;
		len = number_len(q, end);
		if (len > 1 && q[len - 1] == 'b' && strspn(q, "01") == len - 1)
			break;
		if (len > 2 && q[0] == '0' && q[1] == 'x')
			break;
		p = q;
	}
	type = many[n - 1].is_explicit ? many[n - 1].type : -QT_LONG;
	if (!many[n - 1].is_explicit)
		for (size_t i = 0; i < n; i++)
			if (many[i].type == -QT_FLOAT)
				type = -QT_FLOAT;
	if (n == 1) {
		v = numlit_atom(&many[0], type);
	} else {
		v = qipc_obj_vec((int8_t)-type, n);
		for (size_t i = 0; v && i < n; i++) {
			struct qipc_obj *a = numlit_atom(&many[i], type);
			size_t w = qipc_type_width(-type);

			if (!a) {
				qipc_obj_free(v);
				v = NULL;
				break;
			}
			memcpy((uint8_t *)v->data + i * w, &a->a, w);
			qipc_obj_free(a);
		}
	}
	if (many != lits)
		free(many);
	if (!v)
		return oom(ev);
	*pp = p;
	return v;
}

static struct qipc_obj *lex_string(struct mq_eval *ev, const char **pp, const char *end)
{
	const char *p = *pp + 1;
	char *buf = malloc((size_t)(end - p) + 1);
	size_t n = 0;
	struct qipc_obj *v;

	if (!buf)
		return oom(ev);
	while (p < end && *p != '"') {
		if (*p == '\\' && p + 1 < end) {
			p++;
			switch (*p) {
			case 'n': buf[n++] = '\n'; p++; break;
			case 't': buf[n++] = '\t'; p++; break;
			case 'r': buf[n++] = '\r'; p++; break;
			case '\\': buf[n++] = '\\'; p++; break;
			case '"': buf[n++] = '"'; p++; break;
			default:
				if (p + 2 < end && is_digit(p[0]) && is_digit(p[1]) &&
				    is_digit(p[2])) {
					buf[n++] = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 +
							  (p[2] - '0'));
					p += 3;
				} else {
					buf[n++] = *p++;
				}
			}
			continue;
		}
		buf[n++] = *p++;
	}
	if (p >= end) {
		free(buf);
		return fail(ev, "\"");
	}
	*pp = p + 1;
	v = n == 1 ? qipc_obj_char(buf[0]) : qipc_obj_str(buf, n);
	free(buf);
	return v ? v : oom(ev);
}

static bool sym_char(char c)
{
	return is_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == ':' || c == '/';
}

static struct qipc_obj *lex_symbol(struct mq_eval *ev, const char **pp, const char *end)
{
	const char *p = *pp;
	struct qipc_obj *l = qipc_obj_list(0), *s;
	size_t cap = 0;

	if (!l)
		return oom(ev);
	while (p < end && *p == '`') {
		const char *st = ++p;
		char *name;

		while (p < end && sym_char(*p))
			p++;
		name = xstrndup(st, (size_t)(p - st));
		s = name ? qipc_obj_sym(name) : NULL;
		free(name);
		if (!s)
			goto nomem;
		if (l->n == cap) {
			struct qipc_obj **ni;

			cap = cap ? cap * 2 : 4;
			ni = realloc(l->items, cap * sizeof(*ni));
			if (!ni) {
				qipc_obj_free(s);
				goto nomem;
			}
			l->items = ni;
		}
		l->items[l->n++] = s;
	}
	*pp = p;
	if (l->n == 1) {
		s = l->items[0];
		l->items[0] = NULL;
		l->n = 0;
		qipc_obj_free(l);
		return s;
	}
	return collapse(l);
nomem:
	qipc_obj_free(l);
	return oom(ev);
}

/* Previous token ends a noun: a following '-' then means minus unless spaced like `x -1`. */
static bool prev_is_noun(const struct toks *ts)
{
	if (!ts->n)
		return false;
	switch (ts->t[ts->n - 1].kind) {
	case T_CONST: case T_NAME: case T_RP: case T_RB: case T_RC:
		return true;
	default:
		return false;
	}
}

static int tokenize(struct mq_eval *ev, const char *src, size_t len, struct toks *ts)
{
	const char *p = src, *end = src + len;
	int depth = 0;
	struct qipc_obj *v;

	while (p < end) {
		const char *st = p;
		bool space_before = p > src && (is_space(p[-1]) || p[-1] == '\n');

		if (is_space(*p)) {
			p++;
			continue;
		}
		if (*p == '\n') {
			p++;
			/* a new line at depth 0 starting in column 0 is a new statement */
			if (depth == 0 && p < end && !is_space(*p) && *p != '\n' && ts->n &&
			    ts->t[ts->n - 1].kind != T_SEMI &&
			    toks_push(ts, T_SEMI, st, 1, NULL) < 0)
				return -ENOMEM;
			continue;
		}
		/* comments: '/' at line start or after white space runs to end of line */
		if (*p == '/' && (p == src || space_before)) {
			while (p < end && *p != '\n')
				p++;
			continue;
		}
		if (*p == '"') {
			if (!(v = lex_string(ev, &p, end)))
				return -EINVAL;
			if (toks_push(ts, T_CONST, st, (size_t)(p - st), v) < 0)
				return -ENOMEM;
			continue;
		}
		if (*p == '`') {
			if (!(v = lex_symbol(ev, &p, end)))
				return -EINVAL;
			if (toks_push(ts, T_CONST, st, (size_t)(p - st), v) < 0)
				return -ENOMEM;
			continue;
		}
		if (number_start(p, end) && (*p != '-' || !prev_is_noun(ts) ||
					     (space_before && p + 1 < end && !is_space(p[1])))) {
			if (!(v = lex_number(ev, &p, end)))
				return -EINVAL;
			if (toks_push(ts, T_CONST, st, (size_t)(p - st), v) < 0)
				return -ENOMEM;
			continue;
		}
		if (is_alpha(*p) || (*p == '.' && p + 1 < end && is_alpha(p[1]))) {
			while (p < end && (is_alpha(*p) || is_digit(*p) || *p == '.' || *p == '_'))
				p++;
			if (is_unsupported_word(st, (size_t)(p - st))) {
				fail(ev, "nyi");
				return -EINVAL;
			}
			if (toks_push(ts, is_infix_kw(st, (size_t)(p - st)) ? T_VERB : T_NAME, st,
				      (size_t)(p - st), NULL) < 0)
				return -ENOMEM;
			continue;
		}
		switch (*p) {
		case '(': depth++; p++; if (toks_push(ts, T_LP, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		case ')': depth--; p++; if (toks_push(ts, T_RP, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		case '[': depth++; p++; if (toks_push(ts, T_LB, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		case ']': depth--; p++; if (toks_push(ts, T_RB, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		case '{': depth++; p++; if (toks_push(ts, T_LC, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		case '}': depth--; p++; if (toks_push(ts, T_RC, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		case ';': p++; if (toks_push(ts, T_SEMI, st, 1, NULL) < 0) return -ENOMEM;
			continue;
		default:
			break;
		}
		/* adverbs attached to the previous token are not supported */
		if ((*p == '\'' || *p == '/' || *p == '\\') && !space_before && prev_is_noun(ts)) {
			fail(ev, "nyi");
			return -EINVAL;
		}
		if ((*p == '/' || *p == '\\' || *p == '\'') && !space_before && ts->n &&
		    ts->t[ts->n - 1].kind == T_VERB) {
			fail(ev, "nyi");
			return -EINVAL;
		}
		if (*p == '\'') {	/* signal */
			p++;
			if (toks_push(ts, T_VERB, st, 1, NULL) < 0)
				return -ENOMEM;
			continue;
		}
		if (*p == '\\') {
			fail(ev, "nyi");
			return -EINVAL;
		}
		if (strchr(VERB_CHARS, *p)) {
			p++;
			/* two-character verbs: <= >= <> :: and the x: forms */
			if (p < end && ((st[0] == '<' && (*p == '=' || *p == '>')) ||
					(st[0] == '>' && *p == '=') || *p == ':'))
				p++;
			if (toks_push(ts, T_VERB, st, (size_t)(p - st), NULL) < 0)
				return -ENOMEM;
			continue;
		}
		fail(ev, "'%c", *p);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ AST */

enum node_kind {
	N_CONST = 0,
	N_NAME,
	N_VERB,		/* a verb in verb position */
	N_PAREN,	/* (expr) */
	N_LIST,		/* (a;b;...) */
	N_LAMBDA,	/* {...}: text holds the source */
	N_APPLY,	/* kids[0][kids[1];...]; a NULL kid is an elided argument */
	N_COND,		/* $[c;t;f] */
	N_SEQ,		/* juxtaposed items, evaluated right to left */
	N_BLOCK,	/* statements separated by ';' */
};

struct node {
	enum node_kind kind;
	struct qipc_obj *val;
	const char *text;
	size_t text_len;
	struct node **kids;
	size_t nkids;
};

static void node_free(struct node *nd)
{
	if (!nd)
		return;
	for (size_t i = 0; i < nd->nkids; i++)
		node_free(nd->kids[i]);
	free(nd->kids);
	qipc_obj_free(nd->val);
	free(nd);
}

static struct node *node_make(enum node_kind k)
{
	struct node *nd = calloc(1, sizeof(*nd));

	if (nd)
		nd->kind = k;
	return nd;
}

static int node_add(struct node *nd, struct node *kid)
{
	struct node **nk = realloc(nd->kids, (nd->nkids + 1) * sizeof(*nk));

	if (!nk)
		return -ENOMEM;
	nd->kids = nk;
	nd->kids[nd->nkids++] = kid;
	return 0;
}

struct parser {
	struct mq_eval *ev;
	struct toks *ts;
	size_t i;
	int depth;
};

static enum tok_kind peek(struct parser *ps)
{
	return ps->i < ps->ts->n ? ps->ts->t[ps->i].kind : T_END;
}

static struct node *parse_seq(struct parser *ps);

static struct node *perr(struct parser *ps, struct node *nd, const char *msg)
{
	node_free(nd);
	fail(ps->ev, "%s", msg);
	return NULL;
}

/* Expressions separated by ';' up to the closing token; empty ones become NULL kids. */
static struct node *parse_exprs(struct parser *ps, enum node_kind k, enum tok_kind close)
{
	struct node *nd = node_make(k), *e;

	if (!nd)
		return perr(ps, NULL, "wsfull");
	if (peek(ps) == close) {	/* f[] / () */
		ps->i++;
		return nd;
	}
	for (;;) {
		e = parse_seq(ps);
		if (!e && ps->ev->err[0])
			return perr(ps, nd, ps->ev->err);
		if (node_add(nd, e) < 0) {
			node_free(e);
			return perr(ps, nd, "wsfull");
		}
		if (peek(ps) == T_SEMI) {
			ps->i++;
			continue;
		}
		if (peek(ps) == close) {
			ps->i++;
			return nd;
		}
		return perr(ps, nd, close == T_RP ? ")" : "]");
	}
}

/* One item of a sequence; *is_verb tells whether it stands in verb position. */
static struct node *parse_item(struct parser *ps, bool *is_verb)
{
	struct tok *t = &ps->ts->t[ps->i];
	struct node *nd = NULL, *ap;

	*is_verb = false;
	if (++ps->depth > MQ_MAX_DEPTH)
		return perr(ps, NULL, "stack");
	switch (t->kind) {
	case T_CONST:
		nd = node_make(N_CONST);
		if (!nd)
			return perr(ps, NULL, "wsfull");
		nd->val = t->val;
		t->val = NULL;
		ps->i++;
		break;
	case T_NAME:
		nd = node_make(N_NAME);
		if (!nd)
			return perr(ps, NULL, "wsfull");
		nd->text = t->p;
		nd->text_len = t->len;
		ps->i++;
		break;
	case T_VERB:
		ps->i++;
		if (t->len == 1 && t->p[0] == '$' && peek(ps) == T_LB) {
			ps->i++;
			nd = parse_exprs(ps, N_COND, T_RB);
			if (!nd)
				return NULL;
			break;
		}
		nd = node_make(N_VERB);
		if (!nd)
			return perr(ps, NULL, "wsfull");
		nd->text = t->p;
		nd->text_len = t->len;
		if (peek(ps) != T_LB) {
			*is_verb = true;
			ps->depth--;
			return nd;
		}
		break;
	case T_LP: {
		struct node *l;

		ps->i++;
		l = parse_exprs(ps, N_LIST, T_RP);
		if (!l)
			return NULL;
		if (l->nkids == 1) {
			l->kind = N_PAREN;
			if (!l->kids[0])
				return perr(ps, l, "nyi");
		} else {
			for (size_t i = 0; i < l->nkids; i++)
				if (!l->kids[i])
					return perr(ps, l, "nyi");
		}
		nd = l;
		break;
	}
	case T_LC: {
		int d = 0;
		size_t j = ps->i;
		const char *st = t->p;

		for (; j < ps->ts->n; j++) {
			if (ps->ts->t[j].kind == T_LC)
				d++;
			else if (ps->ts->t[j].kind == T_RC && --d == 0)
				break;
		}
		if (j >= ps->ts->n)
			return perr(ps, NULL, "}");
		nd = node_make(N_LAMBDA);
		if (!nd)
			return perr(ps, NULL, "wsfull");
		nd->text = st;
		nd->text_len = (size_t)(ps->ts->t[j].p + 1 - st);
		ps->i = j + 1;
		break;
	}
	default:
		return perr(ps, NULL, t->kind == T_RC ? "}" : t->kind == T_RB ? "]" :
			    t->kind == T_RP ? ")" : "parse");
	}
	/* postfix brackets: f[x;y], x[i] */
	while (peek(ps) == T_LB) {
		ps->i++;
		ap = parse_exprs(ps, N_APPLY, T_RB);
		if (!ap) {
			node_free(nd);
			return NULL;
		}
		/* kids: fn first */
		if (node_add(ap, NULL) < 0) {
			node_free(ap);
			return perr(ps, nd, "wsfull");
		}
		memmove(ap->kids + 1, ap->kids, (ap->nkids - 1) * sizeof(*ap->kids));
		ap->kids[0] = nd;
		nd = ap;
	}
	ps->depth--;
	return nd;
}

/* Items up to ';', a closing bracket or the end. Returns NULL (no error) when empty. */
static struct node *parse_seq(struct parser *ps)
{
	struct node *seq = NULL, *it;
	bool is_verb;

	for (;;) {
		enum tok_kind k = peek(ps);

		if (k == T_END || k == T_SEMI || k == T_RP || k == T_RB || k == T_RC)
			break;
		it = parse_item(ps, &is_verb);
		if (!it) {
			node_free(seq);
			return NULL;
		}
		if (!seq && !(seq = node_make(N_SEQ))) {
			node_free(it);
			return perr(ps, NULL, "wsfull");
		}
		if (node_add(seq, it) < 0) {
			node_free(it);
			return perr(ps, seq, "wsfull");
		}
	}
	return seq;
}

/* Statements up to the end of the tokens. */
static struct node *parse_block(struct parser *ps)
{
	struct node *b = node_make(N_BLOCK), *s;

	if (!b)
		return perr(ps, NULL, "wsfull");
	for (;;) {
		s = parse_seq(ps);
		if (!s && ps->ev->err[0])
			return perr(ps, b, ps->ev->err);
		if (node_add(b, s) < 0) {
			node_free(s);
			return perr(ps, b, "wsfull");
		}
		if (peek(ps) == T_SEMI) {
			ps->i++;
			continue;
		}
		if (peek(ps) == T_END)
			return b;
		return perr(ps, b, peek(ps) == T_RC ? "}" : peek(ps) == T_RB ? "]" : ")");
	}
}

/* ------------------------------------------------------------------ evaluation */

struct mq_frame {
	char *names[16];
	struct qipc_obj *vals[16];
	int n;
	bool is_returning;
};

static struct qipc_obj *eval_node(struct mq_eval *ev, const struct node *nd);
static struct qipc_obj *apply(struct mq_eval *ev, const struct qipc_obj *f,
			      struct qipc_obj **args, int n);
static struct qipc_obj *apply_verb(struct mq_eval *ev, const char *op, struct qipc_obj **a,
				   int n);
static struct qipc_obj *lookup(struct mq_eval *ev, const char *name);

static struct qipc_obj **frame_slot(struct mq_frame *fr, const char *name)
{
	for (int i = 0; i < fr->n; i++)
		if (!strcmp(fr->names[i], name))
			return &fr->vals[i];
	return NULL;
}

static int frame_set(struct mq_frame *fr, const char *name, struct qipc_obj *val)
{
	struct qipc_obj **slot = frame_slot(fr, name);

	if (slot) {
		qipc_obj_free(*slot);
		*slot = val;
		return 0;
	}
	if (fr->n == 16) {
		qipc_obj_free(val);
		return -E2BIG;
	}
	fr->names[fr->n] = strdup(name);
	if (!fr->names[fr->n]) {
		qipc_obj_free(val);
		return -ENOMEM;
	}
	fr->vals[fr->n++] = val;
	return 0;
}

static void frame_clear(struct mq_frame *fr)
{
	for (int i = 0; i < fr->n; i++) {
		free(fr->names[i]);
		qipc_obj_free(fr->vals[i]);
	}
	fr->n = 0;
}

/* Evaluate items i.. of a sequence, right to left. */
static struct qipc_obj *eval_seq(struct mq_eval *ev, const struct node *seq, size_t i)
{
	const struct node *it, *nx;
	struct qipc_obj *r, *l, *res, *args[2];
	char op[32];

	if (i >= seq->nkids)
		return qipc_obj_identity();
	it = seq->kids[i];
	if (it->kind == N_VERB) {
		snprintf(op, sizeof(op), "%.*s", (int)it->text_len, it->text);
		if (i + 1 == seq->nkids) {	/* a verb on its own is a function value */
			if (!strcmp(op, "::"))
				return qipc_obj_identity();
			return mk_builtin(op);
		}
		r = eval_seq(ev, seq, i + 1);
		if (!r)
			return NULL;
		if (!strcmp(op, ":") && i == 0 && ev->frame) {	/* :x returns from a lambda */
			ev->frame->is_returning = true;
			return r;
		}
		if (!strcmp(op, "'")) {
			char *t = text_of(r);

			qipc_obj_free(r);
			if (!t)
				return fail(ev, "type");
			fail(ev, "%s", t);
			free(t);
			return NULL;
		}
		res = apply_verb(ev, op, &r, 1);
		qipc_obj_free(r);
		return res;
	}
	if (i + 1 == seq->nkids)
		return eval_node(ev, it);
	nx = seq->kids[i + 1];
	if (nx->kind == N_VERB) {
		snprintf(op, sizeof(op), "%.*s", (int)nx->text_len, nx->text);
		if (i + 2 == seq->nkids)
			return fail(ev, "nyi");	/* projection such as 1+ */
		r = eval_seq(ev, seq, i + 2);
		if (!r)
			return NULL;
		if (!strcmp(op, ":") || !strcmp(op, "::")) {
			char name[256];
			int rc;

			if (it->kind != N_NAME || it->text_len >= sizeof(name)) {
				qipc_obj_free(r);
				return fail(ev, "nyi");
			}
			snprintf(name, sizeof(name), "%.*s", (int)it->text_len, it->text);
			if (is_reserved_ns(name)) {
				qipc_obj_free(r);
				return fail(ev, "noupdate");
			}
			res = mq_obj_copy(r);
			if (!res) {
				qipc_obj_free(r);
				return oom(ev);
			}
			if (ev->frame && !strcmp(op, ":") && !strchr(name, '.'))
				rc = frame_set(ev->frame, name, res);
			else
				rc = global_set(name, res);
			if (rc < 0) {
				qipc_obj_free(r);
				return fail(ev, rc == -E2BIG ? "locals" : "wsfull");
			}
			return r;
		}
		l = eval_node(ev, it);
		if (!l) {
			qipc_obj_free(r);
			return NULL;
		}
		args[0] = l;
		args[1] = r;
		res = apply_verb(ev, op, args, 2);
		qipc_obj_free(l);
		qipc_obj_free(r);
		return res;
	}
	/* juxtaposition: f x */
	r = eval_seq(ev, seq, i + 1);
	if (!r)
		return NULL;
	l = eval_node(ev, it);
	if (!l) {
		qipc_obj_free(r);
		return NULL;
	}
	res = apply(ev, l, &r, 1);
	qipc_obj_free(l);
	qipc_obj_free(r);
	return res;
}

static struct qipc_obj *eval_block(struct mq_eval *ev, const struct node *b)
{
	struct qipc_obj *r = NULL;

	for (size_t i = 0; i < b->nkids; i++) {
		qipc_obj_free(r);
		r = b->kids[i] ? eval_node(ev, b->kids[i]) : qipc_obj_identity();
		if (!r)
			return ev->err[0] ? NULL : oom(ev);
		if (ev->frame && ev->frame->is_returning)
			break;
	}
	return r ? r : qipc_obj_identity();
}

static struct qipc_obj *eval_args_apply(struct mq_eval *ev, const struct node *nd)
{
	struct qipc_obj *args[MQ_MAX_ARGS], *f = NULL, *res = NULL;
	int n = (int)nd->nkids - 1;
	char op[32];
	bool is_trap;

	if (n > MQ_MAX_ARGS)
		return fail(ev, "rank");
	for (int i = 0; i < n; i++)
		if (!nd->kids[i + 1])
			return fail(ev, "nyi");	/* elided argument: projection */
	memset(args, 0, sizeof(args));
	/* q evaluates arguments right to left */
	for (int i = n - 1; i >= 0; i--)
		if (!(args[i] = eval_node(ev, nd->kids[i + 1])))
			goto out;
	if (n == 0) {	/* f[] is f[::] */
		if (!(args[0] = qipc_obj_identity())) {
			oom(ev);
			goto out;
		}
		n = 1;
	}
	if (nd->kids[0]->kind == N_VERB) {
		snprintf(op, sizeof(op), "%.*s", (int)nd->kids[0]->text_len, nd->kids[0]->text);
		is_trap = n == 3 && (!strcmp(op, "@") || !strcmp(op, "."));
		if (is_trap) {	/* @[f;x;handler] and .[f;args;handler] */
			res = apply_verb(ev, op, args, 2);
			if (!res && ev->err[0] && strcmp(ev->err, "wsfull")) {
				struct qipc_obj *msg = qipc_obj_str(ev->err, strlen(ev->err));

				ev->err[0] = 0;
				if (!msg) {
					oom(ev);
					goto out;
				}
				res = apply(ev, args[2], &msg, 1);
				qipc_obj_free(msg);
			}
			goto out;
		}
		res = apply_verb(ev, op, args, n);
		goto out;
	}
	f = eval_node(ev, nd->kids[0]);
	if (f)
		res = apply(ev, f, args, n);
out:
	qipc_obj_free(f);
	for (int i = 0; i < n; i++)
		qipc_obj_free(args[i]);
	return res;
}

static bool truthy(const struct qipc_obj *o)
{
	switch (o->type) {
	case -QT_BOOL: case -QT_BYTE: case -QT_CHAR: return o->a.b != 0;
	case -QT_SHORT: return o->a.h != 0;
	case -QT_INT: return o->a.i != 0;
	case -QT_LONG: return o->a.j != 0;
	case -QT_REAL: return o->a.e != 0;
	case -QT_FLOAT: return o->a.f != 0;
	default: return false;
	}
}

static struct qipc_obj *eval_cond(struct mq_eval *ev, const struct node *nd)
{
	size_t i;
	struct qipc_obj *c;
	bool t;

	for (i = 0; i < nd->nkids; i++)
		if (!nd->kids[i])
			return fail(ev, "nyi");
	for (i = 0; i + 1 < nd->nkids; i += 2) {
		if (!(c = eval_node(ev, nd->kids[i])))
			return NULL;
		if (!is_atom(c)) {
			qipc_obj_free(c);
			return fail(ev, "type");
		}
		t = truthy(c);
		qipc_obj_free(c);
		if (t)
			return eval_node(ev, nd->kids[i + 1]);
	}
	if (i < nd->nkids)
		return eval_node(ev, nd->kids[i]);
	return qipc_obj_identity();
}

static struct qipc_obj *eval_node(struct mq_eval *ev, const struct node *nd)
{
	struct qipc_obj *r;
	char name[256];

	if (++ev->depth > MQ_MAX_DEPTH) {
		ev->depth--;
		return fail(ev, "stack");
	}
	switch (nd->kind) {
	case N_CONST:
		r = mq_obj_copy(nd->val);
		if (!r)
			oom(ev);
		break;
	case N_NAME:
		if (nd->text_len >= sizeof(name)) {
			r = fail(ev, "limit");
			break;
		}
		snprintf(name, sizeof(name), "%.*s", (int)nd->text_len, nd->text);
		r = lookup(ev, name);
		break;
	case N_VERB:
		snprintf(name, sizeof(name), "%.*s", (int)nd->text_len, nd->text);
		r = mk_builtin(name);
		break;
	case N_PAREN:
		r = eval_node(ev, nd->kids[0]);
		break;
	case N_LIST: {
		struct qipc_obj *l = qipc_obj_list(nd->nkids);

		r = l;
		if (!l) {
			oom(ev);
			break;
		}
		for (size_t i = nd->nkids; i-- > 0;)
			if (!(l->items[i] = eval_node(ev, nd->kids[i]))) {
				qipc_obj_free(l);
				r = NULL;
				break;
			}
		r = collapse(r);
		break;
	}
	case N_LAMBDA:
		r = mk_lambda_ns("", nd->text, nd->text_len);
		if (!r)
			oom(ev);
		break;
	case N_APPLY:
		r = eval_args_apply(ev, nd);
		break;
	case N_COND:
		r = eval_cond(ev, nd);
		break;
	case N_SEQ:
		r = eval_seq(ev, nd, 0);
		break;
	case N_BLOCK:
		r = eval_block(ev, nd);
		break;
	default:
		r = fail(ev, "nyi");
	}
	ev->depth--;
	if (!r && !ev->err[0])
		oom(ev);
	return r;
}

/* Parse and evaluate source text; frame is the lambda's (NULL at top level). */
static struct qipc_obj *eval_source(struct mq_eval *ev, const char *src, size_t len)
{
	struct toks ts = { 0 };
	struct parser ps = { .ev = ev, .ts = &ts };
	struct node *b;
	struct qipc_obj *r = NULL;

	if (len >= 2 && src[0] == 'k' && src[1] == ')')
		return fail(ev, "nyi");		/* k is out of scope */
	if (len >= 1 && src[0] == '\\')
		return fail(ev, "nyi");		/* system commands */
	if (tokenize(ev, src, len, &ts) < 0) {
		toks_free(&ts);
		return ev->err[0] ? NULL : oom(ev);
	}
	b = parse_block(&ps);
	if (b)
		r = eval_block(ev, b);
	node_free(b);
	toks_free(&ts);
	return r;
}

struct qipc_obj *mq_eval_text(struct mq_eval *ev, const char *text, size_t len)
{
	struct mq_frame *saved = ev->frame;
	struct qipc_obj *r;

	ev->frame = NULL;
	r = eval_source(ev, text, len);
	ev->frame = saved;
	return r;
}

/* ------------------------------------------------------------------ lambdas */

static struct qipc_obj *apply_lambda(struct mq_eval *ev, const struct qipc_obj *lam,
				     struct qipc_obj **args, int n)
{
	size_t len;
	const char *src = lambda_src(lam, &len);
	struct toks ts = { 0 };
	struct parser ps = { .ev = ev, .ts = &ts };
	struct mq_frame fr = { .n = 0 };
	struct mq_frame *saved;
	char params[8][64];
	int np = 0, rank;
	size_t body;
	struct node *b = NULL;
	struct qipc_obj *r = NULL;

	if (len >= 2 && src[0] == 'k' && src[1] == ')')
		return fail(ev, "nyi");
	if (len < 2 || src[0] != '{' || src[len - 1] != '}')
		return fail(ev, "nyi");
	if (tokenize(ev, src + 1, len - 2, &ts) < 0) {
		toks_free(&ts);
		return ev->err[0] ? NULL : oom(ev);
	}
	body = 0;
	if (ts.n && ts.t[0].kind == T_LB) {	/* explicit parameters {[a;b] ...} */
		size_t j = 1;

		for (; j < ts.n && ts.t[j].kind != T_RB; j++) {
			if (ts.t[j].kind == T_SEMI)
				continue;
			if (ts.t[j].kind != T_NAME || np == 8 || ts.t[j].len >= 64) {
				toks_free(&ts);
				return fail(ev, "params");
			}
			snprintf(params[np++], 64, "%.*s", (int)ts.t[j].len, ts.t[j].p);
		}
		if (j >= ts.n) {
			toks_free(&ts);
			return fail(ev, "]");
		}
		body = j + 1;
		rank = np ? np : 1;
	} else {	/* implicit x, y, z, not counting nested lambdas */
		int d = 0, hi = 0;

		for (size_t j = 0; j < ts.n; j++) {
			if (ts.t[j].kind == T_LC)
				d++;
			else if (ts.t[j].kind == T_RC)
				d--;
			else if (d == 0 && ts.t[j].kind == T_NAME && ts.t[j].len == 1) {
				char c = ts.t[j].p[0];

				if (c == 'x' && hi < 1)
					hi = 1;
				if (c == 'y' && hi < 2)
					hi = 2;
				if (c == 'z' && hi < 3)
					hi = 3;
			}
		}
		rank = hi ? hi : 1;
		for (np = 0; np < hi; np++)
			snprintf(params[np], 64, "%c", "xyz"[np]);
	}
	if (n > rank) {
		toks_free(&ts);
		return fail(ev, "rank");
	}
	if (n < rank) {
		toks_free(&ts);
		return fail(ev, "nyi");		/* projection */
	}
	for (int i = 0; i < np && i < n; i++) {
		struct qipc_obj *c = mq_obj_copy(args[i]);

		if (!c || frame_set(&fr, params[i], c) < 0) {
			frame_clear(&fr);
			toks_free(&ts);
			return oom(ev);
		}
	}
	ps.i = body;
	b = parse_block(&ps);
	if (b) {
		saved = ev->frame;
		ev->frame = &fr;
		r = eval_block(ev, b);
		ev->frame = saved;
	}
	node_free(b);
	frame_clear(&fr);
	toks_free(&ts);
	return r;
}

/* ------------------------------------------------------------------ names */

/* Names that have children name.child in the globals or the builtins. */
static bool is_namespace(const char *name)
{
	size_t nl = strlen(name);

	if (!strcmp(name, ".q") || !strcmp(name, ".mock"))
		return true;
	for (size_t i = 0; i < g_nvars; i++)
		if (!strncmp(g_vars[i].name, name, nl) && g_vars[i].name[nl] == '.')
			return true;
	return false;
}

static const struct builtin BUILTINS[];

/* Symbol vector of a namespace's keys, `` ` `` first, as q's `key `.ns`. */
static struct qipc_obj *namespace_keys(const char *ns)
{
	size_t nl = strlen(ns), n = 1;
	char **names = calloc(g_nvars + 64, sizeof(char *));
	struct qipc_obj *v = NULL;

	if (!names)
		return NULL;
	names[0] = strdup("");
	if (!names[0])
		goto out;
	if (!strcmp(ns, ".q") || !strcmp(ns, ".mock")) {
		for (int i = 0; BUILTINS[i].name && n < 63; i++) {
			const char *bn = BUILTINS[i].name;

			if (!strcmp(ns, ".q") && BUILTINS[i].is_q)
				names[n++] = strdup(bn);
			else if (!strcmp(ns, ".mock") && !strncmp(bn, ".mock.", 6))
				names[n++] = strdup(bn + 6);
			if (!names[n - 1])
				goto out;
		}
	}
	for (size_t i = 0; i < g_nvars; i++) {
		const char *gn = g_vars[i].name, *child, *dot;
		size_t cl;
		bool dup = false;

		if (strncmp(gn, ns, nl) || gn[nl] != '.')
			continue;
		child = gn + nl + 1;
		dot = strchr(child, '.');
		cl = dot ? (size_t)(dot - child) : strlen(child);
		for (size_t k = 1; k < n; k++)
			if (strlen(names[k]) == cl && !memcmp(names[k], child, cl))
				dup = true;
		if (dup)
			continue;
		if (!(names[n++] = xstrndup(child, cl)))
			goto out;
	}
	v = qipc_obj_vec(QT_SYMBOL, n);
	for (size_t i = 0; v && i < n; i++)
		if (qipc_obj_set_sym(v, i, names[i]) < 0) {
			qipc_obj_free(v);
			v = NULL;
		}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return v;
}

/* Namespace as q's context dictionary: (`` ` ``, children) ! (::, values). */
static struct qipc_obj *namespace_dict(struct mq_eval *ev, const char *ns)
{
	struct qipc_obj *keys = namespace_keys(ns), *vals;
	char full[512];

	if (!keys)
		return oom(ev);
	vals = qipc_obj_list(keys->n);
	if (!vals) {
		qipc_obj_free(keys);
		return oom(ev);
	}
	vals->items[0] = qipc_obj_identity();
	for (uint64_t i = 1; i < keys->n; i++) {
		snprintf(full, sizeof(full), "%s.%s", ns, keys->syms[i]);
		if (!strcmp(ns, ".q"))
			snprintf(full, sizeof(full), "%s", keys->syms[i]);
		vals->items[i] = lookup(ev, full);
		if (!vals->items[i]) {
			qipc_obj_free(keys);
			qipc_obj_free(vals);
			return NULL;
		}
	}
	if (!vals->items[0]) {
		qipc_obj_free(keys);
		qipc_obj_free(vals);
		return oom(ev);
	}
	return qipc_obj_dict(keys, vals);
}

/* Value of a name: locals, globals, builtins, namespaces; else the q error `name`. */
static struct qipc_obj *lookup(struct mq_eval *ev, const char *name)
{
	struct qipc_obj **slot;
	struct mq_global *g;
	struct qipc_obj *r;

	if (ev->frame && (slot = frame_slot(ev->frame, name)))
		return chk(ev, mq_obj_copy(*slot));
	if ((g = global_find(name))) {
		r = mq_obj_copy(g->val);
		return r ? r : oom(ev);
	}
	if (builtin_find(name))
		return chk(ev, mk_builtin(name));
	if (!strncmp(name, ".q.", 3) && builtin_find(name + 3))
		return chk(ev, mk_builtin(name + 3));
	if (is_namespace(name)) {
		if (++ev->depth > MQ_MAX_DEPTH) {
			ev->depth--;
			return fail(ev, "stack");
		}
		r = namespace_dict(ev, name);
		ev->depth--;
		return r;
	}
	return fail(ev, "%s", name);
}

/* ------------------------------------------------------------------ application */

static struct qipc_obj *index_data(struct mq_eval *ev, const struct qipc_obj *d,
				   const struct qipc_obj *ix)
{
	if (d->type == QT_DICT || d->type == QT_SORTED_DICT) {
		const struct qipc_obj *k = d->items[0];

		for (uint64_t i = 0; i < obj_count(k); i++) {
			struct qipc_obj *ki = item_at(k, i);
			bool eq = ki && qipc_obj_equal(ki, ix);

			qipc_obj_free(ki);
			if (eq && i < obj_count(d->items[1]) && d->items[1]->type >= 0 &&
			    d->items[1]->type <= 19)
				return chk(ev, item_at(d->items[1], i));
			if (eq)
				return fail(ev, "type");
		}
		return fail(ev, "nyi");		/* typed null of a missing key */
	}
	if (d->type >= 0 && d->type <= 19 && (ix->type == -QT_LONG || ix->type == -QT_INT)) {
		int64_t i = ix->type == -QT_LONG ? ix->a.j : ix->a.i;

		if (i < 0 || (uint64_t)i >= d->n)
			return fail(ev, "index");
		return chk(ev, item_at(d, (uint64_t)i));
	}
	if (d->type >= 0 && d->type <= 19 && ix->type == QT_LONG) {
		struct qipc_obj *l = qipc_obj_list(ix->n);

		if (!l)
			return oom(ev);
		for (uint64_t i = 0; i < ix->n; i++) {
			int64_t j = ((const int64_t *)ix->data)[i];

			if (j < 0 || (uint64_t)j >= d->n) {
				qipc_obj_free(l);
				return fail(ev, "index");
			}
			if (!(l->items[i] = item_at(d, (uint64_t)j))) {
				qipc_obj_free(l);
				return oom(ev);
			}
		}
		return collapse(l);
	}
	return fail(ev, "type");
}

/* A verb's own spelling: one or two verb characters such as + <= :: or ' (signal). */
static bool is_verb_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 2)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr(VERB_CHARS, name[i]) && name[i] != '\'')
			return false;
	return true;
}

static struct qipc_obj *apply_builtin(struct mq_eval *ev, const char *name,
				      struct qipc_obj **args, int n)
{
	const struct builtin *b;

	if (is_verb_name(name))
		return apply_verb(ev, name, args, n);
	b = builtin_find(name);
	if (!b)
		return fail(ev, "%s", name);
	if (n > b->max_args)
		return fail(ev, "rank");
	if (n < b->min_args)
		return fail(ev, "nyi");		/* projection */
	return b->fn(ev, args, n);
}

static const char PRIM_CODES[] = ":+-*%&|^=<>$,#_~!?@.";

static struct qipc_obj *apply(struct mq_eval *ev, const struct qipc_obj *f,
			      struct qipc_obj **args, int n)
{
	struct qipc_obj *r, *g;
	char op[3];

	if (++ev->depth > MQ_MAX_DEPTH) {
		ev->depth--;
		return fail(ev, "stack");
	}
	switch (f->type) {
	case QT_LAMBDA:
		if (is_builtin(f)) {
			char name[64];

			snprintf(name, sizeof(name), "%.*s", (int)f->items[0]->n,
				 (const char *)f->items[0]->data);
			r = apply_builtin(ev, name, args, n);
		} else {
			r = apply_lambda(ev, f, args, n);
		}
		break;
	case QT_UNARY:
	case QT_BINARY:
		if (f->a.x >= sizeof(PRIM_CODES) - 1) {
			r = fail(ev, "nyi");
			break;
		}
		if (f->type == QT_UNARY && f->a.x == 0) {	/* :: */
			r = n == 1 ? mq_obj_copy(args[0]) : fail(ev, "rank");
			break;
		}
		op[0] = PRIM_CODES[f->a.x];
		op[1] = 0;
		if ((f->type == QT_UNARY && n != 1) || (f->type == QT_BINARY && n != 2)) {
			r = fail(ev, n > 2 ? "rank" : "nyi");
			break;
		}
		r = apply_verb(ev, op, args, n);
		break;
	case -QT_SYMBOL:
		g = lookup(ev, f->s ? f->s : "");
		r = g ? apply(ev, g, args, n) : NULL;
		qipc_obj_free(g);
		break;
	default:
		if (f->type >= QT_PROJECTION && f->type <= QT_EACH_LEFT) {
			r = fail(ev, "nyi");
			break;
		}
		if (n != 1) {
			r = fail(ev, "rank");
			break;
		}
		r = index_data(ev, f, args[0]);
	}
	ev->depth--;
	if (!r && !ev->err[0])
		oom(ev);
	return r;
}

/* ------------------------------------------------------------------ arithmetic */

struct num {
	bool is_f;
	bool is_null;
	int64_t j;
	double f;
};

static bool is_num_type(int t)
{
	t = t < 0 ? -t : t;
	return t == QT_BOOL || t == QT_BYTE || t == QT_SHORT || t == QT_INT || t == QT_LONG ||
	       t == QT_REAL || t == QT_FLOAT;
}

static struct num num_at(const struct qipc_obj *o, uint64_t i)
{
	struct num r = { 0 };
	const void *p = is_atom(o) ? (const void *)&o->a :
			(const uint8_t *)o->data + i * qipc_type_width(o->type);
	int t = o->type < 0 ? -o->type : o->type;

	switch (t) {
	case QT_BOOL: case QT_BYTE: r.j = *(const uint8_t *)p; break;
	case QT_SHORT: r.j = *(const int16_t *)p; r.is_null = r.j == QIPC_NULL_SHORT; break;
	case QT_INT: r.j = *(const int32_t *)p; r.is_null = r.j == QIPC_NULL_INT; break;
	case QT_LONG: r.j = *(const int64_t *)p; r.is_null = r.j == QIPC_NULL_LONG; break;
	case QT_REAL: r.is_f = true; r.f = *(const float *)p; break;
	case QT_FLOAT: r.is_f = true; r.f = *(const double *)p; break;
	default: break;
	}
	if (r.is_f)
		r.is_null = isnan(r.f);
	else
		r.f = (double)r.j;
	return r;
}

static int num_class(int t)
{
	t = t < 0 ? -t : t;
	if (t == QT_REAL || t == QT_FLOAT)
		return QT_FLOAT;
	if (t == QT_LONG)
		return QT_LONG;
	return QT_INT;
}

static void put_num(struct qipc_obj *o, uint64_t i, int rt, struct num v)
{
	void *p = is_atom(o) ? (void *)&o->a : (uint8_t *)o->data + i * qipc_type_width(rt);

	switch (rt) {
	case QT_BOOL: *(uint8_t *)p = v.j != 0; break;
	case QT_INT: *(int32_t *)p = v.is_null ? QIPC_NULL_INT : (int32_t)v.j; break;
	case QT_LONG: *(int64_t *)p = v.is_null ? QIPC_NULL_LONG : v.j; break;
	case QT_FLOAT: *(double *)p = v.is_null && !v.is_f ? NAN : v.f; break;
	default: break;
	}
}

static bool is_cmp(const char *op)
{
	return !strcmp(op, "=") || !strcmp(op, "<") || !strcmp(op, ">") || !strcmp(op, "<=") ||
	       !strcmp(op, ">=") || !strcmp(op, "<>");
}

static struct num num_op(const char *op, int rt, struct num a, struct num b)
{
	struct num r = { 0 };
	bool use_f = rt == QT_FLOAT || (is_cmp(op) && (a.is_f || b.is_f));
	int c;

	if (is_cmp(op)) {
		if (use_f)
			c = a.f < b.f ? -1 : a.f > b.f ? 1 : 0;
		else
			c = a.j < b.j ? -1 : a.j > b.j ? 1 : 0;
		switch (op[0]) {
		case '=': r.j = c == 0; break;
		case '<': r.j = op[1] == '=' ? c <= 0 : op[1] == '>' ? c != 0 : c < 0; break;
		case '>': r.j = op[1] == '=' ? c >= 0 : c > 0; break;
		default: break;
		}
		return r;
	}
	if (rt == QT_FLOAT) {
		r.is_f = true;
		switch (op[0]) {
		case '+': r.f = a.f + b.f; break;
		case '-': r.f = a.f - b.f; break;
		case '*': r.f = a.f * b.f; break;
		case '%': r.f = a.f / b.f; break;
		case '&': r.f = a.f < b.f ? a.f : b.f; break;
		case '|': r.f = a.f > b.f ? a.f : b.f; break;
		default: break;
		}
		if (!strcmp(op, "mod"))
			r.f = a.f - b.f * floor(a.f / b.f);
		if (!strcmp(op, "div"))
			r.f = floor(a.f / b.f);
		return r;
	}
	if (a.is_null || b.is_null) {
		r.is_null = true;
		return r;
	}
	switch (op[0]) {	/* wrap like q: unsigned arithmetic avoids UB */
	case '+': r.j = (int64_t)((uint64_t)a.j + (uint64_t)b.j); break;
	case '-': r.j = (int64_t)((uint64_t)a.j - (uint64_t)b.j); break;
	case '*': r.j = (int64_t)((uint64_t)a.j * (uint64_t)b.j); break;
	case '&': r.j = a.j < b.j ? a.j : b.j; break;
	case '|': r.j = a.j > b.j ? a.j : b.j; break;
	default: break;
	}
	if (!strcmp(op, "mod") || !strcmp(op, "div")) {
		int64_t q;

		if (b.j == 0 || (b.j == -1 && a.j == INT64_MIN)) {
			r.is_null = true;
			return r;
		}
		q = a.j / b.j;
		if ((a.j % b.j != 0) && ((a.j < 0) != (b.j < 0)))
			q--;
		r.j = op[0] == 'd' ? q : (int64_t)((uint64_t)a.j - (uint64_t)q * (uint64_t)b.j);
	}
	return r;
}

static struct qipc_obj *arith(struct mq_eval *ev, const char *op, const struct qipc_obj *a,
			      const struct qipc_obj *b)
{
	struct qipc_obj *r;
	uint64_t n;
	int rt;

	/* general lists: item by item (an atom pairs with every item) */
	if (a->type == QT_LIST || b->type == QT_LIST) {
		bool va = a->type >= 0 && a->type <= 19, vb = b->type >= 0 && b->type <= 19;

		if (va && vb && a->n != b->n)
			return fail(ev, "length");
		if (!(a->type >= -19 && a->type <= 19) || !(b->type >= -19 && b->type <= 19))
			return fail(ev, "type");
		n = va ? a->n : b->n;
		r = qipc_obj_list(n);
		if (!r)
			return oom(ev);
		for (uint64_t i = 0; i < n; i++) {
			struct qipc_obj *x = va ? item_at(a, i) : mq_obj_copy(a);
			struct qipc_obj *y = vb ? item_at(b, i) : mq_obj_copy(b);

			r->items[i] = x && y ? arith(ev, op, x, y) : oom(ev);
			qipc_obj_free(x);
			qipc_obj_free(y);
			if (!r->items[i]) {
				qipc_obj_free(r);
				return NULL;
			}
		}
		return collapse(r);
	}
	if (!is_num_type(a->type) || !is_num_type(b->type)) {
		if ((!strcmp(op, "=") || !strcmp(op, "<>")) && is_atom(a) && a->type == b->type) {
			bool eq = qipc_obj_equal(a, b);

			return chk(ev, qipc_obj_bool(op[0] == '=' ? eq : !eq));
		}
		return fail(ev, "type");
	}
	if (!is_atom(a) && !is_atom(b) && a->n != b->n)
		return fail(ev, "length");
	if (is_cmp(op))
		rt = QT_BOOL;
	else if (!strcmp(op, "%"))
		rt = QT_FLOAT;
	else if (num_class(a->type) == QT_FLOAT || num_class(b->type) == QT_FLOAT)
		rt = QT_FLOAT;
	else if (num_class(a->type) == QT_LONG || num_class(b->type) == QT_LONG)
		rt = QT_LONG;
	else
		rt = QT_INT;
	if (is_atom(a) && is_atom(b)) {
		r = qipc_obj_atom((int8_t)-rt);
		n = 1;
	} else {
		n = is_atom(a) ? b->n : a->n;
		r = qipc_obj_vec((int8_t)rt, n);
	}
	if (!r)
		return oom(ev);
	for (uint64_t i = 0; i < n; i++) {
		struct num x = num_at(a, is_atom(a) ? 0 : i), y = num_at(b, is_atom(b) ? 0 : i);

		if (rt == QT_FLOAT) {
			x.f = x.is_null && !x.is_f ? NAN : x.f;
			y.f = y.is_null && !y.is_f ? NAN : y.f;
		}
		put_num(r, i, rt, num_op(op, rt, x, y));
	}
	return r;
}

/* Monadic numeric map: neg, not, null. */
static struct qipc_obj *num_map(struct mq_eval *ev, const char *what, const struct qipc_obj *x)
{
	struct qipc_obj *r;
	int rt;
	uint64_t n = is_atom(x) ? 1 : x->n;

	if (x->type == QT_LIST) {
		r = qipc_obj_list(x->n);
		if (!r)
			return oom(ev);
		for (uint64_t i = 0; i < x->n; i++)
			if (!(r->items[i] = num_map(ev, what, x->items[i]))) {
				qipc_obj_free(r);
				return NULL;
			}
		return collapse(r);
	}
	if (!strcmp(what, "null") && (x->type == -QT_SYMBOL || x->type == QT_SYMBOL)) {
		r = x->type < 0 ? qipc_obj_bool(!x->s || !x->s[0]) : qipc_obj_vec(QT_BOOL, x->n);
		if (r && x->type > 0)
			for (uint64_t i = 0; i < x->n; i++)
				((uint8_t *)r->data)[i] = !x->syms[i] || !x->syms[i][0];
		return r ? r : oom(ev);
	}
	if (!is_num_type(x->type))
		return fail(ev, "type");
	rt = strcmp(what, "neg") ? QT_BOOL : num_class(x->type);
	r = is_atom(x) ? qipc_obj_atom((int8_t)-rt) : qipc_obj_vec((int8_t)rt, n);
	if (!r)
		return oom(ev);
	for (uint64_t i = 0; i < n; i++) {
		struct num v = num_at(x, i), o = { 0 };

		if (!strcmp(what, "neg")) {
			o = v;
			if (v.is_f)
				o.f = -v.f;
			else if (!v.is_null)
				o.j = (int64_t)(0 - (uint64_t)v.j);
		} else if (!strcmp(what, "not")) {
			o.j = v.is_f ? v.f == 0 : v.j == 0;
		} else {
			o.j = v.is_null;
		}
		put_num(r, i, rt, o);
	}
	return r;
}

/* sum, max, min, avg over a numeric vector. */
static struct qipc_obj *num_fold(struct mq_eval *ev, const char *what, const struct qipc_obj *x)
{
	int rt;
	struct num acc = { 0 };
	struct qipc_obj *r;
	uint64_t cnt = 0;

	if (!is_num_type(x->type))
		return fail(ev, "type");
	if (is_atom(x))
		return chk(ev, mq_obj_copy(x));
	rt = !strcmp(what, "avg") ? QT_FLOAT : num_class(x->type);
	if (rt == QT_INT && !strcmp(what, "sum") && x->type != QT_INT)
		rt = QT_INT;
	acc.is_f = rt == QT_FLOAT;
	if (strcmp(what, "sum") && strcmp(what, "avg"))
		acc.is_null = true;	/* max/min of nothing is null */
	for (uint64_t i = 0; i < x->n; i++) {
		struct num v = num_at(x, i);

		if (v.is_null)
			continue;
		cnt++;
		if (acc.is_null) {
			acc = v;
			acc.is_f = rt == QT_FLOAT;
			continue;
		}
		if (!strcmp(what, "max"))
			acc = v.f > acc.f ? v : acc;
		else if (!strcmp(what, "min"))
			acc = v.f < acc.f ? v : acc;
		else {
			acc.f += v.f;
			acc.j = (int64_t)((uint64_t)acc.j + (uint64_t)v.j);
		}
		acc.is_f = rt == QT_FLOAT;
	}
	if (!strcmp(what, "avg"))
		acc.f = cnt ? acc.f / (double)cnt : NAN;
	r = qipc_obj_atom((int8_t)-rt);
	if (!r)
		return oom(ev);
	put_num(r, 0, rt, acc);
	return r;
}

/* ------------------------------------------------------------------ list verbs */

static struct qipc_obj *join(struct mq_eval *ev, const struct qipc_obj *a,
			     const struct qipc_obj *b)
{
	int ta = a->type < 0 ? -a->type : a->type, tb = b->type < 0 ? -b->type : b->type;
	uint64_t na = is_atom(a) ? 1 : a->n, nb = is_atom(b) ? 1 : b->n;
	struct qipc_obj *r;

	if (!(a->type >= -19 && a->type <= 19) || !(b->type >= -19 && b->type <= 19))
		return fail(ev, "nyi");
	if (ta == tb && ta != 0 && ta != QT_SYMBOL) {
		size_t w = qipc_type_width(ta);

		r = qipc_obj_vec((int8_t)ta, na + nb);
		if (!r)
			return oom(ev);
		memcpy(r->data, is_atom(a) ? (const void *)&a->a : a->data, na * w);
		memcpy((uint8_t *)r->data + na * w, is_atom(b) ? (const void *)&b->a : b->data,
		       nb * w);
		return r;
	}
	r = qipc_obj_list(na + nb);
	if (!r)
		return oom(ev);
	for (uint64_t i = 0; i < na + nb; i++) {
		r->items[i] = i < na ? item_at(a, i) : item_at(b, i - na);
		if (!r->items[i]) {
			qipc_obj_free(r);
			return oom(ev);
		}
	}
	return collapse(r);
}

static struct qipc_obj *take(struct mq_eval *ev, const struct qipc_obj *a,
			     const struct qipc_obj *b)
{
	int64_t k;
	uint64_t n, m, start;
	struct qipc_obj *r;

	if (a->type != -QT_LONG && a->type != -QT_INT)
		return fail(ev, "nyi");
	if (!(b->type >= -19 && b->type <= 19))
		return fail(ev, "type");
	k = a->type == -QT_LONG ? a->a.j : a->a.i;
	n = k < 0 ? (uint64_t)0 - (uint64_t)k : (uint64_t)k;
	m = is_atom(b) ? 1 : b->n;
	if (n > (1u << 26))
		return fail(ev, "limit");
	if (m == 0)
		return fail(ev, "length");
	start = k < 0 ? (m - n % m) % m : 0;
	if ((is_simple_vec(b) || is_atom(b)) && b->type != QT_SYMBOL && b->type != -QT_SYMBOL) {
		/* simple data: copy items directly, no per-item objects */
		int t = b->type < 0 ? -b->type : b->type;
		size_t w = qipc_type_width(t);
		const uint8_t *src = is_atom(b) ? (const uint8_t *)&b->a : b->data;

		r = qipc_obj_vec((int8_t)t, n);
		if (!r)
			return oom(ev);
		for (uint64_t i = 0; i < n; i++)
			memcpy((uint8_t *)r->data + i * w, src + ((start + i) % m) * w, w);
		return r;
	}
	if (n > (1u << 20))
		return fail(ev, "limit");
	r = qipc_obj_list(n);
	if (!r)
		return oom(ev);
	for (uint64_t i = 0; i < n; i++)
		if (!(r->items[i] = item_at(b, (start + i) % m))) {
			qipc_obj_free(r);
			return oom(ev);
		}
	if (n == 0 && is_simple_vec(b)) {
		qipc_obj_free(r);
		return chk(ev, qipc_obj_vec(b->type, 0));
	}
	return collapse(r);
}

static struct qipc_obj *til(struct mq_eval *ev, const struct qipc_obj *x)
{
	int64_t n;
	struct qipc_obj *r;

	if (x->type != -QT_LONG && x->type != -QT_INT && x->type != -QT_SHORT)
		return fail(ev, "type");
	n = x->type == -QT_LONG ? x->a.j : x->type == -QT_INT ? x->a.i : x->a.h;
	if (n < 0)
		return fail(ev, "domain");
	if (n > (1 << 26))
		return fail(ev, "limit");
	r = qipc_obj_vec(QT_LONG, (uint64_t)n);
	if (!r)
		return oom(ev);
	for (int64_t i = 0; i < n; i++)
		((int64_t *)r->data)[i] = i;
	return r;
}

static struct qipc_obj *enlist_args(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	struct qipc_obj *l = qipc_obj_list((uint64_t)n);

	if (!l)
		return oom(ev);
	for (int i = 0; i < n; i++)
		if (!(l->items[i] = mq_obj_copy(a[i]))) {
			qipc_obj_free(l);
			return oom(ev);
		}
	return collapse(l);
}

static struct qipc_obj *reverse(struct mq_eval *ev, const struct qipc_obj *x)
{
	struct qipc_obj *l;

	if (!(x->type >= 0 && x->type <= 19))
		return chk(ev, mq_obj_copy(x));
	l = qipc_obj_list(x->n);
	if (!l)
		return oom(ev);
	for (uint64_t i = 0; i < x->n; i++)
		if (!(l->items[i] = item_at(x, x->n - 1 - i))) {
			qipc_obj_free(l);
			return oom(ev);
		}
	if (x->n == 0) {
		qipc_obj_free(l);
		return chk(ev, mq_obj_copy(x));
	}
	return collapse(l);
}

static struct qipc_obj *first_last(struct mq_eval *ev, const struct qipc_obj *x, bool is_last)
{
	if (x->type == QT_DICT)
		return first_last(ev, x->items[1], is_last);
	if (!(x->type >= 0 && x->type <= 19))
		return chk(ev, mq_obj_copy(x));
	if (x->n == 0)
		return chk(ev, qipc_obj_identity());
	return chk(ev, item_at(x, is_last ? x->n - 1 : 0));
}

static struct qipc_obj *to_string(struct mq_eval *ev, const struct qipc_obj *x)
{
	char buf[64];
	int len;

	if (x->type >= 0 && x->type <= 19) {
		struct qipc_obj *l = qipc_obj_list(x->n);

		if (!l)
			return oom(ev);
		for (uint64_t i = 0; i < x->n; i++) {
			struct qipc_obj *it = item_at(x, i);

			l->items[i] = it ? to_string(ev, it) : oom(ev);
			qipc_obj_free(it);
			if (!l->items[i]) {
				qipc_obj_free(l);
				return NULL;
			}
		}
		return l;
	}
	switch (x->type) {
	case -QT_SYMBOL:
		return chk(ev, qipc_obj_str(x->s ? x->s : "", x->s ? strlen(x->s) : 0));
	case -QT_CHAR:
		return chk(ev, qipc_obj_str((const char *)&x->a.b, 1));
	case -QT_BOOL:
		len = snprintf(buf, sizeof(buf), "%d", x->a.b);
		break;
	case -QT_SHORT: case -QT_INT: case -QT_LONG: {
		struct num v = num_at(x, 0);

		len = v.is_null ? 0 : snprintf(buf, sizeof(buf), "%lld", (long long)v.j);
		break;
	}
	case -QT_REAL: case -QT_FLOAT: {
		struct num v = num_at(x, 0);

		len = v.is_null ? 0 : snprintf(buf, sizeof(buf), "%.7g", v.f);
		break;
	}
	default:
		return fail(ev, "nyi");
	}
	return chk(ev, qipc_obj_str(buf, (size_t)len));
}

/* value / get */
static struct qipc_obj *value_of(struct mq_eval *ev, const struct qipc_obj *x)
{
	char *t;
	struct qipc_obj *r;

	switch (x->type) {
	case -QT_SYMBOL:
		return lookup(ev, x->s ? x->s : "");
	case QT_CHAR:
		return mq_eval_text(ev, x->data ? x->data : "", (size_t)x->n);
	case -QT_CHAR:
		t = text_of(x);
		if (!t)
			return oom(ev);
		r = mq_eval_text(ev, t, 1);
		free(t);
		return r;
	case QT_DICT:
	case QT_SORTED_DICT:
		return chk(ev, mq_obj_copy(x->items[1]));
	case QT_LIST:
		if (x->n == 0)
			return chk(ev, mq_obj_copy(x));
		return mq_eval_msg(ev, x);
	default:
		if (x->type == QT_LAMBDA)
			return fail(ev, "nyi");
		return chk(ev, mq_obj_copy(x));
	}
}

static struct qipc_obj *key_of(struct mq_eval *ev, const struct qipc_obj *x)
{
	struct qipc_obj *r;

	switch (x->type) {
	case -QT_SYMBOL:
		if (x->s && is_namespace(x->s)) {
			r = namespace_keys(x->s);
			return r ? r : oom(ev);
		}
		return fail(ev, "%s", x->s ? x->s : "");
	case QT_DICT:
	case QT_SORTED_DICT:
		return chk(ev, mq_obj_copy(x->items[0]));
	case -QT_LONG: case -QT_INT: case -QT_SHORT:
		return til(ev, x);
	default:
		return fail(ev, "type");
	}
}

static struct qipc_obj *set_global(struct mq_eval *ev, const struct qipc_obj *name,
				   const struct qipc_obj *val)
{
	struct qipc_obj *c;

	if (name->type != -QT_SYMBOL || !name->s || !name->s[0])
		return fail(ev, "type");
	if (is_reserved_ns(name->s))
		return fail(ev, "noupdate");
	c = mq_obj_copy(val);
	if (!c || global_set(name->s, c) < 0)
		return oom(ev);
	return chk(ev, mq_obj_copy(name));
}

/* Every verb in verb position, monadic (n == 1) or dyadic (n == 2). */
static struct qipc_obj *apply_verb(struct mq_eval *ev, const char *op, struct qipc_obj **a,
				   int n)
{
	const struct builtin *b;

	if (n < 1)
		return fail(ev, "rank");
	if (is_alpha(op[0])) {	/* infix keyword such as set */
		b = builtin_find(op);
		if (!b)
			return fail(ev, "nyi");
		if (n > b->max_args)
			return fail(ev, "rank");
		if (n < b->min_args)
			return fail(ev, "nyi");
		return b->fn(ev, a, n);
	}
	if (n > 2)
		return fail(ev, "rank");
	if (n == 1) {
		switch (op[0]) {
		case '-': return op[1] ? fail(ev, "nyi") : num_map(ev, "neg", a[0]);
		case '#': return chk(ev, qipc_obj_long((int64_t)obj_count(a[0])));
		case ',': return enlist_args(ev, a, 1);
		case '!': return key_of(ev, a[0]);
		case '~': return num_map(ev, "not", a[0]);
		case '^': return num_map(ev, "null", a[0]);
		case '*': return first_last(ev, a[0], false);
		case '|': return reverse(ev, a[0]);
		case '@': return chk(ev, mk_short(a[0]->type));
		case '.': return value_of(ev, a[0]);
		case '$': return to_string(ev, a[0]);
		case ':': return op[1] == ':' ? mq_obj_copy(a[0]) : fail(ev, "nyi");
		default: return fail(ev, "nyi");
		}
	}
	if (op[1] && strcmp(op, "<=") && strcmp(op, ">=") && strcmp(op, "<>"))
		return fail(ev, "nyi");
	switch (op[0]) {
	case '+': case '-': case '*': case '%': case '=': case '<': case '>': case '&':
	case '|':
		return arith(ev, op, a[0], a[1]);
	case ',':
		return join(ev, a[0], a[1]);
	case '#':
		return take(ev, a[0], a[1]);
	case '~':
		return chk(ev, qipc_obj_bool(qipc_obj_equal(a[0], a[1])));
	case '!':
		if (obj_count(a[0]) != obj_count(a[1]) || is_atom(a[0]))
			return fail(ev, "length");
		return chk(ev, qipc_obj_dict(mq_obj_copy(a[0]), mq_obj_copy(a[1])));
	case '@':
		return apply(ev, a[0], &a[1], 1);
	case '.': {
		struct qipc_obj *args[MQ_MAX_ARGS];
		uint64_t cnt = is_atom(a[1]) ? 1 : obj_count(a[1]);
		struct qipc_obj *r;

		if (!(a[1]->type >= -19 && a[1]->type <= 19))
			return fail(ev, "type");
		if (cnt > MQ_MAX_ARGS)
			return fail(ev, "rank");
		if (cnt == 0)
			return fail(ev, "nyi");
		for (uint64_t i = 0; i < cnt; i++)
			if (!(args[i] = item_at(a[1], i))) {
				while (i-- > 0)
					qipc_obj_free(args[i]);
				return oom(ev);
			}
		r = apply(ev, a[0], args, (int)cnt);
		for (uint64_t i = 0; i < cnt; i++)
			qipc_obj_free(args[i]);
		return r;
	}
	case '$':
		if (a[0]->type == -QT_SYMBOL && (!a[0]->s || !a[0]->s[0])) {	/* `$"text" */
			char *t = text_of(a[1]);
			struct qipc_obj *r;

			if (!t)
				return fail(ev, "type");
			r = qipc_obj_sym(t);
			free(t);
			return r ? r : oom(ev);
		}
		return fail(ev, "nyi");
	default:
		return fail(ev, "nyi");
	}
}

/* ------------------------------------------------------------------ keyword builtins */

static struct qipc_obj *b_til(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return til(ev, a[0]);
}

static struct qipc_obj *b_count(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return chk(ev, qipc_obj_long((int64_t)obj_count(a[0])));
}

static struct qipc_obj *b_enlist(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	return enlist_args(ev, a, n);
}

static struct qipc_obj *b_value(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return value_of(ev, a[0]);
}

static struct qipc_obj *b_key(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return key_of(ev, a[0]);
}

static struct qipc_obj *b_neg(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_map(ev, "neg", a[0]);
}

static struct qipc_obj *b_not(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_map(ev, "not", a[0]);
}

static struct qipc_obj *b_null(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_map(ev, "null", a[0]);
}

static struct qipc_obj *b_sum(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_fold(ev, "sum", a[0]);
}

static struct qipc_obj *b_max(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_fold(ev, "max", a[0]);
}

static struct qipc_obj *b_min(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_fold(ev, "min", a[0]);
}

static struct qipc_obj *b_avg(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return num_fold(ev, "avg", a[0]);
}

static struct qipc_obj *b_first(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return first_last(ev, a[0], false);
}

static struct qipc_obj *b_last(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return first_last(ev, a[0], true);
}

static struct qipc_obj *b_reverse(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return reverse(ev, a[0]);
}

static struct qipc_obj *b_type(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return chk(ev, mk_short(a[0]->type));
}

static struct qipc_obj *b_string(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return to_string(ev, a[0]);
}

static struct qipc_obj *b_set(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return set_global(ev, a[0], a[1]);
}

static struct qipc_obj *b_mod(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return arith(ev, "mod", a[0], a[1]);
}

static struct qipc_obj *b_div(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return arith(ev, "div", a[0], a[1]);
}

/* ------------------------------------------------------------------ .mock verbs */

static bool long_arg(const struct qipc_obj *o, int64_t *v)
{
	switch (o->type) {
	case -QT_LONG: *v = o->a.j; return true;
	case -QT_INT: *v = o->a.i; return true;
	case -QT_SHORT: *v = o->a.h; return true;
	default: return false;
	}
}

static struct qipc_obj *m_echo(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	return chk(ev, mq_obj_copy(a[0]));
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static struct qipc_obj *m_sleep(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	int64_t ms;

	(void)n;
	if (!long_arg(a[0], &ms))
		return fail(ev, "type");
	if (ms < 0 || ms > 3600 * 1000)
		return fail(ev, "domain");
	sleep_ms(ms);	/* blocks the whole process on purpose, like a busy q */
	return chk(ev, mq_obj_copy(a[0]));
}

static struct qipc_obj *m_defer(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	int64_t ms;

	(void)n;
	if (!long_arg(a[0], &ms))
		return fail(ev, "type");
	if (ms < 0 || ms > 3600 * 1000)
		return fail(ev, "domain");
	ev->defer_ms = ms;
	return chk(ev, mq_obj_copy(a[1]));
}

static struct qipc_obj *m_bytes(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	int64_t len;
	struct qipc_obj *r;

	(void)n;
	if (!long_arg(a[0], &len))
		return fail(ev, "type");
	if (len < 0)
		return fail(ev, "domain");
	if ((uint64_t)len > (1ULL << 34))
		return fail(ev, "limit");
	r = qipc_obj_vec(QT_BYTE, (uint64_t)len);
	if (!r)
		return oom(ev);
	for (int64_t i = 0; i < len; i++)
		((uint8_t *)r->data)[i] = (uint8_t)i;
	return r;
}

static struct qipc_obj *m_error(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	char *t = text_of(a[0]);

	(void)n;
	if (!t)
		return fail(ev, "type");
	fail(ev, "%s", t[0] ? t : "error");
	free(t);
	return NULL;
}

static struct qipc_obj *m_drop(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	ev->is_drop = true;
	return chk(ev, qipc_obj_identity());
}

static struct qipc_obj *m_pub(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	int64_t cnt, ms;

	(void)n;
	if (!long_arg(a[0], &cnt) || !long_arg(a[1], &ms))
		return fail(ev, "type");
	if (cnt < 0 || ms < 0 || ms > 3600 * 1000)
		return fail(ev, "domain");
	ev->pub_n = cnt;
	ev->pub_ms = ms;
	return chk(ev, mq_obj_copy(a[0]));
}

/*
 * Misbehaviour on command. These verbs exist for the gateway's torture test: each returns its
 * argument and sets an action that makes the server break the usual one-answer-per-request
 * rule in a controlled way (mockq.c carries the actions out).
 */
static struct qipc_obj *m_twice(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	ev->is_twice = true;
	return chk(ev, mq_obj_copy(a[0]));
}

static struct qipc_obj *m_unsolicited(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	ev->is_unsolicited = true;
	return chk(ev, mq_obj_copy(a[0]));
}

static struct qipc_obj *m_pushsync(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)n;
	ev->is_pushsync = true;
	return chk(ev, mq_obj_copy(a[0]));
}

/*
 * .mock.partdie[x;n] / [x;n;name]: the answer is a char vector, x's text padded with '.' so
 * that the whole message is n bytes (never shorter than x itself). The server writes half of
 * it and exits. With name, only the process whose --name is name dies; any other answers the
 * whole message, so a request retried elsewhere can succeed.
 */
static struct qipc_obj *m_partdie(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	/* header (8) + type, attribute and count of a char vector (6) */
	const int64_t overhead = 8 + 6;
	char *t = text_of(a[0]), *who = n > 2 ? text_of(a[2]) : NULL;
	struct qipc_obj *r;
	int64_t len;
	size_t tl, chars;

	if (!t || (n > 2 && !who) || !long_arg(a[1], &len)) {
		free(t);
		free(who);
		return fail(ev, "type");
	}
	if (len < 0 || len > (1LL << 30)) {
		free(t);
		free(who);
		return fail(ev, len < 0 ? "domain" : "limit");
	}
	tl = strlen(t);
	chars = len - overhead > (int64_t)tl ? (size_t)(len - overhead) : tl;
	r = qipc_obj_vec(QT_CHAR, chars);
	if (r) {
		memcpy(r->data, t, tl);
		memset((char *)r->data + tl, '.', chars - tl);
		ev->is_partdie = !who || !strcmp(who, ev->name ? ev->name : "mockq");
	}
	free(t);
	free(who);
	return chk(ev, r);
}

static struct qipc_obj *m_refuse(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	int64_t cnt;

	(void)n;
	if (!long_arg(a[0], &cnt))
		return fail(ev, "type");
	if (cnt < 0 || cnt > 1000000)
		return fail(ev, "domain");
	ev->refuse_n = cnt;
	return chk(ev, mq_obj_copy(a[0]));
}

static struct qipc_obj *m_id(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	return chk(ev, qipc_obj_sym(ev->name ? ev->name : "mockq"));
}

static struct qipc_obj *m_count(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	return chk(ev, qipc_obj_long((int64_t)ev->msg_count));
}

static struct qipc_obj *m_clients(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	return chk(ev, qipc_obj_long((int64_t)ev->clients));
}

/*
 * The request counters (.mock.inflight, .mock.maxinflight, .mock.served, .mock.reset) mark the
 * message a probe, so that reading them does not change them: a test asks a backend how busy
 * it was without being part of the answer.
 */
static struct qipc_obj *m_inflight(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	ev->is_probe = true;
	return chk(ev, qipc_obj_long((int64_t)ev->inflight));
}

static struct qipc_obj *m_maxinflight(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	ev->is_probe = true;
	return chk(ev, qipc_obj_long((int64_t)ev->max_inflight));
}

static struct qipc_obj *m_served(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	ev->is_probe = true;
	return chk(ev, qipc_obj_long((int64_t)ev->served));
}

static struct qipc_obj *m_reset(struct mq_eval *ev, struct qipc_obj **a, int n)
{
	(void)a;
	(void)n;
	ev->is_probe = true;
	ev->is_stats_reset = true;
	/* later statements of the same message see the reset values */
	ev->max_inflight = ev->inflight;
	ev->served = 0;
	return chk(ev, qipc_obj_long((int64_t)ev->inflight));
}

static const struct builtin BUILTINS[] = {
	{ "til", 1, 1, b_til, false, true },
	{ "count", 1, 1, b_count, false, true },
	{ "enlist", 1, MQ_MAX_ARGS, b_enlist, false, true },
	{ "value", 1, 1, b_value, false, true },
	{ "get", 1, 1, b_value, false, true },
	{ "key", 1, 1, b_key, false, true },
	{ "neg", 1, 1, b_neg, false, true },
	{ "not", 1, 1, b_not, false, true },
	{ "null", 1, 1, b_null, false, true },
	{ "sum", 1, 1, b_sum, false, true },
	{ "max", 1, 1, b_max, false, true },
	{ "min", 1, 1, b_min, false, true },
	{ "avg", 1, 1, b_avg, false, true },
	{ "first", 1, 1, b_first, false, true },
	{ "last", 1, 1, b_last, false, true },
	{ "reverse", 1, 1, b_reverse, false, true },
	{ "type", 1, 1, b_type, false, true },
	{ "string", 1, 1, b_string, false, true },
	{ "set", 2, 2, b_set, true, true },
	{ "mod", 2, 2, b_mod, true, true },
	{ "div", 2, 2, b_div, true, true },
	{ ".mock.echo", 1, 1, m_echo, false, false },
	{ ".mock.sleep", 1, 1, m_sleep, false, false },
	{ ".mock.defer", 2, 2, m_defer, false, false },
	{ ".mock.bytes", 1, 1, m_bytes, false, false },
	{ ".mock.error", 1, 1, m_error, false, false },
	{ ".mock.drop", 0, 1, m_drop, false, false },
	{ ".mock.pub", 2, 2, m_pub, false, false },
	{ ".mock.twice", 1, 1, m_twice, false, false },
	{ ".mock.unsolicited", 1, 1, m_unsolicited, false, false },
	{ ".mock.pushsync", 1, 1, m_pushsync, false, false },
	{ ".mock.partdie", 2, 3, m_partdie, false, false },
	{ ".mock.refuse", 1, 1, m_refuse, false, false },
	{ ".mock.id", 0, 1, m_id, false, false },
	{ ".mock.count", 0, 1, m_count, false, false },
	{ ".mock.clients", 0, 1, m_clients, false, false },
	{ ".mock.inflight", 0, 1, m_inflight, false, false },
	{ ".mock.maxinflight", 0, 1, m_maxinflight, false, false },
	{ ".mock.served", 0, 1, m_served, false, false },
	{ ".mock.reset", 0, 1, m_reset, false, false },
	{ NULL, 0, 0, NULL, false, false },
};

static const struct builtin *builtin_find(const char *name)
{
	for (int i = 0; BUILTINS[i].name; i++)
		if (!strcmp(BUILTINS[i].name, name))
			return &BUILTINS[i];
	return NULL;
}

/* ------------------------------------------------------------------ PyKX envelopes */

/* Start of the k lambda PyKX's context interface sends with a name (ctx.py __getattr__). */
static const char PYKX_CTX_PROBE[] = "k){x:. x;$[99h<@x;:`$\"_pykx_fn_marker\";";
/* Parameter list of the lambda PyKX's file_execute sends (ipc.py). */
static const char PYKX_FILE_EXEC[] = "{[fn;code;file;stem]";

static bool has_prefix_ws(const struct qipc_obj *s, const char *prefix, bool skip_ws)
{
	const char *p = s->data ? s->data : "";
	size_t n = (size_t)s->n, pl = strlen(prefix);

	while (skip_ws && n && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) {
		p++;
		n--;
	}
	return n >= pl && !memcmp(p, prefix, pl);
}

/*
 * The context probe: value x; a function gives `_pykx_fn_marker, a namespace (a dictionary
 * whose `` ` `` key holds ::) `_pykx_ctx_marker, anything else itself.
 */
static struct qipc_obj *pykx_ctx_probe(struct mq_eval *ev, const struct qipc_obj *arg)
{
	struct qipc_obj *v = value_of(ev, arg);

	if (!v)
		return NULL;
	if (v->type > 99) {
		qipc_obj_free(v);
		return chk(ev, qipc_obj_sym("_pykx_fn_marker"));
	}
	if (v->type == QT_DICT && v->items[0]->type == QT_SYMBOL && v->items[0]->n > 0 &&
	    v->items[1]->type == QT_LIST && v->items[1]->n > 0 &&
	    !v->items[0]->syms[0][0] && v->items[1]->type == QT_LIST &&
	    is_identity(v->items[1]->items[0])) {
		qipc_obj_free(v);
		return chk(ev, qipc_obj_sym("_pykx_ctx_marker"));
	}
	return v;
}

static bool line_blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_space(p[i]))
			return false;
	return true;
}

/*
 * file_execute: (lambda; loader; lines; file; stem). Statements are split like q's script
 * loader: a line starting with white space continues the previous one, "/" lines are comments
 * (a lone "/" opens a block comment closed by a lone "\"), a lone "\" ends the script.
 * The result is the list of every statement's value (q collapses uniform atoms).
 */
static struct qipc_obj *pykx_file_execute(struct mq_eval *ev, const struct qipc_obj *msg)
{
	const struct qipc_obj *lines = msg->items[2], *stem = msg->items[4];
	char *st = text_of(stem);
	struct qipc_obj *res, *r;
	char *stmt = NULL;
	size_t slen = 0;
	bool in_block = false;
	uint64_t nl;

	if (!st)
		return fail(ev, "type");
	if (!strcmp(st, "p") || !strcmp(st, "py")) {
		free(st);
		return fail(ev, "pykx must be loaded on remote server");
	}
	free(st);
	if (lines->type != QT_LIST && lines->type != QT_CHAR)
		return fail(ev, "type");
	nl = lines->type == QT_CHAR ? 1 : lines->n;
	res = qipc_obj_list(0);
	if (!res)
		return oom(ev);
	for (uint64_t i = 0; i <= nl; i++) {
		const struct qipc_obj *ln = i < nl ? (lines->type == QT_CHAR ? lines :
						      lines->items[i]) : NULL;
		const char *p = "";
		size_t n = 0;
		bool cont;

		if (ln) {
			if (ln->type == -QT_CHAR) {
				p = (const char *)&ln->a.b;
				n = 1;
			} else if (ln->type == QT_CHAR) {
				p = ln->data ? ln->data : "";
				n = (size_t)ln->n;
			} else {
				goto type_err;
			}
			if (i == 0 && n >= 2 && p[0] == '#' && p[1] == '!')
				continue;
			if (in_block) {
				if (n == 1 && p[0] == '\\')
					in_block = false;
				continue;
			}
			if (n == 1 && p[0] == '/') {
				in_block = true;
				continue;
			}
			if (n >= 1 && p[0] == '/')
				continue;
			if (n == 1 && p[0] == '\\')
				ln = NULL;	/* end of script */
		}
		cont = ln && n > 0 && is_space(p[0]) && stmt;
		if (ln && (line_blank(p, n) && !stmt))
			continue;
		if (cont) {
			char *ns = realloc(stmt, slen + n + 2);

			if (!ns)
				goto nomem;
			stmt = ns;
			stmt[slen++] = '\n';
			memcpy(stmt + slen, p, n);
			slen += n;
			continue;
		}
		/* run the statement collected so far */
		if (stmt && !line_blank(stmt, slen)) {
			struct qipc_obj **ni;

			r = mq_eval_text(ev, stmt, slen);
			if (!r) {
				free(stmt);
				qipc_obj_free(res);
				return NULL;
			}
			ni = realloc(res->items, (size_t)(res->n + 1) * sizeof(*ni));
			if (!ni) {
				qipc_obj_free(r);
				goto nomem;
			}
			res->items = ni;
			res->items[res->n++] = r;
		}
		free(stmt);
		stmt = NULL;
		slen = 0;
		if (!ln)
			break;
		if (line_blank(p, n))
			continue;
		stmt = xstrndup(p, n);
		if (!stmt)
			goto nomem;
		slen = n;
	}
	free(stmt);
	return collapse(res);
type_err:
	free(stmt);
	qipc_obj_free(res);
	return fail(ev, "type");
nomem:
	free(stmt);
	qipc_obj_free(res);
	return oom(ev);
}

/* ------------------------------------------------------------------ messages */

void mq_eval_reset(struct mq_eval *ev)
{
	ev->is_drop = false;
	ev->defer_ms = -1;
	ev->pub_n = -1;
	ev->pub_ms = 0;
	ev->is_twice = false;
	ev->is_unsolicited = false;
	ev->is_pushsync = false;
	ev->is_partdie = false;
	ev->refuse_n = -1;
	ev->is_probe = false;
	ev->is_stats_reset = false;
	ev->err[0] = 0;
	ev->depth = 0;
	ev->frame = NULL;
}

struct qipc_obj *mq_eval_msg(struct mq_eval *ev, const struct qipc_obj *msg)
{
	const struct qipc_obj *head;
	struct qipc_obj *f = NULL, *r, *args[MQ_MAX_ARGS];
	int n;

	if (++ev->depth > MQ_MAX_DEPTH) {
		ev->depth--;
		return fail(ev, "stack");
	}
	if (msg->type != QT_LIST || msg->n == 0) {
		r = value_of(ev, msg);
		ev->depth--;
		return r;
	}
	head = msg->items[0];
	if (head->type == QT_CHAR && msg->n == 2 && has_prefix_ws(head, PYKX_CTX_PROBE, false)) {
		r = pykx_ctx_probe(ev, msg->items[1]);
		ev->depth--;
		return r;
	}
	if (head->type == QT_CHAR && msg->n == 5 && has_prefix_ws(head, PYKX_FILE_EXEC, true)) {
		r = pykx_file_execute(ev, msg);
		ev->depth--;
		return r;
	}
	n = (int)msg->n - 1;
	if (n > MQ_MAX_ARGS) {
		ev->depth--;
		return fail(ev, "rank");
	}
	if (head->type == QT_CHAR)		/* ("name";args): the string is evaluated first */
		f = mq_eval_text(ev, head->data ? head->data : "", (size_t)head->n);
	else if (head->type == -QT_SYMBOL)	/* (`name;args): a global */
		f = lookup(ev, head->s ? head->s : "");
	else
		f = mq_obj_copy(head);
	if (!f) {
		ev->depth--;
		return ev->err[0] ? NULL : oom(ev);
	}
	for (int i = 0; i < n; i++)
		args[i] = msg->items[i + 1];
	if (n == 0) {	/* enlist f: applied to :: */
		struct qipc_obj *id = qipc_obj_identity();

		r = id ? apply(ev, f, &id, 1) : oom(ev);
		qipc_obj_free(id);
	} else {
		r = apply(ev, f, args, n);
	}
	qipc_obj_free(f);
	ev->depth--;
	return r;
}

/* ------------------------------------------------------------------ wire cleanup */

int mq_sanitize(struct qipc_obj *o)
{
	if (!o)
		return 0;
	if (is_builtin(o)) {
		/* a built-in becomes a lambda that calls it, which mockq can evaluate again */
		char src[96];
		const struct builtin *b;
		char name[64];
		int len;
		struct qipc_obj *s;

		snprintf(name, sizeof(name), "%.*s", (int)o->items[0]->n,
			 (const char *)o->items[0]->data);
		b = builtin_find(name);
		if (b && b->max_args >= 2)
			len = snprintf(src, sizeof(src), "{%s[x;y]}", name);
		else if (b)
			len = snprintf(src, sizeof(src), "{%s[x]}", name);
		else if (is_alpha(name[0]))
			len = snprintf(src, sizeof(src), "{x %s y}", name);
		else
			len = snprintf(src, sizeof(src), "{x%sy}", name);
		s = qipc_obj_str(src, (size_t)len);
		if (!s)
			return -ENOMEM;
		qipc_obj_free(o->items[0]);
		o->items[0] = s;
		o->s[0] = 0;
		return 0;
	}
	if (o->items)
		for (uint64_t i = 0; i < o->n; i++)
			if (mq_sanitize(o->items[i]) < 0)
				return -ENOMEM;
	return 0;
}
