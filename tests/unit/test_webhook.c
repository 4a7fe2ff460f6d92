/*
 * test_webhook.c: worker/webhook.c, the Standard Webhooks secret and
 * signature: the specification's own example signs to its published value;
 * secrets without "whsec_", with characters outside base64, of the wrong
 * length or too short are refused with a message that never shows them.
 */

#include <check.h>
#include <string.h>

#include "suites.h"
#include "webhook.h"

START_TEST(spec_example_signs)
{
    ragq_webhook_key_t key;
    char               err[256], sig[RAGQ_WEBHOOK_SIG_LEN];
    const char        *body = "{\"test\": 2432232314}";

    ck_assert_int_eq(
        ragq_webhook_key_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &key,
                               err, sizeof(err)),
        0);
    ck_assert_uint_eq(key.len, 24);
    ck_assert_int_eq(ragq_webhook_sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                       1614265330, body, strlen(body), sig),
                     0);
    ck_assert_str_eq(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}
END_TEST

START_TEST(padding_is_optional)
{
    ragq_webhook_key_t a, b;
    char               err[256];

    /* 20 bytes: base64 ends with one "=" */
    ck_assert_int_eq(
        ragq_webhook_key_parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhM=", &a, err,
                               sizeof(err)),
        0);
    ck_assert_int_eq(ragq_webhook_key_parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhM",
                                            &b, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(a.len, 20);
    ck_assert_uint_eq(b.len, 20);
    ck_assert_int_eq(memcmp(a.key, b.key, 20), 0);
    ck_assert_int_eq(a.key[19], 0x13);
}
END_TEST

START_TEST(malformed_secrets_refused)
{
    static const char *const bad[] = {
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",        /* no whsec_ */
        "whsec_",                                  /* empty */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w",  /* not base64 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwa", /* 4n+1 characters */
        "whsec_c2hvcnQ=",                          /* 5 bytes: too short */
        "whsec_MfKQ 9r8GKYqrTwjUPD8ILPZIo2LaLaSw", /* a space */
    };
    ragq_webhook_key_t key;
    char               err[256];
    size_t             i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(ragq_webhook_key_parse(bad[i], &key, err, sizeof(err)),
                         -1);
        ck_assert_ptr_nonnull(strstr(err, "RAGQ_WEBHOOK_SECRET"));
        if (strlen(bad[i]) > 12) {
            ck_assert_ptr_null(strstr(err, bad[i] + 6));
        }
    }
}
END_TEST

Suite *
ragq_suite_webhook(void)
{
    Suite *s = suite_create("webhook");
    TCase *tc = tcase_create("webhook");

    tcase_add_test(tc, spec_example_signs);
    tcase_add_test(tc, padding_is_optional);
    tcase_add_test(tc, malformed_secrets_refused);
    suite_add_tcase(s, tc);
    return s;
}
