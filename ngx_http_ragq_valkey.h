/*
 * ragq: the per-worker Valkey command connection (hiredis 0.14 async over
 * nginx's event loop) and the "pending cell" that ties a reply to a request
 * that may be gone by the time the reply arrives.
 */

#ifndef _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_
#define _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>


typedef struct ngx_http_ragq_cell_s ngx_http_ragq_cell_t;

/* reply is NULL when the connection failed before the reply came */
typedef void (*ngx_http_ragq_reply_pt)(ngx_http_ragq_cell_t *cell,
                                       redisReply           *reply);

struct ngx_http_ragq_cell_s {
    ngx_http_request_t    *request; /* NULL once the request is gone */
    ngx_http_cleanup_t    *cleanup;
    ngx_event_t            deadline;
    ngx_http_ragq_reply_pt handler;
    void                  *data;
    u_char                 job_id[32];
};


typedef struct {
    ngx_str_t  host; /* IP literal, resolved at configuration time */
    ngx_int_t  port;
    ngx_str_t  unix_path;
    ngx_str_t  password;
    ngx_int_t  db;
    ngx_msec_t timeout;
} ngx_http_ragq_valkey_conf_t;


ngx_int_t ngx_http_ragq_valkey_init(ngx_cycle_t                 *cycle,
                                    ngx_http_ragq_valkey_conf_t *conf);
void      ngx_http_ragq_valkey_exit(ngx_cycle_t *cycle);

/* NGX_OK: commands may be queued now; NGX_BUSY: in-flight cap reached;
 * NGX_DECLINED: not connected */
ngx_int_t ngx_http_ragq_valkey_available(void);

/* cell == NULL sends the command without a reply callback (MULTI parts) */
ngx_int_t ngx_http_ragq_valkey_command(ngx_http_ragq_cell_t *cell, int argc,
                                       const char  **argv,
                                       const size_t *argvlen);


#endif /* _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_ */
