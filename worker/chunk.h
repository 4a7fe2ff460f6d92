/*
 * chunk.h: splits a document into overlapping chunks of about chunk_size
 * characters for ragq-ingest.  Sizes count UTF-8 characters (a multi-byte
 * character is never split); cuts prefer a paragraph break, then the end of
 * a sentence or line, then a space.  Implemented in chunk.c.
 */

#ifndef RAGQ_CHUNK_H
#define RAGQ_CHUNK_H

#include <stddef.h>

typedef struct {
    char    *text;  /* malloc'd, NUL-terminated, trimmed of outer spaces */
    size_t   len;   /* bytes in text */
    size_t   chars; /* UTF-8 characters in text */
    size_t   start; /* byte offset of the chunk in the document */
    unsigned index; /* 0, 1, 2 ... in document order */
} ragq_chunk_t;

/*
 * Splits text[0..len) into chunks of at most chunk_size characters, each
 * starting with up to about overlap characters of the end of the previous
 * one (cut at a sentence or word start).  A document of only whitespace
 * gives no chunks.  chunk_size must be >= 1 and overlap < chunk_size.
 * Returns 0 with *chunks malloc'd (free with ragq_chunks_free), -1 when out
 * of memory or the sizes are invalid.
 */
int ragq_chunk_text(const char *text, size_t len, unsigned chunk_size,
                    unsigned overlap, ragq_chunk_t **chunks, size_t *n);

void ragq_chunks_free(ragq_chunk_t *chunks, size_t n);

#endif
