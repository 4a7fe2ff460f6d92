/*
 * fuzz/harness.c: the module's world for its fuzz targets (harness.h):
 * requests, location configurations, Valkey replies from bytes, the HTTP
 * functions the module calls (they record its answer) and the Valkey
 * connection (valkey.h) played by hand.
 */
#include "harness.h"
#include "../ngx_http_ragq_request.h"
#include "../ngx_http_ragq_resp.h"

#include <sys/mman.h>

fuzz_out_t    fuzz_out;
fuzz_valkey_t fuzz_valkey;

static ngx_log_t          fuzz_log;
static ngx_http_log_ctx_t fuzz_log_ctx;
static ngx_cycle_t        fuzz_cycle;
static ngx_time_t         fuzz_time;
static ngx_pool_t         fuzz_pool; /* never looked into: ngx_stubs.c */
static int                fuzz_fd = -1;

ngx_module_t ngx_http_ragq_module = {.ctx_index = 0};

void
fuzz_fail(const char *what, const u_char *p, size_t len)
{
    fprintf(stderr, "fuzz oracle: %s (%zu bytes):\n", what, len);
    if (p) {
        fwrite(p, 1, len > 4096 ? 4096 : len, stderr);
        fputc('\n', stderr);
    }
    abort();
}

size_t
fuzz_sections(const uint8_t *data, size_t size, ngx_str_t *sec, size_t n)
{
    size_t         i = 0;
    const uint8_t *p = data, *end = data + size, *q;

    while (i < n) {
        q = (i + 1 < n) ? memchr(p, FUZZ_SEP, end - p) : NULL;
        sec[i].data = (u_char *) p;
        sec[i].len = (q ? q : end) - p;
        i++;
        if (q == NULL) {
            break;
        }
        p = q + 1;
    }
    for (size_t k = i; k < n; k++) {
        ngx_str_null(&sec[k]);
    }
    return i;
}

void
fuzz_begin(void)
{
    fuzz_pool_free();
    free(fuzz_out.body);
    memset(&fuzz_out, 0, sizeof(fuzz_out));
    fuzz_out.finalized = -1000;
    fuzz_valkey.available = NGX_OK;
    fuzz_valkey.send_rc = NGX_OK;
    if (fuzz_fd != -1) {
        close(fuzz_fd);
        fuzz_fd = -1;
    }

    fuzz_log.log_level = NGX_LOG_DEBUG_ALL | NGX_LOG_DEBUG;
    fuzz_log.data = &fuzz_log_ctx;
    fuzz_cycle.log = &fuzz_log;
    ngx_cycle = &fuzz_cycle;
    fuzz_time.sec = 1700000000;
    fuzz_time.msec = 123;
    ngx_cached_time = &fuzz_time;
    ngx_current_msec = 1000000;
}

/* "P:suffix" */
static void
fuzz_key(ngx_str_t *key, const char *suffix)
{
    size_t n = strlen(suffix);

    key->data = ngx_pnalloc(&fuzz_pool, sizeof("ragq") - 1 + n + 1);
    key->len = ngx_sprintf(key->data, "ragq%s", suffix) - key->data;
    key->data[key->len] = '\0';
}

ngx_http_ragq_loc_conf_t *
fuzz_loc_conf(ngx_uint_t kind)
{
    u_char                   *p;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_pcalloc(&fuzz_pool, sizeof(*lcf));
    lcf->kind = kind;
    ngx_str_set(&lcf->prefix, "ragq");
    fuzz_key(&lcf->jobs_key, ":jobs");
    fuzz_key(&lcf->job_prefix, ":job:");
    fuzz_key(&lcf->idem_prefix, ":idem:");
    lcf->top_k = 5;
    lcf->top_k_max = 100;
    lcf->max_query_length = 16384;
    lcf->max_queue = 100000;
    lcf->job_ttl = 86400000;
    lcf->max_wait = 30;
    lcf->valkey_timeout = 1000;

    /* the constant heads of the hot commands, as the configuration makes
     * them (ngx_http_ragq_module.c) */
    p = ngx_pnalloc(&fuzz_pool, 512);
    lcf->hgetall_head.data = p;
    p = ngx_sprintf(p, "*2\r\n$7\r\nHGETALL\r\n$%uz\r\n%V",
                    lcf->job_prefix.len + NGX_HTTP_RAGQ_JOB_ID_LEN,
                    &lcf->job_prefix);
    lcf->hgetall_head.len = p - lcf->hgetall_head.data;
    lcf->xadd_head.data = p;
    p = ngx_sprintf(
        p, "*15\r\n$4\r\nXADD\r\n$%uz\r\n%V\r\n$1\r\n*\r\n$1\r\nr\r\n$16\r\n",
        lcf->jobs_key.len, &lcf->jobs_key);
    lcf->xadd_head.len = p - lcf->xadd_head.data;
    lcf->xrange_head.data = p;
    p = ngx_sprintf(p, "*4\r\n$6\r\nXRANGE\r\n$%uz\r\n%V\r\n",
                    lcf->jobs_key.len, &lcf->jobs_key);
    lcf->xrange_head.len = p - lcf->xrange_head.data;
    lcf->xlen_cmd.data = p;
    p = ngx_sprintf(p, "*2\r\n$4\r\nXLEN\r\n$%uz\r\n%V\r\n", lcf->jobs_key.len,
                    &lcf->jobs_key);
    lcf->xlen_cmd.len = p - lcf->xlen_cmd.data;

    return lcf;
}

ngx_http_complex_value_t *
fuzz_complex_value(ngx_str_t *s)
{
    ngx_http_complex_value_t *cv;

    cv = ngx_pcalloc(&fuzz_pool, sizeof(*cv));
    cv->value = *s;
    return cv;
}

/* ---- the request ---- */

static ngx_table_elt_t *
fuzz_header(ngx_http_request_t *r, const char *name, ngx_str_t *value)
{
    ngx_table_elt_t *h = ngx_list_push(&r->headers_in.headers);

    memset(h, 0, sizeof(*h));
    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = strlen(name);
    h->value = *value;
    h->lowcase_key = h->key.data;
    return h;
}

static ngx_chain_t *
fuzz_buf(ngx_chain_t **last, u_char *p, size_t len)
{
    ngx_chain_t *cl = ngx_pcalloc(&fuzz_pool, sizeof(ngx_chain_t));

    cl->buf = ngx_pcalloc(&fuzz_pool, sizeof(ngx_buf_t));
    if (p) {
        cl->buf->pos = cl->buf->start = p;
        cl->buf->last = cl->buf->end = p + len;
        cl->buf->temporary = 1;
    }
    *last = cl;
    return cl;
}

/* the body as nginx leaves it in r->request_body->bufs */
static ngx_chain_t *
fuzz_body_bufs(fuzz_request_spec_t *spec)
{
    u_char      *copy;
    size_t       len = spec->body.len, at, cut[8];
    ngx_uint_t   i, n;
    ngx_buf_t   *b;
    ngx_chain_t *head = NULL, **last = &head, *cl;

    /* a copy of its own, so that a read past it is seen */
    copy = ngx_pnalloc(&fuzz_pool, len);
    if (len) {
        memcpy(copy, spec->body.data, len);
    }

    if (spec->in_file && len) {
        fuzz_fd = memfd_create("body", 0);
        if (fuzz_fd == -1 || write(fuzz_fd, copy, len) != (ssize_t) len) {
            abort();
        }
        cl = fuzz_buf(last, NULL, 0);
        b = cl->buf;
        b->in_file = 1;
        b->file = ngx_pcalloc(&fuzz_pool, sizeof(ngx_file_t));
        b->file->fd = fuzz_fd;
        b->file_pos = 0;
        b->file_last = len;
        last = &cl->next;

    } else {
        n = spec->nbufs ? spec->nbufs : 1;
        cut[0] = 0;
        for (i = 1; i < n; i++) {
            at = len * spec->cuts[i] / 256;
            cut[i] = at < cut[i - 1] ? cut[i - 1] : at;
        }
        for (i = 0; i < n; i++) {
            at = (i + 1 < n) ? cut[i + 1] : len;
            cl = fuzz_buf(last, copy + cut[i], at - cut[i]);
            last = &cl->next;
            if (spec->empty_bufs) {
                cl = fuzz_buf(last, copy + at, 0);
                last = &cl->next;
            }
        }
    }

    if (spec->chunked) {
        /* what a chunked body ends with: an empty, special last_buf */
        cl = ngx_pcalloc(&fuzz_pool, sizeof(ngx_chain_t));
        cl->buf = ngx_pcalloc(&fuzz_pool, sizeof(ngx_buf_t));
        cl->buf->last_buf = 1;
        *last = cl;
    } else {
        for (cl = head; cl->next; cl = cl->next) { /* void */
        }
        cl->buf->last_buf = 1;
    }

    return head;
}

static fuzz_request_spec_t *fuzz_spec;

ngx_http_request_t *
fuzz_request(fuzz_request_spec_t *spec, ngx_http_ragq_loc_conf_t *lcf)
{
    ngx_connection_t   *c;
    ngx_http_request_t *r;

    fuzz_spec = spec;

    r = ngx_pcalloc(&fuzz_pool, sizeof(*r));
    c = ngx_pcalloc(&fuzz_pool, sizeof(*c));
    c->log = &fuzz_log;
    r->connection = c;
    r->pool = &fuzz_pool;
    r->main = r;
    r->count = 1;
    r->method = spec->method;
    r->loc_conf = ngx_pcalloc(&fuzz_pool, sizeof(void *));
    r->loc_conf[0] = lcf;

    if (spec->args.data) {
        /* a copy of its own, as for the body */
        r->args.data = ngx_pnalloc(&fuzz_pool, spec->args.len);
        memcpy(r->args.data, spec->args.data, spec->args.len);
        r->args.len = spec->args.len;
    }

    ngx_list_init(&r->headers_in.headers, &fuzz_pool, 2,
                  sizeof(ngx_table_elt_t));
    ngx_list_init(&r->headers_out.headers, &fuzz_pool, 2,
                  sizeof(ngx_table_elt_t));

    if (spec->content_type.data) {
        r->headers_in.content_type =
            fuzz_header(r, "Content-Type", &spec->content_type);
    }
    if (spec->idem.data) {
        fuzz_header(r, "Idempotency-Key", &spec->idem);
    }

    r->headers_in.content_length_n = -1;
    if (spec->chunked) {
        r->headers_in.chunked = 1;
    } else if (spec->body.data) {
        r->headers_in.content_length_n = spec->body.len;
    }

    return r;
}

void
fuzz_request_free(ngx_http_request_t *r)
{
    ngx_http_cleanup_t *cln;

    for (cln = r->cleanup; cln; cln = cln->next) {
        if (cln->handler) {
            cln->handler(cln->data);
        }
    }
    r->cleanup = NULL;
}

/* ---- what nginx does for the module ---- */

ngx_int_t
ngx_http_discard_request_body(ngx_http_request_t *r)
{
    r->discard_body = 1;
    return NGX_OK;
}

ngx_int_t
ngx_http_read_client_request_body(ngx_http_request_t             *r,
                                  ngx_http_client_body_handler_pt post_handler)
{
    r->main->count++;
    r->request_body = ngx_pcalloc(&fuzz_pool, sizeof(ngx_http_request_body_t));
    if (fuzz_spec->body.data) {
        r->request_body->bufs = fuzz_body_bufs(fuzz_spec);
    }
    post_handler(r);
    return NGX_OK;
}

ngx_int_t
ngx_http_send_header(ngx_http_request_t *r)
{
    fuzz_out.answers++;
    fuzz_out.status = r->headers_out.status;
    fuzz_out.type = r->headers_out.content_type;
    free(fuzz_out.body);
    fuzz_out.body = NULL;
    fuzz_out.len = 0;
    return NGX_OK;
}

ngx_int_t
ngx_http_output_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t n;

    (void) r;
    for (; in; in = in->next) {
        n = in->buf->last - in->buf->pos;
        fuzz_out.body = realloc(fuzz_out.body, fuzz_out.len + n + 1);
        if (n) {
            memcpy(fuzz_out.body + fuzz_out.len, in->buf->pos, n);
        }
        fuzz_out.len += n;
    }
    return NGX_OK;
}

void
ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    (void) r;
    fuzz_out.finalized = rc;
}

void
ngx_http_run_posted_requests(ngx_connection_t *c)
{
    (void) c;
}

ngx_http_cleanup_t *
ngx_http_cleanup_add(ngx_http_request_t *r, size_t size)
{
    ngx_http_cleanup_t *cln = ngx_pcalloc(&fuzz_pool, sizeof(*cln));

    if (size) {
        cln->data = ngx_palloc(&fuzz_pool, size);
    }
    cln->next = r->cleanup;
    r->cleanup = cln;
    return cln;
}

ngx_int_t
ngx_http_complex_value(ngx_http_request_t *r, ngx_http_complex_value_t *val,
                       ngx_str_t *value)
{
    (void) r;
    *value = val->value;
    return NGX_OK;
}

void
ngx_http_test_reading(ngx_http_request_t *r)
{
    (void) r;
}

void
ngx_http_request_empty_handler(ngx_http_request_t *r)
{
    (void) r;
}

/* ---- the Valkey connection (valkey.h), played by hand ---- */

ngx_int_t
ngx_http_ragq_valkey_available(void)
{
    return fuzz_valkey.available;
}

ngx_flag_t
ngx_http_ragq_pubsub_ready(void)
{
    /* the long-poll is not part of these targets */
    return 0;
}

ngx_int_t
ngx_http_ragq_lp_wait(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                      ngx_str_t *job_key, u_char *id, ngx_msec_t wait)
{
    (void) r, (void) lcf, (void) job_key, (void) id, (void) wait;
    abort();
}

static void
fuzz_sent(ngx_http_ragq_cell_t *cell)
{
    fuzz_out.commands++;
    if (cell && fuzz_out.ncells < FUZZ_MAX_CELLS) {
        fuzz_out.cells[fuzz_out.ncells++] = cell;
    }
}

ngx_int_t
ngx_http_ragq_valkey_command(ngx_http_ragq_cell_t *cell, int argc,
                             const char **argv, const size_t *argvlen)
{
    if (fuzz_valkey.send_rc != NGX_OK) {
        return fuzz_valkey.send_rc;
    }
    /* EVAL of the idempotent enqueue: the question is its ARGV[4] */
    if (argc == 14 && argvlen[0] == 4 && memcmp(argv[0], "EVAL", 4) == 0) {
        fuzz_out.query.data = (u_char *) argv[8];
        fuzz_out.query.len = argvlen[8];
    }
    fuzz_sent(cell);
    return NGX_OK;
}

/* the bulk string at *p (RESP "$<n>\r\n<bytes>\r\n"), *p moved past it */
static ngx_int_t
fuzz_bulk(u_char **p, u_char *end, ngx_str_t *v)
{
    u_char *q = *p;
    size_t  n;

    if (q == end || *q++ != '$') {
        return NGX_ERROR;
    }
    for (n = 0; q < end && *q >= '0' && *q <= '9'; q++) {
        n = n * 10 + (*q - '0');
    }
    if (end - q < 4 || (size_t) (end - q - 4) < n || q[0] != '\r' ||
        q[1] != '\n' || q[2 + n] != '\r' || q[3 + n] != '\n') {
        return NGX_ERROR;
    }
    v->data = q + 2;
    v->len = n;
    *p = q + 4 + n;
    return NGX_OK;
}

/*
 * The fields of an XADD after its query (at p): top_k, collection, tenant,
 * created_at, then callback_url only with 17 arguments, whose URL is one
 * fuzz_chat.c allows (ragq_callback_allow), printable ASCII, no "/..".
 */
static void
fuzz_check_callback(u_char *cmd, size_t len, u_char *p)
{
    u_char    *end = cmd + len;
    size_t     i;
    ngx_str_t  k, v;
    ngx_uint_t n;

    for (n = 0; n < 4; n++) {
        if (fuzz_bulk(&p, end, &k) != NGX_OK ||
            fuzz_bulk(&p, end, &v) != NGX_OK) {
            fuzz_fail("a malformed XADD after its query", cmd, len);
        }
    }
    if (p == end) {
        if (len < 3 || memcmp(cmd, "*15", 3) != 0) {
            fuzz_fail("an XADD without callback_url not of 15 arguments", cmd,
                      len);
        }
        return;
    }
    if (fuzz_bulk(&p, end, &k) != NGX_OK || fuzz_bulk(&p, end, &v) != NGX_OK ||
        p != end || k.len != 12 || memcmp(k.data, "callback_url", 12) != 0) {
        fuzz_fail("an XADD with something else than callback_url last", cmd,
                  len);
    }
    if (len < 3 || memcmp(cmd, "*17", 3) != 0) {
        fuzz_fail("an XADD with callback_url not of 17 arguments", cmd, len);
    }
    if (!((v.len >= 21 && memcmp(v.data, "http://hooks.test/cb/", 21) == 0) ||
          (v.len >= 20 && memcmp(v.data, "https://h.test:8443/", 20) == 0))) {
        fuzz_fail("a callback_url outside ragq_callback_allow", cmd, len);
    }
    for (i = 0; i < v.len; i++) {
        if (v.data[i] <= ' ' || v.data[i] >= 0x7f || v.data[i] == '\\') {
            fuzz_fail("a callback_url with a byte it must not have", cmd, len);
        }
    }
    if (memmem(v.data, v.len, "/..", 3) || memmem(v.data, v.len, "/./", 3)) {
        fuzz_fail("a callback_url with dot segments", cmd, len);
    }
}

ngx_int_t
ngx_http_ragq_valkey_send_n(ngx_http_ragq_cell_t *cell, u_char *cmd, size_t len,
                            ngx_uint_t replies)
{
    u_char *p, *end = cmd + len;
    size_t  n;

    if (replies == 0) {
        fuzz_fail("a send that expects no reply", cmd, len);
    }

    if (fuzz_valkey.send_rc != NGX_OK) {
        return fuzz_valkey.send_rc;
    }
    /* the XADD of a new job: "...$5\r\nquery\r\n$<n>\r\n<query>\r\n" */
    p = (u_char *) memmem(cmd, len, "$5\r\nquery\r\n$", 12);
    if (p) {
        p += 12;
        for (n = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');
        }
        if (end - p < 2 || (size_t) (end - p - 2) < n + 2) {
            fuzz_fail("a malformed XADD", cmd, len);
        }
        fuzz_out.query.data = p + 2;
        fuzz_out.query.len = n;
        if (p[2 + n] != '\r' || p[3 + n] != '\n') {
            fuzz_fail("a bulk string of the wrong length", cmd, len);
        }
        fuzz_check_callback(cmd, len, p + 4 + n);
    }
    fuzz_out.cmd_len = len < sizeof(fuzz_out.cmd) ? len : sizeof(fuzz_out.cmd);
    memcpy(fuzz_out.cmd, cmd, fuzz_out.cmd_len);
    fuzz_sent(cell);
    return NGX_OK;
}

ngx_int_t
ngx_http_ragq_valkey_send(ngx_http_ragq_cell_t *cell, u_char *cmd, size_t len)
{
    return ngx_http_ragq_valkey_send_n(cell, cmd, len, 1);
}

/* two commands whose replies both go to the cell: fuzz_deliver() */
ngx_int_t
ngx_http_ragq_valkey_send_pair(ngx_http_ragq_cell_t *cell, u_char *cmd,
                               size_t len)
{
    if (fuzz_valkey.send_rc != NGX_OK) {
        return fuzz_valkey.send_rc;
    }
    fuzz_out.cmd_len = len < sizeof(fuzz_out.cmd) ? len : sizeof(fuzz_out.cmd);
    memcpy(fuzz_out.cmd, cmd, fuzz_out.cmd_len);
    fuzz_out.commands++;
    fuzz_sent(cell);
    cell->more = 1;
    return NGX_OK;
}

/* one reply to the cell, as the connection does: the cell is freed after
 * its last reply's callback; returns whether it is */
ngx_uint_t
fuzz_deliver(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    cell->handler(cell, reply);
    if (cell->more) {
        cell->more--;
        return 0;
    }
    free(cell);
    return 1;
}

const ngx_http_ragq_resp_error_t *
ngx_http_ragq_valkey_down(void)
{
    /* no more precise reason than "unavailable" */
    return NULL;
}

ngx_int_t
ngx_http_ragq_valkey_timed_out(ngx_http_ragq_cell_t *cell)
{
    /* every timeout the first of its stall: logged at error */
    (void) cell;
    return NGX_OK;
}

/* ---- the log variables (vars.h): not part of these targets ---- */

void
ngx_http_ragq_set_job(ngx_http_request_t *r, u_char *id, u_char *status,
                      size_t len)
{
    (void) r, (void) id, (void) status, (void) len;
}

void
fuzz_answer_cells(ngx_http_request_t *r, redisReply *reply, ngx_uint_t order)
{
    ngx_uint_t            i;
    ngx_http_ragq_cell_t *cell;

    if (order == 1) {
        fuzz_request_free(r);
    }
    for (i = 0; i < fuzz_out.ncells; i++) {
        cell = fuzz_out.cells[i];
        if (order == 2 && cell->deadline.timer_set) {
            cell->deadline.timer_set = 0;
            cell->deadline.timedout = 1;
            cell->deadline.handler(&cell->deadline);
        }
        /* a pair's cell gets the same reply twice */
        while (!fuzz_deliver(cell, reply)) {
            /* void */
        }
    }
    fuzz_out.ncells = 0;
}

/*
 * What every answer of the module must be, whatever came in: never
 * nginx's own 5xx page, at most one answer, application/json, and a JSON
 * object in UTF-8 (unless json is 0: HEAD has no body). Returns whether
 * there was an answer.
 */
ngx_uint_t
fuzz_check_answer(ngx_uint_t json)
{
    if (fuzz_out.finalized >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        fuzz_fail("nginx's own 5xx page", NULL, 0);
    }
    if (fuzz_out.answers > 1) {
        fuzz_fail("more than one answer", fuzz_out.body, fuzz_out.len);
    }
    if (fuzz_out.answers == 0) {
        return 0;
    }
    if (fuzz_out.type.len != sizeof("application/json") - 1 ||
        memcmp(fuzz_out.type.data, "application/json", fuzz_out.type.len)) {
        fuzz_fail("not application/json", fuzz_out.body, fuzz_out.len);
    }
    if (json && !oracle_json_object(fuzz_out.body, fuzz_out.len)) {
        fuzz_fail("an answer that is not a JSON object", fuzz_out.body,
                  fuzz_out.len);
    }
    return 1;
}

/* ---- replies ---- */

static redisReply *
fuzz_new_reply(int type, const u_char *p, size_t len)
{
    redisReply *r = calloc(1, sizeof(*r));

    r->type = type;
    if (type == REDIS_REPLY_STRING || type == REDIS_REPLY_STATUS ||
        type == REDIS_REPLY_ERROR) {
        /* hiredis always has a buffer, NUL-terminated */
        r->str = malloc(len + 1);
        if (len) {
            memcpy(r->str, p, len);
        }
        r->str[len] = '\0';
        r->len = len;
    }
    return r;
}

static long long
fuzz_integer(const u_char *p, size_t len)
{
    char buf[32];

    if (len >= sizeof(buf)) {
        len = sizeof(buf) - 1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

static redisReply *
fuzz_item(const u_char *p, size_t len)
{
    size_t      i;
    redisReply *r;

    if (len < 2 || p[0] != 0x1d) {
        return fuzz_new_reply(REDIS_REPLY_STRING, p, len);
    }
    switch (p[1]) {
    case 'i':
        r = fuzz_new_reply(REDIS_REPLY_INTEGER, NULL, 0);
        r->integer = fuzz_integer(p + 2, len - 2);
        return r;
    case 'n':
        return fuzz_new_reply(REDIS_REPLY_NIL, NULL, 0);
    case 's':
        return fuzz_new_reply(REDIS_REPLY_STATUS, p + 2, len - 2);
    case 'e':
        return fuzz_new_reply(REDIS_REPLY_ERROR, p + 2, len - 2);
    case 'a':
        r = fuzz_new_reply(REDIS_REPLY_ARRAY, NULL, 0);
        r->elements = len - 2;
        r->element =
            calloc(r->elements ? r->elements : 1, sizeof(redisReply *));
        for (i = 0; i < r->elements; i++) {
            r->element[i] = fuzz_new_reply(REDIS_REPLY_STRING, p + 2 + i, 1);
        }
        return r;
    default:
        return fuzz_new_reply(REDIS_REPLY_STRING, p, len);
    }
}

redisReply *
fuzz_reply_item(const u_char *p, size_t len)
{
    return fuzz_item(p, len);
}

redisReply *
fuzz_reply_array(size_t n)
{
    redisReply *r = fuzz_new_reply(REDIS_REPLY_ARRAY, NULL, 0);

    r->element = calloc(n ? n : 1, sizeof(redisReply *));
    r->elements = n;
    return r;
}

redisReply *
fuzz_reply(ngx_str_t *in, ngx_uint_t *absent)
{
    u_char     *p, *end, *q;
    size_t      n;
    redisReply *r;

    *absent = 0;
    if (in->len == 0) {
        return fuzz_new_reply(REDIS_REPLY_ARRAY, NULL, 0);
    }
    p = in->data;
    end = p + in->len;

    switch (*p) {
    case 'X':
        *absent = 1;
        return NULL;
    case 'E':
        return fuzz_new_reply(REDIS_REPLY_ERROR, p + 1, in->len - 1);
    case 'S':
        return fuzz_new_reply(REDIS_REPLY_STATUS, p + 1, in->len - 1);
    case 'N':
        return fuzz_new_reply(REDIS_REPLY_NIL, NULL, 0);
    case 'I':
        r = fuzz_new_reply(REDIS_REPLY_INTEGER, NULL, 0);
        r->integer = fuzz_integer(p + 1, in->len - 1);
        return r;
    }

    p++;
    r = fuzz_new_reply(REDIS_REPLY_ARRAY, NULL, 0);
    if (p == end) {
        return r;
    }
    for (n = 1, q = p; q < end; q++) {
        n += (*q == 0x1f);
    }
    r->element = calloc(n, sizeof(redisReply *));
    while (r->elements < n) {
        q = memchr(p, 0x1f, end - p);
        if (q == NULL) {
            q = end;
        }
        r->element[r->elements++] = fuzz_item(p, q - p);
        p = q + 1;
    }
    return r;
}

void
fuzz_reply_free(redisReply *r)
{
    size_t i;

    if (r == NULL) {
        return;
    }
    for (i = 0; i < r->elements; i++) {
        fuzz_reply_free(r->element[i]);
    }
    free(r->element);
    free(r->str);
    free(r);
}
