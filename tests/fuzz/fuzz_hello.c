/*
 * fuzz_hello — libFuzzer target for the client handshake parser and the routing peek: any
 * bytes, any length; neither may read out of bounds or report more than it was given.
 */
#include <stdint.h>
#include <stdlib.h>

#include "codec/qipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qipc_hello h;
	struct qipc_peek pk;

	int n = qipc_hello_parse(data, size, 1024, &h);
	if (n > 0 && ((size_t)n > size || h.cred_len > size || h.user_len > h.cred_len))
		abort();
	if (qipc_peek(data, size, true, 64, &pk) == 1 && pk.kind != QIPC_PEEK_OTHER &&
	    (pk.text < data || pk.text + pk.text_len > data + size))
		abort();
	return 0;
}
