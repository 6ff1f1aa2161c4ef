/*
 * t_proc — child processes and files for the integration tests: a per-test temporary
 * directory, programs started with stdout/stderr captured to files in it, guaranteed cleanup,
 * bounded waits on log contents, and starters for mockq and qgate.
 *
 * Lifetime: t_env_init() at test start (criterion .init), t_env_fini() at the end (.fini, also
 * run from atexit). Children are killed by t_env_fini(); they also get PR_SET_PDEATHSIG so that
 * a test process killed by criterion's timeout (no .fini) still takes its children with it.
 * Binaries are found through environment variables set by meson: MOCKQ_BIN, QBENCH_BIN,
 * QGATE_BIN.
 */
#ifndef GW_TESTS_SUPPORT_T_PROC_H
#define GW_TESTS_SUPPORT_T_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define T_MAX_PROCS 32

struct t_proc {
	pid_t pid;
	char name[64];
	char out_path[256];	/* captured stdout */
	char err_path[256];	/* captured stderr */
	int port;		/* the TCP port it serves (starters set it), 0 if none */
	bool is_reaped;
	int status;		/* wait status once reaped */
};

/* Create the per-test directory and install cleanup. 0 or -errno. */
int t_env_init(void);
/* Kill every child still running, print the tail of their logs, remove the directory. */
void t_env_fini(void);
/* The per-test directory (valid between init and fini). */
const char *t_env_dir(void);

/*
 * Path of a binary from environment variable var (e.g. "QGATE_BIN"); NULL with t_errmsg()
 * set when unset, empty or not executable.
 */
const char *t_bin(const char *var);

/*
 * Start argv[0] with argv, stdin from /dev/null, stdout and stderr to <dir>/<name>.out/.err
 * (<name>-N.out/.err while another process of that name still runs).
 * Returns the process (owned by the env) or NULL with t_errmsg() set.
 */
struct t_proc *t_proc_start(const char *name, char *const argv[]);
/* True while the process runs (reaps it if it has exited). */
bool t_proc_alive(struct t_proc *p);
/* Send sig. 0 or -errno. */
int t_proc_signal(struct t_proc *p, int sig);
/* Wait up to timeout_ms for the exit; 0 with p->status set, or -ETIMEDOUT. */
int t_proc_wait(struct t_proc *p, int timeout_ms);
/* SIGKILL and reap. */
void t_proc_kill(struct t_proc *p);

/*
 * Run argv to completion with stdin_text (may be NULL) on stdin, within timeout_ms (killed
 * after). *out / *err (either may be NULL) get malloc'd stdout/stderr text. Returns the exit
 * code (0..255), 128+signal when killed by a signal, or -errno / -ETIMEDOUT.
 */
int t_run(char *const argv[], const char *stdin_text, int timeout_ms, char **out, char **err);

/* Write text to <dir>/<name>; returns the path (static storage per call slot) or NULL. */
const char *t_write_file(const char *name, const char *text);
/* Whole file as a malloc'd NUL-terminated string, or NULL. */
char *t_read_file(const char *path);
/* Size of a file, 0 if missing. */
size_t t_file_size(const char *path);
/*
 * Wait until the file holds needle at or after byte offset from, at most timeout_ms.
 * Returns 0, or -ETIMEDOUT.
 */
int t_wait_file_contains(const char *path, size_t from, const char *needle, int timeout_ms);
/* Same, for any line (after from) containing every one of the n needles (case-insensitive). */
int t_wait_line_with(const char *path, size_t from, int n, const char *const needles[],
		     int timeout_ms);

/*
 * Start mockq named name on a fresh port with extra arguments (NULL-terminated list, may be
 * empty), wait for its "listening" line and for the port to accept. Retries on another port if
 * it exits at once (a port race). NULL with t_errmsg() set on failure.
 */
struct t_proc *t_mockq_start(const char *name, const char *const extra[]);

/*
 * Start `qgate -c cfg_path` and wait until 127.0.0.1:port accepts (port > 0) or the abstract
 * unix name of -port accepts (port < 0), and until it logs "qgate ready" (every worker
 * listens), bounded. NULL with t_errmsg() set on failure
 * (including "QGATE_BIN not set").
 */
struct t_proc *t_qgate_start(const char *cfg_path, int port);

/* The tail (up to max_bytes) of a file, for failure messages; thread-local storage. */
const char *t_tail(const char *path, size_t max_bytes);

/* `qgate --hash-password` of pw: a malloc'd hash (caller frees), or NULL with t_errmsg(). */
char *t_hash_password(const char *pw);

#endif /* GW_TESTS_SUPPORT_T_PROC_H */
