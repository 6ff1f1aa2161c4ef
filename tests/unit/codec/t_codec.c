/*
 * t_codec.c — shared helpers for the codec unit tests (see t_codec.h).
 */
#include "t_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint8_t *t_hex(const char *hex, size_t *len)
{
	size_t cap = strlen(hex) / 2 + 1, n = 0;
	uint8_t *b = malloc(cap);
	int hi = -1;

	cr_assert(b);
	for (const char *p = hex; *p; p++) {
		int v;

		if (*p == ' ' || *p == '\n')
			continue;
		v = hexval((unsigned char)*p);
		cr_assert(v >= 0, "bad hex char %c", *p);
		if (hi < 0) {
			hi = v;
		} else {
			b[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	cr_assert(hi < 0, "odd hex length");
	*len = n;
	return b;
}

void t_rng_seed(struct t_rng *r, uint64_t seed)
{
	r->s = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t t_rng_next(struct t_rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

uint64_t t_rng_below(struct t_rng *r, uint64_t n)
{
	return t_rng_next(r) % n;
}

static char *dup_range(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	cr_assert(d);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

size_t t_vectors_load(struct t_vector **out)
{
	const char *path = getenv("QIPC_VECTORS");
	struct t_vector *v = NULL;
	size_t n = 0, cap = 0;
	char line[8192];
	FILE *f;

	if (!path)
		path = "tests/data/q-ipc-vectors.tsv";
	f = fopen(path, "r");
	cr_assert(f, "cannot open vectors file %s", path);
	while (fgets(line, sizeof(line), f)) {
		char *t1, *t2, *t3;

		cr_assert(strchr(line, '\n') || feof(f), "vector line too long");
		if (line[0] == '#' || strncmp(line, "source\t", 7) == 0 || line[0] == '\n')
			continue;
		t1 = strchr(line, '\t');
		cr_assert(t1, "malformed vector line: %s", line);
		t2 = strchr(t1 + 1, '\t');
		cr_assert(t2, "malformed vector line: %s", line);
		t3 = strchr(t2 + 1, '\t');
		cr_assert(t3, "malformed vector line: %s", line);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = realloc(v, cap * sizeof(*v));
			cr_assert(v);
		}
		v[n].source = dup_range(line, (size_t)(t1 - line));
		v[n].meaning = dup_range(t1 + 1, (size_t)(t2 - t1 - 1));
		*t3 = 0;
		v[n].bytes = t_hex(t2 + 1, &v[n].len);
		n++;
	}
	fclose(f);
	*out = v;
	return n;
}

void t_vectors_free(struct t_vector *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].source);
		free(v[i].meaning);
		free(v[i].bytes);
	}
	free(v);
}
