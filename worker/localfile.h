/*
 * localfile.h: the file format of the local vector store (localstore.c).
 * One file per collection, <dir>/<collection>.ragq, little-endian:
 *
 *     "RAGQVEC\0"  u32 version (1)  u32 dim  u64 count
 *     count x { u32 id_len, u32 source_len, u32 text_len, u32 chunk,
 *               id, source, text (UTF-8, no NUL), f32 vector[dim] }
 *
 * Vectors are stored L2-normalised, so cosine similarity is a dot product.
 * A file is written whole to a temporary name, synced, and renamed over
 * the old one.  Implemented in localfile.c; used by localstore.c only.
 */

#ifndef RAGQ_LOCALFILE_H
#define RAGQ_LOCALFILE_H

#include <stddef.h>
#include <sys/stat.h>

/* A collection in memory, as in its file. */
typedef struct {
    size_t    dim, count;
    float    *vecs; /* count x dim, normalised */
    char    **ids, **sources, **texts;
    unsigned *chunks;
} ragq_localfile_t;


/* Collection names become file names: no separators, no dot files. */
int ragq_localfile_valid_name(const char *name);

/* fmt (with %s dir, %s name, %ld pid) filled in.  malloc'd. */
char *ragq_localfile_path(const char *dir, const char *name, const char *fmt);

/* Room for count points of dim floats (count 0: room for one).  -1: OOM. */
int  ragq_localfile_alloc(ragq_localfile_t *d, size_t dim, size_t count);
void ragq_localfile_free(ragq_localfile_t *d);

/*
 * Reads a collection file (st gets its stat).  Returns 0, 1 when it does
 * not exist, -1 with msg filled (*corrupt = 1 when it is not a store file).
 */
int ragq_localfile_read(const char *path, ragq_localfile_t *d, struct stat *st,
                        char *msg, size_t msglen, int *corrupt);

/* Writes d to tmp, syncs it and renames it to path.  -1 with msg filled. */
int ragq_localfile_write(const char *tmp, const char *path,
                         const ragq_localfile_t *d, char *msg, size_t msglen);

#endif
