/*
 * job.h: one job's pipeline: embed the question, retrieve the top_k chunks,
 * generate the answer, each call retried with backoff on transient errors.
 * The queue (queue.c) claims a job, fills in its inputs, runs it here and
 * writes the outcome this leaves in the job.
 */

#ifndef RAGQ_JOB_H
#define RAGQ_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "local.h"
#include "loop.h"
#include "upstream.h"

#define RAGQ_EXCERPT_MAX 500 /* bytes of a source's text kept in "sources" */

/* The largest top_k a job may ask for (its claim fails invalid_job above). */
#define RAGQ_TOP_K_LIMIT 1000

/*
 * The largest answer of each call when RAGQ_MAX_ANSWER_BYTES is not set:
 * one embedding is tens of kB, top_k points with their payloads a few MB
 * at most, an answer text far less than 4 MiB.
 */
#define RAGQ_MAX_ANSWER_EMBED  (4ul << 20)
#define RAGQ_MAX_ANSWER_QDRANT (16ul << 20)
#define RAGQ_MAX_ANSWER_CHAT   (4ul << 20)

typedef enum {
    RAGQ_JOB_FINISHED, /* result, sources_json, usage_json set */
    RAGQ_JOB_FAILED,   /* permanent error: fail the job now */
    RAGQ_JOB_EXHAUSTED /* transient errors outlasted the call's retries */
} ragq_job_outcome_t;

typedef struct {
    ragq_loop_t         *loop;
    ragq_http_t         *http;
    const ragq_config_t *cfg;
    ragq_local_store_t  *store; /* when cfg->store is "local" */
    int                  embed_openai, store_qdrant, answer_openai;
    size_t               max_answer[3]; /* bytes, per stage */
    char                *embed_url, *chat_url;
    char                *embed_auth, *chat_auth, *qdrant_auth; /* headers */
} ragq_pipeline_t;

/* The fields a queue entry carries a job in, in the claim's order. */
enum {
    RAGQ_CARRIED_QUERY = 0,
    RAGQ_CARRIED_TOP_K,
    RAGQ_CARRIED_COLLECTION,
    RAGQ_CARRIED_TENANT,
    RAGQ_CARRIED_CREATED_AT,
    RAGQ_CARRIED_CALLBACK_URL, /* optional: NULL when the entry has none */
    RAGQ_CARRIED_N
};

typedef struct ragq_job_s ragq_job_t;
typedef void (*ragq_job_done_cb)(ragq_job_t *job, void *data);

/*
 * The answer's text as it is written: pieces in order, whose concatenation
 * since the last RAGQ_PIECE_NEW_TRY is the text of the try that runs (and,
 * when it finishes the job, its result).  MERGE: may join the last piece;
 * SPLIT: a piece of its own (a sentence); NEW_TRY (no text): a try of the
 * answer begins, what came before it is void.  The queue streams them
 * (queue_out.c); called from inside curl's callbacks.
 */
enum { RAGQ_PIECE_MERGE, RAGQ_PIECE_SPLIT, RAGQ_PIECE_NEW_TRY };
typedef void (*ragq_job_piece_cb)(ragq_job_t *job, const char *text, size_t len,
                                  int how);

struct ragq_job_s {
    /* inputs, owned by the job (freed by ragq_job_free) */
    char     id[33];
    char    *entry; /* stream entry id in P:jobs */
    char    *key;   /* its hash, P:job:ID */
    char    *query;
    unsigned top_k;
    char    *collection;
    long     attempts;
    /* the job as its queue entry carries it (RAGQ_CARRIED_*), for the
     * claim to write its hash; NULL: a "job ID" entry, the hash exists */
    char  *carried[RAGQ_CARRIED_N];
    size_t carried_len[RAGQ_CARRIED_N];
    /* where the job's end is POSTed (callback.c), from the claim; NULL or
     * "": none */
    char *callback_url;

    /* queue bookkeeping */
    ragq_job_t  *prev, *next;
    int          state;
    uint64_t     claimed_at;
    long long    started_at;  /* epoch ms the claim wrote as started_at */
    uint64_t     serial;      /* arrival order in this worker */
    void        *queue;       /* the queue holding it */
    ragq_timer_t write_timer; /* the final write again, after an error */
    int          write_tries;
    int          cancel_seen; /* P:cancel named it while its claim ran */

    /* streamed pieces not yet sent (queue_out.c) */
    ragq_job_piece_cb on_piece;              /* NULL: not streamed */
    ragq_job_t       *out_next, **out_pprev; /* on the queue's due list */
    char             *out_buf, *out_key;
    size_t           *out_ends; /* end of each pending piece in out_buf */
    size_t            out_len, out_cap, out_n, out_ncap;
    int               out_new_try; /* the next batch begins a new try */

    /* outcome */
    ragq_job_outcome_t    outcome;
    char                 *result, *sources_json, *usage_json;
    ragq_upstream_error_t err;
    long                  ms_embed, ms_retrieve, ms_generate;

    /* pipeline state */
    ragq_pipeline_t *p;
    ragq_job_done_cb done;
    void            *done_data;
    int              stage, tries, running;
    uint64_t         stage_started;
    ragq_timer_t     timer;
    ragq_http_req_t *req;
    void            *chat_stream; /* ragq_chat_stream_t of the chat call */
    float           *vector;
    size_t           dim;
    ragq_source_t   *sources;
    size_t           nsources;
    char            *chat_usage;
};

/* Resolves backends, URLs and auth headers.  -1 + err when it cannot. */
int ragq_pipeline_init(ragq_pipeline_t *p, ragq_loop_t *loop, ragq_http_t *http,
                       const ragq_config_t *cfg, char *err, size_t errlen);
void ragq_pipeline_free(ragq_pipeline_t *p);

ragq_job_t *ragq_job_new(void);

/* Starts the pipeline on the next loop turn; done runs exactly once. */
void ragq_job_run(ragq_pipeline_t *p, ragq_job_t *job, ragq_job_done_cb done,
                  void *data);

/* Stops a running pipeline without calling done.  Idempotent. */
void ragq_job_abort(ragq_job_t *job);

/* The job's "error" field: {"code","message"}.  malloc'd. */
char *ragq_job_error_json(const ragq_job_t *job);

void ragq_job_free(ragq_job_t *job);

#endif
