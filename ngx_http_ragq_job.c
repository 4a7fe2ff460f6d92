/*
 * ragq: a job as the module sees it, the data model of DEVELOPERS.md: job
 * ids (made from queue entry ids, and checked); finding a job (its hash,
 * else its queue entry); and, reading a job in HGETALL form, its fields,
 * whether it is final, whether a tenant may see it, and the job view (the
 * /job-status JSON). New jobs are in ngx_http_ragq_job_new.c.
 */

#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_json.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_vars.h"


/* the largest entry id part a job id can carry: 48-bit ms, 16-bit seq */
#define NGX_HTTP_RAGQ_ENTRY_MS_MAX  0xffffffffffffULL
#define NGX_HTTP_RAGQ_ENTRY_SEQ_MAX 0xffff


/* ---- job ids ---- */


/*
 * A job id is 32 lowercase hex characters: the queue entry's id (48-bit ms,
 * 12 characters; 16-bit sequence, 4 characters) and 64 random bits (16
 * characters) that the entry holds as "r", which a reader must match. Jobs
 * enqueued before (DEVELOPERS.md, "data model") have 128 random bits and
 * are found by their hash alone.
 */


/* v as exactly n lowercase hex digits (ngx_sprintf() costs ten times as
 * much on the enqueue's path) */
static void
ngx_http_ragq_hex_fixed(u_char *p, uint64_t v, ngx_uint_t n)
{
    static u_char hex[] = "0123456789abcdef";

    while (n--) {
        p[n] = hex[v & 0xf];
        v >>= 4;
    }
}


/*
 * The first 16 characters of a job id from its entry id "<ms>-<seq>" (as
 * XADD answers it). NGX_DECLINED: not an entry id, or one no job id can
 * carry (a sequence above 0xffff: 65,536 entries in one millisecond).
 */
ngx_int_t
ngx_http_ragq_job_id_from_entry(u_char *id, u_char *entry, size_t len)
{
    u_char    *p, *end;
    uint64_t   n[2];
    ngx_uint_t i;

    p = entry;
    end = entry + len;

    for (i = 0; i < 2; i++) {
        if (p == end || *p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        for (n[i] = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            n[i] = n[i] * 10 + (*p - '0');

            if (n[i] > NGX_HTTP_RAGQ_ENTRY_MS_MAX) {
                return NGX_DECLINED;
            }
        }

        if (i == 0) {
            if (p == end || *p != '-') {
                return NGX_DECLINED;
            }

            p++;
        }
    }

    if (p != end || n[1] > NGX_HTTP_RAGQ_ENTRY_SEQ_MAX) {
        return NGX_DECLINED;
    }

    ngx_http_ragq_hex_fixed(id, n[0], 12);
    ngx_http_ragq_hex_fixed(id + 12, n[1], 4);

    return NGX_OK;
}


/* the entry id "<ms>-<seq>" a job id names, written at buf; returns its end */
u_char *
ngx_http_ragq_job_entry_of_id(u_char *buf, u_char *id)
{
    uint64_t ms, seq;

    ms = (uint64_t) ngx_hextoi(id, 12);
    seq = (uint64_t) ngx_hextoi(id + 12, 4);

    /* not ngx_sprintf(): every /job-status comes here, and it costs 8x */
    buf = ngx_http_ragq_resp_uint(buf, ms);
    *buf++ = '-';

    return ngx_http_ragq_resp_uint(buf, seq);
}


ngx_flag_t
ngx_http_ragq_job_id_valid(u_char *p, size_t len)
{
    size_t i;

    if (len != NGX_HTTP_RAGQ_JOB_ID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* ---- reading a job ---- */


typedef enum {
    NGX_HTTP_RAGQ_F_STRING,
    NGX_HTTP_RAGQ_F_JSON,
    NGX_HTTP_RAGQ_F_NUMBER,
    NGX_HTTP_RAGQ_F_OBJECT /* a JSON object, else null */
} ngx_http_ragq_field_type_e;


typedef struct {
    ngx_str_t                  name;
    ngx_http_ragq_field_type_e type;
} ngx_http_ragq_field_t;


static ngx_http_ragq_field_t ngx_http_ragq_fields[] = {
    { ngx_string("status"), NGX_HTTP_RAGQ_F_STRING },
    { ngx_string("query"), NGX_HTTP_RAGQ_F_STRING },
    { ngx_string("result"), NGX_HTTP_RAGQ_F_STRING },
    { ngx_string("sources"), NGX_HTTP_RAGQ_F_JSON },
    { ngx_string("error"), NGX_HTTP_RAGQ_F_JSON },
    { ngx_string("created_at"), NGX_HTTP_RAGQ_F_NUMBER },
    { ngx_string("started_at"), NGX_HTTP_RAGQ_F_NUMBER },
    { ngx_string("ended_at"), NGX_HTTP_RAGQ_F_NUMBER },
    { ngx_string("attempts"), NGX_HTTP_RAGQ_F_NUMBER },
    { ngx_string("usage"), NGX_HTTP_RAGQ_F_JSON },
    { ngx_string("callback"), NGX_HTTP_RAGQ_F_OBJECT }
};

/* how the view writes a field's value */
typedef enum {
    NGX_HTTP_RAGQ_OUT_NULL =
        0,                     /* missing, or not an integer where one is due */
    NGX_HTTP_RAGQ_OUT_INTEGER, /* an integer, canonically */
    NGX_HTTP_RAGQ_OUT_JSON,    /* JSON text, invalid UTF-8 repaired */
    NGX_HTTP_RAGQ_OUT_STRING   /* text, escaped into a JSON string */
} ngx_http_ragq_out_e;

/* a field's value as the view writes it */
typedef struct {
    ngx_http_ragq_out_e out;
    ngx_flag_t          negative; /* OUT_INTEGER: a "-" before the digits */
    size_t              invalid;  /* OUT_JSON: bytes to repair */
    ngx_str_t           text;     /* OUT_INTEGER: the digits; else the value */
} ngx_http_ragq_view_field_t;

#define NGX_HTTP_RAGQ_NFIELDS \
    (sizeof(ngx_http_ragq_fields) / sizeof(ngx_http_ragq_fields[0]))


/* the values of the view's fields in a HGETALL reply, NULL when absent */
static void
ngx_http_ragq_view_values(redisReply *reply, redisReply **val)
{
    size_t      i, k;
    ngx_str_t  *name;
    redisReply *key;

    ngx_memzero(val, NGX_HTTP_RAGQ_NFIELDS * sizeof(redisReply *));

    for (i = 0; i + 1 < reply->elements; i += 2) {
        key = reply->element[i];

        if (key->type != REDIS_REPLY_STRING || key->len == 0) {
            continue;
        }

        for (k = 0; k < NGX_HTTP_RAGQ_NFIELDS; k++) {
            name = &ngx_http_ragq_fields[k].name;

            if ((size_t) key->len == name->len
                && (u_char) key->str[0] == name->data[0]
                && ngx_memcmp(key->str, name->data, key->len) == 0)
            {
                val[k] = reply->element[i + 1];
                break;
            }
        }
    }
}


/*
 * How a field's value v is written, and the bytes that takes: integers
 * canonically (else null); JSON fields as they are when they parse, with
 * bytes that are not UTF-8 written as U+FFFD, else as strings; strings
 * escaped, with the same repair. So the view is always JSON and UTF-8,
 * whatever the hash holds.
 */
static size_t
ngx_http_ragq_view_field(ngx_http_ragq_field_type_e type, redisReply *v,
                         ngx_http_ragq_view_field_t *f)
{
    f->out = NGX_HTTP_RAGQ_OUT_NULL;

    if (v == NULL || v->type != REDIS_REPLY_STRING) {
        return sizeof("null") - 1;
    }

    f->text.data = (u_char *) v->str;
    f->text.len = v->len;

    switch (type) {
    case NGX_HTTP_RAGQ_F_NUMBER:
        if (ngx_http_ragq_json_integer(f->text.data, f->text.len, &f->text,
                                       &f->negative)
            != NGX_OK)
        {
            return sizeof("null") - 1;
        }

        f->out = NGX_HTTP_RAGQ_OUT_INTEGER;
        return f->negative + f->text.len;

    case NGX_HTTP_RAGQ_F_OBJECT:
        /* the worker's {"status","attempts","code"}: anything else is null */
        if (f->text.len == 0 || f->text.data[0] != '{'
            || !ngx_http_ragq_json_valid(f->text.data, f->text.len,
                                         &f->invalid))
        {
            return sizeof("null") - 1;
        }

        f->out = NGX_HTTP_RAGQ_OUT_JSON;
        return f->text.len + f->invalid * 5;

    case NGX_HTTP_RAGQ_F_JSON:
        if (ngx_http_ragq_json_valid(f->text.data, f->text.len, &f->invalid)) {
            /* each such byte becomes the six of \ufffd */
            f->out = NGX_HTTP_RAGQ_OUT_JSON;
            return f->text.len + f->invalid * 5;
        }

        /* text that is not JSON is sent as a string */
        /* fall through */

    default:
        f->out = NGX_HTTP_RAGQ_OUT_STRING;
        return ngx_http_ragq_json_escape_len(f->text.data, f->text.len);
    }
}


/*
 * The job view: the job hash of a HGETALL reply as the /job-status JSON
 * object, in pool. Fields missing from the hash are null.
 */
ngx_int_t
ngx_http_ragq_job_view(ngx_pool_t *pool, u_char *id, redisReply *reply,
                       ngx_str_t *json)
{
    u_char                    *body, *p;
    size_t                     len, k;
    ngx_http_ragq_view_field_t f[NGX_HTTP_RAGQ_NFIELDS];
    redisReply                *val[NGX_HTTP_RAGQ_NFIELDS];

    ngx_http_ragq_view_values(reply, val);

    len = sizeof("{\"job_id\":\"\"}\n") + NGX_HTTP_RAGQ_JOB_ID_LEN;

    for (k = 0; k < NGX_HTTP_RAGQ_NFIELDS; k++) {
        len += ngx_http_ragq_fields[k].name.len + sizeof(",\"\":") - 1;
        len += ngx_http_ragq_view_field(ngx_http_ragq_fields[k].type, val[k],
                                        &f[k]);
    }

    body = ngx_pnalloc(pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_ragq_lit(body, "{\"job_id\":\"");
    p = ngx_cpymem(p, id, NGX_HTTP_RAGQ_JOB_ID_LEN);
    *p++ = '"';

    for (k = 0; k < NGX_HTTP_RAGQ_NFIELDS; k++) {
        *p++ = ',';
        *p++ = '"';
        p = ngx_cpymem(p, ngx_http_ragq_fields[k].name.data,
                       ngx_http_ragq_fields[k].name.len);
        *p++ = '"';
        *p++ = ':';

        switch (f[k].out) {
        case NGX_HTTP_RAGQ_OUT_INTEGER:
            if (f[k].negative) {
                *p++ = '-';
            }

            p = ngx_cpymem(p, f[k].text.data, f[k].text.len);
            break;
        case NGX_HTTP_RAGQ_OUT_JSON:
            p = f[k].invalid ? ngx_http_ragq_json_repair(p, f[k].text.data,
                                                         f[k].text.len)
                             : ngx_cpymem(p, f[k].text.data, f[k].text.len);
            break;
        case NGX_HTTP_RAGQ_OUT_STRING:
            p = ngx_http_ragq_json_escape(p, f[k].text.data, f[k].text.len);
            break;
        default:
            p = ngx_cpymem(p, "null", 4);
        }
    }

    *p++ = '}';
    *p++ = '\n';

    json->data = body;
    json->len = p - body;

    return NGX_OK;
}


/* the value of one field of a HGETALL reply, NULL when it has none */
redisReply *
ngx_http_ragq_job_field(redisReply *reply, const char *name, size_t len)
{
    size_t      i;
    redisReply *key;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        key = reply->element[i];

        if (key->type == REDIS_REPLY_STRING && (size_t) key->len == len
            && ngx_strncmp(key->str, name, len) == 0)
        {
            return reply->element[i + 1];
        }
    }

    return NULL;
}


/* finished, failed and canceled jobs do not change any more */
ngx_flag_t
ngx_http_ragq_job_final(u_char *p, size_t len)
{
    return (len == 8 && ngx_strncmp(p, "finished", 8) == 0)
           || (len == 6 && ngx_strncmp(p, "failed", 6) == 0)
           || (len == 8 && ngx_strncmp(p, "canceled", 8) == 0);
}


/*
 * NGX_OK: the job in reply exists and belongs to r's tenant; NGX_DECLINED:
 * 404 (another tenant's job is indistinguishable from a missing one).
 */
ngx_int_t
ngx_http_ragq_job_visible(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                          redisReply *reply)
{
    ngx_str_t   tenant;
    redisReply *owner;

    if (reply->elements == 0) {
        return NGX_DECLINED;
    }

    ngx_str_set(&tenant, "");

    if (lcf->tenant
        && ngx_http_complex_value(r, lcf->tenant, &tenant) != NGX_OK)
    {
        return NGX_ERROR;
    }

    owner = ngx_http_ragq_job_field(reply, "tenant", 6);

    if ((owner == NULL && tenant.len > 0)
        || (owner
            && ((size_t) owner->len != tenant.len
                || (tenant.len
                    && ngx_memcmp(owner->str, tenant.data, tenant.len) != 0))))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the /job-status answer for a HGETALL reply (or its failure) */
ngx_int_t
ngx_http_ragq_job_respond(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                          u_char *id, redisReply *reply)
{
    ngx_int_t   rc;
    ngx_str_t   json;
    redisReply *status;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return ngx_http_ragq_reply_error(r, reply);
    }

    rc = ngx_http_ragq_job_visible(r, lcf, reply);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ragq: job %*s is missing or another tenant's",
                       (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, id);

        return ngx_http_ragq_error(r, NGX_HTTP_NOT_FOUND, "job_not_found",
                                   "no such job: it never existed, has "
                                   "expired, or belongs to someone else");
    }

    if (ngx_http_ragq_job_view(r->pool, id, reply, &json) != NGX_OK) {
        return NGX_ERROR;
    }

    /* $ragq_job_id, $ragq_job_status */
    status = ngx_http_ragq_job_field(reply, "status", 6);
    ngx_http_ragq_set_job(r, id, status ? (u_char *) status->str : NULL,
                          status ? status->len : 0);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: job %*s answered, %uz bytes",
                   (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, id, json.len);

    return ngx_http_ragq_send_json(r, NGX_HTTP_OK, json.data, json.len);
}


/* ---- finding a job: its hash, else its queue entry ---- */


/* what a job's queue entry says beyond its own fields: it is queued */
static redisReply ngx_http_ragq_entry_fields[4] = {
    { REDIS_REPLY_STRING, 0, 6, (char *) "status", 0, NULL },
    { REDIS_REPLY_STRING, 0, 6, (char *) "queued", 0, NULL },
    { REDIS_REPLY_STRING, 0, 8, (char *) "attempts", 0, NULL },
    { REDIS_REPLY_STRING, 0, 1, (char *) "0", 0, NULL }
};


/*
 * Sends the read of step of job id (DEVELOPERS.md, "reading a job"):
 * NGX_HTTP_RAGQ_READ_HASH and _HASH_AGAIN: HGETALL P:job:ID;
 * NGX_HTTP_RAGQ_READ_ENTRY: XRANGE P:jobs E E of the entry the id names;
 * NGX_HTTP_RAGQ_READ_PAIR: both, pipelined (ngx_http_ragq_job_pair()).
 */
ngx_int_t
ngx_http_ragq_job_read(ngx_http_ragq_cell_t     *cell,
                       ngx_http_ragq_loc_conf_t *lcf, u_char *id,
                       ngx_uint_t step)
{
    u_char *p, *e;
    u_char  cmd[2 * NGX_HTTP_RAGQ_KEY_MAX + 256];
    u_char  entry[2 * NGX_INT64_LEN + 2];

    p = cmd;

    if (step != NGX_HTTP_RAGQ_READ_ENTRY) {
        p = ngx_cpymem(p, lcf->hgetall_head.data, lcf->hgetall_head.len);
        p = ngx_cpymem(p, id, NGX_HTTP_RAGQ_JOB_ID_LEN);
        *p++ = '\r';
        *p++ = '\n';
    }

    if (step == NGX_HTTP_RAGQ_READ_ENTRY || step == NGX_HTTP_RAGQ_READ_PAIR) {
        e = ngx_http_ragq_job_entry_of_id(entry, id);

        p = ngx_cpymem(p, lcf->xrange_head.data, lcf->xrange_head.len);
        p = ngx_http_ragq_resp_bulk(p, entry, e - entry);
        p = ngx_http_ragq_resp_bulk(p, entry, e - entry);
    }

    if (step == NGX_HTTP_RAGQ_READ_PAIR) {
        return ngx_http_ragq_valkey_send_pair(cell, cmd, p - cmd);
    }

    return ngx_http_ragq_valkey_send(cell, cmd, p - cmd);
}


/*
 * The job of an XRANGE reply as a HGETALL reply would have it (status
 * queued, attempts 0, the entry's fields), in je, pointing into reply.
 * NGX_DECLINED: no entry, or one whose random part is not the id's.
 */
static ngx_int_t
ngx_http_ragq_job_entry_view(u_char *id, redisReply *reply,
                             ngx_http_ragq_job_entry_t *je)
{
    size_t      i, n;
    redisReply *e, *f, *key, *r;

    if (reply->elements != 1) {
        return NGX_DECLINED;
    }

    e = reply->element[0];

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
        || e->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_DECLINED;
    }

    f = e->element[1];

    r = ngx_http_ragq_job_field(f, "r", 1);

    if (r == NULL || r->type != REDIS_REPLY_STRING
        || r->len != NGX_HTTP_RAGQ_JOB_RANDOM
        || ngx_memcmp(r->str, id + 16, NGX_HTTP_RAGQ_JOB_RANDOM) != 0)
    {
        return NGX_DECLINED;
    }

    for (n = 0; n < 4; n++) {
        je->element[n] = &ngx_http_ragq_entry_fields[n];
    }

    /* the entry's fields but r and any that would contradict "queued" */
    for (i = 0; i + 1 < f->elements && n + 2 <= NGX_HTTP_RAGQ_ENTRY_MAX; i += 2)
    {
        key = f->element[i];

        if (key->type != REDIS_REPLY_STRING
            || (key->len == 1 && key->str[0] == 'r')
            || (key->len == 6 && ngx_strncmp(key->str, "status", 6) == 0)
            || (key->len == 8 && ngx_strncmp(key->str, "attempts", 8) == 0))
        {
            continue;
        }

        je->element[n++] = key;
        je->element[n++] = f->element[i + 1];
    }

    ngx_memzero(&je->reply, sizeof(redisReply));
    je->reply.type = REDIS_REPLY_ARRAY;
    je->reply.elements = n;
    je->reply.element = je->element;

    return NGX_OK;
}


/*
 * After the reply of the read of *step: NGX_AGAIN: read step *step now
 * (advanced); NGX_OK: *job is the answer, in HGETALL form (the reply
 * itself, possibly empty or an error, or the view in je of the job's queue
 * entry). A job moves from its entry to its hash (the claim) before its
 * entry goes (the final write): so an entry missed after its hash was
 * missed means the hash exists now, unless there is no such job.
 */
ngx_int_t
ngx_http_ragq_job_found(u_char *id, ngx_uint_t *step, redisReply *reply,
                        ngx_http_ragq_job_entry_t *je, redisReply **job)
{
    *job = reply;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return NGX_OK;
    }

    switch (*step) {
    case NGX_HTTP_RAGQ_READ_PAIR:
    case NGX_HTTP_RAGQ_READ_HASH:
        if (reply->elements) {
            return NGX_OK;
        }

        *step = NGX_HTTP_RAGQ_READ_ENTRY;
        return NGX_AGAIN;

    case NGX_HTTP_RAGQ_READ_ENTRY:
        if (ngx_http_ragq_job_entry_view(id, reply, je) == NGX_OK) {
            *job = &je->reply;
            return NGX_OK;
        }

        *step = NGX_HTTP_RAGQ_READ_HASH_AGAIN;
        return NGX_AGAIN;

    default:
        return NGX_OK;
    }
}
