/*
 * test_restart — a gateway stopped with SIGTERM can be started again at once on the same
 * ports. That is what systemd's Restart= and an operator's "restart it" do. The old process's
 * listening socket must not outlive it: io_uring tears a ring down in the background, so a
 * listener with an accept still armed on it could keep the port bound for a moment after the
 * process is gone, and the new gateway refused to start ("address in use").
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/t_crit.h"

static struct t_proc *be;
static int gw_port;

static void setup(void)
{
	cr_assert(t_env_init() == 0, "%s", t_errmsg());
}

static void teardown(void)
{
	t_env_fini();
}

TestSuite(restart, .init = setup, .fini = teardown, .timeout = 60.0);

#define ROUNDS 10

Test(restart, sigterm_then_start_again_on_the_same_ports)
{
	char *text = NULL;

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	int stats_port = T_OK(t_free_port());
	cr_assert(asprintf(&text,
			   "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":"
			   "\"b1\",\"address\":\"127.0.0.1:%d\"}]}],\"stats\":{\"listen\":"
			   "\"127.0.0.1:%d\"}}", gw_port, be->port, stats_port) > 0);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	for (int round = 0; round < ROUNDS; round++) {
		struct t_proc *gate = t_qgate_start(path, gw_port);
		cr_assert(gate != NULL, "round %d: qgate did not start again: %s", round,
			  t_errmsg());
		/* a client connected when the stop comes: its connection outlives the process in
		 * the kernel for a while (FIN_WAIT), which must not hold the port either */
		int fd = t_q_connect("127.0.0.1", gw_port, "u:x", NULL);
		cr_assert(fd >= 0, "round %d: connect: %s; qgate: %s", round, t_errmsg(),
			  t_tail(gate->err_path, 600));
		t_call_expect(fd, t_call(".mock.echo", 1, t_long(round)), t_long(round), 5000);
		T_OK(t_proc_signal(gate, SIGTERM));
		cr_assert_eq(t_proc_wait(gate, 10000), 0, "round %d: qgate did not stop", round);
		cr_assert(WIFEXITED(gate->status) && WEXITSTATUS(gate->status) == 0,
			  "round %d: qgate exited with status %d", round, gate->status);
		close(fd);
	}
}

/*
 * An idle worker sleeps until its next deadline (up to a second): SIGTERM must wake it, so
 * that what is still owed after limits.shutdown_grace_ms is answered then, not a second
 * later. One worker, a grace of 700 ms, a request the backend holds for 3 s.
 */
Test(restart, sigterm_wakes_an_idle_worker_for_the_grace_period)
{
	char *text = NULL;

	be = t_mockq_start("b1", NULL);
	cr_assert(be != NULL, "%s", t_errmsg());
	gw_port = T_OK(t_free_port());
	cr_assert(asprintf(&text,
			   "{\"listeners\":[{\"name\":\"main\",\"listen\":\"127.0.0.1:%d\","
			   "\"pool\":\"p\"}],\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":"
			   "\"b1\",\"address\":\"127.0.0.1:%d\"}]}],"
			   "\"limits\":{\"shutdown_grace_ms\":700}}", gw_port, be->port) > 0);
	const char *path = T_PTR(t_write_file("gw.json", text));
	free(text);
	struct t_proc *gate = T_PTR(t_qgate_start(path, gw_port));
	int fd = T_OK(t_q_connect("127.0.0.1", gw_port, "u:p", NULL));
	T_OK(t_send_free(fd, T_SYNC, t_call(".mock.defer", 2, t_long(3000), t_long(1))));
	/* the request is with the backend (nothing else will wake the worker from now on) */
	int64_t deadline = t_now_ms() + 3000;
	while (t_now_ms() < deadline) {
		int fd2 = T_OK(t_q_connect("127.0.0.1", be->port, "direct:pw", NULL));
		struct t_obj *r = t_call_ok(fd2, t_call0(".mock.inflight"), 3000);
		int64_t n = r->a.j;
		t_free(r);
		close(fd2);
		if (n >= 1)
			break;
		poll(NULL, 0, 10);
	}
	poll(NULL, 0, 300);	/* the point: the worker idle, in its long sleep */
	int64_t t0 = t_now_ms();
	T_OK(t_proc_signal(gate, SIGTERM));
	struct t_obj *r = NULL;
	int type = -1;
	T_OK(t_q_recv(fd, 5000, &r, &type));
	int64_t took = t_now_ms() - t0;
	cr_assert(r->type == T_ERROR && strstr(r->s, "shutting down"), "got %s", t_show(r));
	t_free(r);
	cr_assert(took >= 650 && took < 1400, "the owed error came %lld ms after SIGTERM "
		  "(grace 700 ms)", (long long)took);
	cr_assert_eq(t_proc_wait(gate, 5000), 0);
	close(fd);
}
