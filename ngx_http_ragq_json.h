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

/* a stored integer, canonically: "-" when *negative, then digits */
ngx_int_t ngx_http_ragq_json_integer(u_char *p, size_t len, ngx_str_t *digits,
                                     ngx_flag_t *negative);


#endif /* _NGX_HTTP_RAGQ_JSON_H_INCLUDED_ */
