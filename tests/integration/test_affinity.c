/*
 * test_affinity — state that follows the client. A q client that defines something
 * (`.t.add:{x+y}`) and then calls it expects the call to run where the definition did; a query
 * pool of several replicas sends each message wherever a connection is free, so the call may
 * land on a replica that never saw the definition. `affinity: "client"` keeps each client on
 * one backend, `"user"` keeps every connection of a user on one (the same on every worker),
 * and a client whose backend goes down moves, saying so in the log and /stats.
 *
 * mockq evaluates the definitions and calls itself, so a call on the wrong replica answers
 * with the error of an undefined name; .mock.id[] tells which replica answered.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

#define N_BE 3

static struct t_proc *be[N_BE];
static struct t_proc *gate;
static int gw_port, stats_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
	gate = NULL;
	for (int k = 0; k < N_BE; k++)
		be[k] = NULL;
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(affinity, .init = setup, .fini = teardown, .timeout = 40.0);

/* three mockq replicas b1..b3 and qgate with one query pool over them */
static void start(const char *affinity, int workers)
{
	char *text = NULL, members[64] = "";

	for (int k = 0; k < N_BE; k++) {
		char name[8];

		snprintf(name, sizeof(name), "b%d", k + 1);
		be[k] = t_mockq_start(name, NULL);
		cr_assert(be[k] != NULL, "%s", t_errmsg());
	}
	if (affinity)
		snprintf(members, sizeof(members), "\"affinity\":\"%s\",", affinity);
	gw_port = T_OK(t_free_port());
	stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text,
			   "{\"workers\":%d,\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\",%s"
			   "\"reconnect\":{\"delay_ms\":50,\"max_delay_ms\":200},"
			   "\"backends\":[{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\"},"
			   "{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\"},"
			   "{\"name\":\"b3\",\"address\":\"127.0.0.1:%d\"}]}],"
			   "\"stats\":{\"listen\":\"127.0.0.1:%d\"},\"log\":{\"level\":\"info\"}}",
			   workers, gw_port, members, be[0]->port, be[1]->port, be[2]->port,
			   stats_port) > 0);
	T_OK(t_json_check(text));
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	gate = t_qgate_start(path, gw_port);
	cr_assert(gate != NULL, "%s", t_errmsg());
	/* every worker listening and every backend up: clients spread, and no first message
	 * finds a replica still connecting */
	cr_assert(t_wait_file_contains(gate->err_path, 0, "qgate ready", 5000) == 0,
		  "qgate did not log \"qgate ready\": %s", t_tail(gate->err_path, 400));
	for (int k = 0; k < N_BE; k++) {
		char needle[32];

		snprintf(needle, sizeof(needle), "backend=b%d pool=p", k + 1);
		cr_assert(t_wait_file_contains(gate->err_path, 0, needle, 5000) == 0,
			  "b%d never came up: %s", k + 1, t_tail(gate->err_path, 400));
		/* the log line is any worker's: wait until every worker has both connections up
		 * (/stats sums the workers' published figures) */
		char key[64];
		snprintf(key, sizeof(key), "pools/0/backends/%d/connections/idle", k);
		int64_t deadline = t_now_ms() + 5000, idle = -1;
		while ((idle = t_stats_int(stats_port, key)) < 2 * workers && t_now_ms() < deadline)
			poll(NULL, 0, 20);
		cr_assert_geq(idle, 2 * workers, "b%d: %" PRId64 " idle connections, want %d",
			      k + 1, idle, 2 * workers);
	}
}

/* which replica answers this client now (1..3) */
static int whose(int fd)
{
	struct t_obj *r = t_call_ok(fd, t_call0(".mock.id"), 5000);
	int k = 0;

	cr_assert(r->type == -T_SYM && r->s[0] == 'b', "id: %s", t_show(r));
	k = atoi(r->s + 1);
	t_free(r);
	cr_assert(k >= 1 && k <= N_BE);
	return k;
}

/* The PyKX guide's context example, as q text: a definition, then calls of it. */
static void define_and_call(int fd, int rounds, const char *who)
{
	t_free(t_call_ok(fd, t_str(".t.add:{x+y}"), 5000));
	for (int i = 0; i < rounds; i++) {
		struct t_obj *r = t_call_ok(fd, t_str(".t.add[4;2]"), 5000);

		cr_assert(r->type == -T_LONG && r->a.j == 6, "%s: call %d of .t.add gave %s (it ran "
			  "on a replica that never saw the definition)", who, i, t_show(r));
		t_free(r);
	}
}

static int64_t pool_stat(const char *key)
{
	char path[96];

	snprintf(path, sizeof(path), "pools/0/%s", key);
	return t_stats_int(stats_port, path);
}

#define N_CL 6

Test(affinity, client_keeps_each_client_on_one_backend)
{
	int fd[N_CL], home[N_CL], used = 0;

	start("client", 1);
	for (int i = 0; i < N_CL; i++)
		fd[i] = T_OK(t_q_connect("127.0.0.1", gw_port, "u:x", NULL));
	for (int i = 0; i < N_CL; i++) {
		char who[16];

		snprintf(who, sizeof(who), "client %d", i);
		define_and_call(fd[i], 10, who);
		home[i] = whose(fd[i]);
		for (int k = 0; k < 5; k++)
			cr_assert_eq(whose(fd[i]), home[i], "client %d moved without a reason", i);
		used |= 1 << home[i];
	}
	/* placed by the strategy: the clients do not all share one replica */
	cr_assert(__builtin_popcount((unsigned)used) >= 2, "all %d clients on one backend", N_CL);
	cr_assert_eq(pool_stat("affinity_moves"), 0);
}

Test(affinity, user_shares_one_backend_across_connections_and_workers)
{
	int fd[N_CL];

	start("user", 2);
	/* two users, three connections each; SO_REUSEPORT spreads them over both workers */
	for (int i = 0; i < N_CL; i++)
		fd[i] = T_OK(t_q_connect("127.0.0.1", gw_port, i % 2 ? "bob:x" : "alice:x", NULL));
	define_and_call(fd[0], 3, "alice's first connection");
	define_and_call(fd[1], 3, "bob's first connection");
	int alice = whose(fd[0]), bob = whose(fd[1]);
	for (int i = 2; i < N_CL; i++) {
		/* a connection of the same user finds what the user defined */
		struct t_obj *r = t_call_ok(fd[i], t_str(".t.add[40;2]"), 5000);

		cr_assert(r->type == -T_LONG && r->a.j == 42, "connection %d of %s: %s", i,
			  i % 2 ? "bob" : "alice", t_show(r));
		t_free(r);
		cr_assert_eq(whose(fd[i]), i % 2 ? bob : alice);
	}
}

Test(affinity, a_client_whose_backend_goes_down_moves_and_says_so)
{
	start("client", 1);
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "u:x", NULL));
	int home = whose(fd);
	size_t from = t_file_size(gate->err_path);

	t_proc_kill(be[home - 1]);
	be[home - 1] = NULL;
	/* the pool notices the loss, then the client's next message goes elsewhere (a request
	 * already on its way to the dead replica may fail with qgate: backend ... lost) */
	cr_assert(t_wait_file_contains(gate->err_path, from, "backend down", 5000) == 0,
		  "the loss was not noticed: %s", t_tail(gate->err_path, 400));
	int now = whose(fd);
	cr_assert_neq(now, home);
	cr_assert(t_wait_file_contains(gate->err_path, from, "client moved to another backend",
				       2000) == 0, "no log line: %s", t_tail(gate->err_path, 400));
	cr_assert_eq(pool_stat("affinity_moves"), 1);
	/* and it stays on its new backend */
	for (int k = 0; k < 5; k++)
		cr_assert_eq(whose(fd), now);
}

/* Without affinity the same client spreads over the replicas: the example breaks (the reason
 * for the setting). */
Test(affinity, none_sends_the_call_wherever_a_connection_is_free)
{
	int fd;
	bool broke = false;

	start(NULL, 1);
	fd = T_OK(t_q_connect("127.0.0.1", gw_port, "u:x", NULL));
	t_free(t_call_ok(fd, t_str(".t.add:{x+y}"), 5000));
	for (int i = 0; i < 12 && !broke; i++) {
		struct t_obj *r = t_call_ok(fd, t_str(".t.add[4;2]"), 5000);

		broke = r->type == T_ERROR;
		t_free(r);
	}
	cr_assert(broke, "12 calls all ran where the definition did: none would need no affinity");
}
