/*
 * metrics.c — /metrics in the Prometheus text format, from the merged /stats tree.
 * Each /stats figure maps to one family through the tables below (a field missing from
 * them is missing from /metrics: test_metrics fails on it). Families are written whole, one
 * after the other, each with HELP and TYPE. Also build, process and reload figures, which
 * /stats does not carry.
 */
#include "gateway/metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "gateway/stats_types.h"

/* ------------------------------------------------------------ what main records */

/* 100 µs .. 10 s: a q query ranges from a cached lookup to a scan of a day's data */
const uint64_t gw_metrics_le_us[] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};
const size_t gw_metrics_n_le = sizeof(gw_metrics_le_us) / sizeof(gw_metrics_le_us[0]);
/* struct gw_hist keeps one exact counter per bound */
_Static_assert(sizeof(gw_metrics_le_us) / sizeof(gw_metrics_le_us[0]) == GW_HIST_N_LE,
	       "GW_HIST_N_LE must be the number of gw_metrics_le_us bounds");

static const char *build_version = "unknown";
/* written by the main thread, read by the worker serving /metrics */
static int cfg_is_ok;
static uint64_t cfg_ok_unix_ms, reloads_ok, reloads_failed;

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void gw_metrics_init(const char *version)
{
	build_version = version;
	__atomic_store_n(&cfg_ok_unix_ms, unix_ms(), __ATOMIC_RELAXED);
	__atomic_store_n(&cfg_is_ok, 1, __ATOMIC_RELEASE);
}

void gw_metrics_note_config(bool is_ok)
{
	if (is_ok) {
		__atomic_store_n(&cfg_ok_unix_ms, unix_ms(), __ATOMIC_RELAXED);
		__atomic_add_fetch(&reloads_ok, 1, __ATOMIC_RELAXED);
	} else {
		__atomic_add_fetch(&reloads_failed, 1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&cfg_is_ok, is_ok ? 1 : 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ text helpers */

static void help_type(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* a label value as the exposition format wants it: \ " and newline escaped */
static void put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* name{k0="v0",k1="v1"} — n pairs, none when n is 0 */
static void series(FILE *f, const char *name, const char *suffix, size_t n,
		   const char *const kv[])
{
	fputs(name, f);
	fputs(suffix, f);
	if (n == 0) {
		fputc(' ', f);
		return;
	}
	fputc('{', f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s%s=\"", i ? "," : "", kv[2 * i]);
		put_escaped(f, kv[2 * i + 1]);
		fputc('"', f);
	}
	fputs("} ", f);
}

static long long jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* microseconds as seconds, exactly: 2500 -> "0.0025", 10000000 -> "10"; returns buf */
static const char *us_text(char buf[48], uint64_t us)
{
	char frac[8];
	int n = snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(us % 1000000));

	while (n > 0 && frac[n - 1] == '0')
		frac[--n] = '\0';
	snprintf(buf, 48, "%llu%s%s", (unsigned long long)(us / 1000000), n ? "." : "", frac);
	return buf;
}

static void put_us_as_s(FILE *f, uint64_t us)
{
	char buf[48];

	fputs(us_text(buf, us), f);
}

/* ------------------------------------------------------------ /stats figures */

enum conv {
	V_INT = 0,	/* the integer as it is */
	V_US_S,		/* microseconds -> seconds */
	V_MONO_MS,	/* an instant on the monotonic clock in ms -> Unix time in s, 0: never */
	V_IS_UP,	/* a state string -> 1 when "up" */
	V_BOOL,		/* true -> 1, false or absent -> 0 */
	V_IS_AUTO,	/* a mode string -> 1 when "auto" */
};

struct fam {
	const char *key;	/* the /stats field */
	const char *name;
	const char *type;
	const char *help;
	enum conv conv;
};

struct clocks {
	double unix_s;
	uint64_t mono_ms;
};

static void put_value(FILE *f, json_t *o, const struct fam *m, const struct clocks *ck)
{
	json_t *v = json_object_get(o, m->key);

	switch (m->conv) {
	case V_INT:
		fprintf(f, "%lld\n", (long long)json_integer_value(v));
		break;
	case V_US_S:
		put_us_as_s(f, (uint64_t)json_integer_value(v));
		fputc('\n', f);
		break;
	case V_MONO_MS: {
		long long ms = (long long)json_integer_value(v);
		double t = ms <= 0 ? 0 : ck->unix_s - (double)((long long)ck->mono_ms - ms) / 1e3;
		fprintf(f, "%.3f\n", t);
		break;
	}
	case V_IS_UP:
		fprintf(f, "%d\n", strcmp(jstr(o, m->key), "up") == 0);
		break;
	case V_BOOL:
		fprintf(f, "%d\n", json_is_true(v));
		break;
	case V_IS_AUTO:
		fprintf(f, "%d\n", strcmp(jstr(o, m->key), "auto") == 0);
		break;
	}
}

static const struct fam gateway_fams[] = {
	{ "workers", "qgate_workers", "gauge", "Worker threads running.", V_INT },
	{ "clients", "qgate_clients", "gauge", "Clients connected, all listeners.", V_INT },
	{ "login_throttled", "qgate_login_throttled_total", "counter",
	  "Logins refused by their address's throttle: too many failures "
	  "(limits.login_failures_max) or checks at once (limits.login_pending_max).",
	  V_INT },
	{ "held_bytes", "qgate_held_bytes", "gauge",
	  "Bytes of requests and answers held in qgate's buffers.", V_INT },
	{ "budget_pauses", "qgate_budget_pauses_total", "counter",
	  "Times clients stopped being read because limits.max_buffered_bytes was spent.", V_INT },
	{ "protocol_errors", "qgate_protocol_errors_total", "counter",
	  "Clients closed for sending bytes that are not q IPC.", V_INT },
	{ "slow_clients_closed", "qgate_slow_clients_closed_total", "counter",
	  "Clients closed for not reading their answers (limits.client_output_timeout_ms).",
	  V_INT },
	{ "sq_full", "qgate_sq_full_total", "counter",
	  "Times a worker found its io_uring submission queue full.", V_INT },
	{ "rx_enobufs", "qgate_rx_enobufs_total", "counter",
	  "Receives that found no provided buffer free (ENOBUFS).", V_INT },
	{ "cq_overflows", "qgate_cq_overflows_total", "counter",
	  "io_uring completion queue overflows.", V_INT },
	{ "bytes_zero_copy", "qgate_zero_copy_bytes_total", "counter",
	  "Answer bytes sent from the receive buffers they arrived in, without a copy "
	  "(limits.zero_copy_bytes).", V_INT },
	{ "rx_buffers_lent", "qgate_rx_buffers_lent", "gauge",
	  "Receive buffers holding answer bytes that wait to be sent (at most half of "
	  "limits.rx_buffers per worker).", V_INT },
	{ "inflight_wakeups", "qgate_inflight_wakeups_total", "counter",
	  "Times a worker handed a freed max_inflight slot to another worker.", V_INT },
	{ "ring_enters", "qgate_ring_enters_total", "counter",
	  "io_uring_enter system calls the workers made (submits and waits).", V_INT },
	{ "loop_turns", "qgate_loop_turns_total", "counter",
	  "Turns of the workers' event loops.", V_INT },
};

static const struct fam listener_fams[] = {
	{ "clients", "qgate_listener_clients", "gauge", "Clients connected to the listener.",
	  V_INT },
	{ "accepted", "qgate_listener_accepted_connections_total", "counter",
	  "Connections the listener accepted.", V_INT },
};

static const struct fam pool_fams[] = {
	{ "state", "qgate_pool_up", "gauge", "1 when some backend of the pool is up.", V_IS_UP },
	{ "paused", "qgate_pool_paused", "gauge",
	  "1 while an admin holds the pool's new requests in its queue (.qgate.pause).", V_BOOL },
	{ "queued", "qgate_pool_queued_requests", "gauge",
	  "Requests waiting in the pool's queue for a backend connection.", V_INT },
	{ "requests", "qgate_pool_requests_total", "counter", "Requests routed to the pool.",
	  V_INT },
	{ "errors", "qgate_pool_errors_total", "counter",
	  "Requests of the pool answered with a qgate: error.", V_INT },
	{ "queue_full", "qgate_pool_queue_full_total", "counter",
	  "Requests refused because the pool's queue was full (queue.max).", V_INT },
	{ "queue_timeouts", "qgate_pool_queue_timeouts_total", "counter",
	  "Requests that waited queue.timeout_ms in the queue and were refused.", V_INT },
	{ "timeouts", "qgate_pool_timeouts_total", "counter",
	  "Requests not answered within the query timeout.", V_INT },
	{ "dropped_unsolicited", "qgate_pool_dropped_unsolicited_total", "counter",
	  "Messages a backend started on a shared connection, dropped (no client owns them).",
	  V_INT },
	{ "unsolicited_closes", "qgate_pool_unsolicited_closes_total", "counter",
	  "Backend connections closed for an answer nobody was owed.", V_INT },
	{ "health_failures", "qgate_pool_health_failures_total", "counter",
	  "Health checks of the pool's backends that failed.", V_INT },
	{ "affinity_moves", "qgate_pool_affinity_moves_total", "counter",
	  "Requests sent to another backend than their affinity key's usual one.", V_INT },
	{ "dedicated", "qgate_pool_dedicated_connections", "gauge",
	  "Dedicated backend connections open (requests that could not share one).", V_INT },
	{ "sessions", "qgate_pool_session_connections", "gauge",
	  "Session backend connections open (session pools: one per client).", V_INT },
	{ "started", "qgate_pool_started_workers", "gauge",
	  "Workers that opened the pool's connections (lazy pools: on first use).", V_INT },
	{ "cost_entries", "qgate_pool_cost_entries", "gauge",
	  "Call costs the pool has learned (entries in use, summed over the workers).", V_INT },
};

static const struct fam backend_fams[] = {
	{ "state", "qgate_backend_up", "gauge",
	  "1 when the backend has a connection up (any worker) and is not disabled.", V_IS_UP },
	{ "disabled", "qgate_backend_disabled", "gauge",
	  "1 while an admin has disabled the backend (.qgate.disable): it takes nothing new.",
	  V_BOOL },
	{ "requests", "qgate_backend_requests_total", "counter",
	  "Requests sent to the backend.", V_INT },
	{ "errors", "qgate_backend_errors_total", "counter",
	  "Requests whose connection to the backend closed before their answer.", V_INT },
	{ "reconnects", "qgate_backend_reconnects_total", "counter",
	  "Connections to the backend opened again after one closed.", V_INT },
	{ "spare_opens", "qgate_backend_spare_opens_total", "counter",
	  "Spare connections opened beyond `connections` (max_inflight auto) while the load needed them.",
	  V_INT },
	{ "lookups", "qgate_backend_lookups_total", "counter",
	  "Lookups of the backend's host name (0 for a numeric address).", V_INT },
	{ "lookup_failures", "qgate_backend_lookup_failures_total", "counter",
	  "Lookups of the backend's host name that failed.", V_INT },
	{ "outstanding", "qgate_backend_outstanding_requests", "gauge",
	  "Requests of this gateway sent to the backend and not answered yet.", V_INT },
	{ "bytes_in", "qgate_backend_received_bytes_total", "counter",
	  "Bytes received from the backend.", V_INT },
	{ "bytes_out", "qgate_backend_sent_bytes_total", "counter",
	  "Bytes sent to the backend.", V_INT },
	{ "weight", "qgate_backend_weight", "gauge", "The backend's configured weight.", V_INT },
	{ "inflight", "qgate_backend_inflight_requests", "gauge",
	  "Requests the backend runs now, counted over every worker and pool naming it.", V_INT },
	{ "max_inflight", "qgate_backend_max_inflight_requests", "gauge",
	  "The backend's max_inflight: requests it may run at once (auto: the limit now).",
	  V_INT },
	{ "max_inflight_mode", "qgate_backend_max_inflight_auto", "gauge",
	  "1 when the backend's max_inflight is \"auto\" (learned), 0 when fixed.", V_IS_AUTO },
	{ "min_rtt_us", "qgate_backend_min_rtt_seconds", "gauge",
	  "Auto max_inflight: the backend's no-load answer time as the limiter measured it.",
	  V_US_S },
	{ "short_rtt_us", "qgate_backend_short_rtt_seconds", "gauge",
	  "Auto max_inflight: the median answer time of the limiter's last window.", V_US_S },
	{ "connect_ok_ms", "qgate_backend_last_connect_success_timestamp_seconds", "gauge",
	  "Session pools: when the last session connection came up, Unix time; 0 never.",
	  V_MONO_MS },
	{ "connect_failed_ms", "qgate_backend_last_connect_failure_timestamp_seconds", "gauge",
	  "Session pools: when the last session connection failed, Unix time; 0 never.",
	  V_MONO_MS },
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *const backend_states[] = { "up", "connecting", "down", "disabled",
					       "draining" };
static const char *const conn_states[] = { "idle", "busy", "connecting" };

/* one family over each object of an array, labelled label="its name" */
static void per_object(FILE *f, json_t *arr, const char *label, const struct fam *m,
		       const struct clocks *ck)
{
	size_t i;
	json_t *o;

	help_type(f, m->name, m->type, m->help);
	json_array_foreach(arr, i, o) {
		const char *kv[] = { label, jstr(o, "name") };
		series(f, m->name, "", 1, kv);
		put_value(f, o, m, ck);
	}
}

/* every backend b of every pool p */
#define EACH_BACKEND(ps, i, p, j, b)                                                  \
	json_array_foreach((ps), (i), (p))                                             \
		json_array_foreach(json_object_get((p), "backends"), (j), (b))

static void backend_figures(FILE *f, json_t *ps, const struct clocks *ck)
{
	size_t i, j, k;
	json_t *p, *b;

	for (k = 0; k < N_OF(backend_fams); k++) {
		const struct fam *m = &backend_fams[k];
		help_type(f, m->name, m->type, m->help);
		EACH_BACKEND(ps, i, p, j, b) {
			const char *kv[] = { "pool", jstr(p, "name"), "backend", jstr(b, "name") };
			series(f, m->name, "", 2, kv);
			put_value(f, b, m, ck);
		}
	}
	help_type(f, "qgate_backend_state", "gauge",
		  "1 for the backend's state (up: a connection up, connecting, down; disabled by an "
		  "admin, draining while it still runs requests), 0 for the others.");
	EACH_BACKEND(ps, i, p, j, b)
		for (k = 0; k < N_OF(backend_states); k++) {
			const char *kv[] = { "pool", jstr(p, "name"), "backend", jstr(b, "name"),
					     "state", backend_states[k] };
			series(f, "qgate_backend_state", "", 3, kv);
			fprintf(f, "%d\n", strcmp(jstr(b, "state"), backend_states[k]) == 0);
		}
	help_type(f, "qgate_backend_connections", "gauge",
		  "Pooled connections to the backend by state (busy includes draining).");
	EACH_BACKEND(ps, i, p, j, b) {
		json_t *conns = json_object_get(b, "connections");
		for (k = 0; k < N_OF(conn_states); k++) {
			const char *kv[] = { "pool", jstr(p, "name"), "backend", jstr(b, "name"),
					     "state", conn_states[k] };
			series(f, "qgate_backend_connections", "", 3, kv);
			fprintf(f, "%lld\n", jint(conns, conn_states[k]));
		}
	}
}

/* per backend: the histogram (latency.le_us: cumulative counts at gw_metrics_le_us) and
 * the max */
static void latency_figures(FILE *f, json_t *ps)
{
	static const char *const name = "qgate_request_duration_seconds";
	size_t i, j, k;
	json_t *p, *b;

	help_type(f, name, "histogram",
		  "Time from a request complete in qgate to its answer complete, for the answers "
		  "the backend sent.");
	EACH_BACKEND(ps, i, p, j, b) {
		json_t *lat = json_object_get(b, "latency"), *cum = json_object_get(lat, "le_us");
		char le[48];
		const char *kv[] = { "pool", jstr(p, "name"), "backend", jstr(b, "name"), "le", le };
		for (k = 0; k < gw_metrics_n_le; k++) {
			char key[24];
			snprintf(key, sizeof(key), "%llu", (unsigned long long)gw_metrics_le_us[k]);
			us_text(le, gw_metrics_le_us[k]);
			series(f, name, "_bucket", 3, kv);
			fprintf(f, "%lld\n", jint(cum, key));
		}
		snprintf(le, sizeof(le), "+Inf");
		series(f, name, "_bucket", 3, kv);
		fprintf(f, "%lld\n", jint(lat, "count"));
		series(f, name, "_sum", 2, kv);
		put_us_as_s(f, (uint64_t)jint(lat, "sum_us"));
		fputc('\n', f);
		series(f, name, "_count", 2, kv);
		fprintf(f, "%lld\n", jint(lat, "count"));
	}
	help_type(f, "qgate_request_duration_max_seconds", "gauge",
		  "The longest request_duration since qgate started.");
	EACH_BACKEND(ps, i, p, j, b) {
		const char *kv[] = { "pool", jstr(p, "name"), "backend", jstr(b, "name") };
		series(f, "qgate_request_duration_max_seconds", "", 2, kv);
		put_us_as_s(f, (uint64_t)jint(json_object_get(b, "latency"), "max_us"));
		fputc('\n', f);
	}
}

/* ------------------------------------------------------------ process, build, config */

struct proc_stat {
	bool is_ok;
	double cpu_s, start_unix_s;
	unsigned long long vsize, rss_pages;
};

/* now on clk, in seconds */
static double clock_s(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * /proc/self/stat fields 14-15 (utime, stime), 22-24 (starttime, vsize, rss), proc(5).
 * starttime counts clock ticks since boot on the boot clock, so the boot was at
 * CLOCK_REALTIME - CLOCK_BOOTTIME: no /proc/stat (btime) needed, which a unit with
 * ProcSubset=pid hides (only the process's own /proc/PID is left).
 */
static struct proc_stat read_proc_stat(void)
{
	struct proc_stat ps = { 0 };
	char buf[1024], *p;
	unsigned long long ut, st, start;
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');	/* the command name may hold spaces and parentheses */
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
			 "%*d %*d %*d %*d %llu %llu %llu", &ut, &st, &start, &ps.vsize,
			 &ps.rss_pages) != 5)
		return ps;
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	double boot_unix_s = clock_s(CLOCK_REALTIME) - clock_s(CLOCK_BOOTTIME);
	ps.cpu_s = (double)(ut + st) / (double)hz;
	ps.start_unix_s = boot_unix_s + (double)start / (double)hz;
	ps.is_ok = true;
	return ps;
}

/* open descriptors, not counting the one reading the directory; -1 when unreadable */
static long count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			n++;
	closedir(d);
	return n;
}

static void process_figures(FILE *f)
{
	struct proc_stat ps = read_proc_stat();
	struct rlimit rl;
	long fds = count_fds();

	if (ps.is_ok) {
		help_type(f, "process_cpu_seconds_total", "counter",
			  "Total user and system CPU time spent in seconds.");
		fprintf(f, "process_cpu_seconds_total %.2f\n", ps.cpu_s);
		help_type(f, "process_start_time_seconds", "gauge",
			  "Start time of the process since unix epoch in seconds.");
		fprintf(f, "process_start_time_seconds %.2f\n", ps.start_unix_s);
		help_type(f, "process_resident_memory_bytes", "gauge",
			  "Resident memory size in bytes.");
		fprintf(f, "process_resident_memory_bytes %llu\n",
			ps.rss_pages * (unsigned long long)sysconf(_SC_PAGESIZE));
		help_type(f, "process_virtual_memory_bytes", "gauge",
			  "Virtual memory size in bytes.");
		fprintf(f, "process_virtual_memory_bytes %llu\n", ps.vsize);
	}
	if (fds >= 0) {
		help_type(f, "process_open_fds", "gauge", "Number of open file descriptors.");
		fprintf(f, "process_open_fds %ld\n", fds);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		help_type(f, "process_max_fds", "gauge",
			  "Maximum number of open file descriptors.");
		fprintf(f, "process_max_fds %llu\n", rl.rlim_cur == RLIM_INFINITY ? 0ULL :
			(unsigned long long)rl.rlim_cur);
	}
}

static void build_and_config(FILE *f)
{
	const char *kv[] = { "version", build_version,
			     "openssl", OpenSSL_version(OPENSSL_VERSION_STRING) };
	int is_ok = __atomic_load_n(&cfg_is_ok, __ATOMIC_ACQUIRE);
	uint64_t ok_ms = __atomic_load_n(&cfg_ok_unix_ms, __ATOMIC_RELAXED);

	help_type(f, "qgate_build_info", "gauge",
		  "Always 1; the labels say which qgate and which OpenSSL run.");
	series(f, "qgate_build_info", "", 2, kv);
	fputs("1\n", f);
	help_type(f, "qgate_config_last_reload_success", "gauge",
		  "1 when the last configuration load or SIGHUP reload succeeded, 0 when it was "
		  "refused (the previous configuration still runs).");
	fprintf(f, "qgate_config_last_reload_success %d\n", is_ok);
	help_type(f, "qgate_config_last_reload_success_timestamp_seconds", "gauge",
		  "When the running configuration was loaded, Unix time.");
	fprintf(f, "qgate_config_last_reload_success_timestamp_seconds %llu.%03llu\n",
		(unsigned long long)(ok_ms / 1000), (unsigned long long)(ok_ms % 1000));
	help_type(f, "qgate_config_reloads_total", "counter",
		  "SIGHUP reloads by result: success (the new configuration runs) or failure "
		  "(refused).");
	fprintf(f, "qgate_config_reloads_total{result=\"success\"} %llu\n",
		(unsigned long long)__atomic_load_n(&reloads_ok, __ATOMIC_RELAXED));
	fprintf(f, "qgate_config_reloads_total{result=\"failure\"} %llu\n",
		(unsigned long long)__atomic_load_n(&reloads_failed, __ATOMIC_RELAXED));
}

/* ------------------------------------------------------------ the whole text */

char *gw_metrics_text(json_t *merged)
{
	char *text = NULL;
	size_t len = 0, k;
	FILE *f = open_memstream(&text, &len);
	json_t *ps = json_object_get(merged, "pools");
	struct clocks ck;
	struct timespec mono, real;

	if (!f)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	ck.mono_ms = (uint64_t)mono.tv_sec * 1000 + (uint64_t)mono.tv_nsec / 1000000;
	ck.unix_s = (double)real.tv_sec + (double)real.tv_nsec / 1e9;

	build_and_config(f);
	for (k = 0; k < N_OF(gateway_fams); k++) {
		const struct fam *m = &gateway_fams[k];
		help_type(f, m->name, m->type, m->help);
		series(f, m->name, "", 0, NULL);
		put_value(f, json_object_get(merged, "gateway"), m, &ck);
	}
	for (k = 0; k < N_OF(listener_fams); k++)
		per_object(f, json_object_get(merged, "listeners"), "listener", &listener_fams[k],
			   &ck);
	for (k = 0; k < N_OF(pool_fams); k++)
		per_object(f, ps, "pool", &pool_fams[k], &ck);
	backend_figures(f, ps, &ck);
	latency_figures(f, ps);
	process_figures(f);
	bool is_bad = ferror(f) != 0;
	if (fclose(f) != 0 || is_bad) {
		free(text);
		return NULL;
	}
	return text;
}
