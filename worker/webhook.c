/*
 * webhook.c: the Standard Webhooks secret and signature (webhook.h).  The
 * secret's key bytes are what HMAC uses, not its text: a receiver that
 * follows the spec (or README's recipe) decodes them the same way.
 */

#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

int
ragq_webhook_key_parse(const char *secret, ragq_webhook_key_t *key, char *err,
                       size_t errlen)
{
    const char  *p;
    size_t       n, i, pad = 0;
    unsigned int acc = 0, bits = 0;
    int          v;

    key->len = 0;
    if (strncmp(secret, "whsec_", 6) != 0) {
        snprintf(err, errlen,
                 "RAGQ_WEBHOOK_SECRET must start with \"whsec_\" followed by "
                 "the key in base64 (Standard Webhooks), e.g. whsec_ + "
                 "$(head -c 32 /dev/urandom | base64)");
        return -1;
    }
    p = secret + 6;
    n = strlen(p);
    while (n > 0 && p[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (n == 0 || (n + pad) % 4 == 1 || (pad && (n + pad) % 4 != 0)) {
        snprintf(err, errlen,
                 "RAGQ_WEBHOOK_SECRET: the part after \"whsec_\" is not "
                 "base64 (%zu characters)",
                 n + pad);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if ((v = b64_value((unsigned char) p[i])) < 0) {
            snprintf(err, errlen,
                     "RAGQ_WEBHOOK_SECRET: the part after \"whsec_\" is not "
                     "base64 (character %zu is not in the base64 alphabet)",
                     i + 7);
            return -1;
        }
        acc = (acc << 6) | (unsigned) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (key->len == sizeof(key->key)) {
                snprintf(err, errlen,
                         "RAGQ_WEBHOOK_SECRET: the key is longer than %d "
                         "bytes",
                         RAGQ_WEBHOOK_KEY_MAX);
                return -1;
            }
            key->key[key->len++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (key->len < 16) {
        snprintf(err, errlen,
                 "RAGQ_WEBHOOK_SECRET: the key is %zu bytes; use at least 16 "
                 "(Standard Webhooks suggests 24 to 64 random bytes)",
                 key->len);
        return -1;
    }
    return 0;
}

int
ragq_webhook_sign(const ragq_webhook_key_t *key, const char *msg_id,
                  long long timestamp, const char *body, size_t len, char *sig)
{
    unsigned char mac[EVP_MAX_MD_SIZE], *msg;
    unsigned int  maclen = 0;
    char          ts[32];
    size_t        idlen = strlen(msg_id), tslen, n;
    int           ok;

    /* One-shot HMAC() (its HMAC_CTX calls are deprecated in OpenSSL 3):
     * the signed content is "<id>.<timestamp>.<body>" in one buffer. */
    tslen = (size_t) snprintf(ts, sizeof(ts), "%lld", timestamp);
    msg = malloc(idlen + tslen + len + 2);
    if (msg == NULL) {
        return -1;
    }
    memcpy(msg, msg_id, idlen);
    n = idlen;
    msg[n++] = '.';
    memcpy(msg + n, ts, tslen);
    n += tslen;
    msg[n++] = '.';
    memcpy(msg + n, body, len);
    n += len;
    ok = HMAC(EVP_sha256(), key->key, (int) key->len, msg, n, mac, &maclen) !=
             NULL &&
         maclen == 32;
    free(msg);
    if (!ok) {
        return -1;
    }
    memcpy(sig, "v1,", 3);
    EVP_EncodeBlock((unsigned char *) sig + 3, mac, 32);
    return 0;
}
