/*
 * log.c — levelled log lines on stderr: logfmt or JSON, with syslog priority prefixes when
 * stderr is the journal. One write per line keeps lines whole when several threads log.
 * A JSON line is built from the logfmt payload by a small parser (quoted values with the
 * escapes gw_log_value writes) and a string escaper that emits only valid JSON: control
 * bytes as \u00XX, bytes that are not valid UTF-8 as the text \xNN. Unquoted integers
 * become JSON numbers; every other value is a string.
 */
#include "gateway/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum gw_log_level gw_log_threshold = GW_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };
/* sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG */
static const char *const level_prio[] = { "<3>", "<4>", "<6>", "<7>", "<7>" };

static int log_format = GW_LOG_FMT_LOGFMT;	/* __atomic: a reload may change it */
static bool is_journal;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;

/* a payload longer than PAYLOAD_MAX is cut at a boundary that keeps it well-formed and the
 * line says truncated=true; the line has room for the payload's JSON form */
#define PAYLOAD_MAX 4096
#define LINE_MAX_BYTES 12288

void gw_log_set_level(enum gw_log_level lvl)
{
	gw_log_threshold = lvl;
}

void gw_log_set_format(enum gw_log_format fmt)
{
	__atomic_store_n(&log_format, (int)fmt, __ATOMIC_RELAXED);
}

/* systemd connects stderr to the journal and says so in JOURNAL_STREAM="DEV:INODE"; the
 * variable alone is not enough (a child whose stderr was redirected inherits it). */
static void detect_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		is_journal = (unsigned long long)st.st_dev == dev &&
			     (unsigned long long)st.st_ino == ino;
}

/* An output line being built: appends stop at the capacity minus a reserve, so the line can
 * always be closed properly; is_full records that something was left out. */
struct out {
	char *p;
	size_t n, cap;
	bool is_full;
};

#define OUT_RESERVE 48	/* the closing of a JSON line: "\"...\",\"truncated\":true}\n" */

static bool out_room(struct out *o, size_t k)
{
	if (o->is_full || o->n + k + OUT_RESERVE > o->cap) {
		o->is_full = true;
		return false;
	}
	return true;
}

static void out_mem(struct out *o, const char *s, size_t k)
{
	if (out_room(o, k)) {
		memcpy(o->p + o->n, s, k);
		o->n += k;
	}
}

static void out_str(struct out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

/* Closing text ignores the reserve (it is what the reserve is for). */
static void out_close(struct out *o, const char *s)
{
	size_t k = strlen(s);

	if (o->n + k < o->cap) {
		memcpy(o->p + o->n, s, k);
		o->n += k;
	}
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when it is not one:
 * no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t k;
	unsigned lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		k = 2;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return k;
}

/* s (k bytes, any content) as a JSON string, quotes included; cut short but still closed
 * when the line is full. */
static void out_json_str(struct out *o, const char *s, size_t k)
{
	const unsigned char *u = (const unsigned char *)s;
	char esc[8];

	if (!out_room(o, 1))
		return;
	o->p[o->n++] = '"';
	for (size_t i = 0; i < k && !o->is_full;) {
		unsigned char c = u[i];
		size_t m;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			out_mem(o, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			out_mem(o, esc, 6);
			i++;
		} else if (c < 0x80) {
			out_mem(o, (const char *)&u[i], 1);
			i++;
		} else if ((m = utf8_len(u + i, k - i)) > 0) {
			out_mem(o, (const char *)&u[i], m);
			i += m;
		} else {
			/* not UTF-8: the byte as text, as gw_log_value writes it in logfmt */
			snprintf(esc, sizeof(esc), "\\\\x%02x", c);
			out_mem(o, esc, 5);
			i++;
		}
	}
	out_close(o, "\"");
}

/* A quoted logfmt value starting after its opening quote: decoded into dst (at least as
 * long as the rest of the payload); returns where parsing stops (after the closing quote,
 * or at the end of an unterminated value). */
static const char *parse_quoted(const char *p, char *dst, size_t *len)
{
	size_t k = 0;

	while (*p && *p != '"') {
		if (*p != '\\' || !p[1]) {
			dst[k++] = *p++;
			continue;
		}
		char e = p[1];
		int h1, h2;
		if (e == 'n') {
			dst[k++] = '\n';
		} else if (e == 't') {
			dst[k++] = '\t';
		} else if (e == 'r') {
			dst[k++] = '\r';
		} else if (e == 'x' && (h1 = gw_hex_digit(p[2])) >= 0 && (h2 = gw_hex_digit(p[3])) >= 0) {
			dst[k++] = (char)(h1 * 16 + h2);
			p += 4;
			continue;
		} else if (e == '"' || e == '\\') {
			dst[k++] = e;
		} else {
			dst[k++] = '\\';	/* not an escape we write: kept as it is */
			dst[k++] = e;
		}
		p += 2;
	}
	*len = k;
	return *p == '"' ? p + 1 : p;
}

/*
 * A payload vsnprintf cut at n - 1 bytes, cut again at most limit bytes in, where it stays
 * well-formed logfmt: never inside an escape or a UTF-8 sequence; a quoted value cut short is
 * closed; an unquoted word cut short goes whole. The caller then says truncated=true.
 */
static void payload_cut(char *p, size_t limit)
{
	size_t i = 0, safe = 0, quote = 0;
	bool is_quoted = false;

	while (i < limit && p[i]) {
		unsigned char c = (unsigned char)p[i];
		size_t k = 1;
		if (is_quoted && c == '\\')
			k = p[i + 1] == 'x' ? 4 : 2;
		else if (c >= 0xf0)
			k = 4;
		else if (c >= 0xe0)
			k = 3;
		else if (c >= 0xc0)
			k = 2;
		if (i + k > limit)
			break;
		if (c == '"') {
			is_quoted = !is_quoted;
			quote = i;
		} else if (c == ' ' && !is_quoted) {
			safe = i;
		}
		i += k;
	}
	if (is_quoted && i > quote + 1) {
		p[i] = '"';	/* limit leaves room for it */
		p[i + 1] = '\0';
	} else {
		p[is_quoted ? quote : safe] = '\0';
	}
}

/* An unquoted decimal integer that every JSON reader takes exactly: written as a number. */
static bool is_json_int(const char *s, size_t n)
{
	size_t i = s[0] == '-' ? 1 : 0;

	if (n == i || n - i > 15 || (s[i] == '0' && n - i > 1))
		return false;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The payload as JSON members (",\"key\":\"value\"" each). Words that are not key=value
 * (free text) are gathered into one "text" member, so nothing said is lost. */
static void payload_to_json(struct out *o, const char *payload)
{
	char val[PAYLOAD_MAX], text[PAYLOAD_MAX];
	size_t n_text = 0;
	const char *p = payload;

	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		const char *key = p;
		while (*p && *p != ' ' && *p != '=')
			p++;
		size_t klen = (size_t)(p - key);
		if (*p != '=' || klen == 0) {
			/* a bare word (or "=value" with no key): free text */
			while (*p && *p != ' ')
				p++;
			size_t wl = (size_t)(p - key);
			if (n_text + wl + 1 < sizeof(text)) {
				if (n_text)
					text[n_text++] = ' ';
				memcpy(text + n_text, key, wl);
				n_text += wl;
			}
			continue;
		}
		p++;	/* '=' */
		size_t n0 = o->n, vlen;
		bool is_number = false;
		if (*p == '"') {
			p = parse_quoted(p + 1, val, &vlen);
		} else {
			const char *v = p;
			while (*p && *p != ' ')
				p++;
			vlen = (size_t)(p - v);
			memcpy(val, v, vlen);
			is_number = is_json_int(val, vlen);
		}
		out_str(o, ",");
		/* our own members come first; a payload key of the same name gets a '_' */
		if ((klen == 2 && memcmp(key, "ts", 2) == 0) ||
		    (klen == 5 && memcmp(key, "level", 5) == 0) ||
		    (klen == 4 && memcmp(key, "text", 4) == 0)) {
			char k2[8] = "_";
			memcpy(k2 + 1, key, klen);
			out_json_str(o, k2, klen + 1);
		} else {
			out_json_str(o, key, klen);
		}
		out_str(o, ":");
		size_t n_val = o->n;
		if (is_number)
			out_mem(o, val, vlen);
		else
			out_json_str(o, val, vlen);
		/* the line filled up before the value began: the member goes whole (a value
		 * cut short is still a closed string) */
		if (o->is_full && o->n == n_val)
			o->n = n0;
	}
	if (n_text) {
		size_t n0 = o->n;
		out_str(o, ",\"text\":");
		size_t n_val = o->n;
		out_json_str(o, text, n_text);
		if (o->is_full && o->n == n_val)
			o->n = n0;
	}
}

void gw_log_emit(enum gw_log_level lvl, const char *fmt, ...)
{
	char payload[PAYLOAD_MAX], line[LINE_MAX_BYTES], ts[96];
	struct out o = { .p = line, .n = 0, .cap = sizeof(line), .is_full = false };
	struct timespec now;
	struct tm tm;
	va_list ap;

	pthread_once(&journal_once, detect_journal);
	va_start(ap, fmt);
	int len = vsnprintf(payload, sizeof(payload), fmt, ap);
	va_end(ap);
	bool is_cut = len >= (int)sizeof(payload);
	if (is_cut)
		payload_cut(payload, sizeof(payload) - 2);	/* room for a closing quote */
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 now.tv_nsec / 1000000);
	if (is_journal)
		out_str(&o, level_prio[lvl]);
	if (__atomic_load_n(&log_format, __ATOMIC_RELAXED) == GW_LOG_FMT_JSON) {
		out_str(&o, "{\"ts\":\"");
		out_str(&o, ts);
		out_str(&o, "\",\"level\":\"");
		out_str(&o, level_names[lvl]);
		out_str(&o, "\"");
		payload_to_json(&o, payload);
		if (o.is_full || is_cut)
			out_close(&o, ",\"truncated\":true");
		out_close(&o, "}");
	} else {
		if (!is_journal) {
			out_str(&o, "ts=");
			out_str(&o, ts);
			out_str(&o, " ");
		}
		out_str(&o, "level=");
		out_str(&o, level_names[lvl]);
		out_str(&o, " ");
		out_str(&o, payload);
		if (is_cut)
			out_str(&o, " truncated=true");
	}
	out_close(&o, "\n");
	/* one write per line: lines from several threads never interleave */
	if (write(STDERR_FILENO, line, o.n) < 0) {
		/* nowhere left to say it */
	}
}

void gw_assert_fail(const char *what, const char *file, int line)
{
	gw_log_emit(GW_LOG_ERROR, "msg=\"assertion failed\" what=\"%s\" at=%s:%d", what, file,
		    line);
	abort();
}
