/*
 * pointid.c: the point ids of pointid.h, with a SHA-1 of its own (one
 * small function is cheaper than a crypto library for ragq-ingest).
 */

#include "pointid.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The URL namespace of RFC 4122, appendix C. */
static const unsigned char url_ns[16] = {0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad,
                                         0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0,
                                         0x4f, 0xd4, 0x30, 0xc8};

typedef struct {
    uint32_t      h[5];
    uint64_t      len;
    unsigned char buf[64];
    size_t        n;
} sha1_t;

static uint32_t
rol(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void
sha1_block(sha1_t *s, const unsigned char *p)
{
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int      i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 |
               (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (i = 16; i < 80; i++) {
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    a = s->h[0];
    b = s->h[1];
    c = s->h[2];
    d = s->h[3];
    e = s->h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void
sha1_init(sha1_t *s)
{
    static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE,
                                   0x10325476, 0xC3D2E1F0};
    memcpy(s->h, iv, sizeof(iv));
    s->len = 0;
    s->n = 0;
}

static void
sha1_update(sha1_t *s, const void *data, size_t len)
{
    const unsigned char *p = data;

    s->len += len;
    while (len > 0) {
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        len -= take;
        if (s->n == 64) {
            sha1_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void
sha1_final(sha1_t *s, unsigned char out[20])
{
    uint64_t      bits = s->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    int           i;

    sha1_update(s, &pad, 1);
    while (s->n != 56) {
        sha1_update(s, &zero, 1);
    }
    for (i = 0; i < 8; i++) {
        lenb[i] = (unsigned char) (bits >> (56 - 8 * i));
    }
    sha1_update(s, lenb, 8);
    for (i = 0; i < 20; i++) {
        out[i] = (unsigned char) (s->h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

void
ragq_sha1(const void *data, size_t len, unsigned char out[20])
{
    sha1_t s;

    sha1_init(&s);
    sha1_update(&s, data, len);
    sha1_final(&s, out);
}

void
ragq_point_id(const char *source, unsigned index, char out[37])
{
    unsigned char d[20];
    char          idx[16];
    sha1_t        s;

    snprintf(idx, sizeof(idx), "%u", index);
    sha1_init(&s);
    sha1_update(&s, url_ns, 16);
    sha1_update(&s, source, strlen(source) + 1);
    sha1_update(&s, idx, strlen(idx));
    sha1_final(&s, d);
    d[6] = (unsigned char) ((d[6] & 0x0F) | 0x50);
    d[8] = (unsigned char) ((d[8] & 0x3F) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10],
             d[11], d[12], d[13], d[14], d[15]);
}

char *
ragq_point_source(const char *p)
{
    char  *out = malloc(strlen(p) + 1), *o = out;
    size_t i;

    if (out == NULL) {
        return NULL;
    }
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/') {
            p++;
        }
    }
    for (i = 0; p[i]; i++) {
        if (p[i] == '/' && o > out && o[-1] == '/') {
            continue;
        }
        *o++ = p[i];
    }
    while (o > out + 1 && o[-1] == '/') {
        o--;
    }
    *o = '\0';
    return out;
}
