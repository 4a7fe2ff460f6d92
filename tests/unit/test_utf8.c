/*
 * test_utf8.c: worker/utf8.c, the one UTF-8 implementation: which sequences
 * are valid (RFC 3629's table, overlong forms, surrogates, past U+10FFFF,
 * truncation), decoding and encoding every code point, counting, cutting on
 * boundaries, and cleaning bytes into valid text.
 */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "utf8.h"

static size_t
seq(const char *s)
{
    return ragq_utf8_seq((const unsigned char *) s, strlen(s));
}

START_TEST(seq_valid_and_invalid)
{
    /* Each well-formed range of RFC 3629's table, at both ends. */
    ck_assert_uint_eq(seq("A"), 1);
    ck_assert_uint_eq(seq("\x7f"), 1);
    ck_assert_uint_eq(seq("\xc2\x80"), 2);
    ck_assert_uint_eq(seq("\xdf\xbf"), 2);
    ck_assert_uint_eq(seq("\xe0\xa0\x80"), 3);
    ck_assert_uint_eq(seq("\xed\x9f\xbf"), 3); /* U+D7FF */
    ck_assert_uint_eq(seq("\xee\x80\x80"), 3); /* U+E000 */
    ck_assert_uint_eq(seq("\xef\xbf\xbf"), 3);
    ck_assert_uint_eq(seq("\xf0\x90\x80\x80"), 4);
    ck_assert_uint_eq(seq("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */

    ck_assert_uint_eq(seq("\x80"), 0);             /* lone continuation */
    ck_assert_uint_eq(seq("\xc0\xaf"), 0);         /* overlong '/' */
    ck_assert_uint_eq(seq("\xc1\xbf"), 0);         /* overlong */
    ck_assert_uint_eq(seq("\xe0\x9f\xbf"), 0);     /* overlong 3-byte */
    ck_assert_uint_eq(seq("\xed\xa0\x80"), 0);     /* surrogate U+D800 */
    ck_assert_uint_eq(seq("\xed\xbf\xbf"), 0);     /* surrogate U+DFFF */
    ck_assert_uint_eq(seq("\xf0\x8f\xbf\xbf"), 0); /* overlong 4-byte */
    ck_assert_uint_eq(seq("\xf4\x90\x80\x80"), 0); /* U+110000 */
    ck_assert_uint_eq(seq("\xf5\x80\x80\x80"), 0);
    ck_assert_uint_eq(seq("\xff"), 0);
    ck_assert_uint_eq(seq("\xc3"), 0);         /* truncated */
    ck_assert_uint_eq(seq("\xe2\x82"), 0);     /* truncated */
    ck_assert_uint_eq(seq("\xf0\x9f\x98"), 0); /* truncated */
    ck_assert_uint_eq(seq("\xe2\x28\xa1"), 0); /* bad continuation */
    /* avail counts, not a terminator */
    ck_assert_uint_eq(ragq_utf8_seq((const unsigned char *) "\xc3\xa9", 1), 0);
}
END_TEST

START_TEST(every_code_point_round_trips)
{
    char     buf[4];
    uint32_t cp, got;
    size_t   n, i;

    for (cp = 0; cp <= 0x10ffff; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff) {
            continue;
        }
        n = ragq_utf8_put(cp, buf);
        ck_assert_uint_eq(n, cp < 0x80      ? 1
                             : cp < 0x800   ? 2
                             : cp < 0x10000 ? 3
                                            : 4);
        ck_assert_uint_eq(ragq_utf8_seq((const unsigned char *) buf, n), n);
        i = 0;
        got = ragq_utf8_next(buf, n, &i);
        ck_assert_uint_eq(got, cp);
        ck_assert_uint_eq(i, n);
        ck_assert_uint_eq(ragq_utf8_chars(buf, n), 1);
    }
}
END_TEST

START_TEST(next_replaces_invalid_bytes_one_at_a_time)
{
    /* "a", overlong '/', "é", a surrogate, truncated "€" */
    const char *s = "a\xc0\xaf\xc3\xa9\xed\xa0\x80\xe2\x82";
    size_t      len = strlen(s), i = 0;
    uint32_t    want[] = {'a',    0xfffd, 0xfffd, 0xe9,  0xfffd,
                          0xfffd, 0xfffd, 0xfffd, 0xfffd};
    size_t      k = 0;

    while (i < len) {
        ck_assert_uint_lt(k, sizeof(want) / sizeof(want[0]));
        ck_assert_uint_eq(ragq_utf8_next(s, len, &i), want[k]);
        k++;
    }
    ck_assert_uint_eq(k, sizeof(want) / sizeof(want[0]));
    ck_assert_uint_eq(i, len);
}
END_TEST

START_TEST(chars_and_cut)
{
    const char *s = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";

    ck_assert_uint_eq(ragq_utf8_chars(s, strlen(s)), 9);
    ck_assert_uint_eq(ragq_utf8_chars("", 0), 0);
    ck_assert_uint_eq(ragq_utf8_cut(s, strlen(s), 100), strlen(s));
    ck_assert_uint_eq(ragq_utf8_cut(s, strlen(s), 2), 1);   /* not inside é */
    ck_assert_uint_eq(ragq_utf8_cut(s, strlen(s), 3), 3);   /* after é */
    ck_assert_uint_eq(ragq_utf8_cut(s, strlen(s), 8), 7);   /* before € */
    ck_assert_uint_eq(ragq_utf8_cut(s, strlen(s), 13), 11); /* before 😀 */
    ck_assert_uint_eq(ragq_utf8_cut(s, strlen(s), 0), 0);
    /* an invalid byte is a unit of its own */
    ck_assert_uint_eq(ragq_utf8_cut("a\xff\xfe", 3, 2), 2);
}
END_TEST

START_TEST(clean_and_dup)
{
    char  *d;
    size_t n;

    d = ragq_utf8_dup("a\0b\xc0\xaf", 5); /* NUL and an overlong '/' */
    ck_assert_str_eq(d, "a\xef\xbf\xbd"
                        "b\xef\xbf\xbd\xef\xbf\xbd");
    free(d);

    /* ragq-ingest's documents: NUL as a space, the length reported */
    d = ragq_utf8_clean("x\0y\xf4\x90\x80\x80z\xe2\x82\xac", 11, ' ', &n);
    ck_assert_str_eq(d, "x y\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "z\xe2\x82\xac");
    ck_assert_uint_eq(n, strlen(d));
    free(d);

    d = ragq_utf8_clean("", 0, ' ', &n);
    ck_assert_str_eq(d, "");
    ck_assert_uint_eq(n, 0);
    free(d);
}
END_TEST

START_TEST(clean_large_text)
{
    size_t len = 300000, n, i;
    char  *s = malloc(len), *d;

    for (i = 0; i < len; i++) {
        s[i] = i % 1000 == 999 ? '\xff' : (char) ('a' + i % 26);
    }
    d = ragq_utf8_clean(s, len, ' ', &n);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(n, len + 2 * (len / 1000));
    ck_assert_uint_eq(strlen(d), n);
    ck_assert(memcmp(d + 999, "\xef\xbf\xbd", 3) == 0);
    ck_assert_int_eq(d[1002], 'a' + 1000 % 26);
    free(d);
    free(s);
}
END_TEST

Suite *
ragq_suite_utf8(void)
{
    Suite *s = suite_create("utf8");
    TCase *tc = tcase_create("utf8");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, seq_valid_and_invalid);
    tcase_add_test(tc, every_code_point_round_trips);
    tcase_add_test(tc, next_replaces_invalid_bytes_one_at_a_time);
    tcase_add_test(tc, chars_and_cut);
    tcase_add_test(tc, clean_and_dup);
    tcase_add_test(tc, clean_large_text);
    suite_add_tcase(s, tc);
    return s;
}
