/*
 * object.c — q values in memory (struct qipc_obj) and their IPC serialisation.
 * The decoder is defensive: every count is checked against the bytes that remain
 * before anything is allocated, nesting is bounded, and no byte outside [p, p+n) is read.
 * The encoder writes little-endian and reproduces q's bytes (attributes kept, sorted
 * dictionaries as type 127, 8-byte counts only for vectors of 2^32 items or more).
 */
#include "codec/qipc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/qipc_internal.h"

#define DEFAULT_MAX_DEPTH 64
#define HARD_MAX_DEPTH 1024	/* whatever the caller asks, keep the C stack bounded */

size_t qipc_type_width(int type)
{
	switch (type) {
	case QT_BOOL: case QT_BYTE: case QT_CHAR:
		return 1;
	case QT_GUID:
		return 16;
	case QT_SHORT:
		return 2;
	case QT_INT: case QT_REAL: case QT_MONTH: case QT_DATE: case QT_MINUTE: case QT_SECOND:
	case QT_TIME:
		return 4;
	case QT_LONG: case QT_FLOAT: case QT_TIMESTAMP: case QT_DATETIME: case QT_TIMESPAN:
		return 8;
	default:
		return 0;
	}
}

/* Types whose payload is items[0..n). */
static bool has_items(int t)
{
	return t == QT_LIST || t == QT_TABLE || t == QT_DICT || t == QT_SORTED_DICT ||
	       t == QT_LAMBDA || (t >= QT_PROJECTION && t <= QT_EACH_LEFT);
}

static bool is_float_type(int t)
{
	return t == QT_REAL || t == QT_FLOAT || t == QT_DATETIME;
}

static bool host_le(void)
{
	return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
}

/* ------------------------------------------------------------ constructors */

static struct qipc_obj *obj_new(int8_t type)
{
	struct qipc_obj *o = calloc(1, sizeof(*o));

	if (o)
		o->type = type;
	return o;
}

struct qipc_obj *qipc_obj_atom(int8_t type)
{
	struct qipc_obj *o;

	if (type > -1 || type < -19 || type == -3)
		return NULL;
	o = obj_new(type);
	if (o && type == -QT_SYMBOL) {
		o->s = strdup("");
		if (!o->s) {
			free(o);
			return NULL;
		}
	}
	return o;
}

struct qipc_obj *qipc_obj_bool(bool v)
{
	struct qipc_obj *o = obj_new(-QT_BOOL);

	if (o)
		o->a.b = v ? 1 : 0;
	return o;
}

struct qipc_obj *qipc_obj_int(int32_t v)
{
	struct qipc_obj *o = obj_new(-QT_INT);

	if (o)
		o->a.i = v;
	return o;
}

struct qipc_obj *qipc_obj_long(int64_t v)
{
	struct qipc_obj *o = obj_new(-QT_LONG);

	if (o)
		o->a.j = v;
	return o;
}

struct qipc_obj *qipc_obj_float(double v)
{
	struct qipc_obj *o = obj_new(-QT_FLOAT);

	if (o)
		o->a.f = v;
	return o;
}

struct qipc_obj *qipc_obj_char(char c)
{
	struct qipc_obj *o = obj_new(-QT_CHAR);

	if (o)
		o->a.b = (uint8_t)c;
	return o;
}

static struct qipc_obj *text_obj(int8_t type, const char *s)
{
	struct qipc_obj *o = obj_new(type);

	if (!o)
		return NULL;
	o->s = strdup(s ? s : "");
	if (!o->s) {
		free(o);
		return NULL;
	}
	return o;
}

struct qipc_obj *qipc_obj_sym(const char *s)
{
	return text_obj(-QT_SYMBOL, s);
}

struct qipc_obj *qipc_obj_error(const char *msg)
{
	return text_obj(QT_ERROR, msg);
}

struct qipc_obj *qipc_obj_vec(int8_t type, uint64_t n)
{
	struct qipc_obj *o;
	size_t w = qipc_type_width(type);

	if (type == QT_LIST)
		return qipc_obj_list(n);
	if (type != QT_SYMBOL && w == 0)
		return NULL;
	if (n > SIZE_MAX / (w ? w : sizeof(char *)))
		return NULL;
	o = obj_new(type);
	if (!o)
		return NULL;
	o->n = n;
	if (n == 0)
		return o;
	if (type == QT_SYMBOL)
		o->syms = calloc((size_t)n, sizeof(char *));	/* NULL items read as "" */
	else
		o->data = calloc((size_t)n, w);
	if (!o->syms && !o->data) {
		free(o);
		return NULL;
	}
	return o;
}

struct qipc_obj *qipc_obj_str(const char *s, size_t len)
{
	struct qipc_obj *o = qipc_obj_vec(QT_CHAR, len);

	if (o && len)
		memcpy(o->data, s, len);
	return o;
}

struct qipc_obj *qipc_obj_list(uint64_t n)
{
	struct qipc_obj *o;

	if (n > SIZE_MAX / sizeof(struct qipc_obj *))
		return NULL;
	o = obj_new(QT_LIST);
	if (!o)
		return NULL;
	o->n = n;
	if (n) {
		o->items = calloc((size_t)n, sizeof(struct qipc_obj *));
		if (!o->items) {
			free(o);
			return NULL;
		}
	}
	return o;
}

/* A node of n owned children (dict, table, lambda, adverbs ...). */
static struct qipc_obj *node_new(int8_t type, uint64_t n)
{
	struct qipc_obj *o = obj_new(type);

	if (!o)
		return NULL;
	o->n = n;
	if (n) {
		o->items = calloc((size_t)n, sizeof(struct qipc_obj *));
		if (!o->items) {
			free(o);
			return NULL;
		}
	}
	return o;
}

struct qipc_obj *qipc_obj_dict(struct qipc_obj *keys, struct qipc_obj *vals)
{
	struct qipc_obj *o = (keys && vals) ? node_new(QT_DICT, 2) : NULL;

	if (!o) {
		qipc_obj_free(keys);
		qipc_obj_free(vals);
		return NULL;
	}
	o->items[0] = keys;
	o->items[1] = vals;
	return o;
}

struct qipc_obj *qipc_obj_table(struct qipc_obj *colnames, struct qipc_obj *cols)
{
	struct qipc_obj *d = qipc_obj_dict(colnames, cols);
	struct qipc_obj *o = d ? node_new(QT_TABLE, 1) : NULL;

	if (!o) {
		qipc_obj_free(d);
		return NULL;
	}
	o->items[0] = d;
	return o;
}

struct qipc_obj *qipc_obj_identity(void)
{
	return obj_new(QT_UNARY);	/* code byte 0 */
}

int qipc_obj_set_sym(struct qipc_obj *v, uint64_t i, const char *s)
{
	char *c;

	if (!v || v->type != QT_SYMBOL || i >= v->n || !v->syms)
		return -EINVAL;
	c = strdup(s ? s : "");
	if (!c)
		return -ENOMEM;
	free(v->syms[i]);
	v->syms[i] = c;
	return 0;
}

void qipc_obj_free(struct qipc_obj *o)
{
	if (!o)
		return;
	if (o->items)
		for (uint64_t i = 0; i < o->n; i++)
			qipc_obj_free(o->items[i]);
	if (o->syms)
		for (uint64_t i = 0; i < o->n; i++)
			free(o->syms[i]);
	free(o->items);
	free(o->syms);
	free(o->data);
	free(o->s);
	free(o);
}

/* ------------------------------------------------------------------ equality */

static bool float_eq(double a, double b)
{
	if (isnan(a) && isnan(b))
		return true;
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static bool real_eq(float a, float b)
{
	if (isnan(a) && isnan(b))
		return true;
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

bool qipc_obj_equal(const struct qipc_obj *a, const struct qipc_obj *b)
{
	size_t w;

	if (a == b)
		return true;
	if (!a || !b || a->type != b->type)
		return false;
	if (a->type < 0) {
		switch (-a->type) {
		case QT_REAL:
			return real_eq(a->a.e, b->a.e);
		case QT_FLOAT: case QT_DATETIME:
			return float_eq(a->a.f, b->a.f);
		case QT_SYMBOL: case -QT_ERROR:
			return strcmp(str_or_empty(a->s), str_or_empty(b->s)) == 0;
		default:
			w = qipc_type_width(-a->type);
			return memcmp(&a->a, &b->a, w) == 0;
		}
	}
	if (a->n != b->n)
		return false;
	if (a->type >= QT_UNARY && a->type <= QT_ITERATOR)
		return a->a.x == b->a.x;
	if (a->attr != b->attr && a->type != QT_DICT && a->type != QT_SORTED_DICT &&
	    a->type != QT_LAMBDA && a->type < QT_PROJECTION)
		return false;
	if (a->type == QT_SYMBOL) {
		for (uint64_t i = 0; i < a->n; i++)
			if (strcmp(str_or_empty(a->syms ? a->syms[i] : NULL),
				   str_or_empty(b->syms ? b->syms[i] : NULL)))
				return false;
		return true;
	}
	w = qipc_type_width(a->type);
	if (w) {
		if (a->n == 0)
			return true;
		if (!a->data || !b->data)
			return false;
		if (a->type == QT_REAL) {
			for (uint64_t i = 0; i < a->n; i++)
				if (!real_eq(((float *)a->data)[i], ((float *)b->data)[i]))
					return false;
			return true;
		}
		if (is_float_type(a->type)) {
			for (uint64_t i = 0; i < a->n; i++)
				if (!float_eq(((double *)a->data)[i], ((double *)b->data)[i]))
					return false;
			return true;
		}
		return memcmp(a->data, b->data, (size_t)a->n * w) == 0;
	}
	if (a->type == QT_LAMBDA && strcmp(str_or_empty(a->s), str_or_empty(b->s)))
		return false;
	if (has_items(a->type)) {
		for (uint64_t i = 0; i < a->n; i++)
			if (!qipc_obj_equal(a->items ? a->items[i] : NULL,
					    b->items ? b->items[i] : NULL))
				return false;
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------- decoder */

struct dec {
	const uint8_t *p;
	size_t n, pos;
	bool le;
	int capability;
	uint64_t max_items;
	int max_depth;
	int err;
};

static struct qipc_obj *dec_fail(struct dec *d, int err, struct qipc_obj *o)
{
	if (!d->err)
		d->err = err;
	qipc_obj_free(o);
	return NULL;
}

static size_t left(const struct dec *d)
{
	return d->n - d->pos;
}

/* NUL-terminated string at the cursor, copied; NULL with d->err set on failure. */
static char *dec_cstr(struct dec *d)
{
	const uint8_t *s = d->p + d->pos;
	const uint8_t *z = left(d) ? memchr(s, 0, left(d)) : NULL;
	size_t len;
	char *c;

	if (!z) {
		d->err = -EBADMSG;
		return NULL;
	}
	len = (size_t)(z - s);
	c = malloc(len + 1);
	if (!c) {
		d->err = -ENOMEM;
		return NULL;
	}
	memcpy(c, s, len);
	c[len] = 0;
	d->pos += len + 1;
	return c;
}

/* Copy n items of width w from the wire into host order. */
static void dec_items(struct dec *d, void *dst, size_t n, size_t w, int type)
{
	const uint8_t *src = d->p + d->pos;
	uint8_t *out = dst;

	if (w == 1 || type == QT_GUID || d->le == host_le()) {
		memcpy(dst, src, n * w);
	} else {
		/* big-endian wire on a little-endian host (or the reverse): swap each item */
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < w; k++)
				out[i * w + k] = src[i * w + (w - 1 - k)];
	}
	d->pos += n * w;
}

/* attr byte and count of a vector or list; min_item is the smallest wire size of one item. */
static bool dec_count(struct dec *d, uint8_t *attr, uint64_t *count, size_t min_item)
{
	uint8_t a;

	if (left(d) < 5) {
		d->err = -EBADMSG;
		return false;
	}
	a = d->p[d->pos];
	if ((a & 0x7f) > 4) {
		d->err = -EBADMSG;
		return false;
	}
	if (a & 0x80) {
		/* capability 6: 8-byte count for vectors of 2^32 items or more */
		if (d->capability < 6 || left(d) < 9) {
			d->err = -EBADMSG;
			return false;
		}
		*count = qipc_ld64(d->p + d->pos + 1, d->le);
		d->pos += 9;
	} else {
		*count = qipc_ld32(d->p + d->pos + 1, d->le);
		d->pos += 5;
	}
	*attr = a & 0x7f;
	if (d->max_items && *count > d->max_items) {
		d->err = -EMSGSIZE;
		return false;
	}
	/* checked before any allocation: the items must fit in what remains */
	if (*count > left(d) / min_item) {
		d->err = -EBADMSG;
		return false;
	}
	return true;
}

static struct qipc_obj *dec_obj(struct dec *d, int depth);

static struct qipc_obj *dec_atom(struct dec *d, int8_t t)
{
	struct qipc_obj *o;
	size_t w;
	uint32_t u32;
	uint64_t u64;

	o = obj_new(t);
	if (!o)
		return dec_fail(d, -ENOMEM, NULL);
	if (t == -QT_SYMBOL || t == QT_ERROR) {
		o->s = dec_cstr(d);
		return o->s ? o : dec_fail(d, d->err, o);
	}
	w = qipc_type_width(-t);
	if (left(d) < w)
		return dec_fail(d, -EBADMSG, o);
	switch (w) {
	case 1:
		o->a.b = d->p[d->pos];
		break;
	case 2:
		o->a.h = (int16_t)qipc_ld16(d->p + d->pos, d->le);
		break;
	case 4:
		u32 = qipc_ld32(d->p + d->pos, d->le);
		if (t == -QT_REAL)
			memcpy(&o->a.e, &u32, 4);
		else
			o->a.i = (int32_t)u32;
		break;
	case 8:
		u64 = qipc_ld64(d->p + d->pos, d->le);
		if (t == -QT_FLOAT || t == -QT_DATETIME)
			memcpy(&o->a.f, &u64, 8);
		else
			o->a.j = (int64_t)u64;
		break;
	default:	/* guid: 16 bytes in textual order, never swapped */
		memcpy(o->a.g, d->p + d->pos, 16);
		break;
	}
	d->pos += w;
	return o;
}

static struct qipc_obj *dec_vector(struct dec *d, int8_t t)
{
	struct qipc_obj *o;
	uint64_t count;
	uint8_t attr;
	size_t w = qipc_type_width(t);

	if (!dec_count(d, &attr, &count, t == QT_SYMBOL ? 1 : w))
		return NULL;
	o = obj_new(t);
	if (!o)
		return dec_fail(d, -ENOMEM, NULL);
	o->attr = attr;
	if (count == 0)
		return o;
	if (t == QT_SYMBOL) {
		o->syms = calloc((size_t)count, sizeof(char *));
		if (!o->syms)
			return dec_fail(d, -ENOMEM, o);
		for (uint64_t i = 0; i < count; i++) {
			o->syms[i] = dec_cstr(d);
			o->n = i + 1;	/* so a failure frees what was decoded */
			if (!o->syms[i])
				return dec_fail(d, d->err, o);
		}
		return o;
	}
	o->data = malloc((size_t)count * w);
	if (!o->data)
		return dec_fail(d, -ENOMEM, o);
	dec_items(d, o->data, (size_t)count, w, t);
	o->n = count;
	return o;
}

/* count children, each decoded at depth + 1 */
static struct qipc_obj *dec_children(struct dec *d, struct qipc_obj *o, uint64_t count, int depth)
{
	o->items = calloc((size_t)(count ? count : 1), sizeof(struct qipc_obj *));
	if (!o->items)
		return dec_fail(d, -ENOMEM, o);
	for (uint64_t i = 0; i < count; i++) {
		o->items[i] = dec_obj(d, depth + 1);
		o->n = i + 1;
		if (!o->items[i])
			return dec_fail(d, d->err, o);
	}
	o->n = count;
	return o;
}

static struct qipc_obj *dec_obj(struct dec *d, int depth)
{
	struct qipc_obj *o, *cd;
	uint64_t count;
	uint8_t attr;
	int8_t t;

	if (depth > d->max_depth)
		return dec_fail(d, -EBADMSG, NULL);
	if (left(d) < 1)
		return dec_fail(d, -EBADMSG, NULL);
	t = (int8_t)d->p[d->pos++];
	switch (qipc_type_class(t)) {
	case QIPC_TC_BAD:
		return dec_fail(d, -EBADMSG, NULL);
	case QIPC_TC_UNSUPPORTED:
		return dec_fail(d, -EPROTO, NULL);
	default:
		break;
	}
	if (t < 0)
		return dec_atom(d, t);
	if (t >= 1 && t <= 19)
		return dec_vector(d, t);
	switch (t) {
	case QT_LIST:
		/* the smallest object is 2 bytes (e.g. `f5 00`, `65 00`) */
		if (!dec_count(d, &attr, &count, 2))
			return NULL;
		o = obj_new(QT_LIST);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		o->attr = attr;
		if (count == 0)
			return o;
		return dec_children(d, o, count, depth);
	case QT_TABLE:
		if (left(d) < 1)
			return dec_fail(d, -EBADMSG, NULL);
		attr = d->p[d->pos++];
		if (attr > 4)
			return dec_fail(d, -EBADMSG, NULL);
		o = obj_new(QT_TABLE);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		o->attr = attr;
		o = dec_children(d, o, 1, depth);
		if (!o)
			return NULL;
		/* a table is a flipped column dictionary: symbol names ! general list of columns */
		cd = o->items[0];
		if (cd->type != QT_DICT || cd->items[0]->type != QT_SYMBOL ||
		    cd->items[1]->type != QT_LIST || cd->items[0]->n != cd->items[1]->n)
			return dec_fail(d, -EBADMSG, o);
		return o;
	case QT_DICT:
	case QT_SORTED_DICT:
		o = obj_new(t);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		o->attr = t == QT_SORTED_DICT ? 1 : 0;
		return dec_children(d, o, 2, depth);
	case QT_LAMBDA:
		o = obj_new(QT_LAMBDA);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		o->s = dec_cstr(d);
		if (!o->s)
			return dec_fail(d, d->err, o);
		o = dec_children(d, o, 1, depth);
		if (o && o->items[0]->type != QT_CHAR)
			return dec_fail(d, -EBADMSG, o);
		return o;
	case QT_UNARY:
	case QT_BINARY:
	case QT_ITERATOR:
		if (left(d) < 1)
			return dec_fail(d, -EBADMSG, NULL);
		o = obj_new(t);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		o->a.x = d->p[d->pos++];
		return o;
	case QT_PROJECTION:
	case QT_COMPOSITION:
		/* a 4-byte count with no attribute byte */
		if (left(d) < 4)
			return dec_fail(d, -EBADMSG, NULL);
		count = qipc_ld32(d->p + d->pos, d->le);
		d->pos += 4;
		if (count == 0 || count > left(d) / 2)
			return dec_fail(d, -EBADMSG, NULL);
		if (d->max_items && count > d->max_items)
			return dec_fail(d, -EMSGSIZE, NULL);
		o = obj_new(t);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		return dec_children(d, o, count, depth);
	default:	/* adverbs 106..111: one operand */
		o = obj_new(t);
		if (!o)
			return dec_fail(d, -ENOMEM, NULL);
		return dec_children(d, o, 1, depth);
	}
}

struct qipc_obj *qipc_decode(const uint8_t *payload, size_t n,
			     const struct qipc_decode_opts *opts, int *err)
{
	struct dec d = {
		.p = payload,
		.n = n,
		.le = opts ? opts->is_little_endian : true,
		.capability = opts ? opts->capability : 3,
		.max_items = opts ? opts->max_items : 0,
		.max_depth = opts && opts->max_depth > 0 ? opts->max_depth : DEFAULT_MAX_DEPTH,
	};
	struct qipc_obj *o;
	int dummy;

	if (!err)
		err = &dummy;
	if (d.max_depth > HARD_MAX_DEPTH)
		d.max_depth = HARD_MAX_DEPTH;
	o = dec_obj(&d, 0);
	if (!o) {
		*err = d.err ? d.err : -EBADMSG;
		return NULL;
	}
	if (d.pos != n) {
		/* q's validator rejects a byte left over after the value */
		qipc_obj_free(o);
		*err = -EBADMSG;
		return NULL;
	}
	*err = 0;
	return o;
}

struct qipc_obj *qipc_decode_msg(const uint8_t *msg, size_t n, uint64_t max_bytes,
				 uint8_t *type, int *err)
{
	struct qipc_header h;
	struct qipc_decode_opts opts = { .capability = 6 };
	struct qipc_obj *o;
	uint8_t *buf;
	int64_t u, rc;
	int r, dummy;

	if (!err)
		err = &dummy;
	r = qipc_header_parse(msg, n, 6, max_bytes, &h);
	if (r <= 0) {
		*err = r ? r : -EBADMSG;
		return NULL;
	}
	if (h.length != n) {
		*err = -EBADMSG;
		return NULL;
	}
	if (type)
		*type = h.msg_type;
	opts.is_little_endian = h.is_little_endian;
	if (!h.compressed)
		return qipc_decode(msg + QIPC_HDR_SIZE, n - QIPC_HDR_SIZE, &opts, err);
	u = qipc_compressed_orig_len(msg, n);
	if (u < 0) {
		*err = (int)u;
		return NULL;
	}
	if ((max_bytes && (uint64_t)u > max_bytes) || (uint64_t)u > SIZE_MAX) {
		*err = -EMSGSIZE;
		return NULL;
	}
	buf = malloc((size_t)u);
	if (!buf) {
		*err = -ENOMEM;
		return NULL;
	}
	rc = qipc_decompress(msg, n, buf, (size_t)u);
	if (rc < 0) {
		free(buf);
		*err = (int)rc;
		return NULL;
	}
	o = qipc_decode(buf + QIPC_HDR_SIZE, (size_t)u - QIPC_HDR_SIZE, &opts, err);
	free(buf);
	return o;
}

/* ------------------------------------------------------------------- encoder */

#define ENC_MAX_DEPTH 4096

static int64_t add_size(int64_t a, int64_t b)
{
	if (a < 0)
		return a;
	if (b < 0)
		return b;
	if (a > INT64_MAX - b)
		return -EPROTO;
	return a + b;
}

static int64_t count_size(uint64_t n)
{
	return n >= (1ULL << 32) ? 9 : 5;	/* attr + count */
}

static int64_t enc_size(const struct qipc_obj *o, int depth)
{
	int64_t sz;
	size_t w;

	if (!o || depth > ENC_MAX_DEPTH)
		return -EPROTO;
	if (qipc_type_class(o->type) != QIPC_TC_OK)
		return -EPROTO;
	if (o->type < 0) {
		if (o->type == -QT_SYMBOL || o->type == QT_ERROR)
			return 2 + (int64_t)strlen(str_or_empty(o->s));
		return 1 + (int64_t)qipc_type_width(-o->type);
	}
	if (o->type >= 1 && o->type <= 19 && o->n && !o->data && !o->syms)
		return -EPROTO;
	/* attribute bytes are 0..4; the 0x80 count flag is the encoder's business */
	if (o->attr > 4 && (o->type <= 19 || o->type == QT_TABLE))
		return -EPROTO;
	if (o->type == QT_SYMBOL) {
		sz = 1 + count_size(o->n);
		for (uint64_t i = 0; i < o->n; i++)
			sz = add_size(sz, 1 + (int64_t)strlen(str_or_empty(o->syms[i])));
		return sz;
	}
	w = qipc_type_width(o->type);
	if (w) {
		if (o->n > (uint64_t)(INT64_MAX / 16))
			return -EPROTO;
		return 1 + count_size(o->n) + (int64_t)(o->n * w);
	}
	switch (o->type) {
	case QT_LIST:
		sz = 1 + count_size(o->n);
		break;
	case QT_TABLE:
		if (o->n != 1 || !o->items[0] || o->items[0]->type != QT_DICT)
			return -EPROTO;
		sz = 2;
		break;
	case QT_DICT:
	case QT_SORTED_DICT:
		if (o->n != 2)
			return -EPROTO;
		sz = 1;
		break;
	case QT_LAMBDA:
		if (o->n != 1 || !o->items[0] || o->items[0]->type != QT_CHAR)
			return -EPROTO;
		sz = 2 + (int64_t)strlen(str_or_empty(o->s));
		break;
	case QT_UNARY:
	case QT_BINARY:
	case QT_ITERATOR:
		return 2;
	case QT_PROJECTION:
	case QT_COMPOSITION:
		if (o->n == 0 || o->n > UINT32_MAX)
			return -EPROTO;
		sz = 5;
		break;
	default:	/* adverbs */
		if (o->n != 1)
			return -EPROTO;
		sz = 1;
		break;
	}
	if (o->n && !o->items)
		return -EPROTO;
	for (uint64_t i = 0; i < o->n && sz >= 0; i++)
		sz = add_size(sz, enc_size(o->items[i], depth + 1));
	return sz;
}

static uint8_t *enc_count(uint8_t *p, uint8_t attr, uint64_t n)
{
	if (n >= (1ULL << 32)) {
		*p++ = attr | 0x80;
		qipc_st64(p, n, true);
		return p + 8;
	}
	*p++ = attr;
	qipc_st32(p, (uint32_t)n, true);
	return p + 4;
}

static uint8_t *enc_cstr(uint8_t *p, const char *s)
{
	size_t l = strlen(str_or_empty(s));

	memcpy(p, str_or_empty(s), l);
	p[l] = 0;
	return p + l + 1;
}

/* Write o; the caller has sized the buffer with enc_size, which also validated o. */
static uint8_t *enc_obj(const struct qipc_obj *o, uint8_t *p)
{
	size_t w;
	uint32_t u32;
	uint64_t u64;

	*p++ = (uint8_t)o->type;
	if (o->type < 0) {
		if (o->type == -QT_SYMBOL || o->type == QT_ERROR)
			return enc_cstr(p, o->s);
		w = qipc_type_width(-o->type);
		switch (w) {
		case 1:
			*p = o->a.b;
			break;
		case 2:
			p[0] = (uint8_t)o->a.h;
			p[1] = (uint8_t)((uint16_t)o->a.h >> 8);
			break;
		case 4:
			if (o->type == -QT_REAL)
				memcpy(&u32, &o->a.e, 4);
			else
				u32 = (uint32_t)o->a.i;
			qipc_st32(p, u32, true);
			break;
		case 8:
			if (o->type == -QT_FLOAT || o->type == -QT_DATETIME)
				memcpy(&u64, &o->a.f, 8);
			else
				u64 = (uint64_t)o->a.j;
			qipc_st64(p, u64, true);
			break;
		default:
			memcpy(p, o->a.g, 16);
			break;
		}
		return p + w;
	}
	if (o->type == QT_SYMBOL) {
		p = enc_count(p, o->attr, o->n);
		for (uint64_t i = 0; i < o->n; i++)
			p = enc_cstr(p, o->syms[i]);
		return p;
	}
	w = qipc_type_width(o->type);
	if (w) {
		p = enc_count(p, o->attr, o->n);
		if (!o->n)
			return p;
		if (w == 1 || o->type == QT_GUID || host_le()) {
			memcpy(p, o->data, (size_t)o->n * w);
		} else {
			const uint8_t *s = o->data;

			for (size_t i = 0; i < (size_t)o->n; i++)
				for (size_t k = 0; k < w; k++)
					p[i * w + k] = s[i * w + (w - 1 - k)];
		}
		return p + (size_t)o->n * w;
	}
	switch (o->type) {
	case QT_LIST:
		p = enc_count(p, o->attr, o->n);
		break;
	case QT_TABLE:
		*p++ = o->attr;
		break;
	case QT_LAMBDA:
		p = enc_cstr(p, o->s);
		break;
	case QT_UNARY:
	case QT_BINARY:
	case QT_ITERATOR:
		*p++ = o->a.x;
		return p;
	case QT_PROJECTION:
	case QT_COMPOSITION:
		qipc_st32(p, (uint32_t)o->n, true);
		p += 4;
		break;
	default:	/* dicts and adverbs: children follow the type byte */
		break;
	}
	for (uint64_t i = 0; i < o->n; i++)
		p = enc_obj(o->items[i], p);
	return p;
}

int64_t qipc_encoded_size(const struct qipc_obj *o)
{
	return enc_size(o, 0);
}

int64_t qipc_encode(const struct qipc_obj *o, uint8_t *out, size_t cap)
{
	int64_t sz = enc_size(o, 0);

	if (sz < 0)
		return sz;
	if ((uint64_t)sz > cap)
		return -ENOSPC;
	return enc_obj(o, out) - out;
}

int qipc_encode_msg(const struct qipc_obj *o, enum qipc_msg_type type, bool compress,
		    uint8_t **out, size_t *out_len)
{
	int64_t sz = enc_size(o, 0), c;
	size_t total;
	uint8_t *m, *z;

	*out = NULL;
	*out_len = 0;
	if (sz < 0)
		return (int)sz;
	if ((uint64_t)sz > QIPC_MAX_MSG_CAP6 - QIPC_HDR_SIZE || (uint64_t)sz > SIZE_MAX - 16)
		return -EMSGSIZE;
	total = (size_t)sz + QIPC_HDR_SIZE;
	m = malloc(total);
	if (!m)
		return -ENOMEM;
	qipc_header_build(m, type, false, total);
	enc_obj(o, m + QIPC_HDR_SIZE);
	if (compress && total > 2008) {
		z = malloc(total / 2);
		if (!z) {
			free(m);
			return -ENOMEM;
		}
		c = qipc_compress(m, total, z, total / 2);
		if (c > 0) {
			free(m);
			*out = z;
			*out_len = (size_t)c;
			return 0;
		}
		free(z);
	}
	*out = m;
	*out_len = total;
	return 0;
}
