/*
 * t_cfg — qgate configuration files for tests, validated as JSON before they are written.
 */
#include "tests/support/t_cfg.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tests/support/t_net.h"
#include "tests/support/t_proc.h"

struct dstr {
	char *p;
	size_t len, cap;
	bool is_oom;
};

static void ds_add(struct dstr *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ds_add(struct dstr *d, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (k < 0 || d->is_oom)
		return;
	if (d->len + (size_t)k + 1 > d->cap) {
		size_t cap = (d->len + (size_t)k + 1) * 2;
		char *np = realloc(d->p, cap);

		if (!np) {
			d->is_oom = true;
			return;
		}
		d->p = np;
		d->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(d->p + d->len, d->cap - d->len, fmt, ap);
	va_end(ap);
	d->len += (size_t)k;
}

int t_json_check(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

	if (!j)
		return t_fail(EINVAL, "test wrote bad JSON: %s at line %d col %d", jerr.text,
			      jerr.line, jerr.column);
	json_decref(j);
	return 0;
}

char *t_cfg_json(const struct t_cfg *c)
{
	const char *pool = c->pool_name ? c->pool_name : "p";
	struct dstr d = { 0 };

	ds_add(&d, "{\n  \"listeners\": [\n");
	ds_add(&d, "    {\"name\": \"main\", \"listen\": \"127.0.0.1:%d\", \"pool\": \"%s\"}",
	       c->listen_port, pool);
	if (c->unix_port > 0)
		ds_add(&d, ",\n    {\"name\": \"local\", \"listen\": \"unix:%d\", "
		       "\"pool\": \"%s\"}", c->unix_port, pool);
	ds_add(&d, "\n  ],\n  \"pools\": [\n    {\"name\": \"%s\", \"mode\": \"query\", "
	       "\"strategy\": \"%s\",\n     \"backends\": [\n", pool,
	       c->strategy ? c->strategy : "least_outstanding");
	for (int k = 0; k < c->n_backends; k++) {
		const struct t_cfg_backend *b = &c->backends[k];

		ds_add(&d, "       {\"name\": \"%s\", \"address\": \"127.0.0.1:%d\"", b->name,
		       b->port);
		if (b->connections)
			ds_add(&d, ", \"connections\": %d", b->connections);
		if (b->weight)
			ds_add(&d, ", \"weight\": %d", b->weight);
		ds_add(&d, "}%s\n", k + 1 < c->n_backends ? "," : "");
	}
	ds_add(&d, "     ]");
	if (c->queue_max || c->queue_timeout_ms) {
		ds_add(&d, ",\n     \"queue\": {");
		if (c->queue_max)
			ds_add(&d, "\"max\": %d%s", c->queue_max, c->queue_timeout_ms ? ", " : "");
		if (c->queue_timeout_ms)
			ds_add(&d, "\"timeout_ms\": %d", c->queue_timeout_ms);
		ds_add(&d, "}");
	}
	if (c->query_timeout_ms)
		ds_add(&d, ",\n     \"query_timeout_ms\": %d", c->query_timeout_ms);
	ds_add(&d, ",\n     \"health\": {\"interval_ms\": %d}", c->health_interval_ms);
	if (c->extra_pool)
		ds_add(&d, ",\n     %s", c->extra_pool);
	/* T_QGATE_LOG (e.g. "debug") overrides the level when chasing a failure. */
	ds_add(&d, "}\n  ],\n  \"log\": {\"level\": \"%s\"}",
	       getenv("T_QGATE_LOG") && getenv("T_QGATE_LOG")[0] ? getenv("T_QGATE_LOG") :
	       c->log_level ? c->log_level : "info");
	if (c->extra_top)
		ds_add(&d, ",\n  %s", c->extra_top);
	ds_add(&d, "\n}\n");
	if (d.is_oom) {
		free(d.p);
		t_fail(ENOMEM, "out of memory building a config");
		return NULL;
	}
	if (t_json_check(d.p) < 0) {
		char why[256];

		snprintf(why, sizeof(why), "%s", t_errmsg());
		t_fail(EINVAL, "%s in:\n%s", why, d.p);
		free(d.p);
		return NULL;
	}
	return d.p;
}

const char *t_cfg_write(const struct t_cfg *c, const char *file_name)
{
	char *text = t_cfg_json(c);
	const char *path;

	if (!text)
		return NULL;
	path = t_write_file(file_name, text);
	free(text);
	return path;
}
