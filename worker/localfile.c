/*
 * localfile.c: reading and writing the local store's files (localfile.h).
 */

#include "localfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAGQ_STORE_MAGIC   "RAGQVEC"
#define RAGQ_STORE_VERSION 1
#define RAGQ_STORE_HEADER  24

int
ragq_localfile_valid_name(const char *name)
{
    size_t i, len = strlen(name);

    if (len == 0 || len > 200 || name[0] == '.') {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.')) {
            return 0;
        }
    }
    return 1;
}

char *
ragq_localfile_path(const char *dir, const char *name, const char *fmt)
{
    char  *p;
    size_t len = strlen(dir) + strlen(name) + 64;

    p = malloc(len);
    if (p != NULL) {
        snprintf(p, len, fmt, dir, name, (long) getpid());
    }
    return p;
}

void
ragq_localfile_free(ragq_localfile_t *d)
{
    size_t i;

    for (i = 0; i < d->count; i++) {
        if (d->ids) {
            free(d->ids[i]);
        }
        if (d->sources) {
            free(d->sources[i]);
        }
        if (d->texts) {
            free(d->texts[i]);
        }
    }
    free(d->ids);
    free(d->sources);
    free(d->texts);
    free(d->chunks);
    free(d->vecs);
    memset(d, 0, sizeof(*d));
}

static uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
           (uint32_t) p[3] << 24;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}

int
ragq_localfile_alloc(ragq_localfile_t *d, size_t dim, size_t count)
{
    size_t c = count ? count : 1;

    d->dim = dim;
    d->count = 0;
    d->vecs = malloc(c * dim * sizeof(float));
    d->ids = calloc(c, sizeof(char *));
    d->sources = calloc(c, sizeof(char *));
    d->texts = calloc(c, sizeof(char *));
    d->chunks = calloc(c, sizeof(unsigned));
    if (!d->vecs || !d->ids || !d->sources || !d->texts || !d->chunks) {
        ragq_localfile_free(d);
        return -1;
    }
    return 0;
}

/*
 * Reads a collection file.  Returns 0, 1 when it does not exist, -1 with
 * msg filled (corrupt == 1 when the file is not a store file).
 */
int
ragq_localfile_read(const char *path, ragq_localfile_t *d, struct stat *st,
                    char *msg, size_t msglen, int *corrupt)
{
    unsigned char *buf = NULL, *p, *end;
    FILE          *f;
    size_t         i, count, dim;

    memset(d, 0, sizeof(*d));
    *corrupt = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT) {
            return 1;
        }
        snprintf(msg, msglen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), st) != 0 || st->st_size < RAGQ_STORE_HEADER) {
        fclose(f);
        snprintf(msg, msglen, "%s is not a ragq store file (too short)", path);
        *corrupt = 1;
        return -1;
    }
    buf = malloc((size_t) st->st_size);
    if (buf == NULL ||
        fread(buf, 1, (size_t) st->st_size, f) != (size_t) st->st_size) {
        snprintf(msg, msglen, "cannot read %s: %s", path,
                 buf ? strerror(errno) : "out of memory");
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);

    end = buf + st->st_size;
    if (memcmp(buf, RAGQ_STORE_MAGIC, 8) != 0) {
        snprintf(msg, msglen, "%s is not a ragq store file", path);
        goto corrupt;
    }
    if (get_u32(buf + 8) != RAGQ_STORE_VERSION) {
        snprintf(msg, msglen,
                 "%s has store format version %u; this ragq reads version %d",
                 path, get_u32(buf + 8), RAGQ_STORE_VERSION);
        goto corrupt;
    }
    dim = get_u32(buf + 12);
    count = (size_t) get_u32(buf + 16) | (size_t) get_u32(buf + 20) << 32;
    if (dim == 0 || dim > 65536 ||
        count > (size_t) st->st_size / (16 + dim * sizeof(float))) {
        snprintf(msg, msglen, "%s has a damaged header", path);
        goto corrupt;
    }
    if (ragq_localfile_alloc(d, dim, count) != 0) {
        snprintf(msg, msglen, "out of memory loading %s", path);
        free(buf);
        return -1;
    }
    p = buf + RAGQ_STORE_HEADER;
    for (i = 0; i < count; i++) {
        size_t il, sl, tl, k;
        if (end - p < 16) {
            goto truncated;
        }
        il = get_u32(p);
        sl = get_u32(p + 4);
        tl = get_u32(p + 8);
        d->chunks[i] = get_u32(p + 12);
        p += 16;
        if ((size_t) (end - p) < il + sl + tl + dim * sizeof(float)) {
            goto truncated;
        }
        d->ids[i] = strndup((char *) p, il);
        d->sources[i] = strndup((char *) p + il, sl);
        d->texts[i] = strndup((char *) p + il + sl, tl);
        d->count = i + 1;
        if (!d->ids[i] || !d->sources[i] || !d->texts[i]) {
            snprintf(msg, msglen, "out of memory loading %s", path);
            ragq_localfile_free(d);
            free(buf);
            return -1;
        }
        p += il + sl + tl;
        for (k = 0; k < dim; k++) {
            uint32_t u = get_u32(p + k * 4);
            memcpy(&d->vecs[i * dim + k], &u, sizeof(float));
        }
        p += dim * sizeof(float);
    }
    free(buf);
    return 0;

truncated:
    snprintf(msg, msglen, "%s is truncated", path);
corrupt:
    *corrupt = 1;
    ragq_localfile_free(d);
    free(buf);
    return -1;
}

static int
write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += w;
        len -= (size_t) w;
    }
    return 0;
}

int
ragq_localfile_write(const char *tmp, const char *path,
                     const ragq_localfile_t *d, char *msg, size_t msglen)
{
    unsigned char hdr[RAGQ_STORE_HEADER], rec[16], *vb = NULL;
    size_t        i, k, dim = d->dim;
    int           fd;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(msg, msglen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    vb = malloc(dim * sizeof(float));
    if (vb == NULL) {
        goto fail;
    }
    memcpy(hdr, RAGQ_STORE_MAGIC, 8);
    put_u32(hdr + 8, RAGQ_STORE_VERSION);
    put_u32(hdr + 12, (uint32_t) dim);
    put_u32(hdr + 16, (uint32_t) d->count);
    put_u32(hdr + 20, (uint32_t) ((uint64_t) d->count >> 32));
    if (write_all(fd, hdr, sizeof(hdr)) != 0) {
        goto fail;
    }
    for (i = 0; i < d->count; i++) {
        size_t il = strlen(d->ids[i]), sl = strlen(d->sources[i]),
               tl = strlen(d->texts[i]);
        put_u32(rec, (uint32_t) il);
        put_u32(rec + 4, (uint32_t) sl);
        put_u32(rec + 8, (uint32_t) tl);
        put_u32(rec + 12, d->chunks[i]);
        for (k = 0; k < dim; k++) {
            uint32_t u;
            memcpy(&u, &d->vecs[i * dim + k], sizeof(float));
            put_u32(vb + k * 4, u);
        }
        if (write_all(fd, rec, 16) != 0 || write_all(fd, d->ids[i], il) != 0 ||
            write_all(fd, d->sources[i], sl) != 0 ||
            write_all(fd, d->texts[i], tl) != 0 ||
            write_all(fd, vb, dim * sizeof(float)) != 0) {
            goto fail;
        }
    }
    /* the data must be on disk before the rename makes it visible */
    if (fsync(fd) != 0) {
        goto fail;
    }
    free(vb);
    vb = NULL;
    if (close(fd) != 0) {
        snprintf(msg, msglen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(msg, msglen, "cannot rename %s to %s: %s", tmp, path,
                 strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;

fail:
    snprintf(msg, msglen, "cannot write %s: %s", tmp,
             vb ? strerror(errno) : "out of memory");
    free(vb);
    vb = NULL;
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return -1;
}
