/*
 * compress.c — q IPC compression (protocol page section 6). The compressor follows 6.4
 * step by step so its output is byte-identical to q's / KX's C library; the decompressor
 * follows 6.3 and adds the defensive checks listed there (unset table slots, copies past
 * U, short streams, left-over bytes). Both use a 256-entry table keyed by the XOR of two
 * adjacent bytes; the encoder's one-step lag in indexing literals keeps the tables equal.
 */
#include "codec/qipc.h"

#include <errno.h>
#include <string.h>

#include "codec/qipc_internal.h"

/* One stream byte expands to at most 128.5 output bytes (2 bytes -> 257). */
#define MAX_EXPANSION 129

/* Stream offset of a compressed message: 12, or 16 when U is 8 bytes (flag 2). */
static size_t stream_off(const uint8_t *cmsg)
{
	return cmsg[2] == 2 ? 16 : 12;
}

/* C from the header: 40-bit like the plain length (byte 3 holds bits 32..39). */
static uint64_t comp_len(const uint8_t *cmsg)
{
	bool le = cmsg[0] == 1;

	return qipc_ld32(cmsg + 4, le) | (uint64_t)cmsg[3] << 32;
}

int64_t qipc_compressed_orig_len(const uint8_t *cmsg, size_t n)
{
	bool le;
	uint64_t u, c;
	size_t off;

	if (n < 12 || cmsg[0] > 1 || (cmsg[2] != 1 && cmsg[2] != 2))
		return -EBADMSG;
	le = cmsg[0] == 1;
	off = stream_off(cmsg);
	if (n < off)
		return -EBADMSG;
	u = cmsg[2] == 2 ? qipc_ld64(cmsg + 8, le) : qipc_ld32(cmsg + 8, le);
	c = comp_len(cmsg);
	if (u < 10 || u > QIPC_MAX_MSG_CAP6 || c < off)
		return -EBADMSG;
	/* a stream of C - off bytes cannot rebuild more than this: refuse absurd U early */
	if (u - QIPC_HDR_SIZE > (c - off) * MAX_EXPANSION)
		return -EBADMSG;
	return (int64_t)u;
}

/*
 * Run the decoder of 6.3 over in[off..c) rebuilding out[8..limit) of a U-byte message.
 * prefix: running out of input is not an error (returns the bytes restored so far).
 * Returns the number of output bytes valid (header included) or -EBADMSG.
 */
static int64_t inflate(const uint8_t *in, size_t off, size_t c, uint64_t u, uint8_t *out,
		       size_t limit, bool prefix)
{
	size_t t[256] = { 0 };
	size_t r = off, w = QIPC_HDR_SIZE, k = QIPC_HDR_SIZE;
	unsigned int f = 0, b = 0;

	while (w < limit) {
		if (b == 0) {
			if (r >= c)
				return prefix ? (int64_t)w : -EBADMSG;
			f = in[r++];
			b = 1;
		}
		if (!(f & b)) {
			if (r >= c)
				return prefix ? (int64_t)w : -EBADMSG;
			out[w++] = in[r++];
			while (k + 1 < w) {
				t[out[k] ^ out[k + 1]] = k;
				k++;
			}
		} else {
			size_t s, x, cnt;

			if (r + 2 > c)
				return prefix ? (int64_t)w : -EBADMSG;
			s = t[in[r]];
			x = in[r + 1];
			r += 2;
			/* valid streams only reference indices >= 8; a copy stays inside U */
			if (s == 0 || w + 2 + x > u)
				return -EBADMSG;
			cnt = 2 + x;
			if (cnt > limit - w)
				cnt = limit - w;	/* prefix mode: stop at the caller's cap */
			for (size_t i = 0; i < cnt; i++)
				out[w + i] = out[s + i];	/* forward, overlapping copy */
			if (cnt < 2 + x)
				return (int64_t)limit;
			/* only the first two copied bytes are indexed */
			while (k < w + 1) {
				t[out[k] ^ out[k + 1]] = k;
				k++;
			}
			w += cnt;
			k = w;
		}
		b = (b << 1) & 0xff;
	}
	if (!prefix && r != c)
		return -EBADMSG;	/* bytes left over after the last item */
	return (int64_t)w;
}

static void rebuild_header(const uint8_t *cmsg, uint64_t u, uint8_t *out)
{
	bool le = cmsg[0] == 1;

	out[0] = cmsg[0];
	out[1] = cmsg[1];
	out[2] = 0;
	out[3] = (uint8_t)(u >> 32);
	qipc_st32(out + 4, (uint32_t)u, le);
}

int64_t qipc_decompress(const uint8_t *cmsg, size_t n, uint8_t *out, size_t out_cap)
{
	int64_t u = qipc_compressed_orig_len(cmsg, n);
	uint64_t c;

	if (u < 0)
		return u;
	c = comp_len(cmsg);
	if (c > n)
		return -EBADMSG;	/* the message is shorter than its length field */
	if ((uint64_t)u > out_cap)
		return -ENOSPC;
	rebuild_header(cmsg, (uint64_t)u, out);
	return inflate(cmsg, stream_off(cmsg), (size_t)c, (uint64_t)u, out, (size_t)u, false);
}

int64_t qipc_decompress_prefix(const uint8_t *cmsg, size_t n, uint8_t *out, size_t out_cap)
{
	int64_t u;
	uint64_t c;
	size_t limit;

	if (n < 12 || (cmsg[2] == 2 && n < 16))
		return 0;	/* the header and U have not arrived yet */
	u = qipc_compressed_orig_len(cmsg, n);
	if (u < 0)
		return u;
	if (out_cap < QIPC_HDR_SIZE)
		return 0;
	c = comp_len(cmsg);
	if (c > n)
		c = n;
	limit = (uint64_t)u < out_cap ? (size_t)u : out_cap;
	rebuild_header(cmsg, (uint64_t)u, out);
	return inflate(cmsg, stream_off(cmsg), (size_t)c, (uint64_t)u, out, limit, true);
}

int64_t qipc_compress(const uint8_t *m, size_t n, uint8_t *out, size_t out_cap)
{
	size_t t[256] = { 0 };
	size_t budget = n / 2, s = QIPC_HDR_SIZE, d, c, ph = 0, ps = 0;
	bool big = (uint64_t)n >= (1ULL << 32), le;
	unsigned int f = 0, b = 0;

	if (n <= 2008 || n < QIPC_HDR_SIZE)
		return 0;
	if (out_cap < budget)
		return -ENOSPC;
	le = m[0] != 0;
	out[0] = m[0];
	out[1] = m[1];
	out[2] = big ? 2 : 1;
	if (big)
		qipc_st64(out + 8, (uint64_t)n, le);
	else
		qipc_st32(out + 8, (uint32_t)n, le);
	d = c = big ? 16 : 12;
	while (s < n) {
		size_t h = 0, p = 0;
		bool lit, have_h = false;

		if (b == 0) {
			/* room for a control byte and eight 2-byte items, or give up */
			if (d > budget - 17)
				return 0;
			out[c] = (uint8_t)f;
			c = d++;
			f = 0;
			b = 1;
		}
		if (s > n - 3) {
			lit = true;
		} else {
			h = m[s] ^ m[s + 1];
			p = t[h];
			have_h = true;
			lit = p == 0 || m[p] != m[s];
		}
		if (ps > 0) {
			/* index the previous literal only after this lookup (see 6.4 step 3) */
			t[ph] = ps;
			ps = 0;
		}
		if (lit) {
			out[d++] = m[s];
			if (have_h) {
				ph = h;
				ps = s;
			}
			s++;
		} else {
			size_t s0 = s + 2, p2 = p + 2, lim = s0 + 255 < n ? s0 + 255 : n, x = 0;

			t[h] = s;
			f |= b;
			while (s0 + x < lim && m[p2 + x] == m[s0 + x])
				x++;
			out[d++] = (uint8_t)h;
			out[d++] = (uint8_t)x;
			s = s0 + x;
		}
		b = (b << 1) & 0xff;
	}
	out[c] = (uint8_t)f;
	out[3] = (uint8_t)((uint64_t)d >> 32);
	qipc_st32(out + 4, (uint32_t)d, le);
	return (int64_t)d;
}
