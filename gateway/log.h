/*
 * log — one line per event to stderr, from a logfmt payload the caller formats
 * ("msg=\"...\" key=value ...", values from peers through gw_log_value). log.format picks the
 * line: "logfmt" (ts=TIME level=info PAYLOAD) or "json" (one object: ts, level and every
 * key of the payload, always valid JSON whatever the values hold). When stderr is the
 * systemd journal (JOURNAL_STREAM names it) each line starts with its syslog priority
 * (<3> error, <4> warn, <6> info, <7> debug/trace) so journald keeps the level, and logfmt
 * lines drop their own timestamp (journald stamps every line).
 * A payload over 4 KiB is cut where it stays well-formed (no value, escape or UTF-8 sequence
 * split) and the line ends truncated=true ("truncated":true in JSON): put msg= first where
 * the values before it can be long.
 * The level is checked before the arguments are evaluated. Level and format are set by the
 * main thread, at start and on a reload; any thread may log.
 */
#ifndef GW_GATEWAY_LOG_H
#define GW_GATEWAY_LOG_H

#include <stddef.h>

#include "gateway/config.h"
#include "gateway/logval.h"	/* gw_log_value, gw_hex_digit */

extern enum gw_log_level gw_log_threshold;	/* written once before threads start */

void gw_log_set_level(enum gw_log_level lvl);
/* GW_LOG_FMT_LOGFMT (the default) or GW_LOG_FMT_JSON; main thread. */
void gw_log_set_format(enum gw_log_format fmt);
void gw_log_emit(enum gw_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define gw_log(lvl, ...)                                   \
	do {                                               \
		if ((lvl) <= gw_log_threshold)             \
			gw_log_emit((lvl), __VA_ARGS__);   \
	} while (0)

#define gw_err(...) gw_log(GW_LOG_ERROR, __VA_ARGS__)
#define gw_warn(...) gw_log(GW_LOG_WARN, __VA_ARGS__)
#define gw_info(...) gw_log(GW_LOG_INFO, __VA_ARGS__)
#define gw_debug(...) gw_log(GW_LOG_DEBUG, __VA_ARGS__)

void gw_assert_fail(const char *what, const char *file, int line) __attribute__((noreturn));

/* An invariant of the code, always checked: a broken one stops the process (style.md). */
#define GW_ASSERT(x)                                                  \
	do {                                                          \
		if (!(x))                                             \
			gw_assert_fail(#x, __FILE__, __LINE__);       \
	} while (0)

#endif /* GW_GATEWAY_LOG_H */
