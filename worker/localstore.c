/*
 * localstore.c: the local vector store of local.h, in the files of
 * localfile.h.  Readers keep a collection in memory and reload it when the
 * file's inode, size or mtime changes; writers take an flock on
 * <dir>/.<collection>.lock, merge their points into the collection and
 * write it whole to a temporary file renamed over the old one, so a reader
 * sees the old or the new collection, never a partial one.
 */

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "local.h"
#include "localfile.h"

typedef struct coll_s {
    char            *name;
    dev_t            dev;
    ino_t            ino;
    off_t            size;
    struct timespec  mtime;
    ragq_localfile_t data;
    struct coll_s   *next;
} coll_t;

struct ragq_local_store_s {
    char   *dir;
    coll_t *colls;
};

/* ---- reader ------------------------------------------------------------ */

ragq_local_store_t *
ragq_local_store_open(const char *dir, char *err, size_t errlen)
{
    ragq_local_store_t *s;

    if (dir == NULL || dir[0] == '\0') {
        snprintf(err, errlen,
                 "the local store needs a directory "
                 "(RAGQ_STORE_PATH)");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return s;
}

void
ragq_local_store_close(ragq_local_store_t *s)
{
    coll_t *c, *next;

    if (s == NULL) {
        return;
    }
    for (c = s->colls; c; c = next) {
        next = c->next;
        ragq_localfile_free(&c->data);
        free(c->name);
        free(c);
    }
    free(s->dir);
    free(s);
}

static int
same_file(const coll_t *c, const struct stat *st)
{
    return c->dev == st->st_dev && c->ino == st->st_ino &&
           c->size == st->st_size && c->mtime.tv_sec == st->st_mtim.tv_sec &&
           c->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void
coll_drop(ragq_local_store_t *s, coll_t *c)
{
    coll_t **pp;

    for (pp = &s->colls; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    ragq_localfile_free(&c->data);
    free(c->name);
    free(c);
}

/* The collection, loaded or reloaded as needed; NULL with err filled. */
static coll_t *
coll_get(ragq_local_store_t *s, const char *name, ragq_upstream_error_t *err)
{
    coll_t          *c;
    struct stat      st;
    char            *path, msg[400];
    int              rc, corrupt;
    ragq_localfile_t d;

    path = ragq_localfile_path(s->dir, name, "%s/%s.ragq");
    if (path == NULL) {
        ragq_upstream_error_set(err, 0, 1, "out_of_memory", "out of memory");
        return NULL;
    }
    for (c = s->colls; c; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            break;
        }
    }
    if (stat(path, &st) != 0) {
        if (c) {
            coll_drop(s, c);
        }
        if (errno == ENOENT || errno == ENOTDIR) {
            ragq_upstream_error_set(err, 0, 0, "collection_not_found",
                                    "collection '%s' does not exist in %s",
                                    name, s->dir);
        } else {
            ragq_upstream_error_set(err, 0, 1, "store_unavailable",
                                    "cannot read %s: %s", path,
                                    strerror(errno));
        }
        free(path);
        return NULL;
    }
    if (c && same_file(c, &st)) {
        free(path);
        return c;
    }

    rc = ragq_localfile_read(path, &d, &st, msg, sizeof(msg), &corrupt);
    free(path);
    if (rc != 0) {
        if (rc == 1) {
            if (c) {
                coll_drop(s, c);
            }
            ragq_upstream_error_set(err, 0, 0, "collection_not_found",
                                    "collection '%s' does not exist in %s",
                                    name, s->dir);
        } else {
            ragq_upstream_error_set(
                err, 0, !corrupt,
                corrupt ? "store_corrupt" : "store_unavailable", "%s", msg);
        }
        return NULL;
    }
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL || (c->name = strdup(name)) == NULL) {
            free(c);
            ragq_localfile_free(&d);
            ragq_upstream_error_set(err, 0, 1, "out_of_memory",
                                    "out of memory");
            return NULL;
        }
        c->next = s->colls;
        s->colls = c;
    } else {
        ragq_localfile_free(&c->data);
    }
    c->data = d;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->size = st.st_size;
    c->mtime = st.st_mtim;
    return c;
}

typedef struct {
    float  score;
    size_t idx;
} hit_t;

/* Min-heap order: worse hits (lower score, later index) at the top. */
static int
hit_worse(const hit_t *a, const hit_t *b)
{
    return a->score < b->score || (a->score == b->score && a->idx > b->idx);
}

static void
heap_down(hit_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        hit_t  t;
        if (l < n && hit_worse(&h[l], &h[m])) {
            m = l;
        }
        if (r < n && hit_worse(&h[r], &h[m])) {
            m = r;
        }
        if (m == i) {
            return;
        }
        t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void
heap_up(hit_t *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        hit_t  t;
        if (!hit_worse(&h[i], &h[p])) {
            return;
        }
        t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

int
ragq_local_store_query(ragq_local_store_t *s, const char *collection,
                       const float *vector, size_t dim, unsigned limit,
                       ragq_source_t **sources, size_t *n,
                       ragq_upstream_error_t *err)
{
    coll_t           *c;
    ragq_localfile_t *d;
    hit_t            *heap;
    ragq_source_t    *out;
    size_t            i, k, nh = 0;
    double            qn = 0;

    *sources = NULL;
    *n = 0;
    if (!ragq_localfile_valid_name(collection)) {
        ragq_upstream_error_set(err, 0, 0, "invalid_collection_name",
                                "collection name '%s' is not usable by the "
                                "local store: use letters, digits, '_', '-' "
                                "and '.', not starting with '.'",
                                collection);
        return -1;
    }
    c = coll_get(s, collection, err);
    if (c == NULL) {
        return -1;
    }
    d = &c->data;
    if (d->dim != dim) {
        ragq_upstream_error_set(err, 0, 0, "vector_size_mismatch",
                                "collection '%s' in %s holds vectors of size "
                                "%zu, but the query vector has size %zu; "
                                "use the embedder the collection was "
                                "ingested with",
                                collection, s->dir, d->dim, dim);
        return -1;
    }
    if (limit == 0 || d->count == 0) {
        return 0;
    }
    if (limit > d->count) {
        limit = (unsigned) d->count;
    }
    for (k = 0; k < dim; k++) {
        qn += (double) vector[k] * vector[k];
    }
    qn = qn > 0 ? 1.0 / sqrt(qn) : 0;

    heap = malloc(limit * sizeof(hit_t));
    if (heap == NULL) {
        ragq_upstream_error_set(err, 0, 1, "out_of_memory", "out of memory");
        return -1;
    }
    for (i = 0; i < d->count; i++) {
        const float *v = d->vecs + i * dim;
        double       dot = 0;
        hit_t        h;
        for (k = 0; k < dim; k++) {
            dot += (double) v[k] * vector[k];
        }
        h.score = (float) (dot * qn);
        h.idx = i;
        if (nh < limit) {
            heap[nh] = h;
            heap_up(heap, nh++);
        } else if (hit_worse(&heap[0], &h)) {
            heap[0] = h;
            heap_down(heap, nh, 0);
        }
    }

    out = calloc(nh, sizeof(ragq_source_t));
    if (out == NULL) {
        free(heap);
        ragq_upstream_error_set(err, 0, 1, "out_of_memory", "out of memory");
        return -1;
    }
    /* popping the min-heap yields worst first: fill from the back */
    for (i = nh; i > 0; i--) {
        hit_t h = heap[0];
        heap[0] = heap[i - 1];
        heap_down(heap, i - 1, 0);
        out[i - 1].id = strdup(d->ids[h.idx]);
        out[i - 1].source = strdup(d->sources[h.idx]);
        out[i - 1].text = strdup(d->texts[h.idx]);
        out[i - 1].score = h.score;
        if (!out[i - 1].id || !out[i - 1].source || !out[i - 1].text) {
            free(heap);
            ragq_sources_free(out, nh);
            ragq_upstream_error_set(err, 0, 1, "out_of_memory",
                                    "out of memory");
            return -1;
        }
    }
    free(heap);
    *sources = out;
    *n = nh;
    return 0;
}

/* ---- writer ------------------------------------------------------------ */

static uint64_t
str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    while (*s) {
        h ^= (unsigned char) *s++;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int
mkdir_p(const char *dir, char *err, size_t errlen)
{
    char *p = strdup(dir), *q;
    int   rc = 0;

    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (q = p + 1; rc == 0; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create directory %s: %s", p,
                         strerror(errno));
                rc = -1;
            }
            *q = c;
            if (c == '\0') {
                break;
            }
        }
    }
    free(p);
    return rc;
}

static int
set_point(ragq_localfile_t *d, size_t i, const ragq_point_t *pt)
{
    size_t k;
    double norm = 0;

    free(d->ids[i]);
    free(d->sources[i]);
    free(d->texts[i]);
    d->ids[i] = strdup(pt->id);
    d->sources[i] = strdup(pt->source ? pt->source : "");
    d->texts[i] = strdup(pt->text ? pt->text : "");
    d->chunks[i] = pt->chunk;
    for (k = 0; k < d->dim; k++) {
        norm += (double) pt->vector[k] * pt->vector[k];
    }
    norm = norm > 0 ? 1.0 / sqrt(norm) : 0;
    for (k = 0; k < d->dim; k++) {
        d->vecs[i * d->dim + k] = (float) (pt->vector[k] * norm);
    }
    return d->ids[i] && d->sources[i] && d->texts[i] ? 0 : -1;
}

/* Merges points into d (replacing same ids) in a new, larger data set. */
static int
merge(ragq_localfile_t *d, const ragq_point_t *points, size_t n, size_t dim)
{
    ragq_localfile_t m;
    size_t          *slots, nslots = 16, i, used = 0;

    while (nslots < 2 * (d->count + n)) {
        nslots *= 2;
    }
    if (ragq_localfile_alloc(&m, dim, d->count + n) != 0) {
        return -1;
    }
    slots = malloc(nslots * sizeof(size_t));
    if (slots == NULL) {
        ragq_localfile_free(&m);
        return -1;
    }
    memset(slots, 0xff, nslots * sizeof(size_t));

    /* existing points move over; slots map id -> position in m */
    for (i = 0; i < d->count; i++) {
        size_t h = str_hash(d->ids[i]) & (nslots - 1);
        while (slots[h] != (size_t) -1) {
            h = (h + 1) & (nslots - 1);
        }
        slots[h] = used;
        m.ids[used] = d->ids[i];
        m.sources[used] = d->sources[i];
        m.texts[used] = d->texts[i];
        m.chunks[used] = d->chunks[i];
        memcpy(m.vecs + used * dim, d->vecs + i * dim, dim * sizeof(float));
        d->ids[i] = d->sources[i] = d->texts[i] = NULL;
        used++;
    }
    m.count = used;
    for (i = 0; i < n; i++) {
        size_t h = str_hash(points[i].id) & (nslots - 1), at = (size_t) -1;
        while (slots[h] != (size_t) -1) {
            if (strcmp(m.ids[slots[h]], points[i].id) == 0) {
                at = slots[h];
                break;
            }
            h = (h + 1) & (nslots - 1);
        }
        if (at == (size_t) -1) {
            at = used++;
            slots[h] = at;
            m.count = used;
        }
        if (set_point(&m, at, &points[i]) != 0) {
            free(slots);
            ragq_localfile_free(&m);
            return -1;
        }
    }
    free(slots);
    ragq_localfile_free(d);
    *d = m;
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Removes the points whose source is in sorted[0..n-1] (sorted by strcmp):
 * the documents ingested again, so that none of their old chunks stays
 * behind, not even when a document has no chunks left.
 */
static void
drop_sources(ragq_localfile_t *d, char *const *sorted, size_t n)
{
    size_t i, k = 0;

    for (i = 0; i < d->count; i++) {
        const char *src = d->sources[i];

        if (n > 0 &&
            bsearch(&src, sorted, n, sizeof(char *), cmp_str) != NULL) {
            free(d->ids[i]);
            free(d->sources[i]);
            free(d->texts[i]);
            continue;
        }
        d->ids[k] = d->ids[i];
        d->sources[k] = d->sources[i];
        d->texts[k] = d->texts[i];
        d->chunks[k] = d->chunks[i];
        if (k != i) {
            memcpy(d->vecs + k * d->dim, d->vecs + i * d->dim,
                   d->dim * sizeof(float));
        }
        k++;
    }
    d->count = k;
}

static int store_write(const char *dir, const char *collection,
                       char *const *sources, size_t nsources,
                       const ragq_point_t *points, size_t n, size_t dim,
                       int replace, size_t *removed, char *err, size_t errlen);

int
ragq_local_store_upsert(const char *dir, const char *collection,
                        const ragq_point_t *points, size_t n, size_t dim,
                        char *err, size_t errlen)
{
    return store_write(dir, collection, NULL, 0, points, n, dim, 0, NULL, err,
                       errlen);
}

int
ragq_local_store_replace_documents(const char *dir, const char *collection,
                                   char *const *sources, size_t nsources,
                                   const ragq_point_t *points, size_t n,
                                   size_t dim, char *err, size_t errlen)
{
    return store_write(dir, collection, sources, nsources, points, n, dim, 1,
                       NULL, err, errlen);
}

int
ragq_local_store_remove_documents(const char *dir, const char *collection,
                                  char *const *sources, size_t nsources,
                                  size_t *removed, char *err, size_t errlen)
{
    *removed = 0;
    return store_write(dir, collection, sources, nsources, NULL, 0, 0, 1,
                       removed, err, errlen);
}

static int
store_write(const char *dir, const char *collection, char *const *sources,
            size_t nsources, const ragq_point_t *points, size_t n, size_t dim,
            int replace, size_t *removed, char *err, size_t errlen)
{
    char            *path = NULL, *tmp = NULL, *lock = NULL, **sorted = NULL;
    ragq_localfile_t d;
    struct stat      st;
    int              lfd = -1, rc = -1, corrupt, r;
    size_t           before;

    memset(&d, 0, sizeof(d));
    if (!ragq_localfile_valid_name(collection)) {
        snprintf(err, errlen,
                 "collection name '%s' is not usable by the local store: use "
                 "letters, digits, '_', '-' and '.', not starting with '.'",
                 collection);
        return -1;
    }
    if (dim == 0 && removed == NULL) {
        snprintf(err, errlen, "vectors of size 0 cannot be stored");
        return -1;
    }
    path = ragq_localfile_path(dir, collection, "%s/%s.ragq");
    if (removed != NULL && path != NULL && access(path, F_OK) != 0 &&
        errno == ENOENT) {
        rc = 0; /* removing only, and no collection: nothing to remove */
        goto done;
    }
    if (mkdir_p(dir, err, errlen) != 0) {
        goto done;
    }
    tmp = ragq_localfile_path(dir, collection, "%s/.%s.ragq.tmp.%ld");
    lock = ragq_localfile_path(dir, collection, "%s/.%s.lock");
    if (!path || !tmp || !lock) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }

    /* two ingests into one collection must not lose each other's points */
    lfd = open(lock, O_RDWR | O_CREAT, 0644);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        snprintf(err, errlen, "cannot lock %s: %s", lock, strerror(errno));
        goto done;
    }
    r = ragq_localfile_read(path, &d, &st, err, errlen, &corrupt);
    if (r < 0) {
        goto done;
    }
    if (r == 1 && removed != NULL) {
        rc = 0; /* removed meanwhile: nothing to remove */
        goto done;
    }
    if (removed != NULL) {
        dim = d.dim; /* removing only: the collection's own size */
    }
    if (r == 1 && ragq_localfile_alloc(&d, dim, 0) != 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (d.dim != dim) {
        snprintf(err, errlen,
                 "collection '%s' in %s holds vectors of size %zu, not %zu; "
                 "ingest with the embedder it was created with, or into "
                 "another collection",
                 collection, dir, d.dim, dim);
        goto done;
    }
    if (replace && nsources > 0) {
        sorted = malloc(nsources * sizeof(char *));
        if (sorted == NULL) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
        memcpy(sorted, sources, nsources * sizeof(char *));
        qsort(sorted, nsources, sizeof(char *), cmp_str);
        before = d.count;
        drop_sources(&d, sorted, nsources);
        if (removed != NULL) {
            *removed = before - d.count;
            if (*removed == 0) {
                rc = 0; /* unchanged: not rewritten */
                goto done;
            }
        }
    }
    if (merge(&d, points, n, dim) != 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = ragq_localfile_write(tmp, path, &d, err, errlen);

done:
    ragq_localfile_free(&d);
    free(sorted);
    if (lfd >= 0) {
        close(lfd);
    }
    free(path);
    free(tmp);
    free(lock);
    return rc;
}
