/*
 * logval.c — logfmt values (logval.h). A value that is not a plain token is quoted, and
 * every byte that could end the line, close the quote or read as another key is escaped.
 */
#include "gateway/logval.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

char *gw_log_value_dup(const char *src)
{
	size_t n = strlen(src) * 4 + 3;	/* every byte as \xNN, and the quotes */
	char *dst = malloc(n);

	if (dst)
		gw_log_value(dst, n, src);
	return dst;
}

int gw_hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}
