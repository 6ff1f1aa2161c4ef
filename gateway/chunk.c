/*
 * chunk.c — heap byte chunks and FIFO queues of them: the copies a worker holds (tx
 * queues, requests, buffered answers), counted process-wide for limits.max_buffered_bytes.
 */
#include "gateway/chunk.h"

#include <stdlib.h>
#include <string.h>

/* bytes held in chunks by every worker of the process (limits.max_buffered_bytes) */
static uint64_t held_bytes;

/*
 * Small chunks freed by this thread, kept for its next ones: a request and its answer
 * then cost no malloc. Bounded; not under ASan, which must see every use after free.
 */
#define CACHE_MAX GW_FREE_LIST_MAX
static __thread struct gw_chunk *cache;
static __thread unsigned cache_n;
/* the owner of this thread's lent chunks (gw_chunk_set_release) */
static __thread void (*release_fn)(void *arg, uint32_t tag);
static __thread void *release_arg;

uint64_t gw_held_bytes(void)
{
	return __atomic_load_n(&held_bytes, __ATOMIC_RELAXED);
}

struct gw_chunk *gw_chunk_new(size_t cap)
{
	struct gw_chunk *ch;

	if (cap <= GW_CHUNK_SMALL && cache) {
		ch = cache;
		cache = ch->next;
		cache_n--;
	} else {
		size_t alloc = CACHE_MAX > 0 && cap <= GW_CHUNK_SMALL ? GW_CHUNK_SMALL : cap;
		ch = malloc(sizeof(*ch) + alloc);
		if (!ch)
			abort();	/* out of memory on the data path: nothing sane to do */
		ch->alloc = alloc;
	}
	ch->next = NULL;
	ch->len = 0;
	ch->off = 0;
	ch->cap = cap;
	ch->lent = NULL;
	__atomic_add_fetch(&held_bytes, cap, __ATOMIC_RELAXED);
	return ch;
}

struct gw_chunk *gw_chunk_grow(struct gw_chunk *ch, size_t cap)
{
	size_t old = ch->cap;
	struct gw_chunk *n = ch;

	if (cap > ch->alloc) {
		n = realloc(ch, sizeof(*n) + cap);
		if (!n)
			abort();
		n->alloc = cap;
	}
	n->cap = cap;
	if (cap > old)
		__atomic_add_fetch(&held_bytes, cap - old, __ATOMIC_RELAXED);
	else
		__atomic_sub_fetch(&held_bytes, old - cap, __ATOMIC_RELAXED);
	return n;
}

void gw_chunk_free(struct gw_chunk *ch)
{
	if (!ch)
		return;
	if (ch->lent) {
		ch->lent = NULL;
		if (release_fn)
			release_fn(release_arg, ch->lent_tag);
	}
	__atomic_sub_fetch(&held_bytes, ch->cap, __ATOMIC_RELAXED);
	if (ch->alloc == GW_CHUNK_SMALL && (int)cache_n < CACHE_MAX) {
		ch->next = cache;
		cache = ch;
		cache_n++;
		return;
	}
	free(ch);
}

struct gw_chunk *gw_chunk_lend(const uint8_t *p, size_t n, uint32_t tag)
{
	/* cap 0: no room to append to, nothing counted as held (the owner bounds it) */
	struct gw_chunk *ch = gw_chunk_new(0);

	ch->lent = p;
	ch->lent_tag = tag;
	ch->len = n;
	return ch;
}

void gw_chunk_set_release(void (*fn)(void *arg, uint32_t tag), void *arg)
{
	release_fn = fn;
	release_arg = arg;
}

void gw_chunk_cache_free(void)
{
	while (cache) {
		struct gw_chunk *ch = cache;
		cache = ch->next;
		free(ch);
	}
	cache_n = 0;
}

void gw_chunkq_push(struct gw_chunkq *q, struct gw_chunk *ch)
{
	ch->next = NULL;
	if (q->tail)
		q->tail->next = ch;
	else
		q->head = ch;
	q->tail = ch;
	q->bytes += ch->len - ch->off;
}

void gw_chunkq_append(struct gw_chunkq *q, const void *p, size_t n)
{
	const uint8_t *src = p;

	while (n > 0) {
		struct gw_chunk *t = q->tail;
		if (!t || t->lent || t->len == t->cap) {
			t = gw_chunk_new(n > GW_CHUNK_BYTES ? GW_CHUNK_BYTES :
					 (n < 4096 ? 4096 : n));
			gw_chunkq_push(q, t);
		}
		size_t room = t->cap - t->len;
		size_t k = n < room ? n : room;
		memcpy(t->data + t->len, src, k);
		t->len += k;
		q->bytes += k;
		src += k;
		n -= k;
	}
}

void gw_chunkq_free(struct gw_chunkq *q)
{
	struct gw_chunk *ch = q->head;

	while (ch) {
		struct gw_chunk *nx = ch->next;
		gw_chunk_free(ch);
		ch = nx;
	}
	q->head = q->tail = NULL;
	q->bytes = 0;
}
