/*
 * fuzz/fuzz_chat.c: POST /chat end to end in the module: the query string
 * (arguments, form decoding), headers (Content-Type, Idempotency-Key,
 * tenant), the body as nginx hands it over (split into buffers, empty
 * ones, the empty last_buf of a chunked body, or a temporary file), the
 * checks, the job written to Valkey, and the reply to it (an XADD's entry
 * id or an idempotency script reply, an error, nothing, a late one).
 *
 * Input: sections separated by \x1e: flags, query string, Idempotency-Key,
 * tenant, Content-Type, body, Valkey reply (harness.h says how a reply is
 * written). Checks: at most one answer, always a JSON object of type
 * application/json; 5xx only when Valkey failed or answered something
 * else than its protocol says; a 202 stored a question that is UTF-8,
 * without NUL, within ragq_max_query_length.
 */
#include "harness.h"
#include "../ngx_http_ragq_enqueue.h"

/* an entry id a job id can carry: <ms>-<seq>, ms < 2^48, seq < 2^16 */
static int
entry_id_as_expected(redisReply *r)
{
    const char        *p = r->str, *end = r->str + r->len;
    unsigned long long n;
    int                part;

    for (part = 0; part < 2; part++) {
        if (p == end || *p < '0' || *p > '9') {
            return 0;
        }
        for (n = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (unsigned long long) (*p - '0');
            if (n > 0xffffffffffffULL) {
                return 0;
            }
        }
        if (part == 0 && (p == end || *p++ != '-')) {
            return 0;
        }
    }
    return p == end && n <= 0xffff;
}

static int
reply_as_expected(redisReply *r)
{
    redisReply *e;

    if (r && r->type == REDIS_REPLY_STRING) {
        return entry_id_as_expected(r);
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        return 0;
    }
    e = r->element[1];
    /* the script's {0|1|2, job id, length}; {3, "", -1} is a 503 */
    return e->type == REDIS_REPLY_STRING &&
           e->len == NGX_HTTP_RAGQ_JOB_ID_LEN &&
           strspn(e->str, "0123456789abcdef") == NGX_HTTP_RAGQ_JOB_ID_LEN &&
           r->element[0]->integer >= 0 && r->element[0]->integer <= 2;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                    f[12];
    ngx_int_t                 rc;
    ngx_str_t                 sec[7], collection;
    ngx_uint_t                order, absent, i, fail5xx;
    redisReply               *reply;
    ngx_http_request_t       *r;
    fuzz_request_spec_t       spec;
    ngx_http_ragq_loc_conf_t *lcf;
    static const ngx_uint_t   methods[] = {NGX_HTTP_POST, NGX_HTTP_POST,
                                           NGX_HTTP_GET, NGX_HTTP_PUT};
    static const size_t       maxq[] = {16384, 8, 1, 64};
    static ngx_str_t          allow[] = {ngx_string("http://hooks.test/cb/"),
                                         ngx_string("https://h.test:8443/")};
    static ngx_array_t        allowed = {allow, 2, sizeof(ngx_str_t), 2, NULL};

    fuzz_begin();
    fuzz_sections(data, size, sec, 7);

    memset(f, 0, sizeof(f));
    memcpy(f, sec[0].data, sec[0].len < sizeof(f) ? sec[0].len : sizeof(f));

    lcf = fuzz_loc_conf(NGX_HTTP_RAGQ_ENQUEUE);
    if (f[0] & 0x20) {
        lcf->tenant = fuzz_complex_value(&sec[3]);
    }
    if (f[1] & 0x80) {
        ngx_str_set(&collection, "docs");
        lcf->collection = fuzz_complex_value(&collection);
    }
    lcf->max_query_length = maxq[(f[2] >> 3) & 3];
    switch ((f[2] >> 5) & 3) {
    case 1: /* full: answers 429 and re-reads the length (a cell) */
        lcf->max_queue = 1;
        lcf->queue_len = 5;
        break;
    case 2:
        lcf->max_queue = 0;
        break;
    case 3:
        lcf->max_queue = 3;
        lcf->queue_len = 2;
        break;
    }
    if (f[3] & 1) {
        /* ragq_callback_allow: callback_url checked, then carried */
        lcf->callback_allow = &allowed;
    }
    if (f[2] & 0x80) {
        lcf->top_k = 2;
        lcf->top_k_max = 3;
    }
    fuzz_valkey.available = (f[2] & 3) == 2   ? NGX_BUSY
                            : (f[2] & 3) == 3 ? NGX_DECLINED
                                              : NGX_OK;
    if (f[2] & 4) {
        fuzz_valkey.send_rc = NGX_ERROR;
    }

    memset(&spec, 0, sizeof(spec));
    spec.method = methods[f[0] & 3];
    spec.chunked = (f[0] >> 2) & 1;
    if (f[0] & 0x08) {
        spec.args = sec[1];
        if (spec.args.data == NULL) {
            spec.args.data = (u_char *) "";
        }
    }
    if ((f[0] & 0x10) && sec[2].data) {
        spec.idem = sec[2];
    }
    if ((f[0] & 0x40) && sec[4].data) {
        spec.content_type = sec[4];
    } else if (f[0] & 0x40) {
        ngx_str_set(&spec.content_type, "application/json");
    }
    if ((f[0] & 0x80) && sec[5].data) {
        spec.body = sec[5];
    }
    spec.nbufs = (f[1] & 7) + 1;
    spec.in_file = (f[1] >> 3) & 1;
    spec.empty_bufs = (f[1] >> 4) & 1;
    order = (f[1] >> 5) & 3;
    for (i = 1; i < 8; i++) {
        spec.cuts[i] = f[2 + i];
    }

    r = fuzz_request(&spec, lcf);
    rc = ngx_http_ragq_enqueue_handler(r);

    if (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        fuzz_fail("the handler failed the request", NULL, 0);
    }

    reply = fuzz_reply(&sec[6], &absent);
    fail5xx = !reply_as_expected(reply) || order == 2 ||
              fuzz_valkey.available != NGX_OK || fuzz_valkey.send_rc != NGX_OK;
    fuzz_answer_cells(r, reply, order == 3 ? 0 : order);
    fuzz_reply_free(reply);
    fuzz_request_free(r);

    if (!fuzz_check_answer(1)) {
        return 0;
    }
    if (fuzz_out.status >= 500 && !fail5xx) {
        fuzz_fail("a 5xx for a request Valkey accepted", fuzz_out.body,
                  fuzz_out.len);
    }
    if (fuzz_out.status == NGX_HTTP_ACCEPTED && fuzz_out.commands == 0) {
        fuzz_fail("202 without a command to Valkey", fuzz_out.body,
                  fuzz_out.len);
    }
    if (fuzz_out.status == NGX_HTTP_ACCEPTED && fuzz_out.query.data) {
        if (fuzz_out.query.len == 0 ||
            fuzz_out.query.len > lcf->max_query_length ||
            memchr(fuzz_out.query.data, '\0', fuzz_out.query.len) ||
            !oracle_utf8(fuzz_out.query.data, fuzz_out.query.len)) {
            fuzz_fail("a stored question that is empty, too long, not UTF-8 "
                      "or has a NUL",
                      fuzz_out.query.data, fuzz_out.query.len);
        }
    }
    return 0;
}
