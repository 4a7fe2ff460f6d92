/*
 * ragq: the nginx side of the asynchronous question queue. Owns the ragq_*
 * directives, POST /chat (validate, enqueue into Valkey, 202) and
 * GET /job-status (read the job hash, tenant check, JSON), the /chat body's
 * fields, and job id generation. Long-polls live in ngx_http_ragq_longpoll.c,
 * JSON text and UTF-8 in ngx_http_ragq_json.c, the Valkey connections in
 * ngx_http_ragq_valkey.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>
#include <sys/random.h>

#include "ngx_http_ragq_json.h"
#include "ngx_http_ragq_module.h"


#define NGX_HTTP_RAGQ_ENQUEUE 1
#define NGX_HTTP_RAGQ_STATUS  2

#define NGX_HTTP_RAGQ_IDEM_MAX      255
#define NGX_HTTP_RAGQ_QUEUE_RECHECK 100
#define NGX_HTTP_RAGQ_PREFIX_MAX    (NGX_HTTP_RAGQ_KEY_MAX - 32 - 5)

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
    ngx_http_ragq_valkey_conf_t valkey;
    ngx_http_ragq_pubsub_t      pubsub; /* the events of ragq_status prefixes */
    ngx_flag_t                  valkey_set;
    ngx_flag_t                  used;
} ngx_http_ragq_main_conf_t;


typedef struct {
    ngx_uint_t  status;
    const char *code;
    const char *message;
} ngx_http_ragq_err_t;


static ngx_int_t ngx_http_ragq_enqueue_handler(ngx_http_request_t *r);
static void      ngx_http_ragq_enqueue_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ragq_enqueue(ngx_http_request_t *r, ngx_str_t *query,
                                       ngx_uint_t top_k);
static void      ngx_http_ragq_enqueue_reply(ngx_http_ragq_cell_t *cell,
                                             redisReply           *reply);
static void      ngx_http_ragq_xlen_reply(ngx_http_ragq_cell_t *cell,
                                          redisReply           *reply);
static ngx_int_t ngx_http_ragq_status_handler(ngx_http_request_t *r);
static void      ngx_http_ragq_status_reply(ngx_http_ragq_cell_t *cell,
                                            redisReply           *reply);
static ngx_int_t ngx_http_ragq_send_json(ngx_http_request_t *r,
                                         ngx_uint_t status, u_char *body,
                                         size_t len);
static ngx_int_t ngx_http_ragq_reply_error(ngx_http_request_t *r,
                                           redisReply         *reply);

static char     *ngx_http_ragq_valkey(ngx_conf_t *cf, ngx_command_t *cmd,
                                      void *conf);
static char     *ngx_http_ragq_handler_set(ngx_conf_t *cf, ngx_command_t *cmd,
                                           void *conf);
static char     *ngx_http_ragq_top_k(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf);
static void     *ngx_http_ragq_create_main_conf(ngx_conf_t *cf);
static char     *ngx_http_ragq_init_main_conf(ngx_conf_t *cf, void *conf);
static void     *ngx_http_ragq_create_loc_conf(ngx_conf_t *cf);
static char     *ngx_http_ragq_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                              void *child);
static ngx_int_t ngx_http_ragq_init_process(ngx_cycle_t *cycle);
static void      ngx_http_ragq_exit_process(ngx_cycle_t *cycle);


static ngx_command_t ngx_http_ragq_commands[] = {

    {ngx_string("ragq_valkey"), NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
     ngx_http_ragq_valkey, NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL},

    {ngx_string("ragq_enqueue"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_ragq_handler_set, NGX_HTTP_LOC_CONF_OFFSET, 0,
     (void *) NGX_HTTP_RAGQ_ENQUEUE},

    {ngx_string("ragq_status"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_ragq_handler_set, NGX_HTTP_LOC_CONF_OFFSET, 0,
     (void *) NGX_HTTP_RAGQ_STATUS},

    {ngx_string("ragq_prefix"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, prefix), NULL},

    {ngx_string("ragq_collection"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_http_set_complex_value_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, collection), NULL},

    {ngx_string("ragq_tenant"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_http_set_complex_value_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, tenant), NULL},

    {ngx_string("ragq_top_k"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE12,
     ngx_http_ragq_top_k, NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},

    {ngx_string("ragq_max_query_length"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, max_query_length), NULL},

    {ngx_string("ragq_max_queue"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, max_queue), NULL},

    {ngx_string("ragq_job_ttl"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, job_ttl), NULL},

    {ngx_string("ragq_max_wait"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_sec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, max_wait), NULL},

    {ngx_string("ragq_valkey_timeout"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF |
         NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_ragq_loc_conf_t, valkey_timeout), NULL},

    ngx_null_command};


static ngx_http_module_t ngx_http_ragq_module_ctx = {
    NULL, /* preconfiguration */
    NULL, /* postconfiguration */

    ngx_http_ragq_create_main_conf, /* create main configuration */
    ngx_http_ragq_init_main_conf,   /* init main configuration */

    NULL, /* create server configuration */
    NULL, /* merge server configuration */

    ngx_http_ragq_create_loc_conf, /* create location configuration */
    ngx_http_ragq_merge_loc_conf   /* merge location configuration */
};


ngx_module_t ngx_http_ragq_module = {NGX_MODULE_V1,
                                     &ngx_http_ragq_module_ctx,  /* ctx */
                                     ngx_http_ragq_commands,     /* commands */
                                     NGX_HTTP_MODULE,            /* type */
                                     NULL,                       /* master */
                                     NULL,                       /* module */
                                     ngx_http_ragq_init_process, /* process */
                                     NULL,                       /* thread */
                                     NULL,                       /* thread */
                                     ngx_http_ragq_exit_process, /* process */
                                     NULL,                       /* master */
                                     NGX_MODULE_V1_PADDING};


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


/* random bytes for job ids, refilled in bulk to keep getrandom() off the
 * per-request path */
static u_char ngx_http_ragq_random[4096];
static size_t ngx_http_ragq_random_pos = sizeof(ngx_http_ragq_random);


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


/* form decoding of a query argument: "+" is a space, %XX a byte */
static ngx_int_t
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


typedef struct {
    ngx_str_t name;
    ngx_str_t value; /* data == NULL: absent */
} ngx_http_ragq_arg_t;


/*
 * The wanted arguments in one pass over r->args (ngx_http_arg() scans the
 * whole string once per name). As there, names match case-insensitively,
 * need a "=", and the first occurrence wins.
 */
static void
ngx_http_ragq_args(ngx_http_request_t *r, ngx_http_ragq_arg_t *args,
                   ngx_uint_t n)
{
    u_char    *p, *end, *name, *eq;
    ngx_uint_t i;

    for (i = 0; i < n; i++) {
        ngx_str_null(&args[i].value);
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
                if (args[i].value.data == NULL &&
                    (size_t) (eq - name) == args[i].name.len &&
                    ngx_strncasecmp(name, args[i].name.data,
                                    args[i].name.len) == 0) {
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


static ngx_int_t
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


static ngx_int_t
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

    if (status == NGX_HTTP_TOO_MANY_REQUESTS ||
        status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        if (ngx_http_ragq_add_header(r, "Retry-After", "1") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    clen = ngx_strlen(code);
    mlen = ngx_strlen(message);

    len = sizeof("{\"error\":{\"code\":,\"message\":}}\n") - 1 +
          ngx_http_ragq_json_escape_len((u_char *) code, clen) +
          ngx_http_ragq_json_escape_len((u_char *) message, mlen);

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
static ngx_int_t
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
    if (why == NGX_BUSY) {
        return ngx_http_ragq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "overloaded",
                                   "too many requests are waiting for Valkey "
                                   "in this nginx worker; retry shortly");
    }

    return ngx_http_ragq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "valkey_unavailable",
                               "the job store (Valkey) is unreachable; "
                               "retry shortly");
}


static ngx_int_t
ngx_http_ragq_reply_error(ngx_http_request_t *r, redisReply *reply)
{
    if (reply == NULL) {
        return ngx_http_ragq_unavailable(r, NGX_DECLINED);
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ragq: valkey error: %s", reply->str);

        /* transient server states: the client may retry */
        if (ngx_strncmp(reply->str, "LOADING", 7) == 0 ||
            ngx_strncmp(reply->str, "BUSY", 4) == 0 ||
            ngx_strncmp(reply->str, "MASTERDOWN", 10) == 0 ||
            ngx_strncmp(reply->str, "READONLY", 8) == 0 ||
            ngx_strncmp(reply->str, "OOM", 3) == 0 ||
            ngx_strncmp(reply->str, "NOAUTH", 6) == 0 ||
            ngx_strncmp(reply->str, "EXECABORT", 9) == 0) {
            return ngx_http_ragq_unavailable(r, NGX_DECLINED);
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ragq: unexpected valkey reply type %d", reply->type);
    }

    return ngx_http_ragq_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "internal_error",
                               "the job store returned an unexpected reply");
}


/* ---- pending cells ---- */


static void
ngx_http_ragq_cell_cleanup(void *data)
{
    ngx_http_ragq_cell_t *cell = data;

    cell->request = NULL;

    if (cell->deadline.timer_set) {
        ngx_del_timer(&cell->deadline);
    }
}


/* detaches the cell from its request; returns the request or NULL */
static ngx_http_request_t *
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
    ngx_http_request_t       *r;
    ngx_http_ragq_cell_t     *cell = ev->data;
    ngx_http_ragq_loc_conf_t *lcf;

    /* the cell stays queued in hiredis until its reply or the disconnect */
    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ragq: valkey did not answer within %M ms",
                  lcf->valkey_timeout);

    ngx_http_ragq_finalize(
        r,
        ngx_http_ragq_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_timeout",
                            "the job store (Valkey) did not answer in "
                            "time; retry shortly"));
}


static ngx_http_ragq_cell_t *
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


/* arms the deadline and watches the client while the reply is pending */
static void
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


/* ---- job ids ---- */


static ngx_int_t
ngx_http_ragq_job_id(u_char *id)
{
    ssize_t n;

    if (ngx_http_ragq_random_pos + 16 > sizeof(ngx_http_ragq_random)) {
        n = getrandom(ngx_http_ragq_random, sizeof(ngx_http_ragq_random), 0);
        if (n != (ssize_t) sizeof(ngx_http_ragq_random)) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                          "ragq: getrandom() failed");
            return NGX_ERROR;
        }

        ngx_http_ragq_random_pos = 0;
    }

    ngx_hex_dump(id, ngx_http_ragq_random + ngx_http_ragq_random_pos, 16);

    /* used bytes are wiped so an id never repeats from stale memory */
    ngx_memzero(ngx_http_ragq_random + ngx_http_ragq_random_pos, 16);
    ngx_http_ragq_random_pos += 16;

    return NGX_OK;
}


ngx_flag_t
ngx_http_ragq_job_id_valid(u_char *p, size_t len)
{
    size_t i;

    if (len != 32) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* ---- POST /chat ---- */


static ngx_table_elt_t *
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

        if (h[i].key.len == len &&
            ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0) {
            return &h[i];
        }
    }
}


static ngx_flag_t
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

    if (ct->value.len < len ||
        ngx_strncasecmp(p, (u_char *) "application/json", len) != 0) {
        return 0;
    }

    return ct->value.len == len || p[len] == ';' || p[len] == ' ' ||
           p[len] == '\t';
}


static size_t
ngx_http_ragq_body_limit(ngx_http_ragq_loc_conf_t *lcf)
{
    /* the query may arrive fully \u-escaped: six bytes per byte */
    return lcf->max_query_length * 6 + 4096;
}


static ngx_int_t
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


/* the whole body in one buffer; a body that nginx spooled to a temp file
 * (larger than client_body_buffer_size) is read back from it */
static ngx_int_t
ngx_http_ragq_body(ngx_http_request_t *r, ngx_str_t *body, size_t limit)
{
    u_char      *p;
    off_t        size;
    ssize_t      n;
    ngx_buf_t   *b;
    ngx_chain_t *cl;

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    if (size > (off_t) limit) {
        return NGX_DECLINED;
    }

    cl = r->request_body->bufs;

    if (cl && cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    body->len = p - body->data;

    return NGX_OK;
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


/* ---- GET /job-status ---- */


/*
 * wait=N: seconds, with up to three decimals; 0 or absent answers at once,
 * anything above ragq_max_wait waits ragq_max_wait. NGX_DECLINED: not a
 * non-negative number.
 */
static ngx_int_t
ngx_http_ragq_wait_arg(ngx_str_t *v, ngx_http_ragq_loc_conf_t *lcf,
                       ngx_msec_t *wait)
{
    u_char    *p, *end;
    ngx_uint_t ms, frac, scale;

    *wait = 0;

    if (v->data == NULL) {
        return NGX_OK;
    }

    p = v->data;
    end = v->data + v->len;
    ms = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        /* saturate well above any sensible ragq_max_wait */
        if (ms < 100000000) {
            ms = ms * 10 + (*p - '0') * 1000;
        }

        p++;
    }

    if (p == v->data) {
        goto invalid;
    }

    if (p < end && *p == '.') {
        p++;
        frac = 0;

        for (scale = 100; p < end && *p >= '0' && *p <= '9'; p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }

        ms += frac;
    }

    if (p != end) {
        goto invalid;
    }

    if (ms > (ngx_uint_t) lcf->max_wait * 1000) {
        ms = (ngx_uint_t) lcf->max_wait * 1000;
    }

    *wait = ms;

    return NGX_OK;

invalid:

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_ragq_status_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 id, job_key;
    ngx_msec_t                wait;
    ngx_http_ragq_arg_t       args[2];
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;
    u_char                    cmd[NGX_HTTP_RAGQ_KEY_MAX + 64];

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        if (ngx_http_ragq_add_header(r, "Allow", "GET, HEAD") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_ragq_error(r, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "use GET to read a job");
    }

    ngx_str_set(&args[0].name, "job_id");
    ngx_str_set(&args[1].name, "wait");

    ngx_http_ragq_args(r, args, 2);

    id = args[0].value;

    if (id.len == 0) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "missing_job_id",
                                   "the job_id argument is required: "
                                   "/job-status?job_id=ID");
    }

    if (!ngx_http_ragq_job_id_valid(id.data, id.len)) {
        return ngx_http_ragq_error(r, NGX_HTTP_BAD_REQUEST, "invalid_job_id",
                                   "job_id must be 32 lowercase hexadecimal "
                                   "characters, as returned by POST /chat");
    }

    if (ngx_http_ragq_wait_arg(&args[1].value, lcf, &wait) != NGX_OK) {
        return ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST, "invalid_wait",
                                    "wait must be a number of seconds, e.g. "
                                    "wait=30 (at most %T is used)",
                                    lcf->max_wait);
    }

    rc = ngx_http_ragq_valkey_available();
    if (rc != NGX_OK) {
        return ngx_http_ragq_unavailable(r, rc);
    }

    /*
     * Without a confirmed subscription an event could be missed: answer
     * the current state at once, the client polls again.
     */
    if (wait && ngx_http_ragq_pubsub_ready()) {
        job_key.len = lcf->job_prefix.len + 32;
        job_key.data = ngx_pnalloc(r->pool, job_key.len);
        if (job_key.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(job_key.data, lcf->job_prefix.data, lcf->job_prefix.len);
        ngx_memcpy(p, id.data, 32);

        return ngx_http_ragq_wait(r, lcf, &job_key, id.data, wait);
    }

    cell = ngx_http_ragq_cell_create(r, ngx_http_ragq_status_reply);
    if (cell == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(cell->job_id, id.data, 32);
    cell->data = lcf;

    p = ngx_cpymem(cmd, lcf->hgetall_head.data, lcf->hgetall_head.len);
    p = ngx_cpymem(p, id.data, 32);
    *p++ = '\r';
    *p++ = '\n';

    if (ngx_http_ragq_valkey_send(cell, cmd, p - cmd) != NGX_OK) {
        cell->cleanup->handler = NULL;
        ngx_free(cell);
        return ngx_http_ragq_unavailable(r, NGX_DECLINED);
    }

    ngx_http_ragq_cell_wait(r, cell);

    r->main->count++;

    return NGX_DONE;
}


typedef enum {
    NGX_HTTP_RAGQ_F_STRING,
    NGX_HTTP_RAGQ_F_JSON,
    NGX_HTTP_RAGQ_F_NUMBER
} ngx_http_ragq_field_type_e;


typedef struct {
    ngx_str_t                  name;
    ngx_http_ragq_field_type_e type;
} ngx_http_ragq_field_t;


static ngx_http_ragq_field_t ngx_http_ragq_fields[] = {
    {ngx_string("status"), NGX_HTTP_RAGQ_F_STRING},
    {ngx_string("query"), NGX_HTTP_RAGQ_F_STRING},
    {ngx_string("result"), NGX_HTTP_RAGQ_F_STRING},
    {ngx_string("sources"), NGX_HTTP_RAGQ_F_JSON},
    {ngx_string("error"), NGX_HTTP_RAGQ_F_JSON},
    {ngx_string("created_at"), NGX_HTTP_RAGQ_F_NUMBER},
    {ngx_string("started_at"), NGX_HTTP_RAGQ_F_NUMBER},
    {ngx_string("ended_at"), NGX_HTTP_RAGQ_F_NUMBER},
    {ngx_string("attempts"), NGX_HTTP_RAGQ_F_NUMBER},
    {ngx_string("usage"), NGX_HTTP_RAGQ_F_JSON}};

#define NGX_HTTP_RAGQ_NFIELDS \
    (sizeof(ngx_http_ragq_fields) / sizeof(ngx_http_ragq_fields[0]))


static ngx_flag_t
ngx_http_ragq_is_integer(u_char *p, size_t len)
{
    size_t i = 0;

    if (len && p[0] == '-') {
        i = 1;
    }

    if (i == len || len - i > 19) {
        return 0;
    }

    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_ragq_send_job(ngx_http_request_t *r, u_char *id, redisReply *reply)
{
    u_char     *body, *p;
    size_t      len, i, k;
    ngx_uint_t  kind[NGX_HTTP_RAGQ_NFIELDS];
    redisReply *val[NGX_HTTP_RAGQ_NFIELDS];
    redisReply *key, *v;

    ngx_memzero(val, sizeof(val));

    for (i = 0; i + 1 < reply->elements; i += 2) {
        key = reply->element[i];

        if (key->type != REDIS_REPLY_STRING || key->len == 0) {
            continue;
        }

        for (k = 0; k < NGX_HTTP_RAGQ_NFIELDS; k++) {
            if ((size_t) key->len == ngx_http_ragq_fields[k].name.len &&
                (u_char) key->str[0] == ngx_http_ragq_fields[k].name.data[0] &&
                ngx_memcmp(key->str, ngx_http_ragq_fields[k].name.data,
                           key->len) == 0) {
                val[k] = reply->element[i + 1];
                break;
            }
        }
    }

    len = sizeof("{\"job_id\":\"\"}\n") + 32;

    for (k = 0; k < NGX_HTTP_RAGQ_NFIELDS; k++) {
        len += ngx_http_ragq_fields[k].name.len + sizeof(",\"\":") - 1;
        v = val[k];
        kind[k] = 0;

        if (v == NULL || v->type != REDIS_REPLY_STRING) {
            len += 4;
            continue;
        }

        switch (ngx_http_ragq_fields[k].type) {
        case NGX_HTTP_RAGQ_F_NUMBER:
            if (ngx_http_ragq_is_integer((u_char *) v->str, v->len)) {
                kind[k] = 1;
                len += v->len;
            } else {
                len += 4;
            }

            break;

        case NGX_HTTP_RAGQ_F_JSON:
            if (ngx_http_ragq_json_valid((u_char *) v->str, v->len)) {
                kind[k] = 1;
                len += v->len;
                break;
            }

            /* text that is not JSON is sent as a string */
            /* fall through */

        default:
            kind[k] = 2;
            len += ngx_http_ragq_json_escape_len((u_char *) v->str, v->len);
        }
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_ragq_lit(body, "{\"job_id\":\"");
    p = ngx_cpymem(p, id, 32);
    *p++ = '"';

    for (k = 0; k < NGX_HTTP_RAGQ_NFIELDS; k++) {
        *p++ = ',';
        *p++ = '"';
        p = ngx_cpymem(p, ngx_http_ragq_fields[k].name.data,
                       ngx_http_ragq_fields[k].name.len);
        *p++ = '"';
        *p++ = ':';

        v = val[k];

        switch (kind[k]) {
        case 1:
            p = ngx_cpymem(p, v->str, v->len);
            break;
        case 2:
            p = ngx_http_ragq_json_escape(p, (u_char *) v->str, v->len);
            break;
        default:
            p = ngx_cpymem(p, "null", 4);
        }
    }

    *p++ = '}';
    *p++ = '\n';

    return ngx_http_ragq_send_json(r, NGX_HTTP_OK, body, p - body);
}


/*
 * NGX_OK: the job in reply exists and belongs to r's tenant; NGX_DECLINED:
 * 404 (another tenant's job is indistinguishable from a missing one).
 */
ngx_int_t
ngx_http_ragq_job_visible(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                          redisReply *reply)
{
    size_t      i;
    ngx_str_t   tenant;
    redisReply *key, *owner;

    if (reply->elements == 0) {
        return NGX_DECLINED;
    }

    ngx_str_set(&tenant, "");

    if (lcf->tenant &&
        ngx_http_complex_value(r, lcf->tenant, &tenant) != NGX_OK) {
        return NGX_ERROR;
    }

    owner = NULL;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        key = reply->element[i];

        if (key->type == REDIS_REPLY_STRING && key->len == 6 &&
            ngx_strncmp(key->str, "tenant", 6) == 0) {
            owner = reply->element[i + 1];
            break;
        }
    }

    if ((owner == NULL && tenant.len > 0) ||
        (owner && ((size_t) owner->len != tenant.len ||
                   (tenant.len &&
                    ngx_memcmp(owner->str, tenant.data, tenant.len) != 0)))) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the /job-status answer for a HGETALL reply (or its failure) */
ngx_int_t
ngx_http_ragq_status_respond(ngx_http_request_t       *r,
                             ngx_http_ragq_loc_conf_t *lcf, u_char *id,
                             redisReply *reply)
{
    ngx_int_t rc;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return ngx_http_ragq_reply_error(r, reply);
    }

    rc = ngx_http_ragq_job_visible(r, lcf, reply);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_ragq_error(r, NGX_HTTP_NOT_FOUND, "job_not_found",
                                   "no such job: it never existed, has "
                                   "expired, or belongs to someone else");
    }

    return ngx_http_ragq_send_job(r, id, reply);
}


static void
ngx_http_ragq_status_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    ngx_http_request_t       *r;
    ngx_http_ragq_loc_conf_t *lcf = cell->data;

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    ngx_http_ragq_finalize(
        r, ngx_http_ragq_status_respond(r, lcf, cell->job_id, reply));
}


/* ---- configuration ---- */


static char *
ngx_http_ragq_valkey(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_main_conf_t *rmcf = conf;

    u_char    *p;
    size_t     len;
    ngx_int_t  db, ms;
    ngx_str_t *value, s;
    ngx_url_t  u;
    ngx_uint_t i;
    u_char     text[NGX_SOCKADDR_STRLEN];

    if (rmcf->valkey_set) {
        return "is duplicate";
    }

    rmcf->valkey_set = 1;
    value = cf->args->elts;

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        len = value[1].len - 5;
        p = ngx_pnalloc(cf->pool, len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(p, value[1].data + 5, len);
        p[len] = '\0';
        rmcf->valkey.unix_path.data = p;
        rmcf->valkey.unix_path.len = len;

    } else {
        /* resolved here, at configuration time: hiredis would otherwise call
         * getaddrinfo() on the event loop */
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url = value[1];
        u.default_port = 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"",
                               u.err ? u.err : "invalid address", &value[1]);
            return NGX_CONF_ERROR;
        }

        if (u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "no address for \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, text,
                            NGX_SOCKADDR_STRLEN, 0);

        p = ngx_pnalloc(cf->pool, len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(p, text, len);
        p[len] = '\0';
        rmcf->valkey.host.data = p;
        rmcf->valkey.host.len = len;
        rmcf->valkey.port = u.port ? u.port : 6379;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rmcf->valkey.password.data = value[i].data + 9;
            rmcf->valkey.password.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            db = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid database number \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rmcf->valkey.db = db;
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;

            ms = ngx_parse_time(&s, 0);
            if (ms == NGX_ERROR || ms == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid connect timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rmcf->valkey.connect_timeout = (ngx_msec_t) ms;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ragq_handler_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_loc_conf_t *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_ragq_main_conf_t *rmcf;

    if (lcf->kind) {
        return "is duplicate";
    }

    lcf->kind = (ngx_uint_t) cmd->post;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = (lcf->kind == NGX_HTTP_RAGQ_ENQUEUE)
                        ? ngx_http_ragq_enqueue_handler
                        : ngx_http_ragq_status_handler;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ragq_module);
    rmcf->used = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_ragq_top_k(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ragq_loc_conf_t *lcf = conf;

    ngx_int_t  n, max;
    ngx_str_t *value;

    if (lcf->top_k != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);
    if (n < 1) {
        return "must be a positive number";
    }

    max = n;

    if (cf->args->nelts > 2) {
        max = ngx_atoi(value[2].data, value[2].len);
        if (max < n) {
            return "has a maximum smaller than its default";
        }
    }

    lcf->top_k = n;
    lcf->top_k_max =
        (cf->args->nelts > 2) ? (ngx_uint_t) max : ngx_max((ngx_uint_t) n, 20);

    return NGX_CONF_OK;
}


static void *
ngx_http_ragq_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ragq_main_conf_t *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ragq_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->pubsub.channels, cf->pool, 1,
                       sizeof(ngx_http_ragq_channel_t)) != NGX_OK) {
        return NULL;
    }

    rmcf->pubsub.message = ngx_http_ragq_lp_message;
    rmcf->pubsub.ready = ngx_http_ragq_lp_ready;
    rmcf->pubsub.closing = ngx_http_ragq_lp_closing;

    return rmcf;
}


static char *
ngx_http_ragq_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_ragq_main_conf_t *rmcf = conf;

    if (!rmcf->valkey_set) {
        ngx_str_set(&rmcf->valkey.host, "127.0.0.1");
        rmcf->valkey.port = 6379;
    }

    /*
     * Generous: on a loaded host a local connect plus AUTH/SELECT/SUBSCRIBE
     * can take longer than a second, and that is not an outage.
     */
    if (rmcf->valkey.connect_timeout == 0) {
        rmcf->valkey.connect_timeout = 3000;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_ragq_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ragq_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *     lcf->kind = 0;
     *     lcf->prefix = { 0, NULL };
     *     lcf->collection = NULL;
     *     lcf->tenant = NULL;
     *     lcf->queue_* = 0;
     */

    lcf->top_k = NGX_CONF_UNSET_UINT;
    lcf->top_k_max = NGX_CONF_UNSET_UINT;
    lcf->max_query_length = NGX_CONF_UNSET_SIZE;
    lcf->max_queue = NGX_CONF_UNSET;
    lcf->job_ttl = NGX_CONF_UNSET_MSEC;
    lcf->max_wait = NGX_CONF_UNSET;
    lcf->valkey_timeout = NGX_CONF_UNSET_MSEC;

    return lcf;
}


static ngx_int_t
ngx_http_ragq_key(ngx_conf_t *cf, ngx_str_t *key, ngx_str_t *prefix,
                  const char *suffix)
{
    size_t  n = ngx_strlen(suffix);
    u_char *p;

    key->len = prefix->len + n;
    key->data = ngx_pnalloc(cf->pool, key->len + 1);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, suffix, n);
    *p = '\0';

    return NGX_OK;
}


/*
 * The constant heads of the hot commands. A job key is always the prefix
 * plus 32 characters, so its RESP length header is constant too.
 */
static ngx_int_t
ngx_http_ragq_commands_init(ngx_conf_t *cf, ngx_http_ragq_loc_conf_t *lcf)
{
    u_char *p, *buf;
    size_t  len;

    len = 2 * (64 + lcf->job_prefix.len) + 3 * (64 + lcf->jobs_key.len);

    buf = ngx_pnalloc(cf->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    lcf->hset_head.data = p;
    p = ngx_http_ragq_lit(p, "*16\r\n$4\r\nHSET\r\n$");
    p = ngx_http_ragq_resp_uint(p, lcf->job_prefix.len + 32);
    p = ngx_http_ragq_lit(p, "\r\n");
    p = ngx_cpymem(p, lcf->job_prefix.data, lcf->job_prefix.len);
    lcf->hset_head.len = p - lcf->hset_head.data;

    lcf->hgetall_head.data = p;
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_HGETALL "$");
    p = ngx_http_ragq_resp_uint(p, lcf->job_prefix.len + 32);
    p = ngx_http_ragq_lit(p, "\r\n");
    p = ngx_cpymem(p, lcf->job_prefix.data, lcf->job_prefix.len);
    lcf->hgetall_head.len = p - lcf->hgetall_head.data;

    lcf->xadd_head.data = p;
    p = ngx_http_ragq_lit(p, "*5\r\n$4\r\nXADD\r\n");
    p = ngx_http_ragq_resp_bulk(p, lcf->jobs_key.data, lcf->jobs_key.len);
    p = ngx_http_ragq_lit(p, "$1\r\n*\r\n$3\r\njob\r\n$32\r\n");
    lcf->xadd_head.len = p - lcf->xadd_head.data;

    lcf->xlen_cmd.data = p;
    p = ngx_http_ragq_lit(p, "*2\r\n$4\r\nXLEN\r\n");
    p = ngx_http_ragq_resp_bulk(p, lcf->jobs_key.data, lcf->jobs_key.len);
    lcf->xlen_cmd.len = p - lcf->xlen_cmd.data;

    return NGX_OK;
}


/* one SUBSCRIBE per prefix that a ragq_status location reads */
static ngx_int_t
ngx_http_ragq_add_channel(ngx_conf_t *cf, ngx_http_ragq_loc_conf_t *lcf)
{
    ngx_uint_t                 i;
    ngx_http_ragq_channel_t   *ch;
    ngx_http_ragq_main_conf_t *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ragq_module);

    ch = rmcf->pubsub.channels.elts;

    for (i = 0; i < rmcf->pubsub.channels.nelts; i++) {
        if (ch[i].job_prefix.len == lcf->job_prefix.len &&
            ngx_strncmp(ch[i].job_prefix.data, lcf->job_prefix.data,
                        lcf->job_prefix.len) == 0) {
            return NGX_OK;
        }
    }

    ch = ngx_array_push(&rmcf->pubsub.channels);
    if (ch == NULL) {
        return NGX_ERROR;
    }

    ch->job_prefix = lcf->job_prefix;

    return ngx_http_ragq_key(cf, &ch->channel, &lcf->prefix, ":events");
}


static char *
ngx_http_ragq_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ragq_loc_conf_t *prev = parent;
    ngx_http_ragq_loc_conf_t *conf = child;

    ngx_conf_merge_str_value(conf->prefix, prev->prefix, "ragq");

    if (conf->collection == NULL) {
        conf->collection = prev->collection;
    }

    if (conf->tenant == NULL) {
        conf->tenant = prev->tenant;
    }

    if (conf->top_k == NGX_CONF_UNSET_UINT) {
        conf->top_k = (prev->top_k == NGX_CONF_UNSET_UINT) ? 5 : prev->top_k;
        conf->top_k_max =
            (prev->top_k_max == NGX_CONF_UNSET_UINT) ? 20 : prev->top_k_max;
    }

    ngx_conf_merge_size_value(conf->max_query_length, prev->max_query_length,
                              16384);
    ngx_conf_merge_value(conf->max_queue, prev->max_queue, 100000);
    ngx_conf_merge_msec_value(conf->job_ttl, prev->job_ttl, 86400000);
    ngx_conf_merge_sec_value(conf->max_wait, prev->max_wait, 30);
    ngx_conf_merge_msec_value(conf->valkey_timeout, prev->valkey_timeout, 1000);

    if (conf->prefix.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ragq_prefix must not be empty");
        return NGX_CONF_ERROR;
    }

    if (conf->max_query_length == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ragq_max_query_length must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->valkey_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ragq_valkey_timeout must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->job_ttl == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ragq_job_ttl must be positive");
        return NGX_CONF_ERROR;
    }

    if (conf->prefix.len > NGX_HTTP_RAGQ_PREFIX_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ragq_prefix is too long (at most %d bytes)",
                           NGX_HTTP_RAGQ_PREFIX_MAX);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_ragq_key(cf, &conf->jobs_key, &conf->prefix, ":jobs") !=
            NGX_OK ||
        ngx_http_ragq_key(cf, &conf->job_prefix, &conf->prefix, ":job:") !=
            NGX_OK ||
        ngx_http_ragq_key(cf, &conf->idem_prefix, &conf->prefix, ":idem:") !=
            NGX_OK ||
        ngx_http_ragq_commands_init(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->kind == NGX_HTTP_RAGQ_STATUS &&
        ngx_http_ragq_add_channel(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* ---- process lifecycle ---- */


static ngx_int_t
ngx_http_ragq_init_process(ngx_cycle_t *cycle)
{
    ngx_http_conf_ctx_t       *ctx;
    ngx_http_ragq_main_conf_t *rmcf;
    ngx_http_ragq_loc_conf_t  *lcf;

    /* not in the cache manager/loader helpers */
    if (ngx_process != NGX_PROCESS_WORKER &&
        ngx_process != NGX_PROCESS_SINGLE) {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ragq_module);
    if (rmcf == NULL || !rmcf->used) {
        return NGX_OK;
    }

    ctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    lcf = ctx->loc_conf[ngx_http_ragq_module.ctx_index];

    /* the http{}-level ragq_valkey_timeout bounds connect and silence */
    rmcf->valkey.timeout = (lcf->valkey_timeout == NGX_CONF_UNSET_MSEC)
                               ? 1000
                               : lcf->valkey_timeout;

    ngx_http_ragq_random_pos = sizeof(ngx_http_ragq_random);

    if (ngx_http_ragq_valkey_init(cycle, &rmcf->valkey) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rmcf->pubsub.channels.nelts == 0) {
        return NGX_OK;
    }

    ngx_http_ragq_lp_init();

    return ngx_http_ragq_pubsub_init(cycle, &rmcf->valkey, &rmcf->pubsub);
}


static void
ngx_http_ragq_exit_process(ngx_cycle_t *cycle)
{
    /* first, while the reads they sit in still exist */
    ngx_http_ragq_lp_exit();

    ngx_http_ragq_valkey_exit(cycle);
}
