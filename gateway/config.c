/*
 * config.c — the JSON configuration file (jansson) turned into one validated, immutable
 * struct gw_config (addresses are parsed by addr.c, password hashes checked by pwhash.c).
 *
 * Invariants:
 *  - Validation never stops at the first problem: every error is appended to one list, each
 *    line "PATH: message" with a JSON path (pools[0].backends[1].address), so an operator fixes
 *    a file in one pass. A config with any error is freed whole; callers never see half a one.
 *  - JSON null means "not given, use the default" for every optional field, as in the
 *    product example ("tls": null, "allow": null).
 *  - Unknown keys are errors (with a "did you mean" hint) so a typo never silently falls back
 *    to a default. Keys starting with '_' are free-form comments and are ignored.
 *  - Relative file names (TLS files, password_file, audit_file) are resolved against the
 *    directory of the config file, and the struct holds the resolved name, so the gateway
 *    opens the very file that was checked here whatever its working directory.
 *  - Backend passwords live only in this struct and are wiped when it is freed.
 *  - Each JSON object kind has one field table (see "The tables"): a leaf key, its type,
 *    range, default and doc are written there once, and only table_defaults/table_parse read
 *    them. Code handles what a row cannot say: arrays of objects, secrets, references
 *    between sections and rules that span fields.
 *  - Every key is reachable from top_table through the rows' .sub (FT_CODE rows name the
 *    table their code reads with), so gw_cfg_describe lists them all: qgate.json(5) is
 *    generated from these tables and a new row shows up there with nothing else edited.
 */
#include "gateway/config.h"

#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "gateway/logval.h"
#include "gateway/pwhash.h"

#define CFG_MAX_FILE_BYTES	(16u << 20)	/* a config bigger than this is a mistake */
#define CFG_MAX_SECRET_BYTES	4096		/* password_file */
#define CFG_MAX_MSG_BYTES	(1ll << 40)	/* top of the message and client buffer sizes */

/* a name's escaped form in log lines is cut (ending ...") past this: a line naming a backend,
 * its pool and its address then stays under log.c's 4 KiB payload with its msg= */
#define CFG_MAX_LOG_NAME	1024

/* ---------------------------------------------------------------------------------------- */
/* Error collection and JSON paths                                                          */

struct ctx {
	char *err;		/* the collected lines, '\n'-separated */
	size_t err_len;
	size_t err_cap;
	unsigned int n_err;
	bool is_oom;
	char path[512];		/* current JSON path, e.g. "pools[0].backends[1]" */
	size_t path_len;
	const char *base_dir;	/* for relative file names; NULL = working directory */
	const struct gw_config *cfg;	/* the config being built, for references to pools */
	bool has_secret_files;	/* a password_file or token_file was read */
};

static void err_append(struct ctx *c, const char *line)
{
	size_t n = strlen(line);
	size_t need = c->err_len + n + 2;

	if (need > c->err_cap) {
		size_t cap = c->err_cap ? c->err_cap * 2 : 256;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(c->err, cap);
		if (!p) {
			c->is_oom = true;
			return;
		}
		c->err = p;
		c->err_cap = cap;
	}
	if (c->err_len)
		c->err[c->err_len++] = '\n';
	memcpy(c->err + c->err_len, line, n);
	c->err_len += n;
	c->err[c->err_len] = '\0';
}

__attribute__((format(printf, 2, 3)))
static void err_at(struct ctx *c, const char *fmt, ...)
{
	char msg[768];
	char line[1300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(line, sizeof(line), "%s: %s", c->path_len ? c->path : "(top level)", msg);
	err_append(c, line);
	c->n_err++;
}

static size_t path_push_key(struct ctx *c, const char *key)
{
	size_t old = c->path_len;
	size_t room = sizeof(c->path) - old;
	int n = snprintf(c->path + old, room, "%s%s", old ? "." : "", key);

	c->path_len = (n < 0 || (size_t)n >= room) ? sizeof(c->path) - 1 : old + (size_t)n;
	return old;
}

static size_t path_push_idx(struct ctx *c, size_t i)
{
	size_t old = c->path_len;
	size_t room = sizeof(c->path) - old;
	int n = snprintf(c->path + old, room, "[%zu]", i);

	c->path_len = (n < 0 || (size_t)n >= room) ? sizeof(c->path) - 1 : old + (size_t)n;
	return old;
}

static void path_pop(struct ctx *c, size_t old)
{
	c->path_len = old;
	c->path[old] = '\0';
}

__attribute__((format(printf, 3, 4)))
static void err_key(struct ctx *c, const char *key, const char *fmt, ...)
{
	char msg[768];
	size_t old = path_push_key(c, key);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err_at(c, "%s", msg);
	path_pop(c, old);
}

static char *xstrdup(struct ctx *c, const char *s)
{
	char *p = strdup(s);

	if (!p)
		c->is_oom = true;
	return p;
}

static void *xcalloc(struct ctx *c, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		c->is_oom = true;
	return p;
}

/* ---------------------------------------------------------------------------------------- */
/* Name index                                                                               */

/*
 * key -> the index it was first seen at, for the checks that compare every pool (or
 * backend address) with those before it: a scan per entry made a 24k-pool file take seconds
 * to load, on the main thread at a SIGHUP. Open addressing; keys are borrowed.
 */
struct name_map {
	const char **key;
	size_t *val;
	size_t mask;
};

static bool name_map_init(struct ctx *c, struct name_map *m, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	m->key = xcalloc(c, cap, sizeof(*m->key));
	m->val = xcalloc(c, cap, sizeof(*m->val));
	m->mask = cap - 1;
	if (m->key && m->val)
		return true;
	free(m->key);	/* out of memory (reported): the checks are skipped */
	free(m->val);
	m->key = NULL;
	m->val = NULL;
	return false;
}

static void name_map_free(struct name_map *m)
{
	free(m->key);
	free(m->val);
}

/* The index key was first given, or SIZE_MAX when it is new (it is then stored with val). */
static size_t name_map_put(struct name_map *m, const char *key, size_t val)
{
	uint64_t h = 1469598103934665603ull;	/* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
		if (!m->key[i]) {
			m->key[i] = key;
			m->val[i] = val;
			return SIZE_MAX;
		}
		if (!strcmp(m->key[i], key))
			return m->val[i];
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Unknown keys                                                                             */

/* Edit distance of two short strings, capped: only used to suggest a key for a typo. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[65];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* ---------------------------------------------------------------------------------------- */
/* Typed getters. Each leaves *out (the default) alone when the key is absent or null.      */

enum {
	F_REQ = 1,		/* absent is an error */
	F_EMPTY_OK = 2,		/* "" is accepted */
	F_NAME = 4,		/* no ':' (user names travel as "user:password") */
	F_FILE = 8,		/* a file name, resolved against the config's directory */
	F_READ = 16,		/* F_FILE: the file must be readable now */
};

/* The value of key, or NULL when absent or JSON null (null means "use the default"). */
static json_t *get(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_null(v) ? NULL : v;
}

static bool get_str(struct ctx *c, json_t *obj, const char *key, int flags, char **out)
{
	json_t *v = get(obj, key);
	char *s;

	if (!v) {
		if (flags & F_REQ)
			err_key(c, key, "required");
		return false;
	}
	if (!json_is_string(v)) {
		err_key(c, key, "must be a string");
		return false;
	}
	if (!(flags & F_EMPTY_OK) && json_string_length(v) == 0) {
		err_key(c, key, "must not be empty");
		return false;
	}
	s = xstrdup(c, json_string_value(v));
	if (!s)
		return false;
	free(*out);
	*out = s;
	return true;
}

/* A name as the q handshake carries it: "user:password" splits at the first ':'. */
static bool get_name(struct ctx *c, json_t *obj, const char *key, int flags, char **out)
{
	if (!get_str(c, obj, key, flags, out))
		return false;
	if (strchr(*out, ':')) {
		err_key(c, key, "must not contain ':'");
		return false;
	}
	return true;
}

static bool get_int(struct ctx *c, json_t *obj, const char *key, long long min, long long max,
		    long long *out)
{
	json_t *v = get(obj, key);
	long long x;

	if (!v)
		return false;
	if (!json_is_integer(v)) {
		if (min >= 0)
			err_key(c, key, "must be a non-negative integer");
		else
			err_key(c, key, "must be an integer");
		return false;
	}
	x = json_integer_value(v);
	if (x < min || x > max) {
		if (max == LLONG_MAX)
			err_key(c, key, "must be >= %lld (got %lld)", min, x);
		else
			err_key(c, key, "must be between %lld and %lld (got %lld)", min, max, x);
		return false;
	}
	*out = x;
	return true;
}

/*
 * Durations: whole milliseconds, 0 .. 2^32-1 (about 49 days). Timeouts that always run
 * (handshake, connect, health answer) take min 1: for them 0 has no sane meaning, and
 * rejecting it beats guessing between "never" and "at once".
 */
static void get_ms_min(struct ctx *c, json_t *obj, const char *key, uint32_t min, uint32_t *out)
{
	json_t *v = get(obj, key);

	if (!v)
		return;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		err_key(c, key, "must be a non-negative integer (milliseconds)");
		return;
	}
	if (json_integer_value(v) < min) {
		err_key(c, key, "must be at least %u milliseconds", min);
		return;
	}
	if (json_integer_value(v) > UINT32_MAX) {
		err_key(c, key, "must be at most %u milliseconds", UINT32_MAX);
		return;
	}
	*out = (uint32_t)json_integer_value(v);
}

static bool get_double(struct ctx *c, json_t *obj, const char *key, double min, double max,
		       double *out)
{
	json_t *v = get(obj, key);
	double x;

	if (!v)
		return false;
	if (!json_is_number(v)) {
		err_key(c, key, "must be a number");
		return false;
	}
	x = json_number_value(v);
	if (!(x >= min && x <= max)) {
		if (max > 1e300)
			err_key(c, key, "must be >= %g (got %g)", min, x);
		else
			err_key(c, key, "must be between %g and %g (got %g)", min, max, x);
		return false;
	}
	*out = x;
	return true;
}

static bool get_bool(struct ctx *c, json_t *obj, const char *key, bool *out)
{
	json_t *v = get(obj, key);

	if (!v)
		return false;
	if (!json_is_boolean(v)) {
		err_key(c, key, "must be true or false");
		return false;
	}
	*out = json_is_true(v);
	return true;
}

/* One of names[] (NULL-terminated); *out becomes its index. */
static bool get_enum(struct ctx *c, json_t *obj, const char *key, const char *const *names,
		     int *out)
{
	json_t *v = get(obj, key);
	char list[256];
	size_t len = 0;

	if (!v)
		return false;
	if (json_is_string(v)) {
		for (int i = 0; names[i]; i++) {
			if (!strcmp(json_string_value(v), names[i])) {
				*out = i;
				return true;
			}
		}
	}
	list[0] = '\0';
	for (int i = 0; names[i]; i++) {
		int n = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", names[i]);

		if (n < 0 || (size_t)n >= sizeof(list) - len)
			break;
		len += (size_t)n;
	}
	if (json_is_string(v))
		err_key(c, key, "must be one of %s (got \"%.64s\")", list, json_string_value(v));
	else
		err_key(c, key, "must be one of %s", list);
	return false;
}

static json_t *get_obj(struct ctx *c, json_t *obj, const char *key)
{
	json_t *v = get(obj, key);

	if (v && !json_is_object(v)) {
		err_key(c, key, "must be an object");
		return NULL;
	}
	return v;
}

static json_t *get_arr(struct ctx *c, json_t *obj, const char *key)
{
	json_t *v = get(obj, key);

	if (v && !json_is_array(v)) {
		err_key(c, key, "must be an array");
		return NULL;
	}
	return v;
}

/* A list of non-empty strings into a NULL-terminated array; absent/null leaves *out NULL. */
static void get_str_list(struct ctx *c, json_t *obj, const char *key, char ***out, size_t *n_out)
{
	json_t *arr = get_arr(c, obj, key);
	bool is_bad = false;
	size_t n, i, old;
	json_t *v;
	char **list;

	if (!arr)
		return;
	n = json_array_size(arr);
	list = xcalloc(c, n + 1, sizeof(*list));
	if (!list)
		return;
	old = path_push_key(c, key);
	json_array_foreach(arr, i, v) {
		size_t o = path_push_idx(c, i);

		if (!json_is_string(v))
			err_at(c, "must be a string");
		else if (json_string_length(v) == 0)
			err_at(c, "must not be empty");
		else
			list[i] = xstrdup(c, json_string_value(v));
		is_bad |= !list[i];
		path_pop(c, o);
	}
	path_pop(c, old);
	if (is_bad) {
		/* the array must stay dense to be NULL-terminated; the config fails anyway */
		for (i = 0; i < n; i++)
			free(list[i]);
		free(list);
		return;
	}
	*out = list;
	*n_out = n;
}

static void free_str_list(char **list)
{
	if (!list)
		return;
	for (size_t i = 0; list[i]; i++)
		free(list[i]);
	free(list);
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                    */

static char *resolve_path(struct ctx *c, const char *name)
{
	size_t lb, ln;
	char *p;

	if (!c->base_dir || name[0] == '/')
		return xstrdup(c, name);
	lb = strlen(c->base_dir);
	ln = strlen(name);
	p = malloc(lb + ln + 2);
	if (!p) {
		c->is_oom = true;
		return NULL;
	}
	memcpy(p, c->base_dir, lb);
	p[lb] = '/';
	memcpy(p + lb + 1, name, ln + 1);
	return p;
}

/* 0 when path names a regular file we can open for reading, else -errno. */
static int check_readable(const char *path)
{
	struct stat st;
	int fd;

	if (stat(path, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* A file name field: resolved against the config's directory and, if must_read, checked. */
static bool get_file(struct ctx *c, json_t *obj, const char *key, int flags, bool must_read,
		     char **out)
{
	char *name = NULL;
	char *full;
	int rc;

	if (!get_str(c, obj, key, flags, &name))
		return false;
	full = resolve_path(c, name);
	free(name);
	if (!full)
		return false;
	if (must_read && (rc = check_readable(full)) < 0) {
		err_key(c, key, "cannot read \"%s\": %s", full,
			rc == -EINVAL ? "not a regular file" : strerror(-rc));
		free(full);
		return false;
	}
	free(*out);
	*out = full;
	return true;
}

/* A file qgate will create: its directory must exist (and be a directory) now. */
static void check_parent_dir(struct ctx *c, const char *key, const char *path)
{
	char dir[4096];
	struct stat st;
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (!slash) {
		snprintf(dir, sizeof(dir), ".");
	} else {
		if (n >= sizeof(dir))
			n = sizeof(dir) - 1;
		memcpy(dir, path, n ? n : 1);	/* "/file": the root */
		dir[n ? n : 1] = '\0';
	}
	if (stat(dir, &st) < 0)
		err_key(c, key, "directory \"%s\" of \"%s\": %s", dir, path, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		err_key(c, key, "\"%s\" is not a directory", dir);
}

/* Read a secret file: at most CFG_MAX_SECRET_BYTES, one trailing "\n" or "\r\n" stripped. */
static int read_secret(const char *path, char **out)
{
	char *buf;
	size_t len = 0;
	int fd, rc = 0;

	rc = check_readable(path);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(CFG_MAX_SECRET_BYTES + 2);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (int guard = 0; guard < 10000; guard++) {
		ssize_t n = read(fd, buf + len, CFG_MAX_SECRET_BYTES + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CFG_MAX_SECRET_BYTES) {
			rc = -EFBIG;
			break;
		}
	}
	close(fd);
	if (rc == 0 && memchr(buf, '\0', len))
		rc = -EINVAL;
	if (rc < 0) {
		OPENSSL_cleanse(buf, CFG_MAX_SECRET_BYTES + 2);
		free(buf);
		return rc;
	}
	if (len && buf[len - 1] == '\n') {
		len--;
		if (len && buf[len - 1] == '\r')
			len--;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* A secret (a password, a token) read from the file that obj's key names. */
static void get_secret_file(struct ctx *c, json_t *obj, const char *key, char **out)
{
	char *file = NULL;

	if (get_file(c, obj, key, 0, false, &file)) {
		int rc = read_secret(file, out);

		c->has_secret_files = true;

		if (rc == -ENOMEM)
			c->is_oom = true;
		else if (rc == -EFBIG)
			err_key(c, key, "\"%s\" is larger than %d bytes", file, CFG_MAX_SECRET_BYTES);
		else if (rc == -EINVAL)
			err_key(c, key, "\"%s\" is not a regular text file (or holds a NUL byte)",
				file);
		else if (rc < 0)
			err_key(c, key, "cannot read \"%s\": %s", file, strerror(-rc));
	}
	free(file);
}

static bool get_addr(struct ctx *c, json_t *obj, const char *key, int flags, const char *def,
		     struct gw_addr *out)
{
	json_t *v = get(obj, key);
	const char *text = def;
	const char *why;
	int rc;

	if (v) {
		if (!json_is_string(v)) {
			err_key(c, key, "must be a string");
			return false;
		}
		text = json_string_value(v);
	} else if (flags & F_REQ) {
		err_key(c, key, "required");
		return false;
	}
	if (!text)
		return false;
	rc = gw_addr_parse_why(text, out, &why);
	if (rc == -ENOMEM) {
		c->is_oom = true;
		return false;
	}
	if (rc < 0) {
		err_key(c, key, "invalid address \"%.128s\": %s", text, why);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Field tables                                                                             */

/*
 * Every JSON object kind has one table. A row names a key and says how to read it: its type,
 * range, default, where it lands (offsetof into the struct the table describes) and a
 * one-line doc. table_defaults and table_parse are the only readers of leaf fields, so each
 * key, its range and its default are written once, in the row. Keys whose value is an array
 * of objects, a secret or a choice between forms are FT_CODE rows: known (so not "unknown
 * key"), read by the table's check function, which also does the cross-field checks.
 */
enum ftype {
	FT_INT = 0,	/* integer in [min, max]; stored as a signed/unsigned integer of .size;
			 * also the string .word, meaning .word_val (a default may be it) */
	FT_MS,		/* duration: whole milliseconds in [min, UINT32_MAX], uint32_t */
	FT_DOUBLE,	/* number in [dmin, dmax]; also the string .word, meaning .word_val */
	FT_BOOL,	/* true or false */
	FT_ENUM,	/* one of .names; stores .values[i] (NULL: i) as an integer of .size */
	FT_STR,		/* owned char *; F_REQ, F_EMPTY_OK, F_NAME, F_FILE, F_READ */
	FT_ADDR,	/* struct gw_addr; .sdef is the default address text */
	FT_LIST,	/* array of non-empty strings: NULL-terminated char **, count at .off_n */
	FT_OBJ,		/* nested object read with .sub at .off; .value reads other forms */
	FT_CODE,	/* known key, read by the table's check function */
	FT_GONE,	/* a removed key: refused whatever its value, .doc says why */
};

struct table;
typedef void (*check_fn)(struct ctx *c, json_t *obj, void *base);
typedef void (*value_fn)(struct ctx *c, json_t *v, void *base);

struct field {
	const char *key;
	enum ftype type;
	int flags;
	size_t off;			/* offsetof the member in the table's struct */
	size_t size;			/* sizeof the member */
	long long min, max, def;	/* FT_INT, FT_MS (min), FT_BOOL, FT_ENUM (index) */
	double dmin, dmax, ddef;	/* FT_DOUBLE */
	const char *word;		/* FT_DOUBLE, FT_INT: a word accepted too ("constant") */
	double word_val;
	const char *sdef;		/* FT_STR, FT_ADDR: default text; NULL: none */
	const char *const *names;	/* FT_ENUM, NULL-terminated */
	const int *values;		/* FT_ENUM: what each name stores; NULL: its index */
	size_t off_n;			/* FT_LIST: offsetof the size_t count */
	const struct table *sub;	/* FT_OBJ; FT_CODE: the table its check function reads it with */
	bool is_array;			/* FT_CODE with .sub: an array of such objects */
	value_fn value;			/* FT_OBJ: reads other forms too (a boolean) */
	const char *doc;
};

struct table {
	const struct field *rows;
	size_t n_rows;
	check_fn check;		/* after the rows: FT_CODE keys and cross-field checks */
};

#define N_ROWS(a)	(sizeof(a) / sizeof((a)[0]))

/* Row builders; TBL is the struct the table being written describes. */
#define ROW(k, m, ...) \
	{ .key = (k), .off = offsetof(TBL, m), .size = sizeof(((TBL *)0)->m), __VA_ARGS__ }
#define R_INT(k, m, lo, hi, d, doc_) \
	ROW(k, m, .type = FT_INT, .min = (lo), .max = (hi), .def = (d), .doc = (doc_))
/* an integer, or the string w meaning wv (which the default d may be) */
#define R_INT_OR(k, m, lo, hi, d, w, wv, doc_) \
	ROW(k, m, .type = FT_INT, .min = (lo), .max = (hi), .def = (d), .word = (w), \
	    .word_val = (wv), .doc = (doc_))
#define R_MS(k, m, lo, d, doc_) \
	ROW(k, m, .type = FT_MS, .min = (lo), .max = UINT32_MAX, .def = (d), .doc = (doc_))
#define R_DBL(k, m, lo, hi, d, doc_) \
	ROW(k, m, .type = FT_DOUBLE, .dmin = (lo), .dmax = (hi), .ddef = (d), .doc = (doc_))
#define R_BOOL(k, m, d, doc_) \
	ROW(k, m, .type = FT_BOOL, .def = (d), .doc = (doc_))
#define R_ENUM(k, m, nm, vals, d, doc_) \
	ROW(k, m, .type = FT_ENUM, .names = (nm), .values = (vals), .def = (d), .doc = (doc_))
#define R_STR(k, m, fl, d, doc_) \
	ROW(k, m, .type = FT_STR, .flags = (fl), .sdef = (d), .doc = (doc_))
#define R_ADDR(k, m, fl, d, doc_) \
	ROW(k, m, .type = FT_ADDR, .flags = (fl), .sdef = (d), .doc = (doc_))
#define R_LIST(k, m, n, doc_) \
	ROW(k, m, .type = FT_LIST, .off_n = offsetof(TBL, n), .doc = (doc_))
#define R_OBJ(k, m, t, doc_) \
	ROW(k, m, .type = FT_OBJ, .sub = &(t), .doc = (doc_))
/* A nested object whose fields live in this same struct (pools[].queue -> queue_max). */
#define R_HERE(k, t, fn, doc_) \
	{ .key = (k), .type = FT_OBJ, .off = 0, .sub = &(t), .value = (fn), .doc = (doc_) }
#define R_CODE(k, doc_)	{ .key = (k), .type = FT_CODE, .doc = (doc_) }
/* FT_CODE keys the check function reads with table t, as one object or an array of them:
 * the parse is code, but the table is named here so gw_cfg_describe finds every key. */
#define R_CODE_OBJ(k, t, doc_)	{ .key = (k), .type = FT_CODE, .sub = &(t), .doc = (doc_) }
#define R_CODE_ARR(k, t, doc_) \
	{ .key = (k), .type = FT_CODE, .sub = &(t), .is_array = true, .doc = (doc_) }
#define R_GONE(k, why)	{ .key = (k), .type = FT_GONE, .doc = (why) }

static void *at(void *base, size_t off)
{
	return (char *)base + off;
}

/* Store an integer into a member of f->size bytes; signed when f's range goes below 0. */
static void put_int(void *p, const struct field *f, long long v)
{
	bool is_signed = f->min < 0;

	if (f->size == 1) {
		uint8_t x = (uint8_t)v;	/* bool members */

		memcpy(p, &x, 1);
	} else if (f->size == 4 && is_signed) {
		int32_t x = (int32_t)v;

		memcpy(p, &x, 4);
	} else if (f->size == 4) {
		uint32_t x = (uint32_t)v;

		memcpy(p, &x, 4);
	} else if (f->size == 8 && is_signed) {
		int64_t x = (int64_t)v;

		memcpy(p, &x, 8);
	} else if (f->size == 8) {
		uint64_t x = (uint64_t)v;

		memcpy(p, &x, 8);
	} else {
		abort();	/* a row for a member of another size: a bug in the table */
	}
}

static long long enum_value(const struct field *f, long long i)
{
	return f->values ? f->values[i] : i;
}

static void check_keys(struct ctx *c, json_t *obj, const struct table *t)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val) {
		const char *hint = NULL;
		size_t best = 3;
		bool is_known = false;

		(void)val;
		if (key[0] == '_')	/* "_comment": free-form annotations */
			continue;
		for (size_t i = 0; i < t->n_rows; i++) {
			const char *k = t->rows[i].key;
			size_t d;

			if (!strcmp(key, k)) {
				is_known = true;
				break;
			}
			d = edit_distance(key, k);
			if (d < best && d < strlen(k)) {
				best = d;
				hint = k;
			}
		}
		if (is_known)
			continue;
		if (hint)
			err_key(c, key, "unknown key (did you mean \"%s\"?)", hint);
		else
			err_key(c, key, "unknown key");
	}
}

/* Every default of t (and of its nested objects) into the zeroed struct at base. */
static void table_defaults(struct ctx *c, const struct table *t, void *base)
{
	for (size_t i = 0; i < t->n_rows; i++) {
		const struct field *f = &t->rows[i];
		void *p = at(base, f->off);

		switch (f->type) {
		case FT_INT:
		case FT_MS:
		case FT_BOOL:
			put_int(p, f, f->def);
			break;
		case FT_ENUM:
			put_int(p, f, enum_value(f, f->def));
			break;
		case FT_DOUBLE:
			if (f->size != sizeof(double))
				abort();
			memcpy(p, &f->ddef, sizeof(double));
			break;
		case FT_STR:
			if (f->sdef) {
				free(*(char **)p);
				*(char **)p = xstrdup(c, f->sdef);
			}
			break;
		case FT_ADDR:
			gw_addr_free(p);
			if (f->sdef && gw_addr_parse(f->sdef, p) < 0)
				c->is_oom = true;	/* the default text is valid */
			break;
		case FT_OBJ:
			table_defaults(c, f->sub, p);
			break;
		case FT_LIST:
		case FT_CODE:
		case FT_GONE:
			break;
		}
	}
}

static void table_parse(struct ctx *c, const struct table *t, json_t *obj, void *base);

/* The object v under key: its path pushed for the errors inside it. */
static void parse_sub(struct ctx *c, const char *key, const struct table *t, json_t *v,
		      void *base)
{
	size_t old = path_push_key(c, key);

	table_parse(c, t, v, base);
	path_pop(c, old);
}

static void parse_row(struct ctx *c, const struct field *f, json_t *obj, void *base)
{
	void *p = at(base, f->off);
	json_t *v = get(obj, f->key);
	long long x;
	int i;

	switch (f->type) {
	case FT_INT:
		if (f->word && json_is_string(v) && !strcmp(json_string_value(v), f->word))
			put_int(p, f, (long long)f->word_val);
		else if (f->word && v && !json_is_integer(v))
			err_key(c, f->key, "must be an integer between %lld and %lld, or \"%s\"",
				f->min, f->max, f->word);
		else if (get_int(c, obj, f->key, f->min, f->max, &x))
			put_int(p, f, x);
		break;
	case FT_MS:
		if (f->size != sizeof(uint32_t))
			abort();
		get_ms_min(c, obj, f->key, (uint32_t)f->min, p);
		break;
	case FT_DOUBLE:
		if (f->word && json_is_string(v) && !strcmp(json_string_value(v), f->word))
			memcpy(p, &f->word_val, sizeof(double));
		else if (f->word && v && !json_is_number(v))
			err_key(c, f->key, "must be a number >= %.1f or \"%s\"", f->dmin, f->word);
		else
			get_double(c, obj, f->key, f->dmin, f->dmax, p);
		break;
	case FT_BOOL:
		get_bool(c, obj, f->key, p);
		break;
	case FT_ENUM:
		if (get_enum(c, obj, f->key, f->names, &i))
			put_int(p, f, enum_value(f, i));
		break;
	case FT_STR:
		if (f->flags & F_FILE)
			get_file(c, obj, f->key, f->flags, f->flags & F_READ, p);
		else if (f->flags & F_NAME)
			get_name(c, obj, f->key, f->flags, p);
		else
			get_str(c, obj, f->key, f->flags, p);
		break;
	case FT_ADDR:
		if (v || (f->flags & F_REQ)) {
			gw_addr_free(p);
			get_addr(c, obj, f->key, f->flags, NULL, p);
		}
		break;
	case FT_LIST:
		get_str_list(c, obj, f->key, p, at(base, f->off_n));
		break;
	case FT_OBJ:
		if (!v)
			break;
		if (f->value)
			f->value(c, v, p);
		else if (!json_is_object(v))
			err_key(c, f->key, "must be an object");
		else
			parse_sub(c, f->key, f->sub, v, p);
		break;
	case FT_GONE:
		if (json_object_get(obj, f->key))	/* even null: the key itself is gone */
			err_key(c, f->key, "%s", f->doc);
		break;
	case FT_CODE:
		break;
	}
}

/* Read the object obj into base with table t: unknown keys, every row, then t->check. */
static void table_parse(struct ctx *c, const struct table *t, json_t *obj, void *base)
{
	check_keys(c, obj, t);
	for (size_t i = 0; i < t->n_rows; i++)
		parse_row(c, &t->rows[i], obj, base);
	if (t->check)
		t->check(c, obj, base);
}

/* One element of an array of objects: defaults, then the object (which must be one). */
static void parse_elem(struct ctx *c, const struct table *t, json_t *j, void *base)
{
	table_defaults(c, t, base);
	if (!json_is_object(j))
		err_at(c, "must be an object");
	else
		table_parse(c, t, j, base);
}

/* ---------------------------------------------------------------------------------------- */
/* The tables                                                                               */

static const char *const mode_names[] = { "query", "session", NULL };
static const char *const strategy_names[] = {
	"least_outstanding", "round_robin", "random_two", NULL
};
static const char *const connect_names[] = { "start", "lazy", NULL };
static const char *const affinity_names[] = { "none", "client", "user", NULL };
static const char *const level_names[] = { "error", "warn", "info", "debug", "trace", NULL };
static const char *const log_format_names[] = { "logfmt", "json", NULL };
static const char *const compress_names[] = { "off", "remote", "always", NULL };
static const char *const tls_version_names[] = { "1.2", "1.3", NULL };
static const int tls_versions[] = { 12, 13 };

static void backend_check(struct ctx *c, json_t *j, void *base);
static void reconnect_check(struct ctx *c, json_t *j, void *base);
static void dedicated_value(struct ctx *c, json_t *v, void *base);
static void pool_check(struct ctx *c, json_t *j, void *base);
static void listener_check(struct ctx *c, json_t *j, void *base);
static void backend_tls_check(struct ctx *c, json_t *j, void *base);
static void user_check(struct ctx *c, json_t *j, void *base);
static void auth_check(struct ctx *c, json_t *j, void *base);
static void rule_check(struct ctx *c, json_t *j, void *base);
static void stats_check(struct ctx *c, json_t *j, void *base);
static void limits_check(struct ctx *c, json_t *j, void *base);
static void log_check(struct ctx *c, json_t *j, void *base);
static void resolver_check(struct ctx *c, json_t *j, void *base);
static void top_check(struct ctx *c, json_t *j, void *base);

#define TBL struct gw_tls_cfg
static const struct field listener_tls_rows[] = {
	R_STR("cert_file", cert_file, F_REQ | F_FILE | F_READ, NULL,
	      "server certificate chain, PEM"),
	R_STR("key_file", key_file, F_REQ | F_FILE | F_READ, NULL, "private key, PEM"),
	R_STR("client_ca_file", client_ca_file, F_FILE | F_READ, NULL,
	      "CA client certificates must chain to; null: none asked"),
	R_STR("ciphers", ciphers, 0, NULL,
	      "TLS 1.2 cipher list (OpenSSL syntax); null: forward-secret AEAD suites"),
	R_ENUM("min_version", min_version, tls_version_names, tls_versions, 0,
	       "oldest protocol version accepted"),
};
static const struct field backend_tls_rows[] = {
	R_STR("ca_file", ca_file, F_FILE | F_READ, NULL,
	      "CA to verify the backend with; null: the system store"),
	R_BOOL("verify", is_verify, true, "verify the backend's certificate (false: tests only)"),
	R_STR("cert_file", cert_file, F_FILE | F_READ, NULL,
	      "client certificate qgate presents (with key_file)"),
	R_STR("key_file", key_file, F_FILE | F_READ, NULL, "its private key (with cert_file)"),
	R_STR("ciphers", ciphers, 0, NULL,
	      "TLS 1.2 cipher list (OpenSSL syntax); null: forward-secret AEAD suites"),
	R_ENUM("min_version", min_version, tls_version_names, tls_versions, 0,
	       "oldest protocol version accepted"),
};
#undef TBL
static const struct table listener_tls_table = {
	listener_tls_rows, N_ROWS(listener_tls_rows), NULL
};
static const struct table backend_tls_table = {
	backend_tls_rows, N_ROWS(backend_tls_rows), backend_tls_check
};

#define TBL struct gw_backend_cfg
static const struct field backend_rows[] = {
	R_STR("name", name, 0, NULL, "name in logs, /stats and errors; default: the address"),
	R_ADDR("address", addr, F_REQ, NULL, "where the q process listens"),
	R_STR("user", user, F_NAME, NULL, "user in the backend handshake; null: gateway_user"),
	R_CODE("password", "the password, inline"),
	R_CODE("password_env", "environment variable holding the password"),
	R_CODE("password_file", "file holding the password (read at load)"),
	R_INT("connections", connections, 1, 1000, 2, "connections to this backend, per worker"),
	R_INT("weight", weight, 1, 1000000, 1, "relative share of the traffic"),
	R_INT_OR("max_inflight", max_inflight, 1, 65535, 0, "auto", 0,
		 "most sync requests this backend runs at once, across all workers; \"auto\": "
		 "learned from its answer times, 1..max_inflight_ceiling"),
	R_INT("max_inflight_ceiling", max_inflight_ceiling, 1, 65535, 8,
	      "with \"auto\": the most the learned limit may reach"),
	R_CODE_OBJ("tls", backend_tls_table, "object, true, false or null: TLS to the backend"),
};
#undef TBL
static const struct table backend_table = { backend_rows, N_ROWS(backend_rows), backend_check };

#define TBL struct gw_pool_cfg
static const struct field queue_rows[] = {
	R_INT("max", queue_max, 0, UINT32_MAX, 1000,
	      "requests that may wait for a free connection; 0: no queueing"),
	R_MS("timeout_ms", queue_timeout_ms, 0, 5000,
	     "longest wait in the queue; 0: until a connection is free"),
};
static const struct field dedicated_rows[] = {
	R_INT("max", dedicated_max, 0, UINT32_MAX, 256, "dedicated sockets open at once"),
	R_BOOL("all", is_dedicated, false, "every sync request is dedicated (query pools)"),
};
#undef TBL
static const struct table queue_table = { queue_rows, N_ROWS(queue_rows), NULL };
static const struct table dedicated_table = { dedicated_rows, N_ROWS(dedicated_rows), NULL };

#define TBL struct gw_reconnect_cfg
static const struct field reconnect_rows[] = {
	R_INT("attempts", attempts, -1, INT_MAX, -1, "attempts before giving up; -1: forever"),
	R_MS("delay_ms", delay_ms, 0, 500, "first delay; 0: at once"),
	ROW("multiplier", multiplier, .type = FT_DOUBLE, .dmin = 1.0, .dmax = 1e308, .ddef = 2.0,
	    .word = "constant", .word_val = 1.0,
	    .doc = "growth of each delay; 1.0 or \"constant\" (PyKX's word): constant"),
	R_MS("max_delay_ms", max_delay_ms, 0, 30000, "cap on the delay, >= delay_ms"),
	R_DBL("jitter", jitter, 0.0, 1.0, 0.2, "each delay moved at random by +- this fraction"),
	R_MS("connect_timeout_ms", connect_timeout_ms, 1, 2000, "time for a connect and handshake"),
};
#undef TBL
static const struct table reconnect_table = {
	reconnect_rows, N_ROWS(reconnect_rows), reconnect_check
};

#define TBL struct gw_health_cfg
static const struct field health_rows[] = {
	R_MS("interval_ms", interval_ms, 0, 5000, "between checks of an idle connection; 0: off"),
	R_MS("timeout_ms", timeout_ms, 1, 1000, "time for the health query's answer"),
	R_INT("failures", failures, 1, 100, 3,
	      "checks failed in a row (no answer at all meanwhile) that take a backend out"),
	R_STR("query", query, 0, "::", "q expression sent as a sync query"),
};
#undef TBL
static const struct table health_table = { health_rows, N_ROWS(health_rows), NULL };

#define TBL struct gw_pool_cfg
static const struct field pool_rows[] = {
	R_STR("name", name, F_REQ, NULL, "what listeners, users and rules call the pool"),
	R_ENUM("mode", mode, mode_names, NULL, GW_MODE_QUERY,
	       "query: any free connection per request; session: one per client"),
	R_ENUM("strategy", strategy, strategy_names, NULL, GW_STRATEGY_LEAST_OUTSTANDING,
	       "how a backend is chosen"),
	R_ENUM("affinity", affinity, affinity_names, NULL, GW_AFFINITY_NONE,
	       "query pools: none (any backend per message), client (one per client), "
	       "user (one per user)"),
	R_CODE_ARR("backends", backend_table, "array of backends, at least one"),
	R_HERE("queue", queue_table, NULL, "the wait queue used when no connection is free"),
	R_MS("query_timeout_ms", query_timeout_ms, 0, 0, "longest wait for an answer; 0: none"),
	R_OBJ("reconnect", reconnect, reconnect_table, "backoff after a failed connection"),
	R_OBJ("health", health, health_table, "health check of idle connections"),
	R_HERE("dedicated", dedicated_table, dedicated_value,
	       "dedicated dispatch: object, or a boolean for \"all\""),
	R_ENUM("connect", is_lazy, connect_names, NULL, 0,
	       "start: connect at start-up; lazy: when first needed"),
	R_BOOL("auth_passthrough", is_auth_passthrough, false,
	       "session pools: upstream opened with the client's credentials"),
	R_BOOL("idempotent", is_idempotent, false,
	       "query pools: a request whose backend died is sent again"),
	R_GONE("pipeline", "removed: a backend that defers an answer (-30!) would have later "
	       "answers paired with the wrong requests; raise \"connections\" for more requests "
	       "in flight, and send deferring calls through a \"dedicated\" rule"),
};
#undef TBL
static const struct table pool_table = { pool_rows, N_ROWS(pool_rows), pool_check };

#define TBL struct gw_listener_cfg
static const struct field listener_rows[] = {
	R_STR("name", name, 0, NULL, "name in logs and /stats; default: the listen text"),
	R_ADDR("listen", addr, 0, "127.0.0.1:5050", "address to listen on"),
	R_STR("pool", pool, 0, NULL, "pool of this listener's clients; default: the first pool"),
	R_CODE_OBJ("tls", listener_tls_table, "object or null: terminate TLS"),
	R_ENUM("compress", compress, compress_names, NULL, GW_COMPRESS_OFF,
	       "compress large answers as q does: off, remote clients, always"),
};
#undef TBL
static const struct table listener_table = {
	listener_rows, N_ROWS(listener_rows), listener_check
};

#define TBL struct gw_user_cfg
static const struct field user_rows[] = {
	R_STR("name", name, F_REQ | F_NAME, NULL, "user name of the client handshake"),
	R_STR("password_hash", password_hash, F_REQ, NULL, "output of qgate --hash-password"),
	R_LIST("pools", pools, n_pools, "pools this user may reach; null: every pool"),
	R_BOOL("admin", is_admin, false, "may call the .qgate.* admin functions"),
	R_LIST("allow", allow, n_allow, "allowed function names (globs); null: everything"),
	R_STR("pool", default_pool, 0, NULL, "the user's default pool; null: the listener's"),
};
#undef TBL
static const struct table user_table = { user_rows, N_ROWS(user_rows), user_check };

#define TBL struct gw_rule_cfg
static const struct field rule_rows[] = {
	R_STR("function", function, 0, NULL, "match: glob on the function at a list's head"),
	R_STR("prefix", prefix, 0, NULL, "match: start of a string query"),
	R_STR("user", user, 0, NULL, "match: exact user name"),
	R_STR("pool", pool, 0, NULL, "action: send to this pool"),
	R_BOOL("dedicated", is_dedicated, false, "action: send on a dedicated socket"),
	R_MS("timeout_ms", timeout_ms, 0, 0, "action: query timeout; 0: the pool's"),
	R_BOOL("deny", is_deny, false, "action: refuse with \"qgate: not allowed\""),
};
#undef TBL
static const struct table rule_table = { rule_rows, N_ROWS(rule_rows), rule_check };

#define TBL struct gw_limits_cfg
static const struct field limits_rows[] = {
	R_INT("max_clients", max_clients, 1, UINT32_MAX, 10000,
	      "client connections open at once, per worker"),
	R_INT("max_message_bytes", max_message_bytes, 1024, CFG_MAX_MSG_BYTES, 268435456,
	      "largest message a client may send"),
	R_MS("handshake_timeout_ms", handshake_timeout_ms, 1, 5000,
	     "time for a client's q handshake"),
	R_MS("client_idle_timeout_ms", client_idle_timeout_ms, 0, 0,
	     "close a client silent this long; 0: never"),
	R_INT("max_pipeline", max_pipeline, 1, UINT32_MAX, 1024,
	      "outstanding sync requests per client"),
	R_INT("client_buffer_bytes", client_buffer_bytes, 4096, CFG_MAX_MSG_BYTES, 4 << 20,
	      "answer bytes held for one client before its backends pause"),
	R_MS("shutdown_grace_ms", shutdown_grace_ms, 0, 5000,
	     "SIGTERM: time for requests in flight"),
	R_MS("drain_timeout_ms", drain_timeout_ms, 1, 60000,
	     "time a late answer may take after a query timeout"),
	R_MS("spare_idle_ms", spare_idle_ms, 1, 30000,
	     "auto max_inflight: an extra connection unused this long closes"),
	R_INT("rx_buffers", rx_buffers, 64, 32768, 1024,
	      "provided receive buffers per worker, a power of two"),
	R_INT("rx_buffer_bytes", rx_buffer_bytes, 4096, 1 << 20, 32768,
	      "size of each receive buffer"),
	R_INT("stream_threshold_bytes", stream_threshold_bytes, 65536, CFG_MAX_MSG_BYTES, 262144,
	      "client messages above this may stream through"),
	R_INT("zero_copy_bytes", zero_copy_bytes, 0, CFG_MAX_MSG_BYTES, 65536,
	      "answers this long are sent from the buffers they arrived in; 0: always copied"),
	R_MS("client_output_timeout_ms", client_output_timeout_ms, 0, 10000,
	     "a backend paused this long for a client closes the client; 0: never"),
	R_INT("ring_entries", ring_entries, 8, 32768, 1024,
	      "submission queue entries of each worker's io_uring"),
	R_INT("login_failures_max", login_failures_max, 1, UINT32_MAX, 10,
	      "failed logins from one address per window"),
	R_MS("login_failure_window_ms", login_failure_window_ms, 1, 60000,
	     "the window of login_failures_max"),
	R_INT("login_pending_max", login_pending_max, 1, 1024, 128,
	      "logins of one address being checked at once"),
	R_INT("login_threads", login_threads, 1, 64, 2, "password checking threads per worker"),
	R_MS("message_timeout_ms", message_timeout_ms, 0, 60000,
	     "a client message must arrive whole within this; 0: never"),
	R_INT("max_buffered_bytes", max_buffered_bytes, 1024, LLONG_MAX, 1ll << 30,
	      "request and answer bytes the process holds, >= max_message_bytes"),
};
#undef TBL
static const struct table limits_table = { limits_rows, N_ROWS(limits_rows), limits_check };

#define TBL struct gw_config
static const struct field stats_rows[] = {
	R_CODE("listen", "HTTP endpoint address; default 127.0.0.1:8080"),
	R_INT("max_connections", stats_max_connections, 1, 4096, 32,
	      "stats connections at once; the oldest gives way"),
	R_MS("timeout_ms", stats_timeout_ms, 1, 5000, "a stats connection's whole life"),
	R_CODE("token", "bearer token for /stats and /metrics; null: open"),
	R_CODE("token_file", "the token, read from a file"),
};
static const struct field log_rows[] = {
	R_ENUM("level", log_level, level_names, NULL, GW_LOG_INFO, "log level (stderr)"),
	R_ENUM("format", log_format, log_format_names, NULL, GW_LOG_FMT_LOGFMT,
	       "stderr lines as logfmt (key=value) or one JSON object each"),
	R_STR("audit_file", audit_file, F_FILE, NULL, "one line per request; null: off"),
};
static const struct field auth_rows[] = {
	R_CODE_ARR("users", user_table, "the users who may log in"),
};
#undef TBL
static const struct table stats_table = { stats_rows, N_ROWS(stats_rows), stats_check };
static const struct table log_table = { log_rows, N_ROWS(log_rows), log_check };
static const struct table auth_table = { auth_rows, N_ROWS(auth_rows), auth_check };

#define TBL struct gw_resolver_cfg
static const struct field resolver_rows[] = {
	R_LIST("servers", servers, n_servers,
	       "DNS servers, \"ip:port\" each; null: those of /etc/resolv.conf"),
	R_MS("timeout_ms", timeout_ms, 0, 0, "a lookup's first try; 0: resolv.conf's"),
	R_INT("tries", tries, 0, 100, 0, "tries per server; 0: resolv.conf's"),
};
#undef TBL
static const struct table resolver_table = {
	resolver_rows, N_ROWS(resolver_rows), resolver_check
};

#define TBL struct gw_config
static const struct field top_rows[] = {
	R_CODE_ARR("listeners", listener_table,
		   "where clients connect; default: 127.0.0.1:5050 on the first pool"),
	R_CODE_OBJ("auth", auth_table, "the user table; absent: any credentials"),
	R_CODE_ARR("pools", pool_table, "the groups of backends, at least one"),
	R_CODE_ARR("rules", rule_table, "per-message routing, timeouts, refusals"),
	R_HERE("stats", stats_table, NULL, "the HTTP stats endpoint; absent: none"),
	R_OBJ("limits", limits, limits_table, "limits on clients and messages"),
	R_HERE("log", log_table, NULL, "log level and audit log"),
	R_OBJ("resolver", resolver, resolver_table,
	      "how backend host names are looked up (off the loop)"),
	R_INT("workers", workers, 1, 1024, 1, "worker threads"),
	R_STR("gateway_user", gateway_user, F_NAME, "qgate",
	      "user in the handshake to backends without a user"),
};
#undef TBL
static const struct table top_table = { top_rows, N_ROWS(top_rows), top_check };

/* ---------------------------------------------------------------------------------------- */
/* Describing the tables: the rows as text, for the generated man page qgate.json(5)        */

static const char *type_name(const struct field *f)
{
	switch (f->type) {
	case FT_INT:
		return "integer";
	case FT_MS:
		return "duration (ms)";
	case FT_DOUBLE:
		return "number";
	case FT_BOOL:
		return "boolean";
	case FT_ENUM:
		return "string, one of";
	case FT_STR:
		if (f->flags & F_FILE)
			return "file name";
		return (f->flags & F_NAME) ? "string without ':'" : "string";
	case FT_ADDR:
		return "address";
	case FT_LIST:
		return "array of strings";
	case FT_OBJ:
		return "object";
	case FT_CODE:
		if (!f->sub)
			return NULL;	/* a secret or a choice of forms: the doc says */
		return f->is_array ? "array of objects" : "object";
	case FT_GONE:
		return "removed";
	}
	return NULL;
}

/* A double as JSON would show it: 2.0 rather than 2, so it reads as a number field. */
static void fmt_double(char *buf, size_t n, double x)
{
	snprintf(buf, n, "%g", x);
	if (!strpbrk(buf, ".en"))
		snprintf(buf + strlen(buf), n - strlen(buf), ".0");
}

static void describe_range(const struct field *f, char *buf, size_t n)
{
	char lo[32], hi[32];

	buf[0] = '\0';
	switch (f->type) {
	case FT_INT:
		if (f->max == LLONG_MAX)
			snprintf(buf, n, ">= %lld", f->min);
		else
			snprintf(buf, n, "%lld..%lld", f->min, f->max);
		if (f->word)
			snprintf(buf + strlen(buf), n - strlen(buf), ", or \"%s\"", f->word);
		break;
	case FT_MS:
		if (f->min > 0)
			snprintf(buf, n, ">= %lld", f->min);
		break;
	case FT_DOUBLE:
		fmt_double(lo, sizeof(lo), f->dmin);
		fmt_double(hi, sizeof(hi), f->dmax);
		if (f->dmax > 1e300)
			snprintf(buf, n, ">= %s", lo);
		else
			snprintf(buf, n, "%s..%s", lo, hi);
		if (f->word)
			snprintf(buf + strlen(buf), n - strlen(buf), ", or \"%s\"", f->word);
		break;
	default:
		break;
	}
}

static void describe_default(const struct field *f, char *buf, size_t n)
{
	buf[0] = '\0';
	switch (f->type) {
	case FT_INT:
		if (f->word && f->def == (long long)f->word_val)
			snprintf(buf, n, "\"%s\"", f->word);
		else
			snprintf(buf, n, "%lld", f->def);
		break;
	case FT_MS:
		snprintf(buf, n, "%lld", f->def);
		break;
	case FT_DOUBLE:
		fmt_double(buf, n, f->ddef);
		break;
	case FT_BOOL:
		snprintf(buf, n, "%s", f->def ? "true" : "false");
		break;
	case FT_ENUM:
		snprintf(buf, n, "\"%s\"", f->names[f->def]);
		break;
	case FT_STR:
	case FT_ADDR:
		if (f->sdef)
			snprintf(buf, n, "\"%s\"", f->sdef);
		break;
	default:
		break;
	}
}

static void describe_table(const struct table *t, const char *parent, int depth,
			   gw_cfg_doc_fn fn, void *arg)
{
	for (size_t i = 0; i < t->n_rows; i++) {
		const struct field *f = &t->rows[i];
		char path[256], range[96], def[96], sub_parent[256];
		struct gw_cfg_doc d = {
			.path = path, .parent = parent, .key = f->key, .depth = depth,
			.type = type_name(f), .range = range, .def = def,
			.names = f->type == FT_ENUM ? f->names : NULL, .doc = f->doc,
			.is_required = (f->flags & F_REQ) != 0, .is_removed = f->type == FT_GONE,
			.has_children = f->sub != NULL, .is_array = f->is_array,
		};

		/* the tables are static: a path that does not fit is a programming error */
		if (snprintf(path, sizeof(path), "%s%s%s", parent, parent[0] ? "." : "", f->key) >=
		    (int)sizeof(path))
			abort();
		describe_range(f, range, sizeof(range));
		describe_default(f, def, sizeof(def));
		if (!range[0])
			d.range = NULL;
		if (!def[0])
			d.def = NULL;
		fn(&d, arg);
		if (f->sub) {
			if (snprintf(sub_parent, sizeof(sub_parent), "%s%s", path,
				     f->is_array ? "[]" : "") >= (int)sizeof(sub_parent))
				abort();
			describe_table(f->sub, sub_parent, depth + 1, fn, arg);
		}
	}
}

void gw_cfg_describe(gw_cfg_doc_fn fn, void *arg)
{
	describe_table(&top_table, "", 0, fn, arg);
}

/* ---------------------------------------------------------------------------------------- */
/* Checks: the keys the rows leave to code, and the rules that span fields                  */

/* A "pool" reference: it names a pool that exists. */
static bool check_pool_ref(struct ctx *c, const char *key, const char *name)
{
	if (gw_cfg_pool(c->cfg, name))
		return true;
	err_key(c, key, "unknown pool \"%.64s\"", name);
	return false;
}

static char *first_pool_name(struct ctx *c)
{
	if (c->cfg->n_pools && c->cfg->pools[0].name)
		return xstrdup(c, c->cfg->pools[0].name);
	return NULL;
}

static void backend_tls_check(struct ctx *c, json_t *j, void *base)
{
	(void)base;
	if (!get(j, "cert_file") != !get(j, "key_file"))
		err_at(c, "cert_file and key_file go together (client certificate)");
}

static struct gw_tls_cfg *parse_listener_tls(struct ctx *c, json_t *obj)
{
	json_t *j = get_obj(c, obj, "tls");
	struct gw_tls_cfg *t;

	if (!j)
		return NULL;
	t = xcalloc(c, 1, sizeof(*t));
	if (!t)
		return NULL;
	table_defaults(c, &listener_tls_table, t);
	parse_sub(c, "tls", &listener_tls_table, j, t);
	return t;
}

static struct gw_tls_cfg *parse_backend_tls(struct ctx *c, json_t *obj)
{
	json_t *j = get(obj, "tls");
	struct gw_tls_cfg *t;

	if (!j || json_is_false(j))
		return NULL;
	if (!json_is_true(j) && !json_is_object(j)) {
		err_key(c, "tls", "must be an object, true, false or null");
		return NULL;
	}
	t = xcalloc(c, 1, sizeof(*t));
	if (!t)
		return NULL;
	table_defaults(c, &backend_tls_table, t);
	/* "tls": true = the defaults: verify against the system CAs */
	if (json_is_object(j))
		parse_sub(c, "tls", &backend_tls_table, j, t);
	return t;
}

static void backend_check(struct ctx *c, json_t *j, void *base)
{
	struct gw_backend_cfg *b = base;
	int n_src = !!get(j, "password") + !!get(j, "password_env") + !!get(j, "password_file");

	if (!b->name && !get(j, "name") && b->addr.text)
		b->name = xstrdup(c, b->addr.text);	/* default name: the address */
	b->tls = parse_backend_tls(c, j);
	if (b->max_inflight && get(j, "max_inflight_ceiling"))
		err_key(c, "max_inflight_ceiling", "applies to \"max_inflight\": \"auto\" only "
			"(max_inflight is %u here)", b->max_inflight);

	if (n_src > 1) {
		err_at(c, "give only one of password, password_env, password_file");
	} else if (get(j, "password")) {
		get_str(c, j, "password", F_EMPTY_OK, &b->password);
	} else if (get(j, "password_env")) {
		char *var = NULL;

		if (get_str(c, j, "password_env", 0, &var)) {
			const char *val = getenv(var);

			if (!val)
				err_key(c, "password_env", "environment variable %.64s is not set",
					var);
			else
				b->password = xstrdup(c, val);
		}
		free(var);
	} else if (get(j, "password_file")) {
		get_secret_file(c, j, "password_file", &b->password);
	}
}

static void reconnect_check(struct ctx *c, json_t *j, void *base)
{
	struct gw_reconnect_cfg *r = base;

	(void)j;
	if (r->max_delay_ms < r->delay_ms)
		err_key(c, "max_delay_ms", "must be >= delay_ms (%u < %u)", r->max_delay_ms,
			r->delay_ms);
}

/* "dedicated": an object, or true/false as short for {"all": BOOL}. */
static void dedicated_value(struct ctx *c, json_t *v, void *base)
{
	struct gw_pool_cfg *p = base;

	if (json_is_boolean(v))
		p->is_dedicated = json_is_true(v);
	else if (json_is_object(v))
		parse_sub(c, "dedicated", &dedicated_table, v, p);
	else
		err_key(c, "dedicated",
			"must be an object {\"max\": N, \"all\": BOOL} or a boolean");
}

static void pool_check(struct ctx *c, json_t *j, void *base)
{
	struct gw_pool_cfg *p = base;
	json_t *backends = get_arr(c, j, "backends");

	if (!get(j, "backends")) {
		err_key(c, "backends", "required: at least one backend");
	} else if (backends && json_array_size(backends) == 0) {
		err_key(c, "backends", "must have at least one backend");
	} else if (backends) {
		size_t old = path_push_key(c, "backends");

		p->n_backends = json_array_size(backends);
		p->backends = xcalloc(c, p->n_backends, sizeof(*p->backends));
		if (!p->backends)
			p->n_backends = 0;
		struct name_map names = { 0 };
		name_map_init(c, &names, p->n_backends);
		for (size_t i = 0; i < p->n_backends; i++) {
			size_t o = path_push_idx(c, i);

			parse_elem(c, &backend_table, json_array_get(backends, i), &p->backends[i]);
			size_t k = p->backends[i].name && names.key ?
				name_map_put(&names, p->backends[i].name, i) : SIZE_MAX;
			if (k != SIZE_MAX)
				err_key(c, "name", "duplicate backend name \"%.64s\" "
					"(also backends[%zu])", p->backends[i].name, k);
			path_pop(c, o);
		}
		name_map_free(&names);
		path_pop(c, old);
	}
	if (p->is_dedicated && p->mode == GW_MODE_SESSION)
		err_key(c, "dedicated", "dedicated dispatch is for query pools only");
	if (p->is_auth_passthrough && p->mode != GW_MODE_SESSION)
		err_key(c, "auth_passthrough", "requires \"mode\": \"session\"");
	if (p->is_idempotent && p->mode != GW_MODE_QUERY)
		err_key(c, "idempotent", "applies to \"mode\": \"query\" pools only");
	if (p->affinity != GW_AFFINITY_NONE && p->mode != GW_MODE_QUERY)
		err_key(c, "affinity", "applies to \"mode\": \"query\" pools only (a session "
			"pool already gives each client a backend of its own)");
}

/* max_inflight as the config shows it: a number or "auto" */
static const char *limit_text(const struct gw_backend_cfg *be, char *buf, size_t n)
{
	if (!be->max_inflight)
		return "\"auto\"";
	snprintf(buf, n, "%u", be->max_inflight);
	return buf;
}

/* The field in which backends a and b (one address) disagree, or NULL. */
static const char *limit_differs(const struct gw_backend_cfg *a, const struct gw_backend_cfg *b)
{
	if (a->max_inflight != b->max_inflight)
		return "max_inflight";
	if (!a->max_inflight && a->max_inflight_ceiling != b->max_inflight_ceiling)
		return "max_inflight_ceiling";
	return NULL;
}

/* A q process has one max_inflight however many pools name it: backends at the same
 * address must agree on it (they share one count and one limiter, gateway/shared.c), on
 * "auto" or a number alike, and with "auto" on its ceiling. Each backend is compared with
 * the first one given at its address. */
static void check_same_backends(struct ctx *c, const struct gw_config *cfg)
{
	struct first { size_t pool, backend; const struct gw_backend_cfg *be; } *firsts;
	struct name_map seen = { 0 };
	char **keys;
	size_t n = 0, f = 0, old = path_push_key(c, "pools");

	for (size_t i = 0; i < cfg->n_pools; i++)
		n += cfg->pools[i].n_backends;
	keys = xcalloc(c, n, sizeof(*keys));
	firsts = xcalloc(c, n, sizeof(*firsts));
	if (!keys || !firsts || !name_map_init(c, &seen, n))
		goto out;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		const struct gw_pool_cfg *p = &cfg->pools[i];
		size_t o = path_push_idx(c, i), ob = path_push_key(c, "backends");
		for (size_t b = 0; b < p->n_backends; b++) {
			const struct gw_backend_cfg *be = &p->backends[b];
			if (!be->addr.text)
				continue;
			/* gw_addr_key: equal exactly when gw_addr_same holds */
			size_t kn = strlen(be->addr.host ? be->addr.host : "") +
				    strlen(be->addr.path ? be->addr.path : "") + 32;
			keys[f] = xcalloc(c, kn, 1);
			if (!keys[f] || gw_addr_key(&be->addr, keys[f], kn) < 0) {
				free(keys[f]);
				keys[f] = NULL;
				continue;
			}
			firsts[f] = (struct first){ i, b, be };
			size_t k = name_map_put(&seen, keys[f], f);
			f++;
			const char *what = k == SIZE_MAX ? NULL : limit_differs(be, firsts[k].be);
			if (!what)
				continue;
			size_t oi = path_push_idx(c, b);
			char t1[16], t2[16];
			if (!strcmp(what, "max_inflight"))
				err_key(c, what, "%s differs from %s given for the same address in "
					"pools[%zu].backends[%zu] (one q process, one limit: give both "
					"the same number, or both \"auto\")",
					limit_text(be, t1, sizeof(t1)),
					limit_text(firsts[k].be, t2, sizeof(t2)), firsts[k].pool,
					firsts[k].backend);
			else
				err_key(c, what, "%d differs from %d given for the same address in "
					"pools[%zu].backends[%zu] (one q process, one limiter)",
					be->max_inflight_ceiling, firsts[k].be->max_inflight_ceiling,
					firsts[k].pool, firsts[k].backend);
			path_pop(c, oi);
		}
		path_pop(c, ob);
		path_pop(c, o);
	}
out:
	for (size_t i = 0; keys && i < n; i++)
		free(keys[i]);
	free(keys);
	free(firsts);
	name_map_free(&seen);
	path_pop(c, old);
}

static void parse_pools(struct ctx *c, json_t *root, struct gw_config *cfg)
{
	json_t *arr = get_arr(c, root, "pools");
	size_t old, i;

	if (!get(root, "pools")) {
		err_key(c, "pools", "required: at least one pool");
		return;
	}
	if (!arr)
		return;
	if (json_array_size(arr) == 0) {
		err_key(c, "pools", "must have at least one pool");
		return;
	}
	cfg->n_pools = json_array_size(arr);
	cfg->pools = xcalloc(c, cfg->n_pools, sizeof(*cfg->pools));
	if (!cfg->pools) {
		cfg->n_pools = 0;
		return;
	}
	struct name_map names = { 0 };
	name_map_init(c, &names, cfg->n_pools);
	old = path_push_key(c, "pools");
	for (i = 0; i < cfg->n_pools; i++) {
		size_t o = path_push_idx(c, i);

		parse_elem(c, &pool_table, json_array_get(arr, i), &cfg->pools[i]);
		size_t k = cfg->pools[i].name && names.key ?
			name_map_put(&names, cfg->pools[i].name, i) : SIZE_MAX;
		if (k != SIZE_MAX)
			err_key(c, "name", "duplicate pool name \"%.64s\" (also pools[%zu])",
				cfg->pools[i].name, k);
		path_pop(c, o);
	}
	name_map_free(&names);
	path_pop(c, old);
	check_same_backends(c, cfg);
}

static void listener_check(struct ctx *c, json_t *j, void *base)
{
	struct gw_listener_cfg *l = base;

	if (!l->name && !get(j, "name") && l->addr.text)
		l->name = xstrdup(c, l->addr.text);
	if (l->pool)
		check_pool_ref(c, "pool", l->pool);
	else if (!get(j, "pool"))
		l->pool = first_pool_name(c);
	l->tls = parse_listener_tls(c, j);
}

static void parse_listeners(struct ctx *c, json_t *root, struct gw_config *cfg)
{
	json_t *arr = get_arr(c, root, "listeners");
	size_t old, i;

	if (!get(root, "listeners")) {
		/* the documented default: the listener table's defaults, on the first pool */
		cfg->listeners = xcalloc(c, 1, sizeof(*cfg->listeners));
		if (!cfg->listeners)
			return;
		cfg->n_listeners = 1;
		table_defaults(c, &listener_table, &cfg->listeners[0]);
		cfg->listeners[0].name = xstrdup(c, "default");
		cfg->listeners[0].pool = first_pool_name(c);
		return;
	}
	if (!arr)
		return;
	if (json_array_size(arr) == 0) {
		err_key(c, "listeners",
			"must have at least one listener (omit it for the default)");
		return;
	}
	cfg->n_listeners = json_array_size(arr);
	cfg->listeners = xcalloc(c, cfg->n_listeners, sizeof(*cfg->listeners));
	if (!cfg->listeners) {
		cfg->n_listeners = 0;
		return;
	}
	old = path_push_key(c, "listeners");
	for (i = 0; i < cfg->n_listeners; i++) {
		struct gw_listener_cfg *l = &cfg->listeners[i];
		size_t o = path_push_idx(c, i);

		parse_elem(c, &listener_table, json_array_get(arr, i), l);
		for (size_t k = 0; k < i; k++) {
			if (l->name && cfg->listeners[k].name &&
			    !strcmp(cfg->listeners[k].name, l->name)) {
				err_key(c, "name",
					"duplicate listener name \"%.64s\" (also listeners[%zu])",
					l->name, k);
				break;
			}
		}
		for (size_t k = 0; k < i; k++) {
			if (gw_addr_same(&cfg->listeners[k].addr, &l->addr)) {
				err_key(c, "listen", "same address as listeners[%zu]", k);
				break;
			}
		}
		path_pop(c, o);
	}
	path_pop(c, old);
}

static void user_check(struct ctx *c, json_t *j, void *base)
{
	struct gw_user_cfg *u = base;

	(void)j;
	if (u->password_hash && !gw_pw_hash_is_valid(u->password_hash))
		err_key(c, "password_hash",
			"not a qgate password hash (expected $qgate$pbkdf2-sha256$ITER$SALT$HASH "
			"as printed by qgate --hash-password)");
	if (u->pools) {
		size_t old = path_push_key(c, "pools");

		for (size_t i = 0; i < u->n_pools; i++) {
			size_t o = path_push_idx(c, i);

			if (u->pools[i] && !gw_cfg_pool(c->cfg, u->pools[i]))
				err_at(c, "unknown pool \"%.64s\"", u->pools[i]);
			path_pop(c, o);
		}
		path_pop(c, old);
	}
	if (u->default_pool && check_pool_ref(c, "pool", u->default_pool) && u->pools) {
		bool is_listed = false;

		for (size_t i = 0; i < u->n_pools; i++)
			is_listed |= u->pools[i] && !strcmp(u->pools[i], u->default_pool);
		if (!is_listed)
			err_key(c, "pool", "\"%.64s\" is not in this user's pools",
				u->default_pool);
	}
}

static void auth_check(struct ctx *c, json_t *auth, void *base)
{
	struct gw_config *cfg = base;
	json_t *users = get_arr(c, auth, "users");

	if (!get(auth, "users"))
		err_key(c, "users", "required (omit \"auth\" to accept any credentials)");
	if (users) {
		size_t ou = path_push_key(c, "users");

		cfg->n_users = json_array_size(users);
		cfg->users = xcalloc(c, cfg->n_users, sizeof(*cfg->users));
		if (!cfg->users)
			cfg->n_users = 0;
		for (size_t i = 0; i < cfg->n_users; i++) {
			struct gw_user_cfg *u = &cfg->users[i];
			size_t o = path_push_idx(c, i);

			parse_elem(c, &user_table, json_array_get(users, i), u);
			for (size_t k = 0; k < i && u->name; k++) {
				if (cfg->users[k].name && !strcmp(cfg->users[k].name, u->name)) {
					err_key(c, "name",
						"duplicate user name \"%.64s\" (also users[%zu])",
						u->name, k);
					break;
				}
			}
			path_pop(c, o);
		}
		path_pop(c, ou);
	}
}

static void rule_check(struct ctx *c, json_t *j, void *base)
{
	struct gw_rule_cfg *r = base;
	bool has_match, has_action;

	if (r->pool)
		check_pool_ref(c, "pool", r->pool);
	has_match = get(j, "function") || get(j, "prefix") || get(j, "user");
	has_action = get(j, "pool") || get(j, "dedicated") || get(j, "timeout_ms") ||
		     get(j, "deny");
	if (!has_match)
		err_at(c, "needs at least one of function, prefix, user");
	if (!has_action)
		err_at(c, "needs at least one of pool, dedicated, timeout_ms, deny");
	if (r->is_deny && (get(j, "pool") || get(j, "dedicated") || get(j, "timeout_ms")))
		err_key(c, "deny", "a deny rule cannot also set pool, dedicated or timeout_ms");
	if (r->is_dedicated && r->pool) {
		const struct gw_pool_cfg *p = gw_cfg_pool(c->cfg, r->pool);

		if (p && p->mode == GW_MODE_SESSION)
			err_key(c, "dedicated", "pool \"%.64s\" is a session pool; dedicated "
				"dispatch is for query pools only", r->pool);
	}
}

static void parse_rules(struct ctx *c, json_t *root, struct gw_config *cfg)
{
	json_t *arr = get_arr(c, root, "rules");
	size_t old, i;

	if (!arr)
		return;
	cfg->n_rules = json_array_size(arr);
	cfg->rules = xcalloc(c, cfg->n_rules, sizeof(*cfg->rules));
	if (!cfg->rules) {
		cfg->n_rules = 0;
		return;
	}
	old = path_push_key(c, "rules");
	for (i = 0; i < cfg->n_rules; i++) {
		size_t o = path_push_idx(c, i);

		parse_elem(c, &rule_table, json_array_get(arr, i), &cfg->rules[i]);
		path_pop(c, o);
	}
	path_pop(c, old);
}

static void stats_check(struct ctx *c, json_t *o, void *base)
{
	struct gw_config *cfg = base;

	/* a pointer, not a struct member: NULL is what says "no stats endpoint" */
	cfg->stats_listen = xcalloc(c, 1, sizeof(*cfg->stats_listen));
	if (cfg->stats_listen &&
	    !get_addr(c, o, "listen", 0, "127.0.0.1:8080", cfg->stats_listen)) {
		free(cfg->stats_listen);
		cfg->stats_listen = NULL;
	}
	if (get(o, "token") && get(o, "token_file")) {
		err_at(c, "give only one of token, token_file");
	} else if (get(o, "token")) {
		get_str(c, o, "token", 0, &cfg->stats_token);
	} else if (get(o, "token_file")) {
		get_secret_file(c, o, "token_file", &cfg->stats_token);
	}
	if (cfg->stats_token && !cfg->stats_token[0])
		err_key(c, "token", "must not be empty");
}

static void limits_check(struct ctx *c, json_t *o, void *base)
{
	struct gw_limits_cfg *l = base;

	if ((l->rx_buffers & (l->rx_buffers - 1)) != 0)
		err_key(c, "rx_buffers", "must be a power of two (64..32768)");
	/* not given: at least one message, whatever max_message_bytes says */
	if (!get(o, "max_buffered_bytes") && l->max_buffered_bytes < l->max_message_bytes)
		l->max_buffered_bytes = l->max_message_bytes;
	if (l->max_buffered_bytes < l->max_message_bytes)
		err_key(c, "max_buffered_bytes", "must be at least max_message_bytes (%llu): "
			"one message is held whole while it waits",
			(unsigned long long)l->max_message_bytes);
}

static void log_check(struct ctx *c, json_t *o, void *base)
{
	struct gw_config *cfg = base;

	(void)o;
	if (cfg->audit_file)
		check_parent_dir(c, "audit_file", cfg->audit_file);
}

/* Each server is a numeric address with a port: the resolver cannot look up its own. */
static void resolver_check(struct ctx *c, json_t *o, void *base)
{
	struct gw_resolver_cfg *r = base;
	unsigned char buf[sizeof(struct in6_addr)];

	(void)o;
	for (size_t i = 0; i < r->n_servers; i++) {
		struct gw_addr a;
		bool ok = gw_addr_parse(r->servers[i], &a) == 0 && a.kind == GW_ADDR_TCP &&
			  a.host && (inet_pton(AF_INET, a.host, buf) == 1 ||
				     inet_pton(AF_INET6, a.host, buf) == 1);
		gw_addr_free(&a);
		if (!ok)
			err_key(c, "servers", "\"%s\" is not a numeric \"ip:port\"",
				r->servers[i]);
	}
}

/* Pools first: listeners, users and rules name them. */
static void top_check(struct ctx *c, json_t *root, void *base)
{
	struct gw_config *cfg = base;
	json_t *auth;

	parse_pools(c, root, cfg);
	parse_listeners(c, root, cfg);
	auth = get_obj(c, root, "auth");
	if (auth) {
		cfg->has_auth = true;
		parse_sub(c, "auth", &auth_table, auth, cfg);
	}
	parse_rules(c, root, cfg);

	for (size_t i = 0; cfg->stats_listen && i < cfg->n_listeners; i++) {
		if (gw_addr_same(cfg->stats_listen, &cfg->listeners[i].addr)) {
			size_t old = path_push_key(c, "stats");

			err_key(c, "listen", "same address as listeners[%zu]", i);
			path_pop(c, old);
			break;
		}
	}
}

/*
 * Sections are parsed in dependency order (pools before the things that name them), but an
 * operator reads the file top to bottom: stable-sort the error lines by where their top-level
 * key sits in the file. Lines whose key is not in the file ("pools: required") go first.
 */
static void sort_errors(struct ctx *c, json_t *root)
{
	struct line { const char *p; size_t n; long rank; } *lines;
	size_t n_lines = 0, o = 0;
	char *out;

	if (!c->err || c->n_err < 2)
		return;
	lines = calloc(c->n_err + 1, sizeof(*lines));
	out = malloc(c->err_len + 1);
	if (!lines || !out) {
		free(lines);
		free(out);
		return;	/* unsorted is still correct */
	}
	for (const char *p = c->err; p && *p && n_lines <= c->n_err;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		size_t klen = strcspn(p, ".[:");
		const char *key;
		json_t *v;
		long r = 0;

		lines[n_lines].rank = -1;
		json_object_foreach(root, key, v) {
			(void)v;
			if (strlen(key) == klen && !strncmp(key, p, klen)) {
				lines[n_lines].rank = r;
				break;
			}
			r++;
		}
		lines[n_lines].p = p;
		lines[n_lines++].n = n;
		p = nl ? nl + 1 : NULL;
	}
	for (size_t i = 1; i < n_lines; i++) {	/* insertion sort: stable, few lines */
		struct line t = lines[i];
		size_t k = i;

		for (; k > 0 && lines[k - 1].rank > t.rank; k--)
			lines[k] = lines[k - 1];
		lines[k] = t;
	}
	for (size_t i = 0; i < n_lines; i++) {
		if (i)
			out[o++] = '\n';
		memcpy(out + o, lines[i].p, lines[i].n);
		o += lines[i].n;
	}
	out[o] = '\0';
	free(lines);
	free(c->err);
	c->err = out;
	c->err_len = o;
	c->err_cap = c->err_len + 1;
}

/* Parse a decoded document (or report the decode error) and hand back config or errors. */
/* Names come from whoever wrote the file: each is escaped once here, so no log line can be
 * forged by a name holding a newline or a quote (an unnamed one prints as "-"); one longer
 * than CFG_MAX_LOG_NAME escaped is cut, still well-formed, and ends ...". */
static char *log_name(struct ctx *c, const char *name)
{
	char *v = gw_log_value_dup(name ? name : "-");
	size_t n = v ? strlen(v) : 0;

	if (!v) {
		c->is_oom = true;
	} else if (n > CFG_MAX_LOG_NAME && v[0] == '"') {
		gw_log_value(v, CFG_MAX_LOG_NAME - 3, name);	/* quoted and closed, shorter */
		n = strlen(v);
		memcpy(v + n - 1, "...\"", 5);
	} else if (n > CFG_MAX_LOG_NAME) {
		memcpy(v + CFG_MAX_LOG_NAME - 3, "...", 4);	/* a plain token: '.' is plain */
	}
	return v;
}

static void set_log_names(struct ctx *c, struct gw_config *cfg)
{
	for (size_t i = 0; cfg->listeners && i < cfg->n_listeners; i++)
		cfg->listeners[i].log_name = log_name(c, cfg->listeners[i].name);
	for (size_t i = 0; cfg->pools && i < cfg->n_pools; i++) {
		struct gw_pool_cfg *p = &cfg->pools[i];

		p->log_name = log_name(c, p->name);
		for (size_t k = 0; p->backends && k < p->n_backends; k++)
			p->backends[k].log_name = log_name(c, p->backends[k].name);
	}
}

static struct gw_config *finish(struct ctx *c, json_t *root, const json_error_t *jerr,
				const char *name, char **errs)
{
	struct gw_config *cfg = NULL;

	if (!root) {
		char line[512];

		if (jerr->line > 0)
			snprintf(line, sizeof(line), "%s:%d:%d: %s", name, jerr->line,
				 jerr->column, jerr->text);
		else
			snprintf(line, sizeof(line), "%s: %s", name, jerr->text);
		err_append(c, line);
		c->n_err++;
	} else if (!json_is_object(root)) {
		err_at(c, "the configuration must be a JSON object");
	} else {
		cfg = xcalloc(c, 1, sizeof(*cfg));
		if (cfg) {
			c->cfg = cfg;
			table_defaults(c, &top_table, cfg);
			table_parse(c, &top_table, root, cfg);
			if (!c->n_err)
				set_log_names(c, cfg);
			sort_errors(c, root);
		}
	}
	json_decref(root);
	if (c->is_oom) {
		err_append(c, "out of memory");
		c->n_err++;
	}
	if (c->n_err) {
		gw_cfg_free(cfg);
		cfg = NULL;
		if (errs && c->err) {
			*errs = c->err;
			c->err = NULL;
		} else if (errs) {
			*errs = strdup("out of memory");
		}
	} else if (errs) {
		*errs = NULL;
	}
	free(c->err);
	return cfg;
}

struct gw_config *gw_cfg_parse(const char *json, const char *name, char **errs)
{
	struct ctx c = { 0 };
	json_error_t jerr;
	json_t *root;

	if (!name)
		name = "(config)";
	memset(&jerr, 0, sizeof(jerr));
	root = json ? json_loads(json, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!json)
		snprintf(jerr.text, sizeof(jerr.text), "no text");
	return finish(&c, root, &jerr, name, errs);
}

struct gw_config *gw_cfg_load(const char *path, char **errs)
{
	struct ctx c = { 0 };
	struct gw_config *cfg;
	json_error_t jerr;
	struct stat st;
	json_t *root = NULL;
	char *buf = NULL, *dir = NULL;
	const char *slash;
	size_t len = 0;
	int fd = -1, rc = 0;

	memset(&jerr, 0, sizeof(jerr));
	if (!path) {
		if (errs)
			*errs = strdup("no configuration file given");
		return NULL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
	} else if ((uint64_t)st.st_size > CFG_MAX_FILE_BYTES) {
		rc = -EFBIG;
	} else {
		buf = malloc((size_t)st.st_size + 1);
		if (!buf)
			rc = -ENOMEM;
		for (int guard = 0; buf && guard < 100000; guard++) {
			ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = -errno;
				break;
			}
			if (n == 0 || (len += (size_t)n) == (size_t)st.st_size)
				break;
		}
	}
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		snprintf(jerr.text, sizeof(jerr.text), "cannot read: %s",
			 rc == -EINVAL ? "not a regular file" : strerror(-rc));
		free(buf);
		return finish(&c, NULL, &jerr, path, errs);
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);

	/* relative file names in the config are relative to the config's own directory */
	slash = strrchr(path, '/');
	if (slash) {
		dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
		if (!dir)
			c.is_oom = true;
		c.base_dir = dir;
	}
	cfg = finish(&c, root, &jerr, path, errs);
	free(dir);
	if (cfg) {
		cfg->source = buf;	/* what a reload compares (main.c) */
		cfg->source_len = len;
		cfg->has_secret_files = c.has_secret_files;
	} else {
		free(buf);
	}
	return cfg;
}

/* ---------------------------------------------------------------------------------------- */
/* Freeing and lookups                                                                      */

static void tls_free(struct gw_tls_cfg *t)
{
	if (!t)
		return;
	free(t->cert_file);
	free(t->key_file);
	free(t->client_ca_file);
	free(t->ca_file);
	free(t->ciphers);
	free(t);
}

void gw_cfg_free(struct gw_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; cfg->listeners && i < cfg->n_listeners; i++) {
		struct gw_listener_cfg *l = &cfg->listeners[i];

		free(l->name);
		free(l->log_name);
		gw_addr_free(&l->addr);
		free(l->pool);
		tls_free(l->tls);
	}
	free(cfg->listeners);
	for (size_t i = 0; cfg->users && i < cfg->n_users; i++) {
		struct gw_user_cfg *u = &cfg->users[i];

		free(u->name);
		free(u->password_hash);
		free_str_list(u->pools);
		free_str_list(u->allow);
		free(u->default_pool);
	}
	free(cfg->users);
	for (size_t i = 0; cfg->pools && i < cfg->n_pools; i++) {
		struct gw_pool_cfg *p = &cfg->pools[i];

		for (size_t k = 0; p->backends && k < p->n_backends; k++) {
			struct gw_backend_cfg *b = &p->backends[k];

			free(b->name);
			free(b->log_name);
			gw_addr_free(&b->addr);
			free(b->user);
			if (b->password)	/* secrets do not linger in freed memory */
				OPENSSL_cleanse(b->password, strlen(b->password));
			free(b->password);
			tls_free(b->tls);
		}
		free(p->backends);
		free(p->name);
		free(p->log_name);
		free(p->health.query);
	}
	free(cfg->pools);
	for (size_t i = 0; cfg->rules && i < cfg->n_rules; i++) {
		free(cfg->rules[i].function);
		free(cfg->rules[i].prefix);
		free(cfg->rules[i].user);
		free(cfg->rules[i].pool);
	}
	free(cfg->rules);
	if (cfg->stats_listen) {
		gw_addr_free(cfg->stats_listen);
		free(cfg->stats_listen);
	}
	free_str_list(cfg->resolver.servers);
	free(cfg->audit_file);
	if (cfg->stats_token)
		OPENSSL_cleanse(cfg->stats_token, strlen(cfg->stats_token));
	free(cfg->stats_token);
	free(cfg->gateway_user);
	free(cfg->source);
	free(cfg);
}

const struct gw_pool_cfg *gw_cfg_pool(const struct gw_config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_pools; i++) {
		if (cfg->pools[i].name && !strcmp(cfg->pools[i].name, name))
			return &cfg->pools[i];
	}
	return NULL;
}

const struct gw_user_cfg *gw_cfg_user(const struct gw_config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_users; i++) {
		if (cfg->users[i].name && !strcmp(cfg->users[i].name, name))
			return &cfg->users[i];
	}
	return NULL;
}
