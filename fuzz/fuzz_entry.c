/*
 * fuzz/fuzz_entry.c: a job still in queue-entry form (issue 13: one XADD
 * per /chat, the hash written at claim). What the module makes of any
 * XRANGE reply, as ngx_http_ragq_job_found() reads it for /job-status,
 * the long-poll and /job-stream (DEVELOPERS.md, "reading a job"): the
 * entry view (status queued, attempts 0, the entry's fields but r, status
 * and attempts), its JSON, who may see it; GET /job-status through its
 * three reads (HGETALL miss, XRANGE, HGETALL again); and the id helpers
 * (job id <-> entry id "<ms>-<seq>").
 *
 * Input: sections separated by \x1e: flags (2 bytes), tenant, job id (32
 * bytes, else a fixed one), the entry id item, the reply of the second
 * HGETALL, an entry id string (the helpers), then the entry's field list
 * (the rest of the input; a reply as harness.h makes it: "A" then field,
 * value, ... separated by \x1f, items typed by \x1d).
 *
 * Checks: the entry is found exactly when the XRANGE reply is one entry
 * [id, fields] whose first "r" field is the id's random half; its view
 * starts status queued, attempts 0, carries no other r, status or
 * attempts, at most NGX_HTTP_RAGQ_ENTRY_MAX items, and its JSON is one
 * object in UTF-8 saying "queued" and 0 attempts; /job-status sends
 * HGETALL, then XRANGE of the entry the id names (canonical "<ms>-<seq>"),
 * then HGETALL once more only when the entry is not the job's, answers
 * once, JSON, 200 for a found job its tenant may see and 404 for one it
 * may not, 404 when all three miss; the helpers round-trip; no crash, no
 * leak (fuzz/run: detect_leaks).
 */
#include "harness.h"
#include "../ngx_http_ragq_status.h"
#include "../ngx_http_ragq_job.h"

#define ENTRY_MS_MAX  0xffffffffffffULL
#define ENTRY_SEQ_MAX 0xffffULL

static int
fuzz_is(redisReply *k, const char *s)
{
    size_t n = strlen(s);

    return k->type == REDIS_REPLY_STRING && (size_t) k->len == n &&
           memcmp(k->str, s, n) == 0;
}

/* the field list of an XRANGE reply of one entry, else NULL */
static redisReply *
fuzz_entry_fields(redisReply *x)
{
    redisReply *e;

    if (x->type != REDIS_REPLY_ARRAY || x->elements != 1) {
        return NULL;
    }
    e = x->element[0];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY) {
        return NULL;
    }
    return e->element[1];
}

/* the value of the first pair whose key is the string name */
static redisReply *
fuzz_first(redisReply *f, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < f->elements; i += 2) {
        if (fuzz_is(f->element[i], name)) {
            return f->element[i + 1];
        }
    }
    return NULL;
}

/* the entry is the job's: its first "r" is the id's random half */
static int
fuzz_matches(redisReply *f, const u_char *id)
{
    redisReply *r;

    if (f == NULL) {
        return 0;
    }
    r = fuzz_first(f, "r");
    return r && r->type == REDIS_REPLY_STRING && r->len == 16 &&
           memcmp(r->str, id + 16, 16) == 0;
}

/* the XRANGE reply: one entry [id, fields], or a shape around them */
static redisReply *
fuzz_xrange(ngx_uint_t shape, ngx_str_t *eid, ngx_str_t *fields)
{
    ngx_uint_t  absent;
    redisReply *x, *e, *f;
    ngx_str_t   in;

    in = *fields;
    f = fuzz_reply(&in, &absent);
    if (f == NULL) {
        f = fuzz_reply_array(0);
    }

    switch (shape) {
    case 4: /* no entry: XRANGE found nothing */
        fuzz_reply_free(f);
        return fuzz_reply_array(0);
    case 5: /* two entries */
        x = fuzz_reply_array(2);
        x->element[1] = fuzz_reply_array(2);
        x->element[1]->element[0] = fuzz_reply_item((u_char *) "1-1", 3);
        x->element[1]->element[1] = fuzz_reply_array(0);
        break;
    case 6: /* an entry of three items */
        x = fuzz_reply_array(1);
        e = fuzz_reply_array(3);
        e->element[0] = fuzz_reply_item(eid->data, eid->len);
        e->element[1] = f;
        e->element[2] = fuzz_reply_item((u_char *) "\x1dn", 2);
        x->element[0] = e;
        return x;
    case 7: /* the field list where the entry should be */
        x = fuzz_reply_array(1);
        x->element[0] = f;
        return x;
    default:
        x = fuzz_reply_array(1);
    }

    e = fuzz_reply_array(2);
    e->element[0] = fuzz_reply_item(eid->data, eid->len);
    e->element[1] = f;
    x->element[0] = e;
    return x;
}

/* the entry view: status queued, attempts 0, then the entry's other
 * fields in order, as many as fit */
static void
fuzz_check_view(redisReply *f, redisReply *v)
{
    size_t i, n, want;

    if (v->type != REDIS_REPLY_ARRAY || v->elements % 2 || v->elements < 4 ||
        v->elements > NGX_HTTP_RAGQ_ENTRY_MAX) {
        fuzz_fail("an entry view of the wrong shape", NULL, 0);
    }
    if (!fuzz_is(v->element[0], "status") ||
        !fuzz_is(v->element[1], "queued") ||
        !fuzz_is(v->element[2], "attempts") || !fuzz_is(v->element[3], "0")) {
        fuzz_fail("an entry view that does not start queued, 0 attempts", NULL,
                  0);
    }
    for (want = 4, i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type == REDIS_REPLY_STRING &&
            !fuzz_is(f->element[i], "r") && !fuzz_is(f->element[i], "status") &&
            !fuzz_is(f->element[i], "attempts") &&
            want + 2 <= NGX_HTTP_RAGQ_ENTRY_MAX) {
            if (want + 2 > v->elements || v->element[want] != f->element[i] ||
                v->element[want + 1] != f->element[i + 1]) {
                fuzz_fail("an entry view that lost or reordered a field", NULL,
                          0);
            }
            want += 2;
        }
    }
    for (n = 4; n < v->elements; n += 2) {
        if (fuzz_is(v->element[n], "r") || fuzz_is(v->element[n], "status") ||
            fuzz_is(v->element[n], "attempts")) {
            fuzz_fail("an entry view with r, status or attempts of its own",
                      NULL, 0);
        }
    }
    if (want != v->elements) {
        fuzz_fail("an entry view with fields the entry does not have", NULL, 0);
    }
}

static int
fuzz_has(const u_char *p, size_t len, const char *s)
{
    return memmem(p, len, s, strlen(s)) != NULL;
}

/* the id helpers: any entry id string they take comes back canonical, and
 * any job id's entry id gives the id's first half back */
static void
fuzz_check_ids(ngx_str_t *s, const u_char *id)
{
    u_char             half[16], buf[64], *e;
    char               want[64];
    size_t             i, k, dash = 0;
    unsigned long long n[2] = {0, 0};
    int                ok = 1, big = 0;

    /* an entry id is digits '-' digits, ms < 2^48, seq < 2^16 */
    for (i = 0, k = 0; i < s->len; i++) {
        if (s->data[i] == '-' && k == 0 && i > 0) {
            k = 1;
            dash = i;
        } else if (s->data[i] >= '0' && s->data[i] <= '9') {
            if (n[k] > ENTRY_MS_MAX) {
                big = 1;
            } else {
                n[k] = n[k] * 10 + (s->data[i] - '0');
            }
        } else {
            ok = 0;
        }
    }
    ok = ok && k == 1 && dash + 1 < s->len && !big && n[0] <= ENTRY_MS_MAX &&
         n[1] <= ENTRY_SEQ_MAX;

    if ((ngx_http_ragq_job_id_from_entry(half, s->data, s->len) == NGX_OK) !=
        ok) {
        fuzz_fail(ok ? "an entry id refused" : "a bad entry id taken", s->data,
                  s->len);
    }
    if (ok) {
        e = ngx_http_ragq_job_entry_of_id(buf, half);
        snprintf(want, sizeof(want), "%llu-%llu", n[0], n[1]);
        if ((size_t) (e - buf) != strlen(want) ||
            memcmp(buf, want, e - buf) != 0) {
            fuzz_fail("an entry id that does not come back", buf, e - buf);
        }
    }

    if (ngx_http_ragq_job_id_valid((u_char *) id, 32)) {
        e = ngx_http_ragq_job_entry_of_id(buf, (u_char *) id);
        if (ngx_http_ragq_job_id_from_entry(half, buf, e - buf) != NGX_OK ||
            memcmp(half, id, 16) != 0) {
            fuzz_fail("a job id whose entry id names another", buf, e - buf);
        }
    }
}

/* the module sent HGETALL of the id's hash, then XRANGE of its entry */
static void
fuzz_check_pair(const u_char *id)
{
    u_char buf[64], want[512], *e, *p;
    size_t n;

    e = ngx_http_ragq_job_entry_of_id(buf, (u_char *) id);
    n = e - buf;
    p = want + snprintf((char *) want, 128,
                        "*2\r\n$7\r\nHGETALL\r\n$41\r\nragq:job:%.32s\r\n",
                        (const char *) id);
    p += snprintf((char *) p, 128,
                  "*4\r\n$6\r\nXRANGE\r\n$9\r\nragq:jobs\r\n$%zu\r\n", n);
    memcpy(p, buf, n);
    p += n;
    p += snprintf((char *) p, 64, "\r\n$%zu\r\n", n);
    memcpy(p, buf, n);
    p += n;
    memcpy(p, "\r\n", 2);
    p += 2;
    if (fuzz_out.cmd_len != (size_t) (p - want) ||
        memcmp(fuzz_out.cmd, want, p - want) != 0) {
        fuzz_fail("not HGETALL + XRANGE of the id's job", fuzz_out.cmd,
                  fuzz_out.cmd_len);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              f0 = 0, f1 = 0, id[33], args[64];
    ngx_int_t           rc;
    ngx_str_t           sec[7], json;
    ngx_uint_t          step, shape, absent, i, k, found, gone, commands, valid;
    redisReply         *x, *fields, *job, *again, *miss, *r_, *owner, *reply;
    ngx_http_request_t *r;
    fuzz_request_spec_t spec;
    ngx_http_ragq_cell_t     *cell;
    ngx_http_ragq_loc_conf_t *lcf;
    ngx_http_ragq_job_entry_t je;

    fuzz_begin();
    fuzz_sections(data, size, sec, 7);
    if (sec[0].len > 0) {
        f0 = sec[0].data[0];
    }
    if (sec[0].len > 1) {
        f1 = sec[0].data[1];
    }
    shape = f0 & 7;

    memcpy(id, "0123456789abcdef0123456789abcdef", 33);
    if (sec[2].len >= 32) {
        memcpy(id, sec[2].data, 32);
    }

    x = fuzz_xrange(shape, &sec[3], &sec[6]);
    fields = fuzz_entry_fields(x);

    /* bit 3: the id's random half is the entry's r (found, most often) */
    if ((f0 & 0x08) && fields) {
        r_ = fuzz_first(fields, "r");
        if (r_ && r_->type == REDIS_REPLY_STRING && r_->len == 16) {
            memcpy(id + 16, r_->str, 16);
        }
    }
    /* every reader of a job has checked its id first (32 lowercase hex) */
    valid = ngx_http_ragq_job_id_valid(id, 32);
    found = valid && fuzz_matches(fields, id);

    /* the module's entry ids are hiredis strings: never a NULL buffer */
    if (sec[5].data == NULL) {
        sec[5].data = (u_char *) "";
    }
    fuzz_check_ids(&sec[5], id);

    /* ---- the reader alone ---- */
    step = NGX_HTTP_RAGQ_READ_ENTRY;
    rc = valid ? ngx_http_ragq_job_found(id, &step, x, &je, &job) : NGX_AGAIN;
    if (!valid) {
        step = NGX_HTTP_RAGQ_READ_HASH_AGAIN;
    } else if (found) {
        if (rc != NGX_OK || job != &je.reply) {
            fuzz_fail("the job's entry not found", NULL, 0);
        }
        fuzz_check_view(fields, job);

        lcf = fuzz_loc_conf(NGX_HTTP_RAGQ_STATUS);
        r = fuzz_request(&(fuzz_request_spec_t){.method = NGX_HTTP_GET}, lcf);
        if (ngx_http_ragq_job_view(r->pool, id, job, &json) != NGX_OK) {
            fuzz_fail("no view", NULL, 0);
        }
        if (json.len == 0 || json.data[json.len - 1] != '\n' ||
            !oracle_json_object(json.data, json.len - 1)) {
            fuzz_fail("an entry's JSON that is not one object in UTF-8",
                      json.data, json.len);
        }
        if (!fuzz_has(json.data, json.len, "\"status\":\"queued\"") ||
            !fuzz_has(json.data, json.len, "\"attempts\":0,")) {
            fuzz_fail("an entry's JSON not queued with 0 attempts", json.data,
                      json.len);
        }
        fuzz_request_free(r);

    } else if (rc != NGX_AGAIN || step != NGX_HTTP_RAGQ_READ_HASH_AGAIN) {
        fuzz_fail("another entry taken for the job's", NULL, 0);
    }

    /* ---- GET /job-status: HGETALL (miss), XRANGE, HGETALL again ---- */
    lcf = fuzz_loc_conf(NGX_HTTP_RAGQ_STATUS);
    if (f0 & 0x10) {
        lcf->tenant = fuzz_complex_value(&sec[1]);
    }
    memset(&spec, 0, sizeof(spec));
    spec.method = NGX_HTTP_GET;
    memcpy(args, "job_id=", 7);
    memcpy(args + 7, id, 32);
    spec.args.data = args;
    spec.args.len = 39;

    r = fuzz_request(&spec, lcf);
    rc = ngx_http_ragq_status_handler(r);
    if (rc >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        fuzz_fail("the handler failed the request", NULL, 0);
    }

    miss = fuzz_reply_array(0);
    again = fuzz_reply(&sec[4], &absent);
    /* f1 bits 0-1: the client goes away (1: before the XRANGE's reply, 3:
     * before the second HGETALL's), or the XRANGE's deadline passes (2) */
    gone = f1 & 3;
    commands = 0;
    if (fuzz_out.ncells == 1 && fuzz_out.commands == 2) {
        /* the hash and the entry asked for in one round trip */
        fuzz_check_pair(id);
    }
    /* replies in order: the hash's (miss), the entry's, the hash's again */
    k = 0;
    for (i = 0; i < fuzz_out.ncells; i++) {
        cell = fuzz_out.cells[i];
        do {
            if ((gone == 1 && k == 1) || (gone == 3 && k == 2)) {
                fuzz_request_free(r);
            }
            if (gone == 2 && k == 1 && cell->deadline.timer_set) {
                cell->deadline.timer_set = 0;
                cell->deadline.timedout = 1;
                cell->deadline.handler(&cell->deadline);
            }
            reply = k == 0 ? miss : k == 1 ? x : again;
            k++;
        } while (!fuzz_deliver(cell, reply));
    }
    commands = fuzz_out.commands;
    fuzz_out.ncells = 0;
    fuzz_request_free(r);

    fuzz_check_answer(1);

    if (valid && gone == 0 && (f0 & 0x10) && sec[1].len == 0) {
        /* ragq_tenant set, but empty for this request: refused unread */
        if (fuzz_out.status != 403 || commands != 0) {
            fuzz_fail("a request without its tenant not refused", fuzz_out.body,
                      fuzz_out.len);
        }

    } else if (valid && gone == 0) {
        if (fuzz_out.answers != 1) {
            fuzz_fail("no answer", NULL, 0);
        }
        if (commands != (found ? 2u : 3u)) {
            fuzz_fail(found ? "a read after the job's entry was found"
                            : "no second HGETALL after the entry missed",
                      NULL, 0);
        }
        if (found) {
            /* who may see it: the entry's tenant (or none) against ours */
            owner = fuzz_first(&je.reply, "tenant");
            if (owner == NULL || owner->type == REDIS_REPLY_STRING) {
                ngx_uint_t visible =
                    (owner == NULL && !(f0 & 0x10 && sec[1].len)) ||
                    (owner &&
                     (size_t) owner->len == ((f0 & 0x10) ? sec[1].len : 0) &&
                     (owner->len == 0 ||
                      memcmp(owner->str, sec[1].data, owner->len) == 0));

                if (fuzz_out.status != (visible ? 200u : 404u)) {
                    fuzz_fail(visible ? "a visible queued job not answered 200"
                                      : "another tenant's queued job answered",
                              fuzz_out.body, fuzz_out.len);
                }
                if (visible && !fuzz_has(fuzz_out.body, fuzz_out.len,
                                         "\"status\":\"queued\"")) {
                    fuzz_fail("a queued job's answer not queued", fuzz_out.body,
                              fuzz_out.len);
                }
            }
        } else if (again && again->type == REDIS_REPLY_ARRAY &&
                   again->elements == 0 && fuzz_out.status != 404) {
            fuzz_fail("a job in neither form not answered 404", fuzz_out.body,
                      fuzz_out.len);
        }
    }

    fuzz_reply_free(miss);
    fuzz_reply_free(again);
    fuzz_reply_free(x);
    return 0;
}
