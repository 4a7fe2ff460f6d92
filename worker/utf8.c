/*
 * utf8.c: the UTF-8 routines of utf8.h.
 */

#include "utf8.h"

#include <stdlib.h>
#include <string.h>

uint32_t
ragq_utf8_next(const char *s, size_t len, size_t *i)
{
    const unsigned char *p = (const unsigned char *) s + *i;
    size_t               l = ragq_utf8_seq(p, len - *i);

    switch (l) {
    case 1:
        *i += 1;
        return p[0];
    case 2:
        *i += 2;
        return (uint32_t) (p[0] & 0x1f) << 6 | (p[1] & 0x3f);
    case 3:
        *i += 3;
        return (uint32_t) (p[0] & 0x0f) << 12 | (uint32_t) (p[1] & 0x3f) << 6 |
               (p[2] & 0x3f);
    case 4:
        *i += 4;
        return (uint32_t) (p[0] & 0x07) << 18 | (uint32_t) (p[1] & 0x3f) << 12 |
               (uint32_t) (p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    default:
        *i += 1;
        return 0xfffd;
    }
}

size_t
ragq_utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char) (0xc0 | cp >> 6);
        out[1] = (char) (0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char) (0xe0 | cp >> 12);
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char) (0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char) (0xf0 | cp >> 18);
    out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char) (0x80 | (cp & 0x3f));
    return 4;
}

size_t
ragq_utf8_chars(const char *s, size_t len)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (!ragq_utf8_is_cont((unsigned char) s[i])) {
            n++;
        }
    }
    return n;
}

size_t
ragq_utf8_cut(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, l;

    if (len <= max) {
        return len;
    }
    while (i < len) {
        l = ragq_utf8_seq(p + i, len - i);
        if (l == 0) {
            l = 1; /* an invalid byte is its own unit (becomes U+FFFD) */
        }
        if (i + l > max) {
            break;
        }
        i += l;
    }
    return i;
}

char *
ragq_utf8_clean(const char *s, size_t len, char nul_to, size_t *outlen)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, o = 0, l;
    char                *out, *shrunk;

    /* Worst case every byte becomes the 3-byte U+FFFD. */
    if (len > (SIZE_MAX - 1) / 3) {
        return NULL;
    }
    out = malloc(len * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    while (i < len) {
        size_t run = i;

        /* Plain ASCII runs in one copy: the common case. */
        while (run < len && p[run] != 0 && p[run] < 0x80) {
            run++;
        }
        if (run > i) {
            memcpy(out + o, p + i, run - i);
            o += run - i;
            i = run;
            continue;
        }
        if (p[i] == 0 && nul_to != 0) {
            out[o++] = nul_to;
            i++;
            continue;
        }
        l = p[i] == 0 ? 0 : ragq_utf8_seq(p + i, len - i);
        if (l == 0) {
            memcpy(out + o, RAGQ_UTF8_REPLACEMENT, 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, p + i, l);
        o += l;
        i += l;
    }
    out[o] = '\0';
    /* A whole document (ragq-ingest) should not keep 3x its size. */
    if (len > 65536 && (shrunk = realloc(out, o + 1)) != NULL) {
        out = shrunk;
    }
    if (outlen) {
        *outlen = o;
    }
    return out;
}

char *
ragq_utf8_dup(const char *s, size_t len)
{
    return ragq_utf8_clean(s, len, 0, NULL);
}
