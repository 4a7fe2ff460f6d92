/*
 * test_openai_stream.c: unit tests of openai_stream.c, the incremental
 * parser of streamed chat answers: every body is fed whole, cut at every
 * byte position, and one byte at a time, and must give the same answer,
 * whose pieces concatenated are the answer byte for byte.  Each body goes
 * through twice: with openai_chunk.c's quick reader of events, and with
 * every event parsed by jsonr (jsonr_only), which must agree.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai_stream.h"
#include "suites.h"

/* Set for every stream a check makes: 1 = every event through jsonr. */
static int jsonr_only;

typedef struct {
    char   buf[8192];
    size_t len;
    int    calls;
} pieces_t;

static void
on_piece(const char *text, size_t len, void *data)
{
    pieces_t *p = data;

    ck_assert_uint_gt(len, 0);
    ck_assert_uint_lt(p->len + len, sizeof(p->buf));
    memcpy(p->buf + p->len, text, len);
    p->len += len;
    p->calls++;
}

/*
 * Feeds body in pieces cut at the given positions (cut2 may be 0); 0 with
 * the answer and usage (malloc'd), or -1 with err_code set.
 */
static int
run_cut(const char *body, size_t len, size_t cut1, size_t cut2, char **answer,
        char **usage, char *err_code, pieces_t *pc)
{
    ragq_chat_stream_t s;
    size_t             cuts[4] = {0, cut1, cut2 > cut1 ? cut2 : cut1, len};
    int                rc = 0, i;

    memset(pc, 0, sizeof(*pc));
    ragq_chat_stream_init(&s, on_piece, pc);
    s.jsonr_only = jsonr_only;
    for (i = 0; i < 3 && rc == 0; i++) {
        rc = ragq_chat_stream_feed(&s, body + cuts[i], cuts[i + 1] - cuts[i]);
    }
    if (rc == 0) {
        rc = ragq_chat_stream_end(&s, answer, usage);
    }
    if (rc != 0) {
        strcpy(err_code, s.err.code);
    }
    ragq_chat_stream_free(&s);
    return rc;
}

/* The same outcome whole, cut anywhere (once and twice), byte by byte. */
static void
check_body_once(const char *body, int want_rc, const char *want_answer,
                const char *want_usage, const char *want_code)
{
    size_t             len = strlen(body), a, b;
    char              *answer, *usage, code[64];
    pieces_t           pc;
    ragq_chat_stream_t s;
    int                rc = 0;

    for (a = 0; a <= len; a++) {
        for (b = a; b <= len; b += (len > 200 ? 7 : 1)) {
            answer = usage = NULL;
            code[0] = '\0';
            rc = run_cut(body, len, a, b, &answer, &usage, code, &pc);
            ck_assert_msg(rc == want_rc, "cut at %zu,%zu: rc %d (%s)", a, b, rc,
                          code);
            if (rc != 0) {
                ck_assert_str_eq(code, want_code);
                continue;
            }
            ck_assert_str_eq(answer, want_answer);
            ck_assert_uint_eq(pc.len, strlen(answer));
            ck_assert_msg(memcmp(pc.buf, answer, pc.len) == 0,
                          "pieces differ from the answer (cut %zu,%zu)", a, b);
            if (want_usage) {
                ck_assert_ptr_nonnull(usage);
                ck_assert_str_eq(usage, want_usage);
            } else {
                ck_assert_ptr_null(usage);
            }
            free(answer);
            free(usage);
        }
    }
    /* one byte at a time */
    memset(&pc, 0, sizeof(pc));
    ragq_chat_stream_init(&s, on_piece, &pc);
    s.jsonr_only = jsonr_only;
    for (a = 0; a < len && rc == 0; a++) {
        rc = ragq_chat_stream_feed(&s, body + a, 1);
    }
    rc = rc ? rc : ragq_chat_stream_end(&s, &answer, &usage);
    ck_assert_int_eq(rc, want_rc);
    if (rc == 0) {
        ck_assert_str_eq(answer, want_answer);
        ck_assert_uint_eq(pc.len, strlen(answer));
        free(answer);
        free(usage);
    }
    ragq_chat_stream_free(&s);
}

static void
check_body(const char *body, int want_rc, const char *want_answer,
           const char *want_usage, const char *want_code)
{
    for (jsonr_only = 0; jsonr_only < 2; jsonr_only++) {
        check_body_once(body, want_rc, want_answer, want_usage, want_code);
    }
    jsonr_only = 0;
}

#define CHUNK(delta)                                             \
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\"," \
    "\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":null}]}"

START_TEST(lf_with_usage)
{
    check_body(
        CHUNK("{\"role\":\"assistant\",\"content\":\"\"}") "\n\n" CHUNK(
            "{\"content\":\"Hello\"}") "\n\n" CHUNK("{\"content\":\", "
                                                    "world\"}") "\n\n"
                                                                "data: "
                                                                "{\"choices\":["
                                                                "{\"index\":0,"
                                                                "\"delta\":{},"
                                                                "\"finish_"
                                                                "reason\":"
                                                                "\"stop\"}],"
                                                                "\"usage\":"
                                                                "null}\n\n"
                                                                "data: "
                                                                "{\"choices\":["
                                                                "],\"usage\":{"
                                                                "\"prompt_"
                                                                "tokens\":9,"
                                                                "\"completion_"
                                                                "tokens\":3,"
                                                                "\"total_"
                                                                "tokens\":12}}"
                                                                "\n\n"
                                                                "data: "
                                                                "[DONE]\n\n",
        0, "Hello, world",
        "{\"prompt_tokens\":9,\"completion_tokens\":3,"
        "\"total_tokens\":12}",
        NULL);
}
END_TEST

/* A BOM first, cut anywhere (check_body cuts at every byte): skipped, the
 * first event kept.  Glued to the first line when cut, it hid that line's
 * field name and the job ended with the answer short of that event. */
START_TEST(bom_cut_anywhere)
{
    check_body("\xef\xbb\xbf" CHUNK("{\"content\":\"Paris\"}") "\n\n" CHUNK(
                   "{\"content\":\" ok\"}") "\n\ndata: [DONE]\n\n",
               0, "Paris ok", NULL, NULL);
    check_body("\xef\xbb\xbf{\"choices\":[{\"index\":0,\"message\":{\"role\":"
               "\"assistant\",\"content\":\"Whole\"},\"finish_reason\":"
               "\"stop\"}]}",
               0, "Whole", NULL, NULL);
}
END_TEST

START_TEST(crlf_cr_and_comments)
{
    /* CRLF, then lone CRs, comments and unknown fields between events */
    check_body(
        ": OPENROUTER PROCESSING\r\n\r\n" CHUNK(
            "{\"content\":\"a\"}") "\r\n\r\n"
                                   "event: message\rid: 7\r" CHUNK(
                                       "{\"content\":\"b\"}") "\r\r"
                                                              ":keep-alive\n"
                                                              "retry: "
                                                              "100\n" CHUNK(
                                                                  "{\"content\""
                                                                  ":\"c\"}") "\r\n\n"
                                                                             "d"
                                                                             "a"
                                                                             "t"
                                                                             "a"
                                                                             ":"
                                                                             " "
                                                                             "["
                                                                             "D"
                                                                             "O"
                                                                             "N"
                                                                             "E"
                                                                             "]"
                                                                             "\r\n\r\n",
        0, "abc", NULL, NULL);
}
END_TEST

START_TEST(multi_line_data)
{
    /* one JSON chunk over three data: lines (joined by LF, valid JSON) */
    check_body("data: {\"choices\":[{\"index\":0,\n"
               "data:\"delta\":{\"content\":\"multi\"},\n"
               "data: \"finish_reason\":null}]}\n\n"
               "data: [DONE]\n\n",
               0, "multi", NULL, NULL);
}
END_TEST

/* clang-format off */
START_TEST(utf8_everywhere)
{
    /* multilingual + emoji, raw and escaped (a surrogate pair) */
    static const char body[] =
        CHUNK("{\"content\":\"Grüße, \"}") "\n\n"
        CHUNK("{\"content\":\"日本語 \"}") "\n\n"
        CHUNK("{\"content\":\"مرحبا \"}") "\n\n"
        CHUNK("{\"content\":\"\\ud83d\\ude00😀\"}") "\n\n"
        "data: [DONE]\n\n";

    check_body(body, 0,
               "Grüße, 日本語 مرحبا \xf0\x9f\x98\x80\xf0\x9f\x98\x80",
               NULL, NULL);
}
/* clang-format on */
END_TEST

START_TEST(utf8_split_across_deltas)
{
    /* a server that cuts a character between two deltas (llama.cpp
     * tokens can): held back, then whole; never two U+FFFD */
    check_body(
        CHUNK("{\"content\":\"x\xf0\x9f\"}") "\n\n" CHUNK(
            "{\"content\":\"\x98\x80y\xc3\"}") "\n\n" CHUNK("{\"content\":"
                                                            "\"\xa9\"}") "\n\n"
                                                                         "data:"
                                                                         " ["
                                                                         "DONE]"
                                                                         "\n\n",
        0, "x\xf0\x9f\x98\x80y\xc3\xa9", NULL, NULL);
}
END_TEST

/* clang-format off */
/* A server that splits text between UTF-16 units (a JavaScript gateway
 * slicing strings) sends an emoji's surrogates escaped in two events: the
 * pair is joined, never two U+FFFD.  A surrogate left alone is one U+FFFD. */
#define SMILE "\xf0\x9f\x98\x80"
#define FFFD  "\xef\xbf\xbd"
START_TEST(surrogates_split_across_deltas)
{
    check_body(CHUNK("{\"content\":\"a\\ud83d\"}") "\n\n"
               CHUNK("{\"content\":\"\\ude00b\"}") "\n\n"
               "data: [DONE]\n\n",
               0, "a" SMILE "b", NULL, NULL);
    /* upper-case hex; an empty delta between the halves */
    check_body(CHUNK("{\"content\":\"\\uD83D\"}") "\n\n"
               CHUNK("{\"content\":\"\"}") "\n\n"
               CHUNK("{\"content\":\"\\uDE00\"}") "\n\n"
               "data: [DONE]\n\n",
               0, SMILE, NULL, NULL);
    /* a high one followed by text, by another high one, or by the end */
    check_body(CHUNK("{\"content\":\"x\\ud83d\"}") "\n\n"
               CHUNK("{\"content\":\"y\\ud83d\"}") "\n\n"
               CHUNK("{\"content\":\"\\ud83d\"}") "\n\n"
               CHUNK("{\"content\":\"\\ude00\\ud83d\"}") "\n\n"
               "data: [DONE]\n\n",
               0, "x" FFFD "y" FFFD SMILE FFFD, NULL, NULL);
    /* a low one alone, within one delta and at the start of one */
    check_body(CHUNK("{\"content\":\"p\\ude00q\"}") "\n\n"
               CHUNK("{\"content\":\"\\ude00\"}") "\n\n"
               "data: [DONE]\n\n",
               0, "p" FFFD "q" FFFD, NULL, NULL);
    /* CESU-8 (surrogates as raw 3-byte forms), whole and split */
    check_body(CHUNK("{\"content\":\"\xed\xa0\xbd\xed\xb8\x80\"}") "\n\n"
               CHUNK("{\"content\":\"\xed\xa0\xbd\"}") "\n\n"
               CHUNK("{\"content\":\"\xed\xb8\x80.\"}") "\n\n"
               "data: [DONE]\n\n",
               0, SMILE SMILE ".", NULL, NULL);
}
END_TEST
#undef SMILE
#undef FFFD
/* clang-format on */

START_TEST(invalid_bytes_and_nul)
{
    /* an invalid byte and a NUL become U+FFFD; a tail cut by the end too */
    check_body(
        CHUNK("{\"content\":\"a\xff\\u0000b\xe6\x97\"}") "\n\n"
                                                         "data: [DONE]\n\n",
        0,
        "a\xef\xbf\xbd\xef\xbf\xbd"
        "b\xef\xbf\xbd\xef\xbf\xbd",
        NULL, NULL);
}
END_TEST

START_TEST(finish_without_done)
{
    check_body(
        CHUNK("{\"content\":\"ok\"}") "\n\n"
                                      "data: "
                                      "{\"choices\":[{\"index\":0,\"delta\":{},"
                                      "\"finish_reason\":\"length\"}]}\n\n",
        0, "ok", NULL, NULL);
}
END_TEST

START_TEST(cut_short)
{
    /* neither [DONE] nor a finish_reason: the connection was cut */
    check_body(CHUNK("{\"content\":\"partial\"}") "\n\n" CHUNK(
                   "{\"content\":\"more\"}") "\n",
               -1, NULL, NULL, "bad_upstream_response");
}
END_TEST

START_TEST(error_events)
{
    check_body(CHUNK("{\"content\":\"a\"}") "\n\n"
                                            "data: "
                                            "{\"error\":{\"message\":"
                                            "\"overloaded\"}}\n\n",
               -1, NULL, NULL, "bad_upstream_response");
    check_body("event: error\ndata: {\"message\":\"boom\"}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: not json\n\n", -1, NULL, NULL, "bad_upstream_response");
    check_body(CHUNK("{\"content\":5}") "\n\n", -1, NULL, NULL,
               "bad_upstream_response");
}
END_TEST

START_TEST(empty_and_refusal)
{
    check_body(CHUNK("{\"content\":\"\"}") "\n\ndata: [DONE]\n\n", -1, NULL,
               NULL, "bad_upstream_response");
    check_body(CHUNK("{\"refusal\":\"I can't\"}") "\n\ndata: [DONE]\n\n", -1,
               NULL, NULL, "model_refused");
    check_body("", -1, NULL, NULL, "bad_upstream_response");
}
END_TEST

/* A refusal sent in many events is kept whole and in order, up to the
 * body's cap (it used to be re-measured with strlen on every event). */
START_TEST(refusal_in_many_events)
{
#define AB10  "abababababababababab"
#define AB100 AB10 AB10 AB10 AB10 AB10 AB10 AB10 AB10 AB10 AB10
    /* 10,000 events of 400 bytes: 4 MB, the body's cap */
    static const char  ev[] = CHUNK("{\"refusal\":\"" AB100 AB100 "\"}") "\n\n";
    size_t             n = 20000, i;
    ragq_chat_stream_t s;
    pieces_t           pc;
    char              *answer = NULL, *usage = NULL;

    memset(&pc, 0, sizeof(pc));
    ragq_chat_stream_init(&s, on_piece, &pc);
    s.jsonr_only = jsonr_only;
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(ragq_chat_stream_feed(&s, ev, sizeof(ev) - 1), 0);
    }
    ck_assert_int_eq(ragq_chat_stream_feed(&s, "data: [DONE]\n\n", 14), 0);
    ck_assert_int_eq(ragq_chat_stream_end(&s, &answer, &usage), -1);
    ck_assert_str_eq(s.err.code, "model_refused");
    ck_assert_uint_eq(s.refusallen, 400 * n);
    ck_assert_uint_eq(strlen(s.refusal), 400 * n);
    ck_assert(strncmp(s.err.message, "ababab", 6) == 0);
    ragq_chat_stream_free(&s);
#undef AB100
#undef AB10
}
END_TEST

START_TEST(server_ignores_stream)
{
    /* one chat.completion object: one piece, the usage kept */
    check_body("\n{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{"
               "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
               "\"Whole ✓\"},\"finish_reason\":\"stop\"}],\"usage\":{"
               "\"total_tokens\":4}}",
               0, "Whole ✓", "{\"total_tokens\":4}", NULL);
}
END_TEST

START_TEST(nothing_after_done)
{
    check_body(CHUNK("{\"content\":\"a\"}") "\n\ndata: [DONE]\n\n" CHUNK(
                   "{\"content\":\"b\"}") "\n\ndata: garbage\n\n",
               0, "a", NULL, NULL);
}
END_TEST

START_TEST(chunk_shapes)
{
    /* shapes where openai_chunk.c must read as jsonr does, or decline */
    static char deep[1024];
    size_t      i, n = 0;

    /* a repeated member: the last one counts */
    check_body(
        CHUNK("{\"content\":\"a\",\"content\":\"b\"}") "\n\n"
                                                       "data: [DONE]\n\n",
        0, "b", NULL, NULL);
    check_body("data: {\"choices\":[{\"delta\":{\"content\":\"no\"}}],"
               "\"choices\":[{\"delta\":{\"content\":\"yes\"}}]}\n\n"
               "data: [DONE]\n\n",
               0, "yes", NULL, NULL);
    /* a member name spelt with an escape */
    check_body(CHUNK("{\"cont\\u0065nt\":\"x\"}") "\n\ndata: [DONE]\n\n", 0,
               "x", NULL, NULL);
    /* escapes in the text */
    check_body(CHUNK("{\"content\":\"l1\\nl2 \\u00e9 \\ud83d\\ude00 \\\"q\\\" "
                     "\\/\\\\\"}") "\n\ndata: [DONE]\n\n",
               0, "l1\nl2 \xc3\xa9 \xf0\x9f\x98\x80 \"q\" /\\", NULL, NULL);
    /* a first choice that is not an object, a delta that is not one */
    check_body(
        "data: {\"choices\":[1,{\"delta\":{\"content\":\"x\"}}]}\n\n" CHUNK(
            "{\"content\":\"y\"}") "\n\n"
                                   "data: {\"choices\":[{\"delta\":\"z\","
                                   "\"finish_reason\":\"stop\"}]}\n\n",
        0, "y", NULL, NULL);
    /* null error and usage; a finish_reason with an escape */
    check_body("data: {\"error\":null,\"usage\":null,\"choices\":[{\"delta\":{"
               "\"content\":\"k\"},\"finish_reason\":\"st\\u006fp\"}]}\n\n",
               0, "k", NULL, NULL);
    /* what is not read: every kind of value, passed over */
    check_body("data: {\"choices\":[{\"index\":0,\"logprobs\":{\"content\":[{"
               "\"token\":\"\\u0041\\t\",\"logprob\":-0.25e-3,\"bytes\":[65,"
               "1E+2,0.5],\"x\":[true,false,null,{},[]]}]},\"delta\":{"
               "\"role\":\"assistant\",\"content\":\"d\"}}]}\n\n"
               "data: [DONE]\n\n",
               0, "d", NULL, NULL);
    /* nesting deeper than openai_chunk.c reads (jsonr takes 256 levels) */
    n += (size_t) sprintf(deep + n, "data: {\"x\":");
    for (i = 0; i < 100; i++) {
        deep[n++] = '[';
    }
    for (i = 0; i < 100; i++) {
        deep[n++] = ']';
    }
    sprintf(deep + n, ",\"choices\":[{\"delta\":{\"content\":\"deep\"}}]}\n\n"
                      "data: [DONE]\n\n");
    check_body(deep, 0, "deep", NULL, NULL);
    /* not JSON, each in its own way; read as JSON, each would be an answer */
#define FINISHED                                                     \
    "\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":" \
    "\"stop\"}]"
    check_body("data: {" FINISHED ",}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"id\":\"\\x\"," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"n\":01," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"n\":-," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"n\":1.," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"n\":1e," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"n\":tru," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {" FINISHED "} x\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"id\":\"\\u12G4\"," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"id\":[1 2]," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"id\" 1," FINISHED "}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {" FINISHED "\n\n", -1, NULL, NULL,
               "bad_upstream_response");
#undef FINISHED
    /* an error object, a refused content type */
    check_body(CHUNK("{\"content\":[\"a\"]}") "\n\n", -1, NULL, NULL,
               "bad_upstream_response");
    check_body("data: {\"error\":\"boom\",\"choices\":[]}\n\n", -1, NULL, NULL,
               "bad_upstream_response");
}
END_TEST

Suite *
ragq_suite_openai_stream(void)
{
    Suite *s = suite_create("openai_stream");
    TCase *tc = tcase_create("parse");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, lf_with_usage);
    tcase_add_test(tc, bom_cut_anywhere);
    tcase_add_test(tc, crlf_cr_and_comments);
    tcase_add_test(tc, multi_line_data);
    tcase_add_test(tc, utf8_everywhere);
    tcase_add_test(tc, utf8_split_across_deltas);
    tcase_add_test(tc, surrogates_split_across_deltas);
    tcase_add_test(tc, invalid_bytes_and_nul);
    tcase_add_test(tc, finish_without_done);
    tcase_add_test(tc, cut_short);
    tcase_add_test(tc, error_events);
    tcase_add_test(tc, empty_and_refusal);
    tcase_add_test(tc, refusal_in_many_events);
    tcase_add_test(tc, server_ignores_stream);
    tcase_add_test(tc, nothing_after_done);
    tcase_add_test(tc, chunk_shapes);
    suite_add_tcase(s, tc);
    return s;
}
