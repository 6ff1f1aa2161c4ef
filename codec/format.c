/*
 * format.c — q-console-like one-line text of a value, for the demo, mockq's tools and
 * test messages: atoms and vectors as q writes them (`42h`, `1 0N 3i`, `0x0a`, `101b`,
 * `2024.01.02`), strings and symbols, lists `(..;..)`, dictionaries `k!v`, tables in
 * flip form `+`a`b!(..;..)`, functions by their source or glyph, errors `'msg`.
 * Output is bounded (FORMAT_MAX) so a huge value cannot make it run away.
 */
#include "codec/qipc.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FORMAT_MAX (1u << 20)	/* never produce more than this; ".." marks the cut */

struct fbuf {
	char *out;
	size_t cap;	/* caller's capacity, NUL included */
	size_t len;	/* text length produced so far (may exceed cap) */
	bool is_full;	/* hit FORMAT_MAX */
};

static void emit(struct fbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b->len + i + 1 < b->cap)
			b->out[b->len + i] = s[i];
	b->len += n;
}

static void put(struct fbuf *b, const char *s, size_t n)
{
	if (b->is_full)
		return;
	if (n > FORMAT_MAX - 2 - b->len) {
		emit(b, s, FORMAT_MAX - 2 - b->len);
		emit(b, "..", 2);
		b->is_full = true;
		return;
	}
	emit(b, s, n);
}

static void puts_(struct fbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void putf(struct fbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ------------------------------------------------------------- calendar */

/* days since 2000.01.01 -> civil date (proleptic Gregorian). */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t z = days + 10957 + 719468;	/* shift to 0000-03-01 based count */
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t floordiv(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static void put_date(struct fbuf *b, int64_t days)
{
	int64_t y;
	unsigned m, d;

	civil(days, &y, &m, &d);
	putf(b, "%04" PRId64 ".%02u.%02u", y, m, d);
}

/* hh:mm:ss.fffffffff from nanoseconds within a day (or beyond, for timespans) */
static void put_clock_ns(struct fbuf *b, uint64_t ns)
{
	uint64_t s = ns / 1000000000u;

	putf(b, "%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%09" PRIu64, s / 3600, s / 60 % 60,
	     s % 60, ns % 1000000000u);
}

/* ------------------------------------------------------------- atoms */

static const char type_char[20] = " bg xhijefcspmdznuvt";

/* Null / infinity spelling for integer-based types; false if v is an ordinary value. */
static bool put_special(struct fbuf *b, int64_t v, int64_t null_v, int t, bool suffix)
{
	const char *s;

	if (v == null_v)
		s = "0N";
	else if (v == -(null_v + 1))	/* +infinity; written so INT64_MIN cannot overflow */
		s = "0W";
	else if (v == null_v + 1)
		s = "-0W";
	else
		return false;
	puts_(b, s);
	if (suffix)
		put(b, &type_char[t], 1);
	return true;
}

static void put_float(struct fbuf *b, double v, bool is_real, bool suffix_if_int)
{
	char tmp[64];

	if (isnan(v)) {
		puts_(b, is_real ? "0N" : "0n");
		return;
	}
	if (isinf(v)) {
		puts_(b, v > 0 ? (is_real ? "0W" : "0w") : (is_real ? "-0W" : "-0w"));
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.7g", v);
	puts_(b, tmp);
	if (suffix_if_int && !strpbrk(tmp, ".e"))
		puts_(b, "f");
}

static void put_char_esc(struct fbuf *b, uint8_t c)
{
	switch (c) {
	case '"': puts_(b, "\\\""); break;
	case '\\': puts_(b, "\\\\"); break;
	case '\n': puts_(b, "\\n"); break;
	case '\r': puts_(b, "\\r"); break;
	case '\t': puts_(b, "\\t"); break;
	default:
		if (c < 0x20 || c == 0x7f)
			putf(b, "\\%03o", c);
		else
			put(b, (const char *)&c, 1);
	}
}

static void put_guid(struct fbuf *b, const uint8_t *g)
{
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			puts_(b, "-");
		putf(b, "%02x", g[i]);
	}
}

/*
 * One item of type t (1..19) read from p. in_vec: the item sits inside a vector, where
 * q writes the type suffix once at the end instead of on each item.
 */
static void put_item(struct fbuf *b, int t, const void *p, bool in_vec)
{
	int16_t h;
	int32_t i;
	int64_t j;
	float e;
	double f;
	uint8_t x;

	switch (t) {
	case QT_BOOL:
		memcpy(&x, p, 1);
		puts_(b, x ? "1" : "0");
		if (!in_vec)
			puts_(b, "b");
		return;
	case QT_GUID:
		put_guid(b, p);
		return;
	case QT_BYTE:
		memcpy(&x, p, 1);
		putf(b, in_vec ? "%02x" : "0x%02x", x);
		return;
	case QT_SHORT:
		memcpy(&h, p, 2);
		if (!put_special(b, h, INT16_MIN, t, !in_vec))
			putf(b, in_vec ? "%d" : "%dh", h);
		return;
	case QT_INT:
		memcpy(&i, p, 4);
		if (!put_special(b, i, INT32_MIN, t, !in_vec))
			putf(b, in_vec ? "%d" : "%di", i);
		return;
	case QT_LONG:
		memcpy(&j, p, 8);
		if (!put_special(b, j, INT64_MIN, t, false))
			putf(b, "%" PRId64, j);
		return;
	case QT_REAL:
		memcpy(&e, p, 4);
		put_float(b, e, true, false);
		if (!in_vec)
			puts_(b, "e");
		return;
	case QT_FLOAT:
		memcpy(&f, p, 8);
		put_float(b, f, false, !in_vec);
		return;
	case QT_CHAR:
		memcpy(&x, p, 1);
		if (in_vec) {
			put_char_esc(b, x);
		} else {
			puts_(b, "\"");
			put_char_esc(b, x);
			puts_(b, "\"");
		}
		return;
	case QT_TIMESTAMP:
		memcpy(&j, p, 8);
		if (put_special(b, j, INT64_MIN, t, true))
			return;
		{
			/* floor division by a day without the multiply that overflows near the
			 * ends of the range */
			int64_t day = j / 86400000000000LL, rem = j % 86400000000000LL;
			if (rem < 0) {
				rem += 86400000000000LL;
				day--;
			}
			put_date(b, day);
			puts_(b, "D");
			put_clock_ns(b, (uint64_t)rem);
		}
		return;
	case QT_MONTH:
		memcpy(&i, p, 4);
		if (put_special(b, i, INT32_MIN, t, !in_vec))
			return;
		putf(b, "%04" PRId64 ".%02" PRId64, 2000 + floordiv(i, 12),
		     (int64_t)i - floordiv(i, 12) * 12 + 1);
		if (!in_vec)
			puts_(b, "m");
		return;
	case QT_DATE:
		memcpy(&i, p, 4);
		if (!put_special(b, i, INT32_MIN, t, true))
			put_date(b, i);
		return;
	case QT_DATETIME: {
		double fl, ms;

		memcpy(&f, p, 8);
		if (isnan(f)) {
			puts_(b, "0Nz");
			return;
		}
		if (isinf(f)) {
			puts_(b, f > 0 ? "0wz" : "-0wz");
			return;
		}
		if (f > 1e9 || f < -1e9) {	/* far outside any calendar q prints */
			putf(b, "%gz", f);
			return;
		}
		fl = floor(f);
		ms = round((f - fl) * 86400000.0);
		if (ms >= 86400000.0) {
			fl += 1;
			ms = 0;
		}
		put_date(b, (int64_t)fl);
		puts_(b, "T");
		j = (int64_t)ms;
		putf(b, "%02" PRId64 ":%02" PRId64 ":%02" PRId64 ".%03" PRId64, j / 3600000,
		     j / 60000 % 60, j / 1000 % 60, j % 1000);
		return;
	}
	case QT_TIMESPAN:
		memcpy(&j, p, 8);
		if (put_special(b, j, INT64_MIN, t, true))
			return;
		if (j < 0)
			puts_(b, "-");
		{
			uint64_t u = j < 0 ? (uint64_t)0 - (uint64_t)j : (uint64_t)j;

			putf(b, "%" PRIu64 "D", u / (uint64_t)86400000000000);
			put_clock_ns(b, u % (uint64_t)86400000000000);
		}
		return;
	case QT_MINUTE:
	case QT_SECOND:
	case QT_TIME: {
		uint32_t u;

		memcpy(&i, p, 4);
		if (put_special(b, i, INT32_MIN, t, true))
			return;
		if (i < 0)
			puts_(b, "-");
		u = i < 0 ? (uint32_t)0 - (uint32_t)i : (uint32_t)i;
		if (t == QT_MINUTE)
			putf(b, "%02u:%02u", u / 60, u % 60);
		else if (t == QT_SECOND)
			putf(b, "%02u:%02u:%02u", u / 3600, u / 60 % 60, u % 60);
		else
			putf(b, "%02u:%02u:%02u.%03u", u / 3600000, u / 60000 % 60, u / 1000 % 60,
			     u % 1000);
		return;
	}
	default:
		return;
	}
}

/* ------------------------------------------------------------- values */

static const char op_glyphs[] = ":+-*%&|^=<>$,#_~!?@.";
static const char *const adverb_glyphs[] = { "'", "/", "\\", "':", "/:", "\\:" };
static const char *const attr_names[] = { "", "`s#", "`u#", "`p#", "`g#" };
static const char *const type_names[20] = {
	"", "boolean", "guid", "", "byte", "short", "int", "long", "real", "float", "char",
	"symbol", "timestamp", "month", "date", "datetime", "timespan", "minute", "second", "time",
};

static void fmt(struct fbuf *b, const struct qipc_obj *o, int depth);

static void put_attr(struct fbuf *b, uint8_t attr)
{
	if (attr >= 1 && attr <= 4)
		puts_(b, attr_names[attr]);
}

static void fmt_vector(struct fbuf *b, const struct qipc_obj *o)
{
	size_t w = qipc_type_width(o->type);
	const uint8_t *p = o->data;
	int t = o->type;

	put_attr(b, o->attr);
	if (o->n == 0) {
		if (t == QT_CHAR)
			puts_(b, "\"\"");
		else
			putf(b, "`%s$()", type_names[t]);
		return;
	}
	if (o->n == 1)
		puts_(b, ",");
	if (t == QT_SYMBOL) {
		for (uint64_t i = 0; i < o->n && !b->is_full; i++) {
			puts_(b, "`");
			puts_(b, o->syms && o->syms[i] ? o->syms[i] : "");
		}
		return;
	}
	if (t == QT_CHAR) {
		puts_(b, "\"");
		for (uint64_t i = 0; i < o->n && !b->is_full; i++)
			put_char_esc(b, p[i]);
		puts_(b, "\"");
		return;
	}
	if (t == QT_BYTE)
		puts_(b, "0x");
	for (uint64_t i = 0; i < o->n && !b->is_full; i++) {
		if (i && t != QT_BOOL && t != QT_BYTE)
			puts_(b, " ");
		put_item(b, t, p + i * w, true);
	}
	switch (t) {
	case QT_BOOL: puts_(b, "b"); break;
	case QT_SHORT: puts_(b, "h"); break;
	case QT_INT: puts_(b, "i"); break;
	case QT_REAL: puts_(b, "e"); break;
	case QT_MONTH: puts_(b, "m"); break;
	case QT_FLOAT: {
		/* q marks a float vector whose items all print as integers with a final f */
		bool all_int = true;

		for (uint64_t i = 0; i < o->n && all_int; i++) {
			double f;

			memcpy(&f, p + i * 8, 8);
			all_int = isfinite(f) && f == floor(f) && fabs(f) < 1e7;
		}
		if (all_int)
			puts_(b, "f");
		break;
	}
	default:
		break;
	}
}

/* An item of a list or an enlist: only dictionaries and tables need parentheses there. */
static void fmt_inner(struct fbuf *b, const struct qipc_obj *o, int depth)
{
	bool paren = o && (o->type == QT_DICT || o->type == QT_SORTED_DICT || o->type == QT_TABLE);

	if (paren)
		puts_(b, "(");
	fmt(b, o, depth + 1);
	if (paren)
		puts_(b, ")");
}

/* Dictionary keys: also a one-item vector or list, as in q's (,`a)!,1 */
static void fmt_keys(struct fbuf *b, const struct qipc_obj *o, int depth)
{
	bool paren = o && (o->type == QT_DICT || o->type == QT_SORTED_DICT || o->type == QT_TABLE ||
			   (o->type >= 0 && o->type <= 19 && o->n == 1));

	if (paren)
		puts_(b, "(");
	fmt(b, o, depth + 1);
	if (paren)
		puts_(b, ")");
}

static void fmt_func(struct fbuf *b, const struct qipc_obj *o, int depth)
{
	switch (o->type) {
	case QT_LAMBDA:
		if (o->items && o->items[0] && o->items[0]->type == QT_CHAR)
			put(b, o->items[0]->data ? o->items[0]->data : "", (size_t)o->items[0]->n);
		return;
	case QT_UNARY:
		if (o->a.x == 0)
			puts_(b, "::");
		else if (o->a.x < sizeof(op_glyphs) - 1)
			putf(b, "%c:", op_glyphs[o->a.x]);
		else if (o->a.x != 0xff)	/* 0xff: an elided projection argument, no text */
			putf(b, "<unary %u>", o->a.x);
		return;
	case QT_BINARY:
		if (o->a.x < sizeof(op_glyphs) - 1)
			put(b, &op_glyphs[o->a.x], 1);
		else
			putf(b, "<op %u>", o->a.x);
		return;
	case QT_ITERATOR:
		if (o->a.x < 6)
			puts_(b, adverb_glyphs[o->a.x]);
		else
			putf(b, "<iterator %u>", o->a.x);
		return;
	case QT_PROJECTION:
		if (o->n && o->items)
			fmt(b, o->items[0], depth + 1);
		puts_(b, "[");
		for (uint64_t i = 1; i < o->n && !b->is_full; i++) {
			if (i > 1)
				puts_(b, ";");
			fmt(b, o->items[i], depth + 1);
		}
		puts_(b, "]");
		return;
	case QT_COMPOSITION:
		puts_(b, "'[");
		for (uint64_t i = 0; i < o->n && !b->is_full; i++) {
			if (i)
				puts_(b, ";");
			fmt(b, o->items ? o->items[i] : NULL, depth + 1);
		}
		puts_(b, "]");
		return;
	default:	/* adverbs 106..111 */
		if (o->n && o->items)
			fmt(b, o->items[0], depth + 1);
		puts_(b, adverb_glyphs[o->type - QT_EACH]);
		return;
	}
}

static void fmt(struct fbuf *b, const struct qipc_obj *o, int depth)
{
	if (b->is_full)
		return;
	if (!o) {
		puts_(b, "<null>");
		return;
	}
	if (depth > 64) {
		puts_(b, "..");
		return;
	}
	if (o->type == QT_ERROR) {
		puts_(b, "'");
		puts_(b, o->s ? o->s : "");
		return;
	}
	if (o->type == -QT_SYMBOL) {
		puts_(b, "`");
		puts_(b, o->s ? o->s : "");
		return;
	}
	if (o->type < 0 && o->type >= -19) {
		put_item(b, -o->type, &o->a, false);
		return;
	}
	if (o->type >= 1 && o->type <= 19) {
		fmt_vector(b, o);
		return;
	}
	switch (o->type) {
	case QT_LIST:
		put_attr(b, o->attr);
		if (o->n == 1) {
			puts_(b, ",");
			fmt_inner(b, o->items ? o->items[0] : NULL, depth);
			return;
		}
		puts_(b, "(");
		for (uint64_t i = 0; i < o->n && !b->is_full; i++) {
			if (i)
				puts_(b, ";");
			fmt(b, o->items ? o->items[i] : NULL, depth + 1);
		}
		puts_(b, ")");
		return;
	case QT_DICT:
	case QT_SORTED_DICT:
		if (o->n != 2 || !o->items)
			break;
		/* the keys of a sorted dictionary normally carry `s# themselves */
		if (o->type == QT_SORTED_DICT && (!o->items[0] || o->items[0]->attr != 1))
			puts_(b, "`s#");
		fmt_keys(b, o->items[0], depth);
		puts_(b, "!");
		fmt(b, o->items[1], depth + 1);
		return;
	case QT_TABLE:
		put_attr(b, o->attr);
		puts_(b, "+");
		if (o->n == 1 && o->items)
			fmt(b, o->items[0], depth + 1);
		return;
	default:
		if (o->type >= QT_LAMBDA && o->type <= QT_EACH_LEFT) {
			fmt_func(b, o, depth);
			return;
		}
		break;
	}
	putf(b, "<type %d>", o->type);
}

int qipc_format(const struct qipc_obj *o, char *out, size_t cap)
{
	struct fbuf b = { .out = out, .cap = cap };

	fmt(&b, o, 0);
	if (cap) {
		if (b.len < cap) {
			out[b.len] = 0;
		} else {
			/* cut to the caller's buffer and mark the cut the way the q console does */
			out[cap - 1] = 0;
			if (cap >= 3) {
				out[cap - 3] = '.';
				out[cap - 2] = '.';
			}
		}
	}
	return (int)b.len;
}
