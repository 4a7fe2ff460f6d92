/*
 * fuzz/fuzz_json.c: the module's JSON and UTF-8 code (ngx_http_ragq_json.c)
 * against the oracle: the strict reader accepts exactly what the oracle
 * does (nested at most 32 deep); the lenient validator and the repair make
 * valid JSON of what has only bad UTF-8; UTF-8 checks agree; escaping any
 * bytes gives a JSON string that decodes back to them when they were
 * UTF-8; a decoded string is UTF-8 and survives escaping; a stored integer
 * is written as a canonical JSON number with the same value.
 */
#include "harness.h"
#include "../ngx_http_ragq_json.h"

static ngx_flag_t
strict_valid(u_char *p, size_t len)
{
    ngx_http_ragq_json_t j;

    ngx_http_ragq_json_init(&j, p, len);
    if (ngx_http_ragq_json_skip(&j) != NGX_OK) {
        return 0;
    }
    ngx_http_ragq_json_ws(&j);
    return j.p == j.end;
}

static void
check_escape(u_char *p, size_t len)
{
    u_char              *e, *end;
    size_t               elen;
    ngx_str_t            back;
    ngx_http_ragq_json_t j;

    elen = ngx_http_ragq_json_escape_len(p, len);
    e = ngx_pnalloc(NULL, elen);
    end = ngx_http_ragq_json_escape(e, p, len);
    if ((size_t) (end - e) != elen) {
        fuzz_fail("escape_len is not what escape wrote", e, end - e);
    }
    if (!oracle_json(e, elen, 0) || e[0] != '"') {
        fuzz_fail("an escaped string that is not a JSON string", e, elen);
    }
    back.data = ngx_pnalloc(NULL, elen);
    ngx_http_ragq_json_init(&j, e, elen);
    if (ngx_http_ragq_json_string(&j, &back) != NGX_OK || j.p != j.end) {
        fuzz_fail("an escaped string the reader refuses", e, elen);
    }
    if (oracle_utf8(p, len) &&
        (back.len != len || (len && memcmp(back.data, p, len) != 0))) {
        fuzz_fail("escaped UTF-8 does not decode to itself", p, len);
    }
}

static void
check_integer(u_char *p, size_t len)
{
    u_char     text[32], *t;
    size_t     i;
    ngx_str_t  digits;
    ngx_flag_t negative;

    if (ngx_http_ragq_json_integer(p, len, &digits, &negative) != NGX_OK) {
        return;
    }
    if (digits.len == 0 || digits.len > 19 ||
        (digits.len > 1 && digits.data[0] == '0') ||
        (negative && digits.len == 1 && digits.data[0] == '0')) {
        fuzz_fail("an integer that is not canonical", p, len);
    }
    t = text;
    if (negative) {
        *t++ = '-';
    }
    memcpy(t, digits.data, digits.len);
    t += digits.len;
    if (!oracle_json(text, t - text, 0)) {
        fuzz_fail("an integer that is not a JSON number", text, t - text);
    }
    /* the same value: the input is the sign, zeros, then these digits */
    i = (len && p[0] == '-') ? 1 : 0;
    if (negative != (ngx_flag_t) (i == 1) && !(digits.data[0] == '0')) {
        fuzz_fail("an integer whose sign changed", p, len);
    }
    for (; i < len && (size_t) (len - i) > digits.len; i++) {
        if (p[i] != '0') {
            fuzz_fail("an integer whose digits changed", p, len);
        }
    }
    if (memcmp(p + len - digits.len, digits.data, digits.len) != 0) {
        fuzz_fail("an integer whose digits changed", p, len);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              *p, *out, *end;
    size_t               invalid;
    ngx_str_t            s;
    ngx_flag_t           valid, lenient;
    ngx_http_ragq_json_t j;

    fuzz_begin();

    /* a copy of the exact size, so that a read past it is seen */
    p = ngx_pnalloc(NULL, size);
    memcpy(p, data, size);

    valid = strict_valid(p, size);
    if (valid != oracle_json(p, size, 32)) {
        fuzz_fail(valid ? "the reader accepts what is not JSON"
                        : "the reader refuses JSON",
                  p, size);
    }

    lenient = ngx_http_ragq_json_valid(p, size, &invalid);
    if (valid && (!lenient || invalid)) {
        fuzz_fail("json_valid refuses what the strict reader accepts", p, size);
    }
    if (lenient) {
        out = ngx_pnalloc(NULL, size + 5 * invalid);
        end = ngx_http_ragq_json_repair(out, p, size);
        if ((size_t) (end - out) != size + 5 * invalid) {
            fuzz_fail("a repair of another length", out, end - out);
        }
        if (!oracle_json(out, end - out, 32)) {
            fuzz_fail("a repaired value that is not JSON", out, end - out);
        }
    }

    if ((ngx_http_ragq_utf8_valid(p, size) == NGX_OK) != oracle_utf8(p, size)) {
        fuzz_fail("utf8_valid disagrees", p, size);
    }

    check_escape(p, size);
    check_integer(p, size);

    if (size && p[0] == '"') {
        s.data = ngx_pnalloc(NULL, size);
        ngx_http_ragq_json_init(&j, p, size);
        if (ngx_http_ragq_json_string(&j, &s) == NGX_OK) {
            if (s.len > size || !oracle_utf8(s.data, s.len)) {
                fuzz_fail("a decoded string that is not UTF-8", s.data, s.len);
            }
            check_escape(s.data, s.len);
        }
    }
    return 0;
}
