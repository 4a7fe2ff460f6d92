/*
 * test_jsonw.c: worker/jsonw.c, the JSON writer: large buffers, escapes,
 * and numbers exactly as printf's "%.*g" prints them.
 */

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "suites.h"

START_TEST(jbuf_large)
{
    ragq_jbuf_t b;
    char       *s;

    ragq_jbuf_init(&b, 0);
    for (int i = 0; i < 100000; i++) {
        ragq_jbuf_string(&b, "ab\"c", 4);
    }
    s = ragq_jbuf_finish(&b);
    ck_assert_uint_eq(strlen(s), 100000 * 7);
    ck_assert(strncmp(s, "\"ab\\\"c\"\"ab", 10) == 0);
    free(s);

    ragq_jbuf_init(&b, 0);
    ragq_jbuf_number(&b, 0.1234567891, 7);
    ragq_jbuf_add(&b, " ", 1);
    ragq_jbuf_number(&b, -1.5e-9, 7);
    ragq_jbuf_add(&b, " ", 1);
    ragq_jbuf_number(&b, 0.0 / 0.0, 7);
    s = ragq_jbuf_finish(&b);
    ck_assert_str_eq(s, "0.1234568 -1.5e-09 null");
    free(s);
}
END_TEST

START_TEST(jbuf_number_matches_printf)
{
    /* The fast float path must print exactly what "%.*g" prints: random
     * float bit patterns, embedding-like values, dyadic values full of
     * rounding ties, and decimal values near ties. */
    unsigned long long x = 88172645463325252ULL;
    char               ref[64];
    ragq_jbuf_t        b;
    long               bad = 0;

    for (long i = 0; i < 200000; i++) {
        double   v;
        unsigned u;
        float    f;
        int      prec = i % 5 == 0 ? 6 : 7;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        switch (i % 5) {
        case 4:
            /* zeros of both signs and tiny values (exponent style) */
            v = x % 3 == 0 ? ((x >> 8) % 2 ? -0.0 : 0.0)
                : x % 3 == 1
                    ? (double) (float) ((double) (x % 2000001) *
                                        pow(10, -(double) ((x >> 40) % 16) - 5))
                    : -(double) (x % 99999999) * 1e-13;
            break;
        case 0:
            u = (unsigned) x;
            memcpy(&f, &u, sizeof(f));
            v = f;
            break;
        case 1:
            v = (float) (((double) (x % 2000001) - 1000000) / 1000000.0);
            break;
        case 2:
            v = (double) (x % 100000000) / (double) (1ULL << ((x >> 40) % 30));
            break;
        default:
            v = (double) (x % 20000001) / pow(10, (double) ((x >> 40) % 12));
            break;
        }
        if (!isfinite(v)) {
            continue;
        }
        ragq_jbuf_init(&b, 0);
        ragq_jbuf_number(&b, v, prec);
        char *got = ragq_jbuf_finish(&b);
        snprintf(ref, sizeof(ref), "%.*g", prec, v);
        if (strcmp(got, ref) != 0 && bad++ < 5) {
            fprintf(stderr, "%.17g: %s, printf %s\n", v, got, ref);
        }
        free(got);
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

Suite *
ragq_suite_jsonw(void)
{
    Suite *s = suite_create("jsonw");
    TCase *tc = tcase_create("jsonw");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, jbuf_large);
    tcase_add_test(tc, jbuf_number_matches_printf);
    suite_add_tcase(s, tc);
    return s;
}
