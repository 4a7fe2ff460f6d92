/*
 * test_log.c: worker/log.c: secrets registered with ragq_log_hide are
 * masked wherever they appear (every occurrence, at either end, next to
 * each other), short strings are not, a job's question is masked as asked;
 * a JSON line is one valid object with ts, level, pid, msg and the fields,
 * escaped, masked, whatever bytes they hold; a level below the threshold
 * writes nothing.
 */

#include <check.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "suites.h"

START_TEST(hidden_everywhere)
{
    char s[256];

    ragq_log_hide("sk-0123456789");
    ragq_log_hide("short");
    ragq_log_hide(NULL);
    snprintf(s, sizeof(s),
             "sk-0123456789key sk-0123456789sk-0123456789 "
             "(sk-0123456789) short sk-0123456789");
    ragq_redact(s, NULL, NULL);
    ck_assert_str_eq(s, "***key ****** (***) short ***");
}
END_TEST

START_TEST(question_masked_as_asked)
{
    char s[256];

    snprintf(s, sizeof(s), "bad prompt: what is ragq?, again what is ragq?");
    ragq_redact(s, "what is ragq?", "[query]");
    ck_assert_str_eq(s, "bad prompt: [query], again [query]");

    /* too short to be worth it: ordinary words stay */
    snprintf(s, sizeof(s), "hi there, hi");
    ragq_redact(s, "hi", "[query]");
    ck_assert_str_eq(s, "hi there, hi");
}
END_TEST

/* What one call writes on stderr. */
static char *
captured(int level, const char *text, const char *msg,
         const ragq_log_field_t *f, size_t n)
{
    static char buf[8192];
    FILE       *tmp = tmpfile();
    int         saved = dup(2);
    size_t      got;

    ck_assert_ptr_nonnull(tmp);
    fflush(stderr);
    dup2(fileno(tmp), 2);
    ragq_log_event(level, text, msg, f, n);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    got = fread(buf, 1, sizeof(buf) - 1, tmp);
    buf[got] = '\0';
    fclose(tmp);
    return buf;
}

START_TEST(json_line)
{
    ragq_log_field_t f[] = {
        {"job_id", "0123abcd", 0},
        {"attempt", NULL, 2},
        {"error", "quote \" back \\ line\n bad \xff key sk-0123456789", 0},
        {"delta", NULL, -5},
    };
    struct json_object *o;
    char               *line;

    ragq_log_hide("sk-0123456789");
    ragq_log_set_json(1);
    ragq_log_level = RAGQ_LOG_INFO;
    line = captured(RAGQ_LOG_INFO, "text", "job failed", f, 4);
    ck_assert_int_eq(strchr(line, '\n') - line, (long) strlen(line) - 1);
    o = ragq_test_strict_parse(line);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_object_get_string(ragq_test_key(o, "level")), "info");
    ck_assert_str_eq(json_object_get_string(ragq_test_key(o, "msg")),
                     "job failed");
    ck_assert_int_eq(json_object_get_int(ragq_test_key(o, "pid")), getpid());
    ck_assert_int_eq(strlen(json_object_get_string(ragq_test_key(o, "ts"))),
                     24);
    ck_assert_str_eq(json_object_get_string(ragq_test_key(o, "job_id")),
                     "0123abcd");
    ck_assert_int_eq(json_object_get_int(ragq_test_key(o, "attempt")), 2);
    ck_assert_int_eq(json_object_get_int(ragq_test_key(o, "delta")), -5);
    ck_assert_str_eq(json_object_get_string(ragq_test_key(o, "error")),
                     "quote \" back \\ line\n bad \xef\xbf\xbd key ***");
    json_object_put(o);

    /* below the level: nothing */
    ragq_log_level = RAGQ_LOG_WARN;
    ck_assert_str_eq(captured(RAGQ_LOG_INFO, "text", "m", NULL, 0), "");
    ragq_log_level = RAGQ_LOG_INFO;
    ragq_log_set_json(0);
}
END_TEST

Suite *
ragq_suite_log(void)
{
    Suite *s = suite_create("log");
    TCase *t = tcase_create("log");

    tcase_add_test(t, hidden_everywhere);
    tcase_add_test(t, question_masked_as_asked);
    tcase_add_test(t, json_line);
    suite_add_tcase(s, t);
    return s;
}
