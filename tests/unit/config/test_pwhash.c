/*
 * test_pwhash.c — unit tests for gateway/pwhash.c: hashes verify, reject wrong passwords,
 * honour the given length, are salted, carry their iteration count, and match a known
 * PBKDF2-HMAC-SHA256 answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "gateway/pwhash.h"

Test(pwhash, pw_hash_round_trip, .timeout = 60)
{
	char *h = gw_pw_hash("correct horse");
	char iter[16];

	cr_assert_not_null(h);
	cr_expect_eq(strncmp(h, "$qgate$pbkdf2-sha256$", 21), 0, "%s", h);
	snprintf(iter, sizeof(iter), "$%d$", GW_PW_ITER_DEFAULT);
	cr_expect_not_null(strstr(h, iter), "%s", h);
	cr_expect(gw_pw_hash_is_valid(h));
	cr_expect(gw_pw_verify(h, "correct horse", 13));
	cr_expect_not(gw_pw_verify(h, "correct horsf", 13));
	cr_expect_not(gw_pw_verify(h, "correct hors", 12));
	cr_expect_not(gw_pw_verify(h, "", 0));
	/* the length is honoured: a prefix of a longer buffer is what is checked */
	cr_expect(gw_pw_verify(h, "correct horse battery", 13));
	cr_expect_not(gw_pw_verify(NULL, "correct horse", 13));
	free(h);
}

Test(pwhash, pw_hash_is_salted)
{
	char *a = gw_pw_hash_iter("same", 4, 1000);
	char *b = gw_pw_hash_iter("same", 4, 1000);
	const char *sa, *sb;

	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_expect_str_neq(a, b);
	/* the salts differ, not only the encoding */
	sa = strrchr(a, '$');
	sb = strrchr(b, '$');
	cr_expect_neq(strcmp(sa, sb), 0);
	cr_expect(gw_pw_verify(a, "same", 4));
	cr_expect(gw_pw_verify(b, "same", 4));
	free(a);
	free(b);
}

Test(pwhash, pw_hash_iterations_are_embedded)
{
	char *h = gw_pw_hash_iter("pw", 2, 1234);
	char *edited;

	cr_assert_not_null(h);
	cr_expect_not_null(strstr(h, "$1234$"), "%s", h);
	cr_expect(gw_pw_verify(h, "pw", 2));
	/* the count is part of what is verified: a different count does not match */
	edited = strdup(h);
	cr_assert_not_null(edited);
	memcpy(strstr(edited, "$1234$"), "$1235$", 6);
	cr_expect(gw_pw_hash_is_valid(edited));
	cr_expect_not(gw_pw_verify(edited, "pw", 2));
	free(edited);
	/* a flipped bit in the stored hash fails */
	edited = strdup(h);
	cr_assert_not_null(edited);
	edited[strlen(edited) - 3] = edited[strlen(edited) - 3] == 'A' ? 'B' : 'A';
	cr_expect_not(gw_pw_verify(edited, "pw", 2));
	free(edited);
	cr_expect_null(gw_pw_hash_iter("pw", 2, 10));
	cr_expect_null(gw_pw_hash(NULL));
	free(h);
}

/* A known answer, so the format is PBKDF2-HMAC-SHA256 and not merely self-consistent. */
Test(pwhash, pw_verify_known_vector)
{
	/* salt "saltsaltsaltsalt", 1000 iterations, computed independently with Python's
	 * hashlib.pbkdf2_hmac('sha256', b'password', b'saltsaltsaltsalt', 1000) */
	const char *h = "$qgate$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA==$"
			"8nX7hwFEzIB8aPajJTYK8weHQc5Ngz0pFVAKvSu4jQA=";

	cr_expect(gw_pw_hash_is_valid(h));
	cr_expect(gw_pw_verify(h, "password", 8));
	cr_expect_not(gw_pw_verify(h, "Password", 8));
}
