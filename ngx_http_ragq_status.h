/*
 * ragq: GET /job-status (ngx_http_ragq_status.c), the content handler of a
 * ragq_status location.
 */

#ifndef _NGX_HTTP_RAGQ_STATUS_H_INCLUDED_
#define _NGX_HTTP_RAGQ_STATUS_H_INCLUDED_


#include "ngx_http_ragq_module.h"


ngx_int_t ngx_http_ragq_status_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_RAGQ_STATUS_H_INCLUDED_ */
