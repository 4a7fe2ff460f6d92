/*
 * ragq: the transport of every Valkey and sentinel connection. nginx owns
 * the socket (ngx_event_connect_peer(), edge-triggered like upstream
 * connections), the bytes (c->recv/c->send, so TLS is nginx's SSL layer
 * with the same verification as proxy_ssl_verify) and the timing: commands
 * are appended to an output buffer and sent by one posted event at the end
 * of the event-loop turn, however many requests wrote. The reader
 * (ngx_http_ragq_reply.c) turns the bytes read into replies, which go to
 * the expected handlers in the order the commands were written (a FIFO),
 * or, on a subscribed connection, to the push hook. The owner
 * (ngx_http_ragq_valkey.c, ngx_http_ragq_sentinel.c) keeps the timers, the
 * handshake and the reconnects.
 */

#include "ngx_http_ragq_conn.h"


#define NGX_HTTP_RAGQ_OUT_MIN  16384
#define NGX_HTTP_RAGQ_FIFO_MIN 256
#define NGX_HTTP_RAGQ_READ_BUF 16384

/* an empty output buffer larger than this is freed (it grew in a stall) */
#define NGX_HTTP_RAGQ_OUT_KEEP 262144


static void ngx_http_ragq_conn_read_handler(ngx_event_t *rev);
static void ngx_http_ragq_conn_write_handler(ngx_event_t *wev);
static void ngx_http_ragq_conn_flush_handler(ngx_event_t *ev);
static void ngx_http_ragq_conn_connected(ngx_http_ragq_conn_t *conn);
static void ngx_http_ragq_conn_flush(ngx_http_ragq_conn_t *conn);
static void ngx_http_ragq_conn_out_reset(ngx_http_ragq_conn_t *conn);


/* what every connection reads into; the reader copies it at once */
static u_char ngx_http_ragq_conn_buf[NGX_HTTP_RAGQ_READ_BUF];


void
ngx_http_ragq_conn_error(ngx_http_ragq_conn_t *conn, const char *fmt, ...)
{
    u_char *p;
    va_list args;

    va_start(args, fmt);
    p = ngx_vslprintf(conn->errbuf, conn->errbuf + sizeof(conn->errbuf) - 1,
                      fmt, args);
    va_end(args);

    *p = '\0';
    conn->err.data = conn->errbuf;
    conn->err.len = p - conn->errbuf;
}


static void
ngx_http_ragq_conn_strerror(ngx_http_ragq_conn_t *conn, const char *what,
                            ngx_err_t err)
{
    u_char *p;
    u_char  text[NGX_MAX_ERROR_STR];

    p = ngx_strerror(err, text, sizeof(text));

    ngx_http_ragq_conn_error(conn, "%s %V failed (%d: %*s)", what, &conn->peer,
                             err, p - text, text);
}


static void
ngx_http_ragq_conn_copy(ngx_str_t *dst, u_char *buf, size_t size,
                        ngx_str_t *src)
{
    size_t len = ngx_min(src->len, size - 1);

    ngx_memcpy(buf, src->data, len);
    buf[len] = '\0';
    dst->data = buf;
    dst->len = len;
}


ngx_int_t
ngx_http_ragq_conn_connect(ngx_http_ragq_conn_t    *conn,
                           ngx_http_ragq_peer_t    *peer,
                           ngx_http_ragq_resolve_t *addr,
                           ngx_http_ragq_tls_t     *tls)
{
    int                   keepalive;
    ngx_int_t             rc;
    ngx_err_t             err;
    ngx_connection_t     *c;
    ngx_peer_connection_t pc;

    ngx_http_ragq_conn_close(conn);

    ngx_http_ragq_conn_copy(&conn->peer, conn->peerbuf, sizeof(conn->peerbuf),
                            &peer->name);
    ngx_http_ragq_conn_copy(&conn->host, conn->hostbuf, sizeof(conn->hostbuf),
                            &peer->host);
    ngx_str_null(&conn->err);

    /* nginx's messages about a connection that keeps failing are muted */
    conn->log = *ngx_cycle->log;
    if (conn->quiet && conn->log.log_level < NGX_LOG_DEBUG) {
        conn->log.log_level = NGX_LOG_ALERT;
    }

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));
    pc.sockaddr = &addr->sockaddr.sockaddr;
    pc.socklen = addr->socklen;
    pc.name = &conn->peer;
    pc.get = ngx_event_get_peer;
    pc.log = &conn->log;
    pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        err = ngx_socket_errno;

        if (rc == NGX_DECLINED && err) {
            ngx_http_ragq_conn_strerror(conn, "connect() to", err);
        } else {
            ngx_http_ragq_conn_error(conn, "connect() to %V failed",
                                     &conn->peer);
        }

        return NGX_ERROR;
    }

    c = pc.connection;
    c->data = conn;
    c->read->handler = ngx_http_ragq_conn_read_handler;
    c->write->handler = ngx_http_ragq_conn_write_handler;
    c->idle = conn->idle;

    conn->c = c;
    conn->state = NGX_HTTP_RAGQ_CONN_CONNECTING;
    conn->last_read = ngx_current_msec;
    conn->shutdown = 0;

    if (addr->sockaddr.sockaddr.sa_family != AF_UNIX) {
        /* a long-lived, often idle connection: let the kernel probe it */
        keepalive = 1;
        (void) setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE,
                          (const void *) &keepalive, sizeof(int));
    }

#if (NGX_SSL)
    conn->tls = (tls && tls->ssl) ? tls : NULL;

    if (conn->tls) {
        c->pool = ngx_create_pool(512, &conn->log);
        if (c->pool == NULL) {
            ngx_http_ragq_conn_error(conn, "out of memory");
            ngx_http_ragq_conn_close(conn);
            return NGX_ERROR;
        }
    }
#endif

    ngx_http_ragq_reader_init(&conn->reader, conn->arena);

    conn->flush_ev.handler = ngx_http_ragq_conn_flush_handler;
    conn->flush_ev.data = conn;
    conn->flush_ev.log = ngx_cycle->log;

    if (rc == NGX_OK) {
        /* a unix socket connects at once: go on from the event loop */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_http_ragq_conn_close(ngx_http_ragq_conn_t *conn)
{
    ngx_pool_t            *pool;
    ngx_connection_t      *c;
    ngx_http_ragq_expect_t e;

    if (conn->state == NGX_HTTP_RAGQ_CONN_CLOSED && conn->c == NULL) {
        return;
    }

    conn->state = NGX_HTTP_RAGQ_CONN_CLOSED;
    conn->gen++;

    c = conn->c;
    conn->c = NULL;

    if (c) {
        pool = c->pool;

#if (NGX_SSL)
        if (c->ssl) {
            /* a quiet shutdown: never waits for the peer */
            c->ssl->no_wait_shutdown = 1;
            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif

        ngx_close_connection(c);

        if (pool) {
            ngx_destroy_pool(pool);
        }
    }

    if (conn->flush_ev.posted) {
        ngx_delete_posted_event(&conn->flush_ev);
    }

    ngx_http_ragq_reader_free(&conn->reader);

    ngx_http_ragq_conn_out_reset(conn);

    /* the owner refuses new commands now: the FIFO only shrinks */
    while (conn->head != conn->tail) {
        e = conn->fifo[conn->head & (conn->fifo_size - 1)];
        conn->head++;
        e.handler(conn, e.data, NULL);
    }

    conn->head = 0;
    conn->tail = 0;
}


void
ngx_http_ragq_conn_free(ngx_http_ragq_conn_t *conn)
{
    ngx_http_ragq_conn_close(conn);

    if (conn->out) {
        ngx_free(conn->out);
        conn->out = NULL;
        conn->out_pos = NULL;
        conn->out_last = NULL;
        conn->out_end = NULL;
    }

    if (conn->fifo) {
        ngx_free(conn->fifo);
        conn->fifo = NULL;
        conn->fifo_size = 0;
    }

#if (NGX_SSL)
    if (conn->ssl_session) {
        ngx_ssl_free_session(conn->ssl_session);
        conn->ssl_session = NULL;
    }
#endif
}


/* failed, or closed by the peer: the owner hears first, then the FIFO */
void
ngx_http_ragq_conn_lost(ngx_http_ragq_conn_t *conn)
{
    ngx_uint_t gen = conn->gen;

    if (conn->err.len == 0) {
        ngx_http_ragq_conn_error(conn, "connection to %V failed", &conn->peer);
    }

    if (conn->lost) {
        conn->lost(conn);
    }

    if (conn->gen == gen) {
        ngx_http_ragq_conn_close(conn);
    }
}


ngx_int_t
ngx_http_ragq_conn_write(ngx_http_ragq_conn_t *conn, u_char *data, size_t len)
{
    u_char *p;
    size_t  used, size;

    if ((size_t) (conn->out_end - conn->out_last) < len) {
        used = conn->out_last - conn->out_pos;

        if (conn->out && conn->out_pos != conn->out
            && (size_t) (conn->out_end - conn->out) >= used + len)
        {
            /* what was sent makes room */
            ngx_memmove(conn->out, conn->out_pos, used);

        } else {
            size = ngx_max((size_t) NGX_HTTP_RAGQ_OUT_MIN,
                           (size_t) (conn->out_end - conn->out));

            while (size < used + len) {
                size *= 2;
            }

            p = ngx_alloc(size, ngx_cycle->log);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (used) {
                ngx_memcpy(p, conn->out_pos, used);
            }

            if (conn->out) {
                ngx_free(conn->out);
            }

            conn->out = p;
            conn->out_end = p + size;
        }

        conn->out_pos = conn->out;
        conn->out_last = conn->out + used;
    }

    conn->out_last = ngx_cpymem(conn->out_last, data, len);

    if (conn->state == NGX_HTTP_RAGQ_CONN_OPEN && conn->c->write->ready) {
        /* once per turn: after every handler of this turn has written */
        ngx_post_event(&conn->flush_ev, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ragq_conn_grow(ngx_http_ragq_conn_t *conn)
{
    ngx_uint_t              i, n, size;
    ngx_http_ragq_expect_t *fifo;

    n = conn->tail - conn->head;
    size = conn->fifo_size ? conn->fifo_size * 2 : NGX_HTTP_RAGQ_FIFO_MIN;

    fifo = ngx_alloc(size * sizeof(ngx_http_ragq_expect_t), ngx_cycle->log);
    if (fifo == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        fifo[i] = conn->fifo[(conn->head + i) & (conn->fifo_size - 1)];
    }

    if (conn->fifo) {
        ngx_free(conn->fifo);
    }

    conn->fifo = fifo;
    conn->fifo_size = size;
    conn->head = 0;
    conn->tail = n;

    return NGX_OK;
}


/* room for n more expectations: registering them cannot fail then */
ngx_int_t
ngx_http_ragq_conn_reserve(ngx_http_ragq_conn_t *conn, ngx_uint_t n)
{
    while (conn->fifo_size - (conn->tail - conn->head) < n) {
        if (ngx_http_ragq_conn_grow(conn) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_conn_expect(ngx_http_ragq_conn_t       *conn,
                          ngx_http_ragq_conn_reply_pt handler, void *data)
{
    ngx_http_ragq_expect_t *fifo;

    if (conn->tail - conn->head == conn->fifo_size
        && ngx_http_ragq_conn_grow(conn) != NGX_OK)
    {
        return NGX_ERROR;
    }

    fifo = &conn->fifo[conn->tail & (conn->fifo_size - 1)];
    fifo->handler = handler;
    fifo->data = data;
    conn->tail++;

    return NGX_OK;
}


ngx_http_ragq_expect_t *
ngx_http_ragq_conn_next(ngx_http_ragq_conn_t *conn, ngx_uint_t *i)
{
    ngx_uint_t n = *i;

    if (n >= conn->tail - conn->head) {
        return NULL;
    }

    *i = n + 1;

    return &conn->fifo[(conn->head + n) & (conn->fifo_size - 1)];
}


/* ---- connecting ---- */


static void
ngx_http_ragq_conn_connected(ngx_http_ragq_conn_t *conn)
{
    int               err;
    socklen_t         len;
    ngx_connection_t *c = conn->c;

    err = 0;
    len = sizeof(int);

    /* as ngx_http_upstream_test_connect(): the connect's own outcome */
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_http_ragq_conn_strerror(conn, "connect() to", err);
        ngx_http_ragq_conn_lost(conn);
        return;
    }

    if (c->type == SOCK_STREAM && c->tcp_nodelay == NGX_TCP_NODELAY_UNSET) {
        /* replies must not wait for Nagle */
        (void) ngx_tcp_nodelay(c);
    }

#if (NGX_SSL)
    if (conn->tls) {
        ngx_http_ragq_conn_tls_start(conn);
        return;
    }
#endif

    ngx_http_ragq_conn_ready(conn);
}


void
ngx_http_ragq_conn_ready(ngx_http_ragq_conn_t *conn)
{
    ngx_uint_t gen = conn->gen;

    conn->state = NGX_HTTP_RAGQ_CONN_OPEN;
    conn->c->read->handler = ngx_http_ragq_conn_read_handler;
    conn->c->write->handler = ngx_http_ragq_conn_write_handler;

    if (conn->open) {
        conn->open(conn);
    }

    if (conn->gen == gen && conn->out_last > conn->out_pos) {
        ngx_http_ragq_conn_flush(conn);
    }
}


/* ---- reading ---- */


static ngx_flag_t
ngx_http_ragq_conn_is_push(redisReply *reply)
{
    redisReply *kind;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        return 0;
    }

    kind = reply->element[0];

    if (kind->type != REDIS_REPLY_STRING) {
        return 0;
    }

    /* RESP2: message, pmessage, (un)subscribe acks, and a subscriber's pong */
    switch (kind->len) {
    case 4:
        return ngx_strncasecmp((u_char *) kind->str, (u_char *) "pong", 4) == 0;
    case 7:
        return ngx_strncmp(kind->str, "message", 7) == 0;
    case 8:
        return ngx_strncmp(kind->str, "pmessage", 8) == 0;
    case 9:
        return ngx_strncmp(kind->str, "subscribe", 9) == 0;
    case 10:
        return ngx_strncmp(kind->str, "psubscribe", 10) == 0;
    case 11:
        return ngx_strncmp(kind->str, "unsubscribe", 11) == 0;
    case 12:
        return ngx_strncmp(kind->str, "punsubscribe", 12) == 0;
    }

    return 0;
}


/* every complete reply in the reader; NGX_ERROR: the connection is gone */
static ngx_int_t
ngx_http_ragq_conn_replies(ngx_http_ragq_conn_t *conn)
{
    ngx_uint_t             gen;
    redisReply            *reply;
    ngx_http_ragq_expect_t e;

    gen = conn->gen;

    for (;;) {
        if (ngx_http_ragq_reader_next(&conn->reader, &reply) != NGX_OK) {
            ngx_http_ragq_conn_error(conn, "protocol error from %V: %s",
                                     &conn->peer, conn->reader.err);
            ngx_http_ragq_conn_lost(conn);
            return NGX_ERROR;
        }

        if (reply == NULL) {
            return NGX_OK;
        }

        conn->keep = 0;

        if (conn->push && ngx_http_ragq_conn_is_push(reply)) {
            conn->push(conn, NULL, reply);

        } else if (conn->head == conn->tail) {
            /* e.g. "-ERR max number of clients reached" before a close */
            ngx_http_ragq_conn_error(conn, "unexpected reply from %V: %s",
                                     &conn->peer,
                                     reply->type == REDIS_REPLY_ERROR
                                         ? reply->str
                                         : "(not an error)");
            ngx_http_ragq_reply_free(&conn->reader, reply);
            ngx_http_ragq_conn_lost(conn);
            return NGX_ERROR;

        } else {
            e = conn->fifo[conn->head & (conn->fifo_size - 1)];
            conn->head++;
            e.handler(conn, e.data, reply);
        }

        if (!conn->keep) {
            ngx_http_ragq_reply_free(&conn->reader, reply);
        }

        if (conn->gen != gen) {
            /* a handler closed it: the reader is gone */
            return NGX_ERROR;
        }
    }
}


static void
ngx_http_ragq_conn_read_handler(ngx_event_t *rev)
{
    ssize_t               n;
    ngx_err_t             err;
    ngx_connection_t     *c = rev->data;
    ngx_http_ragq_conn_t *conn = c->data;

    /* graceful shutdown (idle connections) or worker_shutdown_timeout */
    if (c->close) {
        conn->shutdown = 1;
        ngx_http_ragq_conn_error(conn, "closed for shutdown");
        ngx_http_ragq_conn_lost(conn);
        return;
    }

    if (conn->state == NGX_HTTP_RAGQ_CONN_CONNECTING) {
        ngx_http_ragq_conn_connected(conn);
        return;
    }

    while (rev->ready) {
        n = c->recv(c, ngx_http_ragq_conn_buf, sizeof(ngx_http_ragq_conn_buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_ragq_conn_error(conn, "%V closed the connection",
                                     &conn->peer);
            ngx_http_ragq_conn_lost(conn);
            return;
        }

        if (n == NGX_ERROR) {
            err = ngx_socket_errno;

            if (err && c->ssl == NULL) {
                ngx_http_ragq_conn_strerror(conn, "recv() from", err);
            } else {
                ngx_http_ragq_conn_error(conn, "reading from %V failed",
                                         &conn->peer);
            }

            ngx_http_ragq_conn_lost(conn);
            return;
        }

        /* a large reply that streams in slowly is progress, not silence */
        conn->last_read = ngx_current_msec;

        if (ngx_http_ragq_reader_feed(&conn->reader, ngx_http_ragq_conn_buf,
                                      (size_t) n)
            != NGX_OK)
        {
            ngx_http_ragq_conn_error(conn, "out of memory");
            ngx_http_ragq_conn_lost(conn);
            return;
        }

        if (ngx_http_ragq_conn_replies(conn) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_ragq_conn_error(conn, "cannot watch %V", &conn->peer);
        ngx_http_ragq_conn_lost(conn);
    }
}


/* ---- writing ---- */


static void
ngx_http_ragq_conn_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c = wev->data;
    ngx_http_ragq_conn_t *conn = c->data;

    if (conn->state == NGX_HTTP_RAGQ_CONN_CONNECTING) {
        ngx_http_ragq_conn_connected(conn);
        return;
    }

    if (conn->state == NGX_HTTP_RAGQ_CONN_OPEN) {
        ngx_http_ragq_conn_flush(conn);
    }
}


static void
ngx_http_ragq_conn_flush_handler(ngx_event_t *ev)
{
    ngx_http_ragq_conn_t *conn = ev->data;

    if (conn->state == NGX_HTTP_RAGQ_CONN_OPEN) {
        ngx_http_ragq_conn_flush(conn);
    }
}


static void
ngx_http_ragq_conn_flush(ngx_http_ragq_conn_t *conn)
{
    ssize_t           n;
    ngx_err_t         err;
    ngx_uint_t        gen = conn->gen;
    ngx_connection_t *c;

    if (conn->flush) {
        conn->flush(conn);

        if (conn->gen != gen) {
            return;
        }
    }

    c = conn->c;

    while (conn->out_pos < conn->out_last) {
        n = c->send(c, conn->out_pos, conn->out_last - conn->out_pos);

        if (n == NGX_ERROR) {
            err = ngx_socket_errno;

            if (err && c->ssl == NULL) {
                ngx_http_ragq_conn_strerror(conn, "send() to", err);
            } else {
                ngx_http_ragq_conn_error(conn, "writing to %V failed",
                                         &conn->peer);
            }

            ngx_http_ragq_conn_lost(conn);
            return;
        }

        if (n == NGX_AGAIN || n == 0) {
            /* the rest goes when the socket says it may */
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_ragq_conn_error(conn, "cannot watch %V", &conn->peer);
                ngx_http_ragq_conn_lost(conn);
            }

            return;
        }

        conn->out_pos += n;
    }

    ngx_http_ragq_conn_out_reset(conn);
}


/*
 * Everything is sent (or dropped with the connection). A buffer that grew
 * while the server read nothing (up to the cap of ngx_http_ragq_command.c)
 * goes, so that its pages do not stay with the worker after the stall.
 */
static void
ngx_http_ragq_conn_out_reset(ngx_http_ragq_conn_t *conn)
{
    if (conn->out && conn->out_end - conn->out > NGX_HTTP_RAGQ_OUT_KEEP) {
        ngx_free(conn->out);
        conn->out = NULL;
        conn->out_end = NULL;
    }

    conn->out_pos = conn->out;
    conn->out_last = conn->out;
}
