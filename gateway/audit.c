/*
 * audit.c — the optional audit log (log.audit_file): one line per request with time,
 * user, pool, backend, function or query prefix, bytes each way, microseconds, outcome.
 * Each worker buffers its lines and appends them with one write(2) per tick (O_APPEND),
 * so the request path never waits on the disk. Admin actions (actions.c) get a line of their
 * own: type=admin, who asked (user, peer, via q or http), the action, its argument and what
 * came of it.
 */
#include "gateway/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/log.h"
#include "gateway/req.h"
#include "gateway/runtime.h"
#include "gateway/worker.h"

#define AUDIT_FLUSH_BYTES (256 * 1024)

int gw_audit_open(struct gw_worker *w)
{
	if (!w->cfg->audit_file)
		return 0;
	w->audit_fd = open(w->cfg->audit_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (w->audit_fd < 0) {
		int err = errno;
		char fv[1024];
		gw_log_value(fv, sizeof(fv), w->cfg->audit_file);
		gw_err("audit_file=%s msg=\"cannot open audit log\" err=\"%s\"", fv, strerror(err));
		return -err;
	}
	w->audit_cap = AUDIT_FLUSH_BYTES + 16384;	/* room for the longest line */
	w->audit_buf = malloc(w->audit_cap);
	return w->audit_buf ? 0 : -ENOMEM;
}

void gw_audit_flush(struct gw_worker *w)
{
	size_t off = 0;

	while (w->audit_fd >= 0 && off < w->audit_len) {
		ssize_t n = write(w->audit_fd, w->audit_buf + off, w->audit_len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			gw_warn("msg=\"audit log write failed: lines lost\" err=\"%s\"",
				strerror(errno));
			break;
		}
		off += (size_t)n;
	}
	w->audit_len = 0;
}

void gw_audit_close(struct gw_worker *w)
{
	gw_audit_flush(w);
	if (w->audit_fd >= 0)
		close(w->audit_fd);
	w->audit_fd = -1;
	free(w->audit_buf);
	w->audit_buf = NULL;
}

/* The text of a peeked name/query as a log-safe token: printable, no quotes or spaces. */
static void safe_copy(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	for (; src[i] && i + 1 < cap; i++) {
		char ch = src[i];
		dst[i] = (ch > ' ' && ch < 127 && ch != '"' && ch != '\\') ? ch : '_';
	}
	dst[i] = '\0';
}

void gw_audit_req(struct gw_worker *w, const struct gw_req *r, const char *outcome)
{
	if (w->audit_fd < 0 || !w->audit_buf || r->is_health)
		return;
	char what[sizeof(r->what)];
	struct timespec ts;
	struct tm tm;

	safe_copy(what, sizeof(what), r->what);
	char user[sizeof(r->user) * 4 + 3];
	gw_log_value(user, sizeof(user), r->user[0] ? r->user : "-");
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(w->audit_buf + w->audit_len, w->audit_cap - w->audit_len,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ user=%s pool=%s backend=%s "
			 "type=%s what=\"%s\" bytes_in=%llu bytes_out=%llu us=%llu outcome=\"%s\"\n",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000, user,
			 r->pool ? r->pool->cfg->log_name : "-",
			 r->backend_name ? r->backend_name : "-", r->is_sync ? "sync" : "async", what,
			 (unsigned long long)r->req_bytes, (unsigned long long)r->resp_bytes,
			 (unsigned long long)(gw_now_us() - r->t_start_us), outcome);
	if (n > 0 && (size_t)n < w->audit_cap - w->audit_len)
		w->audit_len += (size_t)n;
	if (w->audit_len >= AUDIT_FLUSH_BYTES)
		gw_audit_flush(w);
}

void gw_audit_action(struct gw_worker *w, const char *user, const char *peer, const char *via,
		     const char *action, const char *arg, const char *outcome)
{
	if (w->audit_fd < 0 || !w->audit_buf)
		return;
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(w->audit_buf + w->audit_len, w->audit_cap - w->audit_len,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ user=%s peer=%s type=admin via=%s "
			 "action=%s arg=%s outcome=%s\n",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000, user, peer, via, action, arg, outcome);
	if (n > 0 && (size_t)n < w->audit_cap - w->audit_len)
		w->audit_len += (size_t)n;
	if (w->audit_len >= AUDIT_FLUSH_BYTES)
		gw_audit_flush(w);
}
