/*
 * retry.h: the worker's backoff rules, one place for both programs.
 *
 * Upstream calls (job.c in ragq-worker, ingest_pipeline.c in ragq-ingest):
 * up to RAGQ_CALL_TRIES tries; before retry n, the upstream's Retry-After
 * or retry-after-ms when it sent one (capped at 30 s), else "full jitter",
 * random(0, min(8 s, 200 ms * 2^(n-1))), so clients that failed together
 * do not come back together.
 *
 * Reconnecting (valkey_conn.c): a delay doubling from a minimum to a
 * maximum, half of it fixed and half jitter, back to the minimum after a
 * success.
 *
 * Jitter comes from random(); each program seeds it (srandom) at start.
 * Implemented in retry.c.
 */

#ifndef RAGQ_RETRY_H
#define RAGQ_RETRY_H

#include <stdint.h>

#define RAGQ_CALL_TRIES         5 /* per upstream call, the first included */
#define RAGQ_BACKOFF_BASE_MS    200
#define RAGQ_BACKOFF_CAP_MS     8000
#define RAGQ_RETRY_AFTER_CAP_MS 30000

/*
 * The wait before retry number retry (1 for the first retry) of an
 * upstream call.  retry_after_ms: what the upstream asked for, -1 if
 * nothing.
 */
uint64_t ragq_retry_delay_ms(long retry_after_ms, int retry);

typedef struct {
    uint64_t min_ms, max_ms;
    uint64_t step_ms; /* the next delay before jitter */
} ragq_backoff_t;

void ragq_backoff_init(ragq_backoff_t *b, uint64_t min_ms, uint64_t max_ms);

/* The next delay: step/2 + random(0, step/2); the step then doubles. */
uint64_t ragq_backoff_next(ragq_backoff_t *b);

/* After a success: the next delay starts from the minimum again. */
void ragq_backoff_reset(ragq_backoff_t *b);

#endif
