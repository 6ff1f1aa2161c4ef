/*
 * test_config.c — unit tests for gateway/config.c: the product example loads with the right
 * values, every default, every validation rule names the JSON path of the bad field, errors
 * are reported together, syntax errors carry line/column, and backend passwords come from
 * inline, env or file. Addresses and password hashes themselves: test_addr.c, test_pwhash.c.
 *
 * JSON in this file is written with single quotes and turned into double quotes by t_json(),
 * so the cases stay readable; no test string needs a real single quote.
 */
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "gateway/config.h"
#include "gateway/pwhash.h"

/* A syntactically valid hash of "secret" (1000 iterations), fixed so tests need no RNG. */
static char t_hash[256];

static char *t_json(const char *s)
{
	char *p = strdup(s);

	cr_assert_not_null(p);
	for (char *q = p; *q; q++) {
		if (*q == '\'')
			*q = '"';
	}
	return p;
}

/* Parse single-quoted JSON; "%H" inside is replaced by a valid password hash. */
static struct gw_config *t_parse(const char *sq, char **errs)
{
	char buf[8192];
	size_t o = 0;
	struct gw_config *cfg;
	char *json;

	if (!t_hash[0]) {
		char *h = gw_pw_hash_iter("secret", 6, 1000);

		cr_assert_not_null(h);
		snprintf(t_hash, sizeof(t_hash), "%s", h);
		free(h);
	}
	for (const char *p = sq; *p && o + 256 < sizeof(buf); p++) {
		if (p[0] == '%' && p[1] == 'H') {
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", t_hash);
			p++;
		} else {
			buf[o++] = *p;
		}
	}
	buf[o] = '\0';
	json = t_json(buf);
	cfg = gw_cfg_parse(json, "test.json", errs);
	free(json);
	return cfg;
}

/* A copy of s with the first occurrence of needle replaced by repl (which must exist). */
static char *t_replace(const char *s, const char *needle, const char *repl)
{
	const char *at = strstr(s, needle);
	size_t head, n;
	char *out;

	cr_assert_not_null(at, "t_replace: \"%s\" not found", needle);
	head = (size_t)(at - s);
	n = strlen(s) - strlen(needle) + strlen(repl);
	out = malloc(n + 1);
	cr_assert_not_null(out);
	memcpy(out, s, head);
	memcpy(out + head, repl, strlen(repl));
	memcpy(out + head + strlen(repl), at + strlen(needle), strlen(at + strlen(needle)) + 1);
	return out;
}

static size_t t_count_lines(const char *s)
{
	size_t n = 1;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A scratch directory, removed with its files at the end of the test. */
struct t_dir {
	char path[64];
	char files[16][128];
	int n_files;
};

static void t_dir_make(struct t_dir *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->path, sizeof(d->path), "/tmp/qgate-cfg-XXXXXX");
	cr_assert_not_null(mkdtemp(d->path), "mkdtemp: %s", strerror(errno));
}

static const char *t_dir_write(struct t_dir *d, const char *name, const char *text)
{
	char tmp[128];
	char *path;
	FILE *f;

	cr_assert(d->n_files < 16);
	snprintf(tmp, sizeof(tmp), "%s/%s", d->path, name);
	path = d->files[d->n_files++];
	memcpy(path, tmp, sizeof(tmp));
	f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
	return path;
}

static void t_dir_remove(struct t_dir *d)
{
	for (int i = 0; i < d->n_files; i++)
		unlink(d->files[i]);
	rmdir(d->path);
}

#define T_POOL "{'name': 'p', 'backends': [{'address': '127.0.0.1:5001'}]}"

/* ---------------------------------------------------------------------------------------- */
/* The product example (§12)                                                                */

/* The example exactly as the product page prints it, in single quotes. */
static const char *t_example =
	"{\n"
	"  'listeners': [\n"
	"    {'name': 'main',  'listen': '127.0.0.1:5050', 'pool': 'hdb'},\n"
	"    {'name': 'local', 'listen': 'unix:5050',      'pool': 'hdb'},\n"
	"    {'name': 'tls',   'listen': '0.0.0.0:5443',   'pool': 'hdb',\n"
	"     'tls': {'cert_file': 'gw.crt', 'key_file': 'gw.key', 'client_ca_file': null}}\n"
	"  ],\n"
	"  'auth': {'users': [\n"
	"    {'name': 'alice', 'password_hash': '<from qgate --hash-password>', 'pools': ['hdb'],\n"
	"     'admin': false, 'allow': null}\n"
	"  ]},\n"
	"  'pools': [\n"
	"    {'name': 'hdb', 'mode': 'query', 'strategy': 'least_outstanding',\n"
	"     'backends': [\n"
	"       {'name': 'hdb1', 'address': '127.0.0.1:5001', 'user': 'gw', 'password_env': 'HDB_PW',\n"
	"        'connections': 2, 'weight': 1, 'tls': null}\n"
	"     ],\n"
	"     'queue': {'max': 1000, 'timeout_ms': 5000},\n"
	"     'query_timeout_ms': 0,\n"
	"     'reconnect': {'attempts': -1, 'delay_ms': 500, 'multiplier': 2.0, 'max_delay_ms': 30000,\n"
	"                   'jitter': 0.2, 'connect_timeout_ms': 2000},\n"
	"     'health': {'interval_ms': 5000, 'timeout_ms': 1000, 'failures': 3, 'query': '::'},\n"
	"     'dedicated': {'max': 256}}\n"
	"  ],\n"
	"  'rules': [\n"
	"    {'function': '.rdb.*', 'pool': 'rdb'},\n"
	"    {'function': '.gw.long*', 'dedicated': true, 'timeout_ms': 600000},\n"
	"    {'user': 'etl', 'pool': 'tp'}\n"
	"  ],\n"
	"  'stats': {'listen': '127.0.0.1:8080'},\n"
	"  'limits': {'max_clients': 10000, 'max_message_bytes': 268435456,\n"
	"             'handshake_timeout_ms': 5000, 'client_idle_timeout_ms': 0},\n"
	"  'log': {'level': 'info', 'audit_file': null}\n"
	"}\n";


/* The example with its placeholders made real: a hash, and the rdb and tp pools its rules name. */
static char *t_example_filled(const char *hash)
{
	char *a = t_replace(t_example, "<from qgate --hash-password>", hash);
	char *b = t_replace(a, "'dedicated': {'max': 256}}\n",
			    "'dedicated': {'max': 256}},\n"
			    "    {'name': 'rdb', 'backends': [{'address': 'unix:5002'}]},\n"
			    "    {'name': 'tp', 'mode': 'session',"
			    " 'backends': [{'address': 'unix:/tmp/tp.sock'}]}\n");
	char *json = t_json(b);

	free(a);
	free(b);
	return json;
}

Test(config, example_loads_with_its_values)
{
	struct t_dir d;
	char *hash = gw_pw_hash("alice-pw");
	char *json, *errs = NULL;
	const char *path;
	struct gw_config *cfg;
	char want[256];

	cr_assert_not_null(hash);
	t_dir_make(&d);
	t_dir_write(&d, "gw.crt", "cert\n");
	t_dir_write(&d, "gw.key", "key\n");
	json = t_example_filled(hash);
	path = t_dir_write(&d, "qgate.json", json);
	cr_assert_eq(setenv("HDB_PW", "hdb-secret", 1), 0);

	cfg = gw_cfg_load(path, &errs);
	cr_assert_not_null(cfg, "errors:\n%s", errs ? errs : "(none)");
	cr_assert_null(errs);

	cr_assert_eq(cfg->n_listeners, 3);
	cr_expect_str_eq(cfg->listeners[0].name, "main");
	cr_expect_eq(cfg->listeners[0].addr.kind, GW_ADDR_TCP);
	cr_expect_str_eq(cfg->listeners[0].addr.host, "127.0.0.1");
	cr_expect_eq(cfg->listeners[0].addr.port, 5050);
	cr_expect_str_eq(cfg->listeners[0].pool, "hdb");
	cr_expect_null(cfg->listeners[0].tls);
	cr_expect_str_eq(cfg->listeners[1].name, "local");
	cr_expect_eq(cfg->listeners[1].addr.kind, GW_ADDR_UNIX_ABSTRACT);
	cr_expect_eq(cfg->listeners[1].addr.port, 5050);
	cr_expect_str_eq(cfg->listeners[1].addr.path, "/tmp/kx.5050");
	cr_expect_str_eq(cfg->listeners[1].addr.text, "unix:5050");
	cr_expect_str_eq(cfg->listeners[2].addr.host, "0.0.0.0");
	cr_expect_eq(cfg->listeners[2].addr.port, 5443);
	cr_assert_not_null(cfg->listeners[2].tls);
	/* relative names resolve against the config file's directory */
	snprintf(want, sizeof(want), "%s/gw.crt", d.path);
	cr_expect_str_eq(cfg->listeners[2].tls->cert_file, want);
	snprintf(want, sizeof(want), "%s/gw.key", d.path);
	cr_expect_str_eq(cfg->listeners[2].tls->key_file, want);
	cr_expect_null(cfg->listeners[2].tls->client_ca_file);

	cr_expect(cfg->has_auth);
	cr_assert_eq(cfg->n_users, 1);
	cr_expect_str_eq(cfg->users[0].name, "alice");
	cr_expect_str_eq(cfg->users[0].password_hash, hash);
	cr_expect(gw_pw_verify(cfg->users[0].password_hash, "alice-pw", 8));
	cr_assert_eq(cfg->users[0].n_pools, 1);
	cr_expect_str_eq(cfg->users[0].pools[0], "hdb");
	cr_expect_null(cfg->users[0].pools[1]);
	cr_expect_not(cfg->users[0].is_admin);
	cr_expect_null(cfg->users[0].allow);
	cr_expect_null(cfg->users[0].default_pool);
	cr_expect_eq(gw_cfg_user(cfg, "alice"), &cfg->users[0]);
	cr_expect_null(gw_cfg_user(cfg, "bob"));

	cr_assert_eq(cfg->n_pools, 3);
	const struct gw_pool_cfg *p = gw_cfg_pool(cfg, "hdb");

	cr_assert_eq(p, &cfg->pools[0]);
	cr_expect_eq(p->mode, GW_MODE_QUERY);
	cr_expect_eq(p->strategy, GW_STRATEGY_LEAST_OUTSTANDING);
	cr_assert_eq(p->n_backends, 1);
	cr_expect_str_eq(p->backends[0].name, "hdb1");
	cr_expect_str_eq(p->backends[0].addr.host, "127.0.0.1");
	cr_expect_eq(p->backends[0].addr.port, 5001);
	cr_expect_str_eq(p->backends[0].user, "gw");
	cr_expect_str_eq(p->backends[0].password, "hdb-secret");
	cr_expect_eq(p->backends[0].connections, 2);
	cr_expect_eq(p->backends[0].weight, 1);
	cr_expect_null(p->backends[0].tls);
	cr_expect_eq(p->queue_max, 1000);
	cr_expect_eq(p->queue_timeout_ms, 5000);
	cr_expect_eq(p->query_timeout_ms, 0);
	cr_expect_eq(p->reconnect.attempts, -1);
	cr_expect_eq(p->reconnect.delay_ms, 500);
	cr_expect_float_eq(p->reconnect.multiplier, 2.0, 1e-12);
	cr_expect_eq(p->reconnect.max_delay_ms, 30000);
	cr_expect_float_eq(p->reconnect.jitter, 0.2, 1e-12);
	cr_expect_eq(p->reconnect.connect_timeout_ms, 2000);
	cr_expect_eq(p->health.interval_ms, 5000);
	cr_expect_eq(p->health.timeout_ms, 1000);
	cr_expect_eq(p->health.failures, 3);
	cr_expect_str_eq(p->health.query, "::");
	cr_expect_eq(p->dedicated_max, 256);
	cr_expect_not(p->is_dedicated);
	cr_expect_eq(gw_cfg_pool(cfg, "tp")->mode, GW_MODE_SESSION);
	cr_expect_eq(gw_cfg_pool(cfg, "rdb")->backends[0].addr.kind, GW_ADDR_UNIX_ABSTRACT);
	cr_expect_eq(gw_cfg_pool(cfg, "tp")->backends[0].addr.kind, GW_ADDR_UNIX_PATH);
	cr_expect_str_eq(gw_cfg_pool(cfg, "tp")->backends[0].addr.path, "/tmp/tp.sock");
	cr_expect_null(gw_cfg_pool(cfg, "nope"));

	cr_assert_eq(cfg->n_rules, 3);
	cr_expect_str_eq(cfg->rules[0].function, ".rdb.*");
	cr_expect_str_eq(cfg->rules[0].pool, "rdb");
	cr_expect_not(cfg->rules[0].is_dedicated);
	cr_expect_str_eq(cfg->rules[1].function, ".gw.long*");
	cr_expect_null(cfg->rules[1].pool);
	cr_expect(cfg->rules[1].is_dedicated);
	cr_expect_eq(cfg->rules[1].timeout_ms, 600000);
	cr_expect_null(cfg->rules[2].function);
	cr_expect_str_eq(cfg->rules[2].user, "etl");
	cr_expect_str_eq(cfg->rules[2].pool, "tp");

	cr_assert_not_null(cfg->stats_listen);
	cr_expect_str_eq(cfg->stats_listen->host, "127.0.0.1");
	cr_expect_eq(cfg->stats_listen->port, 8080);
	cr_expect_eq(cfg->limits.max_clients, 10000);
	cr_expect_eq(cfg->limits.max_message_bytes, 268435456);
	cr_expect_eq(cfg->limits.handshake_timeout_ms, 5000);
	cr_expect_eq(cfg->limits.client_idle_timeout_ms, 0);
	cr_expect_eq(cfg->log_level, GW_LOG_INFO);
	cr_expect_null(cfg->audit_file);

	gw_cfg_free(cfg);
	free(json);
	free(hash);
	t_dir_remove(&d);
}

/* The example verbatim has placeholders; each is reported, all in one go, with its path. */
Test(config, example_verbatim_reports_every_placeholder)
{
	struct t_dir d;
	char *json = t_json(t_example);
	char *errs = NULL;
	const char *path;
	struct gw_config *cfg;
	static const char *const want[] = {
		"listeners[2].tls.cert_file: cannot read",
		"listeners[2].tls.key_file: cannot read",
		"auth.users[0].password_hash: not a qgate password hash",
		"pools[0].backends[0].password_env: environment variable HDB_PW is not set",
		"rules[0].pool: unknown pool \"rdb\"",
		"rules[2].pool: unknown pool \"tp\"",
	};

	t_dir_make(&d);
	path = t_dir_write(&d, "qgate.json", json);
	unsetenv("HDB_PW");
	cfg = gw_cfg_load(path, &errs);
	cr_assert_null(cfg);
	cr_assert_not_null(errs);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect_not_null(strstr(errs, want[i]), "missing \"%s\" in:\n%s", want[i], errs);
	cr_expect_eq(t_count_lines(errs), sizeof(want) / sizeof(want[0]), "errors:\n%s", errs);
	/* listed in file order (listeners, auth, pools, rules), not in the order of parsing */
	cr_expect_lt(strstr(errs, "listeners[2]"), strstr(errs, "auth.users[0]"), "%s", errs);
	cr_expect_lt(strstr(errs, "auth.users[0]"), strstr(errs, "pools[0]"), "%s", errs);
	cr_expect_lt(strstr(errs, "pools[0]"), strstr(errs, "rules[0]"), "%s", errs);
	cr_expect_lt(strstr(errs, "rules[0]"), strstr(errs, "rules[2]"), "%s", errs);
	free(errs);
	free(json);
	t_dir_remove(&d);
}

/* ---------------------------------------------------------------------------------------- */
/* Defaults                                                                                 */

Test(config, defaults_of_every_field)
{
	char *errs = NULL;
	struct gw_config *cfg = t_parse("{'pools': [" T_POOL "]}", &errs);
	const struct gw_pool_cfg *p;
	const struct gw_backend_cfg *b;

	cr_assert_not_null(cfg, "errors:\n%s", errs ? errs : "");
	/* one default listener on 127.0.0.1:5050, on the first pool */
	cr_assert_eq(cfg->n_listeners, 1);
	cr_expect_eq(cfg->listeners[0].addr.kind, GW_ADDR_TCP);
	cr_expect_str_eq(cfg->listeners[0].addr.host, "127.0.0.1");
	cr_expect_eq(cfg->listeners[0].addr.port, 5050);
	cr_expect_str_eq(cfg->listeners[0].pool, "p");
	cr_expect_not_null(cfg->listeners[0].name);
	cr_expect_null(cfg->listeners[0].tls);

	cr_expect_not(cfg->has_auth);
	cr_expect_eq(cfg->n_users, 0);
	cr_expect_eq(cfg->n_rules, 0);
	cr_expect_null(cfg->stats_listen);
	cr_expect_eq(cfg->limits.max_clients, 10000);
	cr_expect_eq(cfg->limits.max_message_bytes, 268435456);
	cr_expect_eq(cfg->limits.handshake_timeout_ms, 5000);
	cr_expect_eq(cfg->limits.client_idle_timeout_ms, 0);
	cr_expect_eq(cfg->limits.max_pipeline, 1024);
	cr_expect_eq(cfg->limits.client_buffer_bytes, 4u << 20);
	cr_expect_eq(cfg->limits.spare_idle_ms, 30000);
	cr_expect_eq(cfg->log_level, GW_LOG_INFO);
	cr_expect_null(cfg->audit_file);
	cr_expect_eq(cfg->workers, 1);
	cr_expect_str_eq(cfg->gateway_user, "qgate");

	p = &cfg->pools[0];
	cr_expect_eq(p->mode, GW_MODE_QUERY);
	cr_expect_eq(p->strategy, GW_STRATEGY_LEAST_OUTSTANDING);
	cr_expect_eq(p->queue_max, 1000);
	cr_expect_eq(p->queue_timeout_ms, 5000);
	cr_expect_eq(p->query_timeout_ms, 0);
	cr_expect_eq(p->reconnect.attempts, -1);
	cr_expect_eq(p->reconnect.delay_ms, 500);
	cr_expect_float_eq(p->reconnect.multiplier, 2.0, 1e-12);
	cr_expect_eq(p->reconnect.max_delay_ms, 30000);
	cr_expect_float_eq(p->reconnect.jitter, 0.2, 1e-12);
	cr_expect_eq(p->reconnect.connect_timeout_ms, 2000);
	cr_expect_eq(p->health.interval_ms, 5000);
	cr_expect_eq(p->health.timeout_ms, 1000);
	cr_expect_eq(p->health.failures, 3);
	cr_expect_str_eq(p->health.query, "::");
	cr_expect_eq(p->dedicated_max, 256);
	cr_expect_not(p->is_dedicated);
	cr_expect_not(p->is_lazy);
	cr_expect_not(p->is_auth_passthrough);

	b = &p->backends[0];
	cr_expect_str_eq(b->name, "127.0.0.1:5001");	/* default name: the address */
	cr_expect_null(b->user);
	cr_expect_null(b->password);
	cr_expect_eq(b->connections, 2);
	cr_expect_eq(b->weight, 1);
	cr_expect_eq(b->max_inflight, 0);	/* "auto" */
	cr_expect_eq(b->max_inflight_ceiling, 8);
	cr_expect_null(b->tls);
	gw_cfg_free(cfg);
}

Test(config, extra_fields)
{
	char *errs = NULL;
	struct gw_config *cfg = t_parse(
		"{'_comment': 'ignored', 'workers': 4, 'gateway_user': 'gwuser',"
		" 'limits': {'max_pipeline': 16, 'client_buffer_bytes': 65536},"
		" 'log': {'level': 'trace', 'audit_file': '/var/log/qgate-audit.log'},"
		" 'stats': {},"
		" 'pools': [{'name': 'p', 'connect': 'lazy', 'strategy': 'random_two',"
		"   'dedicated': {'max': 8, 'all': true}, 'query_timeout_ms': 1500,"
		"   'reconnect': {'multiplier': 'constant'},"
		"   'backends': [{'address': '[::1]:5001', 'tls': true},"
		"                {'address': 'localhost:5002', 'tls': {'verify': false}, 'weight': 7}]},"
		"  {'name': 's', 'mode': 'session', 'auth_passthrough': true, 'strategy': 'round_robin',"
		"   'backends': [{'address': 'unix://5003', 'password': ''}]}],"
		" 'auth': {'users': [{'name': 'ops', 'password_hash': '%H', 'admin': true,"
		"   'pools': ['p', 's'], 'pool': 's', 'allow': ['.qgate.*', 'f']}]},"
		" 'rules': [{'prefix': 'delete', 'deny': true}, {'user': 'ops', 'timeout_ms': 0}]}",
		&errs);
	const struct gw_pool_cfg *p, *s;

	cr_assert_not_null(cfg, "errors:\n%s", errs ? errs : "");
	cr_expect_eq(cfg->workers, 4);
	cr_expect_str_eq(cfg->gateway_user, "gwuser");
	cr_expect_eq(cfg->limits.max_pipeline, 16);
	cr_expect_eq(cfg->limits.client_buffer_bytes, 65536);
	cr_expect_eq(cfg->log_level, GW_LOG_TRACE);
	cr_expect_str_eq(cfg->audit_file, "/var/log/qgate-audit.log");
	cr_assert_not_null(cfg->stats_listen);	/* "stats": {} listens on the default */
	cr_expect_eq(cfg->stats_listen->port, 8080);

	p = gw_cfg_pool(cfg, "p");
	cr_assert_not_null(p);
	cr_expect(p->is_lazy);
	cr_expect_eq(p->strategy, GW_STRATEGY_RANDOM_TWO);
	cr_expect(p->is_dedicated);
	cr_expect_eq(p->dedicated_max, 8);
	cr_expect_eq(p->query_timeout_ms, 1500);
	cr_expect_float_eq(p->reconnect.multiplier, 1.0, 1e-12);
	cr_expect_str_eq(p->backends[0].addr.host, "::1");
	cr_expect_eq(p->backends[0].addr.port, 5001);
	cr_assert_not_null(p->backends[0].tls);
	cr_expect(p->backends[0].tls->is_verify);
	cr_expect_null(p->backends[0].tls->ca_file);
	cr_assert_not_null(p->backends[1].tls);
	cr_expect_not(p->backends[1].tls->is_verify);
	cr_expect_eq(p->backends[1].weight, 7);

	s = gw_cfg_pool(cfg, "s");
	cr_assert_not_null(s);
	cr_expect_eq(s->mode, GW_MODE_SESSION);
	cr_expect_eq(s->strategy, GW_STRATEGY_ROUND_ROBIN);
	cr_expect(s->is_auth_passthrough);
	cr_expect_eq(s->backends[0].addr.kind, GW_ADDR_UNIX_ABSTRACT);
	cr_expect_eq(s->backends[0].addr.port, 5003);
	cr_expect_str_eq(s->backends[0].password, "");

	cr_assert_eq(cfg->n_users, 1);
	cr_expect(cfg->users[0].is_admin);
	cr_expect_str_eq(cfg->users[0].default_pool, "s");
	cr_assert_eq(cfg->users[0].n_allow, 2);
	cr_expect_str_eq(cfg->users[0].allow[0], ".qgate.*");
	cr_expect_str_eq(cfg->users[0].allow[1], "f");
	cr_expect_null(cfg->users[0].allow[2]);

	cr_assert_eq(cfg->n_rules, 2);
	cr_expect(cfg->rules[0].is_deny);
	cr_expect_str_eq(cfg->rules[0].prefix, "delete");
	cr_expect_str_eq(cfg->rules[1].user, "ops");
	gw_cfg_free(cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* Validation: each case must fail and name its path                                        */

struct t_case {
	const char *json;	/* single-quoted */
	const char *want;	/* substring of the error text */
};

static void t_run_cases(const struct t_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *errs = NULL;
		struct gw_config *cfg = t_parse(cases[i].json, &errs);

		cr_expect_null(cfg, "case %zu accepted: %s", i, cases[i].json);
		gw_cfg_free(cfg);
		cr_expect(errs && strstr(errs, cases[i].want),
			  "case %zu: want \"%s\"\n  got: %s\n  json: %s", i, cases[i].want,
			  errs ? errs : "(null)", cases[i].json);
		free(errs);
	}
}

#define T_RUN(cases) t_run_cases(cases, sizeof(cases) / sizeof(cases[0]))

Test(config, rejects_wrong_types)
{
	static const struct t_case cases[] = {
		{ "[]", "(top level): the configuration must be a JSON object" },
		{ "{'pools': {}}", "pools: must be an array" },
		{ "{'pools': [3]}", "pools[0]: must be an object" },
		{ "{'pools': [{'name': 5, 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].name: must be a string" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 1}]}]}",
		  "pools[0].backends[0].address: must be a string" },
		{ "{'pools': [{'name': 'p', 'backends': ['h:1']}]}",
		  "pools[0].backends[0]: must be an object" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'connections': '2'}]}]}",
		  "pools[0].backends[0].connections: must be a non-negative integer" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'h:1', 'tls': 'yes'}]}",
		  "listeners[0].tls: must be an object" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H',"
		  " 'admin': 'yes'}]}}", "auth.users[0].admin: must be true or false" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H',"
		  " 'allow': [1]}]}}", "auth.users[0].allow[0]: must be a string" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H',"
		  " 'pools': 'p'}]}}", "auth.users[0].pools: must be an array" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': 'f', 'dedicated': 1}]}",
		  "rules[0].dedicated: must be true or false" },
		{ "{'pools': [" T_POOL "], 'limits': []}", "limits: must be an object" },
		{ "{'pools': [" T_POOL "], 'workers': 1.5}", "workers: must be a non-negative integer" },
		{ "{'pools': [" T_POOL "], 'pools2': 1}", "pools2: unknown key" },
		{ "{'pools': [{'name': 'p', 'health': {'query': ''},"
		  " 'backends': [{'address': 'h:1'}]}]}", "pools[0].health.query: must not be empty" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'tls': 3}]}]}",
		  "pools[0].backends[0].tls: must be an object, true, false or null" },
	};

	T_RUN(cases);
}

Test(config, rejects_unknown_keys_with_a_hint)
{
	static const struct t_case cases[] = {
		{ "{'listners': [], 'pools': [" T_POOL "]}",
		  "listners: unknown key (did you mean \"listeners\"?)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'adress': 'h:1'}]}]}",
		  "pools[0].backends[0].adress: unknown key (did you mean \"address\"?)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'}], 'queue': {'maxx': 1}}]}",
		  "pools[0].queue.maxx: unknown key (did you mean \"max\"?)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'}],"
		  " 'reconnect': {'retries': 1}}]}", "pools[0].reconnect.retries: unknown key" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'h:1', 'tls': {'cert_file': '/etc/"
		  "hostname', 'key_file': '/etc/hostname', 'ca_file': 'x'}}]}",
		  "listeners[0].tls.ca_file: unknown key" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H',"
		  " 'admn': true}]}}", "auth.users[0].admn: unknown key (did you mean \"admin\"?)" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': 'f', 'pool': 'p', 'dedicate': true}]}",
		  "rules[0].dedicate: unknown key (did you mean \"dedicated\"?)" },
		{ "{'pools': [" T_POOL "], 'log': {'levle': 'info'}}",
		  "log.levle: unknown key (did you mean \"level\"?)" },
		{ "{'pools': [" T_POOL "], 'auth': {'user': []}}",
		  "auth.user: unknown key (did you mean \"users\"?)" },
	};

	T_RUN(cases);
}

Test(config, rejects_duplicate_names)
{
	static const struct t_case cases[] = {
		{ "{'pools': [" T_POOL ", " T_POOL "]}",
		  "pools[1].name: duplicate pool name \"p\" (also pools[0])" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'name': 'a', 'listen': 'h:1'},"
		  " {'name': 'a', 'listen': 'h:2'}]}",
		  "listeners[1].name: duplicate listener name \"a\"" },
		{ "{'pools': [{'name': 'p', 'backends': [{'name': 'b', 'address': 'h:1'},"
		  " {'address': 'h:3'}, {'name': 'b', 'address': 'h:2'}]}]}",
		  "pools[0].backends[2].name: duplicate backend name \"b\" (also backends[0])" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H'},"
		  " {'name': 'u', 'password_hash': '%H'}]}}",
		  "auth.users[1].name: duplicate user name \"u\"" },
		/* the same address twice cannot be bound twice */
		{ "{'pools': [" T_POOL "], 'listeners': [{'name': 'a', 'listen': 'h:1'},"
		  " {'name': 'b', 'listen': 'h:1'}]}", "listeners[1].listen: same address as" },
		{ "{'pools': [" T_POOL "], 'stats': {'listen': '127.0.0.1:5050'}}",
		  "stats.listen: same address as listeners[0]" },
		/* a duplicate key inside one object is a syntax error in our reading */
		{ "{'pools': [" T_POOL "], 'workers': 1, 'workers': 2}", "duplicate object key" },
	};

	T_RUN(cases);
}

Test(config, rejects_missing_pools_and_backends)
{
	static const struct t_case cases[] = {
		{ "{}", "pools: required" },
		{ "{'pools': null}", "pools: required" },
		{ "{'pools': []}", "pools: must have at least one pool" },
		{ "{'pools': [{'name': 'p'}]}", "pools[0].backends: required" },
		{ "{'pools': [{'name': 'p', 'backends': []}]}",
		  "pools[0].backends: must have at least one backend" },
		{ "{'pools': [{'backends': [{'address': 'h:1'}]}]}", "pools[0].name: required" },
		{ "{'pools': [{'name': 'p', 'backends': [{'name': 'b'}]}]}",
		  "pools[0].backends[0].address: required" },
		{ "{'pools': [" T_POOL "], 'listeners': []}", "listeners: must have at least one" },
		{ "{'pools': [" T_POOL "], 'auth': {}}", "auth.users: required" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'password_hash': '%H'}]}}",
		  "auth.users[0].name: required" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u'}]}}",
		  "auth.users[0].password_hash: required" },
	};

	T_RUN(cases);
}

Test(config, rejects_unknown_pool_references)
{
	static const struct t_case cases[] = {
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'h:1', 'pool': 'q'}]}",
		  "listeners[0].pool: unknown pool \"q\"" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'h:1'}, {'listen': 'h:2'},"
		  " {'listen': 'h:3', 'pool': 'x'}]}", "listeners[2].pool: unknown pool \"x\"" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H',"
		  " 'pools': ['p', 'zz']}]}}", "auth.users[0].pools[1]: unknown pool \"zz\"" },
		{ "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u', 'password_hash': '%H',"
		  " 'pool': 'zz'}]}}", "auth.users[0].pool: unknown pool \"zz\"" },
		{ "{'pools': [" T_POOL ", {'name': 'q', 'backends': [{'address': 'h:9'}]}],"
		  " 'auth': {'users': [{'name': 'u', 'password_hash': '%H', 'pools': ['p'],"
		  " 'pool': 'q'}]}}", "auth.users[0].pool: \"q\" is not in this user's pools" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': 'f', 'pool': 'p'},"
		  " {'function': 'g', 'pool': 'r'}]}", "rules[1].pool: unknown pool \"r\"" },
	};

	T_RUN(cases);
}

Test(config, rejects_bad_enums_and_ranges)
{
	static const struct t_case cases[] = {
		{ "{'pools': [{'name': 'p', 'mode': 'batch', 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].mode: must be one of query, session (got \"batch\")" },
		{ "{'pools': [{'name': 'p', 'strategy': 'fastest', 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].strategy: must be one of least_outstanding, round_robin, random_two" },
		{ "{'pools': [{'name': 'p', 'connect': 'now', 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].connect: must be one of start, lazy" },
		{ "{'pools': [" T_POOL "], 'log': {'level': 'verbose'}}",
		  "log.level: must be one of error, warn, info, debug, trace" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'weight': 0}]}]}",
		  "pools[0].backends[0].weight: must be between 1 and" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'connections': 0}]}]}",
		  "pools[0].backends[0].connections: must be between 1 and 1000 (got 0)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'connections': 1001}]}]}",
		  "pools[0].backends[0].connections: must be between 1 and 1000 (got 1001)" },
		{ "{'pools': [{'name': 'p', 'queue': {'timeout_ms': -1},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].queue.timeout_ms: must be a non-negative integer" },
		{ "{'pools': [{'name': 'p', 'query_timeout_ms': 1.5, 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].query_timeout_ms: must be a non-negative integer" },
		{ "{'pools': [{'name': 'p', 'health': {'interval_ms': '5s'},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].health.interval_ms: must be a non-negative integer" },
		{ "{'pools': [" T_POOL "], 'limits': {'handshake_timeout_ms': 4294967296}}",
		  "limits.handshake_timeout_ms: must be at most" },
		/* always-on timeouts: 0 would mean "at once" or "never"; neither is safe */
		{ "{'pools': [" T_POOL "], 'limits': {'handshake_timeout_ms': 0}}",
		  "limits.handshake_timeout_ms: must be at least 1 milliseconds" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'connect_timeout_ms': 0},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.connect_timeout_ms: must be at least 1" },
		{ "{'pools': [{'name': 'p', 'health': {'timeout_ms': 0},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].health.timeout_ms: must be at least 1" },
		{ "{'pools': [{'name': 'p', 'health': {'failures': 0},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].health.failures: must be between 1 and 100 (got 0)" },
		{ "{'pools': [{'name': 'p', 'health': {'failures': 101},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].health.failures: must be between 1 and 100 (got 101)" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': 'f', 'timeout_ms': -5}]}",
		  "rules[0].timeout_ms: must be a non-negative integer" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'multiplier': 0.5},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.multiplier: must be >= 1" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'multiplier': 'linear'},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.multiplier: must be a number >= 1.0 or \"constant\"" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'jitter': 1.5},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.jitter: must be between 0 and 1" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'jitter': -0.1},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.jitter: must be between 0 and 1" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'attempts': -2},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.attempts: must be between -1 and" },
		{ "{'pools': [{'name': 'p', 'reconnect': {'delay_ms': 5000, 'max_delay_ms': 100},"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].reconnect.max_delay_ms: must be >= delay_ms" },
		{ "{'pools': [" T_POOL "], 'limits': {'max_message_bytes': 1023}}",
		  "limits.max_message_bytes: must be between 1024 and 1099511627776 (got 1023)" },
		{ "{'pools': [" T_POOL "], 'limits': {'max_message_bytes': 1099511627777}}",
		  "limits.max_message_bytes: must be between 1024 and 1099511627776" },
		{ "{'pools': [" T_POOL "], 'limits': {'max_clients': 0}}",
		  "limits.max_clients: must be between 1 and" },
		{ "{'pools': [" T_POOL "], 'limits': {'max_pipeline': 0}}",
		  "limits.max_pipeline: must be between 1 and" },
		{ "{'pools': [" T_POOL "], 'workers': 0}", "workers: must be between 1 and" },
		{ "{'pools': [" T_POOL "], 'gateway_user': 'a:b'}", "gateway_user: must not contain ':'" },
		{ "{'pools': [{'name': 'p', 'auth_passthrough': true, 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].auth_passthrough: requires \"mode\": \"session\"" },
		{ "{'pools': [{'name': 'p', 'mode': 'session', 'dedicated': true,"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].dedicated: dedicated dispatch is for query pools only" },
		{ "{'pools': [{'name': 'p', 'mode': 'session', 'idempotent': true,"
		  " 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].idempotent: applies to \"mode\": \"query\" pools only" },
		{ "{'pools': [{'name': 'p', 'idempotent': 1, 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].idempotent: must be" },
		/* removed: it could pair a deferred (-30!) answer with the wrong request */
		{ "{'pools': [{'name': 'p', 'pipeline': 1, 'backends': [{'address': 'h:1'}]}]}",
		  "pools[0].pipeline: removed: a backend that defers an answer (-30!)" },
		{ "{'pools': [{'name': 'p', 'pipeline': 4, 'backends': [{'address': 'h:1'}]}]}",
		  "\"dedicated\" rule" },
	};

	T_RUN(cases);
	/* the boundaries themselves are accepted */
	char *errs = NULL;
	struct gw_config *cfg = t_parse("{'pools': [{'name': 'p', 'backends': [{'address': 'h:1',"
		" 'connections': 1000, 'weight': 1}], 'reconnect': {'attempts': -1, 'jitter': 1,"
		" 'multiplier': 1}}], 'limits': {'max_message_bytes': 1099511627776}}", &errs);

	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_expect_eq(cfg->limits.max_message_bytes, 1ull << 40);
	cr_expect_eq(cfg->pools[0].backends[0].connections, 1000);
	gw_cfg_free(cfg);
	cfg = t_parse("{'pools': [" T_POOL "], 'limits': {'max_message_bytes': 1024}}", &errs);
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	gw_cfg_free(cfg);
	/* 0 is accepted where it means "none" / "off" / "at once" */
	cfg = t_parse("{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'}],"
		      " 'queue': {'max': 0, 'timeout_ms': 0}, 'query_timeout_ms': 0,"
		      " 'health': {'interval_ms': 0}, 'dedicated': {'max': 0},"
		      " 'reconnect': {'delay_ms': 0, 'max_delay_ms': 0}}],"
		      " 'limits': {'client_idle_timeout_ms': 0}}", &errs);
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_expect_eq(cfg->pools[0].queue_timeout_ms, 0);
	cr_expect_eq(cfg->pools[0].health.interval_ms, 0);
	cr_expect_eq(cfg->pools[0].reconnect.delay_ms, 0);
	gw_cfg_free(cfg);
}

Test(config, rejects_bad_addresses)
{
	static const struct t_case cases[] = {
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'localhost'}]}]}",
		  "pools[0].backends[0].address: invalid address \"localhost\"" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'}, {'address': 'h:0'}]}]}",
		  "pools[0].backends[1].address: invalid address \"h:0\": port must be a number" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:65536'}]}]}",
		  "pools[0].backends[0].address: invalid address" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:5x'}]}]}",
		  "pools[0].backends[0].address: invalid address" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': ':5001'}]}]}",
		  "pools[0].backends[0].address: invalid address \":5001\": missing host" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': '::1:5001'}]}]}",
		  "IPv6 addresses need brackets" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'h:1'}, {'listen': 'h:2'},"
		  " {'listen': 'unix:'}]}", "listeners[2].listen: invalid address \"unix:\"" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'unix:abc'}]}",
		  "listeners[0].listen: invalid address \"unix:abc\"" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'unix:70000'}]}",
		  "listeners[0].listen: invalid address" },
		{ "{'pools': [" T_POOL "], 'stats': {'listen': 'nowhere'}}",
		  "stats.listen: invalid address" },
		{ "{'pools': [" T_POOL "], 'listeners': [{'listen': 'h:1'}]}", "(unreachable)" },
	};

	/* the last case is valid: check it separately, then run the failing ones */
	char *errs = NULL;
	struct gw_config *cfg = t_parse(cases[10].json, &errs);

	cr_expect_not_null(cfg, "%s", errs ? errs : "");
	gw_cfg_free(cfg);
	t_run_cases(cases, 10);
}

Test(config, rejects_missing_tls_files)
{
	struct t_dir d;
	char json[1024];
	const char *crt;
	char *errs = NULL;
	struct gw_config *cfg;

	t_dir_make(&d);
	crt = t_dir_write(&d, "gw.crt", "x");
	snprintf(json, sizeof(json), "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1',"
		 " 'tls': {'ca_file': '%s/none.pem'}}]}], 'listeners': [{'listen': 'h:1', 'tls':"
		 " {'cert_file': '%s', 'key_file': '%s/missing.key', 'client_ca_file': '%s'}},"
		 " {'listen': 'h:2', 'tls': {'cert_file': '%s'}}]}", d.path, crt, d.path, d.path,
		 crt);
	cfg = t_parse(json, &errs);
	cr_assert_null(cfg);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "pools[0].backends[0].tls.ca_file: cannot read"), "%s",
			   errs);
	cr_expect_not_null(strstr(errs, "listeners[0].tls.key_file: cannot read"), "%s", errs);
	cr_expect_not_null(strstr(errs, "No such file or directory"), "%s", errs);
	/* a directory is not a certificate */
	cr_expect_not_null(strstr(errs, "listeners[0].tls.client_ca_file: cannot read"), "%s",
			   errs);
	cr_expect_not_null(strstr(errs, "listeners[1].tls.key_file: required"), "%s", errs);
	cr_expect_null(strstr(errs, "cert_file"), "%s", errs);	/* the existing file passes */
	free(errs);
	t_dir_remove(&d);
}

Test(config, rejects_incomplete_rules)
{
	static const struct t_case cases[] = {
		{ "{'pools': [" T_POOL "], 'rules': [{'pool': 'p'}]}",
		  "rules[0]: needs at least one of function, prefix, user" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': 'f', 'pool': 'p'}, {'user': 'u'}]}",
		  "rules[1]: needs at least one of pool, dedicated, timeout_ms, deny" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': 'f', 'deny': true, 'pool': 'p'}]}",
		  "rules[0].deny: a deny rule cannot also set pool" },
		{ "{'pools': [" T_POOL "], 'rules': [{'function': '', 'pool': 'p'}]}",
		  "rules[0].function: must not be empty" },
		{ "{'pools': [" T_POOL "], 'rules': {}}", "rules: must be an array" },
		{ "{'pools': [" T_POOL ", {'name': 's', 'mode': 'session', 'backends': [{'address':"
		  " 'h:2'}]}], 'rules': [{'function': 'f', 'pool': 's', 'dedicated': true}]}",
		  "rules[0].dedicated: pool \"s\" is a session pool" },
	};

	T_RUN(cases);
}

Test(config, rejects_bad_password_hashes)
{
	static const char *const bad[] = {
		"secret",
		"<from qgate --hash-password>",
		"$qgate$pbkdf2-sha256$60000$c2FsdA==",
		"$qgate$pbkdf2-sha1$60000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"$qgate$pbkdf2-sha256$10$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"$qgate$pbkdf2-sha256$60000$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
		"$qgate$pbkdf2-sha256$60000$AAAA*AAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"$qgate$pbkdf2-sha256$6x000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	};
	const char *good =
		"$qgate$pbkdf2-sha256$60000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

	cr_expect(gw_pw_hash_is_valid(good));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char json[512];
		char *errs = NULL;
		struct gw_config *cfg;

		cr_expect_not(gw_pw_hash_is_valid(bad[i]), "accepted %s", bad[i]);
		cr_expect_not(gw_pw_verify(bad[i], "secret", 6));
		snprintf(json, sizeof(json), "{'pools': [" T_POOL "], 'auth': {'users': [{'name': 'u',"
			 " 'password_hash': '%s'}]}}", bad[i]);
		cfg = t_parse(json, &errs);
		cr_expect_null(cfg);
		gw_cfg_free(cfg);
		cr_expect(errs && strstr(errs, "auth.users[0].password_hash: not a qgate password hash"),
			  "%s: %s", bad[i], errs ? errs : "(null)");
		free(errs);
	}
}

Test(config, rejects_bad_backend_passwords)
{
	static const struct t_case cases[] = {
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'password': 'a',"
		  " 'password_env': 'QGATE_TEST_PW'}]}]}",
		  "pools[0].backends[0]: give only one of password, password_env, password_file" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'password_env': 'E',"
		  " 'password_file': '/etc/hostname'}]}]}",
		  "pools[0].backends[0]: give only one of" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'}, {'address': 'h:2',"
		  " 'password_env': 'QGATE_TEST_UNSET_VAR'}]}]}",
		  "pools[0].backends[1].password_env: environment variable QGATE_TEST_UNSET_VAR is not set" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1',"
		  " 'password_file': '/nonexistent/qgate/pw'}]}]}",
		  "pools[0].backends[0].password_file: cannot read \"/nonexistent/qgate/pw\"" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'password': 5}]}]}",
		  "pools[0].backends[0].password: must be a string" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'user': 'a:b'}]}]}",
		  "pools[0].backends[0].user: must not contain ':'" },
	};

	unsetenv("QGATE_TEST_UNSET_VAR");
	T_RUN(cases);
}

/* backends[].max_inflight: 1..65535 or "auto" (0, the default: learned up to
 * max_inflight_ceiling, 1..65535, default 8). */
Test(config, backend_max_inflight)
{
	static const struct t_case cases[] = {
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': 0}]}]}",
		  "pools[0].backends[0].max_inflight: must be between 1 and 65535 (got 0)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'},"
		  " {'address': 'h:2', 'max_inflight': 65536}]}]}",
		  "pools[0].backends[1].max_inflight: must be between 1 and 65535 (got 65536)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': -1}]}]}",
		  "pools[0].backends[0].max_inflight: must be between 1 and 65535 (got -1)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': '4'}]}]}",
		  "pools[0].backends[0].max_inflight: must be an integer between 1 and 65535, or "
		  "\"auto\"" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': 'Auto'}]}]}",
		  "pools[0].backends[0].max_inflight: must be an integer between 1 and 65535, or "
		  "\"auto\"" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': 1.5}]}]}",
		  "pools[0].backends[0].max_inflight: must be an integer between 1 and 65535, or "
		  "\"auto\"" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflght': 2}]}]}",
		  "pools[0].backends[0].max_inflght: unknown key (did you mean \"max_inflight\"?)" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1',"
		  " 'max_inflight_ceiling': 0}]}]}",
		  "pools[0].backends[0].max_inflight_ceiling: must be between 1 and 65535 (got 0)" },
		/* a ceiling means nothing to a fixed limit: refused, not ignored */
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': 2,"
		  " 'max_inflight_ceiling': 8}]}]}",
		  "pools[0].backends[0].max_inflight_ceiling: applies to \"max_inflight\": \"auto\" "
		  "only (max_inflight is 2 here)" },
		/* one q process, one count: every pool naming it gives the same limit */
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': 2}]},"
		  " {'name': 'r', 'backends': [{'address': 'h:2', 'max_inflight': 3},"
		  " {'address': 'h:1', 'max_inflight': 1}]}]}",
		  "pools[1].backends[1].max_inflight: 1 differs from 2 given for the same address in "
		  "pools[0].backends[0] (one q process, one limit" },
		/* "auto" (the default) next to a number for one address */
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1', 'max_inflight': 2}]},"
		  " {'name': 'r', 'backends': [{'address': 'h:2'}, {'address': 'h:1'}]}]}",
		  "pools[1].backends[1].max_inflight: \"auto\" differs from 2 given for the same "
		  "address in pools[0].backends[0] (one q process, one limit: give both the same "
		  "number, or both \"auto\")" },
		{ "{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'}]},"
		  " {'name': 'r', 'backends': [{'address': 'h:1', 'max_inflight_ceiling': 4}]}]}",
		  "pools[1].backends[0].max_inflight_ceiling: 4 differs from 8 given for the same "
		  "address in pools[0].backends[0] (one q process, one limiter)" },
	};
	char *errs = NULL;
	struct gw_config *cfg;

	T_RUN(cases);
	cfg = t_parse("{'pools': [{'name': 'p', 'backends': [{'address': 'h:1'},"
		      " {'address': 'h:2', 'max_inflight': 1}, {'address': 'h:3', 'max_inflight': 8},"
		      " {'address': 'h:4', 'max_inflight': 65535}, {'address': 'h:5',"
		      " 'max_inflight': null}, {'address': 'h:6', 'max_inflight': 'auto',"
		      " 'max_inflight_ceiling': 16}]},"
		      " {'name': 'r', 'backends': [{'address': 'h:6', 'max_inflight': 'auto',"
		      " 'max_inflight_ceiling': 16}, {'address': 'h:3', 'max_inflight': 8}]}]}",
		      &errs);
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_assert_eq(cfg->pools[0].n_backends, 6);
	cr_expect_eq(cfg->pools[0].backends[0].max_inflight, 0);	/* the default: auto */
	cr_expect_eq(cfg->pools[0].backends[0].max_inflight_ceiling, 8);
	cr_expect_eq(cfg->pools[0].backends[1].max_inflight, 1);
	cr_expect_eq(cfg->pools[0].backends[2].max_inflight, 8);
	cr_expect_eq(cfg->pools[0].backends[3].max_inflight, 65535);
	cr_expect_eq(cfg->pools[0].backends[4].max_inflight, 0);	/* null: the default */
	cr_expect_eq(cfg->pools[0].backends[5].max_inflight, 0);
	cr_expect_eq(cfg->pools[0].backends[5].max_inflight_ceiling, 16);
	gw_cfg_free(cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* Several errors at once; syntax errors                                                    */

Test(config, reports_every_error_at_once)
{
	char *errs = NULL;
	struct gw_config *cfg = t_parse(
		"{'workers': 0,\n"
		" 'pools': [{'name': 'p', 'mode': 'x', 'backends': [{'address': 'bad'},"
		"   {'address': 'h:1', 'weight': 0}]}],\n"
		" 'listeners': [{'listen': 'h:2', 'pool': 'nope'}],\n"
		" 'rules': [{'function': 'f'}]}", &errs);

	cr_assert_null(cfg);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "workers: must be between 1 and"), "%s", errs);
	cr_expect_not_null(strstr(errs, "pools[0].mode: must be one of"), "%s", errs);
	cr_expect_not_null(strstr(errs, "pools[0].backends[0].address: invalid address"), "%s",
			   errs);
	cr_expect_not_null(strstr(errs, "pools[0].backends[1].weight: must be between"), "%s",
			   errs);
	cr_expect_not_null(strstr(errs, "listeners[0].pool: unknown pool \"nope\""), "%s", errs);
	cr_expect_not_null(strstr(errs, "rules[0]: needs at least one of pool"), "%s", errs);
	cr_expect_eq(t_count_lines(errs), 6, "%s", errs);
	cr_expect_neq(errs[strlen(errs) - 1], '\n');
	free(errs);
}

Test(config, syntax_error_has_line_and_column)
{
	char *errs = NULL;
	char *json = t_json("{\n  'pools': [\n    {'name': 'p',, 'backends': []}\n  ]\n}\n");
	struct gw_config *cfg = gw_cfg_parse(json, "cfg.json", &errs);

	cr_assert_null(cfg);
	cr_assert_not_null(errs);
	/* "FILE:LINE:COLUMN: message"; the stray comma is on line 3 */
	cr_expect_eq(strncmp(errs, "cfg.json:3:", 11), 0, "%s", errs);
	cr_expect_eq(t_count_lines(errs), 1, "%s", errs);
	free(errs);
	free(json);

	/* the same through gw_cfg_load, which names the file */
	struct t_dir d;
	const char *path;
	char want[128];

	t_dir_make(&d);
	path = t_dir_write(&d, "broken.json", "{\"pools\": [\n\"x\"\n");
	cfg = gw_cfg_load(path, &errs);
	cr_assert_null(cfg);
	snprintf(want, sizeof(want), "%s:3:", path);
	cr_expect_eq(strncmp(errs, want, strlen(want)), 0, "%s", errs);
	free(errs);
	t_dir_remove(&d);
}

Test(config, missing_file_is_reported)
{
	char *errs = NULL;
	struct gw_config *cfg = gw_cfg_load("/nonexistent/qgate.json", &errs);

	cr_assert_null(cfg);
	cr_assert_not_null(errs);
	cr_expect_not_null(strstr(errs, "/nonexistent/qgate.json: cannot read"), "%s", errs);
	free(errs);
	/* errs may be NULL when the caller only wants yes/no */
	cr_expect_null(gw_cfg_parse("{", "x", NULL));
	cr_expect_null(gw_cfg_parse(NULL, "x", NULL));
}

/* ---------------------------------------------------------------------------------------- */
/* Backend passwords                                                                        */

Test(config, backend_password_sources)
{
	struct t_dir d;
	char json[1024];
	char *errs = NULL;
	struct gw_config *cfg;

	t_dir_make(&d);
	t_dir_write(&d, "pw1", "from-file\n");
	t_dir_write(&d, "pw2", "crlf-file\r\n");
	t_dir_write(&d, "pw3", "no-newline");
	t_dir_write(&d, "pw4", "two-newlines\n\n");
	cr_assert_eq(setenv("QGATE_TEST_PW", "from-env", 1), 0);
	snprintf(json, sizeof(json),
		 "{\"pools\": [{\"name\": \"p\", \"backends\": ["
		 "{\"name\": \"a\", \"address\": \"h:1\", \"user\": \"u\", \"password\": \"inline\"},"
		 "{\"name\": \"b\", \"address\": \"h:2\", \"password_env\": \"QGATE_TEST_PW\"},"
		 "{\"name\": \"c\", \"address\": \"h:3\", \"password_file\": \"pw1\"},"
		 "{\"name\": \"d\", \"address\": \"h:4\", \"password_file\": \"pw2\"},"
		 "{\"name\": \"e\", \"address\": \"h:5\", \"password_file\": \"%s/pw3\"},"
		 "{\"name\": \"f\", \"address\": \"h:6\", \"password_file\": \"pw4\"}]}]}", d.path);
	/* relative password_file names resolve against the config file's directory */
	cfg = gw_cfg_load(t_dir_write(&d, "c.json", json), &errs);
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_expect_str_eq(cfg->pools[0].backends[0].user, "u");
	cr_expect_str_eq(cfg->pools[0].backends[0].password, "inline");
	cr_expect_str_eq(cfg->pools[0].backends[1].password, "from-env");
	cr_expect_str_eq(cfg->pools[0].backends[2].password, "from-file");
	cr_expect_str_eq(cfg->pools[0].backends[3].password, "crlf-file");
	cr_expect_str_eq(cfg->pools[0].backends[4].password, "no-newline");
	cr_expect_str_eq(cfg->pools[0].backends[5].password, "two-newlines\n");
	gw_cfg_free(cfg);

	/* through gw_cfg_parse, relative names are relative to the working directory */
	cr_assert_eq(chdir(d.path), 0);
	cfg = t_parse("{'pools': [{'name': 'p', 'backends': [{'address': 'h:1',"
		      " 'password_file': 'pw1'}]}]}", &errs);
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_expect_str_eq(cfg->pools[0].backends[0].password, "from-file");
	gw_cfg_free(cfg);
	t_dir_remove(&d);
}

/*
 * A large file loads in time linear in its size: 20000 pools of two backends each sharing two
 * addresses (the shape of a kdb+ estate with a pool per table). The duplicate-name and
 * same-address checks once compared every pool with all before it: 27 s for 24000 pools, on the
 * main thread at a SIGHUP. Duplicates at the end are still found, naming the first one.
 */
Test(config, large_file_loads_in_linear_time, .timeout = 60)
{
	const size_t n = 20000;
	size_t cap = n * 200 + 1024, o = 0;
	char *json = malloc(cap);
	struct timespec t0, t1;
	char *errs = NULL;

	cr_assert_not_null(json);
	o += (size_t)snprintf(json + o, cap - o, "{\"pools\": [");
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(json + o, cap - o,
				      "%s{\"name\": \"pool%05zu\", \"connect\": \"lazy\", \"backends\": "
				      "[{\"name\": \"b0\", \"address\": \"127.0.0.1:25001\"}, "
				      "{\"name\": \"b1\", \"address\": \"127.0.0.1:25002\"}]}",
				      i ? ", " : "", i);
	snprintf(json + o, cap - o, "]}");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct gw_config *cfg = gw_cfg_parse(json, "big", &errs);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_assert_eq(cfg->n_pools, n);
	gw_cfg_free(cfg);
	cr_log_info("%zu pools parsed in %.3f s", n, s);
	cr_assert_lt(s, 2.0, "%zu pools took %.3f s to load", n, s);

	/* the same file with the last pool named as the first and a differing max_inflight */
	char *last = strstr(json, "pool19999");
	cr_assert_not_null(last);
	memcpy(last, "pool00000", 9);
	/* 127.0.0.1:25002, the very last backend */
	char *addr = strstr(last, "\"address\": \"127.0.0.1:25002\"");
	cr_assert_not_null(addr);
	char *fixed = malloc(cap + 64);
	cr_assert_not_null(fixed);
	size_t at = (size_t)(addr - json);
	snprintf(fixed, cap + 64, "%.*s\"max_inflight\": 3, %s", (int)at, json, addr);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cfg = gw_cfg_parse(fixed, "big", &errs);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_null(cfg);
	cr_assert_not_null(errs);
	cr_assert_str_eq(errs, "pools[19999].name: duplicate pool name \"pool00000\" (also "
			 "pools[0])\npools[19999].backends[1].max_inflight: 3 differs from \"auto\" "
			 "given for the same address in pools[0].backends[1] (one q process, one "
			 "limit: give both the same number, or both \"auto\")",
			 "%s", errs);
	cr_assert_lt(s, 2.0, "%zu pools with errors took %.3f s", n, s);
	free(errs);
	free(fixed);
	free(json);
}

/* Names reach log lines escaped (log_name, addr.log_text), a long one cut with "...". */
Test(config, names_for_logs)
{
	char *errs = NULL;
	struct gw_config *cfg = gw_cfg_parse("{\"listeners\": [{\"name\": \"l\\n1\", \"listen\": "
					     "\"127.0.0.1:5000\", \"pool\": \"p \\\"x\\\"\"}], "
					     "\"pools\": [{\"name\": \"p \\\"x\\\"\", \"backends\": "
					     "[{\"name\": \"b=\\\\\", \"address\": \"unix:/tmp/q \\u0001\"}, "
					     "{\"address\": \"h2:2\"}]}]}", "t", &errs);

	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	cr_assert_str_eq(cfg->listeners[0].log_name, "\"l\\n1\"");
	cr_assert_str_eq(cfg->listeners[0].addr.log_text, "127.0.0.1:5000");
	cr_assert_str_eq(cfg->pools[0].log_name, "\"p \\\"x\\\"\"");
	cr_assert_str_eq(cfg->pools[0].backends[0].log_name, "\"b=\\\\\"");
	cr_assert_str_eq(cfg->pools[0].backends[0].addr.log_text, "\"unix:/tmp/q \\x01\"");
	cr_assert_str_eq(cfg->pools[0].backends[1].log_name, "h2:2");
	gw_cfg_free(cfg);

	/* a long name is cut in logs, still one well-formed value, and ends with ... */
	char name[2100], *json = NULL;
	memset(name, 'n', 2000);
	name[2000] = '\0';
	cr_assert(asprintf(&json, "{\"pools\": [{\"name\": \"%s\", \"backends\": [{\"name\": "
			   "\"\\\"%s\", \"address\": \"h:1\"}]}]}", name, name) > 0);
	cfg = gw_cfg_parse(json, "t", &errs);
	cr_assert_not_null(cfg, "%s", errs ? errs : "");
	const char *pl = cfg->pools[0].log_name, *bl = cfg->pools[0].backends[0].log_name;
	cr_assert_eq(strlen(pl), 1024, "%zu", strlen(pl));
	cr_assert(strncmp(pl, "nnnn", 4) == 0 && strcmp(pl + 1021, "...") == 0, "%s", pl);
	cr_assert(strlen(bl) <= 1024 && strncmp(bl, "\"\\\"nnn", 6) == 0, "%.20s", bl);
	cr_assert(strcmp(bl + strlen(bl) - 4, "...\"") == 0, "%s", bl + strlen(bl) - 10);
	cr_assert_str_eq(cfg->pools[0].name, name, "the name itself is whole");
	gw_cfg_free(cfg);
	free(json);
}
