/*
 * callback.c: delivering job-end callbacks (callback.h).  A delivery reads
 * the job hash (HGETALL), writes the /job-status JSON the module answers
 * (the same keys, "callback" null: its outcome is not known yet), POSTs it
 * with the Standard Webhooks headers (webhook-id msg_<job id>, the same on
 * every try and from every worker, so receivers can drop duplicates;
 * webhook-timestamp and webhook-signature made for each try), and records
 * {"status","attempts","code"} in the hash with a script that writes only
 * when the hash still exists (an expired job is not brought back).
 *
 * Deliveries live in memory: a worker killed mid-delivery loses it (a
 * graceful stop waits for them within RAGQ_SHUTDOWN_GRACE).
 */

#include "callback.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "http.h"
#include "jsonr.h"
#include "jsonw.h"
#include "queue_int.h"
#include "retry.h"
#include "webhook.h"

/* a receiver's answer is not needed: only its status */
#define RAGQ_CALLBACK_MAX_ANSWER (64u * 1024)
/* Valkey reads and writes of a delivery, tried this often, this far apart */
#define RAGQ_CALLBACK_VALKEY_TRIES 60
#define RAGQ_CALLBACK_VALKEY_WAIT  1000
/* room for curl's error text (CURL_ERROR_SIZE is 256) */
#define CURL_ERROR_SIZE_GUESS 320

static const char record_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  redis.call('HSET', KEYS[1], 'callback', ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

enum {
    D_READING,   /* HGETALL sent, or waiting to send it again */
    D_WAITING,   /* for a POST slot */
    D_POSTING,   /* POST in flight */
    D_BACKOFF,   /* between tries */
    D_RECORDING, /* the outcome's HSET sent, or waiting to send it again */
};

typedef struct ragq_delivery_s ragq_delivery_t;

struct ragq_delivery_s {
    ragq_callbacks_t *cbs;
    ragq_delivery_t  *prev, *next;
    char              id[33];
    char             *url, *key;
    const char       *only; /* a status the job must have, or NULL */
    char             *body; /* the job JSON */
    size_t            len;
    int               state, delivered;
    unsigned          attempts, valkey_tries;
    long              code; /* the last HTTP status, 0: none */
    ragq_timer_t      timer;
    ragq_http_req_t  *req;
};

struct ragq_callbacks_s {
    ragq_loop_t         *loop;
    ragq_queue_t        *q;
    const ragq_config_t *cfg;
    ragq_http_t         *http;
    char                *job_prefix;
    ragq_webhook_key_t   key;
    int                  have_key, warned_no_key;
    ragq_delivery_t     *head, *tail;
    size_t               n;
    unsigned             posting;
};

static void read_job(ragq_delivery_t *d);
static void record(ragq_delivery_t *d);
static void pump(ragq_callbacks_t *cbs);

ragq_callbacks_t *
ragq_callbacks_new(ragq_loop_t *loop, ragq_queue_t *q, const ragq_config_t *cfg,
                   const char *job_prefix)
{
    ragq_callbacks_t *cbs = calloc(1, sizeof(*cbs));
    char              err[256];

    if (cbs == NULL) {
        return NULL;
    }
    cbs->loop = loop;
    cbs->q = q;
    cbs->cfg = cfg;
    cbs->job_prefix = strdup(job_prefix);
    cbs->http = ragq_http_new(loop, cfg->connect_timeout_ms,
                              (long) cfg->callback_concurrency);
    if (cbs->job_prefix == NULL || cbs->http == NULL) {
        ragq_callbacks_free(cbs);
        return NULL;
    }
    ragq_http_use_curl(cbs->http, cfg->http_client != NULL &&
                                      strcmp(cfg->http_client, "curl") == 0);
    /* ragq_config_check refused a malformed secret already */
    cbs->have_key = cfg->webhook_secret != NULL &&
                    ragq_webhook_key_parse(cfg->webhook_secret, &cbs->key, err,
                                           sizeof(err)) == 0;
    return cbs;
}

size_t
ragq_callbacks_pending(const ragq_callbacks_t *cbs)
{
    return cbs ? cbs->n : 0;
}

static void
delivery_free(ragq_delivery_t *d)
{
    ragq_callbacks_t *cbs = d->cbs;

    ragq_timer_stop(cbs->loop, &d->timer);
    if (d->req) {
        ragq_http_cancel(d->req);
        cbs->posting--;
    }
    if (d->prev) {
        d->prev->next = d->next;
    } else {
        cbs->head = d->next;
    }
    if (d->next) {
        d->next->prev = d->prev;
    } else {
        cbs->tail = d->prev;
    }
    cbs->n--;
    free(d->url);
    free(d->key);
    free(d->body);
    free(d);
}

void
ragq_callbacks_free(ragq_callbacks_t *cbs)
{
    if (cbs == NULL) {
        return;
    }
    if (cbs->n) {
        ragq_log(RAGQ_LOG_WARN,
                 "%zu callback(s) not delivered: the worker stopped first",
                 cbs->n);
    }
    while (cbs->head) {
        delivery_free(cbs->head);
    }
    ragq_http_free(cbs->http);
    free(cbs->job_prefix);
    free(cbs);
}

/* A delivery's end: its slot in the count goes, a graceful stop may end. */
static void
delivery_done(ragq_delivery_t *d)
{
    ragq_callbacks_t *cbs = d->cbs;

    delivery_free(d);
    pump(cbs);
    ragq_queue_check_drained(cbs->q);
}

/* A Valkey read or write could not be made: again a little later. */
static void
valkey_again(ragq_delivery_t *d, const char *why)
{
    if (++d->valkey_tries >= RAGQ_CALLBACK_VALKEY_TRIES) {
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: callback dropped: Valkey unavailable (%s) for %u "
                 "tries",
                 d->id, why, d->valkey_tries);
        delivery_done(d);
        return;
    }
    ragq_timer_start(d->cbs->loop, &d->timer, RAGQ_CALLBACK_VALKEY_WAIT);
}

/* ---- the job JSON ----------------------------------------------------- */

static const redisReply *
field(const redisReply *h, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < h->elements; i += 2) {
        if (h->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(h->element[i]->str, name) == 0 &&
            h->element[i + 1]->type == REDIS_REPLY_STRING) {
            return h->element[i + 1];
        }
    }
    return NULL;
}

/* As the module writes it: an integer of at most 19 digits, else null. */
static void
add_integer(ragq_jbuf_t *b, const redisReply *v)
{
    const char *p, *end;
    int         neg;

    if (v == NULL) {
        ragq_jbuf_adds(b, "null");
        return;
    }
    p = v->str;
    end = p + v->len;
    neg = p < end && *p == '-';
    p += neg;
    while (end - p > 1 && *p == '0') {
        p++;
    }
    if (p == end || end - p > 19 ||
        strspn(p, "0123456789") != (size_t) (end - p)) {
        ragq_jbuf_adds(b, "null");
        return;
    }
    if (neg && !(end - p == 1 && *p == '0')) {
        ragq_jbuf_add(b, "-", 1);
    }
    ragq_jbuf_add(b, p, (size_t) (end - p));
}

/* JSON text as it is when it parses, else as a string (as the module). */
static void
add_json(ragq_jbuf_t *b, const redisReply *v, ragq_jdoc_t *doc)
{
    if (v == NULL) {
        ragq_jbuf_adds(b, "null");
    } else if (ragq_jdoc_parse(doc, v->str, v->len) != NULL) {
        ragq_jbuf_add(b, v->str, v->len);
    } else {
        ragq_jbuf_string(b, v->str, v->len);
    }
}

static void
add_string(ragq_jbuf_t *b, const redisReply *v)
{
    if (v == NULL) {
        ragq_jbuf_adds(b, "null");
    } else {
        ragq_jbuf_string(b, v->str, v->len);
    }
}

/* The /job-status JSON of a HGETALL reply (DESIGN §1, in the module's
 * order), "callback" null; NULL when out of memory. */
static char *
job_json(const char *id, const redisReply *h, size_t *len)
{
    static const char *const strings[] = {"status", "query", "result"};
    static const char *const json1[] = {"sources", "error"};
    static const char *const ints[] = {"created_at", "started_at", "ended_at",
                                       "attempts"};
    ragq_jbuf_t              b;
    ragq_jdoc_t              doc = RAGQ_JDOC_INIT;
    size_t                   i;
    char                    *out;

    ragq_jbuf_init(&b, 1024);
    ragq_jbuf_adds(&b, "{\"job_id\":");
    ragq_jbuf_string(&b, id, strlen(id));
    for (i = 0; i < 3; i++) {
        ragq_jbuf_adds(&b, ",\"");
        ragq_jbuf_adds(&b, strings[i]);
        ragq_jbuf_adds(&b, "\":");
        add_string(&b, field(h, strings[i]));
    }
    for (i = 0; i < 2; i++) {
        ragq_jbuf_adds(&b, ",\"");
        ragq_jbuf_adds(&b, json1[i]);
        ragq_jbuf_adds(&b, "\":");
        add_json(&b, field(h, json1[i]), &doc);
    }
    for (i = 0; i < 4; i++) {
        ragq_jbuf_adds(&b, ",\"");
        ragq_jbuf_adds(&b, ints[i]);
        ragq_jbuf_adds(&b, "\":");
        add_integer(&b, field(h, ints[i]));
    }
    ragq_jbuf_adds(&b, ",\"usage\":");
    add_json(&b, field(h, "usage"), &doc);
    ragq_jbuf_adds(&b, ",\"callback\":null}");
    ragq_jdoc_free(&doc);
    *len = b.len;
    out = ragq_jbuf_finish(&b);
    return out;
}

/* ---- reading the job -------------------------------------------------- */

static void
job_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_delivery_t  *d = priv;
    const redisReply *status;

    (void) owner;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        valkey_again(d, reply ? reply->str : "connection lost");
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s: callback not sent: the job is gone (expired or "
                 "deleted)",
                 d->id);
        delivery_done(d);
        return;
    }
    /* Another path called back already (its outcome is written), or this
     * end is not the one to call back for. */
    status = field(reply, "status");
    if (field(reply, "callback") != NULL ||
        (d->only && (status == NULL || strcmp(status->str, d->only) != 0))) {
        ragq_log(RAGQ_LOG_DEBUG, "job %s: callback not sent: %s", d->id,
                 d->only ? "not the end expected, or called back already"
                         : "called back already");
        delivery_done(d);
        return;
    }
    if (!d->cbs->have_key) {
        if (!d->cbs->warned_no_key) {
            ragq_log(RAGQ_LOG_WARN,
                     "job %s has a callback_url but RAGQ_WEBHOOK_SECRET is not "
                     "set: callbacks are recorded failed, not sent",
                     d->id);
            d->cbs->warned_no_key = 1;
        }
        record(d);
        return;
    }
    d->body = job_json(d->id, reply, &d->len);
    if (d->body == NULL) {
        valkey_again(d, "out of memory");
        return;
    }
    d->valkey_tries = 0;
    d->state = D_WAITING;
    pump(d->cbs);
}

static void
read_job(ragq_delivery_t *d)
{
    const char *argv[2] = {"HGETALL", d->key};

    d->state = D_READING;
    if (ragq_queue_send(d->cbs->q, job_reply, d, 2, argv, NULL) != 0) {
        valkey_again(d, "not connected");
    }
}

/* ---- posting ---------------------------------------------------------- */

static void post_done(const ragq_http_response_t *resp, void *data);

static void
post(ragq_delivery_t *d)
{
    ragq_callbacks_t *cbs = d->cbs;
    char              h_id[64], h_ts[64], h_sig[32 + RAGQ_WEBHOOK_SIG_LEN];
    char              msg_id[40], sig[RAGQ_WEBHOOK_SIG_LEN], *copy;
    const char       *headers[3] = {h_id, h_ts, h_sig};
    long long         ts = (long long) time(NULL);

    d->attempts++;
    snprintf(msg_id, sizeof(msg_id), "msg_%s", d->id);
    copy = malloc(d->len + 1);
    if (copy == NULL ||
        ragq_webhook_sign(&cbs->key, msg_id, ts, d->body, d->len, sig) != 0) {
        free(copy);
        d->code = 0;
        record(d);
        return;
    }
    memcpy(copy, d->body, d->len + 1);
    snprintf(h_id, sizeof(h_id), "webhook-id: %s", msg_id);
    snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", ts);
    snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", sig);
    d->state = D_POSTING;
    d->req = ragq_http_post_headers(cbs->http, d->url, headers, 3, copy, d->len,
                                    cbs->cfg->callback_timeout_ms,
                                    RAGQ_CALLBACK_MAX_ANSWER, post_done, d);
    if (d->req == NULL) {
        free(copy);
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: callback not sent: the request could not be set up",
                 d->id);
        d->code = 0;
        record(d);
        return;
    }
    cbs->posting++;
}

static void
try_again(void *data)
{
    ragq_delivery_t *d = data;

    if (d->state == D_BACKOFF) {
        d->state = D_WAITING;
        pump(d->cbs);
    } else if (d->state == D_READING) {
        read_job(d);
    } else if (d->state == D_RECORDING) {
        record(d);
    }
}

static void
post_done(const ragq_http_response_t *resp, void *data)
{
    ragq_delivery_t  *d = data;
    ragq_callbacks_t *cbs = d->cbs;
    long              status = resp->status, after = -1;
    int               retry;
    char              what[CURL_ERROR_SIZE_GUESS];
    uint64_t          delay;

    d->req = NULL;
    cbs->posting--;
    d->code = status;
    if (status >= 200 && status <= 299) {
        d->delivered = 1;
        record(d);
        pump(cbs);
        return;
    }
    /* 3xx is a failure: redirects are not followed (a receiver that moved
     * says so once, to a person, not to every job) */
    retry = status == 0 || status == 429 || status >= 500;
    if (status) {
        snprintf(what, sizeof(what), "HTTP %ld", status);
    } else {
        snprintf(what, sizeof(what), "%s", resp->error);
    }
    if (!retry || d->attempts >= cbs->cfg->callback_attempts) {
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: callback failed after %u attempt(s): %s", d->id,
                 d->attempts, what);
        record(d);
        pump(cbs);
        return;
    }
    if (resp->retry_after && *resp->retry_after >= '0' &&
        *resp->retry_after <= '9') {
        after = strtol(resp->retry_after, NULL, 10) * 1000;
    }
    delay = ragq_retry_delay_ms(after, (int) d->attempts);
    ragq_log(RAGQ_LOG_INFO, "job %s: callback attempt %u: %s; again in %llu ms",
             d->id, d->attempts, what, (unsigned long long) delay);
    d->state = D_BACKOFF;
    ragq_timer_start(cbs->loop, &d->timer, delay);
    pump(cbs);
}

/* Starts the POSTs waiting for a slot, oldest first. */
static void
pump(ragq_callbacks_t *cbs)
{
    ragq_delivery_t *d, *next;

    for (d = cbs->head; d && cbs->posting < cbs->cfg->callback_concurrency;
         d = next) {
        next = d->next;
        if (d->state == D_WAITING) {
            post(d);
        }
    }
}

/* ---- the outcome ------------------------------------------------------ */

static void
record_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_delivery_t *d = priv;

    (void) owner;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        valkey_again(d, reply ? reply->str : "connection lost");
        return;
    }
    if (d->delivered) {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s: callback delivered (attempt %u, HTTP %ld)", d->id,
                 d->attempts, d->code);
    }
    delivery_done(d);
}

static void
record(ragq_delivery_t *d)
{
    char        outcome[96], code[24];
    const char *argv[5];

    d->state = D_RECORDING;
    if (d->code > 0) {
        snprintf(code, sizeof(code), "%ld", d->code);
    } else {
        snprintf(code, sizeof(code), "null");
    }
    snprintf(outcome, sizeof(outcome),
             "{\"status\":\"%s\",\"attempts\":%u,\"code\":%s}",
             d->delivered ? "delivered" : "failed", d->attempts, code);
    argv[0] = "EVAL";
    argv[1] = record_script;
    argv[2] = "1";
    argv[3] = d->key;
    argv[4] = outcome;
    if (ragq_queue_send(d->cbs->q, record_reply, d, 5, argv, NULL) != 0) {
        valkey_again(d, "not connected");
    }
}

/* ---- the entry point -------------------------------------------------- */

void
ragq_callback_deliver(ragq_callbacks_t *cbs, const char *id, const char *url)
{
    ragq_callback_deliver_if(cbs, id, url, NULL);
}

void
ragq_callback_deliver_if(ragq_callbacks_t *cbs, const char *id, const char *url,
                         const char *status)
{
    ragq_delivery_t *d;
    size_t           plen;

    if (cbs == NULL || url == NULL || *url == '\0') {
        return;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return;
    }
    d->cbs = cbs;
    d->only = status; /* a literal of the caller's */
    snprintf(d->id, sizeof(d->id), "%s", id);
    plen = strlen(cbs->job_prefix);
    d->url = strdup(url);
    d->key = malloc(plen + sizeof(d->id));
    if (d->url == NULL || d->key == NULL) {
        free(d->url);
        free(d->key);
        free(d);
        return;
    }
    memcpy(d->key, cbs->job_prefix, plen);
    memcpy(d->key + plen, d->id, strlen(d->id) + 1);
    ragq_timer_init(&d->timer, try_again, d);
    d->prev = cbs->tail;
    if (cbs->tail) {
        cbs->tail->next = d;
    } else {
        cbs->head = d;
    }
    cbs->tail = d;
    cbs->n++;
    read_job(d);
}
