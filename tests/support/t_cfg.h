/*
 * t_cfg — writes qgate JSON configuration files for the integration tests. The common shape
 * (one TCP listener, optional unix listener, one pool of mockq backends) is built from a
 * struct; anything else is passed as raw JSON members. Every file written is parsed back with
 * jansson first, so a typo in a test fails as "bad JSON in the test", not as a qgate error.
 */
#ifndef GW_TESTS_SUPPORT_T_CFG_H
#define GW_TESTS_SUPPORT_T_CFG_H

#define T_CFG_MAX_BACKENDS 8

struct t_cfg_backend {
	const char *name;
	int port;		/* mockq TCP port on 127.0.0.1 */
	int connections;	/* 0: omit (qgate default) */
	int weight;		/* 0: omit */
};

struct t_cfg {
	int listen_port;		/* "127.0.0.1:PORT" listener named main */
	int unix_port;			/* > 0: also a listener "unix:PORT" named local */
	const char *pool_name;		/* NULL: "p" */
	const char *strategy;		/* NULL: least_outstanding */
	struct t_cfg_backend backends[T_CFG_MAX_BACKENDS];
	int n_backends;
	int queue_max;			/* 0: omit */
	int queue_timeout_ms;		/* 0: omit */
	int query_timeout_ms;		/* 0: omit */
	int health_interval_ms;		/* written as is: 0 turns health checks off */
	const char *log_level;		/* NULL: "info" */
	const char *extra_top;		/* raw members for the top-level object, or NULL */
	const char *extra_pool;		/* raw members for the pool object, or NULL */
};

/* Build the JSON text; malloc'd, or NULL with t_errmsg() set (also for invalid JSON). */
char *t_cfg_json(const struct t_cfg *c);
/* Build and write to <test dir>/<file_name>; returns the path or NULL with t_errmsg() set. */
const char *t_cfg_write(const struct t_cfg *c, const char *file_name);
/* Check that text parses as JSON; 0 or -EINVAL with t_errmsg() set. */
int t_json_check(const char *text);

#endif /* GW_TESTS_SUPPORT_T_CFG_H */
