/*
 * fuzz/fuzz_openai.c: the worker's parsers of OpenAI-compatible answers
 * (worker/openai.c: embeddings and chat completions; worker/upstream.c: the
 * error bodies of any status). Checks: a parsed embedding has n rows of dim
 * floats; a chat answer is a C string; its usage, which the worker stores
 * and /job-status sends as JSON, is JSON in UTF-8; error codes and messages
 * are C strings within their fields.
 *
 * The streamed chat answer (worker/openai_stream.c): the same bytes fed
 * in pieces of sizes taken from the input; a parsed answer is valid UTF-8
 * without NUL and equals its pieces concatenated, its usage JSON.  Fed
 * twice, with openai_chunk.c's quick reader of events and with every
 * event parsed by jsonr: both give the same outcome, answer, usage,
 * finish_reason, refusal and error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"
#include "openai_stream.h"
#include "utf8.h"
#include "oracle.h"

/* read, so that the loop reading the vectors stays */
float fuzz_sink;

static void
fail(const char *what, const void *p, size_t len)
{
    fprintf(stderr, "fuzz oracle: %s:\n", what);
    fwrite(p, 1, len > 4096 ? 4096 : len, stderr);
    fputc('\n', stderr);
    abort();
}

static void
check_error(const ragq_upstream_error_t *err)
{
    if (memchr(err->code, '\0', sizeof(err->code)) == NULL ||
        memchr(err->message, '\0', sizeof(err->message)) == NULL) {
        fail("an error field without its NUL", err, sizeof(*err));
    }
}

/* The pieces the stream parser handed out, concatenated. */
static char  *pieces;
static size_t npieces;

static void
on_piece(const char *text, size_t len, void *data)
{
    (void) data;
    if (len == 0) {
        fail("an empty piece", "", 0);
    }
    pieces = realloc(pieces, npieces + len);
    memcpy(pieces + npieces, text, len);
    npieces += len;
}

/* What one pass over the stream gave. */
typedef struct {
    int                   rc;
    char                 *answer, *usage, *pieces, *refusal;
    size_t                npieces;
    char                  finish[32];
    ragq_upstream_error_t err;
} outcome_t;

static void
run_stream(const uint8_t *data, size_t size, int jsonr_only, outcome_t *o)
{
    ragq_chat_stream_t s;
    size_t             at = 0, step;
    int                rc = 0;

    memset(o, 0, sizeof(*o));
    npieces = 0;
    ragq_chat_stream_init(&s, on_piece, NULL);
    s.jsonr_only = jsonr_only;
    while (at < size && rc == 0) {
        /* piece sizes from the bytes themselves: 1..16 */
        step = (size_t) (data[at] & 15) + 1;
        step = step > size - at ? size - at : step;
        rc = ragq_chat_stream_feed(&s, (const char *) data + at, step);
        at += step;
    }
    if (rc == 0) {
        rc = ragq_chat_stream_end(&s, &o->answer, &o->usage);
    }
    o->rc = rc;
    o->err = s.err;
    memcpy(o->finish, s.finish, sizeof(o->finish));
    o->refusal = s.refusal ? strdup(s.refusal) : NULL;
    o->pieces = malloc(npieces ? npieces : 1);
    if (npieces > 0) {
        memcpy(o->pieces, pieces, npieces);
    }
    o->npieces = npieces;
    ragq_chat_stream_free(&s);
}

static int
same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void
check_stream(const uint8_t *data, size_t size)
{
    outcome_t o, j;
    size_t    i, n;

    run_stream(data, size, 0, &o);
    run_stream(data, size, 1, &j);
    if (o.rc != j.rc || !same_str(o.answer, j.answer) ||
        !same_str(o.usage, j.usage) || !same_str(o.refusal, j.refusal) ||
        strncmp(o.finish, j.finish, sizeof(o.finish)) != 0 ||
        o.npieces != j.npieces ||
        (o.npieces > 0 && memcmp(o.pieces, j.pieces, o.npieces) != 0) ||
        strcmp(o.err.code, j.err.code) != 0 ||
        strcmp(o.err.message, j.err.message) != 0) {
        fail("the quick event reader and jsonr disagree", data, size);
    }
    if (o.rc == 0) {
        n = strlen(o.answer);
        if (n != o.npieces || (n > 0 && memcmp(o.answer, o.pieces, n) != 0)) {
            fail("a streamed answer that is not its pieces", data, size);
        }
        for (i = 0; i < n;
             i += ragq_utf8_seq((const unsigned char *) o.answer + i, n - i)) {
            if (ragq_utf8_seq((const unsigned char *) o.answer + i, n - i) ==
                0) {
                fail("a streamed answer that is not UTF-8", data, size);
            }
        }
        if (o.usage && !oracle_json((const unsigned char *) o.usage,
                                    strlen(o.usage), 1000)) {
            fail("a streamed usage that is not JSON in UTF-8", o.usage,
                 strlen(o.usage));
        }
    } else {
        check_error(&o.err);
    }
    for (i = 0; i < 2; i++) {
        outcome_t *x = i ? &j : &o;

        free(x->answer);
        free(x->usage);
        free(x->refusal);
        free(x->pieces);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                 *body, *answer = NULL, *usage = NULL;
    float                *vectors = NULL;
    size_t                n = size % 4 + 1, dim = 0, i;
    float                 sum = 0;
    ragq_upstream_error_t err;
    static const long     statuses[] = {400, 401, 404, 408, 429, 500, 503};

    /* exactly the answer's bytes: a read past them is seen */
    body = malloc(size ? size : 1);
    memcpy(body, data, size);

    memset(&err, 0, sizeof(err));
    if (ragq_openai_embeddings_parse(body, size, n, &vectors, &dim, &err) ==
        0) {
        if (dim == 0 || vectors == NULL) {
            fail("an embedding without dimensions", data, size);
        }
        /* every float of every row is there to read */
        for (i = 0; i < n * dim; i++) {
            sum += vectors[i];
        }
        fuzz_sink = sum;
        free(vectors);
    } else {
        check_error(&err);
    }

    memset(&err, 0, sizeof(err));
    if (ragq_openai_chat_parse(body, size, &answer, &usage, &err) == 0) {
        /* each byte that is not UTF-8 may become U+FFFD's three */
        if (answer == NULL || strlen(answer) > 3 * size) {
            fail("a chat answer that is not a C string from the body", data,
                 size);
        }
        if (usage &&
            !oracle_json((const unsigned char *) usage, strlen(usage), 1000)) {
            fail("a usage that is not JSON in UTF-8", usage, strlen(usage));
        }
        free(answer);
        free(usage);
    } else {
        check_error(&err);
    }

    check_stream(data, size);

    memset(&err, 0, sizeof(err));
    ragq_upstream_error_from_http(&err, (size & 1) ? "chat" : "embeddings",
                                  statuses[size % 7], "7", NULL, body, size);
    check_error(&err);

    free(body);
    return 0;
}
