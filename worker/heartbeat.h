/*
 * heartbeat.h: what a worker tells the others and nginx about itself.  The
 * hash P:worker:NAME (start time, version, host, pid, jobs by how they
 * ended, jobs held, upstream calls and their errors, when the last job
 * ended) is written every RAGQ_HEARTBEAT on the queue's command connection
 * with a TTL of three periods, and NAME is listed in the sorted set
 * P:workers:live (score: the time of the beat by Valkey's clock, TIME,
 * so that names left by dead workers are pruned whatever the workers'
 * clocks say); a clean exit removes both.  A worker is live while
 * its hash exists.  With RAGQ_HEALTH_FILE, every beat Valkey accepted
 * also sets that file's mtime to now (the file made if missing), and a
 * clean exit removes it: conf/docker/healthcheck wants it younger than three
 * periods.  The counters come from job.c (calls) and joblog.c (jobs).
 * Implemented in heartbeat.c.
 */

#ifndef RAGQ_HEARTBEAT_H
#define RAGQ_HEARTBEAT_H

#include <stddef.h>

#include "config.h"
#include "loop.h"
#include "queue.h"

/* The upstream APIs, in the order of a job's stages (job.c). */
enum { RAGQ_API_EMBEDDINGS, RAGQ_API_QDRANT, RAGQ_API_CHAT, RAGQ_APIS };

/* How a job left this worker. */
typedef enum {
    RAGQ_END_FINISHED,
    RAGQ_END_FAILED,
    RAGQ_END_RELEASED, /* given up for now, for another attempt */
    RAGQ_END_CANCELED,
    RAGQ_ENDS
} ragq_job_end_t;

/* An HTTP call to api was answered (or failed: transport, non-2xx, junk). */
void ragq_count_call(int api);
void ragq_count_call_error(int api);
void ragq_count_job_end(ragq_job_end_t how);

typedef struct ragq_heartbeat_s ragq_heartbeat_t;

ragq_heartbeat_t *ragq_heartbeat_new(ragq_loop_t         *loop,
                                     const ragq_config_t *cfg, ragq_queue_t *q);

/*
 * Beats from now on, whenever the command connection is up (and the queue
 * claims).  A health file left by an earlier run is removed first.
 */
void ragq_heartbeat_start(ragq_heartbeat_t *hb);

/*
 * A clean exit, after the loop stopped: no more beats, the health file
 * removed, the hash and the listing deleted.  Runs the loop until Valkey
 * confirmed it, 1 s at most.
 */
void ragq_heartbeat_remove(ragq_heartbeat_t *hb);

void ragq_heartbeat_free(ragq_heartbeat_t *hb);

#endif
