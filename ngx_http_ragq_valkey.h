/*
 * ragq: the per-worker Valkey connections (ngx_http_ragq_valkey.c, over the
 * transport of ngx_http_ragq_conn.c): the pipelined command connection, the
 * "pending cell" that ties a reply to a request that may be gone by the
 * time the reply arrives, the writes connection of ragq_valkey_replicas
 * (WAIT), and the pub/sub connection that delivers <prefix>:events
 * messages; the primary found directly or through Sentinel.
 */

#ifndef _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_
#define _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_


#include "ngx_http_ragq_module.h"
#include "ngx_http_ragq_peer.h"
#include "ngx_http_ragq_conn.h"
#include "ngx_http_ragq_resp.h"

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
    ngx_uint_t             step; /* of a job's read (ngx_http_ragq_job.h) */
    /* replies still to come after the one being delivered: the cell stays
     * (ngx_http_ragq_valkey_send_pair) */
    ngx_uint_t more;
    /* > 0: a write that counts only once WAIT says this many replicas
     * have it (ragq_valkey_replicas); it goes on the writes connection */
    ngx_uint_t replicas;
};


typedef struct {
    ngx_http_ragq_peer_t peer;      /* ragq_valkey ADDRESS */
    ngx_array_t         *sentinels; /* of ngx_http_ragq_peer_t, or NULL */
    ngx_str_t            master;    /* master=NAME */
    ngx_str_t            user;      /* AUTH [user] password */
    ngx_str_t            password;
    ngx_str_t            sentinel_user;
    ngx_str_t            sentinel_password;
    ngx_int_t            db;
    ngx_msec_t           timeout;         /* replies (watchdog) */
    ngx_msec_t           connect_timeout; /* connect + handshake */
    ngx_uint_t           replicas;        /* the most a location asks for */
    ngx_flag_t           tls;             /* ragq_valkey ... tls */

    /* ragq_valkey_ssl_* */
    ngx_flag_t ssl_verify;
    ngx_uint_t ssl_verify_depth;
    ngx_uint_t ssl_protocols;
    ngx_str_t  ssl_ciphers;
    ngx_str_t  ssl_name;
    ngx_str_t  ssl_trusted_certificate;
    ngx_str_t  ssl_certificate;
    ngx_str_t  ssl_certificate_key;

    ngx_http_ragq_tls_t ssl; /* what the connections use */
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

    /*
     * Channels subscribed one by one (ngx_http_ragq_pubsub_subscribe(), the
     * answer streams' P:out:ID): a SUBSCRIBE acknowledged, and a message on
     * one of them. NULL: none are used. They are not resubscribed after a
     * reconnect: ready() is where their owner subscribes them again.
     */
    void (*subscribed)(ngx_http_ragq_pubsub_t *ps, u_char *channel, size_t len);
    void (*other)(ngx_http_ragq_pubsub_t *ps, u_char *channel, size_t clen,
                  u_char *msg, size_t len);
};


ngx_int_t ngx_http_ragq_valkey_init(ngx_cycle_t                 *cycle,
                                    ngx_http_ragq_valkey_conf_t *conf);
void      ngx_http_ragq_valkey_exit(ngx_cycle_t *cycle);

ngx_int_t ngx_http_ragq_pubsub_init(ngx_cycle_t                 *cycle,
                                    ngx_http_ragq_valkey_conf_t *conf,
                                    ngx_http_ragq_pubsub_t      *pubsub);

/* subscribed to every channel: a long-poll will hear about its job */
ngx_flag_t ngx_http_ragq_pubsub_ready(void);

/* SUBSCRIBE (or UNSUBSCRIBE) one more channel on the pub/sub connection;
 * NGX_DECLINED: not ready (ready() comes when it is) */
ngx_int_t ngx_http_ragq_pubsub_subscribe(ngx_str_t *channel,
                                         ngx_flag_t subscribe);
/* changes with every new pub/sub connection (whose subscriptions are new) */
ngx_uint_t ngx_http_ragq_pubsub_generation(void);

/* NGX_OK: commands may be queued now; NGX_BUSY: in-flight cap reached;
 * NGX_DECLINED: not connected (the sends below answer the same for the
 * connection the command goes on, which may be the writes connection) */
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
 * the bytes are copied, so cmd may be reused at once. The hot paths use
 * this: hiredis's own formatting costs more than the rest of a request.
 */
ngx_int_t ngx_http_ragq_valkey_send(ngx_http_ragq_cell_t *cell, u_char *cmd,
                                    size_t len);

/*
 * n commands in RESP form, one after the other (MULTI ... EXEC): the cell
 * gets the reply of the last one. When that reply is EXECABORT, the cell
 * gets the error of the queued command that failed instead (READONLY,
 * NOPERM, OOM...), which says what is wrong.
 */
ngx_int_t ngx_http_ragq_valkey_send_n(ngx_http_ragq_cell_t *cell, u_char *cmd,
                                      size_t len, ngx_uint_t n);

/*
 * Two commands in RESP form, both of whose replies the cell's handler gets,
 * one call each, in order (the cell->more of the first call is 1). A read
 * that may need a second command sends it with the first: one round trip,
 * and a reply the handler no longer needs is ignored. Not for writes that
 * must reach replicas.
 */
ngx_int_t ngx_http_ragq_valkey_send_pair(ngx_http_ragq_cell_t *cell,
                                         u_char *cmd, size_t len);

/*
 * A request gave up on its reply (ragq_valkey_timeout): one more in the
 * stall of the connection the cell went on (NULL: the command connection).
 * NGX_OK: the first of the stall, worth an error line; NGX_DECLINED: the
 * stall goes on (log at info). A stall ends, with one line that counts its
 * timeouts, when the connection answers a waiting request again or is
 * dropped.
 */
ngx_int_t ngx_http_ragq_valkey_timed_out(ngx_http_ragq_cell_t *cell);

/* why Valkey cannot be used right now (e.g. a replica, a refused AUTH);
 * NULL: no more precise reason than "unavailable" */
const ngx_http_ragq_resp_error_t *ngx_http_ragq_valkey_down(void);

#endif /* _NGX_HTTP_RAGQ_VALKEY_H_INCLUDED_ */
