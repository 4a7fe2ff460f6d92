/*
 * queue.c: the queue of queue.h: its two connections (valkey_conn.h), how
 * stream entries come to this worker (XREADGROUP on the claim connection,
 * XAUTOCLAIM of entries idle for RAGQ_RECLAIM_AFTER, the XPENDING probe that
 * wakes a read holding every free slot), the keep-alive of entries held,
 * the consumer group, the job slots, start-up and the graceful stop.  What
 * happens to one job once its entry is ours is queue_job.c.
 */

#include "queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAGQ_XREAD_BLOCK_MS 5000

static void claim_more(ragq_queue_t *q);
static void reclaim_now(ragq_queue_t *q);
static void create_group(ragq_queue_t *q);

/* Sends on the command connection; -1 when it is down. */
int
ragq_queue_send(ragq_queue_t *q, ragq_vconn_reply_cb cb, void *priv, int argc,
                const char **argv, const size_t *lens)
{
    return ragq_vconn_send(q->cmd, cb, priv, argc, argv, lens);
}

/* ---- slots ------------------------------------------------------------ */

static unsigned
free_slots(const ragq_queue_t *q)
{
    unsigned used = q->njobs + q->reserved_read + q->reserved_reclaim;

    return used >= q->cfg->concurrency ? 0 : q->cfg->concurrency - used;
}

/* Called after a job leaves: claim more, or finish a graceful stop. */
void
ragq_queue_slot_freed(ragq_queue_t *q)
{
    claim_more(q);
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
        ragq_log(RAGQ_LOG_WARN, "XREADGROUP: %s", reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            /* The server lost the group (restart without persistence). */
            q->group_ready = 0;
            create_group(q);
        }
        claim_more(q);
        return;
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
                ragq_queue_take_entry(q, s->element[1]->element[j], 0);
            }
        }
    }
    claim_more(q);
}

static void
claim_more(ragq_queue_t *q)
{
    unsigned    n;
    char        count[16], block[16];
    const char *argv[11];

    if (q->stopping || !q->group_ready || q->reading ||
        !ragq_vconn_ready(q->blk) || !ragq_vconn_ready(q->cmd)) {
        return;
    }
    if (q->reclaim_due && !q->reclaiming) {
        q->reclaim_due = 0;
        reclaim_now(q);
    }
    n = free_slots(q);
    if (n == 0) {
        return;
    }
    snprintf(count, sizeof(count), "%u", n);
    snprintf(block, sizeof(block), "%d", RAGQ_XREAD_BLOCK_MS);
    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = q->k_group;
    argv[3] = q->consumer;
    argv[4] = "COUNT";
    argv[5] = count;
    argv[6] = "BLOCK";
    argv[7] = block;
    argv[8] = "STREAMS";
    argv[9] = q->k_jobs;
    argv[10] = ">";
    if (ragq_vconn_send(q->blk, xread_reply, NULL, 11, argv, NULL) == 0) {
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
        ragq_log(RAGQ_LOG_WARN, "XAUTOCLAIM: %s", reply->str);
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
    claim_more(q);
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
     * free slot: wake it, and claim_more() reclaims before reading again.
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


static void
reclaim(void *data)
{
    ragq_queue_t *q = data;
    char          idle[32];
    const char   *argv[9];

    if (q->stopping) {
        return;
    }
    ragq_timer_start(q->loop, &q->reclaim_timer, reclaim_period(q));
    if (!q->group_ready || q->reclaiming || !ragq_vconn_ready(q->cmd)) {
        return;
    }
    if (free_slots(q) > 0) {
        reclaim_now(q);
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

static void
reclaim_now(ragq_queue_t *q)
{
    char        idle[32], count[16];
    unsigned    n;
    const char *argv[9];

    if (q->stopping || !q->group_ready || q->reclaiming ||
        !ragq_vconn_ready(q->cmd)) {
        return;
    }
    n = free_slots(q);
    if (n == 0) {
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

/*
 * Resets the idle time of every entry we hold, so RAGQ_RECLAIM_AFTER
 * measures a silent worker, not a long generation.
 */
static void
keepalive(void *data)
{
    ragq_queue_t *q = data;
    const char  **argv;
    ragq_job_t   *j;
    int           argc = 0;
    long          period = q->cfg->reclaim_after_ms / 3;

    ragq_timer_start(q->loop, &q->keepalive_timer,
                     (uint64_t) (period < 50 ? 50 : period));
    if (q->njobs == 0 || !ragq_vconn_ready(q->cmd)) {
        return;
    }
    argv = malloc((q->njobs + 7) * sizeof(*argv));
    if (argv == NULL) {
        return;
    }
    argv[argc++] = "XCLAIM";
    argv[argc++] = q->k_jobs;
    argv[argc++] = q->k_group;
    argv[argc++] = q->consumer;
    argv[argc++] = "0";
    for (j = q->jobs; j; j = j->next) {
        if (j->state != JOB_RELEASING) {
            argv[argc++] = j->entry;
        }
    }
    argv[argc++] = "JUSTID";
    if (argc > 6) {
        ragq_queue_send(q, NULL, NULL, argc, argv, NULL);
    }
    free(argv);
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
    if (reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        ragq_log(RAGQ_LOG_ERROR, "XGROUP CREATE %s %s: %s", q->k_jobs,
                 q->k_group, reply->str);
        return;
    }
    q->group_ready = 1;
    if (!q->started) {
        q->started = 1;
        ragq_timer_stop(q->loop, &q->startup_timer);
        ragq_log(RAGQ_LOG_INFO,
                 "ready: consumer %s, stream %s, group %s, concurrency %u, "
                 "embedder %s, store %s, answerer %s",
                 q->consumer, q->k_jobs, q->k_group, q->cfg->concurrency,
                 q->cfg->embedder, q->cfg->store, q->cfg->answerer);
        ragq_timer_start(q->loop, &q->keepalive_timer, 0);
    }
    if (!q->stopping) {
        ragq_timer_start(q->loop, &q->reclaim_timer, 0);
    }
    claim_more(q);
}

static void
create_group(ragq_queue_t *q)
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

/* ---- connections ------------------------------------------------------ */

/* Anything in flight on vc is gone: its reservations with it. */
static void
on_vconn_lost(ragq_vconn_t *vc, const char *why, void *owner)
{
    ragq_queue_t *q = owner;

    if (q->started) {
        ragq_log(RAGQ_LOG_WARN, "valkey (%s connection): %s; reconnecting",
                 ragq_vconn_name(vc), why);
    } else {
        ragq_log(RAGQ_LOG_DEBUG, "valkey (%s connection): %s",
                 ragq_vconn_name(vc), why);
    }
    if (vc == q->blk) {
        q->reading = 0;
        q->reserved_read = 0;
    } else {
        q->reclaiming = 0;
        q->reserved_reclaim = 0;
        q->group_creating = 0;
        q->probing = 0;
        ragq_scripts_forget(&q->scripts);
    }
}

/*
 * After every (re)connect: the claim connection reads again; the command
 * connection loads the scripts, makes sure of the group and writes the
 * results kept while Valkey was away.
 */
static void
on_vconn_ready(ragq_vconn_t *vc, void *owner)
{
    ragq_queue_t *q = owner;

    if (q->started) {
        ragq_log(RAGQ_LOG_INFO, "valkey (%s connection): connected",
                 ragq_vconn_name(vc));
    }
    if (vc == q->blk) {
        claim_more(q);
        return;
    }
    ragq_scripts_load(&q->scripts);
    create_group(q);
    ragq_queue_write_parked(q);
}

static const ragq_vconn_hooks_t vconn_hooks = {on_vconn_ready, on_vconn_lost};

/* ---- start and stop --------------------------------------------------- */

static void
startup_timeout(void *data)
{
    ragq_queue_t *q = data;
    char          where[300];

    ragq_valkey_addr_where(q->addr, where, sizeof(where));
    ragq_log(RAGQ_LOG_ERROR,
             "Valkey at %s (RAGQ_VALKEY_URL) is unreachable: %s (gave up "
             "after %ld ms)",
             where,
             ragq_vconn_last_error(q->cmd)[0] ? ragq_vconn_last_error(q->cmd)
                                              : "no answer",
             q->cfg->connect_timeout_ms);
    q->exit_code = 1;
    ragq_loop_stop(q->loop);
}

static void
exit_now(void *data)
{
    ragq_queue_t *q = data;

    ragq_loop_stop(q->loop);
}

void
ragq_queue_check_drained(ragq_queue_t *q)
{
    ragq_job_t *j;

    if (!q->stopping || ragq_timer_active(&q->exit_timer)) {
        return;
    }
    for (j = q->jobs; j; j = j->next) {
        if (j->state != JOB_PARKED) {
            return;
        }
    }
    if (q->njobs == 0 && ragq_vconn_pending(q->cmd) > 0) {
        return; /* final writes and acks still on the wire */
    }
    if (q->njobs > 0) {
        return; /* parked results wait for Valkey until the grace ends */
    }
    ragq_log(RAGQ_LOG_INFO, "drained: no job in flight; exiting");
    ragq_timer_start(q->loop, &q->exit_timer, 0);
}

static void
grace_over(void *data)
{
    ragq_queue_t *q = data;
    ragq_job_t   *j;

    ragq_log(RAGQ_LOG_WARN,
             "shutdown grace (%ld ms) is over: %u job(s) left un-acknowledged "
             "for another worker to reclaim",
             q->cfg->shutdown_grace_ms, q->njobs);
    for (j = q->jobs; j; j = j->next) {
        ragq_job_abort(j);
    }
    ragq_loop_stop(q->loop);
}

void
ragq_queue_stop(ragq_queue_t *q)
{
    if (q->stopping) {
        ragq_log(RAGQ_LOG_WARN, "second signal: exiting now");
        grace_over(q);
        return;
    }
    q->stopping = 1;
    if (!q->started) {
        ragq_loop_stop(q->loop);
        return;
    }
    ragq_log(RAGQ_LOG_INFO,
             "stopping: no new claims, waiting up to %ld ms for %u job(s)",
             q->cfg->shutdown_grace_ms, q->njobs);
    ragq_timer_stop(q->loop, &q->reclaim_timer);
    /* Closing the blocked XREADGROUP stops claims at once. */
    ragq_vconn_close(q->blk);
    ragq_timer_start(q->loop, &q->grace_timer,
                     (uint64_t) q->cfg->shutdown_grace_ms);
    ragq_queue_check_drained(q);
}

static char *
key_of(const char *prefix, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(suffix) + 2;
    char  *k = malloc(n);

    if (k) {
        snprintf(k, n, "%s:%s", prefix, suffix);
    }
    return k;
}

ragq_queue_t *
ragq_queue_new(ragq_loop_t *loop, ragq_pipeline_t *pipeline,
               const ragq_config_t *cfg, const ragq_valkey_addr_t *addr)
{
    ragq_queue_t *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        return NULL;
    }
    q->loop = loop;
    q->pipeline = pipeline;
    q->cfg = cfg;
    q->addr = addr;
    if (cfg->consumer && cfg->consumer[0]) {
        snprintf(q->consumer, sizeof(q->consumer), "%s", cfg->consumer);
    } else {
        char host[200];

        if (gethostname(host, sizeof(host)) != 0) {
            snprintf(host, sizeof(host), "worker");
        }
        host[sizeof(host) - 1] = '\0';
        snprintf(q->consumer, sizeof(q->consumer), "%s-%d", host,
                 (int) getpid());
    }
    q->k_jobs = key_of(cfg->prefix, "jobs");
    q->k_group = key_of(cfg->prefix, "workers");
    q->k_events = key_of(cfg->prefix, "events");
    q->k_dead = key_of(cfg->prefix, "dead");
    q->k_job_prefix = key_of(cfg->prefix, "job:");
    q->cmd = ragq_vconn_new(loop, addr, "command", cfg->connect_timeout_ms, 0,
                            &vconn_hooks, q);
    q->blk = ragq_vconn_new(loop, addr, "claim", cfg->connect_timeout_ms,
                            RAGQ_VCONN_CLIENT_ID, &vconn_hooks, q);
    if (!q->k_jobs || !q->k_group || !q->k_events || !q->k_dead ||
        !q->k_job_prefix || !q->cmd || !q->blk) {
        ragq_queue_free(q);
        return NULL;
    }
    ragq_scripts_init(&q->scripts, q->cmd);
    snprintf(q->reclaim_cursor, sizeof(q->reclaim_cursor), "0-0");
    ragq_timer_init(&q->startup_timer, startup_timeout, q);
    ragq_timer_init(&q->keepalive_timer, keepalive, q);
    ragq_timer_init(&q->reclaim_timer, reclaim, q);
    ragq_timer_init(&q->grace_timer, grace_over, q);
    ragq_timer_init(&q->exit_timer, exit_now, q);
    return q;
}

void
ragq_queue_start(ragq_queue_t *q)
{
    /* A little past the connect timeout, so one full try always fits. */
    ragq_timer_start(q->loop, &q->startup_timer,
                     (uint64_t) q->cfg->connect_timeout_ms + 100);
    ragq_vconn_connect(q->cmd);
    ragq_vconn_connect(q->blk);
}

int
ragq_queue_exit_code(const ragq_queue_t *q)
{
    return q->exit_code;
}

void
ragq_queue_free(ragq_queue_t *q)
{
    if (q == NULL) {
        return;
    }
    /* Pending callbacks run with NULL while the jobs are still listed. */
    if (q->cmd) {
        ragq_vconn_close(q->cmd);
    }
    if (q->blk) {
        ragq_vconn_close(q->blk);
    }
    ragq_queue_jobs_free(q);
    if (q->loop) {
        ragq_timer_stop(q->loop, &q->startup_timer);
        ragq_timer_stop(q->loop, &q->keepalive_timer);
        ragq_timer_stop(q->loop, &q->reclaim_timer);
        ragq_timer_stop(q->loop, &q->grace_timer);
        ragq_timer_stop(q->loop, &q->exit_timer);
    }
    ragq_vconn_free(q->cmd);
    ragq_vconn_free(q->blk);
    free(q->k_jobs);
    free(q->k_group);
    free(q->k_events);
    free(q->k_dead);
    free(q->k_job_prefix);
    free(q);
}

ragq_vconn_t *
ragq_queue_conn(ragq_queue_t *q)
{
    return q->cmd;
}

const char *
ragq_queue_consumer(const ragq_queue_t *q)
{
    return q->consumer;
}

unsigned
ragq_queue_held(const ragq_queue_t *q)
{
    return q->njobs;
}
