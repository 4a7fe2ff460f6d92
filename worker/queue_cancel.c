/*
 * queue_cancel.c: how a worker learns that a job it holds was canceled
 * (POST /job-cancel, DEVELOPERS.md "Cancel") without polling: a third
 * Valkey connection, subscribed to P:cancel, whose messages are the ids of
 * jobs just written canceled.  A job this worker runs is aborted at once
 * (its upstream transfers removed, so their connections close) and its
 * entry acknowledged; a job whose claim is in flight is marked, and its
 * claim's reply ends it (queue_job.c).  The connection is a ragq_vconn_t
 * like the others (TLS, ACL, Sentinel, reconnection with backoff); while it
 * is down a cancel is still seen, later, by the keep-alive (keepalive.lua
 * answers "final" for a canceled job).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_int.h"

static void
subscribed(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;

    (void) priv;
    if (reply == NULL) {
        return; /* lost: subscribed again on the next ready */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOPERM (no +subscribe, or the channel): cancels wait for the
         * keep-alive; said once per connection */
        ragq_log(RAGQ_LOG_ERROR,
                 "valkey (cancel connection): SUBSCRIBE %s refused: %s; "
                 "cancels are seen by the keep-alive only",
                 q->k_cancel, reply->str);
        return;
    }
    ragq_log(RAGQ_LOG_DEBUG, "valkey (cancel connection): subscribed to %s",
             q->k_cancel);
}

static void
on_cancel_ready(ragq_vconn_t *vc, void *owner)
{
    ragq_queue_t *q = owner;
    const char   *argv[] = {"SUBSCRIBE", q->k_cancel};

    if (q->cancel_lost) {
        ragq_log(RAGQ_LOG_INFO, "valkey (cancel connection): connected to %s",
                 ragq_vconn_peer(vc));
        q->cancel_lost = 0;
    }
    ragq_vconn_send(vc, subscribed, NULL, 2, argv, NULL);
}

static void
on_cancel_lost(ragq_vconn_t *vc, const char *why, void *owner)
{
    ragq_queue_t *q = owner;

    /* once per outage; the connection retries with its own backoff */
    ragq_log(q->cancel_lost || !q->started ? RAGQ_LOG_DEBUG : RAGQ_LOG_WARN,
             "valkey (%s connection): %s; reconnecting", ragq_vconn_name(vc),
             why);
    q->cancel_lost = 1;
}

/* ["message", P:cancel, ID]: the jobs of that id this worker holds */
static void
on_cancel_message(ragq_vconn_t *vc, redisReply *r, void *owner)
{
    ragq_queue_t *q = owner;
    ragq_job_t   *j, *next;
    redisReply   *id;

    (void) vc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "message") != 0) {
        return; /* a subscription's own replies are answered in order */
    }
    id = r->element[2];
    if (id->type != REDIS_REPLY_STRING || id->len != 32) {
        return;
    }
    for (j = q->jobs; j; j = next) {
        next = j->next;
        if (memcmp(j->id, id->str, 32) == 0) {
            ragq_queue_job_cancel(q, j);
        }
    }
}

static const ragq_vconn_hooks_t cancel_hooks = {on_cancel_ready, on_cancel_lost,
                                                NULL, NULL, on_cancel_message};

int
ragq_queue_cancel_init(ragq_queue_t *q)
{
    size_t n = strlen(q->cfg->prefix) + sizeof(":cancel");

    q->k_cancel = malloc(n);
    if (q->k_cancel == NULL) {
        return -1;
    }
    snprintf(q->k_cancel, n, "%s:cancel", q->cfg->prefix);
    q->sub = ragq_vconn_new(q->net, "cancel", RAGQ_VCONN_SUBSCRIBER,
                            &cancel_hooks, q);
    return q->sub ? 0 : -1;
}

void
ragq_queue_cancel_free(ragq_queue_t *q)
{
    ragq_vconn_free(q->sub);
    q->sub = NULL;
    free(q->k_cancel);
    q->k_cancel = NULL;
}
