/*
 * test_qipc_compress.c — codec/compress.c: 100 random messages from 1 byte to 16 MiB of
 * mixed content (zeros, runs, small alphabets, text, counters, random bytes, and mixtures)
 * compressed and decompressed. The "send plain" outcome (qipc_compress returning 0) is
 * checked against a second, independently written reading of the rule in section 6.4:
 * it must happen exactly when n <= 2008 or a group would start past the n/2 - 17 budget.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"
#include "t_codec.h"

/*
 * Reference reading of 6.4 written apart from the codec: it never abandons, it only
 * records whether any group started beyond B - 17, and returns the stream it produced.
 * Returns the compressed length; *abandon tells whether q would have sent it plain.
 */
static size_t ref_compress(const uint8_t *m, size_t u, uint8_t *out, bool *abandon)
{
	size_t tab[256];
	size_t budget = u / 2, src = 8, dst = 12, ctl = 12, pend_pos = 0;
	uint8_t pend_key = 0;
	unsigned int bits = 0, nitems = 8;

	memset(tab, 0, sizeof(tab));
	*abandon = false;
	memcpy(out, m, 4);
	out[2] = 1;
	out[8] = (uint8_t)u;
	out[9] = (uint8_t)(u >> 8);
	out[10] = (uint8_t)(u >> 16);
	out[11] = (uint8_t)(u >> 24);
	while (src < u) {
		bool match = false;
		uint8_t key = 0;
		size_t prev = 0;

		if (nitems == 8) {
			if (dst > budget - 17)
				*abandon = true;
			out[ctl] = (uint8_t)bits;
			ctl = dst++;
			bits = 0;
			nitems = 0;
		}
		if (src + 2 < u) {
			key = m[src] ^ m[src + 1];
			prev = tab[key];
			match = prev != 0 && m[prev] == m[src];
		}
		if (pend_pos) {
			tab[pend_key] = pend_pos;
			pend_pos = 0;
		}
		if (!match) {
			out[dst++] = m[src];
			if (src + 2 < u) {
				pend_key = key;
				pend_pos = src;
			}
			src++;
		} else {
			size_t len = 0, maxlen = u - (src + 2) < 255 ? u - (src + 2) : 255;

			tab[key] = src;
			bits |= 1u << nitems;
			while (len < maxlen && m[prev + 2 + len] == m[src + 2 + len])
				len++;
			out[dst++] = key;
			out[dst++] = (uint8_t)len;
			src += 2 + len;
		}
		nitems++;
	}
	out[ctl] = (uint8_t)bits;
	out[4] = (uint8_t)dst;
	out[5] = (uint8_t)(dst >> 8);
	out[6] = (uint8_t)(dst >> 16);
	out[7] = (uint8_t)(dst >> 24);
	return dst;
}

static void fill(struct t_rng *r, uint8_t *p, size_t n, int kind)
{
	static const char text[] = "select sum size by sym from trade where date=2024.01.02, ";
	size_t i = 0;

	switch (kind) {
	case 0:
		memset(p, 0, n);
		break;
	case 1:	/* random bytes */
		for (; i < n; i++)
			p[i] = (uint8_t)t_rng_next(r);
		break;
	case 2:	/* small alphabet */
		for (; i < n; i++)
			p[i] = (uint8_t)('a' + t_rng_below(r, 4));
		break;
	case 3:	/* text with random edits */
		for (; i < n; i++)
			p[i] = t_rng_below(r, 50) ? (uint8_t)text[i % (sizeof(text) - 1)] :
						     (uint8_t)t_rng_next(r);
		break;
	case 4:	/* long counter (til n) */
		for (; i < n; i++)
			p[i] = (uint8_t)((i / 8) >> (8 * (i % 8)) & 0xff);
		break;
	case 5:	/* runs of random length */
		while (i < n) {
			size_t run = 1 + (size_t)t_rng_below(r, 300);
			uint8_t v = (uint8_t)t_rng_next(r);

			for (; run && i < n; run--, i++)
				p[i] = v;
		}
		break;
	default:	/* mixture of the above in random segments */
		while (i < n) {
			size_t seg = 1 + (size_t)t_rng_below(r, 5000);

			if (seg > n - i)
				seg = n - i;
			fill(r, p + i, seg, (int)t_rng_below(r, 6));
			i += seg;
		}
		break;
	}
}

Test(compress, random_buffers_1b_to_16MiB, .timeout = 280)
{
	struct t_rng r;
	size_t sizes[100];
	int compressed = 0, plain_big = 0;

	t_rng_seed(&r, 0xc0ffee);
	/* log-uniform sizes, the two ends included, plenty around the 2008-byte threshold */
	for (int i = 0; i < 100; i++) {
		if (i == 0)
			sizes[i] = 1;
		else if (i == 1)
			sizes[i] = 16u << 20;
		else if (i < 10)
			sizes[i] = 2000 + (size_t)t_rng_below(&r, 20);
		else
			sizes[i] = (size_t)1 << t_rng_below(&r, 24);
		if (i >= 10)
			sizes[i] += (size_t)t_rng_below(&r, sizes[i]);
		if (sizes[i] > 16u << 20)
			sizes[i] = 16u << 20;
	}
	for (int i = 0; i < 100; i++) {
		size_t n = sizes[i], cap = n / 2 + 64;
		uint8_t *m = malloc(n), *z = malloc(cap), *ref = malloc(n + n / 8 + 64), *back;
		int kind = (int)t_rng_below(&r, 7);
		int64_t c;
		bool abandon;

		cr_assert(m && z && ref);
		fill(&r, m, n, kind);
		if (n >= 8)
			qipc_header_build(m, (enum qipc_msg_type)(i % 3), false, n);
		c = qipc_compress(m, n, z, cap);
		cr_assert_geq(c, 0);
		if (n <= 2008) {
			cr_assert_eq(c, 0, "size %zu must be sent plain", n);
			goto next;
		}
		ref_compress(m, n, ref, &abandon);
		if (c == 0) {
			cr_assert(abandon, "size %zu kind %d: plain but the rule allows", n,
				  kind);
			plain_big++;
			goto next;
		}
		cr_assert_not(abandon, "size %zu kind %d: compressed although the rule forbids", n,
			      kind);
		compressed++;
		cr_assert_lt((size_t)c, n / 2);
		cr_assert_eq(memcmp(z, ref, (size_t)c), 0, "size %zu: not the reference bytes", n);
		cr_assert_eq(z[2], 1);
		cr_assert_eq(qipc_compressed_orig_len(z, (size_t)c), (int64_t)n);
		back = malloc(n);
		cr_assert(back);
		cr_assert_eq(qipc_decompress(z, (size_t)c, back, n), (int64_t)n);
		cr_assert_eq(memcmp(back, m, n), 0, "size %zu kind %d: round trip", n, kind);
		free(back);
next:
		free(m);
		free(z);
		free(ref);
	}
	/* the mix must exercise both outcomes above the threshold */
	cr_assert_gt(compressed, 20);
	cr_assert_gt(plain_big, 3);
}

Test(compress, threshold_and_budget)
{
	uint8_t m[2010], z[1005];

	memset(m, 0, sizeof(m));
	qipc_header_build(m, QIPC_ASYNC, false, 2008);
	cr_assert_eq(qipc_compress(m, 2008, z, sizeof(z)), 0, "2008 bytes stay plain");
	qipc_header_build(m, QIPC_ASYNC, false, 2009);
	cr_assert_gt(qipc_compress(m, 2009, z, sizeof(z)), 0, "2009 zero bytes compress");
	cr_assert_eq(qipc_compress(m, 2009, z, 1000), -ENOSPC, "out must hold n/2");
}

Test(compress, big_endian_message_round_trip)
{
	size_t n = 5000;
	uint8_t *m = calloc(1, n), *z = malloc(n / 2), *back = malloc(n);
	int err;
	uint8_t mtype;
	struct qipc_obj *o;

	/* big-endian char vector of 4990 'q's: U is written in the message's byte order */
	m[0] = 0;
	m[1] = 1;
	m[6] = (uint8_t)(n >> 8);
	m[7] = (uint8_t)n;
	m[8] = 0x0a;
	m[12] = (uint8_t)((n - 14) >> 8);
	m[13] = (uint8_t)(n - 14);
	memset(m + 14, 'q', n - 14);
	cr_assert_gt(qipc_compress(m, n, z, n / 2), 0);
	cr_assert_eq(z[0], 0);
	cr_assert_eq(z[8], 0);
	cr_assert_eq(z[11], (uint8_t)n);
	cr_assert_eq(qipc_decompress(z, z[7] | (size_t)z[6] << 8, back, n), (int64_t)n);
	cr_assert_eq(memcmp(back, m, n), 0);
	o = qipc_decode_msg(z, z[7] | (size_t)z[6] << 8, 0, &mtype, &err);
	cr_assert_not_null(o, "err %d", err);
	cr_assert_eq(o->n, n - 14);
	qipc_obj_free(o);
	free(m);
	free(z);
	free(back);
}

Test(compress, corrupt_streams_rejected)
{
	size_t n;
	uint8_t *v29 = t_hex("010001002d000000de070000800b00e80300007171ffaa7171ff7171ff"
			     "7171ff7171ff2a7171ff7171ff7171bf", &n);
	uint8_t out[4096], bad[64];

	cr_assert_eq(qipc_decompress(v29, n, out, sizeof(out)), 2014);
	/* the last byte altered (d9 rejects this, okx does not) */
	memcpy(bad, v29, n);
	bad[n - 1] ^= 0x40;
	cr_assert_eq(qipc_decompress(bad, n, out, sizeof(out)), -EBADMSG);
	/* a back-reference through a slot never set */
	memcpy(bad, v29, n);
	bad[19] = 0x55;
	cr_assert_eq(qipc_decompress(bad, n, out, sizeof(out)), -EBADMSG);
	/* stream shorter than U needs (C shortened accordingly) */
	memcpy(bad, v29, n);
	bad[4] = (uint8_t)(n - 3);
	cr_assert_eq(qipc_decompress(bad, n - 3, out, sizeof(out)), -EBADMSG);
	/* C larger than the bytes given */
	cr_assert_eq(qipc_decompress(v29, n - 1, out, sizeof(out)), -EBADMSG);
	/* a byte left over after w reaches U */
	memcpy(bad, v29, n);
	bad[n] = 0;
	bad[4] = (uint8_t)(n + 1);
	cr_assert_eq(qipc_decompress(bad, n + 1, out, sizeof(out)), -EBADMSG);
	/* U below 10, U absurd for the stream size, flag 0 */
	memcpy(bad, v29, n);
	bad[8] = 9;
	bad[9] = 0;
	cr_assert_eq(qipc_compressed_orig_len(bad, n), -EBADMSG);
	memcpy(bad, v29, n);
	bad[10] = 0x7f;
	cr_assert_eq(qipc_compressed_orig_len(bad, n), -EBADMSG);
	memcpy(bad, v29, n);
	bad[2] = 0;
	cr_assert_eq(qipc_compressed_orig_len(bad, n), -EBADMSG);
	cr_assert_eq(qipc_compressed_orig_len(v29, 11), -EBADMSG);
	cr_assert_eq(qipc_decompress_prefix(v29, 11, out, sizeof(out)), 0);
	free(v29);
}
