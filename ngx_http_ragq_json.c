/*
 * ragq: JSON text and UTF-8 for the module: validating UTF-8, escaping
 * strings into JSON (invalid bytes become U+FFFD), a small strict JSON
 * reader (strings with every escape and only UTF-8, numbers, skipping any
 * value to a depth limit, validating a whole document), and the writers of
 * stored text as JSON: integers canonically, JSON documents with invalid
 * UTF-8 repaired. No allocation: callers own buffers.
 */

#include "ngx_http_ragq_json.h"


#define NGX_HTTP_RAGQ_JSON_DEPTH 32


/* ---- UTF-8 and JSON text ---- */


/* length of the valid UTF-8 sequence at p, 0 if invalid (overlongs,
 * surrogates and code points above U+10FFFF are invalid) */
static size_t
ngx_http_ragq_utf8_seq(u_char *p, u_char *end)
{
    u_char c = p[0];

    if (c < 0x80) {
        return 1;
    }

    if (c < 0xc2) {
        return 0;
    }

    if (c < 0xe0) {
        if (end - p < 2 || (p[1] & 0xc0) != 0x80) {
            return 0;
        }

        return 2;
    }

    if (c < 0xf0) {
        if (end - p < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) {
            return 0;
        }

        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)) {
            return 0;
        }

        return 3;
    }

    if (c < 0xf5) {
        if (end - p < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
            || (p[3] & 0xc0) != 0x80)
        {
            return 0;
        }

        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)) {
            return 0;
        }

        return 4;
    }

    return 0;
}


ngx_int_t
ngx_http_ragq_utf8_valid(u_char *p, size_t len)
{
    size_t  n;
    u_char *end = p + len;

    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        n = ngx_http_ragq_utf8_seq(p, end);
        if (n == 0) {
            return NGX_ERROR;
        }

        p += n;
    }

    return NGX_OK;
}


/* invalid UTF-8 (possible only in data written by others) is emitted as
 * U+FFFD so the response stays valid JSON */
size_t
ngx_http_ragq_json_escape_len(u_char *p, size_t len)
{
    size_t  n, size;
    u_char *end = p + len;

    size = 2;

    while (p < end) {
        if (*p >= 0x80) {
            n = ngx_http_ragq_utf8_seq(p, end);
            if (n == 0) {
                size += 6;
                p++;
            } else {
                size += n;
                p += n;
            }

            continue;
        }

        if (*p == '"' || *p == '\\' || *p == '\n' || *p == '\r' || *p == '\t'
            || *p == '\b' || *p == '\f')
        {
            size += 2;

        } else if (*p < 0x20) {
            size += 6;

        } else {
            size++;
        }

        p++;
    }

    return size;
}


u_char *
ngx_http_ragq_json_escape(u_char *dst, u_char *p, size_t len)
{
    size_t            n;
    u_char           *end = p + len;
    static const char hex[] = "0123456789abcdef";

    *dst++ = '"';

    while (p < end) {
        if (*p >= 0x80) {
            n = ngx_http_ragq_utf8_seq(p, end);
            if (n == 0) {
                dst = ngx_cpymem(dst, "\\ufffd", 6);
                p++;
            } else {
                dst = ngx_cpymem(dst, p, n);
                p += n;
            }

            continue;
        }

        switch (*p) {
        case '"':
        case '\\':
            *dst++ = '\\';
            *dst++ = *p;
            break;
        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;
        case '\r':
            *dst++ = '\\';
            *dst++ = 'r';
            break;
        case '\t':
            *dst++ = '\\';
            *dst++ = 't';
            break;
        case '\b':
            *dst++ = '\\';
            *dst++ = 'b';
            break;
        case '\f':
            *dst++ = '\\';
            *dst++ = 'f';
            break;
        default:
            if (*p < 0x20) {
                dst = ngx_cpymem(dst, "\\u00", 4);
                *dst++ = hex[*p >> 4];
                *dst++ = hex[*p & 0xf];
            } else {
                *dst++ = *p;
            }
        }

        p++;
    }

    *dst++ = '"';

    return dst;
}


/* ---- JSON reading: just enough for {"query": "...", "top_k": 5} ---- */


void
ngx_http_ragq_json_ws(ngx_http_ragq_json_t *j)
{
    while (j->p < j->end
           && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    {
        j->p++;
    }
}


static ngx_int_t
ngx_http_ragq_json_hex4(u_char *p, ngx_uint_t *cp)
{
    ngx_uint_t i, v;

    v = 0;

    for (i = 0; i < 4; i++) {
        v <<= 4;

        if (p[i] >= '0' && p[i] <= '9') {
            v |= p[i] - '0';
        } else if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f') {
            v |= (p[i] | 0x20) - 'a' + 10;
        } else {
            return NGX_ERROR;
        }
    }

    *cp = v;

    return NGX_OK;
}


/*
 * Decodes the string at j->p into out (which must have room for as many
 * bytes as the quoted string; escapes never grow). out == NULL skips.
 * Bytes that are not UTF-8 are refused (j->invalid_utf8 says so), or, with
 * j->lenient_utf8, counted there and kept.
 */
ngx_int_t
ngx_http_ragq_json_string(ngx_http_ragq_json_t *j, ngx_str_t *out)
{
    size_t     n;
    u_char    *p, *end, *dst;
    ngx_uint_t cp, lo;

    p = j->p;
    end = j->end;
    dst = out ? out->data : NULL;

    if (p == end || *p != '"') {
        return NGX_ERROR;
    }

    p++;

    for (;;) {
        if (p == end) {
            return NGX_ERROR;
        }

        if (*p == '"') {
            p++;
            break;
        }

        if (*p < 0x20) {
            return NGX_ERROR;
        }

        if (*p >= 0x80) {
            n = ngx_http_ragq_utf8_seq(p, end);

            if (n == 0) {
                /* counted, and copied as it is, only when the caller
                 * repairs it (stored JSON); else the text is refused */
                j->invalid_utf8++;

                if (!j->lenient_utf8) {
                    return NGX_ERROR;
                }

                n = 1;
            }

            if (dst) {
                dst = ngx_cpymem(dst, p, n);
            }

            p += n;
            continue;
        }

        if (*p != '\\') {
            if (dst) {
                *dst++ = *p;
            }

            p++;
            continue;
        }

        if (end - p < 2) {
            return NGX_ERROR;
        }

        p++;

        switch (*p) {
        case '"':
        case '\\':
        case '/':
            cp = *p;
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (end - p < 5 || ngx_http_ragq_json_hex4(p + 1, &cp) != NGX_OK) {
                return NGX_ERROR;
            }

            p += 4;

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return NGX_ERROR;
            }

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p < 7 || p[1] != '\\' || p[2] != 'u'
                    || ngx_http_ragq_json_hex4(p + 3, &lo) != NGX_OK
                    || lo < 0xdc00 || lo > 0xdfff)
                {
                    return NGX_ERROR;
                }

                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }

            break;
        default:
            return NGX_ERROR;
        }

        p++;

        if (dst == NULL) {
            continue;
        }

        if (cp < 0x80) {
            *dst++ = (u_char) cp;

        } else if (cp < 0x800) {
            *dst++ = (u_char) (0xc0 | (cp >> 6));
            *dst++ = (u_char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *dst++ = (u_char) (0xe0 | (cp >> 12));
            *dst++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            *dst++ = (u_char) (0x80 | (cp & 0x3f));

        } else {
            *dst++ = (u_char) (0xf0 | (cp >> 18));
            *dst++ = (u_char) (0x80 | ((cp >> 12) & 0x3f));
            *dst++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            *dst++ = (u_char) (0x80 | (cp & 0x3f));
        }
    }

    if (out) {
        out->len = dst - out->data;
    }

    j->p = p;

    return NGX_OK;
}


/* *integer is set to 1 when the number has no fraction or exponent */
ngx_int_t
ngx_http_ragq_json_number(ngx_http_ragq_json_t *j, ngx_flag_t *integer)
{
    u_char *p = j->p, *end = j->end;

    *integer = 1;

    if (p < end && *p == '-') {
        p++;
    }

    if (p == end) {
        return NGX_ERROR;
    }

    if (*p == '0') {
        p++;

    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

    } else {
        return NGX_ERROR;
    }

    if (p < end && *p == '.') {
        *integer = 0;
        p++;

        if (p == end || *p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    j->p = p;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_json_skip(ngx_http_ragq_json_t *j)
{
    ngx_flag_t integer;
    u_char     close;

    ngx_http_ragq_json_ws(j);

    if (j->p == j->end) {
        return NGX_ERROR;
    }

    switch (*j->p) {
    case '"':
        return ngx_http_ragq_json_string(j, NULL);

    case '{':
    case '[':
        if (++j->depth > NGX_HTTP_RAGQ_JSON_DEPTH) {
            return NGX_ERROR;
        }

        close = (*j->p == '{') ? '}' : ']';
        j->p++;
        ngx_http_ragq_json_ws(j);

        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return NGX_OK;
        }

        for (;;) {
            if (close == '}') {
                ngx_http_ragq_json_ws(j);

                if (ngx_http_ragq_json_string(j, NULL) != NGX_OK) {
                    return NGX_ERROR;
                }

                ngx_http_ragq_json_ws(j);

                if (j->p == j->end || *j->p != ':') {
                    return NGX_ERROR;
                }

                j->p++;
            }

            if (ngx_http_ragq_json_skip(j) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_http_ragq_json_ws(j);

            if (j->p == j->end) {
                return NGX_ERROR;
            }

            if (*j->p == ',') {
                j->p++;
                continue;
            }

            if (*j->p == close) {
                j->p++;
                j->depth--;
                return NGX_OK;
            }

            return NGX_ERROR;
        }

    case 't':
        if (j->end - j->p >= 4 && ngx_strncmp(j->p, "true", 4) == 0) {
            j->p += 4;
            return NGX_OK;
        }

        return NGX_ERROR;

    case 'f':
        if (j->end - j->p >= 5 && ngx_strncmp(j->p, "false", 5) == 0) {
            j->p += 5;
            return NGX_OK;
        }

        return NGX_ERROR;

    case 'n':
        if (j->end - j->p >= 4 && ngx_strncmp(j->p, "null", 4) == 0) {
            j->p += 4;
            return NGX_OK;
        }

        return NGX_ERROR;

    default:
        return ngx_http_ragq_json_number(j, &integer);
    }
}


void
ngx_http_ragq_json_init(ngx_http_ragq_json_t *j, u_char *p, size_t len)
{
    j->p = p;
    j->end = p + len;
    j->depth = 0;
    j->invalid_utf8 = 0;
    j->lenient_utf8 = 0;
}


/*
 * Whether p is one complete JSON value (for fields stored as JSON text).
 * Bytes that are not UTF-8 inside its strings do not make it invalid: their
 * number is in *invalid, and ngx_http_ragq_json_repair() replaces them.
 */
ngx_flag_t
ngx_http_ragq_json_valid(u_char *p, size_t len, size_t *invalid)
{
    ngx_http_ragq_json_t j;

    *invalid = 0;

    if (len == 0) {
        return 0;
    }

    ngx_http_ragq_json_init(&j, p, len);
    j.lenient_utf8 = 1;

    if (ngx_http_ragq_json_skip(&j) != NGX_OK) {
        return 0;
    }

    ngx_http_ragq_json_ws(&j);

    if (j.p != j.end) {
        return 0;
    }

    *invalid = j.invalid_utf8;

    return 1;
}


/*
 * A valid JSON value (ngx_http_ragq_json_valid()) with each byte that is
 * not UTF-8 written as \ufffd: outside strings such a byte is not JSON, so
 * all of them are inside strings, where the escape is U+FFFD, as the
 * escaper writes it. Needs len + 5 bytes per invalid byte.
 */
u_char *
ngx_http_ragq_json_repair(u_char *dst, u_char *p, size_t len)
{
    size_t  n;
    u_char *end = p + len;

    while (p < end) {
        if (*p < 0x80) {
            *dst++ = *p++;
            continue;
        }

        n = ngx_http_ragq_utf8_seq(p, end);

        if (n == 0) {
            dst = ngx_cpymem(dst, "\\ufffd", 6);
            p++;
            continue;
        }

        dst = ngx_cpymem(dst, p, n);
        p += n;
    }

    return dst;
}
