/*
 * queue_int.h: what the queue's files (queue.c, queue_claim.c, queue_job.c,
 * queue_keep.c, queue_out.c, queue_cancel.c) share, and callback.c, which
 * sends its Valkey commands through the queue (ragq_queue_send()) and tells
 * it when deliveries end (ragq_queue_check_drained()): the queue's state and
 * the calls between them.
 */

#ifndef RAGQ_QUEUE_INT_H
#define RAGQ_QUEUE_INT_H

#include <hiredis/hiredis.h>

#include "callback.h"
#include "queue.h"
#include "retry.h"
#include "scripts.h"
#include "sdnotify.h"
#include "valkey_conn.h"

/* ragq_job_t.state while the queue holds a job. */
enum {
    JOB_CLAIMING,  /* claim script sent */
    JOB_RUNNING,   /* in the pipeline (job.c) */
    JOB_WRITING,   /* final script sent */
    JOB_WAITING,   /* final script refused (OOM...): written again later */
    JOB_PARKED,    /* ended while Valkey was down: written on reconnect */
    JOB_RELEASING, /* release script sent; no longer kept alive */
};

/* A persistent Valkey error of one command (queue.c). */
typedef struct {
    char     cmd[16], text[256];
    unsigned gates, count; /* gates: the paths it holds back */
    uint64_t since;
} ragq_fault_t;

struct ragq_queue_s {
    ragq_loop_t              *loop;
    ragq_pipeline_t          *pipeline;
    const ragq_config_t      *cfg;
    const ragq_valkey_addr_t *addr;
    char                      consumer[256];
    char *k_jobs, *k_group, *k_events, *k_dead, *k_job_prefix;

    ragq_vconn_t  *cmd; /* pipelined: scripts, acks, reclaim, keep-alive */
    ragq_vconn_t  *blk; /* XREADGROUP BLOCK only */
    ragq_vconn_t  *sub; /* SUBSCRIBE P:cancel (queue_cancel.c) */
    char          *k_cancel;
    int            cancel_lost; /* sub lost since it was last ready */
    ragq_scripts_t scripts;
    int            group_ready, group_creating;
    int            started, stopping, exit_code;

    ragq_job_t       *jobs;
    unsigned          njobs;
    ragq_callbacks_t *callbacks; /* job-end callbacks (callback.c) */
    unsigned          reserved_read, reserved_reclaim;
    int               reading, reclaiming, probing, reclaim_due;
    char              reclaim_cursor[64];

    ragq_timer_t startup_timer, keepalive_timer, reclaim_timer, grace_timer;
    ragq_timer_t exit_timer, consumers_timer;
    ragq_timer_t drain_timer; /* stopping: replies still on the wire */
    ragq_timer_t out_timer;   /* sends the batches of out_due (queue_out.c) */
    ragq_job_t  *out_due;     /* streamed jobs with pieces not yet sent */
    uint64_t     job_serial;  /* the last job's ragq_job_t.serial */

    /* Script arguments that never change, as text (queue_job.c). */
    char a_max_attempts[16], a_result_ttl[24], a_top_k_limit[16];

    /*
     * Persistent Valkey errors (queue.c): each logged once per change,
     * cleared by the next good reply to the same command, or to another
     * command of the same path.  While one on the claim path (or the
     * reclaim path) lasts, that path runs only once per backoff delay
     * (fault_backoff, retry.c), never straight again.
     */
    ragq_vnet_t   *net;
    ragq_fault_t   faults[8];
    unsigned       nfaults, gated, passing;
    ragq_backoff_t fault_backoff;
    ragq_timer_t   pass_timer;
    char         **orphans; /* entry ids read while cmd was down */
    unsigned       norphans, reserved_adopt;
    int            lost_kind;     /* RAGQ_VLOSS_* logged last, -1: none */
    unsigned char  lost_since[2]; /* per connection: lost since ready */

    /* systemd: READY=1, STOPPING=1, STATUS= (sdnotify.c); NULL: none */
    ragq_sdnotify_t *notify;
};

/* how long XREADGROUP blocks on the claim connection */
#define RAGQ_XREAD_BLOCK_MS 5000

/* the paths a persistent error shuts (queue.c "faults") */
#define GATE_CLAIM   1u /* XREADGROUP and the claim script */
#define GATE_RECLAIM 2u /* XAUTOCLAIM and the XPENDING probe */

/* queue.c */
int  ragq_queue_gate_open(ragq_queue_t *q, unsigned gate);
int  ragq_queue_send(ragq_queue_t *q, ragq_vconn_reply_cb cb, void *priv,
                     int argc, const char **argv, const size_t *lens);
void ragq_queue_check_drained(ragq_queue_t *q);

/* queue_claim.c */
void ragq_queue_slot_freed(ragq_queue_t *q);
void ragq_queue_claim_more(ragq_queue_t *q);
void ragq_queue_reclaim(void *data); /* the reclaim timer */
void ragq_queue_reclaim_now(ragq_queue_t *q);
void ragq_queue_keep_orphan(ragq_queue_t *q, const redisReply *e);
void ragq_queue_orphans_free(ragq_queue_t *q);
void ragq_queue_adopt_orphans(ragq_queue_t *q);
void ragq_queue_create_group(ragq_queue_t *q);

/* queue_job.c */
void ragq_queue_take_entry(ragq_queue_t *q, redisReply *entry, int reclaimed);
void ragq_queue_write_parked(ragq_queue_t *q);
void ragq_queue_jobs_free(ragq_queue_t *q);
void ragq_queue_job_lost(ragq_queue_t *q, ragq_job_t *job, int why);

/* A cancel of job (queue_cancel.c): ends it canceled, or marks it while
 * its claim is in flight. */
void ragq_queue_job_cancel(ragq_queue_t *q, ragq_job_t *job);

/* ragq_queue_job_lost's why: keepalive.lua's answers other than "ours". */
enum { JOB_LOST_STALE = 0, JOB_LOST_GONE = 2, JOB_LOST_FINAL = 3 };

/* queue_out.c */
void        ragq_queue_out_start(ragq_queue_t *q, ragq_job_t *job);
const char *ragq_queue_out_key(ragq_queue_t *q, ragq_job_t *job); /* P:out:ID */
void        ragq_queue_out_piece(ragq_job_t *job, const char *text, size_t len,
                                 int how);
void        ragq_queue_out_flush(ragq_queue_t *q, ragq_job_t *job);
void        ragq_queue_out_free(ragq_job_t *job);
void        ragq_queue_out_due(void *data); /* q->out_timer's */

/* queue_cancel.c */
int  ragq_queue_cancel_init(ragq_queue_t *q);
void ragq_queue_cancel_free(ragq_queue_t *q);

/* queue_keep.c */
void     ragq_queue_keepalive(ragq_queue_t *q);
void     ragq_queue_forget_consumers(ragq_queue_t *q);
uint64_t ragq_queue_consumers_period(const ragq_queue_t *q);

#endif
