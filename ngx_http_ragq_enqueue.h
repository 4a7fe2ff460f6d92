/*
 * ragq: POST /chat (ngx_http_ragq_enqueue.c), the content handler of a
 * ragq_enqueue location.
 */

#ifndef _NGX_HTTP_RAGQ_ENQUEUE_H_INCLUDED_
#define _NGX_HTTP_RAGQ_ENQUEUE_H_INCLUDED_


#include "ngx_http_ragq_module.h"


ngx_int_t ngx_http_ragq_enqueue_handler(ngx_http_request_t *r);

/* a refusal of the question: the status, the error's code and message */
typedef struct {
    ngx_uint_t  status;
    const char *code;
    const char *message;
} ngx_http_ragq_err_t;

/* the question of a /chat body (ngx_http_ragq_enqueue_body.c) */
ngx_int_t ngx_http_ragq_enqueue_parse_body(ngx_http_request_t *r, u_char *p,
                                           size_t len, ngx_str_t *query,
                                           ngx_int_t           *top_k,
                                           ngx_str_t           *callback,
                                           ngx_http_ragq_err_t *err);


#endif /* _NGX_HTTP_RAGQ_ENQUEUE_H_INCLUDED_ */
