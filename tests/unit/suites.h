/* suites.h: one constructor per Check suite (tests/unit/test_<name>.c). */

#ifndef RAGQ_TEST_SUITES_H
#define RAGQ_TEST_SUITES_H

#include <check.h>

struct json_object;

Suite *ragq_suite_upstream(void); /* test_upstream.c */
Suite *ragq_suite_openai(void);   /* test_openai.c */
Suite *ragq_suite_qdrant(void);   /* test_qdrant.c */
Suite *ragq_suite_local(void);    /* test_local.c */
Suite *ragq_suite_chunk(void);    /* test_chunk.c */
Suite *ragq_suite_config(void);   /* test_config.c */
Suite *ragq_suite_jsonr(void);    /* test_jsonr.c */
Suite *ragq_suite_utf8(void);     /* test_utf8.c */
Suite *ragq_suite_jsonw(void);    /* test_jsonw.c */
Suite *ragq_suite_pointid(void);  /* test_pointid.c */
Suite *ragq_suite_valkey_url(void); /* test_valkey_url.c */
Suite *ragq_suite_retry(void);    /* test_retry.c */
Suite *ragq_suite_loop(void);     /* test_loop.c */
Suite *ragq_suite_log(void);      /* test_log.c */
Suite *ragq_suite_jobid(void);    /* test_jobid.c */
Suite *ragq_suite_openai_stream(void); /* test_openai_stream.c */
Suite *ragq_suite_openai_chunk(void);  /* test_openai_chunk.c */
Suite *ragq_suite_webhook(void);  /* test_webhook.c */
Suite *ragq_suite_http1(void);    /* test_http1.c */

/* helpers.c */
struct json_object *ragq_test_strict_parse(const char *text);
struct json_object *ragq_test_key(struct json_object *o, const char *key);

#endif
