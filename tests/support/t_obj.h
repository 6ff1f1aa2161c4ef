/*
 * t_obj — a small, independent q object model for the integration tests: constructors,
 * serialisation, deserialisation (with decompression), equality and a q-like printer.
 *
 * Why not the codec: integration tests check the gateway and the emulator end to end. An
 * encoder written apart from codec/ means a bug shared by codec, gateway and mockq still shows
 * up here, and the harness works before the codec is finished.
 *
 * Ownership: every constructor returns a new object owned by the caller (NULL only when out of
 * memory); container constructors take ownership of the items they are given. t_free frees.
 */
#ifndef GW_TESTS_SUPPORT_T_OBJ_H
#define GW_TESTS_SUPPORT_T_OBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* q type numbers used here (atoms are negative). */
enum t_qtype {
	T_LIST = 0,
	T_BOOL = 1, T_GUID = 2, T_BYTE = 4, T_SHORT = 5, T_INT = 6, T_LONG = 7, T_REAL = 8,
	T_FLOAT = 9, T_CHAR = 10, T_SYM = 11, T_TIMESTAMP = 12, T_MONTH = 13, T_DATE = 14,
	T_DATETIME = 15, T_TIMESPAN = 16, T_MINUTE = 17, T_SECOND = 18, T_TIME = 19,
	T_TABLE = 98, T_DICT = 99, T_LAMBDA = 100, T_UNARY = 101, T_BINARY = 102,
	T_ITERATOR = 103, T_PROJECTION = 104, T_COMPOSITION = 105, T_ADVERB_FIRST = 106,
	T_ADVERB_LAST = 111, T_SORTED_DICT = 127,
	T_ERROR = -128,
};

enum t_msg_type {
	T_ASYNC = 0,
	T_SYNC = 1,
	T_RESPONSE = 2,
};

struct t_obj {
	int8_t type;
	uint8_t attr;
	uint64_t n;		/* item count of vectors / lists / function containers */
	union {
		uint8_t x;	/* bool, byte, char, primitive code */
		int16_t h;
		int32_t i;	/* int, month, date, minute, second, time */
		int64_t j;	/* long, timestamp, timespan */
		float e;
		double f;	/* float, datetime */
		uint8_t g[16];
	} a;
	char *s;		/* symbol atom, error text, lambda namespace */
	void *data;		/* simple vector items (natural width, host order) */
	char **syms;		/* symbol vector items */
	struct t_obj **items;	/* list items; dict: keys, values; table: the dict; functions */
};

/* Bytes per item of simple vector type t (1..19 but 11), 0 otherwise. */
size_t t_type_width(int t);

struct t_obj *t_atom(int8_t type);		/* zeroed atom */
struct t_obj *t_bool(bool v);
struct t_obj *t_byte(uint8_t v);
struct t_obj *t_int(int32_t v);
struct t_obj *t_long(int64_t v);
struct t_obj *t_float(double v);
struct t_obj *t_char(char c);
struct t_obj *t_sym(const char *s);
struct t_obj *t_err(const char *msg);
struct t_obj *t_str(const char *s);		/* char vector of strlen(s) */
struct t_obj *t_strn(const char *s, size_t n);
struct t_obj *t_vec(int8_t type, uint64_t n);	/* zeroed simple or symbol vector */
struct t_obj *t_longs(uint64_t n, const int64_t *v);
struct t_obj *t_list_new(uint64_t n);		/* general list, items NULL */
/* General list of n items given as struct t_obj * (ownership taken); NULL if any is NULL. */
struct t_obj *t_list(uint64_t n, ...);
struct t_obj *t_dict(struct t_obj *keys, struct t_obj *vals);
/* (`fn; args...): a general list headed by a symbol, nargs arguments (ownership taken). */
struct t_obj *t_call(const char *fn, int nargs, ...);
struct t_obj *t_copy(const struct t_obj *o);
void t_free(struct t_obj *o);

bool t_equal(const struct t_obj *a, const struct t_obj *b);
/* True when o is a char vector holding exactly s. */
bool t_is_str(const struct t_obj *o, const char *s);
/* True when o is an error whose text starts with prefix. */
bool t_is_err_prefix(const struct t_obj *o, const char *prefix);

/* Payload size of o, or -EPROTO for something this encoder does not write. */
int64_t t_encoded_size(const struct t_obj *o);
/* Whole little-endian message of the given type, malloc'd into *out. 0 or -errno. */
int t_encode_msg(const struct t_obj *o, int msg_type, uint8_t **out, size_t *out_len);

/*
 * Decode a whole message (header included; compressed accepted). *msg_type gets byte 1.
 * Returns the object or NULL with *err set (-EBADMSG malformed, -EPROTO unsupported type,
 * -ENOMEM).
 */
struct t_obj *t_decode_msg(const uint8_t *msg, size_t n, int *msg_type, int *err);

/*
 * Decompress a whole compressed message into a new buffer holding the plain message.
 * Returns the plain length, or -EBADMSG / -ENOMEM.
 */
int64_t t_decompress(const uint8_t *cmsg, size_t n, uint8_t **out);

/*
 * Compress a whole plain message m[0..u) as q does (protocol page 6.4). Returns the compressed
 * length with *out malloc'd, 0 when q would send it plain (u <= 2008 or no gain), -ENOMEM.
 */
int64_t t_compress(const uint8_t *m, size_t u, uint8_t **out);

/* q-like text of o for failure messages (snprintf rule: returns the length it needed). */
int t_fmt(const struct t_obj *o, char *out, size_t cap);
/* Same into a thread-local ring of buffers: valid for a few further calls in this thread. */
const char *t_show(const struct t_obj *o);

#endif /* GW_TESTS_SUPPORT_T_OBJ_H */
