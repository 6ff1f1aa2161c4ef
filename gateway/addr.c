/*
 * addr.c — address strings parsed into struct gw_addr. Only the text is checked: no name
 * is resolved and nothing is bound here, so --check and the unit tests need no network.
 */
#include "gateway/addr.h"

#include <sys/un.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/logval.h"

static bool parse_port(const char *s, size_t n, int *port)
{
	int v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port = v;
	return true;
}

static bool host_ok(const char *h, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)h[i];

		if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_')
			return false;
	}
	return true;
}

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static int addr_parse(const char *text, struct gw_addr *out, const char **why)
{
	const char *host, *colon;
	size_t host_len;
	int port;

	memset(out, 0, sizeof(*out));
	*why = "expected host:port, unix:PORT or unix:/path";
	if (!text || !*text)
		return -EINVAL;

	if (!strncmp(text, "unix:", 5)) {
		const char *rest = text + 5;
		char buf[32];

		/* "unix://PORT" is how q spells it in hopen; accept it as unix:PORT */
		if (!strncmp(rest, "//", 2) && rest[2] && strspn(rest + 2, "0123456789") ==
		    strlen(rest + 2))
			rest += 2;
		if (rest[0] == '/') {
			if (strlen(rest) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
				*why = "unix socket path too long (at most 107 bytes)";
				return -EINVAL;
			}
			out->kind = GW_ADDR_UNIX_PATH;
			out->path = strdup(rest);
			out->text = strdup(text);
			if (!out->path || !out->text)
				goto oom;
			return 0;
		}
		if (!parse_port(rest, strlen(rest), &port)) {
			*why = "expected unix:PORT (port 1..65535) or unix:/path";
			return -EINVAL;
		}
		snprintf(buf, sizeof(buf), "/tmp/kx.%d", port);
		out->kind = GW_ADDR_UNIX_ABSTRACT;
		out->port = port;
		out->path = strdup(buf);
		out->text = strdup(text);
		if (!out->path || !out->text)
			goto oom;
		return 0;
	}

	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':' || close == text + 1) {
			*why = "expected [IPv6]:port";
			return -EINVAL;
		}
		host = text + 1;
		host_len = (size_t)(close - host);
		for (size_t i = 0; i < host_len; i++) {
			if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.') {
				*why = "bad IPv6 address";
				return -EINVAL;
			}
		}
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon) {
			*why = "expected host:port, unix:PORT or unix:/path (no port given)";
			return -EINVAL;
		}
		host = text;
		host_len = (size_t)(colon - text);
		if (memchr(host, ':', host_len)) {
			*why = "IPv6 addresses need brackets: [::1]:PORT";
			return -EINVAL;
		}
		if (!host_ok(host, host_len)) {
			*why = host_len ? "bad host name"
					: "missing host (use 0.0.0.0:PORT for all)";
			return -EINVAL;
		}
	}
	if (!parse_port(colon + 1, strlen(colon + 1), &port)) {
		*why = "port must be a number 1..65535";
		return -EINVAL;
	}
	out->kind = GW_ADDR_TCP;
	out->port = port;
	out->host = dup_n(host, host_len);
	out->text = strdup(text);
	if (!out->host || !out->text)
		goto oom;
	return 0;
oom:
	gw_addr_free(out);
	*why = "out of memory";
	return -ENOMEM;
}

int gw_addr_parse_why(const char *text, struct gw_addr *out, const char **why)
{
	const char *unused;
	int ret = addr_parse(text, out, why ? why : &unused);

	if (ret == 0 && !(out->log_text = gw_log_value_dup(text))) {
		gw_addr_free(out);
		if (why)
			*why = "out of memory";
		return -ENOMEM;
	}
	return ret;
}

int gw_addr_parse(const char *text, struct gw_addr *out)
{
	return gw_addr_parse_why(text, out, NULL);
}

void gw_addr_free(struct gw_addr *a)
{
	if (!a)
		return;
	free(a->host);
	free(a->path);
	free(a->text);
	free(a->log_text);
	memset(a, 0, sizeof(*a));
}

bool gw_addr_same(const struct gw_addr *a, const struct gw_addr *b)
{
	if (!a->text || !b->text || a->kind != b->kind)
		return false;
	if (a->kind == GW_ADDR_TCP)
		return a->port == b->port && !strcmp(a->host, b->host);
	return !strcmp(a->path, b->path);
}

int gw_addr_key(const struct gw_addr *a, char *out, size_t n)
{
	int len;

	if (a->kind == GW_ADDR_TCP)
		len = snprintf(out, n, "tcp %d %s", a->port, a->host ? a->host : "");
	else
		len = snprintf(out, n, "%s %s", a->kind == GW_ADDR_UNIX_PATH ? "path" : "abstract",
			       a->path ? a->path : "");
	return len < 0 || (size_t)len >= n ? -ENOSPC : 0;
}
