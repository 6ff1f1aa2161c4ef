/*
 * peek.c — look at the head of a request payload to route it, without decoding the body.
 * Works on any prefix of the payload: it asks for more bytes (returns 0) only while the
 * bytes it needs (list header, the head item, up to max_text bytes of text) are missing.
 */
#include "codec/qipc.h"

#include <errno.h>
#include <string.h>

#include "codec/qipc_internal.h"

/*
 * Read a vector prefix (type, attr, count) at p[0..n). Returns the prefix size (6, or 10
 * with the capability-6 8-byte count), 0 if more bytes are needed, -EBADMSG.
 */
static int vec_prefix(const uint8_t *p, size_t n, bool le, uint64_t *count)
{
	uint8_t attr;

	if (n < 2)
		return 0;
	attr = p[1];
	if ((attr & 0x7f) > 4)
		return -EBADMSG;
	if (attr & 0x80) {
		if (n < 10)
			return 0;
		*count = qipc_ld64(p + 2, le);
		return 10;
	}
	if (n < 6)
		return 0;
	*count = qipc_ld32(p + 2, le);
	return 6;
}

/* Text of a char vector at p: the first min(count, max_text) bytes must be present. */
static int peek_chars(const uint8_t *p, size_t n, bool le, size_t max_text,
		      enum qipc_peek_kind kind, struct qipc_peek *out)
{
	uint64_t count = 0, want;
	int hl = vec_prefix(p, n, le, &count);

	if (hl <= 0)
		return hl;
	want = count < max_text ? count : max_text;
	if (n - (size_t)hl < want)
		return 0;
	out->kind = kind;
	out->text = p + hl;
	out->text_len = (size_t)want;
	out->is_truncated = count > want;
	return 1;
}

int qipc_peek(const uint8_t *payload, size_t n, bool little_endian, size_t max_text,
	      struct qipc_peek *out)
{
	const uint8_t *p = payload, *nul;
	uint64_t count = 0;
	size_t avail, scan;
	int hl;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return 0;
	if (qipc_type_class((int8_t)p[0]) == QIPC_TC_BAD)
		return -EBADMSG;
	if (p[0] == QT_CHAR)
		return peek_chars(p, n, little_endian, max_text, QIPC_PEEK_QUERY, out);
	if (p[0] != QT_LIST) {
		out->kind = QIPC_PEEK_OTHER;
		return 1;
	}
	hl = vec_prefix(p, n, little_endian, &count);
	if (hl <= 0)
		return hl;
	if (count == 0) {
		out->kind = QIPC_PEEK_OTHER;
		return 1;
	}
	p += hl;
	n -= (size_t)hl;
	if (n == 0)
		return 0;
	switch (p[0]) {
	case 0xf5:	/* symbol atom: the function's name, NUL-terminated */
		avail = n - 1;
		scan = avail < max_text + 1 ? avail : max_text + 1;
		nul = scan ? memchr(p + 1, 0, scan) : NULL;
		if (nul) {
			out->text_len = (size_t)(nul - (p + 1));
		} else if (avail > max_text) {
			out->text_len = max_text;
			out->is_truncated = true;
		} else {
			return 0;
		}
		out->kind = QIPC_PEEK_FUNC_SYM;
		out->text = p + 1;
		return 1;
	case QT_CHAR:
		return peek_chars(p, n, little_endian, max_text, QIPC_PEEK_FUNC_STR, out);
	case QT_LAMBDA:
		/* namespace name, NUL-terminated, then the source as a char vector */
		nul = n > 1 ? memchr(p + 1, 0, n - 1) : NULL;
		if (!nul)
			return 0;
		n -= (size_t)(nul + 1 - p);
		p = nul + 1;
		if (n == 0)
			return 0;
		if (p[0] != QT_CHAR)
			return -EBADMSG;
		return peek_chars(p, n, little_endian, max_text, QIPC_PEEK_LAMBDA, out);
	default:
		if (qipc_type_class((int8_t)p[0]) == QIPC_TC_BAD)
			return -EBADMSG;
		out->kind = QIPC_PEEK_OTHER;
		return 1;
	}
}
