/*
 * frame.c — message boundaries on a byte stream. The framer never holds message bodies:
 * it copies at most the 8 header bytes (which may straddle reads) and then reports body
 * byte ranges that point into the caller's input, so a forwarder can pass them on without
 * copying. The assembler on top of it collects whole messages for tools and tests.
 */
#include "codec/qipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Per-call progress is reported as an int; larger inputs are consumed over several calls. */
#define FEED_MAX ((size_t)INT32_MAX)

void qipc_framer_init(struct qipc_framer *f, int capability, uint64_t max_bytes)
{
	memset(f, 0, sizeof(*f));
	f->capability = capability;
	f->max_bytes = max_bytes;
}

int qipc_framer_feed(struct qipc_framer *f, const uint8_t *p, size_t n,
		     struct qipc_frame_step *step)
{
	size_t take;
	int rc;

	memset(step, 0, sizeof(*step));
	step->hdr = f->hdr;
	step->hdr_bytes = f->hdr_bytes;
	if (n == 0)
		return 0;
	if (n > FEED_MAX)
		n = FEED_MAX;
	if (f->body_left == 0) {
		/* between messages or inside a header */
		take = QIPC_HDR_SIZE - f->hdr_have;
		if (take > n)
			take = n;
		memcpy(f->hdr_bytes + f->hdr_have, p, take);
		f->hdr_have += take;
		if (f->hdr_have < QIPC_HDR_SIZE) {
			step->kind = QIPC_FRAME_NONE;
			return (int)take;
		}
		rc = qipc_header_parse(f->hdr_bytes, QIPC_HDR_SIZE, f->capability, f->max_bytes,
				       &f->hdr);
		if (rc < 0)
			return rc;
		f->body_left = f->hdr.length - QIPC_HDR_SIZE;	/* >= 2: length >= 10 */
		step->kind = QIPC_FRAME_HEADER;
		step->hdr = f->hdr;
		return (int)take;
	}
	take = f->body_left < n ? (size_t)f->body_left : n;
	f->body_left -= take;
	step->kind = QIPC_FRAME_BODY;
	step->data = p;
	step->len = take;
	if (f->body_left == 0) {
		step->is_msg_end = true;
		f->hdr_have = 0;
	}
	return (int)take;
}

void qipc_assembler_init(struct qipc_assembler *a, int capability, uint64_t max_bytes)
{
	memset(a, 0, sizeof(*a));
	qipc_framer_init(&a->fr, capability, max_bytes);
}

void qipc_assembler_free(struct qipc_assembler *a)
{
	free(a->buf);
	a->buf = NULL;
	a->len = 0;
	a->cap = 0;
	a->want = 0;
}

/* Grow the buffer geometrically, never beyond the message length announced by the header. */
static int asm_reserve(struct qipc_assembler *a, size_t need)
{
	size_t nc;
	uint8_t *nb;

	if (need <= a->cap)
		return 0;
	nc = a->cap ? a->cap : 4096;
	while (nc < need)
		nc = nc > SIZE_MAX / 2 ? need : nc * 2;
	if (a->want && nc > a->want)
		nc = (size_t)a->want;
	if (nc < need)
		nc = need;
	nb = realloc(a->buf, nc);
	if (!nb)
		return -ENOMEM;
	a->buf = nb;
	a->cap = nc;
	return 0;
}

int qipc_assembler_feed(struct qipc_assembler *a, const uint8_t *p, size_t n,
			const uint8_t **msg, size_t *msg_len)
{
	struct qipc_frame_step st;
	size_t used = 0;
	int rc;

	*msg = NULL;
	*msg_len = 0;
	if (qipc_framer_idle(&a->fr)) {
		/* the previous message was handed out; its bytes are no longer needed */
		a->len = 0;
		a->want = 0;
	}
	if (n > FEED_MAX)
		n = FEED_MAX;
	while (used < n) {
		rc = qipc_framer_feed(&a->fr, p + used, n - used, &st);
		if (rc < 0)
			return rc;
		used += (size_t)rc;
		if (st.kind == QIPC_FRAME_HEADER) {
			if (st.hdr.length > SIZE_MAX)
				return -EMSGSIZE;
			a->want = st.hdr.length;
			a->len = 0;
			rc = asm_reserve(a, QIPC_HDR_SIZE);
			if (rc < 0)
				return rc;
			memcpy(a->buf, st.hdr_bytes, QIPC_HDR_SIZE);
			a->len = QIPC_HDR_SIZE;
		} else if (st.kind == QIPC_FRAME_BODY) {
			rc = asm_reserve(a, a->len + st.len);
			if (rc < 0)
				return rc;
			memcpy(a->buf + a->len, st.data, st.len);
			a->len += st.len;
			if (st.is_msg_end) {
				*msg = a->buf;
				*msg_len = a->len;
				break;
			}
		}
	}
	return (int)used;
}
