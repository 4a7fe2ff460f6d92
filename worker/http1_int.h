/*
 * http1_int.h: what the own HTTP/1.1 client's two files share, and nobody
 * else: an origin and a connection, and the calls between http1.c (requests
 * and connections: sending, reading, keeping, pacing) and http1_origin.c
 * (origins: names, addresses, connecting, the queue of waiting requests).
 */

#ifndef RAGQ_HTTP1_INT_H
#define RAGQ_HTTP1_INT_H

#include "http_int.h"

enum { C_CONNECTING, C_BUSY, C_IDLE };

struct ragq_h1_origin_s {
    ragq_http_t     *http;
    char            *host;      /* without brackets: what is looked up */
    char            *authority; /* as in the URL: the Host header */
    int              port;
    int              numeric;
    ragq_addrs_t     addrs;
    int              prefer; /* the address that connected last */
    uint64_t         resolved_at;
    uint64_t         asked_at; /* the last lookup started */
    unsigned         recheck;  /* look the name up again before its TTL */
    ragq_lookup_t   *lookup;
    ragq_h1_conn_t  *idle;
    size_t           nconns;
    ragq_http_req_t *wait_head, *wait_tail;
};

struct ragq_h1_conn_s {
    ragq_h1_origin_t *origin; /* NULL while on the free list */
    ragq_h1_conn_t   *next;   /* idle or free list */
    int               fd;
    int               state;
    int               addr; /* how many of origin->addrs were tried */
    int               ai;   /* the one being tried */
    unsigned          watching;
    size_t            pidx;       /* 1 + index in http->h1paced, or 0 */
    unsigned          served;     /* answers read on it */
    int               got;        /* bytes of the current answer came */
    int               send_errno; /* sending the request failed: why */
    ragq_http_req_t  *req;
    ragq_h1_parser_t  parser;
    char             *buf;
    size_t            len, cap;
    ragq_timer_t      timer; /* connect timeout */
    uint64_t          idle_since;
    uint64_t          idle_ms; /* trusted this long idle, then closed */
};

/* http1_origin.c */
ragq_h1_origin_t *ragq_h1_origin_get(ragq_http_t *http, const char *auth,
                                     size_t auth_len, const char *host,
                                     size_t host_len, int port);
int               ragq_h1_origin_ready(ragq_h1_origin_t *o);
void              ragq_h1_origin_unreachable(ragq_h1_origin_t *o);
void              ragq_h1_wait_push(ragq_http_req_t *req, int front);
void              ragq_h1_wait_remove(ragq_http_req_t *req);
int               ragq_h1_connect(ragq_h1_conn_t *c);
void              ragq_h1_connect_failed(ragq_h1_conn_t *c, const char *why);
void              ragq_h1_origins_free(ragq_http_t *http);

/* http1.c */
void ragq_h1_dispatch(ragq_h1_origin_t *o);
void ragq_h1_req_fail(ragq_http_req_t *req, const char *why, int timed_out);

#endif
