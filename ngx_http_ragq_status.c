/*
 * ragq: GET /job-status: the job_id and wait= arguments, the job read
 * (its hash, else its queue entry: ngx_http_ragq_job_read(), both asked
 * for in one round trip) answered with the job view, or the long-poll
 * (ngx_http_ragq_longpoll.c) when wait= asks for it.
 */

#include "ngx_http_ragq_status.h"
#include "ngx_http_ragq_request.h"
#include "ngx_http_ragq_job.h"
#include "ngx_http_ragq_longpoll.h"


static void ngx_http_ragq_status_reply(ngx_http_ragq_cell_t *cell,
                                       redisReply           *reply);


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


ngx_int_t
ngx_http_ragq_status_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 id, job_key, tenant;
    ngx_msec_t                wait;
    ngx_http_ragq_arg_t       args[2];
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ragq_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        return ngx_http_ragq_not_allowed(r, "GET, HEAD",
                                         "use GET to read a job");
    }

    ngx_str_set(&args[1].name, "wait");

    if (ngx_http_ragq_job_args(r, lcf, &tenant, args, 2, "/job-status", &rc)
        != NGX_OK)
    {
        return rc;
    }

    id = args[0].value;

    if (ngx_http_ragq_wait_arg(&args[1].value, lcf, &wait) != NGX_OK) {
        return ngx_http_ragq_errorf(r, NGX_HTTP_BAD_REQUEST, "invalid_wait",
                                    "wait must be a number of seconds, e.g. "
                                    "wait=30 (at most %T is used)",
                                    lcf->max_wait);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ragq: job-status of %V, wait %M ms", &id, wait);

    rc = ngx_http_ragq_valkey_available();
    if (rc != NGX_OK) {
        return ngx_http_ragq_unavailable(r, rc);
    }

    /*
     * Without a confirmed subscription an event could be missed: answer
     * the current state at once, the client polls again.
     */
    if (wait && ngx_http_ragq_pubsub_ready()) {
        job_key.len = lcf->job_prefix.len + NGX_HTTP_RAGQ_JOB_ID_LEN;
        job_key.data = ngx_pnalloc(r->pool, job_key.len);
        if (job_key.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(job_key.data, lcf->job_prefix.data, lcf->job_prefix.len);
        ngx_memcpy(p, id.data, NGX_HTTP_RAGQ_JOB_ID_LEN);

        return ngx_http_ragq_lp_wait(r, lcf, &job_key, id.data, wait);
    }

    cell = ngx_http_ragq_cell_create(r, ngx_http_ragq_status_reply);
    if (cell == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(cell->job_id, id.data, NGX_HTTP_RAGQ_JOB_ID_LEN);
    cell->data = lcf;

    cell->step = NGX_HTTP_RAGQ_READ_PAIR;

    rc = ngx_http_ragq_job_read(cell, lcf, id.data, NGX_HTTP_RAGQ_READ_PAIR);

    if (rc != NGX_OK) {
        /* NGX_BUSY: the pair's two replies did not fit under the cap */
        ngx_http_ragq_cell_drop(cell);
        return ngx_http_ragq_unavailable(r, rc);
    }

    ngx_http_ragq_cell_wait(r, cell);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_ragq_status_reply(ngx_http_ragq_cell_t *cell, redisReply *reply)
{
    ngx_int_t                 rc;
    ngx_uint_t                step;
    redisReply               *job;
    ngx_http_request_t       *r;
    ngx_http_ragq_cell_t     *next;
    ngx_http_ragq_job_entry_t je;
    ngx_http_ragq_loc_conf_t *lcf = cell->data;

    if (cell->request == NULL) {
        /* gone, or answered by the first reply of a pair */
        return;
    }

    step = cell->step;

    rc = ngx_http_ragq_job_found(cell->job_id, &step, reply, &je, &job);

    if (rc == NGX_AGAIN && cell->more) {
        /* not in its hash: its entry's reply is the pair's next */
        cell->step = step;
        return;
    }

    r = ngx_http_ragq_cell_take(cell);

    if (rc == NGX_AGAIN) {
        /* not in its hash: its queue entry, then its hash again */
        next = ngx_http_ragq_cell_create(r, ngx_http_ragq_status_reply);
        if (next == NULL) {
            ngx_http_ragq_finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(next->job_id, cell->job_id, NGX_HTTP_RAGQ_JOB_ID_LEN);
        next->data = lcf;
        next->step = step;

        rc = ngx_http_ragq_job_read(next, lcf, next->job_id, step);

        if (rc != NGX_OK) {
            ngx_http_ragq_cell_drop(next);
            ngx_http_ragq_finalize(r, ngx_http_ragq_unavailable(r, rc));
            return;
        }

        ngx_http_ragq_cell_wait(r, next);
        return;
    }

    ngx_http_ragq_finalize(r, ngx_http_ragq_job_respond(r, lcf, cell->job_id,
                                                        job));
}
