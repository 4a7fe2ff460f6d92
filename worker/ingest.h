/*
 * ingest.h: what the files of ragq-ingest share, and nothing else links:
 * its messages (a command-line tool: an error ends the program with a
 * message that says what to do), a growable byte buffer, the documents
 * (ingest_docs.c: finding and reading them) and the pipeline that embeds
 * and stores their chunks (ingest_pipeline.c).  main() is ingest.c.
 */

#ifndef RAGQ_INGEST_H
#define RAGQ_INGEST_H

#include <stddef.h>
#include <sys/types.h>

#include "chunk.h"
#include "config.h"

/* ---- ingest.c ---- */

/*
 * "ragq-ingest: <message>" on stderr (clearing the progress line), when
 * RAGQ_LOG_LEVEL lets it through: a note is info, a warning warn.
 */
void ragq_ingest_note(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void ragq_ingest_warn(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* An error: the same, at any level, then exit(1). */
void ragq_ingest_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

typedef struct {
    char  *data; /* NUL-terminated */
    size_t len, cap;
} ragq_ingest_buf_t;

/* Appends (dies when out of memory). */
void ragq_ingest_buf_add(ragq_ingest_buf_t *b, const void *data, size_t len);

/* ---- ingest_docs.c ---- */

typedef struct {
    dev_t dev;
    ino_t ino;
} ragq_ingest_dir_t;

typedef struct {
    char **path; /* source names (pointid.h), in a stable order */
    size_t n, cap;
    int    pdfs;
    /* directories walked so far: each is read once, so a symlink loop
     * (or a second link to a directory) adds no copies of its files */
    ragq_ingest_dir_t *dirs;
    size_t             ndirs, dirs_cap;
} ragq_ingest_docs_t;

/*
 * Adds the readable documents at path: a file, or a directory walked
 * recursively (hidden entries skipped, names sorted, a directory reached
 * again through a symbolic link skipped with a note).  Other files are
 * skipped with a note; an unreadable path ends the program.
 */
void ragq_ingest_docs_walk(ragq_ingest_docs_t *docs, const char *path);

/* Ends the program when PDFs were found and pdftotext is missing. */
void ragq_ingest_docs_check_tools(const ragq_ingest_docs_t *docs);

/*
 * The text of a document, as valid UTF-8 without NUL bytes: 0.  1 when a
 * text file (not a PDF) looks binary: skipped with a warning (the caller
 * takes it as a document without text); text holds the raw bytes (free it
 * all the same).
 */
int ragq_ingest_docs_read(const char *path, ragq_ingest_buf_t *text);

void ragq_ingest_docs_free(ragq_ingest_docs_t *docs);

/* ---- ingest_pipeline.c ---- */

typedef struct ragq_ingest_s ragq_ingest_t;

ragq_ingest_t *ragq_ingest_new(const ragq_config_t *cfg);

/*
 * Queues the chunks of one document (taking their texts) under point ids
 * of source; every full batch is embedded and stored.
 */
void ragq_ingest_add(ragq_ingest_t *in, const char *source,
                     ragq_chunk_t *chunks, size_t n);

/*
 * Embeds and stores the last batch; then, in Qdrant, deletes the chunks
 * each document had past its new count (nchunks[i] for sources[i]), or
 * writes the local store in one go.
 */
void ragq_ingest_finish(ragq_ingest_t *in, char **sources,
                        const size_t *nchunks, size_t ndocs);

/*
 * For a run whose documents sources[0..ndocs) all had no text (nothing
 * was embedded): removes every old point of theirs, in Qdrant or in the
 * local store, and returns how many there were.  A missing collection is
 * not created (0).
 */
size_t ragq_ingest_remove(ragq_ingest_t *in, char **sources, size_t ndocs);

size_t ragq_ingest_stored(const ragq_ingest_t *in); /* points written */
size_t ragq_ingest_dim(const ragq_ingest_t *in);    /* vector size */

void ragq_ingest_free(ragq_ingest_t *in);

#endif
