/* resolve.c — backend host names looked up off the event loop with c-ares (see resolve.h). */
#include "gateway/resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ares.h>
#include <liburing.h>

#include "gateway/addr.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/listen.h"
#include "gateway/log.h"
#include "gateway/upstream.h"
#include "gateway/worker.h"

struct gw_resolver;

struct rs_job {
	struct rs_job *next;
	struct gw_resolver *r;		/* whose done list the answer goes to */
	uint32_t idx, gen;		/* the backend connection, as a slot and its generation */
	char *host;
	int port;
	int status;			/* ARES_SUCCESS or an ARES_E* code */
	struct sockaddr_storage ss;
	socklen_t len;
};

struct gw_resolver {
	ares_channel ch;
	/* the loop puts jobs on todo and wakes the thread (wake_fd); the thread puts answers
	 * on done and wakes the loop (done_fd, read by the ring) */
	pthread_mutex_t mu;
	struct rs_job *todo, *done;
	bool is_stopping;
	pthread_t thread;
	bool has_thread;
	int wake_fd, done_fd;
	struct gw_conn *ec;		/* done_fd's connection slot */
	uint64_t ev_buf;
};

/* ------------------------------------------------------------------ the channel */

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

static void lib_init(void)
{
	lib_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* A channel with cfg's resolver settings. ARES_SUCCESS or an ARES_E* code. */
static int channel_new(const struct gw_resolver_cfg *rc, ares_channel *out)
{
	struct ares_options o;
	int mask = 0;
	char csv[1024];
	size_t used = 0;

	pthread_once(&lib_once, lib_init);
	if (lib_rc != ARES_SUCCESS)
		return lib_rc;
	memset(&o, 0, sizeof(o));
	if (rc->timeout_ms) {
		o.timeout = (int)rc->timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (rc->tries) {
		o.tries = rc->tries;
		mask |= ARES_OPT_TRIES;
	}
	int ret = ares_init_options(out, &o, mask);
	if (ret != ARES_SUCCESS || !rc->n_servers)
		return ret;
	csv[0] = '\0';
	for (size_t i = 0; i < rc->n_servers; i++) {
		int k = snprintf(csv + used, sizeof(csv) - used, "%s%s", i ? "," : "",
				 rc->servers[i]);
		if (k < 0 || (size_t)k >= sizeof(csv) - used) {
			ares_destroy(*out);
			return ARES_EBADSTR;
		}
		used += (size_t)k;
	}
	ret = ares_set_servers_ports_csv(*out, csv);
	if (ret != ARES_SUCCESS)
		ares_destroy(*out);
	return ret;
}

/* The first IPv4 address of res, else its first address, with port. */
static bool pick_addr(const struct ares_addrinfo *res, int port, struct sockaddr_storage *ss,
		      socklen_t *len)
{
	const struct ares_addrinfo_node *best = NULL;

	for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n; n = n->ai_next) {
		if (n->ai_family != AF_INET && n->ai_family != AF_INET6)
			continue;
		if (!best || (best->ai_family != AF_INET && n->ai_family == AF_INET))
			best = n;
	}
	if (!best || best->ai_addrlen > sizeof(*ss))
		return false;
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, best->ai_addr, best->ai_addrlen);
	*len = best->ai_addrlen;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	return true;
}

static void start_lookup(ares_channel ch, struct rs_job *j, ares_addrinfo_callback cb)
{
	struct ares_addrinfo_hints hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(ch, j->host, NULL, &hints, cb, j);
}

/* One round: wait for the channel's sockets, wake_fd (-1: none) or its next timeout. */
static void channel_wait(ares_channel ch, int wake_fd)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct pollfd pfd[ARES_GETSOCK_MAXNUM + 1];
	struct timeval tv, *tvp;
	nfds_t n = 0;
	/* c-ares's READABLE/WRITABLE macros shift a signed 1 into bit 31: test the bits here */
	unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);

	if (wake_fd >= 0)
		pfd[n++] = (struct pollfd){ .fd = wake_fd, .events = POLLIN };
	for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
		short ev = (short)(((bits >> i) & 1u ? POLLIN : 0) |
				   ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u ? POLLOUT : 0));
		if (ev)
			pfd[n++] = (struct pollfd){ .fd = socks[i], .events = ev };
	}
	tvp = ares_timeout(ch, NULL, &tv);
	int tmo = tvp ? (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000) : -1;
	if (poll(pfd, n, tmo) < 0)
		return;
	for (nfds_t i = 0; i < n; i++) {
		if (pfd[i].fd == wake_fd) {
			uint64_t v;
			if ((pfd[i].revents & POLLIN) && read(wake_fd, &v, sizeof(v)) < 0) {
				/* EAGAIN: read by an earlier round */
			}
			continue;
		}
		short re = pfd[i].revents;
		if (re)
			ares_process_fd(ch, (re & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd :
					ARES_SOCKET_BAD, (re & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD);
	}
	ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);	/* timeouts */
}

/* ------------------------------------------------------------------------ thread */

/* c-ares's callback, on the resolver thread (or in ares_destroy at the stop) */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct rs_job *j = arg;
	struct gw_resolver *r = j->r;

	(void)timeouts;
	j->status = status;
	memset(&j->ss, 0, sizeof(j->ss));
	if (status == ARES_SUCCESS && !pick_addr(res, j->port, &j->ss, &j->len))
		j->status = ARES_ENODATA;
	if (res)
		ares_freeaddrinfo(res);
	pthread_mutex_lock(&r->mu);
	j->next = r->done;
	r->done = j;
	pthread_mutex_unlock(&r->mu);
	uint64_t one = 1;
	if (write(r->done_fd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow at this rate: nothing to do */
	}
}

static void *resolver_thread(void *arg)
{
	struct gw_resolver *r = arg;

	for (;;) {
		pthread_mutex_lock(&r->mu);
		bool stop = r->is_stopping;
		struct rs_job *todo = r->todo;
		r->todo = NULL;
		pthread_mutex_unlock(&r->mu);
		/* todo is newest first: start them oldest first */
		struct rs_job *fifo = NULL;
		while (todo) {
			struct rs_job *j = todo;
			todo = j->next;
			j->next = fifo;
			fifo = j;
		}
		while (fifo) {
			struct rs_job *j = fifo;
			fifo = j->next;
			if (stop) {
				j->status = ARES_ECANCELLED;
				pthread_mutex_lock(&r->mu);
				j->next = r->done;
				r->done = j;
				pthread_mutex_unlock(&r->mu);
				continue;
			}
			start_lookup(r->ch, j, on_answer);
		}
		if (stop)
			break;
		channel_wait(r->ch, r->wake_fd);
	}
	ares_destroy(r->ch);	/* lookups in flight end (ARES_EDESTRUCTION) onto done */
	r->ch = NULL;
	return NULL;
}

/* ------------------------------------------------------------------------- loop */

static void arm_event(struct gw_worker *w)
{
	struct gw_resolver *r = w->resolver;
	struct io_uring_sqe *sqe = gw_sqe(w);

	io_uring_prep_read(sqe, r->done_fd, &r->ev_buf, sizeof(r->ev_buf), 0);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_READ, r->ec));
	r->ec->inflight++;
}

int gw_resolve_init(struct gw_worker *w)
{
	struct gw_resolver *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	w->resolver = r;
	r->wake_fd = r->done_fd = -1;
	pthread_mutex_init(&r->mu, NULL);
	int ret = channel_new(&w->cfg->resolver, &r->ch);
	if (ret != ARES_SUCCESS) {
		r->ch = NULL;
		gw_err("worker=%d msg=\"cannot set up the resolver\" err=\"%s\"", w->id,
		       ares_strerror(ret));
		return -EINVAL;
	}
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->done_fd = eventfd(0, EFD_CLOEXEC);
	if (r->wake_fd < 0 || r->done_fd < 0)
		return -errno;
	r->ec = gw_conn_alloc(w, GW_CONN_RESOLVER, -1);
	if (!r->ec)
		return -ENOMEM;
	snprintf(r->ec->peer, sizeof(r->ec->peer), "resolver");
	if (pthread_create(&r->thread, NULL, resolver_thread, r) != 0)
		return -EAGAIN;
	r->has_thread = true;
	arm_event(w);
	return 0;
}

static void jobs_free(struct rs_job *j)
{
	while (j) {
		struct rs_job *nx = j->next;
		free(j->host);
		free(j);
		j = nx;
	}
}

void gw_resolve_free(struct gw_worker *w)
{
	struct gw_resolver *r = w->resolver;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->is_stopping = true;
	pthread_mutex_unlock(&r->mu);
	if (r->has_thread) {
		uint64_t one = 1;
		if (write(r->wake_fd, &one, sizeof(one)) < 0) {
			/* cannot fail on an eventfd this far from overflow */
		}
		pthread_join(r->thread, NULL);
	} else if (r->ch) {
		ares_destroy(r->ch);
	}
	jobs_free(r->todo);
	jobs_free(r->done);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	if (r->done_fd >= 0)
		close(r->done_fd);
	pthread_mutex_destroy(&r->mu);
	free(r);
	w->resolver = NULL;
}

int gw_resolve_numeric(const struct gw_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->kind != GW_ADDR_TCP)
		return gw_sockaddr_unix(a, ss, len);
	const char *host = a->host && *a->host ? a->host : "127.0.0.1";
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)a->port);
		*len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)a->port);
		*len = sizeof(*v6);
		return 0;
	}
	return -EAGAIN;
}

int gw_resolve_start(struct gw_worker *w, struct gw_conn *c, const struct gw_addr *a)
{
	struct gw_resolver *r = w->resolver;
	struct rs_job *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->host = strdup(a->host);
	if (!j->host) {
		free(j);
		return -ENOMEM;
	}
	j->r = r;
	j->idx = c->idx;
	j->gen = c->gen;
	j->port = a->port;
	pthread_mutex_lock(&r->mu);
	j->next = r->todo;
	r->todo = j;
	pthread_mutex_unlock(&r->mu);
	uint64_t one = 1;
	if (write(r->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow at this rate: nothing to do */
	}
	return 0;
}

static void on_event(struct gw_worker *w, struct gw_conn *ec, int res)
{
	struct gw_resolver *r = w->resolver;

	(void)ec;
	(void)res;
	pthread_mutex_lock(&r->mu);
	struct rs_job *done = r->done;
	r->done = NULL;
	pthread_mutex_unlock(&r->mu);
	while (done) {
		struct rs_job *j = done;
		done = j->next;
		struct gw_conn *c = j->idx < w->n_conns ? gw_conn_at(w, j->idx) : NULL;
		if (c && c->gen == j->gen && c->kind == GW_CONN_BACKEND && !c->is_closing &&
		    c->up.is_resolving)
			gw_upstream_resolved(w, c, j->status == ARES_SUCCESS ? &j->ss : NULL,
					     j->len, ares_strerror(j->status));
		free(j->host);
		free(j);
	}
	arm_event(w);
}

const struct gw_conn_ops gw_resolve_conn_ops = {
	.on_read = on_event,
};

/* ------------------------------------------------------------------------ --check */

static void on_check_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct rs_job *j = arg;

	(void)timeouts;
	j->status = status;
	if (status == ARES_SUCCESS && !pick_addr(res, 1, &j->ss, &j->len))
		j->status = ARES_ENODATA;
	if (res)
		ares_freeaddrinfo(res);
	j->idx = 1;	/* done */
}

int gw_resolve_check(const struct gw_config *cfg, const char *host, char *why, size_t n)
{
	ares_channel ch;
	struct rs_job j;
	int ret = channel_new(&cfg->resolver, &ch);

	if (ret != ARES_SUCCESS) {
		snprintf(why, n, "resolver: %s", ares_strerror(ret));
		return -1;
	}
	memset(&j, 0, sizeof(j));
	j.host = (char *)host;
	start_lookup(ch, &j, on_check_answer);
	while (!j.idx)
		channel_wait(ch, -1);
	ares_destroy(ch);
	if (j.status == ARES_SUCCESS)
		return 0;
	snprintf(why, n, "%s", ares_strerror(j.status));
	return -1;
}
