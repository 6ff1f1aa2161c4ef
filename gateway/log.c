/* log.c — timestamped, levelled log lines on stderr. */
#include "gateway/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum gw_log_level gw_log_threshold = GW_LOG_INFO;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG", "TRACE" };

void gw_log_set_level(enum gw_log_level lvl)
{
	gw_log_threshold = lvl;
}

void gw_log_emit(enum gw_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl]);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* one fputs per line keeps lines whole when several threads log */
	fprintf(stderr, "%s\n", line);
}

void gw_assert_fail(const char *what, const char *file, int line)
{
	gw_log_emit(GW_LOG_ERROR, "msg=\"assertion failed\" what=\"%s\" at=%s:%d", what, file,
		    line);
	abort();
}

static bool is_plain(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      strchr("._-:/@+", ch)))
			return false;
	}
	return true;
}

void gw_log_value(char *dst, size_t n, const char *src)
{
	size_t k = 0;

	if (n < 3) {
		if (n)
			dst[0] = '\0';
		return;
	}
	if (is_plain(src)) {
		snprintf(dst, n, "%s", src);
		return;
	}
	dst[k++] = '"';
	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		char esc[5];
		int m;
		if (*p == '"' || *p == '\\')
			m = snprintf(esc, sizeof(esc), "\\%c", *p);
		else if (*p == '\n')
			m = snprintf(esc, sizeof(esc), "\\n");
		else if (*p == '\t')
			m = snprintf(esc, sizeof(esc), "\\t");
		else if (*p < 0x20 || *p >= 0x7f)
			m = snprintf(esc, sizeof(esc), "\\x%02x", *p);
		else
			m = snprintf(esc, sizeof(esc), "%c", *p);
		if (k + (size_t)m + 2 > n)
			break;	/* room is kept for the closing quote */
		memcpy(dst + k, esc, (size_t)m);
		k += (size_t)m;
	}
	dst[k++] = '"';
	dst[k] = '\0';
}
