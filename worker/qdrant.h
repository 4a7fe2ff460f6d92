/*
 * qdrant.h: request bodies, paths and response parsing for Qdrant's REST
 * API (collections, upsert, points/query).  Pure functions: no I/O.
 * Implemented in qdrant.c.
 */

#ifndef RAGQ_QDRANT_H
#define RAGQ_QDRANT_H

#include "upstream.h"

/* How the key is sent: "api-key: KEY" (ragq_auth_header). */
#define RAGQ_QDRANT_AUTH_HEADER "api-key", ""

/* "/collections/<escaped name><suffix>", suffix e.g. "/points/query". malloc'd.
 */
char *ragq_qdrant_path(const char *collection, const char *suffix);

/*
 * Body of POST /collections/{c}/points/query:
 * {"query": [..dim floats..], "limit": limit, "with_payload": true}.
 */
char *ragq_qdrant_query_body(const float *vector, size_t dim, unsigned limit);

/*
 * Parses a 2xx query answer (result.points, best first).  Understands the
 * payload of LangChain's Qdrant integration (page_content + metadata.source)
 * and a plain "text"/"source" payload.  *sources is malloc'd (free with
 * ragq_sources_free), *n may be 0.  -1 with err filled when malformed.
 */
int ragq_qdrant_query_parse(const char *body, size_t len,
                            ragq_source_t **sources, size_t *n,
                            ragq_upstream_error_t *err);

/* Body of PUT /collections/{c}: {"vectors":{"size":dim,"distance":"Cosine"}}.
 */
char *ragq_qdrant_create_collection_body(size_t dim);

/*
 * Checks a 2xx answer to PUT /collections/{c}:
 * {"result":true,"status":"ok","time":...}.  -1 with err filled when it is
 * not JSON (a proxy's page), is Qdrant's error envelope, or its "result" is
 * not true; the message ends with the start of the answer (120 bytes at
 * most).
 */
int ragq_qdrant_create_parse(const char *body, size_t len,
                             ragq_upstream_error_t *err);

/*
 * Parses a 2xx GET /collections/{c} answer: *dim = the size of its
 * (unnamed) dense vector.  -1 with err filled when malformed or when the
 * collection has only named vectors.
 */
int ragq_qdrant_collection_dim_parse(const char *body, size_t len, size_t *dim,
                                     ragq_upstream_error_t *err);

/*
 * Body of PUT /collections/{c}/points?wait=true: {"points":[{"id",
 * "vector", "payload":{"page_content": text, "metadata": {"source": source,
 * "chunk": chunk}}}]} -- LangChain's payload shape.
 */
char *ragq_qdrant_upsert_body(const ragq_point_t *points, size_t n, size_t dim);

/*
 * Body of POST /collections/{c}/points/delete?wait=true (and of
 * .../points/count) whose filter selects, for each i < n, the points of
 * document sources[i] (metadata.source) whose metadata.chunk is from[i] or
 * more, or that have no metadata.chunk at all (is_empty: the points
 * LangChain's own ingestion wrote for that source): the chunks a
 * re-ingested document no longer has.  malloc'd, NULL on allocation
 * failure.
 */
char *ragq_qdrant_delete_chunks_body(char *const *sources, const size_t *from,
                                     size_t n);

/*
 * Checks a 2xx answer to an update (PUT .../points, POST .../points/delete):
 * {"status":"ok","result":{"operation_id":N,"status":"completed"}}, where
 * "acknowledged" is accepted too.  -1 with err filled when it is not JSON,
 * has no result.status, or another one ("wait_timeout": not yet applied).
 * what names the update in the message ("upsert").
 */
int ragq_qdrant_update_parse(const char *body, size_t len, const char *what,
                             ragq_upstream_error_t *err);

/*
 * Parses a 2xx POST /collections/{c}/points/count answer:
 * {"result":{"count":N}}.  -1 with err filled when malformed.
 */
int ragq_qdrant_count_parse(const char *body, size_t len, size_t *count,
                            ragq_upstream_error_t *err);

#endif
