/*
 * ragq: the per-worker Valkey connections and their lifecycle. The command
 * connection carries every request's commands, pipelined; the writes
 * connection (only with ragq_valkey_replicas) carries the new jobs and the
 * WAITs that confirm them (ngx_http_ragq_replicas.c), so that a WAIT held
 * up by a missing replica never delays a /job-status read; the pub/sub
 * connection is subscribed to the <prefix>:events channels. Each one:
 * where the primary is (the configured address, re-resolved when a
 * resolver is set, or the sentinels' answer), connect (ngx_http_ragq_conn.c
 * owns socket, TLS and parsing), the handshake (AUTH, SELECT, ROLE must say
 * master, SUBSCRIBE), the watchdog, reconnects with backoff, and one log
 * line per change of state. Requests hand their commands in with a cell.
 */

#include "ngx_http_ragq_valkey.h"
#include "ngx_http_ragq_valkey_int.h"
#include "ngx_http_ragq_sentinel.h"


#define NGX_HTTP_RAGQ_BACKOFF_MIN 50
#define NGX_HTTP_RAGQ_BACKOFF_MAX 1000

/* how often a pub/sub connection without a socket looks for a shutdown */
#define NGX_HTTP_RAGQ_SHUTDOWN_CHECK 100


static void ngx_http_ragq_vk_connect(ngx_http_ragq_vk_t *vk);
static void ngx_http_ragq_vk_resolved(ngx_http_ragq_resolve_t *rs,
                                      ngx_int_t                rc);
static void ngx_http_ragq_vk_lost(ngx_http_ragq_conn_t *conn);
static void ngx_http_ragq_vk_hello_reply(ngx_http_ragq_conn_t *conn, void *data,
                                         redisReply *reply);
static void ngx_http_ragq_vk_role_reply(ngx_http_ragq_conn_t *conn, void *data,
                                        redisReply *reply);
static void ngx_http_ragq_vk_connect_timeout(ngx_event_t *ev);
static void ngx_http_ragq_vk_reconnect_handler(ngx_event_t *ev);
static void ngx_http_ragq_vk_watchdog(ngx_event_t *ev);
static void ngx_http_ragq_vk_shutdown_check(ngx_event_t *ev);
static void ngx_http_ragq_vk_watch_shutdown(ngx_http_ragq_vk_t *vk);
static void ngx_http_ragq_vk_primary_changed(void);


/* per worker */
ngx_http_ragq_vk_t ngx_http_ragq_vk;     /* commands */
ngx_http_ragq_vk_t ngx_http_ragq_vk_wr;  /* writes, with WAIT */
ngx_http_ragq_vk_t ngx_http_ragq_vk_sub; /* pub/sub */


static ngx_msec_t
ngx_http_ragq_vk_watchdog_period(ngx_http_ragq_vk_t *vk)
{
    ngx_msec_t period;

    period = vk->conf->timeout / 2;

    return period < 20 ? 20 : period;
}


/* AUTH, SELECT and ROLE in RESP form: the start of every handshake */
static ngx_int_t
ngx_http_ragq_vk_hello_init(ngx_cycle_t *cycle, ngx_http_ragq_vk_t *vk)
{
    u_char                      *p;
    size_t                       len;
    ngx_uint_t                   i;
    ngx_http_ragq_channel_t     *ch;
    ngx_http_ragq_valkey_conf_t *conf = vk->conf;
    u_char                       db[NGX_INT_T_LEN];

    ch = NULL;
    len = 64 + conf->user.len + conf->password.len + NGX_INT_T_LEN;

    if (vk->pubsub) {
        ch = vk->pubsub->channels.elts;

        for (i = 0; i < vk->pubsub->channels.nelts; i++) {
            len += NGX_HTTP_RAGQ_RESP_HEAD_MAX + 2 + ch[i].channel.len;
        }

        len += 32;
    }

    p = ngx_pnalloc(cycle->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    vk->hello.data = p;

    if (conf->password.len) {
        /* AUTH user password: an ACL user (Valkey 6+); else "default" */
        if (conf->user.len) {
            p = ngx_http_ragq_lit(p, "*3\r\n$4\r\nAUTH\r\n");
            p = ngx_http_ragq_resp_bulk(p, conf->user.data, conf->user.len);
        } else {
            p = ngx_http_ragq_lit(p, "*2\r\n$4\r\nAUTH\r\n");
        }

        p = ngx_http_ragq_resp_bulk(p, conf->password.data, conf->password.len);
    }

    if (conf->db > 0) {
        p = ngx_http_ragq_lit(p, "*2\r\n$6\r\nSELECT\r\n");
        p = ngx_http_ragq_resp_bulk(p, db,
                                    ngx_http_ragq_resp_uint(db, conf->db) - db);
    }

    p = ngx_http_ragq_lit(p, "*1\r\n$4\r\nROLE\r\n");

    if (vk->pubsub) {
        /* acknowledged by one push reply per channel */
        *p++ = '*';
        p = ngx_http_ragq_resp_uint(p, vk->pubsub->channels.nelts + 1);
        p = ngx_http_ragq_lit(p, "\r\n$9\r\nSUBSCRIBE\r\n");

        for (i = 0; i < vk->pubsub->channels.nelts; i++) {
            p = ngx_http_ragq_resp_bulk(p, ch[i].channel.data,
                                        ch[i].channel.len);
        }
    }

    vk->hello.len = p - vk->hello.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ragq_vk_setup(ngx_http_ragq_vk_t *vk, ngx_cycle_t *cycle,
                       ngx_http_ragq_valkey_conf_t *conf,
                       ngx_http_ragq_pubsub_t *pubsub, const char *name)
{
    ngx_memzero(vk, sizeof(ngx_http_ragq_vk_t));

    vk->conf = conf;
    vk->pubsub = pubsub;
    vk->name = name;
    vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MIN;

    vk->conn.data = vk;
    vk->conn.lost = ngx_http_ragq_vk_lost;

    if (pubsub) {
        vk->conn.push = ngx_http_ragq_pubsub_push;

        /*
         * "Idle": a graceful shutdown closes it at once, and the module
         * answers the long-polls with their current state instead of
         * keeping the old worker alive for up to ragq_max_wait.
         */
        vk->conn.idle = 1;
    }

    vk->rs.handler = ngx_http_ragq_vk_resolved;
    vk->rs.data = vk;

    /*
     * Connection timers are cancelable so that a graceful shutdown does not
     * wait for them; requests hold their own non-cancelable deadlines.
     */
    vk->connect_ev.handler = ngx_http_ragq_vk_connect_timeout;
    vk->connect_ev.log = cycle->log;
    vk->connect_ev.data = vk;
    vk->connect_ev.cancelable = 1;

    vk->reconnect_ev.handler = ngx_http_ragq_vk_reconnect_handler;
    vk->reconnect_ev.log = cycle->log;
    vk->reconnect_ev.data = vk;
    vk->reconnect_ev.cancelable = 1;

    vk->watchdog_ev.handler = ngx_http_ragq_vk_watchdog;
    vk->watchdog_ev.log = cycle->log;
    vk->watchdog_ev.data = vk;
    vk->watchdog_ev.cancelable = 1;

    /* not cancelable: see ngx_http_ragq_vk_shutdown_check() */
    vk->shutdown_ev.handler = ngx_http_ragq_vk_shutdown_check;
    vk->shutdown_ev.log = cycle->log;
    vk->shutdown_ev.data = vk;

    if (ngx_http_ragq_vk_hello_init(cycle, vk) != NGX_OK) {
        return NGX_ERROR;
    }

    vk->initialized = 1;

    return NGX_OK;
}


static void
ngx_http_ragq_vk_start(ngx_http_ragq_vk_t *vk)
{
    ngx_http_ragq_vk_connect(vk);

    ngx_add_timer(&vk->watchdog_ev, ngx_http_ragq_vk_watchdog_period(vk));

    ngx_http_ragq_vk_watch_shutdown(vk);
}


ngx_int_t
ngx_http_ragq_valkey_init(ngx_cycle_t *cycle, ngx_http_ragq_valkey_conf_t *conf)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (conf->sentinels
        && ngx_http_ragq_sentinel_init(cycle, conf,
                                       ngx_http_ragq_vk_primary_changed)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_ragq_vk_setup(vk, cycle, conf, NULL, "valkey") != NGX_OK) {
        return NGX_ERROR;
    }

    /* only the command connection's replies are hot: the arena is its */
    vk->conn.arena = 1;

    ngx_http_ragq_vk_start(vk);

    if (conf->replicas == 0) {
        return NGX_OK;
    }

    vk = &ngx_http_ragq_vk_wr;

    if (ngx_http_ragq_vk_setup(vk, cycle, conf, NULL, "valkey writes")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    vk->writes = 1;
    vk->conn.flush = ngx_http_ragq_replicas_flush;

    ngx_http_ragq_vk_start(vk);

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_pubsub_init(ngx_cycle_t *cycle, ngx_http_ragq_valkey_conf_t *conf,
                          ngx_http_ragq_pubsub_t *pubsub)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk_sub;

    if (ngx_http_ragq_vk_setup(vk, cycle, conf, pubsub, "valkey pub/sub")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_ragq_vk_start(vk);

    return NGX_OK;
}


static void
ngx_http_ragq_vk_close(ngx_http_ragq_vk_t *vk)
{
    if (!vk->initialized) {
        return;
    }

    vk->exiting = 1;
    vk->closed = 1;

    ngx_http_ragq_vk_stall_end(vk, "connection closed at exit");

    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }

    if (vk->reconnect_ev.timer_set) {
        ngx_del_timer(&vk->reconnect_ev);
    }

    if (vk->watchdog_ev.timer_set) {
        ngx_del_timer(&vk->watchdog_ev);
    }

    if (vk->shutdown_ev.timer_set) {
        ngx_del_timer(&vk->shutdown_ev);
    }

    ngx_http_ragq_peer_resolve_cancel(&vk->rs);

    /* pending cells are released unanswered; nginx finds no open socket */
    ngx_http_ragq_conn_free(&vk->conn);
    ngx_http_ragq_replicas_exit(vk);

    vk->state = NGX_HTTP_RAGQ_VK_DISCONNECTED;
    vk->initialized = 0;
}


void
ngx_http_ragq_valkey_exit(ngx_cycle_t *cycle)
{
    ngx_http_ragq_vk_close(&ngx_http_ragq_vk_sub);
    ngx_http_ragq_vk_close(&ngx_http_ragq_vk_wr);
    ngx_http_ragq_vk_close(&ngx_http_ragq_vk);
    ngx_http_ragq_sentinel_exit();
}


/* ---- connecting ---- */


static ngx_flag_t
ngx_http_ragq_vk_stopping(ngx_http_ragq_vk_t *vk)
{
    return vk->exiting || ngx_exiting || ngx_quit || ngx_terminate;
}


static void
ngx_http_ragq_vk_schedule_reconnect(ngx_http_ragq_vk_t *vk)
{
    if (ngx_http_ragq_vk_stopping(vk) || vk->reconnect_ev.timer_set) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: %s reconnects in %M ms", vk->name, vk->backoff);

    ngx_add_timer(&vk->reconnect_ev, vk->backoff);

    vk->backoff *= 2;
    if (vk->backoff > NGX_HTTP_RAGQ_BACKOFF_MAX) {
        vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MAX;
    }
}


static void
ngx_http_ragq_vk_connect(ngx_http_ragq_vk_t *vk)
{
    ngx_int_t             rc;
    ngx_http_ragq_peer_t *peer;

    if (ngx_http_ragq_vk_stopping(vk)) {
        return;
    }

    if (vk->conf->sentinels) {
        if (ngx_http_ragq_sentinel_primary(&peer, &vk->gen) != NGX_OK) {
            /* ngx_http_ragq_vk_primary_changed() starts it */
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                           "ragq: %s waits for the sentinels", vk->name);
            vk->state = NGX_HTTP_RAGQ_VK_DISCONNECTED;
            return;
        }

    } else {
        peer = &vk->conf->peer;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: %s connecting to %V", vk->name, &peer->name);

    vk->peer = peer;
    vk->state = NGX_HTTP_RAGQ_VK_RESOLVING;
    vk->role_ok = 0;
    vk->acks = 0;
    vk->connects++;
    vk->ping = 0;

    /*
     * Not ragq_valkey_timeout: resolving, connecting, TLS and the handshake
     * may take longer than a reply on a loaded machine, and requests queued
     * behind them keep their own deadlines anyway.
     */
    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }

    ngx_add_timer(&vk->connect_ev, vk->conf->connect_timeout);

    rc = ngx_http_ragq_peer_resolve(peer, &vk->rs);

    if (rc != NGX_AGAIN) {
        ngx_http_ragq_vk_resolved(&vk->rs, rc);
    }
}


static void
ngx_http_ragq_vk_resolved(ngx_http_ragq_resolve_t *rs, ngx_int_t rc)
{
    ngx_http_ragq_vk_t *vk = rs->data;

    if (rc != NGX_OK) {
        ngx_http_ragq_vk_fail(vk, NULL, "cannot resolve %V: %s",
                              &vk->peer->host, rs->err);
        return;
    }

    vk->conn.quiet = vk->quiet;

    if (ngx_http_ragq_conn_connect(&vk->conn, vk->peer, rs, &vk->conf->ssl)
        != NGX_OK)
    {
        ngx_http_ragq_vk_fail(vk, NULL, "connect failed: %V", &vk->conn.err);
        return;
    }

    vk->state = NGX_HTTP_RAGQ_VK_CONNECTING;

    /* AUTH, SELECT, ROLE (+ SUBSCRIBE) go first; requests may follow now */
    if (ngx_http_ragq_conn_write(&vk->conn, vk->hello.data, vk->hello.len)
            != NGX_OK
        || (vk->conf->password.len
            && ngx_http_ragq_conn_expect(&vk->conn,
                                         ngx_http_ragq_vk_hello_reply, "AUTH")
                   != NGX_OK)
        || (vk->conf->db > 0
            && ngx_http_ragq_conn_expect(&vk->conn,
                                         ngx_http_ragq_vk_hello_reply, "SELECT")
                   != NGX_OK)
        || ngx_http_ragq_conn_expect(&vk->conn, ngx_http_ragq_vk_role_reply,
                                     NULL)
               != NGX_OK)
    {
        ngx_http_ragq_vk_fail(vk, NULL, "out of memory");
        return;
    }

    vk->busy_since = ngx_current_msec;
}


static void
ngx_http_ragq_vk_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->state == NGX_HTTP_RAGQ_VK_DISCONNECTED) {
        ngx_http_ragq_vk_connect(vk);
    }
}


static void
ngx_http_ragq_vk_connect_timeout(ngx_event_t *ev)
{
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->state == NGX_HTTP_RAGQ_VK_READY
        || vk->state == NGX_HTTP_RAGQ_VK_DISCONNECTED)
    {
        return;
    }

    ngx_http_ragq_vk_fail(vk, NULL, "connect timed out after %M ms",
                          vk->conf->connect_timeout);
}


/* the sentinels name another primary: every connection follows now */
static void
ngx_http_ragq_vk_primary_changed(void)
{
    ngx_uint_t            i, gen;
    ngx_http_ragq_vk_t   *vk;
    ngx_http_ragq_peer_t *peer;
    ngx_http_ragq_vk_t   *all[3];

    if (ngx_http_ragq_sentinel_primary(&peer, &gen) != NGX_OK) {
        return;
    }

    all[0] = &ngx_http_ragq_vk;
    all[1] = &ngx_http_ragq_vk_wr;
    all[2] = &ngx_http_ragq_vk_sub;

    for (i = 0; i < 3; i++) {
        vk = all[i];

        if (!vk->initialized || ngx_http_ragq_vk_stopping(vk)) {
            continue;
        }

        if (vk->state != NGX_HTTP_RAGQ_VK_DISCONNECTED && vk->gen == gen) {
            continue;
        }

        if (vk->state != NGX_HTTP_RAGQ_VK_DISCONNECTED) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "ragq: %s moves to the new primary %V", vk->name,
                          &peer->name);
            ngx_http_ragq_vk_drop(vk, NULL);
        }

        if (vk->reconnect_ev.timer_set) {
            ngx_del_timer(&vk->reconnect_ev);
        }

        vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MIN;

        ngx_http_ragq_vk_connect(vk);
    }
}


/* ---- failures ---- */


/*
 * The end of a stall: one line for every request that timed out in it,
 * whose first alone was logged at error. how: NULL when the connection
 * answered a waiting request again, else what became of it.
 */
void
ngx_http_ragq_vk_stall_end(ngx_http_ragq_vk_t *vk, const char *how)
{
    ngx_msec_t ms;
    ngx_uint_t n;

    n = vk->stalled;

    if (n == 0) {
        return;
    }

    vk->stalled = 0;
    ms = ngx_current_msec - vk->stall_since;

    if (how == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "ragq: %s answered in time again after %M ms; "
                      "%ui request%s timed out meanwhile",
                      vk->name, ms, n, n == 1 ? "" : "s");
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "ragq: %s %s after %M ms without an answer in time; "
                  "%ui request%s timed out meanwhile",
                  vk->name, how, ms, n, n == 1 ? "" : "s");
}


/* closes the connection, whose pending cells get NULL (down says why) */
void
ngx_http_ragq_vk_drop(ngx_http_ragq_vk_t               *vk,
                      const ngx_http_ragq_resp_error_t *down)
{
    ngx_http_ragq_vk_stall_end(vk, "connection closed");

    vk->state = NGX_HTTP_RAGQ_VK_DISCONNECTED;
    vk->down = down;

    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }

    ngx_http_ragq_peer_resolve_cancel(&vk->rs);
    ngx_http_ragq_conn_close(&vk->conn);

    ngx_http_ragq_vk_watch_shutdown(vk);
}


/*
 * The connection failed or cannot go on: logged once per change of state
 * (at error, its repeats at info), dropped, and retried with backoff; with
 * Sentinel the primary is asked for again.
 */
void
ngx_http_ragq_vk_fail(ngx_http_ragq_vk_t               *vk,
                      const ngx_http_ragq_resp_error_t *down, const char *fmt,
                      ...)
{
    u_char    *p;
    size_t     len;
    va_list    args;
    ngx_uint_t level;
    u_char     msg[sizeof(vk->err)];

    if (vk->exiting) {
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    len = p - msg;

    if (len == vk->err_len && ngx_memcmp(msg, vk->err, len) == 0) {
        level = NGX_LOG_INFO;
        vk->quiet = 1;

    } else {
        level = NGX_LOG_ERR;

        /* nginx's own lines about the next attempt tell the details once */
        vk->quiet = !vk->conn.quiet;

        ngx_memcpy(vk->err, msg, len);
        vk->err_len = len;
    }

    ngx_log_error(level, ngx_cycle->log, 0, "ragq: %s %*s", vk->name, len, msg);

    vk->failed = 1;

    ngx_http_ragq_vk_drop(vk, down);

    if (vk->conf->sentinels && (down == NULL || down->reconnect)) {
        ngx_http_ragq_sentinel_stale(vk->gen);
    }

    ngx_http_ragq_vk_schedule_reconnect(vk);
}


/* the transport lost the connection (or nginx closes it for shutdown) */
static void
ngx_http_ragq_vk_lost(ngx_http_ragq_conn_t *conn)
{
    ngx_http_ragq_vk_t *vk = conn->data;

    if (conn->shutdown) {
        if (vk->pubsub && !vk->exiting) {
            vk->exiting = 1;
            vk->pubsub->closing(vk->pubsub);
        }

        /* no reconnect; whoever holds a pending cell hears NULL */
        vk->exiting = 1;
        ngx_http_ragq_vk_drop(vk, NULL);
        return;
    }

    if (vk->state == NGX_HTTP_RAGQ_VK_READY) {
        ngx_http_ragq_vk_fail(vk, NULL, "connection lost: %V", &conn->err);

    } else {
        ngx_http_ragq_vk_fail(vk, NULL, "connect failed: %V", &conn->err);
    }
}


/* ---- graceful shutdown ---- */


/*
 * A graceful shutdown closes the pub/sub connection at once (it is "idle"),
 * and its closing() answers the long-polls and ends the streams. While the
 * connection has no socket (a reconnect's backoff, resolving, waiting for
 * the sentinels), nginx has nothing of ours to close, and would keep the
 * long-polls until their wait ends and cut the streams without "retry:"
 * when the worker exits: this timer looks for the shutdown instead. It is
 * not cancelable, so that the worker runs it before it exits.
 */
static void
ngx_http_ragq_vk_watch_shutdown(ngx_http_ragq_vk_t *vk)
{
    if (vk->pubsub == NULL || vk->exiting || vk->conn.c
        || vk->shutdown_ev.timer_set)
    {
        return;
    }

    ngx_add_timer(&vk->shutdown_ev,
                  ngx_exiting ? 0 : NGX_HTTP_RAGQ_SHUTDOWN_CHECK);
}


static void
ngx_http_ragq_vk_shutdown_check(ngx_event_t *ev)
{
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->exiting || vk->conn.c) {
        /* closed already, or nginx can close the socket itself */
        return;
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_RAGQ_SHUTDOWN_CHECK);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: %s shutting down while disconnected", vk->name);

    vk->exiting = 1;
    vk->pubsub->closing(vk->pubsub);

    /* no connect in progress: the resolver and its timer go too */
    ngx_http_ragq_vk_drop(vk, NULL);
}


/* ---- the handshake ---- */


void
ngx_http_ragq_vk_ready(ngx_http_ragq_vk_t *vk)
{
    ngx_http_ragq_vk_t *sub;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0, "ragq: %s ready (%V)",
                   vk->name, &vk->conn.peer);

    vk->state = NGX_HTTP_RAGQ_VK_READY;
    vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MIN;
    vk->down = NULL;

    if (vk->failed) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "ragq: %s connection restored (%V)", vk->name,
                      &vk->conn.peer);
    }

    vk->failed = 0;
    vk->quiet = 0;
    vk->err_len = 0;

    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }

    sub = &ngx_http_ragq_vk_sub;

    /*
     * The catch-up after a resubscription needs the command connection;
     * when that comes back later than the subscription, catch up again.
     */
    if ((vk->pubsub || vk == &ngx_http_ragq_vk) && sub->initialized
        && !sub->exiting && sub->state == NGX_HTTP_RAGQ_VK_READY
        && ngx_http_ragq_vk.state == NGX_HTTP_RAGQ_VK_READY)
    {
        sub->pubsub->ready(sub->pubsub);
    }
}


static void
ngx_http_ragq_vk_hello_reply(ngx_http_ragq_conn_t *conn, void *data,
                             redisReply *reply)
{
    ngx_http_ragq_vk_t               *vk = conn->data;
    const ngx_http_ragq_resp_error_t *down;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    down = ngx_http_ragq_resp_error(reply->str, reply->len);

    if (down == &ngx_http_ragq_resp_internal) {
        /* e.g. "ERR DB index is out of range" */
        down = &ngx_http_ragq_resp_misconfigured;
    }

    ngx_http_ragq_vk_fail(vk, down, "%s failed: %s", (char *) data, reply->str);
}


static void
ngx_http_ragq_vk_role_reply(ngx_http_ragq_conn_t *conn, void *data,
                            redisReply *reply)
{
    redisReply         *role;
    ngx_http_ragq_vk_t *vk = conn->data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /*
         * A user without +role, or a service that hides ROLE: the writes
         * will still say READONLY on a replica, so go on, and say so once.
         */
        if (!vk->role_warned) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "ragq: %s cannot check that %V is the primary: "
                          "ROLE failed: %s",
                          vk->name, &conn->peer, reply->str);
            vk->role_warned = 1;
        }

    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
               || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        ngx_http_ragq_vk_fail(vk, &ngx_http_ragq_resp_internal,
                              "%V answered ROLE with something unexpected",
                              &conn->peer);
        return;

    } else {
        role = reply->element[0];

        if (role->len != 6 || ngx_strncmp(role->str, "master", 6) != 0) {
            /* its answers could be stale, and its writes fail: not this */
            ngx_http_ragq_vk_fail(vk, &ngx_http_ragq_resp_readonly,
                                  "%V is not the primary (ROLE: %s)",
                                  &conn->peer, role->str);
            return;
        }
    }

    vk->role_ok = 1;

    if (vk->pubsub == NULL || vk->acks == vk->pubsub->channels.nelts) {
        ngx_http_ragq_vk_ready(vk);
    }
}


/* ---- the watchdog ---- */


/*
 * How long a connection with replies pending has been silent: since the
 * last byte read (a big reply may stream in slowly), or since the first
 * command sent after it had nothing pending.  The watchdog and the stall
 * log count alike.
 */
ngx_msec_t
ngx_http_ragq_vk_silent_since(ngx_http_ragq_vk_t *vk)
{
    if ((ngx_msec_int_t) (vk->conn.last_read - vk->busy_since) > 0) {
        return vk->conn.last_read;
    }

    return vk->busy_since;
}


static void
ngx_http_ragq_vk_watchdog(ngx_event_t *ev)
{
    ngx_msec_t            since, limit;
    ngx_http_ragq_vk_t   *vk = ev->data;
    ngx_http_ragq_conn_t *conn = &vk->conn;

    if (vk->exiting) {
        return;
    }

    if (vk->state == NGX_HTTP_RAGQ_VK_READY && vk->pubsub) {
        /*
         * A subscriber hears nothing when nothing happens: a PING (a pong
         * push on a subscribed connection) tells a quiet server from a
         * dead one.
         */
        if (vk->ping && (ngx_msec_int_t) (conn->last_read - vk->ping_at) >= 0) {
            vk->ping = 0;
        }

        if (vk->ping) {
            if (ngx_current_msec - vk->ping_at >= vk->conf->timeout) {
                ngx_http_ragq_vk_fail(vk, NULL,
                                      "sent no pong for %M ms, reconnecting",
                                      ngx_current_msec - vk->ping_at);
            }

        } else if (ngx_current_msec - conn->last_read >= vk->conf->timeout
                   && ngx_http_ragq_conn_write(
                          conn, (u_char *) "*1\r\n$4\r\nPING\r\n", 14)
                          == NGX_OK)
        {
            vk->ping = 1;
            vk->ping_at = ngx_current_msec;
        }

    } else if (vk->state == NGX_HTTP_RAGQ_VK_READY
               && ngx_http_ragq_conn_pending(conn) > 0)
    {
        since = ngx_http_ragq_vk_silent_since(vk);

        /* a WAIT may keep the server quiet for its own timeout */
        limit = vk->conf->timeout + (vk->wait_out ? vk->wait_timeout : 0);

        if (ngx_current_msec - since >= limit) {
            /*
             * The requests waiting here timed out, whether their own timer
             * or this one fired first: they are answered valkey_timeout.
             */
            ngx_http_ragq_vk_fail(vk, &ngx_http_ragq_resp_timeout,
                                  "sent no reply for %M ms with %ui "
                                  "commands pending, reconnecting",
                                  ngx_current_msec - since,
                                  ngx_http_ragq_conn_pending(conn));
        }
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&vk->watchdog_ev, ngx_http_ragq_vk_watchdog_period(vk));
    }
}
