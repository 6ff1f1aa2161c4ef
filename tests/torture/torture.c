/*
 * torture — a seeded, randomized stress run against the real qgate binary (in CI the
 * ASan+UBSan build) with real mockq backends on loopback, judged by the one rule.
 *
 * Many clients, each a non-blocking state machine driven by one poll() loop, behave as q
 * clients do and as they should not: sync calls, pipelined bursts, async-then-sync, large
 * messages above the streaming threshold, slow readers, readers that never read, senders that
 * trickle a message in small pieces, clients that leave in the middle of a message (FIN or
 * RST) or of an answer, clients that reconnect. Backends misbehave on command (answer twice,
 * send what nobody asked for, call back into the client, die half-way through an answer,
 * refuse handshakes, stall, defer, publish) and a chaos actor SIGKILLs or SIGSTOPs them and
 * restarts them on the same port. An admin actor pauses pools, disables backends, kills
 * clients and reloads, over q and over HTTP.
 *
 * Every request carries a unique token "<tN>" and every outcome is judged by a model: the
 * client's own answer, or a q error starting "qgate: ", or (only where the model allows it) a
 * close of that client; never another client's token or bytes, never broken framing, never
 * silence past the request's bound (derived from the configured timeouts). The gateway must
 * stay up, end with status 0 on SIGTERM, leave nothing busy once every client is gone, and
 * print no AddressSanitizer / UBSan / LeakSanitizer report.
 *
 * Environment (docs/testing.md): TORTURE_SECONDS (total, default 60 = three fixed seeds of
 * 20 s), TORTURE_SEED (one seed, to replay), TORTURE_RANDOM=1 (fresh random seeds until the
 * time is up, TORTURE_RUN_SECONDS each, default 30), TORTURE_CLIENTS (default 40),
 * TORTURE_SKIP (comma-separated behaviours or request kinds to leave out, or "admin", to look
 * past a known failure), TORTURE_SLACK_MS (added to every bound, default 6000), TORTURE_REPORTS
 * (violations printed in full per seed, default 12; all are counted).
 *
 * Replaying a seed gives the same traffic mix, faults and per-client decisions; the exact
 * interleaving depends on timing, so a failure usually, not always, comes back.
 */
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/t_crit.h"

/* ------------------------------------------------------------------ configuration */

#define N_BE 4
#define MAX_CLIENTS 128
#define DEF_CLIENTS 40
#define FIXED_SEEDS { 1001, 2002, 3003 }
#define N_FIXED 3
#define DEF_TOTAL_S 60
#define DEF_RANDOM_RUN_S 30

/* The gateway's settings; the model's bounds are derived from them. */
#define STREAM_THRESHOLD (64 * 1024)	/* low, so that streaming happens often */
#define CLIENT_BUFFER (1024 * 1024)
#define QUEUE_TO_MS 2000
#define QUERY_TO_MS 2000
#define SLEEP_TO_MS 1000		/* rule: text queries starting .mock.sleep */
#define DEFER_TO_MS 3000		/* rule: .mock.defer, dedicated */
#define DRAIN_TO_MS 5000
#define STALL_MAX_MS 2000		/* the longest a backend is SIGSTOPped */
#define HANDSHAKE_BOUND_MS 5000
#define SESSION_HANDSHAKE_BOUND_MS 10000
#define SEND_STALL_MS 20000		/* a reading client whose bytes the gateway leaves */
#define SESSION_RACE_MS 500		/* a request this fresh may cross its session's death */
#define DEF_SLACK_MS 6000		/* ASan, two cores, a dozen processes: generous */

/* The admin actor (issue #10 item 6): pauses and disables are short, so they only delay. */
#define ADMIN_CRED "ops:ops-pw"		/* an admin user */
#define STATS_TOKEN "torture-stats-token"
#define ADMIN_BOUND_MS 5000		/* an admin call's answer (+ slack) */
#define PAUSE_MAX_MS 400		/* well under QUEUE_TO_MS */
#define DISABLE_MAX_MS 1500
#define DISABLE_LAST_MAX_MS 200		/* the last enabled backend of a pool: briefly */

#define SKIP_ADMIN (1ULL << 63)		/* TORTURE_SKIP=admin: no admin actor */

#define MAX_MSG (64u << 20)		/* larger than anything the model asks for */
#define CUT_MIN 16384			/* answers at least this long may be cut by a death */
#define HIST 14
#define DEF_REPORTS 12			/* violations printed in full per seed */

/* ------------------------------------------------------------------ the model's vocabulary */

enum lsn { L_Q, L_QI, L_S, N_LSN };
static const char *const lsn_names[N_LSN] = { "query", "idempotent", "session" };
static const int lsn_weight[N_LSN] = { 55, 25, 20 };

enum beh {
	B_SYNC, B_BURST, B_ASYNC_SYNC, B_LARGE, B_SLOW_READER, B_NEVER_READER, B_SLOW_SENDER,
	B_ABORT_UP, B_ABORT_DOWN, B_RECONNECT, N_BEH
};
static const char *const beh_names[N_BEH] = {
	"sync", "burst", "async_sync", "large", "slow_reader", "never_reader", "slow_sender",
	"abort_up", "abort_down", "reconnect",
};
static const int beh_weight[N_BEH] = { 22, 14, 10, 10, 6, 3, 7, 7, 7, 14 };

enum kind {
	K_ECHO, K_TEXT, K_ERROR, K_BIG_DOWN, K_BIG_ECHO, K_TWICE, K_UNSOL, K_PUSHSYNC, K_PARTDIE,
	K_REFUSE, K_SLEEP, K_DEFER, K_PUB, K_DROP, K_GETVAR, K_ASYNC, N_KIND
};
static const char *const kind_names[N_KIND] = {
	"echo", "text", "error", "big_down", "big_echo", "twice", "unsolicited", "pushsync",
	"partdie", "refuse", "sleep", "defer", "pub", "drop", "getvar", "async",
};
/* the mix of an ordinary sync request; getvar and async come from async_sync clients */
static const int kind_weight[N_KIND] = { 40, 8, 4, 4, 3, 4, 3, 4, 2, 2, 4, 5, 3, 3, 0, 0 };
/* disruptive kinds are spread out in time (ms between two, on average), else they would
 * turn the run into nothing but reconnects */
static const int kind_gap_ms[N_KIND] = {
	[K_TWICE] = 120, [K_UNSOL] = 120, [K_PUSHSYNC] = 80, [K_PARTDIE] = 4000,
	[K_REFUSE] = 2500, [K_SLEEP] = 200, [K_DROP] = 300,
};

enum outcome {
	O_PENDING, O_OWN, O_OWN_ERROR, O_STALE, O_QGATE_ERROR, O_CUT, O_ABANDONED, O_LOST,
	O_VIOLATION, N_OUT
};
static const char *const out_names[N_OUT] = {
	"pending", "own answer", "own error", "stale read", "qgate error", "cut by a close",
	"abandoned by its client", "client closed by gateway", "violation",
};

struct req {
	int client;
	uint32_t conn_no;
	uint8_t kind, lsn, outcome;
	bool is_sync;
	bool is_after_async;	/* behind its client's async (pinned): may wait for a drain */
	char variant;		/* getvar: 'a' read after set, 'b' read before set */
	uint32_t ref;		/* getvar: the async set it compares with */
	int var;		/* getvar / async set: the variable's number */
	int64_t param;		/* sleep / defer ms */
	uint64_t answer_len;	/* expected answer message bytes */
	int64_t sent_ms;	/* last byte written; 0 until then */
};

enum cstate { CS_WAIT, CS_CONNECTING, CS_HELLO, CS_OPEN };

struct client {
	int idx;
	uint64_t rng;
	int fd;
	enum cstate st;
	int64_t st_since, wake_ms;
	int lsn, beh;
	uint32_t conn_no;
	int actions_left;
	/* bytes for the gateway; absolute counters so marks survive compaction */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	uint64_t out_total, out_done;
	int64_t out_progress_ms;
	struct mark { uint64_t end; uint32_t req; } *marks;
	size_t n_marks, marks_head, marks_cap;
	int trickle_max, trickle_gap_ms;
	int64_t trickle_next_ms;
	/* bytes from the gateway */
	uint8_t *in;
	size_t in_len, in_off, in_cap;
	uint64_t rx_total;
	int read_rate;		/* bytes/s, 0: as fast as it comes */
	int64_t budget, budget_ms;
	bool is_never_read;
	size_t big_max;		/* the largest answer its large requests ask for */
	/* planned endings */
	int64_t close_at_ms;
	bool is_close_rst;
	bool is_close_after_flush;
	uint64_t close_after_rx;	/* > 0: leave once this many bytes arrived */
	/* the model */
	uint32_t *pend;
	size_t n_pend, pend_head, pend_cap;
	bool has_session_error;	/* a session client got a qgate error: a close may follow */
	int lport;		/* its connection's local port (the peer the gateway lists) */
	uint32_t kill_conn;	/* an admin asked to kill this connection (its conn_no) */
	char hist[HIST][112];
	int n_hist;
};

struct backend {
	char name[8];
	int port;
	pid_t pid;		/* 0 while down */
	bool is_killed;		/* we sent SIGKILL: its exit is expected */
	bool is_stopped;
	int64_t restart_at, cont_at;
	char err_path[300];
	int kills, stops, self_exits, restarts, start_failures, crashes;
};

static struct run {
	uint64_t seed;
	int workers;			/* from the seed (write_config) */
	int affinity;			/* the query pools': none, client, user */
	int max_inflight[N_BE];
	bool be_unix[N_BE];		/* reached over q's unix socket (unix:PORT), not TCP */
	int seconds;
	int slack_ms;
	int max_reports;
	int n_clients;
	uint64_t skip_beh, skip_kind;
	int64_t t0, end_ms, quiesce_until;
	bool is_quiesce;
	int ports[N_LSN], stats_port;
	struct t_proc *gate;
	struct backend be[N_BE];
	char be_link[300];
	uint64_t chaos_rng;
	int64_t next_chaos;
	struct req *reqs;
	uint32_t n_reqs, cap_reqs;
	struct client *cl;
	int64_t next_ok[N_KIND];
	/* what happened */
	long out_count[N_OUT], kind_count[N_KIND], async_sent, beh_conns[N_BEH], lsn_conns[N_LSN];
	long closes_fin, closes_rst, aborted_uploads, session_refused, pushes, callbacks;
	long cuts_allowed, gw_closes_allowed;
	struct { char text[80]; long n; } errs[24];
	int n_errs;
	long violations;
	struct { const char *what; long n; } classes[16];
	int n_classes;
	char first_violation[600];
	bool is_gateway_dead;
	char chaos_log[8][64];	/* the last chaos events, shown with each violation */
	int n_chaos_log;
	long session_races;
	double quiet_s, rest_s;
	struct admin {
		uint64_t rng;
		int gap_ms;		/* mean time between two actions (from the seed) */
		int64_t next_ms;
		int64_t pause_until[2];	/* q, qi; 0: running */
		int64_t disable_until[6];	/* adm_targets; 0: enabled */
		/* the one call in flight */
		bool is_busy, is_http;
		int act, target;
		int64_t kill_id;
		int qfd, qst;		/* the admin's q connection, kept between calls */
		int hfd;		/* an HTTP call's connection */
		uint8_t *out, *in;
		size_t out_len, out_off, in_len, in_cap;
		int64_t started_ms;
		long n[8][2];		/* answered as asked, per action and channel (q, http) */
		long kill_gone;		/* kills of a client that had left already */
		long kill_none;		/* no client of ours in the list */
		long kill_closes;	/* clients closed by a kill */
	} adm;
} R;

/* ------------------------------------------------------------------ small helpers */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* uniform in [lo, hi] */
static int64_t rnd_range(uint64_t *s, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(splitmix(s) % (uint64_t)(hi - lo + 1));
}

static bool chance(uint64_t *s, int percent)
{
	return (int)(splitmix(s) % 100) < percent;
}

/* A weighted pick among n items, skipping those in the skip mask (returns -1 if none). */
static int pick(uint64_t *s, const int *weight, int n, uint64_t skip)
{
	int total = 0, r;

	for (int i = 0; i < n; i++)
		if (!(skip & (1ULL << i)))
			total += weight[i];
	if (total <= 0)
		return -1;
	r = (int)(splitmix(s) % (uint64_t)total);
	for (int i = 0; i < n; i++) {
		if (skip & (1ULL << i))
			continue;
		if (r < weight[i])
			return i;
		r -= weight[i];
	}
	return -1;
}

static int64_t now_ms(void)
{
	return t_now_ms();
}

static double tsec(void)
{
	return (double)(now_ms() - R.t0) / 1000.0;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	cr_assert(q != NULL, "out of memory (%zu bytes)", n);
	return q;
}

/* Grow buf so that it holds need bytes. */
static void reserve(uint8_t **buf, size_t *cap, size_t need)
{
	size_t nc = *cap ? *cap : 65536;

	if (need <= *cap)
		return;
	while (nc < need)
		nc *= 2;
	*buf = xrealloc(*buf, nc);
	*cap = nc;
}

__attribute__((format(printf, 2, 3)))
static void hist_add(struct client *c, const char *fmt, ...)
{
	char *h = c->hist[c->n_hist++ % HIST];
	int n = snprintf(h, sizeof(c->hist[0]), "%8.3fs ", tsec());
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h + n, sizeof(c->hist[0]) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void tok_of(uint32_t id, char *buf, size_t n)
{
	snprintf(buf, n, "<t%" PRIu32 ">", id);
}

/* "<t12> echo (client 3 connection 2, query)" for reports. */
static const char *req_desc(uint32_t id)
{
	static __thread char ring[4][160];
	static __thread int k;
	char *b = ring[k++ % 4];
	const struct req *r = id && id < R.n_reqs ? &R.reqs[id] : NULL;

	if (!r)
		snprintf(b, sizeof(ring[0]), "<t%" PRIu32 "> (no such request)", id);
	else
		snprintf(b, sizeof(ring[0]), "<t%" PRIu32 "> %s%s (client %d connection %u, %s)",
			 id, kind_names[r->kind], r->is_sync ? "" : " async", r->client,
			 r->conn_no, lsn_names[r->lsn]);
	return b;
}

static bool gateway_alive(void);

__attribute__((format(printf, 3, 4)))
static void violation(struct client *c, const char *what, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* a dead gateway fails every client: the crash is the one thing to report */
	if (c && !gateway_alive())
		return;
	R.violations++;
	for (int k = 0; k <= R.n_classes && k < 16; k++) {
		if (k == R.n_classes) {
			R.classes[R.n_classes++].what = what;
		} else if (strcmp(R.classes[k].what, what)) {
			continue;
		}
		R.classes[k].n++;
		break;
	}
	if (!R.first_violation[0])
		snprintf(R.first_violation, sizeof(R.first_violation), "%s: %.500s", what, msg);
	if (R.violations > R.max_reports)
		return;
	printf("\nTORTURE VIOLATION seed=%" PRIu64 " t=%.3fs %s: %s\n", R.seed, tsec(), what,
	       msg);
	if (R.n_chaos_log) {
		int from = R.n_chaos_log > 4 ? R.n_chaos_log - 4 : 0;

		printf("  last backend events:");
		for (int k = from; k < R.n_chaos_log; k++)
			printf("%s %s", k > from ? ";" : "", R.chaos_log[k % 8]);
		printf("\n");
	}
	if (c) {
		printf("  client %d: connection %u, %s listener, behaviour %s; its last events:\n",
		       c->idx, c->conn_no, lsn_names[c->lsn], beh_names[c->beh]);
		for (int k = c->n_hist > HIST ? c->n_hist - HIST : 0; k < c->n_hist; k++)
			printf("    %s\n", c->hist[k % HIST]);
	}
	fflush(stdout);
}

/* "qgate: backend b1 lost" -> "qgate: backend * lost", to count errors by kind. */
static void count_error_text(const char *text)
{
	char norm[80];
	size_t k = 0;

	for (const char *p = text; *p && k + 2 < sizeof(norm);) {
		bool is_name = (p == text || p[-1] == ' ') && *p == 'b' && p[1] >= '0' &&
			       p[1] <= '9';

		if (is_name) {
			norm[k++] = '*';
			for (p++; *p >= '0' && *p <= '9'; p++)
				;
			continue;
		}
		norm[k++] = *p++;
	}
	norm[k] = 0;
	for (int i = 0; i < R.n_errs; i++)
		if (!strcmp(R.errs[i].text, norm)) {
			R.errs[i].n++;
			return;
		}
	if (R.n_errs < (int)(sizeof(R.errs) / sizeof(R.errs[0]))) {
		snprintf(R.errs[R.n_errs].text, sizeof(R.errs[0].text), "%s", norm);
		R.errs[R.n_errs++].n = 1;
	}
}

/* ------------------------------------------------------------------ requests */

static uint32_t req_new(struct client *c, int kind, bool is_sync)
{
	struct req *r;

	if (R.n_reqs == R.cap_reqs) {
		R.cap_reqs = R.cap_reqs ? R.cap_reqs * 2 : 65536;
		R.reqs = xrealloc(R.reqs, R.cap_reqs * sizeof(*R.reqs));
	}
	r = &R.reqs[R.n_reqs];
	memset(r, 0, sizeof(*r));
	r->client = c->idx;
	r->conn_no = c->conn_no;
	r->kind = (uint8_t)kind;
	r->lsn = (uint8_t)c->lsn;
	r->is_sync = is_sync;
	r->outcome = O_PENDING;
	r->answer_len = 64;
	R.kind_count[kind]++;
	if (!is_sync)
		R.async_sent++;
	return R.n_reqs++;
}

static void set_outcome(uint32_t id, int o)
{
	struct req *r = &R.reqs[id];

	if (r->outcome != O_PENDING)
		return;
	r->outcome = (uint8_t)o;
	R.out_count[o]++;
	if (r->client >= 0 && r->client < R.n_clients && o != O_ABANDONED && o != O_QGATE_ERROR)
		hist_add(&R.cl[r->client], "<t%" PRIu32 ">: %s", id, out_names[o]);
}

/*
 * The longest the gateway may take, by its configuration, to give request r an outcome once
 * its last byte is sent, plus the slack. A query pool: the queue wait, then the request's
 * timeout (a rule's or the pool's); behind an async of the same client also the drain of an
 * abandoned answer on the pinned connection. An idempotent pool may run it three times. A
 * session has no timeouts: what the backend takes (a stall, a sleep, a deferral).
 */
static int64_t bound_ms(const struct req *r)
{
	int64_t to = r->kind == K_SLEEP ? SLEEP_TO_MS : r->kind == K_DEFER ? DEFER_TO_MS :
		     QUERY_TO_MS;
	int64_t b;

	switch (r->lsn) {
	case L_Q:
		b = QUEUE_TO_MS + to;
		break;
	case L_QI:
		b = 3 * (QUEUE_TO_MS + to);
		break;
	default:
		b = STALL_MAX_MS + 1000 + (r->kind == K_SLEEP || r->kind == K_DEFER ? r->param : 0);
		break;
	}
	if (r->is_after_async)
		b += DRAIN_TO_MS;
	return b + R.slack_ms;
}

/* ------------------------------------------------------------------ backends and chaos */

static int spawn_backend(struct backend *b)
{
	char port_s[16];
	/* --unix: also q's abstract socket, which the seed may have the gateway use */
	char *argv[] = { R.be_link, "--port", port_s, "--name", b->name, "--unix", NULL };
	pid_t pid, parent = getpid();
	int fd;

	snprintf(port_s, sizeof(port_s), "%d", b->port);
	fd = open(b->err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	dprintf(fd, "---- torture: start %s on port %d at %.3fs\n", b->name, b->port, tsec());
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(fd);
		return -errno;
	}
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDWR);

		/* only async-signal-safe calls between fork and exec */
		if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(125);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd);
	b->pid = pid;
	b->is_killed = false;
	b->is_stopped = false;
	return 0;
}

__attribute__((format(printf, 1, 2)))
static void chaos_note(const char *fmt, ...)
{
	char *e = R.chaos_log[R.n_chaos_log++ % 8];
	int n = snprintf(e, sizeof(R.chaos_log[0]), "%.3fs ", tsec());
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e + n, sizeof(R.chaos_log[0]) - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Reap a backend that ended; classify why. */
static void reap_backends(int64_t now)
{
	for (int k = 0; k < N_BE; k++) {
		struct backend *b = &R.be[k];
		int status = 0;

		if (!b->pid || waitpid(b->pid, &status, WNOHANG) != b->pid)
			continue;
		b->pid = 0;
		b->is_stopped = false;
		if (b->is_killed) {
			/* ours */
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
			b->self_exits++;	/* .mock.partdie */
			chaos_note("%s exited on .mock.partdie", b->name);
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
			b->start_failures++;	/* the port was not free yet: try again */
		} else {
			b->crashes++;
			violation(NULL, "BACKEND CRASH", "mockq %s ended with wait status %d "
				  "(not killed by the test, not .mock.partdie); see %s", b->name,
				  status, b->err_path);
		}
		b->restart_at = now + rnd_range(&R.chaos_rng, 20, 800);
	}
}

/* One step of the chaos actor: kill or stop a backend now and then, bring it back later. */
static void chaos_tick(int64_t now)
{
	reap_backends(now);
	for (int k = 0; k < N_BE; k++) {
		struct backend *b = &R.be[k];

		if (b->pid && b->is_stopped && (now >= b->cont_at || R.is_quiesce)) {
			kill(b->pid, SIGCONT);
			chaos_note("%s SIGCONTinued", b->name);
			b->is_stopped = false;
		}
		if (!b->pid && (now >= b->restart_at || R.is_quiesce)) {
			if (spawn_backend(b) == 0) {
				b->restarts++;
				chaos_note("%s restarted", b->name);
			}
			else
				b->restart_at = now + 100;
		}
	}
	if (R.is_quiesce || now < R.next_chaos)
		return;
	R.next_chaos = now + rnd_range(&R.chaos_rng, 1000, 3500);
	{
		struct backend *b = &R.be[rnd_range(&R.chaos_rng, 0, N_BE - 1)];

		if (!b->pid || b->is_stopped)
			return;
		if (chance(&R.chaos_rng, 80)) {
			b->is_killed = true;
			kill(b->pid, SIGKILL);
			b->kills++;
			chaos_note("%s SIGKILLed", b->name);
			/* SIGKILL cannot be ignored: the wait is short */
			if (waitpid(b->pid, NULL, 0) == b->pid)
				b->pid = 0;
			b->restart_at = now + rnd_range(&R.chaos_rng, 50, 1500);
		} else {
			kill(b->pid, SIGSTOP);
			b->is_stopped = true;
			b->stops++;
			chaos_note("%s SIGSTOPped", b->name);
			b->cont_at = now + rnd_range(&R.chaos_rng, 300, STALL_MAX_MS);
		}
	}
}

static void stop_backends(void)
{
	for (int k = 0; k < N_BE; k++) {
		struct backend *b = &R.be[k];
		int64_t deadline = now_ms() + 3000;

		if (!b->pid)
			continue;
		kill(b->pid, SIGCONT);
		kill(b->pid, SIGTERM);
		/* bounded: 3 s, then SIGKILL */
		while (waitpid(b->pid, NULL, WNOHANG) != b->pid) {
			if (now_ms() >= deadline) {
				kill(b->pid, SIGKILL);
				waitpid(b->pid, NULL, 0);
				break;
			}
			poll(NULL, 0, 5);
		}
		b->pid = 0;
	}
}

/* ------------------------------------------------------------------ the gateway */

/*
 * The gateway's configuration. From the seed: 1 or 2 workers, the query pools' affinity
 * (none, client, user), and each backend's max_inflight ("auto" or 1..3), so requests also wait for
 * slots another worker holds. A backend
 * named in two pools (b1, b3) has one limit (one q process).
 */
static const char *write_config(uint64_t *s)
{
	/*
	 * Logins are checked (the admin user needs it). The hashes have the fewest iterations
	 * qgate takes (1000, a fixed salt; made with Python's hashlib.pbkdf2_hmac): at the
	 * default cost, 40 logins at once on a loaded machine under ASan outran the handshake
	 * timeout, and this test is about the gateway, not about PBKDF2.
	 */
	static const char pw_hash[] = "$qgate$pbkdf2-sha256$1000$dG9ydHVyZS1zYWx0LXB3IQ==$"
				      "anj8JTqd/ALgn71WKCVUSora2dN75MhfvawO2IIjrgA=";	/* pw */
	static const char ops_hash[] = "$qgate$pbkdf2-sha256$1000$dG9ydHVyZS1zYWx0LW9wcw==$"
				       "DTutSqwJOvF+Ny85xArxh1t2ouJp6e5noyplTYxCTgk=";	/* ops-pw */
	char *text = NULL;
	const char *pool_common =
		"\"queue\":{\"max\":5000,\"timeout_ms\":2000},\"query_timeout_ms\":2000,"
		"\"reconnect\":{\"delay_ms\":20,\"max_delay_ms\":300,\"jitter\":0.2,"
		"\"connect_timeout_ms\":1000},\"health\":{\"interval_ms\":500,\"timeout_ms\":1000},"
		"\"dedicated\":{\"max\":64}";
	const char *path;
	int p[N_BE];
	static const char *const aff[] = { "none", "client", "user" };
	char lim[N_BE][16];	/* 0: "auto" */
	char addr[N_BE][32];

	for (int k = 0; k < N_BE; k++) {
		p[k] = R.be[k].port;
		R.max_inflight[k] = (int)rnd_range(s, 0, 3);
		if (R.max_inflight[k])
			snprintf(lim[k], sizeof(lim[k]), "%d", R.max_inflight[k]);
		else
			snprintf(lim[k], sizeof(lim[k]), "\"auto\"");
	}
	R.workers = (int)rnd_range(s, 1, 2);
	R.affinity = (int)rnd_range(s, 0, 2);
	/* auto backends' spare connections open under load and close when unused: short
	 * lives make them come and go during a run (opens and closes racing kills and reloads) */
	int spare_idle_ms = (int)rnd_range(s, 50, 3000);
	/* each backend over TCP or over q's unix socket, the same in every pool naming it
	 * (the max_inflight count is per address) */
	for (int k = 0; k < N_BE; k++) {
		R.be_unix[k] = rnd_range(s, 0, 1);
		snprintf(addr[k], sizeof(addr[k]), R.be_unix[k] ? "unix:%d" : "127.0.0.1:%d",
			 p[k]);
	}
	/* query: b0 b1; idempotent: b2 b3; session: b1 b3 (sharing processes with the others) */
	cr_assert(asprintf(&text,
		"{\"workers\":%d,\"listeners\":["
		"{\"name\":\"query\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"q\"},"
		"{\"name\":\"idempotent\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"qi\"},"
		"{\"name\":\"session\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"s\"}],"
		"\"pools\":["
		"{\"name\":\"q\",\"affinity\":\"%s\",\"backends\":["
		"{\"name\":\"b0\",\"address\":\"%s\",\"connections\":3,"
		"\"max_inflight\":%s},"
		"{\"name\":\"b1\",\"address\":\"%s\",\"connections\":3,"
		"\"max_inflight\":%s}],%s},"
		"{\"name\":\"qi\",\"idempotent\":true,\"affinity\":\"%s\",\"backends\":["
		"{\"name\":\"b2\",\"address\":\"%s\",\"connections\":2,"
		"\"max_inflight\":%s},"
		"{\"name\":\"b3\",\"address\":\"%s\",\"connections\":2,"
		"\"max_inflight\":%s}],%s},"
		"{\"name\":\"s\",\"mode\":\"session\",\"backends\":["
		"{\"name\":\"b1\",\"address\":\"%s\",\"max_inflight\":%s},"
		"{\"name\":\"b3\",\"address\":\"%s\",\"max_inflight\":%s}],"
		"\"reconnect\":{\"delay_ms\":20,\"max_delay_ms\":300,"
		"\"connect_timeout_ms\":1000}}],"
		"\"rules\":[{\"prefix\":\".mock.sleep\",\"timeout_ms\":%d},"
		"{\"function\":\".mock.defer\",\"dedicated\":true,\"timeout_ms\":%d}],"
		"\"auth\":{\"users\":[{\"name\":\"torture\",\"password_hash\":\"%s\"},"
		"{\"name\":\"probe\",\"password_hash\":\"%s\"},"
		"{\"name\":\"ops\",\"password_hash\":\"%s\",\"admin\":true}]},"
		"\"stats\":{\"listen\":\"127.0.0.1:%d\",\"token\":\"" STATS_TOKEN "\"},"
		"\"limits\":{\"stream_threshold_bytes\":%d,\"client_buffer_bytes\":%d,"
		"\"shutdown_grace_ms\":2000,\"drain_timeout_ms\":%d,\"handshake_timeout_ms\":3000,"
		"\"spare_idle_ms\":%d},"
		"\"log\":{\"level\":\"info\"}}",
		R.workers, R.ports[L_Q], R.ports[L_QI], R.ports[L_S], aff[R.affinity], addr[0],
		lim[0], addr[1], lim[1], pool_common, aff[R.affinity], addr[2],
		lim[2], addr[3], lim[3],
		pool_common, addr[1], lim[1], addr[3], lim[3], SLEEP_TO_MS,
		DEFER_TO_MS, pw_hash, pw_hash, ops_hash, R.stats_port, STREAM_THRESHOLD,
		CLIENT_BUFFER, DRAIN_TO_MS, spare_idle_ms) > 0);
	cr_assert(t_json_check(text) == 0, "the test's config is not JSON: %s", t_errmsg());
	path = t_write_file("torture.json", text);
	free(text);
	return path;
}

/* A sanitizer report in a log file: its first lines, or NULL. */
static char *sanitizer_report(const char *path)
{
	static const char *const marks[] = {
		"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
		"SUMMARY: UndefinedBehaviorSanitizer",
	};
	char *text = t_read_file(path), *hit = NULL, *out;

	if (!text)
		return NULL;
	for (int k = 0; k < 4; k++) {
		char *h = strstr(text, marks[k]);

		if (h && (!hit || h < hit))
			hit = h;
	}
	if (!hit) {
		free(text);
		return NULL;
	}
	/* from the start of its line to the shadow-byte map (which says nothing to a reader) */
	while (hit > text && hit[-1] != '\n')
		hit--;
	out = strndup(hit, 5000);
	free(text);
	if (out && strstr(out, "Shadow bytes around"))
		*strstr(out, "Shadow bytes around") = 0;
	return out;
}

static bool gateway_alive(void)
{
	if (R.is_gateway_dead)
		return false;
	if (t_proc_alive(R.gate))
		return true;
	R.is_gateway_dead = true;
	{
		char *rep = sanitizer_report(R.gate->err_path);

		const char *sum = rep ? strstr(rep, "SUMMARY: ") : NULL;
		char first[200] = "";

		if (sum)
			snprintf(first, sizeof(first), "%.*s", (int)strcspn(sum, "\n"), sum);
		violation(NULL, "CRASH", "the gateway died (wait status %d%s%s)%s%s; %s",
			  R.gate->status, WIFSIGNALED(R.gate->status) ? ", signal " : "",
			  WIFSIGNALED(R.gate->status) ? strsignal(WTERMSIG(R.gate->status)) : "",
			  first[0] ? ": " : "", first,
			  rep ? "its sanitizer report:" : "stderr tail:");
		if (R.violations <= R.max_reports)
			printf("%s\n", rep ? rep : t_tail(R.gate->err_path, 2500));
		free(rep);
	}
	return false;
}

/* ------------------------------------------------------------------ client output */

static size_t out_pending(const struct client *c)
{
	return c->out_len - c->out_off;
}

static void out_append(struct client *c, const uint8_t *p, size_t n)
{
	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_off > (1u << 20)) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (!out_pending(c))
		c->out_progress_ms = now_ms();
	reserve(&c->out, &c->out_cap, c->out_len + n);
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	c->out_total += n;
}

static void pend_push(struct client *c, uint32_t id)
{
	if (c->pend_head && c->pend_head == c->n_pend)
		c->pend_head = c->n_pend = 0;
	if (c->n_pend == c->pend_cap) {
		c->pend_cap = c->pend_cap ? c->pend_cap * 2 : 32;
		c->pend = xrealloc(c->pend, c->pend_cap * sizeof(*c->pend));
	}
	c->pend[c->n_pend++] = id;
}

static size_t pend_count(const struct client *c)
{
	return c->n_pend - c->pend_head;
}

static uint32_t pend_head(const struct client *c)
{
	return pend_count(c) ? c->pend[c->pend_head] : 0;
}

static void mark_push(struct client *c, uint32_t id)
{
	if (c->marks_head && c->marks_head == c->n_marks)
		c->marks_head = c->n_marks = 0;
	if (c->n_marks == c->marks_cap) {
		c->marks_cap = c->marks_cap ? c->marks_cap * 2 : 32;
		c->marks = xrealloc(c->marks, c->marks_cap * sizeof(*c->marks));
	}
	c->marks[c->n_marks++] = (struct mark){ .end = c->out_total, .req = id };
}

/*
 * Encode o (taken) as a message of type and queue it for request id. cut > 0 queues only
 * the first cut bytes (a client about to leave mid-message). Sync requests join the model's
 * outstanding list; every request is stamped sent when its last byte is written.
 */
static void queue_msg(struct client *c, struct t_obj *o, int type, uint32_t id, size_t cut)
{
	uint8_t *m = NULL;
	size_t n = 0;
	char tok[24];

	cr_assert(o != NULL, "out of memory building a request");
	cr_assert(t_encode_msg(o, type, &m, &n) == 0, "cannot encode %s", t_show(o));
	t_free(o);
	tok_of(id, tok, sizeof(tok));
	if (cut && cut < n) {
		out_append(c, m, cut);
		hist_add(c, "sent %zu of %zu bytes of %s, leaving", cut, n, req_desc(id));
		free(m);
		return;
	}
	out_append(c, m, n);
	free(m);
	mark_push(c, id);
	if (type == T_SYNC)
		pend_push(c, id);
	hist_add(c, "queued %s (%zu bytes)", req_desc(id), n);
}

/* Write what the socket takes (a trickle when sending slowly). <0: the gateway is gone. */
static int client_flush(struct client *c, int64_t now)
{
	/* bounded: 64 writes per call, the rest on the next poll round */
	for (int k = 0; k < 64 && out_pending(c); k++) {
		size_t n = out_pending(c);
		ssize_t w;

		if (c->trickle_max) {
			if (now < c->trickle_next_ms)
				break;
			if (n > (size_t)c->trickle_max)
				n = (size_t)c->trickle_max;
		}
		w = send(c->fd, c->out + c->out_off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		c->out_off += (size_t)w;
		c->out_done += (size_t)w;
		c->out_progress_ms = now;
		/* the clock, not the loop's now: a loop turn over large messages takes a while */
		while (c->marks_head < c->n_marks && c->marks[c->marks_head].end <= c->out_done) {
			R.reqs[c->marks[c->marks_head].req].sent_ms = now_ms();
			c->marks_head++;
		}
		if (c->trickle_max) {
			c->trickle_next_ms = now + c->trickle_gap_ms;
			break;
		}
	}
	if (!out_pending(c)) {
		c->out_off = c->out_len = 0;
		c->trickle_max = 0;
	}
	return 0;
}

/* ------------------------------------------------------------------ client lifecycle */

static void client_reset(struct client *c, int64_t now, int64_t delay_ms)
{
	/* whatever it still waited for has no outcome now: its client left */
	for (size_t k = c->pend_head; k < c->n_pend; k++)
		set_outcome(c->pend[k], O_ABANDONED);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->st = CS_WAIT;
	c->wake_ms = now + delay_ms;
	c->out_off = c->out_len = 0;
	c->out_done = c->out_total;	/* what was not sent never will be */
	c->n_marks = c->marks_head = 0;
	c->in_off = c->in_len = 0;
	c->n_pend = c->pend_head = 0;
	c->trickle_max = 0;
	c->close_at_ms = 0;
	c->is_close_after_flush = false;
	c->close_after_rx = 0;
	c->is_never_read = false;
	c->read_rate = 0;
	c->has_session_error = false;
}

/* The client leaves on its own: FIN, or RST (SO_LINGER 0). */
static void client_leave(struct client *c, bool is_rst, const char *why)
{
	int64_t now = now_ms();

	if (c->fd >= 0 && is_rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	if (is_rst)
		R.closes_rst++;
	else
		R.closes_fin++;
	hist_add(c, "leaves with %s (%s), %zu requests outstanding", is_rst ? "RST" : "FIN", why,
		 pend_count(c));
	client_reset(c, now, rnd_range(&c->rng, 0, 150));
}

/* A violation on this client: its stream cannot be trusted any more, start over. */
static void client_abort(struct client *c)
{
	uint32_t h = pend_head(c);

	if (h)
		set_outcome(h, O_VIOLATION);
	client_leave(c, true, "after a violation");
}

static void client_start(struct client *c, int64_t now)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int one = 1, fd, b;

	c->lsn = pick(&c->rng, lsn_weight, N_LSN, 0);
	b = pick(&c->rng, beh_weight, N_BEH, R.skip_beh);
	c->beh = b < 0 ? B_SYNC : b;
	c->conn_no++;
	R.beh_conns[c->beh]++;
	R.lsn_conns[c->lsn]++;
	c->actions_left = c->beh == B_RECONNECT ? (int)rnd_range(&c->rng, 1, 3) :
			  c->beh == B_NEVER_READER || c->beh == B_ABORT_UP ||
			  c->beh == B_ABORT_DOWN ? 1 : (int)rnd_range(&c->rng, 5, 80);
	if (c->beh == B_SLOW_READER)
		c->read_rate = (int)rnd_range(&c->rng, 256 << 10, 1 << 20);
	/* answers of several MiB, above client_buffer_bytes, are where flow control can jam */
	c->big_max = c->beh == B_NEVER_READER ? 8 << 20 : c->beh == B_LARGE ? 6 << 20 :
		     c->beh == B_SLOW_READER ? 2 << 20 : 4 << 20;
	c->budget = 0;
	c->budget_ms = now;
	c->is_never_read = c->beh == B_NEVER_READER;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0, "socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sa.sin_port = htons((uint16_t)R.ports[c->lsn]);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = fd;
	c->st = CS_CONNECTING;
	c->st_since = now;
	hist_add(c, "connection %u: %s listener, behaviour %s", c->conn_no, lsn_names[c->lsn],
		 beh_names[c->beh]);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		violation(c, "CONNECT", "connect to the %s listener: %s", lsn_names[c->lsn],
			  strerror(errno));
		client_reset(c, now, 200);
		return;
	}
	{
		struct sockaddr_in me;
		socklen_t len = sizeof(me);

		c->lport = getsockname(fd, (struct sockaddr *)&me, &len) == 0 ?
			   ntohs(me.sin_port) : 0;
	}
}

static void send_hello(struct client *c, int64_t now)
{
	static const char hello[] = "torture:pw\3";	/* with its terminating NUL */
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		violation(c, "CONNECT", "connect to the %s listener: %s", lsn_names[c->lsn],
			  strerror(err));
		client_reset(c, now, 200);
		return;
	}
	if (send(c->fd, hello, sizeof(hello), MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof(hello)) {
		violation(c, "CONNECT", "could not send the hello: %s", strerror(errno));
		client_reset(c, now, 200);
		return;
	}
	c->st = CS_HELLO;
	c->st_since = now;
}

static void read_hello(struct client *c, int64_t now)
{
	uint8_t b;
	ssize_t r = recv(c->fd, &b, 1, MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r == 1 && b <= 6) {
		c->st = CS_OPEN;
		c->st_since = now;
		c->wake_ms = now;
		hist_add(c, "handshake done, capability %d", b);
		return;
	}
	if (r == 1) {
		violation(c, "HANDSHAKE", "capability byte %d (offered 3)", b);
		client_abort(c);
		return;
	}
	/* closed without a byte: q's refusal */
	if (c->lsn == L_S) {
		/* a session client waits for its backend's handshake: refused while it is down */
		R.session_refused++;
		hist_add(c, "session refused (backend down or refusing)");
		client_reset(c, now, rnd_range(&c->rng, 0, 150));
		return;
	}
	violation(c, "REFUSED", "the %s listener closed the handshake without a byte (%s)",
		  lsn_names[c->lsn], r == 0 ? "EOF" : strerror(errno));
	client_reset(c, now, 200);
}

/* ------------------------------------------------------------------ building requests */

/* Per connection, so that a value can only ever carry a token of that connection. */
static const char *var_name(const struct client *c, int var, char *buf, size_t n)
{
	snprintf(buf, n, "tv%dc%ux%d", c->idx, c->conn_no, var);
	return buf;
}

/* A char vector: the token, then dots up to len chars. */
static struct t_obj *padded(const char *tok, size_t len)
{
	size_t tl = strlen(tok);
	char *buf;
	struct t_obj *o;

	if (len < tl)
		len = tl;
	buf = malloc(len);
	cr_assert(buf != NULL);
	memset(buf, '.', len);
	memcpy(buf, tok, tl);
	o = t_strn(buf, len);
	free(buf);
	return o;
}

/* A size for a large answer: mostly under a MiB, now and then a few. */
static size_t big_size(struct client *c, size_t lo, size_t hi)
{
	size_t mid = hi / 4 > lo ? hi / 4 : hi;

	if (chance(&c->rng, 85))
		return (size_t)rnd_range(&c->rng, (int64_t)lo, (int64_t)mid);
	return (size_t)rnd_range(&c->rng, (int64_t)lo, (int64_t)hi);
}

/* The request's message; sets what the model expects of its answer. */
static struct t_obj *build(struct client *c, uint32_t id)
{
	struct req *r = &R.reqs[id];
	char tok[24], text[200], name[32];
	size_t n;

	tok_of(id, tok, sizeof(tok));
	switch (r->kind) {
	case K_TEXT:
		snprintf(text, sizeof(text), ".mock.echo[\"%s\"]", tok);
		return t_str(text);
	case K_ERROR:
		return t_call(".mock.error", 1, t_str(tok));
	case K_BIG_DOWN:
		n = big_size(c, 20000, c->big_max);
		r->answer_len = n + strlen(tok) + 14;
		snprintf(text, sizeof(text), "\"%s\",%zu#\".\"", tok, n);
		return t_str(text);
	case K_BIG_ECHO:
		n = big_size(c, STREAM_THRESHOLD + 1, c->big_max * 3 / 4);
		r->answer_len = n + 14;
		return t_call(".mock.echo", 1, padded(tok, n));
	case K_TWICE:
		return t_call(".mock.twice", 1, t_str(tok));
	case K_UNSOL:
		return t_call(".mock.unsolicited", 1, t_str(tok));
	case K_PUSHSYNC:
		return t_call(".mock.pushsync", 1, t_str(tok));
	case K_PARTDIE:
		n = (size_t)rnd_range(&c->rng, 100000, 1 << 20);
		r->answer_len = n;
		/* in the idempotent pool, mostly die on one backend only: the retry can succeed */
		if (c->lsn == L_QI && chance(&c->rng, 70))
			return t_call(".mock.partdie", 3, t_str(tok), t_long((int64_t)n),
				      t_sym(chance(&c->rng, 50) ? "b2" : "b3"));
		return t_call(".mock.partdie", 2, t_str(tok), t_long((int64_t)n));
	case K_REFUSE:
		snprintf(text, sizeof(text), ".mock.refuse[%d];\"%s\"",
			 (int)rnd_range(&c->rng, 1, 3), tok);
		return t_str(text);
	case K_SLEEP:
		r->param = chance(&c->rng, 10) ? rnd_range(&c->rng, 1100, 1500) :
			   rnd_range(&c->rng, 5, 300);
		snprintf(text, sizeof(text), ".mock.sleep[%" PRId64 "];\"%s\"", r->param, tok);
		return t_str(text);
	case K_DEFER:
		r->param = chance(&c->rng, 5) ? rnd_range(&c->rng, 3100, 3500) :
			   rnd_range(&c->rng, 1, 800);
		return t_call(".mock.defer", 2, t_long(r->param), t_str(tok));
	case K_PUB:
		snprintf(text, sizeof(text), ".mock.pub[%d;%d];\"%s\"",
			 (int)rnd_range(&c->rng, 1, 5), (int)rnd_range(&c->rng, 0, 30), tok);
		return t_str(text);
	case K_DROP:
		return t_call(".mock.drop", 1, t_str(tok));
	case K_GETVAR:
		return t_sym(var_name(c, r->var, name, sizeof(name)));
	case K_ASYNC:
		if (r->var >= 0)
			return t_call("set", 2, t_sym(var_name(c, r->var, name, sizeof(name))),
				      t_str(tok));
		return t_call(".mock.echo", 1, t_str(tok));
	default:
		return t_call(".mock.echo", 1, t_str(tok));
	}
}

/* A kind from the ordinary mix, within the disruptive kinds' pace. */
static int pick_kind(struct client *c, int64_t now)
{
	uint64_t skip = R.skip_kind;
	int k;

	/* a session passes bytes unchanged: a second answer would be the next request's, as on
	 * a direct connection, so answering twice is not a gateway matter there */
	if (c->lsn == L_S)
		skip |= (1ULL << K_TWICE) | (1ULL << K_UNSOL);
	k = pick(&c->rng, kind_weight, N_KIND, skip);
	if (k < 0)
		return K_ECHO;
	if (kind_gap_ms[k]) {
		if (now < R.next_ok[k])
			return K_ECHO;
		R.next_ok[k] = now + rnd_range(&c->rng, kind_gap_ms[k] / 2, kind_gap_ms[k] * 3 / 2);
	}
	return k;
}

static uint32_t send_sync(struct client *c, int kind)
{
	uint32_t id = req_new(c, kind, true);

	queue_msg(c, build(c, id), T_SYNC, id, 0);
	return id;
}

/* Async then sync, in one of three forms; the order a direct q connection would keep. */
static void act_async_sync(struct client *c)
{
	int form = (int)rnd_range(&c->rng, 0, 2), var = (int)rnd_range(&c->rng, 0, 7);
	uint32_t a, g;

	if (form == 0) {	/* async echo, then a sync: pinning */
		a = req_new(c, K_ASYNC, false);
		R.reqs[a].var = -1;
		queue_msg(c, build(c, a), T_ASYNC, a, 0);
		g = send_sync(c, K_ECHO);
		R.reqs[g].is_after_async = true;
	} else if (form == 1) {	/* set async, read sync: sees the value just set */
		a = req_new(c, K_ASYNC, false);
		R.reqs[a].var = var;
		queue_msg(c, build(c, a), T_ASYNC, a, 0);
		g = req_new(c, K_GETVAR, true);
		R.reqs[g].var = var;
		R.reqs[g].variant = 'a';
		R.reqs[g].ref = a;
		R.reqs[g].is_after_async = true;
		queue_msg(c, build(c, g), T_SYNC, g, 0);
	} else {		/* read sync, then set async: the read must not see the later set */
		g = req_new(c, K_GETVAR, true);
		R.reqs[g].var = var;
		R.reqs[g].variant = 'b';
		queue_msg(c, build(c, g), T_SYNC, g, 0);
		a = req_new(c, K_ASYNC, false);
		R.reqs[a].var = var;
		R.reqs[g].ref = a;
		queue_msg(c, build(c, a), T_ASYNC, a, 0);
	}
}

/* The client's next move, by its behaviour. */
static void client_act(struct client *c, int64_t now)
{
	size_t np = pend_count(c);

	if (c->actions_left <= 0) {
		if (!np && !out_pending(c) && !c->is_never_read && !c->close_at_ms &&
		    !c->is_close_after_flush && !c->close_after_rx)
			client_leave(c, chance(&c->rng, 25), "done");
		return;
	}
	switch (c->beh) {
	case B_SYNC:
	case B_RECONNECT:
		if (np || out_pending(c))
			return;
		send_sync(c, pick_kind(c, now));
		break;
	case B_BURST:
		if (np || out_pending(c))
			return;
		for (int k = (int)rnd_range(&c->rng, 2, 8); k > 0; k--)
			send_sync(c, pick_kind(c, now));
		break;
	case B_ASYNC_SYNC:
		if (np || out_pending(c))
			return;
		act_async_sync(c);
		break;
	case B_LARGE:
		if (np >= 2 || out_pending(c))
			return;
		/* now and then two large answers in a row, sent together */
		for (int k = !np && chance(&c->rng, 30) ? 2 : 1; k > 0; k--)
			send_sync(c, chance(&c->rng, 45) ? K_BIG_DOWN :
				  chance(&c->rng, 80) ? K_BIG_ECHO : pick_kind(c, now));
		break;
	case B_SLOW_READER:
		if (np >= 2 || out_pending(c))
			return;
		send_sync(c, chance(&c->rng, 80) ? K_BIG_DOWN : K_ECHO);
		break;
	case B_NEVER_READER:
		/* answers pile up in the gateway and the backends; it leaves after a while */
		for (int k = (int)rnd_range(&c->rng, 3, 12); k > 0; k--)
			send_sync(c, K_BIG_DOWN);
		c->close_at_ms = now + rnd_range(&c->rng, 1000, 4000);
		c->is_close_rst = chance(&c->rng, 50);
		break;
	case B_SLOW_SENDER: {
		uint32_t id;
		size_t size;

		if (np || out_pending(c))
			return;
		id = send_sync(c, chance(&c->rng, 50) ? K_ECHO : K_BIG_ECHO);
		size = out_pending(c);
		/* pieces of 1 byte to 4 KiB, a few ms apart, the whole within about 1.5 s */
		c->trickle_gap_ms = (int)rnd_range(&c->rng, 1, 15);
		c->trickle_max = (int)rnd_range(&c->rng, 1, 4096);
		if ((size_t)c->trickle_max * 1500 / (size_t)c->trickle_gap_ms < size)
			c->trickle_max = (int)(size * (size_t)c->trickle_gap_ms / 1500 + 1);
		c->trickle_next_ms = now;
		hist_add(c, "trickles %s in pieces of %d bytes every %d ms", req_desc(id),
			 c->trickle_max, c->trickle_gap_ms);
		break;
	}
	case B_ABORT_UP: {
		/* leave in the middle of a message: mostly one above the stream threshold */
		bool is_big = chance(&c->rng, 70), is_sync = chance(&c->rng, 80);
		int kind = is_big ? K_BIG_ECHO : K_ECHO;
		uint32_t id = req_new(c, kind, is_sync);
		struct t_obj *o = build(c, id);
		int64_t total = t_encoded_size(o) + 8;

		R.aborted_uploads++;
		set_outcome(id, O_ABANDONED);
		queue_msg(c, o, is_sync ? T_SYNC : T_ASYNC, id,
			  (size_t)rnd_range(&c->rng, 1, total - 1));
		c->is_close_after_flush = true;
		c->is_close_rst = chance(&c->rng, 50);
		c->close_at_ms = now + 3000;	/* in case the gateway never takes the bytes */
		break;
	}
	case B_ABORT_DOWN:
		if (chance(&c->rng, 50)) {	/* leave in the middle of a large answer */
			send_sync(c, K_BIG_DOWN);
			c->close_after_rx = (uint64_t)rnd_range(&c->rng, 1, 256 << 10);
			c->close_at_ms = now + 5000;
		} else {			/* leave with requests in flight */
			for (int k = (int)rnd_range(&c->rng, 1, 4); k > 0; k--)
				send_sync(c, pick_kind(c, now));
			c->is_close_after_flush = true;
		}
		c->is_close_rst = chance(&c->rng, 50);
		break;
	default:
		break;
	}
	c->actions_left--;
	c->wake_ms = now + (chance(&c->rng, 90) ? rnd_range(&c->rng, 0, 20) :
			    rnd_range(&c->rng, 50, 300));
}

/* ------------------------------------------------------------------ judging what arrives */

struct toks {
	uint32_t id[8];
	int n;
	bool is_more;
};

static void scan_bytes(const char *p, size_t n, struct toks *t)
{
	const char *end = p + n;

	/* bounded by n: each step moves past one "<t" */
	while (p < end) {
		const char *h = memmem(p, (size_t)(end - p), "<t", 2);
		uint64_t v = 0;
		const char *q;

		if (!h)
			return;
		for (q = h + 2; q < end && *q >= '0' && *q <= '9' && v < UINT32_MAX; q++)
			v = v * 10 + (uint64_t)(*q - '0');
		p = h + 2;
		if (q == h + 2 || q >= end || *q != '>')
			continue;
		bool is_dup = false;

		for (int k = 0; k < t->n; k++)
			is_dup |= t->id[k] == v;
		if (is_dup)
			continue;
		if (t->n < 8)
			t->id[t->n++] = (uint32_t)v;
		else
			t->is_more = true;
	}
}

/* Every token anywhere in a decoded value. */
static void scan_obj(const struct t_obj *o, struct toks *t, int depth)
{
	if (!o || depth > 32)
		return;
	if (o->s)
		scan_bytes(o->s, strlen(o->s), t);
	if (o->type == T_CHAR && o->data)
		scan_bytes(o->data, (size_t)o->n, t);
	if (o->type == T_SYM && o->syms)
		for (uint64_t k = 0; k < o->n; k++)
			if (o->syms[k])
				scan_bytes(o->syms[k], strlen(o->syms[k]), t);
	if (o->items) {
		uint64_t n = o->type == T_DICT || o->type == T_TABLE ? (o->type == T_DICT ? 2 : 1) :
			     o->n;

		for (uint64_t k = 0; k < n; k++)
			scan_obj(o->items[k], t, depth + 1);
	}
}

/* Is request id this client's, from its current connection? */
static bool is_own(const struct client *c, uint32_t id)
{
	const struct req *r = id && id < R.n_reqs ? &R.reqs[id] : NULL;

	return r && r->client == c->idx && r->conn_no == c->conn_no;
}

static bool has_tok(const struct toks *t, uint32_t id)
{
	for (int k = 0; k < t->n; k++)
		if (t->id[k] == id)
			return true;
	return false;
}

/* A getvar read: the value its async set put there, or (after a lost set) an older one. */
static void judge_getvar(struct client *c, uint32_t h, const struct t_obj *o,
			 const struct toks *t)
{
	const struct req *r = &R.reqs[h];
	bool is_err = o->type == T_ERROR, has_ref = has_tok(t, r->ref);
	char name[48];

	var_name(c, r->var, name, sizeof(name));
	if (is_err && strcmp(o->s, name) != 0) {
		violation(c, "FOREIGN ERROR", "%s got the error '%s' (not from qgate)",
			  req_desc(h), o->s);
		set_outcome(h, O_VIOLATION);
		client_abort(c);
		return;
	}
	if (r->variant == 'a') {
		/* undefined or older: the set went down with a backend, as on a direct q */
		set_outcome(h, !is_err && has_ref ? O_OWN : O_STALE);
		return;
	}
	if (has_ref && r->lsn != L_QI) {
		violation(c, "ORDER", "%s saw the value of %s, an async its client sent after it: "
			  "a later async overtook an earlier sync", req_desc(h), req_desc(r->ref));
		set_outcome(h, O_VIOLATION);
		client_abort(c);
		return;
	}
	/* an idempotent pool may run a read again after a later set: declared acceptable */
	set_outcome(h, has_ref ? O_STALE : O_OWN);
}

static void judge_response(struct client *c, const struct t_obj *o, const struct toks *t)
{
	uint32_t h = pend_head(c);
	bool is_err = o->type == T_ERROR;
	const struct req *r;

	for (int k = 0; k < t->n; k++) {
		if (is_own(c, t->id[k]))
			continue;
		violation(c, "MISDELIVERY", "waiting for %s, got an answer carrying %s: %s",
			  h ? req_desc(h) : "nothing", req_desc(t->id[k]), t_show(o));
		if (h)
			set_outcome(h, O_VIOLATION);
		client_abort(c);
		return;
	}
	if (!h) {
		violation(c, "UNEXPECTED", "a response while no request is outstanding: %s",
			  t_show(o));
		client_abort(c);
		return;
	}
	r = &R.reqs[h];
	c->pend_head++;
	if (is_err && t_is_err_prefix(o, "qgate: ")) {
		set_outcome(h, O_QGATE_ERROR);
		count_error_text(o->s);
		if (c->lsn == L_S)
			c->has_session_error = true;
		hist_add(c, "%s: '%s", req_desc(h), o->s);
		return;
	}
	for (int k = 0; k < t->n; k++) {
		if (t->id[k] == h || r->kind == K_GETVAR)
			continue;
		violation(c, "ORDER", "waiting for %s, got the answer of its own %s: %s",
			  req_desc(h), req_desc(t->id[k]), t_show(o));
		set_outcome(h, O_VIOLATION);
		client_abort(c);
		return;
	}
	if (r->kind == K_GETVAR) {
		judge_getvar(c, h, o, t);
		return;
	}
	if (r->kind == K_DROP) {
		violation(c, "UNEXPECTED", "%s was answered, but its backend dropped the "
			  "connection instead of answering: %s", req_desc(h), t_show(o));
		set_outcome(h, O_VIOLATION);
		client_abort(c);
		return;
	}
	if (has_tok(t, h) && (r->kind == K_ERROR) == is_err) {
		set_outcome(h, is_err ? O_OWN_ERROR : O_OWN);
		return;
	}
	if (is_err)
		violation(c, "FOREIGN ERROR", "%s got the error '%s' (not from qgate, not its own)",
			  req_desc(h), o->s);
	else
		violation(c, "NO TOKEN", "%s got an answer without its token: %s", req_desc(h),
			  t_show(o));
	set_outcome(h, O_VIOLATION);
	client_abort(c);
}

/* A message the backend started (publish, callback): only a session may see one. */
static void judge_push(struct client *c, int type, const struct t_obj *o, const struct toks *t)
{
	static uint8_t *reply;
	static size_t reply_len;
	uint32_t h = pend_head(c);

	for (int k = 0; k < t->n; k++) {
		if (is_own(c, t->id[k]))
			continue;
		violation(c, "MISDELIVERY", "a %s message carrying %s reached this client: %s",
			  type == T_SYNC ? "sync" : "async", req_desc(t->id[k]), t_show(o));
		client_abort(c);
		return;
	}
	if (c->lsn != L_S) {
		violation(c, "LEAK", "a %s message started by a backend reached a client of a "
			  "shared connection: %s", type == T_SYNC ? "sync" : "async", t_show(o));
		client_abort(c);
		return;
	}
	R.pushes++;
	if (type != T_SYNC)
		return;
	if (!h || R.reqs[h].kind != K_PUSHSYNC || !has_tok(t, h)) {
		violation(c, "ORDER", "a callback %s arrived while waiting for %s", t_show(o),
			  h ? req_desc(h) : "nothing");
		client_abort(c);
		return;
	}
	/* answer it as a q client would (mockq reads and ignores the answer) */
	if (!reply) {
		struct t_obj *ok = t_str("called back");

		cr_assert(ok && t_encode_msg(ok, T_RESPONSE, &reply, &reply_len) == 0);
		t_free(ok);
	}
	out_append(c, reply, reply_len);
	R.callbacks++;
}

static uint32_t rd32(const uint8_t *p, bool is_le)
{
	return is_le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		       (uint32_t)p[3] << 24 :
		       (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 |
		       (uint32_t)p[0] << 24;
}

static const char *hex16(const uint8_t *p, size_t n)
{
	static char buf[64];
	int k = 0;

	for (size_t i = 0; i < n && i < 16; i++)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, "%02x", p[i]);
	buf[k] = 0;
	return buf;
}

/* Whole messages out of the receive buffer, each judged. */
static void parse_messages(struct client *c)
{
	/* bounded by the bytes buffered: each round consumes one message or stops */
	while (c->st == CS_OPEN && c->in_len - c->in_off >= 8) {
		const uint8_t *p = c->in + c->in_off;
		size_t avail = c->in_len - c->in_off;
		uint32_t len = rd32(p + 4, p[0] == 1);
		struct t_obj *o;
		struct toks t = { .n = 0 };
		int type = -1, err = 0;

		if (p[0] > 1 || p[1] > 2 || p[2] > 1 || len < 10 || len > MAX_MSG) {
			uint32_t h = pend_head(c);

			violation(c, "FRAMING", "not a q message header: %s (waiting for %s)",
				  hex16(p, avail), h ? req_desc(h) : "nothing");
			if (h)
				set_outcome(h, O_VIOLATION);
			client_abort(c);
			return;
		}
		if (avail < len) {
			reserve(&c->in, &c->in_cap, c->in_off + len);
			return;
		}
		o = t_decode_msg(p, len, &type, &err);
		if (!o) {
			uint32_t h = pend_head(c);

			violation(c, "FRAMING", "a %u-byte message that does not decode (%s), "
				  "starting %s (waiting for %s)", len, strerror(-err),
				  hex16(p, len), h ? req_desc(h) : "nothing");
			if (h)
				set_outcome(h, O_VIOLATION);
			client_abort(c);
			return;
		}
		c->in_off += len;
		scan_obj(o, &t, 0);
		if (type == T_RESPONSE)
			judge_response(c, o, &t);
		else
			judge_push(c, type, o, &t);
		t_free(o);
	}
	if (c->st == CS_OPEN && c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	else if (c->st == CS_OPEN && c->in_off > (4u << 20)) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
}

/* The gateway closed this client: allowed only where the model says so. */
static void on_gateway_close(struct client *c, const char *how)
{
	uint32_t h = pend_head(c);
	size_t partial = c->in_len - c->in_off;
	const struct req *r = h ? &R.reqs[h] : NULL;

	/* an admin killed it: answers may be missing, never another's */
	bool is_killed = c->kill_conn && c->kill_conn == c->conn_no;

	hist_add(c, "the gateway closed the connection (%s)%s, %zu bytes of a message pending",
		 how, is_killed ? " after an admin's kill" : "", partial);
	if (partial) {
		struct toks t = { .n = 0 };

		/* whose bytes were they? (the token sits at the start of every answer) */
		scan_bytes((const char *)c->in + c->in_off, partial, &t);
		for (int k = 0; k < t.n; k++) {
			if (t.id[k] == h)
				continue;
			violation(c, is_own(c, t.id[k]) ? "ORDER" : "MISDELIVERY",
				  "waiting for %s, got %zu bytes of a message carrying %s, then "
				  "the gateway closed the client (%s)", r ? req_desc(h) : "nothing",
				  partial, req_desc(t.id[k]), how);
			if (h)
				set_outcome(h, O_VIOLATION);
			client_reset(c, now_ms(), rnd_range(&c->rng, 0, 150));
			return;
		}
		if (is_killed) {
			if (h)
				set_outcome(h, O_LOST);
			R.adm.kill_closes++;
		/* a backend died in the middle of a large answer: no error can follow its bytes */
		} else if (r && (r->answer_len >= CUT_MIN || r->kind == K_PARTDIE)) {
			set_outcome(h, O_CUT);
			R.cuts_allowed++;
		} else {
			violation(c, "CUT", "the gateway closed the client (%s) in the middle of a "
				  "message (%zu bytes, starting %s) while waiting for %s", how,
				  partial, hex16(c->in + c->in_off, partial),
				  r ? req_desc(h) : "nothing");
			if (h)
				set_outcome(h, O_VIOLATION);
		}
	} else if (h) {
		if (is_killed) {
			set_outcome(h, O_LOST);
			R.adm.kill_closes++;
		} else if (c->beh == B_SLOW_READER || c->is_never_read) {
			/* a client that does not drain its answers may be disconnected */
			set_outcome(h, O_LOST);
			R.gw_closes_allowed++;
		} else if (c->lsn == L_S && c->has_session_error) {
			/* its session backend went: the error, then the close */
			R.gw_closes_allowed++;
		} else if (c->lsn == L_S &&
			   (!r->sent_ms || now_ms() - r->sent_ms < SESSION_RACE_MS)) {
			/* its backend died as the request left: the gateway had not read it yet */
			set_outcome(h, O_LOST);
			R.session_races++;
		} else {
			violation(c, "CLOSE", "the gateway closed the client (%s) with %zu "
				  "requests outstanding and no qgate error; the first: %s, sent %"
				  PRId64 " ms before", how, pend_count(c), req_desc(h),
				  r->sent_ms ? now_ms() - r->sent_ms : -1);
			set_outcome(h, O_VIOLATION);
		}
	} else if (is_killed) {
		R.adm.kill_closes++;
	} else if (c->lsn == L_S) {
		R.gw_closes_allowed++;		/* its session backend went */
	} else {
		violation(c, "CLOSE", "the gateway closed an idle client (%s)", how);
	}
	client_reset(c, now_ms(), rnd_range(&c->rng, 0, 150));
}

/* A slow reader's allowance, refilled with time (at most half a second's worth). */
static bool budget_ready(struct client *c, int64_t now)
{
	if (!c->read_rate)
		return true;
	c->budget += (int64_t)c->read_rate * (now - c->budget_ms) / 1000;
	c->budget_ms = now;
	if (c->budget > c->read_rate / 2)
		c->budget = c->read_rate / 2;
	return c->budget >= 4096;
}

static void client_read(struct client *c, int64_t now)
{
	/* bounded: 16 reads per call, the rest on the next poll round */
	for (int round = 0; round < 16 && c->st == CS_OPEN; round++) {
		size_t want = 256 << 10;
		ssize_t r;

		if (c->read_rate) {
			if (!budget_ready(c, now))
				return;
			if ((int64_t)want > c->budget)
				want = (size_t)c->budget;
		}
		if (c->in_off && c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
		reserve(&c->in, &c->in_cap, c->in_len + want);
		r = recv(c->fd, c->in + c->in_len, want, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			on_gateway_close(c, strerror(errno));
			return;
		}
		if (r == 0) {
			on_gateway_close(c, "EOF");
			return;
		}
		c->in_len += (size_t)r;
		c->rx_total += (uint64_t)r;
		if (c->read_rate)
			c->budget -= r;
		parse_messages(c);
		if (c->st != CS_OPEN)
			return;
		if (c->close_after_rx && c->rx_total >= c->close_after_rx) {
			client_leave(c, c->is_close_rst, "in the middle of an answer");
			return;
		}
		if ((size_t)r < want)
			return;
	}
}

/* Handshake and request bounds; planned departures. */
static void check_client(struct client *c, int64_t now)
{
	int64_t eff = 0;

	if (c->st == CS_CONNECTING || c->st == CS_HELLO) {
		int64_t b = (c->lsn == L_S ? SESSION_HANDSHAKE_BOUND_MS : HANDSHAKE_BOUND_MS) +
			    R.slack_ms;

		if (now - c->st_since > b) {
			violation(c, "HANG", "the %s on the %s listener has had no answer for "
				  "%" PRId64 " ms", c->st == CS_CONNECTING ? "TCP connect" :
				  "handshake", lsn_names[c->lsn], now - c->st_since);
			client_leave(c, true, "handshake hang");
		}
		return;
	}
	if (c->st != CS_OPEN)
		return;
	if (c->close_at_ms && now >= c->close_at_ms) {
		client_leave(c, c->is_close_rst, c->is_never_read ? "never read" : "gave up");
		return;
	}
	if (c->is_never_read)
		return;
	/* in order: an answer cannot come before the answers of earlier requests */
	for (size_t k = c->pend_head; k < c->n_pend; k++) {
		uint32_t id = c->pend[k];
		const struct req *r = &R.reqs[id];
		int64_t b;

		if (!r->sent_ms)
			break;
		b = r->sent_ms + bound_ms(r);
		/* a session runs its requests one after another on one backend connection */
		if (r->lsn == L_S && (r->kind == K_SLEEP || r->kind == K_DEFER))
			eff += r->param;
		eff = (eff > b ? eff : b) +
		      (c->read_rate ? (int64_t)(r->answer_len * 1000 / (uint64_t)c->read_rate) : 0);
		if (now > eff) {
			violation(c, "HANG", "%s has had no outcome for %" PRId64 " ms (its "
				  "bound: %" PRId64 " ms)", req_desc(id), now - r->sent_ms,
				  eff - r->sent_ms);
			set_outcome(id, O_VIOLATION);
			client_leave(c, true, "after a hang");
			return;
		}
	}
	if (out_pending(c) && !c->trickle_max && c->beh != B_SLOW_READER &&
	    now - c->out_progress_ms > SEND_STALL_MS + R.slack_ms) {
		violation(c, "HANG", "the gateway has taken none of this client's %zu unsent bytes "
			  "for %" PRId64 " ms", out_pending(c), now - c->out_progress_ms);
		client_leave(c, true, "send stall");
	}
}

/* ------------------------------------------------------------------ the admin actor */

/*
 * At times drawn from the seed, an admin pauses and resumes a query pool (for at most
 * PAUSE_MAX_MS), disables and enables a backend (the last enabled one of a pool only
 * briefly), kills one of the clients the gateway lists, or reloads the same configuration;
 * over q as an admin user or by HTTP POST with the stats token. One call at a time, driven
 * by the run loop like the clients. The model stays strict: a killed connection may be
 * closed with answers missing (judged in on_gateway_close), never given another's; a pause
 * or a disable only delays (the usual bounds hold); an answer of the admin call other than
 * the documented one is a violation.
 */
enum act { A_PAUSE, A_RESUME, A_DISABLE, A_ENABLE, A_CLIENTS, A_KILL, A_RELOAD, N_ACT };
static const char *const act_names[N_ACT] = {
	"pause", "resume", "disable", "enable", "clients", "kill", "reload",
};
static const char *const adm_pools[2] = { "q", "qi" };
/* the (pool, backend) entries an admin disables; pool: index into the pools q, qi, s */
static const struct { const char *pool, *be; int pool_no; } adm_targets[6] = {
	{ "q", "b0", 0 }, { "q", "b1", 0 }, { "qi", "b2", 1 }, { "qi", "b3", 1 },
	{ "s", "b1", 2 }, { "s", "b3", 2 },
};
enum { QS_NONE, QS_CONNECTING, QS_HELLO, QS_OPEN };

static void adm_drop_q(void)
{
	if (R.adm.qfd >= 0)
		close(R.adm.qfd);
	R.adm.qfd = -1;
	R.adm.qst = QS_NONE;
}

/* The call in flight is over (answered or given up). */
static void adm_end(void)
{
	if (R.adm.hfd >= 0)
		close(R.adm.hfd);
	R.adm.hfd = -1;
	free(R.adm.out);
	R.adm.out = NULL;
	R.adm.out_len = R.adm.out_off = 0;
	R.adm.in_len = 0;
	R.adm.is_busy = false;
}

static int adm_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0, "socket: %s", strerror(errno));
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Start act on target (pool / adm_targets index / client id) over q or HTTP. */
static void adm_start(int act, int target, int64_t kill_id, bool is_http, int64_t now)
{
	char text[160];
	bool is_list = chance(&R.adm.rng, 50);	/* (`.qgate.f;args) rather than text */
	struct t_obj *o = NULL;

	R.adm.is_busy = true;
	R.adm.is_http = is_http;
	R.adm.act = act;
	R.adm.target = target;
	R.adm.kill_id = kill_id;
	R.adm.started_ms = now;
	R.adm.in_len = 0;
	if (is_http) {
		char path[120];

		if (act == A_PAUSE || act == A_RESUME)
			snprintf(path, sizeof(path), "/admin/%s?pool=%s", act_names[act],
				 adm_pools[target]);
		else if (act == A_DISABLE || act == A_ENABLE)
			snprintf(path, sizeof(path), "/admin/%s?pool=%s&backend=%s",
				 act_names[act], adm_targets[target].pool,
				 adm_targets[target].be);
		else if (act == A_KILL)
			snprintf(path, sizeof(path), "/admin/kill?id=%" PRId64, kill_id);
		else
			snprintf(path, sizeof(path), "/admin/reload");
		int n = snprintf(text, sizeof(text), "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: "
				 "Bearer " STATS_TOKEN "\r\nContent-Length: 0\r\n\r\n", path);
		R.adm.out = xrealloc(NULL, (size_t)n);
		memcpy(R.adm.out, text, (size_t)n);
		R.adm.out_len = (size_t)n;
		R.adm.hfd = adm_connect(R.stats_port);
		if (R.adm.hfd < 0) {
			violation(NULL, "ADMIN", "cannot connect to the stats port for %s: %s",
				  act_names[act], strerror(errno));
			adm_end();
		}
		return;
	}
	if (act == A_PAUSE || act == A_RESUME) {
		snprintf(text, sizeof(text), ".qgate.%s[`%s]", act_names[act], adm_pools[target]);
		if (is_list)
			o = t_call(act == A_PAUSE ? ".qgate.pause" : ".qgate.resume", 1,
				   t_sym(adm_pools[target]));
	} else if (act == A_DISABLE || act == A_ENABLE) {
		char name[16];

		snprintf(name, sizeof(name), "%s.%s", adm_targets[target].pool,
			 adm_targets[target].be);
		snprintf(text, sizeof(text), ".qgate.%s[`%s]", act_names[act], name);
		if (is_list)
			o = t_call(act == A_DISABLE ? ".qgate.disable" : ".qgate.enable", 2,
				   t_sym(adm_targets[target].pool), t_sym(adm_targets[target].be));
	} else if (act == A_KILL) {
		snprintf(text, sizeof(text), ".qgate.kill[%" PRId64 "]", kill_id);
		if (is_list)
			o = t_call(".qgate.kill", 1, t_long(kill_id));
	} else {
		snprintf(text, sizeof(text), ".qgate.%s[]", act_names[act]);
	}
	if (!o)
		o = t_str(text);
	cr_assert(o && t_encode_msg(o, T_SYNC, &R.adm.out, &R.adm.out_len) == 0);
	t_free(o);
	if (R.adm.qst == QS_NONE) {
		R.adm.qfd = adm_connect(R.ports[L_Q]);
		R.adm.qst = R.adm.qfd >= 0 ? QS_CONNECTING : QS_NONE;
		if (R.adm.qfd < 0) {
			violation(NULL, "ADMIN", "cannot connect to the query listener: %s",
				  strerror(errno));
			adm_end();
		}
	}
}

/* The clients of ours the gateway listed: kill one (its connection may be closed). */
static void adm_pick_kill(const struct t_obj *o, int64_t now)
{
	const struct t_obj *d = o && o->type == T_TABLE ? o->items[0] : NULL;
	const struct t_obj *keys = d ? d->items[0] : NULL, *vals = d ? d->items[1] : NULL;
	const int64_t *ids = NULL;
	char **peers = NULL, **lsns = NULL;
	uint64_t n = 0;

	for (uint64_t k = 0; keys && keys->type == T_SYM && k < keys->n; k++) {
		const struct t_obj *col = vals->items[k];
		if (!strcmp(keys->syms[k], "id") && col->type == T_LONG) {
			ids = col->data;
			n = col->n;
		}
		if (!strcmp(keys->syms[k], "peer") && col->type == T_SYM)
			peers = col->syms;
		if (!strcmp(keys->syms[k], "listener") && col->type == T_SYM)
			lsns = col->syms;
	}
	if (!ids || !peers || !lsns) {
		violation(NULL, "ADMIN", ".qgate.clients[] gave no id, peer and listener columns: "
			  "%.200s", o ? t_show(o) : "nothing");
		return;
	}
	/* rows of our clients, by listener and local port (connections to different listeners
	 * may have the same local port) */
	int64_t cand[MAX_CLIENTS];
	int cl[MAX_CLIENTS], m = 0;
	for (uint64_t r = 0; r < n && m < MAX_CLIENTS; r++) {
		const char *colon = strrchr(peers[r], ':');
		int port = colon ? atoi(colon + 1) : 0;
		for (int i = 0; i < R.n_clients && port; i++)
			if (R.cl[i].st == CS_OPEN && R.cl[i].lport == port &&
			    !strcmp(lsns[r], lsn_names[R.cl[i].lsn])) {
				cand[m] = ids[r];
				cl[m++] = i;
			}
	}
	if (!m) {
		R.adm.kill_none++;
		return;
	}
	int k = (int)rnd_range(&R.adm.rng, 0, m - 1);
	struct client *c = &R.cl[cl[k]];
	/* from the moment the kill leaves, this connection may be closed */
	c->kill_conn = c->conn_no;
	hist_add(c, "an admin kills it (id %" PRId64 ")", cand[k]);
	adm_start(A_KILL, cl[k], cand[k], chance(&R.adm.rng, 40), now);
}

/* Judge the answer o (q) or status/body (HTTP) of the call in flight. */
static void adm_judge(const struct t_obj *o, int status, const char *body, int64_t now)
{
	static const char *const want[N_ACT] = {
		"paused", "running", "disabled", "enabled", NULL, "killed", "reloaded",
	};
	int act = R.adm.act;
	bool is_gone = false, is_ok;

	if (R.adm.is_http) {
		is_ok = status == 200 && body && strstr(body, "\"ok\":true");
		is_gone = act == A_KILL && status == 404 && body && strstr(body, "qgate: no client");
	} else if (act == A_CLIENTS) {
		is_ok = o && o->type == T_TABLE;
	} else {
		/* a symbol: `paused, or `disabled: b0 of pool q and the like */
		is_ok = o && o->type == -T_SYM && o->s && !strncmp(o->s, want[act], strlen(want[act]));
		is_gone = act == A_KILL && o && t_is_err_prefix(o, "qgate: no client");
	}
	if (is_gone) {
		R.adm.kill_gone++;	/* it had left (ids are never reused) */
	} else if (!is_ok) {
		violation(NULL, "ADMIN", "%s (over %s) got %d %.300s", act_names[act],
			  R.adm.is_http ? "HTTP" : "q", status,
			  R.adm.is_http ? (body ? body : "no body") : (o ? t_show(o) : "nothing"));
	} else {
		R.adm.n[act][R.adm.is_http]++;
	}
	adm_end();
	if (act == A_CLIENTS && is_ok && !R.is_quiesce)
		adm_pick_kill(o, now);
}

/* Next action: undo what is due (all of it once the run ends), else a new one now and then. */
static void adm_next(int64_t now)
{
	struct admin *a = &R.adm;

	for (int p = 0; p < 2; p++)
		if (a->pause_until[p] && (now >= a->pause_until[p] || R.is_quiesce)) {
			a->pause_until[p] = 0;
			adm_start(A_RESUME, p, 0, chance(&a->rng, 40), now);
			return;
		}
	for (int t = 0; t < 6; t++)
		if (a->disable_until[t] && (now >= a->disable_until[t] || R.is_quiesce)) {
			a->disable_until[t] = 0;
			adm_start(A_ENABLE, t, 0, chance(&a->rng, 40), now);
			return;
		}
	if (R.is_quiesce || now < a->next_ms)
		return;
	a->next_ms = now + rnd_range(&a->rng, a->gap_ms / 2, a->gap_ms * 3 / 2);
	static const int weight[N_ACT] = {
		[A_PAUSE] = 25, [A_DISABLE] = 25, [A_CLIENTS] = 40, [A_RELOAD] = 6,
	};
	int act = pick(&a->rng, weight, N_ACT, 0);
	bool is_http = chance(&a->rng, 40);
	if (act == A_PAUSE) {
		int p = (int)rnd_range(&a->rng, 0, 1);
		if (a->pause_until[p])
			return;
		a->pause_until[p] = now + rnd_range(&a->rng, 30, PAUSE_MAX_MS);
		adm_start(A_PAUSE, p, 0, is_http, now);
	} else if (act == A_DISABLE) {
		int t = (int)rnd_range(&a->rng, 0, 5);
		if (a->disable_until[t])
			return;
		/* the other backend of its pool (each pool has two) */
		int other = t ^ 1;
		int64_t max = a->disable_until[other] ? DISABLE_LAST_MAX_MS : DISABLE_MAX_MS;
		a->disable_until[t] = now + rnd_range(&a->rng, 20, max);
		if (a->disable_until[other] && a->disable_until[other] > a->disable_until[t])
			a->disable_until[other] = a->disable_until[t];
		adm_start(A_DISABLE, t, 0, is_http, now);
	} else if (act == A_CLIENTS) {
		adm_start(A_CLIENTS, 0, 0, false, now);
	} else if (act == A_RELOAD) {
		adm_start(A_RELOAD, 0, 0, is_http, now);
	}
}

/* One step: give up a call past its bound, else start the next. */
static void admin_tick(int64_t now)
{
	if (R.adm.is_busy && now - R.adm.started_ms > ADMIN_BOUND_MS + R.slack_ms) {
		violation(NULL, "HANG", "the admin call %s (over %s) has had no answer for %" PRId64
			  " ms", act_names[R.adm.act], R.adm.is_http ? "HTTP" : "q",
			  now - R.adm.started_ms);
		if (!R.adm.is_http)
			adm_drop_q();
		adm_end();
	}
	if (!R.adm.is_busy && R.adm.gap_ms)
		adm_next(now);
}

/* The poll events the admin's fd waits for (fd -1: none). */
static int adm_fd(short *ev)
{
	*ev = 0;
	if (!R.adm.is_busy)
		return -1;
	if (R.adm.is_http) {
		*ev = R.adm.out_off < R.adm.out_len ? POLLOUT : POLLIN;
		return R.adm.hfd;
	}
	*ev = R.adm.qst == QS_CONNECTING ? POLLOUT : R.adm.qst == QS_HELLO ? POLLIN :
	      R.adm.out_off < R.adm.out_len ? POLLOUT : POLLIN;
	return R.adm.qfd;
}

/* Read what is there into R.adm.in: bytes read, 0 at EOF, -1 on EAGAIN, -2 on an error. */
static int adm_read(int fd)
{
	reserve(&R.adm.in, &R.adm.in_cap, R.adm.in_len + 65536);
	ssize_t n = recv(fd, R.adm.in + R.adm.in_len, R.adm.in_cap - R.adm.in_len - 1,
			 MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -1 : -2;
	R.adm.in_len += (size_t)n;
	R.adm.in[R.adm.in_len] = 0;
	return (int)n;
}

static void adm_send(int fd)
{
	ssize_t n = send(fd, R.adm.out + R.adm.out_off, R.adm.out_len - R.adm.out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0)
		R.adm.out_off += (size_t)n;
}

/* The admin's fd is ready. */
static void admin_io(short re, int64_t now)
{
	if (R.adm.is_http) {
		if (re & POLLOUT) {
			adm_send(R.adm.hfd);
			return;
		}
		int n = adm_read(R.adm.hfd);
		if (n != 0 && n != -2)
			return;
		/* one request per connection: the answer ends at EOF */
		int status = 0;
		char *body = (char *)R.adm.in;
		if (R.adm.in_len)
			sscanf(body, "HTTP/1.1 %d", &status);
		char *b = R.adm.in_len ? strstr(body, "\r\n\r\n") : NULL;
		adm_judge(NULL, status, b ? b + 4 : body, now);
		return;
	}
	if (R.adm.qst == QS_CONNECTING) {
		static const char hello[] = ADMIN_CRED "\3";
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(R.adm.qfd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || send(R.adm.qfd, hello, sizeof(hello), MSG_NOSIGNAL | MSG_DONTWAIT) !=
			   sizeof(hello)) {
			violation(NULL, "ADMIN", "the admin's connection failed: %s",
				  strerror(err ? err : errno));
			adm_drop_q();
			adm_end();
			return;
		}
		R.adm.qst = QS_HELLO;
		return;
	}
	if (R.adm.qst == QS_HELLO) {
		uint8_t b;
		ssize_t r = recv(R.adm.qfd, &b, 1, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r != 1) {
			violation(NULL, "ADMIN", "the admin user's login was refused");
			adm_drop_q();
			adm_end();
			return;
		}
		R.adm.qst = QS_OPEN;
		return;
	}
	if (re & POLLOUT) {
		adm_send(R.adm.qfd);
		return;
	}
	int n = adm_read(R.adm.qfd);
	if (n == -1)
		return;
	if (n <= 0) {
		violation(NULL, "ADMIN", "the gateway closed the admin's connection during %s",
			  act_names[R.adm.act]);
		adm_drop_q();
		adm_end();
		return;
	}
	if (R.adm.in_len < 8)
		return;
	uint32_t len = rd32(R.adm.in + 4, R.adm.in[0] == 1);
	if (R.adm.in_len < len)
		return;
	int type = -1, err = 0;
	struct t_obj *o = t_decode_msg(R.adm.in, len, &type, &err);
	if (!o || type != T_RESPONSE || R.adm.in_len != len) {
		violation(NULL, "ADMIN", "the answer to %s is not one response message (type %d, "
			  "%zu bytes, message of %u)", act_names[R.adm.act], type, R.adm.in_len,
			  len);
		t_free(o);
		adm_drop_q();
		adm_end();
		return;
	}
	adm_judge(o, 0, NULL, now);
	t_free(o);
}

/* After the run: nothing left paused or disabled (blocking calls), the connection closed. */
static void admin_finish(void)
{
	int fd;

	adm_end();
	adm_drop_q();
	if (!R.adm.gap_ms)
		return;
	fd = t_q_connect("127.0.0.1", R.ports[L_Q], ADMIN_CRED, NULL);
	if (fd < 0) {
		violation(NULL, "ADMIN", "after the run the admin cannot log in: %s", t_errmsg());
		return;
	}
	for (int k = 0; k < 2 + 6; k++) {
		char text[64];
		int err = 0;

		if (k < 2)
			snprintf(text, sizeof(text), ".qgate.resume[`%s]", adm_pools[k]);
		else
			snprintf(text, sizeof(text), ".qgate.enable[`%s.%s]", adm_targets[k - 2].pool,
				 adm_targets[k - 2].be);
		struct t_obj *q = t_str(text), *a = t_q_call(fd, q, 8000, NULL, &err);
		if (!a || a->type != -T_SYM)
			violation(NULL, "ADMIN", "after the run %s gave %s", text,
				  a ? t_show(a) : t_errmsg());
		t_free(q);
		t_free(a);
	}
	close(fd);
}

/* ------------------------------------------------------------------ the run */

static void begin_quiesce(int64_t now)
{
	R.is_quiesce = true;
	/* the longest bound of anything still outstanding, and a little */
	R.quiesce_until = now + 3 * (QUEUE_TO_MS + DEFER_TO_MS) + DRAIN_TO_MS + R.slack_ms + 2000;
	for (int i = 0; i < R.n_clients; i++) {
		struct client *c = &R.cl[i];

		if (c->st == CS_OPEN && (c->is_never_read || c->is_close_after_flush ||
					 c->close_after_rx || c->close_at_ms))
			client_leave(c, c->is_close_rst, "end of the run");
		/* slow readers read up now, so that the run ends in seconds, not minutes */
		c->read_rate = 0;
	}
}

static bool all_settled(void)
{
	for (int i = 0; i < R.n_clients; i++) {
		const struct client *c = &R.cl[i];

		if (c->st == CS_CONNECTING || c->st == CS_HELLO)
			return false;
		if (c->st == CS_OPEN && (pend_count(c) || out_pending(c)))
			return false;
	}
	/* the admin has resumed and enabled everything */
	for (int p = 0; p < 2; p++)
		if (R.adm.pause_until[p])
			return false;
	for (int t = 0; t < 6; t++)
		if (R.adm.disable_until[t])
			return false;
	return !R.adm.is_busy;
}

static void run_loop(void)
{
	static struct pollfd pfd[MAX_CLIENTS + 1];
	static int who[MAX_CLIENTS + 1];
	int64_t next_check = 0;

	/* bounded: the run's end, then the quiesce deadline */
	for (;;) {
		int64_t now = now_ms(), wake = now + 20;
		int n = 0;

		if (!R.is_quiesce && now >= R.end_ms)
			begin_quiesce(now);
		if (R.is_quiesce && (all_settled() || now >= R.quiesce_until))
			break;
		if (!gateway_alive())
			break;
		chaos_tick(now);
		admin_tick(now);
		for (int i = 0; i < R.n_clients; i++) {
			struct client *c = &R.cl[i];
			short ev = 0;

			if (c->st == CS_WAIT && !R.is_quiesce && now >= c->wake_ms)
				client_start(c, now);
			if (c->st == CS_OPEN && !R.is_quiesce && now >= c->wake_ms)
				client_act(c, now);
			if (c->st == CS_OPEN && out_pending(c) && client_flush(c, now) < 0) {
				/* it may have been told why: read what is there first */
				client_read(c, now);
				if (c->st == CS_OPEN)
					on_gateway_close(c, "send failed");
			}
			if (c->st == CS_OPEN && !out_pending(c) && c->is_close_after_flush)
				client_leave(c, c->is_close_rst, "right after sending");
			if (c->st == CS_WAIT) {
				if (!R.is_quiesce && c->wake_ms < wake)
					wake = c->wake_ms;
				continue;
			}
			if (c->st == CS_OPEN && !R.is_quiesce && c->wake_ms < wake)
				wake = c->wake_ms;
			if (c->trickle_max && c->trickle_next_ms < wake)
				wake = c->trickle_next_ms;
			if (c->st == CS_CONNECTING) {
				ev = POLLOUT;
			} else if (c->st == CS_HELLO) {
				ev = POLLIN;
			} else {
				if (!c->is_never_read && budget_ready(c, now))
					ev |= POLLIN;
				if (out_pending(c) &&
				    (!c->trickle_max || now >= c->trickle_next_ms))
					ev |= POLLOUT;
			}
			pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			who[n++] = i;
		}
		{
			short ev;
			int fd = adm_fd(&ev);

			if (fd >= 0) {
				pfd[n] = (struct pollfd){ .fd = fd, .events = ev };
				who[n++] = -1;
			}
			if (!R.adm.is_busy && R.adm.gap_ms && R.adm.next_ms < wake)
				wake = R.adm.next_ms;
		}
		poll(pfd, (nfds_t)n, wake > now ? (int)(wake - now) : 0);
		now = now_ms();
		for (int k = 0; k < n; k++) {
			if (who[k] < 0) {
				if (pfd[k].revents)
					admin_io(pfd[k].revents, now);
				continue;
			}
			struct client *c = &R.cl[who[k]];
			short re = pfd[k].revents;

			if (!re || c->fd != pfd[k].fd)
				continue;
			if (c->st == CS_CONNECTING) {
				send_hello(c, now);
			} else if (c->st == CS_HELLO) {
				read_hello(c, now);
			} else if (c->st == CS_OPEN) {
				if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->is_never_read)
					client_read(c, now);
				if (c->st != CS_OPEN || !(re & POLLOUT) ||
				    client_flush(c, now) >= 0)
					continue;
				client_read(c, now);
				if (c->st == CS_OPEN)
					on_gateway_close(c, "send failed");
			}
		}
		if (now >= next_check) {
			for (int i = 0; i < R.n_clients; i++)
				check_client(&R.cl[i], now);
			next_check = now + 50;
		}
	}
	for (int i = 0; i < R.n_clients; i++)
		if (R.cl[i].st != CS_WAIT)
			client_leave(&R.cl[i], false, "the run is over");
}

/* ------------------------------------------------------------------ after the run */

static json_int_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* GET /stats with the token: the status and the body (malloc'd), or -errno. */
static int stats_get(char **body)
{
	static const char req[] = "GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
				  STATS_TOKEN "\r\n\r\n";
	size_t got = 0, cap = 1 << 20;
	char *buf = xrealloc(NULL, cap);
	int fd = t_tcp_connect("127.0.0.1", R.stats_port, 2000), status = -EPROTO;

	*body = NULL;
	if (fd < 0) {
		free(buf);
		return fd;
	}
	if (t_send_all(fd, req, sizeof(req) - 1) == 0) {
		/* one answer, then the gateway closes: read to EOF (bounded by time and size) */
		for (int i = 0; i < 10000; i++) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			if (poll(&pfd, 1, 3000) != 1 || got + 1 >= cap)
				break;
			ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
	}
	close(fd);
	buf[got] = 0;
	char *b = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.1 %d", &status) == 1 && b)
		*body = strdup(b + 4);
	free(buf);
	return status;
}

/* What is not at rest in a /stats tree, as text ("" when everything is). */
static void rest_problems(json_t *j, char *why, size_t cap)
{
	json_t *gw = json_object_get(j, "gateway"), *p, *b;
	size_t i, k;
	int len = 0;

	why[0] = 0;
	if (jint(gw, "clients"))
		len += snprintf(why, cap, "%lld clients still counted; ",
				(long long)jint(gw, "clients"));
	/* a receive buffer lent to a send queue and never given back (limits.zero_copy_bytes) */
	if (jint(gw, "rx_buffers_lent") && (size_t)len < cap)
		len += snprintf(why + len, cap - (size_t)len, "%lld receive buffers still lent; ",
				(long long)jint(gw, "rx_buffers_lent"));
	json_array_foreach(json_object_get(j, "pools"), i, p) {
		const char *pn = json_string_value(json_object_get(p, "name"));

		if ((size_t)len >= cap)
			return;
		if (jint(p, "queued") || jint(p, "dedicated") || jint(p, "sessions"))
			len += snprintf(why + len, cap - (size_t)len, "pool %s: queued %lld, "
					"dedicated %lld, sessions %lld; ", pn,
					(long long)jint(p, "queued"),
					(long long)jint(p, "dedicated"),
					(long long)jint(p, "sessions"));
		json_array_foreach(json_object_get(p, "backends"), k, b) {
			json_t *cn = json_object_get(b, "connections");

			if ((size_t)len >= cap)
				return;
			/* inflight is the backends' shared count: a slot never given back would
			 * stop that backend for good */
			if (!jint(cn, "busy") && !jint(b, "outstanding") && !jint(b, "inflight"))
				continue;
			len += snprintf(why + len, cap - (size_t)len, "pool %s backend %s: %lld "
					"busy connections, %lld outstanding, %lld in flight; ", pn,
					json_string_value(json_object_get(b, "name")),
					(long long)jint(cn, "busy"),
					(long long)jint(b, "outstanding"),
					(long long)jint(b, "inflight"));
		}
	}
}

/* The gateway's own counters, for the summary. */
static void stats_summary(json_t *j, char *out, size_t cap)
{
	json_t *p;
	size_t i;
	int len = 0;

	out[0] = 0;
	json_array_foreach(json_object_get(j, "pools"), i, p) {
		json_t *b;
		size_t k;
		long long spares = 0;
		if ((size_t)len >= cap)
			return;
		/* spare connections opened (auto max_inflight): the path is exercised or not */
		json_array_foreach(json_object_get(p, "backends"), k, b)
			spares += (long long)jint(b, "spare_opens");
		len += snprintf(out + len, cap - (size_t)len, "%spool %s: requests %lld, errors "
				"%lld, timeouts %lld, queue timeouts %lld, dropped unsolicited "
				"%lld, health failures %lld, spare opens %lld", i ? "; " : "",
				json_string_value(json_object_get(p, "name")),
				(long long)jint(p, "requests"), (long long)jint(p, "errors"),
				(long long)jint(p, "timeouts"),
				(long long)jint(p, "queue_timeouts"),
				(long long)jint(p, "dropped_unsolicited"),
				(long long)jint(p, "health_failures"), spares);
	}
	if ((size_t)len < cap)
		snprintf(out + len, cap - (size_t)len, "; protocol errors %lld; answer bytes "
			 "sent uncopied %lld", (long long)jint(json_object_get(j, "gateway"),
							       "protocol_errors"),
			 (long long)jint(json_object_get(j, "gateway"), "bytes_zero_copy"));
}

/*
 * Once every client has left and every backend is back, the gateway must come to rest:
 * nothing queued, no connection busy, no session or dedicated socket left, no client
 * counted. A connection that stays busy is frozen for good (an answer never drained, a close
 * never noticed). Draining takes up to drain_timeout_ms, so this waits that long and more.
 */
static void check_at_rest(char *summary, size_t cap)
{
	int64_t deadline = now_ms() + DRAIN_TO_MS + R.slack_ms;
	char why[600] = "";
	json_t *j = NULL;

	/* bounded by the deadline, 200 ms between looks */
	for (;;) {
		char *body = NULL;
		int st = stats_get(&body);
		json_error_t jerr;

		json_decref(j);
		j = st == 200 && body ? json_loads(body, 0, &jerr) : NULL;
		free(body);
		if (j)
			rest_problems(j, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "GET /stats failed (%d): %s", st, t_errmsg());
		if (!why[0] || now_ms() >= deadline)
			break;
		poll(NULL, 0, 200);
	}
	if (why[0])
		violation(NULL, "STUCK", "%d ms after every client left: %s",
			  DRAIN_TO_MS + R.slack_ms, why);
	summary[0] = 0;
	if (j)
		stats_summary(j, summary, cap);
	json_decref(j);
}

/* A fresh client on each listener still gets its own answer. */
static void probe_listeners(void)
{
	for (int l = 0; l < N_LSN; l++) {
		char tok[32], last[300] = "";
		bool is_ok = false;

		snprintf(tok, sizeof(tok), "<probe%d>", l);
		/* bounded: 10 attempts; a backend may still be reconnecting or refusing */
		for (int attempt = 0; attempt < 10 && !is_ok; attempt++) {
			int fd = t_q_connect("127.0.0.1", R.ports[l], "probe:pw", NULL), err = 0;
			struct t_obj *q, *a;

			if (attempt)
				poll(NULL, 0, 300);
			if (fd < 0) {
				snprintf(last, sizeof(last), "connect: %s", t_errmsg());
				continue;
			}
			q = t_call(".mock.echo", 1, t_str(tok));
			a = t_q_call(fd, q, 8000, NULL, &err);
			is_ok = a && t_is_str(a, tok);
			snprintf(last, sizeof(last), "%s", a ? t_show(a) : t_errmsg());
			t_free(q);
			t_free(a);
			close(fd);
		}
		if (!is_ok)
			violation(NULL, "STALLED", "after the run the %s listener no longer "
				  "answers: last try gave %s", lsn_names[l], last);
	}
}

static void stop_gateway(void)
{
	char *rep;

	if (gateway_alive()) {
		t_proc_signal(R.gate, SIGTERM);
		if (t_proc_wait(R.gate, 15000) < 0) {
			violation(NULL, "UNCLEAN EXIT", "the gateway did not exit within 15 s of "
				  "SIGTERM");
			t_proc_kill(R.gate);
		} else if (!WIFEXITED(R.gate->status) || WEXITSTATUS(R.gate->status) != 0) {
			violation(NULL, "UNCLEAN EXIT", "the gateway ended with wait status %d "
				  "after SIGTERM; stderr tail:\n%s", R.gate->status,
				  t_tail(R.gate->err_path, 1500));
		}
	}
	rep = sanitizer_report(R.gate->err_path);
	if (rep && !R.is_gateway_dead)
		violation(NULL, "SANITIZER", "the gateway's stderr holds a report:\n%s", rep);
	free(rep);
}

/* After stop_backends: a backend's report (its leak check runs as it exits) is a failure too. */
static void check_backend_logs(void)
{
	for (int k = 0; k < N_BE; k++) {
		char *rep = sanitizer_report(R.be[k].err_path);

		if (rep)
			violation(NULL, "SANITIZER", "mockq %s's stderr holds a report:\n%s",
				  R.be[k].name, rep);
		free(rep);
	}
}

static void print_summary(double secs, const char *gw_stats)
{
	long sync = 0, conns = 0;

	for (int k = 0; k < N_KIND; k++)
		sync += R.kind_count[k];
	sync -= R.async_sent;
	for (int b = 0; b < N_BEH; b++)
		conns += R.beh_conns[b];
	printf("\ntorture seed %" PRIu64 ": %.1f s (%d s of traffic, %.1f s to settle, %.1f s to "
	       "rest), %d client slots, %ld connections, %ld sync requests, %ld async\n", R.seed,
	       secs, R.seconds, R.quiet_s, R.rest_s, R.n_clients, conns, sync, R.async_sent);
	printf("  workers %d, affinity %d, max_inflight b0..b3 (0: auto): %d %d %d %d, over unix "
	       "socket b0..b3: %d %d %d %d\n", R.workers, R.affinity, R.max_inflight[0],
	       R.max_inflight[1], R.max_inflight[2], R.max_inflight[3], R.be_unix[0],
	       R.be_unix[1], R.be_unix[2], R.be_unix[3]);
	printf("  outcomes:");
	for (int o = 1; o < N_OUT; o++)
		printf("%s %s %ld", o > 1 ? "," : "", out_names[o], R.out_count[o]);
	printf(", still pending %ld\n  qgate errors:", R.out_count[O_PENDING]);
	for (int e = 0; e < R.n_errs; e++)
		printf("%s '%s' %ld", e ? "," : "", R.errs[e].text, R.errs[e].n);
	printf("\n  request kinds:");
	for (int k = 0; k < N_KIND; k++)
		printf("%s %s %ld", k ? "," : "", kind_names[k], R.kind_count[k]);
	printf("\n  connections by behaviour:");
	for (int b = 0; b < N_BEH; b++)
		printf("%s %s %ld", b ? "," : "", beh_names[b], R.beh_conns[b]);
	printf("; by listener:");
	for (int l = 0; l < N_LSN; l++)
		printf("%s %s %ld", l ? "," : "", lsn_names[l], R.lsn_conns[l]);
	printf("\n  clients left: FIN %ld, RST %ld; uploads abandoned mid-message %ld; session "
	       "handshakes refused %ld; backend messages to sessions %ld (callbacks answered "
	       "%ld); closes by the gateway allowed: %ld mid-answer, %ld sessions racing their "
	       "backend's death, %ld other\n", R.closes_fin, R.closes_rst, R.aborted_uploads,
	       R.session_refused, R.pushes, R.callbacks, R.cuts_allowed, R.session_races,
	       R.gw_closes_allowed);
	printf("  admin (an action every ~%d ms):", R.adm.gap_ms);
	for (int a = 0; a < N_ACT; a++)
		printf("%s %s %ld (q %ld, http %ld)", a ? "," : "", act_names[a],
		       R.adm.n[a][0] + R.adm.n[a][1], R.adm.n[a][0], R.adm.n[a][1]);
	printf("; kills of a client gone %ld, no client of ours listed %ld; clients closed by a "
	       "kill %ld\n", R.adm.kill_gone, R.adm.kill_none, R.adm.kill_closes);
	printf("  backends:");
	for (int k = 0; k < N_BE; k++) {
		const struct backend *b = &R.be[k];

		printf("%s %s killed %d, stopped %d, died on .mock.partdie %d, restarted %d",
		       k ? ";" : "", b->name, b->kills, b->stops, b->self_exits, b->restarts);
	}
	printf("\n  gateway /stats: %s\n  violations: %ld", gw_stats[0] ? gw_stats : "n/a",
	       R.violations);
	for (int k = 0; k < R.n_classes; k++)
		printf("%s %s %ld", k ? "," : " (", R.classes[k].what, R.classes[k].n);
	printf("%s%s%s\n", R.n_classes ? ")" : "", R.violations ? "; the first: " : "",
	       R.first_violation);
	fflush(stdout);
}

static void free_run(void)
{
	free(R.adm.in);
	free(R.adm.out);
	for (int i = 0; R.cl && i < R.n_clients; i++) {
		free(R.cl[i].out);
		free(R.cl[i].in);
		free(R.cl[i].marks);
		free(R.cl[i].pend);
	}
	free(R.cl);
	free(R.reqs);
	R.cl = NULL;
	R.reqs = NULL;
}

static int env_int(const char *name, int def, int lo, int hi);

/* One seed: fresh backends and gateway, the run, the checks after it. Returns violations. */
static long run_seed(uint64_t seed, int seconds, int n_clients, uint64_t skip_beh,
		     uint64_t skip_kind, int slack_ms)
{
	const char *mockq = t_bin("MOCKQ_BIN");
	char real[PATH_MAX], gw_stats[1600] = "";
	const char *cfg;
	uint64_t s;
	int64_t t_start;
	bool was_keep = getenv("T_KEEP") != NULL;

	cr_assert(mockq, "%s", t_errmsg());
	cr_assert(t_bin("QGATE_BIN"), "%s", t_errmsg());
	free_run();
	memset(&R, 0, sizeof(R));
	R.seed = seed;
	R.seconds = seconds;
	R.n_clients = n_clients;
	R.skip_beh = skip_beh;
	R.skip_kind = skip_kind;
	R.slack_ms = slack_ms;
	R.max_reports = env_int("TORTURE_REPORTS", DEF_REPORTS, 0, 1000000);
	R.t0 = now_ms();
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	/* a neutral name, so that a stray `pkill mockq` elsewhere cannot hit these backends */
	cr_assert(realpath(mockq, real), "%s: %s", mockq, strerror(errno));
	snprintf(R.be_link, sizeof(R.be_link), "%s/be-torture", t_env_dir());
	cr_assert(symlink(real, R.be_link) == 0, "symlink: %s", strerror(errno));
	for (int l = 0; l < N_LSN; l++)
		R.ports[l] = T_OK(t_free_port());
	R.stats_port = T_OK(t_free_port());
	s = seed ^ 0xc4a05c4a05ULL;
	R.chaos_rng = splitmix(&s);
	{
		/* a stream of its own, so that the other draws of a seed stay as they were */
		uint64_t as = seed ^ 0xad31ad31ad31ULL;

		R.adm.rng = splitmix(&as);
		R.adm.gap_ms = (int)rnd_range(&R.adm.rng, 150, 1500);
		if (skip_beh & SKIP_ADMIN)
			R.adm.gap_ms = 0;
		R.adm.qfd = R.adm.hfd = -1;
	}
	for (int k = 0; k < N_BE; k++) {
		struct backend *b = &R.be[k];

		snprintf(b->name, sizeof(b->name), "b%d", k);
		b->port = T_OK(t_free_port());
		snprintf(b->err_path, sizeof(b->err_path), "%s/%s.err", t_env_dir(), b->name);
		cr_assert(spawn_backend(b) == 0, "cannot start mockq %s", b->name);
	}
	for (int k = 0; k < N_BE; k++)
		cr_assert(t_wait_accepting("127.0.0.1", R.be[k].port, 10000, R.be[k].pid) == 0,
			  "mockq %s: %s; stderr: %s", R.be[k].name, t_errmsg(),
			  t_tail(R.be[k].err_path, 600));
	cfg = write_config(&s);
	R.gate = T_PTR(t_qgate_start(cfg, R.ports[L_Q]));
	T_OK(t_wait_accepting("127.0.0.1", R.ports[L_QI], 10000, R.gate->pid));
	T_OK(t_wait_accepting("127.0.0.1", R.ports[L_S], 10000, R.gate->pid));
	T_OK(t_wait_accepting("127.0.0.1", R.stats_port, 10000, R.gate->pid));
	R.cl = calloc((size_t)n_clients, sizeof(*R.cl));
	cr_assert(R.cl);
	for (int i = 0; i < n_clients; i++) {
		struct client *c = &R.cl[i];

		s = seed * 1000003ULL + (uint64_t)i;
		c->idx = i;
		c->rng = splitmix(&s);
		c->fd = -1;
		c->st = CS_WAIT;
	}
	R.n_reqs = 1;	/* token 0 means "none" */
	R.cap_reqs = 65536;
	R.reqs = calloc(R.cap_reqs, sizeof(*R.reqs));
	cr_assert(R.reqs);
	t_start = now_ms();
	R.t0 = t_start;
	R.end_ms = t_start + (int64_t)seconds * 1000;
	R.next_chaos = t_start + rnd_range(&R.chaos_rng, 500, 2000);
	R.adm.next_ms = t_start + rnd_range(&R.adm.rng, 200, 1500);
	for (int i = 0; i < n_clients; i++)
		R.cl[i].wake_ms = t_start + rnd_range(&R.cl[i].rng, 0, 500);

	run_loop();
	R.quiet_s = R.is_quiesce ? (double)(now_ms() - R.end_ms) / 1000.0 : 0;
	if (!R.is_gateway_dead)
		admin_finish();
	else
		adm_drop_q();
	if (!R.is_gateway_dead) {
		int64_t t_rest = now_ms();

		/* every backend back, then the gateway must come to rest and still serve */
		chaos_tick(now_ms());
		for (int k = 0; k < N_BE; k++)
			if (R.be[k].pid)
				t_wait_accepting("127.0.0.1", R.be[k].port, 5000, R.be[k].pid);
		check_at_rest(gw_stats, sizeof(gw_stats));
		R.rest_s = (double)(now_ms() - t_rest) / 1000.0;
		probe_listeners();
	}
	stop_gateway();
	stop_backends();
	check_backend_logs();
	print_summary((double)(now_ms() - t_start) / 1000.0, gw_stats);
	if (R.violations) {
		char self[PATH_MAX] = "<build>/tests/torture/torture";
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n > 0)
			self[n] = 0;
		printf("torture: seed %" PRIu64 " FAILED with %ld violations. Replay it with\n"
		       "  TORTURE_SEED=%" PRIu64 " TORTURE_SECONDS=%d QGATE_BIN=%s MOCKQ_BIN=%s "
		       "%s\n(or TORTURE_SEED=%" PRIu64 " TORTURE_SECONDS=%d meson test -C BUILD "
		       "--suite torture -v)\n", R.seed, R.violations, R.seed, seconds,
		       t_bin("QGATE_BIN"), mockq, self, R.seed, seconds);
		fflush(stdout);
		/* keep the logs of a failing seed (t_env_fini prints where) */
		setenv("T_KEEP", "1", 1);
	}
	t_env_fini();
	if (!was_keep)
		unsetenv("T_KEEP");
	return R.violations;
}

/* ------------------------------------------------------------------ the test */

static int env_int(const char *name, int def, int lo, int hi)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (!v || !*v)
		return def;
	n = strtol(v, &end, 10);
	cr_assert(!*end && n >= lo && n <= hi, "%s=%s: want an integer from %d to %d", name, v, lo,
		  hi);
	return (int)n;
}

/* TORTURE_SKIP=a,b: behaviours and request kinds left out. */
static void parse_skip(uint64_t *skip_beh, uint64_t *skip_kind)
{
	const char *v = getenv("TORTURE_SKIP");
	char buf[512], *save = NULL;

	*skip_beh = *skip_kind = 0;
	if (!v || !*v)
		return;
	snprintf(buf, sizeof(buf), "%s", v);
	for (char *w = strtok_r(buf, ", ", &save); w; w = strtok_r(NULL, ", ", &save)) {
		bool is_known = !strcmp(w, "admin");

		if (is_known)
			*skip_beh |= SKIP_ADMIN;

		for (int b = 0; b < N_BEH; b++)
			if (!strcmp(w, beh_names[b])) {
				*skip_beh |= 1ULL << b;
				is_known = true;
			}
		for (int k = 0; k < N_KIND; k++)
			if (!strcmp(w, kind_names[k])) {
				*skip_kind |= 1ULL << k;
				is_known = true;
			}
		cr_assert(is_known, "TORTURE_SKIP: \"%s\" is neither a behaviour (sync burst "
			  "async_sync large slow_reader never_reader slow_sender abort_up "
			  "abort_down reconnect) nor a request kind (echo text error big_down "
			  "big_echo twice unsolicited pushsync partdie refuse sleep defer pub "
			  "drop) nor admin", w);
	}
}

TestSuite(torture);

Test(torture, one_rule_under_random_abuse)
{
	static const uint64_t fixed[N_FIXED] = FIXED_SEEDS;
	const char *seed_env = getenv("TORTURE_SEED");
	bool is_random = getenv("TORTURE_RANDOM") && !strcmp(getenv("TORTURE_RANDOM"), "1");
	int total = env_int("TORTURE_SECONDS", seed_env ? DEF_TOTAL_S / N_FIXED : DEF_TOTAL_S, 5,
			    7 * 24 * 3600);
	int run_s = env_int("TORTURE_RUN_SECONDS", DEF_RANDOM_RUN_S, 5, 24 * 3600);
	int n_clients = env_int("TORTURE_CLIENTS", DEF_CLIENTS, 1, MAX_CLIENTS);
	int slack = env_int("TORTURE_SLACK_MS", DEF_SLACK_MS, 0, 600000);
	uint64_t skip_beh, skip_kind, failed[64];
	long n_seeds = 0, n_failed = 0, violations = 0;
	int64_t t_end;

	parse_skip(&skip_beh, &skip_kind);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (seed_env) {
		char *end;
		uint64_t seed = strtoull(seed_env, &end, 10);

		cr_assert(*seed_env && !*end, "TORTURE_SEED=%s: want a decimal number", seed_env);
		printf("torture: seed %" PRIu64 " for %d s, %d clients%s%s\n", seed, total,
		       n_clients, getenv("TORTURE_SKIP") ? ", skipping " : "",
		       getenv("TORTURE_SKIP") ? getenv("TORTURE_SKIP") : "");
		fflush(stdout);
		violations = run_seed(seed, total, n_clients, skip_beh, skip_kind, slack);
		cr_assert_eq(violations, 0, "seed %" PRIu64 ": %ld violations (the first: %s)",
			     seed, violations, R.first_violation);
		return;
	}
	if (!is_random) {
		int each = total / N_FIXED > 5 ? total / N_FIXED : 5;

		printf("torture: seeds %" PRIu64 " %" PRIu64 " %" PRIu64 ", %d s each, %d clients "
		       "(TORTURE_SEED=N TORTURE_SECONDS=%d replays one)%s%s\n", fixed[0], fixed[1],
		       fixed[2], each, n_clients, each, getenv("TORTURE_SKIP") ? ", skipping " : "",
		       getenv("TORTURE_SKIP") ? getenv("TORTURE_SKIP") : "");
		fflush(stdout);
		for (int k = 0; k < N_FIXED; k++) {
			long v = run_seed(fixed[k], each, n_clients, skip_beh, skip_kind, slack);

			n_seeds++;
			violations += v;
			if (v)
				failed[n_failed++] = fixed[k];
		}
	} else {
		printf("torture: random seeds of %d s each for %d s, %d clients%s%s\n", run_s,
		       total, n_clients, getenv("TORTURE_SKIP") ? ", skipping " : "",
		       getenv("TORTURE_SKIP") ? getenv("TORTURE_SKIP") : "");
		fflush(stdout);
		t_end = now_ms() + (int64_t)total * 1000;
		/* bounded by the total time: each seed's run is at least 5 s */
		while (now_ms() + 5000 <= t_end) {
			uint64_t seed = 0;
			int left = (int)((t_end - now_ms()) / 1000);
			int secs = left < run_s ? left : run_s;
			long v;

			cr_assert(getrandom(&seed, sizeof(seed), 0) == sizeof(seed));
			seed &= (1ULL << 40) - 1;	/* short enough to type */
			printf("torture: seed %" PRIu64 " (random) for %d s\n", seed, secs);
			fflush(stdout);
			v = run_seed(seed, secs, n_clients, skip_beh, skip_kind, slack);
			n_seeds++;
			violations += v;
			if (v && n_failed < 64)
				failed[n_failed++] = seed;
		}
	}
	free_run();
	printf("\ntorture: %ld seeds, %ld failed%s", n_seeds, n_failed, n_failed ? ":" : "\n");
	for (long k = 0; k < n_failed; k++)
		printf(" %" PRIu64 "%s", failed[k], k + 1 == n_failed ? "\n" : "");
	fflush(stdout);
	cr_assert_eq(n_failed, 0, "%ld of %ld seeds broke the one rule (%ld violations); each "
		     "prints TORTURE VIOLATION lines and a replay command above", n_failed, n_seeds,
		     violations);
}
