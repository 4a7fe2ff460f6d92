/*
 * ragq: request plumbing (ngx_http_ragq_request.c): query arguments, request
 * headers and bodies, JSON responses and error answers, and the pending
 * cells of requests that wait for a Valkey reply.
 */

#ifndef _NGX_HTTP_RAGQ_REQUEST_H_INCLUDED_
#define _NGX_HTTP_RAGQ_REQUEST_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


typedef struct {
    ngx_str_t name;
    ngx_str_t value; /* data == NULL: absent */
} ngx_http_ragq_arg_t;


/* query arguments */
void      ngx_http_ragq_args(ngx_http_request_t *r, ngx_http_ragq_arg_t *args,
                             ngx_uint_t n);
ngx_int_t ngx_http_ragq_form_decode(ngx_http_request_t *r, ngx_str_t *value,
                                    ngx_str_t *out);

/* the tenant: NGX_DECLINED when ragq_tenant is set and empty for r, which
 * ngx_http_ragq_missing_tenant() answers (403) */
ngx_int_t ngx_http_ragq_tenant(ngx_http_request_t       *r,
                               ngx_http_ragq_loc_conf_t *lcf,
                               ngx_str_t                *tenant);
ngx_int_t ngx_http_ragq_missing_tenant(ngx_http_request_t *r);
/* the tenant and job_id checks of the readers of one job */
ngx_int_t ngx_http_ragq_job_args(ngx_http_request_t       *r,
                                 ngx_http_ragq_loc_conf_t *lcf,
                                 ngx_str_t *tenant, ngx_http_ragq_arg_t *args,
                                 ngx_uint_t nargs, const char *usage,
                                 ngx_int_t *rc);

/* request headers and bodies */
ngx_table_elt_t *ngx_http_ragq_find_header(ngx_http_request_t *r,
                                           const char *name, size_t len);
ngx_flag_t       ngx_http_ragq_is_json(ngx_http_request_t *r);
ngx_int_t        ngx_http_ragq_body(ngx_http_request_t *r, ngx_str_t *body,
                                    size_t limit);

/* responses */
ngx_int_t ngx_http_ragq_add_header(ngx_http_request_t *r, const char *key,
                                   const char *value);
ngx_int_t ngx_http_ragq_send_json(ngx_http_request_t *r, ngx_uint_t status,
                                  u_char *body, size_t len);
ngx_int_t ngx_http_ragq_error(ngx_http_request_t *r, ngx_uint_t status,
                              const char *code, const char *message);
ngx_int_t ngx_http_ragq_errorf(ngx_http_request_t *r, ngx_uint_t status,
                               const char *code, const char *fmt, ...);
/* 503 + Retry-After: why is NGX_BUSY (in-flight cap) or NGX_DECLINED */
ngx_int_t ngx_http_ragq_unavailable(ngx_http_request_t *r, ngx_int_t why);
/* the answer to an error reply, or to none (reply == NULL) */
ngx_int_t ngx_http_ragq_reply_error(ngx_http_request_t *r, redisReply *reply);
/* 503 valkey_timeout, logged */
/* 503 valkey_timeout; cell: the one that timed out (NULL: a read of the
 * command connection), whose stall the timeout counts in */
ngx_int_t ngx_http_ragq_timed_out(ngx_http_request_t   *r,
                                  ngx_http_ragq_cell_t *cell);
ngx_int_t ngx_http_ragq_not_allowed(ngx_http_request_t *r, const char *allow,
                                    const char *message);
void      ngx_http_ragq_finalize(ngx_http_request_t *r, ngx_int_t rc);

/* pending cells */
ngx_http_ragq_cell_t *ngx_http_ragq_cell_create(ngx_http_request_t    *r,
                                                ngx_http_ragq_reply_pt handler);
/* detaches the cell from its request; returns the request or NULL */
ngx_http_request_t *ngx_http_ragq_cell_take(ngx_http_ragq_cell_t *cell);
void                ngx_http_ragq_cell_drop(ngx_http_ragq_cell_t *cell);
void ngx_http_ragq_cell_wait(ngx_http_request_t *r, ngx_http_ragq_cell_t *cell);


#endif /* _NGX_HTTP_RAGQ_REQUEST_H_INCLUDED_ */
