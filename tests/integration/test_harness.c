/*
 * test_harness — checks the integration harness's own q serialiser (tests/support/t_obj.c)
 * against the protocol's test vectors, so that a failing integration test can be trusted to
 * point at the gateway or the emulator and not at the harness.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/t_crit.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (h[0] && h[1] && n < cap) {
		int hi = hexval(h[0]), lo = hexval(h[1]);

		if (hi < 0 || lo < 0)
			return 0;
		out[n++] = (uint8_t)(hi << 4 | lo);
		h += 2;
	}
	return n;
}

/* Vectors that are not whole messages: handshakes, payloads, in-process forms. */
static bool is_not_a_message(const char *meaning)
{
	return strstr(meaning, "hello") || strstr(meaning, "reply") || strstr(meaning, "payload") ||
	       strstr(meaning, "mode -1");
}

TestSuite(harness, .timeout = 30.0);

Test(harness, decodes_and_reencodes_protocol_vectors)
{
	const char *path = getenv("QIPC_VECTORS");
	static uint8_t msg[1 << 16];
	char line[1 << 17];
	int n_msgs = 0, n_compressed = 0, n_recompressed = 0;
	FILE *f;

	cr_assert(path && path[0], "QIPC_VECTORS not set");
	f = fopen(path, "r");
	cr_assert(f, "%s: %s", path, strerror(errno));
	/* Bounded by the file's lines. */
	while (fgets(line, sizeof(line), f)) {
		char *meaning, *hex, *tab;
		struct t_obj *o;
		uint8_t *re;
		size_t n, re_len;
		int type = -1, err = 0;

		if (line[0] == '#' || !strncmp(line, "source\t", 7))
			continue;
		meaning = strchr(line, '\t');
		cr_assert(meaning, "bad line %s", line);
		*meaning++ = 0;
		hex = strchr(meaning, '\t');
		cr_assert(hex, "bad line %s", meaning);
		*hex++ = 0;
		tab = strchr(hex, '\t');
		if (tab)
			*tab = 0;
		if (is_not_a_message(meaning))
			continue;
		n = unhex(hex, msg, sizeof(msg));
		cr_assert(n >= 10, "vector %s: bad hex", meaning);
		o = t_decode_msg(msg, n, &type, &err);
		cr_assert(o != NULL, "vector %s: decode failed (%d)", meaning, err);
		cr_assert_eq(type, msg[1], "vector %s: type", meaning);
		n_msgs++;
		if (msg[2] == 1) {
			/* Compressed: the value must re-encode to the decompressed bytes. */
			uint8_t *plain = NULL;
			int64_t u = t_decompress(msg, n, &plain);

			cr_assert(u > 0, "vector %s: decompress failed (%lld)", meaning,
				  (long long)u);
			cr_assert_eq(t_encode_msg(o, type, &re, &re_len), 0, "vector %s", meaning);
			cr_assert(re_len == (size_t)u && memcmp(re, plain, re_len) == 0,
				  "vector %s: re-encoding differs from the decompressed message",
				  meaning);
			/* And compressing it again gives q's bytes exactly (page 6.4). */
			if (u > 2008) {
				uint8_t *z = NULL;
				int64_t zn = t_compress(plain, (size_t)u, &z);

				cr_assert(zn == (int64_t)n && memcmp(z, msg, n) == 0,
					  "vector %s: t_compress gave %lld bytes, q gave %zu",
					  meaning, (long long)zn, n);
				free(z);
				n_recompressed++;
			}
			free(plain);
			free(re);
			n_compressed++;
			t_free(o);
			continue;
		}
		cr_assert_eq(t_encode_msg(o, type, &re, &re_len), 0, "vector %s: encode", meaning);
		cr_assert(re_len == n && memcmp(re, msg, n) == 0,
			  "vector %s: re-encoding differs (%zu vs %zu bytes)", meaning, re_len, n);
		free(re);
		t_free(o);
	}
	fclose(f);
	cr_assert(n_msgs > 100, "only %d message vectors found", n_msgs);
	cr_assert(n_compressed >= 2, "only %d compressed vectors found", n_compressed);
	cr_assert(n_recompressed >= 2, "only %d vectors recompressed", n_recompressed);
}

Test(harness, decompresses_the_worked_example)
{
	/* Protocol page 6.5: the 53-byte compressed response to "500#0j". */
	const char *hex = "0102010035000000ae0f0000c00700f401000000ff00ffff00ff00ff00ff00ff00"
			  "ff00ff00ff00ff3f00ff00ff00ff00ff00ff008f";
	uint8_t msg[64];
	char clean[160];
	size_t n, k = 0;
	struct t_obj *o;
	int type, err;

	for (const char *p = hex; *p; p++)
		if (*p != ' ')
			clean[k++] = *p;
	clean[k] = 0;
	n = unhex(clean, msg, sizeof(msg));
	cr_assert_eq(n, 53);
	o = t_decode_msg(msg, n, &type, &err);
	cr_assert(o, "decode failed (%d)", err);
	cr_assert_eq(type, T_RESPONSE);
	cr_assert(o->type == T_LONG && o->n == 500, "got %s", t_show(o));
	for (uint64_t m = 0; m < 500; m++)
		cr_assert_eq(((int64_t *)o->data)[m], 0);
	t_free(o);
}

Test(harness, rejects_truncated_and_oversized_counts)
{
	/* A char vector claiming 255 items in a 14-byte message. */
	const uint8_t bad[] = { 1, 1, 0, 0, 14, 0, 0, 0, 10, 0, 0xff, 0, 0, 0 };
	int type, err = 0;

	cr_assert_null(t_decode_msg(bad, sizeof(bad), &type, &err));
	cr_assert_eq(err, -EBADMSG);
}

Test(harness, free_ports_are_distinct_and_bindable)
{
	int a = T_OK(t_free_port()), b = T_OK(t_free_port());

	cr_assert_neq(a, b);
	cr_assert(a >= 20000 && a < 32000 && b >= 20000 && b < 32000, "ports %d %d", a, b);
}
