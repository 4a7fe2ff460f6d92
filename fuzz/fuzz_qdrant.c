/*
 * fuzz/fuzz_qdrant.c: the parsers of Qdrant answers (worker/qdrant.c:
 * points/query, collection info, collection creation; worker/upstream.c:
 * its error bodies) and the "sources" field the worker writes from a query
 * answer. Checks: sources are C strings; the sources field, which
 * /job-status sends as JSON, is a JSON array in UTF-8; error fields keep
 * their NUL; a refused creation answer's message (which quotes the answer)
 * is UTF-8.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qdrant.h"
#include "oracle.h"

static void
fail(const char *what, const void *p, size_t len)
{
    fprintf(stderr, "fuzz oracle: %s:\n", what);
    fwrite(p, 1, len > 4096 ? 4096 : len, stderr);
    fputc('\n', stderr);
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                 *body, *json;
    size_t                n = 0, dim, i;
    ragq_source_t        *sources = NULL;
    ragq_upstream_error_t err;

    body = malloc(size ? size : 1);
    memcpy(body, data, size);

    memset(&err, 0, sizeof(err));
    if (ragq_qdrant_query_parse(body, size, &sources, &n, &err) == 0) {
        for (i = 0; i < n; i++) {
            if (sources[i].id == NULL || sources[i].source == NULL ||
                sources[i].text == NULL) {
                fail("a source without its strings", data, size);
            }
            (void) strlen(sources[i].id);
            (void) strlen(sources[i].source);
            (void) strlen(sources[i].text);
        }
        json = ragq_sources_to_json(sources, n, size % 2 ? 0 : 40);
        if (json == NULL || json[0] != '[' ||
            !oracle_json((const unsigned char *) json, strlen(json), 1000)) {
            fail("a sources field that is not a JSON array in UTF-8",
                 json ? json : "", json ? strlen(json) : 0);
        }
        free(json);
        ragq_sources_free(sources, n);
    }

    memset(&err, 0, sizeof(err));
    (void) ragq_qdrant_collection_dim_parse(body, size, &dim, &err);

    /* its message quotes the start of the answer: any bytes */
    memset(&err, 0, sizeof(err));
    if (ragq_qdrant_create_parse(body, size, &err) != 0 &&
        (memchr(err.message, '\0', sizeof(err.message)) == NULL ||
         !oracle_utf8((const unsigned char *) err.message,
                      strlen(err.message)))) {
        fail("a create answer's message that is not a UTF-8 string",
             err.message, sizeof(err.message));
    }

    memset(&err, 0, sizeof(err));
    ragq_upstream_error_from_http(&err, "qdrant", size % 2 ? 404 : 500, NULL,
                                  "250", body, size);
    if (memchr(err.code, '\0', sizeof(err.code)) == NULL ||
        memchr(err.message, '\0', sizeof(err.message)) == NULL) {
        fail("an error field without its NUL", &err, sizeof(err));
    }

    free(body);
    return 0;
}
