/*
 * ragq: POST /chat (ngx_http_ragq_enqueue.c), the content handler of a
 * ragq_enqueue location.
 */

#ifndef _NGX_HTTP_RAGQ_ENQUEUE_H_INCLUDED_
#define _NGX_HTTP_RAGQ_ENQUEUE_H_INCLUDED_


#include "ngx_http_ragq_module.h"


ngx_int_t ngx_http_ragq_enqueue_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_RAGQ_ENQUEUE_H_INCLUDED_ */
