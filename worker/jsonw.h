/*
 * jsonw.h: the worker's JSON writer, the other half of jsonr.h: request
 * bodies, the job's sources and usage fields, error objects are all written
 * by hand, in one pass, through this buffer.  Strings come out as valid
 * UTF-8 whatever went in; numbers as printf's "%.*g" would print them, only
 * faster.  Implemented in jsonw.c.
 */

#ifndef RAGQ_JSONW_H
#define RAGQ_JSONW_H

#include <stddef.h>

/*
 * A growable buffer for building JSON text in one pass (amortised
 * doubling, so big request bodies are not built quadratically).  After an
 * allocation failure every call is a no-op and ragq_jbuf_finish returns
 * NULL, so callers check once at the end.
 */
typedef struct {
    char  *data;
    size_t len;
    size_t cap;
    int    failed;
} ragq_jbuf_t;

void ragq_jbuf_init(ragq_jbuf_t *b, size_t hint);
void ragq_jbuf_add(ragq_jbuf_t *b, const char *s, size_t n);
void ragq_jbuf_adds(ragq_jbuf_t *b, const char *s);

/* s[0..n) as a quoted JSON string; invalid UTF-8 and NUL become U+FFFD. */
void ragq_jbuf_string(ragq_jbuf_t *b, const char *s, size_t n);

/* v with prec significant digits ("%.*g"); NaN and infinities as null. */
void ragq_jbuf_number(ragq_jbuf_t *b, double v, int prec);

void ragq_jbuf_uint(ragq_jbuf_t *b, unsigned long long v);

/* Empty again, its allocation kept for the next text (and a failure
 * forgotten); ragq_jbuf_free releases it. */
void ragq_jbuf_reset(ragq_jbuf_t *b);
void ragq_jbuf_free(ragq_jbuf_t *b);

/* The NUL-terminated text (the caller frees it), NULL after a failure. */
char *ragq_jbuf_finish(ragq_jbuf_t *b);

#endif
