/*
 * pwhash.c — PBKDF2-HMAC-SHA256 password hashes in qgate's text form
 * "$qgate$pbkdf2-sha256$ITER$SALT$HASH" (standard base64 with padding). The parser is
 * strict so that a placeholder or a plain-text password in a config is an error, never a
 * hash that no password matches.
 */
#include "gateway/pwhash.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define PW_PREFIX	"$qgate$pbkdf2-sha256$"
#define PW_SALT_BYTES	16
#define PW_HASH_BYTES	32
#define PW_MAX_SALT	64
#define PW_ITER_MIN	1000u
#define PW_ITER_MAX	10000000u

struct pw_parsed {
	uint32_t iter;
	unsigned char salt[PW_MAX_SALT];
	size_t salt_len;
	unsigned char hash[PW_HASH_BYTES];
};

static int b64_val(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Strict standard base64 with padding; -1 when malformed or longer than cap. */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
	size_t o = 0;

	if (n == 0 || n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad) {
				return -1;	/* data after '=' */
			} else if ((v[k] = b64_val(s[i + k])) < 0) {
				return -1;
			}
		}
		if (o + 3 - (size_t)pad > cap)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

static bool pw_parse(const char *s, struct pw_parsed *p)
{
	const char *iter_s, *salt_s, *hash_s, *end;
	unsigned long iter = 0;
	long n;

	if (!s || strncmp(s, PW_PREFIX, strlen(PW_PREFIX)))
		return false;
	iter_s = s + strlen(PW_PREFIX);
	salt_s = strchr(iter_s, '$');
	if (!salt_s || salt_s == iter_s || salt_s - iter_s > 9)
		return false;
	for (const char *q = iter_s; q < salt_s; q++) {
		if (!isdigit((unsigned char)*q))
			return false;
		iter = iter * 10 + (unsigned long)(*q - '0');
	}
	if (iter < PW_ITER_MIN || iter > PW_ITER_MAX)
		return false;
	salt_s++;
	hash_s = strchr(salt_s, '$');
	if (!hash_s)
		return false;
	n = b64_decode(salt_s, (size_t)(hash_s - salt_s), p->salt, sizeof(p->salt));
	if (n < 8)
		return false;
	p->salt_len = (size_t)n;
	hash_s++;
	end = hash_s + strlen(hash_s);
	if (b64_decode(hash_s, (size_t)(end - hash_s), p->hash, sizeof(p->hash)) != PW_HASH_BYTES)
		return false;
	p->iter = (uint32_t)iter;
	return true;
}

uint32_t gw_pw_iterations(const char *stored_hash)
{
	struct pw_parsed p;

	return pw_parse(stored_hash, &p) ? p.iter : 0;
}

bool gw_pw_hash_is_valid(const char *stored_hash)
{
	struct pw_parsed p;

	return pw_parse(stored_hash, &p);
}

char *gw_pw_hash_iter(const char *password, size_t password_len, uint32_t iter)
{
	unsigned char salt[PW_SALT_BYTES];
	unsigned char hash[PW_HASH_BYTES];
	unsigned char salt_b64[4 * ((PW_SALT_BYTES + 2) / 3) + 1];
	unsigned char hash_b64[4 * ((PW_HASH_BYTES + 2) / 3) + 1];
	size_t cap;
	char *out;

	if (!password || password_len > INT_MAX || iter < PW_ITER_MIN || iter > PW_ITER_MAX)
		return NULL;
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return NULL;
	if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, sizeof(salt), (int)iter,
			      EVP_sha256(), sizeof(hash), hash) != 1)
		return NULL;
	EVP_EncodeBlock(salt_b64, salt, sizeof(salt));
	EVP_EncodeBlock(hash_b64, hash, sizeof(hash));
	OPENSSL_cleanse(hash, sizeof(hash));
	cap = strlen(PW_PREFIX) + 12 + sizeof(salt_b64) + sizeof(hash_b64) + 2;
	out = malloc(cap);
	if (out)
		snprintf(out, cap, "%s%u$%s$%s", PW_PREFIX, iter, (const char *)salt_b64,
			 (const char *)hash_b64);
	return out;
}

char *gw_pw_hash(const char *password)
{
	if (!password)
		return NULL;
	return gw_pw_hash_iter(password, strlen(password), GW_PW_ITER_DEFAULT);
}

bool gw_pw_verify(const char *stored_hash, const char *password, size_t password_len)
{
	unsigned char got[PW_HASH_BYTES];
	struct pw_parsed p;
	bool is_ok;

	if (!password || password_len > INT_MAX || !pw_parse(stored_hash, &p))
		return false;
	if (PKCS5_PBKDF2_HMAC(password, (int)password_len, p.salt, (int)p.salt_len, (int)p.iter,
			      EVP_sha256(), sizeof(got), got) != 1)
		return false;
	is_ok = CRYPTO_memcmp(got, p.hash, sizeof(got)) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	return is_ok;
}
