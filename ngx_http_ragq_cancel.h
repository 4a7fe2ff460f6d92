/*
 * ragq: POST /job-cancel (ngx_http_ragq_cancel.c), the content handler of a
 * ragq_cancel location.
 */

#ifndef _NGX_HTTP_RAGQ_CANCEL_H_INCLUDED_
#define _NGX_HTTP_RAGQ_CANCEL_H_INCLUDED_


#include "ngx_http_ragq_module.h"


ngx_int_t ngx_http_ragq_cancel_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_RAGQ_CANCEL_H_INCLUDED_ */
