/*
 * ingest.c: ragq-ingest, which loads documents into a collection: its
 * command line (config.c), its messages, and the run: the paths given are
 * walked into documents (ingest_docs.c), each document is split into
 * chunks (chunk.c) and the chunks go through the pipeline (ingest_pipeline.c)
 * that embeds and stores them under point ids derived from the source and
 * the chunk index (pointid.c), so ingesting a document again updates its
 * points instead of adding copies.
 */

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chunk.h"
#include "config.h"
#include "ingest.h"
#include "log.h"

static int tty; /* stderr is a terminal: show a progress line */

static void
progress_clear(void)
{
    if (tty) {
        fputs("\r\033[K", stderr);
    }
}

static void __attribute__((format(printf, 1, 0)))
vnote(const char *fmt, va_list ap)
{
    progress_clear();
    fputs("ragq-ingest: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
ragq_ingest_note(const char *fmt, ...)
{
    va_list ap;

    if (ragq_log_level < RAGQ_LOG_INFO) {
        return;
    }
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
}

void
ragq_ingest_warn(const char *fmt, ...)
{
    va_list ap;

    if (ragq_log_level < RAGQ_LOG_WARN) {
        return;
    }
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
}

void
ragq_ingest_die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
    exit(1);
}

void
ragq_ingest_buf_add(ragq_ingest_buf_t *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        while (b->len + len + 1 > b->cap) {
            b->cap = b->cap ? b->cap * 2 : 65536;
        }
        b->data = realloc(b->data, b->cap);
        if (b->data == NULL) {
            ragq_ingest_die("out of memory");
        }
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The store written to, for the summary line. */
static void
print_store(const ragq_config_t *cfg)
{
    if (strcmp(cfg->store, "local") == 0) {
        printf("local store %s", cfg->store_path);
    } else {
        printf("qdrant %s", cfg->qdrant_url);
    }
}

int
main(int argc, char **argv)
{
    static ragq_config_t cfg;
    ragq_ingest_docs_t   files = {0};
    ragq_ingest_t       *in;
    char                 err[1024];
    size_t               f, i, chunks = 0, docs = 0, empty = 0, nd = 0, *doc_n;
    char               **doc_src;
    double               t0 = now();
    int                  rc;

    rc = ragq_config_load(&cfg, RAGQ_PROG_INGEST, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    if (ragq_config_check(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "ragq-ingest: %s\n", err);
        return 2;
    }
    /* notes are info and warnings warn, as in the worker's log; errors
     * always show.  The progress line is info too. */
    ragq_log_level = cfg.log_level;
    tty = isatty(2) && ragq_log_level >= RAGQ_LOG_INFO;
    /* Retry jitter (retry.h) must differ between runs started together. */
    srandom((unsigned) (time(NULL) ^ ((unsigned) getpid() << 16)));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        ragq_ingest_die("cannot initialise libcurl");
    }
    in = ragq_ingest_new(&cfg);

    for (i = 0; i < (size_t) cfg.npaths; i++) {
        ragq_ingest_docs_walk(&files, cfg.paths[i]);
    }
    ragq_ingest_docs_check_tools(&files);

    doc_src = calloc(files.n + 1, sizeof(char *));
    doc_n = calloc(files.n + 1, sizeof(size_t));
    if (doc_src == NULL || doc_n == NULL) {
        ragq_ingest_die("out of memory");
    }
    for (f = 0; f < files.n; f++) {
        const char       *path = files.path[f];
        ragq_ingest_buf_t text = {NULL, 0, 0};
        ragq_chunk_t     *c;
        size_t            n;

        doc_src[nd] = files.path[f];
        doc_n[nd] = 0;
        nd++;
        if (ragq_ingest_docs_read(path, &text) != 0) {
            /* binary: no text, so (as for an empty document) its old
             * chunks go, the garbage an older ragq-ingest made of it too */
            free(text.data);
            empty++;
            continue;
        }
        if (ragq_chunk_text(text.data, text.len, cfg.chunk_size,
                            cfg.chunk_overlap, &c, &n) != 0) {
            ragq_ingest_die("out of memory splitting '%s'", path);
        }
        free(text.data);
        doc_n[nd - 1] = n;
        if (n == 0) {
            ragq_ingest_note("skipping %s: no text in it", path);
            empty++;
            continue;
        }
        docs++;
        chunks += n;
        ragq_ingest_add(in, path, c, n);
        ragq_chunks_free(c, n);
        if (tty) {
            fprintf(stderr, "\r\033[K%zu/%zu files, %zu chunks, %zu embedded",
                    f + 1, files.n, chunks, ragq_ingest_stored(in));
        }
    }
    if (chunks == 0 && empty == 0) {
        ragq_ingest_die(
            "no text to ingest in the paths given (looked for .txt, "
            ".md, .markdown and .pdf files)");
    }
    if (chunks == 0) {
        /* Every document read is empty: nothing to embed, but their old
         * chunks go as in any other run.  Not an error, even when there
         * were none left: a second run over the same files must not fail
         * where the first succeeded. */
        size_t removed = ragq_ingest_remove(in, doc_src, nd);

        progress_clear();
        printf("no text in %zu file%s: removed %s %zu old chunk%s from "
               "collection '%s' (",
               empty, empty == 1 ? "" : "s", empty == 1 ? "its" : "their",
               removed, removed == 1 ? "" : "s", cfg.collection);
        print_store(&cfg);
        printf(") in %.1f s\n", now() - t0);
        goto done;
    }
    ragq_ingest_finish(in, doc_src, doc_n, nd);
    progress_clear();

    printf("ingested %zu file%s, %zu chunk%s into collection '%s' (", docs,
           docs == 1 ? "" : "s", chunks, chunks == 1 ? "" : "s",
           cfg.collection);
    print_store(&cfg);
    if (strcmp(cfg.embedder, "hash") == 0) {
        printf(", embedder hash");
    } else {
        printf(", embedder openai %s", cfg.embed_model);
    }
    printf(", dim %zu) in %.1f s\n", ragq_ingest_dim(in), now() - t0);

done:
    ragq_ingest_free(in);
    free(doc_src);
    free(doc_n);
    ragq_ingest_docs_free(&files);
    curl_global_cleanup();
    return 0;
}
