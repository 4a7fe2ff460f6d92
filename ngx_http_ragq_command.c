/*
 * ragq: what requests hand to Valkey and get back. A cell's command goes
 * onto the command connection, or onto the writes connection when it must
 * reach replicas (ngx_http_ragq_replicas.c); its reply comes back to the
 * cell, with the real error instead of EXECABORT and the connection
 * dropped when the server cannot serve us any more (READONLY). Messages of
 * the pub/sub connection go to the channel they name. The connections
 * themselves live in ngx_http_ragq_valkey.c.
 */

#include "ngx_http_ragq_valkey_int.h"


#define NGX_HTTP_RAGQ_MAX_INFLIGHT 16384

/*
 * Commands written and not taken by the socket: a server that reads
 * nothing (stopped, a fork stall, a black hole) while requests keep coming
 * would grow the output buffer by every command of the requests that timed
 * out meanwhile, until the watchdog drops the connection; past this, new
 * commands are refused (503 overloaded) instead.
 */
#define NGX_HTTP_RAGQ_MAX_UNSENT (16 * 1024 * 1024)


static void ngx_http_ragq_vk_skip_reply(ngx_http_ragq_conn_t *conn, void *data,
                                        redisReply *reply);
static void ngx_http_ragq_vk_cell_reply(ngx_http_ragq_conn_t *conn, void *data,
                                        redisReply *reply);


/* ---- commands ---- */


/* the connection a cell's command goes on */
static ngx_http_ragq_vk_t *
ngx_http_ragq_vk_of(ngx_http_ragq_cell_t *cell)
{
    if (cell && cell->replicas && ngx_http_ragq_vk_wr.initialized) {
        return &ngx_http_ragq_vk_wr;
    }

    return &ngx_http_ragq_vk;
}


/* no room for n more cells: too many in flight, or too much unsent */
static ngx_flag_t
ngx_http_ragq_vk_full(ngx_http_ragq_vk_t *vk, ngx_uint_t n)
{
    return vk->inflight + n > NGX_HTTP_RAGQ_MAX_INFLIGHT
           || ngx_http_ragq_conn_unsent(&vk->conn) >= NGX_HTTP_RAGQ_MAX_UNSENT;
}


ngx_int_t
ngx_http_ragq_valkey_available(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (!vk->initialized || vk->exiting
        || (vk->state != NGX_HTTP_RAGQ_VK_CONNECTING
            && vk->state != NGX_HTTP_RAGQ_VK_READY))
    {
        return NGX_DECLINED;
    }

    if (ngx_http_ragq_vk_full(vk, 1)) {
        return NGX_BUSY;
    }

    return NGX_OK;
}


ngx_flag_t
ngx_http_ragq_valkey_ready(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    return vk->initialized && !vk->exiting
           && vk->state == NGX_HTTP_RAGQ_VK_READY;
}


ngx_flag_t
ngx_http_ragq_pubsub_ready(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk_sub;

    return vk->initialized && !vk->exiting
           && vk->state == NGX_HTTP_RAGQ_VK_READY && !ngx_exiting;
}


ngx_uint_t
ngx_http_ragq_pubsub_generation(void)
{
    return ngx_http_ragq_vk_sub.connects;
}


ngx_int_t
ngx_http_ragq_pubsub_subscribe(ngx_str_t *channel, ngx_flag_t subscribe)
{
    u_char             *p;
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk_sub;
    u_char              cmd[NGX_HTTP_RAGQ_KEY_MAX + 64];

    if (!vk->initialized || vk->exiting || vk->state != NGX_HTTP_RAGQ_VK_READY
        || channel->len > NGX_HTTP_RAGQ_KEY_MAX)
    {
        return NGX_DECLINED;
    }

    /* no reply entry: the acknowledgement is a push (subscribed()) */
    p = subscribe ? ngx_http_ragq_lit(cmd, "*2\r\n$9\r\nSUBSCRIBE\r\n")
                  : ngx_http_ragq_lit(cmd, "*2\r\n$11\r\nUNSUBSCRIBE\r\n");
    p = ngx_http_ragq_resp_bulk(p, channel->data, channel->len);

    return ngx_http_ragq_conn_write(&vk->conn, cmd, p - cmd);
}


const ngx_http_ragq_resp_error_t *
ngx_http_ragq_valkey_down(void)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (vk->state != NGX_HTTP_RAGQ_VK_READY && vk->down) {
        return vk->down;
    }

    vk = &ngx_http_ragq_vk_wr;

    if (vk->initialized && vk->state != NGX_HTTP_RAGQ_VK_READY) {
        return vk->down;
    }

    return NULL;
}


ngx_int_t
ngx_http_ragq_valkey_timed_out(ngx_http_ragq_cell_t *cell)
{
    ngx_http_ragq_vk_t *vk;

    vk = ngx_http_ragq_vk_of(cell);

    if (vk->stalled++) {
        return NGX_DECLINED;
    }

    /* as the watchdog counts it */
    vk->stall_since = ngx_http_ragq_conn_pending(&vk->conn) > 0
                          ? ngx_http_ragq_vk_silent_since(vk)
                          : ngx_current_msec;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_valkey_send_n(ngx_http_ragq_cell_t *cell, u_char *cmd, size_t len,
                            ngx_uint_t n)
{
    ngx_uint_t          i;
    ngx_http_ragq_vk_t *vk;

    vk = ngx_http_ragq_vk_of(cell);

    if (vk->state != NGX_HTTP_RAGQ_VK_CONNECTING
        && vk->state != NGX_HTTP_RAGQ_VK_READY)
    {
        return NGX_DECLINED;
    }

    /* the writes connection has a cap of its own: overloaded there too */
    if (ngx_http_ragq_vk_full(vk, 1)) {
        return NGX_BUSY;
    }

    if (ngx_http_ragq_conn_write(&vk->conn, cmd, len) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_ragq_conn_pending(&vk->conn) == 0) {
        vk->busy_since = ngx_current_msec;
    }

    /*
     * The bytes are written: a mismatch from here on would misroute
     * replies, so a failure drops the connection (and its bytes), and the
     * cell stays the caller's.
     */
    for (i = (cell ? 1 : 0); i < n; i++) {
        if (ngx_http_ragq_conn_expect(&vk->conn, ngx_http_ragq_vk_skip_reply,
                                      NULL)
            != NGX_OK)
        {
            ngx_http_ragq_vk_fail(vk, NULL, "out of memory");
            return NGX_DECLINED;
        }
    }

    if (cell == NULL) {
        return NGX_OK;
    }

    if (ngx_http_ragq_conn_expect(&vk->conn,
                                  vk->writes ? ngx_http_ragq_replicas_reply
                                             : ngx_http_ragq_vk_cell_reply,
                                  cell)
        != NGX_OK)
    {
        ngx_http_ragq_vk_fail(vk, NULL, "out of memory");
        return NGX_DECLINED;
    }

    vk->inflight++;

    if (vk->writes) {
        ngx_http_ragq_replicas_sent(vk, cell);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_valkey_send(ngx_http_ragq_cell_t *cell, u_char *cmd, size_t len)
{
    return ngx_http_ragq_valkey_send_n(cell, cmd, len, 1);
}


ngx_int_t
ngx_http_ragq_valkey_send_pair(ngx_http_ragq_cell_t *cell, u_char *cmd,
                               size_t len)
{
    ngx_http_ragq_vk_t *vk = &ngx_http_ragq_vk;

    if (vk->state != NGX_HTTP_RAGQ_VK_CONNECTING
        && vk->state != NGX_HTTP_RAGQ_VK_READY)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_ragq_vk_full(vk, 2)) {
        return NGX_BUSY;
    }

    /* both expectations or none: the handler runs twice or not at all */
    if (ngx_http_ragq_conn_reserve(&vk->conn, 2) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_ragq_conn_write(&vk->conn, cmd, len) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_ragq_conn_pending(&vk->conn) == 0) {
        vk->busy_since = ngx_current_msec;
    }

    (void) ngx_http_ragq_conn_expect(&vk->conn, ngx_http_ragq_vk_cell_reply,
                                     cell);
    (void) ngx_http_ragq_conn_expect(&vk->conn, ngx_http_ragq_vk_cell_reply,
                                     cell);

    cell->more = 1;
    vk->inflight += 2;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_valkey_command(ngx_http_ragq_cell_t *cell, int argc,
                             const char **argv, const size_t *argvlen)
{
    u_char   *cmd, *p;
    size_t    len;
    ngx_int_t i, rc;
    u_char    buf[4096];

    len = 1 + NGX_INT_T_LEN + 2;

    for (i = 0; i < argc; i++) {
        len += NGX_HTTP_RAGQ_RESP_HEAD_MAX + argvlen[i] + 2;
    }

    cmd = buf;

    if (len > sizeof(buf)) {
        cmd = ngx_alloc(len, ngx_cycle->log);
        if (cmd == NULL) {
            return NGX_ERROR;
        }
    }

    p = cmd;
    *p++ = '*';
    p = ngx_http_ragq_resp_uint(p, argc);
    *p++ = '\r';
    *p++ = '\n';

    for (i = 0; i < argc; i++) {
        p = ngx_http_ragq_resp_bulk(p, argv[i], argvlen[i]);
    }

    rc = ngx_http_ragq_valkey_send_n(cell, cmd, p - cmd, 1);

    if (cmd != buf) {
        ngx_free(cmd);
    }

    return rc;
}


/* a reply nobody waits for (a MULTI part): its error explains an EXECABORT */
static void
ngx_http_ragq_vk_skip_reply(ngx_http_ragq_conn_t *conn, void *data,
                            redisReply *reply)
{
    ngx_http_ragq_vk_t *vk = conn->data;

    if (reply && reply->type == REDIS_REPLY_ERROR && vk->skipped_len == 0) {
        vk->skipped_len = ngx_min((size_t) reply->len, sizeof(vk->skipped) - 1);
        ngx_memcpy(vk->skipped, reply->str, vk->skipped_len);
        vk->skipped[vk->skipped_len] = '\0';
    }
}


/* hands the reply to the cell's request, then frees the cell */
void
ngx_http_ragq_vk_deliver(ngx_http_ragq_vk_t *vk, ngx_http_ragq_cell_t *cell,
                         redisReply *reply)
{
    vk->inflight--;

    /*
     * A request still waiting gets its reply: the server answers in time
     * again. Late replies of the requests that timed out do not end a
     * stall, or a server slower than the timeout would log every one.
     */
    if (vk->stalled && reply && cell->request) {
        ngx_http_ragq_vk_stall_end(vk, NULL);
    }

    /*
     * Only at exit_process: the long-polls and streams have let go of their
     * cells by then (ngx_http_ragq_lp_exit(), ngx_http_ragq_stream_exit()),
     * so a cell's request is all that may still point at it. A connection
     * closed for shutdown (worker_shutdown_timeout) goes on to the handler
     * like any lost connection: the requests, long-poll reads and streams
     * that hold cells are still there, and each lets go of its own.
     */
    if (vk->closed) {
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

            /* a pair's second reply finds nothing left to release */
            cell->request = NULL;
        }

    } else {
        cell->handler(cell, reply);
    }

    if (cell->more) {
        cell->more--;
        return;
    }

    ngx_free(cell);
}


/*
 * An error reply: the real one instead of EXECABORT, and the connection
 * dropped when the server cannot serve us any more (READONLY: a demoted
 * primary; with Sentinel the primary is asked for again).
 */
void
ngx_http_ragq_vk_error_reply(ngx_http_ragq_vk_t *vk, ngx_http_ragq_cell_t *cell,
                             redisReply *reply)
{
    redisReply                        real;
    const ngx_http_ragq_resp_error_t *err;

    if (vk->skipped_len && ngx_strncmp(reply->str, "EXECABORT", 9) == 0) {
        ngx_memzero(&real, sizeof(redisReply));
        real.type = REDIS_REPLY_ERROR;
        real.str = (char *) vk->skipped;
        real.len = vk->skipped_len;
        reply = &real;
    }

    vk->skipped_len = 0;

    err = ngx_http_ragq_resp_error(reply->str, reply->len);

    ngx_http_ragq_vk_deliver(vk, cell, reply);

    if (err->reconnect && vk->state != NGX_HTTP_RAGQ_VK_DISCONNECTED) {
        ngx_http_ragq_vk_fail(vk, err, "%V answered %s: reconnecting",
                              &vk->conn.peer, err->prefix);
    }
}


static void
ngx_http_ragq_vk_cell_reply(ngx_http_ragq_conn_t *conn, void *data,
                            redisReply *reply)
{
    ngx_http_ragq_vk_t *vk = conn->data;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_ragq_vk_error_reply(vk, data, reply);
        return;
    }

    vk->skipped_len = 0;

    ngx_http_ragq_vk_deliver(vk, data, reply);
}


/* the channel of the subscription set named name, else NULL */
static ngx_http_ragq_channel_t *
ngx_http_ragq_pubsub_channel(ngx_http_ragq_pubsub_t *ps, redisReply *name)
{
    ngx_uint_t               i;
    ngx_http_ragq_channel_t *ch;

    ch = ps->channels.elts;

    for (i = 0; i < ps->channels.nelts; i++) {
        if (ch[i].channel.len == (size_t) name->len
            && ngx_memcmp(ch[i].channel.data, name->str, name->len) == 0)
        {
            return &ch[i];
        }
    }

    return NULL;
}


/* a pub/sub channel's message, a subscription's acknowledgement, a pong */
void
ngx_http_ragq_pubsub_push(ngx_http_ragq_conn_t *conn, void *data,
                          redisReply *reply)
{
    redisReply              *kind, *name, *payload;
    ngx_http_ragq_vk_t      *vk = conn->data;
    ngx_http_ragq_channel_t *ch;

    kind = reply->element[0];

    if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0
        && reply->elements >= 2 && reply->element[1]->type == REDIS_REPLY_STRING
        && vk->pubsub->subscribed
        && ngx_http_ragq_pubsub_channel(vk->pubsub, reply->element[1]) == NULL)
    {
        /* one of the channels subscribed one by one, after the handshake */
        vk->pubsub->subscribed(vk->pubsub, (u_char *) reply->element[1]->str,
                               reply->element[1]->len);
        return;
    }

    if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "ragq: %s subscribed to %s", vk->name,
                       reply->element[1]->type == REDIS_REPLY_STRING
                           ? reply->element[1]->str
                           : "?");

        if (++vk->acks == vk->pubsub->channels.nelts && vk->role_ok) {
            ngx_http_ragq_vk_ready(vk);
        }

        return;
    }

    if (kind->len != 7 || ngx_strncmp(kind->str, "message", 7) != 0
        || reply->elements < 3 || vk->exiting)
    {
        return;
    }

    name = reply->element[1];
    payload = reply->element[2];

    if (name->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    /* the subscription set: a message goes to the channel it names */
    ch = ngx_http_ragq_pubsub_channel(vk->pubsub, name);

    if (ch) {
        vk->pubsub->message(vk->pubsub, ch, (u_char *) payload->str,
                            payload->len);

    } else if (vk->pubsub->other) {
        vk->pubsub->other(vk->pubsub, (u_char *) name->str, name->len,
                          (u_char *) payload->str, payload->len);
    }
}
