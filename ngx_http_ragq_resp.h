/*
 * ragq: RESP (ngx_http_ragq_resp.c): commands in RESP form, built by the
 * module itself on the hot paths, and what each Valkey error reply means
 * for a client.
 */

#ifndef _NGX_HTTP_RAGQ_RESP_H_INCLUDED_
#define _NGX_HTTP_RAGQ_RESP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>


#define NGX_HTTP_RAGQ_HGETALL "*2\r\n$7\r\nHGETALL\r\n"

/* "$<len>\r\n" at most, so a bulk string needs len + this + 2 bytes */
#define NGX_HTTP_RAGQ_RESP_HEAD_MAX (1 + NGX_SIZE_T_LEN + 2)

u_char *ngx_http_ragq_resp_uint(u_char *p, uint64_t n);
u_char *ngx_http_ragq_resp_bulk(u_char *p, const void *data, size_t len);

/* what an error reply (or a connection's state) means for a client */
typedef struct {
    const char *prefix; /* the start of Valkey's error text */
    ngx_uint_t  status; /* 503: retry later; 500: retrying will not help */
    const char *code;
    const char *message;
    unsigned    reconnect : 1; /* this connection cannot go on */
} ngx_http_ragq_resp_error_t;

/* the class of an error reply's text; never NULL (internal_error) */
const ngx_http_ragq_resp_error_t *ngx_http_ragq_resp_error(const char *str,
                                                           size_t      len);

/* the classes a connection's state can have */
extern const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_readonly;
extern const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_denied;
extern const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_misconfigured;
extern const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_internal;
extern const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_timeout;


#endif /* _NGX_HTTP_RAGQ_RESP_H_INCLUDED_ */
