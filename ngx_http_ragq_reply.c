/*
 * ragq: Valkey's replies, read by the module itself. hiredis 0.14's reader
 * and the objects it built were ~4,400 of the ~11,200 instructions a
 * /job-status cost nginx beyond `return 200`: it copies every read into a
 * string buffer and walks a stack of tasks per element through callbacks.
 * This reads RESP2, what Valkey answers a client that never sent HELLO 3,
 * in one pass that builds the tree as it goes. A reply not all there yet
 * is dropped and read again from its start once more bytes came, but not
 * before as many as it is known to need (a bulk string's length, 3 bytes
 * for each array element not read yet), so a large reply arriving in
 * pieces is not parsed at every read, and an array's elements are not
 * allocated before they can all be there (hiredis allocates whatever
 * length a peer announces). The trees are hiredis's redisReply, read by
 * the rest of the module as before. The grammar is hiredis 0.14's:
 * fuzz/fuzz_reply.c feeds both the same input in the same pieces and
 * requires the same replies, and an error from ours only where hiredis
 * has one.
 */

#include "ngx_http_ragq_reply.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ngx_http_ragq_poison(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define ngx_http_ragq_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ngx_http_ragq_poison(p, n)
#define ngx_http_ragq_unpoison(p, n)
#endif


#define NGX_HTTP_RAGQ_READER_MIN 16384
/* a buffer grown past this for one large reply is freed once it is read */
#define NGX_HTTP_RAGQ_READER_KEEP 65536


/* ---- the arena of the command connection's replies ---- */

/*
 * Every handler of the command connection is done with its reply when it
 * returns, and the reply is freed before the next one is built, so those
 * replies are carved from one static arena that is rewound when the reply
 * is freed. A reply larger than the arena spills into malloc()ed blocks,
 * freed at the rewind. Under ASan the rewound arena is poisoned, so a reply
 * used after its free is caught.
 */

#define NGX_HTTP_RAGQ_ARENA_SIZE 16384


typedef struct ngx_http_ragq_spill_s ngx_http_ragq_spill_t;

struct ngx_http_ragq_spill_s {
    ngx_http_ragq_spill_t *next;
    uint64_t               align;
};


static uint64_t               ngx_http_ragq_arena[NGX_HTTP_RAGQ_ARENA_SIZE / 8];
static u_char                *ngx_http_ragq_arena_pos;
static u_char                *ngx_http_ragq_arena_end;
static ngx_http_ragq_spill_t *ngx_http_ragq_spills;


static void
ngx_http_ragq_arena_rewind(void)
{
    ngx_http_ragq_spill_t *s;

    while (ngx_http_ragq_spills) {
        s = ngx_http_ragq_spills;
        ngx_http_ragq_spills = s->next;
        ngx_free(s);
    }

    ngx_http_ragq_arena_pos = (u_char *) ngx_http_ragq_arena;
    ngx_http_ragq_arena_end =
        (u_char *) ngx_http_ragq_arena + sizeof(ngx_http_ragq_arena);

    ngx_http_ragq_poison(ngx_http_ragq_arena, sizeof(ngx_http_ragq_arena));
}


static void *
ngx_http_ragq_arena_alloc(size_t size)
{
    u_char                *p;
    size_t                 block;
    ngx_http_ragq_spill_t *s;

    size = ngx_align(size, sizeof(uint64_t));

    if (ngx_http_ragq_arena_pos == NULL) {
        /* the first reply of this process */
        ngx_http_ragq_arena_rewind();
    }

    if ((size_t) (ngx_http_ragq_arena_end - ngx_http_ragq_arena_pos) >= size) {
        p = ngx_http_ragq_arena_pos;
        ngx_http_ragq_arena_pos += size;
        ngx_http_ragq_unpoison(p, size);
        return p;
    }

    block = ngx_max(size, NGX_HTTP_RAGQ_ARENA_SIZE);

    s = ngx_alloc(sizeof(ngx_http_ragq_spill_t) + block, ngx_cycle->log);
    if (s == NULL) {
        return NULL;
    }

    s->next = ngx_http_ragq_spills;
    ngx_http_ragq_spills = s;

    p = (u_char *) (s + 1);
    ngx_http_ragq_arena_pos = p + size;
    ngx_http_ragq_arena_end = p + block;

    return p;
}


/* ---- the grammar ---- */


/* the CR of the first CRLF in [p, last), NULL when there is none yet */
static u_char *
ngx_http_ragq_reply_cr(u_char *p, u_char *last)
{
    while (p < last) {
        p = memchr(p, '\r', last - p);

        if (p == NULL || p + 1 == last) {
            return NULL;
        }

        if (p[1] == '\n') {
            return p;
        }

        p++;
    }

    return NULL;
}


/* a decimal as Valkey writes it: "0", or an optional '-' and no 0 first */
static ngx_int_t
ngx_http_ragq_reply_number(u_char *p, u_char *last, long long *out)
{
    unsigned           d;
    ngx_uint_t         negative;
    unsigned long long v, limit;

    if (last - p == 1 && *p == '0') {
        *out = 0;
        return NGX_OK;
    }

    negative = (p < last && *p == '-');
    p += negative;

    if (p == last || *p < '1' || *p > '9') {
        return NGX_ERROR;
    }

    limit = negative ? (unsigned long long) LLONG_MAX + 1 : LLONG_MAX;

    for (v = 0; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        d = *p - '0';

        if (v > (limit - d) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + d;
    }

    *out = negative ? -(long long) (v - 1) - 1 : (long long) v;

    return NGX_OK;
}


/*
 * The number of a ':', '$' or '*' line starting at p, *cr at its CR.
 * Lengths are short: up to 18 digits and their CRLF are read in one go;
 * anything else waits for its CRLF and goes through the strict parse.
 * NGX_AGAIN: the line is not complete yet.
 */
static ngx_inline ngx_int_t
ngx_http_ragq_reply_int(u_char *p, u_char *last, long long *out, u_char **cr)
{
    u_char    *s, *q;
    long long  v;
    ngx_uint_t negative;

    s = p;
    negative = (p < last && *p == '-');
    p += negative;

    if (p < last && *p >= '1' && *p <= '9') {
        v = *p++ - '0';

        for (q = p + 17; p < last && p < q && *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (*p - '0');
        }

        if (last - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            *out = negative ? -v : v;
            *cr = p;
            return NGX_OK;
        }

    } else if (!negative && last - p >= 3 && p[0] == '0' && p[1] == '\r'
               && p[2] == '\n')
    {
        *out = 0;
        *cr = p + 1;
        return NGX_OK;
    }

    *cr = ngx_http_ragq_reply_cr(s, last);
    if (*cr == NULL) {
        return NGX_AGAIN;
    }

    return ngx_http_ragq_reply_number(s, *cr, out);
}


static ngx_int_t
ngx_http_ragq_reader_error(ngx_http_ragq_reader_t *rd, const char *what)
{
    rd->err = what;
    return NGX_ERROR;
}


/*
 * A node, and in the arena room for a string of len bytes after it.
 * Outside the arena, malloc() itself: ngx_alloc() would write a debug log
 * line for every element of every reply.
 */
static redisReply *
ngx_http_ragq_reply_node(ngx_http_ragq_reader_t *rd, int type, size_t len)
{
    redisReply *r;

    if (rd->arena) {
        r = ngx_http_ragq_arena_alloc(sizeof(redisReply) + len);

    } else {
        r = malloc(sizeof(redisReply));
    }

    if (r == NULL) {
        return NULL;
    }

    r->type = type;
    r->integer = 0;
    r->len = 0;
    r->str = NULL;
    r->elements = 0;
    r->element = NULL;

    return r;
}


/*
 * The item at *pp into *slot, set as soon as it exists (a tree left
 * partial by NGX_AGAIN or NGX_ERROR is freed from its root); *pp moves
 * past it. NGX_AGAIN: not all there, and not before rd->need bytes.
 */
static ngx_int_t
ngx_http_ragq_reply_parse(ngx_http_ragq_reader_t *rd, u_char **pp,
                          redisReply **slot, ngx_uint_t depth)
{
    int         type;
    u_char     *p, *last, *cr;
    size_t      i;
    ngx_int_t   rc;
    long long   n;
    redisReply *r;

    p = *pp;
    last = rd->buf + rd->len;

    if (p == last) {
        goto again;
    }

    switch (*p) {
    case '+':
    case '-':
        type = (*p == '+') ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR;
        cr = ngx_http_ragq_reply_cr(p + 1, last);
        if (cr == NULL) {
            goto again;
        }

        p++;
        n = cr - p;
        break;

    case ':':
        rc = ngx_http_ragq_reply_int(p + 1, last, &n, &cr);
        if (rc == NGX_AGAIN) {
            goto again;
        }

        if (rc != NGX_OK) {
            return ngx_http_ragq_reader_error(rd, "bad integer");
        }

        r = ngx_http_ragq_reply_node(rd, REDIS_REPLY_INTEGER, 0);
        *slot = r;
        if (r == NULL) {
            goto nomem;
        }

        r->integer = n;
        *pp = cr + 2;
        return NGX_OK;

    case '$':
        rc = ngx_http_ragq_reply_int(p + 1, last, &n, &cr);
        if (rc == NGX_AGAIN) {
            goto again;
        }

        if (rc != NGX_OK || n < -1) {
            return ngx_http_ragq_reader_error(rd, "bad bulk string length");
        }

        if (n == -1) {
            *slot = ngx_http_ragq_reply_node(rd, REDIS_REPLY_NIL, 0);
            if (*slot == NULL) {
                goto nomem;
            }

            *pp = cr + 2;
            return NGX_OK;
        }

        p = cr + 2;

        /* the string and its CRLF, not checked (as hiredis) */
        if ((size_t) (last - p) < (size_t) n + 2) {
            rd->need = (size_t) (p - rd->buf) + (size_t) n + 2;
            return NGX_AGAIN;
        }

        type = REDIS_REPLY_STRING;
        cr = p + n;
        break;

    case '*':
        if (depth == NGX_HTTP_RAGQ_REPLY_DEPTH) {
            return ngx_http_ragq_reader_error(rd, "arrays nested too deep");
        }

        rc = ngx_http_ragq_reply_int(p + 1, last, &n, &cr);
        if (rc == NGX_AGAIN) {
            goto again;
        }

        if (rc != NGX_OK || n < -1 || n > NGX_MAX_INT32_VALUE) {
            return ngx_http_ragq_reader_error(rd, "bad array length");
        }

        p = cr + 2;

        /*
         * An element takes 3 bytes at least ("+\r\n"): nothing is
         * allocated for an array that cannot all be there yet.
         */
        if (n > 0 && (size_t) (last - p) < 3 * (size_t) n) {
            rd->need = (size_t) (p - rd->buf) + 3 * (size_t) n;
            return NGX_AGAIN;
        }

        r = ngx_http_ragq_reply_node(rd,
                                     n < 0 ? REDIS_REPLY_NIL
                                           : REDIS_REPLY_ARRAY,
                                     0);
        *slot = r;
        if (r == NULL) {
            goto nomem;
        }

        *pp = p;

        if (n <= 0) {
            return NGX_OK;
        }

        /* outside the arena, a partial tree is freed: NULLs till built */
        r->element = rd->arena
                         ? ngx_http_ragq_arena_alloc(n * sizeof(redisReply *))
                         : calloc(n, sizeof(redisReply *));
        if (r->element == NULL) {
            goto nomem;
        }

        r->elements = n;

        for (i = 0; i < (size_t) n; i++) {
            rc = ngx_http_ragq_reply_parse(rd, pp, &r->element[i], depth + 1);

            if (rc == NGX_AGAIN) {
                /* and 3 bytes at least for each element after this one */
                rd->need += 3 * ((size_t) n - i - 1);
                return NGX_AGAIN;
            }

            if (rc != NGX_OK) {
                return rc;
            }
        }

        return NGX_OK;

    default:
        return ngx_http_ragq_reader_error(rd, "not a reply type byte");
    }

    /* a string, status or error: n bytes at p, then CRLF at cr */
    r = ngx_http_ragq_reply_node(rd, type, n + 1);
    *slot = r;
    if (r == NULL) {
        goto nomem;
    }

    r->str = rd->arena ? (char *) (r + 1) : malloc(n + 1);
    if (r->str == NULL) {
        goto nomem;
    }

    ngx_memcpy(r->str, p, n);
    r->str[n] = '\0';
    r->len = n;
    *pp = cr + 2;

    return NGX_OK;

again:

    rd->need = rd->len + 1;
    return NGX_AGAIN;

nomem:

    return ngx_http_ragq_reader_error(rd, "out of memory");
}


/* ---- the reader ---- */


void
ngx_http_ragq_reader_init(ngx_http_ragq_reader_t *rd, ngx_uint_t arena)
{
    ngx_memzero(rd, sizeof(ngx_http_ragq_reader_t));
    rd->arena = arena ? 1 : 0;
}


void
ngx_http_ragq_reader_free(ngx_http_ragq_reader_t *rd)
{
    if (rd->buf) {
        ngx_free(rd->buf);
    }

    rd->buf = NULL;
    rd->pos = 0;
    rd->len = 0;
    rd->size = 0;
    rd->need = 0;
}


ngx_int_t
ngx_http_ragq_reader_feed(ngx_http_ragq_reader_t *rd, u_char *p, size_t n)
{
    u_char *buf;
    size_t  size;

    if (rd->size - rd->len < n && rd->pos) {
        /* what is before pos is read: keep the rest only */
        ngx_memmove(rd->buf, rd->buf + rd->pos, rd->len - rd->pos);
        rd->len -= rd->pos;
        rd->need = (rd->need > rd->pos) ? rd->need - rd->pos : 0;
        rd->pos = 0;
    }

    if (rd->size - rd->len < n) {
        size = ngx_max(rd->size * 2, NGX_HTTP_RAGQ_READER_MIN);

        while (size - rd->len < n) {
            size *= 2;
        }

        buf = ngx_alloc(size, ngx_cycle->log);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        if (rd->len) {
            ngx_memcpy(buf, rd->buf, rd->len);
        }

        if (rd->buf) {
            ngx_free(rd->buf);
        }

        rd->buf = buf;
        rd->size = size;
    }

    ngx_memcpy(rd->buf + rd->len, p, n);
    rd->len += n;

    return NGX_OK;
}


ngx_int_t
ngx_http_ragq_reader_next(ngx_http_ragq_reader_t *rd, redisReply **reply)
{
    u_char     *p;
    ngx_int_t   rc;
    redisReply *root;

    *reply = NULL;

    if (rd->pos == rd->len) {
        rd->pos = 0;
        rd->len = 0;
        rd->need = 0;

        if (rd->size > NGX_HTTP_RAGQ_READER_KEEP) {
            ngx_http_ragq_reader_free(rd);
        }

        return NGX_OK;
    }

    if (rd->len < rd->need) {
        return NGX_OK;
    }

    root = NULL;
    p = rd->buf + rd->pos;

    rc = ngx_http_ragq_reply_parse(rd, &p, &root, 0);

    if (rc != NGX_OK) {
        if (root) {
            ngx_http_ragq_reply_free(rd, root);
        }

        return (rc == NGX_AGAIN) ? NGX_OK : NGX_ERROR;
    }

    rd->need = 0;
    rd->pos = p - rd->buf;
    *reply = root;

    return NGX_OK;
}


void
ngx_http_ragq_reply_free(ngx_http_ragq_reader_t *rd, redisReply *reply)
{
    if (rd->arena) {
        ngx_http_ragq_arena_rewind();
        return;
    }

    ngx_http_ragq_reply_free_kept(reply);
}


void
ngx_http_ragq_reply_free_kept(redisReply *reply)
{
    size_t i;

    if (reply == NULL) {
        return;
    }

    if (reply->element) {
        for (i = 0; i < reply->elements; i++) {
            ngx_http_ragq_reply_free_kept(reply->element[i]);
        }

        free(reply->element);
    }

    if (reply->str) {
        free(reply->str);
    }

    free(reply);
}
