/*
 * jsonr.c: the arena-backed JSON reader of jsonr.h.  Recursive descent,
 * depth-limited; numbers take an exact fast path (at most 15 significant
 * digits and a power of ten up to 22, where one IEEE operation is
 * correctly rounded) and strtod otherwise.
 */

#include "jsonr.h"
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

#define RAGQ_JSON_MAX_DEPTH 256
#define RAGQ_ARENA_FIRST    (16u * 1024)
#define RAGQ_ARENA_KEEP     (1024u * 1024)

typedef struct arena_blk_s arena_blk_t;

struct arena_blk_s {
    arena_blk_t *next;
    size_t       cap, used;
    /* data follows, 16-byte aligned by the header's size */
    size_t pad;
};

typedef struct {
    ragq_jdoc_t         *doc;
    const unsigned char *p, *end;
    int                  depth;
} parser_t;

static void *
arena_alloc(parser_t *ps, size_t n)
{
    arena_blk_t *b = ps->doc->blocks;
    size_t       cap;
    void        *r;

    n = (n + 15) & ~(size_t) 15;
    if (b == NULL || b->cap - b->used < n) {
        cap = b ? b->cap * 2 : RAGQ_ARENA_FIRST;
        while (cap < n) {
            cap *= 2;
        }
        b = malloc(sizeof(*b) + cap);
        if (b == NULL) {
            return NULL;
        }
        b->cap = cap;
        b->used = 0;
        b->next = ps->doc->blocks;
        ps->doc->blocks = b;
    }
    r = (char *) (b + 1) + b->used;
    b->used += n;
    return r;
}

/* Frees all blocks but one big enough for what the last parse needed. */
static void
arena_reset(ragq_jdoc_t *doc, size_t need)
{
    arena_blk_t *b = doc->blocks, *next;

    if (b == NULL) {
        return;
    }
    if (b->next == NULL && b->cap >= need) {
        b->used = 0;
        return;
    }
    while (b) {
        next = b->next;
        free(b);
        b = next;
    }
    doc->blocks = NULL;
    if (need > 0 && need <= RAGQ_ARENA_KEEP) {
        size_t cap = RAGQ_ARENA_FIRST;

        while (cap < need) {
            cap *= 2;
        }
        b = malloc(sizeof(*b) + cap);
        if (b) {
            b->cap = cap;
            b->used = 0;
            b->next = NULL;
            doc->blocks = b;
        }
    }
}

void
ragq_jdoc_free(ragq_jdoc_t *doc)
{
    arena_blk_t *b = doc->blocks, *next;

    /* every block: arena_reset keeps the first one for the next parse */
    for (; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    doc->blocks = NULL;
}

static void
skip_ws(parser_t *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' ||
                               *ps->p == '\r' || *ps->p == '\t')) {
        ps->p++;
    }
}

static int
hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;

        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return -1;
        }
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

int
ragq_json_escapes_ok(const char *in, size_t n)
{
    const unsigned char *r = (const unsigned char *) in, *q = r + n;
    unsigned             cp;

    for (; r < q; r++) {
        if (*r != '\\') {
            continue;
        }
        if (++r == q) {
            return 0;
        }
        switch (*r) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            break;
        case 'u':
            if (q - r < 5 || hex4(r + 1, &cp) != 0) {
                return 0;
            }
            r += 4;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

static int
unescape(const char *in, size_t n, char *out, size_t *outlen, int lone)
{
    const unsigned char *r = (const unsigned char *) in, *q = r + n;
    size_t               o = 0;

    while (r < q) {
        unsigned cp, lo;

        if (*r != '\\') {
            out[o++] = (char) *r++;
            continue;
        }
        if (++r == q) {
            return -1;
        }
        switch (*r) {
        case '"':
        case '\\':
        case '/':
            out[o++] = (char) *r++;
            break;
        case 'b':
            out[o++] = '\b';
            r++;
            break;
        case 'f':
            out[o++] = '\f';
            r++;
            break;
        case 'n':
            out[o++] = '\n';
            r++;
            break;
        case 'r':
            out[o++] = '\r';
            r++;
            break;
        case 't':
            out[o++] = '\t';
            r++;
            break;
        case 'u':
            if (q - r < 5 || hex4(r + 1, &cp) != 0) {
                return -1;
            }
            r += 5;
            if (cp >= 0xd800 && cp <= 0xdbff && q - r >= 6 && r[0] == '\\' &&
                r[1] == 'u' && hex4(r + 2, &lo) == 0 && lo >= 0xdc00 &&
                lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r += 6;
            } else if (cp >= 0xd800 && cp <= 0xdfff && !lone) {
                cp = 0xfffd; /* a lone surrogate has no UTF-8 form */
            }
            /* \uXXXX is 6 bytes in, at most 3 out; a pair 12 in, 4 out. */
            o += ragq_utf8_put(cp, out + o);
            break;
        default:
            return -1;
        }
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

int
ragq_json_unescape(const char *in, size_t n, char *out, size_t *outlen)
{
    return unescape(in, n, out, outlen, 0);
}

int
ragq_json_unescape_lone(const char *in, size_t n, char *out, size_t *outlen)
{
    return unescape(in, n, out, outlen, 1);
}

/* At the opening quote; *out / *outlen get the unescaped copy. */
static int
parse_string(parser_t *ps, const char **out, size_t *outlen)
{
    const unsigned char *s = ps->p + 1, *q;
    char                *buf;
    int                  esc = 0;

    /*
     * Find the end first: the unescaped text is never longer.  Most strings
     * have no escape: their end is the first quote, found with memchr.
     */
    q = memchr(s, '"', (size_t) (ps->end - s));
    if (q != NULL && memchr(s, '\\', (size_t) (q - s)) != NULL) {
        for (q = s; q < ps->end && *q != '"'; q++) {
            if (*q == '\\') {
                esc = 1;
                q++;
            }
        }
    }
    if (q == NULL || q >= ps->end) {
        return -1;
    }
    buf = arena_alloc(ps, (size_t) (q - s) + 1);
    if (buf == NULL) {
        return -1;
    }
    if (!esc) {
        memcpy(buf, s, (size_t) (q - s));
        buf[q - s] = '\0';
        *outlen = (size_t) (q - s);
    } else if (unescape((const char *) s, (size_t) (q - s), buf, outlen,
                        ps->doc->lone_surrogates) != 0) {
        return -1;
    }
    *out = buf;
    ps->p = q + 1;
    return 0;
}

static const double exact_pow10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int
parse_number(parser_t *ps, ragq_jv_t *v)
{
    const unsigned char *p = ps->p, *start = p;
    uint64_t             m = 0;
    int                  digits = 0, frac = 0, exp = 0, neg = 0, eneg = 0;
    int                  is_int = 1;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= ps->end || *p < '0' || *p > '9') {
        return -1;
    }
    if (*p == '0') {
        p++;
    } else {
        while (p < ps->end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (uint64_t) (*p - '0');
            }
            if (m || digits) {
                digits++;
            }
            if (digits > 19) {
                exp++; /* only for the fast path, which gives up anyway */
            }
            p++;
        }
    }
    if (p < ps->end && *p == '.') {
        is_int = 0;
        p++;
        if (p >= ps->end || *p < '0' || *p > '9') {
            return -1;
        }
        while (p < ps->end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (uint64_t) (*p - '0');
                frac++;
            }
            if (m || digits) {
                digits++;
            }
            p++;
        }
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        int e = 0;

        is_int = 0;
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= ps->end || *p < '0' || *p > '9') {
            return -1;
        }
        while (p < ps->end && *p >= '0' && *p <= '9') {
            if (e < 100000) {
                e = e * 10 + (*p - '0');
            }
            p++;
        }
        exp += eneg ? -e : e;
    }
    exp -= frac;
    v->type = RAGQ_JNUM;
    v->is_int = is_int;
    v->str = (const char *) start;
    v->len = (size_t) (p - start);
    if (digits <= 15 && exp >= -22 && exp <= 22) {
        double d = (double) m;

        d = exp < 0 ? d / exact_pow10[-exp] : d * exact_pow10[exp];
        v->num = neg ? -d : d;
    } else {
        char   tmp[64], *copy = tmp;
        size_t n = v->len;

        if (n >= sizeof(tmp) && (copy = arena_alloc(ps, n + 1)) == NULL) {
            return -1;
        }
        memcpy(copy, start, n);
        copy[n] = '\0';
        v->num = strtod(copy, NULL);
    }
    ps->p = p;
    return 0;
}

static int parse_value(parser_t *ps, ragq_jv_t *v);

static int
parse_container(parser_t *ps, ragq_jv_t *v, int obj)
{
    ragq_jv_t *last = NULL, *c;
    char       close = obj ? '}' : ']';

    if (++ps->depth > RAGQ_JSON_MAX_DEPTH) {
        return -1;
    }
    v->type = obj ? RAGQ_JOBJ : RAGQ_JARR;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        c = arena_alloc(ps, sizeof(*c));
        if (c == NULL) {
            return -1;
        }
        memset(c, 0, sizeof(*c));
        if (obj) {
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"' ||
                parse_string(ps, &c->key, &c->keylen) != 0) {
                return -1;
            }
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                return -1;
            }
            ps->p++;
        }
        if (parse_value(ps, c) != 0) {
            return -1;
        }
        if (last) {
            last->next = c;
        } else {
            v->child = c;
        }
        last = c;
        v->len++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return 0;
        }
        return -1;
    }
}

static int
literal(parser_t *ps, const char *word, size_t n)
{
    if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        return -1;
    }
    ps->p += n;
    return 0;
}

static int
parse_value(parser_t *ps, ragq_jv_t *v)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        return -1;
    }
    switch (*ps->p) {
    case '{':
        return parse_container(ps, v, 1);
    case '[':
        return parse_container(ps, v, 0);
    case '"':
        v->type = RAGQ_JSTR;
        return parse_string(ps, &v->str, &v->len);
    case 't':
        v->type = RAGQ_JBOOL;
        v->boolean = 1;
        return literal(ps, "true", 4);
    case 'f':
        v->type = RAGQ_JBOOL;
        return literal(ps, "false", 5);
    case 'n':
        v->type = RAGQ_JNULL;
        return literal(ps, "null", 4);
    default:
        return parse_number(ps, v);
    }
}

ragq_jv_t *
ragq_jdoc_parse(ragq_jdoc_t *doc, const char *text, size_t len)
{
    parser_t     ps;
    ragq_jv_t   *root;
    size_t       need = 0;
    arena_blk_t *b;

    /* Size the kept block for what the previous parse used. */
    for (b = doc->blocks; b; b = b->next) {
        need += b->used;
    }
    arena_reset(doc, need);
    if (text == NULL) {
        return NULL;
    }
    memset(&ps, 0, sizeof(ps));
    ps.doc = doc;
    ps.p = (const unsigned char *) text;
    ps.end = ps.p + len;
    root = arena_alloc(&ps, sizeof(*root));
    if (root == NULL) {
        return NULL;
    }
    memset(root, 0, sizeof(*root));
    if (parse_value(&ps, root) != 0) {
        return NULL;
    }
    skip_ws(&ps);
    return ps.p == ps.end ? root : NULL;
}

ragq_jv_t *
ragq_jv_get(const ragq_jv_t *o, const char *key)
{
    ragq_jv_t *c, *found = NULL;
    size_t     n = strlen(key);

    if (o == NULL || o->type != RAGQ_JOBJ) {
        return NULL;
    }
    for (c = o->child; c; c = c->next) {
        if (c->keylen == n && memcmp(c->key, key, n) == 0) {
            found = c;
        }
    }
    return found;
}

ragq_jv_t *
ragq_jv_get_type(const ragq_jv_t *o, const char *key, ragq_jtype_t t)
{
    ragq_jv_t *v = ragq_jv_get(o, key);

    return v && v->type == t ? v : NULL;
}

/* Up to this many members, repeated keys are found by comparing each
 * member with the others: no allocation, and faster than sorting. */
#define RAGQ_JV_SMALL_OBJECT 16

typedef struct {
    const ragq_jv_t *member;
    size_t           pos;
} jmember_t;

static int
same_key(const ragq_jv_t *a, const ragq_jv_t *b)
{
    return a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0;
}

/* By key, then by position: a key's members in a row, first one first. */
static int
jmember_cmp(const void *pa, const void *pb)
{
    const jmember_t *a = pa, *b = pb;
    size_t n = a->member->keylen < b->member->keylen ? a->member->keylen
                                                     : b->member->keylen;
    int    c = memcmp(a->member->key, b->member->key, n);

    if (c != 0) {
        return c;
    }
    if (a->member->keylen != b->member->keylen) {
        return a->member->keylen < b->member->keylen ? -1 : 1;
    }
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int
each_member_small(const ragq_jv_t *o,
                  int (*fn)(const ragq_jv_t *, const ragq_jv_t *, void *),
                  void *arg)
{
    const ragq_jv_t *c, *d, *val;
    int              rc;

    for (c = o->child; c; c = c->next) {
        for (d = o->child; d != c && !same_key(d, c); d = d->next) {
        }
        if (d != c) {
            continue; /* a repeated key, given where it first appeared */
        }
        for (val = c, d = c->next; d; d = d->next) {
            if (same_key(d, c)) {
                val = d;
            }
        }
        if ((rc = fn(c, val, arg)) != 0) {
            return rc;
        }
    }
    return 0;
}

int
ragq_jv_each_member(const ragq_jv_t *o,
                    int (*fn)(const ragq_jv_t *, const ragq_jv_t *, void *),
                    void *arg)
{
    const ragq_jv_t *c, **value;
    jmember_t       *sorted;
    size_t           n = 0, i, j;
    int              rc = 0;

    for (c = o->child; c; c = c->next) {
        n++;
    }
    if (n <= RAGQ_JV_SMALL_OBJECT) {
        return each_member_small(o, fn, arg);
    }
    sorted = malloc(n * sizeof(*sorted));
    value = calloc(n, sizeof(*value)); /* by position; NULL: repeated */
    if (sorted == NULL || value == NULL) {
        free(sorted);
        free(value);
        return -1;
    }
    for (i = 0, c = o->child; c; c = c->next, i++) {
        sorted[i].member = c;
        sorted[i].pos = i;
    }
    qsort(sorted, n, sizeof(*sorted), jmember_cmp);
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && same_key(sorted[j].member, sorted[i].member);
             j++) {
        }
        value[sorted[i].pos] = sorted[j - 1].member;
    }
    for (i = 0, c = o->child; c && rc == 0; c = c->next, i++) {
        if (value[i] != NULL) {
            rc = fn(c, value[i], arg);
        }
    }
    free(sorted);
    free(value);
    return rc;
}

static void to_json(ragq_jbuf_t *b, const ragq_jv_t *v);

typedef struct {
    ragq_jbuf_t *b;
    int          first;
} to_json_obj_t;

static int
to_json_member(const ragq_jv_t *key, const ragq_jv_t *value, void *arg)
{
    to_json_obj_t *t = arg;

    if (!t->first) {
        ragq_jbuf_add(t->b, ",", 1);
    }
    t->first = 0;
    ragq_jbuf_string(t->b, key->key, key->keylen);
    ragq_jbuf_add(t->b, ":", 1);
    to_json(t->b, value);
    return 0;
}

static void
to_json(ragq_jbuf_t *b, const ragq_jv_t *v)
{
    const ragq_jv_t *c;
    int              first = 1;
    to_json_obj_t    t;

    switch (v->type) {
    case RAGQ_JNULL:
        ragq_jbuf_add(b, "null", 4);
        break;
    case RAGQ_JBOOL:
        ragq_jbuf_adds(b, v->boolean ? "true" : "false");
        break;
    case RAGQ_JNUM:
        ragq_jbuf_add(b, v->str, v->len);
        break;
    case RAGQ_JSTR:
        ragq_jbuf_string(b, v->str, v->len);
        break;
    case RAGQ_JARR:
        ragq_jbuf_add(b, "[", 1);
        for (c = v->child; c; c = c->next) {
            if (!first) {
                ragq_jbuf_add(b, ",", 1);
            }
            first = 0;
            to_json(b, c);
        }
        ragq_jbuf_add(b, "]", 1);
        break;
    case RAGQ_JOBJ:
        ragq_jbuf_add(b, "{", 1);
        t.b = b;
        t.first = 1;
        if (ragq_jv_each_member(v, to_json_member, &t) != 0) {
            b->failed = 1; /* out of memory: ragq_jbuf_finish says so */
        }
        ragq_jbuf_add(b, "}", 1);
        break;
    }
}

char *
ragq_jv_to_json(const ragq_jv_t *v)
{
    ragq_jbuf_t b;

    ragq_jbuf_init(&b, 128);
    to_json(&b, v);
    return ragq_jbuf_finish(&b);
}
