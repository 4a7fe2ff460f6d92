/*
 * qdrant.c: request bodies, paths and answer parsing for Qdrant's REST API
 * (collection create/info, upsert, points/query and legacy points/search
 * answers), with LangChain's payload shape.  Pure functions: no I/O.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "jsonr.h"
#include "jsonw.h"
#include "qdrant.h"
#include "utf8.h"

#define BAD "bad_upstream_response"

/* Qdrant's 32 MiB default request limit is far above what %.7g floats of a
 * few thousand dimensions need; 16 bytes a float is a generous estimate. */
#define FLOAT_BYTES 16

char *
ragq_qdrant_path(const char *collection, const char *suffix)
{
    ragq_jbuf_t b;
    char       *esc;

    esc = ragq_url_escape_segment(collection);
    if (esc == NULL) {
        return NULL;
    }
    ragq_jbuf_init(&b, 16 + strlen(esc) + (suffix ? strlen(suffix) : 0));
    ragq_jbuf_adds(&b, "/collections/");
    ragq_jbuf_adds(&b, esc);
    if (suffix != NULL) {
        ragq_jbuf_adds(&b, suffix);
    }
    free(esc);
    return ragq_jbuf_finish(&b);
}

/* Appends [v0,v1,...]; -1 on a NaN or infinity, which JSON cannot carry and
 * Qdrant would reject anyway. */
static int
add_vector(ragq_jbuf_t *b, const float *v, size_t dim)
{
    ragq_jbuf_add(b, "[", 1);
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i])) {
            return -1;
        }
        if (i) {
            ragq_jbuf_add(b, ",", 1);
        }
        ragq_jbuf_number(b, v[i], 7);
    }
    ragq_jbuf_add(b, "]", 1);
    return 0;
}

char *
ragq_qdrant_query_body(const float *vector, size_t dim, unsigned limit)
{
    ragq_jbuf_t b;

    ragq_jbuf_init(&b, 64 + dim * FLOAT_BYTES);
    ragq_jbuf_adds(&b, "{\"query\":");
    if (add_vector(&b, vector, dim) != 0) {
        free(ragq_jbuf_finish(&b));
        return NULL;
    }
    ragq_jbuf_adds(&b, ",\"limit\":");
    ragq_jbuf_uint(&b, limit);
    ragq_jbuf_adds(&b, ",\"with_payload\":true}");
    return ragq_jbuf_finish(&b);
}

char *
ragq_qdrant_create_collection_body(size_t dim)
{
    ragq_jbuf_t b;

    ragq_jbuf_init(&b, 64);
    ragq_jbuf_adds(&b, "{\"vectors\":{\"size\":");
    ragq_jbuf_uint(&b, dim);
    ragq_jbuf_adds(&b, ",\"distance\":\"Cosine\"}}");
    return ragq_jbuf_finish(&b);
}

char *
ragq_qdrant_delete_chunks_body(char *const *sources, const size_t *from,
                               size_t n)
{
    ragq_jbuf_t b;

    ragq_jbuf_init(&b, 64 + n * 224);
    ragq_jbuf_adds(&b, "{\"filter\":{\"should\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) {
            ragq_jbuf_add(&b, ",", 1);
        }
        ragq_jbuf_adds(&b, "{\"must\":[{\"key\":\"metadata.source\","
                           "\"match\":{\"value\":");
        ragq_jbuf_string(&b, sources[i], strlen(sources[i]));
        /* chunk from[i] on, or no chunk number at all: a point LangChain
         * wrote for the same source (its metadata has no "chunk") */
        ragq_jbuf_adds(&b, "}},{\"should\":[{\"key\":\"metadata.chunk\","
                           "\"range\":{\"gte\":");
        ragq_jbuf_uint(&b, from[i]);
        ragq_jbuf_adds(&b, "}},{\"is_empty\":{\"key\":\"metadata.chunk\"}}]}"
                           "]}");
    }
    ragq_jbuf_adds(&b, "]}}");
    return ragq_jbuf_finish(&b);
}

char *
ragq_qdrant_upsert_body(const ragq_point_t *points, size_t n, size_t dim)
{
    ragq_jbuf_t b;
    size_t      total = 32;
    const char *s;

    for (size_t i = 0; i < n; i++) {
        total += 128 + dim * FLOAT_BYTES +
                 (points[i].text ? strlen(points[i].text) * 9 / 8 : 0) +
                 (points[i].source ? strlen(points[i].source) : 0);
    }
    ragq_jbuf_init(&b, total);
    ragq_jbuf_adds(&b, "{\"points\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) {
            ragq_jbuf_add(&b, ",", 1);
        }
        s = points[i].id ? points[i].id : "";
        ragq_jbuf_adds(&b, "{\"id\":");
        ragq_jbuf_string(&b, s, strlen(s));
        ragq_jbuf_adds(&b, ",\"vector\":");
        if (points[i].vector == NULL ||
            add_vector(&b, points[i].vector, dim) != 0) {
            free(ragq_jbuf_finish(&b));
            return NULL;
        }
        s = points[i].text ? points[i].text : "";
        ragq_jbuf_adds(&b, ",\"payload\":{\"page_content\":");
        ragq_jbuf_string(&b, s, strlen(s));
        s = points[i].source ? points[i].source : "";
        ragq_jbuf_adds(&b, ",\"metadata\":{\"source\":");
        ragq_jbuf_string(&b, s, strlen(s));
        ragq_jbuf_adds(&b, ",\"chunk\":");
        ragq_jbuf_uint(&b, points[i].chunk);
        ragq_jbuf_adds(&b, "}}}");
    }
    ragq_jbuf_adds(&b, "]}");
    return ragq_jbuf_finish(&b);
}

/* Answers are parsed into this (single-threaded). */
static ragq_jdoc_t doc = RAGQ_JDOC_INIT;

/* Qdrant's error envelope in a 2xx answer, or a non-object: both mean the
 * answer cannot be used; say why with the server's words when it gave any. */
static ragq_jv_t *
envelope(const char *body, size_t len, const char *what,
         ragq_upstream_error_t *err)
{
    ragq_jv_t *root, *st, *e;

    root = ragq_jdoc_parse(&doc, body, len);
    if (root == NULL || root->type != RAGQ_JOBJ) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant %s answer is not a JSON object", what);
        return NULL;
    }
    if ((st = ragq_jv_get_type(root, "status", RAGQ_JOBJ)) != NULL) {
        if ((e = ragq_jv_get_type(st, "error", RAGQ_JSTR)) != NULL) {
            ragq_upstream_error_set(err, 200, 0, BAD, "Qdrant %s failed: %s",
                                    what, e->str);
        } else {
            ragq_upstream_error_set(
                err, 200, 0, BAD, "Qdrant %s answer has an error status", what);
        }
        return NULL;
    }
    return root;
}

static const char *
str_field(const ragq_jv_t *o, const char *key, size_t *len)
{
    ragq_jv_t *v = ragq_jv_get_type(o, key, RAGQ_JSTR);

    if (v == NULL) {
        return NULL;
    }
    *len = v->len;
    return v->str;
}

/* text and source from a payload: LangChain's page_content +
 * metadata.source (or file_path / url), else plain text + source. */
static int
read_payload(const ragq_jv_t *payload, ragq_source_t *src)
{
    const ragq_jv_t *meta;
    const char      *text = NULL, *source = NULL;
    size_t           tl = 0, sl = 0;

    if (payload != NULL && payload->type == RAGQ_JOBJ) {
        text = str_field(payload, "page_content", &tl);
        if (text == NULL) {
            text = str_field(payload, "text", &tl);
        }
        if ((meta = ragq_jv_get_type(payload, "metadata", RAGQ_JOBJ)) != NULL) {
            source = str_field(meta, "source", &sl);
            if (source == NULL) {
                source = str_field(meta, "file_path", &sl);
            }
            if (source == NULL) {
                source = str_field(meta, "url", &sl);
            }
        }
        if (source == NULL) {
            source = str_field(payload, "source", &sl);
        }
    }
    src->text = ragq_utf8_dup(text ? text : "", tl);
    src->source = ragq_utf8_dup(source ? source : "", sl);
    return (src->text && src->source) ? 0 : -1;
}

int
ragq_qdrant_query_parse(const char *body, size_t len, ragq_source_t **sources,
                        size_t *n, ragq_upstream_error_t *err)
{
    ragq_jv_t     *root, *result, *points, *pt, *id, *score;
    ragq_source_t *out = NULL;
    size_t         count, i = 0;

    *sources = NULL;
    *n = 0;
    root = envelope(body, len, "query", err);
    if (root == NULL) {
        return -1;
    }
    if ((result = ragq_jv_get(root, "result")) == NULL) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant query answer has no \"result\"");
        goto fail;
    }
    /* /points/query answers {"points":[...]}, the legacy /points/search a
     * bare array. */
    if (result->type == RAGQ_JARR) {
        points = result;
    } else if ((points = ragq_jv_get_type(result, "points", RAGQ_JARR)) ==
               NULL) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant query answer has no \"result.points\" "
                                "array");
        goto fail;
    }
    count = points->len;
    if (count == 0) {
        return 0;
    }
    out = calloc(count, sizeof(*out));
    if (out == NULL) {
        ragq_upstream_error_set(err, 200, 0, BAD, "out of memory");
        goto fail;
    }
    for (pt = points->child, i = 0; pt; pt = pt->next, i++) {
        if (pt->type != RAGQ_JOBJ || (id = ragq_jv_get(pt, "id")) == NULL) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant query answer: point %zu has no id",
                                    i);
            goto fail;
        }
        if (id->type == RAGQ_JSTR) {
            out[i].id = ragq_utf8_dup(id->str, id->len);
        } else if (id->type == RAGQ_JNUM && id->is_int) {
            /* As the server wrote it: u64 ids above 2^53 stay exact. */
            out[i].id = malloc(id->len + 1);
            if (out[i].id) {
                memcpy(out[i].id, id->str, id->len);
                out[i].id[id->len] = '\0';
            }
        } else {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant query answer: point %zu has an id "
                                    "that is neither an integer nor a string",
                                    i);
            goto fail;
        }
        if ((score = ragq_jv_get_type(pt, "score", RAGQ_JNUM)) == NULL) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant query answer: point %zu has no "
                                    "numeric score",
                                    i);
            i++; /* out[i].id is set and must be freed */
            goto fail;
        }
        if (!isfinite(score->num)) {
            /* 1e999 reads as an infinity, which the job's sources could
             * only carry as null: refused like a missing score. */
            ragq_upstream_error_set(
                err, 200, 0, BAD,
                "Qdrant query answer: point %zu has a "
                "score that is not a finite number "
                "(%.*s)",
                i, (int) (score->len > 32 ? 32 : score->len), score->str);
            i++;
            goto fail;
        }
        out[i].score = score->num;
        if (read_payload(ragq_jv_get(pt, "payload"), &out[i]) != 0 ||
            out[i].id == NULL) {
            ragq_upstream_error_set(err, 200, 0, BAD, "out of memory");
            i++;
            goto fail;
        }
    }
    *sources = out;
    *n = count;
    return 0;

fail:
    ragq_sources_free(out, i);
    return -1;
}

int
ragq_qdrant_collection_dim_parse(const char *body, size_t len, size_t *dim,
                                 ragq_upstream_error_t *err)
{
    ragq_jv_t  *root, *o, *vectors, *size, *c;
    ragq_jbuf_t names;
    char       *list;
    size_t      count = 0;

    *dim = 0;
    root = envelope(body, len, "collection info", err);
    if (root == NULL) {
        return -1;
    }
    o = ragq_jv_get(root, "result");
    o = ragq_jv_get(o, "config");
    o = ragq_jv_get_type(o, "params", RAGQ_JOBJ);
    if (o == NULL) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant collection info has no "
                                "\"result.config.params\"");
        return -1;
    }
    vectors = ragq_jv_get(o, "vectors");
    if (vectors == NULL || vectors->type == RAGQ_JNULL ||
        (vectors->type == RAGQ_JOBJ && vectors->len == 0)) {
        ragq_upstream_error_set(err, 200, 0, "unsupported_collection",
                                "the Qdrant collection has no dense vectors "
                                "(sparse only?); ragq needs one unnamed dense "
                                "vector");
        return -1;
    }
    if (vectors->type != RAGQ_JOBJ) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant collection info: "
                                "\"config.params.vectors\" is not an object");
        return -1;
    }
    if ((size = ragq_jv_get(vectors, "size")) != NULL) {
        if (size->type != RAGQ_JNUM || !size->is_int || !(size->num >= 1) ||
            size->num > 1e15) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant collection info: vector size is "
                                    "not a positive integer");
            return -1;
        }
        *dim = (size_t) size->num;
        return 0;
    }

    /* A map of named vectors: name them, so the user sees what is there. */
    ragq_jbuf_init(&names, 128);
    for (c = vectors->child; c; c = c->next) {
        if (count++ < 8) {
            if (count > 1) {
                ragq_jbuf_add(&names, ", ", 2);
            }
            ragq_jbuf_add(&names, c->key, c->keylen);
        }
    }
    if (count > 8) {
        ragq_jbuf_adds(&names, ", ...");
    }
    list = ragq_jbuf_finish(&names);
    ragq_upstream_error_set(err, 200, 0, "unsupported_collection",
                            "the Qdrant collection has only named vectors "
                            "(%s); ragq needs a collection with one unnamed "
                            "dense vector",
                            list ? list : "?");
    free(list);
    return -1;
}

int
ragq_qdrant_update_parse(const char *body, size_t len, const char *what,
                         ragq_upstream_error_t *err)
{
    ragq_jv_t *root, *st;

    root = envelope(body, len, what, err);
    if (root == NULL) {
        return -1;
    }
    st = ragq_jv_get_type(ragq_jv_get(root, "result"), "status", RAGQ_JSTR);
    if (st == NULL) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant %s answer has no \"result.status\"",
                                what);
        return -1;
    }
    if (strcmp(st->str, "completed") != 0 &&
        strcmp(st->str, "acknowledged") != 0) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant %s was not completed (result.status "
                                "\"%.64s\")",
                                what, st->str);
        return -1;
    }
    return 0;
}

int
ragq_qdrant_count_parse(const char *body, size_t len, size_t *count,
                        ragq_upstream_error_t *err)
{
    ragq_jv_t *root, *c;

    *count = 0;
    root = envelope(body, len, "count", err);
    if (root == NULL) {
        return -1;
    }
    c = ragq_jv_get_type(ragq_jv_get(root, "result"), "count", RAGQ_JNUM);
    if (c == NULL || !c->is_int || c->num < 0 || c->num > 1e15) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant count answer has no \"result.count\" "
                                "that is an integer >= 0");
        return -1;
    }
    *count = (size_t) c->num;
    return 0;
}

/* The start of an answer, for a message: at most 120 bytes, not splitting a
 * UTF-8 character (set_message in upstream.c makes the rest printable). */
#define ANSWER_EXCERPT 120

int
ragq_qdrant_create_parse(const char *body, size_t len,
                         ragq_upstream_error_t *err)
{
    ragq_jv_t *root, *res;
    char       why[sizeof(err->message)], code[sizeof(err->code)];
    size_t     cut;

    root = envelope(body, len, "create collection", err);
    if (root != NULL) {
        res = ragq_jv_get(root, "result");
        if (res != NULL && res->type == RAGQ_JBOOL && res->boolean) {
            return 0;
        }
        ragq_upstream_error_set(err, 200, 0, BAD,
                                res == NULL ? "Qdrant create collection "
                                              "answer has no \"result\""
                                            : "Qdrant create collection "
                                              "answer has a \"result\" that "
                                              "is not true");
    }
    /* say what came back: a proxy's page, or Qdrant's "result":false */
    memcpy(why, err->message, sizeof(why));
    memcpy(code, err->code, sizeof(code));
    if (body == NULL || len == 0) {
        ragq_upstream_error_set(err, 200, 0, code, "%s (the answer was empty)",
                                why);
        return -1;
    }
    cut = ragq_utf8_cut(body, len, ANSWER_EXCERPT);
    ragq_upstream_error_set(err, 200, 0, code, "%s (the answer: \"%.*s%s\")",
                            why, (int) cut, body, cut < len ? "..." : "");
    return -1;
}
