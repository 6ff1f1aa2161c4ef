/*
 * test_config_describe.c — unit tests for gw_cfg_describe (gateway/config.c), the walk over
 * the field tables that qgate.json(5) is generated from: every row has a path and a doc, the
 * paths are unique and nest properly, types, ranges and defaults read as the rows say, and
 * each described path is the very path the loader names in its errors (a wrong value put
 * at that path draws an error line starting with it), so the man page cannot name a key
 * the loader does not read where the page says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "gateway/config.h"
#include "gateway/pwhash.h"

struct t_row {
	char path[256], parent[256], type[64], range[96], def[96], names[128];
	bool has_doc, is_required, is_removed, has_children, is_array;
};

struct t_rows {
	struct t_row v[512];
	size_t n;
	bool is_full;
};

static void t_collect(const struct gw_cfg_doc *d, void *arg)
{
	struct t_rows *rs = arg;
	struct t_row *r;

	if (rs->n == sizeof(rs->v) / sizeof(rs->v[0])) {
		rs->is_full = true;
		return;
	}
	r = &rs->v[rs->n++];
	memset(r, 0, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s", d->path);
	snprintf(r->parent, sizeof(r->parent), "%s", d->parent);
	snprintf(r->type, sizeof(r->type), "%s", d->type ? d->type : "");
	snprintf(r->range, sizeof(r->range), "%s", d->range ? d->range : "");
	snprintf(r->def, sizeof(r->def), "%s", d->def ? d->def : "");
	for (size_t i = 0, o = 0; d->names && d->names[i] && o < sizeof(r->names); i++) {
		int n = snprintf(r->names + o, sizeof(r->names) - o, "%s%s", i ? "," : "",
				 d->names[i]);
		if (n > 0)
			o += (size_t)n;
	}
	r->has_doc = d->doc && d->doc[0];
	r->is_required = d->is_required;
	r->is_removed = d->is_removed;
	r->has_children = d->has_children;
	r->is_array = d->is_array;
	cr_expect_str_eq(d->key, strrchr(d->path, '.') ? strrchr(d->path, '.') + 1 : d->path,
			 "%s: key is the last part of the path", d->path);
}

static struct t_rows *t_describe(void)
{
	struct t_rows *rs = calloc(1, sizeof(*rs));

	cr_assert_not_null(rs);
	gw_cfg_describe(t_collect, rs);
	cr_assert(!rs->is_full, "more rows than the test holds");
	return rs;
}

static const struct t_row *t_find(const struct t_rows *rs, const char *path)
{
	for (size_t i = 0; i < rs->n; i++)
		if (!strcmp(rs->v[i].path, path))
			return &rs->v[i];
	cr_assert_fail("no row %s", path);
	return NULL;
}

Test(describe, every_row_documented_unique_and_nested)
{
	struct t_rows *rs = t_describe();

	cr_assert_geq(rs->n, 100, "only %zu rows", rs->n);
	for (size_t i = 0; i < rs->n; i++) {
		const struct t_row *r = &rs->v[i];
		bool has_parent = r->parent[0] == '\0';

		cr_expect(r->has_doc, "%s has no doc", r->path);
		for (size_t k = 0; k < i; k++) {
			char sub[260];

			cr_expect_str_neq(rs->v[k].path, r->path, "%s twice", r->path);
			/* the parent came before, as an object (path) or array (path[]) row */
			snprintf(sub, sizeof(sub), "%s%s", rs->v[k].path, rs->v[k].is_array ? "[]" : "");
			has_parent |= rs->v[k].has_children && !strcmp(sub, r->parent);
		}
		cr_expect(has_parent, "%s: parent %s is not described before it", r->path,
			  r->parent);
		cr_expect(r->is_removed || r->type[0] || !r->has_children, "%s: no type", r->path);
	}
	free(rs);
}

Test(describe, rows_read_as_the_tables_say)
{
	struct t_rows *rs = t_describe();
	const struct t_row *r;

	r = t_find(rs, "pools");
	cr_expect(r->is_array && r->has_children);
	cr_expect_str_eq(r->type, "array of objects");
	r = t_find(rs, "pools[].queue.timeout_ms");
	cr_expect_str_eq(r->parent, "pools[].queue");
	cr_expect_str_eq(r->type, "duration (ms)");
	cr_expect_str_eq(r->def, "5000");
	cr_expect_str_eq(r->range, "");
	r = t_find(rs, "pools[].reconnect.connect_timeout_ms");
	cr_expect_str_eq(r->range, ">= 1");
	r = t_find(rs, "pools[].reconnect.multiplier");
	cr_expect_str_eq(r->range, ">= 1.0, or \"constant\"");
	cr_expect_str_eq(r->def, "2.0");
	r = t_find(rs, "pools[].reconnect.jitter");
	cr_expect_str_eq(r->range, "0.0..1.0");
	cr_expect_str_eq(r->def, "0.2");
	r = t_find(rs, "pools[].backends[].tls.verify");
	cr_expect_str_eq(r->type, "boolean");
	cr_expect_str_eq(r->def, "true");
	r = t_find(rs, "pools[].backends[].connections");
	cr_expect_str_eq(r->range, "1..1000");
	cr_expect_str_eq(r->def, "2");
	r = t_find(rs, "listeners[].tls.min_version");
	cr_expect_str_eq(r->names, "1.2,1.3");
	cr_expect_str_eq(r->def, "\"1.2\"");
	r = t_find(rs, "listeners[].tls.cert_file");
	cr_expect(r->is_required);
	cr_expect_str_eq(r->type, "file name");
	r = t_find(rs, "auth.users[].name");
	cr_expect(r->is_required);
	cr_expect_str_eq(r->type, "string without ':'");
	r = t_find(rs, "pools[].pipeline");
	cr_expect(r->is_removed);
	r = t_find(rs, "limits.max_buffered_bytes");
	cr_expect_str_eq(r->range, ">= 1024");
	r = t_find(rs, "stats.token");	/* a code row: its doc says what it takes */
	cr_expect_str_eq(r->type, "");
	r = t_find(rs, "gateway_user");
	cr_expect_str_eq(r->def, "\"qgate\"");
	cr_expect_str_eq(r->parent, "");
	free(rs);
}

/* A valid file with one of everything, so every described object exists somewhere. */
static const char *t_base =
	"{\"pools\": [{\"name\": \"p\", \"backends\": [{\"address\": \"127.0.0.1:1\"}]}],"
	" \"listeners\": [{\"listen\": \"127.0.0.1:2\"}],"
	" \"auth\": {\"users\": [{\"name\": \"u\", \"password_hash\": \"%s\"}]},"
	" \"rules\": [{\"user\": \"u\", \"deny\": true}],"
	" \"stats\": {}, \"limits\": {}, \"log\": {}, \"resolver\": {}}";

/* The object at path's parent in root (arrays: their first element), made if missing;
 * path's last key is stored in *leaf and its error path ("[]" -> "[0]") in epath. */
static json_t *t_parent_of(json_t *root, const char *path, char *epath, size_t n,
			   const char **leaf)
{
	json_t *o = root;
	const char *p = path;
	size_t e = 0;

	for (;;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		char key[128];
		bool is_arr = len > 2 && p[len - 2] == '[' && p[len - 1] == ']';

		snprintf(key, sizeof(key), "%.*s", (int)(is_arr ? len - 2 : len), p);
		e += (size_t)snprintf(epath + e, n - e, "%s%s%s", e ? "." : "", key,
				      is_arr ? "[0]" : "");
		if (!dot) {
			*leaf = strrchr(path, '.') ? strrchr(path, '.') + 1 : path;
			return o;
		}
		json_t *next = json_object_get(o, key);
		if (!next || json_is_null(next)) {
			next = is_arr ? json_array() : json_object();
			json_object_set_new(o, key, next);
		}
		if (is_arr) {
			if (json_array_size(next) == 0)
				json_array_append_new(next, json_object());
			next = json_array_get(next, 0);
		}
		o = next;
		p = dot + 1;
	}
}

Test(describe, every_path_is_where_the_loader_reads_it, .timeout = 60)
{
	struct t_rows *rs = t_describe();
	char *hash = gw_pw_hash_iter("pw", 2, 1000);
	char base[1024], *errs = NULL;
	size_t n_leaves = 0;

	cr_assert_not_null(hash);
	snprintf(base, sizeof(base), t_base, hash);
	struct gw_config *cfg = gw_cfg_parse(base, "base", &errs);
	cr_assert_not_null(cfg, "the base file is valid: %s", errs);
	gw_cfg_free(cfg);
	for (size_t i = 0; i < rs->n; i++) {
		const struct t_row *r = &rs->v[i];
		char epath[300], want[320];
		const char *leaf;

		if (r->has_children)
			continue;	/* objects: their leaves are tried */
		json_t *root = json_loads(base, 0, NULL);
		cr_assert_not_null(root);
		json_t *parent = t_parent_of(root, r->path, epath, sizeof(epath), &leaf);
		/* an object fits no leaf: not a string, number, boolean, address or list */
		json_object_set_new(parent, leaf, json_object());
		char *text = json_dumps(root, 0);
		json_decref(root);
		cr_assert_not_null(text);
		errs = NULL;
		cfg = gw_cfg_parse(text, "t", &errs);
		cr_expect_null(cfg, "%s: {} accepted in %s", r->path, text);
		gw_cfg_free(cfg);
		snprintf(want, sizeof(want), "%s: ", epath);
		/* an error line that starts with the path (lines are '\n'-separated) */
		bool is_named = false;
		for (const char *line = errs; line && *line;) {
			if (!strncmp(line, want, strlen(want)))
				is_named = true;
			line = strchr(line, '\n');
			line = line ? line + 1 : NULL;
		}
		cr_expect(is_named, "%s: no error line starting \"%s\" in:\n%s", r->path, want,
			  errs ? errs : "(none)");
		free(errs);
		free(text);
		n_leaves++;
	}
	cr_expect_geq(n_leaves, 80, "only %zu leaves tried", n_leaves);
	free(hash);
	free(rs);
}
