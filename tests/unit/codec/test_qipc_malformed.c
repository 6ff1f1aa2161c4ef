/*
 * test_qipc_malformed.c — hostile input: a table of malformed payloads and messages
 * (truncations, bad types, counts past the end, absurd counts, bad nesting, corrupt
 * compressed streams), each rejected with its specific error; and a bounded mutation run
 * (fixed seed) over golden frames that must never crash, read out of bounds (run the suite
 * under -Db_sanitize=address,undefined) or produce a value that does not round-trip.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec/qipc.h"
#include "t_codec.h"

struct bad_case {
	const char *hex;
	int err;
	const char *why;
};

/* Payloads, decoded little-endian with capability 3. */
static const struct bad_case bad_payloads[] = {
	{ "", -EBADMSG, "empty payload" },
	{ "03 00 01000000 00", -EBADMSG, "type 3 does not exist" },
	{ "fd 00", -EBADMSG, "type -3 does not exist" },
	{ "71 00", -EBADMSG, "type 113" },
	{ "9f 00", -EBADMSG, "type -97" },
	{ "7e 00", -EBADMSG, "type 126" },
	{ "14 00 01000000 00000000", -EPROTO, "enumeration vector (20)" },
	{ "ec 00000000", -EPROTO, "enumeration atom (-20)" },
	{ "4d 00 00000000", -EPROTO, "anymap (77)" },
	{ "70 00", -EPROTO, "dynamic load (112)" },
	{ "fa 01 00 00", -EBADMSG, "int atom truncated" },
	{ "f9 01", -EBADMSG, "long atom truncated" },
	{ "fe 8c680a015a495aab5a65d4bfddb6a6", -EBADMSG, "guid atom truncated" },
	{ "f5 61 62", -EBADMSG, "symbol atom without terminator" },
	{ "80 74 79", -EBADMSG, "error without terminator" },
	{ "07 00 03 00", -EBADMSG, "vector count truncated" },
	{ "07 00 03000000 0100000000000000 02000000000000", -EBADMSG, "count past the end" },
	{ "07 00 ffffff7f 00", -EBADMSG, "absurd long count" },
	{ "0a 00 ffffffff 61", -EBADMSG, "absurd char count" },
	{ "07 05 01000000 0100000000000000", -EBADMSG, "attribute 5" },
	{ "04 80 0300000000000000 010203", -EBADMSG, "8-byte count below capability 6" },
	{ "0b 00 02000000 6100 62", -EBADMSG, "symbol vector missing terminator" },
	{ "0b 00 05000000 6100", -EBADMSG, "symbol count past the end" },
	{ "00 00 03000000 f90100000000000000", -EBADMSG, "list count past the end" },
	{ "00 00 ffffff7f 6500", -EBADMSG, "absurd list count" },
	{ "00 00 01000000 03", -EBADMSG, "list item of bad type" },
	{ "fa 01000000 00", -EBADMSG, "byte left over after the value" },
	{ "63 0b 00 01000000 6100", -EBADMSG, "dictionary without values" },
	{ "63 03", -EBADMSG, "dictionary keys of bad type" },
	{ "62 00 0b 00 01000000 6100", -EBADMSG, "table without column dictionary" },
	{ "62 09 63 0b00 01000000 6100 0000 01000000 0700 01000000 0100000000000000", -EBADMSG,
	  "table attribute 9" },
	{ "62 00 63 0b00 01000000 6100 0700 01000000 0100000000000000", -EBADMSG,
	  "table columns not a general list" },
	{ "62 00 63 0b00 02000000 610062 00 0000 01000000 0700 01000000 0100000000000000",
	  -EBADMSG, "table with 2 names and 1 column" },
	{ "64 61 62", -EBADMSG, "lambda namespace without terminator" },
	{ "64 00 07 00 00000000", -EBADMSG, "lambda body not a char vector" },
	{ "64 00 0a 00 05000000 7b", -EBADMSG, "lambda source truncated" },
	{ "65", -EBADMSG, "unary without code" },
	{ "68 00000000", -EBADMSG, "projection of nothing" },
	{ "68 05000000 6500", -EBADMSG, "projection count past the end" },
	{ "68 02 00", -EBADMSG, "projection count truncated" },
	{ "69 ffffffff 6500", -EBADMSG, "absurd composition count" },
	{ "6b", -EBADMSG, "adverb without operand" },
	{ "6b 03", -EBADMSG, "adverb with bad operand" },
	{ "02 00 02000000 8c680a015a495aab5a65d4bfddb6a661", -EBADMSG, "guid count past the end" },
	{ "08 00 02000000 0000c03f 0000c0", -EBADMSG, "real vector truncated" },
	{ "7f 0b 01", -EBADMSG, "sorted dictionary truncated" },
	{ "00 00 01000000 00 00 01000000", -EBADMSG, "nested list truncated" },
	{ "00 00 02000000 6500", -EBADMSG, "second list item missing" },
};

/* Whole messages for qipc_decode_msg (max_bytes 1 MiB). */
static const struct bad_case bad_messages[] = {
	{ "01 00 00 00 0d 00", -EBADMSG, "shorter than a header" },
	{ "01 00 00 00 0e 00 00 00 fa 01 00 00 00", -EBADMSG, "message shorter than its length" },
	{ "01 00 00 00 0c 00 00 00 fa 01 00 00 00", -EBADMSG, "message longer than its length" },
	{ "02 00 00 00 0d 00 00 00 fa 01 00 00 00", -EBADMSG, "byte order 2" },
	{ "01 03 00 00 0d 00 00 00 fa 01 00 00 00", -EBADMSG, "message type 3" },
	{ "01 00 03 00 0d 00 00 00 fa 01 00 00 00", -EBADMSG, "in-process form (byte 2 = 3)" },
	{ "01 00 00 00 0d 00 10 00 fa 01 00 00 00", -EMSGSIZE, "over max_bytes" },
	{ "01 00 01 00 0e 00 00 00 09 00 00 00 00 00", -EBADMSG, "compressed with U < 10" },
	{ "01 00 01 00 0e 00 00 00 ff ff ff 7f 00 00", -EBADMSG, "U absurd for the stream" },
	{ "01 00 01 00 0f 00 00 00 0c 00 00 00 01 41 41", -EBADMSG, "reference to unset slot" },
	{ "01 00 01 00 0e 00 00 00 14 00 00 00 00 0a", -EBADMSG, "stream ends before U" },
	{ "01 00 01 00 16 00 00 00 0c 00 00 00 00 f9 01 02 03 04 05 06 07 08", -EBADMSG,
	  "compressed, decodes to a truncated long" },
	{ "01 00 01 00 18 00 00 00 0e 00 00 00 00 fa 01 00 00 00 00 00 00 00 00 00", -EBADMSG,
	  "bytes left over in the stream" },
	{ "01 00 00 00 0a 00 00 00 03 00", -EBADMSG, "plain message with bad type" },
	{ "01 00 00 00 10 00 00 00 07 00 ff ff ff ff 00 00", -EBADMSG, "absurd count in message" },
};

Test(malformed, table_of_bad_inputs)
{
	struct qipc_decode_opts opts = { .is_little_endian = true, .capability = 3 };
	size_t total = 0;

	for (size_t i = 0; i < sizeof(bad_payloads) / sizeof(bad_payloads[0]); i++) {
		size_t n;
		uint8_t *b = t_hex(bad_payloads[i].hex, &n);
		int err = 0;
		struct qipc_obj *o = qipc_decode(b, n, &opts, &err);

		cr_assert_null(o, "%s: accepted", bad_payloads[i].why);
		cr_assert_eq(err, bad_payloads[i].err, "%s: err %d, want %d", bad_payloads[i].why,
			     err, bad_payloads[i].err);
		free(b);
		total++;
	}
	for (size_t i = 0; i < sizeof(bad_messages) / sizeof(bad_messages[0]); i++) {
		size_t n;
		uint8_t *b = t_hex(bad_messages[i].hex, &n);
		int err = 0;
		struct qipc_obj *o = qipc_decode_msg(b, n, 1 << 20, NULL, &err);

		cr_assert_null(o, "%s: accepted", bad_messages[i].why);
		cr_assert_eq(err, bad_messages[i].err, "%s: err %d, want %d", bad_messages[i].why,
			     err, bad_messages[i].err);
		free(b);
		total++;
	}
	{
		/* vector 29: 45 bytes on the wire, U = 2014 over a 2000-byte limit */
		size_t n;
		uint8_t *b = t_hex("010001002d000000de070000800b00e80300007171ffaa7171ff"
				   "7171ff7171ff7171ff2a7171ff7171ff7171bf", &n);
		int err = 0;

		cr_assert_null(qipc_decode_msg(b, n, 2000, NULL, &err));
		cr_assert_eq(err, -EMSGSIZE);
		free(b);
		total++;
	}
	cr_assert_geq(total, 50);
}

/* Every strict prefix of every golden frame is rejected, never read past. */
Test(malformed, every_truncation_of_golden_frames, .timeout = 60)
{
	struct t_vector *v;
	size_t n = t_vectors_load(&v), checked = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t *copy;

		if (v[i].len < 10 || v[i].bytes[0] != 1 || v[i].bytes[2] > 1 || v[i].bytes[1] > 2)
			continue;
		for (size_t k = 0; k < v[i].len; k++) {
			int err = 0;
			struct qipc_obj *o;

			/* exact-size heap copy so ASan sees any read past the prefix */
			copy = malloc(k ? k : 1);
			memcpy(copy, v[i].bytes, k);
			o = qipc_decode_msg(copy, k, 0, NULL, &err);
			cr_assert_null(o, "%s: prefix %zu accepted", v[i].meaning, k);
			cr_assert_lt(err, 0);
			/* and as a payload with the length field fixed up */
			if (k > 8) {
				struct qipc_decode_opts opts = { .is_little_endian = true,
								 .capability = 3 };

				if (v[i].bytes[2] == 0) {
					o = qipc_decode(copy + 8, k - 8, &opts, &err);
					cr_assert_null(o, "%s: payload prefix %zu accepted",
						       v[i].meaning, k);
				}
			}
			free(copy);
			checked++;
		}
	}
	cr_assert_gt(checked, 2000);
	t_vectors_free(v, n);
}

static void mutate(struct t_rng *r, uint8_t *b, size_t *len, size_t cap)
{
	int nmut = 1 + (int)t_rng_below(r, 4);

	for (int m = 0; m < nmut; m++) {
		size_t pos = *len ? (size_t)t_rng_below(r, *len) : 0;

		switch (t_rng_below(r, 7)) {
		case 0:	/* flip a bit */
			if (*len)
				b[pos] ^= (uint8_t)(1u << t_rng_below(r, 8));
			break;
		case 1:	/* random byte */
		case 2:
			if (*len)
				b[pos] = (uint8_t)t_rng_next(r);
			break;
		case 3:	/* interesting values */
			if (*len) {
				static const uint8_t iv[] = { 0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x0b,
							      0x63, 0x62, 0x64, 0xf5 };
				b[pos] = iv[t_rng_below(r, sizeof(iv))];
			}
			break;
		case 4:	/* truncate */
			*len = pos;
			break;
		case 5:	/* insert a byte */
			if (*len < cap) {
				memmove(b + pos + 1, b + pos, *len - pos);
				b[pos] = (uint8_t)t_rng_next(r);
				(*len)++;
			}
			break;
		default:	/* delete a byte */
			if (*len) {
				memmove(b + pos, b + pos + 1, *len - pos - 1);
				(*len)--;
			}
			break;
		}
	}
}

Test(malformed, mutation_of_golden_frames, .timeout = 240)
{
	struct t_vector *v;
	size_t n = t_vectors_load(&v);
	struct t_rng r;
	size_t accepted = 0, rejected = 0;

	t_rng_seed(&r, 0xbadc0de);
	for (int iter = 0; iter < 60000; iter++) {
		const struct t_vector *g = &v[t_rng_below(&r, n)];
		size_t len = g->len, cap = g->len + 16;
		uint8_t *b = malloc(cap), *exact;
		struct qipc_obj *o;
		struct qipc_decode_opts opts = { .is_little_endian = true, .capability = 6 };
		struct qipc_peek pk;
		int err = 0;

		memcpy(b, g->bytes, len);
		mutate(&r, b, &len, cap);
		/* usually keep the header's length consistent so the payload decoder is reached */
		if (len >= 8 && t_rng_below(&r, 4) != 0) {
			b[4] = (uint8_t)len;
			b[5] = (uint8_t)(len >> 8);
			b[6] = 0;
			b[7] = 0;
		}
		exact = malloc(len ? len : 1);
		memcpy(exact, b, len);
		o = qipc_decode_msg(exact, len, 1 << 22, NULL, &err);
		if (o) {
			/* anything accepted must be writable and read back equal */
			uint8_t *m;
			size_t ml;
			struct qipc_obj *o2;

			cr_assert_eq(qipc_encode_msg(o, QIPC_ASYNC, false, &m, &ml), 0);
			o2 = qipc_decode_msg(m, ml, 0, NULL, &err);
			cr_assert_not_null(o2);
			cr_assert(qipc_obj_equal(o, o2));
			qipc_obj_free(o2);
			free(m);
			qipc_obj_free(o);
			accepted++;
		} else {
			cr_assert_lt(err, 0);
			rejected++;
		}
		if (len > 8) {
			o = qipc_decode(exact + 8, len - 8, &opts, &err);
			qipc_obj_free(o);
			(void)qipc_peek(exact + 8, len - 8, exact[0] == 1, 32, &pk);
		}
		if (len >= 12 && exact[2] != 0) {
			uint8_t out[8192];

			(void)qipc_decompress(exact, len, out, sizeof(out));
			(void)qipc_decompress_prefix(exact, len, out, sizeof(out));
		}
		{
			struct qipc_hello h;

			(void)qipc_hello_parse(exact, len, 64, &h);
		}
		free(exact);
		free(b);
	}
	cr_assert_gt(accepted, 1000);
	cr_assert_gt(rejected, 1000);
	t_vectors_free(v, n);
}
