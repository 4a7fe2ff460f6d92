/*
 * ragq: the Prometheus text exposition (format 0.0.4): a writer that builds
 * the answer in a chain of buffers of the request's pool (families, label
 * values escaped, gauges), and the Valkey side's families rendered from the
 * reply of the metrics script (queue, pending and dead lengths, each live
 * worker's heartbeat counters).  What is counted, and where, is
 * ngx_http_ragq_metrics.c.
 */

#include "ngx_http_ragq_prom.h"
#include "ngx_http_ragq_json.h"


#define NGX_HTTP_RAGQ_LABEL_MAX 512


/* ---- writing the exposition ---- */


static u_char *
ngx_http_ragq_mw_room(ngx_http_ragq_mw_t *w, size_t n)
{
    ngx_buf_t   *b;
    ngx_chain_t *cl;

    if (w->failed) {
        return NULL;
    }

    if (w->b && (size_t) (w->b->end - w->b->last) >= n) {
        return w->b->last;
    }

    b = ngx_create_temp_buf(w->r->pool, ngx_max(n, 4096));
    cl = ngx_alloc_chain_link(w->r->pool);

    if (b == NULL || cl == NULL) {
        w->failed = 1;
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;
    *w->last = cl;
    w->last = &cl->next;
    w->b = b;

    return b->last;
}


void
ngx_http_ragq_mw_add(ngx_http_ragq_mw_t *w, u_char *p, size_t n)
{
    u_char *dst;

    dst = ngx_http_ragq_mw_room(w, n);
    if (dst == NULL) {
        return;
    }

    w->b->last = ngx_cpymem(dst, p, n);
    w->size += n;
}


void
ngx_http_ragq_mw_printf(ngx_http_ragq_mw_t *w, const char *fmt, ...)
{
    u_char *p;
    va_list args;
    u_char  buf[256];

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ngx_http_ragq_mw_add(w, buf, p - buf);
}


void
ngx_http_ragq_mw_family(ngx_http_ragq_mw_t *w, const char *name,
                        const char *type, const char *help)
{
    ngx_http_ragq_mw_printf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                            type);
}


/*
 * A label value as the text format wants it: backslash, double quote and
 * line feed escaped. Label values must be UTF-8: one that is not (a worker
 * name is whatever its operator chose) has its non-ASCII bytes replaced.
 */
void
ngx_http_ragq_mw_label(ngx_http_ragq_mw_t *w, const char *name, u_char *p,
                       size_t len)
{
    u_char    *dst, c;
    size_t     i;
    ngx_flag_t utf8;

    len = ngx_min(len, NGX_HTTP_RAGQ_LABEL_MAX);
    utf8 = (ngx_http_ragq_utf8_valid(p, len) == NGX_OK);

    ngx_http_ragq_mw_printf(w, "%s=\"", name);

    dst = ngx_http_ragq_mw_room(w, 2 * len + 2);
    if (dst == NULL) {
        return;
    }

    w->b->last = dst;

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c == '\\' || c == '"') {
            *dst++ = '\\';
            *dst++ = c;

        } else if (c == '\n') {
            *dst++ = '\\';
            *dst++ = 'n';

        } else if (c >= 0x80 && !utf8) {
            *dst++ = '?';

        } else {
            *dst++ = c;
        }
    }

    *dst++ = '"';
    w->size += dst - w->b->last;
    w->b->last = dst;
}


/* name{endpoint="..."[,code|le="..."]} value */
void
ngx_http_ragq_mw_endpoint(ngx_http_ragq_mw_t *w, const char *name,
                          ngx_str_t *endpoint, const char *label,
                          ngx_str_t *value, uint64_t n)
{
    ngx_http_ragq_mw_printf(w, "%s{endpoint=\"%V\"", name, endpoint);

    if (label) {
        ngx_http_ragq_mw_printf(w, ",%s=\"%V\"", label, value);
    }

    ngx_http_ragq_mw_printf(w, "} %uL\n", n);
}


void
ngx_http_ragq_mw_gauge(ngx_http_ragq_mw_t *w, const char *name,
                       const char *help, uint64_t n)
{
    ngx_http_ragq_mw_family(w, name, "gauge", help);
    ngx_http_ragq_mw_printf(w, "%s %uL\n", name, n);
}


/* ---- the Valkey side ---- */


/* the value of field name in a HGETALL array, as a number; -1: absent */
static int64_t
ngx_http_ragq_hash_number(redisReply *h, const char *name)
{
    size_t      i, len;
    off_t       n;
    redisReply *k, *v;

    len = ngx_strlen(name);

    for (i = 0; i + 1 < h->elements; i += 2) {
        k = h->element[i];
        v = h->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || (size_t) k->len != len
            || ngx_strncmp(k->str, name, len) != 0)
        {
            continue;
        }

        if (v->type != REDIS_REPLY_STRING || v->len == 0 || v->len > 18) {
            return -1;
        }

        n = ngx_atoof((u_char *) v->str, v->len);

        return (n == NGX_ERROR) ? -1 : (int64_t) n;
    }

    return -1;
}


static redisReply *
ngx_http_ragq_hash_string(redisReply *h, const char *name)
{
    size_t      i, len;
    redisReply *k, *v;

    len = ngx_strlen(name);

    for (i = 0; i + 1 < h->elements; i += 2) {
        k = h->element[i];
        v = h->element[i + 1];

        if (k->type == REDIS_REPLY_STRING && (size_t) k->len == len
            && ngx_strncmp(k->str, name, len) == 0
            && v->type == REDIS_REPLY_STRING)
        {
            return v;
        }
    }

    return NULL;
}


typedef struct {
    const char *field;
    const char *label; /* the value of the second label */
} ngx_http_ragq_wfield_t;


static ngx_http_ragq_wfield_t ngx_http_ragq_job_fields[] = {
    { "jobs_finished", "finished" },
    { "jobs_failed", "failed" },
    { "jobs_released", "released" },
    { "jobs_canceled", "canceled" },
    { NULL, NULL }
};

static ngx_http_ragq_wfield_t ngx_http_ragq_call_fields[] = {
    { "calls_embeddings", "embeddings" },
    { "calls_qdrant", "qdrant" },
    { "calls_chat", "chat" },
    { NULL, NULL }
};

static ngx_http_ragq_wfield_t ngx_http_ragq_error_fields[] = {
    { "errors_embeddings", "embeddings" },
    { "errors_qdrant", "qdrant" },
    { "errors_chat", "chat" },
    { NULL, NULL }
};


/* the fields named *_at hold epoch milliseconds, shown as seconds */
static ngx_flag_t
ngx_http_ragq_is_time(const char *field)
{
    size_t len = ngx_strlen(field);

    return len > 3 && ngx_strcmp(field + len - 3, "_at") == 0;
}


/* one family with a sample per worker (and per field) */
static void
ngx_http_ragq_metrics_per_worker(ngx_http_ragq_mw_t *w, redisReply *reply,
                                 const char *name, const char *type,
                                 const char *help, const char *label,
                                 ngx_http_ragq_wfield_t *fields,
                                 const char             *field)
{
    size_t                  i;
    int64_t                 n;
    ngx_flag_t              at;
    redisReply             *worker, *h;
    ngx_http_ragq_wfield_t *f, one[2];

    ngx_http_ragq_mw_family(w, name, type, help);

    if (fields == NULL) {
        one[0].field = field;
        one[0].label = NULL;
        one[1].field = NULL;
        fields = one;
    }

    for (i = 3; i + 1 < reply->elements; i += 2) {
        worker = reply->element[i];
        h = reply->element[i + 1];

        if (worker->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        for (f = fields; f->field; f++) {
            n = ngx_http_ragq_hash_number(h, f->field);
            at = ngx_http_ragq_is_time(f->field);

            /* a time of 0 is "never" */
            if (n < 0 || (at && n == 0)) {
                continue;
            }

            ngx_http_ragq_mw_printf(w, "%s{", name);
            ngx_http_ragq_mw_label(w, "worker", (u_char *) worker->str,
                                   worker->len);

            if (label) {
                ngx_http_ragq_mw_printf(w, ",%s=\"%s\"", label, f->label);
            }

            if (at) {
                ngx_http_ragq_mw_printf(w, "} %L.%03L\n", n / 1000, n % 1000);

            } else {
                ngx_http_ragq_mw_printf(w, "} %L\n", n);
            }
        }
    }
}


static void
ngx_http_ragq_metrics_workers(ngx_http_ragq_mw_t *w, redisReply *reply)
{
    size_t      i;
    ngx_uint_t  live;
    redisReply *worker, *h, *v;

    live = 0;

    for (i = 3; i + 1 < reply->elements; i += 2) {
        if (reply->element[i]->type == REDIS_REPLY_STRING
            && reply->element[i + 1]->type == REDIS_REPLY_ARRAY)
        {
            live++;
        }
    }

    ngx_http_ragq_mw_gauge(w, "ragq_workers",
                           "ragq-worker processes with a live heartbeat", live);

    ngx_http_ragq_mw_family(w, "ragq_worker_info", "gauge",
                            "a live worker's version and host");

    for (i = 3; i + 1 < reply->elements; i += 2) {
        worker = reply->element[i];
        h = reply->element[i + 1];

        if (worker->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        ngx_http_ragq_mw_printf(w, "ragq_worker_info{");
        ngx_http_ragq_mw_label(w, "worker", (u_char *) worker->str,
                               worker->len);

        v = ngx_http_ragq_hash_string(h, "version");
        ngx_http_ragq_mw_add(w, (u_char *) ",", 1);
        ngx_http_ragq_mw_label(w, "version",
                               v ? (u_char *) v->str : (u_char *) "",
                               v ? v->len : 0);

        v = ngx_http_ragq_hash_string(h, "host");
        ngx_http_ragq_mw_add(w, (u_char *) ",", 1);
        ngx_http_ragq_mw_label(w, "host", v ? (u_char *) v->str : (u_char *) "",
                               v ? v->len : 0);

        ngx_http_ragq_mw_printf(w, "} 1\n");
    }

    ngx_http_ragq_metrics_per_worker(w, reply, "ragq_worker_jobs_total",
                                     "counter",
                                     "jobs a live worker ended, by how: "
                                     "finished, failed, released for another "
                                     "attempt, canceled",
                                     "status", ngx_http_ragq_job_fields, NULL);
    ngx_http_ragq_metrics_per_worker(w, reply, "ragq_worker_in_flight", "gauge",
                                     "jobs a live worker holds now", NULL, NULL,
                                     "in_flight");
    ngx_http_ragq_metrics_per_worker(w, reply,
                                     "ragq_worker_upstream_calls_total",
                                     "counter",
                                     "HTTP calls a live worker made to the "
                                     "model servers and Qdrant, by API",
                                     "api", ngx_http_ragq_call_fields, NULL);
    ngx_http_ragq_metrics_per_worker(w, reply,
                                     "ragq_worker_upstream_errors_total",
                                     "counter",
                                     "those calls that failed (transport "
                                     "error, timeout, non-2xx, unreadable "
                                     "answer), retried or not",
                                     "api", ngx_http_ragq_error_fields, NULL);
    ngx_http_ragq_metrics_per_worker(w, reply, "ragq_worker_start_time_seconds",
                                     "gauge",
                                     "when a live worker started, epoch "
                                     "seconds",
                                     NULL, NULL, "started_at");
    ngx_http_ragq_metrics_per_worker(w, reply,
                                     "ragq_worker_last_job_timestamp_seconds",
                                     "gauge",
                                     "when a live worker last ended a job, "
                                     "epoch seconds",
                                     NULL, NULL, "last_job_at");
}


/* the reply of the script, or NULL: the Valkey side is unknown */
ngx_flag_t
ngx_http_ragq_prom_valkey(ngx_http_ragq_mw_t *w, redisReply *reply)
{
    ngx_uint_t i;

    if (reply == NULL) {
        return 0;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, w->r->connection->log, 0,
                      "ragq: metrics: valkey error: %s", reply->str);
        return 0;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) {
        ngx_log_error(NGX_LOG_ERR, w->r->connection->log, 0,
                      "ragq: metrics: unexpected valkey reply");
        return 0;
    }

    for (i = 0; i < 3; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER
            || reply->element[i]->integer < 0)
        {
            ngx_log_error(NGX_LOG_ERR, w->r->connection->log, 0,
                          "ragq: metrics: unexpected valkey reply");
            return 0;
        }
    }

    ngx_http_ragq_mw_gauge(w, "ragq_queue_length",
                           "jobs in the queue stream, unfinished ones (queued "
                           "or running)",
                           (uint64_t) reply->element[0]->integer);
    ngx_http_ragq_mw_gauge(w, "ragq_jobs_pending",
                           "queue entries claimed by a worker and not yet "
                           "acknowledged",
                           (uint64_t) reply->element[1]->integer);
    ngx_http_ragq_mw_gauge(w, "ragq_dead_jobs",
                           "entries of the dead stream (jobs that failed for "
                           "good)",
                           (uint64_t) reply->element[2]->integer);

    ngx_http_ragq_metrics_workers(w, reply);

    return 1;
}
