/*
 * mockq internals shared by the server loop (mockq.c) and the mini q evaluator
 * (mockq_eval.c). Not a public API: only mockq links these files.
 *
 * The evaluator is pure with respect to sockets: a message goes in, a value (or a q error
 * text) comes out, plus "actions" the server must carry out for the connection (defer the
 * answer, drop the connection, start publishing). Globals live in one process-wide table,
 * as in a single-threaded q. Some actions make the server misbehave on purpose (answer
 * twice, die half-way through an answer, refuse handshakes): they exist so that the gateway's
 * torture test can make backends misbehave on command.
 */
#ifndef GW_BENCH_MOCKQ_H
#define GW_BENCH_MOCKQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qipc_obj;

#define MQ_ERR_MAX 256

/* One evaluation: inputs from the server, outputs (actions) for it. */
struct mq_eval {
	/* in */
	const char *name;	/* --name, returned by .mock.id[] */
	uint64_t msg_count;	/* messages received so far, this one included */
	uint64_t clients;	/* open connections */
	bool is_sync;		/* the message owes a response */
	uint64_t inflight;	/* sync requests in flight, this message excluded */
	uint64_t max_inflight;	/* the most inflight ever reached (since .mock.reset) */
	uint64_t served;	/* sync requests answered (since .mock.reset) */
	/* out */
	bool is_drop;		/* .mock.drop[]: close without answering */
	int64_t defer_ms;	/* .mock.defer: >= 0 answer after that many ms */
	int64_t pub_n;		/* .mock.pub: > 0 publish pub_n messages ... */
	int64_t pub_ms;		/* ... one every pub_ms */
	/* misbehaviour on command, for the gateway's torture test (docs/mockq.md) */
	bool is_twice;		/* .mock.twice: the response is written twice, in one write */
	bool is_unsolicited;	/* .mock.unsolicited: a response nobody asked for goes first */
	bool is_pushsync;	/* .mock.pushsync: a sync call into the client goes first */
	bool is_partdie;	/* .mock.partdie: write half of the response, then exit */
	int64_t refuse_n;	/* .mock.refuse: >= 0 refuse that many further handshakes */
	/* request counters, read without being counted (see mockq.c "in flight") */
	bool is_probe;		/* a counter verb ran: this message is not counted */
	bool is_stats_reset;	/* .mock.reset: zero served, max_inflight := inflight */
	char err[MQ_ERR_MAX];	/* q error text when the result is NULL */
	/* private */
	int depth;
	struct mq_frame *frame;	/* innermost lambda's locals, NULL at top level */
};

/* Reset the per-message fields of ev (inputs are left alone). */
void mq_eval_reset(struct mq_eval *ev);

/*
 * Evaluate a decoded message as q's default .z.pg/.z.ps (`value`) would.
 * Returns the result (caller frees) or NULL with ev->err set.
 */
struct qipc_obj *mq_eval_msg(struct mq_eval *ev, const struct qipc_obj *msg);

/* Evaluate q source text (as `value "text"`). Same return convention. */
struct qipc_obj *mq_eval_text(struct mq_eval *ev, const char *text, size_t len);

/*
 * Replace evaluator-internal values (built-in function markers) inside o by plain lambdas
 * so that o can be encoded for the wire. Returns 0 or -ENOMEM.
 */
int mq_sanitize(struct qipc_obj *o);

/* Deep copy of a value; NULL on allocation failure. */
struct qipc_obj *mq_obj_copy(const struct qipc_obj *o);

/* Free every global. */
void mq_globals_free(void);

#endif /* GW_BENCH_MOCKQ_H */
