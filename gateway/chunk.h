/*
 * chunk — heap byte chunks and FIFO queues of them. A chunk belongs to exactly one queue at
 * a time (a tx queue, or a request's buffered answer); whoever unlinks it frees it or links
 * it elsewhere. Chunks are made, grown and freed only here, so the bytes they hold are
 * counted process-wide (limits.max_buffered_bytes). Any thread; a chunk or queue is used
 * by one worker thread only. Small chunks (cap up to GW_CHUNK_SMALL) come from and go back
 * to a bounded cache of the calling thread, so a small message costs no malloc; a thread
 * that used chunks empties its cache with gw_chunk_cache_free before it ends.
 *
 * A lent chunk (gw_chunk_lend) holds no bytes of its own: it points at bytes another owner
 * keeps valid (a worker's provided receive buffer, lent to a tx queue so that a large answer
 * is sent from where it arrived, without a copy) and, when freed, tells that owner through
 * the release hook its thread registered (gw_chunk_set_release). Its bytes are read through
 * gw_chunk_bytes; nothing is ever appended to it, and it counts nothing in gw_held_bytes
 * (its owner bounds what it lends).
 */
#ifndef GW_GATEWAY_CHUNK_H
#define GW_GATEWAY_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#define GW_CHUNK_BYTES (64 * 1024)
#define GW_CHUNK_SMALL 4096

/* free lists (chunks, requests) only without ASan, which must see every use after free:
 * gcc says so with __SANITIZE_ADDRESS__, clang with __has_feature */
#if defined(__SANITIZE_ADDRESS__)
#define GW_FREE_LIST_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GW_FREE_LIST_MAX 0
#endif
#endif
#ifndef GW_FREE_LIST_MAX
#define GW_FREE_LIST_MAX 256
#endif

struct gw_chunk {
	struct gw_chunk *next;
	size_t len;	/* bytes written into data */
	size_t off;	/* bytes already sent / consumed */
	size_t cap;	/* bytes usable (and counted as held) */
	size_t alloc;	/* bytes allocated for data (>= cap: GW_CHUNK_SMALL when cached) */
	const uint8_t *lent;	/* non-NULL: a lent chunk, its bytes are lent[0..len) */
	uint32_t lent_tag;	/* for the release hook: which of its owner's buffers */
	uint8_t data[];
};

struct gw_chunkq {
	struct gw_chunk *head, *tail;
	uint64_t bytes;	/* unsent bytes in the queue */
};

/* a chunk of cap bytes, empty; aborts when out of memory (nothing sane to do) */
struct gw_chunk *gw_chunk_new(size_t cap);
/* ch resized to cap (it may move); aborts when out of memory */
struct gw_chunk *gw_chunk_grow(struct gw_chunk *ch, size_t cap);
/* NULL is fine; a lent chunk calls its thread's release hook */
void gw_chunk_free(struct gw_chunk *ch);
/* a lent chunk over p[0..n), which its owner keeps valid until the chunk is freed */
struct gw_chunk *gw_chunk_lend(const uint8_t *p, size_t n, uint32_t tag);
/* the calling thread's release hook for its lent chunks: fn(arg, tag) as one is freed */
void gw_chunk_set_release(void (*fn)(void *arg, uint32_t tag), void *arg);
/* the bytes of ch, owned or lent: [off, len) are the unsent ones */
static inline const uint8_t *gw_chunk_bytes(const struct gw_chunk *ch)
{
	return ch->lent ? ch->lent : ch->data;
}
/* free the calling thread's cache of small chunks (a worker, as it ends) */
void gw_chunk_cache_free(void);
/* bytes held in chunks by every worker of the process */
uint64_t gw_held_bytes(void);
/* link ch (ownership moves to q) at the tail; its unsent bytes count in q->bytes */
void gw_chunkq_push(struct gw_chunkq *q, struct gw_chunk *ch);
/* copy p[0..n) to the tail of q, in chunks of at most GW_CHUNK_BYTES */
void gw_chunkq_append(struct gw_chunkq *q, const void *p, size_t n);
/* free every chunk of q; q is empty after */
void gw_chunkq_free(struct gw_chunkq *q);

#endif /* GW_GATEWAY_CHUNK_H */
