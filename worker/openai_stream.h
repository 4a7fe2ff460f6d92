/*
 * openai_stream.h: the incremental parser of a streamed OpenAI-compatible
 * chat answer (POST /chat/completions with "stream": true): Server-Sent
 * Events, fed in whatever pieces the network delivers (chunk boundaries
 * anywhere: inside a line, a CRLF, a UTF-8 character), lines ended by
 * CRLF, LF or CR, comments (": ..."), events of several "data:" lines,
 * "data: [DONE]" at the end (nothing after it counts: s->done tells the
 * caller it need not wait for the end of the body), the text in
 * choices[0].delta.content, the usage object in the last chunk when
 * stream_options.include_usage is honoured (absent when the server ignores it).
 * A server that ignores "stream" altogether and answers one JSON object is
 * understood too.
 *
 * The answer is made valid UTF-8 as it grows (an invalid byte becomes
 * U+FFFD, a NUL too; a character split across deltas is held back until
 * it is whole), and every byte added to it is handed to the piece
 * callback once, in order: the pieces concatenated are the answer, byte
 * for byte.  Pure: no I/O.  Implemented in openai_stream.c.
 */

#ifndef RAGQ_OPENAI_STREAM_H
#define RAGQ_OPENAI_STREAM_H

#include <stddef.h>

#include "openai_chunk.h"
#include "upstream.h"

/* Text added to the answer (not NUL-terminated); never empty. */
typedef void (*ragq_chat_piece_cb)(const char *text, size_t len, void *data);

typedef struct {
    ragq_chat_piece_cb on_piece;
    void              *data;
    int                mode;     /* 0 not known yet, 1 SSE, 2 one JSON object */
    int                started;  /* past where a BOM may be (only first) */
    int                bom;      /* bytes of a BOM seen so far, 0..3 */
    int                after_cr; /* the last byte was CR (a LF may follow) */
    int                done;     /* "data: [DONE]" seen: the stream is over */
    int                failed;   /* err says why; the rest is ignored */
    char              *line, *ev, *raw, *answer;
    size_t             linelen, linecap, evlen, evcap, rawlen, rawcap;
    size_t             anslen, anscap;
    int                ev_data, ev_error; /* the event has data; is "error" */
    unsigned char      pend[4];           /* an incomplete UTF-8 character */
    size_t             npend;
    char              *usage_json, *refusal;
    size_t             refusallen, refusalcap;
    char              *unesc; /* a content with escapes, unescaped */
    size_t             unesccap;
    int                jsonr_only; /* tests: no openai_chunk.c fast path */
    ragq_chat_chunk_shape_t shape; /* the last event's, see openai_chunk.h */
    char                    finish[32];
    ragq_upstream_error_t   err;
} ragq_chat_stream_t;

void ragq_chat_stream_init(ragq_chat_stream_t *s, ragq_chat_piece_cb on_piece,
                           void *data);

/*
 * Feeds the next bytes of the answer's body.  0, or -1 when the stream is
 * broken (s->err filled, a malformed answer: not JSON, an error event, out
 * of memory); after -1 every call returns -1.
 */
int ragq_chat_stream_feed(ragq_chat_stream_t *s, const char *buf, size_t n);

/*
 * The body ended.  0 with *answer (the whole text, malloc'd; the pieces
 * already handed out plus any last one handed out now) and *usage_json
 * (the usage object, or NULL; malloc'd), or -1 with s->err: ended before
 * "[DONE]" and before any finish_reason (cut), empty content, a refusal.
 */
int ragq_chat_stream_end(ragq_chat_stream_t *s, char **answer,
                         char **usage_json);

void ragq_chat_stream_free(ragq_chat_stream_t *s);

#endif
