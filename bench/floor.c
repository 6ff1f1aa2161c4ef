/*
 * floor — the physical-limit reference for the bench: a minimal io_uring byte forwarder.
 *
 * No parsing, no pooling: every accepted client gets its own backend connection (round robin
 * over the addresses given), and bytes are relayed both ways with recv into provided buffers
 * (one buffer ring shared by all connections, so idle connections cost no buffer) and send
 * from the same buffer. Per direction one recv and one send are in flight at most; received
 * buffers wait in a short FIFO, so order is kept and a partial send resumes at its offset.
 * An EOF is passed on as shutdown(SHUT_WR) once everything before it was sent; the pair is
 * closed when both directions have ended, or at once on an error. Single thread, one ring.
 * Bytes relayed, errors and partial sends (current kernels complete a stream send whole, but
 * the contract allows less) are printed on stderr at exit (SIGTERM/SIGINT: exit 0).
 *
 * --mode picks how the backend -> client direction (answers) moves its bytes, to compare the
 * techniques for large answers (issue #11):
 *  - copy (default): recv into a provided buffer, send from it (the kernel copies twice);
 *  - zc: recv into a provided buffer, IORING_OP_SEND_ZC from it; the buffer goes back to the
 *    ring only on the notification CQE (IORING_CQE_F_NOTIF), when the kernel let go of it;
 *  - splice: backend socket -> a pipe of the pair (F_SETPIPE_SZ --pipe-bytes) -> client
 *    socket with IORING_OP_SPLICE, one splice in and one splice out in flight at most; the
 *    bytes never reach user space.
 * The client -> backend direction (small requests) always copies.
 *
 * In the spirit of liburing's examples/proxy.c, written for this bench. Not installed.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QDEPTH 8		/* received buffers waiting per direction before recv pauses */
#define BGID 7

enum op {
	OP_POLL_IN = 0, OP_ACCEPT, OP_CONNECT, OP_RECV, OP_SEND, OP_SIGNAL, OP_SPLICE_IN,
	OP_SPLICE_OUT
};
enum mode { MODE_COPY, MODE_ZC, MODE_SPLICE };

struct dir {
	struct pair *pair;
	int side;			/* the fd index this direction reads */
	struct dir *next_starved;	/* on the list of recvs that found no buffer */
	uint16_t bid[QDEPTH];
	uint32_t len[QDEPTH];
	uint32_t head, count, off;	/* FIFO of received buffers; off: sent of the head */
	bool is_recv_armed, is_send_armed, is_eof, is_shut, is_starved;
};

struct pair {
	int fd[2];			/* 0 client, 1 backend */
	struct dir d[2];		/* d[0]: client -> backend, d[1]: backend -> client */
	int refs;			/* operations in flight */
	bool is_connected, is_closing;
	/* splice mode, backend -> client: bytes in the pipe, one op each way in flight */
	int pipe[2];
	uint32_t in_pipe;
	bool is_splice_in_armed, is_splice_out_armed;
};

static struct {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *buf_mem;
	uint32_t buf_count, buf_size;
	struct sockaddr_storage *be;
	socklen_t *be_len;
	uint32_t held;			/* buffers taken by recvs, not yet returned */
	int n_be, next_be, lfd, sfd;
	struct dir *starved;
	struct signalfd_siginfo si;
	bool is_stopping;
	enum mode mode;
	uint32_t pipe_size;
	uint16_t *zc_notifs;		/* zc: notifications owed per buffer id */
	bool *zc_unqueued;		/* zc: sent whole, waits only for its notifications */
	unsigned long long accepted, bytes[2], errors, partial, enobufs;
} g = { .buf_count = 256, .buf_size = 32768, .pipe_size = 1 << 20 };

/* user_data: a pointer (8-byte aligned, below 2^47) with the op in the low 3 bits, the
 * direction in bit 63 and (zc sends) the buffer id in bits 47-62 */
static uint64_t ud(void *p, enum op op, int dir)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)op | ((uint64_t)dir << 63);
}

#define UD_BID_SHIFT 47
#define UD_PTR_MASK ((1ULL << UD_BID_SHIFT) - 1)

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&g.ring);

	while (!sqe) {
		io_uring_submit(&g.ring);
		sqe = io_uring_get_sqe(&g.ring);
	}
	return sqe;
}

static void buf_return(unsigned bid)
{
	g.held--;
	io_uring_buf_ring_add(g.br, g.buf_mem + (size_t)bid * g.buf_size, g.buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(g.buf_count), 0);
	io_uring_buf_ring_advance(g.br, 1);
}

static void arm_accept(void)
{
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_multishot_accept(sqe, g.lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, OP_ACCEPT);
}

static bool is_spliced(int i)
{
	return g.mode == MODE_SPLICE && i == 1;
}

/*
 * splice mode: backend socket -> pipe, as much as the pipe has room for. A splice from a
 * socket holds the pipe's lock while it waits for data, which would block the splice out
 * of what the pipe already holds (and so the client would never ask for more): the backend
 * socket is non-blocking, and a poll for input linked before the splice makes it wait
 * without the lock (-EAGAIN all the same: armed again).
 */
static void arm_splice_in(struct pair *p)
{
	struct io_uring_sqe *sqe;

	if (p->is_closing || p->is_splice_in_armed || p->d[1].is_eof || p->in_pipe >= g.pipe_size)
		return;
	if (io_uring_sq_space_left(&g.ring) < 2)
		io_uring_submit(&g.ring);	/* the link must sit in one submission */
	sqe = get_sqe();
	io_uring_prep_poll_add(sqe, p->fd[1], POLLIN);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, ud(p, OP_POLL_IN, 1));
	p->refs++;
	sqe = get_sqe();
	io_uring_prep_splice(sqe, p->fd[1], -1, p->pipe[1], -1, g.pipe_size - p->in_pipe,
			     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	io_uring_sqe_set_data64(sqe, ud(p, OP_SPLICE_IN, 1));
	p->is_splice_in_armed = true;
	p->refs++;
}

/* splice mode: pipe -> client socket, everything the pipe holds; the EOF once it is empty */
static void arm_splice_out(struct pair *p)
{
	struct io_uring_sqe *sqe;

	if (p->is_closing || p->is_splice_out_armed)
		return;
	if (!p->in_pipe) {
		if (p->d[1].is_eof && !p->d[1].is_shut) {
			shutdown(p->fd[0], SHUT_WR);
			p->d[1].is_shut = true;
		}
		return;
	}
	sqe = get_sqe();
	io_uring_prep_splice(sqe, p->pipe[0], -1, p->fd[0], -1, p->in_pipe, SPLICE_F_MOVE);
	io_uring_sqe_set_data64(sqe, ud(p, OP_SPLICE_OUT, 1));
	p->is_splice_out_armed = true;
	p->refs++;
}

/* Direction i reads fd[i] and writes fd[1 - i]. */
static void arm_recv(struct pair *p, int i)
{
	struct io_uring_sqe *sqe;

	if (is_spliced(i)) {
		arm_splice_in(p);
		return;
	}
	if (p->is_closing || p->d[i].is_recv_armed || p->d[i].is_eof ||
	    p->d[i].count == QDEPTH)
		return;
	sqe = get_sqe();
	io_uring_prep_recv(sqe, p->fd[i], NULL, g.buf_size, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud(p, OP_RECV, i));
	p->d[i].is_recv_armed = true;
	p->refs++;
}

static void arm_send(struct pair *p, int i)
{
	struct dir *d = &p->d[i];
	struct io_uring_sqe *sqe;
	unsigned bid;

	if (p->is_closing || d->is_send_armed)
		return;
	if (!d->count) {
		if (d->is_eof && !d->is_shut) {
			/* everything before the EOF is out: pass the EOF on */
			shutdown(p->fd[1 - i], SHUT_WR);
			d->is_shut = true;
		}
		return;
	}
	bid = d->bid[d->head];
	sqe = get_sqe();
	if (g.mode == MODE_ZC && i == 1) {
		io_uring_prep_send_zc(sqe, p->fd[1 - i],
				      g.buf_mem + (size_t)bid * g.buf_size + d->off,
				      d->len[d->head] - d->off, MSG_NOSIGNAL, 0);
		io_uring_sqe_set_data64(sqe, ud(p, OP_SEND, i) |
					     ((uint64_t)bid << UD_BID_SHIFT));
		g.zc_notifs[bid]++;	/* until the first CQE says none will come */
	} else {
		io_uring_prep_send(sqe, p->fd[1 - i],
				   g.buf_mem + (size_t)bid * g.buf_size + d->off,
				   d->len[d->head] - d->off, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, ud(p, OP_SEND, i));
	}
	d->is_send_armed = true;
	p->refs++;
}

/* Stop both sides: pending operations complete (shutdown wakes them); on_cqe frees the pair
 * once none is left, so no handler ever sees it freed under its feet. */
static void pair_close(struct pair *p)
{
	if (p->is_closing)
		return;
	p->is_closing = true;
	for (int i = 0; i < 2; i++)
		if (p->fd[i] >= 0)
			shutdown(p->fd[i], SHUT_RDWR);
}

static void pair_free(struct pair *p)
{
	for (int i = 0; i < 2; i++) {
		struct dir *d = &p->d[i];

		if (p->fd[i] >= 0)
			close(p->fd[i]);
		if (p->pipe[i] >= 0)
			close(p->pipe[i]);
		for (; d->count; d->count--, d->head = (d->head + 1) % QDEPTH)
			buf_return(d->bid[d->head]);
		if (d->is_starved) {
			for (struct dir **pp = &g.starved; *pp; pp = &(*pp)->next_starved)
				if (*pp == d) {
					*pp = d->next_starved;
					break;
				}
		}
	}
	free(p);
}

static void maybe_done(struct pair *p)
{
	if (p->d[0].is_shut && p->d[1].is_shut)
		pair_close(p);
}

static void on_accept(struct io_uring_cqe *cqe)
{
	struct pair *p;
	struct io_uring_sqe *sqe;
	int one = 1, i;

	if (!(cqe->flags & IORING_CQE_F_MORE) && !g.is_stopping)
		arm_accept();
	if (cqe->res < 0) {
		if (cqe->res != -EINTR && cqe->res != -ECONNABORTED)
			g.errors++;
		return;
	}
	g.accepted++;
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(cqe->res);
		return;
	}
	p->fd[0] = cqe->res;
	p->pipe[0] = p->pipe[1] = -1;
	if (g.mode == MODE_SPLICE) {
		if (pipe2(p->pipe, O_CLOEXEC) < 0 ||
		    fcntl(p->pipe[1], F_SETPIPE_SZ, (int)g.pipe_size) < 0) {
			g.errors++;
			p->fd[1] = -1;
			pair_free(p);
			return;
		}
	}
	for (i = 0; i < 2; i++) {
		p->d[i].pair = p;
		p->d[i].side = i;
	}
	i = g.next_be;
	g.next_be = (g.next_be + 1) % g.n_be;
	p->fd[1] = socket(g.be[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC |
			  (g.mode == MODE_SPLICE ? SOCK_NONBLOCK : 0), 0);
	if (p->fd[1] < 0) {
		g.errors++;
		p->fd[1] = -1;
		pair_free(p);
		return;
	}
	setsockopt(p->fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(p->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sqe = get_sqe();
	io_uring_prep_connect(sqe, p->fd[1], (struct sockaddr *)&g.be[i], g.be_len[i]);
	io_uring_sqe_set_data64(sqe, ud(p, OP_CONNECT, 0));
	p->refs++;
}

static void on_recv(struct pair *p, int i, struct io_uring_cqe *cqe)
{
	struct dir *d = &p->d[i];

	d->is_recv_armed = false;
	if (cqe->res > 0) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		g.held++;
		if (p->is_closing) {
			buf_return(bid);
			return;
		}
		d->bid[(d->head + d->count) % QDEPTH] = (uint16_t)bid;
		d->len[(d->head + d->count) % QDEPTH] = (uint32_t)cqe->res;
		d->count++;
		g.bytes[i] += (unsigned long long)cqe->res;
		arm_send(p, i);
		arm_recv(p, i);
		return;
	}
	if (p->is_closing)
		return;
	if (cqe->res == -ENOBUFS) {
		/* every buffer is queued somewhere: retry when one comes back */
		g.enobufs++;
		if (d->is_starved)
			return;
		d->is_starved = true;
		d->next_starved = g.starved;
		g.starved = d;
		return;
	}
	if (cqe->res == 0) {
		d->is_eof = true;
		arm_send(p, i);		/* shuts the other side down once drained */
		maybe_done(p);
		return;
	}
	g.errors += cqe->res != -ECONNRESET;
	pair_close(p);
}

static void on_send(struct pair *p, int i, struct io_uring_cqe *cqe)
{
	struct dir *d = &p->d[i];

	d->is_send_armed = false;
	if (p->is_closing)
		return;
	if (cqe->res <= 0) {
		g.errors += cqe->res != -EPIPE && cqe->res != -ECONNRESET;
		pair_close(p);
		return;
	}
	d->off += (uint32_t)cqe->res;
	g.partial += d->off < d->len[d->head];
	if (d->off == d->len[d->head]) {
		bool was_full = d->count == QDEPTH;
		unsigned bid = d->bid[d->head];

		if (g.mode == MODE_ZC && i == 1 && g.zc_notifs[bid])
			g.zc_unqueued[bid] = true;	/* returned with its last notification */
		else
			buf_return(bid);
		d->head = (d->head + 1) % QDEPTH;
		d->count--;
		d->off = 0;
		if (was_full)
			arm_recv(p, i);
	}
	arm_send(p, i);
	maybe_done(p);
}

static void on_splice_in(struct pair *p, struct io_uring_cqe *cqe)
{
	p->is_splice_in_armed = false;
	if (p->is_closing)
		return;
	if (cqe->res > 0) {
		p->in_pipe += (uint32_t)cqe->res;
		g.bytes[1] += (unsigned long long)cqe->res;
		arm_splice_out(p);
		arm_splice_in(p);
		return;
	}
	if (cqe->res == -EAGAIN || cqe->res == -ECANCELED) {
		/* no data after all, or the pipe is full in pages (the splice out re-arms) */
		if (!p->in_pipe)
			arm_splice_in(p);
		return;
	}
	if (cqe->res == 0) {
		p->d[1].is_eof = true;
		arm_splice_out(p);	/* shuts the client's side once the pipe is empty */
		maybe_done(p);
		return;
	}
	g.errors += cqe->res != -ECONNRESET;
	pair_close(p);
}

static void on_splice_out(struct pair *p, struct io_uring_cqe *cqe)
{
	p->is_splice_out_armed = false;
	if (p->is_closing)
		return;
	if (cqe->res <= 0) {
		g.errors += cqe->res != -EPIPE && cqe->res != -ECONNRESET;
		pair_close(p);
		return;
	}
	g.partial += (uint32_t)cqe->res < p->in_pipe;
	p->in_pipe -= (uint32_t)cqe->res;
	arm_splice_out(p);
	arm_splice_in(p);
	maybe_done(p);
}

/* zc: a send's notification (the kernel let go of the buffer) or, without IORING_CQE_F_MORE
 * on the send's own completion, the news that none will come */
static void zc_notified(unsigned bid)
{
	if (--g.zc_notifs[bid] == 0 && g.zc_unqueued[bid]) {
		g.zc_unqueued[bid] = false;
		buf_return(bid);
	}
}

/* Re-arm the recvs that found the buffer ring empty, now that some buffer is free. */
static void wake_starved(void)
{
	while (g.starved && g.held < g.buf_count) {
		struct dir *d = g.starved;

		g.starved = d->next_starved;
		d->is_starved = false;
		arm_recv(d->pair, d->side);
	}
}

static void on_cqe(struct io_uring_cqe *cqe)
{
	uint64_t u = io_uring_cqe_get_data64(cqe);
	enum op op = (enum op)(u & 7);
	int i = (int)(u >> 63);
	struct pair *p = (struct pair *)(uintptr_t)(u & UD_PTR_MASK & ~7ULL);
	unsigned bid = (unsigned)((u >> UD_BID_SHIFT) & 0xffff);

	switch (op) {
	case OP_ACCEPT:
		on_accept(cqe);
		return;
	case OP_SIGNAL:
		g.is_stopping = true;
		return;
	default:
		break;
	}
	if (op == OP_SEND && g.mode == MODE_ZC && i == 1) {
		if (cqe->flags & IORING_CQE_F_NOTIF) {
			/* the second CQE of a zc send: the first kept the pair's ref */
			zc_notified(bid);
			p->refs--;
			if (p->is_closing && !p->refs)
				pair_free(p);
			return;
		}
		if (cqe->flags & IORING_CQE_F_MORE)
			p->refs++;	/* its notification is still to come */
		else
			g.zc_notifs[bid]--;	/* none will come: the buffer is free already */
	}
	p->refs--;
	if (op == OP_POLL_IN) {
		/* its linked splice reports: a failed poll fails it with -ECANCELED */
	} else if (op == OP_CONNECT) {
		if (cqe->res < 0) {
			g.errors++;
			pair_close(p);
		} else {
			p->is_connected = true;
		}
		arm_recv(p, 0);
		arm_recv(p, 1);
	} else if (op == OP_RECV) {
		on_recv(p, i, cqe);
	} else if (op == OP_SPLICE_IN) {
		on_splice_in(p, cqe);
	} else if (op == OP_SPLICE_OUT) {
		on_splice_out(p, cqe);
	} else {
		on_send(p, i, cqe);
	}
	if (p->is_closing && !p->refs)
		pair_free(p);
}

/* unix:PORT: q's abstract socket "\0/tmp/kx.PORT", its length without a trailing NUL */
static int parse_unix(const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	char *end;
	long n = strtol(port, &end, 10);

	if (!*port || *end || n < 1 || n > 65535)
		return -1;
	memset(un, 0, sizeof(*un));
	un->sun_family = AF_UNIX;
	int k = snprintf(un->sun_path + 1, sizeof(un->sun_path) - 1, "/tmp/kx.%ld", n);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
	return 0;
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len, bool passive)
{
	if (!passive && !strncmp(s, "unix:", 5))
		return parse_unix(s + 5, ss, len);
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
	struct addrinfo *ai = NULL;
	char host[256];
	const char *colon = strrchr(s, ':'), *port = colon ? colon + 1 : s;
	size_t hl = colon ? (size_t)(colon - s) : 0;

	if (hl >= sizeof(host) || !*port)
		return -1;
	memcpy(host, s, hl);
	host[hl] = 0;
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	if (getaddrinfo(hl ? host : (passive ? NULL : "127.0.0.1"), port, &hints, &ai) || !ai)
		return -1;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static int setup(const char *listen_at)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
				     IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
				     IORING_SETUP_CQSIZE, .cq_entries = 4096 };
	struct io_uring_buf_reg reg = { 0 };
	struct sockaddr_storage la;
	socklen_t ll;
	sigset_t mask;
	int one = 1, rc;

	if (parse_addr(listen_at, &la, &ll, true) < 0) {
		fprintf(stderr, "floor: bad listen address %s\n", listen_at);
		return -1;
	}
	rc = io_uring_queue_init_params(1024, &g.ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = 4096;
		rc = io_uring_queue_init_params(1024, &g.ring, &p);
	}
	if (rc < 0) {
		fprintf(stderr, "floor: io_uring: %s\n", strerror(-rc));
		return -1;
	}
	io_uring_register_ring_fd(&g.ring);
	g.br = mmap(NULL, g.buf_count * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
		    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	g.buf_mem = mmap(NULL, (size_t)g.buf_count * g.buf_size, PROT_READ | PROT_WRITE,
			 MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (g.br == MAP_FAILED || g.buf_mem == MAP_FAILED)
		return -1;
	reg.ring_addr = (uint64_t)(uintptr_t)g.br;
	reg.ring_entries = g.buf_count;
	reg.bgid = BGID;
	rc = io_uring_register_buf_ring(&g.ring, &reg, 0);
	if (rc < 0) {
		fprintf(stderr, "floor: buffer ring: %s\n", strerror(-rc));
		return -1;
	}
	io_uring_buf_ring_init(g.br);
	for (uint32_t i = 0; i < g.buf_count; i++)
		io_uring_buf_ring_add(g.br, g.buf_mem + (size_t)i * g.buf_size, g.buf_size,
				      (unsigned short)i, io_uring_buf_ring_mask(g.buf_count),
				      (int)i);
	io_uring_buf_ring_advance(g.br, (int)g.buf_count);

	g.lfd = socket(la.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (g.lfd < 0 || setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(g.lfd, (struct sockaddr *)&la, ll) < 0 || listen(g.lfd, 4096) < 0) {
		fprintf(stderr, "floor: listen on %s: %s\n", listen_at, strerror(errno));
		return -1;
	}
	ll = sizeof(la);
	getsockname(g.lfd, (struct sockaddr *)&la, &ll);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	g.sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (g.sfd < 0)
		return -1;
	struct io_uring_sqe *sqe = get_sqe();

	io_uring_prep_read(sqe, g.sfd, &g.si, sizeof(g.si), 0);
	io_uring_sqe_set_data64(sqe, OP_SIGNAL);
	arm_accept();
	printf("floor listening on port %d\n",
	       ntohs(la.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&la)->sin6_port :
					       ((struct sockaddr_in *)&la)->sin_port));
	fflush(stdout);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: floor [--buffers N] [--buffer-bytes B] [--mode copy|zc|splice]\n"
		   "             [--pipe-bytes P] [HOST:]PORT BACKEND...\n"
		   "  relays every client accepted on [HOST:]PORT to its own connection to the\n"
		   "  next BACKEND (HOST:PORT, or unix:PORT for q's abstract socket\n"
		   "  @/tmp/kx.PORT), round robin. Provided buffers: N (power of two,\n"
		   "  default 256) of B bytes (default 32768). --mode: how answers (backend to\n"
		   "  client) move: copy (recv + send, default), zc (recv + zero-copy send),\n"
		   "  splice (through a pipe of P bytes per client, default 1048576).\n");
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	int a = 1;

	while (a < argc && !strncmp(argv[a], "--", 2)) {
		char *end;
		unsigned long v;

		if (!strcmp(argv[a], "--help")) {
			usage(stdout);
			return 0;
		}
		if (a + 1 >= argc)
			break;
		if (!strcmp(argv[a], "--mode")) {
			if (!strcmp(argv[a + 1], "copy"))
				g.mode = MODE_COPY;
			else if (!strcmp(argv[a + 1], "zc"))
				g.mode = MODE_ZC;
			else if (!strcmp(argv[a + 1], "splice"))
				g.mode = MODE_SPLICE;
			else {
				usage(stderr);
				return 2;
			}
			a += 2;
			continue;
		}
		v = strtoul(argv[a + 1], &end, 10);
		if (*end || !v) {
			usage(stderr);
			return 2;
		}
		if (!strcmp(argv[a], "--buffers") && v <= 32768 && !(v & (v - 1)))
			g.buf_count = (uint32_t)v;
		else if (!strcmp(argv[a], "--buffer-bytes") && v <= (1u << 24))
			g.buf_size = (uint32_t)v;
		else if (!strcmp(argv[a], "--pipe-bytes") && v >= 4096 && v <= (1u << 30))
			g.pipe_size = (uint32_t)v;
		else {
			usage(stderr);
			return 2;
		}
		a += 2;
	}
	if (argc - a < 2) {
		usage(stderr);
		return 2;
	}
	g.zc_notifs = calloc(g.buf_count, sizeof(*g.zc_notifs));
	g.zc_unqueued = calloc(g.buf_count, sizeof(*g.zc_unqueued));
	if (!g.zc_notifs || !g.zc_unqueued)
		return 1;
	g.n_be = argc - a - 1;
	g.be = calloc((size_t)g.n_be, sizeof(*g.be));
	g.be_len = calloc((size_t)g.n_be, sizeof(*g.be_len));
	if (!g.be || !g.be_len)
		return 1;
	for (int i = 0; i < g.n_be; i++)
		if (parse_addr(argv[a + 1 + i], &g.be[i], &g.be_len[i], false) < 0) {
			fprintf(stderr, "floor: bad backend address %s\n", argv[a + 1 + i]);
			return 2;
		}
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (setup(argv[a]) < 0)
		return 1;
	while (!g.is_stopping) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int rc = io_uring_submit_and_wait(&g.ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			fprintf(stderr, "floor: io_uring_enter: %s\n", strerror(-rc));
			return 1;
		}
		io_uring_for_each_cqe(&g.ring, head, cqe) {
			on_cqe(cqe);
			n++;
		}
		io_uring_cq_advance(&g.ring, n);
		if (g.starved)
			wake_starved();
	}
	fprintf(stderr, "floor: %llu connections, %llu bytes client->backend, "
			"%llu bytes backend->client, %llu errors, %llu partial sends, "
			"%llu recvs without a buffer\n",
		g.accepted, g.bytes[0], g.bytes[1], g.errors, g.partial, g.enobufs);
	return 0;
}
