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

#include <json.h>

#include "qdrant.h"

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

/* Qdrant's error envelope in a 2xx answer, or a non-object: both mean the
 * answer cannot be used; say why with the server's words when it gave any. */
static struct json_object *
envelope(const char *body, size_t len, const char *what,
         ragq_upstream_error_t *err)
{
    struct json_object *root, *st, *e;

    root = ragq_json_parse(body, len);
    if (root == NULL || !json_object_is_type(root, json_type_object)) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant %s answer is not a JSON object", what);
        json_object_put(root);
        return NULL;
    }
    if (json_object_object_get_ex(root, "status", &st) &&
        json_object_is_type(st, json_type_object)) {
        if (json_object_object_get_ex(st, "error", &e) &&
            json_object_is_type(e, json_type_string)) {
            ragq_upstream_error_set(err, 200, 0, BAD, "Qdrant %s failed: %s",
                                    what, json_object_get_string(e));
        } else {
            ragq_upstream_error_set(
                err, 200, 0, BAD, "Qdrant %s answer has an error status", what);
        }
        json_object_put(root);
        return NULL;
    }
    return root;
}

static const char *
str_field(struct json_object *o, const char *key, size_t *len)
{
    struct json_object *v;

    if (o == NULL || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    *len = (size_t) json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* text and source from a payload: LangChain's page_content +
 * metadata.source (or file_path / url), else plain text + source. */
static int
read_payload(struct json_object *payload, ragq_source_t *src)
{
    struct json_object *meta = NULL;
    const char         *text = NULL, *source = NULL;
    size_t              tl = 0, sl = 0;

    if (payload != NULL && json_object_is_type(payload, json_type_object)) {
        text = str_field(payload, "page_content", &tl);
        if (text == NULL) {
            text = str_field(payload, "text", &tl);
        }
        if (json_object_object_get_ex(payload, "metadata", &meta) &&
            json_object_is_type(meta, json_type_object)) {
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
    struct json_object *root, *result, *points, *pt, *id, *score, *payload;
    ragq_source_t      *out = NULL;
    size_t              count, i = 0;
    const char         *s;

    *sources = NULL;
    *n = 0;
    root = envelope(body, len, "query", err);
    if (root == NULL) {
        return -1;
    }
    if (!json_object_object_get_ex(root, "result", &result)) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant query answer has no \"result\"");
        goto fail;
    }
    /* /points/query answers {"points":[...]}, the legacy /points/search a
     * bare array. */
    if (json_object_is_type(result, json_type_array)) {
        points = result;
    } else if (!json_object_is_type(result, json_type_object) ||
               !json_object_object_get_ex(result, "points", &points) ||
               !json_object_is_type(points, json_type_array)) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant query answer has no \"result.points\" "
                                "array");
        goto fail;
    }
    count = json_object_array_length(points);
    if (count == 0) {
        json_object_put(root);
        return 0;
    }
    out = calloc(count, sizeof(*out));
    if (out == NULL) {
        ragq_upstream_error_set(err, 200, 0, BAD, "out of memory");
        goto fail;
    }
    for (i = 0; i < count; i++) {
        pt = json_object_array_get_idx(points, i);
        if (!json_object_is_type(pt, json_type_object) ||
            !json_object_object_get_ex(pt, "id", &id)) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant query answer: point %zu has no id",
                                    i);
            goto fail;
        }
        if (json_object_is_type(id, json_type_string)) {
            out[i].id = ragq_utf8_dup(json_object_get_string(id),
                                      (size_t) json_object_get_string_len(id));
        } else if (json_object_is_type(id, json_type_int)) {
            /* json-c keeps u64 ids above INT64_MAX exact and prints them
             * as they came. */
            s = json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN);
            out[i].id = s ? strdup(s) : NULL;
        } else {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant query answer: point %zu has an id "
                                    "that is neither an integer nor a string",
                                    i);
            goto fail;
        }
        if (!json_object_object_get_ex(pt, "score", &score) ||
            (!json_object_is_type(score, json_type_double) &&
             !json_object_is_type(score, json_type_int))) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant query answer: point %zu has no "
                                    "numeric score",
                                    i);
            i++; /* out[i].id is set and must be freed */
            goto fail;
        }
        out[i].score = json_object_get_double(score);
        payload = NULL;
        json_object_object_get_ex(pt, "payload", &payload);
        if (read_payload(payload, &out[i]) != 0 || out[i].id == NULL) {
            ragq_upstream_error_set(err, 200, 0, BAD, "out of memory");
            i++;
            goto fail;
        }
    }
    json_object_put(root);
    *sources = out;
    *n = count;
    return 0;

fail:
    ragq_sources_free(out, i);
    json_object_put(root);
    return -1;
}

int
ragq_qdrant_collection_dim_parse(const char *body, size_t len, size_t *dim,
                                 ragq_upstream_error_t *err)
{
    struct json_object *root, *o, *vectors, *size;
    ragq_jbuf_t         names;
    char               *list;
    int64_t             d;
    size_t              count = 0;

    *dim = 0;
    root = envelope(body, len, "collection info", err);
    if (root == NULL) {
        return -1;
    }
    if (!json_object_object_get_ex(root, "result", &o) ||
        !json_object_object_get_ex(o, "config", &o) ||
        !json_object_object_get_ex(o, "params", &o) ||
        !json_object_is_type(o, json_type_object)) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant collection info has no "
                                "\"result.config.params\"");
        goto fail;
    }
    if (!json_object_object_get_ex(o, "vectors", &vectors) ||
        json_object_is_type(vectors, json_type_null) ||
        (json_object_is_type(vectors, json_type_object) &&
         json_object_object_length(vectors) == 0)) {
        ragq_upstream_error_set(err, 200, 0, "unsupported_collection",
                                "the Qdrant collection has no dense vectors "
                                "(sparse only?); ragq needs one unnamed dense "
                                "vector");
        goto fail;
    }
    if (!json_object_is_type(vectors, json_type_object)) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "Qdrant collection info: "
                                "\"config.params.vectors\" is not an object");
        goto fail;
    }
    if (json_object_object_get_ex(vectors, "size", &size)) {
        if (!json_object_is_type(size, json_type_int) ||
            (d = json_object_get_int64(size)) < 1) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "Qdrant collection info: vector size is "
                                    "not a positive integer");
            goto fail;
        }
        *dim = (size_t) d;
        json_object_put(root);
        return 0;
    }

    /* A map of named vectors: name them, so the user sees what is there. */
    ragq_jbuf_init(&names, 128);
    json_object_object_foreach(vectors, key, val)
    {
        (void) val;
        if (count++ < 8) {
            if (count > 1) {
                ragq_jbuf_add(&names, ", ", 2);
            }
            ragq_jbuf_adds(&names, key);
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

fail:
    json_object_put(root);
    return -1;
}
