/*
 * t_net — loopback networking for the integration tests: free ports, bounded connects,
 * waiting for a listener, and a blocking q IPC client (handshake, send, receive, call).
 *
 * Every function is bounded in time. Errors are negative errno values; a one-line reason for
 * the last failure in the calling thread is available from t_errmsg() (tests print it).
 * Thread-safe: tests drive many clients from many threads.
 */
#ifndef GW_TESTS_SUPPORT_T_NET_H
#define GW_TESTS_SUPPORT_T_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct t_obj;

/* Reason for the last failure of a t_* call in this thread ("" if none). */
const char *t_errmsg(void);
/* Set the reason (printf-like); returns -err_code so callers can `return t_fail(...)`. */
int t_fail(int err_code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic milliseconds. */
int64_t t_now_ms(void);
int64_t t_now_us(void);

/*
 * A TCP port free on 127.0.0.1, chosen below the kernel's ephemeral range so that the many
 * client sockets a test opens can never be handed the port before its server binds it.
 * Distinct within the process; randomised across processes. Returns the port or -errno.
 */
int t_free_port(void);
/* A number N whose abstract unix name "\0/tmp/kx.N" is free (q's unix:N name). */
int t_free_abstract_port(void);

/* Connect to host:port within timeout_ms. Returns a blocking fd or -errno. */
int t_tcp_connect(const char *host, int port, int timeout_ms);
/* Connect to the abstract unix socket "\0/tmp/kx.PORT". Returns fd or -errno. */
int t_unix_connect(int port, int timeout_ms);

/*
 * Poll until host:port accepts a TCP connection, at most timeout_ms. If pid > 0 and that
 * process exits meanwhile, give up early with -ECHILD. 0 when accepting.
 */
int t_wait_accepting(const char *host, int port, int timeout_ms, pid_t pid);
/* Same for the abstract unix name of port. */
int t_wait_accepting_unix(int port, int timeout_ms, pid_t pid);

/*
 * q handshake on a connected fd: send "cred<cap>\0" (cred may be NULL or "") and read the
 * one-byte reply within timeout_ms. Returns the reply (0..255), -EACCES when the server
 * closed without a byte, -ETIMEDOUT when nothing came.
 */
int t_q_handshake(int fd, const char *cred, int capability, int timeout_ms);

/*
 * Connect to host:port and handshake with capability 3 and cred ("user:pass" or NULL).
 * Returns the fd; *cap (if not NULL) gets the server's byte. Negative errno on failure
 * (-EACCES: refused). Bounded by a few seconds.
 */
int t_q_connect(const char *host, int port, const char *cred, int *cap);
/* Same over the abstract unix socket of port. */
int t_q_connect_unix(int port, const char *cred, int *cap);

/* Write all n bytes (no SIGPIPE). 0 or -errno. */
int t_send_all(int fd, const void *p, size_t n);
/* Serialise o as a message of msg_type (enum t_msg_type) and send it. 0 or -errno. */
int t_q_send(int fd, int msg_type, const struct t_obj *o);

/*
 * Receive one whole message within timeout_ms (measured from the call). Returns 0 with *out
 * (caller frees) and *msg_type set; -ETIMEDOUT; -ECONNRESET when the peer closed or reset
 * (also mid-message); -EBADMSG when the bytes are not a valid q message.
 */
int t_q_recv(int fd, int timeout_ms, struct t_obj **out, int *msg_type);

/* Same, compressed as q compresses (fails with -EINVAL if q would not compress it). */
int t_q_send_compressed(int fd, int msg_type, const struct t_obj *o);

/* Receive one whole message as raw bytes (header included, as sent); same errors. */
int t_q_recv_raw(int fd, int timeout_ms, uint8_t **out, size_t *out_len);

/*
 * Sync call: send req as sync (req stays the caller's) and return the response within
 * timeout_ms. Async messages that arrive first are skipped and counted in *n_async (may be
 * NULL). NULL on failure with *err (may be NULL) set and t_errmsg() explaining.
 */
struct t_obj *t_q_call(int fd, const struct t_obj *req, int timeout_ms, int *n_async, int *err);
/* t_q_call with a char-vector query text. */
struct t_obj *t_q_eval(int fd, const char *text, int timeout_ms, int *err);

/*
 * Wait until the peer closes fd: 0 on EOF or reset, -ETIMEDOUT when still open after
 * timeout_ms. Bytes that arrive before the close are read and counted in *n_bytes (may be
 * NULL), so a caller can insist on "closed without a byte".
 */
int t_wait_closed(int fd, int timeout_ms, size_t *n_bytes);

/*
 * GET path from an HTTP endpoint on 127.0.0.1:port (qgate's stats). Returns the status code
 * and the body in *body (malloc'd, caller frees), or a negative error with t_errmsg() set.
 */
int t_http_get(int port, const char *path, char **body);

/*
 * An integer of qgate's /stats on port, found by a path of object keys and array indexes,
 * e.g. "gateway/clients" or "pools/0/backends/1/inflight". -1 when /stats cannot be fetched
 * or parsed (t_errmsg() says why) or the path names no integer.
 */
int64_t t_stats_int(int port, const char *path);

#endif /* GW_TESTS_SUPPORT_T_NET_H */
