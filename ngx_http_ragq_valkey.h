/*
 * ragq: the per-worker Valkey connections (hiredis 0.14 async over nginx's
 * event loop): the pipelined command connection, the "pending cell" that
 * ties a reply to a request that may be gone by the time the reply arrives,
 * and the pub/sub connection that delivers <prefix>:events messages.
 */

#ifndef _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_
#define _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_


#include "ngx_http_ragq_module.h"

#include <hiredis/hiredis.h>


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
    u_char                 job_id[NGX_HTTP_RAGQ_JOB_ID_LEN];
};


typedef struct {
    ngx_str_t  host; /* IP literal, resolved at configuration time */
    ngx_int_t  port;
    ngx_str_t  unix_path;
    ngx_str_t  password;
    ngx_int_t  db;
    ngx_msec_t timeout;         /* replies (watchdog) */
    ngx_msec_t connect_timeout; /* connect + handshake */
} ngx_http_ragq_valkey_conf_t;


typedef struct ngx_http_ragq_pubsub_s ngx_http_ragq_pubsub_t;

typedef struct {
    ngx_str_t channel;    /* P:events, NUL-terminated */
    ngx_str_t job_prefix; /* P:job: */
} ngx_http_ragq_channel_t;

struct ngx_http_ragq_pubsub_s {
    ngx_array_t channels; /* of ngx_http_ragq_channel_t */

    /* a message published on one of the channels */
    void (*message)(ngx_http_ragq_pubsub_t *ps, ngx_http_ragq_channel_t *ch,
                    u_char *msg, size_t len);
    /* every channel is subscribed (again): catch up on missed messages */
    void (*ready)(ngx_http_ragq_pubsub_t *ps);
    /* graceful shutdown: no more messages will come */
    void (*closing)(ngx_http_ragq_pubsub_t *ps);
};


ngx_int_t ngx_http_ragq_valkey_init(ngx_cycle_t                 *cycle,
                                    ngx_http_ragq_valkey_conf_t *conf);
void      ngx_http_ragq_valkey_exit(ngx_cycle_t *cycle);

ngx_int_t ngx_http_ragq_pubsub_init(ngx_cycle_t                 *cycle,
                                    ngx_http_ragq_valkey_conf_t *conf,
                                    ngx_http_ragq_pubsub_t      *pubsub);

/* subscribed to every channel: a long-poll will hear about its job */
ngx_flag_t ngx_http_ragq_pubsub_ready(void);

/* NGX_OK: commands may be queued now; NGX_BUSY: in-flight cap reached;
 * NGX_DECLINED: not connected */
ngx_int_t ngx_http_ragq_valkey_available(void);

/* the command connection is up: connected and its handshake answered
 * (for ragq_valkey_connected; available() also accepts a connect in
 * progress, which queues commands behind the handshake) */
ngx_flag_t ngx_http_ragq_valkey_ready(void);

/* cell == NULL sends the command without a reply callback (MULTI parts) */
ngx_int_t ngx_http_ragq_valkey_command(ngx_http_ragq_cell_t *cell, int argc,
                                       const char  **argv,
                                       const size_t *argvlen);

/*
 * The same for one command already in RESP form (ngx_http_ragq_resp.h);
 * hiredis copies the bytes, so cmd may be reused at once. The hot paths use
 * this: hiredis's own formatting costs more than the rest of a request.
 */
ngx_int_t ngx_http_ragq_valkey_send(ngx_http_ragq_cell_t *cell, u_char *cmd,
                                    size_t len);

#endif /* _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_ */
