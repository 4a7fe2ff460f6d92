/*
 * test_upstream.c: unit tests of upstream.c: the sources JSON, the
 * classification of upstream HTTP errors (bodies taken from the OpenAI,
 * llama.cpp, Ollama, vLLM and Qdrant references), Retry-After, URL helpers.
 */

#include <check.h>
#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "suites.h"
#include "job.h"
#include "openai.h" /* RAGQ_OPENAI_AUTH_HEADER */
#include "qdrant.h" /* RAGQ_QDRANT_AUTH_HEADER */
#include "upstream.h"
#include "utf8.h" /* ragq_utf8_cut */

/* Independent of upstream.c's own validator: RFC 3629 rules. */
static int
valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *) s;

    while (*p) {
        size_t l;
        int    cp;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xe0) == 0xc0) {
            l = 2;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            l = 3;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            l = 4;
            cp = *p & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < l; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) ||
            (l == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        p += l;
    }
    return 1;
}

static const char *
get_str(struct json_object *o, const char *key)
{
    struct json_object *v;

    ck_assert_msg(json_object_object_get_ex(o, key, &v), "no key %s", key);
    return json_object_get_string(v);
}

static void
classify(ragq_upstream_error_t *err, const char *api, long status,
         const char *ra, const char *ra_ms, const char *body)
{
    memset(err, 0x5a, sizeof(*err)); /* every field must be written */
    ragq_upstream_error_from_http(err, api, status, ra, ra_ms, body,
                                  body ? strlen(body) : 0);
    ck_assert(memchr(err->code, '\0', sizeof(err->code)) != NULL);
    ck_assert(memchr(err->message, '\0', sizeof(err->message)) != NULL);
    ck_assert(valid_utf8(err->message));
}

/* ---- sources ---- */

START_TEST(sources_json_fields)
{
    ragq_source_t src[2] = {
        {"42", 0.8731234567, "handbook.md", "Refunds are issued in 30 days."},
        {"5c56c793-69f3-4fbf-87e6-c4bf54c28c26", 0.71, "wiki/\"q\".md",
         "line1\nline2\t\\"},
    };
    char               *js = ragq_sources_to_json(src, 2, 0);
    struct json_object *o, *e;

    ck_assert_ptr_nonnull(js);
    /* Short floats: 6 significant digits, not json-c's 17. */
    ck_assert_ptr_nonnull(strstr(js, "\"score\":0.873123,"));
    ck_assert_ptr_nonnull(strstr(js, "\"score\":0.71,"));
    o = ragq_test_strict_parse(js);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_object_array_length(o), 2);
    e = json_object_array_get_idx(o, 0);
    ck_assert_str_eq(get_str(e, "id"), "42");
    ck_assert_str_eq(get_str(e, "source"), "handbook.md");
    ck_assert_str_eq(get_str(e, "text"), "Refunds are issued in 30 days.");
    e = json_object_array_get_idx(o, 1);
    ck_assert_str_eq(get_str(e, "id"), "5c56c793-69f3-4fbf-87e6-c4bf54c28c26");
    ck_assert_str_eq(get_str(e, "source"), "wiki/\"q\".md");
    ck_assert_str_eq(get_str(e, "text"), "line1\nline2\t\\");
    json_object_put(o);
    free(js);
}
END_TEST

START_TEST(sources_json_empty_and_null)
{
    ragq_source_t src = {NULL, 1.0 / 0.0, NULL, NULL};
    char         *js = ragq_sources_to_json(NULL, 0, 100);

    ck_assert_str_eq(js, "[]");
    free(js);
    js = ragq_sources_to_json(&src, 1, 100);
    /* An infinite score cannot be a JSON number: null, still valid JSON. */
    ck_assert_str_eq(js, "[{\"id\":\"\",\"score\":null,\"source\":\"\","
                         "\"text\":\"\"}]");
    free(js);
}
END_TEST

START_TEST(sources_json_excerpt_utf8_boundary)
{
    /* "aé€😀" = 61 | c3 a9 | e2 82 ac | f0 9f 98 80 (10 bytes) */
    ragq_source_t       src = {"1", 0.5, "s",
                               "a\xc3\xa9\xe2\x82\xac\xf0\x9f"
                                     "\x98\x80"};
    size_t              cuts[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const char         *want[] = {"",
                                  "a",
                                  "a",
                                  "a\xc3\xa9",
                                  "a\xc3\xa9",
                                  "a\xc3\xa9",
                                  "a\xc3\xa9\xe2\x82\xac",
                                  "a\xc3\xa9\xe2\x82\xac",
                                  "a\xc3\xa9\xe2\x82\xac",
                                  "a\xc3\xa9\xe2\x82\xac",
                                  "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                                  "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"};
    struct json_object *o;
    char               *js;

    for (size_t i = 1; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        js = ragq_sources_to_json(&src, 1, cuts[i]);
        o = ragq_test_strict_parse(js);
        ck_assert_msg(o != NULL, "cut %zu: %s", cuts[i], js);
        ck_assert_str_eq(get_str(json_object_array_get_idx(o, 0), "text"),
                         want[i]);
        json_object_put(o);
        free(js);
    }
    /* excerpt_max 0: the whole text. */
    js = ragq_sources_to_json(&src, 1, 0);
    ck_assert_ptr_nonnull(strstr(js, want[11]));
    free(js);
    ck_assert_uint_eq(ragq_utf8_cut(src.text, 10, 0), 0);
}
END_TEST

START_TEST(sources_json_invalid_utf8_replaced)
{
    ragq_source_t       src = {"\xff", 0.1, "bad\xc3(", "x\xed\xa0\x80y\x01z"};
    char               *js = ragq_sources_to_json(&src, 1, 0);
    struct json_object *o = ragq_test_strict_parse(js), *e;

    ck_assert_msg(o != NULL, "%s", js);
    e = json_object_array_get_idx(o, 0);
    ck_assert_str_eq(get_str(e, "id"), "\xef\xbf\xbd");
    ck_assert_str_eq(get_str(e, "source"), "bad\xef\xbf\xbd(");
    /* A surrogate (ED A0 80) is three invalid bytes; \x01 is escaped. */
    ck_assert_str_eq(get_str(e, "text"), "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf"
                                         "\xbdy\x01z");
    ck_assert_ptr_nonnull(strstr(js, "\\u0001"));
    json_object_put(o);
    free(js);
}
END_TEST

START_TEST(sources_json_random_bytes_always_valid)
{
    char          text[200], source[40];
    ragq_source_t src = {"id", 0.5, source, text};
    unsigned      seed = 12345;

    for (int round = 0; round < 2000; round++) {
        size_t tl = (size_t) (rand_r(&seed) % 199);
        size_t sl = (size_t) (rand_r(&seed) % 39);
        for (size_t i = 0; i < tl; i++) {
            text[i] = (char) (1 + rand_r(&seed) % 255);
        }
        text[tl] = '\0';
        for (size_t i = 0; i < sl; i++) {
            source[i] = (char) (1 + rand_r(&seed) % 255);
        }
        source[sl] = '\0';
        char *js = ragq_sources_to_json(&src, 1, (size_t) (round % 50));
        struct json_object *o = ragq_test_strict_parse(js);
        ck_assert_msg(o != NULL && valid_utf8(js), "round %d: %s", round, js);
        json_object_put(o);
        free(js);
    }
}
END_TEST

START_TEST(sources_free_null)
{
    ragq_source_t *s = calloc(2, sizeof(*s));

    s[0].id = strdup("1");
    s[0].text = strdup("t");
    ragq_sources_free(s, 2);
    ragq_sources_free(NULL, 3);
}
END_TEST

/* ---- errors ---- */

START_TEST(err_openai_401)
{
    ragq_upstream_error_t e;

    /* The reference's 401 body. */
    classify(&e, "chat", 401, NULL, NULL,
             "{\"error\": {\"message\": \"Incorrect API key provided: "
             "sk-abc***xyz. You can find your API key at "
             "https://platform.openai.com/account/api-keys.\", \"type\": "
             "\"invalid_request_error\", \"param\": null, \"code\": "
             "\"invalid_api_key\"}}\n");
    ck_assert_int_eq(e.http_status, 401);
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_int_eq(e.retry_after_ms, -1);
    ck_assert_str_eq(e.code, "unauthorized");
    ck_assert_str_eq(e.message,
                     "Incorrect API key provided: sk-abc***xyz. You can find "
                     "your API key at "
                     "https://platform.openai.com/account/api-keys.");
}
END_TEST

START_TEST(err_403_and_404)
{
    ragq_upstream_error_t e;

    classify(&e, "embeddings", 403, NULL, NULL,
             "{\"error\":{\"message\":\"Country, region, or territory not "
             "supported\",\"type\":\"request_forbidden\",\"param\":null,"
             "\"code\":\"unsupported_country_region_territory\"}}");
    ck_assert_str_eq(e.code, "unauthorized");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_str_eq(e.message, "Country, region, or territory not supported");

    /* Ollama: code null. */
    classify(&e, "embeddings", 404, NULL, NULL,
             "{\"error\":{\"message\":\"model \\\"nomic\\\" not found, try "
             "pulling it first\",\"type\":\"not_found_error\",\"param\":null,"
             "\"code\":null}}");
    ck_assert_str_eq(e.code, "model_not_found");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_str_eq(e.message,
                     "model \"nomic\" not found, try pulling it first");

    classify(&e, "chat", 404, NULL, NULL,
             "{\"error\":{\"message\":\"The model `gpt-5x` does not exist or "
             "you do not have access to it.\",\"type\":"
             "\"invalid_request_error\",\"param\":null,\"code\":"
             "\"model_not_found\"}}");
    ck_assert_str_eq(e.code, "model_not_found");
    ck_assert_str_eq(e.message, "The model `gpt-5x` does not exist or you do "
                                "not have access to it.");
}
END_TEST

START_TEST(err_llamacpp_int_code_and_vllm_flat)
{
    ragq_upstream_error_t e;

    classify(&e, "chat", 400, NULL, NULL,
             "{\"error\":{\"code\":400,\"message\":\"the request exceeds the "
             "available context size, try increasing it\",\"type\":"
             "\"exceed_context_size_error\"}}");
    ck_assert_str_eq(e.code, "bad_request");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_str_eq(e.message, "the request exceeds the available context "
                                "size, try increasing it");

    classify(&e, "chat", 503, NULL, NULL,
             "{\"error\":{\"code\":503,\"message\":\"Loading model\","
             "\"type\":\"unavailable_error\"}}");
    ck_assert_str_eq(e.code, "upstream_error");
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_str_eq(e.message, "Loading model");

    /* Older vLLM: flat, no "error" wrapper. */
    classify(&e, "chat", 404, NULL, NULL,
             "{\"object\":\"error\",\"message\":\"The model `llama` does not "
             "exist.\",\"type\":\"NotFoundError\",\"param\":null,\"code\":"
             "404}");
    ck_assert_str_eq(e.code, "model_not_found");
    ck_assert_str_eq(e.message, "The model `llama` does not exist.");
}
END_TEST

START_TEST(err_string_error_and_detail)
{
    ragq_upstream_error_t e;

    /* Ollama native / TEI style. */
    classify(&e, "embeddings", 400, NULL, NULL,
             "{\"error\":\"Input validation error: `inputs` must have less "
             "than 512 tokens\",\"error_type\":\"Validation\"}");
    ck_assert_str_eq(e.code, "bad_request");
    ck_assert_str_eq(e.message, "Input validation error: `inputs` must have "
                                "less than 512 tokens");

    classify(&e, "chat", 404, NULL, NULL, "{\"detail\":\"Not Found\"}");
    ck_assert_str_eq(e.code, "model_not_found");
    ck_assert_str_eq(e.message, "Not Found");

    /* FastAPI validation list. */
    classify(&e, "chat", 422, NULL, NULL,
             "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\","
             "\"model\"],\"msg\":\"Field required\",\"input\":{}},"
             "{\"type\":\"int_parsing\",\"loc\":[\"body\",\"max_tokens\"],"
             "\"msg\":\"Input should be a valid integer\"}]}");
    ck_assert_str_eq(e.code, "bad_request");
    ck_assert_str_eq(e.message, "body.model: Field required; body.max_tokens: "
                                "Input should be a valid integer");

    /* detail that is an object: its JSON text. */
    classify(&e, "chat", 400, NULL, NULL, "{\"detail\":{\"why\":1}}");
    ck_assert_str_eq(e.message, "{\"why\":1}");
}
END_TEST

START_TEST(err_qdrant)
{
    ragq_upstream_error_t e;

    classify(&e, "qdrant", 404, NULL, NULL,
             "{\"status\":{\"error\":\"Not found: Collection `x` doesn't "
             "exist!\"},\"time\":1.2e-05}");
    ck_assert_str_eq(e.code, "collection_not_found");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_int_eq(e.http_status, 404);
    ck_assert_str_eq(e.message, "Not found: Collection `x` doesn't exist!");

    classify(&e, "qdrant", 400, NULL, NULL,
             "{\"status\":{\"error\":\"Wrong input: Vector dimension error: "
             "expected dim: 4, got 3\"},\"time\":0.0001,\"result\":null}");
    ck_assert_str_eq(e.code, "vector_size_mismatch");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_str_eq(e.message,
                     "Wrong input: Vector dimension error: expected dim: 4, "
                     "got 3");

    classify(&e, "qdrant", 400, NULL, NULL,
             "{\"status\":{\"error\":\"Format error in JSON body: expected "
             "value at line 1 column 10\"},\"time\":0.0}");
    ck_assert_str_eq(e.code, "bad_request");

    classify(&e, "qdrant", 422, NULL, NULL,
             "{\"status\":{\"error\":\"Validation error in JSON body: "
             "[limit: value 0 invalid, must be 1 or larger]\"},\"time\":0.0}");
    ck_assert_str_eq(e.code, "bad_request");

    /* Auth failures are plain text. */
    classify(&e, "qdrant", 401, NULL, NULL, "Invalid API key or JWT");
    ck_assert_str_eq(e.code, "unauthorized");
    ck_assert_str_eq(e.message, "Invalid API key or JWT");

    classify(&e, "qdrant", 409, NULL, NULL,
             "{\"status\":{\"error\":\"Wrong input: Collection `docs` already "
             "exists!\"},\"time\":0.1}");
    ck_assert_str_eq(e.code, "upstream_conflict");
    ck_assert_int_eq(e.retryable, 1);

    classify(&e, "qdrant", 503, "2", NULL,
             "{\"status\":{\"error\":\"Service internal error: shard "
             "temporarily unavailable\"},\"time\":0.1}");
    ck_assert_str_eq(e.code, "upstream_error");
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_int_eq(e.retry_after_ms, 2000);

    /* A dimension message on an OpenAI server is just a bad request. */
    classify(&e, "embeddings", 400, NULL, NULL,
             "{\"error\":{\"message\":\"Vector dimension error\"}}");
    ck_assert_str_eq(e.code, "bad_request");
}
END_TEST

START_TEST(err_status_codes)
{
    ragq_upstream_error_t e;

    classify(&e, "chat", 408, NULL, NULL, "");
    ck_assert_str_eq(e.code, "upstream_timeout");
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_str_eq(e.message,
                     "HTTP 408 Request Timeout from chat with an empty body");

    classify(&e, "chat", 409, NULL, NULL, NULL);
    ck_assert_str_eq(e.code, "upstream_conflict");
    ck_assert_int_eq(e.retryable, 1);

    classify(&e, "embeddings", 500, NULL, NULL, "  \r\n ");
    ck_assert_str_eq(e.code, "upstream_error");
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_str_eq(e.message, "HTTP 500 Internal Server Error from "
                                "embeddings with an empty body");

    classify(&e, "chat", 418, NULL, NULL, "I'm a teapot");
    ck_assert_str_eq(e.code, "upstream_http_418");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_str_eq(e.message, "I'm a teapot");

    classify(&e, "chat", 413, NULL, NULL, "");
    ck_assert_str_eq(e.code, "upstream_http_413");
    ck_assert_int_eq(e.retryable, 0);

    /* A proxy's HTML page: the start of the body, newlines as spaces. */
    classify(&e, "chat", 502, NULL, NULL,
             "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
             "</html>\r\n");
    ck_assert_str_eq(e.code, "upstream_error");
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_str_eq(e.message, "<html>  <head><title>502 Bad "
                                "Gateway</title></head>  </html>");

    /* Not JSON after all (truncated). */
    classify(&e, "chat", 500, NULL, NULL, "{\"error\":{\"message\":\"boo");
    ck_assert_str_eq(e.message, "{\"error\":{\"message\":\"boo");
}
END_TEST

START_TEST(err_rate_limit_and_quota)
{
    ragq_upstream_error_t e;

    classify(&e, "chat", 429, "20", NULL,
             "{\"error\":{\"message\":\"Rate limit reached for gpt-4o-mini on "
             "requests per min (RPM): Limit 3, Used 3, Requested 1.\","
             "\"type\":\"requests\",\"param\":null,\"code\":"
             "\"rate_limit_exceeded\"}}");
    ck_assert_str_eq(e.code, "rate_limited");
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_int_eq(e.retry_after_ms, 20000);
    ck_assert_int_eq(e.http_status, 429);

    classify(&e, "chat", 429, NULL, NULL,
             "{\"error\":{\"message\":\"You exceeded your current quota, "
             "please check your plan and billing details.\",\"type\":"
             "\"insufficient_quota\",\"param\":null,\"code\":"
             "\"insufficient_quota\"}}");
    ck_assert_str_eq(e.code, "insufficient_quota");
    ck_assert_int_eq(e.retryable, 0);
    ck_assert_int_eq(e.retry_after_ms, -1);
}
END_TEST

START_TEST(err_retry_after_forms)
{
    ragq_upstream_error_t e;
    char                  date[64];
    time_t                t;
    struct tm             tm;

    classify(&e, "chat", 429, "1.5", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, 1500);
    classify(&e, "chat", 429, " 0 ", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, 0);
    /* retry-after-ms wins, fractional too. */
    classify(&e, "chat", 429, "20", "250.4", "");
    ck_assert_int_eq(e.retry_after_ms, 251);
    /* A broken retry-after-ms falls back to Retry-After. */
    classify(&e, "chat", 429, "3", "soon", "");
    ck_assert_int_eq(e.retry_after_ms, 3000);
    classify(&e, "chat", 429, "-5", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "tomorrow", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "nan", "inf", "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "1e400", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "99999999999999", NULL, "");
    ck_assert(e.retry_after_ms > 0);
    /* Only decimal digits: strtod's other forms are not delays. */
    classify(&e, "chat", 429, "0x10", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "1e3", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "2", "1E2", "");
    ck_assert_int_eq(e.retry_after_ms, 2000);
    classify(&e, "chat", 429, "+3", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, ".", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, "1.2.3", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
    classify(&e, "chat", 429, ".5", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, 500);

    /* HTTP-date, 30 s from now. */
    t = time(NULL) + 30;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    classify(&e, "chat", 503, date, NULL, "");
    ck_assert_msg(e.retry_after_ms >= 28000 && e.retry_after_ms <= 30000,
                  "%s -> %ld", date, e.retry_after_ms);
    ck_assert_int_eq(e.retryable, 1);

    /* RFC 850 form, 10 s from now. */
    t = time(NULL) + 10;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%A, %d-%b-%y %H:%M:%S GMT", &tm);
    classify(&e, "chat", 503, date, NULL, "");
    ck_assert_msg(e.retry_after_ms >= 8000 && e.retry_after_ms <= 10000,
                  "%s -> %ld", date, e.retry_after_ms);

    /* A date in the past: retry now. */
    classify(&e, "chat", 503, "Wed, 21 Oct 2015 07:28:00 GMT", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, 0);
    classify(&e, "chat", 503, "Wed, 21 Oct 2015 07:28:00 GMT junk", NULL, "");
    ck_assert_int_eq(e.retry_after_ms, -1);
}
END_TEST

START_TEST(err_message_truncated_valid_utf8)
{
    ragq_upstream_error_t e;
    char                 *body = malloc(8192);
    size_t                o;

    o = (size_t) sprintf(body, "{\"error\":{\"message\":\"");
    for (int i = 0; i < 1000; i++) {
        memcpy(body + o, "\xe2\x82\xac", 3); /* € */
        o += 3;
    }
    strcpy(body + o, "\"}}");
    classify(&e, "chat", 400, NULL, NULL, body);
    ck_assert_uint_le(strlen(e.message), sizeof(e.message) - 1);
    ck_assert_uint_eq(strlen(e.message) % 3, 0);
    ck_assert_uint_ge(strlen(e.message), sizeof(e.message) - 3);

    /* Invalid bytes and controls in a plain-text body. */
    classify(&e, "qdrant", 500, NULL, NULL, "bad \xff\xfe byte\x07s\t!");
    ck_assert_str_eq(e.message, "bad \xef\xbf\xbd\xef\xbf\xbd byte s !");
    free(body);
}
END_TEST

START_TEST(err_set)
{
    ragq_upstream_error_t e;
    char                  big[1000];

    memset(&e, 0x5a, sizeof(e));
    ragq_upstream_error_set(&e, 0, 1, "upstream_unreachable",
                            "connect to %s:%d failed: %s", "127.0.0.1", 9,
                            "Connection refused");
    ck_assert_int_eq(e.http_status, 0);
    ck_assert_int_eq(e.retryable, 1);
    ck_assert_int_eq(e.retry_after_ms, -1);
    ck_assert_str_eq(e.code, "upstream_unreachable");
    ck_assert_str_eq(e.message,
                     "connect to 127.0.0.1:9 failed: Connection refused");

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ragq_upstream_error_set(&e, 500, 0, big, "%s", big);
    ck_assert_uint_eq(strlen(e.code), sizeof(e.code) - 1);
    ck_assert_uint_eq(strlen(e.message), sizeof(e.message) - 1);
}
END_TEST

/* ---- URLs ---- */

START_TEST(url_join)
{
    struct {
        const char *base, *path, *want;
    } c[] = {
        {"http://h/v1/", "/embeddings", "http://h/v1/embeddings"},
        {"http://h/v1", "embeddings", "http://h/v1/embeddings"},
        {"http://h/v1", "/chat/completions", "http://h/v1/chat/completions"},
        {"http://h:6333//", "//collections/x", "http://h:6333/collections/x"},
        {"http://h", "", "http://h/"},
    };
    char *u;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        u = ragq_url_join(c[i].base, c[i].path);
        ck_assert_str_eq(u, c[i].want);
        free(u);
    }
}
END_TEST

START_TEST(url_escape)
{
    struct {
        const char *in, *want;
    } c[] = {
        {"documents", "documents"},
        {"a-b_c.d~9Z", "a-b_c.d~9Z"},
        {"my docs/x?y#z%", "my%20docs%2Fx%3Fy%23z%25"},
        {"caf\xc3\xa9", "caf%C3%A9"},
        {"..", "%2E%2E"},
        {".", "%2E"},
        {"", ""},
    };
    char *u;

    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        u = ragq_url_escape_segment(c[i].in);
        ck_assert_str_eq(u, c[i].want);
        free(u);
    }
}
END_TEST

START_TEST(job_error_json)
{
    ragq_job_t *job = ragq_job_new();
    char       *s;

    s = ragq_job_error_json(job);
    ck_assert_str_eq(s, "{\"code\":\"internal_error\",\"message\":\"\"}");
    free(s);
    ragq_upstream_error_set(&job->err, 401, 0, "unauthorized",
                            "bad \"key\" \\ caf\xc3\xa9 \xff");
    s = ragq_job_error_json(job);
    ck_assert_str_eq(s, "{\"code\":\"unauthorized\",\"message\":\"bad "
                        "\\\"key\\\" \\\\ caf\xc3\xa9 \xef\xbf\xbd\"}");
    free(s);
    ragq_job_free(job);
}
END_TEST

START_TEST(auth_headers)
{
    char *h = (char *) 1;

    ck_assert_int_eq(ragq_auth_header(RAGQ_OPENAI_AUTH_HEADER, "sk-1", &h), 0);
    ck_assert_str_eq(h, "Authorization: Bearer sk-1");
    free(h);
    ck_assert_int_eq(ragq_auth_header(RAGQ_QDRANT_AUTH_HEADER, "q-2", &h), 0);
    ck_assert_str_eq(h, "api-key: q-2");
    free(h);
    /* No key, no header. */
    ck_assert_int_eq(ragq_auth_header(RAGQ_QDRANT_AUTH_HEADER, "", &h), 0);
    ck_assert_ptr_null(h);
    h = (char *) 1;
    ck_assert_int_eq(ragq_auth_header(RAGQ_OPENAI_AUTH_HEADER, NULL, &h), 0);
    ck_assert_ptr_null(h);
}
END_TEST

Suite *
ragq_suite_upstream(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("upstream");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sources_json_fields);
    tcase_add_test(tc, sources_json_empty_and_null);
    tcase_add_test(tc, sources_json_excerpt_utf8_boundary);
    tcase_add_test(tc, sources_json_invalid_utf8_replaced);
    tcase_add_test(tc, sources_json_random_bytes_always_valid);
    tcase_add_test(tc, sources_free_null);
    tcase_add_test(tc, err_openai_401);
    tcase_add_test(tc, err_403_and_404);
    tcase_add_test(tc, err_llamacpp_int_code_and_vllm_flat);
    tcase_add_test(tc, err_string_error_and_detail);
    tcase_add_test(tc, err_qdrant);
    tcase_add_test(tc, err_status_codes);
    tcase_add_test(tc, err_rate_limit_and_quota);
    tcase_add_test(tc, err_retry_after_forms);
    tcase_add_test(tc, err_message_truncated_valid_utf8);
    tcase_add_test(tc, err_set);
    tcase_add_test(tc, url_join);
    tcase_add_test(tc, url_escape);
    tcase_add_test(tc, auth_headers);
    tcase_add_test(tc, job_error_json);
    suite_add_tcase(s, tc);
    return s;
}
