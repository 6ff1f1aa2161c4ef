/*
 * test_qipc_format.c — codec/format.c: q-console text of small values (decoded from
 * their wire bytes so the printer sees what the decoder builds), the snprintf-style
 * return and truncation with "..", and the bound on huge values.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"
#include "t_codec.h"

static const struct {
	const char *hex, *text;
} cases[] = {
	{ "f90200000000000000", "2" },
	{ "07 00 03000000 000000000000000001000000000000000200000000000000", "0 1 2" },
	{ "09 00 02000000 000000000000f83f 000000000000f87f", "1.5 0n" },
	{ "09 00 02000000 000000000000f03f 0000000000000040", "1 2f" },
	{ "f7 0000000000000040", "2f" },
	{ "f7 9a9999999999b93f", "0.1" },
	{ "0a 00 03000000 616263", "\"abc\"" },
	{ "0a 00 04000000 61220a5c", "\"a\\\"\\n\\\\\"" },
	{ "0b 00 02000000 6100 6200", "`a`b" },
	{ "63 0b00 02000000 61006200 0700 02000000 01000000000000000200000000000000",
	  "`a`b!1 2" },
	{ "64 00 0a00 05000000 7b782b797d", "{x+y}" },
	{ "80 7479706500", "'type" },
	{ "ff 00", "0b" },
	{ "01 00 03000000 010001", "101b" },
	{ "fc 0a", "0x0a" },
	{ "04 00 00000000", "`byte$()" },
	{ "f2 3f220000", "2024.01.02" },
	{ "f2 00000000", "2000.01.01" },
	{ "f2 ffffffff", "1999.12.31" },
	{ "f2 6e010000", "2001.01.01" },
	{ "f3 0c000000", "2001.01m" },
	{ "ef d1020000", "12:01" },
	{ "ed 73be9702", "12:04:59.123" },
	{ "f4 00c0cafa20fe0000", "2000.01.04D05:36:57.600000000" },
	{ "f0 0000000000000000", "0D00:00:00.000000000" },
	{ "f0 ffffffffffffffff", "-0D00:00:00.000000001" },
	{ "f8 0000b040", "5.5e" },
	{ "fb 16ff", "-234h" },
	{ "f6 30", "\"0\"" },
	{ "0a 00 01000000 33", ",\"3\"" },
	{ "00 00 01000000 07 00 02000000 01000000000000000200000000000000", ",1 2" },
	{ "00 00 02000000 f90100000000000000 63 0b00 01000000 6100 0700 01000000 0200000000000000",
	  "(1;(,`a)!,2)" },
	{ "6b 66 0c", ",/" },
	{ "68 02000000 6601 f90100000000000000", "+[1]" },
	{ "6500", "::" },
	{ "62 01 63 0b00 01000000 6100 0000 01000000 0701 01000000 0100000000000000",
	  "`s#+(,`a)!,`s#,1" },
};

Test(format, small_values)
{
	struct qipc_decode_opts opts = { .is_little_endian = true, .capability = 3 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n;
		uint8_t *b = t_hex(cases[i].hex, &n);
		int err;
		struct qipc_obj *o = qipc_decode(b, n, &opts, &err);
		char buf[256];
		int len;

		cr_assert_not_null(o, "%s: err %d", cases[i].hex, err);
		len = qipc_format(o, buf, sizeof(buf));
		cr_assert_str_eq(buf, cases[i].text, "%s", cases[i].hex);
		cr_assert_eq(len, (int)strlen(cases[i].text));
		qipc_obj_free(o);
		free(b);
	}
}

Test(format, snprintf_rule_and_truncation)
{
	struct qipc_obj *o = qipc_obj_vec(QT_LONG, 5);
	char buf[8];

	for (int i = 0; i < 5; i++)
		((int64_t *)o->data)[i] = 100 + i;
	/* "100 101 102 103 104" is 19 characters */
	cr_assert_eq(qipc_format(o, buf, sizeof(buf)), 19);
	cr_assert_str_eq(buf, "100 1..");
	cr_assert_eq(qipc_format(o, NULL, 0), 19);
	cr_assert_eq(qipc_format(o, buf, 1), 19);
	cr_assert_str_eq(buf, "");
	qipc_obj_free(o);
}

Test(format, huge_values_are_bounded, .timeout = 30)
{
	struct qipc_obj *o = qipc_obj_vec(QT_LONG, 10u << 20);
	char buf[64];
	int len = qipc_format(o, buf, sizeof(buf));

	/* ten million zeros would need 20 MB of text; the printer stops at 1 MiB */
	cr_assert_leq(len, 1 << 20);
	cr_assert_gt(len, 1000);
	cr_assert_eq(strlen(buf), sizeof(buf) - 1);
	cr_assert_eq(strcmp(buf + sizeof(buf) - 3, ".."), 0);
	qipc_obj_free(o);
}

/* Values at the ends of their ranges (found by tests/fuzz/fuzz_decode under UBSan): they
 * print without overflowing, and the infinities keep their q spelling. */
Test(format, extreme_temporal_values)
{
	char out[128];
	struct qipc_obj *o;

	o = qipc_obj_atom(-QT_TIMESTAMP);
	o->a.j = INT64_MIN + 2;	/* the smallest ordinary timestamp */
	cr_assert_gt(qipc_format(o, out, sizeof(out)), 0);
	cr_assert(strchr(out, 'D') != NULL, "%s", out);
	o->a.j = INT64_MAX;
	qipc_format(o, out, sizeof(out));
	cr_assert_str_eq(out, "0Wp");
	o->a.j = INT64_MIN + 1;
	qipc_format(o, out, sizeof(out));
	cr_assert_str_eq(out, "-0Wp");
	qipc_obj_free(o);

	o = qipc_obj_atom(-QT_TIMESPAN);
	o->a.j = INT64_MAX;
	qipc_format(o, out, sizeof(out));
	cr_assert_str_eq(out, "0Wn");
	qipc_obj_free(o);

	o = qipc_obj_atom(-QT_DATETIME);
	o->a.f = -3.12175e+144;
	cr_assert_gt(qipc_format(o, out, sizeof(out)), 0);
	cr_assert(strchr(out, 'z') != NULL, "%s", out);
	qipc_obj_free(o);
}
