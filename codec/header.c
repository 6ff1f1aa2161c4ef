/*
 * header.c — the 8-byte q IPC message header (parse, validate, build) and the
 * error-response builder. Invariant: a header accepted here describes a message whose
 * length fits the connection's capability and the caller's limit, so callers may size
 * buffers from hdr.length without further checks.
 */
#include "codec/qipc.h"

#include <errno.h>
#include <string.h>

#include "codec/qipc_internal.h"

int qipc_header_parse(const uint8_t *p, size_t n, int capability, uint64_t max_bytes,
		      struct qipc_header *out)
{
	bool le;
	uint64_t len, cap_max;

	if (n < QIPC_HDR_SIZE)
		return 0;
	if (p[0] > 1 || p[1] > QIPC_RESPONSE || p[2] > 2)
		return -EBADMSG;
	le = p[0] == 1;
	/* 40-bit length: byte 3 carries bits 32..39 (protocol page 3.2), from capability 5 */
	len = qipc_header_length(p);
	if (capability >= 5) {
		cap_max = QIPC_MAX_MSG_CAP6;
	} else {
		/* byte 3 must be 0 and flag 2 (original of 2^32 bytes or more) is impossible */
		if (p[3] != 0 || p[2] == 2)
			return -EBADMSG;
		cap_max = QIPC_MAX_MSG_CAP3;
	}
	if (len < 10 || (p[2] == 1 && len < 12) || (p[2] == 2 && len < 16))
		return -EBADMSG;
	if (len > cap_max || (max_bytes && len > max_bytes))
		return -EMSGSIZE;
	out->is_little_endian = le;
	out->msg_type = p[1];
	out->compressed = p[2];
	out->length = len;
	return QIPC_HDR_SIZE;
}

void qipc_header_build(uint8_t out[QIPC_HDR_SIZE], enum qipc_msg_type type, bool compressed,
		       uint64_t length)
{
	out[0] = 1;
	out[1] = (uint8_t)type;
	out[2] = compressed ? 1 : 0;
	out[3] = (uint8_t)(length >> 32);
	qipc_st32(out + 4, (uint32_t)length, true);
}

int qipc_error_build(uint8_t *out, size_t cap, enum qipc_msg_type type, const char *text)
{
	size_t tl = strlen(text);
	size_t total = QIPC_HDR_SIZE + 2 + tl;

	if (total > cap || total > 0x7fffffff)
		return -ENOSPC;
	qipc_header_build(out, type, false, total);
	out[8] = 0x80;
	memcpy(out + 9, text, tl);
	out[9 + tl] = 0;
	return (int)total;
}
