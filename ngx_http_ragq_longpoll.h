/*
 * ragq: long-polls, GET /job-status?wait=N (ngx_http_ragq_longpoll.c): the
 * per-worker table of waiting requests and the pub/sub hooks that wake it.
 */

#ifndef _NGX_HTTP_RAGQ_LONGPOLL_H_INCLUDED_
#define _NGX_HTTP_RAGQ_LONGPOLL_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"


/* per worker, before the pub/sub connection starts: sets its hooks */
void ngx_http_ragq_lp_init(ngx_http_ragq_pubsub_t *pubsub);
void ngx_http_ragq_lp_exit(void);

/* GET /job-status?wait=N: r waits for the final state of job id (key) */
ngx_int_t ngx_http_ragq_lp_wait(ngx_http_request_t       *r,
                                ngx_http_ragq_loc_conf_t *lcf, ngx_str_t *key,
                                u_char *id, ngx_msec_t wait);


#endif /* _NGX_HTTP_RAGQ_LONGPOLL_H_INCLUDED_ */
