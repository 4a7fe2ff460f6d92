/*
 * http.h: asynchronous HTTP POSTs for the job pipeline: the worker's own
 * HTTP/1.1 client for http:// (http1.c) and libcurl's multi
 * interface driven by the worker's event loop (socket and timer callbacks),
 * one shared connection cache with keep-alive and HTTP/2 where the server
 * offers it, per-request and connect timeouts, a cap on each answer's size,
 * Retry-After headers kept.
 */

#ifndef RAGQ_HTTP_H
#define RAGQ_HTTP_H

#include <stddef.h>

#include "loop.h"

typedef struct ragq_http_s     ragq_http_t;
typedef struct ragq_http_req_s ragq_http_req_t;

typedef struct {
    long        status;    /* HTTP status; 0 = no answer (see error) */
    int         timed_out; /* the transport error was a timeout */
    int         too_large; /* the answer was cut: larger than max_answer */
    const char *error;     /* transport error text, "" when status > 0 */
    const char *body;      /* NUL-terminated, valid during the callback */
    size_t      len;
    const char *retry_after; /* raw header values or NULL */
    const char *retry_after_ms;
    long        elapsed_ms;
} ragq_http_response_t;

/* Called once per request (never for a cancelled one), from the loop. */
typedef void (*ragq_http_cb)(const ragq_http_response_t *resp, void *data);

/*
 * max_per_host caps connections to one host (HTTP/1.1 needs one per
 * request in flight; HTTP/2 multiplexes over few).
 */
ragq_http_t *ragq_http_new(ragq_loop_t *loop, long connect_timeout_ms,
                           long max_per_host);
void         ragq_http_free(ragq_http_t *http);

/*
 * Non-zero: every request through libcurl (RAGQ_HTTP_CLIENT=curl); by
 * default http:// requests without a proxy go through http1.c.
 */
void ragq_http_use_curl(ragq_http_t *http, int curl_only);

/* A streamed answer, once paced, is read every ms milliseconds (default 50). */
void ragq_http_set_pace(ragq_http_t *http, long ms);

/*
 * POSTs a JSON body (copied).  header is one extra header line such as
 * "Authorization: Bearer KEY" or "api-key: KEY", or NULL.  An answer body
 * (decoded) larger than max_answer bytes is not read: the transfer stops
 * there (at once when its Content-Length says so) and resp->too_large is
 * set.  Returns NULL (and does not call cb) when the request could not be
 * set up.
 */
ragq_http_req_t *ragq_http_post(ragq_http_t *http, const char *url,
                                const char *header, const char *body,
                                size_t len, long timeout_ms, size_t max_answer,
                                ragq_http_cb cb, void *data);

/*
 * The same, but takes body (malloc'd, len bytes) instead of copying it; it
 * is freed when the request ends.  On NULL the caller still owns body.
 */
ragq_http_req_t *ragq_http_post_take(ragq_http_t *http, const char *url,
                                     const char *header, char *body, size_t len,
                                     long timeout_ms, size_t max_answer,
                                     ragq_http_cb cb, void *data);

/*
 * The same as ragq_http_post_take, with n header lines of this request
 * only (copied; callback.c's signature headers) after Content-Type.  Any
 * request of this file speaks only http:// and https:// and never follows
 * a redirect.
 */
ragq_http_req_t *ragq_http_post_headers(ragq_http_t *http, const char *url,
                                        const char *const *headers, size_t n,
                                        char *body, size_t len, long timeout_ms,
                                        size_t max_answer, ragq_http_cb cb,
                                        void *data);

/*
 * Receives the body of a 2xx answer as it arrives (streamed chat answers),
 * instead of buffering it: resp->body is then empty.  Returns 0 for more,
 * -1 to stop the transfer (the callback then sees status 0), or
 * RAGQ_HTTP_DATA_END when it has all it wants although the body may go on
 * (an SSE stream's "data: [DONE]", which ends it whatever the server does
 * next): nothing more is handed to it, and the request completes with its
 * status when the body ends, or at the latest a short grace later
 * (RAGQ_HTTP_END_GRACE_MS, http_int.h), its connection then closed amid the
 * body.  Called from inside curl: it must not start or cancel requests.
 */
typedef int (*ragq_http_data_cb)(const char *buf, size_t n, void *data);

#define RAGQ_HTTP_DATA_END 1

/* Streams the answer of a request just started to on_data (same data). */
void ragq_http_stream(ragq_http_req_t *req, ragq_http_data_cb on_data);

/* Aborts a request; its callback will not run.  NULL is fine. */
void ragq_http_cancel(ragq_http_req_t *req);

/* Requests started and not yet completed or cancelled. */
size_t ragq_http_active(const ragq_http_t *http);

#endif
