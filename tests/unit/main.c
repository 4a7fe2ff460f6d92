/*
 * main.c: runs every Check suite of the worker's unit tests.  Each suite
 * lives in its own file and is listed here.
 */

#include <check.h>
#include <stdlib.h>

#include "suites.h"

int
main(void)
{
    SRunner *sr;
    int      failed;

    sr = srunner_create(ragq_suite_upstream());
    srunner_add_suite(sr, ragq_suite_openai());
    srunner_add_suite(sr, ragq_suite_qdrant());
    srunner_add_suite(sr, ragq_suite_local());
    srunner_add_suite(sr, ragq_suite_chunk());
    srunner_add_suite(sr, ragq_suite_config());
    srunner_add_suite(sr, ragq_suite_jsonr());
    srunner_add_suite(sr, ragq_suite_utf8());
    srunner_add_suite(sr, ragq_suite_jsonw());
    srunner_add_suite(sr, ragq_suite_pointid());
    srunner_add_suite(sr, ragq_suite_valkey_url());
    srunner_add_suite(sr, ragq_suite_retry());
    srunner_add_suite(sr, ragq_suite_loop());
    srunner_add_suite(sr, ragq_suite_log());
    srunner_add_suite(sr, ragq_suite_jobid());
    srunner_add_suite(sr, ragq_suite_openai_stream());
    srunner_add_suite(sr, ragq_suite_openai_chunk());
    srunner_add_suite(sr, ragq_suite_webhook());
    srunner_add_suite(sr, ragq_suite_http1());

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
