/*
 * ragq: POST /chat: the question from the "query" argument or the JSON
 * body, its checks, the enqueue (one pipelined MULTI, or one EVAL with an
 * Idempotency-Key), the queue-length backpressure and the 202 answer.
 */

#include <ngx_sha1.h>

#include "ngx_http_ragq_enqueue.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_json.h"


#define NGX_HTTP_RAGQ_IDEM_MAX      255
#define NGX_HTTP_RAGQ_QUEUE_RECHECK 100

/* the rest of the enqueue's MULTI, in RESP form around the variable parts */
#define NGX_HTTP_RAGQ_MULTI "*1\r\n$5\r\nMULTI\r\n"
#define NGX_HTTP_RAGQ_EXEC  "*1\r\n$4\r\nEXEC\r\n"
#define NGX_HTTP_RAGQ_HSET_STATUS \
    "\r\n$6\r\nstatus\r\n$6\r\nqueued\r\n$5\r\nquery\r\n"
#define NGX_HTTP_RAGQ_HSET_TOP_K      "$5\r\ntop_k\r\n"
#define NGX_HTTP_RAGQ_HSET_COLLECTION "$10\r\ncollection\r\n"
#define NGX_HTTP_RAGQ_HSET_TENANT     "$6\r\ntenant\r\n"
#define NGX_HTTP_RAGQ_HSET_CREATED    "$10\r\ncreated_at\r\n"
#define NGX_HTTP_RAGQ_HSET_ATTEMPTS   "$8\r\nattempts\r\n$1\r\n0\r\n"


typedef struct {
    ngx_uint_t  status;
    const char *code;
    const char *message;
} ngx_http_ragq_err_t;


static void      ngx_http_ragq_enqueue_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ragq_enqueue(ngx_http_request_t *r, ngx_str_t *query,
                                       ngx_uint_t top_k);
static void      ngx_http_ragq_enqueue_reply(ngx_http_ragq_cell_t *cell,
                                             redisReply           *reply);
static void      ngx_http_ragq_xlen_reply(ngx_http_ragq_cell_t *cell,
                                          redisReply           *reply);


/*
 * Idempotent enqueue: only used with an Idempotency-Key header, so a script
 * is affordable here. An id whose job hash has expired is replaced.
 */
static const char ngx_http_ragq_idem_script[] =
    "local id = redis.call('GET', KEYS[1])\n"
    "if id and redis.call('EXISTS', ARGV[3] .. id) == 1 then\n"
    "  return {0, id, -1}\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "redis.call('HSET', KEYS[2], 'status', 'queued', 'query', ARGV[4],\n"
    "  'top_k', ARGV[5], 'collection', ARGV[6], 'tenant', ARGV[7],\n"
    "  'created_at', ARGV[8], 'attempts', '0')\n"
    "redis.call('XADD', KEYS[3], '*', 'job', ARGV[1])\n"
    "return {1, ARGV[1], redis.call('XLEN', KEYS[3])}\n";


static ngx_int_t
ngx_http_ragq_parse_body(ngx_http_request_t *r, u_char *p, size_t len,
                         ngx_str_t *query, ngx_int_t *top_k,
                         ngx_http_ragq_err_t *err)
{
    u_char              *start;
    ngx_str_t            key;
    ngx_flag_t           integer;
    ngx_http_ragq_json_t j;
    u_char               keybuf[16];

    err->status = NGX_HTTP_BAD_REQUEST;
    err->code = "invalid_json";
    err->message = "the request body is not valid JSON; send "
                   "{\"query\": \"your question\"}";

    j.p = p;
    j.end = p + len;
    j.depth = 0;

    ngx_http_ragq_json_ws(&j);

    if (j.p == j.end || *j.p != '{') {
        if (j.p != j.end) {
            err->message = "the JSON body must be an object: "
                           "{\"query\": \"your question\"}";
        }

        return NGX_ERROR;
    }

    j.p++;
    ngx_http_ragq_json_ws(&j);

    if (j.p < j.end && *j.p == '}') {
        j.p++;
        goto done;
    }

    for (;;) {
        ngx_http_ragq_json_ws(&j);

        start = j.p;

        if (ngx_http_ragq_json_string(&j, NULL) != NGX_OK) {
            return NGX_ERROR;
        }

        /* keys we care about are short; longer ones are skipped unread */
        key.len = 0;

        if ((size_t) (j.p - start) <= sizeof(keybuf)) {
            key.data = keybuf;
            j.p = start;
            (void) ngx_http_ragq_json_string(&j, &key);
        }

        ngx_http_ragq_json_ws(&j);

        if (j.p == j.end || *j.p != ':') {
            return NGX_ERROR;
        }

        j.p++;
        ngx_http_ragq_json_ws(&j);

        if (key.len == 5 && ngx_strncmp(key.data, "query", 5) == 0) {
            if (j.p == j.end) {
                return NGX_ERROR;
            }

            if (*j.p != '"') {
                if (ngx_http_ragq_json_skip(&j) != NGX_OK) {
                    return NGX_ERROR;
                }

                err->code = "invalid_query";
                err->message = "\"query\" must be a non-empty string";
                return NGX_ERROR;
            }

            query->data = ngx_pnalloc(r->pool, j.end - j.p);
            if (query->data == NULL) {
                err->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
                err->code = "internal_error";
                err->message = "out of memory";
                return NGX_ERROR;
            }

            if (ngx_http_ragq_json_string(&j, query) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (key.len == 5 && ngx_strncmp(key.data, "top_k", 5) == 0) {
            start = j.p;

            if (j.end - j.p >= 4 && ngx_strncmp(j.p, "null", 4) == 0) {
                j.p += 4;
                *top_k = NGX_CONF_UNSET;

            } else if (j.p < j.end &&
                       ((*j.p >= '0' && *j.p <= '9') || *j.p == '-')) {
                if (ngx_http_ragq_json_number(&j, &integer) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (!integer || *start == '-' || j.p - start > 6) {
                    *top_k = 0;
                } else {
                    *top_k = ngx_atoi(start, j.p - start);
                }

            } else {
                if (ngx_http_ragq_json_skip(&j) != NGX_OK) {
                    return NGX_ERROR;
                }

                *top_k = 0;
            }

        } else if (ngx_http_ragq_json_skip(&j) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_ragq_json_ws(&j);

        if (j.p == j.end) {
            return NGX_ERROR;
        }

        if (*j.p == ',') {
            j.p++;
            continue;
        }

        if (*j.p == '}') {
            j.p++;
            break;
        }

        return NGX_ERROR;
    }

done:

    ngx_http_ragq_json_ws(&j);

    if (j.p != j.end) {
        err->message = "unexpected data after the JSON object";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static size_t
ngx_http_ragq_body_limit(ngx_http_ragq_loc_conf_t *lcf)
{
    /* the query may arrive fully \u-escaped: six bytes per byte */
    return lcf->max_query_length * 6 + 4096;
}


ngx_int_t
ngx_http_ragq_enqueue_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc, top_k;
    ngx_str_t                 query;
    ngx_http_ragq_arg_t       args[2];
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    if (!(r->method & NGX_HTTP_POST)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_http_ragq_add_header(r, "Allow", "POST") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_ragq_error(r, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "use POST to submit a question");
    }

    ngx_str_set(&args[0].name, "query");
    ngx_str_set(&args[1].name, "top_k");

    ngx_http_ragq_args(r, args, 2);

    if (args[0].value.data) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_ragq_form_decode(r, &args[0].value, &query);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_query",
                                       "the query argument has a malformed "
                                       "percent-encoding");
        }

        top_k = NGX_CONF_UNSET;

        if (args[1].value.data) {
            top_k = (args[1].value.len > 6)
                        ? 0
                        : ngx_atoi(args[1].value.data, args[1].value.len);
            if (top_k == NGX_ERROR) {
                top_k = 0;
            }
        }

        rc = ngx_http_ragq_enqueue(r, &query, top_k);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
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

    if (r->headers_in.content_length_n >
        (off_t) ngx_http_ragq_body_limit(lcf)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ragq_errorf(
            r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "body_too_large",
            "the request body is %O bytes; at most "
            "%uz are accepted (ragq_max_query_length "
            "is %uz)",
            r->headers_in.content_length_n, ngx_http_ragq_body_limit(lcf),
            lcf->max_query_length);
    }

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
    ngx_str_t                 body, query;
    ngx_http_ragq_err_t       err;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "missing_query",
                                   "the request body is empty; send "
                                   "{\"query\": \"...\"}"));
        return;
    }

    rc = ngx_http_ragq_body(r, &body, ngx_http_ragq_body_limit(lcf));

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_errorf(
                   r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "body_too_large",
                   "the request body is larger than %uz "
                   "bytes (ragq_max_query_length is %uz)",
                   ngx_http_ragq_body_limit(lcf), lcf->max_query_length));
        return;
    }

    ngx_str_null(&query);
    top_k = NGX_CONF_UNSET;

    if (ngx_http_ragq_parse_body(r, body.data, body.len, &query, &top_k,
                                 &err) != NGX_OK) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_error(r, err.status, err.code, err.message));
        return;
    }

    if (query.data == NULL) {
        ngx_http_finalize_request(
            r, ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "missing_query",
                                   "the JSON body has no \"query\"; send "
                                   "{\"query\": \"...\"}"));
        return;
    }

    rc = ngx_http_ragq_enqueue(r, &query, top_k);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_ragq_queue_full(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf)
{
    ngx_http_ragq_cell_t *cell;
    const char           *argv[2];
    size_t                argvlen[2];

    if (lcf->max_queue <= 0 || lcf->queue_len < (ngx_uint_t) lcf->max_queue) {
        return 0;
    }

    /* saturated: re-read the length now and then, without a request */
    if (!lcf->queue_checking &&
        ngx_current_msec - lcf->queue_checked >= NGX_HTTP_RAGQ_QUEUE_RECHECK) {
        cell = ngx_calloc(sizeof(ngx_http_ragq_cell_t), r->connection->log);

        if (cell) {
            cell->handler = ngx_http_ragq_xlen_reply;
            cell->data = lcf;

            argv[0] = "XLEN";
            argvlen[0] = 4;
            argv[1] = (const char *) lcf->jobs_key.data;
            argvlen[1] = lcf->jobs_key.len;

            if (ngx_http_ragq_valkey_command(cell, 2, argv, argvlen) ==
                NGX_OK) {
                lcf->queue_checking = 1;
            } else {
                ngx_free(cell);
            }
        }
    }

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
}


/* epoch ms as text: nginx's clock is cached per event loop iteration, so
 * most requests share the last one's text */
static size_t
ngx_http_ragq_created_at(u_char *buf, ngx_time_t *tp)
{
    uint64_t        ms;
    static size_t   len;
    static u_char   text[NGX_INT64_LEN];
    static uint64_t last;

    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    if (ms != last || len == 0) {
        len = ngx_http_ragq_resp_uint(text, ms) - text;
        last = ms;
    }

    ngx_memcpy(buf, text, len);

    return len;
}


static ngx_int_t
ngx_http_ragq_enqueue(ngx_http_request_t *r, ngx_str_t *query, ngx_uint_t top_k)
{
    u_char                   *p, *cmd[5];
    size_t                    len, n, created_len;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_str_t                 collection, tenant, job_key, idem_key;
    ngx_time_t               *tp;
    ngx_sha1_t                sha1;
    ngx_table_elt_t          *idem;
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;
    const char               *argv[20];
    size_t                    argvlen[20];
    u_char                    created[NGX_INT64_LEN];
    u_char                    topk[NGX_INT_T_LEN];
    u_char                    ttl[NGX_INT_T_LEN];
    u_char                    digest[20];

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

    if (top_k == (ngx_uint_t) NGX_CONF_UNSET) {
        top_k = lcf->top_k;

    } else if (top_k < 1 || top_k > lcf->top_k_max) {
        return ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST, "invalid_top_k",
                                    "top_k must be an integer from 1 to %ui",
                                    lcf->top_k_max);
    }

    idem = ngx_http_ragq_find_header(r, "Idempotency-Key",
                                     sizeof("Idempotency-Key") - 1);

    if (idem &&
        (idem->value.len == 0 || idem->value.len > NGX_HTTP_RAGQ_IDEM_MAX)) {
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

    ngx_str_set(&collection, "");
    ngx_str_set(&tenant, "");

    if (lcf->collection &&
        ngx_http_complex_value(r, lcf->collection, &collection) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (lcf->tenant &&
        ngx_http_complex_value(r, lcf->tenant, &tenant) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cell = ngx_http_ragq_cell_create(r, ngx_http_ragq_enqueue_reply);
    if (cell == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cell->data = lcf;

    if (ngx_http_ragq_job_id(cell->job_id) != NGX_OK) {
        cell->cleanup->handler = NULL;
        ngx_free(cell);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    tp = ngx_timeofday();
    created_len = ngx_http_ragq_created_at(created, tp);
    n = ngx_http_ragq_resp_uint(topk, top_k) - topk;

    if (idem == NULL) {
        /* the common path: one pipelined MULTI, no script */
        len = sizeof(NGX_HTTP_RAGQ_MULTI) + lcf->hset_head.len + 32 +
              sizeof(NGX_HTTP_RAGQ_HSET_STATUS) + query->len +
              sizeof(NGX_HTTP_RAGQ_HSET_TOP_K) + NGX_INT_T_LEN +
              sizeof(NGX_HTTP_RAGQ_HSET_COLLECTION) + collection.len +
              sizeof(NGX_HTTP_RAGQ_HSET_TENANT) + tenant.len +
              sizeof(NGX_HTTP_RAGQ_HSET_CREATED) + NGX_INT64_LEN +
              sizeof(NGX_HTTP_RAGQ_HSET_ATTEMPTS) + lcf->xadd_head.len + 32 +
              2 + lcf->xlen_cmd.len + sizeof(NGX_HTTP_RAGQ_EXEC) +
              5 * (NGX_HTTP_RAGQ_RESP_HEAD_MAX + 2);

        cmd[0] = ngx_pnalloc(r->pool, len);
        if (cmd[0] == NULL) {
            cell->cleanup->handler = NULL;
            ngx_free(cell);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_http_ragq_lit(cmd[0], NGX_HTTP_RAGQ_MULTI);

        cmd[1] = p;
        p = ngx_cpymem(p, lcf->hset_head.data, lcf->hset_head.len);
        p = ngx_cpymem(p, cell->job_id, 32);
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HSET_STATUS);
        p = ngx_http_ragq_resp_bulk(p, query->data, query->len);
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HSET_TOP_K);
        p = ngx_http_ragq_resp_bulk(p, topk, n);
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HSET_COLLECTION);
        p = ngx_http_ragq_resp_bulk(p, collection.data, collection.len);
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HSET_TENANT);
        p = ngx_http_ragq_resp_bulk(p, tenant.data, tenant.len);
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HSET_CREATED);
        p = ngx_http_ragq_resp_bulk(p, created, created_len);
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HSET_ATTEMPTS);

        cmd[2] = p;
        p = ngx_cpymem(p, lcf->xadd_head.data, lcf->xadd_head.len);
        p = ngx_cpymem(p, cell->job_id, 32);
        *p++ = '\r';
        *p++ = '\n';

        cmd[3] = p;
        p = ngx_cpymem(p, lcf->xlen_cmd.data, lcf->xlen_cmd.len);

        cmd[4] = p;
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_EXEC);

        /*
         * One call per command, so that hiredis matches each reply to its
         * callback; only EXEC's reply (all three results) is wanted.
         */
        rc = NGX_OK;

        for (i = 0; i < 4 && rc == NGX_OK; i++) {
            rc = ngx_http_ragq_valkey_send(NULL, cmd[i], cmd[i + 1] - cmd[i]);
        }

        if (rc == NGX_OK) {
            rc = ngx_http_ragq_valkey_send(cell, cmd[4], p - cmd[4]);
        }

    } else {
        ngx_sha1_init(&sha1);
        ngx_sha1_update(&sha1, idem->value.data, idem->value.len);
        ngx_sha1_final(digest, &sha1);

        job_key.len = lcf->job_prefix.len + 32;
        idem_key.len = lcf->idem_prefix.len + tenant.len + 1 + 40;

        job_key.data = ngx_pnalloc(r->pool, job_key.len + idem_key.len);
        if (job_key.data == NULL) {
            cell->cleanup->handler = NULL;
            ngx_free(cell);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(job_key.data, lcf->job_prefix.data, lcf->job_prefix.len);
        idem_key.data = ngx_cpymem(p, cell->job_id, 32);

        p = ngx_cpymem(idem_key.data, lcf->idem_prefix.data,
                       lcf->idem_prefix.len);
        if (tenant.len) {
            p = ngx_cpymem(p, tenant.data, tenant.len);
        }

        *p++ = ':';
        ngx_hex_dump(p, digest, 20);

        argv[0] = "EVAL";
        argvlen[0] = 4;
        argv[1] = ngx_http_ragq_idem_script;
        argvlen[1] = sizeof(ngx_http_ragq_idem_script) - 1;
        argv[2] = "3";
        argvlen[2] = 1;
        argv[3] = (const char *) idem_key.data;
        argvlen[3] = idem_key.len;
        argv[4] = (const char *) job_key.data;
        argvlen[4] = job_key.len;
        argv[5] = (const char *) lcf->jobs_key.data;
        argvlen[5] = lcf->jobs_key.len;
        argv[6] = (const char *) cell->job_id;
        argvlen[6] = 32;
        argv[7] = (const char *) ttl;
        argvlen[7] = ngx_sprintf(ttl, "%M", lcf->job_ttl) - ttl;
        argv[8] = (const char *) lcf->job_prefix.data;
        argvlen[8] = lcf->job_prefix.len;
        argv[9] = (const char *) query->data;
        argvlen[9] = query->len;
        argv[10] = (const char *) topk;
        argvlen[10] = n;
        argv[11] = (const char *) collection.data;
        argvlen[11] = collection.len;
        argv[12] = (const char *) tenant.data;
        argvlen[12] = tenant.len;
        argv[13] = (const char *) created;
        argvlen[13] = created_len;

        rc = ngx_http_ragq_valkey_command(cell, 14, argv, argvlen);
    }

    if (rc != NGX_OK) {
        /* a MULTI left open is discarded by the server when the failed
         * connection goes away; the context refuses commands only then */
        cell->cleanup->handler = NULL;
        ngx_free(cell);
        return ngx_http_ragq_unavailable(r, NGX_DECLINED);
    }

    ngx_http_ragq_cell_wait(r, cell);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_ragq_send_queued(ngx_http_request_t *r, u_char *id)
{
    u_char          *body, *p, *loc;
    size_t           len;
    ngx_table_elt_t *h;

    body = ngx_pnalloc(r->pool, sizeof("{\"status\":\"queued\",\"job_id\":\"\","
                                       "\"status_url\":\"\"}\n") +
                                    32 + sizeof("/job-status?job_id=") + 32);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_ragq_lit(body, "{\"status\":\"queued\",\"job_id\":\"");
    p = ngx_cpymem(p, id, 32);
    p = ngx_http_ragq_lit(p, "\",\"status_url\":\"");
    loc = p;
    p = ngx_http_ragq_lit(p, "/job-status?job_id=");
    p = ngx_cpymem(p, id, 32);
    len = p - loc;
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
    ngx_int_t                 rc;
    redisReply               *e;
    ngx_http_request_t       *r;
    ngx_http_ragq_loc_conf_t *lcf = cell->data;

    id = NULL;

    /* MULTI's EXEC: [hset, stream id, xlen]; the script: [new, id, xlen] */
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[2]->type == REDIS_REPLY_INTEGER) {
        e = reply->element[1];

        if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) {
            if (reply->element[2]->integer >= 0) {
                lcf->queue_len = (ngx_uint_t) reply->element[2]->integer;
                lcf->queue_checked = ngx_current_msec;
            }

            id = cell->job_id;

            if (e->len == 32 &&
                ngx_http_ragq_job_id_valid((u_char *) e->str, 32)) {
                /* an existing job for the same Idempotency-Key */
                id = (u_char *) e->str;
            }
        }
    }

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    if (id) {
        rc = ngx_http_ragq_send_queued(r, id);

    } else {
        rc = ngx_http_ragq_reply_error(r, reply);
    }

    ngx_http_ragq_finalize(r, rc);
}
