/*
 * http_pace.c: paced reads (see http_int.h and DEVELOPERS.md "Answer
 * streams"): the table of connections whose streamed answer is read on
 * the tick, found by fd; the tick, on the clock's boundaries of the pace
 * (RAGQ_STREAM_INTERVAL); when a transfer joins and leaves it.
 */

#include "http_int.h"

#include <stdlib.h>

/*
 * The tick falls on the clock's boundaries of the pace, as queue_out.c's
 * batches do, so what a tick reads goes out in that tick's batches, of all
 * jobs at once.
 */
static uint64_t
pace_delay(const ragq_http_t *http)
{
    return ragq_ms_to_boundary(http->pace_ms);
}

int
ragq_http_pace_due(uint64_t first_body, uint64_t last_body, uint64_t now)
{
    return now - first_body >= RAGQ_HTTP_PACE_HEAD_MS ||
           now - last_body >= RAGQ_HTTP_PACE_GAP_MS;
}

/* By fd, not by search: with a thousand answers streaming, every socket
 * callback of a tick would otherwise walk the whole table. */
ragq_http_paced_t *
ragq_http_paced_find(ragq_http_t *http, curl_socket_t fd)
{
    if ((size_t) fd >= http->nwant || http->pslot[fd] == 0) {
        return NULL;
    }
    return &http->paced[http->pslot[fd] - 1];
}

/* Out of the table (the last entry takes its place); still watched as is. */
void
ragq_http_paced_drop(ragq_http_t *http, ragq_http_paced_t *p)
{
    size_t i = (size_t) (p - http->paced);

    http->pslot[p->fd] = 0;
    if (i != --http->npaced) {
        *p = http->paced[http->npaced];
        http->pslot[p->fd] = (uint32_t) i + 1;
    }
}

static void
paced_remove(ragq_http_t *http, ragq_http_paced_t *p)
{
    curl_socket_t fd = p->fd;

    ragq_http_paced_drop(http, p);
    ragq_http_watch(http, fd);
}

void
ragq_http_pace_tick(void *data)
{
    ragq_http_t *http = data;
    size_t       i, n = http->npaced;
    int          running;

    /* A copy: curl's callbacks may unpace fds while we read. */
    for (i = 0; i < n; i++) {
        http->scratch[i] = http->paced[i].fd;
    }
    for (i = 0; i < n; i++) {
        curl_multi_socket_action(http->multi, http->scratch[i], CURL_CSELECT_IN,
                                 &running);
    }
    ragq_http_check_done(http);
    ragq_h1_pace_tick(http);
    if ((http->npaced > 0 || http->nh1paced > 0) &&
        !ragq_timer_active(&http->tick)) {
        ragq_timer_start(http->loop, &http->tick, pace_delay(http));
    }
}

/* From the write callback, after the first streamed body bytes. */
void
ragq_http_pace_start(ragq_http_req_t *req)
{
    ragq_http_t       *http = req->http;
    curl_socket_t      fd = req->sock;
    ragq_http_paced_t *p;

    if (req->origin != NULL) {
        ragq_h1_pace_start(req); /* http1.c's connection */
        return;
    }
    /* req->sock, not CURLINFO_ACTIVESOCKET: curl 7.88 answers that only
     * once the transfer is done; the socket callback names the fd. */
    if (fd == CURL_SOCKET_BAD || (size_t) fd >= http->nwant) {
        return; /* stays watched: every byte still arrives */
    }
    if ((p = ragq_http_paced_find(http, fd)) == NULL) {
        if (http->npaced == http->paced_cap) {
            size_t             cap = http->paced_cap ? http->paced_cap * 2 : 16;
            ragq_http_paced_t *np = realloc(http->paced, cap * sizeof(*np));
            curl_socket_t     *ns;

            if (np == NULL) {
                return;
            }
            http->paced = np;
            ns = realloc(http->scratch, cap * sizeof(*ns));
            if (ns == NULL) {
                return;
            }
            http->scratch = ns;
            http->paced_cap = cap;
        }
        p = &http->paced[http->npaced++];
        p->fd = fd;
        p->refs = 0;
        http->pslot[fd] = (uint32_t) http->npaced;
        ragq_http_watch(http, fd);
    }
    p->refs++;
    req->paced = fd;
    if (!ragq_timer_active(&http->tick)) {
        ragq_timer_start(http->loop, &http->tick, pace_delay(http));
    }
}

/* The transfer ended (done, cancelled, failed): watch as curl asked. */
void
ragq_http_pace_stop(ragq_http_req_t *req)
{
    ragq_http_paced_t *p;

    if (req->paced == CURL_SOCKET_BAD) {
        return;
    }
    p = ragq_http_paced_find(req->http, req->paced);
    req->paced = CURL_SOCKET_BAD;
    if (p != NULL && --p->refs == 0) {
        paced_remove(req->http, p);
    }
}

void
ragq_http_set_pace(ragq_http_t *http, long ms)
{
    if (ms > 0) {
        http->pace_ms = (uint64_t) ms;
    }
}
