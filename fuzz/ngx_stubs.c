/*
 * fuzz/ngx_stubs.c: the few nginx functions and globals the module's files
 * call, for the fuzz targets (nginx-dev ships headers only). Pools are a
 * list of separate mallocs freed after each input, so ASan sees every
 * allocation's bounds (nginx's pools would hide an overflow inside a
 * block); formats are written as ngx_vslprintf() reads them, so a log or
 * error message whose arguments do not match its format is caught too.
 * The HTTP functions record what the module answered (harness.c).
 */
#include "harness.h"

#include <ngx_sha1.h>

volatile ngx_cycle_t *ngx_cycle;
volatile ngx_time_t  *ngx_cached_time;
volatile ngx_msec_t   ngx_current_msec;
ngx_rbtree_t          ngx_event_timer_rbtree;

/* ---- pools ---- */

typedef struct fuzz_block_s fuzz_block_t;
struct fuzz_block_s {
    fuzz_block_t *next;
    size_t        size;
    /* then the block's bytes, aligned as malloc aligns */
    max_align_t data[];
};

static fuzz_block_t *fuzz_blocks;

void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    fuzz_block_t *b;

    (void) pool;
    b = malloc(sizeof(fuzz_block_t) + (size ? size : 1));
    if (b == NULL) {
        abort();
    }
    b->next = fuzz_blocks;
    b->size = size;
    fuzz_blocks = b;
    return b->data;
}

void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}

void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void *p = ngx_palloc(pool, size);

    memset(p, 0, size);
    return p;
}

void
fuzz_pool_free(void)
{
    fuzz_block_t *b, *next;

    for (b = fuzz_blocks; b; b = next) {
        next = b->next;
        free(b);
    }
    fuzz_blocks = NULL;
}

void *
ngx_alloc(size_t size, ngx_log_t *log)
{
    (void) log;
    return malloc(size ? size : 1);
}

void *
ngx_calloc(size_t size, ngx_log_t *log)
{
    (void) log;
    return calloc(1, size ? size : 1);
}

void *
ngx_list_push(ngx_list_t *l)
{
    void            *elt;
    ngx_list_part_t *last = l->last;

    if (last->nelts == l->nalloc) {
        last = ngx_palloc(l->pool, sizeof(ngx_list_part_t));
        last->elts = ngx_palloc(l->pool, l->nalloc * l->size);
        last->nelts = 0;
        last->next = NULL;
        l->last->next = last;
        l->last = last;
    }
    elt = (char *) last->elts + l->size * last->nelts;
    last->nelts++;
    return elt;
}

/* the event timer tree is not used: timers are set and fired by hand */
void
ngx_rbtree_insert(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    (void) tree;
    (void) node;
}

void
ngx_rbtree_delete(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    (void) tree;
    (void) node;
}

ssize_t
ngx_read_file(ngx_file_t *file, u_char *buf, size_t size, off_t offset)
{
    return pread(file->fd, buf, size, offset);
}

/* ---- strings ---- */

ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t value = 0;

    if (n == 0) {
        return NGX_ERROR;
    }
    for (; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }
        if (value > (NGX_MAX_INT_T_VALUE - (*line - '0')) / 10) {
            return NGX_ERROR;
        }
        value = value * 10 + (*line - '0');
    }
    return value;
}

ngx_int_t
ngx_hextoi(u_char *line, size_t n)
{
    ngx_int_t value = 0;
    u_char    c;

    if (n == 0) {
        return NGX_ERROR;
    }
    for (; n--; line++) {
        if (value > NGX_MAX_INT_T_VALUE / 16) {
            return NGX_ERROR;
        }
        c = *line;
        if (c >= '0' && c <= '9') {
            value = value * 16 + (c - '0');
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            value = value * 16 + ((c | 0x20) - 'a' + 10);
        } else {
            return NGX_ERROR;
        }
    }
    return value;
}

ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t c1, c2;

    while (n--) {
        c1 = (ngx_uint_t) *s1++;
        c2 = (ngx_uint_t) *s2++;
        c1 = (c1 >= 'A' && c1 <= 'Z') ? (c1 | 0x20) : c1;
        c2 = (c2 >= 'A' && c2 <= 'Z') ? (c2 | 0x20) : c2;
        if (c1 != c2) {
            return c1 - c2;
        }
        if (c1 == 0) {
            return 0;
        }
    }
    return 0;
}

u_char *
ngx_hex_dump(u_char *dst, u_char *src, size_t len)
{
    static const u_char hex[] = "0123456789abcdef";

    while (len--) {
        *dst++ = hex[*src >> 4];
        *dst++ = hex[*src++ & 0xf];
    }
    return dst;
}

/* not SHA-1: any digest does for the key names the fuzz targets see */
void
ngx_sha1_init(ngx_sha1_t *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
}

void
ngx_sha1_update(ngx_sha1_t *ctx, const void *data, size_t size)
{
    const u_char *p = data;

    while (size--) {
        ctx->buffer[ctx->bytes++ % sizeof(ctx->buffer)] ^= *p++;
    }
}

void
ngx_sha1_final(u_char result[20], ngx_sha1_t *ctx)
{
    memcpy(result, ctx->buffer, 20);
}

/*
 * ngx_vslprintf() as nginx reads its arguments: %[0][width][u|m|x|X|*]...
 * then O T M z i d l D L A p V v s c Z N %.
 */
static u_char *
fuzz_num(u_char *buf, u_char *last, uint64_t n, int neg, int hex, size_t width,
         u_char zero)
{
    u_char  tmp[32], *p = tmp + sizeof(tmp);
    size_t  len;
    uint8_t base = hex ? 16 : 10;

    do {
        *--p = "0123456789abcdef"[n % base];
        n /= base;
    } while (n);
    if (neg) {
        *--p = '-';
    }
    len = tmp + sizeof(tmp) - p;
    while (width-- > len && buf < last) {
        *buf++ = zero;
    }
    while (p < tmp + sizeof(tmp) && buf < last) {
        *buf++ = *p++;
    }
    return buf;
}

u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char     *s, zero;
    size_t      width, slen;
    int64_t     i64;
    uint64_t    u64;
    ngx_str_t  *v;
    int         sign, hex, star;
    const char *f;

    while (*fmt && buf < last) {
        if (*fmt != '%') {
            *buf++ = (u_char) *fmt++;
            continue;
        }
        f = ++fmt;
        zero = (u_char) ((*fmt == '0') ? '0' : ' ');
        width = 0;
        sign = 1, hex = 0, star = 0;
        slen = (size_t) -1;
        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (size_t) (*fmt++ - '0');
        }
        for (;;) {
            if (*fmt == 'u') {
                sign = 0;
            } else if (*fmt == 'm') {
                /* max width: nothing to do here */
            } else if (*fmt == 'x' || *fmt == 'X') {
                hex = 1, sign = 0;
            } else if (*fmt == '*') {
                star = 1;
                slen = va_arg(args, size_t);
            } else {
                break;
            }
            fmt++;
        }
        (void) star;
        i64 = 0, u64 = 0;
        switch (*fmt) {
        case 'V':
            v = va_arg(args, ngx_str_t *);
            for (s = v->data, slen = v->len; slen-- && buf < last;) {
                *buf++ = *s++;
            }
            fmt++;
            continue;
        case 'v':
            (void) va_arg(args, ngx_variable_value_t *);
            fmt++;
            continue;
        case 's':
            s = va_arg(args, u_char *);
            while ((slen == (size_t) -1 ? *s : slen--) && buf < last) {
                *buf++ = *s++;
            }
            fmt++;
            continue;
        case 'O':
            i64 = va_arg(args, off_t);
            sign = 1;
            break;
        case 'P':
            i64 = va_arg(args, ngx_pid_t);
            sign = 1;
            break;
        case 'T':
            i64 = va_arg(args, time_t);
            sign = 1;
            break;
        case 'M':
            u64 = va_arg(args, ngx_msec_t);
            sign = 0;
            break;
        case 'z':
            if (sign) {
                i64 = va_arg(args, ssize_t);
            } else {
                u64 = va_arg(args, size_t);
            }
            break;
        case 'i':
            if (sign) {
                i64 = va_arg(args, ngx_int_t);
            } else {
                u64 = va_arg(args, ngx_uint_t);
            }
            break;
        case 'd':
            if (sign) {
                i64 = va_arg(args, int);
            } else {
                u64 = va_arg(args, u_int);
            }
            break;
        case 'l':
            if (sign) {
                i64 = va_arg(args, long);
            } else {
                u64 = va_arg(args, u_long);
            }
            break;
        case 'D':
            if (sign) {
                i64 = va_arg(args, int32_t);
            } else {
                u64 = va_arg(args, uint32_t);
            }
            break;
        case 'L':
            if (sign) {
                i64 = va_arg(args, int64_t);
            } else {
                u64 = va_arg(args, uint64_t);
            }
            break;
        case 'A':
            if (sign) {
                i64 = va_arg(args, ngx_atomic_int_t);
            } else {
                u64 = va_arg(args, ngx_atomic_uint_t);
            }
            break;
        case 'p':
            u64 = (uintptr_t) va_arg(args, void *);
            hex = 1, sign = 0;
            break;
        case 'c':
            *buf++ = (u_char) va_arg(args, int);
            fmt++;
            continue;
        case 'Z':
            *buf++ = '\0';
            fmt++;
            continue;
        case 'N':
            *buf++ = '\n';
            fmt++;
            continue;
        case '%':
            *buf++ = '%';
            fmt++;
            continue;
        default:
            /* not a format nginx knows: printed as it is, as nginx does */
            fmt = f;
            *buf++ = '%';
            continue;
        }
        fmt++;
        if (sign && i64 < 0) {
            buf = fuzz_num(buf, last, (uint64_t) 0 - (uint64_t) i64, 1, hex,
                           width, zero);
        } else {
            buf = fuzz_num(buf, last, sign ? (uint64_t) i64 : u64, 0, hex,
                           width, zero);
        }
    }
    return buf;
}

u_char *ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char *p;
    va_list args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);
    return p;
}

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
                   const char *fmt, ...)
{
    va_list args;
    u_char  line[NGX_MAX_ERROR_STR];

    (void) level;
    (void) log;
    (void) err;
    va_start(args, fmt);
    (void) ngx_vslprintf(line, line + sizeof(line), fmt, args);
    va_end(args);
}
