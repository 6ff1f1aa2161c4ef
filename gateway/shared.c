/*
 * shared.c — the backends' shared counters, kept in a list under a mutex (see shared.h).
 * Lookups happen when a worker builds or reloads its pools, never on the data path.
 */
#include "gateway/shared.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;
	struct pool_shared counters;
	char *key;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;

static char *make_key(const char *pool, const char *backend, const char *addr)
{
	size_t a = strlen(pool), b = strlen(backend), c = strlen(addr);
	char *k = malloc(a + b + c + 3);

	if (!k)
		return NULL;
	/* NUL-separated: no name can forge another's key */
	memcpy(k, pool, a + 1);
	memcpy(k + a + 1, backend, b + 1);
	memcpy(k + a + b + 2, addr, c + 1);
	return k;
}

static bool same_key(const char *k, const char *pool, const char *backend, const char *addr)
{
	size_t a = strlen(k);

	if (strcmp(k, pool) != 0 || strcmp(k + a + 1, backend) != 0)
		return false;
	return strcmp(k + a + 1 + strlen(k + a + 1) + 1, addr) == 0;
}

struct pool_shared *gw_shared_backend(const char *pool, const char *backend, const char *addr,
				      uint32_t max_inflight)
{
	struct pool_shared *found = NULL;

	pthread_mutex_lock(&mu);
	for (struct entry *e = entries; e && !found; e = e->next)
		if (same_key(e->key, pool, backend, addr))
			found = &e->counters;
	if (!found) {
		struct entry *e = calloc(1, sizeof(*e));
		char *k = e ? make_key(pool, backend, addr) : NULL;
		if (k) {
			e->key = k;
			pool_shared_init(&e->counters, max_inflight);
			e->next = entries;
			entries = e;
			found = &e->counters;
		} else {
			free(e);
		}
	}
	if (found)
		pool_shared_set_max(found, max_inflight);
	pthread_mutex_unlock(&mu);
	return found;
}

void gw_shared_free_all(void)
{
	pthread_mutex_lock(&mu);
	while (entries) {
		struct entry *e = entries;
		entries = e->next;
		free(e->key);
		free(e);
	}
	pthread_mutex_unlock(&mu);
}
