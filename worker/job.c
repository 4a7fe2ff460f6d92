/*
 * job.c: the per-job pipeline of job.h.  Every step starts from a loop
 * timer (never from inside the previous step's callback), so the local
 * backends, which finish synchronously, cannot recurse.  Retries follow
 * retry.h: up to RAGQ_CALL_TRIES tries per call, full jitter exponential
 * backoff or the upstream's Retry-After.
 */

#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heartbeat.h"
#include "jsonr.h"
#include "jsonw.h"
#include "openai.h"
#include "openai_stream.h"
#include "qdrant.h"
#include "retry.h"

enum { STAGE_EMBED, STAGE_RETRIEVE, STAGE_GENERATE, STAGE_DONE };

static const char *stage_api[] = {"embeddings", "qdrant", "chat"};

static void step(void *data);
static int  on_chat_data(const char *buf, size_t n, void *data);

int
ragq_pipeline_init(ragq_pipeline_t *p, ragq_loop_t *loop, ragq_http_t *http,
                   const ragq_config_t *cfg, char *err, size_t errlen)
{
    int oom = 0;

    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->http = http;
    p->cfg = cfg;
    p->embed_openai = strcmp(cfg->embedder, "openai") == 0;
    p->store_qdrant = strcmp(cfg->store, "qdrant") == 0;
    p->answer_openai = strcmp(cfg->answerer, "openai") == 0;
    p->max_answer[STAGE_EMBED] =
        cfg->max_answer_bytes ? cfg->max_answer_bytes : RAGQ_MAX_ANSWER_EMBED;
    p->max_answer[STAGE_RETRIEVE] =
        cfg->max_answer_bytes ? cfg->max_answer_bytes : RAGQ_MAX_ANSWER_QDRANT;
    p->max_answer[STAGE_GENERATE] =
        cfg->max_answer_bytes ? cfg->max_answer_bytes : RAGQ_MAX_ANSWER_CHAT;

    if (p->embed_openai) {
        p->embed_url = ragq_url_join(cfg->embed_base_url, "/embeddings");
        oom |= ragq_auth_header(RAGQ_OPENAI_AUTH_HEADER, cfg->embed_api_key,
                                &p->embed_auth);
    }
    if (p->answer_openai) {
        p->chat_url = ragq_url_join(cfg->chat_base_url, "/chat/completions");
        oom |= ragq_auth_header(RAGQ_OPENAI_AUTH_HEADER, cfg->chat_api_key,
                                &p->chat_auth);
    }
    if (p->store_qdrant) {
        oom |= ragq_auth_header(RAGQ_QDRANT_AUTH_HEADER, cfg->qdrant_api_key,
                                &p->qdrant_auth);
    } else {
        p->store = ragq_local_store_open(cfg->store_path, err, errlen);
        if (p->store == NULL) {
            ragq_pipeline_free(p); /* what was made before it */
            return -1;
        }
    }
    if (oom || (p->embed_openai && p->embed_url == NULL) ||
        (p->answer_openai && p->chat_url == NULL)) {
        snprintf(err, errlen, "out of memory");
        ragq_pipeline_free(p);
        return -1;
    }
    return 0;
}

void
ragq_pipeline_free(ragq_pipeline_t *p)
{
    free(p->embed_url);
    free(p->chat_url);
    free(p->embed_auth);
    free(p->chat_auth);
    free(p->qdrant_auth);
    if (p->store) {
        ragq_local_store_close(p->store);
    }
    memset(p, 0, sizeof(*p));
}

ragq_job_t *
ragq_job_new(void)
{
    ragq_job_t *job = calloc(1, sizeof(*job));

    if (job != NULL) {
        ragq_timer_init(&job->timer, step, job);
        ragq_timer_init(&job->write_timer, NULL, job);
    }
    return job;
}

static void
chat_stream_free(ragq_job_t *job)
{
    if (job->chat_stream) {
        ragq_chat_stream_free(job->chat_stream);
        free(job->chat_stream);
        job->chat_stream = NULL;
    }
}

void
ragq_job_abort(ragq_job_t *job)
{
    if (job->req) {
        ragq_http_cancel(job->req);
        job->req = NULL;
    }
    if (job->p) {
        ragq_timer_stop(job->p->loop, &job->timer);
    }
    job->running = 0;
}

void
ragq_job_free(ragq_job_t *job)
{
    if (job == NULL) {
        return;
    }
    ragq_job_abort(job);
    free(job->entry);
    free(job->key);
    free(job->query);
    free(job->collection);
    for (size_t i = 0; i < RAGQ_CARRIED_N; i++) {
        free(job->carried[i]);
    }
    free(job->callback_url);
    free(job->result);
    free(job->sources_json);
    free(job->usage_json);
    free(job->vector);
    free(job->chat_usage);
    chat_stream_free(job);
    ragq_sources_free(job->sources, job->nsources);
    free(job);
}

char *
ragq_job_error_json(const ragq_job_t *job)
{
    const char *code = job->err.code[0] ? job->err.code : "internal_error";
    ragq_jbuf_t b;

    ragq_jbuf_init(&b, 96 + strlen(job->err.message));
    ragq_jbuf_adds(&b, "{\"code\":");
    ragq_jbuf_string(&b, code, strlen(code));
    ragq_jbuf_adds(&b, ",\"message\":");
    ragq_jbuf_string(&b, job->err.message, strlen(job->err.message));
    ragq_jbuf_adds(&b, "}");
    return ragq_jbuf_finish(&b);
}

static void
finish(ragq_job_t *job, ragq_job_outcome_t outcome)
{
    job->outcome = outcome;
    job->running = 0;
    job->stage = STAGE_DONE;
    job->done(job, job->done_data);
}

static void
stage_done(ragq_job_t *job)
{
    long ms = (long) (ragq_now_ms() - job->stage_started);

    switch (job->stage) {
    case STAGE_EMBED:
        job->ms_embed = ms;
        break;
    case STAGE_RETRIEVE:
        job->ms_retrieve = ms;
        break;
    default:
        job->ms_generate = ms;
        break;
    }
    job->stage++;
    job->tries = 0;
    job->stage_started = ragq_now_ms();
    ragq_timer_start(job->p->loop, &job->timer, 0);
}

/* Parses chat usage objects (single-threaded, one at a time). */
static ragq_jdoc_t usage_doc = RAGQ_JDOC_INIT;

/* One member of the model's usage object, but a "backends" of its own. */
static int
usage_member(const ragq_jv_t *key, const ragq_jv_t *value, void *arg)
{
    ragq_jbuf_t *b = arg;
    char        *text;

    if (key->keylen == 8 && memcmp(key->key, "backends", 8) == 0) {
        return 0; /* ours wins */
    }
    if ((text = ragq_jv_to_json(value)) == NULL) {
        return -1;
    }
    ragq_jbuf_string(b, key->key, key->keylen);
    ragq_jbuf_add(b, ":", 1);
    ragq_jbuf_adds(b, text);
    ragq_jbuf_add(b, ",", 1);
    free(text);
    return 0;
}

/* The model's usage object (when it sent one) plus "backends". */
static char *
usage_with_backends(const ragq_job_t *job)
{
    const ragq_config_t *cfg = job->p->cfg;
    const ragq_jv_t     *o = NULL;
    ragq_jbuf_t          b;

    if (job->chat_usage) {
        o = ragq_jdoc_parse(&usage_doc, job->chat_usage,
                            strlen(job->chat_usage));
        if (o && o->type != RAGQ_JOBJ) {
            o = NULL;
        }
    }
    ragq_jbuf_init(&b, 256);
    ragq_jbuf_add(&b, "{", 1);
    if (o && ragq_jv_each_member(o, usage_member, &b) != 0) {
        free(ragq_jbuf_finish(&b));
        return NULL;
    }
    ragq_jbuf_adds(&b, "\"backends\":{\"embedder\":");
    ragq_jbuf_string(&b, cfg->embedder, strlen(cfg->embedder));
    ragq_jbuf_adds(&b, ",\"store\":");
    ragq_jbuf_string(&b, cfg->store, strlen(cfg->store));
    ragq_jbuf_adds(&b, ",\"answerer\":");
    ragq_jbuf_string(&b, cfg->answerer, strlen(cfg->answerer));
    ragq_jbuf_adds(&b, "}}");
    return ragq_jbuf_finish(&b);
}

static void
complete(ragq_job_t *job)
{
    job->sources_json =
        ragq_sources_to_json(job->sources, job->nsources, RAGQ_EXCERPT_MAX);
    job->usage_json = usage_with_backends(job);
    if (job->sources_json == NULL || job->usage_json == NULL ||
        job->result == NULL) {
        ragq_upstream_error_set(&job->err, 0, 0, "internal_error",
                                "out of memory while writing the result");
        finish(job, RAGQ_JOB_FAILED);
        return;
    }
    finish(job, RAGQ_JOB_FINISHED);
}

/*
 * The points Qdrant answered, as sources: those without text (no
 * page_content or text in their payload) cannot inform an answer and are
 * skipped; no more than top_k are kept (a server may send more than asked),
 * in the server's order, best first.  Points, but none with text, is a
 * collection this worker cannot read: -1 with a permanent error.
 */
static int
keep_sources(ragq_job_t *job)
{
    size_t i, kept = 0, n = job->nsources;

    for (i = 0; i < n; i++) {
        ragq_source_t *src = &job->sources[i];

        if (src->text[0] == '\0' || kept == job->top_k) {
            free(src->id);
            free(src->source);
            free(src->text);
            continue;
        }
        job->sources[kept++] = *src;
    }
    job->nsources = kept;
    if (kept == 0) {
        free(job->sources);
        job->sources = NULL;
    }
    if (kept == 0 && n > 0) {
        ragq_upstream_error_set(&job->err, 0, 0, "unsupported_payload",
                                "Qdrant returned %zu points but none has text "
                                "in its payload (page_content, as LangChain "
                                "writes it, or text)",
                                n);
        return -1;
    }
    return 0;
}

/* The error message, after the stage's name unless it begins with it. */
static const char *
stage_error(const ragq_job_t *job, const char **sep)
{
    const char *api = stage_api[job->stage];
    size_t      n = strlen(api);

    if (strncmp(job->err.message, api, n) == 0 && job->err.message[n] == ':') {
        *sep = "";
        return "";
    }
    *sep = ": ";
    return api;
}

/*
 * After a failed try: wait and try again, or give up.  An answer that
 * arrived but could not be parsed is retried too (proxies truncate), but
 * when that keeps happening the job fails now: the server is up and
 * answering nonsense, so another attempt later will not help.
 */
static void
retry_or_give_up(ragq_job_t *job, int parse_error)
{
    uint64_t    delay;
    const char *api, *sep;

    /* counted, and no key or question echoed by the upstream kept */
    ragq_count_call_error(job->stage);
    ragq_redact(job->err.message, job->query, "[query]");

    if (!job->err.retryable && !parse_error) {
        finish(job, RAGQ_JOB_FAILED);
        return;
    }
    if (++job->tries >= RAGQ_CALL_TRIES) {
        api = stage_error(job, &sep);
        ragq_log(RAGQ_LOG_WARN, "job %s: %s%sgiving up after %d tries: %s",
                 job->id, api, sep, job->tries, job->err.message);
        finish(job, parse_error ? RAGQ_JOB_FAILED : RAGQ_JOB_EXHAUSTED);
        return;
    }
    delay = ragq_retry_delay_ms(job->err.retry_after_ms, job->tries);
    api = stage_error(job, &sep);
    ragq_log(RAGQ_LOG_INFO, "job %s: %s%s%s; retry %d in %llu ms", job->id, api,
             sep, job->err.message, job->tries, (unsigned long long) delay);
    ragq_timer_start(job->p->loop, &job->timer, delay);
}

static void
on_http(const ragq_http_response_t *resp, void *data)
{
    ragq_job_t *job = data;
    const char *api = stage_api[job->stage];
    int         rc = -1;

    job->req = NULL;
    ragq_count_call(job->stage);
    if (job->chat_stream && !resp->too_large &&
        ((ragq_chat_stream_t *) job->chat_stream)->failed) {
        /* The streamed answer broke (an error event, not JSON): retried
         * like an answer that does not parse. */
        job->err = ((ragq_chat_stream_t *) job->chat_stream)->err;
        chat_stream_free(job);
        retry_or_give_up(job, 1);
        return;
    }
    if (resp->too_large) {
        /* Not a glitch: the same question gets the same answer again. */
        ragq_upstream_error_set(&job->err, 0, 0, "upstream_answer_too_large",
                                "%s: the answer is larger than %zu bytes "
                                "(RAGQ_MAX_ANSWER_BYTES); not retried",
                                api, job->p->max_answer[job->stage]);
        finish(job, RAGQ_JOB_FAILED);
        return;
    }
    if (resp->status == 0) {
        ragq_upstream_error_set(&job->err, 0, 1,
                                resp->timed_out ? "upstream_timeout"
                                                : "upstream_unreachable",
                                "%s: %s", api, resp->error);
        retry_or_give_up(job, 0);
        return;
    }
    if (resp->status < 200 || resp->status > 299) {
        ragq_upstream_error_from_http(&job->err, api, resp->status,
                                      resp->retry_after, resp->retry_after_ms,
                                      resp->body, resp->len);
        retry_or_give_up(job, 0);
        return;
    }

    memset(&job->err, 0, sizeof(job->err));
    job->err.retry_after_ms = -1;
    switch (job->stage) {
    case STAGE_EMBED:
        free(job->vector);
        job->vector = NULL;
        rc = ragq_openai_embeddings_parse(resp->body, resp->len, 1,
                                          &job->vector, &job->dim, &job->err);
        break;
    case STAGE_RETRIEVE:
        ragq_sources_free(job->sources, job->nsources);
        job->sources = NULL;
        job->nsources = 0;
        rc = ragq_qdrant_query_parse(resp->body, resp->len, &job->sources,
                                     &job->nsources, &job->err);
        if (rc == 0 && keep_sources(job) != 0) {
            finish(job, RAGQ_JOB_FAILED);
            return;
        }
        break;
    case STAGE_GENERATE:
        free(job->result);
        free(job->chat_usage);
        job->result = job->chat_usage = NULL;
        if (job->chat_stream) {
            ragq_chat_stream_t *cs = job->chat_stream;

            rc = ragq_chat_stream_end(cs, &job->result, &job->chat_usage);
            if (rc != 0) {
                job->err = cs->err;
            }
            chat_stream_free(job);
            break;
        }
        rc = ragq_openai_chat_parse(resp->body, resp->len, &job->result,
                                    &job->chat_usage, &job->err);
        break;
    }
    if (rc != 0) {
        job->err.retry_after_ms = -1;
        retry_or_give_up(job, 1);
        return;
    }
    if (job->stage == STAGE_GENERATE) {
        job->ms_generate = (long) (ragq_now_ms() - job->stage_started);
        complete(job);
        return;
    }
    stage_done(job);
}

static void
post_json(ragq_job_t *job, const char *url, const char *auth, char *body)
{
    if (body == NULL) {
        ragq_upstream_error_set(&job->err, 0, 0, "internal_error",
                                "out of memory building the %s request",
                                stage_api[job->stage]);
        finish(job, RAGQ_JOB_FAILED);
        return;
    }
    job->req =
        ragq_http_post_take(job->p->http, url, auth, body, strlen(body),
                            job->p->cfg->http_timeout_ms,
                            job->p->max_answer[job->stage], on_http, job);
    if (job->req != NULL && job->chat_stream != NULL) {
        ragq_http_stream(job->req, on_chat_data);
    }
    if (job->req == NULL) {
        free(body);
        ragq_upstream_error_set(&job->err, 0, 1, "internal_error",
                                "cannot start the %s request",
                                stage_api[job->stage]);
        retry_or_give_up(job, 0);
    }
}

static const char *
job_collection(const ragq_job_t *job)
{
    return job->collection && job->collection[0] ? job->collection
                                                 : job->p->cfg->collection;
}

static void
do_embed(ragq_job_t *job)
{
    ragq_pipeline_t *p = job->p;
    const char      *in[1];

    if (!p->embed_openai) {
        job->dim = ragq_hash_embed_dim();
        free(job->vector);
        job->vector = malloc(job->dim * sizeof(float));
        if (job->vector == NULL) {
            ragq_upstream_error_set(&job->err, 0, 0, "internal_error",
                                    "out of memory");
            finish(job, RAGQ_JOB_FAILED);
            return;
        }
        ragq_hash_embed(job->query, strlen(job->query), job->vector);
        stage_done(job);
        return;
    }
    in[0] = job->query;
    post_json(job, p->embed_url, p->embed_auth,
              ragq_openai_embeddings_body(p->cfg->embed_model, in, 1));
}

static void
do_retrieve(ragq_job_t *job)
{
    ragq_pipeline_t *p = job->p;
    char            *path, *url;

    if (!p->store_qdrant) {
        ragq_sources_free(job->sources, job->nsources);
        job->sources = NULL;
        job->nsources = 0;
        if (ragq_local_store_query(p->store, job_collection(job), job->vector,
                                   job->dim, job->top_k, &job->sources,
                                   &job->nsources, &job->err) != 0) {
            finish(job, RAGQ_JOB_FAILED);
            return;
        }
        stage_done(job);
        return;
    }
    path = ragq_qdrant_path(job_collection(job), "/points/query");
    url = path ? ragq_url_join(p->cfg->qdrant_url, path) : NULL;
    free(path);
    if (url == NULL) {
        post_json(job, "", NULL, NULL);
        return;
    }
    post_json(job, url, p->qdrant_auth,
              ragq_qdrant_query_body(job->vector, job->dim, job->top_k));
    free(url);
}

static void
on_chat_piece(const char *text, size_t len, void *data)
{
    ragq_job_t *job = data;

    job->on_piece(job, text, len, RAGQ_PIECE_MERGE);
}

static int
on_chat_data(const char *buf, size_t n, void *data)
{
    ragq_job_t         *job = data;
    ragq_chat_stream_t *cs = job->chat_stream;

    if (ragq_chat_stream_feed(cs, buf, n) != 0) {
        return -1;
    }
    /* "[DONE]" ends the stream, whether or not the server ends its body
     * (some hold it open): the request completes now. */
    return cs->done ? RAGQ_HTTP_DATA_END : 0;
}

/* The extractive answer, sentence by sentence (a sentence ends after .!?
 * or a line break, with the white space that follows). */
static void
stream_sentences(ragq_job_t *job, const char *t)
{
    size_t i = 0, start = 0, n = strlen(t);

    job->on_piece(job, NULL, 0, RAGQ_PIECE_NEW_TRY);
    while (i < n) {
        int end = t[i] == '\n' ||
                  ((t[i] == '.' || t[i] == '!' || t[i] == '?') &&
                   (i + 1 == n || t[i + 1] == ' ' || t[i + 1] == '\n'));

        i++;
        if (end) {
            while (i < n && (t[i] == ' ' || t[i] == '\n')) {
                i++;
            }
            job->on_piece(job, t + start, i - start, RAGQ_PIECE_SPLIT);
            start = i;
        }
    }
    if (start < n) {
        job->on_piece(job, t + start, n - start, RAGQ_PIECE_SPLIT);
    }
}

static void
do_generate(ragq_job_t *job)
{
    ragq_pipeline_t *p = job->p;
    char            *body;

    if (!p->answer_openai) {
        free(job->result);
        job->result =
            ragq_extractive_answer(job->query, job->sources, job->nsources);
        if (job->result && job->on_piece) {
            stream_sentences(job, job->result);
        }
        job->ms_generate = (long) (ragq_now_ms() - job->stage_started);
        complete(job);
        return;
    }
    if (job->on_piece == NULL) {
        post_json(job, p->chat_url, p->chat_auth,
                  ragq_openai_chat_body(p->cfg->chat_model, job->query,
                                        job->sources, job->nsources,
                                        p->cfg->max_tokens));
        return;
    }
    /* Streamed: each try starts a new text (queue_out.c writes a reset). */
    chat_stream_free(job);
    job->chat_stream = malloc(sizeof(ragq_chat_stream_t));
    body = job->chat_stream
               ? ragq_openai_chat_stream_body(p->cfg->chat_model, job->query,
                                              job->sources, job->nsources,
                                              p->cfg->max_tokens)
               : NULL;
    if (body == NULL) {
        post_json(job, "", NULL, NULL);
        return;
    }
    ragq_chat_stream_init(job->chat_stream, on_chat_piece, job);
    job->on_piece(job, NULL, 0, RAGQ_PIECE_NEW_TRY);
    post_json(job, p->chat_url, p->chat_auth, body); /* may free job */
}

static void
step(void *data)
{
    ragq_job_t *job = data;

    switch (job->stage) {
    case STAGE_EMBED:
        do_embed(job);
        break;
    case STAGE_RETRIEVE:
        do_retrieve(job);
        break;
    case STAGE_GENERATE:
        do_generate(job);
        break;
    }
}

void
ragq_job_run(ragq_pipeline_t *p, ragq_job_t *job, ragq_job_done_cb done,
             void *data)
{
    job->p = p;
    job->done = done;
    job->done_data = data;
    job->stage = STAGE_EMBED;
    job->tries = 0;
    job->running = 1;
    job->stage_started = ragq_now_ms();
    if (job->top_k == 0) {
        job->top_k = p->cfg->top_k;
    }
    ragq_timer_start(p->loop, &job->timer, 0);
}
