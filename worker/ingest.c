/*
 * ingest.c: ragq-ingest, which loads documents into a collection: walks
 * the paths given (.txt, .md, .markdown; .pdf through pdftotext), splits
 * each document into chunks (chunk.c), embeds them in batches (an
 * OpenAI-compatible /embeddings server or the hashed embedder) and writes
 * them to Qdrant (collection created when missing, upserts with
 * ?wait=true) or to the local store.  Point ids are UUIDs derived from the
 * source and the chunk index, so ingesting a document again updates its
 * points instead of adding copies.  A command-line tool: blocking I/O
 * (libcurl easy handles) is fine here.
 */

#include <curl/curl.h>
#include <json-c/json.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chunk.h"
#include "config.h"
#include "local.h"
#include "openai.h"
#include "qdrant.h"
#include "upstream.h"
#include "utf8.h"

#define RAGQ_TRIES 5 /* per HTTP call, on retryable failures */

static const ragq_config_t *cfg;
static int                  tty;

/* ---- UUID v5 (RFC 4122 name-based, SHA-1) ------------------------------ */

typedef struct {
    uint32_t      h[5];
    uint64_t      len;
    unsigned char buf[64];
    size_t        n;
} sha1_t;

static uint32_t
rol(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void
sha1_block(sha1_t *s, const unsigned char *p)
{
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int      i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 |
               (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (i = 16; i < 80; i++) {
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    a = s->h[0];
    b = s->h[1];
    c = s->h[2];
    d = s->h[3];
    e = s->h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void
sha1_init(sha1_t *s)
{
    static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE,
                                   0x10325476, 0xC3D2E1F0};
    memcpy(s->h, iv, sizeof(iv));
    s->len = 0;
    s->n = 0;
}

static void
sha1_update(sha1_t *s, const void *data, size_t len)
{
    const unsigned char *p = data;

    s->len += len;
    while (len > 0) {
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        len -= take;
        if (s->n == 64) {
            sha1_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void
sha1_final(sha1_t *s, unsigned char out[20])
{
    uint64_t      bits = s->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    int           i;

    sha1_update(s, &pad, 1);
    while (s->n != 56) {
        sha1_update(s, &zero, 1);
    }
    for (i = 0; i < 8; i++) {
        lenb[i] = (unsigned char) (bits >> (56 - 8 * i));
    }
    sha1_update(s, lenb, 8);
    for (i = 0; i < 20; i++) {
        out[i] = (unsigned char) (s->h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

/*
 * UUID v5 in the URL namespace of the name "<source>\0<chunk index>", so
 * the same chunk of the same document always gets the same point id.
 */
static void
point_uuid(const char *source, unsigned chunk, char out[37])
{
    static const unsigned char ns[16] = {0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad,
                                         0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0,
                                         0x4f, 0xd4, 0x30, 0xc8};
    unsigned char              d[20];
    char                       idx[16];
    sha1_t                     s;

    snprintf(idx, sizeof(idx), "%u", chunk);
    sha1_init(&s);
    sha1_update(&s, ns, 16);
    sha1_update(&s, source, strlen(source) + 1);
    sha1_update(&s, idx, strlen(idx));
    sha1_final(&s, d);
    d[6] = (unsigned char) ((d[6] & 0x0F) | 0x50);
    d[8] = (unsigned char) ((d[8] & 0x3F) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10],
             d[11], d[12], d[13], d[14], d[15]);
}

/* ---- messages ---------------------------------------------------------- */

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

static void __attribute__((format(printf, 1, 2))) note(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
}

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
    exit(1);
}

/* ---- files ----------------------------------------------------------- */

typedef struct {
    char **path;
    size_t n, cap;
    int    pdfs;
} files_t;

static const char *
extension(const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');

    return dot && (!slash || dot > slash) ? dot : "";
}

static int
readable_type(const char *path)
{
    const char *e = extension(path);

    if (!strcasecmp(e, ".txt") || !strcasecmp(e, ".md") ||
        !strcasecmp(e, ".markdown")) {
        return 1;
    }
    return !strcasecmp(e, ".pdf") ? 2 : 0;
}

/* "./docs//a.md" -> "docs/a.md": the source names the point ids hang on */
static char *
clean_path(const char *p)
{
    char  *out = malloc(strlen(p) + 1), *o = out;
    size_t i;

    if (out == NULL) {
        die("out of memory");
    }
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/') {
            p++;
        }
    }
    for (i = 0; p[i]; i++) {
        if (p[i] == '/' && o > out && o[-1] == '/') {
            continue;
        }
        *o++ = p[i];
    }
    while (o > out + 1 && o[-1] == '/') {
        o--;
    }
    *o = '\0';
    return out;
}

static void
files_add(files_t *f, const char *path)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->path = realloc(f->path, f->cap * sizeof(char *));
        if (f->path == NULL) {
            die("out of memory");
        }
    }
    f->path[f->n++] = clean_path(path);
    if (readable_type(path) == 2) {
        f->pdfs++;
    }
}

static int
cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
walk(files_t *f, const char *path, int depth, int named)
{
    struct stat    st;
    DIR           *d;
    struct dirent *e;
    char         **names = NULL;
    size_t         n = 0, cap = 0, i;

    if (stat(path, &st) != 0) {
        die("cannot read '%s': %s", path, strerror(errno));
    }
    if (S_ISREG(st.st_mode)) {
        if (readable_type(path)) {
            files_add(f, path);
        } else {
            note("skipping %s: only .txt, .md, .markdown and .pdf files are "
                 "read",
                 path);
        }
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (named) {
            note("skipping %s: not a file or directory", path);
        }
        return;
    }
    if (depth > 32) {
        note("skipping %s: directories nested too deep (a symlink loop?)",
             path);
        return;
    }
    d = opendir(path);
    if (d == NULL) {
        die("cannot read directory '%s': %s", path, strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue; /* ., .., and hidden files such as .git */
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = realloc(names, cap * sizeof(char *));
            if (names == NULL) {
                die("out of memory");
            }
        }
        if (asprintf(&names[n], "%s/%s", path, e->d_name) < 0) {
            die("out of memory");
        }
        n++;
    }
    closedir(d);
    /* a stable order makes runs and their progress reproducible */
    if (n > 0) {
        qsort(names, n, sizeof(char *), cmp_name);
    }
    for (i = 0; i < n; i++) {
        walk(f, names[i], depth + 1, 0);
        free(names[i]);
    }
    free(names);
}

static int
in_path(const char *prog)
{
    const char *p = getenv("PATH");
    char        buf[4096];

    while (p && *p) {
        size_t len = strcspn(p, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int) len, p, prog);
        if (access(buf, X_OK) == 0) {
            return 1;
        }
        p += len + (p[len] == ':');
    }
    return 0;
}

typedef struct {
    char  *data;
    size_t len, cap;
} buf_t;

static void
buf_add(buf_t *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        while (b->len + len + 1 > b->cap) {
            b->cap = b->cap ? b->cap * 2 : 65536;
        }
        b->data = realloc(b->data, b->cap);
        if (b->data == NULL) {
            die("out of memory");
        }
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void
read_fd(int fd, buf_t *b, const char *path)
{
    char    chunk[65536];
    ssize_t r;

    for (;;) {
        r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            die("cannot read '%s': %s", path, strerror(errno));
        }
        if (r == 0) {
            break;
        }
        buf_add(b, chunk, (size_t) r);
    }
    buf_add(b, "", 0);
}

static void
read_pdf(const char *path, buf_t *b)
{
    int   fds[2], status;
    pid_t pid;

    if (pipe(fds) != 0) {
        die("pipe: %s", strerror(errno));
    }
    pid = fork();
    if (pid < 0) {
        die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("pdftotext", "pdftotext", "-q", "-enc", "UTF-8", path, "-",
               (char *) NULL);
        _exit(127);
    }
    close(fds[1]);
    read_fd(fds[0], b, path);
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        die("pdftotext could not read '%s' (exit status %d); is it a valid, "
            "unencrypted PDF?",
            path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

/*
 * Makes the text valid UTF-8 without NUL bytes (both would break the JSON
 * bodies and the store): bad bytes become U+FFFD, NUL becomes a space.
 */
static void
sanitize(buf_t *b)
{
    size_t len;
    char  *clean = ragq_utf8_clean(b->data ? b->data : "", b->len, ' ', &len);

    if (clean == NULL) {
        die("out of memory");
    }
    free(b->data);
    b->data = clean;
    b->len = len;
    b->cap = len + 1;
}

/* ---- HTTP -------------------------------------------------------------- */

typedef struct {
    buf_t body;
    char  retry_after[64];
    char  retry_after_ms[64];
} reply_t;

static size_t
on_body(char *p, size_t size, size_t nmemb, void *data)
{
    buf_add(&((reply_t *) data)->body, p, size * nmemb);
    return size * nmemb;
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *data)
{
    reply_t *r = data;
    size_t   len = size * nmemb;
    char     line[256];

    if (len < sizeof(line)) {
        char *v;
        memcpy(line, p, len);
        line[len] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        v = strchr(line, ':');
        if (v != NULL) {
            *v++ = '\0';
            while (*v == ' ') {
                v++;
            }
            if (strcasecmp(line, "retry-after") == 0) {
                snprintf(r->retry_after, sizeof(r->retry_after), "%s", v);
            } else if (strcasecmp(line, "retry-after-ms") == 0) {
                snprintf(r->retry_after_ms, sizeof(r->retry_after_ms), "%s", v);
            }
        }
    }
    return len;
}

/*
 * One HTTP call with retries on network errors, 408/409/429/5xx (honouring
 * Retry-After).  Returns the final status (0: no answer) with the body in
 * r; err is filled for anything but 2xx.  404 is returned, not retried.
 */
static long
http_call(const char *method, const char *url, const char *auth,
          const char *body, const char *api, reply_t *r,
          ragq_upstream_error_t *err)
{
    int  attempt;
    long status = 0;

    for (attempt = 1; attempt <= RAGQ_TRIES; attempt++) {
        CURL              *c = curl_easy_init();
        struct curl_slist *h = NULL;
        CURLcode           rc;
        char               cerr[CURL_ERROR_SIZE] = "";
        long               delay;

        if (c == NULL) {
            die("out of memory");
        }
        free(r->body.data);
        memset(r, 0, sizeof(*r));
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Accept: application/json");
        if (auth != NULL) {
            h = curl_slist_append(h, auth);
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) strlen(body));
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cfg->http_timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "ragq-ingest");
        rc = curl_easy_perform(c);
        status = 0;
        if (rc == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        }
        curl_slist_free_all(h);
        curl_easy_cleanup(c);

        if (rc != CURLE_OK) {
            ragq_upstream_error_set(err, 0, 1, "upstream_unreachable",
                                    "%s %s: %s", method, url,
                                    cerr[0] ? cerr : curl_easy_strerror(rc));
        } else if (status >= 200 && status < 300) {
            return status;
        } else {
            ragq_upstream_error_from_http(
                err, api, status, r->retry_after[0] ? r->retry_after : NULL,
                r->retry_after_ms[0] ? r->retry_after_ms : NULL, r->body.data,
                r->body.len);
            if (status == 404 || !err->retryable) {
                return status;
            }
        }
        if (attempt == RAGQ_TRIES) {
            break;
        }
        delay = err->retry_after_ms >= 0 ? err->retry_after_ms
                                         : 500L << (attempt - 1);
        if (delay > 30000) {
            delay = 30000;
        }
        note("%s %s failed (%s), retrying in %.1f s", method, url, err->message,
             (double) delay / 1000.0);
        usleep((useconds_t) delay * 1000);
    }
    return status;
}

static char *
auth_header(const char *name, const char *prefix, const char *key)
{
    char *h;

    if (key == NULL || key[0] == '\0') {
        return NULL;
    }
    if (asprintf(&h, "%s: %s%s", name, prefix, key) < 0) {
        die("out of memory");
    }
    return h;
}

/* ---- embedding and storing ----------------------------------------- */

typedef struct {
    char    *ids[2048];
    char    *texts[2048];
    char    *sources[2048];
    unsigned chunks[2048];
    size_t   n;
} batch_t;

typedef struct {
    char  *embed_url, *embed_auth, *qdrant_auth;
    size_t dim;        /* 0 until the first vectors come back */
    int    coll_ready; /* qdrant: collection checked / created */
    size_t stored;     /* points written */
    /* local store: all points, written in one go at the end */
    ragq_point_t *points;
    float        *vectors;
    size_t        npoints, cap;
} sink_t;

static float *
embed(sink_t *s, batch_t *b)
{
    float                *v;
    size_t                dim, i;
    ragq_upstream_error_t err;

    if (strcmp(cfg->embedder, "hash") == 0) {
        dim = ragq_hash_embed_dim();
        v = malloc(b->n * dim * sizeof(float));
        if (v == NULL) {
            die("out of memory");
        }
        for (i = 0; i < b->n; i++) {
            ragq_hash_embed(b->texts[i], strlen(b->texts[i]), v + i * dim);
        }
    } else {
        reply_t r;
        char   *body;
        long    status;

        memset(&r, 0, sizeof(r));
        body = ragq_openai_embeddings_body(
            cfg->embed_model, (const char *const *) b->texts, b->n);
        if (body == NULL) {
            die("out of memory");
        }
        status = http_call("POST", s->embed_url, s->embed_auth, body,
                           "embeddings", &r, &err);
        free(body);
        if (status < 200 || status >= 300) {
            die("embedding with model '%s' at %s failed: %s", cfg->embed_model,
                s->embed_url, err.message);
        }
        if (ragq_openai_embeddings_parse(r.body.data, r.body.len, b->n, &v,
                                         &dim, &err) != 0) {
            die("the embeddings server at %s gave an answer ragq cannot use: "
                "%s",
                s->embed_url, err.message);
        }
        free(r.body.data);
    }
    if (s->dim != 0 && dim != s->dim) {
        die("the embedder returned vectors of size %zu after vectors of size "
            "%zu",
            dim, s->dim);
    }
    s->dim = dim;
    return v;
}

static char *
qdrant_url(const char *suffix)
{
    char *path = ragq_qdrant_path(cfg->collection, suffix), *url;

    if (path == NULL || (url = ragq_url_join(cfg->qdrant_url, path)) == NULL) {
        die("out of memory");
    }
    free(path);
    return url;
}

/* Checks the collection's vector size, or creates it. */
static void
qdrant_prepare(sink_t *s)
{
    ragq_upstream_error_t err;
    reply_t               r;
    char                 *url = qdrant_url(NULL), *body;
    long                  status;
    size_t                dim;

    memset(&r, 0, sizeof(r));
    status = http_call("GET", url, s->qdrant_auth, NULL, "qdrant", &r, &err);
    if (status >= 200 && status < 300) {
        if (ragq_qdrant_collection_dim_parse(r.body.data, r.body.len, &dim,
                                             &err) != 0) {
            die("cannot use collection '%s' at %s: %s", cfg->collection,
                cfg->qdrant_url, err.message);
        }
        if (dim != s->dim) {
            die("collection '%s' at %s holds vectors of size %zu, but "
                "embedder %s%s%s makes vectors of size %zu; ingest into "
                "another collection (--collection) or use the embedder the "
                "collection was built with",
                cfg->collection, cfg->qdrant_url, dim, cfg->embedder,
                strcmp(cfg->embedder, "hash") ? " " : "",
                strcmp(cfg->embedder, "hash") ? cfg->embed_model : "", s->dim);
        }
    } else if (status == 404) {
        body = ragq_qdrant_create_collection_body(s->dim);
        status =
            http_call("PUT", url, s->qdrant_auth, body, "qdrant", &r, &err);
        free(body);
        if (status < 200 || status >= 300) {
            die("cannot create collection '%s' at %s: %s", cfg->collection,
                cfg->qdrant_url, err.message);
        }
        note("created collection '%s' (vectors of size %zu, cosine)",
             cfg->collection, s->dim);
    } else {
        die("cannot read collection '%s' at %s: %s", cfg->collection,
            cfg->qdrant_url, err.message);
    }
    free(r.body.data);
    free(url);
    s->coll_ready = 1;
}

static void
store(sink_t *s, batch_t *b, float *v)
{
    ragq_point_t pts[2048];
    size_t       i;

    for (i = 0; i < b->n; i++) {
        pts[i].id = b->ids[i];
        pts[i].vector = v + i * s->dim;
        pts[i].source = b->sources[i];
        pts[i].text = b->texts[i];
        pts[i].chunk = b->chunks[i];
    }
    if (strcmp(cfg->store, "qdrant") == 0) {
        ragq_upstream_error_t err;
        reply_t               r;
        char                 *url, *body;
        long                  status;

        if (!s->coll_ready) {
            qdrant_prepare(s);
        }
        memset(&r, 0, sizeof(r));
        url = qdrant_url("/points?wait=true");
        body = ragq_qdrant_upsert_body(pts, b->n, s->dim);
        if (body == NULL) {
            die("out of memory");
        }
        status =
            http_call("PUT", url, s->qdrant_auth, body, "qdrant", &r, &err);
        if (status < 200 || status >= 300) {
            die("writing %zu points to collection '%s' at %s failed: %s", b->n,
                cfg->collection, cfg->qdrant_url, err.message);
        }
        free(body);
        free(url);
        free(r.body.data);
        free(v);
    } else {
        /* keep copies; the local file is rewritten once, at the end */
        if (s->npoints + b->n > s->cap) {
            while (s->npoints + b->n > s->cap) {
                s->cap = s->cap ? s->cap * 2 : 1024;
            }
            s->points = realloc(s->points, s->cap * sizeof(ragq_point_t));
            s->vectors = realloc(s->vectors, s->cap * s->dim * sizeof(float));
            if (s->points == NULL || s->vectors == NULL) {
                die("out of memory");
            }
        }
        memcpy(s->vectors + s->npoints * s->dim, v,
               b->n * s->dim * sizeof(float));
        for (i = 0; i < b->n; i++) {
            pts[i].id = strdup(b->ids[i]);
            pts[i].source = strdup(b->sources[i]);
            pts[i].text = strdup(b->texts[i]);
            if (!pts[i].id || !pts[i].source || !pts[i].text) {
                die("out of memory");
            }
            s->points[s->npoints + i] = pts[i];
        }
        s->npoints += b->n;
        free(v);
    }
    s->stored += b->n;
}

static void
flush(sink_t *s, batch_t *b)
{
    size_t i;

    if (b->n == 0) {
        return;
    }
    store(s, b, embed(s, b));
    for (i = 0; i < b->n; i++) {
        free(b->ids[i]);
        free(b->texts[i]);
        free(b->sources[i]);
    }
    b->n = 0;
}

/*
 * Deletes the chunks a document had past its new chunk count (it was
 * longer when it was last ingested), 64 documents per request.
 */
static void
qdrant_prune(sink_t *s, char **sources, const size_t *nchunks, size_t ndocs)
{
    size_t i, from;

    for (from = 0; from < ndocs; from += 64) {
        struct json_object   *body = json_object_new_object();
        struct json_object   *filter = json_object_new_object();
        struct json_object   *should = json_object_new_array();
        ragq_upstream_error_t err;
        reply_t               r;
        char                 *url;
        long                  status;

        for (i = from; i < ndocs && i < from + 64; i++) {
            struct json_object *must = json_object_new_array();
            struct json_object *c1 = json_object_new_object();
            struct json_object *c2 = json_object_new_object();
            struct json_object *m = json_object_new_object();
            struct json_object *rg = json_object_new_object();
            struct json_object *one = json_object_new_object();

            json_object_object_add(m, "value",
                                   json_object_new_string(sources[i]));
            json_object_object_add(c1, "key",
                                   json_object_new_string("metadata.source"));
            json_object_object_add(c1, "match", m);
            json_object_object_add(rg, "gte",
                                   json_object_new_int64((int64_t) nchunks[i]));
            json_object_object_add(c2, "key",
                                   json_object_new_string("metadata.chunk"));
            json_object_object_add(c2, "range", rg);
            json_object_array_add(must, c1);
            json_object_array_add(must, c2);
            json_object_object_add(one, "must", must);
            json_object_array_add(should, one);
        }
        json_object_object_add(filter, "should", should);
        json_object_object_add(body, "filter", filter);

        memset(&r, 0, sizeof(r));
        url = qdrant_url("/points/delete?wait=true");
        status = http_call(
            "POST", url, s->qdrant_auth,
            json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN),
            "qdrant", &r, &err);
        if (status < 200 || status >= 300) {
            die("removing old chunks from collection '%s' at %s failed: %s",
                cfg->collection, cfg->qdrant_url, err.message);
        }
        json_object_put(body);
        free(url);
        free(r.body.data);
    }
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    static ragq_config_t conf;
    static batch_t       batch;
    files_t              files = {NULL, 0, 0, 0};
    sink_t               sink;
    char                 err[1024];
    size_t               f, i, chunks = 0, docs = 0, *doc_n;
    char               **doc_src;
    double               t0 = now();
    int                  rc;

    rc = ragq_config_load(&conf, RAGQ_PROG_INGEST, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    if (ragq_config_check(&conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "ragq-ingest: %s\n", err);
        return 2;
    }
    cfg = &conf;
    tty = isatty(2);
    memset(&sink, 0, sizeof(sink));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        die("cannot initialise libcurl");
    }
    if (strcmp(cfg->embedder, "openai") == 0) {
        sink.embed_url = ragq_url_join(cfg->embed_base_url, "/embeddings");
        sink.embed_auth =
            auth_header("Authorization", "Bearer ", cfg->embed_api_key);
    }
    if (strcmp(cfg->store, "qdrant") == 0) {
        sink.qdrant_auth = auth_header("api-key", "", cfg->qdrant_api_key);
    }

    for (i = 0; i < (size_t) cfg->npaths; i++) {
        walk(&files, cfg->paths[i], 0, 1);
    }
    if (files.pdfs > 0 && !in_path("pdftotext")) {
        die("%d PDF file%s found, and reading PDF needs pdftotext, which is "
            "not installed: install the package poppler-utils (apt-get "
            "install poppler-utils), or leave the PDFs out",
            files.pdfs, files.pdfs == 1 ? "" : "s");
    }

    doc_src = calloc(files.n + 1, sizeof(char *));
    doc_n = calloc(files.n + 1, sizeof(size_t));
    if (doc_src == NULL || doc_n == NULL) {
        die("out of memory");
    }
    for (f = 0; f < files.n; f++) {
        const char   *path = files.path[f];
        buf_t         text = {NULL, 0, 0};
        ragq_chunk_t *c;
        size_t        n;

        if (readable_type(path) == 2) {
            read_pdf(path, &text);
        } else {
            FILE *fp = fopen(path, "rb");
            if (fp == NULL) {
                die("cannot read '%s': %s", path, strerror(errno));
            }
            read_fd(fileno(fp), &text, path);
            fclose(fp);
        }
        sanitize(&text);
        if (ragq_chunk_text(text.data, text.len, cfg->chunk_size,
                            cfg->chunk_overlap, &c, &n) != 0) {
            die("out of memory splitting '%s'", path);
        }
        free(text.data);
        doc_src[f] = files.path[f];
        doc_n[f] = n;
        if (n == 0) {
            note("skipping %s: no text in it", path);
            continue;
        }
        docs++;
        for (i = 0; i < n; i++) {
            char id[37];
            point_uuid(path, c[i].index, id);
            batch.ids[batch.n] = strdup(id);
            batch.sources[batch.n] = strdup(path);
            batch.texts[batch.n] = c[i].text; /* the batch owns it now */
            batch.chunks[batch.n] = c[i].index;
            c[i].text = NULL;
            if (!batch.ids[batch.n] || !batch.sources[batch.n]) {
                die("out of memory");
            }
            batch.n++;
            chunks++;
            if (batch.n == cfg->batch_size) {
                flush(&sink, &batch);
            }
        }
        ragq_chunks_free(c, n);
        if (tty) {
            fprintf(stderr, "\r\033[K%zu/%zu files, %zu chunks, %zu embedded",
                    f + 1, files.n, chunks, sink.stored);
        }
    }
    flush(&sink, &batch);
    if (sink.coll_ready) {
        qdrant_prune(&sink, doc_src, doc_n, files.n);
    }

    if (chunks == 0) {
        die("no text to ingest in the paths given (looked for .txt, .md, "
            ".markdown and .pdf files)");
    }
    if (strcmp(cfg->store, "local") == 0) {
        /* vectors were appended to a growing array: point into it now */
        for (i = 0; i < sink.npoints; i++) {
            sink.points[i].vector = sink.vectors + i * sink.dim;
        }
        if (ragq_local_store_replace_documents(
                cfg->store_path, cfg->collection, sink.points, sink.npoints,
                sink.dim, err, sizeof(err)) != 0) {
            die("%s", err);
        }
    }
    progress_clear();

    printf("ingested %zu file%s, %zu chunk%s into collection '%s' (", docs,
           docs == 1 ? "" : "s", chunks, chunks == 1 ? "" : "s",
           cfg->collection);
    if (strcmp(cfg->store, "local") == 0) {
        printf("local store %s", cfg->store_path);
    } else {
        printf("qdrant %s", cfg->qdrant_url);
    }
    if (strcmp(cfg->embedder, "hash") == 0) {
        printf(", embedder hash");
    } else {
        printf(", embedder openai %s", cfg->embed_model);
    }
    printf(", dim %zu) in %.1f s\n", sink.dim, now() - t0);

    for (i = 0; i < sink.npoints; i++) {
        free((char *) sink.points[i].id);
        free((char *) sink.points[i].source);
        free((char *) sink.points[i].text);
    }
    free(sink.points);
    free(sink.vectors);
    free(doc_src);
    free(doc_n);
    for (f = 0; f < files.n; f++) {
        free(files.path[f]);
    }
    free(files.path);
    free(sink.embed_url);
    free(sink.embed_auth);
    free(sink.qdrant_auth);
    curl_global_cleanup();
    return 0;
}
