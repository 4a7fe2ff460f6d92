/*
 * ragq: ragq_valkey_replicas N, on the writes connection. A new job's
 * reply (its XADD's, or the idempotency script's) is held until a WAIT sent
 * after it says how many replicas acknowledged the writes so far: with at
 * least the cell's N the job is answered 202, else the request gets a
 * NOTREPLICATED error (503 valkey_not_replicated: the job may exist). One
 * WAIT covers every write of an event-loop turn (it is appended just
 * before the turn's send), and only one is outstanding at a time: WAIT
 * blocks the connection on the server, which is why the writes have a
 * connection of their own and /job-status reads never wait behind it.
 */

#include "ngx_http_ragq_valkey_int.h"


static void ngx_http_ragq_replicas_wait_reply(ngx_http_ragq_conn_t *conn,
                                              void *data, redisReply *reply);


void
ngx_http_ragq_replicas_sent(ngx_http_ragq_vk_t *vk, ngx_http_ragq_cell_t *cell)
{
    vk->unwaited++;

    if (cell->replicas > vk->wait_replicas) {
        vk->wait_replicas = cell->replicas;
    }
}


/* the least time a waiting request has left, NGX_TIMER_INFINITE: none */
static ngx_msec_t
ngx_http_ragq_replicas_left(ngx_http_ragq_vk_t *vk)
{
    ngx_uint_t              i;
    ngx_msec_t              left, min;
    ngx_msec_int_t          diff;
    ngx_http_ragq_cell_t   *cell;
    ngx_http_ragq_expect_t *e;

    min = NGX_TIMER_INFINITE;

    for (i = 0; i < vk->nheld; i++) {
        cell = vk->held[i].cell;

        if (cell->request && cell->deadline.timer_set) {
            diff =
                (ngx_msec_int_t) (cell->deadline.timer.key - ngx_current_msec);
            left = diff > 0 ? (ngx_msec_t) diff : 0;
            min = ngx_min(min, left);
        }
    }

    i = 0;

    while ((e = ngx_http_ragq_conn_next(&vk->conn, &i)) != NULL) {
        if (e->handler != ngx_http_ragq_replicas_reply) {
            continue;
        }

        cell = e->data;

        if (cell->request && cell->deadline.timer_set) {
            diff =
                (ngx_msec_int_t) (cell->deadline.timer.key - ngx_current_msec);
            left = diff > 0 ? (ngx_msec_t) diff : 0;
            min = ngx_min(min, left);
        }
    }

    return min;
}


static void
ngx_http_ragq_replicas_wait(ngx_http_ragq_vk_t *vk)
{
    u_char    *p;
    ngx_msec_t left, timeout;
    u_char     cmd[64 + 2 * NGX_INT_T_LEN];
    u_char     n[NGX_INT_T_LEN], t[NGX_INT_T_LEN];

    /*
     * Within the requests' own ragq_valkey_timeout, so that they hear
     * "not replicated" rather than time out: three quarters of what the
     * most hurried one has left (WAIT 0 would block forever).
     */
    left = ngx_http_ragq_replicas_left(vk);
    timeout = (left == NGX_TIMER_INFINITE) ? vk->conf->timeout : left / 4 * 3;

    if (timeout == 0) {
        timeout = 1;
    }

    p = ngx_http_ragq_lit(cmd, "*3\r\n$4\r\nWAIT\r\n");
    p = ngx_http_ragq_resp_bulk(p, n,
                                ngx_http_ragq_resp_uint(n, vk->wait_replicas)
                                    - n);
    p = ngx_http_ragq_resp_bulk(p, t, ngx_http_ragq_resp_uint(t, timeout) - t);

    if (ngx_http_ragq_conn_write(&vk->conn, cmd, p - cmd) != NGX_OK
        || ngx_http_ragq_conn_expect(&vk->conn,
                                     ngx_http_ragq_replicas_wait_reply, NULL)
               != NGX_OK)
    {
        ngx_http_ragq_vk_fail(vk, NULL, "out of memory");
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: WAIT %ui %M for %ui writes", vk->wait_replicas,
                   timeout, vk->unwaited);

    vk->wait_out = 1;
    vk->wait_timeout = timeout;
    vk->unwaited = 0;
    vk->wait_replicas = 0;
}


/* the writes connection is about to send: this turn's writes get a WAIT */
void
ngx_http_ragq_replicas_flush(ngx_http_ragq_conn_t *conn)
{
    ngx_http_ragq_vk_t *vk = conn->data;

    if (!vk->wait_out && vk->unwaited) {
        ngx_http_ragq_replicas_wait(vk);
    }
}


/* a write's reply: an error goes at once, a success waits for the WAIT */
void
ngx_http_ragq_replicas_reply(ngx_http_ragq_conn_t *conn, void *data,
                             redisReply *reply)
{
    size_t                size;
    ngx_http_ragq_vk_t   *vk = conn->data;
    ngx_http_ragq_held_t *held;

    if (reply == NULL) {
        ngx_http_ragq_vk_deliver(vk, data, NULL);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_ragq_vk_error_reply(vk, data, reply);
        return;
    }

    vk->skipped_len = 0;

    if (vk->nheld == vk->held_size) {
        size = vk->held_size ? vk->held_size * 2 : 64;

        held = ngx_alloc(size * sizeof(ngx_http_ragq_held_t), ngx_cycle->log);
        if (held == NULL) {
            /* not confirmed: answered as a lost reply (503) */
            ngx_http_ragq_vk_deliver(vk, data, NULL);
            return;
        }

        if (vk->held) {
            ngx_memcpy(held, vk->held,
                       vk->nheld * sizeof(ngx_http_ragq_held_t));
            ngx_free(vk->held);
        }

        vk->held = held;
        vk->held_size = size;
    }

    vk->held[vk->nheld].cell = data;
    vk->held[vk->nheld].reply = reply;
    vk->nheld++;

    /* this connection has no arena: the reply is ours to free */
    conn->keep = 1;
}


static void
ngx_http_ragq_replicas_wait_reply(ngx_http_ragq_conn_t *conn, void *data,
                                  redisReply *reply)
{
    u_char               *p;
    ngx_int_t             acked;
    ngx_uint_t            i, n;
    redisReply            short_of, *r;
    ngx_http_ragq_vk_t   *vk = conn->data;
    ngx_http_ragq_cell_t *cell;
    u_char                text[128];

    vk->wait_out = 0;

    acked = (reply && reply->type == REDIS_REPLY_INTEGER) ? reply->integer : -1;

    ngx_memzero(&short_of, sizeof(redisReply));
    short_of.type = REDIS_REPLY_ERROR;

    /* handlers may write (and so hold) again: the list is taken first */
    n = vk->nheld;
    vk->nheld = 0;

    for (i = 0; i < n; i++) {
        cell = vk->held[i].cell;
        r = vk->held[i].reply;

        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            /* the connection went, or WAIT itself failed (e.g. NOPERM) */
            ngx_http_ragq_vk_deliver(vk, cell, reply);

        } else if (acked >= (ngx_int_t) cell->replicas) {
            ngx_http_ragq_vk_deliver(vk, cell, r);

        } else {
            p = ngx_snprintf(text, sizeof(text) - 1,
                             "NOTREPLICATED %i of %ui replicas acknowledged "
                             "the write within %M ms",
                             acked, cell->replicas, vk->wait_timeout);
            *p = '\0';
            short_of.str = (char *) text;
            short_of.len = p - text;

            ngx_http_ragq_vk_deliver(vk, cell, &short_of);
        }

        ngx_http_ragq_reply_free_kept(r);
    }

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ragq: %s WAIT failed: %s", vk->name, reply->str);
    }

    /* the writes sent while this WAIT was out */
    if (vk->unwaited && ngx_http_ragq_conn_open_p(conn)) {
        ngx_http_ragq_replicas_wait(vk);
    }
}


void
ngx_http_ragq_replicas_exit(ngx_http_ragq_vk_t *vk)
{
    if (vk->held) {
        ngx_free(vk->held);
        vk->held = NULL;
        vk->nheld = 0;
        vk->held_size = 0;
    }
}
