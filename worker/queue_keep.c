/*
 * queue_keep.c: holding on to what the worker runs, and letting go of what
 * dead workers left (queue_int.h).  The keep-alive (keepalive.lua) resets
 * the idle time of the stream entries of the jobs held, but only of those
 * the worker still holds by their claim's fencing token, and stops the
 * others; the consumer sweep (consumers.lua) removes from the group the
 * consumers of workers gone for long, which nobody else would.
 */

#include "queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The jobs of one keep-alive call, by serial, in q->jobs order. */
typedef struct {
    size_t   n;
    uint64_t serial[];
} keepalive_batch_t;

/* States in which a job holds its entry and its token is known. */
static int
holds_entry(const ragq_job_t *j)
{
    return j->state == JOB_RUNNING || j->state == JOB_WRITING ||
           j->state == JOB_WAITING || j->state == JOB_PARKED;
}

/*
 * Matches the answers to the jobs still here.  q->jobs is in decreasing
 * serial order (new jobs go first) and so is the batch, so one walk of
 * both does it; jobs that left meanwhile are skipped.
 */
static void
keepalive_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t      *q = owner;
    keepalive_batch_t *b = priv;
    ragq_job_t        *j, *next;
    size_t             i;

    if (ragq_scripts_missing(&q->scripts, reply)) {
        free(b);
        ragq_queue_keepalive(q);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != b->n) {
        if (reply != NULL) {
            ragq_log(RAGQ_LOG_WARN, "keep-alive: %s",
                     reply->type == REDIS_REPLY_ERROR ? reply->str
                                                      : "unexpected reply");
        }
        free(b);
        return;
    }
    j = q->jobs;
    for (i = 0; i < b->n && j; i++) {
        while (j && j->serial > b->serial[i]) {
            j = j->next;
        }
        if (j == NULL || j->serial != b->serial[i]) {
            continue;
        }
        next = j->next;
        if (reply->element[i]->type == REDIS_REPLY_INTEGER &&
            reply->element[i]->integer != 1) {
            ragq_queue_job_lost(q, j, (int) reply->element[i]->integer);
        }
        j = next;
    }
    free(b);
}

/*
 * One keepalive.lua call for every job that holds its entry:
 * KEYS = jobs stream + the job hashes, ARGV = group, consumer, entries,
 * tokens (the tokens written into one buffer).
 */
void
ragq_queue_keepalive(ragq_queue_t *q)
{
    keepalive_batch_t *b = NULL;
    const char       **argv = NULL;
    char              *tokens = NULL, nkeys[24];
    size_t             n = 0, i;
    ragq_job_t        *j;
    int                argc;

    if (!ragq_vconn_ready(q->cmd)) {
        return;
    }
    for (j = q->jobs; j; j = j->next) {
        n += holds_entry(j);
    }
    if (n == 0) {
        return;
    }
    b = malloc(sizeof(*b) + n * sizeof(b->serial[0]));
    argv = malloc((3 * n + 6) * sizeof(*argv));
    tokens = malloc(n * 24);
    if (b == NULL || argv == NULL || tokens == NULL) {
        goto done;
    }
    b->n = n;
    snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_KEEPALIVE, argv);
    argv[2] = nkeys;
    argv[3] = q->k_jobs;
    argv[4 + n] = q->k_group;
    argv[5 + n] = q->consumer;
    for (i = 0, j = q->jobs; j; j = j->next) {
        if (!holds_entry(j)) {
            continue;
        }
        snprintf(tokens + i * 24, 24, "%ld", j->attempts);
        argv[4 + i] = j->key;
        argv[6 + n + i] = j->entry;
        argv[6 + 2 * n + i] = tokens + i * 24;
        b->serial[i++] = j->serial;
    }
    argc = (int) (6 + 3 * n);
    if (ragq_queue_send(q, keepalive_reply, b, argc, argv, NULL) == 0) {
        b = NULL; /* the reply frees it */
    }

done:
    free(b);
    free(argv);
    free(tokens);
}

/*
 * A consumer is forgotten when it has no pending entry and has not read or
 * claimed anything for ten times RAGQ_RECLAIM_AFTER: a live worker reads
 * every few seconds (XREADGROUP BLOCK 5000) or holds entries.
 */
static long
consumers_idle_ms(const ragq_queue_t *q)
{
    return q->cfg->reclaim_after_ms * 10;
}

uint64_t
ragq_queue_consumers_period(const ragq_queue_t *q)
{
    return (uint64_t) consumers_idle_ms(q) / 2;
}

static void
consumers_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    size_t        i;

    (void) priv;
    if (ragq_scripts_missing(&q->scripts, reply)) {
        return; /* the next sweep */
    }
    if (reply == NULL) {
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ragq_log(RAGQ_LOG_WARN, "removing idle consumers: %s", reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        return;
    }
    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->str) {
            ragq_log(RAGQ_LOG_INFO,
                     "removed consumer %s from group %s: no pending entry, "
                     "idle for more than %ld ms",
                     reply->element[i]->str, q->k_group, consumers_idle_ms(q));
        }
    }
}

void
ragq_queue_forget_consumers(ragq_queue_t *q)
{
    char        idle[32];
    const char *argv[7];

    if (!q->group_ready || !ragq_vconn_ready(q->cmd)) {
        return;
    }
    snprintf(idle, sizeof(idle), "%ld", consumers_idle_ms(q));
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_CONSUMERS, argv);
    argv[2] = "1";
    argv[3] = q->k_jobs;
    argv[4] = q->k_group;
    argv[5] = q->consumer;
    argv[6] = idle;
    ragq_queue_send(q, consumers_reply, NULL, 7, argv, NULL);
}
