/*
 * http.c: libcurl multi driven by the worker's loop (see http.h).  All
 * transfers share one multi handle, hence one connection cache, plus a
 * share handle for DNS and TLS sessions.  Completed transfers are reported
 * from curl_multi_info_read, outside curl's own callbacks, so a completion
 * callback may start or cancel other requests.
 */

#include "http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* An upstream answer bigger than this is an error, not a memory hazard. */
#define RAGQ_HTTP_MAX_BODY (64u * 1024 * 1024)

struct ragq_http_req_s {
    ragq_http_t       *http;
    ragq_http_req_t   *prev, *next;
    CURL              *easy;
    struct curl_slist *headers;
    char              *body;
    size_t             len, cap;
    char              *retry_after, *retry_after_ms;
    int                too_big;
    uint64_t           started;
    long               timeout_ms;
    ragq_http_cb       cb;
    void              *data;
    char               errbuf[CURL_ERROR_SIZE];
};

struct ragq_http_s {
    ragq_loop_t     *loop;
    CURLM           *multi;
    CURLSH          *share;
    ragq_timer_t     timer;
    ragq_http_req_t *reqs;
    size_t           active;
    long             connect_timeout_ms;
};

static void check_done(ragq_http_t *http);

static void
req_free(ragq_http_req_t *req)
{
    ragq_http_t *http = req->http;

    if (req->prev) {
        req->prev->next = req->next;
    } else {
        http->reqs = req->next;
    }
    if (req->next) {
        req->next->prev = req->prev;
    }
    http->active--;
    curl_multi_remove_handle(http->multi, req->easy);
    curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->body);
    free(req->retry_after);
    free(req->retry_after_ms);
    free(req);
}

static void
on_io(int fd, unsigned events, void *data)
{
    ragq_http_t *http = data;
    int          flags = 0, running;

    if (events & RAGQ_IO_READ) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & RAGQ_IO_WRITE) {
        flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(http->multi, fd, flags, &running);
    check_done(http);
}

static void
on_timer(void *data)
{
    ragq_http_t *http = data;
    int          running;

    curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(http);
}

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    ragq_http_t *http = userp;
    unsigned     ev = 0;

    (void) easy;
    (void) socketp;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        ev |= RAGQ_IO_READ;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        ev |= RAGQ_IO_WRITE;
    }
    if (ragq_loop_io(http->loop, s, ev, on_io, http) < 0 && ev != 0) {
        ragq_log(RAGQ_LOG_ERROR, "cannot watch curl socket %d", (int) s);
        return -1;
    }
    return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ragq_http_t *http = userp;

    (void) multi;
    if (timeout_ms < 0) {
        ragq_timer_stop(http->loop, &http->timer);
    } else {
        /* Never call back into curl from here: post it to the loop. */
        ragq_timer_start(http->loop, &http->timer, (uint64_t) timeout_ms);
    }
    return 0;
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    ragq_http_req_t *req = userdata;
    size_t           n = size * nmemb;

    if (req->len + n + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        char  *p;

        while (cap < req->len + n + 1) {
            cap *= 2;
        }
        if (cap > RAGQ_HTTP_MAX_BODY) {
            req->too_big = 1;
            return 0;
        }
        p = realloc(req->body, cap);
        if (p == NULL) {
            return 0;
        }
        req->body = p;
        req->cap = cap;
    }
    memcpy(req->body + req->len, ptr, n);
    req->len += n;
    req->body[req->len] = '\0';
    return n;
}

static char *
header_value(const char *line, size_t n, const char *name)
{
    size_t nl = strlen(name);
    char  *v;

    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') {
        return NULL;
    }
    line += nl + 1;
    n -= nl + 1;
    while (n > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        n--;
    }
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n' ||
                     line[n - 1] == ' ' || line[n - 1] == '\t')) {
        n--;
    }
    v = malloc(n + 1);
    if (v != NULL) {
        memcpy(v, line, n);
        v[n] = '\0';
    }
    return v;
}

static size_t
header_cb(char *line, size_t size, size_t nmemb, void *userdata)
{
    ragq_http_req_t *req = userdata;
    size_t           n = size * nmemb;
    char            *v;

    /* A new status line (after 100 Continue, say) starts a new header set. */
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        free(req->retry_after);
        free(req->retry_after_ms);
        req->retry_after = req->retry_after_ms = NULL;
        return n;
    }
    if ((v = header_value(line, n, "retry-after")) != NULL) {
        free(req->retry_after);
        req->retry_after = v;
    } else if ((v = header_value(line, n, "retry-after-ms")) != NULL) {
        free(req->retry_after_ms);
        req->retry_after_ms = v;
    }
    return n;
}

static void
check_done(ragq_http_t *http)
{
    CURLMsg *msg;
    int      left;

    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        ragq_http_response_t resp;
        ragq_http_req_t     *req;
        char                 err[CURL_ERROR_SIZE + 64];
        long                 code = 0;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
        memset(&resp, 0, sizeof(resp));
        resp.elapsed_ms = (long) (ragq_now_ms() - req->started);
        resp.error = "";
        if (msg->data.result == CURLE_OK) {
            curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
            resp.status = code;
        } else {
            resp.timed_out = msg->data.result == CURLE_OPERATION_TIMEDOUT;
            if (req->too_big) {
                snprintf(err, sizeof(err), "answer larger than %u bytes",
                         RAGQ_HTTP_MAX_BODY);
            } else if (resp.timed_out) {
                snprintf(err, sizeof(err), "no answer within %ld ms",
                         req->timeout_ms);
            } else {
                snprintf(err, sizeof(err), "%s",
                         req->errbuf[0] ? req->errbuf
                                        : curl_easy_strerror(msg->data.result));
            }
            resp.error = err;
        }
        resp.body = req->body ? req->body : "";
        resp.len = req->len;
        resp.retry_after = req->retry_after;
        resp.retry_after_ms = req->retry_after_ms;
        /* Unlink first: the callback may free what data points to. */
        req->cb(&resp, req->data);
        req_free(req);
    }
}

ragq_http_t *
ragq_http_new(ragq_loop_t *loop, long connect_timeout_ms, long max_per_host)
{
    static int   inited;
    ragq_http_t *http;

    if (!inited) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return NULL;
        }
        inited = 1;
    }
    http = calloc(1, sizeof(*http));
    if (http == NULL) {
        return NULL;
    }
    http->loop = loop;
    http->connect_timeout_ms = connect_timeout_ms;
    ragq_timer_init(&http->timer, on_timer, http);
    http->multi = curl_multi_init();
    http->share = curl_share_init();
    if (http->multi == NULL || http->share == NULL) {
        ragq_http_free(http);
        return NULL;
    }
    curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(http->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host);
    /* Keep every connection we may use alive between jobs. */
    curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, max_per_host * 3 + 8);
    return http;
}

void
ragq_http_free(ragq_http_t *http)
{
    if (http == NULL) {
        return;
    }
    while (http->reqs) {
        req_free(http->reqs);
    }
    if (http->loop) {
        ragq_timer_stop(http->loop, &http->timer);
    }
    if (http->multi) {
        curl_multi_cleanup(http->multi);
    }
    if (http->share) {
        curl_share_cleanup(http->share);
    }
    free(http);
}

size_t
ragq_http_active(const ragq_http_t *http)
{
    return http->active;
}

ragq_http_req_t *
ragq_http_post(ragq_http_t *http, const char *url, const char *header,
               const char *body, size_t len, long timeout_ms, ragq_http_cb cb,
               void *data)
{
    ragq_http_req_t   *req = calloc(1, sizeof(*req));
    struct curl_slist *h = NULL, *t;
    CURL              *e;

    if (req == NULL) {
        return NULL;
    }
    req->easy = e = curl_easy_init();
    if (e == NULL) {
        free(req);
        return NULL;
    }
    t = curl_slist_append(h, "Content-Type: application/json");
    if (t) {
        h = t;
        t = curl_slist_append(h, "Accept: application/json");
    }
    if (t) {
        h = t;
        /* No 100-continue round trip for small JSON bodies. */
        t = curl_slist_append(h, "Expect:");
    }
    if (t && header) {
        h = t;
        t = curl_slist_append(h, header);
    }
    if (t == NULL) {
        curl_slist_free_all(h);
        curl_easy_cleanup(e);
        free(req);
        return NULL;
    }
    req->headers = h = t;
    req->http = http;
    req->cb = cb;
    req->data = data;
    req->timeout_ms = timeout_ms;
    req->started = ragq_now_ms();

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, http->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ragq-worker/1.0");
    curl_easy_setopt(e, CURLOPT_SHARE, http->share);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);

    req->next = http->reqs;
    if (http->reqs) {
        http->reqs->prev = req;
    }
    http->reqs = req;
    http->active++;
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK) {
        req_free(req);
        return NULL;
    }
    return req;
}

void
ragq_http_cancel(ragq_http_req_t *req)
{
    if (req != NULL) {
        req_free(req);
    }
}
