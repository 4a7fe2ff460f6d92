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
 * The header line that carries a backend's key, as libcurl takes it:
 * "name: prefixkey" (RAGQ_OPENAI_AUTH_HEADER, RAGQ_QDRANT_AUTH_HEADER).
 * *out is malloc'd, or NULL when key is NULL or empty (no header is sent
 * then).  Returns -1 when out of memory.
 */
int ragq_auth_header(const char *name, const char *prefix, const char *key,
                     char **out);

#endif
