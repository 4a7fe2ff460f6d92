/*
 * ragq: inside the Valkey connections, shared by ngx_http_ragq_valkey.c
 * (lifecycle), ngx_http_ragq_command.c (commands in, replies out) and
 * ngx_http_ragq_replicas.c (WAIT on the writes connection); nothing else
 * includes this.
 */

#ifndef _NGX_HTTP_RAGQ_VALKEY_INT_H_INCLUDED_
#define _NGX_HTTP_RAGQ_VALKEY_INT_H_INCLUDED_


#include "ngx_http_ragq_valkey.h"


typedef enum {
    NGX_HTTP_RAGQ_VK_DISCONNECTED = 0, /* waiting: backoff or the sentinels */
    NGX_HTTP_RAGQ_VK_RESOLVING,
    NGX_HTTP_RAGQ_VK_CONNECTING, /* connect, TLS, handshake: may queue */
    NGX_HTTP_RAGQ_VK_READY
} ngx_http_ragq_vk_state_e;


/* a write's reply, kept until a WAIT says how many replicas have it */
typedef struct {
    ngx_http_ragq_cell_t *cell;
    redisReply           *reply;
} ngx_http_ragq_held_t;


typedef struct {
    ngx_http_ragq_conn_t         conn;
    ngx_http_ragq_resolve_t      rs;
    ngx_http_ragq_valkey_conf_t *conf;
    ngx_http_ragq_pubsub_t      *pubsub; /* the pub/sub connection's */
    ngx_http_ragq_peer_t        *peer;   /* connected to, or connecting */
    const char                  *name;
    ngx_str_t                    hello; /* AUTH, SELECT, ROLE, SUBSCRIBE */
    ngx_http_ragq_vk_state_e     state;

    ngx_event_t connect_ev;
    ngx_event_t reconnect_ev;
    ngx_event_t watchdog_ev;
    ngx_event_t shutdown_ev; /* pub/sub: no socket for nginx to close */
    ngx_msec_t  backoff;
    ngx_msec_t  busy_since; /* replies pending since */
    ngx_msec_t  ping_at;    /* pub/sub: the keep-alive PING */
    ngx_uint_t  inflight;   /* cells not answered yet */
    ngx_uint_t  acks;       /* pub/sub: channels subscribed */
    ngx_uint_t  gen;        /* Sentinel: the primary's generation */
    ngx_uint_t  connects;   /* connections begun: subscriptions of one */

    /*
     * A stall: requests that gave up on their reply (ragq_valkey_timeout)
     * since the connection last answered one in time; the first is logged
     * at error, the rest at info, and ngx_http_ragq_vk_stall_end() counts
     * them in one line.
     */
    ngx_msec_t stall_since; /* the connection silent since */
    ngx_uint_t stalled;     /* requests timed out; 0: no stall */

    /* the outage being logged, and what clients are told meanwhile */
    const ngx_http_ragq_resp_error_t *down;
    size_t                            err_len;
    u_char                            err[320];

    /* the first error among replies nobody waits for (MULTI's parts) */
    size_t skipped_len;
    u_char skipped[256];

    /* the writes connection: ngx_http_ragq_replicas.c */
    ngx_http_ragq_held_t *held;
    ngx_uint_t            nheld;
    ngx_uint_t            held_size;
    ngx_uint_t            unwaited; /* writes sent since the last WAIT */
    ngx_uint_t            wait_replicas;
    ngx_msec_t            wait_timeout;

    unsigned initialized : 1;
    unsigned exiting : 1;
    unsigned closed : 1;  /* exit_process: cells released, not answered */
    unsigned failed : 1;  /* an outage was logged: "restored" follows */
    unsigned quiet : 1;   /* mute nginx's own lines on the next try */
    unsigned role_ok : 1; /* ROLE said master (or cannot be asked) */
    unsigned role_warned : 1;
    unsigned ping : 1;
    unsigned writes : 1; /* the writes connection */
    unsigned wait_out : 1;
} ngx_http_ragq_vk_t;


/* per worker: commands, writes (ragq_valkey_replicas), pub/sub */
extern ngx_http_ragq_vk_t ngx_http_ragq_vk;
extern ngx_http_ragq_vk_t ngx_http_ragq_vk_wr;
extern ngx_http_ragq_vk_t ngx_http_ragq_vk_sub;


/* ngx_http_ragq_valkey.c: the connections */
void       ngx_http_ragq_vk_ready(ngx_http_ragq_vk_t *vk);
void       ngx_http_ragq_vk_fail(ngx_http_ragq_vk_t               *vk,
                                 const ngx_http_ragq_resp_error_t *down,
                                 const char                       *fmt, ...);
void       ngx_http_ragq_vk_drop(ngx_http_ragq_vk_t               *vk,
                                 const ngx_http_ragq_resp_error_t *down);
void       ngx_http_ragq_vk_stall_end(ngx_http_ragq_vk_t *vk, const char *how);
ngx_msec_t ngx_http_ragq_vk_silent_since(ngx_http_ragq_vk_t *vk);

/* ngx_http_ragq_command.c: cells and their replies, pub/sub messages */
void ngx_http_ragq_pubsub_push(ngx_http_ragq_conn_t *conn, void *data,
                               redisReply *reply);
void ngx_http_ragq_vk_deliver(ngx_http_ragq_vk_t   *vk,
                              ngx_http_ragq_cell_t *cell, redisReply *reply);
void ngx_http_ragq_vk_error_reply(ngx_http_ragq_vk_t   *vk,
                                  ngx_http_ragq_cell_t *cell,
                                  redisReply           *reply);

/* ngx_http_ragq_replicas.c: the writes connection's WAITs */
void ngx_http_ragq_replicas_sent(ngx_http_ragq_vk_t   *vk,
                                 ngx_http_ragq_cell_t *cell);
void ngx_http_ragq_replicas_reply(ngx_http_ragq_conn_t *conn, void *data,
                                  redisReply *reply);
void ngx_http_ragq_replicas_flush(ngx_http_ragq_conn_t *conn);
void ngx_http_ragq_replicas_exit(ngx_http_ragq_vk_t *vk);


#endif /* _NGX_HTTP_RAGQ_VALKEY_INT_H_INCLUDED_ */
