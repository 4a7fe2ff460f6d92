/*
 * webhook.h: the Standard Webhooks signature of ragq's callbacks: the
 * secret RAGQ_WEBHOOK_SECRET ("whsec_" + base64 of the key bytes) and the
 * header value "v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>".
 * Implemented in webhook.c; callback.c sends what this signs.
 */

#ifndef RAGQ_WEBHOOK_H
#define RAGQ_WEBHOOK_H

#include <stddef.h>

/* The longest key accepted (the spec's secrets are 24 to 64 bytes). */
#define RAGQ_WEBHOOK_KEY_MAX 256

/* "v1," + base64 of 32 bytes + NUL */
#define RAGQ_WEBHOOK_SIG_LEN (3 + 44 + 1)

typedef struct {
    unsigned char key[RAGQ_WEBHOOK_KEY_MAX];
    size_t        len;
} ragq_webhook_key_t;

/*
 * Decodes a secret "whsec_<base64>" (standard alphabet, padding optional).
 * 0, or -1 with a message in err that never shows the secret.
 */
int ragq_webhook_key_parse(const char *secret, ragq_webhook_key_t *key,
                           char *err, size_t errlen);

/* The webhook-signature value for this message into sig
 * (RAGQ_WEBHOOK_SIG_LEN bytes).  0, or -1 when HMAC failed. */
int ragq_webhook_sign(const ragq_webhook_key_t *key, const char *msg_id,
                      long long timestamp, const char *body, size_t len,
                      char *sig);

#endif
