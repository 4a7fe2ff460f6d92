/*
 * ragq: a job as the module sees it: job ids (made and checked), whether a
 * job hash is visible to a request's tenant, and the job view (the job hash
 * of a HGETALL reply as the /job-status JSON).
 */

#include <sys/random.h>

#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_json.h"


/* random bytes for job ids, refilled in bulk to keep getrandom() off the
 * per-request path */
static u_char ngx_http_ragq_random[4096];
static size_t ngx_http_ragq_random_pos = sizeof(ngx_http_ragq_random);


void
ngx_http_ragq_job_init_process(void)
{
    /* a worker must not reuse bytes the master drew before the fork */
    ngx_http_ragq_random_pos = sizeof(ngx_http_ragq_random);
}


ngx_int_t
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
