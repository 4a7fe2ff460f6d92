/*
 * ragq: answer streams, per nginx worker: the table of streamed jobs, each
 * subscribed once on the pub/sub connection (SUBSCRIBE P:out:ID when its
 * first stream comes, UNSUBSCRIBE when its last leaves); the batches of
 * pieces published on P:out:ID, sent to the streams as they come; the
 * syncs that P:events, a (re)subscription or a reconnection call for; the
 * end of every stream at graceful shutdown and at exit.
 */

#include "ngx_http_ragq_stream_int.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_json.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_metrics.h"
#include "ngx_http_ragq_vars.h"


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


ngx_http_ragq_sjob_t *
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


ngx_http_request_t *
ngx_http_ragq_stream_take(ngx_http_ragq_stream_t *s)
{
    ngx_http_request_t *r = s->request;

    s->cleanup->handler = NULL;
    ngx_http_ragq_stream_unlink(s);

    return r;
}


/* s (its sjob and cleanup set) joins its job's streams and the worker's */
void
ngx_http_ragq_stream_link(ngx_http_ragq_stream_t *s)
{
    ngx_queue_insert_tail(&s->sjob->streams, &s->q);
    ngx_queue_insert_tail(&ngx_http_ragq_streams, &s->all);

    s->cleanup->handler = ngx_http_ragq_stream_cleanup;
    s->cleanup->data = s;
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

    if (s->behind || ngx_http_ragq_stream_full(s, NGX_HTTP_RAGQ_STREAM_BACKLOG))
    {
        /*
         * The client has not taken what it has: the batch stays in
         * P:out:ID, read by a sync when the client has caught up
         */
        if (!s->behind) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->timer.log, 0,
                           "ragq: client behind on %V, pieces left in valkey",
                           &s->sjob->sn.str);
            s->behind = 1;
        }

        if (!ngx_http_ragq_stream_full(s, NGX_HTTP_RAGQ_STREAM_BACKLOG / 2)) {
            ngx_http_ragq_stream_resync(s);
        }

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
