/*
 * ragq: the configuration of the Valkey connections. ragq_valkey takes
 * either an address (unix:/path, IP, or a host name: resolved now, and on
 * every reconnect when a "resolver" is configured) or
 * sentinel=HOST:PORT[,HOST:PORT...] master=NAME, plus user=, password=,
 * db=, connect_timeout=, sentinel_user=, sentinel_password= and tls. With
 * tls, the SSL context is made here from ragq_valkey_ssl_*, as
 * proxy_ssl_* make proxy's, but verifying by default: the connection
 * carries the password and every question, so an unverified server is a
 * man in the middle waiting to happen (ragq_valkey_ssl_verify off opts
 * out, for a test bed).
 */

#include "ngx_http_ragq_valkey_conf.h"


#define NGX_HTTP_RAGQ_VALKEY_PORT   6379
#define NGX_HTTP_RAGQ_SENTINEL_PORT 26379


ngx_conf_bitmask_t ngx_http_ragq_valkey_ssl_protocols[] = {
#if (NGX_SSL)
    { ngx_string("SSLv2"), NGX_SSL_SSLv2 },
    { ngx_string("SSLv3"), NGX_SSL_SSLv3 },
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
#endif
    { ngx_null_string, 0 }
};


void
ngx_http_ragq_valkey_conf_create(ngx_http_ragq_valkey_conf_t *vcf)
{
    vcf->ssl_verify = NGX_CONF_UNSET;
    vcf->ssl_verify_depth = NGX_CONF_UNSET_UINT;
}


/* "sentinel=HOST:PORT[,HOST:PORT...]" */
static char *
ngx_http_ragq_valkey_sentinels(ngx_conf_t *cf, ngx_http_ragq_valkey_conf_t *vcf,
                               ngx_str_t *list)
{
    u_char               *p, *end, *comma;
    ngx_str_t             one;
    ngx_http_ragq_peer_t *peer;

    vcf->sentinels =
        ngx_array_create(cf->pool, 3, sizeof(ngx_http_ragq_peer_t));
    if (vcf->sentinels == NULL) {
        return NGX_CONF_ERROR;
    }

    p = list->data;
    end = p + list->len;

    while (p < end) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        one.data = p;
        one.len = comma - p;

        if (one.len == 0) {
            return "has an empty address in sentinel=";
        }

        peer = ngx_array_push(vcf->sentinels);
        if (peer == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_ragq_peer_parse(cf, &one, NGX_HTTP_RAGQ_SENTINEL_PORT,
                                     peer)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        p = comma + 1;
    }

    if (vcf->sentinels->nelts == 0) {
        return "needs at least one address in sentinel=";
    }

    return NGX_CONF_OK;
}


static ngx_flag_t
ngx_http_ragq_valkey_param(ngx_str_t *v, const char *name, ngx_str_t *out)
{
    size_t n = ngx_strlen(name);

    if (v->len < n || ngx_strncmp(v->data, name, n) != 0) {
        return 0;
    }

    out->data = v->data + n;
    out->len = v->len - n;

    return 1;
}


char *
ngx_http_ragq_valkey_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_valkey_conf_t *vcf =
        (ngx_http_ragq_valkey_conf_t *) ((char *) conf + cmd->offset);

    char      *rv;
    ngx_int_t  n;
    ngx_str_t *value, s, address;
    ngx_uint_t i;

    if (vcf->peer.name.len || vcf->sentinels) {
        return "is duplicate";
    }

    value = cf->args->elts;
    ngx_str_null(&address);

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_ragq_valkey_param(&value[i], "sentinel=", &s)) {
            rv = ngx_http_ragq_valkey_sentinels(cf, vcf, &s);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (ngx_http_ragq_valkey_param(&value[i], "master=", &vcf->master)
            || ngx_http_ragq_valkey_param(&value[i],
                                          "password=", &vcf->password)
            || ngx_http_ragq_valkey_param(&value[i], "user=", &vcf->user)
            || ngx_http_ragq_valkey_param(&value[i], "sentinel_password=",
                                          &vcf->sentinel_password)
            || ngx_http_ragq_valkey_param(&value[i], "sentinel_user=",
                                          &vcf->sentinel_user))
        {
            continue;
        }

        if (ngx_http_ragq_valkey_param(&value[i], "db=", &s)) {
            n = ngx_atoi(s.data, s.len);
            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid database number \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            vcf->db = n;
            continue;
        }

        if (ngx_http_ragq_valkey_param(&value[i], "connect_timeout=", &s)) {
            n = ngx_parse_time(&s, 0);
            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid connect timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            vcf->connect_timeout = (ngx_msec_t) n;
            continue;
        }

        if (value[i].len == 3 && ngx_strncmp(value[i].data, "tls", 3) == 0) {
#if (NGX_SSL)
            vcf->tls = 1;
            continue;
#else
            return "needs nginx built with SSL for \"tls\"";
#endif
        }

        if (i == 1
            && ngx_strlchr(value[i].data, value[i].data + value[i].len, '=')
                   == NULL)
        {
            address = value[i];
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (vcf->sentinels) {
        if (address.len) {
            return "takes an address or sentinel=, not both";
        }

        if (vcf->master.len == 0) {
            return "needs master=NAME with sentinel=";
        }

    } else {
        if (vcf->master.len) {
            return "takes master= only with sentinel=";
        }

        if (address.len == 0) {
            return "needs an address (host:port or unix:/path) or sentinel=";
        }

        if (ngx_http_ragq_peer_parse(cf, &address, NGX_HTTP_RAGQ_VALKEY_PORT,
                                     &vcf->peer)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (vcf->user.len && vcf->password.len == 0) {
        return "needs password= with user=";
    }

    if (vcf->sentinel_user.len && vcf->sentinel_password.len == 0) {
        return "needs sentinel_password= with sentinel_user=";
    }

    return NGX_CONF_OK;
}


#if (NGX_SSL)

static char *
ngx_http_ragq_valkey_ssl(ngx_conf_t *cf, ngx_http_ragq_valkey_conf_t *vcf)
{
    ngx_ssl_t          *ssl;
    ngx_pool_cleanup_t *cln;

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, vcf->ssl_protocols, NULL) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    if (ngx_ssl_ciphers(cf, ssl, &vcf->ssl_ciphers, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (vcf->ssl_certificate.len) {
        if (vcf->ssl_certificate_key.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no \"ragq_valkey_ssl_certificate_key\" for "
                               "\"ragq_valkey_ssl_certificate\" \"%V\"",
                               &vcf->ssl_certificate);
            return NGX_CONF_ERROR;
        }

        if (ngx_ssl_certificate(cf, ssl, &vcf->ssl_certificate,
                                &vcf->ssl_certificate_key, NULL)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (vcf->ssl_verify) {
        if (vcf->ssl_trusted_certificate.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ragq_valkey ... tls\" verifies the server's "
                               "certificate: set "
                               "\"ragq_valkey_ssl_trusted_certificate\" (the "
                               "CA of the Valkey server, or "
                               "/etc/ssl/certs/ca-certificates.crt for a "
                               "public one), or \"ragq_valkey_ssl_verify "
                               "off\"");
            return NGX_CONF_ERROR;
        }

        if (ngx_ssl_trusted_certificate(cf, ssl, &vcf->ssl_trusted_certificate,
                                        vcf->ssl_verify_depth)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    /* reconnects resume the session: one round trip less, no new keys */
    if (ngx_ssl_client_session_cache(cf, ssl, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    vcf->ssl.ssl = ssl;
    vcf->ssl.verify = vcf->ssl_verify;
    vcf->ssl.name = vcf->ssl_name;

    return NGX_CONF_OK;
}

#endif


char *
ngx_http_ragq_valkey_conf_init(ngx_conf_t *cf, ngx_http_ragq_valkey_conf_t *vcf)
{
    ngx_str_t local = ngx_string("127.0.0.1:6379");

    if (vcf->peer.name.len == 0 && vcf->sentinels == NULL
        && ngx_http_ragq_peer_parse(cf, &local, NGX_HTTP_RAGQ_VALKEY_PORT,
                                    &vcf->peer)
               != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /*
     * Generous: on a loaded host a local connect plus TLS and
     * AUTH/SELECT/ROLE/SUBSCRIBE can take longer than a second, and that is
     * not an outage.
     */
    if (vcf->connect_timeout == 0) {
        vcf->connect_timeout = 3000;
    }

    ngx_conf_init_value(vcf->ssl_verify, 1);
    /* not proxy_ssl_verify_depth's 1: managed services' certificates
     * usually come through an intermediate CA */
    ngx_conf_init_uint_value(vcf->ssl_verify_depth, 9);

#if (NGX_SSL)
    if (vcf->ssl_protocols == 0) {
        vcf->ssl_protocols =
            NGX_CONF_BITMASK_SET | NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3;
    }
#endif

    if (vcf->ssl_ciphers.data == NULL) {
        ngx_str_set(&vcf->ssl_ciphers, "DEFAULT");
    }

    if (!vcf->tls) {
        return NGX_CONF_OK;
    }

#if (NGX_SSL)
    return ngx_http_ragq_valkey_ssl(cf, vcf);
#else
    return NGX_CONF_ERROR;
#endif
}
