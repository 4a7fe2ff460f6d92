/*
 * ragq: POST /job-cancel: the job_id argument, the tenant, and one EVAL of
 * the cancel script, which reads the job (its hash, else its queue entry),
 * checks its tenant and, unless it is final, writes it canceled, expires
 * it (unless its queue entry waits: the worker that acks it does), and
 * tells the waiters (P:events) and the workers (P:cancel), all in one
 * atomic step; the answer is the job view of the hash it wrote.
 */

#include "ngx_http_ragq_cancel.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_resp.h"
#include "ngx_http_ragq_vars.h"


/*
 * The cancel script (DEVELOPERS.md, "Cancel").  A job is its hash, else,
 * not claimed yet, the queue entry its id names (with the random part the
 * id ends with); either must be the tenant's (no tenant field: only for
 * the empty tenant, as ngx_http_ragq_job_visible() has it).  A job without
 * a hash gets one from its entry (the fields claim.lua would write), and
 * the entry stays: the claim acknowledges a final job without work.  A
 * hash whose entry is still there (queued, or running: the entry waits
 * for its worker's ack) gets no TTL (the worker that acks the entry gives
 * it one): had it expired first, a claim of the entry (a reclaim, when
 * the worker running it died) would have found no hash, written the job
 * queued again from its entry and run it.  Any status but finished,
 * failed and canceled is canceled (a job of unknown status would only
 * fail at its claim).
 *
 * KEYS: P:job:ID, P:jobs, P:events, P:cancel, P:out:ID.  ARGV: the id, its
 * entry id, its random part, now (ms), the TTL (ms), the tenant, the error
 * JSON.  Returns {0}: no such job (or another tenant's); {1, status}:
 * already final; {2, HGETALL of the job}: canceled now.
 */
static const char ngx_http_ragq_cancel_script[] =
    "local function entry_of_job()\n"
    "  if redis.call('TYPE', KEYS[2]).ok ~= 'stream' then return nil end\n"
    "  local e = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])[1]\n"
    "  if not e then return nil end\n"
    "  local f = {}\n"
    "  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end\n"
    "  if f.r ~= ARGV[3] or not f.query then return nil end\n"
    "  return f\n"
    "end\n"
    "local t, status, tenant, entry = redis.call('TYPE', KEYS[1]).ok\n"
    "if t == 'hash' then\n"
    "  local h = redis.call('HMGET', KEYS[1], 'status', 'tenant')\n"
    "  status, tenant = h[1], h[2]\n"
    "elseif t == 'none' then\n"
    "  entry = entry_of_job()\n"
    "  if not entry then return {0} end\n"
    "  status, tenant = 'queued', entry.tenant\n"
    "else\n"
    "  return {0}\n"
    "end\n"
    "if (tenant or '') ~= ARGV[6] then return {0} end\n"
    "if status == 'finished' or status == 'failed' or status == 'canceled'"
    " then\n"
    "  return {1, status}\n"
    "end\n"
    "if entry then\n"
    "  local f = {'status', 'queued', 'attempts', '0'}\n"
    "  for k, v in pairs(entry) do\n"
    "    if k ~= 'r' and k ~= 'status' and k ~= 'attempts' then\n"
    "      f[#f + 1] = k\n"
    "      f[#f + 1] = v\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], unpack(f))\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'status', 'canceled', 'ended_at', ARGV[4],\n"
    "           'error', ARGV[7])\n"
    "if not (entry or entry_of_job()) then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[5], ARGV[5])\n"
    "redis.call('PUBLISH', KEYS[3], ARGV[1] .. ' canceled')\n"
    "redis.call('PUBLISH', KEYS[4], ARGV[1])\n"
    "return {2, redis.call('HGETALL', KEYS[1])}\n";


#define NGX_HTTP_RAGQ_CANCEL_ERROR                                       \
    "{\"code\":\"canceled\",\"message\":\"the job was canceled by POST " \
    "/job-cancel\"}"


static void ngx_http_ragq_cancel_reply(ngx_http_ragq_cell_t *cell,
                                       redisReply           *reply);


/* prefix + suffix (+ the job id when id is not NULL), in the request pool */
static ngx_int_t
ngx_http_ragq_cancel_key(ngx_http_request_t *r, ngx_str_t *key,
                         ngx_str_t *prefix, const char *suffix, u_char *id)
{
    u_char *p;
    size_t  n;

    n = ngx_strlen(suffix);

    key->len = prefix->len + n + (id ? NGX_HTTP_RAGQ_JOB_ID_LEN : 0);
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, suffix, n);

    if (id) {
        ngx_memcpy(p, id, NGX_HTTP_RAGQ_JOB_ID_LEN);
    }

    return NGX_OK;
}


/* the EVAL of the cancel script for job id (see the script's comment) */
static ngx_int_t
ngx_http_ragq_cancel_send(ngx_http_request_t *r, ngx_http_ragq_loc_conf_t *lcf,
                          ngx_http_ragq_cell_t *cell, ngx_str_t *tenant)
{
    u_char     *id, *e, *now_end, *ttl_end;
    ngx_str_t   job, events, cancel, out;
    ngx_time_t *tp;
    const char *argv[15];
    size_t      argvlen[15];
    u_char      entry[2 * NGX_INT64_LEN + 2];
    u_char      now[NGX_INT64_LEN];
    u_char      ttl[NGX_INT64_LEN];

    id = cell->job_id;

    if (ngx_http_ragq_cancel_key(r, &job, &lcf->job_prefix, "", id) != NGX_OK
        || ngx_http_ragq_cancel_key(r, &events, &lcf->prefix, ":events", NULL)
               != NGX_OK
        || ngx_http_ragq_cancel_key(r, &cancel, &lcf->prefix, ":cancel", NULL)
               != NGX_OK
        || ngx_http_ragq_cancel_key(r, &out, &lcf->prefix, ":out:", id)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    e = ngx_http_ragq_job_entry_of_id(entry, id);

    tp = ngx_timeofday();
    now_end = ngx_sprintf(now, "%uL", (uint64_t) tp->sec * 1000 + tp->msec);
    ttl_end = ngx_sprintf(ttl, "%M", lcf->job_ttl);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_ragq_cancel_script;
    argvlen[1] = sizeof(ngx_http_ragq_cancel_script) - 1;
    argv[2] = "5";
    argvlen[2] = 1;
    argv[3] = (const char *) job.data;
    argvlen[3] = job.len;
    argv[4] = (const char *) lcf->jobs_key.data;
    argvlen[4] = lcf->jobs_key.len;
    argv[5] = (const char *) events.data;
    argvlen[5] = events.len;
    argv[6] = (const char *) cancel.data;
    argvlen[6] = cancel.len;
    argv[7] = (const char *) out.data;
    argvlen[7] = out.len;
    argv[8] = (const char *) id;
    argvlen[8] = NGX_HTTP_RAGQ_JOB_ID_LEN;
    argv[9] = (const char *) entry;
    argvlen[9] = e - entry;
    argv[10] = (const char *) id + 16;
    argvlen[10] = NGX_HTTP_RAGQ_JOB_ID_LEN - 16;
    argv[11] = (const char *) now;
    argvlen[11] = now_end - now;
    argv[12] = (const char *) ttl;
    argvlen[12] = ttl_end - ttl;
    argv[13] = tenant->len ? (const char *) tenant->data : "";
    argvlen[13] = tenant->len;
    argv[14] = NGX_HTTP_RAGQ_CANCEL_ERROR;
    argvlen[14] = sizeof(NGX_HTTP_RAGQ_CANCEL_ERROR) - 1;

    return ngx_http_ragq_valkey_command(cell, 15, argv, argvlen);
}


ngx_int_t
ngx_http_ragq_cancel_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 id, tenant;
    ngx_http_ragq_arg_t       arg;
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_ragq_not_allowed(r, "POST", "use POST to cancel a job");
    }

    if (ngx_http_ragq_job_args(r, lcf, &tenant, &arg, 1, "/job-cancel", &rc)
        != NGX_OK)
    {
        return rc;
    }

    id = arg.value;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: job-cancel of %V", &id);

    rc = ngx_http_ragq_valkey_available();
    if (rc != NGX_OK) {
        return ngx_http_ragq_unavailable(r, rc);
    }

    cell = ngx_http_ragq_cell_create(r, ngx_http_ragq_cancel_reply);
    if (cell == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(cell->job_id, id.data, NGX_HTTP_RAGQ_JOB_ID_LEN);
    cell->data = lcf;

    rc = ngx_http_ragq_cancel_send(r, lcf, cell, &tenant);

    if (rc != NGX_OK) {
        ngx_http_ragq_cell_drop(cell);
        return ngx_http_ragq_unavailable(r, rc);
    }

    ngx_http_ragq_cell_wait(r, cell);

    r->main->count++;

    return NGX_DONE;
}


/* the script's answer: 200 with the job view, 409, 404, or the error */
static ngx_int_t
ngx_http_ragq_cancel_answer(ngx_http_request_t *r, u_char *id,
                            redisReply *reply)
{
    ngx_str_t   json;
    redisReply *status;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        return ngx_http_ragq_reply_error(r, reply);
    }

    switch (reply->element[0]->integer) {
    case 0:
        return ngx_http_ragq_error(r, NGX_HTTP_NOT_FOUND, "job_not_found",
                                   "no such job: it never existed, has "
                                   "expired, or belongs to someone else");

    case 1:
        status = reply->elements == 2 ? reply->element[1] : NULL;

        if (status == NULL || status->type != REDIS_REPLY_STRING) {
            break;
        }

        ngx_http_ragq_set_job(r, id, (u_char *) status->str, status->len);

        return ngx_http_ragq_errorf(r, NGX_HTTP_CONFLICT, "already_final",
                                    "the job has already ended (%*s); only "
                                    "queued and started jobs can be "
                                    "canceled",
                                    (size_t) status->len, status->str);

    case 2:
        if (reply->elements != 2
            || reply->element[1]->type != REDIS_REPLY_ARRAY)
        {
            break;
        }

        if (ngx_http_ragq_job_view(r->pool, id, reply->element[1], &json)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_ragq_set_job(r, id, (u_char *) "canceled", 8);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ragq: job %*s canceled",
                      (size_t) NGX_HTTP_RAGQ_JOB_ID_LEN, id);

        return ngx_http_ragq_send_json(r, NGX_HTTP_OK, json.data, json.len);

    default:
        break;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ragq: unexpected reply of the cancel script");

    return ngx_http_ragq_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "internal_error",
                               "the job store returned an unexpected reply");
}


static void
ngx_http_ragq_cancel_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    ngx_http_request_t *r;

    r = ngx_http_ragq_cell_take(cell);
    if (r == NULL) {
        return;
    }

    ngx_http_ragq_finalize(r,
                           ngx_http_ragq_cancel_answer(r, cell->job_id, reply));
}
