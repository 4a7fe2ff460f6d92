/*
 * test_retry.c: worker/retry.c, the backoff rules both programs share: the
 * upstream's Retry-After wins (capped at 30 s), else full jitter within
 * min(8 s, 200 ms * 2^(n-1)), spread over the whole range; the reconnect
 * backoff doubles from its minimum to its maximum, half of it jitter, and
 * starts over after a reset.
 */

#include <check.h>
#include <stdlib.h>

#include "retry.h"
#include "suites.h"

START_TEST(retry_after_wins_capped)
{
    ck_assert_uint_eq(ragq_retry_delay_ms(1500, 1), 1500);
    ck_assert_uint_eq(ragq_retry_delay_ms(0, 4), 0);
    ck_assert_uint_eq(ragq_retry_delay_ms(30000, 2), 30000);
    ck_assert_uint_eq(ragq_retry_delay_ms(45000, 1), RAGQ_RETRY_AFTER_CAP_MS);
    ck_assert_uint_eq(ragq_retry_delay_ms(1000000000000L, 1),
                      RAGQ_RETRY_AFTER_CAP_MS);
}
END_TEST

START_TEST(full_jitter_within_the_cap)
{
    srandom(7);
    for (int n = 1; n <= 12; n++) {
        uint64_t cap = n > 6 ? 8000 : (uint64_t) 200 << (n - 1), lo = cap,
                 hi = 0, d;

        if (cap > 8000) {
            cap = 8000;
        }
        for (int i = 0; i < 4000; i++) {
            d = ragq_retry_delay_ms(-1, n);
            ck_assert_uint_le(d, cap);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Full jitter: the whole range is used, not just its top. */
        ck_assert_msg(lo < cap / 10 && hi > cap - cap / 10,
                      "retry %d: delays %llu..%llu of 0..%llu", n,
                      (unsigned long long) lo, (unsigned long long) hi,
                      (unsigned long long) cap);
    }
    /* Nonsense counts are the first retry, not a huge shift. */
    for (int i = 0; i < 100; i++) {
        ck_assert_uint_le(ragq_retry_delay_ms(-1, 0), 200);
        ck_assert_uint_le(ragq_retry_delay_ms(-1, 1000), 8000);
    }
}
END_TEST

START_TEST(reconnect_backoff)
{
    ragq_backoff_t b;
    uint64_t       step = 100, d;

    srandom(11);
    ragq_backoff_init(&b, 100, 5000);
    for (int i = 0; i < 12; i++) {
        d = ragq_backoff_next(&b);
        ck_assert_msg(d >= step / 2 && d <= step,
                      "try %d: %llu not in %llu..%llu", i,
                      (unsigned long long) d, (unsigned long long) step / 2,
                      (unsigned long long) step);
        step = step * 2 > 5000 ? 5000 : step * 2;
    }
    ck_assert_uint_eq(b.step_ms, 5000);
    ragq_backoff_reset(&b);
    d = ragq_backoff_next(&b);
    ck_assert(d >= 50 && d <= 100);
}
END_TEST

Suite *
ragq_suite_retry(void)
{
    Suite *s = suite_create("retry");
    TCase *tc = tcase_create("retry");

    tcase_add_test(tc, retry_after_wins_capped);
    tcase_add_test(tc, full_jitter_within_the_cap);
    tcase_add_test(tc, reconnect_backoff);
    suite_add_tcase(s, tc);
    return s;
}
