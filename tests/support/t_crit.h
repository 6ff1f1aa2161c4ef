/*
 * t_crit — criterion glue for the harness: assertions that print the harness's reason
 * (t_errmsg) and the values involved, so a failing integration test says what went wrong.
 * Header-only; include it from criterion test files only.
 */
#ifndef GW_TESTS_SUPPORT_T_CRIT_H
#define GW_TESTS_SUPPORT_T_CRIT_H

#include <errno.h>

#include <criterion/criterion.h>

#include "tests/support/t_cfg.h"
#include "tests/support/t_net.h"
#include "tests/support/t_obj.h"
#include "tests/support/t_proc.h"

/* Assert that a harness call succeeded (non-negative / non-NULL), printing why not. */
#define T_OK(expr)                                                                       \
	({                                                                               \
		__typeof__(expr) t_ok_v_ = (expr);                                       \
		cr_assert(t_ok_v_ >= 0, "%s failed (%d): %s", #expr, (int)t_ok_v_,       \
			  t_errmsg());                                                   \
		t_ok_v_;                                                                 \
	})
#define T_PTR(expr)                                                                      \
	({                                                                               \
		__typeof__(expr) t_ptr_v_ = (expr);                                      \
		cr_assert(t_ptr_v_ != NULL, "%s failed: %s", #expr, t_errmsg());         \
		t_ptr_v_;                                                                \
	})

/* Assert got equals the expected object (takes ownership of want). */
#define T_EXPECT_EQ(got, want)                                                           \
	do {                                                                             \
		struct t_obj *t_w_ = (want);                                             \
		cr_assert(t_w_ != NULL, "out of memory building the expected value");    \
		cr_assert(t_equal((got), t_w_), "got %s, want %s", t_show(got),          \
			  t_show(t_w_));                                                 \
		t_free(t_w_);                                                            \
	} while (0)

/* Sync call that must produce a response (not an error): returns it (caller frees). */
static inline struct t_obj *t_call_ok(int fd, struct t_obj *req, int timeout_ms)
{
	struct t_obj *r;

	cr_assert(req != NULL, "out of memory building a request");
	r = t_q_call(fd, req, timeout_ms, NULL, NULL);
	cr_assert(r != NULL, "%s", t_errmsg());
	t_free(req);
	return r;
}

/* Sync call; assert the response equals want (both request and want are consumed). */
static inline void t_call_expect(int fd, struct t_obj *req, struct t_obj *want, int timeout_ms)
{
	char rq[256];
	struct t_obj *r;

	cr_assert(req != NULL && want != NULL, "out of memory building a request");
	t_fmt(req, rq, sizeof(rq));
	r = t_q_call(fd, req, timeout_ms, NULL, NULL);
	cr_assert(r != NULL, "%s", t_errmsg());
	cr_assert(t_equal(r, want), "%s returned %s, want %s", rq, t_show(r), t_show(want));
	t_free(r);
	t_free(req);
	t_free(want);
}

/* Send obj as a message of msg_type and free it (for requests built inline). */
static inline int t_send_free(int fd, int msg_type, struct t_obj *obj)
{
	int rc;

	if (!obj)
		return t_fail(ENOMEM, "out of memory building a message");
	rc = t_q_send(fd, msg_type, obj);
	t_free(obj);
	return rc;
}

/* (`verb;::) — how q sends a niladic call such as h(`.mock.id;::). */
static inline struct t_obj *t_call0(const char *verb)
{
	struct t_obj *id = t_atom(T_UNARY);	/* :: is the unary primitive with code 0 */

	return t_call(verb, 1, id);
}

#endif /* GW_TESTS_SUPPORT_T_CRIT_H */
