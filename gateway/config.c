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
 */
#include "gateway/config.h"

#include <sys/stat.h>
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

#include "gateway/pwhash.h"

#define CFG_MAX_FILE_BYTES	(16u << 20)	/* a config bigger than this is a mistake */
#define CFG_MAX_SECRET_BYTES	4096		/* password_file */
#define CFG_MAX_WORKERS		1024
#define CFG_MAX_WEIGHT		1000000
#define CFG_MAX_CONNECTIONS	1000
#define CFG_MIN_MSG_BYTES	1024ull
#define CFG_MAX_MSG_BYTES	(1ull << 40)
#define CFG_MIN_CLIENT_BUF	4096ull

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

static void check_keys(struct ctx *c, json_t *obj, const char *const *known)
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
		for (size_t i = 0; known[i]; i++) {
			size_t d;

			if (!strcmp(key, known[i])) {
				is_known = true;
				break;
			}
			d = edit_distance(key, known[i]);
			if (d < best && d < strlen(known[i])) {
				best = d;
				hint = known[i];
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

/* ---------------------------------------------------------------------------------------- */
/* Typed getters. Each leaves *out (the default) alone when the key is absent or null.      */

enum {
	F_REQ = 1,		/* absent is an error */
	F_EMPTY_OK = 2,		/* "" is accepted */
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

static void get_u32(struct ctx *c, json_t *obj, const char *key, long long min, long long max,
		    uint32_t *out)
{
	long long x;

	if (get_int(c, obj, key, min, max, &x))
		*out = (uint32_t)x;
}

static void get_u64(struct ctx *c, json_t *obj, const char *key, long long min, long long max,
		    uint64_t *out)
{
	long long x;

	if (get_int(c, obj, key, min, max, &x))
		*out = (uint64_t)x;
}

static void get_i(struct ctx *c, json_t *obj, const char *key, int min, int max, int *out)
{
	long long x;

	if (get_int(c, obj, key, min, max, &x))
		*out = (int)x;
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

static void get_ms(struct ctx *c, json_t *obj, const char *key, uint32_t *out)
{
	get_ms_min(c, obj, key, 0, out);
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
/* Sections                                                                                 */

static const char *const mode_names[] = { "query", "session", NULL };
static const char *const strategy_names[] = {
	"least_outstanding", "round_robin", "random_two", NULL
};
static const char *const connect_names[] = { "start", "lazy", NULL };
static const char *const level_names[] = { "error", "warn", "info", "debug", "trace", NULL };

static const char *const tls_version_names[] = { "1.2", "1.3", NULL };

/* "ciphers" and "min_version", on either side */
static void parse_tls_policy(struct ctx *c, json_t *j, struct gw_tls_cfg *t)
{
	int v = 0;

	t->min_version = 12;
	if (get_enum(c, j, "min_version", tls_version_names, &v))
		t->min_version = 12 + v;
	get_str(c, j, "ciphers", 0, &t->ciphers);
}

static struct gw_tls_cfg *parse_listener_tls(struct ctx *c, json_t *obj)
{
	static const char *const keys[] = {
		"cert_file", "key_file", "client_ca_file", "ciphers", "min_version", NULL
	};
	json_t *j = get_obj(c, obj, "tls");
	struct gw_tls_cfg *t;
	size_t old;

	if (!j)
		return NULL;
	t = xcalloc(c, 1, sizeof(*t));
	if (!t)
		return NULL;
	old = path_push_key(c, "tls");
	check_keys(c, j, keys);
	get_file(c, j, "cert_file", F_REQ, true, &t->cert_file);
	get_file(c, j, "key_file", F_REQ, true, &t->key_file);
	get_file(c, j, "client_ca_file", 0, true, &t->client_ca_file);
	parse_tls_policy(c, j, t);
	path_pop(c, old);
	return t;
}

static struct gw_tls_cfg *parse_backend_tls(struct ctx *c, json_t *obj)
{
	static const char *const keys[] = {
		"ca_file", "verify", "cert_file", "key_file", "ciphers", "min_version", NULL
	};
	json_t *j = get(obj, "tls");
	struct gw_tls_cfg *t;
	size_t old;

	if (!j || json_is_false(j))
		return NULL;
	if (!json_is_true(j) && !json_is_object(j)) {
		err_key(c, "tls", "must be an object, true, false or null");
		return NULL;
	}
	t = xcalloc(c, 1, sizeof(*t));
	if (!t)
		return NULL;
	t->is_verify = true;
	t->min_version = 12;
	if (json_is_true(j))	/* "tls": true = verify against the system CAs */
		return t;
	old = path_push_key(c, "tls");
	check_keys(c, j, keys);
	get_file(c, j, "ca_file", 0, true, &t->ca_file);
	get_bool(c, j, "verify", &t->is_verify);
	get_file(c, j, "cert_file", 0, true, &t->cert_file);
	get_file(c, j, "key_file", 0, true, &t->key_file);
	if (!get(j, "cert_file") != !get(j, "key_file"))
		err_at(c, "cert_file and key_file go together (client certificate)");
	parse_tls_policy(c, j, t);
	path_pop(c, old);
	return t;
}

static void parse_backend(struct ctx *c, json_t *j, struct gw_backend_cfg *b)
{
	static const char *const keys[] = {
		"name", "address", "user", "password", "password_env", "password_file",
		"connections", "weight", "tls", NULL
	};
	int n_src = !!get(j, "password") + !!get(j, "password_env") + !!get(j, "password_file");

	b->connections = 2;
	b->weight = 1;
	if (!json_is_object(j)) {
		err_at(c, "must be an object");
		return;
	}
	check_keys(c, j, keys);
	get_addr(c, j, "address", F_REQ, NULL, &b->addr);
	if (!get_str(c, j, "name", 0, &b->name) && !get(j, "name") && b->addr.text)
		b->name = xstrdup(c, b->addr.text);	/* default name: the address */
	get_name(c, j, "user", 0, &b->user);
	get_i(c, j, "connections", 1, CFG_MAX_CONNECTIONS, &b->connections);
	get_i(c, j, "weight", 1, CFG_MAX_WEIGHT, &b->weight);
	b->tls = parse_backend_tls(c, j);

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

static void parse_reconnect(struct ctx *c, json_t *obj, struct gw_reconnect_cfg *r)
{
	static const char *const keys[] = {
		"attempts", "delay_ms", "multiplier", "max_delay_ms", "jitter",
		"connect_timeout_ms", NULL
	};
	json_t *j = get_obj(c, obj, "reconnect");
	json_t *m;
	size_t old;

	if (!j)
		return;
	old = path_push_key(c, "reconnect");
	check_keys(c, j, keys);
	get_i(c, j, "attempts", -1, INT_MAX, &r->attempts);
	get_ms(c, j, "delay_ms", &r->delay_ms);
	get_ms(c, j, "max_delay_ms", &r->max_delay_ms);
	get_ms_min(c, j, "connect_timeout_ms", 1, &r->connect_timeout_ms);
	get_double(c, j, "jitter", 0.0, 1.0, &r->jitter);
	m = get(j, "multiplier");
	if (json_is_string(m) && !strcmp(json_string_value(m), "constant"))
		r->multiplier = 1.0;	/* PyKX's "constant" growth rule */
	else if (m && !json_is_number(m))
		err_key(c, "multiplier", "must be a number >= 1.0 or \"constant\"");
	else
		get_double(c, j, "multiplier", 1.0, 1e308, &r->multiplier);
	if (r->max_delay_ms < r->delay_ms)
		err_key(c, "max_delay_ms", "must be >= delay_ms (%u < %u)", r->max_delay_ms,
			r->delay_ms);
	path_pop(c, old);
}

static void parse_pool(struct ctx *c, json_t *j, struct gw_pool_cfg *p)
{
	static const char *const keys[] = {
		"name", "mode", "strategy", "backends", "queue", "query_timeout_ms", "reconnect",
		"health", "dedicated", "connect", "auth_passthrough", "idempotent", "pipeline", NULL
	};
	static const char *const queue_keys[] = { "max", "timeout_ms", NULL };
	static const char *const health_keys[] = { "interval_ms", "timeout_ms", "query", NULL };
	static const char *const ded_keys[] = { "max", "all", NULL };
	json_t *backends, *q, *h, *d;
	int mode = GW_MODE_QUERY, strategy = GW_STRATEGY_LEAST_OUTSTANDING, conn = 0;

	p->queue_max = 1000;
	p->queue_timeout_ms = 5000;
	p->reconnect = (struct gw_reconnect_cfg){
		.attempts = -1, .delay_ms = 500, .multiplier = 2.0, .max_delay_ms = 30000,
		.jitter = 0.2, .connect_timeout_ms = 2000,
	};
	p->health.interval_ms = 5000;
	p->health.timeout_ms = 1000;
	p->health.query = xstrdup(c, "::");
	p->dedicated_max = 256;
	if (!json_is_object(j)) {
		err_at(c, "must be an object");
		return;
	}
	check_keys(c, j, keys);
	get_str(c, j, "name", F_REQ, &p->name);
	if (get_enum(c, j, "mode", mode_names, &mode))
		p->mode = (enum gw_pool_mode)mode;
	if (get_enum(c, j, "strategy", strategy_names, &strategy))
		p->strategy = (enum gw_strategy)strategy;
	if (get_enum(c, j, "connect", connect_names, &conn))
		p->is_lazy = conn == 1;
	get_ms(c, j, "query_timeout_ms", &p->query_timeout_ms);

	backends = get_arr(c, j, "backends");
	if (!get(j, "backends")) {
		err_key(c, "backends", "required: at least one backend");
	} else if (backends && json_array_size(backends) == 0) {
		err_key(c, "backends", "must have at least one backend");
	} else if (backends) {
		size_t old = path_push_key(c, "backends");
		size_t i;
		json_t *b;

		p->n_backends = json_array_size(backends);
		p->backends = xcalloc(c, p->n_backends, sizeof(*p->backends));
		if (!p->backends)
			p->n_backends = 0;
		for (i = 0; i < p->n_backends; i++) {
			size_t o = path_push_idx(c, i);

			b = json_array_get(backends, i);
			parse_backend(c, b, &p->backends[i]);
			for (size_t k = 0; k < i && p->backends[i].name; k++) {
				if (p->backends[k].name &&
				    !strcmp(p->backends[k].name, p->backends[i].name)) {
					err_key(c, "name", "duplicate backend name \"%.64s\" "
						"(also backends[%zu])", p->backends[i].name, k);
					break;
				}
			}
			path_pop(c, o);
		}
		path_pop(c, old);
	}

	q = get_obj(c, j, "queue");
	if (q) {
		size_t old = path_push_key(c, "queue");

		check_keys(c, q, queue_keys);
		get_u32(c, q, "max", 0, UINT32_MAX, &p->queue_max);
		get_ms(c, q, "timeout_ms", &p->queue_timeout_ms);
		path_pop(c, old);
	}

	parse_reconnect(c, j, &p->reconnect);

	h = get_obj(c, j, "health");
	if (h) {
		size_t old = path_push_key(c, "health");

		check_keys(c, h, health_keys);
		get_ms(c, h, "interval_ms", &p->health.interval_ms);
		get_ms_min(c, h, "timeout_ms", 1, &p->health.timeout_ms);
		get_str(c, h, "query", 0, &p->health.query);
		path_pop(c, old);
	}

	d = get(j, "dedicated");
	if (json_is_boolean(d)) {	/* "dedicated": true = every sync request */
		p->is_dedicated = json_is_true(d);
	} else if (json_is_object(d)) {
		size_t old = path_push_key(c, "dedicated");

		check_keys(c, d, ded_keys);
		get_u32(c, d, "max", 0, UINT32_MAX, &p->dedicated_max);
		get_bool(c, d, "all", &p->is_dedicated);
		path_pop(c, old);
	} else if (d) {
		err_key(c, "dedicated",
			"must be an object {\"max\": N, \"all\": BOOL} or a boolean");
	}
	if (p->is_dedicated && p->mode == GW_MODE_SESSION)
		err_key(c, "dedicated", "dedicated dispatch is for query pools only");

	if (get_bool(c, j, "auth_passthrough", &p->is_auth_passthrough) &&
	    p->is_auth_passthrough && p->mode != GW_MODE_SESSION)
		err_key(c, "auth_passthrough", "requires \"mode\": \"session\"");
	if (json_object_get(j, "pipeline"))
		err_key(c, "pipeline", "removed: a backend that defers an answer (-30!) would "
			"have later answers paired with the wrong requests; raise \"connections\" "
			"for more requests in flight, and send deferring calls through a "
			"\"dedicated\" rule");
	if (get_bool(c, j, "idempotent", &p->is_idempotent) && p->is_idempotent &&
	    p->mode != GW_MODE_QUERY)
		err_key(c, "idempotent", "applies to \"mode\": \"query\" pools only");
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
	old = path_push_key(c, "pools");
	for (i = 0; i < cfg->n_pools; i++) {
		size_t o = path_push_idx(c, i);

		parse_pool(c, json_array_get(arr, i), &cfg->pools[i]);
		for (size_t k = 0; k < i && cfg->pools[i].name; k++) {
			if (cfg->pools[k].name && !strcmp(cfg->pools[k].name, cfg->pools[i].name)) {
				err_key(c, "name",
					"duplicate pool name \"%.64s\" (also pools[%zu])",
					cfg->pools[i].name, k);
				break;
			}
		}
		path_pop(c, o);
	}
	path_pop(c, old);
}

/* A "pool" reference: a string naming a pool that exists. */
static bool get_pool_ref(struct ctx *c, const struct gw_config *cfg, json_t *obj,
			 const char *key, char **out)
{
	if (!get_str(c, obj, key, 0, out))
		return false;
	if (!gw_cfg_pool(cfg, *out)) {
		err_key(c, key, "unknown pool \"%.64s\"", *out);
		return false;
	}
	return true;
}

static void parse_listener(struct ctx *c, const struct gw_config *cfg, json_t *j,
			   struct gw_listener_cfg *l)
{
	static const char *const keys[] = { "name", "listen", "pool", "tls", "compress", NULL };
	static const char *const compress_names[] = { "off", "remote", "always", NULL };
	int compress;

	if (!json_is_object(j)) {
		err_at(c, "must be an object");
		return;
	}
	check_keys(c, j, keys);
	if (get_enum(c, j, "compress", compress_names, &compress))
		l->compress = (enum gw_compress)compress;
	get_addr(c, j, "listen", 0, "127.0.0.1:5050", &l->addr);
	if (!get_str(c, j, "name", 0, &l->name) && !get(j, "name") && l->addr.text)
		l->name = xstrdup(c, l->addr.text);
	if (!get_pool_ref(c, cfg, j, "pool", &l->pool) && !get(j, "pool") && cfg->n_pools &&
	    cfg->pools[0].name)
		l->pool = xstrdup(c, cfg->pools[0].name);
	l->tls = parse_listener_tls(c, j);
}

static void parse_listeners(struct ctx *c, json_t *root, struct gw_config *cfg)
{
	json_t *arr = get_arr(c, root, "listeners");
	size_t old, i;

	if (!get(root, "listeners")) {
		/* the documented default: one plain listener on 127.0.0.1:5050, first pool */
		cfg->listeners = xcalloc(c, 1, sizeof(*cfg->listeners));
		if (!cfg->listeners)
			return;
		cfg->n_listeners = 1;
		cfg->listeners[0].name = xstrdup(c, "default");
		if (gw_addr_parse("127.0.0.1:5050", &cfg->listeners[0].addr) < 0)
			c->is_oom = true;
		if (cfg->n_pools && cfg->pools[0].name)
			cfg->listeners[0].pool = xstrdup(c, cfg->pools[0].name);
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

		parse_listener(c, cfg, json_array_get(arr, i), l);
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

static void parse_user(struct ctx *c, const struct gw_config *cfg, json_t *j,
		       struct gw_user_cfg *u)
{
	static const char *const keys[] = {
		"name", "password_hash", "pools", "admin", "allow", "pool", NULL
	};

	if (!json_is_object(j)) {
		err_at(c, "must be an object");
		return;
	}
	check_keys(c, j, keys);
	get_name(c, j, "name", F_REQ, &u->name);
	if (get_str(c, j, "password_hash", F_REQ, &u->password_hash) &&
	    !gw_pw_hash_is_valid(u->password_hash))
		err_key(c, "password_hash",
			"not a qgate password hash (expected $qgate$pbkdf2-sha256$ITER$SALT$HASH "
			"as printed by qgate --hash-password)");
	get_str_list(c, j, "pools", &u->pools, &u->n_pools);
	if (u->pools) {
		size_t old = path_push_key(c, "pools");

		for (size_t i = 0; i < u->n_pools; i++) {
			size_t o = path_push_idx(c, i);

			if (u->pools[i] && !gw_cfg_pool(cfg, u->pools[i]))
				err_at(c, "unknown pool \"%.64s\"", u->pools[i]);
			path_pop(c, o);
		}
		path_pop(c, old);
	}
	get_bool(c, j, "admin", &u->is_admin);
	get_str_list(c, j, "allow", &u->allow, &u->n_allow);
	if (get_pool_ref(c, cfg, j, "pool", &u->default_pool) && u->pools) {
		bool is_listed = false;

		for (size_t i = 0; i < u->n_pools; i++)
			is_listed |= u->pools[i] && !strcmp(u->pools[i], u->default_pool);
		if (!is_listed)
			err_key(c, "pool", "\"%.64s\" is not in this user's pools",
				u->default_pool);
	}
}

static void parse_auth(struct ctx *c, json_t *root, struct gw_config *cfg)
{
	static const char *const keys[] = { "users", NULL };
	json_t *auth = get_obj(c, root, "auth");
	json_t *users;
	size_t old, i;

	if (!auth)
		return;
	cfg->has_auth = true;
	old = path_push_key(c, "auth");
	check_keys(c, auth, keys);
	users = get_arr(c, auth, "users");
	if (!get(auth, "users"))
		err_key(c, "users", "required (omit \"auth\" to accept any credentials)");
	if (users) {
		size_t ou = path_push_key(c, "users");

		cfg->n_users = json_array_size(users);
		cfg->users = xcalloc(c, cfg->n_users, sizeof(*cfg->users));
		if (!cfg->users)
			cfg->n_users = 0;
		for (i = 0; i < cfg->n_users; i++) {
			struct gw_user_cfg *u = &cfg->users[i];
			size_t o = path_push_idx(c, i);

			parse_user(c, cfg, json_array_get(users, i), u);
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
	path_pop(c, old);
}

static void parse_rule(struct ctx *c, const struct gw_config *cfg, json_t *j,
		       struct gw_rule_cfg *r)
{
	static const char *const keys[] = {
		"function", "prefix", "user", "pool", "dedicated", "timeout_ms", "deny", NULL
	};
	bool has_match, has_action;

	if (!json_is_object(j)) {
		err_at(c, "must be an object");
		return;
	}
	check_keys(c, j, keys);
	get_str(c, j, "function", 0, &r->function);
	get_str(c, j, "prefix", 0, &r->prefix);
	get_str(c, j, "user", 0, &r->user);
	get_pool_ref(c, cfg, j, "pool", &r->pool);
	get_bool(c, j, "dedicated", &r->is_dedicated);
	get_ms(c, j, "timeout_ms", &r->timeout_ms);
	get_bool(c, j, "deny", &r->is_deny);

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
		const struct gw_pool_cfg *p = gw_cfg_pool(cfg, r->pool);

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

		parse_rule(c, cfg, json_array_get(arr, i), &cfg->rules[i]);
		path_pop(c, o);
	}
	path_pop(c, old);
}

static void parse_top(struct ctx *c, json_t *root, struct gw_config *cfg)
{
	static const char *const keys[] = {
		"listeners", "auth", "pools", "rules", "stats", "limits", "log", "workers",
		"gateway_user", NULL
	};
	static const char *const stats_keys[] = {
		"listen", "max_connections", "timeout_ms", "token", "token_file", NULL
	};
	static const char *const limits_keys[] = {
		"max_clients", "max_message_bytes", "handshake_timeout_ms",
		"client_idle_timeout_ms", "max_pipeline", "client_buffer_bytes",
		"shutdown_grace_ms", "drain_timeout_ms", "rx_buffers", "rx_buffer_bytes",
		"stream_threshold_bytes", "client_output_timeout_ms", "ring_entries",
		"login_failures_max", "login_failure_window_ms", "login_threads",
		"message_timeout_ms", "max_buffered_bytes", NULL
	};
	static const char *const log_keys[] = { "level", "audit_file", NULL };
	json_t *o;
	int level = GW_LOG_INFO;

	check_keys(c, root, keys);
	get_i(c, root, "workers", 1, CFG_MAX_WORKERS, &cfg->workers);
	get_name(c, root, "gateway_user", 0, &cfg->gateway_user);

	o = get_obj(c, root, "limits");
	if (o) {
		size_t old = path_push_key(c, "limits");
		struct gw_limits_cfg *l = &cfg->limits;

		check_keys(c, o, limits_keys);
		get_u32(c, o, "max_clients", 1, UINT32_MAX, &l->max_clients);
		get_u64(c, o, "max_message_bytes", CFG_MIN_MSG_BYTES, CFG_MAX_MSG_BYTES,
			&l->max_message_bytes);
		get_ms_min(c, o, "handshake_timeout_ms", 1, &l->handshake_timeout_ms);
		get_ms(c, o, "client_idle_timeout_ms", &l->client_idle_timeout_ms);
		get_u32(c, o, "max_pipeline", 1, UINT32_MAX, &l->max_pipeline);
		get_u64(c, o, "client_buffer_bytes", CFG_MIN_CLIENT_BUF, CFG_MAX_MSG_BYTES,
			&l->client_buffer_bytes);
		get_ms(c, o, "shutdown_grace_ms", &l->shutdown_grace_ms);
		get_ms_min(c, o, "drain_timeout_ms", 1, &l->drain_timeout_ms);
		get_u32(c, o, "rx_buffers", 64, 32768, &l->rx_buffers);
		if ((l->rx_buffers & (l->rx_buffers - 1)) != 0)
			err_key(c, "rx_buffers", "must be a power of two (64..32768)");
		get_u32(c, o, "rx_buffer_bytes", 4096, 1u << 20, &l->rx_buffer_bytes);
		get_u64(c, o, "stream_threshold_bytes", 65536, CFG_MAX_MSG_BYTES,
			&l->stream_threshold_bytes);
		get_ms(c, o, "client_output_timeout_ms", &l->client_output_timeout_ms);
		get_u32(c, o, "ring_entries", 8, 32768, &l->ring_entries);
		get_u32(c, o, "login_failures_max", 1, UINT32_MAX, &l->login_failures_max);
		get_ms_min(c, o, "login_failure_window_ms", 1, &l->login_failure_window_ms);
		get_u32(c, o, "login_threads", 1, 64, &l->login_threads);
		get_ms(c, o, "message_timeout_ms", &l->message_timeout_ms);
		bool has_budget = get(o, "max_buffered_bytes") != NULL;
		get_u64(c, o, "max_buffered_bytes", CFG_MIN_MSG_BYTES, UINT64_MAX / 2,
			&l->max_buffered_bytes);
		/* not given: at least one message, whatever max_message_bytes says */
		if (!has_budget && l->max_buffered_bytes < l->max_message_bytes)
			l->max_buffered_bytes = l->max_message_bytes;
		if (l->max_buffered_bytes < l->max_message_bytes)
			err_key(c, "max_buffered_bytes", "must be at least max_message_bytes (%llu): "
				"one message is held whole while it waits",
				(unsigned long long)l->max_message_bytes);
		path_pop(c, old);
	}

	o = get_obj(c, root, "log");
	if (o) {
		size_t old = path_push_key(c, "log");

		check_keys(c, o, log_keys);
		if (get_enum(c, o, "level", level_names, &level))
			cfg->log_level = (enum gw_log_level)level;
		if (get_file(c, o, "audit_file", 0, false, &cfg->audit_file))
			check_parent_dir(c, "audit_file", cfg->audit_file);
		path_pop(c, old);
	}

	o = get_obj(c, root, "stats");
	if (o) {
		size_t old = path_push_key(c, "stats");

		check_keys(c, o, stats_keys);
		cfg->stats_listen = xcalloc(c, 1, sizeof(*cfg->stats_listen));
		if (cfg->stats_listen &&
		    !get_addr(c, o, "listen", 0, "127.0.0.1:8080", cfg->stats_listen)) {
			free(cfg->stats_listen);
			cfg->stats_listen = NULL;
		}
		get_u32(c, o, "max_connections", 1, 4096, &cfg->stats_max_connections);
		get_ms_min(c, o, "timeout_ms", 1, &cfg->stats_timeout_ms);
		if (get(o, "token") && get(o, "token_file")) {
			err_at(c, "give only one of token, token_file");
		} else if (get(o, "token")) {
			get_str(c, o, "token", 0, &cfg->stats_token);
		} else if (get(o, "token_file")) {
			get_secret_file(c, o, "token_file", &cfg->stats_token);
		}
		if (cfg->stats_token && !cfg->stats_token[0])
			err_key(c, "token", "must not be empty");
		path_pop(c, old);
	}

	parse_pools(c, root, cfg);
	parse_listeners(c, root, cfg);
	parse_auth(c, root, cfg);
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

static void set_defaults(struct ctx *c, struct gw_config *cfg)
{
	cfg->limits = (struct gw_limits_cfg){
		.max_clients = 10000,
		.max_message_bytes = 268435456,
		.handshake_timeout_ms = 5000,
		.client_idle_timeout_ms = 0,
		.max_pipeline = 1024,
		.client_buffer_bytes = 4u << 20,
		.shutdown_grace_ms = 5000,
		.drain_timeout_ms = 60000,
		.rx_buffers = 1024,
		.rx_buffer_bytes = 32768,
		.stream_threshold_bytes = 262144,
		.client_output_timeout_ms = 10000,
		.ring_entries = 1024,
		.login_failures_max = 10,
		.login_failure_window_ms = 60000,
		.login_threads = 2,
		.message_timeout_ms = 60000,
		.max_buffered_bytes = 1ull << 30,
	};
	cfg->stats_max_connections = 32;
	cfg->stats_timeout_ms = 5000;
	cfg->log_level = GW_LOG_INFO;
	cfg->workers = 1;
	cfg->gateway_user = xstrdup(c, "qgate");
}

/* Parse a decoded document (or report the decode error) and hand back config or errors. */
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
			set_defaults(c, cfg);
			parse_top(c, root, cfg);
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
	free(buf);

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
			gw_addr_free(&b->addr);
			free(b->user);
			if (b->password)	/* secrets do not linger in freed memory */
				OPENSSL_cleanse(b->password, strlen(b->password));
			free(b->password);
			tls_free(b->tls);
		}
		free(p->backends);
		free(p->name);
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
	free(cfg->audit_file);
	if (cfg->stats_token)
		OPENSSL_cleanse(cfg->stats_token, strlen(cfg->stats_token));
	free(cfg->stats_token);
	free(cfg->gateway_user);
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
