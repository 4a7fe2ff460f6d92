/*
 * valkey_tls.h: TLS to Valkey (rediss://) with OpenSSL, for valkey_conn.c:
 * one client context per process (trusted CAs, an optional client
 * certificate and key, verification on unless turned off) and the
 * non-blocking steps of one session on a connected socket: the handshake,
 * reads and writes, each of which may want the socket readable or
 * writable first.  The peer is checked against the name the connection
 * was made to (a host name, or an IP address against the certificate's IP
 * entries), or against RAGQ_VALKEY_TLS_SERVER_NAME when that is set; SNI
 * carries the same name unless it is an IP address.
 * Implemented in valkey_tls.c.
 */

#ifndef RAGQ_VALKEY_TLS_H
#define RAGQ_VALKEY_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    const char *ca_file;     /* NULL: the system's trusted CAs */
    const char *cert_file;   /* client certificate (mutual TLS), or NULL */
    const char *key_file;    /* its key (default: cert_file) */
    const char *server_name; /* name to verify and send as SNI, or NULL */
    int         verify;      /* 0 only for labs */
} ragq_tls_conf_t;

typedef struct ragq_tls_s         ragq_tls_t;
typedef struct ragq_tls_session_s ragq_tls_session_t;

/* Loads the files now (a bad file is an error at start).  NULL + err. */
ragq_tls_t *ragq_tls_new(const ragq_tls_conf_t *conf, char *err, size_t errlen);
void        ragq_tls_free(ragq_tls_t *tls);

/* A session on connected socket fd to host (as connected to). */
ragq_tls_session_t *ragq_tls_session_new(ragq_tls_t *tls, int fd,
                                         const char *host, char *err,
                                         size_t errlen);
void                ragq_tls_session_free(ragq_tls_session_t *s);

/* What a step needs before it can go on. */
#define RAGQ_TLS_WANT_READ  1u
#define RAGQ_TLS_WANT_WRITE 2u

/*
 * One handshake step: 1 done, 0 not yet (*want says on what), -1 failed
 * (err: "certificate verify failed: unable to get local issuer
 * certificate").
 */
int ragq_tls_handshake(ragq_tls_session_t *s, unsigned *want, char *err,
                       size_t errlen);

/*
 * Like read(2)/write(2) on the socket: bytes moved, or -1 with *want set
 * (nothing to do until the socket is ready) or, when *want is 0, an error
 * in err.  read returns 0 when the peer closed the session.
 */
ssize_t ragq_tls_read(ragq_tls_session_t *s, char *buf, size_t len,
                      unsigned *want, char *err, size_t errlen);
ssize_t ragq_tls_write(ragq_tls_session_t *s, const char *buf, size_t len,
                       unsigned *want, char *err, size_t errlen);

#endif
