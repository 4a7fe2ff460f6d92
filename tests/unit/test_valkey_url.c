/*
 * test_valkey_url.c: worker/valkey_url.c, the one parser of RAGQ_VALKEY_URL
 * (config checks and connects with it): every field of good URLs, the
 * reason given for bad ones, the two cases the old pair of parsers
 * disagreed on, percent-decoding, resolution of names (localhost, no DNS
 * server involved), and the masked form used in messages.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "valkey_url.h"

typedef struct {
    const char *url;
    int         transport;
    const char *host, *path, *user, *password;
    int         port, db;
} good_t;

static void
str_or_null_eq(const char *got, const char *want, const char *what,
               const char *url)
{
    if (want == NULL) {
        ck_assert_msg(got == NULL, "%s: %s is '%s', want none", url, what, got);
    } else {
        ck_assert_msg(got != NULL && strcmp(got, want) == 0,
                      "%s: %s is '%s', want '%s'", url, what,
                      got ? got : "(none)", want);
    }
}

START_TEST(good_urls)
{
    static const good_t g[] = {
        {"redis://127.0.0.1:6379", RAGQ_VALKEY_TCP, "127.0.0.1", NULL, NULL,
         NULL, 6379, 0},
        {"redis://127.0.0.1", RAGQ_VALKEY_TCP, "127.0.0.1", NULL, NULL, NULL,
         6379, 0},
        {"redis://:secret@127.0.0.1:6380/2", RAGQ_VALKEY_TCP, "127.0.0.1", NULL,
         NULL, "secret", 6380, 2},
        {"redis://user:secret@localhost:6379", RAGQ_VALKEY_TCP, "localhost",
         NULL, "user", "secret", 6379, 0},
        {"redis://secret@h", RAGQ_VALKEY_TCP, "h", NULL, NULL, "secret", 6379,
         0},
        {"redis://@h", RAGQ_VALKEY_TCP, "h", NULL, NULL, NULL, 6379, 0},
        {"redis://[::1]:6379/0", RAGQ_VALKEY_TCP, "::1", NULL, NULL, NULL, 6379,
         0},
        {"valkey://h:1/", RAGQ_VALKEY_TCP, "h", NULL, NULL, NULL, 1, 0},
        {"redis://h:65535/1000000", RAGQ_VALKEY_TCP, "h", NULL, NULL, NULL,
         65535, 1000000},
        {"unix:///run/valkey/valkey.sock", RAGQ_VALKEY_UNIX, NULL,
         "/run/valkey/valkey.sock", NULL, NULL, 6379, 0},
        {"unix:///tmp/v.sock?db=3", RAGQ_VALKEY_UNIX, NULL, "/tmp/v.sock", NULL,
         NULL, 6379, 3},
        /* The old config check and connect disagreed on these two. */
        {"redis://:p@ss@127.0.0.1:6379", RAGQ_VALKEY_TCP, "127.0.0.1", NULL,
         NULL, "p@ss", 6379, 0},
        {"redis://u%3Aser:p%40ss%2Fw%zz%4@h", RAGQ_VALKEY_TCP, "h", NULL,
         "u:ser", "p@ss/w%zz%4", 6379, 0},
    };
    ragq_valkey_addr_t a;
    char               why[256];

    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
        ck_assert_msg(ragq_valkey_addr_parse(g[i].url, &a, why, sizeof(why)) ==
                          0,
                      "%s: %s", g[i].url, why);
        ck_assert_int_eq(a.transport, g[i].transport);
        str_or_null_eq(a.host, g[i].host, "host", g[i].url);
        str_or_null_eq(a.path, g[i].path, "path", g[i].url);
        str_or_null_eq(a.user, g[i].user, "user", g[i].url);
        str_or_null_eq(a.password, g[i].password, "password", g[i].url);
        ck_assert_int_eq(a.port, g[i].port);
        ck_assert_int_eq(a.db, g[i].db);
        ragq_valkey_addr_free(&a);
    }
}
END_TEST

START_TEST(bad_urls)
{
    static const struct {
        const char *url, *why;
    } b[] = {
        {"http://127.0.0.1:6379", "the scheme must be redis:// or unix://"},
        {"127.0.0.1:6379", "the scheme must be"},
        {"", "the scheme must be"},
        {"rediss://127.0.0.1:6379", "TLS is not supported"},
        {"valkeys://h", "TLS is not supported"},
        {"redis://127.0.0.1:0", "the port must be a number from 1 to 65535"},
        {"redis://127.0.0.1:65536", "the port must be"},
        {"redis://127.0.0.1:", "the port must be"},
        {"redis://127.0.0.1:+80", "the port must be"},
        {"redis://127.0.0.1:12x", "the port must be"},
        {"redis://:6379", "the host is missing"},
        {"redis://", "the host is missing"},
        {"redis://user:pw@/0", "the host is missing"},
        {"redis://[]:1", "the host is missing"},
        {"redis://[::1:6379", "an IPv6 address needs its closing ']'"},
        {"redis://[::1]x", "unexpected 'x'"},
        {"redis://127.0.0.1:6379/x", "the database must be a number (/0)"},
        {"redis://h/1000001", "the database must be"},
        {"redis://h/-1", "the database must be"},
        {"redis://h/0/1", "the database must be"},
        {"redis://h/0@x", "the database must be"}, /* '@' after the path */
        {"redis://:a%00b@h", "cannot hold %00"},
        {"unix://relative.sock", "the socket path must be absolute"},
        {"unix://", "the socket path must be absolute"},
        {"unix:///tmp/v.sock?database=1", "after the path only ?db=N"},
        {"unix:///x.sock?db=abc", "after the path only ?db=N"},
        {"unix:///x.sock?db=", "after the path only ?db=N"},
        {"unix:///x.sock?db=1&x", "after the path only ?db=N"},
    };
    ragq_valkey_addr_t a;
    char               why[256];

    for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
        why[0] = '\0';
        ck_assert_msg(ragq_valkey_addr_parse(b[i].url, &a, why, sizeof(why)) ==
                          -1,
                      "%s was accepted", b[i].url);
        ck_assert_msg(strstr(why, b[i].why) != NULL, "%s: '%s', want '%s'",
                      b[i].url, why, b[i].why);
        ck_assert_ptr_null(a.host);
        ck_assert_ptr_null(a.path);
        ck_assert_ptr_null(a.password);
    }
}
END_TEST

START_TEST(resolve_and_where)
{
    ragq_valkey_addr_t a;
    char               err[256], where[300];

    ck_assert_int_eq(
        ragq_valkey_addr_parse("redis://localhost:7000", &a, err, sizeof(err)),
        0);
    ck_assert_int_eq(ragq_valkey_addr_resolve(&a, err, sizeof(err)), 0);
    ck_assert_msg(strcmp(a.host, "127.0.0.1") == 0 ||
                      strcmp(a.host, "::1") == 0,
                  "localhost resolved to %s", a.host);
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_msg(strcmp(where, "127.0.0.1:7000") == 0 ||
                      strcmp(where, "[::1]:7000") == 0,
                  "%s", where);
    ragq_valkey_addr_free(&a);

    ck_assert_int_eq(
        ragq_valkey_addr_parse("redis://[::1]:7001", &a, err, sizeof(err)), 0);
    ck_assert_int_eq(ragq_valkey_addr_resolve(&a, err, sizeof(err)), 0);
    ck_assert_str_eq(a.host, "::1");
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_str_eq(where, "[::1]:7001");
    ragq_valkey_addr_free(&a);

    ck_assert_int_eq(
        ragq_valkey_addr_parse("unix:///tmp/v.sock?db=2", &a, err, sizeof(err)),
        0);
    ck_assert_int_eq(ragq_valkey_addr_resolve(&a, err, sizeof(err)), 0);
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_str_eq(where, "unix:/tmp/v.sock");
    ragq_valkey_addr_free(&a);
}
END_TEST

START_TEST(mask)
{
    static const struct {
        const char *url, *want;
    } m[] = {
        {"redis://:hunter2@127.0.0.1:6379", "redis://:***@127.0.0.1:6379"},
        {"redis://u:hunter2@h/1", "redis://u:***@h/1"},
        {"redis://hunter2@h", "redis://***@h"},
        {"redis://:p@ss@h:1", "redis://:***@h:1"}, /* all of the password */
        {"redis://h:1/0", "redis://h:1/0"},
        {"redis://h/x@y", "redis://h/x@y"}, /* an '@' after the path */
        {"unix:///tmp/x.sock", "unix:///tmp/x.sock"},
        {"no scheme", "no scheme"},
    };
    char out[256];

    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        ragq_valkey_url_mask(m[i].url, out, sizeof(out));
        ck_assert_str_eq(out, m[i].want);
    }
}
END_TEST

Suite *
ragq_suite_valkey_url(void)
{
    Suite *s = suite_create("valkey_url");
    TCase *tc = tcase_create("valkey_url");

    tcase_add_test(tc, good_urls);
    tcase_add_test(tc, bad_urls);
    tcase_add_test(tc, resolve_and_where);
    tcase_add_test(tc, mask);
    suite_add_tcase(s, tc);
    return s;
}
