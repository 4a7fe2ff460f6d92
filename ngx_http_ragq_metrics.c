/*
 * ragq: Prometheus metrics. The nginx side lives in one shared memory zone
 * ("ragq_metrics"), so that a scrape answered by any worker sums them all
 * and a reload (same name, same size) keeps the counters: request counters
 * by endpoint and status code and a latency histogram per endpoint, both
 * bumped with atomics by a log-phase handler (every request of a ragq
 * location passes there once, whatever ended it), and one slot per nginx
 * worker with its gauges (command connection up, open long-polls and
 * streams), owned by the worker's pid so that a worker killed without its
 * exit handler is recognised as dead.
 *
 * The Valkey side is read per scrape in one round trip on the command
 * connection: one EVAL that returns the queue length, the pending entries,
 * the dead stream's length and the heartbeat hash of every live worker
 * (P:workers:live lists them, so no KEYS or SCAN; a worker is live while
 * its P:worker:NAME hash exists, its TTL being the worker's own). A scrape
 * never waits longer than the location's ragq_valkey_timeout: without an
 * answer it reports the nginx side with ragq_valkey_up 0.
 */

#include "ngx_http_ragq_metrics.h"
#include "ngx_http_ragq_valkey.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_vars.h"
#include "ngx_http_ragq_json.h"


/* room per kind of location (ngx_http_ragq_loc_conf_t.kind) */
#define NGX_HTTP_RAGQ_ENDPOINTS 8
/* status codes 100..599, then one for anything else */
#define NGX_HTTP_RAGQ_CODES   501
#define NGX_HTTP_RAGQ_BUCKETS 12
/* nginx workers at once, old ones of a reload included */
#define NGX_HTTP_RAGQ_SLOTS 1024

#define NGX_HTTP_RAGQ_SLOT_REFRESH 1000
#define NGX_HTTP_RAGQ_LABEL_MAX    512


typedef struct {
    ngx_atomic_t pid; /* 0: free */
    ngx_atomic_t connected;
    ngx_atomic_t waiters;
    ngx_atomic_t streams;
} ngx_http_ragq_slot_t;


typedef struct {
    ngx_atomic_t magic;
    ngx_atomic_t requests[NGX_HTTP_RAGQ_ENDPOINTS][NGX_HTTP_RAGQ_CODES];
    /* per bucket, not cumulative: the last one is above every bound */
    ngx_atomic_t latency[NGX_HTTP_RAGQ_ENDPOINTS][NGX_HTTP_RAGQ_BUCKETS + 1];
    ngx_atomic_t latency_ms[NGX_HTTP_RAGQ_ENDPOINTS];
    ngx_http_ragq_slot_t slots[NGX_HTTP_RAGQ_SLOTS];
} ngx_http_ragq_stats_t;


/* a layout of another build is not read as this one's */
#define NGX_HTTP_RAGQ_STATS_MAGIC (0x72616771UL ^ sizeof(ngx_http_ragq_stats_t))


/* the output under construction: a chain of buffers in r->pool */
typedef struct {
    ngx_http_request_t *r;
    ngx_chain_t        *out;
    ngx_chain_t       **last;
    ngx_buf_t          *b;
    size_t              size;
    ngx_flag_t          failed;
} ngx_http_ragq_mw_t;


static ngx_int_t ngx_http_ragq_metrics_zone_init(ngx_shm_zone_t *zone,
                                                 void           *data);
static ngx_int_t ngx_http_ragq_metrics_log(ngx_http_request_t *r);
static void      ngx_http_ragq_metrics_refresh(ngx_event_t *ev);
static void      ngx_http_ragq_metrics_reply(ngx_http_ragq_cell_t *cell,
                                             redisReply           *reply);
static void      ngx_http_ragq_metrics_timeout(ngx_event_t *ev);


static ngx_http_ragq_stats_t *ngx_http_ragq_stats;
static ngx_http_ragq_slot_t  *ngx_http_ragq_slot;
static ngx_event_t            ngx_http_ragq_slot_ev;


/* the "endpoint" label of each kind of location */
static ngx_str_t ngx_http_ragq_endpoints[NGX_HTTP_RAGQ_ENDPOINTS] = {
    ngx_null_string, ngx_string("chat"), ngx_string("status"),
    ngx_string("metrics")
};


/* bucket bounds in ms, and as "le" labels */
static ngx_msec_t ngx_http_ragq_bounds[NGX_HTTP_RAGQ_BUCKETS] = {
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static ngx_str_t ngx_http_ragq_le[NGX_HTTP_RAGQ_BUCKETS + 1] = {
    ngx_string("0.001"), ngx_string("0.005"), ngx_string("0.01"),
    ngx_string("0.025"), ngx_string("0.05"),  ngx_string("0.1"),
    ngx_string("0.25"),  ngx_string("0.5"),   ngx_string("1"),
    ngx_string("2.5"),   ngx_string("5"),     ngx_string("10"),
    ngx_string("+Inf")
};


/*
 * One round trip for the whole Valkey side. KEYS: P:jobs, P:dead,
 * P:workers:live; ARGV: the group (P:workers), the heartbeat prefix
 * (P:worker:). Returns {jobs, pending, dead, name, hash, name, hash, ...};
 * a listed worker whose hash has expired is dead and left out.
 */
static const char ngx_http_ragq_metrics_script[] =
    "local r = {redis.call('XLEN', KEYS[1]), 0, redis.call('XLEN', KEYS[2])}\n"
    "local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])\n"
    "if type(p) == 'table' and type(p[1]) == 'number' then r[2] = p[1] end\n"
    "for _, w in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do\n"
    "  local h = redis.call('HGETALL', ARGV[2] .. w)\n"
    "  if #h > 0 then r[#r + 1] = w; r[#r + 1] = h end\n"
    "end\n"
    "return r\n";


/* ---- the zone and the counting ---- */


ngx_shm_zone_t *
ngx_http_ragq_metrics_init(ngx_conf_t *cf)
{
    size_t                     size;
    ngx_str_t                  name = ngx_string("ragq_metrics");
    ngx_shm_zone_t            *zone;
    ngx_http_handler_pt       *h;
    ngx_http_core_main_conf_t *cmcf;

    /* the same size in every configuration, so that a reload keeps it */
    size = ngx_align(sizeof(ngx_http_ragq_stats_t), ngx_pagesize)
           + 8 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_ragq_module);
    if (zone == NULL) {
        return NULL;
    }

    zone->init = ngx_http_ragq_metrics_zone_init;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NULL;
    }

    *h = ngx_http_ragq_metrics_log;

    return zone;
}


static ngx_int_t
ngx_http_ragq_metrics_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t       *shpool;
    ngx_http_ragq_stats_t *st = data;

    /* a reload: the zone of the previous configuration, counters and all */
    if (st && st->magic == NGX_HTTP_RAGQ_STATS_MAGIC) {
        zone->data = st;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    st = ngx_slab_calloc(shpool, sizeof(ngx_http_ragq_stats_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->magic = NGX_HTTP_RAGQ_STATS_MAGIC;
    zone->data = st;

    return NGX_OK;
}


/*
 * Every request of a ragq location, once, after its answer: its status
 * code, and unless it waited on purpose (a long-poll, a stream) the time
 * from its first byte to the end of its answer.
 */
static ngx_int_t
ngx_http_ragq_metrics_log(ngx_http_request_t *r)
{
    ngx_uint_t                kind, code, i;
    ngx_time_t               *tp;
    ngx_msec_int_t            ms;
    ngx_http_ragq_ctx_t      *ctx;
    ngx_http_ragq_stats_t    *st = ngx_http_ragq_stats;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);
    kind = lcf->kind;

    if (kind == 0 || kind >= NGX_HTTP_RAGQ_ENDPOINTS || st == NULL) {
        return NGX_OK;
    }

    code = r->err_status ? r->err_status : r->headers_out.status;
    code = (code >= 100 && code < 600) ? code - 100 : NGX_HTTP_RAGQ_CODES - 1;

    (void) ngx_atomic_fetch_add(&st->requests[kind][code], 1);

    ctx = ngx_http_get_module_ctx(r, ngx_http_ragq_module);
    if (ctx && ctx->waited) {
        return NGX_OK;
    }

    /* nginx's cached clock, as $request_time reads it */
    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    if (ms < 0) {
        ms = 0;
    }

    for (i = 0; i < NGX_HTTP_RAGQ_BUCKETS; i++) {
        if ((ngx_msec_t) ms <= ngx_http_ragq_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&st->latency[kind][i], 1);
    (void) ngx_atomic_fetch_add(&st->latency_ms[kind], ms);

    return NGX_OK;
}


/* ---- per-worker slots ---- */


static ngx_flag_t
ngx_http_ragq_pid_alive(ngx_pid_t pid)
{
    return pid == ngx_pid || kill(pid, 0) == 0 || ngx_errno == NGX_EPERM;
}


void
ngx_http_ragq_metrics_init_process(ngx_cycle_t *cycle, ngx_shm_zone_t *zone)
{
    ngx_pid_t             pid;
    ngx_uint_t            i;
    ngx_http_ragq_slot_t *slot;

    ngx_http_ragq_stats = zone ? zone->data : NULL;
    ngx_http_ragq_slot = NULL;

    if (ngx_http_ragq_stats == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_RAGQ_SLOTS; i++) {
        slot = &ngx_http_ragq_stats->slots[i];
        pid = (ngx_pid_t) slot->pid;

        /* free, or left by a worker that died without its exit handler */
        if ((pid == 0 || !ngx_http_ragq_pid_alive(pid))
            && ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) pid,
                                  (ngx_atomic_uint_t) ngx_pid))
        {
            slot->connected = 0;
            slot->waiters = 0;
            slot->streams = 0;
            ngx_http_ragq_slot = slot;
            break;
        }
    }

    if (ngx_http_ragq_slot == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ragq: no free metrics slot for this worker; its "
                      "gauges are not reported");
        return;
    }

    ngx_http_ragq_slot_ev.handler = ngx_http_ragq_metrics_refresh;
    ngx_http_ragq_slot_ev.log = cycle->log;
    ngx_http_ragq_slot_ev.data = ngx_http_ragq_slot;
    ngx_http_ragq_slot_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_ragq_slot_ev, 100);
}


/* the connection state as the other workers will read it */
static void
ngx_http_ragq_metrics_refresh(ngx_event_t *ev)
{
    ngx_http_ragq_slot_t *slot = ev->data;

    slot->connected = ngx_http_ragq_valkey_ready();

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_RAGQ_SLOT_REFRESH);
    }
}


void
ngx_http_ragq_metrics_exit_process(void)
{
    ngx_http_ragq_slot_t *slot = ngx_http_ragq_slot;

    if (slot == NULL) {
        return;
    }

    if (ngx_http_ragq_slot_ev.timer_set) {
        ngx_del_timer(&ngx_http_ragq_slot_ev);
    }

    slot->connected = 0;
    slot->waiters = 0;
    slot->streams = 0;
    (void) ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) ngx_pid, 0);

    ngx_http_ragq_slot = NULL;
}


void
ngx_http_ragq_metrics_waiting(ngx_http_request_t *r)
{
    ngx_http_ragq_ctx_t *ctx;

    ctx = ngx_http_ragq_ctx(r);
    if (ctx) {
        ctx->waited = 1;
    }

    if (ngx_http_ragq_slot) {
        (void) ngx_atomic_fetch_add(&ngx_http_ragq_slot->waiters, 1);
    }
}


void
ngx_http_ragq_metrics_waited(void)
{
    if (ngx_http_ragq_slot) {
        (void) ngx_atomic_fetch_add(&ngx_http_ragq_slot->waiters, -1);
    }
}


void
ngx_http_ragq_metrics_streaming(ngx_http_request_t *r)
{
    ngx_http_ragq_ctx_t *ctx;

    ctx = ngx_http_ragq_ctx(r);
    if (ctx) {
        ctx->waited = 1;
    }

    if (ngx_http_ragq_slot) {
        (void) ngx_atomic_fetch_add(&ngx_http_ragq_slot->streams, 1);
    }
}


void
ngx_http_ragq_metrics_streamed(void)
{
    if (ngx_http_ragq_slot) {
        (void) ngx_atomic_fetch_add(&ngx_http_ragq_slot->streams, -1);
    }
}


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


static void
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


static void
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


static void
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
static void
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
static void
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


static void
ngx_http_ragq_mw_gauge(ngx_http_ragq_mw_t *w, const char *name,
                       const char *help, uint64_t n)
{
    ngx_http_ragq_mw_family(w, name, "gauge", help);
    ngx_http_ragq_mw_printf(w, "%s %uL\n", name, n);
}


/* ---- the nginx side ---- */


static void
ngx_http_ragq_metrics_nginx(ngx_http_ragq_mw_t *w)
{
    uint64_t               n, count;
    ngx_pid_t              pid;
    ngx_str_t              code;
    ngx_uint_t             k, i, workers, connected, waiters, streams;
    ngx_http_ragq_slot_t  *slot;
    ngx_http_ragq_stats_t *st = ngx_http_ragq_stats;
    u_char                 text[NGX_INT_T_LEN];

    ngx_http_ragq_mw_family(w, "ragq_module_info", "gauge",
                            "the ragq module's version");
    ngx_http_ragq_mw_printf(w, "ragq_module_info{version=\"%s\"} 1\n",
                            RAGQ_VERSION);

    ngx_http_ragq_mw_family(w, "ragq_http_requests_total", "counter",
                            "requests answered by ragq locations, by "
                            "endpoint and status code, all nginx workers");

    for (k = 1; k < NGX_HTTP_RAGQ_ENDPOINTS; k++) {
        if (ngx_http_ragq_endpoints[k].len == 0) {
            continue;
        }

        for (i = 0; i < NGX_HTTP_RAGQ_CODES; i++) {
            n = st->requests[k][i];
            if (n == 0) {
                continue;
            }

            code.data = text;
            code.len = ngx_sprintf(text, "%ui",
                                   i == NGX_HTTP_RAGQ_CODES - 1 ? 0 : i + 100)
                       - text;

            ngx_http_ragq_mw_endpoint(w, "ragq_http_requests_total",
                                      &ngx_http_ragq_endpoints[k], "code",
                                      &code, n);
        }
    }

    ngx_http_ragq_mw_family(w, "ragq_http_request_duration_seconds",
                            "histogram",
                            "time from a request's first byte to the end of "
                            "its answer; long-polls and streams left out");

    for (k = 1; k < NGX_HTTP_RAGQ_ENDPOINTS; k++) {
        if (ngx_http_ragq_endpoints[k].len == 0) {
            continue;
        }

        count = 0;

        for (i = 0; i <= NGX_HTTP_RAGQ_BUCKETS; i++) {
            count += st->latency[k][i];
            ngx_http_ragq_mw_endpoint(w,
                                      "ragq_http_request_duration_seconds_"
                                      "bucket",
                                      &ngx_http_ragq_endpoints[k], "le",
                                      &ngx_http_ragq_le[i], count);
        }

        n = st->latency_ms[k];
        ngx_http_ragq_mw_printf(w,
                                "ragq_http_request_duration_seconds_sum"
                                "{endpoint=\"%V\"} %uL.%03uL\n",
                                &ngx_http_ragq_endpoints[k], n / 1000,
                                n % 1000);
        ngx_http_ragq_mw_endpoint(w, "ragq_http_request_duration_seconds_count",
                                  &ngx_http_ragq_endpoints[k], NULL, NULL,
                                  count);
    }

    if (ngx_http_ragq_slot) {
        ngx_http_ragq_slot->connected = ngx_http_ragq_valkey_ready();
    }

    workers = connected = waiters = streams = 0;

    for (i = 0; i < NGX_HTTP_RAGQ_SLOTS; i++) {
        slot = &st->slots[i];
        pid = (ngx_pid_t) slot->pid;

        if (pid == 0) {
            continue;
        }

        if (!ngx_http_ragq_pid_alive(pid)) {
            /* killed without its exit handler: free the slot */
            (void) ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) pid, 0);
            continue;
        }

        workers++;
        connected += slot->connected ? 1 : 0;
        waiters += slot->waiters;
        streams += slot->streams;
    }

    ngx_http_ragq_mw_gauge(w, "ragq_nginx_workers",
                           "nginx worker processes running the module "
                           "(old ones of a reload included until they exit)",
                           workers);
    ngx_http_ragq_mw_gauge(w, "ragq_valkey_connected",
                           "nginx workers whose Valkey command connection is "
                           "up",
                           connected);
    ngx_http_ragq_mw_gauge(w, "ragq_waiters",
                           "open long-polls (GET /job-status?wait=N)", waiters);
    ngx_http_ragq_mw_gauge(w, "ragq_streams", "open answer streams", streams);
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
static ngx_flag_t
ngx_http_ragq_metrics_valkey(ngx_http_ragq_mw_t *w, redisReply *reply)
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


/* the answer: the nginx side, then what reply says of Valkey */
static ngx_int_t
ngx_http_ragq_metrics_send(ngx_http_request_t *r, redisReply *reply)
{
    ngx_int_t          rc;
    ngx_flag_t         up;
    ngx_http_ragq_mw_t w;

    ngx_memzero(&w, sizeof(ngx_http_ragq_mw_t));
    w.r = r;
    w.last = &w.out;

    if (ngx_http_ragq_stats) {
        ngx_http_ragq_metrics_nginx(&w);
    }

    up = ngx_http_ragq_metrics_valkey(&w, reply);

    ngx_http_ragq_mw_gauge(&w, "ragq_valkey_up",
                           "whether this scrape could read the queue's state "
                           "from Valkey",
                           up);

    if (w.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = w.size;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    w.b->last_buf = (r == r->main) ? 1 : 0;
    w.b->last_in_chain = 1;

    return ngx_http_output_filter(r, w.out);
}


/* ---- GET /metrics ---- */


ngx_int_t
ngx_http_ragq_metrics_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_str_t                *prefix, keys[5];
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;
    const char               *argv[9];
    size_t                    argvlen[9];

    static const char *suffixes[] = { ":jobs", ":dead", ":workers:live",
                                      ":workers", ":worker:" };

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        return ngx_http_ragq_not_allowed(r, "GET, HEAD",
                                         "use GET to read the metrics");
    }

    if (ngx_http_ragq_valkey_available() != NGX_OK) {
        return ngx_http_ragq_metrics_send(r, NULL);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);
    prefix = &lcf->prefix;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_ragq_metrics_script;
    argvlen[1] = sizeof(ngx_http_ragq_metrics_script) - 1;
    argv[2] = "3";
    argvlen[2] = 1;

    for (i = 0; i < 5; i++) {
        keys[i].len = prefix->len + ngx_strlen(suffixes[i]);
        keys[i].data = ngx_pnalloc(r->pool, keys[i].len);
        if (keys[i].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(keys[i].data, prefix->data, prefix->len);
        ngx_memcpy(p, suffixes[i], ngx_strlen(suffixes[i]));

        argv[3 + i] = (const char *) keys[i].data;
        argvlen[3 + i] = keys[i].len;
    }

    cell = ngx_http_ragq_cell_create(r, ngx_http_ragq_metrics_reply);
    if (cell == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_ragq_valkey_command(cell, 8, argv, argvlen) != NGX_OK) {
        ngx_http_ragq_cell_drop(cell);
        return ngx_http_ragq_metrics_send(r, NULL);
    }

    /* without an answer in time, the nginx side alone, not a 503 */
    cell->deadline.handler = ngx_http_ragq_metrics_timeout;
    ngx_http_ragq_cell_wait(r, cell);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_ragq_metrics_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    ngx_http_request_t *r;

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    ngx_http_ragq_finalize(r, ngx_http_ragq_metrics_send(r, reply));
}


static void
ngx_http_ragq_metrics_timeout(ngx_event_t *ev)
{
    ngx_http_request_t       *r;
    ngx_http_ragq_cell_t     *cell = ev->data;
    ngx_http_ragq_loc_conf_t *lcf;

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ragq: metrics: valkey did not answer within %M ms",
                  lcf->valkey_timeout);

    ngx_http_ragq_finalize(r, ngx_http_ragq_metrics_send(r, NULL));
}
