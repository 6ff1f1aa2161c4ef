/*
 * test_router — gateway/router.c on its own: which pool a message goes to, in order (the
 * first matching rule, the user's pool, the listener's pool), rule actions (timeout,
 * dedicated, deny), allow lists, compressed messages. The config is a real parsed file; the
 * runtime objects are the few fields the router reads.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/qipc.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/pwhash.h"
#include "gateway/router.h"
#include "gateway/runtime.h"
#include "gateway/worker.h"

static const char *const cfg_text =
	"{\"listeners\":[{\"name\":\"l\",\"listen\":\"127.0.0.1:1\",\"pool\":\"hdb\"}],"
	" \"auth\":{\"users\":["
	"  {\"name\":\"etl\",\"password_hash\":\"%s\",\"pool\":\"tp\"},"
	"  {\"name\":\"ro\",\"password_hash\":\"%s\",\"allow\":[\".ro.*\",\"getTrades\"]},"
	"  {\"name\":\"plain\",\"password_hash\":\"%s\"}]},"
	" \"pools\":[{\"name\":\"hdb\",\"backends\":[{\"address\":\"127.0.0.1:2\"}]},"
	"            {\"name\":\"rdb\",\"backends\":[{\"address\":\"127.0.0.1:3\"}]},"
	"            {\"name\":\"tp\",\"backends\":[{\"address\":\"127.0.0.1:4\"}]}],"
	" \"rules\":[{\"function\":\".rdb.*\",\"pool\":\"rdb\"},"
	"            {\"function\":\".gw.long*\",\"dedicated\":true,\"timeout_ms\":600000},"
	"            {\"prefix\":\"select from trade\",\"pool\":\"rdb\",\"timeout_ms\":10000},"
	"            {\"function\":\"kill*\",\"deny\":true},"
	"            {\"user\":\"etl\",\"function\":\".u.*\",\"pool\":\"hdb\"}]}";

static struct gw_config *cfg;
static struct gw_worker w;
static struct gw_pool_rt pool_rt[3], *pools[3];
static struct gw_listener_rt listener;
static struct gw_conn client;

static void setup(void)
{
	char *hash = gw_pw_hash("x"), *text = NULL, *errs = NULL;

	cr_assert(hash != NULL);
	cr_assert(asprintf(&text, cfg_text, hash, hash, hash) > 0);
	cfg = gw_cfg_parse(text, "router-test", &errs);
	cr_assert(cfg != NULL, "config: %s", errs ? errs : "?");
	free(text);
	free(hash);
	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	for (int i = 0; i < 3; i++) {
		memset(&pool_rt[i], 0, sizeof(pool_rt[i]));
		pool_rt[i].cfg = &cfg->pools[i];
		pools[i] = &pool_rt[i];
	}
	w.pools = pools;
	w.n_pools = 3;
	memset(&listener, 0, sizeof(listener));
	listener.cfg = &cfg->listeners[0];
	listener.pool = pools[0];
	memset(&client, 0, sizeof(client));
	client.kind = GW_CONN_CLIENT;
	client.cl.listener = &listener;
}

static void teardown(void)
{
	gw_cfg_free(cfg);
}

TestSuite(router, .init = setup, .fini = teardown);

static void as_user(const char *name)
{
	snprintf(client.cl.user, sizeof(client.cl.user), "%s", name);
	client.cl.ucfg = gw_cfg_user(cfg, name);
}

/* Route a sync message whose payload is o (freed here); compressed on request. */
static struct gw_route route_obj(struct qipc_obj *o, bool compress)
{
	uint8_t *msg = NULL;
	size_t len = 0;
	struct gw_route rt;

	int rc = qipc_encode_msg(o, QIPC_SYNC, compress, &msg, &len);
	cr_assert(rc == 0, "encode: %d", rc);
	if (compress)
		cr_assert_eq(msg[2], 1, "the test message did not compress");
	gw_route(&w, &client, msg, len, &rt);
	free(msg);
	qipc_obj_free(o);
	return rt;
}

static struct qipc_obj *call(const char *fn)
{
	struct qipc_obj *l = qipc_obj_list(2);

	l->items[0] = qipc_obj_sym(fn);
	l->items[1] = qipc_obj_long(1);
	return l;
}

static struct qipc_obj *query(const char *text)
{
	return qipc_obj_str(text, strlen(text));
}

/* rt must be a variable: the macro reads it twice */
#define POOL(rt) ((rt).pool ? (rt).pool->cfg->name : "(none)")

Test(router, first_matching_rule_then_user_then_listener)
{
	as_user("plain");
	struct gw_route rt = route_obj(call(".rdb.getTrades"), false);
	cr_assert_str_eq(POOL(rt), "rdb");
	rt = route_obj(call(".hdb.x"), false);
	cr_assert_str_eq(POOL(rt), "hdb");	/* no rule: the listener's pool */
	rt = route_obj(query("select from trade where sym=`a"), false);
	cr_assert_str_eq(POOL(rt), "rdb");
	cr_assert_eq(rt.timeout_ms, 10000);
	rt = route_obj(query("select from quote"), false);
	cr_assert_str_eq(POOL(rt), "hdb");
	as_user("etl");
	rt = route_obj(call(".x.y"), false);
	cr_assert_str_eq(POOL(rt), "tp");	/* the user's own pool */
	rt = route_obj(call(".u.upd"), false);
	cr_assert_str_eq(POOL(rt), "hdb");	/* a user rule wins over the user's pool */
}

Test(router, actions_without_a_pool_keep_searching)
{
	as_user("plain");
	struct gw_route rt = route_obj(call(".gw.longQuery"), false);
	cr_assert(rt.is_dedicated);
	cr_assert_eq(rt.timeout_ms, 600000);
	cr_assert_str_eq(POOL(rt), "hdb");
}

Test(router, deny_rules_and_allow_lists)
{
	as_user("plain");
	cr_assert(route_obj(call("killAll"), false).is_denied);
	cr_assert(!route_obj(call("skill"), false).is_denied);
	as_user("ro");
	cr_assert(!route_obj(call(".ro.read"), false).is_denied);
	cr_assert(!route_obj(call("getTrades"), false).is_denied);
	cr_assert(route_obj(call(".rdb.write"), false).is_denied);
	cr_assert(route_obj(query("getTrades[]"), false).is_denied, "a string names no function");
}

Test(router, string_headed_calls_and_compressed_messages)
{
	as_user("plain");
	struct qipc_obj *l = qipc_obj_list(2);
	l->items[0] = qipc_obj_str(".rdb.q", 6);	/* PyKX and the Java driver send a string */
	l->items[1] = qipc_obj_long(1);
	struct gw_route sr = route_obj(l, false);
	cr_assert_str_eq(POOL(sr), "rdb");
	/* a compressed query is peeked at through partial decompression */
	char text[5000];
	memcpy(text, "select from trade ", 18);
	for (size_t i = 18; i < sizeof(text) - 1; i++)
		text[i] = "ab"[i % 2];
	text[sizeof(text) - 1] = '\0';
	struct gw_route rt = route_obj(query(text), true);
	cr_assert_str_eq(POOL(rt), "rdb");
	/* the audit text is the query's first 47 bytes */
	cr_assert_eq(strlen(rt.what), 47);
	cr_assert(memcmp(rt.what, text, 47) == 0, "what: %s", rt.what);
}
