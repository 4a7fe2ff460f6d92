/*
 * http.c: libcurl multi driven by the worker's loop (see http.h).  All
 * transfers share one multi handle, hence one connection cache, plus a
 * share handle for DNS and TLS sessions.  Completed transfers are reported
 * from curl_multi_info_read, outside curl's own callbacks, so a completion
 * callback may start or cancel other requests.
 *
 * Per-request cost matters (three requests a job, thousands of jobs a
 * second): finished requests keep their easy handle, options and body
 * buffer on a free list for the next one, header lists are built once per
 * distinct auth header, and the proxy environment is read once at start
 * (curl would otherwise getenv() several variables on every transfer).
 *
 * Streamed answers are read on a tick once they have been coming for 50 ms
 * ("paced reads": http_pace.c and DEVELOPERS.md "Answer streams"), not per
 * token.  One whose consumer says it has ended (an SSE "[DONE]") completes
 * when the body ends or, whether or not the server ends it, a grace later
 * (ragq_http_check_done, end_timer).
 *
 * Cleartext (http://) requests with no proxy go to http1.c, the worker's
 * own HTTP/1.1 client, unless RAGQ_HTTP_CLIENT=curl: curl's per-transfer
 * work (its printf-built headers, connection checks, state machine) was
 * over half the worker's CPU per job against local models and Qdrant.
 * Requests of both clients are the same objects, answered the same way.
 */

#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * A pooled request keeps an answer buffer up to this size for the next:
 * the pool is as large as the most requests ever in flight, so bigger
 * buffers (1536-float embeddings are ~32 kB) would pin that much memory
 * per slot (RSS target: 64 MB at 1024 jobs in flight).
 */
#define RAGQ_HTTP_KEEP_BUF (16u * 1024)

static void on_io(int fd, unsigned events, void *data);

static unsigned
want_of(const ragq_http_t *http, curl_socket_t fd)
{
    return (size_t) fd < http->nwant ? http->want[fd] : 0;
}

/* Watches fd as curl asked, less reading while it is paced. */
int
ragq_http_watch(ragq_http_t *http, curl_socket_t fd)
{
    unsigned ev = want_of(http, fd);

    if (ragq_http_paced_find(http, fd) != NULL) {
        ev &= ~(unsigned) RAGQ_IO_READ;
    }
    if (ragq_loop_io(http->loop, fd, ev, on_io, http) < 0 && ev != 0) {
        ragq_log(RAGQ_LOG_ERROR, "cannot watch curl socket %d", (int) fd);
        return -1;
    }
    return 0;
}

static void
req_destroy(ragq_http_req_t *req)
{
    if (req->easy) {
        curl_easy_cleanup(req->easy);
    }
    free(req->send);
    free(req->body);
    free(req->retry_after);
    free(req->retry_after_ms);
    ragq_jbuf_free(&req->head);
    curl_slist_free_all(req->own);
    curl_slist_free_all(req->resolve);
    free(req);
}

/* Ends a request (done or cancelled) and keeps it for the next one. */
void
ragq_http_release(ragq_http_req_t *req)
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
    if (req->ended) {
        if (req->origin == NULL) {
            http->nended--;
        }
        req->ended = 0;
        req->end_wait = 0;
    }
    if (req->origin) {
        ragq_h1_cancel(req);
    } else {
        ragq_http_pace_stop(req);
        curl_multi_remove_handle(http->multi, req->easy);
    }
    free(req->send);
    free(req->retry_after);
    free(req->retry_after_ms);
    req->send = req->retry_after = req->retry_after_ms = NULL;
    if (req->cap > RAGQ_HTTP_KEEP_BUF) {
        free(req->body);
        req->body = NULL;
        req->cap = 0;
    }
    req->len = 0;
    req->too_big = 0;
    req->on_data = NULL;
    req->streamed = 0;
    req->sock = CURL_SOCKET_BAD;
    if (req->own) {
        /* the next request of this handle sets its own list */
        curl_slist_free_all(req->own);
        req->own = NULL;
    }
    req->cb = NULL;
    req->data = NULL;
    req->prev = NULL;
    req->next = http->idle;
    http->idle = req;
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
    ragq_http_check_done(http);
}

static void
on_timer(void *data)
{
    ragq_http_t *http = data;
    int          running;

    curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    ragq_http_check_done(http);
}

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    ragq_http_t       *http = userp;
    unsigned           ev = 0;
    ragq_http_paced_t *p;

    ragq_http_req_t *req = NULL;

    (void) socketp;
    if (s < 0) {
        return 0;
    }
    if (what != CURL_POLL_REMOVE &&
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req) == CURLE_OK &&
        req != NULL) {
        req->sock = s;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        ev |= RAGQ_IO_READ;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        ev |= RAGQ_IO_WRITE;
    }
    if ((size_t) s >= http->nwant) {
        size_t         n = http->nwant ? http->nwant : 64;
        unsigned char *w;
        uint32_t      *ps;

        while (n <= (size_t) s) {
            n *= 2;
        }
        if ((w = realloc(http->want, n)) == NULL) {
            return -1;
        }
        memset(w + http->nwant, 0, n - http->nwant);
        http->want = w;
        if ((ps = realloc(http->pslot, n * sizeof(*ps))) == NULL) {
            return -1;
        }
        memset(ps + http->nwant, 0, (n - http->nwant) * sizeof(*ps));
        http->pslot = ps;
        http->nwant = n;
    }
    http->want[s] = (unsigned char) ev;
    /* Gone (closed or back in the cache): its number may be reused by a
     * connection that must be watched normally. */
    if (what == CURL_POLL_REMOVE &&
        (p = ragq_http_paced_find(http, s)) != NULL) {
        ragq_http_paced_drop(http, p);
    }
    return ragq_http_watch(http, s);
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
    long             code = 0;
    int              ended = req->ended, rc;

    if (req->on_data) {
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
    }
    rc = ragq_http_take(req, ptr, n, code);
    if (rc == RAGQ_HTTP_DATA_END) {
        /* Taken (not a short count, which would fail the transfer and
         * close its connection): curl goes on with the bytes it has read,
         * and ragq_http_check_done completes the transfer after. */
        if (!ended) {
            req->http->nended++;
        }
        return n;
    }
    return rc == 0 ? n : 0;
}

int
ragq_http_take(ragq_http_req_t *req, const char *ptr, size_t n, long code)
{
    int rc;

    if (req->ended) {
        return RAGQ_HTTP_DATA_END; /* past the end on_data saw: dropped */
    }
    if (req->on_data && code >= 200 && code <= 299) {
        /* Streamed: the same cap, counted, nothing kept. */
        if (n > req->max_answer - req->streamed) {
            req->too_big = 1;
            return -1;
        }
        req->streamed += n;
        if ((rc = req->on_data(ptr, n, req->data)) == RAGQ_HTTP_DATA_END) {
            req->ended = 1;
            req->ended_at = ragq_now_ms();
            return rc;
        }
        if (rc != 0) {
            return -1;
        }
        if (req->paced == CURL_SOCKET_BAD) {
            /*
             * Paced only once the answer has been coming for a tick, or
             * comes token by token (http_int.h): a short one sent at once
             * ends unpaced, without a tick's wait for its end.
             */
            uint64_t now = ragq_now_ms();

            if (req->first_body == 0) {
                req->first_body = now;
            } else if (ragq_http_pace_due(req->first_body, req->last_body,
                                          now)) {
                ragq_http_pace_start(req);
            }
            req->last_body = now;
        }
        return 0;
    }
    /* Past the cap: stop the transfer now (curl fails it), read no more. */
    if (n > req->max_answer - req->len) {
        req->too_big = 1;
        return -1;
    }
    if (req->len + n + 1 > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        char  *p;

        while (cap < req->len + n + 1) {
            cap *= 2;
        }
        if (cap > req->max_answer + 1) {
            cap = req->max_answer + 1;
        }
        p = realloc(req->body, cap);
        if (p == NULL) {
            return -1;
        }
        req->body = p;
        req->cap = cap;
    }
    memcpy(req->body + req->len, ptr, n);
    req->len += n;
    req->body[req->len] = '\0';
    return 0;
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

void
ragq_http_check_done(ragq_http_t *http)
{
    CURLMsg *msg;
    int      left;

    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        ragq_http_req_t *req;
        long             code = 0;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
        /* Ended by on_data, a failure after (the server closed without the
         * body's end, a timeout) does not matter: its answer is whole. */
        if (msg->data.result == CURLE_OK || req->ended) {
            curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
            ragq_http_finish(req, code, NULL, 0);
            continue;
        }
        /* FILESIZE_EXCEEDED: the Content-Length said so, nothing read. */
        if (msg->data.result == CURLE_FILESIZE_EXCEEDED) {
            req->too_big = 1;
        }
        if (msg->data.result == CURLE_COULDNT_CONNECT) {
            ragq_http_dns_unreachable(http, req);
        }
        ragq_http_finish(req, 0,
                         req->errbuf[0] ? req->errbuf
                                        : curl_easy_strerror(msg->data.result),
                         msg->data.result == CURLE_OPERATION_TIMEDOUT);
    }
    /*
     * Transfers whose on_data has its answer (RAGQ_HTTP_DATA_END), and
     * whose body has not ended within the grace: completed now, not when
     * the server ends the body (it may never, or only at the timeout).
     * Removed unfinished from the multi handle, such a transfer's
     * connection is closed (an HTTP/2 stream is reset), never reused.
     */
    while (http->nended > 0) {
        ragq_http_req_t *req;
        long             code = 0;
        uint64_t         now = ragq_now_ms(), grace = ragq_http_end_grace(http);
        uint64_t         wait = UINT64_MAX;

        for (req = http->reqs; req; req = req->next) {
            if (!req->ended || req->origin != NULL) {
                continue;
            }
            if (now - req->ended_at >= grace) {
                break;
            }
            if (grace - (now - req->ended_at) < wait) {
                wait = grace - (now - req->ended_at);
            }
        }
        if (req == NULL) {
            if (wait != UINT64_MAX) {
                ragq_timer_start(http->loop, &http->end_timer, wait);
            }
            break;
        }
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
        ragq_http_finish(req, code, NULL, 0); /* nended-- on release */
    }
}

uint64_t
ragq_http_end_grace(const ragq_http_t *http)
{
    return http->pace_ms + RAGQ_HTTP_END_GRACE_MS;
}

static void
on_end_timer(void *data)
{
    ragq_http_check_done(data);
}

void
ragq_http_finish(ragq_http_req_t *req, long status, const char *error,
                 int timed_out)
{
    ragq_http_response_t resp;
    char                 err[CURL_ERROR_SIZE + 64];

    memset(&resp, 0, sizeof(resp));
    resp.elapsed_ms = (long) (ragq_now_ms() - req->started);
    resp.error = "";
    if (error == NULL) {
        resp.status = status;
    } else {
        resp.timed_out = timed_out;
        resp.too_large = req->too_big;
        if (resp.too_large) {
            snprintf(err, sizeof(err), "answer larger than %zu bytes",
                     req->max_answer);
        } else if (resp.timed_out) {
            snprintf(err, sizeof(err), "no answer within %ld ms",
                     req->timeout_ms);
        } else {
            snprintf(err, sizeof(err), "%s", error);
        }
        resp.error = err;
    }
    resp.body = req->body ? req->body : "";
    resp.len = req->len;
    resp.retry_after = req->retry_after;
    resp.retry_after_ms = req->retry_after_ms;
    req->cb(&resp, req->data);
    ragq_http_release(req);
}

/* The first of the variables that is set and not empty, copied. */
static char *
env_first(const char *a, const char *b)
{
    const char *v = getenv(a);

    if ((v == NULL || *v == '\0') && b != NULL) {
        v = getenv(b);
    }
    return v && *v ? strdup(v) : NULL;
}

/* What curl's detect_proxy() would find for either scheme, read once. */
static void
read_proxy_env(ragq_http_t *http)
{
    char *all = env_first("all_proxy", "ALL_PROXY");

    /* Like curl: only lowercase http_proxy (HTTP_PROXY is CGI input). */
    http->http_proxy = env_first("http_proxy", NULL);
    http->https_proxy = env_first("https_proxy", "HTTPS_PROXY");
    http->no_proxy = env_first("no_proxy", "NO_PROXY");
    if (http->http_proxy == NULL && all) {
        http->http_proxy = strdup(all);
    }
    if (http->https_proxy == NULL && all) {
        http->https_proxy = strdup(all);
    }
    free(all);
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
    http->max_per_host = max_per_host > 0 ? max_per_host : 1;
    http->own_client = 1;
    http->pace_ms = RAGQ_HTTP_PACE_MS;
    read_proxy_env(http);
    ragq_timer_init(&http->timer, on_timer, http);
    ragq_timer_init(&http->tick, ragq_http_pace_tick, http);
    ragq_timer_init(&http->end_timer, on_end_timer, http);
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
ragq_http_use_curl(ragq_http_t *http, int curl_only)
{
    http->own_client = !curl_only;
}

void
ragq_http_free(ragq_http_t *http)
{
    ragq_http_req_t *req;
    size_t           i;

    if (http == NULL) {
        return;
    }
    http->h1_closing = 1;
    while (http->reqs) {
        ragq_http_release(http->reqs);
    }
    ragq_h1_free(http);
    while ((req = http->idle) != NULL) {
        http->idle = req->next;
        req_destroy(req);
    }
    if (http->loop) {
        ragq_timer_stop(http->loop, &http->timer);
        ragq_timer_stop(http->loop, &http->tick);
        ragq_timer_stop(http->loop, &http->end_timer);
    }
    if (http->multi) {
        curl_multi_cleanup(http->multi);
    }
    if (http->share) {
        curl_share_cleanup(http->share);
    }
    curl_slist_free_all(http->dns_forget);
    for (i = 0; i < http->nhsets; i++) {
        free(http->hsets[i].extra);
        curl_slist_free_all(http->hsets[i].list);
    }
    free(http->paced);
    free(http->scratch);
    free(http->want);
    free(http->pslot);
    free(http->http_proxy);
    free(http->https_proxy);
    free(http->no_proxy);
    free(http);
}

size_t
ragq_http_active(const ragq_http_t *http)
{
    return http->active;
}

static struct curl_slist *
headers_build(const char *extra)
{
    static const char *fixed[] = {
        "Content-Type: application/json", "Accept: application/json",
        /* No 100-continue round trip for small JSON bodies. */
        "Expect:"};
    struct curl_slist *h = NULL, *t;
    size_t             i;

    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if ((t = curl_slist_append(h, fixed[i])) == NULL) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    if (extra && (t = curl_slist_append(h, extra)) == NULL) {
        curl_slist_free_all(h);
        return NULL;
    }
    return extra ? t : h;
}

/* The header list for this extra header, built on first use and kept. */
static struct curl_slist *
headers_for(ragq_http_t *http, const char *extra)
{
    ragq_http_headers_t *hs;
    size_t               i;

    for (i = 0; i < http->nhsets; i++) {
        hs = &http->hsets[i];
        if (extra == NULL ? hs->extra == NULL
                          : hs->extra && strcmp(hs->extra, extra) == 0) {
            return hs->list;
        }
    }
    if (http->nhsets == RAGQ_HTTP_HEADER_SETS) {
        return NULL; /* more distinct keys than backends: unexpected */
    }
    hs = &http->hsets[http->nhsets];
    hs->extra = extra ? strdup(extra) : NULL;
    if (extra && hs->extra == NULL) {
        return NULL;
    }
    hs->list = headers_build(extra);
    if (hs->list == NULL) {
        free(hs->extra);
        hs->extra = NULL;
        return NULL;
    }
    http->nhsets++;
    return hs->list;
}

/* A request from the free list, or a new one. */
static ragq_http_req_t *
req_get(ragq_http_t *http)
{
    ragq_http_req_t *req = http->idle;

    if (req != NULL) {
        http->idle = req->next;
        req->next = NULL;
        return req;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        return NULL;
    }
    req->http = http;
    req->paced = req->sock = CURL_SOCKET_BAD;
    ragq_timer_init(&req->timer, NULL, req);
    return req;
}

/* Its curl handle, made with the fixed options on first use by curl. */
static CURL *
req_easy(ragq_http_req_t *req)
{
    ragq_http_t *http = req->http;
    CURL        *e;

    if (req->easy != NULL) {
        return req->easy;
    }
    req->easy = e = curl_easy_init();
    if (e == NULL) {
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, http->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ragq-worker/1.0");
    /* Every URL of ours is http(s); never follow a redirect (the default,
     * said here because callbacks rely on it). */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SHARE, http->share);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    /* Set (possibly empty) so curl does not read the environment again. */
    curl_easy_setopt(e, CURLOPT_NOPROXY, http->no_proxy ? http->no_proxy : "");
    return e;
}

/* Into the list of requests in flight. */
static void
req_link(ragq_http_t *http, ragq_http_req_t *req)
{
    req->next = http->reqs;
    req->prev = NULL;
    if (http->reqs) {
        http->reqs->prev = req;
    }
    http->reqs = req;
    http->active++;
}

/* On http1.c when it can carry the URL; 0 there, 1 for curl, -1 failed. */
static int
req_start_own(ragq_http_req_t *req, const char *url, const char *const *headers,
              size_t n, char *body, size_t len)
{
    ragq_http_t *http = req->http;
    int          rc;

    if (!http->own_client) {
        return 1;
    }
    rc = ragq_h1_start(req, url, headers, n, body, len);
    if (rc == 0) {
        req_link(http, req);
    } else if (rc < 0) {
        /* Nothing started: back on the free list, the caller keeps body. */
        req->next = http->idle;
        http->idle = req;
    }
    return rc;
}

ragq_http_req_t *
ragq_http_post(ragq_http_t *http, const char *url, const char *header,
               const char *body, size_t len, long timeout_ms, size_t max_answer,
               ragq_http_cb cb, void *data)
{
    char            *copy = malloc(len + 1);
    ragq_http_req_t *req;

    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    req = ragq_http_post_take(http, url, header, copy, len, timeout_ms,
                              max_answer, cb, data);
    if (req == NULL) {
        free(copy);
    }
    return req;
}

/*
 * Starts a POST with either one extra header line (header) or n lines of
 * this request only (headers); the body is taken on success.
 */
static ragq_http_req_t *
post(ragq_http_t *http, const char *url, const char *header,
     const char *const *headers, size_t n, char *body, size_t len,
     long timeout_ms, size_t max_answer, ragq_http_cb cb, void *data)
{
    struct curl_slist *h = NULL, *t;
    ragq_http_req_t   *req;
    CURL              *e;
    int                tls = strncasecmp(url, "https:", 6) == 0, own;
    const char        *proxy = tls ? http->https_proxy : http->http_proxy;
    size_t             i;

    if ((req = req_get(http)) == NULL) {
        return NULL;
    }
    req->cb = cb;
    req->data = data;
    req->timeout_ms = timeout_ms;
    req->max_answer = max_answer;
    req->started = ragq_now_ms();
    req->first_body = req->last_body = 0;
    req->errbuf[0] = '\0';
    if (header != NULL) {
        headers = &header;
        n = 1;
    }
    own = req_start_own(req, url, headers, n, body, len);
    if (own <= 0) {
        return own == 0 ? req : NULL;
    }
    if (header != NULL || headers == NULL) {
        h = headers_for(http, header);
    } else {
        /* Its own list, set before the transfer starts: curl reads options
         * when it runs the handle, on the next socket action. */
        h = headers_build(NULL);
        for (i = 0; h && i < n; i++) {
            if ((t = curl_slist_append(h, headers[i])) == NULL) {
                curl_slist_free_all(h);
                h = NULL;
            }
        }
        req->own = h;
    }
    if (h == NULL || (e = req_easy(req)) == NULL) {
        curl_slist_free_all(req->own);
        req->own = NULL;
        req->next = http->idle;
        http->idle = req;
        return NULL;
    }

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    /* Waiting for a connection to multiplex only pays where HTTP/2 can be
     * negotiated (TLS); on cleartext it would only delay the first wave. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) max_answer);
    curl_easy_setopt(e, CURLOPT_PROXY, proxy ? proxy : "");
    req->proxied = proxy != NULL && proxy[0] != '\0';
    ragq_http_dns_apply(http, req);

    req_link(http, req);
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK) {
        /* The caller keeps the body on failure. */
        ragq_http_release(req);
        return NULL;
    }
    req->send = body;
    return req;
}

ragq_http_req_t *
ragq_http_post_take(ragq_http_t *http, const char *url, const char *header,
                    char *body, size_t len, long timeout_ms, size_t max_answer,
                    ragq_http_cb cb, void *data)
{
    return post(http, url, header, NULL, 0, body, len, timeout_ms, max_answer,
                cb, data);
}

ragq_http_req_t *
ragq_http_post_headers(ragq_http_t *http, const char *url,
                       const char *const *headers, size_t n, char *body,
                       size_t len, long timeout_ms, size_t max_answer,
                       ragq_http_cb cb, void *data)
{
    static const char *none[1];

    return post(http, url, NULL, headers ? headers : none, n, body, len,
                timeout_ms, max_answer, cb, data);
}

void
ragq_http_stream(ragq_http_req_t *req, ragq_http_data_cb on_data)
{
    req->on_data = on_data;
}

void
ragq_http_cancel(ragq_http_req_t *req)
{
    if (req != NULL) {
        ragq_http_release(req);
    }
}
