/*
 * listen.c — client-facing listeners: TCP (SO_REUSEPORT, so more workers can bind the
 * same port), Unix sockets by path, and q's abstract Unix name "\0/tmp/kx.PORT" that
 * `hopen `:unix://PORT` and PyKX's unix=True connect to (one socket per name, shared by
 * every worker through lshare.c). Accepts with one multishot accept per listener and
 * worker; a new client starts in the handshake state.
 */
#include "gateway/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <liburing.h>

#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/lshare.h"
#include "gateway/runtime.h"
#include "gateway/stats.h"
#include "gateway/tls.h"
#include "gateway/worker.h"
#include "pool/pool.h"

int gw_sockaddr_unix(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	size_t plen = strlen(a->path);

	memset(ss, 0, sizeof(*ss));
	un->sun_family = AF_UNIX;
	if (a->kind == GW_ADDR_UNIX_ABSTRACT) {
		/* abstract namespace: leading NUL, length without a trailing NUL (as q) */
		if (plen + 1 > sizeof(un->sun_path))
			return -ENAMETOOLONG;
		un->sun_path[0] = '\0';
		memcpy(un->sun_path + 1, a->path, plen);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + plen);
	} else {
		if (plen >= sizeof(un->sun_path))
			return -ENAMETOOLONG;
		memcpy(un->sun_path, a->path, plen + 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
	}
	return 0;
}

int gw_sockaddr_from(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->kind == GW_ADDR_TCP) {
		struct addrinfo hints, *res = NULL;
		char port[16];

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%d", a->port);
		const char *host = a->host && *a->host ? a->host : "127.0.0.1";
		int rc = getaddrinfo(host, port, &hints, &res);
		if (rc != 0 || !res)
			return -EADDRNOTAVAIL;
		memcpy(ss, res->ai_addr, res->ai_addrlen);
		*len = res->ai_addrlen;
		freeaddrinfo(res);
		return 0;
	}
	return gw_sockaddr_unix(a, ss, len);
}

int gw_listen_socket(const struct gw_addr *a, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	int ret = gw_sockaddr_from(a, &ss, &len);

	if (ret < 0) {
		gw_err("listen=%s msg=\"cannot resolve\"", a->log_text);
		return ret;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (a->kind == GW_ADDR_TCP) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	} else if (a->kind == GW_ADDR_UNIX_PATH) {
		unlink(a->path);	/* a stale socket file from an earlier run */
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
		ret = -errno;
		gw_err("listen=%s msg=\"cannot listen\" err=\"%s\"", a->log_text, strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}

int gw_listen_bind(struct gw_worker *w, const struct gw_addr *a, int backlog,
		   struct gw_conn **out)
{
	struct gw_lshare *share = NULL;
	/* TCP: a socket of this worker's own in the SO_REUSEPORT group; Unix: a dup of the
	 * one socket every worker shares (lshare.h) */
	int fd = a->kind == GW_ADDR_TCP ? gw_listen_socket(a, backlog) :
					  gw_lshare_acquire(a, backlog, &share);

	if (fd < 0)
		return fd;
	struct gw_conn *c = gw_conn_alloc(w, GW_CONN_LISTENER, fd);
	if (!c) {
		close(fd);
		if (share)
			gw_lshare_release(share);
		return -ENOMEM;
	}
	c->lis.share = share;
	c->is_fd_shared = share != NULL;
	gw_log_value(c->peer, sizeof(c->peer), a->text);	/* for log lines */
	gw_listen_arm(w, c);
	*out = c;
	return 0;
}

void gw_listen_release(struct gw_conn *c)
{
	if (c->kind == GW_CONN_LISTENER && c->lis.share) {
		gw_lshare_release(c->lis.share);
		c->lis.share = NULL;
	}
}

/* its close is being carried out: it accepts no more, so it no longer holds the name */
static void listen_on_close(struct gw_worker *w, struct gw_conn *c)
{
	(void)w;
	gw_listen_release(c);
}

int gw_listen_open(struct gw_worker *w, struct gw_listener_rt *l)
{
	int ret = gw_listen_bind(w, &l->cfg->addr, 4096, &l->conn);

	if (ret < 0)
		return ret;
	gw_info("worker=%d listener=%s listen=%s pool=%s msg=\"listening\"", w->id,
		l->cfg->log_name, l->cfg->addr.log_text, l->pool ? l->pool->cfg->log_name : "-");
	return 0;
}

void gw_listen_arm(struct gw_worker *w, struct gw_conn *c)
{
	struct io_uring_sqe *sqe = gw_sqe(w);

	io_uring_prep_multishot_accept(sqe, c->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_ACCEPT, c));
	c->inflight++;
	c->lis.is_armed = true;
	c->lis.is_cancel_sent = false;
}

/* Stop accepting on c for now: connections wait in the kernel's backlog meanwhile. */
static void listen_pause(struct gw_worker *w, struct gw_conn *c)
{
	if (!c->lis.is_armed || c->lis.is_cancel_sent || c->is_closing)
		return;
	struct io_uring_sqe *sqe = gw_sqe(w);
	io_uring_prep_cancel64(sqe, gw_ud(GW_OP_ACCEPT, c), 0);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_CANCEL, c));
	c->inflight++;
	c->lis.is_cancel_sent = true;
}

static bool is_full(const struct gw_worker *w)
{
	return w->n_clients >= w->cfg->limits.max_clients;
}

void gw_listen_tick(struct gw_worker *w)
{
	if (w->is_stopping)
		return;
	for (size_t i = 0; i <= w->n_listeners; i++) {
		struct gw_conn *c = i < w->n_listeners ? w->listeners[i]->conn : w->stats_conn;
		if (!c || c->is_closing || c->lis.is_armed)
			continue;
		if (c->lis.retry_at_ms > w->now_ms) {
			gw_worker_due(w, c->lis.retry_at_ms);
			continue;
		}
		if (c != w->stats_conn && is_full(w))
			continue;	/* re-armed once a client leaves */
		gw_listen_arm(w, c);
	}
}

/* An accept error, logged once a second at most with how many were not. */
static void accept_error(struct gw_worker *w, struct gw_conn *lc, struct gw_listener_rt *l,
			 int err)
{
	if (w->now_ms < lc->lis.next_log_ms) {
		lc->lis.suppressed++;
		return;
	}
	lc->lis.next_log_ms = w->now_ms + 1000;
	gw_warn("listener=%s msg=\"accept failed\" err=\"%s\" retry_ms=%u suppressed=%llu",
		l ? l->cfg->log_name : "stats", strerror(-err), lc->lis.backoff_ms,
		(unsigned long long)lc->lis.suppressed);
	lc->lis.suppressed = 0;
}

static struct gw_listener_rt *listener_of(struct gw_worker *w, struct gw_conn *lc)
{
	for (size_t i = 0; i < w->n_listeners; i++)
		if (w->listeners[i]->conn == lc)
			return w->listeners[i];
	return NULL;
}

/* q compresses only for peers that are not this host: loopback and Unix sockets are local */
static bool is_remote(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		return (ntohl(in->sin_addr.s_addr) >> 24) != 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return false;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			return in6->sin6_addr.s6_addr[12] != 127;
		return true;
	}
	return false;
}

static void describe_peer(struct gw_conn *c, enum gw_compress mode)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	if (getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(c->peer, sizeof(c->peer), "?");
		return;
	}
	c->cl.is_compress = mode == GW_COMPRESS_ALWAYS ||
			    (mode == GW_COMPRESS_REMOTE && is_remote(&ss));
	/* the address failed logins are counted against (auth.c) */
	c->cl.peer_family = (uint8_t)ss.ss_family;
	if (ss.ss_family == AF_INET)
		memcpy(c->cl.peer_ip, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	else if (ss.ss_family == AF_INET6)
		memcpy(c->cl.peer_ip, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(c->peer, sizeof(c->peer), "unix");
	}
}

void gw_listen_on_accept(struct gw_worker *w, struct gw_conn *lc, struct io_uring_cqe *cqe)
{
	struct gw_listener_rt *l = listener_of(w, lc);
	int fd = cqe->res;

	if (lc->is_closing) {
		/* a listener being closed (stop, reload): its accept ends, quietly */
		if (fd >= 0)
			close(fd);
		return;
	}

	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (!more)
		lc->lis.is_armed = false;	/* the tick arms a new one, when it should */
	if (fd == -ECANCELED)
		return;	/* paused at max_clients */
	if (fd < 0) {
		/* out of descriptors or memory: every retry would fail at once, so wait first
		 * (it used to re-arm at once: a core spent and a log line per attempt) */
		bool is_resource = fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
				   fd == -ENOMEM;
		uint32_t b = lc->lis.backoff_ms;
		lc->lis.backoff_ms = is_resource ? (b ? (b * 2 > 1000 ? 1000 : b * 2) : 50) : 10;
		lc->lis.retry_at_ms = w->now_ms + lc->lis.backoff_ms;
		accept_error(w, lc, l, fd);
		if (more)
			listen_pause(w, lc);
		return;
	}
	lc->lis.backoff_ms = 0;
	lc->lis.retry_at_ms = 0;
	if (!more && !w->is_stopping && (lc == w->stats_conn || !is_full(w)))
		gw_listen_arm(w, lc);	/* the multishot ended (kernel decision): go on */
	if (lc == w->stats_conn) {
		gw_stats_accept(w, fd);
		return;
	}
	if (!l || w->is_stopping || is_full(w)) {
		/* only what the kernel had queued before the pause took effect */
		if (w->now_ms >= lc->lis.next_log_ms) {
			lc->lis.next_log_ms = w->now_ms + 1000;
			gw_warn("listener=%s msg=\"refusing client\" reason=\"%s\"",
				l ? l->cfg->log_name : "?",
				w->is_stopping ? "stopping" : "max_clients reached");
		}
		close(fd);
		return;
	}
	struct gw_conn *c = gw_conn_alloc(w, GW_CONN_CLIENT, fd);
	if (!c) {
		gw_warn("listener=%s msg=\"refusing client\" reason=\"no free slot\"",
			l->cfg->log_name);
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	describe_peer(c, l->cfg->compress);
	c->cl.state = GW_CL_HANDSHAKE;
	c->cl.listener = l;
	c->cl.handshake_deadline_ms = w->now_ms + w->cfg->limits.handshake_timeout_ms;
	c->cl.last_active_ms = w->now_ms;
	pool_list_add_tail(&w->handshaking, &c->cl.hs_link);
	w->n_clients++;
	l->clients++;
	l->accepted++;
	if (is_full(w)) {
		/* at max_clients: stop accepting rather than accept and close; new clients wait
		 * in the backlog until one leaves (gw_listen_tick) */
		for (size_t i = 0; i < w->n_listeners; i++)
			if (w->listeners[i]->conn)
				listen_pause(w, w->listeners[i]->conn);
	}
	gw_debug("worker=%d conn=%llu peer=%s listener=%s msg=\"accepted\"", w->id,
		 (unsigned long long)c->id, c->peer, l->cfg->log_name);
	if (l->ssl_ctx && gw_tls_accept(c, l->ssl_ctx) < 0) {
		gw_warn("listener=%s msg=\"refusing client\" reason=\"no memory for TLS\"",
			l->cfg->log_name);
		gw_conn_close(w, c, "no memory for TLS");
		return;
	}
	gw_conn_update_recv(w, c);
}

const struct gw_conn_ops gw_listen_conn_ops = {
	.on_close = listen_on_close,
	.on_accept = gw_listen_on_accept,
};
