/*
 * lshare — Unix listening sockets shared by every worker (lshare.c). SO_REUSEPORT cannot
 * give each worker a socket of its own for a Unix name, so one socket is bound per name and
 * each worker accepts on its own dup() of it: the kernel hands each connection to one of the
 * multishot accepts waiting on it.
 *
 * Ownership:
 *  - the registry owns the bound socket (one fd per name). The first gw_lshare_acquire binds
 *    it (unlinking a stale socket file at a path first), later ones only count a user, so a
 *    reload that keeps a listener, or moves it to a new name on the same address, never
 *    rebinds;
 *  - each acquire hands the caller a dup() of it: the caller owns and closes that fd;
 *  - the last gw_lshare_release shuts the socket down (new connects are refused at once,
 *    even while a worker's dup is still open with its accept being cancelled), closes it and
 *    unlinks its path once (only if the file there is still the one it bound). Abstract names
 *    vanish with the socket.
 *
 * Entries are made under a mutex (start, reload, close: never on the data path) and live
 * until gw_lshare_free_all, which main calls after every worker has exited; an entry whose
 * users all left is bound again by the next acquire. Any thread.
 */
#ifndef GW_GATEWAY_LSHARE_H
#define GW_GATEWAY_LSHARE_H

struct gw_addr;
struct gw_lshare;

/*
 * The shared socket for Unix address a (GW_ADDR_UNIX_PATH or GW_ADDR_UNIX_ABSTRACT), bound
 * and listening (backlog) if no worker uses it yet. On success returns the caller's own dup
 * of it (a new fd, close-on-exec, the caller's to close) and the entry in *out, which the
 * caller releases exactly once. A negative errno on failure (nothing to release then).
 */
int gw_lshare_acquire(const struct gw_addr *a, int backlog, struct gw_lshare **out);

/* One user less (see the banner); the caller's dup is not touched. */
void gw_lshare_release(struct gw_lshare *s);

/* Close what is still open (unlinking paths) and free every entry: main, workers gone. */
void gw_lshare_free_all(void);

#endif /* GW_GATEWAY_LSHARE_H */
