/*
 * test_log — gateway/log.c's long lines: a payload over 4 KiB is cut where it stays
 * well-formed (never inside an escape, a quoted value or a UTF-8 sequence), keeps what came
 * before the cut (msg first), and says truncated=true; in JSON the line stays one valid
 * object with "truncated":true. The cut point is moved over every offset of an escape and
 * of a multibyte character. stderr is redirected to a file for each line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "gateway/log.h"

/* gw_log_emit(lvl, "%s", payload) captured: the line written, malloc'd. */
static char *emit(const char *payload)
{
	char path[] = "/tmp/test_log_XXXXXX";
	int fd = mkstemp(path);
	int saved = dup(STDERR_FILENO);

	cr_assert(fd >= 0 && saved >= 0);
	unlink(path);
	cr_assert(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
	gw_log_emit(GW_LOG_INFO, "%s", payload);
	cr_assert(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
	close(saved);
	off_t n = lseek(fd, 0, SEEK_END);
	char *buf = malloc((size_t)n + 1);
	cr_assert(buf != NULL && pread(fd, buf, (size_t)n, 0) == n);
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* Strict logfmt: key=value pairs, values plain or quoted with \" \\ \n \t \xNN; and every
 * byte >= 0x80 part of a whole UTF-8 sequence. Returns whether it holds, *n_pairs. */
static bool is_logfmt(const char *p, int *n_pairs)
{
	*n_pairs = 0;
	while (*p) {
		const char *k = p;
		while (*p && *p != '=' && *p != ' ' && *p != '"')
			p++;
		if (p == k || *p++ != '=')
			return false;
		if (*p == '"') {
			for (p++; *p != '"'; p++) {
				unsigned char c = (unsigned char)*p;
				if (!c || c < 0x20)
					return false;
				if (c >= 0x80) {
					int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
					if (!len)
						return false;
					for (int i = 1; i < len; i++)
						if (((unsigned char)p[i] & 0xc0) != 0x80)
							return false;
					p += len - 1;
				} else if (c == '\\') {
					p++;
					if (*p == 'x') {
						if (!strchr("0123456789abcdef", p[1]) || !p[1] ||
						    !strchr("0123456789abcdef", p[2]) || !p[2])
							return false;
						p += 2;
					} else if (!strchr("\"\\nt", *p) || !*p) {
						return false;
					}
				}
			}
			p++;
		} else {
			while (*p && *p != ' ') {
				if (*p == '"' || *p == '=')
					return false;
				p++;
			}
		}
		(*n_pairs)++;
		if (*p == ' ')
			p++;
	}
	return true;
}

/* The payload: msg first, then `pad` bytes of padding, then a long quoted value made of
 * unit (an escape or a multibyte character) repeated, then a trailing key. */
static char *payload(size_t pad, const char *unit)
{
	size_t cap = 16384, o = 0;
	char *p = malloc(cap);

	cr_assert(p != NULL);
	o += (size_t)snprintf(p, cap, "msg=\"long line\" pad=");
	for (size_t i = 0; i < pad; i++)
		p[o++] = 'a';
	o += (size_t)snprintf(p + o, cap - o, " v=\"");
	while (o < 6000)
		o += (size_t)snprintf(p + o, cap - o, "%s", unit);
	snprintf(p + o, cap - o, "\" after=1");
	return p;
}

static const char *const units[] = { "\\x01", "\\\"", "\\\\", "\\n", "\xc3\xa9",
				     "\xe2\x82\xac", "\xf0\x9f\x98\x80", "ab" };

Test(log, long_logfmt_line_is_cut_cleanly)
{
	gw_log_set_format(GW_LOG_FMT_LOGFMT);
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		for (size_t pad = 1; pad <= 8; pad++) {
			char *pl = payload(pad, units[u]);
			char *line = emit(pl);
			size_t n = strlen(line);
			int pairs;

			cr_assert(n > 4000 && line[n - 1] == '\n' && !strchr(line, '\n')[1],
				  "not one line: unit %zu pad %zu", u, pad);
			line[n - 1] = '\0';
			cr_assert(is_logfmt(line, &pairs), "unit %zu pad %zu: not logfmt: ...%s", u,
				  pad, line + n - 80);
			cr_assert(strstr(line, " level=info msg=\"long line\" pad=a"),
				  "the start is lost: %.120s", line);
			cr_assert(n > 20 && strcmp(line + n - 1 - 15, " truncated=true") == 0,
				  "no truncated=true at the end: ...%s", line + n - 80);
			cr_assert(!strstr(line, "after="), "the cut is not at the end");
			free(line);
			free(pl);
		}
	}
}

Test(log, long_json_line_stays_one_object)
{
	gw_log_set_format(GW_LOG_FMT_JSON);
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		for (size_t pad = 1; pad <= 8; pad++) {
			char *pl = payload(pad, units[u]);
			char *line = emit(pl);
			json_error_t e;
			json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &e);

			cr_assert(j && json_is_object(j), "unit %zu pad %zu: not JSON (%s): ...%s",
				  u, pad, e.text, line + strlen(line) - 80);
			cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "long line");
			cr_assert(json_is_true(json_object_get(j, "truncated")), "no truncated:true");
			cr_assert(json_is_string(json_object_get(j, "v")), "the cut value is lost");
			cr_assert_null(json_object_get(j, "after"));
			json_decref(j);
			free(line);
			free(pl);
		}
	}
	gw_log_set_format(GW_LOG_FMT_LOGFMT);
}

/* A line that fits is left as it is: no truncated mark. */
Test(log, short_line_is_whole)
{
	gw_log_set_format(GW_LOG_FMT_LOGFMT);
	char *pl = malloc(4096);
	cr_assert(pl != NULL);
	int o = snprintf(pl, 4096, "msg=\"m\" v=\"");
	memset(pl + o, 'x', 4000);
	snprintf(pl + o + 4000, 4096 - (size_t)o - 4000, "\" z=1");
	char *line = emit(pl);
	cr_assert(strstr(line, "\" z=1\n"), "cut although it fits");
	cr_assert_null(strstr(line, "truncated"));
	free(line);
	free(pl);
}
