/*
 * ragq: long-polls, GET /job-status?wait=N. Per nginx worker, the table of
 * jobs that have waiting requests, woken by the "ID STATUS" messages of the
 * pub/sub connection (ngx_http_ragq_valkey.c), each job read once
 * however many wait on it (its hash, else its queue entry:
 * ngx_http_ragq_job_read()); the catch-up after a (re)subscription;
 * and the answers at graceful shutdown and exit.
 */

#include "ngx_http_ragq_longpoll.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_metrics.h"


/*
 * Per worker: a table of jobs that have waiters, keyed by the job's hash key
 * (P:job:ID, so that two prefixes never mix), each with its queue of waiting
 * requests. A waiter is always in that table while it waits, and at most in
 * one pending read at a time (a read of several steps moves its waiters
 * from step to step). A read either checks (waiters stay
 * in the table unless the job is final, gone or not theirs) or wakes (every
 * waiter is answered with whatever the reply holds). Waiters live in their
 * request's pool: the request cleanup unlinks them from everything, so
 * nothing outside points to a dead one. Their number is bounded by
 * worker_connections, since each holds a client connection.
 */

typedef struct {
    ngx_str_node_t sn; /* key: P:job:ID */
    ngx_queue_t    waiters;
} ngx_http_ragq_job_t;


typedef struct {
    ngx_http_request_t       *request; /* NULL once answered or gone */
    ngx_http_cleanup_t       *cleanup;
    ngx_http_ragq_loc_conf_t *lcf;
    ngx_http_ragq_job_t      *job; /* NULL when not in the table */
    ngx_queue_t               tq;  /* in job->waiters */
    ngx_queue_t               rq;  /* in a read's waiters */
    ngx_queue_t               all;
    ngx_event_t               timer; /* the wait, then the read deadline */
    u_char                    job_id[NGX_HTTP_RAGQ_JOB_ID_LEN];
    unsigned                  in_read : 1;
    unsigned                  woken : 1;
} ngx_http_ragq_waiter_t;


typedef struct {
    ngx_http_ragq_cell_t cell; /* first: the valkey layer frees it as one */
    ngx_queue_t          waiters;
    ngx_flag_t           wake;
    ngx_flag_t           catchup;  /* a failed read leaves waiters waiting */
    ngx_str_t            key;      /* P:job:ID */
    ngx_uint_t           step;     /* NGX_HTTP_RAGQ_READ_* */
    u_char              *id;       /* the key's last characters */
    ngx_http_ragq_loc_conf_t *lcf; /* one of its waiters': the commands */
} ngx_http_ragq_read_t;


static void ngx_http_ragq_lp_message(ngx_http_ragq_pubsub_t  *ps,
                                     ngx_http_ragq_channel_t *ch, u_char *msg,
                                     size_t len);
static void ngx_http_ragq_lp_ready(ngx_http_ragq_pubsub_t *ps);
static void ngx_http_ragq_lp_closing(ngx_http_ragq_pubsub_t *ps);


static ngx_rbtree_t      ngx_http_ragq_jobs;
static ngx_rbtree_node_t ngx_http_ragq_jobs_sentinel;
static ngx_queue_t       ngx_http_ragq_all_waiters;
static ngx_flag_t        ngx_http_ragq_lp_initialized;


/* the waiter table of this worker, woken by the events of pubsub */
void
ngx_http_ragq_lp_init(ngx_http_ragq_pubsub_t *pubsub)
{
    ngx_rbtree_init(&ngx_http_ragq_jobs, &ngx_http_ragq_jobs_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_http_ragq_all_waiters);
    ngx_http_ragq_lp_initialized = 1;

    pubsub->message = ngx_http_ragq_lp_message;
    pubsub->ready = ngx_http_ragq_lp_ready;
    pubsub->closing = ngx_http_ragq_lp_closing;
}


static void
ngx_http_ragq_waiter_untable(ngx_http_ragq_waiter_t *w)
{
    ngx_http_ragq_job_t *job = w->job;

    if (job == NULL) {
        return;
    }

    ngx_queue_remove(&w->tq);
    w->job = NULL;

    if (ngx_queue_empty(&job->waiters)) {
        ngx_rbtree_delete(&ngx_http_ragq_jobs, &job->sn.node);
        ngx_free(job);
    }
}


static void
ngx_http_ragq_waiter_unread(ngx_http_ragq_waiter_t *w)
{
    if (w->in_read) {
        ngx_queue_remove(&w->rq);
        w->in_read = 0;
    }
}


static void
ngx_http_ragq_waiter_unlink(ngx_http_ragq_waiter_t *w)
{
    w->request = NULL;

    ngx_http_ragq_waiter_untable(w);
    ngx_http_ragq_waiter_unread(w);
    ngx_queue_remove(&w->all);
    ngx_http_ragq_metrics_waited();

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}


/* request cleanup: the client left (or the request ends otherwise) */
static void
ngx_http_ragq_waiter_cleanup(void *data)
{
    ngx_http_ragq_waiter_t *w = data;

    if (w->request) {
        ngx_http_ragq_waiter_unlink(w);
    }
}


static ngx_http_request_t *
ngx_http_ragq_waiter_take(ngx_http_ragq_waiter_t *w)
{
    ngx_http_request_t *r = w->request;

    w->cleanup->handler = NULL;
    ngx_http_ragq_waiter_unlink(w);

    return r;
}


static void
ngx_http_ragq_waiter_answer(ngx_http_ragq_waiter_t *w, redisReply *reply)
{
    ngx_http_request_t *r;

    /* w lives in r->pool, so it is still readable until the finalize */
    r = ngx_http_ragq_waiter_take(w);

    ngx_http_ragq_finalize(r, ngx_http_ragq_job_respond(r, w->lcf, w->job_id,
                                                        reply));
}


static void
ngx_http_ragq_waiter_fail(ngx_http_ragq_waiter_t *w, ngx_int_t why)
{
    ngx_http_request_t *r;

    r = ngx_http_ragq_waiter_take(w);

    ngx_http_ragq_finalize(r, ngx_http_ragq_unavailable(r, why));
}


/* true when a check read must answer the waiter now */
static ngx_flag_t
ngx_http_ragq_waiter_done(ngx_http_ragq_waiter_t *w, redisReply *reply)
{
    redisReply *status;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || ngx_http_ragq_job_visible(w->request, w->lcf, reply) != NGX_OK)
    {
        return 1;
    }

    status = ngx_http_ragq_job_field(reply, "status", 6);

    return status && status->type == REDIS_REPLY_STRING
           && ngx_http_ragq_job_final((u_char *) status->str, status->len);
}


static void ngx_http_ragq_read_next(ngx_http_ragq_read_t *rd, ngx_uint_t step);


static void
ngx_http_ragq_read_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    ngx_uint_t                step;
    ngx_queue_t              *q;
    ngx_http_ragq_read_t     *rd = (ngx_http_ragq_read_t *) cell;
    ngx_http_ragq_waiter_t   *w;
    ngx_http_ragq_job_entry_t je;

    step = rd->step;

    if (reply
        && ngx_http_ragq_job_found(rd->id, &step, reply, &je, &reply)
               == NGX_AGAIN)
    {
        ngx_http_ragq_read_next(rd, step);
        return;
    }

    /*
     * Answering one waiter may end its request and run its cleanup, so the
     * queue is re-read from its head every time.
     */
    while (!ngx_queue_empty(&rd->waiters)) {
        q = ngx_queue_head(&rd->waiters);
        w = ngx_queue_data(q, ngx_http_ragq_waiter_t, rq);

        if (rd->catchup && (reply == NULL || reply->type == REDIS_REPLY_ERROR))
        {
            /* their wait timers still end them with a fresh read */
            ngx_http_ragq_waiter_unread(w);

        } else if (rd->wake || ngx_http_ragq_waiter_done(w, reply)) {
            ngx_http_ragq_waiter_answer(w, reply);

        } else {
            /* still running: keep waiting for its event */
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->timer.log, 0,
                           "ragq: job %*s not final yet, waiting on",
                           (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, w->job_id);

            ngx_http_ragq_waiter_unread(w);
        }
    }
}


static ngx_http_ragq_read_t *
ngx_http_ragq_read_create(ngx_str_t *key, ngx_flag_t wake,
                          ngx_http_ragq_loc_conf_t *lcf)
{
    ngx_http_ragq_read_t *rd;

    rd = ngx_calloc(sizeof(ngx_http_ragq_read_t) + key->len, ngx_cycle->log);
    if (rd == NULL) {
        return NULL;
    }

    rd->cell.handler = ngx_http_ragq_read_reply;
    rd->wake = wake;
    rd->key.len = key->len;
    rd->key.data = (u_char *) (rd + 1);
    ngx_memcpy(rd->key.data, key->data, key->len);
    rd->id = rd->key.data + key->len - NGX_HTTP_RAGQ_JOB_ID_LEN;
    rd->lcf = lcf;
    ngx_queue_init(&rd->waiters);

    return rd;
}


static void ngx_http_ragq_waiter_deadline(ngx_event_t *ev);


static void
ngx_http_ragq_read_add(ngx_http_ragq_read_t *rd, ngx_http_ragq_waiter_t *w)
{
    ngx_http_ragq_waiter_unread(w);

    ngx_queue_insert_tail(&rd->waiters, &w->rq);
    w->in_read = 1;

    if (!rd->wake) {
        return;
    }

    /* a woken waiter no longer hears events; its timer now bounds the read */
    ngx_http_ragq_waiter_untable(w);

    w->woken = 1;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    w->timer.handler = ngx_http_ragq_waiter_deadline;
    ngx_add_timer(&w->timer, w->lcf->valkey_timeout);
}


static ngx_int_t
ngx_http_ragq_read_send(ngx_http_ragq_read_t *rd)
{
    return ngx_http_ragq_job_read(&rd->cell, rd->lcf, rd->id, rd->step);
}


/*
 * The job is not in its hash (or no longer in its entry): its waiters go
 * on to the next step of the read (one that cannot be sent answers them as
 * a lost reply would).
 */
static void
ngx_http_ragq_read_next(ngx_http_ragq_read_t *rd, ngx_uint_t step)
{
    ngx_queue_t            *q;
    ngx_http_ragq_read_t   *next;
    ngx_http_ragq_waiter_t *w;

    next = (ngx_http_ragq_valkey_available() == NGX_OK)
               ? ngx_http_ragq_read_create(&rd->key, rd->wake, rd->lcf)
               : NULL;

    if (next == NULL) {
        ngx_http_ragq_read_reply(&rd->cell, NULL);
        return;
    }

    next->catchup = rd->catchup;
    next->step = step;

    while (!ngx_queue_empty(&rd->waiters)) {
        q = ngx_queue_head(&rd->waiters);
        w = ngx_queue_data(q, ngx_http_ragq_waiter_t, rq);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&next->waiters, &w->rq);
    }

    if (ngx_http_ragq_read_send(next) != NGX_OK) {
        ngx_http_ragq_read_reply(&next->cell, NULL);
        ngx_free(next);
    }
}


/* reads the job of every waiter in q (one table entry), one HGETALL */
static void
ngx_http_ragq_read_job(ngx_http_ragq_job_t *job, ngx_flag_t wake)
{
    ngx_int_t               rc;
    ngx_flag_t              last;
    ngx_queue_t            *q, *next;
    ngx_http_ragq_read_t   *rd;
    ngx_http_ragq_waiter_t *w;

    rc = ngx_http_ragq_valkey_available();

    w = ngx_queue_data(ngx_queue_head(&job->waiters), ngx_http_ragq_waiter_t,
                       tq);

    rd = (rc == NGX_OK) ? ngx_http_ragq_read_create(&job->sn.str, wake, w->lcf)
                        : NULL;

    if (rd == NULL) {
        if (!wake) {
            /* their wait timers still end them with a fresh read */
            return;
        }

        for (q = ngx_queue_head(&job->waiters); /* void */; q = next) {
            next = ngx_queue_next(q);
            last = (next == ngx_queue_sentinel(&job->waiters));
            w = ngx_queue_data(q, ngx_http_ragq_waiter_t, tq);

            ngx_http_ragq_waiter_fail(w, rc == NGX_OK ? NGX_DECLINED : rc);

            if (last) {
                break;
            }
        }

        return;
    }

    rd->catchup = !wake;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0, "ragq: %s read of %V",
                   wake ? "wake" : "catch-up", &job->sn.str);

    /* a wake read frees the job entry with its last waiter: no look back */
    for (q = ngx_queue_head(&job->waiters); /* void */; q = next) {
        next = ngx_queue_next(q);
        last = (next == ngx_queue_sentinel(&job->waiters));
        w = ngx_queue_data(q, ngx_http_ragq_waiter_t, tq);

        ngx_http_ragq_read_add(rd, w);

        if (last) {
            break;
        }
    }

    if (ngx_http_ragq_read_send(rd) != NGX_OK) {
        ngx_http_ragq_read_reply(&rd->cell, NULL);
        ngx_free(rd);
    }
}


static ngx_http_ragq_job_t *
ngx_http_ragq_job_lookup(ngx_str_t *key)
{
    return (ngx_http_ragq_job_t *) ngx_str_rbtree_lookup(
        &ngx_http_ragq_jobs, key, ngx_crc32_short(key->data, key->len));
}


/* wait elapsed: answer with the current state */
static void
ngx_http_ragq_waiter_timeout(ngx_event_t *ev)
{
    u_char                 *p;
    ngx_str_t               key;
    ngx_http_ragq_read_t   *rd;
    ngx_http_ragq_waiter_t *w = ev->data;
    ngx_int_t               rc;
    u_char                  buf[NGX_HTTP_RAGQ_KEY_MAX];

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "ragq: wait for job %*s elapsed",
                   (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, w->job_id);

    rc = ngx_http_ragq_valkey_available();
    if (rc != NGX_OK) {
        ngx_http_ragq_waiter_fail(w, rc);
        return;
    }

    key.len = w->lcf->job_prefix.len + NGX_HTTP_RAGQ_JOB_ID_LEN;
    key.data = buf;
    p = ngx_cpymem(buf, w->lcf->job_prefix.data, w->lcf->job_prefix.len);
    ngx_memcpy(p, w->job_id, NGX_HTTP_RAGQ_JOB_ID_LEN);

    rd = ngx_http_ragq_read_create(&key, 1, w->lcf);
    if (rd == NULL) {
        ngx_http_ragq_waiter_fail(w, NGX_DECLINED);
        return;
    }

    ngx_http_ragq_read_add(rd, w);

    if (ngx_http_ragq_read_send(rd) != NGX_OK) {
        ngx_http_ragq_read_reply(&rd->cell, NULL);
        ngx_free(rd);
    }
}


static void
ngx_http_ragq_waiter_deadline(ngx_event_t *ev)
{
    ngx_http_request_t     *r;
    ngx_http_ragq_waiter_t *w = ev->data;

    r = ngx_http_ragq_waiter_take(w);

    ngx_http_ragq_finalize(r, ngx_http_ragq_timed_out(r, NULL));
}


/*
 * Registers r as a waiter on its job, then reads the job (in this order, so
 * that an event between the read and the registration cannot be lost).
 */
ngx_int_t
ngx_http_ragq_lp_wait(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                      ngx_str_t *key, u_char *id, ngx_msec_t wait)
{
    ngx_http_cleanup_t     *cln;
    ngx_http_ragq_job_t    *job;
    ngx_http_ragq_read_t   *rd;
    ngx_http_ragq_waiter_t *w;

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_ragq_waiter_t));
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rd = ngx_http_ragq_read_create(key, 0, lcf);
    if (rd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_free(rd);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    job = ngx_http_ragq_job_lookup(key);

    if (job == NULL) {
        job = ngx_alloc(sizeof(ngx_http_ragq_job_t) + key->len, ngx_cycle->log);
        if (job == NULL) {
            ngx_free(rd);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        job->sn.str.len = key->len;
        job->sn.str.data = (u_char *) (job + 1);
        ngx_memcpy(job->sn.str.data, key->data, key->len);
        job->sn.node.key = ngx_crc32_short(key->data, key->len);
        ngx_queue_init(&job->waiters);
        ngx_rbtree_insert(&ngx_http_ragq_jobs, &job->sn.node);
    }

    w->request = r;
    w->cleanup = cln;
    w->lcf = lcf;
    w->job = job;
    ngx_memcpy(w->job_id, id, NGX_HTTP_RAGQ_JOB_ID_LEN);

    ngx_queue_insert_tail(&job->waiters, &w->tq);
    ngx_queue_insert_tail(&ngx_http_ragq_all_waiters, &w->all);
    ngx_http_ragq_metrics_waiting(r);

    cln->handler = ngx_http_ragq_waiter_cleanup;
    cln->data = w;

    /*
     * Non-cancelable like every request timer; a graceful shutdown does not
     * wait for it anyway, because it answers the waiters (see closing).
     */
    w->timer.handler = ngx_http_ragq_waiter_timeout;
    w->timer.data = w;
    w->timer.log = r->connection->log;
    ngx_add_timer(&w->timer, wait);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: waiting up to %M ms for %V", wait, key);

    ngx_http_ragq_read_add(rd, w);

    if (ngx_http_ragq_read_send(rd) != NGX_OK) {
        ngx_http_ragq_waiter_take(w);
        ngx_free(rd);
        return ngx_http_ragq_unavailable(r, NGX_DECLINED);
    }

    if (!r->discard_body) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    r->main->count++;

    return NGX_DONE;
}


/* a message "ID STATUS" on P:events */
static void
ngx_http_ragq_lp_message(ngx_http_ragq_pubsub_t  *ps,
                         ngx_http_ragq_channel_t *ch, u_char *msg, size_t len)
{
    u_char              *p, *status;
    ngx_str_t            key;
    ngx_http_ragq_job_t *job;
    u_char               buf[NGX_HTTP_RAGQ_KEY_MAX];

    if (len < NGX_HTTP_RAGQ_JOB_ID_LEN + 2
        || msg[NGX_HTTP_RAGQ_JOB_ID_LEN] != ' '
        || !ngx_http_ragq_job_id_valid(msg, NGX_HTTP_RAGQ_JOB_ID_LEN))
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "ragq: ignored malformed event on %V: \"%*s\"",
                      &ch->channel, ngx_min(len, 80), msg);
        return;
    }

    status = msg + NGX_HTTP_RAGQ_JOB_ID_LEN + 1;

    if (!ngx_http_ragq_job_final(status, msg + len - status)) {
        return;
    }

    key.len = ch->job_prefix.len + NGX_HTTP_RAGQ_JOB_ID_LEN;
    key.data = buf;
    p = ngx_cpymem(buf, ch->job_prefix.data, ch->job_prefix.len);
    ngx_memcpy(p, msg, NGX_HTTP_RAGQ_JOB_ID_LEN);

    job = ngx_http_ragq_job_lookup(&key);
    if (job == NULL) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: event \"%*s\" wakes waiters", len, msg);

    ngx_http_ragq_read_job(job, 1);
}


static void
ngx_http_ragq_lp_each(ngx_flag_t wake)
{
    ngx_rbtree_node_t   *node, *next, *root, *sentinel;
    ngx_http_ragq_job_t *job;

    sentinel = ngx_http_ragq_jobs.sentinel;
    root = ngx_http_ragq_jobs.root;

    if (root == sentinel) {
        return;
    }

    /* a job's entry may be freed while it is read: step ahead first */
    for (node = ngx_rbtree_min(root, sentinel); node; node = next) {
        next = ngx_rbtree_next(&ngx_http_ragq_jobs, node);
        job = (ngx_http_ragq_job_t *) node;
        ngx_http_ragq_read_job(job, wake);
    }
}


/*
 * (Re)subscribed, or the command connection is back while subscribed:
 * re-read every job that has waiters, in case its final event came while
 * we were not listening (or could not read).
 */
static void
ngx_http_ragq_lp_ready(ngx_http_ragq_pubsub_t *ps)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: subscribed, re-reading the jobs with waiters");

    ngx_http_ragq_lp_each(0);
}


/* graceful shutdown: answer every waiter with its current state now */
static void
ngx_http_ragq_lp_closing(ngx_http_ragq_pubsub_t *ps)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: shutting down, answering every waiter");

    ngx_http_ragq_lp_each(1);
}


/* the process dies: release the requests without answering */
void
ngx_http_ragq_lp_exit(void)
{
    ngx_queue_t            *q;
    ngx_http_ragq_waiter_t *w;

    if (!ngx_http_ragq_lp_initialized) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_ragq_all_waiters)) {
        q = ngx_queue_head(&ngx_http_ragq_all_waiters);
        w = ngx_queue_data(q, ngx_http_ragq_waiter_t, all);
        (void) ngx_http_ragq_waiter_take(w);
    }

    ngx_http_ragq_lp_initialized = 0;
}
