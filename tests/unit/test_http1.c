/*
 * test_http1.c: the reader of HTTP/1.x answers (worker/http1_parse.c), fed
 * as the client feeds it: whole, and in pieces cut at every byte, keeping
 * what it did not take.  Framing (length, chunks, close), interim answers,
 * connection reuse, and the answers it must refuse.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1_parse.h"
#include "suites.h"

typedef struct {
    ragq_h1_event_t last; /* DONE, ERROR, or MORE when it wants more */
    int             status, keep_alive, heads, headers;
    int64_t         keep_alive_s;
    char            body[8192];
    size_t          blen;
    char            retry_after[64];
    const char     *error;
} outcome_t;

/*
 * Feeds wire in pieces of step bytes (0: all at once) the way http1.c
 * does: unread bytes stay in front of the next piece.  eof: the peer
 * closes after the last byte.
 */
static outcome_t
feed(const char *wire, size_t n, size_t step, int eof)
{
    static char      buf[1 << 17];
    ragq_h1_parser_t p;
    outcome_t        o;
    size_t           have = 0, given = 0, off, used;
    ragq_h1_event_t  ev = RAGQ_H1_MORE;

    memset(&o, 0, sizeof(o));
    ragq_h1_parser_init(&p);
    while (given < n || ev != RAGQ_H1_MORE) {
        size_t k = step == 0 || n - given < step ? n - given : step;

        memcpy(buf + have, wire + given, k);
        have += k;
        given += k;
        off = 0;
        for (;;) {
            ev = ragq_h1_parse(&p, buf + off, have - off, &used);
            off += used;
            if (ev == RAGQ_H1_HEADER) {
                o.headers++;
                if (p.name_len == 11 &&
                    strncmp(p.name, "Retry-After", 11) == 0) {
                    snprintf(o.retry_after, sizeof(o.retry_after), "%.*s",
                             (int) p.len, p.data);
                }
            } else if (ev == RAGQ_H1_HEAD) {
                o.heads++;
                o.status = p.status;
            } else if (ev == RAGQ_H1_BODY) {
                ck_assert_uint_le(o.blen + p.len, sizeof(o.body));
                memcpy(o.body + o.blen, p.data, p.len);
                o.blen += p.len;
            } else {
                break;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (ev != RAGQ_H1_MORE) {
            break;
        }
    }
    if (ev == RAGQ_H1_MORE && eof) {
        ev = ragq_h1_parse_eof(&p);
    }
    o.last = ev;
    o.keep_alive = p.keep_alive;
    o.keep_alive_s = p.keep_alive_s;
    o.error = p.error;
    return o;
}

/* The same outcome whatever the pieces: whole, and cut at every byte. */
static outcome_t
feed_all_ways(const char *wire, int eof)
{
    size_t    n = strlen(wire), step;
    outcome_t whole = feed(wire, n, 0, eof), o;

    for (step = 1; step < n && step <= 64; step++) {
        o = feed(wire, n, step, eof);
        ck_assert_int_eq(o.last, whole.last);
        ck_assert_int_eq(o.status, whole.status);
        ck_assert_int_eq(o.keep_alive, whole.keep_alive);
        ck_assert_int_eq(o.keep_alive_s, whole.keep_alive_s);
        ck_assert_uint_eq(o.blen, whole.blen);
        ck_assert(memcmp(o.body, whole.body, o.blen) == 0);
    }
    return whole;
}

START_TEST(test_content_length)
{
    outcome_t o =
        feed_all_ways("HTTP/1.1 200 OK\r\nContent-Type: application/"
                      "json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}",
                      0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.status, 200);
    ck_assert_int_eq(o.keep_alive, 1);
    ck_assert_int_eq(o.heads, 1);
    ck_assert_int_eq(o.headers, 2);
    ck_assert_uint_eq(o.blen, 11);
    ck_assert(memcmp(o.body, "{\"a\":\"b c\"}", 11) == 0);
}
END_TEST

START_TEST(test_length_stops_at_its_end)
{
    /* Bytes after the answer are not its body (the client then closes). */
    const char *w = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
    outcome_t   o = feed(w, strlen(w), 0, 0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_uint_eq(o.blen, 2);
}
END_TEST

START_TEST(test_chunked)
{
    outcome_t o =
        feed_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n1;name=value\r\n \r\nA \r\n0123456789\r\n"
                      "0\r\nX-Trailer: t\r\n\r\n",
                      0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.keep_alive, 1);
    ck_assert_uint_eq(o.blen, 16);
    ck_assert(memcmp(o.body, "hello 0123456789", 16) == 0);
}
END_TEST

START_TEST(test_chunked_wins_over_length)
{
    outcome_t o = feed_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"
                                "2\r\nok\r\n0\r\n\r\n",
                                0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_uint_eq(o.blen, 2);
    ck_assert_int_eq(o.keep_alive, 0); /* not trusted with another request */
}
END_TEST

START_TEST(test_interim_answers_skipped)
{
    outcome_t o = feed_all_ways("HTTP/1.1 100 Continue\r\n\r\n"
                                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                                "HTTP/1.1 429 Too Many Requests\r\n"
                                "Retry-After: 7\r\nContent-Length: 0\r\n\r\n",
                                0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.status, 429);
    ck_assert_int_eq(o.heads, 1);
    ck_assert_str_eq(o.retry_after, "7");
    ck_assert_uint_eq(o.blen, 0);
}
END_TEST

START_TEST(test_connection_reuse)
{
    const char *w;
    outcome_t   o;

    w = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    o = feed(w, strlen(w), 0, 0);
    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.keep_alive, 0);

    w = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    o = feed(w, strlen(w), 0, 0);
    ck_assert_int_eq(o.keep_alive, 0);

    w = "HTTP/1.0 200 OK\r\nConnection: Upgrade, Keep-Alive\r\n"
        "Content-Length: 0\r\n\r\n";
    o = feed(w, strlen(w), 0, 0);
    ck_assert_int_eq(o.keep_alive, 1);

    w = "HTTP/1.1 204 No Content\r\n\r\n";
    o = feed(w, strlen(w), 0, 0);
    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.keep_alive, 1);
}
END_TEST

START_TEST(test_body_until_close)
{
    /* No length, no chunks: the body ends with the connection. */
    outcome_t o = feed_all_ways("HTTP/1.1 200 OK\nServer: x\n\nall of it", 1);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.keep_alive, 0);
    ck_assert_uint_eq(o.blen, 9);
}
END_TEST

START_TEST(test_cut_short)
{
    const char *w = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    outcome_t   o = feed(w, strlen(w), 0, 1);

    ck_assert_int_eq(o.last, RAGQ_H1_ERROR);
    ck_assert_str_eq(o.error,
                     "connection closed before the answer was complete");

    o = feed("", 0, 0, 1);
    ck_assert_int_eq(o.last, RAGQ_H1_ERROR);
    ck_assert_str_eq(o.error, "connection closed without an answer");

    w = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
    o = feed(w, strlen(w), 0, 1);
    ck_assert_int_eq(o.last, RAGQ_H1_ERROR);
}
END_TEST

START_TEST(test_refused)
{
    static const struct {
        const char *wire, *why;
    } bad[] = {
        {"HTTP/2 200\r\n\r\n", "not an HTTP/1.x status line"},
        {"ICY 200 OK\r\n\r\n", "not an HTTP/1.x status line"},
        {"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"},
        {"HTTP/1.1 200OK\r\n\r\n", "not an HTTP/1.x status line"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
         "two different Content-Lengths"},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
         "bad Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
         "bad Content-Length"},
        {"HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\n\r\n", "folded header line"},
        {"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "header line without a name"},
        {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
         "bad character in a header name"},
        {"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n",
         "unsupported Content-Encoding"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
         "unsupported Transfer-Encoding"},
        {"HTTP/1.1 101 Switching Protocols\r\n\r\n",
         "unexpected protocol switch"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\n",
         "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "1000000000000000\r\n",
         "chunk size too large"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY",
         "chunk not followed by CRLF"},
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        outcome_t o = feed_all_ways(bad[i].wire, 0);

        ck_assert_msg(o.last == RAGQ_H1_ERROR, "accepted: %s", bad[i].wire);
        ck_assert_str_eq(o.error, bad[i].why);
    }
}
END_TEST

START_TEST(test_head_too_large)
{
    size_t    cap = RAGQ_H1_MAX_HEAD + 4096, n = 0;
    char     *w = malloc(cap + 64);
    outcome_t o;

    n += (size_t) sprintf(w, "HTTP/1.1 200 OK\r\n");
    while (n < cap) {
        n += (size_t) sprintf(w + n, "X-Pad: %050d\r\n", 0);
    }
    o = feed(w, n, 4096, 0);
    ck_assert_int_eq(o.last, RAGQ_H1_ERROR);
    ck_assert_str_eq(o.error, "answer head too large");
    free(w);
}
END_TEST

START_TEST(test_close_wins)
{
    /* "close" ends the connection whatever another Connection line says
     * (RFC 9112 9.6): a later keep-alive token does not undo it. */
    const char *w = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                    "Connection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    outcome_t   o = feed_all_ways(w, 0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.keep_alive, 0);

    w = "HTTP/1.0 200 OK\r\nConnection: close\r\n"
        "Connection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
    o = feed_all_ways(w, 0);
    ck_assert_int_eq(o.keep_alive, 0);
}
END_TEST

START_TEST(test_http10_chunked_not_kept)
{
    /* Chunks in an HTTP/1.0 answer: read, but the framing is not trusted
     * with another request, keep-alive or not (RFC 9112 6.1). */
    outcome_t o = feed_all_ways("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"
                                "2\r\nok\r\n0\r\n\r\n",
                                0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_uint_eq(o.blen, 2);
    ck_assert_int_eq(o.keep_alive, 0);
}
END_TEST

START_TEST(test_chunk_size_leading_zeros)
{
    /* 1*HEXDIG: leading zeros are not digits of the size. */
    outcome_t o =
        feed_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "000000000000000000005\r\nhello\r\n"
                      "000000000000000000000000\r\n\r\n",
                      0);

    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_uint_eq(o.blen, 5);
    ck_assert(memcmp(o.body, "hello", 5) == 0);

    /* What is left after them is still held to 15 digits. */
    o = feed_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "00001000000000000000\r\n",
                      0);
    ck_assert_int_eq(o.last, RAGQ_H1_ERROR);
    ck_assert_str_eq(o.error, "chunk size too large");
    o = feed_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0fffffffffffffff\r\n",
                      0);
    ck_assert_int_eq(o.last, RAGQ_H1_MORE);
}
END_TEST

START_TEST(test_keep_alive_timeout)
{
    static const struct {
        const char *value;
        int64_t     seconds;
    } t[] = {
        {"timeout=5, max=100", 5},
        {"max=100,timeout=75", 75},
        {"TIMEOUT = 3", -1}, /* not the form servers send: not read */
        {"Timeout=3", 3},
        {"max=5", -1},
        {"timeout=", -1},
        {"timeout=5s", -1},
        {"timeout=99999999999999999999", -1},
        {"timeouts=5", -1},
    };
    char      w[256];
    size_t    i;
    outcome_t o;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        snprintf(w, sizeof(w),
                 "HTTP/1.1 200 OK\r\nKeep-Alive: %s\r\n"
                 "Content-Length: 0\r\n\r\n",
                 t[i].value);
        o = feed_all_ways(w, 0);
        ck_assert_int_eq(o.last, RAGQ_H1_DONE);
        ck_assert_msg(o.keep_alive_s == t[i].seconds, "%s: %lld", t[i].value,
                      (long long) o.keep_alive_s);
    }
    /* Not said: -1; an interim answer's hint is not the final answer's. */
    o = feed_all_ways("HTTP/1.1 100 Continue\r\nKeep-Alive: timeout=9\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                      0);
    ck_assert_int_eq(o.last, RAGQ_H1_DONE);
    ck_assert_int_eq(o.keep_alive_s, -1);
}
END_TEST

Suite *
ragq_suite_http1(void)
{
    Suite *s = suite_create("http1");
    TCase *tc = tcase_create("parse");

    tcase_add_test(tc, test_content_length);
    tcase_add_test(tc, test_length_stops_at_its_end);
    tcase_add_test(tc, test_chunked);
    tcase_add_test(tc, test_chunked_wins_over_length);
    tcase_add_test(tc, test_interim_answers_skipped);
    tcase_add_test(tc, test_connection_reuse);
    tcase_add_test(tc, test_body_until_close);
    tcase_add_test(tc, test_cut_short);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_head_too_large);
    tcase_add_test(tc, test_close_wins);
    tcase_add_test(tc, test_http10_chunked_not_kept);
    tcase_add_test(tc, test_chunk_size_leading_zeros);
    tcase_add_test(tc, test_keep_alive_timeout);
    suite_add_tcase(s, tc);
    return s;
}
