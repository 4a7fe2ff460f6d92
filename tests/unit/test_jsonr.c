/*
 * test_jsonr.c: unit tests of jsonr.c, the worker's JSON reader: values and
 * escapes, numbers (exact fast path against strtod), what is not JSON,
 * repeated keys (small and big objects), depth limit, arena reuse across
 * parses, serialization.
 */

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonr.h"
#include "suites.h"

static ragq_jdoc_t doc = RAGQ_JDOC_INIT;

static ragq_jv_t *
parse(const char *text)
{
    return ragq_jdoc_parse(&doc, text, strlen(text));
}

START_TEST(values)
{
    ragq_jv_t *r = parse(" {\"a\":[1,-2.5e3,true,false,null,\"x\"],"
                         "\"b\":{},\"c\":[]} ");
    ragq_jv_t *a, *v;

    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, RAGQ_JOBJ);
    ck_assert_uint_eq(r->len, 3);
    a = ragq_jv_get_type(r, "a", RAGQ_JARR);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(a->len, 6);
    v = a->child;
    ck_assert(v->type == RAGQ_JNUM && v->is_int && v->num == 1);
    v = v->next;
    ck_assert(v->type == RAGQ_JNUM && !v->is_int && v->num == -2500);
    ck_assert_uint_eq(v->len, 6);
    v = v->next;
    ck_assert(v->type == RAGQ_JBOOL && v->boolean);
    v = v->next;
    ck_assert(v->type == RAGQ_JBOOL && !v->boolean);
    ck_assert_int_eq(v->next->type, RAGQ_JNULL);
    ck_assert_str_eq(v->next->next->str, "x");
    ck_assert_uint_eq(ragq_jv_get(r, "b")->len, 0);
    ck_assert_ptr_null(ragq_jv_get(r, "nope"));
    ck_assert_ptr_null(ragq_jv_get_type(r, "b", RAGQ_JARR));
    ck_assert_ptr_null(ragq_jv_get(a, "a")); /* not an object */
}
END_TEST

START_TEST(strings)
{
    ragq_jv_t *r = parse("[\"q\\\"b\\\\s\\/n\\n\\t\", \"\\u00e9\\u20ac\","
                         "\"\\ud83d\\ude00\", \"\\ud800x\", \"a\\u0000b\","
                         "\"caf\xc3\xa9\"]");
    ragq_jv_t *v;

    ck_assert_ptr_nonnull(r);
    v = r->child;
    ck_assert_str_eq(v->str, "q\"b\\s/n\n\t");
    v = v->next;
    ck_assert_str_eq(v->str, "\xc3\xa9\xe2\x82\xac");
    v = v->next;
    ck_assert_str_eq(v->str, "\xf0\x9f\x98\x80");
    v = v->next;
    ck_assert_str_eq(v->str, "\xef\xbf\xbdx"); /* lone surrogate */
    v = v->next;
    ck_assert_uint_eq(v->len, 3);
    ck_assert(memcmp(v->str, "a\0b", 3) == 0);
    ck_assert_str_eq(v->next->str, "caf\xc3\xa9");
}
END_TEST

/* A document that keeps lone surrogates has them in their 3-byte form; a
 * pair is still one character.  The same for ragq_json_unescape_lone. */
START_TEST(lone_surrogates_kept)
{
    ragq_jdoc_t       lone = {NULL, 1};
    static const char text[] =
        "[\"\\ud83dx\", \"\\uDE00\", \"\\ud83d\\ude00\"]";
    ragq_jv_t *r = ragq_jdoc_parse(&lone, text, sizeof(text) - 1);
    char       out[16];
    size_t     n;

    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->child->str, "\xed\xa0\xbdx");
    ck_assert_str_eq(r->child->next->str, "\xed\xb8\x80");
    ck_assert_str_eq(r->child->next->next->str, "\xf0\x9f\x98\x80");
    ragq_jdoc_free(&lone);
    ck_assert_ptr_null(lone.blocks);
    ck_assert_int_eq(ragq_json_unescape_lone("\\ud800", 6, out, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(out, "\xed\xa0\x80");
    ck_assert_int_eq(ragq_json_unescape("\\ud800", 6, out, &n), 0);
    ck_assert_str_eq(out, "\xef\xbf\xbd");
}
END_TEST

/* ragq_json_escapes_ok says yes exactly when ragq_json_unescape succeeds. */
START_TEST(escapes_checked_as_unescaped)
{
    static const struct {
        const char *raw; /* between the quotes */
        int         ok;
    } cases[] = {
        {"plain", 1},        {"a\\nb\\t\\\"\\\\\\/", 1},
        {"\\b\\f\\r", 1},    {"\\u00e9\\uD83D\\uDE00", 1},
        {"\\uDE00 lone", 1}, {"\\uABCDx", 1},
        {"\\x41", 0},        {"\\u12", 0},
        {"\\u12G4", 0},      {"\\uZZZZ", 0},
        {"end\\", 0},        {"\\a", 0},
        {"\\u004", 0},       {"ok\\u0041\\'", 0},
    };
    char   out[64];
    size_t n;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].raw);

        ck_assert_msg(ragq_json_escapes_ok(cases[i].raw, len) == cases[i].ok,
                      "escapes_ok(%s)", cases[i].raw);
        ck_assert_msg((ragq_json_unescape(cases[i].raw, len, out, &n) == 0) ==
                          cases[i].ok,
                      "unescape(%s)", cases[i].raw);
    }
}
END_TEST

START_TEST(not_json)
{
    static const char *bad[] = {
        "",        " ",         "{",     "[1,]",  "{\"a\" 1}",    "{\"a\":}",
        "[01]",    "[1.]",      "[.5]",  "[1e]",  "[-]",          "\"abc",
        "\"\\x\"", "\"\\u12\"", "nul",   "[1] x", "{\"a\":1,}",   "[1 2]",
        "{1:2}",   "truex",     "[NaN]", "'a'",   "[\"a\"\"b\"]", "+1",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i]) != NULL) {
            ck_abort_msg("accepted: %s", bad[i]);
        }
    }
    ck_assert_ptr_null(ragq_jdoc_parse(&doc, NULL, 0));
    /* The length counts, not a NUL. */
    ck_assert_ptr_null(ragq_jdoc_parse(&doc, "[1,2]", 3));
    ck_assert_ptr_nonnull(ragq_jdoc_parse(&doc, "[1,2]xx", 5));
}
END_TEST

START_TEST(depth)
{
    char  *s = malloc(2 * 300 + 1);
    size_t i;

    for (i = 0; i < 300; i++) {
        s[i] = '[';
        s[600 - 1 - i] = ']';
    }
    s[600] = '\0';
    ck_assert_ptr_null(parse(s)); /* 300 > 256 levels */
    s[0] = ' ';
    s[599] = ' ';
    for (i = 0; i < 44; i++) {
        s[i] = ' ';
        s[599 - i] = ' ';
    }
    ck_assert_ptr_nonnull(parse(s)); /* 256 levels */
    free(s);
}
END_TEST

START_TEST(numbers_match_strtod)
{
    unsigned long long x = 88172645463325252ULL;
    char               text[64];
    long               bad = 0;

    for (long i = 0; i < 100000; i++) {
        ragq_jv_t *v;
        double     ref;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        switch (i % 4) {
        case 0:
            snprintf(text, sizeof(text), "%.17g",
                     (double) (x % 1000000007) / (double) (x % 997 + 1));
            break;
        case 1:
            snprintf(text, sizeof(text), "%.*g", (int) (x % 17) + 1,
                     ((double) (x % 2000001) - 1000000) / 1e6);
            break;
        case 2:
            snprintf(text, sizeof(text), "%llue%d", x % 100000000000ULL,
                     (int) ((x >> 40) % 60) - 30);
            break;
        default:
            snprintf(text, sizeof(text), "-0.%015llu", x % 1000000000000000ULL);
            break;
        }
        v = parse(text);
        ref = strtod(text, NULL);
        if ((v == NULL || v->type != RAGQ_JNUM ||
             memcmp(&v->num, &ref, sizeof(ref)) != 0) &&
            bad++ < 5) {
            fprintf(stderr, "%s: %.17g, strtod %.17g\n", text, v ? v->num : NAN,
                    ref);
        }
    }
    ck_assert_int_eq(bad, 0);
    ck_assert(parse("-0")->is_int && signbit(parse("-0")->num));
    ck_assert(parse("1e999") && isinf(parse("1e999")->num));
    ck_assert_double_eq(parse("123456789012345678901234567890")->num,
                        123456789012345678901234567890.0);
}
END_TEST

START_TEST(repeated_keys_and_to_json)
{
    ragq_jv_t *r =
        parse("{\"a\":1,\"b\":\"x\\u00e9\\n\",\"a\":[2,{\"c\":null}],"
              "\"n\":18446744073709551615,\"f\":1.50}");
    char *s;

    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(ragq_jv_get(r, "a")->type, RAGQ_JARR);
    s = ragq_jv_to_json(r);
    ck_assert_str_eq(s, "{\"a\":[2,{\"c\":null}],\"b\":\"x\xc3\xa9\\n\","
                        "\"n\":18446744073709551615,\"f\":1.50}");
    free(s);
}
END_TEST

/*
 * Past 16 members, repeated keys are found by sorting: the same text as
 * the pairwise way (first place, last value), and an object of 200,000
 * members, half of them repeats, written once each (pairwise took minutes
 * on such an object from a hostile upstream, with the loop held).
 */
START_TEST(repeated_keys_in_big_objects)
{
    const char *text = "{\"k9\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,"
                       "\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k1\":10,"
                       "\"k\":11,\"k10\":12,\"k11\":13,\"k12\":14,"
                       "\"k13\":15,\"k14\":16,\"k9\":17,\"k15\":18,"
                       "\"k1\":19}";
    size_t      n = 200000, i, o = 0, keys = 0;
    char       *big = malloc(n * 24 + 16), *s, *p;

    s = ragq_jv_to_json(parse(text));
    ck_assert_str_eq(s, "{\"k9\":17,\"k1\":19,\"k2\":2,\"k3\":3,\"k4\":4,"
                        "\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k\":11,"
                        "\"k10\":12,\"k11\":13,\"k12\":14,\"k13\":15,"
                        "\"k14\":16,\"k15\":18}");
    free(s);

    ck_assert_ptr_nonnull(big);
    big[o++] = '{';
    for (i = 0; i < n; i++) {
        o += (size_t) sprintf(big + o, "%s\"m%zu\":%zu", i ? "," : "",
                              i % (n / 2), i);
    }
    big[o++] = '}';
    big[o] = '\0';
    s = ragq_jv_to_json(parse(big));
    ck_assert_ptr_nonnull(s);
    /* by hand: ASan's strstr reads the whole rest of s on every call */
    for (p = s; *p; p++) {
        keys += p[0] == '"' && p[1] == 'm';
    }
    ck_assert_uint_eq(keys, n / 2);
    /* the first key, with the value of its repeat */
    p = "{\"m0\":100000,\"m1\":100001,";
    ck_assert(strncmp(s, p, strlen(p)) == 0);
    free(s);
    free(big);
}
END_TEST

START_TEST(arena_reuse)
{
    /* A big document, then small ones: the arena is reused, no leak (ASan
     * checks), and old trees are not needed after the next parse. */
    size_t n = 20000, i, o = 0;
    char  *big = malloc(n * 8 + 16);

    big[o++] = '[';
    for (i = 0; i < n; i++) {
        o += (size_t) sprintf(big + o, "%s\"v%zu\"", i ? "," : "", i % 100);
    }
    big[o++] = ']';
    big[o] = '\0';
    ck_assert_uint_eq(parse(big)->len, n);
    ck_assert_uint_eq(parse(big)->len, n);
    ck_assert_uint_eq(parse("[1]")->len, 1);
    free(big);
    ragq_jdoc_free(&doc);
    ck_assert_uint_eq(parse("[1,2]")->len, 2);
    ragq_jdoc_free(&doc);
    /* freed for good: a document on the stack (callback.c's) must not keep
     * its first block, or every callback leaked 16 kB */
    ck_assert_ptr_null(doc.blocks);
}
END_TEST

Suite *
ragq_suite_jsonr(void)
{
    Suite *s = suite_create("jsonr");
    TCase *tc = tcase_create("jsonr");

    tcase_add_test(tc, values);
    tcase_add_test(tc, strings);
    tcase_add_test(tc, lone_surrogates_kept);
    tcase_add_test(tc, escapes_checked_as_unescaped);
    tcase_add_test(tc, not_json);
    tcase_add_test(tc, depth);
    tcase_add_test(tc, numbers_match_strtod);
    tcase_add_test(tc, repeated_keys_and_to_json);
    tcase_add_test(tc, repeated_keys_in_big_objects);
    tcase_add_test(tc, arena_reuse);
    suite_add_tcase(s, tc);
    return s;
}
