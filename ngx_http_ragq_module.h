/*
 * ragq: what every file of the module shares: the location configuration
 * (ngx_http_ragq_module.c fills it), the module itself and constants of the
 * data model. Every other header of the module builds on this one.
 */

#ifndef _NGX_HTTP_RAGQ_MODULE_H_INCLUDED_
#define _NGX_HTTP_RAGQ_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* a job id: 32 lowercase hexadecimal characters (ngx_http_ragq_job.c) */
#define NGX_HTTP_RAGQ_JOB_ID_LEN 32

/* the longest P:job:ID key */
#define NGX_HTTP_RAGQ_KEY_MAX 256

/* what a location does (ngx_http_ragq_loc_conf_t.kind) */
#define NGX_HTTP_RAGQ_ENQUEUE 1 /* ragq_enqueue: POST /chat */
#define NGX_HTTP_RAGQ_STATUS  2 /* ragq_status: GET /job-status */
#define NGX_HTTP_RAGQ_METRICS 3 /* ragq_metrics: GET /metrics */
#define NGX_HTTP_RAGQ_STREAM  4 /* ragq_stream: GET /job-stream */
#define NGX_HTTP_RAGQ_CANCEL  5 /* ragq_cancel: POST /job-cancel */

/* the longest callback_url accepted (ngx_http_ragq_enqueue.c) */
#define NGX_HTTP_RAGQ_CALLBACK_URL_MAX 2048

#define ngx_http_ragq_lit(p, s) ngx_cpymem(p, s, sizeof(s) - 1)


typedef struct {
    ngx_uint_t                kind;
    ngx_str_t                 prefix;
    ngx_str_t                 jobs_key;   /* P:jobs */
    ngx_str_t                 job_prefix; /* P:job: */
    ngx_str_t                 idem_prefix;
    ngx_http_complex_value_t *collection;
    ngx_http_complex_value_t *tenant;
    ngx_http_complex_value_t *status_url; /* NULL: /job-status */
    ngx_uint_t                top_k;
    ngx_uint_t                top_k_max;
    size_t                    max_query_length;
    ngx_int_t                 max_queue;
    ngx_msec_t                job_ttl;
    time_t                    max_wait;
    ngx_msec_t                valkey_timeout;
    ngx_uint_t                replicas;         /* ragq_valkey_replicas */
    ngx_msec_t                stream_heartbeat; /* ragq_stream_heartbeat */
    ngx_array_t *callback_allow; /* ragq_callback_allow: of ngx_str_t */

    /* the constant parts of the hot commands, in RESP form */
    ngx_str_t hgetall_head; /* HGETALL + "$n\r\nP:job:" */
    ngx_str_t xadd_head;    /* XADD P:jobs * r + "$16\r\n" (the random) */
    ngx_str_t xrange_head;  /* XRANGE P:jobs (two entry ids follow) */
    ngx_str_t xlen_cmd;     /* XLEN P:jobs */

    /* per-worker runtime state: last known queue length */
    ngx_uint_t queue_len;
    ngx_msec_t queue_checked;
    ngx_flag_t queue_checking;
} ngx_http_ragq_loc_conf_t;


extern ngx_module_t ngx_http_ragq_module;


#endif /* _NGX_HTTP_RAGQ_MODULE_H_INCLUDED_ */
