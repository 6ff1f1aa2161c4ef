/*
 * test_qipc_vectors.c — every row of the protocol page's test vectors
 * (tests/data/q-ipc-vectors.tsv, 125 rows) through the codec: handshake rows through the
 * hello parser, payload rows through qipc_decode, whole messages through qipc_decode_msg.
 * Each decoded value is checked against its meaning (type, and its q text via qipc_format,
 * which spells the value out: nulls, infinities, dates, attributes), then re-encoded; the
 * bytes must equal the vector exactly, compressed rows included (so the compressor
 * reproduces q's / KX's bytes). Vector 28 (section 6.5) is not in the TSV and is inlined.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"
#include "t_codec.h"

/*
 * kind: 'H' client hello (type = capability, text = credentials), 'R' server reply byte,
 * 'M' whole message, 'P' payload only, 'C' compressed message (text is a prefix of the q
 * text), 'I' b9 in-process form (header rejected, payload decodes).
 */
struct expect {
	const char *meaning;
	int type;
	char kind;
	const char *text;
};

static const struct expect expects[] = {
	{ "1: client hello `user:pass`, capability 3", 3, 'H', "user:pass" },
	{ "2: server reply: capability 3 accepted", 3, 'R', "" },
	{ "3: `1i` async", -6, 'M', "1i" },
	{ "4: `1` (long) async", -7, 'M', "1" },
	{ "5: `` `a `` async", -11, 'M', "`a" },
	{ "6: `\"hello\"` async", 10, 'M', "\"hello\"" },
	{ "7: `1 2 3` (longs) async", 7, 'M', "1 2 3" },
	{ "8: `enlist 1i`", 6, 'M', ",1i" },
	{ "9: `` `a`b!2 3i ``", 99, 'M', "`a`b!2 3i" },
	{ "10: `` `s#`a`b!2 3i ``", 127, 'M', "`s#`a`b!2 3i" },
	{ "11: `([]a:enlist 2i;b:enlist 3i)`", 98, 'M', "+`a`b!(,2i;,3i)" },
	{ "12: `([a:enlist 2i]b:enlist 3i)`", 99, 'M', "(+(,`a)!,,2i)!+(,`b)!,,3i" },
	{ "13: `{x+y}`", 100, 'M', "{x+y}" },
	{ "14: sync query `\"1+1\"`", 10, 'M', "\"1+1\"" },
	{ "15: response `2`", -7, 'M', "2" },
	{ "16: sync `` (`add;2;3) ``", 0, 'M', "(`add;2;3)" },
	{ "17: sync `({x+y};2;3)`", 0, 'M', "({x+y};2;3)" },
	{ "18: error response `'type`", -128, 'M', "'type" },
	{ "19: sync chaser `h\"\"`", 10, 'M', "\"\"" },
	{ "20: response `::`", 101, 'M', "::" },
	{ "21: sync `` (`.u.sub;`trade;`) ``", 0, 'M', "(`.u.sub;`trade;`)" },
	{ "22: async publish `` (`upd;`trade;([]sym:enlist`a;px:enlist 1.5)) ``", 0, 'M', "(`upd;`trade;+`sym`px!(,`a;,1.5))" },
	{ "23: async `` (`.u.end;2024.01.02) ``", 0, 'M', "(`.u.end;2024.01.02)" },
	{ "25: payload GUID `8c680a01-5a49-5aab-5a65-d4bfddb6a661`", -2, 'P', "8c680a01-5a49-5aab-5a65-d4bfddb6a661" },
	{ "26: payload `{x+y}[3]`", 104, 'P', "{x+y}[3]" },
	{ "27: deferred error `-30!(h;1b;\"limit\")`", -128, 'M', "'limit" },
	{ "29: compressed async `` 1000#`q ``", 11, 'C', "`q`q`q`q`q`q" },
	{ "`1b`", -1, 'M', "1b" },
	{ "`0b`", -1, 'M', "0b" },
	{ "`\"G\"$\"8c680a01-5a49-5aab-5a65-d4bfddb6a661\"`", -2, 'M', "8c680a01-5a49-5aab-5a65-d4bfddb6a661" },
	{ "`0Ng`", -2, 'M', "00000000-0000-0000-0000-000000000000" },
	{ "`0x2a`", -4, 'M', "0x2a" },
	{ "`42h`", -5, 'M', "42h" },
	{ "`0Nh`", -5, 'M', "0Nh" },
	{ "`0Wh`", -5, 'M', "0Wh" },
	{ "`-0Wh`", -5, 'M', "-0Wh" },
	{ "`42i`", -6, 'M', "42i" },
	{ "`0Ni`", -6, 'M', "0Ni" },
	{ "`0Wi`", -6, 'M', "0Wi" },
	{ "`-0Wi`", -6, 'M', "-0Wi" },
	{ "`42`", -7, 'M', "42" },
	{ "`0N`", -7, 'M', "0N" },
	{ "`0W`", -7, 'M', "0W" },
	{ "`-0W`", -7, 'M', "-0W" },
	{ "`1.5e`", -8, 'M', "1.5e" },
	{ "`0Ne`", -8, 'M', "0Ne" },
	{ "`0We`", -8, 'M', "0We" },
	{ "`-0We`", -8, 'M', "-0We" },
	{ "`1.5`", -9, 'M', "1.5" },
	{ "`0n`", -9, 'M', "0n" },
	{ "`0w`", -9, 'M', "0w" },
	{ "`-0w`", -9, 'M', "-0w" },
	{ "`\"a\"`", -10, 'M', "\"a\"" },
	{ "`\" \"` (char null)", -10, 'M', "\" \"" },
	{ "`` `abc ``", -11, 'M', "`abc" },
	{ "`` ` `` (symbol null)", -11, 'M', "`" },
	{ "`2024.01.02D03:04:05.123456789`", -12, 'M', "2024.01.02D03:04:05.123456789" },
	{ "`0Np`", -12, 'M', "0Np" },
	{ "`0Wp`", -12, 'M', "0Wp" },
	{ "`-0Wp`", -12, 'M', "-0Wp" },
	{ "`2024.01m`", -13, 'M', "2024.01m" },
	{ "`0Nm`", -13, 'M', "0Nm" },
	{ "`0Wm`", -13, 'M', "0Wm" },
	{ "`-0Wm`", -13, 'M', "-0Wm" },
	{ "`2024.01.02`", -14, 'M', "2024.01.02" },
	{ "`0Nd`", -14, 'M', "0Nd" },
	{ "`0Wd`", -14, 'M', "0Wd" },
	{ "`-0Wd`", -14, 'M', "-0Wd" },
	{ "`2024.01.02T12:00:00.000`", -15, 'M', "2024.01.02T12:00:00.000" },
	{ "`0Nz`", -15, 'M', "0Nz" },
	{ "`0wz`", -15, 'M', "0wz" },
	{ "`-0wz`", -15, 'M', "-0wz" },
	{ "`0D03:04:05.123456789`", -16, 'M', "0D03:04:05.123456789" },
	{ "`0Nn`", -16, 'M', "0Nn" },
	{ "`0Wn`", -16, 'M', "0Wn" },
	{ "`-0Wn`", -16, 'M', "-0Wn" },
	{ "`03:04` (minute)", -17, 'M', "03:04" },
	{ "`0Nu`", -17, 'M', "0Nu" },
	{ "`0Wu`", -17, 'M', "0Wu" },
	{ "`-0Wu`", -17, 'M', "-0Wu" },
	{ "`03:04:05` (second)", -18, 'M', "03:04:05" },
	{ "`0Nv`", -18, 'M', "0Nv" },
	{ "`0Wv`", -18, 'M', "0Wv" },
	{ "`-0Wv`", -18, 'M', "-0Wv" },
	{ "`03:04:05.678` (time)", -19, 'M', "03:04:05.678" },
	{ "`0Nt`", -19, 'M', "0Nt" },
	{ "`0Wt`", -19, 'M', "0Wt" },
	{ "`-0Wt`", -19, 'M', "-0Wt" },
	{ "`010b`", 1, 'M', "010b" },
	{ "`(\"G\"$\"8c680a01-5a49-5aab-5a65-d4bfddb6a661\";0Ng)`", 2, 'M', "8c680a01-5a49-5aab-5a65-d4bfddb6a661 00000000-0000-0000-0000-000000000000" },
	{ "`0x0001ff`", 4, 'M', "0x0001ff" },
	{ "`1 0N 3h`", 5, 'M', "1 0N 3h" },
	{ "`1 0N 3i`", 6, 'M', "1 0N 3i" },
	{ "`1 0N 3` (long)", 7, 'M', "1 0N 3" },
	{ "`1.5 0N 2.5e`", 8, 'M', "1.5 0N 2.5e" },
	{ "`1.5 0n 2.5`", 9, 'M', "1.5 0n 2.5" },
	{ "`\"ab c\"`", 10, 'M', "\"ab c\"" },
	{ "``` `a``bc ```", 11, 'M', "`a``bc" },
	{ "`2024.01.02D03:04:05.123456789 0Np`", 12, 'M', "2024.01.02D03:04:05.123456789 0Np" },
	{ "`(2024.01m;0Nm)`", 13, 'M', "2024.01 0Nm" },
	{ "`2024.01.02 0Nd`", 14, 'M', "2024.01.02 0Nd" },
	{ "`(2024.01.02T12:00:00.000;0Nz)`", 15, 'M', "2024.01.02T12:00:00.000 0Nz" },
	{ "`(0D03:04:05.123456789;0Nn)`", 16, 'M', "0D03:04:05.123456789 0Nn" },
	{ "`(03:04;0Nu)`", 17, 'M', "03:04 0Nu" },
	{ "`(03:04:05;0Nv)`", 18, 'M', "03:04:05 0Nv" },
	{ "`(03:04:05.678;0Nt)`", 19, 'M', "03:04:05.678 0Nt" },
	{ "`()` (empty general list)", 0, 'M', "()" },
	{ "`` `long$() ``", 7, 'M', "`long$()" },
	{ "`` `symbol$() ``", 11, 'M', "`symbol$()" },
	{ "`` `a`b!1 2 ``", 99, 'M', "`a`b!1 2" },
	{ "`` ([]sym:`a`b;px:1.5 2.5) ``", 98, 'M', "+`sym`px!(`a`b;1.5 2.5)" },
	{ "`` ([sym:`a`b]px:1.5 2.5) `` (keyed table)", 99, 'M', "(+(,`sym)!,`a`b)!+(,`px)!,1.5 2.5" },
	{ "`` `s#1 2 3 ``", 7, 'M', "`s#1 2 3" },
	{ "`` `u#1 2 3 ``", 7, 'M', "`u#1 2 3" },
	{ "`` `p#1 1 2 ``", 7, 'M', "`p#1 1 2" },
	{ "`` `g#2 1 2 ``", 7, 'M', "`g#2 1 2" },
	{ "`` `s#`a`b!1 2 ``", 127, 'M', "`s#`a`b!1 2" },
	{ "`` (1;`a;(\"bc\";1 2h);()) `` (nested)", 0, 'M', "(1;`a;(\"bc\";1 2h);())" },
	{ "`10000#\"kdb+ipc \"`, `b9` mode 11 (compressed)", 10, 'C', "\"kdb+ipc kdb+ipc kdb+" },
	{ "`(\"f\";10000#\"kdb+ipc \")` sent async by `k(-h,\"f\",x,(K)0)` to a non-loopback address (compressed on the wire)", 0, 'C', "(,\"f\";\"kdb+ipc kdb+ipc " },
	{ "sync sent by `k(h,\".u.sub\",ks(\"trade\"),ks(\"\"),(K)0)`", 0, 'M', "(\".u.sub\";`trade;`)" },
	{ "async sent by `k(-h,\"a:1\",(K)0)`", 10, 'M', "\"a:1\"" },
	{ "client hello sent by `khpun(host,port,\"\",timeout)` (empty credentials)", 3, 'H', "c" },
	{ "client hello sent by `khpunc(host,port,\"user:pass\",timeout,1)`", 6, 'H', "user:pass" },
	{ "`1i`, `b9` mode -1 (in-process form)", -6, 'I', "1i" },
};

#define NEXPECT (sizeof(expects) / sizeof(expects[0]))

static void check_text(const struct qipc_obj *o, const struct expect *e)
{
	char buf[512];
	int n = qipc_format(o, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	if (e->kind == 'C')
		cr_assert_eq(strncmp(buf, e->text, strlen(e->text)), 0, "%s: got %s", e->meaning,
			     buf);
	else
		cr_assert_str_eq(buf, e->text, "%s: got %s", e->meaning, buf);
}

static void check_hello(const struct t_vector *v, const struct expect *e)
{
	struct qipc_hello h;
	uint8_t out[64];
	size_t ul;
	int rc = qipc_hello_parse(v->bytes, v->len, 256, &h);

	cr_assert_eq(rc, (int)v->len, "%s", e->meaning);
	cr_assert_eq(h.capability, e->type);
	cr_assert_not(h.is_legacy);
	cr_assert_eq(h.cred_len, strlen(e->text));
	cr_assert_eq(memcmp(h.cred, e->text, h.cred_len), 0);
	/* and the builder writes the same bytes */
	ul = strchr(e->text, ':') ? (size_t)(strchr(e->text, ':') - e->text) : strlen(e->text);
	cr_assert_eq(h.user_len, ul);
	{
		char user[64];

		memcpy(user, e->text, ul);
		user[ul] = 0;
		rc = qipc_hello_build(out, sizeof(out), user,
				      e->text[ul] == ':' ? e->text + ul + 1 : NULL, e->type);
	}
	cr_assert_eq(rc, (int)v->len);
	cr_assert_eq(memcmp(out, v->bytes, v->len), 0);
}

/* Spot checks of raw values, independent of the printer. */
static void check_values(const struct qipc_obj *o, const char *m)
{
	if (strcmp(m, "3: `1i` async") == 0)
		cr_assert_eq(o->a.i, 1);
	else if (strcmp(m, "15: response `2`") == 0)
		cr_assert_eq(o->a.j, 2);
	else if (strcmp(m, "`0Nh`") == 0)
		cr_assert_eq(o->a.h, QIPC_NULL_SHORT);
	else if (strcmp(m, "`-0Wi`") == 0)
		cr_assert_eq(o->a.i, -QIPC_INF_INT);
	else if (strcmp(m, "`0W`") == 0)
		cr_assert_eq(o->a.j, QIPC_INF_LONG);
	else if (strcmp(m, "`1.5e`") == 0)
		cr_assert_float_eq(o->a.e, 1.5f, 0);
	else if (strcmp(m, "`2024.01.02`") == 0)
		cr_assert_eq(o->a.i, 8767);
	else if (strcmp(m, "`2024.01.02T12:00:00.000`") == 0)
		cr_assert_float_eq(o->a.f, 8767.5, 0);
	else if (strcmp(m, "`2024.01.02D03:04:05.123456789`") == 0)
		cr_assert_eq(o->a.j, 8767LL * 86400000000000LL + 11045123456789LL);
	else if (strcmp(m, "`1 0N 3` (long)") == 0)
		cr_assert(o->n == 3 && ((int64_t *)o->data)[1] == QIPC_NULL_LONG &&
			  ((int64_t *)o->data)[2] == 3);
	else if (strcmp(m, "`` `s#1 2 3 ``") == 0)
		cr_assert_eq(o->attr, 1);
	else if (strcmp(m, "`` `g#2 1 2 ``") == 0)
		cr_assert_eq(o->attr, 4);
	else if (strcmp(m, "13: `{x+y}`") == 0)
		cr_assert(o->s && o->s[0] == 0 && o->n == 1 && o->items[0]->n == 5);
	else if (strcmp(m, "18: error response `'type`") == 0)
		cr_assert_str_eq(o->s, "type");
	else if (strcmp(m, "29: compressed async `` 1000#`q ``") == 0) {
		cr_assert_eq(o->n, 1000);
		for (size_t i = 0; i < 1000; i++)
			cr_assert_str_eq(o->syms[i], "q");
	} else if (strncmp(m, "`10000#\"kdb+ipc \"`", 18) == 0) {
		cr_assert_eq(o->n, 10000);
		for (size_t i = 0; i < 10000; i++)
			cr_assert_eq(((char *)o->data)[i], "kdb+ipc "[i % 8]);
	}
}

static void check_message(const struct t_vector *v, const struct expect *e)
{
	uint8_t mtype = 0xff, *enc;
	size_t enc_len;
	int err = 0;
	struct qipc_obj *o = qipc_decode_msg(v->bytes, v->len, 0, &mtype, &err);

	cr_assert_not_null(o, "%s: decode error %d", e->meaning, err);
	cr_assert_eq(mtype, v->bytes[1]);
	cr_assert_eq(o->type, e->type, "%s: type %d", e->meaning, o->type);
	cr_assert_eq((v->bytes[2] != 0), e->kind == 'C', "%s: compression flag", e->meaning);
	check_text(o, e);
	check_values(o, e->meaning);
	/* re-encode: exact bytes, compressed rows through q's compression rule */
	cr_assert_eq(qipc_encode_msg(o, (enum qipc_msg_type)mtype, e->kind == 'C', &enc, &enc_len),
		     0);
	cr_assert_eq(enc_len, v->len, "%s: re-encoded %zu bytes, want %zu", e->meaning, enc_len,
		     v->len);
	cr_assert_eq(memcmp(enc, v->bytes, v->len), 0, "%s: re-encoded bytes differ", e->meaning);
	free(enc);
	/* plain messages must not be compressed even when compression is allowed (< 2009) */
	if (e->kind != 'C') {
		cr_assert_eq(qipc_encode_msg(o, (enum qipc_msg_type)mtype, true, &enc, &enc_len),
			     0);
		cr_assert_eq(enc_len, v->len);
		free(enc);
	}
	qipc_obj_free(o);
}

static void check_payload(const uint8_t *p, size_t n, const struct expect *e)
{
	struct qipc_decode_opts opts = { .is_little_endian = true, .capability = 3 };
	uint8_t out[256];
	int err = 0;
	struct qipc_obj *o = qipc_decode(p, n, &opts, &err);

	cr_assert_not_null(o, "%s: decode error %d", e->meaning, err);
	cr_assert_eq(o->type, e->type);
	check_text(o, e);
	cr_assert_eq(qipc_encoded_size(o), (int64_t)n);
	cr_assert_eq(qipc_encode(o, out, sizeof(out)), (int64_t)n);
	cr_assert_eq(memcmp(out, p, n), 0);
	cr_assert_eq(qipc_encode(o, out, n - 1), -ENOSPC);
	qipc_obj_free(o);
}

Test(vectors, every_row_decodes_to_its_meaning_and_reencodes, .timeout = 60)
{
	struct t_vector *v;
	size_t n = t_vectors_load(&v);
	struct qipc_header h;

	cr_assert_eq(n, 125, "vector file has %zu rows", n);
	cr_assert_eq(n, NEXPECT);
	for (size_t i = 0; i < n; i++) {
		const struct expect *e = &expects[i];

		cr_assert_str_eq(v[i].meaning, e->meaning, "row %zu", i);
		switch (e->kind) {
		case 'H':
			check_hello(&v[i], e);
			break;
		case 'R':
			cr_assert_eq(v[i].len, 1);
			cr_assert_eq(v[i].bytes[0], qipc_hello_reply(e->type, 3));
			break;
		case 'P':
			check_payload(v[i].bytes, v[i].len, e);
			break;
		case 'I':
			/* b9 mode -1: byte 2 = 03 is not a wire message; the payload is still 1i */
			cr_assert_eq(qipc_header_parse(v[i].bytes, v[i].len, 3, 0, &h), -EBADMSG);
			cr_assert_null(qipc_decode_msg(v[i].bytes, v[i].len, 0, NULL, NULL));
			check_payload(v[i].bytes + 8, v[i].len - 8, e);
			break;
		default:
			check_message(&v[i], e);
			break;
		}
	}
	t_vectors_free(v, n);
}

/* Section 6.5: the request "500#0j" and q's 53-byte compressed response (vector 28). */
Test(vectors, vector28_500_zero_longs)
{
	size_t rl, cl;
	uint8_t *req = t_hex("01 01 00 00 14 00 00 00 0a 00 06 00 00 00 35 30 30 23 30 6a", &rl);
	uint8_t *cmp = t_hex("01 02 01 00 35 00 00 00 ae 0f 00 00"
			     "c0 07 00 f4 01 00 00 00 ff 00 ff"
			     "ff 00 ff 00 ff 00 ff 00 ff 00 ff 00 ff 00 ff 00 ff"
			     "3f 00 ff 00 ff 00 ff 00 ff 00 ff 00 8f", &cl);
	uint8_t mtype, *enc, plain[4014];
	size_t enc_len;
	int err;
	struct qipc_obj *o = qipc_decode_msg(req, rl, 0, &mtype, &err);
	struct qipc_peek pk;

	cr_assert_not_null(o);
	cr_assert_eq(mtype, QIPC_SYNC);
	cr_assert_eq(o->type, QT_CHAR);
	cr_assert_eq(memcmp(o->data, "500#0j", 6), 0);
	cr_assert_eq(qipc_peek(req + 8, rl - 8, true, 64, &pk), 1);
	cr_assert_eq(pk.kind, QIPC_PEEK_QUERY);
	qipc_obj_free(o);

	cr_assert_eq(cl, 53);
	cr_assert_eq(qipc_compressed_orig_len(cmp, cl), 4014);
	cr_assert_eq(qipc_decompress(cmp, cl, plain, sizeof(plain)), 4014);
	cr_assert_eq(memcmp(plain, "\x01\x02\x00\x00\xae\x0f\x00\x00\x07\x00\xf4\x01\x00\x00", 14),
		     0);
	for (size_t i = 14; i < 4014; i++)
		cr_assert_eq(plain[i], 0);
	o = qipc_decode_msg(cmp, cl, 0, &mtype, &err);
	cr_assert_not_null(o, "err %d", err);
	cr_assert_eq(mtype, QIPC_RESPONSE);
	cr_assert_eq(o->type, QT_LONG);
	cr_assert_eq(o->n, 500);
	for (size_t i = 0; i < 500; i++)
		cr_assert_eq(((int64_t *)o->data)[i], 0);
	cr_assert_eq(qipc_encode_msg(o, QIPC_RESPONSE, true, &enc, &enc_len), 0);
	cr_assert_eq(enc_len, 53);
	cr_assert_eq(memcmp(enc, cmp, 53), 0);
	free(enc);
	qipc_obj_free(o);
	free(req);
	free(cmp);
}

/* Partial decompression of the compressed rows: every prefix restores a prefix. */
Test(vectors, compressed_rows_decompress_by_prefix, .timeout = 60)
{
	struct t_vector *v;
	size_t n = t_vectors_load(&v), seen = 0;

	for (size_t i = 0; i < n; i++) {
		int64_t u;
		uint8_t *full, *part;
		int64_t prev = 0;

		if (v[i].len < 12 || v[i].bytes[0] != 1 || v[i].bytes[2] != 1)
			continue;
		seen++;
		u = qipc_compressed_orig_len(v[i].bytes, v[i].len);
		cr_assert_gt(u, 2008);
		full = malloc((size_t)u);
		part = malloc((size_t)u);
		cr_assert_eq(qipc_decompress(v[i].bytes, v[i].len, full, (size_t)u), u);
		cr_assert_eq(qipc_decompress(v[i].bytes, v[i].len, full, (size_t)u - 1), -ENOSPC);
		for (size_t k = 0; k <= v[i].len; k++) {
			int64_t r = qipc_decompress_prefix(v[i].bytes, k, part, (size_t)u);

			cr_assert_geq(r, prev, "prefix %zu restored %lld < %lld", k, (long long)r,
				      (long long)prev);
			cr_assert_leq(r, u);
			cr_assert_eq(memcmp(part, full, (size_t)r), 0);
			prev = r;
		}
		cr_assert_eq(prev, u);
		/* capped output: only the first 40 bytes */
		cr_assert_eq(qipc_decompress_prefix(v[i].bytes, v[i].len, part, 40), 40);
		cr_assert_eq(memcmp(part, full, 40), 0);
		free(full);
		free(part);
	}
	cr_assert_eq(seen, 3);
	t_vectors_free(v, n);
}
