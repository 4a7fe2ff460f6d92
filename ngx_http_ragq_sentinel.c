/*
 * ragq: Sentinel, as DESIGN.md §6 has it. Per worker, one connection to
 * one sentinel at a time: AUTH (sentinel_password=), then
 * SENTINEL get-master-addr-by-name NAME, then SUBSCRIBE +switch-master on
 * the same connection, which stays open to hear the next fail-over. A
 * sentinel that fails, times out or does not know NAME passes the turn to
 * the next one; after a round with no answer, the next round waits (50 ms
 * doubling to 1 s). The Valkey connections ask here for the primary's
 * address (and its generation, which changes with the address) and report
 * a primary that failed them (refused, a replica by ROLE, READONLY): the
 * sentinels are then asked again. A new address is announced through the
 * hook, and the connections move at once.
 */

#include "ngx_http_ragq_sentinel.h"


#define NGX_HTTP_RAGQ_SENTINEL_BACKOFF_MIN 50
#define NGX_HTTP_RAGQ_SENTINEL_BACKOFF_MAX 1000


typedef enum {
    NGX_HTTP_RAGQ_SENTINEL_IDLE = 0, /* waiting for the next round */
    NGX_HTTP_RAGQ_SENTINEL_ASKING,   /* connecting, asking */
    NGX_HTTP_RAGQ_SENTINEL_WATCHING  /* answered; hears +switch-master */
} ngx_http_ragq_sentinel_state_e;


typedef struct {
    ngx_http_ragq_conn_t           conn;
    ngx_http_ragq_resolve_t        rs;
    ngx_http_ragq_valkey_conf_t   *conf;
    ngx_http_ragq_primary_pt       changed;
    ngx_str_t                      hello;
    ngx_http_ragq_sentinel_state_e state;
    ngx_uint_t                     next;  /* the sentinel asked */
    ngx_uint_t                     tried; /* in this round */
    ngx_uint_t                     gen;   /* 0: no primary known yet */
    ngx_http_ragq_peer_buf_t       primary;
    ngx_event_t                    timeout_ev;
    ngx_event_t                    retry_ev;
    ngx_msec_t                     backoff;
    size_t                         err_len;
    u_char                         err[320];
    unsigned                       initialized : 1;
    unsigned                       exiting : 1;
    unsigned                       quiet : 1;
} ngx_http_ragq_sentinel_t;


static void ngx_http_ragq_sentinel_ask(ngx_http_ragq_sentinel_t *s);
static void ngx_http_ragq_sentinel_resolved(ngx_http_ragq_resolve_t *rs,
                                            ngx_int_t                rc);
static void ngx_http_ragq_sentinel_lost(ngx_http_ragq_conn_t *conn);
static void ngx_http_ragq_sentinel_auth_reply(ngx_http_ragq_conn_t *conn,
                                              void *data, redisReply *reply);
static void ngx_http_ragq_sentinel_master_reply(ngx_http_ragq_conn_t *conn,
                                                void *data, redisReply *reply);
static void ngx_http_ragq_sentinel_push(ngx_http_ragq_conn_t *conn, void *data,
                                        redisReply *reply);
static void ngx_http_ragq_sentinel_timeout(ngx_event_t *ev);
static void ngx_http_ragq_sentinel_retry(ngx_event_t *ev);


/* per worker */
static ngx_http_ragq_sentinel_t ngx_http_ragq_sentinel;


static ngx_http_ragq_peer_t *
ngx_http_ragq_sentinel_peer(ngx_http_ragq_sentinel_t *s)
{
    ngx_http_ragq_peer_t *peers = s->conf->sentinels->elts;

    return &peers[s->next % s->conf->sentinels->nelts];
}


/* [AUTH], SENTINEL get-master-addr-by-name NAME, SUBSCRIBE +switch-master */
static ngx_int_t
ngx_http_ragq_sentinel_hello(ngx_cycle_t *cycle, ngx_http_ragq_sentinel_t *s)
{
    u_char                      *p;
    ngx_http_ragq_valkey_conf_t *conf = s->conf;

    p = ngx_pnalloc(cycle->pool, 160 + conf->sentinel_user.len
                                     + conf->sentinel_password.len
                                     + conf->master.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->hello.data = p;

    if (conf->sentinel_password.len) {
        if (conf->sentinel_user.len) {
            p = ngx_http_ragq_lit(p, "*3\r\n$4\r\nAUTH\r\n");
            p = ngx_http_ragq_resp_bulk(p, conf->sentinel_user.data,
                                        conf->sentinel_user.len);
        } else {
            p = ngx_http_ragq_lit(p, "*2\r\n$4\r\nAUTH\r\n");
        }

        p = ngx_http_ragq_resp_bulk(p, conf->sentinel_password.data,
                                    conf->sentinel_password.len);
    }

    p = ngx_http_ragq_lit(p, "*3\r\n$8\r\nSENTINEL\r\n"
                             "$23\r\nget-master-addr-by-name\r\n");
    p = ngx_http_ragq_resp_bulk(p, conf->master.data, conf->master.len);
    p = ngx_http_ragq_lit(p,
                          "*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n");

    s->hello.len = p - s->hello.data;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_sentinel_init(ngx_cycle_t                 *cycle,
                            ngx_http_ragq_valkey_conf_t *conf,
                            ngx_http_ragq_primary_pt     changed)
{
    ngx_http_ragq_sentinel_t *s = &ngx_http_ragq_sentinel;

    ngx_memzero(s, sizeof(ngx_http_ragq_sentinel_t));

    s->conf = conf;
    s->changed = changed;
    s->backoff = NGX_HTTP_RAGQ_SENTINEL_BACKOFF_MIN;

    s->conn.data = s;
    s->conn.lost = ngx_http_ragq_sentinel_lost;
    s->conn.push = ngx_http_ragq_sentinel_push;
    s->conn.idle = 1; /* graceful shutdown closes it at once */

    s->rs.handler = ngx_http_ragq_sentinel_resolved;
    s->rs.data = s;

    s->timeout_ev.handler = ngx_http_ragq_sentinel_timeout;
    s->timeout_ev.log = cycle->log;
    s->timeout_ev.data = s;
    s->timeout_ev.cancelable = 1;

    s->retry_ev.handler = ngx_http_ragq_sentinel_retry;
    s->retry_ev.log = cycle->log;
    s->retry_ev.data = s;
    s->retry_ev.cancelable = 1;

    if (ngx_http_ragq_sentinel_hello(cycle, s) != NGX_OK) {
        return NGX_ERROR;
    }

    s->initialized = 1;

    ngx_http_ragq_sentinel_ask(s);

    return NGX_OK;
}


void
ngx_http_ragq_sentinel_exit(void)
{
    ngx_http_ragq_sentinel_t *s = &ngx_http_ragq_sentinel;

    if (!s->initialized) {
        return;
    }

    s->exiting = 1;

    if (s->timeout_ev.timer_set) {
        ngx_del_timer(&s->timeout_ev);
    }

    if (s->retry_ev.timer_set) {
        ngx_del_timer(&s->retry_ev);
    }

    ngx_http_ragq_peer_resolve_cancel(&s->rs);
    ngx_http_ragq_conn_free(&s->conn);

    s->initialized = 0;
}


ngx_int_t
ngx_http_ragq_sentinel_primary(ngx_http_ragq_peer_t **peer, ngx_uint_t *gen)
{
    ngx_http_ragq_sentinel_t *s = &ngx_http_ragq_sentinel;

    if (s->gen == 0) {
        return NGX_DECLINED;
    }

    *peer = &s->primary.peer;
    *gen = s->gen;

    return NGX_OK;
}


void
ngx_http_ragq_sentinel_stale(ngx_uint_t gen)
{
    ngx_http_ragq_sentinel_t *s = &ngx_http_ragq_sentinel;

    /* an answer about an older primary, or a question already out */
    if (!s->initialized || s->exiting || gen != s->gen
        || s->state != NGX_HTTP_RAGQ_SENTINEL_WATCHING)
    {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: valkey sentinel: %V failed us, asking again",
                   &s->primary.peer.name);

    /* the same sentinel first: it answered a moment ago */
    ngx_http_ragq_conn_close(&s->conn);
    ngx_http_ragq_sentinel_ask(s);
}


/* ---- asking ---- */


static ngx_flag_t
ngx_http_ragq_sentinel_stopping(ngx_http_ragq_sentinel_t *s)
{
    return s->exiting || ngx_exiting || ngx_quit || ngx_terminate;
}


static void
ngx_http_ragq_sentinel_ask(ngx_http_ragq_sentinel_t *s)
{
    ngx_int_t rc;

    if (ngx_http_ragq_sentinel_stopping(s)) {
        return;
    }

    s->state = NGX_HTTP_RAGQ_SENTINEL_ASKING;

    if (s->timeout_ev.timer_set) {
        ngx_del_timer(&s->timeout_ev);
    }

    ngx_add_timer(&s->timeout_ev, s->conf->connect_timeout);

    rc = ngx_http_ragq_peer_resolve(ngx_http_ragq_sentinel_peer(s), &s->rs);

    if (rc != NGX_AGAIN) {
        ngx_http_ragq_sentinel_resolved(&s->rs, rc);
    }
}


/*
 * This sentinel did not answer: logged once per change of state, and the
 * next one is asked; after a whole round, the next round waits.
 */
static void
ngx_http_ragq_sentinel_failed(ngx_http_ragq_sentinel_t *s, const char *fmt, ...)
{
    u_char    *p;
    size_t     len;
    va_list    args;
    ngx_uint_t level;
    u_char     msg[sizeof(s->err)];

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    len = p - msg;

    if (len == s->err_len && ngx_memcmp(msg, s->err, len) == 0) {
        level = NGX_LOG_INFO;
        s->quiet = 1;

    } else {
        level = NGX_LOG_ERR;
        s->quiet = 0;
        ngx_memcpy(s->err, msg, len);
        s->err_len = len;
    }

    ngx_log_error(level, ngx_cycle->log, 0, "ragq: valkey sentinel %*s", len,
                  msg);

    s->state = NGX_HTTP_RAGQ_SENTINEL_IDLE;

    if (s->timeout_ev.timer_set) {
        ngx_del_timer(&s->timeout_ev);
    }

    ngx_http_ragq_peer_resolve_cancel(&s->rs);
    ngx_http_ragq_conn_close(&s->conn);

    if (ngx_http_ragq_sentinel_stopping(s)) {
        return;
    }

    s->next++;

    if (++s->tried < s->conf->sentinels->nelts) {
        ngx_http_ragq_sentinel_ask(s);
        return;
    }

    s->tried = 0;

    if (!s->retry_ev.timer_set) {
        ngx_add_timer(&s->retry_ev, s->backoff);

        s->backoff *= 2;
        if (s->backoff > NGX_HTTP_RAGQ_SENTINEL_BACKOFF_MAX) {
            s->backoff = NGX_HTTP_RAGQ_SENTINEL_BACKOFF_MAX;
        }
    }
}


static void
ngx_http_ragq_sentinel_resolved(ngx_http_ragq_resolve_t *rs, ngx_int_t rc)
{
    ngx_http_ragq_sentinel_t *s = rs->data;
    ngx_http_ragq_peer_t     *peer = ngx_http_ragq_sentinel_peer(s);

    if (rc != NGX_OK) {
        ngx_http_ragq_sentinel_failed(s, "cannot resolve %V: %s", &peer->host,
                                      rs->err);
        return;
    }

    s->conn.quiet = s->quiet;

    if (ngx_http_ragq_conn_connect(&s->conn, peer, rs,
                                   s->conf->tls ? &s->conf->ssl : NULL)
        != NGX_OK)
    {
        ngx_http_ragq_sentinel_failed(s, "connect failed: %V", &s->conn.err);
        return;
    }

    if (ngx_http_ragq_conn_write(&s->conn, s->hello.data, s->hello.len)
            != NGX_OK
        || (s->conf->sentinel_password.len
            && ngx_http_ragq_conn_expect(&s->conn,
                                         ngx_http_ragq_sentinel_auth_reply,
                                         NULL)
                   != NGX_OK)
        || ngx_http_ragq_conn_expect(&s->conn,
                                     ngx_http_ragq_sentinel_master_reply, NULL)
               != NGX_OK)
    {
        ngx_http_ragq_sentinel_failed(s, "out of memory");
    }
}


static void
ngx_http_ragq_sentinel_timeout(ngx_event_t *ev)
{
    ngx_http_ragq_sentinel_t *s = ev->data;

    if (s->state == NGX_HTTP_RAGQ_SENTINEL_ASKING) {
        ngx_http_ragq_sentinel_failed(s, "%V did not answer within %M ms",
                                      &ngx_http_ragq_sentinel_peer(s)->name,
                                      s->conf->connect_timeout);
    }
}


static void
ngx_http_ragq_sentinel_retry(ngx_event_t *ev)
{
    ngx_http_ragq_sentinel_t *s = ev->data;

    if (s->state == NGX_HTTP_RAGQ_SENTINEL_IDLE) {
        ngx_http_ragq_sentinel_ask(s);
    }
}


static void
ngx_http_ragq_sentinel_lost(ngx_http_ragq_conn_t *conn)
{
    ngx_http_ragq_sentinel_t *s = conn->data;

    if (conn->shutdown) {
        s->exiting = 1;
        return;
    }

    if (s->state == NGX_HTTP_RAGQ_SENTINEL_WATCHING) {
        ngx_http_ragq_sentinel_failed(s, "connection lost: %V", &conn->err);
        return;
    }

    ngx_http_ragq_sentinel_failed(s, "connect failed: %V", &conn->err);
}


static void
ngx_http_ragq_sentinel_auth_reply(ngx_http_ragq_conn_t *conn, void *data,
                                  redisReply *reply)
{
    ngx_http_ragq_sentinel_t *s = conn->data;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_ragq_sentinel_failed(s, "%V: AUTH failed: %s", &conn->peer,
                                      reply->str);
    }
}


/* the primary is host:port now; a new one is announced */
static void
ngx_http_ragq_sentinel_set(ngx_http_ragq_sentinel_t *s, u_char *host,
                           size_t hlen, u_char *port, size_t plen,
                           const char *how)
{
    ngx_int_t n;

    n = ngx_atoi(port, plen);

    if (n <= 0 || n > 65535
        || (s->gen && s->primary.peer.port == (in_port_t) n
            && s->primary.peer.host.len == hlen
            && ngx_strncmp(s->primary.peer.host.data, host, hlen) == 0))
    {
        return;
    }

    if (ngx_http_ragq_peer_set(&s->primary, host, hlen, (in_port_t) n)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ragq: valkey sentinel %V announced an invalid primary "
                      "\"%*s\" port \"%*s\"",
                      &s->conn.peer, hlen, host, plen, port);
        return;
    }

    s->gen++;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "ragq: valkey sentinel %V: the primary of \"%V\" is %V (%s)",
                  &s->conn.peer, &s->conf->master, &s->primary.peer.name, how);

    s->changed();
}


static void
ngx_http_ragq_sentinel_master_reply(ngx_http_ragq_conn_t *conn, void *data,
                                    redisReply *reply)
{
    redisReply               *host, *port;
    ngx_http_ragq_sentinel_t *s = conn->data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_ragq_sentinel_failed(s, "%V: SENTINEL failed: %s", &conn->peer,
                                      reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        /* nil: it does not monitor a master of that name */
        ngx_http_ragq_sentinel_failed(s, "%V does not know master \"%V\"",
                                      &conn->peer, &s->conf->master);
        return;
    }

    host = reply->element[0];
    port = reply->element[1];

    if (s->timeout_ev.timer_set) {
        ngx_del_timer(&s->timeout_ev);
    }

    s->state = NGX_HTTP_RAGQ_SENTINEL_WATCHING;
    s->tried = 0;
    s->backoff = NGX_HTTP_RAGQ_SENTINEL_BACKOFF_MIN;

    if (s->err_len) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "ragq: valkey sentinel %V answers again", &conn->peer);
        s->err_len = 0;
        s->quiet = 0;
    }

    ngx_http_ragq_sentinel_set(s, (u_char *) host->str, host->len,
                               (u_char *) port->str, port->len, "asked");
}


/* "+switch-master NAME OLD-IP OLD-PORT NEW-IP NEW-PORT" */
static void
ngx_http_ragq_sentinel_push(ngx_http_ragq_conn_t *conn, void *data,
                            redisReply *reply)
{
    u_char                   *p, *end, *field[5];
    size_t                    len[5];
    ngx_uint_t                n;
    redisReply               *kind, *payload;
    ngx_http_ragq_sentinel_t *s = conn->data;

    kind = reply->element[0];

    if (kind->len != 7 || ngx_strncmp(kind->str, "message", 7) != 0
        || reply->elements < 3 || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    payload = reply->element[2];
    p = (u_char *) payload->str;
    end = p + payload->len;

    for (n = 0; n < 5 && p < end; n++) {
        field[n] = p;

        while (p < end && *p != ' ') {
            p++;
        }

        len[n] = p - field[n];

        while (p < end && *p == ' ') {
            p++;
        }
    }

    if (n != 5 || len[0] != s->conf->master.len
        || ngx_strncmp(field[0], s->conf->master.data, len[0]) != 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "ragq: valkey sentinel %V: +switch-master %*s", &conn->peer,
                  payload->len, payload->str);

    ngx_http_ragq_sentinel_set(s, field[3], len[3], field[4], len[4],
                               "+switch-master");
}
