/*
 * status_page — the status page served as GET / on the stats port: gateway/status.html,
 * embedded at build time by gateway/gen_status_page.py (the generated status_page.c). Static
 * and read-only: any thread may read it; nothing frees it.
 */
#ifndef GW_GATEWAY_STATUS_PAGE_H
#define GW_GATEWAY_STATUS_PAGE_H

#include <stddef.h>

/* the page's bytes (UTF-8 HTML, NUL-terminated) and their count without the NUL */
extern const char gw_status_page[];
extern const size_t gw_status_page_len;
/* its Content-Security-Policy header value: only the page's own script and style (by hash) */
extern const char gw_status_page_csp[];

#endif /* GW_GATEWAY_STATUS_PAGE_H */
