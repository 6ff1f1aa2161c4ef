/*
 * pwhash — password hashes for auth.users[].password_hash and `qgate --hash-password`:
 * PBKDF2-HMAC-SHA256 from OpenSSL with a random 16-byte salt, in the text form
 * "$qgate$pbkdf2-sha256$<iter>$<salt b64>$<hash b64>". Each hash carries its own iteration
 * count, so the default may rise without invalidating stored hashes.
 *
 * Ownership: the hashing functions return a malloc'd string (caller frees) or NULL.
 * Thread: no shared state; any thread (auth.c verifies on its login threads). Hashing and
 * verifying are slow by design: call once per login, never per message.
 */
#ifndef GW_GATEWAY_PWHASH_H
#define GW_GATEWAY_PWHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Iteration count gw_pw_hash uses; each hash carries its own, so this may rise later. */
#define GW_PW_ITER_DEFAULT 60000

/* The longest password qgate hashes or accepts at login, in bytes. */
#define GW_PW_MAX_BYTES 512

/* Hash a NUL-terminated password with GW_PW_ITER_DEFAULT iterations; NULL on failure. */
char *gw_pw_hash(const char *password);

/* gw_pw_hash with an explicit length and iteration count (1000..10000000); NULL if out of range. */
char *gw_pw_hash_iter(const char *password, size_t password_len, uint32_t iter);

/*
 * true when the first password_len bytes of password match stored_hash. The comparison is
 * constant time; a malformed stored_hash never matches.
 */
bool gw_pw_verify(const char *stored_hash, const char *password, size_t password_len);

/* The iteration count a stored hash carries, or 0 when it is not a valid hash. */
uint32_t gw_pw_iterations(const char *stored_hash);

/* true when s has the shape of a gw_pw_hash result (prefix, iteration range, base64 parts). */
bool gw_pw_hash_is_valid(const char *s);

#endif /* GW_GATEWAY_PWHASH_H */
