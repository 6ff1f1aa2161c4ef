/*
 * test_chaos — the one rule under faults: every answer a client gets is the answer to its own
 * request, or a `qgate: ` error, never another request's answer. Client threads send tokens
 * (sync, pipelined, async, slow calls that time out, deferred calls on dedicated sockets,
 * calls that make the backend drop the connection, early disconnects) while a chaos thread
 * kills backends with SIGKILL and restarts them on the same port. Bounded in time and count.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

#define N_BE 3
#define N_CLIENTS 24
#define RUN_MS 4000

static struct t_proc *be[N_BE];
static int be_port[N_BE];
static int gw_port;
static atomic_int stop_flag;
static pthread_mutex_t be_lock = PTHREAD_MUTEX_INITIALIZER;

struct stats {
	int id;
	long ok, gw_errors, wrong, other_errors, reconnects;
	char first_wrong[256];
};

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(chaos, .init = setup, .fini = teardown, .timeout = 120.0);

static void restart_backend(int k)
{
	char port_s[16], name[8];

	snprintf(port_s, sizeof(port_s), "%d", be_port[k]);
	snprintf(name, sizeof(name), "b%d", k + 1);
	char *argv[] = { (char *)t_bin("MOCKQ_BIN"), "--port", port_s, "--name", name,
			 "--work-us", "100", NULL };
	/* the port was just freed by the killed process: bounded retries if it is slow to go */
	for (int attempt = 0; attempt < 20; attempt++) {
		struct t_proc *p = t_proc_start(name, argv);
		if (p && t_wait_accepting("127.0.0.1", be_port[k], 2000, p->pid) == 0) {
			be[k] = p;
			return;
		}
		if (p)
			t_proc_kill(p);
		poll(NULL, 0, 50);
	}
}

static void *chaos_main(void *arg)
{
	unsigned seed = 7;
	(void)arg;

	/* bounded: one kill every ~400 ms for the run */
	while (!atomic_load(&stop_flag)) {
		poll(NULL, 0, 300 + (int)(rand_r(&seed) % 200));
		if (atomic_load(&stop_flag))
			break;
		int k = (int)(rand_r(&seed) % N_BE);
		pthread_mutex_lock(&be_lock);
		t_proc_signal(be[k], SIGKILL);
		t_proc_wait(be[k], 2000);
		poll(NULL, 0, 50 + (int)(rand_r(&seed) % 100));
		restart_backend(k);
		pthread_mutex_unlock(&be_lock);
	}
	return NULL;
}

/* Judge one answer: its own token (or value), a qgate error, or a broken rule. */
static void judge(struct stats *st, struct t_obj *r, const char *want_tok, int64_t want_long)
{
	if (!r)
		return;
	if (r->type == T_ERROR) {
		if (t_is_err_prefix(r, "qgate: "))
			st->gw_errors++;
		else
			st->other_errors++;
	} else if ((want_tok && t_is_str(r, want_tok)) ||
		   (!want_tok && r->type == -T_LONG && r->a.j == want_long)) {
		st->ok++;
	} else {
		if (!st->wrong)
			snprintf(st->first_wrong, sizeof(st->first_wrong), "wanted %s%" PRId64
				 ", got %s", want_tok ? want_tok : "", want_long, t_show(r));
		st->wrong++;
	}
	t_free(r);
}

static void *client_main(void *arg)
{
	struct stats *st = arg;
	int id = st->id;
	unsigned seed = 1000u + (unsigned)id;
	long seq = 0;
	int fd = -1;

	while (!atomic_load(&stop_flag)) {
		if (fd < 0) {
			fd = t_q_connect("127.0.0.1", gw_port, "chaos:x", NULL);
			if (fd < 0) {
				poll(NULL, 0, 10);
				continue;
			}
			st->reconnects++;
		}
		char tok[3][64];
		int kind = (int)(rand_r(&seed) % 10);
		int err = 0;
		struct t_obj *r;

		if (kind <= 3) {		/* plain sync echo */
			snprintf(tok[0], sizeof(tok[0]), "c%d-%ld", id, seq++);
			struct t_obj *q = t_call(".mock.echo", 1, t_str(tok[0]));
			r = t_q_call(fd, q, 5000, NULL, &err);
			t_free(q);
			judge(st, r, tok[0], 0);
		} else if (kind == 4) {		/* three pipelined, answers in order */
			for (int i = 0; i < 3; i++) {
				snprintf(tok[i], sizeof(tok[i]), "p%d-%ld", id, seq++);
				if (t_send_free(fd, T_SYNC, t_call(".mock.echo", 1, t_str(tok[i]))) < 0)
					err = -1;
			}
			for (int i = 0; i < 3 && !err; i++) {
				r = NULL;
				int type = -1;
				if (t_q_recv(fd, 5000, &r, &type) < 0) {
					err = -1;
					break;
				}
				judge(st, r, tok[i], 0);
			}
		} else if (kind == 5) {		/* async then a sync */
			snprintf(tok[0], sizeof(tok[0]), "a%d-%ld", id, seq++);
			t_send_free(fd, T_ASYNC, t_call(".mock.echo", 1, t_str(tok[0])));
			snprintf(tok[1], sizeof(tok[1]), "s%d-%ld", id, seq++);
			struct t_obj *q = t_call(".mock.echo", 1, t_str(tok[1]));
			r = t_q_call(fd, q, 5000, NULL, &err);
			t_free(q);
			judge(st, r, tok[1], 0);
		} else if (kind == 6) {		/* slow: times out (30 ms rule) or answers */
			int64_t ms = 10 + (int64_t)(rand_r(&seed) % 50);
			struct t_obj *q = t_call(".mock.sleep", 1, t_long(ms));
			r = t_q_call(fd, q, 5000, NULL, &err);
			t_free(q);
			judge(st, r, NULL, ms);
		} else if (kind == 7) {		/* deferred, on a dedicated socket */
			int64_t v = seq++;
			struct t_obj *q = t_call(".mock.defer", 2, t_long(5 + rand_r(&seed) % 40),
						 t_long(v));
			r = t_q_call(fd, q, 5000, NULL, &err);
			t_free(q);
			judge(st, r, NULL, v);
		} else if (kind == 8) {		/* the backend drops its connection */
			struct t_obj *q = t_call0(".mock.drop");
			r = t_q_call(fd, q, 5000, NULL, &err);
			t_free(q);
			if (r && !(r->type == T_ERROR && t_is_err_prefix(r, "qgate: "))) {
				if (!st->wrong)
					snprintf(st->first_wrong, sizeof(st->first_wrong),
						 ".mock.drop[] answered %s", t_show(r));
				st->wrong++;
			} else if (r) {
				st->gw_errors++;
			}
			t_free(r);
		} else {			/* leave in the middle of a request */
			snprintf(tok[0], sizeof(tok[0]), "x%d-%ld", id, seq++);
			t_send_free(fd, T_SYNC, t_call(".mock.sleep", 1, t_long(20)));
			close(fd);
			fd = -1;
			continue;
		}
		if (err < 0 && fd >= 0) {
			/* the harness lost the socket (gateway closed a mid-answer client): start over */
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void run_chaos(const char *pool_extra);

Test(chaos, every_answer_is_its_own_or_a_qgate_error_while_backends_die)
{
	run_chaos("");
}

static void run_chaos(const char *pool_extra)
{
	static const char *const work[] = { "--work-us", "100", NULL };
	char members[1200], *text = NULL;

	cr_assert(t_bin("QGATE_BIN") != NULL, "%s", t_errmsg());
	for (int k = 0; k < N_BE; k++) {
		char name[8];
		snprintf(name, sizeof(name), "b%d", k + 1);
		be[k] = T_PTR(t_mockq_start(name, work));
		be_port[k] = be[k]->port;
	}
	gw_port = T_OK(t_free_port());
	snprintf(members, sizeof(members),
		 "\"pools\":[{\"name\":\"p\",\"backends\":["
		 "{\"name\":\"b1\",\"address\":\"127.0.0.1:%d\",\"connections\":2},"
		 "{\"name\":\"b2\",\"address\":\"127.0.0.1:%d\",\"connections\":2},"
		 "{\"name\":\"b3\",\"address\":\"127.0.0.1:%d\",\"connections\":2}],"
		 "\"queue\":{\"max\":1000,\"timeout_ms\":2000},"
		 "\"reconnect\":{\"delay_ms\":20,\"max_delay_ms\":200,\"jitter\":0.2}%s}],"
		 "\"rules\":[{\"function\":\".mock.sleep\",\"timeout_ms\":30},"
		 "{\"function\":\".mock.defer\",\"dedicated\":true,\"timeout_ms\":2000}]",
		 be_port[0], be_port[1], be_port[2], pool_extra);
	cr_assert(asprintf(&text, "{\"listeners\":[{\"name\":\"main\",\"listen\":"
			   "\"127.0.0.1:%d\",\"pool\":\"p\"}],%s}", gw_port, members) > 0);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	struct t_proc *gate = T_PTR(t_qgate_start(path, gw_port));

	static struct stats st[N_CLIENTS];
	pthread_t th[N_CLIENTS], chaos;
	atomic_store(&stop_flag, 0);
	for (int i = 0; i < N_CLIENTS; i++) {
		memset(&st[i], 0, sizeof(st[i]));
		st[i].id = i;
		cr_assert_eq(pthread_create(&th[i], NULL, client_main, &st[i]), 0);
	}
	cr_assert_eq(pthread_create(&chaos, NULL, chaos_main, NULL), 0);
	poll(NULL, 0, RUN_MS);	/* the run's length, not a synchronisation */
	atomic_store(&stop_flag, 1);
	pthread_join(chaos, NULL);
	for (int i = 0; i < N_CLIENTS; i++)
		pthread_join(th[i], NULL);

	long ok = 0, gwe = 0, wrong = 0, other = 0;
	const char *why = "";
	for (int i = 0; i < N_CLIENTS; i++) {
		ok += st[i].ok;
		gwe += st[i].gw_errors;
		wrong += st[i].wrong;
		other += st[i].other_errors;
		if (st[i].wrong && !*why)
			why = st[i].first_wrong;
	}
	cr_log_info("chaos: %ld own answers, %ld qgate errors, %ld other errors", ok, gwe, other);
	cr_assert_eq(wrong, 0, "%ld answers were not the request's own: first %s", wrong, why);
	cr_assert_eq(other, 0, "%ld errors did not come from qgate", other);
	cr_assert_gt(ok, 1000, "only %ld answers got through", ok);
	cr_assert_gt(gwe, 0, "no fault ever reached a client: the chaos did not bite");
	cr_assert(t_proc_alive(gate), "qgate died: %s", t_tail(gate->err_path, 800));
	/* a clean stop after all that (under ASan this also checks for leaks) */
	T_OK(t_proc_signal(gate, SIGTERM));
	T_OK(t_proc_wait(gate, 10000));
	cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
		  "qgate exit status %d: %s", gate->status, t_tail(gate->err_path, 1500));
}
