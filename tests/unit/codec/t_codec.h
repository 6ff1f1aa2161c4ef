/*
 * t_codec.h — helpers for the codec unit tests: hex decoding, a seeded PRNG, and the
 * loader for the protocol page's test vectors (tests/data/q-ipc-vectors.tsv).
 */
#ifndef GW_TESTS_UNIT_CODEC_T_CODEC_H
#define GW_TESTS_UNIT_CODEC_T_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Decode hex (spaces allowed) into a malloc'd buffer; aborts the test on bad input. */
uint8_t *t_hex(const char *hex, size_t *len);

/* xorshift64* PRNG: deterministic for a fixed seed. */
struct t_rng {
	uint64_t s;
};
void t_rng_seed(struct t_rng *r, uint64_t seed);
uint64_t t_rng_next(struct t_rng *r);
uint64_t t_rng_below(struct t_rng *r, uint64_t n);	/* uniform in [0, n), n > 0 */

struct t_vector {
	char *source;
	char *meaning;
	uint8_t *bytes;
	size_t len;
};

/* Load every vector row; returns the count (aborts the test if the file is unreadable). */
size_t t_vectors_load(struct t_vector **out);
void t_vectors_free(struct t_vector *v, size_t n);

#endif /* GW_TESTS_UNIT_CODEC_T_CODEC_H */
