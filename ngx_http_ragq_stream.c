/*
 * ragq: answer streams, GET /job-stream?job_id=ID (Server-Sent Events).
 * Per nginx worker, the table of streamed jobs, each subscribed once on the
 * pub/sub connection (SUBSCRIBE P:out:ID when its first stream comes,
 * UNSUBSCRIBE when its last leaves); the "sync" of a stream (one MULTI of
 * the job read and XRANGE P:out:ID (0-LAST +) that starts it, fills gaps and
 * ends it with done; the pieces published between syncs, sent as they come;
 * heartbeats; the end of every stream at graceful shutdown.
 */

#include "ngx_http_ragq_stream.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_json.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_metrics.h"
#include "ngx_http_ragq_vars.h"


/* what a client waits before it reconnects after a stream was cut */
#define NGX_HTTP_RAGQ_STREAM_RETRY "retry: 1000\n\n"

/* the size of an event buffer, unless one event needs more */
#define NGX_HTTP_RAGQ_STREAM_BUF 512


/*
 * A streamed job: the channel P:out:ID (also the stream's key) and the
 * streams of this worker on it. Allocated with its key, freed with its last
 * stream, or when its last SUBSCRIBE is acknowledged if that comes later
 * (so that an acknowledgement is never taken for a later SUBSCRIBE's).
 */
typedef struct {
    ngx_str_node_t sn; /* key: P:out:ID */
    ngx_queue_t    streams;
    ngx_uint_t     subs;      /* SUBSCRIBEs not acknowledged yet */
    unsigned       acked : 1; /* the SUBSCRIBE is in effect */
} ngx_http_ragq_sjob_t;


/* a stream; lives in its request's pool: the cleanup unlinks it */
typedef struct {
    ngx_http_request_t       *request; /* NULL once ended or gone */
    ngx_http_cleanup_t       *cleanup;
    ngx_http_ragq_loc_conf_t *lcf;
    ngx_http_ragq_sjob_t     *sjob;
    ngx_http_ragq_cell_t     *cell; /* the sync in flight */
    ngx_chain_t              *out;  /* the buffer being filled */
    ngx_chain_t              *free; /* buffers written out, to reuse */
    ngx_chain_t              *busy; /* buffers nginx still writes */
    ngx_queue_t               q;    /* in sjob->streams */
    ngx_queue_t               all;
    ngx_event_t               timer; /* the start deadline, then heartbeats */
    uint64_t                  last;  /* the last piece sent */
    u_char                    job_id[NGX_HTTP_RAGQ_JOB_ID_LEN];
    u_char                    step;   /* of the job read */
    u_char                    status; /* last sent: 0, 'q'ueued, 's'tarted */
    unsigned                  started : 1; /* the 200 is sent */
    unsigned                  again : 1;   /* sync again after this one */
} ngx_http_ragq_stream_t;


static void ngx_http_ragq_stream_reply(ngx_http_ragq_cell_t *cell,
                                       redisReply           *reply);
static void ngx_http_ragq_stream_deadline(ngx_event_t *ev);


static ngx_rbtree_t      ngx_http_ragq_sjobs;
static ngx_rbtree_node_t ngx_http_ragq_sjobs_sentinel;
static ngx_queue_t       ngx_http_ragq_streams;
static ngx_flag_t        ngx_http_ragq_stream_initialized;
static ngx_uint_t        ngx_http_ragq_stream_generation;

/* the long-polls' hooks, called first */
static ngx_http_ragq_pubsub_t ngx_http_ragq_stream_next;


/* ---- the table of streamed jobs ---- */


static ngx_http_ragq_sjob_t *
ngx_http_ragq_sjob_lookup(u_char *key, size_t len)
{
    ngx_str_t k;

    k.data = key;
    k.len = len;

    return (ngx_http_ragq_sjob_t *) ngx_str_rbtree_lookup(
        &ngx_http_ragq_sjobs, &k, ngx_crc32_short(key, len));
}


static void
ngx_http_ragq_sjob_subscribe(ngx_http_ragq_sjob_t *sj)
{
    if (ngx_http_ragq_pubsub_subscribe(&sj->sn.str, 1) == NGX_OK) {
        sj->subs++;
    }
}


/* no stream left: unsubscribe, unless a SUBSCRIBE is still unanswered */
static void
ngx_http_ragq_sjob_release(ngx_http_ragq_sjob_t *sj)
{
    if (sj->subs) {
        return;
    }

    if (sj->acked) {
        (void) ngx_http_ragq_pubsub_subscribe(&sj->sn.str, 0);
    }

    ngx_rbtree_delete(&ngx_http_ragq_sjobs, &sj->sn.node);
    ngx_free(sj);
}


static ngx_http_ragq_sjob_t *
ngx_http_ragq_sjob_get(ngx_str_t *key, ngx_log_t *log)
{
    ngx_http_ragq_sjob_t *sj;

    sj = ngx_http_ragq_sjob_lookup(key->data, key->len);
    if (sj) {
        return sj;
    }

    sj = ngx_alloc(sizeof(ngx_http_ragq_sjob_t) + key->len, log);
    if (sj == NULL) {
        return NULL;
    }

    sj->sn.str.len = key->len;
    sj->sn.str.data = (u_char *) (sj + 1);
    ngx_memcpy(sj->sn.str.data, key->data, key->len);
    sj->sn.node.key = ngx_crc32_short(key->data, key->len);
    ngx_queue_init(&sj->streams);
    sj->acked = 0;
    sj->subs = 0;
    ngx_rbtree_insert(&ngx_http_ragq_sjobs, &sj->sn.node);

    /* when not ready, ready() subscribes it with the others */
    ngx_http_ragq_sjob_subscribe(sj);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0, "ragq: subscribing to %V",
                   &sj->sn.str);

    return sj;
}


static void
ngx_http_ragq_stream_unlink(ngx_http_ragq_stream_t *s)
{
    ngx_http_ragq_sjob_t *sj = s->sjob;

    s->request = NULL;

    if (sj) {
        ngx_queue_remove(&s->q);
        s->sjob = NULL;

        if (ngx_queue_empty(&sj->streams)) {
            ngx_http_ragq_sjob_release(sj);
        }
    }

    ngx_queue_remove(&s->all);
    ngx_http_ragq_metrics_streamed();

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (s->cell) {
        /* its reply (or the disconnect) frees it */
        (void) ngx_http_ragq_cell_take(s->cell);
        s->cell = NULL;
    }
}


/* request cleanup: the client left, or the request ends otherwise */
static void
ngx_http_ragq_stream_cleanup(void *data)
{
    ngx_http_ragq_stream_t *s = data;

    if (s->request) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->timer.log, 0,
                       "ragq: stream of %V left", &s->sjob->sn.str);
        ngx_http_ragq_stream_unlink(s);
    }
}


static ngx_http_request_t *
ngx_http_ragq_stream_take(ngx_http_ragq_stream_t *s)
{
    ngx_http_request_t *r = s->request;

    s->cleanup->handler = NULL;
    ngx_http_ragq_stream_unlink(s);

    return r;
}


/* ---- events ---- */


/*
 * r's body so far (the buffer of ngx_http_ragq_stream_buf()); NGX_ERROR:
 * the request is gone (s too)
 */
static ngx_int_t
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

    /* the buffers written out are used again: a long answer does not
     * grow the request's pool by its size */
    ngx_chain_update_chains(r->pool, &s->free, &s->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_ragq_module);

    return NGX_OK;
}


/* room for len bytes of events, for ngx_http_ragq_stream_send() */
static ngx_buf_t *
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
static void
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
static void
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
static size_t
ngx_http_ragq_piece_len(u_char *text, size_t len)
{
    return sizeof(NGX_HTTP_RAGQ_TOKEN_HEAD) + NGX_INT64_LEN
           + sizeof(NGX_HTTP_RAGQ_TOKEN_DATA)
           + ngx_http_ragq_json_escape_len(text, len) + 4;
}


static u_char *
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
static ngx_int_t
ngx_http_ragq_stream_sync(ngx_http_ragq_stream_t *s)
{
    u_char                   *p, *e;
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf = s->lcf;
    u_char                    last[NGX_INT64_LEN + 3];
    u_char                    entry[2 * NGX_INT64_LEN + 2];
    u_char                    cmd[3 * NGX_HTTP_RAGQ_KEY_MAX + 256];

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

    p = ngx_http_ragq_lit(p, "*4\r\n$6\r\nXRANGE\r\n");
    p = ngx_http_ragq_resp_bulk(p, s->sjob->sn.str.data, s->sjob->sn.str.len);
    e = ngx_sprintf(last, "(0-%uL", s->last);
    p = ngx_http_ragq_resp_bulk(p, last, e - last);
    p = ngx_http_ragq_lit(p, "$1\r\n+\r\n*1\r\n$4\r\nEXEC\r\n");

    if (ngx_http_ragq_valkey_send_n(cell, cmd, p - cmd, 4) != NGX_OK) {
        ngx_http_ragq_cell_drop(cell);
        return NGX_DECLINED;
    }

    /* non-cancelable, as every request's: a graceful shutdown waits */
    cell->deadline.handler = ngx_http_ragq_stream_deadline;
    ngx_add_timer(&cell->deadline, lcf->valkey_timeout);

    s->cell = cell;

    return NGX_OK;
}


/* a sync to send now; a stream that cannot have one ends */
static void
ngx_http_ragq_stream_resync(ngx_http_ragq_stream_t *s)
{
    ngx_int_t rc;

    rc = ngx_http_ragq_stream_sync(s);

    if (rc == NGX_OK || (rc == NGX_DECLINED && s->started)) {
        /* a stream with its 200 sent waits for ready() */
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

        } else {
            continue;
        }

        last = seq;
    }

    if (p) {
        s->last = last;
    }

    return p;
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

    ngx_http_ragq_stream_fail(s, ngx_http_ragq_timed_out(s->request));
}


static void
ngx_http_ragq_stream_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    u_char                   *p;
    size_t                    len;
    ngx_int_t                 rc;
    ngx_str_t                 view;
    ngx_buf_t                *b;
    ngx_uint_t                step, final;
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
        if (reply == NULL && s->started) {
            /* the connection went: ready() syncs again when it is back */
            return;
        }

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

    ngx_str_null(&view);

    if (final
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
          + (final ? sizeof("event: done\ndata: \n\n") + view.len : 0);
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

    if (final) {
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


/* ---- what the pub/sub connection says ---- */


/*
 * A batch "<seq>:<kind>:<len>:<bytes>..." on P:out:ID for stream s: the
 * pieces after the last one sent, in order; a gap (a batch missed, or the
 * stream not started yet) makes a sync instead.
 */
static void
ngx_http_ragq_stream_batch(ngx_http_ragq_stream_t *s, u_char *msg, size_t len)
{
    u_char    *p, *end, *text, kind;
    size_t     n, room;
    uint64_t   seq, last;
    ngx_buf_t *b;

    if (!s->started || s->cell) {
        /* the sync in flight may have read before this batch */
        (void) ngx_http_ragq_stream_sync(s);
        return;
    }

    end = msg + len;
    room = 0;
    last = s->last;

    /* twice: the room, then the events */
    for (b = NULL; /* void */; /* void */) {
        for (p = msg; p < end; /* void */) {
            for (seq = 0; p < end && *p >= '0' && *p <= '9'; p++) {
                if (seq > (UINT64_MAX - 9) / 10) {
                    goto malformed;
                }

                seq = seq * 10 + (*p - '0');
            }

            if (end - p < 4 || *p != ':' || p[2] != ':') {
                goto malformed;
            }

            kind = p[1];

            for (n = 0, p += 3; p < end && *p >= '0' && *p <= '9'; p++) {
                if (n > len) {
                    goto malformed;
                }

                n = n * 10 + (*p - '0');
            }

            if (p == end || *p != ':' || (size_t) (end - p - 1) < n) {
                goto malformed;
            }

            text = p + 1;
            p = text + n;

            if (seq <= last) {
                continue;
            }

            if (seq != last + 1 || (kind != 't' && kind != 'r')) {
                /* missed: the XRANGE of a sync has them */
                if (b == NULL) {
                    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s->timer.log, 0,
                                   "ragq: piece %uL after %uL, reading the gap",
                                   seq, last);
                }

                s->again = 1;
                break;
            }

            if (b) {
                b->last =
                    ngx_http_ragq_piece(b->last, seq, text, n, kind == 'r');
            } else {
                room += ngx_http_ragq_piece_len(text, n);
            }

            last = seq;
        }

        if (b || room == 0) {
            break;
        }

        b = ngx_http_ragq_stream_buf(s, room);
        if (b == NULL) {
            ngx_http_ragq_finalize(ngx_http_ragq_stream_take(s), NGX_ERROR);
            return;
        }

        last = s->last;
        end = msg + len;
    }

    if (b) {
        s->last = last;

        if (ngx_http_ragq_stream_send(s, b, 0) != NGX_OK) {
            return;
        }
    }

    if (s->again) {
        s->again = 0;
        ngx_http_ragq_stream_resync(s);
    }

    return;

malformed:

    ngx_log_error(NGX_LOG_WARN, s->timer.log, 0,
                  "ragq: malformed message on %V, reading the stream",
                  &s->sjob->sn.str);

    ngx_http_ragq_stream_resync(s);
}


/* calls handler for every stream of sj; handler may end any of them */
static void
ngx_http_ragq_sjob_each(ngx_http_ragq_sjob_t *sj,
                        void (*handler)(ngx_http_ragq_stream_t *s, u_char *msg,
                                        size_t len),
                        u_char *msg, size_t len)
{
    ngx_flag_t              last;
    ngx_queue_t            *q, *next;
    ngx_http_ragq_stream_t *s;

    if (ngx_queue_empty(&sj->streams)) {
        return;
    }

    /* the job entry goes with its last stream: no look back */
    for (q = ngx_queue_head(&sj->streams); /* void */; q = next) {
        next = ngx_queue_next(q);
        last = (next == ngx_queue_sentinel(&sj->streams));
        s = ngx_queue_data(q, ngx_http_ragq_stream_t, q);

        handler(s, msg, len);

        if (last) {
            break;
        }
    }
}


static void
ngx_http_ragq_stream_resync_each(ngx_http_ragq_stream_t *s, u_char *msg,
                                 size_t len)
{
    ngx_http_ragq_stream_resync(s);
}


/* a message on a channel of ours: P:out:ID */
static void
ngx_http_ragq_stream_other(ngx_http_ragq_pubsub_t *ps, u_char *channel,
                           size_t clen, u_char *msg, size_t len)
{
    ngx_http_ragq_sjob_t *sj;

    sj = ngx_http_ragq_sjob_lookup(channel, clen);

    if (sj && sj->acked) {
        ngx_http_ragq_sjob_each(sj, ngx_http_ragq_stream_batch, msg, len);
    }
}


/* SUBSCRIBE P:out:ID took effect: its streams read what came before */
static void
ngx_http_ragq_stream_subscribed(ngx_http_ragq_pubsub_t *ps, u_char *channel,
                                size_t len)
{
    ngx_http_ragq_sjob_t *sj;

    sj = ngx_http_ragq_sjob_lookup(channel, len);
    if (sj == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: subscribed to %V", &sj->sn.str);

    if (sj->subs && --sj->subs) {
        /* another SUBSCRIBE is on its way: the last one counts */
        return;
    }

    sj->acked = 1;

    if (ngx_queue_empty(&sj->streams)) {
        ngx_http_ragq_sjob_release(sj);
        return;
    }

    ngx_http_ragq_sjob_each(sj, ngx_http_ragq_stream_resync_each, NULL, 0);
}


/* "ID STATUS" on P:events: the streams of job ID read its state */
static void
ngx_http_ragq_stream_message(ngx_http_ragq_pubsub_t  *ps,
                             ngx_http_ragq_channel_t *ch, u_char *msg,
                             size_t len)
{
    u_char               *p;
    size_t                plen;
    ngx_http_ragq_sjob_t *sj;
    u_char                key[NGX_HTTP_RAGQ_KEY_MAX];

    ngx_http_ragq_stream_next.message(ps, ch, msg, len);

    /* P:events -> P:out:ID */
    plen = ch->channel.len - (sizeof(":events") - 1);

    if (len < NGX_HTTP_RAGQ_JOB_ID_LEN + 2
        || msg[NGX_HTTP_RAGQ_JOB_ID_LEN] != ' '
        || plen + 5 + NGX_HTTP_RAGQ_JOB_ID_LEN > NGX_HTTP_RAGQ_KEY_MAX)
    {
        return;
    }

    p = ngx_cpymem(key, ch->channel.data, plen);
    p = ngx_http_ragq_lit(p, ":out:");
    p = ngx_cpymem(p, msg, NGX_HTTP_RAGQ_JOB_ID_LEN);

    sj = ngx_http_ragq_sjob_lookup(key, p - key);

    if (sj && sj->acked) {
        ngx_http_ragq_sjob_each(sj, ngx_http_ragq_stream_resync_each, NULL, 0);
    }
}


/*
 * (Re)subscribed: a new pub/sub connection has none of the jobs'
 * subscriptions; subscribe every streamed job again (its acknowledgement
 * syncs its streams, so what was published meanwhile is read, nothing
 * twice). The same connection with the command connection back: every
 * stream syncs (a sync may have been lost with it).
 */
static void
ngx_http_ragq_stream_ready(ngx_http_ragq_pubsub_t *ps)
{
    ngx_uint_t            gen;
    ngx_rbtree_node_t    *node, *next, *root, *sentinel;
    ngx_http_ragq_sjob_t *sj;

    ngx_http_ragq_stream_next.ready(ps);

    gen = ngx_http_ragq_pubsub_generation();

    sentinel = ngx_http_ragq_sjobs.sentinel;
    root = ngx_http_ragq_sjobs.root;

    if (root == sentinel) {
        ngx_http_ragq_stream_generation = gen;
        return;
    }

    /* a job entry may be freed on the way: step ahead first */
    for (node = ngx_rbtree_min(root, sentinel); node; node = next) {
        next = ngx_rbtree_next(&ngx_http_ragq_sjobs, node);
        sj = (ngx_http_ragq_sjob_t *) node;

        if (gen == ngx_http_ragq_stream_generation) {
            if (sj->acked) {
                ngx_http_ragq_sjob_each(sj, ngx_http_ragq_stream_resync_each,
                                        NULL, 0);
            }

            continue;
        }

        /* the old connection's acknowledgements will never come */
        sj->subs = 0;
        sj->acked = 0;

        if (ngx_queue_empty(&sj->streams)) {
            ngx_http_ragq_sjob_release(sj);
            continue;
        }

        ngx_http_ragq_sjob_subscribe(sj);
    }

    ngx_http_ragq_stream_generation = gen;
}


/*
 * Graceful shutdown: every stream ends now with "retry:" (a stream whose
 * sync is in flight, when its reply comes); a client resumes with its
 * Last-Event-ID on another worker.
 */
static void
ngx_http_ragq_stream_closing(ngx_http_ragq_pubsub_t *ps)
{
    ngx_queue_t            *q, *next;
    ngx_http_ragq_stream_t *s;

    ngx_http_ragq_stream_next.closing(ps);

    for (q = ngx_queue_head(&ngx_http_ragq_streams);
         q != ngx_queue_sentinel(&ngx_http_ragq_streams); q = next)
    {
        next = ngx_queue_next(q);
        s = ngx_queue_data(q, ngx_http_ragq_stream_t, all);

        if (s->cell) {
            continue;
        }

        /* may free the next one's job entry, not the next stream */
        if (s->started) {
            ngx_http_ragq_stream_cut(s);

        } else {
            ngx_http_ragq_stream_fail(s,
                                      ngx_http_ragq_unavailable(s->request,
                                                                NGX_DECLINED));
        }
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
            ngx_http_ragq_stream_fail(s, ngx_http_ragq_timed_out(s->request));
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
}


/* the client can take more of what is buffered */
static void
ngx_http_ragq_stream_writer(ngx_http_request_t *r)
{
    if (r->header_sent && ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        ngx_http_ragq_finalize(r, NGX_ERROR);
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

    ngx_queue_insert_tail(&sj->streams, &s->q);
    ngx_queue_insert_tail(&ngx_http_ragq_streams, &s->all);
    ngx_http_ragq_metrics_streaming(r);

    cln->handler = ngx_http_ragq_stream_cleanup;
    cln->data = s;

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


/* ---- the process ---- */


void
ngx_http_ragq_stream_init(ngx_http_ragq_pubsub_t *pubsub)
{
    ngx_rbtree_init(&ngx_http_ragq_sjobs, &ngx_http_ragq_sjobs_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_http_ragq_streams);
    ngx_http_ragq_stream_initialized = 1;

    /* the long-polls' hooks go on being called, first */
    ngx_http_ragq_stream_next = *pubsub;

    pubsub->message = ngx_http_ragq_stream_message;
    pubsub->ready = ngx_http_ragq_stream_ready;
    pubsub->closing = ngx_http_ragq_stream_closing;
    pubsub->subscribed = ngx_http_ragq_stream_subscribed;
    pubsub->other = ngx_http_ragq_stream_other;
}


/* the process dies: release the requests without answering */
void
ngx_http_ragq_stream_exit(void)
{
    ngx_queue_t            *q;
    ngx_http_ragq_sjob_t   *sj;
    ngx_http_ragq_stream_t *s;

    if (!ngx_http_ragq_stream_initialized) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_ragq_streams)) {
        q = ngx_queue_head(&ngx_http_ragq_streams);
        s = ngx_queue_data(q, ngx_http_ragq_stream_t, all);
        (void) ngx_http_ragq_stream_take(s);
    }

    /* jobs kept for an acknowledgement that will not come now */
    while (ngx_http_ragq_sjobs.root != ngx_http_ragq_sjobs.sentinel) {
        sj = (ngx_http_ragq_sjob_t *) ngx_rbtree_min(
            ngx_http_ragq_sjobs.root, ngx_http_ragq_sjobs.sentinel);
        ngx_rbtree_delete(&ngx_http_ragq_sjobs, &sj->sn.node);
        ngx_free(sj);
    }

    ngx_http_ragq_stream_initialized = 0;
}
