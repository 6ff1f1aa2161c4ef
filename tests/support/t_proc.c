/*
 * t_proc — per-test directory, child processes with captured output, bounded log waits,
 * and the mockq / qgate starters used by the integration tests.
 */
#include "tests/support/t_proc.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tests/support/t_net.h"

static char env_dir[128];
static struct t_proc procs[T_MAX_PROCS];
static int n_procs;
static bool is_atexit_set;
static pid_t env_owner;		/* the process that made env_dir (forked children must not clean) */

const char *t_env_dir(void)
{
	return env_dir;
}

int t_env_init(void)
{
	char tmpl[] = "/tmp/itest-XXXXXX";

	if (env_dir[0] && env_owner == getpid())
		return 0;
	if (!mkdtemp(tmpl))
		return t_fail(errno, "mkdtemp: %s", strerror(errno));
	snprintf(env_dir, sizeof(env_dir), "%s", tmpl);
	env_owner = getpid();
	n_procs = 0;
	/* A peer closing on us must show up as an error, not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (!is_atexit_set) {
		atexit(t_env_fini);
		is_atexit_set = true;
	}
	return 0;
}

const char *t_tail(const char *path, size_t max_bytes)
{
	static __thread char buf[4096];
	size_t size = t_file_size(path), want = max_bytes < sizeof(buf) - 1 ? max_bytes :
						sizeof(buf) - 1;
	ssize_t k = 0;
	int fd;

	buf[0] = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return buf;
	if (size > want)
		lseek(fd, (off_t)(size - want), SEEK_SET);
	k = read(fd, buf, want);
	close(fd);
	buf[k > 0 ? k : 0] = 0;
	return buf;
}

static void remove_dir(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	/* Bounded by the directory's entries; the harness creates only plain files here. */
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

void t_env_fini(void)
{
	bool is_keep = getenv("T_KEEP") && getenv("T_KEEP")[0];

	if (!env_dir[0] || env_owner != getpid())
		return;
	/* Newest first: the gateway goes before its backends, so it logs no spurious loss. */
	for (int k = n_procs - 1; k >= 0; k--)
		if (!procs[k].is_reaped)
			t_proc_kill(&procs[k]);
	/* Logs of every child end up in the test's output: that is what explains a failure. */
	for (int k = 0; k < n_procs; k++) {
		if (t_file_size(procs[k].err_path))
			fprintf(stderr, "---- %s (pid %d) stderr, tail ----\n%s\n", procs[k].name,
				(int)procs[k].pid, t_tail(procs[k].err_path, 1500));
	}
	if (is_keep)
		fprintf(stderr, "T_KEEP: logs kept in %s\n", env_dir);
	else
		remove_dir(env_dir);
	env_dir[0] = 0;
	n_procs = 0;
}

const char *t_bin(const char *var)
{
	const char *p = getenv(var);

	if (!p || !p[0]) {
		t_fail(ENOENT, "%s is not set: the binary was not built (meson defines no target "
		       "for it yet), so this test cannot run", var);
		return NULL;
	}
	if (access(p, X_OK) != 0) {
		t_fail(ENOENT, "%s=%s is not an executable file: %s", var, p, strerror(errno));
		return NULL;
	}
	return p;
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

/* Runs in the forked child: wire stdio, tie our life to the parent's, exec. */
static void child_exec(pid_t parent, const char *in_path, const char *out_path,
		       const char *err_path, char *const argv[])
{
	int in = open(in_path, O_RDONLY), out = open_log(out_path), err = open_log(err_path);

	if (in < 0 || out < 0 || err < 0)
		_exit(126);
	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	/* Killed with the test process even when criterion SIGKILLs it on a timeout. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(125);
	signal(SIGPIPE, SIG_DFL);
	execv(argv[0], argv);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

struct t_proc *t_proc_start(const char *name, char *const argv[])
{
	struct t_proc *p;
	pid_t parent = getpid();

	if (!env_dir[0] && t_env_init() < 0)
		return NULL;
	if (n_procs >= T_MAX_PROCS) {
		t_fail(EMFILE, "too many child processes in one test");
		return NULL;
	}
	/* two live processes of one name (two gateways of a test) must not share a log file:
	 * the second's O_TRUNC would garble the first's, and a wait for a line could find the
	 * other's; a name whose earlier process has exited is reused, as a restart expects */
	int twin = 0;
	for (int k = 0; k < n_procs; k++)
		if (!strcmp(procs[k].name, name) && t_proc_alive(&procs[k]))
			twin = n_procs;
	p = &procs[n_procs];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	if (twin) {
		snprintf(p->out_path, sizeof(p->out_path), "%s/%s-%d.out", env_dir, name, twin);
		snprintf(p->err_path, sizeof(p->err_path), "%s/%s-%d.err", env_dir, name, twin);
	} else {
		snprintf(p->out_path, sizeof(p->out_path), "%s/%s.out", env_dir, name);
		snprintf(p->err_path, sizeof(p->err_path), "%s/%s.err", env_dir, name);
	}
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0) {
		t_fail(errno, "fork: %s", strerror(errno));
		return NULL;
	}
	if (p->pid == 0)
		child_exec(parent, "/dev/null", p->out_path, p->err_path, argv);
	n_procs++;
	return p;
}

bool t_proc_alive(struct t_proc *p)
{
	pid_t r;

	if (p->is_reaped)
		return false;
	r = waitpid(p->pid, &p->status, WNOHANG);
	if (r == p->pid) {
		p->is_reaped = true;
		return false;
	}
	return true;
}

int t_proc_signal(struct t_proc *p, int sig)
{
	if (p->is_reaped)
		return -ESRCH;
	return kill(p->pid, sig) < 0 ? -errno : 0;
}

int t_proc_wait(struct t_proc *p, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;

	/* Bounded by the deadline, 5 ms between looks. */
	while (t_proc_alive(p)) {
		if (t_now_ms() >= deadline)
			return t_fail(ETIMEDOUT, "%s (pid %d) still running after %d ms", p->name,
				      (int)p->pid, timeout_ms);
		poll(NULL, 0, 5);
	}
	return 0;
}

void t_proc_kill(struct t_proc *p)
{
	if (p->is_reaped)
		return;
	kill(p->pid, SIGKILL);
	if (waitpid(p->pid, &p->status, 0) == p->pid)
		p->is_reaped = true;
}

int t_run(char *const argv[], const char *stdin_text, int timeout_ms, char **out, char **err)
{
	static unsigned seq;
	char in_path[256], out_path[256], err_path[256];
	int64_t deadline = t_now_ms() + timeout_ms;
	pid_t pid, parent = getpid();
	int status = 0, rc;

	if (!env_dir[0] && t_env_init() < 0)
		return -EIO;
	seq++;
	snprintf(in_path, sizeof(in_path), "%s/run%u.in", env_dir, seq);
	snprintf(out_path, sizeof(out_path), "%s/run%u.out", env_dir, seq);
	snprintf(err_path, sizeof(err_path), "%s/run%u.err", env_dir, seq);
	{
		FILE *f = fopen(in_path, "w");

		if (!f)
			return t_fail(errno, "%s: %s", in_path, strerror(errno));
		if (stdin_text)
			fputs(stdin_text, f);
		fclose(f);
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return t_fail(errno, "fork: %s", strerror(errno));
	if (pid == 0)
		child_exec(parent, in_path, out_path, err_path, argv);
	/* Bounded by the deadline, 5 ms between looks; killed when it overruns. */
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (t_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return t_fail(ETIMEDOUT, "%s did not finish within %d ms; stderr: %s",
				      argv[0], timeout_ms, t_tail(err_path, 400));
		}
		poll(NULL, 0, 5);
	}
	if (out)
		*out = t_read_file(out_path);
	if (err)
		*err = t_read_file(err_path);
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return rc;
}

const char *t_write_file(const char *name, const char *text)
{
	static char paths[8][256];
	static unsigned slot;
	char *path = paths[slot++ % 8];
	FILE *f;

	if (!env_dir[0] && t_env_init() < 0)
		return NULL;
	snprintf(path, sizeof(paths[0]), "%s/%s", env_dir, name);
	f = fopen(path, "w");
	if (!f) {
		t_fail(errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	fputs(text, f);
	if (fclose(f) != 0) {
		t_fail(errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	return path;
}

char *t_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (!f)
		return NULL;
	/* Bounded by the file's size. */
	for (;;) {
		size_t k;

		if (cap - len < 4097) {
			char *nb = realloc(buf, cap ? cap * 2 : 8192);

			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		k = fread(buf + len, 1, 4096, f);
		len += k;
		if (k == 0)
			break;
	}
	fclose(f);
	buf[len] = 0;
	return buf;
}

size_t t_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Does the text after from hold a line with every needle (case-insensitive)? */
static bool has_line(const char *text, size_t len, size_t from, int n,
		     const char *const needles[])
{
	const char *p = text + (from < len ? from : len), *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[2048];
		int k;

		snprintf(line, sizeof(line), "%.*s", (int)(ll < sizeof(line) - 1 ? ll :
							  sizeof(line) - 1), p);
		for (k = 0; k < n; k++)
			if (!strcasestr(line, needles[k]))
				break;
		if (k == n)
			return true;
		p += ll + 1;
	}
	return false;
}

int t_wait_line_with(const char *path, size_t from, int n, const char *const needles[],
		     int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;

	/* Bounded by the deadline, 10 ms between reads. */
	for (;;) {
		char *text = t_read_file(path);
		bool is_found = text && has_line(text, strlen(text), from, n, needles);

		free(text);
		if (is_found)
			return 0;
		if (t_now_ms() >= deadline)
			return t_fail(ETIMEDOUT, "%s: no line with \"%s\"%s after %d ms; tail: %s",
				      path, needles[0], n > 1 ? " (and more)" : "", timeout_ms,
				      t_tail(path, 600));
		poll(NULL, 0, 10);
	}
}

int t_wait_file_contains(const char *path, size_t from, const char *needle, int timeout_ms)
{
	int64_t deadline = t_now_ms() + timeout_ms;

	/* Bounded by the deadline, 10 ms between reads. */
	for (;;) {
		char *text = t_read_file(path);
		bool is_found = text && strlen(text) >= from && strstr(text + from, needle);

		free(text);
		if (is_found)
			return 0;
		if (t_now_ms() >= deadline)
			return t_fail(ETIMEDOUT, "%s: no \"%s\" after %d ms; tail: %s", path,
				      needle, timeout_ms, t_tail(path, 600));
		poll(NULL, 0, 10);
	}
}

struct t_proc *t_mockq_start(const char *name, const char *const extra[])
{
	const char *bin = t_bin("MOCKQ_BIN");
	char port_s[16], link_path[300];

	if (!bin)
		return NULL;
	/* A neutral name, as for qgate below: a stray `pkill mockq` must not hit our backends. */
	if (!env_dir[0] && t_env_init() < 0)
		return NULL;
	snprintf(link_path, sizeof(link_path), "%s/be-under-test", env_dir);
	if (access(link_path, X_OK) != 0 && symlink(bin, link_path) != 0) {
		t_fail(errno, "symlink %s: %s", link_path, strerror(errno));
		return NULL;
	}
	/* A port race (someone took it between our check and mockq's bind) shows as an early
	 * exit: try again on another port, at most 3 times. */
	for (int attempt = 0; attempt < 3; attempt++) {
		char *argv[40];
		struct t_proc *p;
		int port = t_free_port(), n = 0, rc;

		if (port < 0)
			return NULL;
		snprintf(port_s, sizeof(port_s), "%d", port);
		argv[n++] = link_path;
		argv[n++] = "--port";
		argv[n++] = port_s;
		argv[n++] = "--name";
		argv[n++] = (char *)name;
		for (int k = 0; extra && extra[k] && n < 39; k++)
			argv[n++] = (char *)extra[k];
		argv[n] = NULL;
		p = t_proc_start(name, argv);
		if (!p)
			return NULL;
		p->port = port;
		rc = t_wait_accepting("127.0.0.1", port, 10000, p->pid);
		if (rc == 0)
			return p;
		if (t_proc_alive(p)) {
			t_fail(ETIMEDOUT, "mockq %s not accepting on %d within 10 s; stderr: %s",
			       name, port, t_tail(p->err_path, 400));
			return NULL;
		}
		t_fail(ECHILD, "mockq %s exited (status %d) before accepting on %d; stderr: %s",
		       name, p->status, port, t_tail(p->err_path, 400));
	}
	return NULL;
}

struct t_proc *t_qgate_start(const char *cfg_path, int port)
{
	const char *bin = t_bin("QGATE_BIN");
	char *argv[4], link_path[300];
	struct t_proc *p;
	int rc;

	if (!bin)
		return NULL;
	/*
	 * Run it through a symlink with a neutral name (and from a directory whose name does not
	 * say qgate either): on a shared development machine someone's `pkill qgate` must not
	 * stop the gateway under test half-way through.
	 */
	snprintf(link_path, sizeof(link_path), "%s/gw-under-test", env_dir);
	unlink(link_path);
	if (symlink(bin, link_path) != 0) {
		t_fail(errno, "symlink %s: %s", link_path, strerror(errno));
		return NULL;
	}
	argv[0] = link_path;
	argv[1] = "-c";
	argv[2] = (char *)cfg_path;
	argv[3] = NULL;
	p = t_proc_start("qgate", argv);
	if (!p)
		return NULL;
	p->port = port;
	rc = port > 0 ? t_wait_accepting("127.0.0.1", port, 10000, p->pid) :
			t_wait_accepting_unix(-port, 10000, p->pid);
	if (rc < 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", t_errmsg());
		t_fail(rc, "qgate did not become ready: %s; stderr: %s", why,
		       t_tail(p->err_path, 800));
		return NULL;
	}
	/* a port that accepts may be the first worker's alone: "qgate ready" is logged once
	 * every worker listens (a test counting clients per worker needs all of them) */
	rc = t_wait_file_contains(p->err_path, 0, "qgate ready", 10000);
	if (rc < 0) {
		t_fail(rc, "qgate accepts but never logged \"qgate ready\"; stderr: %s",
		       t_tail(p->err_path, 800));
		return NULL;
	}
	return p;
}

char *t_hash_password(const char *pw)
{
	const char *bin = t_bin("QGATE_BIN");
	char *out = NULL, *err = NULL, *in = NULL;

	if (!bin)
		return NULL;
	if (asprintf(&in, "%s\n", pw) < 0)
		return NULL;
	char *const argv[] = { (char *)bin, "--hash-password", NULL };
	int rc = t_run(argv, in, 20000, &out, &err);
	free(in);
	if (rc != 0 || !out || strncmp(out, "$qgate$", 7) != 0) {
		t_fail(rc < 0 ? -rc : EINVAL, "qgate --hash-password failed (%d): %s", rc,
		       err ? err : "");
		free(out);
		free(err);
		return NULL;
	}
	free(err);
	out[strcspn(out, "\n")] = '\0';
	return out;
}
