/*
 * pointid.h: the ids of the points ragq-ingest writes, a contract with
 * every collection already ingested: a chunk's point id is the UUID v5
 * (RFC 4122, SHA-1) in the URL namespace of the name "<source>\0<index>",
 * source being the document's path as ragq_point_source() writes it and
 * index the chunk's position in the document (decimal).  So the same chunk
 * of the same document always gets the same id, and ingesting a document
 * again updates its points instead of adding copies.  Changing anything
 * here orphans every point stored so far.  Implemented in pointid.c.
 */

#ifndef RAGQ_POINTID_H
#define RAGQ_POINTID_H

#include <stddef.h>

/* SHA-1 of data[0..len) (FIPS 180-4). */
void ragq_sha1(const void *data, size_t len, unsigned char out[20]);

/* The point id of chunk index of source: 36 characters and a NUL. */
void ragq_point_id(const char *source, unsigned index, char out[37]);

/*
 * The source name of a path as given on the command line: leading "./"
 * and repeated or trailing slashes removed ("./docs//a.md" -> "docs/a.md").
 * malloc'd, NULL when out of memory.
 */
char *ragq_point_source(const char *path);

#endif
