/*
 * ragq: addresses of Valkey servers and sentinels (ngx_http_ragq_peer.c):
 * parsed (and, for host names, resolved once) at configuration time, or
 * announced at run time by a sentinel; turned into a socket address before
 * every connect, through nginx's resolver when the "resolver" directive is
 * configured, so a host name follows its DNS record without a reload.
 */

#ifndef _NGX_HTTP_RAGQ_PEER_H_INCLUDED_
#define _NGX_HTTP_RAGQ_PEER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


/* the longest host name a sentinel may announce */
#define NGX_HTTP_RAGQ_HOST_MAX 255


typedef struct {
    ngx_str_t   name; /* "host:port" or "unix:/path", for the log */
    ngx_str_t   host; /* as written: a name or a literal (SNI, checks) */
    in_port_t   port;
    ngx_addr_t *addrs;       /* resolved at configuration time */
    ngx_uint_t  naddrs;      /* 0: must be resolved at run time */
    unsigned    resolve : 1; /* a host name, not a literal or a path */
} ngx_http_ragq_peer_t;


/* a peer announced at run time (a sentinel's answer), with its storage */
typedef struct {
    ngx_http_ragq_peer_t peer;
    ngx_addr_t           addr;
    ngx_sockaddr_t       sockaddr;
    u_char               host[NGX_HTTP_RAGQ_HOST_MAX + 1];
    u_char               name[NGX_HTTP_RAGQ_HOST_MAX + sizeof(":65535")];
} ngx_http_ragq_peer_buf_t;


typedef struct ngx_http_ragq_resolve_s ngx_http_ragq_resolve_t;

/* rc: NGX_OK (rs->sockaddr is set) or NGX_ERROR (rs->err says why) */
typedef void (*ngx_http_ragq_resolved_pt)(ngx_http_ragq_resolve_t *rs,
                                          ngx_int_t                rc);

struct ngx_http_ragq_resolve_s {
    ngx_resolver_ctx_t       *ctx;
    ngx_http_ragq_resolved_pt handler;
    void                     *data;
    ngx_uint_t                next; /* rotates over the addresses */
    ngx_sockaddr_t            sockaddr;
    socklen_t                 socklen;
    const char               *err;
    in_port_t                 port;
    unsigned                  sync : 1;
    unsigned                  done : 1;
    ngx_int_t                 rc;
};


/* "unix:/path", "host", "host:port", "[v6]:port"; names resolved now */
ngx_int_t ngx_http_ragq_peer_parse(ngx_conf_t *cf, ngx_str_t *text,
                                   in_port_t             default_port,
                                   ngx_http_ragq_peer_t *peer);

/* a peer from a sentinel's answer: host (a literal or a name) and port */
ngx_int_t ngx_http_ragq_peer_set(ngx_http_ragq_peer_buf_t *pb, u_char *host,
                                 size_t len, in_port_t port);

/* per worker: nginx's resolver, or NULL when none is configured */
void ngx_http_ragq_peer_init(ngx_resolver_t *resolver, ngx_msec_t timeout);
ngx_flag_t ngx_http_ragq_peer_resolver(void);

/*
 * The socket address of the next connect. NGX_OK: in rs->sockaddr now;
 * NGX_AGAIN: rs->handler is called later; NGX_ERROR: rs->err says why.
 */
ngx_int_t ngx_http_ragq_peer_resolve(ngx_http_ragq_peer_t    *peer,
                                     ngx_http_ragq_resolve_t *rs);
void      ngx_http_ragq_peer_resolve_cancel(ngx_http_ragq_resolve_t *rs);

/* an IPv4 or IPv6 literal (no SNI is sent for those) */
ngx_flag_t ngx_http_ragq_peer_literal(u_char *host, size_t len);


#endif /* _NGX_HTTP_RAGQ_PEER_H_INCLUDED_ */
