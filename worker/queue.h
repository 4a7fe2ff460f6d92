/*
 * queue.h: the worker's side of the queue: two connections to Valkey (one
 * blocked in XREADGROUP, one pipelined for everything else) and the claim /
 * keep-alive / reclaim / final-state protocol of DEVELOPERS.md.  It owns
 * the job slots: a job is claimed only when a slot is free.  Implemented in
 * queue.c (connections, faults, start and stop), queue_claim.c (slots,
 * XREADGROUP, reclaim, the group) and queue_job.c (one job's claim, final
 * write or release).
 */

#ifndef RAGQ_QUEUE_H
#define RAGQ_QUEUE_H

#include "config.h"
#include "job.h"
#include "loop.h"
#include "sdnotify.h"
#include "valkey_conn.h"

typedef struct ragq_queue_s ragq_queue_t;

/* net (valkey_net.h) must outlive the queue. */
ragq_queue_t *ragq_queue_new(ragq_loop_t *loop, ragq_pipeline_t *pipeline,
                             const ragq_config_t *cfg, ragq_vnet_t *net);

/*
 * Connects and starts claiming; logs "ready" once a first claim round
 * (XREADGROUP) has worked.  If that has not happened within the connect
 * timeout (times the number of sentinels plus one, with Sentinel): Valkey
 * unreachable, TLS refused, AUTH refused, not the primary, a command
 * refused (NOPERM...), it logs why and stops the loop with exit code 1.
 */
void ragq_queue_start(ragq_queue_t *q);

/*
 * Graceful stop: claim nothing more, let jobs in flight finish within the
 * grace period (the rest stay un-acknowledged, to be reclaimed), then stop
 * the loop with exit code 0.
 */
void ragq_queue_stop(ragq_queue_t *q);

/*
 * Tells systemd (sdnotify.h) READY=1 with the "ready" line, STOPPING=1 when
 * a graceful stop begins, and STATUS= when Valkey is lost and back.  sd
 * (NULL: nothing said) must outlive the queue.
 */
void ragq_queue_set_notify(ragq_queue_t *q, ragq_sdnotify_t *sd);

int  ragq_queue_exit_code(const ragq_queue_t *q);
void ragq_queue_free(ragq_queue_t *q);

/* For the heartbeat (heartbeat.c): the pipelined command connection, this
 * worker's consumer name, and the jobs it holds now. */
ragq_vconn_t *ragq_queue_conn(ragq_queue_t *q);
/* A first claim round (XREADGROUP) has worked: the worker takes jobs. */
int         ragq_queue_ready(const ragq_queue_t *q);
const char *ragq_queue_consumer(const ragq_queue_t *q);
unsigned    ragq_queue_held(const ragq_queue_t *q);

#endif
