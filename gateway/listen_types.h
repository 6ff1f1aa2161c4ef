/*
 * listen_types — struct gw_lis, a listening socket's accept state (the lis member of struct
 * gw_conn's union). Types only. Owner: listen.c; the worker thread only.
 */
#ifndef GW_GATEWAY_LISTEN_TYPES_H
#define GW_GATEWAY_LISTEN_TYPES_H

#include <stdbool.h>
#include <stdint.h>

struct gw_lshare;

struct gw_lis {
	struct gw_lshare *share;	/* Unix name: the shared socket it holds (lshare.h) */
	bool is_armed;			/* a multishot accept is in flight */
	bool is_cancel_sent;		/* ... and being cancelled (paused) */
	uint32_t backoff_ms;		/* after EMFILE and the like: doubles up to 1 s */
	uint64_t retry_at_ms;		/* not re-armed before this */
	uint64_t next_log_ms;		/* accept errors are logged once a second at most */
	uint64_t suppressed;		/* errors not logged since the last line */
};

#endif /* GW_GATEWAY_LISTEN_TYPES_H */
