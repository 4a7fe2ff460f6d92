/*
 * ragq: what the module's files share: the location configuration, the
 * /job-status answers (ngx_http_ragq_module.c) and the long-poll entry
 * points (ngx_http_ragq_longpoll.c).
 */

#ifndef _NGX_HTTP_RAGQ_MODULE_H_INCLUDED_
#define _NGX_HTTP_RAGQ_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_ragq_valkey.h"


#define NGX_HTTP_RAGQ_KEY_MAX 256
#define NGX_HTTP_RAGQ_HGETALL "*2\r\n$7\r\nHGETALL\r\n"

#define ngx_http_ragq_lit(p, s) ngx_cpymem(p, s, sizeof(s) - 1)


typedef struct {
    ngx_uint_t                kind;
    ngx_str_t                 prefix;
    ngx_str_t                 jobs_key;   /* P:jobs */
    ngx_str_t                 job_prefix; /* P:job: */
    ngx_str_t                 idem_prefix;
    ngx_http_complex_value_t *collection;
    ngx_http_complex_value_t *tenant;
    ngx_uint_t                top_k;
    ngx_uint_t                top_k_max;
    size_t                    max_query_length;
    ngx_int_t                 max_queue;
    ngx_msec_t                job_ttl;
    time_t                    max_wait;
    ngx_msec_t                valkey_timeout;

    /* the constant parts of the hot commands, in RESP form */
    ngx_str_t hset_head;    /* HSET + "$n\r\nP:job:" (the id follows) */
    ngx_str_t hgetall_head; /* HGETALL + "$n\r\nP:job:" */
    ngx_str_t xadd_head;    /* XADD P:jobs * job + "$32\r\n" */
    ngx_str_t xlen_cmd;     /* XLEN P:jobs */

    /* per-worker runtime state: last known queue length */
    ngx_uint_t queue_len;
    ngx_msec_t queue_checked;
    ngx_flag_t queue_checking;
} ngx_http_ragq_loc_conf_t;


extern ngx_module_t ngx_http_ragq_module;


/* responses (ngx_http_ragq_module.c) */
ngx_int_t ngx_http_ragq_error(ngx_http_request_t *r, ngx_uint_t status,
                              const char *code, const char *message);
/* 503 + Retry-After: why is NGX_BUSY (in-flight cap) or NGX_DECLINED */
ngx_int_t  ngx_http_ragq_unavailable(ngx_http_request_t *r, ngx_int_t why);
void       ngx_http_ragq_finalize(ngx_http_request_t *r, ngx_int_t rc);
ngx_flag_t ngx_http_ragq_job_id_valid(u_char *p, size_t len);
/* NGX_OK: the job in a HGETALL reply exists and is r's tenant's */
ngx_int_t ngx_http_ragq_job_visible(ngx_http_request_t       *r,
                                    ngx_http_ragq_loc_conf_t *lcf,
                                    redisReply               *reply);
/* the /job-status answer for a HGETALL reply (NULL: the read failed) */
ngx_int_t ngx_http_ragq_status_respond(ngx_http_request_t       *r,
                                       ngx_http_ragq_loc_conf_t *lcf,
                                       u_char *id, redisReply *reply);

/* long-polls (ngx_http_ragq_longpoll.c) */
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


#endif /* _NGX_HTTP_RAGQ_MODULE_H_INCLUDED_ */
