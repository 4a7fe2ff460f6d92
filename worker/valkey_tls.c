/*
 * valkey_tls.c: the OpenSSL side of valkey_tls.h.
 *
 * Writes use SSL_MODE_ENABLE_PARTIAL_WRITE and
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: valkey_conn.c's output buffer grows
 * (moves) while a write waits, and a partial write is simply progress.
 * Every call starts with an empty error queue so an error text is always
 * this call's.
 */

#include "valkey_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ragq_tls_s {
    SSL_CTX *ctx;
    char    *server_name;
    int      verify;
};

struct ragq_tls_session_s {
    SSL *ssl;
};

/* The first error of OpenSSL's queue, after what, into err. */
static void
ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char          buf[256];

    if (e == 0) {
        snprintf(err, errlen, "%s", what);
    } else {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "%s: %s", what, buf);
    }
    ERR_clear_error();
}

ragq_tls_t *
ragq_tls_new(const ragq_tls_conf_t *conf, char *err, size_t errlen)
{
    ragq_tls_t *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ERR_clear_error();
    t->verify = conf->verify;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL) {
        ssl_err(err, errlen, "cannot set up TLS");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (conf->ca_file) {
        if (SSL_CTX_load_verify_locations(t->ctx, conf->ca_file, NULL) != 1) {
            char what[600];

            snprintf(what, sizeof(what), "RAGQ_VALKEY_CA_FILE %s: cannot load",
                     conf->ca_file);
            ssl_err(err, errlen, what);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        ssl_err(err, errlen, "cannot load the system's trusted CAs");
        goto fail;
    }
    if (conf->cert_file) {
        const char *key = conf->key_file ? conf->key_file : conf->cert_file;
        char        what[600];

        if (SSL_CTX_use_certificate_chain_file(t->ctx, conf->cert_file) != 1) {
            snprintf(what, sizeof(what),
                     "RAGQ_VALKEY_CERT_FILE %s: cannot load", conf->cert_file);
            ssl_err(err, errlen, what);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_error()) ==
                X509_R_KEY_VALUES_MISMATCH) {
                snprintf(what, sizeof(what),
                         "RAGQ_VALKEY_KEY_FILE does not match "
                         "RAGQ_VALKEY_CERT_FILE (%s, %s)",
                         key, conf->cert_file);
            } else {
                snprintf(what, sizeof(what),
                         "RAGQ_VALKEY_KEY_FILE %s: cannot load", key);
            }
            ssl_err(err, errlen, what);
            goto fail;
        }
        if (SSL_CTX_check_private_key(t->ctx) != 1) {
            ssl_err(err, errlen,
                    "RAGQ_VALKEY_KEY_FILE does not match "
                    "RAGQ_VALKEY_CERT_FILE");
            goto fail;
        }
    } else if (conf->key_file) {
        snprintf(err, errlen,
                 "RAGQ_VALKEY_KEY_FILE needs RAGQ_VALKEY_CERT_FILE");
        goto fail;
    }
    SSL_CTX_set_verify(t->ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
    if (conf->server_name &&
        (t->server_name = strdup(conf->server_name)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return t;

fail:
    ragq_tls_free(t);
    return NULL;
}

void
ragq_tls_free(ragq_tls_t *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    free(t->server_name);
    free(t);
}

static int
is_ip(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

ragq_tls_session_t *
ragq_tls_session_new(ragq_tls_t *t, int fd, const char *host, char *err,
                     size_t errlen)
{
    ragq_tls_session_t *s = calloc(1, sizeof(*s));
    const char         *name = t->server_name ? t->server_name : host;
    X509_VERIFY_PARAM  *vp;
    int                 ok = 1;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ERR_clear_error();
    s->ssl = SSL_new(t->ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, fd) != 1) {
        ssl_err(err, errlen, "cannot start TLS");
        ragq_tls_session_free(s);
        return NULL;
    }
    if (!is_ip(name)) {
        ok = SSL_set_tlsext_host_name(s->ssl, name) == 1;
        if (ok && t->verify) {
            ok = SSL_set1_host(s->ssl, name) == 1;
        }
    } else if (t->verify) {
        vp = SSL_get0_param(s->ssl);
        ok = X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1;
    }
    if (!ok) {
        ssl_err(err, errlen, "cannot set the TLS server name");
        ragq_tls_session_free(s);
        return NULL;
    }
    SSL_set_connect_state(s->ssl);
    return s;
}

void
ragq_tls_session_free(ragq_tls_session_t *s)
{
    if (s == NULL) {
        return;
    }
    /* No close_notify: the socket is closed right after, and a shutdown
     * could block on a peer that does not read. */
    SSL_free(s->ssl);
    free(s);
}

/* After a failed SSL call: 0 with *want, or -1 with err. */
static int
ssl_result(ragq_tls_session_t *s, int rc, const char *what, unsigned *want,
           char *err, size_t errlen)
{
    long verify;

    *want = 0;
    switch (SSL_get_error(s->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *want = RAGQ_TLS_WANT_READ;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = RAGQ_TLS_WANT_WRITE;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(err, errlen, "%s: the server closed the TLS session", what);
        return -1;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            snprintf(err, errlen, "%s: connection closed", what);
            return -1;
        }
        break;
    default:
        break;
    }
    verify = SSL_get_verify_result(s->ssl);
    if (verify != X509_V_OK) {
        snprintf(err, errlen, "%s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(verify));
        ERR_clear_error();
        return -1;
    }
    ssl_err(err, errlen, what);
    return -1;
}

int
ragq_tls_handshake(ragq_tls_session_t *s, unsigned *want, char *err,
                   size_t errlen)
{
    int rc;

    ERR_clear_error();
    rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        *want = 0;
        return 1;
    }
    return ssl_result(s, rc, "TLS handshake", want, err, errlen);
}

ssize_t
ragq_tls_read(ragq_tls_session_t *s, char *buf, size_t len, unsigned *want,
              char *err, size_t errlen)
{
    size_t got = 0;
    int    rc;

    ERR_clear_error();
    rc = SSL_read_ex(s->ssl, buf, len, &got);
    if (rc == 1) {
        *want = 0;
        return (ssize_t) got;
    }
    if (SSL_get_error(s->ssl, rc) == SSL_ERROR_ZERO_RETURN) {
        *want = 0;
        return 0;
    }
    ssl_result(s, rc, "TLS read", want, err, errlen);
    return -1;
}

ssize_t
ragq_tls_write(ragq_tls_session_t *s, const char *buf, size_t len,
               unsigned *want, char *err, size_t errlen)
{
    size_t put = 0;
    int    rc;

    ERR_clear_error();
    rc = SSL_write_ex(s->ssl, buf, len, &put);
    if (rc == 1) {
        *want = 0;
        return (ssize_t) put;
    }
    ssl_result(s, rc, "TLS write", want, err, errlen);
    return -1;
}
