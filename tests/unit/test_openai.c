/*
 * test_openai.c: unit tests of openai.c: embeddings and chat request bodies
 * (the RAG prompt format the stand-in relies on) and the parsing of their
 * answers, malformed ones included.
 */

#include <check.h>
#include <json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "openai.h"
#include "suites.h"

/* ---- embeddings ---- */

START_TEST(emb_body)
{
    const char *in[] = {"what is our \"refund\" policy?\n", "caf\xc3\xa9",
                        "bad\xff"};
    char *body = ragq_openai_embeddings_body("text-embedding-3-small", in, 3);
    struct json_object *o = ragq_test_strict_parse(body), *arr;

    ck_assert_msg(o != NULL, "%s", body);
    ck_assert_str_eq(json_object_get_string(ragq_test_key(o, "model")),
                     "text-embedding-3-small");
    ck_assert_str_eq(
        json_object_get_string(ragq_test_key(o, "encoding_format")), "float");
    arr = ragq_test_key(o, "input");
    ck_assert_int_eq(json_object_array_length(arr), 3);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(arr, 0)),
                     in[0]);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(arr, 1)),
                     in[1]);
    ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(arr, 2)),
                     "bad\xef\xbf\xbd");
    ck_assert_int_eq(json_object_object_length(o), 3);
    json_object_put(o);
    free(body);
}
END_TEST

static int
parse_emb(const char *body, size_t n, float **v, size_t *dim,
          ragq_upstream_error_t *err)
{
    memset(err, 0, sizeof(*err));
    return ragq_openai_embeddings_parse(body, strlen(body), n, v, dim, err);
}

START_TEST(emb_parse_reversed_index)
{
    /* The stand-in's (and some servers') order: reversed. */
    const char *body =
        "{\"object\":\"list\",\"data\":["
        "{\"object\":\"embedding\",\"index\":2,\"embedding\":[7,8.5,-1.2e-05]},"
        "{\"object\":\"embedding\",\"index\":0,\"embedding\":[1,2,3]},"
        "{\"object\":\"embedding\",\"index\":1,\"embedding\":[4,5,6]}],"
        "\"model\":\"m\",\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}";
    ragq_upstream_error_t err;
    float                *v = NULL;
    size_t                dim = 0;

    ck_assert_int_eq(parse_emb(body, 3, &v, &dim, &err), 0);
    ck_assert_uint_eq(dim, 3);
    ck_assert_float_eq(v[0], 1.0f);
    ck_assert_float_eq(v[2], 3.0f);
    ck_assert_float_eq(v[3], 4.0f);
    ck_assert_float_eq(v[6], 7.0f);
    ck_assert_float_eq(v[7], 8.5f);
    ck_assert_float_eq_tol(v[8], -1.2e-05f, 1e-12);
    free(v);
}
END_TEST

START_TEST(emb_parse_base64)
{
    /* [1.0, -2.5, 0.25] and [1, 2, 3] as little-endian float32, base64;
     * the second as a plain array: a server may mix, the vectors agree. */
    const char *body = "{\"data\":[{\"index\":1,\"embedding\":[1,2,3]},"
                       "{\"index\":0,\"embedding\":\"AACAPwAAIMAAAIA+\"}]}";
    ragq_upstream_error_t err;
    float                *v = NULL;
    size_t                dim = 0;

    ck_assert_int_eq(parse_emb(body, 2, &v, &dim, &err), 0);
    ck_assert_uint_eq(dim, 3);
    ck_assert_float_eq(v[0], 1.0f);
    ck_assert_float_eq(v[1], -2.5f);
    ck_assert_float_eq(v[2], 0.25f);
    ck_assert_float_eq(v[3], 1.0f);
    free(v);

    /* Padded form. */
    ck_assert_int_eq(parse_emb("{\"data\":[{\"index\":0,\"embedding\":"
                               "\"AACAPwAAAEA=\"}]}",
                               1, &v, &dim, &err),
                     0);
    ck_assert_uint_eq(dim, 2);
    ck_assert_float_eq(v[1], 2.0f);
    free(v);
}
END_TEST

START_TEST(emb_parse_errors)
{
    static const struct {
        const char *body;
        size_t      n;
        const char *msg; /* a part of the expected message */
    } c[] = {
        {"not json", 1, "not a JSON object"},
        {"[1,2]", 1, "not a JSON object"},
        {"{\"object\":\"list\"}", 1, "no \"data\""},
        {"{\"data\":{}}", 1, "no \"data\""},
        /* count mismatch */
        {"{\"data\":[{\"index\":0,\"embedding\":[1]}]}", 2,
         "1 embeddings for 2 inputs"},
        {"{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":1,"
         "\"embedding\":[1]}]}",
         1, "2 embeddings for 1 inputs"},
        /* missing, duplicate, out-of-range, non-integer index */
        {"{\"data\":[{\"embedding\":[1]},{\"index\":1,\"embedding\":[1]}]}", 2,
         "no integer \"index\""},
        {"{\"data\":[{\"index\":0,\"embedding\":[1]},{\"index\":0,"
         "\"embedding\":[2]}]}",
         2, "index 0 appears twice"},
        {"{\"data\":[{\"index\":5,\"embedding\":[1]}]}", 1, "index 5"},
        {"{\"data\":[{\"index\":-1,\"embedding\":[1]}]}", 1, "index -1"},
        {"{\"data\":[{\"index\":\"0\",\"embedding\":[1]}]}", 1,
         "no integer \"index\""},
        /* values */
        {"{\"data\":[{\"index\":0,\"embedding\":[1,\"2\"]}]}", 1,
         "non-numeric value at position 1"},
        {"{\"data\":[{\"index\":0,\"embedding\":[1,null]}]}", 1, "non-numeric"},
        {"{\"data\":[{\"index\":0,\"embedding\":[1,1e999]}]}", 1, "non-finite"},
        {"{\"data\":[{\"index\":0}]}", 1, "no \"embedding\""},
        {"{\"data\":[7]}", 1, "no \"embedding\""},
        {"{\"data\":[{\"index\":0,\"embedding\":{}}]}", 1,
         "neither a number array nor a base64 string"},
        {"{\"data\":[{\"index\":0,\"embedding\":[]}]}", 1, "empty embedding"},
        /* inconsistent dimensions */
        {"{\"data\":[{\"index\":0,\"embedding\":[1,2,3]},{\"index\":1,"
         "\"embedding\":[1,2]}]}",
         2, "embedding 1 has 2 dimensions, the first had 3"},
        {"{\"data\":[{\"index\":0,\"embedding\":[1,2,3]},{\"index\":1,"
         "\"embedding\":\"AACAPwAAAEA=\"}]}",
         2, "embedding 1 has 2 dimensions"},
        /* base64 that is not float32 data, and a NaN in it */
        {"{\"data\":[{\"index\":0,\"embedding\":\"AACAPwA\"}]}", 1,
         "not base64 float32"},
        {"{\"data\":[{\"index\":0,\"embedding\":\"AAC*PwAAAEA=\"}]}", 1,
         "not base64 float32"},
        {"{\"data\":[{\"index\":0,\"embedding\":\"AAAAPwAAAD8AAMB/\"}]}", 1,
         "non-finite value at position 2"},
        /* an error object in a 200 */
        {"{\"error\":{\"message\":\"model is loading\"}}", 1,
         "model is loading"},
    };
    ragq_upstream_error_t err;
    float                *v;
    size_t                dim;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        v = (float *) &dim; /* must be reset */
        dim = 99;
        ck_assert_msg(parse_emb(c[i].body, c[i].n, &v, &dim, &err) == -1,
                      "case %zu accepted", i);
        ck_assert_ptr_null(v);
        ck_assert_uint_eq(dim, 0);
        ck_assert_str_eq(err.code, "bad_upstream_response");
        ck_assert_int_eq(err.retryable, 0);
        ck_assert_msg(strstr(err.message, c[i].msg) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                      c[i].msg);
    }
}
END_TEST

/* ---- chat ---- */

static char *
user_content(const char *body, struct json_object **root)
{
    struct json_object *msgs, *m;

    *root = ragq_test_strict_parse(body);
    ck_assert_msg(*root != NULL, "%s", body);
    msgs = ragq_test_key(*root, "messages");
    ck_assert_int_eq(json_object_array_length(msgs), 2);
    m = json_object_array_get_idx(msgs, 0);
    ck_assert_str_eq(json_object_get_string(ragq_test_key(m, "role")),
                     "system");
    m = json_object_array_get_idx(msgs, 1);
    ck_assert_str_eq(json_object_get_string(ragq_test_key(m, "role")), "user");
    return (char *) json_object_get_string(ragq_test_key(m, "content"));
}

START_TEST(chat_body_prompt)
{
    ragq_source_t src[3] = {
        {"1", 0.9, "handbook.md", "Refunds are issued\r\nwithin 30 days.\n\n"},
        {"2", 0.8, "guide (v2).md", "Line\xe2\x80\xa8sep\x0bvt\x85ok"},
        {"3", 0.7, "multi\nline", "keep \"quotes\" and \\ and\ttabs"},
    };
    struct json_object *root, *sys;
    char               *body =
        ragq_openai_chat_body("gpt-4o-mini", "why?\nreally?", src, 3, 512);
    const char *user = user_content(body, &root);
    const char *s;

    ck_assert_str_eq(user,
                     "[1] (handbook.md) Refunds are issued within 30 days. \n"
                     "[2] (guide (v2).md) Line sep vt\xef\xbf\xbdok\n"
                     "[3] (multi line) keep \"quotes\" and \\ and\ttabs\n"
                     "\n"
                     "Question: why?\nreally?");
    sys = json_object_array_get_idx(ragq_test_key(root, "messages"), 0);
    s = json_object_get_string(ragq_test_key(sys, "content"));
    ck_assert_ptr_nonnull(strstr(s, "only"));
    ck_assert_ptr_nonnull(strstr(s, "[1]"));
    ck_assert_ptr_nonnull(strstr(s, "don't know"));
    ck_assert_str_eq(json_object_get_string(ragq_test_key(root, "model")),
                     "gpt-4o-mini");
    ck_assert_int_eq(json_object_get_int(ragq_test_key(root, "max_tokens")),
                     512);
    ck_assert(!json_object_get_boolean(ragq_test_key(root, "stream")));
    json_object_put(root);
    free(body);
}
END_TEST

START_TEST(chat_body_no_sources_no_max_tokens)
{
    struct json_object *root, *v;
    char       *body = ragq_openai_chat_body("llama3", "hi", NULL, 0, 0);
    const char *user = user_content(body, &root);

    ck_assert_str_eq(user, "Question: hi");
    ck_assert(!json_object_object_get_ex(root, "max_tokens", &v));
    json_object_put(root);
    free(body);
}
END_TEST

static double
build_cpu(const ragq_source_t *src, size_t n, int rounds)
{
    clock_t t0 = clock();
    char   *body;

    for (int r = 0; r < rounds; r++) {
        body = ragq_openai_chat_body("m", "q", src, n, 0);
        ck_assert_ptr_nonnull(body);
        ck_assert_uint_gt(strlen(body), n * 16000);
        free(body);
    }
    return (double) (clock() - t0) / CLOCKS_PER_SEC;
}

START_TEST(chat_body_big_is_linear)
{
    /* The same bytes as 64 prompts of 8 sources and as 1 prompt of 512:
     * linear building costs about the same (a few times more for cache
     * misses and page faults of the 8 MiB body), quadratic 64 times more.
     * A ratio, not a time, so valgrind and ASan runs judge alike. */
    ragq_source_t *src = calloc(512, sizeof(*src));
    char          *text = malloc(16385);
    double         small, big;

    memset(text, 'w', 16384);
    for (int i = 0; i < 16384; i += 64) {
        text[i] = '\n';
    }
    text[16384] = '\0';
    for (int i = 0; i < 512; i++) {
        src[i] = (ragq_source_t){"id", 0.5, "doc.md", text};
    }
    build_cpu(src, 512, 1); /* warm up the allocator */
    small = build_cpu(src, 8, 64);
    big = build_cpu(src, 512, 1);
    ck_assert_msg(big < small * 16 + 0.05,
                  "8 sources x64: %.3fs, 512 x1: %.3fs", small, big);
    free(text);
    free(src);
}
END_TEST

static int
parse_chat(const char *body, char **answer, char **usage,
           ragq_upstream_error_t *err)
{
    memset(err, 0, sizeof(*err));
    return ragq_openai_chat_parse(body, strlen(body), answer, usage, err);
}

START_TEST(chat_parse_string)
{
    /* The reference's answer, verbatim shape. */
    const char *body =
        "{\"id\": \"chatcmpl-abc\", \"object\": \"chat.completion\", "
        "\"created\": 1741569952, \"model\": \"gpt-4o-mini\", \"choices\": "
        "[{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": "
        "\"Refunds are issued within 30 days [1].\", \"refusal\": null, "
        "\"annotations\": []}, \"logprobs\": null, \"finish_reason\": "
        "\"stop\"}], \"usage\": {\"prompt_tokens\": 412, "
        "\"completion_tokens\": 19, \"total_tokens\": 431, "
        "\"prompt_tokens_details\": {\"cached_tokens\": 0}}, "
        "\"service_tier\": \"default\"}";
    ragq_upstream_error_t err;
    char                 *answer, *usage;
    struct json_object   *u;

    ck_assert_int_eq(parse_chat(body, &answer, &usage, &err), 0);
    ck_assert_str_eq(answer, "Refunds are issued within 30 days [1].");
    ck_assert_ptr_nonnull(usage);
    u = ragq_test_strict_parse(usage);
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(json_object_get_int(ragq_test_key(u, "prompt_tokens")),
                     412);
    ck_assert_int_eq(json_object_get_int(ragq_test_key(u, "total_tokens")),
                     431);
    json_object_put(u);
    free(answer);
    free(usage);
}
END_TEST

START_TEST(chat_parse_parts_and_no_usage)
{
    const char *body =
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Hello \"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},"
        "{\"type\":\"reasoning\",\"text\":\"hmm\"},"
        "{\"type\":\"text\",\"text\":\"world [1]\"}]},"
        "\"finish_reason\":\"stop\"}],\"usage\":null}";
    ragq_upstream_error_t err;
    char                 *answer, *usage;

    ck_assert_int_eq(parse_chat(body, &answer, &usage, &err), 0);
    ck_assert_str_eq(answer, "Hello world [1]");
    ck_assert_ptr_null(usage);
    free(answer);

    /* Invalid UTF-8 in the answer comes out valid. */
    ck_assert_int_eq(parse_chat("{\"choices\":[{\"message\":{\"content\":"
                                "\"a\xff"
                                "b\"}}]}",
                                &answer, &usage, &err),
                     0);
    ck_assert_str_eq(answer, "a\xef\xbf\xbd"
                             "b");
    free(answer);
}
END_TEST

START_TEST(chat_parse_refusal)
{
    const char *body =
        "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":null,\"refusal\":\"I'm sorry, I can't help with "
        "that.\"},\"finish_reason\":\"stop\"}]}";
    ragq_upstream_error_t err;
    char                 *answer = (char *) "x", *usage = (char *) "x";

    ck_assert_int_eq(parse_chat(body, &answer, &usage, &err), -1);
    ck_assert_ptr_null(answer);
    ck_assert_ptr_null(usage);
    ck_assert_str_eq(err.code, "model_refused");
    ck_assert_int_eq(err.retryable, 0);
    ck_assert_str_eq(err.message, "I'm sorry, I can't help with that.");
}
END_TEST

START_TEST(chat_parse_errors)
{
    static const struct {
        const char *body, *msg;
    } c[] = {
        {"", "not a JSON object"},
        {"<html>", "not a JSON object"},
        {"{}", "no choices"},
        {"{\"choices\":[]}", "no choices"},
        {"{\"choices\":{}}", "no choices"},
        {"{\"choices\":[1]}", "no message"},
        {"{\"choices\":[{\"message\":\"hi\"}]}", "no message"},
        {"{\"choices\":[{\"message\":{\"content\":null},\"finish_reason\":"
         "\"length\"}]}",
         "empty content (finish_reason: length)"},
        {"{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}",
         "empty content"},
        {"{\"choices\":[{\"message\":{\"content\":\"\"}}]}", "empty content"},
        {"{\"choices\":[{\"message\":{\"content\":[{\"type\":\"image_url\"}]"
         "}}]}",
         "empty content"},
        {"{\"choices\":[{\"message\":{\"content\":42}}]}", "neither a string"},
        {"{\"error\":{\"message\":\"upstream model crashed\"}}",
         "upstream model crashed"},
    };
    ragq_upstream_error_t err;
    char                 *answer, *usage;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        ck_assert_msg(parse_chat(c[i].body, &answer, &usage, &err) == -1,
                      "case %zu accepted", i);
        ck_assert_ptr_null(answer);
        ck_assert_ptr_null(usage);
        ck_assert_str_eq(err.code, "bad_upstream_response");
        ck_assert_msg(strstr(err.message, c[i].msg) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                      c[i].msg);
    }
}
END_TEST

Suite *
ragq_suite_openai(void)
{
    Suite *s = suite_create("openai");
    TCase *tc = tcase_create("openai");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, emb_body);
    tcase_add_test(tc, emb_parse_reversed_index);
    tcase_add_test(tc, emb_parse_base64);
    tcase_add_test(tc, emb_parse_errors);
    tcase_add_test(tc, chat_body_prompt);
    tcase_add_test(tc, chat_body_no_sources_no_max_tokens);
    tcase_add_test(tc, chat_body_big_is_linear);
    tcase_add_test(tc, chat_parse_string);
    tcase_add_test(tc, chat_parse_parts_and_no_usage);
    tcase_add_test(tc, chat_parse_refusal);
    tcase_add_test(tc, chat_parse_errors);
    suite_add_tcase(s, tc);
    return s;
}
