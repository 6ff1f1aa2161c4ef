/*
 * worker.c — the io_uring event loop of one worker: ring and provided-buffer setup,
 * submit and wait, completion dispatch by op to the connection layer (conn.c), the
 * deferred work run after each turn's handlers (closes, pool dispatches, backlogs), the
 * tick, and the stop sequence.
 *
 * Invariants:
 *  - no completion handler runs nested inside another (gw_sqe stashes completions);
 *  - a stale completion (slot freed or reused) is dropped, its buffer given back.
 */
#include "gateway/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "gateway/actions.h"
#include "gateway/audit.h"
#include "gateway/auth.h"
#include "gateway/chunk.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/listen.h"
#include "gateway/log.h"
#include "gateway/notify.h"
#include "gateway/req.h"
#include "gateway/runtime.h"
#include "gateway/reply.h"
#include "gateway/resolve.h"
#include "gateway/session.h"
#include "gateway/stats.h"
#include "gateway/tls.h"
#include "gateway/upstream.h"

#define RING_ENTRIES 1024
#define CQ_ENTRIES 8192
#define BUF_COUNT 1024		/* power of two */
#define BUF_SIZE (32 * 1024)
/* the longest a wait that counts on quiet sends may last: should one of them not complete
 * at once (its socket full), its completion is handled this late at worst, which is the
 * tick's granularity for every deadline anyway */
#define QUIET_WAIT_MS GW_TICK_MS
/* the longest an idle worker sleeps: its heartbeat for main's watchdog (publish_alive) */
#define IDLE_MAX_MS 1000

uint64_t gw_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t gw_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ------------------------------------------------------------------- ring */

/* Take every completion off the ring into w->cqes, to be handled by the loop later. */
static void stash_cqes(struct gw_worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, count = 0;

	io_uring_for_each_cqe(&w->ring, head, cqe) {
		if (w->n_cqes == w->cqe_cap) {
			size_t cap = w->cqe_cap ? w->cqe_cap * 2 : 256;
			struct io_uring_cqe *n = realloc(w->cqes, cap * sizeof(*n));
			if (!n)
				break;	/* left on the ring: the next turn takes them */
			w->cqes = n;
			w->cqe_cap = cap;
		}
		w->cqes[w->n_cqes++] = *cqe;
		count++;
	}
	io_uring_cq_advance(&w->ring, count);
}

/*
 * A submission entry. When the queue is full it is submitted; should the kernel refuse
 * that (a full completion queue makes io_uring_enter fail with EBUSY), completions are
 * moved off the ring into w->cqes, to be handled by the loop, and the submit retried:
 * the queue cannot stay full, and no handler runs nested in here.
 */
struct io_uring_sqe *gw_sqe(struct gw_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	for (int i = 0; !sqe && i < 64; i++) {
		if (i == 0)
			w->sq_full++;
		w->ring_enters++;	/* a full queue always has something to submit */
		w->quiet_sends = 0;	/* their completions come back in this submit */
		if (io_uring_submit(&w->ring) < 0 || i > 0) {
			stash_cqes(w);
			w->ring_enters++;
			io_uring_get_events(&w->ring);
			stash_cqes(w);
		}
		sqe = io_uring_get_sqe(&w->ring);
	}
	if (!sqe) {
		gw_err("worker=%d msg=\"submission queue stuck full\"", w->id);
		abort();
	}
	return sqe;
}

/*
 * Whether a submit-and-wait for wait_nr completions enters the kernel: as liburing decides
 * it (2.3, _io_uring_get_cqe) without SQPOLL — something to submit, fewer completions ready
 * than waited for, or (waiting for none) deferred work the kernel must flush first.
 */
bool gw_ring_will_enter(struct io_uring *ring, unsigned wait_nr)
{
	unsigned ready = io_uring_cq_ready(ring);

	if (io_uring_sq_ready(ring) > 0 || wait_nr > ready)
		return true;
	return wait_nr == 0 && ready == 0 &&
	       (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN));
}

static int setup_ring(struct gw_worker *w)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
	uint32_t sq = w->cfg->limits.ring_entries ? w->cfg->limits.ring_entries : RING_ENTRIES;
	uint32_t cq = sq * 8 > CQ_ENTRIES ? sq * 8 : CQ_ENTRIES;

	if (sq < 64)
		cq = sq * 2;	/* a tiny ring asked for (tests): keep its completions small too */
	p.cq_entries = cq;
	ret = io_uring_queue_init_params(sq, &w->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = cq;
		ret = io_uring_queue_init_params(sq, &w->ring, &p);
	}
	if (ret < 0) {
		gw_err("msg=\"io_uring unavailable\" err=\"%s\" hint=\"kernel 6.1+ needed; "
		       "containers may block io_uring (seccomp) or sysctl "
		       "kernel.io_uring_disabled may be set\"", strerror(-ret));
		return ret;
	}
	if (!(p.features & IORING_FEAT_EXT_ARG)) {
		gw_err("msg=\"kernel lacks IORING_FEAT_EXT_ARG (5.11+)\"");
		return -ENOTSUP;
	}
	io_uring_register_ring_fd(&w->ring);
	gw_info("worker=%d msg=\"ring ready\" sq=%u cq=%u features=0x%x flags=0x%x", w->id,
		p.sq_entries, p.cq_entries, p.features, p.flags);
	return 0;
}

/* the release hook of this worker's lent chunks (gw_buf_lend) */
static void buf_released(void *arg, uint32_t bid)
{
	struct gw_worker *w = arg;

	GW_ASSERT(bid < w->buf_count && w->buf_lent[bid] > 0);
	if (--w->buf_lent[bid] > 0)
		return;
	w->n_bufs_lent--;
	/* the buffer being delivered goes back when its completion handler is done with it */
	if ((int)bid != w->rx_bid && !w->is_buf_ring_gone)
		gw_buf_return(w, bid);
}

struct gw_chunk *gw_buf_lend(struct gw_worker *w, const uint8_t *p, size_t n)
{
	if (w->rx_bid < 0)
		return NULL;
	const uint8_t *base = w->buf_mem + (size_t)w->rx_bid * w->buf_size;
	if (p < base || p + n > base + w->buf_size)
		return NULL;	/* not from the receive buffer (TLS plaintext) */
	if (w->buf_lent[w->rx_bid] == 0) {
		if (w->n_bufs_lent >= w->buf_count / 2)
			return NULL;
		w->n_bufs_lent++;
	}
	w->buf_lent[w->rx_bid]++;
	w->bytes_lent += n;
	return gw_chunk_lend(p, n, (uint32_t)w->rx_bid);
}

static int setup_buffers(struct gw_worker *w)
{
	struct io_uring_buf_reg reg;
	uint32_t count = w->cfg->limits.rx_buffers ? w->cfg->limits.rx_buffers : BUF_COUNT;
	uint32_t size = w->cfg->limits.rx_buffer_bytes ? w->cfg->limits.rx_buffer_bytes : BUF_SIZE;
	size_t ring_bytes = count * sizeof(struct io_uring_buf);
	int ret;

	w->buf_count = count;
	w->buf_size = size;
	w->bgid = 1;
	/* liburing 2.3 has no io_uring_setup_buf_ring: map and register by hand */
	void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
			 -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	w->br = mem;
	w->buf_mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
			  MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->buf_mem == MAP_FAILED)
		return -errno;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)w->br;
	reg.ring_entries = count;
	reg.bgid = w->bgid;
	ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (ret < 0) {
		gw_err("msg=\"provided buffer ring registration failed\" err=\"%s\"",
		       strerror(-ret));
		return ret;
	}
	io_uring_buf_ring_init(w->br);
	for (uint32_t i = 0; i < count; i++)
		io_uring_buf_ring_add(w->br, w->buf_mem + (size_t)i * size, size,
				      (unsigned short)i, io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(w->br, (int)count);
	w->buf_lent = calloc(count, sizeof(*w->buf_lent));
	if (!w->buf_lent)
		return -ENOMEM;
	w->rx_bid = -1;
	gw_chunk_set_release(buf_released, w);	/* init runs on the worker's own thread */
	return 0;
}

void gw_buf_return(struct gw_worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->buf_mem + (size_t)bid * w->buf_size, w->buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(w->buf_count),
			      0);
	/* publish at once: a recv re-armed later in this batch must find the buffer */
	io_uring_buf_ring_advance(w->br, 1);
}

/* ------------------------------------------------------------ connections */

uint32_t gw_worker_slots_needed(const struct gw_config *cfg)
{
	uint64_t n = (uint64_t)cfg->limits.max_clients + cfg->n_listeners + 64;
	bool has_session = false;

	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct gw_pool_cfg *p = &cfg->pools[i];
		for (size_t b = 0; b < p->n_backends; b++)
			n += (uint64_t)p->backends[b].connections;
		n += p->dedicated_max;
		has_session |= p->mode == GW_MODE_SESSION;
	}
	/* a session client holds one more slot: its own backend connection */
	if (has_session)
		n += cfg->limits.max_clients;
	return n > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)n;
}

/*
 * The work handlers only queue: closes first (so that what they fail or free is settled
 * before anything is handed out), then pool dispatches, then clients' unparsed backlogs.
 * Each step may queue more; the loop ends when nothing is left.
 */
static void on_wake(struct gw_worker *w);

/*
 * Wake the workers in w->wake_mask: a max_inflight slot freed here is kept for one of their
 * pools (pool.h, fairness). A message on their ring (IORING_OP_MSG_RING) wakes them out of
 * their wait at once; one that cannot be sent (SQ full, ring gone) is made up for by their
 * tick. This worker's own bit (a slot kept for another of its pools) is handled here.
 */
static void wake_peers(struct gw_worker *w)
{
	uint64_t mask = w->wake_mask;

	w->wake_mask = 0;
	if (w->id < 64 && (mask & (1ULL << w->id)))
		on_wake(w);
	for (int i = 0; i < w->n_peers && i < 64; i++) {
		if (!(mask & (1ULL << i)) || i == w->id)
			continue;
		int fd = __atomic_load_n(&w->peers[i]->wake_fd, __ATOMIC_ACQUIRE);
		if (fd <= 0)
			continue;
		/* never dropped for a full queue: an idle peer may sleep for IDLE_MAX_MS */
		struct io_uring_sqe *sqe = gw_sqe(w);
		io_uring_prep_msg_ring(sqe, fd, 0, (uint64_t)GW_OP_WAKE << 56, 0);
		io_uring_sqe_set_data64(sqe, (uint64_t)GW_OP_MSG_SENT << 56);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	}
}

void gw_worker_wake_now(struct gw_worker *w)
{
	wake_peers(w);
	io_uring_submit(&w->ring);	/* (a failure: their ticks make up for it) */
}

/* A freed max_inflight slot is kept for one of this worker's pools: every pool with
 * waiters looks again. */
static void on_wake(struct gw_worker *w)
{
	w->wakes_received++;
	gw_actions_apply(w, false);	/* an admin action (actions.h) may be why */
	for (size_t i = 0; i < w->n_pools; i++)
		if (w->pools[i]->pl.queue_len)
			gw_pool_dispatch(w, w->pools[i]);
}

static void run_deferred(struct gw_worker *w)
{
	for (;;) {
		if (gw_conn_close_one(w))
			continue;
		if (!pool_list_empty(&w->dispatches)) {
			struct pool_link *l = w->dispatches.next;
			pool_list_del(l);
			gw_pool_dispatch_now(w, pool_container_of(l, struct gw_pool_rt,
								  dispatch_link));
		} else if (!pool_list_empty(&w->backlogs)) {
			struct pool_link *l = w->backlogs.next;
			pool_list_del(l);
			gw_client_run_backlog(w, pool_container_of(l, struct gw_conn,
								   cl.backlog_link));
		} else if (w->wake_mask) {
			wake_peers(w);	/* may mark this worker's own pools */
		} else {
			break;
		}
	}
}

static void handle_cqe(struct gw_worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum gw_op op = (enum gw_op)(ud >> 56);
	uint32_t gen = (uint32_t)(ud >> 32) & 0xffffff;
	uint32_t idx = (uint32_t)ud;

	if (op == GW_OP_WAKE) {
		on_wake(w);
		return;
	}
	if (op == GW_OP_POKE) {
		/* main posted a reload (applied by this turn's tick) or a stop (seen by the loop) */
		w->next_tick_ms = w->now_ms;
		return;
	}
	if (op == GW_OP_NONE || op == GW_OP_MSG_SENT || idx >= w->n_conns)
		return;	/* (a failed msg_ring: the peer's tick makes up for it) */
	struct gw_conn *c = gw_conn_at(w, idx);
	if (c->kind == GW_CONN_FREE || (c->gen & 0xffffff) != gen) {
		/* a stale completion must not carry a buffer away from the ring */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			gw_buf_return(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	bool final = !(cqe->flags & IORING_CQE_F_MORE);

	switch (op) {
	case GW_OP_ACCEPT:
		if (c->ops->on_accept)
			c->ops->on_accept(w, c, cqe);
		break;
	case GW_OP_RECV:
		gw_conn_on_recv(w, c, cqe);
		break;
	case GW_OP_SEND:
		gw_conn_on_send(w, c, cqe->res);
		break;
	case GW_OP_CONNECT:
		if (c->ops->on_connect)
			c->ops->on_connect(w, c, cqe->res);
		break;
	case GW_OP_POLL:
		gw_conn_on_poll(w, c, cqe->res);
		break;
	case GW_OP_READ:
		if (c->ops->on_read)
			c->ops->on_read(w, c, cqe->res);
		break;
	case GW_OP_TIMEOUT:
	case GW_OP_CANCEL:
	default:
		break;
	}
	if (final)
		gw_conn_sqe_done(w, c);
}

/* Tell the main thread this loop is turning (its watchdog feeds systemd only while every
 * worker's is), with figures for the status line: clients, and backends with a connection
 * open (up) of all the backends of the pools. */
static void publish_alive(struct gw_worker *w)
{
	uint32_t up = 0, all = 0;

	for (size_t i = 0; i < w->n_pools; i++) {
		const struct gw_pool_rt *p = w->pools[i];
		for (size_t b = 0; b < p->n_backends; b++) {
			const struct gw_backend_rt *be = p->backends[b];
			all++;
			/* a session pool's connections are its clients': judged by the last try */
			if (be->pb.n[POOL_IDLE] + be->pb.n[POOL_BUSY] > 0 ||
			    be->stat.connect_ok_ms > be->stat.connect_failed_ms)
				up++;
		}
	}
	__atomic_store_n(&w->alive_clients, w->n_clients, __ATOMIC_RELAXED);
	__atomic_store_n(&w->alive_backends_up, up, __ATOMIC_RELAXED);
	__atomic_store_n(&w->alive_backends, all, __ATOMIC_RELAXED);
	__atomic_store_n(&w->alive_ms, w->now_ms, __ATOMIC_RELEASE);
}

/* main's ring for gw_worker_poke: created on first use, used under its lock */
static struct io_uring poke_ring;
static bool has_poke_ring;
static pthread_mutex_t poke_mu = PTHREAD_MUTEX_INITIALIZER;

void gw_worker_poke(struct gw_worker *w)
{
	int fd = __atomic_load_n(&w->wake_fd, __ATOMIC_ACQUIRE);

	if (fd <= 0)
		return;
	pthread_mutex_lock(&poke_mu);
	if (!has_poke_ring)
		has_poke_ring = io_uring_queue_init(8, &poke_ring, 0) == 0;
	struct io_uring_sqe *sqe = has_poke_ring ? io_uring_get_sqe(&poke_ring) : NULL;
	if (sqe) {
		io_uring_prep_msg_ring(sqe, fd, 0, (uint64_t)GW_OP_POKE << 56, 0);
		io_uring_sqe_set_data64(sqe, 0);
		io_uring_submit(&poke_ring);
		/* its own completions are not needed: reaped so that the ring never fills */
		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&poke_ring, &cqe) == 0)
			io_uring_cqe_seen(&poke_ring, cqe);
	}
	pthread_mutex_unlock(&poke_mu);
	/* (no ring: the worker sees the news within IDLE_MAX_MS) */
}

void gw_worker_poke_done(void)
{
	pthread_mutex_lock(&poke_mu);
	if (has_poke_ring)
		io_uring_queue_exit(&poke_ring);
	has_poke_ring = false;
	pthread_mutex_unlock(&poke_mu);
}

/* The heartbeat's period: main's watchdog wants every loop seen within half its interval. */
static uint64_t idle_max_ms(void)
{
	uint64_t wd_ms = gw_notify_watchdog_usec() / 1000;

	return wd_ms && wd_ms / 4 < IDLE_MAX_MS ? (wd_ms / 4 ? wd_ms / 4 : 1) : IDLE_MAX_MS;
}

static void tick(struct gw_worker *w)
{
	/* a stopping worker binds and builds nothing new (a reload accepted just before the
	 * SIGTERM is left unapplied) */
	const struct gw_config *next = w->is_stopping ? NULL :
		__atomic_exchange_n(&w->pending_cfg, NULL, __ATOMIC_ACQ_REL);
	if (next)
		gw_runtime_reload(w, next);
	/* admin state for the pools a reload built; else a wakeup lost on a full queue */
	gw_actions_apply(w, next != NULL);
	gw_client_tick(w);
	gw_upstream_tick(w);
	gw_listen_tick(w);
	gw_stats_tick(w);
	if (w->audit_len)
		gw_audit_flush(w);
	if (w->audit_len)
		gw_worker_due(w, w->now_ms + GW_TICK_MS);	/* what the flush could not write */
	if (w->n_peers > 1) {
		if (w->now_ms >= w->next_snap_ms) {
			w->next_snap_ms = w->now_ms + 250;
			gw_stats_publish(w);
		}
		gw_worker_due(w, w->next_snap_ms);
	}
	if (w->is_stopping || __atomic_load_n(&w->pending_cfg, __ATOMIC_ACQUIRE))
		gw_worker_due(w, w->now_ms + GW_TICK_MS);
	publish_alive(w);
	/* idle clients: a cheap scan once a second is plenty at this granularity */
	uint32_t idle_ms = w->cfg->limits.client_idle_timeout_ms;
	if (idle_ms && w->n_clients)
		gw_worker_due(w, w->now_ms >= w->next_idle_scan_ms ? w->now_ms + 1000 :
			      w->next_idle_scan_ms);
	if (idle_ms && w->now_ms >= w->next_idle_scan_ms) {
		w->next_idle_scan_ms = w->now_ms + 1000;
		for (uint32_t i = 0; i < w->n_conns; i++) {
			struct gw_conn *c = gw_conn_at(w, i);
			if (c->kind == GW_CONN_CLIENT && !c->is_closing && !c->cl.n_slots &&
			    c->cl.last_active_ms + idle_ms <= w->now_ms) {
				gw_info("conn=%llu peer=%s user=%s msg=\"closing idle client\"",
					(unsigned long long)c->id, c->peer, c->cl.user_log);
				gw_conn_close(w, c, "idle timeout");
			}
		}
	}
}

/* ----------------------------------------------------------------- lifecycle */

int gw_worker_init(struct gw_worker *w, const struct gw_config *cfg, int id,
		   volatile int *stop_flag, struct gw_worker *const *peers, int n_peers)
{
	int ret;

	/* w arrives zeroed, with snap_mu initialised by the caller: other workers may lock
	 * it at any time, so it is never wiped here */
	w->id = id;
	w->peers = peers;
	w->n_peers = n_peers;
	w->cfg = cfg;
	w->stop_flag = stop_flag;
	w->audit_fd = -1;
	w->rng = (uint64_t)gw_now_us() * 2654435761u + (uint64_t)getpid();
	pool_list_init(&w->handshaking);
	pool_list_init(&w->extra_ups);
	/* what each kind of connection does with its bytes and events (see conn.h) */
	gw_conn_set_ops(w, GW_CONN_LISTENER, &gw_listen_conn_ops);
	gw_conn_set_ops(w, GW_CONN_CLIENT, &gw_client_conn_ops);
	gw_conn_set_ops(w, GW_CONN_BACKEND, &gw_upstream_conn_ops);
	gw_conn_set_ops(w, GW_CONN_HTTP, &gw_stats_conn_ops);
	gw_conn_set_ops(w, GW_CONN_EVENT, &gw_auth_conn_ops);
	gw_conn_set_ops(w, GW_CONN_RESOLVER, &gw_resolve_conn_ops);
	ret = setup_ring(w);
	if (ret < 0)
		return ret;
	ret = setup_buffers(w);
	if (ret < 0)
		return ret;
	__atomic_store_n(&w->wake_fd, w->ring.ring_fd, __ATOMIC_RELEASE);
	pool_list_init(&w->http_conns);
	pool_list_init(&w->receiving);
	pool_list_init(&w->lingering);
	pool_list_init(&w->dispatches);
	pool_list_init(&w->backlogs);
	w->max_conns = gw_worker_slots_needed(cfg);
	if (!gw_conn_slab_grow(w))
		return -ENOMEM;
	ret = gw_auth_init(w);
	if (ret < 0)
		return ret;
	ret = gw_resolve_init(w);
	if (ret < 0)
		return ret;
	/* the stats endpoint first: once the q port accepts, /stats and /health answer too */
	ret = gw_stats_open(w);
	if (ret < 0)
		return ret;
	ret = gw_runtime_init(w);
	if (ret < 0)
		return ret;
	ret = gw_audit_open(w);
	if (ret < 0)
		return ret;
	w->now_ms = gw_now_ms();
	/* open the warm backend connections; lazy pools wait for their first request */
	for (size_t p = 0; p < w->n_pools; p++)
		if (!w->pools[p]->cfg->is_lazy)
			gw_pool_start(w, w->pools[p]);
	publish_alive(w);
	return 0;
}

/* Nothing owed to any client any more: every slot answered, nothing queued. */
static bool drained(struct gw_worker *w)
{
	for (size_t i = 0; i < w->n_pools; i++) {
		struct gw_pool_rt *p = w->pools[i];
		if (p->pl.queue_len)
			return false;
		/* an answer still owed or drained: its q is busy and holds a max_inflight slot
		 * other workers may be waiting for */
		for (size_t b = 0; b < p->n_backends; b++)
			if (p->backends[b]->pb.n[POOL_BUSY] + p->backends[b]->pb.n[POOL_DRAINING])
				return false;
	}
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind == GW_CONN_CLIENT && !c->is_closing &&
		    (c->cl.n_slots || gw_tx_pending(c) || c->cl.session_pending))
			return false;
	}
	return true;
}

/* The final errors are out (or had their chance): every client's queue is empty. */
static bool flushed(struct gw_worker *w)
{
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind == GW_CONN_CLIENT && !c->is_closing && gw_tx_pending(c))
			return false;
	}
	return true;
}

/* SIGTERM: stop accepting, let requests in flight finish within the grace period. */
static void begin_stop(struct gw_worker *w)
{
	w->is_stopping = true;
	w->stop_deadline_ms = w->now_ms + w->cfg->limits.shutdown_grace_ms;
	for (size_t i = 0; i < w->n_listeners; i++)
		if (w->listeners[i]->conn)
			gw_conn_close(w, w->listeners[i]->conn, "stopping");
	gw_info("worker=%d msg=\"stopping: no new clients; finishing requests in flight\" "
		"grace_ms=%u", w->id, w->cfg->limits.shutdown_grace_ms);
}

/* How long the last "qgate: " errors may take to reach clients after the grace period. */
#define FINAL_FLUSH_MS 1000

int gw_worker_turn(struct gw_worker *w, uint64_t max_wait_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	uint64_t now = gw_now_ms();
	uint64_t wait_ms = w->next_tick_ms > now ? w->next_tick_ms - now : 0;

	if (wait_ms > max_wait_ms)
		wait_ms = max_wait_ms;
	/*
	 * One enter per turn: it submits what the handlers prepared and waits. A small send to
	 * a socket with room completes inside that enter, and its completion alone would end
	 * the wait at once, costing a second enter for the event the loop is really waiting
	 * for (the answer to the request just sent). So the wait asks for one completion more
	 * per such send, bounded by QUIET_WAIT_MS in case one of them had to wait for room.
	 */
	unsigned wait_nr = w->n_cqes ? 0 : 1 + w->quiet_sends;
	if (wait_nr > 1 && wait_ms > QUIET_WAIT_MS)
		wait_ms = QUIET_WAIT_MS;
	w->quiet_sends = 0;
	ts.tv_sec = (long long)(wait_ms / 1000);
	ts.tv_nsec = (long long)(wait_ms % 1000) * 1000000;
	/* completions stashed by gw_sqe are waiting already: do not sleep (wait_nr 0) */
	w->loop_turns++;
	if (gw_ring_will_enter(&w->ring, wait_nr))
		w->ring_enters++;
	int ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, wait_nr, &ts, NULL);
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY) {
		gw_err("worker=%d msg=\"ring wait failed\" err=\"%s\"", w->id, strerror(-ret));
		return ret;
	}
	w->now_ms = gw_now_ms();
	/* handled from a copy: a handler may move more completions off the ring */
	stash_cqes(w);
	/* something happened: it may have set a deadline only the next tick's scan sees */
	if (w->n_cqes && w->next_tick_ms > w->now_ms + GW_TICK_MS)
		w->next_tick_ms = w->now_ms + GW_TICK_MS;
	for (size_t i = 0; i < w->n_cqes; i++) {
		struct io_uring_cqe one = w->cqes[i];
		handle_cqe(w, &one);
	}
	w->n_cqes = 0;
	if (io_uring_cq_has_overflow(&w->ring))
		w->cq_overflows++;
	run_deferred(w);
	if (w->now_ms >= w->next_tick_ms) {
		w->next_due_ms = w->now_ms + idle_max_ms();
		tick(w);
		run_deferred(w);
		/* the tick started something (a check, a connect, an error sent): tick again
		 * soon, as after any event; else sleep until the earliest deadline it saw */
		if (io_uring_sq_ready(&w->ring) || w->n_cqes)
			gw_worker_due(w, w->now_ms + GW_TICK_MS);
		w->next_tick_ms = w->next_due_ms > w->now_ms ? w->next_due_ms : w->now_ms + 1;
	}
	return 0;
}

int gw_worker_run(struct gw_worker *w)
{
	w->next_tick_ms = gw_now_ms() + GW_TICK_MS;
	for (;;) {
		if (*w->stop_flag && !w->is_stopping)
			begin_stop(w);
		if (w->is_stopping && !w->is_final_flush &&
		    (drained(w) || w->now_ms >= w->stop_deadline_ms)) {
			if (drained(w))
				break;
			/* the grace period is over: what is still owed gets its q error */
			gw_client_fail_all(w, "qgate: gateway shutting down");
			run_deferred(w);
			w->is_final_flush = true;
			w->stop_deadline_ms = w->now_ms + FINAL_FLUSH_MS;
		}
		if (w->is_final_flush && (flushed(w) || w->now_ms >= w->stop_deadline_ms))
			break;
		int ret = gw_worker_turn(w, UINT64_MAX);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void gw_worker_destroy(struct gw_worker *w)
{
	/*
	 * Listeners stop listening now: the ring's teardown below finishes in the kernel after
	 * this process may have exited, and until then an accept still armed would keep a TCP
	 * port listening, so a gateway started again at once (systemd's Restart=) found it "in
	 * use" and its clients reached a dead listener. (A shared Unix socket is shut down by
	 * its last user, lshare.c.)
	 */
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind == GW_CONN_LISTENER && c->fd >= 0 && !c->is_fd_shared)
			shutdown(c->fd, SHUT_RDWR);
	}
	/* the ring goes first: it cancels whatever is left in flight (io_uring_cancelation(7)) */
	__atomic_store_n(&w->wake_fd, -1, __ATOMIC_RELEASE);	/* no more wakeups to it */
	if (w->ring.ring_fd > 0)
		io_uring_queue_exit(&w->ring);
	w->is_buf_ring_gone = true;	/* lent chunks freed below return nothing */
	/* queued async requests belong to no slot: free them; sync ones go with their client */
	for (size_t i = 0; w->pools && i < w->n_pools; i++) {
		struct gw_pool_rt *p = w->pools[i];
		while (!pool_list_empty(&p->pl.queue)) {
			gw_req_drop_queued(gw_req_of(pool_container_of(p->pl.queue.next,
								       struct pool_req, qlink)));
		}
	}
	/* requests held by a backend connection: its client's slot list lets go first */
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind != GW_CONN_CLIENT)
			continue;
		struct gw_req *r = c->cl.slots_head;
		while (r) {
			struct gw_req *next = r->next_slot;
			r->is_in_slots = false;
			r->client = NULL;
			gw_req_release(r);
			r = next;
		}
		c->cl.slots_head = c->cl.slots_tail = NULL;
	}
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct gw_conn *c = gw_conn_at(w, i);
		if (c->kind == GW_CONN_FREE)
			continue;
		if (c->kind == GW_CONN_BACKEND && c->up.owed) {
			struct gw_req *r = c->up.owed;
			c->up.owed = NULL;
			r->backend = NULL;
			gw_req_release(r);
		}
		if (c->kind == GW_CONN_CLIENT) {
			gw_chunk_free(c->cl.rx_msg);
			free(c->cl.backlog);
		}
		if (c->kind == GW_CONN_HTTP) {
			free(c->http.req);	/* a stats connection still open at exit */
			c->http.req = NULL;
		}
		gw_listen_release(c);	/* a listener whose close never ran (stop, failed start) */
		gw_chunkq_free(&c->txq);
		gw_chunkq_free(&c->ctq);
		if (c->ssl)
			gw_tls_free(c);
		if (c->fd >= 0)
			close(c->fd);
	}
	gw_runtime_free(w);
	for (uint32_t i = 0; i < w->n_segs; i++)
		free(w->segs[i]);
	free(w->segs);
	w->segs = NULL;
	w->n_segs = 0;
	free(w->cqes);
	w->cqes = NULL;
	if (w->buf_mem && w->buf_mem != MAP_FAILED)
		munmap(w->buf_mem, (size_t)w->buf_count * w->buf_size);
	if (w->br && (void *)w->br != MAP_FAILED)
		munmap(w->br, (size_t)w->buf_count * sizeof(struct io_uring_buf));
	free(w->buf_lent);
	w->buf_lent = NULL;
	gw_chunk_set_release(NULL, NULL);
	gw_auth_free(w);
	gw_resolve_free(w);
	gw_audit_close(w);
	/* the free lists of this thread (destroy runs on the worker's own thread) */
	gw_req_cache_free();
	gw_chunk_cache_free();
	pthread_mutex_lock(&w->snap_mu);
	free(w->snap_json);
	w->snap_json = NULL;
	free(w->snap_clients);
	w->snap_clients = NULL;
	w->n_snap_clients = w->cap_snap_clients = 0;
	pthread_mutex_unlock(&w->snap_mu);
	free(w->spare_clients);
	w->spare_clients = NULL;
	w->cap_spare_clients = 0;
	w->n_conns = 0;
}
