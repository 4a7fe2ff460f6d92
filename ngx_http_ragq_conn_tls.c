/*
 * ragq: TLS on a Valkey or sentinel connection, with nginx's SSL layer as
 * proxy_ssl_* use it: SNI for host names (never for address literals), the
 * certificate verified against ragq_valkey_ssl_trusted_certificate and
 * matched to the name (ragq_valkey_ssl_name, else the host; an IP address
 * against the certificate's IP addresses), a client certificate when one
 * is configured (mutual TLS), and the session kept for the next connect.
 */

#include "ngx_http_ragq_conn.h"


#if (NGX_SSL)

static void ngx_http_ragq_conn_tls_done(ngx_connection_t *c);
static void ngx_http_ragq_conn_save_session(ngx_connection_t *c);


void
ngx_http_ragq_conn_tls_start(ngx_http_ragq_conn_t *conn)
{
    ngx_int_t            rc;
    ngx_str_t           *name;
    ngx_connection_t    *c = conn->c;
    ngx_http_ragq_tls_t *tls = conn->tls;

    conn->state = NGX_HTTP_RAGQ_CONN_TLS;

    if (ngx_ssl_create_connection(tls->ssl, c, NGX_SSL_CLIENT) != NGX_OK) {
        ngx_http_ragq_conn_error(conn, "TLS to %V: cannot create a session",
                                 &conn->peer);
        ngx_http_ragq_conn_lost(conn);
        return;
    }

    name = tls->name.len ? &tls->name : &conn->host;

    /* SNI, as proxy_ssl_server_name does: never for an address literal */
    if (name->len && !ngx_http_ragq_peer_literal(name->data, name->len)
        && SSL_set_tlsext_host_name(c->ssl->connection, (char *) name->data)
               == 0)
    {
        ngx_http_ragq_conn_error(conn, "TLS to %V: cannot set SNI \"%V\"",
                                 &conn->peer, name);
        ngx_http_ragq_conn_lost(conn);
        return;
    }

    if (conn->ssl_session
        && ngx_ssl_set_session(c, conn->ssl_session) != NGX_OK)
    {
        ngx_http_ragq_conn_error(conn, "TLS to %V: cannot resume a session",
                                 &conn->peer);
        ngx_http_ragq_conn_lost(conn);
        return;
    }

    c->ssl->save_session = ngx_http_ragq_conn_save_session;

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_ragq_conn_tls_done;
        return;
    }

    ngx_http_ragq_conn_tls_done(c);
}


/* the peer's certificate names the host we meant (an IP in an IP SAN) */
static ngx_int_t
ngx_http_ragq_conn_check_name(ngx_connection_t *c, ngx_str_t *name)
{
    int    rc;
    X509  *cert;
    u_char ip[NGX_SOCKADDR_STRLEN];

    if (!ngx_http_ragq_peer_literal(name->data, name->len)) {
        return ngx_ssl_check_host(c, name);
    }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    cert = SSL_get1_peer_certificate(c->ssl->connection);
#else
    cert = SSL_get_peer_certificate(c->ssl->connection);
#endif

    if (cert == NULL) {
        return NGX_ERROR;
    }

    if (name->data[0] == '[') {
        ngx_cpystrn(ip, name->data + 1, ngx_min(name->len - 1, sizeof(ip)));
    } else {
        ngx_cpystrn(ip, name->data, ngx_min(name->len + 1, sizeof(ip)));
    }

    rc = X509_check_ip_asc(cert, (const char *) ip, 0);

    X509_free(cert);

    return (rc == 1) ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_ragq_conn_tls_done(ngx_connection_t *c)
{
    long                  rc;
    ngx_str_t            *name;
    ngx_http_ragq_conn_t *conn = c->data;

    if (!c->ssl->handshaked) {
        /* nginx logged the SSL error itself (unless muted) */
        ngx_http_ragq_conn_error(conn, "TLS handshake with %V failed",
                                 &conn->peer);
        ngx_http_ragq_conn_lost(conn);
        return;
    }

    if (conn->tls->verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_http_ragq_conn_error(conn,
                                     "TLS certificate of %V does not verify: "
                                     "(%l:%s)",
                                     &conn->peer, rc,
                                     X509_verify_cert_error_string(rc));
            ngx_http_ragq_conn_lost(conn);
            return;
        }

        name = conn->tls->name.len ? &conn->tls->name : &conn->host;

        if (ngx_http_ragq_conn_check_name(c, name) != NGX_OK) {
            ngx_http_ragq_conn_error(conn,
                                     "TLS certificate of %V does not match "
                                     "\"%V\"",
                                     &conn->peer, name);
            ngx_http_ragq_conn_lost(conn);
            return;
        }
    }

    ngx_http_ragq_conn_ready(conn);
}


/* kept for the next connect's abbreviated handshake */
static void
ngx_http_ragq_conn_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t    *session;
    ngx_http_ragq_conn_t *conn = c->data;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    if (conn->ssl_session) {
        ngx_ssl_free_session(conn->ssl_session);
    }

    conn->ssl_session = session;
}

#endif
