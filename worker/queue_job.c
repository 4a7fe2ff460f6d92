/*
 * queue_job.c: one job's trip through Valkey (queue_int.h): the claim
 * script when its stream entry arrives, the pipeline run, then the final
 * script (or the release script when its attempt gave up on transient
 * errors), a result kept in memory while Valkey is down, and the
 * acknowledgement of entries that hold no job to run.
 */

#include "queue_int.h"
#include "joblog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void write_final(ragq_queue_t *q, ragq_job_t *job);

static void
job_unlink_free(ragq_queue_t *q, ragq_job_t *job)
{
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

static char *
job_key(const ragq_queue_t *q, const char *id)
{
    size_t n = strlen(q->k_job_prefix) + strlen(id) + 1;
    char  *k = malloc(n);

    if (k) {
        snprintf(k, n, "%s%s", q->k_job_prefix, id);
    }
    return k;
}

static void
final_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    ragq_job_t   *job = priv;
    long          ms = (long) (ragq_now_ms() - job->claimed_at);

    if (ragq_scripts_missing(&q->scripts, reply, RAGQ_SCRIPT_FINAL)) {
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
        ragq_log(RAGQ_LOG_ERROR,
                 "job %s: cannot write its final state: %s; left for "
                 "reclaim",
                 job->id, reply->str);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        ragq_log(RAGQ_LOG_INFO,
                 "job %s was already final (run twice); acknowledged", job->id);
    } else {
        ragq_joblog_ended(job,
                          job->outcome == RAGQ_JOB_FINISHED ? RAGQ_END_FINISHED
                                                            : RAGQ_END_FAILED,
                          q->cfg->max_attempts, ms);
    }
    job_drop(q, job);
}

static void
write_final(ragq_queue_t *q, ragq_job_t *job)
{
    char        ended[32], ttl[32], *err_json = NULL, *key;
    const char *argv[15];
    size_t      lens[15];
    int         i, finished = job->outcome == RAGQ_JOB_FINISHED, rc;

    key = job_key(q, job->id);
    if (!finished) {
        err_json = ragq_job_error_json(job);
    }
    if (key == NULL || (!finished && err_json == NULL)) {
        free(key);
        free(err_json);
        job->state = JOB_PARKED;
        return;
    }
    snprintf(ended, sizeof(ended), "%lld", (long long) ragq_epoch_ms());
    snprintf(ttl, sizeof(ttl), "%ld", q->cfg->result_ttl_ms);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_FINAL, argv);
    argv[2] = "4";
    argv[3] = key;
    argv[4] = q->k_events;
    argv[5] = q->k_dead;
    argv[6] = q->k_jobs;
    argv[7] = finished ? "finished" : "failed";
    argv[8] = ended;
    argv[9] = ttl;
    argv[10] = finished ? job->result : "";
    argv[11] = finished ? job->sources_json : "";
    argv[12] = finished ? job->usage_json : "";
    argv[13] = finished ? "" : err_json;
    argv[14] = job->entry;
    for (i = 0; i < 15; i++) {
        lens[i] = strlen(argv[i]);
    }
    /* ARGV[9] job id and ARGV[10] group follow: build the full vector. */
    {
        const char *full[17];
        size_t      flens[17];

        memcpy(full, argv, sizeof(argv));
        memcpy(flens, lens, sizeof(lens));
        full[15] = job->id;
        full[16] = q->k_group;
        flens[15] = strlen(job->id);
        flens[16] = strlen(q->k_group);
        rc = ragq_queue_send(q, final_reply, job, 17, full, flens);
    }
    free(key);
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

    if (ragq_scripts_missing(&q->scripts, r, RAGQ_SCRIPT_RELEASE) &&
        send_release(q, priv) == 0) {
        return;
    }
    job_drop(q, priv);
}

static int
send_release(ragq_queue_t *q, ragq_job_t *job)
{
    char       *key = job_key(q, job->id), *err_json = ragq_job_error_json(job);
    const char *argv[7];
    int         rc = -1;

    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_RELEASE, argv);
    argv[2] = "2";
    argv[3] = key ? key : "";
    argv[4] = q->k_events;
    argv[5] = err_json ? err_json : "";
    argv[6] = job->id;
    if (key != NULL && err_json != NULL) {
        rc = ragq_queue_send(q, release_reply, job, 7, argv, NULL);
    }
    free(key);
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

static void
claim_reply(void *owner, redisReply *reply, void *priv)
{
    ragq_queue_t *q = owner;
    ragq_job_t   *job = priv;
    long long     kind;

    if (ragq_scripts_missing(&q->scripts, reply, RAGQ_SCRIPT_CLAIM)) {
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
        ragq_log(RAGQ_LOG_ERROR, "job %s: claim failed: %s", job->id,
                 reply->type == REDIS_REPLY_ERROR ? reply->str
                                                  : "unexpected reply");
        job_drop(q, job);
        return;
    }
    kind = reply->element[0]->integer;
    if (kind != 2 || reply->elements < 5) {
        ragq_log(RAGQ_LOG_INFO, "job %s is %s; acknowledged its entry", job->id,
                 kind == 1 && reply->elements > 1 && reply->element[1]->str
                     ? reply->element[1]->str
                     : "gone (expired or deleted)");
        ack_entry(q, job->entry);
        job_drop(q, job);
        return;
    }
    job->attempts = (long) reply->element[1]->integer;
    job->query = strdup(reply->element[2]->str ? reply->element[2]->str : "");
    job->top_k = (unsigned) strtoul(
        reply->element[3]->str ? reply->element[3]->str : "0", NULL, 10);
    job->collection =
        strdup(reply->element[4]->str ? reply->element[4]->str : "");
    if (job->query == NULL || job->collection == NULL) {
        job_drop(q, job);
        return;
    }
    if (job->attempts > (long) q->cfg->max_attempts) {
        ragq_upstream_error_set(&job->err, 0, 0, "max_attempts",
                                "the job was claimed %ld times without "
                                "finishing (RAGQ_MAX_ATTEMPTS is %u); the "
                                "workers running it may have crashed",
                                job->attempts, q->cfg->max_attempts);
        job->outcome = RAGQ_JOB_FAILED;
        write_final(q, job);
        return;
    }
    if (job->query[0] == '\0') {
        ragq_upstream_error_set(&job->err, 0, 0, "bad_request",
                                "the job has an empty query");
        job->outcome = RAGQ_JOB_FAILED;
        write_final(q, job);
        return;
    }
    job->state = JOB_RUNNING;
    ragq_joblog_started(job, q->cfg->max_attempts);
    ragq_job_run(q->pipeline, job, job_done, q);
}

static int
valid_job_id(const char *s, size_t n)
{
    size_t i;

    if (n != 32) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
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
    redisReply *fields;
    const char *entry, *id = NULL;
    size_t      idlen = 0, i;
    ragq_job_t *job;

    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING) {
        return; /* deleted entry (XAUTOCLAIM on older servers) */
    }
    entry = e->element[0]->str;
    fields = e->element[1];
    if (fields->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i + 1 < fields->elements; i += 2) {
            if (fields->element[i]->str &&
                strcmp(fields->element[i]->str, "job") == 0 &&
                fields->element[i + 1]->str) {
                id = fields->element[i + 1]->str;
                idlen = fields->element[i + 1]->len;
            }
        }
    }
    if (id == NULL || !valid_job_id(id, idlen)) {
        ragq_log(RAGQ_LOG_WARN,
                 "stream entry %s has no valid \"job\" field; dropped", entry);
        ack_entry(q, entry);
        return;
    }
    if (reclaimed && job_in_flight(q, entry)) {
        return;
    }
    job = ragq_job_new();
    if (job == NULL || (job->entry = strdup(entry)) == NULL) {
        ragq_job_free(job);
        return;
    }
    memcpy(job->id, id, 32);
    job->id[32] = '\0';
    job->state = JOB_CLAIMING;
    job->claimed_at = ragq_now_ms();
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
    char       *key = job_key(q, job->id);
    char        now[32], max[16];
    const char *argv[8];
    int         rc;

    if (key == NULL) {
        return -1;
    }
    snprintf(now, sizeof(now), "%lld", (long long) ragq_epoch_ms());
    snprintf(max, sizeof(max), "%u", q->cfg->max_attempts);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_CLAIM, argv);
    argv[2] = "2";
    argv[3] = key;
    argv[4] = q->k_events;
    argv[5] = max;
    argv[6] = now;
    argv[7] = job->id;
    rc = ragq_queue_send(q, claim_reply, job, 8, argv, NULL);
    free(key);
    return rc;
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
