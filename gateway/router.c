/*
 * router.c — picks the pool for a client message, in order: the first matching rule,
 * the user's default pool, the listener's pool. Rules match on the function name at
 * the head of a general-list message (glob), a prefix of a char-vector query, and/or
 * the user; a rule may also set a timeout, mark the message dedicated, or deny it.
 * The message is only peeked at (codec's qipc_peek), never decoded whole.
 */
#include "gateway/router.h"

#include <fnmatch.h>
#include <string.h>

#include "codec/qipc.h"
#include "gateway/config.h"
#include "gateway/conn.h"
#include "gateway/runtime.h"
#include "gateway/worker.h"
#include "pool/pool.h"

#define PEEK_TEXT_MAX 256

static struct gw_pool_rt *pool_named(struct gw_worker *w, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < w->n_pools; i++)
		if (strcmp(w->pools[i]->cfg->name, name) == 0)
			return w->pools[i];
	return NULL;
}

static bool rule_matches(const struct gw_rule_cfg *rule, const char *user,
			 const struct qipc_peek *pk, const char *text)
{
	if (rule->user && strcmp(rule->user, user) != 0)
		return false;
	if (rule->function) {
		if (pk->kind != QIPC_PEEK_FUNC_SYM && pk->kind != QIPC_PEEK_FUNC_STR)
			return false;
		if (pk->is_truncated || fnmatch(rule->function, text, 0) != 0)
			return false;
	}
	if (rule->prefix) {
		size_t plen = strlen(rule->prefix);
		if (pk->kind != QIPC_PEEK_QUERY || pk->text_len < plen ||
		    memcmp(pk->text, rule->prefix, plen) != 0)
			return false;
	}
	return true;
}

void gw_route(struct gw_worker *w, struct gw_conn *client, const uint8_t *msg, size_t len,
	      struct gw_route *out)
{
	const struct gw_config *cfg = w->cfg;
	struct qipc_peek pk = { .kind = QIPC_PEEK_OTHER };
	uint8_t plain[QIPC_HDR_SIZE + 2 * PEEK_TEXT_MAX];
	char text[PEEK_TEXT_MAX + 1];

	memset(out, 0, sizeof(*out));
	if (len > QIPC_HDR_SIZE) {
		const uint8_t *payload = msg + QIPC_HDR_SIZE;
		size_t plen = len - QIPC_HDR_SIZE;
		if (msg[2] != 0) {
			/* compressed: restore just enough of the start to look at it */
			int64_t got = qipc_decompress_prefix(msg, len, plain, sizeof(plain));
			if (got > QIPC_HDR_SIZE) {
				payload = plain + QIPC_HDR_SIZE;
				plen = (size_t)got - QIPC_HDR_SIZE;
			} else {
				plen = 0;
			}
		}
		if (plen > 0 && qipc_peek(payload, plen, msg[0] == 1, PEEK_TEXT_MAX, &pk) != 1)
			pk.kind = QIPC_PEEK_OTHER;
	}
	size_t tl = pk.kind != QIPC_PEEK_OTHER ? pk.text_len : 0;
	if (tl > PEEK_TEXT_MAX)
		tl = PEEK_TEXT_MAX;
	if (tl)
		memcpy(text, pk.text, tl);
	text[tl] = '\0';
	size_t wl = tl < sizeof(out->what) - 1 ? tl : sizeof(out->what) - 1;
	memcpy(out->what, text, wl);
	out->what[wl] = '\0';

	for (size_t i = 0; i < cfg->n_rules; i++) {
		const struct gw_rule_cfg *rule = &cfg->rules[i];
		if (!rule_matches(rule, client->cl.user, &pk, text))
			continue;
		if (rule->is_deny) {
			out->is_denied = true;
			return;
		}
		if (rule->timeout_ms)
			out->timeout_ms = rule->timeout_ms;
		if (rule->is_dedicated)
			out->is_dedicated = true;
		if (rule->pool) {
			out->pool = pool_named(w, rule->pool);
			break;
		}
	}
	/* a user's allow-list: only the named functions may be called */
	const struct gw_user_cfg *u = client->cl.ucfg;
	if (u && u->allow) {
		bool ok = false;
		if (pk.kind == QIPC_PEEK_FUNC_SYM || pk.kind == QIPC_PEEK_FUNC_STR)
			for (size_t i = 0; i < u->n_allow && !ok; i++)
				ok = !pk.is_truncated && fnmatch(u->allow[i], text, 0) == 0;
		if (!ok) {
			out->is_denied = true;
			return;
		}
	}
	if (!out->pool && u && u->default_pool)
		out->pool = pool_named(w, u->default_pool);
	if (!out->pool && client->cl.listener)
		out->pool = client->cl.listener->pool;
}
