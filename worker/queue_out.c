/*
 * queue_out.c: the answer's pieces of a running job (job.h's piece
 * callback) to Valkey: kept in the job, sent in batches by one append.lua
 * call each, which XADDs them to P:out:ID and PUBLISHes the batch once on
 * the channel P:out:ID, fenced by the claim's token.  The batches of all
 * streamed jobs leave together, on one timer of the queue: on the clock's
 * RAGQ_STREAM_INTERVAL boundaries (50 ms by default), at once for pieces
 * read just after one (the paced reads of http_pace.c fall on the same
 * boundaries, so what a tick reads leaves in that tick, not one interval
 * later), at 256 bytes, and before the final write.  A new try drops what
 * was not sent yet and has the next batch begin with a reset entry (the
 * rule is append.lua's header).  Appends are fire and forget on the
 * command connection, in order before the final write: a stale attempt is
 * refused by the script, and the keep-alive stops it.
 */

#include "queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAGQ_OUT_BATCH_BYTES 256
#define RAGQ_OUT_ARGS        32 /* on the stack; more pieces: malloc */

/* Off the due list, if on it. */
static void
out_unlist(ragq_job_t *job)
{
    if (job->out_pprev == NULL) {
        return;
    }
    *job->out_pprev = job->out_next;
    if (job->out_next != NULL) {
        job->out_next->out_pprev = job->out_pprev;
    }
    job->out_next = NULL;
    job->out_pprev = NULL;
}

/*
 * Until the clock's next boundary of the interval, or 0 in the first
 * quarter after one: the tick that read the piece is still running, and
 * the batches it filled go out on the loop's next turn, in one write
 * (valkey_conn.c's flush).
 */
static uint64_t
out_delay(const ragq_queue_t *q)
{
    uint64_t period = (uint64_t) q->cfg->stream_interval_ms;
    uint64_t left = ragq_ms_to_boundary(period);

    return period - left < period / 4 ? 0 : left;
}

void
ragq_queue_out_due(void *data)
{
    ragq_queue_t *q = data;

    while (q->out_due != NULL) {
        ragq_queue_out_flush(q, q->out_due); /* takes it off the list */
    }
}

const char *
ragq_queue_out_key(ragq_queue_t *q, ragq_job_t *job)
{
    size_t n = strlen(q->cfg->prefix) + 5 + 32 + 1;

    if (job->out_key == NULL && (job->out_key = malloc(n)) != NULL) {
        snprintf(job->out_key, n, "%s:out:%s", q->cfg->prefix, job->id);
    }
    return job->out_key;
}

void
ragq_queue_out_start(ragq_queue_t *q, ragq_job_t *job)
{
    if (ragq_queue_out_key(q, job) == NULL) {
        return; /* not streamed; the result is written all the same */
    }
    job->on_piece = ragq_queue_out_piece;
}

void
ragq_queue_out_free(ragq_job_t *job)
{
    out_unlist(job);
    free(job->out_buf);
    free(job->out_ends);
    free(job->out_key);
    job->out_buf = job->out_key = NULL;
    job->out_ends = NULL;
    job->out_len = job->out_cap = job->out_n = job->out_ncap = 0;
    job->on_piece = NULL;
}

void
ragq_queue_out_piece(ragq_job_t *job, const char *text, size_t len, int how)
{
    ragq_queue_t *q = job->queue;

    if (how == RAGQ_PIECE_NEW_TRY) {
        job->out_len = job->out_n = 0;
        job->out_new_try = 1;
        return;
    }
    if (len == 0) {
        return;
    }
    if (job->out_len + len > job->out_cap) {
        size_t cap = job->out_cap ? job->out_cap : 512;
        char  *b;

        while (cap < job->out_len + len) {
            cap *= 2;
        }
        if ((b = realloc(job->out_buf, cap)) == NULL) {
            return; /* the final script writes the result all the same */
        }
        job->out_buf = b;
        job->out_cap = cap;
    }
    if (how == RAGQ_PIECE_SPLIT || job->out_n == 0) {
        if (job->out_n == job->out_ncap) {
            size_t  ncap = job->out_ncap ? job->out_ncap * 2 : 8;
            size_t *e = realloc(job->out_ends, ncap * sizeof(*e));

            if (e == NULL) {
                return;
            }
            job->out_ends = e;
            job->out_ncap = ncap;
        }
        job->out_n++;
    }
    memcpy(job->out_buf + job->out_len, text, len);
    job->out_len += len;
    job->out_ends[job->out_n - 1] = job->out_len;
    if (job->out_len >= RAGQ_OUT_BATCH_BYTES) {
        ragq_queue_out_flush(q, job);
    } else if (job->out_pprev == NULL) {
        job->out_next = q->out_due;
        if (q->out_due != NULL) {
            q->out_due->out_pprev = &job->out_next;
        }
        q->out_due = job;
        job->out_pprev = &q->out_due;
        if (!ragq_timer_active(&q->out_timer)) {
            ragq_timer_start(q->loop, &q->out_timer, out_delay(q));
        }
    }
}

void
ragq_queue_out_flush(ragq_queue_t *q, ragq_job_t *job)
{
    const char *argv_small[8 + RAGQ_OUT_ARGS], **argv = argv_small;
    size_t      lens_small[8 + RAGQ_OUT_ARGS], *lens = lens_small;
    size_t      i, start = 0;
    char        token[24];
    int         argc;

    out_unlist(job);
    if (job->out_key == NULL || (job->out_n == 0 && !job->out_new_try)) {
        return;
    }
    argc = 8 + (int) job->out_n;
    if (job->out_n > RAGQ_OUT_ARGS) {
        argv = malloc(argc * sizeof(*argv));
        lens = malloc(argc * sizeof(*lens));
        if (argv == NULL || lens == NULL) {
            free(argv);
            free(lens);
            return;
        }
    }
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_APPEND, argv);
    lens[0] = strlen(argv[0]);
    lens[1] = strlen(argv[1]);
    argv[2] = "2";
    lens[2] = 1;
    argv[3] = job->key;
    lens[3] = strlen(job->key);
    argv[4] = job->out_key;
    lens[4] = strlen(job->out_key);
    argv[5] = token;
    lens[5] = ragq_vconn_decimal(
        token, (size_t) (job->attempts < 0 ? 0 : job->attempts));
    argv[6] = q->consumer;
    lens[6] = strlen(q->consumer);
    argv[7] = job->out_new_try ? "1" : "0";
    lens[7] = 1;
    for (i = 0; i < job->out_n; i++) {
        argv[8 + i] = job->out_buf + start;
        lens[8 + i] = job->out_ends[i] - start;
        start = job->out_ends[i];
    }
    /* No reply wanted: the job may be gone by then, and a refusal (stale,
     * OOM) changes nothing here.  A NOSCRIPT loses this batch, and has
     * queue.c's error hook load the scripts again. */
    ragq_queue_send(q, NULL, NULL, argc, argv, lens);
    if (argv != argv_small) {
        free(argv);
        free(lens);
    }
    job->out_len = job->out_n = 0;
    job->out_new_try = 0;
}
