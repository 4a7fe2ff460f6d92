/*
 * ragq: new jobs (POST /chat): the random part of a job id, drawn in bulk;
 * a new job's queue entry, one XADD, or with an Idempotency-Key one EVAL of
 * a script that answers the key's job again; and the reply that says how
 * it went (the job id made from the entry id, the queue's length).
 */

#include <ngx_sha1.h>
#include <sys/random.h>

#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_vars.h"


/* the new job's queue entry, in RESP form around the variable parts */
#define NGX_HTTP_RAGQ_XADD_QUERY      "\r\n$5\r\nquery\r\n"
#define NGX_HTTP_RAGQ_XADD_TOP_K      "$5\r\ntop_k\r\n"
#define NGX_HTTP_RAGQ_XADD_COLLECTION "$10\r\ncollection\r\n"
#define NGX_HTTP_RAGQ_XADD_TENANT     "$6\r\ntenant\r\n"
#define NGX_HTTP_RAGQ_XADD_CREATED    "$10\r\ncreated_at\r\n"
#define NGX_HTTP_RAGQ_XADD_CALLBACK   "$12\r\ncallback_url\r\n"

/* the random bytes of a job id (NGX_HTTP_RAGQ_JOB_RANDOM hex characters) */
#define NGX_HTTP_RAGQ_JOB_RAND_BYTES (NGX_HTTP_RAGQ_JOB_RANDOM / 2)


/*
 * Idempotent enqueue: only used with an Idempotency-Key header, so a script
 * is affordable here. The key's job is answered again only when it is a job
 * (a hash at P:job:ID, or, not claimed yet, the queue entry ID names, with
 * the random part ID ends with) with the same question (query, top_k,
 * collection): {0, id}; the same key with another question is {2, id}
 * (422); the same callback_url (none: "") counts as the same question too.
 * A key that names no job (expired, or a value that is not a job id,
 * or a key of another type) is replaced by a new job, written as the
 * common path writes it, its id made here from the entry id: {1, id, xlen};
 * an entry id no job id can carry is deleted again: {3, "", -1} (503).
 *
 * KEYS: the key's key, P:jobs. ARGV: the random part, the TTL in ms,
 * P:job:, query, top_k, collection, tenant, created_at, callback_url ("":
 * none).
 */
static const char ngx_http_ragq_idem_script[] =
    "local id = redis.pcall('GET', KEYS[1])\n"
    "if type(id) == 'string' and #id == 32 and not id:find('[^0-9a-f]') then\n"
    "  local job, q = ARGV[3] .. id\n"
    "  if redis.call('TYPE', job).ok == 'hash' then\n"
    "    q = redis.call('HMGET', job, 'query', 'top_k', 'collection',\n"
    "                   'callback_url')\n"
    "  elseif redis.call('TYPE', KEYS[2]).ok == 'stream' then\n"
    "    local e = string.format('%d-%d', tonumber(id:sub(1, 12), 16),\n"
    "                            tonumber(id:sub(13, 16), 16))\n"
    "    e = redis.call('XRANGE', KEYS[2], e, e)[1]\n"
    "    if e then\n"
    "      local f = {}\n"
    "      for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end\n"
    "      if f.r == id:sub(17) then\n"
    "        q = {f.query, f.top_k, f.collection, f.callback_url}\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if q and q[1] then\n"
    "    if q[1] == ARGV[4] and q[2] == ARGV[5] and q[3] == ARGV[6]\n"
    "       and (q[4] or '') == ARGV[9] then\n"
    "      return {0, id, -1}\n"
    "    end\n"
    "    return {2, id, -1}\n"
    "  end\n"
    "end\n"
    "local f = {'r', ARGV[1], 'query', ARGV[4], 'top_k', ARGV[5],\n"
    "  'collection', ARGV[6], 'tenant', ARGV[7], 'created_at', ARGV[8]}\n"
    "if ARGV[9] ~= '' then\n"
    "  f[#f + 1] = 'callback_url'\n"
    "  f[#f + 1] = ARGV[9]\n"
    "end\n"
    "local e = redis.call('XADD', KEYS[2], '*', unpack(f))\n"
    "local ms, seq = e:match('^(%d+)-(%d+)$')\n"
    "ms, seq = tonumber(ms), tonumber(seq)\n"
    "if ms > 281474976710655 or seq > 65535 then\n"
    "  redis.call('XDEL', KEYS[2], e)\n"
    "  return {3, '', -1}\n"
    "end\n"
    "id = string.format('%012x%04x', ms, seq) .. ARGV[1]\n"
    "redis.call('SET', KEYS[1], id, 'PX', ARGV[2])\n"
    "return {1, id, redis.call('XLEN', KEYS[2])}\n";


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


/* the random part of a new job id, in hex, made only for new jobs */
static ngx_int_t
ngx_http_ragq_job_random(u_char *hex)
{
    ssize_t n;

    if (ngx_http_ragq_random_pos + NGX_HTTP_RAGQ_JOB_RAND_BYTES
        > sizeof(ngx_http_ragq_random))
    {
        n = getrandom(ngx_http_ragq_random, sizeof(ngx_http_ragq_random), 0);
        if (n != (ssize_t) sizeof(ngx_http_ragq_random)) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                          "ragq: getrandom() failed");
            return NGX_ERROR;
        }

        ngx_http_ragq_random_pos = 0;
    }

    ngx_hex_dump(hex, ngx_http_ragq_random + ngx_http_ragq_random_pos,
                 NGX_HTTP_RAGQ_JOB_RAND_BYTES);

    /* used bytes are wiped so an id never repeats from stale memory */
    ngx_memzero(ngx_http_ragq_random + ngx_http_ragq_random_pos,
                NGX_HTTP_RAGQ_JOB_RAND_BYTES);
    ngx_http_ragq_random_pos += NGX_HTTP_RAGQ_JOB_RAND_BYTES;

    return NGX_OK;
}


/* ---- new jobs ---- */


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


/* the fields of a new job hash that are not constant */
typedef struct {
    ngx_str_t query;
    ngx_str_t top_k;
    ngx_str_t collection;
    ngx_str_t tenant;
    ngx_str_t created_at;
    ngx_str_t callback; /* "": none */
    u_char    top_k_text[NGX_INT_T_LEN];
    u_char    created_at_text[NGX_INT64_LEN];
} ngx_http_ragq_job_fields_t;


static ngx_int_t
ngx_http_ragq_job_fields(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                         ngx_str_t *query, ngx_uint_t top_k,
                         ngx_str_t *callback, ngx_http_ragq_job_fields_t *f)
{
    f->query = *query;

    if (callback) {
        f->callback = *callback;
    } else {
        ngx_str_set(&f->callback, "");
    }

    ngx_str_set(&f->collection, "");
    ngx_str_set(&f->tenant, "");

    if (lcf->collection
        && ngx_http_complex_value(r, lcf->collection, &f->collection) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (lcf->tenant
        && ngx_http_complex_value(r, lcf->tenant, &f->tenant) != NGX_OK)
    {
        return NGX_ERROR;
    }

    f->top_k.data = f->top_k_text;
    f->top_k.len =
        ngx_http_ragq_resp_uint(f->top_k_text, top_k) - f->top_k_text;

    f->created_at.data = f->created_at_text;
    f->created_at.len =
        ngx_http_ragq_created_at(f->created_at_text, ngx_timeofday());

    return NGX_OK;
}


/*
 * The common path: one XADD that carries the job (DEVELOPERS.md, "data
 * model"); its hash is written by the worker that claims it.
 * NGX_ERROR: out of memory; NGX_DECLINED: Valkey refused the command;
 * NGX_BUSY: its connection's in-flight cap is reached.
 */
static ngx_int_t
ngx_http_ragq_job_xadd(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                       ngx_http_ragq_cell_t       *cell,
                       ngx_http_ragq_job_fields_t *f)
{
    u_char   *p, *cmd;
    size_t    len;
    ngx_int_t rc;

    len = lcf->xadd_head.len + NGX_HTTP_RAGQ_JOB_RANDOM
          + sizeof(NGX_HTTP_RAGQ_XADD_QUERY) + f->query.len
          + sizeof(NGX_HTTP_RAGQ_XADD_TOP_K) + f->top_k.len
          + sizeof(NGX_HTTP_RAGQ_XADD_COLLECTION) + f->collection.len
          + sizeof(NGX_HTTP_RAGQ_XADD_TENANT) + f->tenant.len
          + sizeof(NGX_HTTP_RAGQ_XADD_CREATED) + f->created_at.len
          + sizeof(NGX_HTTP_RAGQ_XADD_CALLBACK) + f->callback.len
          + 6 * (NGX_HTTP_RAGQ_RESP_HEAD_MAX + 2);

    cmd = ngx_pnalloc(r->pool, len);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(cmd, lcf->xadd_head.data, lcf->xadd_head.len);
    p = ngx_cpymem(p, cell->job_id + 16, NGX_HTTP_RAGQ_JOB_RANDOM);
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_XADD_QUERY);
    p = ngx_http_ragq_resp_bulk(p, f->query.data, f->query.len);
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_XADD_TOP_K);
    p = ngx_http_ragq_resp_bulk(p, f->top_k.data, f->top_k.len);
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_XADD_COLLECTION);
    p = ngx_http_ragq_resp_bulk(p, f->collection.data, f->collection.len);
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_XADD_TENANT);
    p = ngx_http_ragq_resp_bulk(p, f->tenant.data, f->tenant.len);
    p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_XADD_CREATED);
    p = ngx_http_ragq_resp_bulk(p, f->created_at.data, f->created_at.len);

    if (f->callback.len) {
        /* two more arguments: "*15" of the head becomes "*17" */
        cmd[1] = '1';
        cmd[2] = '7';
        p = ngx_http_ragq_lit(p, NGX_HTTP_RAGQ_XADD_CALLBACK);
        p = ngx_http_ragq_resp_bulk(p, f->callback.data, f->callback.len);
    }

    rc = ngx_http_ragq_valkey_send(cell, cmd, p - cmd);

    return (rc == NGX_OK || rc == NGX_BUSY) ? rc : NGX_DECLINED;
}


/*
 * With an Idempotency-Key: one EVAL of the idempotency script. NGX_ERROR:
 * out of memory; NGX_DECLINED: Valkey refused the command; NGX_BUSY: its
 * connection's in-flight cap is reached.
 */
static ngx_int_t
ngx_http_ragq_job_eval(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                       ngx_http_ragq_cell_t *cell, ngx_str_t *idem,
                       ngx_http_ragq_job_fields_t *f)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   idem_key;
    ngx_sha1_t  sha1;
    const char *argv[14];
    size_t      argvlen[14];
    u_char      ttl[NGX_INT_T_LEN];
    u_char      digest[20];

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, idem->data, idem->len);
    ngx_sha1_final(digest, &sha1);

    idem_key.len =
        lcf->idem_prefix.len + f->tenant.len + 1 + 2 * sizeof(digest);

    idem_key.data = ngx_pnalloc(r->pool, idem_key.len);
    if (idem_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(idem_key.data, lcf->idem_prefix.data, lcf->idem_prefix.len);
    if (f->tenant.len) {
        p = ngx_cpymem(p, f->tenant.data, f->tenant.len);
    }

    *p++ = ':';
    ngx_hex_dump(p, digest, sizeof(digest));

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_ragq_idem_script;
    argvlen[1] = sizeof(ngx_http_ragq_idem_script) - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) idem_key.data;
    argvlen[3] = idem_key.len;
    argv[4] = (const char *) lcf->jobs_key.data;
    argvlen[4] = lcf->jobs_key.len;
    argv[5] = (const char *) cell->job_id + 16;
    argvlen[5] = NGX_HTTP_RAGQ_JOB_RANDOM;
    argv[6] = (const char *) ttl;
    argvlen[6] = ngx_sprintf(ttl, "%M", lcf->job_ttl) - ttl;
    argv[7] = (const char *) lcf->job_prefix.data;
    argvlen[7] = lcf->job_prefix.len;
    argv[8] = (const char *) f->query.data;
    argvlen[8] = f->query.len;
    argv[9] = (const char *) f->top_k.data;
    argvlen[9] = f->top_k.len;
    argv[10] = (const char *) f->collection.data;
    argvlen[10] = f->collection.len;
    argv[11] = (const char *) f->tenant.data;
    argvlen[11] = f->tenant.len;
    argv[12] = (const char *) f->created_at.data;
    argvlen[12] = f->created_at.len;
    argv[13] = (const char *) f->callback.data;
    argvlen[13] = f->callback.len;

    rc = ngx_http_ragq_valkey_command(cell, 14, argv, argvlen);

    return (rc == NGX_OK || rc == NGX_BUSY) ? rc : NGX_DECLINED;
}


/*
 * Writes a new job: its queue entry, with cell as the callback of the
 * reply that says how it went; the random part of its id is made here, in
 * cell->job_id, the rest comes with the reply. idem: the Idempotency-Key,
 * NULL without one. NGX_ERROR: out of memory or no random bits;
 * NGX_DECLINED: Valkey refused the command; NGX_BUSY: the in-flight cap of
 * the connection it goes on (the writes connection with
 * ragq_valkey_replicas) is reached: 503 overloaded.
 */
ngx_int_t
ngx_http_ragq_job_create(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                         ngx_http_ragq_cell_t *cell, ngx_str_t *query,
                         ngx_uint_t top_k, ngx_str_t *callback, ngx_str_t *idem)
{
    ngx_http_ragq_job_fields_t f;

    if (ngx_http_ragq_job_random(cell->job_id + 16) != NGX_OK
        || ngx_http_ragq_job_fields(r, lcf, query, top_k, callback, &f)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* 202 only once WAIT says this many replicas have the job */
    cell->replicas = lcf->replicas;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: new job, random part %*s (%s)",
                   (size_t) NGX_HTTP_RAGQ_JOB_RANDOM, cell->job_id + 16,
                   idem ? "EVAL, Idempotency-Key" : "XADD");

    if (idem == NULL) {
        return ngx_http_ragq_job_xadd(r, lcf, cell, &f);
    }

    return ngx_http_ragq_job_eval(r, lcf, cell, idem, &f);
}


/*
 * The reply of ngx_http_ragq_job_create(): NGX_OK with the job's id in *id
 * (cell->job_id, completed here, or the existing job's for the same
 * Idempotency-Key) and the queue length (-1: unknown); NGX_DECLINED: the
 * Idempotency-Key names a job with another question; NGX_BUSY: Valkey gave
 * the entry an id no job id can carry (retry); NGX_ERROR: the reply has
 * another shape.
 */
ngx_int_t
ngx_http_ragq_job_created(ngx_http_ragq_cell_t *cell, redisReply *reply,
                          u_char **id, ngx_int_t *queue_len)
{
    redisReply *e;

    *queue_len = -1;
    *id = NULL;

    if (reply == NULL) {
        return NGX_ERROR;
    }

    /* XADD's reply: the entry id */
    if (reply->type == REDIS_REPLY_STRING) {
        if (ngx_http_ragq_job_id_from_entry(cell->job_id, (u_char *) reply->str,
                                            reply->len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "ragq: the queue entry \"%*s\" cannot be named by "
                          "a job id; its worker drops it",
                          ngx_min((size_t) reply->len, 64), reply->str);
            return NGX_BUSY;
        }

        *id = cell->job_id;
        return NGX_OK;
    }

    /* the script: [kind, id, xlen] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[2]->type != REDIS_REPLY_INTEGER)
    {
        return NGX_ERROR;
    }

    e = reply->element[1];

    if (reply->element[0]->integer == 3) {
        return NGX_BUSY;
    }

    if (e->type != REDIS_REPLY_STRING
        || !ngx_http_ragq_job_id_valid((u_char *) e->str, e->len))
    {
        return NGX_ERROR;
    }

    if (reply->element[2]->integer >= 0) {
        *queue_len = (ngx_int_t) reply->element[2]->integer;
    }

    switch (reply->element[0]->integer) {
    case 0: /* the existing job of the same Idempotency-Key */
        *id = (u_char *) e->str;
        return NGX_OK;

    case 1:
        ngx_memcpy(cell->job_id, e->str, NGX_HTTP_RAGQ_JOB_ID_LEN);
        *id = cell->job_id;
        return NGX_OK;

    case 2:
        return NGX_DECLINED;

    default:
        return NGX_ERROR;
    }
}
