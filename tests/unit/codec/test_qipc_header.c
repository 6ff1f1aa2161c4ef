/*
 * test_qipc_header.c — codec/header.c and codec/handshake.c: header validation (byte order,
 * message type, compression flag, 40-bit lengths, limits), hello parsing (capability 0..6,
 * legacy form, HTTP/TLS detection, length cap) and the error-response builder.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"

static int parse(const char *b8, int cap, uint64_t max, struct qipc_header *h)
{
	return qipc_header_parse((const uint8_t *)b8, 8, cap, max, h);
}

Test(header, little_and_big_endian)
{
	struct qipc_header h;

	cr_assert_eq(parse("\x01\x01\x00\x00\x11\x00\x00\x00", 3, 0, &h), 8);
	cr_assert(h.is_little_endian);
	cr_assert_eq(h.msg_type, QIPC_SYNC);
	cr_assert_eq(h.compressed, 0);
	cr_assert_eq(h.length, 17);
	cr_assert_eq(parse("\x00\x02\x01\x00\x00\x00\x01\x02", 3, 0, &h), 8);
	cr_assert_not(h.is_little_endian);
	cr_assert_eq(h.msg_type, QIPC_RESPONSE);
	cr_assert_eq(h.compressed, 1);
	cr_assert_eq(h.length, 0x102);
}

/* what the gateway reads from a header the framer accepted: both byte orders, 40 bits */
Test(header, length_of_an_accepted_header)
{
	cr_assert_eq(qipc_header_length((const uint8_t *)"\x01\x01\x00\x00\x11\x00\x00\x00"),
		     17);
	cr_assert_eq(qipc_header_length((const uint8_t *)"\x00\x02\x01\x00\x00\x01\x00\x02"),
		     0x10002);
	cr_assert_eq(qipc_header_length((const uint8_t *)"\x01\x02\x00\x01\x06\x00\x00\x00"),
		     (UINT64_C(1) << 32) + 6);
}

Test(header, need_more)
{
	struct qipc_header h;

	cr_assert_eq(qipc_header_parse((const uint8_t *)"\x01\x00\x00", 3, 3, 0, &h), 0);
	cr_assert_eq(qipc_header_parse((const uint8_t *)"", 0, 3, 0, &h), 0);
}

Test(header, bad_fields)
{
	struct qipc_header h;

	cr_assert_eq(parse("\x02\x00\x00\x00\x0a\x00\x00\x00", 3, 0, &h), -EBADMSG);
	cr_assert_eq(parse("\x01\x03\x00\x00\x0a\x00\x00\x00", 3, 0, &h), -EBADMSG);
	/* b9 mode -1 in-process form: byte 2 = 03 */
	cr_assert_eq(parse("\x01\x00\x03\x00\x0d\x00\x00\x00", 3, 0, &h), -EBADMSG);
	/* byte 3 set below capability 5 */
	cr_assert_eq(parse("\x01\x00\x00\x01\x0a\x00\x00\x00", 3, 0, &h), -EBADMSG);
	/* flag 2 needs capability 5+ */
	cr_assert_eq(parse("\x01\x00\x02\x00\x20\x00\x00\x00", 3, 0, &h), -EBADMSG);
	cr_assert_eq(parse("\x01\x00\x02\x00\x20\x00\x00\x00", 6, 0, &h), 8);
	cr_assert_eq(h.compressed, 2);
}

Test(header, minimum_lengths)
{
	struct qipc_header h;

	cr_assert_eq(parse("\x01\x00\x00\x00\x09\x00\x00\x00", 3, 0, &h), -EBADMSG);
	cr_assert_eq(parse("\x01\x00\x00\x00\x0a\x00\x00\x00", 3, 0, &h), 8);
	cr_assert_eq(parse("\x01\x00\x01\x00\x0b\x00\x00\x00", 3, 0, &h), -EBADMSG);
	cr_assert_eq(parse("\x01\x00\x01\x00\x0c\x00\x00\x00", 3, 0, &h), 8);
	cr_assert_eq(parse("\x01\x00\x02\x00\x0f\x00\x00\x00", 6, 0, &h), -EBADMSG);
	cr_assert_eq(parse("\x01\x00\x02\x00\x10\x00\x00\x00", 6, 0, &h), 8);
	cr_assert_eq(parse("\x01\x00\x00\x00\x00\x00\x00\x00", 3, 0, &h), -EBADMSG);
}

Test(header, limits)
{
	struct qipc_header h;

	/* 2^31-1 is the cap-3 maximum; 2^31 needs capability 5 */
	cr_assert_eq(parse("\x01\x00\x00\x00\xff\xff\xff\x7f", 3, 0, &h), 8);
	cr_assert_eq(h.length, 0x7fffffffULL);
	cr_assert_eq(parse("\x01\x00\x00\x00\x00\x00\x00\x80", 3, 0, &h), -EMSGSIZE);
	cr_assert_eq(parse("\x01\x00\x00\x00\x00\x00\x00\x80", 5, 0, &h), 8);
	cr_assert_eq(h.length, 0x80000000ULL, "bytes 4..7 read unsigned");
	/* 40-bit length from KX's C library: 2^32+6 */
	cr_assert_eq(parse("\x01\x00\x00\x01\x06\x00\x00\x00", 6, 0, &h), 8);
	cr_assert_eq(h.length, (1ULL << 32) + 6);
	cr_assert_eq(parse("\x01\x00\x00\xff\xff\xff\xff\xff", 6, 0, &h), 8);
	cr_assert_eq(h.length, QIPC_MAX_MSG_CAP6);
	/* local limit */
	cr_assert_eq(parse("\x01\x00\x00\x00\x00\x10\x00\x00", 3, 4096, &h), 8);
	cr_assert_eq(parse("\x01\x00\x00\x00\x01\x10\x00\x00", 3, 4096, &h), -EMSGSIZE);
	cr_assert_eq(parse("\x01\x00\x00\x01\x06\x00\x00\x00", 6, 1 << 20, &h), -EMSGSIZE);
}

Test(header, build)
{
	uint8_t b[8];
	struct qipc_header h;

	qipc_header_build(b, QIPC_RESPONSE, false, 17);
	cr_assert_eq(memcmp(b, "\x01\x02\x00\x00\x11\x00\x00\x00", 8), 0);
	qipc_header_build(b, QIPC_ASYNC, true, 53);
	cr_assert_eq(memcmp(b, "\x01\x00\x01\x00\x35\x00\x00\x00", 8), 0);
	qipc_header_build(b, QIPC_ASYNC, false, (1ULL << 32) + 6);
	cr_assert_eq(memcmp(b, "\x01\x00\x00\x01\x06\x00\x00\x00", 8), 0);
	cr_assert_eq(qipc_header_parse(b, 8, 6, 0, &h), 8);
	cr_assert_eq(h.length, (1ULL << 32) + 6);
	qipc_header_set_type(b, QIPC_SYNC);
	cr_assert_eq(b[1], 1);
}

Test(error, build)
{
	uint8_t b[64];

	cr_assert_eq(qipc_error_build(b, sizeof(b), QIPC_RESPONSE, "type"), 14);
	cr_assert_eq(memcmp(b, "\x01\x02\x00\x00\x0e\x00\x00\x00\x80type", 14), 0);
	cr_assert_eq(qipc_error_build(b, sizeof(b), QIPC_RESPONSE, "limit"), 15);
	cr_assert_eq(memcmp(b, "\x01\x02\x00\x00\x0f\x00\x00\x00\x80limit", 15), 0);
	cr_assert_eq(qipc_error_build(b, 14, QIPC_RESPONSE, "limit"), -ENOSPC);
	cr_assert_eq(qipc_error_build(b, sizeof(b), QIPC_RESPONSE, ""), 10);
}

static int hp(const char *s, size_t n, size_t max, struct qipc_hello *h)
{
	return qipc_hello_parse((const uint8_t *)s, n, max, h);
}

Test(hello, with_capability)
{
	struct qipc_hello h;

	cr_assert_eq(hp("user:pass\x03", 11, 256, &h), 11);
	cr_assert_eq(h.capability, 3);
	cr_assert_not(h.is_legacy);
	cr_assert_eq(h.cred_len, 9);
	cr_assert_eq(h.user_len, 4);
	cr_assert_eq(memcmp(h.cred, "user:pass", 9), 0);
	for (int c = 1; c <= 6; c++) {
		char b[4] = { 'u', (char)c, 0, 0 };

		cr_assert_eq(hp(b, 3, 256, &h), 3);
		cr_assert_eq(h.capability, c);
		cr_assert_eq(h.cred_len, 1);
		cr_assert_eq(h.user_len, 1);
	}
	/* empty credentials: the two bytes 03 00 */
	cr_assert_eq(hp("\x03", 2, 256, &h), 2);
	cr_assert_eq(h.capability, 3);
	cr_assert_eq(h.cred_len, 0);
	/* KX C library with empty credentials sends "c" */
	cr_assert_eq(hp("c\x03", 3, 256, &h), 3);
	cr_assert_eq(h.user_len, 1);
	/* password holding colons: split at the first */
	cr_assert_eq(hp("u:p:q\x06", 7, 256, &h), 7);
	cr_assert_eq(h.user_len, 1);
	cr_assert_eq(h.cred_len, 5);
}

Test(hello, capability_zero)
{
	struct qipc_hello h;

	cr_assert_eq(hp("user:pass\0", 11, 256, &h), 11);
	cr_assert_eq(h.capability, 0);
	cr_assert_not(h.is_legacy);
	cr_assert_eq(h.cred_len, 9);
	cr_assert_eq(hp("\0", 2, 256, &h), 2);
	cr_assert_eq(h.capability, 0);
	cr_assert_eq(h.cred_len, 0);
}

Test(hello, legacy)
{
	struct qipc_hello h;

	cr_assert_eq(hp("user:pass", 10, 256, &h), 10);
	cr_assert(h.is_legacy);
	cr_assert_eq(h.capability, 0);
	cr_assert_eq(h.cred_len, 9);
	cr_assert_eq(h.user_len, 4);
	cr_assert_eq(hp("bob", 4, 256, &h), 4);
	cr_assert(h.is_legacy);
	cr_assert_eq(h.user_len, 3);
	/* space (0x20) is the first credential character value */
	cr_assert_eq(hp("a ", 3, 256, &h), 3);
	cr_assert(h.is_legacy);
}

Test(hello, bad_capability)
{
	struct qipc_hello h;

	cr_assert_eq(hp("u\x07", 3, 256, &h), -EBADMSG);
	cr_assert_eq(hp("u\x1f", 3, 256, &h), -EBADMSG);
}

Test(hello, need_more_and_cap)
{
	struct qipc_hello h;

	cr_assert_eq(hp("user:pa", 7, 256, &h), 0);
	cr_assert_eq(hp("", 0, 256, &h), 0);
	cr_assert_eq(hp("abcdefgh", 8, 8, &h), -EBADMSG);
	cr_assert_eq(hp("abcdefg", 7, 8, &h), 0);
	/* terminator beyond max_len does not count */
	cr_assert_eq(hp("abcdefgh\x03", 10, 8, &h), -EBADMSG);
	/* one byte at a time: 0 until the terminator arrives */
	for (size_t i = 0; i < 11; i++)
		cr_assert_eq(hp("user:pass\x03", i, 256, &h), 0);
	cr_assert_eq(hp("user:pass\x03", 11, 256, &h), 11);
}

Test(hello, foreign_protocols)
{
	struct qipc_hello h;

	cr_assert_eq(hp("GET / HTTP/1.1\r\n", 16, 256, &h), -EPROTO);
	cr_assert_eq(hp("POST /x HTTP/1.1\r\n", 18, 256, &h), -EPROTO);
	cr_assert_eq(hp("\x16\x03\x01\x02\x00", 5, 256, &h), -EPROTO);
	/* a partial "GE" is not yet decidable */
	cr_assert_eq(hp("GE", 2, 256, &h), 0);
}

Test(hello, build)
{
	uint8_t b[32];
	struct qipc_hello h;

	cr_assert_eq(qipc_hello_build(b, sizeof(b), "user", "pass", 3), 11);
	cr_assert_eq(memcmp(b, "user:pass\x03", 11), 0);
	cr_assert_eq(qipc_hello_build(b, sizeof(b), "user", "pass", 6), 11);
	cr_assert_eq(memcmp(b, "user:pass\x06", 11), 0);
	cr_assert_eq(qipc_hello_build(b, sizeof(b), "", NULL, 3), 2);
	cr_assert_eq(memcmp(b, "\x03", 2), 0);
	cr_assert_eq(qipc_hello_build(b, sizeof(b), "c", NULL, 3), 3);
	cr_assert_eq(memcmp(b, "c\x03", 3), 0);
	cr_assert_eq(qipc_hello_build(b, sizeof(b), "u", "", 0), 4);
	cr_assert_eq(memcmp(b, "u:\0", 4), 0);
	cr_assert_eq(qipc_hello_parse(b, 4, 64, &h), 4);
	cr_assert_eq(h.capability, 0);
	cr_assert_eq(h.user_len, 1);
	cr_assert_eq(qipc_hello_build(b, 10, "user", "pass", 3), -ENOSPC);
	cr_assert_eq(qipc_hello_build(b, sizeof(b), "user", "pass", 7), -EINVAL);
	cr_assert_eq(qipc_hello_build(b, sizeof(b), "user", "pass", -1), -EINVAL);
	cr_assert_eq(qipc_hello_reply(6, 3), 3);
	cr_assert_eq(qipc_hello_reply(1, 3), 1);
}
