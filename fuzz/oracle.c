/*
 * fuzz/oracle.c: what the fuzz targets check answers against: a strict
 * JSON checker (RFC 8259 grammar, I-JSON's UTF-8: no invalid sequences, no
 * lone surrogates, escaped or not) written apart from the module's and the
 * worker's readers, so that it does not share their mistakes.
 */
#include "oracle.h"

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    int                  depth;
    int                  max_depth;
    int                  lenient; /* in strings: control bytes, bytes that
                                     are not UTF-8, lone surrogate escapes */
} oracle_t;

static int value(oracle_t *o);

/* the code point of the UTF-8 sequence at o->p, -1 when it is not one */
static long
utf8_char(oracle_t *o)
{
    const unsigned char *p = o->p;
    long                 cp, min;
    int                  n, i;

    if (p[0] < 0x80) {
        o->p++;
        return p[0];
    }
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2, cp = p[0] & 0x1f, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3, cp = p[0] & 0x0f, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4, cp = p[0] & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (o->end - p < n) {
        return -1;
    }
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }
    o->p += n;
    return cp;
}

int
oracle_utf8(const unsigned char *p, size_t len)
{
    oracle_t o = {p, p + len, 0, 0, 0};

    while (o.p < o.end) {
        if (utf8_char(&o) < 0) {
            return 0;
        }
    }
    return 1;
}

static void
ws(oracle_t *o)
{
    while (o->p < o->end &&
           (*o->p == ' ' || *o->p == '\t' || *o->p == '\n' || *o->p == '\r')) {
        o->p++;
    }
}

static long
hex4(oracle_t *o)
{
    long v = 0;
    int  i, c;

    if (o->end - o->p < 4) {
        return -1;
    }
    for (i = 0; i < 4; i++) {
        c = o->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        } else {
            return -1;
        }
    }
    o->p += 4;
    return v;
}

static int
string(oracle_t *o)
{
    long cp, lo;

    if (o->p == o->end || *o->p != '"') {
        return 0;
    }
    o->p++;
    for (;;) {
        if (o->p == o->end || (*o->p < 0x20 && !o->lenient)) {
            return 0;
        }
        if (*o->p == '"') {
            o->p++;
            return 1;
        }
        if (*o->p != '\\') {
            if (utf8_char(o) < 0) {
                if (!o->lenient) {
                    return 0;
                }
                o->p++;
            }
            continue;
        }
        o->p++;
        if (o->p == o->end) {
            return 0;
        }
        switch (*o->p++) {
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
            cp = hex4(o);
            if (cp < 0) {
                return 0;
            }
            if (o->lenient) {
                break;
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return 0;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (o->end - o->p < 2 || o->p[0] != '\\' || o->p[1] != 'u') {
                    return 0;
                }
                o->p += 2;
                lo = hex4(o);
                if (lo < 0xdc00 || lo > 0xdfff) {
                    return 0;
                }
            }
            break;
        default:
            return 0;
        }
    }
}

static int
digits(oracle_t *o)
{
    const unsigned char *start = o->p;

    while (o->p < o->end && *o->p >= '0' && *o->p <= '9') {
        o->p++;
    }
    return o->p > start;
}

static int
number(oracle_t *o)
{
    if (o->p < o->end && *o->p == '-') {
        o->p++;
    }
    if (o->p == o->end) {
        return 0;
    }
    if (*o->p == '0') {
        o->p++;
    } else if (!digits(o)) {
        return 0;
    }
    if (o->p < o->end && *o->p == '.') {
        o->p++;
        if (!digits(o)) {
            return 0;
        }
    }
    if (o->p < o->end && (*o->p == 'e' || *o->p == 'E')) {
        o->p++;
        if (o->p < o->end && (*o->p == '+' || *o->p == '-')) {
            o->p++;
        }
        if (!digits(o)) {
            return 0;
        }
    }
    return 1;
}

static int
literal(oracle_t *o, const char *word, size_t len)
{
    if ((size_t) (o->end - o->p) < len || memcmp(o->p, word, len) != 0) {
        return 0;
    }
    o->p += len;
    return 1;
}

static int
container(oracle_t *o, unsigned char close)
{
    if (++o->depth > o->max_depth) {
        return 0;
    }
    o->p++;
    ws(o);
    if (o->p < o->end && *o->p == close) {
        o->p++;
        o->depth--;
        return 1;
    }
    for (;;) {
        ws(o);
        if (close == '}') {
            if (!string(o)) {
                return 0;
            }
            ws(o);
            if (o->p == o->end || *o->p != ':') {
                return 0;
            }
            o->p++;
        }
        if (!value(o)) {
            return 0;
        }
        ws(o);
        if (o->p == o->end) {
            return 0;
        }
        if (*o->p == ',') {
            o->p++;
            continue;
        }
        if (*o->p != close) {
            return 0;
        }
        o->p++;
        o->depth--;
        return 1;
    }
}

static int
value(oracle_t *o)
{
    ws(o);
    if (o->p == o->end) {
        return 0;
    }
    switch (*o->p) {
    case '{':
        return container(o, '}');
    case '[':
        return container(o, ']');
    case '"':
        return string(o);
    case 't':
        return literal(o, "true", 4);
    case 'f':
        return literal(o, "false", 5);
    case 'n':
        return literal(o, "null", 4);
    default:
        return number(o);
    }
}

static int
document(oracle_t *o)
{
    if (!value(o)) {
        return 0;
    }
    ws(o);
    return o->p == o->end;
}

int
oracle_json(const unsigned char *p, size_t len, int max_depth)
{
    oracle_t o = {p, p + len, 0, max_depth, 0};

    return document(&o);
}

int
oracle_json_grammar(const unsigned char *p, size_t len, int max_depth)
{
    oracle_t o = {p, p + len, 0, max_depth, 1};

    return document(&o);
}

int
oracle_json_object(const unsigned char *p, size_t len)
{
    oracle_t o = {p, p + len, 0, 1000, 0};

    ws(&o);
    return o.p < o.end && *o.p == '{' && oracle_json(p, len, 1000);
}
