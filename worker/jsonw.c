/*
 * jsonw.c: the JSON writer of jsonw.h.
 */

#include "jsonw.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static int
jbuf_reserve(ragq_jbuf_t *b, size_t more)
{
    size_t cap;
    char  *d;

    if (b->failed) {
        return -1;
    }
    if (more < b->cap - b->len) {
        return 0; /* keeps one byte for the terminating NUL */
    }
    if (more > SIZE_MAX / 2 - b->len - 1) {
        b->failed = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len <= more) {
        cap *= 2;
    }
    d = realloc(b->data, cap);
    if (d == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void
ragq_jbuf_init(ragq_jbuf_t *b, size_t hint)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
    if (hint) {
        jbuf_reserve(b, hint);
    }
}

void
ragq_jbuf_add(ragq_jbuf_t *b, const char *s, size_t n)
{
    if (n == 0 || jbuf_reserve(b, n) != 0) {
        return;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void
ragq_jbuf_adds(ragq_jbuf_t *b, const char *s)
{
    ragq_jbuf_add(b, s, strlen(s));
}

void
ragq_jbuf_string(ragq_jbuf_t *b, const char *s, size_t n)
{
    static const char    hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, run, l;
    char                 esc[6];

    ragq_jbuf_add(b, "\"", 1);
    while (i < n) {
        /* Copy runs of plain ASCII in one go: the common case. */
        run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' &&
               p[run] != '\\') {
            run++;
        }
        if (run > i) {
            ragq_jbuf_add(b, s + i, run - i);
            i = run;
            continue;
        }
        if (p[i] >= 0x80) {
            l = ragq_utf8_seq(p + i, n - i);
            if (l == 0) {
                ragq_jbuf_add(b, RAGQ_UTF8_REPLACEMENT, 3);
                i++;
            } else {
                ragq_jbuf_add(b, s + i, l);
                i += l;
            }
            continue;
        }
        switch (p[i]) {
        case '"':
            ragq_jbuf_add(b, "\\\"", 2);
            break;
        case '\\':
            ragq_jbuf_add(b, "\\\\", 2);
            break;
        case '\n':
            ragq_jbuf_add(b, "\\n", 2);
            break;
        case '\r':
            ragq_jbuf_add(b, "\\r", 2);
            break;
        case '\t':
            ragq_jbuf_add(b, "\\t", 2);
            break;
        case 0:
            ragq_jbuf_add(b, "\\ufffd", 6);
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[p[i] >> 4];
            esc[5] = hex[p[i] & 0xf];
            ragq_jbuf_add(b, esc, 6);
            break;
        }
        i++;
    }
    ragq_jbuf_add(b, "\"", 1);
}

static const double pow10_tab[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * "%.*g" for zeros and 10^-15 <= |v| < 10^prec (fixed or exponent style),
 * without snprintf: a query vector has thousands of them and snprintf's
 * exact conversion costs ~250 ns each.  The digits come from one rounding
 * of v * 10^k (10^k exact); values that land too near a rounding tie for
 * that to be certain are left to snprintf, so the output is printf's
 * byte for byte (tests/unit compares millions of values).  Returns the
 * length written, 0 when v is outside that range (the caller falls back).
 */
static int
fast_g(char *out, double v, int prec)
{
    double    a = fabs(v), scaled;
    int       e, k, n = 0, point, last;
    long long m;
    char      d[16];

    if (prec < 1 || prec > 15 || a >= pow10_tab[prec]) {
        return 0;
    }
    if (a == 0) {
        /* Hash embeddings are mostly zeros; printf keeps the sign. */
        if (signbit(v)) {
            out[n++] = '-';
        }
        out[n++] = '0';
        return n;
    }
    if (!(a >= 1e-15)) {
        return 0; /* 10^k below would not be exact */
    }
    e = (int) floor(log10(a));
    for (int tries = 0; tries < 2; tries++) {
        k = prec - 1 - e;
        if (k < 0 || k > 22) {
            return 0;
        }
        scaled = a * pow10_tab[k];
        if (fabs(scaled - floor(scaled) - 0.5) <= scaled * 0x1p-48) {
            return 0; /* too close to a tie to decide without exactness */
        }
        m = llrint(scaled);
        if (m >= (long long) pow10_tab[prec]) {
            e++; /* log10 was low, or rounding carried into a new digit */
            continue;
        }
        if (m < (long long) pow10_tab[prec - 1]) {
            e--;
            continue;
        }
        break;
    }
    if (m >= (long long) pow10_tab[prec] ||
        m < (long long) pow10_tab[prec - 1] || e >= prec) {
        return 0;
    }
    for (int i = prec - 1; i >= 0; i--) {
        d[i] = (char) ('0' + m % 10);
        m /= 10;
    }
    if (v < 0) {
        out[n++] = '-';
    }
    if (e < -4) {
        /* %g's exponent style: d[.ddd]e-XX, trailing zeros dropped. */
        last = prec - 1;
        while (last > 0 && d[last] == '0') {
            last--;
        }
        out[n++] = d[0];
        if (last > 0) {
            out[n++] = '.';
            for (int i = 1; i <= last; i++) {
                out[n++] = d[i];
            }
        }
        out[n++] = 'e';
        out[n++] = '-';
        if (-e >= 100) {
            out[n++] = (char) ('0' + -e / 100);
        }
        out[n++] = (char) ('0' + (-e / 10) % 10);
        out[n++] = (char) ('0' + -e % 10);
        return n;
    }
    last = prec - 1; /* %g drops trailing zeros of the fraction */
    point = e + 1;   /* digits before the decimal point */
    while (last >= point && last > 0 && d[last] == '0') {
        last--;
    }
    if (point <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -point; i++) {
            out[n++] = '0';
        }
        for (int i = 0; i <= last; i++) {
            out[n++] = d[i];
        }
    } else {
        for (int i = 0; i <= last || i < point; i++) {
            if (i == point) {
                out[n++] = '.';
            }
            out[n++] = d[i];
        }
    }
    return n;
}

void
ragq_jbuf_number(ragq_jbuf_t *b, double v, int prec)
{
    char tmp[64];
    int  n;

    if (!isfinite(v)) {
        ragq_jbuf_add(b, "null", 4);
        return;
    }
    n = fast_g(tmp, v, prec);
    if (n > 0) {
        ragq_jbuf_add(b, tmp, (size_t) n);
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
    if (n <= 0 || (size_t) n >= sizeof(tmp)) {
        ragq_jbuf_add(b, "null", 4);
        return;
    }
    /* A locale with a decimal comma must not leak into JSON. */
    for (int i = 0; i < n; i++) {
        if (tmp[i] == ',') {
            tmp[i] = '.';
        }
    }
    ragq_jbuf_add(b, tmp, (size_t) n);
}

void
ragq_jbuf_uint(ragq_jbuf_t *b, unsigned long long v)
{
    char tmp[24];
    int  n;

    n = snprintf(tmp, sizeof(tmp), "%llu", v);
    ragq_jbuf_add(b, tmp, (size_t) n);
}

void
ragq_jbuf_reset(ragq_jbuf_t *b)
{
    b->len = 0;
    b->failed = 0;
}

void
ragq_jbuf_free(ragq_jbuf_t *b)
{
    free(b->data);
    ragq_jbuf_init(b, 0);
}

char *
ragq_jbuf_finish(ragq_jbuf_t *b)
{
    char *d;

    if (jbuf_reserve(b, 0) != 0) {
        free(b->data);
        b->data = NULL;
        return NULL;
    }
    b->data[b->len] = '\0';
    d = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
