/*
 * qipc — the kdb+/q IPC wire format: handshake, 8-byte header, stream framing,
 * routing peek, object (de)serialisation, compression, q-style printing.
 *
 * Contract: pure functions over caller-owned bytes. No I/O, no clocks, no logging,
 * no globals. Functions that allocate say so; everything they return is owned by
 * the caller and freed with the matching *_free. Decoders never read outside the
 * [p, p+n) range they are given, whatever the input.
 *
 * Return convention (tri-state, see docs/protocol.md):
 *   > 0  bytes consumed / message complete
 *   = 0  need more bytes
 *   < 0  -EBADMSG malformed, -EMSGSIZE over a configured limit, -EPROTO unsupported,
 *        -ENOMEM allocation failed, -ENOSPC output buffer too small
 */
#ifndef GW_CODEC_QIPC_H
#define GW_CODEC_QIPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QIPC_HDR_SIZE 8
#define QIPC_MAX_CAPABILITY 6
/* Largest message with capability 0..4 (header included). */
#define QIPC_MAX_MSG_CAP3 0x7fffffffULL
/* Largest message with capability 5/6: 40-bit length. */
#define QIPC_MAX_MSG_CAP6 ((1ULL << 40) - 1)

enum qipc_msg_type {
	QIPC_ASYNC = 0,
	QIPC_SYNC = 1,
	QIPC_RESPONSE = 2,
};

/* ---------------------------------------------------------------- handshake */

struct qipc_hello {
	const uint8_t *cred;	/* points into the caller's buffer; not NUL-terminated */
	size_t cred_len;	/* credentials length (without capability byte / terminator) */
	size_t user_len;	/* bytes before the first ':' (== cred_len if no ':') */
	int capability;		/* 0..6; 0 for the legacy form with no capability byte */
	bool is_legacy;		/* no capability byte was present */
};

/*
 * Parse a client hello from the first n bytes received on a connection.
 * Returns the bytes consumed (including the 00 terminator) when complete, 0 when the
 * terminator has not arrived yet and n < max_len, -EBADMSG when max_len bytes hold no
 * terminator or the capability byte is 7..0x1f (we accept 0..6, see docs/protocol.md),
 * -EPROTO when the first bytes look like HTTP ("GET " ...) or a TLS record (0x16).
 * max_len 0 means 1024. "creds 00 00" is capability 0; a byte >= 0x20 before the first 00
 * means the legacy form (no capability byte, capability 0).
 * The password is cred[user_len+1 .. cred_len) when user_len < cred_len.
 */
int qipc_hello_parse(const uint8_t *p, size_t n, size_t max_len, struct qipc_hello *out);

/*
 * Build a client hello "user:pass<cap>\0" (":pass" omitted when pass is NULL,
 * "user" may be "" ). Returns bytes written, or -ENOSPC, or -EINVAL for a NUL-free
 * violation / capability > 6.
 */
int qipc_hello_build(uint8_t *out, size_t cap, const char *user, const char *pass,
		     int capability);

/* The server's one-byte reply: min(client, server). */
static inline uint8_t qipc_hello_reply(int client_cap, int server_cap)
{
	return (uint8_t)(client_cap < server_cap ? client_cap : server_cap);
}

/* ------------------------------------------------------------------- header */

struct qipc_header {
	bool is_little_endian;	/* byte 0 == 1 */
	uint8_t msg_type;	/* enum qipc_msg_type */
	uint8_t compressed;	/* 0 plain, 1 compressed, 2 compressed with 8-byte U */
	uint64_t length;	/* total message length N, header included (40-bit aware) */
};

/*
 * Parse and validate the 8-byte header at p (n bytes available).
 * capability: negotiated capability of the connection it arrived on; byte 3 (length
 * extension) is honoured only when >= 5, and lengths above 2^31-1 need >= 5.
 * max_bytes: local limit on N (0 = protocol maximum).
 * Returns 8 when parsed, 0 when n < 8, -EBADMSG for bad byte order / type /
 * compression flag / N < 10 (N < 12 compressed, N < 16 for flag 2), -EMSGSIZE when
 * N > max_bytes or above the capability's maximum.
 */
int qipc_header_parse(const uint8_t *p, size_t n, int capability, uint64_t max_bytes,
		      struct qipc_header *out);

/*
 * The total length N of a message whose 8-byte header qipc_header_parse accepted (or
 * qgate built): either byte order, byte 3 as bits 32..39 (it is 0 below capability 5).
 */
static inline uint64_t qipc_header_length(const uint8_t *hdr)
{
	uint64_t n = hdr[0] == 1 ? (uint64_t)hdr[4] | (uint64_t)hdr[5] << 8 |
				   (uint64_t)hdr[6] << 16 | (uint64_t)hdr[7] << 24 :
				   (uint64_t)hdr[7] | (uint64_t)hdr[6] << 8 |
				   (uint64_t)hdr[5] << 16 | (uint64_t)hdr[4] << 24;
	return n | (uint64_t)hdr[3] << 32;
}

/* Write a little-endian header for a message of total length `length`. */
void qipc_header_build(uint8_t out[QIPC_HDR_SIZE], enum qipc_msg_type type, bool compressed,
		       uint64_t length);

/* Rewrite only the message-type byte of a header in place. */
static inline void qipc_header_set_type(uint8_t *hdr, enum qipc_msg_type type)
{
	hdr[1] = (uint8_t)type;
}

/* ------------------------------------------------------------------ framing */

/*
 * Incremental framer for a byte stream: feed bytes in any chunking (even one at a
 * time) and learn where messages start and end, without holding their bodies.
 * The header may straddle chunks; the framer copies those 8 bytes into hdr_bytes.
 */
struct qipc_framer {
	int capability;
	uint64_t max_bytes;
	uint8_t hdr_bytes[QIPC_HDR_SIZE];
	size_t hdr_have;		/* header bytes collected so far */
	struct qipc_header hdr;		/* valid once hdr_have == 8 */
	uint64_t body_left;		/* body bytes still to come for the current message */
};

enum qipc_frame_kind {
	QIPC_FRAME_NONE = 0,	/* partial header absorbed, no event */
	QIPC_FRAME_HEADER = 1,	/* a header completed: step.hdr, step.hdr_bytes valid */
	QIPC_FRAME_BODY = 2,	/* step.data/step.len are body bytes of the current message */
};

struct qipc_frame_step {
	enum qipc_frame_kind kind;
	struct qipc_header hdr;		/* the current message's header */
	const uint8_t *hdr_bytes;	/* the 8 raw header bytes (owned by the framer) */
	const uint8_t *data;		/* BODY: points into the caller's input */
	size_t len;			/* BODY: byte count */
	bool is_msg_end;		/* this step completes the message */
};

void qipc_framer_init(struct qipc_framer *f, int capability, uint64_t max_bytes);

/*
 * Consume from p[0..n) up to the next event and fill *step. Returns bytes consumed:
 *  > 0 with step->kind == QIPC_FRAME_HEADER or QIPC_FRAME_BODY for an event, or with
 *      step->kind == 0 when the bytes only extended a partial header (kept internally);
 *  0 only when n == 0;
 *  < 0 the error from qipc_header_parse; the framer is then unusable (close the peer);
 *      further calls return the same error.
 * Call repeatedly until the input is used up.
 */
int qipc_framer_feed(struct qipc_framer *f, const uint8_t *p, size_t n,
		     struct qipc_frame_step *step);

/* True when the framer sits exactly between two messages. */
static inline bool qipc_framer_idle(const struct qipc_framer *f)
{
	return f->hdr_have == 0 && f->body_left == 0;
}

/*
 * Whole-message assembler on top of the framer, for tools and tests (mockq, qbench):
 * feed bytes, get complete messages (header included) in a growable buffer.
 * The buffer is owned by the assembler; the message pointer is valid until the next call.
 */
struct qipc_assembler {
	struct qipc_framer fr;
	uint8_t *buf;
	size_t len, cap;	/* bytes of the current (partial) message held */
	uint64_t want;		/* total length of the current message once known */
};

void qipc_assembler_init(struct qipc_assembler *a, int capability, uint64_t max_bytes);
void qipc_assembler_free(struct qipc_assembler *a);
/*
 * Feed bytes. Returns bytes consumed (>0) with *msg and *msg_len set when a message
 * completed (msg == NULL otherwise), 0 when n == 0, negative on error.
 */
int qipc_assembler_feed(struct qipc_assembler *a, const uint8_t *p, size_t n,
			const uint8_t **msg, size_t *msg_len);

/* ---------------------------------------------------------------- peeking */

enum qipc_peek_kind {
	QIPC_PEEK_OTHER = 0,	/* anything else: atoms, dicts, lists headed by non-names */
	QIPC_PEEK_QUERY = 1,	/* char vector: text = its first bytes */
	QIPC_PEEK_FUNC_SYM = 2,	/* general list headed by a symbol atom: text = the name */
	QIPC_PEEK_FUNC_STR = 3,	/* general list headed by a char vector: text = the string */
	QIPC_PEEK_LAMBDA = 4,	/* general list headed by a lambda: text = start of its source */
};

struct qipc_peek {
	enum qipc_peek_kind kind;
	const uint8_t *text;	/* points into the caller's bytes */
	size_t text_len;	/* bytes available (capped at the limit given to qipc_peek) */
	bool is_truncated;	/* the name/query is longer than text_len */
};

/*
 * Look at the start of an uncompressed message payload (bytes after the header; n may be
 * less than the whole payload). max_text caps text_len. Returns 1 when decided, 0 when more
 * payload bytes are needed to decide (only while n < the payload length), -EBADMSG when the
 * bytes seen cannot start a valid object. Never decodes the whole body.
 * little_endian: byte 0 of the header.
 */
int qipc_peek(const uint8_t *payload, size_t n, bool little_endian, size_t max_text,
	      struct qipc_peek *out);

/* -------------------------------------------------------------- compression */

/*
 * Uncompressed total length U of a compressed message (header at cmsg), or -EBADMSG.
 * n must be >= 16 for flag 2, >= 12 for flag 1.
 */
int64_t qipc_compressed_orig_len(const uint8_t *cmsg, size_t n);

/*
 * Decompress a whole compressed message (cmsg[0..n), header included; n >= C, bytes past C
 * are ignored) into out, which has room for out_cap bytes. Writes the rebuilt original
 * message (plain header + payload).
 * Returns U (> 0), -ENOSPC if out_cap < U, -EBADMSG for a corrupt stream (bad
 * back-reference, stream ends early, bytes left over).
 */
int64_t qipc_decompress(const uint8_t *cmsg, size_t n, uint8_t *out, size_t out_cap);

/*
 * Partial decompression for peeking: restore at most out_cap bytes of the original message
 * (header included) from however many compressed bytes are available (n may be a prefix).
 * Returns the number of original bytes restored (>= 8 once the header is), or -EBADMSG.
 */
int64_t qipc_decompress_prefix(const uint8_t *cmsg, size_t n, uint8_t *out, size_t out_cap);

/*
 * Compress a whole plain message msg[0..n) exactly as q / KX's C library does (protocol page
 * 6.4): returns the compressed length C (< n/2) written to out, or 0 when q would send the
 * message uncompressed (n <= 2008, or the stream would not fit in n/2). out must hold at least
 * n/2 bytes. Messages of 2^32 bytes or more use flag 2 and the 8-byte U.
 */
int64_t qipc_compress(const uint8_t *msg, size_t n, uint8_t *out, size_t out_cap);

/* ------------------------------------------------------------------ objects */

/* q type numbers (atoms are the negatives of the vector types). */
enum qipc_type {
	QT_LIST = 0,
	QT_BOOL = 1, QT_GUID = 2, QT_BYTE = 4, QT_SHORT = 5, QT_INT = 6, QT_LONG = 7,
	QT_REAL = 8, QT_FLOAT = 9, QT_CHAR = 10, QT_SYMBOL = 11, QT_TIMESTAMP = 12,
	QT_MONTH = 13, QT_DATE = 14, QT_DATETIME = 15, QT_TIMESPAN = 16, QT_MINUTE = 17,
	QT_SECOND = 18, QT_TIME = 19,
	QT_TABLE = 98, QT_DICT = 99, QT_LAMBDA = 100, QT_UNARY = 101, QT_BINARY = 102,
	QT_ITERATOR = 103, QT_PROJECTION = 104, QT_COMPOSITION = 105,
	QT_EACH = 106, QT_OVER = 107, QT_SCAN = 108, QT_EACH_PRIOR = 109,
	QT_EACH_RIGHT = 110, QT_EACH_LEFT = 111,
	QT_SORTED_DICT = 127,
	QT_ERROR = -128,
};

/* Nulls and infinities. */
#define QIPC_NULL_SHORT ((int16_t)INT16_MIN)
#define QIPC_NULL_INT ((int32_t)INT32_MIN)
#define QIPC_NULL_LONG ((int64_t)INT64_MIN)
#define QIPC_INF_SHORT ((int16_t)INT16_MAX)
#define QIPC_INF_INT ((int32_t)INT32_MAX)
#define QIPC_INF_LONG ((int64_t)INT64_MAX)

/*
 * One q value. Storage by type:
 *  atoms (-19..-1): value in the union a (guid: a.g; symbol: s, NUL-terminated, owned)
 *  error (-128): s = message text (owned)
 *  simple vectors 1..10,12..19: n items of natural width, little-endian host order, in
 *      data (owned; guid items 16 bytes each; char vector: data holds n bytes, no NUL)
 *  symbol vector 11: syms[n], each an owned NUL-terminated string
 *  general list 0: items[n] (owned)
 *  dict 99 / sorted dict 127: n == 2, items[0] keys, items[1] values
 *  table 98: n == 1, items[0] is the column dictionary (symbol vector ; general list)
 *  lambda 100: s = namespace ("" for root), n == 1, items[0] = char vector source
 *  unary 101, binary 102, iterator 103: a.x = the code byte
 *  projection 104, composition 105: items[n]
 *  adverbs 106..111: n == 1, items[0]
 * attr is the attribute byte (vectors, lists, tables; for a sorted dict it is 1).
 */
struct qipc_obj {
	int8_t type;
	uint8_t attr;
	uint64_t n;
	union {
		uint8_t b;	/* bool, byte, char, and function code bytes (x) */
		uint8_t x;
		int16_t h;
		int32_t i;	/* int, month, date, minute, second, time */
		int64_t j;	/* long, timestamp, timespan */
		float e;
		double f;	/* float, datetime */
		uint8_t g[16];
	} a;
	char *s;
	void *data;
	char **syms;
	struct qipc_obj **items;
};

/* Bytes per item of a simple vector type (1..19 except 11), 0 otherwise. */
size_t qipc_type_width(int type);

/* Constructors: return NULL only on allocation failure. Ownership goes to the caller. */
struct qipc_obj *qipc_obj_atom(int8_t type);		/* zeroed atom of type (-19..-1) */
struct qipc_obj *qipc_obj_bool(bool v);
struct qipc_obj *qipc_obj_int(int32_t v);
struct qipc_obj *qipc_obj_long(int64_t v);
struct qipc_obj *qipc_obj_float(double v);
struct qipc_obj *qipc_obj_char(char c);
struct qipc_obj *qipc_obj_sym(const char *s);
struct qipc_obj *qipc_obj_error(const char *msg);
struct qipc_obj *qipc_obj_str(const char *s, size_t len);	/* char vector */
struct qipc_obj *qipc_obj_vec(int8_t type, uint64_t n);	/* zeroed simple / symbol vector */
struct qipc_obj *qipc_obj_list(uint64_t n);		/* general list, items NULL-filled */
struct qipc_obj *qipc_obj_dict(struct qipc_obj *keys, struct qipc_obj *vals);	/* takes both */
struct qipc_obj *qipc_obj_table(struct qipc_obj *colnames, struct qipc_obj *cols); /* takes both */
struct qipc_obj *qipc_obj_identity(void);		/* :: (type 101, code 0) */
/* Set item i of a symbol vector (copies s). */
int qipc_obj_set_sym(struct qipc_obj *v, uint64_t i, const char *s);
void qipc_obj_free(struct qipc_obj *o);
bool qipc_obj_equal(const struct qipc_obj *a, const struct qipc_obj *b); /* NaN == NaN */

struct qipc_decode_opts {
	bool is_little_endian;	/* byte 0 of the message header */
	int capability;		/* 6 permits 8-byte vector counts (attr bit 0x80) */
	uint64_t max_items;	/* reject counts above this (0: bounded by input size only) */
	int max_depth;		/* nesting limit (0: 64) */
};

/*
 * Decode one object from payload[0..n). The object must use exactly n bytes.
 * Returns the object (caller frees) or NULL with *err = -EBADMSG (malformed, including
 * byte values that are no q type: 3, -3, -77..-127, 113..126), -EPROTO (q types that never
 * travel over IPC: enumerations 20..76 and their atoms, 77..97, 112), -EMSGSIZE (a count
 * above max_items) or -ENOMEM. opts NULL: little-endian, capability 3, defaults.
 * Counts are checked against the remaining input before any allocation.
 */
struct qipc_obj *qipc_decode(const uint8_t *payload, size_t n,
			     const struct qipc_decode_opts *opts, int *err);

/*
 * Decode a whole message (header included, compressed or not); n must equal the header's
 * length. On success *type (may be NULL) gets the message type. Same error convention as
 * qipc_decode, plus -EMSGSIZE when N, or the uncompressed length U, exceeds max_bytes
 * (0 = protocol maximum). Big-endian messages and 8-byte counts are accepted.
 */
struct qipc_obj *qipc_decode_msg(const uint8_t *msg, size_t n, uint64_t max_bytes,
				 uint8_t *type, int *err);

/* Serialised size of o (payload only, no header), or -EPROTO if o cannot be encoded. */
int64_t qipc_encoded_size(const struct qipc_obj *o);

/* Encode o into out (payload only). Returns bytes written, -ENOSPC, or -EPROTO. */
int64_t qipc_encode(const struct qipc_obj *o, uint8_t *out, size_t cap);

/*
 * Encode o as a whole little-endian message of the given type into a new buffer.
 * *out is malloc'd (caller frees) and *out_len set. Returns 0 or a negative error.
 * compress: apply q's compression rule (qipc_compress) when it pays off.
 */
int qipc_encode_msg(const struct qipc_obj *o, enum qipc_msg_type type, bool compress,
		    uint8_t **out, size_t *out_len);

/*
 * Build an error message "80 <text> 00" of the given type (normally QIPC_RESPONSE) into out.
 * Returns bytes written (10 + strlen(text)), or -ENOSPC. text must not contain NUL.
 */
int qipc_error_build(uint8_t *out, size_t cap, enum qipc_msg_type type, const char *text);

/*
 * q-style text of a value, as the q console prints small values on one line
 * (e.g. `2`, `0 1 2 3`, `` `a`b!1 2 ``, `"abc"`, `{x+y}`, `+[1]`, `'type`).
 * Writes at most cap bytes including a NUL; returns the length it needed (snprintf rule).
 */
int qipc_format(const struct qipc_obj *o, char *out, size_t cap);

#endif /* GW_CODEC_QIPC_H */
