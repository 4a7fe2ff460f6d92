/*
 * ragq: answer streams, GET /job-stream?job_id=ID (Server-Sent Events).
 * A stream's events (pieces, status, heartbeats, the end with done or
 * retry), its "sync" (one MULTI of the job read and XRANGE P:out:ID
 * (0-LAST +) that starts it, fills gaps and ends it with done), and the
 * request. The table of streamed jobs and what the pub/sub connection says
 * about them are in ngx_http_ragq_stream_jobs.c.
 */

#include "ngx_http_ragq_stream_int.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_json.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_metrics.h"
#include "ngx_http_ragq_vars.h"


/* what a client waits before it reconnects after a stream was cut */
#define NGX_HTTP_RAGQ_STREAM_RETRY "retry: 1000\n\n"

/* the size of an event buffer, unless one event needs more */
#define NGX_HTTP_RAGQ_STREAM_BUF 512


static void      ngx_http_ragq_stream_reply(ngx_http_ragq_cell_t *cell,
                                            redisReply           *reply);
static void      ngx_http_ragq_stream_deadline(ngx_event_t *ev);
static ngx_int_t ngx_http_ragq_stream_send_timer(ngx_http_request_t *r,
                                                 ngx_flag_t          progress);


/* ---- events ---- */


/*
 * r's body so far (the buffer of ngx_http_ragq_stream_buf()); NGX_ERROR:
 * the request is gone (s too)
 */
ngx_int_t
ngx_http_ragq_stream_send(ngx_http_ragq_stream_t *s, ngx_buf_t *b,
                          ngx_flag_t last)
{
    ngx_int_t           rc;
    ngx_chain_t        *out;
    ngx_http_request_t *r = s->request;

    b->flush = 1;
    b->last_buf = last;
    b->last_in_chain = 1;

    out = s->out;
    s->out = NULL;

    if (last) {
        r = ngx_http_ragq_stream_take(s);
        ngx_http_ragq_finalize(r, ngx_http_output_filter(r, out));
        return NGX_ERROR;
    }

    rc = ngx_http_output_filter(r, out);

    if (rc == NGX_ERROR) {
        /* terminates r: its cleanup unlinks s */
        ngx_http_ragq_finalize(r, NGX_ERROR);
        return NGX_ERROR;
    }

    if (ngx_http_ragq_stream_send_timer(r, 0) != NGX_OK) {
        ngx_http_ragq_finalize(r, NGX_ERROR);
        return NGX_ERROR;
    }

    /* the buffers written out are used again: a long answer does not
     * grow the request's pool by its size */
    ngx_chain_update_chains(r->pool, &s->free, &s->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_ragq_module);

    return NGX_OK;
}


/*
 * The write event and send_timeout, as nginx's own writer keeps them: the
 * write event in the event loop while output waits (nothing else would
 * send the rest once the client takes some); and while the client leaves
 * output unread, the time since it last took some. A client that stops
 * reading would otherwise hold its stream, and every piece of the answer
 * in its request's pool, until the job ends and long after. Sends that
 * only add to the backlog (pieces, heartbeats) do not restart the clock;
 * progress does.
 */
static ngx_int_t
ngx_http_ragq_stream_send_timer(ngx_http_request_t *r, ngx_flag_t progress)
{
    ngx_event_t              *wev = r->connection->write;
    ngx_http_core_loc_conf_t *clcf;

    if (!(r->connection->buffered & NGX_HTTP_WRITE_BUFFERED)) {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        return NGX_OK;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        return NGX_ERROR;
    }

    if (wev->delayed || (wev->timer_set && !progress)) {
        return NGX_OK; /* limit_rate's own timer; or no progress to count */
    }

    ngx_add_timer(wev, clcf->send_timeout);

    return NGX_OK;
}


/* true when the client has left at least max bytes of output unread */
ngx_flag_t
ngx_http_ragq_stream_full(ngx_http_ragq_stream_t *s, size_t max)
{
    size_t       n;
    ngx_chain_t *cl;

    n = 0;

    for (cl = s->busy; cl; cl = cl->next) {
        n += ngx_buf_size(cl->buf);

        if (n >= max) {
            return 1;
        }
    }

    return 0;
}


/* room for len bytes of events, for ngx_http_ragq_stream_send() */
ngx_buf_t *
ngx_http_ragq_stream_buf(ngx_http_ragq_stream_t *s, size_t len)
{
    size_t       size;
    ngx_buf_t   *b;
    ngx_chain_t *cl;

    cl = ngx_chain_get_free_buf(s->request->pool, &s->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < len) {
        /* most events fit in the first size: a piece is a few words */
        size = ngx_max(len, NGX_HTTP_RAGQ_STREAM_BUF);

        if (b->start) {
            /* a large one goes back to the heap; a small one stays */
            (void) ngx_pfree(s->request->pool, b->start);
        }

        b->start = ngx_palloc(s->request->pool, size);
        if (b->start == NULL) {
            return NULL;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = b->start;
    b->temporary = 1;
    b->tag = (ngx_buf_tag_t) &ngx_http_ragq_module;

    s->out = cl;

    return b;
}


/* ends the stream without done: the client resumes with Last-Event-ID */
void
ngx_http_ragq_stream_cut(ngx_http_ragq_stream_t *s)
{
    ngx_buf_t *b;

    b = ngx_http_ragq_stream_buf(s, sizeof(NGX_HTTP_RAGQ_STREAM_RETRY) - 1);
    if (b == NULL) {
        ngx_http_ragq_finalize(ngx_http_ragq_stream_take(s), NGX_ERROR);
        return;
    }

    b->last = ngx_http_ragq_lit(b->last, NGX_HTTP_RAGQ_STREAM_RETRY);

    (void) ngx_http_ragq_stream_send(s, b, 1);
}


/* before the 200: an answer of its own */
void
ngx_http_ragq_stream_fail(ngx_http_ragq_stream_t *s, ngx_int_t rc)
{
    ngx_http_request_t *r;

    if (s->started) {
        ngx_http_ragq_stream_cut(s);
        return;
    }

    r = ngx_http_ragq_stream_take(s);

    ngx_http_ragq_finalize(r, rc);
}


/* an error reply, or none: the answer before the 200, else the end */
static void
ngx_http_ragq_stream_error(ngx_http_ragq_stream_t *s, redisReply *reply)
{
    if (s->started) {
        ngx_http_ragq_stream_cut(s);
        return;
    }

    ngx_http_ragq_stream_fail(s, ngx_http_ragq_reply_error(s->request, reply));
}


static ngx_int_t
ngx_http_ragq_stream_start(ngx_http_ragq_stream_t *s)
{
    ngx_int_t           rc;
    ngx_http_request_t *r = s->request;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_ragq_add_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_http_ragq_add_header(r, "X-Accel-Buffering", "no") != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    s->started = 1;

    /* the start deadline becomes the heartbeat */
    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    ngx_add_timer(&s->timer, s->lcf->stream_heartbeat);

    return NGX_OK;
}


/* "0-N" */
static ngx_int_t
ngx_http_ragq_stream_seq(u_char *p, size_t len, uint64_t *seq)
{
    uint64_t n;
    u_char  *end = p + len;

    if (len < 3 || p[0] != '0' || p[1] != '-') {
        return NGX_DECLINED;
    }

    for (n = 0, p += 2; p < end; p++) {
        if (*p < '0' || *p > '9' || n > (UINT64_MAX - 9) / 10) {
            return NGX_DECLINED;
        }

        n = n * 10 + (*p - '0');
    }

    *seq = n;

    return NGX_OK;
}


#define NGX_HTTP_RAGQ_TOKEN_HEAD "event: token\nid: "
#define NGX_HTTP_RAGQ_TOKEN_DATA "\ndata: {\"text\":"
#define NGX_HTTP_RAGQ_RESET_HEAD "event: reset\nid: "
#define NGX_HTTP_RAGQ_RESET_DATA "\ndata: {}\n\n"

/* room for one piece's event, text escaped */
size_t
ngx_http_ragq_piece_len(u_char *text, size_t len)
{
    return sizeof(NGX_HTTP_RAGQ_TOKEN_HEAD) + NGX_INT64_LEN
           + sizeof(NGX_HTTP_RAGQ_TOKEN_DATA)
           + ngx_http_ragq_json_escape_len(text, len) + 4;
}


u_char *
ngx_http_ragq_piece(u_char *p, uint64_t seq, u_char *text, size_t len,
                    ngx_flag_t reset)
{
    if (reset) {
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_RESET_HEAD);
        p = ngx_sprintf(p, "%uL", seq);
        return ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_RESET_DATA);
    }

    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_TOKEN_HEAD);
    p = ngx_sprintf(p, "%uL", seq);
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_TOKEN_DATA);
    p = ngx_http_ragq_json_escape(p, text, len);
    return ngx_http_ragq_lit(p, "}\n\n");
}


/* ---- the sync: the job and the pieces after the last one sent ---- */


/* NGX_OK: sent, or to be sent after the one in flight */
ngx_int_t
ngx_http_ragq_stream_sync(ngx_http_ragq_stream_t *s)
{
    u_char                   *p, *e;
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf = s->lcf;
    u_char                    last[NGX_INT64_LEN + 3];
    u_char                    entry[2 * NGX_INT64_LEN + 2];
    u_char                    cmd[3 * NGX_HTTP_RAGQ_KEY_MAX + 320];

    if (s->cell) {
        s->again = 1;
        return NGX_OK;
    }

    cell = ngx_http_ragq_cell_create(s->request, ngx_http_ragq_stream_reply);
    if (cell == NULL) {
        return NGX_ERROR;
    }

    cell->data = s;
    ngx_memcpy(cell->job_id, s->job_id, NGX_HTTP_RAGQ_JOB_ID_LEN);
    cell->step = s->step;

    /* atomic: a job seen final has every piece in the XRANGE */
    p = ngx_http_ragq_lit(cmd, "*1\r\n$5\r\nMULTI\r\n");

    if (s->step == NGX_HTTP_RAGQ_READ_ENTRY) {
        e = ngx_http_ragq_job_entry_of_id(entry, s->job_id);
        p = ngx_cpymem(p, lcf->xrange_head.data, lcf->xrange_head.len);
        p = ngx_http_ragq_resp_bulk(p, entry, e - entry);
        p = ngx_http_ragq_resp_bulk(p, entry, e - entry);

    } else {
        p = ngx_cpymem(p, lcf->hgetall_head.data, lcf->hgetall_head.len);
        p = ngx_cpymem(p, s->job_id, NGX_HTTP_RAGQ_JOB_ID_LEN);
        *p++ = '\r';
        *p++ = '\n';
    }

    /* a page: what a client that was behind missed may be long */
    p = ngx_http_ragq_lit(p, "*6\r\n$6\r\nXRANGE\r\n");
    p = ngx_http_ragq_resp_bulk(p, s->sjob->sn.str.data, s->sjob->sn.str.len);
    e = ngx_sprintf(last, "(0-%uL", s->last);
    p = ngx_http_ragq_resp_bulk(p, last, e - last);
    p = ngx_http_ragq_lit(p, "$1\r\n+\r\n$5\r\nCOUNT\r\n");
    e = ngx_sprintf(last, "%ui", (ngx_uint_t) NGX_HTTP_RAGQ_STREAM_PAGE);
    p = ngx_http_ragq_resp_bulk(p, last, e - last);
    p = ngx_http_ragq_lit(p, "*1\r\n$4\r\nEXEC\r\n");

    if (ngx_http_ragq_valkey_send_n(cell, cmd, p - cmd, 4) != NGX_OK) {
        ngx_http_ragq_cell_drop(cell);

        /*
         * The connection is down (ready() syncs again when it is back), or
         * healthy with too many commands in flight (nothing would): the
         * heartbeat tries again.
         */
        s->owed = 1;

        return NGX_DECLINED;
    }

    /* non-cancelable, as every request's: a graceful shutdown waits */
    cell->deadline.handler = ngx_http_ragq_stream_deadline;
    ngx_add_timer(&cell->deadline, lcf->valkey_timeout);

    s->cell = cell;
    s->owed = 0;
    s->behind = 0; /* it reads from the last piece sent */

    return NGX_OK;
}


/* a sync to send now; a stream that cannot have one ends */
void
ngx_http_ragq_stream_resync(ngx_http_ragq_stream_t *s)
{
    ngx_int_t rc;

    if (s->started && s->cell == NULL
        && ngx_http_ragq_stream_full(s, NGX_HTTP_RAGQ_STREAM_BACKLOG))
    {
        /* the client is behind: the writer syncs when it catches up */
        s->behind = 1;
        return;
    }

    rc = ngx_http_ragq_stream_sync(s);

    if (rc == NGX_OK || (rc == NGX_DECLINED && s->started)) {
        /* a stream with its 200 sent waits for ready() or its heartbeat */
        return;
    }

    ngx_http_ragq_stream_fail(s, rc == NGX_DECLINED
                                     ? ngx_http_ragq_unavailable(s->request,
                                                                 NGX_DECLINED)
                                     : NGX_HTTP_INTERNAL_SERVER_ERROR);
}


/*
 * The pieces of an XRANGE reply after the last one sent: with p == NULL,
 * the room they take (in *len); else written at p, the end returned.
 */
static u_char *
ngx_http_ragq_stream_pieces(ngx_http_ragq_stream_t *s, redisReply *out,
                            u_char *p, size_t *len)
{
    size_t      i;
    uint64_t    seq, last;
    redisReply *e, *f, *t;

    last = s->last;

    for (i = 0; i < out->elements; i++) {
        e = out->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING
            || e->element[1]->type != REDIS_REPLY_ARRAY
            || ngx_http_ragq_stream_seq((u_char *) e->element[0]->str,
                                        e->element[0]->len, &seq)
                   != NGX_OK
            || seq <= last)
        {
            continue;
        }

        f = e->element[1];
        t = ngx_http_ragq_job_field(f, "t", 1);

        if (t && t->type == REDIS_REPLY_STRING) {
            if (p) {
                p = ngx_http_ragq_piece(p, seq, (u_char *) t->str, t->len, 0);
            } else {
                *len += ngx_http_ragq_piece_len((u_char *) t->str, t->len);
            }

        } else if (ngx_http_ragq_job_field(f, "reset", 5)) {
            if (p) {
                p = ngx_http_ragq_piece(p, seq, NULL, 0, 1);
            } else {
                *len += ngx_http_ragq_piece_len(NULL, 0);
            }
        }

        /* an entry of another kind is passed over, not read again */
        last = seq;
    }

    if (p) {
        s->last = last;
    }

    return p;
}


/*
 * A full page of XRANGE whose last entry is after the last piece sent: more
 * pieces may follow it (a job seen final gets its done after them)
 */
static ngx_uint_t
ngx_http_ragq_stream_more(ngx_http_ragq_stream_t *s, redisReply *out)
{
    uint64_t    seq;
    redisReply *e;

    if (out->elements < NGX_HTTP_RAGQ_STREAM_PAGE) {
        return 0;
    }

    e = out->element[out->elements - 1];

    return e->type == REDIS_REPLY_ARRAY && e->elements == 2
           && e->element[0]->type == REDIS_REPLY_STRING
           && e->element[1]->type == REDIS_REPLY_ARRAY
           && ngx_http_ragq_stream_seq((u_char *) e->element[0]->str,
                                       e->element[0]->len, &seq)
                  == NGX_OK
           && seq > s->last;
}


static void
ngx_http_ragq_stream_deadline(ngx_event_t *ev)
{
    ngx_http_ragq_cell_t   *cell = ev->data;
    ngx_http_ragq_stream_t *s = cell->data;

    if (ngx_http_ragq_cell_take(cell) == NULL) {
        return;
    }

    s->cell = NULL;

    if (s->started) {
        ngx_http_ragq_stream_cut(s);
        return;
    }

    ngx_http_ragq_stream_fail(s, ngx_http_ragq_timed_out(s->request, cell));
}


static void
ngx_http_ragq_stream_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    u_char                   *p;
    size_t                    len;
    ngx_int_t                 rc;
    ngx_str_t                 view;
    ngx_buf_t                *b;
    ngx_uint_t                step, final, more;
    redisReply               *job, *out, *status;
    ngx_http_ragq_stream_t   *s = cell->data;
    ngx_http_ragq_job_entry_t je;

    if (ngx_http_ragq_cell_take(cell) == NULL) {
        return;
    }

    s->cell = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        if (reply == NULL && s->started && !ngx_exiting) {
            /* the connection went: ready() syncs again when it is back */
            return;
        }

        /* at shutdown nothing syncs again: a started stream ends, retry: */

        ngx_http_ragq_stream_error(s, reply && reply->type == REDIS_REPLY_ARRAY
                                          ? NULL
                                          : reply);
        return;
    }

    job = reply->element[0];
    out = reply->element[1];

    step = s->step;

    if (ngx_http_ragq_job_found(s->job_id, &step, job, &je, &job) == NGX_AGAIN)
    {
        s->step = step;
        ngx_http_ragq_stream_resync(s);
        return;
    }

    s->step = NGX_HTTP_RAGQ_READ_HASH;

    if (job->type != REDIS_REPLY_ARRAY || out->type != REDIS_REPLY_ARRAY) {
        ngx_http_ragq_stream_error(s, job->type == REDIS_REPLY_ERROR   ? job
                                      : out->type == REDIS_REPLY_ERROR ? out
                                                                       : NULL);
        return;
    }

    rc = ngx_http_ragq_job_visible(s->request, s->lcf, job);

    if (rc != NGX_OK) {
        if (s->started) {
            /* expired while streamed */
            ngx_http_ragq_stream_cut(s);
            return;
        }

        ngx_http_ragq_stream_fail(
            s, rc == NGX_ERROR
                   ? NGX_HTTP_INTERNAL_SERVER_ERROR
                   : ngx_http_ragq_error(s->request, NGX_HTTP_NOT_FOUND,
                                         "job_not_found",
                                         "no such job: it never existed, has "
                                         "expired, or belongs to someone "
                                         "else"));
        return;
    }

    status = ngx_http_ragq_job_field(job, "status", 6);
    final = status && status->type == REDIS_REPLY_STRING
            && ngx_http_ragq_job_final((u_char *) status->str, status->len);

    more = ngx_http_ragq_stream_more(s, out);

    ngx_str_null(&view);

    if (final && !more
        && ngx_http_ragq_job_view(s->request->pool, s->job_id, job, &view)
               != NGX_OK)
    {
        ngx_http_ragq_stream_fail(s, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    while (
        view.len
        && (view.data[view.len - 1] == '\n' || view.data[view.len - 1] == '\r'))
    {
        view.len--;
    }

    if (!s->started) {
        ngx_http_ragq_set_job(s->request, s->job_id,
                              status ? (u_char *) status->str : NULL,
                              status ? status->len : 0);

        if (ngx_http_ragq_stream_start(s) != NGX_OK) {
            ngx_http_ragq_finalize(ngx_http_ragq_stream_take(s), NGX_ERROR);
            return;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->timer.log, 0,
                       "ragq: streaming %V from piece %uL", &s->sjob->sn.str,
                       s->last);
    }

    len = sizeof("event: status\ndata: {\"status\":\"started\"}\n\n")
          + (final && !more ? sizeof("event: done\ndata: \n\n") + view.len : 0);
    (void) ngx_http_ragq_stream_pieces(s, out, NULL, &len);

    b = ngx_http_ragq_stream_buf(s, len);
    if (b == NULL) {
        ngx_http_ragq_finalize(ngx_http_ragq_stream_take(s), NGX_ERROR);
        return;
    }

    if (!final && status && status->type == REDIS_REPLY_STRING
        && status->len > 0 && status->str[0] != s->status
        && ((status->len == 6 && ngx_strncmp(status->str, "queued", 6) == 0)
            || (status->len == 7
                && ngx_strncmp(status->str, "started", 7) == 0)))
    {
        /* the status first: the pieces that follow are the running try's */
        s->status = status->str[0];
        b->last = ngx_http_ragq_lit(b->last, "event: status\ndata: "
                                             "{\"status\":\"");
        b->last = ngx_cpymem(b->last, status->str, status->len);
        b->last = ngx_http_ragq_lit(b->last, "\"}\n\n");
    }

    b->last = ngx_http_ragq_stream_pieces(s, out, b->last, NULL);

    if (more) {
        s->again = 1;

    } else if (final) {
        b->last = ngx_http_ragq_lit(b->last, "event: done\ndata: ");

        /* raw line breaks can only be JSON whitespace: not in an event */
        for (p = view.data; p < view.data + view.len; p++) {
            *b->last++ = (*p == '\n' || *p == '\r') ? ' ' : *p;
        }

        b->last = ngx_http_ragq_lit(b->last, "\n\n");

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->timer.log, 0,
                       "ragq: stream of %V done", &s->sjob->sn.str);

        (void) ngx_http_ragq_stream_send(s, b, 1);
        return;
    }

    if (b->last > b->pos && ngx_http_ragq_stream_send(s, b, 0) != NGX_OK) {
        return;
    }

    if (ngx_exiting || ngx_terminate || !ngx_http_ragq_pubsub_ready()) {
        if (ngx_exiting || ngx_terminate) {
            ngx_http_ragq_stream_cut(s);
        }

        return;
    }

    if (s->again) {
        s->again = 0;
        ngx_http_ragq_stream_resync(s);
    }
}


/* ---- the request ---- */


/* the start deadline (no subscription yet), then the heartbeats */
static void
ngx_http_ragq_stream_timer(ngx_event_t *ev)
{
    ngx_buf_t              *b;
    ngx_http_ragq_stream_t *s = ev->data;

    if (!s->started) {
        if (s->cell == NULL) {
            ngx_http_ragq_stream_fail(s, ngx_http_ragq_timed_out(s->request,
                                                                 NULL));
        }

        return;
    }

    b = ngx_http_ragq_stream_buf(s, sizeof(": keep-alive\n\n") - 1);
    if (b == NULL) {
        ngx_http_ragq_finalize(ngx_http_ragq_stream_take(s), NGX_ERROR);
        return;
    }

    b->last = ngx_http_ragq_lit(b->last, ": keep-alive\n\n");

    if (ngx_http_ragq_stream_send(s, b, 0) != NGX_OK) {
        return;
    }

    ngx_add_timer(&s->timer, s->lcf->stream_heartbeat);

    if (s->owed || s->behind) {
        /* last: it may end the stream (its unlink deletes the timer) */
        ngx_http_ragq_stream_resync(s);
    }
}


/* the client can take more of what is buffered, or took none for long */
static void
ngx_http_ragq_stream_writer(ngx_http_request_t *r)
{
    ngx_chain_t            *out;
    ngx_connection_t       *c = r->connection;
    ngx_http_ragq_ctx_t    *ctx;
    ngx_http_ragq_stream_t *s;

    if (c->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT, "client timed out");
        c->timedout = 1;
        ngx_http_ragq_finalize(r, NGX_ERROR);
        return;
    }

    if (!r->header_sent) {
        return;
    }

    out = NULL;

    if (ngx_http_output_filter(r, NULL) == NGX_ERROR
        || ngx_http_ragq_stream_send_timer(r, 1) != NGX_OK)
    {
        ngx_http_ragq_finalize(r, NGX_ERROR);
        return;
    }

    ctx = ngx_http_ragq_ctx(r);
    s = ctx ? ctx->stream : NULL;

    if (s == NULL || s->request != r) {
        return;
    }

    ngx_chain_update_chains(r->pool, &s->free, &s->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_ragq_module);

    if (s->behind
        && !ngx_http_ragq_stream_full(s, NGX_HTTP_RAGQ_STREAM_BACKLOG / 2))
    {
        /* the client took half of its backlog: what it missed, from Valkey */
        s->behind = 0;
        ngx_http_ragq_stream_resync(s);
    }
}


/* Last-Event-ID (header, else last_event_id=): NGX_DECLINED if not N */
static ngx_int_t
ngx_http_ragq_stream_resume(ngx_http_request_t *r, ngx_str_t *arg,
                            uint64_t *last)
{
    u_char          *p, *end;
    uint64_t         n;
    ngx_str_t        v;
    ngx_table_elt_t *h;

    *last = 0;

    h = ngx_http_ragq_find_header(r, "Last-Event-ID", 13);

    if (h) {
        v = h->value;

    } else if (arg->data) {
        v = *arg;

    } else {
        return NGX_OK;
    }

    if (v.len == 0 || v.len > 19) {
        return NGX_DECLINED;
    }

    end = v.data + v.len;

    for (n = 0, p = v.data; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        n = n * 10 + (*p - '0');
    }

    *last = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_stream_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    uint64_t                  last;
    ngx_int_t                 rc;
    ngx_str_t                 id, key, tenant;
    ngx_http_cleanup_t       *cln;
    ngx_http_ragq_arg_t       args[2];
    ngx_http_ragq_ctx_t      *ctx;
    ngx_http_ragq_sjob_t     *sj;
    ngx_http_ragq_stream_t   *s;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method != NGX_HTTP_GET) {
        return ngx_http_ragq_not_allowed(r, "GET",
                                         "use GET to stream a job's answer");
    }

    ngx_str_set(&args[1].name, "last_event_id");

    if (ngx_http_ragq_job_args(r, lcf, &tenant, args, 2, "/job-stream", &rc)
        != NGX_OK)
    {
        return rc;
    }

    id = args[0].value;

    if (ngx_http_ragq_stream_resume(r, &args[1].value, &last) != NGX_OK) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST,
                                   "invalid_last_event_id",
                                   "Last-Event-ID (or last_event_id) must be "
                                   "the id of an event of this stream");
    }

    rc = ngx_http_ragq_valkey_available();
    if (rc != NGX_OK) {
        return ngx_http_ragq_unavailable(r, rc);
    }

    /* pieces come only by pub/sub: without it, nothing would */
    if (!ngx_http_ragq_pubsub_ready()) {
        return ngx_http_ragq_unavailable(r, NGX_DECLINED);
    }

    s = ngx_pcalloc(r->pool, sizeof(ngx_http_ragq_stream_t));
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* P:out:ID */
    key.len = lcf->prefix.len + 5 + NGX_HTTP_RAGQ_JOB_ID_LEN;
    key.data = ngx_pnalloc(r->pool, key.len);
    if (key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(key.data, lcf->prefix.data, lcf->prefix.len);
    p = ngx_http_ragq_lit(p, ":out:");
    ngx_memcpy(p, id.data, NGX_HTTP_RAGQ_JOB_ID_LEN);

    sj = ngx_http_ragq_sjob_get(&key, r->connection->log);
    if (sj == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->request = r;
    s->cleanup = cln;
    s->lcf = lcf;
    s->sjob = sj;
    s->last = last;
    s->step = NGX_HTTP_RAGQ_READ_HASH;
    ngx_memcpy(s->job_id, id.data, NGX_HTTP_RAGQ_JOB_ID_LEN);

    ctx = ngx_http_ragq_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->stream = s;

    ngx_http_ragq_stream_link(s);
    ngx_http_ragq_metrics_streaming(r);

    /* cancelable: a graceful shutdown ends the streams itself */
    s->timer.handler = ngx_http_ragq_stream_timer;
    s->timer.data = s;
    s->timer.log = r->connection->log;
    s->timer.cancelable = 1;
    ngx_add_timer(&s->timer, lcf->valkey_timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: stream of %V after piece %uL", &key, last);

    /* subscribed first, then read: nothing falls between the two */
    if (sj->acked) {
        rc = ngx_http_ragq_stream_sync(s);

        if (rc != NGX_OK) {
            (void) ngx_http_ragq_stream_take(s);
            return rc == NGX_DECLINED
                       ? ngx_http_ragq_unavailable(r, NGX_DECLINED)
                       : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_ragq_stream_writer;

    r->main->count++;

    return NGX_DONE;
}
