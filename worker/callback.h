/*
 * callback.h: job-end callbacks.  When a job ends (finished, failed or
 * canceled) and has a callback_url, the worker POSTs the job's /job-status
 * JSON there, signed per Standard Webhooks (webhook.h), retried with backoff
 * on network errors, timeouts, 429 and 5xx, never following a redirect, and
 * records the outcome in the job hash as "callback".  Deliveries run beside
 * the jobs, on the same event loop, at most RAGQ_CALLBACK_CONCURRENCY POSTs
 * at once: a job's slot is free as soon as its final state is written, so
 * a slow receiver never holds one.  Implemented in callback.c.
 */

#ifndef RAGQ_CALLBACK_H
#define RAGQ_CALLBACK_H

#include <stddef.h>

#include "config.h"
#include "loop.h"

typedef struct ragq_callbacks_s ragq_callbacks_t;
struct ragq_queue_s;

/* The queue's Valkey command connection carries the reads and writes. */
ragq_callbacks_t *ragq_callbacks_new(ragq_loop_t *loop, struct ragq_queue_s *q,
                                     const ragq_config_t *cfg,
                                     const char          *job_prefix);

/*
 * The single entry point: job id (32 hex characters) has ended, in Valkey
 * already; url is its callback_url (NULL or "": nothing to do).  Reads the
 * job, POSTs its JSON, records the outcome.  Every path that ends a job
 * calls it: the final write, a job failed or found canceled by its claim,
 * a job the keep-alive finds final (canceled while it ran).
 */
void ragq_callback_deliver(ragq_callbacks_t *cbs, const char *id,
                           const char *url);

/*
 * The same, only if the job's status is status when it is read: for an end
 * another path may have called back for already (the final write found the
 * job final: canceled while its result was being written, or another
 * attempt finished it).
 */
void ragq_callback_deliver_if(ragq_callbacks_t *cbs, const char *id,
                              const char *url, const char *status);

/* Deliveries not finished yet (a graceful stop waits for them). */
size_t ragq_callbacks_pending(const ragq_callbacks_t *cbs);

/* After the queue's connections are closed: drops what is left. */
void ragq_callbacks_free(ragq_callbacks_t *cbs);

#endif
