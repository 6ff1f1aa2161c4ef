/*
 * test_addr.c — unit tests for gateway/addr.c: every accepted form of an address string
 * (host:port, [ipv6]:port, unix:PORT, q's unix://PORT, unix:/path) and the malformed ones
 * it refuses, leaving the struct zeroed.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "gateway/addr.h"

Test(addr, parse)
{
	struct gw_addr a;

	cr_assert_eq(gw_addr_parse("127.0.0.1:5050", &a), 0);
	cr_expect_eq(a.kind, GW_ADDR_TCP);
	cr_expect_str_eq(a.host, "127.0.0.1");
	cr_expect_eq(a.port, 5050);
	cr_expect_null(a.path);
	cr_expect_str_eq(a.text, "127.0.0.1:5050");
	gw_addr_free(&a);

	cr_assert_eq(gw_addr_parse("db-1.example.com:65535", &a), 0);
	cr_expect_str_eq(a.host, "db-1.example.com");
	cr_expect_eq(a.port, 65535);
	gw_addr_free(&a);

	cr_assert_eq(gw_addr_parse("[::1]:1", &a), 0);
	cr_expect_str_eq(a.host, "::1");
	cr_expect_eq(a.port, 1);
	gw_addr_free(&a);

	cr_assert_eq(gw_addr_parse("unix:5050", &a), 0);
	cr_expect_eq(a.kind, GW_ADDR_UNIX_ABSTRACT);
	cr_expect_eq(a.port, 5050);
	cr_expect_str_eq(a.path, "/tmp/kx.5050");
	cr_expect_null(a.host);
	gw_addr_free(&a);

	cr_assert_eq(gw_addr_parse("unix://5051", &a), 0);	/* q's hopen spelling */
	cr_expect_eq(a.kind, GW_ADDR_UNIX_ABSTRACT);
	cr_expect_str_eq(a.path, "/tmp/kx.5051");
	cr_expect_str_eq(a.text, "unix://5051");
	gw_addr_free(&a);

	cr_assert_eq(gw_addr_parse("unix:/run/qgate.sock", &a), 0);
	cr_expect_eq(a.kind, GW_ADDR_UNIX_PATH);
	cr_expect_str_eq(a.path, "/run/qgate.sock");
	gw_addr_free(&a);

	static const char *const bad[] = {
		"", "5050", "host", "host:", ":80", "h:0", "h:65536", "h:123456", "h:-1", "h: 80",
		"h:80x", "::1:80", "[::1]", "[]:80", "[zz]:80", "unix:", "unix:0", "unix:x1",
		"unix:65536", "bad host:80", "h/x:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(gw_addr_parse(bad[i], &a), -EINVAL, "accepted \"%s\"", bad[i]);
		cr_expect_null(a.text);
	}
	char longpath[200];

	memset(longpath, 'a', sizeof(longpath));
	memcpy(longpath, "unix:/", 6);
	longpath[sizeof(longpath) - 1] = '\0';
	cr_expect_eq(gw_addr_parse(longpath, &a), -EINVAL);
	cr_expect_eq(gw_addr_parse(NULL, &a), -EINVAL);
	gw_addr_free(NULL);
}

/* The reason is what the config loader prints after "invalid address". */
Test(addr, parse_why_and_same)
{
	struct gw_addr a, b;
	const char *why = NULL;

	cr_expect_eq(gw_addr_parse_why("h:0", &a, &why), -EINVAL);
	cr_expect_str_eq(why, "port must be a number 1..65535");
	cr_expect_eq(gw_addr_parse_why("::1:80", &a, &why), -EINVAL);
	cr_expect_str_eq(why, "IPv6 addresses need brackets: [::1]:PORT");
	cr_expect_eq(gw_addr_parse_why("h:1", &a, NULL), 0);
	cr_assert_eq(gw_addr_parse("h:1", &b), 0);
	cr_expect(gw_addr_same(&a, &b));
	gw_addr_free(&b);
	cr_assert_eq(gw_addr_parse("h:2", &b), 0);
	cr_expect_not(gw_addr_same(&a, &b));
	gw_addr_free(&b);
	cr_assert_eq(gw_addr_parse("unix://5050", &b), 0);
	gw_addr_free(&a);
	cr_assert_eq(gw_addr_parse("unix:5050", &a), 0);
	cr_expect(gw_addr_same(&a, &b));	/* two spellings of one abstract socket */
	gw_addr_free(&a);
	gw_addr_free(&b);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	cr_expect_not(gw_addr_same(&a, &b));	/* unparsed: never "the same" */
}
