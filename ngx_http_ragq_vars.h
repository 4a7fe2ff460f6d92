/*
 * ragq: the request context (ngx_http_ragq_vars.c): what a request learned
 * about its job, kept until the log phase, and the variables that show it
 * ($ragq_job_id, $ragq_job_status) with $ragq_version.
 */

#ifndef _NGX_HTTP_RAGQ_VARS_H_INCLUDED_
#define _NGX_HTTP_RAGQ_VARS_H_INCLUDED_


#include "ngx_http_ragq_module.h"


#ifndef RAGQ_VERSION
#define RAGQ_VERSION "unknown"
#endif


typedef struct {
    void     *stream; /* a /job-stream's state (ngx_http_ragq_stream.c) */
    ngx_str_t status; /* the job's status as the answer said it */
    u_char    job_id[NGX_HTTP_RAGQ_JOB_ID_LEN];
    unsigned  has_job_id : 1;
    unsigned  waited : 1; /* a long-poll or stream: not in the latency */
} ngx_http_ragq_ctx_t;


ngx_int_t ngx_http_ragq_add_variables(ngx_conf_t *cf);

/* the request's context, created on first use; NULL: out of memory */
ngx_http_ragq_ctx_t *ngx_http_ragq_ctx(ngx_http_request_t *r);

/* the job a request is about: its id (32 characters) and, when known, its
 * status (len 0: unknown); the bytes are copied */
void ngx_http_ragq_set_job(ngx_http_request_t *r, u_char *id, u_char *status,
                           size_t len);


#endif /* _NGX_HTTP_RAGQ_VARS_H_INCLUDED_ */
