/*
 * fuzz/fuzz_reply.c: the module's reply reader (ngx_http_ragq_reply.c)
 * against hiredis 0.14's redisReader, the parser it replaced. Both get the
 * same bytes in the same pieces; after every piece each gives its complete
 * replies. They must agree on every reply (type, integer, string bytes,
 * elements, recursively) and on how many there are; ours finds an error
 * where hiredis does, or (in an array not all there yet) waits for more. Every
 * other input uses the arena (the command connection's reader), the rest
 * malloc()ed replies; ASan checks that neither leaks nor reads a reply past its
 * free.
 *
 * hiredis allocates an array's elements as soon as it reads its length
 * (ours not before the array is whole), so an input with a '*' and a
 * number past what 4 KiB could complete is read by ours alone.
 *
 * Input: byte 0 picks the arena and seeds the piece sizes (1 to 64 bytes,
 * or all at once); the rest is what Valkey would have sent.
 */
#include "harness.h"
#include "../ngx_http_ragq_reply.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>

static void
fuzz_differ(const char *fmt, ...)
{
    char    text[256];
    va_list args;

    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);
    fuzz_fail(text, NULL, 0);
}

static void
fuzz_same(const redisReply *a, const redisReply *b)
{
    size_t i;

    if (a->type != b->type) {
        fuzz_differ("reply: type %d, hiredis %d", a->type, b->type);
    }

    switch (a->type) {
    case REDIS_REPLY_INTEGER:
        if (a->integer != b->integer) {
            fuzz_differ("reply: integer %lld, hiredis %lld", a->integer,
                        b->integer);
        }
        break;
    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements) {
            fuzz_differ("reply: %zu elements, hiredis %zu", a->elements,
                        b->elements);
        }
        for (i = 0; i < a->elements; i++) {
            fuzz_same(a->element[i], b->element[i]);
        }
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        if (a->len != b->len || memcmp(a->str, b->str, a->len) != 0) {
            fuzz_differ("reply: a string of %zu bytes, hiredis %zu", a->len,
                        b->len);
        }
        if (a->str[a->len] != '\0') {
            fuzz_differ("reply: a string not NUL-terminated");
        }
        break;
    default:
        break;
    }
}

/* a '*' followed by a number over 2000, anywhere */
static int
fuzz_huge_array(const uint8_t *p, size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i++) {
        if (p[i] != '*') {
            continue;
        }
        for (j = i + 1; j < n && p[j] == '-'; j++) {
            /* hiredis reads the sign before the length is checked */
        }
        while (j < n && p[j] == '0') {
            j++;
        }
        size_t digits = 0, v = 0;
        while (j < n && p[j] >= '0' && p[j] <= '9' && digits < 8) {
            v = v * 10 + (p[j++] - '0');
            digits++;
        }
        if (v > 2000 || (j < n && p[j] >= '0' && p[j] <= '9')) {
            return 1;
        }
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    ok, gone;
    void                  *theirs;
    size_t                 at, n;
    uint32_t               seed;
    ngx_int_t              rc;
    redisReply            *ours;
    redisReader           *hr;
    ngx_http_ragq_reader_t rd;

    if (size < 1) {
        return 0;
    }

    fuzz_begin();
    seed = data[0];
    ngx_http_ragq_reader_init(&rd, data[0] & 1);
    data++;
    size--;
    hr = fuzz_huge_array(data, size) ? NULL : redisReaderCreate();
    gone = 0;

    for (at = 0; at < size && !gone; at += n) {
        if (seed & 2) {
            n = size - at;
        } else {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 64;
            n = n < size - at ? n : size - at;
        }

        if (ngx_http_ragq_reader_feed(&rd, (u_char *) data + at, n) != NGX_OK ||
            (hr &&
             redisReaderFeed(hr, (const char *) data + at, n) != REDIS_OK)) {
            abort(); /* out of memory: not an input's doing */
        }

        for (;;) {
            rc = ngx_http_ragq_reader_next(&rd, &ours);

            if (hr == NULL) {
                if (rc != NGX_OK || ours == NULL) {
                    gone = (rc != NGX_OK);
                    break;
                }
                ngx_http_ragq_reply_free(&rd, ours);
                continue;
            }

            ok = redisReaderGetReply(hr, &theirs) == REDIS_OK;

            /*
             * hiredis may see an error first: ours reads an array's
             * elements only once 3 bytes per element are there
             */
            if (!ok && rc == NGX_OK && ours == NULL) {
                gone = 1;
                break;
            }

            if ((rc == NGX_OK) != ok) {
                fuzz_differ("reply: ours %s, hiredis %s",
                            rc == NGX_OK ? "RESP" : rd.err,
                            ok ? "RESP" : hr->errstr);
            }

            if (!ok) {
                gone = 1;
                break;
            }

            if ((ours == NULL) != (theirs == NULL)) {
                fuzz_differ("reply: ours %s, hiredis %s",
                            ours ? "a reply" : "none yet",
                            theirs ? "a reply" : "none yet");
            }

            if (ours == NULL) {
                break;
            }

            fuzz_same(ours, theirs);
            ngx_http_ragq_reply_free(&rd, ours);
            freeReplyObject(theirs);
        }
    }

    ngx_http_ragq_reader_free(&rd);
    if (hr) {
        redisReaderFree(hr);
    }

    return 0;
}
