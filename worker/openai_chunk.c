/*
 * openai_chunk.c: the quick reader of one chat.completion.chunk
 * (openai_chunk.h).  A streamed answer is a couple of hundred events of
 * ~250 bytes each; building jsonr's tree for every one of them (a node and
 * a copy per member) was most of what a streamed job cost the worker in
 * user space.  This reads the same grammar as jsonr (RFC 8259: the same
 * escapes, numbers and literals, raw bytes in strings passed as they are)
 * and declines rather than guess.
 */

#include "openai_chunk.h"
#include "jsonr.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_MAX_DEPTH 64

typedef struct {
    const unsigned char *p, *end;
    ragq_chat_chunk_t   *ck;
} scan_t;

/* Which object the members being read belong to. */
enum { IN_ROOT, IN_CHOICE, IN_DELTA, IN_OTHER };

/* The members read, one bit each, so a repeated one is seen. */
enum {
    F_NONE = 0,
    F_ERROR = 1,
    F_USAGE = 2,
    F_CHOICES = 4,
    F_FINISH = 8,
    F_DELTA = 16,
    F_REFUSAL = 32,
    F_CONTENT = 64
};

static int scan_value(scan_t *sc, int depth);
static int scan_object(scan_t *sc, int depth, int where);

static void
skip_ws(scan_t *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' ||
                               *sc->p == '\r' || *sc->p == '\t')) {
        sc->p++;
    }
}

/* At the opening quote: the raw text between the quotes. */
static int
scan_string(scan_t *sc, const char **s, size_t *n, int *esc)
{
    const unsigned char *b = sc->p + 1, *q;

    q = memchr(b, '"', (size_t) (sc->end - b));
    *esc = q != NULL && memchr(b, '\\', (size_t) (q - b)) != NULL;
    if (*esc) {
        for (q = b; q < sc->end && *q != '"'; q++) {
            if (*q == '\\') {
                q++;
            }
        }
        if (q >= sc->end ||
            !ragq_json_escapes_ok((const char *) b, (size_t) (q - b))) {
            return -1;
        }
    }
    if (q == NULL) {
        return -1;
    }
    *s = (const char *) b;
    *n = (size_t) (q - b);
    sc->p = q + 1;
    return 0;
}

static int
digits(scan_t *sc)
{
    if (sc->p >= sc->end || *sc->p < '0' || *sc->p > '9') {
        return -1;
    }
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') {
        sc->p++;
    }
    return 0;
}

static int
scan_number(scan_t *sc)
{
    if (*sc->p == '-') {
        sc->p++;
    }
    if (sc->p < sc->end && *sc->p == '0') {
        sc->p++;
    } else if (digits(sc) != 0) {
        return -1;
    }
    if (sc->p < sc->end && *sc->p == '.') {
        sc->p++;
        if (digits(sc) != 0) {
            return -1;
        }
    }
    if (sc->p < sc->end && (*sc->p == 'e' || *sc->p == 'E')) {
        sc->p++;
        if (sc->p < sc->end && (*sc->p == '+' || *sc->p == '-')) {
            sc->p++;
        }
        if (digits(sc) != 0) {
            return -1;
        }
    }
    return 0;
}

static int
literal(scan_t *sc, const char *word, size_t n)
{
    if ((size_t) (sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0) {
        return -1;
    }
    sc->p += n;
    return 0;
}

/* An array's elements; the first one read as a choice when first_choice. */
static int
scan_array(scan_t *sc, int depth, int first_choice)
{
    int first = 1;

    if (depth > CHUNK_MAX_DEPTH) {
        return -1;
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return 0;
    }
    for (;;) {
        skip_ws(sc);
        if (first && first_choice && sc->p < sc->end && *sc->p == '{') {
            sc->ck->has_choice = 1;
            if (scan_object(sc, depth + 1, IN_CHOICE) != 0) {
                return -1;
            }
        } else if (scan_value(sc, depth + 1) != 0) {
            return -1;
        }
        first = 0;
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == ']') {
            sc->p++;
            return 0;
        }
        return -1;
    }
}

static int
scan_value(scan_t *sc, int depth)
{
    const char *s;
    size_t      n;
    int         esc;

    skip_ws(sc);
    if (sc->p >= sc->end) {
        return -1;
    }
    switch (*sc->p) {
    case '{':
        return scan_object(sc, depth, IN_OTHER);
    case '[':
        return scan_array(sc, depth, 0);
    case '"':
        return scan_string(sc, &s, &n, &esc);
    case 't':
        return literal(sc, "true", 4);
    case 'f':
        return literal(sc, "false", 5);
    case 'n':
        return literal(sc, "null", 4);
    default:
        return scan_number(sc);
    }
}

static int
is(const char *k, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(k, name, n) == 0;
}

static int
member(int where, const char *k, size_t n)
{
    switch (where) {
    case IN_ROOT:
        return is(k, n, "choices") ? F_CHOICES
               : is(k, n, "usage") ? F_USAGE
               : is(k, n, "error") ? F_ERROR
                                   : F_NONE;
    case IN_CHOICE:
        return is(k, n, "delta")           ? F_DELTA
               : is(k, n, "finish_reason") ? F_FINISH
                                           : F_NONE;
    case IN_DELTA:
        return is(k, n, "content")   ? F_CONTENT
               : is(k, n, "refusal") ? F_REFUSAL
                                     : F_NONE;
    }
    return F_NONE;
}

/* A string member without escapes, or any other value, which jsonr's
 * ragq_jv_get_type(..., RAGQ_JSTR) would pass over. */
static int
plain_string(scan_t *sc, int depth, const char **s, size_t *n)
{
    int esc;

    if (*sc->p != '"') {
        return scan_value(sc, depth);
    }
    if (scan_string(sc, s, n, &esc) != 0 || esc) {
        return -1;
    }
    return 0;
}

/* At the value of a member this reader looks at (sc->p on its first byte). */
static int
scan_member(scan_t *sc, int depth, int field)
{
    ragq_chat_chunk_t *ck = sc->ck;
    int                esc;

    switch (field) {
    case F_ERROR:
        /* only null: anything else is the server's error, for jsonr */
        return literal(sc, "null", 4);
    case F_USAGE:
        return *sc->p == '{' ? -1 : scan_value(sc, depth);
    case F_CHOICES:
        return *sc->p == '[' ? scan_array(sc, depth, 1) : scan_value(sc, depth);
    case F_FINISH:
        return plain_string(sc, depth, &ck->finish, &ck->finish_len);
    case F_DELTA:
        if (*sc->p != '{') {
            return scan_value(sc, depth);
        }
        ck->has_delta = 1;
        return scan_object(sc, depth, IN_DELTA);
    case F_REFUSAL:
        return plain_string(sc, depth, &ck->refusal, &ck->refusal_len);
    case F_CONTENT:
        if (*sc->p == '"') {
            if (scan_string(sc, &ck->content, &ck->content_len, &esc) != 0) {
                return -1;
            }
            ck->content_escaped = esc;
            return 0;
        }
        /* null is no text; another type is jsonr's error to give */
        return literal(sc, "null", 4);
    }
    return scan_value(sc, depth);
}

static int
scan_object(scan_t *sc, int depth, int where)
{
    const char *k;
    size_t      kn;
    int         esc, field;
    unsigned    seen = 0;

    if (depth > CHUNK_MAX_DEPTH) {
        return -1;
    }
    sc->p++;
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
        return 0;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != '"' ||
            scan_string(sc, &k, &kn, &esc) != 0) {
            return -1;
        }
        field = F_NONE;
        if (where != IN_OTHER) {
            /* an escaped name might spell one of ours */
            if (esc) {
                return -1;
            }
            field = member(where, k, kn);
        }
        skip_ws(sc);
        if (sc->p >= sc->end || *sc->p != ':') {
            return -1;
        }
        sc->p++;
        skip_ws(sc);
        if (sc->p >= sc->end) {
            return -1;
        }
        if (field != F_NONE) {
            /* jsonr keeps the last of a repeated member: leave it that */
            if (seen & (unsigned) field) {
                return -1;
            }
            seen |= (unsigned) field;
            if (scan_member(sc, depth + 1, field) != 0) {
                return -1;
            }
        } else if (scan_value(sc, depth + 1) != 0) {
            return -1;
        }
        skip_ws(sc);
        if (sc->p < sc->end && *sc->p == ',') {
            sc->p++;
            continue;
        }
        if (sc->p < sc->end && *sc->p == '}') {
            sc->p++;
            return 0;
        }
        return -1;
    }
}

int
ragq_chat_chunk_read(const char *data, size_t len, ragq_chat_chunk_t *ck)
{
    scan_t sc;

    memset(ck, 0, sizeof(*ck));
    sc.p = (const unsigned char *) data;
    sc.end = sc.p + len;
    sc.ck = ck;
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{' || scan_object(&sc, 1, IN_ROOT) != 0) {
        return -1;
    }
    skip_ws(&sc);
    return sc.p == sc.end ? 0 : -1;
}

/* Where p (within an event of len bytes at data, content at [c, c + n))
 * lies: 1 before the content, 2 after it (off from the suffix), 0 NULL. */
static int
where_of(const char *p, const char *data, const char *c, size_t n, size_t *off)
{
    if (p == NULL) {
        return 0;
    }
    if (p < c) {
        *off = (size_t) (p - data);
        return 1;
    }
    *off = (size_t) (p - (c + n + 1));
    return 2;
}

static const char *
at(int where, size_t off, const char *data, const char *suffix)
{
    return where == 1 ? data + off : where == 2 ? suffix + off : NULL;
}

static void
shape_learn(ragq_chat_chunk_shape_t *sh, const char *data, size_t len,
            const ragq_chat_chunk_t *ck)
{
    size_t prefix = (size_t) (ck->content - data);
    size_t suffix = len - prefix - ck->content_len - 1;
    size_t need = prefix + suffix;

    sh->valid = 0;
    if (need > sh->cap) {
        char *b = realloc(sh->bytes, need);

        if (b == NULL) {
            return;
        }
        sh->bytes = b;
        sh->cap = need;
    }
    memcpy(sh->bytes, data, prefix);
    memcpy(sh->bytes + prefix, ck->content + ck->content_len + 1, suffix);
    sh->prefix = prefix;
    sh->suffix = suffix;
    sh->ck = *ck;
    sh->finish_where = where_of(ck->finish, data, ck->content, ck->content_len,
                                &sh->finish_off);
    sh->refusal_where = where_of(ck->refusal, data, ck->content,
                                 ck->content_len, &sh->refusal_off);
    sh->valid = 1;
}

int
ragq_chat_chunk_read_shaped(ragq_chat_chunk_shape_t *sh, const char *data,
                            size_t len, ragq_chat_chunk_t *ck)
{
    scan_t      sc;
    const char *s;
    size_t      n;
    int         esc;

    /*
     * The same bytes up to the content's opening quote put the reader in
     * the same place; the same bytes after its closing quote take it to
     * the same end.  Only the string between is read.
     */
    if (sh->valid && len > sh->prefix + sh->suffix &&
        memcmp(data, sh->bytes, sh->prefix) == 0) {
        sc.p = (const unsigned char *) data + sh->prefix - 1;
        sc.end = (const unsigned char *) data + len;
        sc.ck = ck;
        if (scan_string(&sc, &s, &n, &esc) == 0 &&
            (size_t) (sc.end - sc.p) == sh->suffix &&
            memcmp(sc.p, sh->bytes + sh->prefix, sh->suffix) == 0) {
            *ck = sh->ck;
            ck->content = s;
            ck->content_len = n;
            ck->content_escaped = esc;
            ck->finish =
                at(sh->finish_where, sh->finish_off, data, (const char *) sc.p);
            ck->refusal = at(sh->refusal_where, sh->refusal_off, data,
                             (const char *) sc.p);
            sh->hits++;
            return 0;
        }
    }
    if (ragq_chat_chunk_read(data, len, ck) != 0) {
        return -1;
    }
    if (ck->content != NULL) {
        shape_learn(sh, data, len, ck);
    }
    return 0;
}

void
ragq_chat_chunk_shape_free(ragq_chat_chunk_shape_t *sh)
{
    free(sh->bytes);
    memset(sh, 0, sizeof(*sh));
}
