/*
 * openai_stream.c: the incremental parser of streamed chat answers
 * (openai_stream.h).  Bytes are cut into lines as they come (the SSE rules
 * of the WHATWG spec: CRLF, LF or CR end a line, ":" starts a comment,
 * "data:" lines of one event are joined by LF, a blank line dispatches),
 * each event's data is one JSON chunk parsed with jsonr, and its delta
 * text is appended to the answer through a UTF-8 filter that holds an
 * incomplete character back until its last byte arrives.
 */

#include "openai_stream.h"

#include <stdlib.h>
#include <string.h>

#include "jsonr.h"
#include "openai.h"
#include "openai_chunk.h"
#include "utf8.h"

#define BAD "bad_upstream_response"

/* Chunks are parsed into this (one at a time, single-threaded). */
/* lone surrogates kept: add_text joins a pair split between two events */
static ragq_jdoc_t chunk_doc = {NULL, 1};

void
ragq_chat_stream_init(ragq_chat_stream_t *s, ragq_chat_piece_cb on_piece,
                      void *data)
{
    memset(s, 0, sizeof(*s));
    s->on_piece = on_piece;
    s->data = data;
}

void
ragq_chat_stream_free(ragq_chat_stream_t *s)
{
    free(s->line);
    free(s->ev);
    free(s->raw);
    free(s->answer);
    free(s->usage_json);
    free(s->refusal);
    free(s->unesc);
    ragq_chat_chunk_shape_free(&s->shape);
    memset(s, 0, sizeof(*s));
}

static int
fail(ragq_chat_stream_t *s, const char *code, const char *what,
     const char *detail)
{
    if (!s->failed) {
        ragq_upstream_error_set(&s->err, 200, 0, code, "%s%s%s", what,
                                detail ? ": " : "", detail ? detail : "");
        s->failed = 1;
    }
    return -1;
}

static int
grow(char **buf, size_t *cap, size_t need)
{
    size_t c = *cap ? *cap : 256;
    char  *p;

    if (need <= *cap) {
        return 0;
    }
    while (c < need) {
        c *= 2;
    }
    if ((p = realloc(*buf, c)) == NULL) {
        return -1;
    }
    *buf = p;
    *cap = c;
    return 0;
}

static int
put(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (grow(buf, cap, *len + n + 1) != 0) {
        return -1;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* p[0..n) (n < 4) is the beginning of a valid character cut short. */
static int
incomplete(const unsigned char *p, size_t n)
{
    static const unsigned char fill[] = {0x80, 0x90, 0xa0, 0xbf};
    unsigned char              t[4];
    size_t                     want, i;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        want = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        want = 3;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        want = 4;
    } else {
        return 0;
    }
    if (n >= want) {
        return 0;
    }
    for (i = 0; i < sizeof(fill); i++) {
        memcpy(t, p, n);
        memset(t + n, fill[i], want - n);
        if (ragq_utf8_seq(t, want) == want) {
            return 1;
        }
    }
    return 0;
}

/*
 * A UTF-16 surrogate in its 3-byte form (ED A0 80..ED BF BF): 1 high, 2
 * low, 0 neither.  Content gets one from an escaped lone surrogate (a
 * server that splits text between UTF-16 units sends "\ud83d", then
 * "\ude00" in the next event), or raw from a CESU-8 writer.
 */
static int
surrogate(const unsigned char *p, size_t n)
{
    if (n < 3 || p[0] != 0xed || p[1] < 0xa0 || p[1] > 0xbf || p[2] < 0x80 ||
        p[2] > 0xbf) {
        return 0;
    }
    return p[1] < 0xb0 ? 1 : 2;
}

/* A high and a low surrogate (3 bytes each) as the one character they make. */
static int
put_pair(ragq_chat_stream_t *s, const unsigned char *hi,
         const unsigned char *lo)
{
    uint32_t h = ((uint32_t) (hi[1] & 0x0f) << 6) | (hi[2] & 0x3f);
    uint32_t l = ((uint32_t) (lo[1] & 0x0f) << 6) | (lo[2] & 0x3f);
    char     out[4];

    ragq_utf8_put(0x10000 + (h << 10) + l, out);
    return put(&s->answer, &s->anslen, &s->anscap, out, 4);
}

/*
 * Appends text to the answer as valid UTF-8 and hands out what was added.
 * final: the body ended, so a held-back tail is invalid after all.
 */
static int
add_text(ragq_chat_stream_t *s, const char *text, size_t len, int final)
{
    size_t         start = s->anslen, i = 0, n, k;
    unsigned char *p;
    unsigned char  tmp[8];

    /* A high surrogate held back: joined by a low one, or U+FFFD. */
    if (s->npend == 3 && surrogate(s->pend, 3) == 1) {
        if (len == 0 && !final) {
            return 0;
        }
        if (surrogate((const unsigned char *) text, len) == 2) {
            if (put_pair(s, s->pend, (const unsigned char *) text) != 0) {
                return -1;
            }
            i = 3;
        } else if (put(&s->answer, &s->anslen, &s->anscap,
                       RAGQ_UTF8_REPLACEMENT, 3) != 0) {
            return -1;
        }
        s->npend = 0;
    }

    /* The held-back bytes first, completed by the start of text. */
    while (s->npend > 0) {
        k = 4 - s->npend < len - i ? 4 - s->npend : len - i;
        memcpy(tmp, s->pend, s->npend);
        memcpy(tmp + s->npend, text + i, k);
        n = ragq_utf8_seq(tmp, s->npend + k);
        if (n > 0) {
            /* whole now: its last n - npend bytes come from text */
            if (put(&s->answer, &s->anslen, &s->anscap, tmp, n) != 0) {
                return -1;
            }
            i += n - s->npend;
            s->npend = 0;
            break;
        }
        if (!final && incomplete(tmp, s->npend + k)) {
            memcpy(s->pend + s->npend, text + i, k);
            s->npend += k;
            i += k;
            break;
        }
        /* its first byte is invalid: U+FFFD, and the rest looked at again */
        if (put(&s->answer, &s->anslen, &s->anscap, RAGQ_UTF8_REPLACEMENT, 3) !=
            0) {
            return -1;
        }
        memmove(s->pend, s->pend + 1, --s->npend);
    }
    p = (unsigned char *) text;
    while (i < len) {
        /* A run of valid characters (a token is one) goes in with one copy. */
        for (k = i; k < len; k += n) {
            n = p[k] >= 0x01 && p[k] < 0x80 ? 1
                : p[k] == 0                 ? 0
                                            : ragq_utf8_seq(p + k, len - k);
            if (n == 0) {
                break;
            }
        }
        if (k > i) {
            if (put(&s->answer, &s->anslen, &s->anscap, p + i, k - i) != 0) {
                return -1;
            }
            i = k;
            continue;
        }
        if (!final && p[i] != 0 && incomplete(p + i, len - i)) {
            memcpy(s->pend, p + i, len - i);
            s->npend = len - i;
            break;
        }
        if ((n = surrogate(p + i, len - i)) != 0) {
            if (n == 1 && surrogate(p + i + 3, len - i - 3) == 2) {
                if (put_pair(s, p + i, p + i + 3) != 0) {
                    return -1;
                }
                i += 6;
                continue;
            }
            if (n == 1 && len - i == 3 && !final) {
                memcpy(s->pend, p + i, 3); /* its pair may come next */
                s->npend = 3;
                break;
            }
            i += 2; /* one U+FFFD for the three bytes */
        }
        if (put(&s->answer, &s->anslen, &s->anscap, RAGQ_UTF8_REPLACEMENT, 3) !=
            0) {
            return -1;
        }
        i++;
    }
    if (final) {
        for (k = 0; k < s->npend; k++) {
            if (put(&s->answer, &s->anslen, &s->anscap, RAGQ_UTF8_REPLACEMENT,
                    3) != 0) {
                return -1;
            }
        }
        s->npend = 0;
    }
    if (s->anslen > start && s->on_piece) {
        s->on_piece(s->answer + start, s->anslen - start, s->data);
    }
    return 0;
}

static int
keep_copy(char **dst, char *src)
{
    if (src == NULL) {
        return -1;
    }
    free(*dst);
    *dst = src;
    return 0;
}

static int
add_refusal(ragq_chat_stream_t *s, const char *text, size_t len)
{
    /* grown by doubling: a refusal sent a few bytes an event, up to the
     * body's cap, stays linear */
    if (put(&s->refusal, &s->refusallen, &s->refusalcap, text, len) != 0) {
        return fail(s, "internal_error", "out of memory", NULL);
    }
    return 0;
}

/* What openai_chunk.c read, as the jsonr path below would take it. */
static int
on_chunk(ragq_chat_stream_t *s, const ragq_chat_chunk_t *ck)
{
    const char *text = ck->content;
    size_t      len = ck->content_len;

    if (!ck->has_choice) {
        return 0;
    }
    if (ck->finish != NULL) {
        /* as strncpy below: up to a NUL byte, at most the field */
        const char *nul = memchr(ck->finish, '\0', ck->finish_len);
        size_t      n = nul ? (size_t) (nul - ck->finish) : ck->finish_len;

        n = n < sizeof(s->finish) - 1 ? n : sizeof(s->finish) - 1;
        memset(s->finish, 0, sizeof(s->finish));
        memcpy(s->finish, ck->finish, n);
    }
    if (!ck->has_delta) {
        return 0;
    }
    if (ck->refusal != NULL && ck->refusal_len > 0 &&
        add_refusal(s, ck->refusal, ck->refusal_len) != 0) {
        return -1;
    }
    if (text == NULL) {
        return 0;
    }
    if (ck->content_escaped) {
        if (grow(&s->unesc, &s->unesccap, len + 1) != 0) {
            return fail(s, "internal_error", "out of memory", NULL);
        }
        if (ragq_json_unescape_lone(text, len, s->unesc, &len) != 0) {
            /* openai_chunk.c declined bad escapes (ragq_json_escapes_ok):
             * kept so that a change there cannot pass an event on */
            return fail(s, BAD, "chat stream: a bad escape in content", NULL);
        }
        text = s->unesc;
    }
    if (len > 0 && add_text(s, text, len, 0) != 0) {
        return fail(s, "internal_error", "out of memory", NULL);
    }
    return 0;
}

/* One event's data: "[DONE]" or a chat.completion.chunk. */
static int
on_event(ragq_chat_stream_t *s, const char *data, size_t len)
{
    const ragq_jv_t  *root, *e, *m, *choices, *c, *delta, *v;
    ragq_chat_chunk_t ck;

    if (s->done) {
        return 0; /* nothing counts after [DONE] */
    }
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->done = 1;
        return 0;
    }
    if (!s->ev_error && !s->jsonr_only &&
        ragq_chat_chunk_read_shaped(&s->shape, data, len, &ck) == 0) {
        return on_chunk(s, &ck);
    }
    root = ragq_jdoc_parse(&chunk_doc, data, len);
    if (root == NULL || root->type != RAGQ_JOBJ) {
        return fail(s, BAD, "chat stream: an event is not a JSON object", NULL);
    }
    e = ragq_jv_get(root, "error");
    if (s->ev_error || (e && e->type != RAGQ_JNULL)) {
        m = e && e->type == RAGQ_JOBJ
                ? ragq_jv_get_type(e, "message", RAGQ_JSTR)
                : (e && e->type == RAGQ_JSTR ? e : NULL);
        return fail(s, BAD, "chat stream: the server sent an error",
                    m ? m->str : "(no message)");
    }
    if ((v = ragq_jv_get_type(root, "usage", RAGQ_JOBJ)) != NULL &&
        keep_copy(&s->usage_json, ragq_jv_to_json(v)) != 0) {
        return fail(s, "internal_error", "out of memory", NULL);
    }
    choices = ragq_jv_get_type(root, "choices", RAGQ_JARR);
    c = choices ? choices->child : NULL;
    if (c == NULL || c->type != RAGQ_JOBJ) {
        return 0; /* the usage chunk (choices: []), or a keep-alive */
    }
    if ((v = ragq_jv_get_type(c, "finish_reason", RAGQ_JSTR)) != NULL) {
        strncpy(s->finish, v->str, sizeof(s->finish) - 1);
    }
    if ((delta = ragq_jv_get_type(c, "delta", RAGQ_JOBJ)) == NULL) {
        return 0;
    }
    if ((v = ragq_jv_get_type(delta, "refusal", RAGQ_JSTR)) != NULL &&
        v->len > 0 && add_refusal(s, v->str, v->len) != 0) {
        return -1;
    }
    v = ragq_jv_get(delta, "content");
    if (v == NULL || v->type == RAGQ_JNULL) {
        return 0;
    }
    if (v->type != RAGQ_JSTR) {
        return fail(s, BAD, "chat stream: delta content is not a string", NULL);
    }
    if (v->len > 0 && add_text(s, v->str, v->len, 0) != 0) {
        return fail(s, "internal_error", "out of memory", NULL);
    }
    return 0;
}

/* One line, without its end. */
static int
on_line(ragq_chat_stream_t *s, const char *l, size_t n)
{
    const char *colon, *val;
    size_t      flen, vlen;

    if (n == 0) {
        int rc = 0;

        if (s->ev_data) {
            /* the data lines were joined with LF; the last one dropped */
            rc = on_event(s, s->ev ? s->ev : "", s->evlen ? s->evlen - 1 : 0);
        }
        s->evlen = 0;
        s->ev_data = s->ev_error = 0;
        return rc;
    }
    if (l[0] == ':') {
        return 0; /* a comment: ": keep-alive", ": OPENROUTER PROCESSING" */
    }
    colon = memchr(l, ':', n);
    flen = colon ? (size_t) (colon - l) : n;
    val = colon ? colon + 1 : l + n;
    vlen = colon ? n - flen - 1 : 0;
    if (vlen > 0 && *val == ' ') {
        val++;
        vlen--;
    }
    if (flen == 4 && memcmp(l, "data", 4) == 0) {
        s->ev_data = 1;
        if (put(&s->ev, &s->evlen, &s->evcap, val, vlen) != 0 ||
            put(&s->ev, &s->evlen, &s->evcap, "\n", 1) != 0) {
            return fail(s, "internal_error", "out of memory", NULL);
        }
    } else if (flen == 5 && memcmp(l, "event", 5) == 0) {
        s->ev_error = vlen == 5 && memcmp(val, "error", 5) == 0;
    }
    /* id, retry and unknown fields: nothing to do */
    return 0;
}

/* Where the line starting at buf[i] ends: its first CR or LF, or n. */
static size_t
line_end(const char *buf, size_t i, size_t n)
{
    const char *lf = memchr(buf + i, '\n', n - i);
    size_t      end = lf ? (size_t) (lf - buf) : n;
    const char *cr = memchr(buf + i, '\r', end - i);

    return cr ? (size_t) (cr - buf) : end;
}

static int
feed_sse(ragq_chat_stream_t *s, const char *buf, size_t n)
{
    size_t i = 0, j;

    while (i < n) {
        if (s->after_cr && buf[i] == '\n') {
            i++; /* the LF of a CRLF whose CR ended the last call's line */
        }
        s->after_cr = 0;
        j = line_end(buf, i, n);
        if (j == n) {
            if (put(&s->line, &s->linelen, &s->linecap, buf + i, n - i) != 0) {
                return fail(s, "internal_error", "out of memory", NULL);
            }
            return 0;
        }
        if (s->linelen > 0) {
            if (put(&s->line, &s->linelen, &s->linecap, buf + i, j - i) != 0) {
                return fail(s, "internal_error", "out of memory", NULL);
            }
            if (on_line(s, s->line, s->linelen) != 0) {
                return -1;
            }
            s->linelen = 0;
        } else if (on_line(s, buf + i, j - i) != 0) {
            return -1;
        }
        if (buf[j] == '\r') {
            if (j + 1 < n && buf[j + 1] == '\n') {
                j++;
            } else if (j + 1 == n) {
                s->after_cr = 1;
            }
        }
        i = j + 1;
    }
    return 0;
}

#define BOM "\xef\xbb\xbf"

int
ragq_chat_stream_feed(ragq_chat_stream_t *s, const char *buf, size_t n)
{
    size_t i = 0;

    if (s->failed) {
        return -1;
    }
    if (s->mode == 0) {
        /* A BOM first, even cut between pieces (a server writing byte by
         * byte): glued to the first line, it would hide that line's field
         * name and drop its event without a word. */
        while (!s->started && i < n) {
            if ((unsigned char) buf[i] != (unsigned char) BOM[s->bom]) {
                s->started = 1;
                break;
            }
            i++;
            if (++s->bom == 3) {
                s->started = 1;
            }
        }
        if (!s->started) {
            return 0;
        }
        if (s->bom > 0 && s->bom < 3) {
            /* Not a BOM after all: those bytes begin the body (not JSON). */
            s->mode = 1;
            if (feed_sse(s, BOM, (size_t) s->bom) != 0) {
                return -1;
            }
            s->bom = 0;
            return feed_sse(s, buf + i, n - i);
        }
        /* The first byte that is not white space tells. */
        while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' ||
                         buf[i] == '\n')) {
            i++;
        }
        if (i == n) {
            return 0;
        }
        s->mode = buf[i] == '{' ? 2 : 1;
    }
    if (s->mode == 2) {
        if (put(&s->raw, &s->rawlen, &s->rawcap, buf + i, n - i) != 0) {
            return fail(s, "internal_error", "out of memory", NULL);
        }
        return 0;
    }
    return feed_sse(s, buf + i, n - i);
}

int
ragq_chat_stream_end(ragq_chat_stream_t *s, char **answer, char **usage_json)
{
    *answer = NULL;
    *usage_json = NULL;
    if (s->failed) {
        return -1;
    }
    if (s->mode == 2) {
        /* The server ignored "stream": its one answer, as one piece. */
        char *text = NULL, *usage = NULL;
        int   rc;

        rc = ragq_openai_chat_parse(s->raw, s->rawlen, &text, &usage, &s->err);
        if (rc != 0) {
            s->failed = 1;
            return -1;
        }
        rc = add_text(s, text, strlen(text), 1);
        free(text);
        free(s->usage_json);
        s->usage_json = usage;
        if (rc != 0) {
            return fail(s, "internal_error", "out of memory", NULL);
        }
    } else {
        if (!s->done && s->finish[0] == '\0') {
            return fail(s, BAD,
                        "chat stream ended before its end (no [DONE], no "
                        "finish_reason)",
                        NULL);
        }
        if (add_text(s, "", 0, 1) != 0) {
            return fail(s, "internal_error", "out of memory", NULL);
        }
        if (s->anslen == 0) {
            if (s->refusal) {
                ragq_upstream_error_set(&s->err, 200, 0, "model_refused", "%s",
                                        s->refusal);
                s->failed = 1;
                return -1;
            }
            ragq_upstream_error_set(&s->err, 200, 0, BAD,
                                    "chat answer has empty content "
                                    "(finish_reason: %s)",
                                    s->finish[0] ? s->finish : "none");
            s->failed = 1;
            return -1;
        }
    }
    *answer = s->answer;
    *usage_json = s->usage_json;
    s->answer = s->usage_json = NULL;
    s->anslen = s->anscap = 0;
    return 0;
}
