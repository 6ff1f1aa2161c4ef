/*
 * main.c — qgate's command line: run the gateway (-c FILE), validate a config (--check),
 * make a password hash (--hash-password), print the version. Runs `workers` worker
 * threads, each with its own ring, listeners (TCP: SO_REUSEPORT; Unix: a dup of one shared
 * socket, lshare.h) and backend connections;
 * the main thread only waits for signals: SIGTERM/SIGINT stop, SIGHUP reloads the file
 * (a bad file is refused and the running configuration kept); an admin's reload
 * (.qgate.reload[], POST /admin/reload) runs the same function on a worker thread. Under
 * systemd (notify.h) it also reports READY/RELOADING/STOPPING and a status line, and feeds
 * the watchdog while every worker's loop is turning.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "gateway/actions.h"
#include "gateway/claim.h"
#include "gateway/config.h"
#include "gateway/log.h"
#include "gateway/lshare.h"
#include "gateway/metrics.h"
#include "gateway/notify.h"
#include "gateway/pwhash.h"
#include "gateway/resolve.h"
#include "gateway/shared.h"
#include "gateway/tls.h"
#include "gateway/worker.h"

#ifndef QGATE_VERSION	/* meson passes project()'s version */
#define QGATE_VERSION "0.1.0"
#endif

struct worker_thread {
	pthread_t tid;
	struct gw_worker w;
	const struct gw_config *cfg;
	int id;
	volatile int *stop;
	/* start-up handshake with the main thread */
	pthread_mutex_t *mu;
	pthread_cond_t *cv;
	int *n_ready;
	int init_ret;
	int run_ret;
	struct gw_worker *const *peers;
	int n_peers;
	int is_done;	/* __atomic: the thread is about to return */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: qgate -c FILE.json          run the gateway\n"
		   "       qgate --check -c FILE.json  validate a config and exit\n"
		   "       qgate --hash-password       read a password on stdin, print its hash\n"
		   "       qgate --version\n");
}

static void *worker_main(void *arg)
{
	struct worker_thread *t = arg;

	/* the ring must be created by the thread that submits to it (SINGLE_ISSUER) */
	t->init_ret = gw_worker_init(&t->w, t->cfg, t->id, t->stop, t->peers, t->n_peers);
	pthread_mutex_lock(t->mu);
	(*t->n_ready)++;
	pthread_cond_broadcast(t->cv);
	pthread_mutex_unlock(t->mu);
	if (t->init_ret == 0)
		t->run_ret = gw_worker_run(&t->w);
	gw_worker_destroy(&t->w);
	__atomic_store_n(&t->is_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int hash_password(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);

	if (n <= 0) {
		fprintf(stderr, "qgate: no password on stdin\n");
		free(line);
		return 1;
	}
	size_t len = strcspn(line, "\r\n");
	line[len] = '\0';
	int rc = 1;
	if (len == 0) {
		fprintf(stderr, "qgate: empty password\n");
	} else if (len > GW_PW_MAX_BYTES) {
		/* the same maximum as at login: a longer one could never log in */
		fprintf(stderr, "qgate: password longer than %d bytes (the maximum)\n",
			GW_PW_MAX_BYTES);
	} else {
		char *h = gw_pw_hash_iter(line, len, GW_PW_ITER_DEFAULT);
		if (!h) {
			fprintf(stderr, "qgate: hashing failed\n");
		} else {
			printf("%s\n", h);
			free(h);
			rc = 0;
		}
	}
	OPENSSL_cleanse(line, cap);
	free(line);
	return rc;
}

/* --check: load every TLS file and cipher list as the workers will, each failure named by
 * its path in the file. */
static int check_tls(const struct gw_config *cfg)
{
	char why[320];
	int bad = 0;

	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct gw_tls_cfg *t = cfg->listeners[i].tls;
		const char *f = t ? gw_tls_check(t, true, why, sizeof(why)) : NULL;
		if (f) {
			fprintf(stderr, "listeners[%zu].tls.%s: %s\n", i, f, why);
			bad = 1;
		}
	}
	for (size_t i = 0; i < cfg->n_pools; i++) {
		for (size_t b = 0; b < cfg->pools[i].n_backends; b++) {
			const struct gw_tls_cfg *t = cfg->pools[i].backends[b].tls;
			const char *f = t ? gw_tls_check(t, false, why, sizeof(why)) : NULL;
			if (f) {
				fprintf(stderr, "pools[%zu].backends[%zu].tls.%s: %s\n", i, b, f, why);
				bad = 1;
			}
		}
	}
	return bad;
}

/* --check: a backend host name that does not resolve (with the resolver settings qgate will
 * use) is a warning, not an error: DNS may answer by the time the gateway runs, and the
 * gateway retries it with backoff anyway. */
static void check_names(const struct gw_config *cfg)
{
	char why[256];

	for (size_t i = 0; i < cfg->n_pools; i++) {
		for (size_t b = 0; b < cfg->pools[i].n_backends; b++) {
			const struct gw_addr *a = &cfg->pools[i].backends[b].addr;
			struct sockaddr_storage ss;
			socklen_t len;
			if (gw_resolve_numeric(a, &ss, &len) != -EAGAIN)
				continue;
			if (gw_resolve_check(cfg, a->host, why, sizeof(why)) < 0)
				fprintf(stderr, "warning: pools[%zu].backends[%zu].address: \"%s\" does "
					"not resolve (%s)\n", i, b, a->host, why);
		}
	}
}

/* Every configuration accepted stays alive until exit: retired pools and backends, clients
 * (their user's entry), requests (their backend's name) and the admin table's checks point
 * in, and nothing counts those pointers. A reload of an unchanged file keeps nothing new. */
struct cfg_list {
	struct gw_config **v;
	size_t n;
};

static struct gw_claims claims;	/* listening addresses this process holds (main thread) */

/* a free-text reason as one logfmt line */
static void log_reason(const char *why)
{
	char v[512];

	gw_log_value(v, sizeof(v), why);
	gw_err("msg=\"configuration refused\" reason=%s", v);
}

/*
 * What a reload needs, set by run() before the workers start: SIGHUP (main thread) and
 * .qgate.reload[] / POST /admin/reload (a worker thread, actions.h) both run reload_file,
 * one at a time.
 */
static struct {
	pthread_mutex_t mu;
	const char *path;
	struct cfg_list *cl;
	struct worker_thread *ts;
	int n;
	const struct gw_config *latest;	/* the last configuration accepted (or the first) */
	bool is_stopping;	/* SIGTERM came: no reload is accepted any more */
} rl = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* The file holds exactly the bytes cur was built from, and cur kept no other file's content
 * (password_file, token_file): loading it again would build the same configuration. */
static bool file_unchanged(const char *path, const struct gw_config *cur)
{
	struct stat st;
	bool is_same = false;

	if (!cur || !cur->source || cur->has_secret_files)
		return false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == cur->source_len) {
		char *buf = malloc(cur->source_len + 1);
		size_t len = 0;
		/* one byte more than expected: a file that grew meanwhile is not the same */
		for (int guard = 0; buf && len <= cur->source_len && guard < 100000; guard++) {
			ssize_t k = read(fd, buf + len, cur->source_len + 1 - len);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			len += (size_t)k;
		}
		is_same = buf && len == cur->source_len && memcmp(buf, cur->source, len) == 0;
		free(buf);
	}
	close(fd);
	return is_same;
}

/* Load, check and hand the file to every worker. 0, -ESHUTDOWN while stopping, or -1 with
 * the first error lines in err (err_n bytes; may be NULL). Any thread. */
static int reload_file(char *err, size_t err_n)
{
	char *errs = NULL;
	char why[256];
	size_t o = 0;

	pthread_mutex_lock(&rl.mu);
	if (rl.is_stopping) {
		/* the workers are finishing: a new listener or pool now would outlive nothing */
		gw_info("msg=\"reload refused: the gateway is stopping\"");
		if (err)
			snprintf(err, err_n, "gateway stopping");
		pthread_mutex_unlock(&rl.mu);
		return -ESHUTDOWN;
	}
	const char *path = rl.path;
	char fv[1024];	/* the file's name as a log value */
	gw_log_value(fv, sizeof(fv), path);
	if (file_unchanged(path, rl.latest)) {
		/* nothing new is built or kept: the workers take the same configuration again,
		 * which reads the TLS files again (certificate rotation) */
		for (int i = 0; i < rl.n; i++)
			__atomic_store_n(&rl.ts[i].w.pending_cfg, rl.latest, __ATOMIC_RELEASE);
		gw_metrics_note_config(true);
		gw_info("msg=\"reload: configuration unchanged, TLS files are read again\" file=%s",
			fv);
		pthread_mutex_unlock(&rl.mu);
		return 0;
	}
	struct gw_config *cfg = gw_cfg_load(path, &errs);
	if (!cfg) {
		gw_err("msg=\"reload: new configuration refused; keeping the running one\" file=%s",
		       fv);
		for (char *line = errs, *next; line && *line; line = next) {
			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			char v[512];
			gw_log_value(v, sizeof(v), line);
			gw_err("config_error=%s", v);
			if (err && o + 3 < err_n) {
				int k = snprintf(err + o, err_n - o, "%s%s", o ? "; " : "", line);
				o += k > 0 ? (size_t)k : 0;
			}
		}
		free(errs);
		gw_metrics_note_config(false);
		pthread_mutex_unlock(&rl.mu);
		return -1;
	}
	if (gw_claims_take(&claims, cfg, why, sizeof(why)) < 0) {
		gw_err("msg=\"reload: new configuration refused; keeping the running one\" file=%s",
		       fv);
		log_reason(why);
		if (err)
			snprintf(err, err_n, "%s", why);
		gw_cfg_free(cfg);
		gw_metrics_note_config(false);
		pthread_mutex_unlock(&rl.mu);
		return -1;
	}
	struct cfg_list *cl = rl.cl;
	struct gw_config **v = realloc(cl->v, (cl->n + 1) * sizeof(*v));
	if (!v) {
		gw_cfg_free(cfg);
		gw_metrics_note_config(false);
		if (err)
			snprintf(err, err_n, "out of memory");
		pthread_mutex_unlock(&rl.mu);
		return -1;
	}
	cl->v = v;
	cl->v[cl->n++] = cfg;
	rl.latest = cfg;
	gw_log_set_level(cfg->log_level);
	gw_log_set_format(cfg->log_format);
	/* admin state of pools and backends that are gone is forgotten (actions.h) */
	gw_actions_prune(cfg);
	for (int i = 0; i < rl.n; i++) {
		__atomic_store_n(&rl.ts[i].w.pending_cfg, cfg, __ATOMIC_RELEASE);
		gw_worker_poke(&rl.ts[i].w);	/* an idle worker may be asleep for a while */
	}
	gw_metrics_note_config(true);
	gw_info("msg=\"reload: configuration accepted, workers apply it within a tick\" file=%s",
		fv);
	pthread_mutex_unlock(&rl.mu);
	return 0;
}

/* systemd's status line: what the workers last published (each tick), and the last event. */
static void notify_status(struct worker_thread *ts, int n, const char *event, bool is_ready)
{
	uint32_t clients = 0, up = 0, all = 0;
	char line[256];

	if (!gw_notify_is_enabled())
		return;
	for (int i = 0; i < n; i++)
		clients += __atomic_load_n(&ts[i].w.alive_clients, __ATOMIC_RELAXED);
	/* every worker connects to every backend: worker 0's view stands for all */
	up = __atomic_load_n(&ts[0].w.alive_backends_up, __ATOMIC_RELAXED);
	all = __atomic_load_n(&ts[0].w.alive_backends, __ATOMIC_RELAXED);
	snprintf(line, sizeof(line), "%u clients, backends up %u/%u, %d workers; %s", clients, up,
		 all, n, event);
	if (is_ready)
		gw_notify_ready(line);
	else
		gw_notify_status(line);
}

/* The watchdog is fed only when every worker's loop has ticked within half the interval: a
 * stuck worker then stops the feeding, and systemd restarts qgate a half interval later. */
static bool workers_alive(struct worker_thread *ts, int n, uint64_t window_ms)
{
	uint64_t now = gw_now_ms();

	for (int i = 0; i < n; i++) {
		uint64_t t = __atomic_load_n(&ts[i].w.alive_ms, __ATOMIC_ACQUIRE);
		if (t + window_ms < now)
			return false;
	}
	return true;
}

static int run(const struct gw_config *cfg, const char *path, struct cfg_list *cl)
{
	int n = cfg->workers > 0 ? cfg->workers : 1;
	struct worker_thread *ts = calloc((size_t)n, sizeof(*ts));
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	volatile int stop = 0;
	int n_ready = 0, failed = 0;
	sigset_t set;

	struct gw_worker **peers = calloc((size_t)n, sizeof(*peers));
	char why[256];
	if (!ts || !peers)
		return 1;
	/* before any worker binds: a port another process holds is refused, not shared */
	if (gw_claims_take(&claims, cfg, why, sizeof(why)) < 0) {
		log_reason(why);
		free(ts);
		free(peers);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		peers[i] = &ts[i].w;
		pthread_mutex_init(&ts[i].w.snap_mu, NULL);
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);	/* inherited by the workers */
	pthread_mutex_lock(&rl.mu);
	rl.path = path;
	rl.cl = cl;
	rl.ts = ts;
	rl.n = n;
	rl.latest = cfg;
	pthread_mutex_unlock(&rl.mu);
	for (int i = 0; i < n; i++) {
		ts[i].cfg = cfg;
		ts[i].id = i;
		ts[i].stop = &stop;
		ts[i].mu = &mu;
		ts[i].cv = &cv;
		ts[i].n_ready = &n_ready;
		ts[i].peers = peers;
		ts[i].n_peers = n;
		if (pthread_create(&ts[i].tid, NULL, worker_main, &ts[i]) != 0) {
			gw_err("msg=\"cannot start worker thread\"");
			return 1;
		}
	}
	pthread_mutex_lock(&mu);
	while (n_ready < n)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < n; i++)
		if (ts[i].init_ret < 0)
			failed = 1;
	if (failed) {
		gw_err("msg=\"start-up failed\"");
		stop = 1;
	} else {
		gw_actions_set_reload(reload_file);	/* .qgate.reload[] once all are up */
		gw_info("msg=\"qgate ready\" version=%s workers=%d", QGATE_VERSION, n);
		notify_status(ts, n, "started", true);
	}
	/* Under systemd the wait wakes every half watchdog interval (or 5 s, for the status
	 * line); otherwise it sleeps until a signal. */
	uint64_t wd_half_ms = gw_notify_watchdog_usec() / 2000;
	uint64_t period_ms = wd_half_ms && wd_half_ms < 5000 ? wd_half_ms : 5000;
	uint64_t next_status_ms = gw_now_ms() + 5000;
	const char *event = "started";
	if (wd_half_ms && !failed && workers_alive(ts, n, wd_half_ms))
		gw_notify_watchdog();
	while (!stop) {
		int sig = 0;
		if (!gw_notify_is_enabled() || failed) {
			if (sigwait(&set, &sig) != 0)
				continue;
		} else {
			struct timespec to = { .tv_sec = (time_t)(period_ms / 1000),
					       .tv_nsec = (long)(period_ms % 1000) * 1000000L };
			sig = sigtimedwait(&set, NULL, &to);
			if (wd_half_ms && workers_alive(ts, n, wd_half_ms))
				gw_notify_watchdog();
			if (gw_now_ms() >= next_status_ms) {
				next_status_ms = gw_now_ms() + 5000;
				notify_status(ts, n, event, false);
			}
			if (sig < 0)
				continue;	/* the timeout (or EINTR) */
		}
		if (sig == SIGHUP) {
			if (!failed) {
				gw_notify_reloading();
				event = reload_file(NULL, 0) == 0 ? "configuration reloaded"
								  : "reload refused, see the log";
				notify_status(ts, n, event, true);
			}
			continue;
		}
		gw_notify_stopping();
		gw_info("msg=\"stopping\" signal=%d", sig);
		pthread_mutex_lock(&rl.mu);
		rl.is_stopping = true;	/* before the workers see stop: no reload from now on */
		pthread_mutex_unlock(&rl.mu);
		stop = 1;
	}
	/* While the workers finish, signals are still taken so that none is left pending and
	 * each is logged: a SIGHUP now reloads nothing. */
	for (;;) {
		int done = 0;
		for (int i = 0; i < n; i++)
			done += __atomic_load_n(&ts[i].is_done, __ATOMIC_ACQUIRE);
		if (done == n)
			break;
		struct timespec to = { .tv_sec = 0, .tv_nsec = 50 * 1000000L };
		int sig = sigtimedwait(&set, NULL, &to);
		if (sig == SIGHUP)
			gw_info("msg=\"SIGHUP ignored: the gateway is stopping\"");
		else if (sig > 0)
			gw_info("msg=\"already stopping\" signal=%d", sig);
	}
	for (int i = 0; i < n; i++)
		gw_worker_poke(&ts[i].w);	/* the stop is seen at once, not at the next deadline */
	for (int i = 0; i < n; i++)
		pthread_join(ts[i].tid, NULL);
	gw_worker_poke_done();
	gw_actions_set_reload(NULL);
	gw_actions_free_all();
	for (int i = 0; i < n; i++)
		if (ts[i].run_ret < 0)
			failed = 1;
	for (int i = 0; i < n; i++)
		pthread_mutex_destroy(&ts[i].w.snap_mu);
	free(ts);
	free(peers);
	gw_shared_free_all();
	gw_lshare_free_all();	/* every worker let go already; this frees the entries */
	gw_claims_free(&claims);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool is_check = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(argv[i], "--check") == 0) {
			is_check = true;
		} else if (strcmp(argv[i], "--hash-password") == 0) {
			return hash_password();
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("qgate %s\n", QGATE_VERSION);
			return 0;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "qgate: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	char *errs = NULL;
	struct gw_config *cfg = gw_cfg_load(path, &errs);
	if (!cfg) {
		fprintf(stderr, "qgate: invalid configuration %s:\n%s\n", path,
			errs ? errs : "(unknown error)");
		free(errs);
		return 1;
	}
	if (is_check) {
		/* what only loading can tell: certificates, keys and cipher lists */
		int bad = check_tls(cfg);
		check_names(cfg);
		if (!bad)
			printf("config OK\n");
		gw_cfg_free(cfg);
		return bad ? 1 : 0;
	}
	struct cfg_list cl = { .v = NULL, .n = 0 };
	signal(SIGPIPE, SIG_IGN);
	/* Chunks of 64 KiB and small requests come and go at a high rate: keep freed memory in
	 * the process instead of returning it to the kernel and faulting it in again. Messages
	 * of a megabyte or more are mapped alone: only the pages that arrive take memory, and
	 * it goes back when they go, so the process's size follows limits.max_buffered_bytes
	 * instead of its high-water mark. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	gw_log_set_level(cfg->log_level);
	gw_log_set_format(cfg->log_format);
	gw_notify_init();
	gw_metrics_init(QGATE_VERSION);
	int rc = run(cfg, path, &cl);
	gw_cfg_free(cfg);
	for (size_t i = 0; i < cl.n; i++)
		gw_cfg_free(cl.v[i]);
	free(cl.v);
	return rc;
}
