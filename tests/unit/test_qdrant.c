/*
 * test_qdrant.c: unit tests of qdrant.c: paths, query / create / upsert
 * bodies, the delete/count filter, and the parsing of query (points/query
 * and legacy points/search), collection-info, collection-create, update
 * and count answers, with answers shaped as in the reference.
 */

#include <check.h>
#include <json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qdrant.h"
#include "suites.h"

START_TEST(paths)
{
    char *p;

    p = ragq_qdrant_path("documents", "/points/query");
    ck_assert_str_eq(p, "/collections/documents/points/query");
    free(p);
    p = ragq_qdrant_path("my docs/é", "/points?wait=true");
    ck_assert_str_eq(p, "/collections/my%20docs%2F%C3%A9/points?wait=true");
    free(p);
    p = ragq_qdrant_path("docs", NULL);
    ck_assert_str_eq(p, "/collections/docs");
    free(p);
}
END_TEST

START_TEST(query_body)
{
    float               v[4] = {0.2f, -0.1f, 0.123456789f, 1e-8f};
    char               *b = ragq_qdrant_query_body(v, 4, 5);
    struct json_object *o = ragq_test_strict_parse(b), *q;

    ck_assert_msg(o != NULL, "%s", b);
    ck_assert_str_eq(b, "{\"query\":[0.2,-0.1,0.1234568,1e-08],\"limit\":5,"
                        "\"with_payload\":true}");
    q = ragq_test_key(o, "query");
    ck_assert_int_eq(json_object_array_length(q), 4);
    for (int i = 0; i < 4; i++) {
        double d = json_object_get_double(json_object_array_get_idx(q, i));
        ck_assert(fabs(d - v[i]) <= fabs(v[i]) * 1e-6);
    }
    json_object_put(o);
    free(b);

    v[1] = NAN;
    ck_assert_ptr_null(ragq_qdrant_query_body(v, 4, 5));
    v[1] = INFINITY;
    ck_assert_ptr_null(ragq_qdrant_query_body(v, 4, 5));
}
END_TEST

START_TEST(create_body)
{
    char *b = ragq_qdrant_create_collection_body(1536);

    ck_assert_str_eq(b, "{\"vectors\":{\"size\":1536,\"distance\":"
                        "\"Cosine\"}}");
    free(b);
}
END_TEST

START_TEST(delete_chunks_body)
{
    char               *src[] = {"docs/a.md", "we \"quote\"/x.md"};
    size_t              from[] = {3, 0};
    char               *b = ragq_qdrant_delete_chunks_body(src, from, 2);
    struct json_object *o = ragq_test_strict_parse(b);

    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(
        b,
        "{\"filter\":{\"should\":["
        "{\"must\":[{\"key\":\"metadata.source\",\"match\":{\"value\":"
        "\"docs/a.md\"}},{\"should\":[{\"key\":\"metadata.chunk\","
        "\"range\":{\"gte\":3}},{\"is_empty\":{\"key\":\"metadata.chunk\"}}]}"
        "]},"
        "{\"must\":[{\"key\":\"metadata.source\",\"match\":{\"value\":"
        "\"we \\\"quote\\\"/x.md\"}},{\"should\":[{\"key\":\"metadata.chunk\","
        "\"range\":{\"gte\":0}},{\"is_empty\":{\"key\":\"metadata.chunk\"}}]}"
        "]}]}}");
    json_object_put(o);
    free(b);
}
END_TEST

START_TEST(upsert_body)
{
    float        v1[3] = {0.1f, 0.2f, 0.3f}, v2[3] = {1, 0, -1};
    ragq_point_t pts[2] = {
        {"5c56c793-69f3-4fbf-87e6-c4bf54c28c26", v1, "docs/a.md",
         "chunk \"one\"\n", 0},
        {"00000000-0000-0000-0000-000000000002", v2, NULL, "bad\xff", 7},
    };
    char               *b = ragq_qdrant_upsert_body(pts, 2, 3);
    struct json_object *o = ragq_test_strict_parse(b), *arr, *p, *pl, *md;

    ck_assert_msg(o != NULL, "%s", b);
    arr = ragq_test_key(o, "points");
    ck_assert_int_eq(json_object_array_length(arr), 2);
    p = json_object_array_get_idx(arr, 0);
    ck_assert(json_object_is_type(ragq_test_key(p, "id"), json_type_string));
    ck_assert_str_eq(json_object_get_string(ragq_test_key(p, "id")),
                     "5c56c793-69f3-4fbf-87e6-c4bf54c28c26");
    ck_assert_int_eq(json_object_array_length(ragq_test_key(p, "vector")), 3);
    ck_assert_double_eq_tol(json_object_get_double(json_object_array_get_idx(
                                ragq_test_key(p, "vector"), 2)),
                            0.3, 1e-7);
    pl = ragq_test_key(p, "payload");
    ck_assert_str_eq(json_object_get_string(ragq_test_key(pl, "page_content")),
                     "chunk \"one\"\n");
    md = ragq_test_key(pl, "metadata");
    ck_assert_str_eq(json_object_get_string(ragq_test_key(md, "source")),
                     "docs/a.md");
    ck_assert_int_eq(json_object_get_int(ragq_test_key(md, "chunk")), 0);
    p = json_object_array_get_idx(arr, 1);
    pl = ragq_test_key(p, "payload");
    ck_assert_str_eq(json_object_get_string(ragq_test_key(pl, "page_content")),
                     "bad\xef\xbf\xbd");
    md = ragq_test_key(pl, "metadata");
    ck_assert_str_eq(json_object_get_string(ragq_test_key(md, "source")), "");
    ck_assert_int_eq(json_object_get_int(ragq_test_key(md, "chunk")), 7);
    ck_assert_ptr_nonnull(strstr(b, "\"vector\":[1,0,-1]"));
    json_object_put(o);
    free(b);

    v2[0] = NAN;
    ck_assert_ptr_null(ragq_qdrant_upsert_body(pts, 2, 3));
    pts[1].vector = NULL;
    ck_assert_ptr_null(ragq_qdrant_upsert_body(pts, 2, 3));

    b = ragq_qdrant_upsert_body(NULL, 0, 3);
    ck_assert_str_eq(b, "{\"points\":[]}");
    free(b);
}
END_TEST

static int
parse_q(const char *body, ragq_source_t **s, size_t *n,
        ragq_upstream_error_t *err)
{
    memset(err, 0, sizeof(*err));
    return ragq_qdrant_query_parse(body, strlen(body), s, n, err);
}

START_TEST(query_parse_points)
{
    /* The reference's answer plus LangChain payloads. */
    const char *body =
        "{\"result\":{\"points\":["
        "{\"id\":42,\"version\":3,\"score\":0.8731,\"payload\":{\"text\":"
        "\"plain text\",\"source\":\"doc-7\",\"tenant\":\"acme\"}},"
        "{\"id\":\"5c56c793-69f3-4fbf-87e6-c4bf54c28c26\",\"version\":5,"
        "\"score\":0.71},"
        "{\"id\":18446744073709551615,\"version\":1,\"score\":1,\"payload\":"
        "{\"page_content\":\"lc text\",\"metadata\":{\"source\":\"a.md\","
        "\"chunk\":2}}},"
        "{\"id\":7,\"version\":1,\"score\":0.5,\"payload\":{\"page_content\":"
        "\"p\",\"metadata\":{\"file_path\":\"/srv/b.pdf\",\"page\":3}}},"
        "{\"id\":8,\"version\":1,\"score\":0.4,\"payload\":{\"page_content\":"
        "\"q\",\"metadata\":{\"url\":\"https://x/y\"}}},"
        "{\"id\":9,\"version\":1,\"score\":0.3,\"payload\":{\"page_content\":"
        "\"r\",\"metadata\":{\"author\":\"z\"}}},"
        "{\"id\":10,\"version\":1,\"score\":-0.2,\"payload\":null}"
        "]},\"status\":\"ok\",\"time\":2.1e-05}";
    ragq_upstream_error_t err;
    ragq_source_t        *s;
    size_t                n;

    ck_assert_int_eq(parse_q(body, &s, &n, &err), 0);
    ck_assert_uint_eq(n, 7);
    ck_assert_str_eq(s[0].id, "42");
    ck_assert_double_eq_tol(s[0].score, 0.8731, 1e-12);
    ck_assert_str_eq(s[0].text, "plain text");
    ck_assert_str_eq(s[0].source, "doc-7");
    ck_assert_str_eq(s[1].id, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26");
    ck_assert_str_eq(s[1].text, "");
    ck_assert_str_eq(s[1].source, "");
    ck_assert_str_eq(s[2].id, "18446744073709551615");
    ck_assert_double_eq(s[2].score, 1.0);
    ck_assert_str_eq(s[2].text, "lc text");
    ck_assert_str_eq(s[2].source, "a.md");
    ck_assert_str_eq(s[3].source, "/srv/b.pdf");
    ck_assert_str_eq(s[4].source, "https://x/y");
    ck_assert_str_eq(s[5].source, "");
    ck_assert_str_eq(s[5].text, "r");
    ck_assert_str_eq(s[6].text, "");
    ck_assert_double_eq_tol(s[6].score, -0.2, 1e-12);
    ragq_sources_free(s, n);
}
END_TEST

START_TEST(query_parse_legacy_and_empty)
{
    ragq_upstream_error_t err;
    ragq_source_t        *s;
    size_t                n;

    ck_assert_int_eq(parse_q("{\"result\":[{\"id\":42,\"version\":3,"
                             "\"score\":0.87,\"payload\":{\"text\":\"t\","
                             "\"source\":\"s\"}}],\"status\":\"ok\","
                             "\"time\":0.001}",
                             &s, &n, &err),
                     0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(s[0].id, "42");
    ck_assert_str_eq(s[0].text, "t");
    ragq_sources_free(s, n);

    ck_assert_int_eq(parse_q("{\"result\":{\"points\":[]},\"status\":\"ok\","
                             "\"time\":0.1}",
                             &s, &n, &err),
                     0);
    ck_assert_uint_eq(n, 0);
    ragq_sources_free(s, n);
    ck_assert_int_eq(parse_q("{\"result\":[],\"status\":\"ok\"}", &s, &n, &err),
                     0);
    ck_assert_uint_eq(n, 0);
    ragq_sources_free(s, n);

    /* Finite at the edges of a double's range: kept as read (an
     * underflow is 0). */
    ck_assert_int_eq(parse_q("{\"result\":[{\"id\":1,\"score\":1e-999},"
                             "{\"id\":2,\"score\":-1.7e308}]}",
                             &s, &n, &err),
                     0);
    ck_assert_uint_eq(n, 2);
    ck_assert_double_eq(s[0].score, 0.0);
    ck_assert_double_eq(s[1].score, -1.7e308);
    ragq_sources_free(s, n);
}
END_TEST

START_TEST(query_parse_errors)
{
    static const struct {
        const char *body, *msg;
    } c[] = {
        {"", "not a JSON object"},
        {"[]", "not a JSON object"},
        {"{\"status\":\"ok\"}", "no \"result\""},
        {"{\"result\":\"x\"}", "no \"result.points\""},
        {"{\"result\":{}}", "no \"result.points\""},
        {"{\"result\":{\"points\":{}}}", "no \"result.points\""},
        {"{\"status\":{\"error\":\"Not found: Collection `x` doesn't "
         "exist!\"},\"time\":0.1}",
         "Not found: Collection `x` doesn't exist!"},
        {"{\"result\":[1]}", "point 0 has no id"},
        {"{\"result\":[{\"id\":1,\"score\":1},{\"score\":1}]}",
         "point 1 has no id"},
        {"{\"result\":[{\"id\":1.5,\"score\":1}]}", "neither an integer"},
        {"{\"result\":[{\"id\":null,\"score\":1}]}", "neither an integer"},
        {"{\"result\":[{\"id\":1,\"score\":1},{\"id\":2}]}",
         "point 1 has no numeric score"},
        {"{\"result\":[{\"id\":\"u\",\"score\":\"0.5\"}]}",
         "point 0 has no numeric score"},
        /* Numbers beyond a double's range read as infinities: they would
         * be stored as "score": null. */
        {"{\"result\":[{\"id\":1,\"score\":0.5},{\"id\":2,\"score\":1e999}]}",
         "point 1 has a score that is not a finite number (1e999)"},
        {"{\"result\":{\"points\":[{\"id\":\"u\",\"score\":-1e999,"
         "\"payload\":{\"text\":\"t\"}}]}}",
         "point 0 has a score that is not a finite number (-1e999)"},
        {"{\"result\":[{\"id\":3,\"score\":"
         "1000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000"
         "0.5}]}",
         "point 0 has a score that is not a finite number (10000000000"},
    };
    ragq_upstream_error_t err;
    ragq_source_t        *s;
    size_t                n;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        s = (ragq_source_t *) &n;
        n = 5;
        ck_assert_msg(parse_q(c[i].body, &s, &n, &err) == -1,
                      "case %zu accepted", i);
        ck_assert_ptr_null(s);
        ck_assert_uint_eq(n, 0);
        ck_assert_str_eq(err.code, "bad_upstream_response");
        ck_assert_msg(strstr(err.message, c[i].msg) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                      c[i].msg);
    }
}
END_TEST

static int
parse_dim(const char *body, size_t *dim, ragq_upstream_error_t *err)
{
    memset(err, 0, sizeof(*err));
    return ragq_qdrant_collection_dim_parse(body, strlen(body), dim, err);
}

/* A 2xx update answer is used only when it says the update was applied. */
START_TEST(update_parse)
{
    static const struct {
        const char *body, *msg; /* msg NULL: accepted */
    } c[] = {
        {"{\"status\":\"ok\",\"result\":{\"operation_id\":7,"
         "\"status\":\"completed\"},\"time\":0.002}",
         NULL},
        {"{\"result\":{\"operation_id\":null,\"status\":\"acknowledged\"}}",
         NULL},
        {"<html>Bad gateway</html>",
         "Qdrant upsert answer is not a JSON object"},
        {"", "Qdrant upsert answer is not a JSON object"},
        {"[1,2]", "Qdrant upsert answer is not a JSON object"},
        {"{\"status\":\"ok\",\"result\":true}",
         "Qdrant upsert answer has no \"result.status\""},
        {"{\"status\":\"ok\"}",
         "Qdrant upsert answer has no \"result.status\""},
        {"{\"result\":{\"status\":\"wait_timeout\"}}",
         "Qdrant upsert was not completed (result.status \"wait_timeout\")"},
        {"{\"status\":{\"error\":\"Wrong input: bad id\"}}",
         "Qdrant upsert failed: Wrong input: bad id"},
    };
    ragq_upstream_error_t err;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        memset(&err, 0, sizeof(err));
        if (c[i].msg == NULL) {
            ck_assert_msg(ragq_qdrant_update_parse(c[i].body, strlen(c[i].body),
                                                   "upsert", &err) == 0,
                          "case %zu refused: %s", i, err.message);
            continue;
        }
        ck_assert_msg(ragq_qdrant_update_parse(c[i].body, strlen(c[i].body),
                                               "upsert", &err) == -1,
                      "case %zu accepted", i);
        ck_assert_str_eq(err.code, "bad_upstream_response");
        ck_assert_msg(strstr(err.message, c[i].msg) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                      c[i].msg);
    }
}
END_TEST

START_TEST(create_parse)
{
    static const struct {
        const char *body, *msg; /* msg NULL: accepted */
    } c[] = {
        {"{\"result\":true,\"status\":\"ok\",\"time\":0.0263}", NULL},
        {"{\"time\":1e-3,\"status\":\"ok\",\"result\":true,\"usage\":null}",
         NULL},
        {"{\"result\":false,\"status\":\"ok\",\"time\":0.01}",
         "Qdrant create collection answer has a \"result\" that is not true "
         "(the answer: "
         "\"{\"result\":false,\"status\":\"ok\",\"time\":0.01}\")"},
        {"{\"result\":\"true\",\"status\":\"ok\"}",
         "has a \"result\" that is not true"},
        {"{\"result\":1}", "has a \"result\" that is not true"},
        {"{\"status\":\"ok\",\"time\":0}",
         "Qdrant create collection answer has no \"result\" (the answer: "
         "\"{\"status\":\"ok\",\"time\":0}\")"},
        {"<html><body>Welcome\r\nto our proxy</body></html>",
         "Qdrant create collection answer is not a JSON object (the answer: "
         "\"<html><body>Welcome  to our proxy</body></html>\")"},
        {"", "Qdrant create collection answer is not a JSON object (the "
             "answer was empty)"},
        {"true", "is not a JSON object (the answer: \"true\")"},
        {"{\"status\":{\"error\":\"Wrong input: bad name\"},\"time\":0}",
         "Qdrant create collection failed: Wrong input: bad name (the "
         "answer: "},
    };
    ragq_upstream_error_t err;
    char                  big[600];

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        memset(&err, 0, sizeof(err));
        if (c[i].msg == NULL) {
            ck_assert_msg(ragq_qdrant_create_parse(c[i].body, strlen(c[i].body),
                                                   &err) == 0,
                          "case %zu refused: %s", i, err.message);
            continue;
        }
        ck_assert_msg(
            ragq_qdrant_create_parse(c[i].body, strlen(c[i].body), &err) == -1,
            "case %zu accepted", i);
        ck_assert_str_eq(err.code, "bad_upstream_response");
        ck_assert_msg(strstr(err.message, c[i].msg) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, err.message,
                      c[i].msg);
    }

    /* a long page is cut to 120 bytes, not inside a UTF-8 character */
    memset(big, 'x', sizeof(big));
    memcpy(big + 119, "\xc3\xa9", 2); /* é across the limit: cut before */
    ck_assert_int_eq(ragq_qdrant_create_parse(big, sizeof(big), &err), -1);
    ck_assert_msg(strstr(err.message, "xxx\"") == NULL, "%s", err.message);
    ck_assert_msg(strstr(err.message, "x...\")") != NULL, "%s", err.message);
    ck_assert_msg(strstr(err.message, "\xc3") == NULL, "%s", err.message);
    ck_assert_msg(strlen(err.message) < 240, "%s", err.message);

    /* no answer at all */
    ck_assert_int_eq(ragq_qdrant_create_parse(NULL, 0, &err), -1);
    ck_assert_msg(strstr(err.message, "the answer was empty") != NULL, "%s",
                  err.message);
}
END_TEST

START_TEST(count_parse)
{
    const char           *ok = "{\"result\":{\"count\":42},\"status\":\"ok\"}";
    ragq_upstream_error_t err;
    size_t                n = 0;

    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(ragq_qdrant_count_parse(ok, strlen(ok), &n, &err), 0);
    ck_assert_uint_eq(n, 42);
    ck_assert_int_eq(
        ragq_qdrant_count_parse("{\"result\":{\"count\":-1}}", 23, &n, &err),
        -1);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ragq_qdrant_count_parse("nope", 4, &n, &err), -1);
}
END_TEST

START_TEST(collection_dim)
{
    const char *info =
        "{\"result\":{\"status\":\"green\",\"optimizer_status\":\"ok\","
        "\"segments_count\":2,\"points_count\":1234,"
        "\"indexed_vectors_count\":0,\"config\":{\"params\":{\"vectors\":"
        "{\"size\":1536,\"distance\":\"Cosine\"},\"shard_number\":1},"
        "\"hnsw_config\":{\"m\":16},\"optimizer_config\":{},"
        "\"wal_config\":{}},\"payload_schema\":{}},\"status\":\"ok\","
        "\"time\":0.0001}";
    ragq_upstream_error_t err;
    size_t                dim = 0;

    ck_assert_int_eq(parse_dim(info, &dim, &err), 0);
    ck_assert_uint_eq(dim, 1536);
}
END_TEST

START_TEST(collection_dim_unsupported)
{
    ragq_upstream_error_t err;
    size_t                dim = 9;

    ck_assert_int_eq(
        parse_dim("{\"result\":{\"config\":{\"params\":{\"vectors\":{"
                  "\"text\":{\"size\":384,\"distance\":\"Cosine\"},"
                  "\"image\":{\"size\":512,\"distance\":\"Dot\"}}}}},"
                  "\"status\":\"ok\"}",
                  &dim, &err),
        -1);
    ck_assert_uint_eq(dim, 0);
    ck_assert_str_eq(err.code, "unsupported_collection");
    ck_assert_int_eq(err.retryable, 0);
    ck_assert_ptr_nonnull(strstr(err.message, "named vectors (text, image)"));

    ck_assert_int_eq(parse_dim("{\"result\":{\"config\":{\"params\":{"
                               "\"sparse_vectors\":{\"bm25\":{}}}}}}",
                               &dim, &err),
                     -1);
    ck_assert_str_eq(err.code, "unsupported_collection");
    ck_assert_ptr_nonnull(strstr(err.message, "no dense vectors"));
}
END_TEST

START_TEST(collection_dim_malformed)
{
    static const char *c[] = {
        "nope",
        "{\"result\":{}}",
        "{\"result\":{\"config\":{\"params\":7}}}",
        "{\"result\":{\"config\":{\"params\":{\"vectors\":5}}}}",
        "{\"result\":{\"config\":{\"params\":{\"vectors\":{\"size\":0}}}}}",
        "{\"result\":{\"config\":{\"params\":{\"vectors\":{\"size\":-3}}}}}",
        "{\"result\":{\"config\":{\"params\":{\"vectors\":{\"size\":"
        "\"4\"}}}}}",
        "{\"status\":{\"error\":\"Not found: Collection `d` doesn't "
        "exist!\"}}",
    };
    ragq_upstream_error_t err;
    size_t                dim;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        ck_assert_msg(parse_dim(c[i], &dim, &err) == -1, "case %zu accepted",
                      i);
        ck_assert_str_eq(err.code, "bad_upstream_response");
    }
    ck_assert_ptr_nonnull(strstr(err.message, "doesn't exist"));
}
END_TEST

Suite *
ragq_suite_qdrant(void)
{
    Suite *s = suite_create("qdrant");
    TCase *tc = tcase_create("qdrant");

    tcase_add_test(tc, paths);
    tcase_add_test(tc, query_body);
    tcase_add_test(tc, create_body);
    tcase_add_test(tc, upsert_body);
    tcase_add_test(tc, delete_chunks_body);
    tcase_add_test(tc, query_parse_points);
    tcase_add_test(tc, query_parse_legacy_and_empty);
    tcase_add_test(tc, query_parse_errors);
    tcase_add_test(tc, update_parse);
    tcase_add_test(tc, create_parse);
    tcase_add_test(tc, count_parse);
    tcase_add_test(tc, collection_dim);
    tcase_add_test(tc, collection_dim_unsupported);
    tcase_add_test(tc, collection_dim_malformed);
    suite_add_tcase(s, tc);
    return s;
}
