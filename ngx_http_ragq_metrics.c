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
#include "ngx_http_ragq_prom.h"
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
    ngx_null_string,       ngx_string("chat"),   ngx_string("status"),
    ngx_string("metrics"), ngx_string("stream"), ngx_string("cancel")
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

    up = ngx_http_ragq_prom_valkey(&w, reply);

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
    ngx_uint_t                level;
    ngx_http_request_t       *r;
    ngx_http_ragq_cell_t     *cell = ev->data;
    ngx_http_ragq_loc_conf_t *lcf;

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    /* counted in the stall like any request's: one warn line, then info */
    level = (ngx_http_ragq_valkey_timed_out(cell) == NGX_OK) ? NGX_LOG_WARN
                                                             : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "ragq: metrics: valkey did not answer within %M ms",
                  lcf->valkey_timeout);

    ngx_http_ragq_finalize(r, ngx_http_ragq_metrics_send(r, NULL));
}
