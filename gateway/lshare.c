/*
 * lshare.c — the Unix listening sockets every worker accepts on (see lshare.h): a list of
 * entries under a mutex, one per name, each counting the workers that use it.
 */
#include "gateway/lshare.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/listen.h"
#include "gateway/log.h"

struct gw_lshare {
	struct gw_lshare *next;
	enum gw_addr_kind kind;
	char *path;		/* the file, or the abstract name without its NUL */
	int fd;			/* the bound socket; -1 while no worker uses it */
	int users;
	dev_t dev;		/* the socket file bound (paths): only that one is unlinked */
	ino_t ino;
	bool has_file;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct gw_lshare *entries;

/* Shut down and close the socket; unlink its file if it is still ours. Under mu. */
static void entry_close(struct gw_lshare *s)
{
	struct stat st;

	if (s->fd < 0)
		return;
	/* a worker's dup may outlive this for a moment: refuse new connects now */
	shutdown(s->fd, SHUT_RDWR);
	close(s->fd);
	s->fd = -1;
	if (s->has_file && stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	s->has_file = false;
}

int gw_lshare_acquire(const struct gw_addr *a, int backlog, struct gw_lshare **out)
{
	struct gw_lshare *s;
	int ret;

	GW_ASSERT(a->kind == GW_ADDR_UNIX_PATH || a->kind == GW_ADDR_UNIX_ABSTRACT);
	pthread_mutex_lock(&mu);
	for (s = entries; s; s = s->next)
		if (s->kind == a->kind && strcmp(s->path, a->path) == 0)
			break;
	if (!s) {
		s = calloc(1, sizeof(*s));
		char *path = s ? strdup(a->path) : NULL;
		if (!path) {
			free(s);
			ret = -ENOMEM;
			goto out;
		}
		s->kind = a->kind;
		s->path = path;
		s->fd = -1;
		s->next = entries;
		entries = s;
	}
	if (s->fd < 0) {
		struct stat st;
		ret = gw_listen_socket(a, backlog);
		if (ret < 0)
			goto out;
		s->fd = ret;
		s->has_file = a->kind == GW_ADDR_UNIX_PATH && stat(a->path, &st) == 0;
		if (s->has_file) {
			s->dev = st.st_dev;
			s->ino = st.st_ino;
		}
	}
	ret = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
	if (ret < 0) {
		ret = -errno;
		if (s->users == 0)
			entry_close(s);
		goto out;
	}
	s->users++;
	*out = s;
out:
	pthread_mutex_unlock(&mu);
	return ret;
}

void gw_lshare_release(struct gw_lshare *s)
{
	pthread_mutex_lock(&mu);
	GW_ASSERT(s->users > 0);
	if (--s->users == 0)
		entry_close(s);
	pthread_mutex_unlock(&mu);
}

void gw_lshare_free_all(void)
{
	pthread_mutex_lock(&mu);
	while (entries) {
		struct gw_lshare *s = entries;
		entries = s->next;
		entry_close(s);
		free(s->path);
		free(s);
	}
	pthread_mutex_unlock(&mu);
}
