/*
 * fuzz/fuzz_status.c: GET /job-status in the module: the job_id and wait=
 * arguments, the tenant, the HGETALL and its reply (any hash, any reply),
 * who may see the job, and the job view; and the job view alone over the
 * same reply.
 *
 * Input: sections separated by \x1e: flags, query string, tenant, Valkey
 * reply (harness.h; a hash is "A" then field, value, ... separated by
 * \x1f). Checks: at most one answer, a JSON object (application/json)
 * unless HEAD; for a hash (an array reply) 200 or 404, never 5xx; the job
 * view of any array is a JSON object in UTF-8. A job still in its queue
 * entry is fuzz_entry's.
 */
#include "harness.h"
#include "../ngx_http_ragq_status.h"
#include "../ngx_http_ragq_job.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                    f = 0;
    ngx_int_t                 rc;
    ngx_str_t                 sec[4], json;
    ngx_uint_t                order, absent, array;
    redisReply               *reply;
    ngx_http_request_t       *r;
    fuzz_request_spec_t       spec;
    ngx_http_ragq_loc_conf_t *lcf;
    static const ngx_uint_t   methods[] = {NGX_HTTP_GET, NGX_HTTP_GET,
                                           NGX_HTTP_HEAD, NGX_HTTP_POST};
    static u_char             id[] = "0123456789abcdef0123456789abcdef";

    fuzz_begin();
    fuzz_sections(data, size, sec, 4);
    if (sec[0].len) {
        f = sec[0].data[0];
    }

    lcf = fuzz_loc_conf(NGX_HTTP_RAGQ_STATUS);
    if (f & 0x04) {
        lcf->tenant = fuzz_complex_value(&sec[2]);
    }
    fuzz_valkey.available = (f >> 6) == 2   ? NGX_BUSY
                            : (f >> 6) == 3 ? NGX_DECLINED
                                            : NGX_OK;

    memset(&spec, 0, sizeof(spec));
    spec.method = methods[f & 3];
    if (f & 0x08) {
        spec.args = sec[1];
        if (spec.args.data == NULL) {
            spec.args.data = (u_char *) "";
        }
    }
    order = (f >> 4) & 3;

    r = fuzz_request(&spec, lcf);
    rc = ngx_http_ragq_status_handler(r);
    if (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        fuzz_fail("the handler failed the request", NULL, 0);
    }

    reply = fuzz_reply(&sec[3], &absent);
    array = reply && reply->type == REDIS_REPLY_ARRAY;
    fuzz_answer_cells(r, reply, order == 3 ? 0 : order);
    fuzz_request_free(r);

    if (fuzz_check_answer(spec.method != NGX_HTTP_HEAD)) {
        if (fuzz_out.status >= 500 && array && order != 2 &&
            fuzz_valkey.available == NGX_OK) {
            fuzz_fail("a 5xx for a job hash", fuzz_out.body, fuzz_out.len);
        }
    }

    /* the view alone, whoever may see the job */
    if (array) {
        if (ngx_http_ragq_job_view(r->pool, id, reply, &json) != NGX_OK) {
            fuzz_fail("no view", NULL, 0);
        }
        if (!oracle_json_object(json.data, json.len - 1) ||
            json.data[json.len - 1] != '\n') {
            fuzz_fail("a job view that is not a JSON object in UTF-8",
                      json.data, json.len);
        }
    }
    fuzz_reply_free(reply);
    return 0;
}
