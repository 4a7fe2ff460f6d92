/*
 * test_jobid.c: worker/jobid.c, job ids made from queue entry ids.  The
 * same vectors are checked on the module's side (tests/module/entry.t,
 * through nginx), so both make the same id from the same entry.
 */

#include <check.h>
#include <string.h>

#include "jobid.h"
#include "suites.h"

#define R "0123456789abcdef"

START_TEST(from_entry_vectors)
{
    static const struct {
        const char *entry, *want;
    } v[] = {
        {"0-0", "0000000000000000" R},
        {"1-1", "0000000000010001" R},
        {"1733318400000-7", "019391d3d8000007" R},
        {"281474976710655-65535", "ffffffffffffffff" R},
    };
    char id[RAGQ_JOB_ID_LEN + 1];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        ck_assert_int_eq(ragq_job_id_from_entry(id, v[i].entry, R, 16), 0);
        ck_assert_str_eq(id, v[i].want);
        ck_assert(ragq_job_id_valid(id, strlen(id)));
    }
}
END_TEST

START_TEST(from_entry_refused)
{
    static const char *const bad[] = {
        "1-65536",           /* seq past 16 bits */
        "281474976710656-0", /* ms past 48 bits */
        "99999999999999999999-0",
        "1",
        "1-",
        "-1",
        "a-1",
        "1-1x",
        "",
    };
    char id[RAGQ_JOB_ID_LEN + 1];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(ragq_job_id_from_entry(id, bad[i], R, 16) == -1,
                      "%s accepted", bad[i]);
    }
    ck_assert_int_eq(ragq_job_id_from_entry(id, "1-1", R, 15), -1);
    ck_assert_int_eq(ragq_job_id_from_entry(id, "1-1", "0123456789ABCDEF", 16),
                     -1);
    ck_assert_int_eq(ragq_job_id_from_entry(id, "1-1", "0123456789abcdeg", 16),
                     -1);
}
END_TEST

START_TEST(id_valid)
{
    ck_assert(ragq_job_id_valid("0123456789abcdef0123456789abcdef", 32));
    ck_assert(!ragq_job_id_valid("0123456789abcdef0123456789abcde", 31));
    ck_assert(!ragq_job_id_valid("0123456789abcdef0123456789abcdeF", 32));
}
END_TEST

Suite *
ragq_suite_jobid(void)
{
    Suite *s = suite_create("jobid");
    TCase *tc = tcase_create("jobid");

    tcase_add_test(tc, from_entry_vectors);
    tcase_add_test(tc, from_entry_refused);
    tcase_add_test(tc, id_valid);
    suite_add_tcase(s, tc);
    return s;
}
