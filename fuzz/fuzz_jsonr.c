/*
 * fuzz/fuzz_jsonr.c: the worker's JSON reader (worker/jsonr.c) and its
 * writer of a parsed value (ragq_jv_to_json). Checks: what it accepts is
 * JSON, though the reader lets through what a strict one would not: bytes
 * that are not UTF-8 (its writer repairs them), raw control bytes in
 * strings and lone surrogate escapes (oracle_json_grammar); the text
 * written back is JSON in UTF-8, parses again, and is written the same way
 * again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonr.h"
#include "oracle.h"

static void
fail(const char *what, const void *p, size_t len)
{
    fprintf(stderr, "fuzz oracle: %s:\n", what);
    fwrite(p, 1, len > 4096 ? 4096 : len, stderr);
    fputc('\n', stderr);
    abort();
}

static void
walk(const ragq_jv_t *v, int depth)
{
    const ragq_jv_t *c;

    if (depth > 300) {
        fail("a tree deeper than the reader's limit", "", 0);
    }
    if (v->type == RAGQ_JSTR) {
        (void) strlen(v->str);
    }
    for (c = v->child; c; c = c->next) {
        walk(c, depth + 1);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char              *text, *json, *again;
    int                round;
    ragq_jv_t         *v;
    static ragq_jdoc_t doc = RAGQ_JDOC_INIT;

    text = malloc(size ? size : 1);
    memcpy(text, data, size);

    v = ragq_jdoc_parse(&doc, text, size);
    if (v == NULL) {
        free(text);
        return 0;
    }
    if (!oracle_json_grammar(data, size, 1000)) {
        fail("the reader accepts what is not JSON", data, size);
    }
    walk(v, 0);

    /* written back: JSON in UTF-8 that reads again; written once more,
     * the same text (the first writing may change the form: a NUL becomes
     * \ufffd, which then stays U+FFFD) */
    json = ragq_jv_to_json(v);
    if (json == NULL ||
        !oracle_json((const unsigned char *) json, strlen(json), 1000)) {
        fail("written back, not JSON in UTF-8", json ? json : "",
             json ? strlen(json) : 0);
    }
    for (round = 0; round < 2; round++) {
        v = ragq_jdoc_parse(&doc, json, strlen(json));
        if (v == NULL) {
            fail("written back, not read again", json, strlen(json));
        }
        again = ragq_jv_to_json(v);
        if (again == NULL) {
            fail("not written again", json, strlen(json));
        }
        if (round == 1 && strcmp(again, json) != 0) {
            fail("written again, not the same", json, strlen(json));
        }
        free(json);
        json = again;
    }
    free(json);
    free(text);
    return 0;
}
