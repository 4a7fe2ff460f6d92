/*
 * ragq: one connection to a Valkey server or a sentinel, owned by nginx
 * (ngx_http_ragq_conn.c): ngx_event_connect_peer() over TCP or a unix
 * socket, nginx's SSL layer for TLS (verification, SNI, client
 * certificates, session reuse), an output buffer sent once per event-loop
 * turn, and the reply reader (ngx_http_ragq_reply.c), its replies paired in
 * order with what the owner expects.
 */

#ifndef _NGX_HTTP_RAGQ_CONN_H_INCLUDED_
#define _NGX_HTTP_RAGQ_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <hiredis/hiredis.h>

#include "ngx_http_ragq_peer.h"
#include "ngx_http_ragq_reply.h"


typedef struct ngx_http_ragq_conn_s ngx_http_ragq_conn_t;

/*
 * A reply, in the order the commands were written; NULL when the
 * connection closed first. The reply is freed when the handler returns,
 * unless the handler sets conn->keep (then it frees it itself, with
 * ngx_http_ragq_reply_free_kept(): only connections without the arena may
 * keep replies).
 */
typedef void (*ngx_http_ragq_conn_reply_pt)(ngx_http_ragq_conn_t *conn,
                                            void *data, redisReply *reply);
typedef void (*ngx_http_ragq_conn_event_pt)(ngx_http_ragq_conn_t *conn);


typedef struct {
    ngx_http_ragq_conn_reply_pt handler;
    void                       *data;
} ngx_http_ragq_expect_t;


/* how a connection speaks TLS; ssl == NULL: plain TCP or unix socket */
typedef struct {
#if (NGX_SSL)
    ngx_ssl_t *ssl;
#endif
    ngx_flag_t verify;
    ngx_str_t  name; /* empty: the peer's host; NUL-terminated */
} ngx_http_ragq_tls_t;


typedef enum {
    NGX_HTTP_RAGQ_CONN_CLOSED = 0,
    NGX_HTTP_RAGQ_CONN_CONNECTING,
    NGX_HTTP_RAGQ_CONN_TLS,
    NGX_HTTP_RAGQ_CONN_OPEN
} ngx_http_ragq_conn_state_e;


struct ngx_http_ragq_conn_s {
    ngx_connection_t *c;
    void             *data; /* the owner's */

    /* the owner's hooks */
    ngx_http_ragq_conn_event_pt open;  /* connected (TLS done) */
    ngx_http_ragq_conn_event_pt lost;  /* failed or closed by the peer; err */
    ngx_http_ragq_conn_event_pt flush; /* just before the buffer is sent */
    ngx_http_ragq_conn_reply_pt push;  /* pub/sub messages, data == NULL */

    /* written, not sent yet: [pos, last) */
    u_char *out;
    u_char *out_pos;
    u_char *out_last;
    u_char *out_end;

    /* the replies expected, in order: [head, tail) modulo the size */
    ngx_http_ragq_reader_t reader;

    ngx_http_ragq_expect_t *fifo;
    ngx_uint_t              fifo_size; /* a power of two */
    ngx_uint_t              head;
    ngx_uint_t              tail;

    ngx_event_t flush_ev;
    ngx_log_t   log;       /* nginx's own messages about this connection */
    ngx_msec_t  last_read; /* progress: the last time any byte came in */
    ngx_uint_t  gen;       /* changes at every close */

    ngx_str_t peer; /* host:port, for messages */
    ngx_str_t host; /* the peer's host: SNI, certificate check */
    ngx_str_t err;  /* why it was lost */
    u_char    peerbuf[NGX_HTTP_RAGQ_HOST_MAX + sizeof("[]:65535")];
    u_char    hostbuf[NGX_HTTP_RAGQ_HOST_MAX + 1];
    u_char    errbuf[320];

#if (NGX_SSL)
    ngx_http_ragq_tls_t *tls;
    ngx_ssl_session_t   *ssl_session;
#endif

    unsigned state : 2;
    unsigned keep : 1;     /* the reply handler keeps the reply */
    unsigned arena : 1;    /* replies built in the arena (one reader only) */
    unsigned idle : 1;     /* closed at once on graceful shutdown */
    unsigned quiet : 1;    /* nginx's own connection messages muted */
    unsigned shutdown : 1; /* lost because nginx is shutting down */
};


#define ngx_http_ragq_conn_pending(conn) ((conn)->tail - (conn)->head)
/* bytes written and not handed to the socket yet */
#define ngx_http_ragq_conn_unsent(conn) \
    ((size_t) ((conn)->out_last - (conn)->out_pos))
#define ngx_http_ragq_conn_open_p(conn) \
    ((conn)->state == NGX_HTTP_RAGQ_CONN_OPEN)


/*
 * Starts a connect; the open or lost hook follows. NGX_ERROR: it failed at
 * once, conn->err says why, and no hook is called. Commands may be written
 * before the connection is open: they go out once it is.
 */
ngx_int_t ngx_http_ragq_conn_connect(ngx_http_ragq_conn_t    *conn,
                                     ngx_http_ragq_peer_t    *peer,
                                     ngx_http_ragq_resolve_t *addr,
                                     ngx_http_ragq_tls_t     *tls);

/* every expected reply is handed NULL; no hook is called; idempotent */
void ngx_http_ragq_conn_close(ngx_http_ragq_conn_t *conn);

/* the process exits: buffers and the TLS session go too */
void ngx_http_ragq_conn_free(ngx_http_ragq_conn_t *conn);

/* RESP bytes, copied; sent at the end of this event-loop turn */
ngx_int_t ngx_http_ragq_conn_write(ngx_http_ragq_conn_t *conn, u_char *data,
                                   size_t len);

/* the next reply not otherwise expected goes to handler */
ngx_int_t ngx_http_ragq_conn_reserve(ngx_http_ragq_conn_t *conn, ngx_uint_t n);
ngx_int_t ngx_http_ragq_conn_expect(ngx_http_ragq_conn_t       *conn,
                                    ngx_http_ragq_conn_reply_pt handler,
                                    void                       *data);

/* the expected replies from the oldest: *i starts at 0; NULL at the end */
ngx_http_ragq_expect_t *ngx_http_ragq_conn_next(ngx_http_ragq_conn_t *conn,
                                                ngx_uint_t           *i);

/* inside the transport (ngx_http_ragq_conn_tls.c) */
void ngx_http_ragq_conn_ready(ngx_http_ragq_conn_t *conn);
void ngx_http_ragq_conn_lost(ngx_http_ragq_conn_t *conn);
#if (NGX_SSL)
void ngx_http_ragq_conn_tls_start(ngx_http_ragq_conn_t *conn);
#endif

/* formats conn->err */
void ngx_http_ragq_conn_error(ngx_http_ragq_conn_t *conn, const char *fmt, ...);


#endif /* _NGX_HTTP_RAGQ_CONN_H_INCLUDED_ */
