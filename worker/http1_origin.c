/*
 * http1_origin.c: the own HTTP/1.1 client's origins (host and port): the
 * names looked up off the loop and kept 60 s, the order their addresses
 * are tried in, connecting to them, and the queue of requests waiting for
 * a connection.  What a connection then carries is http1.c's.
 *
 * An address that connected is tried first next time, also across a new
 * lookup that still returns it, so a name with an unreachable first
 * address (broken IPv6, say) costs one connect timeout, not one a minute.
 */

#include "http1_int.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Like curl's DNS cache: a name is looked up again after a minute. */
#define RAGQ_H1_DNS_TTL_MS 60000
/* ... or at once when none of its addresses took a connection, but not
 * more often than this: a server that is down is not a reason to ask the
 * resolver on every try. */
#define RAGQ_H1_DNS_RECHECK_MS 1000

ragq_h1_origin_t *
ragq_h1_origin_get(ragq_http_t *http, const char *auth, size_t auth_len,
                   const char *host, size_t host_len, int port)
{
    ragq_h1_origin_t *o, **os;
    size_t            i;

    for (i = 0; i < http->norigins; i++) {
        o = http->origins[i];
        if (o->port == port && strlen(o->host) == host_len &&
            strncasecmp(o->host, host, host_len) == 0) {
            return o;
        }
    }
    os = realloc(http->origins, (http->norigins + 1) * sizeof(*os));
    if (os == NULL) {
        return NULL;
    }
    http->origins = os;
    if ((o = calloc(1, sizeof(*o))) == NULL) {
        return NULL;
    }
    o->http = http;
    o->port = port;
    o->host = strndup(host, host_len);
    o->authority = strndup(auth, auth_len);
    if (o->host == NULL || o->authority == NULL) {
        free(o->host);
        free(o->authority);
        free(o);
        return NULL;
    }
    o->numeric = ragq_resolve_numeric(o->host, port, &o->addrs) == 0;
    os[http->norigins++] = o;
    return o;
}

/* ---- the queue of requests waiting for a connection ------------------- */

void
ragq_h1_wait_remove(ragq_http_req_t *req)
{
    ragq_h1_origin_t *o = req->origin;

    if (!req->waiting) {
        return;
    }
    if (req->wprev) {
        req->wprev->wnext = req->wnext;
    } else {
        o->wait_head = req->wnext;
    }
    if (req->wnext) {
        req->wnext->wprev = req->wprev;
    } else {
        o->wait_tail = req->wprev;
    }
    req->wnext = req->wprev = NULL;
    req->waiting = 0;
}

void
ragq_h1_wait_push(ragq_http_req_t *req, int front)
{
    ragq_h1_origin_t *o = req->origin;

    req->waiting = 1;
    req->wnext = req->wprev = NULL;
    if (o->wait_head == NULL) {
        o->wait_head = o->wait_tail = req;
    } else if (front) {
        req->wnext = o->wait_head;
        o->wait_head->wprev = req;
        o->wait_head = req;
    } else {
        req->wprev = o->wait_tail;
        o->wait_tail->wnext = req;
        o->wait_tail = req;
    }
}

/* ---- names ------------------------------------------------------------ */

static void
fail_waiting(ragq_h1_origin_t *o, const char *why)
{
    while (o->wait_head) {
        ragq_h1_req_fail(o->wait_head, why, 0);
    }
}

static int
same_addr(const ragq_addrs_t *a, int i, const ragq_addrs_t *b, int j)
{
    return a->len[i] == b->len[j] &&
           memcmp(&a->addr[i], &b->addr[j], a->len[i]) == 0;
}

static void
on_resolved(void *data, const ragq_addrs_t *addrs, const char *err)
{
    ragq_h1_origin_t *o = data;
    int               i, prefer = 0;

    o->lookup = NULL;
    o->recheck = 0;
    if (err != NULL) {
        if (o->resolved_at == 0) {
            fail_waiting(o, err);
        }
        return;
    }
    if (o->resolved_at != 0 && o->prefer < o->addrs.n) {
        for (i = 0; i < addrs->n; i++) {
            if (same_addr(addrs, i, &o->addrs, o->prefer)) {
                prefer = i;
                break;
            }
        }
    }
    o->addrs = *addrs;
    o->prefer = prefer;
    o->resolved_at = ragq_now_ms();
    ragq_h1_dispatch(o);
}

/* 0 when o has addresses to connect to (a stale answer is refreshed in
 * the background meanwhile). */
int
ragq_h1_origin_ready(ragq_h1_origin_t *o)
{
    ragq_http_t *http = o->http;

    if (o->numeric) {
        return 0;
    }
    if (o->lookup == NULL &&
        (o->resolved_at == 0 || o->recheck ||
         ragq_now_ms() - o->resolved_at >= RAGQ_H1_DNS_TTL_MS)) {
        if (http->resolver == NULL) {
            http->resolver = ragq_resolver_new(http->loop);
        }
        o->asked_at = ragq_now_ms();
        o->lookup = http->resolver ? ragq_resolve(http->resolver, o->host,
                                                  o->port, on_resolved, o)
                                   : NULL;
        if (o->lookup == NULL && o->resolved_at == 0) {
            fail_waiting(o, "cannot start a name lookup");
            return -1;
        }
    }
    return o->resolved_at ? 0 : -1;
}

/*
 * No address of o took a connection.  A server moved to a new address
 * (a container recreated, a service redeployed) is then found by the next
 * try, not after the rest of the minute the old answer is kept.  The
 * addresses in hand stay in use until the new answer comes, and a lookup
 * that fails keeps them.
 */
void
ragq_h1_origin_unreachable(ragq_h1_origin_t *o)
{
    if (o->numeric || o->resolved_at == 0 || o->recheck || o->lookup ||
        ragq_now_ms() - o->asked_at < RAGQ_H1_DNS_RECHECK_MS) {
        return;
    }
    o->recheck = 1;
    ragq_log(RAGQ_LOG_INFO,
             "%s:%d: no address of the name took a connection; "
             "looking it up again",
             o->host, o->port);
}

/* ---- addresses -------------------------------------------------------- */

/*
 * The address c is trying failed (why); logged when another is left to
 * try, since the request then goes on and nothing else would say that one
 * address of the name does not work.
 */
void
ragq_h1_connect_failed(ragq_h1_conn_t *c, const char *why)
{
    ragq_h1_origin_t              *o = c->origin;
    const struct sockaddr_storage *ss = &o->addrs.addr[c->ai];
    char                           ip[INET6_ADDRSTRLEN] = "?";

    if (c->addr + 1 >= o->addrs.n) {
        return;
    }
    if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) ss)->sin6_addr, ip,
                  sizeof(ip));
    } else if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *) ss)->sin_addr, ip,
                  sizeof(ip));
    }
    ragq_log(RAGQ_LOG_WARN,
             "%s:%d: cannot connect to %s%s%s: %s; trying the next address",
             o->host, o->port, ss->ss_family == AF_INET6 ? "[" : "", ip,
             ss->ss_family == AF_INET6 ? "]" : "", why);
}

/*
 * Starts connecting to the next address from c->addr on; 0 when under way
 * (or connected: state C_BUSY), -1 when no address is left, with errno
 * the last attempt's error (0 when none was left to try).
 */
int
ragq_h1_connect(ragq_h1_conn_t *c)
{
    ragq_h1_origin_t *o = c->origin;
    int               one = 1, err = 0;

    for (; c->addr < o->addrs.n; c->addr++) {
        int i = c->ai = (o->prefer + c->addr) % o->addrs.n;
        int fd = socket(o->addrs.addr[i].ss_family,
                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            err = errno;
            ragq_h1_connect_failed(c, strerror(err));
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *) &o->addrs.addr[i],
                    o->addrs.len[i]) == 0) {
            c->fd = fd;
            c->state = C_BUSY;
            o->prefer = i;
            return 0;
        }
        if (errno == EINPROGRESS) {
            c->fd = fd;
            c->state = C_CONNECTING;
            ragq_timer_start(o->http->loop, &c->timer,
                             (uint64_t) o->http->connect_timeout_ms);
            return 0;
        }
        err = errno;
        close(fd);
        ragq_h1_connect_failed(c, strerror(err));
    }
    errno = err;
    return -1;
}

/* After the connections are closed. */
void
ragq_h1_origins_free(ragq_http_t *http)
{
    size_t i;

    for (i = 0; i < http->norigins; i++) {
        ragq_h1_origin_t *o = http->origins[i];

        if (o->lookup) {
            ragq_resolve_cancel(o->lookup);
        }
        free(o->host);
        free(o->authority);
        free(o);
    }
    free(http->origins);
    http->origins = NULL;
    http->norigins = 0;
}
