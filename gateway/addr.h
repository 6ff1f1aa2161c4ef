/*
 * addr — the address strings of "listen", "address" and "stats.listen" parsed into a
 * struct gw_addr: host:port, [ipv6]:port, unix:PORT (q's abstract socket) and unix:/path.
 *
 * Ownership: gw_addr_parse fills a caller-owned struct whose strings it allocates;
 * gw_addr_free releases them (and is safe on a zeroed or already freed struct).
 * Thread: no shared state; any thread. Names are not resolved here (no DNS).
 */
#ifndef GW_GATEWAY_ADDR_H
#define GW_GATEWAY_ADDR_H

#include <stdbool.h>
#include <stddef.h>

enum gw_addr_kind {
	GW_ADDR_TCP = 0,	/* host:port */
	GW_ADDR_UNIX_ABSTRACT,	/* unix:PORT -> abstract "\0/tmp/kx.PORT" (q's name) */
	GW_ADDR_UNIX_PATH,	/* unix:/path -> filesystem socket */
};

struct gw_addr {
	enum gw_addr_kind kind;
	char *host;		/* TCP: host or IP ("0.0.0.0", "127.0.0.1", "localhost") */
	int port;		/* TCP port, or the PORT of unix:PORT */
	char *path;		/* UNIX_PATH: the path; UNIX_ABSTRACT: "/tmp/kx.PORT" (no NUL prefix) */
	char *text;		/* the original string */
	char *log_text;		/* text as a logfmt value (logval.h): what log lines print */
};

/*
 * Parse an address string as the "listen"/"address" fields accept it. 0, -EINVAL (bad
 * text; *out is left zeroed) or -ENOMEM. On failure *why, when why is not NULL, points to a
 * static sentence saying what is wrong ("port must be a number 1..65535").
 */
int gw_addr_parse_why(const char *text, struct gw_addr *out, const char **why);

/* gw_addr_parse_why without the reason. */
int gw_addr_parse(const char *text, struct gw_addr *out);

/* Free the strings of a and zero it; a may be NULL. */
void gw_addr_free(struct gw_addr *a);

/* true when a and b would bind the same socket (same kind and port/host, or same path). */
bool gw_addr_same(const struct gw_addr *a, const struct gw_addr *b);

/* a as text that is equal for two addresses exactly when gw_addr_same holds (however they
 * were spelt: "unix:5001" and "unix://5001"); -ENOSPC when it does not fit in n. */
int gw_addr_key(const struct gw_addr *a, char *out, size_t n);

#endif /* GW_GATEWAY_ADDR_H */
