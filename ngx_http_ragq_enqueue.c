/*
 * ragq: POST /chat: the question from the "query" argument or the JSON
 * body (ngx_http_ragq_enqueue_body.c reads it), its checks (query, top_k,
 * Idempotency-Key), the queue-length backpressure, and the 202 answer once
 * the job is written (ngx_http_ragq_job_new.c writes it).
 */

#include "ngx_http_ragq_enqueue.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_json.h"
#include "ngx_http_ragq_vars.h"


#define NGX_HTTP_RAGQ_IDEM_MAX      255
#define NGX_HTTP_RAGQ_QUEUE_RECHECK 100

/* not among nginx 1.22's status codes */
#define NGX_HTTP_RAGQ_UNPROCESSABLE 422


static void      ngx_http_ragq_enqueue_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ragq_enqueue(ngx_http_request_t *r, ngx_str_t *query,
                                       ngx_uint_t top_k, ngx_str_t *callback);
static void      ngx_http_ragq_enqueue_reply(ngx_http_ragq_cell_t *cell,
                                             redisReply           *reply);
static void      ngx_http_ragq_xlen_reply(ngx_http_ragq_cell_t *cell,
                                          redisReply           *reply);


static size_t
ngx_http_ragq_body_limit(ngx_http_ragq_loc_conf_t *lcf)
{
    /* the query may arrive fully \u-escaped: six bytes per byte */
    return lcf->max_query_length * 6 + 4096;
}


/* the question in the query string: ?query=...&top_k=N */
static ngx_int_t
ngx_http_ragq_enqueue_args(ngx_http_request_t *r, ngx_str_t *arg_query,
                           ngx_str_t *arg_top_k)
{
    ngx_int_t rc, top_k;
    ngx_str_t query;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_ragq_form_decode(r, arg_query, &query);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_query",
                                   "the query argument has a malformed "
                                   "percent-encoding");
    }

    top_k = NGX_CONF_UNSET;

    if (arg_top_k->data) {
        top_k = (arg_top_k->len > 6)
                    ? 0
                    : ngx_atoi(arg_top_k->data, arg_top_k->len);
        if (top_k == NGX_ERROR) {
            top_k = 0;
        }
    }

    rc = ngx_http_ragq_enqueue(r, &query, top_k, NULL);

    if (rc == NGX_DONE) {
        r->main->count++;
    }

    return rc;
}


ngx_int_t
ngx_http_ragq_enqueue_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 tenant;
    ngx_http_ragq_arg_t       args[2];
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    if (!(r->method & NGX_HTTP_POST)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ragq_not_allowed(r, "POST",
                                         "use POST to submit a question");
    }

    rc = lcf->tenant ? ngx_http_ragq_tenant(r, lcf, &tenant) : NGX_OK;

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ragq_missing_tenant(r);
    }

    ngx_str_set(&args[0].name, "query");
    ngx_str_set(&args[1].name, "top_k");

    ngx_http_ragq_args(r, args, 2);

    if (args[0].value.data) {
        return ngx_http_ragq_enqueue_args(r, &args[0].value, &args[1].value);
    }

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "missing_query",
                                   "send the question as the \"query\" "
                                   "argument or as a JSON body "
                                   "{\"query\": \"...\"}");
    }

    if (!ngx_http_ragq_is_json(r)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ragq_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "unsupported_media_type",
                                   "send the body as Content-Type: "
                                   "application/json, or the question as "
                                   "the \"query\" argument");
    }

    if (r->headers_in.content_length_n > (off_t) ngx_http_ragq_body_limit(lcf))
    {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ragq_errorf(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "body_too_large",
                                    "the request body is %O bytes; at most "
                                    "%uz are accepted (ragq_max_query_length "
                                    "is %uz)",
                                    r->headers_in.content_length_n,
                                    ngx_http_ragq_body_limit(lcf),
                                    lcf->max_query_length);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: reading a JSON body of %O bytes",
                   r->headers_in.content_length_n);

    rc = ngx_http_read_client_request_body(r,
                                           ngx_http_ragq_enqueue_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_ragq_enqueue_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc, top_k;
    ngx_str_t                 body, query, callback;
    ngx_http_ragq_err_t       err;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    ngx_str_null(&body);
    rc = NGX_OK;

    if (r->request_body) {
        rc = ngx_http_ragq_body(r, &body, ngx_http_ragq_body_limit(lcf));
    }

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_errorf(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "body_too_large",
                                    "the request body is larger than %uz "
                                    "bytes (ragq_max_query_length is %uz)",
                                    ngx_http_ragq_body_limit(lcf),
                                    lcf->max_query_length));
        return;
    }

    /* no body, or a chunked one with no data (only its last, empty, buffer) */
    if (body.len == 0) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "missing_query",
                                   "the request body is empty; send "
                                   "{\"query\": \"...\"}"));
        return;
    }

    ngx_str_null(&query);
    ngx_str_null(&callback);
    top_k = NGX_CONF_UNSET;

    if (ngx_http_ragq_enqueue_parse_body(r, body.data, body.len, &query, &top_k,
                                         &callback, &err)
        != NGX_OK)
    {
        ngx_http_finalize_request(r,
                                  ngx_http_ragq_error(r, err.status, err.code,
                                                      err.message));
        return;
    }

    if (query.data == NULL) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "missing_query",
                                   "the JSON body has no \"query\"; send "
                                   "{\"query\": \"...\"}"));
        return;
    }

    rc = ngx_http_ragq_enqueue(r, &query, top_k,
                               callback.data ? &callback : NULL);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * ragq_max_queue: the queue length is read (XLEN, its reply to no request)
 * at most every NGX_HTTP_RAGQ_QUEUE_RECHECK ms, behind an enqueue or while
 * saturated, never on every request; in between, this worker adds its own
 * enqueues to the last length read.
 */
static void
ngx_http_ragq_queue_read(ngx_log_t *log, ngx_http_ragq_loc_conf_t *lcf)
{
    ngx_http_ragq_cell_t *cell;

    if (lcf->queue_checking
        || ngx_current_msec - lcf->queue_checked < NGX_HTTP_RAGQ_QUEUE_RECHECK)
    {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "ragq: queue at %ui of %i, reading its length",
                   lcf->queue_len, lcf->max_queue);

    cell = ngx_calloc(sizeof(ngx_http_ragq_cell_t), log);
    if (cell == NULL) {
        return;
    }

    cell->handler = ngx_http_ragq_xlen_reply;
    cell->data = lcf;

    if (ngx_http_ragq_valkey_send(cell, lcf->xlen_cmd.data, lcf->xlen_cmd.len)
        == NGX_OK)
    {
        lcf->queue_checking = 1;
    } else {
        ngx_free(cell);
    }
}


static ngx_int_t
ngx_http_ragq_queue_full(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf)
{
    if (lcf->max_queue <= 0 || lcf->queue_len < (ngx_uint_t) lcf->max_queue) {
        return 0;
    }

    /* saturated: re-read the length now and then, without an enqueue */
    ngx_http_ragq_queue_read(r->connection->log, lcf);

    return 1;
}


static void
ngx_http_ragq_xlen_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    ngx_http_ragq_loc_conf_t *lcf = cell->data;

    lcf->queue_checking = 0;
    lcf->queue_checked = ngx_current_msec;

    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
        lcf->queue_len = (ngx_uint_t) reply->integer;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "ragq: queue length %ui", lcf->queue_len);
}


/*
 * A callback_url is sent to (by the worker) only when it starts with one of
 * the ragq_callback_allow prefixes, compared byte for byte; and it must be
 * a URL any HTTP client reads the same way: http(s), printable ASCII only
 * (no spaces, controls, backslashes or raw non-ASCII), no userinfo ("@" in
 * the authority), no dot segments (curl would remove them, climbing out of
 * an allowed path), at most NGX_HTTP_RAGQ_CALLBACK_URL_MAX bytes.
 * NGX_OK, or NGX_DECLINED: refused.
 */
static ngx_int_t
ngx_http_ragq_callback_check(ngx_http_ragq_loc_conf_t *lcf, ngx_str_t *url)
{
    u_char    *p, *end, *auth;
    ngx_str_t *prefix;
    ngx_uint_t i;

    if (url->len > NGX_HTTP_RAGQ_CALLBACK_URL_MAX) {
        return NGX_DECLINED;
    }

    p = url->data;
    end = p + url->len;

    if (url->len > 7 && ngx_strncmp(p, "http://", 7) == 0) {
        auth = p + 7;

    } else if (url->len > 8 && ngx_strncmp(p, "https://", 8) == 0) {
        auth = p + 8;

    } else {
        return NGX_DECLINED;
    }

    for (/* void */; p < end; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '\\') {
            return NGX_DECLINED;
        }
    }

    for (p = auth; p < end && *p != '/' && *p != '?' && *p != '#'; p++) {
        if (*p == '@') {
            return NGX_DECLINED;
        }
    }

    /* "/..", "/./", a final "/.", "%2e" in any case */
    for (p = auth; p < end; p++) {
        if (*p == '/' && end - p >= 2 && p[1] == '.'
            && (end - p == 2 || p[2] == '.' || p[2] == '/'))
        {
            return NGX_DECLINED;
        }

        if (*p == '%' && end - p >= 3 && p[1] == '2' && (p[2] | 0x20) == 'e') {
            return NGX_DECLINED;
        }
    }

    prefix = lcf->callback_allow->elts;

    for (i = 0; i < lcf->callback_allow->nelts; i++) {
        if (url->len >= prefix[i].len
            && ngx_strncmp(url->data, prefix[i].data, prefix[i].len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* checks the question, then sends its job to Valkey; NGX_DONE: sent */
static ngx_int_t
ngx_http_ragq_enqueue(ngx_http_request_t *r, ngx_str_t *query, ngx_uint_t top_k,
                      ngx_str_t *callback)
{
    ngx_int_t                 rc;
    ngx_table_elt_t          *idem;
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    if (query->len == 0) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_query",
                                   "the query is empty; ask a question");
    }

    if (query->len > lcf->max_query_length) {
        return ngx_http_ragq_errorf(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "query_too_long",
                                    "the query is %uz bytes; at most %uz are "
                                    "accepted",
                                    query->len, lcf->max_query_length);
    }

    if (ngx_http_ragq_utf8_valid(query->data, query->len) != NGX_OK) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_utf8",
                                   "the query is not valid UTF-8");
    }

    /* the worker, and many a client, hold the question as a C string
     * (memchr: libc's is vectorized, ngx_strlchr() goes byte by byte) */
    if (memchr(query->data, '\0', query->len)) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_query",
                                   "the query contains a NUL byte (U+0000)");
    }

    if (top_k == (ngx_uint_t) NGX_CONF_UNSET) {
        top_k = lcf->top_k;

    } else if (top_k < 1 || top_k > lcf->top_k_max) {
        return ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST, "invalid_top_k",
                                    "top_k must be an integer from 1 to %ui",
                                    lcf->top_k_max);
    }

    if (callback
        && (lcf->callback_allow == NULL || lcf->callback_allow->nelts == 0))
    {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST,
                                   "callbacks_disabled",
                                   "this server sends no callbacks "
                                   "(ragq_callback_allow is not set); leave "
                                   "out \"callback_url\" and poll the "
                                   "status_url");
    }

    if (callback && ngx_http_ragq_callback_check(lcf, callback) != NGX_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ragq: callback_url of %uz bytes refused",
                       callback->len);

        return ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST,
                                    "callback_not_allowed",
                                    "\"callback_url\" must be an http(s) URL "
                                    "of at most %d bytes that starts with a "
                                    "prefix this server allows "
                                    "(ragq_callback_allow), without userinfo, "
                                    "dot segments, spaces or control "
                                    "characters",
                                    NGX_HTTP_RAGQ_CALLBACK_URL_MAX);
    }

    idem = ngx_http_ragq_find_header(r, "Idempotency-Key",
                                     sizeof("Idempotency-Key") - 1);

    if (idem
        && (idem->value.len == 0 || idem->value.len > NGX_HTTP_RAGQ_IDEM_MAX))
    {
        return ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST,
                                    "invalid_idempotency_key",
                                    "the Idempotency-Key header must have "
                                    "1 to %d characters",
                                    NGX_HTTP_RAGQ_IDEM_MAX);
    }

    rc = ngx_http_ragq_valkey_available();
    if (rc != NGX_OK) {
        return ngx_http_ragq_unavailable(r, rc);
    }

    if (ngx_http_ragq_queue_full(r, lcf)) {
        return ngx_http_ragq_errorf(r, NGX_HTTP_TOO_MANY_REQUESTS, "queue_full",
                                    "%ui questions are waiting (the limit is "
                                    "%i); retry later",
                                    lcf->queue_len, lcf->max_queue);
    }

    cell = ngx_http_ragq_cell_create(r, ngx_http_ragq_enqueue_reply);
    if (cell == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cell->data = lcf;

    rc = ngx_http_ragq_job_create(r, lcf, cell, query, top_k, callback,
                                  idem ? &idem->value : NULL);

    if (rc == NGX_OK) {
        ngx_http_ragq_cell_wait(r, cell);

        if (lcf->max_queue > 0) {
            /* on the same connection, its reply right behind the job's */
            ngx_http_ragq_queue_read(r->connection->log, lcf);
        }

        return NGX_DONE;
    }

    /* the one way out once the cell exists */
    ngx_http_ragq_cell_drop(cell);

    if (rc == NGX_DECLINED || rc == NGX_BUSY) {
        /* NGX_BUSY: the writes connection's cap (ragq_valkey_replicas),
         * which ngx_http_ragq_valkey_available() does not look at */
        return ngx_http_ragq_unavailable(r, rc);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* the bytes of a 202's body around the job id and the URL */
#define NGX_HTTP_RAGQ_QUEUED_BODY                                            \
    (sizeof("{\"status\":\"queued\",\"job_id\":\"\",\"status_url\":\"\"}\n") \
     + NGX_HTTP_RAGQ_JOB_ID_LEN)


/*
 * The 202: Location and status_url are ragq_status_url (variables allowed;
 * default /job-status) with the job_id argument. The URL is written in the
 * body once, and Location points at it there, unless it needs JSON
 * escaping: then Location gets a copy of its own after the body.
 */
static ngx_int_t
ngx_http_ragq_send_queued(ngx_http_request_t *r, u_char *id)
{
    u_char                   *body, *p, *loc, sep;
    size_t                    len, esc;
    ngx_str_t                 base;
    ngx_table_elt_t          *h;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    esc = 0;

    if (lcf->status_url == NULL) {
        ngx_str_set(&base, "/job-status");
        sep = '?';

    } else {
        if (ngx_http_complex_value(r, lcf->status_url, &base) != NGX_OK) {
            return NGX_ERROR;
        }

        /* a URL with arguments of its own gets one more */
        sep = ngx_strlchr(base.data, base.data + base.len, '?') ? '&' : '?';

        /* what escaping adds, if anything */
        esc = ngx_http_ragq_json_escape_len(base.data, base.len) - base.len - 2;
    }

    len = base.len + sizeof("?job_id=") - 1 + NGX_HTTP_RAGQ_JOB_ID_LEN;

    body = ngx_pnalloc(r->pool,
                       NGX_HTTP_RAGQ_QUEUED_BODY + len + (esc ? esc + len : 0));
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_ragq_lit(body, "{\"status\":\"queued\",\"job_id\":\"");
    p = ngx_cpymem(p, id, NGX_HTTP_RAGQ_JOB_ID_LEN);
    p = ngx_http_ragq_lit(p, "\",\"status_url\":\"");

    loc = p;

    if (esc) {
        /* the escaper writes the quotes too: over ours, then drop its last */
        p = ngx_http_ragq_json_escape(p - 1, base.data, base.len) - 1;
        loc = body + NGX_HTTP_RAGQ_QUEUED_BODY + len + esc;
        ngx_sprintf(loc, "%V%cjob_id=%*s", &base, sep,
                    (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, id);

    } else {
        p = ngx_cpymem(p, base.data, base.len);
    }

    *p++ = sep;
    p = ngx_http_ragq_lit(p, "job_id=");
    p = ngx_cpymem(p, id, NGX_HTTP_RAGQ_JOB_ID_LEN);
    p = ngx_http_ragq_lit(p, "\"}\n");

    /* a plain header, not headers_out.location: nginx would make that one
     * absolute, and clients of the old API expect the relative form */
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = loc;
    h->value.len = len;

    return ngx_http_ragq_send_json(r, NGX_HTTP_ACCEPTED, body, p - body);
}


static void
ngx_http_ragq_enqueue_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    u_char                   *id;
    ngx_int_t                 rc, created, queue_len;
    ngx_http_request_t       *r;
    ngx_http_ragq_loc_conf_t *lcf = cell->data;

    created = ngx_http_ragq_job_created(cell, reply, &id, &queue_len);

    if (queue_len >= 0) {
        lcf->queue_len = (ngx_uint_t) queue_len;
        lcf->queue_checked = ngx_current_msec;

    } else if (created == NGX_OK && id == cell->job_id) {
        /* a new job: one more since the last reading */
        lcf->queue_len++;
    }

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    if (created == NGX_OK) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ragq: job %*s queued, queue length %i",
                       (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, id, queue_len);

        /* $ragq_job_id, $ragq_job_status */
        ngx_http_ragq_set_job(r, id, (u_char *) "queued", 6);

        rc = ngx_http_ragq_send_queued(r, id);

    } else if (created == NGX_BUSY) {
        /* the job was not stored: nothing to look up, retry */
        rc = ngx_http_ragq_unavailable(r, NGX_DECLINED);

    } else if (created == NGX_DECLINED) {
        rc = ngx_http_ragq_error(r, NGX_HTTP_RAGQ_UNPROCESSABLE,
                                 "idempotency_key_reused",
                                 "this Idempotency-Key was used for another "
                                 "question; use a new key for a new question");

    } else {
        rc = ngx_http_ragq_reply_error(r, reply);
    }

    ngx_http_ragq_finalize(r, rc);
}
