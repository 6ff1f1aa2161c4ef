/*
 * gen_qgate_json.c — writes the scdoc source of qgate.json(5): the prose of a template, with
 * the line "@FIELDS@" replaced by every key of the configuration, as the loader's own field
 * tables describe it (gw_cfg_describe, gateway/config.h). A key added to a table therefore
 * appears in the man page with nothing else edited, and the page cannot name a key the
 * loader does not know.
 *
 *   gen_qgate_json TEMPLATE VERSION > qgate.json.5.scd
 *
 * "@VERSION@" in the template becomes VERSION. Refuses (exit 1, naming the key) a row
 * without a doc line, and a template without the "@FIELDS@" line. Build-time tool, one
 * thread; everything it allocates is freed before exit (it runs under ASan builds too).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"

struct row {
	char *path, *parent, *key, *type, *range, *def, *doc;
	char *names;		/* "\"a\", \"b\"" for a choice; NULL otherwise */
	bool is_required, is_removed, has_children, is_array;
};

struct rows {
	struct row *v;
	size_t n, cap;
	bool is_oom;
	const char *bad;	/* first problem found, reported by main */
	char bad_path[256];
};

static char *dup_or_null(struct rows *rs, const char *s)
{
	char *p;

	if (!s)
		return NULL;
	p = strdup(s);
	if (!p)
		rs->is_oom = true;
	return p;
}

static char *join_names(struct rows *rs, const char *const *names)
{
	size_t len = 1;
	char *out;

	if (!names)
		return NULL;
	for (size_t i = 0; names[i]; i++)
		len += strlen(names[i]) + 4;
	out = malloc(len);
	if (!out) {
		rs->is_oom = true;
		return NULL;
	}
	out[0] = '\0';
	for (size_t i = 0, o = 0; names[i]; i++) {
		int n = snprintf(out + o, len - o, "%s\"%s\"", i ? ", " : "", names[i]);

		if (n > 0)
			o += (size_t)n;
	}
	return out;
}

static void collect(const struct gw_cfg_doc *d, void *arg)
{
	struct rows *rs = arg;
	struct row *r;

	if (!rs->bad && (!d->doc || !d->doc[0])) {
		rs->bad = "has no doc line in its row";
		snprintf(rs->bad_path, sizeof(rs->bad_path), "%s", d->path);
	} else if (!rs->bad && d->doc[0] == '.') {
		/* scdoc drops a line's leading '.' (it reads as a roff request) */
		rs->bad = "has a doc line starting with '.' (scdoc would eat it)";
		snprintf(rs->bad_path, sizeof(rs->bad_path), "%s", d->path);
	}
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 128;
		struct row *v = realloc(rs->v, cap * sizeof(*v));

		if (!v) {
			rs->is_oom = true;
			return;
		}
		rs->v = v;
		rs->cap = cap;
	}
	r = &rs->v[rs->n++];
	*r = (struct row){
		.path = dup_or_null(rs, d->path), .parent = dup_or_null(rs, d->parent),
		.key = dup_or_null(rs, d->key), .type = dup_or_null(rs, d->type),
		.range = dup_or_null(rs, d->range), .def = dup_or_null(rs, d->def),
		.doc = dup_or_null(rs, d->doc), .names = join_names(rs, d->names),
		.is_required = d->is_required, .is_removed = d->is_removed,
		.has_children = d->has_children, .is_array = d->is_array,
	};
}

static void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		struct row *r = &rs->v[i];

		free(r->path);
		free(r->parent);
		free(r->key);
		free(r->type);
		free(r->range);
		free(r->def);
		free(r->doc);
		free(r->names);
	}
	free(rs->v);
}

/* Text as scdoc shows it literally: its markup characters escaped. */
static void put_text(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '*' || *s == '_')
			fputc('\\', out);
		fputc(*s, out);
	}
}

/* The parent that a row's fields name: its path, plus "[]" for an array of objects. */
static void child_parent(const struct row *r, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s", r->path, r->is_array ? "[]" : "");
}

static void put_row(FILE *out, const struct row *r)
{
	char sub[300];
	const char *sep = "";	/* between the parts of the first line */

	fputc('*', out);
	put_text(out, r->path);
	fputs("*\n\t", out);
	if (r->is_removed) {
		fputs("_removed_: a file that sets it is refused.", out);
		sep = " ";
	} else if (r->type) {
		fputc('_', out);
		put_text(out, r->type);
		fputc('_', out);
		if (r->names) {
			fputc(' ', out);
			put_text(out, r->names);
		}
		if (r->range) {
			fputs(", ", out);
			put_text(out, r->range);
		}
		fputc('.', out);
		sep = " ";
	}
	if (r->is_required) {
		fprintf(out, "%s*Required.*", sep);
		sep = " ";
	} else if (r->def) {
		fprintf(out, "%sDefault: *", sep);
		put_text(out, r->def);
		fputs("*.", out);
		sep = " ";
	}
	if (r->has_children) {
		child_parent(r, sub, sizeof(sub));
		fprintf(out, "%sIts fields: *", sep);
		put_text(out, sub);
		fputs("* below.", out);
		sep = " ";
	}
	/* the doc on a line of its own ("++" is scdoc's line break) */
	if (sep[0])
		fputs("++\n", out);
	put_text(out, r->doc);
	fputs(".\n\n", out);
}

/* Every row whose parent is `parent`, in table order. Returns how many. */
static size_t put_rows(FILE *out, const struct rows *rs, const char *parent)
{
	size_t n = 0;

	for (size_t i = 0; i < rs->n; i++) {
		if (strcmp(rs->v[i].parent, parent) == 0) {
			put_row(out, &rs->v[i]);
			n++;
		}
	}
	return n;
}

static int put_fields(FILE *out, const struct rows *rs)
{
	char sub[300];

	fputs("## Top level\n\n", out);
	if (put_rows(out, rs, "") == 0)
		return -1;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->v[i];

		if (!r->has_children)
			continue;
		child_parent(r, sub, sizeof(sub));
		fputs("## ", out);
		put_text(out, sub);
		fputs("\n\n", out);
		put_text(out, r->doc);
		fputs(".\n\n", out);
		if (put_rows(out, rs, sub) == 0) {
			fprintf(stderr, "gen_qgate_json: %s has no fields\n", sub);
			return -1;
		}
	}
	return 0;
}

/* One template line, "@VERSION@" replaced. */
static void put_line(FILE *out, const char *line, const char *version)
{
	const char *at;

	while ((at = strstr(line, "@VERSION@")) != NULL) {
		fwrite(line, 1, (size_t)(at - line), out);
		fputs(version, out);
		line = at + strlen("@VERSION@");
	}
	fputs(line, out);
}

int main(int argc, char **argv)
{
	struct rows rs = { 0 };
	char *line = NULL;
	size_t cap = 0;
	bool has_fields = false;
	int rc = 0;
	FILE *in;

	if (argc != 3) {
		fprintf(stderr, "usage: gen_qgate_json TEMPLATE VERSION > qgate.json.5.scd\n");
		return 2;
	}
	gw_cfg_describe(collect, &rs);
	if (rs.is_oom) {
		fprintf(stderr, "gen_qgate_json: out of memory\n");
		rows_free(&rs);
		return 1;
	}
	if (rs.bad) {
		fprintf(stderr, "gen_qgate_json: config key %s %s (gateway/config.c)\n",
			rs.bad_path, rs.bad);
		rows_free(&rs);
		return 1;
	}
	in = fopen(argv[1], "r");
	if (!in) {
		perror(argv[1]);
		rows_free(&rs);
		return 1;
	}
	while (rc == 0 && getline(&line, &cap, in) > 0) {
		if (strcmp(line, "@FIELDS@\n") == 0) {
			has_fields = true;
			rc = put_fields(stdout, &rs);
		} else {
			put_line(stdout, line, argv[2]);
		}
	}
	free(line);
	fclose(in);
	rows_free(&rs);
	if (rc == 0 && !has_fields) {
		fprintf(stderr, "gen_qgate_json: %s has no \"@FIELDS@\" line\n", argv[1]);
		rc = -1;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("gen_qgate_json: stdout");
		rc = -1;
	}
	return rc == 0 ? 0 : 1;
}
