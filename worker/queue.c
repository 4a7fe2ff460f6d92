/*
 * queue.c: the queue of queue.h: its claim and command connections
 * (valkey_conn.h; the third, subscribed to P:cancel, is queue_cancel.c's),
 * the timers of the keep-alive of entries held and of the sweep of dead
 * consumers (queue_keep.c), start-up and the graceful stop, and what
 * persistent Valkey errors do to all of that (never spin: see "faults").
 * How stream entries come to this worker (slots, XREADGROUP, XAUTOCLAIM,
 * the consumer group) is queue_claim.c; what happens to one job once its
 * entry is ours is queue_job.c.
 */

#include "queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAGQ_FAULT_MIN_MS   250
#define RAGQ_DRAIN_CHECK_MS 10 /* stopping: how soon to look again */
#define RAGQ_FAULT_MAX_MS   5000

/* ---- faults ------------------------------------------------------------ */

/*
 * A command's error that retrying at once would only repeat: logged once
 * per change of text, and the path it belongs to (claims or reclaims)
 * waits a backoff delay before each next try, until a good reply to the
 * same command clears it.  Errors handled elsewhere are not faults:
 * BUSYGROUP (the group exists), NOSCRIPT (scripts.c reloads), and the
 * role errors (READONLY...) on which valkey_conn.c drops the connection.
 */
static unsigned
fault_gates(const char *cmd)
{
    if (strcmp(cmd, "XREADGROUP") == 0 || strcmp(cmd, "EVALSHA") == 0 ||
        strcmp(cmd, "EVAL") == 0) {
        return GATE_CLAIM;
    }
    if (strcmp(cmd, "XAUTOCLAIM") == 0 || strcmp(cmd, "XPENDING") == 0) {
        return GATE_RECLAIM;
    }
    return 0;
}

static void
fault_regate(ragq_queue_t *q)
{
    unsigned i;

    q->gated = 0;
    for (i = 0; i < q->nfaults; i++) {
        q->gated |= q->faults[i].gates;
    }
    ragq_vconn_watch_ok(q->cmd, q->nfaults > 0);
    ragq_vconn_watch_ok(q->blk, q->nfaults > 0);
}

static void
on_vconn_error(ragq_vconn_t *vc, const char *cmd, const redisReply *reply,
               void *owner)
{
    ragq_queue_t *q = owner;
    unsigned      i;
    const char   *e = reply->str;

    if (ragq_scripts_noscript(reply)) {
        if (vc == q->cmd) {
            ragq_scripts_flushed(&q->scripts); /* the appends have no reply */
        }
        return;
    }
    if (strncmp(e, "BUSYGROUP", 9) == 0 || strncmp(e, "READONLY", 8) == 0 ||
        strncmp(e, "MASTERDOWN", 10) == 0 || strncmp(e, "UNBLOCKED", 9) == 0) {
        return;
    }
    /* The heartbeat's: it warns once and takes this host's clock instead;
     * nothing here waits on it, so it must not hold a fault's place. */
    if (strcmp(cmd, "TIME") == 0) {
        return;
    }
    for (i = 0; i < q->nfaults && strcmp(q->faults[i].cmd, cmd) != 0; i++) {
    }
    if (i == q->nfaults) {
        if (q->nfaults == sizeof(q->faults) / sizeof(q->faults[0])) {
            i = q->nfaults - 1; /* full: the last one is replaced */
        } else {
            q->nfaults++;
        }
        snprintf(q->faults[i].cmd, sizeof(q->faults[i].cmd), "%s", cmd);
        q->faults[i].text[0] = '\0';
        q->faults[i].count = 0;
        q->faults[i].since = ragq_now_ms();
        q->faults[i].gates = fault_gates(cmd);
        fault_regate(q);
    }
    q->faults[i].count++;
    if (strncmp(q->faults[i].text, e, sizeof(q->faults[i].text) - 1) != 0) {
        snprintf(q->faults[i].text, sizeof(q->faults[i].text), "%s", e);
        ragq_log(RAGQ_LOG_WARN, "valkey: %s: %s%s", cmd, e,
                 q->faults[i].gates & GATE_CLAIM
                     ? "; claims back off (up to 5 s) until it works; "
                       "logged again only if it changes"
                 : q->faults[i].gates & GATE_RECLAIM
                     ? "; reclaims back off (up to 5 s) until it works; "
                       "logged again only if it changes"
                     : "; logged again only if it changes");
    }
}

/*
 * A good reply clears the command's fault, and the faults of the other
 * commands of its path: the path works.  A command of a path is not always
 * sent again by itself (XPENDING only while a read blocks), and a fault
 * kept after its cause has passed would close the path for good.
 */
static void
on_vconn_ok(ragq_vconn_t *vc, const char *cmd, void *owner)
{
    ragq_queue_t *q = owner;
    unsigned      i = 0, gates = fault_gates(cmd), cleared = 0;

    (void) vc;
    while (i < q->nfaults) {
        ragq_fault_t *f = &q->faults[i];

        if (strcmp(f->cmd, cmd) != 0 && (gates == 0 || f->gates != gates)) {
            i++;
            continue;
        }
        if (strcmp(f->cmd, cmd) == 0) {
            ragq_log(RAGQ_LOG_INFO,
                     "valkey: %s works again (%u error(s) in %.1f s; the "
                     "last: %s)",
                     cmd, f->count,
                     (double) (ragq_now_ms() - f->since) / 1000.0, f->text);
        } else {
            ragq_log(RAGQ_LOG_INFO,
                     "valkey: %s taken as working again: %s works (%u "
                     "error(s) in %.1f s; the last: %s)",
                     f->cmd, cmd, f->count,
                     (double) (ragq_now_ms() - f->since) / 1000.0, f->text);
        }
        *f = q->faults[--q->nfaults];
        cleared++;
    }
    if (cleared == 0) {
        return;
    }
    fault_regate(q);
    if (q->gated == 0) {
        ragq_backoff_reset(&q->fault_backoff);
        ragq_timer_stop(q->loop, &q->pass_timer);
        ragq_timer_start(q->loop, &q->reclaim_timer, 0);
        ragq_queue_claim_more(q);
    }
}

/*
 * 1 when the path of gate may send now: not faulted, or this is the pass
 * the backoff timer allows.  Else arms that timer and returns 0.
 */
int
ragq_queue_gate_open(ragq_queue_t *q, unsigned gate)
{
    if (!(q->gated & gate) || (q->passing & gate)) {
        return 1;
    }
    if (!ragq_timer_active(&q->pass_timer)) {
        ragq_timer_start(q->loop, &q->pass_timer,
                         ragq_backoff_next(&q->fault_backoff));
    }
    return 0;
}

/*
 * The claims first: a reclaim takes every free slot for its XAUTOCLAIM,
 * and would leave the claims none in their pass (a gated read asks for
 * one entry).  The reclaims' pass is the reclaim timer's round: XAUTOCLAIM
 * when a slot is free, else the XPENDING probe, so that a blocked read,
 * which holds every free slot, does not keep their fault from clearing.
 */
static void
fault_pass(void *data)
{
    ragq_queue_t *q = data;

    q->passing = GATE_CLAIM | GATE_RECLAIM;
    ragq_queue_claim_more(q);
    if (q->gated & GATE_RECLAIM) {
        ragq_queue_reclaim(q);
    }
    q->passing = 0;
}

/* Sends on the command connection; -1 when it is down. */
int
ragq_queue_send(ragq_queue_t *q, ragq_vconn_reply_cb cb, void *priv, int argc,
                const char **argv, const size_t *lens)
{
    return ragq_vconn_send(q->cmd, cb, priv, argc, argv, lens);
}

/*
 * Resets the idle time of every entry we hold, so RAGQ_RECLAIM_AFTER
 * measures a silent worker, not a long generation; stops the jobs another
 * worker has taken over since (queue_keep.c).
 */
static void
keepalive(void *data)
{
    ragq_queue_t *q = data;
    long          period = q->cfg->reclaim_after_ms / 3;

    ragq_timer_start(q->loop, &q->keepalive_timer,
                     (uint64_t) (period < 50 ? 50 : period));
    ragq_queue_keepalive(q);
}

/* The consumers of workers long gone leave the group (queue_keep.c). */
static void
forget_consumers(void *data)
{
    ragq_queue_t *q = data;

    ragq_timer_start(q->loop, &q->consumers_timer,
                     ragq_queue_consumers_period(q));
    ragq_queue_forget_consumers(q);
}

/* ---- connections ------------------------------------------------------ */

/*
 * Anything in flight on vc is gone: its reservations with it.  Logged once
 * per kind of loss for both connections (the reconnect backoff tries again
 * and again, and both connections meet the same fault), at debug level
 * otherwise.
 */
static void
on_vconn_lost(ragq_vconn_t *vc, const char *why, void *owner)
{
    ragq_queue_t *q = owner;
    int           kind = ragq_vconn_loss(vc);

    if (q->started) {
        q->lost_since[vc == q->blk] = 1;
    }
    if (q->started && kind != q->lost_kind) {
        ragq_log(RAGQ_LOG_WARN, "valkey (%s connection): %s; reconnecting",
                 ragq_vconn_name(vc), why);
        if (!q->stopping) {
            ragq_sdnotify(q->notify, NULL,
                          "Valkey lost (%s connection): %s; reconnecting",
                          ragq_vconn_name(vc), why);
        }
        q->lost_kind = kind;
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
        q->reserved_adopt = 0;
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

    if (q->lost_since[vc == q->blk]) {
        ragq_log(RAGQ_LOG_INFO, "valkey (%s connection): connected to %s",
                 ragq_vconn_name(vc), ragq_vconn_peer(vc));
        q->lost_since[vc == q->blk] = 0;
    }
    if (ragq_vconn_ready(q->cmd) && ragq_vconn_ready(q->blk)) {
        if (q->lost_kind != -1 && !q->stopping) {
            ragq_sdnotify(q->notify, NULL, "claiming jobs from %s", q->k_jobs);
        }
        q->lost_kind = -1; /* the next loss is news again */
    }
    if (vc == q->blk) {
        ragq_queue_claim_more(q);
        return;
    }
    ragq_scripts_load(&q->scripts);
    ragq_queue_create_group(q);
    ragq_queue_write_parked(q);
    ragq_queue_adopt_orphans(q);
}

static const ragq_vconn_hooks_t vconn_hooks = {
    on_vconn_ready, on_vconn_lost, on_vconn_error, on_vconn_ok, NULL};

/* ---- start and stop --------------------------------------------------- */

/* A little past the connect timeout, so one full try always fits; with
 * Sentinel, one per sentinel and one to the primary. */
static uint64_t
startup_limit(const ragq_queue_t *q)
{
    long n = q->addr->transport == RAGQ_VALKEY_SENTINEL
                 ? q->addr->nsentinels + 1
                 : 1;

    return (uint64_t) (q->cfg->connect_timeout_ms * n + 100);
}

static void
startup_timeout(void *data)
{
    ragq_queue_t *q = data;
    char          where[300];

    ragq_valkey_addr_where(q->addr, where, sizeof(where));
    if (ragq_vconn_ready(q->cmd) && ragq_vconn_ready(q->blk) &&
        q->nfaults > 0) {
        ragq_log(RAGQ_LOG_ERROR,
                 "Valkey at %s (RAGQ_VALKEY_URL) refuses the worker's "
                 "commands: %s: %s (gave up after %ld ms)",
                 where, q->faults[0].cmd, q->faults[0].text,
                 (long) startup_limit(q));
    } else {
        const ragq_vconn_t *down = ragq_vconn_ready(q->cmd) ? q->blk : q->cmd;

        ragq_log(RAGQ_LOG_ERROR,
                 "Valkey at %s (RAGQ_VALKEY_URL) is unreachable: %s (gave up "
                 "after %ld ms)",
                 where,
                 ragq_vconn_last_error(down)[0] ? ragq_vconn_last_error(down)
                                                : "no answer",
                 (long) startup_limit(q));
    }
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
        /* Final writes, acks, a heartbeat still on the wire: look again
         * soon, since their replies may go to others (heartbeat.c) and
         * nothing would call here when they come. */
        ragq_timer_start(q->loop, &q->drain_timer, RAGQ_DRAIN_CHECK_MS);
        return;
    }
    if (ragq_callbacks_pending(q->callbacks) > 0) {
        return; /* callbacks of ended jobs, until the grace ends */
    }
    if (q->njobs > 0) {
        return; /* parked results wait for Valkey until the grace ends */
    }
    ragq_log(RAGQ_LOG_INFO, "drained: no job in flight; exiting");
    ragq_timer_start(q->loop, &q->exit_timer, 0);
}

static void
drain_check(void *data)
{
    ragq_queue_check_drained(data);
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
        ragq_sdnotify(q->notify, "STOPPING=1", "stopping (never ready)");
        ragq_loop_stop(q->loop);
        return;
    }
    ragq_log(RAGQ_LOG_INFO,
             "stopping: no new claims, waiting up to %ld ms for %u job(s)",
             q->cfg->shutdown_grace_ms, q->njobs);
    ragq_sdnotify(q->notify, "STOPPING=1",
                  "stopping: waiting up to %ld ms for %u job(s)",
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
               const ragq_config_t *cfg, ragq_vnet_t *net)
{
    ragq_queue_t *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        return NULL;
    }
    q->loop = loop;
    q->pipeline = pipeline;
    q->cfg = cfg;
    q->net = net;
    q->lost_kind = -1;
    q->addr = net->addr;
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
    q->cmd = ragq_vconn_new(net, "command", 0, &vconn_hooks, q);
    q->blk =
        ragq_vconn_new(net, "claim", RAGQ_VCONN_CLIENT_ID, &vconn_hooks, q);
    if (q->k_job_prefix) {
        q->callbacks = ragq_callbacks_new(loop, q, cfg, q->k_job_prefix);
    }
    if (!q->k_jobs || !q->k_group || !q->k_events || !q->k_dead ||
        !q->k_job_prefix || !q->cmd || !q->blk || !q->callbacks) {
        ragq_queue_free(q);
        return NULL;
    }
    /* XREADGROUP BLOCK holds its reply back that long on purpose. */
    ragq_vconn_set_extra_timeout(q->blk, RAGQ_XREAD_BLOCK_MS);
    if (ragq_queue_cancel_init(q) != 0) {
        ragq_queue_free(q);
        return NULL;
    }
    ragq_scripts_init(&q->scripts, q->cmd);
    ragq_backoff_init(&q->fault_backoff, RAGQ_FAULT_MIN_MS, RAGQ_FAULT_MAX_MS);
    ragq_timer_init(&q->pass_timer, fault_pass, q);
    snprintf(q->reclaim_cursor, sizeof(q->reclaim_cursor), "0-0");
    ragq_timer_init(&q->startup_timer, startup_timeout, q);
    ragq_timer_init(&q->keepalive_timer, keepalive, q);
    ragq_timer_init(&q->reclaim_timer, ragq_queue_reclaim, q);
    ragq_timer_init(&q->grace_timer, grace_over, q);
    ragq_timer_init(&q->exit_timer, exit_now, q);
    ragq_timer_init(&q->drain_timer, drain_check, q);
    ragq_timer_init(&q->consumers_timer, forget_consumers, q);
    ragq_timer_init(&q->out_timer, ragq_queue_out_due, q);
    return q;
}

void
ragq_queue_start(ragq_queue_t *q)
{
    ragq_timer_start(q->loop, &q->startup_timer, startup_limit(q));
    ragq_vconn_connect(q->cmd);
    ragq_vconn_connect(q->blk);
    ragq_vconn_connect(q->sub);
}

void
ragq_queue_set_notify(ragq_queue_t *q, ragq_sdnotify_t *sd)
{
    q->notify = sd;
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
    if (q->sub) {
        ragq_vconn_close(q->sub);
    }
    ragq_queue_jobs_free(q);
    ragq_queue_orphans_free(q);
    /* after the connections: their pending replies came back NULL */
    ragq_callbacks_free(q->callbacks);
    if (q->loop) {
        ragq_timer_stop(q->loop, &q->startup_timer);
        ragq_timer_stop(q->loop, &q->keepalive_timer);
        ragq_timer_stop(q->loop, &q->reclaim_timer);
        ragq_timer_stop(q->loop, &q->grace_timer);
        ragq_timer_stop(q->loop, &q->exit_timer);
        ragq_timer_stop(q->loop, &q->drain_timer);
        ragq_timer_stop(q->loop, &q->pass_timer);
        ragq_timer_stop(q->loop, &q->consumers_timer);
        ragq_timer_stop(q->loop, &q->out_timer);
    }
    ragq_vconn_free(q->cmd);
    ragq_vconn_free(q->blk);
    ragq_queue_cancel_free(q);
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

int
ragq_queue_ready(const ragq_queue_t *q)
{
    return q->started;
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
