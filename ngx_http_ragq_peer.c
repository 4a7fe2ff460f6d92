/*
 * ragq: where a Valkey server or a sentinel is. Configuration gives
 * "unix:/path", an IP literal or a host name (resolved by the system's
 * resolver while the configuration is read, as nginx does for proxy_pass);
 * a sentinel announces "ip port" (or a name) at run time. Before every
 * connect a peer becomes one socket address: a host name goes through
 * nginx's resolver when the "resolver" directive is configured, so it is
 * re-resolved on every reconnect and never with a blocking getaddrinfo() in
 * a worker; without a resolver the configuration-time addresses are used,
 * in turn.
 */

#include "ngx_http_ragq_peer.h"


/* per worker: nginx's resolver (http{} level), NULL when not configured */
static ngx_resolver_t *ngx_http_ragq_resolver;
static ngx_msec_t      ngx_http_ragq_resolver_timeout;


static void ngx_http_ragq_peer_resolved(ngx_resolver_ctx_t *ctx);


ngx_flag_t
ngx_http_ragq_peer_literal(u_char *host, size_t len)
{
#if (NGX_HAVE_INET6)
    u_char addr6[16];
#endif

    if (len && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }

    if (ngx_inet_addr(host, len) != INADDR_NONE) {
        return 1;
    }

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(host, len, addr6) == NGX_OK) {
        return 1;
    }
#endif

    return 0;
}


ngx_int_t
ngx_http_ragq_peer_parse(ngx_conf_t *cf, ngx_str_t *text,
                         in_port_t default_port, ngx_http_ragq_peer_t *peer)
{
    u_char   *p;
    ngx_url_t u;

    ngx_memzero(peer, sizeof(ngx_http_ragq_peer_t));
    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *text;
    u.default_port = default_port;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"",
                           u.err ? u.err : "invalid address", text);
        return NGX_ERROR;
    }

    peer->name = *text;

    if (u.family == AF_UNIX) {
        peer->host.data = text->data + 5;
        peer->host.len = text->len - 5;
        peer->addrs = u.addrs;
        peer->naddrs = u.naddrs;

        if (peer->naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "no address for \"%V\"",
                               text);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (u.host.len == 0 || u.host.len > NGX_HTTP_RAGQ_HOST_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid host in \"%V\"",
                           text);
        return NGX_ERROR;
    }

    /* NUL-terminated: SNI and the certificate check want C strings */
    p = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, u.host.data, u.host.len);
    p[u.host.len] = '\0';

    peer->host.data = p;
    peer->host.len = u.host.len;
    peer->port = u.port ? u.port : default_port;
    peer->resolve = !ngx_http_ragq_peer_literal(p, u.host.len);

    if (u.naddrs) {
        /* a literal: ngx_parse_url() made its address already */
        peer->addrs = u.addrs;
        peer->naddrs = u.naddrs;
        return NGX_OK;
    }

    /*
     * A host name is looked up now as well, with the system's resolver: a
     * name that does not resolve is a configuration error, as it is for
     * proxy_pass, and these addresses serve when no "resolver" is set.
     */
    u.no_resolve = 0;
    u.port = peer->port;
    u.addrs = NULL;
    u.naddrs = 0;

    if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"",
                           u.err ? u.err : "no address", text);
        return NGX_ERROR;
    }

    peer->addrs = u.addrs;
    peer->naddrs = u.naddrs;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_peer_set(ngx_http_ragq_peer_buf_t *pb, u_char *host, size_t len,
                       in_port_t port)
{
    u_char             *p;
    in_addr_t           inaddr;
    struct sockaddr_in *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6 *sin6;
#endif

    if (len == 0 || len > NGX_HTTP_RAGQ_HOST_MAX || port == 0) {
        return NGX_ERROR;
    }

    ngx_memzero(&pb->peer, sizeof(ngx_http_ragq_peer_t));
    ngx_memzero(&pb->sockaddr, sizeof(ngx_sockaddr_t));

    p = ngx_cpymem(pb->host, host, len);
    *p = '\0';

    pb->peer.host.data = pb->host;
    pb->peer.host.len = len;
    pb->peer.port = port;

    pb->peer.name.data = pb->name;
    pb->peer.name.len =
        ngx_sprintf(pb->name,
                    (ngx_strlchr(host, host + len, ':') ? "[%*s]:%d"
                                                        : "%*s:%d"),
                    len, host, (int) port)
        - pb->name;

    inaddr = ngx_inet_addr(host, len);

    if (inaddr != INADDR_NONE) {
        sin = &pb->sockaddr.sockaddr_in;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr.s_addr = inaddr;
        pb->addr.socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(host, len,
                              pb->sockaddr.sockaddr_in6.sin6_addr.s6_addr)
               == NGX_OK)
    {
        sin6 = &pb->sockaddr.sockaddr_in6;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        pb->addr.socklen = sizeof(struct sockaddr_in6);
#endif

    } else {
        /* a name (sentinel's resolve-hostnames): the resolver's job */
        pb->peer.resolve = 1;
        return NGX_OK;
    }

    pb->addr.sockaddr = &pb->sockaddr.sockaddr;
    pb->addr.name = pb->peer.name;
    pb->peer.addrs = &pb->addr;
    pb->peer.naddrs = 1;

    return NGX_OK;
}


void
ngx_http_ragq_peer_init(ngx_resolver_t *resolver, ngx_msec_t timeout)
{
    /* nginx always creates one; without "resolver" it has no servers */
    if (resolver == NGX_CONF_UNSET_PTR
        || (resolver && resolver->connections.nelts == 0))
    {
        resolver = NULL;
    }

    ngx_http_ragq_resolver = resolver;

    /* the http{}-level value is never merged: nginx's default, 30 s */
    ngx_http_ragq_resolver_timeout =
        (timeout == NGX_CONF_UNSET_MSEC) ? 30000 : timeout;
}


ngx_flag_t
ngx_http_ragq_peer_resolver(void)
{
    return ngx_http_ragq_resolver != NULL;
}


static void
ngx_http_ragq_peer_pick(ngx_http_ragq_resolve_t *rs, struct sockaddr *sa,
                        socklen_t len)
{
    ngx_memcpy(&rs->sockaddr, sa, len);
    rs->socklen = len;

    if (sa->sa_family != AF_UNIX) {
        ngx_inet_set_port(&rs->sockaddr.sockaddr, rs->port);
    }
}


ngx_int_t
ngx_http_ragq_peer_resolve(ngx_http_ragq_peer_t    *peer,
                           ngx_http_ragq_resolve_t *rs)
{
    ngx_addr_t         *a;
    ngx_resolver_ctx_t *ctx;

    rs->err = NULL;
    rs->port = peer->port;

    if (!peer->resolve || ngx_http_ragq_resolver == NULL) {
        if (peer->naddrs == 0) {
            rs->err = "a host name and no \"resolver\" configured";
            return NGX_ERROR;
        }

        a = &peer->addrs[rs->next++ % peer->naddrs];
        ngx_http_ragq_peer_pick(rs, a->sockaddr, a->socklen);

        return NGX_OK;
    }

    ctx = ngx_resolve_start(ngx_http_ragq_resolver, NULL);
    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        rs->err = "the resolver failed to start";
        return NGX_ERROR;
    }

    ctx->name = peer->host;
    ctx->handler = ngx_http_ragq_peer_resolved;
    ctx->data = rs;
    ctx->timeout = ngx_http_ragq_resolver_timeout;

    rs->ctx = ctx;
    rs->sync = 1;
    rs->done = 0;

    /* a cached answer calls the handler right away, from in here */
    if (ngx_resolve_name(ctx) != NGX_OK) {
        rs->ctx = NULL;
        rs->sync = 0;
        rs->err = "the resolver failed";
        return NGX_ERROR;
    }

    rs->sync = 0;

    if (rs->done) {
        return rs->rc;
    }

    return NGX_AGAIN;
}


static void
ngx_http_ragq_peer_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_resolver_addr_t     *a;
    ngx_http_ragq_resolve_t *rs = ctx->data;

    if (ctx->state || ctx->naddrs == 0) {
        rs->err = ctx->state ? ngx_resolver_strerror(ctx->state) : "no address";
        rs->rc = NGX_ERROR;

    } else {
        a = &ctx->addrs[rs->next++ % ctx->naddrs];
        ngx_http_ragq_peer_pick(rs, a->sockaddr, a->socklen);
        rs->rc = NGX_OK;
    }

    ngx_resolve_name_done(ctx);
    rs->ctx = NULL;
    rs->done = 1;

    if (!rs->sync) {
        rs->handler(rs, rs->rc);
    }
}


void
ngx_http_ragq_peer_resolve_cancel(ngx_http_ragq_resolve_t *rs)
{
    if (rs->ctx) {
        ngx_resolve_name_done(rs->ctx);
        rs->ctx = NULL;
    }
}
