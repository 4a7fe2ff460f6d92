/*
 * ragq: the Valkey protocol (RESP) as the module writes it, whatever
 * carries the bytes: commands written straight into buffers, and the table
 * of Valkey errors: which answer (status, code) each one gets.  Replies
 * are read by ngx_http_ragq_reply.c.
 */

#include "ngx_http_ragq_resp.h"

#include <ngx_http.h>

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
