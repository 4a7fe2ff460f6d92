/*
 * http_int.h: what http.c (libcurl multi on the worker's loop), http_pace.c
 * (the paced reads of streamed answers) and the own HTTP/1.1 client
 * (http1.c, http1_head.c, http1_origin.c) share, and nobody else: a
 * request's and the client's state, and the calls between these files.
 */

#ifndef RAGQ_HTTP_INT_H
#define RAGQ_HTTP_INT_H

#include "http.h"
#include "http1_parse.h"
#include "jsonw.h"
#include "resolver.h"

#include <curl/curl.h>

typedef struct ragq_h1_origin_s ragq_h1_origin_t;
typedef struct ragq_h1_conn_s   ragq_h1_conn_t;

/* Distinct extra headers (auth per backend) whose lists are cached. */
#define RAGQ_HTTP_HEADER_SETS 8

struct ragq_http_req_s {
    ragq_http_t      *http;
    ragq_http_req_t  *prev, *next;
    CURL             *easy;
    char             *send; /* the request body, owned */
    char             *body;
    size_t            len, cap;
    char             *retry_after, *retry_after_ms;
    int               too_big;
    size_t            max_answer; /* bytes of body accepted */
    uint64_t          started;
    long              timeout_ms;
    ragq_http_cb      cb;
    void             *data;
    ragq_http_data_cb on_data;  /* streamed 2xx body, or NULL */
    void             *own;      /* its own header list (curl_slist), or NULL */
    void             *resolve;  /* names curl forgets (http_dns.c), or NULL */
    int               proxied;  /* sent to a proxy */
    size_t            streamed; /* bytes handed to on_data */
    int               ended;    /* on_data said RAGQ_HTTP_DATA_END */
    uint64_t          ended_at; /* when */
    int               end_wait; /* http1.c: its timer waits for the end */
    curl_socket_t     paced;    /* its fd while read on the tick, or BAD */
    uint64_t          first_body; /* when its streamed body began, or 0 */
    uint64_t          last_body;  /* when its streamed body last came */
    curl_socket_t     sock;       /* the fd curl last watched for it */
    char              errbuf[CURL_ERROR_SIZE];
    /* Carried by http1.c instead of curl when origin is set. */
    ragq_h1_origin_t *origin;
    ragq_h1_conn_t   *conn;         /* carrying it, or NULL while it waits */
    ragq_http_req_t *wnext, *wprev; /* its origin's queue of requests waiting */
    int              waiting;
    int              retried; /* sent again after a kept connection died */
    long             status;
    ragq_jbuf_t      head; /* request line and headers, kept for reuse */
    size_t           sent;
    size_t           send_len; /* of send, the request body */
    ragq_timer_t     timer;    /* its timeout, or a failure posted */
    const char      *fail;     /* the posted failure */
    int              fail_timed_out;
    char             fail_buf[160];
};

/*
 * Paced reads (see DEVELOPERS.md "Answer streams"): once a streamed answer
 * has been arriving for 50 ms, its connection is no longer watched for
 * reading; the tick reads every paced connection once per pace
 * (RAGQ_STREAM_INTERVAL, 50 ms by default) instead.  A model sends one
 * small SSE event per token; waking up for each (epoll_wait, recv, curl,
 * parse) cost ~15 us a token, while the answer is only written to Valkey in
 * batches of the same interval anyway.  A read that finds nothing is one
 * recv returning EAGAIN.
 */
#define RAGQ_HTTP_PACE_MS 50

/*
 * How long after on_data has its answer (an SSE "[DONE]") the end of the
 * body is still waited for, on top of a pace (the body's end may be read
 * on the next tick): servers send the last chunk right after [DONE], but
 * often in a write of its own, and a connection whose body ended is kept
 * (a new one, and with https a new handshake, otherwise).  A server that
 * holds the body open costs the answer only this much.
 */
#define RAGQ_HTTP_END_GRACE_MS 200

/*
 * How long a streamed body is read as it comes before it is paced, whatever
 * the pace: a short answer ends without a tick's wait, and a long pace does
 * not mean a long stretch of per-token reads at the start of every answer.
 * Paced sooner once a read comes RAGQ_HTTP_PACE_GAP_MS or more after the
 * one before: the model is sending token by token (an answer sent at once
 * arrives in reads back to back), and the first tokens have been handed on.
 */
#define RAGQ_HTTP_PACE_HEAD_MS 50
#define RAGQ_HTTP_PACE_GAP_MS  5

/* Whether a streamed body read now, begun at first_body and last read at
 * last_body (ragq_now_ms()), is to be paced from here on. */
int ragq_http_pace_due(uint64_t first_body, uint64_t last_body, uint64_t now);

typedef struct {
    curl_socket_t fd;
    unsigned      refs; /* paced transfers on it (HTTP/2 shares one) */
} ragq_http_paced_t;

typedef struct {
    char              *extra; /* the extra header line, NULL for none */
    struct curl_slist *list;
} ragq_http_headers_t;

struct ragq_http_s {
    ragq_loop_t        *loop;
    CURLM              *multi;
    CURLSH             *share;
    ragq_timer_t        timer;
    ragq_timer_t        tick; /* reads the paced fds */
    ragq_http_paced_t  *paced;
    size_t              npaced, paced_cap;
    curl_socket_t      *scratch; /* the tick's copy of the paced fds */
    unsigned char      *want;    /* per fd: RAGQ_IO_* curl last asked for */
    uint32_t           *pslot;   /* per fd: 1 + its index in paced, or 0 */
    size_t              nwant;
    ragq_http_req_t    *reqs;
    ragq_http_req_t    *idle; /* finished requests kept for reuse */
    size_t              active;
    size_t              nended; /* curl transfers ended by on_data, running */
    ragq_timer_t        end_timer; /* completes those when their grace is up */
    long                connect_timeout_ms;
    uint64_t            pace_ms; /* the tick's period */
    ragq_http_headers_t hsets[RAGQ_HTTP_HEADER_SETS];
    size_t              nhsets;
    /* From the environment at start, as curl would read it per transfer. */
    char              *http_proxy, *https_proxy, *no_proxy;
    struct curl_slist *dns_forget; /* for the next transfer (http_dns.c) */
    uint64_t           dns_forget_at;
    /* http1.c's state: cleartext requests, unless RAGQ_HTTP_CLIENT=curl. */
    int                own_client;
    long               max_per_host;
    ragq_resolver_t   *resolver;
    ragq_h1_origin_t **origins;
    size_t             norigins;
    ragq_h1_conn_t    *free_conns; /* closed, kept (see http1.c) */
    ragq_h1_conn_t   **h1paced;    /* connections read on the tick */
    size_t             nh1paced, h1paced_cap;
    ragq_h1_conn_t   **h1scratch;
    int                h1_closing;
};

/* http.c */
int  ragq_http_watch(ragq_http_t *http, curl_socket_t fd);
void ragq_http_check_done(ragq_http_t *http);
/* http_dns.c: req failed to connect, to no address of its URL's name:
 * the next transfer makes curl forget the name; _apply sets that on req
 * (or clears what its handle carried). */
void ragq_http_dns_unreachable(ragq_http_t *http, ragq_http_req_t *req);
void ragq_http_dns_apply(ragq_http_t *http, ragq_http_req_t *req);

/* The body of an answer as it comes, for either client: kept (up to
 * max_answer) or handed to on_data; -1 stops the transfer;
 * RAGQ_HTTP_DATA_END (then for every later call too, its bytes dropped):
 * on_data has its answer, the request is to complete with the bytes
 * already read (see ragq_http_data_cb). */
int ragq_http_take(ragq_http_req_t *req, const char *ptr, size_t n,
                   long status);
/* How long the body's end is waited for after on_data has its answer. */
uint64_t ragq_http_end_grace(const ragq_http_t *http);
/* Calls back with the answer, or the failure (error non-NULL), and
 * releases the request. */
void ragq_http_finish(ragq_http_req_t *req, long status, const char *error,
                      int timed_out);
/* Back on the free list (done or cancelled), whichever client carried it. */
void ragq_http_release(ragq_http_req_t *req);

/* http1_head.c: 0 when the URL is not http1.c's (curl takes it). */
int ragq_h1_url_split(const char *url, const char **auth, size_t *auth_len,
                      const char **host, size_t *host_len, int *port,
                      const char **path);
int ragq_h1_head_build(ragq_http_req_t *req, const char *path, const char *auth,
                       size_t auth_len, const char *const *headers, size_t n,
                       size_t len);

/* http1.c */
/* 0 started, 1 not a URL of http1.c's (curl's then), -1 failed. */
int  ragq_h1_start(ragq_http_req_t *req, const char *url,
                   const char *const *headers, size_t n, const char *body,
                   size_t len);
void ragq_h1_cancel(ragq_http_req_t *req);
void ragq_h1_pace_start(ragq_http_req_t *req);
void ragq_h1_pace_tick(ragq_http_t *http);
void ragq_h1_free(ragq_http_t *http);

/* http_pace.c */
ragq_http_paced_t *ragq_http_paced_find(ragq_http_t *http, curl_socket_t fd);
void ragq_http_paced_drop(ragq_http_t *http, ragq_http_paced_t *p);
void ragq_http_pace_tick(void *data);
void ragq_http_pace_start(ragq_http_req_t *req);
void ragq_http_pace_stop(ragq_http_req_t *req);

#endif
