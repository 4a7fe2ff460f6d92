/*
 * ingest_docs.c: the documents of ragq-ingest (ingest.h): the paths given,
 * walked into a list of readable files (.txt, .md, .markdown, .pdf), and
 * each file's text: read as is, or through pdftotext for PDFs, then made
 * valid UTF-8 without NUL bytes.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ingest.h"
#include "pointid.h"
#include "utf8.h"

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

static void
files_add(ragq_ingest_docs_t *f, const char *path)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 64;
        f->path = realloc(f->path, f->cap * sizeof(char *));
        if (f->path == NULL) {
            ragq_ingest_die("out of memory");
        }
    }
    if ((f->path[f->n] = ragq_point_source(path)) == NULL) {
        ragq_ingest_die("out of memory");
    }
    f->n++;
    if (readable_type(path) == 2) {
        f->pdfs++;
    }
}

/*
 * Remembers the directory st; 0 when it was walked already (reached again
 * through a symbolic link: a loop such as dir/up -> .., or two links to
 * one directory), which would add every file below it once more, under
 * another name, and with two looping links make the walk exponential.
 */
static int
dir_first_visit(ragq_ingest_docs_t *f, const struct stat *st)
{
    size_t i;

    for (i = 0; i < f->ndirs; i++) {
        if (f->dirs[i].dev == st->st_dev && f->dirs[i].ino == st->st_ino) {
            return 0;
        }
    }
    if (f->ndirs == f->dirs_cap) {
        f->dirs_cap = f->dirs_cap ? f->dirs_cap * 2 : 64;
        f->dirs = realloc(f->dirs, f->dirs_cap * sizeof(*f->dirs));
        if (f->dirs == NULL) {
            ragq_ingest_die("out of memory");
        }
    }
    f->dirs[f->ndirs].dev = st->st_dev;
    f->dirs[f->ndirs].ino = st->st_ino;
    f->ndirs++;
    return 1;
}

static int
cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
walk(ragq_ingest_docs_t *f, const char *path, int depth, int named)
{
    struct stat    st;
    DIR           *d;
    struct dirent *e;
    char         **names = NULL;
    size_t         n = 0, cap = 0, i;

    if (stat(path, &st) != 0) {
        ragq_ingest_die("cannot read '%s': %s", path, strerror(errno));
    }
    if (S_ISREG(st.st_mode)) {
        if (readable_type(path)) {
            files_add(f, path);
        } else {
            ragq_ingest_note(
                "skipping %s: only .txt, .md, .markdown and .pdf files are "
                "read",
                path);
        }
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (named) {
            ragq_ingest_warn("skipping %s: not a file or directory", path);
        }
        return;
    }
    if (depth > 32) {
        ragq_ingest_warn("skipping %s: directories nested too deep", path);
        return;
    }
    if (!dir_first_visit(f, &st)) {
        ragq_ingest_note("skipping %s: a directory already read (a symbolic "
                         "link loop, or another link to it)",
                         path);
        return;
    }
    d = opendir(path);
    if (d == NULL) {
        ragq_ingest_die("cannot read directory '%s': %s", path,
                        strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue; /* ., .., and hidden files such as .git */
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = realloc(names, cap * sizeof(char *));
            if (names == NULL) {
                ragq_ingest_die("out of memory");
            }
        }
        if (asprintf(&names[n], "%s/%s", path, e->d_name) < 0) {
            ragq_ingest_die("out of memory");
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

static void
read_fd(int fd, ragq_ingest_buf_t *b, const char *path)
{
    char    chunk[65536];
    ssize_t r;

    for (;;) {
        r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            ragq_ingest_die("cannot read '%s': %s", path, strerror(errno));
        }
        if (r == 0) {
            break;
        }
        ragq_ingest_buf_add(b, chunk, (size_t) r);
    }
    ragq_ingest_buf_add(b, "", 0);
}

static void
read_pdf(const char *path, ragq_ingest_buf_t *b)
{
    int   fds[2], status;
    pid_t pid;

    if (pipe(fds) != 0) {
        ragq_ingest_die("pipe: %s", strerror(errno));
    }
    pid = fork();
    if (pid < 0) {
        ragq_ingest_die("fork: %s", strerror(errno));
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
        ragq_ingest_die(
            "pdftotext could not read '%s' (exit status %d); is it a valid, "
            "unencrypted PDF?",
            path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

/*
 * Makes the text valid UTF-8 without NUL bytes (both would break the JSON
 * bodies and the store): bad bytes become U+FFFD, NUL becomes a space.
 */
static void
sanitize(ragq_ingest_buf_t *b)
{
    size_t len;
    char  *clean = ragq_utf8_clean(b->data ? b->data : "", b->len, ' ', &len);

    if (clean == NULL) {
        ragq_ingest_die("out of memory");
    }
    free(b->data);
    b->data = clean;
    b->len = len;
    b->cap = len + 1;
}

void
ragq_ingest_docs_walk(ragq_ingest_docs_t *docs, const char *path)
{
    walk(docs, path, 0, 1);
}

void
ragq_ingest_docs_check_tools(const ragq_ingest_docs_t *docs)
{
    if (docs->pdfs > 0 && !in_path("pdftotext")) {
        ragq_ingest_die(
            "%d PDF file%s found, and reading PDF needs pdftotext, which is "
            "not installed: install the package poppler-utils (apt-get "
            "install poppler-utils), or leave the PDFs out",
            docs->pdfs, docs->pdfs == 1 ? "" : "s");
    }
}

/*
 * A file named as text that is not: its first BINARY_SNIFF bytes hold a
 * NUL byte (executables, images, archives, UTF-16), or more than a tenth
 * of them are not valid UTF-8 (compressed or encrypted data has no NUL
 * bytes, but about half of its bytes are invalid; a Latin-1 document's few
 * accented letters stay under the tenth, and are read as U+FFFD).
 */
#define BINARY_SNIFF 8192

static int
looks_binary(const ragq_ingest_buf_t *b)
{
    const unsigned char *p = (const unsigned char *) b->data;
    size_t               sample = b->len < BINARY_SNIFF ? b->len : BINARY_SNIFF;
    size_t               i = 0, bad = 0, n;

    if (p == NULL) {
        return 0;
    }
    if (memchr(p, '\0', sample) != NULL) {
        return 1;
    }
    while (i < sample) {
        /* the whole text is available: a character across the sample's
         * end is judged whole */
        n = ragq_utf8_seq(p + i, b->len - i);
        if (n == 0) {
            bad++;
            n = 1;
        }
        i += n;
    }
    return bad * 10 > sample;
}

int
ragq_ingest_docs_read(const char *path, ragq_ingest_buf_t *text)
{
    if (readable_type(path) == 2) {
        read_pdf(path, text);
    } else {
        FILE *fp = fopen(path, "rb");

        if (fp == NULL) {
            ragq_ingest_die("cannot read '%s': %s", path, strerror(errno));
        }
        read_fd(fileno(fp), text, path);
        fclose(fp);
        if (looks_binary(text)) {
            ragq_ingest_warn("skipping %s: it looks binary, not text (a NUL "
                             "byte, or over 10%% invalid UTF-8, in its first "
                             "8 KiB)",
                             path);
            return 1;
        }
    }
    sanitize(text);
    return 0;
}

void
ragq_ingest_docs_free(ragq_ingest_docs_t *docs)
{
    for (size_t i = 0; i < docs->n; i++) {
        free(docs->path[i]);
    }
    free(docs->path);
    free(docs->dirs);
    memset(docs, 0, sizeof(*docs));
}
