/*
 * ragq: the Valkey protocol (RESP) as the module speaks it, whatever
 * carries the bytes: commands written straight into buffers, the reply
 * objects of hiredis's reader carved from a per-process arena, and the
 * table of Valkey errors: which answer (status, code) each one gets.
 */

#include "ngx_http_ragq_resp.h"

#include <ngx_http.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define ngx_http_ragq_poison(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define ngx_http_ragq_unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ngx_http_ragq_poison(p, n)
#define ngx_http_ragq_unpoison(p, n)
#endif


/* decimal, without ngx_sprintf()'s format parsing: most are 1-3 digits */
u_char *
ngx_http_ragq_resp_uint(u_char *p, uint64_t n)
{
    u_char  *q;
    uint64_t v;
    size_t   len;

    if (n < 10) {
        *p = (u_char) ('0' + n);
        return p + 1;
    }

    len = 1;

    for (v = n; v >= 10; v /= 10) {
        len++;
    }

    q = p + len;

    do {
        *--q = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return p + len;
}


u_char *
ngx_http_ragq_resp_bulk(u_char *p, const void *data, size_t len)
{
    *p++ = '$';
    p = ngx_http_ragq_resp_uint(p, len);
    *p++ = '\r';
    *p++ = '\n';
    p = ngx_cpymem(p, data, len);
    *p++ = '\r';
    *p++ = '\n';

    return p;
}


/* ---- replies of the command connection, built in an arena ---- */

/*
 * hiredis 0.14's default reply objects cost a calloc() and a malloc() per
 * element and as many free()s: more than the rest of a /job-status request.
 * Its reader parses one reply at a time and frees it (by its root) before
 * it starts the next one, and every callback of ours is done with a reply
 * when it returns, so the command connection's replies are carved from one
 * static arena that is rewound when the root is freed. A reply larger than
 * the arena spills into malloc()ed blocks, freed at the rewind. Under ASan
 * the rewound arena is poisoned, so a reply used after its free is caught.
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
static redisReply            *ngx_http_ragq_arena_root;


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
    ngx_http_ragq_arena_root = NULL;

    ngx_http_ragq_poison(ngx_http_ragq_arena, sizeof(ngx_http_ragq_arena));
}


static void *
ngx_http_ragq_arena_alloc(size_t size)
{
    u_char                *p;
    size_t                 block;
    ngx_http_ragq_spill_t *s;

    size = ngx_align(size, sizeof(uint64_t));

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


static redisReply *
ngx_http_ragq_reply_new(const redisReadTask *task, int type)
{
    redisReply *r, *parent;

    r = ngx_http_ragq_arena_alloc(sizeof(redisReply));
    if (r == NULL) {
        return NULL;
    }

    ngx_memzero(r, sizeof(redisReply));
    r->type = type;

    if (task->parent) {
        parent = task->parent->obj;
        parent->element[task->idx] = r;

    } else {
        ngx_http_ragq_arena_root = r;
    }

    return r;
}


static void *
ngx_http_ragq_reply_string(const redisReadTask *task, char *str, size_t len)
{
    char       *buf;
    redisReply *r;

    r = ngx_http_ragq_reply_new(task, task->type);
    if (r == NULL) {
        return NULL;
    }

    buf = ngx_http_ragq_arena_alloc(len + 1);
    if (buf == NULL) {
        return NULL;
    }

    ngx_memcpy(buf, str, len);
    buf[len] = '\0';

    r->str = buf;
    r->len = len;

    return r;
}


static void *
ngx_http_ragq_reply_array(const redisReadTask *task, int elements)
{
    redisReply *r;

    r = ngx_http_ragq_reply_new(task, REDIS_REPLY_ARRAY);
    if (r == NULL) {
        return NULL;
    }

    if (elements > 0) {
        r->element =
            ngx_http_ragq_arena_alloc((size_t) elements * sizeof(redisReply *));
        if (r->element == NULL) {
            return NULL;
        }

        ngx_memzero(r->element, (size_t) elements * sizeof(redisReply *));
    }

    r->elements = elements;

    return r;
}


static void *
ngx_http_ragq_reply_integer(const redisReadTask *task, long long value)
{
    redisReply *r;

    r = ngx_http_ragq_reply_new(task, REDIS_REPLY_INTEGER);
    if (r) {
        r->integer = value;
    }

    return r;
}


static void *
ngx_http_ragq_reply_nil(const redisReadTask *task)
{
    return ngx_http_ragq_reply_new(task, REDIS_REPLY_NIL);
}


/* hiredis frees roots only; anything else is a no-op, freed with its root */
static void
ngx_http_ragq_reply_free(void *reply)
{
    if (reply == ngx_http_ragq_arena_root) {
        ngx_http_ragq_arena_rewind();
    }
}


static redisReplyObjectFunctions ngx_http_ragq_reply_fns = {
    ngx_http_ragq_reply_string, ngx_http_ragq_reply_array,
    ngx_http_ragq_reply_integer, ngx_http_ragq_reply_nil,
    ngx_http_ragq_reply_free
};


/* from now on, reader builds its replies in the arena */
void
ngx_http_ragq_resp_arena(redisReader *reader)
{
    ngx_http_ragq_arena_rewind();
    reader->fn = &ngx_http_ragq_reply_fns;
}


/* ---- error replies ---- */


#define NGX_HTTP_RAGQ_RETRY_NO " (see the error log); retrying will not help"

const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_readonly = {
    "READONLY", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_readonly",
    "the job store (Valkey) is a read-only replica: a fail-over is in "
    "progress, or ragq_valkey points at a replica; retry shortly",
    1
};

const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_denied = {
    "NOPERM", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_denied",
    "the job store (Valkey) refused nginx: check the user, password and ACL "
    "of ragq_valkey" NGX_HTTP_RAGQ_RETRY_NO,
    0
};

const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_misconfigured = {
    "MISCONF", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_misconfigured",
    "the job store (Valkey) refused the command: check its "
    "configuration" NGX_HTTP_RAGQ_RETRY_NO,
    0
};

const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_internal = {
    "", NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
    "the job store returned an unexpected reply", 0
};

/* the watchdog gave up on a silent connection: its requests timed out */
const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_timeout = {
    "", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_timeout",
    "the job store (Valkey) did not answer in time; retry shortly", 1
};


/*
 * The start of Valkey's error text, and the answer. 503 (with Retry-After)
 * when the condition passes by itself, 500 when someone must change
 * something. DEVELOPERS.md and README.md carry this table.
 */
static const ngx_http_ragq_resp_error_t ngx_http_ragq_resp_errors[] = {
    { "LOADING", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_loading",
      "the job store (Valkey) is loading its data; retry shortly", 0 },
    { "BUSY", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_busy",
      "the job store (Valkey) is busy running a script; retry shortly", 0 },
    { "OOM", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_oom",
      "the job store (Valkey) is out of memory (maxmemory); retry later", 0 },
    { "MASTERDOWN", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_unavailable",
      "the job store (Valkey) is a replica that lost its primary; retry "
      "shortly",
      1 },
    { "NOTREPLICATED", NGX_HTTP_SERVICE_UNAVAILABLE, "valkey_not_replicated",
      "the job was written but not confirmed by ragq_valkey_replicas "
      "replicas in time, so it may exist: retry with the same "
      "Idempotency-Key header to get this job instead of a second one",
      0 },
    { "NOAUTH", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_denied",
      "the job store (Valkey) wants a password: set ragq_valkey "
      "password=" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "WRONGPASS", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_denied",
      "the job store (Valkey) refused the user or password of "
      "ragq_valkey" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "MOVED", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_misconfigured",
      "the job store is a Valkey Cluster, which ragq does not support: point "
      "ragq_valkey at one primary" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "ASK", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_misconfigured",
      "the job store is a Valkey Cluster, which ragq does not support: point "
      "ragq_valkey at one primary" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "CROSSSLOT", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_misconfigured",
      "the job store is a Valkey Cluster, which ragq does not support: point "
      "ragq_valkey at one primary" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "CLUSTERDOWN", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_misconfigured",
      "the job store is a Valkey Cluster, which ragq does not support: point "
      "ragq_valkey at one primary" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "WRONGTYPE", NGX_HTTP_INTERNAL_SERVER_ERROR, "valkey_misconfigured",
      "a key of this ragq_prefix holds another type of value: is another "
      "application using the prefix?" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
    { "ERR unknown command", NGX_HTTP_INTERNAL_SERVER_ERROR,
      "valkey_misconfigured",
      "the job store (Valkey) does not know a command ragq needs: it may be "
      "too old or renamed the command" NGX_HTTP_RAGQ_RETRY_NO,
      0 },
};


static ngx_flag_t
ngx_http_ragq_resp_starts(const char *str, size_t len, const char *prefix)
{
    size_t n = ngx_strlen(prefix);

    return len >= n && ngx_strncmp(str, prefix, n) == 0
           && (len == n || str[n] == ' ' || str[n] == '\'');
}


const ngx_http_ragq_resp_error_t *
ngx_http_ragq_resp_error(const char *str, size_t len)
{
    ngx_uint_t i;

    if (ngx_http_ragq_resp_starts(str, len, "READONLY")) {
        return &ngx_http_ragq_resp_readonly;
    }

    if (ngx_http_ragq_resp_starts(str, len, "NOPERM")) {
        return &ngx_http_ragq_resp_denied;
    }

    if (ngx_http_ragq_resp_starts(str, len, "MISCONF")) {
        return &ngx_http_ragq_resp_misconfigured;
    }

    for (i = 0; i < sizeof(ngx_http_ragq_resp_errors)
                        / sizeof(ngx_http_ragq_resp_errors[0]);
         i++)
    {
        if (ngx_http_ragq_resp_starts(str, len,
                                      ngx_http_ragq_resp_errors[i].prefix))
        {
            return &ngx_http_ragq_resp_errors[i];
        }
    }

    return &ngx_http_ragq_resp_internal;
}
