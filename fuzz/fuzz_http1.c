/*
 * fuzz/fuzz_http1.c: the worker's reader of HTTP/1.x answers
 * (worker/http1_parse.c).  Byte 0 picks how the rest is cut (1 to 64
 * bytes a piece, from a seeded generator); the answer is also read whole.
 * Checks: both readings end the same way (event, status, reuse, error)
 * with the same body bytes; the body is never longer than the input; a
 * Content-Length answer that ends has exactly that many body bytes; and
 * the reader never asks for a line longer than its head limit plus the
 * client's buffer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1_parse.h"

typedef struct {
    ragq_h1_event_t last;
    int             status, keep_alive, chunked;
    int64_t         length;
    const char     *error;
    uint8_t        *body;
    size_t          blen;
} outcome_t;

static void
fail(const char *what, const void *p, size_t len)
{
    fprintf(stderr, "fuzz oracle: %s:\n", what);
    fwrite(p, 1, len > 4096 ? 4096 : len, stderr);
    fputc('\n', stderr);
    abort();
}

static void
feed(const uint8_t *in, size_t n, unsigned seed, outcome_t *o)
{
    ragq_h1_parser_t p;
    char            *buf = malloc(n + 1);
    size_t           have = 0, given = 0, off, used;
    ragq_h1_event_t  ev = RAGQ_H1_MORE;

    memset(o, 0, sizeof(*o));
    o->body = malloc(n + 1);
    ragq_h1_parser_init(&p);
    while (given < n) {
        size_t k = n - given;

        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            if (k > 1 + (seed >> 16) % 64) {
                k = 1 + (seed >> 16) % 64;
            }
        }
        memcpy(buf + have, in + given, k);
        have += k;
        given += k;
        off = 0;
        for (;;) {
            ev = ragq_h1_parse(&p, buf + off, have - off, &used);
            if (used > have - off) {
                fail("took more bytes than it was given", in, n);
            }
            off += used;
            if (ev == RAGQ_H1_BODY) {
                memcpy(o->body + o->blen, p.data, p.len);
                o->blen += p.len;
                if (p.len == 0) {
                    fail("an empty body event", in, n);
                }
            } else if (ev == RAGQ_H1_HEAD) {
                o->status = p.status;
                o->chunked = p.chunked;
                o->length = p.length;
            } else if (ev != RAGQ_H1_HEADER) {
                break;
            }
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (ev != RAGQ_H1_MORE) {
            break;
        }
        if (have > RAGQ_H1_MAX_HEAD + 16 * 1024) {
            fail("kept waiting for a line past the head limit", in, n);
        }
    }
    if (ev == RAGQ_H1_MORE) {
        ev = ragq_h1_parse_eof(&p);
    }
    o->last = ev;
    o->keep_alive = p.keep_alive;
    o->error = p.error;
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome_t whole, cut;

    if (size < 1) {
        return 0;
    }
    feed(data + 1, size - 1, 0, &whole);
    feed(data + 1, size - 1, 1u + data[0], &cut);
    if (whole.last != cut.last || whole.status != cut.status ||
        whole.keep_alive != cut.keep_alive || whole.blen != cut.blen ||
        memcmp(whole.body, cut.body, whole.blen) != 0 ||
        (whole.error == NULL) != (cut.error == NULL) ||
        (whole.error && strcmp(whole.error, cut.error) != 0)) {
        fail("read whole and in pieces, the answer differs", data, size);
    }
    if (whole.blen > size) {
        fail("more body than input", data, size);
    }
    if (whole.last == RAGQ_H1_DONE && !whole.chunked && whole.length >= 0 &&
        whole.status != 204 && whole.status != 304 &&
        whole.blen != (size_t) whole.length) {
        fail("a body not of its Content-Length", data, size);
    }
    free(whole.body);
    free(cut.body);
    return 0;
}
