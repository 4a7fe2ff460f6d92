/*
 * queue_job.c: one job's trip through Valkey (queue_int.h): the claim
 * script when its stream entry arrives (an entry that carries the job, or
 * a "job ID" entry of before; the script writes the job hash of the first,
 * and settles entries that hold no job to run, and poison jobs), the pipeline
 * run, then the final script (or the release script when its attempt gave up on
 * transient errors), both fenced by the claim's token (attempts + consumer); a
 * result kept in memory while Valkey is down or refuses the write; a job
 * stopped when the keep-alive finds another claim holds it.
 */

#include "queue_int.h"
#include "jobid.h"
#include "joblog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A final write refused with an error Valkey does not recover from on its
 * own is tried this many times; OOM, BUSY, LOADING, READONLY... for as long
 * as the claim is ours (the keep-alive says when it is not).
 */
#define RAGQ_WRITE_TRIES   5
#define RAGQ_WRITE_BACKOFF 5000 /* ms, the longest wait between writes */

static void write_final(ragq_queue_t *q, ragq_job_t *job);

/* The arguments that are the same for every job, formatted once. */
static void
constant_args(ragq_queue_t *q)
{
    if (q->a_result_ttl[0] == '\0') {
        snprintf(q->a_max_attempts, sizeof(q->a_max_attempts), "%u",
                 q->cfg->max_attempts);
        snprintf(q->a_result_ttl, sizeof(q->a_result_ttl), "%ld",
                 q->cfg->result_ttl_ms);
        snprintf(q->a_top_k_limit, sizeof(q->a_top_k_limit), "%d",
                 RAGQ_TOP_K_LIMIT);
    }
}

static void
job_unlink_free(ragq_queue_t *q, ragq_job_t *job)
{
    ragq_timer_stop(q->loop, &job->write_timer);
    ragq_queue_out_free(job);
    if (job->prev) {
        job->prev->next = job->next;
    } else {
        q->jobs = job->next;
    }
    if (job->next) {
        job->next->prev = job->prev;
    }
    q->njobs--;
    ragq_job_free(job);
}

static void
job_drop(ragq_queue_t *q, ragq_job_t *job)
{
    job_unlink_free(q, job);
    ragq_queue_slot_freed(q);
}

static void
ack_entry(ragq_queue_t *q, const char *entry)
{
    const char *a1[] = {"XACK", q->k_jobs, q->k_group, entry};
    const char *a2[] = {"XDEL", q->k_jobs, entry};

    ragq_queue_send(q, NULL, NULL, 4, a1, NULL);
    ragq_queue_send(q, NULL, NULL, 3, a2, NULL);
}

/*
 * The entry of a job this worker found final after its claim (canceled:
 * P:cancel or the keep-alive; or its own final write whose reply was
 * lost), acknowledged with its hash given RAGQ_RESULT_TTL: the cancel left
 * the hash of a job whose entry waited without a TTL (else a reclaim after
 * it expired would have run the job again).  A finished or failed hash has
 * that TTL already: it only restarts.  PEXPIRE comes last, so it never
 * runs without the XDEL.
 */
static void
ack_final_entry(ragq_queue_t *q, const ragq_job_t *job)
{
    const char *a[] = {"PEXPIRE", job->key, q->a_result_ttl};

    constant_args(q);
    ack_entry(q, job->entry);
    ragq_queue_send(q, NULL, NULL, 3, a, NULL);
}

static int
job_in_flight(const ragq_queue_t *q, const char *entry)
{
    const ragq_job_t *j;

    for (j = q->jobs; j; j = j->next) {
        if (strcmp(j->entry, entry) == 0) {
            return 1;
        }
    }
    return 0;
}

/* P:job:ID, made once a job. */
static char *
job_key(const ragq_queue_t *q, const char *id, size_t idlen)
{
    size_t plen = strlen(q->k_job_prefix);
    char  *k = malloc(plen + idlen + 1);

    if (k) {
        memcpy(k, q->k_job_prefix, plen);
        memcpy(k + plen, id, idlen);
        k[plen + idlen] = '\0';
    }
    return k;
}

/* Errors Valkey gets over by itself: the write is worth trying again. */
static int
transient_error(const char *msg)
{
    static const char *const codes[] = {"OOM",      "BUSY",        "LOADING",
                                        "READONLY", "MASTERDOWN",  "NOREPLICAS",
                                        "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED"};
    size_t                   i, n;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        n = strlen(codes[i]);
        if (strncmp(msg, codes[i], n) == 0 &&
            (msg[n] == ' ' || msg[n] == '\0')) {
            return 1;
        }
    }
    return 0;
}

static void
write_again(void *data)
{
    ragq_job_t   *job = data;
    ragq_queue_t *q = job->queue;

    write_final(q, job);
}

/*
 * The final script answered an error (it wrote nothing: it checks before
 * its first write, and only that one can be refused).  The result stays in
 * memory, in its slot, and is written again after a backoff: the job is
 * not run again for it (three paid calls).  The keep-alive goes on, so the
 * claim stays ours; if another worker takes the job over all the same, the
 * keep-alive says so and the result is dropped (ragq_queue_job_lost).
 */
static void
final_refused(ragq_queue_t *q, ragq_job_t *job, const char *msg)
{
    uint64_t step, delay;
    int      transient = transient_error(msg);

    job->write_tries++;
    if (!transient && job->write_tries >= RAGQ_WRITE_TRIES) {
        ragq_log(RAGQ_LOG_ERROR,
                 "job %s: cannot write its final state: %s; gave up after "
                 "%d tries, left for reclaim",
                 job->id, msg, job->write_tries);
        job_drop(q, job);
        return;
    }
    step = job->write_tries > 6 ? RAGQ_WRITE_BACKOFF
                                : (uint64_t) 100 << (job->write_tries - 1);
    if (step > RAGQ_WRITE_BACKOFF) {
        step = RAGQ_WRITE_BACKOFF;
    }
    delay = step / 2 + (uint64_t) random() % (step / 2 + 1);
    /* One line at warn, then every 10th: an OOM may last a while. */
    ragq_log(job->write_tries % 10 == 1 ? RAGQ_LOG_WARN : RAGQ_LOG_DEBUG,
             "job %s: cannot write its final state: %s; retry %d in %llu ms "
             "(the result is kept)",
             job->id, msg, job->write_tries, (unsigned long long) delay);
    job->state = JOB_WAITING;
    ragq_timer_start(q->loop, &job->write_timer, delay);
}

static void
final_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    ragq_job_t   *job = priv;
    long          ms = (long) (ragq_now_ms() - job->claimed_at);

    if (ragq_scripts_missing(&q->scripts, reply)) {
        write_final(q, job);
        return;
    }
    if (reply == NULL) {
        /* Connection lost: the write may or may not have happened. */
        job->state = JOB_PARKED;
        ragq_queue_check_drained(q);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        final_refused(q, job, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER) {
        final_refused(q, job, "unexpected reply to the final script");
        return;
    }
    switch (reply->integer) {
    case 2:
        /* Our own earlier write of this end (same status and token), whose
         * reply was lost with the connection: the job parked and written
         * again.  It ended here, as with 1: logged, counted, called back
         * (a delivery that finds "callback" set stops: sent already). */
        ragq_log(RAGQ_LOG_DEBUG,
                 "job %s: its final state was written before the connection "
                 "dropped; acknowledged",
                 job->id);
        /* fall through */
    case 1:
        ragq_joblog_ended(job,
                          job->outcome == RAGQ_JOB_FINISHED ? RAGQ_END_FINISHED
                                                            : RAGQ_END_FAILED,
                          q->cfg->max_attempts, ms);
        ragq_callback_deliver(q->callbacks, job->id, job->callback_url);
        break;
    case 0:
        ragq_log(RAGQ_LOG_INFO,
                 "job %s was already final (run twice); acknowledged", job->id);
        /* Canceled while its result was on the way: nobody else may have
         * seen that end (another attempt's finish calls back itself). */
        ragq_callback_deliver_if(q->callbacks, job->id, job->callback_url,
                                 "canceled");
        break;
    case -1:
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: attempt %ld is stale: another worker claimed the "
                 "job since; its result is dropped, not written",
                 job->id, job->attempts);
        break;
    default:
        ragq_log(RAGQ_LOG_ERROR,
                 "job %s: its key is no longer a hash; left as it is, "
                 "dead-lettered (invalid_job)",
                 job->id);
        break;
    }
    job_drop(q, job);
}

static void
write_final(ragq_queue_t *q, ragq_job_t *job)
{
    char        ended[32], token[32], started[32], *err_json = NULL;
    const char *argv[21];
    int         finished = job->outcome == RAGQ_JOB_FINISHED, rc;

    if (!finished && (err_json = ragq_job_error_json(job)) == NULL) {
        job->state = JOB_PARKED;
        return;
    }
    constant_args(q);
    snprintf(ended, sizeof(ended), "%lld", (long long) ragq_epoch_ms());
    snprintf(token, sizeof(token), "%ld", job->attempts);
    snprintf(started, sizeof(started), "%lld", job->started_at);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_FINAL, argv);
    argv[2] = "5";
    argv[3] = job->key;
    argv[4] = q->k_events;
    argv[5] = q->k_dead;
    argv[6] = q->k_jobs;
    /* P:out:ID (the hash again if it could not be made: harmless) */
    argv[7] = job->out_key ? job->out_key : job->key;
    argv[8] = finished ? "finished" : "failed";
    argv[9] = ended;
    argv[10] = q->a_result_ttl;
    argv[11] = finished ? job->result : "";
    argv[12] = finished ? job->sources_json : "";
    argv[13] = finished ? job->usage_json : "";
    argv[14] = finished ? "" : err_json;
    argv[15] = job->entry;
    argv[16] = job->id;
    argv[17] = q->k_group;
    argv[18] = token;
    argv[19] = q->consumer;
    /* for a hash re-created from the entry (a claim lost in a fail-over) */
    argv[20] = started;
    rc = ragq_queue_send(q, final_reply, job, 21, argv, NULL);
    free(err_json);
    job->state = rc == 0 ? JOB_WRITING : JOB_PARKED;
    if (rc != 0) {
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: Valkey is down; its result waits for the "
                 "reconnection",
                 job->id);
        ragq_queue_check_drained(q);
    }
}

static int send_release(ragq_queue_t *q, ragq_job_t *job);

static void
release_reply(void *owner, redisReply *r, void *priv)
{
    ragq_queue_t *q = owner;
    ragq_job_t   *job = priv;

    if (ragq_scripts_missing(&q->scripts, r) && send_release(q, job) == 0) {
        return;
    }
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == -1) {
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: attempt %ld is stale: another worker claimed the "
                 "job since; not released",
                 job->id, job->attempts);
    }
    job_drop(q, job);
}

static int
send_release(ragq_queue_t *q, ragq_job_t *job)
{
    char       *err_json = ragq_job_error_json(job), token[32];
    const char *argv[9];
    int         rc = -1;

    snprintf(token, sizeof(token), "%ld", job->attempts);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_RELEASE, argv);
    argv[2] = "2";
    argv[3] = job->key;
    argv[4] = q->k_events;
    argv[5] = err_json ? err_json : "";
    argv[6] = job->id;
    argv[7] = token;
    argv[8] = q->consumer;
    if (err_json != NULL) {
        rc = ragq_queue_send(q, release_reply, job, 9, argv, NULL);
    }
    free(err_json);
    return rc;
}

/*
 * Transient errors outlasted this attempt's retries: leave the entry
 * un-acknowledged and stop keeping it alive, so it is reclaimed (by any
 * worker) after RAGQ_RECLAIM_AFTER, which is the backoff between attempts.
 */
static void
release_job(ragq_queue_t *q, ragq_job_t *job)
{
    ragq_joblog_ended(job, RAGQ_END_RELEASED, q->cfg->max_attempts,
                      q->cfg->reclaim_after_ms);
    job->state = JOB_RELEASING;
    if (send_release(q, job) != 0) {
        job_drop(q, job);
    }
}

static void
job_done(ragq_job_t *job, void *data)
{
    ragq_queue_t *q = data;

    /* The last pieces go before the final write, on the same connection. */
    ragq_queue_out_flush(q, job);
    if (job->outcome == RAGQ_JOB_EXHAUSTED) {
        if (job->attempts < (long) q->cfg->max_attempts) {
            release_job(q, job);
            return;
        }
        job->outcome = RAGQ_JOB_FAILED;
    }
    write_final(q, job);
}

static int send_claim(ragq_queue_t *q, ragq_job_t *job);

/*
 * The one place where a job this worker holds ends canceled (POST
 * /job-cancel wrote it canceled; DEVELOPERS.md "Cancel"), whichever way
 * the worker learned it: ran is 0 when its claim found it canceled (never
 * run here; the claim script acked its entry), 1 when it was claimed here
 * (running, or its result waiting to be written: the pipeline is aborted,
 * which closes its upstream connections, nothing is written, the entry is
 * acknowledged and the hash given RAGQ_RESULT_TTL).  Frees the job and its
 * slot.  Whatever else must happen once per canceled job (a callback) belongs
 * here.
 */
static void
job_canceled(ragq_queue_t *q, ragq_job_t *job, int ran)
{
    if (!ran) {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s was canceled before this worker claimed it; "
                 "acknowledged its entry without running it",
                 job->id);
        ragq_callback_deliver(q->callbacks, job->id, job->callback_url);
        job_drop(q, job);
        return;
    }
    ragq_job_abort(job);
    ack_final_entry(q, job);
    ragq_joblog_ended(job, RAGQ_END_CANCELED, q->cfg->max_attempts,
                      (long) (ragq_now_ms() - job->claimed_at));
    ragq_callback_deliver(q->callbacks, job->id, job->callback_url);
    job_drop(q, job);
}

/*
 * P:cancel named this job (queue_cancel.c): the job is canceled in Valkey
 * already.  Running, or its result not written yet: it ends now.  Its
 * claim in flight: marked, the claim's reply ends it (the claim script ran
 * before the cancel, else it answers {1, "canceled"}).  Its final or
 * release script in flight: that script's fencing (status started) acks
 * or leaves the entry, as for any final job.
 */
void
ragq_queue_job_cancel(ragq_queue_t *q, ragq_job_t *job)
{
    switch (job->state) {
    case JOB_CLAIMING:
        job->cancel_seen = 1;
        break;
    case JOB_RUNNING:
    case JOB_WAITING:
    case JOB_PARKED:
        job_canceled(q, job, 1);
        break;
    default:
        break;
    }
}

static void
claim_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    ragq_job_t   *job = priv;
    redisReply  **e;
    long long     kind;

    if (ragq_scripts_missing(&q->scripts, reply)) {
        if (send_claim(q, job) != 0) {
            job_drop(q, job);
        }
        return;
    }
    if (reply == NULL) {
        job_drop(q, job);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        /* Nothing was written (OOM...): the entry comes back by reclaim. */
        ragq_log(RAGQ_LOG_ERROR, "job %s: claim failed: %s", job->id,
                 reply->type == REDIS_REPLY_ERROR ? reply->str
                                                  : "unexpected reply");
        job_drop(q, job);
        return;
    }
    e = reply->element;
    kind = e[0]->integer;
    if (kind == 3 && reply->elements >= 3 && e[1]->str && e[2]->str) {
        /* Failed by the script itself, entry acked: never run. */
        ragq_log(strcmp(e[1]->str, "invalid_job") == 0 ? RAGQ_LOG_WARN
                                                       : RAGQ_LOG_INFO,
                 "job %s failed at claim: %s: %s", job->id, e[1]->str,
                 e[2]->str);
        ragq_count_job_end(RAGQ_END_FAILED); /* this worker failed it */
        if (reply->elements >= 4 && e[3]->type == REDIS_REPLY_STRING) {
            ragq_callback_deliver(q->callbacks, job->id, e[3]->str);
        }
        job_drop(q, job);
        return;
    }
    if (kind == 1 && reply->elements > 1 && e[1]->str &&
        strcmp(e[1]->str, "canceled") == 0) {
        /* {1, "canceled", callback_url, called}: canceled while queued; its
         * callback is ours to send unless it was sent (a finished or failed
         * job had it from the worker that ended it) */
        if (reply->elements >= 4 && e[2]->type == REDIS_REPLY_STRING &&
            e[3]->type == REDIS_REPLY_INTEGER && e[3]->integer == 0 &&
            e[2]->str[0]) {
            job->callback_url = strdup(e[2]->str);
        }
        job_canceled(q, job, 0);
        return;
    }
    if (kind != 2 || reply->elements < 6 || e[1]->type != REDIS_REPLY_INTEGER ||
        !e[2]->str || !e[3]->str || !e[4]->str || !e[5]->str) {
        /* {0}: gone, {1, status}: already final; the script acked it. */
        ragq_log(RAGQ_LOG_INFO, "job %s is %s; acknowledged its entry", job->id,
                 kind == 1 && reply->elements > 1 && e[1]->str
                     ? e[1]->str
                     : "gone (expired or deleted)");
        job_drop(q, job);
        return;
    }
    /* The script checked them: a query without NUL, top_k "" or 1..limit. */
    job->attempts = (long) e[1]->integer;
    job->callback_url = e[5]->str[0] ? strdup(e[5]->str) : NULL;
    if (job->cancel_seen) {
        /* canceled just after this claim: claimed, never run */
        job->state = JOB_RUNNING;
        job_canceled(q, job, 1);
        return;
    }
    job->query = strdup(e[2]->str);
    job->top_k = (unsigned) strtoul(e[3]->str, NULL, 10);
    job->collection = strdup(e[4]->str);
    if (job->query == NULL || job->collection == NULL ||
        (e[5]->str[0] && job->callback_url == NULL)) {
        job_drop(q, job);
        return;
    }
    job->state = JOB_RUNNING;
    if (q->cfg->stream == NULL || strcmp(q->cfg->stream, "off") != 0) {
        ragq_queue_out_start(q, job);
    }
    ragq_joblog_started(job, q->cfg->max_attempts);
    ragq_job_run(q->pipeline, job, job_done, q);
}

/* The names of the fields an entry carries a job in (RAGQ_CARRIED_*). */
static const char *const carried_names[RAGQ_CARRIED_N] = {
    "query", "top_k", "collection", "tenant", "created_at", "callback_url"};

/*
 * The job of a stream entry's fields: a "job" field (the id; the hash
 * holds the job), or "r" and the job's fields (the module's XADD: the id
 * is made from the entry id and r).  0: *id set (id[33]); -1: neither, or
 * an entry no job id can name.
 */
static int
entry_job(ragq_job_t *job, const char *entry, const redisReply *fields)
{
    const redisReply *k, *v, *r = NULL;
    size_t            i, c;

    for (i = 0; fields->type == REDIS_REPLY_ARRAY && i + 1 < fields->elements;
         i += 2) {
        k = fields->element[i];
        v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        if (strcmp(k->str, "job") == 0) {
            if (!ragq_job_id_valid(v->str, v->len)) {
                return -1;
            }
            memcpy(job->id, v->str, RAGQ_JOB_ID_LEN);
            job->id[RAGQ_JOB_ID_LEN] = '\0';
            for (c = 0; c < RAGQ_CARRIED_N; c++) {
                free(job->carried[c]);
                job->carried[c] = NULL;
            }
            return 0;
        }
        if (strcmp(k->str, "r") == 0) {
            r = v;
            continue;
        }
        for (c = 0; c < RAGQ_CARRIED_N; c++) {
            if (strcmp(k->str, carried_names[c]) == 0 &&
                job->carried[c] == NULL) {
                job->carried[c] = malloc(v->len + 1);
                if (job->carried[c] == NULL) {
                    return -1;
                }
                memcpy(job->carried[c], v->str, v->len + 1);
                job->carried_len[c] = v->len;
            }
        }
    }
    if (r == NULL || ragq_job_id_from_entry(job->id, entry, r->str, r->len)) {
        return -1;
    }
    /* A field the entry lacks is written empty: the claim's checks decide
     * (the callback_url stays NULL: none). */
    for (c = 0; c < RAGQ_CARRIED_CALLBACK_URL; c++) {
        if (job->carried[c] == NULL && (job->carried[c] = strdup("")) == NULL) {
            return -1;
        }
    }
    return 0;
}

/*
 * A stream entry [id, [field, value, ...]] now held by this consumer.
 * reclaimed: it came from XAUTOCLAIM and may be one we are running already
 * (XREADGROUP ">" only hands out entries never delivered, so the O(jobs)
 * scan is skipped for those).
 */
void
ragq_queue_take_entry(ragq_queue_t *q, redisReply *e, int reclaimed)
{
    const char *entry;
    ragq_job_t *job;

    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING) {
        return; /* deleted entry (XAUTOCLAIM on older servers) */
    }
    entry = e->element[0]->str;
    if (reclaimed && job_in_flight(q, entry)) {
        return;
    }
    job = ragq_job_new();
    if (job == NULL) {
        return;
    }
    if (entry_job(job, entry, e->element[1]) != 0) {
        /* Also an entry id past what a job id holds (65,536 entries in one
         * ms): the module answered 503 for it, nobody has its id. */
        ragq_log(RAGQ_LOG_WARN,
                 "stream entry %s holds no job (no valid \"job\" field, or "
                 "no \"r\" that makes a job id with its id); dropped",
                 entry);
        ragq_job_free(job);
        ack_entry(q, entry);
        return;
    }
    if ((job->entry = strdup(entry)) == NULL ||
        (job->key = job_key(q, job->id, RAGQ_JOB_ID_LEN)) == NULL) {
        ragq_job_free(job);
        return;
    }
    job->state = JOB_CLAIMING;
    job->claimed_at = ragq_now_ms();
    job->queue = q;
    /* Jobs are listed newest first, so in decreasing serial order. */
    job->serial = ++q->job_serial;
    ragq_timer_init(&job->write_timer, write_again, job);
    job->next = q->jobs;
    if (q->jobs) {
        q->jobs->prev = job;
    }
    q->jobs = job;
    q->njobs++;

    if (send_claim(q, job) != 0) {
        /* Not acked: the entry stays ours and is reclaimed later. */
        job_unlink_free(q, job);
    }
}

static int
send_claim(ragq_queue_t *q, ragq_job_t *job)
{
    char        now[32];
    const char *argv[23], *out = ragq_queue_out_key(q, job);
    size_t      lens[23];
    int         argc = 16, i;

    constant_args(q);
    job->started_at = (long long) ragq_epoch_ms();
    snprintf(now, sizeof(now), "%lld", job->started_at);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_CLAIM, argv);
    argv[2] = "5";
    argv[3] = job->key;
    argv[4] = q->k_events;
    argv[5] = q->k_dead;
    argv[6] = q->k_jobs;
    /* P:out:ID (the hash again if it could not be made: harmless) */
    argv[7] = out ? out : job->key;
    argv[8] = q->a_max_attempts;
    argv[9] = now;
    argv[10] = job->id;
    argv[11] = job->entry;
    argv[12] = q->k_group;
    argv[13] = q->consumer;
    argv[14] = q->a_result_ttl;
    argv[15] = q->a_top_k_limit;
    for (i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    if (job->carried[0]) {
        /* ARGV[9..14]: the job the entry carries, for its hash */
        argv[argc] = "1";
        lens[argc++] = 1;
        for (i = 0; i < RAGQ_CARRIED_CALLBACK_URL; i++) {
            argv[argc] = job->carried[i];
            lens[argc++] = job->carried_len[i];
        }
        if (job->carried[RAGQ_CARRIED_CALLBACK_URL]) {
            /* ARGV[15] */
            argv[argc] = job->carried[RAGQ_CARRIED_CALLBACK_URL];
            lens[argc++] = job->carried_len[RAGQ_CARRIED_CALLBACK_URL];
        }
    }
    return ragq_queue_send(q, claim_reply, job, argc, argv, lens);
}

/*
 * The keep-alive found that the job is no longer ours to run (why: stale,
 * gone or final).  A job with a script call in flight is left to that
 * call's reply (which the same fencing decides); any other stops now and
 * frees its slot.
 */
void
ragq_queue_job_lost(ragq_queue_t *q, ragq_job_t *job, int why)
{
    if (job->state != JOB_RUNNING && job->state != JOB_WAITING &&
        job->state != JOB_PARKED) {
        return;
    }
    ragq_job_abort(job);
    switch (why) {
    case JOB_LOST_STALE:
        ragq_log(RAGQ_LOG_WARN,
                 "job %s: attempt %ld is stale: another worker claimed the "
                 "job since; stopped",
                 job->id, job->attempts);
        break;
    case JOB_LOST_FINAL:
        /* Canceled, or our own final write whose reply was lost: either
         * way the job ended and nobody else calls back for it. */
        ragq_log(RAGQ_LOG_INFO, "job %s is already final; stopped", job->id);
        ack_final_entry(q, job);
        ragq_callback_deliver(q->callbacks, job->id, job->callback_url);
        break;
    default:
        /* Reclaim settles its entry (a claim acks or dead-letters it). */
        ragq_log(RAGQ_LOG_WARN,
                 "job %s is gone (expired, deleted or not a hash) while "
                 "attempt %ld ran; stopped",
                 job->id, job->attempts);
        break;
    }
    job_drop(q, job);
}

/* After a reconnect: results kept while Valkey was down are written now. */
void
ragq_queue_write_parked(ragq_queue_t *q)
{
    ragq_job_t *j, *next;

    for (j = q->jobs; j; j = next) {
        next = j->next;
        if (j->state == JOB_PARKED) {
            write_final(q, j);
        }
    }
}

void
ragq_queue_jobs_free(ragq_queue_t *q)
{
    while (q->jobs) {
        job_unlink_free(q, q->jobs);
    }
}
