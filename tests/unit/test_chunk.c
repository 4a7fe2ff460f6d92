/*
 * test_chunk.c: the document splitter (worker/chunk.c): sizes in UTF-8
 * characters, overlap between neighbours, boundary preference.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "utf8.h"
#include "suites.h"

static char *
repeat_sentences(unsigned n)
{
    char    *t = malloc(n * 64 + 1);
    size_t   k = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        k +=
            (size_t) sprintf(t + k, "Sentence number %u talks about ragq. ", i);
    }
    t[k] = '\0';
    return t;
}

START_TEST(test_sizes_and_indexes)
{
    char         *t = repeat_sentences(100);
    ragq_chunk_t *c;
    size_t        n, i;

    ck_assert_int_eq(ragq_chunk_text(t, strlen(t), 200, 0, &c, &n), 0);
    ck_assert_uint_gt(n, 15);
    for (i = 0; i < n; i++) {
        ck_assert_uint_le(c[i].chars, 200);
        ck_assert_uint_eq(c[i].index, i);
        ck_assert_uint_eq(c[i].len, strlen(c[i].text));
        /* cut at sentence ends: every chunk ends with the full stop */
        ck_assert_int_eq(c[i].text[c[i].len - 1], '.');
        ck_assert(memcmp(t + c[i].start, c[i].text, c[i].len) == 0);
        /* not tiny: the cut is preferred past the middle */
        if (i + 1 < n) {
            ck_assert_uint_ge(c[i].chars, 100);
        }
    }
    ragq_chunks_free(c, n);
    free(t);
}
END_TEST

START_TEST(test_overlap)
{
    char         *t = repeat_sentences(60);
    ragq_chunk_t *c;
    size_t        n, i;

    ck_assert_int_eq(ragq_chunk_text(t, strlen(t), 300, 80, &c, &n), 0);
    ck_assert_uint_gt(n, 3);
    for (i = 1; i < n; i++) {
        size_t prev_end = c[i - 1].start + c[i - 1].len;
        /* the next chunk starts inside the previous one, at most ~80 back */
        ck_assert_uint_lt(c[i].start, prev_end);
        ck_assert_uint_le(prev_end - c[i].start, 80);
        ck_assert_uint_gt(c[i].start, c[i - 1].start);
        /* and at a sentence start */
        ck_assert_int_eq(c[i].text[0], 'S');
    }
    ragq_chunks_free(c, n);

    /* no overlap: chunks tile the text */
    ck_assert_int_eq(ragq_chunk_text(t, strlen(t), 300, 0, &c, &n), 0);
    for (i = 1; i < n; i++) {
        ck_assert_uint_ge(c[i].start, c[i - 1].start + c[i - 1].len);
    }
    ragq_chunks_free(c, n);
    free(t);
}
END_TEST

START_TEST(test_utf8_boundaries)
{
    /* one long "word" of 2- and 3-byte characters: must cut between them */
    char          t[3000];
    size_t        k = 0, n, i;
    ragq_chunk_t *c;

    while (k + 5 < sizeof(t) - 1) {
        memcpy(t + k, "\xc3\xa9\xe2\x82\xac", 5); /* é€ */
        k += 5;
    }
    t[k] = '\0';
    ck_assert_int_eq(ragq_chunk_text(t, k, 101, 10, &c, &n), 0);
    ck_assert_uint_gt(n, 5);
    for (i = 0; i < n; i++) {
        unsigned char first = (unsigned char) c[i].text[0];
        ck_assert_uint_le(c[i].chars, 101);
        ck_assert_uint_eq(c[i].chars, ragq_utf8_chars(c[i].text, c[i].len));
        ck_assert((first & 0xC0) != 0x80);
        ck_assert(first == 0xc3 || first == 0xe2);
    }
    ck_assert_uint_eq(c[0].chars, 101);
    ragq_chunks_free(c, n);
}
END_TEST

START_TEST(test_paragraph_preferred)
{
    /* a paragraph break at ~60% beats sentence ends closer to the limit */
    const char   *t = "First paragraph has one sentence that runs on for a "
                      "while. It has two.\n\nSecond paragraph starts here. "
                      "It goes on. And on. And on and on and on and on.";
    ragq_chunk_t *c;
    size_t        n;

    ck_assert_int_eq(ragq_chunk_text(t, strlen(t), 110, 0, &c, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(c[0].text, "First paragraph has one sentence that runs "
                                "on for a while. It has two.");
    ck_assert(strncmp(c[1].text, "Second paragraph", 16) == 0);
    ragq_chunks_free(c, n);
}
END_TEST

START_TEST(test_word_fallback_and_edges)
{
    const char   *t = "alpha beta gamma delta epsilon zeta eta theta iota "
                      "kappa lambda mu";
    ragq_chunk_t *c;
    size_t        n, i;

    ck_assert_int_eq(ragq_chunk_text(t, strlen(t), 20, 5, &c, &n), 0);
    for (i = 0; i < n; i++) {
        size_t e = c[i].start + c[i].len;
        ck_assert_uint_le(c[i].chars, 20);
        /* whole words only */
        ck_assert(c[i].start == 0 || t[c[i].start - 1] == ' ');
        ck_assert(t[e] == '\0' || t[e] == ' ');
    }
    ck_assert(strstr(c[n - 1].text, "mu") != NULL);
    ragq_chunks_free(c, n);

    ck_assert_int_eq(ragq_chunk_text("  \n\n \t", 6, 20, 5, &c, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ragq_chunk_text("short", 5, 20, 5, &c, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(c[0].text, "short");
    ragq_chunks_free(c, n);
    ck_assert_int_eq(ragq_chunk_text("x", 1, 20, 20, &c, &n), -1);
    ck_assert_int_eq(ragq_chunk_text("x", 1, 0, 0, &c, &n), -1);
}
END_TEST

Suite *
ragq_suite_chunk(void)
{
    Suite *s = suite_create("chunk");
    TCase *tc = tcase_create("chunk");

    tcase_add_test(tc, test_sizes_and_indexes);
    tcase_add_test(tc, test_overlap);
    tcase_add_test(tc, test_utf8_boundaries);
    tcase_add_test(tc, test_paragraph_preferred);
    tcase_add_test(tc, test_word_fallback_and_edges);
    suite_add_tcase(s, tc);
    return s;
}
