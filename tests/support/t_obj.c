/*
 * t_obj — the integration tests' own q object model and (de)serialiser. Written from
 * shared/docs/q-ipc-protocol.md §3, §5 and §6 independently of codec/, so that tests do not
 * inherit a codec bug. Only little-endian output is produced; both byte orders are read.
 */
#include "tests/support/t_obj.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_MAX_DEPTH 64

size_t t_type_width(int t)
{
	switch (t) {
	case T_BOOL: case T_BYTE: case T_CHAR:
		return 1;
	case T_SHORT:
		return 2;
	case T_INT: case T_REAL: case T_MONTH: case T_DATE: case T_MINUTE: case T_SECOND:
	case T_TIME:
		return 4;
	case T_LONG: case T_FLOAT: case T_TIMESTAMP: case T_DATETIME: case T_TIMESPAN:
		return 8;
	case T_GUID:
		return 16;
	default:
		return 0;
	}
}

static struct t_obj *obj_new(int8_t type)
{
	struct t_obj *o = calloc(1, sizeof(*o));

	if (o)
		o->type = type;
	return o;
}

struct t_obj *t_atom(int8_t type)
{
	return obj_new(type);
}

struct t_obj *t_bool(bool v)
{
	struct t_obj *o = obj_new(-T_BOOL);

	if (o)
		o->a.x = v ? 1 : 0;
	return o;
}

struct t_obj *t_byte(uint8_t v)
{
	struct t_obj *o = obj_new(-T_BYTE);

	if (o)
		o->a.x = v;
	return o;
}

struct t_obj *t_int(int32_t v)
{
	struct t_obj *o = obj_new(-T_INT);

	if (o)
		o->a.i = v;
	return o;
}

struct t_obj *t_long(int64_t v)
{
	struct t_obj *o = obj_new(-T_LONG);

	if (o)
		o->a.j = v;
	return o;
}

struct t_obj *t_float(double v)
{
	struct t_obj *o = obj_new(-T_FLOAT);

	if (o)
		o->a.f = v;
	return o;
}

struct t_obj *t_char(char c)
{
	struct t_obj *o = obj_new(-T_CHAR);

	if (o)
		o->a.x = (uint8_t)c;
	return o;
}

static struct t_obj *text_obj(int8_t type, const char *s)
{
	struct t_obj *o = obj_new(type);

	if (!o)
		return NULL;
	o->s = strdup(s);
	if (!o->s) {
		free(o);
		return NULL;
	}
	return o;
}

struct t_obj *t_sym(const char *s)
{
	return text_obj(-T_SYM, s);
}

struct t_obj *t_err(const char *msg)
{
	return text_obj(T_ERROR, msg);
}

struct t_obj *t_vec(int8_t type, uint64_t n)
{
	struct t_obj *o = obj_new(type);

	if (!o)
		return NULL;
	o->n = n;
	if (type == T_SYM) {
		o->syms = calloc(n ? n : 1, sizeof(char *));
		if (!o->syms)
			goto fail;
		for (uint64_t k = 0; k < n; k++) {
			o->syms[k] = strdup("");
			if (!o->syms[k])
				goto fail;
		}
		return o;
	}
	if (t_type_width(type) == 0)
		goto fail;
	o->data = calloc(n ? n : 1, t_type_width(type));
	if (!o->data)
		goto fail;
	return o;
fail:
	t_free(o);
	return NULL;
}

struct t_obj *t_strn(const char *s, size_t n)
{
	struct t_obj *o = t_vec(T_CHAR, n);

	if (o && n)
		memcpy(o->data, s, n);
	return o;
}

struct t_obj *t_str(const char *s)
{
	return t_strn(s, strlen(s));
}

struct t_obj *t_longs(uint64_t n, const int64_t *v)
{
	struct t_obj *o = t_vec(T_LONG, n);

	if (o && n)
		memcpy(o->data, v, n * sizeof(int64_t));
	return o;
}

struct t_obj *t_list_new(uint64_t n)
{
	struct t_obj *o = obj_new(T_LIST);

	if (!o)
		return NULL;
	o->n = n;
	o->items = calloc(n ? n : 1, sizeof(struct t_obj *));
	if (!o->items) {
		free(o);
		return NULL;
	}
	return o;
}

static struct t_obj *list_va(bool has_head, struct t_obj *head, uint64_t n, va_list ap)
{
	struct t_obj *o = t_list_new(n + (has_head ? 1 : 0));
	bool is_ok = o != NULL;
	uint64_t k = 0;

	/* Items are owned from the call on: free them even when the list cannot be built. */
	if (has_head) {
		is_ok = is_ok && head;
		if (o)
			o->items[k] = head;
		else
			t_free(head);
		k++;
	}
	for (uint64_t m = 0; m < n; m++, k++) {
		struct t_obj *it = va_arg(ap, struct t_obj *);

		is_ok = is_ok && it;
		if (o)
			o->items[k] = it;
		else
			t_free(it);
	}
	if (!is_ok) {
		t_free(o);
		return NULL;
	}
	return o;
}

struct t_obj *t_list(uint64_t n, ...)
{
	struct t_obj *o;
	va_list ap;

	va_start(ap, n);
	o = list_va(false, NULL, n, ap);
	va_end(ap);
	return o;
}

struct t_obj *t_call(const char *fn, int nargs, ...)
{
	struct t_obj *o;
	va_list ap;

	va_start(ap, nargs);
	o = list_va(true, t_sym(fn), (uint64_t)nargs, ap);
	va_end(ap);
	return o;
}

struct t_obj *t_dict(struct t_obj *keys, struct t_obj *vals)
{
	struct t_obj *o = obj_new(T_DICT);

	if (!o || !keys || !vals) {
		free(o);
		t_free(keys);
		t_free(vals);
		return NULL;
	}
	o->n = 2;
	o->items = calloc(2, sizeof(struct t_obj *));
	if (!o->items) {
		free(o);
		t_free(keys);
		t_free(vals);
		return NULL;
	}
	o->items[0] = keys;
	o->items[1] = vals;
	return o;
}

void t_free(struct t_obj *o)
{
	if (!o)
		return;
	if (o->syms) {
		for (uint64_t k = 0; k < o->n; k++)
			free(o->syms[k]);
		free(o->syms);
	}
	if (o->items) {
		for (uint64_t k = 0; k < o->n; k++)
			t_free(o->items[k]);
		free(o->items);
	}
	free(o->s);
	free(o->data);
	free(o);
}

struct t_obj *t_copy(const struct t_obj *o)
{
	struct t_obj *c;

	if (!o)
		return NULL;
	c = obj_new(o->type);
	if (!c)
		return NULL;
	c->attr = o->attr;
	c->n = o->n;
	c->a = o->a;
	if (o->s && !(c->s = strdup(o->s)))
		goto fail;
	if (o->data) {
		size_t w = t_type_width(o->type);

		c->data = malloc(o->n * w > 0 ? o->n * w : 1);
		if (!c->data)
			goto fail;
		memcpy(c->data, o->data, o->n * w);
	}
	if (o->syms) {
		c->syms = calloc(o->n ? o->n : 1, sizeof(char *));
		if (!c->syms)
			goto fail;
		for (uint64_t k = 0; k < o->n; k++)
			if (!(c->syms[k] = strdup(o->syms[k])))
				goto fail;
	}
	if (o->items) {
		c->items = calloc(o->n ? o->n : 1, sizeof(struct t_obj *));
		if (!c->items)
			goto fail;
		for (uint64_t k = 0; k < o->n; k++)
			if (o->items[k] && !(c->items[k] = t_copy(o->items[k])))
				goto fail;
	}
	return c;
fail:
	t_free(c);
	return NULL;
}

/* Atom payload width by (negative) type; 0 for symbol/error/function atoms. */
static size_t atom_width(int t)
{
	return t < 0 && t > -20 ? t_type_width(-t) : 0;
}

bool t_equal(const struct t_obj *a, const struct t_obj *b)
{
	if (!a || !b)
		return a == b;
	if (a->type != b->type || a->n != b->n)
		return false;
	if (a->type == -T_SYM || a->type == T_ERROR)
		return strcmp(a->s, b->s) == 0;
	if (a->type == -T_FLOAT || a->type == -T_DATETIME)
		return a->a.f == b->a.f || (a->a.f != a->a.f && b->a.f != b->a.f);
	if (a->type == -T_REAL)
		return a->a.e == b->a.e || (a->a.e != a->a.e && b->a.e != b->a.e);
	if (a->type < 0)
		return memcmp(&a->a, &b->a, atom_width(a->type)) == 0;
	if (a->type == T_SYM) {
		for (uint64_t k = 0; k < a->n; k++)
			if (strcmp(a->syms[k], b->syms[k]) != 0)
				return false;
		return true;
	}
	if (a->data)
		return b->data && memcmp(a->data, b->data, a->n * t_type_width(a->type)) == 0;
	if ((a->s || b->s) && (!a->s || !b->s || strcmp(a->s, b->s) != 0))
		return false;
	if (a->type == T_UNARY || a->type == T_BINARY || a->type == T_ITERATOR)
		return a->a.x == b->a.x;
	for (uint64_t k = 0; k < a->n; k++)
		if (!t_equal(a->items[k], b->items[k]))
			return false;
	return true;
}

bool t_is_str(const struct t_obj *o, const char *s)
{
	size_t n = strlen(s);

	return o && o->type == T_CHAR && o->n == n && memcmp(o->data, s, n) == 0;
}

bool t_is_err_prefix(const struct t_obj *o, const char *prefix)
{
	return o && o->type == T_ERROR && strncmp(o->s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ encoding */

int64_t t_encoded_size(const struct t_obj *o)
{
	int64_t sz, k;

	if (!o)
		return -EPROTO;
	if (o->type == -T_SYM || o->type == T_ERROR)
		return 1 + (int64_t)strlen(o->s) + 1;
	if (o->type < 0)
		return atom_width(o->type) ? 1 + (int64_t)atom_width(o->type) : -EPROTO;
	if (o->type == T_SYM) {
		sz = 6;
		for (uint64_t m = 0; m < o->n; m++)
			sz += (int64_t)strlen(o->syms[m]) + 1;
		return sz;
	}
	if (o->type >= 1 && o->type <= 19)
		return 6 + (int64_t)(o->n * t_type_width(o->type));
	switch (o->type) {
	case T_LIST:
		sz = 6;
		break;
	case T_DICT:
	case T_SORTED_DICT:
		sz = 1;
		break;
	case T_TABLE:
		sz = 2;
		break;
	case T_LAMBDA:
		sz = 1 + (int64_t)strlen(o->s ? o->s : "") + 1;
		break;
	case T_UNARY:
	case T_BINARY:
	case T_ITERATOR:
		return 2;
	case T_PROJECTION:
	case T_COMPOSITION:
		sz = 5;
		break;
	default:
		if (o->type >= T_ADVERB_FIRST && o->type <= T_ADVERB_LAST) {
			sz = 1;
			break;
		}
		return -EPROTO;
	}
	for (uint64_t m = 0; m < o->n; m++) {
		k = t_encoded_size(o->items[m]);
		if (k < 0)
			return k;
		sz += k;
	}
	return sz;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);	/* all supported hosts are little-endian, as the protocol default */
}

static size_t encode_into(const struct t_obj *o, uint8_t *p)
{
	size_t off = 0, len;

	p[off++] = (uint8_t)o->type;
	if (o->type == -T_SYM || o->type == T_ERROR) {
		len = strlen(o->s) + 1;
		memcpy(p + off, o->s, len);
		return off + len;
	}
	if (o->type < 0) {
		memcpy(p + off, &o->a, atom_width(o->type));
		return off + atom_width(o->type);
	}
	if (o->type <= 19) {
		p[off++] = o->attr;
		put32(p + off, (uint32_t)o->n);
		off += 4;
		if (o->type == T_SYM) {
			for (uint64_t m = 0; m < o->n; m++) {
				len = strlen(o->syms[m]) + 1;
				memcpy(p + off, o->syms[m], len);
				off += len;
			}
			return off;
		}
		if (o->type != T_LIST) {
			len = o->n * t_type_width(o->type);
			memcpy(p + off, o->data, len);
			return off + len;
		}
	} else if (o->type == T_TABLE) {
		p[off++] = o->attr;
	} else if (o->type == T_LAMBDA) {
		len = strlen(o->s ? o->s : "") + 1;
		memcpy(p + off, o->s ? o->s : "", len);
		off += len;
	} else if (o->type == T_UNARY || o->type == T_BINARY || o->type == T_ITERATOR) {
		p[off++] = o->a.x;
		return off;
	} else if (o->type == T_PROJECTION || o->type == T_COMPOSITION) {
		put32(p + off, (uint32_t)o->n);
		off += 4;
	}
	for (uint64_t m = 0; m < o->n; m++)
		off += encode_into(o->items[m], p + off);
	return off;
}

int t_encode_msg(const struct t_obj *o, int msg_type, uint8_t **out, size_t *out_len)
{
	int64_t sz = t_encoded_size(o);
	uint8_t *buf;

	if (sz < 0)
		return (int)sz;
	if (sz + 8 > 0x7fffffff)
		return -EMSGSIZE;
	buf = malloc((size_t)sz + 8);
	if (!buf)
		return -ENOMEM;
	buf[0] = 1;
	buf[1] = (uint8_t)msg_type;
	buf[2] = 0;
	buf[3] = 0;
	put32(buf + 4, (uint32_t)(sz + 8));
	encode_into(o, buf + 8);
	*out = buf;
	*out_len = (size_t)sz + 8;
	return 0;
}

/* ------------------------------------------------------------------ decoding */

struct rd {
	const uint8_t *p;
	size_t n, off;
	bool is_le;
	int err;
};

static bool rd_need(struct rd *r, size_t k)
{
	if (r->n - r->off < k) {
		r->err = -EBADMSG;
		return false;
	}
	return true;
}

/* Copy k bytes of a number in the message's byte order into host (little-endian) order. */
static void rd_num(struct rd *r, void *dst, size_t k)
{
	uint8_t *d = dst;

	if (r->is_le) {
		memcpy(d, r->p + r->off, k);
	} else {
		for (size_t m = 0; m < k; m++)
			d[m] = r->p[r->off + k - 1 - m];
	}
	r->off += k;
}

static char *rd_cstr(struct rd *r)
{
	const uint8_t *z;
	char *s;

	z = memchr(r->p + r->off, 0, r->n - r->off);
	if (!z) {
		r->err = -EBADMSG;
		return NULL;
	}
	s = strdup((const char *)r->p + r->off);
	if (!s)
		r->err = -ENOMEM;
	r->off = (size_t)(z - r->p) + 1;
	return s;
}

static struct t_obj *rd_obj(struct rd *r, int depth);

static bool rd_items(struct rd *r, struct t_obj *o, uint64_t n, int depth)
{
	/* Every object takes at least one byte: refuse counts the input cannot hold. */
	if (n > r->n - r->off) {
		r->err = -EBADMSG;
		return false;
	}
	o->items = calloc(n ? n : 1, sizeof(struct t_obj *));
	if (!o->items) {
		r->err = -ENOMEM;
		return false;
	}
	o->n = n;
	for (uint64_t k = 0; k < n; k++) {
		o->items[k] = rd_obj(r, depth + 1);
		if (!o->items[k])
			return false;
	}
	return true;
}

static struct t_obj *rd_obj(struct rd *r, int depth)
{
	struct t_obj *o;
	uint32_t cnt;
	int8_t type;

	if (depth > T_MAX_DEPTH) {
		r->err = -EBADMSG;
		return NULL;
	}
	if (!rd_need(r, 1))
		return NULL;
	type = (int8_t)r->p[r->off++];
	o = obj_new(type);
	if (!o) {
		r->err = -ENOMEM;
		return NULL;
	}
	if (type == -T_SYM || type == T_ERROR) {
		o->s = rd_cstr(r);
		if (!o->s)
			goto fail;
		return o;
	}
	if (type < 0) {
		size_t w = atom_width(type);

		if (w == 0) {
			r->err = -EPROTO;
			goto fail;
		}
		if (!rd_need(r, w))
			goto fail;
		if (type == -T_GUID) {
			memcpy(o->a.g, r->p + r->off, 16);
			r->off += 16;
		} else {
			rd_num(r, &o->a, w);
		}
		return o;
	}
	if (type <= 19 || type == T_TABLE) {
		if (!rd_need(r, 1))
			goto fail;
		o->attr = r->p[r->off++];
		if (type == T_TABLE) {
			if (!rd_items(r, o, 1, depth))
				goto fail;
			return o;
		}
		if (!rd_need(r, 4))
			goto fail;
		rd_num(r, &cnt, 4);
		if (type == T_LIST) {
			if (!rd_items(r, o, cnt, depth))
				goto fail;
			return o;
		}
		if (type == T_SYM) {
			if (cnt > r->n - r->off) {
				r->err = -EBADMSG;
				goto fail;
			}
			o->syms = calloc(cnt ? cnt : 1, sizeof(char *));
			if (!o->syms) {
				r->err = -ENOMEM;
				goto fail;
			}
			for (uint32_t k = 0; k < cnt; k++) {
				o->n = k;
				o->syms[k] = rd_cstr(r);
				if (!o->syms[k])
					goto fail;
			}
			o->n = cnt;
			return o;
		}
		if (t_type_width(type) == 0) {
			r->err = -EPROTO;
			goto fail;
		}
		{
			size_t w = t_type_width(type);
			uint8_t *d;

			if ((uint64_t)cnt * w > r->n - r->off) {
				r->err = -EBADMSG;
				goto fail;
			}
			d = malloc(cnt ? (size_t)cnt * w : 1);
			if (!d) {
				r->err = -ENOMEM;
				goto fail;
			}
			o->data = d;
			o->n = cnt;
			if (w == 1 || type == T_GUID) {
				memcpy(d, r->p + r->off, (size_t)cnt * w);
				r->off += (size_t)cnt * w;
			} else {
				for (uint32_t k = 0; k < cnt; k++)
					rd_num(r, d + (size_t)k * w, w);
			}
		}
		return o;
	}
	switch (type) {
	case T_DICT:
	case T_SORTED_DICT:
		if (!rd_items(r, o, 2, depth))
			goto fail;
		return o;
	case T_LAMBDA:
		o->s = rd_cstr(r);
		if (!o->s || !rd_items(r, o, 1, depth))
			goto fail;
		return o;
	case T_UNARY:
	case T_BINARY:
	case T_ITERATOR:
		if (!rd_need(r, 1))
			goto fail;
		o->a.x = r->p[r->off++];
		return o;
	case T_PROJECTION:
	case T_COMPOSITION:
		if (!rd_need(r, 4))
			goto fail;
		rd_num(r, &cnt, 4);
		if (!rd_items(r, o, cnt, depth))
			goto fail;
		return o;
	default:
		if (type >= T_ADVERB_FIRST && type <= T_ADVERB_LAST) {
			if (!rd_items(r, o, 1, depth))
				goto fail;
			return o;
		}
		r->err = -EPROTO;
		goto fail;
	}
fail:
	if (!r->err)
		r->err = -EBADMSG;
	t_free(o);
	return NULL;
}

static uint64_t msg_len(const uint8_t *m)
{
	uint32_t v;

	if (m[0] == 1)
		memcpy(&v, m + 4, 4);
	else
		v = (uint32_t)m[4] << 24 | (uint32_t)m[5] << 16 | (uint32_t)m[6] << 8 | m[7];
	return v + ((uint64_t)m[3] << 32);
}

int64_t t_decompress(const uint8_t *cmsg, size_t n, uint8_t **out)
{
	uint32_t tab[256] = { 0 };
	uint8_t *o, f = 0, b = 0;
	size_t r = 12, w = 8, k = 8, u;
	uint32_t u32;

	if (n < 12)
		return -EBADMSG;
	if (cmsg[0] == 1)
		memcpy(&u32, cmsg + 8, 4);
	else
		u32 = (uint32_t)cmsg[8] << 24 | (uint32_t)cmsg[9] << 16 |
		      (uint32_t)cmsg[10] << 8 | cmsg[11];
	u = u32;
	if (u <= 8 || u > (1u << 30))	/* tests never expect more than 1 GiB */
		return -EBADMSG;
	o = malloc(u);
	if (!o)
		return -ENOMEM;
	memcpy(o, cmsg, 8);
	o[2] = 0;
	if (cmsg[0] == 1) {
		memcpy(o + 4, &u32, 4);
	} else {
		o[4] = (uint8_t)(u32 >> 24);
		o[5] = (uint8_t)(u32 >> 16);
		o[6] = (uint8_t)(u32 >> 8);
		o[7] = (uint8_t)u32;
	}
	while (w < u) {
		if (b == 0) {
			if (r >= n)
				goto bad;
			f = cmsg[r++];
			b = 1;
		}
		if (!(f & b)) {
			if (r >= n)
				goto bad;
			o[w++] = cmsg[r++];
			while (k + 1 < w) {
				tab[o[k] ^ o[k + 1]] = (uint32_t)k;
				k++;
			}
		} else {
			size_t s, x;

			if (r + 2 > n)
				goto bad;
			s = tab[cmsg[r]];
			x = cmsg[r + 1];
			r += 2;
			if (s == 0 || w + 2 + x > u)
				goto bad;
			for (size_t m = 0; m < 2 + x; m++)
				o[w + m] = o[s + m];
			while (k < w + 1) {
				tab[o[k] ^ o[k + 1]] = (uint32_t)k;
				k++;
			}
			w += 2 + x;
			k = w;
		}
		b = (uint8_t)(b << 1);
	}
	if (r != n)
		goto bad;
	*out = o;
	return (int64_t)u;
bad:
	free(o);
	return -EBADMSG;
}

int64_t t_compress(const uint8_t *m, size_t u, uint8_t **out)
{
	uint32_t tab[256] = { 0 };
	size_t s = 8, d = 12, c = 12, budget = u / 2, ps = 0;
	uint8_t f = 0, b = 0, ph = 0, *o;
	uint32_t v;

	/* Protocol page 6.4, step by step; 32-bit lengths only (tests never go beyond). */
	if (u <= 2008 || u > 0xffffffffu)
		return 0;
	o = malloc(budget);
	if (!o)
		return -ENOMEM;
	memcpy(o, m, 4);
	o[2] = 1;
	v = (uint32_t)u;
	memcpy(o + 8, &v, 4);
	while (s < u) {
		bool is_match = false;
		uint8_t h = 0;
		size_t p = 0;

		if (b == 0) {
			if (d + 17 > budget) {
				free(o);
				return 0;
			}
			o[c] = f;
			c = d++;
			f = 0;
			b = 1;
		}
		if (s + 3 <= u) {
			h = m[s] ^ m[s + 1];
			p = tab[h];
			is_match = p != 0 && m[p] == m[s];
		}
		if (ps > 0) {
			tab[ph] = (uint32_t)ps;
			ps = 0;
		}
		if (!is_match) {
			o[d++] = m[s];
			if (s + 3 <= u) {
				ph = h;
				ps = s;
			}
			s++;
		} else {
			size_t s0 = s + 2, p2 = p + 2, lim = s0 + 255 < u ? s0 + 255 : u, x = 0;

			tab[h] = (uint32_t)s;
			f |= b;
			while (s0 + x < lim && m[p2 + x] == m[s0 + x])
				x++;
			o[d++] = h;
			o[d++] = (uint8_t)x;
			s = s0 + x;
		}
		b = (uint8_t)(b << 1);
	}
	o[c] = f;
	v = (uint32_t)d;
	memcpy(o + 4, &v, 4);
	*out = o;
	return (int64_t)d;
}

struct t_obj *t_decode_msg(const uint8_t *msg, size_t n, int *msg_type, int *err)
{
	uint8_t *plain = NULL;
	struct t_obj *o;
	struct rd r;

	*err = 0;
	if (n < 10 || msg[0] > 1 || msg[1] > 2 || msg[2] > 1 || msg_len(msg) != n) {
		*err = -EBADMSG;
		return NULL;
	}
	*msg_type = msg[1];
	if (msg[2] == 1) {
		int64_t u = t_decompress(msg, n, &plain);

		if (u < 0) {
			*err = (int)u;
			return NULL;
		}
		msg = plain;
		n = (size_t)u;
	}
	r = (struct rd){ .p = msg, .n = n, .off = 8, .is_le = msg[0] == 1 };
	o = rd_obj(&r, 0);
	if (o && r.off != n) {
		t_free(o);
		o = NULL;
		r.err = -EBADMSG;
	}
	free(plain);
	if (!o)
		*err = r.err ? r.err : -EBADMSG;
	return o;
}

/* ------------------------------------------------------------------ printing */

struct sb {
	char *p;
	size_t cap, len;
};

static void sb_add(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct sb *b, const char *fmt, ...)
{
	size_t room = b->len < b->cap ? b->cap - b->len : 0;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (k > 0)
		b->len += (size_t)k;
}

static void fmt_item(struct sb *b, int type, const void *v)
{
	int64_t j;
	int32_t i;
	int16_t h;
	double f;
	float e;

	switch (type) {
	case T_BOOL:
		sb_add(b, "%ub", *(const uint8_t *)v);
		break;
	case T_BYTE:
		sb_add(b, "0x%02x", *(const uint8_t *)v);
		break;
	case T_CHAR:
		sb_add(b, "%c", *(const char *)v);
		break;
	case T_SHORT:
		memcpy(&h, v, 2);
		sb_add(b, "%dh", h);
		break;
	case T_INT: case T_MONTH: case T_DATE: case T_MINUTE: case T_SECOND: case T_TIME:
		memcpy(&i, v, 4);
		sb_add(b, "%" PRId32 "%s", i, type == T_INT ? "i" : "");
		break;
	case T_LONG: case T_TIMESTAMP: case T_TIMESPAN:
		memcpy(&j, v, 8);
		sb_add(b, "%" PRId64, j);
		break;
	case T_REAL:
		memcpy(&e, v, 4);
		sb_add(b, "%ge", (double)e);
		break;
	case T_FLOAT: case T_DATETIME:
		memcpy(&f, v, 8);
		sb_add(b, "%g", f);
		break;
	case T_GUID:
		for (int k = 0; k < 16; k++)
			sb_add(b, "%02x", ((const uint8_t *)v)[k]);
		break;
	default:
		sb_add(b, "?");
	}
}

static void fmt_obj(struct sb *b, const struct t_obj *o, int depth)
{
	if (!o) {
		sb_add(b, "<null>");
		return;
	}
	if (depth > 8) {
		sb_add(b, "...");
		return;
	}
	if (o->type == -T_SYM) {
		sb_add(b, "`%s", o->s);
	} else if (o->type == T_ERROR) {
		sb_add(b, "'%s", o->s);
	} else if (o->type == -T_CHAR) {
		sb_add(b, "\"%c\"", o->a.x);
	} else if (o->type < 0) {
		fmt_item(b, -o->type, &o->a);
	} else if (o->type == T_CHAR) {
		sb_add(b, "\"%.*s\"", o->n > 200 ? 200 : (int)o->n, (const char *)o->data);
		if (o->n > 200)
			sb_add(b, "...(%" PRIu64 " chars)", o->n);
	} else if (o->type == T_SYM) {
		if (o->n == 1)
			sb_add(b, ",");
		for (uint64_t k = 0; k < o->n && k < 20; k++)
			sb_add(b, "`%s", o->syms[k]);
		if (o->n == 0)
			sb_add(b, "`symbol$()");
	} else if (o->type > 0 && o->type <= 19) {
		size_t w = t_type_width(o->type);

		sb_add(b, "%s", o->n == 1 ? "," : "");
		for (uint64_t k = 0; k < o->n && k < 20; k++) {
			sb_add(b, "%s", k ? " " : "");
			fmt_item(b, o->type, (const uint8_t *)o->data + k * w);
		}
		if (o->n > 20)
			sb_add(b, " ...(%" PRIu64 " items)", o->n);
		if (o->n == 0)
			sb_add(b, "(type %d)()", o->type);
	} else if (o->type == T_LIST) {
		sb_add(b, "(");
		for (uint64_t k = 0; k < o->n && k < 20; k++) {
			sb_add(b, "%s", k ? ";" : "");
			fmt_obj(b, o->items[k], depth + 1);
		}
		sb_add(b, "%s)", o->n > 20 ? ";..." : "");
	} else if (o->type == T_DICT || o->type == T_SORTED_DICT) {
		fmt_obj(b, o->items[0], depth + 1);
		sb_add(b, "!");
		fmt_obj(b, o->items[1], depth + 1);
	} else if (o->type == T_TABLE) {
		sb_add(b, "+");
		fmt_obj(b, o->items[0], depth + 1);
	} else if (o->type == T_LAMBDA) {
		fmt_obj(b, o->items[0], depth + 1);
	} else {
		sb_add(b, "<type %d>", o->type);
	}
}

int t_fmt(const struct t_obj *o, char *out, size_t cap)
{
	struct sb b = { .p = out, .cap = cap, .len = 0 };

	if (cap)
		out[0] = 0;
	fmt_obj(&b, o, 0);
	return (int)b.len;
}

const char *t_show(const struct t_obj *o)
{
	static __thread char ring[4][512];
	static __thread unsigned slot;
	char *p = ring[slot++ % 4];

	t_fmt(o, p, sizeof(ring[0]));
	return p;
}
