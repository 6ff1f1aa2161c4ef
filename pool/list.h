/*
 * list — an intrusive doubly linked list with a sentinel head. Nodes are embedded in
 * the objects they link; the list owns nothing. A node that is not on a list points at
 * itself (pool_list_init, and pool_list_del leaves it so), so pool_list_empty(node) tells
 * whether it is linked.
 */
#ifndef GW_POOL_LIST_H
#define GW_POOL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct pool_link {
	struct pool_link *prev, *next;
};

static inline void pool_list_init(struct pool_link *h)
{
	h->prev = h->next = h;
}

static inline bool pool_list_empty(const struct pool_link *h)
{
	return h->next == h;
}

static inline void pool_list_add_tail(struct pool_link *h, struct pool_link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

/* n becomes the first element after h */
static inline void pool_list_add_head(struct pool_link *h, struct pool_link *n)
{
	pool_list_add_tail(h->next, n);
}

static inline void pool_list_del(struct pool_link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

#define pool_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif /* GW_POOL_LIST_H */
