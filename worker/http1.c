/*
 * http1.c: the worker's own HTTP/1.1 client, for cleartext (http://)
 * upstreams without a proxy: local models (Ollama, vLLM, llama.cpp server),
 * Qdrant and embedding servers next to the worker.  curl keeps https://,
 * proxies and any URL this file does not take (see ragq_h1_start).
 *
 * What it owns: per origin (host and port), the kept-alive connections (at
 * most max_per_host, reused last-in first-out) and which waiting request
 * gets one; per connection, its socket, the bytes read and the answer's
 * parser (http1_parse.c).  Names, addresses, connecting and the queue of
 * waiting requests are http1_origin.c's.  A request goes out in one
 * sendmsg of its head and body; the answer is read as it comes, its body
 * handed to http.c's ragq_http_take, like curl's; once that says the
 * streamed answer has ended (RAGQ_HTTP_DATA_END), the request completes
 * when the body ends, or its timer completes it a grace later and closes
 * the connection amid the body.  A kept connection
 * that dies before the first byte of its answer (the server closed it
 * while idle) sends the request once more, as curl does, after closing
 * the kept connections idle at least as long (the server closed them too).
 * An answer that comes while the request is still being sent (a 413 read
 * from the head alone, the server then closing or resetting the connection
 * amid the body) is read, also when the send fails on that reset, and is
 * the call's answer; the connection is not kept.
 * Callbacks never run from inside a call of the job pipeline: failures
 * found while starting are posted on the request's timer.
 *
 * Closed connections stay allocated on a free list until the client is
 * freed, so a tick's list of paced connections (read on the tick, see
 * http_int.h) can never point at freed memory, whatever a callback
 * cancels meanwhile.
 */

#include "http1_int.h"
#include "log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* A connection idle this long is not trusted with a request (curl: 118 s;
 * servers' own keep-alive timeouts are often shorter, 5 s to 75 s).  A
 * server that says its timeout (Keep-Alive: timeout=N, as Node's and
 * Apache's do) has its connections dropped a margin before it would: a
 * request sent as the server closes is lost with the connection. */
#define RAGQ_H1_IDLE_MS   60000
#define RAGQ_H1_IDLE_EDGE 1000
#define RAGQ_H1_BUF       (16u * 1024)
/* Reads of a paced connection per tick while each fills the buffer: a
 * stream faster than 16 kB a tick (320 kB/s at 50 ms) is not held back. */
#define RAGQ_H1_PACE_READS 8

static void conn_io(int fd, unsigned events, void *data);

/* ---- requests --------------------------------------------------------- */

static void conn_done(ragq_h1_conn_t *c, int keep);

static void
req_timer(void *data)
{
    ragq_http_req_t *req = data;

    if (req->ended) {
        /* Its answer is whole (on_data saw its end): the body's end was
         * waited for long enough, or the connection failed after. */
        if (req->conn != NULL) {
            conn_done(req->conn, 0);
        } else {
            ragq_http_finish(req, req->status, NULL, 0);
        }
        return;
    }
    /* Either a failure posted, or its time is up (wherever it is). */
    if (req->fail == NULL) {
        req->fail = "timed out";
        req->fail_timed_out = 1;
    }
    ragq_http_finish(req, 0, req->fail, req->fail_timed_out);
}

/*
 * Fails a request that no connection carries any more: its callback runs
 * on the next turn of the loop, never from inside the caller.
 */
void
ragq_h1_req_fail(ragq_http_req_t *req, const char *why, int timed_out)
{
    ragq_h1_origin_t *o = req->origin;

    ragq_h1_wait_remove(req);
    req->conn = NULL;
    snprintf(req->fail_buf, sizeof(req->fail_buf), "%s:%d: %s", o->host,
             o->port, why);
    req->fail = req->fail_buf;
    req->fail_timed_out = timed_out;
    ragq_timer_start(o->http->loop, &req->timer, 0);
}

int
ragq_h1_start(ragq_http_req_t *req, const char *url, const char *const *headers,
              size_t n, const char *body, size_t len)
{
    ragq_http_t      *http = req->http;
    const char       *auth, *host, *path;
    size_t            auth_len, host_len;
    int               port;
    ragq_h1_origin_t *o;

    /* A proxy (and its no_proxy exceptions) stays curl's business. */
    if (http->http_proxy != NULL ||
        !ragq_h1_url_split(url, &auth, &auth_len, &host, &host_len, &port,
                           &path)) {
        return 1;
    }
    if ((o = ragq_h1_origin_get(http, auth, auth_len, host, host_len, port)) ==
            NULL ||
        ragq_h1_head_build(req, path, auth, auth_len, headers, n, len) != 0) {
        return -1;
    }
    req->send = (char *) body;
    req->send_len = len;
    req->origin = o;
    req->conn = NULL;
    req->sent = 0;
    req->retried = 0;
    req->status = 0;
    req->fail = NULL;
    req->fail_timed_out = 0;
    req->timer.cb = req_timer;
    req->timer.data = req;
    ragq_timer_start(http->loop, &req->timer, (uint64_t) req->timeout_ms);
    ragq_h1_wait_push(req, 0);
    ragq_h1_dispatch(o);
    return 0;
}

/* ---- connections ------------------------------------------------------ */

static void
conn_watch(ragq_h1_conn_t *c)
{
    unsigned ev;

    if (c->state == C_CONNECTING) {
        ev = RAGQ_IO_WRITE;
    } else if (c->state == C_IDLE) {
        ev = RAGQ_IO_READ;
    } else {
        ev = c->pidx ? 0 : RAGQ_IO_READ;
        if (c->req && c->send_errno == 0 &&
            c->req->sent < c->req->head.len + c->req->send_len) {
            ev |= RAGQ_IO_WRITE;
        }
    }
    if (ev != c->watching) {
        ragq_loop_io(c->origin->http->loop, c->fd, ev, conn_io, c);
        c->watching = ev;
    }
}

static void
unpace(ragq_h1_conn_t *c)
{
    ragq_http_t *http = c->origin->http;
    size_t       i = c->pidx - 1;

    if (c->pidx == 0) {
        return;
    }
    c->pidx = 0;
    if (i != --http->nh1paced) {
        http->h1paced[i] = http->h1paced[http->nh1paced];
        http->h1paced[i]->pidx = i + 1;
    }
}

static void
conn_close(ragq_h1_conn_t *c)
{
    ragq_h1_origin_t *o = c->origin;
    ragq_http_t      *http = o->http;
    ragq_h1_conn_t  **pp;

    unpace(c);
    if (c->state == C_IDLE) {
        for (pp = &o->idle; *pp && *pp != c; pp = &(*pp)->next) {
        }
        if (*pp) {
            *pp = c->next;
        }
    }
    if (c->fd >= 0) {
        ragq_loop_io(http->loop, c->fd, 0, NULL, NULL);
        close(c->fd);
        c->fd = -1;
    }
    ragq_timer_stop(http->loop, &c->timer);
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    c->req = NULL;
    c->origin = NULL;
    o->nconns--;
    c->next = http->free_conns;
    http->free_conns = c;
}

static int conn_send(ragq_h1_conn_t *c);

/*
 * The address being tried failed (why): the next one, on a new socket, so
 * a name whose first address is unreachable (broken IPv6, say) still
 * connects; the request fails when none is left.
 */
static void
conn_try_next(ragq_h1_conn_t *c, const char *why, int timed_out)
{
    ragq_loop_t     *loop = c->origin->http->loop;
    ragq_http_req_t *req = c->req;

    ragq_timer_stop(loop, &c->timer);
    if (c->fd >= 0) {
        ragq_loop_io(loop, c->fd, 0, NULL, NULL);
        close(c->fd);
        c->fd = -1;
        c->watching = 0;
    }
    ragq_h1_connect_failed(c, why);
    c->addr++;
    if (ragq_h1_connect(c) != 0) {
        if (errno != 0) {
            why = strerror(errno);
            timed_out = 0;
        }
        ragq_h1_origin_unreachable(c->origin);
        conn_close(c);
        if (req) {
            ragq_h1_req_fail(req, why, timed_out);
        }
        return;
    }
    if (c->state == C_CONNECTING) {
        conn_watch(c);
        return;
    }
    c->origin->prefer = c->ai;
    conn_send(c);
}

static void
connect_timeout(void *data)
{
    conn_try_next(data, "no connection within the connect timeout", 1);
}

/*
 * The connection failed while carrying its request: a kept one that died
 * before any byte of the answer (closed by the server while idle) sends it
 * again, once; otherwise the request fails with why.  The kept connections
 * idle at least as long as the dead one are closed first: a server that
 * closes idle connections after some time (saying so or not) closed those
 * too, and the request sent again must not be lost with one of them.
 */
static void
conn_broken(ragq_h1_conn_t *c, const char *why)
{
    ragq_h1_origin_t *o = c->origin;
    ragq_http_req_t  *req = c->req;
    ragq_h1_conn_t   *i, *next;
    uint64_t          since = c->idle_since;
    int               again = c->served > 0 && !c->got;

    conn_close(c);
    if (again) {
        for (i = o->idle; i != NULL; i = next) {
            next = i->next;
            if (i->idle_since <= since) {
                conn_close(i);
            }
        }
    }
    if (req == NULL) {
        return;
    }
    req->conn = NULL;
    if (again && !req->retried) {
        req->retried = 1;
        req->sent = 0;
        ragq_h1_wait_push(req, 1);
        ragq_h1_dispatch(o);
        return;
    }
    ragq_h1_req_fail(req, why, 0);
}

/*
 * Sends what is left of the request; -1 when the connection broke.  A
 * server that answers early, from the head alone (a 413 for a body too
 * large, say), and then closes or resets the connection amid the body makes
 * the send fail (ECONNRESET, EPIPE) while its answer waits to be read: then
 * nothing more is sent, and the loop's next read (the socket is readable:
 * its end is) takes what arrived (conn_read: a whole answer is the call's,
 * the connection not kept as not all of the request went out; anything
 * less fails it with the send's error, the retry of a kept connection that
 * died before any byte of its answer included).  Read on the loop, never
 * here: this runs from ragq_h1_start too, where no callback may.
 */
static int
conn_send(ragq_h1_conn_t *c)
{
    ragq_http_req_t *req = c->req;
    size_t           total = req->head.len + req->send_len;
    struct iovec     iov[2];
    struct msghdr    msg;
    ssize_t          n;

    while (req->sent < total && c->send_errno == 0) {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        if (req->sent < req->head.len) {
            iov[0].iov_base = req->head.data + req->sent;
            iov[0].iov_len = req->head.len - req->sent;
            iov[1].iov_base = req->send;
            iov[1].iov_len = req->send_len;
            msg.msg_iovlen = req->send_len ? 2 : 1;
        } else {
            iov[0].iov_base = req->send + (req->sent - req->head.len);
            iov[0].iov_len = total - req->sent;
            msg.msg_iovlen = 1;
        }
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == ECONNRESET || errno == EPIPE) {
                c->send_errno = errno;
                break;
            }
            conn_broken(c, strerror(errno));
            return -1;
        }
        req->sent += (size_t) n;
    }
    conn_watch(c);
    return 0;
}

/* Carries req on c (connected or idle). */
static void
conn_attach(ragq_h1_conn_t *c, ragq_http_req_t *req)
{
    c->req = req;
    c->got = 0;
    c->send_errno = 0;
    c->len = 0;
    req->conn = c;
    ragq_h1_parser_init(&c->parser);
    if (c->state == C_IDLE) {
        c->state = C_BUSY;
    }
    if (c->state == C_BUSY) {
        conn_send(c);
    } else {
        conn_watch(c);
    }
}

/* The answer is complete: the connection is kept or closed, then the
 * request is answered (its callback may start or cancel others). */
static void
conn_done(ragq_h1_conn_t *c, int keep)
{
    ragq_h1_origin_t *o = c->origin;
    ragq_http_req_t  *req = c->req;

    c->req = NULL;
    req->conn = NULL;
    c->idle_ms = RAGQ_H1_IDLE_MS;
    if (c->parser.keep_alive_s >= 0 &&
        (uint64_t) c->parser.keep_alive_s * 1000 <
            RAGQ_H1_IDLE_MS + RAGQ_H1_IDLE_EDGE) {
        /* 0 (a timeout of at most the margin): not kept at all. */
        c->idle_ms =
            c->parser.keep_alive_s * 1000 > RAGQ_H1_IDLE_EDGE
                ? (uint64_t) c->parser.keep_alive_s * 1000 - RAGQ_H1_IDLE_EDGE
                : 0;
    }
    /* Not kept when the answer came before all of the request was sent
     * (an early 413, say): the rest would be read as the next request. */
    if (keep && c->parser.keep_alive && c->idle_ms > 0 && c->len == 0 &&
        req->sent == req->head.len + req->send_len) {
        unpace(c);
        c->served++;
        c->state = C_IDLE;
        c->idle_since = ragq_now_ms();
        c->next = o->idle;
        o->idle = c;
        conn_watch(c);
    } else {
        conn_close(c);
    }
    ragq_h1_dispatch(o);
    ragq_timer_stop(o->http->loop, &req->timer);
    ragq_http_finish(req, req->status, NULL, 0);
}

static char *
value_dup(const ragq_h1_parser_t *p)
{
    return strndup(p->data, p->len);
}

/*
 * Reads the answer out of c->buf.  Returns when more bytes are needed (0)
 * or the connection is no longer this answer's (-1: done or failed).
 */
static int
conn_parse(ragq_h1_conn_t *c)
{
    ragq_h1_parser_t *p = &c->parser;
    ragq_http_req_t  *req = c->req;
    size_t            off = 0, used;
    char             *v;

    for (;;) {
        switch (ragq_h1_parse(p, c->buf + off, c->len - off, &used)) {
        case RAGQ_H1_MORE:
            off += used;
            if (off > 0) {
                memmove(c->buf, c->buf + off, c->len - off);
                c->len -= off;
            }
            if (req->ended && !req->end_wait) {
                /* on_data has its answer; the body's end is not here
                 * yet: waited for a grace (the connection is kept if it
                 * comes), then the request completes and the connection,
                 * amid a body, is closed (req_timer). */
                req->end_wait = 1;
                ragq_timer_start(c->origin->http->loop, &req->timer,
                                 ragq_http_end_grace(c->origin->http));
            }
            return 0;
        case RAGQ_H1_HEADER:
            off += used;
            if (p->status < 200) {
                break;
            }
            if (p->name_len == 11 &&
                strncasecmp(p->name, "retry-after", 11) == 0 &&
                (v = value_dup(p)) != NULL) {
                free(req->retry_after);
                req->retry_after = v;
            } else if (p->name_len == 14 &&
                       strncasecmp(p->name, "retry-after-ms", 14) == 0 &&
                       (v = value_dup(p)) != NULL) {
                free(req->retry_after_ms);
                req->retry_after_ms = v;
            }
            break;
        case RAGQ_H1_HEAD:
            off += used;
            req->status = p->status;
            if (p->length >= 0 && (uint64_t) p->length > req->max_answer) {
                req->too_big = 1;
                conn_close(c);
                ragq_h1_req_fail(req, "answer too large", 0);
                return -1;
            }
            break;
        case RAGQ_H1_BODY:
            off += used;
            if (ragq_http_take(req, p->data, p->len, p->status) < 0) {
                conn_close(c);
                ragq_h1_req_fail(req, "answer not taken", 0);
                return -1;
            }
            break;
        case RAGQ_H1_DONE:
            off += used;
            c->len -= off; /* bytes after the answer: not kept then */
            conn_done(c, 1);
            return -1;
        case RAGQ_H1_ERROR:
            if (req->ended) {
                conn_done(c, 0); /* after the end on_data saw: whole */
                return -1;
            }
            conn_close(c);
            ragq_h1_req_fail(req, p->error, 0);
            return -1;
        }
    }
}

/*
 * Whether the end of the connection (a close, or a reset) ends the answer:
 * a body read until close; and, while the request is still being sent
 * (the server answered before reading all of it), a final error answer
 * whose body is read until close, as a server that refused the body (413)
 * ends it with a reset (any close with unread bytes resets).  The reset
 * may also cut such a refusal's body short: its status is still the
 * server's word on the request (a 413 is no less final for a short
 * message), so the call ends with it, as much of the body as came, and is
 * retried or not as that status says, rather than as a network error.
 */
static int
conn_eof_ends(ragq_h1_conn_t *c, int reset)
{
    ragq_http_req_t *req = c->req;
    int              refused =
        req->status >= 400 && req->sent < req->head.len + req->send_len;

    if (reset && !refused) {
        return 0;
    }
    if (ragq_h1_parse_eof(&c->parser) == RAGQ_H1_DONE) {
        return 1;
    }
    if (refused) {
        ragq_log(RAGQ_LOG_INFO,
                 "%s:%d: HTTP %ld came while the request was sent, its body "
                 "cut short by the connection's end; taken as it came",
                 c->origin->host, c->origin->port, req->status);
    }
    return refused;
}

/*
 * One read (level-triggered: the loop comes back for the rest).  1: the
 * read filled the room it had (more may be waiting); 0: nothing more to
 * read now; -1: the connection is no longer the request's (its answer
 * ended the call, or it failed).
 */
static int
conn_read(ragq_h1_conn_t *c)
{
    ssize_t     n;
    size_t      room;
    int         err;
    const char *why;
    char        buf[128];

    if (c->buf == NULL) {
        if ((c->buf = malloc(RAGQ_H1_BUF)) == NULL) {
            conn_broken(c, "out of memory");
            return -1;
        }
        c->cap = RAGQ_H1_BUF;
    }
    if (c->len == c->cap) {
        /* A line longer than the buffer: room up to the head's limit. */
        ragq_http_req_t *req = c->req;
        char            *b;

        if (c->cap >= RAGQ_H1_MAX_HEAD + RAGQ_H1_BUF ||
            (b = realloc(c->buf, c->cap * 2)) == NULL) {
            conn_close(c);
            ragq_h1_req_fail(req, "answer head too large", 0);
            return -1;
        }
        c->buf = b;
        c->cap *= 2;
    }
    room = c->cap - c->len;
    n = recv(c->fd, c->buf + c->len, room, 0);
    if (n > 0) {
        c->got = 1;
        c->len += (size_t) n;
        if (conn_parse(c) < 0) {
            return -1;
        }
        return (size_t) n == room;
    }
    err = n < 0 ? errno : 0;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) {
        return 0;
    }
    if ((n == 0 || err == ECONNRESET || err == EPIPE) &&
        conn_eof_ends(c, n < 0)) {
        conn_done(c, 0);
        return -1;
    }
    why = n == 0 ? c->parser.error : strerror(err);
    if (c->send_errno != 0) {
        /* The send failed first (its error consumed the reset's, so the
         * read found the end): that is why, with what came of an answer. */
        why = strerror(c->send_errno);
        if (c->req->status >= 200) {
            snprintf(buf, sizeof(buf), "%s (the answer, HTTP %ld, cut short)",
                     why, c->req->status);
            why = buf;
        }
    }
    conn_broken(c, why != NULL ? why : "connection closed");
    return -1;
}

static void
conn_io(int fd, unsigned events, void *data)
{
    ragq_h1_conn_t *c = data;
    int             err = 0;
    socklen_t       elen = sizeof(err);

    (void) fd;
    switch (c->state) {
    case C_CONNECTING:
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) {
            err = errno;
        }
        if (err == EINPROGRESS || err == EINTR) {
            return;
        }
        if (err != 0) {
            conn_try_next(c, strerror(err), 0);
            return;
        }
        ragq_timer_stop(c->origin->http->loop, &c->timer);
        c->origin->prefer = c->ai;
        c->state = C_BUSY;
        conn_send(c);
        return;
    case C_IDLE:
        /* Closed by the server, or bytes nobody asked for: not reused. */
        conn_close(c);
        return;
    default:
        if ((events & RAGQ_IO_WRITE) && conn_send(c) != 0) {
            return;
        }
        if (events & RAGQ_IO_READ) {
            conn_read(c);
        }
    }
}

static ragq_h1_conn_t *
conn_new(ragq_h1_origin_t *o)
{
    ragq_http_t    *http = o->http;
    ragq_h1_conn_t *c = http->free_conns;

    if (c != NULL) {
        http->free_conns = c->next;
    } else if ((c = calloc(1, sizeof(*c))) == NULL) {
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->origin = o;
    c->fd = -1;
    ragq_timer_init(&c->timer, connect_timeout, c);
    o->nconns++;
    return c;
}

/* Gives waiting requests a kept connection, or a new one while allowed. */
void
ragq_h1_dispatch(ragq_h1_origin_t *o)
{
    ragq_http_t     *http = o->http;
    ragq_h1_conn_t  *c;
    ragq_http_req_t *req;
    uint64_t         now = 0;

    while (o->wait_head && !http->h1_closing) {
        while ((c = o->idle) != NULL) {
            if (now == 0) {
                now = ragq_now_ms();
            }
            if (now - c->idle_since < c->idle_ms) {
                break;
            }
            conn_close(c);
        }
        if (c == NULL) {
            if (o->nconns >= (size_t) http->max_per_host ||
                ragq_h1_origin_ready(o) != 0) {
                return;
            }
            if ((c = conn_new(o)) == NULL) {
                ragq_h1_req_fail(o->wait_head, "out of memory", 0);
                continue;
            }
            req = o->wait_head;
            ragq_h1_wait_remove(req);
            if (ragq_h1_connect(c) != 0) {
                const char *why = errno ? strerror(errno) : "no address";

                ragq_h1_origin_unreachable(o);
                conn_close(c);
                ragq_h1_req_fail(req, why, 0);
                continue;
            }
            conn_attach(c, req);
            continue;
        }
        o->idle = c->next;
        req = o->wait_head;
        ragq_h1_wait_remove(req);
        conn_attach(c, req);
    }
}

/* ---- from http.c ------------------------------------------------------ */

void
ragq_h1_cancel(ragq_http_req_t *req)
{
    ragq_h1_origin_t *o = req->origin;
    ragq_h1_conn_t   *c = req->conn;

    ragq_timer_stop(req->http->loop, &req->timer);
    ragq_h1_wait_remove(req);
    req->origin = NULL;
    req->conn = NULL;
    req->paced = CURL_SOCKET_BAD;
    if (c != NULL) {
        /* Its answer is not read to the end: the connection cannot carry
         * another request. */
        c->req = NULL;
        conn_close(c);
        ragq_h1_dispatch(o);
    }
}

void
ragq_h1_pace_start(ragq_http_req_t *req)
{
    ragq_http_t    *http = req->http;
    ragq_h1_conn_t *c = req->conn;

    if (c == NULL || c->pidx) {
        return;
    }
    if (http->nh1paced == http->h1paced_cap) {
        size_t           cap = http->h1paced_cap ? http->h1paced_cap * 2 : 16;
        ragq_h1_conn_t **np = realloc(http->h1paced, cap * sizeof(*np));
        ragq_h1_conn_t **ns;

        if (np == NULL) {
            return; /* stays watched: every byte still arrives */
        }
        http->h1paced = np;
        if ((ns = realloc(http->h1scratch, cap * sizeof(*ns))) == NULL) {
            return;
        }
        http->h1scratch = ns;
        http->h1paced_cap = cap;
    }
    http->h1paced[http->nh1paced++] = c;
    c->pidx = http->nh1paced;
    req->paced = c->fd; /* ragq_http_take paces it once */
    conn_watch(c);
    if (!ragq_timer_active(&http->tick)) {
        ragq_timer_start(http->loop, &http->tick,
                         ragq_ms_to_boundary(http->pace_ms));
    }
}

void
ragq_h1_pace_tick(ragq_http_t *http)
{
    size_t i, n = http->nh1paced;

    if (n == 0) {
        return; /* only curl's transfers paced: h1paced may be NULL */
    }
    /* A copy: reading one may end, cancel or pace others.  Connections
     * are never freed meanwhile (see the top of this file). */
    memcpy(http->h1scratch, http->h1paced, n * sizeof(*http->h1scratch));
    for (i = 0; i < n; i++) {
        ragq_h1_conn_t  *c = http->h1scratch[i];
        ragq_http_req_t *req = c->req;
        int              reads = 0;

        /* Again only while the same transfer is paced on c: a read may
         * end it, and c may be carrying the next request already. */
        while (c->pidx && c->origin && c->state == C_BUSY && req &&
               c->req == req && reads++ < RAGQ_H1_PACE_READS) {
            if (conn_read(c) != 1) {
                break;
            }
        }
    }
}

void
ragq_h1_free(ragq_http_t *http)
{
    ragq_h1_conn_t *c;
    size_t          i;

    http->h1_closing = 1;
    for (i = 0; i < http->norigins; i++) {
        while (http->origins[i]->idle) {
            conn_close(http->origins[i]->idle);
        }
    }
    ragq_h1_origins_free(http);
    while ((c = http->free_conns) != NULL) {
        http->free_conns = c->next;
        free(c);
    }
    free(http->h1paced);
    free(http->h1scratch);
    if (http->resolver) {
        ragq_resolver_free(http->resolver);
    }
}
