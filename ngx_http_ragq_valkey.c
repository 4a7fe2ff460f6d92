/*
 * ragq: one pipelined Valkey command connection per nginx worker, shared by
 * every request of that worker. hiredis 0.14's async API is driven by
 * nginx's event loop through a small adapter over ngx_connection_t; connect
 * timeout, watchdog and reconnect backoff are nginx timers because 0.14 has
 * no timeouts of its own. A second (pub/sub) context can reuse the adapter.
 */

#include "ngx_http_ragq_valkey.h"

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
    ngx_http_ragq_vk_state_e     state;
    ngx_event_t                  connect_ev;
    ngx_event_t                  reconnect_ev;
    ngx_event_t                  watchdog_ev;
    ngx_msec_t                   backoff;
    ngx_msec_t                   busy_since;
    ngx_msec_t                   last_progress;
    ngx_uint_t                   inflight;
    ngx_uint_t                   failures;
    unsigned                     exiting : 1;
    unsigned                     initialized : 1;
} ngx_http_ragq_vk_t;


static void ngx_http_ragq_vk_connect(void);
static void ngx_http_ragq_vk_schedule_reconnect(void);
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
static void ngx_http_ragq_vk_connect_timeout(ngx_event_t *ev);
static void ngx_http_ragq_vk_reconnect_handler(ngx_event_t *ev);
static void ngx_http_ragq_vk_watchdog(ngx_event_t *ev);


static ngx_http_ragq_vk_t ngx_http_ragq_vk;


/* an outage is logged as an error once, then its retries quietly */
static ngx_uint_t
ngx_http_ragq_vk_level(void)
{
    return (ngx_http_ragq_vk.failures == 1) ? NGX_LOG_ERR : NGX_LOG_INFO;
}


static ngx_msec_t
ngx_http_ragq_vk_watchdog_period(void)
{
    ngx_msec_t period;

    period = ngx_http_ragq_vk.conf->timeout / 2;

    return period < 20 ? 20 : period;
}


ngx_int_t
ngx_http_ragq_valkey_init(ngx_cycle_t *cycle, ngx_http_ragq_valkey_conf_t *conf)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    ngx_memzero(vk, sizeof(ngx_http_ragq_vk_t));

    vk->conf = conf;
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

    ngx_http_ragq_vk_connect();

    ngx_add_timer(&vk->watchdog_ev, ngx_http_ragq_vk_watchdog_period());

    return NGX_OK;
}


void
ngx_http_ragq_valkey_exit(ngx_cycle_t *cycle)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

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


ngx_int_t
ngx_http_ragq_valkey_available(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (!vk->initialized || vk->ac == NULL || vk->exiting ||
        vk->state == NGX_HTTP_RAGQ_VK_DISCONNECTED) {
        return NGX_DECLINED;
    }

    if (vk->inflight >= NGX_HTTP_RAGQ_MAX_INFLIGHT) {
        return NGX_BUSY;
    }

    return NGX_OK;
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

    if (cell) {
        if (vk->inflight == 0) {
            vk->busy_since = ngx_current_msec;
        }

        vk->inflight++;
    }

    return NGX_OK;
}


static void
ngx_http_ragq_vk_connect(void)
{
    int                          one;
    ngx_connection_t            *c;
    redisAsyncContext           *ac;
    ngx_http_ragq_vk_t          *vk = &ngx_http_ragq_vk;
    ngx_http_ragq_valkey_conf_t *conf = vk->conf;
    const char                  *argv[2];
    size_t                       argvlen[2];
    char                         db[NGX_INT_T_LEN + 1];

    if (conf->unix_path.len) {
        ac = redisAsyncConnectUnix((const char *) conf->unix_path.data);

    } else {
        /* host is an IP literal, so no DNS lookup blocks the loop here */
        ac =
            redisAsyncConnect((const char *) conf->host.data, (int) conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ragq: cannot allocate a valkey context");
        ngx_http_ragq_vk_schedule_reconnect();
        return;
    }

    if (ac->err) {
        vk->failures++;
        ngx_log_error(ngx_http_ragq_vk_level(), ngx_cycle->log, 0,
                      "ragq: valkey connect failed: %s", ac->errstr);
        redisAsyncFree(ac);
        ngx_http_ragq_vk_schedule_reconnect();
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
        ngx_http_ragq_vk_schedule_reconnect();
        return;
    }

    c->data = vk;
    c->read->handler = ngx_http_ragq_vk_read_handler;
    c->write->handler = ngx_http_ragq_vk_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    vk->ac = ac;
    vk->c = c;
    vk->state = NGX_HTTP_RAGQ_VK_CONNECTING;
    vk->inflight = 0;

    ac->ev.data = vk;
    ac->ev.addRead = ngx_http_ragq_vk_add_read;
    ac->ev.delRead = ngx_http_ragq_vk_del_read;
    ac->ev.addWrite = ngx_http_ragq_vk_add_write;
    ac->ev.delWrite = ngx_http_ragq_vk_del_write;
    ac->ev.cleanup = ngx_http_ragq_vk_cleanup;

    /* only after the hooks: setting the callback registers write interest */
    redisAsyncSetConnectCallback(ac, ngx_http_ragq_vk_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_http_ragq_vk_on_disconnect);

    /* the handshake is pipelined ahead of any request's command */
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

    argv[0] = "PING";
    argvlen[0] = 4;
    redisAsyncCommandArgv(ac, ngx_http_ragq_vk_handshake_reply, "PING", 1, argv,
                          argvlen);

    ngx_add_timer(&vk->connect_ev, conf->timeout);
}


static void
ngx_http_ragq_vk_schedule_reconnect(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (vk->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (vk->reconnect_ev.timer_set) {
        return;
    }

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

    if (vk->exiting || ngx_exiting || ngx_quit || ngx_terminate ||
        vk->ac != NULL) {
        return;
    }

    ngx_http_ragq_vk_connect();
}


static void
ngx_http_ragq_vk_connect_timeout(ngx_event_t *ev)
{
    ngx_http_ragq_vk_t *vk = ev->data;

    if (vk->ac == NULL || vk->state == NGX_HTTP_RAGQ_VK_READY) {
        return;
    }

    vk->failures++;
    ngx_log_error(ngx_http_ragq_vk_level(), ngx_cycle->log, 0,
                  "ragq: valkey connect timed out after %M ms",
                  vk->conf->timeout);

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
        ngx_add_timer(&vk->watchdog_ev, ngx_http_ragq_vk_watchdog_period());
    }
}


static void
ngx_http_ragq_vk_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    /*
     * hiredis 0.14 frees the context right after this returns on failure;
     * freeing or reconnecting from here is a use-after-free, so the cleanup
     * hook does the bookkeeping.
     */
    if (status != REDIS_OK) {
        vk->failures++;
        ngx_log_error(ngx_http_ragq_vk_level(), ngx_cycle->log, 0,
                      "ragq: valkey connect failed: %s", ac->errstr);
    }
}


static void
ngx_http_ragq_vk_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    /* no error set: we closed it ourselves and said why already */
    if (vk->exiting || ac->err == 0) {
        return;
    }

    vk->failures++;
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "ragq: valkey connection lost: %s", ac->errstr);
}


static void
ngx_http_ragq_vk_handshake_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply         *reply = r;
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (reply == NULL || vk->ac != ac) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        vk->failures++;
        ngx_log_error(ngx_http_ragq_vk_level(), ngx_cycle->log, 0,
                      "ragq: valkey %s failed: %s", (char *) privdata,
                      reply->str);
        /* deferred by hiredis until this callback returns */
        redisAsyncFree(ac);
        return;
    }

    if (ngx_strcmp(privdata, "PING") == 0) {
        vk->state = NGX_HTTP_RAGQ_VK_READY;
        vk->backoff = NGX_HTTP_RAGQ_BACKOFF_MIN;
        vk->last_progress = ngx_current_msec;

        if (vk->failures) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "ragq: valkey connection restored");
        }

        vk->failures = 0;

        if (vk->connect_ev.timer_set) {
            ngx_del_timer(&vk->connect_ev);
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

    ngx_http_ragq_vk_schedule_reconnect();
}


static void
ngx_http_ragq_vk_read_handler(ngx_event_t *ev)
{
    ngx_connection_t   *c = ev->data;
    ngx_http_ragq_vk_t *vk = c->data;

    if (vk->ac == NULL || vk->c != c) {
        return;
    }

    /* worker_shutdown_timeout closes every connection this way */
    if (c->close) {
        redisAsyncFree(vk->ac);
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
