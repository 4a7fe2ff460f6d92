/*
 * queue_out.c: the answer's pieces of a running job (job.h's piece
 * callback) to Valkey: kept in the job, sent in batches (on the clock's
 * RAGQ_STREAM_INTERVAL boundaries, 50 ms by default, or at 256 bytes,
 * whichever comes first, and before the final write) by one
 * append.lua call each, which XADDs them to P:out:ID and PUBLISHes the
 * batch once on the channel P:out:ID, fenced by the claim's token.  A new
 * try drops what was not sent yet and has the next batch begin with a
 * reset entry (the rule is append.lua's header).  Appends are fire and
 * forget on the command connection, in order before the final write: a
 * stale attempt is refused by the script, and the keep-alive stops it.
 */

#include "queue_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAGQ_OUT_BATCH_BYTES 256

static void
out_due(void *data)
{
    ragq_job_t *job = data;

    ragq_queue_out_flush(job->queue, job);
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
    ragq_timer_init(&job->out_timer, out_due, job);
    job->on_piece = ragq_queue_out_piece;
}

void
ragq_queue_out_free(ragq_queue_t *q, ragq_job_t *job)
{
    ragq_timer_stop(q->loop, &job->out_timer);
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
    } else if (!ragq_timer_active(&job->out_timer)) {
        /* Due on the clock's next boundary of the interval rather than one
         * interval from now: the batches of all streamed jobs fall due in the
         * same loop turn and leave in one write (valkey_conn.c's flush). */
        ragq_timer_start(q->loop, &job->out_timer,
                         ragq_ms_to_boundary(q->cfg->stream_interval_ms));
    }
}

void
ragq_queue_out_flush(ragq_queue_t *q, ragq_job_t *job)
{
    const char **argv;
    size_t      *lens, i, start = 0;
    char         token[32];
    int          argc;

    ragq_timer_stop(q->loop, &job->out_timer);
    if (job->out_key == NULL || (job->out_n == 0 && !job->out_new_try)) {
        return;
    }
    argc = 8 + (int) job->out_n;
    argv = malloc(argc * sizeof(*argv));
    lens = malloc(argc * sizeof(*lens));
    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return;
    }
    snprintf(token, sizeof(token), "%ld", job->attempts);
    ragq_scripts_head(&q->scripts, RAGQ_SCRIPT_APPEND, argv);
    argv[2] = "2";
    argv[3] = job->key;
    argv[4] = job->out_key;
    argv[5] = token;
    argv[6] = q->consumer;
    argv[7] = job->out_new_try ? "1" : "0";
    for (i = 0; i < 8; i++) {
        lens[i] = strlen(argv[i]);
    }
    for (i = 0; i < job->out_n; i++) {
        argv[8 + i] = job->out_buf + start;
        lens[8 + i] = job->out_ends[i] - start;
        start = job->out_ends[i];
    }
    /* No reply wanted: the job may be gone by then, and a refusal (stale,
     * OOM) changes nothing here.  A NOSCRIPT loses this batch. */
    ragq_queue_send(q, NULL, NULL, argc, argv, lens);
    free(argv);
    free(lens);
    job->out_len = job->out_n = 0;
    job->out_new_try = 0;
}
