/*
 * fuzz_decode — libFuzzer target for the codec: the input is a whole message. It is framed,
 * decompressed if flagged, decoded, and what decodes is encoded again and must decode to an
 * equal value. Build: meson setup build-fuzz -Dfuzz=true (clang), run ./build-fuzz/tests/fuzz/
 * fuzz_decode -max_total_time=60.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/qipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qipc_framer fr;
	struct qipc_frame_step st;
	uint8_t type = 0;
	int err = 0;

	/* the framer must never fail to make progress, whatever the bytes */
	qipc_framer_init(&fr, 6, 1u << 20);
	for (size_t off = 0; off < size;) {
		int n = qipc_framer_feed(&fr, data + off, size - off, &st);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	struct qipc_obj *o = qipc_decode_msg(data, size, 1u << 20, &type, &err);
	if (!o)
		return 0;
	uint8_t *msg = NULL;
	size_t len = 0;
	if (qipc_encode_msg(o, (enum qipc_msg_type)type, false, &msg, &len) == 0) {
		struct qipc_obj *back = qipc_decode_msg(msg, len, 1u << 20, &type, &err);
		if (!back || !qipc_obj_equal(o, back))
			abort();	/* what decodes must survive a round trip */
		qipc_obj_free(back);
		free(msg);
	}
	char text[256];
	qipc_format(o, text, sizeof(text));
	qipc_obj_free(o);
	return 0;
}
