/*
 * ragq: the per-worker Valkey connections. One pipelined command connection
 * is shared by every request of the worker; a second one is subscribed to
 * the <prefix>:events channels and wakes long-polls (it never sends anything
 * but the handshake and SUBSCRIBE: a subscribed hiredis 0.14 context cannot
 * PING). hiredis 0.14's async API is driven by nginx's event loop through a
 * small adapter over ngx_connection_t; connect timeout, watchdog and
 * reconnect backoff are nginx timers because 0.14 has no timeouts of its own.
 */

#include "ngx_http_ragq_valkey.h"
#include "ngx_http_ragq_resp.h"

#include <hiredis/async.h>
#include <netinet/in.h>
#include <netinet/tcp.h>


#define NGX_HTTP_RAGQ_MAX_INFLIGHT 16384
#define NGX_HTTP_RAGQ_BACKOFF_MIN  50
#define NGX_HTTP_RAGQ_BACKOFF_MAX  1000


typedef enum {
    NGX_HTTP_RAGQ_VK_DISCONNECTED = 0,
    NGX_HTTP_RAGQ_VK_CONNECTING,
    NGX_HTTP_RAGQ_VK_READY
} ngx_http_ragq_vk_state_e;


typedef struct {
    redisAsyncContext           *ac;
    ngx_connection_t            *c;
    ngx_http_ragq_valkey_conf_t *conf;
    ngx_http_ragq_pubsub_t      *pubsub; /* NULL: the command connection */
    const char                  *name;
    ngx_http_ragq_vk_state_e     state;
    ngx_event_t                  connect_ev;
    ngx_event_t                  reconnect_ev;
    ngx_event_t                  watchdog_ev;
    ngx_msec_t                   backoff;
    ngx_msec_t                   busy_since;
    ngx_msec_t                   last_progress;
    ngx_uint_t                   inflight;
    ngx_uint_t                   failures;
    ngx_uint_t                   acks;
    unsigned                     exiting : 1;
    unsigned                     initialized : 1;
} ngx_http_ragq_vk_t;


static void ngx_http_ragq_vk_setup(ngx_http_ragq_vk_t *vk, ngx_cycle_t *cycle,
                                   ngx_http_ragq_valkey_conf_t *conf,
                                   const char                  *name);
static void ngx_http_ragq_vk_close(ngx_http_ragq_vk_t *vk);
static void ngx_http_ragq_vk_connect(ngx_http_ragq_vk_t *vk);
static void ngx_http_ragq_vk_schedule_reconnect(ngx_http_ragq_vk_t *vk);
static void ngx_http_ragq_vk_ready(ngx_http_ragq_vk_t *vk);
static void ngx_http_ragq_vk_add_read(void *data);
static void ngx_http_ragq_vk_del_read(void *data);
static void ngx_http_ragq_vk_add_write(void *data);
static void ngx_http_ragq_vk_del_write(void *data);
static void ngx_http_ragq_vk_cleanup(void *data);
static void ngx_http_ragq_vk_read_handler(ngx_event_t *ev);
static void ngx_http_ragq_vk_write_handler(ngx_event_t *ev);
static void ngx_http_ragq_vk_on_connect(const redisAsyncContext *ac,
                                        int                      status);
static void ngx_http_ragq_vk_on_disconnect(const redisAsyncContext *ac,
                                           int                      status);
static void ngx_http_ragq_vk_handshake_reply(redisAsyncContext *ac, void *r,
                                             void *privdata);
static void ngx_http_ragq_vk_reply(redisAsyncContext *ac, void *r,
                                   void *privdata);
static void ngx_http_ragq_vk_sub_reply(redisAsyncContext *ac, void *r,
                                       void *privdata);
static void ngx_http_ragq_vk_connect_timeout(ngx_event_t *ev);
static void ngx_http_ragq_vk_reconnect_handler(ngx_event_t *ev);
static void ngx_http_ragq_vk_watchdog(ngx_event_t *ev);


static ngx_http_ragq_vk_t ngx_http_ragq_vk;     /* commands */
static ngx_http_ragq_vk_t ngx_http_ragq_vk_sub; /* pub/sub */


/* an outage is logged as an error once, then its retries quietly */
static ngx_uint_t
ngx_http_ragq_vk_level(ngx_http_ragq_vk_t *vk)
{
    return (vk->failures == 1) ? NGX_LOG_ERR : NGX_LOG_INFO;
}


static ngx_msec_t
ngx_http_ragq_vk_watchdog_period(ngx_http_ragq_vk_t *vk)
{
    ngx_msec_t period;

    period = vk->conf->timeout / 2;

    return period < 20 ? 20 : period;
}


static void
ngx_http_ragq_vk_setup(ngx_http_ragq_vk_t *vk, ngx_cycle_t *cycle,
                       ngx_http_ragq_valkey_conf_t *conf, const char *name)
{
    ngx_memzero(vk, sizeof(ngx_http_ragq_vk_t));

    vk->conf = conf;
    vk->name = name;
    vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MIN;

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

    vk->initialized = 1;
}


ngx_int_t
ngx_http_ragq_valkey_init(ngx_cycle_t *cycle, ngx_http_ragq_valkey_conf_t *conf)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    ngx_http_ragq_vk_setup(vk, cycle, conf, "valkey");

    ngx_http_ragq_vk_connect(vk);

    ngx_add_timer(&vk->watchdog_ev, ngx_http_ragq_vk_watchdog_period(vk));

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_pubsub_init(ngx_cycle_t *cycle, ngx_http_ragq_valkey_conf_t *conf,
                          ngx_http_ragq_pubsub_t *pubsub)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk_sub;

    ngx_http_ragq_vk_setup(vk, cycle, conf, "valkey pub/sub");

    vk->pubsub = pubsub;

    /*
     * No watchdog: a subscribed connection legitimately stays silent for
     * hours, and PING is broken on a subscribed hiredis 0.14 context.
     */
    ngx_http_ragq_vk_connect(vk);

    return NGX_OK;
}


static void
ngx_http_ragq_vk_close(ngx_http_ragq_vk_t *vk)
{
    if (!vk->initialized) {
        return;
    }

    vk->exiting = 1;

    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }

    if (vk->reconnect_ev.timer_set) {
        ngx_del_timer(&vk->reconnect_ev);
    }

    if (vk->watchdog_ev.timer_set) {
        ngx_del_timer(&vk->watchdog_ev);
    }

    /* frees the ngx_connection_t through the cleanup hook, so nginx finds
     * no open socket left at exit */
    if (vk->ac) {
        redisAsyncFree(vk->ac);
    }

    vk->initialized = 0;
}


void
ngx_http_ragq_valkey_exit(ngx_cycle_t *cycle)
{
    ngx_http_ragq_vk_close(&ngx_http_ragq_vk_sub);
    ngx_http_ragq_vk_close(&ngx_http_ragq_vk);
}


ngx_int_t
ngx_http_ragq_valkey_available(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (!vk->initialized || vk->ac == NULL || vk->exiting
        || vk->state == NGX_HTTP_RAGQ_VK_DISCONNECTED)
    {
        return NGX_DECLINED;
    }

    if (vk->inflight >= NGX_HTTP_RAGQ_MAX_INFLIGHT) {
        return NGX_BUSY;
    }

    return NGX_OK;
}


ngx_flag_t
ngx_http_ragq_valkey_ready(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    return vk->initialized && !vk->exiting && vk->ac
           && vk->state == NGX_HTTP_RAGQ_VK_READY;
}


ngx_flag_t
ngx_http_ragq_pubsub_ready(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk_sub;

    return vk->initialized && !vk->exiting && vk->ac
           && vk->state == NGX_HTTP_RAGQ_VK_READY && !ngx_exiting;
}


static void
ngx_http_ragq_vk_sent(ngx_http_ragq_vk_t *vk, ngx_http_ragq_cell_t *cell)
{
    if (cell) {
        if (vk->inflight == 0) {
            vk->busy_since = ngx_current_msec;
        }

        vk->inflight++;
    }
}


ngx_int_t
ngx_http_ragq_valkey_command(ngx_http_ragq_cell_t *cell, int argc,
                             const char **argv, const size_t *argvlen)
{
    int                 rc;
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (vk->ac == NULL) {
        return NGX_DECLINED;
    }

    rc = redisAsyncCommandArgv(vk->ac, cell ? ngx_http_ragq_vk_reply : NULL,
                               cell, argc, argv, argvlen);
    if (rc != REDIS_OK) {
        return NGX_ERROR;
    }

    ngx_http_ragq_vk_sent(vk, cell);

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_valkey_send(ngx_http_ragq_cell_t *cell, u_char *cmd, size_t len)
{
    int                 rc;
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (vk->ac == NULL) {
        return NGX_DECLINED;
    }

    rc =
        redisAsyncFormattedCommand(vk->ac, cell ? ngx_http_ragq_vk_reply : NULL,
                                   cell, (const char *) cmd, len);
    if (rc != REDIS_OK) {
        return NGX_ERROR;
    }

    ngx_http_ragq_vk_sent(vk, cell);

    return NGX_OK;
}


/*
 * AUTH, SELECT, then PING (command connection) or one SUBSCRIBE per channel
 * (pub/sub), queued at once: the handshake is pipelined ahead of any
 * request's command.
 */
static void
ngx_http_ragq_vk_handshake(ngx_http_ragq_vk_t *vk, redisAsyncContext *ac)
{
    ngx_uint_t                   i;
    ngx_http_ragq_channel_t     *ch;
    ngx_http_ragq_valkey_conf_t *conf = vk->conf;
    const char                  *argv[2];
    size_t                       argvlen[2];
    char                         db[NGX_INT_T_LEN + 1];

    if (conf->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) conf->password.data;
        argvlen[1] = conf->password.len;
        redisAsyncCommandArgv(ac, ngx_http_ragq_vk_handshake_reply, "AUTH", 2,
                              argv, argvlen);
    }

    if (conf->db > 0) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = db;
        argvlen[1] = ngx_sprintf((u_char *) db, "%i", conf->db) - (u_char *) db;
        redisAsyncCommandArgv(ac, ngx_http_ragq_vk_handshake_reply, "SELECT", 2,
                              argv, argvlen);
    }

    if (vk->pubsub) {
        /* regular replies still come first, so AUTH/SELECT precede these */
        ch = vk->pubsub->channels.elts;

        for (i = 0; i < vk->pubsub->channels.nelts; i++) {
            argv[0] = "SUBSCRIBE";
            argvlen[0] = 9;
            argv[1] = (const char *) ch[i].channel.data;
            argvlen[1] = ch[i].channel.len;
            redisAsyncCommandArgv(ac, ngx_http_ragq_vk_sub_reply, &ch[i], 2,
                                  argv, argvlen);
        }

    } else {
        argv[0] = "PING";
        argvlen[0] = 4;
        redisAsyncCommandArgv(ac, ngx_http_ragq_vk_handshake_reply, "PING", 1,
                              argv, argvlen);
    }
}


static void
ngx_http_ragq_vk_connect(ngx_http_ragq_vk_t *vk)
{
    int                          one;
    ngx_connection_t            *c;
    redisAsyncContext           *ac;
    ngx_http_ragq_valkey_conf_t *conf = vk->conf;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0, "ragq: %s connecting",
                   vk->name);

    if (conf->unix_path.len) {
        ac = redisAsyncConnectUnix((const char *) conf->unix_path.data);

    } else {
        /* host is an IP literal, so no DNS lookup blocks the loop here */
        ac =
            redisAsyncConnect((const char *) conf->host.data, (int) conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ragq: cannot allocate a %s context", vk->name);
        ngx_http_ragq_vk_schedule_reconnect(vk);
        return;
    }

    if (ac->err) {
        vk->failures++;
        ngx_log_error(ngx_http_ragq_vk_level(vk), ngx_cycle->log, 0,
                      "ragq: %s connect failed: %s", vk->name, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_ragq_vk_schedule_reconnect(vk);
        return;
    }

    if (conf->unix_path.len == 0) {
        one = 1;
        (void) setsockopt(ac->c.fd, IPPROTO_TCP, TCP_NODELAY, &one,
                          sizeof(one));
    }

    c = ngx_get_connection(ac->c.fd, ngx_cycle->log);
    if (c == NULL) {
        /* ac has no cleanup hook yet, so hiredis just closes its fd */
        redisAsyncFree(ac);
        ngx_http_ragq_vk_schedule_reconnect(vk);
        return;
    }

    c->data = vk;
    c->read->handler = ngx_http_ragq_vk_read_handler;
    c->write->handler = ngx_http_ragq_vk_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    /*
     * The pub/sub connection is "idle": a graceful shutdown then calls its
     * read handler with c->close at once, and the module answers the
     * long-polls with their current state instead of keeping the old worker
     * alive for up to ragq_max_wait.
     */
    if (vk->pubsub) {
        c->idle = 1;
    }

    ac->data = vk;

    /*
     * Not on the pub/sub connection: nothing there is hot, and the arena
     * serves one reader only.
     */
    if (vk->pubsub == NULL) {
        ngx_http_ragq_resp_arena(ac->c.reader);
    }

    vk->ac = ac;
    vk->c = c;
    vk->state = NGX_HTTP_RAGQ_VK_CONNECTING;
    vk->inflight = 0;
    vk->acks = 0;

    ac->ev.data = vk;
    ac->ev.addRead = ngx_http_ragq_vk_add_read;
    ac->ev.delRead = ngx_http_ragq_vk_del_read;
    ac->ev.addWrite = ngx_http_ragq_vk_add_write;
    ac->ev.delWrite = ngx_http_ragq_vk_del_write;
    ac->ev.cleanup = ngx_http_ragq_vk_cleanup;

    /* only after the hooks: setting the callback registers write interest */
    redisAsyncSetConnectCallback(ac, ngx_http_ragq_vk_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_ragq_vk_on_disconnect);

    ngx_http_ragq_vk_handshake(vk, ac);

    /*
     * Not ragq_valkey_timeout: a connect and handshake may legitimately take
     * longer than a reply on a loaded machine, and requests queued behind it
     * keep their own deadlines anyway.
     */
    ngx_add_timer(&vk->connect_ev, conf->connect_timeout);
}


static void
ngx_http_ragq_vk_schedule_reconnect(ngx_http_ragq_vk_t *vk)
{
    if (vk->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (vk->reconnect_ev.timer_set) {
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
ngx_http_ragq_vk_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->exiting || ngx_exiting || ngx_quit || ngx_terminate
        || vk->ac != NULL)
    {
        return;
    }

    ngx_http_ragq_vk_connect(vk);
}


static void
ngx_http_ragq_vk_connect_timeout(ngx_event_t *ev)
{
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->ac == NULL || vk->state == NGX_HTTP_RAGQ_VK_READY) {
        return;
    }

    vk->failures++;
    ngx_log_error(ngx_http_ragq_vk_level(vk), ngx_cycle->log, 0,
                  "ragq: %s connect timed out after %M ms", vk->name,
                  vk->conf->connect_timeout);

    /* a timer, not a hiredis callback: freeing here is safe */
    redisAsyncFree(vk->ac);
}


static void
ngx_http_ragq_vk_watchdog(ngx_event_t *ev)
{
    ngx_msec_t          since;
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->exiting) {
        return;
    }

    if (vk->ac && vk->state == NGX_HTTP_RAGQ_VK_READY && vk->inflight > 0) {
        since = vk->busy_since;
        if ((ngx_msec_int_t) (vk->last_progress - since) > 0) {
            since = vk->last_progress;
        }

        if (ngx_current_msec - since >= vk->conf->timeout) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "ragq: valkey sent no reply for %M ms with %ui "
                          "commands pending, reconnecting",
                          ngx_current_msec - since, vk->inflight);
            vk->failures = 1;
            redisAsyncFree(vk->ac);
        }
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&vk->watchdog_ev, ngx_http_ragq_vk_watchdog_period(vk));
    }
}


static void
ngx_http_ragq_vk_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_ragq_vk_t *vk = ac->data;

    /*
     * hiredis 0.14 frees the context right after this returns on failure;
     * freeing or reconnecting from here is a use-after-free, so the cleanup
     * hook does the bookkeeping.
     */
    if (status != REDIS_OK) {
        vk->failures++;
        ngx_log_error(ngx_http_ragq_vk_level(vk), ngx_cycle->log, 0,
                      "ragq: %s connect failed: %s", vk->name, ac->errstr);
    }
}


static void
ngx_http_ragq_vk_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_ragq_vk_t *vk = ac->data;

    /* no error set: we closed it ourselves and said why already */
    if (vk->exiting || ac->err == 0) {
        return;
    }

    vk->failures++;
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "ragq: %s connection lost: %s", vk->name, ac->errstr);
}


static void
ngx_http_ragq_vk_ready(ngx_http_ragq_vk_t *vk)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0, "ragq: %s ready",
                   vk->name);

    vk->state = NGX_HTTP_RAGQ_VK_READY;
    vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MIN;
    vk->last_progress = ngx_current_msec;

    if (vk->failures) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "ragq: %s connection restored", vk->name);
    }

    vk->failures = 0;

    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }
}


static void
ngx_http_ragq_vk_handshake_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply         *reply = r;
    ngx_http_ragq_vk_t *vk = ac->data;
    ngx_http_ragq_vk_t *sub;

    if (reply == NULL || vk->ac != ac) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        vk->failures++;
        ngx_log_error(ngx_http_ragq_vk_level(vk), ngx_cycle->log, 0,
                      "ragq: %s %s failed: %s", vk->name, (char *) privdata,
                      reply->str);
        /* deferred by hiredis until this callback returns */
        redisAsyncFree(ac);
        return;
    }

    if (ngx_strcmp(privdata, "PING") == 0) {
        ngx_http_ragq_vk_ready(vk);

        /*
         * The catch-up after a resubscribe needs this connection; when it
         * came back later than the subscription, catch up again.
         */
        sub = &ngx_http_ragq_vk_sub;

        if (sub->initialized && !sub->exiting && sub->ac
            && sub->state == NGX_HTTP_RAGQ_VK_READY)
        {
            sub->pubsub->ready(sub->pubsub);
        }
    }
}


/*
 * The channel callback: hiredis 0.14 routes both the subscribe
 * acknowledgements and the messages here (and NULL when the context dies).
 */
static void
ngx_http_ragq_vk_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply              *reply = r;
    redisReply              *kind, *payload;
    ngx_http_ragq_vk_t      *vk = ac->data;
    ngx_http_ragq_channel_t *ch = privdata;

    if (reply == NULL || vk->ac != ac || vk->exiting) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = reply->element[0];

    if (kind->len == 9
        && ngx_strncasecmp((u_char *) kind->str, (u_char *) "subscribe", 9)
               == 0)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "ragq: %s subscribed to %V", vk->name, &ch->channel);

        if (++vk->acks == vk->pubsub->channels.nelts) {
            ngx_http_ragq_vk_ready(vk);

            /* whatever happened while we were not listening */
            vk->pubsub->ready(vk->pubsub);
        }

        return;
    }

    if (kind->len == 7
        && ngx_strncasecmp((u_char *) kind->str, (u_char *) "message", 7) == 0)
    {
        payload = reply->element[2];

        if (payload->type == REDIS_REPLY_STRING) {
            vk->pubsub->message(vk->pubsub, ch, (u_char *) payload->str,
                                payload->len);
        }
    }
}


static void
ngx_http_ragq_vk_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_ragq_cell_t *cell = privdata;
    ngx_http_ragq_vk_t   *vk = &ngx_http_ragq_vk;

    vk->inflight--;
    vk->last_progress = ngx_current_msec;

    if (vk->exiting) {
        /* the process is going away: release the request, answer nothing */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "ragq: reply dropped, the worker is exiting");

        if (cell->request) {
            if (cell->cleanup) {
                cell->cleanup->handler = NULL;
            }

            if (cell->deadline.timer_set) {
                ngx_del_timer(&cell->deadline);
            }
        }

    } else {
        cell->handler(cell, r);
    }

    ngx_free(cell);
}


static void
ngx_http_ragq_vk_add_read(void *data)
{
    ngx_http_ragq_vk_t *vk = data;

    /*
     * Level-triggered: hiredis reads at most 16 KiB per call, and epoll keeps
     * reporting a socket that still holds data, so no reply is stranded.
     */
    if (vk->c && !vk->c->read->active) {
        (void) ngx_add_event(vk->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_ragq_vk_del_read(void *data)
{
    ngx_http_ragq_vk_t *vk = data;

    if (vk->c && vk->c->read->active) {
        (void) ngx_del_event(vk->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_ragq_vk_add_write(void *data)
{
    ngx_http_ragq_vk_t *vk = data;

    if (vk->c && !vk->c->write->active) {
        (void) ngx_add_event(vk->c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_ragq_vk_del_write(void *data)
{
    ngx_http_ragq_vk_t *vk = data;

    if (vk->c && vk->c->write->active) {
        (void) ngx_del_event(vk->c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_ragq_vk_cleanup(void *data)
{
    ngx_connection_t   *c;
    ngx_http_ragq_vk_t *vk = data;

    c = vk->c;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: %s closed, %ui replies pending", vk->name,
                   vk->inflight);

    /*
     * ngx_close_connection() minus the close(): hiredis closes the fd right
     * after this hook, and closing it twice could hit a reused descriptor.
     */
    if (c) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        c->read->closed = 1;
        c->write->closed = 1;

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
    }

    vk->c = NULL;
    vk->ac = NULL;
    vk->state = NGX_HTTP_RAGQ_VK_DISCONNECTED;
    vk->inflight = 0;

    if (vk->connect_ev.timer_set) {
        ngx_del_timer(&vk->connect_ev);
    }

    ngx_http_ragq_vk_schedule_reconnect(vk);
}


static void
ngx_http_ragq_vk_read_handler(ngx_event_t *ev)
{
    ngx_connection_t   *c = ev->data;
    ngx_http_ragq_vk_t *vk = c->data;

    if (vk->ac == NULL || vk->c != c) {
        return;
    }

    /*
     * A graceful shutdown closes idle connections this way (the pub/sub one
     * is idle), and worker_shutdown_timeout every connection.
     */
    if (c->close) {
        if (vk->pubsub && !vk->exiting) {
            vk->exiting = 1;
            vk->pubsub->closing(vk->pubsub);
        }

        if (vk->ac) {
            redisAsyncFree(vk->ac);
        }

        return;
    }

    redisAsyncHandleRead(vk->ac);
}


static void
ngx_http_ragq_vk_write_handler(ngx_event_t *ev)
{
    ngx_connection_t   *c = ev->data;
    ngx_http_ragq_vk_t *vk = c->data;

    if (vk->ac == NULL || vk->c != c) {
        return;
    }

    if (c->close) {
        redisAsyncFree(vk->ac);
        return;
    }

    redisAsyncHandleWrite(vk->ac);
}
