/*
 * joblog.h: one log line per job transition (started, finished, failed,
 * released for another attempt, and canceled with issue 12), with the
 * job's id, status, attempt and the duration of each stage, as text or as
 * JSON fields; each end is counted for the heartbeat.  Never the question:
 * only ids, numbers and error codes and messages, masked (log.h).
 * Implemented in joblog.c.
 */

#ifndef RAGQ_JOBLOG_H
#define RAGQ_JOBLOG_H

#include "heartbeat.h"
#include "job.h"

/* Claimed and running. */
void ragq_joblog_started(const ragq_job_t *job, unsigned max_attempts);

/*
 * Ended: how says which way (the job's err for failed and released),
 * ms how long since it was claimed (released: the wait before the next
 * attempt).
 */
void ragq_joblog_ended(const ragq_job_t *job, ragq_job_end_t how,
                       unsigned max_attempts, long ms);

#endif
