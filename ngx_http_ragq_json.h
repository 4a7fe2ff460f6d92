/*
 * ragq: JSON text and UTF-8 (ngx_http_ragq_json.c): the escaper used for
 * every response and the reader used for POST /chat bodies and for fields
 * stored as JSON text.
 */

#ifndef _NGX_HTTP_RAGQ_JSON_H_INCLUDED_
#define _NGX_HTTP_RAGQ_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    u_char    *p;
    u_char    *end;
    ngx_uint_t depth;
    size_t     invalid_utf8; /* bytes in strings that are not UTF-8 */
    ngx_flag_t lenient_utf8; /* count them instead of refusing the text */
} ngx_http_ragq_json_t;


/* NGX_OK when p holds only valid UTF-8 (no overlongs, surrogates, or code
 * points above U+10FFFF) */
ngx_int_t ngx_http_ragq_utf8_valid(u_char *p, size_t len);

/* the quoted JSON string for p: its length, then the bytes written */
size_t  ngx_http_ragq_json_escape_len(u_char *p, size_t len);
u_char *ngx_http_ragq_json_escape(u_char *dst, u_char *p, size_t len);

/* a reader over len bytes at p */
void ngx_http_ragq_json_init(ngx_http_ragq_json_t *j, u_char *p, size_t len);

void ngx_http_ragq_json_ws(ngx_http_ragq_json_t *j);

/* decodes the string at j->p into out (room for as many bytes as the
 * quoted string); out == NULL only skips it; text that is not UTF-8 is an
 * error (j->invalid_utf8 set) unless j->lenient_utf8 */
ngx_int_t ngx_http_ragq_json_string(ngx_http_ragq_json_t *j, ngx_str_t *out);

/* *integer: no fraction and no exponent */
ngx_int_t ngx_http_ragq_json_number(ngx_http_ragq_json_t *j,
                                    ngx_flag_t           *integer);

/* skips one value of any type (whitespace before it included) */
ngx_int_t ngx_http_ragq_json_skip(ngx_http_ragq_json_t *j);

/* whether p is exactly one JSON value; *invalid: bytes in its strings that
 * are not UTF-8, which ngx_http_ragq_json_repair() writes as U+FFFD */
ngx_flag_t ngx_http_ragq_json_valid(u_char *p, size_t len, size_t *invalid);
u_char    *ngx_http_ragq_json_repair(u_char *dst, u_char *p, size_t len);

/*
 * A stored integer as a JSON number: an optional "-", then digits, at most
 * 19 once leading zeros are dropped ("007" is 7, "-00" is 0). NGX_OK with
 * the digits to write (in p) and whether a "-" goes first; NGX_DECLINED for
 * anything else ("+1", "1.0", "1e3", " 1", "", more digits), which the job
 * view writes as null. Inline: the view calls it for four fields of every
 * answer.
 */
static ngx_inline ngx_int_t
ngx_http_ragq_json_integer(u_char *p, size_t len, ngx_str_t *digits,
                           ngx_flag_t *negative)
{
    u_char *end = p + len;

    *negative = (len && *p == '-');
    p += *negative;

    if (p == end) {
        return NGX_DECLINED;
    }

    /* leading zeros, but the last digit stays */
    while (*p == '0' && end - p > 1) {
        p++;
    }

    if (end - p > 19) {
        return NGX_DECLINED;
    }

    digits->data = p;
    digits->len = end - p;

    for (/* void */; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }
    }

    if (digits->len == 1 && digits->data[0] == '0') {
        *negative = 0;
    }

    return NGX_OK;
}


#endif /* _NGX_HTTP_RAGQ_JSON_H_INCLUDED_ */
