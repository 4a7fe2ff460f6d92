/*
 * test_valkey_url.c: worker/valkey_url.c, the one parser of RAGQ_VALKEY_URL
 * (config checks and connects with it): every field of good URLs (TLS and
 * Sentinel ones included), the reason given for bad ones, the two cases the
 * old pair of parsers disagreed on, percent-decoding, the "where" of
 * messages, the masked form used in messages; and worker/resolver.c, which
 * resolves the names on every connect off the loop (localhost, no DNS
 * server involved; numeric addresses without a thread).
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "loop.h"
#include "resolver.h"
#include "suites.h"
#include "valkey_url.h"

typedef struct {
    const char *url;
    int         transport;
    const char *host, *path, *user, *password;
    int         port, db, tls;
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
         NULL, 6379, 0, 0},
        {"redis://127.0.0.1", RAGQ_VALKEY_TCP, "127.0.0.1", NULL, NULL, NULL,
         6379, 0, 0},
        {"redis://:secret@127.0.0.1:6380/2", RAGQ_VALKEY_TCP, "127.0.0.1", NULL,
         NULL, "secret", 6380, 2, 0},
        {"redis://user:secret@localhost:6379", RAGQ_VALKEY_TCP, "localhost",
         NULL, "user", "secret", 6379, 0, 0},
        {"redis://secret@h", RAGQ_VALKEY_TCP, "h", NULL, NULL, "secret", 6379,
         0, 0},
        {"redis://@h", RAGQ_VALKEY_TCP, "h", NULL, NULL, NULL, 6379, 0, 0},
        {"redis://[::1]:6379/0", RAGQ_VALKEY_TCP, "::1", NULL, NULL, NULL, 6379,
         0, 0},
        {"valkey://h:1/", RAGQ_VALKEY_TCP, "h", NULL, NULL, NULL, 1, 0, 0},
        {"redis://h:65535/1000000", RAGQ_VALKEY_TCP, "h", NULL, NULL, NULL,
         65535, 1000000, 0},
        {"unix:///run/valkey/valkey.sock", RAGQ_VALKEY_UNIX, NULL,
         "/run/valkey/valkey.sock", NULL, NULL, 6379, 0, 0},
        {"unix:///tmp/v.sock?db=3", RAGQ_VALKEY_UNIX, NULL, "/tmp/v.sock", NULL,
         NULL, 6379, 3, 0},
        /* The old config check and connect disagreed on these two. */
        {"redis://:p@ss@127.0.0.1:6379", RAGQ_VALKEY_TCP, "127.0.0.1", NULL,
         NULL, "p@ss", 6379, 0, 0},
        {"redis://u%3Aser:p%40ss%2Fw%zz%4@h", RAGQ_VALKEY_TCP, "h", NULL,
         "u:ser", "p@ss/w%zz%4", 6379, 0, 0},
        /* TLS */
        {"rediss://ragq:pw@cache.example.internal:6380/1", RAGQ_VALKEY_TCP,
         "cache.example.internal", NULL, "ragq", "pw", 6380, 1, 1},
        {"valkeys://[::1]", RAGQ_VALKEY_TCP, "::1", NULL, NULL, NULL, 6379, 0,
         1},
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
        ck_assert_int_eq(a.tls, g[i].tls);
        ck_assert_int_eq(a.nsentinels, 0);
        ragq_valkey_addr_free(&a);
    }
}
END_TEST

START_TEST(sentinel_urls)
{
    ragq_valkey_addr_t a;
    char               why[256], where[300];

    ck_assert_msg(
        ragq_valkey_addr_parse("redis+sentinel://ragq:p@ss@10.0.0.1:26379,"
                               "sentinel-b,[fd00::3]:26380/mymaster/2",
                               &a, why, sizeof(why)) == 0,
        "%s", why);
    ck_assert_int_eq(a.transport, RAGQ_VALKEY_SENTINEL);
    ck_assert_int_eq(a.tls, 0);
    ck_assert_str_eq(a.user, "ragq");
    ck_assert_str_eq(a.password, "p@ss");
    ck_assert_int_eq(a.nsentinels, 3);
    ck_assert_str_eq(a.sentinels[0].host, "10.0.0.1");
    ck_assert_int_eq(a.sentinels[0].port, 26379);
    ck_assert_str_eq(a.sentinels[1].host, "sentinel-b");
    ck_assert_int_eq(a.sentinels[1].port, 26379); /* the sentinels' default */
    ck_assert_str_eq(a.sentinels[2].host, "fd00::3");
    ck_assert_int_eq(a.sentinels[2].port, 26380);
    ck_assert_str_eq(a.master, "mymaster");
    ck_assert_int_eq(a.db, 2);
    ck_assert_ptr_null(a.host);
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_str_eq(where, "sentinels 10.0.0.1:26379,sentinel-b:26379,"
                            "[fd00::3]:26380 (primary mymaster)");
    ragq_valkey_addr_free(&a);

    ck_assert_int_eq(ragq_valkey_addr_parse("rediss+sentinel://:pw@h:1/m", &a,
                                            why, sizeof(why)),
                     0);
    ck_assert_int_eq(a.transport, RAGQ_VALKEY_SENTINEL);
    ck_assert_int_eq(a.tls, 1);
    ck_assert_ptr_null(a.user);
    ck_assert_str_eq(a.password, "pw");
    ck_assert_int_eq(a.nsentinels, 1);
    ck_assert_str_eq(a.master, "m");
    ck_assert_int_eq(a.db, 0);
    ragq_valkey_addr_free(&a);

    ck_assert_int_eq(
        ragq_valkey_addr_parse("valkey+sentinel://h/m/", &a, why, sizeof(why)),
        0);
    ck_assert_int_eq(a.tls, 0);
    ck_assert_str_eq(a.master, "m");
    ragq_valkey_addr_free(&a);
    ck_assert_int_eq(
        ragq_valkey_addr_parse("valkeys+sentinel://h/m", &a, why, sizeof(why)),
        0);
    ck_assert_int_eq(a.tls, 1);
    ragq_valkey_addr_free(&a);
}
END_TEST

START_TEST(bad_urls)
{
    static const struct {
        const char *url, *why;
    } b[] = {
        {"http://127.0.0.1:6379",
         "the scheme must be redis://, rediss://, redis+sentinel://, "
         "rediss+sentinel:// or unix://"},
        {"127.0.0.1:6379", "the scheme must be"},
        {"", "the scheme must be"},
        {"redis+cluster://h", "the scheme must be"},
        {"redis://a:1,b:2/0", "several hosts need redis+sentinel://"},
        {"redis+sentinel://h:26379", "the primary's name must follow"},
        {"redis+sentinel://h:26379/", "the primary's name must follow"},
        {"redis+sentinel://h:26379//0", "the primary's name must follow"},
        {"redis+sentinel://h:26379/m/x", "the database must be a number"},
        {"redis+sentinel://h:26379/m/1000001", "the database must be"},
        {"redis+sentinel://h:0/m", "the port must be"},
        {"redis+sentinel://a,,b/m", "the host is missing"},
        {"redis+sentinel://a,/m", "the host is missing"},
        {"redis+sentinel:///m", "the host is missing"},
        {"redis+sentinel://[::1/m", "an IPv6 address needs its closing"},
        {"redis+sentinel://[::1]x/m", "unexpected 'x'"},
        {"redis+sentinel://h/m?x", "cannot hold"},
        {"redis+sentinel://h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h,h/m",
         "at most 16 sentinels"},
        {"rediss://", "the host is missing"},
        {"rediss://h:99999", "the port must be"},
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
        ck_assert_ptr_null(a.sentinels);
        ck_assert_ptr_null(a.master);
    }
}
END_TEST

START_TEST(where)
{
    ragq_valkey_addr_t a;
    char               err[256], where[300];

    ck_assert_int_eq(
        ragq_valkey_addr_parse("redis://localhost:7000", &a, err, sizeof(err)),
        0);
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_str_eq(where, "localhost:7000");
    ragq_valkey_addr_free(&a);

    ck_assert_int_eq(
        ragq_valkey_addr_parse("rediss://[::1]:7001", &a, err, sizeof(err)), 0);
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_str_eq(where, "[::1]:7001");
    ragq_valkey_addr_free(&a);

    ck_assert_int_eq(
        ragq_valkey_addr_parse("unix:///tmp/v.sock?db=2", &a, err, sizeof(err)),
        0);
    ragq_valkey_addr_where(&a, where, sizeof(where));
    ck_assert_str_eq(where, "unix:/tmp/v.sock");
    ragq_valkey_addr_free(&a);
}
END_TEST

/* ---- resolver.c ---- */

typedef struct {
    ragq_loop_t *loop;
    int          calls, n, family;
    char         err[256];
} answer_t;

static void
got_answer(void *data, const ragq_addrs_t *addrs, const char *err)
{
    answer_t *a = data;

    a->calls++;
    if (addrs) {
        const struct sockaddr_in *in = (const void *) &addrs->addr[0];

        a->n = addrs->n;
        a->family = in->sin_family;
        ck_assert_int_eq(ntohs(in->sin_port), 7000); /* same offset in v6 */
    } else {
        snprintf(a->err, sizeof(a->err), "%s", err);
    }
    ragq_loop_stop(a->loop);
}

static void
give_up(void *data)
{
    ragq_loop_stop(data);
}

/* Runs the loop until an answer came or 10 s passed. */
static void
run_until_answer(ragq_loop_t *loop)
{
    ragq_timer_t t;

    ragq_timer_init(&t, give_up, loop);
    ragq_timer_start(loop, &t, 10000);
    ragq_loop_run(loop);
    ragq_timer_stop(loop, &t);
}

START_TEST(resolver)
{
    ragq_loop_t     *loop = ragq_loop_new();
    ragq_resolver_t *r = ragq_resolver_new(loop);
    ragq_addrs_t     addrs;
    answer_t         a = {loop, 0, 0, 0, ""}, b = {loop, 0, 0, 0, ""};
    ragq_lookup_t   *l;

    ck_assert_ptr_nonnull(r);
    /* Numeric: no thread, no callback. */
    ck_assert_int_eq(ragq_resolve_numeric("127.0.0.1", 7000, &addrs), 0);
    ck_assert_int_eq(addrs.n, 1);
    ck_assert_int_eq(addrs.addr[0].ss_family, AF_INET);
    ck_assert_int_eq(ragq_resolve_numeric("::1", 7000, &addrs), 0);
    ck_assert_int_eq(addrs.addr[0].ss_family, AF_INET6);
    ck_assert_int_eq(ragq_resolve_numeric("localhost", 7000, &addrs), -1);

    /* A name, answered on the loop. */
    ck_assert_ptr_nonnull(ragq_resolve(r, "localhost", 7000, got_answer, &a));
    run_until_answer(loop);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_msg(a.n >= 1, "localhost: %s", a.err);
    ck_assert(a.family == AF_INET || a.family == AF_INET6);

    /* A name that cannot resolve (.invalid never does: RFC 6761). */
    memset(&a, 0, sizeof(a));
    a.loop = loop;
    ck_assert_ptr_nonnull(
        ragq_resolve(r, "nothing.invalid", 7000, got_answer, &a));
    run_until_answer(loop);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(a.n, 0);
    ck_assert_msg(strstr(a.err, "cannot resolve \"nothing.invalid\"") != NULL,
                  "%s", a.err);

    /* Cancelled: its callback never runs, the next one does. */
    l = ragq_resolve(r, "localhost", 7000, got_answer, &a);
    ck_assert_ptr_nonnull(l);
    ragq_resolve_cancel(l);
    a.calls = 0;
    ck_assert_ptr_nonnull(ragq_resolve(r, "localhost", 7000, got_answer, &b));
    run_until_answer(loop);
    if (b.calls == 0) {
        run_until_answer(loop); /* the cancelled answer came first */
    }
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(a.calls, 0);

    /* Freed with a lookup running: its thread cleans up. */
    ck_assert_ptr_nonnull(ragq_resolve(r, "localhost", 7000, got_answer, &a));
    ragq_resolver_free(r);
    ragq_loop_free(loop);
    ck_assert_int_eq(a.calls, 0);
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
        {"rediss://u:pw@h", "rediss://u:***@h"},
        {"redis+sentinel://:pw@a:1,b:2/m", "redis+sentinel://:***@a:1,b:2/m"},
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
    tcase_add_test(tc, sentinel_urls);
    tcase_add_test(tc, bad_urls);
    tcase_add_test(tc, where);
    tcase_add_test(tc, resolver);
    tcase_add_test(tc, mask);
    suite_add_tcase(s, tc);
    return s;
}
