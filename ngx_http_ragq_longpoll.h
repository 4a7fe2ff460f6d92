/*
 * ragq: long-polls, GET /job-status?wait=N (ngx_http_ragq_longpoll.c): the
 * per-worker table of waiting requests and the pub/sub hooks that wake it.
 */

#ifndef _NGX_HTTP_RAGQ_LONGPOLL_H_INCLUDED_
#define _NGX_HTTP_RAGQ_LONGPOLL_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


void      ngx_http_ragq_lp_init(void);
ngx_int_t ngx_http_ragq_wait(ngx_http_request_t       *r,
                             ngx_http_ragq_loc_conf_t *lcf, ngx_str_t *key,
                             u_char *id, ngx_msec_t wait);
void      ngx_http_ragq_lp_message(ngx_http_ragq_pubsub_t  *ps,
                                   ngx_http_ragq_channel_t *ch, u_char *msg,
                                   size_t len);
void      ngx_http_ragq_lp_ready(ngx_http_ragq_pubsub_t *ps);
void      ngx_http_ragq_lp_closing(ngx_http_ragq_pubsub_t *ps);
void      ngx_http_ragq_lp_exit(void);


#endif /* _NGX_HTTP_RAGQ_LONGPOLL_H_INCLUDED_ */
