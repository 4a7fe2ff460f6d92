/*
 * ingest_pipeline.c: ragq-ingest's pipeline (ingest.h): chunks gathered in
 * batches of RAGQ_BATCH_SIZE, each batch embedded (an OpenAI-compatible
 * /embeddings server or the hashed embedder) and stored: upserted into
 * Qdrant (the collection checked or created first, ?wait=true), or kept
 * for the local store, which is written once at the end.  Re-ingested
 * documents lose the chunks past their new count (and points LangChain
 * wrote for them, which have no chunk number).  Blocking HTTP (libcurl
 * easy handles: this is a command-line tool), retried as retry.h says.
 */

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ingest.h"
#include "local.h"
#include "openai.h"
#include "pointid.h"
#include "qdrant.h"
#include "retry.h"
#include "upstream.h"

/*
 * The largest answer read: Qdrant's answers to ragq-ingest are small; an
 * embeddings answer grows with the batch (a vector of 8192 floats in JSON
 * is under 256 KiB).  Past it, the call stops and is not retried, so a
 * server (or proxy) that sends without end cannot exhaust the memory.
 */
#define ANSWER_MAX_QDRANT   (16ul << 20)
#define ANSWER_MAX_EMBED(n) ((4ul << 20) + (size_t) (n) * (256ul << 10))

typedef struct {
    ragq_ingest_buf_t body;
    char              retry_after[64];
    char              retry_after_ms[64];
    size_t            max;       /* the answer's cap */
    int               too_large; /* the answer was larger: not read */
} reply_t;

static size_t
on_body(char *p, size_t size, size_t nmemb, void *data)
{
    reply_t *r = data;

    if (size * nmemb > r->max - r->body.len) {
        r->too_large = 1;
        return 0; /* libcurl stops the transfer: CURLE_WRITE_ERROR */
    }
    ragq_ingest_buf_add(&r->body, p, size * nmemb);
    return size * nmemb;
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *data)
{
    reply_t *r = data;
    size_t   len = size * nmemb;
    char     line[256];

    if (len < sizeof(line)) {
        char *v;
        memcpy(line, p, len);
        line[len] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        v = strchr(line, ':');
        if (v != NULL) {
            *v++ = '\0';
            while (*v == ' ') {
                v++;
            }
            if (strcasecmp(line, "retry-after") == 0) {
                snprintf(r->retry_after, sizeof(r->retry_after), "%s", v);
            } else if (strcasecmp(line, "retry-after-ms") == 0) {
                snprintf(r->retry_after_ms, sizeof(r->retry_after_ms), "%s", v);
            }
        }
    }
    return len;
}

/*
 * One HTTP call with retries on network errors, 408/409/429/5xx (honouring
 * Retry-After).  Returns the final status (0: no answer) with the body in
 * r; err is filled for anything but 2xx.  404 is returned, not retried, and
 * so is the status answer_now when it is not 0 (a 409 that means "already
 * there" is an answer, not a conflict that waiting resolves).  An answer
 * larger than max_answer bytes ends the call at once (status 0, not
 * retried: the same request gets the same answer).
 */
static long
http_call(const ragq_config_t *cfg, const char *method, const char *url,
          const char *auth, const char *body, const char *api, reply_t *r,
          ragq_upstream_error_t *err, long answer_now, size_t max_answer)
{
    int  attempt;
    long status = 0;

    for (attempt = 1; attempt <= RAGQ_CALL_TRIES; attempt++) {
        CURL              *c = curl_easy_init();
        struct curl_slist *h = NULL;
        CURLcode           rc;
        char               cerr[CURL_ERROR_SIZE] = "";
        long               delay;

        if (c == NULL) {
            ragq_ingest_die("out of memory");
        }
        free(r->body.data);
        memset(r, 0, sizeof(*r));
        r->max = max_answer;
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Accept: application/json");
        if (auth != NULL) {
            h = curl_slist_append(h, auth);
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) strlen(body));
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg->http_timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "ragq-ingest");
        rc = curl_easy_perform(c);
        status = 0;
        if (rc == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        }
        curl_slist_free_all(h);
        curl_easy_cleanup(c);

        if (rc == CURLE_WRITE_ERROR && r->too_large) {
            ragq_upstream_error_set(err, 0, 0, "upstream_answer_too_large",
                                    "%s %s: the answer is larger than %zu "
                                    "bytes; not retried",
                                    method, url, max_answer);
            return 0;
        }
        if (rc != CURLE_OK) {
            ragq_upstream_error_set(err, 0, 1, "upstream_unreachable",
                                    "%s %s: %s", method, url,
                                    cerr[0] ? cerr : curl_easy_strerror(rc));
        } else if (status >= 200 && status < 300) {
            return status;
        } else {
            ragq_upstream_error_from_http(
                err, api, status, r->retry_after[0] ? r->retry_after : NULL,
                r->retry_after_ms[0] ? r->retry_after_ms : NULL, r->body.data,
                r->body.len);
            if (status == 404 || status == answer_now || !err->retryable) {
                return status;
            }
        }
        if (attempt == RAGQ_CALL_TRIES) {
            break;
        }
        delay = (long) ragq_retry_delay_ms(err->retry_after_ms, attempt);
        ragq_ingest_warn("%s %s failed (%s), retrying in %.1f s", method, url,
                         err->message, (double) delay / 1000.0);
        usleep((useconds_t) delay * 1000);
    }
    return status;
}

typedef struct {
    char    *ids[2048];
    char    *texts[2048];
    char    *sources[2048];
    unsigned chunks[2048];
    size_t   n;
} batch_t;

struct ragq_ingest_s {
    const ragq_config_t *cfg;
    char                *embed_url, *embed_auth, *qdrant_auth;
    size_t               dim;        /* 0 until the first vectors come back */
    int                  coll_ready; /* qdrant: collection checked / created */
    size_t               stored;     /* points written */
    batch_t              batch;
    /* local store: all points, written in one go at the end */
    ragq_point_t *points;
    float        *vectors;
    size_t        npoints, cap;
};

static float *
embed(ragq_ingest_t *s, batch_t *b)
{
    const ragq_config_t  *cfg = s->cfg;
    float                *v;
    size_t                dim, i;
    ragq_upstream_error_t err;

    if (strcmp(cfg->embedder, "hash") == 0) {
        dim = ragq_hash_embed_dim();
        v = malloc(b->n * dim * sizeof(float));
        if (v == NULL) {
            ragq_ingest_die("out of memory");
        }
        for (i = 0; i < b->n; i++) {
            ragq_hash_embed(b->texts[i], strlen(b->texts[i]), v + i * dim);
        }
    } else {
        reply_t r;
        char   *body;
        long    status;

        memset(&r, 0, sizeof(r));
        body = ragq_openai_embeddings_body(
            cfg->embed_model, (const char *const *) b->texts, b->n);
        if (body == NULL) {
            ragq_ingest_die("out of memory");
        }
        status = http_call(cfg, "POST", s->embed_url, s->embed_auth, body,
                           "embeddings", &r, &err, 0, ANSWER_MAX_EMBED(b->n));
        free(body);
        if (status < 200 || status >= 300) {
            ragq_ingest_die("embedding with model '%s' at %s failed: %s",
                            cfg->embed_model, s->embed_url, err.message);
        }
        if (ragq_openai_embeddings_parse(r.body.data, r.body.len, b->n, &v,
                                         &dim, &err) != 0) {
            ragq_ingest_die(
                "the embeddings server at %s gave an answer ragq cannot use: "
                "%s",
                s->embed_url, err.message);
        }
        free(r.body.data);
    }
    if (s->dim != 0 && dim != s->dim) {
        ragq_ingest_die(
            "the embedder returned vectors of size %zu after vectors of size "
            "%zu",
            dim, s->dim);
    }
    s->dim = dim;
    return v;
}

static char *
qdrant_url(const ragq_config_t *cfg, const char *suffix)
{
    char *path = ragq_qdrant_path(cfg->collection, suffix), *url;

    if (path == NULL || (url = ragq_url_join(cfg->qdrant_url, path)) == NULL) {
        ragq_ingest_die("out of memory");
    }
    free(path);
    return url;
}

/*
 * Reads the collection's vector size and checks it against the embedder's.
 * Returns the status of the GET (404: there is no such collection).
 */
static long
qdrant_check(ragq_ingest_t *s, const char *url)
{
    const ragq_config_t  *cfg = s->cfg;
    ragq_upstream_error_t err;
    reply_t               r;
    long                  status;
    size_t                dim;

    memset(&r, 0, sizeof(r));
    status = http_call(cfg, "GET", url, s->qdrant_auth, NULL, "qdrant", &r,
                       &err, 0, ANSWER_MAX_QDRANT);
    if (status >= 200 && status < 300) {
        if (ragq_qdrant_collection_dim_parse(r.body.data, r.body.len, &dim,
                                             &err) != 0) {
            ragq_ingest_die("cannot use collection '%s' at %s: %s",
                            cfg->collection, cfg->qdrant_url, err.message);
        }
        if (s->dim != 0 && dim != s->dim) { /* 0: nothing embedded */
            ragq_ingest_die(
                "collection '%s' at %s holds vectors of size %zu, but "
                "embedder %s%s%s makes vectors of size %zu; ingest into "
                "another collection (--collection) or use the embedder the "
                "collection was built with",
                cfg->collection, cfg->qdrant_url, dim, cfg->embedder,
                strcmp(cfg->embedder, "hash") ? " " : "",
                strcmp(cfg->embedder, "hash") ? cfg->embed_model : "", s->dim);
        }
    } else if (status != 404) {
        ragq_ingest_die("cannot read collection '%s' at %s: %s",
                        cfg->collection, cfg->qdrant_url, err.message);
    }
    free(r.body.data);
    return status;
}

/*
 * Checks the collection's vector size, or creates it.  Another ingest may
 * create it between our GET and our PUT: Qdrant then answers 409 (400
 * before 1.8) "already exists", and the collection it made is checked
 * like one that was there.  A 2xx answer to the PUT must be Qdrant's
 * {"result":true,...}.
 */
static void
qdrant_prepare(ragq_ingest_t *s)
{
    const ragq_config_t  *cfg = s->cfg;
    ragq_upstream_error_t err;
    reply_t               r;
    char                 *url = qdrant_url(cfg, NULL), *body;
    long                  status;

    if (qdrant_check(s, url) == 404) {
        memset(&r, 0, sizeof(r));
        body = ragq_qdrant_create_collection_body(s->dim);
        status = http_call(cfg, "PUT", url, s->qdrant_auth, body, "qdrant", &r,
                           &err, 409, ANSWER_MAX_QDRANT);
        free(body);
        if ((status == 409 || status == 400) &&
            strcasestr(err.message, "already exists") != NULL) {
            ragq_ingest_note("collection '%s' was created meanwhile by "
                             "someone else; using it",
                             cfg->collection);
            if (qdrant_check(s, url) == 404) {
                ragq_ingest_die("collection '%s' at %s was reported to exist, "
                                "then not found",
                                cfg->collection, cfg->qdrant_url);
            }
        } else if (status < 200 || status >= 300) {
            ragq_ingest_die("cannot create collection '%s' at %s: %s",
                            cfg->collection, cfg->qdrant_url, err.message);
        } else if (ragq_qdrant_create_parse(r.body.data, r.body.len, &err) !=
                   0) {
            /* a 2xx is not enough: a proxy's page, or "result": false */
            ragq_ingest_die("cannot create collection '%s': PUT %s answered "
                            "%ld, but the answer cannot be used: %s",
                            cfg->collection, url, status, err.message);
        } else {
            ragq_ingest_note(
                "created collection '%s' (vectors of size %zu, cosine)",
                cfg->collection, s->dim);
        }
        free(r.body.data);
    }
    free(url);
    s->coll_ready = 1;
}

static void
store(ragq_ingest_t *s, batch_t *b, float *v)
{
    const ragq_config_t *cfg = s->cfg;
    ragq_point_t         pts[2048];
    size_t               i;

    for (i = 0; i < b->n; i++) {
        pts[i].id = b->ids[i];
        pts[i].vector = v + i * s->dim;
        pts[i].source = b->sources[i];
        pts[i].text = b->texts[i];
        pts[i].chunk = b->chunks[i];
    }
    if (strcmp(cfg->store, "qdrant") == 0) {
        ragq_upstream_error_t err;
        reply_t               r;
        char                 *url, *body;
        long                  status;

        if (!s->coll_ready) {
            qdrant_prepare(s);
        }
        memset(&r, 0, sizeof(r));
        url = qdrant_url(cfg, "/points?wait=true");
        body = ragq_qdrant_upsert_body(pts, b->n, s->dim);
        if (body == NULL) {
            ragq_ingest_die("out of memory");
        }
        status = http_call(cfg, "PUT", url, s->qdrant_auth, body, "qdrant", &r,
                           &err, 0, ANSWER_MAX_QDRANT);
        if (status < 200 || status >= 300) {
            ragq_ingest_die(
                "writing %zu points to collection '%s' at %s failed: %s", b->n,
                cfg->collection, cfg->qdrant_url, err.message);
        }
        /* a 2xx is not enough: a proxy's page, or an update not applied */
        if (ragq_qdrant_update_parse(r.body.data, r.body.len, "upsert", &err) !=
            0) {
            ragq_ingest_die("writing %zu points to collection '%s' at %s "
                            "failed: the answer cannot be used: %s",
                            b->n, cfg->collection, cfg->qdrant_url,
                            err.message);
        }
        free(body);
        free(url);
        free(r.body.data);
        free(v);
    } else {
        /* keep copies; the local file is rewritten once, at the end */
        if (s->npoints + b->n > s->cap) {
            while (s->npoints + b->n > s->cap) {
                s->cap = s->cap ? s->cap * 2 : 1024;
            }
            s->points = realloc(s->points, s->cap * sizeof(ragq_point_t));
            s->vectors = realloc(s->vectors, s->cap * s->dim * sizeof(float));
            if (s->points == NULL || s->vectors == NULL) {
                ragq_ingest_die("out of memory");
            }
        }
        memcpy(s->vectors + s->npoints * s->dim, v,
               b->n * s->dim * sizeof(float));
        for (i = 0; i < b->n; i++) {
            pts[i].id = strdup(b->ids[i]);
            pts[i].source = strdup(b->sources[i]);
            pts[i].text = strdup(b->texts[i]);
            if (!pts[i].id || !pts[i].source || !pts[i].text) {
                ragq_ingest_die("out of memory");
            }
            s->points[s->npoints + i] = pts[i];
        }
        s->npoints += b->n;
        free(v);
    }
    s->stored += b->n;
}

static void
flush(ragq_ingest_t *s, batch_t *b)
{
    size_t i;

    if (b->n == 0) {
        return;
    }
    store(s, b, embed(s, b));
    for (i = 0; i < b->n; i++) {
        free(b->ids[i]);
        free(b->texts[i]);
        free(b->sources[i]);
    }
    b->n = 0;
}

/*
 * POSTs to the collection's path the filter "points of the documents
 * sources[0..n), from chunk from_chunk[i] on, and those without a chunk
 * number (LangChain's)" (points/delete and points/count read the same
 * body); dies, saying what it was doing, on
 * anything but a 2xx.  The answer is left in r for the caller to read and
 * free.
 */
static void
qdrant_filter_post(ragq_ingest_t *s, const char *path, char **sources,
                   const size_t *from_chunk, size_t n, const char *doing,
                   reply_t *r)
{
    const ragq_config_t  *cfg = s->cfg;
    ragq_upstream_error_t err;
    char                 *url, *body;
    long                  status;

    body = ragq_qdrant_delete_chunks_body(sources, from_chunk, n);
    if (body == NULL) {
        ragq_ingest_die("out of memory");
    }
    memset(r, 0, sizeof(*r));
    url = qdrant_url(cfg, path);
    status = http_call(cfg, "POST", url, s->qdrant_auth, body, "qdrant", r,
                       &err, 0, ANSWER_MAX_QDRANT);
    free(body);
    free(url);
    if (status < 200 || status >= 300) {
        ragq_ingest_die("%s collection '%s' at %s failed: %s", doing,
                        cfg->collection, cfg->qdrant_url, err.message);
    }
}

/*
 * Deletes the chunks a document had past its new chunk count (it was
 * longer when it was last ingested), and the points of the same source
 * that have no metadata.chunk (written by LangChain's own ingestion before
 * the collection was migrated to ragq-ingest: its ids are not ours, so the
 * upsert never replaced them), 64 documents per request.
 */
static void
qdrant_prune(ragq_ingest_t *s, char **sources, const size_t *nchunks,
             size_t ndocs)
{
    static const char    *doing = "removing old chunks from";
    ragq_upstream_error_t err;
    reply_t               r;
    size_t                n, from;

    for (from = 0; from < ndocs; from += 64) {
        n = ndocs - from < 64 ? ndocs - from : 64;
        qdrant_filter_post(s, "/points/delete?wait=true", sources + from,
                           nchunks + from, n, doing, &r);
        if (ragq_qdrant_update_parse(r.body.data, r.body.len, "delete", &err) !=
            0) {
            ragq_ingest_die("%s collection '%s' at %s failed: the answer "
                            "cannot be used: %s",
                            doing, s->cfg->collection, s->cfg->qdrant_url,
                            err.message);
        }
        free(r.body.data);
    }
}

/* How many points the documents sources[0..ndocs) have, 64 per request. */
static size_t
qdrant_count(ragq_ingest_t *s, char **sources, const size_t *zeros,
             size_t ndocs)
{
    static const char    *doing = "counting old chunks in";
    ragq_upstream_error_t err;
    reply_t               r;
    size_t                n, from, total = 0, count;

    for (from = 0; from < ndocs; from += 64) {
        n = ndocs - from < 64 ? ndocs - from : 64;
        /* the filter of chunks from 0 on: all of their points, LangChain's
         * too */
        qdrant_filter_post(s, "/points/count", sources + from, zeros, n, doing,
                           &r);
        if (ragq_qdrant_count_parse(r.body.data, r.body.len, &count, &err) !=
            0) {
            ragq_ingest_die("%s collection '%s' at %s failed: %s", doing,
                            s->cfg->collection, s->cfg->qdrant_url,
                            err.message);
        }
        total += count;
        free(r.body.data);
    }
    return total;
}

size_t
ragq_ingest_remove(ragq_ingest_t *s, char **sources, size_t ndocs)
{
    const ragq_config_t *cfg = s->cfg;
    size_t              *zeros, removed = 0;
    char                 err[1024], *url;

    if (strcmp(cfg->store, "local") == 0) {
        if (ragq_local_store_remove_documents(cfg->store_path, cfg->collection,
                                              sources, ndocs, &removed, err,
                                              sizeof(err)) != 0) {
            ragq_ingest_die("%s", err);
        }
        return removed;
    }
    zeros = calloc(ndocs + 1, sizeof(size_t));
    if (zeros == NULL) {
        ragq_ingest_die("out of memory");
    }
    url = qdrant_url(cfg, NULL);
    /* s->dim is 0 (nothing was embedded): the size is not compared */
    if (qdrant_check(s, url) != 404) {
        removed = qdrant_count(s, sources, zeros, ndocs);
        if (removed > 0) {
            qdrant_prune(s, sources, zeros, ndocs);
        }
    }
    free(url);
    free(zeros);
    return removed;
}

ragq_ingest_t *
ragq_ingest_new(const ragq_config_t *cfg)
{
    ragq_ingest_t *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        ragq_ingest_die("out of memory");
    }
    s->cfg = cfg;
    if (strcmp(cfg->embedder, "openai") == 0) {
        s->embed_url = ragq_url_join(cfg->embed_base_url, "/embeddings");
        if (s->embed_url == NULL ||
            ragq_auth_header(RAGQ_OPENAI_AUTH_HEADER, cfg->embed_api_key,
                             &s->embed_auth) != 0) {
            ragq_ingest_die("out of memory");
        }
    }
    if (strcmp(cfg->store, "qdrant") == 0 &&
        ragq_auth_header(RAGQ_QDRANT_AUTH_HEADER, cfg->qdrant_api_key,
                         &s->qdrant_auth) != 0) {
        ragq_ingest_die("out of memory");
    }
    return s;
}

void
ragq_ingest_add(ragq_ingest_t *s, const char *source, ragq_chunk_t *c, size_t n)
{
    batch_t *b = &s->batch;
    size_t   i;

    for (i = 0; i < n; i++) {
        char id[37];

        ragq_point_id(source, c[i].index, id);
        b->ids[b->n] = strdup(id);
        b->sources[b->n] = strdup(source);
        b->texts[b->n] = c[i].text; /* the batch owns it now */
        b->chunks[b->n] = c[i].index;
        c[i].text = NULL;
        if (!b->ids[b->n] || !b->sources[b->n]) {
            ragq_ingest_die("out of memory");
        }
        b->n++;
        if (b->n == s->cfg->batch_size) {
            flush(s, b);
        }
    }
}

void
ragq_ingest_finish(ragq_ingest_t *s, char **sources, const size_t *nchunks,
                   size_t ndocs)
{
    char   err[1024];
    size_t i;

    flush(s, &s->batch);
    if (s->coll_ready) {
        qdrant_prune(s, sources, nchunks, ndocs);
    }
    if (strcmp(s->cfg->store, "local") == 0) {
        /* vectors were appended to a growing array: point into it now */
        for (i = 0; i < s->npoints; i++) {
            s->points[i].vector = s->vectors + i * s->dim;
        }
        /* every document read is replaced, the empty ones included */
        if (ragq_local_store_replace_documents(
                s->cfg->store_path, s->cfg->collection, sources, ndocs,
                s->points, s->npoints, s->dim, err, sizeof(err)) != 0) {
            ragq_ingest_die("%s", err);
        }
    }
}

size_t
ragq_ingest_stored(const ragq_ingest_t *s)
{
    return s->stored;
}

size_t
ragq_ingest_dim(const ragq_ingest_t *s)
{
    return s->dim;
}

void
ragq_ingest_free(ragq_ingest_t *s)
{
    size_t i;

    for (i = 0; i < s->npoints; i++) {
        free((char *) s->points[i].id);
        free((char *) s->points[i].source);
        free((char *) s->points[i].text);
    }
    free(s->points);
    free(s->vectors);
    free(s->embed_url);
    free(s->embed_auth);
    free(s->qdrant_auth);
    free(s);
}
