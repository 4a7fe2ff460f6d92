/*
 * http1_parse.h: the reader of HTTP/1.x answers used by http1.c (the
 * worker's own client for cleartext upstreams).  It holds no bytes of its
 * own: the caller hands it what it has read, and it says how many it took
 * and what they were (a header, the end of the head, a piece of the body,
 * the end of the answer, or an error).  Pure, so it is unit-tested and
 * fuzzed on its own (tests/unit/test_http1.c, fuzz/fuzz_http1.c).
 */

#ifndef RAGQ_HTTP1_PARSE_H
#define RAGQ_HTTP1_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* The head of an answer (status line, headers, trailers) is refused past
 * this many bytes, as a flood of headers must not grow the worker. */
#define RAGQ_H1_MAX_HEAD (64u * 1024)

typedef enum {
    RAGQ_H1_MORE,   /* nothing more without more bytes */
    RAGQ_H1_HEADER, /* name/value of one header of the final answer */
    RAGQ_H1_HEAD,   /* the final answer's head is read: status, framing */
    RAGQ_H1_BODY,   /* data/len: body bytes (decoded from chunks) */
    RAGQ_H1_DONE,   /* the answer is complete */
    RAGQ_H1_ERROR   /* error says why; the connection is unusable */
} ragq_h1_event_t;

typedef struct {
    int         state;
    int         status;       /* of the answer being read */
    int         keep_alive;   /* the connection may carry another request */
    int         closing;      /* "close" in a Connection header */
    int         http10;       /* an HTTP/1.0 answer */
    int64_t     keep_alive_s; /* Keep-Alive: timeout=N (seconds), -1: none */
    int         chunked;
    int64_t     length; /* Content-Length, -1 when none */
    uint64_t    left;   /* body bytes left in the body or current chunk */
    size_t      head;   /* bytes of head (and trailers) read so far */
    int         took;   /* any byte of this answer taken */
    const char *error;
    /* The last event's text (a header, or body bytes), within the input. */
    const char *name, *data;
    size_t      name_len, len;
} ragq_h1_parser_t;

/* Ready for the answer to a request just sent (POST: a body may follow). */
void ragq_h1_parser_init(ragq_h1_parser_t *p);

/*
 * Reads from buf[0..n): returns the event and sets *used to the bytes it
 * took (0 with RAGQ_H1_MORE when a line is not whole yet: call again with
 * more bytes after these).  Lines end in LF or CRLF.
 */
ragq_h1_event_t ragq_h1_parse(ragq_h1_parser_t *p, const char *buf, size_t n,
                              size_t *used);

/*
 * The peer closed the connection: RAGQ_H1_DONE when that ends the answer
 * (a body read until close), else RAGQ_H1_ERROR with error set.
 */
ragq_h1_event_t ragq_h1_parse_eof(ragq_h1_parser_t *p);

#endif
