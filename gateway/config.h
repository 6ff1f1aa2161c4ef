/*
 * config — the JSON configuration file (jansson) turned into one validated, immutable
 * struct gw_config. Every error in a file is collected and reported at once, each naming
 * the JSON path of the bad field (e.g. "pools[0].backends[1].address: ..."), with the
 * line/column jansson gives for syntax errors.
 *
 * Ownership: gw_cfg_load returns a config that owns every string and array inside it;
 * free it with gw_cfg_free. Backend passwords are resolved at load time (inline,
 * password_env, password_file) and held only here; they are never logged.
 * Thread: load on the main thread; the result is read-only afterwards and may be shared.
 */
#ifndef GW_GATEWAY_CONFIG_H
#define GW_GATEWAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/addr.h"

struct gw_tls_cfg {
	char *cert_file;
	char *key_file;
	char *client_ca_file;	/* NULL: no client certificates asked */
	char *ca_file;		/* backend side: CA to verify the backend; NULL = system */
	/* backend side, cert_file/key_file (optional, together) are the gateway's client cert */
	bool is_verify;		/* backend side: verify the backend's certificate (default true) */
	char *ciphers;		/* TLS 1.2 cipher list; NULL: forward-secret AEAD suites only */
	int min_version;	/* 12 (TLS 1.2, default) or 13 */
};

enum gw_compress {
	GW_COMPRESS_OFF = 0,	/* answers pass as the backend sent them (default) */
	GW_COMPRESS_REMOTE,	/* q's rule: compress large answers to non-local clients */
	GW_COMPRESS_ALWAYS,	/* the same for every client, local ones too (testing) */
};

struct gw_listener_cfg {
	char *name;
	char *log_name;		/* name as a logfmt value (logval.h): what log lines print */
	enum gw_compress compress;
	struct gw_addr addr;
	char *pool;		/* default pool for clients of this listener (must exist) */
	struct gw_tls_cfg *tls;	/* NULL: plain */
};

struct gw_user_cfg {
	char *name;
	char *password_hash;	/* "$qgate$pbkdf2-sha256$<iter>$<salt b64>$<hash b64>" */
	char **pools;		/* pools this user may reach (NULL-terminated); NULL = all */
	size_t n_pools;
	bool is_admin;
	char **allow;		/* allowed function names/globs (NULL-terminated); NULL = all */
	size_t n_allow;
	char *default_pool;	/* "pool" field; NULL: the listener's pool */
};

enum gw_pool_mode {
	GW_MODE_QUERY = 0,
	GW_MODE_SESSION,
};

enum gw_strategy {
	GW_STRATEGY_LEAST_OUTSTANDING = 0,
	GW_STRATEGY_ROUND_ROBIN,
	GW_STRATEGY_RANDOM_TWO,
};

/* query pools: which backend a client's messages go to (values as pool/'s) */
enum gw_affinity {
	GW_AFFINITY_NONE = 0,	/* any, per message */
	GW_AFFINITY_CLIENT,	/* one per client, chosen at its first message */
	GW_AFFINITY_USER,	/* one per user name (rendezvous hashing over the backends up) */
};

struct gw_backend_cfg {
	char *name;
	char *log_name;		/* name as a logfmt value (logval.h): what log lines print */
	struct gw_addr addr;
	char *user;		/* NULL: no credentials ("" user) */
	char *password;		/* resolved from password / password_env / password_file */
	int connections;	/* default 2 */
	int weight;		/* default 1, >= 1 */
	/*
	 * Most sync requests this backend runs at once, summed over all workers (1..65535);
	 * 0 is "auto" (the default): learned from its answer times between 1 and
	 * max_inflight_ceiling (pool/limit.h). Requests beyond it wait in the pool's queue
	 * (pool/ enforces it through the shared counters of gateway/shared.c).
	 */
	uint32_t max_inflight;
	int max_inflight_ceiling;	/* default 8 */
	struct gw_tls_cfg *tls;	/* NULL: plain */
};

struct gw_reconnect_cfg {
	int attempts;		/* -1 forever (default) */
	uint32_t delay_ms;	/* 500 */
	double multiplier;	/* 2.0; 1.0 = constant */
	uint32_t max_delay_ms;	/* 30000 */
	double jitter;		/* 0.2: +-20% */
	uint32_t connect_timeout_ms; /* 2000 */
};

struct gw_health_cfg {
	uint32_t interval_ms;	/* 5000; 0 = off */
	uint32_t timeout_ms;	/* 1000 */
	int failures;		/* 3: failed checks in a row that take a backend out */
	char *query;		/* "::" */
};

struct gw_pool_cfg {
	char *name;
	char *log_name;		/* name as a logfmt value (logval.h): what log lines print */
	enum gw_pool_mode mode;
	enum gw_strategy strategy;
	enum gw_affinity affinity;	/* "none" */
	struct gw_backend_cfg *backends;
	size_t n_backends;
	uint32_t queue_max;		/* 1000 */
	uint32_t queue_timeout_ms;	/* 5000; 0 = wait forever */
	uint32_t query_timeout_ms;	/* 0 = none */
	struct gw_reconnect_cfg reconnect;
	struct gw_health_cfg health;
	uint32_t dedicated_max;		/* 256 */
	bool is_dedicated;		/* every sync request of the pool is dedicated */
	bool is_lazy;			/* "connect": "lazy" instead of "start" */
	bool is_auth_passthrough;	/* session mode: open upstream with the client's creds */
	bool is_idempotent;		/* "idempotent": a request whose backend died is retried */
};

struct gw_rule_cfg {
	char *function;		/* glob on the function name at the head of a list message */
	char *prefix;		/* prefix of a char-vector query */
	char *user;		/* exact user name */
	char *pool;		/* NULL: keep the pool chosen otherwise */
	bool is_dedicated;
	uint32_t timeout_ms;	/* 0: the pool's query_timeout_ms */
	bool is_deny;		/* "deny": true refuses with "qgate: not allowed" */
};

struct gw_limits_cfg {
	uint32_t max_clients;		/* 10000 */
	uint64_t max_message_bytes;	/* 268435456 */
	uint32_t handshake_timeout_ms;	/* 5000 */
	uint32_t client_idle_timeout_ms; /* 0 = none */
	uint32_t max_pipeline;		/* outstanding sync requests per client, 1024 */
	uint64_t client_buffer_bytes;	/* per-client response buffering high watermark, 4 MiB */
	uint32_t shutdown_grace_ms;	/* SIGTERM: time for requests in flight, 5000 */
	uint32_t drain_timeout_ms;	/* an abandoned answer may take this long, 60000 */
	uint32_t spare_idle_ms;		/* an unused spare connection closes after, 30000 */
	uint32_t rx_buffers;		/* provided receive buffers per worker (power of 2), 1024 */
	uint32_t rx_buffer_bytes;	/* size of each, 32768 */
	uint64_t stream_threshold_bytes; /* client messages above this may stream through, 256 KiB */
	uint64_t zero_copy_bytes;	/* answers this long are sent uncopied: 64 KiB */
	uint32_t client_output_timeout_ms; /* a backend paused for a client this long: 10000 */
	uint32_t login_failures_max;	/* failed logins from one address per window: 10 */
	uint32_t login_failure_window_ms; /* 60000 */
	uint32_t login_pending_max;	/* logins of one address checked or held at once: 128 */
	uint32_t login_threads;		/* password verification threads per worker: 2 */
	uint32_t message_timeout_ms;	/* a client message in transit this long: 60000 */
	uint64_t max_buffered_bytes;	/* request and answer bytes the process holds: 1 GiB */
	uint32_t ring_entries;		/* submission queue entries per worker, 8..32768: 1024 */
};

/* how backend host names are looked up (resolve.h); read at start */
struct gw_resolver_cfg {
	char **servers;		/* "ip:port" (NULL-terminated); NULL: /etc/resolv.conf's */
	size_t n_servers;
	uint32_t timeout_ms;	/* first try's timeout; 0: resolv.conf's (c-ares: 5000) */
	int tries;		/* tries per server; 0: resolv.conf's (c-ares: 4) */
};

enum gw_log_level {
	GW_LOG_ERROR = 0,
	GW_LOG_WARN,
	GW_LOG_INFO,
	GW_LOG_DEBUG,
	GW_LOG_TRACE,
};

enum gw_log_format {
	GW_LOG_FMT_LOGFMT = 0,	/* ts=... level=info msg="..." key=value */
	GW_LOG_FMT_JSON,	/* {"ts":"...","level":"info","msg":"...","key":"value"} */
};

struct gw_config {
	struct gw_listener_cfg *listeners;
	size_t n_listeners;
	bool has_auth;			/* "auth" present: only listed users get in */
	struct gw_user_cfg *users;
	size_t n_users;
	struct gw_pool_cfg *pools;
	size_t n_pools;
	struct gw_rule_cfg *rules;
	size_t n_rules;
	struct gw_addr *stats_listen;	/* NULL: no stats endpoint */
	uint32_t stats_max_connections;	/* HTTP connections at once (32); the oldest gives way */
	uint32_t stats_timeout_ms;	/* a stats connection's whole life (5000) */
	char *stats_token;		/* NULL: /stats and /metrics are open; else a bearer token */
	struct gw_limits_cfg limits;
	struct gw_resolver_cfg resolver;
	enum gw_log_level log_level;
	enum gw_log_format log_format;
	char *audit_file;
	int workers;			/* 1 */
	char *gateway_user;		/* user name a backend sees when no backend "user": "qgate" */
	/* gw_cfg_load: the file's bytes it was built from (a reload of the same bytes builds
	 * nothing new), and whether it read other files whose content it keeps (password_file,
	 * token_file: then the same bytes may still mean a new configuration) */
	char *source;
	size_t source_len;
	bool has_secret_files;
};

/*
 * Load and validate a config file. On success returns the config and *errs is NULL.
 * On failure returns NULL and *errs is a malloc'd, newline-separated list of every error
 * found, each line "PATH: message" (caller frees); there is no trailing newline. A JSON
 * syntax error is one line "FILE:LINE:COLUMN: message". errs may be NULL.
 * Relative file names in the config are resolved against the config file's directory and
 * stored resolved. Main thread only (reads the environment for password_env).
 */
struct gw_config *gw_cfg_load(const char *path, char **errs);

/* Same, from a JSON text in memory (for tests). name is used in messages. */
struct gw_config *gw_cfg_parse(const char *json, const char *name, char **errs);

void gw_cfg_free(struct gw_config *cfg);

/*
 * One row of the configuration's field tables, as gw_cfg_describe hands it out: what the man
 * page qgate.json(5) is generated from (docs/man/gen_qgate_json.c), so the page names every
 * key the loader knows. Strings are valid during the callback only (copy what you keep).
 */
struct gw_cfg_doc {
	const char *path;	/* "pools[].queue.timeout_ms"; an array's elements add "[]" */
	const char *parent;	/* "pools[].queue"; "" at the top level */
	const char *key;	/* "timeout_ms" */
	int depth;		/* 0 for a top-level key */
	const char *type;	/* "integer", "duration (ms)", ...; NULL: the doc says */
	const char *range;	/* "1..1000", ">= 1"; NULL: none */
	const char *def;	/* the default as JSON text ("5000", "\"info\""); NULL: none */
	const char *const *names;	/* the allowed strings of a choice (NULL-terminated) */
	const char *doc;	/* the row's one-line description */
	bool is_required;
	bool is_removed;	/* a key that is refused, doc says why */
	bool has_children;	/* rows follow whose parent is path (+ "[]" for an array) */
	bool is_array;		/* an array of objects: its children's parent is path + "[]" */
};

typedef void (*gw_cfg_doc_fn)(const struct gw_cfg_doc *row, void *arg);

/*
 * Call fn for every row of every field table, depth first from the top level, in table
 * order: an object's row, then its fields. Any thread; reads only constant tables.
 */
void gw_cfg_describe(gw_cfg_doc_fn fn, void *arg);

/* Lookups; NULL when absent. */
const struct gw_pool_cfg *gw_cfg_pool(const struct gw_config *cfg, const char *name);
const struct gw_user_cfg *gw_cfg_user(const struct gw_config *cfg, const char *name);

#endif /* GW_GATEWAY_CONFIG_H */
