/*
 * openai_chunk.h: the quick reader of one event of a streamed chat answer
 * (a chat.completion.chunk), for openai_stream.c.  One pass over the JSON,
 * nothing allocated, for the shape nearly every event has: it finds
 * choices[0].finish_reason and choices[0].delta.content / .refusal.
 * Whatever it cannot vouch for (an "error" or a "usage" object, a repeated
 * or escaped member name among those it reads, an escape in finish_reason
 * or refusal, a content that is neither a string nor null, nesting past 64
 * levels, text that is not JSON) it declines, and the caller parses the
 * event with jsonr as before.  What it accepts, jsonr reads the same way:
 * fuzz/fuzz_openai.c feeds every input through both.  Implemented in
 * openai_chunk.c.
 */

#ifndef RAGQ_OPENAI_CHUNK_H
#define RAGQ_OPENAI_CHUNK_H

#include <stddef.h>

/* Pointers into the event's text; the strings are raw (between quotes). */
typedef struct {
    int         has_choice; /* choices[0] is an object */
    int         has_delta;  /* ...and its delta is an object */
    const char *finish;     /* finish_reason when a string, without escapes */
    size_t      finish_len;
    const char *refusal; /* delta.refusal when a string, without escapes */
    size_t      refusal_len;
    const char *content; /* delta.content when a string (NULL: null or
                            absent) */
    size_t content_len;
    int    content_escaped; /* has escapes: ragq_json_unescape it */
} ragq_chat_chunk_t;

/* 0 with *ck filled, or -1: declined, parse the event with jsonr. */
int ragq_chat_chunk_read(const char *data, size_t len, ragq_chat_chunk_t *ck);

/*
 * The shape of the last event read with content: its bytes before the
 * content string and after it.  A model's events differ, one to the next,
 * only in that string (same id, created, model, keys, finish_reason null),
 * so an event with the same bytes around a valid string reads the same
 * way but for the content: only the string is scanned.  Anything else
 * (another shape, the last event's finish_reason) is read in full and
 * becomes the shape.  Zeroed to start; freed with ..._shape_free.
 */
typedef struct {
    char             *bytes; /* prefix (through the opening quote), suffix */
    size_t            prefix, suffix, cap;
    ragq_chat_chunk_t ck; /* finish and refusal: see where */
    int               finish_where, refusal_where; /* 0, 1 prefix, 2 suffix */
    size_t            finish_off, refusal_off;
    int               valid;
    unsigned long     hits; /* events read by their shape (tests) */
} ragq_chat_chunk_shape_t;

int  ragq_chat_chunk_read_shaped(ragq_chat_chunk_shape_t *sh, const char *data,
                                 size_t len, ragq_chat_chunk_t *ck);
void ragq_chat_chunk_shape_free(ragq_chat_chunk_shape_t *sh);

#endif
