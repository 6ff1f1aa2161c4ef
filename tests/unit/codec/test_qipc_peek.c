/*
 * test_qipc_peek.c — codec/peek.c: routing classification of request payloads (string
 * query, list headed by a symbol / string / lambda, other), correct answers on every
 * prefix ("need more" = 0 until decidable, then the same answer), text capping and
 * truncation flags, big-endian counts, and rejection of impossible first bytes.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"
#include "t_codec.h"

struct peek_case {
	const char *hex;	/* payload */
	size_t max_text;
	enum qipc_peek_kind kind;
	const char *text;
	bool is_truncated;
	size_t decided_at;	/* smallest prefix that decides */
};

static const struct peek_case cases[] = {
	/* "1+1" */
	{ "0a0003000000312b31", 64, QIPC_PEEK_QUERY, "1+1", false, 9 },
	/* "select from trade" capped at 6 */
	{ "0a001100000073656c6563742066726f6d207472616465", 6, QIPC_PEEK_QUERY, "select", true,
	  12 },
	/* "" (sync chaser) */
	{ "0a0000000000", 64, QIPC_PEEK_QUERY, "", false, 6 },
	/* (`add;2;3) */
	{ "000003000000f561646400f90200000000000000f90300000000000000", 64, QIPC_PEEK_FUNC_SYM,
	  "add", false, 11 },
	/* (`.u.sub;`trade;`) with the name capped at 3 */
	{ "000003000000f52e752e73756200f5747261646500f500", 3, QIPC_PEEK_FUNC_SYM, ".u.", true,
	  11 },
	/* (`upd) name exactly max_text long */
	{ "000001000000f575706400", 3, QIPC_PEEK_FUNC_SYM, "upd", false, 11 },
	/* k(h,".u.sub",...) sends the name as a string */
	{ "0000030000000a00060000002e752e737562f5747261646500f500", 64, QIPC_PEEK_FUNC_STR,
	  ".u.sub", false, 18 },
	/* ({x+y};2;3) */
	{ "00000300000064000a00050000007b782b797df90200000000000000f90300000000000000", 64,
	  QIPC_PEEK_LAMBDA, "{x+y}", false, 19 },
	/* lambda in namespace .d */
	{ "0000010000006464000a00050000007b782b797d", 2, QIPC_PEEK_LAMBDA, "{x", true, 17 },
	/* (+;2;2) */
	{ "000003000000660102f90200000000000000", 64, QIPC_PEEK_OTHER, "", false, 7 },
	/* () */
	{ "000000000000", 64, QIPC_PEEK_OTHER, "", false, 6 },
	/* `a (symbol atom) */
	{ "f56100", 64, QIPC_PEEK_OTHER, "", false, 1 },
	/* `a`b!2 3i */
	{ "630b0002000000610062000600020000000200000003000000", 64, QIPC_PEEK_OTHER, "", false,
	  1 },
};

static void check_case(const struct peek_case *c, bool le, const uint8_t *b, size_t len)
{
	struct qipc_peek pk;

	for (size_t n = 0; n <= len; n++) {
		int rc = qipc_peek(b, n, le, c->max_text, &pk);

		if (n < c->decided_at) {
			cr_assert_eq(rc, 0, "%s: prefix %zu gave %d", c->hex, n, rc);
			continue;
		}
		cr_assert_eq(rc, 1, "%s: prefix %zu gave %d", c->hex, n, rc);
		cr_assert_eq(pk.kind, c->kind, "%s: kind %d", c->hex, pk.kind);
		cr_assert_eq(pk.text_len, strlen(c->text), "%s: text_len %zu", c->hex, pk.text_len);
		if (pk.text_len)
			cr_assert_eq(memcmp(pk.text, c->text, pk.text_len), 0);
		cr_assert_eq(pk.is_truncated, c->is_truncated);
		if (pk.text_len)
			cr_assert(pk.text >= b && pk.text + pk.text_len <= b + n);
	}
}

Test(peek, table_every_prefix)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *b = t_hex(cases[i].hex, &len);

		check_case(&cases[i], true, b, len);
		free(b);
	}
}

Test(peek, big_endian_counts)
{
	struct qipc_peek pk;
	/* "1+1" with a big-endian count */
	const uint8_t be[] = { 0x0a, 0, 0, 0, 0, 3, '1', '+', '1' };
	/* same bytes read little-endian: count 0x03000000, text capped */
	cr_assert_eq(qipc_peek(be, sizeof(be), false, 64, &pk), 1);
	cr_assert_eq(pk.kind, QIPC_PEEK_QUERY);
	cr_assert_eq(pk.text_len, 3);
	cr_assert_not(pk.is_truncated);
	cr_assert_eq(qipc_peek(be, sizeof(be), true, 3, &pk), 1);
	cr_assert(pk.is_truncated);
	cr_assert_eq(qipc_peek(be, sizeof(be), true, 64, &pk), 0);
}

Test(peek, bad_first_bytes)
{
	struct qipc_peek pk;

	cr_assert_eq(qipc_peek((const uint8_t *)"\x03", 1, true, 8, &pk), -EBADMSG);
	cr_assert_eq(qipc_peek((const uint8_t *)"\xfd", 1, true, 8, &pk), -EBADMSG);
	cr_assert_eq(qipc_peek((const uint8_t *)"\x71", 1, true, 8, &pk), -EBADMSG);
	/* bad attribute on a char vector */
	cr_assert_eq(qipc_peek((const uint8_t *)"\x0a\x09\x01\x00\x00\x00x", 7, true, 8, &pk),
		     -EBADMSG);
	/* list whose head has an impossible type */
	cr_assert_eq(qipc_peek((const uint8_t *)"\x00\x00\x01\x00\x00\x00\x03", 7, true, 8, &pk),
		     -EBADMSG);
	/* lambda head whose body is not a char vector */
	cr_assert_eq(qipc_peek((const uint8_t *)"\x00\x00\x01\x00\x00\x00\x64\x00\x07", 9, true,
			       8, &pk), -EBADMSG);
}
