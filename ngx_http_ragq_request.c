/*
 * ragq: request plumbing shared by the handlers: query arguments, request
 * headers and bodies, the JSON responses and error answers, and the pending
 * cells that tie a Valkey reply to a request that may be gone by then.
 */

#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_json.h"


/* form decoding of a query argument: "+" is a space, %XX a byte */
ngx_int_t
ngx_http_ragq_form_decode(ngx_http_request_t *r, ngx_str_t *value,
                          ngx_str_t *out)
{
    u_char    *p, *end, *dst;
    ngx_uint_t hi, lo;

    dst = ngx_pnalloc(r->pool, value->len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    out->data = dst;
    p = value->data;
    end = p + value->len;

    while (p < end) {
        if (*p == '+') {
            *dst++ = ' ';
            p++;
            continue;
        }

        if (*p != '%') {
            *dst++ = *p++;
            continue;
        }

        if (end - p < 3) {
            return NGX_DECLINED;
        }

        hi = ngx_hextoi(p + 1, 1);
        lo = ngx_hextoi(p + 2, 1);

        if (hi == (ngx_uint_t) NGX_ERROR || lo == (ngx_uint_t) NGX_ERROR) {
            return NGX_DECLINED;
        }

        *dst++ = (u_char) ((hi << 4) | lo);
        p += 3;
    }

    out->len = dst - out->data;

    return NGX_OK;
}


/* ---- query arguments ---- */


/*
 * The wanted arguments in one pass over r->args (ngx_http_arg() scans the
 * whole string once per name). As there, names match case-insensitively,
 * need a "=", and the first occurrence wins.
 */
void
ngx_http_ragq_args(ngx_http_request_t *r, ngx_http_ragq_arg_t *args,
                   ngx_uint_t n)
{
    u_char    *p, *end, *name, *eq;
    ngx_uint_t i;

    for (i = 0; i < n; i++) {
        ngx_str_null(&args[i].value);
    }

    /* no query string: data may be NULL, and NULL + 0 is undefined */
    if (r->args.len == 0) {
        return;
    }

    p = r->args.data;
    end = p + r->args.len;

    while (p < end) {
        name = p;
        eq = NULL;

        while (p < end && *p != '&') {
            if (eq == NULL && *p == '=') {
                eq = p;
            }

            p++;
        }

        if (eq) {
            for (i = 0; i < n; i++) {
                if (args[i].value.data == NULL
                    && (size_t) (eq - name) == args[i].name.len
                    && ngx_strncasecmp(name, args[i].name.data,
                                       args[i].name.len)
                           == 0)
                {
                    args[i].value.data = eq + 1;
                    args[i].value.len = p - (eq + 1);
                    break;
                }
            }
        }

        p++;
    }
}


/* ---- responses ---- */


ngx_int_t
ngx_http_ragq_add_header(ngx_http_request_t *r, const char *key,
                         const char *value)
{
    ngx_table_elt_t *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_send_json(ngx_http_request_t *r, ngx_uint_t status, u_char *body,
                        size_t len)
{
    ngx_int_t   rc;
    ngx_buf_t  *b;
    ngx_chain_t out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_ragq_error(ngx_http_request_t *r, ngx_uint_t status, const char *code,
                    const char *message)
{
    u_char *body, *p;
    size_t  len, mlen, clen;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS
        || status == NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        if (ngx_http_ragq_add_header(r, "Retry-After", "1") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    clen = ngx_strlen(code);
    mlen = ngx_strlen(message);

    len = sizeof("{\"error\":{\"code\":,\"message\":}}\n") - 1
          + ngx_http_ragq_json_escape_len((u_char *) code, clen)
          + ngx_http_ragq_json_escape_len((u_char *) message, mlen);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body, "{\"error\":{\"code\":", 17);
    p = ngx_http_ragq_json_escape(p, (u_char *) code, clen);
    p = ngx_cpymem(p, ",\"message\":", 11);
    p = ngx_http_ragq_json_escape(p, (u_char *) message, mlen);
    p = ngx_cpymem(p, "}}\n", 3);

    return ngx_http_ragq_send_json(r, status, body, p - body);
}


/* for messages that embed numbers or names */
ngx_int_t
ngx_http_ragq_errorf(ngx_http_request_t *r, ngx_uint_t status, const char *code,
                     const char *fmt, ...)
{
    u_char *p;
    va_list args;
    u_char  msg[512];

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    va_end(args);

    *p = '\0';

    return ngx_http_ragq_error(r, status, code, (const char *) msg);
}


ngx_int_t
ngx_http_ragq_unavailable(ngx_http_request_t *r, ngx_int_t why)
{
    const ngx_http_ragq_resp_error_t *down;

    if (why == NGX_BUSY) {
        return ngx_http_ragq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "overloaded",
                                   "too many requests are waiting for Valkey "
                                   "in this nginx worker; retry shortly");
    }

    /* a more precise reason: a replica, a refused login... */
    down = ngx_http_ragq_valkey_down();
    if (down) {
        return ngx_http_ragq_error(r, down->status, down->code, down->message);
    }

    return ngx_http_ragq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "valkey_unavailable",
                               "the job store (Valkey) is unreachable; "
                               "retry shortly");
}


/* an error reply (the table of ngx_http_ragq_resp.c), or none */
ngx_int_t
ngx_http_ragq_reply_error(ngx_http_request_t *r, redisReply *reply)
{
    const ngx_http_ragq_resp_error_t *err;

    if (reply == NULL) {
        return ngx_http_ragq_unavailable(r, NGX_DECLINED);
    }

    if (reply->type != REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ragq: unexpected valkey reply type %d", reply->type);

        return ngx_http_ragq_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "internal_error",
                                   "the job store returned an unexpected "
                                   "reply");
    }

    /* Valkey's own words (the queued command's, not EXECABORT's) */
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "ragq: valkey error: %s",
                  reply->str);

    err = ngx_http_ragq_resp_error(reply->str, reply->len);

    return ngx_http_ragq_error(r, err->status, err->code, err->message);
}


/*
 * No reply within the location's ragq_valkey_timeout. A stalled server
 * times out every request that reaches it: the first is logged at error,
 * the others at info, and the connection counts them in one line when it
 * answers again (ngx_http_ragq_valkey_timed_out()).
 */
ngx_int_t
ngx_http_ragq_timed_out(ngx_http_request_t *r, ngx_http_ragq_cell_t *cell)
{
    ngx_uint_t                level;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    level = (ngx_http_ragq_valkey_timed_out(cell) == NGX_OK) ? NGX_LOG_ERR
                                                             : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "ragq: valkey did not answer within %M ms",
                  lcf->valkey_timeout);

    return ngx_http_ragq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "valkey_timeout",
                               "the job store (Valkey) did not answer in "
                               "time; retry shortly");
}


/* 405 with the Allow header; the caller has dealt with the body */
ngx_int_t
ngx_http_ragq_not_allowed(ngx_http_request_t *r, const char *allow,
                          const char *message)
{
    if (ngx_http_ragq_add_header(r, "Allow", allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_ragq_error(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
                               message);
}


/* ---- pending cells ---- */


static void
ngx_http_ragq_cell_cleanup(void *data)
{
    ngx_http_ragq_cell_t *cell = data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, cell->deadline.log, 0,
                   "ragq: request done before its valkey reply");

    cell->request = NULL;

    if (cell->deadline.timer_set) {
        ngx_del_timer(&cell->deadline);
    }
}


/* detaches the cell from its request; returns the request or NULL */
ngx_http_request_t *
ngx_http_ragq_cell_take(ngx_http_ragq_cell_t *cell)
{
    ngx_http_request_t *r = cell->request;

    if (r == NULL) {
        return NULL;
    }

    cell->request = NULL;

    if (cell->cleanup) {
        cell->cleanup->handler = NULL;
    }

    if (cell->deadline.timer_set) {
        ngx_del_timer(&cell->deadline);
    }

    return r;
}


void
ngx_http_ragq_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t *c = r->connection;

    ngx_http_set_log_request(c->log, r);
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_ragq_deadline_handler(ngx_event_t *ev)
{
    ngx_http_request_t   *r;
    ngx_http_ragq_cell_t *cell = ev->data;

    /* the cell stays in the connection's FIFO until its reply or the close */
    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    ngx_http_ragq_finalize(r, ngx_http_ragq_timed_out(r, cell));
}


ngx_http_ragq_cell_t *
ngx_http_ragq_cell_create(ngx_http_request_t *r, ngx_http_ragq_reply_pt handler)
{
    ngx_http_ragq_cell_t *cell;
    ngx_http_cleanup_t   *cln;

    /* not from r->pool: hiredis may hand the cell back after r is gone */
    cell = ngx_calloc(sizeof(ngx_http_ragq_cell_t), r->connection->log);
    if (cell == NULL) {
        return NULL;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        ngx_free(cell);
        return NULL;
    }

    cln->handler = ngx_http_ragq_cell_cleanup;
    cln->data = cell;

    cell->request = r;
    cell->cleanup = cln;
    cell->handler = handler;

    cell->deadline.handler = ngx_http_ragq_deadline_handler;
    cell->deadline.data = cell;
    cell->deadline.log = r->connection->log;

    return cell;
}


/* a cell that never reached Valkey, so no reply will ever free it */
void
ngx_http_ragq_cell_drop(ngx_http_ragq_cell_t *cell)
{
    cell->cleanup->handler = NULL;
    ngx_free(cell);
}


/* arms the deadline and watches the client while the reply is pending */
void
ngx_http_ragq_cell_wait(ngx_http_request_t *r, ngx_http_ragq_cell_t *cell)
{
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    /* non-cancelable: a graceful shutdown waits for the answer */
    ngx_add_timer(&cell->deadline, lcf->valkey_timeout);

    if (!r->discard_body) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->write_event_handler = ngx_http_request_empty_handler;
}


/* ---- request headers and bodies ---- */


/*
 * The tenant of r: empty without ragq_tenant. NGX_DECLINED: ragq_tenant is
 * configured and empty for r (no header, no user): the jobs and
 * Idempotency-Keys of locations without tenancy are stored under the empty
 * tenant, so such a request must not reach them.
 */
ngx_int_t
ngx_http_ragq_tenant(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                     ngx_str_t *tenant)
{
    ngx_str_set(tenant, "");

    if (lcf->tenant == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, lcf->tenant, tenant) != NGX_OK) {
        return NGX_ERROR;
    }

    return (tenant->len == 0) ? NGX_DECLINED : NGX_OK;
}


/*
 * What every reader of one job (/job-status, /job-stream, /job-cancel)
 * checks once its method is right, in this order: the tenant (into
 * *tenant), then the job_id argument, args[0], parsed here with the
 * handler's other arguments. NGX_DECLINED: *rc is what the handler returns
 * (the error answered); usage names the endpoint in the hint.
 */
ngx_int_t
ngx_http_ragq_job_args(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                       ngx_str_t *tenant, ngx_http_ragq_arg_t *args,
                       ngx_uint_t nargs, const char *usage, ngx_int_t *rc)
{
    ngx_str_t *id;

    ngx_str_set(tenant, "");

    *rc = lcf->tenant ? ngx_http_ragq_tenant(r, lcf, tenant) : NGX_OK;

    if (*rc == NGX_ERROR) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    if (*rc == NGX_DECLINED) {
        *rc = ngx_http_ragq_missing_tenant(r);
        return NGX_DECLINED;
    }

    ngx_str_set(&args[0].name, "job_id");
    ngx_http_ragq_args(r, args, nargs);

    id = &args[0].value;

    if (id->len == 0) {
        *rc = ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST, "missing_job_id",
                                   "the job_id argument is required: "
                                   "%s?job_id=ID",
                                   usage);
        return NGX_DECLINED;
    }

    if (!ngx_http_ragq_job_id_valid(id->data, id->len)) {
        *rc = ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_job_id",
                                  "job_id must be 32 lowercase hexadecimal "
                                  "characters, as returned by POST /chat");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the answer when ngx_http_ragq_tenant() declines; the caller has dealt
 * with the body */
ngx_int_t
ngx_http_ragq_missing_tenant(ngx_http_request_t *r)
{
    return ngx_http_ragq_error(r, NGX_HTTP_FORBIDDEN, "missing_tenant",
                               "this location needs a tenant (ragq_tenant) "
                               "and the request has none");
}


ngx_table_elt_t *
ngx_http_ragq_find_header(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_uint_t       i;
    ngx_list_part_t *part;
    ngx_table_elt_t *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


ngx_flag_t
ngx_http_ragq_is_json(ngx_http_request_t *r)
{
    u_char          *p;
    size_t           len;
    ngx_table_elt_t *ct = r->headers_in.content_type;

    if (ct == NULL) {
        return 0;
    }

    len = sizeof("application/json") - 1;
    p = ct->value.data;

    if (ct->value.len < len
        || ngx_strncasecmp(p, (u_char *) "application/json", len) != 0)
    {
        return 0;
    }

    return ct->value.len == len || p[len] == ';' || p[len] == ' '
           || p[len] == '\t';
}


/* the bytes a body buffer holds: in memory, else in the temporary file;
 * none for the special buffers (the empty last_buf that ends a chunked
 * body) */
static off_t
ngx_http_ragq_buf_len(ngx_buf_t *b)
{
    if (ngx_buf_in_memory(b)) {
        return b->last - b->pos;
    }

    if (b->in_file) {
        return b->file_last - b->file_pos;
    }

    return 0;
}


/*
 * The whole body in one buffer: the buffer itself when only one holds
 * bytes, else a copy (a body that nginx spooled to a temp file, larger than
 * client_body_buffer_size, is read back from it). Empty and special buffers
 * are skipped, so an empty body has length 0 (and data NULL). NGX_DECLINED:
 * larger than limit.
 */
ngx_int_t
ngx_http_ragq_body(ngx_http_request_t *r, ngx_str_t *body, size_t limit)
{
    u_char      *p;
    off_t        size, len;
    ssize_t      n;
    ngx_buf_t   *b, *one;
    ngx_uint_t   nbufs;
    ngx_chain_t *cl;

    ngx_str_null(body);

    size = 0;
    nbufs = 0;
    one = NULL;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len = ngx_http_ragq_buf_len(cl->buf);

        if (len > 0) {
            size += len;
            nbufs++;
            one = cl->buf;
        }
    }

    if (size > (off_t) limit) {
        return NGX_DECLINED;
    }

    if (nbufs == 0) {
        return NGX_OK;
    }

    if (nbufs == 1 && ngx_buf_in_memory(one)) {
        body->data = one->pos;
        body->len = one->last - one->pos;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len = ngx_http_ragq_buf_len(b);

        if (len == 0) {
            continue;
        }

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, (size_t) len);
            continue;
        }

        n = ngx_read_file(b->file, p, (size_t) len, b->file_pos);
        if (n != (ssize_t) len) {
            return NGX_ERROR;
        }

        p += n;
    }

    body->len = p - body->data;

    return NGX_OK;
}
