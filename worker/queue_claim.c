/*
 * queue_claim.c: how stream entries come to this worker, for queue.c: the
 * job slots; XREADGROUP on the claim connection (blocking, for as many
 * entries as there are free slots); the entries read while the command
 * connection was down (kept, then XCLAIMed back); XAUTOCLAIM of entries
 * idle for RAGQ_RECLAIM_AFTER, and the XPENDING probe that wakes a read
 * holding every free slot; the consumer group's creation.  Each path stays
 * shut while a persistent error lasts on it (ragq_queue_gate_open(),
 * queue.c "faults").
 */

#include "queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- slots ------------------------------------------------------------ */

static unsigned
free_slots(const ragq_queue_t *q)
{
    unsigned used = q->njobs + q->reserved_read + q->reserved_reclaim +
                    q->norphans + q->reserved_adopt;

    return used >= q->cfg->concurrency ? 0 : q->cfg->concurrency - used;
}

/* Called after a job leaves: claim more, or finish a graceful stop. */
void
ragq_queue_slot_freed(ragq_queue_t *q)
{
    ragq_queue_claim_more(q);
    ragq_queue_check_drained(q);
}

/* ---- claiming --------------------------------------------------------- */

static void
xread_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    redisReply   *streams;
    size_t        i, j;

    (void) priv;
    q->reading = 0;
    q->reserved_read = 0;
    if (reply == NULL) {
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Logged by on_vconn_error; claim_more waits for the backoff. */
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            /* The server lost the group (restart without persistence). */
            q->group_ready = 0;
            ragq_queue_create_group(q);
        }
        ragq_queue_claim_more(q);
        return;
    }
    if (!q->started) {
        q->started = 1;
        ragq_timer_stop(q->loop, &q->startup_timer);
        ragq_log(RAGQ_LOG_INFO,
                 "ready: consumer %s, stream %s, group %s, concurrency %u, "
                 "embedder %s, store %s, answerer %s",
                 q->consumer, q->k_jobs, q->k_group, q->cfg->concurrency,
                 q->cfg->embedder, q->cfg->store, q->cfg->answerer);
        ragq_sdnotify(q->notify, "READY=1", "claiming jobs from %s", q->k_jobs);
        ragq_timer_start(q->loop, &q->keepalive_timer, 0);
        ragq_timer_start(q->loop, &q->consumers_timer,
                         ragq_queue_consumers_period(q));
    }
    streams = reply;
    if (streams->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < streams->elements; i++) {
            redisReply *s = streams->element[i];

            if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
                s->element[1]->type != REDIS_REPLY_ARRAY) {
                continue;
            }
            for (j = 0; j < s->element[1]->elements; j++) {
                redisReply *e = s->element[1]->element[j];

                if (ragq_vconn_ready(q->cmd)) {
                    ragq_queue_take_entry(q, e, 0);
                } else {
                    ragq_queue_keep_orphan(q, e);
                }
            }
        }
    }
    ragq_queue_claim_more(q);
}

/*
 * Entries that came on the claim connection while the command connection
 * was down (reconnecting, a fail-over) cannot be claimed now; they are ours
 * in the group already, so instead of waiting RAGQ_RECLAIM_AFTER for
 * anyone to reclaim them, their ids are kept and XCLAIMed back (with their
 * fields) as soon as the command connection is ready again.
 */
void
ragq_queue_keep_orphan(ragq_queue_t *q, const redisReply *e)
{
    char **o;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
        e->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }
    o = realloc(q->orphans, (q->norphans + 1) * sizeof(*o));
    if (o == NULL) {
        return; /* reclaimed after RAGQ_RECLAIM_AFTER, as before */
    }
    q->orphans = o;
    if ((o[q->norphans] = strdup(e->element[0]->str)) != NULL) {
        q->norphans++;
    }
}

void
ragq_queue_orphans_free(ragq_queue_t *q)
{
    while (q->norphans > 0) {
        free(q->orphans[--q->norphans]);
    }
    free(q->orphans);
    q->orphans = NULL;
}

static void
adopt_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    size_t        i;

    (void) priv;
    q->reserved_adopt = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && !q->stopping) {
        for (i = 0; i < reply->elements; i++) {
            ragq_queue_take_entry(q, reply->element[i], 1);
        }
    }
    ragq_queue_claim_more(q);
    ragq_queue_check_drained(q);
}

void
ragq_queue_adopt_orphans(ragq_queue_t *q)
{
    const char **argv;
    unsigned     i, argc = 0;

    if (q->norphans == 0 || q->stopping) {
        return;
    }
    argv = malloc((q->norphans + 5) * sizeof(*argv));
    if (argv == NULL) {
        return;
    }
    argv[argc++] = "XCLAIM";
    argv[argc++] = q->k_jobs;
    argv[argc++] = q->k_group;
    argv[argc++] = q->consumer;
    argv[argc++] = "0";
    for (i = 0; i < q->norphans; i++) {
        argv[argc++] = q->orphans[i];
    }
    if (ragq_queue_send(q, adopt_reply, NULL, (int) argc, argv, NULL) == 0) {
        ragq_log(RAGQ_LOG_DEBUG,
                 "claiming back %u entry(ies) read while the "
                 "command connection was down",
                 q->norphans);
        q->reserved_adopt = q->norphans;
        ragq_queue_orphans_free(q);
    }
    free(argv);
}

void
ragq_queue_claim_more(ragq_queue_t *q)
{
    unsigned    n;
    char        count[16], block[16];
    const char *argv[11];

    int argc = 0;

    if (q->stopping || !q->group_ready || q->reading ||
        !ragq_vconn_ready(q->blk) || !ragq_vconn_ready(q->cmd)) {
        return;
    }
    if (q->reclaim_due && !q->reclaiming) {
        q->reclaim_due = 0;
        ragq_queue_reclaim_now(q);
    }
    n = free_slots(q);
    if (n == 0 || !ragq_queue_gate_open(q, GATE_CLAIM)) {
        return;
    }
    if (q->gated & GATE_CLAIM) {
        n = 1; /* a fault lasts: one entry at a time, to see if it is over */
    }
    snprintf(count, sizeof(count), "%u", n);
    snprintf(block, sizeof(block), "%d", RAGQ_XREAD_BLOCK_MS);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = q->k_group;
    argv[argc++] = q->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    if (q->started) {
        /* The first round does not block: "ready" says claiming works. */
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
    }
    argv[argc++] = "STREAMS";
    argv[argc++] = q->k_jobs;
    argv[argc++] = ">";
    if (ragq_vconn_send(q->blk, xread_reply, NULL, argc, argv, NULL) == 0) {
        q->reading = 1;
        q->reserved_read = n;
    }
}

static void
xautoclaim_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    size_t        i, got = 0;

    (void) priv;
    q->reclaiming = 0;
    q->reserved_reclaim = 0;
    if (reply == NULL) {
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Logged by on_vconn_error; reclaims wait for the backoff. */
        ragq_queue_check_drained(q);
        return;
    }
    /* Redis 6.2 answers [cursor, entries], 7.0+ adds [deleted ids]. */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_ARRAY) {
        snprintf(q->reclaim_cursor, sizeof(q->reclaim_cursor), "%s",
                 reply->element[0]->str);
        for (i = 0; i < reply->element[1]->elements; i++) {
            redisReply *e = reply->element[1]->element[i];

            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 2) {
                if (!q->stopping) {
                    ragq_log(RAGQ_LOG_INFO, "reclaimed stream entry %s",
                             e->element[0]->str);
                    ragq_queue_take_entry(q, e, 1);
                }
                got++;
            }
        }
    }
    if (got > 0 && strcmp(q->reclaim_cursor, "0-0") != 0 && !q->stopping) {
        ragq_timer_start(q->loop, &q->reclaim_timer, 0);
    }
    ragq_queue_claim_more(q);
    ragq_queue_check_drained(q);
}

static uint64_t
reclaim_period(const ragq_queue_t *q)
{
    long p = q->cfg->reclaim_after_ms / 4;

    return (uint64_t) (p < 100 ? 100 : p > 5000 ? 5000 : p);
}

static void
probe_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    char          id[32];
    const char   *argv[3];

    (void) priv;
    q->probing = 0;
    if (reply == NULL) {
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 ||
        q->stopping) {
        return;
    }
    /*
     * Something is ripe for reclaim but the blocked XREADGROUP holds every
     * free slot: wake it, and ragq_queue_claim_more() reclaims before reading
     * again.
     */
    q->reclaim_due = 1;
    if (q->reading && ragq_vconn_client_id(q->blk) > 0) {
        snprintf(id, sizeof(id), "%lld", ragq_vconn_client_id(q->blk));
        argv[0] = "CLIENT";
        argv[1] = "UNBLOCK";
        argv[2] = id;
        ragq_queue_send(q, NULL, NULL, 3, argv, NULL);
    }
}


void
ragq_queue_reclaim(void *data)
{
    ragq_queue_t *q = data;
    char          idle[32];
    const char   *argv[9];

    if (q->stopping) {
        return;
    }
    ragq_timer_start(q->loop, &q->reclaim_timer, reclaim_period(q));
    if (!q->group_ready || q->reclaiming || !ragq_vconn_ready(q->cmd) ||
        !ragq_queue_gate_open(q, GATE_RECLAIM)) {
        return;
    }
    if (free_slots(q) > 0) {
        ragq_queue_reclaim_now(q);
        return;
    }
    if (!q->reading || q->reserved_read == 0 || q->probing) {
        return; /* really full: nothing to take over now */
    }
    snprintf(idle, sizeof(idle), "%ld", q->cfg->reclaim_after_ms);
    argv[0] = "XPENDING";
    argv[1] = q->k_jobs;
    argv[2] = q->k_group;
    argv[3] = "IDLE";
    argv[4] = idle;
    argv[5] = "-";
    argv[6] = "+";
    argv[7] = "1";
    if (ragq_queue_send(q, probe_reply, NULL, 8, argv, NULL) == 0) {
        q->probing = 1;
    }
}

void
ragq_queue_reclaim_now(ragq_queue_t *q)
{
    char        idle[32], count[16];
    unsigned    n;
    const char *argv[9];

    if (q->stopping || !q->group_ready || q->reclaiming ||
        !ragq_vconn_ready(q->cmd)) {
        return;
    }
    n = free_slots(q);
    if (n == 0 || !ragq_queue_gate_open(q, GATE_RECLAIM)) {
        return;
    }
    snprintf(idle, sizeof(idle), "%ld", q->cfg->reclaim_after_ms);
    snprintf(count, sizeof(count), "%u", n);
    argv[0] = "XAUTOCLAIM";
    argv[1] = q->k_jobs;
    argv[2] = q->k_group;
    argv[3] = q->consumer;
    argv[4] = idle;
    argv[5] = q->reclaim_cursor;
    argv[6] = "COUNT";
    argv[7] = count;
    if (ragq_queue_send(q, xautoclaim_reply, NULL, 8, argv, NULL) == 0) {
        q->reclaiming = 1;
        q->reserved_reclaim = n;
    }
}

static void
group_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;

    (void) priv;
    q->group_creating = 0;
    if (reply == NULL) {
        return;
    }
    /*
     * Any other error (logged by on_vconn_error): go on as if the group
     * existed (an ACL may allow reading it but not creating it); a
     * NOGROUP answer to XREADGROUP comes back here after a backoff.
     */
    q->group_ready = 1;
    if (!q->stopping) {
        ragq_timer_start(q->loop, &q->reclaim_timer, 0);
    }
    ragq_queue_claim_more(q);
}

void
ragq_queue_create_group(ragq_queue_t *q)
{
    const char *argv[] = {"XGROUP",   "CREATE", q->k_jobs,
                          q->k_group, "0",      "MKSTREAM"};

    if (q->group_creating) {
        return;
    }
    if (ragq_queue_send(q, group_reply, NULL, 6, argv, NULL) == 0) {
        q->group_creating = 1;
    }
}
