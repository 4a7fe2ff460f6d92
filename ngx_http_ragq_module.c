/*
 * ragq: the nginx side of the asynchronous question queue. This file owns
 * the ragq_* directives, the configuration (create, merge, checks, the
 * constant heads of the hot commands) and the process lifecycle (the Valkey
 * connections of each worker). POST /chat is ngx_http_ragq_enqueue.c,
 * GET /job-status ngx_http_ragq_status.c and ngx_http_ragq_longpoll.c,
 * GET /job-stream ngx_http_ragq_stream.c, POST /job-cancel
 * ngx_http_ragq_cancel.c, jobs (ids, the job view) ngx_http_ragq_job.c,
 * new jobs ngx_http_ragq_job_new.c, request plumbing
 * ngx_http_ragq_request.c, JSON ngx_http_ragq_json.c, the Valkey
 * connections ngx_http_ragq_valkey.c and RESP ngx_http_ragq_resp.c.
 */

#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_valkey.h"
#include "ngx_http_ragq_valkey_conf.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_enqueue.h"
#include "ngx_http_ragq_status.h"
#include "ngx_http_ragq_cancel.h"
#include "ngx_http_ragq_longpoll.h"
#include "ngx_http_ragq_stream.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_metrics.h"
#include "ngx_http_ragq_vars.h"


/* ragq_top_k's defaults: passages per question, and the most a request
 * may ask for */
#define NGX_HTTP_RAGQ_TOP_K     5
#define NGX_HTTP_RAGQ_TOP_K_MAX 20

/* room for ":job:" and an id in a key */
#define NGX_HTTP_RAGQ_PREFIX_MAX \
    (NGX_HTTP_RAGQ_KEY_MAX - NGX_HTTP_RAGQ_JOB_ID_LEN - 5)


typedef struct {
    ngx_http_ragq_valkey_conf_t valkey;
    ngx_http_ragq_pubsub_t      pubsub; /* the events of ragq_status prefixes */
    ngx_flag_t                  used;
    ngx_shm_zone_t             *metrics_zone;
} ngx_http_ragq_main_conf_t;


/* nginx's own layout for these, not clang-format's */
/* clang-format off */

static char *ngx_http_ragq_handler_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ragq_callback_allow(ngx_conf_t *cf, ngx_command_t *cmd,
                                          void *conf);
static char *ngx_http_ragq_top_k(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_ragq_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_ragq_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_ragq_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_ragq_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_ragq_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ragq_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_ragq_check_prefix(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_ragq_check_size(ngx_conf_t *cf, void *post, void *data);
static char *ngx_http_ragq_check_msec(ngx_conf_t *cf, void *post, void *data);
static ngx_int_t ngx_http_ragq_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_ragq_init_process(ngx_cycle_t *cycle);
static void ngx_http_ragq_exit_process(ngx_cycle_t *cycle);


/* range checks at the directive, so that errors point at its line */
static ngx_conf_post_handler_pt  ngx_http_ragq_prefix_p =
    ngx_http_ragq_check_prefix;
static ngx_conf_post_handler_pt  ngx_http_ragq_positive_size_p =
    ngx_http_ragq_check_size;
static ngx_conf_post_handler_pt  ngx_http_ragq_positive_msec_p =
    ngx_http_ragq_check_msec;


static ngx_command_t  ngx_http_ragq_commands[] = {

    { ngx_string("ragq_valkey"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_ragq_valkey_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey),
      NULL },

    { ngx_string("ragq_valkey_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_verify),
      NULL },

    { ngx_string("ragq_valkey_ssl_verify_depth"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_verify_depth),
      NULL },

    { ngx_string("ragq_valkey_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_trusted_certificate),
      NULL },

    { ngx_string("ragq_valkey_ssl_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_name),
      NULL },

    { ngx_string("ragq_valkey_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_certificate),
      NULL },

    { ngx_string("ragq_valkey_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_certificate_key),
      NULL },

    { ngx_string("ragq_valkey_ssl_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_protocols),
      &ngx_http_ragq_valkey_ssl_protocols },

    { ngx_string("ragq_valkey_ssl_ciphers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ragq_main_conf_t, valkey.ssl_ciphers),
      NULL },

    { ngx_string("ragq_valkey_replicas"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, replicas),
      NULL },

    { ngx_string("ragq_enqueue"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ragq_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_RAGQ_ENQUEUE },

    { ngx_string("ragq_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ragq_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_RAGQ_STATUS },

    { ngx_string("ragq_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ragq_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_RAGQ_STREAM },

    { ngx_string("ragq_stream_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, stream_heartbeat),
      &ngx_http_ragq_positive_msec_p },

    { ngx_string("ragq_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ragq_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_RAGQ_METRICS },

    { ngx_string("ragq_cancel"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_ragq_handler_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_RAGQ_CANCEL },

    { ngx_string("ragq_status_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, status_url),
      NULL },

    { ngx_string("ragq_callback_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ragq_callback_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ragq_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, prefix),
      &ngx_http_ragq_prefix_p },

    { ngx_string("ragq_collection"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, collection),
      NULL },

    { ngx_string("ragq_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, tenant),
      NULL },

    { ngx_string("ragq_top_k"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_ragq_top_k,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ragq_max_query_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, max_query_length),
      &ngx_http_ragq_positive_size_p },

    { ngx_string("ragq_max_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, max_queue),
      NULL },

    { ngx_string("ragq_job_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, job_ttl),
      &ngx_http_ragq_positive_msec_p },

    { ngx_string("ragq_max_wait"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, max_wait),
      NULL },

    { ngx_string("ragq_valkey_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ragq_loc_conf_t, valkey_timeout),
      &ngx_http_ragq_positive_msec_p },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ragq_module_ctx = {
    ngx_http_ragq_preconfiguration,        /* preconfiguration */
    ngx_http_ragq_postconfiguration,       /* postconfiguration */

    ngx_http_ragq_create_main_conf,        /* create main configuration */
    ngx_http_ragq_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ragq_create_loc_conf,         /* create location configuration */
    ngx_http_ragq_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_ragq_module = {
    NGX_MODULE_V1,
    &ngx_http_ragq_module_ctx,             /* module context */
    ngx_http_ragq_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_ragq_init_module,             /* init module */
    ngx_http_ragq_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ragq_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};

/* clang-format on */


/* ---- configuration ---- */


static char *
ngx_http_ragq_handler_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_loc_conf_t *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_ragq_main_conf_t *rmcf;

    if (lcf->kind) {
        return "is duplicate";
    }

    lcf->kind = (ngx_uint_t) cmd->post;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    switch (lcf->kind) {
    case NGX_HTTP_RAGQ_ENQUEUE:
        clcf->handler = ngx_http_ragq_enqueue_handler;
        break;

    case NGX_HTTP_RAGQ_STATUS:
        clcf->handler = ngx_http_ragq_status_handler;
        break;

    case NGX_HTTP_RAGQ_STREAM:
        clcf->handler = ngx_http_ragq_stream_handler;
        break;

    case NGX_HTTP_RAGQ_CANCEL:
        clcf->handler = ngx_http_ragq_cancel_handler;
        break;

    default: /* NGX_HTTP_RAGQ_METRICS */
        clcf->handler = ngx_http_ragq_metrics_handler;
        break;
    }

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ragq_module);
    rmcf->used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_ragq_top_k(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_loc_conf_t *lcf = conf;

    ngx_int_t  n, max;
    ngx_str_t *value;

    if (lcf->top_k != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);
    if (n < 1) {
        return "must be a positive number";
    }

    max = n;

    if (cf->args->nelts > 2) {
        max = ngx_atoi(value[2].data, value[2].len);
        if (max < n) {
            return "has a maximum smaller than its default";
        }
    }

    lcf->top_k = n;
    lcf->top_k_max = (cf->args->nelts > 2)
                         ? (ngx_uint_t) max
                         : ngx_max((ngx_uint_t) n, NGX_HTTP_RAGQ_TOP_K_MAX);

    return NGX_CONF_OK;
}


/*
 * ragq_callback_allow PREFIX ...: the URLs a /chat body's callback_url may
 * start with. Each prefix must name its scheme and whole authority, up to
 * the "/" of the path: "https://hooks.example" would also let
 * "https://hooks.example.evil.net/" and "https://hooks.example@evil.net/"
 * through. Several directives add up.
 */
static char *
ngx_http_ragq_callback_allow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_loc_conf_t *lcf = conf;

    u_char    *p, *end, *host;
    ngx_str_t *value, *prefix;
    ngx_uint_t i;

    if (lcf->callback_allow == NGX_CONF_UNSET_PTR) {
        lcf->callback_allow = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (lcf->callback_allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        p = value[i].data;
        end = p + value[i].len;

        if (value[i].len >= 7 && ngx_strncmp(p, "http://", 7) == 0) {
            p += 7;

        } else if (value[i].len >= 8 && ngx_strncmp(p, "https://", 8) == 0) {
            p += 8;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ragq_callback_allow\" prefix \"%V\" must "
                               "start with http:// or https://",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        host = p;

        while (p < end && *p != '/' && *p != '@' && *p > ' ' && *p < 0x7f) {
            p++;
        }

        if (p == end || *p != '/' || p == host
            || value[i].len > NGX_HTTP_RAGQ_CALLBACK_URL_MAX)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ragq_callback_allow\" prefix \"%V\" must "
                               "name a host and end its authority with "
                               "\"/\", as in \"https://hooks.example.com/\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        prefix = ngx_array_push(lcf->callback_allow);
        if (prefix == NULL) {
            return NGX_CONF_ERROR;
        }

        *prefix = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ragq_check_prefix(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t *prefix = data;

    if (prefix->len == 0) {
        return "must not be empty";
    }

    if (prefix->len > NGX_HTTP_RAGQ_PREFIX_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ragq_prefix\" must be at most %d bytes long",
                           NGX_HTTP_RAGQ_PREFIX_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ragq_check_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t *sp = data;

    return (*sp == 0) ? "must be positive" : NGX_CONF_OK;
}


static char *
ngx_http_ragq_check_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t *mp = data;

    return (*mp == 0) ? "must be positive" : NGX_CONF_OK;
}


static void *
ngx_http_ragq_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ragq_main_conf_t *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ragq_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->pubsub.channels, cf->pool, 1,
                       sizeof(ngx_http_ragq_channel_t))
        != NGX_OK)
    {
        return NULL;
    }

    ngx_http_ragq_valkey_conf_create(&rmcf->valkey);

    return rmcf;
}


static char *
ngx_http_ragq_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_ragq_main_conf_t *rmcf = conf;

    return ngx_http_ragq_valkey_conf_init(cf, &rmcf->valkey);
}


static void *
ngx_http_ragq_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ragq_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *     lcf->kind = 0;
     *     lcf->prefix = { 0, NULL };
     *     lcf->collection = NULL;
     *     lcf->tenant = NULL;
     *     lcf->status_url = NULL;
     *     lcf->queue_* = 0;
     */

    lcf->top_k = NGX_CONF_UNSET_UINT;
    lcf->top_k_max = NGX_CONF_UNSET_UINT;
    lcf->max_query_length = NGX_CONF_UNSET_SIZE;
    lcf->max_queue = NGX_CONF_UNSET;
    lcf->job_ttl = NGX_CONF_UNSET_MSEC;
    lcf->max_wait = NGX_CONF_UNSET;
    lcf->valkey_timeout = NGX_CONF_UNSET_MSEC;
    lcf->replicas = NGX_CONF_UNSET_UINT;
    lcf->callback_allow = NGX_CONF_UNSET_PTR;
    lcf->stream_heartbeat = NGX_CONF_UNSET_MSEC;

    return lcf;
}


static ngx_int_t
ngx_http_ragq_key(ngx_conf_t *cf, ngx_str_t *key, ngx_str_t *prefix,
                  const char *suffix)
{
    size_t  n = ngx_strlen(suffix);
    u_char *p;

    key->len = prefix->len + n;
    key->data = ngx_pnalloc(cf->pool, key->len + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, suffix, n);
    *p = '\0';

    return NGX_OK;
}


/*
 * The constant heads of the hot commands. A job key is always the prefix
 * plus NGX_HTTP_RAGQ_JOB_ID_LEN characters, so its RESP length header is
 * constant too.
 */
static ngx_int_t
ngx_http_ragq_commands_init(ngx_conf_t *cf, ngx_http_ragq_loc_conf_t *lcf)
{
    u_char *p, *buf;
    size_t  len;

    len = 64 + lcf->job_prefix.len + 3 * (64 + lcf->jobs_key.len) + 64;

    buf = ngx_pnalloc(cf->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    lcf->hgetall_head.data = p;
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HGETALL "$");
    p = ngx_http_ragq_resp_uint(p,
                                lcf->job_prefix.len + NGX_HTTP_RAGQ_JOB_ID_LEN);
    p = ngx_http_ragq_lit(p, "\r\n");
    p = ngx_cpymem(p, lcf->job_prefix.data, lcf->job_prefix.len);
    lcf->hgetall_head.len = p - lcf->hgetall_head.data;

    lcf->xadd_head.data = p;
    p = ngx_http_ragq_lit(p, "*15\r\n$4\r\nXADD\r\n");
    p = ngx_http_ragq_resp_bulk(p, lcf->jobs_key.data, lcf->jobs_key.len);
    p = ngx_http_ragq_lit(p, "$1\r\n*\r\n$1\r\nr\r\n$16\r\n");
    lcf->xadd_head.len = p - lcf->xadd_head.data;

    lcf->xrange_head.data = p;
    p = ngx_http_ragq_lit(p, "*4\r\n$6\r\nXRANGE\r\n");
    p = ngx_http_ragq_resp_bulk(p, lcf->jobs_key.data, lcf->jobs_key.len);
    lcf->xrange_head.len = p - lcf->xrange_head.data;

    lcf->xlen_cmd.data = p;
    p = ngx_http_ragq_lit(p, "*2\r\n$4\r\nXLEN\r\n");
    p = ngx_http_ragq_resp_bulk(p, lcf->jobs_key.data, lcf->jobs_key.len);
    lcf->xlen_cmd.len = p - lcf->xlen_cmd.data;

    return NGX_OK;
}


/* one SUBSCRIBE per prefix that a ragq_status or ragq_stream location
 * reads */
static ngx_int_t
ngx_http_ragq_add_channel(ngx_conf_t *cf, ngx_http_ragq_loc_conf_t *lcf)
{
    ngx_uint_t                 i;
    ngx_http_ragq_channel_t   *ch;
    ngx_http_ragq_main_conf_t *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ragq_module);

    ch = rmcf->pubsub.channels.elts;

    for (i = 0; i < rmcf->pubsub.channels.nelts; i++) {
        if (ch[i].job_prefix.len == lcf->job_prefix.len
            && ngx_strncmp(ch[i].job_prefix.data, lcf->job_prefix.data,
                           lcf->job_prefix.len)
                   == 0)
        {
            return NGX_OK;
        }
    }

    ch = ngx_array_push(&rmcf->pubsub.channels);
    if (ch == NULL) {
        return NGX_ERROR;
    }

    ch->job_prefix = lcf->job_prefix;

    return ngx_http_ragq_key(cf, &ch->channel, &lcf->prefix, ":events");
}


static char *
ngx_http_ragq_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ragq_loc_conf_t *prev = parent;
    ngx_http_ragq_loc_conf_t *conf = child;

    ngx_http_ragq_main_conf_t *rmcf;

    ngx_conf_merge_str_value(conf->prefix, prev->prefix, "ragq");

    if (conf->collection == NULL) {
        conf->collection = prev->collection;
    }

    if (conf->tenant == NULL) {
        conf->tenant = prev->tenant;
    }

    if (conf->status_url == NULL) {
        conf->status_url = prev->status_url;
    }

    if (conf->top_k == NGX_CONF_UNSET_UINT) {
        conf->top_k = (prev->top_k == NGX_CONF_UNSET_UINT) ? NGX_HTTP_RAGQ_TOP_K
                                                           : prev->top_k;
        conf->top_k_max = (prev->top_k_max == NGX_CONF_UNSET_UINT)
                              ? NGX_HTTP_RAGQ_TOP_K_MAX
                              : prev->top_k_max;
    }

    ngx_conf_merge_size_value(conf->max_query_length, prev->max_query_length,
                              16384);
    ngx_conf_merge_value(conf->max_queue, prev->max_queue, 100000);
    ngx_conf_merge_msec_value(conf->job_ttl, prev->job_ttl, 86400000);
    ngx_conf_merge_sec_value(conf->max_wait, prev->max_wait, 30);
    ngx_conf_merge_msec_value(conf->valkey_timeout, prev->valkey_timeout, 1000);
    ngx_conf_merge_uint_value(conf->replicas, prev->replicas, 0);
    ngx_conf_merge_ptr_value(conf->callback_allow, prev->callback_allow, NULL);
    ngx_conf_merge_msec_value(conf->stream_heartbeat, prev->stream_heartbeat,
                              15000);

    /* a writes connection of its own when some location waits for replicas */
    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ragq_module);
    rmcf->valkey.replicas = ngx_max(rmcf->valkey.replicas, conf->replicas);

    if (ngx_http_ragq_key(cf, &conf->jobs_key, &conf->prefix, ":jobs") != NGX_OK
        || ngx_http_ragq_key(cf, &conf->job_prefix, &conf->prefix, ":job:")
               != NGX_OK
        || ngx_http_ragq_key(cf, &conf->idem_prefix, &conf->prefix, ":idem:")
               != NGX_OK
        || ngx_http_ragq_commands_init(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* streams hear of status changes there too */
    if ((conf->kind == NGX_HTTP_RAGQ_STATUS
         || conf->kind == NGX_HTTP_RAGQ_STREAM)
        && ngx_http_ragq_add_channel(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* $ragq_job_id, $ragq_job_status, $ragq_version */
static ngx_int_t
ngx_http_ragq_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_ragq_add_variables(cf);
}


/* metrics (their zone and the log-phase counter) once ragq is used */
static ngx_int_t
ngx_http_ragq_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_ragq_main_conf_t *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ragq_module);

    if (!rmcf->used) {
        return NGX_OK;
    }

    rmcf->metrics_zone = ngx_http_ragq_metrics_init(cf);

    return rmcf->metrics_zone ? NGX_OK : NGX_ERROR;
}


/* ---- process lifecycle ---- */


/* the version, once per (re)load, as nginx says its own */
static ngx_int_t
ngx_http_ragq_init_module(ngx_cycle_t *cycle)
{
    ngx_http_ragq_main_conf_t *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ragq_module);

    if (rmcf && rmcf->used && !ngx_test_config) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "ragq/%s", RAGQ_VERSION);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ragq_init_process(ngx_cycle_t *cycle)
{
    ngx_http_conf_ctx_t       *ctx;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_ragq_main_conf_t *rmcf;
    ngx_http_ragq_loc_conf_t  *lcf;

    /* not in the cache manager/loader helpers */
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ragq_module);
    if (rmcf == NULL || !rmcf->used) {
        return NGX_OK;
    }

    ctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    lcf = ctx->loc_conf[ngx_http_ragq_module.ctx_index];

    /* the http{}-level ragq_valkey_timeout bounds connect and silence */
    rmcf->valkey.timeout = (lcf->valkey_timeout == NGX_CONF_UNSET_MSEC)
                               ? 1000
                               : lcf->valkey_timeout;

    ngx_http_ragq_job_init_process();
    ngx_http_ragq_metrics_init_process(cycle, rmcf->metrics_zone);

    /* the http{}-level "resolver", if any, re-resolves Valkey's host names */
    clcf = ctx->loc_conf[ngx_http_core_module.ctx_index];
    ngx_http_ragq_peer_init(clcf->resolver, clcf->resolver_timeout);

    if (ngx_http_ragq_valkey_init(cycle, &rmcf->valkey) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rmcf->pubsub.channels.nelts == 0) {
        return NGX_OK;
    }

    ngx_http_ragq_lp_init(&rmcf->pubsub);
    ngx_http_ragq_stream_init(&rmcf->pubsub);

    return ngx_http_ragq_pubsub_init(cycle, &rmcf->valkey, &rmcf->pubsub);
}


static void
ngx_http_ragq_exit_process(ngx_cycle_t *cycle)
{
    /* first, while the reads they sit in still exist */
    ngx_http_ragq_lp_exit();
    ngx_http_ragq_stream_exit();

    ngx_http_ragq_metrics_exit_process();
    ngx_http_ragq_valkey_exit(cycle);
}
