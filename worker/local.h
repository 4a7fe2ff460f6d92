/*
 * local.h: the embedded offline backends, used when no model server or
 * Qdrant is configured (or when chosen explicitly): a hashed n-gram
 * embedder that needs no model, a vector store kept in a local directory
 * (one file per collection, written by ragq-ingest and read by the worker),
 * and an extractive answerer that quotes the best-matching sentences.
 * Implemented in local.c (store and answerer may live in their own files).
 */

#ifndef RAGQ_LOCAL_H
#define RAGQ_LOCAL_H

#include "upstream.h"

/* Dimension of the hashed embedder's vectors (fixed). */
size_t ragq_hash_embed_dim(void);

/* Hashed word and character n-gram features, L2-normalised, into out[dim]. */
void ragq_hash_embed(const char *text, size_t len, float *out);

typedef struct ragq_local_store_s ragq_local_store_t;

/* Opens a store directory (it need not exist yet).  NULL + err on failure. */
ragq_local_store_t *ragq_local_store_open(const char *dir, char *err,
                                          size_t errlen);

/*
 * Cosine top-limit over a collection, best first, with the same semantics
 * and error codes as the Qdrant path (collection_not_found,
 * vector_size_mismatch).  A collection file is (re)loaded into memory when
 * it first is asked for or when its modification time changed, so ingests
 * are picked up without a restart.  Returns 0 or -1 with err filled.
 */
int ragq_local_store_query(ragq_local_store_t *store, const char *collection,
                           const float *vector, size_t dim, unsigned limit,
                           ragq_source_t **sources, size_t *n,
                           ragq_upstream_error_t *err);

void ragq_local_store_close(ragq_local_store_t *store);

/*
 * Writes points into a collection (created when missing; points with the
 * same id are replaced; a collection of another dimension is refused).
 * Atomic: readers see the old or the new file, never a partial one.
 */
int ragq_local_store_upsert(const char *dir, const char *collection,
                            const ragq_point_t *points, size_t n, size_t dim,
                            char *err, size_t errlen);

/*
 * Like ragq_local_store_upsert, but first removes every point whose source
 * is one of sources[0..nsources-1] (the documents read again, with or
 * without chunks now), in the same atomic write: a document ingested again
 * (perhaps now shorter, or empty) keeps no stale chunks.  The points'
 * sources should be among them.  (Added for ragq-ingest.)
 */
int ragq_local_store_replace_documents(const char *dir, const char *collection,
                                       char *const *sources, size_t nsources,
                                       const ragq_point_t *points, size_t n,
                                       size_t dim, char *err, size_t errlen);

/*
 * Removes every point of the documents sources[0..nsources) and stores
 * nothing: a run of ragq-ingest whose documents all became empty, so no
 * vector (and no vector size) came out of it.  *removed gets the number of
 * points removed; a missing collection removes none and is not created,
 * and an unchanged one is not rewritten.  0, or -1 with err filled.
 */
int ragq_local_store_remove_documents(const char *dir, const char *collection,
                                      char *const *sources, size_t nsources,
                                      size_t *removed, char *err,
                                      size_t errlen);

/*
 * An answer built from the sources' sentences that best match the question,
 * each followed by its citation [n].  malloc'd.  With no sources: a sentence
 * saying that nothing relevant was found.
 */
char *ragq_extractive_answer(const char *question, const ragq_source_t *sources,
                             size_t n);

#endif
