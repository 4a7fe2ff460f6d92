/*
 * upstream.h: what the job pipeline and every backend share: a retrieved
 * source, a point to store, and an upstream error with the rule that decides
 * whether it is worth another attempt.  Implemented in upstream.c.
 */

#ifndef RAGQ_UPSTREAM_H
#define RAGQ_UPSTREAM_H

#include <stddef.h>

typedef struct {
    char  *id;     /* point id as text: decimal or UUID */
    double score;  /* similarity, higher is better */
    char  *source; /* metadata.source (or payload "source"), "" if none */
    char  *text;   /* page_content, or payload "text", "" if none */
} ragq_source_t;

/* A point to write to a collection (Qdrant or the local store). */
typedef struct {
    const char  *id; /* UUID text */
    const float *vector;
    const char  *source;
    const char  *text;
    unsigned     chunk; /* position of the chunk in its document */
} ragq_point_t;

typedef struct {
    int  http_status;    /* 0: no HTTP answer (connect error, timeout, drop) */
    int  retryable;      /* 1: retry after backoff; 0: fail the job now */
    long retry_after_ms; /* from Retry-After / retry-after-ms; -1 if none */
    char code[64];       /* snake_case, becomes the job's error.code */
    char message[512];   /* the upstream's own message where it gave one */
} ragq_upstream_error_t;

/* Frees n sources and the array itself; NULL is fine. */
void ragq_sources_free(ragq_source_t *sources, size_t n);

/*
 * The job hash's "sources" field: a JSON array of
 * {"id","score","source","text"}, text cut to excerpt_max bytes on a UTF-8
 * character boundary (0: not cut), scores with 6 significant digits, invalid
 * UTF-8 as U+FFFD.  Returns a malloc'd string, NULL on allocation failure.
 */
char *ragq_sources_to_json(const ragq_source_t *sources, size_t n,
                           size_t excerpt_max);

/* Sets every field of err; message is printf-style. */
void ragq_upstream_error_set(ragq_upstream_error_t *err, int http_status,
                             int retryable, const char *code, const char *fmt,
                             ...) __attribute__((format(printf, 5, 6)));

/*
 * Classifies a non-2xx HTTP answer.  api is "embeddings", "chat" or
 * "qdrant" (it changes how the body is read and which codes come out).
 * retry_after and retry_after_ms are the raw header values or NULL.
 * 408, 409, 429 and 5xx are retryable; 400, 401, 403, 404 and 422 are not.
 * The message is the upstream's own ("error.message" for OpenAI-compatible
 * servers, "status.error" for Qdrant, else the start of the body).
 */
void ragq_upstream_error_from_http(ragq_upstream_error_t *err, const char *api,
                                   long status, const char *retry_after,
                                   const char *retry_after_ms, const char *body,
                                   size_t len);

/*
 * base + path with exactly one '/' between them ("http://h/v1/" +
 * "/embeddings").  Returns a malloc'd string.
 */
char *ragq_url_join(const char *base, const char *path);

/* Percent-encodes a path segment (a collection name).  malloc'd. */
char *ragq_url_escape_segment(const char *segment);

/*
 * Added for the codecs (openai.c, qdrant.c) and anyone else who writes JSON
 * by hand.  A growable buffer for building JSON text in one pass (amortised
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

/* The NUL-terminated text (the caller frees it), NULL after a failure. */
char *ragq_jbuf_finish(ragq_jbuf_t *b);

/*
 * Parses a whole JSON text of len bytes (trailing whitespace allowed);
 * NULL when it is not JSON.  Free with json_object_put.
 */
struct json_object *ragq_json_parse(const char *text, size_t len);

#endif
