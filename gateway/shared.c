/*
 * shared.c — the backends' shared counters, kept in a list under a mutex (see shared.h).
 * Lookups happen when a worker builds or reloads its pools, never on the data path.
 */
#include "gateway/shared.h"

#include "gateway/addr.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;
	struct pool_shared counters;
	char *addr;		/* the backend's address (gw_addr_key) */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;

struct pool_shared *gw_shared_backend(const struct gw_addr *a, uint32_t max_inflight,
				      uint32_t ceiling)
{
	struct pool_shared *found = NULL;
	char addr[600];

	if (gw_addr_key(a, addr, sizeof(addr)) < 0)
		return NULL;
	pthread_mutex_lock(&mu);
	for (struct entry *e = entries; e && !found; e = e->next)
		if (strcmp(e->addr, addr) == 0)
			found = &e->counters;
	if (!found) {
		struct entry *e = calloc(1, sizeof(*e));
		char *k = e ? strdup(addr) : NULL;
		if (k) {
			e->addr = k;
			pool_shared_init(&e->counters, max_inflight, ceiling);
			e->next = entries;
			entries = e;
			found = &e->counters;
		} else {
			free(e);
		}
	}
	if (found)
		pool_shared_set_max(found, max_inflight, ceiling);
	pthread_mutex_unlock(&mu);
	return found;
}

void gw_shared_free_all(void)
{
	pthread_mutex_lock(&mu);
	while (entries) {
		struct entry *e = entries;
		entries = e->next;
		free(e->addr);
		free(e);
	}
	pthread_mutex_unlock(&mu);
}
