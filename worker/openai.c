/*
 * openai.c: request bodies and answer parsing for OpenAI-compatible
 * /embeddings and /chat/completions (OpenAI, Ollama, vLLM, llama.cpp, TEI),
 * including the RAG prompt the answerer sends.  Pure functions: no I/O.
 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "jsonr.h"
#include "jsonw.h"
#include "openai.h"
#include "utf8.h"

#define BAD "bad_upstream_response"

static const char system_prompt[] =
    "You answer questions using only the numbered sources in the user's "
    "message. Cite every statement with the number of its source in square "
    "brackets, for example [1] or [2][3]. If the sources do not contain the "
    "answer, say that you don't know; do not use outside knowledge and do "
    "not make anything up.";

static void
bad(ragq_upstream_error_t *err, const char *what)
{
    ragq_upstream_error_set(err, 200, 0, BAD, "%s", what);
}

/* Answers are parsed into this (one job at a time, single-threaded). */
static ragq_jdoc_t doc = RAGQ_JDOC_INIT;

/* A 2xx body that carries an error object anyway (some proxies and local
 * servers do this): its message is worth more than "malformed". */
static int
embedded_error(ragq_upstream_error_t *err, const char *api,
               const ragq_jv_t *root)
{
    ragq_jv_t  *e = ragq_jv_get(root, "error"), *m;
    const char *msg = NULL;

    if (e == NULL || e->type == RAGQ_JNULL) {
        return 0;
    }
    if (e->type == RAGQ_JSTR) {
        msg = e->str;
    } else if ((m = ragq_jv_get_type(e, "message", RAGQ_JSTR)) != NULL) {
        msg = m->str;
    }
    ragq_upstream_error_set(err, 200, 0, BAD, "%s answer is an error: %s", api,
                            msg ? msg : "(no message)");
    return 1;
}

char *
ragq_openai_embeddings_body(const char *model, const char *const *inputs,
                            size_t n)
{
    ragq_jbuf_t b;
    size_t      total = 64;

    model = model ? model : "";
    for (size_t i = 0; i < n; i++) {
        total += (inputs[i] ? strlen(inputs[i]) : 0) + 8;
    }
    ragq_jbuf_init(&b, total + total / 8);
    ragq_jbuf_adds(&b, "{\"model\":");
    ragq_jbuf_string(&b, model, strlen(model));
    ragq_jbuf_adds(&b, ",\"input\":[");
    for (size_t i = 0; i < n; i++) {
        const char *s = inputs[i] ? inputs[i] : "";

        if (i) {
            ragq_jbuf_add(&b, ",", 1);
        }
        ragq_jbuf_string(&b, s, strlen(s));
    }
    ragq_jbuf_adds(&b, "],\"encoding_format\":\"float\"}");
    return ragq_jbuf_finish(&b);
}

static int
b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+' || c == '-') {
        return 62;
    }
    if (c == '/' || c == '_') {
        return 63;
    }
    return -1;
}

/* Standard (or URL-safe) base64 into out; returns the byte count or -1. */
static long
b64decode(const char *s, size_t len, unsigned char *out, size_t outmax)
{
    size_t   o = 0;
    unsigned acc = 0;
    int      bits = 0, v;

    while (len && s[len - 1] == '=') {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        v = b64val((unsigned char) s[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (unsigned) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outmax) {
                return -1;
            }
            out[o++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return bits >= 6 ? -1 : (long) o;
}

/* Little-endian float32 whatever the host's byte order. */
static float
le_float(const unsigned char *p)
{
    uint32_t u = (uint32_t) p[0] | (uint32_t) p[1] << 8 |
                 (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

/*
 * Reads one "embedding" (a number array or a base64 string) into row;
 * *dim is fixed by the first row (row == NULL: only measure it).  Returns
 * the vector length or -1 with err filled.
 */
static long
read_vector(const ragq_jv_t *emb, size_t idx, float *row, size_t dim,
            ragq_upstream_error_t *err)
{
    size_t           len, j;
    const ragq_jv_t *v;
    double           d;

    if (emb->type == RAGQ_JARR) {
        len = emb->len;
        if (row == NULL) {
            return (long) len;
        }
        if (len != dim) {
            goto mismatch;
        }
        for (v = emb->child, j = 0; v; v = v->next, j++) {
            if (v->type != RAGQ_JNUM) {
                ragq_upstream_error_set(
                    err, 200, 0, BAD,
                    "embeddings answer: embedding %zu has a non-numeric "
                    "value at position %zu",
                    idx, j);
                return -1;
            }
            d = v->num;
            if (!isfinite(d) || fabs(d) > 3.4e38) {
                ragq_upstream_error_set(err, 200, 0, BAD,
                                        "embeddings answer: embedding %zu has "
                                        "a non-finite value at position %zu",
                                        idx, j);
                return -1;
            }
            row[j] = (float) d;
        }
        return (long) len;
    }
    if (emb->type == RAGQ_JSTR) {
        const char    *s = emb->str;
        size_t         sl = emb->len;
        size_t         max = sl / 4 * 3 + 3;
        unsigned char *raw = malloc(max ? max : 1);
        long           nb;

        if (raw == NULL) {
            bad(err, "out of memory decoding a base64 embedding");
            return -1;
        }
        nb = b64decode(s, sl, raw, max);
        if (nb < 0 || nb % 4 != 0) {
            free(raw);
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "embeddings answer: embedding %zu is a "
                                    "string but not base64 float32 data",
                                    idx);
            return -1;
        }
        len = (size_t) nb / 4;
        if (row == NULL) {
            free(raw);
            return (long) len;
        }
        if (len != dim) {
            free(raw);
            goto mismatch;
        }
        for (j = 0; j < len; j++) {
            row[j] = le_float(raw + 4 * j);
            if (!isfinite(row[j])) {
                free(raw);
                ragq_upstream_error_set(err, 200, 0, BAD,
                                        "embeddings answer: embedding %zu has "
                                        "a non-finite value at position %zu",
                                        idx, j);
                return -1;
            }
        }
        free(raw);
        return (long) len;
    }
    ragq_upstream_error_set(err, 200, 0, BAD,
                            "embeddings answer: embedding %zu is neither a "
                            "number array nor a base64 string",
                            idx);
    return -1;

mismatch:
    ragq_upstream_error_set(err, 200, 0, BAD,
                            "embeddings answer: embedding %zu has %zu "
                            "dimensions, the first had %zu",
                            idx, len, dim);
    return -1;
}

int
ragq_openai_embeddings_parse(const char *body, size_t len, size_t n,
                             float **vectors, size_t *dim,
                             ragq_upstream_error_t *err)
{
    ragq_jv_t     *root, *data, *item, *v, *emb;
    size_t         count, d = 0, i;
    size_t         idx;
    float         *out = NULL;
    unsigned char *seen = NULL;
    long           l;

    *vectors = NULL;
    *dim = 0;
    root = ragq_jdoc_parse(&doc, body, len);
    if (root == NULL || root->type != RAGQ_JOBJ) {
        bad(err, "embeddings answer is not a JSON object");
        goto fail;
    }
    if (embedded_error(err, "embeddings", root)) {
        goto fail;
    }
    data = ragq_jv_get_type(root, "data", RAGQ_JARR);
    if (data == NULL) {
        bad(err, "embeddings answer has no \"data\" array");
        goto fail;
    }
    count = data->len;
    if (count != n) {
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "embeddings answer has %zu embeddings for %zu "
                                "inputs",
                                count, n);
        goto fail;
    }
    if (n == 0) {
        return 0;
    }

    /* The first item fixes the dimension, so every row can be checked
     * against it and written straight into place. */
    for (item = data->child, i = 0; item; item = item->next, i++) {
        if (item->type != RAGQ_JOBJ ||
            (emb = ragq_jv_get(item, "embedding")) == NULL) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "embeddings answer: data[%zu] has no "
                                    "\"embedding\"",
                                    i);
            goto fail;
        }
        if (i == 0) {
            l = read_vector(emb, 0, NULL, 0, err);
            if (l < 0) {
                goto fail;
            }
            if (l == 0) {
                bad(err, "embeddings answer: empty embedding");
                goto fail;
            }
            d = (size_t) l;
            if (d > SIZE_MAX / sizeof(float) / n) {
                bad(err, "embeddings answer: embeddings too large");
                goto fail;
            }
            out = malloc(n * d * sizeof(float));
            seen = calloc(n, 1);
            if (out == NULL || seen == NULL) {
                bad(err, "out of memory reading embeddings");
                goto fail;
            }
        }
        v = ragq_jv_get(item, "index");
        if (v == NULL || v->type != RAGQ_JNUM || !v->is_int) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "embeddings answer: data[%zu] has no "
                                    "integer \"index\"",
                                    i);
            goto fail;
        }
        if (!(v->num >= 0 && v->num < (double) n)) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "embeddings answer: data[%zu] has index "
                                    "%.*s, expected 0..%zu",
                                    i, (int) v->len, v->str, n - 1);
            goto fail;
        }
        idx = (size_t) v->num;
        if (seen[idx]) {
            ragq_upstream_error_set(err, 200, 0, BAD,
                                    "embeddings answer: index %zu appears "
                                    "twice",
                                    idx);
            goto fail;
        }
        seen[idx] = 1;
        if (read_vector(emb, idx, out + idx * d, d, err) < 0) {
            goto fail;
        }
    }
    free(seen);
    *vectors = out;
    *dim = d;
    return 0;

fail:
    free(seen);
    free(out);
    return -1;
}

/* Is p[0..avail) a line break as Python's str.splitlines() sees it?  The
 * length of the break, else 0.  The test stand-in (and humans reading logs)
 * split the prompt that way, so none may survive inside one source. */
static size_t
line_break(const unsigned char *p, size_t avail)
{
    switch (p[0]) {
    case '\n':
    case '\r':
    case '\v':
    case '\f':
    case 0x1c:
    case 0x1d:
    case 0x1e:
        return 1;
    case 0xc2:
        return (avail >= 2 && p[1] == 0x85) ? 2 : 0;
    case 0xe2:
        return (avail >= 3 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
                   ? 3
                   : 0;
    default:
        return 0;
    }
}

/* s with every run of line breaks as one space. */
static void
one_line(ragq_jbuf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *) (s ? s : "");
    size_t               n = strlen((const char *) p), i = 0, start = 0, l;
    int                  in_break = 0;

    while (i < n) {
        l = line_break(p + i, n - i);
        if (l) {
            ragq_jbuf_add(b, (const char *) p + start, i - start);
            if (!in_break) {
                ragq_jbuf_add(b, " ", 1);
            }
            in_break = 1;
            i += l;
            start = i;
        } else {
            in_break = 0;
            i++;
        }
    }
    ragq_jbuf_add(b, (const char *) p + start, n - start);
}

static char *
chat_body(const char *model, const char *question, const ragq_source_t *sources,
          size_t n, unsigned max_tokens, int stream)
{
    ragq_jbuf_t b, u;
    char        num[32];
    size_t      total = 64;
    char       *user;

    model = model ? model : "";
    question = question ? question : "";
    for (size_t i = 0; i < n; i++) {
        total += 16 + (sources[i].source ? strlen(sources[i].source) : 0) +
                 (sources[i].text ? strlen(sources[i].text) : 0);
    }
    total += strlen(question);

    /* The user message is built raw first, then escaped once. */
    ragq_jbuf_init(&u, total);
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof(num), "[%zu] (", i + 1);
        ragq_jbuf_adds(&u, num);
        one_line(&u, sources[i].source);
        ragq_jbuf_add(&u, ") ", 2);
        one_line(&u, sources[i].text);
        ragq_jbuf_add(&u, "\n", 1);
    }
    if (n) {
        ragq_jbuf_add(&u, "\n", 1);
    }
    ragq_jbuf_adds(&u, "Question: ");
    ragq_jbuf_adds(&u, question);
    total = u.len;
    user = ragq_jbuf_finish(&u);
    if (user == NULL) {
        return NULL;
    }

    ragq_jbuf_init(&b, total + total / 8 + sizeof(system_prompt) + 160);
    ragq_jbuf_adds(&b, "{\"model\":");
    ragq_jbuf_string(&b, model, strlen(model));
    ragq_jbuf_adds(&b, ",\"messages\":[{\"role\":\"system\",\"content\":");
    ragq_jbuf_string(&b, system_prompt, sizeof(system_prompt) - 1);
    ragq_jbuf_adds(&b, "},{\"role\":\"user\",\"content\":");
    ragq_jbuf_string(&b, user, total);
    ragq_jbuf_adds(&b, stream ? "}],\"stream\":true,\"stream_options\":"
                                "{\"include_usage\":true}"
                              : "}],\"stream\":false");
    if (max_tokens) {
        ragq_jbuf_adds(&b, ",\"max_tokens\":");
        ragq_jbuf_uint(&b, max_tokens);
    }
    ragq_jbuf_add(&b, "}", 1);
    free(user);
    return ragq_jbuf_finish(&b);
}

char *
ragq_openai_chat_body(const char *model, const char *question,
                      const ragq_source_t *sources, size_t n,
                      unsigned max_tokens)
{
    return chat_body(model, question, sources, n, max_tokens, 0);
}

char *
ragq_openai_chat_stream_body(const char *model, const char *question,
                             const ragq_source_t *sources, size_t n,
                             unsigned max_tokens)
{
    return chat_body(model, question, sources, n, max_tokens, 1);
}

/* content as a string, or the text parts of a content array joined. */
static char *
content_text(const ragq_jv_t *content, int *is_null)
{
    const ragq_jv_t *part, *t, *ty;
    ragq_jbuf_t      b;
    char            *out;

    *is_null = 0;
    if (content == NULL || content->type == RAGQ_JNULL) {
        *is_null = 1;
        return NULL;
    }
    if (content->type == RAGQ_JSTR) {
        return ragq_utf8_dup(content->str, content->len);
    }
    if (content->type != RAGQ_JARR) {
        return NULL;
    }
    ragq_jbuf_init(&b, 256);
    for (part = content->child; part; part = part->next) {
        if (part->type == RAGQ_JSTR) {
            t = part;
        } else if (part->type != RAGQ_JOBJ ||
                   (t = ragq_jv_get_type(part, "text", RAGQ_JSTR)) == NULL) {
            continue; /* images, audio, tool parts: not answer text */
        } else if ((ty = ragq_jv_get_type(part, "type", RAGQ_JSTR)) != NULL &&
                   strcmp(ty->str, "text") != 0 &&
                   strcmp(ty->str, "output_text") != 0) {
            continue; /* e.g. "reasoning" parts of some servers */
        }
        ragq_jbuf_add(&b, t->str, t->len);
    }
    out = ragq_utf8_dup(b.data ? b.data : "", b.len);
    free(b.data);
    return out;
}

int
ragq_openai_chat_parse(const char *body, size_t len, char **answer,
                       char **usage_json, ragq_upstream_error_t *err)
{
    ragq_jv_t  *root, *choices, *choice, *msg, *content, *v;
    const char *finish = NULL;
    char       *text = NULL;
    int         is_null;

    *answer = NULL;
    *usage_json = NULL;
    root = ragq_jdoc_parse(&doc, body, len);
    if (root == NULL || root->type != RAGQ_JOBJ) {
        bad(err, "chat answer is not a JSON object");
        goto fail;
    }
    if (embedded_error(err, "chat", root)) {
        goto fail;
    }
    choices = ragq_jv_get_type(root, "choices", RAGQ_JARR);
    if (choices == NULL || choices->len == 0) {
        bad(err, "chat answer has no choices");
        goto fail;
    }
    choice = choices->child;
    if (choice->type != RAGQ_JOBJ ||
        (msg = ragq_jv_get_type(choice, "message", RAGQ_JOBJ)) == NULL) {
        bad(err, "chat answer: choices[0] has no message");
        goto fail;
    }
    if ((v = ragq_jv_get_type(choice, "finish_reason", RAGQ_JSTR)) != NULL) {
        finish = v->str;
    }
    content = ragq_jv_get(msg, "content");
    text = content_text(content, &is_null);
    if (text == NULL && !is_null) {
        bad(err, "chat answer: message content is neither a string, an "
                 "array of parts nor null");
        goto fail;
    }
    if (text == NULL || *text == '\0') {
        if ((v = ragq_jv_get_type(msg, "refusal", RAGQ_JSTR)) != NULL &&
            v->len > 0) {
            ragq_upstream_error_set(err, 200, 0, "model_refused", "%s", v->str);
            goto fail;
        }
        ragq_upstream_error_set(err, 200, 0, BAD,
                                "chat answer has empty content "
                                "(finish_reason: %s)",
                                finish ? finish : "none");
        goto fail;
    }
    if ((v = ragq_jv_get_type(root, "usage", RAGQ_JOBJ)) != NULL) {
        /* Re-escaped as valid UTF-8, numbers as the server wrote them. */
        *usage_json = ragq_jv_to_json(v);
        if (*usage_json == NULL) {
            bad(err, "out of memory copying usage");
            goto fail;
        }
    }
    *answer = text;
    return 0;

fail:
    free(text);
    return -1;
}
