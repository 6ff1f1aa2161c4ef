/* auth.c — client logins off the event loop (see auth.h). */
#include "gateway/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/log.h"
#include "gateway/pwhash.h"
#include "gateway/session.h"
#include "gateway/worker.h"

#define CACHE_SLOTS 64
#define THROTTLE_SLOTS 1024
/* checks waiting for a login thread; beyond it new logins are refused at once */
#define MAX_PENDING 1024

struct auth_job {
	struct auth_job *next;
	uint32_t idx, gen;		/* the client, as a slot and its generation */
	char *hash;			/* the stored hash checked against (a copy) */
	uint8_t pw[GW_PW_MAX_BYTES + 1];
	size_t pw_len;
	uint8_t digest[32];		/* its cache key */
	bool is_dummy;			/* unknown user: the answer is no, at the usual cost */
	bool is_ok;
	uint8_t addr[17];		/* the address its check counts against */
	uint32_t window;		/* its address's window when it was checked (held jobs) */
};

struct gw_auth {
	uint8_t key[32];
	uint8_t cache[CACHE_SLOTS][32];
	bool cache_used[CACHE_SLOTS];
	unsigned cache_next;
	char *dummy_hash;
	/* threads take jobs from todo and put them on done, then wake the loop */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct auth_job *todo_head, *todo_tail, *done;
	struct auth_job *held;		/* checked, answer held (loop only; see deliverable) */
	unsigned n_pending;		/* queued, being checked or held (loop side count) */
	struct gw_auth *next_reg;	/* in the process-wide list (throttle_mu) */
	uint64_t next_full_log_ms;
	bool is_stopping;
	pthread_t *threads;
	unsigned n_threads;
	int efd;
	struct gw_conn *ec;		/* the eventfd's connection slot */
	uint64_t ev_buf;
};

/* ------------------------------------------------------------ failures per address */

/*
 * Only failures count against an address, so an application opening a pool of connections
 * at start-up is not refused. Checks in flight are not known failures yet, so an answer is
 * given only when it cannot be worth a guess past the limit: when the failures so far and
 * every check still in flight (all of them as if they failed) stay below
 * login_failures_max; else it is held until they are in. Once the limit is reached,
 * everything held is refused at once, the right password as well as the wrong ones, so
 * neither the answer nor its time tells a guess apart. login_pending_max bounds the checks
 * of one address in flight and held at once.
 */
struct throttle_slot {
	uint8_t addr[17];		/* family byte + up to 16 address bytes */
	uint32_t failures;
	uint32_t pending;		/* checks of this address not finished yet */
	uint32_t held;			/* finished, their answers held (any worker) */
	uint32_t window;		/* windows started: a held answer from an older one is free */
	uint64_t window_start_ms;
	bool is_used;
	bool is_logged;
};

static pthread_mutex_t throttle_mu = PTHREAD_MUTEX_INITIALIZER;
static struct throttle_slot throttle[THROTTLE_SLOTS];
static struct gw_auth *auth_regs;	/* every worker's auth: woken when an answer is freed */

static void addr_key(const struct gw_conn *c, uint8_t key[17])
{
	memset(key, 0, 17);
	key[0] = c->cl.peer_family;
	memcpy(key + 1, c->cl.peer_ip, 16);
}

/* The slot for key (a free or the stalest one when absent and want_new). Lock held. */
static struct throttle_slot *throttle_find(const uint8_t key[17], uint64_t now, uint32_t win,
					   bool want_new)
{
	struct throttle_slot *free_slot = NULL;

	for (size_t i = 0; i < THROTTLE_SLOTS; i++) {
		struct throttle_slot *s = &throttle[i];
		if (s->is_used && memcmp(s->addr, key, 17) == 0)
			return s;
		if (!s->is_used || s->window_start_ms + win <= now) {
			if (!free_slot)
				free_slot = s;
		} else if (free_slot && free_slot->is_used &&
			   s->window_start_ms < free_slot->window_start_ms) {
			free_slot = s;
		} else if (!free_slot) {
			free_slot = s;
		}
	}
	if (!want_new || !free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	memcpy(free_slot->addr, key, 17);
	free_slot->is_used = true;
	free_slot->window_start_ms = now;
	return free_slot;
}

/* s's window has passed: a new one. Lock held. */
static void window_roll(struct throttle_slot *s, uint64_t now, uint32_t win)
{
	if (s->window_start_ms + win > now)
		return;
	s->window_start_ms = now;
	s->failures = 0;
	s->is_logged = false;
	s->window++;
}

/* Wake every worker's loop to look at its held answers again. Lock held. */
static void wake_all(void)
{
	uint64_t one = 1;

	for (struct gw_auth *a = auth_regs; a; a = a->next_reg)
		if (write(a->efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow at this rate: nothing to do */
		}
}

/* A finished (or refused) check of key: it no longer counts as pending; a failure counts.
 * Lock held. */
static struct throttle_slot *done_locked(struct gw_worker *w, const uint8_t key[17],
					 bool is_failure, bool was_pending)
{
	uint32_t win = w->cfg->limits.login_failure_window_ms;
	struct throttle_slot *s = throttle_find(key, w->now_ms, win, is_failure);

	if (s) {
		if (was_pending && s->pending)
			s->pending--;
		if (is_failure) {
			window_roll(s, w->now_ms, win);
			s->failures++;
		}
		if (s->held)
			wake_all();	/* this may free answers held on any worker */
	}
	return s;
}

static void throttle_done(struct gw_worker *w, const uint8_t key[17], bool is_failure,
			  bool was_pending)
{
	pthread_mutex_lock(&throttle_mu);
	done_locked(w, key, is_failure, was_pending);
	pthread_mutex_unlock(&throttle_mu);
}

enum verdict { V_ANSWER, V_HOLD, V_REFUSE };

/* What to do with a finished check (is_ok: its password was right) of s now (its own
 * pending already released); refusing a right one sets *log_failures (nonzero) when it is
 * the window's first to be logged. A wrong one is answered no either way. Lock held. */
static enum verdict deliverable(struct gw_worker *w, struct throttle_slot *s, uint32_t window,
				bool is_ok, uint32_t *log_failures)
{
	uint32_t max = w->cfg->limits.login_failures_max;

	if (!s)
		return V_ANSWER;	/* its address was forgotten: nothing counts against it */
	window_roll(s, w->now_ms, w->cfg->limits.login_failure_window_ms);
	if (s->window != window)
		return V_ANSWER;	/* its window has passed */
	if (s->failures >= max) {
		if (!is_ok)
			return V_ANSWER;	/* no, as it would be anyway */
		if (!s->is_logged)
			*log_failures = s->failures;
		s->is_logged = true;
		return V_REFUSE;
	}
	if ((uint64_t)s->failures + s->pending < max)
		return V_ANSWER;
	return V_HOLD;
}

void gw_auth_failed(struct gw_worker *w, const struct gw_conn *c)
{
	uint8_t key[17];

	addr_key(c, key);
	throttle_done(w, key, true, false);
}

/* Log once per window that an address is refused. */
static void log_throttled(const char *peer, uint32_t failures, uint32_t win)
{
	gw_warn("peer=%s msg=\"too many failed logins: refusing this address until its "
		"window passes\" failures=%u window_ms=%u", peer, failures, win);
}

/*
 * Whether c's address may have one more check: fewer failures than the limit, and fewer
 * than login_pending_max checks in flight or held. A yes reserves the check (throttle_done
 * releases it) and sets *window; *is_clear says that all its checks in flight could fail
 * and still leave it below the limit (so an answer may be given at once). Logs once per
 * window.
 */
static bool throttle_reserve(struct gw_worker *w, const struct gw_conn *c, uint32_t *window,
			     bool *is_clear)
{
	uint8_t key[17];
	const struct gw_limits_cfg *lim = &w->cfg->limits;
	uint32_t win = lim->login_failure_window_ms;
	bool is_ok = true, is_first = false;
	uint32_t failures = 0;

	addr_key(c, key);
	*window = 0;
	*is_clear = true;
	pthread_mutex_lock(&throttle_mu);
	struct throttle_slot *s = throttle_find(key, w->now_ms, win, true);
	if (s) {
		window_roll(s, w->now_ms, win);
		if (s->failures >= lim->login_failures_max ||
		    s->pending + s->held >= lim->login_pending_max) {
			is_ok = false;
			is_first = !s->is_logged && s->failures >= lim->login_failures_max;
			s->is_logged |= is_first;
			failures = s->failures;
		} else {
			*is_clear = (uint64_t)s->failures + s->pending < lim->login_failures_max;
			s->pending++;
			*window = s->window;
		}
	}
	pthread_mutex_unlock(&throttle_mu);
	if (is_first)
		log_throttled(c->peer, failures, win);
	return is_ok;
}

/* ------------------------------------------------------------------------- cache */

static void cache_key(struct gw_auth *a, const char *user, const char *hash, const uint8_t *pw,
		      size_t pw_len, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int len = 32;

	if (!md)
		abort();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, a->key, sizeof(a->key));
	EVP_DigestUpdate(md, user, strlen(user) + 1);
	EVP_DigestUpdate(md, hash, strlen(hash) + 1);
	EVP_DigestUpdate(md, pw, pw_len);
	EVP_DigestFinal_ex(md, out, &len);
	EVP_MD_CTX_free(md);
}

static bool cache_has(const struct gw_auth *a, const uint8_t dg[32])
{
	bool hit = false;

	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		hit |= a->cache_used[i] && CRYPTO_memcmp(a->cache[i], dg, 32) == 0;
	return hit;
}

static void cache_add(struct gw_auth *a, const uint8_t dg[32])
{
	memcpy(a->cache[a->cache_next], dg, 32);
	a->cache_used[a->cache_next] = true;
	a->cache_next = (a->cache_next + 1) % CACHE_SLOTS;
}

/* ------------------------------------------------------------------------ threads */

static void *login_thread(void *arg)
{
	struct gw_auth *a = arg;

	/* below the event loop: a flood of logins takes spare CPU, not the loop's (Linux
	 * applies a nice value to one thread when given its id) */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) < 0) {
		/* not permitted or not supported: logins then share the CPU evenly */
	}

	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->todo_head && !a->is_stopping)
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->is_stopping)
			break;
		struct auth_job *j = a->todo_head;
		a->todo_head = j->next;
		if (!a->todo_head)
			a->todo_tail = NULL;
		pthread_mutex_unlock(&a->mu);
		bool ok = gw_pw_verify(j->hash, (const char *)j->pw, j->pw_len);
		j->is_ok = ok && !j->is_dummy;
		OPENSSL_cleanse(j->pw, sizeof(j->pw));
		pthread_mutex_lock(&a->mu);
		j->next = a->done;
		a->done = j;
		uint64_t one = 1;
		if (write(a->efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow at this rate: nothing to do */
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

static void job_free(struct auth_job *j)
{
	OPENSSL_cleanse(j->pw, sizeof(j->pw));
	free(j->hash);
	free(j);
}

static void arm_event(struct gw_worker *w)
{
	struct gw_auth *a = w->auth;
	struct io_uring_sqe *sqe = gw_sqe(w);

	io_uring_prep_read(sqe, a->efd, &a->ev_buf, sizeof(a->ev_buf), 0);
	io_uring_sqe_set_data64(sqe, gw_ud(GW_OP_READ, a->ec));
	a->ec->inflight++;
}

/* Unknown users cost what the costliest configured hash costs. */
static uint32_t dummy_iterations(const struct gw_config *cfg)
{
	uint32_t iter = 0;

	for (size_t i = 0; i < cfg->n_users; i++) {
		uint32_t k = gw_pw_iterations(cfg->users[i].password_hash);
		if (k > iter)
			iter = k;
	}
	return iter ? iter : GW_PW_ITER_DEFAULT;
}

void gw_auth_reload(struct gw_worker *w)
{
	struct gw_auth *a = w->auth;
	uint8_t rnd[32];

	if (!a || gw_pw_iterations(a->dummy_hash) == dummy_iterations(w->cfg) ||
	    RAND_bytes(rnd, sizeof(rnd)) != 1)
		return;
	/* one slow hash, once per reload that changes the cost */
	char *h = gw_pw_hash_iter((const char *)rnd, sizeof(rnd), dummy_iterations(w->cfg));
	if (h) {
		free(a->dummy_hash);
		a->dummy_hash = h;
	}
}

int gw_auth_init(struct gw_worker *w)
{
	struct gw_auth *a = calloc(1, sizeof(*a));
	uint8_t rnd[32];

	if (!a)
		return -ENOMEM;
	w->auth = a;
	a->efd = -1;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	if (RAND_bytes(a->key, sizeof(a->key)) != 1 || RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	a->dummy_hash = gw_pw_hash_iter((const char *)rnd, sizeof(rnd), dummy_iterations(w->cfg));
	if (!a->dummy_hash)
		return -ENOMEM;
	/* threads even without auth: a reload may turn it on */
	a->efd = eventfd(0, EFD_CLOEXEC);
	if (a->efd < 0)
		return -errno;
	a->ec = gw_conn_alloc(w, GW_CONN_EVENT, -1);
	if (!a->ec)
		return -ENOMEM;
	snprintf(a->ec->peer, sizeof(a->ec->peer), "login-threads");
	a->n_threads = w->cfg->limits.login_threads ? w->cfg->limits.login_threads : 2;
	a->threads = calloc(a->n_threads, sizeof(*a->threads));
	if (!a->threads)
		return -ENOMEM;
	for (unsigned i = 0; i < a->n_threads; i++) {
		if (pthread_create(&a->threads[i], NULL, login_thread, a) != 0) {
			a->n_threads = i;
			return -EAGAIN;
		}
	}
	arm_event(w);
	pthread_mutex_lock(&throttle_mu);
	a->next_reg = auth_regs;
	auth_regs = a;
	pthread_mutex_unlock(&throttle_mu);
	return 0;
}

void gw_auth_free(struct gw_worker *w)
{
	struct gw_auth *a = w->auth;

	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	a->is_stopping = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	for (unsigned i = 0; i < a->n_threads; i++)
		pthread_join(a->threads[i], NULL);
	free(a->threads);
	for (struct auth_job *j = a->todo_head, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	for (struct auth_job *j = a->done, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	for (struct auth_job *j = a->held, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	pthread_mutex_lock(&throttle_mu);
	for (struct gw_auth **pp = &auth_regs; *pp; pp = &(*pp)->next_reg)
		if (*pp == a) {
			*pp = a->next_reg;
			break;
		}
	pthread_mutex_unlock(&throttle_mu);
	if (a->efd >= 0)
		close(a->efd);
	free(a->dummy_hash);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	OPENSSL_cleanse(a->key, sizeof(a->key));
	free(a);
	w->auth = NULL;
}

enum gw_auth_result gw_auth_start(struct gw_worker *w, struct gw_conn *c,
				  const struct qipc_hello *h)
{
	const struct gw_config *cfg = w->cfg;
	struct gw_auth *a = w->auth;

	if (!cfg->has_auth)
		return GW_AUTH_OK;
	const uint8_t *pw = h->user_len < h->cred_len ? h->cred + h->user_len + 1 : h->cred;
	size_t pw_len = h->user_len < h->cred_len ? h->cred_len - h->user_len - 1 : 0;
	if (pw_len > GW_PW_MAX_BYTES) {
		gw_info("conn=%llu peer=%s user=%s msg=\"authentication failed: password longer "
			"than %d bytes\"", (unsigned long long)c->id, c->peer, c->cl.user_log,
			GW_PW_MAX_BYTES);
		gw_auth_failed(w, c);
		return GW_AUTH_REFUSED;
	}
	if (a->n_pending >= MAX_PENDING) {
		if (w->now_ms >= a->next_full_log_ms) {
			a->next_full_log_ms = w->now_ms + 1000;
			gw_warn("msg=\"login queue full: refusing logins until it drains\" pending=%u",
				a->n_pending);
		}
		return GW_AUTH_REFUSED;
	}
	/* a name longer than any we store, or unknown, or without a password: a dummy check */
	const struct gw_user_cfg *u = h->user_len < sizeof(c->cl.user) ?
				      gw_cfg_user(cfg, c->cl.user) : NULL;
	bool is_dummy = !u || !u->password_hash;
	struct auth_job *j = calloc(1, sizeof(*j));
	if (!j)
		abort();
	j->idx = c->idx;
	j->gen = c->gen;
	j->is_dummy = is_dummy;
	j->hash = strdup(is_dummy ? a->dummy_hash : u->password_hash);
	if (!j->hash)
		abort();
	memcpy(j->pw, pw, pw_len);
	j->pw_len = pw_len;
	if (!is_dummy)
		cache_key(a, c->cl.user, u->password_hash, pw, pw_len, j->digest);
	/* throttled even with the right password: the limit would mean nothing otherwise */
	bool is_clear;
	if (!throttle_reserve(w, c, &j->window, &is_clear)) {
		w->login_throttled++;
		job_free(j);
		return GW_AUTH_REFUSED;
	}
	addr_key(c, j->addr);
	/* a remembered success is answered at once only when no guess in flight could have
	 * reached the limit first; else it is checked and answered like the others */
	if (!is_dummy && is_clear && cache_has(a, j->digest)) {
		throttle_done(w, j->addr, false, true);
		c->cl.ucfg = u;
		job_free(j);
		return GW_AUTH_OK;
	}
	a->n_pending++;
	pthread_mutex_lock(&a->mu);
	if (a->todo_tail)
		a->todo_tail->next = j;
	else
		a->todo_head = j;
	a->todo_tail = j;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return GW_AUTH_PENDING;
}

/* Give j's answer to its client (refused: no whatever the check said), and free j.
 * log_failures: log the address as refused. */
static void answer(struct gw_worker *w, struct auth_job *j, bool is_refused,
		   uint32_t log_failures)
{
	struct gw_auth *a = w->auth;
	struct gw_conn *c = j->idx < w->n_conns ? gw_conn_at(w, j->idx) : NULL;

	a->n_pending--;
	if (c && c->gen == j->gen && c->kind == GW_CONN_CLIENT && !c->is_closing &&
	    c->cl.is_verifying) {
		/* a reload may have changed the entry meanwhile: the check must be current */
		const struct gw_user_cfg *u = gw_cfg_user(w->cfg, c->cl.user);
		bool ok = j->is_ok && u && u->password_hash &&
			  strcmp(u->password_hash, j->hash) == 0;
		if (ok && !is_refused) {
			cache_add(a, j->digest);
			c->cl.ucfg = u;
		}
		if (log_failures)
			log_throttled(c->peer, log_failures, w->cfg->limits.login_failure_window_ms);
		if (is_refused)
			w->login_throttled++;
		gw_client_auth_done(w, c, ok && !is_refused);
	}
	job_free(j);
}

/* The answer held for j: given (true) or still held. A held one leaves the slot's count. */
static bool release_held(struct gw_worker *w, struct auth_job *j)
{
	uint32_t win = w->cfg->limits.login_failure_window_ms, log_failures = 0;

	pthread_mutex_lock(&throttle_mu);
	struct throttle_slot *s = throttle_find(j->addr, w->now_ms, win, false);
	enum verdict v = deliverable(w, s, j->window, j->is_ok, &log_failures);
	if (v != V_HOLD && s && s->held)
		s->held--;
	pthread_mutex_unlock(&throttle_mu);
	if (v == V_HOLD)
		return false;
	answer(w, j, v == V_REFUSE, log_failures);
	return true;
}

void gw_auth_on_event(struct gw_worker *w, struct gw_conn *ec, int res)
{
	struct gw_auth *a = w->auth;

	(void)ec;
	(void)res;
	pthread_mutex_lock(&a->mu);
	struct auth_job *done = a->done;
	a->done = NULL;
	pthread_mutex_unlock(&a->mu);
	while (done) {
		struct auth_job *j = done;
		done = j->next;
		uint32_t log_failures = 0;
		pthread_mutex_lock(&throttle_mu);
		struct throttle_slot *s = done_locked(w, j->addr, !j->is_ok, true);
		enum verdict v = deliverable(w, s, j->window, j->is_ok, &log_failures);
		if (v == V_HOLD)
			s->held++;
		pthread_mutex_unlock(&throttle_mu);
		if (v == V_HOLD) {
			j->next = a->held;
			a->held = j;
		} else {
			answer(w, j, v == V_REFUSE, log_failures);
		}
	}
	/* answers held here may be free now (this worker's checks or another's came in) */
	for (struct auth_job **pp = &a->held; *pp;) {
		struct auth_job *j = *pp;
		*pp = j->next;
		if (!release_held(w, j)) {
			j->next = *pp;
			*pp = j;
			pp = &j->next;
		}
	}
	arm_event(w);
}

const struct gw_conn_ops gw_auth_conn_ops = {
	.on_read = gw_auth_on_event,
};
