/*
 * http1_parse.c: HTTP/1.x answers, read as they come (see http1_parse.h):
 * the status line, headers (framing and connection reuse decided here),
 * a body framed by Content-Length, by chunks or by the connection's close,
 * and 1xx interim answers skipped.  Strict where a lenient reading could
 * take one answer for another on a kept connection: one Content-Length,
 * digits only; chunk sizes in hex that fit; no folded header lines; no
 * reuse after "close" on any Connection line, after both framings, or
 * after chunks in an HTTP/1.0 answer.  The Keep-Alive header's timeout
 * is passed on (http1.c drops an idle connection before the server
 * does).
 */

#include "http1_parse.h"

#include <string.h>
#include <strings.h>

enum {
    S_STATUS,
    S_HEADER,
    S_BODY_LENGTH,
    S_BODY_CLOSE,
    S_CHUNK_SIZE,
    S_CHUNK_DATA,
    S_CHUNK_END,
    S_TRAILER,
    S_DONE,
    S_ERROR
};

void
ragq_h1_parser_init(ragq_h1_parser_t *p)
{
    memset(p, 0, sizeof(*p));
    p->state = S_STATUS;
    p->length = -1;
    p->keep_alive_s = -1;
}

static ragq_h1_event_t
fail(ragq_h1_parser_t *p, const char *why)
{
    p->state = S_ERROR;
    p->error = why;
    return RAGQ_H1_ERROR;
}

/* A whole line at buf (its end without CR/LF in *len), or NULL. */
static const char *
line_at(const char *buf, size_t n, size_t *len, size_t *used)
{
    const char *lf = memchr(buf, '\n', n);
    size_t      l;

    if (lf == NULL) {
        return NULL;
    }
    l = (size_t) (lf - buf);
    *used = l + 1;
    if (l > 0 && buf[l - 1] == '\r') {
        l--;
    }
    *len = l;
    return buf;
}

/*
 * The next item of the comma-separated list v (n bytes) from *i: its
 * bounds without blanks in *s, *e; 0 when the list has no more.
 */
static int
next_item(const char *v, size_t n, size_t *i, size_t *s, size_t *e)
{
    while (*i < n && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ',')) {
        (*i)++;
    }
    if (*i >= n) {
        return 0;
    }
    *s = *i;
    while (*i < n && v[*i] != ',') {
        (*i)++;
    }
    *e = *i;
    while (*e > *s && (v[*e - 1] == ' ' || v[*e - 1] == '\t')) {
        (*e)--;
    }
    return 1;
}

/* Does the comma-separated list v (n bytes) hold token t? */
static int
has_token(const char *v, size_t n, const char *t)
{
    size_t tl = strlen(t), i = 0, s, e;

    while (next_item(v, n, &i, &s, &e)) {
        if (e - s == tl && strncasecmp(v + s, t, tl) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * The seconds of "timeout=N" in a Keep-Alive value ("timeout=5, max=100"),
 * -1 when it has none (or not in that form, or over 9 digits).
 */
static int64_t
idle_timeout(const char *v, size_t n)
{
    size_t  i = 0, s, e, d;
    int64_t t;

    while (next_item(v, n, &i, &s, &e)) {
        if (e - s < 9 || strncasecmp(v + s, "timeout=", 8) != 0) {
            continue;
        }
        if (e - s - 8 > 9) {
            return -1;
        }
        for (t = 0, d = s + 8; d < e; d++) {
            if (v[d] < '0' || v[d] > '9') {
                return -1;
            }
            t = t * 10 + (v[d] - '0');
        }
        return t;
    }
    return -1;
}

static int
is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static ragq_h1_event_t
status_line(ragq_h1_parser_t *p, const char *l, size_t n)
{
    /* "HTTP/1.1 200 OK"; the reason may be empty or missing. */
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' ||
        l[8] != ' ' || l[9] < '1' || l[9] > '5' || l[10] < '0' || l[10] > '9' ||
        l[11] < '0' || l[11] > '9' || (n > 12 && l[12] != ' ')) {
        return fail(p, "not an HTTP/1.x status line");
    }
    p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    p->keep_alive = l[7] != '0';
    p->http10 = l[7] == '0';
    p->closing = 0;
    p->keep_alive_s = -1;
    p->chunked = 0;
    p->length = -1;
    p->state = S_HEADER;
    return RAGQ_H1_MORE;
}

static ragq_h1_event_t
header_line(ragq_h1_parser_t *p, const char *l, size_t n)
{
    const char *colon = memchr(l, ':', n);
    size_t      nl, vl, i;
    const char *v;

    if (l[0] == ' ' || l[0] == '\t') {
        return fail(p, "folded header line");
    }
    if (colon == NULL || colon == l) {
        return fail(p, "header line without a name");
    }
    nl = (size_t) (colon - l);
    for (i = 0; i < nl; i++) {
        if (!is_tchar((unsigned char) l[i])) {
            return fail(p, "bad character in a header name");
        }
    }
    v = colon + 1;
    vl = n - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
        vl--;
    }
    if (p->state == S_TRAILER) {
        return RAGQ_H1_MORE; /* trailers are read and dropped */
    }
    if (nl == 14 && strncasecmp(l, "content-length", 14) == 0) {
        int64_t len = 0;

        if (vl == 0 || vl > 18) {
            return fail(p, "bad Content-Length");
        }
        for (i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9') {
                return fail(p, "bad Content-Length");
            }
            len = len * 10 + (v[i] - '0');
        }
        if (p->length >= 0 && p->length != len) {
            return fail(p, "two different Content-Lengths");
        }
        p->length = len;
    } else if (nl == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
        if (vl == 7 && strncasecmp(v, "chunked", 7) == 0) {
            p->chunked = 1;
        } else if (!(vl == 8 && strncasecmp(v, "identity", 8) == 0)) {
            return fail(p, "unsupported Transfer-Encoding");
        }
    } else if (nl == 16 && strncasecmp(l, "content-encoding", 16) == 0) {
        /* None is asked for (no Accept-Encoding is sent). */
        if (!(vl == 8 && strncasecmp(v, "identity", 8) == 0)) {
            return fail(p, "unsupported Content-Encoding");
        }
    } else if (nl == 10 && strncasecmp(l, "connection", 10) == 0) {
        /* "close" wins over any keep-alive, on this line or another. */
        if (has_token(v, vl, "close")) {
            p->closing = 1;
            p->keep_alive = 0;
        } else if (has_token(v, vl, "keep-alive") && !p->closing) {
            p->keep_alive = 1;
        }
    } else if (nl == 10 && strncasecmp(l, "keep-alive", 10) == 0) {
        p->keep_alive_s = idle_timeout(v, vl);
    }
    p->name = l;
    p->name_len = nl;
    p->data = v;
    p->len = vl;
    return RAGQ_H1_HEADER;
}

/* The blank line after the headers: interim answer, or the body's framing. */
static ragq_h1_event_t
head_end(ragq_h1_parser_t *p)
{
    if (p->status < 200) {
        if (p->status == 101) {
            return fail(p, "unexpected protocol switch");
        }
        p->state = S_STATUS; /* 100 Continue, 103 Early Hints: skipped */
        return RAGQ_H1_MORE;
    }
    if (p->status == 204 || p->status == 304) {
        p->state = S_DONE;
    } else if (p->chunked) {
        /* Both framings given: the chunks win, the connection is not
         * trusted with another request (RFC 9112 6.3); nor after chunks
         * in an HTTP/1.0 answer, which cannot have any (6.1). */
        if (p->length >= 0 || p->http10) {
            p->keep_alive = 0;
        }
        p->state = S_CHUNK_SIZE;
    } else if (p->length >= 0) {
        p->left = (uint64_t) p->length;
        p->state = p->left ? S_BODY_LENGTH : S_DONE;
    } else {
        p->keep_alive = 0;
        p->state = S_BODY_CLOSE;
    }
    return RAGQ_H1_HEAD;
}

static ragq_h1_event_t
chunk_size(ragq_h1_parser_t *p, const char *l, size_t n)
{
    uint64_t size = 0;
    size_t   i = 0;

    while (i < n &&
           ((l[i] >= '0' && l[i] <= '9') || (l[i] >= 'a' && l[i] <= 'f') ||
            (l[i] >= 'A' && l[i] <= 'F'))) {
        /* At most 15 digits after any leading zeros (1*HEXDIG). */
        if (size >> 56) {
            return fail(p, "chunk size too large");
        }
        size = size * 16 + (uint64_t) (l[i] <= '9'   ? l[i] - '0'
                                       : l[i] <= 'F' ? l[i] - 'A' + 10
                                                     : l[i] - 'a' + 10);
        i++;
    }
    if (i == 0) {
        return fail(p, "bad chunk size");
    }
    while (i < n && (l[i] == ' ' || l[i] == '\t')) {
        i++;
    }
    if (i < n && l[i] != ';') {
        return fail(p, "bad chunk size");
    }
    p->left = size;
    p->state = size ? S_CHUNK_DATA : S_TRAILER;
    return RAGQ_H1_MORE;
}

static ragq_h1_event_t
body_bytes(ragq_h1_parser_t *p, const char *buf, size_t n, size_t *used,
           int next)
{
    size_t take = n;

    if (p->state != S_BODY_CLOSE && (uint64_t) take > p->left) {
        take = (size_t) p->left;
    }
    p->data = buf;
    p->len = take;
    *used = take;
    if (p->state != S_BODY_CLOSE) {
        p->left -= take;
        if (p->left == 0) {
            p->state = next;
        }
    }
    return RAGQ_H1_BODY;
}

ragq_h1_event_t
ragq_h1_parse(ragq_h1_parser_t *p, const char *buf, size_t n, size_t *used)
{
    const char     *l;
    size_t          len, took;
    ragq_h1_event_t ev;

    *used = 0;
    for (;;) {
        switch (p->state) {
        case S_DONE:
            return RAGQ_H1_DONE;
        case S_ERROR:
            return RAGQ_H1_ERROR;
        case S_BODY_LENGTH:
        case S_BODY_CLOSE:
        case S_CHUNK_DATA:
            if (n == 0) {
                return RAGQ_H1_MORE;
            }
            ev = body_bytes(p, buf, n, &took,
                            p->state == S_CHUNK_DATA ? S_CHUNK_END : S_DONE);
            *used += took;
            return ev;
        case S_CHUNK_END:
            if (n == 0 || (buf[0] == '\r' && n < 2)) {
                return RAGQ_H1_MORE;
            }
            took = buf[0] == '\n' ? 1 : 2;
            if (buf[0] != '\n' && (buf[0] != '\r' || buf[1] != '\n')) {
                return fail(p, "chunk not followed by CRLF");
            }
            buf += took;
            n -= took;
            *used += took;
            p->state = S_CHUNK_SIZE;
            continue;
        default:
            break;
        }

        /* The states that read whole lines. */
        if (n == 0) {
            return RAGQ_H1_MORE;
        }
        if ((l = line_at(buf, n, &len, &took)) == NULL) {
            if (p->head + n > RAGQ_H1_MAX_HEAD) {
                return fail(p, "answer head too large");
            }
            return RAGQ_H1_MORE;
        }
        if (p->state != S_CHUNK_SIZE) {
            p->head += took;
            if (p->head > RAGQ_H1_MAX_HEAD) {
                return fail(p, "answer head too large");
            }
        }
        p->took = 1;
        buf += took;
        n -= took;
        *used += took;
        switch (p->state) {
        case S_STATUS:
            ev = status_line(p, l, len);
            break;
        case S_HEADER:
            ev = len == 0 ? head_end(p) : header_line(p, l, len);
            break;
        case S_CHUNK_SIZE:
            ev = chunk_size(p, l, len);
            break;
        default: /* S_TRAILER */
            if (len == 0) {
                p->state = S_DONE;
                return RAGQ_H1_DONE;
            }
            ev = header_line(p, l, len);
            break;
        }
        if (ev != RAGQ_H1_MORE) {
            return ev;
        }
    }
}

ragq_h1_event_t
ragq_h1_parse_eof(ragq_h1_parser_t *p)
{
    if (p->state == S_BODY_CLOSE || p->state == S_DONE) {
        p->state = S_DONE;
        return RAGQ_H1_DONE;
    }
    if (p->state == S_ERROR) {
        return RAGQ_H1_ERROR;
    }
    return fail(p, p->took ? "connection closed before the answer was complete"
                           : "connection closed without an answer");
}
