/*
 * logval — any text as one logfmt value, for log lines (log.h) and the audit file: config
 * names, addresses, user names, anything a peer sent. Pure (libc only), so the config
 * library computes each name's escaped form once at load (config.h log_name).
 */
#ifndef GW_GATEWAY_LOGVAL_H
#define GW_GATEWAY_LOGVAL_H

#include <stddef.h>

/*
 * src as one logfmt value in dst (n bytes, always terminated): as is when it is a plain
 * token (letters, digits, and ._-:/@+), otherwise in double quotes with backslash, quote and
 * every control or non-ASCII byte escaped (\n, \t, \xNN), so no value can end a line or
 * forge a key. Truncated (still well-formed) when it does not fit.
 */
void gw_log_value(char *dst, size_t n, const char *src);

/* The same, whole, in memory the caller frees; NULL when out of memory. */
char *gw_log_value_dup(const char *src);

/* A hex digit's value (either case), or -1: for the \xNN escapes above and for
 * percent-decoding. */
int gw_hex_digit(char ch);

#endif /* GW_GATEWAY_LOGVAL_H */
