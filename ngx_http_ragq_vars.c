/*
 * ragq: the request context and the variables for log_format. A request
 * remembers the job it is about where its handler learns it (the 202 of
 * POST /chat, the answer of GET /job-status or POST /job-cancel, the start
 * of GET /job-stream), because the job id lives in the pending cell only
 * until the reply; $ragq_job_id and $ragq_job_status read it back, empty
 * ("-" in an access log) for requests about no job.
 * $ragq_version is the module's version.
 */

#include "ngx_http_ragq_vars.h"


static ngx_int_t ngx_http_ragq_job_id_variable(ngx_http_request_t        *r,
                                               ngx_http_variable_value_t *v,
                                               uintptr_t                  data);
static ngx_int_t ngx_http_ragq_job_status_variable(ngx_http_request_t        *r,
                                                   ngx_http_variable_value_t *v,
                                                   uintptr_t data);
static ngx_int_t ngx_http_ragq_version_variable(ngx_http_request_t        *r,
                                                ngx_http_variable_value_t *v,
                                                uintptr_t data);


static ngx_http_variable_t ngx_http_ragq_vars[] = {
    { ngx_string("ragq_job_id"), NULL, ngx_http_ragq_job_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("ragq_job_status"), NULL, ngx_http_ragq_job_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("ragq_version"), NULL, ngx_http_ragq_version_variable, 0, 0,
      0 },
    ngx_http_null_variable
};


/* the statuses a job can have, so that they need no copy */
static ngx_str_t ngx_http_ragq_queued = ngx_string("queued");
static ngx_str_t ngx_http_ragq_started = ngx_string("started");
static ngx_str_t ngx_http_ragq_finished = ngx_string("finished");
static ngx_str_t ngx_http_ragq_failed = ngx_string("failed");
static ngx_str_t ngx_http_ragq_canceled = ngx_string("canceled");


ngx_int_t
ngx_http_ragq_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t *var, *v;

    for (v = ngx_http_ragq_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_http_ragq_ctx_t *
ngx_http_ragq_ctx(ngx_http_request_t *r)
{
    ngx_http_ragq_ctx_t *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ragq_module);
    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ragq_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_ragq_module);

    return ctx;
}


void
ngx_http_ragq_set_job(ngx_http_request_t *r, u_char *id, u_char *status,
                      size_t len)
{
    ngx_str_t           *s;
    ngx_http_ragq_ctx_t *ctx;

    /* on the hot paths: one comparison, not one per status */
    switch (len) {
    case 6:
        s = (status[0] == 'q') ? &ngx_http_ragq_queued : &ngx_http_ragq_failed;
        break;
    case 7:
        s = &ngx_http_ragq_started;
        break;
    case 8:
        s = (status[0] == 'f') ? &ngx_http_ragq_finished
                               : &ngx_http_ragq_canceled;
        break;
    default:
        s = NULL;
    }

    if (s && ngx_memcmp(s->data, status, len) != 0) {
        s = NULL;
    }

    ctx = ngx_http_ragq_ctx(r);
    if (ctx == NULL) {
        return;
    }

    ngx_memcpy(ctx->job_id, id, NGX_HTTP_RAGQ_JOB_ID_LEN);
    ctx->has_job_id = 1;

    if (s) {
        ctx->status = *s;
        return;
    }

    if (len == 0) {
        return;
    }

    /* not a status ragq writes: logged as it is, at most 32 bytes of it */
    len = ngx_min(len, 32);

    ctx->status.data = ngx_pnalloc(r->pool, len);
    if (ctx->status.data == NULL) {
        return;
    }

    ngx_memcpy(ctx->status.data, status, len);
    ctx->status.len = len;
}


static void
ngx_http_ragq_variable_set(ngx_http_variable_value_t *v, u_char *p, size_t len)
{
    if (len == 0) {
        v->not_found = 1;
        return;
    }

    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = p;
}


static ngx_int_t
ngx_http_ragq_job_id_variable(ngx_http_request_t        *r,
                              ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ragq_ctx_t *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ragq_module);

    if (ctx == NULL || !ctx->has_job_id) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_ragq_variable_set(v, ctx->job_id, NGX_HTTP_RAGQ_JOB_ID_LEN);

    return NGX_OK;
}


static ngx_int_t
ngx_http_ragq_job_status_variable(ngx_http_request_t        *r,
                                  ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ragq_ctx_t *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ragq_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_ragq_variable_set(v, ctx->status.data, ctx->status.len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_ragq_version_variable(ngx_http_request_t        *r,
                               ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ragq_variable_set(v, (u_char *) RAGQ_VERSION,
                               sizeof(RAGQ_VERSION) - 1);

    return NGX_OK;
}
