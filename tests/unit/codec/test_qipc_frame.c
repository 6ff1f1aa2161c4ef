/*
 * test_qipc_frame.c — codec/frame.c: the framer must find the same message boundaries
 * whatever the chunking (whole stream, random chunks, one byte at a time), report body
 * ranges that cover the stream exactly, enforce limits (-EMSGSIZE) and reject garbage
 * headers (-EBADMSG); the assembler must hand back the exact messages.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"
#include "t_codec.h"

struct t_stream {
	uint8_t *b;
	size_t len;
	size_t ends[512];	/* offset just past each message */
	size_t nmsg;
};

/* A stream of random-length messages (plain and compressed-flagged, all three types). */
static void make_stream(struct t_stream *s, uint64_t seed, size_t nmsg)
{
	struct t_rng r;
	size_t cap = 1 << 20;

	t_rng_seed(&r, seed);
	s->b = malloc(cap);
	cr_assert(s->b);
	s->len = 0;
	s->nmsg = 0;
	cr_assert(nmsg <= 512);
	for (size_t i = 0; i < nmsg; i++) {
		size_t len = 10 + (size_t)t_rng_below(&r, i % 7 == 0 ? 5000 : 60);
		uint8_t *m;

		if (s->len + len > cap) {
			cap *= 2;
			s->b = realloc(s->b, cap);
			cr_assert(s->b);
		}
		m = s->b + s->len;
		qipc_header_build(m, (enum qipc_msg_type)t_rng_below(&r, 3),
				  len >= 12 && i % 5 == 0, len);
		for (size_t k = 8; k < len; k++)
			m[k] = (uint8_t)t_rng_next(&r);
		s->len += len;
		s->ends[s->nmsg++] = s->len;
	}
}

/*
 * Run the framer over the stream with the given chunk policy (0 = whole, 1 = one byte,
 * 2 = random chunks) and record message ends. Also checks that body bytes are reported in
 * order, contiguously, and that header events carry the header's bytes.
 */
static size_t run_framer(const struct t_stream *s, int policy, uint64_t seed, size_t *ends)
{
	struct qipc_framer f;
	struct qipc_frame_step st;
	struct t_rng r;
	size_t off = 0, nends = 0, msg_start = 0, body_seen = 0;
	unsigned long guard = 0;

	t_rng_seed(&r, seed);
	qipc_framer_init(&f, 3, 1 << 20);
	while (off < s->len) {
		size_t chunk = policy == 0 ? s->len - off :
			       policy == 1 ? 1 : 1 + (size_t)t_rng_below(&r, 3000);
		size_t used = 0;

		if (chunk > s->len - off)
			chunk = s->len - off;
		while (used < chunk) {
			int rc = qipc_framer_feed(&f, s->b + off + used, chunk - used, &st);

			cr_assert_gt(rc, 0, "framer returned %d", rc);
			cr_assert_lt(++guard, 100000000UL);
			if (st.kind == QIPC_FRAME_HEADER) {
				cr_assert_eq(memcmp(st.hdr_bytes, s->b + msg_start, 8), 0);
				body_seen = 0;
			} else if (st.kind == QIPC_FRAME_BODY) {
				cr_assert_eq(st.data, s->b + off + used);
				cr_assert_eq(st.data, s->b + msg_start + 8 + body_seen);
				body_seen += st.len;
				if (st.is_msg_end) {
					cr_assert_eq(body_seen + 8, st.hdr.length);
					ends[nends++] = off + used + (size_t)rc;
					msg_start = off + used + (size_t)rc;
					cr_assert(qipc_framer_idle(&f));
				}
			}
			used += (size_t)rc;
		}
		off += chunk;
	}
	cr_assert(qipc_framer_idle(&f));
	return nends;
}

Test(framer, same_boundaries_any_chunking, .timeout = 60)
{
	struct t_stream s;
	size_t ends[512];

	make_stream(&s, 42, 300);
	for (int policy = 0; policy < 3; policy++) {
		for (uint64_t seed = 1; seed <= (policy == 2 ? 20 : 1); seed++) {
			size_t n = run_framer(&s, policy, seed, ends);

			cr_assert_eq(n, s.nmsg, "policy %d: %zu messages", policy, n);
			cr_assert_eq(memcmp(ends, s.ends, n * sizeof(ends[0])), 0);
		}
	}
	free(s.b);
}

Test(framer, header_straddles_chunks)
{
	const uint8_t m[] = { 1, 2, 0, 0, 0x11, 0, 0, 0, 0xf9, 2, 0, 0, 0, 0, 0, 0, 0 };
	struct qipc_framer f;
	struct qipc_frame_step st;

	qipc_framer_init(&f, 3, 0);
	cr_assert_eq(qipc_framer_feed(&f, m, 3, &st), 3);
	cr_assert_eq(st.kind, QIPC_FRAME_NONE);
	cr_assert_not(qipc_framer_idle(&f));
	cr_assert_eq(qipc_framer_feed(&f, m + 3, 14, &st), 5);
	cr_assert_eq(st.kind, QIPC_FRAME_HEADER);
	cr_assert_eq(st.hdr.length, 17);
	cr_assert_eq(st.hdr.msg_type, QIPC_RESPONSE);
	cr_assert_eq(qipc_framer_feed(&f, m + 8, 9, &st), 9);
	cr_assert_eq(st.kind, QIPC_FRAME_BODY);
	cr_assert(st.is_msg_end);
	cr_assert_eq(qipc_framer_feed(&f, m, 0, &st), 0);
}

Test(framer, limits_and_garbage)
{
	struct qipc_framer f;
	struct qipc_frame_step st;
	const uint8_t big[] = { 1, 1, 0, 0, 0x01, 0x10, 0, 0 };
	const uint8_t huge[] = { 1, 1, 0, 0, 0, 0, 0, 0x80 };
	const uint8_t garbage[] = { 'G', 'E', 'T', ' ', '/', ' ', 'H', 'T' };
	const uint8_t shortlen[] = { 1, 1, 0, 0, 9, 0, 0, 0 };
	int rc;

	qipc_framer_init(&f, 3, 4096);
	cr_assert_eq(qipc_framer_feed(&f, big, 8, &st), -EMSGSIZE);
	/* the framer stays failed */
	cr_assert_eq(qipc_framer_feed(&f, big, 8, &st), -EMSGSIZE);
	qipc_framer_init(&f, 3, 0);
	cr_assert_eq(qipc_framer_feed(&f, huge, 8, &st), -EMSGSIZE);
	qipc_framer_init(&f, 6, 0);
	cr_assert_eq(qipc_framer_feed(&f, huge, 8, &st), 8);
	qipc_framer_init(&f, 3, 0);
	cr_assert_eq(qipc_framer_feed(&f, garbage, 8, &st), -EBADMSG);
	qipc_framer_init(&f, 3, 0);
	cr_assert_eq(qipc_framer_feed(&f, shortlen, 8, &st), -EBADMSG);
	/* garbage fed one byte at a time: error exactly when the 8th byte arrives */
	qipc_framer_init(&f, 3, 0);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(qipc_framer_feed(&f, garbage + i, 1, &st), 1);
	rc = qipc_framer_feed(&f, garbage + 7, 1, &st);
	cr_assert_eq(rc, -EBADMSG);
}

Test(assembler, whole_messages_any_chunking, .timeout = 60)
{
	struct t_stream s;
	struct t_rng r;

	make_stream(&s, 7, 200);
	t_rng_seed(&r, 99);
	for (int policy = 0; policy < 3; policy++) {
		struct qipc_assembler a;
		size_t off = 0, k = 0, prev_end = 0;

		qipc_assembler_init(&a, 3, 1 << 20);
		while (off < s.len) {
			size_t chunk = policy == 0 ? s.len - off :
				       policy == 1 ? 1 : 1 + (size_t)t_rng_below(&r, 2000);
			const uint8_t *msg;
			size_t mlen;
			int rc;

			if (chunk > s.len - off)
				chunk = s.len - off;
			rc = qipc_assembler_feed(&a, s.b + off, chunk, &msg, &mlen);
			cr_assert_gt(rc, 0);
			off += (size_t)rc;
			if (msg) {
				cr_assert_lt(k, s.nmsg);
				cr_assert_eq(off, s.ends[k]);
				cr_assert_eq(mlen, s.ends[k] - prev_end);
				cr_assert_eq(memcmp(msg, s.b + prev_end, mlen), 0);
				prev_end = s.ends[k++];
			}
		}
		cr_assert_eq(k, s.nmsg, "policy %d", policy);
		qipc_assembler_free(&a);
	}
	free(s.b);
}

Test(assembler, errors)
{
	struct qipc_assembler a;
	const uint8_t *msg;
	size_t mlen;
	const uint8_t bad[] = { 7, 0, 0, 0, 10, 0, 0, 0, 0, 0 };

	qipc_assembler_init(&a, 3, 0);
	cr_assert_eq(qipc_assembler_feed(&a, bad, sizeof(bad), &msg, &mlen), -EBADMSG);
	cr_assert_null(msg);
	qipc_assembler_free(&a);
	qipc_assembler_init(&a, 3, 100);
	cr_assert_eq(qipc_assembler_feed(&a, (const uint8_t *)"\x01\x00\x00\x00\x65\x00\x00\x00",
					 8, &msg, &mlen), -EMSGSIZE);
	cr_assert_eq(qipc_assembler_feed(&a, bad, 0, &msg, &mlen), 0);
	qipc_assembler_free(&a);
}
