/*
 * upstream.c: what every backend shares: sources and their JSON form, the
 * classification of upstream HTTP errors (codes, retryability,
 * Retry-After) and URL helpers.  No I/O.
 */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "jsonr.h"
#include "jsonw.h"
#include "upstream.h"
#include "utf8.h"

/* ---- sources ---- */

void
ragq_sources_free(ragq_source_t *sources, size_t n)
{
    if (sources == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(sources[i].id);
        free(sources[i].source);
        free(sources[i].text);
    }
    free(sources);
}

char *
ragq_sources_to_json(const ragq_source_t *sources, size_t n, size_t excerpt_max)
{
    ragq_jbuf_t b;
    const char *s;
    size_t      len;

    ragq_jbuf_init(&b, 64 + n * (excerpt_max ? excerpt_max + 96 : 512));
    ragq_jbuf_add(&b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            ragq_jbuf_add(&b, ",", 1);
        }
        s = sources[i].id ? sources[i].id : "";
        ragq_jbuf_add(&b, "{\"id\":", 6);
        ragq_jbuf_string(&b, s, strlen(s));
        ragq_jbuf_add(&b, ",\"score\":", 9);
        ragq_jbuf_number(&b, sources[i].score, 6);
        s = sources[i].source ? sources[i].source : "";
        ragq_jbuf_add(&b, ",\"source\":", 10);
        ragq_jbuf_string(&b, s, strlen(s));
        s = sources[i].text ? sources[i].text : "";
        len = strlen(s);
        if (excerpt_max) {
            len = ragq_utf8_cut(s, len, excerpt_max);
        }
        ragq_jbuf_add(&b, ",\"text\":", 8);
        ragq_jbuf_string(&b, s, len);
        ragq_jbuf_add(&b, "}", 1);
    }
    ragq_jbuf_add(&b, "]", 1);
    return ragq_jbuf_finish(&b);
}

/* ---- errors ---- */

/* Copies s[0..len) into an error message: valid UTF-8, control characters
 * as spaces, trimmed, cut on a character boundary to fit. */
static void
set_message(ragq_upstream_error_t *err, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, o = 0, l, cap = sizeof(err->message) - 1;

    while (len && isspace(p[len - 1])) {
        len--;
    }
    while (i < len && isspace(p[i])) {
        i++;
    }
    while (i < len) {
        l = ragq_utf8_seq(p + i, len - i);
        if (l == 0 || p[i] == 0) {
            if (o + 3 > cap) {
                break;
            }
            memcpy(err->message + o, RAGQ_UTF8_REPLACEMENT, 3);
            o += 3;
            i++;
            continue;
        }
        if (o + l > cap) {
            break;
        }
        if (l == 1 && (p[i] < 0x20 || p[i] == 0x7f)) {
            err->message[o++] = ' ';
        } else {
            memcpy(err->message + o, p + i, l);
            o += l;
        }
        i += l;
    }
    err->message[o] = '\0';
}

static void
set_code(ragq_upstream_error_t *err, const char *code)
{
    snprintf(err->code, sizeof(err->code), "%s", code);
}

void
ragq_upstream_error_set(ragq_upstream_error_t *err, int http_status,
                        int retryable, const char *code, const char *fmt, ...)
{
    va_list ap;
    char    tmp[sizeof(err->message)];

    err->http_status = http_status;
    err->retryable = retryable;
    err->retry_after_ms = -1;
    set_code(err, code ? code : "upstream_error");
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    set_message(err, tmp, strlen(tmp));
}

/* Seconds or milliseconds as decimal digits with an optional fraction
 * ("7", "1.5"); -1 when it is anything else. strtod alone would also take
 * hex ("0x10"), exponents ("1e3"), signs, "inf" and "nan". */
static long
parse_delay(const char *v, double unit_ms)
{
    const char *p;
    char       *end;
    double      d;
    size_t      digits = 0, dots = 0;

    while (isspace((unsigned char) *v)) {
        v++;
    }
    for (p = v; isdigit((unsigned char) *p) || *p == '.'; p++) {
        if (*p == '.') {
            dots++;
        } else {
            digits++;
        }
    }
    if (digits == 0 || dots > 1) {
        return -1;
    }
    errno = 0;
    d = strtod(v, &end);
    if (end != p || errno == ERANGE) {
        return -1;
    }
    while (isspace((unsigned char) *end)) {
        end++;
    }
    if (*end != '\0' || !isfinite(d) || d < 0) {
        return -1;
    }
    d = ceil(d * unit_ms);
    if (d > 1e12) {
        d = 1e12; /* some 30 years: no overflow, and plainly "too long" */
    }
    return (long) d;
}

/* An HTTP-date (RFC 9110: IMF-fixdate, RFC 850 or asctime form) as a delay
 * from now; -1 when it is not one. */
static long
parse_http_date(const char *v)
{
    static const char *formats[] = {"%a, %d %b %Y %H:%M:%S GMT",
                                    "%A, %d-%b-%y %H:%M:%S GMT",
                                    "%a %b %d %H:%M:%S %Y"};
    struct tm          tm;
    const char        *end;
    time_t             t, now;

    while (isspace((unsigned char) *v)) {
        v++;
    }
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(v, formats[i], &tm);
        if (end == NULL) {
            continue;
        }
        while (isspace((unsigned char) *end)) {
            end++;
        }
        if (*end != '\0') {
            continue;
        }
        t = timegm(&tm);
        if (t == (time_t) -1) {
            return -1;
        }
        now = time(NULL);
        if (t <= now) {
            return 0;
        }
        if ((double) (t - now) > 1e9) {
            return (long) 1e12;
        }
        return (long) (t - now) * 1000L;
    }
    return -1;
}

static long
retry_after_ms(const char *retry_after, const char *retry_after_ms)
{
    long ms;

    if (retry_after_ms != NULL) {
        ms = parse_delay(retry_after_ms, 1.0);
        if (ms >= 0) {
            return ms;
        }
    }
    if (retry_after != NULL) {
        ms = parse_delay(retry_after, 1000.0);
        if (ms >= 0) {
            return ms;
        }
        return parse_http_date(retry_after);
    }
    return -1;
}

/* Error bodies are parsed one at a time (single-threaded programs). */
static ragq_jdoc_t err_doc = RAGQ_JDOC_INIT;

/* Member key of o when it is a string, else NULL. */
static const char *
jstr(const ragq_jv_t *o, const char *key)
{
    const ragq_jv_t *v = ragq_jv_get_type(o, key, RAGQ_JSTR);

    return v ? v->str : NULL;
}

/* A value as text: strings as they are, numbers as written, the rest as
 * compact JSON. */
static void
add_text(ragq_jbuf_t *b, const ragq_jv_t *v)
{
    char *txt;

    if (v->type == RAGQ_JSTR || v->type == RAGQ_JNUM) {
        ragq_jbuf_add(b, v->str, v->len);
        return;
    }
    if ((txt = ragq_jv_to_json(v)) != NULL) {
        ragq_jbuf_adds(b, txt);
        free(txt);
    }
}

/* FastAPI's validation errors: [{"loc":[...],"msg":"..."}] -> "a.b: msg; ..."
 */
static void
detail_list(ragq_jbuf_t *b, const ragq_jv_t *arr)
{
    const ragq_jv_t *it, *loc, *part;
    const char      *msg;

    for (it = arr->child; it && b->len < 1024; it = it->next) {
        if (it != arr->child) {
            ragq_jbuf_adds(b, "; ");
        }
        loc = ragq_jv_get_type(it, "loc", RAGQ_JARR);
        if (loc) {
            for (part = loc->child; part; part = part->next) {
                if (part != loc->child) {
                    ragq_jbuf_adds(b, ".");
                }
                add_text(b, part);
            }
            ragq_jbuf_adds(b, ": ");
        }
        msg = jstr(it, "msg");
        if (msg) {
            ragq_jbuf_adds(b, msg);
        } else {
            char *txt = ragq_jv_to_json(it);

            if (txt) {
                ragq_jbuf_adds(b, txt);
                free(txt);
            }
        }
    }
}

/*
 * The upstream's own message, in the order the reference gives: Qdrant's
 * status.error; error.message (OpenAI, Ollama, llama.cpp, vLLM); a string
 * "error" (Ollama native, TEI); "detail" (FastAPI-based servers); a flat
 * "message" (old vLLM).  *ocode gets an OpenAI string code if any (valid
 * until the next parse).  Returns 0 when the body held none of these.
 */
static int
body_message(ragq_upstream_error_t *err, const ragq_jv_t *root,
             const char **ocode)
{
    const ragq_jv_t *v, *e;
    const char      *s;
    ragq_jbuf_t      b;
    char            *txt;

    *ocode = NULL;
    if (root == NULL || root->type != RAGQ_JOBJ) {
        return 0;
    }
    if ((v = ragq_jv_get(root, "status")) != NULL &&
        (s = jstr(v, "error")) != NULL) {
        set_message(err, s, strlen(s));
        return 1;
    }
    if ((e = ragq_jv_get(root, "error")) != NULL) {
        if (e->type == RAGQ_JSTR) {
            set_message(err, e->str, e->len);
            return 1;
        }
        if (e->type == RAGQ_JOBJ) {
            *ocode = jstr(e, "code");
            s = jstr(e, "message");
            if (s == NULL || *s == '\0') {
                s = *ocode ? *ocode : jstr(e, "type");
            }
            if (s != NULL && *s != '\0') {
                set_message(err, s, strlen(s));
                return 1;
            }
        }
    }
    if ((v = ragq_jv_get(root, "detail")) != NULL) {
        if (v->type == RAGQ_JSTR) {
            set_message(err, v->str, v->len);
            return 1;
        }
        ragq_jbuf_init(&b, 256);
        if (v->type == RAGQ_JARR) {
            detail_list(&b, v);
        } else {
            add_text(&b, v);
        }
        txt = ragq_jbuf_finish(&b);
        if (txt != NULL) {
            set_message(err, txt, strlen(txt));
            free(txt);
            return 1;
        }
    }
    if ((s = jstr(root, "message")) != NULL) {
        *ocode = jstr(root, "code");
        set_message(err, s, strlen(s));
        return 1;
    }
    return 0;
}

static const char *
status_reason(long status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

void
ragq_upstream_error_from_http(ragq_upstream_error_t *err, const char *api,
                              long status, const char *retry_after,
                              const char *retry_after_ms_hdr, const char *body,
                              size_t len)
{
    const ragq_jv_t *root = NULL;
    const char      *ocode = NULL;
    int              is_qdrant, is_openai, have;
    char             code[64];

    if (api == NULL) {
        api = "upstream";
    }
    if (body == NULL) {
        len = 0;
    }
    is_qdrant = strcmp(api, "qdrant") == 0;
    is_openai = strcmp(api, "embeddings") == 0 || strcmp(api, "chat") == 0;

    err->http_status = (status >= 0 && status <= 999) ? (int) status : 0;
    err->retry_after_ms = retry_after_ms(retry_after, retry_after_ms_hdr);
    err->retryable = status == 408 || status == 409 || status == 429 ||
                     (status >= 500 && status <= 599);

    root = len ? ragq_jdoc_parse(&err_doc, body, len) : NULL;
    have = body_message(err, root, &ocode);
    if (!have) {
        while (len && isspace((unsigned char) *body)) {
            body++;
            len--;
        }
        if (len) {
            /* Plain text (Qdrant's 401) or an HTML page from a proxy. */
            set_message(err, body, len);
        } else {
            snprintf(err->message, sizeof(err->message),
                     "HTTP %ld%s%s from %s with an empty body", status,
                     *status_reason(status) ? " " : "", status_reason(status),
                     api);
        }
    }

    if (status == 401 || status == 403) {
        set_code(err, "unauthorized");
    } else if (status == 404 && is_openai) {
        set_code(err, "model_not_found");
    } else if (status == 404 && is_qdrant) {
        set_code(err, "collection_not_found");
    } else if ((status == 400 || status == 422) && is_qdrant &&
               strcasestr(err->message, "vector dimension error") != NULL) {
        set_code(err, "vector_size_mismatch");
    } else if (status == 400 || status == 422) {
        set_code(err, "bad_request");
    } else if (status == 429 && ocode != NULL &&
               strcmp(ocode, "insufficient_quota") == 0) {
        /* OpenAI's "out of credit": retrying cannot help. */
        set_code(err, "insufficient_quota");
        err->retryable = 0;
    } else if (status == 429) {
        set_code(err, "rate_limited");
    } else if (status == 408) {
        set_code(err, "upstream_timeout");
    } else if (status == 409) {
        set_code(err, "upstream_conflict");
    } else if (status >= 500 && status <= 599) {
        set_code(err, "upstream_error");
    } else {
        snprintf(code, sizeof(code), "upstream_http_%ld", status);
        set_code(err, code);
    }
}

/* ---- URLs and headers ---- */

int
ragq_auth_header(const char *name, const char *prefix, const char *key,
                 char **out)
{
    size_t n;

    *out = NULL;
    if (key == NULL || key[0] == '\0') {
        return 0;
    }
    n = strlen(name) + strlen(prefix) + strlen(key) + 3;
    if ((*out = malloc(n)) == NULL) {
        return -1;
    }
    snprintf(*out, n, "%s: %s%s", name, prefix, key);
    return 0;
}

char *
ragq_url_join(const char *base, const char *path)
{
    size_t bl, pl;
    char  *u;

    base = base ? base : "";
    path = path ? path : "";
    bl = strlen(base);
    while (bl && base[bl - 1] == '/') {
        bl--;
    }
    while (*path == '/') {
        path++;
    }
    pl = strlen(path);
    u = malloc(bl + 1 + pl + 1);
    if (u == NULL) {
        return NULL;
    }
    memcpy(u, base, bl);
    u[bl] = '/';
    memcpy(u + bl + 1, path, pl);
    u[bl + 1 + pl] = '\0';
    return u;
}

char *
ragq_url_escape_segment(const char *segment)
{
    static const char    hex[] = "0123456789ABCDEF";
    const unsigned char *p;
    size_t               n;
    char                *out, *o;
    int                  dots;

    segment = segment ? segment : "";
    n = strlen(segment);
    out = malloc(n * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    /* "." and ".." would be removed or climb a level when the URL is
     * normalised (curl does it), so their dots are escaped too. */
    dots = strspn(segment, ".") == n;
    o = out;
    for (p = (const unsigned char *) segment; *p; p++) {
        /* RFC 3986 unreserved characters stay; everything else is escaped,
         * sub-delims included, so the result is one segment anywhere. */
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '~' ||
            (*p == '.' && !dots)) {
            *o++ = (char) *p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 0xf];
        }
    }
    *o = '\0';
    return out;
}
