/*
 * test_openai_chunk.c: unit tests of openai_chunk.c, the quick reader of
 * one chat.completion.chunk: the events a model streams are read by it
 * (not left to jsonr), with the fields jsonr would give; what it must not
 * vouch for is declined.  That jsonr reads accepted events the same way is
 * test_openai_stream.c's and fuzz_openai.c's.
 */

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "openai_chunk.h"
#include "suites.h"

static int
read_str(const char *text, ragq_chat_chunk_t *ck)
{
    return ragq_chat_chunk_read(text, strlen(text), ck);
}

static void
assert_field(const char *got, size_t len, const char *want)
{
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert(memcmp(got, want, len) == 0);
}

START_TEST(reads_what_models_send)
{
    ragq_chat_chunk_t ck;

    /* OpenAI's chunk as sent, and the first (role) and last ones */
    ck_assert_int_eq(
        read_str(" {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                 "\"created\":1,\"model\":\"m\",\"system_fingerprint\":\"fp\","
                 "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" Paris\"},"
                 "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n",
                 &ck),
        0);
    ck_assert_int_eq(ck.has_choice, 1);
    ck_assert_int_eq(ck.has_delta, 1);
    assert_field(ck.content, ck.content_len, " Paris");
    ck_assert_int_eq(ck.content_escaped, 0);
    ck_assert_ptr_null(ck.finish);
    ck_assert_ptr_null(ck.refusal);

    ck_assert_int_eq(read_str("{\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                              "\"assistant\",\"content\":\"\"}}]}",
                              &ck),
                     0);
    assert_field(ck.content, ck.content_len, "");

    ck_assert_int_eq(read_str("{\"choices\":[{\"index\":0,\"delta\":{},"
                              "\"finish_reason\":\"stop\"}]}",
                              &ck),
                     0);
    ck_assert_ptr_null(ck.content);
    assert_field(ck.finish, ck.finish_len, "stop");

    /* escapes in the text are left for ragq_json_unescape */
    ck_assert_int_eq(
        read_str("{\"choices\":[{\"delta\":{\"content\":\"a\\nb\"}}]}", &ck),
        0);
    assert_field(ck.content, ck.content_len, "a\\nb");
    ck_assert_int_eq(ck.content_escaped, 1);

    /* a refusal, null content, the usage chunk with no choice */
    ck_assert_int_eq(read_str("{\"choices\":[{\"delta\":{\"content\":null,"
                              "\"refusal\":\"no\"}}]}",
                              &ck),
                     0);
    ck_assert_ptr_null(ck.content);
    assert_field(ck.refusal, ck.refusal_len, "no");
    ck_assert_int_eq(read_str("{\"choices\":[],\"usage\":null}", &ck), 0);
    ck_assert_int_eq(ck.has_choice, 0);
}
END_TEST

START_TEST(declines_what_jsonr_must_read)
{
    ragq_chat_chunk_t        ck;
    char                     deep[256];
    size_t                   i, n = 0;
    static const char *const declined[] = {
        /* the server's error, the usage object */
        "{\"error\":{\"message\":\"x\"}}",
        "{\"choices\":[],\"usage\":{\"total_tokens\":3}}",
        /* repeated members it reads */
        "{\"choices\":[],\"choices\":[]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}",
        /* an escaped name where it reads, escapes in finish_reason, refusal */
        "{\"ch\\u006fices\":[]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"st\\u006fp\"}]}",
        "{\"choices\":[{\"delta\":{\"refusal\":\"n\\to\"}}]}",
        /* content neither a string nor null */
        "{\"choices\":[{\"delta\":{\"content\":5}}]}",
        /* not a JSON object */
        "[]",
        "",
        "{\"choices\":[]}x",
        "{\"choices\":[],}",
        "{\"a\":\"\\q\"}",
        "{\"a\":01}",
        "{\"a\":\"unterminated}",
    };

    for (i = 0; i < sizeof(declined) / sizeof(declined[0]); i++) {
        ck_assert_msg(read_str(declined[i], &ck) == -1, "read: %s",
                      declined[i]);
    }
    n += (size_t) sprintf(deep, "{\"x\":");
    for (i = 0; i < 70; i++) {
        deep[n++] = '[';
    }
    for (i = 0; i < 70; i++) {
        deep[n++] = ']';
    }
    strcpy(deep + n, "}");
    ck_assert_int_eq(read_str(deep, &ck), -1);
    /* but nested values it only passes over, with escaped names: read */
    ck_assert_int_eq(
        read_str("{\"x\":{\"\\u0061\":[1,-2.5e+3,true,false,null,\"\\\"\"]},"
                 "\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}",
                 &ck),
        0);
    assert_field(ck.content, ck.content_len, "ok");
}
END_TEST

/* Read by shape and in full: the same answer, field by field. */
static void
assert_same(ragq_chat_chunk_shape_t *sh, const char *text)
{
    ragq_chat_chunk_t a, b;
    int ra = ragq_chat_chunk_read_shaped(sh, text, strlen(text), &a);
    int rb = ragq_chat_chunk_read(text, strlen(text), &b);

    ck_assert_msg(ra == rb, "shaped %d, in full %d: %s", ra, rb, text);
    if (ra != 0) {
        return;
    }
    ck_assert_int_eq(a.has_choice, b.has_choice);
    ck_assert_int_eq(a.has_delta, b.has_delta);
    ck_assert_int_eq(a.content_escaped, b.content_escaped);
#define SAME(f, n) ck_assert(a.f == b.f && (a.f == NULL || a.n == b.n))
    SAME(content, content_len);
    SAME(finish, finish_len);
    SAME(refusal, refusal_len);
#undef SAME
}

#define EV(content, finish)                                               \
    "{\"id\":\"c-1\",\"object\":\"chat.completion.chunk\",\"created\":7," \
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":" content "},"      \
    "\"finish_reason\":" finish "}]}"

START_TEST(reads_by_shape)
{
    ragq_chat_chunk_shape_t sh;

    memset(&sh, 0, sizeof(sh));
    assert_same(&sh, EV("\"I \"", "null")); /* learnt */
    ck_assert_uint_eq(sh.hits, 0);
    assert_same(&sh, EV("\"don't \"", "null"));
    assert_same(&sh, EV("\"\"", "null"));
    assert_same(&sh, EV("\"say \\\"hi\\\" \\u00e9\"", "null")); /* escapes */
    ck_assert_uint_eq(sh.hits, 3);
    /* a bad escape, an unterminated string: declined as in full */
    assert_same(&sh, EV("\"bad \\x\"", "null"));
    assert_same(&sh, EV("\"open", "null"));
    /* the same bytes around, then more: not this shape */
    assert_same(&sh, EV("\"a\"", "null") " ");
    assert_same(&sh, EV("\"a\"", "null") "x");
    ck_assert_uint_eq(sh.hits, 3);
    /* the last event: finish_reason read in full, then its shape */
    assert_same(&sh, EV("\"end\"", "\"stop\""));
    assert_same(&sh, EV("\"more\"", "\"stop\""));
    ck_assert_uint_eq(sh.hits, 4);
    /* a quote inside the content that ends the string early: the rest
     * must then be the suffix exactly, or it is read in full */
    assert_same(&sh, EV("\"a\",\"x\":\"b\"", "\"stop\""));
    assert_same(&sh, EV("null", "null"));
    assert_same(&sh, EV("\"back\"", "null"));
    ck_assert_uint_eq(sh.hits, 4);
    assert_same(&sh, EV("\"again\"", "null"));
    ck_assert_uint_eq(sh.hits, 5);
    ragq_chat_chunk_shape_free(&sh);
}
END_TEST

Suite *
ragq_suite_openai_chunk(void)
{
    Suite *s = suite_create("openai_chunk");
    TCase *tc = tcase_create("read");

    tcase_add_test(tc, reads_what_models_send);
    tcase_add_test(tc, declines_what_jsonr_must_read);
    tcase_add_test(tc, reads_by_shape);
    suite_add_tcase(s, tc);
    return s;
}
