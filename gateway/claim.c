/* claim.c — one process per listening address (see claim.h). */
#include "gateway/claim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/listen.h"

/* "ip:port" of the address as the kernel sees it, so two spellings of one address agree. */
static int address_key(const struct gw_addr *a, char *key, size_t n,
		       struct sockaddr_storage *ss, socklen_t *len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int ret = gw_sockaddr_from(a, ss, len);

	if (ret < 0)
		return ret;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
	snprintf(key, n, "%s:%d", ip, a->port);
	return 0;
}

static bool is_claimed(const struct gw_claims *cl, const char *key)
{
	for (size_t i = 0; i < cl->n; i++)
		if (strcmp(cl->keys[i], key) == 0)
			return true;
	return false;
}

/* Hold the abstract name "qgate-listen:KEY" for as long as this process lives. */
static int lock_name(const char *key)
{
	struct sockaddr_un un;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	int k = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "qgate-listen:%s", key);
	if (k < 0 || (size_t)k >= sizeof(un.sun_path) - 1)
		k = (int)sizeof(un.sun_path) - 2;
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
	if (bind(fd, (struct sockaddr *)&un, len) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Whether another program holds the address: bind it without SO_REUSEPORT, then let go. */
static int probe(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, ret = 0;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static int claim_one(struct gw_claims *cl, const struct gw_addr *a, char *err, size_t err_n)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char key[96];

	if (a->kind != GW_ADDR_TCP)
		return 0;	/* a Unix name is exclusive already: bind says "in use" */
	if (address_key(a, key, sizeof(key), &ss, &len) < 0) {
		snprintf(err, err_n, "listen=%s msg=\"cannot resolve\"", a->log_text);
		return -EADDRNOTAVAIL;
	}
	if (is_claimed(cl, key))
		return 0;
	int fd = lock_name(key);
	int ret = fd < 0 ? fd : probe(&ss, len);
	/* no qgate holds the name, yet the port is taken: most likely a gateway that has just
	 * exited and whose sockets the kernel is still letting go (a restart); give it 2 s */
	for (int tries = 0; ret == -EADDRINUSE && fd >= 0 && tries < 40; tries++) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		ret = probe(&ss, len);
	}
	if (ret < 0) {
		if (fd >= 0)
			close(fd);
		snprintf(err, err_n, "listen=%s msg=\"address in use: another process listens "
			 "there (a second qgate with the same configuration?)\" err=\"%s\"",
			 a->log_text, strerror(-ret));
		return ret == -EADDRINUSE || fd == -EADDRINUSE ? -EADDRINUSE : ret;
	}
	int *fds = realloc(cl->fds, (cl->n + 1) * sizeof(*fds));
	char **keys = fds ? realloc(cl->keys, (cl->n + 1) * sizeof(*keys)) : NULL;
	if (fds)
		cl->fds = fds;
	if (keys)
		cl->keys = keys;
	char *k = keys ? strdup(key) : NULL;
	if (!k) {
		close(fd);
		snprintf(err, err_n, "msg=\"out of memory\"");
		return -ENOMEM;
	}
	cl->fds[cl->n] = fd;
	cl->keys[cl->n] = k;
	cl->n++;
	return 0;
}

int gw_claims_take(struct gw_claims *cl, const struct gw_config *cfg, char *err, size_t err_n)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		int ret = claim_one(cl, &cfg->listeners[i].addr, err, err_n);
		if (ret < 0)
			return ret;
	}
	return cfg->stats_listen ? claim_one(cl, cfg->stats_listen, err, err_n) : 0;
}

void gw_claims_free(struct gw_claims *cl)
{
	for (size_t i = 0; i < cl->n; i++) {
		close(cl->fds[i]);
		free(cl->keys[i]);
	}
	free(cl->fds);
	free(cl->keys);
	cl->fds = NULL;
	cl->keys = NULL;
	cl->n = 0;
}
