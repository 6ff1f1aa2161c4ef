/*
 * handshake.c — the client hello ("credentials<capability>\0") and its builder.
 * The parser works on whatever prefix of the stream has arrived, never reads past
 * max_len, and tells a q hello from HTTP or a TLS ClientHello arriving on the same port.
 */
#include "codec/qipc.h"

#include <errno.h>
#include <string.h>

/* First bytes that mean the peer speaks HTTP (or a WebSocket upgrade), not q. */
static const char *const http_methods[] = {
	"GET ", "POST ", "PUT ", "HEAD ", "OPTIONS ", "DELETE ", "PATCH ", "CONNECT ", "TRACE ",
};

static bool looks_foreign(const uint8_t *p, size_t n)
{
	if (n >= 1 && p[0] == 0x16)	/* TLS handshake record */
		return true;
	for (size_t i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++) {
		size_t ml = strlen(http_methods[i]);

		if (n >= ml && memcmp(p, http_methods[i], ml) == 0)
			return true;
	}
	return false;
}

int qipc_hello_parse(const uint8_t *p, size_t n, size_t max_len, struct qipc_hello *out)
{
	size_t lim, t, consumed, cred_len;
	const uint8_t *nul, *colon;
	int capability;
	bool legacy;

	if (max_len == 0)
		max_len = 1024;
	if (max_len > INT32_MAX)
		max_len = INT32_MAX;
	lim = n < max_len ? n : max_len;
	if (looks_foreign(p, lim))
		return -EPROTO;
	nul = lim ? memchr(p, 0, lim) : NULL;
	if (!nul)
		return n >= max_len ? -EBADMSG : 0;
	t = (size_t)(nul - p);
	if (t + 1 < lim && p[t + 1] == 0) {
		/*
		 * "creds 00 00": capability 0 followed by the terminator. The first NUL is the
		 * capability byte. (Clients wait for our reply, so nothing else can follow a
		 * hello; a capability-0 hello split between its two NULs is read as legacy.)
		 */
		capability = 0;
		legacy = false;
		cred_len = t;
		consumed = t + 2;
	} else if (t == 0 || p[t - 1] >= 0x20) {
		/* legacy hello: no capability byte, the byte before 00 is a credential char */
		capability = 0;
		legacy = true;
		cred_len = t;
		consumed = t + 1;
	} else {
		if (p[t - 1] > QIPC_MAX_CAPABILITY)
			return -EBADMSG;
		capability = p[t - 1];
		legacy = false;
		cred_len = t - 1;
		consumed = t + 1;
	}
	colon = cred_len ? memchr(p, ':', cred_len) : NULL;
	out->cred = p;
	out->cred_len = cred_len;
	out->user_len = colon ? (size_t)(colon - p) : cred_len;
	out->capability = capability;
	out->is_legacy = legacy;
	return (int)consumed;
}

int qipc_hello_build(uint8_t *out, size_t cap, const char *user, const char *pass,
		     int capability)
{
	size_t ul = user ? strlen(user) : 0;
	size_t pl = pass ? strlen(pass) : 0;
	size_t total = ul + (pass ? 1 + pl : 0) + 2;

	if (capability < 0 || capability > QIPC_MAX_CAPABILITY)
		return -EINVAL;
	if (total > INT32_MAX)
		return -EINVAL;
	if (total > cap)
		return -ENOSPC;
	if (ul)
		memcpy(out, user, ul);
	if (pass) {
		out[ul] = ':';
		if (pl)
			memcpy(out + ul + 1, pass, pl);
	}
	out[total - 2] = (uint8_t)capability;
	out[total - 1] = 0;
	return (int)total;
}
