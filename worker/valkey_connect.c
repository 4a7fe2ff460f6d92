/*
 * valkey_connect.c: how a Valkey connection reaches its server
 * (valkey_conn_int.h): which server (the URL's host, a unix socket, a
 * sentinel given by valkey_sentinel.c, or the primary the sentinels name),
 * its name resolved off the loop on every try (resolver.h), a non-blocking
 * connect() to each of its addresses in turn, TCP keep-alive and no Nagle,
 * then the TLS handshake when the URL says rediss://.
 */

#include "valkey_conn_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "valkey_sentinel.h"

void
ragq_vc_tls_step(ragq_vconn_t *vc)
{
    char     err[400], why[800];
    unsigned want = 0;
    int      rc;

    rc = ragq_tls_handshake(vc->tls, &want, err, sizeof(err));
    if (rc < 0) {
        snprintf(why, sizeof(why), "%s: %s", vc->peer, err);
        ragq_vc_fail(vc, why, RAGQ_VLOSS_TLS);
        return;
    }
    if (rc == 0) {
        vc->tls_read_wants = want;
        ragq_vc_update_watch(vc);
        return;
    }
    vc->tls_read_wants = 0;
    ragq_vc_handshake_start(vc);
}

static void
connected(ragq_vconn_t *vc)
{
    char err[400];

    if (vc->net->tls && vc->net->addr->transport != RAGQ_VALKEY_UNIX) {
        vc->tls = ragq_tls_session_new(vc->net->tls, vc->fd, vc->host, err,
                                       sizeof(err));
        if (vc->tls == NULL) {
            ragq_vc_fail(vc, err, RAGQ_VLOSS_NET);
            return;
        }
        vc->state = VC_TLS;
        ragq_vc_tls_step(vc);
        return;
    }
    ragq_vc_handshake_start(vc);
}

static void
set_socket_options(int fd)
{
    int on = 1, idle = RAGQ_KEEPIDLE_S, intvl = RAGQ_KEEPINTVL_S,
        cnt = RAGQ_KEEPCNT;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* connect() to addrs[addr_i], or on to the next address after a failure. */
static void
try_address(ragq_vconn_t *vc)
{
    const struct sockaddr *sa;
    char                   why[400];
    int                    fd, err = 0;

    while (vc->addr_i < vc->addrs.n) {
        sa = (const struct sockaddr *) &vc->addrs.addr[vc->addr_i];
        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
        if (fd < 0) {
            err = errno;
            vc->addr_i++;
            continue;
        }
        set_socket_options(fd);
        if (connect(fd, sa, vc->addrs.len[vc->addr_i]) == 0 ||
            errno == EINPROGRESS) {
            vc->fd = fd;
            vc->state = VC_CONNECTING;
            ragq_vc_update_watch(vc);
            return;
        }
        err = errno;
        close(fd);
        vc->addr_i++;
    }
    snprintf(why, sizeof(why), "connect to %s: %s", vc->peer, strerror(err));
    ragq_vc_fail(vc, why, RAGQ_VLOSS_NET);
}

void
ragq_vc_connect_done(ragq_vconn_t *vc)
{
    int       err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(vc->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
    }
    if (err == 0) {
        connected(vc);
        return;
    }
    ragq_loop_io(vc->net->loop, vc->fd, 0, NULL, NULL);
    close(vc->fd);
    vc->fd = -1;
    vc->io_events = 0;
    vc->addr_i++;
    if (vc->addr_i < vc->addrs.n) {
        try_address(vc);
        return;
    }
    {
        char why[400];

        snprintf(why, sizeof(why), "connect to %s: %s", vc->peer,
                 strerror(err));
        ragq_vc_fail(vc, why, RAGQ_VLOSS_NET);
    }
}

static void
resolved(void *data, const ragq_addrs_t *addrs, const char *err)
{
    ragq_vconn_t *vc = data;

    vc->lookup = NULL;
    if (addrs == NULL) {
        ragq_vc_fail(vc, err, RAGQ_VLOSS_NET);
        return;
    }
    vc->addrs = *addrs;
    vc->addr_i = 0;
    try_address(vc);
}

/* host:port known: resolve it (off the loop unless numeric), connect. */
static void
start_connect(ragq_vconn_t *vc)
{
    ragq_valkey_hostport_fmt(vc->host, vc->port, vc->peer, sizeof(vc->peer));
    vc->addr_i = 0;
    if (ragq_resolve_numeric(vc->host, vc->port, &vc->addrs) == 0) {
        try_address(vc);
        return;
    }
    vc->state = VC_RESOLVING;
    vc->lookup =
        ragq_resolve(vc->net->resolver, vc->host, vc->port, resolved, vc);
    if (vc->lookup == NULL) {
        ragq_vc_fail(vc, "cannot start a name lookup", RAGQ_VLOSS_NET);
    }
}

static void
connect_unix(ragq_vconn_t *vc)
{
    struct sockaddr_un *sun = (struct sockaddr_un *) &vc->addrs.addr[0];
    const char         *path = vc->net->addr->path;

    snprintf(vc->peer, sizeof(vc->peer), "unix:%s", path);
    memset(&vc->addrs, 0, sizeof(vc->addrs));
    if (strlen(path) >= sizeof(sun->sun_path)) {
        ragq_vc_fail(vc, "the socket path is too long", RAGQ_VLOSS_NET);
        return;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    vc->addrs.len[0] = sizeof(*sun);
    vc->addrs.n = 1;
    vc->addr_i = 0;
    try_address(vc);
}

void
ragq_vconn_connect(ragq_vconn_t *vc)
{
    const ragq_valkey_addr_t *a = vc->net->addr;
    long                      limit = vc->net->connect_timeout_ms;

    if (vc->closed || vc->state != VC_IDLE) {
        return;
    }
    ragq_timer_stop(vc->net->loop, &vc->retry_timer);
    vc->epoch++;
    if (a->transport == RAGQ_VALKEY_SENTINEL &&
        !(vc->flags & RAGQ_VCONN_SENTINEL)) {
        /* The sentinels are asked one after the other. */
        limit *= a->nsentinels + 1;
    }
    ragq_timer_start(vc->net->loop, &vc->connect_timer, (uint64_t) limit);
    if (vc->flags & RAGQ_VCONN_SENTINEL) {
        start_connect(vc);
    } else if (a->transport == RAGQ_VALKEY_UNIX) {
        connect_unix(vc);
    } else if (a->transport == RAGQ_VALKEY_SENTINEL) {
        vc->state = VC_LOCATING;
        snprintf(vc->peer, sizeof(vc->peer), "the primary \"%s\"", a->master);
        ragq_sentinel_locate(vc->net->sentinel, vc);
    } else {
        snprintf(vc->host, sizeof(vc->host), "%s", a->host);
        vc->port = a->port;
        start_connect(vc);
    }
}

void
ragq_vconn_located(ragq_vconn_t *vc, const char *host, int port)
{
    if (vc->state != VC_LOCATING) {
        return;
    }
    snprintf(vc->host, sizeof(vc->host), "%s", host);
    vc->port = port;
    start_connect(vc);
}

void
ragq_vconn_locate_failed(ragq_vconn_t *vc, const char *why)
{
    if (vc->state == VC_LOCATING) {
        vc->state = VC_IDLE; /* the sentinel forgot us already */
        ragq_vc_fail(vc, why, RAGQ_VLOSS_NET);
    }
}

void
ragq_vconn_moved(ragq_vconn_t *vc, const char *host, int port, const char *why)
{
    if (vc->closed || vc->state == VC_LOCATING) {
        return;
    }
    if (vc->state != VC_IDLE && vc->port == port &&
        strcmp(vc->host, host) == 0) {
        return;
    }
    ragq_backoff_reset(&vc->backoff);
    if (vc->state == VC_IDLE) {
        ragq_vconn_connect(vc); /* waiting for a retry: go now */
        return;
    }
    ragq_vc_fail(vc, why, RAGQ_VLOSS_MOVED);
}
